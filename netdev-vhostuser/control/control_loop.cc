#include "control/control_loop.h"

#include <pthread.h>

#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "control/port.h"
#include "memory/sigbus_guard.h"
#include "rings/call_notifier.h"
#include "runtime/fd_closer.h"
#include "runtime/log.h"

namespace vhostuser {
namespace {

uint64_t Token(uint64_t port_id, ControlLoop::FdKind kind) {
  return (port_id << 1) | static_cast<uint64_t>(kind);
}

}  // namespace

ControlLoop& ControlLoop::Get() {
  // Never destroyed: the thread may still be in epoll_wait when the process exits.
  static ControlLoop* loop = new ControlLoop;
  return *loop;
}

ControlLoop::ControlLoop()
    : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)),
      wake_fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!epoll_fd_.valid() || !wake_fd_.valid()) {
    Log(VHU_LOG_ERR, "cannot create the control loop: ", strerror(errno));
    abort();
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // Port ids start at 1.
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &ev);
  // A guest access caught by the SIGBUS guard wakes us to disconnect its frontend.
  SigbusGuard::SetWakeFd(wake_fd_.get());
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "vhu_control");
    Run();
  });
  thread_.detach();
  // The library's other threads, from the start too: the fd closers and the call
  // watchdog.
  FdCloser::Start();
  CallNotifier::StartWatchdog();
}

void ControlLoop::Add(Port* port) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    port->set_id(next_id_++);
    ports_[port->id()] = port;
    port->OnAdded();
  }
  Wake();
}

void ControlLoop::Remove(Port* port) {
  std::lock_guard<std::mutex> lock(mu_);
  ports_.erase(port->id());
}

bool ControlLoop::Watch(Port* port, int fd, FdKind kind) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = Token(port->id(), kind);
  return epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) == 0;
}

void ControlLoop::Unwatch(int fd) { epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr); }

void ControlLoop::Wake() {
  const uint64_t one = 1;
  // A full counter already means "wake up"; nothing to do on EAGAIN.
  [[maybe_unused]] ssize_t n = write(wake_fd_.get(), &one, sizeof one);
}

void ControlLoop::Run() {
  std::vector<epoll_event> events(64);
  int timeout_ms = 0;
  for (;;) {
    int n = epoll_wait(epoll_fd_.get(), events.data(), static_cast<int>(events.size()),
                       timeout_ms);
    if (n < 0 && errno != EINTR) {
      Log(VHU_LOG_ERR, "epoll_wait: ", strerror(errno));
      n = 0;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < n; ++i) {
      const uint64_t token = events[i].data.u64;
      if (token == 0) {
        uint64_t drained;
        [[maybe_unused]] ssize_t r = read(wake_fd_.get(), &drained, sizeof drained);
        continue;
      }
      auto it = ports_.find(token >> 1);
      if (it == ports_.end()) continue;  // Removed since epoll_wait returned.
      it->second->OnReadable(static_cast<FdKind>(token & 1) == FdKind::kListener);
    }
    const absl::Time now = absl::Now();
    absl::Time next = now + absl::Seconds(1);
    for (auto& [id, port] : ports_) next = std::min(next, port->OnTick(now));
    for (auto& [id, port] : ports_) port->FlushNotify();
    timeout_ms = static_cast<int>(
        std::max<int64_t>(0, absl::ToInt64Milliseconds(next - absl::Now()) + 1));
  }
}

}  // namespace vhostuser
