// A server port in a temporary directory with a test frontend, guest RAM and one
// queue pair: what the in-process tests of a port's behaviour start from.
#ifndef TESTS_UNIT_PORT_FIXTURE_H
#define TESTS_UNIT_PORT_FIXTURE_H

#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "protocol/protocol.h"
#include "test_frontend.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::testing {

inline constexpr uint64_t kModernFeatures = Bit(feature::kVersion1) |
                                            Bit(feature::kRingIndirectDesc);
inline constexpr uint32_t kHeader = sizeof(VirtioNetHeader);

inline bool WaitFor(const std::function<bool()>& condition, int timeout_ms = 5000) {
  for (int waited = 0; waited < timeout_ms; waited += 2) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return condition();
}

inline void* AllocVector(void*, uint32_t size, uint8_t** data) {
  auto* v = new std::vector<uint8_t>(size);
  *data = v->data();
  return v;
}

class PortFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/vhu-port-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/sock";
    CreatePort();
  }

  // (Re)creates the port on path_, in server mode, with the given memory limit
  // (0: the default).
  void CreatePort(uint64_t max_guest_memory = 0) {
    if (port_) vhu_port_destroy(port_);
    vhu_port_options options{};
    options.socket_path = path_.c_str();
    options.mode = VHU_MODE_SERVER;
    options.max_guest_memory = max_guest_memory;
    port_ = vhu_port_create(&options, nullptr, 0);
    ASSERT_NE(port_, nullptr);
  }

  // Sends SET_MEM_TABLE with ram_'s one region, backed by 'fd'.
  void SendMemoryTable(int fd) {
    struct {
      MemoryTableHeader header;
      MemoryRegionDesc region;
    } table{{1, 0}, ram_.Region()};
    ASSERT_TRUE(frontend_->Send(Request::kSetMemTable, &table, sizeof table, {fd}).ok());
  }
  void TearDown() override {
    frontend_.reset();
    if (port_) vhu_port_destroy(port_);
    rmdir(dir_.c_str());
  }

  void Connect() {
    auto fe = Frontend::Connect(path_);
    ASSERT_TRUE(fe.ok()) << fe.status();
    frontend_ = *std::move(fe);
  }

  void Start(uint64_t features, int rx_call = -1, int tx_call = -1) {
    Connect();
    ASSERT_TRUE(
        frontend_->SetUp(ram_, features, {{0, &rx_, rx_call}, {1, &tx_, tx_call}}).ok());
    ASSERT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_READY; }));
  }

  vhu_port_status Status() {
    vhu_port_status s;
    vhu_port_get_status(port_, &s);
    return s;
  }

  void ExpectDropped(const std::string& reason) {
    EXPECT_TRUE(frontend_->WaitClosed(5000)) << "still connected";
    EXPECT_TRUE(WaitFor([&] { return Status().state == VHU_STATE_DISCONNECTED; }));
    EXPECT_THAT(Status().last_error, ::testing::HasSubstr(reason));
  }

  uint64_t PostRxBuffer(uint32_t size) {
    uint64_t gpa = ram_.Alloc(size);
    rx_.Publish(rx_.AddChain({{gpa, size}}, true));
    return gpa;
  }

  std::string dir_, path_;
  vhu_port* port_ = nullptr;
  GuestRam ram_{8 << 20};
  DriverRing rx_{ram_, 256};
  DriverRing tx_{ram_, 256};
  std::unique_ptr<Frontend> frontend_;
};

}  // namespace vhostuser::testing

#endif  // TESTS_UNIT_PORT_FIXTURE_H
