/* The "dpdkvhostuser" and "dpdkvhostuserclient" netdev classes: vhost-user ports for
 * OVS's userspace datapath, without DPDK.
 *
 * A port is the switch's end of one vhost-user socket.  In server mode
 * (dpdkvhostuser) the switch listens on <vhost-sock-dir>/<port name>; in client mode
 * (dpdkvhostuserclient) it connects to options:vhost-server-path, where QEMU listens,
 * and reconnects when QEMU restarts.  Both are PMD classes: dpif-netdev polls their
 * receive queues from its PMD threads, one OVS rx queue per guest queue pair.
 *
 * The vhost-user protocol and the virtqueues live in the netdev-vhostuser library,
 * behind <vhostuser/vhostuser.h>; its control thread serves every socket and tells us
 * what changed through per-port events, which run() turns into OVS state: carrier,
 * queue counts (through reconfigure), the tx queue map, status.
 *
 * Locking: 'mutex' guards the configuration.  The data path (send, rxq_recv) takes no
 * lock of ours: it reads atomics and 'port', which only reconfigure() replaces, while
 * dpif-netdev keeps every PMD thread off the port.  The one lock on the data path is
 * the library's, per guest queue. */

#include <config.h>

#include "netdev-vhostuser-provider.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "dp-packet.h"
#include "dpif-netdev.h"
#include "netdev-vhostuser-packet-cache.h"
#include "netdev-vhostuser-private.h"
#include "openvswitch/vlog.h"
#include "ovs-numa.h"
#include "packets.h"
#include "openvswitch/poll-loop.h"
#include "seq.h"
#include "timeval.h"
#include "smap.h"
#include "sset.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(netdev_vhostuser);

/* The MTU a port reports until mtu_request says otherwise: Ethernet's. */
#define VHOSTUSER_DEFAULT_MTU 1500
/* mtu_request range, as OVS-DPDK's (a 9728-byte frame at most). */
#define VHOSTUSER_MIN_MTU 68
#define VHOSTUSER_MAX_MTU 9702

struct ovs_mutex vhostuser_ports_mutex = OVS_MUTEX_INITIALIZER;
struct ovs_list vhostuser_ports OVS_GUARDED_BY(vhostuser_ports_mutex)
    = OVS_LIST_INITIALIZER(&vhostuser_ports);

/* Changed by the library's control thread when any port has events; run() drains
 * them and wait() sleeps on it. */
static struct seq *vhostuser_seq;
static uint64_t vhostuser_last_seqno;   /* What run() last handled. */

struct netdev_rxq_vhostuser {
    struct netdev_rxq up;
};

static int netdev_vhostuser_construct_server(struct netdev *);
static int netdev_vhostuser_construct_client(struct netdev *);

bool
netdev_vhostuser_is_vhostuser(const struct netdev *netdev)
{
    const struct netdev_class *class = netdev_get_class(netdev);

    return class->construct == netdev_vhostuser_construct_server
           || class->construct == netdev_vhostuser_construct_client;
}

struct netdev_vhostuser *
netdev_vhostuser_cast(const struct netdev *netdev)
{
    ovs_assert(netdev_vhostuser_is_vhostuser(netdev));
    return CONTAINER_OF(netdev, struct netdev_vhostuser, up);
}

/* ---- The backend's log and events ---- */

/* What frontends make us log (connects, hang-ups, refused requests) is rate-limited,
 * as OVS limits what packets make it log: a local process connecting and hanging up
 * in a loop must not fill the disk.  Each port has a budget of its own
 * (netdev_vhostuser.frontend_log_budget), so that frontends on other ports cannot use
 * up the lines that say why this one's guest went away; a port's line says how many
 * of its lines before it were not logged.  And every line that passes its port's
 * budget is held to frontends_rl too, so that all ports together log a bounded
 * number of lines (a process that can reach one socket directory can reach all of
 * its ports). */
static struct vlog_rate_limit frontends_rl = VLOG_RATE_LIMIT_INIT(1200, 1200);

/* Lines about no port in particular. */
static struct vlog_rate_limit library_rl = VLOG_RATE_LIMIT_INIT(60, 60);

/* Each port's lines a minute: about six connections of a guest, with its queues and
 * its reasons for leaving. */
#define FRONTEND_LOG_RATE 30

/* Logs a line about 'dev' (NULL: about no port) at 'level', within the budgets
 * above. */
static void OVS_PRINTF_FORMAT(3, 4)
frontend_log(struct netdev_vhostuser *dev, enum vlog_level level, const char *format,
             ...)
{
    unsigned int dropped = 0;

    if (!vlog_is_enabled(&this_module, level)) {
        return;
    }
    if (dev) {
        bool take;

        ovs_mutex_lock(&dev->frontend_log_mutex);
        take = token_bucket_withdraw(&dev->frontend_log_budget, VLOG_MSG_TOKENS);
        if (take) {
            dropped = dev->frontend_log_dropped;
            dev->frontend_log_dropped = 0;
        } else {
            dev->frontend_log_dropped++;
        }
        ovs_mutex_unlock(&dev->frontend_log_mutex);
        if (!take || vlog_should_drop(&this_module, level, &frontends_rl)) {
            return;
        }
    } else if (vlog_should_drop(&this_module, level, &library_rl)) {
        return;
    }

    struct ds line = DS_EMPTY_INITIALIZER;
    va_list args;

    va_start(args, format);
    ds_put_format_valist(&line, format, args);
    va_end(args);
    if (dropped) {
        ds_put_format(&line, " (%u earlier lines about this port were not logged)",
                      dropped);
    }
    vlog(&this_module, level, "%s", ds_cstr(&line));
    ds_destroy(&line);
}

static void
backend_log(enum vhu_log_level level, const char *message, void *dev)
{
    switch (level) {
    case VHU_LOG_ERR:
        frontend_log(dev, VLL_ERR, "%s", message);
        break;
    case VHU_LOG_WARN:
        frontend_log(dev, VLL_WARN, "%s", message);
        break;
    case VHU_LOG_INFO:
        frontend_log(dev, VLL_INFO, "%s", message);
        break;
    default:
        VLOG_DBG("%s", message);
        break;
    }
}

/* Called on the library's control thread: wakes the main thread, unless it will look
 * at this port soon anyway (run() damps a port whose frontend comes and goes: each
 * wake-up of the main thread costs a pass of its whole loop). */
static void
backend_notify(void *dev_)
{
    struct netdev_vhostuser *dev = dev_;
    long long int recheck;

    atomic_read(&dev->recheck_at, &recheck);
    if (recheck && time_msec() < recheck) {
        return;
    }
    seq_change(vhostuser_seq);
}

/* Appends the queue pairs in 'set' to 's' as "0,1,5". */
static void
format_queue_set(struct ds *s, const uint64_t set[VHU_QUEUE_SET_WORDS])
{
    size_t start = s->length;

    for (int q = 0; q < VHU_MAX_QUEUE_PAIRS; q++) {
        if (vhu_queue_set_has(set, q)) {
            ds_put_format(s, "%s%d", s->length > start ? "," : "", q);
        }
    }
}

static bool
queue_set_is_empty(const uint64_t set[VHU_QUEUE_SET_WORDS])
{
    for (int w = 0; w < VHU_QUEUE_SET_WORDS; w++) {
        if (set[w]) {
            return false;
        }
    }
    return true;
}

/* Publishes the guest's transmit queues to the PMD threads (rxq_enabled()). */
static void
set_guest_tx_queues(struct netdev_vhostuser *dev,
                    const uint64_t set[VHU_QUEUE_SET_WORDS])
{
    for (int w = 0; w < VHU_QUEUE_SET_WORDS; w++) {
        atomic_store_relaxed(&dev->guest_tx_queues[w], set[w]);
    }
}

/* Which guest RX vring (queue pair) each OVS tx queue sends to: its own if the guest
 * enabled it, else the enabled ones in turn, else none (packets are dropped). */
static void
update_tx_map(struct netdev_vhostuser *dev, int n_txq)
    OVS_REQUIRES(dev->mutex)
{
    int enabled[VHU_MAX_QUEUE_PAIRS];
    int n_enabled = 0;

    for (int q = 0; q < VHU_MAX_QUEUE_PAIRS; q++) {
        if (vhu_queue_set_has(dev->enabled_rx_queues, q)) {
            enabled[n_enabled++] = q;
        }
    }
    for (int q = 0; q < dev->n_queues; q++) {
        int map = -1;

        if (q < n_txq && n_enabled) {
            map = vhu_queue_set_has(dev->enabled_rx_queues, q) ? q
                                                               : enabled[q % n_enabled];
        }
        atomic_store_relaxed(&dev->queues[q].tx_map, map);
    }
}

static uint32_t
max_frame_for_mtu(int mtu)
{
    return mtu + ETH_HEADER_LEN + VLAN_HEADER_LEN;
}

/* When, if ever, run() must look at the ports again without a new event: to announce
 * their state once more, or to apply a queue count change that had to wait. */
static long long int vhostuser_timer_at = LLONG_MAX;

/* A port's queue changes (a queue count change, or transmit queues coming up) reload
 * every PMD thread, and dpif-netdev logs a line at INFO for every rx queue of the
 * switch each time: with hundreds of guests, hundreds of lines.  A guest gets
 * QUEUE_CHANGE_BURST of them in any QUEUE_CHANGE_WINDOW_MS, at least
 * QUEUE_CHANGE_INTERVAL_MS apart: a boot takes one to three (the firmware's driver,
 * the kernel's, ethtool -L), a migration one.  A frontend that connects and hangs up
 * in a loop got one a second for as long as it liked, each paid for by every port. */
#define QUEUE_CHANGE_INTERVAL_MS 1000
#define QUEUE_CHANGE_WINDOW_MS (120 * 1000)
BUILD_ASSERT_DECL(QUEUE_CHANGE_BURST * QUEUE_CHANGE_INTERVAL_MS < QUEUE_CHANGE_WINDOW_MS);

/* The earliest time 'dev' may have its next queue change: a second after the last,
 * and, if 'window', no sooner than QUEUE_CHANGE_WINDOW_MS after the
 * QUEUE_CHANGE_BURST-th last. */
static long long int
next_queue_change_at__(const struct netdev_vhostuser *dev, bool window)
    OVS_REQUIRES(dev->mutex)
{
    const long long int *times = dev->queue_change_times;
    int newest = (dev->queue_change_oldest + QUEUE_CHANGE_BURST - 1) % QUEUE_CHANGE_BURST;

    if (!times[newest]) {
        return 0;   /* None yet. */
    }
    long long int at = times[newest] + QUEUE_CHANGE_INTERVAL_MS;
    if (window && times[dev->queue_change_oldest]) {
        at = MAX(at, times[dev->queue_change_oldest] + QUEUE_CHANGE_WINDOW_MS);
    }
    return at;
}

static long long int
next_queue_change_at(const struct netdev_vhostuser *dev)
    OVS_REQUIRES(dev->mutex)
{
    return next_queue_change_at__(dev, true);
}

/* The least time between two updates of one port from its backend (and so between
 * two writes of its status): a port whose guest comes and goes faster is seen at
 * this pace. */
#define UPDATE_INTERVAL_MS 100

/* Takes in what the backend says about the guest: carrier, queues, the tx map. */
static void
update_from_backend(struct netdev_vhostuser *dev)
    OVS_REQUIRES(dev->mutex)
{
    const char *name = netdev_get_name(&dev->up);
    struct vhu_port_status status;
    bool carrier, old_carrier;

    if (!dev->port) {
        return;
    }
    vhu_port_get_status(dev->port, &status);

    carrier = status.state == VHU_STATE_READY;
    atomic_read_relaxed(&dev->carrier, &old_carrier);
    if (carrier != old_carrier) {
        atomic_store_relaxed(&dev->carrier, carrier);
        dev->carrier_resets++;
        if (carrier) {
            char features[256];

            vhu_format_features(status.features, false, features, sizeof features);
            frontend_log(dev, VLL_INFO, "%s: guest ready, %u vrings, features %s", name,
                         status.num_vrings, features);
        } else if (status.last_error[0]) {
            frontend_log(dev, VLL_WARN, "%s: guest disconnected: %s", name,
                         status.last_error);
        } else {
            frontend_log(dev, VLL_INFO, "%s: guest %s", name,
                         status.state == VHU_STATE_DISCONNECTED ? "disconnected"
                                                                : "not ready");
        }
    }

    /* A guest whose transmit queues come up (it connected, or it was just migrated
     * here) must be polled at once: a PMD thread re-reads rxq_enabled() only every
     * 1024 iterations, which is seconds for a sleeping PMD, so the first frames (a
     * migrated guest's announcement, SEND_RARP's frame) would wait.  A PMD reload
     * takes the new state at once. */
    bool tx_woke = queue_set_is_empty(dev->enabled_tx_queues)
                   && !queue_set_is_empty(status.enabled_tx_queues);

    /* On a machine of several NUMA nodes, the port is polled from its guest's memory's
     * node, as OVS-DPDK polls its vhost-user ports (dpif-netdev reads get_numa_id() as
     * it assigns rx queues, so a new node takes a reconfiguration).  Not knowing it,
     * dpif-netdev spread the port's queues over all nodes and, finding them polled
     * across nodes, left pmd-auto-lb idle for every port of the switch. */
    int numa_id, guest_numa = NETDEV_NUMA_UNSPEC;
    atomic_read_relaxed(&dev->numa_id, &numa_id);
    if (status.state == VHU_STATE_READY && status.numa_node >= 0
        && ovs_numa_get_n_numas() > 1 && ovs_numa_numa_id_is_valid(status.numa_node)) {
        guest_numa = status.numa_node;
    }
    bool numa_moved = guest_numa != NETDEV_NUMA_UNSPEC && guest_numa != numa_id;

    if (memcmp(status.enabled_rx_queues, dev->enabled_rx_queues,
               sizeof dev->enabled_rx_queues)
        || memcmp(status.enabled_tx_queues, dev->enabled_tx_queues,
                  sizeof dev->enabled_tx_queues)) {
        struct ds rx = DS_EMPTY_INITIALIZER, tx = DS_EMPTY_INITIALIZER;

        format_queue_set(&rx, status.enabled_rx_queues);
        format_queue_set(&tx, status.enabled_tx_queues);
        frontend_log(dev, VLL_INFO, "%s: guest queues enabled: receive %s, transmit %s",
                     name, rx.length ? ds_cstr(&rx) : "none",
                     tx.length ? ds_cstr(&tx) : "none");
        ds_destroy(&rx);
        ds_destroy(&tx);
        memcpy(dev->enabled_rx_queues, status.enabled_rx_queues,
               sizeof dev->enabled_rx_queues);
        memcpy(dev->enabled_tx_queues, status.enabled_tx_queues,
               sizeof dev->enabled_tx_queues);
        set_guest_tx_queues(dev, status.enabled_tx_queues);
        update_tx_map(dev, netdev_n_txq(&dev->up));
    }

    /* One OVS rx and tx queue per queue pair the guest set up, from the first guest
     * on; kept while no guest is connected, so that a reconnecting guest does not
     * reshuffle the PMDs.  Taken once the guest is ready, which is when its transmit
     * queues come up too: one reconfiguration for both.  Taken at connection, they
     * made a second one follow when the driver started, a second later under the
     * limit below, by which time traffic was flowing: while dpif-netdev
     * reconfigures a port, what the datapath sends it is dropped as sent to an
     * invalid port.  A change, like transmit queues coming up, reloads the PMD
     * threads, which every port on them feels, so a frontend gets at most one reload
     * per QUEUE_CHANGE_INTERVAL_MS: later ones wait and are taken together (a
     * frontend flapping its queue count, or a guest bringing its queue pairs up one by
     * one). */
    int n_pairs = dev->requested_n_rxq;

    if (status.state == VHU_STATE_READY && status.num_vrings) {
        n_pairs = MIN((status.num_vrings + 1) / 2, VHU_MAX_QUEUE_PAIRS);
    }
    /* What a reload is needed for.  Transmit queues coming up alone are not worth one
     * that waited: by then PMD threads have seen them (rxq_enabled()), so such a change
     * is dropped rather than deferred, and a deferred change that is no longer needed
     * (the guest back to the queue count in use) is dropped too. */
    bool needed = n_pairs != dev->requested_n_rxq || numa_moved;

    if (!needed && !tx_woke) {
        dev->queue_change_pending = false;
    } else {
        long long int now = time_msec();
        long long int at = next_queue_change_at(dev);

        if (n_pairs > dev->requested_n_rxq
            && now >= dev->queue_increase_skipped_window + QUEUE_CHANGE_WINDOW_MS) {
            /* More queues: until the reload the guest's new queues are not polled, so
             * once a window an increase waits only the second after the last change.
             * Not more often: one change to fewer queues would otherwise buy a climb
             * back of up to 127 changes, one a second. */
            long long int soon = next_queue_change_at__(dev, false);
            if (soon < at) {
                at = soon;
                if (now >= at) {
                    dev->queue_increase_skipped_window = now;
                }
            }
        }
        if (now < at && !needed) {
            /* A wake-up only: dropped, see above. */
        } else if (now < at) {
            if (!dev->queue_change_pending
                && at - now > QUEUE_CHANGE_INTERVAL_MS) {
                frontend_log(dev, VLL_WARN, "%s: guest changed its queues %d times in "
                             "%d s: the next change is taken in %lld s", name,
                             QUEUE_CHANGE_BURST, QUEUE_CHANGE_WINDOW_MS / 1000,
                             (at - now + 999) / 1000);
            }
            dev->queue_change_pending = true;   /* run() comes back for it. */
            dev->next_queue_change = at;
        } else {
            if (n_pairs != dev->requested_n_rxq) {
                frontend_log(dev, VLL_INFO, "%s: guest has %d queue pairs (was %d)",
                             name, n_pairs, dev->requested_n_rxq);
                dev->requested_n_rxq = dev->requested_n_txq = n_pairs;
            }
            if (numa_moved) {
                frontend_log(dev, VLL_INFO, "%s: guest memory on NUMA node %d (was %d)",
                             name, guest_numa, numa_id);
                atomic_store_relaxed(&dev->numa_id, guest_numa);
            }
            dev->queue_change_pending = false;
            dev->queue_change_times[dev->queue_change_oldest] = now;
            dev->queue_change_oldest = (dev->queue_change_oldest + 1) % QUEUE_CHANGE_BURST;
            netdev_request_reconfigure(&dev->up);
        }
    }

    uint32_t guest_frame = vhu_port_max_rx_frame(dev->port);
    atomic_store_relaxed(&dev->max_frame,
                         MIN(guest_frame, max_frame_for_mtu(dev->mtu)));
    netdev_change_seq_changed(&dev->up);
}


static void retry_backend_port(struct netdev_vhostuser *dev) OVS_REQUIRES(dev->mutex);

static void
netdev_vhostuser_run(const struct netdev_class *class OVS_UNUSED)
{
    struct netdev_vhostuser *dev;

    if (!vhostuser_seq) {
        return;   /* No port yet. */
    }
    uint64_t seqno = seq_read(vhostuser_seq);
    long long int now = time_msec();

    if (seqno == vhostuser_last_seqno && now < vhostuser_timer_at) {
        return;
    }
    vhostuser_last_seqno = seqno;
    vhostuser_timer_at = LLONG_MAX;   /* Each port arms it again below. */

    ovs_mutex_lock(&vhostuser_ports_mutex);
    LIST_FOR_EACH (dev, list_node, &vhostuser_ports) {
        struct vhu_event event;
        bool changed = false;
        long long int recheck;

        ovs_mutex_lock(&dev->mutex);
        /* Cleared before the events are drained: an event posted after the drain
         * then finds it cleared and notifies (backend_notify()). */
        atomic_read_relaxed(&dev->recheck_at, &recheck);
        if (recheck && now >= recheck) {
            atomic_store(&dev->recheck_at, 0);
        }
        while (dev->port && vhu_port_next_event(dev->port, &event)) {
            changed = true;
        }
        dev->update_pending |= changed;

        bool update = dev->update_pending && now >= dev->next_update;
        if (dev->queue_change_pending && now >= dev->next_queue_change) {
            update = true;
        }
        if (update) {
            /* A frontend connecting and hanging up in a loop: its port's state is
             * taken in, and written to the database, at most once per
             * UPDATE_INTERVAL_MS, with what it is by then. */
            dev->update_pending = false;
            dev->next_update = now + UPDATE_INTERVAL_MS;
            update_from_backend(dev);
            /* Tell the bridge once more, a second later.  A guest can be ready
             * within milliseconds of the port's creation (a client port whose QEMU
             * already listens, after a restart of the switch): then the bridge's
             * first status write, still in flight, can land after ours, and OVS's
             * IDL drops our identical rewrite, leaving link_state "down" for good. */
            dev->reannounce_at = now + 1000;
        } else if (dev->reannounce_at && now >= dev->reannounce_at) {
            dev->reannounce_at = 0;
            netdev_change_seq_changed(&dev->up);
        }
        if (changed || update) {
            /* Until then, the backend's notifications for this port need not wake
             * us: we look at it again then anyway. */
            atomic_store(&dev->recheck_at, dev->next_update);
        }

        atomic_read_relaxed(&dev->recheck_at, &recheck);
        if (recheck) {
            vhostuser_timer_at = MIN(vhostuser_timer_at, recheck);
        }
        if (dev->reannounce_at) {
            vhostuser_timer_at = MIN(vhostuser_timer_at, dev->reannounce_at);
        }
        if (dev->queue_change_pending) {
            vhostuser_timer_at = MIN(vhostuser_timer_at, dev->next_queue_change);
        }
        if (dev->socket_retry_at) {
            if (now >= dev->socket_retry_at) {
                retry_backend_port(dev);
            }
            if (dev->socket_retry_at) {
                vhostuser_timer_at = MIN(vhostuser_timer_at, dev->socket_retry_at);
            }
        }
        ovs_mutex_unlock(&dev->mutex);
    }
    ovs_mutex_unlock(&vhostuser_ports_mutex);
}

static void
netdev_vhostuser_wait(const struct netdev_class *class OVS_UNUSED)
{
    if (vhostuser_seq) {
        seq_wait(vhostuser_seq, vhostuser_last_seqno);
    }
    if (vhostuser_timer_at != LLONG_MAX) {
        poll_timer_wait_until(vhostuser_timer_at);
    }
}

/* ---- The backend port ---- */

/* How long a port whose socket could not be made waits before it tries again, at
 * first and at most (the wait doubles in between). */
#define SOCKET_RETRY_MIN_MS 1000
#define SOCKET_RETRY_MAX_MS (60 * 1000)

/* A backend port for dev->socket_path, or NULL with the reason in 'error'. */
static struct vhu_port *
create_backend_port(struct netdev_vhostuser *dev, char *error, size_t error_size)
    OVS_REQUIRES(dev->mutex)
{
    struct vhu_port_options options = {
        .socket_path = dev->socket_path,
        .mode = dev->client_mode ? VHU_MODE_CLIENT : VHU_MODE_SERVER,
        .notify = backend_notify,
        .aux = dev,
        .max_guest_memory = vhostuser_max_guest_memory(),
        .socket_mode = vhostuser_sock_mode(),
        .socket_gid = vhostuser_sock_gid(),
        /* A dp_packet counts its bytes, headroom included, in 16 bits. */
        .max_rx_frame_size = UINT16_MAX - DP_NETDEV_HEADROOM,
    };
    return vhu_port_create(&options, error, error_size);
}

/* Records that dev->socket_path could not be served, and plans the next try. */
static void
socket_failed(struct netdev_vhostuser *dev, const char *error)
    OVS_REQUIRES(dev->mutex)
{
    /* The first failure of a port is always logged, the retries at most 10 lines a
     * minute for all ports: the status says it all the time. */
    static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(10, 10);
    bool first = !dev->socket_retry_ms;

    dev->socket_retry_ms = (first ? SOCKET_RETRY_MIN_MS
                            : MIN(2 * dev->socket_retry_ms, SOCKET_RETRY_MAX_MS));
    dev->socket_retry_at = time_msec() + dev->socket_retry_ms;
    vhostuser_timer_at = MIN(vhostuser_timer_at, dev->socket_retry_at);
    if (first || !vlog_should_drop(&this_module, VLL_ERR, &rl)) {
        VLOG_ERR("%s: cannot %s vhost-user socket %s: %s%s%s; trying again in %d s",
                 netdev_get_name(&dev->up), dev->client_mode ? "use" : "create",
                 dev->socket_path, error, dev->port ? "; still on " : "",
                 dev->port ? dev->port_path : "", dev->socket_retry_ms / 1000);
    }
    free(dev->socket_error);
    dev->socket_error = (dev->port
                         ? xasprintf("%s (still on %s)", error, dev->port_path)
                         : xstrdup(error));
}

static void
socket_succeeded(struct netdev_vhostuser *dev)
    OVS_REQUIRES(dev->mutex)
{
    dev->socket_retry_ms = 0;
    dev->socket_retry_at = 0;
    free(dev->socket_error);
    dev->socket_error = NULL;
}

/* run(): tries again to make the socket of a port that could not have it.  Only a
 * backend port made is handed to reconfigure() (the one place the port's backend may
 * change under the PMD threads): a reconfiguration reloads the PMD threads and makes
 * dpif-netdev log a line for every rx queue of the switch, too much to pay for each
 * try that fails. */
static void
retry_backend_port(struct netdev_vhostuser *dev)
    OVS_REQUIRES(dev->mutex)
{
    char error[256];

    dev->socket_retry_at = 0;
    if (dev->pending_port || !dev->socket_path
        || (dev->port && nullable_string_is_equal(dev->port_path, dev->socket_path))) {
        return;   /* Made already, or no longer wanted (a move taken back). */
    }
    struct vhu_port *port = create_backend_port(dev, error, sizeof error);
    if (!port) {
        socket_failed(dev, error);
        netdev_change_seq_changed(&dev->up);
        return;
    }
    dev->pending_port = port;
    dev->pending_path = xstrdup(dev->socket_path);
    netdev_request_reconfigure(&dev->up);
}

static void
drop_pending_port(struct netdev_vhostuser *dev)
    OVS_REQUIRES(dev->mutex)
{
    if (dev->pending_port) {
        vhu_port_destroy(dev->pending_port);
        dev->pending_port = NULL;
    }
    free(dev->pending_path);
    dev->pending_path = NULL;
}

/* Makes the backend port serve dev->socket_path, creating it or moving it there.
 * Failure is shown in the port's status (and logged), not returned: dpif-netdev
 * deletes a port whose reconfiguration fails, and the user would lose the port
 * instead of seeing why it does not work.  A port moving to a path it cannot use
 * keeps serving the old one, and a port that has none tries again later (run()):
 * the path may be held by a process that goes away, its directory made later. */
static void
ensure_backend_port(struct netdev_vhostuser *dev)
    OVS_REQUIRES(dev->mutex)
{
    const char *name = netdev_get_name(&dev->up);
    struct vhu_port *port = NULL;
    char error[256];

    if (dev->port && nullable_string_is_equal(dev->port_path, dev->socket_path)) {
        /* Served already: a move that failed was taken back, say. */
        drop_pending_port(dev);
        if (dev->socket_error || dev->socket_retry_ms) {
            socket_succeeded(dev);
            netdev_change_seq_changed(&dev->up);
        }
        return;
    }
    if (dev->socket_path) {
        if (dev->pending_port
            && nullable_string_is_equal(dev->pending_path, dev->socket_path)) {
            port = dev->pending_port;   /* run() made it. */
            dev->pending_port = NULL;
        }
        drop_pending_port(dev);
        if (!port) {
            port = create_backend_port(dev, error, sizeof error);
        }
        if (!port) {
            socket_failed(dev, error);
            return;
        }
    }
    drop_pending_port(dev);
    socket_succeeded(dev);
    if (dev->port) {
        VLOG_INFO("%s: leaving socket %s", name, dev->port_path);
        vhu_port_destroy(dev->port);
        dev->port = NULL;

        bool carrier;
        atomic_read_relaxed(&dev->carrier, &carrier);
        if (carrier) {
            /* The guest's connection went with the socket: link_resets counts it. */
            atomic_store_relaxed(&dev->carrier, false);
            dev->carrier_resets++;
        }
        memset(dev->enabled_rx_queues, 0, sizeof dev->enabled_rx_queues);
        memset(dev->enabled_tx_queues, 0, sizeof dev->enabled_tx_queues);
        set_guest_tx_queues(dev, dev->enabled_tx_queues);
        update_tx_map(dev, netdev_n_txq(&dev->up));
    }
    free(dev->port_path);
    dev->port_path = NULL;
    if (!port) {
        return;   /* Client port without options:vhost-server-path. */
    }
    dev->port = port;
    dev->port_path = xstrdup(dev->socket_path);
    /* A port run() made may have had a guest connect before it was installed: its
     * events waited while run() drained the old port; look at it now. */
    dev->update_pending = true;
    seq_change(vhostuser_seq);
    VLOG_INFO("%s: vhost-user %s on %s", name,
              dev->client_mode ? "client connecting to" : "server listening",
              dev->socket_path);
}

/* ---- Life cycle ---- */

static struct netdev *
netdev_vhostuser_alloc(void)
{
    struct netdev_vhostuser *dev = xzalloc(sizeof *dev);

    return &dev->up;
}

static void
netdev_vhostuser_class_init(void)
{
    static struct ovsthread_once once = OVSTHREAD_ONCE_INITIALIZER;

    if (ovsthread_once_start(&once)) {
        vhostuser_seq = seq_create();
        vhu_set_log_function(backend_log);
        ovsthread_once_done(&once);
    }
}

static int
netdev_vhostuser_construct__(struct netdev *netdev, bool client_mode)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    const char *name = netdev_get_name(netdev);

    /* The name of a server-mode port becomes a file name in the socket directory, so
     * it must not climb out of it.  OVS-DPDK refuses the same names; we refuse them in
     * client mode too, so that a port can change mode without changing name. */
    if (strchr(name, '/') || strchr(name, '\\')) {
        VLOG_ERR("\"%s\" is not a valid name for a vhost-user port: it must not "
                 "contain '/' or '\\'", name);
        return EINVAL;
    }
    netdev_vhostuser_class_init();

    dev->client_mode = client_mode;
    ovs_mutex_init(&dev->mutex);
    ovs_mutex_init(&dev->frontend_log_mutex);
    token_bucket_init(&dev->frontend_log_budget, FRONTEND_LOG_RATE,
                      FRONTEND_LOG_RATE * VLOG_MSG_TOKENS);
    smap_init(&dev->applied_args);
    vhostuser_options_init(&dev->options);
    dev->hwaddr = eth_addr_zero;
    dev->mtu = VHOSTUSER_DEFAULT_MTU;
    /* Up from the start, as OVS's other NICs: "ovs-ofctl mod-port ... down" takes it
     * down. */
    dev->flags = NETDEV_UP | NETDEV_PROMISC;
    /* No queue until a guest brings them (update_from_backend()).  A port that has
     * never had a guest has nothing to poll: with no rx queue it takes no part in the
     * PMD threads' rx queue assignment, which OVS redoes, and logs, for every port on
     * every port added.  With no tx queue it stays out of each PMD thread's send
     * cache, which dpif-netdev walks on every iteration that has output: a thousand
     * ports added ahead of their guests would otherwise slow every busy port.  What
     * flows send such a port, the datapath drops and counts itself (coverage counter
     * datapath_drop_invalid_port); OVS-DPDK's port counts it but reports no
     * statistics until a guest comes.  From the first guest on, the port counts its
     * own drops in tx_dropped. */
    dev->requested_n_rxq = 0;
    dev->requested_n_txq = 0;
    atomic_init(&dev->admin_up, true);
    atomic_init(&dev->carrier, false);
    atomic_init(&dev->recheck_at, 0);
    for (int w = 0; w < VHU_QUEUE_SET_WORDS; w++) {
        atomic_init(&dev->guest_tx_queues[w], 0);
    }
    atomic_init(&dev->tx_retries_max, dev->options.tx_retries_max);
    atomic_init(&dev->max_frame, max_frame_for_mtu(dev->mtu));
    atomic_init(&dev->numa_id, NETDEV_NUMA_UNSPEC);
    vhostuser_counters_init(dev);
    vhostuser_policer_init(&dev->ingress_policer);
    vhostuser_policer_init(&dev->egress_policer);

    if (!client_mode) {
        char *path = xasprintf("%s/%s", vhostuser_sock_dir(), name);
        char *error = vhostuser_socket_path_check(path);

        if (error) {
            VLOG_ERR("%s: %s", name, error);
            free(error);
            free(path);
            vhostuser_policer_destroy(&dev->ingress_policer);
            vhostuser_policer_destroy(&dev->egress_policer);
            vhostuser_options_destroy(&dev->options);
            smap_destroy(&dev->applied_args);
            free(dev->queues);
            ovs_mutex_destroy(&dev->mutex);
            ovs_mutex_destroy(&dev->frontend_log_mutex);
            return EINVAL;
        }
        dev->socket_path = path;
        /* Listen at once: QEMU may be waiting for the socket. */
        ovs_mutex_lock(&dev->mutex);
        ensure_backend_port(dev);
        ovs_mutex_unlock(&dev->mutex);
    }

    ovs_mutex_lock(&vhostuser_ports_mutex);
    ovs_list_push_back(&vhostuser_ports, &dev->list_node);
    ovs_mutex_unlock(&vhostuser_ports_mutex);

    netdev->n_rxq = dev->requested_n_rxq;
    netdev->n_txq = dev->requested_n_txq;
    VLOG_INFO("%s: %s vhost-user port created", name,
              client_mode ? "client-mode" : "server-mode");
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

    ovs_mutex_lock(&vhostuser_ports_mutex);
    ovs_list_remove(&dev->list_node);
    ovs_mutex_unlock(&vhostuser_ports_mutex);

    ovs_mutex_lock(&dev->mutex);
    if (dev->port) {
        /* Also removes a server socket file. */
        vhu_port_destroy(dev->port);
        dev->port = NULL;
    }
    drop_pending_port(dev);
    free(dev->port_path);
    free(dev->socket_path);
    free(dev->socket_error);
    free(dev->config_error);
    free(dev->applied_warning);
    vhostuser_options_destroy(&dev->options);
    smap_destroy(&dev->applied_args);
    free(dev->queues);
    ovs_mutex_unlock(&dev->mutex);
    vhostuser_policer_destroy(&dev->ingress_policer);
    vhostuser_policer_destroy(&dev->egress_policer);
    ovs_mutex_destroy(&dev->mutex);
    ovs_mutex_destroy(&dev->frontend_log_mutex);
    VLOG_INFO("%s: vhost-user port destroyed", netdev_get_name(netdev));
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
    /* Rate-limited: the bridge retries a configuration on every pass. */
    static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(5, 20);
    char *warning;
    int error = 0;

    ovs_mutex_lock(&dev->mutex);
    if (!smap_is_empty(&dev->applied_args) && smap_equal(args, &dev->applied_args)) {
        if (!nullable_string_is_equal(dev->config_error, dev->applied_warning)) {
            /* Back to the options in use, after a refused change: only what was
             * wrong with those, if anything, is left to say. */
            free(dev->config_error);
            dev->config_error = nullable_xstrdup(dev->applied_warning);
            netdev_change_seq_changed(netdev);
        }
        goto out;
    }

    error = vhostuser_options_parse(netdev_get_name(netdev), dev->client_mode, args,
                                    &dev->options, errp, &warning);
    if (error) {
        VLOG_WARN_RL(&rl, "%s%s", *errp, dev->configured
                     ? "; the port keeps its previous options" : "");
        if (dev->configured) {
            /* A port already in use keeps working with the options it had: failing
             * here would make the bridge delete it, and the guest would lose its
             * network over a typo.  The refusal shows in status:config_error. */
            free(dev->config_error);
            dev->config_error = *errp;
            *errp = NULL;
            error = 0;
        }
        /* For a new port, netdev_set_config() puts the reason in the Interface's
         * error column and the port is not created. */
        netdev_change_seq_changed(netdev);
        goto out;
    }
    if (warning) {
        VLOG_WARN_RL(&rl, "%s", warning);
    }
    dev->configured = true;
    free(dev->config_error);
    dev->config_error = nullable_xstrdup(warning);
    free(dev->applied_warning);
    dev->applied_warning = warning;
    smap_destroy(&dev->applied_args);
    smap_clone(&dev->applied_args, args);
    atomic_store_relaxed(&dev->tx_retries_max, dev->options.tx_retries_max);
    netdev_change_seq_changed(netdev);   /* The status shows the options. */

    if (dev->client_mode
        && !nullable_string_is_equal(dev->socket_path, dev->options.server_path)) {
        free(dev->socket_path);
        dev->socket_path = xstrdup(dev->options.server_path);
        /* The connection moves to the new path in reconfigure(). */
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

    ovs_mutex_lock(&dev->mutex);
    if (!dev->client_mode) {
        char *path = xasprintf("%s/%s", vhostuser_sock_dir(), netdev_get_name(netdev));

        if (!nullable_string_is_equal(path, dev->socket_path)) {
            free(dev->socket_path);
            dev->socket_path = path;
        } else {
            free(path);
        }
    }
    ensure_backend_port(dev);

    vhostuser_queues_reserve(dev, MAX(dev->requested_n_rxq, dev->requested_n_txq));
    netdev->n_rxq = dev->requested_n_rxq;
    netdev->n_txq = dev->requested_n_txq;
    update_tx_map(dev, netdev->n_txq);
    netdev_change_seq_changed(netdev);
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

    if (mtu < VHOSTUSER_MIN_MTU || mtu > VHOSTUSER_MAX_MTU) {
        static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(5, 20);

        VLOG_WARN_RL(&rl, "%s: mtu_request=%d refused: vhost-user ports take %d to %d",
                     netdev_get_name(netdev), mtu, VHOSTUSER_MIN_MTU,
                     VHOSTUSER_MAX_MTU);
        return EINVAL;
    }

    ovs_mutex_lock(&dev->mutex);
    if (dev->mtu != mtu) {
        dev->mtu = mtu;
        uint32_t guest_frame = dev->port ? vhu_port_max_rx_frame(dev->port) : UINT32_MAX;
        atomic_store_relaxed(&dev->max_frame, MIN(guest_frame, max_frame_for_mtu(mtu)));
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
    atomic_store_relaxed(&dev->admin_up, (dev->flags & NETDEV_UP) != 0);
    if (dev->flags != *old_flagsp) {
        netdev_change_seq_changed(netdev);
    }
    ovs_mutex_unlock(&dev->mutex);
    return 0;
}

static int
netdev_vhostuser_set_policing(struct netdev *netdev, uint32_t kbits_rate,
                              uint32_t kbits_burst, uint32_t kpkts_rate,
                              uint32_t kpkts_burst)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    if (kpkts_rate || kpkts_burst) {
        /* Packet-rate policing is not implemented; say so rather than ignore it. */
        return EOPNOTSUPP;
    }
    vhostuser_policer_set(&dev->ingress_policer, kbits_rate, kbits_burst);
    return 0;
}

/* ---- QoS: the egress-policer type, as OVS-DPDK's ---- */

static int
netdev_vhostuser_get_qos_types(const struct netdev *netdev OVS_UNUSED,
                               struct sset *types)
{
    sset_add(types, "egress-policer");
    return 0;
}

static int
netdev_vhostuser_get_qos(const struct netdev *netdev, const char **typep,
                         struct smap *details)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    struct vhostuser_policer *p = &dev->egress_policer;

    ovs_spin_lock(&p->lock);
    if (p->rate_kbps) {
        *typep = "egress-policer";
        /* Back in the units of the configuration: bytes/s and bytes. */
        smap_add_format(details, "cir", "%llu", (unsigned long long) p->rate_kbps * 125);
        smap_add_format(details, "cbs", "%llu", (unsigned long long) p->burst_kb * 125);
    } else {
        *typep = "";
    }
    ovs_spin_unlock(&p->lock);
    return 0;
}

static int
netdev_vhostuser_set_qos(struct netdev *netdev, const char *type,
                         const struct smap *details)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    if (!type || !type[0]) {
        vhostuser_policer_set(&dev->egress_policer, 0, 0);
        return 0;
    }
    if (strcmp(type, "egress-policer")) {
        return EOPNOTSUPP;
    }
    /* cir in bytes per second, cbs in bytes, as OVS-DPDK reads them. */
    unsigned long long cir = smap_get_ullong(details, "cir", 0);
    unsigned long long cbs = smap_get_ullong(details, "cbs", 0);
    if (!cir) {
        return EINVAL;
    }
    /* Rounded up, so that a small cbs stays a small burst rather than becoming 0,
     * the default burst (8000 kbit, as for ingress policing). */
    uint32_t burst_kb = (cbs >= 125ULL * UINT32_MAX ? UINT32_MAX
                         : DIV_ROUND_UP(cbs, 125));
    vhostuser_policer_set(&dev->egress_policer, MAX(1, MIN(cir / 125, UINT32_MAX)),
                          burst_kb);
    return 0;
}

/* ---- State ---- */

static int
netdev_vhostuser_get_numa_id(const struct netdev *netdev)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    int numa_id;

    /* On a single-node machine there is no choice to make, and saying so spares
     * dpif-netdev's warning about ports on an unknown node. */
    if (ovs_numa_get_n_numas() == 1 && ovs_numa_numa_id_is_valid(0)) {
        return 0;
    }
    atomic_read_relaxed(&dev->numa_id, &numa_id);
    return numa_id;
}

static int
netdev_vhostuser_get_carrier(const struct netdev *netdev, bool *carrier)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);

    atomic_read_relaxed(&dev->carrier, carrier);
    return 0;
}

static long long int
netdev_vhostuser_get_carrier_resets(const struct netdev *netdev)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    long long int resets;

    ovs_mutex_lock(&dev->mutex);
    resets = dev->carrier_resets;
    ovs_mutex_unlock(&dev->mutex);
    return resets;
}

static int
netdev_vhostuser_get_status(const struct netdev *netdev, struct smap *args)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    struct vhu_port_status status;

    ovs_mutex_lock(&dev->mutex);
    smap_add(args, "mode", dev->client_mode ? "client" : "server");
    /* The path served, which is not yet the one asked for while a move to a new
     * vhost-sock-dir fails. */
    const char *socket = dev->port ? dev->port_path : dev->socket_path;
    if (socket) {
        smap_add(args, "socket", socket);
    }
    smap_add_format(args, "tx-retries-max", "%d", dev->options.tx_retries_max);
    /* Both can hold at once (an out-of-range option beside a socket move that
     * fails), and neither may hide the other. */
    const char *socket_error = dev->port ? dev->socket_error : NULL;
    if (dev->config_error && socket_error) {
        smap_add_format(args, "config_error", "%s; %s", dev->config_error, socket_error);
    } else if (dev->config_error || socket_error) {
        smap_add(args, "config_error", dev->config_error ? dev->config_error : socket_error);
    }

    if (!dev->port) {
        smap_add(args, "status", "error");
        smap_add(args, "error", dev->socket_error ? dev->socket_error
                                : "no socket: options:vhost-server-path is not set");
        ovs_mutex_unlock(&dev->mutex);
        return 0;
    }

    vhu_port_get_status(dev->port, &status);
    if (status.state == VHU_STATE_DISCONNECTED) {
        smap_add(args, "status", status.last_error[0] ? "error" : "disconnected");
        if (status.last_error[0]) {
            smap_add(args, "error", status.last_error);
        }
        ovs_mutex_unlock(&dev->mutex);
        return 0;
    }

    char names[512];
    smap_add(args, "status", "connected");
    vhu_format_features(status.features, false, names, sizeof names);
    smap_add(args, "features", names);
    vhu_format_features(status.protocol_features, true, names, sizeof names);
    smap_add(args, "protocol_features", names);
    if (status.numa_node >= 0) {
        smap_add_format(args, "numa", "%d", status.numa_node);
    }
    smap_add_format(args, "num_of_vrings", "%u", status.num_vrings);
    for (unsigned i = 0; i < status.num_vrings && i < VHU_MAX_VRINGS; i++) {
        struct vhu_vring_status vs;

        if (vhu_vring_get_status(dev->port, i, &vs) && vs.size) {
            char key[32];

            snprintf(key, sizeof key, "vring_%u_size", i);
            smap_add_format(args, key, "%u", vs.size);
        }
    }
    struct ds s = DS_EMPTY_INITIALIZER;
    format_queue_set(&s, status.enabled_rx_queues);
    smap_add(args, "rx_queues_enabled_in_guest", ds_cstr(&s));
    ds_clear(&s);
    format_queue_set(&s, status.enabled_tx_queues);
    smap_add(args, "tx_queues_enabled_in_guest", ds_cstr(&s));
    ds_destroy(&s);
    if (status.mtu) {
        smap_add_format(args, "mtu", "%u", status.mtu);
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
    free(CONTAINER_OF(rxq, struct netdev_rxq_vhostuser, up));
}

static bool
netdev_vhostuser_rxq_enabled(struct netdev_rxq *rxq)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(rxq->netdev);
    unsigned q = rxq->queue_id;
    uint64_t word;

    if (q >= VHU_MAX_QUEUE_PAIRS) {
        return false;
    }
    /* PMD threads ask whenever the port's change_seq moves: no mutex here. */
    atomic_read_relaxed(&dev->guest_tx_queues[q / 64], &word);
    return (word >> (q % 64)) & 1;
}

/* vhu_alloc_fn: packets the backend copies guest frames into are OVS's own, with the
 * headroom dpif-netdev wants for pushing headers, taken from this thread's cache of
 * packets that vhost-user ports have finished sending. */
static void *
alloc_packet(void *aux OVS_UNUSED, uint32_t size, uint8_t **data)
{
    return vhostuser_packet_alloc(size, data);
}

static int
netdev_vhostuser_rxq_recv(struct netdev_rxq *rxq, struct dp_packet_batch *batch,
                          int *qfill)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(rxq->netdev);
    int qid = rxq->queue_id;
    uint32_t n, n_bad;
    bool admin_up;

    if (qfill) {
        /* What is left in the guest's queue is not known here: say so, as the
         * contract asks, rather than 0, which pmd-perf-show took for an empty queue
         * (its "max vhost qfill") and its suspicious-iteration log never looked at. */
        *qfill = -ENOTSUP;
    }
    atomic_read_relaxed(&dev->admin_up, &admin_up);
    if (!dev->port || !admin_up || qid >= dev->n_queues) {
        /* Down: leave the packets in the guest's queue, as a NIC that is down does
         * not take them off the wire.  A call for none still gives back, once the
         * queue is quiet, the buffers the last bursts held (vhu_dequeue_burst()). */
        if (dev->port && qid < dev->n_queues) {
            vhu_dequeue_burst(dev->port, qid, alloc_packet, NULL,
                              (void **) batch->packets, 0, NULL);
        }
        return EAGAIN;
    }
    n = vhu_dequeue_burst(dev->port, qid, alloc_packet, NULL,
                          (void **) batch->packets, NETDEV_MAX_BURST, &n_bad);
    if (OVS_UNLIKELY(n_bad)) {
        /* Frames the guest sent empty, or too large for any packet: errors on the
         * wire, as a NIC counts runts and giants. */
        vhostuser_counter_add(&dev->rx.errors, n_bad);
    }
    if (!n) {
        return EAGAIN;
    }
    batch->count = n;

    int n_policed = vhostuser_policer_run(&dev->ingress_policer, batch);
    if (n_policed) {
        vhostuser_counter_add(&dev->drops.rx_qos, n_policed);
        vhostuser_counter_add(&dev->rx.dropped, n_policed);
        vhostuser_counter_add(&dev->queues[qid].rx.dropped, n_policed);
    }
    /* No dp_packet_batch_init_packet_fields(): vhostuser_packet_alloc() has already
     * reset the cut length and packet type of every packet. */
    vhostuser_count_batch(&dev->queues[qid].rx, batch->packets, batch->count, false);
    return batch->count ? 0 : EAGAIN;
}

static void
netdev_vhostuser_rxq_wait(struct netdev_rxq *rxq OVS_UNUSED)
{
    /* PMD threads poll; nothing waits on a PMD port's receive queue. */
}

static void
count_tx_drops(struct netdev_vhostuser *dev, int q, atomic_uint64_t *reason, int n)
{
    if (n) {
        vhostuser_counter_add(&dev->tx.dropped, n);
        if (reason) {
            vhostuser_counter_add(reason, n);
        }
        if (q >= 0) {
            vhostuser_counter_add(&dev->queues[q].tx.dropped, n);
        }
    }
}

static int
netdev_vhostuser_send(struct netdev *netdev, int qid, struct dp_packet_batch *batch,
                      bool concurrent_txq)
{
    struct netdev_vhostuser *dev = netdev_vhostuser_cast(netdev);
    struct vhu_tx_packet pkts[NETDEV_MAX_BURST];
    struct dp_packet *packet;
    int n_txq = MAX(1, netdev_n_txq(netdev));
    int q = qid % n_txq;
    int cnt = dp_packet_batch_size(batch);
    int vring_pair = -1;
    uint32_t max_frame;
    bool admin_up;
    int retries_max;

    /* Locking: several PMD threads may send on one OVS tx queue ('concurrent_txq');
     * the backend serialises them with its lock on the guest queue. */
    atomic_read_relaxed(&dev->admin_up, &admin_up);
    if (q < dev->n_queues) {
        atomic_read_relaxed(&dev->queues[q].tx_map, &vring_pair);
    }
    if (!dev->port || !admin_up || vring_pair < 0) {
        /* No guest, port down, or no queue enabled: nowhere to put them. */
        count_tx_drops(dev, q < dev->n_queues ? q : -1, NULL, cnt);
        vhostuser_packet_release_batch(batch);
        return 0;
    }

    /* Frames longer than the MTU (or than the guest's buffers hold) are dropped here,
     * so that what reaches the guest is exactly what the counters below count. */
    atomic_read_relaxed(&dev->max_frame, &max_frame);
    int n = 0, n_oversized = 0;
    size_t i, size = dp_packet_batch_size(batch);
    DP_PACKET_BATCH_REFILL_FOR_EACH (i, size, packet, batch) {
        uint32_t packet_size = dp_packet_size(packet);

        if (OVS_LIKELY(packet_size <= max_frame)) {
            dp_packet_batch_refill(batch, packet, i);
            pkts[n].data = dp_packet_data(packet);
            pkts[n].size = packet_size;
            n++;
        } else {
            dp_packet_delete(packet);
            n_oversized++;
        }
    }
    count_tx_drops(dev, q, &dev->drops.tx_mtu_exceeded, n_oversized);

    /* The policer after the MTU check, as in OVS-DPDK: a frame that would be dropped
     * anyway takes none of the rate, and counts as oversized.  'pkts' follows the
     * batch's order, so it is rebuilt from what the policer keeps. */
    int n_policed = vhostuser_policer_run(&dev->egress_policer, batch);
    if (n_policed) {
        count_tx_drops(dev, q, &dev->drops.tx_qos, n_policed);
        n = 0;
        DP_PACKET_BATCH_FOR_EACH (j, packet, batch) {
            pkts[n].data = dp_packet_data(packet);
            pkts[n].size = dp_packet_size(packet);
            n++;
        }
    }

    /* Retry while the guest keeps making room, up to tx-retries-max times. */
    atomic_read_relaxed(&dev->tx_retries_max, &retries_max);
    int done = 0, retries = 0, n_unfit = 0;
    for (;;) {
        uint32_t unfit = 0;
        uint32_t consumed = vhu_enqueue_burst(dev->port, vring_pair, &pkts[done],
                                              n - done, &unfit);

        done += consumed;
        n_unfit += unfit;
        if (done == n || !consumed || retries >= retries_max) {
            break;
        }
        retries++;
    }
    vhostuser_counter_add(&dev->drops.tx_retries, retries);

    /* The backend drops a frame no buffer of this guest could hold (mergeable buffers
     * off and a frame larger than the guest's buffers, which the max_frame check above
     * makes rare): count it with the oversized ones.  The size bins then count the
     * first n_sent frames, approximate only in that rare case. */
    int n_sent = done - n_unfit;
    count_tx_drops(dev, q, &dev->drops.tx_mtu_exceeded, n_unfit);
    count_tx_drops(dev, q, &dev->drops.tx_failure, n - done);
    if (n_sent) {
        /* Without concurrent_txq, the queue is this thread's alone: dpif-netdev
         * then gives each thread its own static tx queue id, all below n_txq (it
         * picks static ids only when the port has a tx queue for every thread), so
         * 'q' is 'qid' and no other thread counts on it. */
        vhostuser_count_batch(&dev->queues[q].tx, batch->packets, n_sent,
                              concurrent_txq);
    }
    vhostuser_packet_release_batch(batch);
    return 0;
}

/* ---- Registration ---- */

#define NETDEV_VHOSTUSER_CLASS_COMMON                               \
    .is_pmd = true,                                                 \
    .run = netdev_vhostuser_run,                                    \
    .wait = netdev_vhostuser_wait,                                  \
    .alloc = netdev_vhostuser_alloc,                                \
    .destruct = netdev_vhostuser_destruct,                          \
    .dealloc = netdev_vhostuser_dealloc,                            \
    .get_config = netdev_vhostuser_get_config,                      \
    .set_config = netdev_vhostuser_set_config,                      \
    .reconfigure = netdev_vhostuser_reconfigure,                    \
    .set_etheraddr = netdev_vhostuser_set_etheraddr,                \
    .get_etheraddr = netdev_vhostuser_get_etheraddr,                \
    .get_mtu = netdev_vhostuser_get_mtu,                            \
    .set_mtu = netdev_vhostuser_set_mtu,                            \
    .update_flags = netdev_vhostuser_update_flags,                  \
    .set_policing = netdev_vhostuser_set_policing,                  \
    .get_qos_types = netdev_vhostuser_get_qos_types,                \
    .get_qos = netdev_vhostuser_get_qos,                            \
    .set_qos = netdev_vhostuser_set_qos,                            \
    .get_numa_id = netdev_vhostuser_get_numa_id,                    \
    .get_carrier = netdev_vhostuser_get_carrier,                    \
    .get_carrier_resets = netdev_vhostuser_get_carrier_resets,      \
    .get_stats = netdev_vhostuser_get_stats,                        \
    .get_custom_stats = netdev_vhostuser_get_custom_stats,          \
    .get_status = netdev_vhostuser_get_status,                      \
    .rxq_alloc = netdev_vhostuser_rxq_alloc,                        \
    .rxq_construct = netdev_vhostuser_rxq_construct,                \
    .rxq_destruct = netdev_vhostuser_rxq_destruct,                  \
    .rxq_dealloc = netdev_vhostuser_rxq_dealloc,                    \
    .rxq_enabled = netdev_vhostuser_rxq_enabled,                    \
    .rxq_recv = netdev_vhostuser_rxq_recv,                          \
    .rxq_wait = netdev_vhostuser_rxq_wait,                          \
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
    netdev_vhostuser_appctl_register();
}
