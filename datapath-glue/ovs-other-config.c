/* What the vhost-user ports need from the Open_vSwitch table's other_config.
 *
 * A netdev provider is not shown other_config, but the bridge hands it, on every
 * configuration pass and before any port is configured, to dpdk_init().  Our daemon has
 * no DPDK, so this file provides the functions of OVS's lib/dpdk-stub.c (the linker
 * then never pulls that object in) and takes other_config:vhost-sock-dir from the call.
 *
 * vhost-sock-dir means what it means for OVS-DPDK: a directory relative to the OVS run
 * directory, where server-mode (dpdkvhostuser) ports put their sockets.  Unlike
 * OVS-DPDK, a change takes effect at once: the server ports move their sockets. */

#include <config.h>

#include <string.h>

#include "dirs.h"
#include "dpdk.h"
#include "netdev-vhostuser-private.h"
#include "openvswitch/vlog.h"
#include "smap.h"
#include "util.h"
#include "vswitch-idl.h"

VLOG_DEFINE_THIS_MODULE(vhostuser_config);

static char *sock_dir_setting;   /* other_config:vhost-sock-dir as applied. */
static char *sock_dir;           /* The absolute directory it names. */

static bool
has_dotdot_component(const char *path)
{
    const char *p = path;

    while ((p = strstr(p, ".."))) {
        bool starts = p == path || p[-1] == '/';
        bool ends = p[2] == '\0' || p[2] == '/';

        if (starts && ends) {
            return true;
        }
        p += 2;
    }
    return false;
}

const char *
vhostuser_sock_dir(void)
{
    return sock_dir ? sock_dir : ovs_rundir();
}

static void
request_server_ports_reconfigure(void)
{
    struct netdev_vhostuser *dev;

    ovs_mutex_lock(&vhostuser_ports_mutex);
    LIST_FOR_EACH (dev, list_node, &vhostuser_ports) {
        if (!dev->client_mode) {
            netdev_request_reconfigure(&dev->up);
        }
    }
    ovs_mutex_unlock(&vhostuser_ports_mutex);
}

void
dpdk_init(const struct smap *ovs_other_config)
{
    const char *setting = smap_get_def(ovs_other_config, "vhost-sock-dir", "");

    if (smap_get_bool(ovs_other_config, "dpdk-init", false)) {
        static struct ovsthread_once once = OVSTHREAD_ONCE_INITIALIZER;

        if (ovsthread_once_start(&once)) {
            VLOG_INFO("other_config:dpdk-init is ignored: this ovs-vswitchd has no "
                      "DPDK, and its vhost-user ports do not need it");
            ovsthread_once_done(&once);
        }
    }

    if (sock_dir_setting && !strcmp(setting, sock_dir_setting)) {
        return;
    }
    if (has_dotdot_component(setting)) {
        static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(1, 60);

        VLOG_ERR_RL(&rl, "other_config:vhost-sock-dir=%s is refused: it must not "
                    "contain a '..' component; vhost-user sockets stay in %s",
                    setting, vhostuser_sock_dir());
        return;
    }

    bool first = sock_dir_setting == NULL;
    free(sock_dir_setting);
    free(sock_dir);
    sock_dir_setting = xstrdup(setting);
    sock_dir = setting[0] ? xasprintf("%s/%s", ovs_rundir(), setting)
                          : xstrdup(ovs_rundir());
    if (!first || setting[0]) {
        VLOG_INFO("vhost-user server sockets go in %s", sock_dir);
    }
    request_server_ports_reconfigure();
}

bool
dpdk_attach_thread(unsigned cpu OVS_UNUSED)
{
    return false;
}

void
dpdk_detach_thread(void)
{
}

bool
dpdk_available(void)
{
    return false;
}

void
print_dpdk_version(void)
{
}

void
dpdk_status(const struct ovsrec_open_vswitch *cfg)
{
    if (cfg) {
        ovsrec_open_vswitch_set_dpdk_initialized(cfg, false);
        ovsrec_open_vswitch_set_dpdk_version(cfg, "none");
    }
}
