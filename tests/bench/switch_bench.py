#!/usr/bin/env python3
"""Benchmark: our ovs-vswitchd against Debian's OVS-DPDK on the same topology.

The usual OVS-DPDK vhost-user baseline topology: one PMD thread (pmd-cpu-mask=0x1, CPU 0),
a netdev bridge with two dpdkvhostuser ports and the flows 1->2 and 2->1; one testpmd
on CPU 1 with two virtio_user ports (queue_size 1024) in io mode, started with
tx_first, burst 32, 1024 descriptors: packets circle VM -> switch -> VM.  64-byte
packets, split virtqueues, no mergeable buffers, unless --frame 512|1518, --mrg on or
--packed say otherwise (virtio_user negotiates what both sides offer).  --in-flight: 512 per port (`start tx_first 16`, the ring kept fed: the
throughput regime, default) or 32 (one burst: the latency regime).  Throughput is the
sum of both virtio_user ports' receive rates, measured over an interval after a
warm-up; beside it, the PMD's processing cycles per packet from
`dpif-netdev/pmd-stats-show` over the same interval, the figure that does not depend
on the VM side.  The switches run one after the other, alternating (ours, the baseline
build if given, OVS-DPDK; ours, ...) over --runs (3), with the same testpmd command;
each figure is the median, with the spread (min-max).  --baseline DAEMON adds an older
build of ours to the rotation, for an interleaved A/B of a data-path change.

Also printed: each switch daemon's memory, RSS plus the hugepages it holds.

--interleave starts every switch and its testpmd once and keeps them all, stopped
(SIGSTOP) but for the one whose turn it is: each of --runs rounds gives each switch the
CPUs for --seconds after 0.5 s to settle, the order rotating.  Where the hypervisor
runs this VM's two CPUs changes every few seconds to minutes and moves every figure by
up to 2x; slices back to back see the same placement, so an A/B wants --interleave
--runs 10 --seconds 2 or so.  With --baseline it needs 1280 hugepages.

Not a test: it prints figures and ratios and asserts nothing about speed.

usage: switch_bench.py --daemon build/bin/ovs-vswitchd-vhostuser [--baseline DAEMON]
                       [--in-flight 512|32] [--seconds S] [--runs N] [--interleave]
                       [--frame 64|512|1518] [--mrg on] [--packed]
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from ovs_sandbox import OvsSandbox  # noqa: E402
from testpmd import TestPmd  # noqa: E402

import placement  # noqa: E402

OVS_DPDK = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
# OVS-DPDK's other_config: DPDK initialised with 512 MB of hugepages, no NICs.
OVS_DPDK_CONFIG = {"dpdk-init": "true", "dpdk-socket-mem": "512", "dpdk-extra": "--no-pci"}
QUEUE_SIZE = 1024
SLICE_SETTLE = 0.5  # --interleave: seconds a resumed switch runs before it is measured.


def check_prerequisites(pages=1024):
    """Exits with a hint unless OVS-DPDK is installed and 'pages' hugepages reserved."""
    if not os.path.exists(OVS_DPDK):
        sys.exit("no OVS-DPDK for the baseline: utilities/install-deps.sh --bench "
                 "installs Debian's openvswitch-switch-dpdk")
    if int(open("/proc/sys/vm/nr_hugepages").read()) < pages:
        sys.exit("reserve hugepages first: utilities/install-deps.sh --hugepages %d" % pages)


def ovs_dpdk_daemon(workdir):
    """OVS-DPDK under the name Debian gives it (the ovs-vswitchd alternative), a
    symlink in 'workdir', so that its pidfile and control socket are the ones
    ovs-appctl looks for."""
    os.makedirs(os.path.join(workdir, "bin"), exist_ok=True)
    path = os.path.join(workdir, "bin", "ovs-vswitchd")
    if not os.path.lexists(path):
        os.symlink(OVS_DPDK, path)
    return path


def add_vhost_ports(ovs, names, batch=100, timeout=600):
    """Adds dpdkvhostuser ports 'names' to br0, 'batch' of them per ovs-vsctl
    transaction (each waits until the switch has applied it), then waits until every
    one has its OpenFlow port number.  Returns (seconds each transaction took, seconds
    in all)."""
    seconds = []
    t_start = time.monotonic()
    for i in range(0, len(names), batch):
        command = ["ovs-vsctl", "--timeout=%d" % timeout]
        for name in names[i:i + batch]:
            command += ["--", "add-port", "br0", name, "--", "set", "Interface", name,
                        "type=dpdkvhostuser"]
        t0 = time.monotonic()
        ovs.run(command, timeout=timeout + 10)
        seconds.append(time.monotonic() - t0)
    wanted = set(names)

    def all_numbered():
        out = ovs.run(["ovs-vsctl", "--no-wait", "--format=csv", "--no-headings",
                       "--columns=name,ofport", "find", "Interface",
                       "type=dpdkvhostuser"])
        numbered = set()
        for line in out.splitlines():
            name, _, ofport = line.partition(",")
            if ofport.lstrip("-").isdigit() and int(ofport) > 0:
                numbered.add(name.strip('"'))
        return wanted <= numbered
    ovs.wait_for(all_numbered, "%d ports to get an ofport" % len(names), ovs.vswitchd,
                 timeout=timeout)
    return seconds, time.monotonic() - t_start


def memory_kb(pid, guest_prefix):
    """(RSS, hugepages the daemon holds for itself) of a process, in kB.  Hugepages of
    the guests' memory, which both switches map to reach the virtqueues, are not the
    daemon's: mappings of files named 'guest_prefix'* are left out."""
    rss = hugetlb = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    path = ""
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:   # A mapping's header line.
                path = fields[5] if len(fields) > 5 else ""
            elif fields[0] in ("Private_Hugetlb:", "Shared_Hugetlb:"):
                if not path.startswith(guest_prefix):
                    hugetlb += int(fields[1])
    return rss, hugetlb


def daemon_pid(ovs):
    """The switch's pid (the sandbox may run it under unshare)."""
    with open(os.path.join(ovs.rundir, "ovs-vswitchd.pid")) as f:
        return int(f.read().strip())


def pmd_cycles_per_packet(ovs):
    """The PMD's 'avg processing cycles per packet' since the last pmd-stats-clear."""
    out = ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-stats-show")
    m = re.search(r"avg processing cycles per packet:\s*([0-9.]+)", out)
    return float(m.group(1)) if m else 0.0


class SwitchSetup:
    """One switch with the two-port loop running: the daemon in its sandbox, flows
    1->2 and 2->1, and testpmd forwarding.  'idle_ports': so many more dpdkvhostuser
    ports on the bridge, no guest on them."""

    def __init__(self, name, daemon, other_config, workdir, in_flight, idle_ports=0,
                 frame=64, mrg=False, packed=False):
        self.name, self.workdir = name, workdir
        self.frame, self.mrg, self.packed = frame, mrg, packed
        config = {"pmd-cpu-mask": "0x1"}
        config.update(other_config)
        self.ovs = OvsSandbox(daemon, other_config=config, command_timeout=90,
                              workdir=os.path.join(workdir, name))
        self.ovs.__enter__()
        self.vm = None
        try:
            self._start(in_flight, idle_ports)
        except BaseException:
            self.close()
            raise

    def _start(self, in_flight, idle_ports):
        ovs = self.ovs
        ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
        for i in (1, 2):
            ovs.vsctl("add-port", "br0", "vhu%d" % i, "--", "set", "Interface",
                      "vhu%d" % i, "type=dpdkvhostuser", "ofport_request=%d" % i)
        add_vhost_ports(ovs, ["idle%d" % i for i in range(idle_ports)])
        ovs.ofctl("del-flows", "br0")
        ovs.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
        ovs.ofctl("add-flow", "br0", "in_port=2,actions=output:1")
        socks = [os.path.join(ovs.rundir, "vhu%d" % i) for i in (1, 2)]
        for sock in socks:
            ovs.wait_for(lambda: os.path.exists(sock), "socket " + sock)
        self.vm = TestPmd(socks, queue_size=QUEUE_SIZE, descs=QUEUE_SIZE, burst=32,
                          mrg_rxbuf=int(self.mrg), packed_vq=int(self.packed),
                          forward_mode="io", cpu=1, hugepages=True,
                          file_prefix="bench-" + self.name,
                          log_path=os.path.join(self.workdir, self.name + "-testpmd.log"))
        self.vm.wait_ready(timeout=90)
        self.vm.wait_link_up(0)
        self.vm.wait_link_up(1)
        ovs.wait_for(lambda: all(ovs.get("Interface", p, "link_state") == "up"
                                 for p in ("vhu1", "vhu2")), "links up", timeout=60)
        self.vm.command("set txpkts %d" % self.frame)
        self.vm.command("start tx_first %d" % (in_flight // 32))

    def pids(self):
        return [daemon_pid(self.ovs), self.vm.proc.pid]

    def measure(self, seconds):
        """(pps, PMD cycles/pkt, RSS kB, hugepages kB) over the next 'seconds'."""
        self.ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-stats-clear")
        first = self.vm.port_stats()
        t0 = time.time()
        time.sleep(seconds)
        last = self.vm.port_stats()
        elapsed = time.time() - t0
        pps = sum(last[p]["rx"] - first[p]["rx"] for p in (0, 1)) / elapsed
        cycles = pmd_cycles_per_packet(self.ovs)
        rss, huge = memory_kb(daemon_pid(self.ovs), "/dev/hugepages/bench-" + self.name)
        return pps, cycles, rss, huge

    def close(self):
        try:
            if self.vm:
                self.vm.command("stop")
                self.vm.quit()
        finally:
            subprocess.run("rm -f /dev/hugepages/bench-%s*" % self.name, shell=True)
            self.ovs.__exit__(None, None, None)


def run_switch(name, daemon, other_config, seconds, workdir, in_flight, idle_ports=0,
               **shape):
    """One switch, one measurement after a warm-up: (pps, cycles/pkt, RSS kB,
    hugepages kB).  'shape': SwitchSetup's frame, mrg and packed."""
    setup = SwitchSetup(name, daemon, other_config, workdir, in_flight, idle_ports,
                        **shape)
    try:
        time.sleep(3)   # Warm-up.
        return setup.measure(seconds)
    finally:
        setup.close()


def run_interleaved(contenders, args, workdir):
    """{name: [(pps, cycles, rss, huge) per slice]} and {name: [placement per slice]}:
    every switch started once and kept, SIGSTOPped (daemon and testpmd) but for the one
    whose turn it is; each round gives each switch the CPUs for --seconds after
    SLICE_SETTLE s, the order rotating.  Where the hypervisor runs our two CPUs changes
    over seconds to minutes and moves every figure by up to 2x; back-to-back slices see
    the same placement, which placement.py reads before and after each slice."""
    setups = []
    results = {name: [] for name, _, _ in contenders}
    labels = {name: [] for name, _, _ in contenders}
    probe = placement.Probe.beside(args.daemon)
    if probe.binary is None:
        print("! no %s beside --daemon: slices not labelled with the CPUs' placement"
              % placement.PROBE_NAME, flush=True)
    try:
        for i, (name, daemon, config) in enumerate(contenders):
            setup = SwitchSetup("c%d" % i, daemon, config, workdir, args.in_flight,
                                frame=args.frame, mrg=args.mrg == "on", packed=args.packed)
            setups.append((name, setup))
            signal_all(setup, signal.SIGSTOP)
        for round_ in range(args.runs):
            k = round_ % len(setups)
            line = []
            for name, setup in setups[k:] + setups[:k]:
                before = probe.measure()  # Everyone stopped: the placement alone.
                signal_all(setup, signal.SIGCONT)
                time.sleep(SLICE_SETTLE)
                r = setup.measure(args.seconds)
                signal_all(setup, signal.SIGSTOP)
                after = probe.measure()
                results[name].append(r)
                labels[name].append(placement.label(before, after))
                line.append("%s %.2f Mpps %.0f cycles/pkt%s" % (
                    name, r[0] / 1e6, r[1], placement.describe_slice(before, after)))
            print("slice %d: %s" % (round_ + 1, ", ".join(line)), flush=True)
        return results, labels
    finally:
        for _, setup in setups:
            signal_all(setup, signal.SIGCONT)
            setup.close()


def signal_all(setup, sig):
    for pid in setup.pids():
        os.kill(pid, sig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True, help="our ovs-vswitchd-vhostuser")
    ap.add_argument("--baseline", help="an older build of ours to compare with")
    ap.add_argument("--in-flight", type=int, choices=(512, 32), default=512)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--interleave", action="store_true",
                    help="keep every switch running and take turns in slices")
    ap.add_argument("--frame", type=int, choices=(64, 512, 1518), default=64)
    ap.add_argument("--mrg", choices=("on", "off"), default="off",
                    help="mergeable receive buffers")
    ap.add_argument("--packed", action="store_true", help="packed virtqueues")
    args = ap.parse_args()
    check_prerequisites(1280 if args.interleave and args.baseline else 1024)

    workdir = "/tmp/vhu-switch-bench"
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    ovs_dpdk = ovs_dpdk_daemon(workdir)
    dpdk_config = OVS_DPDK_CONFIG
    contenders = [("ovs-vhostuser", args.daemon, {})]
    if args.baseline:
        contenders.append(("baseline", args.baseline, {}))
    contenders.append(("OVS-DPDK 3.1 (Debian)", ovs_dpdk, dpdk_config))
    labels = {}
    if args.interleave:
        results, labels = run_interleaved(contenders, args, workdir)
    else:
        results = {name: [] for name, _, _ in contenders}
    for run in range(0 if args.interleave else args.runs):
        line = []
        for i, (name, daemon, config) in enumerate(contenders):
            r = run_switch("c%d-%d" % (i, run), daemon, config, args.seconds, workdir,
                           args.in_flight, frame=args.frame, mrg=args.mrg == "on",
                           packed=args.packed)
            results[name].append(r)
            line.append("%s %.2f Mpps %.0f cycles/pkt" % (name, r[0] / 1e6, r[1]))
        print("run %d: %s" % (run + 1, ", ".join(line)), flush=True)

    def med(name, j):
        return statistics.median(r[j] for r in results[name])

    def spread(name, j, scale, digits):
        v = [r[j] / scale for r in results[name]]
        return "%.*f-%.*f" % (digits, min(v), digits, max(v))

    print("two vhost-user ports, flows 1->2 and 2->1, 1 PMD, testpmd io loop, %d B, %s "
          "rings, mergeable buffers %s, %d in flight per port, median of %d:" % (
              args.frame, "packed" if args.packed else "split", args.mrg, args.in_flight,
              args.runs))
    print("  %-22s %18s %20s %9s %14s" % ("", "Mpps (spread)", "cycles/pkt (spread)",
                                          "RSS MiB", "hugepages MiB"))
    for name, _, _ in contenders:
        print("  %-22s %6.2f (%9s) %8.0f (%9s) %9.1f %14.1f"
              % (name, med(name, 0) / 1e6, spread(name, 0, 1e6, 2), med(name, 1),
                 spread(name, 1, 1, 0), med(name, 2) / 1024, med(name, 3) / 1024))
    ref = contenders[-1][0]
    ours = "ovs-vhostuser"
    def paired(other, j):
        """Median (min-max) of the ratios within each run or slice: the machine's
        state moves the contenders of one run together."""
        r = sorted(a[j] / b[j] for a, b in zip(results[ours], results[other]) if b[j])
        return "%.2f (%.2f-%.2f)" % (statistics.median(r), r[0], r[-1]) if r else "-"

    print("  ratio (ours / OVS-DPDK): throughput %.2f, cycles/pkt %.2f, memory %.3f"
          % (med(ours, 0) / med(ref, 0),
             med(ours, 1) / med(ref, 1) if med(ref, 1) else 0,
             (med(ours, 2) + med(ours, 3)) / (med(ref, 2) + med(ref, 3))))
    print("    within each %s: throughput %s, cycles/pkt %s"
          % ("slice" if args.interleave else "run", paired(ref, 0), paired(ref, 1)))
    def print_by_placement(other, against):
        for j, what in ((0, "throughput"), (1, "cycles/pkt")):
            line = placement.summary([r[j] for r in results[ours]],
                                     [r[j] for r in results[other]],
                                     labels.get(ours), labels.get(other),
                                     *((1e6, "Mpps") if j == 0 else (1, "cycles")),
                                     count_mixed=j == 0)
            if line:
                print("    %s, ours against %s, by where the VM's CPUs were (%s): %s"
                      % (what, against, placement.legend(), line))

    print_by_placement(ref, "OVS-DPDK")
    if args.baseline:
        print("  ratio (ours / baseline): throughput %.2f, cycles/pkt %.2f"
              % (med(ours, 0) / med("baseline", 0),
                 med(ours, 1) / med("baseline", 1) if med("baseline", 1) else 0))
        print("    within each %s: throughput %s, cycles/pkt %s"
              % ("slice" if args.interleave else "run", paired("baseline", 0),
                 paired("baseline", 1)))
        print_by_placement("baseline", "the baseline")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
