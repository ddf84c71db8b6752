#!/usr/bin/env bash
# A guest storming its event channel (notifications without requests, XSA-332's class) next to a
# guest doing real I/O, on the simulated hypervisor: what the storm costs the storming device's
# pvback-blk (CPU, as a share of one core) and what is left of the other guest's 4 KiB random-read
# IOPS, against the same read alone, in one run.
#
#   bench/blk_event_storm.sh [SECONDS]     (default 10 s per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
scripts/install-deps.sh
scripts/build.sh release >/dev/null
BUILD=$PWD/build
. scripts/lib/sim-host.sh

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/pvback-bench.XXXXXX")
storm_pid=
trap '[ -n "$storm_pid" ] && kill "$storm_pid" 2>/dev/null; sim_host_cleanup; rm -rf "$work"' EXIT
for d in 1 2; do
  fio --name=layout --filename="$work/disk$d.img" --size=256M --rw=write --bs=1M --direct=1 --ioengine=io_uring \
    --iodepth=8 --output=/dev/null
done
sim_host_start "$work/sim"
devid=51712
for d in 1 2; do sim_ctl create-domain "$d" --name "guest$d" --memory-mib 512 >/dev/null; done
sim_vbd_start 1 "$devid" "$work/disk1.img" --max-queues 1
storming_backend=${SIM_PIDS[-1]}
sim_vbd_start 2 "$devid" "$work/disk2.img" --max-queues 1

front() {  # front DOMID COMMAND [options]
  local domid=$1; shift
  PVBACK_DOMID=$domid "$BUILD/blkfront/pvback-blkfront" --devid "$devid" --queues 1 "$@"
}
iops() { sed -n 's/.*iops=\([0-9]*\).*/\1/p'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

alone=$(front 2 randread --bs 4096 --iodepth 32 --seconds "$seconds" | iops)
front 1 storm --seconds $((seconds + 2)) > "$work/storm.out" &
storm_pid=$!
sleep 1
t0=$(cpu_ticks "$storming_backend"); s0=$(date +%s.%N)
during=$(front 2 randread --bs 4096 --iodepth 32 --seconds "$seconds" | iops)
t1=$(cpu_ticks "$storming_backend"); s1=$(date +%s.%N)
wait "$storm_pid"; storm_pid=
stats=$SIM_RUN_DIR/stats/vbd-1-$devid.json
hz=$(getconf CLK_TCK)
report=$(cat <<REPORT
$(date -u +%Y-%m-%dT%H:%M:%SZ) event storm, ${seconds}s, $(nproc) CPUs
  guest 2 randread 4k QD32 alone          : $alone IOPS
  guest 2 randread 4k QD32, guest 1 storms : $during IOPS ($(python3 -c "print(f'{$during/$alone:.2f}')")x)
  guest 1's pvback-blk during the storm    : $(python3 -c "print(f'{($t1-$t0)/$hz/($s1-$s0)*100:.1f}')") % of one core
  guest 1's storm                          : $(cat "$work/storm.out"); its backend's wake-ups: $(grep -o '"events_received": [0-9]*' "$stats" | head -1 | grep -o '[0-9]*$'), throttled $(grep -o '"events_throttled": [0-9]*' "$stats" | head -1 | grep -o '[0-9]*$') times
REPORT
)
echo "$report"
mkdir -p bench/results
echo "$report" >> bench/results/blk_event_storm.txt
