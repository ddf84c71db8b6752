#!/usr/bin/env bash
# A real, throwaway Ceph cluster on this machine for the RBD engine's tests and benchmarks, from
# Debian's packages (ceph-mon, ceph-osd, ceph-common): one monitor on loopback, one BlueStore OSD
# on a file, one pool "rbd" of size 1, cephx off. Everything lives in DIR; nothing is installed
# or started system-wide.
#
#   ceph-cluster.sh start DIR [OSD_BYTES]   prints DIR/ceph.conf once the OSD is up
#   ceph-cluster.sh stop DIR                stops its daemons (DIR is left for the logs)
#
# Clients use `-c DIR/ceph.conf`, or in an RBD target ":conf=DIR/ceph.conf".
set -euo pipefail

cmd=${1:?start or stop}
dir=${2:?directory}

stop() {
  for pidfile in "$dir"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

if [ "$cmd" = stop ]; then
  stop
  exit 0
fi
[ "$cmd" = start ] || { echo "ceph-cluster.sh: start or stop, not $cmd" >&2; exit 2; }

for tool in ceph-mon ceph-osd ceph monmaptool rbd; do
  command -v "$tool" >/dev/null || { echo "ceph-cluster.sh: $tool not installed (scripts/install-deps.sh)" >&2; exit 1; }
done
osd_bytes=${3:-$((2 << 30))}
mkdir -p "$dir"/run "$dir"/log "$dir"/mon "$dir"/osd/osd.0
dir=$(cd "$dir" && pwd)
trap 'stop' ERR

# A port nobody listens on.
port=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 20000))
  if ! ss -Hltn "sport = :$p" | grep -q .; then port=$p; break; fi
done
[ -n "$port" ] || { echo "ceph-cluster.sh: no free port" >&2; exit 1; }

fsid=$(cat /proc/sys/kernel/random/uuid)
conf=$dir/ceph.conf
cat > "$conf" <<EOF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$port
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
osd_crush_chooseleaf_type = 0
# A test machine's disk may be nearly full: the monitor must not stop for that.
mon_data_avail_crit = 0
mon_data_avail_warn = 1
client_mount_timeout = 30
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
log_file = $dir/log/\$name.log
pid_file = $dir/run/\$name.pid
[mon]
mon_data = $dir/mon/\$name
[osd]
osd_data = $dir/osd/\$name
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = $osd_bytes
# Small memory: the machine runs tests next to it.
osd_memory_target = 939524096
bluestore_cache_autotune = false
bluestore_cache_size = 134217728
EOF

monmaptool --create --add a "127.0.0.1:$port" --fsid "$fsid" "$dir/monmap" >/dev/null
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap"
ceph-mon -c "$conf" -i a
ceph=(ceph -c "$conf" --connect-timeout 30)
uuid=$(cat /proc/sys/kernel/random/uuid)
osd_id=$("${ceph[@]}" osd new "$uuid")
ceph-osd -c "$conf" -i "$osd_id" --mkfs --osd-uuid "$uuid" >"$dir/log/osd-mkfs.log" 2>&1 ||
  { cat "$dir/log/osd-mkfs.log" >&2; exit 1; }
ceph-osd -c "$conf" -i "$osd_id" >>"$dir/log/osd-mkfs.log" 2>&1
for i in $(seq 120); do
  if "${ceph[@]}" osd stat 2>/dev/null | grep -q "1 up"; then break; fi
  [ "$i" -lt 120 ] || { echo "ceph-cluster.sh: the OSD did not come up in 60 s; see $dir/log" >&2; exit 1; }
  sleep 0.5
done
"${ceph[@]}" osd pool create rbd 8 8 >/dev/null 2>&1
"${ceph[@]}" osd pool set rbd size 1 --yes-i-really-mean-it >/dev/null 2>&1
rbd -c "$conf" pool init rbd
echo "$conf"
