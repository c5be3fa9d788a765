#!/usr/bin/env python3
"""A real Linux guest (QEMU, virtio_net) against the backend library (vhostuser-loopback).

The guest boots with one vhost-user card, eth0 comes up under virtio_net with an
address, and the guest pings a neighbour with a static ARP entry, so it sends exactly
the requested number of frames and nothing else (IPv6 is off in the guest).  The
loopback echoes every frame back; the guest counts the echoes as received (they are
addressed to the neighbour, so its stack then drops them, after the driver counted
them).  Then the counts must agree exactly:
  - the guest sent exactly N frames during the test, and the loopback received every
    frame the guest ever sent;
  - the guest received exactly N frames during the test, and everything the loopback
    sent;
  - no drop and no error on either side, no warning in the library's log.

--backend-mode server: the loopback listens and QEMU connects (dpdkvhostuser ports);
client: QEMU listens and the loopback connects (dpdkvhostuserclient ports).
--queues 2 runs a two-vCPU guest with two queue pairs and pings from each vCPU.
--mtu 9000 has the device advertise a 9000-byte MTU, and the pings fill it: frames
larger than one receive buffer, which the backend spreads over mergeable buffers.
--packed has the guest's driver use packed virtqueues (QEMU's packed=on).

usage: loopback_guest_test.py --loopback BIN [--backend-mode server|client]
                              [--queues N] [--pings N] [--mtu BYTES] [--packed]
                              [--keep]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

from guest_image import ensure_image
from loopback_backend import LoopbackBackend
from qemu_guest import QemuGuest, VhostUserNic

GUEST_ADDRESS = "10.0.0.1/24"
# The neighbour the guest pings: it exists only as a static ARP entry, so no ARP
# traffic precedes the pings.  The guest's link leads to the loopback and nowhere else.
NEIGHBOUR_IP = "10.0.0.2"
NEIGHBOUR_MAC = "02:00:00:00:00:02"
PING_INTERVAL = 0.2


def log(message):
    print("[%6.1f s] %s" % (time.monotonic() - START, message), flush=True)


START = time.monotonic()


def wait_for_carrier(guest, iface, timeout=30):
    """The card's link is up once the backend has connected and set up the vrings."""
    deadline = time.monotonic() + timeout
    while guest.run("cat /sys/class/net/%s/carrier" % iface, check=False).strip() != "1":
        if time.monotonic() > deadline:
            raise AssertionError("%s has no carrier after %d s" % (iface, timeout))
        time.sleep(0.5)


def wait_until_quiet(guest, iface, settle=1.0, timeout=30):
    """Returns the interface's counters once they stop moving: the echoes of the last
    pings have arrived and nothing else is in flight."""
    deadline = time.monotonic() + timeout
    previous = guest.interface_stats(iface)
    while True:
        time.sleep(settle)
        current = guest.interface_stats(iface)
        if current == previous:
            return current
        if time.monotonic() > deadline:
            raise AssertionError("%s counters still moving after %d s" % (iface, timeout))
        previous = current


def send_pings(guest, queues, count, mtu):
    """Pings from every vCPU at once; Linux maps each vCPU to its own TX queue.  Each
    frame fills the MTU: 20 bytes of IPv4 and 8 of ICMP header around the payload."""
    per_cpu = count // queues
    payload = mtu - 28
    # One short line whatever the vCPU count: the serial console types it under TCG.
    # ping exits 1 (no replies: the echoes are not addressed to us); wait collects them.
    guest.run("for c in %s; do taskset -c $c ping -q -c %d -s %d -i %s -W 1 %s"
              " >/dev/null & done; wait"
              % (" ".join(str(cpu) for cpu in range(queues)), per_cpu, payload,
                 PING_INTERVAL, NEIGHBOUR_IP),
              timeout=30 + count * PING_INTERVAL)
    return per_cpu * queues


def save_dmesg(guest, workdir):
    """The guest kernel's view, kept with the other logs when the test fails."""
    with open(os.path.join(workdir, "guest.dmesg"), "w") as f:
        f.write(guest.run("dmesg", timeout=10))


def check(problems, condition, message):
    if not condition:
        problems.append(message)


def run(args, workdir):
    image = ensure_image(log=log)
    log("guest image %s (kernel %s)" % (image.directory, image.inputs["kernel_release"]))
    socket_path = os.path.join(workdir, "vhu0.sock")
    backend_is_client = args.backend_mode == "client"
    loopback = LoopbackBackend(args.loopback, socket_path,
                               os.path.join(workdir, "loopback.log"),
                               client=backend_is_client, queues=args.queues)
    guest = QemuGuest(image, [VhostUserNic(socket_path, qemu_listens=backend_is_client,
                                           queues=args.queues,
                                           host_mtu=args.mtu if args.mtu != 1500 else None,
                                           device_options={"packed": "on"} if args.packed
                                           else None)],
                      workdir,
                      # link-report prints the driver and queue count of each card
                      # at boot, before the test touches anything.
                      kernel_args=["vhu.ip=" + GUEST_ADDRESS, "vhu.run=link-report"])
    try:
        if backend_is_client:
            guest.start()  # QEMU listens at once (wait=off) and boots meanwhile.
            deadline = time.monotonic() + 10
            while not os.path.exists(socket_path):
                if time.monotonic() > deadline or not guest.is_running():
                    raise AssertionError("QEMU did not listen on " + socket_path)
                time.sleep(0.02)
            loopback.start()
        else:
            loopback.start()
            loopback.wait_listening()
            guest.start()
        boot = guest.wait_ready()
        log("guest shell up %.1f s after QEMU started" % boot)
        guest.wait_for_interface("eth0", "virtio_net")
        wait_for_carrier(guest, "eth0")
        link = guest.console.wait_for(r"^VHU-LINK iface=eth0 .*$", 5).group(0)
        log("eth0 up: %s" % link)
        mtu = int(guest.run("cat /sys/class/net/eth0/mtu"))
        if mtu != args.mtu:
            raise AssertionError("eth0 has MTU %d, the device advertised %d"
                                 % (mtu, args.mtu))
        guest.run("arp -s %s %s" % (NEIGHBOUR_IP, NEIGHBOUR_MAC))
        # The virtio feature bits the driver took, one character each, bit 0 first.
        features = guest.run("cat /sys/class/net/eth0/device/features").strip()
        VIRTIO_F_RING_PACKED = 34
        packed = len(features) > VIRTIO_F_RING_PACKED and features[VIRTIO_F_RING_PACKED] == "1"
        if packed != args.packed:
            raise AssertionError("the guest's ring is %s, expected %s (features %s)"
                                 % ("packed" if packed else "split",
                                    "packed" if args.packed else "split", features))

        before = wait_until_quiet(guest, "eth0")
        sent = send_pings(guest, args.queues, args.pings, args.mtu)
        after = wait_until_quiet(guest, "eth0")
        log("guest eth0 before: tx=%d rx=%d; after: tx=%d rx=%d" %
            (before["tx_packets"], before["rx_packets"], after["tx_packets"],
             after["rx_packets"]))
        ours = loopback.stop()
        log("loopback: %s" % ours)
        library_log = loopback.log()

        problems = []
        tx_delta = after["tx_packets"] - before["tx_packets"]
        rx_delta = after["rx_packets"] - before["rx_packets"]
        check(problems, tx_delta == sent,
              "guest sent %d frames while pinging %d times" % (tx_delta, sent))
        check(problems, rx_delta == sent,
              "guest received %d frames back for %d sent" % (rx_delta, sent))
        frame_bytes = args.mtu + 14  # The guest counts the Ethernet header, no FCS.
        for counter in ["tx_bytes", "rx_bytes"]:
            moved = after[counter] - before[counter]
            check(problems, moved == sent * frame_bytes,
                  "guest %s rose by %d, expected %d frames of %d bytes"
                  % (counter, moved, sent, frame_bytes))
        check(problems, ours["rx"] == after["tx_packets"],
              "guest sent %d frames in all, loopback received %d"
              % (after["tx_packets"], ours["rx"]))
        check(problems, ours["tx"] == after["rx_packets"],
              "loopback sent %d frames, guest received %d"
              % (ours["tx"], after["rx_packets"]))
        check(problems, sum(rx for rx, _ in ours["queues"].values()) == ours["rx"],
              "per-queue counts do not add up: %s" % ours["queues"])
        check(problems, ours["dropped"] == 0 and ours["errors"] == 0,
              "loopback dropped %d, errors %d" % (ours["dropped"], ours["errors"]))
        check(problems, ours["connects"] == 1,
              "the guest connected %d times" % ours["connects"])
        for counter in ["rx_errors", "tx_errors", "rx_dropped", "tx_dropped"]:
            check(problems, after.get(counter, 0) == 0,
                  "guest %s=%d" % (counter, after.get(counter, 0)))
        every_pair = (1 << args.queues) - 1
        check(problems, ours.get("enabled_rx_mask") == every_pair and
              ours.get("enabled_tx_mask") == every_pair,
              "enabled queue pairs rx=%s tx=%s, expected %#x" %
              (ours.get("enabled_rx_mask"), ours.get("enabled_tx_mask"), every_pair))
        expected_link = ("driver=virtio_net tx_queues=%d rx_queues=%d"
                         % (args.queues, args.queues))
        check(problems, link.endswith(expected_link),
              "guest reports %r, expected %r" % (link, expected_link))
        for q in range(args.queues):
            check(problems, ours["queues"].get(q, (0, 0))[0] > 0,
                  "no traffic on queue pair %d: %s" % (q, ours["queues"]))
        complaints = [line for line in library_log.splitlines()
                      if line.startswith(("vhostuser|WARN", "vhostuser|ERR"))]
        check(problems, not complaints, "library log: " + " / ".join(complaints))

        save_dmesg(guest, workdir)
        started = time.monotonic()
        status = guest.poweroff()
        log("guest powered off in %.1f s, QEMU exit status %d"
            % (time.monotonic() - started, status))
        check(problems, status == 0, "QEMU exited %d after poweroff" % status)
        if problems:
            raise AssertionError("; ".join(problems))
    except Exception:
        if guest.is_running():
            try:
                save_dmesg(guest, workdir)
            except Exception as e:
                log("could not read the guest's dmesg: %s" % str(e).splitlines()[0])
        raise
    finally:
        guest.kill()
        loopback.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loopback", required=True, help="the vhostuser-loopback binary")
    ap.add_argument("--backend-mode", choices=["server", "client"], default="server")
    ap.add_argument("--queues", type=int, default=1)
    ap.add_argument("--pings", type=int, default=20)
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--packed", action="store_true",
                    help="packed virtqueues (virtio-net-pci packed=on)")
    ap.add_argument("--keep", action="store_true", help="keep the logs even on success")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="vhu-guest-")
    ok = False
    try:
        run(args, workdir)
        ok = True
        log("PASS")
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print("logs kept in", workdir, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
