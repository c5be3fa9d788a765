#include "memory/dirty_log.h"

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace vhostuser {

absl::StatusOr<std::unique_ptr<DirtyLog>> DirtyLog::Map(int fd, uint64_t size,
                                                        uint64_t offset,
                                                        uint64_t max_size,
                                                        uint32_t closer_owner) {
  if (size == 0 || offset + size < offset) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SET_LOG_BASE size %#x at offset %#x is not a log", size, offset));
  }
  if (size > max_size) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "SET_LOG_BASE log of %#x bytes is larger than the %#x bytes that cover eight "
        "times the port's guest memory limit, or its memory table and 32 GiB",
        size, max_size));
  }
  absl::StatusOr<FileMapping> file = FileMapping::Map(fd, offset, size, "SET_LOG_BASE log",
                                                     closer_owner);
  if (!file.ok()) return file.status();
  std::unique_ptr<DirtyLog> log(new DirtyLog);
  log->bitmap_ = file->data();
  log->size_ = size;
  log->file_ = *std::move(file);
  return log;
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
