"""An AF_XDP NIC and a real Linux guest on one netdev bridge of our ovs-vswitchd.

The "NIC" is a veth pair.  Both ends are created in a network namespace of the test's
own (far0 stays there, with 10.0.0.100, the machine on the wire); the other end, nic0,
moves into the daemon's network namespace and joins br0 as an AF_XDP port (type afxdp
with options:xdp-mode generic or native, or afxdp-nonpmd).  A QEMU guest (TCG, Debian's
cloud kernel, tests/guests) is on the dpdkvhostuser port vhu0 of the same bridge, with
10.0.0.1; the bridge forwards with NORMAL (MAC learning).

Each test:
  - pings the guest from the namespace and the namespace from the guest;
  - floods the guest from the namespace with a fixed count of UDP frames (a raw
    socket, frame_flood.py), then floods the namespace from the guest (the guest
    kernel's pktgen).  Both are addressed to the receiver's MAC but to 10.0.0.99, an
    address nobody has, so the receiver's stack drops them without a word and the
    counts stay exact;
  - compares the counters: what far0 sent (its kernel's counters, read in the
    namespace) is what nic0 received, vhu0 sent and the guest's eth0 received, and the
    other way round, in packets and bytes, with no drop anywhere.  nic0's
    Interface:statistics are the kernel's counters of the daemon's end of the veth
    (OVS's AF_XDP ports report those), and the database refreshes them every 5 s.

Native XDP on a veth counts received bytes without the 14-byte Ethernet header (the
kernel's veth XDP path counts the frame after it took the header off): in native mode
nic0's rx_bytes, and far0's tx_bytes (the veth reports its peer's receive count as its
transmit count), are 14 bytes a frame short of what vhu0 sent; the tests assert that
difference exactly.  native-with-zerocopy is refused on a veth (no zero-copy support in
the driver): the port gets an error and no AF_XDP socket, and the native test checks
that too.

Our ovs-vswitchd logs `setrlimit(RLIMIT_MEMLOCK) failed` at ERR level when AF_XDP
ports are created on a machine where root lacks CAP_SYS_RESOURCE (as here): OVS asks
for an unlimited RLIMIT_MEMLOCK, and CAP_IPC_LOCK lets the kernel pin the umem anyway.
That line is an error the tests accept; so are, in the tests that get native XDP, the
lines OVS logs for the zero-copy socket it could not create (xdp-mode
native-with-zerocopy, and the first attempt of the default mode, best-effort).

Namespaces are named vhuafx-PID-N (PID: the test's process).  They are removed in a
finally block, on SIGTERM too, and a test first removes those left by a test process
that no longer runs (a killed run).  The daemon's own namespace, with nic0 in it, ends
with the daemon.

Run by ctest (LABELS guest afxdp); by hand, from tests/afxdp/:
    OVS_VHOSTUSER_DAEMON=../../build/bin/ovs-vswitchd-vhostuser /usr/bin/python3 -B \\
        -m unittest -v test_afxdp_guest.AfxdpGuestTest.test_generic
VHU_KEEP_LOGS=1 keeps the sandbox directory, as in tests/guests.
"""

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "guests"))
from qemu_guest import VhostUserNic  # noqa: E402
from test_ovs_guests import (ARP_TUNING, SUBNET_PREFIX, OvsGuestTest,  # noqa: E402
                             parse_ping, port_stats)

FLOOD = os.path.join(HERE, "frame_flood.py")
NETNS_DIR = "/run/netns"
NETNS_PREFIX = "vhuafx-"
FAR_IP = SUBNET_PREFIX + "100"
GUEST_IP = SUBNET_PREFIX + "1"
# Nobody has this address: frames to it are dropped silently by whoever gets them.
NOBODY_IP = SUBNET_PREFIX + "99"
ETHERNET_HEADER = 14
# Frames in each flood, and the rate of the namespace's flood (frames per second): a
# TCG guest takes frames in at a few ten thousand a second; what goes faster waits in
# the rings (vhu0's, the AF_XDP socket's), which hold a few thousand.
FLOOD_FRAMES = int(os.environ.get("VHU_AFXDP_FLOOD_FRAMES", "5000"))
FLOOD_RATE = int(os.environ.get("VHU_AFXDP_FLOOD_RATE", "10000"))
# Those OVS reports for the port (an AF_XDP port leaves out a counter the kernel
# does not have, e.g. rx_dropped before anything was dropped).
NIC_DROP_COUNTERS = ["rx_dropped", "tx_dropped", "rx_errors", "tx_errors",
                     "xsk_queue_0_rx_dropped", "xsk_queue_0_rx_invalid_descs",
                     "xsk_queue_0_tx_invalid_descs"]
MEMLOCK_ERROR = r"\|netdev_afxdp\|ERR\|setrlimit\(RLIMIT_MEMLOCK\) failed"
# What OVS logs when a zero-copy AF_XDP socket cannot be had (xdp-mode
# native-with-zerocopy, or best-effort's first attempt) on nic0.
ZEROCOPY_ERRORS = (
    r"\|netdev_afxdp\|ERR\|xsk_socket__create failed \(Operation not supported\) "
    r"mode: native-with-zerocopy,",
    r"\|netdev_afxdp\|ERR\|nic0: Failed to create AF_XDP socket on queue 0"
    r"( in native-with-zerocopy mode)?\.$",
    r"\|netdev_afxdp\|ERR\|nic0: AF_XDP device reconfiguration failed\.$",
    r"\|dpif_netdev\|ERR\|Failed to set interface nic0 new configuration$")

_namespace_numbers = itertools.count()


def run(argv, check=True, timeout=60):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise AssertionError("%s: exit status %d: %s%s" % (
            " ".join(argv), result.returncode, result.stdout, result.stderr))
    return result.stdout + result.stderr


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_leftover_namespaces():
    """Removes the namespaces of test processes that no longer run (a killed run:
    its veth pair goes with its namespace)."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    removed = []
    for name in names:
        m = re.match(re.escape(NETNS_PREFIX) + r"(\d+)-\d+$", name)
        if m and not _alive(int(m.group(1))):
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


def _sigterm(signum, frame):
    # ctest's timeout and a plain kill end the test with SIGTERM: unwind through the
    # finally blocks, which remove the namespace and the guests.
    raise SystemExit("SIGTERM")


def kernel_counters(stats64):
    """`ip -j -s link`'s stats64 as our counter names."""
    return {"rx_packets": stats64["rx"]["packets"], "rx_bytes": stats64["rx"]["bytes"],
            "tx_packets": stats64["tx"]["packets"], "tx_bytes": stats64["tx"]["bytes"],
            "rx_dropped": stats64["rx"]["dropped"], "tx_dropped": stats64["tx"]["dropped"],
            "rx_errors": stats64["rx"]["errors"], "tx_errors": stats64["tx"]["errors"]}


class FarEnd:
    """The veth pair: far0 in a namespace of its own (the machine on the wire), nic0
    moved into the daemon's namespace."""

    def __init__(self, daemon_pid):
        self.name = "%s%d-%d" % (NETNS_PREFIX, os.getpid(), next(_namespace_numbers))
        run(["ip", "netns", "add", self.name])
        try:
            # No IPv6: its router solicitations, DAD and MLD reports would spoil the
            # exact counts.  ARP as on the guests (test_ovs_guests.ARP_TUNING).
            self.exec("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                      "net.ipv6.conf.default.disable_ipv6=1")
            run(["ip", "-n", self.name, "link", "add", "far0", "type", "veth",
                 "peer", "name", "nic0"])
            self.exec("sysctl", "-qw",
                      *["net.ipv4.neigh.far0.%s=%d" % kv for kv in ARP_TUNING.items()])
            run(["ip", "-n", self.name, "link", "set", "nic0", "netns", str(daemon_pid)])
            run(["ip", "-n", self.name, "addr", "add", FAR_IP + "/24", "dev", "far0"])
            run(["ip", "-n", self.name, "link", "set", "far0", "up"])
            self.mac = json.loads(run(["ip", "-n", self.name, "-j", "link", "show",
                                       "far0"]))[0]["address"]
        except BaseException:
            self.remove()
            raise

    def exec(self, *argv, check=True, timeout=60):
        return run(["ip", "netns", "exec", self.name, *argv], check=check,
                   timeout=timeout)

    def counters(self):
        return kernel_counters(json.loads(run(["ip", "-n", self.name, "-j", "-s", "link",
                                               "show", "far0"]))[0]["stats64"])

    def ping(self, address, count=10, size=56, interval=0.2):
        return parse_ping(self.exec("busybox", "ping", "-c", str(count), "-s", str(size),
                                    "-i", str(interval), "-W", "3", address,
                                    check=False))

    def flood(self, dst_mac, count, rate):
        out = self.exec(sys.executable, "-B", FLOOD, "--iface", "far0",
                        "--dst-mac", dst_mac, "--src-ip", FAR_IP, "--dst-ip", NOBODY_IP,
                        "--count", str(count), "--rate", str(rate))
        return float(re.search(r"FLOOD sent=\d+ seconds=([0-9.]+)", out).group(1))

    def remove(self):
        run(["ip", "netns", "del", self.name], check=False)


class AfxdpGuestTest(OvsGuestTest):
    allowed_log_errors = (MEMLOCK_ERROR,)

    def setUp(self):
        super().setUp()
        self.previous_sigterm = signal.signal(signal.SIGTERM, _sigterm)
        removed = remove_leftover_namespaces()
        if removed:
            self.log("removed namespaces left by a killed run: " + ", ".join(removed))

    def tearDown(self):
        signal.signal(signal.SIGTERM, self.previous_sigterm)
        super().tearDown()

    @contextlib.contextmanager
    def far_end(self, ovs):
        far = FarEnd(ovs.vswitchd.pid)
        try:
            yield far
        finally:
            far.remove()

    def nic_link(self, ovs):
        """`ip -d link show nic0` in the daemon's namespace."""
        return self.host(ovs, "ip", "-d", "link", "show", "nic0")

    def nic_counters(self, ovs):
        return kernel_counters(json.loads(self.host(ovs, "ip", "-j", "-s", "link", "show",
                                                    "nic0"))[0]["stats64"])

    def live_port_counters(self, ovs):
        """`ovs-ofctl dump-ports br0`: every port's counters as of now (the database's
        statistics can be 5 s old), for a failure message."""
        return "\novs-ofctl dump-ports br0:\n" + ovs.ofctl("dump-ports", "br0",
                                                          check=False)

    def quiet_far(self, far, settle=1.0, timeout=30):
        deadline = time.monotonic() + timeout
        previous, still_since = far.counters(), time.monotonic()
        while True:
            time.sleep(0.2)
            current = far.counters()
            if current != previous:
                previous, still_since = current, time.monotonic()
            elif time.monotonic() - still_since >= settle:
                return current
            if time.monotonic() > deadline:
                self.fail("far0's counters still moving after %d s" % timeout)

    def pktgen(self, guest, dst_mac, count):
        """The guest's kernel sends `count` UDP frames of 60 bytes out of eth0, as fast
        as it can; returns pktgen's result line."""
        setup = ["insmod /lib/modules/pktgen.ko 2>/dev/null; true",
                 "echo rem_device_all > /proc/net/pktgen/kpktgend_0",
                 "echo add_device eth0 > /proc/net/pktgen/kpktgend_0"]
        setup += ["echo '%s' > /proc/net/pktgen/eth0" % line for line in (
            "count %d" % count, "pkt_size 60", "delay 0", "clone_skb 0",
            "dst %s" % NOBODY_IP, "dst_mac %s" % dst_mac,
            "udp_src_min 9", "udp_src_max 9", "udp_dst_min 9", "udp_dst_max 9")]
        guest.run(" && ".join(setup))
        guest.run("echo start > /proc/net/pktgen/pgctrl", timeout=120)
        out = guest.run("cat /proc/net/pktgen/eth0")
        m = re.search(r"^Result: (.*)$", out, re.M)
        self.assertTrue(m, "no pktgen result in:\n" + out)
        sofar = re.search(r"pkts-sofar: (\d+)\s+errors: (\d+)", out)
        self.assertEqual((int(sofar.group(1)), int(sofar.group(2))), (count, 0),
                         "pktgen's frames sent and errors:\n" + out)
        return m.group(1)

    def run_scenario(self, kind, xdp_mode=None, expect_xdp="xdpgeneric"):
        """kind: afxdp or afxdp-nonpmd; xdp_mode: options:xdp-mode; expect_xdp: the
        attachment `ip link` must show on nic0 (xdp: native, xdpgeneric: generic)."""
        native = expect_xdp == "xdp"
        if native:
            self.allowed_log_errors = (MEMLOCK_ERROR,) + ZEROCOPY_ERRORS
        with self.sandbox() as ovs, self.far_end(ovs) as far:
            self.host(ovs, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                      "net.ipv6.conf.default.disable_ipv6=1",
                      "net.ipv6.conf.br0.disable_ipv6=1")
            self.host(ovs, "ip", "link", "set", "nic0", "up")
            options = {"xdp-mode": xdp_mode} if xdp_mode else {}
            if native:
                # A veth has no zero-copy AF_XDP: the port is refused, with a reason.
                self.add_port(ovs, "nic0", kind=kind, ofport=1,
                              **{"xdp-mode": "native-with-zerocopy"})
                error = ovs.get("Interface", "nic0", "error")
                self.assertIn("could not add network device nic0", error)
                self.assertEqual(ovs.get("Interface", "nic0", "ofport"), "-1")
                ovs.vsctl("del-port", "br0", "nic0")
            self.add_port(ovs, "nic0", kind=kind, ofport=1, **options)
            self.add_port(ovs, "vhu0", ofport=2)
            self.assertEqual(ovs.get("Interface", "nic0", "error"), "[]")
            self.assertEqual(ovs.get("Interface", "nic0", "ofport"), "1")
            link = self.nic_link(ovs)
            attached = re.search(r"^\d+: nic0@\S+ .* (xdp|xdpgeneric) ", link, re.M)
            self.assertTrue(attached, "no XDP program on nic0:\n" + link)
            self.assertEqual(attached.group(1), expect_xdp, link)
            self.assertIn("prog/xdp", link)
            self.log("nic0: %s, %s attached" % (kind, expect_xdp))

            # A receive ring of 1024 (as Nova configures with rx_queue_size): a TCG
            # guest that the busy host does not schedule for a few tens of ms would
            # otherwise overflow the default 256 entries at the flood's rate.
            (guest,) = self.boot(ovs, [{
                "name": "g", "ip": 1,
                "nics": [VhostUserNic(os.path.join(ovs.rundir, "vhu0"),
                                      device_options={"rx_queue_size": "1024"})]}])
            self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            self.wait_link(ovs, "nic0")
            guest_mac = guest.run("cat /sys/class/net/eth0/address").strip()

            self.assertPingOk(far.ping(GUEST_IP, count=10), 10,
                              "the namespace pings the guest")
            self.assertPingOk(self.guest_ping(guest, FAR_IP, count=10), 10,
                              "the guest pings the namespace")
            self.assertPingOk(far.ping(GUEST_IP, count=5, size=1472), 5,
                              "the namespace pings the guest with full frames")
            fdb = ovs.appctl("ovs-vswitchd", "fdb/show", "br0")
            for ofport, mac in ((1, far.mac), (2, guest_mac)):
                self.assertRegex(fdb, r"(?m)^\s+%d\s+0\s+%s\s" % (ofport, re.escape(mac)),
                                 "%s learned on port %d" % (mac, ofport))

            # The namespace floods the guest.
            self.quiet_stats(guest, settle=1.0)
            far_before, guest_before = self.quiet_far(far), guest.interface_stats("eth0")
            seconds = far.flood(guest_mac, FLOOD_FRAMES, FLOOD_RATE)
            guest_after = self.quiet_stats(guest, settle=1.0)
            far_after = self.quiet_far(far)
            counts = (far_after["tx_packets"] - far_before["tx_packets"],
                      guest_after["rx_packets"] - guest_before["rx_packets"],
                      guest_after["tx_packets"] - guest_before["tx_packets"])
            self.log("namespace -> guest: %d frames in %.2f s; far0 sent %d, the guest "
                     "received %d and sent %d" % ((FLOOD_FRAMES, seconds) + counts))
            self.assertEqual(
                counts, (FLOOD_FRAMES, FLOOD_FRAMES, 0),
                "the namespace's flood: frames far0 sent, the guest received, the guest "
                "sent" + self.live_port_counters(ovs) + self.switch_state())

            # The guest floods the namespace.
            far_before, guest_before = far_after, guest_after
            result = self.pktgen(guest, far.mac, FLOOD_FRAMES)
            guest_after = self.quiet_stats(guest, settle=1.0)
            far_after = self.quiet_far(far)
            counts = (guest_after["tx_packets"] - guest_before["tx_packets"],
                      far_after["rx_packets"] - far_before["rx_packets"],
                      far_after["tx_packets"] - far_before["tx_packets"])
            self.log("guest -> namespace: pktgen %s; the guest sent %d, far0 received %d "
                     "and sent %d" % ((result,) + counts))
            self.assertEqual(
                counts, (FLOOD_FRAMES, FLOOD_FRAMES, 0),
                "the guest's flood: frames the guest sent, far0 received, far0 sent"
                + self.live_port_counters(ovs) + self.switch_state())

            # Everything, counted at every hop: the guest's eth0 against vhu0 first
            # (this waits for a database snapshot of the quiet switch) ...
            vhu = self.assertCountersAgree(ovs, [(guest, "vhu0")])["vhu0"]
            far_side = self.quiet_far(far)
            kernel_nic = self.nic_counters(ovs)
            self.assertGreaterEqual(far_side["tx_packets"], FLOOD_FRAMES + 15)
            self.assertGreaterEqual(far_side["rx_packets"], FLOOD_FRAMES + 15)
            # ... then far0 against nic0 (its kernel counters and its statistics in the
            # database, the same snapshot as vhu0's) and against vhu0.
            header = ETHERNET_HEADER if native else 0
            expected_nic = {
                "rx_packets": far_side["tx_packets"], "rx_bytes": far_side["tx_bytes"],
                "tx_packets": far_side["rx_packets"], "tx_bytes": far_side["rx_bytes"]}
            expected_vhu = {
                "tx_packets": far_side["tx_packets"],
                "tx_bytes": far_side["tx_bytes"] + header * far_side["tx_packets"],
                "rx_packets": far_side["rx_packets"], "rx_bytes": far_side["rx_bytes"]}
            self.assertEqual({k: kernel_nic[k] for k in expected_nic}, expected_nic,
                             "nic0's kernel counters against far0's")
            nic = port_stats(ovs, "nic0")
            self.log("far0 %s; nic0 %s; vhu0 %s" % (
                far_side, nic, {k: vhu[k] for k in expected_vhu}))
            self.assertEqual({k: nic.get(k) for k in expected_nic}, expected_nic,
                             "nic0's Interface:statistics against far0's counters")
            self.assertEqual({k: vhu[k] for k in expected_vhu}, expected_vhu,
                             "vhu0's Interface:statistics against far0's counters")
            for counter in NIC_DROP_COUNTERS:
                self.assertEqual(nic.get(counter, 0), 0, "nic0 " + counter)
            for counter in ("rx_dropped", "tx_dropped", "rx_errors", "tx_errors"):
                self.assertEqual(far_side[counter], 0, "far0 " + counter)
            self.assertGreaterEqual(vhu["rx_1024_to_1522_packets"], 5)
            self.assertGreaterEqual(vhu["tx_1024_to_1522_packets"], 5)

    # ---- Scenarios ----

    def test_generic(self):
        """type=afxdp, options:xdp-mode=generic (XDP in the kernel's receive path,
        any driver)."""
        self.run_scenario("afxdp", "generic", "xdpgeneric")

    def test_native(self):
        """type=afxdp, options:xdp-mode=native (the veth driver's own XDP), after
        native-with-zerocopy was refused."""
        self.run_scenario("afxdp", "native", "xdp")

    def test_nonpmd(self):
        """type=afxdp-nonpmd: the AF_XDP socket is polled by the main thread, not a
        PMD; the default xdp-mode (best-effort) settles on native XDP on a veth."""
        self.run_scenario("afxdp-nonpmd", None, "xdp")


if __name__ == "__main__":
    unittest.main()
