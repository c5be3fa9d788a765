// Fuzz target: the data path over guest memory and rings the fuzzer shapes.  One split
// or packed virtqueue is set up over a GuestMemory of one to three regions (each its own memfd,
// placed at fuzzer-chosen guest-physical and frontend-virtual addresses with gaps, so
// that buffers can straddle non-adjacent regions), the memory is filled with the
// fuzzer's bytes (rings, descriptors, indirect tables, packets), and a program of
// operations runs: Dequeue and Enqueue bursts (mergeable or not, with the negotiated
// header size), guest writes between them, address translations checked against the
// region table, remaps and restarts.
//
// Checks beyond the sanitizers: every translation lies inside the one region the
// address belongs to, and every address range inside a region translates; bytes of the
// memfds that no region covers are never written; burst counts add up.
//
// Input format (tests/fuzz/README.md; tests/fuzz/make_seeds.py writes the seeds):
//   Config (80 bytes, zeros past the end of a short input), then
//   n_ops operations of 8 bytes {u8 kind, u8 a, u16 b, u32 c}, then
//   the guest's memory: the rest of the input, copied over the regions in order.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz_util.h"
#include "memory/guest_memory.h"
#include "protocol/protocol.h"
#include "rings/virtqueue.h"
#include "runtime/unique_fd.h"

namespace vhostuser::fuzz {
namespace {

constexpr uint64_t kGuestBase = 0x100000;
constexpr uint64_t kUserBase = 0x7f0000000000;
constexpr uint8_t kCanary = 0xa5;
constexpr uint32_t kMaxRegionSize = 256 << 10;

#pragma pack(push, 1)
struct RegionConfig {
  uint32_t size;      // Bytes (clamped to 16 .. 256 KiB).
  uint16_t offset;    // mmap_offset; the bytes before it are canaries.
  uint16_t pad;
  uint32_t gpa_gap;   // Guest-physical gap after the previous region (x16).
  uint32_t user_gap;  // Frontend-virtual gap after the previous region (x16).
};
struct RingPlace {
  uint8_t region;
  uint8_t raw;        // Non-zero: 'offset' is used as the user address itself.
  uint16_t pad;
  uint32_t offset;    // Into the region.
};
struct Config {
  uint8_t features;   // bit 0 MRG_RXBUF, 1 EVENT_IDX, 2 INDIRECT, 3 legacy header,
                      // 4 packed ring.
  uint8_t ring_log2;  // Ring size 2^(ring_log2 % 11); packed with bit 7 set:
                      // 1 + 3 * (ring_log2 & 0x7f), not a power of two.
  uint8_t n_regions;  // 1 + n % 3.
  uint8_t n_ops;      // 0..255.
  uint16_t base;      // SET_VRING_BASE.
  uint16_t pad;
  RegionConfig regions[3];
  RingPlace desc, avail, used;
};
struct Op {
  uint8_t kind;
  uint8_t a;
  uint16_t b;
  uint32_t c;
};
#pragma pack(pop)
static_assert(sizeof(Config) == 80);
static_assert(sizeof(Op) == 8);

struct Region {
  UniqueFd fd;
  uint32_t offset;
  uint32_t size;
  MemoryRegionDesc desc;
  uint8_t* view;  // Our own mapping of the whole memfd.
  size_t view_size;
};

void* AllocPacket(void* aux, uint32_t size, uint8_t** data) {
  auto* budget = static_cast<int*>(aux);
  if (*budget == 0) return nullptr;  // The caller ran out of packet buffers.
  if (*budget > 0) --*budget;
  if (size == 0 || size > 65535) Violation("Dequeue asked for a packet of a bad size");
  auto* p = static_cast<uint8_t*>(malloc(size));
  *data = p;
  return p;
}

class Harness {
 public:
  bool SetUp(const Config& config) {
    const unsigned n = 1 + config.n_regions % 3;
    uint64_t gpa = kGuestBase, user = kUserBase;
    for (unsigned i = 0; i < n; ++i) {
      const RegionConfig& rc = config.regions[i];
      Region& r = regions_.emplace_back();
      r.offset = rc.offset % 8192;
      r.size = std::clamp<uint32_t>(rc.size, 16, kMaxRegionSize);
      if (i > 0) {
        gpa += uint64_t{rc.gpa_gap % (1u << 24)} * 16;
        user += uint64_t{rc.user_gap % (1u << 24)} * 16;
      }
      r.desc = MemoryRegionDesc{gpa, r.size, user, r.offset};
      gpa += r.size;
      user += r.size;
      r.fd.reset(memfd_create("fuzz-region", MFD_CLOEXEC));
      r.view_size = r.offset + r.size;
      if (!r.fd.valid() || ftruncate(r.fd.get(), static_cast<off_t>(r.view_size)) != 0) {
        abort();
      }
      void* p = mmap(nullptr, r.view_size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd.get(), 0);
      if (p == MAP_FAILED) abort();
      r.view = static_cast<uint8_t*>(p);
      memset(r.view, kCanary, r.offset);
    }
    memory_ = MapMemory();
    if (memory_ == nullptr) Violation("a valid memory table was refused");
    return true;
  }

  ~Harness() {
    for (Region& r : regions_) {
      for (uint32_t i = 0; i < r.offset; ++i) {
        if (r.view[i] != kCanary) Violation("a byte outside every region was written");
      }
      munmap(r.view, r.view_size);
    }
  }

  std::unique_ptr<GuestMemory> MapMemory() {
    std::vector<MemoryRegionDesc> descs;
    std::vector<int> fds;
    for (const Region& r : regions_) {
      descs.push_back(r.desc);
      fds.push_back(r.fd.get());
    }
    auto memory = GuestMemory::Map(descs, fds);
    return memory.ok() ? *std::move(memory) : nullptr;
  }

  void Fill(const uint8_t* bytes, size_t len) {
    for (Region& r : regions_) {
      const size_t n = std::min<size_t>(len, r.size);
      memcpy(r.view + r.offset, bytes, n);
      bytes += n;
      len -= n;
    }
  }

  uint64_t UserAddress(const RingPlace& place) const {
    if (place.raw) return kUserBase + place.offset;
    const Region& r = regions_[place.region % regions_.size()];
    return r.desc.userspace_addr + place.offset % r.size;
  }

  // Our own mapping of a guest-physical (or frontend-virtual) range; nullptr outside.
  uint8_t* HostOf(uint64_t addr, uint64_t len, bool user = false) {
    for (Region& r : regions_) {
      const uint64_t base = user ? r.desc.userspace_addr : r.desc.guest_phys_addr;
      if (addr >= base && addr - base < r.size && len <= r.size - (addr - base)) {
        return r.view + r.offset + (addr - base);
      }
    }
    return nullptr;
  }

  void CheckTranslation(unsigned which, uint64_t delta, uint32_t len, bool user) {
    const Region& r = regions_[which % regions_.size()];
    const uint64_t start = user ? r.desc.userspace_addr : r.desc.guest_phys_addr;
    // Around the region's two ends, where the off-by-ones live.
    const uint64_t addr = (delta & 1) ? start + r.size - 64 + (delta >> 1) % 128
                                      : start - 64 + (delta >> 1) % 128;
    const uint8_t* p = user ? memory_->TranslateUser(addr, len)
                            : memory_->TranslateGuest(addr, len);
    bool inside = false;
    for (const Region& o : regions_) {
      const uint64_t base = user ? o.desc.userspace_addr : o.desc.guest_phys_addr;
      if (addr >= base && addr - base < o.size && len <= o.size - (addr - base)) {
        inside = true;
        // Our mapping and the library's are different addresses of the same pages:
        // compare through the memfd by writing a marker.
        if (p == nullptr) Violation("a range inside a region did not translate");
        uint8_t* ours = o.view + o.offset + (addr - base);
        const uint8_t saved = *ours;
        *ours = static_cast<uint8_t>(saved ^ 0x5a);
        const bool same = *p == *ours;
        *ours = saved;
        if (!same) Violation("translation points at the wrong bytes");
      }
    }
    if (!inside && p != nullptr) Violation("a range outside every region translated");
  }

  std::vector<Region> regions_;
  std::unique_ptr<GuestMemory> memory_;
};

void Run(const uint8_t* data, size_t size) {
  Cursor in(data, size);
  Config config = in.Take<Config>();
  Harness h;
  if (!h.SetUp(config)) return;

  std::vector<Op> ops(config.n_ops);
  for (Op& op : ops) op = in.Take<Op>();
  h.Fill(in.rest(), in.remaining());

  RingFeatures features;
  features.mergeable_rx = config.features & 1;
  features.event_idx = config.features & 2;
  features.indirect = config.features & 4;
  features.net_header_size = (config.features & 8) ? kLegacyNetHeaderSize
                                                   : sizeof(VirtioNetHeader);
  const bool packed = config.features & 16;
  features.packed = packed;
  const uint32_t ring_size = (packed && (config.ring_log2 & 0x80))
                                 ? 1 + 3 * (config.ring_log2 & 0x7f)
                                 : 1u << (config.ring_log2 % 11);

  Virtqueue vq;
  std::lock_guard<Spinlock> lock(vq.lock());
  if (!vq.SetSize(ring_size, packed).ok()) Violation("a valid ring size was refused");
  VringAddress address{0, 0, h.UserAddress(config.desc), h.UserAddress(config.used),
                       h.UserAddress(config.avail), 0};
  // A packed base carries the wrap counter in bit 15 and must be inside the ring.
  const uint32_t base = packed ? (config.base & 0x8000) | ((config.base & 0x7fff) % ring_size)
                               : config.base;
  if (!vq.SetAddresses(address).ok() || !vq.SetBase(base, packed).ok()) {
    Violation("ring set-up refused before start");
  }
  bool started = vq.Start(h.memory_.get(), features).ok();
  vq.SetEnabled(true);
  // Where the guest's avail ring is, to play a split ring's driver (nullptr if not in
  // memory, or a packed ring: the fuzzer writes its descriptors' flags itself).
  auto* avail = packed ? nullptr
                       : reinterpret_cast<uint16_t*>(h.HostOf(
                             address.avail_user_addr, 4 + 2 * ring_size, /*user=*/true));
  if (reinterpret_cast<uintptr_t>(avail) % 2) avail = nullptr;

  static uint8_t frame[70000];
  for (const Op& op : ops) {
    switch (op.kind % 8) {
      case 0: {  // Guest TX burst.
        void* pkts[64];
        int budget = (op.b & 0x8000) ? op.b % 64 : -1;
        const uint32_t max = 1 + op.a % 64;
        uint32_t dropped;
        const uint32_t n = vq.Dequeue(AllocPacket, &budget, pkts, max, &dropped);
        if (n > max) Violation("Dequeue returned more than asked");
        if (dropped > max) Violation("Dequeue dropped more than it was asked to take");
        for (uint32_t i = 0; i < n; ++i) free(pkts[i]);
        break;
      }
      case 1: {  // Guest RX burst.
        vhu_tx_packet pkts[8];
        const unsigned n = 1 + op.a % 8;
        for (unsigned i = 0; i < n; ++i) {
          const uint32_t len = (op.c + i * op.b) % 70000;
          pkts[i] = {frame, len};
        }
        uint32_t dropped = 0;
        const uint32_t sent = vq.Enqueue(pkts, n, &dropped);
        if (sent > n || dropped > sent) Violation("Enqueue counts");
        break;
      }
      case 2: {  // The guest writes two bytes anywhere in its memory.
        if (uint8_t* p = h.HostOf(kGuestBase + op.c % (1u << 20), 2)) memcpy(p, &op.b, 2);
        break;
      }
      case 3:  // The guest makes 'a' more entries available.
        if (avail) __atomic_store_n(&avail[1], static_cast<uint16_t>(avail[1] + op.a),
                                    __ATOMIC_RELEASE);
        break;
      case 4:  // The guest publishes descriptor b.
        if (avail) {
          avail[2 + avail[1] % ring_size] = op.b;
          __atomic_store_n(&avail[1], static_cast<uint16_t>(avail[1] + 1),
                           __ATOMIC_RELEASE);
        }
        break;
      case 5:  // Translation near region edges, guest-physical or user.
        h.CheckTranslation(op.a, op.c, op.b, op.a & 0x80);
        break;
      case 6: {  // SET_MEM_TABLE again while running: remap onto fresh mappings.
        std::unique_ptr<GuestMemory> fresh = h.MapMemory();
        if (fresh == nullptr) Violation("a valid memory table was refused");
        if (started && !vq.Remap(fresh.get()).ok()) Violation("remap of a running ring failed");
        h.memory_ = std::move(fresh);
        break;
      }
      default:  // GET_VRING_BASE, SET_VRING_BASE and a new kick: stop and restart.
        vq.Stop();
        const uint32_t new_base =
            packed ? (op.b & 0x8000) | ((op.b & 0x7fff) % ring_size) : op.b;
        if (!vq.SetBase(new_base, packed).ok()) {
          Violation("SET_VRING_BASE refused on a stopped ring");
        }
        started = vq.Start(h.memory_.get(), features).ok();
        break;
    }
    if (vq.failure() != nullptr) break;  // The port would disconnect here.
  }
  vq.Reset();
}

}  // namespace
}  // namespace vhostuser::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::map<int, std::string> fds_before =
      vhostuser::fuzz::SettledOpenFds();
  vhostuser::fuzz::Run(data, size);
  vhostuser::fuzz::CheckNoFdLeaked(fds_before);
  return 0;
}
