// The one control thread every port shares.  It waits on all listening and connected
// sockets with epoll, runs each port's timers (client-mode reconnects) and wakes when a
// data-path thread reports a broken ring.  Every port callback runs with the loop's
// mutex held, so removing a port from another thread waits for its handler to finish
// and no event reaches a port after Remove() returns.
#ifndef NETDEV_VHOSTUSER_CONTROL_CONTROL_LOOP_H
#define NETDEV_VHOSTUSER_CONTROL_CONTROL_LOOP_H

#include <cstdint>
#include <mutex>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "runtime/unique_fd.h"

namespace vhostuser {

class Port;

class ControlLoop {
 public:
  enum class FdKind : uint32_t { kConnection = 0, kListener = 1 };

  // Started on first use, never stopped: ports come and go, the thread stays.
  static ControlLoop& Get();

  void Add(Port* port);
  void Remove(Port* port);
  // Callable only from port callbacks (loop thread) or with the port not yet added.
  // False, errno set, if the fd could not be watched (the kernel's limit on epoll
  // watches, or its memory): the port says so in its own log lines.
  bool Watch(Port* port, int fd, FdKind kind);
  void Unwatch(int fd);
  // Makes the loop run its timers and failure checks now.  Any thread, no locks held.
  void Wake();

  // Test hook: keeps every port callback from running while the lock is held, so a
  // test can queue several messages before the port reads any.
  std::unique_lock<std::mutex> HoldForTest() { return std::unique_lock<std::mutex>(mu_); }

 private:
  ControlLoop();
  void Run();

  // std::mutex rather than absl::Mutex: the distribution's Abseil is not built for
  // ThreadSanitizer, which then cannot see absl::Mutex's ordering; pthread mutexes it
  // always understands.  Guards ports_ and next_id_.
  std::mutex mu_;
  absl::flat_hash_map<uint64_t, Port*> ports_;
  uint64_t next_id_ = 1;
  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  std::thread thread_;
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_CONTROL_CONTROL_LOOP_H
