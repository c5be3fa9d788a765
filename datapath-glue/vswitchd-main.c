/* main() of ovs-vswitchd-vhostuser: Open vSwitch's ovs-vswitchd with the vhost-user
 * netdev classes added.
 *
 * OVS offers no way to load a netdev provider into a running ovs-vswitchd, so we link
 * our own: OVS's vswitchd objects, with OVS's main() compiled as ovs_vswitchd_main()
 * (see build-ovs.sh), behind this main(), which registers our classes first.  From
 * then on it is OVS's main() that runs, with OVS's command line, unchanged. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netdev-vhostuser-provider.h"

/* OVS's main(), renamed when build-ovs.sh compiled vswitchd/ovs-vswitchd.c. */
int ovs_vswitchd_main(int argc, char *argv[]);

/* Returns a copy of 'argv0' whose last component is "ovs-vswitchd".
 *
 * OVS names its pidfile, control socket and log file after argv[0]'s basename, and
 * ovs-appctl, ovs-ctl and every tool built on them look for "ovs-vswitchd.pid" and
 * "ovs-vswitchd.<pid>.ctl".  Presenting ourselves under that name keeps them working
 * whatever this binary is called.  The copy is on the heap, not a literal, because
 * OVS may later write the process title over argv[0]'s bytes. */
static char *
argv0_as_ovs_vswitchd(const char *argv0)
{
    static const char name[] = "ovs-vswitchd";
    const char *slash = strrchr(argv0, '/');
    size_t dir_len = slash ? (size_t) (slash - argv0 + 1) : 0;
    char *copy = malloc(dir_len + sizeof name);

    if (!copy) {
        perror("ovs-vswitchd");
        exit(EXIT_FAILURE);
    }
    memcpy(copy, argv0, dir_len);
    memcpy(copy + dir_len, name, sizeof name);
    return copy;
}

int
main(int argc, char *argv[])
{
    /* Before OVS's main(), which opens the database and creates the configured
     * ports: the classes must exist by then. */
    netdev_vhostuser_register();

    if (argc > 0 && argv[0]) {
        argv[0] = argv0_as_ovs_vswitchd(argv[0]);
    }
    return ovs_vswitchd_main(argc, argv);
}
