#include "control/message_reader.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace vhostuser {

void MessageReader::Reset() {
  pending_.reset();
  header_bytes_ = 0;
  payload_bytes_ = 0;
}

absl::Status MessageReader::ReceiveInto(int fd, uint8_t* buf, size_t len, size_t* got) {
  iovec iov{buf, len};
  // Room for as many fds as one message can carry at all (the kernel's SCM_MAX_FD),
  // not just as many as a request takes.  The kernel drops the fds that do not fit
  // here (or, with the process out of fds, all of them), and dropping them closes them
  // on this thread, inside recvmsg(): one whose close() blocks (see fd_closer.h) would
  // stall the control thread.  Received, they are ours to close through FdCloser, and
  // the message is refused below.  (The port keeps what a frontend holds of the fd
  // table bounded: kMaxBlockedCloses in port.cc.)
  constexpr int kMaxFdsTheKernelPasses = 253;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFdsTheKernelPasses)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do {
    n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      *got = 0;
      return absl::OkStatus();
    }
    return absl::UnavailableError(absl::StrCat("recvmsg: ", strerror(errno)));
  }
  // Take ownership of every fd first, so that any error below closes them.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received;
      memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      pending_->fds.push_back(UniqueFd::FromFrontend(received, owner_));
    }
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    return absl::InvalidArgumentError("message carries more fds than any request takes");
  }
  if (pending_->fds.size() > static_cast<size_t>(kMaxFdsPerMessage)) {
    return absl::InvalidArgumentError("message carries more fds than any request takes");
  }
  if (n == 0) return absl::UnavailableError("connection closed by the frontend");
  *got = static_cast<size_t>(n);
  return absl::OkStatus();
}

absl::StatusOr<bool> MessageReader::Read(int fd, Message* message) {
  // Default-initialised: the payload is written before it is read.
  if (pending_ == nullptr) pending_.reset(new Message);
  auto* header = reinterpret_cast<uint8_t*>(&pending_->header);
  while (header_bytes_ < sizeof(MessageHeader)) {
    size_t got;
    if (absl::Status s = ReceiveInto(fd, header + header_bytes_,
                                     sizeof(MessageHeader) - header_bytes_, &got);
        !s.ok()) {
      Reset();
      return s;
    }
    if (got == 0) return false;
    header_bytes_ += got;
  }
  const MessageHeader h = pending_->header;  // A copy: Reset() frees pending_.
  if ((h.flags & kVersionMask) != kVersion) {
    Reset();
    return absl::InvalidArgumentError(absl::StrCat("message version ", h.flags & kVersionMask,
                                                   " is not 1"));
  }
  if (h.size > kMaxPayload) {
    Reset();
    return absl::InvalidArgumentError(absl::StrCat(
        RequestName(h.request), " announces ", h.size, " bytes of payload (at most ",
        kMaxPayload, ")"));
  }
  while (payload_bytes_ < h.size) {
    size_t got;
    if (absl::Status s = ReceiveInto(fd, pending_->payload + payload_bytes_,
                                     h.size - payload_bytes_, &got);
        !s.ok()) {
      Reset();
      return s;
    }
    if (got == 0) return false;
    payload_bytes_ += got;
  }
  message->header = h;
  memcpy(message->payload, pending_->payload, h.size);
  message->fds = std::move(pending_->fds);
  pending_->fds.clear();
  header_bytes_ = 0;
  payload_bytes_ = 0;
  return true;
}

absl::Status SendMessage(int fd, const MessageHeader& header, const void* payload) {
  iovec iov[2] = {{const_cast<MessageHeader*>(&header), sizeof header},
                  {const_cast<void*>(payload), header.size}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = header.size ? 2 : 1;
  ssize_t n;
  do {
    n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return absl::UnavailableError(absl::StrCat("sendmsg: ", strerror(errno)));
  if (static_cast<size_t>(n) != sizeof header + header.size) {
    return absl::UnavailableError("reply truncated: the frontend is not reading");
  }
  return absl::OkStatus();
}

}  // namespace vhostuser
