/* ovs-appctl vhostuser/show [PORT]: the state of each vhost-user port and its vrings,
 * for diagnosing a guest that does not pass traffic. */

#include <config.h>

#include "netdev-vhostuser-private.h"

#include "openvswitch/dynamic-string.h"
#include "unixctl.h"
#include "util.h"

static const char *
state_name(enum vhu_conn_state state)
{
    switch (state) {
    case VHU_STATE_READY:
        return "ready";
    case VHU_STATE_CONNECTED:
        return "connected, not ready";
    default:
        return "disconnected";
    }
}

static void
show_port(struct ds *out, struct netdev_vhostuser *dev)
    OVS_REQUIRES(dev->mutex)
{
    struct vhu_port_status status;
    char names[512];

    /* The path served; while a move to a new one fails, the old. */
    const char *socket = dev->port ? dev->port_path : dev->socket_path;

    ds_put_format(out, "%s: %s, socket %s\n", netdev_get_name(&dev->up),
                  dev->client_mode ? "client" : "server", socket ? socket : "(none)");
    if (dev->port && dev->socket_error) {
        ds_put_format(out, "  cannot move to %s: %s\n",
                      dev->socket_path ? dev->socket_path : "(none)", dev->socket_error);
    }
    if (!dev->port) {
        ds_put_format(out, "  error: %s\n",
                      dev->socket_error ? dev->socket_error : "no socket path");
        return;
    }
    vhu_port_get_status(dev->port, &status);
    ds_put_format(out, "  state: %s, connects %"PRIu64", disconnects %"PRIu64"\n",
                  state_name(status.state), status.connects, status.disconnects);
    if (status.accept_pauses) {
        ds_put_format(out, "  accept pauses: %"PRIu64" (short connections came faster "
                      "than %d a second)\n", status.accept_pauses, VHU_DEFAULT_CHURN_RATE);
    }
    if (status.last_error[0]) {
        ds_put_format(out, "  last error: %s\n", status.last_error);
    }
    vhu_format_features(status.features, false, names, sizeof names);
    ds_put_format(out, "  features: %s\n", names);
    vhu_format_features(status.protocol_features, true, names, sizeof names);
    ds_put_format(out, "  protocol features: %s\n", names);
    ds_put_format(out, "  OVS queues: rx %d, tx %d; tx queue -> guest queue pair:",
                  netdev_n_rxq(&dev->up), netdev_n_txq(&dev->up));
    for (int q = 0; q < netdev_n_txq(&dev->up) && q < dev->n_queues; q++) {
        int map;

        atomic_read_relaxed(&dev->queues[q].tx_map, &map);
        ds_put_format(out, " %d->%d", q, map);
    }
    ds_put_char(out, '\n');
    for (unsigned i = 0; i < status.num_vrings && i < VHU_MAX_VRINGS; i++) {
        struct vhu_vring_status vs;

        if (!vhu_vring_get_status(dev->port, i, &vs)) {
            continue;
        }
        ds_put_format(out, "  vring %u (guest %s %u): %s%s, size %u, avail %u, "
                      "next %u, used %u, packets %"PRIu64", bytes %"PRIu64", "
                      "drops %"PRIu64", errors %"PRIu64", calls %"PRIu64"%s\n",
                      i, i % 2 ? "tx" : "rx", i / 2,
                      vs.started ? "started" : "stopped",
                      vs.enabled ? ", enabled" : ", disabled", vs.size,
                      vs.avail_idx, vs.last_avail_idx, vs.used_idx, vs.packets,
                      vs.bytes, vs.drops, vs.errors, vs.calls,
                      vs.call_fd ? "" : " (no call fd: guest polls)");
    }
}

static void
vhostuser_show(struct unixctl_conn *conn, int argc, const char *argv[],
               void *aux OVS_UNUSED)
{
    struct ds out = DS_EMPTY_INITIALIZER;
    struct netdev_vhostuser *dev;
    bool found = false;

    ovs_mutex_lock(&vhostuser_ports_mutex);
    LIST_FOR_EACH (dev, list_node, &vhostuser_ports) {
        if (argc > 1 && strcmp(argv[1], netdev_get_name(&dev->up))) {
            continue;
        }
        found = true;
        ovs_mutex_lock(&dev->mutex);
        show_port(&out, dev);
        ovs_mutex_unlock(&dev->mutex);
    }
    ovs_mutex_unlock(&vhostuser_ports_mutex);

    if (argc > 1 && !found) {
        unixctl_command_reply_error(conn, "no such vhost-user port");
    } else {
        unixctl_command_reply(conn, ds_cstr(&out));
    }
    ds_destroy(&out);
}

void
netdev_vhostuser_appctl_register(void)
{
    unixctl_command_register("vhostuser/show", "[port]", 0, 1, vhostuser_show, NULL);
}
