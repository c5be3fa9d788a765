// The replay suite's cases: one hostile frontend per known bug class of vhost-user
// backends, each replayed against a socket.  The same cases run against a port in
// process (tests/hostile/hostile_replay_test.cc, also under ASan+UBSan) and against our
// ovs-vswitchd (vhostuser-hostile, driven by tests/hostile/test_hostile_replay.py).
//
// A case plays one connection from the frontend's side and says what it saw; what the
// port says about it (its error, its fds and mappings) is for the harness to check.
#ifndef TESTS_HOSTILE_HOSTILE_CASES_H
#define TESTS_HOSTILE_HOSTILE_CASES_H

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace vhostuser::hostile {

struct Env {
  std::string socket_path;
  // One round of the switch's data path.  In process: a loopback burst (every packet
  // the guest sends comes back to it); against the daemon: nothing, its PMD thread
  // polls and an OpenFlow rule sends each packet back where it came from.
  std::function<void()> pump;
  // Repeat counts are divided by this (at least 1): slow builds run fewer rounds.
  int scale_down = 1;
};

enum class Outcome {
  kError,    // The port drops the connection and reports an error containing 'expect'.
  kClean,    // The connection ends as a normal close: no error to report.
  kAlive,    // The connection survives (the case then closes it).
  kTraffic,  // Packets pass, byte for byte (the case then closes it).
  kAny,      // A race: dropped with some error, or survives; never worse.
};

struct Case {
  const char* name;
  const char* what;
  Outcome outcome;
  const char* expect;  // kError: a substring of the port's error.
  int repeat;          // Connections the case makes, one after another.
  std::function<absl::Status(Env&)> run;  // One connection.
  // Set for a case that shows a problem not fixed yet: harnesses skip it unless
  // VHU_HOSTILE_KNOWN_ISSUES=1.  Says what goes wrong.
  const char* known_issue = nullptr;
};

const std::vector<Case>& Cases();
const Case* FindCase(const std::string& name);
const char* OutcomeName(Outcome outcome);

// Runs 'c' repeat/scale_down times; stops at the first failure.
absl::Status RunCase(const Case& c, Env& env);

// ---- Long-running attacks (tests/isolation). ----
//
// An attack keeps at one port for a given time, connection after connection, while
// well-behaved guests on other ports of the same switch pass traffic; the isolation
// suite measures what the neighbours lose.  An attack says what it did, not whether the
// switch coped: that is for the harness to judge.

struct AttackReport {
  int connections = 0;  // Connections that got as far as the attack needs.
  int dropped = 0;      // Of those, how many the switch hung up on first.
  int refused = 0;      // Connection attempts that did not get through.
  std::string notes;    // Anything worth printing (first error seen, ...).
};

struct AttackOptions {
  std::string socket_path;
  double seconds = 3;
  int hold_ms = -1;  // queue_flapping: how long each connection stays (-1: default).
};

struct Attack {
  const char* name;
  const char* what;
  std::function<absl::Status(const AttackOptions&, AttackReport&)> run;
};

const std::vector<Attack>& Attacks();
const Attack* FindAttack(const std::string& name);

}  // namespace vhostuser::hostile

#endif  // TESTS_HOSTILE_HOSTILE_CASES_H
