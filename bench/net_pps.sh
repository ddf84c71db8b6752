#!/usr/bin/env bash
# 64-byte packets per second guest -> port through pvback-net, on one queue, with a DPDK null port
# (net_null0: the port drops what it is given, so the figure is the backend's own cost), then with
# the TAP exit for comparison. The guest is `pvback-netfront flood`; the figure is the backend's
# tx_packets (from its statistics) over the run, and per backend core: divided by the CPU time
# the backend process used (poll-mode DPDK loops use a whole core by design).
# usage: bench/net_pps.sh [SECONDS]   (results appended to bench/results/net_pps.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
BUILD=${BUILD:-build}
[ -x "$BUILD/netback/pvback-net" ] || scripts/build.sh release >/dev/null
source scripts/lib/sim-host.sh
work=$(mktemp -d /tmp/pvback-net-pps.XXXXXX)
cleanup() { sim_host_cleanup; rm -rf "$work"; }
trap cleanup EXIT
results=bench/results/net_pps.txt
mkdir -p bench/results

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tx_packets() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"]["tx_packets"])' "$1"; }

run_case() {  # run_case LABEL DOMID [pvback-net options...]
  local label=$1 domid=$2
  shift 2
  sim_ctl create-domain "$domid" >/dev/null
  sim_vif_start "$domid" 0 --max-queues 1 --stats-interval-ms 100 "$@"
  local backend_pid=${SIM_PIDS[-1]}
  local stats=$SIM_RUN_DIR/stats/vif-$domid-0.json
  PVBACK_DOMID=$domid "$BUILD/netfront/pvback-netfront" flood --frontend-path "/local/domain/$domid/device/vif/0" \
    --size 64 --seconds "$seconds" >"$work/flood-$domid.log" 2>&1 &
  local flood_pid=$!
  sleep 1  # connected and warm
  local p0 t0 c0 p1 t1 c1
  p0=$(tx_packets "$stats"); t0=$(date +%s.%N); c0=$(cpu_ticks "$backend_pid")
  sleep $((seconds - 2))
  p1=$(tx_packets "$stats"); t1=$(date +%s.%N); c1=$(cpu_ticks "$backend_pid")
  wait "$flood_pid" || true
  python3 - "$label" "$p0" "$p1" "$t0" "$t1" "$c0" "$c1" "$(getconf CLK_TCK)" <<'PY' | tee -a "$results"
import sys
label, p0, p1, t0, t1, c0, c1, hz = sys.argv[1], *map(float, sys.argv[2:])
pps = (p1 - p0) / (t1 - t0)
cores = (c1 - c0) / hz / (t1 - t0)
print(f"{label:32s} {pps/1e6:6.2f} Mpps  backend CPU {cores:4.2f} cores  {pps/max(cores,1e-9)/1e6:6.2f} Mpps per backend core")
PY
  cat "$work/flood-$domid.log" | grep -v '^<' | tail -2
}

echo "== $(date -u +%F' '%T) bench/net_pps.sh $seconds s, $(nproc) CPUs, commit $(git rev-parse --short HEAD)" | tee -a "$results"
sim_host_start "$work/run"
run_case "dpdk net_null0, 64 B, 1 queue" 1 --exit dpdk --dpdk-devargs net_null0
netns=pvb-bench-$$
ip netns add "$netns"
SIM_DOM0_NETNS=$netns run_case "tap vif2.0, 64 B, 1 queue" 2 --tap-up
ip netns del "$netns"
