# Shell helpers for a simulated Xen host: pvback-sim, guest domains and vbds with pvback-blk.
# Source it after setting BUILD (the build directory). Everything started is stopped by
# sim_host_cleanup (install it as an EXIT trap).

SIM_PIDS=()

sim_host_start() {  # sim_host_start RUN_DIR
  SIM_RUN_DIR=$1
  mkdir -p "$SIM_RUN_DIR"
  "$BUILD/sim/pvback-sim" --run-dir "$SIM_RUN_DIR" 2>"$SIM_RUN_DIR/sim.log" &
  SIM_PIDS+=($!)
  for _ in $(seq 200); do [ -S "$SIM_RUN_DIR/control" ] && [ -S "$SIM_RUN_DIR/socket" ] && break; sleep 0.05; done
  export XENSTORED_PATH=$SIM_RUN_DIR/socket PVBACK_PLATFORM=sim PVBACK_SIM_DIR=$SIM_RUN_DIR
}

sim_ctl() { "$BUILD/sim/domains/pvback-sim-ctl" --run-dir "$SIM_RUN_DIR" "$@"; }

# sim_vbd_start DOMID DEVID DISK [pvback-blk options...]: adds the vbd, starts its backend and waits
# for InitWait. The backend's log goes to $SIM_RUN_DIR/pvback-blk-DOMID-DEVID.log.
sim_vbd_start() {
  local domid=$1 devid=$2 disk=$3
  shift 3
  local be
  be=$(sim_ctl add-vbd "$domid" "$devid" --params "$disk")
  # SIM_BACKEND_CPUS: the CPUs pvback-blk and its data plane run on (taskset -c), e.g. apart from
  # the simulated guest's, as a Xen guest's vCPUs are not dom0's.
  local pin=()
  [ -z "${SIM_BACKEND_CPUS:-}" ] || pin=(taskset -c "$SIM_BACKEND_CPUS")
  PVBACK_DOMID=0 "${pin[@]}" "$BUILD/blkback/pvback-blk" --backend-path "$be" "$@" \
    2>"$SIM_RUN_DIR/pvback-blk-$domid-$devid.log" &
  SIM_PIDS+=($!)
  for _ in $(seq 400); do
    [ "$(xenstore-read "$be/state" 2>/dev/null)" = 2 ] && return 0
    sleep 0.05
  done
  echo "pvback-blk for $be did not reach InitWait; its log:" >&2
  cat "$SIM_RUN_DIR/pvback-blk-$domid-$devid.log" >&2
  return 1
}

sim_host_cleanup() {
  local pid
  for ((i = ${#SIM_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${SIM_PIDS[i]}
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  SIM_PIDS=()
}

# sim_vif_start DOMID HANDLE [pvback-net options...]: adds the vif, starts its backend (in the
# network namespace $SIM_DOM0_NETNS if set, so its TAP lives there) and waits for InitWait. The
# backend's log goes to $SIM_RUN_DIR/pvback-net-DOMID-HANDLE.log.
sim_vif_start() {
  local domid=$1 handle=$2
  shift 2
  sim_ctl add-vif "$domid" "$handle" >/dev/null || return 1
  sim_vif_backend "$domid" "$handle" "$@"
}

# sim_vif_backend DOMID HANDLE [pvback-net options...]: starts a backend for a vif that exists
# (a successor of one that was killed), as sim_vif_start does; its pid is the last of SIM_PIDS.
sim_vif_backend() {
  local domid=$1 handle=$2
  shift 2
  local be=/local/domain/0/backend/vif/$domid/$handle netns=()
  [ -n "${SIM_DOM0_NETNS:-}" ] && netns=(ip netns exec "$SIM_DOM0_NETNS")
  "${netns[@]}" env PVBACK_DOMID=0 "$BUILD/netback/pvback-net" --backend-path "$be" "$@" \
    2>>"$SIM_RUN_DIR/pvback-net-$domid-$handle.log" &
  SIM_PIDS+=($!)
  for _ in $(seq 400); do
    case "$(xenstore-read "$be/state" 2>/dev/null)" in 2|4) return 0 ;; esac
    sleep 0.05
  done
  echo "pvback-net for $be did not reach InitWait; its log:" >&2
  cat "$SIM_RUN_DIR/pvback-net-$domid-$handle.log" >&2
  return 1
}
