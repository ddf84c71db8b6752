#!/usr/bin/env bash
# The pause a guest sees when pvback-blk is killed with SIGKILL mid-request: from the kill to the
# successor's answer to the request that was in flight (a flush overtaken by a read, VbdKillTest's
# repro), on the simulated hypervisor. Two cases: the whole backend killed and started again (as
# the supervisor or systemd would), and its data-plane process alone (its control part starts
# another). (A control part killed alone makes no pause: its data plane serves on.)
#
#   bench/blk_kill_pause.sh [RUNS]    (default 10)
#
# The time includes starting the new process, its XenStore handshake, mapping the ring and
# executing the flush again (with the page cache the test dirtied). Appends to bench/results.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
scripts/install-deps.sh
scripts/build.sh release >/dev/null
report=
for victim in whole_backend data_plane; do
pauses=()
for _ in $(seq "$runs"); do
  p=$(PVBACK_REPORT_PAUSE=1 build/tests/blkback/device/blkback_device_tests \
        --gtest_filter="Overtakers/VbdOvertakeTest.FlushOvertakenByReadsIsAnsweredOnceAfterSigkill/1_$victim" 2>/dev/null |
      sed -n 's/^pause: \([0-9.]*\) ms.*/\1/p')
  [ -n "$p" ] && pauses+=("$p")
done
report+=$(python3 - "$victim" "${pauses[@]}" <<'PY'
import statistics, sys, datetime
victim = sys.argv[1].replace("_", " ")
p = sorted(float(x) for x in sys.argv[2:])
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
if not p:
    print(f"{now} kill -9 pause ({victim}): no run reached the scenario"); sys.exit(0)
print(f"{now} pvback-blk kill -9 of the {victim} -> successor's first answer, {len(p)} runs: "
      f"median {statistics.median(p):.1f} ms, min {p[0]:.1f}, max {p[-1]:.1f}")
PY
)$'\n'
done
echo "$report"
mkdir -p bench/results
echo "$report" >> bench/results/blk_kill_pause.txt
