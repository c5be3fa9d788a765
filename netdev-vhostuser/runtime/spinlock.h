// The one lock a virtqueue has.  Data-path threads hold it for one burst; the control
// thread holds it while it changes the queue or the memory the queue points into.  Held
// for microseconds, so spinning beats sleeping, and it never enters the kernel.
#ifndef NETDEV_VHOSTUSER_RUNTIME_SPINLOCK_H
#define NETDEV_VHOSTUSER_RUNTIME_SPINLOCK_H

#include <atomic>

namespace vhostuser {

class Spinlock {
 public:
  void lock() {
    while (locked_.exchange(true, std::memory_order_acquire)) {
      while (locked_.load(std::memory_order_relaxed)) CpuRelax();
    }
  }
  bool try_lock() {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() { locked_.store(false, std::memory_order_release); }

 private:
  static void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }

  std::atomic<bool> locked_{false};
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RUNTIME_SPINLOCK_H
