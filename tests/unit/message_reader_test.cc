#include "control/message_reader.h"
#include "runtime/fd_closer.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "gtest/gtest.h"

namespace vhostuser {
namespace {

class MessageReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    ours_.reset(sv[0]);
    theirs_.reset(sv[1]);
  }
  void SendRaw(const void* data, size_t len, const std::vector<int>& fds = {}) {
    iovec iov{const_cast<void*>(data), len};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)] = {};
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
    ASSERT_EQ(sendmsg(theirs_.get(), &msg, 0), static_cast<ssize_t>(len));
  }
  static int OpenFds() {
    vhostuser::FdCloser::WaitIdleForTest();  // Received fds close there.
    int n = 0;
    for (int fd = 0; fd < 1024; ++fd) n += fcntl(fd, F_GETFD) != -1;
    return n;
  }

  UniqueFd ours_, theirs_;
  MessageReader reader_{FdCloser::NewOwner()};
  Message message_;
};

TEST_F(MessageReaderTest, AssemblesAMessageSentInPieces) {
  MessageHeader h{static_cast<uint32_t>(Request::kSetFeatures), kVersion, 8};
  uint64_t value = 0x1234;
  const auto* hb = reinterpret_cast<const uint8_t*>(&h);
  SendRaw(hb, 5);
  auto got = reader_.Read(ours_.get(), &message_);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got);
  SendRaw(hb + 5, 7);
  SendRaw(&value, 3);
  got = reader_.Read(ours_.get(), &message_);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got);
  SendRaw(reinterpret_cast<uint8_t*>(&value) + 3, 5);
  got = reader_.Read(ours_.get(), &message_);
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(*got);
  uint64_t payload;
  ASSERT_TRUE(message_.PayloadAs(&payload));
  EXPECT_EQ(payload, 0x1234u);
}

TEST_F(MessageReaderTest, RefusesOversizedPayloadBeforeReadingIt) {
  MessageHeader h{static_cast<uint32_t>(Request::kSetMemTable), kVersion, 0xffffffff};
  SendRaw(&h, sizeof h);
  auto got = reader_.Read(ours_.get(), &message_);
  EXPECT_FALSE(got.ok());
}

TEST_F(MessageReaderTest, RefusesWrongVersion) {
  MessageHeader h{1, 0x2, 0};
  SendRaw(&h, sizeof h);
  EXPECT_FALSE(reader_.Read(ours_.get(), &message_).ok());
}

TEST_F(MessageReaderTest, KeepsFdsWithTheirMessageAndClosesThemOnError) {
  const int before = OpenFds();
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  MessageHeader h{static_cast<uint32_t>(Request::kSetVringKick), kVersion, 8};
  uint64_t index = 0;
  std::vector<uint8_t> bytes(sizeof h + 8);
  memcpy(bytes.data(), &h, sizeof h);
  memcpy(bytes.data() + sizeof h, &index, 8);
  SendRaw(bytes.data(), bytes.size(), {p[0]});
  close(p[0]);
  close(p[1]);
  auto got = reader_.Read(ours_.get(), &message_);
  ASSERT_TRUE(got.ok() && *got);
  EXPECT_EQ(message_.fds.size(), 1u);
  message_.fds.clear();

  // More fds than any message takes: refused, and every one closed.
  std::vector<int> many;
  for (int i = 0; i < 12; ++i) many.push_back(ours_.get());
  SendRaw(bytes.data(), bytes.size(), many);
  EXPECT_FALSE(reader_.Read(ours_.get(), &message_).ok());
  EXPECT_EQ(OpenFds(), before);
}

TEST_F(MessageReaderTest, PeerClosingMidMessageIsAnError) {
  MessageHeader h{static_cast<uint32_t>(Request::kSetFeatures), kVersion, 8};
  SendRaw(&h, sizeof h);
  theirs_.reset();
  auto got = reader_.Read(ours_.get(), &message_);
  EXPECT_FALSE(got.ok());
}

}  // namespace
}  // namespace vhostuser
