#include "hostile_cases.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "protocol/protocol.h"
#include "runtime/unique_fd.h"
#include "test_frontend.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::hostile {
namespace {

using testing::DriverRing;
using testing::Frontend;
using testing::GuestRam;
using testing::PackedDriverRing;
using testing::TestFrame;

constexpr uint64_t kFeatures = Bit(feature::kVersion1) | Bit(feature::kRingIndirectDesc);
constexpr uint32_t kHeader = sizeof(VirtioNetHeader);
constexpr int kTimeoutMs = 5000;

// A test frame that all of a switch's flows treat alike: one Ethernet header (unicast,
// one EtherType) before TestFrame's bytes.  A switch forwards frames of one flow in
// order, but OVS sends a frame that missed its flow cache ahead of the rest of its
// burst, so frames of different flows may come back in another order.
std::vector<uint8_t> EchoFrame(uint32_t size, uint32_t seq) {
  static constexpr uint8_t kEthernet[14] = {0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02,
                                            0x88, 0xb5};
  auto frame = TestFrame(size, seq);
  memcpy(frame.data(), kEthernet, std::min<size_t>(size, sizeof kEthernet));
  return frame;
}

#define RETURN_IF_ERROR(expr)                  \
  do {                                         \
    if (absl::Status _s = (expr); !_s.ok()) return _s; \
  } while (0)

absl::Status Fail(const std::string& what) { return absl::InternalError(what); }

// Waits for the backend to close the connection, reading (and dropping) any replies.
bool WaitClosed(int fd, int timeout_ms = kTimeoutMs) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
    if (n > 0) continue;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    poll(&p, 1, static_cast<int>(left.count()));
  }
}

absl::StatusOr<std::unique_ptr<Frontend>> Open(Env& env) {
  return Frontend::Connect(env.socket_path);
}

// The end of a case that left the connection up: close our sending side and wait for
// the backend to close its own, so that the next connection finds the port free.
absl::Status CloseCleanly(std::unique_ptr<Frontend>& fe) {
  shutdown(fe->fd(), SHUT_WR);
  const bool closed = WaitClosed(fe->fd());
  fe.reset();
  return closed ? absl::OkStatus() : Fail("backend did not close after our shutdown");
}

absl::Status ExpectDropped(std::unique_ptr<Frontend>& fe) {
  const bool closed = WaitClosed(fe->fd());
  fe.reset();
  return closed ? absl::OkStatus() : Fail("the backend kept the connection");
}

absl::Status ExpectAlive(std::unique_ptr<Frontend>& fe) {
  if (absl::Status s = fe->Sync(); !s.ok()) {
    return Fail(absl::StrCat("connection did not survive: ", s.message()));
  }
  return CloseCleanly(fe);
}

absl::Status SendRaw(Frontend& fe, const void* bytes, size_t len,
                     const std::vector<int>& fds = {}) {
  iovec iov{const_cast<void*>(bytes), len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 64)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  if (sendmsg(fe.fd(), &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(len)) {
    return absl::UnavailableError(absl::StrCat("sendmsg: ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status SendState(Frontend& fe, Request r, uint32_t index, uint32_t num) {
  VringState s{index, num};
  return fe.Send(r, &s, sizeof s);
}

absl::Status SendTable(Frontend& fe, const std::vector<MemoryRegionDesc>& regions,
                       const std::vector<int>& fds, uint32_t nregions) {
  std::vector<uint8_t> payload(sizeof(MemoryTableHeader) +
                               regions.size() * sizeof(MemoryRegionDesc));
  MemoryTableHeader h{nregions, 0};
  memcpy(payload.data(), &h, sizeof h);
  memcpy(payload.data() + sizeof h, regions.data(),
         regions.size() * sizeof(MemoryRegionDesc));
  return fe.Send(Request::kSetMemTable, payload.data(),
                 static_cast<uint32_t>(payload.size()), fds);
}

// A message the backend refuses, then the wait for it to hang up.
absl::Status DroppedAfter(Env& env, const std::function<absl::Status(Frontend&)>& send) {
  auto fe = Open(env);
  if (!fe.ok()) return fe.status();
  (void)send(**fe);  // A send may fail once the backend has hung up: that is the point.
  return ExpectDropped(*fe);
}

// A guest with memory, one queue pair, and its rings set up and enabled.
struct Guest {
  explicit Guest(size_t ram_size = 4 << 20) : ram(ram_size), rx(ram, 256), tx(ram, 256) {}

  absl::Status Start(Env& env, uint64_t features = kFeatures) {
    auto f = Open(env);
    if (!f.ok()) return f.status();
    fe = *std::move(f);
    RETURN_IF_ERROR(fe->SetUp(ram, features, {{0, &rx}, {1, &tx}}));
    return WaitUntilLooped(env);
  }

  // A switch may take a moment to use a fresh port both ways (OVS maps its transmit
  // queues to the guest's once its main thread has seen the port ready; a frame that
  // comes sooner is dropped): probe until one frame makes the round trip.
  absl::Status WaitUntilLooped(Env& env) {
    PostRx(1);
    for (int attempt = 0; attempt < 50; ++attempt) {
      Send(probe);
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
      while (std::chrono::steady_clock::now() < deadline) {
        VringUsedElem e;
        if (rx.PopUsed(&e)) {
          ++rx_popped;
          // The probes sent before may only have been late (the switch starts
          // polling a fresh guest's transmit queue at its next PMD reload).  Once the
          // switch has taken them all from the transmit ring, their echoes find no
          // receive buffer and are dropped; until then they could come back ahead of
          // a case's own frames, into its buffers.  Should one still come, it is
          // recognised (TakeLateProbe).
          late_probes = attempt;
          const auto settle = std::chrono::steady_clock::now() + std::chrono::seconds(2);
          while (tx.used_idx() != tx.avail_idx() &&
                 std::chrono::steady_clock::now() < settle) {
            env.pump();
          }
          return absl::OkStatus();
        }
        env.pump();
      }
    }
    return Fail("no probe frame came back within 5 s of the set-up");
  }

  // Whether a returned buffer is one of the probes that came back late (then it is
  // not one of the frames the case waits for).
  bool TakeLateProbe(const VringUsedElem& e, const uint8_t* buffer) {
    if (late_probes == 0 || e.len != kHeader + probe.size() ||
        memcmp(buffer + kHeader, probe.data(), probe.size()) != 0) {
      return false;
    }
    --late_probes;
    return true;
  }

  // The frame behind a zeroed header, in guest memory; returns the buffer's address.
  uint64_t Place(const std::vector<uint8_t>& frame, const uint8_t* header = nullptr) {
    std::vector<uint8_t> bytes(kHeader, 0);
    if (header) memcpy(bytes.data(), header, kHeader);
    bytes.insert(bytes.end(), frame.begin(), frame.end());
    uint64_t gpa = ram.Alloc(bytes.size());
    memcpy(ram.host(gpa), bytes.data(), bytes.size());
    return gpa;
  }

  // Sends header+frame split at 'splits' (offsets into header+frame).
  void Send(const std::vector<uint8_t>& frame, std::vector<uint32_t> splits = {},
            bool indirect = false, const uint8_t* header = nullptr) {
    const uint64_t gpa = Place(frame, header);
    std::vector<DriverRing::Buffer> buffers;
    uint32_t at = 0;
    splits.push_back(static_cast<uint32_t>(kHeader + frame.size()));
    for (uint32_t end : splits) {
      buffers.push_back({gpa + at, end - at});
      at = end;
    }
    tx.Publish(indirect ? tx.AddIndirect(buffers, false) : tx.AddChain(buffers, false));
  }

  void PostRx(int n, uint32_t size = 2048) {
    for (int i = 0; i < n; ++i) {
      uint64_t gpa = ram.Alloc(size);
      rx_buffers.push_back(gpa);
      rx.Publish(rx.AddChain({{gpa, size}}, true));
    }
  }

  // Waits (pumping) until every frame came back to us, in order and intact.
  absl::Status ExpectEcho(Env& env, const std::vector<std::vector<uint8_t>>& frames) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
    size_t got = 0;
    while (got < frames.size()) {
      VringUsedElem e;
      if (rx.PopUsed(&e)) {
        const uint64_t gpa = rx_buffers[rx_popped++];
        if (TakeLateProbe(e, ram.host(gpa))) {
          PostRx(1);  // The case's frames need the buffers it posted.
          continue;
        }
        const auto& frame = frames[got];
        if (e.len != kHeader + frame.size() ||
            memcmp(ram.host(gpa) + kHeader, frame.data(), frame.size()) != 0) {
          return Fail(absl::StrCat("frame ", got, " came back as ", e.len - kHeader,
                                   " different bytes (sent ", frame.size(), ")"));
        }
        ++got;
        continue;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        return Fail(absl::StrCat(got, " of ", frames.size(), " frames came back"));
      }
      env.pump();
    }
    return absl::OkStatus();
  }

  // Waits (pumping) until the backend hangs up on us.
  absl::Status ExpectDroppedPumping(Env& env) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
    while (std::chrono::steady_clock::now() < deadline) {
      env.pump();
      if (WaitClosed(fe->fd(), 1)) {
        fe.reset();
        return absl::OkStatus();
      }
    }
    return Fail("the backend kept the connection");
  }

  // Sends a good frame and checks it comes back: what came before was harmless.
  absl::Status ExpectStillWorks(Env& env) {
    auto frame = TestFrame(100, 77);
    Send(frame);
    RETURN_IF_ERROR(ExpectEcho(env, {frame}));
    return CloseCleanly(fe);
  }

  GuestRam ram;
  DriverRing rx, tx;
  std::unique_ptr<Frontend> fe;
  std::vector<uint64_t> rx_buffers;
  size_t rx_popped = 0;
  const std::vector<uint8_t> probe = TestFrame(60, 0xee);
  int late_probes = 0;
};

// ---- The cases. ----

absl::Status OversizedHeader(Env& env) {
  return DroppedAfter(env, [](Frontend& fe) {
    MessageHeader h{static_cast<uint32_t>(Request::kSetMemTable), kVersion, 1u << 30};
    return SendRaw(fe, &h, sizeof h);
  });
}

absl::Status RequestOutOfRange(Env& env) {
  auto fe = Open(env);
  if (!fe.ok()) return fe.status();
  for (uint32_t request : {0u, 41u, 99u, 1000u, 0x7fffffffu, 0xffffffffu}) {
    uint64_t payload = 0;
    MessageHeader h{request, kVersion, sizeof payload};
    uint8_t bytes[sizeof h + sizeof payload];
    memcpy(bytes, &h, sizeof h);
    memcpy(bytes + sizeof h, &payload, sizeof payload);
    RETURN_IF_ERROR(SendRaw(**fe, bytes, sizeof bytes));
  }
  return ExpectAlive(*fe);
}

absl::Status TruncatedHeaderThenClose(Env& env) {
  auto fe = Open(env);
  if (!fe.ok()) return fe.status();
  MessageHeader h{static_cast<uint32_t>(Request::kGetFeatures), kVersion, 0};
  RETURN_IF_ERROR(SendRaw(**fe, &h, 7));
  return CloseCleanly(*fe);
}

absl::Status ShortPayload(Env& env) {
  return DroppedAfter(env, [](Frontend& fe) {
    uint32_t half = 1;
    return fe.Send(Request::kSetFeatures, &half, sizeof half);
  });
}

// SET_MEM_TABLE's header and half its payload, its fds attached, then the frontend goes.
absl::Status CloseMidMessage(Env& env) {
  auto fe = Open(env);
  if (!fe.ok()) return fe.status();
  GuestRam ram(64 << 10);
  MemoryRegionDesc r = ram.Region();
  MessageHeader h{static_cast<uint32_t>(Request::kSetMemTable), kVersion,
                  sizeof(MemoryTableHeader) + 2 * sizeof(MemoryRegionDesc)};
  uint8_t bytes[sizeof h + sizeof(MemoryTableHeader) + sizeof r];
  MemoryTableHeader th{2, 0};
  memcpy(bytes, &h, sizeof h);
  memcpy(bytes + sizeof h, &th, sizeof th);
  memcpy(bytes + sizeof h + sizeof th, &r, sizeof r);
  RETURN_IF_ERROR(SendRaw(**fe, bytes, sizeof bytes, {ram.fd(), ram.fd()}));
  return CloseCleanly(*fe);
}

absl::Status FdsOnMessageThatTakesNone(Env& env) {
  GuestRam ram(4096);
  return DroppedAfter(env, [&](Frontend& fe) {
    std::vector<int> fds(8, ram.fd());
    return fe.Send(Request::kGetFeatures, nullptr, 0, fds);
  });
}

absl::Status MoreFdsThanTheMessageTakes(Env& env) {
  return DroppedAfter(env, [](Frontend& fe) {
    UniqueFd a(eventfd(0, EFD_CLOEXEC)), b(eventfd(0, EFD_CLOEXEC));
    return fe.SendU64(Request::kSetVringKick, 0, {a.get(), b.get()});
  });
}

absl::Status MoreFdsThanAnyMessageTakes(Env& env) {
  return DroppedAfter(env, [](Frontend& fe) {
    UniqueFd a(eventfd(0, EFD_CLOEXEC));
    std::vector<int> fds(12, a.get());
    uint64_t index = 0;
    MessageHeader h{static_cast<uint32_t>(Request::kSetVringKick), kVersion, 8};
    uint8_t bytes[sizeof h + 8];
    memcpy(bytes, &h, sizeof h);
    memcpy(bytes + sizeof h, &index, 8);
    return SendRaw(fe, bytes, sizeof bytes, fds);
  });
}

absl::Status BadTable(Env& env, const std::function<absl::Status(Frontend&, GuestRam&)>& f) {
  GuestRam ram(64 << 10);
  return DroppedAfter(env, [&](Frontend& fe) { return f(fe, ram); });
}

absl::Status TooManyRegions(Env& env) {
  return BadTable(env, [](Frontend& fe, GuestRam& ram) {
    std::vector<MemoryRegionDesc> regions;
    for (int i = 0; i < 9; ++i) {
      MemoryRegionDesc r = ram.Region();
      r.memory_size = 4096;
      r.guest_phys_addr += i * 4096;
      r.userspace_addr += i * 4096;
      r.mmap_offset = i * 4096;
      regions.push_back(r);
    }
    return SendTable(fe, regions, std::vector<int>(8, ram.fd()), 9);
  });
}

absl::Status FewerFdsThanRegions(Env& env) {
  return BadTable(env, [](Frontend& fe, GuestRam& ram) {
    MemoryRegionDesc a = ram.Region(), b = ram.Region();
    a.memory_size = b.memory_size = ram.size() / 2;
    b.guest_phys_addr += ram.size();
    b.userspace_addr += ram.size();
    return SendTable(fe, {a, b}, {ram.fd()}, 2);
  });
}

absl::Status RegionOverflows(Env& env) {
  return BadTable(env, [](Frontend& fe, GuestRam& ram) {
    MemoryRegionDesc a = ram.Region(), b = ram.Region(), c = ram.Region();
    a.mmap_offset = UINT64_MAX - 4095;
    b.guest_phys_addr = UINT64_MAX - 100;
    b.userspace_addr = 0x10000000;
    c.userspace_addr = UINT64_MAX - 4095;
    c.guest_phys_addr = 0x40000000;
    // Three overflowing regions: the first is enough to refuse the table.
    return SendTable(fe, {a, b, c}, {ram.fd(), ram.fd(), ram.fd()}, 3);
  });
}

absl::Status RegionsOverlap(Env& env) {
  return BadTable(env, [](Frontend& fe, GuestRam& ram) {
    MemoryRegionDesc a = ram.Region(), b = ram.Region();
    a.memory_size = b.memory_size = ram.size() / 2;
    b.guest_phys_addr += ram.size() / 4;
    b.userspace_addr += ram.size();
    b.mmap_offset = ram.size() / 2;
    return SendTable(fe, {a, b}, {ram.fd(), ram.fd()}, 2);
  });
}

absl::Status ZeroSizeRegion(Env& env) {
  return BadTable(env, [](Frontend& fe, GuestRam& ram) {
    MemoryRegionDesc r = ram.Region();
    r.memory_size = 0;
    return SendTable(fe, {r}, {ram.fd()}, 1);
  });
}

absl::Status RegionBeyondItsFile(Env& env) {
  return BadTable(env, [](Frontend& fe, GuestRam& ram) {
    MemoryRegionDesc r = ram.Region();
    r.mmap_offset = 4096;
    return SendTable(fe, {r}, {ram.fd()}, 1);
  });
}

// Good tables, over and over on one connection, while a ring runs: every remap must
// unmap the table before.
absl::Status MemTableRepeatedWhileRunning(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  MemoryRegionDesc r = g.ram.Region();
  for (int i = 0; i < 10000 / env.scale_down; ++i) {
    RETURN_IF_ERROR(SendTable(*g.fe, {r}, {g.ram.fd()}, 1));
    if (i % 1000 == 0) RETURN_IF_ERROR(g.fe->Sync());
  }
  RETURN_IF_ERROR(g.fe->Sync());
  g.PostRx(1);
  auto frame = TestFrame(200, 3);
  g.Send(frame);
  RETURN_IF_ERROR(g.ExpectEcho(env, {frame}));
  return CloseCleanly(g.fe);
}

absl::Status VringNum(Env& env, uint32_t num) {
  return DroppedAfter(env, [num](Frontend& fe) {
    return SendState(fe, Request::kSetVringNum, 0, num);
  });
}

// SET_VRING_NUM 3 is legal while the packed feature is set; the frontend then takes
// the feature back and starts the ring as a split one, which only takes powers of two.
absl::Status VringNumPackedThenSplit(Env& env) {
  GuestRam ram(1 << 20);
  DriverRing ring(ram, 256);
  return DroppedAfter(env, [&](Frontend& fe) {
    RETURN_IF_ERROR(fe.SendU64(Request::kSetFeatures, kFeatures | Bit(feature::kRingPacked)));
    struct {
      MemoryTableHeader header;
      MemoryRegionDesc region;
    } table{{1, 0}, ram.Region()};
    RETURN_IF_ERROR(fe.Send(Request::kSetMemTable, &table, sizeof table, {ram.fd()}));
    RETURN_IF_ERROR(SendState(fe, Request::kSetVringNum, 0, 3));
    const VringAddress addr = ring.Address(0);
    RETURN_IF_ERROR(fe.Send(Request::kSetVringAddr, &addr, sizeof addr));
    RETURN_IF_ERROR(fe.SendU64(Request::kSetFeatures, kFeatures));
    UniqueFd kick(eventfd(0, EFD_CLOEXEC));
    return fe.SendU64(Request::kSetVringKick, 0, {kick.get()});
  });
}

absl::Status VringIndexHuge(Env& env) {
  return DroppedAfter(env, [](Frontend& fe) {
    return SendState(fe, Request::kSetVringNum, 0x10001, 256);
  });
}

absl::Status VringIndexOnePast(Env& env) {
  return DroppedAfter(env, [](Frontend& fe) {
    return SendState(fe, Request::kSetVringBase, VHU_MAX_VRINGS, 0);
  });
}

// The kick's payload has 8 bits of index, all valid since VHU_MAX_VRINGS is 256: what
// lies beyond them and the no-fd flag must be refused, not masked off.
absl::Status VringKickIndexBeyondPayload(Env& env) {
  return DroppedAfter(env, [](Frontend& fe) {
    UniqueFd kick(eventfd(0, EFD_CLOEXEC));
    return fe.SendU64(Request::kSetVringKick, 0x200 | 1, {kick.get()});
  });
}

absl::Status VringBaseBeyondIndexSpace(Env& env) {
  return DroppedAfter(env, [](Frontend& fe) {
    return SendState(fe, Request::kSetVringBase, 1, 70000);
  });
}

// A base far past the ring's size, on a ring whose used index says 0: the ring is
// trusted (as the guest does) and traffic flows.
absl::Status VringBaseBeyondRingSize(Env& env) {
  Guest g;
  auto f = Open(env);
  if (!f.ok()) return f.status();
  g.fe = *std::move(f);
  RETURN_IF_ERROR(g.fe->SetUp(g.ram, kFeatures, {{0, &g.rx, -1, 1000}, {1, &g.tx, -1, 1000}}));
  RETURN_IF_ERROR(g.WaitUntilLooped(env));
  g.PostRx(1);
  auto frame = TestFrame(64, 1);
  g.Send(frame);
  RETURN_IF_ERROR(g.ExpectEcho(env, {frame}));
  return CloseCleanly(g.fe);
}

// Ring set-up for vring 1 with 'address', then the kick that starts it.
absl::Status RingWith(Env& env, const std::vector<MemoryRegionDesc>& regions,
                      GuestRam& ram, VringAddress address) {
  return DroppedAfter(env, [&](Frontend& fe) {
    RETURN_IF_ERROR(SendTable(fe, regions, std::vector<int>(regions.size(), ram.fd()),
                              static_cast<uint32_t>(regions.size())));
    RETURN_IF_ERROR(SendState(fe, Request::kSetVringNum, 1, 256));
    RETURN_IF_ERROR(fe.Send(Request::kSetVringAddr, &address, sizeof address));
    UniqueFd kick(eventfd(0, EFD_CLOEXEC));
    return fe.SendU64(Request::kSetVringKick, 1, {kick.get()});
  });
}

absl::Status RingOutsideMemory(Env& env) {
  GuestRam ram(1 << 20);
  MemoryRegionDesc r = ram.Region();
  return RingWith(env, {r}, ram,
                  VringAddress{1, 0, r.userspace_addr + r.memory_size + 0x10000,
                               r.userspace_addr, r.userspace_addr + 8192, 0});
}

// Two regions adjacent in the frontend's address space, mapped separately by us: a
// ring that starts at the end of the first runs into the second.
absl::Status RingStraddlesRegions(Env& env) {
  GuestRam ram(1 << 20);
  MemoryRegionDesc a = ram.Region(), b = ram.Region();
  a.memory_size = b.memory_size = ram.size() / 2;
  b.guest_phys_addr += ram.size() / 2;
  b.userspace_addr += ram.size() / 2;
  b.mmap_offset = ram.size() / 2;
  return RingWith(env, {a, b}, ram,
                  VringAddress{1, 0, a.userspace_addr + a.memory_size - 1024,
                               a.userspace_addr + 0x8000, a.userspace_addr + 0x4000, 0});
}

absl::Status RingsOverlap(Env& env) {
  GuestRam ram(1 << 20);
  MemoryRegionDesc r = ram.Region();
  return RingWith(env, {r}, ram,
                  VringAddress{1, 0, r.userspace_addr, r.userspace_addr + 1024,
                               r.userspace_addr + 8192, 0});
}

absl::Status RingMisaligned(Env& env) {
  GuestRam ram(1 << 20);
  MemoryRegionDesc r = ram.Region();
  r.mmap_offset = 4;
  r.memory_size -= 4096;
  return RingWith(env, {r}, ram,
                  VringAddress{1, 0, r.userspace_addr + 0x10000, r.userspace_addr + 0x20000,
                               r.userspace_addr + 0x18000, 0});
}

// Pumps the guest until the switch hangs up on it, for at most 'seconds'.
bool DroppedWithin(Guest& g, Env& env, int seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) {
    env.pump();
    if (WaitClosed(g.fe->fd(), 1)) {
      g.fe.reset();
      return true;
    }
  }
  return false;
}

absl::Status CallFdNotAnEventfd(Env& env) {
  return DroppedAfter(env, [](Frontend& fe) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return Fail("pipe");
    UniqueFd r(p[0]), w(p[1]);
    return fe.SendU64(Request::kSetVringCall, 0, {w.get()});
  });
}

// The frontend shares the call eventfd's file description with the switch, which made
// it non-blocking: it clears O_NONBLOCK again and fills the counter, then has a frame
// delivered to it.  The switch's interrupt write sleeps until the guest reads; the
// switch must break it off and drop this frontend rather than keep its thread asleep.
absl::Status CallFdMadeBlockingAgain(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  UniqueFd call(eventfd(0, EFD_CLOEXEC));
  RETURN_IF_ERROR(g.fe->SendU64(Request::kSetVringCall, 0, {call.get()}));
  RETURN_IF_ERROR(g.fe->Sync());
  const int flags = fcntl(call.get(), F_GETFL);
  if (flags < 0 || !(flags & O_NONBLOCK)) return Fail("the switch left the call fd blocking");
  if (fcntl(call.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) return Fail("fcntl");
  const uint64_t almost_full = 0xfffffffffffffffeull;
  if (write(call.get(), &almost_full, sizeof almost_full) != 8) return Fail("write");
  g.PostRx(4);
  g.Send(TestFrame(60, 1));
  if (DroppedWithin(g, env, 5)) return absl::OkStatus();
  uint64_t value;  // Let a switch thread that is still asleep go.
  [[maybe_unused]] ssize_t n = read(call.get(), &value, sizeof value);
  return Fail("still connected 5 s after its call eventfd was made to block");
}

absl::Status LogBaseAtTheTop(Env& env) {
  auto fe = Open(env);
  if (!fe.ok()) return fe.status();
  GuestRam ram(4096);
  RETURN_IF_ERROR(
      (*fe)->SendU64(Request::kSetProtocolFeatures, Bit(protocol_feature::kLogShmfd)));
  uint64_t log[2] = {4096, UINT64_MAX - 4095};  // size, offset: wraps
  RETURN_IF_ERROR((*fe)->Send(Request::kSetLogBase, log, sizeof log, {ram.fd()}));
  return ExpectDropped(*fe);
}

absl::Status InflightLoop(Env& env) {
  auto fe = Open(env);
  if (!fe.ok()) return fe.status();
  GuestRam ram(4096);
  for (int i = 0; i < 10000 / env.scale_down; ++i) {
    uint8_t inflight[24] = {};
    RETURN_IF_ERROR((*fe)->Send(Request::kGetInflightFd, inflight, sizeof inflight));
    RETURN_IF_ERROR(
        (*fe)->Send(Request::kSetInflightFd, inflight, sizeof inflight, {ram.fd()}));
    if (i % 500 == 0) RETURN_IF_ERROR((*fe)->Sync());
  }
  return ExpectAlive(*fe);
}

// ---- Descriptor chains, on a running queue pair. ----

absl::Status BadChain(Env& env, const std::function<void(Guest&)>& build) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  build(g);
  return g.ExpectDroppedPumping(env);
}

absl::Status ChainLoop(Env& env) {
  return BadChain(env, [](Guest& g) {
    uint64_t gpa = g.ram.Alloc(64);
    uint16_t head = g.tx.AddChain({{gpa, 32}, {gpa + 32, 32}}, false);
    VringDesc& second = g.tx.desc()[(head + 1) % 256];
    second.next = head;
    second.flags |= kDescFlagNext;
    g.tx.Publish(head);
  });
}

// Every descriptor of the ring chained to the next, the last back to the first.
absl::Status ChainLongerThanRing(Env& env) {
  return BadChain(env, [](Guest& g) {
    uint64_t gpa = g.ram.Alloc(64);
    for (uint16_t i = 0; i < 256; ++i) {
      g.tx.desc()[i] = VringDesc{gpa, 16, kDescFlagNext, static_cast<uint16_t>((i + 1) % 256)};
    }
    g.tx.Publish(0);
  });
}

absl::Status IndirectInIndirect(Env& env) {
  return BadChain(env, [](Guest& g) {
    uint64_t gpa = g.ram.Alloc(64);
    uint16_t head = g.tx.AddIndirect({{gpa, 64}}, false);
    auto* table = reinterpret_cast<VringDesc*>(g.ram.host(g.tx.desc()[head].addr));
    table[0].flags = kDescFlagIndirect;
    table[0].len = 16;
    g.tx.Publish(head);
  });
}

absl::Status IndirectTablePartial(Env& env) {
  return BadChain(env, [](Guest& g) {
    uint64_t gpa = g.ram.Alloc(64);
    uint16_t head = g.tx.AddIndirect({{gpa, 32}, {gpa + 32, 32}}, false);
    g.tx.desc()[head].len = 20;
    g.tx.Publish(head);
  });
}

// An indirect descriptor whose table is the ring's own descriptor table (this hung
// the data path for ever before it was fixed).
absl::Status IndirectTableIsTheRing(Env& env) {
  return BadChain(env, [](Guest& g) {
    VringDesc* desc = g.tx.desc();
    const uint64_t table_gpa =
        GuestRam::kGuestBase +
        (reinterpret_cast<uint8_t*>(desc) - g.ram.host(GuestRam::kGuestBase));
    // Descriptor 0 (the probe's, long used) becomes the indirect one, and the table is
    // the whole descriptor table from its start: its first entry is descriptor 0 again.
    desc[0] = VringDesc{table_gpa, 16 * 4, kDescFlagIndirect, 0};
    g.tx.Publish(0);
  });
}

// Guest memory as two regions, adjacent in guest-physical space but separate mappings
// for us; a descriptor runs from the end of the first into the second.
absl::Status BufferStraddlesRegions(Env& env) {
  Guest g;
  auto f = Open(env);
  if (!f.ok()) return f.status();
  g.fe = *std::move(f);
  RETURN_IF_ERROR(g.fe->SetUp(g.ram, kFeatures, {{0, &g.rx}, {1, &g.tx}}));
  RETURN_IF_ERROR(g.WaitUntilLooped(env));
  MemoryRegionDesc a = g.ram.Region(), b = g.ram.Region();
  a.memory_size = b.memory_size = g.ram.size() / 2;
  b.guest_phys_addr += g.ram.size() / 2;
  b.userspace_addr += g.ram.size() / 2;
  b.mmap_offset = g.ram.size() / 2;
  RETURN_IF_ERROR(SendTable(*g.fe, {a, b}, {g.ram.fd(), g.ram.fd()}, 2));
  RETURN_IF_ERROR(g.fe->Sync());
  // A good frame first: the two-region table works.
  g.PostRx(1);
  auto frame = TestFrame(64, 5);
  g.Send(frame);
  RETURN_IF_ERROR(g.ExpectEcho(env, {frame}));
  const uint64_t boundary = GuestRam::kGuestBase + g.ram.size() / 2;
  g.tx.Publish(g.tx.AddChain({{boundary - 32, 128}}, false));
  return g.ExpectDroppedPumping(env);
}

absl::Status ChainShorterThanHeader(Env& env) {
  return BadChain(env, [](Guest& g) {
    g.tx.Publish(g.tx.AddChain({{g.ram.Alloc(8), 8}}, false));
  });
}

absl::Status WritableDescriptorInTransmitChain(Env& env) {
  return BadChain(env, [](Guest& g) {
    g.tx.Publish(g.tx.AddChain({{g.ram.Alloc(128), 128}}, /*writable=*/true));
  });
}

absl::Status AvailIndexRunsAhead(Env& env) {
  return BadChain(env, [](Guest& g) {
    g.tx.set_avail_idx(static_cast<uint16_t>(g.tx.avail_idx() + 1000));
  });
}

absl::Status HeadOutOfRange(Env& env) {
  return BadChain(env, [](Guest& g) {
    const uint16_t idx = g.tx.avail_idx();
    g.tx.avail_ring()[idx % 256] = 300;
    g.tx.set_avail_idx(static_cast<uint16_t>(idx + 1));
  });
}

absl::Status ZeroLengthOutsideMemory(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  g.PostRx(2);
  auto frame = TestFrame(64, 1);
  const uint64_t gpa = g.Place(frame);
  g.tx.Publish(g.tx.AddChain({{gpa, kHeader + 64}, {0xdead00000000ull, 0}}, false));
  RETURN_IF_ERROR(g.ExpectEcho(env, {frame}));
  return g.ExpectStillWorks(env);
}

// A transmit chain of exactly the virtio-net header: a frame of no bytes, between two
// good ones.  It is dropped (the switch counts it in rx_errors); the ring goes on.
absl::Status HeaderOnly(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  g.PostRx(3);  // The two frames, and ExpectStillWorks()'s.
  auto before = EchoFrame(64, 1), after = EchoFrame(64, 2);
  g.Send(before);
  const uint64_t header = g.ram.Alloc(kHeader);
  memset(g.ram.host(header), 0, kHeader);
  g.tx.Publish(g.tx.AddChain({{header, kHeader}}, false));
  g.Send(after);
  RETURN_IF_ERROR(g.ExpectEcho(env, {before, after}));
  return g.ExpectStillWorks(env);
}

absl::Status HeaderSplitOverDescriptors(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  g.PostRx(4);
  auto f1 = EchoFrame(60, 1), f2 = EchoFrame(1000, 2), f3 = EchoFrame(300, 3);
  g.Send(f1, {5});                       // 5 + 7 header bytes, then the frame
  g.Send(f2, {1, 2, 3, 11, 12, 500});    // header over four descriptors
  g.Send(f3, {6, 40}, /*indirect=*/true);
  RETURN_IF_ERROR(g.ExpectEcho(env, {f1, f2, f3}));
  return g.ExpectStillWorks(env);
}

absl::Status CsumStartBeyondThePacket(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  g.PostRx(2);
  VirtioNetHeader h{};
  h.flags = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM, which we never negotiated.
  h.gso_type = 4;  // GSO_TCPV6, neither.
  h.hdr_len = 0xffff;
  h.gso_size = 0xffff;
  h.csum_start = 0xfff0;
  h.csum_offset = 0xfff0;
  auto frame = TestFrame(80, 9);
  g.Send(frame, {}, false, reinterpret_cast<const uint8_t*>(&h));
  RETURN_IF_ERROR(g.ExpectEcho(env, {frame}));
  return g.ExpectStillWorks(env);
}

// A guest thread rewrites descriptors and the avail index at random while the switch
// reads them.  Whatever the switch concludes (a broken ring, or packets) it must not
// crash, read outside guest memory or leak.
absl::Status RacingGuest(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  g.PostRx(200);
  const uint64_t buffers = g.ram.Alloc(256 * 128);
  for (int i = 0; i < 256; ++i) memset(g.ram.host(buffers + i * 128), 0, 128);
  std::atomic<bool> stop{false}, wild{false};
  std::thread writer([&] {
    uint64_t x = 0x9e3779b97f4a7c15ull;
    auto next = [&x] {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return x;
    };
    VringDesc* desc = g.tx.desc();
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t r = next();
      const uint16_t i = r & 255;
      VringDesc d;
      const unsigned kind = (r >> 8) & 255;
      if (kind == 0 && wild.load(std::memory_order_relaxed)) {  // Anywhere: it breaks.
        d = {r, static_cast<uint32_t>(r >> 40), static_cast<uint16_t>(r >> 20),
             static_cast<uint16_t>(r >> 36)};
      } else if (kind < 16) {  // Chained to a descriptor a little further on.
        d = {buffers + i * 128, 64, kDescFlagNext,
             static_cast<uint16_t>((i + 1 + ((r >> 24) & 3)) & 255)};
      } else {  // Plausible: a buffer of some length.
        d = {buffers + i * 128, 16 + static_cast<uint32_t>((r >> 16) % 112), 0, 0};
      }
      __atomic_store_n(&desc[i].addr, d.addr, __ATOMIC_RELAXED);
      __atomic_store_n(&desc[i].len, d.len, __ATOMIC_RELAXED);
      __atomic_store_n(&desc[i].flags, d.flags, __ATOMIC_RELAXED);
      __atomic_store_n(&desc[i].next, d.next, __ATOMIC_RELAXED);
      uint16_t* avail = g.tx.avail_ring();  // avail[-1] is avail->idx.
      __atomic_store_n(&avail[(r >> 48) & 255], static_cast<uint16_t>((r >> 32) & 255),
                       __ATOMIC_RELAXED);
      if ((r & 0xf000) == 0) {  // Sometimes the index itself, sometimes wildly.
        const uint16_t idx = __atomic_load_n(&avail[-1], __ATOMIC_RELAXED);
        if (((r >> 4) & 0xff) == 0 && wild.load(std::memory_order_relaxed)) {
          __atomic_store_n(&avail[-1], static_cast<uint16_t>(r >> 52), __ATOMIC_RELEASE);
        } else if (static_cast<uint16_t>(idx - g.tx.used_idx()) < 250) {
          __atomic_store_n(&avail[-1], static_cast<uint16_t>(idx + 1), __ATOMIC_RELEASE);
        }
      }
    }
  });
  // Plausible rewrites for 200 ms (the switch reads descriptors as they change), then
  // wild ones too (addresses anywhere, the index anywhere) until the ring breaks.
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::milliseconds(300);
  bool dropped = false;
  while (std::chrono::steady_clock::now() < end) {
    if (std::chrono::steady_clock::now() > start + std::chrono::milliseconds(200)) wild = true;
    env.pump();
    if (WaitClosed(g.fe->fd(), 0)) {
      dropped = true;
      break;
    }
  }
  stop = true;
  writer.join();
  if (dropped) {
    g.fe.reset();
    return absl::OkStatus();
  }
  return CloseCleanly(g.fe);
}

// ---- Faults under traffic. ----

// The guest's side of steady traffic, on a thread of its own: up to 128 frames in flight
// each way, a fixed buffer per descriptor, every frame that comes back checked.  The
// thread also pumps (in process, it is the switch's data path too).
class GuestTraffic {
 public:
  GuestTraffic(Guest& g, Env& env) : g_(g), env_(env) {
    tx_slots_ = g.ram.Alloc(256 * 256);
    rx_slots_ = g.ram.Alloc(256 * 2048);
    // Take over the rings where the probes left them.
    // Probes sent before the first came back may still be in flight: they are posted
    // and not done, and their used entries count when they come.
    tx_posted_ = g.tx.avail_idx();
    tx_done_ = g.tx.popped();
    rx_posted_ = g.rx.avail_idx();
    rx_done_ = static_cast<uint16_t>(g.rx_popped);
  }
  ~GuestTraffic() {
    if (thread_.joinable()) Stop().IgnoreError();
  }

  void Start() {
    stop_ = false;
    thread_ = std::thread([this] { Run(); });
  }
  absl::Status Stop() {
    stop_ = true;
    thread_.join();
    if (!bad_.empty()) return Fail(bad_);
    return absl::OkStatus();
  }
  uint64_t echoed() const { return echoed_.load(); }

  // Runs until 'n' more frames came back (or 5 s passed).
  absl::Status ExpectFlowing(uint64_t n) {
    const uint64_t from = echoed();
    Start();
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
    while (echoed() < from + n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    RETURN_IF_ERROR(Stop());
    if (echoed() < from + n) {
      return Fail(absl::StrCat("traffic did not resume: ", echoed() - from, " of ", n,
                               " frames came back"));
    }
    return absl::OkStatus();
  }

 private:
  void Run() {
    while (!stop_.load(std::memory_order_relaxed)) {
      VringUsedElem e;
      while (g_.tx.PopUsed(&e)) ++tx_done_;
      while (g_.rx.PopUsed(&e)) {
        ++rx_done_;
        const uint8_t* b = g_.ram.host(g_.rx.desc()[e.id % 256].addr);
        if (g_.TakeLateProbe(e, b)) continue;
        bool ok = e.len == kHeader + kFrame;
        for (uint32_t i = 1; ok && i < kFrame; ++i) {
          ok = b[kHeader + i] == static_cast<uint8_t>(b[kHeader] + i);
        }
        if (!ok && bad_.empty()) bad_ = absl::StrCat("a frame came back damaged (", e.len, " bytes)");
        ++echoed_;
      }
      while (static_cast<uint16_t>(rx_posted_ - rx_done_) < 128) {
        const uint16_t slot = static_cast<uint16_t>(g_.rx.avail_idx() % 256);
        const uint64_t gpa = rx_slots_ + uint64_t{slot} * 2048;
        g_.rx.Publish(g_.rx.AddChain({{gpa, 2048}}, true));
        ++rx_posted_;
      }
      for (int burst = 0; burst < 8 && static_cast<uint16_t>(tx_posted_ - tx_done_) < 128;
           ++burst) {
        const uint16_t slot = static_cast<uint16_t>(g_.tx.avail_idx() % 256);
        const uint64_t gpa = tx_slots_ + uint64_t{slot} * 256;
        memset(g_.ram.host(gpa), 0, kHeader);
        auto frame = TestFrame(kFrame, seq_++);
        memcpy(g_.ram.host(gpa) + kHeader, frame.data(), kFrame);
        g_.tx.Publish(g_.tx.AddChain({{gpa, kHeader + kFrame}}, false));
        ++tx_posted_;
      }
      env_.pump();
    }
  }

  static constexpr uint32_t kFrame = 100;
  Guest& g_;
  Env& env_;
  uint64_t tx_slots_, rx_slots_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> echoed_{0};
  uint16_t tx_posted_, tx_done_, rx_posted_, rx_done_;
  uint32_t seq_ = 0;
  std::string bad_;
};

// Waits for the backend to have handled everything sent so far, then lets the traffic
// run a little: spreads a thousand control messages over a good part of a second.
absl::Status Breathe(Frontend& fe) {
  RETURN_IF_ERROR(fe.Sync());
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  return absl::OkStatus();
}

// SET_MEM_TABLE (the same memory, mapped afresh each time) 1,000 times while frames
// flow both ways: every remap happens between two bursts, no frame is damaged, and the
// traffic goes on.
absl::Status MemTableDuringTraffic(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  GuestTraffic traffic(g, env);
  RETURN_IF_ERROR(traffic.ExpectFlowing(100));
  const uint64_t before = traffic.echoed();
  traffic.Start();
  const MemoryRegionDesc r = g.ram.Region();
  for (int i = 0; i < 1000 / env.scale_down; ++i) {
    RETURN_IF_ERROR(SendTable(*g.fe, {r}, {g.ram.fd()}, 1));
    if (i % 10 == 9) RETURN_IF_ERROR(Breathe(*g.fe));
  }
  RETURN_IF_ERROR(g.fe->Sync());
  RETURN_IF_ERROR(traffic.Stop());
  if (traffic.echoed() <= before) return Fail("no frame came back while the tables changed");
  RETURN_IF_ERROR(traffic.ExpectFlowing(200));
  return CloseCleanly(g.fe);
}

// 1,000 cycles of SET_VRING_ENABLE 0 then 1 on both vrings while frames flow.
absl::Status VringToggleUnderTraffic(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  GuestTraffic traffic(g, env);
  RETURN_IF_ERROR(traffic.ExpectFlowing(100));
  const uint64_t before = traffic.echoed();
  traffic.Start();
  for (int i = 0; i < 1000 / env.scale_down; ++i) {
    for (uint32_t enable : {0u, 1u}) {
      RETURN_IF_ERROR(SendState(*g.fe, Request::kSetVringEnable, 0, enable));
      RETURN_IF_ERROR(SendState(*g.fe, Request::kSetVringEnable, 1, enable));
    }
    if (i % 10 == 9) RETURN_IF_ERROR(Breathe(*g.fe));
  }
  RETURN_IF_ERROR(g.fe->Sync());
  RETURN_IF_ERROR(traffic.Stop());
  if (traffic.echoed() <= before) return Fail("no frame came back during the cycles");
  RETURN_IF_ERROR(traffic.ExpectFlowing(200));
  return CloseCleanly(g.fe);
}

// The frontend shrinks its memfd after the switch mapped it, then hands the switch
// buffers in the part that is gone.  Touching a shared mapping past the end of its file
// is SIGBUS, which the switch must absorb (sigbus_guard.h) and answer by dropping this
// frontend.
absl::Status MemfdShrunkUnderTheSwitch(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  const uint64_t keep = 1 << 20;  // The rings and the first buffers live below.
  g.ram.Alloc(2 << 20);
  const uint64_t tx_far = g.ram.Alloc(4096), rx_far = g.ram.Alloc(4096);
  if (ftruncate(g.ram.fd(), static_cast<off_t>(keep)) != 0) return Fail("ftruncate");
  g.rx.Publish(g.rx.AddChain({{rx_far, 2048}}, true));
  g.tx.Publish(g.tx.AddChain({{tx_far, kHeader + 64}}, false));
  if (DroppedWithin(g, env, 5)) return absl::OkStatus();
  return Fail("still connected 5 s after handing the switch buffers past the file's end");
}

// The same with the dirty log of a migration: the switch marks it from its PMD thread
// as it returns the frontend's buffers.  Its mapping was not guarded, so the first
// mark past the file's new end was a SIGBUS that ended ovs-vswitchd.
absl::Status LogShrunkUnderTheSwitch(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  UniqueFd log(memfd_create("hostile-log", MFD_CLOEXEC));
  const uint64_t log_size = 1 << 16;  // One bit per 4 KiB page: 2 GiB of guest.
  if (!log.valid() || ftruncate(log.get(), static_cast<off_t>(log_size)) != 0) {
    return Fail("memfd for the log");
  }
  uint64_t base[2] = {log_size, 0};  // size, offset
  RETURN_IF_ERROR(g.fe->Send(Request::kSetLogBase, base, sizeof base, {log.get()}));
  if (auto reply = g.fe->Receive(Request::kSetLogBase); !reply.ok()) return reply.status();
  RETURN_IF_ERROR(g.fe->SendU64(Request::kSetFeatures, kFeatures |
                                                           Bit(feature::kProtocolFeatures) |
                                                           Bit(feature::kLogAll)));
  RETURN_IF_ERROR(g.fe->Sync());
  if (ftruncate(log.get(), 0) != 0) return Fail("ftruncate");
  const uint64_t tx_buffer = g.ram.Alloc(4096), rx_buffer = g.ram.Alloc(4096);
  g.rx.Publish(g.rx.AddChain({{rx_buffer, 2048}}, true));
  g.tx.Publish(g.tx.AddChain({{tx_buffer, kHeader + 64}}, false));
  if (DroppedWithin(g, env, 5)) return absl::OkStatus();
  return Fail("still connected 5 s after truncating the dirty log under the switch");
}

absl::Status WellBehaved(Env& env) {
  Guest g;
  RETURN_IF_ERROR(g.Start(env));
  g.PostRx(8);
  std::vector<std::vector<uint8_t>> frames;
  for (uint32_t i = 0; i < 8; ++i) {
    frames.push_back(EchoFrame(60 + 100 * i, i));
    g.Send(frames.back());
  }
  RETURN_IF_ERROR(g.ExpectEcho(env, frames));
  return CloseCleanly(g.fe);
}


// ---- Long-running attacks (tests/isolation). ----

using Clock = std::chrono::steady_clock;

Clock::time_point DeadlineAfter(double seconds) {
  return Clock::now() + std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6));
}

void Note(AttackReport& r, const std::string& what) {
  if (r.notes.find(what) != std::string::npos) return;
  if (!r.notes.empty()) r.notes += "; ";
  r.notes += what;
}

// Connects to the port's socket before 'deadline', retrying while its backlog is full
// (a blocking connect waits at most 100 ms a time) or while it is not there.
absl::StatusOr<std::unique_ptr<Frontend>> ConnectBefore(const std::string& path,
                                                        Clock::time_point deadline,
                                                        AttackReport& r) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  while (Clock::now() < deadline) {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    timeval tv{0, 100000};
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return std::make_unique<Frontend>(std::move(fd));
    }
    ++r.refused;
    if (errno != EAGAIN) usleep(1000);
  }
  return absl::DeadlineExceededError("the port took no connection before the deadline");
}

// Hangs up as a frontend does (no more requests: our sending side closed), then waits a
// little for the switch to close its side, so that the next connection finds the port
// free rather than being turned away as a second frontend.
void HangUp(std::unique_ptr<Frontend>& fe, int wait_ms) {
  shutdown(fe->fd(), SHUT_WR);
  WaitClosed(fe->fd(), wait_ms);
  fe.reset();
}

// TCP sockets over 127.0.0.1 whose close() blocks: SO_LINGER {1, 5 s} with data queued
// that the peer never reads (its receive buffer full, ours too).  The accepted ends are
// kept, unread, until the attack ends; closing them then resets the connections, which
// ends any close() still lingering on the other end.
class LingerSockets {
 public:
  absl::Status Init() {
    rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
      nofile.rlim_cur = nofile.rlim_max;
      setrlimit(RLIMIT_NOFILE, &nofile);
    }
    listener_ = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int small = 1024;
    setsockopt(listener_.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    addr_ = {};
    addr_.sin_family = AF_INET;
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr_;
    if (!listener_.valid() ||
        bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr_), sizeof addr_) != 0 ||
        listen(listener_.get(), 64) != 0 ||
        getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr_), &len) != 0) {
      return Fail(absl::StrCat("127.0.0.1 listener: ", strerror(errno)));
    }
    return absl::OkStatus();
  }

  // A connected socket with unsent data and SO_LINGER {1, 5 s}.
  absl::StatusOr<UniqueFd> Make() {
    UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const int small = 1024;
    setsockopt(c.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    if (!c.valid() ||
        connect(c.get(), reinterpret_cast<sockaddr*>(&addr_), sizeof addr_) != 0) {
      return Fail(absl::StrCat("connect 127.0.0.1: ", strerror(errno)));
    }
    UniqueFd a(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!a.valid()) return Fail(absl::StrCat("accept: ", strerror(errno)));
    held_.push_back(std::move(a));
    fcntl(c.get(), F_SETFL, fcntl(c.get(), F_GETFL) | O_NONBLOCK);
    static char junk[65536];
    // Until both buffers are full: the peer's receive window is closed, and what we
    // queue now (and the FIN after it) cannot leave.
    for (int i = 0; i < 10000; ++i) {
      if (send(c.get(), junk, sizeof junk, MSG_NOSIGNAL) < 0) {
        if (errno == EAGAIN) {
          // The stack may still open a window: give it a moment, then try again.
          usleep(200);
          if (send(c.get(), junk, sizeof junk, MSG_NOSIGNAL) < 0 && errno == EAGAIN) break;
          continue;
        }
        return Fail(absl::StrCat("send: ", strerror(errno)));
      }
    }
    linger l{1, 5};
    setsockopt(c.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    return c;
  }

  size_t held() const { return held_.size(); }

  // Our copy of a socket the switch never got: close it without lingering.
  static void Discard(UniqueFd& c) {
    linger l{1, 0};
    setsockopt(c.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
    c.reset();
  }

 private:
  UniqueFd listener_;
  sockaddr_in addr_{};
  std::vector<UniqueFd> held_;
};

// Lingering sockets passed to the switch in ordinary messages: as the fd of a
// GET_FEATURES (a protocol error: the switch drops us and closes it) and as a vring's
// kick fd (kept until the frontend hangs up), connection after connection.  Whoever
// closes the last reference sleeps up to 5 s in close().
absl::Status LingerFdsAttack(const AttackOptions& o, AttackReport& r, bool dry) {
  LingerSockets linger;
  RETURN_IF_ERROR(linger.Init());
  const auto deadline = DeadlineAfter(o.seconds);
  bool last_was_error = false;
  int extra = 0;
  for (int i = 0;; ++i) {
    const bool past = Clock::now() >= deadline;
    if (past && (last_was_error || ++extra > 5)) break;
    // Past the deadline, one more connection whose fd is a protocol error, so that the
    // port's last word is an error.
    const bool as_kick = !past && i % 2 == 0;
    if (linger.held() > 400) {
      Note(r, "stopped making sockets at 400");
      if (last_was_error) break;
    }
    auto sock = linger.Make();
    if (!sock.ok()) return sock.status();
    if (dry) {
      // The control experiment: the same sockets made, the same connections and
      // messages, but the fd the switch gets is an eventfd, and the lingering socket
      // is reset at once.  What this costs the neighbours is not the lingering.
      LingerSockets::Discard(*sock);
      *sock = UniqueFd(eventfd(0, EFD_CLOEXEC));
    }
    auto fe = ConnectBefore(o.socket_path, past ? Clock::now() + std::chrono::seconds(2)
                                                : deadline, r);
    if (!fe.ok()) {
      LingerSockets::Discard(*sock);
      if (past) break;
      continue;
    }
    // The message goes in two parts: its first 4 bytes carry the fd; only once the
    // switch holds it (in flight or received, but not yet acted on: the message is
    // incomplete) do we close our copy, then send the rest.  So the switch's close,
    // whenever it comes, is the last one, the one that lingers.
    absl::Status sent;
    std::vector<uint8_t> message(sizeof(MessageHeader));
    MessageHeader h{static_cast<uint32_t>(as_kick ? Request::kSetVringKick
                                                  : Request::kGetFeatures),
                    kVersion, as_kick ? 8u : 0u};
    memcpy(message.data(), &h, sizeof h);
    if (as_kick) {
      sent = (*fe)->Send(Request::kSetOwner, nullptr, 0);
      message.resize(message.size() + 8, 0);  // vring 0
    }
    if (sent.ok()) sent = SendRaw(**fe, message.data(), 4, {sock->get()});
    if (!sent.ok()) {
      LingerSockets::Discard(*sock);  // It never left: ours is the last reference.
      Note(r, absl::StrCat("send: ", sent.message()));
      (*fe).reset();
      continue;
    }
    sock->reset();  // Not the last reference: the switch has one.
    if (absl::Status s = SendRaw(**fe, message.data() + 4, message.size() - 4); !s.ok()) {
      Note(r, absl::StrCat("send: ", s.message()));
    }
    ++r.connections;
    last_was_error = !as_kick;
    HangUp(*fe, 20);
  }
  Note(r, absl::StrCat(linger.held(), " lingering sockets made"));
  return absl::OkStatus();
}

// A guest receive ring (the switch's transmit queue) made of zero-length writable
// descriptors chained through the whole ring, with every avail entry naming that one
// chain and the avail index kept a full ring ahead of the used index; mergeable
// buffers are negotiated, so a switch that looks for room for a frame goes on from
// chain to chain.  Packed: the whole ring is one chain of zero-length descriptors,
// posted again each time the switch hands it back.  One connection: a switch that
// drops it has defended itself.
absl::Status ZeroLengthRxChainAttack(const AttackOptions& o, AttackReport& r, bool packed) {
  const auto start = Clock::now();
  const auto deadline = DeadlineAfter(o.seconds);
  uint64_t topups = 0;
  while (Clock::now() < deadline) {
    GuestRam ram(4 << 20);
    DriverRing rx(ram, 256), tx(ram, 256);
    PackedDriverRing prx(ram, 256), ptx(ram, 256);
    auto f = ConnectBefore(o.socket_path, deadline, r);
    if (!f.ok()) break;
    std::unique_ptr<Frontend> fe = *std::move(f);
    const uint64_t features = kFeatures | Bit(feature::kNetMrgRxbuf) |
                              (packed ? Bit(feature::kRingPacked) : 0);
    std::vector<Frontend::RingSetup> rings;
    if (packed) {
      rings = {{0, nullptr, -1, 0, &prx}, {1, nullptr, -1, 0, &ptx}};
    } else {
      rings = {{0, &rx}, {1, &tx}};
    }
    if (absl::Status s = fe->SetUp(ram, features, rings); !s.ok()) {
      ++r.refused;
      Note(r, absl::StrCat("set-up: ", s.message()));
      usleep(1000);
      continue;
    }
    ++r.connections;
    const uint64_t nowhere = ram.Alloc(64);
    const std::vector<DriverRing::Buffer> zeros(256, {nowhere, 0});
    if (packed) {
      prx.Post(zeros, /*writable=*/true, 0);
    } else {
      for (uint16_t i = 0; i < 256; ++i) {
        rx.desc()[i] = VringDesc{nowhere, 0,
                                 static_cast<uint16_t>(kDescFlagWrite |
                                                       (i < 255 ? kDescFlagNext : 0)),
                                 static_cast<uint16_t>((i + 1) % 256)};
        rx.avail_ring()[i] = 0;
      }
      std::atomic_thread_fence(std::memory_order_release);
      rx.set_avail_idx(static_cast<uint16_t>(rx.used_idx() + 256));
    }
    bool dropped = false;
    while (Clock::now() < deadline) {
      if (packed) {
        VringUsedElem e;
        while (prx.PopUsed(256, &e)) {
          ++topups;
          prx.Post(zeros, true, 0);
        }
      } else {
        const uint16_t used = rx.used_idx();
        if (static_cast<uint16_t>(rx.avail_idx() - used) < 256) {
          std::atomic_thread_fence(std::memory_order_release);
          rx.set_avail_idx(static_cast<uint16_t>(used + 256));
          ++topups;
        }
      }
      if (WaitClosed(fe->fd(), 0)) {
        dropped = true;
        ++r.dropped;
        break;
      }
      usleep(500);
    }
    fe.reset();
    // Dropped: the switch defended itself, and coming back would be another attack
    // (queue_flapping's).  Either way this one is over.
    if (dropped) {
      Note(r, absl::StrCat("dropped by the switch after ",
                           std::chrono::duration<double>(Clock::now() - start).count(),
                           " s"));
    }
    break;
  }
  Note(r, absl::StrCat(packed ? "chains posted again " : "avail index topped up ", topups,
                       " times"));
  return absl::OkStatus();
}

// Connect and hang up, as fast as we can.
absl::Status ConnectHangupAttack(const AttackOptions& o, AttackReport& r) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, o.socket_path.c_str(), sizeof addr.sun_path - 1);
  const auto deadline = DeadlineAfter(o.seconds);
  while (Clock::now() < deadline) {
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      ++r.connections;
    } else {
      ++r.refused;
      if (errno != EAGAIN) Note(r, absl::StrCat("connect: ", strerror(errno)));
      sched_yield();
    }
  }
  return absl::OkStatus();
}

// Connects, negotiates multiqueue, sets up queue pair 0 and queue pair 7 (vrings 14
// and 15: SET_VRING_NUM/BASE/ADDR/KICK/CALL/ENABLE), stays 'hold_ms', hangs up, again.
absl::Status QueueFlappingAttack(const AttackOptions& o, AttackReport& r) {
  const int hold_ms = o.hold_ms >= 0 ? o.hold_ms : 10;
  GuestRam ram(1 << 20);
  DriverRing rx0(ram, 256), tx0(ram, 256), rx7(ram, 256), tx7(ram, 256);
  const auto deadline = DeadlineAfter(o.seconds);
  while (Clock::now() < deadline) {
    auto f = ConnectBefore(o.socket_path, deadline, r);
    if (!f.ok()) break;
    std::unique_ptr<Frontend> fe = *std::move(f);
    absl::Status s = fe->SetUp(ram, kFeatures | Bit(feature::kNetMq),
                               {{0, &rx0}, {1, &tx0}, {14, &rx7}, {15, &tx7}});
    if (!s.ok()) {
      ++r.refused;
      Note(r, absl::StrCat("set-up: ", s.message()));
      fe.reset();
      usleep(1000);
      continue;
    }
    ++r.connections;
    if (hold_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
    HangUp(fe, 100);
  }
  return absl::OkStatus();
}

// Guest memory in a file of our choosing, mapped by us; rings and buffers laid out by
// hand (GuestRam is always a memfd).
struct FileRam {
  static constexpr uint64_t kBase = GuestRam::kGuestBase;
  static constexpr uint64_t kSize = 4 << 20;

  absl::Status Open() {
    std::vector<std::string> dirs;
    if (const char* d = getenv("VHU_ATTACK_FILE_DIR")) dirs.push_back(d);
    for (const char* d : {"/var/tmp", "/tmp", "."}) dirs.push_back(d);
    for (const auto& d : dirs) {
      struct statfs fs;
      if (statfs(d.c_str(), &fs) != 0 || fs.f_type == TMPFS_MAGIC ||
          fs.f_type == HUGETLBFS_MAGIC) {
        continue;
      }
      fd = UniqueFd(open(d.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
      if (!fd.valid()) continue;
      if (ftruncate(fd.get(), kSize) != 0) return Fail("ftruncate");
      void* p = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
      if (p == MAP_FAILED) return Fail("mmap");
      base = static_cast<uint8_t*>(p);
      dir = d;
      return absl::OkStatus();
    }
    return Fail("no directory on a filesystem other than tmpfs and hugetlbfs");
  }
  ~FileRam() {
    if (base) munmap(base, kSize);
  }
  uint64_t user(uint64_t offset) const { return reinterpret_cast<uint64_t>(base) + offset; }

  UniqueFd fd;
  uint8_t* base = nullptr;
  std::string dir;
};

// The handshake up to the memory table.
absl::Status Negotiate(Frontend& fe, uint64_t features) {
  auto offered = fe.GetU64(Request::kGetFeatures);
  if (!offered.ok()) return offered.status();
  RETURN_IF_ERROR(fe.Send(Request::kSetOwner, nullptr, 0));
  auto pf = fe.GetU64(Request::kGetProtocolFeatures);
  if (!pf.ok()) return pf.status();
  RETURN_IF_ERROR(fe.SendU64(Request::kSetProtocolFeatures, *pf));
  return fe.SendU64(Request::kSetFeatures,
                    (features | Bit(feature::kProtocolFeatures)) & *offered);
}

// Receive ring (vring 0) at offset 0 and transmit ring (vring 1) at 0x4000 of a
// FileRam, 256 receive buffers of 2 KiB posted from 0x10000.
absl::Status SetUpFileRings(Frontend& fe, FileRam& ram) {
  for (uint32_t v = 0; v < 2; ++v) {
    const uint64_t at = v * 0x4000;
    VringState num{v, 256}, base{v, 0};
    VringAddress addr{v, 0, ram.user(at), ram.user(at + 0x2000), ram.user(at + 0x1000), 0};
    RETURN_IF_ERROR(fe.Send(Request::kSetVringNum, &num, sizeof num));
    RETURN_IF_ERROR(fe.Send(Request::kSetVringBase, &base, sizeof base));
    RETURN_IF_ERROR(fe.Send(Request::kSetVringAddr, &addr, sizeof addr));
    UniqueFd kick(eventfd(0, EFD_CLOEXEC));
    RETURN_IF_ERROR(fe.SendU64(Request::kSetVringKick, v, {kick.get()}));
    RETURN_IF_ERROR(fe.SendU64(Request::kSetVringCall, v | kVringNoFdFlag));
  }
  auto* desc = reinterpret_cast<VringDesc*>(ram.base);
  auto* avail = reinterpret_cast<uint16_t*>(ram.base + 0x1000);
  for (uint16_t i = 0; i < 256; ++i) {
    desc[i] = VringDesc{FileRam::kBase + 0x10000 + i * 2048u, 2048, kDescFlagWrite, 0};
    avail[2 + i] = i;
  }
  __atomic_store_n(&avail[1], static_cast<uint16_t>(256), __ATOMIC_RELEASE);
  for (uint32_t v = 0; v < 2; ++v) {
    VringState enable{v, 1};
    RETURN_IF_ERROR(fe.Send(Request::kSetVringEnable, &enable, sizeof enable));
  }
  return fe.Sync();
}

// Memory the switch should think twice about: a 64 GiB sparse memfd (receive buffers
// spread over all of it), a regular file on a disk filesystem (receive buffers in it,
// so the switch's writes dirty the page cache of a file), and a pipe.  Connection after
// connection, in that order; the last connection is always the pipe's, a protocol
// error.
absl::Status BigMemoryAttack(const AttackOptions& o, AttackReport& r) {
  const int hold_ms = o.hold_ms >= 0 ? o.hold_ms : 300;
  const auto deadline = DeadlineAfter(o.seconds);
  auto hold = [&](Frontend& fe) {
    const auto until = std::min(deadline, Clock::now() + std::chrono::milliseconds(hold_ms));
    while (Clock::now() < until) {
      if (WaitClosed(fe.fd(), 0)) return true;
      usleep(1000);
    }
    return false;
  };
  for (int round = 0;; ++round) {
    const bool past = Clock::now() >= deadline;
    if (!past) {
      // 64 GiB, sparse.
      constexpr uint64_t kHuge = 64ull << 30;
      GuestRam ram(kHuge);
      DriverRing rx(ram, 256), tx(ram, 256);
      auto f = ConnectBefore(o.socket_path, deadline, r);
      if (f.ok()) {
        std::unique_ptr<Frontend> fe = *std::move(f);
        if (absl::Status s = fe->SetUp(ram, kFeatures, {{0, &rx}, {1, &tx}}); s.ok()) {
          ++r.connections;
          for (uint64_t i = 0; i < 128; ++i) {
            const uint64_t gpa = GuestRam::kGuestBase + ((i + 1) * (kHuge / 130) & ~4095ull);
            rx.Publish(rx.AddChain({{gpa, 2048}}, true));
          }
          if (hold(*fe)) {
            ++r.dropped;
            Note(r, "dropped with 64 GiB");
          }
        } else {
          ++r.refused;
          Note(r, absl::StrCat("64 GiB memfd: ", s.message()));
        }
        if (fe) HangUp(fe, 100);
      }
    }
    if (!past && Clock::now() < deadline) {
      // A regular file.
      FileRam ram;
      RETURN_IF_ERROR(ram.Open());
      auto f = ConnectBefore(o.socket_path, deadline, r);
      if (f.ok()) {
        std::unique_ptr<Frontend> fe = *std::move(f);
        absl::Status s = Negotiate(*fe, kFeatures);
        if (s.ok()) {
          struct {
            MemoryTableHeader header;
            MemoryRegionDesc region;
          } table{{1, 0}, {FileRam::kBase, FileRam::kSize, ram.user(0), 0}};
          s = fe->Send(Request::kSetMemTable, &table, sizeof table, {ram.fd.get()});
        }
        if (s.ok()) s = SetUpFileRings(*fe, ram);
        if (s.ok()) {
          ++r.connections;
          if (hold(*fe)) {
            ++r.dropped;
            Note(r, "dropped with a file in " + ram.dir);
          }
        } else {
          ++r.refused;
          Note(r, absl::StrCat("file in ", ram.dir, ": ", s.message()));
        }
        HangUp(fe, 100);
      }
    }
    {
      // A pipe.
      int p[2];
      if (pipe2(p, O_CLOEXEC) != 0) return Fail("pipe");
      UniqueFd rd(p[0]), wr(p[1]);
      // Even past the deadline: the pipe's is the last connection.
      auto f = ConnectBefore(o.socket_path,
                             std::max(deadline, Clock::now() + std::chrono::seconds(2)), r);
      if (!f.ok()) break;
      std::unique_ptr<Frontend> fe = *std::move(f);
      absl::Status s = Negotiate(*fe, kFeatures);
      if (s.ok()) {
        struct {
          MemoryTableHeader header;
          MemoryRegionDesc region;
        } table{{1, 0}, {GuestRam::kGuestBase, 1 << 20, 0x7f0000000000ull, 0}};
        s = fe->Send(Request::kSetMemTable, &table, sizeof table, {rd.get()});
      }
      ++r.connections;
      if (WaitClosed(fe->fd(), 2000)) {
        ++r.dropped;
      } else {
        Note(r, "a pipe as guest memory was not refused within 2 s");
      }
      fe.reset();
      if (Clock::now() >= deadline) break;
    }
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<Case>& Cases() {
  using O = Outcome;
  static const auto* cases = new std::vector<Case>{
      {"well_behaved", "a normal frontend passes 8 frames", O::kTraffic, "", 1, WellBehaved},
      // Framing.
      {"size_larger_than_any_payload", "a header announcing 1 GiB of payload", O::kError,
       "announces", 1, OversizedHeader},
      {"request_out_of_range", "request ids 0, 41, 99, 1000, 2^31-1, 2^32-1", O::kAlive, "", 1,
       RequestOutOfRange},
      {"truncated_header", "7 bytes of a header, then the frontend closes", O::kClean, "", 1,
       TruncatedHeaderThenClose},
      {"truncated_payload", "SET_FEATURES with a 4-byte payload", O::kError, "4-byte payload",
       1, ShortPayload},
      {"close_mid_message", "SET_MEM_TABLE's header, half its payload and 2 fds, then close",
       O::kClean, "", 1, CloseMidMessage},
      {"fds_on_message_that_takes_none", "GET_FEATURES with 8 fds, 10,000 times", O::kError,
       "carries 8 fds", 10000, FdsOnMessageThatTakesNone},
      {"more_fds_than_the_message_takes", "SET_VRING_KICK with 2 fds", O::kError,
       "carries 2 fds", 1, MoreFdsThanTheMessageTakes},
      {"more_fds_than_any_message_takes", "SET_VRING_KICK with 12 fds", O::kError,
       "more fds than any request takes", 1, MoreFdsThanAnyMessageTakes},
      // Memory tables, 10,000 times each: nothing may stay mapped or open.
      {"mem_table_too_many_regions", "9 regions", O::kError, "9 regions", 10000,
       TooManyRegions},
      {"mem_table_fewer_fds_than_regions", "2 regions, 1 fd", O::kError, "carries 1 fds",
       10000, FewerFdsThanRegions},
      {"mem_table_overflow", "(offset, size) and addresses that wrap", O::kError, "overflows",
       10000, RegionOverflows},
      {"mem_table_overlap", "two regions overlapping in guest-physical space", O::kError,
       "overlap", 10000, RegionsOverlap},
      {"mem_table_zero_size", "a region of 0 bytes", O::kError, "empty", 10000,
       ZeroSizeRegion},
      {"mem_table_beyond_file", "a region past its fd's end", O::kError, "beyond the file",
       10000, RegionBeyondItsFile},
      {"mem_table_repeated_while_running", "10,000 good tables on a running device",
       O::kTraffic, "", 1, MemTableRepeatedWhileRunning},
      // Vring messages.
      {"vring_num_zero", "SET_VRING_NUM 0, 100,000 times", O::kError, "ring size 0", 100000,
       [](Env& env) { return VringNum(env, 0); }},
      {"vring_num_not_power_of_two", "SET_VRING_NUM 300, 100,000 times", O::kError,
       "power of two", 100000, [](Env& env) { return VringNum(env, 300); }},
      {"vring_num_too_large", "SET_VRING_NUM 65536, 100,000 times", O::kError,
       "power of two", 100000, [](Env& env) { return VringNum(env, 65536); }},
      {"vring_num_packed_then_split",
       "SET_VRING_NUM 3 under the packed feature, then the ring started as split",
       O::kError, "not a power of two", 1, VringNumPackedThenSplit},
      {"vring_index_0x10001", "SET_VRING_NUM on vring 0x10001", O::kError, "out of range", 1,
       VringIndexHuge},
      {"vring_index_one_past", "SET_VRING_BASE on vring 256 (of 256)", O::kError,
       "out of range", 1, VringIndexOnePast},
      {"vring_kick_index_beyond_payload", "SET_VRING_KICK with payload bit 9 set",
       O::kError, "unknown bits", 1, VringKickIndexBeyondPayload},
      {"vring_base_beyond_index_space", "SET_VRING_BASE 70000", O::kError, "ring base", 1,
       VringBaseBeyondIndexSpace},
      {"vring_base_beyond_ring", "SET_VRING_BASE 1000 on a 256-entry ring (legal)",
       O::kTraffic, "", 1, VringBaseBeyondRingSize},
      {"vring_addr_outside_memory", "descriptor table past the end of guest memory",
       O::kError, "not inside guest memory", 1, RingOutsideMemory},
      {"vring_addr_straddles_regions", "descriptor table across two regions' boundary",
       O::kError, "not inside guest memory", 1, RingStraddlesRegions},
      {"vring_addr_rings_overlap", "descriptor table and used ring overlap", O::kError,
       "overlap", 1, RingsOverlap},
      {"vring_addr_misaligned_in_mapping", "a region whose mmap_offset is 4", O::kError,
       "misaligned", 1, RingMisaligned},
      {"vring_call_not_an_eventfd", "a pipe as the call fd", O::kError, "eventfd", 1,
       CallFdNotAnEventfd},
      {"vring_call_made_blocking_again",
       "the call eventfd made blocking again and filled, then a frame for the guest",
       O::kError, "call eventfd blocked our interrupt", 1, CallFdMadeBlockingAgain},
      {"log_base_at_the_top", "SET_LOG_BASE of 4096 bytes at offset 2^64-4096", O::kError,
       "is not a log", 1, LogBaseAtTheTop},
      {"inflight_loop", "GET_INFLIGHT_FD and SET_INFLIGHT_FD (with an fd) 10,000 times",
       O::kAlive, "", 1, InflightLoop},
      // Descriptor chains.
      {"chain_loop", "a descriptor chain that loops", O::kError, "loops", 1, ChainLoop},
      {"chain_longer_than_ring", "300 chained descriptors on a 256-entry ring", O::kError,
       "loops", 1, ChainLongerThanRing},
      {"chain_indirect_in_indirect", "an indirect descriptor in an indirect table",
       O::kError, "indirect", 1, IndirectInIndirect},
      {"chain_indirect_is_the_ring", "an indirect table that is the ring's descriptor table",
       O::kError, "indirect descriptor inside an indirect table", 1, IndirectTableIsTheRing},
      {"chain_indirect_partial", "an indirect table of 20 bytes", O::kError,
       "whole number of descriptors", 1, IndirectTablePartial},
      {"chain_straddles_regions", "a buffer across two regions' boundary", O::kError,
       "not inside guest memory", 1, BufferStraddlesRegions},
      {"chain_zero_length_outside_memory", "a 0-byte descriptor at 0xdead00000000",
       O::kTraffic, "", 1, ZeroLengthOutsideMemory},
      {"chain_shorter_than_header", "an 8-byte transmit chain", O::kError,
       "shorter than the virtio-net header", 1, ChainShorterThanHeader},
      {"chain_writable_in_transmit", "a device-writable descriptor in a transmit chain",
       O::kError, "device-writable", 1, WritableDescriptorInTransmitChain},
      {"chain_header_only", "a transmit chain of the header alone, between two frames",
       O::kTraffic, "", 1, HeaderOnly},
      {"chain_header_split", "headers split over up to four descriptors (legal)",
       O::kTraffic, "", 1, HeaderSplitOverDescriptors},
      {"chain_csum_start_beyond_packet", "NEEDS_CSUM and GSO with csum_start 0xfff0",
       O::kTraffic, "", 1, CsumStartBeyondThePacket},
      {"avail_index_runs_ahead", "avail->idx 1000 on a 256-entry ring", O::kError,
       "avail index", 1, AvailIndexRunsAhead},
      {"avail_head_out_of_range", "an avail entry naming descriptor 300", O::kError,
       "out of range", 1, HeadOutOfRange},
      {"racing_guest", "a thread rewrites descriptors and indices while the switch reads",
       O::kAny, "", 5, RacingGuest},
      // Faults under traffic.
      {"fault_mem_table_during_traffic", "1,000 SET_MEM_TABLEs while frames flow both ways",
       O::kTraffic, "", 1, MemTableDuringTraffic},
      {"fault_vring_toggle_under_traffic",
       "1,000 disable/enable cycles of both vrings while frames flow", O::kTraffic, "", 1,
       VringToggleUnderTraffic},
      {"memfd_shrunk_under_the_switch",
       "the frontend ftruncates its memfd below buffers it then hands the switch",
       O::kError, "lost its backing under the switch", 1, MemfdShrunkUnderTheSwitch},
      {"log_shrunk_under_the_switch",
       "during a migration, the frontend ftruncates its dirty log to 0 bytes",
       O::kError, "the dirty log lost its backing under the switch", 1,
       LogShrunkUnderTheSwitch},
  };
  return *cases;
}

const Case* FindCase(const std::string& name) {
  for (const Case& c : Cases()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kError: return "error";
    case Outcome::kClean: return "clean";
    case Outcome::kAlive: return "alive";
    case Outcome::kTraffic: return "traffic";
    default: return "any";
  }
}

absl::Status RunCase(const Case& c, Env& env) {
  const int rounds = std::max(1, c.repeat / std::max(1, env.scale_down));
  for (int i = 0; i < rounds; ++i) {
    if (absl::Status s = c.run(env); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(c.name, " round ", i + 1, " of ", rounds,
                                                 ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

const std::vector<Attack>& Attacks() {
  static const auto* attacks = new std::vector<Attack>{
      {"linger_fds",
       "TCP sockets whose close() lingers 5 s as a GET_FEATURES fd and a kick fd, "
       "connection after connection",
       [](const AttackOptions& o, AttackReport& r) { return LingerFdsAttack(o, r, false); }},
      {"linger_fds_dry",
       "linger_fds's control experiment: the same sockets and connections, but the "
       "switch gets eventfds",
       [](const AttackOptions& o, AttackReport& r) { return LingerFdsAttack(o, r, true); }},
      {"zero_length_rx_chain",
       "a split receive ring of zero-length descriptors chained through the ring, every "
       "avail entry that chain, mergeable buffers",
       [](const AttackOptions& o, AttackReport& r) {
         return ZeroLengthRxChainAttack(o, r, false);
       }},
      {"zero_length_rx_chain_packed",
       "a packed receive ring that is one chain of zero-length descriptors, posted again "
       "and again, mergeable buffers",
       [](const AttackOptions& o, AttackReport& r) {
         return ZeroLengthRxChainAttack(o, r, true);
       }},
      {"connect_hangup_loop", "connect and hang up in a tight loop", ConnectHangupAttack},
      {"queue_flapping",
       "connect, negotiate multiqueue, set up queue pairs 0 and 7, hang up, again",
       QueueFlappingAttack},
      {"big_memory",
       "a 64 GiB sparse memfd, a regular file on disk and a pipe as guest memory",
       BigMemoryAttack},
  };
  return *attacks;
}

const Attack* FindAttack(const std::string& name) {
  for (const Attack& a : Attacks()) {
    if (name == a.name) return &a;
  }
  return nullptr;
}

}  // namespace vhostuser::hostile
