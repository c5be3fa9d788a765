#include "memory/guest_memory.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "memory/file_mapping.h"

namespace vhostuser {
namespace {

bool AddOverflows(uint64_t a, uint64_t b) { return a + b < a; }

bool RangesOverlap(uint64_t a, uint64_t a_size, uint64_t b, uint64_t b_size) {
  return a < b + b_size && b < a + a_size;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::Map(
    std::span<const MemoryRegionDesc> regions, std::span<const int> fds,
    uint32_t closer_owner) {
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
  memory->files_.reserve(regions.size());
  for (size_t i = 0; i < regions.size(); ++i) {
    const MemoryRegionDesc& r = regions[i];
    absl::StatusOr<FileMapping> file =
        FileMapping::Map(fds[i], r.mmap_offset, r.memory_size, absl::StrCat("region ", i),
                         closer_owner);
    if (!file.ok()) return file.status();
    memory->regions_.push_back(Region{
        .guest_phys_addr = r.guest_phys_addr,
        .size = r.memory_size,
        .user_addr = r.userspace_addr,
        .host = file->data(),
    });
    memory->files_.push_back(*std::move(file));
  }
  return memory;
}

int GuestMemory::LostRegion() const {
  for (size_t i = 0; i < files_.size(); ++i) {
    if (files_[i].lost()) return static_cast<int>(i);
  }
  return -1;
}

uint64_t GuestMemory::mapped_bytes() const {
  uint64_t total = 0;
  for (const FileMapping& file : files_) total += file.mapped_bytes();
  return total;
}

}  // namespace vhostuser
