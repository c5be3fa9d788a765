#include "memory/sigbus_guard.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>

namespace vhostuser {
namespace {

// One guarded mapping.  The handler reads slots without a lock, so every field is
// atomic; 'start' is written last on registration and first on removal, and a slot
// whose start is 0 is free.
struct Slot {
  std::atomic<uintptr_t> start{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<uintptr_t> page_mask{0};
  std::atomic<bool> faulted{false};
};

Slot slots[SigbusGuard::kMaxMappings];
// Slots [0, slots_used) may be in use: the handler looks no further.
std::atomic<int> slots_used{0};
std::atomic<int> wake_fd{-1};

std::mutex registry_mu;  // Serialises Register and Unregister.
struct sigaction previous_action;

void ForwardToPrevious(int signo, siginfo_t* info, void* context) {
  if (previous_action.sa_flags & SA_SIGINFO) {
    previous_action.sa_sigaction(signo, info, context);
  } else if (previous_action.sa_handler != SIG_DFL && previous_action.sa_handler != SIG_IGN) {
    previous_action.sa_handler(signo);
  } else {
    // Default action: die as if we had never been here.  SIGBUS is blocked while this
    // handler runs, so the raised one is delivered, under SIG_DFL, when it returns; a
    // fault that is re-executed instead ends the same way.
    signal(SIGBUS, SIG_DFL);
    raise(SIGBUS);
  }
}

// Async-signal-safe: atomics, mmap and write (plain system calls) only.
void OnSigbus(int signo, siginfo_t* info, void* context) {
  const int saved_errno = errno;
  if (info->si_code == BUS_ADRERR) {
    const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
    const int n = slots_used.load(std::memory_order_acquire);
    for (int i = 0; i < n; ++i) {
      Slot& slot = slots[i];
      const uintptr_t start = slot.start.load(std::memory_order_acquire);
      const uintptr_t end = slot.end.load(std::memory_order_acquire);
      if (start == 0 || addr < start || addr >= end) continue;
      // Re-registered while we read it: start and end may belong to two mappings.
      if (slot.start.load(std::memory_order_acquire) != start) continue;
      // A file that shrank below this page has lost every page after it too: cover
      // them all at once rather than take one signal per page.
      // Not before the mapping's start: a tmpfs file with transparent huge pages says
      // 2 MiB pages, but its mapping need not start on a 2 MiB boundary.
      uintptr_t from = addr & ~slot.page_mask.load(std::memory_order_relaxed);
      if (from < start) from = start;
      // The replacement is made elsewhere, then moved over the lost pages in one
      // step: other threads (PMD threads on other queues of this guest, the dirty
      // log's marks) may touch them meanwhile, and must never find them inaccessible.
      // It is shared (zero-filled shmem), made inaccessible and then given access, as
      // FileMapping maps guest memory: under mlockall(MCL_FUTURE) an accessible
      // mapping is filled in as it is made, and a private one again when mprotect()
      // makes it writable, which would allocate the whole rest of the region, up to
      // vhost-max-guest-memory, for a frontend that truncated its file.  mremap()
      // fills in only what a mapping grows by.
      const size_t length = end - from;
      void* p = mmap(nullptr, length, PROT_NONE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) break;
      if (mprotect(p, length, PROT_READ | PROT_WRITE) != 0 ||
          mremap(p, length, length, MREMAP_MAYMOVE | MREMAP_FIXED,
                 reinterpret_cast<void*>(from)) == MAP_FAILED) {
        munmap(p, length);
        break;
      }
      slot.faulted.store(true, std::memory_order_release);
      const int fd = wake_fd.load(std::memory_order_relaxed);
      if (fd >= 0) {
        const uint64_t one = 1;
        [[maybe_unused]] ssize_t written = write(fd, &one, sizeof one);
      }
      errno = saved_errno;
      return;
    }
  }
  ForwardToPrevious(signo, info, context);
  errno = saved_errno;
}

void InstallHandler() {
  struct sigaction action = {};
  action.sa_sigaction = OnSigbus;
  action.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, &previous_action);
}

}  // namespace

int SigbusGuard::Register(void* start, size_t length, size_t page_size) {
  static std::once_flag installed;
  std::call_once(installed, InstallHandler);
  std::lock_guard<std::mutex> lock(registry_mu);
  const int used = slots_used.load(std::memory_order_relaxed);
  int handle = -1;
  for (int i = 0; i < used && handle < 0; ++i) {
    if (slots[i].start.load(std::memory_order_relaxed) == 0) handle = i;
  }
  if (handle < 0) {
    if (used == kMaxMappings) return -1;
    handle = used;
  }
  Slot& slot = slots[handle];
  slot.end.store(reinterpret_cast<uintptr_t>(start) + length, std::memory_order_relaxed);
  slot.page_mask.store(page_size - 1, std::memory_order_relaxed);
  slot.faulted.store(false, std::memory_order_relaxed);
  slot.start.store(reinterpret_cast<uintptr_t>(start), std::memory_order_release);
  if (handle == used) slots_used.store(used + 1, std::memory_order_release);
  return handle;
}

void SigbusGuard::Unregister(int handle) {
  if (handle < 0 || handle >= kMaxMappings) return;
  std::lock_guard<std::mutex> lock(registry_mu);
  slots[handle].start.store(0, std::memory_order_release);
}

bool SigbusGuard::Faulted(int handle) {
  return handle >= 0 && handle < kMaxMappings &&
         slots[handle].faulted.load(std::memory_order_acquire);
}

void SigbusGuard::SetWakeFd(int fd) { wake_fd.store(fd, std::memory_order_relaxed); }

}  // namespace vhostuser
