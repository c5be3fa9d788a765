// One virtqueue seen from the device side: split (virtio 1.x section 2.7, in
// virtqueue.cc) or packed (section 2.8, in virtqueue_packed.cc), as negotiated.
//
// The control thread configures it from the vhost-user messages (size, addresses, base,
// kick/call fds, enable) and starts and stops it; data-path threads move packets through
// it in bursts.  Both hold lock() while they touch it, which is the only lock on the
// data path.  The guest writes the rings concurrently and may be hostile: every index
// and descriptor is read once, bounds-checked, and translated as a whole range; a ring
// that breaks the rules is marked failed and stops moving packets, and the owner
// disconnects the frontend.
#ifndef NETDEV_VHOSTUSER_RINGS_VIRTQUEUE_H
#define NETDEV_VHOSTUSER_RINGS_VIRTQUEUE_H

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "memory/dirty_log.h"
#include "memory/guest_memory.h"
#include "protocol/protocol.h"
#include "rings/call_notifier.h"
#include "rings/receive_header.h"
#include "rings/ring_access.h"
#include "runtime/spinlock.h"
#include "runtime/unique_fd.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser {

// What the negotiated features mean for a ring.
struct RingFeatures {
  uint32_t net_header_size = kLegacyNetHeaderSize;
  bool mergeable_rx = false;
  bool event_idx = false;
  bool indirect = false;
  bool packed = false;
  // VIRTIO_F_IN_ORDER: the driver knows we use its buffers in the order it made them
  // available, so a packed ring's transmit burst can go back as one used descriptor.
  bool in_order = false;
  // The largest frame the guest may transmit (the port's max_rx_frame_size).
  uint32_t max_frame_size = kMaxFrameSize;
};

RingFeatures RingFeaturesFrom(uint64_t features);

// One chain of a split ring's burst as PrewalkBurst() found it.
struct BurstEntry {
  uint8_t* data;  // The chain's one buffer, translated, if 'len' is not 0.
  uint32_t len;   // 0: not a lone direct descriptor of the wanted kind; walk it in full.
  uint16_t head;  // From the avail ring, read once; not yet checked against the size.
};

// One buffer of a packed ring's burst as PrewalkPackedBurst() found it: an available
// descriptor that is a whole buffer on its own (the usual shape), its fields read
// once, checked and translated.
struct PackedBurstEntry {
  uint8_t* data;
  uint32_t len;  // Not 0.
  uint16_t id;   // Below the ring size.
};

class Virtqueue {
 public:
  // Descriptors one chain may have, before an indirect descriptor and in its table
  // each; a longer chain fails the ring.  Linux guests use at most MAX_SKB_FRAGS + 2
  // (19); DPDK's vhost library takes 256 too.  The bound is on what a PMD thread does
  // for one packet: every descriptor may point at a page of its own (one byte each),
  // which costs a TLB miss, or a page fault where the frontend left a hole in its
  // memory file.  (1024 let one call touch 32768 pages.)
  static constexpr uint32_t kMaxChainDescriptors = 256;
  static constexpr uint32_t kMaxChainSegments = kMaxChainDescriptors;
  // Descriptors one Dequeue or Enqueue call may read: two chains' worth, enough for the
  // longest chain there can be (kMaxChainDescriptors, or the ring's size if smaller,
  // then an indirect table as long), plus kWalkBudgetPerPacket per packet asked for.
  // Whatever a guest writes in its rings (chains of empty descriptors shared by every
  // avail entry, buffers too small to hold anything, a byte a page), one call of a
  // 32-packet burst reads at most 1536 descriptors, whatever the ring's size; when the
  // budget runs out the burst ends early, and the next call starts where it stopped.
  static constexpr uint32_t kWalkBudgetPerPacket = 32;
  // Split rings: the transmit buffers a full dequeue burst leaves unreturned (used
  // elements written, used->idx not yet past them), at most a quarter of the ring.
  //
  // Why: a driver frees its transmitted buffers in bulk when it finds nearly its whole
  // ring returned.  DPDK's virtio PMD frees every returned mbuf at once when more than
  // size - tx_free_thresh (default min(32, size / 4)) are returned, and otherwise one
  // per packet it sends; with a full ring and a device that returns each burst at once,
  // it frees about a ring's worth every few dozen bursts, which overflows its mempool
  // cache and makes its next allocations miss.  Its sender then pays more per packet
  // the quicker the device is.  Keeping the newest 32 back keeps it below the
  // threshold, in its cheap mode, and costs a driver nothing it needs: the copies are
  // done, and it can reclaim three quarters of its ring at any time.
  //
  // Only for a driver that asks for no transmit interrupts (VRING_AVAIL_F_NO_INTERRUPT,
  // without EVENT_IDX: a polling driver such as DPDK's, which never waits for its
  // buffers); a driver that takes interrupts (Linux's virtio-net, whose TX NAPI sets
  // used_event) gets every buffer, and the interrupt, with the burst, so that no
  // interrupt it waits for can be left to a call that never comes (a ring disabled or
  // handed to another backend).  Only after a burst that took all the caller asked for
  // (the guest sends faster than one call drains), each buffer one descriptor of the
  // table (DPDK's shape: the header in front of the frame, or an indirect table), so
  // that what is held is at most a quarter of the table; and not while the dirty log
  // is on.  A smaller burst, or calls that find nothing new for kTransmitHoldIdleNs,
  // return them all, so that a sender waiting for its buffers (a driver draining its
  // ring) never waits long.  Stop(), disabling the ring and the dirty log starting
  // return them too, so that a frontend reading used->idx then finds every buffer it
  // made available returned; the interrupt that may be due goes with the ring's next
  // data-path call, for only data-path threads write call eventfds (call_notifier.h).
  static constexpr uint32_t kTransmitHold = 32;
  static constexpr int64_t kTransmitHoldIdleNs = 50'000;

  struct Counters {
    std::atomic<uint64_t> packets{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> drops{0};
    std::atomic<uint64_t> errors{0};
    std::atomic<uint64_t> calls{0};
  };

  Virtqueue() = default;
  Virtqueue(const Virtqueue&) = delete;
  Virtqueue& operator=(const Virtqueue&) = delete;

  Spinlock& lock() { return lock_; }

  // ---- Control path: the caller holds lock(). ----
  // 'packed': VIRTIO_F_RING_PACKED was negotiated (sizes need not be powers of two,
  // bases carry the wrap counter in bit 15).
  absl::Status SetSize(uint32_t size, bool packed);
  absl::Status SetAddresses(const VringAddress& address);
  absl::Status SetBase(uint32_t base, bool packed);
  void SetKickFd(UniqueFd fd, bool polling);
  void SetCallFd(UniqueFd fd) { call_.Reset(std::move(fd)); }
  void SetErrFd(UniqueFd fd) { err_fd_ = std::move(fd); }
  void SetEnabled(bool enabled);
  // Live migration: every write into guest memory marks 'log' (nullptr: logging off).
  // 'awaiting_log': the frontend asked for logging (VHOST_F_LOG_ALL) and has not given
  // the log yet, as QEMU does when it starts the rings during a migration (its
  // SET_LOG_BASE follows the rings' setup): the data path leaves the ring alone until
  // it comes, for what it wrote meanwhile would be missing from the log.
  void SetLog(const DirtyLog* log, bool awaiting_log) {
    log_ = log;
    awaiting_log_ = awaiting_log;
    // Nothing is held while logging (kTransmitHold): what was goes back now, marked.
    // While the ring waits for its log it is left alone (no burst runs then either);
    // what it holds goes back when the log comes, or at Stop().
    if (log != nullptr) ReturnHeldQuietly();
  }
  // The number of SET_LOG_BASE requests the port must have taken before this ring
  // may use its log (Device::PointAtLog()): one more than when it was stopped during a
  // migration.  0 after Reset().
  uint64_t log_needed() const { return log_needed_; }
  void set_log_needed(uint64_t n) { log_needed_ = n; }

  // Whether SET_VRING_KICK arrived since the ring was last stopped: the spec's cue that
  // the frontend finished setting the ring up.
  bool kick_received() const { return kick_received_; }

  // ---- Control path, without the lock, while the ring is stopped: the data path
  // touches the burst state only in a started ring, and only this thread starts one.
  // Sizes the state a burst stages per descriptor (used elements) for the ring's size
  // and kind, ahead of Start(), and frees it once the ring stopped: allocating and
  // freeing it under the lock would hold up the data path each time a frontend starts
  // or stops a ring, which it may do in a loop.
  void PrepareBurstState(bool packed);
  void ReleaseBurstState();

  // Translates the ring addresses through 'memory' and starts moving packets (if also
  // enabled).  'memory' must outlive the start, or be replaced by Remap().
  absl::Status Start(const GuestMemory* memory, const RingFeatures& features);
  // Points a started ring at a new memory table (SET_MEM_TABLE while running).
  absl::Status Remap(const GuestMemory* memory);
  // GET_VRING_BASE: stops the ring and returns the index of the next avail entry
  // (packed: with the avail wrap counter in bit 15).
  uint32_t Stop();
  // Forgets everything but the counters and closes the fds (disconnect, RESET_OWNER).
  void Reset();

  bool started() const { return started_; }
  // Where the started ring's descriptor table is, in our address space (nullptr when
  // stopped): the guest memory whose NUMA node the port reports.
  const void* descriptor_table() const {
    return packed_desc_ != nullptr ? static_cast<const void*>(packed_desc_)
                                   : static_cast<const void*>(desc_);
  }
  bool enabled() const { return enabled_; }
  bool usable() const {
    return started_ && enabled_ && failure_.load(std::memory_order_relaxed) == nullptr;
  }
  // Data path: usable(), and nothing to wait for before touching guest memory (SetLog()).
  bool accessible() const { return usable() && !awaiting_log_; }
  // Why the guest broke the ring, or nullptr.
  // Without the lock too: the control thread looks for failed rings that way.
  const char* failure() const { return failure_.load(std::memory_order_relaxed); }
  // The failure() of a ring whose interrupt write blocked until the watchdog broke it
  // off: its frontend stalled the data-path thread that wrote it (call_notifier.h).
  static constexpr const char kCallBlocked[] =
      "the call eventfd blocked our interrupt (made blocking and filled by the frontend)";
  uint32_t size() const { return size_; }

  // ---- Data path: the caller holds lock(). ----

  // Guest TX: copies up to 'max' packets into buffers from 'alloc'; see
  // vhu_dequeue_burst() for '*n_dropped'.
  uint32_t Dequeue(vhu_alloc_fn* alloc, void* aux, void** pkts, uint32_t max,
                   uint32_t* n_dropped);
  // Guest RX: copies packets into the guest's buffers; see vhu_enqueue_burst().
  uint32_t Enqueue(const vhu_tx_packet* pkts, uint32_t n, uint32_t* n_dropped);

  // ---- Either, without the lock. ----
  const Counters& counters() const { return counters_; }
  void FillStatus(vhu_vring_status* status) const;

 private:
  struct Segment {
    uint8_t* data;
    uint32_t len;
  };

  // Collects the buffers of the chain starting at 'head' into segments_.  'writable'
  // says which kind every descriptor must be.  Returns false, after Fail(), for a chain
  // that breaks the rules, and without it when the call's walk budget is spent.
  //
  // The usual chain, one direct descriptor, is taken here without a call; any other
  // (and anything doubtful) gets the full walk, which reads and checks it all afresh.
  bool WalkChain(uint16_t head, bool writable, uint32_t* n_segments, uint64_t* total) {
    if (__builtin_expect(head < size_ && walk_budget_ != 0, 1)) {
      const VringDesc* slot = &desc_[head];
      const uint64_t addr = ReadOnce(&slot->addr);
      const uint32_t len = ReadOnce(&slot->len);
      const uint16_t flags = ReadOnce(&slot->flags);
      constexpr uint16_t kShape = kDescFlagNext | kDescFlagIndirect | kDescFlagWrite;
      if ((flags & kShape) == (writable ? kDescFlagWrite : 0) && len != 0) {
        if (uint8_t* data = memory_->TranslateGuest(addr, len)) {
          --walk_budget_;
          chain_ring_slots_ = 1;
          segments_[0] = Segment{data, len};
          *n_segments = 1;
          *total = len;
          return true;
        }
      }
    }
    return WalkChainFull(head, writable, n_segments, total);
  }
  bool WalkChainFull(uint16_t head, bool writable, uint32_t* n_segments, uint64_t* total);
  // Turns the transmit chain in segments_ (of 'total' bytes) into a packet from
  // 'alloc' appended to pkts[*received], or counts it dropped (empty or oversized
  // frame).  Returns false to end the burst: no packet to be had, or a chain shorter
  // than the header (the ring is failed).
  bool TakeFrame(uint32_t n_segments, uint64_t total, vhu_alloc_fn* alloc, void* aux,
                 void** pkts, uint32_t* received, uint64_t* bytes, uint32_t* dropped);
  void CountBurst(uint32_t packets, uint64_t bytes, uint32_t dropped);
  // Copies the chain in segments_, less its first 'skip' bytes, to 'out'.
  void CopyFromSegments(uint32_t n_segments, uint32_t skip, uint8_t* out) const;
  // Writes what fits of bytes [*written, need) of the stream "header then frame" into
  // the buffer in segments_, advancing *written; notes where num_buffers lands.
  // Returns the bytes written to this buffer.
  uint32_t FillBuffer(uint32_t n_segments, const uint8_t* header, const uint8_t* frame,
                      uint64_t need, uint64_t* written, uint8_t** num_buffers_bytes);
  // Whether a transmitted frame of 'frame_size' bytes is one this queue takes; an
  // empty or oversized one is dropped and counted.
  bool TakesFrameOf(uint64_t frame_size) const {
    return frame_size != 0 && frame_size <= features_.max_frame_size;
  }
  // A packet in one buffer the pre-walk has already checked and translated, the usual
  // case on packed rings, goes through these instead of the segment loops above, which
  // cost a small packet about as much again as its copy.  Each does exactly what those
  // loops would do for it.
  //
  // Whether a lone transmit buffer of 'len' bytes holds the header and a frame this
  // queue takes.
  bool TransmitBufferTaken(uint32_t len) const {
    const uint32_t header_size = features_.net_header_size;
    return len > header_size && TakesFrameOf(len - header_size);
  }
  // Copies the frame of such a buffer into a packet from 'alloc', which it returns;
  // nullptr if 'alloc' had none (the burst ends there, as in TakeFrame()).
  void* CopyTransmitFrame(const uint8_t* data, uint32_t len, vhu_alloc_fn* alloc,
                          void* aux) const {
    const uint32_t size = len - features_.net_header_size;
    uint8_t* out;
    void* pkt = alloc(aux, size, &out);
    if (pkt != nullptr) memcpy(out, data + features_.net_header_size, size);
    return pkt;
  }
  // Writes the header (kOneBufferHeader: num_buffers 1 where the header has that
  // field) and the frame of 'pkt' into a lone receive buffer of 'len' bytes at 'data'
  // if both fit, as EnqueueOnePacked() would; returns the bytes written, 0 if they do
  // not fit.
  uint32_t FillLoneReceiveBuffer(uint8_t* data, uint32_t len,
                                 const vhu_tx_packet& pkt) const {
    const uint32_t header_size = features_.net_header_size;
    const uint64_t need = uint64_t{header_size} + pkt.size;
    if (len < need) return 0;
    StoreHeader(data, kOneBufferHeader, header_size);
    memcpy(data + header_size, pkt.data, pkt.size);
    LogWrite(data, need);
    return static_cast<uint32_t>(need);
  }
  // Marks the ring failed; the data path stops using it.
  void Fail(const char* why);
  // Checks one buffer descriptor of a chain (split or packed: the rules are the same)
  // and appends it to segments_[*n], adding its length to *bytes.  Returns false, after
  // Fail(), for a buffer of the wrong direction, outside guest memory, or one too many.
  bool AddSegment(uint64_t addr, uint32_t len, uint16_t flags, bool writable, uint32_t* n,
                  uint64_t* bytes) {
    if (static_cast<bool>(flags & kDescFlagWrite) != writable) {
      Fail(writable ? "read-only descriptor in a receive chain"
                    : "device-writable descriptor in a transmit chain");
      return false;
    }
    if (len == 0) return true;
    uint8_t* data = memory_->TranslateGuest(addr, len);
    if (data == nullptr) {
      Fail("descriptor buffer is not inside guest memory");
      return false;
    }
    if (*n == kMaxChainSegments) {
      Fail("descriptor chain has more than 256 descriptors");
      return false;
    }
    segments_[(*n)++] = Segment{data, len};
    *bytes += len;
    return true;
  }
  // Prefetches a burst's buffer of 'len' bytes at 'data' where its frame starts, 'skip'
  // bytes in: a transmit buffer's line for reading; a receive buffer's for writing,
  // as the frame's first line is written.  The header's line is usually only compared
  // (StoreHeader writes what differs, which in a steady stream is nothing), and when
  // it is a line of its own, as in DPDK's virtio PMD that puts the header just below
  // the frame's line boundary, the guest reads it again to transmit from that buffer:
  // taking it for writing would steal it from the guest's cache for nothing.
  static void PrefetchBuffer(const uint8_t* data, uint32_t len, uint32_t skip,
                             bool writable) {
    if (len <= skip) return;
    if (writable) {
      if (!SameLine(data, data + skip)) __builtin_prefetch(data, 0);
      PrefetchForWrite(data + skip);
    } else {
      __builtin_prefetch(data + skip, 0);
    }
  }
  // Marks the pages of [p, p + len), just written, in the dirty log if logging is on:
  // one predictable branch when it is off.
  void LogWrite(const void* p, uint64_t len) const {
    if (__builtin_expect(log_ != nullptr, 0)) log_->MarkHost(*memory_, p, len);
  }
  // Starts a call's descriptor budget (kWalkBudgetPerPacket) for 'packets' packets.
  void StartWalkBudget(uint32_t packets) {
    walk_budget_ = 2 * std::min(size_, kMaxChainDescriptors) + kWalkBudgetPerPacket * packets;
  }
  // Takes one descriptor read from the budget; false once it is spent.
  bool SpendWalkBudget() {
    if (walk_budget_ == 0) return false;
    --walk_budget_;
    return true;
  }
  // Interrupts the guest if it asked to be, used->idx having moved from 'old_used' to
  // 'new_used'.
  void MaybeInterrupt(uint16_t old_used, uint16_t new_used);
  // Records the used element of the burst's chain at used index 'index' (split rings:
  // written to the guest's ring by PublishUsed).
  void AddUsed(uint16_t index, uint16_t id, uint32_t len) {
    // Below size_: a burst uses at most the entries AvailableEntries() found, <= size_.
    shadow_used_[static_cast<uint16_t>(index - burst_used_start_)] = {id, len};
  }
  // Writes the burst's used elements [old_used, used_idx_) into the used ring and then
  // publishes used->idx (after marking them in the dirty log).
  void PublishUsed(uint16_t old_used) {
    WriteUsedEntries(old_used);
    PublishUsedIdx(used_idx_);
  }
  // Writes the burst's used elements [old_used, used_idx_) into the used ring, where
  // the driver does not look until used->idx passes them, and marks them in the log.
  void WriteUsedEntries(uint16_t old_used);
  void LogUsedEntries(uint16_t old_used) const;
  // Moves used->idx to 'idx' (in [published_used_, used_idx_]) and interrupts the guest
  // if it asked to be.
  void PublishUsedIdx(uint16_t idx);
  // Split transmit rings: where a dequeue burst that took 'full' (all it was asked
  // for) leaves used->idx (kTransmitHold).
  uint16_t TransmitUsedToPublish(bool full) {
    hold_idle_since_ns_ = 0;
    const uint32_t hold =
        full && DriverIgnoresCompletions() ? std::min(kTransmitHold, size_ / 4) : 0;
    const uint32_t unpublished = static_cast<uint16_t>(used_idx_ - published_used_);
    if (unpublished <= hold) return published_used_;
    return static_cast<uint16_t>(used_idx_ - hold);
  }
  // kTransmitHold's condition: a polling driver, and no dirty log.  avail->flags shares
  // its line with avail->idx, which the burst has just read.
  bool DriverIgnoresCompletions() const {
    return log_ == nullptr && !features_.event_idx &&
           (ReadOnce(&avail_[0]) & kAvailFlagNoInterrupt) != 0;
  }
  // An empty dequeue poll with transmit buffers held: returns them once the ring has
  // had nothing new for kTransmitHoldIdleNs.
  void ReturnHeldWhenIdle();
  // Control path (Stop(), SetEnabled(), SetLog()): returns the held transmit buffers
  // without the interrupt, which it leaves owed to the next data-path call.
  void ReturnHeldQuietly();
  uint16_t ReadAvailIdx() const;
  bool AvailableEntries(uint16_t* count);
  // Split rings: reads the avail entries of the burst's next 'count' chains (at most
  // kMaxBurstEntries) into 'entries', and takes each chain that is one direct
  // descriptor of the wanted kind, the usual one, as NextChain() will need it; other
  // chains are left for the full walk.  On the way it prefetches the head descriptors
  // and then each buffer's line where the frame starts, 'skip' bytes in (and, for a
  // receive buffer, where its header does).  The guest wrote all of these from the
  // other CPU: each is a cache miss, and issued together they overlap instead of
  // costing one after another.
  void PrewalkBurst(uint32_t count, bool writable, uint32_t skip, struct BurstEntry* entries);
  // The chain at avail position 'avail' of the burst, as WalkChain() gives it, with
  // its head in '*head'.  Returns false as WalkChain() does.
  bool NextChain(uint16_t avail, bool writable, uint16_t* head, uint32_t* n_segments,
                 uint64_t* total) {
    const uint32_t k = static_cast<uint16_t>(avail - burst_avail_start_);
    if (__builtin_expect(k < burst_count_ && walk_budget_ != 0, 1)) {
      const BurstEntry& e = burst_[k];
      if (e.len != 0) {  // Checked by PrewalkBurst().
        --walk_budget_;
        chain_ring_slots_ = 1;
        segments_[0] = Segment{e.data, e.len};
        *n_segments = 1;
        *total = e.len;
        *head = e.head;
        return true;
      }
    }
    return NextChainSlow(avail, writable, head, n_segments, total);
  }
  bool NextChainSlow(uint16_t avail, bool writable, uint16_t* head, uint32_t* n_segments,
                     uint64_t* total);
  void EndBurst() { burst_count_ = 0; }
  uint32_t EnqueueOne(const vhu_tx_packet& pkt, uint16_t avail_end, bool* fits);

  // Packed ring (virtqueue_packed.cc).
  struct PackedDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t id;
    uint16_t flags;
  };
  struct PendingUsed {  // A used element not yet written: packed used entries go
    uint16_t id;        // live the moment their flags are stored.
    uint16_t n_descs;
    uint32_t len;
  };
  absl::Status RemapPacked(const GuestMemory* memory);
  // Whether the descriptor at ring position 'position' is available to us, 'wrap' being
  // our wrap counter there (the driver's when it made the descriptor available).
  bool PackedDescAvailable(uint16_t position, bool wrap) const {
    // Acquire: the rest of the buffer's descriptors were written before these flags.
    return PackedFlagsAvailable(
        __atomic_load_n(&packed_desc_[position].flags, __ATOMIC_ACQUIRE), wrap);
  }
  static bool PackedFlagsAvailable(uint16_t flags, bool wrap) {
    const bool avail = flags & kPackedFlagAvail;
    const bool used = flags & kPackedFlagUsed;
    return avail == wrap && used != wrap;
  }
  // Packed rings, as PrewalkBurst() for split ones: reads the next 'count' (at most
  // kMaxBurstEntries) available descriptors from our position on, as long as each is
  // a buffer of its own of the wanted kind, into 'entries', checked and translated, and
  // prefetches each buffer's line where the frame starts, 'skip' bytes in, so that the
  // misses overlap.  The first descriptor of another shape ends the pre-walk; from
  // there on NextPackedChain() walks in full.
  void PrewalkPackedBurst(uint32_t count, bool writable, uint32_t skip,
                          PackedBurstEntry* entries);
  // Descriptors the current packed burst has taken before ring position 'position'
  // (wrap counter 'wrap'): below 2 * size_ while a burst takes at most size_, which
  // DequeuePacked() and EnqueueOnePacked() see to; a position a whole lap ahead gives
  // a huge value.
  uint32_t BurstDescs(uint16_t position, bool wrap) const {
    return uint32_t{position} + (wrap != packed_burst_wrap_ ? size_ : 0) -
           packed_burst_start_;
  }
  // The pre-walked entry for ring position 'position' with wrap counter 'wrap', or
  // nullptr if the pre-walk did not reach it or this call's walk budget is spent.
  const PackedBurstEntry* PrewalkedAt(uint16_t position, bool wrap) const {
    const uint32_t k = BurstDescs(position, wrap);
    if (__builtin_expect(k < burst_count_ && walk_budget_ != 0, 1)) {
      return &packed_burst_[k];
    }
    return nullptr;
  }
  // The buffer at ring position 'position' (known to be available), from the pre-walk
  // or walked in full, as WalkPackedChain() gives it.
  bool NextPackedChain(uint16_t position, bool writable, uint16_t* n_descs,
                       uint32_t* n_segments, uint64_t* total, uint16_t* id,
                       const PackedBurstEntry* entry) {
    if (entry != nullptr) {
      --walk_budget_;
      segments_[0] = Segment{entry->data, entry->len};
      *n_descs = 1;
      *n_segments = 1;
      *total = entry->len;
      *id = entry->id;
      return true;
    }
    return WalkPackedChain(position, writable, n_descs, n_segments, total, id);
  }
  bool WalkPackedChain(uint16_t position, bool writable, uint16_t* n_descs,
                       uint32_t* n_segments, uint64_t* total, uint16_t* id);
  // Moves our avail position past a buffer of 'n_descs' descriptors (at most size_).
  void AdvanceAvail(uint16_t n_descs) {
    last_avail_idx_ = static_cast<uint16_t>(last_avail_idx_ + n_descs);
    if (last_avail_idx_ >= size_) {
      last_avail_idx_ = static_cast<uint16_t>(last_avail_idx_ - size_);
      avail_wrap_ = !avail_wrap_;
    }
  }
  // Queues a used element for FlushPackedUsed(); false, with nothing queued, when the
  // burst already holds a ring's worth (a guest that re-posts descriptors we have not
  // returned yet could otherwise make one burst take more).
  bool QueuePackedUsed(const PendingUsed& used) {
    if (n_pending_ == size_) return false;
    pending_[n_pending_++] = used;
    return true;
  }
  // Writes the burst's queued used elements, the first one's flags last: the driver
  // polls those, and then finds the whole burst at once instead of chasing our stores
  // one descriptor (a quarter of a shared cache line) at a time.
  void FlushPackedUsed();
  // After a burst that moved the used position from (old_used, old_wrap): marks the
  // used elements in the dirty log, if one is on, and interrupts the guest if it asked.
  void FinishPackedBurst(uint16_t old_used, bool old_wrap);
  void LogPackedUsed(uint16_t old_used, bool old_wrap) const;
  void MaybeInterruptPacked(uint16_t old_used, bool old_wrap);
  // Writes the call eventfd (both ring layouts, once they decided an interrupt is due).
  void Interrupt();
  uint32_t DequeuePacked(vhu_alloc_fn* alloc, void* aux, void** pkts, uint32_t max,
                         uint32_t* n_dropped);
  uint32_t EnqueuePacked(const vhu_tx_packet* pkts, uint32_t n, uint32_t* n_dropped);
  bool EnqueueOnePacked(const vhu_tx_packet& pkt, bool* fits);

  Spinlock lock_;

  // Configuration.
  uint32_t size_ = 0;
  uint32_t mask_ = 0;
  VringAddress address_{};
  bool address_set_ = false;
  bool kick_received_ = false;
  bool started_ = false;
  bool enabled_ = false;
  UniqueFd kick_fd_;
  CallNotifier call_;
  UniqueFd err_fd_;
  RingFeatures features_;
  const GuestMemory* memory_ = nullptr;
  const DirtyLog* log_ = nullptr;
  bool awaiting_log_ = false;
  uint64_t log_needed_ = 0;

  // The rings, in our address space (valid while started_).  Packed: desc_ is the
  // descriptor ring (PackedDesc), avail_ the driver's event suppression area
  // (off_wrap, flags) and used_ ours.
  VringDesc* desc_ = nullptr;
  uint16_t* avail_ = nullptr;  // flags, idx, ring[size], used_event
  uint8_t* used_ = nullptr;    // flags, idx, ring[size] of VringUsedElem, avail_event
  PackedDesc* packed_desc_ = nullptr;

  // Our side of the indices.
  uint16_t last_avail_idx_ = 0;
  uint16_t used_idx_ = 0;
  // Split: used->idx as we last stored it; behind used_idx_ by the transmit buffers
  // held (kTransmitHold), whose used elements are written already.
  uint16_t published_used_ = 0;
  int64_t hold_idle_since_ns_ = 0;  // The first empty poll since the last burst, or 0.
  // ReturnHeldQuietly() moved used->idx from interrupt_owed_from_ without interrupting.
  bool interrupt_owed_ = false;
  uint16_t interrupt_owed_from_ = 0;
  uint16_t last_seen_avail_idx_ = 0;  // For status only.
  // Packed: positions in the descriptor ring rather than free-running indices, and
  // the wrap counters that go with them.
  bool packed_ = false;
  bool avail_wrap_ = true;
  bool used_wrap_ = true;
  std::vector<PendingUsed> pending_;  // Sized at start: no allocation on the data path.
  uint32_t n_pending_ = 0;            // Queued in pending_ by this burst.
  // Split: the burst's used elements, gathered here and written to the guest's ring in
  // one go at the end, as whole lines, rather than one by one between the copies; the
  // guest's CPU takes each line from ours once.  Sized at start.
  std::vector<VringUsedElem> shadow_used_;
  uint16_t burst_used_start_ = 0;  // used_idx_ when the burst began.
  // Split: the current burst's pre-walked chains (PrewalkBurst), in the caller's stack
  // frame, for avail positions [burst_avail_start_, + burst_count_).
  static constexpr uint32_t kMaxBurstEntries = 64;
  const BurstEntry* burst_ = nullptr;
  uint16_t burst_avail_start_ = 0;
  uint32_t burst_count_ = 0;  // Split or packed: entries in burst_ or packed_burst_.
  // Packed: the current burst's pre-walked buffers (PrewalkPackedBurst), likewise, for
  // the burst_count_ ring positions from packed_burst_start_ (wrap counter
  // packed_burst_wrap_) on.
  const PackedBurstEntry* packed_burst_ = nullptr;
  uint16_t packed_burst_start_ = 0;
  bool packed_burst_wrap_ = false;

  uint32_t walk_budget_ = 0;  // Descriptor reads left in this call.
  // Split: the descriptors of the ring's table that the chain WalkChain() last gave
  // takes up (an indirect chain, one), which a receive burst counts to tell when a
  // packet holds every buffer the guest could ever post.
  uint32_t chain_ring_slots_ = 0;

  std::atomic<const char*> failure_{nullptr};
  Counters counters_;
  std::array<Segment, kMaxChainSegments> segments_;
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RINGS_VIRTQUEUE_H
