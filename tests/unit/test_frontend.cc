#include "test_frontend.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace vhostuser::testing {

GuestRam::GuestRam(size_t size) : fd_(memfd_create("guest-ram", MFD_CLOEXEC)), size_(size) {
  if (!fd_.valid() || ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) abort();
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
  if (p == MAP_FAILED) abort();
  base_ = static_cast<uint8_t*>(p);
}

GuestRam::~GuestRam() { munmap(base_, size_); }

uint64_t GuestRam::Alloc(size_t size, size_t align) {
  next_ = (next_ + align - 1) & ~(align - 1);
  if (next_ + size > size_) abort();
  uint64_t gpa = kGuestBase + next_;
  next_ += size;
  return gpa;
}

MemoryRegionDesc GuestRam::Region() const {
  return MemoryRegionDesc{kGuestBase, size_, reinterpret_cast<uint64_t>(base_), 0};
}

DriverRing::DriverRing(GuestRam& ram, uint16_t size) : ram_(ram), size_(size) {
  desc_gpa_ = ram.Alloc(16u * size, 16);
  avail_gpa_ = ram.Alloc(6u + 2u * size, 2);
  used_gpa_ = ram.Alloc(6u + 8u * size, 4);
  desc_ = reinterpret_cast<VringDesc*>(ram.host(desc_gpa_));
  avail_ = reinterpret_cast<uint16_t*>(ram.host(avail_gpa_));
  used_ = ram.host(used_gpa_);
  memset(desc_, 0, 16u * size);
  memset(avail_, 0, 6u + 2u * size);
  memset(used_, 0, 6u + 8u * size);
}

VringAddress DriverRing::Address(uint32_t index) const {
  return VringAddress{index, 0, ram_.user_addr(desc_gpa_), ram_.user_addr(used_gpa_),
                      ram_.user_addr(avail_gpa_), 0};
}

uint16_t DriverRing::AddChain(const Buffer* buffers, size_t n, bool writable) {
  const uint16_t head = next_desc_;
  for (size_t i = 0; i < n; ++i) {
    uint16_t idx = next_desc_;
    next_desc_ = static_cast<uint16_t>((next_desc_ + 1) % size_);
    desc_[idx].addr = buffers[i].gpa;
    desc_[idx].len = buffers[i].len;
    desc_[idx].flags = (writable ? kDescFlagWrite : 0) |
                       (i + 1 < n ? kDescFlagNext : 0);
    desc_[idx].next = next_desc_;
  }
  return head;
}

uint16_t DriverRing::AddIndirect(const std::vector<Buffer>& buffers, bool writable) {
  uint64_t table_gpa = ram_.Alloc(16 * buffers.size(), 16);
  auto* table = reinterpret_cast<VringDesc*>(ram_.host(table_gpa));
  for (size_t i = 0; i < buffers.size(); ++i) {
    table[i].addr = buffers[i].gpa;
    table[i].len = buffers[i].len;
    table[i].flags = (writable ? kDescFlagWrite : 0) |
                     (i + 1 < buffers.size() ? kDescFlagNext : 0);
    table[i].next = static_cast<uint16_t>(i + 1);
  }
  uint16_t head = next_desc_;
  next_desc_ = static_cast<uint16_t>((next_desc_ + 1) % size_);
  desc_[head] = VringDesc{table_gpa, static_cast<uint32_t>(16 * buffers.size()),
                          kDescFlagIndirect, 0};
  return head;
}

void DriverRing::Publish(uint16_t head) {
  uint16_t idx = avail_[1];
  avail_[2 + (idx % size_)] = head;
  __atomic_store_n(&avail_[1], static_cast<uint16_t>(idx + 1), __ATOMIC_RELEASE);
}

bool DriverRing::PopUsed(VringUsedElem* elem) {
  uint16_t idx = __atomic_load_n(reinterpret_cast<uint16_t*>(used_ + 2), __ATOMIC_ACQUIRE);
  if (idx == last_used_) return false;
  memcpy(elem, used_ + 4 + 8 * (last_used_ % size_), sizeof *elem);
  ++last_used_;
  return true;
}

uint16_t DriverRing::avail_idx() const { return avail_[1]; }
uint16_t DriverRing::used_idx() const {
  return __atomic_load_n(reinterpret_cast<uint16_t*>(used_ + 2), __ATOMIC_ACQUIRE);
}
uint16_t DriverRing::used_flags() const { return *reinterpret_cast<uint16_t*>(used_); }
void DriverRing::set_avail_flags(uint16_t flags) { avail_[0] = flags; }
void DriverRing::set_used_event(uint16_t event) { avail_[2 + size_] = event; }
void DriverRing::set_avail_idx(uint16_t idx) { avail_[1] = idx; }

PackedDriverRing::PackedDriverRing(GuestRam& ram, uint16_t size) : ram_(ram), size_(size) {
  desc_gpa_ = ram.Alloc(16u * size, 16);
  driver_gpa_ = ram.Alloc(4, 4);
  device_gpa_ = ram.Alloc(4, 4);
  desc_ = reinterpret_cast<Desc*>(ram.host(desc_gpa_));
  driver_event_ = reinterpret_cast<uint16_t*>(ram.host(driver_gpa_));
  device_event_ = reinterpret_cast<uint16_t*>(ram.host(device_gpa_));
  memset(desc_, 0, 16u * size);
  memset(driver_event_, 0, 4);
  memset(device_event_, 0, 4);
}

VringAddress PackedDriverRing::Address(uint32_t index) const {
  return VringAddress{index, 0, ram_.user_addr(desc_gpa_), ram_.user_addr(device_gpa_),
                      ram_.user_addr(driver_gpa_), 0};
}

uint16_t PackedDriverRing::Post(const DriverRing::Buffer* buffers, size_t n,
                                bool writable, uint16_t id, bool indirect) {
  const uint16_t first = next_;
  const bool first_wrap = wrap_;
  uint16_t first_flags = 0;
  auto flags_for = [&](bool wrap) {
    return static_cast<uint16_t>(wrap ? kAvail : kUsed);
  };
  auto place = [&](uint64_t addr, uint32_t len, uint16_t flags) {
    Desc& d = desc_[next_];
    d.addr = addr;
    d.len = len;
    d.id = id;
    const uint16_t all = flags | flags_for(wrap_);
    if (next_ == first && wrap_ == first_wrap) {
      first_flags = all;  // Written last: it publishes the buffer.
    } else {
      __atomic_store_n(&d.flags, all, __ATOMIC_RELEASE);
    }
    if (++next_ == size_) {
      next_ = 0;
      wrap_ = !wrap_;
    }
  };
  const uint16_t w = writable ? kDescFlagWrite : 0;
  if (indirect) {
    uint64_t table_gpa = ram_.Alloc(16 * n, 16);
    auto* table = reinterpret_cast<Desc*>(ram_.host(table_gpa));
    for (size_t i = 0; i < n; ++i) {
      table[i] = Desc{buffers[i].gpa, buffers[i].len, 0, w};
    }
    place(table_gpa, static_cast<uint32_t>(16 * n), kDescFlagIndirect);
  } else {
    for (size_t i = 0; i < n; ++i) {
      place(buffers[i].gpa, buffers[i].len,
            static_cast<uint16_t>(w | (i + 1 < n ? kDescFlagNext : 0)));
    }
  }
  __atomic_store_n(&desc_[first].flags, first_flags, __ATOMIC_RELEASE);
  return first;
}

bool PackedDriverRing::PopUsed(uint16_t n_descs, VringUsedElem* elem) {
  const uint16_t flags = __atomic_load_n(&desc_[used_pos_].flags, __ATOMIC_ACQUIRE);
  const bool avail = flags & kAvail, used = flags & kUsed;
  if (avail != used || used != used_wrap_) return false;
  elem->id = desc_[used_pos_].id;
  // A driver ignores the length of a used descriptor without WRITE (virtio 1.x 2.8.6).
  elem->len = (flags & kDescFlagWrite) ? desc_[used_pos_].len : 0;
  used_pos_ = static_cast<uint16_t>(used_pos_ + n_descs);
  if (used_pos_ >= size_) {
    used_pos_ = static_cast<uint16_t>(used_pos_ - size_);
    used_wrap_ = !used_wrap_;
  }
  return true;
}

void PackedDriverRing::set_driver_event(uint16_t flags, uint16_t off_wrap) {
  driver_event_[0] = off_wrap;
  __atomic_store_n(&driver_event_[1], flags, __ATOMIC_RELEASE);
}

uint16_t PackedDriverRing::device_event_flags() const {
  return __atomic_load_n(&device_event_[1], __ATOMIC_ACQUIRE);
}

absl::StatusOr<std::unique_ptr<Frontend>> Frontend::Connect(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  for (int attempt = 0; attempt < 200; ++attempt) {
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      return std::make_unique<Frontend>(std::move(fd));
    }
    usleep(10000);
  }
  return absl::UnavailableError(absl::StrCat("connect ", path, ": ", strerror(errno)));
}

absl::Status Frontend::Send(Request request, const void* payload, uint32_t size,
                            const std::vector<int>& fds, uint32_t flags) {
  MessageHeader header{static_cast<uint32_t>(request), kVersion | flags, size};
  iovec iov[2] = {{&header, sizeof header}, {const_cast<void*>(payload), size}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)] = {};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = size ? 2 : 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  if (sendmsg(fd_.get(), &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof header + size)) {
    return absl::UnavailableError(absl::StrCat("sendmsg: ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint8_t>> Frontend::Receive(Request expected) {
  pollfd p{fd_.get(), POLLIN, 0};
  if (poll(&p, 1, 5000) != 1) return absl::DeadlineExceededError("no reply");
  MessageHeader header;
  if (recv(fd_.get(), &header, sizeof header, MSG_WAITALL) != sizeof header) {
    return absl::UnavailableError("connection closed");
  }
  if (header.request != static_cast<uint32_t>(expected) || !(header.flags & kFlagReply) ||
      header.size > kMaxPayload) {
    return absl::InternalError(absl::StrCat("unexpected reply ", header.request));
  }
  std::vector<uint8_t> payload(header.size);
  if (header.size &&
      recv(fd_.get(), payload.data(), header.size, MSG_WAITALL) != header.size) {
    return absl::UnavailableError("connection closed");
  }
  return payload;
}

absl::StatusOr<uint64_t> Frontend::GetU64(Request request) {
  if (auto s = Send(request, nullptr, 0); !s.ok()) return s;
  auto payload = Receive(request);
  if (!payload.ok()) return payload.status();
  if (payload->size() != 8) return absl::InternalError("reply is not a u64");
  uint64_t value;
  memcpy(&value, payload->data(), 8);
  return value;
}

absl::StatusOr<VringState> Frontend::GetVringBase(uint32_t index) {
  VringState state{index, 0};
  if (auto s = Send(Request::kGetVringBase, &state, sizeof state); !s.ok()) return s;
  auto payload = Receive(Request::kGetVringBase);
  if (!payload.ok()) return payload.status();
  if (payload->size() != sizeof state) return absl::InternalError("reply is not a state");
  memcpy(&state, payload->data(), sizeof state);
  return state;
}

absl::Status Frontend::Sync() { return GetU64(Request::kGetFeatures).status(); }

bool Frontend::WaitClosed(int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    char c;
    ssize_t n = recv(fd_.get(), &c, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN)) return true;
    if (n > 0) {  // Drain a stray reply.
      recv(fd_.get(), &c, 1, MSG_DONTWAIT);
      continue;
    }
    usleep(10000);
  }
  return false;
}

absl::Status Frontend::SetUp(GuestRam& ram, uint64_t features,
                             const std::vector<RingSetup>& rings, bool protocol_features) {
  auto offered = GetU64(Request::kGetFeatures);
  if (!offered.ok()) return offered.status();
  if (protocol_features) features |= Bit(feature::kProtocolFeatures);
  if ((features & *offered) != features) {
    return absl::FailedPreconditionError("backend lacks a feature the test wants");
  }
  if (auto s = Send(Request::kSetOwner, nullptr, 0); !s.ok()) return s;
  if (protocol_features) {
    auto pf = GetU64(Request::kGetProtocolFeatures);
    if (!pf.ok()) return pf.status();
    if (auto s = SendU64(Request::kSetProtocolFeatures, *pf); !s.ok()) return s;
  }
  if (auto s = SendU64(Request::kSetFeatures, features); !s.ok()) return s;
  struct {
    MemoryTableHeader header;
    MemoryRegionDesc region;
  } table{{1, 0}, ram.Region()};
  if (auto s = Send(Request::kSetMemTable, &table, sizeof table, {ram.fd()}); !s.ok()) {
    return s;
  }
  for (const RingSetup& r : rings) {
    // Packed rings start at position 0 with the wrap counter set (base bit 15).
    VringState num{r.index, r.packed ? r.packed->size() : r.ring->size()};
    VringState base{r.index, r.packed && r.base == 0 ? 1u << 15 : r.base};
    VringAddress addr = r.packed ? r.packed->Address(r.index) : r.ring->Address(r.index);
    if (auto s = Send(Request::kSetVringNum, &num, sizeof num); !s.ok()) return s;
    if (auto s = Send(Request::kSetVringBase, &base, sizeof base); !s.ok()) return s;
    if (auto s = Send(Request::kSetVringAddr, &addr, sizeof addr); !s.ok()) return s;
    UniqueFd kick(eventfd(0, EFD_CLOEXEC));
    if (auto s = SendU64(Request::kSetVringKick, r.index, {kick.get()}); !s.ok()) return s;
    if (r.call_fd >= 0) {
      if (auto s = SendU64(Request::kSetVringCall, r.index, {r.call_fd}); !s.ok()) return s;
    } else {
      if (auto s = SendU64(Request::kSetVringCall, r.index | kVringNoFdFlag); !s.ok()) {
        return s;
      }
    }
  }
  if (protocol_features) {
    for (const RingSetup& r : rings) {
      VringState enable{r.index, 1};
      if (auto s = Send(Request::kSetVringEnable, &enable, sizeof enable); !s.ok()) {
        return s;
      }
    }
  }
  return Sync();
}

std::vector<uint8_t> TestFrame(uint32_t size, uint32_t seq) {
  std::vector<uint8_t> frame(size);
  for (uint32_t i = 0; i < size; ++i) frame[i] = static_cast<uint8_t>(seq * 31 + i);
  return frame;
}

LingeringSocket::LingeringSocket(int linger_s) {
  listener_ = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int small = 4096;
  setsockopt(listener_.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(listener_.get(), 1) != 0 ||
      getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return;
  }
  UniqueFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  setsockopt(s.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  if (connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
  linger l{1, linger_s};
  setsockopt(s.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  fcntl(s.get(), F_SETFL, O_NONBLOCK);
  static char junk[65536];
  while (send(s.get(), junk, sizeof junk, MSG_NOSIGNAL) > 0) {
  }
  socket_ = std::move(s);
}

void LingeringSocket::Unblock() {
  UniqueFd peer(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!peer.valid()) return;
  // Until 50 ms pass without data: the socket may not be closed yet.
  timeval timeout{0, 50000};
  setsockopt(peer.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  static char sink[65536];
  while (read(peer.get(), sink, sizeof sink) > 0) {
  }
}

}  // namespace vhostuser::testing
