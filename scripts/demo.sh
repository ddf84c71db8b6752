#!/usr/bin/env bash
# The main demo on the built-in simulated hypervisor: a simulated guest (domain 1) with a disk
# served by pvback-blk. Starts pvback-sim, creates the guest, attaches a vbd backed by a file the
# way `xl block-attach` would, starts pvback-blk for it, then, as the guest, the userspace
# blkfront negotiates, writes a seeded pattern, reads it back and verifies it, and measures 4 KiB
# random reads. Shows the negotiated features, the XenStore nodes, the backend's live statistics,
# and a hot unplug.
#
#   scripts/demo.sh            (DEMO_DISK_MIB=256 DEMO_SECONDS=5 to change the size and duration)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release >/dev/null
BUILD=$PWD/build
. scripts/lib/sim-host.sh

work=$(mktemp -d /var/tmp/pvback-demo.XXXXXX)
trap 'sim_host_cleanup; rm -rf "$work"' EXIT
disk=$work/disk.img
truncate -s "${DEMO_DISK_MIB:-256}M" "$disk"
seconds=${DEMO_SECONDS:-5}

sim_host_start "$work/sim"
echo "== pvback-sim running in $work/sim; creating simulated guest domain 1"
sim_ctl create-domain 1 --name demo-guest --memory-mib 512
echo "== attaching $disk as xvda (vbd 51712) and starting pvback-blk"
sim_vbd_start 1 51712 "$disk" --stats-file "$work/stats.json" --stats-interval-ms 200
be=/local/domain/0/backend/vbd/1/51712
echo "   backend at InitWait; what it advertises:"
for key in sectors sector-size physical-sector-size info feature-flush-cache feature-barrier feature-discard \
  feature-persistent feature-max-indirect-segments max-ring-page-order multi-queue-max-queues; do
  printf '     %-30s %s\n' "$key" "$(xenstore-read "$be/$key")"
done

front() { PVBACK_DOMID=1 "$BUILD/blkfront/pvback-blkfront" --devid 51712 "$@"; }
echo
echo "== guest: negotiate and show what was agreed"
front info
echo
echo "== guest: write a seeded pattern over the disk (partial pages, multi-page and indirect requests), read back, verify"
front write-verify --seed 2026 --iodepth 32
echo
echo "== guest: verify again in a fresh attach (another queue count and the x86_32 ring ABI)"
front --queues 1 --protocol x86_32-abi --no-persistent verify --seed 2026
echo
echo "== guest: 4 KiB random reads, iodepth 32, ${seconds}s"
front randread --bs 4096 --iodepth 32 --seconds "$seconds"
sleep 0.3
echo
echo "== pvback-blk's live statistics ($work/stats.json)"
cat "$work/stats.json"
echo
echo "== hot unplug (online=0, backend Closing, frontend closes, nodes removed, pvback-blk exits)"
sim_ctl remove-vbd 1 51712
xenstore-exists "$be" 2>/dev/null && echo "   backend node still present" || echo "   backend node removed"
echo "== pvback-blk log"
sed 's/^/   /' "$work/sim/pvback-blk-1-51712.log"
