#!/usr/bin/env python3
"""Benchmark: our ovs-vswitchd against Debian's OVS-DPDK on the same topology.

The usual OVS-DPDK vhost-user baseline topology: one PMD thread (pmd-cpu-mask=0x1, CPU 0),
a netdev bridge with two dpdkvhostuser ports and the flows 1->2 and 2->1; one testpmd
on CPU 1 with two virtio_user ports (queue_size 1024) in io mode, started with
tx_first, burst 32, 1024 descriptors: packets circle VM -> switch -> VM.  64-byte
packets.  Throughput is the sum of both virtio_user ports' receive rates, measured
over an interval after a warm-up.  The two switches run one after the other, in the
same run, with the same testpmd command.

Also printed: each switch daemon's memory, RSS plus the hugepages it holds.

Not a test: it prints figures and ratios and asserts nothing about speed.

usage: switch_bench.py --daemon build/bin/ovs-vswitchd-vhostuser [--seconds S] [--runs N]
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from ovs_sandbox import OvsSandbox  # noqa: E402
from testpmd import TestPmd  # noqa: E402

OVS_DPDK = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
QUEUE_SIZE = 1024


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


def run_switch(name, daemon, other_config, seconds, workdir):
    config = {"pmd-cpu-mask": "0x1"}
    config.update(other_config)
    with OvsSandbox(daemon, other_config=config, command_timeout=90,
                    workdir=os.path.join(workdir, name)) as ovs:
        ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
        for i in (1, 2):
            ovs.vsctl("add-port", "br0", "vhu%d" % i, "--", "set", "Interface",
                      "vhu%d" % i, "type=dpdkvhostuser", "ofport_request=%d" % i)
        ovs.ofctl("del-flows", "br0")
        ovs.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
        ovs.ofctl("add-flow", "br0", "in_port=2,actions=output:1")
        socks = [os.path.join(ovs.rundir, "vhu%d" % i) for i in (1, 2)]
        for sock in socks:
            ovs.wait_for(lambda: os.path.exists(sock), "socket " + sock)
        vm = TestPmd(socks, queue_size=QUEUE_SIZE, descs=QUEUE_SIZE, burst=32,
                     forward_mode="io", cpu=1, hugepages=True,
                     file_prefix="bench-" + name,
                     log_path=os.path.join(workdir, name + "-testpmd.log"))
        try:
            vm.wait_ready(timeout=90)
            vm.wait_link_up(0)
            vm.wait_link_up(1)
            ovs.wait_for(lambda: all(ovs.get("Interface", p, "link_state") == "up"
                                     for p in ("vhu1", "vhu2")), "links up", timeout=60)
            vm.command("start tx_first")
            time.sleep(3)   # Warm-up.
            first = vm.port_stats()
            t0 = time.time()
            time.sleep(seconds)
            last = vm.port_stats()
            elapsed = time.time() - t0
            pps = sum(last[p]["rx"] - first[p]["rx"] for p in (0, 1)) / elapsed
            rss, huge = memory_kb(daemon_pid(ovs), "/dev/hugepages/bench-" + name)
            vm.command("stop")
        finally:
            vm.quit()
            subprocess.run("rm -f /dev/hugepages/bench-%s*" % name, shell=True)
        return pps, rss, huge


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True, help="our ovs-vswitchd-vhostuser")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    if not os.path.exists(OVS_DPDK):
        sys.exit("install Debian's openvswitch-switch-dpdk for the baseline")
    if int(open("/proc/sys/vm/nr_hugepages").read()) < 1024:
        sys.exit("reserve hugepages first: utilities/install-deps.sh --hugepages 1024")

    workdir = "/tmp/vhu-switch-bench"
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    # Run OVS-DPDK under the name Debian gives it (the ovs-vswitchd alternative), so its
    # pidfile and control socket are the ones ovs-appctl looks for.
    os.makedirs(os.path.join(workdir, "bin"))
    ovs_dpdk = os.path.join(workdir, "bin", "ovs-vswitchd")
    os.symlink(OVS_DPDK, ovs_dpdk)
    rows = []
    for run in range(args.runs):
        ours = run_switch("ours-%d" % run, args.daemon, {}, args.seconds, workdir)
        dpdk = run_switch("ovs-dpdk-%d" % run, ovs_dpdk,
                          {"dpdk-init": "true", "dpdk-socket-mem": "512",
                           "dpdk-extra": "--no-pci"},
                          args.seconds, workdir)
        rows.append((ours, dpdk))
        print("run %d: ovs-vhostuser %.2f Mpps, OVS-DPDK %.2f Mpps, ratio %.2f"
              % (run + 1, ours[0] / 1e6, dpdk[0] / 1e6, ours[0] / dpdk[0]), flush=True)

    def mean(i, j):
        return sum(r[i][j] for r in rows) / len(rows)

    print("two vhost-user ports, flows 1->2 and 2->1, 1 PMD, testpmd io loop, 64 B:")
    print("  %-22s %10s %12s %14s" % ("", "Mpps", "RSS MiB", "hugepages MiB"))
    for i, name in ((0, "ovs-vhostuser"), (1, "OVS-DPDK 3.1 (Debian)")):
        print("  %-22s %10.2f %12.1f %14.1f" % (name, mean(i, 0) / 1e6,
                                               mean(i, 1) / 1024, mean(i, 2) / 1024))
    print("  ratio (ours / OVS-DPDK): throughput %.2f, memory %.3f"
          % (mean(0, 0) / mean(1, 0),
             (mean(0, 1) + mean(0, 2)) / (mean(1, 1) + mean(1, 2))))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
