#!/usr/bin/python3
"""The demo's sandbox phase: our ovs-vswitchd with two vhost-user ports and two DPDK
testpmd "VMs" forwarding through it.

Run by utilities/ovs-vhostuser-demo after it built the tree; by hand:
    /usr/bin/python3 utilities/demo-sandbox.py --daemon build/bin/ovs-vswitchd-vhostuser

What it does:
  1. starts ovsdb-server and our daemon in a private directory (ovs_sandbox.py),
  2. creates a netdev bridge br0 with a dpdkvhostuser port (vhu0: the switch listens)
     and a dpdkvhostuserclient port (vhu1: the guest listens, the switch connects),
  3. prints both ports' status and statistics,
  4. starts one testpmd virtio_user "VM" per port (unless --no-guests), forwards
     packets vhu0 -> vhu1 -> vhu0 for --seconds with a live rate line, stops them,
     and prints both ports' statistics as ovsdb has them,
  5. stops the daemons with ovs-appctl exit.

Exits non-zero if no packet crossed the switch in both directions.
"""

import argparse
import glob
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from ovs_sandbox import OvsSandbox, SandboxError  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "tests", "peers"))
from testpmd import TestPmd  # noqa: E402

# The switch's PMD thread polls on CPU 0; the guests get CPU 1 (two-core machines).
SWITCH_PMD_CPU_MASK = "0x1"

SERVER_PORT = "vhu0"   # dpdkvhostuser: the switch listens on <rundir>/vhu0
CLIENT_PORT = "vhu1"   # dpdkvhostuserclient: the guest listens, the switch connects


def say(text):
    print(f"==> {text}", flush=True)


# ---- Topology ----

def build_topology(ovs):
    """br0 with the two ports; returns {port: socket path}."""
    client_socket = os.path.join(ovs.rundir, f"{CLIENT_PORT}-guest.sock")
    say("netdev bridge br0 with one dpdkvhostuser and one dpdkvhostuserclient port")
    ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
    ovs.vsctl("add-port", "br0", SERVER_PORT, "--",
              "set", "Interface", SERVER_PORT, "type=dpdkvhostuser")
    ovs.vsctl("add-port", "br0", CLIENT_PORT, "--",
              "set", "Interface", CLIENT_PORT, "type=dpdkvhostuserclient",
              f"options:vhost-server-path={client_socket}")
    for port in (SERVER_PORT, CLIENT_PORT):
        error = ovs.get("Interface", port, "error")
        if error != "[]":
            raise SandboxError(f"Interface {port}: {error}")
    return {SERVER_PORT: os.path.join(ovs.rundir, SERVER_PORT),
            CLIENT_PORT: client_socket}


def print_port_report(ovs, ports):
    for port in ports:
        for column in ("status", "statistics"):
            print(f"$ ovs-vsctl get Interface {port} {column}")
            print(ovs.get("Interface", port, column), flush=True)


# ---- Guests ----

def wait_until_ready(ovs, ports, vm, timeout):
    """Waits until every port's guest is attached and ready (link up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(ovs.get("Interface", p, "link_state") == "up" for p in ports):
            return True
        if vm.proc.poll() is not None:
            say(f"testpmd exited; its log: {vm.log_path}")
            return False
        time.sleep(0.2)
    say(f"the guests did not become ready within {timeout} s; testpmd's log: "
        f"{vm.log_path}")
    return False


def live_counters(ovs):
    """{port: (rx packets, tx packets, tx dropped)} straight from the switch (ovsdb's
    statistics are refreshed only every 5 s)."""
    text = ovs.ofctl("--names", "dump-ports", "br0")
    counters = {}
    for port, rx, tx, drop in re.findall(
            r'port\s+"?([\w-]+)"?:\s+rx pkts=(\d+).*?\n\s+tx pkts=(\d+), bytes=\d+, '
            r'drop=(\d+)', text):
        counters[port] = (int(rx), int(tx), int(drop))
    return counters


def forwarding_phase(ovs, ports, seconds):
    """Prints, once a second and on one line, each port's receive and transmit rate
    as the switch counts them.  Returns the last counters."""
    previous, previous_time = live_counters(ovs), time.monotonic()
    current = previous
    for elapsed in range(1, seconds + 1):
        time.sleep(1)
        current, current_time = live_counters(ovs), time.monotonic()
        interval = current_time - previous_time
        fields = []
        for port in ports:
            now, before = current.get(port, (0, 0, 0)), previous.get(port, (0, 0, 0))
            rx, tx, drop = ((now[i] - before[i]) / interval / 1e6 for i in range(3))
            fields.append(f"{port} rx {rx:5.2f} tx {tx:5.2f} drop {drop:5.2f} Mpps")
        print(f"\r[{elapsed:3d}/{seconds} s] " + " | ".join(fields), end="", flush=True)
        previous, previous_time = current, current_time
    print()
    return current


def wait_for_fresh_statistics(ovs, ports, live):
    """ovsdb gets the switch's counters every 5 s: wait until it has the final ones."""
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        stats = {p: ovs.get_map("Interface", p, "statistics") for p in ports}
        if all(int(stats[p].get("rx_packets", -1)) == live[p][0] for p in ports):
            return
        time.sleep(0.5)


def run_guests(ovs, sockets, seconds):
    """Phase 4.  Returns True if traffic crossed the switch both ways."""
    say("flows: vhu0 -> vhu1 and vhu1 -> vhu0")
    ovs.ofctl("del-flows", "br0")
    ovs.ofctl("add-flow", "br0", f"in_port={SERVER_PORT},actions=output:{CLIENT_PORT}")
    ovs.ofctl("add-flow", "br0", f"in_port={CLIENT_PORT},actions=output:{SERVER_PORT}")

    # One testpmd plays both VMs, with one virtio_user port per vhost-user port: it
    # connects to vhu0's socket and listens on vhu1's.  In io mode it sends whatever
    # one port receives out of the other, so packets circle through the switch.
    say("starting testpmd with two virtio_user ports, the VMs' side of both sockets")
    vm = TestPmd([sockets[SERVER_PORT], sockets[CLIENT_PORT]], server=[False, True],
                 queue_size=1024, descs=1024, burst=32, forward_mode="io",
                 hugepages=True, file_prefix="demo-vms",
                 log_path=os.path.join(ovs.logdir, "testpmd.log"))
    try:
        vm.wait_ready(timeout=60)
        print(f"    {' '.join(vm.argv)}")
        if not wait_until_ready(ovs, list(sockets), vm, timeout=30):
            return False
        # Eight bursts of 32 to start the circle.
        vm.command("start tx_first 8")
        say(f"forwarding for {seconds} s (rates as the switch counts them)")
        forwarding_phase(ovs, list(sockets), seconds)
        vm.command("stop")
        time.sleep(0.5)
    finally:
        vm.quit()
        # DPDK leaves its hugepage files behind; they would hold the pages.
        for path in glob.glob("/dev/hugepages/demo-vmsmap_*"):
            os.unlink(path)
    final = live_counters(ovs)
    wait_for_fresh_statistics(ovs, list(sockets), final)
    crossed = all(final.get(p, (0, 0, 0))[0] > 0 and final.get(p, (0, 0, 0))[1] > 0
                  for p in sockets)
    for port in sockets:
        rx, tx, drop = final.get(port, (0, 0, 0))
        say(f"{port}: received {rx} packets from its guest, sent {tx} to it, "
            f"dropped {drop}")
    if not crossed:
        say("no packet crossed the switch in both directions")
    return crossed


# ---- Main ----

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daemon", required=True,
                        help="our ovs-vswitchd (build/bin/ovs-vswitchd-vhostuser)")
    parser.add_argument("--no-guests", action="store_true",
                        help="only create the ports: no testpmd guests, no traffic")
    parser.add_argument("--seconds", type=int, default=10,
                        help="length of the forwarding phase (default 10)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the sandbox directory (logs, database)")
    args = parser.parse_args()

    if os.geteuid() != 0:
        parser.error("run as root: the switch's bridge port is a tap device")

    say("starting ovsdb-server and ovs-vswitchd-vhostuser in a private directory")
    ok = True
    with OvsSandbox(args.daemon, keep=args.keep,
                    other_config={"pmd-cpu-mask": SWITCH_PMD_CPU_MASK}) as ovs:
        print(f"    sandbox: {ovs.root}")
        types = ovs.get("Open_vSwitch", ".", "iface_types")
        print(f"$ ovs-vsctl get Open_vSwitch . iface_types\n{types}")
        sockets = build_topology(ovs)
        if args.no_guests:
            print_port_report(ovs, sockets)
        else:
            ok = run_guests(ovs, sockets, args.seconds)
            print_port_report(ovs, sockets)
            if not ok:
                ovs.keep = True
                print(f"    keeping {ovs.root} (logs of the switch and guests)")
        say("shutting down (ovs-appctl exit)")
        ovs.stop()
    say("done" if ok else "FAILED: no traffic crossed the switch")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
