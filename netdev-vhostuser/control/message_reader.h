// Frames vhost-user messages off a non-blocking stream socket.
//
// The peer is untrusted and the control thread serves every port, so reading never
// blocks: a message that arrives in pieces is assembled across calls.  The header's size
// is bounded before any payload is read, fds are counted as they arrive and every fd
// that does not end up in a complete message is closed.
#ifndef NETDEV_VHOSTUSER_CONTROL_MESSAGE_READER_H
#define NETDEV_VHOSTUSER_CONTROL_MESSAGE_READER_H

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "protocol/protocol.h"
#include "runtime/unique_fd.h"

namespace vhostuser {

struct Message {
  MessageHeader header{};
  alignas(8) uint8_t payload[kMaxPayload];
  std::vector<UniqueFd> fds;

  // The payload as T, if it has exactly T's size.  Messages whose size field disagrees
  // with their request's payload are refused by the caller.
  template <typename T>
  bool PayloadAs(T* out) const {
    if (header.size != sizeof(T)) return false;
    __builtin_memcpy(out, payload, sizeof(T));
    return true;
  }
};

class MessageReader {
 public:
  // 'owner': the FdCloser owner of the fds it receives (its port's).
  explicit MessageReader(uint32_t owner) : owner_(owner) {}

  // Reads what the socket has.  Returns true with '*message' filled when a whole message
  // is there, false when more bytes are needed (the socket would block), or an error
  // for end of stream, a socket error or a message that breaks the framing rules.
  absl::StatusOr<bool> Read(int fd, Message* message);

  // Drops a partly read message (and its fds), and the buffer it was read into: a
  // port waiting for a frontend holds none.
  void Reset();

 private:
  absl::Status ReceiveInto(int fd, uint8_t* buf, size_t len, size_t* got);

  const uint32_t owner_;
  std::unique_ptr<Message> pending_;  // Allocated by the first Read().
  size_t header_bytes_ = 0;
  size_t payload_bytes_ = 0;
};

// Writes a whole reply.  Replies are small and the socket buffer empty in any sane
// exchange, so a peer that does not read is treated as broken rather than waited for.
absl::Status SendMessage(int fd, const MessageHeader& header, const void* payload);

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_CONTROL_MESSAGE_READER_H
