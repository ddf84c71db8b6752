#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz (committed; rerun after a format change).

tx_slots: 2 bytes of limits, then 12-byte TX ring entries (see tx_slots_fuzz.cpp).
ctrl_messages: byte 0 (queues, readable grants), 16-byte control requests, the grants' content.
packet_headers: 9 bytes of chunk layout, then an Ethernet frame (see packet_headers_fuzz.cpp).
blkif_request: 16 bytes of limits (see blkif_request_fuzz.cpp), then a request in the x86_64 or
x86_32 layout, then indirect descriptors. One seed per kind of request a frontend sends."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def limits(is32, flags=0x3E, lbs_shift=0, max_indirect=256, sectors=1 << 21):
    return struct.pack("<BBBHQBBB", 1 if is32 else 0, flags, lbs_shift, max_indirect, sectors, 0, 0, 0)


def rw(is32, op, sector, segs, rid=7):
    head = struct.pack("<BBH", op, len(segs), 0) + (b"" if is32 else b"\0" * 4)
    body = struct.pack("<QQ", rid, sector)
    segs_b = b"".join(struct.pack("<IBBH", ref, first, last, 0) for ref, first, last in segs)
    return head + body + segs_b.ljust(11 * 8, b"\0")


def indirect(is32, op, sector, nsegs, pages):
    head = struct.pack("<BBH", 6, op, nsegs) + (b"" if is32 else b"\0" * 4)
    body = struct.pack("<QQHH", 9, sector, 0, 0) + b"".join(struct.pack("<I", 200 + p) for p in range(pages))
    return (head + body).ljust(108 if is32 else 112, b"\0")


def discard(is32, sector, count, flag=0):
    head = struct.pack("<BBH", 5, flag, 0) + (b"" if is32 else b"\0" * 4)
    return (head + struct.pack("<QQQ", 11, sector, count)).ljust(108 if is32 else 112, b"\0")


def ipv4(proto, payload, frag=0):
    total = 20 + len(payload)
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, frag, 64, proto, 0, bytes([10, 0, 0, 1]),
                       bytes([10, 0, 0, 2])) + payload


def ipv6(nh, payload):
    return struct.pack(">IHBB16s16s", 0x60000000, len(payload), nh, 64, b"\xfe\x80" + b"\0" * 13 + b"\1",
                       b"\xfe\x80" + b"\0" * 13 + b"\2") + payload


def tcp(data=b"hello", options=b""):
    return struct.pack(">HHIIBBHHH", 40000, 80, 1, 0, (5 + len(options) // 4) << 4, 0x18, 65535, 0, 0) + options + data


def udp(data=b"hello"):
    return struct.pack(">HHHH", 5353, 53, 8 + len(data), 0) + data


def ether(ethertype, payload, vlans=0):
    head = b"\x00\x16\x3e\x00\x00\x01" + b"\x00\x16\x3e\x00\x00\x02"
    for _ in range(vlans):
        head += struct.pack(">HH", 0x8100, 5)
    return head + struct.pack(">H", ethertype) + payload


def packet_seeds():
    # 9 bytes of layout: chunks-1, seven chunk sizes, options (bit 0: pseudo-header, bit 1: bad meta).
    one = bytes([0, 0, 0, 0, 0, 0, 0, 0, 0])
    split = bytes([3, 14, 20, 7, 0, 0, 0, 0, 1])
    frames = {
        "ipv4-tcp": ether(0x0800, ipv4(6, tcp(options=b"\x02\x04\x05\xb4"))),
        "ipv4-udp": ether(0x0800, ipv4(17, udp())),
        "ipv4-fragment": ether(0x0800, ipv4(17, udp(), frag=0x2000)),
        "ipv6-tcp": ether(0x86DD, ipv6(6, tcp())),
        "ipv6-hop-by-hop-udp": ether(0x86DD, ipv6(0, bytes([17, 0, 1, 4, 0, 0, 0, 0]) + udp())),
        "vlan-ipv4-tcp": ether(0x0800, ipv4(6, tcp()), vlans=2),
        "arp": ether(0x0806, b"\0\1\x08\0\6\4\0\1" + b"\0" * 20),
    }
    seeds = {}
    for name, frame in frames.items():
        seeds[name] = one + frame
        seeds[name + "-scattered"] = split + frame
    return seeds


def ctrl(rtype, d0=0, d1=0, d2=0, rid=1):
    return struct.pack("<HHIII", rid, rtype, d0, d1, d2)


def ctrl_seeds():
    # Byte 0: queues - 1 (low 3 bits), bit 7: odd grants readable. Then 16-byte requests, then the
    # grants' content. What Linux's xen-netfront sends to configure Toeplitz steering, and more.
    toeplitz, all_types = 1, 0xF
    key = bytes(range(1, 41))
    mapping = b"".join(struct.pack("<I", i % 4) for i in range(128))
    return {
        "linux-setup": bytes([3]) + ctrl(7, toeplitz) + ctrl(1) + ctrl(2, all_types) + ctrl(3, 2, 40) + ctrl(4)
        + ctrl(5, 128) + ctrl(6, 2, 128, 0) + mapping,
        "key-then-clear": bytes([0]) + ctrl(7, toeplitz) + ctrl(3, 4, 40) + ctrl(3, 4, 0) + key,
        "mapping-pieces": bytes([0x87]) + ctrl(5, 64) + ctrl(6, 3, 32, 0) + ctrl(6, 5, 32, 32) + mapping,
        "unsupported": bytes([1]) + ctrl(8) + ctrl(9, 1, 2, 3) + ctrl(10) + ctrl(0) + ctrl(0xFFFF),
    }


def txreq(gref, offset, flags, rid, size):
    return struct.pack("<IHHHH", gref, offset, flags, rid, size)


def extra(etype, flags, payload=b""):
    return struct.pack("<BB", etype, flags) + payload.ljust(10, b"\0")


def tx_seeds():
    # 2 bytes of limits (byte 0: max_slots - 1 in the low 5 bits, 0x40/0x80 GSO v4/v6 negotiated;
    # byte 1: fatal_slots - max_slots), then 12-byte ring entries.
    csum_blank, data_validated, more_data, extra_info = 1, 2, 4, 8
    limits = bytes([17 | 0xC0, 2])
    gso = extra(1, 0, struct.pack("<HBBH", 1448, 1, 0, 0))  # GSO tcpv4, mss 1448
    mcast = extra(2, 0, b"\x01\x00\x5e\x00\x00\x01")
    return {
        "one-slot": limits + txreq(8, 0, csum_blank | data_validated, 0, 1514),
        "three-slots": limits + txreq(8, 100, more_data, 0, 9000) + txreq(9, 0, more_data, 1, 4096)
        + txreq(10, 0, 0, 2, 4096),
        "gso": limits + txreq(8, 0, csum_blank | more_data | extra_info, 0, 5000) + gso + txreq(9, 0, 0, 1, 1000),
        "mcast-add": limits + txreq(8, 0, extra_info, 0, 0) + mcast,
        "eighteen-slots": limits + txreq(8, 0, more_data, 0, 18 * 100)
        + b"".join(txreq(9 + i, 0, more_data if i < 16 else 0, 1 + i, 100) for i in range(17)),
    }


def main():
    out = os.path.join(HERE, "corpus", "tx_slots")
    os.makedirs(out, exist_ok=True)
    for name, data in tx_seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    out = os.path.join(HERE, "corpus", "ctrl_messages")
    os.makedirs(out, exist_ok=True)
    for name, data in ctrl_seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    out = os.path.join(HERE, "corpus", "packet_headers")
    os.makedirs(out, exist_ok=True)
    for name, data in packet_seeds().items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    out = os.path.join(HERE, "corpus", "blkif_request")
    os.makedirs(out, exist_ok=True)
    seeds = {}
    for is32 in (False, True):
        abi = "x86_32" if is32 else "x86_64"
        seeds[f"{abi}-read"] = limits(is32) + rw(is32, 0, 64, [(100, 0, 7), (101, 0, 7)])
        seeds[f"{abi}-write-partial"] = limits(is32) + rw(is32, 1, 8, [(100, 2, 5)])
        seeds[f"{abi}-barrier-empty"] = limits(is32) + rw(is32, 2, 0, [])
        seeds[f"{abi}-flush"] = limits(is32) + rw(is32, 3, 0, [])
        seeds[f"{abi}-discard"] = limits(is32) + discard(is32, 128, 4096)
        seeds[f"{abi}-discard-secure"] = limits(is32) + discard(is32, 0, 8, 1)
        descs = b"".join(struct.pack("<IBBH", 300 + i, 0, 7, 0) for i in range(40))
        seeds[f"{abi}-indirect-read"] = limits(is32) + indirect(is32, 0, 256, 40, 1) + descs
        seeds[f"{abi}-indirect-write-4k"] = limits(is32, lbs_shift=3) + indirect(is32, 1, 512, 40, 1) + descs
        seeds[f"{abi}-read-readonly"] = limits(is32, flags=0x3F) + rw(is32, 0, 0, [(1, 0, 7)])
        seeds[f"{abi}-last-sector"] = limits(is32, sectors=1000) + rw(is32, 0, 992, [(1, 0, 7)])
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
