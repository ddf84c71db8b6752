# Helpers for the scenarios dom0 runs in the real-Xen tier (sourced by scenarios.sh).
E2E=/opt/pvback/e2e
WORK=/run/e2e
LOGS=$WORK/log
mkdir -p "$WORK" "$LOGS"
passed=0
failed=0
failed_names=

say() { echo "$*"; }
# Lines the host harness shows as the run's verdicts.
verdict() {  # PASS|FAIL NAME [DETAIL]
  echo "pvback-e2e: $1 $2${3:+ ($3)}" | tee -a "$LOGS/verdicts"
  if [ "$1" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); failed_names="$failed_names $2"; diagnose; fi
}
# What explains a failure: the backends' log, dom0's kernel, the guests' consoles, live statistics.
diagnose() {
  say "--- xl list"; xl list 2>&1 | sed 's/^/   /'
  say "--- pvback log (last 25 lines)"; tail -25 "$LOGS/supervisor.log" 2>/dev/null | sed 's/^/   /'
  say "--- dom0 dmesg (last 10)"; dmesg | tail -10 | sed 's/^/   /'
  # A kernel warning or oops names its cause in its first lines, which a tail misses.
  dmesg | grep -A14 -E "WARNING:|BUG:|Oops|general protection" | head -45 | sed 's/^/   /'
  local f
  for f in /var/log/xen/console/guest-*.log "$LOGS"/serial-*.log; do
    [ -f "$f" ] && { say "--- $f (last 15)"; tail -15 "$f" | sed 's/^/   /'; }
  done
  # xl's own log of each guest: how and why it ended (shutdown reason, device model exit).
  for f in /var/log/xen/xl-*.log /var/log/xen/qemu-dm-*.log; do
    [ -s "$f" ] && { say "--- $f (last 8)"; tail -8 "$f" | sed 's/^/   /'; }
  done
  for f in /run/pvback/*.json; do
    [ -f "$f" ] && { say "--- $f"; tr -d '\n' < "$f" | cut -c1-1500; echo; }
  done
}

# Runs a check; its output is indented under its name. Returns its status.
step() {  # DESCRIPTION COMMAND...
  local what=$1; shift
  say "-- $what"
  "$@" 2>&1 | sed -u 's/^/   /'
  local rc=${PIPESTATUS[0]}
  [ "$rc" -eq 0 ] || say "   step failed (exit $rc): $what"
  return "$rc"
}

# --- pvback ---------------------------------------------------------------------------------------
# Extra backend options from dom0's command line (pvback.blk_args=--a:--b, pvback.net_args=...).
backend_args() {
  local a
  for a in $(sed -n 's/.*pvback\.blk_args=\([^ ]*\).*/\1/p' /proc/cmdline | tr : ' '); do printf -- '--blk-arg\n%s\n' "$a"; done
  for a in $(sed -n 's/.*pvback\.net_args=\([^ ]*\).*/\1/p' /proc/cmdline | tr : ' '); do printf -- '--net-arg\n%s\n' "$a"; done
}
supervisor_start() {
  local extra; mapfile -t extra < <(backend_args)
  [ ${#extra[@]} = 0 ] || say "pvback-supervisor ${extra[*]}"
  # In the cgroup its unit would give it (init made it): the subshell moves itself, then execs.
  # Started again, it finds the unit's cgroup holding its data planes' groups, which (cgroup v2's
  # no-internal-process rule) takes no process: it starts in its leaf, as systemd's
  # DelegateSubgroup=supervisor (systemd 254 and later) would start it.
  ( if [ -d /sys/fs/cgroup/pvback.service ]; then
      echo "$BASHPID" > /sys/fs/cgroup/pvback.service/cgroup.procs 2>/dev/null ||
        { mkdir -p /sys/fs/cgroup/pvback.service/supervisor &&
          echo "$BASHPID" > /sys/fs/cgroup/pvback.service/supervisor/cgroup.procs; }
    fi
    PVBACK_PLATFORM=xen exec pvback-supervisor "${extra[@]}" "$@" ) >>"$LOGS/supervisor.log" 2>&1 &
  echo $! > "$WORK/supervisor.pid"
  # Ready when it has set its watches; give it a moment to list what exists.
  sleep 0.5
  kill -0 "$(cat "$WORK/supervisor.pid")" || { cat "$LOGS/supervisor.log"; return 1; }
}
supervisor_stop() {
  [ -f "$WORK/supervisor.pid" ] || return 0
  local pid; pid=$(cat "$WORK/supervisor.pid")
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  rm -f "$WORK/supervisor.pid"
  ! pgrep -x pvback-blk >/dev/null && ! pgrep -x pvback-net >/dev/null
}
# The control part of the device at backend/PATH (e.g. vbd/1/51712): its own pvback-blk or
# pvback-net (images, DPDK, --process-per-device), or else the host daemon, the supervisor serving
# it in its own process (a data plane's command line names no backend path).
control_pid() {
  local p; p=$(pgrep -f "backend/$1" | head -1)
  [ -n "$p" ] && echo "$p" || cat "$WORK/supervisor.pid" 2>/dev/null
}
# After control part PID was killed or stopped: a device's own backend process is restarted by
# the supervisor; the supervisor itself by its service manager (systemd's Restart=), which in this
# dom0 is us, once it is gone (its control socket refuses a second live daemon).
control_restarted_after() {
  [ "$1" = "$(cat "$WORK/supervisor.pid" 2>/dev/null)" ] || return 0
  # Gone, or a zombie of ours (this shell started it).
  for _ in $(seq 1 200); do
    kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ] || break; sleep 0.05
  done
  wait "$1" 2>/dev/null
  rm -f "$WORK/supervisor.pid"
  supervisor_start
}
# Waits (10 s at most) for another control part than OLD for backend/PATH; sets $new.
new_control_for() {  # PATH OLD
  new=
  for _ in $(seq 1 200); do
    new=$(control_pid "$1"); [ -n "$new" ] && [ "$new" != "$2" ] && break; new=; sleep 0.05
  done
}
stats_file() { echo "/run/pvback/$1-$2-$3.json"; }  # TYPE DOMID DEVID
# The pid of a device's data-plane process, as its control part's statistics name it.
data_plane_pid() {  # DOMID DEVID [TYPE: vbd (the default) or vif]
  sed -n 's/.*"data_plane": {"pid": \([0-9]*\).*/\1/p' "$(stats_file "${3:-vbd}" "$1" "$2")" 2>/dev/null | head -1
}
# A counter from the "total" object of a statistics file.
stat_total() {  # FILE COUNTER
  tr -d '\n' < "$1" | sed -n "s/.*\"total\": {[^}]*\"$2\": \([0-9]*\).*/\1/p"
}

# --- guests ---------------------------------------------------------------------------------------
domid_of() { xl domid "$1" 2>/dev/null; }

# A guest's console as evidence: the start of its first oops (which names the cause), then its
# last LINES lines (where the guest ended).
guest_console() {  # NAME LINES
  local log=/var/log/xen/console/guest-$1.log
  # An HVM guest's emulated serial port (its kernel's console from the first line) goes to a file.
  [ -s "$LOGS/serial-$1.log" ] && log=$LOGS/serial-$1.log
  grep -m1 -A12 -E "BUG:|Oops|general protection|double fault|traps:" "$log" 2>/dev/null && say "   ..."
  tail -"$2" "$log" 2>/dev/null
}

guest_create() {  # CONFIG
  local name; name=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$1")
  local t0; t0=$(date +%s)
  if ! xl create "$1" >"$LOGS/xl-create-$name.log" 2>&1; then
    cat "$LOGS/xl-create-$name.log"; tail -20 "$LOGS"/supervisor.log; return 1
  fi
  local d; d=$(domid_of "$name")
  say "xl create $name: domid $d"
  local limit=${GUEST_BOOT_TIMEOUT:-240} now beat=$t0
  while now=$(date +%s); [ $((now - t0)) -lt "$limit" ]; do
    [ "$(xenstore-read /local/domain/$d/data/pvback/ready 2>/dev/null)" = 1 ] && {
      say "$name: agent ready $((now - t0)) s after xl create"; return 0; }
    [ $((now - beat)) -ge 30 ] && { beat=$now; say "$name: booting ($((now - t0)) s)";
      domid_of "$name" >/dev/null || { say "$name: gone (crashed?) while booting"; break; }; }
    sleep 0.5
  done
  say "$name: agent not ready after $(( $(date +%s) - t0 ))s; console:"
  guest_console "$name" 30
  return 1
}

# Runs a step in the guest (a function of guest/steps.sh with arguments); prints its output.
# (It runs in pipelines, i.e. subshells: the sequence number lives in XenStore, not in a variable.)
guest_do() {  # NAME TIMEOUT COMMAND...
  local name=$1 limit=$2; shift 2
  local d; d=$(domid_of "$name") || return 1
  local k=/local/domain/$d/data/pvback
  # A guest that stopped answering once (a step stuck in the kernel) is not asked again.
  if [ -e "$WORK/unresponsive-$name" ]; then say "guest $name: not asked '$*' (it stopped answering)"; return 1; fi
  local guest_seq=$(( $(xenstore-read "$k/seq" 2>/dev/null || echo 0) + 1 ))
  xenstore-write "$k/cmd" "$*" "$k/seq" "$guest_seq" || return 1
  local t0 now beat checked; t0=$(date +%s); beat=$t0; checked=$t0
  while :; do
    [ "$(xenstore-read "$k/done" 2>/dev/null)" = "$guest_seq" ] && break
    now=$(date +%s)
    [ $((now - t0)) -lt "$limit" ] || break
    # A guest that crashed (on_crash = "destroy") will never answer: look every 5 s.
    if [ $((now - checked)) -ge 5 ]; then
      checked=$now
      domid_of "$name" >/dev/null || { say "guest $name: gone (crashed?) while running '$1'"; break; }
    fi
    # A heartbeat: the host's watchdog tells a busy guest from a wedged dom0 by the console.
    [ $((now - beat)) -ge 30 ] && { beat=$now; say "guest $name: still running '$1' ($((now - t0)) s)"; }
    sleep 0.25
  done
  if [ "$(xenstore-read "$k/done" 2>/dev/null)" != "$guest_seq" ]; then
    say "guest $name: no answer to '$*' within ${limit}s; console:"
    guest_console "$name" 20
    touch "$WORK/unresponsive-$name"
    return 1
  fi
  { xenstore-read -R "$k/out"; echo; } | sed 's/^/guest| /'
  return "$(xenstore-read "$k/rc")"
}
# The guest's output of the last step, without the prefix.
guest_out() { xenstore-read -R "/local/domain/$(domid_of "$1")/data/pvback/out"; }

guest_destroy() {  # NAME
  xl destroy "$1" >/dev/null 2>&1
  for _ in $(seq 1 50); do xl domid "$1" >/dev/null 2>&1 || return 0; sleep 0.2; done
}

# A loop device over a tmpfs file: the storage both pvback and the kernel's blkback serve.
make_disk() {  # FILE MB
  dd if=/dev/zero of="$1" bs=1M count=0 seek="$2" 2>/dev/null
  losetup -f --show "$1"
}

bridge_setup() {
  ip link add xenbr0 type bridge 2>/dev/null
  ip addr add 10.99.0.1/24 dev xenbr0 2>/dev/null
  ip link set xenbr0 up
}
