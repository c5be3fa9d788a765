#include "runtime/fd_closer.h"

#include <pthread.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vhostuser {
namespace {

class Closers {
 public:
  static Closers& Get() {
    // Never destroyed: closer threads may still be in close() when the process exits.
    static Closers* closers = new Closers;
    return *closers;
  }

  void Close(int fd) {
    std::lock_guard<std::mutex> lock(mu_);
    if (count_ == ring_.size()) Grow();
    ring_[(head_ + count_) & (ring_.size() - 1)] = fd;
    ++count_;
    if (idle_ > 0) {
      cv_.notify_one();
    } else {
      MaybeStartCloserLocked();
    }
  }

  void Start() {
    std::lock_guard<std::mutex> lock(mu_);
    MaybeStartCloserLocked();
  }

  size_t Pending() {
    std::lock_guard<std::mutex> lock(mu_);
    return count_ + closing_;
  }

  bool WaitIdle(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                             [this] { return count_ == 0 && closing_ == 0; });
  }

  int Stuck() {
    std::lock_guard<std::mutex> lock(mu_);
    return stuck_;
  }

 private:
  // A closer's view of itself, shared with the watcher that declares it stuck.
  struct Closer {
    bool closing = false;
    absl::Time since;
    bool stuck = false;
  };

  // With mu_ held, on a queueing thread: doubles the ring, keeping the order.
  void Grow() {
    std::vector<int> bigger(ring_.empty() ? 256 : 2 * ring_.size());
    for (size_t i = 0; i < count_; ++i) bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
    ring_.swap(bigger);
    head_ = 0;
  }

  // With mu_ held: a new closer if every running one is stuck (or none runs yet).
  void MaybeStartCloserLocked() {
    if (running_ - stuck_ > 0 || running_ >= kMaxThreads) return;
    ++running_;
    std::thread([this] {
      pthread_setname_np(pthread_self(), "vhu_closer");
      Run();
    }).detach();
    if (!watcher_started_) {
      watcher_started_ = true;
      std::thread([this] {
        pthread_setname_np(pthread_self(), "vhu_closer_wd");
        Watch();
      }).detach();
    }
  }

  // The closer and watcher threads neither allocate nor free: a thread's first malloc
  // or free attaches it to a malloc arena of its own, up to 64 MiB of address space
  // for the life of the process.  Only the threads that queue fds touch the heap.
  void Run() {
    Closer self;
    std::unique_lock<std::mutex> lock(mu_);
    *std::find(closers_.begin(), closers_.end(), nullptr) = &self;
    for (;;) {
      ++idle_;
      cv_.wait(lock, [this] { return count_ > 0; });
      --idle_;
      const int fd = ring_[head_];
      head_ = (head_ + 1) & (ring_.size() - 1);
      --count_;
      self.closing = true;
      self.since = absl::Now();
      ++closing_;
      cv_watch_.notify_one();
      lock.unlock();
      ::close(fd);
      lock.lock();
      --closing_;
      self.closing = false;
      if (count_ == 0 && closing_ == 0) idle_cv_.notify_all();
      if (self.stuck) {
        // Replaced while we were blocked: the others have the queue now.
        --stuck_;
        --running_;
        *std::find(closers_.begin(), closers_.end(), &self) = nullptr;
        return;
      }
    }
  }

  // Declares closers stuck after kStuckAfter in one close() and starts replacements.
  void Watch() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      // Idle unless some close() is under way.
      cv_watch_.wait(lock, [this] { return closing_ > 0; });
      cv_watch_.wait_for(lock, std::chrono::milliseconds(100));
      const absl::Time now = absl::Now();
      for (Closer* c : closers_) {
        if (c != nullptr && c->closing && !c->stuck &&
            now - c->since >= FdCloser::kStuckAfter) {
          c->stuck = true;
          ++stuck_;
        }
      }
      if (count_ > 0 && idle_ == 0) MaybeStartCloserLocked();
    }
  }

  static constexpr int kMaxThreads = FdCloser::kMaxClosers;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable cv_watch_;
  std::condition_variable idle_cv_;  // Nothing queued or being closed (tests).
  // The fds to close, a ring of a power-of-two size grown by Close().
  std::vector<int> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
  std::array<Closer*, kMaxThreads> closers_{};  // Running ones; nullptr: free slot.
  int running_ = 0;
  int idle_ = 0;
  int stuck_ = 0;
  size_t closing_ = 0;
  bool watcher_started_ = false;
};

}  // namespace

void FdCloser::Start() { Closers::Get().Start(); }

void FdCloser::Close(int fd) {
  if (fd >= 0) Closers::Get().Close(fd);
}

size_t FdCloser::PendingForTest() { return Closers::Get().Pending(); }

int FdCloser::StuckClosersForTest() { return Closers::Get().Stuck(); }

bool FdCloser::WaitIdleForTest(absl::Duration timeout) {
  return Closers::Get().WaitIdle(timeout);
}

}  // namespace vhostuser
