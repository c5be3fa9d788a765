#include "memory/dirty_log.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace vhostuser {

absl::StatusOr<std::unique_ptr<DirtyLog>> DirtyLog::Map(int fd, uint64_t size,
                                                        uint64_t offset) {
  if (size == 0 || offset + size < offset) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SET_LOG_BASE size %#x at offset %#x is not a log", size, offset));
  }
  // The file was checked for its kind (a shared-memory file), so fstat() is safe here.
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      offset + size > static_cast<uint64_t>(st.st_size)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SET_LOG_BASE log of %#x bytes at offset %#x is beyond its file", size, offset));
  }
  const uint64_t map_size = offset + size;
  if (map_size > SIZE_MAX) return absl::InvalidArgumentError("SET_LOG_BASE log too large");
  void* base = mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (base == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("mmap of the dirty log failed: ", strerror(errno)));
  }
  std::unique_ptr<DirtyLog> log(new DirtyLog);
  log->mapping_ = base;
  log->mapping_size_ = static_cast<size_t>(map_size);
  log->bitmap_ = static_cast<uint8_t*>(base) + offset;
  log->size_ = size;
  return log;
}

DirtyLog::~DirtyLog() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_size_);
}

void DirtyLog::MarkGuest(uint64_t gpa, uint64_t len) const {
  if (len == 0) return;
  const uint64_t first = gpa / kPageSize;
  const uint64_t last = (gpa + len - 1) / kPageSize;
  for (uint64_t page = first; page <= last; ++page) {
    const uint64_t byte = page / 8;
    if (byte >= size_) return;  // A log too small for the guest: nothing past its end.
    // After our write to the page: QEMU reads the bit, then the page.
    __atomic_fetch_or(&bitmap_[byte], static_cast<uint8_t>(1u << (page % 8)),
                      __ATOMIC_RELEASE);
  }
}

void DirtyLog::MarkHost(const GuestMemory& memory, const void* host, uint64_t len) const {
  const auto* p = static_cast<const uint8_t*>(host);
  for (const GuestMemory::Region& r : memory.regions()) {
    if (p >= r.host && p < r.host + r.size) {
      MarkGuest(r.guest_phys_addr + static_cast<uint64_t>(p - r.host), len);
      return;
    }
  }
}

}  // namespace vhostuser
