// The library's log: lines go to the function the user set (OVS's VLOG in our daemon),
// or to stderr.
#ifndef NETDEV_VHOSTUSER_RUNTIME_LOG_H
#define NETDEV_VHOSTUSER_RUNTIME_LOG_H

#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser {

// 'aux' is the user's vhu_port_options.aux of the port the line is about, or nullptr.
void LogLine(vhu_log_level level, std::string_view message, void* aux = nullptr);

// A line about no port in particular.
template <typename... Args>
void Log(vhu_log_level level, const Args&... args) {
  LogLine(level, absl::StrCat(args...));
}

// The lines about one port: each starts with what names the port and carries the
// port's aux, so that the user can rate-limit every port's lines on their own.
class PortLog {
 public:
  PortLog(std::string prefix, void* aux) : prefix_(std::move(prefix)), aux_(aux) {}

  template <typename... Args>
  void operator()(vhu_log_level level, const Args&... args) const {
    LogLine(level, absl::StrCat(prefix_, ": ", args...), aux_);
  }

 private:
  std::string prefix_;
  void* aux_;
};

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RUNTIME_LOG_H
