#!/usr/bin/env bash
# A test of the real-Xen harness itself: initramfs.py's check refuses the misaligned join that made
# every guest panic ("invalid magic at start of compressed archive"), accepts what its join builds,
# and refuses the other images the kernel would not unpack. Real archives from cpio(1) and gzip(1).
set -euo pipefail
tool=$(cd "$(dirname "$0")" && pwd)/initramfs.py
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0
expect() {  # expect pass|refuse DESCRIPTION IMAGE [MESSAGE-PATTERN]
  local want=$1 what=$2 image=$3 pattern=${4:-} out rc=0
  out=$("$tool" check "$image" 2>&1) || rc=$?
  if [ "$want" = pass ] && [ $rc -eq 0 ]; then echo "ok: $what: $out"; return; fi
  if [ "$want" = refuse ] && [ $rc -eq 1 ] && [[ "$out" == *REFUSED* ]] && [[ "$out" == *$pattern* ]]; then
    echo "ok: $what refused: $out"; return
  fi
  echo "FAIL: $what: wanted $want${pattern:+ ($pattern)}, got exit $rc: $out"; failures=$((failures + 1))
}

mkdir -p base/bin overlay/etc
echo 'base' > base/bin/tool
echo 'overlay' > overlay/etc/motd
# A gzip whose length is 3 mod 4, as guest-base.cpio.gz was on the machine where the tier failed:
# grow an incompressible file until the compressed archive has that length.
n=1
while :; do
  head -c "$n" /dev/urandom > base/bin/blob
  (cd base && find . | cpio -o -H newc --quiet) | gzip -1 > base.cpio.gz
  [ $(( $(stat -c %s base.cpio.gz) % 4 )) -eq 3 ] && break
  n=$((n + 1))
done
(cd overlay && find . | cpio -o -H newc --quiet) > overlay.cpio
echo "gzip of $(stat -c %s base.cpio.gz) bytes, overlay cpio of $(stat -c %s overlay.cpio) bytes"

cat base.cpio.gz overlay.cpio > cat-joined
expect refuse "cat of a gzip (3 mod 4) and a cpio" cat-joined "not a multiple of 4"
"$tool" join joined base.cpio.gz overlay.cpio
expect pass "initramfs.py join of the same archives" joined
[ $(( $(stat -c %s joined) % 4 )) -eq 0 ] || { echo "FAIL: join left an unaligned end"; failures=$((failures + 1)); }
# What the check reports is the image's true structure: both archives, every entry.
out=$("$tool" check joined)
[[ "$out" == *"compressed at 0 (4 entries)"* && "$out" == *"cpio at $(( ($(stat -c %s base.cpio.gz) + 3) / 4 * 4 )) (3 entries)"* ]] ||
  { echo "FAIL: check did not see both archives: $out"; failures=$((failures + 1)); }

# Two uncompressed archives: cpio pads to 512 bytes, so a plain cat happens to be aligned; a
# truncated one is not, and neither is a cpio one byte off.
(cd base && find . | cpio -o -H newc --quiet) > base.cpio
"$tool" join two base.cpio overlay.cpio
expect pass "two cpio archives" two
{ head -c 1 /dev/zero | tr '\0' 'x'; cat overlay.cpio; } > shifted
expect refuse "a stray byte before a cpio" shifted "invalid magic"
head -c $(( $(stat -c %s base.cpio.gz) - 100 )) base.cpio.gz > truncated
expect refuse "a truncated gzip" truncated "truncated"
: > empty
expect refuse "an empty image" empty "empty"
printf 'hello' | gzip > notcpio.gz
expect refuse "a gzip that holds no cpio" notcpio.gz "cpio"
# Zero padding between archives is allowed (the kernel skips it), in any amount that keeps the
# next archive aligned.
{ cat base.cpio.gz; head -c $(( 4 - $(stat -c %s base.cpio.gz) % 4 + 8 )) /dev/zero; cat overlay.cpio; } > padded
expect pass "zero padding beyond the minimum" padded

echo "initramfs_test: $failures failure(s)"
[ "$failures" -eq 0 ]
