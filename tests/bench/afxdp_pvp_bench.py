#!/usr/bin/env python3
"""Benchmark: PVP through an AF_XDP NIC, our ovs-vswitchd against Debian's OVS-DPDK.

The path is physical-virtual-physical, closed into a loop on one machine:

    testpmd (VM, CPU 1, virtio_user, io mode, --port-topology=loop: back out of
      |  ^    the port it came from)
    vhu0 (dpdkvhostuser, ofport 2)
      |  ^    flows in_port=1,actions=output:2 and in_port=2,actions=output:1
    nic0 (type=afxdp, xdp-mode native, ofport 1): one end of a veth pair
      |  ^
    far0, the other end, in a network namespace of its own, where a tc ingress
         filter (matchall, mirred egress redirect dev far0) sends every frame back

testpmd puts --in-flight 64-byte frames into the loop (`start tx_first N`, bursts of
32) and they go round: VM -> switch -> NIC -> wire -> NIC -> switch -> VM.  One PMD
thread on CPU 0 (pmd-cpu-mask=0x1) does the switch's work, and the kernel's for the
veth (AF_XDP transmit, the reflection, XDP receive) runs in its system calls and
softirqs on the same CPU.  The figure is testpmd's receive rate, frames per second
that completed the loop, over --seconds after a warm-up; beside it the PMD's
processing cycles per packet (`dpif-netdev/pmd-stats-show`, each frame is processed
twice a round: once from nic0, once from vhu0) and the frames the switch dropped or
failed to send on any port over the run (`dpctl/show -s`).

The same topology on both switches: Debian's OVS-DPDK 3.1 is built with AF_XDP as
well (its iface_types lists afxdp), so its nic0 is type=afxdp with the same options,
and its vhu0 DPDK's vhost library (dpdk-init, 512 MB of hugepages, --no-pci).  The
switches alternate (ours, OVS-DPDK; ours, ...) over --runs (3); each figure is the
median, with the spread (min-max), and the ratio of the medians.

Native XDP only: with xdp-mode=generic no frame came round the loop, on either
switch (0 pps, nothing counted as dropped; the reflected frames do not seem to reach
generic XDP on nic0; not investigated further).  tests/afxdp/ covers generic mode.

Not a test: it prints figures and ratios and asserts nothing about speed.

usage: afxdp_pvp_bench.py --daemon build/bin/ovs-vswitchd-vhostuser
                          [--in-flight N] [--seconds S]
                          [--runs N]
"""

import argparse
import json
import os
import re
import shutil
import statistics
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
NETNS_PREFIX = "vhuafx-bench-"
WORKDIR = "/tmp/vhu-afxdp-bench"


def run(argv, check=True):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and result.returncode:
        raise RuntimeError("%s: %s%s" % (" ".join(argv), result.stdout, result.stderr))
    return result.stdout


def pmd_cycles_per_packet(ovs):
    out = ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-stats-show")
    m = re.search(r"avg processing cycles per packet:\s*([0-9.]+)", out)
    return float(m.group(1)) if m else 0.0


def wire(name, daemon_pid):
    """The veth pair: far0 in namespace 'name', reflecting every frame it receives;
    nic0 in the switch's namespace."""
    run(["ip", "netns", "add", name])
    ns = ["ip", "-n", name]
    run(["ip", "netns", "exec", name, "sysctl", "-qw",
         "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
    run(ns + ["link", "add", "far0", "type", "veth", "peer", "name", "nic0"])
    run(ns + ["link", "set", "nic0", "netns", str(daemon_pid)])
    run(ns + ["link", "set", "far0", "up"])
    run(["tc", "-n", name, "qdisc", "add", "dev", "far0", "ingress"])
    # u32 matching every frame (this machine's kernel has no matchall classifier).
    run(["tc", "-n", name, "filter", "add", "dev", "far0", "ingress", "protocol", "all",
         "u32", "match", "u32", "0", "0",
         "action", "mirred", "egress", "redirect", "dev", "far0"])
    run(["nsenter", "-t", str(daemon_pid), "-n", "sysctl", "-qw",
         "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.nic0.disable_ipv6=1"])
    run(["nsenter", "-t", str(daemon_pid), "-n", "ip", "link", "set", "nic0", "up"])


def far_counters(name):
    s = json.loads(run(["ip", "-n", name, "-j", "-s", "link", "show", "far0"]))[0]
    return s["stats64"]


def run_switch(label, daemon, other_config, args, index):
    config = {"pmd-cpu-mask": "0x1"}
    config.update(other_config)
    name = "%s%d-%d" % (NETNS_PREFIX, os.getpid(), index)
    workdir = os.path.join(WORKDIR, "c%d" % index)
    with OvsSandbox(daemon, other_config=config, command_timeout=90,
                    workdir=workdir) as ovs:
        types = ovs.get("Open_vSwitch", ".", "iface_types")
        if "afxdp" not in types:
            raise RuntimeError("%s has no afxdp ports: %s" % (label, types))
        ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
        vm = None
        try:
            wire(name, ovs.vswitchd.pid)
            ovs.vsctl("add-port", "br0", "nic0", "--", "set", "Interface", "nic0",
                      "type=afxdp", "options:xdp-mode=" + args.xdp_mode,
                      "ofport_request=1")
            ovs.vsctl("add-port", "br0", "vhu0", "--", "set", "Interface", "vhu0",
                      "type=dpdkvhostuser", "ofport_request=2")
            error = ovs.get("Interface", "nic0", "error")
            if error != "[]":
                raise RuntimeError("%s: nic0: %s" % (label, error))
            ovs.ofctl("del-flows", "br0")
            ovs.ofctl("add-flow", "br0", "in_port=1,actions=output:2")
            ovs.ofctl("add-flow", "br0", "in_port=2,actions=output:1")
            sock = os.path.join(ovs.rundir, "vhu0")
            ovs.wait_for(lambda: os.path.exists(sock), "socket " + sock)
            vm = TestPmd([sock], queue_size=QUEUE_SIZE, descs=QUEUE_SIZE, burst=32,
                         forward_mode="io", cpu=1, hugepages=True,
                         file_prefix="afxdp-bench-%d" % index,
                         extra_args=["--port-topology=loop"],
                         log_path=os.path.join(WORKDIR, "c%d-testpmd.log" % index))
            vm.wait_ready(timeout=90)
            vm.wait_link_up(0)
            ovs.wait_for(lambda: ovs.get("Interface", "vhu0", "link_state") == "up",
                         "vhu0 up", timeout=60)
            vm.command("start tx_first %d" % (args.in_flight // 32))
            time.sleep(3)   # Warm-up.
            ovs.appctl("ovs-vswitchd", "dpif-netdev/pmd-stats-clear")
            first = vm.port_stats()[0]
            t0 = time.time()
            time.sleep(args.seconds)
            last = vm.port_stats()[0]
            elapsed = time.time() - t0
            pps = (last["rx"] - first["rx"]) / elapsed
            cycles = pmd_cycles_per_packet(ovs)
            vm.command("stop")
            # Frames the switch dropped or failed on, on either port, over the whole
            # run (dpctl/show -s reads the ports' counters at once).
            shown = ovs.appctl("ovs-vswitchd", "dpctl/show", "-s")
            lost = sum(int(n) for n in re.findall(r"(?:dropped|errors):(\d+)", shown))
            far = far_counters(name)
            nic = {k: v for k, v in ovs.get_map("Interface", "nic0",
                                                 "statistics").items()
                   if "drop" in k or "error" in k}
        finally:
            if vm:
                vm.quit()
            run(["ip", "netns", "del", name], check=False)
            subprocess.run("rm -f /dev/hugepages/afxdp-bench-%d*" % index, shell=True)
    with open(os.path.join(WORKDIR, "c%d.json" % index), "w") as f:
        json.dump({"label": label, "pps": pps, "cycles": cycles, "lost": lost,
                   "far0": far, "nic0": nic, "dpctl": shown}, f, indent=1)
    return pps, cycles, lost


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True, help="our ovs-vswitchd-vhostuser")
    ap.add_argument("--xdp-mode", choices=("native",), default="native")
    ap.add_argument("--in-flight", type=int, default=256,
                    help="frames put into the loop (a multiple of 32)")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if not os.path.exists(OVS_DPDK):
        sys.exit("no OVS-DPDK for the baseline: utilities/install-deps.sh --bench "
                 "installs Debian's openvswitch-switch-dpdk")
    if int(open("/proc/sys/vm/nr_hugepages").read()) < 1024:
        sys.exit("reserve hugepages first: utilities/install-deps.sh --hugepages 1024")
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if name.startswith(NETNS_PREFIX):
            run(["ip", "netns", "del", name], check=False)

    shutil.rmtree(WORKDIR, ignore_errors=True)
    os.makedirs(os.path.join(WORKDIR, "bin"))
    # OVS-DPDK under the name Debian gives it, so that ovs-appctl finds its pidfile.
    ovs_dpdk = os.path.join(WORKDIR, "bin", "ovs-vswitchd")
    os.symlink(OVS_DPDK, ovs_dpdk)
    dpdk_config = {"dpdk-init": "true", "dpdk-socket-mem": "512", "dpdk-extra": "--no-pci"}
    contenders = [("ovs-vhostuser", args.daemon, {}),
                  ("OVS-DPDK 3.1 (Debian)", ovs_dpdk, dpdk_config)]
    results = {name: [] for name, _, _ in contenders}
    index = 0
    for run_number in range(args.runs):
        line = []
        for name, daemon, config in contenders:
            r = run_switch(name, daemon, config, args, index)
            index += 1
            results[name].append(r)
            line.append("%s %.3f Mpps %.0f cycles/pkt %d drops"
                        % (name, r[0] / 1e6, r[1], r[2]))
        print("run %d: %s" % (run_number + 1, ", ".join(line)), flush=True)

    def med(name, j):
        return statistics.median(r[j] for r in results[name])

    def spread(name, j, scale, digits):
        v = [r[j] / scale for r in results[name]]
        return "%.*f-%.*f" % (digits, min(v), digits, max(v))

    print("PVP: veth (afxdp, xdp-mode %s) -> vhu0 -> testpmd io -> vhu0 -> veth, "
          "reflected at the far end; 1 PMD, 64 B, %d in flight, median of %d:"
          % (args.xdp_mode, args.in_flight, args.runs))
    print("  %-22s %20s %20s %10s" % ("", "Mpps (spread)", "cycles/pkt (spread)",
                                      "drops"))
    for name, _, _ in contenders:
        print("  %-22s %7.3f (%11s) %8.0f (%9s) %10d"
              % (name, med(name, 0) / 1e6, spread(name, 0, 1e6, 3), med(name, 1),
                 spread(name, 1, 1, 0), med(name, 2)))
    ours, ref = contenders[0][0], contenders[1][0]
    print("  ratio (ours / OVS-DPDK): throughput %.2f, cycles/pkt %.2f"
          % (med(ours, 0) / med(ref, 0),
             med(ours, 1) / med(ref, 1) if med(ref, 1) else 0))
    shutil.rmtree(WORKDIR, ignore_errors=True)


if __name__ == "__main__":
    main()
