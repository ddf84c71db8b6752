#!/bin/sh
# scripts/hotplug/block-pvback against stand-ins for xenstore-read/xenstore-write: which targets it
# accepts (hotplug-status connected, exit 0) and which it refuses (hotplug-error with the reason,
# hotplug-status error, exit 1), for every form pvback-blk reads in params. Run under dash, as
# /bin/sh is on Debian.
set -u
script=$(cd "$(dirname "$0")/../.." && pwd)/scripts/hotplug/block-pvback
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
printf '#!/bin/sh\necho "$HP_PARAMS"\n' >"$work/bin/xenstore-read"
printf '#!/bin/sh\necho "$*" >>"$HP_LOG"\n' >"$work/bin/xenstore-write"
chmod +x "$work/bin/xenstore-read" "$work/bin/xenstore-write"
touch "$work/disk.qcow2" "$work/a:b.img"
failures=0
# expect TARGET RC WANTED-IN-LOG
expect() {
  : >"$work/log"
  HP_PARAMS=$1 HP_LOG=$work/log PATH="$work/bin:$PATH" XENBUS_PATH=backend/vbd/1/51712 \
    dash "$script" add 2>/dev/null
  rc=$?
  if [ "$rc" != "$2" ] || ! grep -q -- "$3" "$work/log"; then
    echo "FAIL: $1: exit $rc (want $2), xenstore writes: $(cat "$work/log")"
    failures=$((failures + 1))
  fi
}
expect "qcow2:$work/disk.qcow2" 0 "hotplug-status connected"
expect "vhd:$work/disk.qcow2" 0 "hotplug-status connected"
expect "$work/disk.qcow2" 0 "hotplug-status connected"
expect "$work/a:b.img" 0 "hotplug-status connected"          # a ':' after a '/' is a file name
expect "rbd:pool/image:conf=/etc/ceph/ceph.conf" 0 "hotplug-status connected"
expect "aio:rbd:pool/image" 0 "hotplug-status connected"
expect "nbd://127.0.0.1:10809/disk" 0 "hotplug-status connected"
expect "nbds+unix:///disk?socket=/run/x" 0 "hotplug-status connected"
expect "qcow2:$work/missing.qcow2" 1 "hotplug-error .*missing.qcow2 does not exist"
expect "tap2:$work/disk.qcow2" 1 "hotplug-error unknown image format 'tap2'"
expect "$work/nothing" 1 "hotplug-status error"
expect "" 1 "hotplug-error .*params is empty"
# remove has nothing to undo
XENBUS_PATH=x dash "$script" remove || { echo "FAIL: remove"; failures=$((failures + 1)); }
[ "$failures" = 0 ] && echo "block-pvback: all cases passed"
exit "$failures"
