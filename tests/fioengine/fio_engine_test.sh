#!/usr/bin/env bash
# fio with the pvback engine (pvback-fio.so) on a vbd of the simulated hypervisor served by
# pvback-blk: write+verify over several block sizes (zero copy, and through the pool), a randrw mix,
# fsync, fdatasync and end_fsync as flushes, trim, four jobs on four queues, an ordinary job file run unchanged on a file
# and on the vbd, the data in the backing file both ways, and the thread=1 rule. Each check reads
# fio's exit status and JSON output.
#
#   fio_engine_test.sh BUILD_DIR ENGINE_SO [CASE...]     (cases: all by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "$1" && pwd)
so=$(realpath "$2")
shift 2
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(verify mix fsync trim numjobs jobfile data threads)
command -v fio >/dev/null || { echo "FAIL: fio is not installed"; exit 1; }
[ -f "$so" ] || { echo "FAIL: no engine at $so"; exit 1; }
. "$here/../../scripts/lib/sim-host.sh"

work=$(mktemp -d /tmp/pvback-fio-test.XXXXXX)
trap 'sim_host_cleanup; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
cd "$work"  # fio leaves its verify state files in the current directory
# An engine built with AddressSanitizer needs its runtime loaded first in fio (not instrumented);
# fio's own allocations are not ours to check for leaks.
fio_env=()
if asan=$(ldd "$so" | awk '/libasan/ {print $3}') && [ -n "$asan" ]; then
  fio_env=(LD_PRELOAD="$asan" ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0")
fi

sim_host_start "$work/sim"
sim_ctl create-domain 1 --name fio-guest --memory-mib 512 >/dev/null
disk=$work/disk.img
mib=64
truncate -s ${mib}M "$disk"
devid=51712
sim_vbd_start 1 $devid "$disk" --max-queues 4
export PVBACK_DOMID=1

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# run_fio NAME [fio options...]: fio with the engine on the vbd; JSON in $work/NAME.json, its
# stderr in $work/NAME.err. Returns fio's status.
run_fio() {
  local name=$1
  shift
  local rc=0
  env "${fio_env[@]}" PVBACK_LOG_LEVEL=info timeout 300 fio --name="$name" --ioengine=external:"$so" \
    --filename=$devid --output-format=json --output="$work/$name.json" "$@" 2>"$work/$name.err" || rc=$?
  if [ "$rc" != 0 ]; then
    echo "--- fio $name exited $rc; its output:"
    cat "$work/$name.json" "$work/$name.err" 2>/dev/null | grep -v '^<6>' | tail -30
  fi
  return $rc
}

# Flushes pvback-blk has served on the vbd (its statistics file, rewritten every second and at
# each state change).
backend_flushes() {
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["total"]["flushes"])' \
    "$SIM_RUN_DIR/stats/vbd-1-$devid.json"
}

# check NAME PYTHON-EXPRESSION...: each expression over `jobs` (fio's JSON jobs) and `kib(job,
# dir)` must hold.
check() {
  local name=$1
  shift
  python3 - "$work/$name.json" "$@" <<'PY' || fail "$name: fio's JSON output"
import json, sys
text = open(sys.argv[1]).read()
doc = json.loads(text[text.index("{"):])
jobs = doc["jobs"]
def kib(job, d): return job[d]["io_kbytes"]
ok = True
for expr in sys.argv[2:]:
    if not eval(expr):
        print(f"  does not hold: {expr}")
        ok = False
for j in jobs:
    if j["error"] != 0:
        print(f"  job {j['jobname']}: error {j['error']}")
        ok = False
if not ok:
    print("  " + json.dumps([{k: j[k] for k in ("jobname", "error")} | {d: j[d]["io_kbytes"] for d in ("read", "write", "trim")} for j in jobs]))
sys.exit(0 if ok else 1)
PY
}

for c in "${cases[@]}"; do
  echo "=== $c"
  case $c in
  verify)
    # Random writes of 4, 16 and 128 KiB, then fio reads everything back and checks each block's
    # crc32c: in fio's buffers granted to the backend (zero copy), then copied through the pool.
    if run_fio verify --rw=randwrite --bssplit=4k/40:16k/30:128k/30 --iodepth=16 --size=16M \
         --verify=crc32c --verify_fatal=1 --do_verify=1; then
      check verify 'kib(jobs[0], "write") == 16384' 'kib(jobs[0], "read") == 16384'
      grep -q "fio buffers granted to the backend: zero copy" "$work/verify.err" || fail "verify: not zero copy"
    else fail "verify: fio failed"; fi
    if run_fio verify_copy --rw=randwrite --bssplit=4k/50:64k/50 --iodepth=8 --size=8M --offset=16M \
         --verify=crc32c --verify_fatal=1 --pvback_zero_copy=0; then
      check verify_copy 'kib(jobs[0], "write") == 8192' 'kib(jobs[0], "read") == 8192'
      ! grep -q "zero copy" "$work/verify_copy.err" || fail "verify_copy: granted although pvback_zero_copy=0"
    else fail "verify_copy: fio failed"; fi
    ;;
  mix)
    # 70/30 random reads and writes, 32 in flight: every byte asked for, in about that mix.
    if run_fio mix --rw=randrw --rwmixread=70 --bs=4k --iodepth=32 --size=32M --io_size=16M; then
      check mix 'kib(jobs[0], "read") + kib(jobs[0], "write") == 16384' \
        '0.6 < kib(jobs[0], "read") / 16384 < 0.8'
    else fail "mix: fio failed"; fi
    ;;
  fsync)
    # fsync=8 and fdatasync=4: a blkif flush after every 8 (4) writes, once they are done (fio
    # issues none after the last ones).
    if run_fio fsync --rw=randwrite --bs=4k --iodepth=8 --size=4M --fsync=8; then
      check fsync 'kib(jobs[0], "write") == 4096' '127 <= jobs[0]["sync"]["total_ios"] <= 128'
    else fail "fsync: fio failed"; fi
    # fio counts no fdatasync in its JSON: the backend's statistics count the flushes.
    before=$(backend_flushes)
    if run_fio fdatasync --rw=write --bs=64k --iodepth=4 --size=4M --fdatasync=4; then
      check fdatasync 'kib(jobs[0], "write") == 4096'
      for _ in $(seq 30); do [ "$(backend_flushes)" != "$before" ] && break; sleep 0.1; done
      after=$(backend_flushes)
      [ $((after - before)) -ge 15 ] && [ $((after - before)) -le 16 ] ||
        fail "fdatasync: the backend saw $((after - before)) flushes, not 15 or 16"
    else fail "fdatasync: fio failed"; fi
    # end_fsync: one flush at the end, with the job's writes still in flight when fio asks for it.
    before=$(backend_flushes)
    if run_fio end_fsync --rw=randwrite --bs=4k --iodepth=32 --size=2M --end_fsync=1; then
      check end_fsync 'kib(jobs[0], "write") == 2048'
      for _ in $(seq 30); do [ "$(backend_flushes)" != "$before" ] && break; sleep 0.1; done
      [ "$(backend_flushes)" -gt "$before" ] || fail "end_fsync: the backend saw no flush"
    else fail "end_fsync: fio failed"; fi
    ;;
  trim)
    # Written, then trimmed as blkif discards: the backing file's range reads back as zeros.
    python3 -c "
import os
fd = os.open('$disk', os.O_WRONLY)
os.pwrite(fd, b'\xa5' * (8 << 20), 40 << 20)
os.fsync(fd)"
    if run_fio trim --rw=randtrim --bs=64k --iodepth=16 --offset=40M --size=8M; then
      check trim 'kib(jobs[0], "trim") == 8192' 'jobs[0]["trim"]["total_ios"] == 128'
      python3 -c "
f = open('$disk', 'rb'); f.seek(40 << 20)
assert f.read(8 << 20) == bytes(8 << 20), 'trimmed range is not zero'" || fail "trim: data left in the backing file"
    else fail "trim: fio failed"; fi
    ;;
  numjobs)
    # Four jobs (threads) on one vbd: one frontend, four queues, one job each; each verifies its
    # own 8 MiB. The backend's statistics show requests on every queue.
    if run_fio numjobs --thread=1 --numjobs=4 --rw=randwrite --bs=8k --iodepth=8 --size=8M \
         --offset_increment=8M --verify=crc32c --verify_fatal=1; then
      check numjobs 'len(jobs) == 4' 'all(kib(j, "write") == 8192 and kib(j, "read") == 8192 for j in jobs)'
      grep -q "attached: 4 queue(s)" "$work/numjobs.err" || fail "numjobs: the frontend did not negotiate 4 queues"
      for q in 0 1 2 3; do
        grep -q "job numjobs on queue $q" "$work/numjobs.err" || fail "numjobs: no job on queue $q"
      done
    else fail "numjobs: fio failed"; fi
    ;;
  jobfile)
    # One ordinary job file, unchanged, on a file (io_uring, O_DIRECT) and on the vbd.
    cat >"$work/job.fio" <<'JOB'
[global]
ioengine=${FIO_ENGINE}
filename=${FIO_TARGET}
direct=1
size=8M
offset=48M
iodepth=8

[write-then-verify]
rw=randwrite
bs=16k
verify=md5
verify_fatal=1
JOB
    truncate -s ${mib}M "$work/plain.img"
    for side in file vbd; do
      engine=io_uring target=$work/plain.img
      [ $side = vbd ] && engine=external:$so target=$devid
      rc=0
      env "${fio_env[@]}" FIO_ENGINE="$engine" FIO_TARGET="$target" timeout 300 fio --output-format=json \
        --output="$work/jobfile_$side.json" "$work/job.fio" 2>"$work/jobfile_$side.err" || rc=$?
      if [ $rc = 0 ]; then
        check "jobfile_$side" 'kib(jobs[0], "write") == 8192' 'kib(jobs[0], "read") == 8192'
      else
        cat "$work/jobfile_$side.err"
        fail "jobfile: fio exited $rc on the $side"
      fi
    done
    ;;
  data)
    # What fio writes through pvback is in the backing file, and what is in the file fio reads.
    if run_fio data_write --rw=write --bs=64k --iodepth=4 --offset=56M --size=1M --buffer_pattern=0x5aa5c33c; then
      check data_write 'kib(jobs[0], "write") == 1024'
      python3 -c "
f = open('$disk', 'rb'); f.seek(56 << 20)
assert f.read(1 << 20) == bytes.fromhex('5aa5c33c') * (1 << 18), 'backing file differs'" ||
        fail "data: fio's writes are not in the backing file"
    else fail "data_write: fio failed"; fi
    python3 -c "
import os
fd = os.open('$disk', os.O_WRONLY)
os.pwrite(fd, bytes.fromhex('0f1e2d3c') * (1 << 18), 60 << 20)
os.fsync(fd)"
    if run_fio data_read --rw=read --bs=16k --iodepth=4 --offset=60M --size=1M --verify=pattern \
         --verify_pattern=0x0f1e2d3c --verify_only=1 --verify_fatal=1; then
      check data_read 'kib(jobs[0], "read") == 1024'
    else fail "data_read: fio did not read the backing file's data"; fi
    ;;
  threads)
    # Two jobs (processes) on one vbd would be two frontends: refused, saying what to do.
    if run_fio threads --numjobs=2 --rw=read --bs=4k --size=1M >/dev/null 2>&1; then
      fail "threads: two job processes on one vbd were accepted"
    elif ! grep -q "set thread=1" "$work/threads.json" "$work/threads.err"; then
      cat "$work/threads.json" "$work/threads.err"
      fail "threads: the error does not say to set thread=1"
    fi
    ;;
  *) fail "unknown case $c" ;;
  esac
done

if [ "$failures" -ne 0 ]; then
  echo "--- pvback-blk's log"
  tail -20 "$SIM_RUN_DIR/pvback-blk-1-$devid.log"
  echo "fio_engine_test: $failures check(s) failed"
  exit 1
fi
echo "fio_engine_test: all checks passed (${cases[*]})"
