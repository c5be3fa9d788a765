// Text a frontend chose, made fit for a log line, a port's status and the OVS database.
//
// Some of what we report comes from the frontend: the name a /proc link gives an fd it
// passed is whatever it named its memfd, and that may hold newlines, terminal escapes
// or bytes that are not UTF-8.  Written as they came, they forged lines in
// ovs-vswitchd.log and `ovs-appctl vhostuser/show`, and the invalid UTF-8 made
// ovsdb-server refuse the bridge's status transaction, which carries every interface's
// status: none was published again until that port's error changed.
#ifndef NETDEV_VHOSTUSER_RUNTIME_PRINTABLE_TEXT_H
#define NETDEV_VHOSTUSER_RUNTIME_PRINTABLE_TEXT_H

#include <cstddef>
#include <string>
#include "absl/strings/string_view.h"

namespace vhostuser {

// 'text' in printable ASCII: every byte outside 0x20-0x7e written as \xNN.  At most
// 'max_bytes' of 'text' are kept; "..." marks a cut.  Printable text comes back as it
// was, so that text made printable once can go through again unchanged.
std::string PrintableText(absl::string_view text, size_t max_bytes = 4096);

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_RUNTIME_PRINTABLE_TEXT_H
