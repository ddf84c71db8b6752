#!/usr/bin/env bash
# The real-Xen tier: Xen 4.17 and a Debian dom0 under QEMU (software emulation), the stock Linux
# frontends in guests served by pvback. One command:
#
#   tests/xen/run.sh [SCENARIOS] [--timeout SECONDS]
#
# SCENARIOS is "pv" (1+2+3+4, the CI subset), "all" (1+2+3+4+5+6+7, the default) or a "+"-joined list:
#   1 PV disk (ext4, fsck, checksums, fio verify, flush and discard reach pvback-blk)
#   2 negotiated features as the guest kernel reports them (persistent grants, indirect
#     segments, queues, ring pages, read-only disk, cdrom)
#   3 xl block-detach/attach, pvback-blk restarted under the guest, guest shutdown
#   4 PV network on a bridge (ping, iperf3 both ways, ab against the guest's httpd)
#   5 PVH and HVM (PV drivers) guests: disk and network again
#   6 the same disk and network workload on the kernel's xen-blkback/xen-netback and on pvback
#   7 a qcow2 image served by pvback (xl's script=block-pvback) and one served by QEMU's qdisk:
#     ext4, checksums, fsck, fio verify, qemu-img check, and the read benchmark side by side
#   8 (opt-in, alone: its own boot, in neither "pv" nor "all") a dom0 with systemd as PID 1:
#     pvback installed from its .deb (dpkg -i at boot; scripts/build-deb.sh makes it, or
#     PVBACK_XEN_DEB names one), exclusive mode, pvback-supervisor.service enabled, Debian's xen and
#     xendomains services; the guest in /etc/xen/auto that xendomains starts is served by pvback;
#     then `systemctl restart` and a kill -9 of the supervisor under that guest.
#       tests/xen/run.sh 8
# Installs what it needs (apt-get), builds pvback (release) and the images (cached in
# ~/.cache/pvback/xen-e2e, or $PVBACK_XEN_CACHE), boots, and prints every verdict with the
# guest's own evidence. Exit 0 only if dom0 reported every selected scenario passing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
scenarios=all
timeout=${PVBACK_XEN_TIMEOUT:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) scenarios=$1; shift ;;
  esac
done
case "$scenarios" in
  pv) scenarios=1+2+3+4 ;;
  all) scenarios=1+2+3+4+5+6+7 ;;
esac
systemd=0
if [ "$scenarios" = 8 ]; then systemd=1
else [[ "$scenarios" =~ ^[1-7](\+[1-7])*$ ]] || { echo "run.sh: bad scenario list '$scenarios' (8 runs alone)" >&2; exit 2; }
fi
# Generous defaults: a PV run takes ~6 min here, the HVM guest alone ~3 min more.
# Scenario 7 (two guests, one with its own QEMU) adds 10 min to that.
if [ -z "$timeout" ]; then
  case "$scenarios" in *5*|*6*) timeout=2400 ;; *) timeout=1200 ;; esac
  case "$scenarios" in *7*) timeout=$((timeout + 600)) ;; esac
fi
cache=${PVBACK_XEN_CACHE:-$HOME/.cache/pvback/xen-e2e}
start=$(date +%s)

"$repo/tests/xen/install-host-deps.sh"
run_dir=$(mktemp -d /tmp/pvback-xen.XXXXXX)
if [ $systemd = 1 ]; then
  # Scenario 8: pvback comes from its package (of the committed tree), not from build/.
  deb=${PVBACK_XEN_DEB:-}
  if [ -z "$deb" ]; then
    deb=$("$repo/scripts/build-deb.sh" | sed -n 's|^build-deb: \(.*/pvback_[^/]*_amd64\.deb\)$|\1|p' | tail -1)
    [ -n "$deb" ] || { echo "run.sh: scripts/build-deb.sh made no .deb" >&2; exit 1; }
  fi
  echo "run.sh: scenario 8 installs $deb"
  # The base images' runtime packages come from the binaries' libraries: the package's binaries.
  dpkg-deb -x "$deb" "$run_dir/deb"
  bins=()
  PVBACK_BINARIES="$run_dir/deb/usr/sbin/pvback-blk $run_dir/deb/usr/sbin/pvback-net" "$repo/tests/xen/build-images.sh" "$cache"
  "$repo/tests/xen/build-systemd-image.sh" "$cache" "$deb"
  rm -rf "$run_dir/deb"
else
  build=${PVBACK_BUILD:-$repo/build}
  [ -n "${PVBACK_BUILD:-}" ] || "$repo/scripts/build.sh" release >/dev/null
  bins=("$build/blkback/pvback-blk" "$build/netback/pvback-net" "$build/supervisor/pvback-supervisor")
  PVBACK_BINARIES="${bins[0]} ${bins[1]}" "$repo/tests/xen/build-images.sh" "$cache"
fi

# The per-run part: pvback's binaries, the scenario scripts and the guest image, appended to the
# cached dom0 archive as a second cpio (the kernel unpacks both into one initramfs).
stage=$run_dir/stage
mkdir -p "$stage/opt/pvback/bin" "$stage/opt/pvback/e2e" "$run_dir/guest"
for b in "${bins[@]}"; do
  [ -x "$b" ] && cp "$b" "$stage/opt/pvback/bin/"
done
base_cpio=$cache/dom0-base.cpio
if [ $systemd = 1 ]; then
  # Scenario 8: the .deb (init-systemd installs it), the test's units and the operator's drop-in.
  base_cpio=$cache/dom0-systemd-base.cpio
  install -m 755 "$repo/tests/xen/dom0/init-systemd" "$stage/init"
  install -m 755 "$repo/tests/xen/dom0/systemd.sh" "$stage/opt/pvback/e2e/"
  cp "$deb" "$stage/opt/pvback/e2e/"
  install -D -m 644 -t "$stage/etc/systemd/system" "$repo"/tests/xen/dom0/systemd/e2e-*.service
  install -D -m 644 "$repo/tests/xen/dom0/systemd/pvback-e2e.conf" \
    "$stage/etc/systemd/system/pvback-supervisor.service.d/pvback-e2e.conf"
else
  install -m 755 "$repo/tests/xen/dom0/init" "$stage/init"
  install -m 755 "$repo/tests/xen/dom0/scenarios.sh" "$stage/opt/pvback/e2e/"
  # libxl runs it for a disk line with script=block-pvback (scenario 7).
  install -D -m 755 "$repo/scripts/hotplug/block-pvback" "$stage/etc/xen/scripts/block-pvback"
fi
install -m 644 "$repo/tests/xen/dom0/lib.sh" "$stage/opt/pvback/e2e/"
cp "$cache/vmlinux" "$cache/vmlinuz" "$stage/opt/pvback/e2e/"
install -m 755 "$repo/tests/xen/guest/init" "$repo/tests/xen/guest/agent" "$run_dir/guest/"
install -m 644 "$repo/tests/xen/guest/steps.sh" "$run_dir/guest/"
# Archives are joined only through initramfs.py, which pads each one to the 4-byte boundary at
# which the kernel looks for the next (a gzip is as long as its content makes it), and every image
# is checked as the kernel will unpack it before anything boots.
initramfs=$repo/tests/xen/initramfs.py
(cd "$run_dir/guest" && find . | cpio -o -H newc --quiet) > "$run_dir/guest-overlay.cpio"
"$initramfs" join "$stage/opt/pvback/e2e/guest.cpio" "$cache/guest-base.cpio.gz" "$run_dir/guest-overlay.cpio"
"$initramfs" check "$stage/opt/pvback/e2e/guest.cpio" ||
  { echo "run.sh: FAILED: the guests' ramdisk would not unpack (see above)" >&2; exit 1; }
(cd "$stage" && find . | cpio -o -H newc --quiet) > "$run_dir/overlay.cpio"
"$initramfs" join "$run_dir/dom0.cpio" "$base_cpio" "$run_dir/overlay.cpio"
"$initramfs" check "$run_dir/dom0.cpio" ||
  { echo "run.sh: FAILED: dom0's initramfs would not unpack (see above)" >&2; exit 1; }
rm -rf "$stage" "$run_dir/guest-overlay.cpio"

serial=$run_dir/serial.log
echo "run.sh: scenarios $scenarios, timeout ${timeout}s, serial log $serial"
# Xen's command line: smap=0 is required with -cpu max under TCG (dom0 faults at its first
# instruction otherwise). No comma may appear in a module's command line (-initrd splits on it).
xen_cmdline="console=com1 com1=115200,8n1 dom0_mem=2048M,max:2048M dom0_max_vcpus=2 loglvl=warning guest_loglvl=warning smap=0 smep=0 ${PVBACK_XEN_EXTRA-spec-ctrl=eager-fpu}"
# PVBACK_XEN_BLK_ARGS / PVBACK_XEN_NET_ARGS: extra options for every pvback-blk / pvback-net
# (space-separated; they travel on dom0's command line joined by ':').
dom0_cmdline="console=hvc0 earlyprintk=xen loglevel=4 rdinit=/init pvback.scenarios=$scenarios"
[ -z "${PVBACK_XEN_BLK_ARGS:-}" ] || dom0_cmdline="$dom0_cmdline pvback.blk_args=$(echo $PVBACK_XEN_BLK_ARGS | tr ' ' :)"
[ -z "${PVBACK_XEN_NET_ARGS:-}" ] || dom0_cmdline="$dom0_cmdline pvback.net_args=$(echo $PVBACK_XEN_NET_ARGS | tr ' ' :)"
# PVBACK_XEN_S5_GUESTS: which guests scenario 5 boots ("pvh+hvm", the default, or one of them).
dom0_cmdline="$dom0_cmdline pvback.s5_guests=${PVBACK_XEN_S5_GUESTS:-pvh+hvm}"
# PVBACK_XEN_S8_KILLMODE_PROCESS=1: scenario 8 ends with an experiment (KillMode=process, kill -9).
[ "${PVBACK_XEN_S8_KILLMODE_PROCESS:-0}" != 1 ] || dom0_cmdline="$dom0_cmdline pvback.s8_killmode_process=1"
# The watchdog: dom0 prints at least every 30 s while a scenario runs (guest_do's heartbeat). If
# the console is quiet for $quiet s, dom0 is wedged: it asks Xen for its state over the serial line
# (Ctrl-A x3 switches the console's input to Xen; debug keys q: domains and vCPUs, r: scheduler
# run queues, 0: dom0's registers and stacks, d: every CPU's stack), and stops the run after a
# second quiet period instead of waiting for the total timeout.
quiet=${PVBACK_XEN_QUIET:-150}
mkfifo "$run_dir/console-in"
exec 3<>"$run_dir/console-in"
watchdog() {
  local last=-1 size stamp dumps=0
  stamp=$(date +%s)
  while sleep 5; do
    size=$(stat -c %s "$serial" 2>/dev/null || echo 0)
    if [ "$size" != "$last" ]; then last=$size; stamp=$(date +%s); continue; fi
    [ $(( $(date +%s) - stamp )) -ge "$quiet" ] || continue
    if [ $dumps -ge 1 ]; then
      echo "run.sh: console still quiet after the dump: stopping QEMU" >&2
      pkill -f -- "$run_dir/dom0.cpio"
      return
    fi
    echo "run.sh: console quiet for ${quiet}s: asking Xen for its state (debug keys q r 0 d)" >&2
    echo "$size" > "$run_dir/xen-dump-offset"
    printf '\001\001\001' >&3; sleep 2
    for key in q r 0 d; do printf %s "$key" >&3; sleep 5; done
    printf '\001\001\001' >&3
    dumps=$((dumps + 1)); last=$(stat -c %s "$serial"); stamp=$(date +%s)
  done
}
: > "$serial"
watchdog & watchdog_pid=$!
cpu=${PVBACK_XEN_CPU:-max,avx=off,avx2=off}
qemu=${PVBACK_XEN_QEMU:-qemu-system-x86_64}
qemu_extra=()
[ -z "${PVBACK_XEN_QEMU_DATA:-}" ] || for d in $PVBACK_XEN_QEMU_DATA; do qemu_extra+=(-L "$d"); done
# A QEMU from elsewhere than the host's package must not probe the host's audio modules (built
# for another QEMU, they abort it). Only there: the host's 7.2 refuses `-audio none`.
[ -z "${PVBACK_XEN_QEMU:-}" ] || qemu_extra+=(-audio none)
accel=${PVBACK_XEN_ACCEL:-tcg,thread=single}
set +e
# AVX/AVX2 are off: QEMU 7.2's TCG emulation of them is new, and with them on, dom0's bash
# segfaulted inside glibc's vectorised string functions.
timeout --foreground -k 10 "$timeout" "$qemu" "${qemu_extra[@]}" -accel "$accel" -machine q35 -cpu "$cpu" -smp 2 -m 4096 \
  -display none -no-reboot -monitor none -serial stdio \
  -kernel "$cache/xen" -append "$xen_cmdline" -initrd "$cache/vmlinuz $dom0_cmdline,$run_dir/dom0.cpio" \
  <&3 2>&1 | sed -u 's/\r$//' | tee "$serial" | grep --line-buffered -E '^(e2e\||pvback-e2e)' | sed -u 's/^e2e| //'
qemu_rc=${PIPESTATUS[0]}
set -e
kill "$watchdog_pid" 2>/dev/null; wait "$watchdog_pid" 2>/dev/null || true
exec 3>&-
if [ -f "$run_dir/xen-dump-offset" ]; then
  echo "run.sh: what Xen said when dom0 went quiet (first 200 lines; all in $serial):"
  tail -c +"$(( $(cat "$run_dir/xen-dump-offset") + 1 ))" "$serial" | head -200
fi
elapsed=$(( $(date +%s) - start ))
result=$(grep -a '^e2e| pvback-e2e: RESULT' "$serial" | tail -1 | sed 's/^e2e| //')
echo "run.sh: qemu exit $qemu_rc after ${elapsed}s total; ${result:-no RESULT line from dom0}"
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
  echo "run.sh: FAILED: total timeout of ${timeout}s reached; the last serial lines:"
  tail -30 "$serial"
  exit 1
fi
if [[ "$result" =~ passed=([0-9]+)\ failed=0 ]] && [ "${BASH_REMATCH[1]}" -gt 0 ]; then
  rm -f "$run_dir/dom0.cpio" "$run_dir/overlay.cpio"
  echo "run.sh: PASSED"
  exit 0
fi
echo "run.sh: FAILED (serial log: $serial); its last lines:"
tail -30 "$serial"
exit 1
