#!/usr/bin/env bash
# iperf3 TCP throughput guest <-> Dom0 through the rings (pvback-netfront's simulated guest in one
# network namespace, pvback-net's exit in another), with the TAP exit and with a DPDK net_tap
# exit, plus ab against nginx in the guest. Runs tests/netback/e2e/e2e_net.sh with longer iperf3
# runs and appends its figures to bench/results/net_iperf.txt.
# usage: bench/net_iperf.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
BUILD=${BUILD:-build}
[ -x "$BUILD/netback/pvback-net" ] || scripts/build.sh release >/dev/null
results=bench/results/net_iperf.txt
mkdir -p bench/results
echo "== $(date -u +%F' '%T) bench/net_iperf.sh $seconds s, $(nproc) CPUs, commit $(git rev-parse --short HEAD)" | tee -a "$results"
for exit_kind in tap dpdk; do
  tests/netback/e2e/e2e_net.sh "$(realpath "$BUILD")" "$exit_kind" "$seconds" 2>/dev/null | grep -E "iperf3|ab " | tee -a "$results"
done
