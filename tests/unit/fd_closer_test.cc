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

// One frontend passes more fds whose close blocks than there were closers, another
// then passes an ordinary one.  Every closer was taken by the first frontend's fds
// (sixteen then), and the second's waited behind them for as long as they lingered:
// every port's fds, for as long as one frontend liked.
TEST(FdCloserTest, OneOwnersBlockingClosesDelayNoOtherOwnersFds) {
  const uint32_t hostile = FdCloser::NewOwner(), neighbour = FdCloser::NewOwner();
  std::vector<std::unique_ptr<LingeringSocket>> lingering;
  for (int i = 0; i < FdCloser::kMaxClosers + 4; ++i) {
    lingering.push_back(std::make_unique<LingeringSocket>(60));
    ASSERT_TRUE(lingering.back()->valid());
    FdCloser::Close(lingering.back()->TakeSocket().release(), hostile);
  }
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  UniqueFd read_end(p[0]);
  const auto start = std::chrono::steady_clock::now();
  FdCloser::Close(p[1], neighbour);
  EXPECT_TRUE(ClosedWithin(read_end.get(), 3000))
      << "the neighbour's fd waited behind the lingering ones";
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(2));
  EXPECT_LE(FdCloser::StuckClosersForTest(), FdCloser::kMaxClosingPerOwner)
      << "one owner's closes held more closers than its share";

  // Once they stop blocking, the first frontend's fds are all closed too.
  for (auto& s : lingering) s->Unblock();
  EXPECT_TRUE(FdCloser::WaitIdleForTest(absl::Seconds(20)));
}

}  // namespace
}  // namespace vhostuser::testing
