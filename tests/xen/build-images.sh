#!/usr/bin/env bash
# Builds what the real-Xen tier boots, from Debian's packages only, into a cache:
#   $CACHE/xen                 the hypervisor (32-bit multiboot ELF, for QEMU's -kernel)
#   $CACHE/vmlinuz, vmlinux    the Linux 6.1 kernel (bzImage for dom0/HVM, ELF for PV/PVH guests)
#   $CACHE/dom0-base.cpio      dom0's root filesystem (Debian bookworm minbase + Xen tools), uncompressed
#   $CACHE/guest-base.cpio.gz  the guests' tools (busybox, fio, iperf3, e2fsprogs, xenstore-utils, modules)
# Everything is rebuilt only when this script or its inputs change; tests/xen/run.sh appends the
# pvback binaries and the scenario scripts as a second cpio archive on every run, so a rerun only
# repacks those. Usage: tests/xen/build-images.sh [CACHE]   (default ~/.cache/pvback/xen-e2e)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${PVBACK_XEN_CACHE:-$HOME/.cache/pvback/xen-e2e}}
mkdir -p "$cache/debs"
log() { echo "build-images: $*" >&2; }

mirror=http://deb.debian.org/debian
suite=bookworm
# What dom0 needs: Xen's tools, the hotplug scripts' helpers, the workloads, QEMU's image tools
# (qemu-img, qemu-io) and qemu-storage-daemon (pvback-blk's nbd engine serves qcow2 through it;
# qemu-system-xen, the qdisk backend, pulls in neither), and the runtime libraries of the pvback
# binaries (added below from their ldd closure).
dom0_packages=(xen-utils-4.17 xenstore-utils iproute2 kmod procps bridge-utils busybox util-linux
               e2fsprogs fio iperf3 apache2-utils libc-bin qemu-system-xen
               qemu-utils qemu-system-common)
kernel_abi=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-6\.1/ {print $2; exit}')
[ -n "$kernel_abi" ] || { log "cannot find linux-image-6.1 via apt-cache (run apt-get update)"; exit 1; }
kernel_version=${kernel_abi#linux-image-}

# The runtime libraries pvback's binaries link against, as Debian package names.
pvback_runtime_packages() {
  local bin lib pkg
  for bin in "$@"; do
    ldd "$bin" | awk '$3 ~ /^\// {print $3}'
  done | sort -u | while read -r lib; do
    pkg=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null || true)
    [ -n "$pkg" ] && echo "${pkg%%:*}"
  done | sort -u
}

repo=$(cd "$here/../.." && pwd)
read -r -a binaries <<< "${PVBACK_BINARIES:-$repo/build/blkback/pvback-blk $repo/build/netback/pvback-net}"
runtime=$(pvback_runtime_packages "${binaries[@]}" | tr '\n' ' ')
# The packages taken whole from the archive, at the version the archive has today: a new revision
# of the kernel, the hypervisor or busybox rebuilds the images (dom0's own packages come from
# `apt-get upgrade` inside its root, so the hypervisor must move with xen-utils).
downloads=("$kernel_abi" xen-hypervisor-4.17-amd64 busybox-static)
declare -A version
for p in "${downloads[@]}"; do
  version[$p]=$(apt-cache policy "$p" | awk '/Candidate:/ {print $2; exit}')
  [ -n "${version[$p]}" ] && [ "${version[$p]}" != "(none)" ] ||
    { log "apt-cache has no candidate for $p (run apt-get update)"; exit 1; }
done
inputs_hash=$( { cat "$0"; echo "${dom0_packages[*]} $runtime $kernel_abi"
                 for p in "${downloads[@]}"; do echo "$p=${version[$p]}"; done; } | sha256sum | cut -c1-16)
stamp=$cache/.stamp-$inputs_hash
if [ -f "$stamp" ]; then
  log "cached images are current ($cache)"
  exit 0
fi

# --- downloads: kernel, hypervisor, busybox-static -------------------------------------------
cd "$cache/debs"
declare -A deb
for p in "${downloads[@]}"; do
  # apt-get download names the file with the version's ':' escaped as %3a.
  deb[$p]=$(find . -maxdepth 1 -name "${p}_${version[$p]//:/%3a}_*.deb" -print -quit)
  if [ -z "${deb[$p]}" ]; then
    rm -f "${p}"_*.deb  # an older revision left by an earlier run
    apt-get download "$p=${version[$p]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
    deb[$p]=$(find . -maxdepth 1 -name "${p}_${version[$p]//:/%3a}_*.deb" -print -quit)
    [ -n "${deb[$p]}" ] || { log "apt-get download $p=${version[$p]} failed"; exit 1; }
  fi
done
rm -rf "$cache/kernel" "$cache/hyp" "$cache/busybox"
dpkg-deb -x "${deb[$kernel_abi]}" "$cache/kernel"
dpkg-deb -x "${deb[xen-hypervisor-4.17-amd64]}" "$cache/hyp"
dpkg-deb -x "${deb[busybox-static]}" "$cache/busybox"
zcat "$cache/hyp/boot/xen-4.17-amd64.gz" > "$cache/xen"
cp "$cache/kernel/boot/vmlinuz-$kernel_version" "$cache/vmlinuz"
# PV and PVH guests get the ELF vmlinux: decompressing the bzImage inside dom0 costs ~7 s per
# `xl create` under emulation. Debian's x86 bzImage carries an XZ payload.
offset=$(grep -abo $'\xfd7zXZ\x00' "$cache/vmlinuz" | head -1 | cut -d: -f1)
tail -c +$((offset + 1)) "$cache/vmlinuz" | xz -dc 2>/dev/null > "$cache/vmlinux" || true
file "$cache/vmlinux" | grep -q 'ELF 64-bit' || { log "could not extract vmlinux from the bzImage"; exit 1; }

# --- dom0 root filesystem ----------------------------------------------------------------------
root=$cache/dom0-root
cleanup_mounts() {
  for m in dev/pts dev proc sys; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"; done
  return 0
}
trap cleanup_mounts EXIT
if [ ! -f "$cache/.debootstrap-done" ]; then
  rm -rf "$root"
  log "debootstrap $suite (a few minutes)"
  debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
    { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  touch "$cache/.debootstrap-done"
fi
cat > "$root/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
EOF
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"; mount --bind /sys "$root/sys"; mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
log "installing dom0 packages: ${dom0_packages[*]} $runtime"
# shellcheck disable=SC2086
chroot "$root" /bin/sh -c "export DEBIAN_FRONTEND=noninteractive; apt-get -q update &&
  apt-get -q -y upgrade && apt-get -q -y install --no-install-recommends ${dom0_packages[*]} $runtime &&
  apt-get clean" >"$cache/apt.log" 2>&1 || { tail -30 "$cache/apt.log" >&2; exit 1; }
cleanup_mounts

# Kernel modules dom0 and the guests load (the Debian kernel builds them all as modules).
modules_src=$cache/kernel/lib/modules/$kernel_version
copy_modules() {  # DEST_ROOT SUBDIR...
  local dest=$1; shift
  local sub
  for sub in "$@"; do
    mkdir -p "$dest/lib/modules/$kernel_version/$(dirname "$sub")"
    cp -a "$modules_src/$sub" "$dest/lib/modules/$kernel_version/$sub"
  done
  cp "$modules_src"/modules.{order,builtin,builtin.modinfo} "$dest/lib/modules/$kernel_version/" 2>/dev/null || true
  depmod -b "$dest" "$kernel_version"
}
rm -rf "$root/lib/modules"
copy_modules "$root" kernel/drivers/xen kernel/drivers/block/loop.ko kernel/drivers/block/xen-blkback \
  kernel/drivers/net/xen-netback kernel/drivers/net/tun.ko kernel/net/bridge kernel/net/802 kernel/net/llc
# The kernel backends stay unloaded unless a scenario loads them by name (side-by-side runs):
# udev would otherwise autoload them for every vbd/vif node `xl create` writes.
printf 'blacklist xen-blkback\nblacklist xen-netback\n' > "$root/etc/modprobe.d/pvback-e2e.conf"
# xenconsoled logs each guest's console to /var/log/xen/console/guest-<name>.log.
echo 'XENCONSOLED_TRACE=guest' >> "$root/etc/default/xencommons"
rm -f "$root/usr/sbin/policy-rc.d"
# Nothing reads documentation, translations or apt's lists in a dom0 that lives for one run.
rm -rf "$root"/usr/share/{doc,man,info,locale} "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*

log "packing dom0-base.cpio"
(cd "$root" && find . \( -path './proc/*' -o -path './sys/*' \) -prune -o -print | cpio -o -H newc --quiet) \
  > "$cache/dom0-base.cpio.tmp"
mv "$cache/dom0-base.cpio.tmp" "$cache/dom0-base.cpio"

# --- guest base: busybox + the tools the guest scenarios run, with their libraries -------------
guest=$cache/guest-root
rm -rf "$guest"
mkdir -p "$guest"/{bin,sbin,etc,proc,sys,dev,tmp,run,mnt,lib64,usr/lib/x86_64-linux-gnu,var/www}
cp "$cache/busybox/bin/busybox" "$guest/bin/busybox"
guest_tools=(/usr/bin/fio /usr/bin/iperf3 /sbin/mkfs.ext4 /sbin/e2fsck /sbin/fstrim /sbin/blkdiscard
             /usr/bin/xenstore-read /usr/bin/xenstore-write /usr/bin/xenstore-exists /usr/bin/xenstore-list
             /usr/bin/sha256sum /usr/bin/dd)
for tool in "${guest_tools[@]}"; do
  real=$(chroot "$root" readlink -f "$tool")
  # xenstore-utils' commands are one program dispatching on its name: a copy per name works.
  cp -L "$root$real" "$guest/bin/$(basename "$tool")"
  chroot "$root" ldd "$real" | awk '$3 ~ /^\// {print $3} $1 ~ /^\/lib64/ {print $1}' | while read -r lib; do
    mkdir -p "$guest$(dirname "$lib")"
    cp -L "$root$lib" "$guest$lib"
  done
done
copy_modules "$guest" kernel/drivers/block/xen-blkfront.ko kernel/drivers/net/xen-netfront.ko kernel/fs/ext4 \
  kernel/fs/jbd2 kernel/fs/mbcache.ko kernel/lib kernel/crypto kernel/drivers/xen kernel/drivers/cdrom
# fio's storage engines pull in ~70 MB of libraries: the guests get this part compressed (the
# guest kernel unpacks it faster than the domain builder copies it uncompressed).
(cd "$guest" && find . -print | cpio -o -H newc --quiet) | gzip -1 > "$cache/guest-base.cpio.gz"

rm -f "$cache"/.stamp-*
touch "$stamp"
log "done: $(du -sh "$cache/dom0-base.cpio" | cut -f1) dom0, $(du -sh "$cache/guest-base.cpio.gz" | cut -f1) guest base"
