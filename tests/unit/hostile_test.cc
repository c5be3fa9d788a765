// Hostile frontends against a real port, in process (so also under ASan+UBSan and TSan
// in tests/sanitizers): regressions for what fuzzing and the replay suite found, and
// guests that race the switch.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <arpa/inet.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "control/control_loop.h"
#include "port_fixture.h"
#include "protocol/protocol.h"
#include "runtime/fd_closer.h"
#include "test_frontend.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::testing {
namespace {

using ::testing::HasSubstr;

class HostileTest : public PortFixture {
 protected:
  static constexpr uint64_t kAlmostFull = 0xfffffffffffffffeull;  // An eventfd's most.

  // Starts the rings with a call eventfd for the receive ring, then makes it blocking
  // again, as a hostile frontend may (it shares the file description with us).
  UniqueFd StartWithBlockingCallFd() {
    UniqueFd call(eventfd(0, EFD_CLOEXEC));
    Start(kModernFeatures, call.get());
    const int flags = fcntl(call.get(), F_GETFL);
    EXPECT_EQ(fcntl(call.get(), F_SETFL, flags & ~O_NONBLOCK), 0);
    return call;
  }

  // Fills the guest's call eventfd 'call', posts a receive buffer and enqueues a frame
  // into it from another thread, which interrupts the guest.  Returns whether the burst
  // returned within 3 s; if not, reads the eventfd to let it go.
  bool EnqueueReturnsWithCallFdFull(int call) {
    if (write(call, &kAlmostFull, sizeof kAlmostFull) != 8) {
      ADD_FAILURE() << "cannot fill the call eventfd";
      return false;
    }
    PostRxBuffer(2048);
    auto frame = TestFrame(64, 1);
    vhu_tx_packet pkt{frame.data(), 64};
    std::atomic<bool> done{false};
    std::thread burst([&] {
      vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr);
      done = true;
    });
    const bool returned = WaitFor([&] { return done.load(); }, 3000);
    if (!returned) {
      uint64_t v;
      EXPECT_EQ(read(call, &v, sizeof v), 8);  // Unblock the writer.
    }
    burst.join();
    return returned;
  }
};

absl::Status SendVringState(Frontend& fe, Request r, uint32_t index, uint32_t num) {
  VringState s{index, num};
  return fe.Send(r, &s, sizeof s);
}

// Found by fuzz_virtqueue: the ring addresses were checked for alignment in the
// frontend's address space only.  A region whose mmap_offset is not a multiple of 8
// makes aligned frontend addresses misaligned in our mapping: undefined behaviour, and
// on arm64 a bus error on the atomic index loads.
TEST_F(HostileTest, RingMisalignedInOurMappingIsRefused) {
  Connect();
  MemoryRegionDesc r = ram_.Region();
  r.mmap_offset = 4;
  r.memory_size -= 4096;
  struct {
    MemoryTableHeader header;
    MemoryRegionDesc region;
  } table{{1, 0}, r};
  ASSERT_TRUE(frontend_->Send(Request::kSetMemTable, &table, sizeof table, {ram_.fd()}).ok());
  ASSERT_TRUE(SendVringState(*frontend_, Request::kSetVringNum, 1, 256).ok());
  VringAddress a{1, 0, r.userspace_addr + 0x10000, r.userspace_addr + 0x20000,
                 r.userspace_addr + 0x18000, 0};
  ASSERT_TRUE(frontend_->Send(Request::kSetVringAddr, &a, sizeof a).ok());
  UniqueFd kick(eventfd(0, EFD_CLOEXEC));
  ASSERT_TRUE(frontend_->SendU64(Request::kSetVringKick, 1, {kick.get()}).ok());
  ExpectDropped("misaligned");
}

// A call fd is written from the data path.  A frontend that hands us something a write
// can block on (a pipe it never reads) would stop the switch's PMD thread for good.
TEST_F(HostileTest, CallFdThatIsNotAnEventfdIsRefused) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  Connect();
  ASSERT_TRUE(frontend_->SendU64(Request::kSetVringCall, 0, {w.get()}).ok());
  ExpectDropped("eventfd");
}

// The frontend names its memfds, and the name came back in the refusal of one passed
// as a call fd: newlines and escapes forged lines in the switch's log, and bytes that
// are not UTF-8 made ovsdb-server refuse the bridge's status transaction, which carries
// every interface's status.  What reaches the port's status and the log is printable
// ASCII.
TEST_F(HostileTest, FdNamesReachStatusAndLogAsPrintableText) {
  UniqueFd named(memfd_create("\xff\xfe\nvhostuser|ERR|forged line\x1b[2J", MFD_CLOEXEC));
  ASSERT_TRUE(named.valid());
  Connect();
  ASSERT_TRUE(frontend_->SendU64(Request::kSetVringCall, 0, {named.get()}).ok());
  ExpectDropped("is not an eventfd");
  const std::string error = Status().last_error;
  for (const char c : error) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << (static_cast<int>(c) & 0xff)
                                        << " in the status: " << error;
  }
  EXPECT_THAT(error, HasSubstr("\\xff\\xfe\\x0avhostuser|ERR|forged line\\x1b[2J"));
}

// The same with a real eventfd: a blocking one whose counter the frontend saturated.
// The interrupt must not block the data path; at most it is lost.
TEST_F(HostileTest, SaturatedBlockingCallEventfdDoesNotBlockTheDataPath) {
  UniqueFd call(eventfd(0, EFD_CLOEXEC));  // Blocking, as a hostile frontend makes it.
  Start(kModernFeatures, call.get());
  EXPECT_TRUE(EnqueueReturnsWithCallFdFull(call.get()))
      << "vhu_enqueue_burst blocked on the guest's call eventfd";
}

// The frontend shares the call eventfd's file description with us: after we made it
// non-blocking it can clear O_NONBLOCK again and fill the counter.  The interrupt write
// then sleeps, with the PMD thread, until the guest reads.  The watchdog must break the
// write off, and the frontend lose its port.
TEST_F(HostileTest, CallFdMadeBlockingAgainIsBrokenOffAndDisconnects) {
  UniqueFd call(eventfd(0, EFD_CLOEXEC));
  Start(kModernFeatures, call.get());
  const int flags = fcntl(call.get(), F_GETFL);
  ASSERT_TRUE(flags & O_NONBLOCK) << "the switch did not make the call fd non-blocking";
  ASSERT_EQ(fcntl(call.get(), F_SETFL, flags & ~O_NONBLOCK), 0);
  ASSERT_TRUE(EnqueueReturnsWithCallFdFull(call.get()))
      << "vhu_enqueue_burst stayed blocked on the guest's call eventfd";
  ExpectDropped("call eventfd blocked our interrupt");

  // It stalled the thread until the watchdog's next look, and could come back and do
  // it again every second: the port takes no frontend for a second first.
  EXPECT_TRUE(WaitFor([&] { return Status().accept_pauses == 1u; }));
  const auto start = std::chrono::steady_clock::now();
  auto next = Frontend::Connect(path_);
  ASSERT_TRUE(next.ok());
  EXPECT_TRUE((*next)->Sync().ok());
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(700))
      << "a frontend was taken right after one stalled a data-path thread";
}

// The same frontend, releasing each blocked interrupt write after 15 ms, before the
// watchdog's 20 ms: the write then went through, and the frontend kept its port while
// it stalled the thread for 15 ms at every interrupt, as often as it liked.  A writer
// asleep in the write is now broken off at the watchdog's next look.
TEST_F(HostileTest, CallFdReleasedJustInTimeStillDisconnects) {
  UniqueFd call = StartWithBlockingCallFd();
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  int stalls = 0;
  for (; stalls < 20 && Status().state != VHU_STATE_DISCONNECTED; ++stalls) {
    ASSERT_EQ(write(call.get(), &kAlmostFull, sizeof kAlmostFull), 8);
    PostRxBuffer(2048);
    std::thread burst([&] { vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr); });
    std::this_thread::sleep_for(std::chrono::milliseconds(15));
    uint64_t v;
    ASSERT_EQ(read(call.get(), &v, sizeof v), 8);  // Lets the write through, if blocked.
    burst.join();
    // Whatever the write left: 1 if it went through after the read.
    pollfd readable{call.get(), POLLIN, 0};
    if (poll(&readable, 1, 0) == 1) ASSERT_EQ(read(call.get(), &v, sizeof v), 8);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ExpectDropped("call eventfd blocked our interrupt");
  // The watchdog looks every 10 ms: a 15 ms hold, less the burst thread's start, is
  // seen at the first or second stall on a quiet machine.
  EXPECT_LE(stalls, 10) << "the frontend stalled the thread " << stalls << " times";
}

// Found by fuzz_virtqueue (a timeout): an indirect descriptor whose table is the ring's
// own descriptor table.  "Inside an indirect table" was told by comparing the table
// with the ring's, so the walk took the ring for a first-level table again, reset its
// hop count and went round for ever: one descriptor hung the PMD thread.
TEST_F(HostileTest, IndirectTableThatIsTheRingItselfIsRefused) {
  Start(kModernFeatures);
  VringDesc* desc = tx_.desc();
  // The descriptor table's guest-physical address, from where DriverRing put it.
  const uint64_t table_gpa =
      GuestRam::kGuestBase + (reinterpret_cast<uint8_t*>(desc) - ram_.host(GuestRam::kGuestBase));
  desc[0] = VringDesc{table_gpa, 16 * 4, kDescFlagIndirect, 0};
  tx_.Publish(0);
  std::atomic<bool> done{false};
  std::thread burst([&] {
    void* pkts[4];
    const uint32_t n = vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr);
    for (uint32_t i = 0; i < n; ++i) delete static_cast<std::vector<uint8_t>*>(pkts[i]);
    done = true;
  });
  const bool returned = WaitFor([&] { return done.load(); }, 2000);
  if (!returned) __atomic_store_n(&desc[0].flags, uint16_t{0}, __ATOMIC_RELAXED);  // Let it out.
  burst.join();
  ASSERT_TRUE(returned) << "the burst went round the descriptor table for ever";
  ExpectDropped("indirect descriptor inside an indirect table");
}

// A frontend that truncates its memory file after SET_MEM_TABLE, then hands us buffers
// in the part that is gone.  The switch's first access to them was SIGBUS, which ended
// the whole process (ovs-vswitchd and every other port).  Now the access reads zeros
// (sigbus_guard.h) and this frontend loses its port.
TEST_F(HostileTest, MemoryFileShrunkUnderTheSwitchDisconnects) {
  Start(kModernFeatures);
  const uint64_t keep = 1 << 20;  // The rings live below.
  ram_.Alloc(2 << 20);
  const uint64_t tx_far = ram_.Alloc(4096), rx_far = ram_.Alloc(4096);
  ASSERT_EQ(ftruncate(ram_.fd(), static_cast<off_t>(keep)), 0);
  // From here on this test writes only to the rings: it maps the same file.
  tx_.Publish(tx_.AddChain({{tx_far, kHeader + 64}}, false));
  rx_.Publish(rx_.AddChain({{rx_far, 2048}}, true));
  void* pkts[4];
  const uint32_t n = vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr);
  for (uint32_t i = 0; i < n; ++i) delete static_cast<std::vector<uint8_t>*>(pkts[i]);
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr);
  ExpectDropped("guest memory region 0 lost its backing under the switch");
}

// A request we do not implement, sent with NEED_REPLY after REPLY_ACK was negotiated:
// the ack must say it failed.  It said success, so a frontend asking whether, say,
// SET_LOG_BASE or SET_INFLIGHT_FD took effect was told it had.
TEST_F(HostileTest, UnsupportedRequestIsAckedAsFailed) {
  Connect();
  ASSERT_TRUE(frontend_->SendU64(Request::kSetProtocolFeatures,
                                 Bit(protocol_feature::kReplyAck)).ok());
  uint8_t inflight[24] = {};
  ASSERT_TRUE(frontend_->Send(Request::kSetInflightFd, inflight, sizeof inflight,
                              {ram_.fd()}, kFlagNeedReply).ok());
  auto ack = frontend_->Receive(Request::kSetInflightFd);
  ASSERT_TRUE(ack.ok()) << ack.status();
  ASSERT_EQ(ack->size(), 8u);
  uint64_t value;
  memcpy(&value, ack->data(), 8);
  EXPECT_NE(value, 0u) << "acked as done";
  EXPECT_TRUE(frontend_->Sync().ok()) << "refused, not dropped";
}

// ---- Isolation: what one frontend does costs no other port (issue 11). ----

// A socket whose last close() blocks for 'linger_s' seconds, for the switch to close.
UniqueFd LingeringSocketFd(int linger_s) {
  static std::vector<std::unique_ptr<LingeringSocket>> kept;  // Their listeners stay.
  kept.push_back(std::make_unique<LingeringSocket>(linger_s));
  return kept.back()->TakeSocket();
}

// A frontend that passes fds whose close() blocks, in a message that takes none, then
// hangs up.  Closing them on the control thread stalled every port for seconds (and
// the main thread, which waits for the control thread to remove a port).
TEST_F(HostileTest, FdsWhoseCloseBlocksCostNoOtherPort) {
  std::vector<UniqueFd> lingering;
  for (int i = 0; i < 4; ++i) {
    lingering.push_back(LingeringSocketFd(3));
    ASSERT_TRUE(lingering.back().valid());
  }
  // A neighbour on its own port, answering as long as the control thread does.
  const std::string neighbour_path = dir_ + "/neighbour";
  vhu_port_options options{};
  options.socket_path = neighbour_path.c_str();
  options.mode = VHU_MODE_SERVER;
  vhu_port* neighbour = vhu_port_create(&options, nullptr, 0);
  ASSERT_NE(neighbour, nullptr);
  auto good = Frontend::Connect(neighbour_path);
  ASSERT_TRUE(good.ok());

  Connect();
  std::vector<int> fds;
  for (const UniqueFd& fd : lingering) fds.push_back(fd.get());
  ASSERT_TRUE(frontend_->SendU64(Request::kGetFeatures, 0, fds).ok());
  lingering.clear();  // Ours was the last reference but for the switch's.
  ExpectDropped("carries 4 fds");

  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE((*good)->Sync().ok());
  vhu_port_destroy(port_);
  port_ = nullptr;
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::milliseconds(500))
      << "the neighbour's request and the port's removal waited for the close()s";
  good->reset();
  vhu_port_destroy(neighbour);
}

// The same neighbour, as a frontend makes the switch drop fds it never received: more
// fds in one message than the control buffer had room for (the kernel closed the rest
// inside recvmsg(), on the control thread), or fds still queued on the connection
// when the switch closes it.  Both closes ran on the control thread and stalled every
// port for as long as the fds lingered.
class DroppedFdsTest : public HostileTest {
 protected:
  void SetUp() override {
    HostileTest::SetUp();
    neighbour_path_ = dir_ + "/neighbour";
    vhu_port_options options{};
    options.socket_path = neighbour_path_.c_str();
    options.mode = VHU_MODE_SERVER;
    neighbour_ = vhu_port_create(&options, nullptr, 0);
    ASSERT_NE(neighbour_, nullptr);
    auto good = Frontend::Connect(neighbour_path_);
    ASSERT_TRUE(good.ok());
    good_ = *std::move(good);
  }
  void TearDown() override {
    good_.reset();
    if (neighbour_ != nullptr) vhu_port_destroy(neighbour_);
    HostileTest::TearDown();
  }

  // Sends 'n' fds whose close() blocks for 3 s, with 'before' sent first, all queued
  // before the port reads any; then closes ours, so that the switch holds the last
  // references.
  void SendLingeringFds(int n, const MessageHeader* before = nullptr) {
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
      lingering_.push_back(LingeringSocketFd(3));
      ASSERT_TRUE(lingering_.back().valid());
      fds.push_back(lingering_.back().get());
    }
    auto hold = ControlLoop::Get().HoldForTest();
    if (before != nullptr) {
      ASSERT_EQ(send(frontend_->fd(), before, sizeof *before, MSG_NOSIGNAL),
                static_cast<ssize_t>(sizeof *before));
    }
    ASSERT_TRUE(frontend_->SendU64(Request::kGetFeatures, 0, fds).ok());
    lingering_.clear();
  }

  // How long the neighbour waits for an answer while the switch drops the fds: asked
  // 100 ms after the frontend sent them, when the control thread has long taken them
  // up (and, if it closes them itself, is still in close()).
  std::chrono::steady_clock::duration NeighbourWait() {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(good_->Sync().ok());
    return std::chrono::steady_clock::now() - start;
  }

  std::string neighbour_path_;
  vhu_port* neighbour_ = nullptr;
  std::unique_ptr<Frontend> good_;
  std::vector<UniqueFd> lingering_;
};

TEST_F(DroppedFdsTest, MoreFdsThanAnyRequestTakesCostNoOtherPort) {
  Connect();
  SendLingeringFds(10);
  EXPECT_LT(NeighbourWait(), std::chrono::milliseconds(1500))
      << "the fds the control buffer had no room for were closed on the control thread";
  ExpectDropped("more fds than any request takes");
}

TEST_F(DroppedFdsTest, FdsQueuedOnAClosedConnectionCostNoOtherPort) {
  Connect();
  // The port reads the first message, which loses the frontend its connection with
  // the second (and its fds) unread.
  const MessageHeader bad{static_cast<uint32_t>(Request::kGetFeatures), 0x2, 0};
  SendLingeringFds(4, &bad);
  EXPECT_LT(NeighbourWait(), std::chrono::milliseconds(1500))
      << "the fds queued on the connection were closed with it on the control thread";
  ExpectDropped("message version 2 is not 1");
}

// A frontend that keeps sending fds whose close blocks, connection after connection:
// its port held more and more of the process's fds, for as long as the frontend
// liked.  Past 64 still to close, the port takes no new frontend until they are
// closed; its neighbour is served throughout.
TEST_F(DroppedFdsTest, PortWithManyFdsStillClosingTakesNoFrontendUntilTheyAre) {
  std::vector<std::unique_ptr<LingeringSocket>> sockets;
  for (int connection = 0; connection < 5; ++connection) {
    auto fe = Frontend::Connect(path_);
    ASSERT_TRUE(fe.ok());
    std::vector<int> fds;
    for (int i = 0; i < 14; ++i) {
      sockets.push_back(std::make_unique<LingeringSocket>(60));
      ASSERT_TRUE(sockets.back()->valid());
      fds.push_back(sockets.back()->fd());
    }
    {
      // Ours closed before the switch reads the message: its copies are the last.
      auto hold = ControlLoop::Get().HoldForTest();
      ASSERT_TRUE((*fe)->SendU64(Request::kGetFeatures, 0, fds).ok());
      for (size_t i = sockets.size() - fds.size(); i < sockets.size(); ++i) {
        sockets[i]->TakeSocket().reset();
      }
    }
    EXPECT_TRUE((*fe)->WaitClosed(5000));
  }
  // Refused once two closers are stuck in its closes (the second starts after the
  // first has spent FdCloser::kStuckAfter in one): a frontend is hung up at once.
  EXPECT_TRUE(WaitFor(
      [&] {
        auto fe = Frontend::Connect(path_);
        return fe.ok() && (*fe)->WaitClosed(300);
      },
      3000))
      << "still taking frontends with 70 fds waiting on closes that block";
  EXPECT_LT(NeighbourWait(), std::chrono::milliseconds(1500));

  for (auto& s : sockets) s->Unblock();
  ASSERT_TRUE(FdCloser::WaitIdleForTest(absl::Seconds(20)));
  auto again = Frontend::Connect(path_);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE((*again)->Sync().ok()) << "still refused once every fd was closed";
}

// A frontend whose first two fds' closes block, and which then floods fds in requests
// that keep its connection (ones we do not implement, each with 8 fds, ignored).  The
// port counted its fds as held up only once a second closer was stuck in its closes
// too, FdCloser::kStuckAfter after the first: in that window the frontend could have
// the process hold as many fds as it sent, and once the fd table was full no port
// could accept a frontend or receive an fd.  Now its fds are counted as they are
// queued: it loses its connection having had us hold a few hundred at most.
TEST_F(DroppedFdsTest, FdFloodBehindABlockingCloseHoldsFewFds) {
  Connect();
  const size_t pending_before = FdCloser::PendingForTest();
  uint8_t inflight[24] = {};
  LingeringSocket first(60), second(60);
  {
    auto hold = ControlLoop::Get().HoldForTest();  // The switch's copies are the last.
    ASSERT_TRUE(frontend_->Send(Request::kSetInflightFd, inflight, sizeof inflight,
                                {first.fd(), second.fd()}).ok());
    first.TakeSocket().reset();
    second.TakeSocket().reset();
  }
  UniqueFd event(eventfd(0, EFD_CLOEXEC));
  const std::vector<int> eight(8, event.get());  // Eight fds on the other side.
  int sent = 0;
  while (sent < 20000 &&
         frontend_->Send(Request::kSetInflightFd, inflight, sizeof inflight, eight).ok()) {
    ++sent;
  }
  ExpectDropped("faster than they close");
  // The fds it had us take wait behind the blocking closes: all still to close.
  const size_t held = FdCloser::PendingForTest() - std::min(pending_before,
                                                            FdCloser::PendingForTest());
  EXPECT_LE(held, FdCloser::kMaxUnclosedPerOwner + 8 + 2 + 1)
      << "after " << sent << " requests with 8 fds each";
  EXPECT_LT(NeighbourWait(), std::chrono::milliseconds(1500));
  first.Unblock();
  second.Unblock();
  EXPECT_TRUE(FdCloser::WaitIdleForTest(absl::Seconds(20)));
}

// The CPU time the library's control thread has used, in clock ticks.
long ControlThreadTicks() {
  DIR* tasks = opendir("/proc/self/task");
  if (tasks == nullptr) return -1;
  long ticks = -1;
  while (dirent* task = readdir(tasks)) {
    const std::string dir = std::string("/proc/self/task/") + task->d_name;
    std::ifstream comm(dir + "/comm");
    std::string name;
    if (!std::getline(comm, name) || name != "vhu_control") continue;
    std::ifstream stat(dir + "/stat");
    std::string line;
    std::getline(stat, line);
    // Fields 14 and 15, utime and stime, counted from the one after the ')'.
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14) utime = std::stol(field);
      if (i == 15) stime = std::stol(field);
    }
    ticks = utime + stime;
  }
  closedir(tasks);
  return ticks;
}

// A guest's memory whose QEMU went first (killed, or its guest powered off) is freed by
// our munmap(), ours being the file's last reference: for a guest of many GiB, seconds
// of work, which fell on the control thread (a disconnect) or on ovs-vswitchd's main
// thread (a port deleted) while every other port's requests waited.  The closer
// threads do it now: the mapping keeps an fd of the file, closed there after the unmap.
TEST_F(DroppedFdsTest, FreeingAGuestsMemoryCostsTheControlThreadNothing) {
  constexpr uint64_t kSize = uint64_t{1} << 30;
  UniqueFd memory(memfd_create("big-guest", MFD_CLOEXEC));
  ASSERT_TRUE(memory.valid());
  ASSERT_EQ(fallocate(memory.get(), 0, 0, kSize), 0) << "every page allocated";
  Connect();
  struct {
    MemoryTableHeader header;
    MemoryRegionDesc region;
  } table{{1, 0}, {GuestRam::kGuestBase, kSize, uint64_t{1} << 40, 0}};
  ASSERT_TRUE(
      frontend_->Send(Request::kSetMemTable, &table, sizeof table, {memory.get()}).ok());
  ASSERT_TRUE(frontend_->Sync().ok());
  memory.reset();  // QEMU gone: the switch's mapping holds the file's last reference.
  ASSERT_TRUE(FdCloser::WaitIdleForTest());  // The region's fd too.
  const long before = ControlThreadTicks();
  frontend_.reset();
  ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_DISCONNECTED; }));
  ASSERT_TRUE(FdCloser::WaitIdleForTest(absl::Seconds(20)));  // The pages freed.
  EXPECT_LE(ControlThreadTicks() - before, 3)
      << "the control thread freed the guest's memory (clock ticks of its CPU time)";
  EXPECT_LT(NeighbourWait(), std::chrono::milliseconds(1500));
}

// A port deleted while its frontend was connected left the connection in the control
// loop's epoll set, to be closed by FdCloser.  When its close waited behind others of
// the port's that block, any byte the frontend then sent made every epoll_wait()
// return at once, for a port that no longer existed: the control thread spun at 100%
// for as long as the frontend's sockets lingered.
TEST_F(DroppedFdsTest, DeletedPortsConnectionCostsTheControlThreadNothing) {
  Connect();
  // Two requests the switch does not implement keep the connection, and drop the fd
  // each carries: two sockets whose close lingers, which hold this port's two closers.
  {
    auto hold = ControlLoop::Get().HoldForTest();
    for (int i = 0; i < 2; ++i) {
      lingering_.push_back(LingeringSocketFd(5));
      ASSERT_TRUE(lingering_.back().valid());
      ASSERT_TRUE(
          frontend_->SendU64(static_cast<Request>(99), 0, {lingering_.back().get()}).ok());
    }
    lingering_.clear();  // The switch's copies, in flight, are the last.
  }
  ASSERT_TRUE(frontend_->Sync().ok());
  ASSERT_TRUE(WaitFor([] { return FdCloser::StuckClosersForTest() >= 2; }, 3000));

  vhu_port_destroy(port_);
  port_ = nullptr;
  const char byte = 0;
  [[maybe_unused]] ssize_t sent = send(frontend_->fd(), &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  const long before = ControlThreadTicks();
  ASSERT_GE(before, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  const long used = ControlThreadTicks() - before;
  EXPECT_LT(used, sysconf(_SC_CLK_TCK) / 10)
      << "the control thread spun on the deleted port's connection";
  EXPECT_LT(NeighbourWait(), std::chrono::milliseconds(1500));
  EXPECT_TRUE(FdCloser::WaitIdleForTest(absl::Seconds(20)));
}

// A guest RX ring of empty writable descriptors chained through the whole ring, every
// avail entry on that chain, mergeable buffers on: each packet walked every buffer, each
// buffer the whole chain, and dropped nothing (256 x 256 reads a packet, for ever).
// A receive buffer must hold at least the virtio-net header.
TEST_F(HostileTest, EmptyReceiveChainsFailTheRing) {
  Start(kModernFeatures | Bit(feature::kNetMrgRxbuf));
  VringDesc* desc = rx_.desc();
  const uint64_t gpa = ram_.Alloc(64);
  for (uint16_t i = 0; i < 256; ++i) {
    desc[i] = VringDesc{gpa, 0, static_cast<uint16_t>(kDescFlagWrite | kDescFlagNext),
                        static_cast<uint16_t>(i + 1)};
  }
  desc[255].flags = kDescFlagWrite;
  for (int i = 0; i < 256; ++i) rx_.Publish(0);
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkts[32];
  for (auto& p : pkts) p = {frame.data(), 64};
  EXPECT_EQ(vhu_enqueue_burst(port_, 0, pkts, 32, nullptr), 0u);
  ExpectDropped("receive buffer smaller than the virtio-net header");
}

// Chains that are legal but long (255 empty descriptors, then the buffer) on every
// avail entry: one call reads at most 2 x 256 (or twice the ring, if smaller) + 32 per
// packet descriptors, so a burst ends early rather than cost the PMD 32 x 256 reads;
// the next call goes on.
TEST_F(HostileTest, LongChainsEndABurstEarly) {
  Start(kModernFeatures);
  VringDesc* desc = rx_.desc();
  const uint64_t gpa = ram_.Alloc(2048);
  for (uint16_t i = 0; i < 255; ++i) {
    desc[i] = VringDesc{gpa, 0, static_cast<uint16_t>(kDescFlagWrite | kDescFlagNext),
                        static_cast<uint16_t>(i + 1)};
  }
  desc[255] = VringDesc{gpa, 2048, kDescFlagWrite, 0};
  for (int i = 0; i < 64; ++i) rx_.Publish(0);
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkts[32];
  for (auto& p : pkts) p = {frame.data(), 64};
  const uint32_t budget = 2 * 256 + 32 * 32;
  const uint32_t first = vhu_enqueue_burst(port_, 0, pkts, 32, nullptr);
  EXPECT_GE(first, 1u);
  EXPECT_LE(first, budget / 256) << "one call read more descriptors than its budget";
  const uint32_t second = vhu_enqueue_burst(port_, 0, pkts, 32, nullptr);
  EXPECT_GE(second, 1u) << "the next call made no progress";
  EXPECT_EQ(Status().state, VHU_STATE_READY) << "a legal ring lost its port";
}

// A transmit chain of one-byte buffers, each on a page of its own, is legal up to 256
// descriptors, as in DPDK's vhost library.  Chains of 1024 were taken, and a ring of
// 32768 let one call read 65536 descriptors and touch 32768 pages (a page fault each
// where the frontend's memory file has holes), call after call, while the other
// ports of the PMD thread waited.
TEST_F(HostileTest, ChainsHaveAtMost256Descriptors) {
  GuestRam ram(8 << 20);
  DriverRing rx(ram, 1024), tx(ram, 1024);
  auto fe = Frontend::Connect(path_);
  ASSERT_TRUE(fe.ok());
  ASSERT_TRUE((*fe)->SetUp(ram, kModernFeatures, {{0, &rx}, {1, &tx}}).ok());
  ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  auto post_chain = [&](uint32_t descriptors) {
    const uint64_t pages = ram.Alloc(descriptors * 4096);
    std::vector<DriverRing::Buffer> buffers{{pages, kHeader}};
    for (uint32_t i = 1; i < descriptors; ++i) buffers.push_back({pages + i * 4096, 1});
    tx.Publish(tx.AddChain(buffers, false));
  };
  void* pkts[4];
  post_chain(256);
  ASSERT_EQ(vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr), 1u);
  EXPECT_EQ(static_cast<std::vector<uint8_t>*>(pkts[0])->size(), 255u);
  delete static_cast<std::vector<uint8_t>*>(pkts[0]);
  post_chain(257);
  EXPECT_EQ(vhu_dequeue_burst(port_, 0, AllocVector, nullptr, pkts, 4, nullptr), 0u);
  EXPECT_TRUE((*fe)->WaitClosed(5000));
  EXPECT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_DISCONNECTED; }));
  EXPECT_THAT(Status().last_error, ::testing::HasSubstr("more than 256 descriptors"));
}

// The PMD thread stuck in an interrupt write holds the vring's lock; the control thread,
// handling SET_MEM_TABLE, waits for that lock.  With the watchdog on the control thread
// neither ever moved again.
TEST_F(HostileTest, CallWatchdogRescuesThePmdWhileTheControlThreadWaits) {
  UniqueFd call = StartWithBlockingCallFd();
  ASSERT_EQ(write(call.get(), &kAlmostFull, sizeof kAlmostFull), 8);
  PostRxBuffer(2048);
  auto frame = TestFrame(64, 1);
  vhu_tx_packet pkt{frame.data(), 64};
  std::atomic<bool> done{false};
  std::thread burst([&] {
    vhu_enqueue_burst(port_, 0, &pkt, 1, nullptr);
    done = true;
  });
  MemoryRegionDesc region = ram_.Region();
  struct {
    MemoryTableHeader header;
    MemoryRegionDesc region;
  } table{{1, 0}, region};
  ASSERT_TRUE(
      frontend_->Send(Request::kSetMemTable, &table, sizeof table, {ram_.fd()}).ok());
  const bool returned = WaitFor([&] { return done.load(); }, 3000);
  if (!returned) {
    uint64_t v;
    EXPECT_EQ(read(call.get(), &v, sizeof v), 8);
  }
  burst.join();
  EXPECT_TRUE(returned) << "the interrupt write stayed blocked";
  ExpectDropped("call eventfd blocked our interrupt");
}

// Kick fds must be eventfds, guest memory a memfd or a tmpfs or hugetlbfs file: a file
// on another filesystem (FUSE answers faults when it likes) would stall the PMD.
TEST_F(HostileTest, KickFdThatIsNotAnEventfdIsRefused) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  Connect();
  ASSERT_TRUE(frontend_->SendU64(Request::kSetVringKick, 0, {r.get()}).ok());
  ExpectDropped("SET_VRING_KICK fd is not an eventfd");
}

TEST_F(HostileTest, MemoryOnADiskFileIsRefused) {
  char path[] = "/var/tmp/vhu-memory-XXXXXX";
  UniqueFd file(mkstemp(path));
  ASSERT_TRUE(file.valid());
  unlink(path);
  struct statfs fs;
  ASSERT_EQ(fstatfs(file.get(), &fs), 0);
  if (fs.f_type == TMPFS_MAGIC) GTEST_SKIP() << "/var/tmp is tmpfs here";
  ASSERT_EQ(ftruncate(file.get(), 8 << 20), 0);
  Connect();
  SendMemoryTable(file.get());
  ExpectDropped("is not a memfd or a file on tmpfs or hugetlbfs");
}

// A file on a disk file system under a name that only looks like a memfd's.  The
// check took any fd whose /proc link began with "/memfd:" on its name, and a frontend
// in namespaces of its own can mount what it likes there, FUSE included.
TEST_F(HostileTest, DiskFileNamedLikeAMemfdIsRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create /memfd:...";
  const std::string dir = "/memfd:vhu-test-" + std::to_string(getpid());
  if (mkdir(dir.c_str(), 0700) != 0) GTEST_SKIP() << "cannot create " << dir;
  const std::string path = dir + "/ram";
  UniqueFd file(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  unlink(path.c_str());
  rmdir(dir.c_str());
  ASSERT_TRUE(file.valid());
  struct statfs fs;
  ASSERT_EQ(fstatfs(file.get(), &fs), 0);
  if (fs.f_type == TMPFS_MAGIC) GTEST_SKIP() << "/ is tmpfs here";
  ASSERT_EQ(ftruncate(file.get(), 8 << 20), 0);
  Connect();
  SendMemoryTable(file.get());
  ExpectDropped("is not a memfd or a file on tmpfs or hugetlbfs (/memfd:vhu-test-");
}

// An O_PATH fd names a file without opening it; nothing maps through it.
TEST_F(HostileTest, MemoryFdOpenedWithOPathIsRefused) {
  char path[] = "/dev/shm/vhu-opath-XXXXXX";
  UniqueFd file(mkstemp(path));
  ASSERT_TRUE(file.valid());
  ASSERT_EQ(ftruncate(file.get(), 8 << 20), 0);
  UniqueFd opath(open(path, O_PATH | O_CLOEXEC));
  unlink(path);
  ASSERT_TRUE(opath.valid());
  Connect();
  SendMemoryTable(opath.get());
  ExpectDropped("is not a memfd or a file on tmpfs or hugetlbfs");
}

TEST_F(HostileTest, MemoryAboveThePortsLimitIsRefused) {
  CreatePort(4 << 20);  // Half of ram_.
  Connect();
  SendMemoryTable(ram_.fd());
  ExpectDropped("guest memory limit of 4 MiB");
}

// A foreign listener on the port's path that never accepts, its backlog full: the probe
// for a stale socket blocked in connect() (14 s on the main thread in our daemon).
TEST_F(HostileTest, SquattedSocketPathIsRefusedAtOnce) {
  const std::string path = dir_ + "/squatted";
  UniqueFd squatter(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(squatter.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(squatter.get(), 0), 0);
  std::vector<UniqueFd> queued;
  for (int i = 0; i < 8; ++i) {  // Fill the backlog.
    UniqueFd c(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (connect(c.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) break;
    queued.push_back(std::move(c));
  }
  vhu_port_options options{};
  options.socket_path = path.c_str();
  options.mode = VHU_MODE_SERVER;
  char error[256] = "";
  const auto start = std::chrono::steady_clock::now();
  vhu_port* port = vhu_port_create(&options, error, sizeof error);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(200));
  EXPECT_EQ(port, nullptr);
  EXPECT_THAT(error, HasSubstr("in use by another process"));
  if (port) vhu_port_destroy(port);
  unlink(path.c_str());
}

// Server sockets get the mode and group asked for, whatever the process's umask.
TEST_F(HostileTest, ServerSocketModeIgnoresTheUmask) {
  const std::string path = dir_ + "/moded";
  vhu_port_options options{};
  options.socket_path = path.c_str();
  options.mode = VHU_MODE_SERVER;
  options.socket_mode = 0640;
  options.socket_gid = static_cast<int>(getgid());
  const mode_t old_umask = umask(0077);
  vhu_port* port = vhu_port_create(&options, nullptr, 0);
  umask(old_umask);
  ASSERT_NE(port, nullptr);
  struct stat st;
  ASSERT_EQ(lstat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_gid, getgid());
  vhu_port_destroy(port);
}

}  // namespace
}  // namespace vhostuser::testing
