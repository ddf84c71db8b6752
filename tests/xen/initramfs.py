#!/usr/bin/env python3
"""Joins and checks the initramfs images the real-Xen tier boots.

Linux unpacks an initramfs that is a sequence of archives (init/initramfs.c; the grammar in
Documentation/driver-api/early-userspace/buffer-format.rst): newc cpio archives, compressed
archives (gzip, xz, ...) whose content is again cpio, and runs of zero bytes between them. The
unpacker tracks its offset from the start of the image and takes a '0' as the start of a cpio
header only at an offset that is a multiple of 4; anywhere else it tries to read a compressed
archive's magic and stops with "invalid magic at start of compressed archive" (or "broken
padding"), and the kernel panics for want of a root file system. An uncompressed cpio is padded
to 512 bytes by cpio(1), so it keeps the next archive aligned; a gzip is as long as its content
makes it, so an archive appended to it lands at a multiple of 4 only by luck.

  initramfs.py join OUT ARCHIVE...   writes OUT: each ARCHIVE padded with zeros to a multiple of 4
  initramfs.py check IMAGE...        walks IMAGE as the kernel does; exit 1 with the offset and
                                     the reason at the first archive the kernel would refuse

Only the Python standard library: the harness runs it on the host before booting anything.
"""
import lzma
import mmap
import sys
import zlib

ALIGN = 4
CPIO_HEADER = 110
CPIO_MAGICS = (b"070701", b"070702")


class Refused(Exception):
    pass


def _pad(n):
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def walk_cpio(buf, pos, where):
    """Parses one newc archive at buf[pos:] up to its TRAILER!!! entry; returns (entries, end)."""
    entries = 0
    while True:
        if pos + CPIO_HEADER > len(buf):
            raise Refused(f"{where}: cpio header at offset {pos} runs past the end")
        magic = bytes(buf[pos:pos + 6])
        if magic not in CPIO_MAGICS:
            raise Refused(f"{where}: no cpio magic at offset {pos} (found {magic!r})")
        try:
            fields = [int(bytes(buf[pos + 6 + 8 * i:pos + 14 + 8 * i]), 16) for i in range(13)]
        except ValueError:
            raise Refused(f"{where}: cpio header at offset {pos} has a field that is not hex") from None
        filesize, namesize = fields[6], fields[11]
        if namesize == 0:
            raise Refused(f"{where}: cpio entry at offset {pos} has an empty name")
        name_end = pos + CPIO_HEADER + namesize
        name = bytes(buf[pos + CPIO_HEADER:name_end - 1])
        data = _pad(name_end)
        pos = _pad(data + filesize)
        if pos > len(buf) + ALIGN:
            raise Refused(f"{where}: cpio entry {name!r} runs past the end")
        if name == b"TRAILER!!!":
            return entries, min(pos, len(buf))
        entries += 1


def decompress(buf, pos, where):
    """Decompresses the archive at buf[pos:]; returns (content, end offset of the compressed data)."""
    head = bytes(buf[pos:pos + 6])
    if head[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(wbits=31)
    elif head == b"\xfd7zXZ\x00":
        d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    else:
        raise Refused(f"{where}: offset {pos}: neither a cpio header at an offset that is a multiple of "
                      f"{ALIGN} nor a gzip or xz archive (first bytes {head!r}): the kernel stops here with "
                      f"'invalid magic at start of compressed archive'")
    chunk = 1 << 20
    out = []
    at = pos
    while not d.eof:
        if at >= len(buf):
            raise Refused(f"{where}: compressed archive at offset {pos} is truncated")
        piece = bytes(buf[at:at + chunk])
        out.append(d.decompress(piece))
        at += len(piece)
    end = at - len(d.unused_data)
    return b"".join(out), end


def walk(buf, where, nested=False):
    """Walks an image (or a compressed archive's content) as init/initramfs.c does.
    Returns a list of (kind, start, end, entries)."""
    found = []
    pos = 0
    n = len(buf)
    while pos < n:
        if buf[pos] == 0:
            pos += 1
            continue
        if buf[pos] == ord("0") and pos % ALIGN == 0:
            entries, end = walk_cpio(buf, pos, where)
            found.append(("cpio", pos, end, entries))
            pos = end
            continue
        if nested:
            raise Refused(f"{where}: offset {pos} inside a compressed archive is not a cpio header "
                          f"at a multiple of {ALIGN}")
        if buf[pos] == ord("0"):
            raise Refused(f"{where}: a cpio archive starts at offset {pos}, which is not a multiple of "
                          f"{ALIGN}: the kernel stops here with 'invalid magic at start of compressed "
                          f"archive' (pad the archive before it to {ALIGN} bytes)")
        content, end = decompress(buf, pos, where)
        inner = walk(memoryview(content), f"{where}@{pos}", nested=True)
        if not inner:
            raise Refused(f"{where}: compressed archive at offset {pos} holds no cpio archive")
        found.append(("compressed", pos, end, sum(e for _, _, _, e in inner)))
        pos = end
    return found


def check(path):
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        if size == 0:
            raise Refused(f"{path}: empty")
        # Not closed explicitly: a Refused's traceback may still hold views into the mapping.
        archives = walk(memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)), path)
    if not archives:
        raise Refused(f"{path}: holds no archive")
    return archives


def join(out, inputs):
    with open(out, "wb") as o:
        for path in inputs:
            with open(path, "rb") as i:
                while block := i.read(1 << 20):
                    o.write(block)
            o.write(b"\0" * (_pad(o.tell()) - o.tell()))


def main(argv):
    if len(argv) >= 3 and argv[1] == "join":
        join(argv[2], argv[3:])
        return 0
    if len(argv) >= 3 and argv[1] == "check":
        status = 0
        for path in argv[2:]:
            try:
                archives = check(path)
            except (Refused, OSError) as e:
                print(f"initramfs: REFUSED {e}", file=sys.stderr)
                status = 1
                continue
            desc = ", ".join(f"{kind} at {start} ({entries} entries)" for kind, start, _, entries in archives)
            print(f"initramfs: {path}: {desc}")
        return status
    print(__doc__.split("\n\n")[-2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
