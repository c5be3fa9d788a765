// A vhost-user frontend for tests: it plays the guest.  Guest RAM is a memfd, rings are
// built in it the way a virtio driver lays them out, and the control side speaks the
// protocol over a real Unix socket to a real vhu_port.  Tests can also send anything a
// hostile frontend would.
#ifndef TESTS_UNIT_TEST_FRONTEND_H
#define TESTS_UNIT_TEST_FRONTEND_H

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/protocol.h"
#include "runtime/unique_fd.h"

namespace vhostuser::testing {

// Guest RAM: one memfd mapped once.  Guest-physical addresses start at kGuestBase; the
// frontend's virtual address of a byte is its address in our mapping, as it would be
// in QEMU.
class GuestRam {
 public:
  static constexpr uint64_t kGuestBase = 0x100000;

  explicit GuestRam(size_t size);
  ~GuestRam();

  int fd() const { return fd_.get(); }
  size_t size() const { return size_; }
  uint8_t* host(uint64_t gpa) { return base_ + (gpa - kGuestBase); }
  uint64_t user_addr(uint64_t gpa) const {
    return reinterpret_cast<uint64_t>(base_) + (gpa - kGuestBase);
  }
  // Bump allocator over guest RAM; returns a guest-physical address.
  uint64_t Alloc(size_t size, size_t align = 64);
  MemoryRegionDesc Region() const;

 private:
  UniqueFd fd_;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
  size_t next_ = 0;
};

// The driver's side of one split ring in GuestRam.
class DriverRing {
 public:
  DriverRing(GuestRam& ram, uint16_t size);

  uint16_t size() const { return size_; }
  VringDesc* desc() { return desc_; }
  VringAddress Address(uint32_t index) const;

  struct Buffer {
    uint64_t gpa;
    uint32_t len;
  };
  // Writes a chain over the next free descriptors and returns its head (not yet made
  // available).
  uint16_t AddChain(const std::vector<Buffer>& buffers, bool writable) {
    return AddChain(buffers.data(), buffers.size(), writable);
  }
  // The same without a vector: what a benchmark's driver posts in its timed loop.
  uint16_t AddChain(const Buffer* buffers, size_t n, bool writable);
  // Writes an indirect table holding 'buffers' and a descriptor pointing at it.
  uint16_t AddIndirect(const std::vector<Buffer>& buffers, bool writable);
  // Makes 'head' available and bumps avail->idx.
  void Publish(uint16_t head);
  // Pops the next used element, if the device wrote one.
  bool PopUsed(VringUsedElem* elem);
  // How many used entries PopUsed() has taken in all (free-running, like the indices).
  uint16_t popped() const { return last_used_; }
  uint16_t avail_idx() const;
  uint16_t used_idx() const;
  uint16_t used_flags() const;
  void set_avail_flags(uint16_t flags);
  void set_used_event(uint16_t event);
  // Raw access for hostile tests.
  uint16_t* avail_ring() { return avail_ + 2; }
  void set_avail_idx(uint16_t idx);

 private:
  GuestRam& ram_;
  uint16_t size_;
  uint64_t desc_gpa_, avail_gpa_, used_gpa_;
  VringDesc* desc_;
  uint16_t* avail_;
  uint8_t* used_;
  uint16_t next_desc_ = 0;
  uint16_t last_used_ = 0;
};

// The driver's side of one packed ring in GuestRam (virtio 1.x 2.8).
class PackedDriverRing {
 public:
  static constexpr uint16_t kAvail = 1u << 7;
  static constexpr uint16_t kUsed = 1u << 15;

  PackedDriverRing(GuestRam& ram, uint16_t size);

  uint16_t size() const { return size_; }
  VringAddress Address(uint32_t index) const;

  // Makes a buffer of 'buffers' (consecutive descriptors, or one indirect descriptor)
  // available with buffer id 'id'; returns the position of its first descriptor.
  uint16_t Post(const std::vector<DriverRing::Buffer>& buffers, bool writable, uint16_t id,
                bool indirect = false) {
    return Post(buffers.data(), buffers.size(), writable, id, indirect);
  }
  // The same without a vector (a benchmark's timed loop).
  uint16_t Post(const DriverRing::Buffer* buffers, size_t n, bool writable, uint16_t id,
                bool indirect = false);
  // Pops the next used element (buffer id, length), if the device wrote one.  'n_descs'
  // is how many descriptors that buffer took when posted.
  bool PopUsed(uint16_t n_descs, VringUsedElem* elem);
  // Driver event suppression: flags (0 enable, 1 disable, 2 desc) and off_wrap.
  void set_driver_event(uint16_t flags, uint16_t off_wrap = 0);
  uint16_t device_event_flags() const;
  struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t id;
    uint16_t flags;
  };
  Desc* desc() { return desc_; }
  uint16_t next_position() const { return next_; }

 private:
  GuestRam& ram_;
  uint16_t size_;
  uint64_t desc_gpa_, driver_gpa_, device_gpa_;
  Desc* desc_;
  uint16_t* driver_event_;
  uint16_t* device_event_;
  uint16_t next_ = 0;
  bool wrap_ = true;
  uint16_t used_pos_ = 0;
  bool used_wrap_ = true;
};

// The control side: a connection to a port's socket.
class Frontend {
 public:
  static absl::StatusOr<std::unique_ptr<Frontend>> Connect(const std::string& path);
  // Adopts a connected socket (client-mode tests, where the port connects to us).
  explicit Frontend(UniqueFd fd) : fd_(std::move(fd)) {}

  int fd() const { return fd_.get(); }
  absl::Status Send(Request request, const void* payload, uint32_t size,
                    const std::vector<int>& fds = {}, uint32_t flags = 0);
  absl::Status SendU64(Request request, uint64_t value, const std::vector<int>& fds = {},
                       uint32_t flags = 0) {
    return Send(request, &value, sizeof value, fds, flags);
  }
  absl::StatusOr<std::vector<uint8_t>> Receive(Request expected);
  absl::StatusOr<uint64_t> GetU64(Request request);
  // GET_VRING_BASE of vring 'index' (which stops it): the reply's state.
  absl::StatusOr<VringState> GetVringBase(uint32_t index);
  // Sends GET_FEATURES and waits for the reply: every earlier request has been handled.
  absl::Status Sync();
  // True if the backend closed the connection within 'timeout_ms'.
  bool WaitClosed(int timeout_ms);

  struct RingSetup {
    uint32_t index;
    DriverRing* ring;
    int call_fd = -1;  // -1: no call fd (polling guest).
    uint32_t base = 0;  // SET_VRING_BASE.
    PackedDriverRing* packed = nullptr;  // Instead of 'ring' for packed queues.
  };
  // The whole handshake a frontend does: features, memory table, every ring, enable.
  absl::Status SetUp(GuestRam& ram, uint64_t features, const std::vector<RingSetup>& rings,
                     bool protocol_features = true);

 private:
  UniqueFd fd_;
};

// A frame of 'size' bytes whose content encodes 'seq', to check what arrives.
std::vector<uint8_t> TestFrame(uint32_t size, uint32_t seq);

// A TCP socket over loopback whose last close() blocks for up to 'linger_s' seconds:
// SO_LINGER is set, and data it sent waits for a peer that does not read (the
// connection sits unaccepted in a listener's backlog, which this object keeps).  What
// a hostile frontend passes to make the switch's close() block.
class LingeringSocket {
 public:
  explicit LingeringSocket(int linger_s);
  bool valid() const { return socket_.valid(); }
  int fd() const { return socket_.get(); }
  // The socket's fd, for the caller to pass on and close.
  UniqueFd TakeSocket() { return std::move(socket_); }
  // Accepts the connection and reads what the socket sent: a close() blocked on it
  // then returns, and a later one does not block.
  void Unblock();

 private:
  UniqueFd listener_, socket_;
};

}  // namespace vhostuser::testing

#endif  // TESTS_UNIT_TEST_FRONTEND_H
