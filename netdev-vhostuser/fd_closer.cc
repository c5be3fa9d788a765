#include "fd_closer.h"

#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/time/clock.h"

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
    queue_.push_back(fd);
    if (idle_ > 0) {
      cv_.notify_one();
    } else {
      MaybeStartCloserLocked();
    }
  }

  size_t Pending() {
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size() + closing_;
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

  // With mu_ held: a new closer if every running one is stuck (or none runs yet).
  void MaybeStartCloserLocked() {
    if (running_ - stuck_ > 0 || running_ >= kMaxThreads) return;
    ++running_;
    std::thread([this] { Run(); }).detach();
    if (!watcher_started_) {
      watcher_started_ = true;
      std::thread([this] { Watch(); }).detach();
    }
  }

  void Run() {
    Closer self;
    std::unique_lock<std::mutex> lock(mu_);
    closers_.push_back(&self);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [this] { return !queue_.empty(); });
      --idle_;
      const int fd = queue_.front();
      queue_.pop_front();
      self.closing = true;
      self.since = absl::Now();
      ++closing_;
      cv_watch_.notify_one();
      lock.unlock();
      ::close(fd);
      lock.lock();
      --closing_;
      self.closing = false;
      if (self.stuck) {
        // Replaced while we were blocked: the others have the queue now.
        --stuck_;
        --running_;
        std::erase(closers_, &self);
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
        if (c->closing && !c->stuck && now - c->since >= FdCloser::kStuckAfter) {
          c->stuck = true;
          ++stuck_;
        }
      }
      if (!queue_.empty() && idle_ == 0) MaybeStartCloserLocked();
    }
  }

  static constexpr int kMaxThreads = FdCloser::kMaxClosers;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable cv_watch_;
  std::deque<int> queue_;
  std::deque<Closer*> closers_;
  int running_ = 0;
  int idle_ = 0;
  int stuck_ = 0;
  size_t closing_ = 0;
  bool watcher_started_ = false;
};

}  // namespace

void FdCloser::Close(int fd) {
  if (fd >= 0) Closers::Get().Close(fd);
}

size_t FdCloser::PendingForTest() { return Closers::Get().Pending(); }

int FdCloser::StuckClosersForTest() { return Closers::Get().Stuck(); }

bool FdCloser::WaitIdleForTest(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (PendingForTest() > 0) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

}  // namespace vhostuser
