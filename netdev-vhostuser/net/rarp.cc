#include "net/rarp.h"

#include <cstring>

namespace vhostuser {

void BuildRarpFrame(const uint8_t mac[6], uint8_t* out) {
  memset(out, 0, kRarpFrameSize);
  memset(out, 0xff, 6);                      // Destination: broadcast.
  memcpy(out + 6, mac, 6);                   // Source: the guest.
  out[12] = 0x80, out[13] = 0x35;            // EtherType: RARP.
  uint8_t* arp = out + 14;
  arp[0] = 0x00, arp[1] = 0x01;              // Hardware: Ethernet.
  arp[2] = 0x08, arp[3] = 0x00;              // Protocol: IPv4.
  arp[4] = 6, arp[5] = 4;                    // Address lengths.
  arp[6] = 0x00, arp[7] = 0x03;              // Operation: reverse request.
  memcpy(arp + 8, mac, 6);                   // Sender hardware address.
  memcpy(arp + 18, mac, 6);                  // Target hardware address.
  // Both protocol addresses stay 0.0.0.0: the guest's IP is not the switch's to say.
}

}  // namespace vhostuser
