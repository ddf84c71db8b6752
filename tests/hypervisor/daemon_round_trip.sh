#!/usr/bin/env bash
# The pvback-sim daemon with real processes: pvback-sim-ctl creates a guest, pvback-ring-demo runs
# a guest process and a backend process through simulated grants and event channels, the real
# xenstore-ls sees the result, and the daemon stops cleanly on SIGTERM.
# usage: daemon_round_trip.sh BUILD_DIR
set -euo pipefail
build=$1
run_dir=$(mktemp -d /tmp/pvback-daemon-test.XXXXXX)
sim_pid=
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

"$build/sim/pvback-sim" --run-dir "$run_dir" 2>"$run_dir/sim.log" &
sim_pid=$!
for _ in $(seq 200); do [ -S "$run_dir/control" ] && [ -S "$run_dir/socket" ] && break; sleep 0.05; done

export XENSTORED_PATH=$run_dir/socket PVBACK_PLATFORM=sim PVBACK_SIM_DIR=$run_dir
"$build/sim/domains/pvback-sim-ctl" --run-dir "$run_dir" create-domain 1 --name daemon-test
out=$(timeout 120 "$build/tools/pvback-ring-demo" 20000)
echo "$out"
grep -q "guest:   20000 requests verified" <<<"$out"
grep -q "backend: served 20000 requests" <<<"$out"
[ "$(xenstore-read /local/domain/1/name)" = daemon-test ]
[ "$(xenstore-read /local/domain/0/backend/demo/1/0/state)" = 6 ]
[ "$(xenstore-read /local/domain/1/device/demo/0/state)" = 6 ]

kill -TERM "$sim_pid"
wait "$sim_pid"   # exits 0 on SIGTERM
sim_pid=
grep -q "stopping on signal" "$run_dir/sim.log"
echo "daemon_round_trip: ok"
