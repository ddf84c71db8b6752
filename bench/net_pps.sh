#!/usr/bin/env bash
# 64-byte packets per second guest -> port through pvback-net, on one queue, with a DPDK null port
# (net_null0: the port drops what it is given, so the figure is the backend's own cost), then with
# the TAP exit for comparison. The guest is `pvback-netfront flood`; the figure is the backend's
# tx_packets (from its statistics) over the run, and per backend core: divided by the CPU time
# the backend's processes used (poll-mode DPDK loops use a whole core by design). Beside the TAP
# figure, in the same run: the TAP's own ceiling on this machine, 64-byte frames written into a
# TAP by one thread with nothing else to do (tools/pvback-tap-flood, through the same TapPort:
# batched as pvback-net writes, and with one write() per frame), and pvback's ratio to it.
# usage: bench/net_pps.sh [SECONDS]   (results appended to bench/results/net_pps.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
BUILD=${BUILD:-build}
[ -x "$BUILD/netback/pvback-net" ] && [ -x "$BUILD/tools/pvback-tap-flood" ] || scripts/build.sh release >/dev/null
source scripts/lib/sim-host.sh
work=$(mktemp -d /tmp/pvback-net-pps.XXXXXX)
netns=pvb-bench-$$
# The namespace goes too when a case fails half-way (set -e).
cleanup() { sim_host_cleanup; ip netns del "$netns" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
results=bench/results/net_pps.txt
mkdir -p bench/results

# CPU ticks of a process and every process under it (pvback-net's data plane, pvback-net-dp, is
# its child and does the work).
cpu_ticks() {
  local pid=$1 total child
  total=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    total=$((total + $(cpu_ticks "$child")))
  done
  echo "$total"
}
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
ip netns add "$netns"
SIM_DOM0_NETNS=$netns run_case "tap vif2.0, 64 B, 1 queue" 2 --tap-up
tap_line=$(tail -1 "$results")
for batch in 64 0; do
  label="TAP alone, $([ $batch = 0 ] && echo 'one write() each' || echo "batches of $batch")"
  ip netns exec "$netns" "$BUILD/tools/pvback-tap-flood" --name "tflood$batch" --seconds "$seconds" --batch $batch \
    2>/dev/null | python3 -c '
import sys
label = sys.argv[1]
f = dict(zip(*[iter(sys.stdin.read().split())] * 2))
pps, cpu, per = float(f["pps"]), float(f["cpu"]), float(f["pps_per_core"])
if "batches" in label and f.get("batched") != "1":
    label += " (fell back to write())"
print("%-32s %6.2f Mpps  its CPU     %4.2f cores  %6.2f Mpps per core" % (label, pps / 1e6, cpu, per / 1e6))
' "$label" | tee -a "$results"
done
python3 - "$tap_line" "$(tail -2 "$results" | head -1)" <<'PY' | tee -a "$results"
import re, sys
per_core = lambda line: float(re.findall(r"([0-9.]+) Mpps per", line)[-1])
pv, ceiling = per_core(sys.argv[1]), per_core(sys.argv[2])
print(f"pvback TAP per core / the TAP alone, batched: {pv / ceiling:.2f}x")
PY
