#!/usr/bin/env bash
# Scenario 8's dom0 image: the cached dom0 root of build-images.sh (which must exist), copied, with
# systemd as its init (systemd-sysv) and everything the pvback package depends on, packed as
#   $CACHE/dom0-systemd-base.cpio
# The package itself is not in the image: dom0's /init (dom0/init-systemd) installs the .deb under
# test with dpkg at boot, then execs systemd. Its dependencies are installed here the way apt
# installs them for `apt install ./pvback_*.deb`, then the package is purged again, so a new .deb
# with the same Depends reuses the image.
#   tests/xen/build-systemd-image.sh CACHE DEB
set -euo pipefail
cache=$1 deb=$2
log() { echo "build-systemd-image: $*" >&2; }
base=$cache/dom0-root
[ -d "$base" ] && ls "$cache"/.stamp-* >/dev/null 2>&1 || { log "no base image in $cache (run build-images.sh)"; exit 1; }
inputs_hash=$( { cat "$0"; ls "$cache"/.stamp-*; dpkg-deb -f "$deb" Depends; } | sha256sum | cut -c1-16)
stamp=$cache/.systemd-stamp-$inputs_hash
if [ -f "$stamp" ] && [ -f "$cache/dom0-systemd-base.cpio" ]; then
  log "cached systemd image is current"
  exit 0
fi
root=$cache/dom0-systemd-root
cleanup_mounts() {
  for m in dev/pts dev proc sys; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m"; done
  return 0
}
# A run killed while the host's /dev, /sys and /proc were bound into the root left them there:
# unmounted before the old root goes, and rm never crosses into another file system anyway.
cleanup_mounts
rm -rf --one-file-system "$root"
cp -a "$base" "$root"
trap cleanup_mounts EXIT
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"; mount --bind /sys "$root/sys"; mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp "$deb" "$root/tmp/pvback.deb"
log "installing systemd-sysv and pvback's dependencies"
chroot "$root" /bin/sh -c "export DEBIAN_FRONTEND=noninteractive; apt-get -q update &&
  apt-get -q -y install --no-install-recommends systemd-sysv /tmp/pvback.deb &&
  dpkg --purge pvback && apt-get clean" >"$cache/apt-systemd.log" 2>&1 ||
  { tail -30 "$cache/apt-systemd.log" >&2; exit 1; }
rm -f "$root/tmp/pvback.deb"
cleanup_mounts
# A machine id: without one systemd treats the boot as the first and runs systemd-firstboot, which
# asks on the console. No login prompt on the console either (it is the test's output).
chroot "$root" systemd-machine-id-setup >/dev/null
chroot "$root" systemctl mask systemd-firstboot.service serial-getty@hvc0.service getty@tty1.service \
  console-getty.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
  dpkg-db-backup.timer >/dev/null 2>&1
# The base image blacklists the kernel's backends for scenarios 1-7; here the package's
# exclusive-mode file (linked at boot by init-systemd) is what keeps them out.
rm -f "$root/etc/modprobe.d/pvback-e2e.conf"
# xenconsoled logs each guest's console to /var/log/xen/console/guest-<name>.log.
echo 'XENCONSOLED_ARGS="--log=guest --log-dir=/var/log/xen/console"' >> "$root/etc/default/xen"
rm -f "$root/usr/sbin/policy-rc.d"
# Nothing in /run from the chroot: dpkg at boot would take it for a running systemd.
rm -rf "$root"/run/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/{doc,man,info,locale}
log "packing dom0-systemd-base.cpio"
(cd "$root" && find . \( -path './proc/*' -o -path './sys/*' \) -prune -o -print | cpio -o -H newc --quiet) \
  > "$cache/dom0-systemd-base.cpio.tmp"
mv "$cache/dom0-systemd-base.cpio.tmp" "$cache/dom0-systemd-base.cpio"
rm -f "$cache"/.systemd-stamp-*
touch "$stamp"
log "done: $(du -sh "$cache/dom0-systemd-base.cpio" | cut -f1)"
