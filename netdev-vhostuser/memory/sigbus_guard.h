// Keeps a frontend that shrinks its memory file under us from killing the process.
//
// Guest memory is a shared mapping of a file the frontend owns.  If the frontend
// truncates that file after SET_MEM_TABLE, the next access to a page past the new end
// raises SIGBUS in whichever thread made it, a PMD thread usually, and SIGBUS kills
// the whole switch.  No check before the access can prevent this: the file can shrink
// between the check and the access.  So every guest mapping is registered here, and a
// SIGBUS handler that finds the faulting address inside a registered mapping puts
// private zero pages over the vanished part and lets the access go on: the thread reads
// zeros, its writes go nowhere, and the mapping is marked faulted.  The control loop,
// woken through the wake fd, then disconnects the frontend that did it.  (A hugetlbfs
// mapping whose huge pages run out faults the same way and is handled the same way.)
// A SIGBUS anywhere else goes to whatever handled SIGBUS before (by default, death with
// a core).
#ifndef NETDEV_VHOSTUSER_MEMORY_SIGBUS_GUARD_H
#define NETDEV_VHOSTUSER_MEMORY_SIGBUS_GUARD_H

#include <cstddef>
#include <cstdint>

namespace vhostuser {

class SigbusGuard {
 public:
  // How many mappings can be guarded at once: for each of 1024 ports, 8 regions and a
  // dirty log, twice (a new table or log is mapped before the old one goes).
  static constexpr int kMaxMappings = 18 * 1024;

  // Registers [start, start + length), mapped with pages of 'page_size' bytes (a power
  // of two, the file system's: 4 KiB, or a huge page size on hugetlbfs).  Installs the
  // handler on first use.  Returns a handle for the calls below, or -1 when every slot
  // is taken.  Control thread only.
  static int Register(void* start, size_t length, size_t page_size);
  // Forgets a mapping; call before unmapping it.  Control thread only.
  static void Unregister(int handle);
  // Whether a SIGBUS hit the mapping since it was registered.  Any thread.
  static bool Faulted(int handle);

  // An eventfd to write 1 to when a fault was absorbed, so that the control loop runs
  // its failure checks.  Set once, before any mapping is registered.
  static void SetWakeFd(int fd);
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_MEMORY_SIGBUS_GUARD_H
