/* What the vhost-user ports need from the Open_vSwitch table's other_config.
 *
 * A netdev provider is not shown other_config, but the bridge hands it, on every
 * configuration pass and before any port is configured, to dpdk_init().  Our daemon has
 * no DPDK, so this file provides the functions of OVS's lib/dpdk-stub.c (the linker
 * then never pulls that object in) and takes other_config:vhost-sock-dir from the call.
 *
 * vhost-sock-dir means what it means for OVS-DPDK: a directory relative to the OVS run
 * directory, where server-mode (dpdkvhostuser) ports put their sockets.  Unlike
 * OVS-DPDK, a change takes effect at once: the server ports move their sockets.
 *
 * Ours alone: vhost-sock-mode and vhost-sock-group, the permissions of those sockets
 * whatever the daemon's umask, and vhost-max-guest-memory, how much guest memory one
 * port maps at most.  They apply to sockets and connections made after a change. */

#include <config.h>

#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
static unsigned int sock_mode = VHU_DEFAULT_SOCKET_MODE;  /* vhost-sock-mode. */
static int sock_gid = -1;        /* vhost-sock-group; -1: the directory's group. */
static uint64_t max_guest_memory = VHU_DEFAULT_MAX_GUEST_MEMORY;

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

/* 'dir' without empty or "." components and without a trailing '/', in place: the
 * spellings of one directory ("socks/", "./socks", "." for the run directory itself)
 * give one string, so that changing vhost-sock-dir from one to another moves no
 * socket (a port moving makes its new socket before it leaves the old one, and found
 * its own there). */
static void
normalize_dir(char *dir)
{
    char *out = dir;
    const char *in = dir;

    while (*in) {
        if (in[0] == '/' && (in[1] == '/' || in[1] == '\0')) {
            in++;                                       /* "//" or a trailing '/'. */
        } else if (in[0] == '/' && in[1] == '.' && (in[2] == '/' || in[2] == '\0')) {
            in += 2;                                    /* "/." */
        } else {
            *out++ = *in++;
        }
    }
    if (out == dir) {
        *out++ = '/';
    }
    *out = '\0';
}

/* Whether 'a' and 'b' are one directory reached by two paths (a symlink, a bind
 * mount): moving the sockets from one to the other would make each port's new socket
 * where its old one already is, which fails, and would be retried for good. */
static bool
same_directory(const char *a, const char *b)
{
    struct stat sa, sb;

    return (!stat(a, &sa) && !stat(b, &sb) && S_ISDIR(sa.st_mode)
            && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
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

unsigned int
vhostuser_sock_mode(void)
{
    return sock_mode;
}

int
vhostuser_sock_gid(void)
{
    return sock_gid;
}

uint64_t
vhostuser_max_guest_memory(void)
{
    return max_guest_memory;
}

/* Applies vhost-sock-mode, vhost-sock-group and vhost-max-guest-memory.  A bad value
 * is logged (rate-limited: this runs on every configuration pass) and the previous
 * one kept. */
static void
apply_socket_and_memory_settings(const struct smap *ovs_other_config)
{
    static struct vlog_rate_limit rl = VLOG_RATE_LIMIT_INIT(1, 60);
    const char *mode_s = smap_get_def(ovs_other_config, "vhost-sock-mode", "");
    const char *group_s = smap_get_def(ovs_other_config, "vhost-sock-group", "");
    const char *memory_s = smap_get_def(ovs_other_config, "vhost-max-guest-memory", "");
    char *end;

    if (!mode_s[0]) {
        sock_mode = VHU_DEFAULT_SOCKET_MODE;
    } else {
        unsigned long mode = strtoul(mode_s, &end, 8);

        if (*end || mode > 0777 || (mode & 0600) != 0600) {
            VLOG_ERR_RL(&rl, "other_config:vhost-sock-mode=%s is refused: it must be "
                        "octal permission bits with at least 0600 (the switch's own "
                        "access); keeping %04o", mode_s, sock_mode);
        } else {
            sock_mode = mode;
        }
    }

    if (!group_s[0]) {
        sock_gid = -1;
    } else {
        struct group grp, *result = NULL;
        char buf[4096];
        unsigned long gid = strtoul(group_s, &end, 10);

        if (!*end && gid < INT32_MAX) {
            sock_gid = gid;
        } else if (!getgrnam_r(group_s, &grp, buf, sizeof buf, &result) && result) {
            sock_gid = result->gr_gid;
        } else {
            VLOG_ERR_RL(&rl, "other_config:vhost-sock-group=%s is refused: no such "
                        "group", group_s);
        }
    }

    if (!memory_s[0]) {
        max_guest_memory = VHU_DEFAULT_MAX_GUEST_MEMORY;
    } else {
        unsigned long long mib = strtoull(memory_s, &end, 10);

        if (*end || !mib || mib > (UINT64_C(1) << 44)) {
            VLOG_ERR_RL(&rl, "other_config:vhost-max-guest-memory=%s is refused: it "
                        "must be a number of MiB from 1 to 2^44", memory_s);
        } else {
            max_guest_memory = (uint64_t) mib << 20;
        }
    }
}

void
dpdk_init(const struct smap *ovs_other_config)
{
    const char *setting = smap_get_def(ovs_other_config, "vhost-sock-dir", "");

    apply_socket_and_memory_settings(ovs_other_config);

    if (smap_get_bool(ovs_other_config, "dpdk-init", false)) {
        static struct ovsthread_once once = OVSTHREAD_ONCE_INITIALIZER;

        if (ovsthread_once_start(&once)) {
            VLOG_INFO("other_config:dpdk-init is ignored: this ovs-vswitchd has no "
                      "DPDK, and its vhost-user ports do not need it");
            ovsthread_once_done(&once);
        }
    }

    if (smap_get_bool(ovs_other_config, "userspace-tso-enable", false)) {
        static struct ovsthread_once once = OVSTHREAD_ONCE_INITIALIZER;

        if (ovsthread_once_start(&once)) {
            /* OVS 3.1's netdev_send_prepare_packet() drops what needs an offload the
             * egress port lacks, counted in a coverage counter only. */
            VLOG_WARN("other_config:userspace-tso-enable is set, but vhost-user ports "
                      "offer no TSO or checksum offload: the switch drops the packets "
                      "that tap and internal ports receive with those offloads before "
                      "they reach a vhost-user port (coverage counter "
                      "netdev_send_prepare_drops)");
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
    char *dir = setting[0] ? xasprintf("%s/%s", ovs_rundir(), setting)
                           : xstrdup(ovs_rundir());
    normalize_dir(dir);
    free(sock_dir_setting);
    sock_dir_setting = xstrdup(setting);
    if (sock_dir && !strcmp(dir, sock_dir)) {
        free(dir);      /* Another spelling of the same directory: nothing moves. */
        return;
    }
    if (sock_dir && same_directory(dir, sock_dir)) {
        VLOG_INFO("other_config:vhost-sock-dir=%s is %s by another path: vhost-user "
                  "server sockets stay where they are", setting, sock_dir);
        free(dir);
        return;
    }
    free(sock_dir);
    sock_dir = dir;
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
