#!/usr/bin/python3
"""The demo's sandbox phase: our ovs-vswitchd with two vhost-user ports, and (later)
two DPDK testpmd "VMs" forwarding through it.

Run by utilities/ovs-vhostuser-demo after it built the tree; by hand:
    /usr/bin/python3 utilities/demo-sandbox.py --daemon build/bin/ovs-vswitchd-vhostuser

What it does:
  1. starts ovsdb-server and our daemon in a private directory (ovs_sandbox.py),
  2. creates a netdev bridge br0 with a dpdkvhostuser port (vhu0: the switch listens)
     and a dpdkvhostuserclient port (vhu1: the guest listens, the switch connects),
  3. prints both ports' status and statistics,
  4. with --with-guests: starts one testpmd virtio_user "VM" per port, forwards
     packets vhu0 -> vhu1 -> vhu0 for --seconds with a live rate line, stops them,
  5. stops the daemons with ovs-appctl exit.

Step 4 needs the vhost-user backend behind the ports, which the netdev provider does
not use yet: until it does, the guests cannot attach and step 4 stops with a message
saying so.  TODO: make --with-guests the default once ports accept guests.
"""

import argparse
import glob
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from ovs_sandbox import OvsSandbox, SandboxError  # noqa: E402

# The switch's PMD thread polls on CPU 0; the guests get CPU 1 (two-core machines).
SWITCH_PMD_CPU_MASK = "0x1"
GUEST_LCORES = "0@1,1@1"

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

class TestpmdGuest:
    """One DPDK testpmd with a virtio_user port: the guest side of a vhost-user
    socket, standing in for a VM."""

    def __init__(self, name, socket_path, listen, forward_mode, logdir, tx_first=False):
        self.name = name
        self.log_path = os.path.join(logdir, f"{name}.log")
        devargs = f"virtio_user0,path={socket_path},queues=1,queue_size=1024"
        if listen:
            devargs += ",server=1"
        self.command = [
            "dpdk-testpmd", "--lcores", GUEST_LCORES, "--no-pci",
            f"--file-prefix={name}", "--single-file-segments", "-m", "512",
            "--vdev", devargs, "--",
            f"--forward-mode={forward_mode}", "--burst=32",
            "--txd=1024", "--rxd=1024", "--total-num-mbufs=16384",
            "--stats-period=1"]
        if tx_first:
            self.command.append("--tx-first")
        self.process = None

    def start(self):
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def has_no_port(self):
        """testpmd keeps running, forwarding nothing, when its virtio_user port could
        not attach; this is how it says so."""
        try:
            with open(self.log_path, errors="replace") as log:
                return "No probed ethernet devices" in log.read()
        except FileNotFoundError:
            return False

    def stop(self):
        """testpmd with --stats-period quits, printing its totals, on SIGINT."""
        if not self.alive():
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        # DPDK leaves its hugepage files behind; they would hold the pages.
        for path in glob.glob(f"/dev/hugepages/{self.name}map_*"):
            os.unlink(path)


def wait_until_connected(ovs, ports, guests, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {p: ovs.get_map("Interface", p, "status").get("status") for p in ports}
        if all(s == "connected" for s in states.values()):
            return True
        for guest in guests:
            if not guest.alive() or guest.has_no_port():
                say(f"guest {guest.name} could not attach; its log: {guest.log_path}")
                return False
        time.sleep(0.5)
    return False


def forwarding_phase(ovs, ports, seconds):
    """Prints, once a second and on one line, each port's receive and transmit rate
    as the switch counts them."""
    def snapshot():
        return {p: ovs.get_map("Interface", p, "statistics") for p in ports}

    def rate(now, before, counter, interval):
        return (int(now.get(counter, 0)) - int(before.get(counter, 0))) / interval

    previous, previous_time = snapshot(), time.monotonic()
    for elapsed in range(1, seconds + 1):
        time.sleep(1)
        current, current_time = snapshot(), time.monotonic()
        interval = current_time - previous_time
        fields = []
        for port in ports:
            rx = rate(current[port], previous[port], "rx_packets", interval) / 1e6
            tx = rate(current[port], previous[port], "tx_packets", interval) / 1e6
            drop = rate(current[port], previous[port], "tx_dropped", interval) / 1e6
            fields.append(f"{port} rx {rx:6.2f} tx {tx:6.2f} drop {drop:5.2f} Mpps")
        print(f"\r[{elapsed:3d}/{seconds} s] " + " | ".join(fields), end="", flush=True)
        previous, previous_time = current, current_time
    print()


def wait_for_path(path, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def start_guests(ovs, sockets, guests):
    """Starts the guests in an order that lets each attach; returns False (having
    said why) when one cannot."""
    guest2, guest1 = guests
    # Guest 2 listens: the client-mode port connects to it.
    say(f"starting {guest2.name}: {' '.join(guest2.command)}")
    guest2.start()
    # Guest 1 connects: the switch's socket must exist first.
    if not wait_for_path(sockets[SERVER_PORT], 10):
        say(f"the switch did not create {sockets[SERVER_PORT]}")
        return False
    say(f"starting {guest1.name}: {' '.join(guest1.command)}")
    guest1.start()
    return wait_until_connected(ovs, list(sockets), guests, timeout=30)


def run_guests(ovs, sockets, seconds):
    """Phase 4.  Returns True if traffic flowed."""
    say("flows: vhu0 -> vhu1 and vhu1 -> vhu0")
    ovs.ofctl("del-flows", "br0")
    ovs.ofctl("add-flow", "br0", f"in_port={SERVER_PORT},actions=output:{CLIENT_PORT}")
    ovs.ofctl("add-flow", "br0", f"in_port={CLIENT_PORT},actions=output:{SERVER_PORT}")

    # Guest 1 starts the loop with one burst (--tx-first); from then on both guests
    # send back whatever they receive, and the switch forwards it across.
    guests = [TestpmdGuest("guest2", sockets[CLIENT_PORT], listen=True,
                           forward_mode="io", logdir=ovs.logdir),
              TestpmdGuest("guest1", sockets[SERVER_PORT], listen=False,
                           forward_mode="io", logdir=ovs.logdir, tx_first=True)]
    try:
        if not start_guests(ovs, sockets, guests):
            say("the guests did not attach: the netdev provider does not drive the "
                "vhost-user backend yet (see the TODO in utilities/demo-sandbox.py)")
            return False
        say(f"forwarding for {seconds} s (rates as the switch counts them)")
        forwarding_phase(ovs, list(sockets), seconds)
        return True
    finally:
        for guest in reversed(guests):
            guest.stop()


# ---- Main ----

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--daemon", required=True,
                        help="our ovs-vswitchd (build/bin/ovs-vswitchd-vhostuser)")
    parser.add_argument("--with-guests", action="store_true",
                        help="also run two testpmd guests and forward between them "
                             "(needs the backend wired into the provider: not yet)")
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
        print_port_report(ovs, sockets)
        if args.with_guests:
            ok = run_guests(ovs, sockets, args.seconds)
            print_port_report(ovs, sockets)
            if not ok:
                ovs.keep = True
                print(f"    keeping {ovs.root} (logs of the switch and guests)")
        say("shutting down (ovs-appctl exit)")
        ovs.stop()
    say("done" if ok else "done, with the guest phase incomplete")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
