#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz (committed; rerun after a format change).

tx_slots: 2 bytes of limits, then 12-byte TX ring entries (see tx_slots_fuzz.cpp).
ctrl_messages: byte 0 (queues, readable grants), 16-byte control requests, the grants' content.
packet_headers: 9 bytes of chunk layout, then an Ethernet frame (see packet_headers_fuzz.cpp).
blkif_request: 16 bytes of limits (see blkif_request_fuzz.cpp), then a request in the x86_64 or
x86_32 layout, then indirect descriptors. One seed per kind of request a frontend sends.
vif_frontend_keys: 2 bytes of what netback advertised, then key=value lines.
rx_postings: 11 bytes of packet needs and ring position, chunk lengths, then RX requests (see
rx_postings_fuzz.cpp).
xenstore_wire: records for four connections (0, 1 Dom0; 2 guest 5; 3 guest 7), see
xenstore_wire_fuzz.cpp. One seed per kind of client conversation, well-formed or not."""
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


# xsd_sockmsg_type values (xen/io/xs_wire.h).
XS = dict(CONTROL=0, DIRECTORY=1, READ=2, GET_PERMS=3, WATCH=4, UNWATCH=5, TRANSACTION_START=6,
          TRANSACTION_END=7, INTRODUCE=8, RELEASE=9, GET_DOMAIN_PATH=10, WRITE=11, MKDIR=12, RM=13,
          SET_PERMS=14, WATCH_EVENT=15, ERROR=16, IS_DOMAIN_INTRODUCED=17, RESUME=18, SET_TARGET=19,
          RESET_WATCHES=21, DIRECTORY_PART=22)
DOM0, DOM0_B, GUEST5, GUEST7 = 0, 1, 2, 3


def xs_strings(*args):
    return b"".join(a.encode() + b"\0" if isinstance(a, str) else a + b"\0" for a in args)


def xs_msg(conn, type_name, payload=b"", tx=0, req=1):
    """A record: a message whose header length is the truth."""
    return struct.pack("<BBBBH", conn, XS[type_name], req, tx, len(payload)) + payload


def xs_lying(conn, type_name, claimed, payload, tx=0, req=1):
    """A record: a message whose header claims `claimed` bytes (see the harness for the mapping)."""
    return struct.pack("<BBBBIH", conn | 8, XS[type_name], req, tx, claimed, len(payload)) + payload


def xs_raw(conn, data):
    return struct.pack("<BH", conn | 12, len(data)) + data


def xs_reopen(conn):
    return bytes([conn | 0x1C])


def xs_write(conn, path, value, tx=0):
    return xs_msg(conn, "WRITE", path.encode() + b"\0" + value, tx)


def xs_seeds():
    m, w = xs_msg, xs_write
    s = xs_strings
    g5 = "/local/domain/5"
    backend = "/local/domain/0/backend/vbd/5/51712"
    return {
        "dom0-nodes": w(DOM0, "/a/b", b"v") + m(DOM0, "READ", s("/a/b")) + m(DOM0, "DIRECTORY", s("/a"))
        + m(DOM0, "MKDIR", s("/a/c")) + m(DOM0, "GET_PERMS", s("/a/b")) + m(DOM0, "SET_PERMS", s("/a/b", "n0", "r5"))
        + m(DOM0, "RM", s("/a/gone")) + m(DOM0, "RM", s("/a")) + m(DOM0, "READ", s("/a/b"))
        + w(DOM0, "rel/node", b"1") + m(DOM0, "DIRECTORY", s("/local/domain/0")),
        "dom0-watches": m(DOM0, "WATCH", s("/w", "tok")) + w(DOM0_B, "/w/x", b"1") + m(DOM0, "WATCH", s("/", "all"))
        + m(DOM0, "WATCH", s("/w", "tok")) + m(DOM0_B, "RM", s("/w")) + m(DOM0, "UNWATCH", s("/w", "tok"))
        + m(DOM0, "UNWATCH", s("/never", "tok")) + m(DOM0, "RESET_WATCHES"),
        "dom0-domains": m(DOM0, "WATCH", s("@introduceDomain", "in")) + m(DOM0, "WATCH", s("@releaseDomain", "out"))
        + m(DOM0, "INTRODUCE", s("9", "4660", "3")) + m(DOM0, "IS_DOMAIN_INTRODUCED", s("9"))
        + m(DOM0, "GET_DOMAIN_PATH", s("9")) + m(DOM0, "RELEASE", s("9")) + m(DOM0, "RELEASE", s("9"))
        + m(DOM0, "INTRODUCE", s("13", "1", "2")) + m(DOM0, "IS_DOMAIN_INTRODUCED", s("0")),
        "dom0-transactions": m(DOM0, "TRANSACTION_START", s("")) + w(DOM0, "/tx/a", b"1", tx=1)
        + m(DOM0, "READ", s("/tx/a"), tx=1) + m(DOM0, "DIRECTORY", s("/tx"), tx=1) + m(DOM0, "TRANSACTION_END", s("T"), tx=1)
        + m(DOM0, "TRANSACTION_START", s("")) + m(DOM0, "RM", s("/tx"), tx=2) + m(DOM0, "TRANSACTION_END", s("F"), tx=2)
        + m(DOM0, "TRANSACTION_START", s("")) + m(DOM0, "READ", s("/tx/a"), tx=3) + w(DOM0_B, "/tx/a", b"2")
        + w(DOM0, "/tx/b", b"3", tx=3) + m(DOM0, "SET_PERMS", s("/tx/b", "n0", "b5"), tx=3)
        + m(DOM0, "TRANSACTION_END", s("T"), tx=3),
        "dom0-directory-part": b"".join(w(DOM0, "/big/child-with-a-long-name-%d" % i, b"") for i in range(40))
        + m(DOM0, "DIRECTORY_PART", s("/big", "0")) + m(DOM0, "DIRECTORY_PART", s("/big", "31"))
        + m(DOM0, "DIRECTORY_PART", s("/big", "4000")),
        "guest-frontend": w(GUEST5, "device/vbd/51712/state", b"1") + m(GUEST5, "READ", s("name"))
        + m(GUEST5, "WATCH", s("device/vbd/51712", "fe")) + m(GUEST5, "WATCH", s(backend + "/state", "be"))
        + w(DOM0, backend + "/state", b"4") + m(GUEST5, "READ", s(backend + "/state"))
        + w(GUEST5, backend + "/state", b"6") + m(GUEST5, "DIRECTORY", s("device/vbd"))
        + m(GUEST5, "GET_PERMS", s("device/vbd/51712/state")) + w(GUEST5, "control/shutdown", b"")
        + w(DOM0, g5 + "/control/shutdown", b"poweroff") + m(GUEST5, "READ", s("control/shutdown"))
        + m(GUEST5, "RM", s("control/shutdown")) + m(GUEST5, "RM", s("name")),
        "guest-sharing": w(GUEST5, "data/shared", b"hello") + m(GUEST5, "SET_PERMS", s("data/shared", "n5", "r7"))
        + m(GUEST7, "READ", s(g5 + "/data/shared")) + w(GUEST7, g5 + "/data/shared", b"x")
        + m(GUEST5, "SET_PERMS", s("data/shared", "n7")) + m(GUEST7, "WATCH", s("/", "root"))
        + w(GUEST5, "data/shared", b"again") + m(GUEST7, "DIRECTORY", s(g5))
        + m(GUEST7, "GET_PERMS", s("/local/domain/0")) + m(GUEST5, "SET_PERMS", s("/tool", "n5")),
        "guest-transactions": m(GUEST5, "TRANSACTION_START", s("")) + w(GUEST5, "data/t", b"1", tx=1)
        + m(GUEST5, "RM", s("control/shutdown"), tx=1) + w(GUEST5, "control/shutdown", b"mine", tx=1)
        + m(GUEST5, "TRANSACTION_END", s("T"), tx=1) + m(GUEST5, "TRANSACTION_START", s(""))
        + m(GUEST5, "READ", s("data/t"), tx=2) + w(DOM0, g5 + "/data/t", b"2") + w(GUEST5, "data/u", b"", tx=2)
        + m(GUEST5, "TRANSACTION_END", s("T"), tx=2) + m(GUEST5, "TRANSACTION_START", s(""), tx=9)
        + m(GUEST5, "TRANSACTION_END", s("T"), tx=77),
        "guest-privileged-ops": m(GUEST7, "INTRODUCE", s("8", "1", "1")) + m(GUEST7, "RELEASE", s("5"))
        + m(GUEST7, "IS_DOMAIN_INTRODUCED", s("5")) + m(GUEST7, "GET_DOMAIN_PATH", s("7"))
        + m(GUEST7, "WATCH", s("@releaseDomain", "r")) + m(GUEST7, "CONTROL", s("print", "x"))
        + m(GUEST7, "SET_TARGET", s("7", "5")) + m(GUEST7, "RESUME", s("7")),
        "release-while-connected": m(GUEST7, "WATCH", s("data", "d")) + m(DOM0, "RELEASE", s("7"))
        + w(GUEST7, "data/after", b"1") + xs_reopen(GUEST7) + m(DOM0, "INTRODUCE", s("7", "1", "1"))
        + xs_reopen(GUEST7) + w(GUEST7, "data/after", b"1"),
        "malformed": m(DOM0, "READ", b"/local") + m(DOM0, "READ", s("/a", "/b")) + m(DOM0, "READ", s("/local"), tx=99)
        + m(DOM0, "WRITE", b"/no-nul") + m(DOM0, "SET_PERMS", s("/local", "x9")) + m(DOM0, "SET_PERMS", s("/local", "r99999"))
        + m(DOM0, "DIRECTORY_PART", s("/local", "abc")) + m(DOM0, "TRANSACTION_END", s("maybe"))
        + m(DOM0, "GET_DOMAIN_PATH", s("-1")) + m(DOM0, "WATCH", s("@bogus", "t")) + m(DOM0, "WATCH_EVENT")
        + m(DOM0, "ERROR", s("x")) + m(GUEST5, "READ", s("/a//b")) + m(GUEST5, "WRITE", s("trailing/") + b"v")
        + m(GUEST5, "MKDIR", s("/bad char")) + m(GUEST5, "READ", b""),
        "framing": xs_lying(GUEST5, "READ", 3, s("name")) + xs_raw(GUEST5, b"\0" * 7)
        + xs_raw(DOM0, struct.pack("<IIII", XS["READ"], 5, 0, 7)[:10]) + xs_raw(DOM0, struct.pack("<IIII", XS["READ"], 5, 0, 7)[10:] + b"/local\0")
        + xs_lying(DOM0_B, "WRITE", 0x80001000, b"/x\0y") + xs_lying(GUEST7, "WRITE", 4097 + 0x80000000, b"")
        + xs_raw(GUEST5, b"\xff" * 16),
        # At the limits: these are larger than libFuzzer's default -max_len, so they raise it.
        "guest-quotas": b"".join(m(GUEST5, "TRANSACTION_START", s("")) for _ in range(11))
        + b"".join(m(GUEST7, "WATCH", s("data", "t%d" % i)) for i in range(129))
        + w(GUEST5, "data/" + "/".join(["q"] * 700), b"", tx=1) + w(GUEST5, "data/r", b"", tx=1)
        + w(GUEST7, "data/" + "/".join(["n"] * 1000), b""),
        # Two transactions within the quota each, past it together (the second commit: ENOSPC).
        "guest-quota-two-transactions": m(GUEST5, "TRANSACTION_START", s("")) + m(GUEST5, "TRANSACTION_START", s(""))
        + w(GUEST5, "data/" + "/".join(["q"] * 600), b"", tx=1) + w(GUEST5, "device/" + "/".join(["q"] * 600), b"", tx=2)
        + m(GUEST5, "TRANSACTION_END", s("T"), tx=1) + m(GUEST5, "TRANSACTION_END", s("T"), tx=2),
        "dom0-limits": w(DOM0, "/" + "p" * 3100, b"") + w(DOM0, "p" * 2100, b"") + w(DOM0, "/v", b"x" * 4090)
        + m(DOM0, "RM", s("/")) + m(DOM0, "WATCH", s("/e", "k" * 3000)) + w(DOM0, "/e/" + "/".join(["z" * 60] * 20), b"")
        + b"".join(w(DOM0, "/wide/a-child-with-a-name-of-thirty-%03d" % i, b"") for i in range(130))
        + m(DOM0, "DIRECTORY", s("/wide")) + m(DOM0, "DIRECTORY_PART", s("/wide", "4000")),
    }


def frontend_seeds():
    """blkfront directories: limits (max queues - 1, max order, persistent offered), key=value lines."""
    def d(limits, **keys):
        return bytes(limits) + "\n".join(f"{k.replace('__', '/').replace('_', '-')}={v}" for k, v in keys.items()).encode()
    return {
        "single-legacy": d((0, 0, 1), ring_ref=8, event_channel=15, feature_persistent=1),
        "single-order2": d((0, 2, 0), ring_page_order=2, event_channel=3, ring_ref0=1, ring_ref1=2, ring_ref2=3,
                           ring_ref3=4, protocol="x86_64-abi"),
        "two-queues": d((3, 1, 1), multi_queue_num_queues=2, ring_page_order=1, protocol="x86_32-abi",
                        queue_0__event_channel=5, queue_0__ring_ref0=10, queue_0__ring_ref1=11,
                        queue_1__event_channel=6, queue_1__ring_ref0=20, queue_1__ring_ref1=21),
        "too-many-queues": d((1, 0, 0), multi_queue_num_queues=9, event_channel=1, ring_ref=1),
        "bad-protocol": d((0, 0, 0), protocol="x86_16-abi", event_channel=1, ring_ref=1),
        "read-error": bytes((0, 0, 1)) + b"ring-ref=8\nevent-channel=\x01",
    }


def rx_seeds():
    """RX postings: headroom (2 bytes), flags (bit 0 sg, bits 1-2 extras, bit 3 last chunk fills,
    bits 4-7 log2 ring size), length (3 bytes), ring index of the first request (4), chunk count,
    chunk lengths (2 bytes each), then netif_rx_request entries (id, pad, gref)."""
    def seed(length, chunks, posted, headroom=0, sg=True, extras=0, fill=True, ring_log2=8, at=0):
        flags = (1 if sg else 0) | (extras << 1) | (8 if fill else 0) | (ring_log2 << 4)
        head = struct.pack("<HB", headroom, flags) + struct.pack("<I", length)[:3] + struct.pack("<IB", at, len(chunks))
        reqs = b"".join(struct.pack("<HHI", i, 0, 100 + i) for i in range(posted))
        return head + b"".join(struct.pack("<H", c) for c in chunks) + reqs
    return {
        "one-frame": seed(1514, [1514], 4, sg=False),
        "xdp-headroom": seed(1514, [1514], 1, headroom=256),
        "gso-64k-mbufs": seed(65000, [2048] * 31 + [0], 20, extras=1),
        "gso-and-hash": seed(9000, [4000, 5000], 5, extras=2),
        "jumbo-without-sg": seed(9000, [9000], 8, sg=False),
        "too-few-posted": seed(9000, [9000], 2),
        "wrapping-ring-index": seed(12000, [1000] * 12, 6, at=0xFFFFFFFE),
        "short-chunks": seed(5000, [100, 200], 3, fill=False),
        "small-ring": seed(9000, [9000], 8, ring_log2=1),
        "headroom-past-page": seed(60, [60], 1, headroom=4096),
        # 35 buffers of 1873 bytes and 40 chunks that end elsewhere: the most copies a packet takes.
        "most-segments": seed(65553, [1639] * 39 + [0], 35, headroom=2223),
    }


def vif_frontend_seeds():
    """netfront directories: 2 bytes of what was advertised (max queues - 1; bits: split event
    channels, control ring, multicast control, XDP headroom), then key=value lines."""
    def d(max_queues, offered, keys):
        return bytes((max_queues - 1, offered)) + "\n".join(f"{k}={v}" for k, v in keys).encode()
    base = [("request-rx-copy", 1), ("feature-rx-notify", 1), ("feature-sg", 1), ("feature-gso-tcpv4", 1),
            ("feature-gso-tcpv6", 1), ("feature-ipv6-csum-offload", 1)]
    single = base + [("tx-ring-ref", 8), ("rx-ring-ref", 9), ("event-channel", 5)]
    two = base + [("multi-queue-num-queues", 2), ("queue-0/tx-ring-ref", 10), ("queue-0/rx-ring-ref", 11),
                  ("queue-0/event-channel-tx", 3), ("queue-0/event-channel-rx", 4), ("queue-1/tx-ring-ref", 20),
                  ("queue-1/rx-ring-ref", 21), ("queue-1/event-channel", 7), ("ctrl-ring-ref", 30),
                  ("event-channel-ctrl", 31), ("request-multicast-control", 1), ("xdp-headroom", 256)]
    return {
        "linux-single-queue": d(4, 0, single),
        "linux-two-queues-everything": d(4, 0xF, two),
        "everything-not-offered": d(2, 0, two + [("queue-0/event-channel", 6)]),
        "no-csum-offload": d(1, 0, single + [("feature-no-csum-offload", 1)]),
        "no-rx-copy": d(1, 0, [kv for kv in single if kv[0] != "request-rx-copy"]),
        "too-many-queues": d(2, 0, single + [("multi-queue-num-queues", 3)]),
        "xdp-headroom-too-big": d(1, 8, single + [("xdp-headroom", 4000)]),
        "half-split": d(1, 1, single + [("event-channel-tx", 3)]),
        "unreadable-ring": d(1, 0, single[:-2] + [("rx-ring-ref", "\x01"), ("event-channel", 5)]),
        "unreadable-rx-copy": d(1, 0, [("request-rx-copy", "\x01")] + single[1:]),
    }


def blkif_seeds():
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
    return seeds


def write_corpus(target, seeds):
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


def main():
    write_corpus("frontend_keys", frontend_seeds())
    write_corpus("xenstore_wire", xs_seeds())
    write_corpus("tx_slots", tx_seeds())
    write_corpus("ctrl_messages", ctrl_seeds())
    write_corpus("packet_headers", packet_seeds())
    write_corpus("blkif_request", blkif_seeds())
    write_corpus("rx_postings", rx_seeds())
    write_corpus("vif_frontend_keys", vif_frontend_seeds())


if __name__ == "__main__":
    main()
