/* The "dpdkvhostuser" and "dpdkvhostuserclient" netdev classes: vhost-user ports for
 * OVS's userspace datapath, without DPDK.
 *
 * A port is the switch's end of one vhost-user socket.  In server mode
 * (dpdkvhostuser) the switch listens on <OVS run directory>/<port name>; in client
 * mode (dpdkvhostuserclient) it connects to options:vhost-server-path, where QEMU
 * listens.  Both classes are PMD classes: dpif-netdev polls their receive queues from
 * its PMD threads, as it does for OVS-DPDK's ports of the same names.
 *
 * This file holds the OVS side of a port: its configuration, flags, MAC, MTU and
 * counters, and the netdev_class entry points.  The vhost-user protocol and the
 * virtqueues live in the netdev-vhostuser library, behind the C API of
 * <vhostuser/vhostuser.h>; no frontend can connect yet, because the port does not
 * create its vhu_port yet.  Until then a port is what OVS-DPDK's port is while no
 * guest is attached: carrier down, nothing received, everything sent dropped and
 * counted.  The places that will call the library are marked "Backend:".
 *
 * Locking: 'mutex' guards the configuration.  The data path (send, rxq_recv) runs on
 * PMD threads and takes no lock; it touches only atomic counters. */

#include <config.h>

#include "netdev-vhostuser-provider.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dirs.h"
#include "dp-packet.h"
#include "netdev-provider.h"
#include "netdev-vhostuser-options.h"
#include "openvswitch/vlog.h"
#include "ovs-atomic.h"
#include "ovs-numa.h"
#include "ovs-thread.h"
#include "packets.h"
#include "smap.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(netdev_vhostuser);

/* The MTU a port reports until mtu_request or the guest says otherwise: Ethernet's. */
#define VHOSTUSER_DEFAULT_MTU 1500

/* Counters of one port.  Atomic because any PMD thread may send to any port. */
struct vhostuser_counters {
    atomic_uint64_t rx_packets;
    atomic_uint64_t rx_bytes;
    atomic_uint64_t tx_packets;
    atomic_uint64_t tx_bytes;
    atomic_uint64_t tx_dropped;
};

struct netdev_vhostuser {
    struct netdev up;

    /* Fixed at construction: which of the two classes this port belongs to. */
    bool client_mode;

    struct ovs_mutex mutex;

    /* The Interface options as last applied, verbatim, so that set_config (called on
     * every bridge reconfiguration) only acts, and logs, when they changed. */
    struct smap applied_args OVS_GUARDED;
    struct vhostuser_options options OVS_GUARDED;

    /* Server mode: <run dir>/<name>.  Client mode: options.server_path's copy, or
     * NULL until options:vhost-server-path is set. */
    char *socket_path OVS_GUARDED;

    struct eth_addr hwaddr OVS_GUARDED;
    int mtu OVS_GUARDED;
    enum netdev_flags flags OVS_GUARDED;

    struct vhostuser_counters counters;

    /* Backend: struct vhu_port *port, created in reconfigure() once the socket path
     * is known, destroyed in destruct(). */
};

struct netdev_rxq_vhostuser {
    struct netdev_rxq up;
};

static int netdev_vhostuser_construct_server(struct netdev *);
static int netdev_vhostuser_construct_client(struct netdev *);

static bool
is_vhostuser_class(const struct netdev_class *class)
{
    return class->construct == netdev_vhostuser_construct_server
           || class->construct == netdev_vhostuser_construct_client;
}

static struct netdev_vhostuser *
netdev_vhostuser_cast(const struct netdev *netdev)
{
    ovs_assert(is_vhostuser_class(netdev_get_class(netdev)));
    return CONTAINER_OF(netdev, struct netdev_vhostuser, up);
}

static struct netdev_rxq_vhostuser *
netdev_rxq_vhostuser_cast(const struct netdev_rxq *rxq)
{
    ovs_assert(is_vhostuser_class(netdev_get_class(rxq->netdev)));
    return CONTAINER_OF(rxq, struct netdev_rxq_vhostuser, up);
}

static uint64_t
counter_read(atomic_uint64_t *counter)
{
    uint64_t value;

    atomic_read_relaxed(counter, &value);
    return value;
}

static void
counter_add(atomic_uint64_t *counter, uint64_t n)
{
    uint64_t orig;

    atomic_add_relaxed(counter, n, &orig);
}

/* ---- Life cycle ---- */

static struct netdev *
netdev_vhostuser_alloc(void)
{
    struct netdev_vhostuser *dev = xzalloc(sizeof *dev);

    return &dev->up;
}

static int
netdev_vhostuser_construct__(struct netdev *netdev, bool client_mode)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    const char *name = netdev_get_name(netdev);

    /* The name of a server-mode port becomes a file name in the run directory, so it
     * must not climb out of it.  OVS-DPDK refuses the same names for the same
     * reason; we refuse them in client mode too, so that a port can change mode
     * without changing name. */
    if (strchr(name, '/') || strchr(name, '\\')) {
        VLOG_ERR("\"%s\" is not a valid name for a vhost-user port: it must not "
                 "contain '/' or '\\'", name);
        return EINVAL;
    }

    dev->client_mode = client_mode;
    ovs_mutex_init(&dev->mutex);
    smap_init(&dev->applied_args);
    vhostuser_options_init(&dev->options);
    dev->socket_path = NULL;
    dev->hwaddr = eth_addr_zero;
    dev->mtu = VHOSTUSER_DEFAULT_MTU;
    dev->flags = 0;

    atomic_init(&dev->counters.rx_packets, 0);
    atomic_init(&dev->counters.rx_bytes, 0);
    atomic_init(&dev->counters.tx_packets, 0);
    atomic_init(&dev->counters.tx_bytes, 0);
    atomic_init(&dev->counters.tx_dropped, 0);

    if (!client_mode) {
        char *path = xasprintf("%s/%s", ovs_rundir(), name);
        char *error = vhostuser_socket_path_check(path);

        if (error) {
            VLOG_ERR("%s: %s", name, error);
            free(error);
            free(path);
            smap_destroy(&dev->applied_args);
            ovs_mutex_destroy(&dev->mutex);
            return ENAMETOOLONG;
        }
        dev->socket_path = path;
    }

    VLOG_INFO("%s: %s vhost-user port created%s%s", name,
              client_mode ? "client-mode" : "server-mode",
              dev->socket_path ? ", socket " : "",
              dev->socket_path ? dev->socket_path : "");
    return 0;
}

static int
netdev_vhostuser_construct_server(struct netdev *netdev)
{
    return netdev_vhostuser_construct__(netdev, false);
}

static int
netdev_vhostuser_construct_client(struct netdev *netdev)
{
    return netdev_vhostuser_construct__(netdev, true);
}

static void
netdev_vhostuser_destruct(struct netdev *netdev)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    /* Backend: vhu_port_destroy(dev->port), which also removes a server socket. */
    VLOG_INFO("%s: vhost-user port destroyed", netdev_get_name(netdev));

    ovs_mutex_lock(&dev->mutex);
    free(dev->socket_path);
    vhostuser_options_destroy(&dev->options);
    smap_destroy(&dev->applied_args);
    ovs_mutex_unlock(&dev->mutex);
    ovs_mutex_destroy(&dev->mutex);
}

static void
netdev_vhostuser_dealloc(struct netdev *netdev)
{
    free(netdev_vhostuser_cast(netdev));
}

/* ---- Configuration ---- */

static int
netdev_vhostuser_get_config(const struct netdev *netdev, struct smap *args)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    ovs_mutex_lock(&dev->mutex);
    vhostuser_options_format(&dev->options, dev->client_mode, args);
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

static int
netdev_vhostuser_set_config(struct netdev *netdev, const struct smap *args,
                            char **errp)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    int error = 0;

    ovs_mutex_lock(&dev->mutex);
    if (!smap_is_empty(&dev->applied_args) && smap_equal(args, &dev->applied_args)) {
        goto out;
    }

    error = vhostuser_options_parse(netdev_get_name(netdev), dev->client_mode, args,
                                    &dev->options, errp);
    if (error) {
        /* netdev_set_config() puts the reason in the error column and logs only
         * the errno; log the reason too.  Rate-limited: the bridge retries a port
         * it could not configure on every reconfiguration. */
        static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(5, 20);

        VLOG_WARN_RL(&rl, "%s", *errp);
        goto out;
    }
    smap_destroy(&dev->applied_args);
    smap_clone(&dev->applied_args, args);

    if (dev->client_mode
        && !nullable_string_is_equal(dev->socket_path, dev->options.server_path)) {
        free(dev->socket_path);
        dev->socket_path = xstrdup(dev->options.server_path);
        /* Backend: the connection moves to the new path in reconfigure(). */
        netdev_request_reconfigure(netdev);
    }

out:
    ovs_mutex_unlock(&dev->mutex);
    return error;
}

static int
netdev_vhostuser_reconfigure(struct netdev *netdev)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    /* Backend: (re)create the vhu_port for dev->socket_path, and take the queue
     * counts and MTU the guest negotiated into n_rxq, n_txq and mtu. */
    ovs_mutex_lock(&dev->mutex);
    VLOG_DBG("%s: reconfigured, socket %s", netdev_get_name(netdev),
             dev->socket_path ? dev->socket_path : "(none)");
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

static int
netdev_vhostuser_set_etheraddr(struct netdev *netdev, const struct eth_addr mac)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    ovs_mutex_lock(&dev->mutex);
    if (!eth_addr_equals(dev->hwaddr, mac)) {
        dev->hwaddr = mac;
        netdev_change_seq_changed(netdev);
    }
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

static int
netdev_vhostuser_get_etheraddr(const struct netdev *netdev, struct eth_addr *mac)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    ovs_mutex_lock(&dev->mutex);
    *mac = dev->hwaddr;
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

static int
netdev_vhostuser_get_mtu(const struct netdev *netdev, int *mtup)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    ovs_mutex_lock(&dev->mutex);
    *mtup = dev->mtu;
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

static int
netdev_vhostuser_set_mtu(struct netdev *netdev, int mtu)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    if (mtu < ETH_PAYLOAD_MIN || mtu > UINT16_MAX) {
        return EINVAL;
    }

    /* Backend: frames longer than the guest's buffers allow
     * (vhu_port_max_rx_frame()) are dropped on send, whatever the MTU says. */
    ovs_mutex_lock(&dev->mutex);
    if (dev->mtu != mtu) {
        dev->mtu = mtu;
        netdev_change_seq_changed(netdev);
    }
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

static int
netdev_vhostuser_update_flags(struct netdev *netdev, enum netdev_flags off,
                              enum netdev_flags on, enum netdev_flags *old_flagsp)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    if ((off | on) & ~(NETDEV_UP | NETDEV_PROMISC)) {
        return EINVAL;
    }

    ovs_mutex_lock(&dev->mutex);
    *old_flagsp = dev->flags;
    dev->flags = (dev->flags | on) & ~off;
    if (dev->flags != *old_flagsp) {
        netdev_change_seq_changed(netdev);
    }
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

/* ---- State and counters ---- */

static int
netdev_vhostuser_get_numa_id(const struct netdev *netdev OVS_UNUSED)
{
    /* The node that matters is the one holding the guest's memory, known only once
     * a guest is attached (Backend: from the mapped regions).  On a single-node
     * machine there is no choice to make, and saying so spares dpif-netdev's
     * warning about ports on an unknown node. */
    if (ovs_numa_get_n_numas() == 1 && ovs_numa_numa_id_is_valid(0)) {
        return 0;
    }
    return NETDEV_NUMA_UNSPEC;
}

static int
netdev_vhostuser_get_carrier(const struct netdev *netdev OVS_UNUSED, bool *carrier)
{
    /* Backend: up while vhu_port_get_status() says VHU_STATE_READY. */
    *carrier = false;
    return 0;
}

static int
netdev_vhostuser_get_stats(const struct netdev *netdev, struct netdev_stats *stats)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    struct vhostuser_counters *c = &dev->counters;

    /* Unlike OVS-DPDK's vhost ports, report the standard counters in both modes and
     * whether or not a guest is attached: a counter that disappears cannot be
     * graphed. */
    stats->rx_packets = counter_read(&c->rx_packets);
    stats->rx_bytes = counter_read(&c->rx_bytes);
    stats->tx_packets = counter_read(&c->tx_packets);
    stats->tx_bytes = counter_read(&c->tx_bytes);
    stats->tx_dropped = counter_read(&c->tx_dropped);
    stats->rx_dropped = 0;
    stats->rx_errors = 0;
    stats->tx_errors = 0;
    return 0;
}

static int
netdev_vhostuser_get_status(const struct netdev *netdev, struct smap *args)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    /* The keys OVS-DPDK's vhost ports report, so that tools reading them keep
     * working.  Backend: features, mtu, num_of_vrings and per-vring state from
     * vhu_port_get_status() once a guest is connected. */
    ovs_mutex_lock(&dev->mutex);
    smap_add(args, "mode", dev->client_mode ? "client" : "server");
    smap_add(args, "status", "disconnected");
    if (dev->socket_path) {
        smap_add(args, "socket", dev->socket_path);
    }
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

/* ---- Data path ---- */

static struct netdev_rxq *
netdev_vhostuser_rxq_alloc(void)
{
    struct netdev_rxq_vhostuser *rxq = xzalloc(sizeof *rxq);

    return &rxq->up;
}

static int
netdev_vhostuser_rxq_construct(struct netdev_rxq *rxq OVS_UNUSED)
{
    return 0;
}

static void
netdev_vhostuser_rxq_destruct(struct netdev_rxq *rxq OVS_UNUSED)
{
}

static void
netdev_vhostuser_rxq_dealloc(struct netdev_rxq *rxq)
{
    free(netdev_rxq_vhostuser_cast(rxq));
}

static bool
netdev_vhostuser_rxq_enabled(struct netdev_rxq *rxq OVS_UNUSED)
{
    /* Backend: whether the guest enabled its TX vring of this queue pair. */
    return false;
}

static int
netdev_vhostuser_rxq_recv(struct netdev_rxq *rxq OVS_UNUSED,
                          struct dp_packet_batch *batch OVS_UNUSED,
                          int *qfill)
{
    /* Backend: vhu_dequeue_burst() into dp_packets, counting rx_packets/bytes. */
    if (qfill) {
        *qfill = 0;
    }
    return EAGAIN;
}

static void
netdev_vhostuser_rxq_wait(struct netdev_rxq *rxq OVS_UNUSED)
{
    /* PMD threads poll; nothing waits on a PMD port's receive queue. */
}

static int
netdev_vhostuser_send(struct netdev *netdev, int qid OVS_UNUSED,
                      struct dp_packet_batch *batch,
                      bool concurrent_txq OVS_UNUSED)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    /* With no guest there is no receive queue to put the packets in: drop them and
     * count them, as a NIC with its link down would.  Backend: vhu_enqueue_burst()
     * with up to options.tx_retries_max retries. */
    counter_add(&dev->counters.tx_dropped, dp_packet_batch_size(batch));
    dp_packet_delete_batch(batch, true);
    return 0;
}

/* ---- Registration ---- */

#define NETDEV_VHOSTUSER_CLASS_COMMON                       \
    .is_pmd = true,                                         \
    .alloc = netdev_vhostuser_alloc,                        \
    .destruct = netdev_vhostuser_destruct,                  \
    .dealloc = netdev_vhostuser_dealloc,                    \
    .get_config = netdev_vhostuser_get_config,              \
    .set_config = netdev_vhostuser_set_config,              \
    .reconfigure = netdev_vhostuser_reconfigure,            \
    .set_etheraddr = netdev_vhostuser_set_etheraddr,        \
    .get_etheraddr = netdev_vhostuser_get_etheraddr,        \
    .get_mtu = netdev_vhostuser_get_mtu,                    \
    .set_mtu = netdev_vhostuser_set_mtu,                    \
    .update_flags = netdev_vhostuser_update_flags,          \
    .get_numa_id = netdev_vhostuser_get_numa_id,            \
    .get_carrier = netdev_vhostuser_get_carrier,            \
    .get_stats = netdev_vhostuser_get_stats,                \
    .get_status = netdev_vhostuser_get_status,              \
    .rxq_alloc = netdev_vhostuser_rxq_alloc,                \
    .rxq_construct = netdev_vhostuser_rxq_construct,        \
    .rxq_destruct = netdev_vhostuser_rxq_destruct,          \
    .rxq_dealloc = netdev_vhostuser_rxq_dealloc,            \
    .rxq_enabled = netdev_vhostuser_rxq_enabled,            \
    .rxq_recv = netdev_vhostuser_rxq_recv,                  \
    .rxq_wait = netdev_vhostuser_rxq_wait,                  \
    .send = netdev_vhostuser_send

static const struct netdev_class netdev_vhostuser_server_class = {
    .type = "dpdkvhostuser",
    NETDEV_VHOSTUSER_CLASS_COMMON,
    .construct = netdev_vhostuser_construct_server,
};

static const struct netdev_class netdev_vhostuser_client_class = {
    .type = "dpdkvhostuserclient",
    NETDEV_VHOSTUSER_CLASS_COMMON,
    .construct = netdev_vhostuser_construct_client,
};

void
netdev_vhostuser_register(void)
{
    netdev_register_provider(&netdev_vhostuser_server_class);
    netdev_register_provider(&netdev_vhostuser_client_class);
}
