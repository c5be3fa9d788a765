"""Live migration of a guest from one OVN chassis to the other, traffic following it.

test_ovn.py's two chassis (network namespaces, each with our ovs-vswitchd and
ovn-controller, Geneve over an AF_XDP veth underlay) and OVN central.  vm-a boots on
chassis a (dpdkvhostuser port vm-a, logical port lsp-vm-a), vm-b on chassis b
(dpdkvhostuserclient port vm-b); vm-b pings vm-a ten times a second while vm-a moves
to chassis b, driven as Nova and Neutron's OVN driver drive it:

  1. pre-live-migration: Neutron lets the logical port be bound on both chassis,
     the destination blocked until the guest shows up there
     (Logical_Switch_Port options:requested-chassis=chassis-a,chassis-b and
     options:activation-strategy=rarp, OVN 23.03);
  2. os-vif plugs the destination port on chassis b: a dpdkvhostuser port vm-a-dst
     with external_ids:iface-id=lsp-vm-a; ovn-controller there binds it as the
     port's additional chassis;
  3. QEMU with `-incoming` on chassis b connects to vm-a-dst; QMP migrate.  The
     guest's card has guest_announce=off, so at the switch-over QEMU asks our
     backend for SEND_RARP, vm-a-dst injects a RARP from vm-a's MAC, and
     ovn-controller on b activates the port there (Port_Binding
     options:additional-chassis-activated);
  4. post-live-migration: the source QEMU quits (vm-a goes down on chassis a),
     Neutron binds the port to chassis b alone (requested-chassis=chassis-b, no
     activation strategy), os-vif deletes vm-a on chassis a.

Checked: the migration completes; at most MAX_LOST_PINGS of vm-b's pings are lost
and none duplicated; the Port_Binding moves to chassis b (no additional chassis
left) and the logical port is up; vm-a on chassis a goes down; then pings both ways
between vm-b and vm-a flow within chassis b, counted at vm-a-dst and vm-b (OpenFlow
port counters, exact against the guests' eth0) and not on the tunnel.  Prints
MIGRATION-RESULT {json} (QEMU's total time and downtime, lost pings, the RARP
activation's delay).

Run by ctest (ovn.live_migration); by hand, from tests/ovn/:
    OVS_VHOSTUSER_DAEMON=../../build/bin/ovs-vswitchd-vhostuser /usr/bin/python3 -B \\
        -m unittest -v test_ovn_migration
"""

import os
import re
import time
import types
import unittest

import test_ovn
from test_ovn import GUEST_MTU
from qemu_guest import VhostUserNic
import test_migration

A_IP = "10.0.0.1"
B_IP = "10.0.0.2"
DST_PORT = "vm-a-dst"
# The guests' RAM is local: no bandwidth limit worth QEMU's default 32 MiB/s.
MIGRATE_PARAMETERS = {"max-bandwidth": 1 << 30}
# Lost pings allowed (10 a second): the downtime, the RARP's way to ovn-controller
# and the flows it installs on chassis b.
MAX_LOST_PINGS = 20
# Pings after the move, each way.
AFTER_PINGS = 20


def ofport_stats(ovs, port, bridge="br-int"):
    """A port's counters as OpenFlow reads them now (the database's statistics are
    up to 5 s old): {rx_packets, rx_bytes, tx_packets, tx_bytes}."""
    out = ovs.ofctl("dump-ports", bridge, port)
    stats = {}
    for direction in ("rx", "tx"):
        m = re.search(r"%s pkts=(\d+), bytes=(\d+)" % direction, out)
        if not m:
            raise AssertionError("dump-ports %s: %s" % (port, out))
        stats[direction + "_packets"] = int(m.group(1))
        stats[direction + "_bytes"] = int(m.group(2))
    return stats


class OvnMigrationTest(test_ovn.OvnTest, test_migration.MigrationTest):
    """test_ovn's topology and helpers with test_migration's (pings in the
    background, migrate, report); only the test below is this module's."""

    def binding_options(self, central, lsp):
        return central.sbctl("--bare", "--columns=options", "find", "Port_Binding",
                             "logical_port=" + lsp)

    def test_live_migration(self):
        with self.topology() as (central, a, b):
            self.start_chassis(central, a, b)
            # Neutron binds the port to its host: requested-chassis.
            self.add_logical_switch(central, (a, b), options={
                a.lsp: {"requested-chassis": a.system_id}})
            b_socket = os.path.join(b.root, "vm-b.sock")
            # guest_announce=off: QEMU announces the guest through SEND_RARP, the
            # RARP that activation-strategy=rarp waits for.
            nics = {"a": VhostUserNic(os.path.join(a.ovs.rundir, a.port),
                                      mac=a.guest_mac,
                                      device_options={"guest_announce": "off"}),
                    "b": VhostUserNic(b_socket, qemu_listens=True, mac=b.guest_mac)}
            a.add_vm_port()
            b.add_vm_port(server_path=b_socket)
            ga, gb = self.boot(types.SimpleNamespace(root=self.root), [
                {"name": "vm-" + ch.name, "ip": ch.guest_ip, "mtu": GUEST_MTU,
                 "nics": [nics[ch.name]]} for ch in (a, b)])
            for guest in (ga, gb):
                self.wait_carrier(guest)
            for ch in (a, b):
                self.wait_link(ch.ovs, ch.port)
                self.wait_bound(central, ch, ch.lsp, ch.port)
            central.nbctl("--wait=hv", "sync")
            self.find_tunnels(a, b)
            self.ping_until_answered(gb, A_IP)
            self.assertPingOk(self.guest_ping(gb, A_IP, count=5), 5,
                              "vm-b pings vm-a across the tunnel")

            # 1. Pre-live-migration: both chassis may bind the port; the
            # destination waits for a RARP.
            central.nbctl("set", "Logical_Switch_Port", a.lsp,
                          'options:requested-chassis="%s,%s"' % (a.system_id,
                                                                 b.system_id),
                          "options:activation-strategy=rarp")
            # 2. The destination port on chassis b.
            b.ovs.vsctl("add-port", "br-int", DST_PORT, "--", "set", "Interface",
                        DST_PORT, "type=dpdkvhostuser",
                        "external_ids:iface-id=" + a.lsp,
                        "external_ids:attached-mac=" + a.guest_mac,
                        "external_ids:iface-status=active")
            self.wait(lambda: self.binding_chassis(central, a.lsp,
                                                   "additional_chassis")
                      == [b.system_id], "chassis b as lsp-vm-a's additional chassis")
            self.assertEqual(self.binding_chassis(central, a.lsp), [a.system_id])
            central.nbctl("--wait=hv", "sync")
            # 3. The destination QEMU, and the move.
            target = self.start_target(
                b.ovs, ga, VhostUserNic(os.path.join(b.ovs.rundir, DST_PORT),
                                        device_options={"guest_announce": "off"}),
                DST_PORT)
            self.start_pings(gb, A_IP)
            time.sleep(2)
            info = self.migrate(b.ovs, ga, target, parameters=MIGRATE_PARAMETERS)
            completed = time.monotonic()
            self.wait(lambda: "additional-chassis-activated=" in self.binding_options(
                central, a.lsp), "lsp-vm-a activated on chassis b (RARP)", timeout=10)
            activated_ms = int((time.monotonic() - completed) * 1000)
            self.log("lsp-vm-a activated on chassis b within %d ms of completion: %s"
                     % (activated_ms, self.binding_options(central, a.lsp)))
            self.wait_link(b.ovs, DST_PORT)
            # 4. Post-live-migration: the source QEMU ends, its port goes down; the
            # port is bound to chassis b alone; the source port goes.
            self.end_source(a.ovs, ga, a.port)
            central.nbctl("set", "Logical_Switch_Port", a.lsp,
                          "options:requested-chassis=" + b.system_id,
                          "--", "remove", "Logical_Switch_Port", a.lsp, "options",
                          "activation-strategy")
            self.wait(lambda: self.binding_chassis(central, a.lsp) == [b.system_id]
                      and not self.binding_chassis(central, a.lsp,
                                                   "additional_chassis"),
                      "lsp-vm-a bound to chassis b alone")
            a.ovs.vsctl("del-port", "br-int", a.port)
            self.wait_bound(central, b, a.lsp, DST_PORT)
            central.nbctl("--wait=hv", "sync")
            moved = time.monotonic()
            time.sleep(1)
            pings = self.stop_pings(gb)
            self.log("vm-b's pings during the move: %s; the binding on chassis b "
                     "alone %.1f s after completion" % (pings, moved - completed))
            self.report(info, lost_pings=pings["lost"], pings=pings["transmitted"],
                        ping_gap_ms=pings["longest_gap_ms"],
                        rarp_activated_ms=activated_ms,
                        bound_b_ms=int((moved - completed) * 1000))
            self.assertEqual(pings["duplicates"], 0, pings)
            self.assertLessEqual(pings["lost"], MAX_LOST_PINGS, pings)
            self.assertGreater(pings["received"], 0, pings)

            # Traffic after the move: both ways within chassis b, none on the
            # tunnel; each port's counters equal its guest's.
            ports = (DST_PORT, b.port, b.tunnel)
            guests = ((target, DST_PORT), (gb, b.port))
            g0 = {port: self.quiet_stats(guest, settle=1.0) for guest, port in guests}
            p0 = {port: ofport_stats(b.ovs, port) for port in ports}
            self.assertPingOk(self.guest_ping(gb, A_IP, count=AFTER_PINGS,
                                              interval=0.05), AFTER_PINGS,
                              "vm-b pings vm-a on chassis b")
            self.assertPingOk(self.guest_ping(target, B_IP, count=AFTER_PINGS,
                                              interval=0.05, size=GUEST_MTU - 28),
                              AFTER_PINGS, "vm-a pings vm-b from chassis b, full frames")
            g1 = {port: self.quiet_stats(guest, settle=1.0) for guest, port in guests}
            p1 = {port: ofport_stats(b.ovs, port) for port in ports}
            delta = {port: {k: p1[port][k] - p0[port][k] for k in p0[port]}
                     for port in ports}
            self.log("after the move, on chassis b: %s" % delta)
            for guest, port in guests:
                g = {k: g1[port][k] - g0[port][k] for k in
                     ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")}
                self.assertEqual(delta[port], {
                    "rx_packets": g["tx_packets"], "rx_bytes": g["tx_bytes"],
                    "tx_packets": g["rx_packets"], "tx_bytes": g["rx_bytes"]},
                    "%s's counters against %s's eth0" % (port, guest.name))
                for counter in ("rx_packets", "tx_packets"):
                    self.assertGreaterEqual(delta[port][counter], 2 * AFTER_PINGS,
                                            "%s %s" % (port, counter))
            self.assertEqual(delta[b.tunnel], {k: 0 for k in delta[b.tunnel]},
                             "traffic on chassis b's tunnel after the move")
            self.assertEqual(a.ovs.vsctl("--bare", "--columns=name", "find",
                                         "Interface", "external_ids:iface-id="
                                         + a.lsp), "", "lsp-vm-a's port on chassis a")
            self.assertGuestKernelClean(target)


def load_tests(loader, tests, pattern):
    names = [n for n in dir(OvnMigrationTest)
             if n.startswith("test_") and n in vars(OvnMigrationTest)]
    return unittest.TestSuite(OvnMigrationTest(n) for n in names)


if __name__ == "__main__":
    unittest.main()
