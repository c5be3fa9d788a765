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

// OpenFds() once two listings in a row agree, so that the listing a leak check starts
// from rarely holds a pipe only passing through (see FdsDiffer()).
inline std::map<int, std::string> SettledOpenFds() {
  std::map<int, std::string> fds = OpenFds();
  for (int i = 0; i < 100; ++i) {
    std::map<int, std::string> again = OpenFds();
    if (again == fds) break;
    fds.swap(again);
  }
  return fds;
}

// Whether the fds open 'now' differ from those open 'before' by more than a passing
// pipe.  UBSan's vptr check (-fsanitize=vptr) probes memory through a pipe it opens and
// closes at once (__sanitizer::IsAccessibleMemoryRange), on any thread, whenever its
// type cache misses: each thread the library starts (the closers and their watcher,
// fd_closer.h) does it as it comes up, on its own schedule, and a listing can catch the
// pipe open.  One caught in 'now' goes away on a second look; one caught in 'before'
// shows as a pipe closed since, which no leak looks like (a leak is an fd too many).
inline bool FdsDiffer(const std::map<int, std::string>& before,
                      const std::map<int, std::string>& now) {
  for (const auto& [fd, what] : now) {
    auto it = before.find(fd);
    if (it == before.end() || it->second != what) return true;
  }
  for (const auto& [fd, what] : before) {
    if (!now.count(fd) && what.rfind("pipe:", 0) != 0) return true;
  }
  return false;
}

// Fails the input if the fds open now differ from 'before' (FdsDiffer()) for 2 s.
inline void CheckNoFdLeaked(const std::map<int, std::string>& before) {
  std::map<int, std::string> now = OpenFds();
  for (int wait = 0; FdsDiffer(before, now) && wait < 200; ++wait) {
    usleep(10000);
    now = OpenFds();
  }
  if (!FdsDiffer(before, now)) return;
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
