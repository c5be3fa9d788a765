/* Counters of vhost-user ports: what get_stats and get_custom_stats report.
 *
 * They belong to the OVS port, not to the guest's connection: they survive the guest
 * disconnecting and reconnecting and reset only when the port is deleted, and every
 * standard counter is reported in both modes whether or not a guest is attached. */

#include <config.h>

#include "netdev-vhostuser-private.h"

#include "dp-packet.h"
#include "packets.h"
#include "util.h"

void
vhostuser_counter_add(atomic_uint64_t *counter, uint64_t n)
{
    uint64_t orig;

    if (n) {
        atomic_add_relaxed(counter, n, &orig);
    }
}

uint64_t
vhostuser_counter_read(atomic_uint64_t *counter)
{
    uint64_t value;

    atomic_read_relaxed(counter, &value);
    return value;
}

static void
dir_counters_init(struct vhostuser_dir_counters *c)
{
    atomic_init(&c->dropped, 0);
    atomic_init(&c->errors, 0);
}

void
vhostuser_counters_init(struct netdev_vhostuser *dev)
{
    dir_counters_init(&dev->rx);
    dir_counters_init(&dev->tx);
    atomic_init(&dev->drops.tx_failure, 0);
    atomic_init(&dev->drops.tx_mtu_exceeded, 0);
    atomic_init(&dev->drops.tx_qos, 0);
    atomic_init(&dev->drops.rx_qos, 0);
    atomic_init(&dev->drops.tx_retries, 0);
    dev->queues = NULL;
    dev->n_queues = 0;
    vhostuser_queues_reserve(dev, 1);
}

static void
queue_counters_init(struct vhostuser_queue_counters *c)
{
    atomic_init(&c->bytes, 0);
    atomic_init(&c->multicast, 0);
    atomic_init(&c->broadcast, 0);
    for (int i = 0; i < VHOSTUSER_N_BINS; i++) {
        atomic_init(&c->bins[i], 0);
    }
    atomic_init(&c->dropped, 0);
}

void
vhostuser_queues_reserve(struct netdev_vhostuser *dev, int n)
{
    if (n <= dev->n_queues) {
        return;
    }
    /* Moving atomics with realloc is fine here: no other thread looks at them while
     * the port is reconfigured. */
    dev->queues = xrealloc(dev->queues, n * sizeof *dev->queues);
    for (int q = dev->n_queues; q < n; q++) {
        atomic_init(&dev->queues[q].tx_map, -1);
        queue_counters_init(&dev->queues[q].rx);
        queue_counters_init(&dev->queues[q].tx);
    }
    dev->n_queues = n;
}

static enum vhostuser_size_bin
size_bin(uint32_t size)
{
    /* Frame sizes as RFC 2819 counts them include the 4-byte FCS that virtio frames
     * do not carry. */
    size += 4;
    return size <= 64 ? VHOSTUSER_BIN_64
           : size <= 127 ? VHOSTUSER_BIN_127
           : size <= 255 ? VHOSTUSER_BIN_255
           : size <= 511 ? VHOSTUSER_BIN_511
           : size <= 1023 ? VHOSTUSER_BIN_1023
           : size <= 1522 ? VHOSTUSER_BIN_1522
           : VHOSTUSER_BIN_MAX;
}

/* Adds 'n' to a counter no other thread writes meanwhile, as a plain load and store.
 * Readers on other threads see the old value or the new one.  An atomic add would
 * be a locked instruction, which on x86 waits for every store before it to reach
 * the cache: after a burst, the copies into the guest's buffers. */
static void
counter_add_unshared(atomic_uint64_t *counter, uint64_t n)
{
    uint64_t value;

    atomic_read_relaxed(counter, &value);
    atomic_store_relaxed(counter, value + n);
}

/* Adds 'n' to a queue's counter, atomically if other threads may add to it too. */
static void
queue_counter_add(atomic_uint64_t *counter, uint64_t n, bool shared)
{
    if (shared) {
        vhostuser_counter_add(counter, n);
    } else {
        counter_add_unshared(counter, n);
    }
}

/* Counts 'n' packets in one pass, adding once to each counter that moved.  An rx
 * queue is polled by one thread at a time, and a tx queue that OVS does not send on
 * concurrently is one thread's too ('shared' false): their counters need no atomic
 * add.  Each burst used to make five, per direction, on the port's totals and the
 * queue's; a shared tx queue's burst of one size now makes two. */
void
vhostuser_count_batch(struct vhostuser_queue_counters *q,
                      struct dp_packet **packets, int n, bool shared)
{
    uint64_t bins[VHOSTUSER_N_BINS] = { 0 };
    uint64_t bytes = 0, multicast = 0, broadcast = 0;

    for (int i = 0; i < n; i++) {
        const struct dp_packet *packet = packets[i];
        uint32_t size = dp_packet_size(packet);
        const struct eth_header *eth = dp_packet_data(packet);

        bytes += size;
        bins[size_bin(size)]++;
        if (size >= ETH_HEADER_LEN && eth_addr_is_multicast(eth->eth_dst)) {
            if (eth_addr_is_broadcast(eth->eth_dst)) {
                broadcast++;
            } else {
                multicast++;
            }
        }
    }
    queue_counter_add(&q->bytes, bytes, shared);
    if (multicast) {
        queue_counter_add(&q->multicast, multicast, shared);
    }
    if (broadcast) {
        queue_counter_add(&q->broadcast, broadcast, shared);
    }
    for (int i = 0; i < VHOSTUSER_N_BINS; i++) {
        if (bins[i]) {
            queue_counter_add(&q->bins[i], bins[i], shared);
        }
    }
}

static uint64_t
queue_packets(const struct vhostuser_queue_counters *c)
{
    uint64_t packets = 0;

    for (int i = 0; i < VHOSTUSER_N_BINS; i++) {
        packets += vhostuser_counter_read(CONST_CAST(atomic_uint64_t *, &c->bins[i]));
    }
    return packets;
}

/* The port's total of the counter at 'offset' in each queue's counters.  Under the
 * port's mutex, which reconfigure() holds while it grows 'dev->queues': OVS calls
 * get_stats from other threads than the main one too (BFD and CFM, on its monitor
 * thread). */
static uint64_t
sum_queues(const struct netdev_vhostuser *dev, bool rx, size_t offset)
    OVS_REQUIRES(dev->mutex)
{
    uint64_t sum = 0;

    for (int q = 0; q < dev->n_queues; q++) {
        struct vhostuser_queue_counters *c = (rx
                                              ? &dev->queues[q].rx
                                              : &dev->queues[q].tx);

        sum += vhostuser_counter_read((atomic_uint64_t *) ((char *) c + offset));
    }
    return sum;
}

#define SUM_QUEUES(DEV, RX, MEMBER) \
    sum_queues(DEV, RX, offsetof(struct vhostuser_queue_counters, MEMBER))

int
netdev_vhostuser_get_stats(const struct netdev *netdev, struct netdev_stats *stats)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    struct vhostuser_dir_counters *rx = &dev->rx, *tx = &dev->tx;

    ovs_mutex_lock(&dev->mutex);
    stats->rx_packets = 0;   /* Summed over the bins below. */
    stats->tx_packets = 0;
    stats->rx_bytes = SUM_QUEUES(dev, true, bytes);
    stats->rx_dropped = vhostuser_counter_read(&rx->dropped);
    stats->rx_errors = vhostuser_counter_read(&rx->errors);
    stats->multicast = SUM_QUEUES(dev, true, multicast);
    stats->rx_broadcast_packets = SUM_QUEUES(dev, true, broadcast);
    stats->tx_bytes = SUM_QUEUES(dev, false, bytes);
    stats->tx_dropped = vhostuser_counter_read(&tx->dropped);
    stats->tx_errors = vhostuser_counter_read(&tx->errors);
    stats->tx_multicast_packets = SUM_QUEUES(dev, false, multicast);
    stats->tx_broadcast_packets = SUM_QUEUES(dev, false, broadcast);

    uint64_t *rx_bins[VHOSTUSER_N_BINS] = {
        &stats->rx_1_to_64_packets, &stats->rx_65_to_127_packets,
        &stats->rx_128_to_255_packets, &stats->rx_256_to_511_packets,
        &stats->rx_512_to_1023_packets, &stats->rx_1024_to_1522_packets,
        &stats->rx_1523_to_max_packets,
    };
    uint64_t *tx_bins[VHOSTUSER_N_BINS] = {
        &stats->tx_1_to_64_packets, &stats->tx_65_to_127_packets,
        &stats->tx_128_to_255_packets, &stats->tx_256_to_511_packets,
        &stats->tx_512_to_1023_packets, &stats->tx_1024_to_1522_packets,
        &stats->tx_1523_to_max_packets,
    };
    for (int i = 0; i < VHOSTUSER_N_BINS; i++) {
        size_t bin = (offsetof(struct vhostuser_queue_counters, bins)
                      + i * sizeof(atomic_uint64_t));

        *rx_bins[i] = sum_queues(dev, true, bin);
        *tx_bins[i] = sum_queues(dev, false, bin);
        stats->rx_packets += *rx_bins[i];
        stats->tx_packets += *tx_bins[i];
    }
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

static void
custom_counter(struct netdev_custom_stats *custom, const char *name, uint64_t value)
{
    struct netdev_custom_counter *counter = &custom->counters[custom->size++];

    ovs_strlcpy(counter->name, name, NETDEV_CUSTOM_STATS_NAME_SIZE);
    counter->value = value;
}

int
netdev_vhostuser_get_custom_stats(const struct netdev *netdev,
                                  struct netdev_custom_stats *custom)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    int n_rxq = netdev_n_rxq(netdev), n_txq = netdev_n_txq(netdev);
    char name[NETDEV_CUSTOM_STATS_NAME_SIZE];

    ovs_mutex_lock(&dev->mutex);   /* For 'dev->queues': see sum_queues(). */
    n_rxq = MIN(n_rxq, dev->n_queues);
    n_txq = MIN(n_txq, dev->n_queues);
    custom->size = 0;
    custom->counters = xcalloc(5 + 2 * n_rxq + 3 * n_txq, sizeof *custom->counters);

    custom_counter(custom, "ovs_tx_failure_drops",
                   vhostuser_counter_read(&dev->drops.tx_failure));
    custom_counter(custom, "ovs_tx_mtu_exceeded_drops",
                   vhostuser_counter_read(&dev->drops.tx_mtu_exceeded));
    custom_counter(custom, "ovs_tx_qos_drops",
                   vhostuser_counter_read(&dev->drops.tx_qos));
    custom_counter(custom, "ovs_rx_qos_drops",
                   vhostuser_counter_read(&dev->drops.rx_qos));
    custom_counter(custom, "ovs_tx_retries",
                   vhostuser_counter_read(&dev->drops.tx_retries));
    for (int q = 0; q < n_rxq; q++) {
        snprintf(name, sizeof name, "rx_q%d_good_packets", q);
        custom_counter(custom, name, queue_packets(&dev->queues[q].rx));
        snprintf(name, sizeof name, "rx_q%d_good_bytes", q);
        custom_counter(custom, name, vhostuser_counter_read(&dev->queues[q].rx.bytes));
    }
    for (int q = 0; q < n_txq; q++) {
        snprintf(name, sizeof name, "tx_q%d_good_packets", q);
        custom_counter(custom, name, queue_packets(&dev->queues[q].tx));
        snprintf(name, sizeof name, "tx_q%d_good_bytes", q);
        custom_counter(custom, name, vhostuser_counter_read(&dev->queues[q].tx.bytes));
        snprintf(name, sizeof name, "tx_q%d_dropped", q);
        custom_counter(custom, name, vhostuser_counter_read(&dev->queues[q].tx.dropped));
    }
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}
