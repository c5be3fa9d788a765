// Interrupts the guest: writes to the call eventfd the frontend gave for a vring.
//
// We make that eventfd non-blocking when we receive it, but the frontend shares its file
// description: it can make it blocking again with fcntl and fill its counter, and our
// write would then sleep until the guest reads, stopping the PMD thread and every port
// it serves.  No check before the write closes that race.  So every write is watched:
// a watchdog thread of its own, finding one in progress whose writer is asleep (or,
// failing that look, one in progress for longer than it may take), interrupts it with
// a signal; the write fails with EINTR, the ring is failed and the frontend dropped.
// A frontend that releases the write before the watchdog's next look stalls the thread
// for less than kWatchPeriodNs at a time, and is caught at a look with a probability
// of the stall over the period: about one period of stall in all before its port
// pauses (port.cc).  Not the control thread: that one may itself be waiting for the
// vring lock the stuck writer holds.
#ifndef NETDEV_VHOSTUSER_RINGS_CALL_NOTIFIER_H
#define NETDEV_VHOSTUSER_RINGS_CALL_NOTIFIER_H

#include <sys/types.h>

#include <atomic>
#include <cstdint>

#include "runtime/unique_fd.h"

namespace vhostuser {

class CallNotifier {
 public:
  enum class Result {
    kSent,     // The guest is interrupted (or already had an interrupt pending).
    kBlocked,  // The write blocked and the watchdog broke it off: a hostile frontend.
    kFailed,   // Any other error: nothing to do about it but not count the interrupt.
  };

  // A write in progress longer than this is stuck.  An eventfd write that does not
  // block takes microseconds.
  static constexpr int64_t kStuckAfterNs = 20'000'000;
  // A write in progress longer than this has its writer looked at: asleep, it is
  // blocked.
  static constexpr int64_t kSuspectAfterNs = 100'000;

  // How often the watchdog looks at the writes in progress, while any call fd exists.
  static constexpr int64_t kWatchPeriodNs = 10'000'000;

  CallNotifier() = default;
  ~CallNotifier() { Reset(); }
  CallNotifier(const CallNotifier&) = delete;
  CallNotifier& operator=(const CallNotifier&) = delete;

  // ---- Control path, with the vring's lock held. ----
  // Takes the call fd (none: no interrupts) and has the watchdog watch this notifier
  // while it has one; the first one installs the signal handler.
  void Reset(UniqueFd fd = UniqueFd());
  bool valid() const { return fd_.valid(); }

  // ---- Data path, with the vring's lock held. ----
  Result Notify();

  // Starts the watchdog thread now rather than with the first call fd, so that the
  // process's threads are there from the start.
  static void StartWatchdog();

  // Writes broken off by the watchdog since the process started (for tests).
  static uint64_t InterruptsForTest();

 private:
  friend class CallWatchdog;
  // Watchdog thread, without the vring's lock (the stuck writer holds it): interrupts
  // a write stuck for kStuckAfterNs.
  void InterruptIfStuck(int64_t now_ns);

  UniqueFd fd_;
  // While a write is in progress: when it started (CLOCK_MONOTONIC ns) and the thread
  // that makes it; 0 otherwise.
  std::atomic<int64_t> write_started_ns_{0};
  std::atomic<pid_t> writer_tid_{0};
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RINGS_CALL_NOTIFIER_H
