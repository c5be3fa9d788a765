// Fuzz target: the control path as a frontend drives it.  The input is a program of
// operations on one connection: raw bytes and whole messages written into a Unix
// socketpair with fds of the fuzzer's choice attached (memfds of several sizes,
// eventfds, a pipe, /dev/null, a socket), writes into the guest memory those memfds
// are, bursts on whatever vrings the device considers usable, and the peer closing.
// The backend side is MessageReader::Read + Device::Handle, exactly as Port runs them,
// including the disconnect (Device::Reset) on any error.
//
// After every input: every fd is closed again and no guest memory stays mapped.
//
// Input format (tests/fuzz/README.md; tests/fuzz/make_seeds.py writes the seeds):
//   repeated { u8 op; operands }
//   op%8 == 0  raw:   u16 len, u8 nfds, u32 fd_kinds, len bytes
//   op%8 == 1  msg:   u8 request, u8 flags, u16 len, u8 nfds, u32 fd_kinds, len bytes
//                     (header built with size = len; flags bit 0: NEED_REPLY,
//                     bit 1: a wrong version)
//   op%8 == 2  burst: u8 vring, u8 count, u16 packet size
//   op%8 == 3  poke:  u8 memfd, u32 offset, u16 len, len bytes
//   op%8 == 4  the frontend closes its end (end of stream), then reconnects
//   op%8 == 5  the frontend half-sends a header then closes
//   otherwise  pump the socket only
// Each fd kind is 3 bits of fd_kinds: 0-3 memfds (64 KiB, 4 KiB, 1 MiB, empty),
// 4 eventfd, 5 pipe, 6 /dev/null, 7 a socket.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "control/device.h"
#include "control/message_reader.h"
#include "fuzz_util.h"
#include "protocol/protocol.h"
#include "runtime/unique_fd.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser::fuzz {
namespace {

constexpr size_t kMemfdSizes[4] = {64 << 10, 4 << 10, 1 << 20, 0};
constexpr int kMaxFdsSent = 10;  // More than any message may carry (8).

struct Fds {
  UniqueFd memfd[4];
  UniqueFd eventfd;
  UniqueFd pipe_r, pipe_w;
  UniqueFd devnull;
  UniqueFd sock_a, sock_b;

  Fds() {
    for (int i = 0; i < 4; ++i) {
      memfd[i].reset(memfd_create("fuzz-guest", MFD_CLOEXEC));
      if (!memfd[i].valid() || ftruncate(memfd[i].get(), kMemfdSizes[i]) != 0) abort();
    }
    eventfd.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) abort();
    pipe_r.reset(p[0]);
    pipe_w.reset(p[1]);
    devnull.reset(open("/dev/null", O_RDWR | O_CLOEXEC));
    int s[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) != 0) abort();
    sock_a.reset(s[0]);
    sock_b.reset(s[1]);
  }
  int Kind(unsigned kind) const {
    switch (kind & 7) {
      case 0: case 1: case 2: case 3: return memfd[kind & 7].get();
      case 4: return eventfd.get();
      case 5: return pipe_r.get();
      case 6: return devnull.get();
      default: return sock_a.get();
    }
  }
};

void* AllocPacket(void*, uint32_t size, uint8_t** data) {
  auto* p = static_cast<uint8_t*>(malloc(size ? size : 1));
  *data = p;
  return p;
}

class Session {
 public:
  Session()
      : device_([this](vhu_event) { ++events_; }, PortLog("fuzz", nullptr),
                VHU_DEFAULT_MAX_GUEST_MEMORY),
        message_(std::make_unique<Message>()) {
    Connect();
  }
  ~Session() {
    Disconnect();
    CheckReleased();
  }

  void Send(const void* bytes, size_t len, int nfds, uint32_t kinds) {
    if (!theirs_.valid()) return;
    nfds = nfds % (kMaxFdsSent + 1);
    if (len == 0 && nfds == 0) return;
    uint8_t dummy = 0;
    iovec iov{len ? const_cast<void*>(bytes) : &dummy, len ? len : 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsSent)] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (nfds) {
      int fds[kMaxFdsSent];
      for (int i = 0; i < nfds; ++i) fds[i] = fds_.Kind(kinds >> (3 * i));
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
      memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    // Non-blocking: a full socket (a backend that stopped reading) just drops the rest.
    (void)sendmsg(theirs_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    Pump();
  }

  // What Port::ReadMessages does, plus draining the replies as the frontend would.
  void Pump() {
    for (int i = 0; i < 100000 && ours_.valid(); ++i) {
      absl::StatusOr<bool> got = reader_.Read(ours_.get(), message_.get());
      if (!got.ok()) {
        Disconnect();
        Connect();
        return;
      }
      if (!*got) break;
      if (message_->header.size > kMaxPayload) Violation("message larger than kMaxPayload");
      if (message_->fds.size() > static_cast<size_t>(kMaxFdsPerMessage)) {
        Violation("message with more fds than allowed");
      }
      absl::Status handled = device_.Handle(ours_.get(), *message_);
      message_->fds.clear();
      DrainReplies();
      if (!handled.ok()) {
        Disconnect();
        Connect();
        return;
      }
    }
    DrainReplies();
  }

  void Burst(unsigned vring, unsigned count, uint32_t size) {
    if (!ours_.valid()) return;
    Virtqueue* vqp = device_.FindVring(vring % VHU_MAX_VRINGS);
    if (vqp == nullptr) return;  // No request named it: the data path does nothing.
    Virtqueue& vq = *vqp;
    bool failed;
    {
      std::lock_guard<Spinlock> lock(vq.lock());
      if (vring % 2) {
        void* pkts[64];
        uint32_t dropped;
        uint32_t n = vq.Dequeue(AllocPacket, nullptr, pkts, 1 + count % 64, &dropped);
        for (uint32_t i = 0; i < n; ++i) free(pkts[i]);
      } else {
        static uint8_t frame[70000];
        vhu_tx_packet pkts[8];
        const unsigned n = 1 + count % 8;
        for (unsigned i = 0; i < n; ++i) {
          pkts[i] = {frame, (size * (i + 1)) % static_cast<uint32_t>(sizeof frame)};
        }
        uint32_t dropped = 0;
        uint32_t sent = vq.Enqueue(pkts, n, &dropped);
        if (sent > n || dropped > sent) Violation("Enqueue counts");
      }
      failed = vq.failure() != nullptr;
    }
    if (failed) {  // What the control thread does after a data-path failure.
      Disconnect();
      Connect();
    }
  }

  void Poke(unsigned k, uint32_t offset, const uint8_t* bytes, size_t len) {
    k %= 4;
    if (kMemfdSizes[k] == 0) return;
    offset %= kMemfdSizes[k];
    if (len > kMemfdSizes[k] - offset) len = kMemfdSizes[k] - offset;
    if (pwrite(fds_.memfd[k].get(), bytes, len, offset) < 0) abort();
  }

  void CloseAndReconnect(const void* partial, size_t len) {
    if (len && theirs_.valid()) (void)send(theirs_.get(), partial, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    theirs_.reset();
    const uint64_t before = disconnects_;
    // Must see the end of the stream and disconnect (and reconnect).  The kernel may
    // finish releasing the peer a moment later (a 30-minute run once saw no EOF on the
    // first read and the input did not reproduce): the port's epoll would wake it
    // then, so give it 100 ms before calling it a bug.
    for (int attempt = 0; attempt < 50 && disconnects_ == before; ++attempt) {
      if (attempt) usleep(2000);
      Pump();
    }
    if (disconnects_ == before) Violation("end of stream not noticed within 100 ms");
  }

 private:
  void Connect() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) abort();
    ours_.reset(sv[0]);
    theirs_.reset(sv[1]);
  }
  void Disconnect() {
    ++disconnects_;
    ours_.reset();
    theirs_.reset();
    reader_.Reset();
    device_.Reset();
    if (device_.mapped_bytes() != 0) Violation("guest memory mapped after Reset");
  }
  void DrainReplies() {
    if (!theirs_.valid()) return;
    char buf[4096];
    while (recv(theirs_.get(), buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
  }
  void CheckReleased() {
    device_.ForEachVring([this](unsigned, const Virtqueue& vq) {
      if (vq.started()) Violation("vring still started after Reset");
    });
  }

  Fds fds_;
  Device device_;
  std::unique_ptr<Message> message_;
  MessageReader reader_{FdCloser::NewOwner()};
  UniqueFd ours_, theirs_;
  uint64_t events_ = 0;
  uint64_t disconnects_ = 0;
};

void Run(const uint8_t* data, size_t size) {
  Session session;
  Cursor in(data, size);
  std::vector<uint8_t> bytes;
  for (int ops = 0; !in.empty() && ops < 512; ++ops) {
    const uint8_t op = in.Take<uint8_t>();
    switch (op % 8) {
      case 0: {
        const uint16_t len = in.Take<uint16_t>() % 8192;
        const uint8_t nfds = in.Take<uint8_t>();
        const uint32_t kinds = in.Take<uint32_t>();
        bytes.resize(len);
        bytes.resize(in.TakeBytes(bytes.data(), len));
        session.Send(bytes.data(), bytes.size(), nfds, kinds);
        break;
      }
      case 1: {
        const uint8_t request = in.Take<uint8_t>();
        const uint8_t flags = in.Take<uint8_t>();
        const uint16_t len = in.Take<uint16_t>() % 1024;
        const uint8_t nfds = in.Take<uint8_t>();
        const uint32_t kinds = in.Take<uint32_t>();
        bytes.assign(sizeof(MessageHeader) + len, 0);
        const size_t got = in.TakeBytes(bytes.data() + sizeof(MessageHeader), len);
        MessageHeader h{request, ((flags & 2) ? 2u : kVersion) |
                                     ((flags & 1) ? kFlagNeedReply : 0),
                        static_cast<uint32_t>(got)};
        memcpy(bytes.data(), &h, sizeof h);
        bytes.resize(sizeof h + got);
        session.Send(bytes.data(), bytes.size(), nfds, kinds);
        break;
      }
      case 2: {
        const uint8_t vring = in.Take<uint8_t>();
        const uint8_t count = in.Take<uint8_t>();
        const uint16_t psize = in.Take<uint16_t>();
        session.Burst(vring, count, psize);
        break;
      }
      case 3: {
        const uint8_t k = in.Take<uint8_t>();
        const uint32_t offset = in.Take<uint32_t>();
        const uint16_t len = in.Take<uint16_t>() % 4096;
        bytes.resize(len);
        bytes.resize(in.TakeBytes(bytes.data(), len));
        session.Poke(k, offset, bytes.data(), bytes.size());
        break;
      }
      case 4:
        session.CloseAndReconnect(nullptr, 0);
        break;
      case 5: {
        MessageHeader h{static_cast<uint32_t>(Request::kSetMemTable), kVersion, 40};
        session.CloseAndReconnect(&h, in.Take<uint8_t>() % (sizeof h + 1));
        break;
      }
      default:
        session.Pump();
        break;
    }
  }
}

void Quiet(vhu_log_level, const char*, void*) {}

}  // namespace
}  // namespace vhostuser::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vhu_set_log_function(vhostuser::fuzz::Quiet);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::map<int, std::string> fds_before =
      vhostuser::fuzz::SettledOpenFds();
  vhostuser::fuzz::Run(data, size);
  vhostuser::fuzz::CheckNoFdLeaked(fds_before);
  return 0;
}
