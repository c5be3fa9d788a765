/* Rate limiting for vhost-user ports (ingress policing and the egress-policer QoS type)
 * on OVS's token bucket, counting bytes.  A disabled policer costs one atomic read per
 * batch. */

#include <config.h>

#include "netdev-vhostuser-private.h"

#include "dp-packet.h"

static void
vhostuser_policer_configure__(struct vhostuser_policer *policer, uint32_t rate_kbps,
                              uint32_t burst_kb)
    OVS_REQUIRES(policer->lock)
{
    /* kbit/s -> bytes per millisecond; kbit -> bytes.  A burst smaller than one
     * jumbo frame would never let such a frame pass, so it is raised to one. */
    unsigned int rate = MAX(1, rate_kbps / 8);
    unsigned int burst = MAX((uint64_t) burst_kb * 1000 / 8, 9728);

    token_bucket_init(&policer->bucket, rate, burst);
    policer->rate_kbps = rate_kbps;
    policer->burst_kb = burst_kb;
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
    /* 'size' is read first: the refill loop empties the batch before it starts. */
    DP_PACKET_BATCH_REFILL_FOR_EACH (i, size, packet, batch) {
        if (token_bucket_withdraw(&policer->bucket, dp_packet_size(packet))) {
            dp_packet_batch_refill(batch, packet, i);
        } else {
            dp_packet_delete(packet);
            n_dropped++;
        }
    }
    ovs_spin_unlock(&policer->lock);
    return n_dropped;
}
