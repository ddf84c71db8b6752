#!/usr/bin/env bash
# The main demo on the built-in simulated hypervisor: starts pvback-sim, creates a simulated guest,
# shows its XenStore tree with the real xenstore-ls, and runs a ring round trip between a guest
# process and a backend process through simulated grants and event channels.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh release >/dev/null

run_dir=$(mktemp -d /tmp/pvback-demo.XXXXXX)
sim_pid=
cleanup() {
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  rm -rf "$run_dir"
}
trap cleanup EXIT

build/sim/pvback-sim --run-dir "$run_dir" 2>"$run_dir/sim.log" &
sim_pid=$!
for _ in $(seq 100); do [ -S "$run_dir/control" ] && [ -S "$run_dir/socket" ] && break; sleep 0.05; done
export XENSTORED_PATH=$run_dir/socket PVBACK_PLATFORM=sim PVBACK_SIM_DIR=$run_dir

echo "== pvback-sim running in $run_dir; creating simulated guest domain 1"
build/sim/domains/pvback-sim-ctl --run-dir "$run_dir" create-domain 1 --name demo-guest
echo
echo "== ring round trip: guest (domain 1) <-> backend (domain 0)"
build/tools/pvback-ring-demo "${DEMO_REQUESTS:-200000}"
echo
echo "== XenStore tree of the guest and of its backend (xenstore-ls -f)"
xenstore-ls -f /local/domain/1
xenstore-ls -f /local/domain/0/backend
echo
echo "== permissions of its device directory (xenstore-ls -p)"
xenstore-ls -p /local/domain/1/device
