/* The Interface options of vhost-user ports: parsing and validation.
 *
 * Kept apart from the netdev class so that what a port accepts, rejects and reports
 * back is decided in one place, in the terms the database uses. */
#ifndef NETDEV_VHOSTUSER_OPTIONS_H
#define NETDEV_VHOSTUSER_OPTIONS_H 1

#include <stdbool.h>

struct smap;

/* Packets that do not fit the guest's receive queue are retried this many times, then
 * dropped.  Same range and default as OVS-DPDK's options:tx-retries-max. */
#define VHOSTUSER_TX_RETRIES_MIN 0
#define VHOSTUSER_TX_RETRIES_MAX 32
#define VHOSTUSER_TX_RETRIES_DEFAULT 8

struct vhostuser_options {
    /* Client mode only: the socket QEMU listens on (options:vhost-server-path).  In
     * server mode the socket path follows from the port's name instead. */
    char *server_path;
    int tx_retries_max;
};

void vhostuser_options_init(struct vhostuser_options *);
void vhostuser_options_destroy(struct vhostuser_options *);

/* Parses 'args' (an Interface's options column) for a port named 'port_name', in
 * client mode if 'client_mode'.  On success returns 0 and replaces '*options'.  On
 * failure returns a positive errno value, leaves '*options' alone and stores in
 * '*errp' a message for the Interface's error column, which the caller frees.
 *
 * Only what leaves the port nothing to do fails (a client with no usable server
 * path).  A value that is merely out of range, such as tx-retries-max=99, keeps the
 * value '*options' had (the default for a new port), and the reason is stored in
 * '*warningp' for status:config_error: a port refused for a typo made while it was in
 * use would vanish, with its guest's network, at the daemon's next restart.  '*warningp'
 * is NULL when there is nothing to say; the caller frees it.
 *
 * Keys this port does not know are reported in the log, not refused: tools that drive
 * OVS-DPDK set some (n_rxq, for one) on every port. */
int vhostuser_options_parse(const char *port_name, bool client_mode,
                            const struct smap *args,
                            struct vhostuser_options *options, char **errp,
                            char **warningp);

/* Adds the options in effect to 'args', as get_config reports them. */
void vhostuser_options_format(const struct vhostuser_options *, bool client_mode,
                              struct smap *args);

/* Checks that 'path' can name a unix socket: absolute (the daemon runs in "/" once
 * detached, so a relative path would not mean what the user meant) and short enough
 * for sun_path.  Returns NULL if so, else a message the caller frees. */
char *vhostuser_socket_path_check(const char *path);

#endif /* netdev-vhostuser-options.h */
