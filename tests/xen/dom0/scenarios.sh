#!/bin/bash
# The real-Xen scenarios, run in dom0: scenarios.sh 1+2+3+4+5+6+7 (any subset, "+"-separated).
# Every verdict is a line "pvback-e2e: PASS|FAIL <name> (<detail>)"; the last line is
# "pvback-e2e: RESULT passed=N failed=M", which tests/xen/run.sh reads from the serial console.
set -u
. /opt/pvback/e2e/lib.sh
want() { case "+$selected+" in *"+$1+"*) return 0 ;; *) return 1 ;; esac; }
selected=$1

say "xl info: $(xl info | sed -n 's/^xen_version *: //p') / dom0 $(uname -r) / $(nproc) vcpus"
bridge_setup
# pvback serves every vbd and vif `xl create` writes: it must be watching before the first one.
supervisor_start || { verdict FAIL supervisor "pvback-supervisor did not start"; }

# --- one PV guest for scenarios 1-4 -------------------------------------------------------------
guest_config() {  # NAME TYPE IP MAC DISKS(comma-joined, quoted) [EXTRA...]
  local name=$1 type=$2 ip=$3 mac=$4 disks=$5; shift 5
  local kernel=$E2E/vmlinux
  [ "$type" = hvm ] && kernel=$E2E/vmlinuz
  local console=hvc0; [ "$type" = hvm ] && console=ttyS0
  cat > "$WORK/$name.cfg" <<EOF
name = "$name"
type = "$type"
kernel = "$kernel"
ramdisk = "$E2E/guest.cpio"
extra = "console=$console loglevel=4 pvback.ip=$ip/24 ${GUEST_EXTRA:-}"
memory = 768
vcpus = 2
on_poweroff = "destroy"
on_crash = "destroy"
disk = [ $disks ]
vif = [ "mac=$mac, bridge=xenbr0" ]
EOF
  local line; for line in "$@"; do echo "$line" >> "$WORK/$name.cfg"; done
}

if want 1 || want 2 || want 3 || want 4; then
  d1=$(make_disk "$WORK/pv-xvda.img" 256)
  d2=$(make_disk "$WORK/pv-xvdb.img" 16)
  d3=$(make_disk "$WORK/pv-xvdc.img" 8)
  # The read-only and cdrom disks carry a known pattern.
  dd if=/dev/urandom of="$d2" bs=1M count=16 2>/dev/null
  dd if=/dev/urandom of="$d3" bs=1M count=8 2>/dev/null
  ro_sum=$(dd if="$d2" bs=1M count=4 2>/dev/null | sha256sum | cut -c1-16)
  # Multi-page rings and more indirect segments than blkfront's default 32: both sides negotiate.
  GUEST_EXTRA="pvback.blkfront_params=max_ring_page_order=2:max_indirect_segments=64" \
  guest_config pv1 pv 10.99.0.2 00:16:3e:00:00:02 \
    "\"format=raw, vdev=xvda, access=rw, target=$d1\", \"format=raw, vdev=xvdb, access=ro, target=$d2\", \"format=raw, vdev=xvdc, access=ro, devtype=cdrom, target=$d3\""
  if step "create PV guest pv1 (xvda rw, xvdb ro, xvdc cdrom, eth0 on xenbr0)" guest_create "$WORK/pv1.cfg"; then
    pv1=$(domid_of pv1)
    [ -n "$pv1" ] || verdict FAIL "pv-guest-alive" "pv1 was ready, then gone from xl list"
    blk_stats=$(stats_file vbd "$pv1" 51712)
  else
    verdict FAIL "pv-guest-boot" "xl create pv1 or its agent"
    pv1=
  fi
fi

if want 1 && [ -n "${pv1:-}" ]; then
  ok=1
  step "guest: xvda connected" guest_do pv1 120 wait_block xvda 120 || ok=0
  flush0=$(stat_total "$blk_stats" flushes); discard0=$(stat_total "$blk_stats" discards)
  step "guest: mkfs.ext4, files with checksums, fsck, remount, verify, fstrim" guest_do pv1 300 disk_filesystem xvda || ok=0
  step "guest: fio randwrite with crc32c verification" guest_do pv1 300 disk_fio_verify xvda 32M || ok=0
  guest_out pv1 | sed -n 's/^longest write: //p' > "$WORK/longest-write-no-kill"
  flushes=$(stat_total "$blk_stats" flushes); discards=$(stat_total "$blk_stats" discards)
  say "pvback-blk $blk_stats: reads=$(stat_total "$blk_stats" reads) writes=$(stat_total "$blk_stats" writes)" \
      "flushes=$flushes discards=$discards sectors_discarded=$(stat_total "$blk_stats" sectors_discarded)"
  [ "${flushes:-0}" -gt "${flush0:-0}" ] || { say "no flush reached pvback-blk"; ok=0; }
  [ "${discards:-0}" -gt "${discard0:-0}" ] || { say "no discard reached pvback-blk"; ok=0; }
  # A PV dom0 must not pin mapped grants for O_DIRECT (see grant::Platform::direct_io_into_mappings).
  if ! grep -q -- "--direct" <<<"$(backend_args)"; then
    grep -q '"direct": false' "$blk_stats" || { say "pvback-blk used O_DIRECT into mapped grants on a PV dom0"; ok=0; }
  fi
  [ $ok = 1 ] && verdict PASS "1-pv-disk" "ext4+fsck+checksums, fio verify, flushes=$flushes discards=$discards" \
              || verdict FAIL "1-pv-disk"
fi

if want 2 && [ -n "${pv1:-}" ]; then
  ok=1
  step "guest: xvdb and xvdc connected" guest_do pv1 60 'wait_block xvdb 60 && wait_block xvdc 60' || ok=0
  step "guest: negotiated features of xvda" guest_do pv1 60 disk_features xvda || ok=0
  out=$(guest_out pv1)
  be=/local/domain/0/backend/vbd/$pv1/51712
  be_segs=$(xenstore-read $be/feature-max-indirect-segments)
  want_segs=$(( be_segs < 64 ? be_segs : 64 ))
  segs=$(echo "$out" | sed -n 's/^queue\/max_segments=//p')
  queues=$(echo "$out" | sed -n 's/^hw_queues=//p')
  be_queues=$(xenstore-read /local/domain/$pv1/device/vbd/51712/multi-queue-num-queues 2>/dev/null || echo 1)
  order=$(xenstore-read /local/domain/$pv1/device/vbd/51712/ring-page-order 2>/dev/null || echo 0)
  say "backend offers: persistent=$(xenstore-read $be/feature-persistent) max-indirect-segments=$be_segs" \
      "max-ring-page-order=$(xenstore-read $be/max-ring-page-order) multi-queue-max-queues=$(xenstore-read $be/multi-queue-max-queues)"
  say "pvback-blk negotiated: $(tr -d '\n' < "$blk_stats" | sed -n 's/.*"negotiated": \({[^}]*}\).*/\1/p')"
  echo "$out" | grep -q "persistent grants: enabled" || { say "guest does not report persistent grants"; ok=0; }
  echo "$out" | grep -q "indirect descriptors: enabled" || { say "guest does not report indirect descriptors"; ok=0; }
  [ "$segs" = "$want_segs" ] || { say "max_segments $segs, expected $want_segs"; ok=0; }
  [ "$queues" = "$be_queues" ] && [ "$queues" -ge 2 ] || { say "hw queues $queues, negotiated $be_queues"; ok=0; }
  [ "$order" = 2 ] || { say "ring-page-order $order, expected 2"; ok=0; }
  tr -d '\n' < "$blk_stats" | grep -q '"ring_page_order": 2' || { say "pvback-blk did not map 4 ring pages"; ok=0; }
  step "guest: xvdb (mode r) refuses writes" guest_do pv1 60 disk_read_only xvdb || ok=0
  guest_out pv1 | grep -q "contents unchanged: $ro_sum" || { say "xvdb content differs from the image ($ro_sum)"; ok=0; }
  step "guest: xvdc is a cdrom" guest_do pv1 60 disk_cdrom xvdc || ok=0
  guest_out pv1 | grep -q "device-type=cdrom" && guest_out pv1 | grep -q "ro=1" || { say "xvdc not a read-only cdrom"; ok=0; }
  [ $ok = 1 ] && verdict PASS "2-negotiated-features" "persistent, indirect max_segments=$segs, queues=$queues, ring pages=4, ro, cdrom" \
              || verdict FAIL "2-negotiated-features"
fi

if want 4 && [ -n "${pv1:-}" ]; then
  ok=1
  net_stats=$(stats_file vif "$pv1" 0)
  step "guest: eth0 up" guest_do pv1 60 net_wait || ok=0
  step "guest: start httpd and iperf3 server" guest_do pv1 30 net_servers || ok=0
  step "dom0: ping the guest" busybox ping -c 5 -W 3 10.99.0.2 || ok=0
  step "dom0 -> guest: iperf3" timeout 60 iperf3 -c 10.99.0.2 -t 5 -f m || ok=0
  step "guest -> dom0: iperf3 -R" timeout 60 iperf3 -c 10.99.0.2 -t 5 -f m -R || ok=0
  step "dom0: ab 500 x 100 kB from the guest's httpd" sh -c 'ab -n 500 -c 4 http://10.99.0.2/blob > /tmp/ab 2>&1; rc=$?;
    grep -E "Complete requests|Failed requests|Requests per second|Total transferred" /tmp/ab; exit $rc' || ok=0
  grep -q "Failed requests: *0" /tmp/ab && grep -q "Complete requests: *500" /tmp/ab || { say "ab failures"; ok=0; }
  say "pvback-net $net_stats: tx_packets=$(stat_total "$net_stats" tx_packets) rx_packets=$(stat_total "$net_stats" rx_packets)"
  # The vif's control part killed -9 under an iperf3 stream and a ping (the host daemon, which
  # serves a TAP vif in its own process; a pvback-net of its own in --process-per-device): its data
  # plane serves on, the successor adopts it with the TAP queues it holds (vif1.0, persistent,
  # still in xenbr0). The guest's netfront stays Connected; the TCP connection survives.
  timeout 90 iperf3 -c 10.99.0.2 -t 14 -f m > /tmp/ipk 2>&1 &
  ipk=$!
  busybox ping -c 60 -i 0.25 -W 1 10.99.0.2 > /tmp/pingk 2>&1 &
  pingk=$!
  sleep 4
  old=$(control_pid "vif/$pv1/0")
  say "kill -9 the control part of vif $pv1/0 ($(cat "/proc/$old/comm" 2>/dev/null), pid $old) under iperf3 and ping"
  kill -KILL "$old"
  t0=$(date +%s%N)
  control_restarted_after "$old"
  new_control_for "vif/$pv1/0" "$old"
  [ -n "$new" ] && say "control part restarted (pid $new) $(( ($(date +%s%N) - t0) / 1000000 )) ms after the kill" \
                || { say "no new control part"; ok=0; }
  wait "$ipk" && grep -q receiver /tmp/ipk || { say "the TCP stream did not survive the kill"; ok=0; }
  tail -3 /tmp/ipk | sed 's/^/   /'
  wait "$pingk" || true
  received=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/pingk)
  say "ping across the kill: ${received:-0} of 60 (4/s), round trip min/avg/max $(sed -n 's/.*min\/avg\/max = //p' /tmp/pingk)"
  # Traffic resumed: replies after the kill (more than the 16 sent before it), and one more now.
  [ "${received:-0}" -ge 24 ] || { say "ping lost more than 36 of 60 across the kill"; ok=0; }
  busybox ping -c 2 -W 3 10.99.0.2 >/dev/null || { say "no ping after the kill"; ok=0; }
  # The successor takes the host's devices one after another (under emulation, seconds each).
  adopted_vif() {
    grep -q "vif $pv1/0: adopted the data plane" "$LOGS/supervisor.log" &&
      grep -q "tap vif$pv1.0: taken over from the data plane serving it" "$LOGS/supervisor.log"
  }
  for _ in $(seq 1 300); do adopted_vif && break; sleep 0.1; done
  adopted_vif ||
    { say "the new control part did not adopt the data plane serving vif$pv1.0"; ok=0; }
  # The vif's data plane killed -9 under an iperf3 stream and a ping every 100 ms: its control
  # part starts another, which resumes the rings from the record (TX requests taken and not
  # answered, RX buffers posted and not filled) with the same TAP queues. The TCP connection
  # survives. Pings sent meanwhile wait in the rings and the TAP's queue and are answered late, not
  # lost: the longest round trip is the guest's outage.
  timeout 90 iperf3 -c 10.99.0.2 -t 14 -f m > /tmp/ipd 2>&1 &
  ipd=$!
  busybox ping -c 150 -i 0.1 -W 1 10.99.0.2 > /tmp/pingd 2>&1 &
  pingd=$!
  sleep 4
  dp=$(data_plane_pid "$pv1" 0 vif)
  not_resumed() { grep -cE "vif $pv1/0.*not resuming from the record" "$LOGS/supervisor.log"; }
  nr0=$(not_resumed)
  say "kill -9 the data plane of vif $pv1/0 (pid $dp) under iperf3 and ping"
  [ -n "$dp" ] && kill -KILL "$dp" || { say "no data plane found for vif $pv1/0"; ok=0; }
  t0=$(date +%s%N)
  nd=
  for _ in $(seq 1 300); do
    nd=$(data_plane_pid "$pv1" 0 vif); [ -n "$nd" ] && [ "$nd" != "$dp" ] && break; nd=; sleep 0.1
  done
  [ -n "$nd" ] && say "data plane replaced (pid $nd) $(( ($(date +%s%N) - t0) / 1000000 )) ms after the kill (as its statistics, written every second, name it)" \
               || { say "the vif's data plane was not replaced"; ok=0; }
  wait "$ipd" && grep -q receiver /tmp/ipd || { say "the TCP stream did not survive the data plane's kill"; ok=0; }
  tail -3 /tmp/ipd | sed 's/^/   /'
  grep -E "retransmit|Retr" /tmp/ipd | head -1 | sed 's/^/   /'
  wait "$pingd" || true
  received=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/pingd)
  say "ping across the data plane's kill: ${received:-0} of 150 answered (one every 100 ms), round trip min/avg/max $(sed -n 's/.*min\/avg\/max = //p' /tmp/pingd) (the max: the outage)"
  [ "${received:-0}" -ge 100 ] || { say "ping lost more than 50 of 150 across the data plane's kill"; ok=0; }
  [ "$(not_resumed)" = "$nr0" ] || { say "the replacement data plane did not resume the vif's rings from the record"; ok=0; }
  busybox ping -c 2 -W 3 10.99.0.2 >/dev/null || { say "no ping after the data plane's kill"; ok=0; }
  [ $ok = 1 ] && verdict PASS "4-pv-network" "ping, iperf3 both ways, ab 500/500, the vif's control part and then its data plane killed -9 under iperf3 (TCP survives both)" \
              || verdict FAIL "4-pv-network"
fi

if want 3 && [ -n "${pv1:-}" ]; then
  ok=1
  step "dom0: xl block-detach pv1 xvdb" timeout 60 xl block-detach pv1 xvdb || ok=0
  step "guest: xvdb gone" guest_do pv1 60 disk_gone xvdb || ok=0
  sleep 1
  pgrep -f "backend/vbd/$pv1/51728" >/dev/null && { say "pvback-blk for xvdb still running"; ok=0; }
  xenstore-exists /local/domain/0/backend/vbd/$pv1/51728 && { say "backend node of xvdb still there"; ok=0; }
  step "dom0: xl block-attach pv1 xvdb again" timeout 60 xl block-attach pv1 "format=raw, vdev=xvdb, access=ro, target=$d2" || ok=0
  step "guest: xvdb back" guest_do pv1 60 wait_block xvdb 60 || ok=0
  step "guest: xvdb contents after re-attach" guest_do pv1 60 disk_checksum xvdb 4 || ok=0
  [ "$(guest_out pv1 | cut -c1-16)" = "$ro_sum" ] || { say "xvdb checksum differs after re-attach"; ok=0; }

  # Restart xvda's control part (SIGTERM: the host daemon, or its own pvback-blk) under a
  # connected, idle guest: its successor picks up the rings where the old one left them; the guest
  # notices nothing.
  old=$(control_pid "vbd/$pv1/51712")
  say "stopping the control part of xvda ($(cat "/proc/$old/comm" 2>/dev/null), pid $old)"
  kill -TERM $old
  control_restarted_after "$old"
  new_control_for "vbd/$pv1/51712" "$old"
  [ -n "$new" ] && say "xvda's control part restarted (pid $new)" || { say "no new control part for xvda"; ok=0; }
  sleep 1
  step "guest: write 8 MiB to xvda through the restarted backend" guest_do pv1 120 disk_write_pattern xvda 8 || ok=0
  written=$(guest_out pv1 | tail -1)
  step "guest: read it back" guest_do pv1 120 disk_checksum xvda 8 || ok=0
  [ -n "$written" ] && [ "$(guest_out pv1 | tail -1)" = "$written" ] || { say "data read back differs"; ok=0; }

  # SIGKILL under a busy guest, three times in one fio verification of xvda: the whole backend
  # (data plane, then control part: the supervisor starts a new one, whose data plane resumes the
  # rings from the recovery record), the data plane alone (its control part starts another, which
  # resumes them), the control part alone (the data plane serves on; the control part's successor
  # adopts it). The guest sees pauses: fio's verification is clean, its kernel logs no block error.
  w0=$(stat_total "$(stats_file vbd "$pv1" 51712)" writes)
  wait_writes() {  # N: until N more writes than at the last call
    for _ in $(seq 1 120); do
      [ "$(( $(stat_total "$(stats_file vbd "$pv1" 51712)" writes) - ${w0:-0} ))" -ge "$1" ] 2>/dev/null && break
      sleep 0.25
    done
    w0=$(stat_total "$(stats_file vbd "$pv1" 51712)" writes)
  }
  new_control() {  # OLD_PID: restarts the host daemon if it was that, waits for another control part
    control_restarted_after "$1"
    new_control_for "vbd/$pv1/51712" "$1"
  }
  step "guest: fio verify on xvda, in the background" guest_do pv1 30 disk_fio_verify_start xvda 32M || ok=0
  # Killed once fio's writes are flowing (fio starts slowly under emulation).
  wait_writes 300
  old=$(control_pid "vbd/$pv1/51712")
  dp=$(data_plane_pid "$pv1" 51712)
  say "kill -9 xvda's data plane (pid $dp) and control part ($(cat "/proc/$old/comm" 2>/dev/null), pid $old), under fio"
  [ -n "$dp" ] && kill -KILL "$dp"
  kill -KILL "$old"
  t0=$(date +%s%N)
  new_control "$old"
  [ -n "$new" ] && say "xvda's control part restarted (pid $new) $(( ($(date +%s%N) - t0) / 1000000 )) ms after the kill" \
                || { say "no new control part for xvda"; ok=0; }
  # Until the successor's own data plane serves (its statistics name it; they start again at 0).
  new_data_plane() {  # OLD_PID
    for _ in $(seq 1 600); do
      d=$(data_plane_pid "$pv1" 51712); [ -n "$d" ] && [ "$d" != "$1" ] && break; sleep 0.1
    done
    w0=$(stat_total "$(stats_file vbd "$pv1" 51712)" writes)
  }
  new_data_plane "$dp"
  # Each queue logs it under its own name ("vbd 1/51712 q0: resuming ...").
  resumed() { grep -cE "vbd $pv1/51712( q[0-9]+)?: resuming from the recovery record" "$LOGS/supervisor.log"; }
  r0=$(resumed)
  [ "$r0" -gt 0 ] && say "the successor's data plane (pid $(data_plane_pid "$pv1" 51712)) resumed the rings" ||
    { say "the successor's data plane did not resume from the recovery record"; ok=0; }
  wait_writes 300
  dp=$(data_plane_pid "$pv1" 51712)
  control=$(control_pid "vbd/$pv1/51712")
  say "kill -9 the data plane alone (pid $dp) under fio"
  [ -n "$dp" ] && kill -KILL "$dp" || { say "no data plane found"; ok=0; }
  new_data_plane "$dp"
  [ "$(data_plane_pid "$pv1" 51712)" != "$dp" ] && [ "$(control_pid "vbd/$pv1/51712")" = "$control" ] \
    && say "data plane replaced (pid $(data_plane_pid "$pv1" 51712)) by the same control part (pid $control)" \
    || { say "the data plane was not replaced by its control part"; ok=0; }
  [ "$(resumed)" -gt "$r0" ] || { say "the replacement data plane did not resume from the recovery record"; ok=0; }
  wait_writes 300
  dp=$(data_plane_pid "$pv1" 51712)
  old=$(control_pid "vbd/$pv1/51712")
  say "kill -9 the control part alone ($(cat "/proc/$old/comm" 2>/dev/null), pid $old) under fio; its data plane (pid $dp) serves on"
  kill -KILL "$old"
  new_control "$old"
  for _ in $(seq 1 300); do
    grep -q "vbd $pv1/51712: adopted the data plane (pid $dp)" "$LOGS/supervisor.log" && break; sleep 0.1
  done
  grep -q "vbd $pv1/51712: adopted the data plane (pid $dp)" "$LOGS/supervisor.log" \
    && say "the new control part (pid $new) adopted the data plane (pid $dp)" \
    || { say "the data plane was not adopted"; ok=0; }
  step "guest: fio verify across the kills" guest_do pv1 600 disk_fio_verify_wait || ok=0
  # The pause a guest sees: no request waited longer than fio's longest write, which covers the
  # kill, the successor's start and its first answer (scenario 1's fio, without kills, beside it).
  say "the longest a write waited across the three kills: $(guest_out pv1 | sed -n 's/^longest write: //p')" \
      "(without kills, scenario 1: $(cat "$WORK/longest-write-no-kill" 2>/dev/null || echo not run))"
  grep -E "vbd $pv1/51712( q[0-9]+)?: (resuming from the recovery record|not resuming)" "$LOGS/supervisor.log" |
    tail -4 | sed 's/^/   /'
  # The data plane's confinement, as /proc shows it.
  dp=$(data_plane_pid "$pv1" 51712)
  say "data plane $dp: $(grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' "/proc/$dp/status" 2>/dev/null | tr -s '\t ' ' ' | tr '\n' ';')"
  grep -qE "^Uid:\s+$((1879048192 + pv1))\s" "/proc/$dp/status" && grep -qE '^CapEff:\s+0+$' "/proc/$dp/status" &&
    grep -qE '^Seccomp:\s+2$' "/proc/$dp/status" && grep -qE '^NoNewPrivs:\s+1$' "/proc/$dp/status" ||
    { say "the data plane is not confined"; ok=0; }
  # Its control group (cgroup v2): beside the supervisor's leaf in the supervisor's unit, limited.
  cg=$(sed -n 's/^0:://p' "/proc/$dp/cgroup" 2>/dev/null)
  say "data plane $dp: cgroup $cg, memory.max $(cat "/sys/fs/cgroup$cg/memory.max" 2>/dev/null), pids.max $(cat "/sys/fs/cgroup$cg/pids.max" 2>/dev/null), memory.current $(cat "/sys/fs/cgroup$cg/memory.current" 2>/dev/null); supervisor: $(sed -n 's/^0:://p' "/proc/$(cat "$WORK/supervisor.pid")/cgroup" 2>/dev/null)"
  [ "$cg" = "/pvback.service/vbd-$pv1-51712" ] && grep -qE '^[0-9]+$' "/sys/fs/cgroup$cg/memory.max" &&
    grep -qE '^[0-9]+$' "/sys/fs/cgroup$cg/pids.max" || { say "the data plane is not in a limited control group of its own"; ok=0; }

  # Guest shutdown: each frontend goes Closing and waits for its backend to reach Closed.
  step "dom0: xl shutdown -w pv1" timeout 90 xl shutdown -w pv1 || ok=0
  sleep 2
  pgrep -f "backend/v(bd|if)/$pv1/" && { say "pvback processes of pv1 still running"; ok=0; }
  [ -d "/sys/fs/cgroup/pvback.service/vbd-$pv1-51712" ] && { say "the data plane's control group outlived the device"; ok=0; }
  grep -E "vbd $pv1/51712:|vif $pv1/0:" "$LOGS/supervisor.log" | grep -iE "closing|closed" | tail -4 | sed 's/^/   /'
  grep -E "vbd $pv1/51712: .*-> Closed" "$LOGS/supervisor.log" -q || { say "pvback-blk did not report Closed"; ok=0; }
  if grep -i "timeout closing" "/var/log/xen/console/guest-pv1.log"; then say "the guest timed out closing a device"; ok=0; fi
  [ $ok = 1 ] && verdict PASS "3-unplug-restart-shutdown" "block-detach/attach, pvback-blk restarted under the idle guest; under fio killed -9 whole, its data plane alone and its control part alone; data plane confined, in a limited cgroup of its own; shutdown Closing->Closed" \
              || verdict FAIL "3-unplug-restart-shutdown"
fi
[ -n "${pv1:-}" ] && guest_destroy pv1

# --- scenario 5: PVH and HVM guests (the HVM one through qemu-system-xen, PV drivers unplugging
# the emulated disk and NIC, as Windows PV drivers do) ------------------------------------------
# A whole disk-and-network pass on a guest that is already up: $1 guest, $2 its address.
disk_and_net_pass() {
  local g=$1 ip=$2 ok=1
  step "guest $g: xvda connected" guest_do "$g" 120 wait_block xvda 120 || ok=0
  step "guest $g: ext4, checksums, fsck, remount, fstrim" guest_do "$g" 300 disk_filesystem xvda || ok=0
  step "guest $g: fio verify" guest_do "$g" 300 disk_fio_verify xvda 16M || ok=0
  step "guest $g: eth0 up" guest_do "$g" 60 net_wait || ok=0
  step "guest $g: servers" guest_do "$g" 30 net_servers || ok=0
  step "dom0: ping $g" busybox ping -c 3 -W 3 "$ip" || ok=0
  step "dom0 -> $g: iperf3" timeout 60 iperf3 -c "$ip" -t 3 -f m || ok=0
  step "$g -> dom0: iperf3 -R" timeout 60 iperf3 -c "$ip" -t 3 -f m -R || ok=0
  step "dom0: ab 200 x 100 kB from $g" sh -c "ab -n 200 -c 4 http://$ip/blob > /tmp/ab 2>&1; rc=\$?;
    grep -E 'Complete requests|Failed requests'  /tmp/ab; exit \$rc" || ok=0
  grep -q "Failed requests: *0" /tmp/ab && grep -q "Complete requests: *200" /tmp/ab || ok=0
  [ $ok = 1 ]
}
s5_guests=$(sed -n 's/.*pvback\.s5_guests=\([^ ]*\).*/\1/p' /proc/cmdline)
s5_wants() { case "+${s5_guests:-pvh+hvm}+" in *"+$1+"*) return 0 ;; *) return 1 ;; esac; }
if want 5 && s5_wants pvh; then
  d=$(make_disk "$WORK/pvh-xvda.img" 128)
  guest_config pvh1 pvh 10.99.0.3 00:16:3e:00:00:03 "\"format=raw, vdev=xvda, access=rw, target=$d\"" \
    'cpuid = "host,rdtscp=0"'
  if step "create PVH guest pvh1" guest_create "$WORK/pvh1.cfg" && disk_and_net_pass pvh1 10.99.0.3; then
    verdict PASS "5-pvh" "disk (ext4, fsck, fio verify) and network (ping, iperf3, ab) on a PVH guest"
  else
    verdict FAIL "5-pvh"
  fi
  guest_destroy pvh1
fi
if want 5 && s5_wants hvm; then
  d=$(make_disk "$WORK/hvm-xvda.img" 128)
  # The emulated serial port, the HVM kernel's console from its first line, goes to a file that
  # guest_console reads.
  guest_config hvm1 hvm 10.99.0.4 00:16:3e:00:00:04 "\"format=raw, vdev=xvda, access=rw, target=$d\"" \
    'cpuid = "host,rdtscp=0"' "serial = \"file:$LOGS/serial-hvm1.log\"" 'vnc = 0' 'sdl = 0' 'vga = "none"'
  if GUEST_BOOT_TIMEOUT=420 step "create HVM guest hvm1 (qemu-system-xen device model)" guest_create "$WORK/hvm1.cfg" &&
     step "guest hvm1: PV drivers took over from the emulated devices" guest_do hvm1 30 \
       'dmesg | grep -iE "xen.*unplug|blkfront|xen_netfront|Xen HVM" | head -6' &&
     disk_and_net_pass hvm1 10.99.0.4; then
    verdict PASS "5-hvm" "disk and network through the PV drivers of an HVM guest"
  else
    verdict FAIL "5-hvm"
  fi
  guest_destroy hvm1
fi

# --- scenario 6: the same workload on the kernel's backends and on pvback, in this run ----------
bench_guest() {  # NAME IP MAC LOOPDEV RESULT-PREFIX
  local g=$1 ip=$2 mac=$3 dev=$4 tag=$5 ok=1
  guest_config "$g" pv "$ip" "$mac" "\"format=raw, vdev=xvda, access=rw, target=$dev\""
  step "create $g ($tag backends)" guest_create "$WORK/$g.cfg" || return 1
  step "guest $g: xvda and eth0" guest_do "$g" 120 'wait_block xvda 120 && net_wait && net_servers' || ok=0
  step "guest $g: fio randread 4k qd16 and read 1M qd4, 8 s each" guest_do "$g" 120 disk_bench xvda 8 || ok=0
  local fio_line; fio_line=$(guest_out "$g" | grep randread_iops)
  step "dom0 -> $g: iperf3 8 s" sh -c "timeout 60 iperf3 -c $ip -t 8 -f m > /tmp/ip1; rc=\$?; tail -4 /tmp/ip1; exit \$rc" || ok=0
  step "$g -> dom0: iperf3 -R 8 s" sh -c "timeout 60 iperf3 -c $ip -t 8 -f m -R > /tmp/ip2; rc=\$?; tail -4 /tmp/ip2; exit \$rc" || ok=0
  local rx tx
  rx=$(sed -n 's/.* \([0-9.]*\) Mbits\/sec.*receiver/\1/p' /tmp/ip1)
  tx=$(sed -n 's/.* \([0-9.]*\) Mbits\/sec.*receiver/\1/p' /tmp/ip2)
  echo "$fio_line to_guest_Mbps=$rx from_guest_Mbps=$tx" > "$WORK/bench-$tag"
  say "$tag: $(cat "$WORK/bench-$tag")"
  guest_destroy "$g"
  [ $ok = 1 ]
}
bench_value() { sed -n "s/.*$2=\([0-9.]*\).*/\1/p" "$WORK/bench-$1"; }
# Says each metric of two bench results side by side; sets $ratios (" metric=A/B ...").
bench_ratios() {  # A B METRIC...
  local a=$1 b=$2 m p k r; shift 2
  ratios=
  for m; do
    p=$(bench_value "$a" "$m"); k=$(bench_value "$b" "$m")
    r=$(awk -v p="$p" -v k="$k" 'BEGIN { if (k > 0) printf "%.2f", p / k; else print "n/a" }')
    say "side by side: $m $a=$p $b=$k ratio=$r"
    ratios="$ratios $m=$r"
  done
}
if want 6; then
  ok=1
  bdev=$(make_disk "$WORK/bench.img" 256)
  dd if=/dev/zero of="$bdev" bs=1M count=256 oflag=direct 2>/dev/null
  bench_guest benchp 10.99.0.5 00:16:3e:00:00:05 "$bdev" pvback || ok=0
  # The kernel's turn: the supervisor stops, the blacklisted modules are loaded by name.
  supervisor_stop
  if step "dom0: modprobe xen-blkback xen-netback" modprobe -a xen-blkback xen-netback; then
    bench_guest benchk 10.99.0.6 00:16:3e:00:00:06 "$bdev" kernel || ok=0
    sleep 1
    modprobe -r xen-blkback xen-netback || say "could not unload the kernel backends"
  else
    ok=0
  fi
  supervisor_start
  if [ $ok = 1 ]; then
    bench_ratios pvback kernel randread_iops seqread_MBps to_guest_Mbps from_guest_Mbps
    verdict PASS "6-side-by-side" "pvback/kernel:$ratios"
  else
    verdict FAIL "6-side-by-side"
  fi
fi

# --- scenario 7: a qcow2 image served by pvback (its own qemu-storage-daemon, through the
# block-pvback hotplug script) and the same kind of image served by QEMU's qdisk, in this run ------
# Both images: 1 GiB qcow2 whose first 128 MiB hold data (the read benchmark reads allocated
# clusters, not the format's holes). The benchmark runs before mkfs.ext4, which discards the disk.
qcow2_images() {  # FILE...
  local f
  for f; do
    qemu-img create -q -f qcow2 "$f" 1G && qemu-io -f qcow2 -c "write -q -P 0x5a 0 128M" "$f" || return 1
    echo "$f: $(qemu-img info "$f" | grep -E 'virtual size|disk size' | tr '\n' ' ')"
  done
}
# Waits until the process that served IMAGE (pvback-blk's storage daemon, or the guest's QEMU) is
# gone (a zombie counts as gone), then checks the image.
qcow2_check() {  # IMAGE PID
  local t0=$SECONDS st=
  while [ -n "$2" ] && [ -r "/proc/$2/stat" ] && read -r _ _ st _ < "/proc/$2/stat" && [ "$st" != Z ]; do
    [ $((SECONDS - t0)) -lt 60 ] || { echo "pid $2 still holds $1 60 s after the destroy"; return 1; }
    sleep 0.5
  done
  [ -z "$2" ] || echo "its server (pid $2) gone $((SECONDS - t0)) s after the destroy"
  t0=$SECONDS
  qemu-img check "$1"; local rc=$?
  echo "qemu-img check: exit $rc after $((SECONDS - t0)) s"
  return $rc
}
qcow2_guest() {  # NAME IP MAC DISK-SPEC TAG(pvback|qdisk) IMAGE
  local g=$1 ip=$2 mac=$3 spec=$4 tag=$5 img=$6 ok=1
  guest_config "$g" pv "$ip" "$mac" "\"$spec\""
  step "create $g (xvda: $spec)" guest_create "$WORK/$g.cfg" || { guest_destroy "$g"; return 1; }
  local d be holder; d=$(domid_of "$g")
  be=$(xenstore-read "/local/domain/$d/device/vbd/51712/backend" 2>/dev/null)
  say "$g: xvda's backend is $be"
  if [ "$tag" = pvback ]; then
    [ "$be" = "/local/domain/0/backend/vbd/$d/51712" ] || { say "$g: xvda not under backend/vbd"; ok=0; }
    say "$g: params=$(xenstore-read "$be/params" 2>/dev/null) hotplug-status=$(xenstore-read "$be/hotplug-status" 2>/dev/null)"
    local sf; sf=$(stats_file vbd "$d" 51712)
    say "$g: pvback-blk storage: $(tr -d '\n' < "$sf" 2>/dev/null | sed -n 's/.*"storage": \({[^}]*}\).*/\1/p')"
    tr -d '\n' < "$sf" 2>/dev/null | grep -q '"engine": "nbd"' || { say "$g: pvback-blk's statistics do not show the nbd engine"; ok=0; }
    holder=$(pgrep -f "qemu-storage-daemon.*$img" | head -1)
    [ -n "$holder" ] && say "   $holder $(tr '\0' ' ' < "/proc/$holder/cmdline" | cut -c1-200)"
    [ -n "$holder" ] || { say "$g: no qemu-storage-daemon serves $img"; ok=0; }
  else
    [ "$be" = "/local/domain/0/backend/qdisk/$d/51712" ] || { say "$g: xvda not under backend/qdisk"; ok=0; }
    pgrep -f "backend/vbd/$d/" >/dev/null && { say "$g: a pvback-blk serves this guest's disk"; ok=0; }
    holder=$(pgrep -f "xen-qemu-system-i386.*-xen-domid $d" | head -1)
    [ -n "$holder" ] && say "   $holder $(tr '\0' ' ' < "/proc/$holder/cmdline" | cut -c1-160)"
    [ -n "$holder" ] || { say "$g: no QEMU for domain $d"; ok=0; }
  fi
  step "guest $g: xvda connected" guest_do "$g" 120 wait_block xvda 120 || ok=0
  # 300 s: on a loaded host the 16 s of fio took longer than scenario 6's 120 s (an answer lost).
  step "guest $g: fio randread 4k qd16 and read 1M qd4, 8 s each" guest_do "$g" 300 disk_bench xvda 8 || ok=0
  guest_out "$g" | grep randread_iops > "$WORK/bench-$tag"
  step "guest $g: mkfs.ext4, files with checksums, fsck, remount, verify, fstrim" guest_do "$g" 300 disk_filesystem xvda || ok=0
  step "guest $g: fio randwrite with crc32c verification" guest_do "$g" 300 disk_fio_verify xvda 16M || ok=0
  say "$tag: $(cat "$WORK/bench-$tag")"
  guest_destroy "$g"
  step "dom0: qemu-img check $img after $g" qcow2_check "$img" "$holder" || ok=0
  [ $ok = 1 ]
}
if want 7; then
  ok=1
  q1=$WORK/pvback.qcow2 q2=$WORK/qdisk.qcow2
  # run.sh installs the hotplug script with pvback's binaries.
  [ -x /etc/xen/scripts/block-pvback ] || { say "/etc/xen/scripts/block-pvback missing"; ok=0; }
  step "dom0: qemu-img create two 1 GiB qcow2 images, 128 MiB of data in each" \
    qcow2_images "$q1" "$q2" || ok=0
  # The target goes last on the line: libxl takes the rest of the line as the target.
  qcow2_guest qcowp 10.99.0.7 00:16:3e:00:00:07 "format=raw, vdev=xvda, access=rw, script=block-pvback, target=qcow2:$q1" pvback "$q1" || ok=0
  qcow2_guest qcowq 10.99.0.8 00:16:3e:00:00:08 "format=qcow2, vdev=xvda, access=rw, target=$q2" qdisk "$q2" || ok=0
  if [ $ok = 1 ]; then
    bench_ratios pvback qdisk randread_iops seqread_MBps
    verdict PASS "7-qcow2" "ext4+fsck+checksums, fio verify, qemu-img check clean on both; pvback/qdisk:$ratios"
  else
    verdict FAIL "7-qcow2"
  fi
fi

supervisor_stop || say "pvback processes left after stopping the supervisor"
# Whatever the scenarios did, dom0's kernel must not have complained (a bad page map from grant
# mappings, a warning in gntdev, an oops).
if dmesg | grep -qE "BUG:|WARNING:|Oops|general protection"; then
  dmesg | grep -A6 -E "BUG:|WARNING:|Oops|general protection" | head -30 | sed 's/^/   /'
  verdict FAIL "dom0-kernel" "dom0's kernel reported a bug or warning"
fi
# A selected scenario that produced no verdict (its guest never came up) counts as failed.
for n in ${selected//+/ }; do
  grep -q "^pvback-e2e: \(PASS\|FAIL\) $n-" "$LOGS/verdicts" 2>/dev/null ||
    verdict FAIL "$n-not-run" "scenario $n selected but never reached a verdict"
done
say "pvback-e2e: RESULT passed=$passed failed=$failed${failed_names:+ (failed:$failed_names)}"
