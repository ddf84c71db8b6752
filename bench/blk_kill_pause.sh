#!/usr/bin/env bash
# The pause a guest sees when pvback-blk is killed with SIGKILL mid-request: from the kill to the
# successor's answer to the request that was in flight (a flush overtaken by a read, VbdKillTest's
# repro), on the simulated hypervisor. Two cases: the whole backend killed and started again (as
# the supervisor or systemd would), and its data-plane process alone (its control part starts
# another). (A control part killed alone makes no pause: its data plane serves on.)
#
# Then the same under the host daemon (pvback-supervisor's default mode), from HostRandomKillTest's
# verifying workload (two queues kept 8 deep, 2 ms of storage latency injected): at each kill, the
# longest gap between consecutive completions of a queue from just before the SIGKILL until the
# device serves again (the host daemon has started a new data plane, or the successor host daemon
# has adopted the running one), and for comparison the longest gap away from the kills. Killing the
# host daemon should make no pause: the data plane serves on. (host daemon mid start: the next kill
# does not wait for the adoption, and a kill's span ends when its successor has been started: its
# adoption falls among "away from the kills".) Then an orderly restart of the host daemon
# (SIGTERM, as `systemctl restart` and a package upgrade do) with --on-stop leave (the default under
# systemd: the successor adopts the data plane left serving) and with --on-stop stop (the data plane
# stops, the successor's new one resumes the rings from the records): the same gaps.
#
#   bench/blk_kill_pause.sh [RUNS]    (default 10: runs of each of the first two cases, kills in each
#                                      of the others)
#   BENCH_NO_BUILD=1 uses build/ as it is (no scripts/install-deps.sh, no scripts/build.sh).
#
# The first two times include starting the new process, its XenStore handshake, mapping the ring
# and executing the flush again (with the page cache the test dirtied). Appends to bench/results.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  scripts/install-deps.sh
  scripts/build.sh release >/dev/null
fi
summary() {  # summary UNIT TEXT VALUE... : "TEXT, N UNITs: median, min, max" of the values in ms
  python3 - "$@" <<'PY'
import statistics, sys, datetime
unit, text = sys.argv[1], sys.argv[2]
p = sorted(float(x) for x in sys.argv[3:])
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
if not p:
    print(f"{now} {text}: no run reached the scenario"); sys.exit(0)
print(f"{now} {text}, {len(p)} {unit}: median {statistics.median(p):.1f} ms, min {p[0]:.1f}, max {p[-1]:.1f}")
PY
}
report=
for victim in whole_backend data_plane; do
  pauses=()
  for _ in $(seq "$runs"); do
    p=$(PVBACK_REPORT_PAUSE=1 build/tests/blkback/device/blkback_device_tests \
          --gtest_filter="Overtakers/VbdOvertakeTest.FlushOvertakenByReadsIsAnsweredOnceAfterSigkill/1_$victim" 2>/dev/null |
        sed -n 's/^pause: \([0-9.]*\) ms.*/\1/p')
    [ -n "$p" ] && pauses+=("$p")
  done
  report+=$(summary runs "pvback-blk kill -9 of the ${victim/_/ } -> successor's first answer" "${pauses[@]}")$'\n'
done
for victim in data_plane host_daemon host_daemon_mid_start host_daemon_sigterm_leave host_daemon_sigterm_stop; do
  out=$(PVBACK_REPORT_PAUSE=1 PVBACK_KILL_ROUNDS=$runs build/tests/supervisor/supervisor_host_tests \
          --gtest_filter="Victims/HostRandomKillTest.EveryRequestIsAnsweredExactlyOnceAcrossRandomSigkills/$victim" \
          2>/dev/null || true)
  mapfile -t pauses < <(sed -n 's/^pause: \([0-9.]*\) ms.*/\1/p' <<<"$out")
  elsewhere=$(sed -n 's/^elsewhere: \([0-9.]*\) ms.*/\1/p' <<<"$out")
  grep -q '^\[  PASSED  \] 1 test' <<<"$out" || elsewhere="${elsewhere:-?}; THE TEST FAILED"
  case $victim in
    host_daemon_sigterm_*) what="SIGTERM of the host daemon with --on-stop ${victim##*_} and its successor" ;;
    *) what="kill -9 of the ${victim//_/ }" ;;
  esac
  report+=$(summary kills "host daemon, $what -> longest gap between completions across it (away from them: at most ${elsewhere:-?} ms)" "${pauses[@]}")$'\n'
done
echo "$report"
mkdir -p bench/results
echo "$report" >> bench/results/blk_kill_pause.txt
