// Closes the fds a frontend gave us, off every thread that serves other ports.
//
// close() can block for as long as the frontend likes: the last close of a TCP socket
// with SO_LINGER set waits for its unsent data, a FUSE file's flush waits for the FUSE
// daemon.  A frontend that passes such fds (in any message, wanted or not) and hangs up
// would otherwise stall the control thread, the main thread tearing a port down, or a
// PMD thread.  So every received fd is closed here, on closer threads of their own:
// the caller only queues it.  A closer stuck in one close() for longer than
// kStuckAfter hands the queue on: the watcher starts closers for the fds still
// waiting, so one hostile fd delays only itself.
//
// Each fd is queued with its owner, the port it came from, and at most
// kMaxClosingPerOwner closers close one owner's fds at a time: a frontend that sends
// any number of such fds ties up two closers, and its other fds wait for them, not
// every port's.  Without this, sixteen lingering sockets (in sixteen messages) took
// every closer, and no fd of any port was closed again until they let go.  So the
// closers blocked at once number at most two per port whose frontend attacks it, and
// the other ports' fds still find a closer: the pool has no bound but kMaxClosers,
// which only a process with 2000 ports all under attack would reach.  (A fixed pool of
// 64 let 32 hostile frontends, on 32 ports, hold every closer.)
#ifndef NETDEV_VHOSTUSER_RUNTIME_FD_CLOSER_H
#define NETDEV_VHOSTUSER_RUNTIME_FD_CLOSER_H

#include <cstddef>
#include <cstdint>

#include "absl/time/time.h"

namespace vhostuser {

class FdCloser {
 public:
  static constexpr absl::Duration kStuckAfter = absl::Milliseconds(200);
  // Closer threads at most, blocked ones included (each has a 64 KiB stack).
  static constexpr int kMaxClosers = 4096;
  static constexpr int kMaxClosingPerOwner = 2;

  // A new owner id, unique in the process (never 0).
  static uint32_t NewOwner();
  // Queues 'fd' for closing.  Any thread, any lock held: never blocks on the fd.
  static void Close(int fd, uint32_t owner);
  // A close() under way this long is taken for one that blocks: one that does not (an
  // eventfd, a memfd, a socket without SO_LINGER) takes microseconds, and this is far
  // beyond what a closer preempted on a busy machine loses.
  static constexpr absl::Duration kSlowClose = absl::Milliseconds(100);
  // More of one owner's fds than this still to close are held up, whatever their
  // closes do: above the kick, call and err fds of 256 vrings (768), which a frontend
  // at its largest has us close at once when it goes.  A frontend whose first fds'
  // closes block can make a port hold about this many before kSlowClose has passed.
  static constexpr size_t kMaxUnclosedPerOwner = 1024;
  // The fds of 'owner' held up by closes that block: all it has queued or being
  // closed once one of its closes has taken kSlowClose, or once they number more than
  // kMaxUnclosedPerOwner; else 0 (fds merely queued, closing fast, do not count).  A
  // port with too many stops taking fds (port.cc), so that what its frontend makes
  // the process hold of its fd table stays bounded.  Counted as they are queued and
  // closed, so that a frontend cannot send fds unchecked while the closers find out
  // that one of its closes blocks (a second closer starts only after kStuckAfter).
  static size_t BlockedFor(uint32_t owner);
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
