// The guest's memory as the frontend described it in SET_MEM_TABLE: up to eight regions,
// each a shared fd we map.  Every address the guest hands us (descriptor buffers in
// guest-physical space, ring addresses in the frontend's virtual space) is translated
// here, always as a whole range that must lie inside one region: a buffer that runs off
// a region's end, or spans two regions, is refused rather than followed.  A file that
// shrinks after it was mapped is caught by SigbusGuard (sigbus_guard.h).
#ifndef NETDEV_VHOSTUSER_MEMORY_GUEST_MEMORY_H
#define NETDEV_VHOSTUSER_MEMORY_GUEST_MEMORY_H

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "memory/file_mapping.h"
#include "protocol/protocol.h"

namespace vhostuser {

class GuestMemory {
 public:
  struct Region {
    uint64_t guest_phys_addr;
    uint64_t size;
    uint64_t user_addr;
    uint8_t* host;  // Host address of guest_phys_addr.
  };

  // Validates 'regions' and maps each over the matching fd (the fds stay the caller's),
  // the region's own pages only (file_mapping.h).  Refuses zero-sized, overflowing or
  // overlapping regions, a region beyond its fd's size and an fd that is not a regular
  // file or memfd.
  // 'closer_owner': whose the mappings' fds are when FdCloser closes them
  // (FileMapping::Map()).
  static absl::StatusOr<std::unique_ptr<GuestMemory>> Map(
      std::span<const MemoryRegionDesc> regions, std::span<const int> fds,
      uint32_t closer_owner = 0);

  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  // Host pointer to [addr, addr + len) in guest-physical (TranslateGuest) or frontend
  // virtual (TranslateUser) space, or nullptr unless the whole range is in one region.
  uint8_t* TranslateGuest(uint64_t addr, uint64_t len) const {
    for (const Region& r : regions_) {
      uint64_t offset = addr - r.guest_phys_addr;  // Wraps for addr below the region.
      if (offset < r.size && len <= r.size - offset) return r.host + offset;
    }
    return nullptr;
  }
  uint8_t* TranslateUser(uint64_t addr, uint64_t len) const {
    for (const Region& r : regions_) {
      uint64_t offset = addr - r.user_addr;
      if (offset < r.size && len <= r.size - offset) return r.host + offset;
    }
    return nullptr;
  }

  // The first region whose mapping lost its backing (SigbusGuard caught a SIGBUS in it:
  // its file was truncated, or the huge pages behind it ran out), or -1.  Any thread.
  int LostRegion() const;

  std::span<const Region> regions() const { return regions_; }
  // What the regions take of our address space.
  uint64_t mapped_bytes() const;

 private:
  GuestMemory() = default;
  // What the data path reads, packed together; files_[i] holds regions_[i]'s pages.
  std::vector<Region> regions_;
  std::vector<FileMapping> files_;
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_MEMORY_GUEST_MEMORY_H
