/* Packets for frames received from guests, kept per thread and reused.
 *
 * A PMD thread that forwards between vhost-user ports allocates a dp_packet for every
 * frame it takes from a guest and frees it once the frame is in the next guest.  With
 * malloc() alone, each 32-packet burst overflows glibc's per-thread cache (7 chunks
 * per size) and goes to the shared bins.  Here the packets a vhost-user port has
 * finished sending go back to the sending thread's cache instead, and the next receive
 * on that thread takes them from it, still warm, as OVS-DPDK takes mbufs back from a
 * mempool.
 *
 * The packets stay ordinary heap packets: one malloc() chunk holding the dp_packet and,
 * as its stub, the buffer.  Any other netdev that ends up with one frees it with
 * dp_packet_delete() as always; only the cache's size is bounded. */
#ifndef NETDEV_VHOSTUSER_PACKET_CACHE_H
#define NETDEV_VHOSTUSER_PACKET_CACHE_H 1

#include <stdint.h>

struct dp_packet;
struct dp_packet_batch;

/* Headroom of a cached packet: as much as a DPDK mbuf has, so that pushing a tunnel
 * header (VXLAN over IPv6 needs 70 bytes) does not move the frame. */
#define VHOSTUSER_PACKET_HEADROOM 128

/* Frames up to this size get a cached packet; larger ones one of their own size. */
#define VHOSTUSER_PACKET_CACHED_FRAME 2048

/* Returns a packet holding 'size' bytes of uninitialised data at '*data', with the
 * headroom dpif-netdev expects; the caller fills in the frame.  Its offsets, cut
 * length, offload flags and packet type are those of a new packet; its metadata is
 * not initialized, which dpif-netdev does for every packet a port receives. */
struct dp_packet *vhostuser_packet_alloc(uint32_t size, uint8_t **data);

/* Frees every packet in 'batch', keeping those the cache can reuse. */
void vhostuser_packet_release_batch(struct dp_packet_batch *batch);

#endif /* netdev-vhostuser-packet-cache.h */
