// Packed virtqueues (VIRTIO_F_RING_PACKED) through a real port: the test frontend lays
// out packed rings in memfd guest RAM the way a driver does.
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/protocol.h"
#include "test_frontend.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::testing {
namespace {

constexpr uint64_t kPacked = Bit(feature::kVersion1) | Bit(feature::kRingPacked) |
                             Bit(feature::kRingIndirectDesc);
constexpr uint32_t kHeader = sizeof(VirtioNetHeader);

void* AllocVector(void*, uint32_t size, uint8_t** data) {
  auto* v = new std::vector<uint8_t>(size);
  *data = v->data();
  return v;
}

bool WaitFor(const std::function<bool()>& condition) {
  for (int i = 0; i < 1000 && !condition(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return condition();
}

class PackedRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/vhu-packed-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/sock";
    vhu_port_options options{};
    options.socket_path = path_.c_str();
    options.mode = VHU_MODE_SERVER;
    port_ = vhu_port_create(&options, nullptr, 0);
    ASSERT_NE(port_, nullptr);
  }
  void TearDown() override {
    frontend_.reset();
    vhu_port_destroy(port_);
    rmdir(dir_.c_str());
  }

  // 'base': SET_VRING_BASE of both rings (0: DPDK's form for position 0, 1 << 15).
  void Start(uint64_t features, int rx_call = -1, uint32_t base = 0) {
    auto fe = Frontend::Connect(path_);
    ASSERT_TRUE(fe.ok());
    frontend_ = *std::move(fe);
    Frontend::RingSetup rx{0, nullptr, rx_call, base, &rx_};
    Frontend::RingSetup tx{1, nullptr, -1, base, &tx_};
    ASSERT_TRUE(frontend_->SetUp(ram_, features, {rx, tx}).ok());
    ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  }

  // GET_VRING_BASE of vring 'index', which stops it.
  void GetVringBase(uint32_t index, VringState* got) {
    auto state = frontend_->GetVringBase(index);
    ASSERT_TRUE(state.ok()) << state.status();
    *got = *state;
  }

  vhu_port_status Status() {
    vhu_port_status s;
    vhu_port_get_status(port_, &s);
    return s;
  }

  // A guest transmit of 'frame' behind a zeroed header, split at 'splits'.
  void GuestSend(const std::vector<uint8_t>& frame, uint16_t id,
                 std::vector<uint32_t> splits = {}, bool indirect = false) {
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
    tx_.Post(buffers, false, id, indirect);
  }

  std::vector<std::vector<uint8_t>> Dequeue() {
    void* pkts[64];
    uint32_t n = vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 64, &dequeue_dropped_);
    std::vector<std::vector<uint8_t>> out;
    for (uint32_t i = 0; i < n; ++i) {
      auto* v = static_cast<std::vector<uint8_t>*>(pkts[i]);
      out.push_back(std::move(*v));
      delete v;
    }
    return out;
  }

  std::string dir_, path_;
  vhu_port* port_ = nullptr;
  uint32_t dequeue_dropped_ = 0;  // What the last Dequeue() was told it dropped.
  GuestRam ram_{16 << 20};
  PackedDriverRing rx_{ram_, 64};
  PackedDriverRing tx_{ram_, 64};
  std::unique_ptr<Frontend> frontend_;
};

TEST_F(PackedRingTest, NegotiatesAndAsksTheDriverNotToNotify) {
  Start(kPacked);
  EXPECT_TRUE(Status().features & Bit(feature::kRingPacked));
  EXPECT_EQ(tx_.device_event_flags(), 1) << "device event suppression: disabled";
}

TEST_F(PackedRingTest, DequeuesEveryShapeAndWrapsAroundTheRing) {
  Start(kPacked);
  // 200 packets through a 64-entry ring: the positions wrap three times.
  for (uint32_t round = 0; round < 50; ++round) {
    auto f1 = TestFrame(60, round * 4), f2 = TestFrame(1500, round * 4 + 1),
         f3 = TestFrame(300, round * 4 + 2), f4 = TestFrame(100, round * 4 + 3);
    GuestSend(f1, 1);
    GuestSend(f2, 2, {kHeader, kHeader + 700});  // 3 descriptors
    GuestSend(f3, 3, {5}, /*indirect=*/true);    // header split, indirect
    GuestSend(f4, 4, {kHeader + 10});            // 2 descriptors
    auto got = Dequeue();
    ASSERT_EQ(got.size(), 4u) << "round " << round;
    EXPECT_EQ(got[0], f1);
    EXPECT_EQ(got[1], f2);
    EXPECT_EQ(got[2], f3);
    EXPECT_EQ(got[3], f4);
    VringUsedElem e;
    for (auto [id, descs] : {std::pair{1, 1}, {2, 3}, {3, 1}, {4, 2}}) {
      ASSERT_TRUE(tx_.PopUsed(descs, &e)) << "round " << round;
      EXPECT_EQ(e.id, static_cast<uint32_t>(id));
    }
    EXPECT_FALSE(tx_.PopUsed(1, &e));
  }
  vhu_vring_status vs;
  vhu_vring_get_status(port_, 1, &vs);
  EXPECT_EQ(vs.packets, 200u);
}

TEST_F(PackedRingTest, BurstOfLoneBuffersAroundAChainAcrossTheWrap) {
  // The device pre-walks a burst's lone buffers and stops at the first descriptor of
  // another shape; the rest is walked in full.  One burst that starts near the end of
  // the ring, wraps, and has a chain in the middle must come out whole and in order.
  Start(kPacked);
  for (uint16_t i = 0; i < 50; ++i) {  // To position 50 of 64.
    GuestSend(TestFrame(60, i), i);
    ASSERT_EQ(Dequeue().size(), 1u);
    VringUsedElem e;
    ASSERT_TRUE(tx_.PopUsed(1, &e));
  }
  std::vector<std::vector<uint8_t>> sent;
  std::vector<std::pair<uint16_t, uint16_t>> ids;  // Buffer id, descriptors.
  for (uint16_t i = 0; i < 21; ++i) {
    sent.push_back(TestFrame(60 + i, 100 + i));
    if (i == 10) {
      GuestSend(sent.back(), i, {kHeader, kHeader + 20});  // 3 descriptors
      ids.push_back({i, 3});
    } else {
      GuestSend(sent.back(), i);
      ids.push_back({i, 1});
    }
  }
  auto got = Dequeue();
  ASSERT_EQ(got.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i], sent[i]) << "packet " << i;
  VringUsedElem e;
  for (auto [id, descs] : ids) {
    ASSERT_TRUE(tx_.PopUsed(descs, &e));
    EXPECT_EQ(e.id, id);
  }
  EXPECT_FALSE(tx_.PopUsed(1, &e));
}

TEST_F(PackedRingTest, InOrderTransmitBurstGoesBackAsOneUsedDescriptor) {
  // With VIRTIO_F_IN_ORDER a transmit burst goes back as a single used descriptor in
  // the first buffer's slot, with the last buffer's id; the driver skips the others.
  Start(kPacked | Bit(feature::kInOrder));
  PackedDriverRing::Desc* descs = tx_.desc();
  for (uint16_t round = 0; round < 20; ++round) {  // 7 descriptors a round: wraps twice.
    const uint16_t first = tx_.next_position();
    std::vector<std::vector<uint8_t>> sent;
    for (uint16_t i = 0; i < 5; ++i) {
      sent.push_back(TestFrame(60 + i, round * 5 + i));
      if (i == 2) {
        GuestSend(sent.back(), 10 + i, {kHeader, kHeader + 20});  // 3 descriptors
      } else {
        GuestSend(sent.back(), 10 + i);
      }
    }
    auto got = Dequeue();
    ASSERT_EQ(got, sent) << "round " << round;
    for (uint16_t k = 1; k < 7; ++k) {
      const uint16_t flags = descs[(first + k) % tx_.size()].flags;
      EXPECT_NE(static_cast<bool>(flags & PackedDriverRing::kAvail),
                static_cast<bool>(flags & PackedDriverRing::kUsed))
          << "round " << round << ": slot " << k << " of the burst was written back";
    }
    VringUsedElem e;
    ASSERT_TRUE(tx_.PopUsed(7, &e)) << "round " << round;
    EXPECT_EQ(e.id, 14u);
    EXPECT_FALSE(tx_.PopUsed(1, &e));
  }
  vhu_vring_status vs;
  vhu_vring_get_status(port_, 1, &vs);
  EXPECT_EQ(vs.packets, 100u);
}

TEST_F(PackedRingTest, WithoutInOrderEveryTransmitBufferGoesBack) {
  Start(kPacked);
  for (uint16_t i = 0; i < 3; ++i) GuestSend(TestFrame(60, i), 20 + i);
  ASSERT_EQ(Dequeue().size(), 3u);
  VringUsedElem e;
  for (uint16_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(tx_.PopUsed(1, &e));
    EXPECT_EQ(e.id, 20u + i);
  }
}

// A lone buffer holding the whole packet takes a shorter path than the general walk
// (EnqueuePacked, DequeuePacked); what the guest sees must not differ: the header
// rewritten over stale bytes with num_buffers 1, the frame, the used lengths and
// counters, and a buffer one byte short going the general way.
TEST_F(PackedRingTest, LoneBuffersGiveWhatTheGeneralWalkGives) {
  Start(kPacked | Bit(feature::kNetMrgRxbuf));
  const uint64_t exact = ram_.Alloc(kHeader + 60);
  const uint64_t short_by_one = ram_.Alloc(kHeader + 59);
  const uint64_t rest = ram_.Alloc(1000);
  memset(ram_.host(exact), 0xee, kHeader + 60);
  memset(ram_.host(short_by_one), 0xee, kHeader + 59);
  rx_.Post({{exact, kHeader + 60}}, true, 7);
  rx_.Post({{short_by_one, kHeader + 59}}, true, 8);
  rx_.Post({{rest, 1000}}, true, 9);
  auto f1 = TestFrame(60, 1), f2 = TestFrame(60, 2);
  vhu_tx_packet pkts[] = {{f1.data(), 60}, {f2.data(), 60}};
  uint32_t dropped = 9;
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, pkts, 2, &dropped), 2u);
  EXPECT_EQ(dropped, 0u);
  VirtioNetHeader h;
  memcpy(&h, ram_.host(exact), sizeof h);
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(h.gso_type, 0);
  EXPECT_EQ(h.hdr_len, 0);
  EXPECT_EQ(h.gso_size, 0);
  EXPECT_EQ(h.csum_start, 0);
  EXPECT_EQ(h.csum_offset, 0);
  EXPECT_EQ(h.num_buffers, 1);
  EXPECT_EQ(0, memcmp(ram_.host(exact) + kHeader, f1.data(), 60));
  memcpy(&h, ram_.host(short_by_one), sizeof h);
  EXPECT_EQ(h.num_buffers, 2);
  EXPECT_EQ(0, memcmp(ram_.host(short_by_one) + kHeader, f2.data(), 59));
  EXPECT_EQ(ram_.host(rest)[0], f2[59]);
  VringUsedElem e;
  ASSERT_TRUE(rx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 7u);
  EXPECT_EQ(e.len, kHeader + 60);
  ASSERT_TRUE(rx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 8u);
  EXPECT_EQ(e.len, kHeader + 59);
  ASSERT_TRUE(rx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 9u);
  EXPECT_EQ(e.len, 1u);
  vhu_vring_status vs;
  vhu_vring_get_status(port_, 0, &vs);
  EXPECT_EQ(vs.packets, 2u);
  EXPECT_EQ(vs.bytes, 120u);

  // Transmit: an empty frame (the header alone) is dropped and counted, between two
  // lone buffers that are taken; all three go back.
  auto f3 = TestFrame(60, 3), f4 = TestFrame(1514, 4);
  GuestSend(f3, 1);
  GuestSend({}, 2);
  GuestSend(f4, 3);
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], f3);
  EXPECT_EQ(got[1], f4);
  for (uint16_t id = 1; id <= 3; ++id) {
    ASSERT_TRUE(tx_.PopUsed(1, &e));
    EXPECT_EQ(e.id, id);
  }
  vhu_vring_get_status(port_, 1, &vs);
  EXPECT_EQ(vs.packets, 2u);
  EXPECT_EQ(vs.bytes, 60u + 1514u);
  EXPECT_EQ(vs.drops, 1u);
}

// The same, with the legacy 10-byte header (no VIRTIO_F_VERSION_1, no mergeable
// buffers): no num_buffers field, so the frame starts at byte 10.
TEST_F(PackedRingTest, LoneReceiveBufferWithTheLegacyHeader) {
  Start(Bit(feature::kRingPacked));
  constexpr uint32_t kLegacy = 10;
  const uint64_t buffer = ram_.Alloc(kLegacy + 60);
  memset(ram_.host(buffer), 0xee, kLegacy + 60);
  rx_.Post({{buffer, kLegacy + 60}}, true, 3);
  auto frame = TestFrame(60, 5);
  vhu_tx_packet pkt{frame.data(), 60};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  const uint8_t zeros[kLegacy] = {};
  EXPECT_EQ(0, memcmp(ram_.host(buffer), zeros, kLegacy));
  EXPECT_EQ(0, memcmp(ram_.host(buffer) + kLegacy, frame.data(), 60));
  VringUsedElem e;
  ASSERT_TRUE(rx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 3u);
  EXPECT_EQ(e.len, kLegacy + 60);
}

// The largest frame a port takes goes through a lone buffer; one byte more is dropped
// and counted, and both buffers go back.
TEST_F(PackedRingTest, LoneTransmitBufferAtTheFrameSizeLimit) {
  Start(kPacked);
  auto largest = TestFrame(VHU_MAX_FRAME_SIZE, 1);
  auto too_large = TestFrame(VHU_MAX_FRAME_SIZE + 1, 2);
  GuestSend(largest, 1);
  GuestSend(too_large, 2);
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], largest);
  VringUsedElem e;
  for (uint16_t id = 1; id <= 2; ++id) {
    ASSERT_TRUE(tx_.PopUsed(1, &e));
    EXPECT_EQ(e.id, id);
  }
  vhu_vring_status vs;
  vhu_vring_get_status(port_, 1, &vs);
  EXPECT_EQ(vs.packets, 1u);
  EXPECT_EQ(vs.drops, 1u);
  EXPECT_EQ(dequeue_dropped_, 1u) << "the caller is told, to count it";
}

// No packet to copy a lone buffer's frame into: the buffer stays with us, unreturned,
// and the next burst takes it.
TEST_F(PackedRingTest, LoneTransmitBufferWaitsWhenNoPacketCanBeHad) {
  Start(kPacked);
  auto frame = TestFrame(60, 9);
  GuestSend(frame, 4);
  auto no_packet = [](void*, uint32_t, uint8_t**) -> void* { return nullptr; };
  void* pkts[4];
  EXPECT_EQ(vhu_dequeue_burst(port_, 0, no_packet, nullptr, pkts, 4, nullptr), 0u);
  VringUsedElem e;
  EXPECT_FALSE(tx_.PopUsed(1, &e));
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], frame);
  ASSERT_TRUE(tx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 4u);
}

TEST_F(PackedRingTest, ABurstTakesAtMostARingOfDescriptors) {
  // A chain that runs on into the next lap of the ring, over descriptors this burst
  // already took, ends the burst: one burst never takes more than the ring.  A is a
  // 63-descriptor chain at positions 0-62; B's head at 63 says NEXT, so its chain goes
  // on through A's descriptors, 64 in all.
  Start(kPacked);
  const auto a = TestFrame(60, 1);
  std::vector<uint32_t> splits;
  for (uint32_t i = 1; i < 63; ++i) splits.push_back(i);
  GuestSend(a, 1, splits);  // 63 descriptors: 1 byte each, then the rest.
  ASSERT_EQ(tx_.next_position(), 63);
  const uint64_t header = ram_.Alloc(kHeader);
  memset(ram_.host(header), 0, kHeader);
  tx_.Post({{header, kHeader}}, false, 2);
  tx_.desc()[63].flags |= kDescFlagNext;
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 1u) << "B would have taken A's descriptors a second time";
  EXPECT_EQ(got[0], a);
  VringUsedElem e;
  ASSERT_TRUE(tx_.PopUsed(63, &e));
  EXPECT_EQ(e.id, 1u);
  EXPECT_EQ(Status().state, VHU_STATE_READY);
  // The next burst takes B on its own.  A's returned descriptor at position 0 no longer
  // says NEXT (the used flags replaced it) and holds length 0, so B ends there with
  // nothing in it: a frame of no bytes, dropped and counted.  (Its buffer id is that
  // last descriptor's, now A's.)
  EXPECT_TRUE(Dequeue().empty());
  EXPECT_TRUE(tx_.PopUsed(2, &e));
  vhu_vring_status vs;
  vhu_vring_get_status(port_, 1, &vs);
  EXPECT_EQ(vs.packets, 1u);
  EXPECT_EQ(vs.drops, 1u);
  EXPECT_EQ(dequeue_dropped_, 1u) << "the caller is told, to count it";
}

TEST_F(PackedRingTest, ABurstBecomesVisibleToTheDriverWhole) {
  // The device returns a burst's buffers with the first one's flags written last, so
  // that a driver polling that descriptor never finds the burst half returned.  A
  // driver thread watches the burst's first descriptor while the device returns it and
  // checks the rest the moment it turns used: with the flags written in order, it saw
  // the first used and a later one still available in 5 to 20 of 200 rounds.
  Start(kPacked);
  constexpr int kBurst = 16;
  const auto frame = TestFrame(60, 1);
  PackedDriverRing::Desc* descs = tx_.desc();
  auto is_used = [&](uint32_t position) {
    const uint16_t flags = __atomic_load_n(&descs[position % tx_.size()].flags,
                                           __ATOMIC_ACQUIRE);
    return static_cast<bool>(flags & PackedDriverRing::kAvail) ==
           static_cast<bool>(flags & PackedDriverRing::kUsed);
  };
  int half_returned = 0, missed = 0;
  for (int round = 0; round < 1000; ++round) {
    const uint16_t first = tx_.next_position();
    for (int i = 0; i < kBurst; ++i) GuestSend(frame, static_cast<uint16_t>(i));
    std::atomic<bool> watching{false};
    std::thread driver([&] {
      watching = true;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      while (!is_used(first)) {
        if (std::chrono::steady_clock::now() > deadline && !is_used(first)) {
          ++missed;
          return;
        }
      }
      for (int i = 1; i < kBurst; ++i) {
        if (!is_used(first + i)) {
          ++half_returned;
          return;
        }
      }
    });
    while (!watching) {
    }
    const size_t got = Dequeue().size();
    driver.join();  // Before any ASSERT can return with the thread still running.
    ASSERT_EQ(got, static_cast<size_t>(kBurst)) << "round " << round;
    VringUsedElem e;
    for (int i = 0; i < kBurst; ++i) ASSERT_TRUE(tx_.PopUsed(1, &e));
  }
  EXPECT_EQ(half_returned, 0) << "rounds where the driver saw part of a burst returned";
  EXPECT_EQ(missed, 0);
}

TEST_F(PackedRingTest, EnqueuesWithAndWithoutMergeableBuffers) {
  Start(kPacked | Bit(feature::kNetMrgRxbuf));
  uint64_t b[3];
  for (uint16_t i = 0; i < 3; ++i) {
    b[i] = ram_.Alloc(1000);
    rx_.Post({{b[i], 1000}}, true, static_cast<uint16_t>(10 + i));
  }
  auto frame = TestFrame(2500, 7);
  vhu_tx_packet pkt{frame.data(), 2500};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  VirtioNetHeader h;
  memcpy(&h, ram_.host(b[0]), sizeof h);
  EXPECT_EQ(h.num_buffers, 3);
  std::vector<uint8_t> got(ram_.host(b[0]) + kHeader, ram_.host(b[0]) + 1000);
  got.insert(got.end(), ram_.host(b[1]), ram_.host(b[1]) + 1000);
  got.insert(got.end(), ram_.host(b[2]), ram_.host(b[2]) + 2500 + kHeader - 2000);
  EXPECT_EQ(got, frame);
  VringUsedElem e;
  ASSERT_TRUE(rx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 10u);
  EXPECT_EQ(e.len, 1000u);
  ASSERT_TRUE(rx_.PopUsed(1, &e));
  ASSERT_TRUE(rx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 12u);
  EXPECT_EQ(e.len, 2500 + kHeader - 2000);
  // No buffer left: the next packet waits, it is not dropped.
  uint32_t dropped = 9;
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, &dropped), 0u);
  EXPECT_EQ(dropped, 0u);
}

// As on split rings: a frame that a whole ring of mergeable buffers cannot hold is
// dropped; it used to wait, the ring's position seen again after a lap looking like
// buffers not posted yet.
TEST_F(PackedRingTest, DropsWhatAWholeRingOfMergeableBuffersCannotHold) {
  Start(kPacked | Bit(feature::kNetMrgRxbuf));
  for (uint16_t i = 0; i < rx_.size(); ++i) rx_.Post({{ram_.Alloc(100), 100}}, true, i);
  auto huge = TestFrame(30000, 1), small = TestFrame(60, 2);
  vhu_tx_packet pkts[] = {{huge.data(), 30000}, {small.data(), 60}};
  uint32_t dropped = 0;
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, pkts, 2, &dropped), 2u);
  EXPECT_EQ(dropped, 1u);
  VringUsedElem e;
  ASSERT_TRUE(rx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 0u);
  EXPECT_EQ(e.len, kHeader + 60);
  EXPECT_FALSE(rx_.PopUsed(1, &e));
}

TEST_F(PackedRingTest, NonMergeableDropsWhatNoBufferHolds) {
  Start(kPacked);
  uint64_t small = ram_.Alloc(200);
  rx_.Post({{small, 200}}, true, 5);
  auto big = TestFrame(1000, 1), fits = TestFrame(100, 2);
  vhu_tx_packet pkts[] = {{big.data(), 1000}, {fits.data(), 100}};
  uint32_t dropped = 0;
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, pkts, 2, &dropped), 2u);
  EXPECT_EQ(dropped, 1u);
  VringUsedElem e;
  ASSERT_TRUE(rx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 5u);
  EXPECT_EQ(e.len, kHeader + 100);
  EXPECT_EQ(0, memcmp(ram_.host(small) + kHeader, fits.data(), 100));
}

TEST_F(PackedRingTest, InterruptsAsTheDriverEventSuppressionSays) {
  UniqueFd call(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  Start(kPacked | Bit(feature::kRingEventIdx), call.get());
  auto interrupts = [&] {
    uint64_t v = 0;
    return read(call.get(), &v, sizeof v) == 8 ? v : 0;
  };
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  for (uint16_t i = 0; i < 8; ++i) rx_.Post({{ram_.Alloc(2048), 2048}}, true, i);

  rx_.set_driver_event(1);  // Disable.
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  EXPECT_EQ(interrupts(), 0u);
  rx_.set_driver_event(0);  // Enable.
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  EXPECT_EQ(interrupts(), 1u);
  // Desc: interrupt once the used position passes 4 (wrap counter 1).
  rx_.set_driver_event(2, 4 | (1u << 15));
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);  // used 2 -> 3
  EXPECT_EQ(interrupts(), 0u);
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);  // 3 -> 4
  EXPECT_EQ(interrupts(), 0u);
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);  // 4 -> 5: crosses
  EXPECT_EQ(interrupts(), 1u);
}

TEST_F(PackedRingTest, GetVringBaseReturnsPositionAndWrapCounter) {
  Start(kPacked);
  for (uint16_t i = 0; i < 70; ++i) {  // More than the ring: the wrap counter flips.
    GuestSend(TestFrame(64, i), i % 64);
    ASSERT_EQ(Dequeue().size(), 1u);
    VringUsedElem e;
    ASSERT_TRUE(tx_.PopUsed(1, &e));
  }
  VringState got;
  ASSERT_NO_FATAL_FAILURE(GetVringBase(1, &got));
  EXPECT_EQ(got.num & 0x7fff, 70u - 64u);
  EXPECT_EQ((got.num >> 15) & 1, 0u) << "the avail wrap counter flipped once";
  EXPECT_EQ(got.num >> 16, got.num & 0xffff) << "the used half: nothing in flight";
}

// QEMU sends a packed ring's base with both halves, avail in bits 0-15 and used in
// 16-31: a new ring's is 0x80008000.  It was refused as out of range, so a QEMU guest
// with packed=on never got a working NIC.
TEST_F(PackedRingTest, QemusBaseWithBothHalvesIsTaken) {
  Start(kPacked, -1, 0x80008000u);
  GuestSend(TestFrame(64, 1), 0);
  EXPECT_EQ(Dequeue().size(), 1u);
  VringUsedElem e;
  ASSERT_TRUE(tx_.PopUsed(1, &e));
  EXPECT_EQ(e.id, 0u);
  VringState got;
  ASSERT_NO_FATAL_FAILURE(GetVringBase(1, &got));
  EXPECT_EQ(got.num, 0x80018001u) << "position 1 on both sides, wrap counters still set";
}

// A ring stopped before it started (no kick) answers GET_VRING_BASE with the base it
// was given, wrap counters included: it said 0, which a frontend restoring the ring
// from it would send back, and the ring would then wait for descriptors with the
// wrong wrap counter for ever.
TEST_F(PackedRingTest, RingThatNeverStartedReturnsItsBase) {
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok());
  frontend_ = *std::move(fe);
  ASSERT_TRUE(frontend_->SendU64(Request::kSetFeatures, kPacked).ok());
  VringState num{1, 64}, base{1, 0x80008000u};
  ASSERT_TRUE(frontend_->Send(Request::kSetVringNum, &num, sizeof num).ok());
  ASSERT_TRUE(frontend_->Send(Request::kSetVringBase, &base, sizeof base).ok());
  VringState got;
  ASSERT_NO_FATAL_FAILURE(GetVringBase(1, &got));
  EXPECT_EQ(got.num, 0x80008000u);
}

TEST_F(PackedRingTest, ChainLongerThanTheRingDisconnects) {
  Start(kPacked);
  // Every descriptor of the ring says NEXT: the chain never ends.
  std::vector<DriverRing::Buffer> buffers(64, {ram_.Alloc(64), 64});
  tx_.Post(buffers, false, 0);
  tx_.desc()[63].flags |= kDescFlagNext;
  EXPECT_TRUE(Dequeue().empty());
  EXPECT_TRUE(frontend_->WaitClosed(5000));
  EXPECT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_DISCONNECTED; }));
  EXPECT_THAT(Status().last_error, ::testing::HasSubstr("longer than the ring"));
}

// As on split rings (HostileTest.ChainsHaveAtMost256Descriptors): 256 descriptors a
// chain at most, an indirect table's too, whatever the ring's size.
TEST_F(PackedRingTest, ChainsHaveAtMost256Descriptors) {
  GuestRam ram(8 << 20);
  PackedDriverRing rx(ram, 512), tx(ram, 512);
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok());
  ASSERT_TRUE((*fe)->SetUp(ram, kPacked,
                           {{0, nullptr, -1, 0, &rx}, {1, nullptr, -1, 0, &tx}}).ok());
  ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  auto buffers = [&](uint32_t descriptors) {
    const uint64_t pages = ram.Alloc(descriptors * 4096);
    std::vector<DriverRing::Buffer> b{{pages, kHeader}};
    for (uint32_t i = 1; i < descriptors; ++i) b.push_back({pages + i * 4096, 1});
    return b;
  };
  tx.Post(buffers(256), false, 0);
  tx.Post(buffers(256), false, 1, /*indirect=*/true);
  auto got = Dequeue();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].size(), 255u);
  EXPECT_EQ(got[1].size(), 255u);
  tx.Post(buffers(257), false, 2, /*indirect=*/true);
  EXPECT_TRUE(Dequeue().empty());
  EXPECT_TRUE((*fe)->WaitClosed(5000));
  EXPECT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_DISCONNECTED; }));
  EXPECT_THAT(Status().last_error, ::testing::HasSubstr("more than 256 descriptors"));
}

TEST_F(PackedRingTest, BufferIdOutOfRangeDisconnects) {
  Start(kPacked);
  GuestSend(TestFrame(64, 1), 64);
  EXPECT_TRUE(Dequeue().empty());
  EXPECT_TRUE(frontend_->WaitClosed(5000));
  // The port's status changes after the socket is closed, not before.
  EXPECT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_DISCONNECTED; }));
  EXPECT_THAT(Status().last_error, ::testing::HasSubstr("buffer id"));
}

TEST_F(PackedRingTest, SizesNeedNotBePowersOfTwo) {
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok());
  ASSERT_TRUE((*fe)->SendU64(Request::kSetFeatures, kPacked).ok());
  VringState num{0, 300};
  ASSERT_TRUE((*fe)->Send(Request::kSetVringNum, &num, sizeof num).ok());
  ASSERT_TRUE((*fe)->Sync().ok()) << "300 is a valid packed ring size";
  VringState base{0, 300};  // Position 300 of a 300-entry ring: out of range.
  ASSERT_TRUE((*fe)->Send(Request::kSetVringBase, &base, sizeof base).ok());
  EXPECT_TRUE((*fe)->WaitClosed(5000));
}

}  // namespace
}  // namespace vhostuser::testing
