#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/{control,virtqueue}.

Each seed is a small, mostly well-formed program in the target's input format (see the
comments at the top of fuzz_control.cc and fuzz_virtqueue.cc): a full vhost-user
handshake that gets packets moving, and one variant per known class of hostile input,
so that the fuzzer starts deep in the code rather than at the message framing.

    /usr/bin/python3 tests/fuzz/make_seeds.py     # rewrites the corpus directories
"""

import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# ---- vhost-user ----
GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_LOG_BASE, SET_LOG_FD, SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE = 6, 7, 8, 9, 10
GET_VRING_BASE, SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 11, 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
NET_SET_MTU, SET_BACKEND_REQ_FD, GET_INFLIGHT_FD, SET_INFLIGHT_FD = 20, 21, 31, 32
RESET_DEVICE, SET_STATUS, GET_STATUS, ADD_MEM_REG = 34, 39, 40, 37

F_MRG_RXBUF, F_INDIRECT, F_EVENT_IDX, F_PROTOCOL, F_VERSION_1 = 15, 28, 29, 30, 32
F_RING_PACKED = 34
PROTOCOL = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 13) | (1 << 16)

DESC_NEXT, DESC_WRITE, DESC_INDIRECT = 1, 2, 4

# fd kinds of fuzz_control.cc
MEMFD64K, MEMFD4K, MEMFD1M, MEMFD_EMPTY, EVENTFD, PIPE, DEVNULL, SOCKET = range(8)

GPA = 0x100000
USER = 0x7F0000000000


def kinds(fds):
    value = 0
    for i, kind in enumerate(fds):
        value |= kind << (3 * i)
    return value


def raw(data, fds=()):
    return struct.pack("<BHBI", 0, len(data), len(fds), kinds(fds)) + data


def msg(request, payload=b"", fds=(), need_reply=False, bad_version=False):
    flags = (1 if need_reply else 0) | (2 if bad_version else 0)
    return struct.pack("<BBBHBI", 1, request, flags, len(payload), len(fds),
                       kinds(fds)) + payload


def u64(value):
    return struct.pack("<Q", value)


def state(index, num):
    return struct.pack("<II", index, num)


def burst(vring, count, size):
    return struct.pack("<BBBH", 2, vring, count, size)


def poke(memfd, offset, data):
    return struct.pack("<BBIH", 3, memfd, offset, len(data)) + data


def close_peer():
    return b"\x04"


def half_header(n):
    return struct.pack("<BB", 5, n)


def mem_table(regions):
    return struct.pack("<II", len(regions), 0) + b"".join(
        struct.pack("<QQQQ", *r) for r in regions)


def desc(addr, length, flags=0, nxt=0):
    return struct.pack("<QIHH", addr, length, flags, nxt)


# Ring layout inside the 64 KiB memfd for the control seeds: size 64.
RING = 64
LAYOUT = {0: (0x0000, 0x0400, 0x0500), 1: (0x0800, 0x0C00, 0x0D00)}


def vring_setup(index, size=RING, enable=True, base=0):
    d, a, u = LAYOUT[index]
    out = msg(SET_VRING_NUM, state(index, size))
    out += msg(SET_VRING_BASE, state(index, base))
    out += msg(SET_VRING_ADDR, struct.pack("<IIQQQQ", index, 0, USER + d, USER + u,
                                           USER + a, 0))
    out += msg(SET_VRING_KICK, u64(index), fds=[EVENTFD])
    out += msg(SET_VRING_CALL, u64(index), fds=[EVENTFD])
    if enable:
        out += msg(SET_VRING_ENABLE, state(index, 1))
    return out


def handshake(features=(1 << F_VERSION_1) | (1 << F_INDIRECT) | (1 << F_PROTOCOL), base=0):
    out = msg(GET_FEATURES) + msg(SET_OWNER) + msg(GET_PROTOCOL_FEATURES)
    out += msg(SET_PROTOCOL_FEATURES, u64(PROTOCOL))
    out += msg(SET_FEATURES, u64(features))
    out += msg(SET_MEM_TABLE, mem_table([(GPA, 0x10000, USER, 0)]), fds=[MEMFD64K])
    out += vring_setup(0, base=base) + vring_setup(1, base=base)
    return out


def guest_tx(descs, heads, ring=1):
    """Writes descriptors and makes 'heads' available on 'ring'."""
    d, a, _ = LAYOUT[ring]
    out = poke(MEMFD64K, d, b"".join(descs))
    out += poke(MEMFD64K, a, struct.pack("<HH", 0, len(heads)) +
                b"".join(struct.pack("<H", h) for h in heads))
    return out


def packet_bytes(size, header=12):
    return bytes(header) + bytes((i * 7) & 0xFF for i in range(size))


def control_seeds():
    seeds = {}
    hs = handshake()
    frame = packet_bytes(60)
    tx_ok = poke(MEMFD64K, 0x2000, frame) + guest_tx(
        [desc(GPA + 0x2000, len(frame))], [0])
    rx_ok = poke(MEMFD64K, 0x0000, desc(GPA + 0x3000, 2048, DESC_WRITE)) + poke(
        MEMFD64K, 0x0400, struct.pack("<HHH", 0, 1, 0))
    seeds["handshake_traffic"] = hs + tx_ok + burst(1, 4, 0) + rx_ok + burst(0, 1, 64)
    seeds["handshake_mergeable"] = handshake(
        (1 << F_VERSION_1) | (1 << F_MRG_RXBUF) | (1 << F_EVENT_IDX) | (1 << F_PROTOCOL)) + \
        rx_ok + burst(0, 2, 1500)
    seeds["handshake_legacy"] = msg(GET_FEATURES) + msg(SET_OWNER) + \
        msg(SET_FEATURES, u64(1 << F_INDIRECT)) + \
        msg(SET_MEM_TABLE, mem_table([(GPA, 0x10000, USER, 0)]), fds=[MEMFD64K]) + \
        vring_setup(0, enable=False) + vring_setup(1, enable=False) + \
        poke(MEMFD64K, 0x2000, packet_bytes(60, 10)) + \
        guest_tx([desc(GPA + 0x2000, 70)], [0]) + burst(1, 1, 0)
    # Packed rings start with the wrap counters at 1 (base bit 15).
    packed = handshake((1 << F_VERSION_1) | (1 << F_RING_PACKED) | (1 << F_PROTOCOL), 0x8000)
    seeds["handshake_packed"] = packed + poke(MEMFD64K, 0x2000, frame) + poke(
        MEMFD64K, 0x0800, struct.pack("<QIHH", GPA + 0x2000, len(frame), 0, 1 << 7)) + \
        burst(1, 4, 0) + poke(MEMFD64K, 0x0000,
                              struct.pack("<QIHH", GPA + 0x3000, 2048, 0, 2 | 1 << 7)) + \
        burst(0, 1, 64)
    # Framing.
    seeds["size_too_large"] = raw(struct.pack("<III", SET_MEM_TABLE, 1, 1 << 30))
    seeds["bad_version"] = msg(GET_FEATURES, bad_version=True)
    seeds["truncated_header"] = raw(struct.pack("<II", GET_FEATURES, 1)) + close_peer()
    seeds["truncated_payload"] = raw(struct.pack("<III", SET_FEATURES, 1, 8) + b"\0\0\0") \
        + close_peer()
    seeds["close_mid_header"] = half_header(7) + msg(GET_FEATURES)
    seeds["request_out_of_range"] = msg(200, u64(0)) + msg(0) + msg(GET_QUEUE_NUM)
    seeds["fds_on_get_features"] = msg(GET_FEATURES, fds=[EVENTFD] * 8) * 4
    seeds["too_many_fds"] = msg(SET_MEM_TABLE, mem_table([(GPA, 0x10000, USER, 0)]),
                                fds=[MEMFD64K] * 10)
    seeds["fds_split_messages"] = raw(struct.pack("<III", SET_VRING_CALL, 1, 8),
                                      fds=[EVENTFD, PIPE]) + raw(u64(0), fds=[DEVNULL])
    # Memory tables.
    seeds["mem_nine_regions"] = msg(SET_MEM_TABLE, mem_table(
        [(GPA + i * 0x1000, 0x1000, USER + i * 0x1000, 0) for i in range(9)]),
        fds=[MEMFD64K] * 8)
    seeds["mem_fewer_fds"] = msg(SET_MEM_TABLE, mem_table(
        [(GPA, 0x1000, USER, 0), (GPA + 0x10000, 0x1000, USER + 0x10000, 0x1000)]),
        fds=[MEMFD64K])
    seeds["mem_overflow"] = msg(SET_MEM_TABLE, mem_table(
        [(GPA, 0x10000, USER, 2 ** 64 - 4096)]), fds=[MEMFD64K])
    seeds["mem_overlap"] = msg(SET_MEM_TABLE, mem_table(
        [(GPA, 0x8000, USER, 0), (GPA + 0x4000, 0x8000, USER + 0x10000, 0)]),
        fds=[MEMFD64K, MEMFD64K])
    seeds["mem_zero_size"] = msg(SET_MEM_TABLE, mem_table([(GPA, 0, USER, 0)]),
                                 fds=[MEMFD64K])
    seeds["mem_beyond_file"] = msg(SET_MEM_TABLE, mem_table([(GPA, 0x2000, USER, 0)]),
                                   fds=[MEMFD4K])
    seeds["mem_not_a_file"] = msg(SET_MEM_TABLE, mem_table([(GPA, 0x1000, USER, 0)]),
                                  fds=[EVENTFD])
    seeds["mem_two_regions"] = msg(SET_MEM_TABLE, mem_table(
        [(GPA, 0x10000, USER, 0), (0x40000000, 0x100000, USER + 0x100000, 0)]),
        fds=[MEMFD64K, MEMFD1M]) + vring_setup(0) + vring_setup(1)
    seeds["mem_table_while_running"] = hs + tx_ok + burst(1, 1, 0) + msg(
        SET_MEM_TABLE, mem_table([(GPA, 0x10000, USER, 0)]), fds=[MEMFD64K]) + burst(1, 1, 0)
    # Vring messages.
    seeds["vring_num_zero"] = msg(SET_VRING_NUM, state(0, 0))
    seeds["vring_num_not_pow2"] = msg(SET_VRING_NUM, state(0, 300))
    seeds["vring_num_too_big"] = msg(SET_VRING_NUM, state(0, 65536))
    seeds["vring_index_huge"] = msg(SET_VRING_NUM, state(0x10001, 64))
    seeds["vring_index_one_past"] = msg(SET_VRING_BASE, state(16, 0))
    seeds["vring_base_beyond"] = msg(SET_VRING_BASE, state(0, 70000))
    seeds["vring_kick_index"] = msg(SET_VRING_KICK, u64(0x1FF), fds=[EVENTFD])
    seeds["vring_kick_nofd"] = hs + msg(SET_VRING_KICK, u64(0x100 | 1))
    seeds["vring_addr_outside"] = msg(SET_MEM_TABLE, mem_table([(GPA, 0x10000, USER, 0)]),
                                      fds=[MEMFD64K]) + msg(SET_VRING_NUM, state(1, 64)) + \
        msg(SET_VRING_ADDR, struct.pack("<IIQQQQ", 1, 0, USER + 0xFFC0, USER, USER + 0x2000, 0)) \
        + msg(SET_VRING_KICK, u64(1), fds=[EVENTFD])
    seeds["vring_overlap"] = msg(SET_MEM_TABLE, mem_table([(GPA, 0x10000, USER, 0)]),
                                 fds=[MEMFD64K]) + msg(SET_VRING_NUM, state(1, 64)) + \
        msg(SET_VRING_ADDR, struct.pack("<IIQQQQ", 1, 0, USER, USER + 0x100, USER + 0x2000, 0)) \
        + msg(SET_VRING_KICK, u64(1), fds=[EVENTFD])
    seeds["get_vring_base"] = hs + tx_ok + burst(1, 1, 0) + msg(GET_VRING_BASE, state(1, 0)) \
        + burst(1, 1, 0)
    seeds["enable_disable"] = hs + msg(SET_VRING_ENABLE, state(1, 0)) + \
        msg(SET_VRING_ENABLE, state(1, 1)) + msg(SET_VRING_ENABLE, state(1, 2)) + tx_ok + \
        burst(1, 1, 0)
    # Requests we do not offer, and the rest.
    seeds["log_base"] = msg(SET_LOG_BASE, struct.pack("<QQ", 2 ** 64 - 4096, 4096),
                            fds=[MEMFD64K], need_reply=True)
    seeds["inflight"] = msg(SET_PROTOCOL_FEATURES, u64(PROTOCOL)) + \
        msg(GET_INFLIGHT_FD, bytes(24), need_reply=True) + \
        msg(SET_INFLIGHT_FD, bytes(24), fds=[MEMFD4K], need_reply=True)
    seeds["misc"] = msg(SET_PROTOCOL_FEATURES, u64(PROTOCOL)) + msg(GET_QUEUE_NUM) + \
        msg(NET_SET_MTU, u64(1500), need_reply=True) + msg(SET_STATUS, u64(15)) + \
        msg(GET_STATUS) + msg(SET_BACKEND_REQ_FD, fds=[SOCKET]) + msg(RESET_DEVICE) + \
        msg(RESET_OWNER) + msg(ADD_MEM_REG, bytes(40), fds=[MEMFD4K]) + \
        msg(SET_VRING_ERR, u64(0), fds=[EVENTFD])
    # Descriptor chains through the whole device.
    loop = [desc(GPA + 0x2000, 40, DESC_NEXT, 1), desc(GPA + 0x2028, 40, DESC_NEXT, 0)]
    seeds["chain_loop"] = hs + guest_tx(loop, [0]) + burst(1, 1, 0)
    seeds["chain_indirect"] = hs + poke(MEMFD64K, 0x4000, desc(GPA + 0x2000, 5, DESC_NEXT, 1) +
                                        desc(GPA + 0x2005, 67)) + \
        poke(MEMFD64K, 0x2000, frame) + guest_tx([desc(GPA + 0x4000, 32, DESC_INDIRECT)], [0]) \
        + burst(1, 1, 0)
    seeds["chain_short"] = hs + guest_tx([desc(GPA + 0x2000, 8)], [0]) + burst(1, 1, 0)
    seeds["avail_ahead"] = hs + poke(MEMFD64K, 0x0C00, struct.pack("<HH", 0, 1000)) + \
        burst(1, 1, 0)
    return seeds


# ---- fuzz_virtqueue ----
def vq_config(features=0, ring_log2=4, regions=((0x10000, 0, 0, 0),), base=0,
              desc_at=(0, 0x000), avail_at=(0, 0x100), used_at=(0, 0x140), n_ops=0):
    out = struct.pack("<BBBBHH", features, ring_log2, len(regions) - 1, n_ops, base, 0)
    regs = list(regions) + [(0, 0, 0, 0)] * (3 - len(regions))
    for size, offset, gpa_gap, user_gap in regs:
        out += struct.pack("<IHHII", size, offset, 0, gpa_gap, user_gap)
    for region, offset in (desc_at, avail_at, used_at):
        out += struct.pack("<BBHI", region, 0, 0, offset)
    assert len(out) == 80
    return out


def op(kind, a=0, b=0, c=0):
    return struct.pack("<BBHI", kind, a, b, c)


DEQUEUE, ENQUEUE, POKE, BUMP, PUBLISH, TRANSLATE, REMAP, RESTART = range(8)


def vq_seed(config_kwargs, ops, memory):
    return vq_config(n_ops=len(ops), **config_kwargs) + b"".join(ops) + memory


def memory_image(descs, avail, blobs=(), size=0x1000, ring=16):
    """Region 0's first bytes: desc table at 0, avail ring at 0x100, used at 0x140."""
    mem = bytearray(size)
    table = b"".join(descs)
    mem[0:len(table)] = table
    a = struct.pack("<HH", 0, len(avail)) + b"".join(struct.pack("<H", h) for h in avail)
    mem[0x100:0x100 + len(a)] = a
    for offset, data in blobs:
        mem[offset:offset + len(data)] = data
    return bytes(mem)


P_NEXT, P_WRITE, P_INDIRECT, P_AVAIL, P_USED = 1, 2, 4, 1 << 7, 1 << 15


def pdesc(addr, length, ident, flags):
    """A packed-ring descriptor, made available for the first lap (AVAIL=1, USED=0)."""
    return struct.pack("<QIHH", addr, length, ident, flags | P_AVAIL)


def packed_image(descs, blobs=(), size=0x1000):
    """Region 0: descriptor ring at 0, driver event area at 0x100, device's at 0x140."""
    mem = bytearray(size)
    ring = b"".join(descs)
    mem[0:len(ring)] = ring
    for offset, data in blobs:
        mem[offset:offset + len(data)] = data
    return bytes(mem)


def packed_seeds(frame):
    seeds = {}
    mem = packed_image([pdesc(GPA + 0x400, 72, 0, 0), pdesc(GPA + 0x500, 5, 1, P_NEXT),
                        pdesc(GPA + 0x505, 67, 1, 0)],
                       [(0x400, frame), (0x500, frame)])
    seeds["packed_tx"] = vq_seed({"features": 16}, [op(DEQUEUE, 8)], mem)
    seeds["packed_tx_odd_size"] = vq_seed({"features": 16, "ring_log2": 0x84},
                                          [op(DEQUEUE, 8), op(RESTART, 0, 0x8003),
                                           op(DEQUEUE, 8)], mem)
    mem = packed_image([pdesc(GPA + 0x400 + i * 0x100, 256, i, P_WRITE) for i in range(8)])
    seeds["packed_rx"] = vq_seed({"features": 16}, [op(ENQUEUE, 2, 10, 100)], mem)
    seeds["packed_rx_mergeable"] = vq_seed({"features": 16 | 1 | 2},
                                           [op(ENQUEUE, 1, 0, 700), op(ENQUEUE, 0, 0, 2000)],
                                           mem)
    table = struct.pack("<QIHH", GPA + 0x400, 5, 0, 0) + struct.pack("<QIHH", GPA + 0x405, 67, 0, 0)
    mem = packed_image([pdesc(GPA + 0x800, 32, 0, P_INDIRECT)], [(0x400, frame), (0x800, table)])
    seeds["packed_indirect"] = vq_seed({"features": 16 | 4}, [op(DEQUEUE, 4)], mem)
    mem = packed_image([pdesc(GPA + 0x400, 40, 0, P_NEXT)] * 16)
    seeds["packed_chain_longer_than_ring"] = vq_seed({"features": 16}, [op(DEQUEUE, 1)], mem)
    return seeds


def virtqueue_seeds():
    seeds = {}
    frame = packet_bytes(60)
    # TX: a plain chain, a header split over two descriptors, a zero-length
    # descriptor with an address outside memory.
    mem = memory_image(
        [desc(GPA + 0x400, 72), desc(GPA + 0x500, 5, DESC_NEXT, 2), desc(GPA + 0x505, 67),
         desc(GPA + 0x600, 72, DESC_NEXT, 4), desc(0xDEAD00000000, 0)],
        [0, 1, 3], [(0x400, frame), (0x500, frame), (0x600, frame)])
    seeds["tx_chains"] = vq_seed({}, [op(DEQUEUE, 8)], mem)
    seeds["tx_legacy_header"] = vq_seed({"features": 8}, [op(DEQUEUE, 8)], mem)
    # RX, one buffer per packet and mergeable.
    mem = memory_image([desc(GPA + 0x400 + i * 0x100, 256, DESC_WRITE) for i in range(8)],
                       list(range(8)))
    seeds["rx_single"] = vq_seed({}, [op(ENQUEUE, 2, 10, 100)], mem)
    seeds["rx_mergeable"] = vq_seed({"features": 1}, [op(ENQUEUE, 1, 0, 700),
                                                      op(ENQUEUE, 0, 0, 2000)], mem)
    seeds["rx_event_idx"] = vq_seed({"features": 3}, [op(ENQUEUE, 3, 0, 60),
                                                      op(PUBLISH, 0, 5), op(ENQUEUE, 0, 0, 60)],
                                    mem)
    # Indirect tables: good, nested, partial.
    table = desc(GPA + 0x400, 5, DESC_NEXT, 1) + desc(GPA + 0x405, 67)
    mem = memory_image([desc(GPA + 0x800, 32, DESC_INDIRECT)], [0],
                       [(0x400, frame), (0x800, table)])
    seeds["tx_indirect"] = vq_seed({"features": 4}, [op(DEQUEUE, 4)], mem)
    mem = memory_image([desc(GPA + 0x800, 16, DESC_INDIRECT)], [0],
                       [(0x800, desc(GPA + 0x900, 16, DESC_INDIRECT))])
    seeds["tx_nested_indirect"] = vq_seed({"features": 4}, [op(DEQUEUE, 4)], mem)
    mem = memory_image([desc(GPA + 0x800, 20, DESC_INDIRECT)], [0], [(0x800, table)])
    seeds["tx_indirect_partial"] = vq_seed({"features": 4}, [op(DEQUEUE, 4)], mem)
    # A loop and a chain longer than the ring.
    mem = memory_image([desc(GPA + 0x400, 40, DESC_NEXT, 1), desc(GPA + 0x428, 40, DESC_NEXT, 0)],
                       [0])
    seeds["tx_loop"] = vq_seed({}, [op(DEQUEUE, 1)], mem)
    mem = memory_image([desc(GPA + 0x400, 8, DESC_NEXT, (i + 1) % 16) for i in range(16)], [0])
    seeds["tx_longer_than_ring"] = vq_seed({}, [op(DEQUEUE, 1)], mem)
    # Two regions with a gap: a buffer that would straddle them.
    regions = ((0x1000, 0x100, 0, 0), (0x1000, 0x200, 0x100, 0x100))
    mem = memory_image([desc(GPA + 0xFC0, 0x80), desc(GPA + 0x1000 + 0x1000, 72)], [0, 1],
                       size=0x1000)
    seeds["two_regions_straddle"] = vq_seed({"regions": regions},
                                            [op(DEQUEUE, 2), op(TRANSLATE, 1, 64, 3),
                                             op(TRANSLATE, 0x81, 16, 128)], mem)
    regions = ((0x1000, 0, 0, 0), (0x1000, 0, 0, 0), (0x800, 0x10, 0x40, 0x10))
    seeds["three_regions_adjacent"] = vq_seed({"regions": regions},
                                              [op(TRANSLATE, 0, 1, 127), op(TRANSLATE, 1, 8, 1),
                                               op(TRANSLATE, 0x82, 2048, 64), op(DEQUEUE, 2)], mem)
    # Rings at the end of memory, misaligned, overlapping.
    seeds["ring_at_end"] = vq_seed({"desc_at": (0, 0xFF00), "ring_log2": 4}, [op(DEQUEUE, 1)],
                                   b"")
    seeds["ring_misaligned"] = vq_seed({"desc_at": (0, 0x8)}, [op(DEQUEUE, 1)], b"")
    seeds["ring_overlap"] = vq_seed({"avail_at": (0, 0x80)}, [op(DEQUEUE, 1)], b"")
    # Guest moving things: avail idx beyond the ring, heads out of range, remap, restart.
    mem = memory_image([desc(GPA + 0x400, 72)], [0], [(0x400, frame)])
    seeds["avail_runs_ahead"] = vq_seed({}, [op(BUMP, 200), op(DEQUEUE, 8)], mem)
    seeds["head_out_of_range"] = vq_seed({}, [op(PUBLISH, 0, 300), op(DEQUEUE, 8)], mem)
    seeds["remap_restart"] = vq_seed({"base": 5}, [op(DEQUEUE, 1), op(REMAP), op(PUBLISH, 0, 0),
                                                   op(DEQUEUE, 1), op(RESTART, 0, 1),
                                                   op(DEQUEUE, 1)], mem)
    seeds["csum_start_beyond"] = vq_seed({}, [op(DEQUEUE, 1)], memory_image(
        [desc(GPA + 0x400, 72)], [0],
        [(0x400, struct.pack("<BBHHHHH", 1, 0, 0, 0, 0xFFF0, 0xFFF0, 0) + frame[12:])]))
    seeds["big_ring"] = vq_seed({"ring_log2": 10, "avail_at": (0, 0x4000),
                                 "used_at": (0, 0x5000)}, [op(DEQUEUE, 64)], b"")
    seeds.update(packed_seeds(frame))
    return seeds


def write(kind, seeds):
    directory = os.path.join(HERE, "corpus", kind)
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):
        if not name.startswith("regression_"):  # Inputs that once crashed stay.
            os.unlink(os.path.join(directory, name))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    print(f"{directory}: {len(seeds)} seeds", file=sys.stderr)


if __name__ == "__main__":
    write("control", control_seeds())
    write("virtqueue", virtqueue_seeds())
