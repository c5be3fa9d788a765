// How long one cache line takes to travel between two CPUs, in nanoseconds.
//
// On this VM the hypervisor moves the two virtual CPUs between placements that differ
// by 3-4x in this figure (about 70 ns against 250-300 ns one way), every few seconds to
// minutes, and with it every ring-to-ring benchmark: a vhost-user loopback is made of
// such transfers.  The benchmarks run this between their slices, with every contender
// stopped, to label each slice with the placement it ran in.
//
// Two threads, one pinned to each CPU, take turns writing one shared counter: each
// waits for the other's value, then writes the next, so every step is one transfer of
// the line.  Prints the median of --trials runs of --round-trips steps each:
//   one_way_ns=<ns> cpus=<a>,<b>

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
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

// One trial, the calling thread already on the first CPU: 'steps' transfers of the
// line, alternating direction; ns per transfer, or a negative value if the peer could
// not be pinned to 'cpu_b'.
double OneTrial(int cpu_b, uint64_t steps) {
  SharedLine line;
  bool peer_pinned = true;
  std::thread peer([&] {
    peer_pinned = PinTo(cpu_b);
    // Odd values are ours to answer, even ones the main thread's.
    for (uint64_t v = 1; v < steps; v += 2) {
      WaitFor(line, v);
      line.turn.store(v + 1, std::memory_order_release);
    }
  });
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t v = 0; v < steps; v += 2) {
    line.turn.store(v + 1, std::memory_order_release);
    WaitFor(line, v + 2);
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  peer.join();
  if (!peer_pinned) return -1;
  return std::chrono::duration<double, std::nano>(elapsed).count() / steps;
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
      if (std::sscanf(value, "%d,%d", &cpu_a, &cpu_b) != 2 || cpu_a < 0 || cpu_b < 0 ||
          cpu_a == cpu_b) {
        Usage();
      }
    } else if (std::strcmp(argv[i], "--round-trips") == 0 && value) {
      round_trips = std::atol(value);
    } else if (std::strcmp(argv[i], "--trials") == 0 && value) {
      trials = std::atol(value);
    } else {
      Usage();
    }
    ++i;
  }
  if (round_trips < 1 || round_trips > 100000000 || trials < 1 || trials > 1000) Usage();

  std::vector<double> results;
  for (long t = 0; t < trials; ++t) {
    const double ns = PinTo(cpu_a) ? OneTrial(cpu_b, 2 * static_cast<uint64_t>(round_trips))
                                   : -1;
    if (ns < 0) {
      std::fprintf(stderr, "vhostuser-cpu-pair-latency: cannot run on CPUs %d and %d\n",
                   cpu_a, cpu_b);
      return 1;
    }
    results.push_back(ns);
  }
  std::nth_element(results.begin(), results.begin() + results.size() / 2, results.end());
  std::printf("one_way_ns=%.1f cpus=%d,%d\n", results[results.size() / 2], cpu_a, cpu_b);
  return 0;
}
