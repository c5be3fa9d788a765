"""Real Linux guests (QEMU, virtio_net) on our ovs-vswitchd's vhost-user ports.

Each test builds a private OVS (tests/integration/ovs_sandbox.py) with a netdev bridge
br0 and boots guests on its dpdkvhostuser / dpdkvhostuserclient ports.  The bridge's
local port br0 (an OVS internal port: a tap device, the exception path to the host's
kernel stack) lives in the daemon's private network namespace; the "host" side of a
test runs there (nsenter -t <daemon pid> -n) with address 10.0.0.254.  Guests are
10.0.0.1, 10.0.0.2.

Interface:statistics in the database refresh only every 5 s, so comparisons between a
guest's /sys counters and ours wait for a snapshot taken after the traffic stopped.
Guests and br0 run with IPv6 off and ARP tuned (ARP_TUNING): a neighbour entry, once
confirmed, stays valid for the whole test, and a first use of an unconfirmed one is
re-checked after 1 s instead of 5, so everyone falls silent shortly after the last ping
and the counters can be compared exactly.

Run by ctest (LABELS guest, one test per scenario); by hand:
    OVS_VHOSTUSER_DAEMON=build/bin/ovs-vswitchd-vhostuser /usr/bin/python3 -B \\
        -m unittest -v test_ovs_guests.OvsGuestTest.test_normal_action_two_guests
(from tests/guests/).  VHU_KEEP_LOGS=1 keeps the sandbox directory (guest console
logs, QEMU messages, ovs-vswitchd.log) even when a test passes; a failing test always
keeps it and prints where.
"""

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from guest_image import ensure_image  # noqa: E402
from ovs_sandbox import OvsSandbox  # noqa: E402
from qemu_guest import QemuGuest, VhostUserNic  # noqa: E402

SUBNET_PREFIX = "10.0.0."
HOST_IP = "10.0.0.254"
HOST_MAC = "02:00:00:00:00:fe"
# Counters a guest's /sys and our Interface:statistics both have, as (guest, ours):
# what the guest sent is what the port received, and the other way round.
GUEST_TO_PORT = [("tx_packets", "rx_packets"), ("tx_bytes", "rx_bytes"),
                 ("rx_packets", "tx_packets"), ("rx_bytes", "tx_bytes")]
PORT_DROP_COUNTERS = ["rx_dropped", "tx_dropped", "rx_errors", "tx_errors",
                      "ovs_tx_failure_drops", "ovs_tx_mtu_exceeded_drops"]
GUEST_DROP_COUNTERS = ["rx_dropped", "tx_dropped", "rx_errors", "tx_errors"]
# The PMD thread sleeps up to this long when it finds nothing to do (OVS 3.1's
# other_config:pmd-maxsleep, in microseconds): a spinning PMD would take a whole core
# from the guests' TCG vCPUs and from everyone else on a two-core machine for the
# whole test (measured here: 36-100 % of a core spinning, 2.75 % at 500 us).  Not
# more: OVS's PMD looks at which rx queues are enabled only every 1024 iterations, so
# a guest's queue is polled only up to 1024 sleeps after the guest enabled it (with
# 10000 us, seconds: first pings after boot were lost).  VHU_GUEST_PMD_MAXSLEEP=0
# makes it spin.
PMD_MAXSLEEP_US = os.environ.get("VHU_GUEST_PMD_MAXSLEEP", "500")
# /proc/sys/net/ipv4/neigh/IFACE/ settings of guests and br0.
ARP_TUNING = {"delay_first_probe_time": 1, "base_reachable_time_ms": 600000}


def arp_tuning_commands(iface):
    return ["echo %d > /proc/sys/net/ipv4/neigh/%s/%s" % (value, iface, name)
            for name, value in ARP_TUNING.items()]


class _ImageInBackground:
    """ensure_image() runs while the sandbox starts: when apt's lists changed, it asks
    apt-cache again, which takes seconds on a busy machine."""

    def __init__(self):
        self.image = self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            self.image = ensure_image()
        except Exception as e:  # Raised again in the test's thread.
            self.error = e

    def get(self):
        self.thread.join()
        if self.error:
            raise self.error
        return self.image


def daemon_path():
    path = os.environ.get("OVS_VHOSTUSER_DAEMON")
    if not path:
        raise unittest.SkipTest("OVS_VHOSTUSER_DAEMON is not set")
    return path


def port_stats(ovs, port):
    return {k: int(v) for k, v in ovs.get_map("Interface", port, "statistics").items()}


class PingResult(tuple):
    """(transmitted, received), with ping's whole output in .output."""

    def __new__(cls, transmitted, received, output):
        result = super().__new__(cls, (transmitted, received))
        result.output = output
        return result


def parse_ping(output):
    """(transmitted, received) from busybox's ping summary."""
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    if not m:
        raise AssertionError("no ping summary in:\n" + output)
    return PingResult(int(m.group(1)), int(m.group(2)), output)


class OvsGuestTest(unittest.TestCase):
    maxDiff = None
    # Regular expressions of ERR lines in ovs-vswitchd.log that a subclass expects.
    allowed_log_errors = ()

    # ---- Set-up ----

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (network namespaces)")
        self.started = time.monotonic()
        self.guests = []
        self.ovs = None
        self.image = _ImageInBackground()

    def tearDown(self):
        print("%s: %.1f s" % (self.id().split(".")[-1], time.monotonic() - self.started),
              file=sys.stderr, flush=True)

    def log(self, message):
        print("[%5.1f s] %s" % (time.monotonic() - self.started, message),
              file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def sandbox(self):
        """A sandbox with a netdev bridge br0 whose local port has a fixed MAC; the
        guests started in the block are killed before the sandbox stops.  On failure
        everything stays in the sandbox directory, which is printed."""
        keep = bool(os.environ.get("VHU_KEEP_LOGS"))
        config = {"pmd-cpu-mask": "0x1", "pmd-maxsleep": PMD_MAXSLEEP_US}
        with OvsSandbox(daemon_path(), other_config=config, keep=keep) as ovs:
            self.log("sandbox up in " + ovs.root)
            self.ovs = ovs
            ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0",
                      "datapath_type=netdev", "other-config:hwaddr=" + HOST_MAC)
            try:
                yield ovs
                self.assertEqual([line for line in ovs.log_lines()
                                  if not any(re.search(allowed, line)
                                             for allowed in self.allowed_log_errors)],
                                 [], "errors in ovs-vswitchd.log")
            except BaseException:
                self.save_guest_dmesg(ovs.root)
                raise
            finally:
                for guest in self.guests:
                    guest.kill()
                self.guests = []
                self.ovs = None

    def save_guest_dmesg(self, directory):
        """After a failure: each running guest's kernel log, next to its console log."""
        for guest in self.guests:
            if guest.is_running():
                try:
                    text = guest.run("dmesg", timeout=10, check=False)
                except Exception as e:
                    text = "(could not read dmesg: %s)\n" % e
                with open(os.path.join(directory, guest.name + ".dmesg"), "w") as f:
                    f.write(text)

    def add_port(self, ovs, name, kind="dpdkvhostuser", ofport=None, **options):
        args = ["add-port", "br0", name, "--", "set", "Interface", name, "type=" + kind]
        if ofport:
            args.append("ofport_request=%d" % ofport)
        args += ["options:%s=%s" % kv for kv in options.items()]
        ovs.vsctl(*args)

    def host(self, ovs, *argv, check=True, timeout=60):
        """Runs a command in the daemon's network namespace, where br0 is."""
        result = subprocess.run(["nsenter", "-t", str(ovs.vswitchd.pid), "-n", *argv],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode:
            raise AssertionError("%s: exit status %d: %s%s" % (
                " ".join(argv), result.returncode, result.stdout, result.stderr))
        return result.stdout + result.stderr

    def host_setup(self, ovs):
        """Addresses br0 in the daemon's namespace (again after a daemon restart: a new
        daemon has a new namespace), without IPv6 chatter."""
        self.host(ovs, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                  "net.ipv6.conf.default.disable_ipv6=1")
        ovs.wait_for(lambda: "br0" in self.host(ovs, "ip", "-o", "link", "show",
                                                check=False), "br0 in the namespace")
        self.host(ovs, "sysctl", "-qw", "net.ipv6.conf.br0.disable_ipv6=1",
                  *["net.ipv4.neigh.br0.%s=%d" % kv for kv in ARP_TUNING.items()])
        self.host(ovs, "ip", "addr", "replace", HOST_IP + "/24", "dev", "br0")
        self.host(ovs, "ip", "link", "set", "br0", "up")

    def host_ping(self, ovs, address, count=5, size=56, interval=0.2):
        out = self.host(ovs, "busybox", "ping", "-c", str(count), "-s", str(size),
                        "-i", str(interval), "-W", "3", address, check=False)
        return parse_ping(out)

    def boot(self, ovs, specs):
        """Starts one guest per spec at once and waits for all of them: spec is a dict
        with name, nics (VhostUserNic list), ip (address of eth0) and optional cpus,
        mtu.  Returns the guests."""
        guests = []
        image = self.image.get()
        for spec in specs:
            args = ["vhu.ip=%s%s/24" % (SUBNET_PREFIX, spec["ip"])]
            if spec.get("mtu"):
                args.append("vhu.mtu=%d" % spec["mtu"])
            guest = QemuGuest(image, spec["nics"], ovs.root, name=spec["name"],
                              cpus=spec.get("cpus"), kernel_args=args)
            self.guests.append(guest)
            guest.start()
            guests.append(guest)
        self.log("QEMU started: " + ", ".join(g.name for g in guests))
        for guest in guests:
            seconds = guest.wait_ready()
            self.log("%s: shell up %.1f s after QEMU started" % (guest.name, seconds))
            guest.run(" && ".join(arp_tuning_commands("eth0")))
        return guests

    def wait_carrier(self, guest, iface="eth0", timeout=30):
        deadline = time.monotonic() + timeout
        while guest.run("cat /sys/class/net/%s/carrier" % iface,
                        check=False).strip() != "1":
            if time.monotonic() > deadline:
                self.fail("%s: %s has no carrier after %d s" % (guest.name, iface,
                                                                 timeout))
            time.sleep(0.3)

    def wait_link(self, ovs, port, state="up", timeout=30):
        ovs.wait_for(lambda: ovs.get("Interface", port, "link_state") == state,
                     "%s link_state %s" % (port, state), timeout=timeout)

    def openflow_link_up(self, ovs, port):
        """The port's link as OpenFlow shows it (ofproto reads the netdev's carrier
        itself, unlike the database's link_state, which the bridge writes)."""
        desc = ovs.ofctl("dump-ports-desc", "br0")
        block = re.search(r"^ \d+\(%s\):.*?(?=^ \S|\Z)" % re.escape(port), desc,
                          re.M | re.S)
        state = re.search(r"^\s+state:\s+(.*)$", block.group(0), re.M).group(1)
        return "LINK_DOWN" not in state

    def wait_port_up(self, ovs, port, timeout=30):
        """Waits until the backend has the guest ready and OpenFlow sees the link."""
        ovs.wait_for(lambda: "state: ready" in ovs.appctl(
                         "ovs-vswitchd", "vhostuser/show", port, check=False)
                     and self.openflow_link_up(ovs, port),
                     "%s ready with its link up in OpenFlow" % port, timeout=timeout)

    def guest_ping(self, guest, address, count=5, size=56, interval=0.2, cpu=None):
        command = "ping -c %d -s %d -i %s -W 3 %s" % (count, size, interval, address)
        if cpu is not None:
            command = "taskset -c %d %s" % (cpu, command)
        out = guest.run(command, check=False, timeout=30 + count * interval)
        return parse_ping(out)

    def assertPingOk(self, result, count, what):
        if tuple(result) != (count, count):
            self.fail("%s: %d transmitted, %d received, expected %d and %d:\n%s%s"
                      % (what, result[0], result[1], count, count, result.output,
                         self.switch_state()))

    @staticmethod
    def coverage(ovs, counter, at_least=0, timeout=10):
        """The daemon's coverage counter 'counter' (a total since it started), once it
        reaches 'at_least' or 'timeout' s have passed: a PMD thread adds its counts to
        the totals only about once a second."""
        deadline = time.monotonic() + timeout
        while True:
            value = int(ovs.appctl("ovs-vswitchd", "coverage/read-counter", counter))
            if value >= at_least or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def switch_state(self):
        """vhostuser/show and the ports' statistics, for a failure message."""
        ovs = self.ovs
        if not ovs or not ovs.vswitchd:
            return ""
        text = "\nvhostuser/show:\n" + ovs.appctl("ovs-vswitchd", "vhostuser/show",
                                                 check=False)
        for port in ovs.vsctl("list-ports", "br0", check=False).split():
            stats = {k: v for k, v in ovs.get_map("Interface", port, "statistics").items()
                     if v != "0" and not re.match(r"[rt]x_q\d|[rt]x_\d", k)}
            text += "\n%s statistics (up to 5 s old): %s" % (port, stats)
        return text

    def ping_until_answered(self, guest, address, timeout=30):
        """Pings once a second until an answer comes (a link that just came back)."""
        deadline = time.monotonic() + timeout
        while self.guest_ping(guest, address, count=1, interval=1)[1] != 1:
            if time.monotonic() > deadline:
                self.fail("%s: no answer from %s within %d s" % (guest.name, address,
                                                                  timeout))

    def quiet_stats(self, guest, settle=2.0, timeout=30):
        """The guest's eth0 counters once they have not moved for `settle` seconds."""
        deadline = time.monotonic() + timeout
        previous = guest.interface_stats("eth0")
        still_since = time.monotonic()
        while True:
            time.sleep(0.5)
            current = guest.interface_stats("eth0")
            if current != previous:
                previous, still_since = current, time.monotonic()
            elif time.monotonic() - still_since >= settle:
                return current
            if time.monotonic() > deadline:
                self.fail("%s: eth0 counters still moving after %d s"
                          % (guest.name, timeout))

    def assertCountersAgree(self, ovs, pairs, drops=None, guest_baseline=None,
                            timeout=15):
        """pairs: [(guest, port)].  Once every guest is quiet, waits for a statistics
        snapshot in the database that matches (ovs-vswitchd writes one every 5 s) and
        asserts that each guest's eth0 and its port agree exactly, with no drops but
        those in `drops` ({port: {counter: value}}).  guest_baseline ({port: guest
        counters}): compare what the guest counted since then (when the port's
        counters started from zero: a new daemon).  Returns {port: stats}."""
        guest_side = {port: self.quiet_stats(guest) for guest, port in pairs}

        def expected(port):
            g = guest_side[port]
            base = (guest_baseline or {}).get(port, {})
            return {ours: g[theirs] - base.get(theirs, 0)
                    for theirs, ours in GUEST_TO_PORT}

        def snapshot():
            return {port: port_stats(ovs, port) for _, port in pairs}

        deadline = time.monotonic() + timeout
        while True:
            ours = snapshot()
            if all({k: ours[p].get(k) for k in expected(p)} == expected(p)
                   for _, p in pairs) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for guest, port in pairs:
            self.assertEqual({k: ours[port].get(k) for k in expected(port)},
                             expected(port),
                             "%s's eth0 against %s's Interface:statistics"
                             % (guest.name, port))
            for counter in PORT_DROP_COUNTERS:
                self.assertEqual(ours[port].get(counter),
                                 (drops or {}).get(port, {}).get(counter, 0),
                                 "%s %s" % (port, counter))
            for counter in GUEST_DROP_COUNTERS:
                self.assertEqual(guest_side[port][counter], 0,
                                 "%s eth0 %s" % (guest.name, counter))
            # Still quiet: the snapshot compared was of a quiet guest.
            self.assertEqual(guest.interface_stats("eth0"), guest_side[port],
                             "%s's counters moved during the comparison" % guest.name)
        return ours

    # ---- Scenarios ----

    def test_normal_action_two_guests(self):
        """Two guests on dpdkvhostuser ports ping each other through the NORMAL action
        (MAC learning); their eth0 counters and our statistics agree exactly."""
        with self.sandbox() as ovs:
            self.add_port(ovs, "vhu0", ofport=1)
            self.add_port(ovs, "vhu1", ofport=2)
            # Nobody connects to vhu2: it has no transmit queue, so whatever the bridge
            # floods there the datapath drops and counts as sent to an invalid port,
            # which shows what was flooded and what went to a learned port.
            self.add_port(ovs, "vhu2", ofport=3)
            invalid_port_drops = self.coverage(ovs, "datapath_drop_invalid_port")
            flows = ovs.ofctl("dump-flows", "br0")
            self.assertIn("actions=NORMAL", flows)
            a, b = self.boot(ovs, [
                {"name": "a", "ip": 1,
                 "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu0"))]},
                {"name": "b", "ip": 2,
                 "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu1"))]}])
            for guest in (a, b):
                self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            self.wait_link(ovs, "vhu1")
            self.assertEqual(ovs.get("Interface", "vhu2", "link_state"), "down")

            self.assertPingOk(self.guest_ping(a, SUBNET_PREFIX + "2", count=10), 10,
                              "a pings b")
            self.assertPingOk(self.guest_ping(b, SUBNET_PREFIX + "1", count=10), 10,
                              "b pings a")
            self.assertPingOk(self.guest_ping(a, SUBNET_PREFIX + "2", count=5,
                                              size=1472), 5, "a pings b, full frames")

            fdb = ovs.appctl("ovs-vswitchd", "fdb/show", "br0")
            for guest, ofport in ((a, 1), (b, 2)):
                mac = guest.run("cat /sys/class/net/eth0/address").strip()
                self.assertRegex(fdb, r"(?m)^\s+%d\s+0\s+%s\s" % (ofport, re.escape(mac)),
                                 "%s's MAC learned on port %d" % (guest.name, ofport))

            stats = self.assertCountersAgree(ovs, [(a, "vhu0"), (b, "vhu1")])
            s0, s1 = stats["vhu0"], stats["vhu1"]
            self.assertGreaterEqual(s0["rx_packets"], 25)
            # Every frame one guest sent went to the other one, nothing got lost.
            self.assertEqual(s0["rx_packets"], s1["tx_packets"])
            self.assertEqual(s1["rx_packets"], s0["tx_packets"])
            # Learning: only the broadcasts (ARP requests) were flooded, to vhu2 as
            # well, where the datapath drops them; the unicast frames were not.  vhu2,
            # never sent anything, counts nothing itself.
            broadcasts = s0["rx_broadcast_packets"] + s1["rx_broadcast_packets"]
            self.assertGreaterEqual(broadcasts, 1)
            self.assertEqual(
                self.coverage(ovs, "datapath_drop_invalid_port",
                              at_least=invalid_port_drops + broadcasts)
                - invalid_port_drops,
                broadcasts, "frames flooded to the never-connected port")
            self.assertEqual(port_stats(ovs, "vhu2").get("tx_dropped"), 0)
            self.assertEqual(s0["rx_1024_to_1522_packets"], 5)
            self.assertEqual(s0["rx_q0_good_packets"], s0["rx_packets"])
            self.assertEqual(s1["tx_q0_good_packets"], s1["tx_packets"])

    def test_client_port_survives_qemu_and_daemon_restarts(self):
        """A guest on a dpdkvhostuserclient port (QEMU listens): QEMU restarts and
        the port reconnects; the daemon restarts under the running guest and the
        guest's traffic resumes."""
        with self.sandbox() as ovs:
            sock = os.path.join(ovs.root, "guest.sock")
            self.add_port(ovs, "vhu0", kind="dpdkvhostuserclient",
                          **{"vhost-server-path": sock})
            self.host_setup(ovs)
            spec = {"name": "a", "ip": 1, "nics": [VhostUserNic(sock, qemu_listens=True)]}
            (guest,) = self.boot(ovs, [spec])
            self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            self.assertPingOk(self.guest_ping(guest, HOST_IP), 5, "guest pings br0")
            status = ovs.get_map("Interface", "vhu0", "status")
            self.assertEqual((status["mode"], status["status"], status["socket"]),
                             ("client", "connected", sock))
            resets = int(ovs.get("Interface", "vhu0", "link_resets"))
            self.log("QEMU restarts")

            # QEMU goes away (as a crash would) and comes back on the same socket.
            guest.kill()
            self.wait_link(ovs, "vhu0", "down")
            self.assertEqual(ovs.get_map("Interface", "vhu0", "status")["status"],
                             "disconnected")
            spec["name"] = "a2"
            (guest,) = self.boot(ovs, [spec])
            self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            self.assertGreaterEqual(int(ovs.get("Interface", "vhu0", "link_resets")),
                                    resets + 2)
            self.assertPingOk(self.guest_ping(guest, HOST_IP), 5,
                              "the restarted guest pings br0")
            self.assertPingOk(self.host_ping(ovs, SUBNET_PREFIX + "1"), 5,
                              "br0 pings the restarted guest")

            # The daemon dies under the running guest and starts again (in a new
            # network namespace, where br0 needs its address again).
            carrier_changes = int(guest.run("cat /sys/class/net/eth0/carrier_changes"))
            self.log("the daemon restarts")
            ovs.kill_vswitchd()
            ovs.start_vswitchd()
            self.host_setup(ovs)
            # Not the database's link_state: see test_daemon_restarts_keep_link_state.
            self.wait_port_up(ovs, "vhu0")
            self.wait_carrier(guest)
            # The new daemon counts from zero: from here on, what the guest counts
            # must be what the port counts, no frame lost or taken twice across the
            # reconnection (the backend resumes each ring where the guest left it).
            since_restart = self.quiet_stats(guest)
            self.ping_until_answered(guest, HOST_IP)
            self.log("the guest's pings are answered again")
            self.assertPingOk(self.guest_ping(guest, HOST_IP, count=10), 10,
                              "the guest pings br0 after the daemon restarted")
            self.assertPingOk(self.host_ping(ovs, SUBNET_PREFIX + "1"), 5,
                              "br0 pings the guest after the daemon restarted")
            # The guest saw its link go down and up again (QEMU does that when its
            # backend leaves and comes back).
            self.assertGreaterEqual(
                int(guest.run("cat /sys/class/net/eth0/carrier_changes")),
                carrier_changes + 2)
            stats = self.assertCountersAgree(ovs, [(guest, "vhu0")],
                                             guest_baseline={"vhu0": since_restart})
            self.assertGreaterEqual(stats["vhu0"]["rx_packets"], 16)

    # A regression test: a dpdkvhostuserclient port whose guest (QEMU listening) is
    # ready within milliseconds of a daemon restart used to keep link_state "down" in
    # the database for good (about one restart in five): its "up" raced the bridge's
    # initial status transaction and OVS's IDL dropped the rewrite as unchanged.  The
    # provider now announces a port's state once more a second after it changes.
    def test_daemon_restarts_keep_link_state(self):
        """The daemon restarts again and again under a guest on a client port: each
        time the database's link_state comes back "up" with the port."""
        stale = None
        with self.sandbox() as ovs:
            sock = os.path.join(ovs.root, "guest.sock")
            self.add_port(ovs, "vhu0", kind="dpdkvhostuserclient",
                          **{"vhost-server-path": sock})
            (guest,) = self.boot(ovs, [{"name": "a", "ip": 1,
                                        "nics": [VhostUserNic(sock, qemu_listens=True)]}])
            self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            for restart in range(1, 31):
                ovs.kill_vswitchd()
                ovs.start_vswitchd()
                self.wait_port_up(ovs, "vhu0")
                deadline = time.monotonic() + 5
                while (ovs.get("Interface", "vhu0", "link_state") != "up"
                       and time.monotonic() < deadline):
                    time.sleep(0.1)
                row = ovs.vsctl("--columns=link_state,link_resets,status", "list",
                                "Interface", "vhu0")
                if ovs.get("Interface", "vhu0", "link_state") != "up":
                    stale = ("after restart %d the port is up (OpenFlow, "
                             "vhostuser/show), but 5 s later the database still says:\n%s"
                             % (restart, row))
                    self.log(stale)
                    break
            else:
                self.log("30 restarts, link_state up after each")
        # Outside the sandbox, which a failure inside would keep: this one is expected.
        if stale:
            self.fail(stale)

    def test_multiqueue_guest_uses_every_queue_pair(self):
        """A guest with more queue pairs than the eight earlier versions offered, one
        vCPU each, enables them all.  Pings from each vCPU leave on that vCPU's queue,
        and each reaches OVS on its own rx queue.  Frames for the guest leave OVS on the
        queue of the thread that forwards them: the PMD thread's for frames from
        another guest, the main thread's for frames from br0, so two of the guest's
        receive queues carry them.  Our per-queue counters move where they should and
        add up to the totals."""
        queues = 10
        pings = 3
        with self.sandbox() as ovs:
            self.add_port(ovs, "vhu0")
            self.add_port(ovs, "vhu1")
            self.host_setup(ovs)
            mq, peer = self.boot(ovs, [
                {"name": "mq", "ip": 1, "cpus": queues,
                 "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu0"), queues=queues)]},
                {"name": "peer", "ip": 2,
                 "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu1"))]}])
            for guest in (mq, peer):
                self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            self.wait_link(ovs, "vhu1")
            self.assertEqual(mq.run("ls -d /sys/class/net/eth0/queues/tx-* | wc -l")
                             .strip(), str(queues))
            every = ",".join(str(q) for q in range(queues))
            ovs.wait_for(lambda: ovs.get_map("Interface", "vhu0", "status")
                         .get("tx_queues_enabled_in_guest") == every,
                         "every queue pair enabled")
            status = ovs.get_map("Interface", "vhu0", "status")
            self.assertEqual(status["num_of_vrings"], str(2 * queues))
            self.assertEqual(status["rx_queues_enabled_in_guest"], every)
            ovs.wait_for(lambda: "rx_q%d_good_packets" % (queues - 1)
                         in port_stats(ovs, "vhu0"), "an OVS rx queue per queue pair")

            for cpu in range(queues):
                self.assertPingOk(self.guest_ping(mq, SUBNET_PREFIX + "2", count=pings,
                                                  interval=0.1, cpu=cpu),
                                  pings, "ping from vCPU %d" % cpu)
            self.assertPingOk(self.host_ping(ovs, SUBNET_PREFIX + "1", count=10), 10,
                              "br0 pings the guest")
            stats = self.assertCountersAgree(ovs, [(mq, "vhu0"), (peer, "vhu1")])["vhu0"]
            per_queue = {k: v for k, v in stats.items() if re.match(r"[rt]x_q\d", k)}
            self.log("per-queue counters: %s" % per_queue)
            for q in range(queues):
                self.assertGreaterEqual(stats["rx_q%d_good_packets" % q], pings,
                                        "rx queue %d" % q)
            for q in (0, 1):
                self.assertGreaterEqual(stats["tx_q%d_good_packets" % q], pings,
                                        "tx queue %d" % q)
            for direction in ("rx", "tx"):
                for unit in ("packets", "bytes"):
                    self.assertEqual(
                        sum(stats["%s_q%d_good_%s" % (direction, q, unit)]
                            for q in range(queues)),
                        stats["%s_%s" % (direction, unit)],
                        "%s queues add up to %s_%s" % (direction, direction, unit))
            shown = ovs.appctl("ovs-vswitchd", "vhostuser/show", "vhu0")
            for vring in list(range(1, 2 * queues, 2)) + [0, 2]:
                packets = int(re.search(r"vring %d .*packets (\d+)" % vring,
                                        shown).group(1))
                self.assertGreaterEqual(packets, pings, "vring %d: %s" % (vring, shown))

    def test_guest_without_mergeable_rx_buffers(self):
        """mrg_rxbuf=off: a guest's receive buffers are its own layout, one chain per
        frame with the header in it.  Linux posts single buffers big enough for a
        1500-byte MTU ("small"), or with a larger MTU chains of pages ("big").  One
        guest of each kind: pings of every size up to the MTU pass both ways, and
        the counters agree."""
        with self.sandbox() as ovs:
            self.add_port(ovs, "vhu0")
            self.add_port(ovs, "vhu1")
            for port in ("vhu1", "br0"):
                ovs.vsctl("set", "Interface", port, "mtu_request=9000")
            self.host_setup(ovs)
            small, big = self.boot(ovs, [
                {"name": "small", "ip": 1,
                 "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu0"),
                                       device_options={"mrg_rxbuf": "off"})]},
                {"name": "big", "ip": 2,
                 "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu1"), host_mtu=9000,
                                       device_options={"mrg_rxbuf": "off"})]}])
            for guest in (small, big):
                self.wait_carrier(guest)
            self.assertEqual(big.run("cat /sys/class/net/eth0/mtu").strip(), "9000")
            for port in ("vhu0", "vhu1"):
                self.wait_link(ovs, port)
                features = ovs.get_map("Interface", port, "status")["features"]
                self.assertNotIn("mrg_rxbuf", features.split(","))
            self.assertEqual(ovs.get_map("Interface", "vhu1", "status").get("mtu"), "9000")
            self.assertIn("mtu 9000", self.host(ovs, "ip", "link", "show", "br0"))

            for size in (56, 1000, 1472):
                for guest in (small, big):
                    self.assertPingOk(self.guest_ping(guest, HOST_IP, count=3, size=size),
                                      3, "%s pings br0 with %d bytes" % (guest.name, size))
                    address = SUBNET_PREFIX + ("1" if guest is small else "2")
                    self.assertPingOk(self.host_ping(ovs, address, count=3, size=size), 3,
                                      "br0 pings %s with %d bytes" % (guest.name, size))
                self.assertPingOk(self.guest_ping(small, SUBNET_PREFIX + "2", count=3,
                                                  size=size), 3,
                                  "small pings big with %d bytes" % size)
            for size in (8000, 8972):
                self.assertPingOk(self.guest_ping(big, HOST_IP, count=3, size=size), 3,
                                  "big pings br0 with %d bytes" % size)
                self.assertPingOk(self.host_ping(ovs, SUBNET_PREFIX + "2", count=3,
                                                 size=size), 3,
                                  "br0 pings big with %d bytes" % size)
            stats = self.assertCountersAgree(ovs, [(small, "vhu0"), (big, "vhu1")])
            # Sizes 1000 and 1472: small's requests to br0 and big, its answers to
            # br0; big's to br0, its answers to br0 and small.
            self.assertEqual(stats["vhu0"]["rx_1024_to_1522_packets"], 18)
            self.assertEqual(stats["vhu0"]["tx_1024_to_1522_packets"], 18)
            self.assertEqual(stats["vhu1"]["rx_1024_to_1522_packets"], 18)
            self.assertEqual(stats["vhu1"]["rx_1523_to_max_packets"], 12)
            self.assertEqual(stats["vhu1"]["tx_1523_to_max_packets"], 12)

    def test_jumbo_frames_between_two_guests(self):
        """mtu_request=9000 on both ports and MTU 9000 in both guests: 8000-byte pings
        pass between the guests.  Before the ports' MTU is raised, the same frames
        are dropped as too big for the port and counted so."""
        with self.sandbox() as ovs:
            self.add_port(ovs, "vhu0")
            self.add_port(ovs, "vhu1")
            a, b = self.boot(ovs, [
                {"name": "ja", "ip": 1, "mtu": 9000,
                 "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu0"))]},
                {"name": "jb", "ip": 2, "mtu": 9000,
                 "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu1"))]}])
            for guest in (a, b):
                self.wait_carrier(guest)
                self.assertEqual(guest.run("cat /sys/class/net/eth0/mtu").strip(), "9000")
            self.wait_link(ovs, "vhu0")
            self.wait_link(ovs, "vhu1")
            # Resolves the neighbours with small frames; then a jumbo frame is too big
            # for the ports' MTU of 1500.
            self.assertPingOk(self.guest_ping(a, SUBNET_PREFIX + "2", count=1), 1,
                              "a pings b, small frames")
            self.assertEqual(self.guest_ping(a, SUBNET_PREFIX + "2", count=2,
                                             size=8000), (2, 0),
                             "8000-byte pings with the ports' MTU at 1500")
            ovs.wait_for(lambda: port_stats(ovs, "vhu1")
                         .get("ovs_tx_mtu_exceeded_drops") == 2,
                         "vhu1 ovs_tx_mtu_exceeded_drops=2", timeout=15)

            for port in ("vhu0", "vhu1"):
                ovs.vsctl("set", "Interface", port, "mtu_request=9000")
            for port in ("vhu0", "vhu1"):
                ovs.wait_for(lambda: ovs.get("Interface", port, "mtu") == "9000",
                             port + " mtu 9000")
            self.assertPingOk(self.guest_ping(a, SUBNET_PREFIX + "2", count=10,
                                              size=8000), 10, "a pings b, 8000 bytes")
            self.assertPingOk(self.guest_ping(b, SUBNET_PREFIX + "1", count=10,
                                              size=8000), 10, "b pings a, 8000 bytes")
            self.assertPingOk(self.guest_ping(a, SUBNET_PREFIX + "2", count=5,
                                              size=8972), 5, "a pings b, full 9000 MTU")
            stats = self.assertCountersAgree(
                ovs, [(a, "vhu0"), (b, "vhu1")],
                drops={"vhu1": {"tx_dropped": 2, "ovs_tx_mtu_exceeded_drops": 2}})
            # Jumbo frames: 10 + 10 of 8042 bytes, 5 of 9014 bytes each way, and the
            # 2 that vhu1 refused before.
            self.assertEqual(stats["vhu0"]["rx_1523_to_max_packets"], 27)
            self.assertEqual(stats["vhu1"]["rx_1523_to_max_packets"], 25)
            self.assertEqual(stats["vhu0"]["tx_1523_to_max_packets"], 25)
            self.assertEqual(stats["vhu1"]["tx_1523_to_max_packets"], 25)
    def test_guest_driver_reload_releases_resources(self):
        """The guest unloads and reloads virtio_net (a driver reset: QEMU stops and
        restarts the vrings on the same connection, with new eventfds and a new
        memory table).  The port goes down and up, traffic resumes, and our daemon's
        open files and memory mappings come back to where they were."""
        with self.sandbox() as ovs:
            self.add_port(ovs, "vhu0")
            self.host_setup(ovs)
            pid = ovs.vswitchd.pid
            unconnected = self.daemon_resources(pid)
            (guest,) = self.boot(ovs, [{
                "name": "reload", "ip": 1,
                "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu0"))]}])
            self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            self.assertPingOk(self.guest_ping(guest, HOST_IP), 5, "first ping")
            baseline = self.daemon_resources(pid)
            self.log("daemon resources at the start: %s" % (baseline,))
            self.assertGreaterEqual(baseline[3], 1, "the daemon maps the guest's memory")

            for cycle in range(1, 4):
                guest.run("ip link set eth0 down; rmmod virtio_net")
                self.wait_link(ovs, "vhu0", "down")
                self.assertEqual(guest.run("ls /sys/class/net").split(), ["lo"])
                shown = ovs.appctl("ovs-vswitchd", "vhostuser/show", "vhu0")
                self.assertIn("state: connected, not ready", shown)
                guest.run("insmod /lib/modules/virtio_net.ko")
                guest.wait_for_interface("eth0")
                guest.run(" && ".join(["ip addr add %s1/24 dev eth0" % SUBNET_PREFIX,
                                       "ip link set eth0 up"]
                                      + arp_tuning_commands("eth0")))
                self.wait_carrier(guest)
                self.wait_link(ovs, "vhu0")
                self.assertPingOk(self.guest_ping(guest, HOST_IP), 5,
                                  "ping after reload %d" % cycle)
                self.assertPingOk(self.host_ping(ovs, SUBNET_PREFIX + "1"), 5,
                                  "br0 pings the guest after reload %d" % cycle)
                now = self.daemon_resources(pid, expect=baseline)
                self.log("daemon resources after reload %d: %s" % (cycle, now))
                self.assertEqual(now, baseline,
                                 "(fds, mapping lines, mapped bytes, guest memory "
                                 "mappings) after reload %d"
                                 % cycle)
            shown = ovs.appctl("ovs-vswitchd", "vhostuser/show", "vhu0")
            self.assertIn("connects 1, disconnects 0", shown)
            self.assertGreaterEqual(int(ovs.get("Interface", "vhu0", "link_resets")), 7)

            # The guest goes away: its memory is unmapped, its fds closed.
            guest.kill()
            self.wait_link(ovs, "vhu0", "down")
            ovs.wait_for(lambda: "state: disconnected" in
                         ovs.appctl("ovs-vswitchd", "vhostuser/show", "vhu0"),
                         "vhu0 disconnected")
            gone = self.daemon_resources(pid, expect=unconnected)
            self.log("daemon resources before the guest came: %s, after it left: %s"
                     % (unconnected, gone))
            self.assertEqual(gone[3], 0, "guest memory still mapped")
            self.assertEqual(gone, unconnected,
                             "(fds, mapping lines, mapped bytes, guest memory mappings) "
                             "before the guest came and after it left")

    @staticmethod
    def daemon_resources(pid, expect=None, timeout=10):
        """(open fds, lines in /proc/PID/maps, total bytes mapped, mappings of guest
        memory) of the daemon.  A tool talking to the daemon holds a socket for a
        moment: reads until two reads in a row agree (and match `expect`, if given,
        or time runs out).  Pipes are left out, as in daemon_footprint.py: OVS gives
        a thread a latch (a pipe) the first time it waits on a seq, and a PMD thread
        first does when a guest's queues coming up reload it."""
        def read():
            fds = 0
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    fds += not os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("pipe:")
                except OSError:
                    pass    # Closed meanwhile.
            lines = size = guest = 0
            with open("/proc/%d/maps" % pid) as f:
                for line in f:
                    start, end = line.split()[0].split("-")
                    lines += 1
                    size += int(end, 16) - int(start, 16)
                    # QEMU's memory-backend-memfd, the guest's RAM.
                    guest += "/memfd:memory-backend-memfd" in line
            return fds, lines, size, guest

        deadline = time.monotonic() + timeout
        previous = read()
        while True:
            time.sleep(0.3)
            current = read()
            if current == previous and (expect is None or current == expect):
                return current
            if time.monotonic() > deadline:
                return current
            previous = current

    def test_host_reaches_guest_through_internal_port(self):
        """The bridge's internal port br0 is the exception path to the host's kernel
        stack: the host (the daemon's network namespace) and the guest ping each
        other through it, and the counters agree on all three sides."""
        with self.sandbox() as ovs:
            self.add_port(ovs, "vhu0")
            self.host_setup(ovs)
            (guest,) = self.boot(ovs, [{
                "name": "inner", "ip": 1,
                "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu0"))]}])
            self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            self.assertEqual(ovs.get("Interface", "br0", "type"), "internal")
            self.assertPingOk(self.host_ping(ovs, SUBNET_PREFIX + "1", count=10), 10,
                              "the host pings the guest")
            self.assertPingOk(self.host_ping(ovs, SUBNET_PREFIX + "1", count=5,
                                             size=1472), 5,
                              "the host pings the guest with full frames")
            self.assertPingOk(self.guest_ping(guest, HOST_IP, count=10), 10,
                              "the guest pings the host")
            # Three ARP requests nobody answers: traffic that goes one way only.
            guest.run("arping -c 3 -w 4 -I eth0 %s99" % SUBNET_PREFIX, check=False,
                      timeout=15)
            guest_mac = guest.run("cat /sys/class/net/eth0/address").strip()
            neighbours = self.host(ovs, "ip", "neigh", "show", "dev", "br0")
            self.assertIn("%s1 lladdr %s" % (SUBNET_PREFIX, guest_mac), neighbours)
            stats = self.assertCountersAgree(ovs, [(guest, "vhu0")])["vhu0"]
            # /sys is the host's; ip reads the namespace's counters over netlink.
            host_side = json.loads(self.host(ovs, "ip", "-j", "-s", "link", "show",
                                             "br0"))[0]["stats64"]
            self.log("vhu0 %s; br0 in the kernel %s" % (stats, host_side))
            # What the host sent is what reached the guest, and the other way round.
            self.assertEqual((host_side["tx"]["packets"], host_side["tx"]["bytes"]),
                             (stats["tx_packets"], stats["tx_bytes"]),
                             "br0 transmitted (kernel) against vhu0 transmitted")
            self.assertEqual((host_side["rx"]["packets"], host_side["rx"]["bytes"]),
                             (stats["rx_packets"], stats["rx_bytes"]),
                             "br0 received (kernel) against vhu0 received")
            self.assertGreaterEqual(stats["rx_broadcast_packets"], 3)
            self.assertEqual(stats["rx_1024_to_1522_packets"], 5)
            self.assertEqual(stats["tx_1024_to_1522_packets"], 5)


if __name__ == "__main__":
    unittest.main()
