/* Interface options of vhost-user ports.  See netdev-vhostuser-options.h. */

#include <config.h>

#include "netdev-vhostuser-options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "openvswitch/vlog.h"
#include "smap.h"
#include "util.h"

VLOG_DEFINE_THIS_MODULE(netdev_vhostuser_options);

/* The keys a port of either mode understands. */
static const char *const common_keys[] = { "tx-retries-max", NULL };
/* ...and those only a client-mode port understands. */
static const char *const client_keys[] = { "vhost-server-path", NULL };

static bool
key_in(const char *key, const char *const keys[])
{
    for (size_t i = 0; keys[i]; i++) {
        if (!strcmp(key, keys[i])) {
            return true;
        }
    }
    return false;
}

void
vhostuser_options_init(struct vhostuser_options *options)
{
    options->server_path = NULL;
    options->tx_retries_max = VHOSTUSER_TX_RETRIES_DEFAULT;
}

void
vhostuser_options_destroy(struct vhostuser_options *options)
{
    free(options->server_path);
    options->server_path = NULL;
}

char *
vhostuser_socket_path_check(const char *path)
{
    struct sockaddr_un sun;

    if (path[0] != '/') {
        return xasprintf("socket path \"%s\" is not absolute", path);
    }
    if (strlen(path) >= sizeof sun.sun_path) {
        return xasprintf("socket path \"%s\" is longer than the %zu bytes a unix "
                         "socket name can hold", path, sizeof sun.sun_path - 1);
    }
    return NULL;
}

/* Parses options:tx-retries-max into '*retries', which holds the value in effect.
 * An out-of-range value leaves it there and returns why, for status:config_error.
 * OVS-DPDK replaces such a value by the default without a word. */
static char *
parse_tx_retries(const struct smap *args, int *retries)
{
    const char *value = smap_get(args, "tx-retries-max");
    int n;

    if (!value) {
        *retries = VHOSTUSER_TX_RETRIES_DEFAULT;
        return NULL;
    }
    if (!str_to_int(value, 10, &n)
        || n < VHOSTUSER_TX_RETRIES_MIN || n > VHOSTUSER_TX_RETRIES_MAX) {
        return xasprintf("options:tx-retries-max=%s is not an integer between %d "
                         "and %d; tx-retries-max=%d stays in effect", value,
                         VHOSTUSER_TX_RETRIES_MIN, VHOSTUSER_TX_RETRIES_MAX, *retries);
    }
    *retries = n;
    return NULL;
}

int
vhostuser_options_parse(const char *port_name, bool client_mode,
                        const struct smap *args,
                        struct vhostuser_options *options, char **errp,
                        char **warningp)
{
    struct vhostuser_options parsed;
    struct smap_node *node;
    char *error = NULL;

    vhostuser_options_init(&parsed);
    *warningp = NULL;

    parsed.tx_retries_max = options->tx_retries_max;
    char *warning = parse_tx_retries(args, &parsed.tx_retries_max);

    if (client_mode) {
        const char *path = smap_get(args, "vhost-server-path");

        /* A client port without a path would sit there connecting nowhere, which
         * OVS-DPDK accepts silently; say so in the error column instead. */
        if (!path || !path[0]) {
            error = xstrdup("dpdkvhostuserclient ports need "
                            "options:vhost-server-path");
            goto fail;
        }
        error = vhostuser_socket_path_check(path);
        if (error) {
            goto fail;
        }
        parsed.server_path = xstrdup(path);
    }

    SMAP_FOR_EACH (node, args) {
        if (!key_in(node->key, common_keys)
            && !(client_mode && key_in(node->key, client_keys))) {
            VLOG_WARN("%s: ignoring options:%s, which %s ports do not use",
                      port_name, node->key,
                      client_mode ? "dpdkvhostuserclient" : "dpdkvhostuser");
        }
    }

    vhostuser_options_destroy(options);
    *options = parsed;
    if (warning) {
        *warningp = xasprintf("%s: %s", port_name, warning);
        free(warning);
    }
    return 0;

fail:
    free(warning);
    vhostuser_options_destroy(&parsed);
    *errp = xasprintf("%s: %s", port_name, error);
    free(error);
    return EINVAL;
}

void
vhostuser_options_format(const struct vhostuser_options *options,
                         bool client_mode, struct smap *args)
{
    if (client_mode && options->server_path) {
        smap_add(args, "vhost-server-path", options->server_path);
    }
    if (options->tx_retries_max != VHOSTUSER_TX_RETRIES_DEFAULT) {
        smap_add_format(args, "tx-retries-max", "%d", options->tx_retries_max);
    }
}
