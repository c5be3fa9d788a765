// What kind of file an fd from a frontend is, told without touching the file itself.
//
// Each fd a request carries has one right kind: eventfds for kick, call and err, a
// shared-memory file for guest memory, a unix socket for the backend channel.  Anything
// else is refused before it is kept.  The checks never call into the file's file system:
// an fstat(), fstatfs() or read on the fd could call into whatever file system the
// frontend chose (FUSE answers when its daemon likes), and its mappings would fault
// the same way later on a PMD thread.
#ifndef NETDEV_VHOSTUSER_CONTROL_FD_KIND_H
#define NETDEV_VHOSTUSER_CONTROL_FD_KIND_H

#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace vhostuser {

// An eventfd.  'what' names the fd in the error ("SET_VRING_KICK fd").
absl::Status CheckEventFd(int fd, absl::string_view what);

// A file guest memory may live in: a memfd, or a file on tmpfs or hugetlbfs (whatever
// mount namespace the frontend put it in: QEMU under libvirt has a /dev of its own).
absl::Status CheckMemoryFd(int fd, absl::string_view what);

// A unix-domain socket.
absl::Status CheckUnixSocket(int fd, absl::string_view what);

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_CONTROL_FD_KIND_H
