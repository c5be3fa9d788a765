/* Rate limiting for vhost-user ports (ingress policing and the egress-policer QoS type):
 * a token bucket counting bytes, refilled to the microsecond as DPDK's rte_meter is to
 * the TSC tick, so that any burst lets the whole rate through.  A disabled policer costs
 * one atomic read per batch. */

#include <config.h>

#include "netdev-vhostuser-private.h"

#include "dp-packet.h"
#include "timeval.h"

/* The burst a policer set with a burst of 0 gets, in kbit: OVS-DPDK's (vswitch.xml's
 * ingress_policing_burst) default. */
#define DEFAULT_BURST_KBIT 8000

/* The least burst, in bytes: smaller, a jumbo frame could never pass. */
#define MIN_BURST_BYTES 9728

#define MICROS_PER_S 1000000

static void
vhostuser_policer_configure__(struct vhostuser_policer *policer, uint32_t rate_kbps,
                              uint32_t burst_kb)
    OVS_REQUIRES(policer->lock)
{
    /* kbit/s -> bytes/s; kbit -> bytes.  OVS's own token bucket, which this replaces,
     * fills a millisecond at a time and holds at most the burst, so it passed at most a
     * burst a millisecond: with the burst of one frame that 0 gave, 78 Mbit/s whatever
     * the rate. */
    uint64_t burst = (uint64_t) (burst_kb ? burst_kb : DEFAULT_BURST_KBIT) * 1000 / 8;

    policer->rate = (uint64_t) rate_kbps * 1000 / 8;
    policer->capacity = MAX(burst, MIN_BURST_BYTES) * MICROS_PER_S;
    policer->tokens = policer->capacity;
    policer->last_refill = time_usec();
    policer->rate_kbps = rate_kbps;
    policer->burst_kb = burst_kb;
}

/* Adds what the time since the last refill earned, up to the capacity. */
static void
vhostuser_policer_refill(struct vhostuser_policer *policer)
    OVS_REQUIRES(policer->lock)
{
    long long int now = time_usec();
    uint64_t room = policer->capacity - policer->tokens;

    if (now <= policer->last_refill || !policer->rate) {
        return;
    }
    /* capacity <= 2^32 * 125 * 10^6 < 2^60, and the product below is taken only while
     * elapsed <= room / rate, so it is at most room. */
    uint64_t elapsed = now - policer->last_refill;
    policer->tokens = (elapsed > room / policer->rate
                       ? policer->capacity
                       : policer->tokens + elapsed * policer->rate);
    policer->last_refill = now;
}

void
vhostuser_policer_init(struct vhostuser_policer *policer)
{
    ovs_spin_init(&policer->lock);
    atomic_init(&policer->enabled, false);
    ovs_spin_lock(&policer->lock);
    vhostuser_policer_configure__(policer, 0, 0);
    ovs_spin_unlock(&policer->lock);
}

void
vhostuser_policer_destroy(struct vhostuser_policer *policer)
{
    ovs_spin_destroy(&policer->lock);
}

void
vhostuser_policer_set(struct vhostuser_policer *policer, uint32_t rate_kbps,
                      uint32_t burst_kb)
{
    ovs_spin_lock(&policer->lock);
    if (rate_kbps != policer->rate_kbps || burst_kb != policer->burst_kb) {
        vhostuser_policer_configure__(policer, rate_kbps, burst_kb);
    }
    atomic_store_relaxed(&policer->enabled, rate_kbps != 0);
    ovs_spin_unlock(&policer->lock);
}

int
vhostuser_policer_run(struct vhostuser_policer *policer, struct dp_packet_batch *batch)
{
    bool enabled;
    struct dp_packet *packet;
    size_t i, size = dp_packet_batch_size(batch);
    int n_dropped = 0;

    atomic_read_relaxed(&policer->enabled, &enabled);
    if (!enabled) {
        return 0;
    }
    ovs_spin_lock(&policer->lock);
    bool refilled = false;
    /* 'size' is read first: the refill loop empties the batch before it starts. */
    DP_PACKET_BATCH_REFILL_FOR_EACH (i, size, packet, batch) {
        uint64_t cost = (uint64_t) dp_packet_size(packet) * MICROS_PER_S;

        if (policer->tokens < cost && !refilled) {
            vhostuser_policer_refill(policer);   /* Once a batch at most. */
            refilled = true;
        }
        if (policer->tokens >= cost) {
            policer->tokens -= cost;
            dp_packet_batch_refill(batch, packet, i);
        } else {
            dp_packet_delete(packet);
            n_dropped++;
        }
    }
    ovs_spin_unlock(&policer->lock);
    return n_dropped;
}
