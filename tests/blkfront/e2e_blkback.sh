#!/usr/bin/env bash
# pvback-blkfront (guest process) against pvback-blk (backend process) on the pvback-sim daemon:
# negotiation variants, write-verify then verify in a later attach, every protocol, a short
# randread, discard and flush, a hot unplug of an attached frontend, and a verify mismatch exit code.
# usage: e2e_blkback.sh BUILD_DIR
set -euo pipefail
build=$1
run_dir=$(mktemp -d /tmp/pvback-blkfront-e2e.XXXXXX)
sim_pid= blk_pid= fe_pid=
cleanup() {
  for p in $fe_pid $blk_pid $sim_pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$run_dir"
}
trap cleanup EXIT

"$build/sim/pvback-sim" --run-dir "$run_dir/run" 2>"$run_dir/sim.log" &
sim_pid=$!
for _ in $(seq 200); do [ -S "$run_dir/run/control" ] && [ -S "$run_dir/run/socket" ] && break; sleep 0.05; done
ctl() { "$build/sim/domains/pvback-sim-ctl" --run-dir "$run_dir/run" "$@"; }
ctl create-domain 1 --name e2e
truncate -s 32M "$run_dir/disk.img"
ctl add-vbd 1 768 --params "$run_dir/disk.img" --discard-enable 1 >/dev/null
export PVBACK_PLATFORM=sim PVBACK_SIM_DIR=$run_dir/run
"$build/blkback/pvback-blk" --backend-path /local/domain/0/backend/vbd/1/768 2>"$run_dir/blk.log" &
blk_pid=$!

front() { timeout 120 "$build/blkfront/pvback-blkfront" --domid 1 --devid 768 "$@" 2>>"$run_dir/front.log"; }

out=$(front info)
echo "$out"
grep -q "^sectors: 65536 " <<<"$out"
grep -q "^discard: 1" <<<"$out"

front write-verify --seed 7 --bytes 16M --bs 512K
front verify --seed 7 --bytes 16M --queues 1 --ring-order 0 --indirect 0 --no-persistent
for p in native x86_32-abi x86_64-abi none; do
  front verify --seed 7 --bytes 16M --protocol "$p" --queues 2 --indirect 256 --bs 1M
done
front write-verify --seed 8 --offset 16M --bytes 8M --queues 3 --ring-order 2 --protocol x86_32-abi
set +e
front verify --seed 9 --bytes 1M >"$run_dir/wrong-seed.out"
rc=$?
set -e
[ "$rc" = 1 ] || { cat "$run_dir/wrong-seed.out" "$run_dir/front.log"; echo "verify with the wrong seed exited $rc, expected 1"; exit 1; }
front randread --seconds 1 | tee /dev/stderr | grep -Eq "^randread: iops=[0-9]+ mbps=[0-9.]+"
front discard --sector 0 --sectors 2048 | grep -q "discard: OK"
front flush | grep -q "flush: OK"

# Hot unplug while a frontend is attached and busy: it must fail its I/O and close, not hang.
"$build/blkfront/pvback-blkfront" --domid 1 --devid 768 randread --seconds 30 >"$run_dir/unplug.out" 2>&1 &
fe_pid=$!
sleep 1
ctl remove-vbd 1 768
set +e
wait "$fe_pid"
rc=$?
set -e
fe_pid=
cat "$run_dir/unplug.out" | grep -v '^<6>' || true
[ "$rc" = 1 ] || { echo "frontend exited $rc after hot unplug, expected 1"; exit 1; }
grep -q "device went away" "$run_dir/unplug.out"
echo "e2e_blkback: ok"
