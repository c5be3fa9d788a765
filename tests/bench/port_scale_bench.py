#!/usr/bin/env python3
"""Benchmark: what each idle vhost-user port costs, our ovs-vswitchd against OVS-DPDK.

Cost as the work grows.  On a netdev bridge with one PMD thread (pmd-cpu-mask=0x1, as
switch_bench.py), --ports (1000) dpdkvhostuser ports are added in batches of --batch
(100), one ovs-vsctl transaction each; every transaction waits until the switch has
applied it, and the add ends when every port has its OpenFlow port number.  No guest
connects: the ports are idle, listening.  Printed per switch:
  - the time the whole add took, and its first and last batch (does a batch cost more
    when the bridge already has many ports?);
  - the daemon's RSS before the add (bridge only) and after it (2 s later, once the PMD
    reloads are done), and (after - before) / ports, the memory of one idle port; for
    OVS-DPDK also the hugepages it holds for itself, which do not grow (it takes all of
    dpdk-socket-mem at start), and what DPDK's malloc hands out of them
    (`dpdk/get-malloc-stats`: OVS-DPDK keeps its ports' structures there); "all memory
    per idle port" is RSS plus the larger of those two.
With --with-traffic, also the PMD's processing cycles per packet of the busy two-port
loop of switch_bench.py (testpmd with two virtio_user ports, io mode, 64 B), with 0
and with 100 idle ports beside it on the bridge and the same PMD (--in-flight 512),
and the ratio of the two within each run.  --idle-toggle ROUNDS measures only that
ratio, better: the loop keeps running while the idle ports are added and deleted
again, and each ratio compares two slices back to back.

The switches alternate (ours, OVS-DPDK; ours, ...) over --runs (2), each run in a
fresh sandbox; each figure is the median, with the spread (min-max), and the ratio
ours / OVS-DPDK of the medians.  --perf FILE records our daemon (`perf record
--call-graph dwarf`) during its first add, for `perf report -i FILE --no-children
--sort dso,sym --comm ovs-vswitchd-vh` (the main thread: the PMD thread only polls).

Most of an add's time, in both switches, is OVS logging: every port added makes
dpif-netdev reschedule every rx queue and log an INFO line for each ("Core 0 on numa
node 0 assigned port ..."), N(N+1)/2 lines for N ports, each to the log file and to
syslog.  --quiet-rxq-log sets dpif_netdev's log level to WARN in both before the add,
to compare what is left.

Not a test: it prints figures and ratios and asserts nothing about speed.

usage: port_scale_bench.py --daemon build/bin/ovs-vswitchd-vhostuser [--ports N]
                           [--batch N] [--runs N] [--with-traffic] [--quiet-rxq-log]
                           [--perf FILE]
       port_scale_bench.py --daemon build/bin/ovs-vswitchd-vhostuser --idle-toggle 6
                           [--idle 100] [--seconds S]
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
sys.path.insert(0, HERE)
from switch_bench import (OVS_DPDK_CONFIG, OvsSandbox, SwitchSetup,  # noqa: E402
                          add_vhost_ports, check_prerequisites, daemon_pid, memory_kb,
                          ovs_dpdk_daemon, run_switch)

WORKDIR = "/tmp/vhu-port-scale-bench"
OURS = "ours"
REF = "OVS-DPDK"


def dpdk_heap_kb(ovs, other_config):
    """What DPDK's malloc has handed out of the hugepages OVS-DPDK holds, in kB (0 for
    a switch without DPDK): memory the hugepage figure does not show, since the pages
    are all taken at start."""
    if "dpdk-init" not in other_config:
        return 0
    out = ovs.appctl("ovs-vswitchd", "dpdk/get-malloc-stats")
    return sum(int(n) for n in re.findall(r"Alloc_size:\s*(\d+)", out)) / 1024


def add_ports(name, daemon, other_config, n_ports, batch, perf_file, quiet):
    """One fresh switch: bridge, then n_ports idle ports.  Returns a dict of figures."""
    config = {"pmd-cpu-mask": "0x1"}
    config.update(other_config)
    with OvsSandbox(daemon, other_config=config, command_timeout=600,
                    workdir=os.path.join(WORKDIR, name)) as ovs:
        if quiet:
            for destination in ("file", "syslog"):
                ovs.appctl("ovs-vswitchd", "vlog/set", "dpif_netdev:%s:warn" % destination)
        ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
        time.sleep(2)   # Let the bridge's first reconfiguration and the PMD settle.
        pid = daemon_pid(ovs)
        rss0, huge0 = memory_kb(pid, "/nonexistent")
        heap0 = dpdk_heap_kb(ovs, other_config)
        perf = None
        if perf_file:
            # DWARF unwinding: OVS and the library are built without frame pointers.
            perf = subprocess.Popen(["perf", "record", "--call-graph", "dwarf,16384",
                                     "-F", "250", "-q", "-o", perf_file, "-p", str(pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        batches, total = add_vhost_ports(ovs, ["vhu%d" % i for i in range(n_ports)],
                                         batch)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait()
        time.sleep(2)
        rss1, huge1 = memory_kb(pid, "/nonexistent")
        heap1 = dpdk_heap_kb(ovs, other_config)
        return {"add_s": total, "first_s": batches[0], "last_s": batches[-1],
                "rss0": rss0 / 1024, "rss1": rss1 / 1024,
                "kb_port": (rss1 - rss0) / n_ports,
                "huge_kb_port": (huge1 - huge0) / n_ports,
                "heap_kb_port": (heap1 - heap0) / n_ports,
                "all_kb_port": (rss1 + max(huge1 - huge0, heap1 - heap0) - rss0)
                / n_ports,
                "huge1": huge1 / 1024}


ROWS = [("add_s", "add all ports, s", 1),
        ("first_s", "  first batch, s", 2),
        ("last_s", "  last batch, s", 2),
        ("rss0", "RSS before, MiB", 1),
        ("rss1", "RSS after, MiB", 1),
        ("kb_port", "RSS per idle port, KB", 1),
        ("huge1", "hugepages held, MiB", 0),
        ("huge_kb_port", "hugepages per idle port, KB", 1),
        ("heap_kb_port", "DPDK heap per idle port, KB", 1),
        ("all_kb_port", "all memory per idle port, KB", 1),
        ("cycles0", "cycles/pkt, 0 idle ports", 0),
        ("cycles100", "cycles/pkt, 100 idle ports", 0),
        ("idle_cost", "  100 idle / 0 idle, per run", 2)]


IDLE_SETTLE = 2.0   # s after adding or deleting the idle ports: the PMD reloads.


def idle_toggle(name, daemon, config, args):
    """One switch with the busy two-port loop kept running while --idle ports are
    added and deleted again, --idle-toggle times: each round measures the loop's PMD
    cycles/packet with and without them, back to back (ABBA, so that a drift of the
    machine cancels), and gives their ratio.  Adjacent slices share the hypervisor's
    placement of our CPUs, which separate runs do not.  Returns the ratios."""
    idle = ["idle%d" % i for i in range(args.idle)]
    delete = ["ovs-vsctl", "--timeout=600"]
    for port in idle:
        delete += ["--", "del-port", "br0", port]
    setup = SwitchSetup(name, daemon, config, WORKDIR, 512)
    ratios = []
    try:
        time.sleep(3)   # Warm-up.
        for round_ in range(args.idle_toggle):
            cycles = {}
            for with_idle in ((False, True) if round_ % 2 == 0 else (True, False)):
                if with_idle:
                    add_vhost_ports(setup.ovs, idle)
                time.sleep(IDLE_SETTLE)
                cycles[with_idle] = setup.measure(args.seconds)[1]
                if with_idle:
                    setup.ovs.run(delete, timeout=610)
            ratios.append(cycles[True] / cycles[False] if cycles[False] else 0)
            print("%s round %d: %.0f cycles/pkt beside 0 idle ports, %.0f beside %d: "
                  "%.2f" % (name, round_ + 1, cycles[False], cycles[True], args.idle,
                            ratios[-1]), flush=True)
    finally:
        setup.close()
    return ratios


def print_table(results, args):
    print("%d dpdkvhostuser ports added in batches of %d to a netdev bridge, 1 PMD; "
          "median (min-max) of %d runs:" % (args.ports, args.batch, args.runs))
    print("| %-28s | %-22s | %-22s | %6s |" % ("", OURS, REF, "ratio"))
    print("|%s|%s|%s|%s:|" % ("-" * 30, "-" * 23 + ":", "-" * 23 + ":", "-" * 7))
    for key, label, digits in ROWS:
        if key not in results[OURS][0]:
            continue
        cells = []
        medians = []
        for name in (OURS, REF):
            v = [r[key] for r in results[name]]
            medians.append(statistics.median(v))
            cells.append("%.*f (%.*f-%.*f)" % (digits, medians[-1], digits, min(v),
                                               digits, max(v)))
        ratio = "%.2f" % (medians[0] / medians[1]) if medians[1] else "-"
        print("| %-28s | %22s | %22s | %6s |" % (label, cells[0], cells[1], ratio))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True, help="our ovs-vswitchd-vhostuser")
    ap.add_argument("--ports", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--with-traffic", action="store_true",
                    help="also PMD cycles/packet of a busy loop beside 0 and 100 idle ports")
    ap.add_argument("--seconds", type=float, default=10, help="traffic interval")
    ap.add_argument("--quiet-rxq-log", action="store_true",
                    help="dpif_netdev logs at WARN in both switches during the add")
    ap.add_argument("--perf", help="perf record our daemon's first add into this file")
    ap.add_argument("--idle-toggle", type=int, metavar="ROUNDS",
                    help="only this: the busy loop's cycles/packet without and with "
                    "--idle ports, added and deleted ROUNDS times under a running loop")
    ap.add_argument("--idle", type=int, default=100, help="idle ports for --idle-toggle")
    args = ap.parse_args()
    check_prerequisites()

    shutil.rmtree(WORKDIR, ignore_errors=True)
    os.makedirs(WORKDIR)
    contenders = [(OURS, os.path.abspath(args.daemon), {}),
                  (REF, ovs_dpdk_daemon(WORKDIR), OVS_DPDK_CONFIG)]
    if args.idle_toggle:
        ratios = {name: idle_toggle(name.replace("-", ""), daemon, config, args)
                  for name, daemon, config in contenders}
        print("busy loop, 1 PMD: PMD cycles/packet beside %d idle ports / beside none, "
              "each pair back to back; median (min-max) of %d rounds:"
              % (args.idle, args.idle_toggle))
        for name, values in ratios.items():
            print("  %-9s %.2f (%.2f-%.2f)" % (name, statistics.median(values),
                                               min(values), max(values)))
        shutil.rmtree(WORKDIR, ignore_errors=True)
        return
    results = {name: [] for name, _, _ in contenders}
    for run in range(args.runs):
        for i, (name, daemon, config) in enumerate(contenders):
            perf = args.perf if (run == 0 and name == OURS) else None
            r = add_ports("p%d-%d" % (i, run), daemon, config, args.ports, args.batch,
                          perf, args.quiet_rxq_log)
            if args.with_traffic:
                for idle in (0, 100):
                    r["cycles%d" % idle] = run_switch(
                        "t%d-%d-%d" % (i, run, idle), daemon, config, args.seconds,
                        WORKDIR, 512, idle_ports=idle)[1]
                # Within one run, so that the two loops had the same daemon and the
                # same minute of this machine: what 100 idle ports add to a packet.
                r["idle_cost"] = r["cycles100"] / r["cycles0"] if r["cycles0"] else 0
            results[name].append(r)
            print("run %d %s: add %.1f s, %.1f KB RSS + %.1f KB DPDK heap per port%s"
                  % (run + 1, name, r["add_s"], r["kb_port"], r["heap_kb_port"],
                     "".join(", %.0f cycles/pkt beside %d idle"
                             % (r["cycles%d" % k], k)
                             for k in (0, 100) if "cycles%d" % k in r)), flush=True)
    print_table(results, args)
    shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    main()
