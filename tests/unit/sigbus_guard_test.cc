// The SIGBUS guard: a fault in a guest mapping whose file shrank is absorbed and
// reported; any other SIGBUS still ends the process.
#include "memory/sigbus_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "memory/guest_memory.h"
#include "runtime/unique_fd.h"

namespace vhostuser {
namespace {

constexpr size_t kSize = 64 << 10;
constexpr size_t kPage = 4096;

UniqueFd Memfd(size_t size) {
  UniqueFd fd(memfd_create("sigbus-guard-test", MFD_CLOEXEC));
  EXPECT_EQ(ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

// Reads through a volatile pointer so that the compiler keeps the access.
uint8_t Touch(const uint8_t* p) { return *static_cast<const volatile uint8_t*>(p); }

// Death-test predicate: the child died, by SIGBUS or (under ASan, whose SIGBUS report
// the guard passes the fault on to) by exiting with an error.
bool Died(int status) {
  return WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

TEST(SigbusGuardTest, AccessPastAShrunkFileReadsZerosAndIsReported) {
  UniqueFd fd = Memfd(kSize);
  MemoryRegionDesc region{0, kSize, 0x40000000, 0};
  int fds[] = {fd.get()};
  auto memory = GuestMemory::Map({&region, 1}, fds);
  ASSERT_TRUE(memory.ok()) << memory.status();
  uint8_t* base = (*memory)->TranslateGuest(0, kSize);
  base[kPage] = 0x5a;
  base[kSize - 1] = 0xa5;
  EXPECT_EQ((*memory)->LostRegion(), -1);

  ASSERT_EQ(ftruncate(fd.get(), static_cast<off_t>(2 * kPage)), 0);
  EXPECT_EQ(Touch(base + kPage), 0x5a) << "below the new end, the file is still there";
  EXPECT_EQ((*memory)->LostRegion(), -1);
  EXPECT_EQ(Touch(base + kSize - 1), 0) << "past the new end: zeros instead of SIGBUS";
  EXPECT_EQ((*memory)->LostRegion(), 0);
  base[3 * kPage] = 1;  // Writes land in the private pages put there.
  EXPECT_EQ(Touch(base + 3 * kPage), 1);
  EXPECT_EQ(Touch(base + kPage), 0x5a) << "the pages before the fault are untouched";
}

TEST(SigbusGuardTest, ShrunkMappingMarksOnlyItsOwnRegion) {
  UniqueFd a = Memfd(kSize), b = Memfd(kSize);
  MemoryRegionDesc regions[] = {{0, kSize, 0x40000000, 0}, {kSize, kSize, 0x50000000, 0}};
  int fds[] = {a.get(), b.get()};
  auto memory = GuestMemory::Map(regions, fds);
  ASSERT_TRUE(memory.ok()) << memory.status();
  ASSERT_EQ(ftruncate(b.get(), 0), 0);
  EXPECT_EQ(Touch((*memory)->TranslateGuest(kSize + 100, 1)), 0);
  EXPECT_EQ((*memory)->LostRegion(), 1);
}

// Several threads touching a region whose file was truncated fault together, and each
// thread's handler replaces the lost pages while the others touch them.  They must
// never find the pages inaccessible: a guard that put an inaccessible mapping there
// before giving it access left a window in which such a touch was a SIGSEGV, which
// nothing handles.  Several PMD threads serve one guest's queues, and the dirty log is
// marked from all of them.
TEST(SigbusGuardTest, ThreadsFaultingTogetherNeverFindThePagesInaccessible) {
  constexpr int kRounds = 200;
  constexpr int kThreads = 3;
  for (int round = 0; round < kRounds; ++round) {
    UniqueFd fd = Memfd(kSize);
    MemoryRegionDesc region{0, kSize, 0x40000000, 0};
    int fds[] = {fd.get()};
    auto memory = GuestMemory::Map({&region, 1}, fds);
    ASSERT_TRUE(memory.ok()) << memory.status();
    const uint8_t* base = (*memory)->TranslateGuest(0, kSize);
    std::atomic<bool> go{false}, stop{false};
    std::atomic<int> swept{0};  // Threads that have touched every page once.
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        while (!go.load(std::memory_order_acquire)) {
        }
        // Each thread starts on a page of its own, so their faults cover different
        // ranges; then all sweep the region until told to stop.
        constexpr size_t kPages = kSize / kPage;
        for (size_t i = t; !stop.load(std::memory_order_relaxed); ++i) {
          Touch(base + (i % kPages) * kPage);
          if (i == t + kPages) swept.fetch_add(1);
        }
      });
    }
    ASSERT_EQ(ftruncate(fd.get(), 0), 0);
    go.store(true, std::memory_order_release);
    // Until every thread has been over the region (a slow machine, or a sanitizer,
    // may not have run them at all yet), then a little more.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (swept.load() < kThreads && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::yield();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    stop.store(true);
    for (std::thread& thread : threads) thread.join();
    EXPECT_EQ((*memory)->LostRegion(), 0);
  }
}

// In a death test's child: maps 'fd' (kSize bytes, readable, shared), or exits 0 so
// that the test fails.
void* MapShared(int fd) {
  void* p = mmap(nullptr, kSize, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) _exit(0);
  return p;
}

// A guarded mapping exists, so the guard's handler is installed, but the shrunk file
// touched is nobody's guest memory.
void TouchShrunkFileThatIsNotGuestMemory() {
  UniqueFd guest = Memfd(kSize);
  MemoryRegionDesc region{0, kSize, 0x40000000, 0};
  int fds[] = {guest.get()};
  auto memory = GuestMemory::Map({&region, 1}, fds);
  if (!memory.ok()) _exit(0);
  UniqueFd other = Memfd(kSize);
  void* p = MapShared(other.get());
  if (ftruncate(other.get(), 0) != 0) _exit(0);
  Touch(static_cast<uint8_t*>(p) + 100);
  _exit(0);
}

void TouchShrunkFileAfterUnregistering() {
  UniqueFd fd = Memfd(kSize);
  void* p = MapShared(fd.get());
  SigbusGuard::Unregister(SigbusGuard::Register(p, kSize, kPage));
  if (ftruncate(fd.get(), 0) != 0) _exit(0);
  Touch(static_cast<uint8_t*>(p) + 100);
  _exit(0);
}

void SendSigbusToSelfWhileGuarding() {
  UniqueFd fd = Memfd(kSize);
  void* p = MapShared(fd.get());
  SigbusGuard::Register(p, kSize, kPage);
  kill(getpid(), SIGBUS);
  _exit(0);
}

TEST(SigbusGuardDeathTest, SigbusOutsideGuestMemoryStillEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(TouchShrunkFileThatIsNotGuestMemory(), Died, "");
}

TEST(SigbusGuardDeathTest, UnmappedGuestMemoryIsNoLongerGuarded) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(TouchShrunkFileAfterUnregistering(), Died, "");
}

TEST(SigbusGuardDeathTest, SignalSentByAnotherProcessIsNotSwallowed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(SendSigbusToSelfWhileGuarding(), Died, "");
}

}  // namespace
}  // namespace vhostuser
