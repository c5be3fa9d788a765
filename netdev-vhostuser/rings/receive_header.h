// The virtio-net header we put in front of each frame we give the guest.
#ifndef NETDEV_VHOSTUSER_RINGS_RECEIVE_HEADER_H
#define NETDEV_VHOSTUSER_RINGS_RECEIVE_HEADER_H

#include <cstdint>
#include <cstring>

#include "protocol/protocol.h"

namespace vhostuser {

// Stores the virtio-net header in a receive buffer, leaving alone each word the buffer
// already holds.  A guest that reuses its buffers finds the header it saw last time
// (DPDK's virtio PMD puts its own transmit header in the same bytes and clears it the
// same way): the header's cache line then stays clean, shared by both CPUs, instead of
// being taken into ours and fetched back by the guest on every packet.  Reading the
// guest's bytes is harmless: a guest that changes them meanwhile only races itself.
inline void StoreWordUnlessEqual(uint8_t* dst, const uint8_t* src, size_t n) {
  uint64_t have = 0, want = 0;
  memcpy(&have, dst, n);
  memcpy(&want, src, n);
  if (have != want) memcpy(dst, src, n);
}

inline void StoreHeader(uint8_t* dst, const uint8_t* header, uint32_t header_size) {
  static_assert(sizeof(VirtioNetHeader) == 12 && kLegacyNetHeaderSize == 10);
  // Two words of constant size each: a few moves and compares, no call.
  StoreWordUnlessEqual(dst, header, 8);
  if (header_size == sizeof(VirtioNetHeader)) {
    StoreWordUnlessEqual(dst + 8, header + 8, 4);
  } else {
    StoreWordUnlessEqual(dst + 8, header + 8, 2);
  }
}

// The header of a frame that one receive buffer holds whole: no offloads, and
// num_buffers (bytes 10 and 11, absent from the legacy 10-byte header) 1.
inline constexpr uint8_t kOneBufferHeader[sizeof(VirtioNetHeader)] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RINGS_RECEIVE_HEADER_H
