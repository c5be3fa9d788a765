#!/usr/bin/env python3
"""Benchmark: the backend library against DPDK's vhost PMD on the same loopback.

DPDK's loopback method: testpmd with a virtio_user port mac-forwards on CPU 1; the
vhost-user side forwards every packet back on CPU 0.  The vhost side is, one after the
other in the same run, (a) vhostuser-loopback --mac-swap (our library) and (b) testpmd
with DPDK's vhost PMD (net_vhost) in mac mode.  64-byte packets, queue_size 1024,
non-mergeable buffers, DPDK's usual vhost loopback settings.  Throughput is the virtio_user
port's received packets over a measured interval after a warm-up.

Not a test: it prints figures and their ratio and asserts nothing about speed.

usage: loopback_bench.py --loopback BIN [--seconds S] [--runs N]
"""

import argparse
import os
import shutil
import signal
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


def run_guest(sock, workdir, name, seconds):
    guest = TestPmd([sock], queue_size=QUEUE_SIZE, mrg_rxbuf=0, in_order=0,
                    forward_mode="mac", cpu=1, hugepages=True, descs=QUEUE_SIZE,
                    file_prefix="bench-guest-" + name,
                    log_path=os.path.join(workdir, name + "-guest.log"))
    try:
        guest.wait_ready()
        guest.wait_link_up()
        guest.command("start tx_first")
        time.sleep(2)  # Warm-up.
        return measure(guest, seconds)
    finally:
        guest.command("stop")
        guest.quit()


def bench_ours(loopback, workdir, seconds):
    sock = os.path.join(workdir, "ours.sock")
    backend = subprocess.Popen([loopback, "--socket", sock, "--queues", "1", "--cpu", "0",
                                "--mac-swap"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        return run_guest(sock, workdir, "ours", seconds)
    finally:
        backend.send_signal(signal.SIGINT)
        backend.communicate(timeout=20)


def bench_dpdk(workdir, seconds):
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
        return run_guest(sock, workdir, "dpdk", seconds)
    finally:
        vhost.command("stop")
        vhost.quit()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loopback", required=True)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    if int(open("/proc/sys/vm/nr_hugepages").read()) < 512:
        sys.exit("reserve hugepages first: utilities/install-deps.sh --hugepages 1024")
    workdir = tempfile.mkdtemp(prefix="vhu-bench-")
    results = []
    for run in range(args.runs):
        ours = bench_ours(args.loopback, workdir, args.seconds)
        dpdk = bench_dpdk(workdir, args.seconds)
        results.append((ours, dpdk))
        print("run %d: ovs-vhostuser %.2f Mpps, DPDK vhost PMD %.2f Mpps, ratio %.2f"
              % (run + 1, ours / 1e6, dpdk / 1e6, ours / dpdk if dpdk else 0), flush=True)
    ours = sum(r[0] for r in results) / len(results)
    dpdk = sum(r[1] for r in results) / len(results)
    print("loopback (64 B, queue_size %d, mac forwarding both sides):" % QUEUE_SIZE)
    print("  ovs-vhostuser backend : %6.2f Mpps" % (ours / 1e6))
    print("  DPDK vhost PMD        : %6.2f Mpps" % (dpdk / 1e6))
    print("  ratio (ours / DPDK)   : %6.2f" % (ours / dpdk if dpdk else 0))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
