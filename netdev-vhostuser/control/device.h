// The virtio-net device one frontend drives over one connection: negotiated features,
// guest memory and vrings, changed by the vhost-user requests the frontend sends.
//
// Handle() runs on the control thread.  Any request that breaks the protocol returns an
// error; the owner then drops the connection and calls Reset(), which stops every
// vring, closes every fd and unmaps the guest's memory.
#ifndef NETDEV_VHOSTUSER_CONTROL_DEVICE_H
#define NETDEV_VHOSTUSER_CONTROL_DEVICE_H

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "control/message_reader.h"
#include "memory/dirty_log.h"
#include "memory/guest_memory.h"
#include "control/vring_table.h"
#include "rings/virtqueue.h"
#include "runtime/log.h"
#include "runtime/fd_closer.h"
#include "runtime/unique_fd.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser {

class Device {
 public:
  // Descriptors in all of a port's started rings together, at most: 128 queue pairs of
  // 4096-descriptor rings (QEMU's largest are 1024; DPDK's virtio-user may ask for
  // more).  A started ring has per-descriptor state of ours (used elements staged for
  // a burst, 8 bytes each), so without a bound a frontend could start 256 rings of
  // 32768 (sharing one small memfd: rings may overlap each other) and make us hold
  // about 130 MiB per port that no memory limit counted; now at most 8 MiB.
  static constexpr uint64_t kMaxStartedRingEntries = 2 * 128 * 4096;

  // 'post' queues an event for the port's user; 'log' takes the port's log lines;
  // 'max_memory' bounds the guest memory a frontend may have us map, in bytes;
  // 'max_frame_size' the frames its guest may transmit (1 to kMaxFrameSize).
  Device(std::function<void(vhu_event)> post, PortLog log,
         uint64_t max_memory, uint32_t max_frame_size = kMaxFrameSize);
  ~Device() { Reset(); }

  // A new frontend connected: its own budget of log lines.
  void NewConnection() { unsupported_logged_ = 0; }

  // Handles one request, writing its reply (if any) to 'fd'.
  absl::Status Handle(int fd, Message& message);

  // Back to the state of a new connection: vrings stopped and forgotten, fds closed,
  // memory unmapped.  Counters survive.
  void Reset();

  // Any thread: vring 'index', or nullptr while no request has named it.
  Virtqueue* FindVring(unsigned index) const { return vrings_.Find(index); }
  // Control thread: calls f(index, vring) for every vring a frontend has named.
  template <typename F>
  void ForEachVring(F&& f) const { vrings_.ForEach(f); }

  uint64_t features() const { return features_; }
  uint64_t protocol_features() const { return protocol_features_; }
  uint16_t mtu() const { return mtu_; }
  uint8_t device_status() const { return device_status_; }
  uint32_t num_vrings() const { return num_vrings_; }
  // The NUMA node of the guest's memory (where the first ring started on this
  // connection has its descriptors), or -1 before any started.
  int numa_node() const { return numa_node_; }
  // The queue pairs whose guest-RX (rx_queues) or guest-TX (tx_queues) vring is
  // usable, as of the last request handled (vhu_queue_set_has() reads them).
  using QueueSet = std::array<uint64_t, VHU_QUEUE_SET_WORDS>;
  const QueueSet& rx_queues() const { return rx_queues_; }
  const QueueSet& tx_queues() const { return tx_queues_; }
  bool ready() const { return (rx_queues_[0] & 1) && (tx_queues_[0] & 1); }
  uint64_t mapped_bytes() const { return memory_ ? memory_->mapped_bytes() : 0; }
  // The memory region whose mapping lost its backing (sigbus_guard.h), or -1.
  int lost_memory_region() const { return memory_ ? memory_->LostRegion() : -1; }
  // Whether the dirty log's file shrank under the data path's marks.
  bool log_lost() const { return log_ != nullptr && log_->lost(); }
  // The largest dirty log SET_LOG_BASE may map, from the memory table and the limit.
  uint64_t MaxLogSize() const;

  // Data path, any thread: whether a SEND_RARP waits (one relaxed load), and taking
  // the MAC of one not yet announced.
  bool rarp_pending() const { return rarp_.load(std::memory_order_relaxed) != 0; }
  bool TakeRarp(uint8_t mac[6]) {
    const uint64_t v = rarp_.exchange(0, std::memory_order_acquire);
    if (v == 0) return false;
    for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(v >> (8 * i));
    return true;
  }
  // Gives back a RARP taken but not sent (no packet to build it in), unless a new
  // SEND_RARP came meanwhile.
  void ReturnRarp(const uint8_t mac[6]) {
    uint64_t v = 1ull << 63;
    for (int i = 0; i < 6; ++i) v |= uint64_t{mac[i]} << (8 * i);
    uint64_t none = 0;
    rarp_.compare_exchange_strong(none, v, std::memory_order_release,
                                  std::memory_order_relaxed);
  }

  // Re-reads which vrings are usable (after a data-path failure, say) and posts events
  // for what changed.
  void RefreshVringState();

 private:
  absl::Status Dispatch(int fd, Message& message, bool* replied);
  absl::Status Reply(int fd, const Message& request, const void* payload, uint32_t size);
  absl::Status ReplyU64(int fd, const Message& request, uint64_t value) {
    return Reply(fd, request, &value, sizeof value);
  }

  absl::Status SetMemTable(Message& message);
  absl::Status SetLogBase(int fd, Message& message, bool* replied);
  // Points every vring at the dirty log, or at none, as features_ and log_ say.
  void ApplyLogging();
  // The same for one vring, whose lock the caller holds: a vring waits while logging
  // is on and the log it needs has not come (Virtqueue::log_needed()).
  void PointAtLog(Virtqueue& vq) const;
  absl::Status SetVringFd(Message& message, Request request);
  absl::StatusOr<Virtqueue*> VringFor(uint32_t index);
  absl::Status MaybeStart(Virtqueue& vq);
  bool protocol_features_enabled() const {
    return features_ & Bit(feature::kProtocolFeatures);
  }

  std::function<void(vhu_event)> post_;
  const PortLog port_log_;
  // Unsupported requests logged on this connection (Handle(); not reset by
  // RESET_OWNER, which the frontend may send as often as it likes).
  static constexpr int kMaxUnsupportedLogged = 8;
  int unsupported_logged_ = 0;
  const uint64_t max_memory_;
  const uint32_t max_frame_size_;
  // FdCloser's owner of the fds our mappings keep (file_mapping.h): the port's own, so
  // that freeing one guest's memory waits behind no other port's, and not the one its
  // frontend's other fds count against.
  const uint32_t mappings_owner_ = FdCloser::NewOwner();

  uint64_t features_ = 0;
  uint64_t protocol_features_ = 0;
  bool features_set_ = false;
  uint16_t mtu_ = 0;
  uint8_t device_status_ = 0;
  uint32_t num_vrings_ = 0;
  int numa_node_ = -1;
  QueueSet rx_queues_{};
  QueueSet tx_queues_{};
  std::unique_ptr<GuestMemory> memory_;
  std::unique_ptr<DirtyLog> log_;
  uint64_t log_bases_ = 0;  // SET_LOG_BASE requests taken, on this connection or before.
  UniqueFd backend_req_fd_;
  // A SEND_RARP's MAC (bytes 0-5) with bit 63 set while it waits for the data path.
  std::atomic<uint64_t> rarp_{0};
  VringTable vrings_;
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_CONTROL_DEVICE_H
