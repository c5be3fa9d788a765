// The library's log: lines go to the function the user set (OVS's VLOG in our daemon),
// or to stderr.
#ifndef NETDEV_VHOSTUSER_RUNTIME_LOG_H
#define NETDEV_VHOSTUSER_RUNTIME_LOG_H

#include <string_view>

#include "absl/strings/str_cat.h"
#include "vhostuser/vhostuser.h"

namespace vhostuser {

void LogLine(vhu_log_level level, std::string_view message);

template <typename... Args>
void Log(vhu_log_level level, const Args&... args) {
  LogLine(level, absl::StrCat(args...));
}

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RUNTIME_LOG_H
