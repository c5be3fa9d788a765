// One vhost-user socket and the frontend connected to it: listening or connecting
// (with reconnects), reading requests into the Device, and telling the port's user what
// changed through an event queue.  Everything but the status and event accessors runs
// on the control thread.
#ifndef NETDEV_VHOSTUSER_CONTROL_PORT_H
#define NETDEV_VHOSTUSER_CONTROL_PORT_H

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "control/device.h"
#include "control/message_reader.h"
#include "runtime/log.h"
#include "runtime/unique_fd.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser {

class Port {
 public:
  static absl::StatusOr<std::unique_ptr<Port>> Create(const vhu_port_options& options);
  ~Port();

  // ---- Any thread. ----
  bool NextEvent(vhu_event* event);
  void GetStatus(vhu_port_status* status);
  bool GetVringStatus(unsigned vring, vhu_vring_status* status);
  Device& device() { return device_; }
  // A data-path thread found a vring broken: have the control thread act on it.
  void ReportRingFailure();

  // ---- Control thread (ControlLoop callbacks, loop mutex held). ----
  uint64_t id() const { return id_; }
  void set_id(uint64_t id) { id_ = id; }
  // Now known to the loop: starts watching the listening socket.
  void OnAdded();
  void OnReadable(bool listener);
  // Runs timers and failure checks; returns when it next wants to run.
  absl::Time OnTick(absl::Time now);
  // Calls the user's notify hook if events were queued since the last call.
  void FlushNotify();

 private:
  explicit Port(const vhu_port_options& options);
  absl::Status Listen();
  absl::Status SetSocketPermissions();
  void Accept();
  void TryConnect(absl::Time now);
  void ReadMessages();
  void Connected(UniqueFd fd);
  void Disconnect(const absl::Status& why);
  void Post(vhu_event event);
  // The churn limit's clock: monotonic, so that a step of the wall clock neither
  // makes a long connection look short nor stretches a pause.
  using SteadyClock = std::chrono::steady_clock;
  void ChargeShortConnection(SteadyClock::time_point now);
  // Whether too many of this port's fds wait on closes that block to take more
  // (kMaxBlockedCloses); logs the first time.
  bool ClosesBacklogged();
  // Has the control loop watch the listening socket; if it cannot, pauses accepting
  // for a second.
  void WatchListener();
  // Takes no frontend for a while after one stalled a data-path thread.
  void Penalize(SteadyClock::time_point now);

  const std::string path_;
  const vhu_mode mode_;
  const unsigned socket_mode_;
  const int socket_gid_;
  void (*const notify_)(void*);
  void* const aux_;
  const PortLog log_;
  uint64_t id_ = 0;

  UniqueFd listen_fd_;
  ino_t listen_inode_ = 0;
  UniqueFd conn_fd_;
  // Whose fds FdCloser closes: this port's frontends' (fd_closer.h).
  const uint32_t closer_owner_ = FdCloser::NewOwner();
  MessageReader reader_{closer_owner_};
  // The request being handled; allocated while a frontend is connected.
  std::unique_ptr<Message> message_;
  absl::Time next_connect_ = absl::InfinitePast();
  absl::Duration backoff_;
  bool logged_connect_failure_ = false;
  bool closes_backlog_logged_ = false;
  SteadyClock::duration stall_penalty_{};  // The last Penalize()'s; 0: none yet.
  SteadyClock::time_point last_stall_{};
  std::atomic<bool> ring_failure_{false};
  // Server mode: the budget of short connections (ChargeShortConnection()).
  const double churn_rate_;  // Refill per second; 0: no limit.
  double churn_budget_ = VHU_CHURN_BURST;
  SteadyClock::time_point churn_refilled_{};  // {}: never charged, the budget is full.
  SteadyClock::time_point connected_at_{};
  bool accept_paused_ = false;  // The listener is out of the control loop's epoll set.
  SteadyClock::time_point accept_resumes_{};
  bool pause_ever_logged_ = false;
  SteadyClock::time_point pause_logged_{};
  uint64_t pauses_unlogged_ = 0;

  // Status and Device state read by other threads.
  // Guards connected_, the counters, last_error_ and the Device's non-vring state.
  std::mutex status_mu_;
  // The vrings have locks of their own; the rest of the device is read under status_mu_.
  Device device_;
  bool connected_ = false;
  uint64_t connects_ = 0;
  uint64_t disconnects_ = 0;
  uint64_t accept_pauses_ = 0;
  std::string last_error_;

  std::mutex events_mu_;  // Guards events_ and notify_pending_.
  // Pending events from events_head_ on.  A vector, emptied once drained, rather than a
  // deque, which holds half a kilobyte even when empty: most ports sit idle.
  std::vector<vhu_event> events_;
  size_t events_head_ = 0;
  bool notify_pending_ = false;
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_CONTROL_PORT_H
