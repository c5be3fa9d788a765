"""Guests started by libvirt on our ovs-vswitchd's vhost-user ports.

Debian's libvirtd runs QEMU (TCG, domain type 'qemu') as its unprivileged user
libvirt-qemu, from domains defined with the <interface type='vhostuser'> Nova writes:
guest A in mode 'client' on a dpdkvhostuser port (the switch listens at
<sockdir>/vhu0), guest B in mode 'server' on a dpdkvhostuserclient port (QEMU listens
at <sockdir>/vhu1, the port's options:vhost-server-path).  The socket directory is
the one utilities/ovs-vhostuser-setup-sockdir prepares, in the run directory of a
private OVS (tests/integration/ovs_sandbox.py); libvirt's own ovs-vsctl calls reach
that OVS through OVS_RUNDIR (libvirt_guest.py).  Guest memory is 2 MiB huge pages
with memAccess='shared', as Nova gives an instance with hw:mem_page_size.

The scenario (test_nova_vhostuser_domains):
  1. both guests boot and ping each other through the netdev bridge's NORMAL
     action; each guest's eth0 counters equal its port's Interface:statistics, and
     `virsh domifstat` equals Interface:statistics exactly;
  2. `virsh destroy` and `virsh start` of both: they ping each other again;
  3. ovs-vswitchd stopped and started again, the database kept: B's port
     (dpdkvhostuserclient) reconnects to QEMU by itself; A's QEMU, a vhost-user
     client without a reconnect setting (Nova writes none), stays disconnected, as
     with OVS-DPDK's dpdkvhostuser ports, until the domain is restarted (`virsh
     destroy`, `virsh start`, as a hard reboot in Nova does); then they ping each
     other again and domifstat still equals Interface:statistics.

libvirtd and virtlogd are started by the test when they do not run, and stopped at
the end; huge pages are reserved when too few are free, and given back.  Domains are
destroyed and undefined even when the test fails.

Run by ctest (label libvirt); by hand, from tests/libvirt/:
    OVS_VHOSTUSER_DAEMON=build/bin/ovs-vswitchd-vhostuser /usr/bin/python3 -B \\
        -m unittest -v test_libvirt.LibvirtTest.test_nova_vhostuser_domains
"""

import contextlib
import grp
import os
import shutil
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "guests"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import test_ovs_guests as harness  # noqa: E402
from libvirt_guest import (HugePages, LibvirtDaemon, LibvirtGuest,  # noqa: E402
                           VhostUserInterface, remove_leftover_domains, virsh)
from ovs_sandbox import OvsSandbox  # noqa: E402

SETUP_SOCKDIR = os.path.join(SOURCE_ROOT, "utilities", "ovs-vhostuser-setup-sockdir")
SOCKDIR_NAME = "vhost-sockets"
GUEST_MEMORY_MB = 256
# `virsh domifstat` fields and the Interface:statistics keys libvirt reads them from
# (libvirt's virNetDevOpenvswitchInterfaceParseStats): swapped, so that domifstat
# tells what the guest received and sent, as it does for a tap device.
DOMIFSTAT_KEYS = {"rx_bytes": "tx_bytes", "rx_packets": "tx_packets",
                  "rx_errs": "tx_errors", "rx_drop": "tx_dropped",
                  "tx_bytes": "rx_bytes", "tx_packets": "rx_packets",
                  "tx_errs": "rx_errors", "tx_drop": "rx_dropped"}


def domifstat(domain, device):
    """virsh domifstat DOMAIN DEVICE as {field: int}."""
    stats = {}
    for line in virsh("domifstat", domain, device).splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == device:
            stats[words[1]] = int(words[2])
    return stats


class LibvirtTest(harness.OvsGuestTest):

    def setUp(self):
        super().setUp()
        if not shutil.which("virsh"):
            self.fail("virsh is not installed (utilities/install-deps.sh installs "
                      "libvirt-clients)")

    @contextlib.contextmanager
    def libvirt_sandbox(self):
        """A private OVS whose run directory is laid out as on a compute node, the
        socket directory prepared by ovs-vhostuser-setup-sockdir, and libvirtd.
        Yields the OvsSandbox; self.guests are undefined on the way out."""
        keep = bool(os.environ.get("VHU_KEEP_LOGS"))
        root = tempfile.mkdtemp(prefix="ovs-vhu-lv-", dir="/tmp")
        # mkdtemp makes it 0700; OVS's run directory (/var/run/openvswitch) is 0755,
        # and QEMU, as libvirt-qemu, must get through to the socket directory in it.
        os.chmod(root, 0o755)
        rundir = os.path.join(root, "run")
        config = {"pmd-cpu-mask": "0x1", "pmd-maxsleep": harness.PMD_MAXSLEEP_US}
        hugepages = HugePages(2 * GUEST_MEMORY_MB // 2)
        daemon = LibvirtDaemon(rundir, root)
        ok = False
        try:
            hugepages.reserve()
            with OvsSandbox(harness.daemon_path(), workdir=root, other_config=config,
                            keep=True) as ovs:
                self.ovs = ovs
                self.log("sandbox up in " + root)
                out = ovs.run([SETUP_SOCKDIR, "--rundir", ovs.rundir,
                               "--dir", SOCKDIR_NAME])
                self.log("ovs-vhostuser-setup-sockdir: " + out.strip().replace("\n", "; "))
                daemon.start()
                daemon.start_reaper(hugepages)
                self.log("libvirtd ready (started here: %s)"
                         % ([n for n, _ in daemon.started] or "none"))
                remove_leftover_domains()
                ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0",
                          "datapath_type=netdev", "other-config:hwaddr=" + harness.HOST_MAC)
                try:
                    yield ovs
                    self.assertEqual(ovs.log_lines(), [], "errors in ovs-vswitchd.log")
                    # With libvirt's guests still running: the directory and the
                    # sockets in it (the switch's and QEMU's) pass the helper's check.
                    check = ovs.run([SETUP_SOCKDIR, "--rundir", ovs.rundir, "--dir",
                                     SOCKDIR_NAME, "--check"])
                    self.log("ovs-vhostuser-setup-sockdir --check:\n" + check)
                except BaseException:
                    self.save_guest_dmesg(root)
                    raise
                finally:
                    self.undefine_guests(root)
                    self.ovs = None
            ok = True
        finally:
            self.undefine_guests(root)
            stopped = daemon.stop()
            if stopped:
                self.log("stopped " + ", ".join(stopped))
            hugepages.restore()
            if ok and not keep:
                shutil.rmtree(root, ignore_errors=True)
            else:
                print("logs kept in " + root, file=sys.stderr)

    def undefine_guests(self, directory):
        for guest in self.guests:
            try:
                with open(os.path.join(directory, guest.name + ".qemu.log"), "w") as f:
                    f.write(guest.qemu_log())
                guest.undefine()
            except Exception as e:  # Cleaning up the others matters more.
                print("undefining %s: %s" % (guest.domain, e), file=sys.stderr)
        self.guests = []

    def define(self, ovs, name, ip, interfaces):
        guest = LibvirtGuest(self.image.get(), interfaces, ovs.root, name,
                             kernel_args=["vhu.ip=%s%d/24" % (harness.SUBNET_PREFIX, ip)],
                             memory_mb=GUEST_MEMORY_MB)
        self.guests.append(guest)
        guest.define()
        return guest

    def start_guests(self, guests):
        for guest in guests:
            guest.start()
        self.log("virsh start: " + ", ".join(g.domain for g in guests))
        for guest in guests:
            seconds = guest.wait_ready()
            self.log("%s: shell up %.1f s after virsh start" % (guest.name, seconds))
            guest.run(" && ".join(harness.arp_tuning_commands("eth0")))
        for guest in guests:
            self.wait_carrier(guest)

    def ping_both_ways(self, a, b, what):
        self.assertPingOk(self.guest_ping(a, harness.SUBNET_PREFIX + "2", count=5), 5,
                          "a pings b " + what)
        self.assertPingOk(self.guest_ping(b, harness.SUBNET_PREFIX + "1", count=5), 5,
                          "b pings a " + what)

    def assertDomifstatAgrees(self, guest, port, timeout=12):
        """virsh domifstat of the guest's interface equals the port's
        Interface:statistics, receive and transmit swapped (libvirt reads them
        through ovs-vsctl).  Read until two reads of the database around one of
        domifstat's are equal, and domifstat matches them."""
        deadline = time.monotonic() + timeout
        while True:
            before = harness.port_stats(self.ovs, port)
            theirs = domifstat(guest.domain, port)
            after = harness.port_stats(self.ovs, port)
            expected = {field: before.get(key, 0) for field, key in DOMIFSTAT_KEYS.items()}
            if before == after and theirs == expected:
                return theirs
            if time.monotonic() > deadline:
                self.assertEqual(theirs, expected,
                                 "virsh domifstat %s %s against Interface:statistics"
                                 % (guest.domain, port))
            time.sleep(0.5)

    def test_nova_vhostuser_domains(self):
        with self.libvirt_sandbox() as ovs:
            sockdir = os.path.join(ovs.rundir, SOCKDIR_NAME)
            self.add_port(ovs, "vhu0", ofport=1)
            self.add_port(ovs, "vhu1", kind="dpdkvhostuserclient", ofport=2,
                          **{"vhost-server-path": os.path.join(sockdir, "vhu1")})
            a = self.define(ovs, "a", 1, [VhostUserInterface(
                os.path.join(sockdir, "vhu0"), "client", "fa:16:3e:00:00:01", "vhu0")])
            b = self.define(ovs, "b", 2, [VhostUserInterface(
                os.path.join(sockdir, "vhu1"), "server", "fa:16:3e:00:00:02", "vhu1")])

            # 1. Boot, ping, counters.
            self.start_guests([a, b])
            for port in ("vhu0", "vhu1"):
                self.wait_link(ovs, port)
            # Unprivileged, and in the group the socket directory (and so the
            # switch's sockets) belong to.
            sockgroup = grp.getgrgid(os.stat(sockdir).st_gid).gr_name
            for guest in (a, b):
                user, group, groups = guest.qemu_credentials()
                self.log("%s: QEMU runs as user %s, group %s, groups %s"
                         % (guest.name, user, group, groups))
                self.assertEqual(user, "libvirt-qemu")
                self.assertIn(sockgroup, [group] + groups)
            self.assertPingOk(self.guest_ping(a, harness.SUBNET_PREFIX + "2", count=10),
                              10, "a pings b")
            self.assertPingOk(self.guest_ping(b, harness.SUBNET_PREFIX + "1", count=10),
                              10, "b pings a")
            # A asks for an address nobody has: its ARP requests reach B and br0
            # unanswered, so what the ports received and sent differ, and a swap of
            # receive and transmit counters anywhere would show.
            out = a.run("arping -c 3 -I eth0 %s77" % harness.SUBNET_PREFIX, check=False)
            self.assertIn("Received 0 response", out)
            stats = self.assertCountersAgree(ovs, [(a, "vhu0"), (b, "vhu1")])
            self.assertGreaterEqual(stats["vhu0"]["rx_packets"], 23)
            self.assertGreater(stats["vhu0"]["rx_packets"], stats["vhu0"]["tx_packets"])
            self.assertEqual(stats["vhu0"]["rx_packets"], stats["vhu1"]["tx_packets"])
            for guest, port in ((a, "vhu0"), (b, "vhu1")):
                seen = self.assertDomifstatAgrees(guest, port)
                self.log("virsh domifstat %s %s: %s" % (guest.domain, port, seen))
                # The guest's own view, as for a tap device.
                eth0 = guest.interface_stats("eth0")
                self.assertEqual({k: seen[k] for k in ("rx_bytes", "rx_packets",
                                                       "tx_bytes", "tx_packets")},
                                 {k: eth0[k] for k in ("rx_bytes", "rx_packets",
                                                       "tx_bytes", "tx_packets")},
                                 "virsh domifstat %s against its eth0" % guest.domain)

            # 2. virsh destroy, virsh start.
            for guest in (a, b):
                guest.destroy()
            for port in ("vhu0", "vhu1"):
                self.wait_link(ovs, port, "down")
            self.start_guests([a, b])
            for port in ("vhu0", "vhu1"):
                self.wait_link(ovs, port)
            self.ping_both_ways(a, b, "after virsh destroy and start")

            # 3. The switch restarts; the database stays.
            ovs.appctl("ovs-vswitchd", "exit")
            self.assertEqual(ovs.vswitchd.wait(timeout=30), 0)
            ovs.vswitchd = None
            ovs.start_vswitchd()
            self.log("ovs-vswitchd restarted")
            self.wait_port_up(ovs, "vhu1")
            self.wait_link(ovs, "vhu1")
            # QEMU as a vhost-user client does not reconnect without <reconnect>,
            # which Nova does not write: A's port stays down until A restarts.
            self.assertEqual(ovs.get("Interface", "vhu0", "link_state"), "down")
            a.destroy()
            self.start_guests([a])
            self.wait_link(ovs, "vhu0")
            self.ping_both_ways(a, b, "after the switch restarted")
            for guest, port in ((a, "vhu0"), (b, "vhu1")):
                self.assertDomifstatAgrees(guest, port)


# The tests OvsGuestTest has are its own: LibvirtTest runs only its scenario.
for _name in dir(harness.OvsGuestTest):
    if _name.startswith("test") and _name not in LibvirtTest.__dict__:
        setattr(LibvirtTest, _name, None)


if __name__ == "__main__":
    unittest.main()
