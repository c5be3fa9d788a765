// The frame a switch sends on a guest's behalf after a live migration (SEND_RARP), so
// that MAC learning and the peers' tables move to the guest's new port at once: a
// broadcast reverse ARP request from the guest's MAC, as QEMU's own announce sends.
#ifndef NETDEV_VHOSTUSER_NET_RARP_H
#define NETDEV_VHOSTUSER_NET_RARP_H

#include <cstdint>

namespace vhostuser {

inline constexpr uint32_t kRarpFrameSize = 60;  // The Ethernet minimum, padded.

// Writes the RARP frame announcing 'mac' into 'out' (kRarpFrameSize bytes).
void BuildRarpFrame(const uint8_t mac[6], uint8_t* out);

}  // namespace vhostuser

#endif  // NETDEV_VHOSTUSER_NET_RARP_H
