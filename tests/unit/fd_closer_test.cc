// FdCloser with real blocking closes: lingering TCP sockets, released by the test.
#include "runtime/fd_closer.h"

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "test_frontend.h"

namespace vhostuser::testing {
namespace {

// Whether the write end of the pipe whose read end is 'read_end' was closed within
// 'ms' milliseconds.
bool ClosedWithin(int read_end, int ms) {
  pollfd p{read_end, POLLIN, 0};
  return poll(&p, 1, ms) == 1 && (p.revents & POLLHUP);
}

// Frontends whose fds block in close(): 'owners' ports' frontends, each passing
// 'per_owner' lingering TCP sockets.
class BlockingCloses {
 public:
  BlockingCloses(int owners, int per_owner) {
    for (int o = 0; o < owners; ++o) {
      const uint32_t owner = FdCloser::NewOwner();
      for (int i = 0; i < per_owner; ++i) {
        lingering_.push_back(std::make_unique<LingeringSocket>(60));
        valid_ &= lingering_.back()->valid();
        FdCloser::Close(lingering_.back()->TakeSocket().release(), owner);
      }
    }
  }
  bool valid() const { return valid_; }
  // Lets every close return; all the fds are then closed.
  void Unblock() {
    for (auto& s : lingering_) s->Unblock();
  }

 private:
  std::vector<std::unique_ptr<LingeringSocket>> lingering_;
  bool valid_ = true;
};

// Queues an ordinary fd of a port of its own, a pipe's write end, and checks that it
// is closed within 2 s.
void ExpectNeighboursFdClosedSoon() {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  UniqueFd read_end(p[0]);
  const auto start = std::chrono::steady_clock::now();
  FdCloser::Close(p[1], FdCloser::NewOwner());
  EXPECT_TRUE(ClosedWithin(read_end.get(), 5000))
      << "the neighbour's fd waited behind the lingering ones";
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

// One frontend passes more fds whose close blocks than there were closers (64), another
// then passes an ordinary one.  Every closer was taken by the first frontend's fds
// (sixteen then), and the second's waited behind them for as long as they lingered:
// every port's fds, for as long as one frontend liked.
TEST(FdCloserTest, OneOwnersBlockingClosesDelayNoOtherOwnersFds) {
  BlockingCloses hostile(1, 68);
  ASSERT_TRUE(hostile.valid());
  ExpectNeighboursFdClosedSoon();
  EXPECT_LE(FdCloser::StuckClosersForTest(), FdCloser::kMaxClosingPerOwner)
      << "one owner's closes held more closers than its share";

  // Once they stop blocking, the first frontend's fds are all closed too.
  hostile.Unblock();
  EXPECT_TRUE(FdCloser::WaitIdleForTest(absl::Seconds(20)));
}

// Forty frontends, on forty ports, each pass three fds whose close blocks; another
// port's frontend then passes an ordinary one.  Two closers per port are blocked,
// eighty in all, and the neighbour's fd must still find a closer soon.  With a fixed
// pool of 64 closers, the first 32 ports held all of them and the neighbour's fd
// waited for as long as they lingered.
TEST(FdCloserTest, ManyOwnersBlockingClosesDelayNoOtherOwnersFds) {
  constexpr int kOwners = 40;
  BlockingCloses hostile(kOwners, 3);
  ASSERT_TRUE(hostile.valid());
  ExpectNeighboursFdClosedSoon();
  EXPECT_LE(FdCloser::StuckClosersForTest(), kOwners * FdCloser::kMaxClosingPerOwner)
      << "some port's closes held more closers than its share";

  hostile.Unblock();
  EXPECT_TRUE(FdCloser::WaitIdleForTest(absl::Seconds(30)));
}

}  // namespace
}  // namespace vhostuser::testing
