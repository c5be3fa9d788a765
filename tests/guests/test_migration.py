"""Live migration of a real guest between two vhost-user ports of our ovs-vswitchd.

Both QEMUs run on this machine, under TCG: the source guest A boots on port vhu0; a
second QEMU with the same command line plus `-incoming unix:PATH` (qemu_guest.py's
migration_target()) waits on port vhu1 of the same bridge (br0, NORMAL action); QMP
`migrate` (HMP's `migrate -d unix:PATH`) moves A there and `query-migrate` (HMP's
`info migrate`) tells when it completed, its total time and downtime.  The source
QEMU stays paused after the migration and is then told to quit.  During the
migration QEMU logs the dirty pages of the guest's memory through our backend
(VHOST_F_LOG_ALL, SET_LOG_BASE), reads the rings' positions back at the switch-over
(GET_VRING_BASE), and announces the guest on its new port: through the guest
(VIRTIO_NET_F_GUEST_ANNOUNCE: the guest sends gratuitous ARPs) or, with
`guest_announce=off`, through the backend (SEND_RARP: the switch receives a RARP
from the guest's MAC on the new port).

The sandbox, guests, pings and counters are test_ovs_guests.py's (OvsGuestTest);
guest B (the pinger, 10.0.0.2) is on vhu2, A is 10.0.0.1.

Every scenario prints a line "MIGRATION-RESULT {json}" with QEMU's total time and
downtime and what the pings lost; VHU_MIGRATION_RESULTS=FILE appends them to FILE
(migration_bench.py collects them that way).

Run by ctest (ctest -R guests.migration); by hand, from tests/guests/:
    OVS_VHOSTUSER_DAEMON=build/bin/ovs-vswitchd-vhostuser /usr/bin/python3 -B \\
        -m unittest -v test_migration.MigrationTest.test_server_announce

`test_migration.py --flood ADDRESS` is the host side of the flood in
test_under_load (run in the switch's network namespace): echo requests with a
payload made from their sequence number, each reply checked byte for byte.
"""

import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

import test_ovs_guests as harness
from qemu_guest import VhostUserNic

SUBNET_PREFIX = harness.SUBNET_PREFIX
HOST_IP = harness.HOST_IP
A_IP = SUBNET_PREFIX + "1"
B_IP = SUBNET_PREFIX + "2"
# QEMU's default bandwidth limit for migration is 32 MiB/s; the guests' RAM is local.
MIGRATE_PARAMETERS = {"max-bandwidth": 1 << 30}
# About 90 MiB go over (the rest of the 256 MiB is zero pages): 4 s at this rate.
LOADED_MIGRATE_PARAMETERS = {"max-bandwidth": 24 << 20}
MIGRATION_TIMEOUT = 90
# B's pings to A while A moves: busybox ping, 10 a second.
PING_INTERVAL = 0.1
# At most this many of them may go unanswered: the downtime (hundreds of ms under
# TCG) and the time until the switch learns A's MAC on its new port.
MAX_LOST_PINGS = 20
# SEND_RARP comes once per announce round (QEMU's default: 5 rounds).
MAX_RARPS = 5
RARP_FRAME_BYTES = 60
# Port counters that must stay 0 on the migrating guest's ports.  tx_dropped is left
# out: frames the switch still sends to the old port after the switch-over are
# dropped and reported there (those it floods to the new one before the guest first
# connects there, the datapath drops: that port has no queue yet).
ERROR_COUNTERS = ["rx_dropped", "rx_errors", "tx_errors"]
# Lines of the guest's kernel log that mean its virtio ring saw something wrong.
BAD_KERNEL_LOG = re.compile(r"(?i)virtio.*(error|not a head|bad|unexpected|invalid)"
                            r"|eth0.*(error|timed out|bad)|NETDEV WATCHDOG|BUG:|Oops")


def ping_report(output, interval):
    """What a background busybox ping (stopped with SIGINT) saw, from its summary
    and the lines "dups=N" and "seqs=SEQ SEQ ..." (the sequence numbers answered):
    transmitted, received, lost, duplicates and the longest run of unanswered
    sequence numbers, in ms."""
    transmitted, received = harness.parse_ping(output)
    answered = {int(s) for s in re.search(r"^seqs=(.*)$", output, re.M).group(1).split()}
    longest = run = 0
    for seq in range(transmitted):
        run = 0 if seq in answered else run + 1
        longest = max(longest, run)
    return {"transmitted": transmitted, "received": received,
            "lost": transmitted - received,
            "duplicates": int(re.search(r"^dups=(\d+)$", output, re.M).group(1)),
            "longest_gap_ms": int(longest * interval * 1000)}


class MigrationTest(harness.OvsGuestTest):

    # ---- Helpers ----

    def nic_factory(self, ovs, client):
        """Adds vhu0, vhu1, vhu2 (ofports 1, 2, 3): dpdkvhostuser ports, or with
        `client` dpdkvhostuserclient ports whose sockets QEMU listens on.  Returns a
        function giving a port's VhostUserNic."""
        paths = {}
        for ofport, port in enumerate(("vhu0", "vhu1", "vhu2"), 1):
            if client:
                paths[port] = os.path.join(ovs.root, port + ".sock")
                self.add_port(ovs, port, kind="dpdkvhostuserclient", ofport=ofport,
                              **{"vhost-server-path": paths[port]})
            else:
                paths[port] = os.path.join(ovs.rundir, port)
                self.add_port(ovs, port, ofport=ofport)
        return lambda port, **options: VhostUserNic(paths[port], qemu_listens=client,
                                                    device_options=options)

    def start_target(self, ovs, source, nic, port):
        """The migration target of `source` on `port`, started, its vhost-user
        connection up (the device starts only once the guest runs there)."""
        target = source.migration_target(
            [nic], source.name + "-dst", os.path.join(ovs.root, source.name + ".mig"))
        self.guests.append(target)
        target.start()
        self.wait_connected(ovs, port, "%s's target QEMU" % source.name)
        self.assertTrue(target.is_running(), "the target QEMU exited")
        return target

    def wait_connected(self, ovs, port, who):
        """Waits until the port has a vhost-user connection (ready or not)."""
        ovs.wait_for(lambda: re.search(r"state: (connected|ready)", ovs.appctl(
                         "ovs-vswitchd", "vhostuser/show", port, check=False)),
                     "%s connected to %s" % (who, port))

    def assertGuestAnnounce(self, ovs, port, offered):
        """Whether the guest acked VIRTIO_NET_F_GUEST_ANNOUNCE on the port."""
        features = ovs.get_map("Interface", port, "status")["features"].split(",")
        self.assertEqual("guest_announce" in features, offered, features)

    def migrate(self, ovs, source, target, parameters=MIGRATE_PARAMETERS):
        """Migrates `source` to `target`; returns query-migrate's final answer with
        the seconds until the guest's shell answered on the target added."""
        self.log("migrating %s to %s" % (source.name, target.name))
        started = time.monotonic()
        info = source.migrate(target, timeout=MIGRATION_TIMEOUT, parameters=parameters)
        if info.get("status") != "completed":
            self.fail("migration ended %r: %s\nsource QEMU said:\n%s\ntarget QEMU "
                      "said:\n%s%s\nerrors and warnings of ovs-vswitchd:\n%s"
                      % (info.get("status"), json.dumps(info),
                         source._qemu_messages(), target._qemu_messages(),
                         self.switch_state(),
                         "\n".join(ovs.log_lines(("EMER", "ERR", "WARN")))))
        completed = time.monotonic()
        target.wait_migrated()
        info["seconds_to_shell"] = round(time.monotonic() - completed, 2)
        ram = info.get("ram", {})
        self.log("migration completed in %.1f s: total-time %s ms, downtime %s ms, "
                 "setup-time %s ms, %d MiB transferred, %s dirty syncs; the shell "
                 "answers on the target %.1f s later"
                 % (completed - started, info.get("total-time"), info.get("downtime"),
                    info.get("setup-time"), ram.get("transferred", 0) >> 20,
                    ram.get("dirty-sync-count"), info["seconds_to_shell"]))
        return info

    def end_source(self, ovs, source, port):
        """The paused source QEMU quits; its port goes down."""
        status = source.quit()
        self.log("the source QEMU exited with status %s" % status)
        self.wait_link(ovs, port, "down")

    def report(self, info, **extra):
        result = {"test": self.id().split(".")[-1],
                  "daemon": os.path.basename(harness.daemon_path()),
                  "total_ms": info.get("total-time"), "downtime_ms": info.get("downtime"),
                  "setup_ms": info.get("setup-time"),
                  "transferred_mib": info.get("ram", {}).get("transferred", 0) >> 20}
        result.update(extra)
        line = json.dumps(result, sort_keys=True)
        self.log("MIGRATION-RESULT " + line)
        path = os.environ.get("VHU_MIGRATION_RESULTS")
        if path:
            with open(path, "a") as f:
                f.write(line + "\n")

    def start_pings(self, guest, address):
        guest.run("ping -i %s %s > /tmp/ping.log 2>&1 & echo $! > /tmp/ping.pid"
                  % (PING_INTERVAL, address))

    def stop_pings(self, guest):
        out = guest.run("kill -INT $(cat /tmp/ping.pid); sleep 1; tail -n 2 /tmp/ping.log;"
                        " echo dups=$(grep -c DUP /tmp/ping.log);"
                        " echo seqs=$(sed -n 's/.*seq=\\([0-9]*\\) .*/\\1/p' /tmp/ping.log)")
        return ping_report(out, PING_INTERVAL)

    def fdb_port(self, ovs, mac):
        """The ofport the bridge has learned `mac` on, or None."""
        fdb = ovs.appctl("ovs-vswitchd", "fdb/show", "br0")
        m = re.search(r"(?m)^\s+(\d+)\s+0\s+%s\s" % re.escape(mac), fdb)
        return int(m.group(1)) if m else None

    def assertMovedCountersAgree(self, ovs, guest, ports, rarps=(0,), guest_drops=None,
                                 timeout=15):
        """The migrated guest's eth0 counters (kept across the move) against the sum
        of its two ports' Interface:statistics: every frame either port took from
        the guest, it sent, and every frame it received one of them delivered,
        none taken twice, none lost inside the guest.  A port's received frames may
        include the RARPs the backend injects (SEND_RARP); their number must be in
        `rarps`.  guest_drops: the guest's drop counters that are not 0
        ({counter: value}).  Returns ({port: stats}, rarps seen)."""
        g = self.quiet_stats(guest)

        def check(stats):
            total = {k: sum(stats[p].get(k, 0) for p in ports)
                     for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")}
            injected = total["rx_packets"] - g["tx_packets"]
            problems = []
            if (total["tx_packets"], total["tx_bytes"]) != (g["rx_packets"],
                                                              g["rx_bytes"]):
                problems.append("ports sent %d frames, %d bytes; the guest received "
                                "%d, %d" % (total["tx_packets"], total["tx_bytes"],
                                            g["rx_packets"], g["rx_bytes"]))
            if (injected not in rarps
                    or total["rx_bytes"] - g["tx_bytes"] != injected * RARP_FRAME_BYTES):
                problems.append("ports received %d frames, %d bytes; the guest sent "
                                "%d, %d; RARPs allowed: %s"
                                % (total["rx_packets"], total["rx_bytes"],
                                   g["tx_packets"], g["tx_bytes"], list(rarps)))
            return problems, injected

        deadline = time.monotonic() + timeout
        while True:
            stats = {p: harness.port_stats(ovs, p) for p in ports}
            problems, injected = check(stats)
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        self.assertEqual(problems, [], "%s's eth0 against %s (guest: %s; ports: %s)"
                         % (guest.name, " + ".join(ports), g,
                            {p: {k: v for k, v in s.items() if v and "_q" not in k}
                             for p, s in stats.items()}))
        for port in ports:
            self.log("%s: %s" % (port, {k: stats[port].get(k, 0) for k in (
                "rx_packets", "tx_packets", "tx_dropped")}))
            for counter in ERROR_COUNTERS:
                self.assertEqual(stats[port].get(counter, 0), 0, "%s %s" % (port,
                                                                            counter))
            # Every port here carried the guest's traffic both ways.
            for counter in ("rx_packets", "tx_packets"):
                self.assertGreater(stats[port].get(counter, 0), 0, "%s %s"
                                   % (port, counter))
        for counter in harness.GUEST_DROP_COUNTERS:
            self.assertEqual(g[counter], (guest_drops or {}).get(counter, 0),
                             "%s eth0 %s" % (guest.name, counter))
        self.assertEqual(guest.interface_stats("eth0"), g,
                         "%s's counters moved during the comparison" % guest.name)
        return stats, injected

    def assertGuestKernelClean(self, guest):
        log = guest.run("dmesg")
        bad = [line for line in log.splitlines() if BAD_KERNEL_LOG.search(line)]
        self.assertEqual(bad, [], "%s's kernel log" % guest.name)

    # ---- Scenarios ----

    def run_pinged_migration(self, client):
        """Scenarios 1 and 3: B pings A ten times a second while A moves from vhu0
        to vhu1; the guest announces itself (GUEST_ANNOUNCE)."""
        with self.sandbox() as ovs:
            nic = self.nic_factory(ovs, client)
            a, b = self.boot(ovs, [{"name": "a", "ip": 1, "nics": [nic("vhu0")]},
                                   {"name": "b", "ip": 2, "nics": [nic("vhu2")]}])
            for guest in (a, b):
                self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            self.wait_link(ovs, "vhu2")
            mac = a.mac(0)
            self.assertPingOk(self.guest_ping(b, A_IP), 5, "b pings a before the move")
            self.assertEqual(self.fdb_port(ovs, mac), 1, "a's MAC learned on vhu0")
            self.assertGuestAnnounce(ovs, "vhu0", True)
            target = self.start_target(ovs, a, nic("vhu1"), "vhu1")

            self.start_pings(b, A_IP)
            time.sleep(2)
            info = self.migrate(ovs, a, target)
            self.end_source(ovs, a, "vhu0")
            self.wait_link(ovs, "vhu1")
            time.sleep(3)
            pings = self.stop_pings(b)
            self.log("b's pings during the move: %s" % pings)
            self.report(info, lost_pings=pings["lost"], pings=pings["transmitted"],
                        ping_gap_ms=pings["longest_gap_ms"])

            self.assertEqual(self.fdb_port(ovs, mac), 2, "a's MAC learned on vhu1")
            self.assertEqual(pings["duplicates"], 0, pings)
            self.assertLessEqual(pings["lost"], MAX_LOST_PINGS, pings)
            self.assertPingOk(self.guest_ping(target, B_IP, count=10), 10,
                              "a pings b from its new port")
            self.assertPingOk(self.guest_ping(b, A_IP, count=10, size=1472), 10,
                              "b pings a on its new port, full frames")
            self.assertMovedCountersAgree(ovs, target, ["vhu0", "vhu1"])
            self.assertCountersAgree(ovs, [(b, "vhu2")])
            self.assertGuestKernelClean(target)

    def test_server_announce(self):
        """dpdkvhostuser ports (QEMU connects): A moves from vhu0 to vhu1 while B
        pings it; the migration completes, the pings resume with few lost, the
        bridge learns A's MAC on vhu1 (the guest's gratuitous ARPs) and the counters
        of both ports add up to what A counted."""
        self.run_pinged_migration(client=False)

    def test_client(self):
        """The same with dpdkvhostuserclient ports (QEMU listens)."""
        self.run_pinged_migration(client=True)

    def test_server_rarp(self):
        """guest_announce=off: QEMU asks the backend to announce the guest
        (SEND_RARP).  Nobody pings during the move and the guest sends nothing of
        its own (IPv6 off, its ARP entries valid), so only the RARP the switch
        receives on vhu1 can teach the bridge A's new port."""
        with self.sandbox() as ovs:
            nic = self.nic_factory(ovs, client=False)
            a, b = self.boot(ovs, [
                {"name": "a", "ip": 1, "nics": [nic("vhu0", guest_announce="off")]},
                {"name": "b", "ip": 2, "nics": [nic("vhu2")]}])
            for guest in (a, b):
                self.wait_carrier(guest)
            self.wait_link(ovs, "vhu0")
            self.wait_link(ovs, "vhu2")
            mac = a.mac(0)
            self.assertGuestAnnounce(ovs, "vhu0", False)
            self.assertPingOk(self.guest_ping(b, A_IP), 5, "b pings a before the move")
            self.assertEqual(self.fdb_port(ovs, mac), 1, "a's MAC learned on vhu0")
            target = self.start_target(ovs, a, nic("vhu1", guest_announce="off"),
                                       "vhu1")
            a_sent = self.quiet_stats(a)["tx_packets"]

            info = self.migrate(ovs, a, target)
            completed = time.monotonic()
            learned = None
            while time.monotonic() < completed + 10:
                if self.fdb_port(ovs, mac) == 2:
                    learned = time.monotonic() - completed
                    break
                time.sleep(0.05)
            self.log("a's MAC learned on vhu1 %s after the migration completed"
                     % ("%.2f s" % learned if learned is not None else "never"))
            # The guest itself sent nothing: the RARP taught the bridge.
            self.assertEqual(target.interface_stats("eth0")["tx_packets"], a_sent,
                             "a sent frames of its own during the move")
            self.assertIsNotNone(learned, "a's MAC not learned on vhu1 (SEND_RARP) "
                                 "within 10 s:\n%s%s" % (ovs.appctl(
                                     "ovs-vswitchd", "fdb/show", "br0"),
                                     self.switch_state()))
            self.end_source(ovs, a, "vhu0")
            self.report(info, rarp_learned_ms=int(learned * 1000))

            self.assertPingOk(self.guest_ping(b, A_IP, count=10), 10,
                              "b pings a on its new port")
            self.assertPingOk(self.guest_ping(target, B_IP, count=5), 5,
                              "a pings b from its new port")
            _, rarps = self.assertMovedCountersAgree(
                ovs, target, ["vhu0", "vhu1"], rarps=range(1, MAX_RARPS + 1))
            self.log("RARPs the switch received on vhu1: %d" % rarps)
            # The bridge flooded the RARPs to B, whose kernel has no use for them and
            # counts them as dropped.
            self.assertMovedCountersAgree(ovs, b, ["vhu2"],
                                          guest_drops={"rx_dropped": rarps})
            self.assertGuestKernelClean(target)

    def test_under_load(self):
        """The host floods A with echo requests (1400-byte payloads made from their
        sequence numbers, each reply checked byte for byte) before, during and after
        its move: no reply is corrupt, duplicated or stale, the guest's kernel found
        no bad checksum, its virtio-net works afterwards, and the counters of both
        ports add up to what A counted."""
        with self.sandbox() as ovs:
            nic = self.nic_factory(ovs, client=False)
            self.host_setup(ovs)
            (a,) = self.boot(ovs, [{"name": "a", "ip": 1, "nics": [nic("vhu0")]}])
            self.wait_carrier(a)
            self.wait_link(ovs, "vhu0")
            self.assertPingOk(self.host_ping(ovs, A_IP), 5, "br0 pings a")
            target = self.start_target(ovs, a, nic("vhu1"), "vhu1")
            snmp_before = guest_snmp(a)

            flood = subprocess.Popen(
                ["nsenter", "-t", str(ovs.vswitchd.pid), "-n", sys.executable, "-B",
                 os.path.abspath(__file__), "--flood", A_IP, "--size", "1400"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                time.sleep(3)
                if flood.poll() is not None:
                    self.fail("the flood ended: %s" % (flood.communicate(),))
                # Slower than the other scenarios: the backend writes the flood into
                # the guest's memory for seconds while QEMU logs the dirty pages.
                info = self.migrate(ovs, a, target, parameters=LOADED_MIGRATE_PARAMETERS)
                self.end_source(ovs, a, "vhu0")
                time.sleep(3)
            finally:
                flood.send_signal(signal.SIGINT)
                out, err = flood.communicate(timeout=30)
            self.assertEqual(flood.returncode, 0, err)
            result = json.loads(out)
            self.log("the flood: %s" % result)
            self.report(info, flood_sent=result["sent"], flood_lost=result["lost"],
                        flood_gap_ms=result["longest_gap_ms"],
                        flood_pps=result["replies_per_second"])
            for bad in ("corrupt", "duplicates", "stale"):
                self.assertEqual(result[bad], 0, "%s replies: %s" % (bad, result))
            self.assertGreater(result["replies_after_gap"], 100, result)

            snmp = guest_snmp(target)
            self.log("the guest's IP counters: %s" % snmp)
            for counter in ("Ip.InHdrErrors", "Ip.InDiscards", "Icmp.InErrors",
                            "Icmp.InCsumErrors", "Udp.InCsumErrors"):
                self.assertEqual(snmp[counter], snmp_before[counter],
                                 "%s in the guest" % counter)
            self.assertPingOk(self.guest_ping(target, HOST_IP, count=10, size=1400), 10,
                              "a pings br0 after the move")
            self.assertPingOk(self.host_ping(ovs, A_IP, count=10, size=1472), 10,
                              "br0 pings a after the move")
            self.assertMovedCountersAgree(ovs, target, ["vhu0", "vhu1"])
            self.assertGuestKernelClean(target)


# The tests OvsGuestTest has are its own: MigrationTest runs only its scenarios.
for _name in dir(harness.OvsGuestTest):
    if _name.startswith("test") and _name not in MigrationTest.__dict__:
        setattr(MigrationTest, _name, None)


def guest_snmp(guest):
    """The guest's /proc/net/snmp as {"Proto.Counter": value}."""
    lines = guest.run("cat /proc/net/snmp").splitlines()
    counters = {}
    for names, values in zip(lines[::2], lines[1::2]):
        proto, _, names = names.partition(":")
        for name, value in zip(names.split(), values.partition(":")[2].split()):
            counters["%s.%s" % (proto, name)] = int(value)
    return counters


# ---- The flood (test_migration.py --flood ADDRESS), run in the switch's namespace ----

def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def flood(address, size, window, rate, timeout=0.3):
    """Sends echo requests to `address`, at most `window` unanswered and `rate` a
    second, until SIGINT; then waits a moment for the last replies and returns the
    tally.  Payload: the 64-bit sequence number, then bytes counting up from it."""
    pattern = bytes(range(256)) * (size // 256 + 2)
    ident = os.getpid() & 0xffff
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setblocking(False)
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(time.monotonic()))

    def payload(seq):
        return struct.pack("!Q", seq) + pattern[seq % 256:seq % 256 + size - 8]

    tally = {"sent": 0, "replies": 0, "late": 0, "lost": 0, "corrupt": 0,
             "duplicates": 0, "stale": 0, "longest_gap_ms": 0, "replies_after_gap": 0}
    outstanding = {}
    expired = set()
    started = last_reply = time.monotonic()
    next_send = started
    while True:
        now = time.monotonic()
        if stopping and (not outstanding or now > stopping[0] + 2 * timeout):
            break
        while not stopping and len(outstanding) < window and now >= next_send:
            seq = tally["sent"]
            body = struct.pack("!HH", ident, seq & 0xffff) + payload(seq)
            header = struct.pack("!BBH", 8, 0, _checksum(b"\x08\0\0\0" + body))
            try:
                sock.sendto(header + body, (address, 0))
            except BlockingIOError:
                break
            outstanding[seq] = now
            tally["sent"] += 1
            next_send = max(next_send + 1.0 / rate, now - 0.1)
        select.select([sock], [], [], 0.005)
        while True:
            try:
                packet = sock.recv(65536)
            except BlockingIOError:
                break
            icmp = packet[(packet[0] & 0xf) * 4:]
            if len(icmp) < 8 or icmp[0] != 0 or struct.unpack("!H", icmp[4:6])[0] != ident:
                continue  # Not a reply to us.
            now = time.monotonic()
            seq = struct.unpack("!Q", icmp[8:16])[0] if len(icmp) >= 16 else -1
            if (_checksum(icmp) != 0 or len(icmp) != 8 + size
                    or struct.unpack("!H", icmp[6:8])[0] != seq & 0xffff
                    or icmp[8:] != payload(seq)):
                tally["corrupt"] += 1
            elif seq in outstanding:
                del outstanding[seq]
                tally["replies"] += 1
                gap = now - last_reply
                if gap * 1000 > tally["longest_gap_ms"]:
                    tally["longest_gap_ms"] = int(gap * 1000)
                    tally["replies_after_gap"] = 0
                tally["replies_after_gap"] += 1
                last_reply = now
            elif seq in expired:
                expired.discard(seq)
                tally["late"] += 1
            elif seq < tally["sent"]:
                tally["duplicates"] += 1
            else:
                tally["stale"] += 1  # A sequence number never sent.
        for seq, sent in list(outstanding.items()):
            if now - sent > timeout:
                del outstanding[seq]
                expired.add(seq)
    tally["lost"] = len(expired) + len(outstanding)
    seconds = (stopping[0] if stopping else time.monotonic()) - started
    tally["replies_per_second"] = int(tally["replies"] / max(seconds, 0.001))
    return tally


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--flood":
        import argparse
        parser = argparse.ArgumentParser()
        parser.add_argument("--flood", required=True)
        parser.add_argument("--size", type=int, default=1400)
        parser.add_argument("--window", type=int, default=32)
        parser.add_argument("--rate", type=float, default=1000)
        args = parser.parse_args()
        print(json.dumps(flood(args.flood, args.size, args.window, args.rate)))
        return
    unittest.main()


if __name__ == "__main__":
    main()
