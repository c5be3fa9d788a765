/* Registration of the vhost-user netdev classes with Open vSwitch.
 *
 * Our ovs-vswitchd is OVS's own, with these classes added before OVS's main() runs:
 * "dpdkvhostuser" (the switch listens on a socket named after the port) and
 * "dpdkvhostuserclient" (the switch connects to options:vhost-server-path).  The type
 * names are those of OVS-DPDK so that existing configuration, libvirt domain XML and
 * OpenStack's os-vif plug the same ports without change. */
#ifndef NETDEV_VHOSTUSER_PROVIDER_H
#define NETDEV_VHOSTUSER_PROVIDER_H 1

/* Registers both classes with netdev_register_provider().  Call once, before OVS's main
 * (it may fork to daemonize, so nothing here starts threads). */
void netdev_vhostuser_register(void);

#endif /* netdev-vhostuser-provider.h */
