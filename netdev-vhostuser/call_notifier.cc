#include "call_notifier.h"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>

namespace vhostuser {
namespace {

// The signal that breaks off a stuck write.  A real-time signal nobody else in the
// switch uses; its handler does nothing, and it is installed without SA_RESTART so that
// the interrupted write returns EINTR instead of going back to sleep.
int BreakSignal() { return SIGRTMIN + 5; }

void OnBreakSignal(int) {}

void InstallBreakHandler() {
  struct sigaction action = {};
  action.sa_handler = OnBreakSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;
  sigaction(BreakSignal(), &action, nullptr);
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// The kernel's id of the calling thread, asked once per thread.
pid_t ThisThread() {
  thread_local const pid_t tid = static_cast<pid_t>(syscall(SYS_gettid));
  return tid;
}

}  // namespace

void CallNotifier::Reset(UniqueFd fd) {
  // Here rather than in Notify(): off the data path, and before any write can stick.
  if (fd.valid()) {
    static std::once_flag installed;
    std::call_once(installed, InstallBreakHandler);
  }
  fd_ = std::move(fd);
}

CallNotifier::Result CallNotifier::Notify() {
  writer_tid_.store(ThisThread(), std::memory_order_relaxed);
  write_started_ns_.store(NowNs(), std::memory_order_release);
  const uint64_t one = 1;
  const ssize_t n = write(fd_.get(), &one, sizeof one);
  const int error = errno;
  write_started_ns_.store(0, std::memory_order_release);
  if (n >= 0 || error == EAGAIN) return Result::kSent;  // EAGAIN: one is pending.
  return error == EINTR ? Result::kBlocked : Result::kFailed;
}

bool CallNotifier::InterruptIfStuck() {
  const int64_t started = write_started_ns_.load(std::memory_order_acquire);
  if (started == 0) return false;
  if (NowNs() - started >= kStuckAfterNs) {
    const pid_t tid = writer_tid_.load(std::memory_order_relaxed);
    // By thread id rather than pthread_t: if the write has just finished and its thread
    // exited, this fails with ESRCH instead of touching a thread that is gone.  If it
    // finished and the thread went on, it gets an EINTR it can take (a poll or read
    // interrupted), as with any signal.
    if (tid != 0) syscall(SYS_tgkill, getpid(), tid, BreakSignal());
  }
  return true;
}

}  // namespace vhostuser
