#!/usr/bin/env bash
# The soak (issue 18, item 5): N simulated guests, each with a vbd and a vif served by
# pvback-supervisor's pvback-blk and pvback-net, doing verified disk I/O and verified traffic while
# they attach, detach, reconnect and are destroyed mid-I/O, and while backends are killed at random.
# Every pvback process is sampled (RSS, fds, threads, eventfds, grant mappings); at the end it
# checks that nothing failed verification, that the resources stayed flat and that no process
# is left behind.
#
#   scripts/soak.sh [--guests N] [--minutes M | --seconds S] [--results DIR] [--kill-every S]
#                   [--sample-every S] [--no-build]
#
# Defaults: 32 guests, 30 minutes, a random backend SIGKILLed every 3 s, a sample every 5 s,
# results in /var/tmp/pvback-soak.<time>/ (samples.csv, series.csv, events.csv, supervisor.log,
# one log per guest, summary.txt). CI runs a short one (ctest -L soak: 8 guests, 75 s).
# Needs root (network namespaces, TAPs). Exit status 0 only if every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
guests=32 seconds=1800 results= kill_every=3 sample_every=5 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --guests) guests=$2; shift 2 ;;
    --minutes) seconds=$(($2 * 60)); shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    --kill-every) kill_every=$2; shift 2 ;;
    --sample-every) sample_every=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    *) sed -n '2,16p' "$0" >&2; exit 2 ;;
  esac
done
[ "$guests" -ge 1 ] && [ "$guests" -le 200 ] || { echo "soak: --guests 1..200" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "soak: needs root (network namespaces and TAP devices)" >&2; exit 2; }
BUILD=${BUILD:-$PWD/build}
[ "$build" = 1 ] && scripts/build.sh release >/dev/null
results=${results:-/var/tmp/pvback-soak.$(date +%Y%m%d-%H%M%S)}
mkdir -p "$results"
rm -f "$results"/guest-*.log "$results"/chaos.log
results=$(cd "$results" && pwd)
work=$(mktemp -d /var/tmp/pvback-soak-work.XXXXXX)
. scripts/lib/sim-host.sh

tag=pvsk$$                        # network namespace names: <tag>-d0 (dom0), <tag>-gN (guest N)
dom0ns=$tag-d0
devid=51712
# Guest memory is a sparse memfd. The simulated hypervisor hands a domain's frames and grant refs
# to its frontend processes in leases that are never given back while the domain lives (a bump
# allocator: sim/domains/domain_manager.cpp, LeaseShareRange), so a domain runs a bounded number
# of frontend connections (at 64 MiB, five pvback-blkfront runs): 1 GiB and at most 4 rounds per
# life stay inside it (refs run out after about 20 connections).
mem_mib=1024
disk_mib=32
start=$EPOCHREALTIME
stop_at=$(( $(date +%s) + seconds ))
supervisor_pid= sampler_pid= chaos_pid=
worker_pids=()

now() { awk -v a="$EPOCHREALTIME" -v b="$start" 'BEGIN { printf "%.1f", a - b }'; }
# ev GUEST EVENT RESULT [DETAIL]: one line of events.csv (short appends are atomic).
ev() { local detail=${4:-}; printf '%s,%s,%s,%s,%s\n' "$(now)" "$1" "$2" "$3" "${detail//,/;}" >> "$results/events.csv"; }

kill_tree() {  # kill_tree PID: the process and its descendants, children first
  local c
  for c in $(pgrep -P "$1"); do kill_tree "$c"; done
  kill "$1" 2>/dev/null
}

teardown() {
  set +e
  touch "$work/stop" "$work/stop-sampling"
  # An interrupted run: the workers and whatever frontend each was running.
  for p in $chaos_pid "${worker_pids[@]}"; do kill_tree "$p"; done
  for p in $chaos_pid "${worker_pids[@]}"; do wait "$p" 2>/dev/null; done
  # Frontends a killed worker left behind (each worker records its own).
  for f in "$work"/front-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  if [ -n "$supervisor_pid" ]; then kill "$supervisor_pid" 2>/dev/null; wait "$supervisor_pid" 2>/dev/null; fi
  [ -n "$sampler_pid" ] && wait "$sampler_pid" 2>/dev/null
  sim_host_cleanup
  for ns in $(ip netns list | awk -v t="$tag-" 'index($1, t) == 1 {print $1}'); do ip netns delete "$ns"; done
  rm -rf "$work"
}
trap teardown EXIT

printf 't,guest,event,result,detail\n' > "$results/events.csv"
sim_host_start "$work/sim"
ip netns add "$dom0ns"
ip -n "$dom0ns" link set lo up
# The toolstack's side: the supervisor in dom0's namespace, where pvback-net creates its TAPs.
ip netns exec "$dom0ns" env PVBACK_DOMID=0 "$BUILD/supervisor/pvback-supervisor" \
  --blk-binary "$BUILD/blkback/pvback-blk" --net-binary "$BUILD/netback/pvback-net" \
  --blk-arg --max-queues --blk-arg 2 --blk-arg --recovery-dir --blk-arg "$work/recovery" \
  --blk-arg --stats-interval-ms --blk-arg 5000 \
  --net-arg --max-queues --net-arg 2 --net-arg --tap-up --net-arg --stats-interval-ms --net-arg 5000 \
  --net-arg --recovery-dir --net-arg "$work/recovery" \
  --restart-delay-ms 500 --max-restart-delay-ms 4000 2> "$results/supervisor.log" &
supervisor_pid=$!
SOAK_MEMORY_BYTES=$((mem_mib << 20)) python3 scripts/lib/soak_sample.py "$work/sim" "$results/samples.csv" \
  "$sample_every" "$work/stop-sampling" "$start" &
sampler_pid=$!

# ---- one guest's life, over and over, until the end ---------------------------------------------
guest_worker() {
  local d=$1 gns=$tag-g$1 log=$results/guest-$1.log netpid= life=0
  local disk=$work/disk$d.img written=0
  set +e   # every failure is an event in events.csv, none ends the worker
  truncate -s "${disk_mib}M" "$disk"
  ip netns add "$gns"
  ip -n "$gns" link set lo up
  exec >>"$log" 2>&1
  blk() {  # blk COMMAND ARGS...: a frontend connection of its own (a reconnect each time)
    PVBACK_DOMID=$d timeout 120 "$BUILD/blkfront/pvback-blkfront" --devid "$devid" --queues 2 "$@"
  }
  # blk_check WHAT ARGS...: a verified I/O; mismatching data, I/O errors, failed attach are failures.
  blk_check() {
    local what=$1 out rc=0
    shift
    out=$(blk "$@" 2>&1) || rc=$?
    echo "$out"
    if grep -q mismatch <<<"$out"; then ev "$d" "$what" MISMATCH "$(grep -m1 mismatch <<<"$out")"
    elif [ $rc = 0 ]; then ev "$d" "$what" ok; return 0
    elif [ $rc = 1 ]; then ev "$d" "$what" IOERROR "$(tail -1 <<<"$out")"
    elif [ $rc = 124 ]; then ev "$d" "$what" STUCK "no answer in 120 s"
    else ev "$d" "$what" ATTACH "rc $rc: $(tail -1 <<<"$out")"; fi
    return 1
  }
  net_start() {
    PVBACK_DOMID=$d "$BUILD/netfront/pvback-netfront" guest --handle 0 --netns "$gns" \
      --address "10.200.$d.2/24" --queues 2 &
    netpid=$!
    echo "$netpid" > "$work/front-$d.pid"
  }
  net_stop() {
    [ -n "$netpid" ] || return 0
    kill "$netpid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$netpid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$netpid" 2>/dev/null
    wait "$netpid" 2>/dev/null
    netpid=
    rm -f "$work/front-$d.pid"
  }
  # net_check: pings with a payload pattern from the guest to dom0's end of its vif (the hotplug
  # script's job, giving dom0's TAP its address, is done here, again after a restarted pvback-net
  # created a new TAP). ping compares every reply's payload ("wrong data byte"). Packets lost
  # while a backend is killed are retried; a vif that answers nothing for 30 s has failed.
  net_check() {
    local deadline=$(( $(date +%s) + 30 )) out
    while :; do
      ip -n "$dom0ns" addr replace "10.200.$d.1/24" dev "vif$d.0" 2>/dev/null || true
      out=$(ip netns exec "$gns" ping -c 5 -i 0.1 -W 1 -s 1400 -p "5a$(printf %02x "$d")c3" "10.200.$d.1" 2>&1) || true
      if grep -q 'wrong data' <<<"$out"; then ev "$d" net MISMATCH "$(grep -m1 'wrong data' <<<"$out")"; return; fi
      if grep -q ' [1-9][0-9]* received' <<<"$out"; then ev "$d" net ok; return; fi
      if [ "$(date +%s)" -ge "$deadline" ]; then
        local why="no reply in 30 s"
        kill -0 "$netpid" 2>/dev/null || why="$why; the netfront guest has exited: $(grep 'pvback-netfront' "$log" | tail -n 2 | tr '\n' ' ')"
        ev "$d" net NETDEAD "$why"
        return
      fi
      sleep 0.5
    done
  }
  # wait_gone KIND: the device's backend has exited (it follows unplug and domain destruction).
  wait_gone() {
    local path=/local/domain/0/backend/$1/$d/$2
    for _ in $(seq 300); do
      pgrep -P "$supervisor_pid" -f -- "--backend-path $path\$" >/dev/null || return 0
      sleep 0.1
    done
    ev "$d" "$1-unplug" LINGER "backend for $path still running 30 s after its device went"
  }
  # tool ARGS...: a pvback-sim-ctl command. A transaction that conflicts with other guests' (the
  # parent directories every add and remove touches) is retried, as libxl does, without limit
  # there; here up to 20 times (each already 16 attempts inside pvback-sim-ctl).
  tool() {
    local i err
    for i in $(seq 20); do
      err=$(sim_ctl "$@" 2>&1 >/dev/null) && { [ "$i" = 1 ] || ev "$d" toolstack-retried ok "$1 after $i runs"; return 0; }
      grep -q 'Resource temporarily unavailable' <<<"$err" || break
      sleep "0.$((RANDOM % 5))"
    done
    ev "$d" toolstack ATTACH "pvback-sim-ctl $*: $err"
    return 1
  }
  attach() {
    tool add-vbd "$d" "$devid" --params "$disk"
    tool add-vif "$d" 0 --mac "00:16:3e:00:$(printf %02x $((d / 256))):$(printf %02x $((d % 256)))"
    net_start
  }
  detach() {
    net_stop
    tool remove-vbd "$d" "$devid"
    tool remove-vif "$d" 0
    wait_gone vbd "$devid"
    wait_gone vif 0
  }
  while [ "$(date +%s)" -lt "$stop_at" ]; do
    life=$((life + 1))
    tool create-domain "$d" --name "soak$d" --memory-mib "$mem_mib"
    attach
    ev "$d" life start "$life"
    local seed=$(( (d << 20) + life )) rounds=$((1 + RANDOM % 4)) r
    # The first MiB is written once per life and read back after every reconnect, kill, detach.
    written=0
    blk_check write-verify write-verify --seed "$seed" --bytes 1M --iodepth 8 && written=1
    for ((r = 0; r < rounds && $(date +%s) < stop_at; r++)); do
      [ $written = 1 ] && blk_check verify verify --seed "$seed" --bytes 1M --iodepth 8
      blk_check write-verify write-verify --seed "$((seed + 1000 * (r + 1)))" --bytes 2M --offset 8M \
        --bs $((4096 << (RANDOM % 5))) --iodepth $((1 + RANDOM % 32))
      net_check
      case $((RANDOM % 6)) in
        0) net_stop; net_start; ev "$d" vif-reconnect ok ;;
        1) detach; ev "$d" detach ok; attach; ev "$d" attach ok
           [ $written = 1 ] && blk_check verify verify --seed "$seed" --bytes 1M --iodepth 8 ;;
      esac
    done
    if ((RANDOM % 2)); then
      # Destroyed mid-I/O: the domain goes while a write and traffic are in flight; their errors
      # are expected, then the toolstack removes the backend nodes, as libxl does.
      PVBACK_DOMID=$d "$BUILD/blkfront/pvback-blkfront" --devid "$devid" --queues 2 \
        write-verify --seed 1 --bytes 8M --offset 16M --iodepth 32 >/dev/null 2>&1 &
      local io=$!
      ip netns exec "$gns" ping -f -c 100000 -s 1000 "10.200.$d.1" >/dev/null 2>&1 &
      local fl=$!
      sleep "0.$((RANDOM % 9 + 1))"
      # The domain stops at once: its frontends (its vCPUs, here) die with it.
      tool destroy-domain "$d"
      kill -KILL "$io" "$netpid" 2>/dev/null
      kill "$fl" 2>/dev/null
      wait "$io" "$fl" 2>/dev/null
      ev "$d" destroy-mid-io ok
      detach
    else
      detach
      tool destroy-domain "$d"
      ev "$d" clean-shutdown ok
    fi
  done
  ip netns delete "$gns"
}

# ---- chaos: a random backend killed --------------------------------------------------------------
chaos() {
  exec >>"$results/chaos.log" 2>&1
  while [ ! -e "$work/stop" ]; do
    sleep "$kill_every"
    local kids victim
    mapfile -t kids < <(pgrep -P "$supervisor_pid")
    [ ${#kids[@]} -gt 0 ] || continue
    victim=${kids[RANDOM % ${#kids[@]}]}
    local what
    what=$(tr '\0' ' ' < "/proc/$victim/cmdline" 2>/dev/null | grep -o 'backend/[a-z]*/[0-9]*/[0-9]*') || continue
    kill -KILL "$victim" 2>/dev/null && ev "-" sigkill ok "$what pid $victim"
  done
}

sleep $((sample_every + 1))   # an idle sample first: the host before any guest
echo "soak: $guests guests for ${seconds}s, a backend killed every ${kill_every}s; results in $results"
for d in $(seq "$guests"); do
  guest_worker "$d" &
  worker_pids+=($!)
done
chaos &
chaos_pid=$!
for p in "${worker_pids[@]}"; do wait "$p" || true; done
worker_pids=()
touch "$work/stop"
wait "$chaos_pid" 2>/dev/null || true
chaos_pid=
ev "-" workload-end ok

# ---- teardown as a host shuts down, then: is anything left? --------------------------------------
sleep $((sample_every * 2 + 1))   # idle samples after: every guest gone
touch "$work/stop-sampling"
kill "$supervisor_pid"
rc=0; wait "$supervisor_pid" || rc=$?
[ $rc = 0 ] || ev "-" supervisor-exit LEFTOVER "supervisor exited with status $rc"
supervisor_pid=
wait "$sampler_pid" || true
sampler_pid=
# Any process still alive with this host's environment (a backend, a frontend, a storage daemon),
# other than the simulated hypervisor itself and this script.
left=$(python3 - "PVBACK_SIM_DIR=$work/sim" "${SIM_PIDS[0]}" $$ <<'PY'
import os, sys
mine = sys.argv[1].encode()
skip = {str(os.getpid()), str(os.getppid()), *sys.argv[2:]}
def ours(pid):
    try:
        return mine in open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return False
def name(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return "?"
print(" ".join(f"{p}({name(p)})" for p in os.listdir("/proc") if p.isdigit() and p not in skip and ours(p)))
PY
)
[ -z "$left" ] && ev "-" leftover-processes ok || ev "-" leftover-processes LEFTOVER "alive after teardown: $left"
n=$(find "$work/recovery" -type f 2>/dev/null | wc -l)
[ "$n" = 0 ] && ev "-" leftover-recovery-records ok || ev "-" leftover-recovery-records LEFTOVER "$n records of removed devices"
sim_host_cleanup
ev "-" backends-started ok "$(grep -c ': started' "$results/supervisor.log")"
status=0
python3 scripts/lib/soak_summary.py "$results" "$(( seconds / 10 > 30 ? seconds / 10 : 30 ))" "$seconds" \
  | tee "$results/summary.txt" || status=1
echo "soak: results in $results"
exit $status
