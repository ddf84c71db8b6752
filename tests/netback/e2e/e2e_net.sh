#!/usr/bin/env bash
# Real programs across the rings: a simulated guest (pvback-netfront's TAP in its own network
# namespace) and a Dom0 namespace holding pvback-net's exit, with iperf3 TCP both ways and ab
# against nginx. The exit is the vif TAP (`tap`) or a DPDK net_tap port (`dpdk`).
# Only addresses inside the two namespaces this script creates are used.
# usage: e2e_net.sh BUILD_DIR tap|dpdk [SECONDS]
set -euo pipefail
BUILD=$1
mode=$2
seconds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../../scripts/lib/sim-host.sh
source "$here/../../../scripts/lib/sim-host.sh"

tag=$$
dom0=pvb-d0-$tag guest=pvb-g1-$tag
work=$(mktemp -d /tmp/pvback-net-e2e.XXXXXX)
front_pid=
cleanup() {
  [ -n "$front_pid" ] && kill "$front_pid" 2>/dev/null && wait "$front_pid" 2>/dev/null || true
  sim_host_cleanup
  ip netns pids "$dom0" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns pids "$guest" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$dom0" 2>/dev/null || true
  ip netns del "$guest" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "e2e_net ($mode): FAILED: $*" >&2
  cat "$SIM_RUN_DIR"/stats/*.json >&2 || true
  for f in "$SIM_RUN_DIR"/*.log "$work"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 30 "$f" >&2; }; done
  exit 1
}

ip netns add "$dom0"
ip netns add "$guest"
ip -n "$dom0" link set lo up
ip -n "$guest" link set lo up

sim_host_start "$work/run"
sim_ctl create-domain 1 --name guest >/dev/null
export SIM_DOM0_NETNS=$dom0
if [ "$mode" = tap ]; then
  exit_if=vif1.0
  sim_vif_start 1 0 --max-queues 2 || fail "backend did not start"
else
  exit_if=dtap1
  sim_vif_start 1 0 --max-queues 2 --exit dpdk --dpdk-devargs "net_tap0,iface=$exit_if" || fail "backend did not start"
fi
for _ in $(seq 100); do ip -n "$dom0" link show "$exit_if" >/dev/null 2>&1 && break; sleep 0.05; done
ip -n "$dom0" addr add 10.99.0.1/24 dev "$exit_if"
ip -n "$dom0" link set "$exit_if" up

PVBACK_DOMID=1 "$BUILD/netfront/pvback-netfront" guest --frontend-path /local/domain/1/device/vif/0 \
  --netns "$guest" --tap eth0 --address 10.99.0.2/24 --queues 2 2>"$work/netfront.log" &
front_pid=$!
for _ in $(seq 200); do ip netns exec "$guest" ping -c1 -W1 10.99.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
ip netns exec "$guest" ping -c 3 -i 0.2 10.99.0.1 >"$work/ping.log" 2>&1 || fail "guest cannot ping dom0"
echo "e2e_net ($mode): ping ok: $(grep -o '[0-9]* received' "$work/ping.log")"

# iperf3 TCP: guest -> dom0, then dom0 -> guest (-R).
ip netns exec "$dom0" iperf3 -s -1 -B 10.99.0.1 -p 5201 >"$work/iperf-server.log" 2>&1 &
sleep 0.5
ip netns exec "$guest" iperf3 -c 10.99.0.1 -p 5201 -t "$seconds" -J >"$work/iperf-tx.json" 2>"$work/iperf-tx.log" \
  || fail "iperf3 guest->dom0"
ip netns exec "$dom0" iperf3 -s -1 -B 10.99.0.1 -p 5202 >"$work/iperf-server2.log" 2>&1 &
sleep 0.5
ip netns exec "$guest" iperf3 -c 10.99.0.1 -p 5202 -t "$seconds" -R -J >"$work/iperf-rx.json" 2>"$work/iperf-rx.log" \
  || fail "iperf3 dom0->guest"
gbps() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' "$1"; }
tx=$(gbps "$work/iperf-tx.json")
rx=$(gbps "$work/iperf-rx.json")
python3 -c "import sys; sys.exit(0 if float('$tx') > 0 and float('$rx') > 0 else 1)" || fail "iperf3 moved no data"
echo "e2e_net ($mode): iperf3 guest->dom0 $tx Gbit/s, dom0->guest $rx Gbit/s"

# ab against nginx in the guest, from dom0.
mkdir -p "$work/www"
chmod 0755 "$work"  # nginx's workers (www-data) read the blob
head -c 100000 /dev/urandom >"$work/www/blob"
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $work/nginx-body;
  proxy_temp_path $work/nginx-proxy;
  fastcgi_temp_path $work/nginx-fastcgi;
  uwsgi_temp_path $work/nginx-uwsgi;
  scgi_temp_path $work/nginx-scgi;
  server { listen 10.99.0.2:8080; root $work/www; }
}
CONF
ip netns exec "$guest" nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" &
for _ in $(seq 100); do ip netns exec "$dom0" bash -c 'exec 3<>/dev/tcp/10.99.0.2/8080' 2>/dev/null && break; sleep 0.1; done
ip netns exec "$dom0" ab -q -n 2000 -c 8 http://10.99.0.2:8080/blob >"$work/ab.log" 2>&1 || fail "ab"
grep -q "^Complete requests: *2000" "$work/ab.log" || fail "ab did not complete 2000 requests"
grep -q "^Failed requests: *0" "$work/ab.log" || fail "ab saw failed requests"
! grep -q "^Non-2xx responses" "$work/ab.log" || fail "nginx did not serve the blob: $(grep '^Non-2xx' "$work/ab.log")"
echo "e2e_net ($mode): ab 2000 requests of 100 kB, 0 failed, $(grep '^Requests per second' "$work/ab.log" | awk '{print $4}') req/s"

# The backend saw it all, without a bad request.
stats=$SIM_RUN_DIR/stats/vif-1-0.json
python3 - "$stats" <<'PY' || fail "statistics"
import json, sys
s = json.load(open(sys.argv[1]))
t = s["total"]
assert s["state"] == "Connected", s["state"]
assert t["tx_packets"] > 10000 and t["rx_packets"] > 10000, t
print("e2e_net: backend statistics: tx_packets=%d rx_packets=%d" % (t["tx_packets"], t["rx_packets"]))
PY
# pvback-net killed -9 under an iperf3 TCP stream and a 100/s ping, three ways: its control part
# alone (the data plane serves on and the successor adopts it, with the TAP's queues), its data
# plane alone (the control part starts another, which resumes the rings from the vif's record), and
# both (the successor's new data plane resumes from the record). The persistent TAP keeps its
# address and the host's connection through it. The TCP connection survives each time; ping loses at
# most a handful; the counters go on (but for the last: both processes held them). The pause is the
# longest gap between two ping replies.
log=$SIM_RUN_DIR/pvback-net-1-0.log
stat_of() {  # stat_of EXPR: a value of the statistics file (python expression over s)
  python3 -c "import json,sys; s = json.load(open('$stats')); print($1)" 2>/dev/null || echo -1
}
data_plane_pid() { stat_of 's["data_plane"]["pid"]'; }
confined_check() {  # the data plane runs as the guest's uid, with no capability, under no_new_privs
  local pid=$1 status
  status=$(cat "/proc/$pid/status") || fail "no data plane $pid"
  grep -q "^Uid:[[:space:]]*1879048193[[:space:]]" <<<"$status" || fail "data plane $pid: $(grep ^Uid <<<"$status")"
  grep -q "^CapEff:[[:space:]]*0000000000000000" <<<"$status" || fail "data plane $pid: $(grep ^CapEff <<<"$status")"
  grep -q "^NoNewPrivs:[[:space:]]*1" <<<"$status" || fail "data plane $pid: no no_new_privs"
  [ "$(cat "/proc/$pid/comm")" = pvback-net-dp ] || fail "data plane $pid: comm $(cat "/proc/$pid/comm")"
}
kill_under_traffic() {  # kill_under_traffic control|data-plane|both PORT
  local kind=$1 port=$2 control dp before t0 bytes received pause
  ip netns exec "$dom0" iperf3 -s -1 -B 10.99.0.1 -p "$port" >"$work/iperf-server-$kind.log" 2>&1 &
  # (Not probed with a connection: that would be the one client the -1 server takes.)
  for _ in $(seq 50); do ip netns exec "$dom0" ss -ltn | grep -q ":$port " && break; sleep 0.1; done
  ip netns exec "$guest" iperf3 -c 10.99.0.1 -p "$port" -t 8 -J >"$work/iperf-$kind.json" 2>"$work/iperf-$kind.log" &
  local iperf_pid=$!
  ip netns exec "$guest" ping -D -i 0.01 -c 600 -W 1 10.99.0.1 >"$work/ping-$kind.log" 2>&1 &
  local ping_pid=$!
  sleep 2
  control=${SIM_PIDS[-1]}
  dp=$(data_plane_pid)
  [ "$dp" -gt 0 ] || fail "no data plane before the $kind kill"
  confined_check "$dp"
  before=$(stat_of 's["total"]["tx_packets"]')
  t0=$(date +%s%N)
  case $kind in
    control) kill -KILL "$control" ;;
    data-plane) kill -KILL "$dp" ;;
    both) kill -KILL "$control"; kill -KILL "$dp" ;;
  esac
  if [ "$kind" != data-plane ]; then
    wait "$control" 2>/dev/null || true
    sim_vif_backend 1 0 --max-queues 2 || fail "no successor backend"
  fi
  for _ in $(seq 200); do
    local now
    now=$(data_plane_pid)
    case $kind in
      control) [ "$now" = "$dp" ] && break ;;
      *) [ "$now" -gt 0 ] && [ "$now" != "$dp" ] && break ;;
    esac
    sleep 0.05
  done
  echo "e2e_net ($mode): $kind killed -9 (control part $control, data plane $dp); data plane $(data_plane_pid) in the statistics $(( ($(date +%s%N) - t0) / 1000000 )) ms later"
  wait "$iperf_pid" || fail "the TCP connection did not survive the $kind kill (iperf3 failed: $(tail -c 600 "$work/iperf-$kind.json"))"
  wait "$ping_pid" || true
  received=$(grep -o '[0-9]* received' "$work/ping-$kind.log" | awk '{print $1}')
  bytes=$(python3 -c "import json; e = json.load(open('$work/iperf-$kind.json'))['end']; print(e.get('sum_received', e.get('sum', {})).get('bytes', 0))")
  pause=$(python3 - "$work/ping-$kind.log" <<'PY'
import re, sys
t = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from", open(sys.argv[1]).read(), re.M)]
print(int(max((b - a for a, b in zip(t, t[1:])), default=0) * 1000))
PY
)
  echo "e2e_net ($mode): across the $kind kill: iperf3 moved $bytes bytes on one TCP connection, ping $received of 600 (100/s), longest gap between replies $pause ms"
  [ "${bytes:-0}" -gt 0 ] || fail "iperf3 moved nothing: $(tail -c 300 "$work/iperf-$kind.json")"
  [ "${received:-0}" -ge 590 ] || fail "ping lost $((600 - ${received:-0})) of 600 across the $kind kill"
  # (The statistics memory lives in the two processes: killing both starts the counters again.)
  [ "$kind" = both ] || [ "$(stat_of 's["total"]["tx_packets"]')" -gt "$before" ] ||
    fail "the counters did not go on across the $kind kill"
  confined_check "$(data_plane_pid)"
}
if [ "$mode" = tap ]; then
  kill_under_traffic control 5203
  grep -q "adopted the data plane" "$log" || fail "the successor did not adopt the data plane"
  kill_under_traffic data-plane 5204
  grep -q "starting another, which resumes the rings" "$log" || fail "the control part did not see its data plane die"
  kill_under_traffic both 5205
  grep -q "re-attached to the existing device" "$log" || fail "the successor did not re-attach the TAP"
fi
echo "e2e_net ($mode): ok"
