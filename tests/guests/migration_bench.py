#!/usr/bin/env python3
"""Benchmark: live migration of a real guest on our ovs-vswitchd and on Debian's OVS-DPDK.

Runs test_migration.py's scenarios (server_announce, server_rarp, client; under_load
with --load) against our daemon and then against Debian's OVS-DPDK 3.1
(/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk, package openvswitch-switch-dpdk),
the same guests, the same QEMU, the same migrations, and prints side by side what
each scenario reported: QEMU's total migration time and downtime, B's pings lost
and the longest gap in them, how soon the RARP taught the bridge, the flood's
losses.

Against OVS-DPDK the scenarios run with the checks it cannot pass left out (as the
reference, not under test): its dpdkvhostuser ports report no rx_packets/tx_packets
(see FACTS.md), so the exact counter comparisons are only logged; it has no
vhostuser/show, so the target's connection is read from its log.  OVS-DPDK runs
with dpdk-init=true, 512 MB of hugepages (1024 2 MB pages must be reserved and
/dev/hugepages mounted) and --no-pci, under the name ovs-vswitchd (a symlink), as
tests/bench/switch_bench.py runs it.

Not a test and not in ctest: it prints figures and asserts nothing about them.  A
scenario that fails is reported as failed in the table.

usage (from tests/guests/, as root; two cores: run it alone):
    flock /tmp/vhu-cpu.lock /usr/bin/python3 -B migration_bench.py \\
        --daemon ../../build/bin/ovs-vswitchd-vhostuser [--runs N] [--load]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import test_migration  # noqa: E402
import test_ovs_guests as harness  # noqa: E402
from ovs_sandbox import OvsSandbox  # noqa: E402

OVS_DPDK = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk"
SCENARIOS = ["test_server_announce", "test_server_rarp", "test_client"]
HUGEPAGE_PREFIX = "vhu-migbench-%d" % os.getpid()
DPDK_CONFIG = {"dpdk-init": "true", "dpdk-socket-mem": "512",
               "dpdk-extra": "--no-pci --file-prefix=" + HUGEPAGE_PREFIX}


class DpdkSandbox(OvsSandbox):
    """The harness's sandbox with DPDK initialised (OVS-DPDK's dpdk* ports need it)."""

    def __init__(self, daemon, other_config=None, **kwargs):
        config = dict(other_config or {})
        config.update(DPDK_CONFIG)
        kwargs["command_timeout"] = max(kwargs.get("command_timeout", 30), 90)
        super().__init__(daemon, other_config=config, **kwargs)


class ReferenceMigrationTest(test_migration.MigrationTest):
    """test_migration's scenarios with what OVS-DPDK cannot show left out."""

    def wait_connected(self, ovs, port, who):
        # DPDK's vhost library logs "(PATH) new vhost user connection is N" for a
        # server socket and "(PATH) connected" for a client one.
        paths = [os.path.join(ovs.rundir, port), os.path.join(ovs.root, port + ".sock")]
        pattern = re.compile(r"\((%s)\) (new vhost user connection|connected)"
                             % "|".join(map(re.escape, paths)))

        def connected():
            with open(ovs.vswitchd_log, errors="replace") as f:
                return bool(pattern.search(f.read()))
        ovs.wait_for(connected, "%s connected to %s" % (who, port))

    def assertGuestAnnounce(self, ovs, port, offered):
        self.log("%s status: %s" % (port, ovs.get_map("Interface", port, "status")))

    def assertMovedCountersAgree(self, ovs, guest, ports, rarps=(0,), guest_drops=None,
                                 timeout=15):
        self.log("not compared on OVS-DPDK: %s eth0 %s; %s" % (
            guest.name, guest.interface_stats("eth0"),
            {p: harness.port_stats(ovs, p) for p in ports}))
        return {}, 0

    def assertCountersAgree(self, ovs, pairs, drops=None, guest_baseline=None,
                            timeout=15):
        return self.assertMovedCountersAgree(ovs, pairs[0][0], [pairs[0][1]])[0]


def run_scenarios(name, daemon, scenarios, results, dpdk):
    """Runs the scenarios against one switch; returns {scenario: result or None}."""
    os.environ["OVS_VHOSTUSER_DAEMON"] = daemon
    os.environ["VHU_MIGRATION_RESULTS"] = results
    harness.OvsSandbox = DpdkSandbox if dpdk else OvsSandbox
    cls = ReferenceMigrationTest if dpdk else test_migration.MigrationTest
    open(results, "w").close()
    print("==== %s (%s)" % (name, daemon), file=sys.stderr, flush=True)
    outcome = unittest.TextTestRunner(verbosity=2).run(
        unittest.TestSuite(cls(s) for s in scenarios))
    failed = {t.id().split(".")[-1] for t, _ in outcome.failures + outcome.errors}
    found = {}
    with open(results) as f:
        for line in f:
            row = json.loads(line)
            if row["test"] not in failed:
                found[row["test"]] = row
    return {s: found.get(s) for s in scenarios}


def cell(row, key, unit=""):
    if row is None:
        return "FAILED"
    value = row.get(key)
    return "-" if value is None else "%s%s" % (value, unit)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--daemon", required=True, help="our ovs-vswitchd-vhostuser")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--load", action="store_true", help="also test_under_load")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    if not os.path.exists(OVS_DPDK):
        sys.exit("install Debian's openvswitch-switch-dpdk for the reference")
    if int(open("/proc/sys/vm/nr_hugepages").read()) < 256:
        sys.exit("reserve hugepages first: utilities/install-deps.sh --hugepages 1024")
    scenarios = SCENARIOS + (["test_under_load"] if args.load else [])
    workdir = tempfile.mkdtemp(prefix="vhu-migbench-")
    # OVS-DPDK under the name ovs-appctl looks for (its pidfile and control socket).
    ovs_dpdk = os.path.join(workdir, "ovs-vswitchd")
    os.symlink(OVS_DPDK, ovs_dpdk)
    daemon = os.path.abspath(args.daemon)
    rows = []
    try:
        for run in range(args.runs):
            ours = run_scenarios("ovs-vhostuser, run %d" % (run + 1), daemon, scenarios,
                                 os.path.join(workdir, "ours.json"), dpdk=False)
            ref = run_scenarios("OVS-DPDK, run %d" % (run + 1), ovs_dpdk, scenarios,
                                os.path.join(workdir, "ovs-dpdk.json"), dpdk=True)
            rows += [(run + 1, s, ours[s], ref[s]) for s in scenarios]
    finally:
        subprocess.run("rm -f /dev/hugepages/%s*" % HUGEPAGE_PREFIX, shell=True)
        harness.OvsSandbox = OvsSandbox

    columns = [("total ms", "total_ms"), ("downtime ms", "downtime_ms"),
               ("pings lost", "lost_pings"), ("ping gap ms", "ping_gap_ms"),
               ("RARP learned ms", "rarp_learned_ms"), ("flood lost", "flood_lost"),
               ("flood gap ms", "flood_gap_ms")]
    print("\nlive migration of a TCG guest between two ports of one bridge "
          "(QEMU 7.2, same machine); ours / OVS-DPDK 3.1:")
    print("| run | scenario | " + " | ".join(c for c, _ in columns) + " |")
    print("| --- | --- |" + " --- |" * len(columns))
    for run, scenario, ours, ref in rows:
        print("| %d | %s | %s |" % (run, scenario[len("test_"):], " | ".join(
            "%s / %s" % (cell(ours, key), cell(ref, key)) for _, key in columns)))
    print("\n(logs of failed runs: the sandbox directories printed above; results in %s)"
          % workdir)


if __name__ == "__main__":
    main()
