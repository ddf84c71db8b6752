#!/usr/bin/env bash
# What each storage engine costs next to the file engine, on the same data in one run: a simulated
# guest reads and writes through pvback-blk whose disk is
#   raw     the file itself (file engine, io_uring)
#   nbd-raw the same file exported by pvback-blk's own qemu-storage-daemon (nbd engine: the cost of
#           the NBD hop alone)
#   qcow2   a fully allocated qcow2 copy (nbd engine + QEMU's qcow2 driver)
#   rbd     an RBD copy in a one-monitor, one-OSD Ceph cluster on this machine (rbd engine; the
#           OSD's BlueStore is a file on the same disk, so this measures librbd and a local OSD,
#           not a network)
#
#   [BUILD=dir] bench/blk_engines.sh [SECONDS] [SIZE_MIB]    (defaults 8 s per measurement, 512 MiB)
#
# Workloads: 4 KiB random reads at iodepth 32, 4 KiB random writes at iodepth 32, 1 MiB sequential
# reads at iodepth 4. The file is page-cache warm for every engine (the daemons serve it buffered).
# Prints one line per engine and workload with the ratio to raw; appends to
# bench/results/blk_engines.txt. BENCH_ENGINES="raw qcow2" selects engines.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
size_mib=${2:-512}
engines=${BENCH_ENGINES:-raw nbd-raw qcow2 rbd}
scripts/install-deps.sh
# BUILD=<dir>: an existing build (another commit's, to compare); default: build/ from this tree.
if [ -z "${BUILD:-}" ]; then
  scripts/build.sh release >/dev/null
  BUILD=$PWD/build
fi
. scripts/lib/sim-host.sh

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/pvback-engines.XXXXXX")
ceph_dir=$work/ceph
cleanup() {
  sim_host_cleanup
  [ -d "$ceph_dir" ] && scripts/lib/ceph-cluster.sh stop "$ceph_dir"
  rm -rf "$work"
}
trap cleanup EXIT

raw=$work/disk.img
fio --name=layout --filename="$raw" --size="${size_mib}M" --rw=write --bs=1M --ioengine=io_uring --iodepth=8 \
  --output=/dev/null
params_of() {
  case "$1" in
    raw) echo "$raw" ;;
    # pvback-blk serves "raw:<path>" with the file engine, so the NBD hop alone is measured on a
    # qemu-storage-daemon exporting the file, named by URI.
    nbd-raw) echo "nbd+unix:///disk?socket=$work/qsd.sock" ;;
    qcow2) echo "qcow2:$work/disk.qcow2" ;;
    rbd) echo "rbd:rbd/bench:conf=$ceph_dir/ceph.conf" ;;
  esac
}
for e in $engines; do
  case "$e" in
    qcow2) qemu-img convert -f raw -O qcow2 -o preallocation=metadata "$raw" "$work/disk.qcow2" ;;
    rbd)
      scripts/lib/ceph-cluster.sh start "$ceph_dir" $(( (size_mib + 1024) << 20 )) >/dev/null
      rbd -c "$ceph_dir/ceph.conf" import --image-format 2 "$raw" rbd/bench >/dev/null 2>&1 ;;
  esac
done

sim_host_start "$work/sim"
sim_ctl create-domain 1 --name bench-guest --memory-mib 512 >/dev/null
devid=51712
# run ENGINE COMMAND ARGS...: one measurement; prints its IOPS.
run() {
  local engine=$1; shift
  local params
  params=$(params_of "$engine")
  sim_vbd_start 1 "$devid" "$params" --max-queues 1
  local out
  out=$(PVBACK_DOMID=1 "$BUILD/blkfront/pvback-blkfront" --devid "$devid" --queues 1 --indirect 256 "$@" \
    --seconds "$seconds")
  sim_ctl remove-vbd 1 "$devid" >/dev/null
  sleep 0.5
  sed -n 's/.*iops=\([0-9]*\).*/\1/p' <<<"$out"
}
qsd_pid=
if [[ " $engines " = *" nbd-raw "* ]]; then
  qemu-storage-daemon --blockdev "driver=file,node-name=file0,filename=$raw" \
    --nbd-server "addr.type=unix,addr.path=$work/qsd.sock" \
    --export type=nbd,id=e0,node-name=file0,name=disk,writable=on >"$work/qsd.log" 2>&1 &
  qsd_pid=$!
  for _ in $(seq 100); do [ -S "$work/qsd.sock" ] && break; sleep 0.05; done
fi

declare -A result
workloads=("randread --bs 4096 --iodepth 32" "randwrite --bs 4096 --iodepth 32" "seqread --bs 1048576 --iodepth 4")
for w in "${workloads[@]}"; do
  for e in $engines; do
    # shellcheck disable=SC2086
    result["$e/$w"]=$(run "$e" $w)
  done
done
[ -n "$qsd_pid" ] && kill "$qsd_pid"

report="$(date -u +%Y-%m-%dT%H:%M:%SZ) storage engines, ${seconds}s each, ${size_mib} MiB of data, 1 queue, persistent grants, 256 indirect segments, $(nproc) CPUs"
for w in "${workloads[@]}"; do
  base=${result["raw/$w"]}
  for e in $engines; do
    iops=${result["$e/$w"]}
    ratio=$(python3 -c "print(f'{$iops/$base:.2f}' if $base else 'n/a')" 2>/dev/null || echo n/a)
    report+=$'\n'"$(printf '  %-38s %-8s %8s IOPS  %5sx raw' "$w" "$e" "$iops" "$ratio")"
  done
done
echo "$report"
mkdir -p bench/results
echo "$report" >>bench/results/blk_engines.txt
