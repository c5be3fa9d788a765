// Wire format of the vhost-user protocol (QEMU docs/interop/vhost-user.rst) and the
// virtio feature bits this backend speaks of.  Layouts are the on-the-wire ones: every
// field little-endian, as on the x86 and arm64 hosts we run on.
#ifndef NETDEV_VHOSTUSER_PROTOCOL_PROTOCOL_H
#define NETDEV_VHOSTUSER_PROTOCOL_PROTOCOL_H

#include <cstddef>
#include <cstdint>

namespace vhostuser {

// Front-end requests.
enum class Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kSendRarp = 19,
  kNetSetMtu = 20,
  kSetBackendReqFd = 21,
  kIotlbMsg = 22,
  kSetVringEndian = 23,
  kGetConfig = 24,
  kSetConfig = 25,
  kCreateCryptoSession = 26,
  kCloseCryptoSession = 27,
  kPostcopyAdvise = 28,
  kPostcopyListen = 29,
  kPostcopyEnd = 30,
  kGetInflightFd = 31,
  kSetInflightFd = 32,
  kGpuSetSocket = 33,
  kResetDevice = 34,
  kVringKick = 35,
  kGetMaxMemSlots = 36,
  kAddMemReg = 37,
  kRemMemReg = 38,
  kSetStatus = 39,
  kGetStatus = 40,
};

const char* RequestName(uint32_t request);

// Header flags.
inline constexpr uint32_t kVersionMask = 0x3;
inline constexpr uint32_t kVersion = 0x1;
inline constexpr uint32_t kFlagReply = 1u << 2;
inline constexpr uint32_t kFlagNeedReply = 1u << 3;

struct MessageHeader {
  uint32_t request;
  uint32_t flags;
  uint32_t size;  // Payload bytes that follow.
};
static_assert(sizeof(MessageHeader) == 12);

// The largest payload any request we accept carries (SET_MEM_TABLE with 8 regions is
// 264 bytes, GET_CONFIG 12 + 256).  A header announcing more is hostile or broken.
inline constexpr uint32_t kMaxPayload = 4096;
// Fds one message may carry (SET_MEM_TABLE: one per region).
inline constexpr int kMaxFdsPerMessage = 8;
inline constexpr uint32_t kMaxMemoryRegions = 8;

struct VringState {  // SET_VRING_NUM, SET_VRING_BASE, GET_VRING_BASE, SET_VRING_ENABLE
  uint32_t index;
  uint32_t num;
};

struct VringAddress {  // SET_VRING_ADDR
  uint32_t index;
  uint32_t flags;
  uint64_t desc_user_addr;
  uint64_t used_user_addr;
  uint64_t avail_user_addr;
  uint64_t log_guest_addr;
};
static_assert(sizeof(VringAddress) == 40);

struct MemoryRegionDesc {
  uint64_t guest_phys_addr;
  uint64_t memory_size;
  uint64_t userspace_addr;
  uint64_t mmap_offset;
};
static_assert(sizeof(MemoryRegionDesc) == 32);

struct LogBase {  // SET_LOG_BASE, with the log's fd
  uint64_t mmap_size;
  uint64_t mmap_offset;
};
static_assert(sizeof(LogBase) == 16);

// SET_VRING_ADDR flags: the frontend wants the used ring's writes logged.
inline constexpr uint32_t kVringFlagLog = 1;

struct MemoryTableHeader {  // SET_MEM_TABLE, followed by 'nregions' MemoryRegionDesc
  uint32_t nregions;
  uint32_t padding;
};

// The u64 payload of SET_VRING_KICK/CALL/ERR.
inline constexpr uint64_t kVringIndexMask = 0xff;
inline constexpr uint64_t kVringNoFdFlag = 1ull << 8;

// Virtio feature bits (virtio 1.x, section 5.1.3 and 6).
namespace feature {
inline constexpr int kNetMtu = 3;
inline constexpr int kNetMrgRxbuf = 15;
inline constexpr int kNetStatus = 16;
inline constexpr int kNetCtrlVq = 17;
inline constexpr int kNetGuestAnnounce = 21;
inline constexpr int kNetMq = 22;
inline constexpr int kNotifyOnEmpty = 24;
inline constexpr int kLogAll = 26;  // VHOST_F_LOG_ALL: dirty page logging (migration)
inline constexpr int kAnyLayout = 27;
inline constexpr int kRingIndirectDesc = 28;
inline constexpr int kRingEventIdx = 29;
inline constexpr int kProtocolFeatures = 30;  // VHOST_USER_F_PROTOCOL_FEATURES
inline constexpr int kVersion1 = 32;
inline constexpr int kAccessPlatform = 33;
inline constexpr int kRingPacked = 34;
inline constexpr int kInOrder = 35;
}  // namespace feature

// Protocol feature bits.
namespace protocol_feature {
inline constexpr int kMq = 0;
inline constexpr int kLogShmfd = 1;
inline constexpr int kRarp = 2;
inline constexpr int kReplyAck = 3;
inline constexpr int kNetMtu = 4;
inline constexpr int kBackendReq = 5;
inline constexpr int kCrossEndian = 6;
inline constexpr int kCryptoSession = 7;
inline constexpr int kPagefault = 8;
inline constexpr int kConfig = 9;
inline constexpr int kBackendSendFd = 10;
inline constexpr int kHostNotifier = 11;
inline constexpr int kInflightShmfd = 12;
inline constexpr int kResetDevice = 13;
inline constexpr int kInbandNotifications = 14;
inline constexpr int kConfigureMemSlots = 15;
inline constexpr int kStatus = 16;
}  // namespace protocol_feature

constexpr uint64_t Bit(int n) { return 1ull << n; }

// What this backend implements, and so advertises.  Nothing for offloads until they
// exist.
inline constexpr uint64_t kSupportedFeatures =
    Bit(feature::kNetMtu) | Bit(feature::kNetMrgRxbuf) | Bit(feature::kNetMq) |
    Bit(feature::kNetGuestAnnounce) | Bit(feature::kLogAll) |
    Bit(feature::kAnyLayout) | Bit(feature::kRingIndirectDesc) |
    Bit(feature::kRingEventIdx) | Bit(feature::kProtocolFeatures) |
    Bit(feature::kVersion1) | Bit(feature::kInOrder) | Bit(feature::kRingPacked);

inline constexpr uint64_t kSupportedProtocolFeatures =
    Bit(protocol_feature::kMq) | Bit(protocol_feature::kLogShmfd) |
    Bit(protocol_feature::kRarp) |
    Bit(protocol_feature::kReplyAck) | Bit(protocol_feature::kNetMtu) |
    Bit(protocol_feature::kBackendReq) | Bit(protocol_feature::kResetDevice) |
    Bit(protocol_feature::kStatus);

// Split virtqueue layout (virtio 1.x section 2.7).
struct VringDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(VringDesc) == 16);

inline constexpr uint16_t kDescFlagNext = 1;
inline constexpr uint16_t kDescFlagWrite = 2;
inline constexpr uint16_t kDescFlagIndirect = 4;
// Packed rings only: a descriptor's availability, against the wrap counters.
inline constexpr uint16_t kPackedFlagAvail = 1u << 7;
inline constexpr uint16_t kPackedFlagUsed = 1u << 15;

inline constexpr uint16_t kAvailFlagNoInterrupt = 1;
inline constexpr uint16_t kUsedFlagNoNotify = 1;

struct VringUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(VringUsedElem) == 8);

// Maximum split ring size (virtio 1.x: queue size is at most 32768).
inline constexpr uint32_t kMaxRingSize = 32768;

// virtio-net header (virtio 1.x section 5.1.6).  num_buffers exists with VERSION_1 or
// MRG_RXBUF; without either the header is 10 bytes.
struct VirtioNetHeader {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(VirtioNetHeader) == 12);
inline constexpr uint32_t kLegacyNetHeaderSize = 10;

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_PROTOCOL_PROTOCOL_H
