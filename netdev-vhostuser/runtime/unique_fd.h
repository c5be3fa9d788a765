// An owned file descriptor: closed when the owner goes away, so that no error path of
// the control code can leak one a frontend sent us.  One that came from a frontend
// (FromFrontend) is closed through FdCloser, since its close() may block.  So is every
// socket a frontend can send to (the connection, the listener, whose backlog holds
// connections not yet accepted): closing it drops the fds queued on it, and the last
// close of each runs on the closing thread.
#ifndef NETDEV_VHOSTUSER_RUNTIME_UNIQUE_FD_H
#define NETDEV_VHOSTUSER_RUNTIME_UNIQUE_FD_H

#include <unistd.h>

#include <cstdint>
#include <utility>

#include "runtime/fd_closer.h"

namespace vhostuser {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  // 'owner' (FdCloser::NewOwner()) is the port whose frontend it came from.
  static UniqueFd FromFrontend(int fd, uint32_t owner) {
    UniqueFd owned(fd);
    owned.owner_ = owner;
    return owned;
  }
  UniqueFd(UniqueFd&& other) noexcept
      : fd_(std::exchange(other.fd_, -1)), owner_(std::exchange(other.owner_, 0)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
      owner_ = std::exchange(other.owner_, 0);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) {
      if (owner_ != 0) {
        FdCloser::Close(fd_, owner_);
      } else {
        ::close(fd_);
      }
    }
    fd_ = fd;
    owner_ = 0;
  }

 private:
  int fd_ = -1;
  uint32_t owner_ = 0;  // 0: ours, closed here; else closed through FdCloser.
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RUNTIME_UNIQUE_FD_H
