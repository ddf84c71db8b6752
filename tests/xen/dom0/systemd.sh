#!/bin/bash
# Scenario 8, run by systemd in a dom0 whose PID 1 is systemd (dom0/init-systemd):
#   systemd.sh setup   e2e-setup.service, before xendomains: the guest's disk (a loop device), the
#                      bridge xenbr0 and the guest's config in /etc/xen/auto
#   systemd.sh check   e2e-check.service, after xendomains: the verdicts, then power off
# pvback-supervisor.service (the package's unit, enabled by init-systemd) serves the guest that
# Debian's xendomains started at boot; nothing here starts pvback or the guest.
set -u
. /opt/pvback/e2e/lib.sh
unit=pvback-supervisor.service
guest=pv8

setup() {
  mkdir -p /var/log/xen/console /etc/xen/auto
  modprobe loop; modprobe bridge
  local disk; disk=$(make_disk "$WORK/pv8-xvda.img" 64) || { echo "pvback-e2e: setup: no loop device"; return 1; }
  bridge_setup
  cat > /etc/xen/auto/$guest.cfg <<EOF
name = "$guest"
type = "pv"
kernel = "$E2E/vmlinux"
ramdisk = "$E2E/guest.cpio"
extra = "console=hvc0 loglevel=4 pvback.ip=10.99.0.2/24"
memory = 768
vcpus = 2
on_poweroff = "destroy"
on_crash = "destroy"
disk = [ "format=raw, vdev=xvda, access=rw, target=$disk" ]
vif = [ "mac=00:16:3e:00:00:08, bridge=xenbr0" ]
EOF
  echo "e2e| setup: $disk for $guest's xvda, xenbr0 10.99.0.1/24, /etc/xen/auto/$guest.cfg"
}

# The supervisor's journal as its log, for lib.sh's diagnose().
eval "lib_diagnose() $(declare -f diagnose | tail -n +2)"
diagnose() {
  journalctl -b -u "$unit" --no-pager -o short-monotonic > "$LOGS/supervisor.log" 2>&1
  lib_diagnose
}
prop() { systemctl show -P "$2" "$1"; }  # UNIT PROPERTY
# A device's data-plane pid as its statistics name it.
dp_pid() {  # vbd|vif DOMID DEVID
  tr -d '\n' < "$(stats_file "$1" "$2" "$3")" 2>/dev/null | sed -n 's/.*"data_plane": {"pid": \([0-9]*\).*/\1/p' | head -1
}
# The journal's position now, for what an event logs from there on.
journal_cursor() { journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && echo alive || echo gone; }
# Until the unit's journal from CURSOR on has N lines matching TEXT (60 s at most); prints the count.
wait_journal() {  # CURSOR TEXT N
  local c=0
  for _ in $(seq 1 240); do
    c=$(journalctl --no-pager -u $unit --after-cursor="$1" -g "$2" 2>/dev/null | grep -c "$2")
    [ "${c:-0}" -ge "$3" ] && break
    sleep 0.25
  done
  echo "${c:-0}"
}
# dom0 pings the guest every 0.1 s in the background while an event happens: ping_start, then
# ping_stop prints "R of S answered, longest gap G ms" (G: the longest time between answers).
ping_start() { busybox ping -i 0.1 -W 1 10.99.0.2 > /tmp/s8-ping.log 2>&1 & ping_pid=$!; sleep 0.5; }
# (Called as $(ping_stop), a subshell, where `wait` cannot wait for ping: it polls for its end,
# so that the summary line is written before it is read.) The gap is counted in sequence numbers
# of the answers (each 100 ms apart), duplicates ignored.
ping_stop() {
  kill -INT "$ping_pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$ping_pid" 2>/dev/null || break; sleep 0.05; done
  awk '/seq=/ && !/DUP/ { for (i = 1; i <= NF; i++) if ($i ~ /^seq=/) { split($i, a, "="); if (!(a[2] in seen)) { seen[a[2]] = 1; seq[n++] = a[2] } } }
       /packets transmitted/ { sent = $1 }
       END { gap = 0; for (i = 1; i < n; i++) if (seq[i] - seq[i-1] > gap) gap = seq[i] - seq[i-1];
             printf "%d of %d answered, longest gap %d ms\n", n, sent, gap * 100 }' /tmp/s8-ping.log
}
# A hand-over alive: no answer of the guest's more than a second after the one before.
gap_ok() {  # "N of S answered, longest gap G ms"
  local g; g=$(sed -n 's/.*longest gap \([0-9]*\) ms.*/\1/p' <<<"$1")
  [ -n "$g" ] && [ "$g" -le 1000 ] && return 0
  say "the guest's NIC stopped answering for ${g:-?} ms across it"; return 1
}
pvback_procs() { ps -eo pid,ppid,user,comm,cgroup 2>/dev/null | awk 'NR == 1 || /pvback/' | cut -c1-150; }
# Until the device has a data plane other than OLD that is alive (60 s at most); prints its pid.
wait_new_dp() {  # vbd|vif DOMID DEVID OLD
  local p
  for _ in $(seq 1 240); do
    p=$(dp_pid "$1" "$2" "$3")
    [ -n "$p" ] && [ "$p" != "$4" ] && kill -0 "$p" 2>/dev/null && { echo "$p"; return 0; }
    sleep 0.25
  done
  dp_pid "$1" "$2" "$3"
  return 1
}
# Until the unit is active with a main pid other than OLD (60 s at most).
wait_active_new_main() {  # OLD
  for _ in $(seq 1 240); do
    [ "$(prop $unit ActiveState)" = active ] && [ "$(prop $unit MainPID)" != "$1" ] && [ "$(prop $unit MainPID)" != 0 ] && return 0
    sleep 0.25
  done
  return 1
}
# The guest's disk and NIC work: a pattern written and read back, dom0 and the guest ping each other.
guest_io() {  # LABEL
  local ok=0 written
  step "guest ($1): write 4 MiB to xvda" guest_do $guest 180 disk_write_pattern xvda 4 || ok=1
  written=$(guest_out $guest | tail -1)
  step "guest ($1): read it back" guest_do $guest 180 disk_checksum xvda 4 || ok=1
  [ -n "$written" ] && [ "$(guest_out $guest | tail -1)" = "$written" ] || { say "($1) data read back differs"; ok=1; }
  step "dom0 ($1): ping the guest" busybox ping -c 3 -W 5 10.99.0.2 || ok=1
  step "guest ($1): ping dom0" guest_do $guest 60 busybox ping -c 3 -W 5 10.99.0.1 || ok=1
  return $ok
}

# After a restart or a kill: the processes, the unit's journal, the guest's I/O, the verdict.
event_verdict() {  # NAME LABEL OK FACT
  local ok=$3
  step "pvback's processes $2" pvback_procs
  step "journal $2 (the unit's, from the event on)" \
    journalctl --no-pager -o short-monotonic -u $unit --after-cursor="$cursor"
  guest_io "$2" || ok=0
  [ "$ok" = 1 ] && verdict PASS "$1" "$4; guest disk and ping OK after" || verdict FAIL "$1" "$4"
}

# An experiment, not a verdict (PVBACK_XEN_S8_KILLMODE_PROCESS=1): a drop-in KillMode=process,
# then kill -9 of the supervisor. Does the data plane serve on, and can systemd (Debian 12: 252, no
# DelegateSubgroup=) start the successor in a cgroup whose subgroups hold the data planes?
killmode_process_experiment() {  # DOMID
  local d=$1 main n0 vbd1 vif1 p
  mkdir -p /run/systemd/system/$unit.d
  printf '[Service]\nKillMode=process\n' > /run/systemd/system/$unit.d/e2e-killmode.conf
  systemctl daemon-reload
  main=$(prop $unit MainPID); n0=$(prop $unit NRestarts)
  vbd1=$(dp_pid vbd "$d" 51712); vif1=$(dp_pid vif "$d" 0)
  say "experiment KillMode=process: supervisor $main, data planes vbd $vbd1 vif $vif1; kill -9 $main"
  cursor=$(journal_cursor)
  kill -KILL "$main"
  sleep 0.3
  say "0.3 s after: unit $(prop $unit ActiveState)/$(prop $unit SubState), vbd data plane $vbd1 $(alive "$vbd1"), vif data plane $vif1 $(alive "$vif1")"
  local t0 state; t0=$(date +%s)
  while [ $(( $(date +%s) - t0 )) -lt 20 ]; do
    state=$(prop $unit ActiveState)
    [ "$state" = failed ] && break
    [ "$state" = active ] && [ "$(prop $unit MainPID)" != "$main" ] && break
    sleep 0.25
  done
  say "$(( $(date +%s) - t0 )) s later: unit $(prop $unit ActiveState)/$(prop $unit SubState) Result=$(prop $unit Result) main $(prop $unit MainPID) NRestarts $n0 -> $(prop $unit NRestarts);" \
      "data planes now vbd $(dp_pid vbd "$d" 51712) vif $(dp_pid vif "$d" 0); old vbd $vbd1 $(alive "$vbd1"), old vif $vif1 $(alive "$vif1")"
  step "pvback's processes" pvback_procs
  step "journal (the unit's, from the kill on)" journalctl --no-pager -o short-monotonic -u $unit --after-cursor="$cursor"
  # With no supervisor and no data plane the guest's I/O would only wait out guest_do's timeouts.
  local io="not tried (the unit is not active)"
  [ "$(prop $unit ActiveState)" != active ] || { io=ok; guest_io "KillMode=process experiment" || io=failed; }
  say "pvback-e2e: EVIDENCE 8x-killmode-process (old vbd data plane $vbd1 $(alive "$vbd1"), old vif $vif1 $(alive "$vif1"); unit $(prop $unit ActiveState)/$(prop $unit SubState), NRestarts $n0 -> $(prop $unit NRestarts); guest I/O $io)"
  rm -f /run/systemd/system/$unit.d/e2e-killmode.conf; systemctl daemon-reload
}

check() {
  say "xl info: $(xl info | sed -n 's/^xen_version *: //p') / dom0 $(uname -r) / PID 1: $(cat /proc/1/comm) ($(readlink /proc/1/exe))"
  say "pvback package: $(dpkg-query -W -f '${Package} ${Version} ${Status}' pvback)"
  say "systemctl is-system-running: $(systemctl is-system-running)"
  systemctl --failed --no-pager --no-legend | sed 's/^/failed unit: /'
  local ok d

  # --- the supervisor's unit under systemd
  ok=1
  step "systemctl status $unit" systemctl status $unit --no-pager -n 8 -l
  step "its properties" systemctl show $unit -p Type,ActiveState,SubState,MainPID,NRestarts,ControlGroup,Delegate,DelegateControllers,WatchdogUSec,StatusText
  step "its control group" sh -c "systemd-cgls --no-pager -u $unit; cat /sys/fs/cgroup$(prop $unit ControlGroup)/cgroup.subtree_control"
  [ "$(prop $unit ActiveState)/$(prop $unit SubState)" = active/running ] || ok=0
  [ $ok = 1 ] && verdict PASS "8-supervisor-active" "$unit active (running), main pid $(prop $unit MainPID)" \
              || verdict FAIL "8-supervisor-active" "$(prop $unit ActiveState)/$(prop $unit SubState)"

  # --- READY=1 before xendomains began: systemd records when the unit became active (for
  # Type=notify: when READY=1 arrived) and when xendomains left inactive.
  local spawned ready xd_start
  spawned=$(prop $unit ExecMainStartTimestampMonotonic)
  ready=$(prop $unit ActiveEnterTimestampMonotonic)
  xd_start=$(prop xendomains.service InactiveExitTimestampMonotonic)
  say "monotonic us: supervisor spawned $spawned, ready (active) $ready, xendomains activating $xd_start, xen.service active $(prop xen.service ActiveEnterTimestampMonotonic)"
  step "journal: supervisor and xendomains" sh -c "journalctl -b --no-pager -o short-monotonic -u $unit -u xendomains.service -u xen.service | head -30"
  if [ "${ready:-0}" -gt 0 ] && [ "${xd_start:-0}" -gt 0 ] && [ "$ready" -le "$xd_start" ]; then
    verdict PASS "8-ready-before-xendomains" "READY $(( (ready - spawned) / 1000 )) ms after spawn, $(( (xd_start - ready) / 1000 )) ms before xendomains"
  else
    verdict FAIL "8-ready-before-xendomains" "ready=$ready xendomains=$xd_start"
  fi

  # --- the guest xendomains started, served by pvback
  ok=1
  d=
  for _ in $(seq 1 20); do d=$(domid_of $guest) && [ -n "$d" ] && break; sleep 1; done
  step "xl list" xl list
  if [ -z "$d" ]; then
    verdict FAIL "8-guest-served" "xendomains did not start $guest"
    guest_ok=0
  else
    local t0 now; t0=$(date +%s)
    while now=$(date +%s); [ $((now - t0)) -lt 300 ]; do
      [ "$(xenstore-read /local/domain/$d/data/pvback/ready 2>/dev/null)" = 1 ] && break
      [ $(( (now - t0) % 30 )) = 0 ] && say "$guest: booting ($((now - t0)) s since the check began)"
      sleep 1
    done
    [ "$(xenstore-read /local/domain/$d/data/pvback/ready 2>/dev/null)" = 1 ] &&
      say "$guest (domid $d): agent ready $(( $(date +%s) - t0 )) s after the check began" ||
      { say "$guest: agent not ready"; guest_console $guest 30; ok=0; }
    local vbd=/local/domain/0/backend/vbd/$d/51712 vif=/local/domain/0/backend/vif/$d/0
    [ $ok = 1 ] && { step "guest: xvda connected" guest_do $guest 120 wait_block xvda 120 || ok=0; }
    [ $ok = 1 ] && { step "guest: eth0 up" guest_do $guest 60 net_wait || ok=0; }
    say "backend states: vbd $(xenstore-read $vbd/state 2>/dev/null) vif $(xenstore-read $vif/state 2>/dev/null);" \
        "frontend states: vbd $(xenstore-read /local/domain/$d/device/vbd/51712/state 2>/dev/null) vif $(xenstore-read /local/domain/$d/device/vif/0/state 2>/dev/null)"
    [ "$(xenstore-read $vbd/state 2>/dev/null)" = 4 ] && [ "$(xenstore-read $vif/state 2>/dev/null)" = 4 ] || { say "a backend is not Connected (4)"; ok=0; }
    step "pvback's statistics files" ls -l "$(stats_file vbd "$d" 51712)" "$(stats_file vif "$d" 0)" || ok=0
    say "data planes: vbd $(dp_pid vbd "$d" 51712), vif $(dp_pid vif "$d" 0)"
    [ -n "$(dp_pid vbd "$d" 51712)" ] && [ -n "$(dp_pid vif "$d" 0)" ] || { say "no data plane named in the statistics"; ok=0; }
    step "pvback's processes and their cgroups" pvback_procs
    [ $ok = 1 ] && { guest_io "at boot" || ok=0; }
    guest_ok=$ok
    [ $ok = 1 ] && verdict PASS "8-guest-served" "domid $d from xendomains: vbd and vif state 4, data planes vbd $(dp_pid vbd "$d" 51712) vif $(dp_pid vif "$d" 0), disk and ping OK" \
                || verdict FAIL "8-guest-served"
  fi

  # --- no kernel backend
  step "modprobe -n -v xen-blkback xen-netback (the exclusive-mode file)" sh -c 'modprobe -n -v xen-blkback; modprobe -n -v xen-netback; ls -l /etc/modprobe.d/'
  if grep -qE '^xen_(blkback|netback) ' /proc/modules; then
    verdict FAIL "8-no-kernel-backends" "$(grep -E '^xen_(blkback|netback) ' /proc/modules | cut -d' ' -f1 | tr '\n' ' ')loaded"
  else
    verdict PASS "8-no-kernel-backends" "neither xen_blkback nor xen_netback in /proc/modules"
  fi

  if [ "${guest_ok:-0}" = 1 ]; then
    # --- systemctl restart under the running guest: the supervisor stops (SIGTERM) leaving its
    # data planes serving in their scopes (--on-stop auto), and the new one adopts those very
    # processes: the guest's I/O never stops. dom0 pings the guest every 0.1 s throughout.
    local main0 main1 vbd0 vif0 vbd1 vif1 t left adopted pings
    main0=$(prop $unit MainPID); vbd0=$(dp_pid vbd "$d" 51712); vif0=$(dp_pid vif "$d" 0)
    say "before restart: supervisor $main0 NRestarts=$(prop $unit NRestarts), data planes vbd $vbd0 vif $vif0"
    # An operator's new limit for the data planes, then the restart: the adopted vbd data plane's
    # scope gets it (SetUnitProperties), not what its predecessor sized.
    local vbd_scope mem_before mem_after
    vbd_scope=$(cut -d/ -f3 /proc/$vbd0/cgroup 2>/dev/null)
    mem_before=$(systemctl show -P MemoryMax "$vbd_scope" 2>/dev/null)
    cp /etc/default/pvback-supervisor /tmp/pvback-supervisor.default
    echo 'PVBACK_SUPERVISOR_OPTS="--blk-arg --data-plane-memory-max --blk-arg 200M"' >> /etc/default/pvback-supervisor
    t=$(date +%s%N)
    cursor=$(journal_cursor)
    ping_start
    step "systemctl restart $unit" systemctl restart $unit
    say "systemctl restart returned after $(( ($(date +%s%N) - t) / 1000000 )) ms; right after: vbd data plane $vbd0 $(alive "$vbd0"), vif data plane $vif0 $(alive "$vif0")"
    ok=1
    wait_active_new_main "$main0" || { say "the unit did not come back active with a new main pid"; ok=0; }
    main1=$(prop $unit MainPID)
    adopted=$(wait_journal "$cursor" "adopted the data plane" 2)
    pings=$(ping_stop)
    left=$(journalctl --no-pager -u $unit --after-cursor="$cursor" -g "leaving the data plane" 2>/dev/null | grep -c "leaving the data plane")
    vbd1=$(dp_pid vbd "$d" 51712); vif1=$(dp_pid vif "$d" 0)
    say "after restart: supervisor $main1, data planes vbd ${vbd1:-none} vif ${vif1:-none}; left serving ${left:-0}, adopted ${adopted:-0}; dom0's ping of the guest across it: $pings;" \
        "backend states vbd $(xenstore-read $vbd/state) vif $(xenstore-read $vif/state)"
    [ "$vbd1" = "$vbd0" ] && [ "$vif1" = "$vif0" ] && [ "$(alive "$vbd0")" = alive ] && [ "$(alive "$vif0")" = alive ] ||
      { say "the data planes did not outlive the restart"; ok=0; }
    [ "${left:-0}" -ge 2 ] && [ "${adopted:-0}" -ge 2 ] || { say "not both data planes were left serving and adopted"; ok=0; }
    gap_ok "$pings" || ok=0
    # The limits are set just after the adoption is logged: until they are (5 s at most).
    for _ in $(seq 1 20); do
      mem_after=$(systemctl show -P MemoryMax "$vbd_scope" 2>/dev/null)
      [ "$mem_after" = 209715200 ] && break
      sleep 0.25
    done
    say "the vbd data plane's scope $vbd_scope: MemoryMax $mem_before before, $mem_after after the restart with --data-plane-memory-max 200M"
    [ "$mem_after" = 209715200 ] || { say "the adopted data plane's scope did not get the new limit"; ok=0; }
    cp /tmp/pvback-supervisor.default /etc/default/pvback-supervisor
    event_verdict "8-systemctl-restart" "after systemctl restart" $ok \
      "supervisor $main0 -> $main1; data planes vbd $vbd0 -> ${vbd1:-none}, vif $vif0 -> ${vif1:-none}, left serving and adopted alive; ping across it: $pings; the vbd scope's MemoryMax $mem_before -> $mem_after"

    # --- kill -9 of the supervisor's main process: Restart=on-failure. The data planes are in
    # scopes of their own in pvback.slice (plane/systemd_scope.hpp), outside the unit's cgroup:
    # systemd's KillMode=mixed does not reach them, they serve on, and the successor adopts them
    # (the same pids, alive; "adopted the data plane" in its journal).
    local n0 vbd2 vif2 main2 scopes adopted
    main1=$(prop $unit MainPID); n0=$(prop $unit NRestarts)
    vbd1=$(dp_pid vbd "$d" 51712); vif1=$(dp_pid vif "$d" 0)
    say "before kill -9: supervisor $main1 NRestarts=$n0, data planes vbd $vbd1 vif $vif1"
    scopes="vbd in $(cut -d: -f3 /proc/$vbd1/cgroup 2>/dev/null), vif in $(cut -d: -f3 /proc/$vif1/cgroup 2>/dev/null)"
    say "data planes' cgroups: $scopes"
    step "systemctl status pvback.slice" systemctl status pvback.slice --no-pager -n 0
    local scope_before scope_ok=1
    local scope; scope=$(cut -d/ -f3 /proc/$vbd1/cgroup 2>/dev/null)
    case "$scope" in pvback-vbd-*.scope) scope_before=$(systemctl show -P Before "$scope") ;; *) scope_before="(not in a scope: $scope)" ;; esac
    say "the vbd data plane's scope is ordered before: $scope_before"
    case " $scope_before " in *" xendomains.service "*) ;; *) say "its scope is not ordered before xendomains.service (at shutdown it would stop beside the guests)"; scope_ok=0 ;; esac
    cursor=$(journal_cursor)
    kill -KILL "$main1"
    t=$(date +%s%N)
    sleep 0.3
    say "0.3 s after kill -9: unit $(prop $unit ActiveState)/$(prop $unit SubState), old vbd data plane $vbd1 $(alive "$vbd1"), old vif data plane $vif1 $(alive "$vif1")"
    ok=$scope_ok
    wait_active_new_main "$main1" || { say "systemd did not restart the unit"; ok=0; }
    main2=$(prop $unit MainPID)
    say "unit active again after $(( ($(date +%s%N) - t) / 1000000 )) ms: main pid $main2 NRestarts=$(prop $unit NRestarts) Result=$(prop $unit Result)"
    # Until the successor adopted both (60 s at most).
    adopted=$(wait_journal "$cursor" "adopted the data plane" 2)
    vbd2=$(dp_pid vbd "$d" 51712); vif2=$(dp_pid vif "$d" 0)
    say "after kill -9: data planes vbd ${vbd2:-none} vif ${vif2:-none}; old vbd $vbd1 $(alive "$vbd1"), old vif $vif1 $(alive "$vif1"); adoptions in the journal: ${adopted:-0}; backend states vbd $(xenstore-read $vbd/state) vif $(xenstore-read $vif/state)"
    [ "$vbd2" = "$vbd1" ] && [ "$vif2" = "$vif1" ] && [ "$(alive "$vbd1")" = alive ] && [ "$(alive "$vif1")" = alive ] ||
      { say "the data planes did not survive the supervisor's death"; ok=0; }
    [ "${adopted:-0}" -ge 2 ] || { say "the successor did not adopt both data planes"; ok=0; }
    event_verdict "8-kill9-supervisor" "after kill -9 of the supervisor" $ok \
      "supervisor $main1 killed, systemd restarted it as $main2 (NRestarts $n0 -> $(prop $unit NRestarts)); data planes vbd $vbd1 -> ${vbd2:-none}, vif $vif1 -> ${vif2:-none} ($scopes), adopted alive"

    # --- an upgrade under the running guest: dpkg -i of the package (the same .deb again, which
    # runs every maintainer script an upgrade runs). debhelper's postinst restarts the unit after
    # the files are in place (dh_installsystemd's default --restart-after-upgrade): as above, the
    # data planes are left serving and the new supervisor adopts them (a data plane of another
    # protocol version would be refused, killed and replaced from the records).
    local main3 vbd3 vif3 t1
    main2=$(prop $unit MainPID); vbd2=$(dp_pid vbd "$d" 51712); vif2=$(dp_pid vif "$d" 0)
    say "before dpkg -i: supervisor $main2, data planes vbd $vbd2 vif $vif2, package $(dpkg-query -W -f '${Version}' pvback)"
    cursor=$(journal_cursor)
    ok=1
    t1=$(date +%s%N)
    ping_start
    step "dpkg -i $(basename /opt/pvback/e2e/pvback_*.deb) under the running guest" dpkg -i /opt/pvback/e2e/pvback_*.deb || ok=0
    say "dpkg -i took $(( ($(date +%s%N) - t1) / 1000000 )) ms"
    wait_active_new_main "$main2" || { say "the unit did not come back active with a new main pid"; ok=0; }
    main3=$(prop $unit MainPID)
    adopted=$(wait_journal "$cursor" "adopted the data plane" 2)
    pings=$(ping_stop)
    vbd3=$(dp_pid vbd "$d" 51712); vif3=$(dp_pid vif "$d" 0)
    say "after dpkg -i: supervisor $main3, data planes vbd ${vbd3:-none} vif ${vif3:-none}, adopted ${adopted:-0}; dom0's ping of the guest across it: $pings;" \
        "backend states vbd $(xenstore-read $vbd/state) vif $(xenstore-read $vif/state); unit enabled: $(systemctl is-enabled $unit)"
    [ "$(xenstore-read $vbd/state)" = 4 ] && [ "$(xenstore-read $vif/state)" = 4 ] || { say "a backend is not Connected after the upgrade"; ok=0; }
    [ "$vbd3" = "$vbd2" ] && [ "$vif3" = "$vif2" ] && [ "$(alive "$vbd2")" = alive ] && [ "$(alive "$vif2")" = alive ] &&
      [ "${adopted:-0}" -ge 2 ] || { say "the data planes were not handed over alive across the upgrade"; ok=0; }
    gap_ok "$pings" || ok=0
    event_verdict "8-dpkg-upgrade" "after dpkg -i under the guest" $ok \
      "postinst restarted the unit ($main2 -> $main3); data planes vbd $vbd2 -> ${vbd3:-none}, vif $vif2 -> ${vif3:-none}, adopted alive; ping across it: $pings"
  fi

  say "supervisor restarts by systemd over the run: NRestarts=$(prop $unit NRestarts) (1 expected: the kill -9; more: the watchdog)"
  [ "${guest_ok:-0}" = 1 ] && grep -q 'pvback\.s8_killmode_process=1' /proc/cmdline && killmode_process_experiment "$d"
  if dmesg | grep -qE "BUG:|WARNING:|Oops|general protection"; then
    dmesg | grep -A6 -E "BUG:|WARNING:|Oops|general protection" | head -30 | sed 's/^/   /'
    verdict FAIL "8-dom0-kernel" "dom0's kernel reported a bug or warning"
  fi
  say "pvback-e2e: RESULT passed=$passed failed=$failed${failed_names:+ (failed:$failed_names)}"
}

case "${1:-}" in
  setup) setup ;;
  check)
    check 2>&1 | sed -u 's/^/e2e| /'
    echo "pvback-e2e: dom0 finished, powering off"
    sync
    busybox poweroff -f ;;
  *) echo "usage: $0 setup|check" >&2; exit 2 ;;
esac
