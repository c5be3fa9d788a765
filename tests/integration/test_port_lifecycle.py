"""The daemon registers both vhost-user types, creates and deletes their ports on a
netdev bridge, reports configuration errors in the Interface table, and exits cleanly.

Run by ctest; by hand:
    OVS_VHOSTUSER_DAEMON=build/bin/ovs-vswitchd-vhostuser \\
        /usr/bin/python3 -m unittest -v tests/integration/test_port_lifecycle.py
"""

import os
import signal
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ovs_sandbox import OvsSandbox, SandboxError  # noqa: E402

VHOST_TYPES = ("dpdkvhostuser", "dpdkvhostuserclient")
STANDARD_COUNTERS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_dropped")


def daemon_path():
    path = os.environ.get("OVS_VHOSTUSER_DAEMON")
    if not path:
        raise unittest.SkipTest("OVS_VHOSTUSER_DAEMON is not set")
    return path


def sandbox():
    # One PMD thread, on CPU 0: the machines running this have two cores.
    return OvsSandbox(daemon_path(), other_config={"pmd-cpu-mask": "0x1"})


def add_netdev_bridge(ovs, name="br0"):
    ovs.vsctl("add-br", name, "--", "set", "Bridge", name, "datapath_type=netdev")


def parse_set(text):
    """'[a, b, "c d"]' as ovs-vsctl prints a set column -> {'a', 'b', 'c d'}."""
    inner = text.strip()[1:-1]
    return {item.strip().strip('"') for item in inner.split(",") if item.strip()}


class PortLifecycleTest(unittest.TestCase):
    def assertNoInterfaceError(self, ovs, name):
        self.assertEqual(ovs.get("Interface", name, "error"), "[]",
                         f"Interface {name} has an error")

    def assertNoBadLogLines(self, ovs):
        self.assertEqual(ovs.log_lines(), [], "ovs-vswitchd logged errors")

    def test_iface_types_lists_both_vhost_types(self):
        with sandbox() as ovs:
            types = parse_set(ovs.get("Open_vSwitch", ".", "iface_types"))
            for t in VHOST_TYPES:
                self.assertIn(t, types)
            # And OVS's own types are still there: we added to the list, not replaced.
            self.assertIn("internal", types)

    def test_add_and_delete_both_port_types(self):
        with sandbox() as ovs:
            add_netdev_bridge(ovs)
            guest_socket = os.path.join(ovs.rundir, "guest1.sock")
            ovs.vsctl("add-port", "br0", "vhu0", "--",
                      "set", "Interface", "vhu0", "type=dpdkvhostuser")
            ovs.vsctl("add-port", "br0", "vhu1", "--",
                      "set", "Interface", "vhu1", "type=dpdkvhostuserclient",
                      f"options:vhost-server-path={guest_socket}")

            for name, mode, socket in (("vhu0", "server",
                                        os.path.join(ovs.rundir, "vhu0")),
                                       ("vhu1", "client", guest_socket)):
                with self.subTest(port=name):
                    self.assertNoInterfaceError(ovs, name)
                    self.assertGreater(int(ovs.get("Interface", name, "ofport")), 0)
                    status = ovs.get_map("Interface", name, "status")
                    self.assertEqual(status.get("mode"), mode)
                    self.assertEqual(status.get("status"), "disconnected")
                    self.assertEqual(status.get("socket"), socket)
                    # Without a guest the link is down, but the counters are there.
                    self.assertEqual(ovs.get("Interface", name, "link_state"), "down")
                    stats = ovs.get_map("Interface", name, "statistics")
                    for counter in STANDARD_COUNTERS:
                        self.assertEqual(stats.get(counter), "0", counter)

            datapath = ovs.appctl("ovs-vswitchd", "dpif/show")
            self.assertIn("vhu0 1/", datapath)
            self.assertIn("(dpdkvhostuser)", datapath)
            self.assertIn(f"(dpdkvhostuserclient: vhost-server-path={guest_socket})",
                          datapath)
            # PMD ports, but without a guest yet they have no queue at all: no receive
            # queue for a PMD thread to poll, no transmit queue in its send cache
            # (test_traffic sees them appear with their guests).
            rxqs = ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-rxq-show")
            self.assertNotIn("port: vhu0", rxqs)
            self.assertNotIn("port: vhu1", rxqs)
            self.assertIn("OVS queues: rx 0, tx 0",
                          ovs.appctl("ovs-vswitchd", "vhostuser/show", "vhu0"))

            ovs.vsctl("del-port", "br0", "vhu0")
            ovs.vsctl("del-port", "br0", "vhu1")
            self.assertEqual(ovs.vsctl("list-ports", "br0"), "")
            datapath = ovs.appctl("ovs-vswitchd", "dpif/show")
            self.assertNotIn("vhu0", datapath)
            self.assertNotIn("vhu1", datapath)
            self.assertNoBadLogLines(ovs)

    def test_client_port_needs_server_path(self):
        with sandbox() as ovs:
            add_netdev_bridge(ovs)
            ovs.vsctl("add-port", "br0", "vhu1", "--",
                      "set", "Interface", "vhu1", "type=dpdkvhostuserclient")
            self.assertIn("vhost-server-path", ovs.get("Interface", "vhu1", "error"))
            self.assertNotIn("vhu1", ovs.appctl("ovs-vswitchd", "dpif/show"))

            # Setting the path afterwards creates the port.
            path = os.path.join(ovs.rundir, "guest1.sock")
            ovs.vsctl("set", "Interface", "vhu1", f"options:vhost-server-path={path}")
            self.assertNoInterfaceError(ovs, "vhu1")
            self.assertIn("vhu1", ovs.appctl("ovs-vswitchd", "dpif/show"))

            # A relative path would be relative to wherever the daemon runs: refused.
            # The port, already in use, keeps its path and says why in its status.
            ovs.vsctl("set", "Interface", "vhu1", "options:vhost-server-path=guest.sock")
            status = ovs.get_map("Interface", "vhu1", "status")
            self.assertIn("not absolute", status.get("config_error", ""))
            self.assertEqual(status.get("socket"), path)
            self.assertIn("vhu1", ovs.appctl("ovs-vswitchd", "dpif/show"))

    def test_tx_retries_max_out_of_range_is_reported(self):
        with sandbox() as ovs:
            add_netdev_bridge(ovs)
            ovs.vsctl("add-port", "br0", "vhu0", "--",
                      "set", "Interface", "vhu0", "type=dpdkvhostuser",
                      "options:tx-retries-max=99")
            self.assertIn("tx-retries-max", ovs.get("Interface", "vhu0", "error"))
            ovs.vsctl("set", "Interface", "vhu0", "options:tx-retries-max=0")
            self.assertNoInterfaceError(ovs, "vhu0")
            self.assertIn("tx-retries-max=0",
                          ovs.appctl("ovs-vswitchd", "dpif/show"))

    def test_daemon_exits_cleanly(self):
        ovs = sandbox()
        with ovs:
            add_netdev_bridge(ovs)
            ovs.vsctl("add-port", "br0", "vhu0", "--",
                      "set", "Interface", "vhu0", "type=dpdkvhostuser")
            pidfile = os.path.join(ovs.rundir, "ovs-vswitchd.pid")
            self.assertTrue(os.path.exists(pidfile))
            vswitchd = ovs.vswitchd
            ovs.stop()  # ovs-appctl exit; raises unless both exit with status 0
            self.assertEqual(vswitchd.returncode, 0)
            self.assertFalse(os.path.exists(pidfile), "pidfile left behind")
            self.assertNoBadLogLines(ovs)


class SandboxSelfTest(unittest.TestCase):
    """The harness must notice a daemon that dies, or the tests above prove nothing."""

    def test_stop_reports_a_crashed_daemon(self):
        ovs = sandbox()
        try:
            ovs.start()
            ovs.vswitchd.send_signal(signal.SIGKILL)
            ovs.vswitchd.wait()
            with self.assertRaises(SandboxError):
                ovs.stop()
        finally:
            ovs.kill()
            ovs.remove_workdir()


if __name__ == "__main__":
    unittest.main()
