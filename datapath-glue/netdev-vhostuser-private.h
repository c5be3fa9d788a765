/* What the files of the vhost-user netdev provider share: the port structure, its
 * counters and the helpers between them.  Not for use outside datapath-glue/. */
#ifndef NETDEV_VHOSTUSER_PRIVATE_H
#define NETDEV_VHOSTUSER_PRIVATE_H 1

#include <stdbool.h>
#include <stdint.h>

#include "netdev-provider.h"
#include "netdev-vhostuser-options.h"
#include "openvswitch/list.h"
#include "openvswitch/vlog.h"
#include "ovs-atomic.h"
#include "ovs-thread.h"
#include "smap.h"
#include "openvswitch/token-bucket.h"
#include "vhostuser/vhostuser.h"

struct dp_packet_batch;

/* Frame-size bins of RFC 2819, as OVS's netdev_stats has them. */
enum vhostuser_size_bin {
    VHOSTUSER_BIN_64,
    VHOSTUSER_BIN_127,
    VHOSTUSER_BIN_255,
    VHOSTUSER_BIN_511,
    VHOSTUSER_BIN_1023,
    VHOSTUSER_BIN_1522,
    VHOSTUSER_BIN_MAX,
    VHOSTUSER_N_BINS
};

/* A port's counters of one direction that are not per queue: drops and errors,
 * rare, from any thread, so atomic adds. */
struct vhostuser_dir_counters {
    atomic_uint64_t dropped;
    atomic_uint64_t errors;
};

/* One queue's counters of one direction; the port's totals are their sums.  What
 * crosses a queue is counted by the one thread that polls or sends on it (see
 * vhostuser_count_batch()); drops, from anywhere, with atomic adds.  The packets
 * are the sum of the size bins, each packet being in one: a burst of one size
 * adds to two counters. */
struct vhostuser_queue_counters {
    atomic_uint64_t bytes;
    atomic_uint64_t multicast;
    atomic_uint64_t broadcast;
    atomic_uint64_t bins[VHOSTUSER_N_BINS];
    atomic_uint64_t dropped;
};

/* Why packets were dropped, as OVS-DPDK names its custom counters. */
/* One OVS queue number's own state: its rx queue's and its tx queue's counters, and
 * where its tx queue sends. */
struct vhostuser_queue {
    /* The queue pair whose guest RX vring gets this tx queue's packets; -1: none. */
    atomic_int tx_map;
    struct vhostuser_queue_counters rx;
    struct vhostuser_queue_counters tx;
};

struct vhostuser_drop_counters {
    atomic_uint64_t tx_failure;        /* Left over after the retries. */
    atomic_uint64_t tx_mtu_exceeded;   /* Larger than the MTU or the guest allows. */
    atomic_uint64_t tx_qos;            /* Egress policer. */
    atomic_uint64_t rx_qos;            /* Ingress policer. */
    atomic_uint64_t tx_retries;        /* Retries, not drops, but counted alongside. */
};

/* A rate limiter (ingress policing, egress-policer QoS), a token bucket counting bytes
 * and refilled to the microsecond, shared by the PMD threads.  Costs nothing while
 * disabled; while enabled, one spinlock and at most one clock read per batch, as
 * OVS-DPDK's policers. */
struct vhostuser_policer {
    atomic_bool enabled;
    struct ovs_spin lock;
    /* Tokens in millionths of a byte: a microsecond at 'rate' bytes/s adds 'rate'. */
    uint64_t rate OVS_GUARDED_BY(lock);       /* Bytes per second. */
    uint64_t capacity OVS_GUARDED_BY(lock);   /* The burst, in millionths of a byte. */
    uint64_t tokens OVS_GUARDED_BY(lock);
    long long int last_refill OVS_GUARDED_BY(lock);   /* time_usec(). */
    uint32_t rate_kbps;   /* As configured, for get_qos and status. */
    uint32_t burst_kb;
};

/* How many queue changes a port may have in a row (netdev-vhostuser-provider.c). */
#define QUEUE_CHANGE_BURST 4

struct netdev_vhostuser {
    struct netdev up;

    /* Fixed at construction. */
    bool client_mode;

    /* In vhostuser_ports, under vhostuser_ports_mutex. */
    struct ovs_list list_node;

    struct ovs_mutex mutex;

    /* What this port's frontends make us log: the backend's lines about this port and
     * ours about its guest (netdev-vhostuser-provider.c, frontend_log()).  Its own
     * mutex: the library's control thread logs while the main thread may hold
     * 'mutex' in vhu_port_destroy(), which waits for that thread. */
    struct ovs_mutex frontend_log_mutex;
    struct token_bucket frontend_log_budget OVS_GUARDED_BY(frontend_log_mutex);
    unsigned int frontend_log_dropped OVS_GUARDED_BY(frontend_log_mutex);

    /* The Interface options as last applied, so that set_config (called on every
     * bridge reconfiguration) only acts, and logs, when they changed. */
    struct smap applied_args OVS_GUARDED;
    struct vhostuser_options options OVS_GUARDED;
    bool configured OVS_GUARDED;       /* Options were accepted at least once. */
    /* What is wrong with the options: why the last change was refused, or what in
     * the applied ones was out of range and left as it was ('applied_warning'). */
    char *config_error OVS_GUARDED;
    char *applied_warning OVS_GUARDED;

    /* Where the socket should be (server: <vhost-sock-dir>/<name>; client:
     * options:vhost-server-path), and where the backend port is now. */
    char *socket_path OVS_GUARDED;
    char *port_path OVS_GUARDED;
    /* Why the socket could not be served, or NULL. */
    char *socket_error OVS_GUARDED;

    struct eth_addr hwaddr OVS_GUARDED;
    int mtu OVS_GUARDED;
    enum netdev_flags flags OVS_GUARDED;

    /* Queue counts the guest asked for; applied by reconfigure. */
    int requested_n_rxq OVS_GUARDED;
    int requested_n_txq OVS_GUARDED;

    /* The backend.  Replaced only in reconfigure(), while no PMD thread uses the port,
     * so the data path reads it without a lock. */
    struct vhu_port *port;

    /* Read by the data path without the mutex. */
    atomic_bool admin_up;
    atomic_bool carrier;
    /* enabled_tx_queues, for rxq_enabled(). */
    atomic_uint64_t guest_tx_queues[VHU_QUEUE_SET_WORDS];
    atomic_int tx_retries_max;
    atomic_uint32_t max_frame;  /* Longest frame send() passes to the guest. */
    /* get_numa_id(): the node of the last ready guest's memory, NETDEV_NUMA_UNSPEC
     * before one; taken in with a reconfiguration, as a queue change is. */
    atomic_int numa_id;

    /* Guest-state bookkeeping, updated from backend events in the main thread. */
    uint64_t enabled_rx_queues[VHU_QUEUE_SET_WORDS] OVS_GUARDED;
    uint64_t enabled_tx_queues[VHU_QUEUE_SET_WORDS] OVS_GUARDED;
    uint64_t carrier_resets OVS_GUARDED;
    /* PMD reloads for a queue count change or for transmit queues coming up are
     * damped (update_from_backend()): when the last QUEUE_CHANGE_BURST were requested
     * (0: not yet; a ring, 'queue_change_oldest' the oldest), whether one waits, and
     * the earliest time it may be requested. */
    long long int queue_change_times[QUEUE_CHANGE_BURST] OVS_GUARDED;
    int queue_change_oldest OVS_GUARDED;
    bool queue_change_pending OVS_GUARDED;
    long long int next_queue_change OVS_GUARDED;
    /* When a change to more queues last skipped the window (0: never). */
    long long int queue_increase_skipped_window OVS_GUARDED;
    /* A socket that could not be made (socket_error) is tried again at
     * 'socket_retry_at' (0: not planned), after 'socket_retry_ms' (doubling). */
    long long int socket_retry_at OVS_GUARDED;
    int socket_retry_ms OVS_GUARDED;
    /* A backend port a retry made for 'pending_path', for reconfigure() to take. */
    struct vhu_port *pending_port OVS_GUARDED;
    char *pending_path OVS_GUARDED;
    /* Updates from the backend are damped too (run()): the earliest time for the
     * next, whether events wait for it, and when the bridge is told of the port's
     * state once more (0: not). */
    long long int next_update OVS_GUARDED;
    bool update_pending OVS_GUARDED;
    long long int reannounce_at OVS_GUARDED;
    /* When run() looks at the port again without being woken (0: not planned);
     * read by backend_notify() on the library's control thread. */
    atomic_llong recheck_at;

    struct vhostuser_policer ingress_policer;  /* ingress_policing_rate/burst */
    struct vhostuser_policer egress_policer;   /* QoS type egress-policer */

    struct vhostuser_dir_counters rx;
    struct vhostuser_dir_counters tx;
    struct vhostuser_drop_counters drops;
    /* One per OVS rx or tx queue, whichever are more.  Grown by reconfigure(), under
     * the mutex while no PMD thread uses the port, and never shrunk: the counters survive a guest
     * that comes back with fewer queues.  An idle port has one, not one per queue
     * pair a guest could ask for. */
    struct vhostuser_queue *queues;
    int n_queues;
};

struct netdev_vhostuser *netdev_vhostuser_cast(const struct netdev *);
bool netdev_vhostuser_is_vhostuser(const struct netdev *);

/* Every vhost-user port, for the appctl commands and the event loop. */
extern struct ovs_mutex vhostuser_ports_mutex;
extern struct ovs_list vhostuser_ports OVS_GUARDED_BY(vhostuser_ports_mutex);

/* netdev-vhostuser-stats.c */
void vhostuser_counters_init(struct netdev_vhostuser *);
/* Makes dev->queues hold at least 'n' queues; new ones count from zero and send
 * nowhere. */
void vhostuser_queues_reserve(struct netdev_vhostuser *, int n);
/* Counts 'n' packets that crossed a queue.  'shared': other threads may count on
 * the same queue at once (a tx queue OVS sends on with concurrent_txq). */
void vhostuser_count_batch(struct vhostuser_queue_counters *,
                           struct dp_packet **, int n, bool shared);
void vhostuser_counter_add(atomic_uint64_t *, uint64_t n);
uint64_t vhostuser_counter_read(atomic_uint64_t *);
int netdev_vhostuser_get_stats(const struct netdev *, struct netdev_stats *);
int netdev_vhostuser_get_custom_stats(const struct netdev *,
                                      struct netdev_custom_stats *);

/* netdev-vhostuser-policer.c */
void vhostuser_policer_init(struct vhostuser_policer *);
void vhostuser_policer_destroy(struct vhostuser_policer *);
/* Sets the rate and burst (0: 8000 kbit, as OVS-DPDK; at least one 9728-byte frame); a
 * rate of 0 disables the policer. */
void vhostuser_policer_set(struct vhostuser_policer *, uint32_t rate_kbps,
                           uint32_t burst_kb);
/* Keeps the packets of 'batch' the policer lets through, in order, deletes the rest
 * and returns how many it deleted. */
int vhostuser_policer_run(struct vhostuser_policer *, struct dp_packet_batch *);

/* ovs-other-config.c: other_config:vhost-sock-dir, absolute, never NULL; the
 * server sockets' mode and group (-1: the directory's), vhost-sock-mode and
 * vhost-sock-group; the guest memory a port may map, in bytes
 * (vhost-max-guest-memory). */
const char *vhostuser_sock_dir(void);
unsigned int vhostuser_sock_mode(void);
int vhostuser_sock_gid(void);
uint64_t vhostuser_max_guest_memory(void);

/* netdev-vhostuser-appctl.c */
void netdev_vhostuser_appctl_register(void);

#endif /* netdev-vhostuser-private.h */
