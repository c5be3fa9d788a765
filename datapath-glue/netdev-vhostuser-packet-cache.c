/* Per-thread reuse of the packets vhost-user ports receive into.  See the header for
 * why; here, how a packet qualifies for reuse and how the cache ends with its thread. */

#include <config.h>

#include "netdev-vhostuser-packet-cache.h"

#include <pthread.h>
#include <stdlib.h>

#include "coverage.h"
#include "dp-packet.h"
#include "dpif-netdev.h"
#include "ovs-thread.h"
#include "util.h"

/* A thread keeps at most this many packets (about 2.3 KiB each).  A burst in flight
 * through the switch is 32 packets, so this only bounds what a thread that sends more
 * than it receives (the receiving PMD is another) holds back from malloc(). */
#define CACHE_CAPACITY 256

/* Packets put back into a thread's cache, for `ovs-appctl coverage/show`. */
COVERAGE_DEFINE(vhostuser_packet_recycled);

#define CACHED_ALLOCATED (VHOSTUSER_PACKET_HEADROOM + VHOSTUSER_PACKET_CACHED_FRAME)
BUILD_ASSERT_DECL(CACHED_ALLOCATED <= UINT16_MAX);

struct packet_cache {
    size_t n;
    struct dp_packet *packets[CACHE_CAPACITY];
};

/* The fast path reads the thread's cache through a plain __thread pointer; the
 * pthread key exists only to free the cache when its thread exits (PMD threads come
 * and go with pmd-cpu-mask). */
static __thread struct packet_cache *thread_cache;
static pthread_key_t cache_key;

static void
packet_cache_destroy(void *cache_)
{
    struct packet_cache *cache = cache_;

    for (size_t i = 0; i < cache->n; i++) {
        free(cache->packets[i]);
    }
    free(cache);
    /* Destructors run on the exiting thread: one that still sends after this starts
     * a new cache, which the key frees in its next round. */
    thread_cache = NULL;
}

static struct packet_cache *
packet_cache_get(void)
{
    static struct ovsthread_once once = OVSTHREAD_ONCE_INITIALIZER;

    if (OVS_LIKELY(thread_cache)) {
        return thread_cache;
    }
    if (ovsthread_once_start(&once)) {
        xpthread_key_create(&cache_key, packet_cache_destroy);
        ovsthread_once_done(&once);
    }
    thread_cache = xmalloc(sizeof *thread_cache);
    thread_cache->n = 0;
    xpthread_setspecific(cache_key, thread_cache);
    return thread_cache;
}

/* One chunk holds the dp_packet and, as its stub, 'allocated' bytes of buffer, so
 * that dp_packet_delete() releases both with its one free(); a packet that has to
 * grow moves its data into a buffer of its own, as any stub packet does. */
static struct dp_packet *
packet_init(struct dp_packet *packet, size_t allocated, size_t headroom,
            uint32_t size, uint8_t **data)
{
    dp_packet_use_stub(packet, packet + 1, allocated);
    /* What dp_packet_reserve() does, without its out-of-line checks: 'allocated'
     * covers headroom and frame by construction. */
    dp_packet_set_data(packet, (char *) (packet + 1) + headroom);
    dp_packet_set_size(packet, size);
    *data = dp_packet_data(packet);
    return packet;
}

/* Makes a packet from the cache look freshly received, touching only its first
 * line.  Its base, allocated size and source are still those packet_init() set:
 * packet_is_reusable() checked them before the cache took it.  Its metadata is left
 * as it was, as netdev-dpdk leaves an mbuf's: dpif-netdev initializes the metadata of
 * every packet a port receives before it reads any, and dp_packet_use_stub()'s own
 * initialization of it stored into two more lines (up to byte 196 of the packet),
 * while the store buffer was full of the frames being copied. */
static struct dp_packet *
packet_reuse(struct dp_packet *packet, uint32_t size, uint8_t **data)
{
    dp_packet_set_data(packet, (char *) (packet + 1) + VHOSTUSER_PACKET_HEADROOM);
    dp_packet_set_size(packet, size);
    dp_packet_reset_offsets(packet);
    dp_packet_reset_cutlen(packet);
    dp_packet_reset_offload(packet);
    packet->packet_type = htonl(PT_ETH);
    *data = dp_packet_data(packet);
    return packet;
}

struct dp_packet *
vhostuser_packet_alloc(uint32_t size, uint8_t **data)
{
    if (OVS_LIKELY(size <= VHOSTUSER_PACKET_CACHED_FRAME)) {
        struct packet_cache *cache = packet_cache_get();

        if (OVS_LIKELY(cache->n)) {
            return packet_reuse(cache->packets[--cache->n], size, data);
        }
        return packet_init(xmalloc(sizeof(struct dp_packet) + CACHED_ALLOCATED),
                           CACHED_ALLOCATED, VHOSTUSER_PACKET_HEADROOM, size, data);
    }

    /* Jumbo frames are rare enough for malloc(); the provider's max_rx_frame_size
     * keeps headroom plus frame within a dp_packet's 16-bit size. */
    size_t allocated = DP_NETDEV_HEADROOM + size;
    return packet_init(xmalloc(sizeof(struct dp_packet) + allocated), allocated,
                       DP_NETDEV_HEADROOM, size, data);
}

/* Whether 'packet' is one chunk of a dp_packet and a CACHED_ALLOCATED-byte stub right
 * behind it, still using that stub.  Any such packet will do, whoever allocated it:
 * its chunk is large enough. */
static bool
packet_is_reusable(const struct dp_packet *packet)
{
    return (packet->source == DPBUF_STUB
            && dp_packet_base(packet) == packet + 1
            && dp_packet_get_allocated(packet) == CACHED_ALLOCATED);
}

void
vhostuser_packet_release_batch(struct dp_packet_batch *batch)
{
    struct packet_cache *cache = packet_cache_get();
    size_t n_before = cache->n;
    struct dp_packet *packet;

    DP_PACKET_BATCH_FOR_EACH (i, packet, batch) {
        if (packet_is_reusable(packet) && cache->n < CACHE_CAPACITY) {
            cache->packets[cache->n++] = packet;
        } else {
            dp_packet_delete(packet);
        }
    }
    COVERAGE_ADD(vhostuser_packet_recycled, cache->n - n_before);
    dp_packet_batch_init(batch);
}
