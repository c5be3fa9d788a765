#include "control/port.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "control/control_loop.h"
#include "runtime/log.h"
#include "runtime/printable_text.h"

namespace vhostuser {
namespace {

// Requests handled per wake-up of one connection, so one chatty frontend cannot starve
// the other ports; epoll is level-triggered and brings us back for the rest.
constexpr int kMaxMessagesPerWakeup = 256;
// Events kept for a user that does not drain them; past this, new events are dropped
// (the notification still goes out, and the user re-reads the state anyway), so a
// frontend connecting and hanging up in a loop cannot grow the queue without bound.
constexpr size_t kMaxQueuedEvents = 256;
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);
// A connection that ends sooner than this after it was accepted counts against the
// port's churn budget (vhu_port_options.churn_rate).
constexpr std::chrono::seconds kShortConnection{1};
// How often, at most, a port logs that it paused accepting.
constexpr std::chrono::seconds kPauseLogInterval{10};
// A frontend whose fds are closing slower than it sends them (closes that block: see
// fd_closer.h) loses its connection, and gets no new one, while more than this many of
// its port's fds are held up by them (FdCloser::BlockedFor).  Each connection brings at
// most one message's fds past this (a message with fds of the wrong kind costs the
// frontend its connection), so the port holds a bounded share of the process's fd
// table: this many, or FdCloser::kMaxUnclosedPerOwner before its closes are found slow.
constexpr size_t kMaxBlockedCloses = 64;

absl::StatusOr<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket path '", path, "' is empty or longer than ", sizeof addr.sun_path - 1,
        " bytes"));
  }
  memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// A non-blocking unix stream socket, closed like the fds a frontend sends: a frontend
// can queue fds on it (or, for a listener, on the connections in its backlog), and
// closing it closes those too (unique_fd.h).
// Tells the peer of a connection it is over, now, then queues the socket's close: the
// closers may be busy with this port's frontend's fds for a while.  shutdown() leaves
// what is queued on the socket to the close, so nothing is closed on this thread.
void HangUp(UniqueFd& connection) {
  shutdown(connection.get(), SHUT_RDWR);
  connection.reset();
}

UniqueFd UnixStreamSocket(uint32_t closer_owner) {
  return UniqueFd::FromFrontend(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
                                closer_owner);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Port>> Port::Create(const vhu_port_options& options) {
  if (options.socket_path == nullptr) {
    return absl::InvalidArgumentError("no socket path");
  }
  if (auto addr = UnixAddress(options.socket_path); !addr.ok()) return addr.status();
  std::unique_ptr<Port> port(new Port(options));
  if (port->mode_ == VHU_MODE_SERVER) {
    if (absl::Status s = port->Listen(); !s.ok()) return s;
  }
  ControlLoop::Get().Add(port.get());
  return port;
}

Port::Port(const vhu_port_options& options)
    : path_(options.socket_path),
      mode_(options.mode),
      socket_mode_(options.socket_mode ? options.socket_mode : VHU_DEFAULT_SOCKET_MODE),
      socket_gid_(options.socket_gid),
      notify_(options.notify),
      aux_(options.aux),
      log_(path_, aux_),
      backoff_(kFirstBackoff),
      churn_rate_(options.churn_rate == UINT32_MAX ? 0
                  : options.churn_rate           ? options.churn_rate
                                                 : VHU_DEFAULT_CHURN_RATE),
      device_([this](vhu_event e) { Post(e); },
              PortLog(absl::StrCat("vhost-user ", path_), aux_),
              options.max_guest_memory ? options.max_guest_memory
                                       : VHU_DEFAULT_MAX_GUEST_MEMORY,
              options.max_rx_frame_size && options.max_rx_frame_size < kMaxFrameSize
                  ? options.max_rx_frame_size
                  : kMaxFrameSize) {}

Port::~Port() {
  ControlLoop::Get().Remove(this);
  // Out of the control loop's epoll set before they are queued for closing: an fd
  // stays open, and in the set, for as long as its close waits behind others of this
  // port's that block, and an event on it made the loop spin (the port being gone,
  // nothing reads it).
  if (listen_fd_.valid()) ControlLoop::Get().Unwatch(listen_fd_.get());
  if (conn_fd_.valid()) {
    ControlLoop::Get().Unwatch(conn_fd_.get());
    std::lock_guard<std::mutex> lock(status_mu_);
    device_.Reset();
    HangUp(conn_fd_);
  }
  if (listen_fd_.valid()) {
    // Remove the socket file only if it is still ours, not one a successor bound.
    struct stat st;
    if (lstat(path_.c_str(), &st) == 0 && st.st_ino == listen_inode_) {
      unlink(path_.c_str());
    }
  }
}

absl::Status Port::Listen() {
  auto addr = UnixAddress(path_);
  struct stat st;
  if (lstat(path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return absl::AlreadyExistsError(
          absl::StrCat(path_, " exists and is not a socket"));
    }
    // A socket file nobody listens on is left over from a process that died: remove
    // it.  One with a listener belongs to someone else: leave it alone.  The probe
    // does not block: a listener that never accepts, its backlog full, answers EAGAIN
    // at once, and is just as much someone else's.
    UniqueFd probe = UnixStreamSocket(closer_owner_);
    if (!probe.valid()) {
      return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
    }
    if (connect(probe.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) ==
            0 ||
        errno == EAGAIN || errno == EINPROGRESS) {
      return absl::AlreadyExistsError(absl::StrCat(
          path_, " is in use by another process (a socket with a listener)"));
    }
    if (errno != ECONNREFUSED) {
      return absl::UnavailableError(absl::StrCat(
          "cannot tell whether ", path_, " is in use: ", strerror(errno)));
    }
    unlink(path_.c_str());
  }
  UniqueFd fd = UnixStreamSocket(closer_owner_);
  if (!fd.valid()) {
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot bind ", path_, ": ", strerror(errno)));
  }
  // Mode and group before listen(): until then a connect is refused, whatever the
  // umask gave the file.
  if (absl::Status s = SetSocketPermissions(); !s.ok()) {
    unlink(path_.c_str());
    return s;
  }
  if (listen(fd.get(), 1) != 0 || lstat(path_.c_str(), &st) != 0) {
    unlink(path_.c_str());
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", path_, ": ", strerror(errno)));
  }
  listen_inode_ = st.st_ino;
  listen_fd_ = std::move(fd);
  return absl::OkStatus();
}

absl::Status Port::SetSocketPermissions() {
  gid_t gid = static_cast<gid_t>(socket_gid_);
  if (socket_gid_ < 0) {
    const size_t slash = path_.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : path_.substr(0, slash);
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot stat ", dir, ": ", strerror(errno)));
    }
    gid = st.st_gid;
  }
  if (lchown(path_.c_str(), static_cast<uid_t>(-1), gid) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot give ", path_, " group ", gid,
                                               ": ", strerror(errno)));
  }
  // Not chmod(): the path could be a symbolic link by now.
  if (fchmodat(AT_FDCWD, path_.c_str(), socket_mode_ & 07777, AT_SYMLINK_NOFOLLOW) != 0) {
    return absl::UnavailableError(absl::StrFormat("cannot set %s to mode %04o: %s", path_,
                                                  socket_mode_, strerror(errno)));
  }
  return absl::OkStatus();
}

void Port::OnAdded() {
  if (listen_fd_.valid()) WatchListener();
}

void Port::WatchListener() {
  if (ControlLoop::Get().Watch(this, listen_fd_.get(), ControlLoop::FdKind::kListener)) {
    return;
  }
  log_(VHU_LOG_ERR, "cannot watch the listening socket (", strerror(errno),
       "); trying again in a second");
  accept_paused_ = true;
  accept_resumes_ = SteadyClock::now() + std::chrono::seconds(1);
}

void Port::OnReadable(bool listener) {
  if (listener) {
    Accept();
  } else if (conn_fd_.valid()) {
    ReadMessages();
  }
}

void Port::Accept() {
  // Closed like UnixStreamSocket()'s: the frontend may have queued fds on it already.
  auto fd = UniqueFd::FromFrontend(
      accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC), closer_owner_);
  if (!fd.valid()) return;
  if (conn_fd_.valid()) {
    log_(VHU_LOG_WARN, "refusing a second frontend while one is connected");
    ChargeShortConnection(SteadyClock::now());
    HangUp(fd);
    return;
  }
  if (ClosesBacklogged()) {
    ChargeShortConnection(SteadyClock::now());
    HangUp(fd);
    return;
  }
  Connected(std::move(fd));
}

void Port::TryConnect(absl::Time now) {
  if (ClosesBacklogged()) {
    next_connect_ = now + kMaxBackoff;
    return;
  }
  auto addr = UnixAddress(path_);
  UniqueFd fd = UnixStreamSocket(closer_owner_);
  if (fd.valid() &&
      connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0) {
    backoff_ = kFirstBackoff;
    logged_connect_failure_ = false;
    Connected(std::move(fd));
    return;
  }
  if (!logged_connect_failure_) {
    log_(VHU_LOG_INFO, "cannot connect (", strerror(errno),
         "); retrying until the frontend listens");
    logged_connect_failure_ = true;
  }
  next_connect_ = now + backoff_;
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
}

void Port::Connected(UniqueFd fd) {
  if (!ControlLoop::Get().Watch(this, fd.get(), ControlLoop::FdKind::kConnection)) {
    log_(VHU_LOG_ERR, "cannot watch a frontend's connection (", strerror(errno),
         "); hanging up");
    HangUp(fd);
    // Not at once again, for as long as the kernel refuses.
    if (mode_ == VHU_MODE_CLIENT) {
      next_connect_ = absl::Now() + backoff_;
      backoff_ = std::min(backoff_ * 2, kMaxBackoff);
    } else {
      ChargeShortConnection(SteadyClock::now());
    }
    return;
  }
  conn_fd_ = std::move(fd);
  connected_at_ = SteadyClock::now();
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    device_.NewConnection();
    connected_ = true;
    ++connects_;
  }
  log_(VHU_LOG_INFO, "frontend connected");
  Post(vhu_event{VHU_EVENT_CONNECTED, -1});
}

void Port::ReadMessages() {
  if (message_ == nullptr) message_.reset(new Message);  // Payload written before read.
  for (int i = 0; i < kMaxMessagesPerWakeup && conn_fd_.valid(); ++i) {
    absl::StatusOr<bool> got = reader_.Read(conn_fd_.get(), message_.get());
    if (!got.ok()) {
      Disconnect(got.status());
      return;
    }
    if (!*got) return;
    absl::Status handled;
    {
      std::lock_guard<std::mutex> lock(status_mu_);
      handled = device_.Handle(conn_fd_.get(), *message_);
    }
    const bool carried_fds = !message_->fds.empty();
    message_->fds.clear();  // Closes whatever the request did not keep.
    if (!handled.ok()) {
      Disconnect(handled);
      return;
    }
    if (carried_fds && ClosesBacklogged()) {
      Disconnect(absl::ResourceExhaustedError(absl::StrCat(
          "the frontend sends fds faster than they close (more than ", kMaxBlockedCloses,
          " of this port's wait on closes that block)")));
      return;
    }
  }
}

bool Port::ClosesBacklogged() {
  if (FdCloser::BlockedFor(closer_owner_) <= kMaxBlockedCloses) {
    closes_backlog_logged_ = false;
    return false;
  }
  if (!closes_backlog_logged_) {
    log_(VHU_LOG_WARN, "taking no frontend until more of the fds earlier ones sent "
         "are closed (their close() blocks)");
    closes_backlog_logged_ = true;
  }
  return true;
}

void Port::Disconnect(const absl::Status& why) {
  // A frontend closing its socket is the normal way to go; anything else is an error
  // worth showing in the port's status.
  const bool error = !absl::IsUnavailable(why);
  ControlLoop::Get().Unwatch(conn_fd_.get());
  reader_.Reset();
  message_.reset();
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    // Before the hang-up: the rings' last used->idx (the transmit buffers held back,
    // virtqueue.h) is in guest memory when the frontend sees the connection close.
    device_.Reset();
    HangUp(conn_fd_);
    connected_ = false;
    ++disconnects_;
    last_error_ = error ? PrintableText(why.message()) : "";
  }
  ring_failure_.store(false, std::memory_order_relaxed);
  log_(error ? VHU_LOG_WARN : VHU_LOG_INFO, "frontend disconnected: ",
       why.message());
  if (mode_ == VHU_MODE_CLIENT) {
    next_connect_ = absl::Now() + kFirstBackoff;
    backoff_ = kFirstBackoff;
  }
  Post(vhu_event{VHU_EVENT_DISCONNECTED, -1});
  if (const auto now = SteadyClock::now(); now - connected_at_ < kShortConnection) {
    ChargeShortConnection(now);
  }
}

// Each connection costs the switch work on threads other ports need (this one, which
// serves every port's control messages; the owner's main thread, which takes in the
// port's new state; the database), whatever the frontend does with it.  So short
// connections draw on a budget, a token bucket of VHU_CHURN_BURST refilled at
// churn_rate_ a second, and when it is spent the listener leaves the epoll set until
// the bucket holds one again: meanwhile the kernel turns further connects away (the
// backlog is one), at no cost to us.  Only the churning frontend's own port waits.
void Port::ChargeShortConnection(SteadyClock::time_point now) {
  if (churn_rate_ == 0 || !listen_fd_.valid()) return;
  if (churn_refilled_ != SteadyClock::time_point{}) {
    const std::chrono::duration<double> elapsed = now - churn_refilled_;
    churn_budget_ = std::min<double>(VHU_CHURN_BURST,
                                     churn_budget_ + elapsed.count() * churn_rate_);
  }
  churn_refilled_ = now;
  churn_budget_ -= 1;
  if (churn_budget_ >= 1 || accept_paused_) return;
  ControlLoop::Get().Unwatch(listen_fd_.get());
  accept_paused_ = true;
  accept_resumes_ = now + std::chrono::duration_cast<SteadyClock::duration>(
                              std::chrono::duration<double>((1 - churn_budget_) /
                                                            churn_rate_));
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    ++accept_pauses_;
  }
  ++pauses_unlogged_;
  if (!pause_ever_logged_ || now - pause_logged_ >= kPauseLogInterval) {
    log_(VHU_LOG_WARN, "frontend connections end within ",
         kShortConnection.count(), " s more than ", churn_rate_,
         " times a second; accepting at that rate (", pauses_unlogged_,
         pauses_unlogged_ == 1 ? " pause" : " pauses", " since the last report)");
    pause_ever_logged_ = true;
    pause_logged_ = now;
    pauses_unlogged_ = 0;
  }
}

// A frontend that stalled a data-path thread (its interrupt write blocked until the
// watchdog broke it off) loses its connection like any other, but it could
// connect again and repeat that once a second, its connections long enough to escape
// the churn budget: a thread other ports need, stalled a few percent of the time.  So
// its port takes no frontend for a while, twice as long at each stall (1 s to 64 s),
// back to 1 s after ten minutes without one.
void Port::Penalize(SteadyClock::time_point now) {
  constexpr std::chrono::seconds kFirst{1}, kMax{64}, kForgetAfter{600};
  stall_penalty_ = stall_penalty_ == SteadyClock::duration::zero() ||
                           now - last_stall_ >= kForgetAfter
                       ? SteadyClock::duration(kFirst)
                       : std::min<SteadyClock::duration>(2 * stall_penalty_, kMax);
  last_stall_ = now;
  log_(VHU_LOG_WARN, "its frontend stalled a data-path thread; taking none for ",
       std::chrono::duration_cast<std::chrono::seconds>(stall_penalty_).count(), " s");
  if (mode_ == VHU_MODE_CLIENT) {
    next_connect_ = absl::Now() + absl::FromChrono(stall_penalty_);
    return;
  }
  if (!listen_fd_.valid()) return;
  if (!accept_paused_) {
    ControlLoop::Get().Unwatch(listen_fd_.get());
    accept_paused_ = true;
    accept_resumes_ = now;
    std::lock_guard<std::mutex> lock(status_mu_);
    ++accept_pauses_;
  }
  accept_resumes_ = std::max(accept_resumes_, now + stall_penalty_);
}

absl::Time Port::OnTick(absl::Time now) {
  // First, as it explains the ring failures that follow it: the data path read zeros
  // where guest memory had lost its backing (sigbus_guard.h), and the frontend loses its
  // port.
  if (conn_fd_.valid()) {
    if (const int region = device_.lost_memory_region(); region >= 0) {
      Disconnect(absl::InvalidArgumentError(absl::StrCat(
          "guest memory region ", region,
          " lost its backing under the switch (SIGBUS: its file was truncated after "
          "SET_MEM_TABLE, or its huge pages ran out)")));
    } else if (device_.log_lost()) {
      Disconnect(absl::InvalidArgumentError(
          "the dirty log lost its backing under the switch (SIGBUS: its file was "
          "truncated after SET_LOG_BASE)"));
    }
  }
  if (ring_failure_.exchange(false, std::memory_order_acq_rel) && conn_fd_.valid()) {
    std::string reason;
    bool stalled = false;
    {
      std::lock_guard<std::mutex> lock(status_mu_);
      device_.ForEachVring([&](unsigned i, const Virtqueue& vq) {
        const char* why = vq.failure();
        if (why == nullptr) return;
        if (reason.empty()) reason = absl::StrCat("vring ", i, ": ", why);
        stalled |= why == Virtqueue::kCallBlocked;
      });
    }
    if (!reason.empty()) Disconnect(absl::InvalidArgumentError(reason));
    if (stalled) Penalize(SteadyClock::now());
  }
  if (accept_paused_) {
    const auto left = accept_resumes_ - SteadyClock::now();
    if (left > SteadyClock::duration::zero()) return now + absl::FromChrono(left);
    accept_paused_ = false;
    WatchListener();
    if (accept_paused_) return now + absl::Seconds(1);
  }
  if (mode_ == VHU_MODE_CLIENT && !conn_fd_.valid()) {
    if (now >= next_connect_) TryConnect(now);
    if (!conn_fd_.valid()) return next_connect_;
  }
  return absl::InfiniteFuture();
}

void Port::Post(vhu_event event) {
  std::lock_guard<std::mutex> lock(events_mu_);
  if (events_.size() - events_head_ < kMaxQueuedEvents) events_.push_back(event);
  notify_pending_ = true;
}

void Port::FlushNotify() {
  {
    std::lock_guard<std::mutex> lock(events_mu_);
    if (!notify_pending_) return;
    notify_pending_ = false;
  }
  if (notify_ != nullptr) notify_(aux_);
}

bool Port::NextEvent(vhu_event* event) {
  std::lock_guard<std::mutex> lock(events_mu_);
  if (events_head_ == events_.size()) return false;
  *event = events_[events_head_++];
  if (events_head_ == events_.size()) {
    std::vector<vhu_event>().swap(events_);  // Drained: give the memory back.
    events_head_ = 0;
  }
  return true;
}

void Port::ReportRingFailure() {
  if (!ring_failure_.exchange(true, std::memory_order_acq_rel)) ControlLoop::Get().Wake();
}

void Port::GetStatus(vhu_port_status* status) {
  std::lock_guard<std::mutex> lock(status_mu_);
  *status = {};
  status->state = !connected_  ? VHU_STATE_DISCONNECTED
                  : device_.ready() ? VHU_STATE_READY
                                    : VHU_STATE_CONNECTED;
  status->features = device_.features();
  status->protocol_features = device_.protocol_features();
  status->mtu = device_.mtu();
  status->device_status = device_.device_status();
  status->num_vrings = device_.num_vrings();
  status->numa_node = connected_ ? device_.numa_node() : -1;
  std::copy(device_.rx_queues().begin(), device_.rx_queues().end(),
            status->enabled_rx_queues);
  std::copy(device_.tx_queues().begin(), device_.tx_queues().end(),
            status->enabled_tx_queues);
  status->connects = connects_;
  status->disconnects = disconnects_;
  status->accept_pauses = accept_pauses_;
  size_t n = std::min(last_error_.size(), sizeof status->last_error - 1);
  last_error_.copy(status->last_error, n);
  status->last_error[n] = '\0';
}

bool Port::GetVringStatus(unsigned vring, vhu_vring_status* status) {
  if (vring >= VHU_MAX_VRINGS) return false;
  std::lock_guard<std::mutex> lock(status_mu_);
  Virtqueue* vq = device_.FindVring(vring);
  if (vq == nullptr) {  // Never configured: as a new vring would say.
    *status = {};
    return true;
  }
  std::lock_guard<Spinlock> vq_lock(vq->lock());
  vq->FillStatus(status);
  return true;
}

}  // namespace vhostuser
