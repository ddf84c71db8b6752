#!/usr/bin/env bash
# 4 KiB random reads at iodepth 32 on one file, the same fio job (bench/blk_randread.fio) on both
# sides in the same run: fio's io_uring engine reading the file directly (O_DIRECT), and fio's
# pvback engine as a simulated guest reading it through pvback-blk (fio -> blkif ring -> pvback-blk
# -> io_uring O_DIRECT on the file).
#
#   bench/blk_randread.sh [SECONDS]     (default 10 s per measurement; BENCH_DIR=dir for the file)
#
# Also measures: fio's buffers copied through the frontend's pool instead of granted (zero copy
# off), the two data paths for a frontend without persistent grants (map vs copy), the default
# configuration without its crash-recovery record (--no-recovery) between two runs with it, and
# pvback-blkfront's own randread loop (what this benchmark measured before the engine), and the
# queue's polling window and submission batch turned off (--poll-max-us 0 --submit-batch 0, how
# every queue ran before they existed).
# On 2 CPUs or more, the guest (fio, on both sides) runs on CPU 0 and pvback-blk on CPU 1, as a
# Xen guest's vCPU is not dom0's; BENCH_PIN=0 lets the scheduler place them (on 2 CPUs it then
# often runs both on one, each waking the other).
# Prints one line per measurement and the ratio; appends them to bench/results/blk_randread.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
scripts/install-deps.sh
[ -n "${BENCH_NO_BUILD:-}" ] || scripts/build.sh release >/dev/null  # BENCH_NO_BUILD=1: build/ as it is
BUILD=$PWD/build
. scripts/lib/sim-host.sh

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/pvback-bench.XXXXXX")
trap 'sim_host_cleanup; rm -rf "$work"' EXIT
disk=$work/disk.img
size_mib=${BENCH_SIZE_MIB:-1024}
# Real data on disk: sparse files would be read from holes without I/O.
fio --name=layout --filename="$disk" --size="${size_mib}M" --rw=write --bs=1M --direct=1 --ioengine=io_uring \
  --iodepth=8 --output=/dev/null

guest_pin=()
placement="unpinned"
if [ "${BENCH_PIN:-1}" != 0 ] && [ "$(nproc)" -ge 2 ]; then
  guest_pin=(taskset -c 0)
  export SIM_BACKEND_CPUS=1
  placement="guest on CPU 0, pvback-blk on CPU 1"
fi
engine=$BUILD/fioengine/pvback-fio.so
[ -f "$engine" ] || { echo "blk_randread: no fio engine at $engine (scripts/build.sh builds it)" >&2; exit 1; }
# job_iops ENGINE TARGET [ENGINE-OPTION=VALUE...]: IOPS of bench/blk_randread.fio. fio takes an
# external engine's options only inside a job, so they are appended to a copy of the job file.
job_iops() {
  local eng=$1 target=$2 job=$work/job.fio
  shift 2
  cp bench/blk_randread.fio "$job"
  printf '%s\n' "$@" >>"$job"
  FIO_ENGINE=$eng FIO_TARGET=$target FIO_SECONDS=$seconds "${guest_pin[@]}" fio "$job" --output-format=json |
    python3 -c 'import json,sys; t=sys.stdin.read(); print(int(json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"]))'
}
direct_iops() { job_iops io_uring "$disk"; }

sim_host_start "$work/sim"
sim_ctl create-domain 1 --name bench-guest --memory-mib 512 >/dev/null
devid=51712
pvback_iops() {  # pvback_iops [ENGINE-OPTION=VALUE...] -- [backend options...]: the job on the vbd
  local front=() back=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do front+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  back=("$@")
  sim_vbd_start 1 "$devid" "$disk" --max-queues 1 "${back[@]}"
  PVBACK_DOMID=1 job_iops "external:$engine" "$devid" "${front[@]}"
  sim_ctl remove-vbd 1 "$devid" >/dev/null
}
blkfront_iops() {  # pvback-blkfront's own randread loop, persistent grants
  sim_vbd_start 1 "$devid" "$disk" --max-queues 1
  local out
  out=$(PVBACK_DOMID=1 "${guest_pin[@]}" "$BUILD/blkfront/pvback-blkfront" --devid "$devid" --queues 1 \
    randread --bs 4096 --iodepth 32 --seconds "$seconds")
  sim_ctl remove-vbd 1 "$devid" >/dev/null
  sed -n 's/.*iops=\([0-9]*\).*/\1/p' <<<"$out"
}

direct=$(direct_iops)
persistent=$(pvback_iops)
# The crash-recovery record's cost: the same configuration without it, in the same run.
norecord=$(pvback_iops -- --no-recovery)
persistent2=$(pvback_iops)
nopoll=$(pvback_iops -- --poll-max-us 0 --submit-batch 0)
pooled=$(pvback_iops pvback_zero_copy=0)
copy=$(pvback_iops pvback_persistent=0 -- --data-path copy)
map=$(pvback_iops pvback_persistent=0 -- --data-path map)
blkfront=$(blkfront_iops)
direct_after=$(direct_iops)

report=$(cat <<REPORT
$(date -u +%Y-%m-%dT%H:%M:%SZ) 4k randread iodepth 32, ${seconds}s each, ${size_mib} MiB file, $(nproc) CPUs ($placement), one fio job (bench/blk_randread.fio) on both sides
  fio io_uring O_DIRECT on the file (before)   : $direct IOPS
  fio pvback engine, persistent grants         : $persistent IOPS  ($(python3 -c "print(f'{$persistent/(($direct+$direct_after)/2):.2f}')")x direct, the mean of before and after)
  fio pvback engine, persistent, --no-recovery : $norecord IOPS  (with the record, mean of the runs before and after: $(python3 -c "print(f'{($persistent+$persistent2)/2/$norecord:.3f}')")x)
  fio pvback engine, persistent grants (again) : $persistent2 IOPS
  fio pvback engine, persistent, no polling, whole batches : $nopoll IOPS  (polling and submit_batch 2: $(python3 -c "print(f'{($persistent+$persistent2)/2/$nopoll:.2f}')")x)
  fio pvback engine, buffers copied (pool)     : $pooled IOPS
  fio pvback engine, no persistent, grant copy : $copy IOPS
  fio pvback engine, no persistent, grant map  : $map IOPS
  pvback-blkfront randread, persistent grants  : $blkfront IOPS
  fio io_uring O_DIRECT on the file (after)    : $direct_after IOPS
REPORT
)
echo "$report"
mkdir -p bench/results
echo "$report" >>bench/results/blk_randread.txt
