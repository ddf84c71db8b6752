#!/usr/bin/env bash
# Two builds of pvback-blk side by side on 4 KiB random reads at iodepth 32 (the pvback part of
# bench/blk_randread.sh), alternating the order every round so that neither gains from going first:
# the way to measure one change against the commit before it.
#
#   bench/blk_ab.sh BEFORE_BUILD AFTER_BUILD [ROUNDS] [SECONDS]
#
# A build directory needs pvback-blk, pvback-blkfront, pvback-sim and pvback-sim-ctl, e.g.
#   git worktree add /tmp/before <commit> && cmake -S /tmp/before -B /tmp/before/build \
#     -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF && cmake --build /tmp/before/build \
#     --target pvback-blk pvback-blkfront pvback-sim pvback-sim-ctl
# The guest is fio with the pvback engine running bench/blk_randread.fio, the same frontend for both
# sides: AFTER_BUILD's fioengine/pvback-fio.so (or FIO_ENGINE_SO=path); without one, each build's
# pvback-blkfront randread loop.
# Prints every run and the mean ratio per data path (persistent grants, grant copy).
# BEFORE_ARGS / AFTER_ARGS add pvback-blk options to one side; with one build on both sides that
# measures an option in one run, e.g. the data-plane process against threads:
#   BEFORE_ARGS="--data-plane thread" bench/blk_ab.sh build build 3 8
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(realpath "$1") after=$(realpath "$2") rounds=${3:-3} seconds=${4:-8}
work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/pvback-ab.XXXXXX")
trap 'rm -rf "$work"' EXIT
disk=$work/disk.img
engine=${FIO_ENGINE_SO:-$after/fioengine/pvback-fio.so}
[ -f "$engine" ] || engine=
fio --name=layout --filename="$disk" --size=1024M --rw=write --bs=1M --direct=1 --ioengine=io_uring --iodepth=8 \
  --output=/dev/null
run() {  # run BUILD [frontend options] -- [backend options]: prints the IOPS
  BUILD=$1
  shift
  . scripts/lib/sim-host.sh
  sim_host_start "$work/sim-$RANDOM"
  sim_ctl create-domain 1 --name ab --memory-mib 512 >/dev/null
  local front=() back=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do front+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  back=("$@")
  sim_vbd_start 1 51712 "$disk" --max-queues 1 "${back[@]}"
  if [ -n "$engine" ]; then
    cp bench/blk_randread.fio "$work/job.fio"  # engine options go inside the job
    [ "${front[*]}" = --no-persistent ] && echo pvback_persistent=0 >>"$work/job.fio"
    PVBACK_DOMID=1 FIO_ENGINE="external:$engine" FIO_TARGET=51712 FIO_SECONDS=$seconds \
      fio "$work/job.fio" --output-format=json |
      python3 -c 'import json,sys; t=sys.stdin.read(); print(int(json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"]))'
  else
    PVBACK_DOMID=1 "$BUILD/blkfront/pvback-blkfront" --devid 51712 --queues 1 "${front[@]}" \
      randread --bs 4096 --iodepth 32 --seconds "$seconds" | sed -n 's/.*iops=\([0-9]*\).*/\1/p'
  fi
  sim_ctl remove-vbd 1 51712 >/dev/null
  sim_host_cleanup
}
declare -A sum=()
for r in $(seq 1 "$rounds"); do
  order=(before after)
  ((r % 2 == 0)) && order=(after before)
  for path in persistent copy; do
    for which in "${order[@]}"; do
      dir=$before side=${BEFORE_ARGS:-}
      [ "$which" = after ] && dir=$after side=${AFTER_ARGS:-}
      front=() back=()
      [ "$path" = copy ] && front=(--no-persistent) back=(--data-path copy)
      read -r -a extra <<<"$side"
      iops=$(run "$dir" "${front[@]}" -- "${back[@]}" "${extra[@]}")
      echo "round $r $path $which $iops"
      sum[$path-$which]=$(( ${sum[$path-$which]:-0} + iops ))
    done
  done
done
for path in persistent copy; do
  python3 -c "import sys; b,a=int(sys.argv[2]),int(sys.argv[3]); print(f'{sys.argv[1]}: before {b//$rounds} after {a//$rounds} IOPS, ratio {a/b:.3f}')" \
    "$path" "${sum[$path-before]}" "${sum[$path-after]}"
done
