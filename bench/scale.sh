#!/usr/bin/env bash
# Scale (issue 17, item 4): 1, 8 and 32 simulated guests, each with a vbd and a vif served by
# pvback-supervisor (its defaults, as an operator gets them). For each size, two phases: every
# guest at once runs 4 KiB random reads at iodepth 32 on its disk (pvback-blkfront randread), then
# every guest at once floods 64-byte frames out of its vif (pvback-netfront flood). Each phase:
#   - how long until every device is Connected, with all the guests starting at once;
#   - aggregate IOPS or packets per second over SECONDS once all are (the backends' own counters,
#     pvbackctl stats: each device's rate over its own interval, summed);
#   - the backends' CPU (the supervisor and every process under it, in cores);
#   - per device: resident memory of its processes (control part and data plane; RSS and, apart,
#     anonymous memory: RSS also counts the guest pages a process has touched), threads, processes;
#   - the same load at the largest size with polling off (--poll-max-us 0): what polling costs when
#     the CPUs are shared by many queues.
# Each disk is a file of DISK_MIB (written, so reads reach the disk) on /var/tmp.
# The guests run on CPU 0 and dom0's backends on the others (taskset), as a Xen guest's vCPUs are
# not dom0's: otherwise the frontends, which spin when their ring is full, take the CPUs from the
# backends and the figures measure the scheduler. BENCH_PIN=0 lets the scheduler place everything.
#
#   bench/scale.sh [SECONDS] [SIZES...]      e.g. bench/scale.sh 10 1 8 32   (default: 10 1 8 32)
#   results appended to bench/results/scale.txt and bench/results/scale.csv
# Needs root (network namespaces, TAPs). About SECONDS + 20 s per size, more at 32.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 8 32)
[ "$seconds" -ge 6 ] || { echo "scale: at least 6 seconds" >&2; exit 2; }
BUILD=${BUILD:-$PWD/build}
[ -n "${BENCH_NO_BUILD:-}" ] || scripts/build.sh release >/dev/null
source scripts/lib/sim-host.sh
disk_mib=${DISK_MIB:-64}
work=$(mktemp -d /var/tmp/pvback-scale.XXXXXX)
tag=pvsc$$
supervisor_pid=
load_pids=()
results=bench/results
mkdir -p "$results"

stop_host() {
  set +e
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${load_pids[@]}"; do wait "$p" 2>/dev/null; done
  load_pids=()
  if [ -n "$supervisor_pid" ]; then kill "$supervisor_pid" 2>/dev/null; wait "$supervisor_pid" 2>/dev/null; fi
  supervisor_pid=
  sim_host_cleanup
  ip netns delete "$tag-d0" 2>/dev/null
  set -e
}
cleanup() { stop_host; rm -rf "$work"; }
trap cleanup EXIT

run_size() {  # run_size GUESTS LABEL [supervisor options...]
  local n=$1 label=$2
  shift 2
  local d
  sim_host_start "$work/sim-$n-$label"
  ip netns add "$tag-d0"
  ip -n "$tag-d0" link set lo up
  ip netns exec "$tag-d0" env PVBACK_DOMID=0 "${backend_pin[@]}" "$BUILD/supervisor/pvback-supervisor" \
    --blk-binary "$BUILD/blkback/pvback-blk" --net-binary "$BUILD/netback/pvback-net" \
    --blk-arg --recovery-dir --blk-arg "$work/recovery" --net-arg --recovery-dir --net-arg "$work/recovery" \
    --net-arg --tap-up --control-socket "$work/ctl-$n-$label.sock" "$@" 2>"$work/supervisor-$n-$label.log" &
  supervisor_pid=$!
  for ((d = 1; d <= n; d++)); do
    sim_ctl create-domain "$d" --name "scale$d" --memory-mib 256 >/dev/null
    sim_ctl add-vbd "$d" 51712 --params "$work/disk$d.img" >/dev/null
    sim_ctl add-vif "$d" 0 --mac "00:16:3e:00:$(printf %02x $((d / 256))):$(printf %02x $((d % 256)))" >/dev/null
  done
  # Every backend at InitWait.
  if ! wait_state vbd "$n" 51712 2 600 || ! wait_state vif "$n" 0 2 600; then
    echo "scale: not every backend reached InitWait" >&2
    tail -20 "$work/supervisor-$n-$label.log" >&2
    exit 1
  fi
  phase "$n" "$label" vbd
  phase "$n" "$label" vif
  stop_host
}

# in_state KIND GUESTS DEVID STATE: how many of the guests' backends of KIND are in XenbusState STATE.
in_state() {
  local count=0 d
  for ((d = 1; d <= $2; d++)); do
    [ "$(xenstore-read "/local/domain/0/backend/$1/$d/$3/state" 2>/dev/null)" = "$4" ] && count=$((count + 1))
  done
  echo "$count"
}
# wait_state KIND GUESTS DEVID STATE TENTHS: until all are, or TENTHS tenths of a second passed.
wait_state() {
  local _
  for _ in $(seq "$5"); do
    [ "$(in_state "$1" "$2" "$3" "$4")" = "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

# phase GUESTS LABEL vbd|vif: every guest drives the one kind of device at once (the other kind
# stays at InitWait, unconnected), so that each kind's figures are its own and not a share of the
# backend CPUs the other took. The frontends run until stopped (a guest kernel's wait for its
# backend has no timeout; 120 s here); the measurement starts once every device of the kind is
# Connected.
phase() {
  local n=$1 label=$2 kind=$3 d
  local t_start=$EPOCHREALTIME connected
  for ((d = 1; d <= n; d++)); do
    if [ "$kind" = vbd ]; then
      PVBACK_DOMID=$d "${guest_pin[@]}" "$BUILD/blkfront/pvback-blkfront" --devid 51712 --timeout-ms 120000 \
        randread --bs 4096 --iodepth 32 --seconds 86400 >"$work/$kind-$n-$label-$d.out" 2>&1 &
    else
      PVBACK_DOMID=$d "${guest_pin[@]}" "$BUILD/netfront/pvback-netfront" flood --handle 0 --timeout-ms 120000 \
        --size 64 --seconds 86400 >"$work/$kind-$n-$label-$d.out" 2>&1 &
    fi
    load_pids+=($!)
  done
  local devpath=51712
  [ "$kind" = vif ] && devpath=0
  wait_state "$kind" "$n" "$devpath" 4 1200 || true
  connected=$(in_state "$kind" "$n" "$devpath" 4)
  local connect_s
  connect_s=$(awk -v a="$EPOCHREALTIME" -v b="$t_start" 'BEGIN { printf "%.1f", a - b }')
  [ "$connected" = "$n" ] || echo "scale: $n guests $label: only $connected of $n ${kind}s connected after ${connect_s} s" >&2
  # Warm; then the devices' counters and the backends' CPU over SECONDS, their memory and threads
  # at its end, while every device of the kind is connected and busy.
  sleep 2
  local ctl=("$work/ctl-$n-$label.sock" "$BUILD/ctl/pvbackctl" "$n" "$kind")
  python3 bench/scale_sample.py snapshot "$supervisor_pid" "${ctl[@]}" "$work/s0.json"
  sleep "$seconds"
  python3 bench/scale_sample.py snapshot "$supervisor_pid" "${ctl[@]}" "$work/s1.json"
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${load_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  load_pids=()
  python3 bench/scale_sample.py report "$n" "$label" "$kind" "$connect_s" "$work/s0.json" "$work/s1.json" \
    "$results/scale.csv" | tee -a "$results/scale.txt"
  # Every device of the kind back at InitWait (the frontends closed) before the next phase.
  wait_state "$kind" "$n" "$devpath" 2 300 || true
}

guest_pin=() backend_pin=()
if [ "${BENCH_PIN:-1}" != 0 ] && [ "$(nproc)" -ge 2 ]; then
  guest_pin=(taskset -c 0)
  backend_pin=(taskset -c "1-$(($(nproc) - 1))")
fi
max=0
for n in "${sizes[@]}"; do [ "$n" -gt "$max" ] && max=$n; done
for ((d = 1; d <= max; d++)); do
  dd if=/dev/zero of="$work/disk$d.img" bs=1M count="$disk_mib" oflag=direct status=none
done
echo "== $(date -u +%F' '%T) bench/scale.sh $seconds s, sizes ${sizes[*]}, $(nproc) CPUs${guest_pin:+, guests on CPU 0, backends on the rest}, commit $(git rev-parse --short HEAD)" |
  tee -a "$results/scale.txt"
for n in "${sizes[@]}"; do run_size "$n" default; done
run_size "$max" poll-off --blk-arg --poll-max-us --blk-arg 0
