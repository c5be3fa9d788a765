// The vrings of one device, each created by the first request that names it.
//
// A port waiting for its guest holds no vring at all, not even the table of pointers
// (2 KiB), and a guest pays for the queues it sets up, up to VHU_MAX_VRINGS: a
// Virtqueue carries its chain-walk scratch space (16 KiB), so a table of them all
// would cost every idle port megabytes once queue pairs number in the hundreds.
//
// Only the control thread creates vrings; the data path looks them up from any thread.
// A vring, once created, lives as long as the table, so a pointer the data path got
// stays valid while it holds the vring's lock; Device::Reset() stops vrings but keeps
// them for the next frontend.
#ifndef NETDEV_VHOSTUSER_CONTROL_VRING_TABLE_H
#define NETDEV_VHOSTUSER_CONTROL_VRING_TABLE_H

#include <array>
#include <atomic>
#include <cstdint>

#include "rings/virtqueue.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser {

class VringTable {
 public:
  VringTable() = default;
  VringTable(const VringTable&) = delete;
  VringTable& operator=(const VringTable&) = delete;
  ~VringTable() {
    Slots* slots = slots_.load(std::memory_order_relaxed);
    if (slots == nullptr) return;
    for (auto& slot : *slots) delete slot.load(std::memory_order_relaxed);
    delete slots;
  }

  // Any thread: the vring, or nullptr if no request has named it yet (or 'index' is out
  // of range).
  Virtqueue* Find(unsigned index) const {
    const Slots* slots = slots_.load(std::memory_order_acquire);
    if (slots == nullptr || index >= VHU_MAX_VRINGS) return nullptr;
    return (*slots)[index].load(std::memory_order_acquire);
  }

  // Control thread: the vring, created if need be.  'index' < VHU_MAX_VRINGS.
  Virtqueue& GetOrCreate(unsigned index) {
    Slots* slots = slots_.load(std::memory_order_relaxed);
    if (slots == nullptr) {
      slots = new Slots{};
      slots_.store(slots, std::memory_order_release);
    }
    Virtqueue* vq = (*slots)[index].load(std::memory_order_relaxed);
    if (vq == nullptr) {
      vq = new Virtqueue();
      (*slots)[index].store(vq, std::memory_order_release);
      if (index + 1 > end_) end_ = index + 1;
    }
    return *vq;
  }

  // Control thread: calls f(index, vring) for every vring created so far, in order.
  template <typename F>
  void ForEach(F&& f) const {
    const Slots* slots = slots_.load(std::memory_order_relaxed);
    for (unsigned i = 0; i < end_; ++i) {
      if (Virtqueue* vq = (*slots)[i].load(std::memory_order_relaxed)) f(i, *vq);
    }
  }

 private:
  using Slots = std::array<std::atomic<Virtqueue*>, VHU_MAX_VRINGS>;
  std::atomic<Slots*> slots_{nullptr};  // Allocated with the first vring.
  unsigned end_ = 0;  // Highest index created, plus one.
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_CONTROL_VRING_TABLE_H
