"""Faults around our ovs-vswitchd: frontends killed mid-burst, the daemon SIGKILLed and
restarted under client-mode ports.  After each fault: the daemon (or its successor) is
alive, traffic resumes where a frontend remains, and nothing leaked (the daemon's fds
and guest-memory mappings are what they were in the same steady state before).

The faults a frontend causes by messages under traffic (SET_MEM_TABLE during traffic,
1,000 vring disable/enable cycles) are cases of the replay suite (tests/hostile,
fault_*), run against this daemon by hostile.daemon.

Run by ctest (faults.daemon); by hand:
    OVS_VHOSTUSER_DAEMON=build/bin/ovs-vswitchd-vhostuser \\
        /usr/bin/python3 -m unittest -v tests/faults/test_faults.py
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
from daemon_footprint import fd_kinds, footprint  # noqa: E402
from ovs_sandbox import OvsSandbox  # noqa: E402
from testpmd import TestPmd  # noqa: E402


def daemon_path():
    path = os.environ.get("OVS_VHOSTUSER_DAEMON")
    if not path:
        raise unittest.SkipTest("OVS_VHOSTUSER_DAEMON is not set")
    return path


class FaultTest(unittest.TestCase):
    def setUp(self):
        self.vms = []

    def tearDown(self):
        for vm in self.vms:
            vm.kill()
            for pipe in (vm.proc.stdin, vm.proc.stdout):
                pipe.close()

    def sandbox(self):
        return OvsSandbox(daemon_path(), other_config={"pmd-cpu-mask": "0x1"})

    def vm(self, ovs, sock, name, mode, server=False):
        vm = TestPmd([sock], forward_mode=mode, server=server,
                     file_prefix=f"fault-{name}-{os.getpid()}",
                     log_path=os.path.join(ovs.root, f"testpmd-{name}.log"))
        self.vms.append(vm)
        vm.wait_ready()
        if not server:
            vm.wait_link_up()
        return vm

    def show(self, ovs, port):
        return ovs.appctl("ovs-vswitchd", "vhostuser/show", port)

    def wait_state(self, ovs, port, state):
        ovs.wait_for(lambda: f"state: {state}," in self.show(ovs, port),
                     f"{port} {state}", ovs.vswitchd)

    def wait_tx_mapped(self, ovs, port):
        # OVS maps its transmit queue to the guest's once its main thread has seen the
        # port ready; packets sent before that are dropped.
        ovs.wait_for(lambda: "0->0" in self.show(ovs, port), f"{port}'s tx queue mapped",
                     ovs.vswitchd)

    def settled_footprint(self, ovs):
        """The footprint once it stops moving: a frontend that just hung up holds its
        connection's fds until the control thread has seen it go."""
        pid = ovs.vswitchd.pid
        last, same = None, 0
        deadline = time.monotonic() + 10
        while same < 3 and time.monotonic() < deadline:
            now = footprint(pid)
            same = same + 1 if now == last else 0
            last = now
            time.sleep(0.2)
        self.steady_kinds = fd_kinds(pid)
        return last

    def rx(self, vm):
        return vm.port_stats()[0]["rx"]

    def wait_footprint(self, ovs, expected, what):
        pid = ovs.vswitchd.pid
        ovs.wait_for(lambda: footprint(pid) == expected,
                     f"the daemon's footprint {expected} after {what} "
                     f"(now {footprint(pid)}, fds {fd_kinds(pid)}; "
                     f"steady fds {self.steady_kinds})", ovs.vswitchd, timeout=10)

    def test_frontend_killed_mid_burst(self):
        """VM A sends into vhu0, the switch forwards to VM B on vhu1; A is SIGKILLed while
        it sends, three times, and a new A takes its place each time."""
        with self.sandbox() as ovs:
            ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
            for i in range(2):
                ovs.vsctl("add-port", "br0", f"vhu{i}", "--", "set", "Interface", f"vhu{i}",
                          "type=dpdkvhostuser", f"ofport_request={i + 1}")
            ovs.ofctl("del-flows", "br0")
            ovs.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
            ovs.ofctl("add-flow", "br0", "in_port=2,actions=output:1")
            b = self.vm(ovs, os.path.join(ovs.rundir, "vhu1"), "b", "rxonly")
            b.command("start")
            steady = None
            for round_ in range(3):
                a = self.vm(ovs, os.path.join(ovs.rundir, "vhu0"), f"a{round_}", "txonly")
                self.wait_tx_mapped(ovs, "vhu1")
                before = self.rx(b)
                a.command("start")
                time.sleep(1.0)
                if steady is None:
                    steady = self.settled_footprint(ovs)
                else:
                    self.wait_footprint(ovs, steady, f"round {round_} with A connected")
                self.assertGreater(self.rx(b), before, f"round {round_}: no traffic A->B")
                a.kill()  # SIGKILL, mid-burst.
                self.assertIsNone(ovs.vswitchd.poll(), "the daemon died with the frontend")
                self.wait_state(ovs, "vhu0", "disconnected")
                # The database's copy of the status follows a moment later.
                ovs.wait_for(lambda: ovs.get_map("Interface", "vhu0", "status")["status"]
                             == "disconnected", "vhu0's status column", ovs.vswitchd)
                status = ovs.get_map("Interface", "vhu0", "status")
                self.assertNotIn("error", status, "a frontend going away is no error")
                self.assertIn("state: ready", self.show(ovs, "vhu1"), "B lost its port")
            # The last A's memory is gone: one fewer guest's worth than the steady state.
            final = self.settled_footprint(ovs)
            self.assertLess(final["memfd_maps"], steady["memfd_maps"] or 1)
            self.assertLess(final["fds"], steady["fds"])
            # And a last A passes traffic.
            a = self.vm(ovs, os.path.join(ovs.rundir, "vhu0"), "a-last", "txonly")
            before = self.rx(b)
            a.command("start")
            time.sleep(1.0)
            a.command("stop")
            self.assertGreater(self.rx(b), before, "traffic did not resume after the kills")
            self.wait_footprint(ovs, steady, "the kills")
            print(f"\nsteady {steady}, after the last kill {final}, B received "
                  f"{self.rx(b)}", file=sys.stderr)
            self.assertEqual(ovs.log_lines(), [])

    def test_daemon_killed_and_restarted_with_client_ports(self):
        """testpmd serves the sockets (server=1) of two dpdkvhostuserclient ports; the
        daemon is SIGKILLed mid-traffic and restarted, twice; the ports reconnect and
        traffic A->B resumes."""
        with self.sandbox() as ovs:
            ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
            socks = [os.path.join(ovs.root, f"vm{i}.sock") for i in range(2)]
            for i, sock in enumerate(socks):
                ovs.vsctl("add-port", "br0", f"vhu{i}", "--", "set", "Interface", f"vhu{i}",
                          "type=dpdkvhostuserclient", f"options:vhost-server-path={sock}",
                          f"ofport_request={i + 1}")
            ovs.ofctl("del-flows", "br0")
            ovs.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
            a = self.vm(ovs, socks[0], "a", "txonly", server=True)
            b = self.vm(ovs, socks[1], "b", "rxonly", server=True)
            b.command("start")
            steady = None
            for round_ in range(3):
                for port in ("vhu0", "vhu1"):
                    self.wait_state(ovs, port, "ready")
                self.wait_tx_mapped(ovs, "vhu1")
                before = self.rx(b)
                a.command("start")
                time.sleep(1.0)
                self.assertGreater(self.rx(b), before, f"round {round_}: no traffic A->B")
                if steady is None:
                    steady = self.settled_footprint(ovs)
                else:
                    self.wait_footprint(ovs, steady,
                                        f"restart {round_} (the first daemon's footprint)")
                if round_ == 2:
                    a.command("stop")
                    print(f"\nsteady {steady} in each of 3 daemons, B received "
                          f"{self.rx(b)}", file=sys.stderr)
                    break
                ovs.kill_vswitchd()  # SIGKILL mid-traffic.
                self.assertIsNone(a.proc.poll(), "testpmd A died with the switch")
                self.assertIsNone(b.proc.poll(), "testpmd B died with the switch")
                a.command("stop")
                ovs.start_vswitchd()
            self.assertEqual(ovs.log_lines(), [])


if __name__ == "__main__":
    unittest.main()
