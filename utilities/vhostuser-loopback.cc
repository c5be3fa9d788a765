// vhostuser-loopback: the backend library without OVS.  It serves one vhost-user socket
// and sends every packet the guest transmits back to it on the same queue pair, so a
// VM-side peer (DPDK testpmd with virtio_user, or a QEMU guest) can be tested and
// benchmarked against the library alone.
//
// Nothing is dropped by this tool: a packet the guest has no room for waits until it
// has.  SIGUSR1 switches to "sink" mode (keep receiving, stop sending back), which lets
// a test drain the loop and then compare exact counts on both sides; --sink starts in
// it (a benchmark of the dequeue side alone).  --source SIZE turns the tool into a
// packet generator instead (the enqueue side alone): it receives nothing and keeps
// every receive buffer the guest posts filled with SIZE-byte UDP frames, copied from a
// fixed pool of prebuilt frames.  SIGUSR2 prints the counters with a timestamp, while
// it runs; SIGINT or SIGTERM ends the run and prints the counters.
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "vhostuser/vhostuser.h"

namespace {

constexpr uint32_t kBurst = 32;
constexpr uint32_t kSlotSize = 65536;
constexpr uint32_t kSourceFrames = 8 * kBurst;  // Prebuilt frames --source cycles through.

std::atomic<bool> stop_requested{false};
std::atomic<bool> sink_mode{false};
std::atomic<bool> stats_requested{false};

void OnStop(int) { stop_requested = true; }

// A queue set as one hexadecimal number, bit q for queue pair q.
void PrintQueueSet(const char* label, const uint64_t set[VHU_QUEUE_SET_WORDS]) {
  printf("%s", label);
  for (int w = VHU_QUEUE_SET_WORDS - 1; w >= 0; --w) printf("%016" PRIx64, set[w]);
}
void OnSink(int) { sink_mode = true; }
void OnStats(int) { stats_requested = true; }

// A fixed pool of packet buffers, as a DPDK mempool is: the loop allocates nothing while
// it runs.  A frame of up to kSmallSlotSize bytes (every standard Ethernet frame) takes a
// small slot, a larger one one of a few kSlotSize slots.  Slots lie an odd number of
// cache lines apart, so that the first lines of a burst's packets fall in different
// cache sets; spaced 64 KiB apart they would all share one set of the L1 and L2 caches
// and evict each other on every burst.
class PacketPool {
 public:
  PacketPool(size_t n_small, size_t n_large) : small_(n_small), large_(n_large) {}

  static void* Alloc(void* aux, uint32_t size, uint8_t** data) {
    auto* pool = static_cast<PacketPool*>(aux);
    if (size <= kSmallSlotSize) return pool->small_.Alloc(size, data);
    if (size <= kSlotSize) return pool->large_.Alloc(size, data);
    return nullptr;
  }
  void Free(void* p) {
    auto* slot = static_cast<uint8_t*>(p);
    if (small_.Owns(slot)) {
      small_.free_slots.push_back(slot);
    } else {
      large_.free_slots.push_back(slot);
    }
  }
  uint32_t SizeOf(void* p) {
    auto* slot = static_cast<uint8_t*>(p);
    return small_.Owns(slot) ? small_.sizes[small_.IndexOf(slot)]
                             : large_.sizes[large_.IndexOf(slot)];
  }

 private:
  static constexpr uint32_t kSmallSlotSize = 2048;

  template <uint32_t kSize>
  struct SizeClass {
    // Rounded up to whole cache lines, then to an odd number of them.  A constant, so
    // that finding a slot's index is a multiplication.
    static constexpr size_t stride = ((kSize + 63) / 64 | 1) * 64;

    // Left uninitialised: pages that never hold a frame are never touched.
    explicit SizeClass(size_t n)
        : bytes(n * stride),
          storage(new uint8_t[bytes]),
          sizes(n) {
      for (size_t i = 0; i < n; ++i) free_slots.push_back(&storage[i * stride]);
    }
    void* Alloc(uint32_t size, uint8_t** data) {
      if (free_slots.empty()) return nullptr;
      uint8_t* slot = free_slots.back();
      free_slots.pop_back();
      sizes[IndexOf(slot)] = size;
      *data = slot;
      return slot;
    }
    size_t IndexOf(const uint8_t* slot) const { return (slot - storage.get()) / stride; }
    bool Owns(const uint8_t* slot) const {
      return slot >= storage.get() && slot < storage.get() + bytes;
    }

    size_t bytes;
    std::unique_ptr<uint8_t[]> storage;
    std::vector<uint32_t> sizes;  // Frame size of each slot's packet.
    std::vector<uint8_t*> free_slots;
  };

  SizeClass<kSmallSlotSize> small_;
  SizeClass<kSlotSize> large_;
};

struct QueueState {
  void* pending[kBurst];
  uint32_t pending_sizes[kBurst];
  uint32_t n_pending = 0;
  uint32_t next = 0;  // First pending packet not yet sent.
  uint64_t rx = 0, tx = 0;
  uint32_t source_next = 0;  // --source: the next prebuilt frame to send.
  // --source: enqueue calls, and those that found no receive buffer free (the guest's
  // ring full of our frames: the guest, not this tool, sets the pace).
  uint64_t polls = 0, full_polls = 0;
  // Forwarding (--mac-swap and the default): dequeue calls and those that came back
  // empty, enqueue calls and those that placed fewer packets than asked (the guest's
  // receive ring full: the rest waits for the next call).
  uint64_t rx_polls = 0, rx_empty = 0, tx_calls = 0, tx_short = 0;
};

// kSourceFrames Ethernet/IPv4/UDP frames of 'size' bytes (at least 42), as testpmd's
// txonly mode builds them: each one differs in the IPv4 identification field.
std::vector<uint8_t> BuildSourceFrames(uint32_t size) {
  std::vector<uint8_t> frames(size_t{kSourceFrames} * size);
  for (uint32_t i = 0; i < kSourceFrames; ++i) {
    uint8_t* f = &frames[size_t{i} * size];
    static const uint8_t kMacs[12] = {0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01};
    memcpy(f, kMacs, sizeof kMacs);
    f[12] = 0x08;  // IPv4.
    f[13] = 0x00;
    uint8_t* ip = f + 14;
    const uint32_t ip_len = size - 14;
    const uint8_t header[20] = {0x45, 0, uint8_t(ip_len >> 8), uint8_t(ip_len),
                                uint8_t(i >> 8), uint8_t(i), 0, 0, 64, 17, 0, 0,
                                198, 18, 0, 1, 198, 18, 0, 2};
    memcpy(ip, header, sizeof header);
    uint32_t sum = 0;
    for (int k = 0; k < 20; k += 2) sum += (ip[k] << 8) | ip[k + 1];
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    ip[10] = uint8_t(~sum >> 8);
    ip[11] = uint8_t(~sum);
    uint8_t* udp = ip + 20;
    const uint32_t udp_len = ip_len - 20;
    const uint8_t udp_header[8] = {0, 9, 0, 9, uint8_t(udp_len >> 8), uint8_t(udp_len), 0, 0};
    memcpy(udp, udp_header, sizeof udp_header);
  }
  return frames;
}

void SwapMacs(uint8_t* frame, uint32_t size) {
  if (size < 12) return;
  uint8_t tmp[6];
  memcpy(tmp, frame, 6);
  memcpy(frame, frame + 6, 6);
  memcpy(frame + 6, tmp, 6);
}

// Prints what the guest negotiated, once per connection, when it becomes ready.
void ReportReady(vhu_port* port) {
  static uint64_t reported_connects = 0;
  vhu_port_status status;
  vhu_port_get_status(port, &status);
  if (status.state != VHU_STATE_READY || status.connects == reported_connects) return;
  reported_connects = status.connects;
  char features[512];
  vhu_format_features(status.features, false, features, sizeof features);
  printf("ready features=%s\n", features);
  fflush(stdout);
}

void Usage() {
  fprintf(stderr,
          "usage: vhostuser-loopback --socket PATH [--client] [--queues N] [--cpu N]\n"
          "                          [--mac-swap | --sink | --source SIZE] [--seconds N]\n"
          "Serves PATH (or connects to it with --client) and sends every packet back.\n"
          "--sink: drop every packet received; --source SIZE: receive nothing and fill\n"
          "every guest receive buffer with SIZE-byte frames (42-%u).\n"
          "SIGUSR1: stop sending back (sink); SIGUSR2: print counters with a timestamp;\n"
          "SIGINT/SIGTERM: print counters, exit.\n",
          kSlotSize);
}

}  // namespace

int main(int argc, char** argv) {
  const char* socket_path = nullptr;
  bool client = false, mac_swap = false;
  int queues = VHU_MAX_QUEUE_PAIRS, cpu = -1;
  long source_size = 0;
  double seconds = 0;
  static const option kOptions[] = {
      {"socket", required_argument, nullptr, 's'}, {"client", no_argument, nullptr, 'c'},
      {"queues", required_argument, nullptr, 'q'}, {"cpu", required_argument, nullptr, 'p'},
      {"mac-swap", no_argument, nullptr, 'm'},     {"seconds", required_argument, nullptr, 't'},
      {"sink", no_argument, nullptr, 'k'},         {"source", required_argument, nullptr, 'g'},
      {"help", no_argument, nullptr, 'h'},         {nullptr, 0, nullptr, 0}};
  for (int c; (c = getopt_long(argc, argv, "", kOptions, nullptr)) != -1;) {
    switch (c) {
      case 's': socket_path = optarg; break;
      case 'c': client = true; break;
      case 'q': queues = atoi(optarg); break;
      case 'p': cpu = atoi(optarg); break;
      case 'm': mac_swap = true; break;
      case 't': seconds = atof(optarg); break;
      case 'k': sink_mode = true; break;
      case 'g': source_size = atol(optarg); break;
      default: Usage(); return c == 'h' ? 0 : 2;
    }
  }
  const bool source = source_size != 0;
  if (socket_path == nullptr || queues < 1 || queues > VHU_MAX_QUEUE_PAIRS ||
      (source && (source_size < 42 || source_size > kSlotSize || sink_mode || mac_swap))) {
    Usage();
    return 2;
  }
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
  }
  signal(SIGINT, OnStop);
  signal(SIGTERM, OnStop);
  signal(SIGUSR1, OnSink);
  signal(SIGUSR2, OnStats);

  vhu_port_options options{};
  options.socket_path = socket_path;
  options.mode = client ? VHU_MODE_CLIENT : VHU_MODE_SERVER;
  char error[256];
  vhu_port* port = vhu_port_create(&options, error, sizeof error);
  if (port == nullptr) {
    fprintf(stderr, "vhostuser-loopback: %s\n", error);
    return 1;
  }
  printf("listening=%s\n", socket_path);
  fflush(stdout);

  // Each queue holds at most one burst at a time.
  PacketPool pool(static_cast<size_t>(queues) * kBurst, static_cast<size_t>(queues) * kBurst);
  std::vector<QueueState> state(queues);
  const std::vector<uint8_t> source_frames =
      source ? BuildSourceFrames(static_cast<uint32_t>(source_size)) : std::vector<uint8_t>();
  vhu_tx_packet source_out[kSourceFrames + kBurst];  // Wraps: any kBurst in a row.
  for (uint32_t i = 0; source && i < kSourceFrames + kBurst; ++i) {
    source_out[i] = {&source_frames[size_t{i % kSourceFrames} * source_size],
                     static_cast<uint32_t>(source_size)};
  }
  const auto start = std::chrono::steady_clock::now();
  auto print_counters = [&](const char* prefix) {
    uint64_t rx = 0, tx = 0, polls = 0, full_polls = 0;
    uint64_t rx_polls = 0, rx_empty = 0, tx_calls = 0, tx_short = 0;
    for (const QueueState& s : state) {
      rx += s.rx;
      tx += s.tx;
      polls += s.polls;
      full_polls += s.full_polls;
      rx_polls += s.rx_polls;
      rx_empty += s.rx_empty;
      tx_calls += s.tx_calls;
      tx_short += s.tx_short;
    }
    printf("%stime=%.6f rx_packets=%" PRIu64 " tx_packets=%" PRIu64 " polls=%" PRIu64
           " full_polls=%" PRIu64 " rx_polls=%" PRIu64 " rx_empty=%" PRIu64
           " tx_calls=%" PRIu64 " tx_short=%" PRIu64 "\n",
           prefix,
           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
           rx, tx, polls, full_polls, rx_polls, rx_empty, tx_calls, tx_short);
    fflush(stdout);
  };
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration<double>(seconds > 0 ? seconds : 1e9);
  uint64_t iterations = 0;
  while (!stop_requested) {
    for (int q = 0; q < queues && source; ++q) {
      QueueState& s = state[q];
      uint32_t dropped = 0;
      uint32_t sent = vhu_enqueue_burst(port, q, &source_out[s.source_next], kBurst, &dropped);
      s.source_next = (s.source_next + sent) % kSourceFrames;
      s.tx += sent - dropped;
      ++s.polls;
      s.full_polls += sent == 0;
    }
    for (int q = 0; q < queues && !source; ++q) {
      QueueState& s = state[q];
      if (s.next == s.n_pending) {
        s.n_pending =
            vhu_dequeue_burst(port, q, PacketPool::Alloc, &pool, s.pending, kBurst, nullptr);
        s.next = 0;
        s.rx += s.n_pending;
        ++s.rx_polls;
        s.rx_empty += s.n_pending == 0;
        for (uint32_t i = 0; i < s.n_pending; ++i) {
          s.pending_sizes[i] = pool.SizeOf(s.pending[i]);
          if (mac_swap) SwapMacs(static_cast<uint8_t*>(s.pending[i]), s.pending_sizes[i]);
        }
      }
      if (sink_mode) {
        for (uint32_t i = s.next; i < s.n_pending; ++i) pool.Free(s.pending[i]);
        s.next = s.n_pending;
        continue;
      }
      if (s.next < s.n_pending) {
        vhu_tx_packet out[kBurst];
        uint32_t n = s.n_pending - s.next;
        for (uint32_t i = 0; i < n; ++i) {
          out[i] = {s.pending[s.next + i], s.pending_sizes[s.next + i]};
        }
        uint32_t dropped = 0;
        uint32_t sent = vhu_enqueue_burst(port, q, out, n, &dropped);
        for (uint32_t i = 0; i < sent; ++i) pool.Free(s.pending[s.next + i]);
        s.next += sent;
        s.tx += sent - dropped;
        ++s.tx_calls;
        s.tx_short += sent < n;
      }
    }
    if ((++iterations & 0xffff) == 0) {
      if (std::chrono::steady_clock::now() > deadline) break;
      ReportReady(port);
      if (stats_requested.exchange(false)) print_counters("stats ");
    }
  }

  uint64_t rx = 0, tx = 0;
  for (int q = 0; q < queues; ++q) {
    printf("queue=%d rx_packets=%" PRIu64 " tx_packets=%" PRIu64 "\n", q, state[q].rx,
           state[q].tx);
    rx += state[q].rx;
    tx += state[q].tx;
  }
  vhu_port_status status;
  vhu_port_get_status(port, &status);
  uint64_t dropped = 0, errors = 0;
  for (unsigned v = 0; v < 2u * queues; ++v) {
    vhu_vring_status vs;
    if (vhu_vring_get_status(port, v, &vs)) {
      dropped += vs.drops;
      errors += vs.errors;
    }
  }
  printf("rx_packets=%" PRIu64 " tx_packets=%" PRIu64 " dropped=%" PRIu64
         " errors=%" PRIu64 " connects=%" PRIu64 "\n",
         rx, tx, dropped, errors, status.connects);
  // Which queue pairs the frontend turned on: a guest test tells "multiqueue negotiated
  // but idle" from "never enabled" with it.
  printf("num_vrings=%" PRIu32, status.num_vrings);
  PrintQueueSet(" enabled_rx_mask=0x", status.enabled_rx_queues);
  PrintQueueSet(" enabled_tx_mask=0x", status.enabled_tx_queues);
  printf("\n");
  fflush(stdout);
  vhu_port_destroy(port);
  return 0;
}
