// 100 ports whose frontends connect and disconnect in a loop, at library level through
// the C API (100 OVS ports would spend the time in OVS's reconfiguration, not ours).
// A data-path thread loops every packet back on every port, as a switch would, while
// two frontend threads churn: each visit to a port either connects a fresh frontend
// (new guest memory, full set-up) or has the connected one pass a frame and leave,
// closing its socket, sometimes mid-set-up.  Runs VHU_CHURN_SECONDS (default 60).
//
// Afterwards: no port holds a connection or reports an error, the process has the fds
// and guest-memory mappings it had before, and every port passes traffic again.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/protocol.h"
#include "runtime/fd_closer.h"
#include "test_frontend.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::testing {
namespace {

constexpr int kPorts = 100;
constexpr uint32_t kHeader = sizeof(VirtioNetHeader);
constexpr uint64_t kFeatures = Bit(feature::kVersion1) | Bit(feature::kRingIndirectDesc);

int CountOpenFds() {
  // Frontends' fds are closed on the closer threads (fd_closer.h): count after them.
  vhostuser::FdCloser::WaitIdleForTest();
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n;
}

int CountMemfdMappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) n += line.find("/memfd:") != std::string::npos;
  return n;
}

void* AllocVector(void*, uint32_t size, uint8_t** data) {
  auto* v = new std::vector<uint8_t>(size);
  *data = v->data();
  return v;
}

// One frontend's connection: its own guest memory and rings.
struct Guest {
  GuestRam ram{256 << 10};
  DriverRing rx{ram, 64};
  DriverRing tx{ram, 64};
  std::unique_ptr<Frontend> fe;
};

class PortChurnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/vhu-churn-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    for (int i = 0; i < kPorts; ++i) {
      paths_.push_back(dir_ + "/p" + std::to_string(i));
      vhu_port_options options{};
      options.socket_path = paths_.back().c_str();
      options.mode = VHU_MODE_SERVER;
      ports_.push_back(vhu_port_create(&options, nullptr, 0));
      ASSERT_NE(ports_.back(), nullptr);
    }
    datapath_ = std::thread([this] {
      while (!stop_) {
        uint32_t moved = 0;
        for (vhu_port* port : ports_) moved += Loopback(port);
        if (moved == 0) std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    });
  }
  void TearDown() override {
    stop_ = true;
    if (datapath_.joinable()) datapath_.join();
    for (vhu_port* port : ports_) vhu_port_destroy(port);
    rmdir(dir_.c_str());
  }

  static uint32_t Loopback(vhu_port* port) {
    void* pkts[32];
    const uint32_t n = vhu_dequeue_burst(port, 0, AllocVector, nullptr, pkts, 32, nullptr);
    vhu_tx_packet out[32];
    for (uint32_t i = 0; i < n; ++i) {
      auto* v = static_cast<std::vector<uint8_t>*>(pkts[i]);
      out[i] = {v->data(), static_cast<uint32_t>(v->size())};
    }
    if (n) vhu_enqueue_burst(port, 0, out, n, nullptr);
    for (uint32_t i = 0; i < n; ++i) delete static_cast<std::vector<uint8_t>*>(pkts[i]);
    vhu_event e;
    while (vhu_port_next_event(port, &e)) {
    }
    return n;
  }

  // Connects a fresh frontend to port 'i' and sets it up; nullptr on failure.
  std::unique_ptr<Guest> Connect(int i, bool complete = true) {
    auto g = std::make_unique<Guest>();
    auto fe = Frontend::Connect(paths_[i]);
    if (!fe.ok()) return nullptr;
    g->fe = *std::move(fe);
    if (!complete) {  // Leaves in the middle of the set-up.
      (void)g->fe->GetU64(Request::kGetFeatures);
      (void)g->fe->SendU64(Request::kSetFeatures, kFeatures);
      return g;
    }
    if (!g->fe->SetUp(g->ram, kFeatures, {{0, &g->rx}, {1, &g->tx}}).ok()) return nullptr;
    return g;
  }

  // A frame around the loop; true if it came back intact within 5 s.
  static bool PassFrame(Guest& g, uint32_t seq) {
    auto frame = TestFrame(64 + seq % 1000, seq);
    std::vector<uint8_t> bytes(kHeader, 0);
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    const uint64_t rx_gpa = g.ram.Alloc(2048);
    g.rx.Publish(g.rx.AddChain({{rx_gpa, 2048}}, true));
    const uint64_t tx_gpa = g.ram.Alloc(bytes.size());
    memcpy(g.ram.host(tx_gpa), bytes.data(), bytes.size());
    g.tx.Publish(g.tx.AddChain({{tx_gpa, static_cast<uint32_t>(bytes.size())}}, false));
    for (int waited = 0; waited < 5000; ++waited) {
      VringUsedElem e;
      if (g.rx.PopUsed(&e)) {
        return e.len == bytes.size() &&
               memcmp(g.ram.host(rx_gpa) + kHeader, frame.data(), frame.size()) == 0;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }

  // Closes the frontend's socket and waits for the port to have seen it go.
  void Disconnect(int i, std::unique_ptr<Guest>& g) {
    const uint64_t before = Disconnects(i);
    g.reset();
    for (int waited = 0; waited < 5000 && Disconnects(i) == before; ++waited) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  uint64_t Disconnects(int i) {
    vhu_port_status s;
    vhu_port_get_status(ports_[i], &s);
    return s.disconnects;
  }

  std::string dir_;
  std::vector<std::string> paths_;
  std::vector<vhu_port*> ports_;
  std::atomic<bool> stop_{false};
  std::thread datapath_;
};

TEST_F(PortChurnTest, HundredPortsConnectAndDisconnectInALoop) {
  const char* env = getenv("VHU_CHURN_SECONDS");
  const int seconds = env ? atoi(env) : 60;

  // Warm up every port once before counting.
  for (int i = 0; i < kPorts; ++i) {
    auto g = Connect(i);
    ASSERT_NE(g, nullptr) << "port " << i;
    ASSERT_TRUE(PassFrame(*g, i)) << "port " << i;
    Disconnect(i, g);
  }
  const int fds = CountOpenFds();
  const int maps = CountMemfdMappings();

  std::atomic<uint64_t> cycles{0}, frames{0}, aborted{0}, failures{0};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  auto worker = [&](int first, int step) {
    std::vector<std::unique_ptr<Guest>> guests(kPorts);
    uint32_t seq = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      for (int i = first; i < kPorts; i += step) {
        std::unique_ptr<Guest>& g = guests[i];
        if (g == nullptr) {
          const bool complete = ++seq % 7 != 0;  // Every 7th leaves mid-set-up.
          g = Connect(i, complete);
          if (g == nullptr) {
            ++failures;
          } else if (!complete) {
            Disconnect(i, g);
            ++aborted;
          }
        } else {
          if (PassFrame(*g, ++seq)) {
            ++frames;
          } else {
            ++failures;
          }
          Disconnect(i, g);
          ++cycles;
        }
      }
    }
    for (int i = first; i < kPorts; i += step) {
      if (guests[i]) Disconnect(i, guests[i]);
    }
  };
  std::thread a(worker, 0, 2), b(worker, 1, 2);
  a.join();
  b.join();
  printf("churn: %d ports, %d s: %lu connect/traffic/disconnect cycles, %lu frames, "
         "%lu set-ups abandoned, %lu failures\n",
         kPorts, seconds, static_cast<unsigned long>(cycles.load()),
         static_cast<unsigned long>(frames.load()), static_cast<unsigned long>(aborted.load()),
         static_cast<unsigned long>(failures.load()));
  EXPECT_EQ(failures.load(), 0u);
  EXPECT_GT(cycles.load(), static_cast<uint64_t>(kPorts));

  for (int i = 0; i < kPorts; ++i) {
    vhu_port_status s;
    vhu_port_get_status(ports_[i], &s);
    EXPECT_EQ(s.state, VHU_STATE_DISCONNECTED) << "port " << i;
    EXPECT_EQ(s.connects, s.disconnects) << "port " << i;
    EXPECT_STREQ(s.last_error, "") << "port " << i;
  }
  EXPECT_EQ(CountOpenFds(), fds) << "fds leaked";
  EXPECT_EQ(CountMemfdMappings(), maps) << "guest memory left mapped";

  // Traffic resumes on every port.
  for (int i = 0; i < kPorts; ++i) {
    auto g = Connect(i);
    ASSERT_NE(g, nullptr) << "port " << i;
    EXPECT_TRUE(PassFrame(*g, 7)) << "port " << i;
    Disconnect(i, g);
  }
}

}  // namespace
}  // namespace vhostuser::testing
