// Micro-benchmark of the backend's per-packet data path, in process and on one thread.
//
// The benchmark plays a polling guest driver with the test frontend's rings (no peer
// process, no second core, no interrupts), so it is far steadier than the loopback
// benchmarks on a small shared machine.  Each iteration moves one burst of 32 packets
// per direction:
//   - dequeue: the driver posts 32 transmit chains (one descriptor each: the 12-byte
//     virtio-net header and the frame), vhu_dequeue_burst copies them into packets of a
//     preallocated pool, the driver reaps the 32 used entries;
//   - enqueue: the driver posts 32 receive buffers of 2 KiB, vhu_enqueue_burst fills
//     them with 32 frames, the driver reaps them;
//   - both: one of each.
// The driver's share (descriptor writes, avail and used index) is in the figures; it is
// a few nanoseconds a packet, the same in every case.
//
// Cases: frame size (64, 512, 1518 B), split or packed rings, mergeable receive
// buffers off or on (enqueue only: a dequeue does not look at it), and the dirty log
// off or on.  Logging on is a live migration in progress, switched on as QEMU does it:
// SET_LOG_BASE with a shared-memory log, then VHOST_F_LOG_ALL in SET_FEATURES.  Here
// nobody reads and clears the log meanwhile, so its cache lines stay ours: the cost
// shown is the least a migration adds.
//
// Counters: items_per_second (packets) and time_per_pkt.  tests/bench/ring_microbench.py
// runs every case with repetitions and prints the medians and the logging on/off ratios.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "protocol/protocol.h"
#include "runtime/unique_fd.h"
#include "test_frontend.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::testing {
namespace {

constexpr uint16_t kRingSize = 256;
constexpr uint32_t kBurst = 32;
// One guest buffer per ring slot, as a driver keeps them: the copies touch 256
// different buffers per ring in turn, not the same 32 hot ones.
constexpr uint32_t kBufferSize = 2048;
constexpr uint32_t kHeader = sizeof(VirtioNetHeader);
constexpr uint64_t kPage = 4096;

enum class Direction { kDequeue, kEnqueue, kBoth };

struct Case {
  uint32_t frame;
  bool packed;
  bool mergeable;
  bool logging;
};

// The packets vhu_dequeue_burst copies into: a fixed pool handed out in order and
// taken back whole after each burst, so that no malloc is timed.
class PacketPool {
 public:
  struct Packet {
    uint32_t size;
    alignas(64) uint8_t data[kBufferSize];
  };

  static void* Alloc(void* aux, uint32_t size, uint8_t** data) {
    auto* pool = static_cast<PacketPool*>(aux);
    if (pool->next_ == kBurst + 1 || size > kBufferSize) return nullptr;
    Packet& p = pool->packets_[pool->next_++];
    p.size = size;
    *data = p.data;
    return &p;
  }
  void Reset() { next_ = 0; }

 private:
  // One more than a burst: the RARP frame after a migration comes on top of a burst.
  std::array<Packet, kBurst + 1> packets_;
  uint32_t next_ = 0;
};

// A port with one queue pair, a connected test frontend and the guest's two rings,
// ready to move packets.
class RingBench {
 public:
  explicit RingBench(const Case& c) : case_(c) {}
  ~RingBench() {
    frontend_.reset();
    if (port_ != nullptr) vhu_port_destroy(port_);
    if (!path_.empty()) unlink(path_.c_str());
    if (!dir_.empty()) rmdir(dir_.c_str());
    if (log_ != nullptr) munmap(log_, log_size_);
  }

  absl::Status Start();
  // One burst each way; false if the backend moved fewer than kBurst packets.
  bool Dequeue();
  bool Enqueue();
  const std::string& error() const { return error_; }

 private:
  absl::Status StartLogging(uint64_t features);

  Case case_;
  std::string dir_, path_, error_;
  vhu_port* port_ = nullptr;
  std::unique_ptr<Frontend> frontend_;
  GuestRam ram_{4 << 20};
  // Split or packed, as the case says; vring 0 is the guest's RX, vring 1 its TX.
  std::unique_ptr<DriverRing> rx_, tx_;
  std::unique_ptr<PackedDriverRing> rx_packed_, tx_packed_;
  uint64_t rx_buffers_ = 0, tx_buffers_ = 0;  // kRingSize buffers each, one per slot.
  uint16_t rx_next_ = 0, tx_next_ = 0;        // The slot the driver posts next.
  // Transmit buffers dequeued but not yet seen in the used ring: a split ring keeps the
  // newest buffers of a full burst (at most one burst) until a later call returns them.
  uint32_t tx_unreturned_ = 0;
  PacketPool pool_;
  std::array<void*, kBurst + 1> pkts_{};
  std::vector<uint8_t> frames_;               // kBurst frames to enqueue...
  std::array<vhu_tx_packet, kBurst> tx_pkts_{};  // ...and their descriptions.
  UniqueFd log_fd_;
  uint8_t* log_ = nullptr;
  uint64_t log_size_ = 0;
};

absl::Status RingBench::Start() {
  char dir[] = "/tmp/vhu-microbench-XXXXXX";
  if (mkdtemp(dir) == nullptr) return absl::InternalError("mkdtemp failed");
  dir_ = dir;
  path_ = dir_ + "/sock";
  vhu_port_options options{};
  options.socket_path = path_.c_str();
  options.mode = VHU_MODE_SERVER;
  char error[256] = "";
  port_ = vhu_port_create(&options, error, sizeof error);
  if (port_ == nullptr) return absl::InternalError(error);

  uint64_t features = Bit(feature::kVersion1) | Bit(feature::kRingIndirectDesc);
  if (case_.packed) features |= Bit(feature::kRingPacked);
  if (case_.mergeable) features |= Bit(feature::kNetMrgRxbuf);
  std::vector<Frontend::RingSetup> rings;
  if (case_.packed) {
    rx_packed_ = std::make_unique<PackedDriverRing>(ram_, kRingSize);
    tx_packed_ = std::make_unique<PackedDriverRing>(ram_, kRingSize);
    rings = {{0, nullptr, -1, 0, rx_packed_.get()}, {1, nullptr, -1, 0, tx_packed_.get()}};
  } else {
    rx_ = std::make_unique<DriverRing>(ram_, kRingSize);
    tx_ = std::make_unique<DriverRing>(ram_, kRingSize);
    rings = {{0, rx_.get()}, {1, tx_.get()}};
  }
  rx_buffers_ = ram_.Alloc(uint64_t{kRingSize} * kBufferSize, kPage);
  tx_buffers_ = ram_.Alloc(uint64_t{kRingSize} * kBufferSize, kPage);
  // The guest's transmit buffers hold a zero header (no offloads) and a frame.
  for (uint32_t slot = 0; slot < kRingSize; ++slot) {
    uint8_t* buffer = ram_.host(tx_buffers_ + uint64_t{slot} * kBufferSize);
    memset(buffer, 0, kHeader);
    const std::vector<uint8_t> frame = TestFrame(case_.frame, slot);
    memcpy(buffer + kHeader, frame.data(), frame.size());
  }
  frames_.resize(size_t{kBurst} * kBufferSize);
  for (uint32_t i = 0; i < kBurst; ++i) {
    const std::vector<uint8_t> frame = TestFrame(case_.frame, i);
    memcpy(&frames_[size_t{i} * kBufferSize], frame.data(), frame.size());
    tx_pkts_[i] = {&frames_[size_t{i} * kBufferSize], case_.frame};
  }

  auto frontend = Frontend::Connect(path_);
  if (!frontend.ok()) return frontend.status();
  frontend_ = *std::move(frontend);
  if (auto s = frontend_->SetUp(ram_, features, rings); !s.ok()) return s;
  vhu_port_status status{};
  for (int waited = 0; waited < 5000; waited += 2) {
    vhu_port_get_status(port_, &status);
    if (status.state == VHU_STATE_READY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (status.state != VHU_STATE_READY) {
    return absl::InternalError(absl::StrCat("port not ready: ", status.last_error));
  }
  if (case_.logging) return StartLogging(features);
  return absl::OkStatus();
}

// What QEMU does when a migration starts: the log, then VHOST_F_LOG_ALL.
absl::Status RingBench::StartLogging(uint64_t features) {
  // One bit per page of guest RAM, which starts at GuestRam::kGuestBase.
  log_size_ = ((GuestRam::kGuestBase + ram_.size()) / kPage + 7) / 8;
  log_fd_ = UniqueFd(memfd_create("dirty-log", MFD_CLOEXEC));
  if (!log_fd_.valid() || ftruncate(log_fd_.get(), static_cast<off_t>(log_size_)) != 0) {
    return absl::InternalError("dirty log memfd");
  }
  void* p = mmap(nullptr, log_size_, PROT_READ | PROT_WRITE, MAP_SHARED, log_fd_.get(), 0);
  if (p == MAP_FAILED) return absl::InternalError("dirty log mmap");
  log_ = static_cast<uint8_t*>(p);
  LogBase base{log_size_, 0};
  if (auto s = frontend_->Send(Request::kSetLogBase, &base, sizeof base, {log_fd_.get()});
      !s.ok()) {
    return s;
  }
  if (auto reply = frontend_->Receive(Request::kSetLogBase); !reply.ok()) {
    return reply.status();
  }
  if (auto s = frontend_->SendU64(Request::kSetFeatures, features |
                                  Bit(feature::kProtocolFeatures) | Bit(feature::kLogAll));
      !s.ok()) {
    return s;
  }
  return frontend_->Sync();
}

bool RingBench::Dequeue() {
  for (uint32_t i = 0; i < kBurst; ++i) {
    const DriverRing::Buffer buffer{tx_buffers_ + uint64_t{tx_next_} * kBufferSize,
                                    kHeader + case_.frame};
    if (case_.packed) {
      tx_packed_->Post(&buffer, 1, false, tx_next_);
    } else {
      tx_->Publish(tx_->AddChain(&buffer, 1, false));
    }
    tx_next_ = static_cast<uint16_t>((tx_next_ + 1) % kRingSize);
  }
  pool_.Reset();
  const uint32_t n =
      vhu_dequeue_burst(port_, 0, PacketPool::Alloc, &pool_, pkts_.data(), kBurst, nullptr);
  benchmark::DoNotOptimize(pkts_.data());
  VringUsedElem used;
  uint32_t reaped = 0;
  while (case_.packed ? tx_packed_->PopUsed(1, &used) : tx_->PopUsed(&used)) ++reaped;
  tx_unreturned_ = tx_unreturned_ + n - reaped;
  if (n != kBurst || tx_unreturned_ > kBurst) {
    error_ = absl::StrCat("dequeued ", n, ", reaped ", reaped, ", ", tx_unreturned_,
                          " never returned");
    return false;
  }
  return true;
}

bool RingBench::Enqueue() {
  for (uint32_t i = 0; i < kBurst; ++i) {
    const DriverRing::Buffer buffer{rx_buffers_ + uint64_t{rx_next_} * kBufferSize,
                                    kBufferSize};
    if (case_.packed) {
      rx_packed_->Post(&buffer, 1, true, rx_next_);
    } else {
      rx_->Publish(rx_->AddChain(&buffer, 1, true));
    }
    rx_next_ = static_cast<uint16_t>((rx_next_ + 1) % kRingSize);
  }
  uint32_t dropped = 0;
  const uint32_t n = vhu_enqueue_burst(port_, 0, tx_pkts_.data(), kBurst, &dropped);
  VringUsedElem used;
  uint32_t reaped = 0;
  while (case_.packed ? rx_packed_->PopUsed(1, &used) : rx_->PopUsed(&used)) ++reaped;
  if (n != kBurst || dropped != 0 || reaped != kBurst) {
    error_ = absl::StrCat("enqueued ", n, " (", dropped, " dropped), reaped ", reaped,
                          " of ", kBurst);
    return false;
  }
  return true;
}

// Set when any case failed: the run then exits 1, so that the smoke test (ctest
// bench.ring_microbench.smoke) fails with it rather than print the error and pass.
bool g_failed = false;

void Fail(benchmark::State& state, const std::string& why) {
  g_failed = true;
  state.SkipWithError(why.c_str());
}

// Benchmark arguments: frame, packed, mergeable, logging.
void RunCase(benchmark::State& state, Direction direction) {
  const Case c{static_cast<uint32_t>(state.range(0)), state.range(1) != 0,
               state.range(2) != 0, state.range(3) != 0};
  RingBench bench(c);
  if (auto s = bench.Start(); !s.ok()) {
    Fail(state, s.ToString());
    return;
  }
  // A lap of both rings first, so that every guest buffer and our packets are touched
  // once before timing starts.
  for (uint32_t i = 0; i < kRingSize / kBurst; ++i) {
    if ((direction != Direction::kEnqueue && !bench.Dequeue()) ||
        (direction != Direction::kDequeue && !bench.Enqueue())) {
      Fail(state, bench.error());
      return;
    }
  }
  for (auto _ : state) {
    if ((direction != Direction::kEnqueue && !bench.Dequeue()) ||
        (direction != Direction::kDequeue && !bench.Enqueue())) {
      Fail(state, bench.error());
      break;
    }
  }
  const int64_t per_iteration = direction == Direction::kBoth ? 2 * kBurst : kBurst;
  state.SetItemsProcessed(state.iterations() * per_iteration);
  state.SetBytesProcessed(state.iterations() * per_iteration * c.frame);
  // An inverted rate: seconds per packet (the console prints "41.5ns").
  state.counters["time_per_pkt"] =
      benchmark::Counter(static_cast<double>(state.iterations() * per_iteration),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_Dequeue(benchmark::State& state) { RunCase(state, Direction::kDequeue); }
void BM_Enqueue(benchmark::State& state) { RunCase(state, Direction::kEnqueue); }
void BM_Both(benchmark::State& state) { RunCase(state, Direction::kBoth); }

const std::vector<int64_t> kFrames = {64, 512, 1518};
const std::vector<std::string> kArgNames = {"frame", "packed", "mrg", "log"};

// A dequeue does not depend on mergeable buffers: mrg=0 only.
BENCHMARK(BM_Dequeue)->ArgNames(kArgNames)->ArgsProduct({kFrames, {0, 1}, {0}, {0, 1}});
BENCHMARK(BM_Enqueue)->ArgNames(kArgNames)->ArgsProduct({kFrames, {0, 1}, {0, 1}, {0, 1}});
BENCHMARK(BM_Both)->ArgNames(kArgNames)->ArgsProduct({kFrames, {0, 1}, {0, 1}, {0, 1}});

// Every case connects a frontend, which the library logs at INFO: only warnings and
// errors here, so that the table stays readable.
void QuietLog(vhu_log_level level, const char* message, void*) {
  if (level <= VHU_LOG_WARN) fprintf(stderr, "vhostuser: %s\n", message);
}

}  // namespace
}  // namespace vhostuser::testing

int main(int argc, char** argv) {
  vhu_set_log_function(vhostuser::testing::QuietLog);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return vhostuser::testing::g_failed ? 1 : 0;
}
