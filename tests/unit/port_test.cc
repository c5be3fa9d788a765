// End-to-end tests of a vhu_port through its C API, with the test frontend playing the
// guest over a real Unix socket and a memfd as guest RAM.
#include <dirent.h>
#include <fcntl.h>
#include <linux/mempolicy.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/protocol.h"
#include "runtime/fd_closer.h"
#include "test_frontend.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kModernFeatures = Bit(feature::kVersion1) |
                                     Bit(feature::kRingIndirectDesc);
constexpr uint32_t kHeader = sizeof(VirtioNetHeader);

int CountOpenFds() {
  // Frontends' fds are closed on the closer threads (fd_closer.h): count after them.
  vhostuser::FdCloser::WaitIdleForTest();
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

int CountMappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) ++n;
  return n;
}

bool WaitFor(const std::function<bool()>& condition, int timeout_ms = 5000) {
  for (int waited = 0; waited < timeout_ms; waited += 5) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

// Packet handles for vhu_dequeue_burst: plain vectors.
void* AllocVector(void* /*aux*/, uint32_t size, uint8_t** data) {
  auto* v = new std::vector<uint8_t>(size);
  *data = v->data();
  return v;
}

class PortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/vhu-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/sock";
    port_ = CreatePort(path_, VHU_MODE_SERVER);
    ASSERT_NE(port_, nullptr);
  }
  void TearDown() override {
    frontend_.reset();
    if (port_) vhu_port_destroy(port_);
    rmdir(dir_.c_str());
  }

  vhu_port* CreatePort(const std::string& path, vhu_mode mode,
                       uint32_t max_rx_frame_size = 0, uint32_t churn_rate = 0) {
    vhu_port_options options{};
    options.socket_path = path.c_str();
    options.mode = mode;
    options.max_rx_frame_size = max_rx_frame_size;
    options.churn_rate = churn_rate;
    options.aux = this;  // What the port's log lines carry.
    char error[256] = "";
    vhu_port* port = vhu_port_create(&options, error, sizeof error);
    last_create_error_ = error;
    return port;
  }

  // Connects and sets up queue pair 0 with the given features.
  void Start(uint64_t features, int rx_call = -1, int tx_call = -1) {
    auto fe = Frontend::Connect(path_);
    ASSERT_TRUE(fe.ok()) << fe.status();
    frontend_ = *std::move(fe);
    ASSERT_TRUE(frontend_
                    ->SetUp(ram_, features,
                            {{0, &rx_, rx_call}, {1, &tx_, tx_call}})
                    .ok());
    ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  }

  vhu_port_status Status() {
    vhu_port_status s;
    vhu_port_get_status(port_, &s);
    return s;
  }

  // Writes a zeroed 'header_size'-byte virtio-net header and 'frame' after it into
  // guest RAM, as a guest's transmit buffer; returns its guest address.
  uint64_t WriteTxBuffer(const std::vector<uint8_t>& frame, uint32_t header_size = kHeader) {
    std::vector<uint8_t> bytes(header_size, 0);
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    uint64_t gpa = ram_.Alloc(bytes.size());
    memcpy(ram_.host(gpa), bytes.data(), bytes.size());
    return gpa;
  }

  // Puts a guest transmit of 'frame' (after a zeroed header) into guest RAM as one
  // chain whose buffers are split at 'splits' (offsets into header+frame).
  uint16_t GuestSend(const std::vector<uint8_t>& frame, std::vector<uint32_t> splits = {},
                     bool indirect = false) {
    std::vector<uint8_t> bytes(kHeader, 0);
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    uint64_t gpa = ram_.Alloc(bytes.size());
    memcpy(ram_.host(gpa), bytes.data(), bytes.size());
    std::vector<DriverRing::Buffer> buffers;
    uint32_t at = 0;
    splits.push_back(static_cast<uint32_t>(bytes.size()));
    for (uint32_t end : splits) {
      buffers.push_back({gpa + at, end - at});
      at = end;
    }
    uint16_t head = indirect ? tx_.AddIndirect(buffers, false) : tx_.AddChain(buffers, false);
    tx_.Publish(head);
    return head;
  }

  std::vector<std::vector<uint8_t>> Dequeue(uint32_t max = 32) {
    void* pkts[64];
    uint32_t n = vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, max, &dequeue_dropped_);
    std::vector<std::vector<uint8_t>> out;
    for (uint32_t i = 0; i < n; ++i) {
      auto* v = static_cast<std::vector<uint8_t>*>(pkts[i]);
      out.push_back(std::move(*v));
      delete v;
    }
    return out;
  }

  // Posts a guest receive buffer of 'size' bytes; returns its guest address.
  uint64_t PostRxBuffer(uint32_t size) {
    uint64_t gpa = ram_.Alloc(size);
    rx_.Publish(rx_.AddChain({{gpa, size}}, true));
    return gpa;
  }

  // Enqueues a frame of 'big' bytes and one of 'small': expects the first dropped, as
  // more than the guest's receive buffers can ever hold, and the second in the first
  // buffer.
  void ExpectOversizedFrameDroppedAndTheNextDelivered(uint32_t big = 30000,
                                                      uint32_t small = 60) {
    auto big_frame = TestFrame(big, 1), small_frame = TestFrame(small, 2);
    vhu_tx_packet pkts[] = {{big_frame.data(), big}, {small_frame.data(), small}};
    uint32_t dropped = 0;
    EXPECT_EQ(vhu_enqueue_burst(port_, 0, pkts, 2, &dropped), 2u);
    EXPECT_EQ(dropped, 1u);
    VringUsedElem e;
    ASSERT_TRUE(rx_.PopUsed(&e));
    EXPECT_EQ(e.len, kHeader + small) << "the first buffer went to the frame that fits";
    EXPECT_FALSE(rx_.PopUsed(&e));
  }

  // Expects the connection to be dropped with an error naming 'reason'.
  void ExpectDropped(const std::string& reason) {
    EXPECT_TRUE(frontend_->WaitClosed(5000));
    EXPECT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_DISCONNECTED; }));
    EXPECT_THAT(Status().last_error, HasSubstr(reason));
  }

  std::string dir_, path_, last_create_error_;
  vhu_port* port_ = nullptr;
  uint32_t dequeue_dropped_ = 0;  // What the last Dequeue() was told it dropped.
  GuestRam ram_{8 << 20};
  DriverRing rx_{ram_, 256};
  DriverRing tx_{ram_, 256};
  std::unique_ptr<Frontend> frontend_;
};

TEST_F(PortTest, AdvertisesWhatItImplements) {
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok());
  auto features = (*fe)->GetU64(Request::kGetFeatures);
  ASSERT_TRUE(features.ok());
  EXPECT_EQ(*features, kSupportedFeatures);
  EXPECT_TRUE(*features & Bit(feature::kNetMrgRxbuf));
  EXPECT_TRUE(*features & Bit(feature::kRingPacked));
  EXPECT_EQ(*(*fe)->GetU64(Request::kGetProtocolFeatures), kSupportedProtocolFeatures);
  EXPECT_EQ(*(*fe)->GetU64(Request::kGetQueueNum), uint64_t{VHU_MAX_QUEUE_PAIRS});
}

TEST_F(PortTest, BecomesReadyAndReportsEvents) {
  Start(kModernFeatures);
  vhu_port_status s = Status();
  EXPECT_EQ(s.features, kModernFeatures | Bit(feature::kProtocolFeatures));
  EXPECT_EQ(s.num_vrings, 2u);
  EXPECT_EQ(s.enabled_rx_queues[0], 1u);
  EXPECT_EQ(s.enabled_tx_queues[0], 1u);
  EXPECT_EQ(s.enabled_rx_queues[1], 0u);
  EXPECT_EQ(s.connects, 1u);
  // The node of the guest's memory: that of the first started ring's descriptors, as
  // the kernel answers for our own mapping of the same page.
  int node = -1;
  ASSERT_EQ(syscall(SYS_get_mempolicy, &node, nullptr, 0UL, rx_.desc(),
                    MPOL_F_NODE | MPOL_F_ADDR),
            0);
  EXPECT_EQ(s.numa_node, node);
  std::vector<vhu_event_type> types;
  vhu_event e;
  while (vhu_port_next_event(port_, &e)) types.push_back(e.type);
  EXPECT_THAT(types, ::testing::Contains(VHU_EVENT_CONNECTED));
  EXPECT_THAT(types, ::testing::Contains(VHU_EVENT_READY));
  // We poll: the guest is asked not to kick.
  EXPECT_EQ(tx_.used_flags() & kUsedFlagNoNotify, kUsedFlagNoNotify);
}

// The last queue pair the port offers works like the first, and the status tells
// the two apart: queue pair 127 lives in the second word of the queue sets.
TEST_F(PortTest, LastQueuePairMovesPackets) {
  constexpr unsigned kLast = VHU_MAX_QUEUE_PAIRS - 1;
  DriverRing last_rx(ram_, 256), last_tx(ram_, 256);
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok()) << fe.status();
  frontend_ = *std::move(fe);
  ASSERT_TRUE(frontend_
                  ->SetUp(ram_, kModernFeatures,
                          {{0, &rx_}, {1, &tx_}, {2 * kLast, &last_rx},
                           {2 * kLast + 1, &last_tx}})
                  .ok());
  ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  ASSERT_TRUE(WaitFor([&] { return Status().enabled_tx_queues[kLast / 64] != 0; }));
  vhu_port_status s = Status();
  EXPECT_EQ(s.num_vrings, uint32_t{VHU_MAX_VRINGS});
  EXPECT_EQ(s.enabled_rx_queues[0], 1u);
  EXPECT_EQ(s.enabled_rx_queues[kLast / 64], uint64_t{1} << (kLast % 64));
  EXPECT_TRUE(vhu_queue_set_has(s.enabled_tx_queues, kLast));
  EXPECT_FALSE(vhu_queue_set_has(s.enabled_tx_queues, kLast - 1));
  EXPECT_FALSE(vhu_queue_set_has(s.enabled_tx_queues, VHU_MAX_QUEUE_PAIRS));

  // Guest to switch on the last pair only.
  auto frame = TestFrame(100, 7);
  const uint64_t gpa = WriteTxBuffer(frame);
  last_tx.Publish(
      last_tx.AddChain({{gpa, static_cast<uint32_t>(kHeader + frame.size())}}, false));
  void* pkts[4];
  EXPECT_EQ(vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr), 0u);
  ASSERT_EQ(vhu_dequeue_burst(port_, kLast, AllocVector, nullptr, pkts, 4, nullptr), 1u);
  auto* got = static_cast<std::vector<uint8_t>*>(pkts[0]);
  EXPECT_EQ(*got, frame);
  delete got;

  // Switch to guest on the last pair.
  uint64_t buffer = ram_.Alloc(2048);
  last_rx.Publish(last_rx.AddChain({{buffer, 2048}}, true));
  vhu_tx_packet pkt{frame.data(), static_cast<uint32_t>(frame.size())};
  ASSERT_EQ(vhu_enqueue_burst(port_, kLast, &pkt, 1, nullptr), 1u);
  VringUsedElem e;
  ASSERT_TRUE(last_rx.PopUsed(&e));
  EXPECT_EQ(e.len, kHeader + frame.size());
  EXPECT_EQ(0, memcmp(ram_.host(buffer) + kHeader, frame.data(), frame.size()));
  EXPECT_FALSE(rx_.PopUsed(&e));

  // A queue pair in between was never configured: no packets, and an empty status.
  EXPECT_EQ(vhu_dequeue_burst(port_, 5, AllocVector, nullptr, pkts, 4, nullptr), 0u);
  EXPECT_EQ(vhu_enqueue_burst(port_, 5, &pkt, 1, nullptr), 0u);
  EXPECT_EQ(
      vhu_dequeue_burst(port_, VHU_MAX_QUEUE_PAIRS, AllocVector, nullptr, pkts, 4, nullptr),
      0u);
  vhu_vring_status vs;
  ASSERT_TRUE(vhu_vring_get_status(port_, 10, &vs));
  EXPECT_FALSE(vs.started);
  EXPECT_EQ(vs.size, 0u);
  ASSERT_TRUE(vhu_vring_get_status(port_, 2 * kLast + 1, &vs));
  EXPECT_TRUE(vs.started);
  EXPECT_EQ(vs.packets, 1u);
  EXPECT_FALSE(vhu_vring_get_status(port_, VHU_MAX_VRINGS, &vs));
}

TEST_F(PortTest, DequeuesChainsOfEveryShape) {
  Start(kModernFeatures);
  auto f1 = TestFrame(60, 1), f2 = TestFrame(1500, 2), f3 = TestFrame(300, 3),
       f4 = TestFrame(100, 4);
  uint16_t h1 = GuestSend(f1);                        // header and frame together
  GuestSend(f2, {kHeader, kHeader + 700});            // header alone, frame in two
  GuestSend(f3, {5}, /*indirect=*/true);              // header split, indirect
  GuestSend(f4, {kHeader + 10});                      // frame split
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], f1);
  EXPECT_EQ(got[1], f2);
  EXPECT_EQ(got[2], f3);
  EXPECT_EQ(got[3], f4);
  VringUsedElem e;
  ASSERT_TRUE(tx_.PopUsed(&e));
  EXPECT_EQ(e.id, h1);
  EXPECT_EQ(tx_.used_idx(), 4);
  vhu_vring_status vs;
  ASSERT_TRUE(vhu_vring_get_status(port_, 1, &vs));
  EXPECT_EQ(vs.packets, 4u);
  EXPECT_EQ(vs.bytes, 60u + 1500 + 300 + 100);
  EXPECT_TRUE(Dequeue().empty());
}

TEST_F(PortTest, DropsFramesAboveThePortsMaxRxFrameSize) {
  vhu_port_destroy(port_);
  port_ = CreatePort(path_, VHU_MODE_SERVER, /*max_rx_frame_size=*/100);
  ASSERT_NE(port_, nullptr);
  Start(kModernFeatures);
  auto big = TestFrame(101, 1), small = TestFrame(100, 2);
  for (const auto* frame : {&big, &small}) {
    const uint64_t gpa = WriteTxBuffer(*frame);
    tx_.Publish(tx_.AddChain({{gpa, static_cast<uint32_t>(kHeader + frame->size())}}, false));
  }
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], small);
  vhu_vring_status vs;
  vhu_vring_get_status(port_, 1, &vs);
  EXPECT_EQ(vs.drops, 1u);
  EXPECT_EQ(dequeue_dropped_, 1u) << "the caller is told, to count it";
  EXPECT_EQ(vs.errors, 0u) << "a frame too large is the guest's loss, not a broken ring";
}

TEST_F(PortTest, LegacyHeaderIsTenBytes) {
  Start(Bit(feature::kRingIndirectDesc), -1, -1);
  auto frame = TestFrame(64, 9);
  const uint64_t gpa = WriteTxBuffer(frame, kLegacyNetHeaderSize);
  tx_.Publish(tx_.AddChain(
      {{gpa, static_cast<uint32_t>(kLegacyNetHeaderSize + frame.size())}}, false));
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], frame);
}

TEST_F(PortTest, EnqueuesIntoSingleBuffers) {
  Start(kModernFeatures);
  uint64_t b1 = PostRxBuffer(2048), b2 = PostRxBuffer(2048);
  auto f1 = TestFrame(64, 1), f2 = TestFrame(1514, 2), f3 = TestFrame(64, 3);
  vhu_tx_packet pkts[] = {{f1.data(), 64}, {f2.data(), 1514}, {f3.data(), 64}};
  uint32_t dropped = 99;
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, pkts, 3, &dropped), 2u) << "two buffers posted";
  EXPECT_EQ(dropped, 0u);
  VringUsedElem e;
  ASSERT_TRUE(rx_.PopUsed(&e));
  EXPECT_EQ(e.len, kHeader + 64);
  ASSERT_TRUE(rx_.PopUsed(&e));
  EXPECT_EQ(e.len, kHeader + 1514);
  VirtioNetHeader h;
  memcpy(&h, ram_.host(b1), sizeof h);
  EXPECT_EQ(h.num_buffers, 1) << "VERSION_1 without MRG_RXBUF still says 1";
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(0, memcmp(ram_.host(b1) + kHeader, f1.data(), 64));
  EXPECT_EQ(0, memcmp(ram_.host(b2) + kHeader, f2.data(), 1514));
}

// The header is stored only where the buffer's bytes differ from it (to leave a reused
// buffer's header line clean): whatever the guest left there, in either of the two
// words compared, comes out as the header.
TEST_F(PortTest, EnqueueOverwritesAStaleHeader) {
  Start(kModernFeatures);
  auto frame = TestFrame(64, 4);
  VirtioNetHeader want{};
  want.num_buffers = 1;
  for (auto [from, to] : {std::pair{0, 12}, std::pair{0, 8}, std::pair{8, 12},
                          std::pair{10, 11}, std::pair{0, 0}}) {
    const uint64_t gpa = PostRxBuffer(2048);
    memset(ram_.host(gpa), 0, kHeader);
    reinterpret_cast<VirtioNetHeader*>(ram_.host(gpa))->num_buffers = 1;
    memset(ram_.host(gpa) + from, 0xa5, to - from);
    vhu_tx_packet pkt{frame.data(), 64};
    ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
    EXPECT_EQ(0, memcmp(ram_.host(gpa), &want, kHeader)) << "stale bytes " << from << "-" << to;
    EXPECT_EQ(0, memcmp(ram_.host(gpa) + kHeader, frame.data(), 64));
  }
}

// A receive buffer that holds the packet exactly, and one a byte short (the packet
// then spreads to the next): header, bytes, used lengths and counters.  Then transmit:
// an empty frame (the header alone) is dropped and counted between two one-buffer
// frames that are taken, and all three go back.  What any shortcut for one-buffer
// packets on split rings (README: tried, not kept) must give too.
TEST_F(PortTest, ExactAndOneByteShortBuffersAndAnEmptyFrame) {
  Start(kModernFeatures | Bit(feature::kNetMrgRxbuf));
  const uint64_t exact = PostRxBuffer(kHeader + 60);
  const uint64_t short_by_one = PostRxBuffer(kHeader + 59);
  const uint64_t rest = PostRxBuffer(1000);
  memset(ram_.host(exact), 0xee, kHeader + 60);
  memset(ram_.host(short_by_one), 0xee, kHeader + 59);
  auto f1 = TestFrame(60, 1), f2 = TestFrame(60, 2);
  vhu_tx_packet pkts[] = {{f1.data(), 60}, {f2.data(), 60}};
  uint32_t dropped = 9;
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, pkts, 2, &dropped), 2u);
  EXPECT_EQ(dropped, 0u);
  VirtioNetHeader want{};
  want.num_buffers = 1;
  EXPECT_EQ(0, memcmp(ram_.host(exact), &want, kHeader));
  EXPECT_EQ(0, memcmp(ram_.host(exact) + kHeader, f1.data(), 60));
  VirtioNetHeader h;
  memcpy(&h, ram_.host(short_by_one), sizeof h);
  EXPECT_EQ(h.num_buffers, 2);
  EXPECT_EQ(0, memcmp(ram_.host(short_by_one) + kHeader, f2.data(), 59));
  EXPECT_EQ(ram_.host(rest)[0], f2[59]);
  const uint32_t want_lens[] = {kHeader + 60, kHeader + 59, 1};
  for (uint32_t len : want_lens) {
    VringUsedElem e;
    ASSERT_TRUE(rx_.PopUsed(&e));
    EXPECT_EQ(e.len, len);
  }
  vhu_vring_status vs;
  vhu_vring_get_status(port_, 0, &vs);
  EXPECT_EQ(vs.packets, 2u);
  EXPECT_EQ(vs.bytes, 120u);

  auto f3 = TestFrame(60, 3), f4 = TestFrame(1514, 4);
  GuestSend(f3);
  GuestSend({});
  GuestSend(f4);
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], f3);
  EXPECT_EQ(got[1], f4);
  for (int i = 0; i < 3; ++i) {
    VringUsedElem e;
    ASSERT_TRUE(tx_.PopUsed(&e));
    EXPECT_EQ(e.len, 0u);
  }
  vhu_vring_get_status(port_, 1, &vs);
  EXPECT_EQ(vs.packets, 2u);
  EXPECT_EQ(vs.bytes, 60u + 1514u);
  EXPECT_EQ(vs.drops, 1u);
}

// No packet to copy a lone buffer's frame into: the buffer stays with us, unreturned,
// and the next burst takes it.
TEST_F(PortTest, LoneTransmitBufferWaitsWhenNoPacketCanBeHad) {
  Start(kModernFeatures);
  auto frame = TestFrame(60, 9);
  GuestSend(frame);
  auto no_packet = [](void*, uint32_t, uint8_t**) -> void* { return nullptr; };
  void* pkts[4];
  EXPECT_EQ(vhu_dequeue_burst(port_, 0, no_packet, nullptr, pkts, 4, nullptr), 0u);
  VringUsedElem e;
  EXPECT_FALSE(tx_.PopUsed(&e));
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], frame);
  EXPECT_TRUE(tx_.PopUsed(&e));
}

TEST_F(PortTest, EnqueueSpreadsOverMergeableBuffers) {
  Start(kModernFeatures | Bit(feature::kNetMrgRxbuf));
  uint64_t b[4];
  for (auto& gpa : b) gpa = PostRxBuffer(1000);
  auto frame = TestFrame(2500, 7);
  vhu_tx_packet pkt{frame.data(), 2500};
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  VirtioNetHeader h;
  memcpy(&h, ram_.host(b[0]), sizeof h);
  EXPECT_EQ(h.num_buffers, 3);
  uint32_t lens[3];
  for (auto& len : lens) {
    VringUsedElem e;
    ASSERT_TRUE(rx_.PopUsed(&e));
    len = e.len;
  }
  EXPECT_EQ(lens[0], 1000u);
  EXPECT_EQ(lens[1], 1000u);
  EXPECT_EQ(lens[2], kHeader + 2500 - 2000);
  std::vector<uint8_t> got;
  got.insert(got.end(), ram_.host(b[0]) + kHeader, ram_.host(b[0]) + 1000);
  got.insert(got.end(), ram_.host(b[1]), ram_.host(b[1]) + 1000);
  got.insert(got.end(), ram_.host(b[2]), ram_.host(b[2]) + lens[2]);
  EXPECT_EQ(got, frame);
  // One buffer left: a packet that needs two waits for the guest instead of dropping.
  auto big = TestFrame(1500, 8);
  vhu_tx_packet p2{big.data(), 1500};
  uint32_t dropped = 9;
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &p2, 1, &dropped), 0u);
  EXPECT_EQ(dropped, 0u);
  PostRxBuffer(1000);
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &p2, 1, &dropped), 1u);
}

// A frame larger than a whole ring of the guest's mergeable buffers can never be
// received: dropped, not left to wait for buffers that cannot come (the ring is full of
// them already), and the buffers stay for the frames that fit.
TEST_F(PortTest, DropsWhatAWholeRingOfMergeableBuffersCannotHold) {
  Start(kModernFeatures | Bit(feature::kNetMrgRxbuf));
  for (int i = 0; i < 256; ++i) PostRxBuffer(100);
  ExpectOversizedFrameDroppedAndTheNextDelivered();
}

TEST_F(PortTest, DropsWhatAWholeTableOfTwoDescriptorBuffersCannotHold) {
  // 128 buffers of two descriptors each fill the 256-entry table: the packet that
  // holds them all can have no more, though it has half the ring's size in buffers.
  Start(kModernFeatures | Bit(feature::kNetMrgRxbuf));
  for (int i = 0; i < 128; ++i) {
    const uint64_t gpa = ram_.Alloc(100);
    rx_.Publish(rx_.AddChain({{gpa, 50}, {gpa + 50, 50}}, true));
  }
  ExpectOversizedFrameDroppedAndTheNextDelivered();
}

TEST_F(PortTest, EnqueueWritesAHeaderSplitOverSegments) {
  Start(kModernFeatures | Bit(feature::kNetMrgRxbuf));
  // A receive chain whose first buffers are smaller than the header, after an empty
  // descriptor.
  uint64_t a = ram_.Alloc(5), b = ram_.Alloc(6), c = ram_.Alloc(2048);
  rx_.Publish(rx_.AddChain({{a, 0}, {a, 5}, {b, 6}, {c, 2048}}, true));
  auto frame = TestFrame(100, 3);
  vhu_tx_packet pkt{frame.data(), 100};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  std::vector<uint8_t> header(ram_.host(a), ram_.host(a) + 5);
  header.insert(header.end(), ram_.host(b), ram_.host(b) + 6);
  header.push_back(ram_.host(c)[0]);
  VirtioNetHeader h;
  memcpy(&h, header.data(), sizeof h);
  EXPECT_EQ(h.num_buffers, 1);
  EXPECT_EQ(0, memcmp(ram_.host(c) + 1, frame.data(), 100));
  VringUsedElem e;
  ASSERT_TRUE(rx_.PopUsed(&e));
  EXPECT_EQ(e.len, kHeader + 100);
}

TEST_F(PortTest, DropsWhatNoSingleBufferCanHold) {
  Start(kModernFeatures);
  PostRxBuffer(200);
  ExpectOversizedFrameDroppedAndTheNextDelivered(1000, 100);
  vhu_vring_status vs;
  vhu_vring_get_status(port_, 0, &vs);
  EXPECT_EQ(vs.drops, 1u);
  EXPECT_EQ(vs.packets, 1u);
}

TEST_F(PortTest, InterruptsOnlyWhenAskedAndOncePerBurst) {
  UniqueFd call(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  Start(kModernFeatures, call.get());
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkts[] = {{frame.data(), 64}, {frame.data(), 64}};
  auto interrupts = [&] {
    uint64_t v = 0;
    return read(call.get(), &v, sizeof v) == 8 ? v : 0;
  };
  PostRxBuffer(2048);
  PostRxBuffer(2048);
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, pkts, 2, nullptr), 2u);
  EXPECT_EQ(interrupts(), 1u) << "one interrupt for a burst of two";
  rx_.set_avail_flags(kAvailFlagNoInterrupt);
  PostRxBuffer(2048);
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, pkts, 1, nullptr), 1u);
  EXPECT_EQ(interrupts(), 0u) << "guest suppressed interrupts";
}

TEST_F(PortTest, EventIdxInterruptsWhenUsedEventIsCrossed) {
  UniqueFd call(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  Start(kModernFeatures | Bit(feature::kRingEventIdx), call.get());
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  auto interrupts = [&] {
    uint64_t v = 0;
    return read(call.get(), &v, sizeof v) == 8 ? v : 0;
  };
  for (int i = 0; i < 4; ++i) PostRxBuffer(2048);
  rx_.set_used_event(2);  // Interrupt me once used->idx passes 2.
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);  // idx 0 -> 1
  EXPECT_EQ(interrupts(), 0u);
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);  // 1 -> 2
  EXPECT_EQ(interrupts(), 0u);
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);  // 2 -> 3 crosses
  EXPECT_EQ(interrupts(), 1u);
}

TEST_F(PortTest, GetVringBaseStopsTheRingAndReturnsTheNextIndex) {
  Start(kModernFeatures);
  GuestSend(TestFrame(64, 1));
  GuestSend(TestFrame(64, 2));
  ASSERT_EQ(Dequeue().size(), 2u);
  auto got = frontend_->GetVringBase(1);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->index, 1u);
  EXPECT_EQ(got->num, 2u);
  GuestSend(TestFrame(64, 3));
  EXPECT_TRUE(Dequeue().empty()) << "a stopped ring moves nothing";
  EXPECT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_CONNECTED; }));
}

// Virtqueue::kTransmitHold: after a full burst the newest transmit buffers stay
// unreturned, so that a DPDK guest (a polling driver: no interrupts) stays in its cheap
// cleanup mode; anything less than a full burst, and a quiet ring, returns them.
TEST_F(PortTest, FullTransmitBurstsKeepTheNewestBuffersUntilTheRingGoesQuiet) {
  UniqueFd call(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  Start(kModernFeatures, -1, call.get());
  tx_.set_avail_flags(kAvailFlagNoInterrupt);
  constexpr uint16_t kHold = 32;  // min(32, 256 / 4)
  std::vector<uint16_t> heads;
  for (int i = 0; i < 40; ++i) heads.push_back(GuestSend(TestFrame(64, i)));

  ASSERT_EQ(Dequeue(32).size(), 32u);
  EXPECT_EQ(tx_.used_idx(), 0) << "a full burst of 32 keeps its 32";
  ASSERT_EQ(Dequeue(32).size(), 8u);
  EXPECT_EQ(tx_.used_idx(), 40) << "a burst short of full returns all";
  for (uint16_t head : heads) {
    VringUsedElem e;
    ASSERT_TRUE(tx_.PopUsed(&e));
    EXPECT_EQ(e.id, head) << "in order";
  }

  for (int i = 0; i < 64; ++i) GuestSend(TestFrame(64, i));
  ASSERT_EQ(Dequeue(32).size(), 32u);
  ASSERT_EQ(Dequeue(32).size(), 32u);
  EXPECT_EQ(tx_.used_idx(), 104 - kHold) << "all but the newest 32";
  EXPECT_TRUE(Dequeue().empty());
  EXPECT_EQ(tx_.used_idx(), 104 - kHold) << "the first empty poll only notes the time";
  // Quiet for longer than kTransmitHoldIdleNs: the next poll returns them.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_TRUE(Dequeue().empty());
  EXPECT_EQ(tx_.used_idx(), 104);
  uint64_t v = 0;
  EXPECT_NE(read(call.get(), &v, sizeof v), 8) << "the guest asked for no interrupts";
}

// A port that is down polls with max 0 (the provider's rxq_recv): its held buffers go
// back once the ring has been quiet for us, though the guest has more to send.
TEST_F(PortTest, CallsForNothingReturnHeldBuffersWhileTheGuestHasMore) {
  Start(kModernFeatures);
  tx_.set_avail_flags(kAvailFlagNoInterrupt);
  for (int i = 0; i < 40; ++i) GuestSend(TestFrame(64, i));
  ASSERT_EQ(Dequeue(32).size(), 32u);
  ASSERT_EQ(tx_.used_idx(), 0);
  EXPECT_TRUE(Dequeue(0).empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_TRUE(Dequeue(0).empty());
  EXPECT_EQ(tx_.used_idx(), 32) << "the 32 held, and none of the 8 waiting";
}

// A disconnect returns held buffers, before the hang-up, so that a frontend that reads
// used->idx on seeing the socket close finds every buffer it made available returned
// (the order is by reading: polling every 10 ms, this test sees that they come back).
TEST_F(PortTest, HeldTransmitBuffersAreReturnedBeforeTheHangUp) {
  Start(kModernFeatures);
  tx_.set_avail_flags(kAvailFlagNoInterrupt);
  for (int i = 0; i < 32; ++i) GuestSend(TestFrame(64, i));
  ASSERT_EQ(Dequeue(32).size(), 32u);
  ASSERT_EQ(tx_.used_idx(), 0);
  VringState bad{1, 2};  // SET_VRING_ENABLE takes 0 or 1: the port drops the frontend.
  ASSERT_TRUE(frontend_->Send(Request::kSetVringEnable, &bad, sizeof bad).ok());
  ASSERT_TRUE(frontend_->WaitClosed(5000));
  EXPECT_EQ(tx_.used_idx(), 32);
}

// A driver that takes transmit interrupts may wait for its buffers (Linux's TX NAPI
// sets used_event and sleeps): it gets all of them, and the interrupt, with the burst.
class TransmitInterruptTest : public PortTest, public ::testing::WithParamInterface<bool> {};

TEST_P(TransmitInterruptTest, DriversThatTakeThemHaveNothingHeld) {
  const bool event_idx = GetParam();
  UniqueFd call(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  Start(kModernFeatures | (event_idx ? Bit(feature::kRingEventIdx) : 0), -1, call.get());
  if (event_idx) {
    tx_.set_used_event(0);
    tx_.set_avail_flags(kAvailFlagNoInterrupt);  // Ignored: used_event decides.
  }
  for (int i = 0; i < 32; ++i) GuestSend(TestFrame(64, i));
  ASSERT_EQ(Dequeue(32).size(), 32u);
  EXPECT_EQ(tx_.used_idx(), 32);
  uint64_t v = 0;
  ASSERT_EQ(read(call.get(), &v, sizeof v), 8);
  EXPECT_EQ(v, 1u);
}

INSTANTIATE_TEST_SUITE_P(EventIdxOrAvailFlags, TransmitInterruptTest, ::testing::Bool());

TEST_F(PortTest, TransmitBuffersOfSeveralDescriptorsAreNotHeld) {
  // 32 chains of two descriptors: held, they would be a quarter of the table.
  Start(kModernFeatures);
  tx_.set_avail_flags(kAvailFlagNoInterrupt);
  for (int i = 0; i < 32; ++i) GuestSend(TestFrame(64, i), {kHeader});
  ASSERT_EQ(Dequeue(32).size(), 32u);
  EXPECT_EQ(tx_.used_idx(), 32);
}

TEST_F(PortTest, HeldTransmitBuffersGoBackWhenTheRingIsStoppedOrDisabled) {
  UniqueFd call(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  Start(kModernFeatures, -1, call.get());
  tx_.set_avail_flags(kAvailFlagNoInterrupt);
  auto interrupts = [&] {
    uint64_t v = 0;
    return read(call.get(), &v, sizeof v) == 8 ? v : 0;
  };
  for (int i = 0; i < 32; ++i) GuestSend(TestFrame(64, i));
  ASSERT_EQ(Dequeue(32).size(), 32u);
  ASSERT_EQ(tx_.used_idx(), 0);
  VringState off{1, 0};
  ASSERT_TRUE(frontend_->Send(Request::kSetVringEnable, &off, sizeof off).ok());
  ASSERT_TRUE(frontend_->Sync().ok());
  EXPECT_EQ(tx_.used_idx(), 32) << "a disabled ring is not polled: nothing may stay held";
  EXPECT_EQ(interrupts(), 0u) << "not from the control thread";

  // The driver asks for interrupts meanwhile: the one owed for those 32 comes with the
  // ring's next data-path call.
  tx_.set_avail_flags(0);
  VringState on{1, 1};
  ASSERT_TRUE(frontend_->Send(Request::kSetVringEnable, &on, sizeof on).ok());
  ASSERT_TRUE(frontend_->Sync().ok());
  EXPECT_TRUE(Dequeue().empty());
  EXPECT_EQ(interrupts(), 1u) << "the interrupt owed, from the next data-path call";
  tx_.set_avail_flags(kAvailFlagNoInterrupt);
  for (int i = 0; i < 32; ++i) GuestSend(TestFrame(64, i));
  ASSERT_EQ(Dequeue(32).size(), 32u);
  ASSERT_EQ(tx_.used_idx(), 32);
  auto got = frontend_->GetVringBase(1);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->num, 64u);
  EXPECT_EQ(tx_.used_idx(), 64) << "the frontend reads used->idx after GET_VRING_BASE";
}

TEST_F(PortTest, MemoryTableChangeWhileRunningRemapsAndUnmapsTheOld) {
  Start(kModernFeatures);
  const int maps_before = CountMappings();
  struct {
    MemoryTableHeader header;
    MemoryRegionDesc region;
  } table{{1, 0}, ram_.Region()};
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(frontend_->Send(Request::kSetMemTable, &table, sizeof table, {ram_.fd()}).ok());
  }
  ASSERT_TRUE(frontend_->Sync().ok());
  EXPECT_LE(CountMappings(), maps_before + 1);
  auto frame = TestFrame(200, 5);
  GuestSend(frame);
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], frame);
}

// Chains posted and partly served before a new memory table are served after it
// through the new mapping, in both directions: nothing a ring keeps from one burst to
// the next (a pre-walked chain, say) may still point into the old one, now unmapped.
TEST_F(PortTest, ChainsPostedBeforeAMemoryTableChangeAreServedThroughTheNewOne) {
  Start(kModernFeatures);
  uint64_t rx_buffers[4];
  for (uint64_t& gpa : rx_buffers) gpa = PostRxBuffer(2048);
  auto f1 = TestFrame(64, 1), f2 = TestFrame(64, 2);
  for (const auto* frame : {&f1, &f1, &f2, &f2}) GuestSend(*frame);
  vhu_tx_packet first[] = {{f1.data(), 64}, {f1.data(), 64}};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, first, 2, nullptr), 2u);
  ASSERT_EQ(Dequeue(2).size(), 2u);
  struct {
    MemoryTableHeader header;
    MemoryRegionDesc region;
  } table{{1, 0}, ram_.Region()};
  ASSERT_TRUE(frontend_->Send(Request::kSetMemTable, &table, sizeof table, {ram_.fd()}).ok());
  ASSERT_TRUE(frontend_->Sync().ok());
  vhu_tx_packet second[] = {{f2.data(), 64}, {f2.data(), 64}};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, second, 2, nullptr), 2u);
  EXPECT_EQ(0, memcmp(ram_.host(rx_buffers[2]) + kHeader, f2.data(), 64));
  EXPECT_EQ(0, memcmp(ram_.host(rx_buffers[3]) + kHeader, f2.data(), 64));
  auto got = Dequeue(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], f2);
  EXPECT_EQ(got[1], f2);
  EXPECT_EQ(Status().state, VHU_STATE_READY) << Status().last_error;
}

TEST_F(PortTest, ReplyAckReportsFailures) {
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok());
  ASSERT_TRUE((*fe)->SendU64(Request::kSetProtocolFeatures,
                             Bit(protocol_feature::kReplyAck)).ok());
  VringState num{0, 256};
  ASSERT_TRUE((*fe)->Send(Request::kSetVringNum, &num, sizeof num, {}, kFlagNeedReply).ok());
  auto ack = (*fe)->Receive(Request::kSetVringNum);
  ASSERT_TRUE(ack.ok());
  ASSERT_EQ(ack->size(), 8u);
  EXPECT_EQ((*ack)[0], 0);
}

TEST_F(PortTest, SecondFrontendIsRefusedWhileOneIsConnected) {
  Start(kModernFeatures);
  auto second = Frontend::Connect(path_);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE((*second)->WaitClosed(5000));
  EXPECT_EQ(Status().state, VHU_STATE_READY) << "the first one is untouched";
}

// Connects and hangs up as fast as the port lets it for 'seconds'; returns how many
// connects succeeded.
int ConnectAndHangUpFor(const std::string& path, double seconds) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  int connected = 0;
  const auto end = std::chrono::steady_clock::now() +
                   std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
  while (std::chrono::steady_clock::now() < end) {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      ++connected;
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // Backlog full.
    }
  }
  return connected;
}

TEST_F(PortTest, ChurningFrontendIsServedAtTheChurnRate) {
  const double seconds = 1.5;
  ConnectAndHangUpFor(path_, seconds);
  ASSERT_TRUE(WaitFor([&] {
    vhu_port_status s = Status();
    return s.state == VHU_STATE_DISCONNECTED && s.connects == s.disconnects;
  }));
  const vhu_port_status s = Status();
  EXPECT_GE(s.accept_pauses, 1u);
  EXPECT_GE(s.connects, static_cast<uint64_t>(VHU_CHURN_BURST));
  // The burst, the refill over the loop and the connections the backlog still held.
  EXPECT_LE(s.connects, VHU_CHURN_BURST + VHU_DEFAULT_CHURN_RATE * (seconds + 0.5) + 2)
      << "accept pauses " << s.accept_pauses;
  // Then it takes a frontend that stays, and that works, once what the loop left in
  // the backlog has been taken (or that would be refused as a second frontend).
  uint64_t connects = s.connects;
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const vhu_port_status now = Status();
    if (now.connects == connects && now.connects == now.disconnects) break;
    connects = now.connects;
  }
  Start(kModernFeatures);
}

TEST_F(PortTest, ChurnLimitCanBeLifted) {
  vhu_port_destroy(port_);
  port_ = CreatePort(path_, VHU_MODE_SERVER, 0, UINT32_MAX);
  ASSERT_NE(port_, nullptr);
  const int rounds = 3 * VHU_CHURN_BURST;
  for (int i = 0; i < rounds; ++i) {
    const uint64_t seen = static_cast<uint64_t>(i + 1);
    // The last one's hang-up seen first: a connection that came before it would be
    // refused as a second frontend.
    ASSERT_TRUE(WaitFor([&] { return Status().disconnects == seen - 1; }));
    auto fe = Frontend::Connect(path_);
    ASSERT_TRUE(fe.ok()) << fe.status();
    ASSERT_TRUE(WaitFor([&] { return Status().connects == seen; }));
  }
  ASSERT_TRUE(WaitFor([&] { return Status().disconnects == rounds; }));
  EXPECT_EQ(Status().accept_pauses, 0u);
}

TEST_F(PortTest, DisconnectReleasesEveryFdAndMapping) {
  // Warm up the control thread and allocator before counting.
  Start(kModernFeatures);
  frontend_.reset();
  ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_DISCONNECTED; }));
  const int fds = CountOpenFds(), maps = CountMappings();
  for (int i = 0; i < 20; ++i) {
    Start(kModernFeatures | Bit(feature::kNetMrgRxbuf));
    GuestSend(TestFrame(64, i));
    ASSERT_EQ(Dequeue().size(), 1u);
    frontend_.reset();
    ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_DISCONNECTED; }));
  }
  EXPECT_EQ(CountOpenFds(), fds);
  EXPECT_EQ(CountMappings(), maps);
  EXPECT_STREQ(Status().last_error, "") << "closing the socket is no error";
  EXPECT_EQ(Status().connects, 21u);
}

// ---- Hostile guests: each breaks one rule and loses its connection, nothing else. ----

TEST_F(PortTest, DescriptorLoopDisconnects) {
  Start(kModernFeatures);
  uint64_t gpa = ram_.Alloc(64);
  uint16_t head = tx_.AddChain({{gpa, 32}, {gpa + 32, 32}}, false);
  tx_.desc()[(head + 1) % 256].next = head;  // Second points back to first.
  tx_.desc()[(head + 1) % 256].flags |= kDescFlagNext;
  tx_.Publish(head);
  EXPECT_TRUE(Dequeue().empty());
  ExpectDropped("loops");
}

TEST_F(PortTest, DescriptorOutsideGuestMemoryDisconnects) {
  Start(kModernFeatures);
  tx_.Publish(tx_.AddChain({{GuestRam::kGuestBase + ram_.size() - 16, 64}}, false));
  EXPECT_TRUE(Dequeue().empty());
  ExpectDropped("not inside guest memory");
}

TEST_F(PortTest, ZeroLengthDescriptorAnywhereIsHarmless) {
  Start(kModernFeatures);
  auto frame = TestFrame(64, 1);
  std::vector<uint8_t> bytes(kHeader, 0);
  bytes.insert(bytes.end(), frame.begin(), frame.end());
  uint64_t gpa = ram_.Alloc(bytes.size());
  memcpy(ram_.host(gpa), bytes.data(), bytes.size());
  tx_.Publish(tx_.AddChain({{gpa, static_cast<uint32_t>(bytes.size())},
                            {0xdead00000000ull, 0}}, false));
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], frame);
}

TEST_F(PortTest, NestedIndirectDisconnects) {
  Start(kModernFeatures);
  uint64_t gpa = ram_.Alloc(64);
  uint16_t head = tx_.AddIndirect({{gpa, 64}}, false);
  auto* table = reinterpret_cast<VringDesc*>(ram_.host(tx_.desc()[head].addr));
  table[0].flags = kDescFlagIndirect;
  table[0].len = 16;
  tx_.Publish(head);
  EXPECT_TRUE(Dequeue().empty());
  ExpectDropped("indirect");
}

TEST_F(PortTest, IndirectTableOfPartialDescriptorsDisconnects) {
  Start(kModernFeatures);
  uint64_t gpa = ram_.Alloc(64);
  uint16_t head = tx_.AddIndirect({{gpa, 64}}, false);
  tx_.desc()[head].len = 20;
  tx_.Publish(head);
  EXPECT_TRUE(Dequeue().empty());
  ExpectDropped("whole number of descriptors");
}

TEST_F(PortTest, ChainShorterThanTheHeaderDisconnects) {
  Start(kModernFeatures);
  tx_.Publish(tx_.AddChain({{ram_.Alloc(8), 8}}, false));
  EXPECT_TRUE(Dequeue().empty());
  ExpectDropped("shorter than the virtio-net header");
}

TEST_F(PortTest, AvailIndexRunningAheadDisconnects) {
  Start(kModernFeatures);
  tx_.set_avail_idx(1000);
  EXPECT_TRUE(Dequeue().empty());
  ExpectDropped("avail index");
}

TEST_F(PortTest, HeadIndexOutOfRangeDisconnects) {
  Start(kModernFeatures);
  tx_.avail_ring()[0] = 300;
  tx_.set_avail_idx(1);
  EXPECT_TRUE(Dequeue().empty());
  ExpectDropped("out of range");
}

// A bad chain fails the ring when a burst takes it, not before: whatever reads the
// guest's rings ahead (the pre-walk, a prefetch) only looks.  The chains posted before
// it are served first, in either direction.
TEST_F(PortTest, ChainsPostedPastABurstAreJudgedWhenTaken) {
  Start(kModernFeatures);
  auto f1 = TestFrame(64, 1), f2 = TestFrame(64, 2);
  GuestSend(f1);
  GuestSend(f2);
  tx_.avail_ring()[2] = 300;  // Out of range, past a burst of 2.
  tx_.set_avail_idx(3);
  auto got = Dequeue(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1], f2);
  PostRxBuffer(2048);
  rx_.Publish(rx_.AddChain({{GuestRam::kGuestBase + ram_.size() - 16, 2048}}, true));
  vhu_tx_packet pkt = {f1.data(), 64};
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  VringUsedElem e;
  ASSERT_TRUE(rx_.PopUsed(&e));
  EXPECT_EQ(Status().state, VHU_STATE_READY) << Status().last_error;
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 0u);
  ExpectDropped("not inside guest memory");
}

TEST_F(PortTest, ReadOnlyDescriptorInReceiveChainDisconnects) {
  Start(kModernFeatures);
  rx_.Publish(rx_.AddChain({{ram_.Alloc(2048), 2048}}, /*writable=*/false));
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 0u);
  ExpectDropped("read-only descriptor");
}

struct BadMessage {
  const char* name;
  std::function<absl::Status(Frontend&, GuestRam&)> send;
  const char* reason;
};

class HostileMessageTest : public PortTest,
                           public ::testing::WithParamInterface<BadMessage> {};

TEST_P(HostileMessageTest, DisconnectsAndTheNextFrontendWorks) {
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok());
  frontend_ = *std::move(fe);
  const int fds = CountOpenFds();
  ASSERT_TRUE(GetParam().send(*frontend_, ram_).ok());
  ExpectDropped(GetParam().reason);
  frontend_.reset();
  EXPECT_LE(CountOpenFds(), fds - 1) << "every fd of the bad connection closed";
  Start(kModernFeatures);
  auto frame = TestFrame(64, 1);
  GuestSend(frame);
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], frame);
}

absl::Status SendVringState(Frontend& fe, Request r, uint32_t index, uint32_t num) {
  VringState s{index, num};
  return fe.Send(r, &s, sizeof s);
}

absl::Status SendTable(Frontend& fe, std::vector<MemoryRegionDesc> regions,
                       std::vector<int> fds, uint32_t nregions) {
  std::vector<uint8_t> payload(sizeof(MemoryTableHeader) +
                               regions.size() * sizeof(MemoryRegionDesc));
  MemoryTableHeader h{nregions, 0};
  memcpy(payload.data(), &h, sizeof h);
  memcpy(payload.data() + sizeof h, regions.data(),
         regions.size() * sizeof(MemoryRegionDesc));
  return fe.Send(Request::kSetMemTable, payload.data(),
                 static_cast<uint32_t>(payload.size()), fds);
}

INSTANTIATE_TEST_SUITE_P(
    Messages, HostileMessageTest,
    ::testing::Values(
        BadMessage{"RingSizeZero",
                   [](Frontend& fe, GuestRam&) {
                     return SendVringState(fe, Request::kSetVringNum, 0, 0);
                   },
                   "ring size 0"},
        BadMessage{"RingSizeNotPowerOfTwo",
                   [](Frontend& fe, GuestRam&) {
                     return SendVringState(fe, Request::kSetVringNum, 0, 300);
                   },
                   "power of two"},
        BadMessage{"RingSizeTooLarge",
                   [](Frontend& fe, GuestRam&) {
                     return SendVringState(fe, Request::kSetVringNum, 0, 65536);
                   },
                   "power of two"},
        BadMessage{"VringIndexHuge",
                   [](Frontend& fe, GuestRam&) {
                     return SendVringState(fe, Request::kSetVringNum, 0x10001, 256);
                   },
                   "out of range"},
        BadMessage{"VringIndexOnePastQueues",
                   [](Frontend& fe, GuestRam&) {
                     return SendVringState(fe, Request::kSetVringBase, VHU_MAX_VRINGS, 0);
                   },
                   "out of range"},
        BadMessage{"BaseBeyondIndexSpace",
                   [](Frontend& fe, GuestRam&) {
                     return SendVringState(fe, Request::kSetVringBase, 0, 70000);
                   },
                   "ring base"},
        BadMessage{"TruncatedPayload",
                   [](Frontend& fe, GuestRam&) {
                     uint32_t short_payload = 1;
                     return fe.Send(Request::kSetFeatures, &short_payload, 4);
                   },
                   "4-byte payload"},
        BadMessage{"UnofferedFeature",
                   [](Frontend& fe, GuestRam&) {
                     return fe.SendU64(Request::kSetFeatures, Bit(0));  // csum: not offered
                   },
                   "do not offer"},
        BadMessage{"FdOnMessageThatTakesNone",
                   [](Frontend& fe, GuestRam& ram) {
                     return fe.SendU64(Request::kSetFeatures, 0, {ram.fd(), ram.fd()});
                   },
                   "carries 2 fds"},
        BadMessage{"TooManyRegions",
                   [](Frontend& fe, GuestRam& ram) {
                     return SendTable(fe, std::vector<MemoryRegionDesc>(9, ram.Region()),
                                      {ram.fd()}, 9);
                   },
                   "9 regions"},
        BadMessage{"FewerFdsThanRegions",
                   [](Frontend& fe, GuestRam& ram) {
                     MemoryRegionDesc a = ram.Region(), b = ram.Region();
                     a.memory_size = b.memory_size = ram.size() / 2;
                     b.guest_phys_addr += ram.size();
                     b.userspace_addr += ram.size();
                     return SendTable(fe, {a, b}, {ram.fd()}, 2);
                   },
                   "carries 1 fds"},
        BadMessage{"RegionOverflows",
                   [](Frontend& fe, GuestRam& ram) {
                     MemoryRegionDesc r = ram.Region();
                     r.mmap_offset = UINT64_MAX - 4095;
                     return SendTable(fe, {r}, {ram.fd()}, 1);
                   },
                   "overflows"},
        BadMessage{"RegionBeyondItsFile",
                   [](Frontend& fe, GuestRam& ram) {
                     MemoryRegionDesc r = ram.Region();
                     r.memory_size *= 2;
                     return SendTable(fe, {r}, {ram.fd()}, 1);
                   },
                   "beyond the file"},
        BadMessage{"RingOutsideMemory",
                   [](Frontend& fe, GuestRam& ram) {
                     MemoryRegionDesc r = ram.Region();
                     if (auto s = SendTable(fe, {r}, {ram.fd()}, 1); !s.ok()) return s;
                     if (auto s = SendVringState(fe, Request::kSetVringNum, 1, 256); !s.ok())
                       return s;
                     VringAddress a{1, 0, r.userspace_addr + r.memory_size - 64,
                                    r.userspace_addr, r.userspace_addr + 8192, 0};
                     if (auto s = fe.Send(Request::kSetVringAddr, &a, sizeof a); !s.ok())
                       return s;
                     UniqueFd kick(eventfd(0, EFD_CLOEXEC));
                     return fe.SendU64(Request::kSetVringKick, 1, {kick.get()});
                   },
                   "not inside guest memory"},
        BadMessage{"RingsOverlap",
                   [](Frontend& fe, GuestRam& ram) {
                     MemoryRegionDesc r = ram.Region();
                     if (auto s = SendTable(fe, {r}, {ram.fd()}, 1); !s.ok()) return s;
                     if (auto s = SendVringState(fe, Request::kSetVringNum, 1, 256); !s.ok())
                       return s;
                     VringAddress a{1, 0, r.userspace_addr, r.userspace_addr + 1024,
                                    r.userspace_addr + 8192, 0};
                     if (auto s = fe.Send(Request::kSetVringAddr, &a, sizeof a); !s.ok())
                       return s;
                     UniqueFd kick(eventfd(0, EFD_CLOEXEC));
                     return fe.SendU64(Request::kSetVringKick, 1, {kick.get()});
                   },
                   "overlap"},
        BadMessage{"OversizedHeader",
                   [](Frontend& fe, GuestRam&) {
                     MessageHeader h{5, kVersion, 1u << 30};
                     return send(fe.fd(), &h, sizeof h, 0) == sizeof h
                                ? absl::OkStatus()
                                : absl::InternalError("send");
                   },
                   "announces"}),
    [](const ::testing::TestParamInfo<BadMessage>& info) { return info.param.name; });

// The log lines that name an unsupported request, counted by a log function of ours,
// by whether they carry the port's aux (the fixture's this).
std::atomic<int> unsupported_lines{0}, lines_without_port_aux{0};
std::atomic<const void*> port_aux{nullptr};
void CountUnsupportedLines(vhu_log_level, const char* message, void* aux) {
  if (aux != port_aux.load()) ++lines_without_port_aux;
  if (strstr(message, "ignoring unsupported request") != nullptr) ++unsupported_lines;
}

// A frontend may send requests we do not implement as often as it likes: each was
// logged, and their lines used up the log's rate limit, which every port's shared (so
// other ports' disconnects went unlogged).  A few are logged per connection, and each
// line carries its port's aux, by which the daemon gives every port a budget of its own.
TEST_F(PortTest, UnsupportedRequestsAreAnsweredSafely) {
  unsupported_lines = lines_without_port_aux = 0;
  port_aux = this;
  vhu_set_log_function(CountUnsupportedLines);
  struct RestoreLog {
    ~RestoreLog() { vhu_set_log_function(nullptr); }
  } restore;
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok());
  ASSERT_TRUE((*fe)->SendU64(Request::kSetProtocolFeatures,
                             Bit(protocol_feature::kReplyAck)).ok());
  for (int i = 0; i < 1000; ++i) {
    uint8_t inflight[24] = {};
    ASSERT_TRUE((*fe)->Send(Request::kGetInflightFd, inflight, sizeof inflight).ok());
    ASSERT_TRUE((*fe)->Send(Request::kSetInflightFd, inflight, sizeof inflight,
                            {ram_.fd()}).ok());
  }
  ASSERT_TRUE((*fe)->Sync().ok()) << "still connected and answering";
  EXPECT_EQ(unsupported_lines.load(), 8);
  EXPECT_EQ(lines_without_port_aux.load(), 0);
}

// A frontend starting rings of 32768 descriptors on every vring (they may share its
// memory) made the port hold about 130 MiB of burst state that no limit counted.  The
// started rings of a port hold at most 2 x 128 x 4096 descriptors: the 32nd ring of
// 32768 is still taken, the 33rd refused.
TEST_F(PortTest, StartedRingsHoldABoundedNumberOfDescriptors) {
  GuestRam ram(4 << 20);
  DriverRing big(ram, 32768);
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok());
  std::vector<Frontend::RingSetup> rings;
  for (uint32_t i = 0; i < 32; ++i) rings.push_back({i, &big});
  ASSERT_TRUE((*fe)->SetUp(ram, kModernFeatures, rings).ok());
  ASSERT_TRUE((*fe)->Sync().ok()) << "32 rings of 32768 refused";
  VringState num{32, 32768};
  ASSERT_TRUE((*fe)->Send(Request::kSetVringNum, &num, sizeof num).ok());
  VringAddress addr = big.Address(32);
  ASSERT_TRUE((*fe)->Send(Request::kSetVringAddr, &addr, sizeof addr).ok());
  UniqueFd kick(eventfd(0, EFD_CLOEXEC));
  ASSERT_TRUE((*fe)->SendU64(Request::kSetVringKick, 32, {kick.get()}).ok());
  EXPECT_TRUE((*fe)->WaitClosed(5000));
  EXPECT_TRUE(WaitFor([&] {
    vhu_port_status s;
    vhu_port_get_status(port_, &s);
    return strstr(s.last_error, "a port takes at most 1048576") != nullptr;
  }));
}

// ---- Socket life cycle. ----

TEST_F(PortTest, LiveSocketIsNotStolenButStaleOneIsReplaced) {
  vhu_port* second = CreatePort(path_, VHU_MODE_SERVER);
  EXPECT_EQ(second, nullptr);
  EXPECT_THAT(last_create_error_, HasSubstr("in use"));

  vhu_port_destroy(port_);
  port_ = nullptr;
  struct stat st;
  EXPECT_NE(lstat(path_.c_str(), &st), 0) << "socket file removed with the port";

  // A socket file nobody listens on (left by a crash) is replaced.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  close(fd);
  port_ = CreatePort(path_, VHU_MODE_SERVER);
  EXPECT_NE(port_, nullptr) << last_create_error_;

  std::string file = dir_ + "/regular";
  close(open(file.c_str(), O_CREAT | O_WRONLY, 0600));
  EXPECT_EQ(CreatePort(file, VHU_MODE_SERVER), nullptr);
  EXPECT_THAT(last_create_error_, HasSubstr("not a socket"));
  unlink(file.c_str());
}

TEST_F(PortTest, ClientModeConnectsAndReconnects) {
  std::string server_path = dir_ + "/qemu.sock";
  vhu_port* client = CreatePort(server_path, VHU_MODE_CLIENT);
  ASSERT_NE(client, nullptr);
  for (int round = 0; round < 2; ++round) {
    // The frontend (QEMU in server mode) appears after the port was created.
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    strncpy(addr.sun_path, server_path.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(listen(listener.get(), 1), 0);
    UniqueFd conn(accept(listener.get(), nullptr, nullptr));
    ASSERT_TRUE(conn.valid());
    Frontend fe(std::move(conn));
    ASSERT_TRUE(fe.SetUp(ram_, kModernFeatures, {{0, &rx_}, {1, &tx_}}).ok());
    vhu_port_status s;
    ASSERT_TRUE(WaitFor([&] {
      vhu_port_get_status(client, &s);
      return s.state == VHU_STATE_READY;
    }));
    EXPECT_EQ(s.connects, static_cast<uint64_t>(round + 1));
    unlink(server_path.c_str());
  }
  vhu_port_destroy(client);
}

}  // namespace
}  // namespace vhostuser::testing
