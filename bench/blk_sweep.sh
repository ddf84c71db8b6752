#!/usr/bin/env bash
# A sweep of pvback-blk against fio reading the same file directly, in the same run: block size x
# iodepth x queues x data path (persistent grants, grant copy, grant map), on O_DIRECT storage and
# on the page cache. Each point is one fio job (bench/blk_sweep.fio) run unchanged on both sides:
# fio's io_uring engine on the file, and fio's pvback engine on a vbd of the simulated hypervisor
# backed by that file (numjobs = queues). Writes a CSV and PNG plots (gnuplot) to bench/results.
#
#   bench/blk_sweep.sh [quick|full] [SECONDS]
#     quick (default): bs 4k 64k 1M, iodepth 1 32, queues 1        (~48 points, ~5 min at 4 s)
#     full:            bs 4k 16k 64k 256k 1M, iodepth 1 4 16 32 128, queues 1 2  (~400 points, ~45 min)
#   BENCH_DIR=dir for the file (default /var/tmp); BENCH_NO_BUILD=1 uses build/ as it is;
#   BENCH_RW=randread (default) or read, write, randwrite.
#
# O_DIRECT: fio direct=1 on the file; pvback-blk --direct on. Page cache: the file copied to
# /dev/shm (tmpfs), fio direct=0 on it, pvback-blk --direct off.
# On 2 CPUs or more, fio (both sides) runs on CPU 0 and pvback-blk on CPU 1, as a Xen guest's vCPUs
# are not dom0's (BENCH_PIN=0: wherever the scheduler puts them).
set -euo pipefail
cd "$(dirname "$0")/.."
grid=${1:-quick} seconds=${2:-4}
case "$grid" in
  quick) sizes=(4k 64k 1M) depths=(1 32) queue_counts=(1) ;;
  full) sizes=(4k 16k 64k 256k 1M) depths=(1 4 16 32 128) queue_counts=(1 2) ;;
  *) echo "usage: $0 [quick|full] [SECONDS]" >&2; exit 2 ;;
esac
rw=${BENCH_RW:-randread}
scripts/install-deps.sh
[ -n "${BENCH_NO_BUILD:-}" ] || scripts/build.sh release >/dev/null
BUILD=$PWD/build
. scripts/lib/sim-host.sh
guest_pin=()
if [ "${BENCH_PIN:-1}" != 0 ] && [ "$(nproc)" -ge 2 ]; then
  guest_pin=(taskset -c 0)
  export SIM_BACKEND_CPUS=1
fi
engine=$BUILD/fioengine/pvback-fio.so
[ -f "$engine" ] || { echo "blk_sweep: no fio engine at $engine (scripts/build.sh builds it)" >&2; exit 1; }

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/pvback-sweep.XXXXXX")
trap 'sim_host_cleanup; rm -rf "$work"' EXIT
disk=$work/disk.img
size_mib=${BENCH_SIZE_MIB:-1024}
fio --name=layout --filename="$disk" --size="${size_mib}M" --rw=write --bs=1M --direct=1 --ioengine=io_uring \
  --iodepth=8 --output=/dev/null

# run_job ENGINE TARGET DIRECT BS IODEPTH JOBS [ENGINE-OPTION=VALUE...]: "IOPS MB/s mean-latency-us"
run_job() {
  local eng=$1 target=$2 direct=$3 bs=$4 depth=$5 jobs=$6 job=$work/job.fio
  shift 6
  cp bench/blk_sweep.fio "$job"
  printf '%s\n' "$@" >>"$job"
  FIO_ENGINE=$eng FIO_TARGET=$target FIO_DIRECT=$direct FIO_RW=$rw FIO_BS=$bs FIO_IODEPTH=$depth \
    FIO_NUMJOBS=$jobs FIO_SECONDS=$seconds "${guest_pin[@]}" fio "$job" --output-format=json | python3 -c '
import json, sys
t = sys.stdin.read()
j = json.loads(t[t.index("{"):])["jobs"][0]
d = j["write"] if j["write"]["io_bytes"] > j["read"]["io_bytes"] else j["read"]
print("%.0f %.1f %.1f" % (d["iops"], d["bw_bytes"] / 1e6, d["lat_ns"]["mean"] / 1e3))'
}

sim_host_start "$work/sim"
devid=51712
domid=0
# pvback_job PATH DIRECT BS IODEPTH QUEUES: each point in a new guest domain (a guest that exits
# with grants still mapped by its backend leaves those pages to the backend, as Xen does).
pvback_job() {
  local path=$1 direct=$2 bs=$3 depth=$4 queues=$5 front=() back=(--max-queues "$queues")
  case "$path" in
    persistent) ;;
    copy) front=(pvback_persistent=0); back+=(--data-path copy) ;;
    map) front=(pvback_persistent=0); back+=(--data-path map) ;;
  esac
  [ "$direct" = 1 ] && back+=(--direct on) || back+=(--direct off)
  domid=$((domid + 1))
  sim_ctl create-domain "$domid" --name "sweep-$domid" --memory-mib 1024 >/dev/null
  if sim_vbd_start "$domid" "$devid" "$disk" "${back[@]}"; then
    PVBACK_DOMID=$domid run_job "external:$engine" "$devid" "$direct" "$bs" "$depth" "$queues" "${front[@]}" ||
      echo "0 0 0"
  else
    echo "0 0 0"
  fi
  sim_ctl remove-vbd "$domid" "$devid" >/dev/null 2>&1 || true
  sim_ctl destroy-domain "$domid" >/dev/null 2>&1 || true
}

mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
csv=bench/results/blk_sweep-$grid-$rw-$stamp.csv
echo "storage,rw,bs,iodepth,queues,side,iops,mb_per_s,lat_us,ratio" >"$csv"
for storage in direct pagecache; do
  direct=1
  if [ "$storage" = pagecache ]; then
    # On tmpfs: nothing reclaims it meanwhile (a file's cached pages may be: DAMON's reclaim runs
    # on some of these machines), and it is all in memory from the start.
    direct=0
    shm=$(mktemp -d /dev/shm/pvback-sweep.XXXXXX)
    trap 'sim_host_cleanup; rm -rf "$work" "$shm"' EXIT
    cp "$disk" "$shm/disk.img"
    rm -f "$disk"
    disk=$shm/disk.img
  fi
  for queues in "${queue_counts[@]}"; do
    for bs in "${sizes[@]}"; do
      for depth in "${depths[@]}"; do
        read -r ref_iops ref_mb ref_lat < <(run_job io_uring "$disk" "$direct" "$bs" "$depth" "$queues")
        echo "$storage,$rw,$bs,$depth,$queues,fio-direct,$ref_iops,$ref_mb,$ref_lat,1.00" | tee -a "$csv"
        for path in persistent copy map; do
          read -r iops mb lat < <(pvback_job "$path" "$direct" "$bs" "$depth" "$queues")
          ratio=$(python3 -c "print(f'{$iops / max($ref_iops, 1):.2f}')")
          echo "$storage,$rw,$bs,$depth,$queues,$path,$iops,$mb,$lat,$ratio" | tee -a "$csv"
        done
      done
    done
  done
done

# One plot per storage: pvback's throughput as a fraction of fio's on the same file, per block
# size, one line per data path and iodepth (queues 1); and the absolute MB/s of both sides.
plot=bench/results/blk_sweep-$grid-$rw-$stamp
python3 - "$csv" "$plot" "${depths[*]}" <<'PY'
import csv, subprocess, sys
rows = list(csv.DictReader(open(sys.argv[1])))
prefix, depths = sys.argv[2], sys.argv[3].split()
sizes = []
for r in rows:
    if r["bs"] not in sizes: sizes.append(r["bs"])
for storage in ("direct", "pagecache"):
    data = f"{prefix}-{storage}.dat"
    sides = [(p, d) for p in ("persistent", "copy", "map") for d in depths]
    with open(data, "w") as f:
        f.write("bs " + " ".join(f"{p}-qd{d}" for p, d in sides) + " " +
                " ".join(f"mbps-{s}-qd{d}" for s in ("fio-direct", "persistent") for d in depths) + "\n")
        for bs in sizes:
            def get(side, d, key):
                for r in rows:
                    if (r["storage"], r["bs"], r["iodepth"], r["queues"], r["side"]) == (storage, bs, d, "1", side):
                        return r[key]
                return "NaN"
            f.write(bs + " " + " ".join(get(p, d, "ratio") for p, d in sides) + " " +
                    " ".join(get(s, d, "mb_per_s") for s in ("fio-direct", "persistent") for d in depths) + "\n")
    n = len(sides)
    title = "O_DIRECT file" if storage == "direct" else "page cache"
    script = f"""
set terminal pngcairo size 1200,500 font ',10' noenhanced
set output '{prefix}-{storage}.png'
set multiplot layout 1,2 title 'pvback-blk vs fio on the same file ({title}, {rows[0]["rw"]}, 1 queue)'
set style data linespoints
set key top left font ',8'
set grid
set xlabel 'block size'
set ylabel 'pvback IOPS / fio IOPS'
set yrange [0:*]
plot for [i=2:{n + 1}] '{data}' using i:xtic(1) title columnheader(i)
set ylabel 'MB/s'
set logscale y
set yrange [10:*]
plot for [i={n + 2}:{n + 1 + 2 * len(depths)}] '{data}' using i:xtic(1) title columnheader(i)
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    print(f"{prefix}-{storage}.png")
PY
echo "CSV: $csv"
