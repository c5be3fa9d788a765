#!/usr/bin/env python3
"""Benchmark: the backend library against DPDK's vhost PMD on the same loopback.

DPDK's loopback method: testpmd with a virtio_user port mac-forwards on CPU 1; the
vhost-user side forwards every packet back on CPU 0.  The vhost side is, one after the
other in the same run, (a) vhostuser-loopback --mac-swap (our library) and (b) testpmd
with DPDK's vhost PMD (net_vhost) in mac mode.  64-byte packets, queue_size 1024,
non-mergeable buffers, DPDK's usual vhost loopback settings.  Throughput is the virtio_user
port's received packets over a measured interval after a warm-up.

Packets in flight: 1024 (the ring kept full: `start tx_first 32`, the throughput
regime) or 32 (one burst: the latency regime), --in-flight.  Runs alternate the
contenders (ours, the baseline build if given, DPDK; ours, ...) and each figure is the
median of --runs (3 by default) with the spread (min-max) beside it: the machine is
noisy.  --baseline BIN adds an older vhostuser-loopback to the rotation, for an
interleaved A/B of a change to the data path.

Not a test: it prints figures and their ratio and asserts nothing about speed.

usage: loopback_bench.py --loopback BIN [--baseline BIN] [--in-flight 1024|32]
                         [--seconds S] [--runs N]
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from testpmd import TestPmd  # noqa: E402

QUEUE_SIZE = 1024


def measure(guest, seconds):
    """Packets per second the guest port receives over 'seconds'."""
    first = guest.port_stats()[0]["rx"]
    t0 = time.time()
    time.sleep(seconds)
    last = guest.port_stats()[0]["rx"]
    return (last - first) / (time.time() - t0)


def run_guest(sock, workdir, name, seconds, in_flight):
    guest = TestPmd([sock], queue_size=QUEUE_SIZE, mrg_rxbuf=0, in_order=0,
                    forward_mode="mac", cpu=1, hugepages=True, descs=QUEUE_SIZE,
                    file_prefix="bench-guest-" + name,
                    log_path=os.path.join(workdir, name + "-guest.log"))
    try:
        guest.wait_ready()
        guest.wait_link_up()
        guest.command("start tx_first %d" % (in_flight // 32))
        time.sleep(2)  # Warm-up.
        return measure(guest, seconds)
    finally:
        guest.command("stop")
        guest.quit()


def bench_ours(loopback, workdir, seconds, in_flight):
    sock = os.path.join(workdir, "ours.sock")
    backend = subprocess.Popen([loopback, "--socket", sock, "--queues", "1", "--cpu", "0",
                                "--mac-swap"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        return run_guest(sock, workdir, "ours", seconds, in_flight)
    finally:
        backend.send_signal(signal.SIGINT)
        backend.communicate(timeout=20)


def bench_dpdk(workdir, seconds, in_flight):
    sock = os.path.join(workdir, "dpdk.sock")
    vhost = TestPmd([sock], vhost=True, forward_mode="mac", cpu=0, hugepages=True,
                    descs=QUEUE_SIZE, file_prefix="bench-vhost",
                    log_path=os.path.join(workdir, "dpdk-vhost.log"))
    try:
        vhost.wait_ready()
        vhost.command("start")
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        return run_guest(sock, workdir, "dpdk", seconds, in_flight)
    finally:
        vhost.command("stop")
        vhost.quit()


def summary(values):
    """'median (min-max)' in Mpps."""
    v = sorted(values)
    return "%6.2f Mpps (%.2f-%.2f)" % (statistics.median(v) / 1e6, v[0] / 1e6, v[-1] / 1e6)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loopback", required=True)
    ap.add_argument("--baseline", help="an older vhostuser-loopback to compare with")
    ap.add_argument("--in-flight", type=int, choices=(32, 1024), default=1024)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if int(open("/proc/sys/vm/nr_hugepages").read()) < 512:
        sys.exit("reserve hugepages first: utilities/install-deps.sh --hugepages 1024")
    workdir = tempfile.mkdtemp(prefix="vhu-bench-")
    contenders = [("ours", lambda: bench_ours(args.loopback, workdir, args.seconds,
                                              args.in_flight))]
    if args.baseline:
        contenders.append(("baseline", lambda: bench_ours(args.baseline, workdir,
                                                          args.seconds, args.in_flight)))
    contenders.append(("dpdk", lambda: bench_dpdk(workdir, args.seconds, args.in_flight)))
    results = {name: [] for name, _ in contenders}
    for run in range(args.runs):
        line = []
        for name, bench in contenders:
            results[name].append(bench())
            line.append("%s %.2f" % (name, results[name][-1] / 1e6))
        print("run %d (Mpps): %s" % (run + 1, ", ".join(line)), flush=True)
    med = {name: statistics.median(v) for name, v in results.items()}
    print("loopback (64 B, queue_size %d, %d in flight, mac forwarding both sides, "
          "median of %d):" % (QUEUE_SIZE, args.in_flight, args.runs))
    print("  ovs-vhostuser backend : %s" % summary(results["ours"]))
    if args.baseline:
        print("  baseline backend      : %s" % summary(results["baseline"]))
    print("  DPDK vhost PMD        : %s" % summary(results["dpdk"]))
    print("  ratio (ours / DPDK)   : %6.2f" % (med["ours"] / med["dpdk"] if med["dpdk"] else 0))
    if args.baseline:
        print("  ratio (ours / baseline): %5.2f"
              % (med["ours"] / med["baseline"] if med["baseline"] else 0))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
