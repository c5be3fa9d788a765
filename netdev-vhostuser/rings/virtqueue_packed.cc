// The packed virtqueue (virtio 1.x section 2.8), device side.
//
// One ring of descriptors that the driver makes available and the device marks used
// in place: a descriptor is available when its AVAIL flag equals the driver's wrap
// counter and its USED flag does not; the device writes a used descriptor (buffer id,
// length) over the first descriptor of each buffer, its flags last.  Our positions
// (last_avail_idx_, used_idx_) wrap at the ring size and flip the wrap counters.
//
// The same rules as the split ring apply to what the guest writes: each field is read
// once, every buffer is translated whole, chains are bounded by the ring size and
// indirect tables by their length, and a ring that breaks the rules fails.
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include <unistd.h>

#include "absl/strings/str_format.h"
#include "rings/ring_access.h"
#include "rings/virtqueue.h"

namespace vhostuser {
namespace {

// Event suppression (virtio 1.x 2.8.10): {off_wrap, flags}.
constexpr uint16_t kEventFlagsEnable = 0;
constexpr uint16_t kEventFlagsDisable = 1;
constexpr uint16_t kEventFlagsDesc = 2;

}  // namespace

absl::Status Virtqueue::RemapPacked(const GuestMemory* memory) {
  const uint64_t ring_bytes = uint64_t{sizeof(PackedDesc)} * size_;
  auto* ring = memory->TranslateUser(address_.desc_user_addr, ring_bytes);
  auto* driver_event = memory->TranslateUser(address_.avail_user_addr, 4);
  auto* device_event = memory->TranslateUser(address_.used_user_addr, 4);
  if (ring == nullptr || driver_event == nullptr || device_event == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "packed ring (desc %#x driver %#x device %#x, size %d) is not inside guest memory",
        address_.desc_user_addr, address_.avail_user_addr, address_.used_user_addr,
        size_));
  }
  if (reinterpret_cast<uintptr_t>(ring) % 16 ||
      reinterpret_cast<uintptr_t>(driver_event) % 4 ||
      reinterpret_cast<uintptr_t>(device_event) % 4) {
    return absl::InvalidArgumentError("packed ring addresses are misaligned");
  }
  auto overlap = [](const uint8_t* a, uint64_t a_len, const uint8_t* b, uint64_t b_len) {
    return a < b + b_len && b < a + a_len;
  };
  if (overlap(ring, ring_bytes, driver_event, 4) ||
      overlap(ring, ring_bytes, device_event, 4) ||
      overlap(driver_event, 4, device_event, 4)) {
    return absl::InvalidArgumentError("ring areas overlap each other");
  }
  packed_desc_ = reinterpret_cast<PackedDesc*>(ring);
  avail_ = reinterpret_cast<uint16_t*>(driver_event);
  used_ = device_event;
  memory_ = memory;
  return absl::OkStatus();
}

void Virtqueue::PrewalkPackedBurst(uint32_t count, bool writable, uint32_t skip,
                                   PackedBurstEntry* entries) {
  burst_count_ = 0;
  packed_burst_ = entries;
  packed_burst_start_ = last_avail_idx_;
  packed_burst_wrap_ = avail_wrap_;
  const std::span<const GuestMemory::Region> regions = memory_->regions();
  if (regions.empty()) return;  // Nothing translates; the full walk fails the ring.
  // The first region, where a guest's buffers usually all are, kept in registers.
  const uint64_t first_base = regions[0].guest_phys_addr;
  const uint64_t first_size = regions[0].size;
  uint8_t* const first_host = regions[0].host;
  constexpr uint16_t kShape = kDescFlagNext | kDescFlagIndirect | kDescFlagWrite;
  uint16_t position = last_avail_idx_;
  bool wrap = avail_wrap_;
  count = std::min({count, size_, kMaxBurstEntries});
  uint32_t i = 0;
  for (; i < count; ++i) {
    const PackedDesc* slot = &packed_desc_[position];
    // Acquire, as in PackedDescAvailable(); the one read of the flags decides both
    // availability and shape.
    const uint16_t flags = __atomic_load_n(&slot->flags, __ATOMIC_ACQUIRE);
    if (!PackedFlagsAvailable(flags, wrap)) break;
    const uint64_t addr = ReadOnce(&slot->addr);
    const uint32_t len = ReadOnce(&slot->len);
    const uint16_t id = ReadOnce(&slot->id);
    // Anything else (a chain, an indirect table, an empty buffer, a bad id) is left to
    // WalkPackedChain(), which accepts it or fails the ring with the reason.
    if ((flags & kShape) != (writable ? kDescFlagWrite : 0) || len == 0 || id >= size_) {
      break;
    }
    const uint64_t offset = addr - first_base;  // As GuestMemory::TranslateGuest().
    uint8_t* data = offset < first_size && len <= first_size - offset
                        ? first_host + offset
                        : memory_->TranslateGuest(addr, len);
    if (data == nullptr) break;
    entries[i] = PackedBurstEntry{data, len, id};
    PrefetchBuffer(data, len, skip, writable);
    if (++position == size_) {
      position = 0;
      wrap = !wrap;
    }
  }
  burst_count_ = i;
}

bool Virtqueue::WalkPackedChain(uint16_t position, bool writable, uint16_t* n_descs,
                                uint32_t* n_segments, uint64_t* total, uint16_t* id) {
  uint32_t descs = 0;
  uint32_t n = 0;
  uint64_t bytes = 0;
  auto add_buffer = [&](uint64_t addr, uint32_t len, uint16_t flags) {
    return AddSegment(addr, len, flags, writable, &n, &bytes);
  };

  for (;;) {
    if (descs == size_) {
      Fail("descriptor chain longer than the ring");
      return false;
    }
    if (descs == kMaxChainDescriptors) {
      Fail("descriptor chain has more than 256 descriptors");
      return false;
    }
    if (!SpendWalkBudget()) return false;
    const PackedDesc* slot = &packed_desc_[position];
    const uint64_t addr = ReadOnce(&slot->addr);
    const uint32_t len = ReadOnce(&slot->len);
    const uint16_t buffer_id = ReadOnce(&slot->id);
    const uint16_t flags = ReadOnce(&slot->flags);
    ++descs;
    if (++position == size_) position = 0;

    if (flags & kDescFlagIndirect) {
      if (!features_.indirect || (flags & kDescFlagNext) || n != 0) {
        Fail("indirect descriptor not allowed here");
        return false;
      }
      if (len == 0 || len % sizeof(PackedDesc) != 0 || len / sizeof(PackedDesc) > size_) {
        Fail("indirect table length is not a whole number of descriptors");
        return false;
      }
      if (len / sizeof(PackedDesc) > kMaxChainDescriptors) {
        Fail("indirect table has more than 256 descriptors");
        return false;
      }
      const auto* table =
          reinterpret_cast<const PackedDesc*>(memory_->TranslateGuest(addr, len));
      // The spec asks no alignment of an indirect table; its descriptors' own (8 bytes,
      // for the atomic loads of their 64-bit addresses) is all we need.
      if (table == nullptr || reinterpret_cast<uintptr_t>(table) % alignof(PackedDesc)) {
        Fail("indirect table is not inside guest memory");
        return false;
      }
      // The table's entries are consecutive; their NEXT flags mean nothing.
      for (uint32_t i = 0; i < len / sizeof(PackedDesc); ++i) {
        if (!SpendWalkBudget()) return false;
        const uint16_t entry_flags = ReadOnce(&table[i].flags);
        if (entry_flags & kDescFlagIndirect) {
          Fail("indirect descriptor inside an indirect table");
          return false;
        }
        if (!add_buffer(ReadOnce(&table[i].addr), ReadOnce(&table[i].len), entry_flags)) {
          return false;
        }
      }
      *id = buffer_id;
      break;
    }
    if (!add_buffer(addr, len, flags)) return false;
    if (!(flags & kDescFlagNext)) {
      *id = buffer_id;  // The buffer id is the chain's last descriptor's.
      break;
    }
  }
  if (*id >= size_) {
    Fail("buffer id out of range");
    return false;
  }
  *n_descs = static_cast<uint16_t>(descs);
  *n_segments = n;
  *total = bytes;
  return true;
}

// A used descriptor's flags: AVAIL and USED equal to the used wrap counter, and WRITE
// when the device wrote into the buffer.  Without WRITE, the spec has the driver ignore
// the length (virtio 1.x 2.8.6): a receive buffer's must come with it.
static uint16_t PackedUsedFlags(bool wrap, uint32_t len) {
  return static_cast<uint16_t>((wrap ? (kPackedFlagAvail | kPackedFlagUsed) : 0) |
                               (len != 0 ? kDescFlagWrite : 0));
}

void Virtqueue::FlushPackedUsed() {
  if (n_pending_ == 0) return;
  const uint16_t first = used_idx_;
  const uint16_t first_flags = PackedUsedFlags(used_wrap_, pending_[0].len);
  for (uint32_t i = 0; i < n_pending_; ++i) {
    const PendingUsed& used = pending_[i];
    PackedDesc* slot = &packed_desc_[used_idx_];
    WriteOnce(&slot->id, used.id);
    WriteOnce(&slot->len, used.len);
    if (i != 0) {
      __atomic_store_n(&slot->flags, PackedUsedFlags(used_wrap_, used.len),
                       __ATOMIC_RELEASE);
    }
    used_idx_ = static_cast<uint16_t>(used_idx_ + used.n_descs);
    if (used_idx_ >= size_) {
      used_idx_ = static_cast<uint16_t>(used_idx_ - size_);
      used_wrap_ = !used_wrap_;
    }
  }
  // Publishes the burst: every element before it in program order is visible first.
  __atomic_store_n(&packed_desc_[first].flags, first_flags, __ATOMIC_RELEASE);
  n_pending_ = 0;
}

void Virtqueue::LogPackedUsed(uint16_t old_used, bool old_wrap) const {
  // The burst wrote used elements between old_used and used_idx_: one run of the
  // descriptor ring, two if it wrapped, all of it if it went round.  Marking the whole
  // span, elements skipped over by multi-descriptor chains included, costs one or two
  // calls per burst instead of one per element.
  const bool wrapped = used_wrap_ != old_wrap;
  if (wrapped && used_idx_ >= old_used) {
    LogWrite(packed_desc_, uint64_t{size_} * sizeof(PackedDesc));
  } else if (wrapped) {
    LogWrite(&packed_desc_[old_used], uint64_t{size_ - old_used} * sizeof(PackedDesc));
    LogWrite(packed_desc_, uint64_t{used_idx_} * sizeof(PackedDesc));
  } else {
    LogWrite(&packed_desc_[old_used],
             static_cast<uint64_t>(used_idx_ - old_used) * sizeof(PackedDesc));
  }
}

void Virtqueue::FinishPackedBurst(uint16_t old_used, bool old_wrap) {
  if (used_idx_ == old_used && used_wrap_ == old_wrap) return;
  if (__builtin_expect(log_ != nullptr, 0)) LogPackedUsed(old_used, old_wrap);
  MaybeInterruptPacked(old_used, old_wrap);
}

void Virtqueue::MaybeInterruptPacked(uint16_t old_used, bool old_wrap) {
  if (!call_.valid()) return;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // The driver writes off_wrap, then flags (with a write barrier between): reading flags
  // with acquire makes the off_wrap read below see the value written with them.  Two
  // relaxed loads may be satisfied out of order (arm64 does), and a new flags with an
  // old off_wrap names a position already passed: the interrupt the driver waits for
  // would never come.
  const uint16_t flags = __atomic_load_n(&avail_[1], __ATOMIC_ACQUIRE);
  bool needed;
  if (flags == kEventFlagsDesc && features_.event_idx) {
    // Interrupt if the position the driver named (with its wrap counter) lies in
    // [old_used, used_idx_), all counted in one 16-bit space.
    const uint16_t off_wrap = ReadOnce(&avail_[0]);
    const uint16_t new_used = used_idx_;
    const bool wrapped = used_wrap_ != old_wrap;
    if (wrapped && new_used >= old_used) {
      needed = true;  // More than a whole ring since the last interrupt.
    } else {
      const uint16_t old = wrapped ? static_cast<uint16_t>(old_used - size_) : old_used;
      uint16_t event = off_wrap & 0x7fff;
      if (used_wrap_ != static_cast<bool>(off_wrap >> 15)) {
        event = static_cast<uint16_t>(event - size_);
      }
      needed = static_cast<uint16_t>(new_used - event - 1) <
               static_cast<uint16_t>(new_used - old);
    }
  } else {
    needed = flags != kEventFlagsDisable;  // Enable, or Desc without EVENT_IDX.
  }
  if (needed) Interrupt();
}

uint32_t Virtqueue::DequeuePacked(vhu_alloc_fn* alloc, void* aux, void** pkts,
                                  uint32_t max, uint32_t* n_dropped) {
  *n_dropped = 0;
  if (!accessible()) return 0;
  const uint16_t old_used = used_idx_;
  const bool old_wrap = used_wrap_;
  uint32_t received = 0, dropped = 0;
  uint64_t bytes = 0;
  // With VIRTIO_F_IN_ORDER the burst's buffers go back as one used descriptor, the
  // last buffer's id over the first buffer's slot, and the driver skips over the rest
  // (virtio 1.x 2.8.20): one line of the ring written instead of a line per four
  // buffers, and one for the driver to read back.  A transmit buffer's used length
  // is 0, so nothing else is lost.  Receive buffers report lengths and go one by one.
  uint32_t in_order_descs = 0;
  uint16_t in_order_id = 0;
  StartWalkBudget(max);
  PackedBurstEntry entries[kMaxBurstEntries];
  PrewalkPackedBurst(max, /*writable=*/false, features_.net_header_size, entries);
  for (uint32_t i = 0; i < max; ++i) {
    const PackedBurstEntry* entry = PrewalkedAt(last_avail_idx_, avail_wrap_);
    // A pre-walked entry is a lone buffer below burst_count_ <= size_ descriptors into
    // the burst, so of the ring's-worth limits below only n_pending_'s can bind.
    if (entry != nullptr && TransmitBufferTaken(entry->len) && n_pending_ < size_) {
      void* pkt = CopyTransmitFrame(entry->data, entry->len, alloc, aux);
      if (pkt == nullptr) break;
      --walk_budget_;
      pkts[received++] = pkt;
      bytes += entry->len - features_.net_header_size;
      if (features_.in_order) {
        ++in_order_descs;
        in_order_id = entry->id;
      } else {
        pending_[n_pending_++] = PendingUsed{entry->id, 1, 0};
      }
      AdvanceAvail(1);
      continue;
    }
    if (entry == nullptr && !PackedDescAvailable(last_avail_idx_, avail_wrap_)) break;
    uint16_t n_descs, id;
    uint32_t n_segments;
    uint64_t total;
    if (!NextPackedChain(last_avail_idx_, /*writable=*/false, &n_descs, &n_segments,
                         &total, &id, entry)) {
      break;
    }
    // A ring's worth in this burst already, in buffers or in descriptors: a guest that
    // re-posts descriptors we have not returned, or chains that run into the next lap,
    // cannot make one burst take more (nor the in-order batch count more).
    if (n_pending_ == size_ || BurstDescs(last_avail_idx_, avail_wrap_) + n_descs > size_) {
      break;
    }
    if (!TakeFrame(n_segments, total, alloc, aux, pkts, &received, &bytes, &dropped)) {
      break;
    }
    if (features_.in_order) {
      in_order_descs += n_descs;
      in_order_id = id;
    } else {
      QueuePackedUsed(PendingUsed{id, n_descs, 0});
    }
    AdvanceAvail(n_descs);
  }
  burst_count_ = 0;
  if (in_order_descs != 0) {
    QueuePackedUsed(PendingUsed{in_order_id, static_cast<uint16_t>(in_order_descs), 0});
  }
  FlushPackedUsed();
  FinishPackedBurst(old_used, old_wrap);
  CountBurst(received, bytes, dropped);
  *n_dropped = dropped;
  return received;
}

bool Virtqueue::EnqueueOnePacked(const vhu_tx_packet& pkt, bool* fits) {
  const uint32_t header_size = features_.net_header_size;
  const uint64_t need = uint64_t{header_size} + pkt.size;
  uint8_t header[sizeof(VirtioNetHeader)] = {};
  uint8_t* num_buffers_bytes[2] = {nullptr, nullptr};
  const auto* frame = static_cast<const uint8_t*>(pkt.data);

  uint16_t position = last_avail_idx_;
  bool wrap = avail_wrap_;
  uint32_t n_buffers = 0;
  uint32_t descs = 0;
  uint64_t written = 0;
  bool num_buffers_known = false;
  while (written < need) {
    // As in EnqueueOne(): a whole ring's descriptors taken, none can follow.
    if (descs >= size_ || (n_buffers == 1 && !features_.mergeable_rx)) {
      *fits = true;  // Larger than this guest's buffers will ever hold: drop it.
      return false;
    }
    const PackedBurstEntry* entry = PrewalkedAt(position, wrap);
    if (entry == nullptr && !PackedDescAvailable(position, wrap)) {
      *fits = false;  // The guest has not posted enough buffers yet.
      return false;
    }
    uint16_t n_descs, id;
    uint32_t n_segments;
    uint64_t capacity;
    if (!NextPackedChain(position, /*writable=*/true, &n_descs, &n_segments, &capacity,
                         &id, entry)) {
      *fits = false;
      return false;
    }
    if (capacity < header_size) {
      Fail("receive buffer smaller than the virtio-net header");
      *fits = false;
      return false;
    }
    if ((!features_.mergeable_rx && capacity < need) || descs + n_descs > size_) {
      *fits = true;
      return false;
    }
    if (n_pending_ + n_buffers == size_ || BurstDescs(position, wrap) + n_descs > size_) {
      *fits = false;  // A ring's worth in this burst already: the next one takes it.
      return false;
    }
    if (n_buffers == 0 && capacity >= need && header_size == sizeof(VirtioNetHeader)) {
      // The usual case, as in the split ring's EnqueueOne(): num_buffers is 1 and goes
      // out with the header, unchanged in a reused buffer, with no patch.
      header[10] = 1;
      num_buffers_known = true;
    }
    const uint32_t in_buffer =
        FillBuffer(n_segments, header, frame, need, &written, num_buffers_bytes);
    pending_[n_pending_ + n_buffers++] = PendingUsed{id, n_descs, in_buffer};
    descs += n_descs;
    position = static_cast<uint16_t>(position + n_descs);
    if (position >= size_) {
      position = static_cast<uint16_t>(position - size_);
      wrap = !wrap;
    }
  }
  if (!num_buffers_known && num_buffers_bytes[0] != nullptr) {
    *num_buffers_bytes[0] = static_cast<uint8_t>(n_buffers);
    *num_buffers_bytes[1] = static_cast<uint8_t>(n_buffers >> 8);
    if (num_buffers_bytes[1] == num_buffers_bytes[0] + 1) {
      LogWrite(num_buffers_bytes[0], 2);
    } else {  // The header was split between two buffers right there.
      LogWrite(num_buffers_bytes[0], 1);
      LogWrite(num_buffers_bytes[1], 1);
    }
  }
  // Only now that the whole packet is written do its buffers join the burst's used
  // elements (FlushPackedUsed() returns them to the guest).
  n_pending_ += n_buffers;
  last_avail_idx_ = position;
  avail_wrap_ = wrap;
  *fits = true;
  return true;
}

uint32_t Virtqueue::EnqueuePacked(const vhu_tx_packet* pkts, uint32_t n,
                                  uint32_t* n_dropped) {
  uint32_t dropped = 0, consumed = 0;
  if (accessible()) {
    const uint16_t old_used = used_idx_;
    const bool old_wrap = used_wrap_;
    uint64_t bytes = 0;
    StartWalkBudget(n);
    PackedBurstEntry entries[kMaxBurstEntries];
    PrewalkPackedBurst(n, /*writable=*/true, features_.net_header_size, entries);
    for (; consumed < n; ++consumed) {
      const PackedBurstEntry* entry = PrewalkedAt(last_avail_idx_, avail_wrap_);
      // As in DequeuePacked(): of EnqueueOnePacked()'s ring's-worth limits, only
      // n_pending_'s can bind a pre-walked lone buffer.
      if (entry != nullptr && n_pending_ < size_) {
        if (uint32_t written =
                FillLoneReceiveBuffer(entry->data, entry->len, pkts[consumed])) {
          --walk_budget_;
          pending_[n_pending_++] = PendingUsed{entry->id, 1, written};
          AdvanceAvail(1);
          bytes += pkts[consumed].size;
          continue;
        }
      }
      bool fits;
      if (!EnqueueOnePacked(pkts[consumed], &fits)) {
        if (!fits) break;
        ++dropped;
      } else {
        bytes += pkts[consumed].size;
      }
    }
    burst_count_ = 0;
    FlushPackedUsed();
    FinishPackedBurst(old_used, old_wrap);
    CountBurst(consumed - dropped, bytes, dropped);
  }
  if (n_dropped != nullptr) *n_dropped = dropped;
  return consumed;
}

}  // namespace vhostuser
