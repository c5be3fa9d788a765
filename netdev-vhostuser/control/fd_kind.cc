#include "control/fd_kind.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "runtime/printable_text.h"

namespace vhostuser {
namespace {

// Where /proc/self/fd/N points: "anon_inode:[eventfd]", "socket:[123]", "/memfd:x
// (deleted)", a path.  Empty when /proc cannot say.
std::string FdTarget(int fd) {
  char proc[64], target[4096];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(proc, target, sizeof target - 1);
  if (n < 0) return "";
  // The frontend names its memfds: the name goes into the port's status and the log.
  return PrintableText(absl::string_view(target, static_cast<size_t>(n)), 200);
}

absl::Status WrongKind(absl::string_view what, absl::string_view wanted,
                       absl::string_view target) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, " is not ", wanted, " (", target.empty() ? "unknown" : target,
                   ")"));
}

}  // namespace

absl::Status CheckEventFd(int fd, absl::string_view what) {
  const std::string target = FdTarget(fd);
  if (target != "anon_inode:[eventfd]") return WrongKind(what, "an eventfd", target);
  return absl::OkStatus();
}

absl::Status CheckMemoryFd(int fd, absl::string_view what) {
  // F_GET_SEALS answers for shmem (memfds, tmpfs) and hugetlbfs files only, from the
  // inode alone, without calling into the file system, and fails with EINVAL for any
  // other file and EBADF for an O_PATH fd.  A name is no proof: a frontend in mount and
  // user namespaces of its own can mount FUSE at "/memfd:x" or "/dev/shm", and a FUSE
  // file answers fstat(), mmap() faults and close() when its daemon likes.
  if (fcntl(fd, F_GET_SEALS) < 0) {
    const std::string target = FdTarget(fd);
    return WrongKind(what,
                     !target.empty() && target[0] == '/'
                         ? "a memfd or a file on tmpfs or hugetlbfs"
                         : "a shared-memory file",
                     target);
  }
  return absl::OkStatus();
}

absl::Status CheckUnixSocket(int fd, absl::string_view what) {
  const std::string target = FdTarget(fd);
  int domain = 0;
  socklen_t len = sizeof domain;
  if (target.rfind("socket:", 0) != 0 ||
      getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0 || domain != AF_UNIX) {
    return WrongKind(what, "a unix socket", target);
  }
  return absl::OkStatus();
}

}  // namespace vhostuser
