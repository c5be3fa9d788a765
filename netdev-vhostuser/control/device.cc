#include "control/device.h"

#include <fcntl.h>
#include <linux/mempolicy.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "control/fd_kind.h"
#include "runtime/log.h"

namespace vhostuser {
namespace {

// The NUMA node of the page at 'address', or -1.  The switch polls a port from PMD
// threads of its node, as OVS-DPDK does with the node its vhost library finds for the
// guest's rings.  A ring's descriptor table has been written by the guest, so its page
// is there; had the frontend truncated the file, the fault is the SIGBUS guard's.
int NumaNodeOf(const void* address) {
  if (address == nullptr) return -1;
  int node = -1;
  if (syscall(SYS_get_mempolicy, &node, nullptr, 0UL, address,
              MPOL_F_NODE | MPOL_F_ADDR) != 0) {
    return -1;
  }
  return node;
}

absl::Status BadPayload(const Message& m) {
  return absl::InvalidArgumentError(absl::StrCat(
      RequestName(m.header.request), " has a ", m.header.size, "-byte payload"));
}

absl::Status ExpectFds(const Message& m, size_t n) {
  if (m.fds.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat(RequestName(m.header.request),
                                                   " carries ", m.fds.size(),
                                                   " fds, expected ", n));
  }
  return absl::OkStatus();
}

// The call fd is written from the data path, so a write to it must never block: a
// frontend could saturate a blocking eventfd's counter and stop the switch's polling
// thread for good.  It is made non-blocking (the flag is on the file description the
// frontend shares; virtio frontends create their call eventfds non-blocking anyway), and
// every write is watched besides (call_notifier.h).
absl::Status MakeNonBlocking(int fd, absl::string_view what) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " cannot be made non-blocking: ", strerror(errno)));
  }
  return absl::OkStatus();
}

// Holds every vring's lock: while it lives no burst runs on this device.  Vrings are
// created on the control thread only, the one that holds this, so none can appear
// unlocked meanwhile.
class AllVringsLocked {
 public:
  explicit AllVringsLocked(const VringTable& vrings) : vrings_(vrings) {
    vrings_.ForEach([](unsigned, Virtqueue& vq) { vq.lock().lock(); });
  }
  ~AllVringsLocked() {
    vrings_.ForEach([](unsigned, Virtqueue& vq) { vq.lock().unlock(); });
  }

 private:
  const VringTable& vrings_;
};

}  // namespace

Device::Device(std::function<void(vhu_event)> post, PortLog log, uint64_t max_memory,
               uint32_t max_frame_size)
    : post_(std::move(post)), port_log_(std::move(log)),
      max_memory_(max_memory),
      max_frame_size_(max_frame_size) {}

void Device::Reset() {
  {
    AllVringsLocked locked(vrings_);
    vrings_.ForEach([](unsigned, Virtqueue& vq) { vq.Reset(); });
  }
  vrings_.ForEach([](unsigned, Virtqueue& vq) { vq.ReleaseBurstState(); });
  memory_.reset();
  log_.reset();  // The vrings stopped pointing at it in their Reset().
  backend_req_fd_.reset();
  rarp_.store(0, std::memory_order_relaxed);
  features_ = protocol_features_ = 0;
  features_set_ = false;
  mtu_ = 0;
  device_status_ = 0;
  num_vrings_ = 0;
  numa_node_ = -1;
  rx_queues_ = tx_queues_ = {};
}

absl::StatusOr<Virtqueue*> Device::VringFor(uint32_t index) {
  if (index >= VHU_MAX_VRINGS) {
    return absl::InvalidArgumentError(
        absl::StrCat("vring index ", index, " out of range (", VHU_MAX_VRINGS,
                     " vrings)"));
  }
  if (index + 1 > num_vrings_) num_vrings_ = index + 1;
  return &vrings_.GetOrCreate(index);
}

absl::Status Device::Reply(int fd, const Message& request, const void* payload,
                           uint32_t size) {
  MessageHeader header{request.header.request, kVersion | kFlagReply, size};
  return SendMessage(fd, header, payload);
}

absl::Status Device::Handle(int fd, Message& message) {
  bool replied = false;
  absl::Status status = Dispatch(fd, message, &replied);
  // REPLY_ACK: the frontend asked to hear how a request without a reply of its own went.
  if ((message.header.flags & kFlagNeedReply) && !replied &&
      (protocol_features_ & Bit(protocol_feature::kReplyAck))) {
    absl::Status ack = ReplyU64(fd, message, status.ok() ? 0 : 1);
    if (status.ok()) status = ack;
  }
  return status;
}

absl::Status Device::Dispatch(int fd, Message& m, bool* replied) {
  const auto request = static_cast<Request>(m.header.request);
  switch (request) {
    case Request::kGetFeatures:
      if (m.header.size != 0 && m.header.size != 8) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      *replied = true;
      return ReplyU64(fd, m, kSupportedFeatures);

    case Request::kSetFeatures: {
      uint64_t features;
      if (!m.PayloadAs(&features)) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      if (features & ~kSupportedFeatures) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "SET_FEATURES %#x asks for features we do not offer (%#x)", features,
            features & ~kSupportedFeatures));
      }
      const bool had_log_all = features_ & Bit(feature::kLogAll);
      // The protocol features that hold once this is taken (none without
      // VHOST_USER_F_PROTOCOL_FEATURES).
      const uint64_t protocol_features =
          (features & Bit(feature::kProtocolFeatures)) ? protocol_features_ : 0;
      if ((features & Bit(feature::kLogAll)) &&
          !(protocol_features & Bit(protocol_feature::kLogShmfd))) {
        // Its rings would wait for a log that cannot come.
        return absl::InvalidArgumentError(
            "VHOST_F_LOG_ALL without VHOST_USER_PROTOCOL_F_LOG_SHMFD negotiated");
      }
      features_ = features;
      features_set_ = true;
      if (!protocol_features_enabled()) protocol_features_ = 0;
      // QEMU turns VHOST_F_LOG_ALL on and off while the rings run (migration).
      const bool log_all = features_ & Bit(feature::kLogAll);
      if (log_all != had_log_all) ApplyLogging();
      // A migration ended or was cancelled: the frontend frees its log, and gives the
      // next migration's before it turns LOG_ALL on again.  Kept, this one would be
      // marked again, in memory the frontend may have reused, should LOG_ALL come
      // back without a new one.  (No vring points at it since ApplyLogging().)
      if (had_log_all && !log_all) log_.reset();
      return absl::OkStatus();
    }

    case Request::kGetProtocolFeatures:
      if (m.header.size != 0 && m.header.size != 8) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      *replied = true;
      return ReplyU64(fd, m, kSupportedProtocolFeatures);

    case Request::kSetProtocolFeatures: {
      uint64_t features;
      if (!m.PayloadAs(&features)) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      if (features & ~kSupportedProtocolFeatures) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "SET_PROTOCOL_FEATURES %#x asks for features we do not offer", features));
      }
      protocol_features_ = features;
      return absl::OkStatus();
    }

    case Request::kSetOwner:
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      return absl::OkStatus();

    case Request::kResetOwner:
    case Request::kResetDevice: {
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      const uint64_t protocol_features = protocol_features_;
      Reset();
      // RESET_DEVICE keeps the negotiated protocol features (spec: "Ring states").
      if (request == Request::kResetDevice) protocol_features_ = protocol_features;
      RefreshVringState();
      return absl::OkStatus();
    }

    case Request::kSetMemTable:
      return SetMemTable(m);

    case Request::kGetQueueNum:
      if (m.header.size != 0 && m.header.size != 8) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      *replied = true;
      return ReplyU64(fd, m, VHU_MAX_QUEUE_PAIRS);

    case Request::kSetVringNum:
    case Request::kSetVringBase:
    case Request::kSetVringEnable:
    case Request::kGetVringBase: {
      VringState state;
      if (!m.PayloadAs(&state)) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      auto vq = VringFor(state.index);
      if (!vq.ok()) return vq.status();
      absl::Status result;
      uint32_t base = 0;
      {
        std::lock_guard<Spinlock> lock((*vq)->lock());
        switch (request) {
          case Request::kSetVringNum:
            result = (*vq)->SetSize(state.num, features_ & Bit(feature::kRingPacked));
            break;
          case Request::kSetVringBase:
            result = (*vq)->SetBase(state.num, features_ & Bit(feature::kRingPacked));
            break;
          case Request::kSetVringEnable:
            if (state.num > 1) {
              result = absl::InvalidArgumentError("SET_VRING_ENABLE takes 0 or 1");
            } else {
              (*vq)->SetEnabled(state.num == 1);
            }
            break;
          default:  // kGetVringBase
            base = (*vq)->Stop();
            // QEMU stopping a ring during a migration frees its log; starting the
            // ring again, it gives a new one after the ring's setup.  Until then the
            // ring waits, rather than mark a log nobody reads (PointAtLog()).
            if (features_ & Bit(feature::kLogAll)) (*vq)->set_log_needed(log_bases_ + 1);
            break;
        }
      }
      if (!result.ok()) return result;
      if (request == Request::kGetVringBase) (*vq)->ReleaseBurstState();
      if (request == Request::kSetVringEnable || request == Request::kGetVringBase) {
        RefreshVringState();
      }
      if (request == Request::kGetVringBase) {
        VringState reply{state.index, base};
        *replied = true;
        return Reply(fd, m, &reply, sizeof reply);
      }
      return absl::OkStatus();
    }

    case Request::kSetVringAddr: {
      VringAddress address;
      if (!m.PayloadAs(&address)) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      auto vq = VringFor(address.index);
      if (!vq.ok()) return vq.status();
      std::lock_guard<Spinlock> lock((*vq)->lock());
      return (*vq)->SetAddresses(address);
    }

    case Request::kSetVringKick:
    case Request::kSetVringCall:
    case Request::kSetVringErr:
      return SetVringFd(m, request);

    case Request::kSetLogBase:
      return SetLogBase(fd, m, replied);

    case Request::kSetLogFd:
      // QEMU hands an eventfd to be told of log changes; we write the log in place
      // and have nothing to tell.  Checked, then closed with the message.
      if (m.header.size != 0 && m.header.size != 8) return BadPayload(m);
      if (auto s = ExpectFds(m, 1); !s.ok()) return s;
      return CheckEventFd(m.fds[0].get(), "SET_LOG_FD fd");

    case Request::kSendRarp: {
      uint64_t mac;
      if (!m.PayloadAs(&mac)) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      // Sent to the destination of a live migration whose guest does not announce
      // itself: the next dequeue from queue pair 0 hands the switch a RARP from the
      // guest's MAC (rarp.h), even if the rings start only later.
      rarp_.store((mac & 0xffffffffffffull) | (1ull << 63), std::memory_order_release);
      return absl::OkStatus();
    }

    case Request::kNetSetMtu: {
      uint64_t mtu;
      if (!m.PayloadAs(&mtu)) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      if (mtu < 68 || mtu > 65535) {
        return absl::InvalidArgumentError(absl::StrCat("NET_SET_MTU ", mtu, " out of range"));
      }
      mtu_ = static_cast<uint16_t>(mtu);
      return absl::OkStatus();
    }

    case Request::kSetBackendReqFd:
      if (m.header.size != 0 && m.header.size != 8) return BadPayload(m);
      if (auto s = ExpectFds(m, 1); !s.ok()) return s;
      if (auto s = CheckUnixSocket(m.fds[0].get(), "SET_BACKEND_REQ_FD fd"); !s.ok()) {
        return s;
      }
      // We send no backend requests, but holding the channel is what the frontend
      // expects of a backend that offered it.
      backend_req_fd_ = std::move(m.fds[0]);
      return absl::OkStatus();

    case Request::kSetStatus: {
      uint64_t status;
      if (!m.PayloadAs(&status)) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      if (status > 0xff) return absl::InvalidArgumentError("SET_STATUS above 0xff");
      device_status_ = static_cast<uint8_t>(status);
      return absl::OkStatus();
    }

    case Request::kGetStatus:
      if (m.header.size != 0 && m.header.size != 8) return BadPayload(m);
      if (auto s = ExpectFds(m, 0); !s.ok()) return s;
      *replied = true;
      return ReplyU64(fd, m, device_status_);

    default:
      // Requests for features we never offered (logging, inflight tracking, config
      // space, postcopy...).  A conforming frontend does not send them; refusing them
      // (with a failed ack when one is asked for) keeps a probing one harmless.  Their
      // fds are closed with the message.
      // Logged a few times per connection: a frontend repeating them must not use up
      // its port's share of the log, which the port's disconnects need.
      if (unsupported_logged_ < kMaxUnsupportedLogged) {
        ++unsupported_logged_;
        port_log_(VHU_LOG_WARN, "ignoring unsupported request ", RequestName(m.header.request),
                  " (", m.header.request, ")",
                  unsupported_logged_ == kMaxUnsupportedLogged
                      ? "; further ones on this connection are not logged"
                      : "");
      }
      if ((m.header.flags & kFlagNeedReply) &&
          (protocol_features_ & Bit(protocol_feature::kReplyAck))) {
        *replied = true;
        return ReplyU64(fd, m, 1);  // Not done: the frontend must not think it was.
      }
      return absl::OkStatus();
  }
}

absl::Status Device::SetMemTable(Message& m) {
  MemoryTableHeader table;
  if (m.header.size < sizeof table) return BadPayload(m);
  __builtin_memcpy(&table, m.payload, sizeof table);
  if (table.nregions == 0 || table.nregions > kMaxMemoryRegions) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SET_MEM_TABLE with ", table.nregions, " regions (1 to ", kMaxMemoryRegions,
        " allowed)"));
  }
  if (m.header.size != sizeof table + table.nregions * sizeof(MemoryRegionDesc)) {
    return BadPayload(m);
  }
  if (auto s = ExpectFds(m, table.nregions); !s.ok()) return s;
  std::vector<MemoryRegionDesc> regions(table.nregions);
  __builtin_memcpy(regions.data(), m.payload + sizeof table,
                   table.nregions * sizeof(MemoryRegionDesc));
  std::vector<int> fds;
  uint64_t total = 0;
  for (size_t i = 0; i < m.fds.size(); ++i) {
    const std::string what = absl::StrCat("SET_MEM_TABLE region ", i, " fd");
    if (auto s = CheckMemoryFd(m.fds[i].get(), what); !s.ok()) return s;
    fds.push_back(m.fds[i].get());
    total += regions[i].memory_size;  // Each below 2^64 - address: Map() checks.
    if (regions[i].memory_size > max_memory_ || total > max_memory_) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "SET_MEM_TABLE maps more than the port's guest memory limit of %d MiB "
          "(options:vhost-max-guest-memory)",
          max_memory_ >> 20));
    }
  }
  auto memory = GuestMemory::Map(regions, fds, mappings_owner_);
  if (!memory.ok()) return memory.status();
  // The mappings hold the memory; the fds are closed with the message.

  std::unique_ptr<GuestMemory> old;
  {
    // Quiesce the data path: running rings move to the new mappings before any burst
    // can see them, and the old ones are unmapped only after.
    AllVringsLocked locked(vrings_);
    absl::Status remapped = absl::OkStatus();
    vrings_.ForEach([&](unsigned, Virtqueue& vq) {
      if (remapped.ok() && vq.started()) remapped = vq.Remap(memory->get());
    });
    if (!remapped.ok()) {
      // No ring may keep pointing into a table we are about to unmap.
      vrings_.ForEach([](unsigned, Virtqueue& vq) { vq.Stop(); });
      return remapped;
    }
    old = std::exchange(memory_, *std::move(memory));
  }
  return absl::OkStatus();
}

uint64_t Device::MaxLogSize() const {
  // One bit per 4 KiB page of guest-physical space, up to the top of the memory table.
  // A log covering eight times the port's memory limit leaves room for holes below the
  // top; a guest whose memory sits higher still (above a relocated hole, say) gets its
  // table's top and 32 GiB to grow into, QEMU sizing the log before it adds memory.
  // The top counts up to 2^48 at most: no table makes the log's mapping exceed 8 GiB.
  constexpr uint64_t kBitsPerByte = 8, kPage = DirtyLog::kPageSize;
  uint64_t top = 0;
  if (memory_ != nullptr) {
    for (const GuestMemory::Region& r : memory_->regions()) {
      top = std::max(top, r.guest_phys_addr + r.size);  // Map() refused wrapping ends.
    }
  }
  top = std::min(top, uint64_t{1} << 48) + (uint64_t{32} << 30);
  return std::max(max_memory_ * kBitsPerByte, top) / (kPage * kBitsPerByte);
}

absl::Status Device::SetLogBase(int fd, Message& m, bool* replied) {
  LogBase base;
  if (!m.PayloadAs(&base)) return BadPayload(m);
  if (auto s = ExpectFds(m, 1); !s.ok()) return s;
  if (!(protocol_features_ & Bit(protocol_feature::kLogShmfd))) {
    return absl::InvalidArgumentError(
        "SET_LOG_BASE without VHOST_USER_PROTOCOL_F_LOG_SHMFD negotiated");
  }
  if (auto s = CheckMemoryFd(m.fds[0].get(), "SET_LOG_BASE fd"); !s.ok()) {
    return s;
  }
  auto log = DirtyLog::Map(m.fds[0].get(), base.mmap_size, base.mmap_offset, MaxLogSize(),
                           mappings_owner_);
  if (!log.ok()) return log.status();
  std::unique_ptr<DirtyLog> old;
  {
    AllVringsLocked locked(vrings_);  // No burst may be marking the old log.
    old = std::exchange(log_, *std::move(log));
    ++log_bases_;
    vrings_.ForEach([&](unsigned, Virtqueue& vq) { PointAtLog(vq); });
  }
  // With LOG_SHMFD the frontend waits for a reply (an empty u64) before it goes on.
  *replied = true;
  return ReplyU64(fd, m, 0);
}

void Device::ApplyLogging() {
  AllVringsLocked locked(vrings_);
  vrings_.ForEach([&](unsigned, Virtqueue& vq) { PointAtLog(vq); });
}

void Device::PointAtLog(Virtqueue& vq) const {
  const bool log_all = features_ & Bit(feature::kLogAll);
  const bool have_log = log_ != nullptr && log_bases_ >= vq.log_needed();
  vq.SetLog(log_all && have_log ? log_.get() : nullptr, log_all && !have_log);
}

absl::Status Device::SetVringFd(Message& m, Request request) {
  uint64_t payload;
  if (!m.PayloadAs(&payload)) return BadPayload(m);
  if (payload & ~(kVringIndexMask | kVringNoFdFlag)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s payload %#x has unknown bits", RequestName(m.header.request),
                        payload));
  }
  const bool no_fd = payload & kVringNoFdFlag;
  if (auto s = ExpectFds(m, no_fd ? 0 : 1); !s.ok()) return s;
  auto vq = VringFor(static_cast<uint32_t>(payload & kVringIndexMask));
  if (!vq.ok()) return vq.status();
  UniqueFd fd = no_fd ? UniqueFd() : std::move(m.fds[0]);
  if (fd.valid()) {
    const std::string what = absl::StrCat(RequestName(m.header.request), " fd");
    if (absl::Status s = CheckEventFd(fd.get(), what); !s.ok()) return s;
    if (request == Request::kSetVringCall) {
      if (absl::Status s = MakeNonBlocking(fd.get(), what); !s.ok()) return s;
    }
  }
  const bool starts = request == Request::kSetVringKick && !(*vq)->started();
  if (starts) (*vq)->PrepareBurstState(features_ & Bit(feature::kRingPacked));
  absl::Status started = absl::OkStatus();
  {
    std::lock_guard<Spinlock> lock((*vq)->lock());
    switch (request) {
      case Request::kSetVringKick:
        (*vq)->SetKickFd(std::move(fd), no_fd);
        started = MaybeStart(**vq);
        break;
      case Request::kSetVringCall:
        (*vq)->SetCallFd(std::move(fd));
        break;
      default:
        (*vq)->SetErrFd(std::move(fd));
        break;
    }
  }
  if (starts && !(*vq)->started()) (*vq)->ReleaseBurstState();  // Refused, or waits.
  if (!started.ok()) return started;
  if (request == Request::kSetVringKick) RefreshVringState();
  return absl::OkStatus();
}

// Called with vq's lock held, after SET_VRING_KICK: the spec's signal that the ring is
// set up and may start.
absl::Status Device::MaybeStart(Virtqueue& vq) {
  if (vq.started()) return absl::OkStatus();
  // The other rings' sizes and states change only on this thread: read without their
  // locks (vq's is held).
  uint64_t entries = vq.size();
  vrings_.ForEach([&](unsigned, const Virtqueue& other) {
    if (&other != &vq && other.started()) entries += other.size();
  });
  if (entries > kMaxStartedRingEntries) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "started rings would hold ", entries, " descriptors; a port takes at most ",
        kMaxStartedRingEntries));
  }
  PointAtLog(vq);
  RingFeatures ring_features = RingFeaturesFrom(features_);
  ring_features.max_frame_size = max_frame_size_;
  if (absl::Status s = vq.Start(memory_.get(), ring_features); !s.ok()) {
    return s;
  }
  // Without protocol features a ring is enabled as soon as it starts; with them it
  // waits for SET_VRING_ENABLE.
  if (!protocol_features_enabled()) vq.SetEnabled(true);
  if (numa_node_ < 0) numa_node_ = NumaNodeOf(vq.descriptor_table());
  return absl::OkStatus();
}

void Device::RefreshVringState() {
  QueueSet rx{}, tx{};
  vrings_.ForEach([&](unsigned i, Virtqueue& vq) {
    std::lock_guard<Spinlock> lock(vq.lock());
    if (vq.usable()) (i % 2 == 0 ? rx : tx)[i / 128] |= uint64_t{1} << (i / 2 % 64);
  });
  const bool was_ready = ready();
  for (unsigned q = 0; q < VHU_MAX_QUEUE_PAIRS; ++q) {
    const uint64_t bit = uint64_t{1} << (q % 64);
    if ((rx[q / 64] ^ rx_queues_[q / 64]) & bit) {
      post_(vhu_event{VHU_EVENT_VRING_CHANGED, static_cast<int>(2 * q)});
    }
    if ((tx[q / 64] ^ tx_queues_[q / 64]) & bit) {
      post_(vhu_event{VHU_EVENT_VRING_CHANGED, static_cast<int>(2 * q + 1)});
    }
  }
  rx_queues_ = rx;
  tx_queues_ = tx;
  if (!was_ready && ready()) post_(vhu_event{VHU_EVENT_READY, -1});
}

}  // namespace vhostuser
