// How long one cache line takes to travel between two CPUs, in nanoseconds.
//
// On this VM the hypervisor moves the two virtual CPUs between placements in which this
// figure is 30-70 ns or 200-260 ns (rarely about 140 or 300), every few seconds to
// minutes, and with it every ring-to-ring benchmark: a vhost-user loopback is made of
// such transfers.  The benchmarks run this between their slices, with every contender
// stopped, to label each slice with the placement it ran in (tests/bench/placement.py).
//
// Two threads, one pinned to each CPU, take turns writing one shared counter: each
// waits for the other's value, then writes the next, so every step is one transfer of
// the line and a round trip two.  Prints the median of --trials runs of --round-trips
// round trips each (the lower middle one for an even count):
//   one_way_ns=<ns> cpus=<a>,<b>
// Exits with 1 if a thread cannot be pinned to its CPU, 2 on bad arguments.

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

struct alignas(64) SharedLine {
  std::atomic<uint64_t> turn{0};
};

bool PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

// Spins until 'line' holds 'value'.
void WaitFor(const SharedLine& line, uint64_t value) {
  while (line.turn.load(std::memory_order_acquire) != value) {
  }
}

// One trial, the calling thread already on the first CPU: 'round_trips' round trips
// of the line; ns per one-way transfer, or a negative value if the peer could not be
// pinned to 'cpu_b'.  The clock starts once the peer is on its CPU and waiting, so
// that starting a thread is not timed.
double OneTrial(int cpu_b, uint64_t round_trips) {
  // 1: the peer is pinned and waiting; 2: it could not be pinned and has returned.
  std::atomic<int> peer_state{0};
  SharedLine line;
  std::thread peer([&] {
    if (!PinTo(cpu_b)) {
      peer_state.store(2, std::memory_order_release);
      return;
    }
    peer_state.store(1, std::memory_order_release);
    // Odd values are the peer's to answer, even ones the main thread's.
    for (uint64_t v = 1; v < 2 * round_trips; v += 2) {
      WaitFor(line, v);
      line.turn.store(v + 1, std::memory_order_release);
    }
  });
  int state;
  while ((state = peer_state.load(std::memory_order_acquire)) == 0) {
  }
  if (state != 1) {
    peer.join();
    return -1;
  }
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t v = 0; v < 2 * round_trips; v += 2) {
    line.turn.store(v + 1, std::memory_order_release);
    WaitFor(line, v + 2);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  peer.join();
  return std::chrono::duration<double, std::nano>(elapsed).count() / (2 * round_trips);
}

// A whole decimal number in [min, max], or false.
bool ParseNumber(const char* text, long min, long max, long* out) {
  char* end;
  errno = 0;
  const long v = std::strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) return false;
  *out = v;
  return true;
}

[[noreturn]] void Usage() {
  std::fprintf(stderr,
               "usage: vhostuser-cpu-pair-latency [--cpus A,B] [--round-trips N] "
               "[--trials K]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  int cpu_a = 0, cpu_b = 1;
  long round_trips = 20000, trials = 3;
  for (int i = 1; i < argc; ++i) {
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (std::strcmp(argv[i], "--cpus") == 0 && value) {
      const char* comma = std::strchr(value, ',');
      long a, b;
      if (comma == nullptr || comma - value > 15) Usage();
      char first[16] = {};
      std::memcpy(first, value, comma - value);
      if (!ParseNumber(first, 0, CPU_SETSIZE - 1, &a) ||
          !ParseNumber(comma + 1, 0, CPU_SETSIZE - 1, &b) || a == b) {
        Usage();
      }
      cpu_a = static_cast<int>(a);
      cpu_b = static_cast<int>(b);
    } else if (std::strcmp(argv[i], "--round-trips") == 0 && value) {
      if (!ParseNumber(value, 1, 100000000, &round_trips)) Usage();
    } else if (std::strcmp(argv[i], "--trials") == 0 && value) {
      if (!ParseNumber(value, 1, 1000, &trials)) Usage();
    } else {
      Usage();
    }
    ++i;
  }

  std::vector<double> results;
  for (long t = 0; t < trials; ++t) {
    const double ns = PinTo(cpu_a) ? OneTrial(cpu_b, static_cast<uint64_t>(round_trips)) : -1;
    if (ns < 0) {
      std::fprintf(stderr, "vhostuser-cpu-pair-latency: cannot run on CPUs %d and %d\n",
                   cpu_a, cpu_b);
      return 1;
    }
    results.push_back(ns);
  }
  const size_t middle = (results.size() - 1) / 2;
  std::nth_element(results.begin(), results.begin() + middle, results.end());
  std::printf("one_way_ns=%.1f cpus=%d,%d\n", results[middle], cpu_a, cpu_b);
  return 0;
}
