#!/usr/bin/env bash
# 4 KiB random reads at iodepth 32 on one file: fio's io_uring engine reading it directly
# (O_DIRECT), then a simulated guest reading it through pvback-blk (userspace blkfront ->
# blkif ring -> pvback-blk -> io_uring O_DIRECT), in the same run on the same file.
#
#   bench/blk_randread.sh [SECONDS]     (default 10 s per measurement; BENCH_DIR=dir for the file)
#
# Also measures the two data paths for a frontend without persistent grants (map vs copy), and
# the default configuration without its crash-recovery record (--no-recovery), between two runs
# with it.
# Prints one line per measurement and the ratio; appends them to bench/results/blk_randread.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
scripts/install-deps.sh
scripts/build.sh release >/dev/null
BUILD=$PWD/build
. scripts/lib/sim-host.sh

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/pvback-bench.XXXXXX")
trap 'sim_host_cleanup; rm -rf "$work"' EXIT
disk=$work/disk.img
size_mib=${BENCH_SIZE_MIB:-1024}
# Real data on disk: sparse files would be read from holes without I/O.
fio --name=layout --filename="$disk" --size="${size_mib}M" --rw=write --bs=1M --direct=1 --ioengine=io_uring \
  --iodepth=8 --output=/dev/null

direct_iops() {
  fio --name=direct --filename="$disk" --rw=randread --bs=4k --ioengine=io_uring --direct=1 --iodepth=32 \
    --runtime="$seconds" --time_based --output-format=json | python3 -c \
    'import json,sys; print(int(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}

sim_host_start "$work/sim"
sim_ctl create-domain 1 --name bench-guest --memory-mib 512 >/dev/null
devid=51712
pvback_iops() {  # pvback_iops [frontend options...] -- [backend options...]
  local front=() back=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do front+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  back=("$@")
  sim_vbd_start 1 "$devid" "$disk" --max-queues 1 "${back[@]}"
  local out
  out=$(PVBACK_DOMID=1 "$BUILD/blkfront/pvback-blkfront" --devid "$devid" --queues 1 "${front[@]}" \
    randread --bs 4096 --iodepth 32 --seconds "$seconds")
  sim_ctl remove-vbd 1 "$devid" >/dev/null
  sed -n 's/.*iops=\([0-9]*\).*/\1/p' <<<"$out"
}

direct=$(direct_iops)
persistent=$(pvback_iops)
# The crash-recovery record's cost: the same configuration without it, in the same run.
norecord=$(pvback_iops -- --no-recovery)
persistent2=$(pvback_iops)
copy=$(pvback_iops --no-persistent -- --data-path copy)
map=$(pvback_iops --no-persistent -- --data-path map)
direct_after=$(direct_iops)

report=$(cat <<REPORT
$(date -u +%Y-%m-%dT%H:%M:%SZ) 4k randread iodepth 32, ${seconds}s each, ${size_mib} MiB file, $(nproc) CPUs
  fio io_uring O_DIRECT (before)        : $direct IOPS
  pvback-blk, persistent grants         : $persistent IOPS  ($(python3 -c "print(f'{$persistent/$direct:.2f}')")x direct)
  pvback-blk, persistent, --no-recovery : $norecord IOPS  (with the record, mean of the runs before and after: $(python3 -c "print(f'{($persistent+$persistent2)/2/$norecord:.3f}')")x)
  pvback-blk, persistent grants (again) : $persistent2 IOPS
  pvback-blk, no persistent, grant copy : $copy IOPS
  pvback-blk, no persistent, grant map  : $map IOPS
  fio io_uring O_DIRECT (after)         : $direct_after IOPS
REPORT
)
echo "$report"
mkdir -p bench/results
echo "$report" >>bench/results/blk_randread.txt
