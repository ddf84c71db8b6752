#!/bin/sh
# run-test-xenstore.sh SERVER_BINARY
# Runs Xen's own XenStore test program (tools/tests/xenstore/test-xenstore.c from Debian's xen
# source package, fetched into ${PVBACK_CACHE:-$HOME/.cache/pvback} by fetch-xen-source.sh and
# compiled here against libxen-dev) against our server, and fails unless every one of its
# tests passes. SERVER_BINARY serves XenStore on the run directory given as its argument.
set -eu

server=${1:?usage: run-test-xenstore.sh PVBACK_SIM_BINARY}
here=$(cd "$(dirname "$0")" && pwd)

test_dir=$("$here/fetch-xen-source.sh")
work=$(mktemp -d /tmp/pvback-xen-test.XXXXXX)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# test-xenstore.c includes <xen-tools/libs.h> only for ARRAY_SIZE, which libxen-dev does not ship.
mkdir -p "$work/include/xen-tools"
echo '#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))' > "$work/include/xen-tools/libs.h"
# shellcheck disable=SC2046
cc -O1 -o "$work/test-xenstore" "$test_dir/test-xenstore.c" -I"$work/include" \
  $(pkg-config --cflags --libs xenstore)

"$server" --run-dir "$work/run" &
server_pid=$!
tries=0
while [ ! -S "$work/run/socket" ]; do
  tries=$((tries + 1))
  if [ "$tries" -gt 200 ] || ! kill -0 "$server_pid" 2>/dev/null; then
    echo "run-test-xenstore: the server did not come up" >&2
    exit 1
  fi
  sleep 0.05
done

export XENSTORED_PATH="$work/run/socket"
expected=$("$work/test-xenstore" --list-tests | wc -l)
status=0
"$work/test-xenstore" --iterations 5 > "$work/output" 2>&1 || status=$?
cat "$work/output"

# Every test prints one line with its timing, or "failed"; the program stops at the first failure.
# "Exhaustive transaction retries" means transactions kept failing with EAGAIN: a server bug too.
passed=$(grep -c ' ns' "$work/output" || true)
if [ "$status" -ne 0 ] || grep -qE 'failed|Exhaustive' "$work/output" || [ "$passed" -ne "$expected" ]; then
  echo "run-test-xenstore: FAILED (exit $status, $passed of $expected tests passed)" >&2
  exit 1
fi
echo "run-test-xenstore: all $expected tests of test-xenstore passed"
