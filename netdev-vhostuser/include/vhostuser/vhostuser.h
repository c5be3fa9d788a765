/* The C API of the vhost-user backend.
 *
 * A vhu_port is the device side of one vhost-user socket: in server mode it listens on
 * a path and serves one frontend at a time, in client mode it connects to a path and
 * reconnects when the frontend goes away.  All socket work happens on one control
 * thread shared by every port; the data-path calls (vhu_dequeue_burst,
 * vhu_enqueue_burst) may come from any number of threads, serialised per virtqueue by
 * the library's one lock per queue.
 *
 * This header is C so that code built against Open vSwitch's C-only headers can use it.
 * Nothing here knows about OVS. */
#ifndef VHOSTUSER_VHOSTUSER_H
#define VHOSTUSER_VHOSTUSER_H 1

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Queue pairs a port offers the frontend (GET_QUEUE_NUM), as many as DPDK's vhost
 * library.  Vring 2*q is the guest's RX queue of pair q (the switch enqueues to it),
 * vring 2*q+1 its TX queue (the switch dequeues from it).  A port holds state only for
 * the vrings its frontend configures. */
#define VHU_MAX_QUEUE_PAIRS 128
#define VHU_MAX_VRINGS (2 * VHU_MAX_QUEUE_PAIRS)

/* A set of queue pairs, one bit each: queue pair q is bit q % 64 of word q / 64. */
#define VHU_QUEUE_SET_WORDS ((VHU_MAX_QUEUE_PAIRS + 63) / 64)

static inline bool
vhu_queue_set_has(const uint64_t set[VHU_QUEUE_SET_WORDS], unsigned q)
{
    return q < VHU_MAX_QUEUE_PAIRS && ((set[q / 64] >> (q % 64)) & 1);
}

struct vhu_port;

enum vhu_mode {
    VHU_MODE_SERVER, /* We listen on socket_path. */
    VHU_MODE_CLIENT, /* We connect to socket_path, and reconnect. */
};

enum vhu_event_type {
    VHU_EVENT_CONNECTED,      /* A frontend connected (negotiation starts). */
    VHU_EVENT_READY,          /* First queue pair usable: features and MTU are known. */
    VHU_EVENT_VRING_CHANGED,  /* A vring was enabled, disabled, started or stopped. */
    VHU_EVENT_DISCONNECTED,   /* The frontend went away or was dropped for an error. */
};

struct vhu_event {
    enum vhu_event_type type;
    int vring;                /* VHU_EVENT_VRING_CHANGED only, else -1. */
};

struct vhu_port_options {
    const char *socket_path;  /* Required.  Copied. */
    enum vhu_mode mode;
    /* Called on the control thread, without library locks held, whenever events were
     * queued for this port.  Must be quick and must not call back into the library's
     * control functions for this port; typically it wakes the owner's thread, which
     * then drains events with vhu_port_next_event().  May be NULL. */
    void (*notify)(void *aux);
    void *aux;
    /* The most guest memory a frontend may have the port map, in bytes: a larger
     * SET_MEM_TABLE loses the frontend its connection.  0: VHU_DEFAULT_MAX_GUEST_MEMORY. */
    uint64_t max_guest_memory;
    /* Server mode: the socket file's permission bits (0: VHU_DEFAULT_SOCKET_MODE) and
     * group (-1: the group of the directory it is in), set whatever the process's
     * umask.  A frontend needs write permission to connect. */
    unsigned int socket_mode;
    int socket_gid;
    /* The largest frame, in bytes, the guest may transmit: a larger one is dropped and
     * counted in its vring's drops, before any packet is allocated for it.  0, or more
     * than VHU_MAX_FRAME_SIZE: VHU_MAX_FRAME_SIZE. */
    uint32_t max_rx_frame_size;
    /* Server mode: how many short connections (ended within a second of being
     * accepted) a second the port takes, after a first VHU_CHURN_BURST of them.  A
     * frontend that connects and hangs up over and over makes the library's control
     * thread and the owner's threads work for every connection; past this rate the
     * port stops accepting until its budget has refilled by one (the kernel's backlog
     * of one turns the rest away) and counts a pause in accept_pauses.  0:
     * VHU_DEFAULT_CHURN_RATE.  UINT32_MAX: no limit. */
    uint32_t churn_rate;
};

#define VHU_DEFAULT_MAX_GUEST_MEMORY (UINT64_C(256) << 30)   /* 256 GiB */
#define VHU_DEFAULT_SOCKET_MODE 0660
/* No frame is larger: without segmentation offloads, nothing a datapath takes is. */
#define VHU_MAX_FRAME_SIZE 65535
#define VHU_DEFAULT_CHURN_RATE 20
#define VHU_CHURN_BURST 16

/* Creates a port and starts listening (server) or connecting (client).  On failure
 * returns NULL and writes a human-readable reason into 'error' (if non-NULL). */
struct vhu_port *vhu_port_create(const struct vhu_port_options *,
                                 char *error, size_t error_size);

/* Disconnects the frontend, closes every fd, unmaps guest memory and, in server mode,
 * removes the socket file.  No data-path call for the port may be in progress or
 * follow. */
void vhu_port_destroy(struct vhu_port *);

/* Pops the oldest pending event into '*event'; returns false when there is none.  At
 * most 256 events wait for a user; later ones are dropped (the notify hook is still
 * called), so a user re-reads vhu_port_get_status() after draining. */
bool vhu_port_next_event(struct vhu_port *, struct vhu_event *event);

enum vhu_conn_state {
    VHU_STATE_DISCONNECTED, /* No frontend (server: listening; client: retrying). */
    VHU_STATE_CONNECTED,    /* A frontend is negotiating. */
    VHU_STATE_READY,        /* At least one queue pair moves packets. */
};

struct vhu_port_status {
    enum vhu_conn_state state;
    uint64_t features;          /* Negotiated virtio features. */
    uint64_t protocol_features; /* Negotiated vhost-user protocol features. */
    uint16_t mtu;               /* From NET_SET_MTU; 0 if the frontend sent none. */
    uint8_t device_status;      /* Last SET_STATUS value. */
    uint32_t num_vrings;        /* Vrings the frontend configured (highest index + 1). */
    /* NUMA node of the guest's memory (of the first ring started on this connection),
     * or -1 while unknown. */
    int numa_node;
    /* Queue pairs whose vring 2q (guest RX) or 2q+1 (guest TX) is usable. */
    uint64_t enabled_rx_queues[VHU_QUEUE_SET_WORDS];
    uint64_t enabled_tx_queues[VHU_QUEUE_SET_WORDS];
    uint64_t connects;          /* Frontend connections since the port was created. */
    uint64_t disconnects;
    /* Times the port stopped accepting for a while: short connections came faster
     * than vhu_port_options.churn_rate. */
    uint64_t accept_pauses;
    /* Why the last connection ended, when it was for an error ("" otherwise). */
    char last_error[160];
};

void vhu_port_get_status(struct vhu_port *, struct vhu_port_status *);

struct vhu_vring_status {
    bool started;        /* Kick received and ring translated. */
    bool enabled;        /* SET_VRING_ENABLE (or implicit without protocol features). */
    uint16_t size;
    uint16_t last_avail_idx;  /* Next avail entry the backend will consume. */
    uint16_t avail_idx;       /* Guest's avail->idx as last read. */
    uint16_t used_idx;        /* Backend's used index (split rings: up to 32 ahead of
                               * used->idx while transmit buffers are held). */
    bool call_fd;             /* The guest gave an eventfd to interrupt it. */
    uint64_t packets;
    uint64_t bytes;
    uint64_t drops;           /* Packets dropped by the library on this vring. */
    uint64_t errors;          /* Malformed descriptor chains seen. */
    uint64_t calls;           /* Interrupts (callfd writes) sent. */
};

/* Returns false if 'vring' is out of range.  Lock-free reads of counters: safe while
 * traffic flows. */
bool vhu_vring_get_status(struct vhu_port *, unsigned vring,
                          struct vhu_vring_status *);

/* ---- Data path ---- */

/* Allocates one packet able to hold 'size' bytes for vhu_dequeue_burst() and returns the
 * caller's handle for it, storing where the bytes go in '*data'.  Returns NULL when no
 * packet can be had: the burst stops there. */
typedef void *vhu_alloc_fn(void *aux, uint32_t size, uint8_t **data);

/* Dequeues up to 'max' packets that the guest sent on queue pair 'qp' (vring 2qp+1),
 * copying each into a packet from 'alloc', whose handles go to 'pkts'.  Returns how many
 * were dequeued; 0 when the vring is not usable.  A descriptor chain that breaks the
 * rules (out of range, looping, outside guest memory...) stops the vring at once; the
 * control thread then disconnects the frontend and logs why.  After a live migration
 * whose frontend sent SEND_RARP, the first call for queue pair 0 once it moves packets
 * also returns, first, a RARP frame from the guest's MAC (counted by the caller only).
 * '*n_dropped' (if non-NULL) is set to the number of frames the guest sent that were
 * dropped rather than returned: empty ones, and those over the port's
 * max_rx_frame_size.  Their buffers went back to the guest.
 *
 * On a split ring whose driver asks for no interrupts (a polling driver, such as
 * DPDK's virtio PMD), a call that takes 'max' chains (packets and dropped frames), each
 * one descriptor of the table, leaves the guest's newest min(32, ring size / 4) buffers
 * unreturned, so that a guest driver that frees its transmitted buffers in bulk when it
 * finds its ring nearly all returned stays in its cheaper mode.  A call that takes
 * fewer returns them, and so do calls that find nothing for 50 microseconds: a caller
 * that stops dequeuing from a ring for a while (a port that is down) should keep
 * calling with 'max' 0.  Disabling or stopping the ring, the dirty log and a disconnect
 * return them too.
 *
 * While the frontend migrates the guest (VHOST_F_LOG_ALL with a SET_LOG_BASE log), every
 * write into guest memory by this call and vhu_enqueue_burst() marks its pages in the
 * frontend's dirty log. */
uint32_t vhu_dequeue_burst(struct vhu_port *, uint16_t qp,
                           vhu_alloc_fn *alloc, void *aux,
                           void **pkts, uint32_t max, uint32_t *n_dropped);

struct vhu_tx_packet {
    const void *data;
    uint32_t size;
};

/* Copies packets into the guest's receive buffers of queue pair 'qp' (vring 2qp) in
 * order, stopping at the first that does not fit in the buffers the guest has posted.
 * Returns how many packets from the front of 'pkts' were consumed; of those,
 * '*n_dropped' (if non-NULL) could never fit any buffer of this guest (larger than its
 * buffers allow) and were dropped rather than block the queue.  Interrupts the guest at
 * most once per call, and only if it asked for it. */
uint32_t vhu_enqueue_burst(struct vhu_port *, uint16_t qp,
                           const struct vhu_tx_packet *pkts, uint32_t n,
                           uint32_t *n_dropped);

/* Ethernet frame bytes that fit in the guest's receive buffers of one packet, as far as
 * the negotiated features let us know (mergeable buffers: 65535). */
uint32_t vhu_port_max_rx_frame(struct vhu_port *);

/* Where the library's log lines go (connects, disconnects and why, refused messages).
 * Default: stderr.  'level' is one of VHU_LOG_*.  A line about one port carries that
 * port's vhu_port_options.aux in 'aux' (NULL for a line about no port), so that a user
 * can rate-limit each port's lines on their own: what a frontend makes us log then
 * cannot use up the budget that another port's lines need.  Called from the control
 * thread, or from a thread in vhu_port_destroy(), never after it for that port. */
enum vhu_log_level { VHU_LOG_ERR, VHU_LOG_WARN, VHU_LOG_INFO, VHU_LOG_DBG };
typedef void vhu_log_fn(enum vhu_log_level level, const char *message, void *aux);
void vhu_set_log_function(vhu_log_fn *);

/* Formats 'features' as a comma-separated list of names into 'buf'. */
void vhu_format_features(uint64_t features, bool protocol, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* VHOSTUSER_VHOSTUSER_H */
