#!/usr/bin/env python3
"""Interop: DPDK testpmd's virtio_user against the backend library (vhostuser-loopback).

testpmd forwards in io mode after a first burst (tx_first), the loopback sends every
packet back, so packets circle between the two.  After a few seconds the loopback turns
into a sink, the circle drains into it, and then both sides' counts must agree exactly:
every packet testpmd sent arrived, every packet sent to testpmd arrived, on every queue
pair, with no drop and no error anywhere.

usage: testpmd_interop.py --loopback BIN [--queues N] [--queue-size N] [--mrg-rxbuf 0|1]
                          [--in-order 0|1] [--packed-vq 0|1] [--seconds S]
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from testpmd import TestPmd  # noqa: E402


def parse_loopback(output):
    totals = re.search(r"^rx_packets=(\d+) tx_packets=(\d+) dropped=(\d+) errors=(\d+)",
                       output, re.M)
    if not totals:
        raise AssertionError("loopback printed no counters:\n" + output)
    queues = {int(q): (int(rx), int(tx)) for q, rx, tx in
              re.findall(r"^queue=(\d+) rx_packets=(\d+) tx_packets=(\d+)", output, re.M)}
    rx, tx, dropped, errors = map(int, totals.groups())
    return {"rx": rx, "tx": tx, "dropped": dropped, "errors": errors, "queues": queues}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--loopback", required=True)
    ap.add_argument("--queues", type=int, default=1)
    ap.add_argument("--queue-size", type=int, default=256)
    ap.add_argument("--mrg-rxbuf", type=int, default=1)
    ap.add_argument("--in-order", type=int, default=0)
    ap.add_argument("--packed-vq", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=2.0)
    args = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="vhu-interop-")
    sock = os.path.join(workdir, "vhu.sock")
    loopback = subprocess.Popen(
        [args.loopback, "--socket", sock, "--queues", str(args.queues), "--cpu", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    testpmd = None
    ok = False
    try:
        deadline = time.time() + 10
        while not os.path.exists(sock):
            if time.time() > deadline or loopback.poll() is not None:
                raise AssertionError("loopback did not listen on " + sock)
            time.sleep(0.02)
        testpmd = TestPmd([sock], queues=args.queues, queue_size=args.queue_size,
                          mrg_rxbuf=args.mrg_rxbuf, in_order=args.in_order,
                          packed_vq=args.packed_vq,
                          log_path=os.path.join(workdir, "testpmd.log"))
        testpmd.wait_ready()
        testpmd.wait_link_up()
        testpmd.command("start tx_first")
        time.sleep(args.seconds)
        loopback.send_signal(signal.SIGUSR1)  # Sink: let the circle drain into us.
        time.sleep(1.0)
        testpmd.command("stop")
        stats = testpmd.port_stats()[0]
        testpmd.quit()
        loopback.send_signal(signal.SIGINT)
        out, _ = loopback.communicate(timeout=20)
        ours = parse_loopback(out)

        print("testpmd: tx=%d rx=%d rx_missed=%d rx_errors=%d" %
              (stats["tx"], stats["rx"], stats["rx_missed"], stats["rx_errors"]))
        print("backend: rx=%d tx=%d dropped=%d errors=%d per-queue=%s" %
              (ours["rx"], ours["tx"], ours["dropped"], ours["errors"], ours["queues"]))
        problems = []
        if stats["tx"] < 1000:
            problems.append("too little traffic to judge (%d packets)" % stats["tx"])
        if stats["tx"] != ours["rx"]:
            problems.append("testpmd sent %d, backend received %d" % (stats["tx"], ours["rx"]))
        if stats["rx"] != ours["tx"]:
            problems.append("backend sent %d, testpmd received %d" % (ours["tx"], stats["rx"]))
        if ours["dropped"] or ours["errors"]:
            problems.append("backend dropped %d, errors %d" % (ours["dropped"], ours["errors"]))
        if stats["rx_missed"] or stats["rx_errors"] or stats["tx_errors"]:
            problems.append("testpmd missed or errored packets")
        ready = re.search(r"^ready features=(\S+)", out, re.M)
        negotiated = ready.group(1).split(",") if ready else []
        print("negotiated:", ",".join(negotiated))
        for feature, wanted in (("ring_packed", args.packed_vq),
                                ("mrg_rxbuf", args.mrg_rxbuf),
                                ("in_order", args.in_order)):
            if (feature in negotiated) != bool(wanted):
                problems.append("%s %s negotiated" % (feature, "not" if wanted else "was"))
        for q in range(args.queues):
            if ours["queues"].get(q, (0, 0))[0] == 0:
                problems.append("no traffic on queue pair %d" % q)
        if problems:
            raise AssertionError("; ".join(problems))
        ok = True
        print("PASS")
    finally:
        if testpmd:
            testpmd.kill()
        if loopback.poll() is None:
            loopback.kill()
            loopback.wait()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("artifacts kept in", workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
