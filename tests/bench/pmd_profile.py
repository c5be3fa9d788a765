#!/usr/bin/env python3
"""Where a switch's PMD thread spends its time in the OVS loop of switch_bench.py.

Every switch given is started once with its loop running (two dpdkvhostuser ports,
flows 1->2 and 2->1, testpmd io loop over two virtio_user ports, 1 PMD) and kept,
SIGSTOPped but for the one whose turn it is, as switch_bench.py --interleave does.
In each turn, `perf record -t` samples that switch's PMD thread alone for --seconds.
Then, for each switch, the share of the PMD's samples of every symbol that took at
least --min-share percent in any of its samples: median (min-max) over the rounds,
with the PMD cycles/packet of each turn.  Samples are time, not instructions: the VMs
this project measures on have no hardware counters, so perf samples the CPU clock.

    python3 tests/bench/pmd_profile.py --daemon build/bin/ovs-vswitchd-vhostuser \\
        --baseline OLD/bin/ovs-vswitchd-vhostuser [--with-ovs-dpdk] [--packed]

The perf.data files stay in --out (default: a new directory under /tmp), one per
switch and round, for `perf report -i FILE` or `perf annotate -i FILE -s SYMBOL`.
OVS-DPDK's librte_vhost has no symbols in Debian's build: its vhost functions show as
addresses.  Needs perf (Debian's linux-perf) and, with --with-ovs-dpdk, what
switch_bench.py's baseline needs.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import switch_bench as sb  # noqa: E402


def pmd_tid(ovs):
    pid = sb.daemon_pid(ovs)
    for tid in sorted(os.listdir("/proc/%d/task" % pid)):
        with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
            if f.read().startswith("pmd"):
                return tid
    raise RuntimeError("no PMD thread in ovs-vswitchd %d" % pid)


def symbol_shares(path):
    """{symbol: percent of the samples} of one perf.data file, and {object: percent}:
    the executable or library each sample was in (OVS-DPDK's librte_vhost has no
    symbols, so only its share as a whole says something)."""
    out = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort",
                          "dso,sym", "--stdio", "--percent-limit", "0.01"],
                         capture_output=True, text=True, check=True).stdout
    symbols, objects = {}, {}
    for line in out.splitlines():
        fields = line.split(None, 3)
        if len(fields) == 4 and fields[0].endswith("%") and fields[2].startswith("["):
            share = float(fields[0].rstrip("%"))
            symbols[fields[3].strip()] = symbols.get(fields[3].strip(), 0.0) + share
            objects[fields[1]] = objects.get(fields[1], 0.0) + share
    return symbols, objects


def print_shares(samples, min_share):
    """Each key at or above 'min_share' percent in some sample: median (min-max)."""
    keys = {k for sample in samples for k, v in sample.items() if v >= min_share}
    rows = []
    for key in keys:
        values = [sample.get(key, 0.0) for sample in samples]
        rows.append((statistics.median(values), min(values), max(values), key))
    for median, low, high, key in sorted(rows, reverse=True):
        print("  %5.1f%% (%4.1f-%4.1f)  %s" % (median, low, high, key))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--daemon", required=True, help="our ovs-vswitchd-vhostuser")
    ap.add_argument("--baseline", action="append", default=[],
                    help="another build of it (repeatable)")
    ap.add_argument("--with-ovs-dpdk", action="store_true",
                    help="Debian's OVS-DPDK as well")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--packed", action="store_true")
    ap.add_argument("--frame", type=int, default=64)
    ap.add_argument("--min-share", type=float, default=1.0,
                    help="list symbols at or above this percent in some sample")
    ap.add_argument("--out", help="directory for the perf.data files")
    args = ap.parse_args()

    if not shutil.which("perf"):
        sys.exit("perf is missing: apt-get install linux-perf")
    # 512 MB of 2 MiB pages for each switch's testpmd, and as many for OVS-DPDK itself.
    n_switches = 1 + len(args.baseline) + args.with_ovs_dpdk
    pages = 256 * (n_switches + args.with_ovs_dpdk)
    if args.with_ovs_dpdk:
        sb.check_prerequisites(pages)
    elif int(open("/proc/sys/vm/nr_hugepages").read()) < pages:
        sys.exit("reserve hugepages first: utilities/install-deps.sh --hugepages %d" % pages)
    out = args.out or tempfile.mkdtemp(prefix="pmd-profile-")
    os.makedirs(out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="pmd-profile-work-")

    contenders = [("ours", args.daemon, {})]
    contenders += [("baseline%d" % (i + 1) if len(args.baseline) > 1 else "baseline",
                    path, {}) for i, path in enumerate(args.baseline)]
    if args.with_ovs_dpdk:
        contenders.append(("ovs-dpdk", sb.ovs_dpdk_daemon(work), sb.OVS_DPDK_CONFIG))

    setups = []
    results = {name: [] for name, _, _ in contenders}
    try:
        for name, daemon, config in contenders:
            setup = sb.SwitchSetup(name, daemon, config, work, 512, frame=args.frame,
                                   packed=args.packed)
            setups.append((name, setup))
            sb.signal_all(setup, signal.SIGSTOP)
        for r in range(args.rounds):
            for name, setup in setups:
                sb.signal_all(setup, signal.SIGCONT)
                try:
                    time.sleep(1)   # The caches and the guest settle again.
                    setup.ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-stats-clear")
                    path = os.path.join(out, "%s-%d.data" % (name, r))
                    for attempt in (1, 2):
                        # The thread is looked up again for a second attempt: once, in
                        # testing, perf could not open the one found first.
                        perf = subprocess.run(["perf", "record", "-q", "-o", path, "-t",
                                               pmd_tid(setup.ovs), "--",
                                               "sleep", str(args.seconds)],
                                              capture_output=True, text=True)
                        if not perf.returncode:
                            break
                        if attempt == 2:
                            raise RuntimeError("perf record failed: "
                                               + perf.stderr.strip())
                        time.sleep(1)
                    cycles = sb.pmd_cycles_per_packet(setup.ovs)
                finally:
                    sb.signal_all(setup, signal.SIGSTOP)
                results[name].append((cycles, path))
                print("round %d: %s, %.0f PMD cycles/packet, %s" % (r + 1, name, cycles,
                                                                   path), flush=True)
    finally:
        for _, setup in setups:
            sb.signal_all(setup, signal.SIGCONT)
            setup.close()

    print("\nshare of the PMD thread's samples, median (min-max) of %d rounds of %g s; "
          "%d B, %s rings" % (args.rounds, args.seconds, args.frame,
                              "packed" if args.packed else "split"))
    for name, runs in results.items():
        shares = [symbol_shares(path) for _, path in runs]
        cycles = [c for c, _ in runs]
        print("\n%s: %.0f (%.0f-%.0f) PMD cycles/packet" % (
            name, statistics.median(cycles), min(cycles), max(cycles)))
        print(" by object:")
        print_shares([objects for _, objects in shares], args.min_share)
        print(" by symbol:")
        print_shares([symbols for symbols, _ in shares], args.min_share)

if __name__ == "__main__":
    main()
