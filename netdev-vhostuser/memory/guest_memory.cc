#include "memory/guest_memory.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/sigbus_guard.h"

namespace vhostuser {
namespace {

bool AddOverflows(uint64_t a, uint64_t b) { return a + b < a; }

bool RangesOverlap(uint64_t a, uint64_t a_size, uint64_t b, uint64_t b_size) {
  return a < b + b_size && b < a + a_size;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::Map(
    std::span<const MemoryRegionDesc> regions, std::span<const int> fds) {
  if (regions.empty() || regions.size() > kMaxMemoryRegions) {
    return absl::InvalidArgumentError(
        absl::StrCat("memory table has ", regions.size(), " regions (1 to ",
                     kMaxMemoryRegions, " allowed)"));
  }
  if (fds.size() != regions.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory table has ", regions.size(), " regions but ", fds.size(), " fds"));
  }
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemoryRegionDesc& r = regions[i];
    if (r.memory_size == 0) {
      return absl::InvalidArgumentError(absl::StrCat("region ", i, " is empty"));
    }
    if (AddOverflows(r.guest_phys_addr, r.memory_size) ||
        AddOverflows(r.userspace_addr, r.memory_size) ||
        AddOverflows(r.mmap_offset, r.memory_size)) {
      return absl::InvalidArgumentError(
          absl::StrCat("region ", i, " overflows the address space"));
    }
    for (size_t j = 0; j < i; ++j) {
      const MemoryRegionDesc& o = regions[j];
      if (RangesOverlap(r.guest_phys_addr, r.memory_size, o.guest_phys_addr,
                        o.memory_size) ||
          RangesOverlap(r.userspace_addr, r.memory_size, o.userspace_addr,
                        o.memory_size)) {
        return absl::InvalidArgumentError(
            absl::StrCat("regions ", j, " and ", i, " overlap"));
      }
    }
  }

  std::unique_ptr<GuestMemory> memory(new GuestMemory);
  memory->regions_.reserve(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemoryRegionDesc& r = regions[i];
    struct stat st;
    if (fstat(fds[i], &st) != 0 || !S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("region ", i, " fd is not a shared-memory file"));
    }
    // Mapping past the end of the file would turn the guest's accesses into SIGBUS.
    uint64_t end = r.mmap_offset + r.memory_size;
    if (end > static_cast<uint64_t>(st.st_size)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "region %d ends at file offset %#x, beyond the file's %#x bytes", i, end,
          st.st_size));
    }
    // Hugetlbfs wants lengths in whole huge pages; st_blksize is that page size there.
    uint64_t align = st.st_blksize > 0 ? static_cast<uint64_t>(st.st_blksize) : 4096;
    if ((align & (align - 1)) != 0) align = 4096;
    uint64_t map_size = (end + align - 1) & ~(align - 1);
    if (map_size < end || map_size > SIZE_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("region ", i, " is too large"));
    }
    void* base = mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
    if (base == MAP_FAILED) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "mmap of region ", i, " (", map_size, " bytes) failed: ", strerror(errno)));
    }
    // The frontend can still shrink the file under the mapping.
    const int guard = SigbusGuard::Register(base, map_size, align);
    if (guard < 0) {
      munmap(base, map_size);
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot map region ", i, ": ", SigbusGuard::kMaxMappings,
                       " guest memory regions are mapped already"));
    }
    memory->regions_.push_back(Region{
        .guest_phys_addr = r.guest_phys_addr,
        .size = r.memory_size,
        .user_addr = r.userspace_addr,
        .host = static_cast<uint8_t*>(base) + r.mmap_offset,
        .mapping = base,
        .mapping_size = static_cast<size_t>(map_size),
        .sigbus_guard = guard,
    });
  }
  return memory;
}

GuestMemory::~GuestMemory() {
  for (const Region& r : regions_) {
    SigbusGuard::Unregister(r.sigbus_guard);
    munmap(r.mapping, r.mapping_size);
  }
}

int GuestMemory::LostRegion() const {
  for (size_t i = 0; i < regions_.size(); ++i) {
    if (SigbusGuard::Faulted(regions_[i].sigbus_guard)) return static_cast<int>(i);
  }
  return -1;
}

uint64_t GuestMemory::mapped_bytes() const {
  uint64_t total = 0;
  for (const Region& r : regions_) total += r.mapping_size;
  return total;
}

}  // namespace vhostuser
