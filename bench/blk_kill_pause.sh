#!/usr/bin/env bash
# The pause a guest sees when pvback-blk is killed with SIGKILL mid-request and started again (as
# the supervisor or systemd would): from the kill to the successor's answer to the request that
# was in flight (a flush overtaken by a read, VbdKillTest's repro), on the simulated hypervisor.
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
pauses=()
for _ in $(seq "$runs"); do
  p=$(PVBACK_REPORT_PAUSE=1 build/tests/blkback/device/blkback_device_tests \
        --gtest_filter='Overtakers/VbdOvertakeTest.FlushOvertakenByReadsIsAnsweredOnceAfterSigkill/0' 2>/dev/null |
      sed -n 's/^pause: \([0-9.]*\) ms.*/\1/p')
  [ -n "$p" ] && pauses+=("$p")
done
report=$(python3 - "${pauses[@]}" <<'PY'
import statistics, sys, datetime
p = sorted(float(x) for x in sys.argv[1:])
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
if not p:
    print(f"{now} kill -9 pause: no run reached the scenario"); sys.exit(0)
print(f"{now} pvback-blk kill -9 -> successor's first answer, {len(p)} runs: "
      f"median {statistics.median(p):.1f} ms, min {p[0]:.1f}, max {p[-1]:.1f}")
PY
)
echo "$report"
mkdir -p bench/results
echo "$report" >> bench/results/blk_kill_pause.txt
