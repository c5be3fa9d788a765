// The data path from several threads while the control thread changes the device under
// it: the case the per-queue lock exists for.  Run under TSan by
// tests/sanitizers (GTEST_FILTER=Concurrency*).
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "protocol/protocol.h"
#include "test_frontend.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::testing {
namespace {

constexpr uint32_t kHeader = sizeof(VirtioNetHeader);

void* AllocVector(void*, uint32_t size, uint8_t** data) {
  auto* v = new std::vector<uint8_t>(size);
  *data = v->data();
  return v;
}

TEST(ConcurrencyTest, BurstsFromSeveralThreadsWhileTheControlPathChangesTheDevice) {
  char dir[] = "/tmp/vhu-conc-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/sock";
  vhu_port_options options{};
  options.socket_path = path.c_str();
  options.mode = VHU_MODE_SERVER;
  vhu_port* port = vhu_port_create(&options, nullptr, 0);
  ASSERT_NE(port, nullptr);

  GuestRam ram(16 << 20);
  DriverRing rx(ram, 256), tx(ram, 256);
  auto fe = Frontend::Connect(path);
  ASSERT_TRUE(fe.ok());
  ASSERT_TRUE((*fe)->SetUp(ram, Bit(feature::kVersion1) | Bit(feature::kNetMrgRxbuf),
                           {{0, &rx}, {1, &tx}}).ok());

  // Buffers the guest reuses: one receive buffer and one transmit frame per slot.
  const uint64_t rx_buffers = ram.Alloc(256 * 2048);
  const uint64_t tx_frames = ram.Alloc(256 * 128);
  for (int i = 0; i < 256; ++i) memset(ram.host(tx_frames + i * 128), 0, kHeader);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> enqueued{0}, dequeued{0};

  // The guest: keeps both rings topped up, recycling what the device used.
  std::thread guest([&] {
    uint32_t rx_posted = 0, tx_posted = 0, rx_used = 0, tx_used = 0;
    while (!stop) {
      VringUsedElem e;
      while (rx.PopUsed(&e)) ++rx_used;
      while (tx.PopUsed(&e)) ++tx_used;
      while (rx_posted - rx_used < 255) {
        rx.Publish(rx.AddChain({{rx_buffers + (rx_posted % 256) * 2048, 2048}}, true));
        ++rx_posted;
      }
      while (tx_posted - tx_used < 255) {
        tx.Publish(tx.AddChain({{tx_frames + (tx_posted % 256) * 128, kHeader + 64}}, false));
        ++tx_posted;
      }
      std::this_thread::yield();
    }
  });

  // Two switch threads share the guest's receive queue, as PMD threads share a tx queue.
  std::vector<std::thread> switches;
  for (int t = 0; t < 2; ++t) {
    switches.emplace_back([&] {
      uint8_t frame[64] = {};
      vhu_tx_packet pkts[32];
      for (auto& p : pkts) p = {frame, sizeof frame};
      while (!stop) enqueued += vhu_enqueue_burst(port, 0, pkts, 32, nullptr);
    });
  }
  switches.emplace_back([&] {
    void* pkts[32];
    while (!stop) {
      uint32_t n = vhu_dequeue_burst(port, 0, AllocVector, nullptr, pkts, 32, nullptr);
      for (uint32_t i = 0; i < n; ++i) delete static_cast<std::vector<uint8_t>*>(pkts[i]);
      dequeued += n;
    }
  });

  // Meanwhile the frontend disables and re-enables the rings and replaces the memory
  // table, again and again.
  struct {
    MemoryTableHeader header;
    MemoryRegionDesc region;
  } table{{1, 0}, ram.Region()};
  for (int i = 0; i < 300; ++i) {
    for (uint32_t vring : {0u, 1u}) {
      VringState off{vring, 0}, on{vring, 1};
      ASSERT_TRUE((*fe)->Send(Request::kSetVringEnable, &off, sizeof off).ok());
      ASSERT_TRUE((*fe)->Send(Request::kSetVringEnable, &on, sizeof on).ok());
    }
    if (i % 3 == 0) {
      ASSERT_TRUE((*fe)->Send(Request::kSetMemTable, &table, sizeof table, {ram.fd()}).ok());
    }
    ASSERT_TRUE((*fe)->Sync().ok());
  }
  stop = true;
  for (auto& t : switches) t.join();
  guest.join();

  EXPECT_GT(enqueued.load(), 0u);
  EXPECT_GT(dequeued.load(), 0u);
  vhu_vring_status rx_status, tx_status;
  vhu_vring_get_status(port, 0, &rx_status);
  vhu_vring_get_status(port, 1, &tx_status);
  EXPECT_EQ(rx_status.packets, enqueued.load());
  EXPECT_EQ(tx_status.packets, dequeued.load());
  EXPECT_EQ(rx_status.errors + tx_status.errors, 0u);
  vhu_port_status status;
  vhu_port_get_status(port, &status);
  EXPECT_EQ(status.state, VHU_STATE_READY) << status.last_error;
  fe->reset();
  vhu_port_destroy(port);
  rmdir(dir);
}

}  // namespace
}  // namespace vhostuser::testing
