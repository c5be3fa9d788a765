#include "rings/call_notifier.h"

#include <pthread.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_set.h"

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

// Whether thread 'tid' of this process is asleep ('S' in its /proc stat), with no
// allocation (the watchdog's rule).  False when that cannot be told.
bool ThreadAsleep(pid_t tid) {
  char path[64], stat[512];
  snprintf(path, sizeof path, "/proc/self/task/%d/stat", static_cast<int>(tid));
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (n <= 0) return false;
  stat[n] = '\0';
  // "pid (comm) S ...": the name may hold anything, the state follows its last ')'.
  const char* end_of_name = strrchr(stat, ')');
  return end_of_name != nullptr && end_of_name[1] == ' ' && end_of_name[2] == 'S';
}

}  // namespace

// The notifiers that have a call fd, and the thread that watches their writes.
class CallWatchdog {
 public:
  static CallWatchdog& Get() {
    // Never destroyed: the thread may be mid-scan when the process exits.
    static CallWatchdog* watchdog = new CallWatchdog;
    return *watchdog;
  }

  void Start() {
    std::lock_guard<std::mutex> lock(mu_);
    StartLocked();
  }

  void Watch(CallNotifier* notifier) {
    std::lock_guard<std::mutex> lock(mu_);
    watched_.insert(notifier);
    StartLocked();
    cv_.notify_one();
  }

  // Once this returns, the watchdog no longer looks at 'notifier' (it scans under mu_).
  void Unwatch(CallNotifier* notifier) {
    std::lock_guard<std::mutex> lock(mu_);
    watched_.erase(notifier);
  }

  std::atomic<uint64_t> interrupts{0};

 private:
  void StartLocked() {
    if (started_) return;
    started_ = true;
    std::thread([this] {
      pthread_setname_np(pthread_self(), "vhu_call_wd");
      Run();
    }).detach();
  }

  // Allocates nothing (the set is changed by the threads that own the notifiers): a
  // thread's first malloc would reserve an arena of its own for the process's life.
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      // Asleep while no call fd exists; else a look every period.
      cv_.wait(lock, [this] { return !watched_.empty(); });
      cv_.wait_for(lock, std::chrono::nanoseconds(CallNotifier::kWatchPeriodNs));
      const int64_t now = NowNs();
      for (CallNotifier* n : watched_) n->InterruptIfStuck(now);
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  absl::flat_hash_set<CallNotifier*> watched_;
  bool started_ = false;
};

void CallNotifier::Reset(UniqueFd fd) {
  if (fd.valid()) {
    // Here rather than in Notify(): off the data path, and before any write can stick.
    static std::once_flag installed;
    std::call_once(installed, InstallBreakHandler);
    if (!fd_.valid()) CallWatchdog::Get().Watch(this);
  } else if (fd_.valid()) {
    CallWatchdog::Get().Unwatch(this);
  }
  fd_ = std::move(fd);
}

void CallNotifier::StartWatchdog() { CallWatchdog::Get().Start(); }

uint64_t CallNotifier::InterruptsForTest() {
  return CallWatchdog::Get().interrupts.load(std::memory_order_relaxed);
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

void CallNotifier::InterruptIfStuck(int64_t now_ns) {
  const int64_t started = write_started_ns_.load(std::memory_order_acquire);
  const pid_t tid = writer_tid_.load(std::memory_order_relaxed);
  if (started == 0 || tid == 0 || now_ns - started < kSuspectAfterNs) return;
  if (now_ns - started < kStuckAfterNs) {
    // An eventfd write that can go through never sleeps, so a writer found asleep in
    // one is blocked on the counter: it is broken off now.  Waiting for kStuckAfterNs
    // let a frontend release the write just in time, again and again, and keep the
    // thread stalled without ever losing its port.  (A writer merely preempted is
    // runnable, not asleep.)  The write must still be the same one after the look, so
    // that the look was taken during it.
    if (!ThreadAsleep(tid) ||
        write_started_ns_.load(std::memory_order_acquire) != started) {
      return;
    }
  }
  // By thread id rather than pthread_t: if the write has just finished and its thread
  // exited, this fails with ESRCH instead of touching a thread that is gone.  If it
  // finished and the thread went on, it gets an EINTR it can take (a poll or read
  // interrupted), as with any signal.
  syscall(SYS_tgkill, getpid(), tid, BreakSignal());
  CallWatchdog::Get().interrupts.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace vhostuser
