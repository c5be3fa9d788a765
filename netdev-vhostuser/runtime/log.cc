#include "runtime/log.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "runtime/printable_text.h"

namespace vhostuser {
namespace {
std::atomic<vhu_log_fn*> log_function{nullptr};
}  // namespace

void LogLine(vhu_log_level level, std::string_view message, void* aux) {
  // Lines quote what frontends send (fd names, at least): one line each, whatever
  // they hold.
  const std::string line = PrintableText(absl::string_view(message.data(), message.size()));
  if (vhu_log_fn* fn = log_function.load(std::memory_order_acquire)) {
    fn(level, line.c_str(), aux);
    return;
  }
  static const char* const kNames[] = {"ERR", "WARN", "INFO", "DBG"};
  fprintf(stderr, "vhostuser|%s|%s\n", kNames[level & 3], line.c_str());
}

}  // namespace vhostuser

extern "C" void vhu_set_log_function(vhu_log_fn* fn) {
  vhostuser::log_function.store(fn, std::memory_order_release);
}
