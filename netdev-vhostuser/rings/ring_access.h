// How the virtqueue code touches guest memory and its own counters.
#ifndef NETDEV_VHOSTUSER_RINGS_RING_ACCESS_H
#define NETDEV_VHOSTUSER_RINGS_RING_ACCESS_H

#include <atomic>
#include <cstdint>

#include "vhostuser/vhostuser.h"

namespace vhostuser {

// The guest writes the rings while we read them: every guest-written field is loaded
// exactly once into a local, which is then checked and used, so the guest cannot change
// a value between our check and our use of it.
template <typename T>
T ReadOnce(const T* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}

template <typename T>
void WriteOnce(T* p, T v) {
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

// Starts taking the cache line at 'p' for writing.  __builtin_prefetch(p, 1) emits a
// plain read prefetch unless the build targets PREFETCHW (-mprfchw): the line then
// arrives shared, and the store still waits for the other CPU to give it up.  x86-64
// processors without PREFETCHW execute it as a no-op.
inline void PrefetchForWrite(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p, 1);
#endif
}

// Whether 'a' and 'b' are in one 64-byte cache line.
inline bool SameLine(const void* a, const void* b) {
  return ((reinterpret_cast<uintptr_t>(a) ^ reinterpret_cast<uintptr_t>(b)) >> 6) == 0;
}

// Frames larger than this are not Ethernet frames any datapath handles (no GSO is
// negotiated); a guest sending one has them dropped and counted.  A port may set a lower
// limit (vhu_port_options.max_rx_frame_size).
inline constexpr uint32_t kMaxFrameSize = VHU_MAX_FRAME_SIZE;

// One writer per counter (the vring lock holder): a plain read-modify-write avoids the
// locked instruction of fetch_add while readers still see whole values.
inline void Add(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RINGS_RING_ACCESS_H
