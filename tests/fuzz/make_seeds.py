#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz (committed; rerun after a format change).

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


def main():
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
