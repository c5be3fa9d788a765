#!/usr/bin/env python3
"""Benchmark: the backend library against DPDK's vhost PMD on the same loopback.

DPDK's loopback method: testpmd with a virtio_user port (the guest) runs on CPU 1; the
vhost-user side runs on CPU 0 and is, one after the other in the same run, (a)
vhostuser-loopback (our library) and (b) testpmd with DPDK's vhost PMD (net_vhost).
queue_size 1024 and in_order=0 throughout, DPDK's usual vhost loopback settings.

What moves, --direction:
  both     (default) the guest mac-forwards, the vhost side sends every packet back:
           vhostuser-loopback --mac-swap, net_vhost in mac mode.  Throughput: the
           packets the guest receives.  Packets in flight: 1024 (the ring kept full:
           `start tx_first 32`, the throughput regime) or 32 (one burst: the latency
           regime), --in-flight.
  dequeue  the guest transmits (testpmd txonly) into a sink: vhostuser-loopback --sink,
           which copies into 64 buffers that stay in cache, and net_vhost in rxonly,
           which copies into mbufs from a pool of 16384 and frees them.  Throughput:
           the packets the vhost side receives (ours: its counters, read with SIGUSR2
           and timed by its own clock).
  enqueue  the vhost side generates into a guest that only receives (testpmd rxonly):
           vhostuser-loopback --source SIZE, which keeps every posted receive buffer
           filled from a fixed pool of prebuilt frames, and net_vhost in txonly, which
           allocates and frees an mbuf per packet (a producer cost ours does not have).
           Throughput: the packets the guest receives.
The frame size is testpmd's `set txpkts` (--frame 64|512|1518; 64 by default),
mergeable receive buffers are virtio_user's mrg_rxbuf (--mrg off|on; off by default)
and --packed asks for a packed ring (packed_vq=1).  Each run reads what the two sides
negotiated (our "ready features=" line, the vhost PMD's "negotiated Virtio features")
and the mean frame size seen at the receiving side, and reports any mismatch with the
case.  In the enqueue direction it also prints how often the producer found the guest's
ring full (ours: enqueue calls that found no free buffer; DPDK: txonly packets the PMD
could not place): above zero means the guest, not the producer, sets the pace.

Where the vhost side dequeues (both, dequeue), each run also counts how many of its
dequeue calls found nothing (ours: its own counters; DPDK: testpmd's
--record-burst-stats): near 100% means it waits for the guest, which then sets the
pace, and a gap between the two is in what the guest spends per packet.

Each case runs --runs times (3 by default), each run measuring --seconds (5; 3 with
--matrix) after a 2 s warm-up, alternating the contenders (ours, the baseline build if
given, DPDK; ours, ...); each figure is the median with the spread (min-max) beside
it: the machine is noisy.  The ratio is that of the medians, and beside it the median
(min-max) of the ratios within each run: other tenants' load moves both contenders of
a run together, and by a factor of two or more between runs.  --baseline BIN adds an
older vhostuser-loopback to the rotation, for an interleaved A/B of a change to the
data path.

--interleave starts every contender once and keeps them all, stopped (SIGSTOP) but for
the one whose turn it is: each of --runs rounds gives each contender the CPUs for
--seconds (1 by default) after 0.3 s to settle, the order rotating from round to
round.  Where the hypervisor runs this VM's two CPUs changes every few seconds to
minutes, and with it everyone's throughput, by 2x or more; slices a second apart see
the same placement, so the ratios within a round hold still where those of separate
runs do not.  Use it with --runs 10 or more for an A/B; it needs 512 MB of huge pages
per testpmd that is kept running (1024 pages with --baseline).  Before and after each
slice, everyone stopped, vhostuser-cpu-pair-latency (built beside --loopback) times a
cache line's trip between the two CPUs, which tells the placement apart (near or
far: placement.py); each slice line shows it, and the summary compares ours with DPDK
within each placement, since how many slices of each a contender meets is luck.

--matrix runs the cases of issue 14 and prints one table: direction both at 64, 512
and 1518 B, mergeable buffers off and on, split and packed rings (12 cases), then the
dequeue and enqueue directions alone at 64 and 1518 B (split, mrg off).  With the
defaults (3 runs of 3 s) it takes about 10 minutes here.

Not a test: it prints figures and their ratio and asserts nothing about speed.

usage: loopback_bench.py --loopback BIN [--baseline BIN] [--in-flight 1024|32]
                         [--direction both|dequeue|enqueue] [--frame 64|512|1518]
                         [--mrg off|on] [--packed] [--matrix] [--seconds S] [--runs N]
                         [--interleave]
"""

import argparse
import collections
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from testpmd import TestPmd  # noqa: E402

import placement  # noqa: E402

QUEUE_SIZE = 1024
WARM_UP = 2
SLICE_SETTLE = 0.3  # --interleave: seconds a resumed contender runs before it is measured.
# testpmd forwarding modes of the guest and of DPDK's vhost side, per direction.
GUEST_MODE = {"both": "mac", "dequeue": "txonly", "enqueue": "rxonly"}
# testpmd arguments added to every guest's command line (--guest-arg), ours and DPDK's.
GUEST_ARGS = []
VHOST_MODE = {"both": "mac", "dequeue": "rxonly", "enqueue": "txonly"}
MRG_RXBUF, RING_PACKED = 15, 34  # Virtio feature bits.

Case = collections.namedtuple("Case", "direction frame mrg packed in_flight")


def describe(case):
    text = "%-7s %4d B %-6s mrg %-3s" % (case.direction, case.frame,
                                          "packed" if case.packed else "split",
                                          "on" if case.mrg else "off")
    if case.direction == "both" and case.in_flight != QUEUE_SIZE:
        text += " %d in flight" % case.in_flight
    return text


def matrix_cases(in_flight):
    cases = [Case("both", frame, mrg, packed, in_flight)
             for frame in (64, 512, 1518) for mrg in (False, True) for packed in (False, True)]
    cases += [Case(direction, frame, False, False, in_flight)
              for direction in ("dequeue", "enqueue") for frame in (64, 1518)]
    return cases


class Checks:
    """What one run saw besides its figure: negotiated features, frame sizes, producer
    stalls.  Mismatches with the case are collected as problems."""

    def __init__(self, case, side):
        self.case, self.side, self.problems, self.notes = case, side, [], []

    def features(self, mrg, packed):
        for what, wanted, got in (("mergeable buffers", self.case.mrg, mrg),
                                  ("packed ring", self.case.packed, packed)):
            if got is None:
                self.problems.append("%s: no negotiated features seen" % self.side)
                return
            if bool(wanted) != bool(got):
                self.problems.append("%s: %s %s negotiated" % (self.side, what,
                                                               "not" if wanted else "was"))

    def frame(self, packets, nbytes):
        # testpmd counts frames without the 4-byte CRC that txpkts does not include.
        if packets and abs(nbytes / packets - self.case.frame) > 0.5:
            self.problems.append("%s: frames of %.1f B seen, not %d"
                                 % (self.side, nbytes / packets, self.case.frame))


class Backend:
    """vhostuser-loopback in the mode the direction needs, its output read as it goes."""

    def __init__(self, binary, sock, case):
        mode = {"both": ["--mac-swap"], "dequeue": ["--sink"],
                "enqueue": ["--source", str(case.frame)]}[case.direction]
        self.proc = subprocess.Popen([binary, "--socket", sock, "--queues", "1", "--cpu", "0"]
                                     + mode, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def counters(self):
        """(time, rx_packets, tx_packets, polls, full_polls) as the backend prints them
        on SIGUSR2, timed by its own clock."""
        seen = len(self.lines)
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.time() + 10
        while time.time() < deadline:
            for line in self.lines[seen:]:
                m = re.match(r"stats time=(\S+) rx_packets=(\d+) tx_packets=(\d+) "
                             r"polls=(\d+) full_polls=(\d+)", line)
                if m:
                    return (float(m.group(1)),) + tuple(int(x) for x in m.groups()[1:])
            time.sleep(0.01)
        raise RuntimeError("vhostuser-loopback printed no counters:\n" + "".join(self.lines))

    def polls(self):
        """(dequeue calls, those that came back empty) so far, in forwarding modes."""
        seen = len(self.lines)
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.time() + 10
        while time.time() < deadline:
            for line in self.lines[seen:]:
                m = re.match(r"stats .* rx_polls=(\d+) rx_empty=(\d+)", line)
                if m:
                    return int(m.group(1)), int(m.group(2))
            time.sleep(0.01)
        raise RuntimeError("vhostuser-loopback printed no poll counts:\n" + "".join(self.lines))

    def features(self):
        """(mergeable, packed) from the backend's 'ready features=' line."""
        for line in self.lines:
            if line.startswith("ready features="):
                names = line.split("=", 1)[1].strip().split(",")
                return "mrg_rxbuf" in names, "ring_packed" in names
        return None, None

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)


def wait_socket(sock):
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.02)


def rate(counter, seconds):
    """Packets per second over 'seconds' from counter() -> (time, packets, ...)."""
    first = counter()
    time.sleep(seconds)
    last = counter()
    return (last[1] - first[1]) / (last[0] - first[0]), first, last


def guest_rx_counter(guest):
    def counter():
        s = guest.port_stats()[0]
        return time.time(), s["rx"], s["rx_bytes"]
    return counter


def vhost_rx_counter(vhost):
    def counter():
        s = vhost.port_stats()[0]
        return time.time(), s["rx"], s["rx_bytes"]
    return counter


def start_guest(sock, workdir, name, case):
    guest = TestPmd([sock], queue_size=QUEUE_SIZE, mrg_rxbuf=int(case.mrg), in_order=0,
                    packed_vq=int(case.packed), forward_mode=GUEST_MODE[case.direction],
                    cpu=1, hugepages=True, descs=QUEUE_SIZE,
                    file_prefix="bench-guest-" + name, extra_args=GUEST_ARGS,
                    log_path=os.path.join(workdir, name + "-guest.log"))
    guest.wait_ready()
    guest.wait_link_up()
    guest.command("set txpkts %d" % case.frame)
    if case.direction == "both":
        guest.command("start tx_first %d" % (case.in_flight // 32))
    else:
        guest.command("start")
    time.sleep(WARM_UP)
    return guest


def stop_guest(guest):
    guest.command("stop")
    guest.quit()


def stop_forwarding(testpmd):
    """'stop', and the forwarding statistics it prints."""
    mark = len(testpmd.output())
    testpmd.command("stop")
    testpmd.wait_for(r"Done\.", 10, mark)
    return testpmd.output()[mark:]


class Setup:
    """A vhost side ('server', a process serving the socket) and its guest, running
    the case; 'tag' names their files.  Subclasses start the server."""

    def idle_start(self):
        """Starts counting the vhost side's dequeue calls, where it dequeues (both,
        dequeue): the share that finds nothing says who sets the pace.  Near 100%, it
        waits for the guest."""

    def idle_share(self):
        """Share of the vhost side's dequeue calls since idle_start() that came back
        empty, or None where not counted."""
        return None

    def start_guest(self, workdir, tag, prepare):
        """Runs 'prepare' (the server's own setup), then starts the guest once the
        socket exists; stops everything if either fails."""
        self.guest = None
        try:
            prepare()
            wait_socket(self.sock)
            self.guest = start_guest(self.sock, workdir, tag, self.case)
        except BaseException:
            self.close()
            raise

    def pids(self):
        return [self.server.pid, self.guest.proc.pid]


class OursSetup(Setup):
    """vhostuser-loopback and its guest."""

    def __init__(self, loopback, workdir, case, tag):
        self.case, self.checks = case, Checks(case, tag)
        self.sock = os.path.join(workdir, tag + ".sock")
        self.backend = Backend(loopback, self.sock, case)
        self.server = self.backend.proc
        self.start_guest(workdir, tag, lambda: None)

    def counter(self):
        """What the case's throughput is read from: (time, packets, bytes or None)."""
        if self.case.direction == "dequeue":
            return self.backend.counters()[:2] + (None,)
        return guest_rx_counter(self.guest)()

    def measure(self, seconds):
        """Packets per second over 'seconds', checking the frames and features seen."""
        if self.case.direction == "dequeue":
            tx0 = self.guest.port_stats()[0]
            pps, _, _ = rate(self.counter, seconds)
            tx1 = self.guest.port_stats()[0]
            self.checks.frame(tx1["tx"] - tx0["tx"], tx1["tx_bytes"] - tx0["tx_bytes"])
        elif self.case.direction == "enqueue":
            before = self.backend.counters()
            pps, first, last = rate(self.counter, seconds)
            after = self.backend.counters()
            self.checks.frame(last[1] - first[1], last[2] - first[2])
            self.checks.notes.append("ring full %.0f%% of polls" % (
                100.0 * (after[4] - before[4]) / max(after[3] - before[3], 1)))
        else:
            pps, first, last = rate(self.counter, seconds)
            self.checks.frame(last[1] - first[1], last[2] - first[2])
        self.check_features()
        return pps

    def idle_start(self):
        if self.case.direction != "enqueue":
            self.polls0 = self.backend.polls()

    def idle_share(self):
        if self.case.direction == "enqueue":
            return None
        polls, empty = (b - a for a, b in zip(self.polls0, self.backend.polls()))
        return empty / polls if polls else None

    def check_features(self):
        self.checks.features(*self.backend.features())

    def close(self):
        if self.guest:
            stop_guest(self.guest)
        self.backend.stop()


class DpdkSetup(Setup):
    """testpmd with DPDK's vhost PMD and its guest."""

    def __init__(self, workdir, case, tag):
        self.case, self.checks = case, Checks(case, "DPDK")
        self.sock = os.path.join(workdir, tag + ".sock")
        self.vhost = TestPmd([self.sock], vhost=True,
                             forward_mode=VHOST_MODE[case.direction], cpu=0,
                             hugepages=True, descs=QUEUE_SIZE,
                             file_prefix="bench-vhost-" + tag,
                             log_path=os.path.join(workdir, tag + "-vhost.log"),
                             eal_args=["--log-level", "lib.vhost.config:info"],
                             extra_args=["--record-burst-stats"])
        self.server = self.vhost.proc

        def prepare():
            self.vhost.wait_ready()
            self.vhost.command("set txpkts %d" % case.frame)
            self.vhost.command("start")
        self.start_guest(workdir, tag, prepare)

    def counter(self):
        if self.case.direction == "dequeue":
            return vhost_rx_counter(self.vhost)()
        return guest_rx_counter(self.guest)()

    def measure(self, seconds):
        if self.case.direction == "enqueue":
            # txonly's own counts (packets the PMD took, and refused for want of a free
            # buffer in the guest's ring) start over with each 'start': restart it once
            # the guest runs, so that they cover the measured interval only.
            stop_forwarding(self.vhost)
            self.vhost.command("start")
            time.sleep(0.5)
            pps, first, last = rate(self.counter, seconds)
            m = re.search(r"TX-packets:\s+(\d+)\s+TX-dropped:\s+(\d+)",
                          stop_forwarding(self.vhost))
            sent, dropped = int(m.group(1)), int(m.group(2))
            self.checks.notes.append("ring full for %.0f%% of packets"
                                     % (100.0 * dropped / max(sent + dropped, 1)))
        else:
            pps, first, last = rate(self.counter, seconds)
        self.checks.frame(last[1] - first[1], last[2] - first[2])
        self.check_features()
        return pps

    def idle_start(self):
        if self.case.direction != "enqueue":
            self.vhost.command("clear fwd stats all")

    def idle_share(self):
        """testpmd's own count (--record-burst-stats): "RX-bursts : N [P% of 0 pkts"."""
        if self.case.direction == "enqueue":
            return None
        mark = len(self.vhost.output())
        self.vhost.command("show fwd stats all")
        try:
            self.vhost.wait_for(r"RX-bursts : \d+ \[", 10, mark)
        except Exception:
            return None
        m = re.search(r"RX-bursts : (\d+) \[(?:(\d+)% of 0 pkts)?", self.vhost.output()[mark:])
        if not m or not int(m.group(1)):
            return None
        return int(m.group(2) or 0) / 100.0

    def check_features(self):
        m = re.findall(r"negotiated Virtio features: (0x[0-9a-f]+)", self.vhost.output())
        features = int(m[-1], 16) if m else None
        self.checks.features(features and features >> MRG_RXBUF & 1,
                             features and features >> RING_PACKED & 1)

    def close(self):
        if self.guest:
            stop_guest(self.guest)
        self.vhost.command("stop")
        self.vhost.quit()


def bench_once(make_setup, seconds):
    """(pps, checks, idle share or None) of one run: a contender started, measured and
    stopped."""
    setup = make_setup()
    try:
        setup.idle_start()
        pps = setup.measure(seconds)
        return pps, setup.checks, setup.idle_share()
    finally:
        setup.close()


def bench_ours(loopback, workdir, case, seconds, tag="ours"):
    return bench_once(lambda: OursSetup(loopback, workdir, case, tag), seconds)


def bench_dpdk(workdir, case, seconds):
    return bench_once(lambda: DpdkSetup(workdir, case, "dpdk"), seconds)


def signal_all(setup, sig):
    for pid in setup.pids():
        os.kill(pid, sig)


def run_interleaved(args, workdir, case):
    """{contender: [pps per slice]}, the problems seen, {contender: [idle share per
    slice]} and {contender: [placement per slice]}, the contenders running side by side
    and taking turns at the CPUs.

    Every contender (backend and guest) is started once and then stopped with SIGSTOP;
    each round gives each one the machine in turn (SIGCONT), lets it settle, measures
    it for --seconds and stops it again, the order rotating from round to round.  The
    placement of our two CPUs changes over seconds to minutes and moves the throughput
    of any contender by 2x or more; slices of a second or so, back to back, mostly see
    the same one, and placement.py reads it before and after each slice."""
    makers = [("ours", lambda: OursSetup(args.loopback, workdir, case, "ours"))]
    if args.baseline:
        makers.append(("baseline",
                       lambda: OursSetup(args.baseline, workdir, case, "baseline")))
    makers.append(("dpdk", lambda: DpdkSetup(workdir, case, "dpdk")))
    setups = []
    results = {name: [] for name, _ in makers}
    idle = {name: [] for name, _ in makers}
    labels = {name: [] for name, _ in makers}
    probe = placement.Probe.beside(args.loopback)
    try:
        for name, make in makers:
            setup = make()
            setups.append((name, setup))
            signal_all(setup, signal.SIGSTOP)
        for round_ in range(args.runs):
            order = setups[round_ % len(setups):] + setups[:round_ % len(setups)]
            line = []
            for name, setup in order:
                before = probe.measure()  # Everyone stopped: the placement alone.
                signal_all(setup, signal.SIGCONT)
                time.sleep(SLICE_SETTLE)
                setup.idle_start()
                pps, first, last = rate(setup.counter, args.seconds)
                share = setup.idle_share()
                signal_all(setup, signal.SIGSTOP)
                after = probe.measure()
                if share is not None:
                    idle[name].append(share)
                if first[2] is not None:
                    setup.checks.frame(last[1] - first[1], last[2] - first[2])
                results[name].append(pps)
                labels[name].append(placement.label(before, after))
                line.append("%s %.2f%s" % (name, pps / 1e6,
                                           placement.describe_slice(before, after)))
            print("%s slice %d (Mpps): %s" % (describe(case), round_ + 1, ", ".join(line)),
                  flush=True)
        problems = set()
        for name, setup in setups:
            setup.check_features()
            problems.update(setup.checks.problems)
        if probe.binary is None:
            problems.add("no %s beside --loopback: slices not labelled with the CPUs' "
                         "placement" % placement.PROBE_NAME)
        return results, sorted(problems), idle, labels
    finally:
        for _, setup in setups:
            signal_all(setup, signal.SIGCONT)
            setup.close()


def summary(values):
    """'median (min-max)' in Mpps."""
    v = sorted(values)
    return "%6.2f (%.2f-%.2f)" % (statistics.median(v) / 1e6, v[0] / 1e6, v[-1] / 1e6)


def ratio(a, b):
    return statistics.median(a) / statistics.median(b) if statistics.median(b) else 0


def paired(a, b):
    """'median (min-max)' of the ratios within each run: the machine's load changes
    over minutes and moves contenders of the same run together."""
    r = sorted(x / y for x, y in zip(a, b) if y)
    return "%.2f (%.2f-%.2f)" % (statistics.median(r), r[0], r[-1]) if r else "-"


def run_case(args, workdir, case):
    """{contender: [pps per run]}, the problems seen, the vhost sides' idle shares and
    (--interleave) each slice's placement, runs alternating contenders."""
    if args.interleave:
        return run_interleaved(args, workdir, case)
    contenders = [("ours", lambda: bench_ours(args.loopback, workdir, case, args.seconds))]
    if args.baseline:
        contenders.append(("baseline", lambda: bench_ours(args.baseline, workdir, case,
                                                          args.seconds, "baseline")))
    contenders.append(("dpdk", lambda: bench_dpdk(workdir, case, args.seconds)))
    results = {name: [] for name, _ in contenders}
    problems = set()
    idle = {name: [] for name, _ in contenders}
    for run in range(args.runs):
        line = []
        for name, bench in contenders:
            pps, checks, share = bench()
            results[name].append(pps)
            if share is not None:
                idle[name].append(share)
            problems.update(checks.problems)
            line.append("%s %.2f%s" % (name, pps / 1e6, "".join(
                " [%s]" % n for n in checks.notes + checks.problems)))
        print("%s run %d (Mpps): %s" % (describe(case), run + 1, ", ".join(line)), flush=True)
    return results, sorted(problems), idle, {}


def idle_summary(idle):
    """'ours 98% (97-99), dpdk 95% (95-96)': the vhost sides' empty dequeue calls."""
    parts = []
    for name, shares in idle.items():
        if shares:
            v = sorted(shares)
            parts.append("%s %.0f%% (%.0f-%.0f)" % (name, 100 * statistics.median(v),
                                                   100 * v[0], 100 * v[-1]))
    return ", ".join(parts)


def print_single(args, case, results, problems, idle, labels):
    print("loopback (%s, queue_size %d, median of %d, Mpps%s):"
          % (describe(case), QUEUE_SIZE, args.runs,
             ", guest testpmd " + " ".join(GUEST_ARGS) if GUEST_ARGS else ""))
    print("  ovs-vhostuser backend : %s" % summary(results["ours"]))
    if args.baseline:
        print("  baseline backend      : %s" % summary(results["baseline"]))
    print("  DPDK vhost PMD        : %s" % summary(results["dpdk"]))
    print("  ratio (ours / DPDK)   : %6.2f; within each run %s"
          % (ratio(results["ours"], results["dpdk"]), paired(results["ours"], results["dpdk"])))
    if args.baseline:
        print("  ratio (ours / baseline): %5.2f; within each run %s"
              % (ratio(results["ours"], results["baseline"]),
                 paired(results["ours"], results["baseline"])))
    by_placement = placement.summary(results["ours"], results["dpdk"],
                                     labels.get("ours"), labels.get("dpdk"))
    if by_placement:
        print("  ours against DPDK by where the VM's CPUs were (a cache line's one-way "
              "trip between them: %s): %s" % (placement.legend(), by_placement))
    if args.baseline:
        against_baseline = placement.summary(results["ours"], results["baseline"],
                                             labels.get("ours"), labels.get("baseline"),
                                             count_mixed=False)
        if against_baseline:
            print("  ours against the baseline by placement: %s" % against_baseline)
    if idle_summary(idle):
        print("  vhost side's dequeue calls that found nothing: %s" % idle_summary(idle))
    for p in problems:
        print("  ! " + p)


def print_table(args, rows, elapsed):
    print()
    print("loopback matrix: queue_size %d, %d in flight (both), median (min-max) of %d "
          "runs of %g s, Mpps; %.0f min in all%s" % (
              QUEUE_SIZE, args.in_flight, args.runs, args.seconds, elapsed / 60,
              "; guest testpmd " + " ".join(GUEST_ARGS) if GUEST_ARGS else ""))
    head = "| case | ours | "
    if args.baseline:
        head += "baseline | "
    head += "DPDK vhost PMD | ours / DPDK | per run | vhost side idle, ours / DPDK |"
    if args.interleave:
        head += " ours / DPDK by placement (slices) |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for case, results, problems, idle, labels in rows:
        cells = [describe(case), summary(results["ours"])]
        if args.baseline:
            cells.append(summary(results["baseline"]))
        cells += [summary(results["dpdk"]), "%.2f" % ratio(results["ours"], results["dpdk"]),
                  paired(results["ours"], results["dpdk"]),
                  " / ".join("%.0f%%" % (100 * statistics.median(idle[name]))
                             if idle[name] else "-" for name in ("ours", "dpdk"))]
        if args.interleave:
            cells.append(placement.cell(results["ours"], results["dpdk"],
                                        labels.get("ours"), labels.get("dpdk")))
        print("| " + " | ".join(cells) + " |")
    for case, _, problems, _, _ in rows:
        for p in problems:
            print("! %s: %s" % (describe(case), p))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loopback", required=True)
    ap.add_argument("--baseline", help="an older vhostuser-loopback to compare with")
    ap.add_argument("--in-flight", type=int, choices=(32, 1024), default=1024)
    ap.add_argument("--direction", choices=("both", "dequeue", "enqueue"), default="both")
    ap.add_argument("--frame", type=int, choices=(64, 512, 1518), default=64)
    ap.add_argument("--mrg", choices=("off", "on"), default="off")
    ap.add_argument("--packed", action="store_true")
    ap.add_argument("--matrix", action="store_true", help="every case of issue 14")
    ap.add_argument("--seconds", type=float, help="5 (3 with --matrix)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--interleave", action="store_true",
                    help="run the contenders side by side, taking turns in slices")
    ap.add_argument("--guest-arg", action="append", default=[], metavar="ARG",
                    help="a testpmd argument for every guest, for example "
                    "--guest-arg=--txfreet=1020 (DPDK's virtio PMD then frees transmitted "
                    "mbufs a few at a time rather than about a ring's worth at once)")
    args = ap.parse_args()
    GUEST_ARGS.extend(args.guest_arg)
    if args.seconds is None:
        args.seconds = 1 if args.interleave else 3 if args.matrix else 5
    # Each testpmd takes 512 MB of huge pages: two at a time, or, with --interleave, two
    # per contender (one for ours).
    contenders = 2 + bool(args.baseline)
    need = (contenders + 1) * 256 if args.interleave else 512
    if int(open("/proc/sys/vm/nr_hugepages").read()) < need:
        sys.exit("reserve hugepages first: utilities/install-deps.sh --hugepages %d"
                 % max(need, 1024))
    workdir = tempfile.mkdtemp(prefix="vhu-bench-")
    start = time.time()
    try:
        if args.matrix:
            rows = [(case,) + run_case(args, workdir, case)
                    for case in matrix_cases(args.in_flight)]
            print_table(args, rows, time.time() - start)
        else:
            case = Case(args.direction, args.frame, args.mrg == "on", args.packed,
                        args.in_flight)
            print_single(args, case, *run_case(args, workdir, case))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
