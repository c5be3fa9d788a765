// vhostuser-hostile: replays the hostile-frontend cases of hostile_cases.cc against a
// vhost-user socket served by someone else (our ovs-vswitchd, in
// tests/hostile/test_hostile_replay.py).
//
//   vhostuser-hostile --list
//   vhostuser-hostile --socket PATH --case NAME [--scale-down N]
//   vhostuser-hostile --list-attacks
//   vhostuser-hostile --socket PATH --attack NAME [--seconds S] [--hold-ms N]
//
// --list prints one JSON object per case (name, outcome, expect, repeat, what).  A run
// exits 0 when the frontend saw what the case expects (the backend hung up, or kept
// going and passed traffic); checking the backend's side is the caller's job.  Traffic
// cases need the switch to send every packet back to the port it came from.
//
// --attack keeps one of the long-running attacks up for S seconds (tests/isolation,
// which measures what the switch's other ports lose meanwhile) and prints one JSON
// object: what it did (connections, dropped, refused, notes).  It exits 0 unless it
// could not attack at all.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "hostile_cases.h"

using vhostuser::hostile::Attack;
using vhostuser::hostile::AttackOptions;
using vhostuser::hostile::AttackReport;
using vhostuser::hostile::Attacks;
using vhostuser::hostile::Case;
using vhostuser::hostile::Cases;
using vhostuser::hostile::Env;

namespace {

std::string Json(const char* s) {
  std::string out = "\"";
  for (const char* p = s; *p; ++p) {
    if (*p == '"' || *p == '\\') out += '\\';
    if (static_cast<unsigned char>(*p) < 0x20) {
      out += ' ';
      continue;
    }
    out += *p;
  }
  return out + "\"";
}

int RunAttack(const std::string& name, const AttackOptions& options) {
  const Attack* a = vhostuser::hostile::FindAttack(name);
  if (a == nullptr) {
    fprintf(stderr, "vhostuser-hostile: no attack %s\n", name.c_str());
    return 2;
  }
  AttackReport report;
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = a->run(options, report);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                       start).count();
  printf("{\"attack\": %s, \"seconds\": %.3f, \"connections\": %d, \"dropped\": %d, "
         "\"refused\": %d, \"notes\": %s, \"error\": %s}\n",
         Json(a->name).c_str(), seconds, report.connections, report.dropped,
         report.refused, Json(report.notes.c_str()).c_str(),
         Json(s.ok() ? "" : std::string(s.message()).c_str()).c_str());
  return s.ok() ? 0 : 1;
}

int Usage() {
  fprintf(stderr,
          "usage: vhostuser-hostile --list\n"
          "       vhostuser-hostile --socket PATH --case NAME [--scale-down N]\n"
          "       vhostuser-hostile --list-attacks\n"
          "       vhostuser-hostile --socket PATH --attack NAME [--seconds S] "
          "[--hold-ms N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path, name, attack;
  int scale_down = 1;
  bool list = false, list_attacks = false;
  AttackOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--list") {
      list = true;
    } else if (arg == "--socket" && i + 1 < argc) {
      socket_path = argv[++i];
    } else if (arg == "--case" && i + 1 < argc) {
      name = argv[++i];
    } else if (arg == "--list-attacks") {
      list_attacks = true;
    } else if (arg == "--attack" && i + 1 < argc) {
      attack = argv[++i];
    } else if (arg == "--seconds" && i + 1 < argc) {
      options.seconds = atof(argv[++i]);
    } else if (arg == "--hold-ms" && i + 1 < argc) {
      options.hold_ms = atoi(argv[++i]);
    } else if (arg == "--scale-down" && i + 1 < argc) {
      scale_down = std::max(1, atoi(argv[++i]));
    } else {
      return Usage();
    }
  }
  if (list) {
    for (const Case& c : Cases()) {
      printf("{\"name\": %s, \"outcome\": %s, \"expect\": %s, \"repeat\": %d, "
             "\"what\": %s, \"known_issue\": %s}\n",
             Json(c.name).c_str(), Json(OutcomeName(c.outcome)).c_str(),
             Json(c.expect).c_str(), c.repeat, Json(c.what).c_str(),
             Json(c.known_issue ? c.known_issue : "").c_str());
    }
    return 0;
  }
  if (list_attacks) {
    for (const Attack& a : Attacks()) {
      printf("{\"name\": %s, \"what\": %s}\n", Json(a.name).c_str(), Json(a.what).c_str());
    }
    return 0;
  }
  if (!attack.empty() && !socket_path.empty()) {
    options.socket_path = socket_path;
    return RunAttack(attack, options);
  }
  if (socket_path.empty() || name.empty()) return Usage();
  const Case* c = vhostuser::hostile::FindCase(name);
  if (c == nullptr) {
    fprintf(stderr, "vhostuser-hostile: no case %s\n", name.c_str());
    return 2;
  }
  Env env;
  env.socket_path = socket_path;
  env.scale_down = scale_down;
  env.pump = [] { std::this_thread::sleep_for(std::chrono::microseconds(200)); };
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = RunCase(*c, env);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                       start).count();
  if (!s.ok()) {
    printf("FAIL %s (%.2f s): %s\n", c->name, seconds, std::string(s.message()).c_str());
    return 1;
  }
  printf("ok %s (%.2f s)\n", c->name, seconds);
  return 0;
}
