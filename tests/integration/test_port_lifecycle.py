"""The daemon registers both vhost-user types, creates and deletes their ports on a
netdev bridge, reports configuration errors in the Interface table, and exits cleanly.

Run by ctest; by hand:
    OVS_VHOSTUSER_DAEMON=build/bin/ovs-vswitchd-vhostuser \\
        /usr/bin/python3 -m unittest -v tests/integration/test_port_lifecycle.py
"""

import os
import signal
import socket
import stat
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ovs_sandbox import OvsSandbox, SandboxError  # noqa: E402

VHOST_TYPES = ("dpdkvhostuser", "dpdkvhostuserclient")
# VHOST_USER_GET_INFLIGHT_FD, a request the backend does not implement, logs and ignores.
UNSUPPORTED_REQUEST = struct.pack("<III", 31, 0x1, 24) + bytes(24)
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

    def test_socket_that_cannot_be_made_is_tried_again(self):
        """A server port whose path is taken comes up by itself once the path is free,
        and a move to a vhost-sock-dir that does not exist yet keeps the old socket
        until the directory is there.  The port stayed without a socket until the
        next reconfiguration, and a move destroyed the old socket first."""
        with sandbox() as ovs:
            add_netdev_bridge(ovs)
            path = os.path.join(ovs.rundir, "vhu0")
            with open(path, "w") as f:
                f.write("not a socket")
            ovs.vsctl("add-port", "br0", "vhu0", "--",
                      "set", "Interface", "vhu0", "type=dpdkvhostuser")
            ovs.wait_for(lambda: ovs.get_map("Interface", "vhu0", "status")
                         .get("status") == "error", "status error while the path is taken")
            os.unlink(path)
            ovs.wait_for(lambda: os.path.exists(path) and stat.S_ISSOCK(os.stat(path).st_mode),
                         "the socket, once the path is free", ovs.vswitchd, timeout=10)
            ovs.wait_for(lambda: ovs.get_map("Interface", "vhu0", "status")
                         .get("status") == "disconnected", "status disconnected")

            # Relative to the run directory, as for OVS-DPDK.
            newdir = os.path.join(ovs.rundir, "later")
            ovs.vsctl("set", "Open_vSwitch", ".", "other_config:vhost-sock-dir=later")
            ovs.wait_for(lambda: "still on" in ovs.get_map("Interface", "vhu0", "status")
                         .get("config_error", ""), "the failed move in config_error",
                         ovs.vswitchd)
            status = ovs.get_map("Interface", "vhu0", "status")
            self.assertEqual(status.get("socket"), path)
            self.assertTrue(os.path.exists(path), "the old socket went with the move")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as guest:
                guest.connect(path)   # Still served.
            # An option out of range meanwhile: neither reason hides the other.
            ovs.vsctl("set", "Interface", "vhu0", "options:tx-retries-max=99")
            ovs.wait_for(lambda: "tx-retries-max=99" in ovs.get_map(
                "Interface", "vhu0", "status").get("config_error", ""),
                         "the option's warning in config_error")
            self.assertIn("still on", ovs.get_map("Interface", "vhu0", "status")
                          .get("config_error", ""))
            ovs.vsctl("remove", "Interface", "vhu0", "options", "tx-retries-max")
            os.mkdir(newdir)
            moved = os.path.join(newdir, "vhu0")
            ovs.wait_for(lambda: os.path.exists(moved), "the socket in the new directory",
                         ovs.vswitchd, timeout=15)
            ovs.wait_for(lambda: not os.path.exists(path), "the old socket removed")
            ovs.wait_for(lambda: "config_error" not in
                         ovs.get_map("Interface", "vhu0", "status"), "the error cleared")
            self.assertEqual(ovs.get_map("Interface", "vhu0", "status").get("socket"),
                             moved)

            # The same directory through a symlink: nothing moves.  The port made its
            # new socket where its old one was, failed, and tried again for good.
            os.symlink("later", os.path.join(ovs.rundir, "alias"))
            ovs.vsctl("set", "Open_vSwitch", ".", "other_config:vhost-sock-dir=alias")
            ovs.wait_for(lambda: any("by another path" in line for line in
                                     ovs.log_lines(levels=("INFO",))),
                         "the daemon sees the same directory", ovs.vswitchd)
            time.sleep(1.5)   # A failed move would be retried, and shown, within 1 s.
            status = ovs.get_map("Interface", "vhu0", "status")
            self.assertNotIn("config_error", status)
            self.assertEqual(status.get("socket"), moved)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as guest:
                guest.connect(moved)   # Still served.

    def test_userspace_tso_is_warned_about(self):
        """With userspace-tso-enable, OVS 3.1 drops offloaded packets on their way to a
        port without offloads, counted nowhere the port's users look: say so."""
        with sandbox() as ovs:
            ovs.vsctl("set", "Open_vSwitch", ".", "other_config:userspace-tso-enable=true")
            ovs.wait_for(lambda: any("userspace-tso-enable" in line for line in
                                     ovs.log_lines(levels=("WARN",))),
                         "a warning about userspace-tso-enable", ovs.vswitchd)

    def test_tx_retries_max_out_of_range_is_reported_and_costs_no_port(self):
        """An out-of-range tx-retries-max leaves the value in effect as it was (the
        default, for a new port) and says so in status:config_error.  Refusing the
        port instead would make a typo made while it was in use, which the database
        keeps, delete it with its guest's network at the daemon's next restart."""
        def status():
            return ovs.get_map("Interface", "vhu0", "status")

        with sandbox() as ovs:
            add_netdev_bridge(ovs)
            ovs.vsctl("add-port", "br0", "vhu0", "--",
                      "set", "Interface", "vhu0", "type=dpdkvhostuser",
                      "options:tx-retries-max=99")
            ovs.wait_for(lambda: "config_error" in status(), "status:config_error")
            self.assertNoInterfaceError(ovs, "vhu0")
            self.assertIn("tx-retries-max=99", status()["config_error"])
            self.assertEqual(status()["tx-retries-max"], "8")
            self.assertTrue(any("tx-retries-max=99" in line
                                for line in ovs.log_lines(levels=("WARN",))))

            ovs.vsctl("set", "Interface", "vhu0", "options:tx-retries-max=4")
            ovs.wait_for(lambda: "config_error" not in status(), "the warning cleared")
            self.assertEqual(status()["tx-retries-max"], "4")
            # A bad value on a port in use: 4 stays.
            ovs.vsctl("set", "Interface", "vhu0", "options:tx-retries-max=-1")
            ovs.wait_for(lambda: "config_error" in status(), "status:config_error")
            self.assertEqual(status()["tx-retries-max"], "4")

            # The daemon restarts with the bad value in the database: the port is
            # there, with the default, and still says what is wrong.
            ovs.kill_vswitchd()
            ovs.start_vswitchd()
            ovs.wait_for(lambda: status().get("tx-retries-max") == "8",
                         "vhu0 back, with tx-retries-max=8")
            self.assertNoInterfaceError(ovs, "vhu0")
            self.assertGreater(int(ovs.get("Interface", "vhu0", "ofport")), 0)
            self.assertIn("tx-retries-max=-1", status()["config_error"])

            ovs.vsctl("set", "Interface", "vhu0", "options:tx-retries-max=0")
            ovs.wait_for(lambda: "config_error" not in status(), "the warning cleared")
            self.assertIn("tx-retries-max=0",
                          ovs.appctl("ovs-vswitchd", "dpif/show"))

    def test_each_port_has_a_log_budget_of_its_own(self):
        """A frontend that makes the daemon log all it can (connections, each with
        unsupported requests) uses up its own port's share of the log, not the lines
        that say what another port's guest did."""
        with sandbox() as ovs:
            add_netdev_bridge(ovs)
            for name in ("vhu0", "vhu1"):
                ovs.vsctl("add-port", "br0", name, "--",
                          "set", "Interface", name, "type=dpdkvhostuser")
            attacked, neighbour = (os.path.join(ovs.rundir, n) for n in ("vhu0", "vhu1"))
            ovs.wait_for(lambda: os.path.exists(attacked) and os.path.exists(neighbour),
                         "the sockets", ovs.vswitchd)
            stop = threading.Event()
            connections = 0

            def attack():
                nonlocal connections
                while not stop.is_set():
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        s.settimeout(0.1)
                        try:
                            s.connect(attacked)
                            s.sendall(UNSUPPORTED_REQUEST * 10)
                            connections += 1
                        except OSError:
                            time.sleep(0.01)   # Turned away: the port's churn limit.

            def lines_about(path, text=""):
                with open(ovs.vswitchd_log, errors="replace") as f:
                    return [line for line in f if f"{path}: {text}" in line]

            attacker = threading.Thread(target=attack)
            attacker.start()
            try:
                # Ten lines a connection, twenty connections a second: a budget that
                # all ports shared (60 lines) is gone well within these 2 s.
                time.sleep(2)
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as guest:
                    guest.connect(neighbour)
                    time.sleep(0.2)
                ovs.wait_for(lambda: lines_about(neighbour, "frontend disconnected"),
                             "the neighbour's disconnect in the log, under attack",
                             ovs.vswitchd, timeout=5)
                self.assertTrue(lines_about(neighbour, "frontend connected"))
            finally:
                stop.set()
                attacker.join()
            # The attacked port is still held to its budget: 30 lines, and one more
            # every two seconds.
            self.assertGreater(connections, 20, "the attack got no connection through")
            self.assertLessEqual(len(lines_about(attacked)), 40,
                                 f"{connections} connections")

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
