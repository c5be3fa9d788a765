// An owned file descriptor: closed when the owner goes away, so that no error path of
// the control code can leak one a frontend sent us.
#ifndef NETDEV_VHOSTUSER_UNIQUE_FD_H
#define NETDEV_VHOSTUSER_UNIQUE_FD_H

#include <unistd.h>

#include <utility>

namespace vhostuser {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_UNIQUE_FD_H
