#!/usr/bin/env bash
# Installs what pvback needs to build and test on Debian 12 (bookworm). Idempotent: packages
# already present are skipped without touching the network.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libxen-dev xenstore-utils     # real libxengnttab/libxenevtchn/libxenstore + CLIs for tests
  liburing-dev                  # blkback data path
  libseccomp-dev                # sandbox: the data plane's seccomp filter
  libsystemd-dev                # plane: a data plane's transient systemd scope (sd-bus)
  libnbd-dev                    # storage: the NBD engine
  librbd-dev librados-dev       # storage: the RBD engine (librbd's asynchronous API)
  ceph-mon ceph-osd ceph-common # tests: a real one-monitor, one-OSD Ceph cluster for the RBD engine
  qemu-system-common qemu-utils # storage: qemu-storage-daemon serves images in QEMU's formats; qemu-img in tests
  nbdkit                        # tests: a remote NBD server (its memory plugin) for the integrity matrix
  gnuplot-nox                   # bench: the sweep's plots (bench/blk_sweep.sh)
  fio                           # bench and the fio engine (fioengine/, built against this fio's source)
  libdpdk-dev                   # netback's DPDK exit (ethdev, mempools, net_null/net_ring/net_tap vdevs)
  iproute2 iputils-ping iperf3 nginx-light apache2-utils  # netback end-to-end: namespaces, iperf3, ab against nginx
  libgtest-dev googletest       # tests
  dpkg-dev                      # `apt-get source` (xen's test-xenstore, fio's headers: dpkg-source); dpkg-buildflags; dpkg-buildpackage
  debhelper lintian             # the Debian package (scripts/build-deb.sh: dh with debhelper compat 13, then lintian)
  systemd                       # tests: `systemd-analyze verify` of systemd/*.service (tests/systemd)
  python3 cpio gzip             # the real-Xen harness's initramfs join/check and its test
  clang-16 libclang-rt-16-dev llvm-16  # libFuzzer targets (tests/fuzz, label fuzz) and their coverage
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
