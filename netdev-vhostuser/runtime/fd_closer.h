// Closes the fds a frontend gave us, off every thread that serves other ports.
//
// close() can block for as long as the frontend likes: the last close of a TCP socket
// with SO_LINGER set waits for its unsent data, a FUSE file's flush waits for the FUSE
// daemon.  A frontend that passes such fds (in any message, wanted or not) and hangs up
// would otherwise stall the control thread, the main thread tearing a port down, or a
// PMD thread.  So every received fd is closed here, on closer threads of their own: the
// caller only queues it.  A closer stuck in one close() for longer than
// kStuckAfter hands the queue to a new closer (up to kMaxClosers at once), so one
// hostile fd delays only itself.
#ifndef NETDEV_VHOSTUSER_RUNTIME_FD_CLOSER_H
#define NETDEV_VHOSTUSER_RUNTIME_FD_CLOSER_H

#include <cstddef>

#include "absl/time/time.h"

namespace vhostuser {

class FdCloser {
 public:
  static constexpr absl::Duration kStuckAfter = absl::Milliseconds(200);
  static constexpr int kMaxClosers = 16;

  // Queues 'fd' for closing.  Any thread, any lock held: never blocks on the fd.
  static void Close(int fd);
  // Starts the first closer now rather than at the first Close(), so that the
  // process's threads (and their memory) are there from the start.
  static void Start();

  // Test hooks: fds queued or being closed, closers declared stuck, and a wait until
  // nothing is queued (false on timeout).
  static size_t PendingForTest();
  static int StuckClosersForTest();
  static bool WaitIdleForTest(absl::Duration timeout = absl::Seconds(5));
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RUNTIME_FD_CLOSER_H
