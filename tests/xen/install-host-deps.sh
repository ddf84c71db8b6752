#!/usr/bin/env bash
# What the real-Xen tier needs on the host (a Debian 12 machine): QEMU, debootstrap and the
# tools that unpack and repack the images. The project's own build deps come from
# scripts/install-deps.sh.
set -euo pipefail
need=(qemu-system-x86 debootstrap cpio xz-utils gzip kmod file)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-host-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt_get() { if [ "$(id -u)" = 0 ]; then apt-get "$@"; else sudo apt-get "$@"; fi; }
apt_get update -q >/dev/null
apt_get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
