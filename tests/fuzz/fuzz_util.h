// Helpers shared by the fuzz targets: a cursor over the fuzzer's bytes and the checks
// that run after every input.
#ifndef TESTS_FUZZ_FUZZ_UTIL_H
#define TESTS_FUZZ_FUZZ_UTIL_H

#include <dirent.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "runtime/fd_closer.h"

namespace vhostuser::fuzz {

// Reads little-endian integers and byte runs off the front of the input; past the end
// every read gives zeros, so any input is a valid program.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return at_ >= size_; }
  size_t remaining() const { return empty() ? 0 : size_ - at_; }

  template <typename T>
  T Take() {
    T value{};
    const size_t n = remaining() < sizeof(T) ? remaining() : sizeof(T);
    if (n) memcpy(&value, data_ + at_, n);
    at_ += sizeof(T);
    return value;
  }
  // Up to 'len' bytes (fewer at the end of the input); returns how many.
  size_t TakeBytes(void* out, size_t len) {
    const size_t n = remaining() < len ? remaining() : len;
    if (n) memcpy(out, data_ + at_, n);
    at_ += n;
    return n;
  }
  const uint8_t* rest() const { return empty() ? data_ + size_ : data_ + at_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

// A broken invariant: libFuzzer records the input as a crash.
[[noreturn]] inline void Violation(const char* what) {
  fprintf(stderr, "fuzz invariant violated: %s\n", what);
  abort();
}

// The process's open fds, each with what it refers to ("socket:[1234]", a path), once
// the closer threads (fd_closer.h), which close what the backend took from a frontend,
// have nothing left to close.
inline std::map<int, std::string> OpenFds() {
  if (!FdCloser::WaitIdleForTest()) Violation("a frontend's fd was never closed");
  std::map<int, std::string> fds;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) abort();
  const int own = dirfd(d);
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const int fd = atoi(e->d_name);
    if (fd == own) continue;
    char path[64], target[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    const ssize_t n = readlink(path, target, sizeof target - 1);
    fds[fd] = n < 0 ? "(closed while listed)" : std::string(target, n);
  }
  closedir(d);
  return fds;
}

// OpenFds() once two listings in a row agree: the listing a leak check starts from
// must not hold a pipe that is only passing through (see CheckNoFdLeaked).
inline std::map<int, std::string> SettledOpenFds() {
  std::map<int, std::string> fds = OpenFds();
  for (int i = 0; i < 100; ++i) {
    std::map<int, std::string> again = OpenFds();
    if (again == fds) break;
    fds.swap(again);
  }
  return fds;
}

// Fails the input if the fds open now differ from 'before' for good.  A difference
// that goes away is not a leak: each thread the library starts (the closers and their
// watcher, fd_closer.h) opens and closes a pipe as it comes up, on its own schedule,
// for UBSan's vptr check (__sanitizer::IsAccessibleMemoryRange probes memory through a
// pipe), and a listing can catch the pipe open.  A leaked fd stays.
inline void CheckNoFdLeaked(const std::map<int, std::string>& before) {
  std::map<int, std::string> now = OpenFds();
  for (int wait = 0; now != before && wait < 200; ++wait) {
    usleep(10000);
    now = OpenFds();
  }
  if (now == before) return;
  for (const auto& [fd, what] : before) {
    auto it = now.find(fd);
    if (it == now.end()) {
      fprintf(stderr, "fd %d (%s) was closed\n", fd, what.c_str());
    } else if (it->second != what) {
      fprintf(stderr, "fd %d is %s, was %s\n", fd, it->second.c_str(), what.c_str());
    }
  }
  for (const auto& [fd, what] : now) {
    if (!before.count(fd)) fprintf(stderr, "fd %d (%s) was opened\n", fd, what.c_str());
  }
  Violation("an fd leaked (or one of the harness's was closed), for 2 s");
}

}  // namespace vhostuser::fuzz

#endif  // TESTS_FUZZ_FUZZ_UTIL_H
