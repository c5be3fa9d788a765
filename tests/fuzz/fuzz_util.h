// Helpers shared by the fuzz targets: a cursor over the fuzzer's bytes and the checks
// that run after every input.
#ifndef TESTS_FUZZ_FUZZ_UTIL_H
#define TESTS_FUZZ_FUZZ_UTIL_H

#include <dirent.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

// The process's open fds, once the closer threads (fd_closer.h), which close what the
// backend took from a frontend, have nothing left to close.
inline int CountOpenFds() {
  if (!FdCloser::WaitIdleForTest()) Violation("a frontend's fd was never closed");
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) abort();
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

}  // namespace vhostuser::fuzz

#endif  // TESTS_FUZZ_FUZZ_UTIL_H
