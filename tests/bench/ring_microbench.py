#!/usr/bin/env python3
"""Runs vhostuser-ring-microbench (tests/bench/ring_microbench.cc) and prints a table.

The micro-benchmark moves bursts of 32 packets through a port in process, playing the
guest driver on the same thread: no peer, no second core, so it is steadier than the
loopback benchmarks.  This runs every case --repetitions times (5), the repetitions
of all cases interleaved at random so that a noisy minute spreads over every case
instead of spoiling one, and prints per case the median nanoseconds per packet of each
direction with the dirty log off and on (a live migration in progress), and the
ratio on/off.  "spread" is the largest (max - min) / median among a row's figures.

Not a test: it prints figures and asserts nothing about speed.

usage: ring_microbench.py --bench BIN [--repetitions N] [--min-time S] [--cpu N]
                          [--filter REGEX]
  --cpu N: pin the benchmark to CPU N (taskset).
"""

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile


def run(args):
    """{(direction, frame, packed, mrg, log): [ns per packet of each repetition]}."""
    with tempfile.TemporaryDirectory(prefix="vhu-microbench-") as tmp:
        out = os.path.join(tmp, "out.json")
        cmd = [args.bench, "--benchmark_repetitions=%d" % args.repetitions,
               "--benchmark_min_time=%s" % args.min_time,
               "--benchmark_enable_random_interleaving=true",
               "--benchmark_out=" + out, "--benchmark_out_format=json"]
        if args.filter:
            cmd.append("--benchmark_filter=" + args.filter)
        if args.cpu is not None:
            cmd = ["taskset", "-c", str(args.cpu)] + cmd
        print("running: " + " ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            report = json.load(f)
    figures = collections.defaultdict(list)
    for b in report["benchmarks"]:
        if b.get("run_type") != "iteration" or b.get("error_occurred"):
            if b.get("error_occurred"):
                sys.exit("%s: %s" % (b["name"], b.get("error_message")))
            continue
        # BM_Enqueue/frame:64/packed:0/mrg:1/log:0
        parts = b["run_name"].split("/")
        params = dict(p.split(":") for p in parts[1:])
        key = (parts[0][3:].lower(), int(params["frame"]), int(params["packed"]),
               int(params["mrg"]), int(params["log"]))
        figures[key].append(b["time_per_pkt"] * 1e9)
    return figures


def table(figures, repetitions):
    directions = ("dequeue", "enqueue", "both")
    cases = sorted({(k[1], k[2], k[3]) for k in figures})
    head = "%-5s %-6s %-3s" % ("frame", "ring", "mrg")
    for d in directions:
        head += "  %-20s" % (d + " off/on  on/off")
    print("ns/packet, median of %d (dirty log off / on, ratio on/off)" % repetitions)
    print(head + "  spread")
    for frame, packed, mrg in cases:
        line = "%-5d %-6s %-3s" % (frame, "packed" if packed else "split",
                                   "on" if mrg else "off")
        spread = 0.0
        for d in directions:
            off = figures.get((d, frame, packed, mrg, 0))
            on = figures.get((d, frame, packed, mrg, 1))
            if not off or not on:
                line += "  %-20s" % ""
                continue
            m_off, m_on = statistics.median(off), statistics.median(on)
            for runs, m in ((off, m_off), (on, m_on)):
                spread = max(spread, (max(runs) - min(runs)) / m)
            line += "  %-20s" % ("%5.1f /%5.1f  %4.2f" % (m_off, m_on, m_on / m_off))
        print(line + "  %4.1f%%" % (100 * spread))
    print("(dequeue does not depend on mergeable buffers: measured with mrg off only;"
          " both = one burst each way, per packet moved)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", required=True, help="vhostuser-ring-microbench")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--min-time", default="0.2",
                        help="seconds each repetition runs at least")
    parser.add_argument("--cpu", type=int)
    parser.add_argument("--filter", help="Google Benchmark --benchmark_filter")
    args = parser.parse_args()
    table(run(args), args.repetitions)


if __name__ == "__main__":
    main()
