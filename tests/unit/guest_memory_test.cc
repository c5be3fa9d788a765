#include "memory/guest_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"
#include "runtime/unique_fd.h"

namespace vhostuser {
namespace {

UniqueFd Memfd(size_t size) {
  UniqueFd fd(memfd_create("t", MFD_CLOEXEC));
  EXPECT_EQ(ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

TEST(GuestMemoryTest, TranslatesWholeRangesInsideOneRegion) {
  UniqueFd a = Memfd(0x10000), b = Memfd(0x10000);
  MemoryRegionDesc regions[] = {{0x0, 0x10000, 0x7000000, 0},
                                {0x20000, 0x8000, 0x9000000, 0x8000}};
  int fds[] = {a.get(), b.get()};
  auto memory = GuestMemory::Map(regions, fds);
  ASSERT_TRUE(memory.ok()) << memory.status();
  GuestMemory& m = **memory;
  ASSERT_NE(m.TranslateGuest(0, 0x10000), nullptr);
  EXPECT_EQ(m.TranslateGuest(0x100, 16), m.TranslateGuest(0, 1) + 0x100);
  EXPECT_EQ(m.TranslateGuest(0xfff0, 0x20), nullptr) << "runs off the region's end";
  EXPECT_EQ(m.TranslateGuest(0x10000, 1), nullptr) << "hole between regions";
  EXPECT_EQ(m.TranslateGuest(0x1fff0, 0x20), nullptr) << "hole into region";
  EXPECT_NE(m.TranslateGuest(0x27fff, 1), nullptr);
  EXPECT_EQ(m.TranslateGuest(0x28000, 1), nullptr);
  EXPECT_EQ(m.TranslateGuest(UINT64_MAX - 4, 16), nullptr) << "wraps";
  EXPECT_EQ(m.TranslateGuest(0x10, UINT64_MAX), nullptr);
  // Frontend addresses map to the same bytes.
  EXPECT_EQ(m.TranslateUser(0x9000000 + 8, 8), m.TranslateGuest(0x20000 + 8, 8));
  // mmap_offset is honoured: region 1 starts 0x8000 into its file.
  *m.TranslateGuest(0x20000, 1) = 0xab;
  uint8_t byte = 0;
  ASSERT_EQ(pread(b.get(), &byte, 1, 0x8000), 1);
  EXPECT_EQ(byte, 0xab);
}

// A region far into its file (a sparse memfd costs the frontend nothing at any size)
// maps its own pages only.  Mapping the file from its start took a terabyte of address
// space here, and eight such regions most of what a process has.
TEST(GuestMemoryTest, MapsOnlyTheRegionsOwnPagesOfItsFile) {
  const uint64_t far = uint64_t{1} << 40;
  UniqueFd sparse = Memfd(far + 0x20000);
  // Offsets need not be page-aligned: 0x10 into a page.
  MemoryRegionDesc regions[] = {{0x100000, 0x8000, 0x7000000, far + 0x10}};
  int fds[] = {sparse.get()};
  auto memory = GuestMemory::Map(regions, fds);
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_LE((*memory)->mapped_bytes(), 0x9000u);
  *(*memory)->TranslateGuest(0x100000 + 0x7fff, 1) = 0xcd;
  uint8_t byte = 0;
  ASSERT_EQ(pread(sparse.get(), &byte, 1, static_cast<off_t>(far + 0x10 + 0x7fff)), 1);
  EXPECT_EQ(byte, 0xcd);
}

// How many huge pages of the default size the system could give at most: the pool and
// what may be allocated beyond it.
uint64_t HugePagesTheSystemCouldGive() {
  uint64_t total = 0, overcommit = 0;
  if (FILE* meminfo = fopen("/proc/meminfo", "r")) {
    char line[128];
    while (fgets(line, sizeof line, meminfo) != nullptr) {
      sscanf(line, "HugePages_Total: %" SCNu64, &total);
    }
    fclose(meminfo);
  }
  if (FILE* f = fopen("/proc/sys/vm/nr_overcommit_hugepages", "r")) {
    if (fscanf(f, "%" SCNu64, &overcommit) != 1) overcommit = 0;
    fclose(f);
  }
  return total + overcommit;
}

// A hugetlbfs file larger than the pages the system has, with none of them allocated
// yet, as the frontend's own mapping leaves it with QEMU's reserve=off (or a sparse file
// of a hostile frontend's), is mapped all the same.  A shared hugetlbfs mapping that
// reserves its pages failed here with ENOMEM, and short of that took the system's free
// huge pages for as long as the file lived.
TEST(GuestMemoryTest, HugetlbfsRegionsReserveNoPages) {
  UniqueFd huge(memfd_create("t", MFD_CLOEXEC | MFD_HUGETLB));
  if (!huge.valid()) GTEST_SKIP() << "no hugetlbfs memfd here: " << strerror(errno);
  struct stat st;
  ASSERT_EQ(fstat(huge.get(), &st), 0);
  const uint64_t page = static_cast<uint64_t>(st.st_blksize);
  const uint64_t size = (HugePagesTheSystemCouldGive() + 1) * page;
  ASSERT_EQ(ftruncate(huge.get(), static_cast<off_t>(size)), 0);
  MemoryRegionDesc regions[] = {{0, size, 0x7000000000, 0}};
  int fds[] = {huge.get()};
  auto memory = GuestMemory::Map(regions, fds);
  ASSERT_TRUE(memory.ok()) << memory.status();
  EXPECT_EQ((*memory)->mapped_bytes(), size);
}

// kB of the process's resident memory of one kind ("RssShmem:", "RssAnon:").
long ResidentKb(const char* kind) {
  long kb = -1;
  if (FILE* status = fopen("/proc/self/status", "r")) {
    char line[128];
    while (fgets(line, sizeof line, status) != nullptr) {
      if (strncmp(line, kind, strlen(kind)) == 0) kb = atol(line + strlen(kind));
    }
    fclose(status);
  }
  return kb;
}

long ResidentKb() { return ResidentKb("RssShmem:") + ResidentKb("RssAnon:"); }

// Runs in a child (a death test): maps 1 GiB of a sparse memfd as guest memory under
// mlockall(MCL_CURRENT | MCL_FUTURE), then truncates the file under the mapping and
// touches it (the SIGBUS guard puts memory of its own there); exits 0 if neither
// brought more than 64 MiB in.
[[noreturn]] void MapSparseMemoryUnderMlockall() {
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    fprintf(stderr, "mlockall: %s\n", strerror(errno));
    exit(2);
  }
  constexpr uint64_t kSize = uint64_t{1} << 30;
  constexpr long kMostKb = 64 << 10;
  UniqueFd sparse = Memfd(kSize);
  const long before = ResidentKb();
  MemoryRegionDesc regions[] = {{0, kSize, 0x7000000, 0}};
  int fds[] = {sparse.get()};
  auto memory = GuestMemory::Map(regions, fds);
  if (!memory.ok()) {
    fprintf(stderr, "%s\n", memory.status().ToString().c_str());
    exit(3);
  }
  uint8_t* base = (*memory)->TranslateGuest(0, kSize);
  base[kSize / 2] = 1;
  if (ResidentKb() - before > kMostKb) {
    fprintf(stderr, "mapping took %ld kB in\n", ResidentKb() - before);
    exit(4);
  }
  if (ftruncate(sparse.get(), 0) != 0) exit(5);
  base[4096] = 1;  // SIGBUS, taken by the guard.
  if ((*memory)->LostRegion() != 0) exit(6);
  if (ResidentKb() - before > kMostKb) {
    fprintf(stderr, "the guard's replacement took %ld kB in\n", ResidentKb() - before);
    exit(7);
  }
  exit(0);
}

// ovs-vswitchd as ovs-ctl starts it runs under mlockall(MCL_CURRENT | MCL_FUTURE) (its
// --mlockall, on by default), which fills in and locks every mapping as it is made: a
// guest's memory, mapped readable and writable at once, was allocated and pinned whole
// (up to vhost-max-guest-memory for a frontend's sparse memfd), on the control thread;
// and so was the rest of a region after a frontend truncated its file, by the guard.
// Whether this process may lock all its memory: CAP_IPC_LOCK (bit 14 of CapEff), or no
// RLIMIT_MEMLOCK.
bool MayLockAllMemory() {
  struct rlimit limit;
  if (getrlimit(RLIMIT_MEMLOCK, &limit) == 0 && limit.rlim_cur == RLIM_INFINITY) {
    return true;
  }
  unsigned long long effective = 0;
  if (FILE* status = fopen("/proc/self/status", "r")) {
    char line[128];
    while (fgets(line, sizeof line, status) != nullptr) {
      sscanf(line, "CapEff: %llx", &effective);
    }
    fclose(status);
  }
  return (effective >> 14) & 1;
}

TEST(GuestMemoryDeathTest, MlockallFillsInNoGuestMemory) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "mlockall(MCL_CURRENT) would fill in the sanitizer's shadow memory";
#else
  if (!MayLockAllMemory()) GTEST_SKIP() << "no CAP_IPC_LOCK and a RLIMIT_MEMLOCK";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(MapSparseMemoryUnderMlockall(), ::testing::ExitedWithCode(0), "");
#endif
}

TEST(GuestMemoryTest, RefusesBadTables) {
  UniqueFd a = Memfd(0x10000);
  int fd[] = {a.get()};
  auto map = [&](MemoryRegionDesc r) {
    MemoryRegionDesc regions[] = {r};
    return GuestMemory::Map(regions, fd).status();
  };
  EXPECT_FALSE(map({0, 0, 0, 0}).ok()) << "zero size";
  EXPECT_FALSE(map({UINT64_MAX - 0xfff, 0x2000, 0, 0}).ok()) << "gpa overflow";
  EXPECT_FALSE(map({0, 0x2000, UINT64_MAX - 0xfff, 0}).ok()) << "user address overflow";
  EXPECT_FALSE(map({0, 0x1000, 0, UINT64_MAX - 0xfff}).ok()) << "offset overflow";
  EXPECT_FALSE(map({0, 0x10000, 0, 0x1000}).ok()) << "beyond the file";
  EXPECT_FALSE(map({0, 0x20000, 0, 0}).ok()) << "beyond the file";
  EXPECT_TRUE(map({0, 0x10000, 0, 0}).ok());

  UniqueFd b = Memfd(0x10000);
  int fds[] = {a.get(), b.get()};
  MemoryRegionDesc overlapping[] = {{0, 0x10000, 0x100000, 0}, {0x8000, 0x1000, 0x900000, 0}};
  EXPECT_FALSE(GuestMemory::Map(overlapping, fds).ok());
  MemoryRegionDesc overlapping_user[] = {{0, 0x10000, 0x100000, 0},
                                         {0x80000, 0x1000, 0x108000, 0}};
  EXPECT_FALSE(GuestMemory::Map(overlapping_user, fds).ok());
  EXPECT_FALSE(GuestMemory::Map(overlapping, fd).ok()) << "fewer fds than regions";

  UniqueFd pipe_fds[2];
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pipe_fds[0].reset(p[0]);
  pipe_fds[1].reset(p[1]);
  int not_memory[] = {p[0]};
  MemoryRegionDesc one[] = {{0, 0x1000, 0, 0}};
  EXPECT_FALSE(GuestMemory::Map(one, not_memory).ok()) << "a pipe is not memory";
}

}  // namespace
}  // namespace vhostuser
