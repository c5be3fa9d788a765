// Live migration support of a port, in process: the dirty page log (SET_LOG_BASE,
// VHOST_F_LOG_ALL) marks exactly the pages each enqueue and dequeue wrote, split and
// packed, mergeable and not; a bad log loses the frontend its port; SEND_RARP makes the
// next dequeue announce the guest.
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <vector>

#include "net/rarp.h"
#include "port_fixture.h"

namespace vhostuser::testing {
namespace {

constexpr uint64_t kPage = 4096;

// Far from the rings, and on a page of its own.
uint64_t BufferAtPage(GuestRam& ram, uint32_t pages) { return ram.Alloc(pages * kPage, kPage); }

class MigrationTest : public PortFixture {
 protected:
  void SetUp() override {
    PortFixture::SetUp();
    // One bit per page of guest RAM, which starts at GuestRam::kGuestBase.
    log_size_ = ((GuestRam::kGuestBase + ram_.size()) / kPage + 7) / 8;
    log_fd_ = UniqueFd(memfd_create("dirty-log", MFD_CLOEXEC));
    ASSERT_EQ(ftruncate(log_fd_.get(), static_cast<off_t>(log_size_)), 0);
    void* p = mmap(nullptr, log_size_, PROT_READ | PROT_WRITE, MAP_SHARED, log_fd_.get(), 0);
    ASSERT_NE(p, MAP_FAILED);
    log_ = static_cast<uint8_t*>(p);
  }
  // Sends SEND_RARP for 'mac' before the rings start, as QEMU may, then starts them.
  void StartAfterSendRarp(const uint8_t mac[6]) {
    Connect();
    uint64_t payload = 0;
    memcpy(&payload, mac, 6);
    ASSERT_TRUE(frontend_->SendU64(Request::kSendRarp, payload).ok());
    ASSERT_TRUE(frontend_->SetUp(ram_, kModernFeatures, {{0, &rx_}, {1, &tx_}}).ok());
    ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  }

  void TearDown() override {
    munmap(log_, log_size_);
    PortFixture::TearDown();
  }

  // What QEMU does when a migration starts: the log, then VHOST_F_LOG_ALL.
  void StartLogging(uint64_t features) {
    LogBase base{log_size_, 0};
    ASSERT_TRUE(frontend_->Send(Request::kSetLogBase, &base, sizeof base, {log_fd_.get()}).ok());
    auto reply = frontend_->Receive(Request::kSetLogBase);
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_TRUE(frontend_
                    ->SendU64(Request::kSetFeatures, features | Bit(feature::kProtocolFeatures) |
                                                         Bit(feature::kLogAll))
                    .ok());
    ASSERT_TRUE(frontend_->Sync().ok());
  }

  // With logging on and the log the rings need not given yet: an enqueue waits, writing
  // and marking nothing, until a new log comes; then it goes through and is marked.
  void ExpectEnqueueWaitsForTheLog() {
    const uint64_t gpa = BufferAtPage(ram_, 1);
    rx_.Publish(rx_.AddChain({{gpa, 2048}}, true));
    auto frame = TestFrame(64, 1);
    vhu_tx_packet pkt{frame.data(), 64};
    EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 0u) << "written before the log";
    EXPECT_TRUE(TakeMarked().empty()) << "a log nobody reads was marked";
    StartLogging(kModernFeatures);
    TakeMarked();
    ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
    EXPECT_TRUE(TakeMarked().contains(gpa / kPage));
  }

  // The pages marked in the log, as guest-physical page numbers; clears the log.
  std::set<uint64_t> TakeMarked() {
    std::set<uint64_t> pages;
    for (uint64_t byte = 0; byte < log_size_; ++byte) {
      for (int bit = 0; bit < 8; ++bit) {
        if (log_[byte] & (1u << bit)) pages.insert(byte * 8 + bit);
      }
    }
    memset(log_, 0, log_size_);
    return pages;
  }

  static std::set<uint64_t> Pages(uint64_t gpa, uint64_t len) {
    std::set<uint64_t> pages;
    for (uint64_t p = gpa / kPage; p <= (gpa + len - 1) / kPage; ++p) pages.insert(p);
    return pages;
  }
  // Guest-physical address of an address in the frontend's (our test's) space.
  uint64_t GpaOfUser(uint64_t user) const {
    return GuestRam::kGuestBase + (user - ram_.user_addr(GuestRam::kGuestBase));
  }
  // The pages of a split ring's used->idx and of its used element 'slot'.
  std::set<uint64_t> UsedPages(uint32_t index, DriverRing& ring, uint16_t slot) {
    const uint64_t used = GpaOfUser(ring.Address(index).used_user_addr);
    std::set<uint64_t> pages = Pages(used + 2, 2);
    pages.merge(Pages(used + 4 + 8 * uint64_t{slot}, 8));
    return pages;
  }

  uint64_t log_size_ = 0;
  UniqueFd log_fd_;
  uint8_t* log_ = nullptr;
};

TEST_F(MigrationTest, NothingIsMarkedWhileLoggingIsOff) {
  Start(kModernFeatures);
  const uint64_t gpa = BufferAtPage(ram_, 1);
  rx_.Publish(rx_.AddChain({{gpa, 2048}}, true));
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  LogBase base{log_size_, 0};
  ASSERT_TRUE(frontend_->Send(Request::kSetLogBase, &base, sizeof base, {log_fd_.get()}).ok());
  ASSERT_TRUE(frontend_->Receive(Request::kSetLogBase).ok());
  rx_.Publish(rx_.AddChain({{gpa, 2048}}, true));
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);  // No LOG_ALL yet.
  EXPECT_TRUE(TakeMarked().empty());
}

TEST_F(MigrationTest, EnqueueMarksTheBufferAndTheUsedRing) {
  Start(kModernFeatures);
  StartLogging(kModernFeatures);
  TakeMarked();
  const uint64_t gpa = BufferAtPage(ram_, 2) + kPage - 40;  // Straddles two pages.
  rx_.Publish(rx_.AddChain({{gpa, 2048}}, true));
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  std::set<uint64_t> expected = Pages(gpa, kHeader + 64);
  expected.merge(UsedPages(0, rx_, 0));
  EXPECT_EQ(TakeMarked(), expected);

  // Logging off again (the migration failed or was cancelled): nothing more.
  ASSERT_TRUE(frontend_->SendU64(Request::kSetFeatures,
                                 kModernFeatures | Bit(feature::kProtocolFeatures)).ok());
  ASSERT_TRUE(frontend_->Sync().ok());
  rx_.Publish(rx_.AddChain({{gpa, 2048}}, true));
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  EXPECT_TRUE(TakeMarked().empty());
}

// QEMU starting the rings during a migration (a guest's driver reloaded, a backend
// reconnected) sends VHOST_F_LOG_ALL with the features, sets the rings up, and only
// then SET_LOG_BASE.  What the data path wrote in between went unlogged, and so missing
// from the destination's memory.  The rings wait for the log.
TEST_F(MigrationTest, RingsStartedUnderLogAllWaitForTheLog) {
  Connect();
  ASSERT_TRUE(frontend_->SetUp(ram_, kModernFeatures | Bit(feature::kLogAll),
                               {{0, &rx_}, {1, &tx_}}).ok());
  ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  const uint64_t gpa = BufferAtPage(ram_, 1);
  rx_.Publish(rx_.AddChain({{gpa, 2048}}, true));
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 0u) << "written before the log";
  LogBase base{log_size_, 0};
  ASSERT_TRUE(frontend_->Send(Request::kSetLogBase, &base, sizeof base, {log_fd_.get()}).ok());
  ASSERT_TRUE(frontend_->Receive(Request::kSetLogBase).ok());
  TakeMarked();
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  std::set<uint64_t> expected = Pages(gpa, kHeader + 64);
  expected.merge(UsedPages(0, rx_, 0));
  EXPECT_EQ(TakeMarked(), expected);
}

// LOG_ALL off ends the migration's log: QEMU frees it and gives the next migration a
// new one.  The old one was kept and marked again if LOG_ALL came back without
// SET_LOG_BASE, in memory the frontend may have reused.
TEST_F(MigrationTest, LogAllBackWithoutANewLogWaitsForOne) {
  Start(kModernFeatures);
  StartLogging(kModernFeatures);
  ASSERT_TRUE(frontend_->SendU64(Request::kSetFeatures,
                                 kModernFeatures | Bit(feature::kProtocolFeatures)).ok());
  ASSERT_TRUE(frontend_->SendU64(Request::kSetFeatures, kModernFeatures |
                                 Bit(feature::kProtocolFeatures) | Bit(feature::kLogAll)).ok());
  ASSERT_TRUE(frontend_->Sync().ok());
  TakeMarked();
  ExpectEnqueueWaitsForTheLog();
}

// QEMU stopping a ring during a migration (a guest's virtio reset) frees its log
// without telling us; starting it again, it sends LOG_ALL (no change for us), sets the
// ring up and only then a new SET_LOG_BASE.  The restarted ring marked the old log,
// which nobody reads any more.  It waits for the new one.
TEST_F(MigrationTest, RingRestartedDuringAMigrationWaitsForTheNewLog) {
  Start(kModernFeatures);
  StartLogging(kModernFeatures);
  auto got = frontend_->GetVringBase(0);
  ASSERT_TRUE(got.ok()) << got.status();
  VringState base = *got;
  ASSERT_TRUE(frontend_->Send(Request::kSetVringBase, &base, sizeof base).ok());
  UniqueFd kick(eventfd(0, EFD_CLOEXEC));
  ASSERT_TRUE(frontend_->SendU64(Request::kSetVringKick, 0, {kick.get()}).ok());
  ASSERT_TRUE(frontend_->Sync().ok());
  TakeMarked();
  ExpectEnqueueWaitsForTheLog();
}

// Without LOG_SHMFD no log can come, and the rings would wait for ever: refused, also
// when the same SET_FEATURES turns the protocol features (LOG_SHMFD with them) off.
TEST_F(MigrationTest, LogAllWithoutLogShmfdIsRefused) {
  Connect();
  ASSERT_TRUE(frontend_->SendU64(Request::kSetFeatures,
                                 kModernFeatures | Bit(feature::kLogAll)).ok());
  ExpectDropped("VHOST_F_LOG_ALL without VHOST_USER_PROTOCOL_F_LOG_SHMFD");
  Connect();
  ASSERT_TRUE(frontend_->SendU64(Request::kSetProtocolFeatures,
                                 Bit(protocol_feature::kLogShmfd)).ok());
  ASSERT_TRUE(frontend_->SendU64(Request::kSetFeatures,
                                 kModernFeatures | Bit(feature::kLogAll)).ok());
  ExpectDropped("VHOST_F_LOG_ALL without VHOST_USER_PROTOCOL_F_LOG_SHMFD");
}

TEST_F(MigrationTest, MergeableEnqueueMarksEveryBufferItFilled) {
  Start(kModernFeatures | Bit(feature::kNetMrgRxbuf));
  StartLogging(kModernFeatures | Bit(feature::kNetMrgRxbuf));
  TakeMarked();
  const uint64_t a = BufferAtPage(ram_, 1), b = BufferAtPage(ram_, 1);
  rx_.Publish(rx_.AddChain({{a, 1024}}, true));
  rx_.Publish(rx_.AddChain({{b, 1024}}, true));
  auto frame = TestFrame(1500, 1);
  vhu_tx_packet pkt{frame.data(), 1500};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  std::set<uint64_t> expected = Pages(a, 1024);
  expected.merge(Pages(b, kHeader + 1500 - 1024));
  expected.merge(UsedPages(0, rx_, 0));
  expected.merge(UsedPages(0, rx_, 1));
  EXPECT_EQ(TakeMarked(), expected);
}

TEST_F(MigrationTest, DequeueMarksOnlyTheUsedRing) {
  Start(kModernFeatures);
  StartLogging(kModernFeatures);
  TakeMarked();
  const uint64_t gpa = BufferAtPage(ram_, 1);
  auto frame = TestFrame(64, 1);
  memcpy(ram_.host(gpa) + kHeader, frame.data(), 64);
  memset(ram_.host(gpa), 0, kHeader);
  tx_.Publish(tx_.AddChain({{gpa, kHeader + 64}}, false));
  void* pkts[4];
  ASSERT_EQ(vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr), 1u);
  delete static_cast<std::vector<uint8_t>*>(pkts[0]);
  EXPECT_EQ(TakeMarked(), UsedPages(1, tx_, 0));
}

// Virtqueue::kTransmitHold: nothing is held while the log is on, and what was held when
// logging began goes back then, its used->idx marked.
TEST_F(MigrationTest, TransmitBuffersAreNotHeldWhileLogging) {
  Start(kModernFeatures);
  tx_.set_avail_flags(kAvailFlagNoInterrupt);  // A polling driver: held when not logging.
  auto frame = TestFrame(64, 1);
  const uint64_t gpa = BufferAtPage(ram_, 1);
  memcpy(ram_.host(gpa) + kHeader, frame.data(), 64);
  memset(ram_.host(gpa), 0, kHeader);
  auto send_and_take_four = [&] {
    for (int i = 0; i < 4; ++i) tx_.Publish(tx_.AddChain({{gpa, kHeader + 64}}, false));
    void* pkts[4];
    ASSERT_EQ(vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr), 4u);
    for (void* pkt : pkts) delete static_cast<std::vector<uint8_t>*>(pkt);
  };
  send_and_take_four();
  ASSERT_EQ(tx_.used_idx(), 0) << "a full burst, held";
  StartLogging(kModernFeatures);
  EXPECT_EQ(tx_.used_idx(), 4);
  const uint64_t used = GpaOfUser(tx_.Address(1).used_user_addr);
  EXPECT_EQ(TakeMarked(), Pages(used + 2, 2));
  send_and_take_four();
  EXPECT_EQ(tx_.used_idx(), 8) << "a full burst while logging, not held";
}

TEST_F(MigrationTest, PackedEnqueueMarksTheBufferAndTheDescriptor) {
  PackedDriverRing rx(ram_, 256), tx(ram_, 256);
  const uint64_t features = kModernFeatures | Bit(feature::kRingPacked);
  Connect();
  ASSERT_TRUE(frontend_->SetUp(ram_, features, {{0, nullptr, -1, 0, &rx},
                                                {1, nullptr, -1, 0, &tx}}).ok());
  ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  StartLogging(features);
  TakeMarked();
  const uint64_t gpa = BufferAtPage(ram_, 1);
  const uint16_t position = rx.Post({{gpa, 2048}}, true, 7);
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  const uint64_t desc = GpaOfUser(rx.Address(0).desc_user_addr) + 16 * uint64_t{position};
  std::set<uint64_t> expected = Pages(gpa, kHeader + 64);
  expected.merge(Pages(desc, 16));
  EXPECT_EQ(TakeMarked(), expected);
}

// Packed used elements are marked once per burst, as a span of the descriptor ring:
// both runs when the burst wraps, the whole ring when it goes all the way round, and
// not the pages of the ring it did not touch.
TEST_F(MigrationTest, PackedBurstMarksTheDescriptorsItUsedAcrossTheWrap) {
  constexpr uint16_t kSize = 1024;  // 16 KiB of descriptors: four pages or five.
  PackedDriverRing rx(ram_, kSize), tx(ram_, 256);
  const uint64_t features = kModernFeatures | Bit(feature::kRingPacked);
  Connect();
  ASSERT_TRUE(frontend_->SetUp(ram_, features, {{0, nullptr, -1, 0, &rx},
                                                {1, nullptr, -1, 0, &tx}}).ok());
  ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  const uint64_t gpa = BufferAtPage(ram_, 1);  // Every buffer is this one.
  auto frame = TestFrame(64, 1);
  std::vector<vhu_tx_packet> pkts(kSize, vhu_tx_packet{frame.data(), 64});
  auto post_and_send = [&](uint16_t n) {
    for (uint16_t i = 0; i < n; ++i) rx.Post({{gpa, 2048}}, true, i);
    ASSERT_EQ(vhu_enqueue_burst(port_, 0, pkts.data(), n, nullptr), n);
    VringUsedElem e;
    for (uint16_t i = 0; i < n; ++i) ASSERT_TRUE(rx.PopUsed(1, &e));
  };
  post_and_send(1000);  // To position 1000, before logging.
  StartLogging(features);
  TakeMarked();
  const uint64_t desc = GpaOfUser(rx.Address(0).desc_user_addr);

  post_and_send(40);  // Positions 1000-1023, then 0-15.
  std::set<uint64_t> expected = Pages(gpa, kHeader + 64);
  expected.merge(Pages(desc + 16 * 1000, 16 * 24));
  expected.merge(Pages(desc, 16 * 16));
  EXPECT_EQ(TakeMarked(), expected);
  EXPECT_EQ(expected.count((desc + 16 * 512) / kPage), 0u) << "the ring's middle page";

  post_and_send(kSize);  // From position 16 round to 16.
  expected = Pages(gpa, kHeader + 64);
  expected.merge(Pages(desc, 16 * kSize));
  EXPECT_EQ(TakeMarked(), expected);
}

// QEMU sends SET_VRING_ADDR again, same rings, to switch the used ring's logging on.
TEST_F(MigrationTest, VringAddressResentWithTheLogFlagKeepsTheRingRunning) {
  Start(kModernFeatures);
  VringAddress a = rx_.Address(0);
  a.flags = kVringFlagLog;
  a.log_guest_addr = GpaOfUser(a.used_user_addr);
  ASSERT_TRUE(frontend_->Send(Request::kSetVringAddr, &a, sizeof a).ok());
  ASSERT_TRUE(frontend_->Sync().ok());
  EXPECT_EQ(Status().state, VHU_STATE_READY);
  a.used_user_addr += 4096;  // Moving a running ring is still refused.
  ASSERT_TRUE(frontend_->Send(Request::kSetVringAddr, &a, sizeof a).ok());
  ExpectDropped("ring addresses changed while running");
}

TEST_F(MigrationTest, LogBeyondItsFileIsRefused) {
  Start(kModernFeatures);
  LogBase base{log_size_, 1 << 20};
  ASSERT_TRUE(frontend_->Send(Request::kSetLogBase, &base, sizeof base, {log_fd_.get()}).ok());
  ExpectDropped("beyond the file");
}

TEST_F(MigrationTest, LogThatIsNotSharedMemoryIsRefused) {
  Start(kModernFeatures);
  UniqueFd not_memory(eventfd(0, EFD_CLOEXEC));
  LogBase base{log_size_, 0};
  ASSERT_TRUE(
      frontend_->Send(Request::kSetLogBase, &base, sizeof base, {not_memory.get()}).ok());
  ExpectDropped("SET_LOG_BASE fd is not a shared-memory file");
}

// The log is marked from the data path: a frontend that truncates its file then
// loses its port, and the switch lives.  The log's mapping was not guarded, so the
// first mark past the new end was a SIGBUS that ended the process.
TEST_F(MigrationTest, LogFileTruncatedUnderTheDataPathDisconnects) {
  Start(kModernFeatures);
  StartLogging(kModernFeatures);
  ASSERT_EQ(ftruncate(log_fd_.get(), 0), 0);
  PostRxBuffer(2048);
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr);
  ExpectDropped("the dirty log lost its backing under the switch");
}

// A log sized for far more guest than the port may map and its memory table reaches
// (a sparse file: free for the frontend) is refused rather than mapped.
TEST_F(MigrationTest, LogLargerThanThePortsLimitCoversIsRefused) {
  CreatePort(1 << 30);  // Logs of up to 256 KiB, but for the table's top.
  Start(kModernFeatures);
  // The table ends below 16 MiB: a log covering 32 GiB more is allowed, 64 GiB not.
  const uint64_t size = (uint64_t{64} << 30) / (4096 * 8);
  UniqueFd huge(memfd_create("huge-log", MFD_CLOEXEC));
  ASSERT_EQ(ftruncate(huge.get(), static_cast<off_t>(size)), 0);
  LogBase base{size, 0};
  ASSERT_TRUE(frontend_->Send(Request::kSetLogBase, &base, sizeof base, {huge.get()}).ok());
  ExpectDropped("SET_LOG_BASE log of 0x200000 bytes is larger than the");
}

// A log too small for the guest is marked up to its end and no further.
TEST_F(MigrationTest, ShortLogIsNeverWrittenPastItsEnd) {
  Start(kModernFeatures);
  UniqueFd small(memfd_create("small-log", MFD_CLOEXEC));
  ASSERT_EQ(ftruncate(small.get(), 8192), 0);
  auto* whole = static_cast<uint8_t*>(
      mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, small.get(), 0));
  ASSERT_NE(whole, MAP_FAILED);
  LogBase base{1, 4096};  // One byte: pages 0 to 7 only; the guest starts at page 256.
  ASSERT_TRUE(frontend_->Send(Request::kSetLogBase, &base, sizeof base, {small.get()}).ok());
  ASSERT_TRUE(frontend_->Receive(Request::kSetLogBase).ok());
  ASSERT_TRUE(frontend_->SendU64(Request::kSetFeatures, kModernFeatures |
                                 Bit(feature::kProtocolFeatures) | Bit(feature::kLogAll)).ok());
  PostRxBuffer(2048);
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  ASSERT_EQ(vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr), 1u);
  for (int i = 0; i < 8192; ++i) ASSERT_EQ(whole[i], 0) << "byte " << i;
  munmap(whole, 8192);
  EXPECT_EQ(Status().state, VHU_STATE_READY);
}

TEST_F(MigrationTest, SendRarpAnnouncesTheGuestOnTheNextDequeue) {
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  ASSERT_NO_FATAL_FAILURE(StartAfterSendRarp(mac));
  void* pkts[4];
  ASSERT_EQ(vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr), 1u);
  auto* frame = static_cast<std::vector<uint8_t>*>(pkts[0]);
  std::vector<uint8_t> expected(kRarpFrameSize);
  BuildRarpFrame(mac, expected.data());
  EXPECT_EQ(*frame, expected);
  EXPECT_EQ((*frame)[12], 0x80);
  EXPECT_EQ((*frame)[13], 0x35);
  EXPECT_EQ(0, memcmp(frame->data() + 6, mac, 6));
  delete frame;
  EXPECT_EQ(vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr), 0u)
      << "once only";
}

// The RARP was taken before its packet was allocated: a dequeue that found no packet
// to build it in lost the announcement for good.
TEST_F(MigrationTest, SendRarpSurvivesADequeueWithNoPacketForIt) {
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x57};
  ASSERT_NO_FATAL_FAILURE(StartAfterSendRarp(mac));
  void* pkts[4];
  auto no_packet = [](void*, uint32_t, uint8_t**) -> void* { return nullptr; };
  ASSERT_EQ(vhu_dequeue_burst(port_, 0, no_packet, nullptr, pkts, 4, nullptr), 0u);
  ASSERT_EQ(vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr), 1u)
      << "the announcement was lost with the packet that could not be had";
  auto* frame = static_cast<std::vector<uint8_t>*>(pkts[0]);
  EXPECT_EQ(0, memcmp(frame->data() + 6, mac, 6));
  delete frame;
}

}  // namespace
}  // namespace vhostuser::testing
