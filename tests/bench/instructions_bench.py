#!/usr/bin/env python3
"""Benchmark: instructions per packet of the backend, for an A/B of a data-path change.

Wall-clock figures on a small shared machine move by a factor of two from run to run
(loopback_bench.py prints the spread), which hides any change worth less than that.
The instructions the backend executes per packet do not move: this runs
vhostuser-loopback --mac-swap under valgrind's callgrind, with DPDK testpmd's
virtio_user port (64 B unless --frame says otherwise, split ring, no mergeable buffers
unless asked; queue 1024, the ring kept full) as the guest, and divides the
instructions counted by the packets the backend forwarded.  Under callgrind the backend
is the slow side, so the ring stays full and few polls come back empty.

An instruction count is not a time: it misses cache misses, which dominate when frames
cross cores.  Keep a change when this and an interleaved loopback_bench.py agree, or
this improves and the wall-clock A/B is within its noise.

usage: instructions_bench.py --loopback BIN [--baseline BIN] [--seconds S] [--runs N]
                             [--top N] [--cache-sim] [--frame 64|512|1518] [--mrg on]
                             [--packed]
  --top N: also print the N functions whose instructions per packet differ most
           between the two binaries.
  --cache-sim: also simulate this machine's L1 data cache and L2 (as callgrind's last
           level) and print the backend's data misses per packet in each.  Like the
           instruction count it does not move between runs; it shows a change in how
           the backend's own data (packet buffers, rings, descriptors) fits the caches,
           though not the misses the guest's writes from the other core cause.
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from testpmd import TestPmd  # noqa: E402

QUEUE_SIZE = 1024


def cache_geometry(level):
    """valgrind's --D1/--LL value for this machine's cache 'level' (1 or 2)."""
    def conf(name):
        value = subprocess.run(["getconf", name], capture_output=True, text=True).stdout
        return int(value.strip() or 0)
    prefix = "LEVEL1_DCACHE" if level == 1 else "LEVEL2_CACHE"
    size, assoc, line = (conf(prefix + "_SIZE"), conf(prefix + "_ASSOC"),
                         conf(prefix + "_LINESIZE"))
    if not (size and assoc and line):
        sys.exit("getconf does not know this machine's level %d cache" % level)
    return "%d,%d,%d" % (size, assoc, line)


def run_once(loopback, workdir, tag, seconds, cache_sim, case):
    """({event: count}, packets, callgrind output file) of one run of 'loopback'."""
    sock = os.path.join(workdir, tag + ".sock")
    out = os.path.join(workdir, tag + ".callgrind")
    sim = (["--cache-sim=yes", "--D1=" + cache_geometry(1), "--LL=" + cache_geometry(2)]
           if cache_sim else [])
    backend = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + sim + [loopback,
         "--socket", sock, "--queues", "1", "--cpu", "0", "--mac-swap"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(600):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        guest = TestPmd([sock], queue_size=QUEUE_SIZE, mrg_rxbuf=int(case.mrg == "on"),
                        in_order=0, packed_vq=int(case.packed), forward_mode="mac", cpu=1, hugepages=True, descs=QUEUE_SIZE,
                        file_prefix="ipp-" + tag,
                        log_path=os.path.join(workdir, tag + "-guest.log"))
        try:
            guest.wait_ready()
            guest.wait_link_up()
            guest.command("set txpkts %d" % case.frame)
            guest.command("start tx_first 32")
            time.sleep(seconds)
            guest.command("stop")
        finally:
            guest.quit()
    finally:
        backend.send_signal(signal.SIGINT)
        text = backend.communicate(timeout=120)[0]
    m = re.search(r"^rx_packets=(\d+) tx_packets=(\d+)", text, re.M)
    if not m or int(m.group(2)) == 0:
        sys.exit("%s: no packets forwarded:\n%s" % (loopback, text[-2000:]))
    names, counts = None, None
    with open(out) as f:
        for line in f:
            if line.startswith("events:"):
                names = line.split()[1:]
            if line.startswith(("summary:", "totals:")):
                counts = [int(v) for v in line.split()[1:]]
    events = dict(zip(names, counts))
    return events, int(m.group(2)), out


def per_function(callgrind_out, packets):
    """{file:function: instructions per packet}, inlined code under its own file."""
    text = subprocess.run(["callgrind_annotate", "--show=Ir", "--threshold=100", callgrind_out],
                          capture_output=True, text=True, check=True).stdout
    result = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(\S+?):(.*?)(\s\[.*)?$", line)
        if m:
            name = m.group(2).split("/")[-1] + ":" + m.group(3)[:80]
            result[name] = result.get(name, 0) + int(m.group(1).replace(",", "")) / packets
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loopback", required=True)
    ap.add_argument("--baseline", help="an older vhostuser-loopback to compare with")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--cache-sim", action="store_true")
    ap.add_argument("--frame", type=int, default=64, choices=(64, 512, 1518))
    ap.add_argument("--mrg", choices=("on", "off"), default="off",
                    help="mergeable receive buffers")
    ap.add_argument("--packed", action="store_true", help="packed virtqueues")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("needs valgrind (apt-get install valgrind)")
    if int(open("/proc/sys/vm/nr_hugepages").read()) < 512:
        sys.exit("reserve hugepages first: utilities/install-deps.sh --hugepages 1024")
    workdir = tempfile.mkdtemp(prefix="vhu-ipp-")
    contenders = [("ours", args.loopback)]
    if args.baseline:
        contenders.append(("baseline", args.baseline))
    results = {name: [] for name, _ in contenders}
    l1_misses = {name: [] for name, _ in contenders}
    l2_misses = {name: [] for name, _ in contenders}
    last = {}
    for run in range(args.runs):
        line = []
        for name, binary in contenders:
            events, packets, out = run_once(binary, workdir, "%s-%d" % (name, run),
                                            args.seconds, args.cache_sim, args)
            results[name].append(events["Ir"] / packets)
            last[name] = (out, packets)
            text = "%s %.1f (%d packets)" % (name, events["Ir"] / packets, packets)
            if args.cache_sim:
                l1_misses[name].append((events["D1mr"] + events["D1mw"]) / packets)
                l2_misses[name].append((events["DLmr"] + events["DLmw"]) / packets)
                text += ", L1d misses %.2f, L2 misses %.2f" % (l1_misses[name][-1],
                                                               l2_misses[name][-1])
            line.append(text)
        print("run %d (per packet): %s" % (run + 1, ", ".join(line)), flush=True)
    print("backend instructions per packet (%d B, %s ring, mergeable buffers %s, ring full, "
          "callgrind, median of %d):" % (args.frame, "packed" if args.packed else "split",
                                         args.mrg, args.runs))
    for name, _ in contenders:
        v = results[name]
        print("  %-9s: %7.1f (%.1f-%.1f)" % (name, statistics.median(v), min(v), max(v)))
    if args.cache_sim:
        print("backend data cache misses per packet (simulated L1d %s, L2 %s; median):"
              % (cache_geometry(1), cache_geometry(2)))
        for name, _ in contenders:
            print("  %-9s: L1d %6.2f, L2 %6.2f" % (name, statistics.median(l1_misses[name]),
                                                    statistics.median(l2_misses[name])))
    if args.baseline:
        ratio = statistics.median(results["ours"]) / statistics.median(results["baseline"])
        print("  ratio (ours / baseline): %.3f" % ratio)
        if args.top:
            ours = per_function(*last["ours"])
            base = per_function(*last["baseline"])
            names = sorted(set(ours) | set(base),
                           key=lambda k: -abs(ours.get(k, 0) - base.get(k, 0)))
            print("  largest differences (baseline, ours, ours - baseline):")
            for k in names[:args.top]:
                print("    %7.1f %7.1f %+7.1f  %s" % (base.get(k, 0), ours.get(k, 0),
                                                      ours.get(k, 0) - base.get(k, 0), k))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
