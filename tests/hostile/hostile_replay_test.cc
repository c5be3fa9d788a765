// The replay suite in process: every case of hostile_cases.cc against a real port, the
// data path driven by a loopback pump (what the guest sends comes back to it).  After
// each case: the port reports what it should (the error, or none), every fd the case
// made it open is closed again, no guest memory stays mapped, and a well-behaved
// frontend passes traffic.
//
// VHU_HOSTILE_SCALE_DOWN=N divides the repeat counts (10,000 and 100,000 connections)
// by N; the sanitizer builds use it.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "hostile_cases.h"
#include "runtime/fd_closer.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::hostile {
namespace {

using ::testing::HasSubstr;

// Open fds, less the ones on /proc files: other threads open those for a moment (the
// library classifying a frontend's fds, fd_kind.cc; the sanitizers' runtime), and one
// count catching such a read that the other misses is no leak.
int CountFdsOnce() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  const int own = dirfd(d);
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.' || atoi(e->d_name) == own) continue;
    char target[256];
    const std::string link = std::string("/proc/self/fd/") + e->d_name;
    const ssize_t len = readlink(link.c_str(), target, sizeof target - 1);
    if (len >= 6 && std::string_view(target, 6) == "/proc/") continue;
    ++n;
  }
  closedir(d);
  return n;
}

int CountOpenFds() {
  // Frontends' fds are closed on the closer threads (fd_closer.h): count after them,
  // and once two counts 10 ms apart agree.
  vhostuser::FdCloser::WaitIdleForTest();
  int n = CountFdsOnce();
  for (int tries = 0; tries < 100; ++tries) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    vhostuser::FdCloser::WaitIdleForTest();
    const int again = CountFdsOnce();
    if (again == n) break;
    n = again;
  }
  return n;
}

// Mappings of guest memory (memfds) in this process: the cases' own and the port's.
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

// One loopback round: what the guest sent on queue pair 0 goes back to it.
void Loopback(vhu_port* port) {
  void* pkts[32];
  const uint32_t n = vhu_dequeue_burst(port, 0, AllocVector, nullptr, pkts, 32, nullptr);
  vhu_tx_packet out[32];
  for (uint32_t i = 0; i < n; ++i) {
    auto* v = static_cast<std::vector<uint8_t>*>(pkts[i]);
    out[i] = {v->data(), static_cast<uint32_t>(v->size())};
  }
  if (n) vhu_enqueue_burst(port, 0, out, n, nullptr);
  for (uint32_t i = 0; i < n; ++i) delete static_cast<std::vector<uint8_t>*>(pkts[i]);
  if (n == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
}

bool WaitFor(const std::function<bool()>& condition, int timeout_ms = 5000) {
  for (int waited = 0; waited < timeout_ms; waited += 2) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return condition();
}

class ReplayTest : public ::testing::TestWithParam<const Case*> {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/vhu-replay-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    env_.socket_path = dir_ + "/sock";
    vhu_port_options options{};
    options.socket_path = env_.socket_path.c_str();
    options.mode = VHU_MODE_SERVER;
    // Cases make up to 10,000 short connections each, to show that none leaves
    // anything behind; the churn limit, which would spread them over minutes, has
    // tests of its own (PortTest.ChurningFrontend*).
    options.churn_rate = UINT32_MAX;
    port_ = vhu_port_create(&options, nullptr, 0);
    ASSERT_NE(port_, nullptr);
    env_.pump = [this] { Loopback(port_); };
    if (const char* s = getenv("VHU_HOSTILE_SCALE_DOWN")) env_.scale_down = atoi(s);
    // The user of the port drains its events, as the daemon does.
    drainer_ = std::thread([this] {
      while (!stop_) {
        vhu_event e;
        while (vhu_port_next_event(port_, &e)) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  void TearDown() override {
    stop_ = true;
    if (drainer_.joinable()) drainer_.join();
    if (port_) vhu_port_destroy(port_);
    rmdir(dir_.c_str());
  }

  vhu_port_status Status() {
    vhu_port_status s;
    vhu_port_get_status(port_, &s);
    return s;
  }

  // The case's connections are all closed: wait until the port has seen the last go.
  bool Settled(uint64_t connects_before) {
    return WaitFor([&] {
      vhu_port_status s = Status();
      return s.state == VHU_STATE_DISCONNECTED && s.disconnects == s.connects &&
             s.connects > connects_before;
    });
  }

  std::string dir_;
  Env env_;
  vhu_port* port_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread drainer_;
};

TEST_P(ReplayTest, PortSurvivesReportsAndLeaksNothing) {
  const Case& c = *GetParam();
  if (c.known_issue != nullptr && getenv("VHU_HOSTILE_KNOWN_ISSUES") == nullptr) {
    GTEST_SKIP() << "known issue: " << c.known_issue;
  }
  const Case& good = *FindCase("well_behaved");
  // Warm up (control thread, allocator) before counting.
  ASSERT_TRUE(RunCase(good, env_).ok());
  ASSERT_TRUE(Settled(0));
  const int fds = CountOpenFds();
  const int maps = CountMemfdMappings();
  const uint64_t connects = Status().connects;

  absl::Status s = RunCase(c, env_);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(Settled(connects)) << "the port still holds a connection";
  const vhu_port_status st = Status();
  switch (c.outcome) {
    case Outcome::kError:
      EXPECT_THAT(st.last_error, HasSubstr(c.expect));
      break;
    case Outcome::kAny:
      break;
    default:
      EXPECT_STREQ(st.last_error, "") << "no error to report for this case";
  }
  EXPECT_EQ(CountOpenFds(), fds) << "fds leaked";
  EXPECT_EQ(CountMemfdMappings(), maps) << "guest memory left mapped";
  for (unsigned i = 0; i < VHU_MAX_VRINGS; ++i) {
    vhu_vring_status vs;
    ASSERT_TRUE(vhu_vring_get_status(port_, i, &vs));
    EXPECT_FALSE(vs.started) << "vring " << i;
  }

  absl::Status after = RunCase(good, env_);
  EXPECT_TRUE(after.ok()) << "a well-behaved frontend after the case: " << after;
}

std::vector<const Case*> AllCases() {
  std::vector<const Case*> out;
  for (const Case& c : Cases()) out.push_back(&c);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Cases, ReplayTest, ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<const Case*>& info) {
                           return std::string(info.param->name);
                         });

}  // namespace
}  // namespace vhostuser::hostile
