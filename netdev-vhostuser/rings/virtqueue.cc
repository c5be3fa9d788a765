#include "rings/virtqueue.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rings/receive_header.h"
#include "rings/ring_access.h"

namespace vhostuser {

RingFeatures RingFeaturesFrom(uint64_t features) {
  RingFeatures f;
  f.mergeable_rx = features & Bit(feature::kNetMrgRxbuf);
  f.net_header_size =
      (features & (Bit(feature::kVersion1) | Bit(feature::kNetMrgRxbuf)))
          ? sizeof(VirtioNetHeader)
          : kLegacyNetHeaderSize;
  f.event_idx = features & Bit(feature::kRingEventIdx);
  f.indirect = features & Bit(feature::kRingIndirectDesc);
  f.packed = features & Bit(feature::kRingPacked);
  f.in_order = features & Bit(feature::kInOrder);
  return f;
}

absl::Status Virtqueue::SetSize(uint32_t size, bool packed) {
  // Split rings index with a mask: powers of two only.  Packed rings wrap explicitly.
  if (size == 0 || size > kMaxRingSize || (!packed && (size & (size - 1)) != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ring size ", size, packed ? " is not from 1 to " : " is not a power of two from 1 to ",
        kMaxRingSize));
  }
  if (started_) return absl::FailedPreconditionError("ring size changed while running");
  size_ = size;
  mask_ = size - 1;
  return absl::OkStatus();
}

absl::Status Virtqueue::SetAddresses(const VringAddress& address) {
  if (started_) {
    // QEMU sends the same addresses again to switch the used ring's logging on or off
    // (migration); anything else would move a running ring.
    if (address.desc_user_addr == address_.desc_user_addr &&
        address.avail_user_addr == address_.avail_user_addr &&
        address.used_user_addr == address_.used_user_addr) {
      address_.flags = address.flags;
      address_.log_guest_addr = address.log_guest_addr;
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError("ring addresses changed while running");
  }
  address_ = address;
  address_set_ = true;
  return absl::OkStatus();
}

absl::Status Virtqueue::SetBase(uint32_t base, bool packed) {
  // Packed: bits 0-14 are the driver's next avail position, bit 15 its wrap counter;
  // bits 16-31 the same for the used side.  QEMU sends all 32 bits (a new ring's
  // base is 0x80008000), DPDK's virtio-user the low 16.  We keep nothing in flight
  // across a stop, so the used half can only say the same as the avail half, and a
  // frontend that was told 16 bits before sends it as 0: it is not looked at.
  if (packed) base &= 0xffff;
  if (base > UINT16_MAX || (packed && size_ != 0 && (base & 0x7fff) >= size_)) {
    return absl::InvalidArgumentError(absl::StrCat("ring base ", base, " out of range"));
  }
  if (started_) return absl::FailedPreconditionError("ring base changed while running");
  // Start() sets it again; set here too, so that GET_VRING_BASE on a ring that never
  // started answers in the form it was given (wrap counters included).
  packed_ = packed;
  if (packed) {
    last_avail_idx_ = used_idx_ = static_cast<uint16_t>(base & 0x7fff);
    avail_wrap_ = used_wrap_ = (base >> 15) & 1;
  } else {
    last_avail_idx_ = used_idx_ = published_used_ = static_cast<uint16_t>(base);
  }
  return absl::OkStatus();
}

void Virtqueue::SetKickFd(UniqueFd fd, bool /*polling*/) {
  // We poll the rings and never wait on the kick eventfd; it is kept open only so the
  // frontend's view of the ring (an eventfd we hold) stays what it set up.
  kick_fd_ = std::move(fd);
  kick_received_ = true;
}

absl::Status Virtqueue::Start(const GuestMemory* memory, const RingFeatures& features) {
  if (size_ == 0) return absl::FailedPreconditionError("ring started without a size");
  if (!address_set_) {
    return absl::FailedPreconditionError("ring started without addresses");
  }
  if (memory == nullptr) {
    return absl::FailedPreconditionError("ring started without a memory table");
  }
  features_ = features;
  packed_ = features.packed;
  if (packed_) {
    if (last_avail_idx_ >= size_) {
      return absl::InvalidArgumentError("ring base beyond the ring");
    }
    if (absl::Status s = RemapPacked(memory); !s.ok()) return s;
    pending_.resize(size_);  // Done already when Device prepared the ring.
    // We poll: ask the driver not to notify us (device event suppression: disable).
    __atomic_store_n(reinterpret_cast<uint16_t*>(used_) + 1, uint16_t{1}, __ATOMIC_RELAXED);
    LogWrite(reinterpret_cast<uint16_t*>(used_) + 1, 2);
    started_ = true;
    return absl::OkStatus();
  }
  // SET_VRING_NUM checked the size against the features of that moment; a frontend may
  // have set a packed ring's size, then taken the packed feature back.
  if ((size_ & mask_) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("split ring of size ", size_, ", not a power of two"));
  }
  if (absl::Status s = Remap(memory); !s.ok()) return s;
  shadow_used_.resize(size_);  // Done already when Device prepared the ring.

  // A fresh ring's used->idx is where the driver expects us to continue; if it
  // disagrees with the base we were given, the previous backend left entries in flight
  // that it never completed.  Trust the ring, as the guest does.
  uint16_t used_idx = ReadOnce(reinterpret_cast<uint16_t*>(used_ + 2));
  if (used_idx != used_idx_) {
    last_avail_idx_ = used_idx_ = used_idx;
    interrupt_owed_ = false;  // Not our entries any more.
  }
  published_used_ = used_idx_;
  hold_idle_since_ns_ = 0;
  // We poll: ask the driver not to kick us (the driver ignores this with EVENT_IDX,
  // where avail_event, which we never move, keeps kicks to one per 2^16 entries).
  WriteOnce(reinterpret_cast<uint16_t*>(used_), kUsedFlagNoNotify);
  LogWrite(used_, 2);
  started_ = true;
  return absl::OkStatus();
}

absl::Status Virtqueue::Remap(const GuestMemory* memory) {
  if (packed_) return RemapPacked(memory);
  const uint64_t desc_bytes = uint64_t{sizeof(VringDesc)} * size_;
  const uint64_t avail_bytes = 2 * (3 + uint64_t{size_});  // flags idx ring used_event
  const uint64_t used_bytes = 6 + uint64_t{sizeof(VringUsedElem)} * size_;
  if (address_.desc_user_addr % 16 || address_.avail_user_addr % 2 ||
      address_.used_user_addr % 4) {
    return absl::InvalidArgumentError("ring addresses are misaligned");
  }
  auto* desc = memory->TranslateUser(address_.desc_user_addr, desc_bytes);
  auto* avail = memory->TranslateUser(address_.avail_user_addr, avail_bytes);
  auto* used = memory->TranslateUser(address_.used_user_addr, used_bytes);
  if (desc == nullptr || avail == nullptr || used == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ring (desc %#x avail %#x used %#x, size %d) is not inside guest memory",
        address_.desc_user_addr, address_.avail_user_addr, address_.used_user_addr,
        size_));
  }
  // Aligned in the frontend's address space is not enough: a region whose mmap_offset
  // is not a multiple of 8 moves every address of it in our mapping.  Misaligned rings
  // would be undefined behaviour here and a bus error on the atomic loads of arm64.
  if (reinterpret_cast<uintptr_t>(desc) % alignof(VringDesc) ||
      reinterpret_cast<uintptr_t>(avail) % alignof(uint16_t) ||
      reinterpret_cast<uintptr_t>(used) % alignof(VringUsedElem)) {
    return absl::InvalidArgumentError(
        "ring addresses are misaligned in the memory table's mapping (mmap_offset)");
  }
  auto overlap = [](const uint8_t* a, uint64_t a_len, const uint8_t* b, uint64_t b_len) {
    return a < b + b_len && b < a + a_len;
  };
  const auto* d = reinterpret_cast<const uint8_t*>(desc);
  if (overlap(d, desc_bytes, avail, avail_bytes) ||
      overlap(d, desc_bytes, used, used_bytes) ||
      overlap(avail, avail_bytes, used, used_bytes)) {
    return absl::InvalidArgumentError("ring areas overlap each other");
  }
  desc_ = reinterpret_cast<VringDesc*>(desc);
  avail_ = reinterpret_cast<uint16_t*>(avail);
  used_ = used;
  memory_ = memory;
  return absl::OkStatus();
}

uint32_t Virtqueue::Stop() {
  // The transmit buffers held back go back first (kTransmitHold): the frontend reads
  // used->idx next, and a new backend would take them for never sent.
  ReturnHeldQuietly();
  started_ = false;
  kick_received_ = false;
  kick_fd_.reset();
  memory_ = nullptr;
  desc_ = nullptr;
  packed_desc_ = nullptr;
  avail_ = nullptr;
  used_ = nullptr;
  // Packed: both halves (SetBase()), so that a frontend restoring the ring in its own
  // device, as QEMU does after a migration without a backend, finds the used side too.
  if (packed_) {
    return (last_avail_idx_ | (uint32_t{avail_wrap_} << 15)) |
           (used_idx_ | (uint32_t{used_wrap_} << 15)) << 16;
  }
  return last_avail_idx_;
}

void Virtqueue::PrepareBurstState(bool packed) {
  if (packed) {
    std::vector<VringUsedElem>().swap(shadow_used_);
    if (pending_.size() != size_) std::vector<PendingUsed>(size_).swap(pending_);
  } else {
    std::vector<PendingUsed>().swap(pending_);
    if (shadow_used_.size() != size_) std::vector<VringUsedElem>(size_).swap(shadow_used_);
  }
}

void Virtqueue::ReleaseBurstState() {
  std::vector<PendingUsed>().swap(pending_);
  std::vector<VringUsedElem>().swap(shadow_used_);
}

void Virtqueue::Reset() {
  Stop();
  log_ = nullptr;
  awaiting_log_ = false;
  log_needed_ = 0;
  size_ = mask_ = 0;
  address_ = {};
  address_set_ = false;
  enabled_ = false;
  call_.Reset();
  err_fd_.reset();
  last_avail_idx_ = used_idx_ = published_used_ = last_seen_avail_idx_ = 0;
  hold_idle_since_ns_ = 0;
  interrupt_owed_ = false;
  packed_ = false;
  avail_wrap_ = used_wrap_ = true;
  failure_.store(nullptr, std::memory_order_relaxed);
  features_ = {};
}

void Virtqueue::SetEnabled(bool enabled) {
  enabled_ = enabled;
  // A disabled ring is not polled: its held transmit buffers go back now.
  if (!enabled) ReturnHeldQuietly();
}

void Virtqueue::ReturnHeldQuietly() {
  if (!started_ || packed_ || used_ == nullptr || published_used_ == used_idx_) return;
  __atomic_store_n(reinterpret_cast<uint16_t*>(used_ + 2), used_idx_, __ATOMIC_RELEASE);
  LogWrite(used_ + 2, 2);
  if (!interrupt_owed_) interrupt_owed_from_ = published_used_;
  interrupt_owed_ = true;
  published_used_ = used_idx_;
}

void Virtqueue::Fail(const char* why) {
  failure_.store(why, std::memory_order_relaxed);
  Add(counters_.errors, 1);
}

void Virtqueue::FillStatus(vhu_vring_status* status) const {
  status->started = started_;
  status->enabled = enabled_;
  status->size = static_cast<uint16_t>(size_ > UINT16_MAX ? 0 : size_);
  status->last_avail_idx = last_avail_idx_;
  status->avail_idx = last_seen_avail_idx_;
  status->used_idx = used_idx_;
  status->call_fd = call_.valid();
  status->packets = counters_.packets.load(std::memory_order_relaxed);
  status->bytes = counters_.bytes.load(std::memory_order_relaxed);
  status->drops = counters_.drops.load(std::memory_order_relaxed);
  status->errors = counters_.errors.load(std::memory_order_relaxed);
  status->calls = counters_.calls.load(std::memory_order_relaxed);
}

uint16_t Virtqueue::ReadAvailIdx() const {
  return __atomic_load_n(&avail_[1], __ATOMIC_ACQUIRE);
}

bool Virtqueue::AvailableEntries(uint16_t* count) {
  uint16_t avail_idx = ReadAvailIdx();
  last_seen_avail_idx_ = avail_idx;
  uint16_t n = static_cast<uint16_t>(avail_idx - last_avail_idx_);
  if (n > size_) {
    Fail("avail index moved ahead by more than the ring size");
    return false;
  }
  *count = n;
  return true;
}

// Inlined into its two callers, where 'writable' is a constant.
__attribute__((always_inline)) inline void Virtqueue::PrewalkBurst(uint32_t count,
                                                                   bool writable,
                                                                   uint32_t skip,
                                                                   BurstEntry* entries) {
  count = std::min(count, kMaxBurstEntries);
  // The first region, where a guest's buffers usually all are, kept in registers: the
  // stores to 'entries' would otherwise have the compiler reload it for every chain.
  const std::span<const GuestMemory::Region> regions = memory_->regions();
  if (regions.empty()) count = 0;  // Nothing translates; NextChain() takes the full walk.
  const uint64_t first_base = count ? regions[0].guest_phys_addr : 0;
  const uint64_t first_size = count ? regions[0].size : 0;
  uint8_t* const first_host = count ? regions[0].host : nullptr;
  const uint16_t* ring = &avail_[2];
  for (uint32_t i = 0; i < count; ++i) {
    const uint16_t head = ReadOnce(&ring[(last_avail_idx_ + i) & mask_]);
    entries[i].head = head;
    if (head < size_) __builtin_prefetch(&desc_[head], 0);
  }
  constexpr uint16_t kShape = kDescFlagNext | kDescFlagIndirect | kDescFlagWrite;
  for (uint32_t i = 0; i < count; ++i) {
    BurstEntry& e = entries[i];
    e.len = 0;
    if (e.head >= size_) continue;  // NextChain() fails the ring.
    const VringDesc* slot = &desc_[e.head];
    const uint64_t addr = ReadOnce(&slot->addr);
    const uint32_t len = ReadOnce(&slot->len);
    const uint16_t flags = ReadOnce(&slot->flags);
    if ((flags & kShape) != (writable ? kDescFlagWrite : 0) || len == 0) continue;
    const uint64_t offset = addr - first_base;  // As GuestMemory::TranslateGuest().
    uint8_t* data = offset < first_size && len <= first_size - offset
                        ? first_host + offset
                        : memory_->TranslateGuest(addr, len);
    if (data == nullptr) continue;
    e.data = data;
    e.len = len;
    PrefetchBuffer(data, len, skip, writable);
  }
  burst_ = entries;
  burst_avail_start_ = last_avail_idx_;
  burst_count_ = count;
}

bool Virtqueue::NextChainSlow(uint16_t avail, bool writable, uint16_t* head_out,
                              uint32_t* n_segments, uint64_t* total) {
  // Not pre-walked, or not a lone direct descriptor, or the budget is spent (which
  // WalkChain() reports).
  const uint32_t k = static_cast<uint16_t>(avail - burst_avail_start_);
  const uint16_t head =
      k < burst_count_ ? burst_[k].head : ReadOnce(&avail_[2 + (avail & mask_)]);
  if (head >= size_) {
    Fail("avail ring names a descriptor out of range");
    return false;
  }
  *head_out = head;
  return WalkChain(head, writable, n_segments, total);
}

bool Virtqueue::WalkChainFull(uint16_t head, bool writable, uint32_t* n_segments,
                          uint64_t* total) {
  const VringDesc* table = desc_;
  uint32_t table_size = size_;
  uint32_t index = head;
  uint32_t hops = 0;
  // Not "table != desc_": a guest can point an indirect descriptor at the ring's own
  // descriptor table, which would then pass for the ring again, for ever.
  bool in_indirect = false;
  uint32_t n = 0;
  uint64_t bytes = 0;
  uint32_t budget = walk_budget_;  // Kept in a register; written back at the end.
  for (;;) {
    if (index >= table_size) {
      Fail("descriptor index out of range");
      return false;
    }
    if (budget == 0) {
      walk_budget_ = 0;
      return false;
    }
    --budget;
    const VringDesc* slot = &table[index];
    const uint64_t addr = ReadOnce(&slot->addr);
    const uint32_t len = ReadOnce(&slot->len);
    const uint16_t flags = ReadOnce(&slot->flags);
    const uint16_t next = ReadOnce(&slot->next);

    if (flags & kDescFlagIndirect) {
      if (in_indirect) {
        Fail("indirect descriptor inside an indirect table");
        return false;
      }
      if (!features_.indirect || (flags & kDescFlagNext) || n != 0) {
        Fail("indirect descriptor not allowed here");
        return false;
      }
      if (len == 0 || len % sizeof(VringDesc) != 0 ||
          len / sizeof(VringDesc) > size_) {
        Fail("indirect table length is not a whole number of descriptors");
        return false;
      }
      if (len / sizeof(VringDesc) > kMaxChainDescriptors) {
        Fail("indirect table has more than 256 descriptors");
        return false;
      }
      table = reinterpret_cast<const VringDesc*>(memory_->TranslateGuest(addr, len));
      if (table == nullptr || reinterpret_cast<uintptr_t>(table) % alignof(VringDesc)) {
        Fail("indirect table is not inside guest memory");
        return false;
      }
      table_size = len / sizeof(VringDesc);
      index = 0;
      hops = 0;
      in_indirect = true;
      continue;
    }
    if (++hops > table_size) {
      Fail("descriptor chain loops");
      return false;
    }
    if (hops > kMaxChainDescriptors) {
      Fail("descriptor chain has more than 256 descriptors");
      return false;
    }
    if (!AddSegment(addr, len, flags, writable, &n, &bytes)) return false;
    if (!(flags & kDescFlagNext)) break;
    index = next;
  }
  walk_budget_ = budget;
  chain_ring_slots_ = in_indirect ? 1 : hops;
  *n_segments = n;
  *total = bytes;
  return true;
}

void Virtqueue::WriteUsedEntries(uint16_t old_used) {
  if (used_idx_ == old_used) return;
  auto* used_ring = reinterpret_cast<VringUsedElem*>(used_ + 4);
  const uint32_t count = static_cast<uint16_t>(used_idx_ - old_used);
  const uint32_t start = old_used & mask_;
  const uint32_t first = std::min(count, size_ - start);
  memcpy(&used_ring[start], shadow_used_.data(), first * sizeof(VringUsedElem));
  memcpy(used_ring, shadow_used_.data() + first, (count - first) * sizeof(VringUsedElem));
  if (__builtin_expect(log_ != nullptr, 0)) LogUsedEntries(old_used);
}

void Virtqueue::PublishUsedIdx(uint16_t idx) {
  if (idx == published_used_) return;
  const uint16_t old = published_used_;
  // Release: the used elements before the index.
  __atomic_store_n(reinterpret_cast<uint16_t*>(used_ + 2), idx, __ATOMIC_RELEASE);
  LogWrite(used_ + 2, 2);
  published_used_ = idx;
  MaybeInterrupt(old, idx);
}

void Virtqueue::ReturnHeldWhenIdle() {
  // Read only here, on an empty poll with buffers held: not per packet, nor per burst.
  // A vDSO call, as the PMD threads' own clock reads.
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  if (hold_idle_since_ns_ == 0) {
    hold_idle_since_ns_ = now;
  } else if (now - hold_idle_since_ns_ >= kTransmitHoldIdleNs) {
    PublishUsedIdx(used_idx_);
  }
}

void Virtqueue::LogUsedEntries(uint16_t old_used) const {
  // The burst's entries [old_used, used_idx_) are at most a ring's worth, in one or
  // two runs of the used ring.
  auto* used_ring = reinterpret_cast<const VringUsedElem*>(used_ + 4);
  const uint32_t count = static_cast<uint16_t>(used_idx_ - old_used);
  const uint32_t start = old_used & mask_;
  const uint32_t first = std::min(count, size_ - start);
  LogWrite(&used_ring[start], uint64_t{first} * sizeof(VringUsedElem));
  if (count > first) LogWrite(used_ring, uint64_t{count - first} * sizeof(VringUsedElem));
}

void Virtqueue::MaybeInterrupt(uint16_t old_used, uint16_t new_used) {
  if (!call_.valid()) return;
  // Our used->idx store must be visible before we read the driver's suppression state,
  // or we could miss the interrupt it just asked for.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool needed;
  if (features_.event_idx) {
    const uint16_t used_event = ReadOnce(&avail_[2 + size_]);
    needed = static_cast<uint16_t>(new_used - used_event - 1) <
             static_cast<uint16_t>(new_used - old_used);
  } else {
    needed = !(ReadOnce(&avail_[0]) & kAvailFlagNoInterrupt);
  }
  if (needed) Interrupt();
}

void Virtqueue::Interrupt() {
  switch (call_.Notify()) {
    case CallNotifier::Result::kSent:
      Add(counters_.calls, 1);
      break;
    case CallNotifier::Result::kBlocked:
      Fail(kCallBlocked);
      break;
    case CallNotifier::Result::kFailed:
      break;
  }
}

uint32_t Virtqueue::Dequeue(vhu_alloc_fn* alloc, void* aux, void** pkts, uint32_t max,
                            uint32_t* n_dropped) {
  if (packed_) return DequeuePacked(alloc, aux, pkts, max, n_dropped);
  *n_dropped = 0;
  uint16_t available;
  if (!accessible() || !AvailableEntries(&available)) return 0;
  if (__builtin_expect(interrupt_owed_, 0)) {
    interrupt_owed_ = false;
    MaybeInterrupt(interrupt_owed_from_, published_used_);
  }
  const uint32_t count = std::min<uint32_t>(available, max);
  if (count == 0) {
    if (published_used_ != used_idx_) ReturnHeldWhenIdle();
    return 0;
  }
  StartWalkBudget(count);
  BurstEntry entries[kMaxBurstEntries];
  PrewalkBurst(count, /*writable=*/false, features_.net_header_size, entries);
  const uint16_t old_used = burst_used_start_ = used_idx_;
  uint32_t received = 0;
  uint64_t bytes = 0;
  uint32_t dropped = 0;
  uint32_t longer_chains = 0;  // Chains of more than one descriptor of the table.

  for (uint32_t i = 0; i < count; ++i) {
    uint16_t head;
    uint32_t n_segments;
    uint64_t total;
    if (!NextChain(last_avail_idx_, /*writable=*/false, &head, &n_segments, &total)) break;
    longer_chains |= chain_ring_slots_ - 1;
    if (!TakeFrame(n_segments, total, alloc, aux, pkts, &received, &bytes, &dropped)) {
      break;
    }
    AddUsed(used_idx_, head, 0);
    ++used_idx_;
    ++last_avail_idx_;
  }
  EndBurst();
  WriteUsedEntries(old_used);
  PublishUsedIdx(TransmitUsedToPublish(
      static_cast<uint16_t>(used_idx_ - old_used) == max && longer_chains == 0));
  CountBurst(received, bytes, dropped);
  *n_dropped = dropped;
  return received;
}

bool Virtqueue::TakeFrame(uint32_t n_segments, uint64_t total, vhu_alloc_fn* alloc,
                          void* aux, void** pkts, uint32_t* received, uint64_t* bytes,
                          uint32_t* dropped) {
  const uint32_t header_size = features_.net_header_size;
  if (total < header_size) {
    Fail("transmit chain shorter than the virtio-net header");
    return false;
  }
  const uint64_t frame_size = total - header_size;
  if (!TakesFrameOf(frame_size)) {
    ++*dropped;
    return true;
  }
  uint8_t* out;
  void* pkt = alloc(aux, static_cast<uint32_t>(frame_size), &out);
  if (pkt == nullptr) return false;  // Leave the chain for the next burst.
  CopyFromSegments(n_segments, header_size, out);
  pkts[(*received)++] = pkt;
  *bytes += frame_size;
  return true;
}

void Virtqueue::CountBurst(uint32_t packets, uint64_t bytes, uint32_t dropped) {
  Add(counters_.packets, packets);
  Add(counters_.bytes, bytes);
  if (dropped) Add(counters_.drops, dropped);
}

void Virtqueue::CopyFromSegments(uint32_t n_segments, uint32_t skip, uint8_t* out) const {
  for (uint32_t s = 0; s < n_segments; ++s) {
    const Segment& seg = segments_[s];
    if (skip >= seg.len) {
      skip -= seg.len;
      continue;
    }
    const uint32_t n = seg.len - skip;
    memcpy(out, seg.data + skip, n);
    out += n;
    skip = 0;
  }
}

uint32_t Virtqueue::FillBuffer(uint32_t n_segments, const uint8_t* header,
                               const uint8_t* frame, uint64_t need, uint64_t* written_p,
                               uint8_t** num_buffers_bytes) {
  const uint32_t header_size = features_.net_header_size;
  uint64_t written = *written_p;
  uint32_t in_buffer = 0;
  uint32_t first = 0;
  if (written == 0 && n_segments > 0 && segments_[0].len >= header_size) {
    // The usual layout: the whole header fits the first segment.
    const Segment& seg = segments_[0];
    StoreHeader(seg.data, header, header_size);
    if (header_size == sizeof(VirtioNetHeader)) {
      num_buffers_bytes[0] = seg.data + 10;
      num_buffers_bytes[1] = seg.data + 11;
    }
    const uint32_t n = static_cast<uint32_t>(
        std::min<uint64_t>(seg.len - header_size, need - header_size));
    memcpy(seg.data + header_size, frame, n);
    LogWrite(seg.data, header_size + n);
    written = header_size + n;
    in_buffer = written;
    first = 1;
  }
  for (uint32_t s = first; s < n_segments && written < need; ++s) {
    const Segment& seg = segments_[s];
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(seg.len, need - written));
    uint32_t done = 0;
    while (done < n && written + done < header_size) {  // Header bytes.
      const uint64_t at = written + done;
      if (at == 10) num_buffers_bytes[0] = seg.data + done;
      if (at == 11) num_buffers_bytes[1] = seg.data + done;
      seg.data[done] = header[at];
      ++done;
    }
    if (done < n) {
      memcpy(seg.data + done, frame + (written + done - header_size), n - done);
    }
    LogWrite(seg.data, n);
    written += n;
    in_buffer += n;
  }
  *written_p = written;
  return in_buffer;
}

uint32_t Virtqueue::EnqueueOne(const vhu_tx_packet& pkt, uint16_t avail_end, bool* fits) {
  // The bytes we write are a stream: the virtio-net header, then the frame.  With
  // mergeable buffers the stream spreads over as many receive buffers (chains) as it
  // needs; num_buffers in the header is patched once we know how many that was.
  const uint32_t header_size = features_.net_header_size;
  const uint64_t need = uint64_t{header_size} + pkt.size;
  uint8_t header[sizeof(VirtioNetHeader)] = {};
  uint8_t* num_buffers_bytes[2] = {nullptr, nullptr};
  const auto* frame = static_cast<const uint8_t*>(pkt.data);

  uint16_t avail = last_avail_idx_;
  uint32_t n_buffers = 0;
  uint32_t ring_slots = 0;  // Descriptors of the table its buffers take up.
  uint64_t written = 0;
  bool num_buffers_known = false;
  while (written < need) {
    // Before the test for more buffers: a packet whose buffers take up the whole
    // descriptor table finds no more posted (there can be no more), and would wait
    // for good.  Counted in descriptors, not buffers: chains of two descriptors fill
    // the table at half its size in buffers.
    if (ring_slots >= size_ || (n_buffers == 1 && !features_.mergeable_rx)) {
      *fits = true;  // Larger than this guest's buffers will ever hold: drop it.
      return 0;
    }
    if (avail == avail_end) {
      *fits = false;  // The guest has not posted enough buffers yet.
      return 0;
    }
    uint16_t head;
    uint32_t n_segments;
    uint64_t capacity;
    if (!NextChain(avail, /*writable=*/true, &head, &n_segments, &capacity)) {
      *fits = false;
      return 0;
    }
    ring_slots += chain_ring_slots_;
    if (capacity < header_size) {
      // Not even the header fits: the spec's minimum for any receive buffer.  Left
      // alone, chains of empty descriptors would cost a walk each and hold nothing.
      Fail("receive buffer smaller than the virtio-net header");
      *fits = false;
      return 0;
    }
    if (!features_.mergeable_rx && capacity < need) {
      *fits = true;
      return 0;
    }
    if (n_buffers == 0 && capacity >= need && header_size == sizeof(VirtioNetHeader)) {
      // The usual case: the whole stream fits this one buffer, so num_buffers is 1
      // and goes out with the header, with no patch and no second dirty-log mark.
      header[10] = 1;
      num_buffers_known = true;
    }
    const uint32_t in_buffer =
        FillBuffer(n_segments, header, frame, need, &written, num_buffers_bytes);
    AddUsed(static_cast<uint16_t>(used_idx_ + n_buffers), head, in_buffer);
    ++n_buffers;
    ++avail;
  }
  if (!num_buffers_known && num_buffers_bytes[0] != nullptr) {
    *num_buffers_bytes[0] = static_cast<uint8_t>(n_buffers);
    *num_buffers_bytes[1] = static_cast<uint8_t>(n_buffers >> 8);
    // Again: the frontend may have copied the page since the buffer's mark.
    LogWrite(num_buffers_bytes[0], 1);
    LogWrite(num_buffers_bytes[1], 1);
  }
  last_avail_idx_ = avail;
  used_idx_ += n_buffers;
  *fits = true;
  return n_buffers;
}

uint32_t Virtqueue::Enqueue(const vhu_tx_packet* pkts, uint32_t n, uint32_t* n_dropped) {
  if (packed_) return EnqueuePacked(pkts, n, n_dropped);
  uint32_t dropped = 0;
  uint32_t consumed = 0;
  uint16_t available;
  if (accessible() && AvailableEntries(&available)) {
    const uint16_t old_used = burst_used_start_ = used_idx_;
    const uint16_t avail_end = static_cast<uint16_t>(last_avail_idx_ + available);
    StartWalkBudget(n);
    BurstEntry entries[kMaxBurstEntries];
    PrewalkBurst(std::min<uint32_t>(n, available), /*writable=*/true,
                 features_.net_header_size, entries);
    uint64_t bytes = 0;
    for (; consumed < n; ++consumed) {
      bool fits;
      if (EnqueueOne(pkts[consumed], avail_end, &fits) == 0) {
        if (!fits) break;
        ++dropped;
      } else {
        bytes += pkts[consumed].size;
      }
    }
    EndBurst();
    PublishUsed(old_used);
    CountBurst(consumed - dropped, bytes, dropped);
  }
  if (n_dropped != nullptr) *n_dropped = dropped;
  return consumed;
}

}  // namespace vhostuser
