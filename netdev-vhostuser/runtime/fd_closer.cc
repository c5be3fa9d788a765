#include "runtime/fd_closer.h"

#include <pthread.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace vhostuser {
namespace {

class Closers {
 public:
  // Monotonic: a step of the wall clock must not make a close look slow or stuck.
  using Clock = std::chrono::steady_clock;

  static Closers& Get() {
    // Never destroyed: closer threads may still be in close() when the process exits.
    static Closers* closers = new Closers;
    return *closers;
  }

  void Close(int fd, uint32_t owner) {
    std::lock_guard<std::mutex> lock(mu_);
    if (count_ + parked_count_ == ring_.size()) Grow();
    ring_[(head_ + count_) & (ring_.size() - 1)] = Queued{fd, owner};
    ++count_;
    ++unclosed_[owner];
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
    return count_ + parked_count_ + closing_;
  }

  size_t BlockedFor(uint32_t owner) {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = unclosed_.find(owner);
    if (it == unclosed_.end()) return 0;
    const size_t n = it->second;
    if (n > FdCloser::kMaxUnclosedPerOwner) return n;
    const auto now = Clock::now();
    for (const Closer* c = closers_; c != nullptr; c = c->next) {
      if (c->closing && c->owner == owner && now - c->since >= kSlowClose) {
        return n;
      }
    }
    return 0;
  }

  bool WaitIdle(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                             [this] { return IdleLocked(); });
  }

  int Stuck() {
    std::lock_guard<std::mutex> lock(mu_);
    return stuck_;
  }

 private:
  struct Queued {
    int fd;
    uint32_t owner;
  };

  // A closer's view of itself, shared with the watcher that declares it stuck.
  // Each lives on its closer's stack and is linked into closers_, so that starting
  // and ending closers allocates nothing.
  struct Closer {
    bool closing = false;
    uint32_t owner = 0;  // Whose fd it is closing.
    Clock::time_point since;
    bool stuck = false;
    Closer* next = nullptr;
  };

  bool IdleLocked() const { return count_ == 0 && parked_count_ == 0 && closing_ == 0; }

  // With mu_ held, on a queueing thread: doubles the ring (keeping the order) and the
  // parking lot with it, so that the closers never allocate: an fd moves between the
  // two, and together they hold at most the ring's size.
  void Grow() {
    const size_t size = ring_.empty() ? 256 : 2 * ring_.size();
    std::vector<Queued> bigger(size);
    for (size_t i = 0; i < count_; ++i) bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
    ring_.swap(bigger);
    head_ = 0;
    parked_.resize(size);
  }

  // With mu_ held: how many closers are closing fds of 'owner' now.
  int ClosingFor(uint32_t owner) const {
    int n = 0;
    for (const Closer* c = closers_; c != nullptr; c = c->next) {
      n += c->closing && c->owner == owner;
    }
    return n;
  }

  // With mu_ held: takes the oldest queued fd whose owner has fewer than
  // kMaxClosingPerOwner closes under way, parking those of owners that have that many
  // (each fd is looked at once until its owner's close returns).
  bool TakeNextLocked(Queued* taken) {
    while (count_ > 0) {
      const Queued next = ring_[head_];
      head_ = (head_ + 1) & (ring_.size() - 1);
      --count_;
      if (ClosingFor(next.owner) < FdCloser::kMaxClosingPerOwner) {
        *taken = next;
        return true;
      }
      parked_[parked_count_++] = next;
    }
    return false;
  }

  // With mu_ held: 'owner' has a close fewer under way, so its parked fds go back to
  // the end of the queue.
  void UnparkLocked(uint32_t owner) {
    size_t kept = 0;
    for (size_t i = 0; i < parked_count_; ++i) {
      if (parked_[i].owner == owner) {
        ring_[(head_ + count_) & (ring_.size() - 1)] = parked_[i];
        ++count_;
      } else {
        parked_[kept++] = parked_[i];
      }
    }
    parked_count_ = kept;
  }

  // With mu_ held: a new closer if every running one is stuck (or none runs yet).
  void MaybeStartCloserLocked() {
    if (!watcher_started_) watcher_started_ = StartThread(&Closers::WatchThread);
    if (running_ - stuck_ > 0) return;
    StartCloserLocked();
  }

  // With mu_ held: starts one closer, unless kMaxClosers run or the system has no
  // thread to give (then the watcher tries again; the fds stay queued meanwhile).
  bool StartCloserLocked() {
    if (running_ >= FdCloser::kMaxClosers) return false;
    if (!StartThread(&Closers::CloserThread)) {
      cv_watch_.notify_one();
      return false;
    }
    ++running_;
    return true;
  }

  // A detached thread with a small stack: closers only call close(), and thousands of
  // them may be blocked at once under an attack on as many ports.
  // (glibc carves static TLS out of the stack: should ours not fit one that small,
  // pthread_create() says EINVAL and the default size is used.)
  bool StartThread(void* (*body)(void*)) {
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0) return false;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, kStackSize);
    pthread_t thread;
    int error = pthread_create(&thread, &attr, body, this);
    if (error == EINVAL) {
      pthread_attr_destroy(&attr);
      pthread_attr_init(&attr);
      pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
      error = pthread_create(&thread, &attr, body, this);
    }
    pthread_attr_destroy(&attr);
    return error == 0;
  }

  static void* CloserThread(void* closers) {
    pthread_setname_np(pthread_self(), "vhu_closer");
    static_cast<Closers*>(closers)->Run();
    return nullptr;
  }

  static void* WatchThread(void* closers) {
    pthread_setname_np(pthread_self(), "vhu_closer_wd");
    static_cast<Closers*>(closers)->Watch();
    return nullptr;
  }

  // The closer and watcher threads neither allocate nor free: a thread's first malloc
  // or free attaches it to a malloc arena of its own, up to 64 MiB of address space
  // for the life of the process.  Only the threads that queue fds touch the heap.
  void Run() {
    Closer self;
    std::unique_lock<std::mutex> lock(mu_);
    self.next = closers_;
    closers_ = &self;
    for (;;) {
      Queued taken;
      bool got;
      bool timed_out = false;
      ++idle_;
      // One idle closer is enough, and it sleeps until there is work: the others,
      // replacements of closers that were stuck, go once a second has passed with
      // nothing to take.  A closer looks for work once more before it goes: the
      // notification of an fd may have come to it just as its second ran out, and
      // the closer asleep for good would never hear of that fd.
      while (!(got = TakeNextLocked(&taken)) && !(timed_out && idle_ > 1)) {
        if (idle_ == 1) {
          cv_.wait(lock);
          timed_out = false;
        } else {
          timed_out =
              cv_.wait_for(lock, std::chrono::seconds(1)) == std::cv_status::timeout;
        }
      }
      --idle_;
      if (!got) {
        --running_;
        Closer** link = &closers_;
        while (*link != &self) link = &(*link)->next;
        *link = self.next;
        return;
      }
      self.closing = true;
      self.owner = taken.owner;
      self.since = Clock::now();
      ++closing_;
      cv_watch_.notify_one();
      lock.unlock();
      ::close(taken.fd);
      lock.lock();
      --closing_;
      self.closing = false;
      // Erasing frees nothing (the table keeps its slots): no allocation here.
      if (auto it = unclosed_.find(taken.owner); --it->second == 0) unclosed_.erase(it);
      if (parked_count_ > 0) {
        UnparkLocked(taken.owner);
        if (count_ > 0) cv_.notify_one();
      }
      if (IdleLocked()) idle_cv_.notify_all();
      if (self.stuck) {
        // Replaced while we were blocked; we stay as an idle closer, which goes after
        // a second if another is idle too.
        --stuck_;
        self.stuck = false;
      }
    }
  }

  // Declares closers stuck after kStuckAfter in one close() and, once every running
  // closer is stuck, starts as many new ones as there are fds waiting (up to
  // kMaxStartsPerTick a tick), so that an fd queued behind many blocking ones (many
  // ports' frontends each sending some) waits a few ticks, not kStuckAfter for each
  // one ahead of it.
  void Watch() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      // Idle unless a close() is under way that may yet be declared stuck, or fds wait
      // for a closer that could not be started.
      cv_watch_.wait(lock, [this] {
        return closing_ > static_cast<size_t>(stuck_) || NeedsCloserLocked();
      });
      cv_watch_.wait_for(lock, std::chrono::milliseconds(100));
      const auto now = Clock::now();
      for (Closer* c = closers_; c != nullptr; c = c->next) {
        if (c->closing && !c->stuck && now - c->since >= kStuckAfter) {
          c->stuck = true;
          ++stuck_;
        }
      }
      if (!NeedsCloserLocked()) continue;
      // Fds whose owner already has its closers at work are parked by the first closer
      // to look at them, and an idle closer goes after a second: starting one per
      // queued fd costs at most that.  The threads are counted first and created
      // without the lock, which every Close() takes.
      const size_t starts =
          std::min({count_, kMaxStartsPerTick,
                    static_cast<size_t>(FdCloser::kMaxClosers - running_)});
      running_ += static_cast<int>(starts);
      lock.unlock();
      size_t started = 0;
      while (started < starts && StartThread(&Closers::CloserThread)) ++started;
      lock.lock();
      running_ -= static_cast<int>(starts - started);
    }
  }

  // With mu_ held: fds are queued and no closer can take them, every running one being
  // stuck in a close() (or none started).
  bool NeedsCloserLocked() const {
    return count_ > 0 && running_ == stuck_ && running_ < FdCloser::kMaxClosers;
  }

  static inline const std::chrono::nanoseconds kSlowClose =
      absl::ToChronoNanoseconds(FdCloser::kSlowClose);
  static inline const std::chrono::nanoseconds kStuckAfter =
      absl::ToChronoNanoseconds(FdCloser::kStuckAfter);
  static constexpr size_t kStackSize = 64 * 1024;
  static constexpr size_t kMaxStartsPerTick = 64;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable cv_watch_;
  std::condition_variable idle_cv_;  // Nothing queued or being closed (tests).
  // The fds to close, a ring of a power-of-two size grown by Close().
  std::vector<Queued> ring_;
  size_t head_ = 0;
  size_t count_ = 0;
  // Fds whose owner had kMaxClosingPerOwner closes under way when they came up, in
  // parked_[0, parked_count_), back in the ring when one of those returns.
  std::vector<Queued> parked_;
  size_t parked_count_ = 0;
  // Each owner's fds queued, parked or being closed; owners with none are not in it.
  absl::flat_hash_map<uint32_t, size_t> unclosed_;
  Closer* closers_ = nullptr;  // The running ones.
  int running_ = 0;
  int idle_ = 0;
  int stuck_ = 0;
  size_t closing_ = 0;
  bool watcher_started_ = false;
};

}  // namespace

void FdCloser::Start() { Closers::Get().Start(); }

uint32_t FdCloser::NewOwner() {
  static std::atomic<uint32_t> last{0};
  uint32_t owner;
  do {
    owner = last.fetch_add(1, std::memory_order_relaxed) + 1;
  } while (owner == 0);
  return owner;
}

void FdCloser::Close(int fd, uint32_t owner) {
  if (fd >= 0) Closers::Get().Close(fd, owner);
}

size_t FdCloser::BlockedFor(uint32_t owner) { return Closers::Get().BlockedFor(owner); }

size_t FdCloser::PendingForTest() { return Closers::Get().Pending(); }

int FdCloser::StuckClosersForTest() { return Closers::Get().Stuck(); }

bool FdCloser::WaitIdleForTest(absl::Duration timeout) {
  return Closers::Get().WaitIdle(timeout);
}

}  // namespace vhostuser
