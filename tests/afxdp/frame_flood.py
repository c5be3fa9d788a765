#!/usr/bin/env python3
"""Sends a fixed number of Ethernet frames (IPv4/UDP) out of one interface.

A raw AF_PACKET socket, one frame per send(): the frames leave exactly as built, with
correct IP and UDP checksums (nothing is left for an offload to fill in), each with
its sequence number in the payload.  --rate paces the frames (bursts of --burst, then
a sleep); 0 sends as fast as send() goes.  Prints one line,
"FLOOD sent=N seconds=S".

Run it in the network namespace of the interface, e.g.
    ip netns exec NS python3 -B frame_flood.py --iface far0 --dst-mac 52:54:00:... \\
        --src-ip 10.0.0.100 --dst-ip 10.0.0.99 --count 5000

Standard library only: runs with Debian's /usr/bin/python3.
"""

import argparse
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff


def mac_bytes(text):
    return bytes(int(part, 16) for part in text.split(":"))


def frame(dst_mac, src_mac, src_ip, dst_ip, sequence, size, port):
    """An Ethernet frame of 'size' bytes (without FCS, at least 60): IPv4, UDP."""
    payload_len = size - 14 - 20 - 8
    payload = struct.pack("!I", sequence).ljust(payload_len, b"\xa5")
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", port, port, udp_len, 0) + payload
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    udp_sum = checksum(pseudo + udp) or 0xffff
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, sequence & 0xffff, 0x4000,
                     64, socket.IPPROTO_UDP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + udp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--iface", required=True)
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--src-ip", required=True)
    ap.add_argument("--dst-ip", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--size", type=int, default=60, help="frame bytes, without FCS")
    ap.add_argument("--port", type=int, default=9, help="UDP ports (9: discard)")
    ap.add_argument("--rate", type=float, default=0, help="frames per second, 0: no pacing")
    ap.add_argument("--burst", type=int, default=32)
    args = ap.parse_args()
    if args.size < 60:
        sys.exit("--size: at least 60")

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((args.iface, 0))
    src_mac = sock.getsockname()[4]
    dst_mac = mac_bytes(args.dst_mac)
    frames = [frame(dst_mac, src_mac, args.src_ip, args.dst_ip, i, args.size, args.port)
              for i in range(args.count)]
    started = time.monotonic()
    for i, data in enumerate(frames):
        if args.rate and i % args.burst == 0:
            due = started + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        sent = sock.send(data)
        if sent != len(data):
            sys.exit("frame %d: sent %d of %d bytes" % (i, sent, len(data)))
    print("FLOOD sent=%d seconds=%.3f" % (len(frames), time.monotonic() - started),
          flush=True)


if __name__ == "__main__":
    main()
