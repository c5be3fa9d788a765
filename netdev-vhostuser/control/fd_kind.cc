#include "control/fd_kind.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace vhostuser {
namespace {

// Where /proc/self/fd/N points: "anon_inode:[eventfd]", "socket:[123]", "/memfd:x
// (deleted)", a path.  Empty when /proc cannot say.
std::string FdTarget(int fd) {
  char proc[64], target[4096];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  const ssize_t n = readlink(proc, target, sizeof target - 1);
  if (n < 0) return "";
  return std::string(target, static_cast<size_t>(n));
}

absl::Status WrongKind(absl::string_view what, absl::string_view wanted,
                       absl::string_view target) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, " is not ", wanted, " (", target.empty() ? "unknown" : target,
                   ")"));
}

// The mount id of the fd's file (/proc/self/fdinfo), or -1.
int MountId(int fd) {
  std::ifstream info(absl::StrCat("/proc/self/fdinfo/", fd));
  std::string line;
  while (std::getline(info, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "mnt_id:")) {
      int id;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &id)) return id;
    }
  }
  return -1;
}

// The filesystem type of mount 'id' as process 'pid' ("self" for us) sees it, or "" if
// it is not among its mounts.
std::string MountType(int id, const std::string& pid) {
  std::ifstream mounts(absl::StrCat("/proc/", pid, "/mountinfo"));
  std::string line;
  const std::string prefix = absl::StrCat(id, " ");
  while (std::getline(mounts, line)) {
    if (line.compare(0, prefix.size(), prefix) != 0) continue;
    // "id parent major:minor root mountpoint options [optional...] - fstype source ..."
    const size_t dash = line.find(" - ");
    if (dash == std::string::npos) return "";
    std::vector<absl::string_view> fields = absl::StrSplit(
        absl::string_view(line).substr(dash + 3), ' ', absl::SkipEmpty());
    return fields.empty() ? "" : std::string(fields[0]);
  }
  return "";
}

}  // namespace

absl::Status CheckEventFd(int fd, absl::string_view what) {
  const std::string target = FdTarget(fd);
  if (target != "anon_inode:[eventfd]") return WrongKind(what, "an eventfd", target);
  return absl::OkStatus();
}

absl::Status CheckMemoryFd(int fd, absl::string_view what, int peer_pid) {
  const std::string target = FdTarget(fd);
  if (target.rfind("/memfd:", 0) == 0) return absl::OkStatus();
  if (target.empty() || target[0] != '/') {
    return WrongKind(what, "a shared-memory file", target);
  }
  // Mount ids are unique system-wide, so the frontend's mount table names the mount
  // when ours does not.
  const int mount = MountId(fd);
  std::string type = MountType(mount, "self");
  if (type.empty() && peer_pid > 0) type = MountType(mount, std::to_string(peer_pid));
  if (type != "tmpfs" && type != "hugetlbfs") {
    return WrongKind(what, "a memfd or a file on tmpfs or hugetlbfs",
                     absl::StrCat(target, " on ", type.empty() ? "unknown" : type));
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
