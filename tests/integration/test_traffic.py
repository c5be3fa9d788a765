"""Traffic through our ovs-vswitchd between DPDK testpmd "VMs" on vhost-user ports.

VM A (txonly) sends into vhu0, the bridge forwards to vhu1, VM B (rxonly) receives.
Stopping A first and letting B drain makes every count exact: what A sent is what vhu0
received; what vhu0 received is what vhu1 sent plus what vhu1 dropped; what vhu1 sent
is what B received.

Run by ctest; by hand:
    OVS_VHOSTUSER_DAEMON=build/bin/ovs-vswitchd-vhostuser \\
        /usr/bin/python3 -m unittest -v tests/integration/test_traffic.py
"""

import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ovs_sandbox import OvsSandbox  # noqa: E402
from vm_peers import start_vm, wait_socket  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "ovsdb-schema"))
from check_keys import documented_key  # noqa: E402


def daemon_path():
    path = os.environ.get("OVS_VHOSTUSER_DAEMON")
    if not path:
        raise unittest.SkipTest("OVS_VHOSTUSER_DAEMON is not set")
    return path


def stats(ovs, port):
    return {k: int(v) for k, v in ovs.get_map("Interface", port, "statistics").items()}


def settled_stats(ovs, ports, rx_port_expected=None, timeout=15):
    """Interface statistics once OVS has written a snapshot taken after the traffic
    stopped.  ovs-vswitchd writes statistics every 5 s (its minimum), all ports in
    one transaction: wait for two equal snapshots in a row (or for the first port's
    rx_packets to reach what its peer sent) and return the last."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        snap = [stats(ovs, p) for p in ports]
        if rx_port_expected is not None and snap[0].get("rx_packets") == rx_port_expected:
            return snap
        if rx_port_expected is None and snap == last:
            return snap
        last = snap
        time.sleep(6 if rx_port_expected is None else 0.5)
    return snap


class TrafficTest(unittest.TestCase):
    def setUp(self):
        self.vms = []

    def tearDown(self):
        for vm in self.vms:
            vm.kill()

    def sandbox(self, **other_config):
        config = {"pmd-cpu-mask": "0x1"}
        config.update(other_config)
        return OvsSandbox(daemon_path(), other_config=config)

    def two_port_bridge(self, ovs, types=("dpdkvhostuser", "dpdkvhostuser"),
                        openflow=True, options=({}, {})):
        ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
        for i, (kind, opts) in enumerate(zip(types, options)):
            name = "vhu%d" % i
            args = ["add-port", "br0", name, "--", "set", "Interface", name,
                    "type=" + kind, "ofport_request=%d" % (i + 1)]
            args += ["options:%s=%s" % kv for kv in opts.items()]
            ovs.vsctl(*args)
        if openflow:
            ovs.ofctl("del-flows", "br0")
            ovs.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
            ovs.ofctl("add-flow", "br0", "in_port=2,actions=output:1")

    def start_vm(self, ovs, port, name, mode, **kwargs):
        sock = os.path.join(ovs.rundir, port)
        wait_socket(sock)
        vm = start_vm(sock, name, ovs.root, mode=mode, **kwargs)
        self.vms.append(vm)
        return vm

    def wait_carrier(self, ovs, *ports):
        """Waits for each port's link to be up and for the datapath to poll it (the
        queues of its first guest configured)."""
        for port in ports:
            try:
                ovs.wait_for(lambda: ovs.get("Interface", port, "link_state") == "up",
                             "link up on " + port)
                ovs.wait_for(lambda: "port: %s " % port in ovs.appctl(
                                 "ovs-vswitchd", "dpif-netdev/pmd-rxq-show"),
                             "a PMD thread polling " + port)
            except Exception:
                # What the database and the switch itself say, for the log.
                print(ovs.vsctl("--columns=name,link_state,status", "list", "Interface"),
                      ovs.appctl("ovs-vswitchd", "vhostuser/show", check=False),
                      file=sys.stderr)
                raise

    def run_a_to_b(self, ovs, a, b, seconds=2.0):
        """A sends for 'seconds'; B drains.  Returns (a_stats, b_stats)."""
        a.command("start")
        b.command("start")
        time.sleep(seconds)
        a.command("stop")
        time.sleep(1.5)   # B drains what the switch queued for it.
        b.command("stop")
        return a.port_stats()[0], b.port_stats()[0]

    def assertExactAccounting(self, ovs, a_stats, b_stats):
        s0, s1 = settled_stats(ovs, ["vhu0", "vhu1"], a_stats["tx"])
        self.assertGreater(a_stats["tx"], 1000, "VM A sent almost nothing")
        self.assertEqual(s0["rx_packets"], a_stats["tx"], "vhu0 received != A sent")
        self.assertEqual(s0["rx_packets"], s1["tx_packets"] + s1["tx_dropped"],
                         "vhu1 sent + dropped != vhu0 received")
        self.assertEqual(s1["tx_packets"], b_stats["rx"], "B received != vhu1 sent")
        self.assertGreater(b_stats["rx"], 0)
        return s0, s1

    def assertQueueFillUnknown(self, ovs):
        """The port cannot tell how full the guest's queue is, and says so (-ENOTSUP)
        as the netdev contract asks: pmd-perf-show's "vhost qlen" stays 0 while
        batches arrive.  A port that said 0 instead had dpif-netdev take each batch for
        the whole queue (qlen = batch size), and its log of suspicious iterations
        never look at vhost queues that were in fact full."""
        out = ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-perf-show")
        lines = out.splitlines()
        totals = [lines[i + 1].split() for i, line in enumerate(lines[:-1])
                  if "pkts/batch" in line and "vhost qlen" in line
                  and "max vhost qlen" not in line]
        self.assertTrue(totals, "no totals in pmd-perf-show:\n" + out)
        self.assertTrue(any(float(t[3]) > 0 for t in totals), out)   # pkts/batch
        for t in totals:
            self.assertEqual(float(t[4]), 0.0, "vhost qlen reported:\n" + out)

    def test_openflow_forwarding_counts_exactly(self):
        with self.sandbox() as ovs:
            self.two_port_bridge(ovs)
            a = self.start_vm(ovs, "vhu0", "a", "txonly")
            b = self.start_vm(ovs, "vhu1", "b", "rxonly")
            self.wait_carrier(ovs, "vhu0", "vhu1")
            ovs.vsctl("set", "Open_vSwitch", ".", "other_config:pmd-perf-metrics=true")
            a_stats, b_stats = self.run_a_to_b(ovs, a, b)
            s0, s1 = self.assertExactAccounting(ovs, a_stats, b_stats)
            self.assertQueueFillUnknown(ovs)
            # The standard counters are all there on a dpdkvhostuser port.
            for key in ("rx_bytes", "tx_bytes", "rx_1_to_64_packets",
                        "tx_1_to_64_packets", "ovs_tx_failure_drops",
                        "ovs_tx_retries", "rx_q0_good_packets", "tx_q0_good_packets"):
                self.assertIn(key, s0)
            self.assertEqual(s0["rx_q0_good_packets"], s0["rx_packets"])
            self.assertEqual(s1["tx_dropped"], s1["ovs_tx_failure_drops"] +
                             s1["ovs_tx_mtu_exceeded_drops"] + s1["ovs_tx_qos_drops"])
            status = ovs.get_map("Interface", "vhu0", "status")
            self.assertEqual(status["status"], "connected")
            self.assertEqual(status["num_of_vrings"], "2")
            self.assertIn("version_1", status["features"])
            # Every key a live port reports is documented in ovsdb-schema/.
            for port in ("vhu0", "vhu1"):
                for column in ("status", "statistics"):
                    for key in ovs.get_map("Interface", port, column):
                        self.assertTrue(documented_key("Interface", column, key),
                                        "%s:%s is not documented" % (column, key))
            out = ovs.appctl("ovs-vswitchd", "vhostuser/show", "vhu0")
            self.assertIn("vring 1 (guest tx 0): started, enabled", out)
            # The guest brought the port its receive queue, which a PMD thread polls.
            self.assertIn("OVS queues: rx 1, tx 1", out)
            rxqs = ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-rxq-show")
            self.assertIn("port: vhu0", rxqs)
            self.assertIn("port: vhu1", rxqs)
            # The packets vhu1 has sent went back to the PMD thread's cache for vhu0's
            # next receive, rather than to malloc().  PMD threads publish their
            # coverage counters every few seconds.
            recycled = 0
            deadline = time.time() + 15
            while time.time() < deadline:
                recycled = int(ovs.appctl("ovs-vswitchd", "coverage/read-counter",
                                          "vhostuser_packet_recycled"))
                if recycled >= 0.9 * s0["rx_packets"]:
                    break
                time.sleep(0.5)
            self.assertGreaterEqual(recycled, 0.9 * s0["rx_packets"],
                                    "packets sent to a guest were not reused")

    @staticmethod
    def port_bytes(ovs, ofport, direction):
        """A port's rx or tx bytes as the switch counts them now (OpenFlow port
        statistics are read from the port itself, not from the database's copy)."""
        out = ovs.ofctl("dump-ports", "br0", str(ofport))
        match = re.search(r"%s pkts=\d+, bytes=(\d+)" % direction, out)
        if not match:
            raise AssertionError("no %s bytes in: %s" % (direction, out))
        return int(match.group(1))

    def policed_mbps(self, ovs, ofport, direction, seconds=3.0):
        first, t0 = self.port_bytes(ovs, ofport, direction), time.monotonic()
        time.sleep(seconds)
        last, t1 = self.port_bytes(ovs, ofport, direction), time.monotonic()
        return (last - first) * 8 / (t1 - t0) / 1e6

    def test_policers_pass_the_rate_they_are_set_to(self):
        """Ingress policing and the egress-policer QoS pass their rate whatever the burst,
        with a burst of 0 (ingress_policing_burst's default; no cbs) too.  On OVS's
        token bucket, which fills a millisecond at a time and holds at most the burst,
        both passed at most a burst a millisecond: 78 Mbit/s with the one-frame burst
        that 0 became.

        VM A sends 1500-byte frames as fast as it can; what vhu0 takes in, and what
        vhu1 delivers to VM B, are read from the switch's own port counters.  B shares
        its CPU with A and drains its ring only in its time slices, some hundreds of
        Mbit/s of such frames: the egress rate is kept well below that, so that what
        B does not take cannot pass for the policer's doing (it is still above the
        78 Mbit/s of the old bucket)."""
        rates = {"ingress policing": 200, "egress-policer": 100}
        with self.sandbox() as ovs:
            self.two_port_bridge(ovs)
            a = self.start_vm(ovs, "vhu0", "a", "txonly")
            b = self.start_vm(ovs, "vhu1", "b", "rxonly")
            self.wait_carrier(ovs, "vhu0", "vhu1")
            a.command("set txpkts 1500")
            ovs.vsctl("set", "Interface", "vhu0",
                      "ingress_policing_rate=%d" % (rates["ingress policing"] * 1000))
            b.command("start")
            a.command("start")
            time.sleep(1.0)
            ingress = self.policed_mbps(ovs, 1, "rx")
            ovs.vsctl("set", "Interface", "vhu0", "ingress_policing_rate=0")
            ovs.vsctl("set", "Port", "vhu1", "qos=@q", "--", "--id=@q", "create", "QoS",
                      "type=egress-policer",
                      "other-config:cir=%d" % (rates["egress-policer"] * 125000))
            time.sleep(1.0)
            egress = self.policed_mbps(ovs, 2, "tx")
            a.command("stop")
            b.command("stop")
            for what, mbps in (("ingress policing", ingress), ("egress-policer", egress)):
                rate_mbps = rates[what]
                self.assertGreater(mbps, 0.85 * rate_mbps, "%s at %d Mbit/s passed %.0f"
                                   % (what, rate_mbps, mbps))
                self.assertLess(mbps, 1.1 * rate_mbps, "%s at %d Mbit/s passed %.0f"
                                % (what, rate_mbps, mbps))
            # Policed packets are counted (the database has them within 5 s).
            ovs.wait_for(lambda: stats(ovs, "vhu0")["ovs_rx_qos_drops"] > 0
                         and stats(ovs, "vhu1")["ovs_tx_qos_drops"] > 0,
                         "policed packets counted", timeout=15)

    def test_reused_packets_carry_no_metadata_over(self):
        """A packet vhu1 has sent goes back to the PMD thread's cache and holds vhu0's
        next frame, its metadata untouched by us (dpif-netdev initializes it for every
        packet a port receives).  Each trip here leaves a packet mark, conntrack state
        and a recirculation id on it: flows drop a frame that arrives on vhu0 carrying
        the first two, and table 0 must count every frame (with the metadata left
        stale in dpif-netdev, it counted the first burst only, the rest recirculating
        straight into table 1)."""
        with self.sandbox() as ovs:
            self.two_port_bridge(ovs, openflow=False)
            ovs.ofctl("del-flows", "br0")
            for flow in (
                    "table=0,priority=100,in_port=1,pkt_mark=0x5,actions=drop",
                    "table=0,priority=100,in_port=1,ip,ct_state=+trk,actions=drop",
                    "table=0,priority=90,in_port=1,ip,ct_state=-trk,"
                    "actions=set_field:0x5->pkt_mark,ct(commit,zone=7,table=1)",
                    "table=1,in_port=1,ct_state=+trk+new,pkt_mark=0x5,actions=output:2",
                    "table=1,in_port=1,ct_state=+trk+est,pkt_mark=0x5,actions=output:2"):
                ovs.ofctl("add-flow", "br0", flow)
            a = self.start_vm(ovs, "vhu0", "a", "txonly")
            b = self.start_vm(ovs, "vhu1", "b", "rxonly")
            self.wait_carrier(ovs, "vhu0", "vhu1")
            a_stats, b_stats = self.run_a_to_b(ovs, a, b)
            # A frame the flows dropped would be missing from vhu1's sent + dropped.
            try:
                s0, _ = self.assertExactAccounting(ovs, a_stats, b_stats)
            except AssertionError:
                print(ovs.ofctl("dump-flows", "br0"),
                      ovs.appctl("ovs-vswitchd", "coverage/show"), file=sys.stderr)
                raise
            # And every frame started in table 0: one still carrying the last trip's
            # recirculation id would go straight to table 1 and out.  Revalidators
            # bring the datapath's flow counts to OpenFlow within a second or two.
            def n_packets(marker):
                for line in ovs.ofctl("dump-flows", "br0").splitlines():
                    if marker in line:
                        return int(line.split("n_packets=")[1].split(",")[0])
                raise AssertionError("no flow with " + marker)

            try:
                ovs.wait_for(lambda: n_packets("ct(commit") == s0["rx_packets"],
                             "table 0's flow to count every frame vhu0 received",
                             timeout=15)
            except Exception:
                print(ovs.ofctl("dump-flows", "br0"), file=sys.stderr)
                raise
            self.assertEqual(n_packets("pkt_mark=0x5,in_port=1 actions=drop"), 0)
            self.assertEqual(n_packets("ct_state=+trk,ip,in_port=1 actions=drop"), 0)
            # PMD threads publish their coverage counters every few seconds.
            ovs.wait_for(lambda: int(ovs.appctl("ovs-vswitchd", "coverage/read-counter",
                                                "vhostuser_packet_recycled")) > 0,
                         "a packet sent to vhu1 reused for vhu0")

    def test_normal_action_forwards(self):
        with self.sandbox() as ovs:
            self.two_port_bridge(ovs, openflow=False)
            a = self.start_vm(ovs, "vhu0", "a", "txonly")
            b = self.start_vm(ovs, "vhu1", "b", "rxonly")
            self.wait_carrier(ovs, "vhu0", "vhu1")
            a_stats, b_stats = self.run_a_to_b(ovs, a, b)
            self.assertExactAccounting(ovs, a_stats, b_stats)

    def test_guest_that_stops_draining(self):
        with self.sandbox() as ovs:
            self.two_port_bridge(ovs)
            # B's receive ring has 64 entries.  One packet injected with packet-out
            # leaves 63; A's bursts of 32 then fill 32, then 31 of the next 32: the
            # switch retries that burst while B sleeps, and drops what never fits.
            a = self.start_vm(ovs, "vhu0", "a", "txonly")
            b = self.start_vm(ovs, "vhu1", "b", "rxonly", queue_size=64, descs=64)
            self.wait_carrier(ovs, "vhu0", "vhu1")
            frame = "ffffffffffff" "020000000001" "88b5" + "00" * 46
            injected = []

            def a_sends_while_b_sleeps():
                ovs.ofctl("packet-out", "br0", "LOCAL", "output:2", frame)
                a.command("start")
                time.sleep(1.5)
                a.command("stop")
                time.sleep(0.5)
                a_stats = a.port_stats()[0]
                s0, s1 = settled_stats(ovs, ["vhu0", "vhu1"], a_stats["tx"])
                self.assertEqual(s0["rx_packets"], a_stats["tx"])
                injected.append(1)
                self.assertEqual(s0["rx_packets"] + len(injected),
                                 s1["tx_packets"] + s1["tx_dropped"],
                                 "vhu1 sent + dropped != vhu0 received + injected")
                self.assertEqual(s1["tx_dropped"], s1["ovs_tx_failure_drops"])
                return s1

            s1 = a_sends_while_b_sleeps()
            self.assertLessEqual(s1["tx_packets"], 64, "more than B's ring holds")
            self.assertGreater(s1["ovs_tx_failure_drops"], 0)
            retries = s1["ovs_tx_retries"]
            self.assertGreaterEqual(retries, 1, "no retry when part of a burst fitted: %s" % s1)

            # tx-retries-max=0: the partial burst is dropped at once, no retry.
            ovs.vsctl("set", "Interface", "vhu1", "options:tx-retries-max=0")
            ovs.wait_for(lambda: ovs.get_map("Interface", "vhu1", "status")
                         .get("tx-retries-max") == "0", "tx-retries-max=0 in effect")
            b.command("start")      # B empties its ring...
            time.sleep(1)
            b.command("stop")       # ...and sleeps again.
            before = s1
            s1 = a_sends_while_b_sleeps()
            self.assertEqual(s1["ovs_tx_retries"], retries)
            self.assertGreater(s1["tx_packets"], before["tx_packets"])

            # B drains: every packet it was sent arrives.
            a_stats, b_stats = self.run_a_to_b(ovs, a, b)
            s0, s1 = settled_stats(ovs, ["vhu0", "vhu1"], a_stats["tx"])
            self.assertEqual(s0["rx_packets"] + len(injected),
                             s1["tx_packets"] + s1["tx_dropped"])
            self.assertEqual(s1["tx_packets"], b_stats["rx"])

    def test_socket_dir_helper_will_not_move_connected_guests(self):
        """utilities/ovs-vhostuser-setup-sockdir refuses to change vhost-sock-dir while
        guests are connected to dpdkvhostuser ports (the switch moves their sockets at
        once and their QEMU never finds them again), unless forced; forced, the guest
        loses its link and the port counts a link reset."""
        helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                              "utilities", "ovs-vhostuser-setup-sockdir")
        with self.sandbox() as ovs:
            self.two_port_bridge(ovs, openflow=False)
            a = self.start_vm(ovs, "vhu0", "a", "io")
            self.wait_carrier(ovs, "vhu0")
            ovs.wait_for(lambda: ovs.get_map("Interface", "vhu0", "status")
                         .get("status") == "connected", "vhu0 connected")
            argv = [helper, "--rundir", ovs.rundir, "--group", "root", "--dir", "socks"]
            result = subprocess.run(argv, env=ovs.env, capture_output=True, text=True,
                                    timeout=60)
            self.assertEqual(result.returncode, 2, result.stdout + result.stderr)
            self.assertIn("vhu0", result.stderr)
            self.assertNotIn("vhu1", result.stderr, "vhu1 has no guest")
            self.assertEqual(ovs.get_map("Open_vSwitch", ".", "other_config")
                             .get("vhost-sock-dir"), None)
            self.assertFalse(os.path.exists(os.path.join(ovs.rundir, "socks")),
                             "refused, yet it made the directory")

            # The directory the sockets are in, through a symlink, is no move: allowed,
            # and the guest keeps its link.
            os.symlink(".", os.path.join(ovs.rundir, "alias"))
            resets = int(ovs.get("Interface", "vhu0", "link_resets"))
            result = subprocess.run(argv[:-1] + ["alias"], env=ovs.env,
                                    capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            ovs.wait_for(lambda: any("by another path" in line for line in
                                     ovs.log_lines(levels=("INFO",))),
                         "the switch sees the same directory", ovs.vswitchd)
            self.assertEqual(ovs.get_map("Interface", "vhu0", "status").get("status"),
                             "connected")
            self.assertEqual(int(ovs.get("Interface", "vhu0", "link_resets")), resets)

            # Forced: the socket moves, and the guest on it loses its link, which the
            # port counts as a link reset.
            resets = int(ovs.get("Interface", "vhu0", "link_resets"))
            result = subprocess.run(argv + ["--force"], env=ovs.env, capture_output=True,
                                    text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            ovs.wait_for(lambda: os.path.exists(os.path.join(ovs.rundir, "socks", "vhu0")),
                         "vhu0's socket in the new directory")
            ovs.wait_for(lambda: ovs.get("Interface", "vhu0", "link_state") == "down",
                         "vhu0's link down once its socket moved")
            self.assertEqual(int(ovs.get("Interface", "vhu0", "link_resets")), resets + 1)
            self.assertNotEqual(ovs.get_map("Interface", "vhu0", "status").get("status"),
                                "connected")

            # Without a guest connected, no --force is needed.
            a.kill()
            argv[-1] = "socks2"
            result = subprocess.run(argv, env=ovs.env, capture_output=True, text=True,
                                    timeout=60)
            self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
            ovs.wait_for(lambda: os.path.exists(os.path.join(ovs.rundir, "socks2", "vhu0")),
                         "vhu0's socket in the second directory")

    def test_admin_down_drops_and_up_resumes(self):
        with self.sandbox() as ovs:
            self.two_port_bridge(ovs)
            a = self.start_vm(ovs, "vhu0", "a", "txonly")
            b = self.start_vm(ovs, "vhu1", "b", "rxonly")
            self.wait_carrier(ovs, "vhu0", "vhu1")
            ovs.ofctl("mod-port", "br0", "vhu1", "down")
            ovs.wait_for(lambda: ovs.get("Interface", "vhu1", "admin_state") == "down",
                         "vhu1 admin down")
            before = settled_stats(ovs, ["vhu1"])[0]
            a_stats, b_stats = self.run_a_to_b(ovs, a, b, seconds=1.0)
            after = settled_stats(ovs, ["vhu1"])[0]
            self.assertEqual(after["tx_packets"], before["tx_packets"])
            self.assertGreater(after["tx_dropped"], before["tx_dropped"])
            ovs.ofctl("mod-port", "br0", "vhu1", "up")
            ovs.wait_for(lambda: ovs.get("Interface", "vhu1", "admin_state") == "up",
                         "vhu1 admin up")
            self.run_a_to_b(ovs, a, b, seconds=1.0)
            self.assertGreater(settled_stats(ovs, ["vhu1"])[0]["tx_packets"],
                               after["tx_packets"])

    def test_mtu_request(self):
        with self.sandbox() as ovs:
            self.two_port_bridge(ovs, openflow=False)
            ovs.vsctl("set", "Interface", "vhu0", "mtu_request=9000")
            ovs.wait_for(lambda: ovs.get("Interface", "vhu0", "mtu") == "9000", "mtu 9000")
            ovs.vsctl("set", "Interface", "vhu0", "mtu_request=9800")
            # The refusal is logged once the bridge has seen the request: only then
            # does the MTU staying where it was say anything.
            ovs.wait_for(lambda: any("mtu_request=9800 refused" in line for line in
                                     ovs.log_lines(levels=("WARN",))),
                         "the refusal of mtu_request=9800", ovs.vswitchd)
            self.assertEqual(ovs.get("Interface", "vhu0", "mtu"), "9000",
                             "an MTU above 9702 is refused")

    def test_multiqueue_counts_every_queue(self):
        for queues in (2, 4):
            with self.subTest(queues=queues), self.sandbox() as ovs:
                self.two_port_bridge(ovs)
                a = self.start_vm(ovs, "vhu0", "a", "txonly", queues=queues)
                b = self.start_vm(ovs, "vhu1", "b", "rxonly", queues=queues)
                self.wait_carrier(ovs, "vhu0", "vhu1")
                ovs.wait_for(lambda: ovs.get_map("Interface", "vhu0", "status")
                             .get("num_of_vrings") == str(2 * queues), "all vrings")
                ovs.wait_for(lambda: "rx_q%d_good_packets" % (queues - 1) in
                             stats(ovs, "vhu0"), "one OVS rx queue per queue pair")
                a_stats, b_stats = self.run_a_to_b(ovs, a, b)
                s0, s1 = self.assertExactAccounting(ovs, a_stats, b_stats)
                for q in range(queues):
                    self.assertGreater(s0["rx_q%d_good_packets" % q], 0,
                                       "no traffic from guest queue %d" % q)
                self.assertEqual(sum(s0["rx_q%d_good_packets" % q] for q in range(queues)),
                                 s0["rx_packets"])
                for vm in self.vms:
                    vm.kill()
                self.vms = []

    def test_two_pmd_threads_sending_to_one_port_count_exactly(self):
        """Two PMD threads each poll one of vhu0's queues (pinned) and both send to
        vhu1.  With one queue on vhu1, OVS has fewer tx queues than threads and calls
        send with concurrent_txq: the backend serialises the threads on the guest's
        receive queue and the counters take atomic adds.  With four, each thread has
        a tx queue of its own and its counters take plain stores.  Either way what
        guest B received is what vhu1 counted, and the two add up with vhu0."""
        for b_queues, txq_mode in ((1, "XPS"), (4, "static")):
            with self.subTest(vhu1_queues=b_queues), \
                    self.sandbox(**{"pmd-cpu-mask": "0x3", "pmd-rxq-assign": "group",
                                    "pmd-rxq-isolate": "false"}) as ovs:
                self.two_port_bridge(ovs)
                ovs.vsctl("set", "Interface", "vhu0",
                          "other_config:pmd-rxq-affinity=0:0,1:1")
                a = self.start_vm(ovs, "vhu0", "a%d" % b_queues, "txonly", queues=2)
                b = self.start_vm(ovs, "vhu1", "b%d" % b_queues, "rxonly", queues=b_queues)
                self.wait_carrier(ovs, "vhu0", "vhu1")
                ovs.wait_for(lambda: ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-rxq-show")
                             .count("port: vhu0 ") == 2, "both of vhu0's queues polled")
                ovs.wait_for(lambda: "tx_q%d_good_packets" % (b_queues - 1)
                             in stats(ovs, "vhu1"), "vhu1's tx queues")
                rxqs = ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-rxq-show")
                threads = [block for block in rxqs.split("pmd thread")[1:]
                           if "port: vhu0 " in block]
                self.assertEqual(len(threads), 2, "vhu0's queues on one thread:\n" + rxqs)
                a_stats, b_stats = self.run_a_to_b(ovs, a, b, seconds=4.0)
                s0, s1 = self.assertExactAccounting(ovs, a_stats, b_stats)
                for q in range(2):
                    self.assertGreater(s0["rx_q%d_good_packets" % q], 0)
                # Which mode dpif-netdev chose, from the queues vhu1's sends used: one
                # each for the two PMD threads when static.
                used = [q for q in range(b_queues) if s1["tx_q%d_good_packets" % q]]
                self.assertEqual(len(used), 1 if txq_mode == "XPS" else 2,
                                 "vhu1's tx queues used: %s" % used)
                for vm in self.vms:
                    vm.kill()
                self.vms = []

    def test_client_mode_survives_guest_and_switch_restarts(self):
        with self.sandbox() as ovs:
            sock_a = os.path.join(ovs.root, "guest-a.sock")
            sock_b = os.path.join(ovs.root, "guest-b.sock")
            self.two_port_bridge(ovs, types=("dpdkvhostuserclient",) * 2,
                                 options=({"vhost-server-path": sock_a},
                                          {"vhost-server-path": sock_b}))
            a = start_vm(sock_a, "a", ovs.root, mode="txonly", server=True)
            b = start_vm(sock_b, "b", ovs.root, mode="rxonly", server=True)
            self.vms += [a, b]
            self.wait_carrier(ovs, "vhu0", "vhu1")
            self.assertExactAccounting(ovs, *self.run_a_to_b(ovs, a, b))

            # The guest on vhu1 restarts (QEMU restarting): the port reconnects.
            b.kill()
            os.unlink(sock_b)   # testpmd, unlike QEMU, leaves its socket file behind.
            ovs.wait_for(lambda: ovs.get("Interface", "vhu1", "link_state") == "down",
                         "vhu1 down after its guest died")
            b = start_vm(sock_b, "b2", ovs.root, mode="rxonly", server=True)
            self.vms.append(b)
            self.wait_carrier(ovs, "vhu1")
            before = settled_stats(ovs, ["vhu1"])[0]["tx_packets"]
            a_stats, b_stats = self.run_a_to_b(ovs, a, b)
            self.assertEqual(settled_stats(ovs, ["vhu1"])[0]["tx_packets"] - before,
                             b_stats["rx"])
            self.assertGreater(b_stats["rx"], 1000)
            self.assertGreaterEqual(int(ovs.get("Interface", "vhu1", "link_resets")), 2)

            # Our daemon restarts while both guests run: both ports reconnect.
            ovs.kill_vswitchd()
            ovs.start_vswitchd()
            self.wait_carrier(ovs, "vhu0", "vhu1")
            b_before = b.port_stats()[0]["rx"]
            self.run_a_to_b(ovs, a, b)
            self.assertGreater(b.port_stats()[0]["rx"] - b_before, 1000)

    def test_client_without_path_shows_error_and_path_change_reconnects(self):
        with self.sandbox() as ovs:
            ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0",
                      "datapath_type=netdev")
            ovs.vsctl("add-port", "br0", "vhu0", "--", "set", "Interface", "vhu0",
                      "type=dpdkvhostuserclient")
            ovs.wait_for(lambda: ovs.get("Interface", "vhu0", "error") != "[]",
                         "an error for a missing vhost-server-path")
            sock_1 = os.path.join(ovs.root, "one.sock")
            sock_2 = os.path.join(ovs.root, "two.sock")
            ovs.vsctl("set", "Interface", "vhu0", "options:vhost-server-path=" + sock_1)
            vm1 = start_vm(sock_1, "one", ovs.root, mode="rxonly", server=True)
            self.vms.append(vm1)
            self.wait_carrier(ovs, "vhu0")
            self.assertEqual(ovs.get_map("Interface", "vhu0", "status")["socket"], sock_1)
            # A new path: the port leaves the old guest and connects to the new one
            # (testpmd in server mode only shows its prompt once a client came).
            ovs.vsctl("set", "Interface", "vhu0", "options:vhost-server-path=" + sock_2)
            ovs.wait_for(lambda: ovs.get_map("Interface", "vhu0", "status")
                         .get("socket") == sock_2, "socket moved to the new path")
            vm2 = start_vm(sock_2, "two", ovs.root, mode="rxonly", server=True)
            self.vms.append(vm2)
            self.wait_carrier(ovs, "vhu0")
            vm2.wait_link_up()


if __name__ == "__main__":
    unittest.main()
