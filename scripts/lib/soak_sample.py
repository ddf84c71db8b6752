#!/usr/bin/env python3
"""Samples every pvback process of one simulated host (scripts/soak.sh) until STOP_FILE exists.

    soak_sample.py RUN_DIR CSV INTERVAL_S STOP_FILE START_EPOCH

A process belongs to the host when its environment holds PVBACK_SIM_DIR=RUN_DIR (the supervisor
passes its environment to its backends, a backend to its data planes). One CSV row per process per sample:

  t            seconds since START_EPOCH (the soak's start, the time base of its events.csv)
  rss_kb       VmRSS of /proc/PID/status
  anon_kb      RssAnon: the process's own memory (heap, stacks), where a leak shows
  shmem_kb     RssShmem: shared memory touched, mostly guest pages (the simulated guest memory is
               a memfd that a backend maps whole for grant copy: every page it copied counts)
  fds          entries of /proc/PID/fd
  threads      entries of /proc/PID/task
  eventfds     fds that are eventfds: on the simulated hypervisor each event-channel port a process
               holds is a pair of eventfds (its own and its peer's), plus a few private ones
  io_urings    fds that are io_urings (pvback-blk: one per queue)
  grant_pages  4 KiB pages of guest memory mapped in the process (from /proc/PID/maps): the
               simulated grant mapper maps each granted page of a guest's memfd
               (pvback-domN-memory) on its own; the whole-memory view a process keeps for grant
               copy (offset 0, the domain's whole size) is not counted
  domains      foreign domains open (mappings of a pvback-domN-grant-table memfd)
"""
import os
import sys
import time

# The data planes (pvback-blk-dp, pvback-net-dp) hold the rings' grant mappings and event
# channels: their own kinds, "blk-dp" and "net-dp".
NAMES = {"pvback-sim", "pvback-supervis", "pvback-blk", "pvback-net", "pvback-blk-dp", "pvback-net-dp"}


def read(path, mode="r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def sample(pid, run_dir_env, mem_sizes):
    comm = (read(f"/proc/{pid}/comm") or "").strip()
    if comm not in NAMES:
        return None
    env = read(f"/proc/{pid}/environ", "rb")
    cmd = (read(f"/proc/{pid}/cmdline") or "").split("\0")
    # pvback-sim is started before the environment names its run directory: its --run-dir does.
    sim_of_host = comm == "pvback-sim" and run_dir_env.split(b"=", 1)[1].decode() in cmd
    if not sim_of_host and (env is None or run_dir_env not in env.split(b"\0")):
        return None
    status = read(f"/proc/{pid}/status") or ""
    def kb(key):
        return next((int(l.split()[1]) for l in status.splitlines() if l.startswith(key + ":")), 0)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return None
    eventfds = io_urings = 0
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target == "anon_inode:[eventfd]":
            eventfds += 1
        elif target == "anon_inode:[io_uring]":
            io_urings += 1
    grant_pages = domains = 0
    for line in (read(f"/proc/{pid}/maps") or "").splitlines():
        if "memfd:pvback-dom" not in line:
            continue
        fields = line.split(maxsplit=5)
        name = fields[5] if len(fields) > 5 else ""
        if "-grant-table" in name:
            domains += 1
        elif "-memory" in name:
            start, end = (int(x, 16) for x in fields[0].split("-"))
            size, offset = end - start, int(fields[2], 16)
            if offset == 0 and size >= mem_sizes:
                continue  # the whole-memory view for grant copy
            grant_pages += size // 4096
    device = ""
    if "--backend-path" in cmd:
        i = cmd.index("--backend-path")
        if i + 1 < len(cmd):
            parts = cmd[i + 1].split("/")  # /local/domain/0/backend/vbd/D/DEV
            device = f"{parts[-3]}/{parts[-2]}/{parts[-1]}" if len(parts) >= 3 else cmd[i + 1]
    kind = {"pvback-supervis": "supervisor"}.get(comm, comm.replace("pvback-", ""))
    return [pid, kind, device, kb("VmRSS"), kb("RssAnon"), kb("RssShmem"), len(fds), threads, eventfds, io_urings, grant_pages, domains]


def main():
    run_dir, csv_path, interval, stop_file = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
    mem_bytes = int(os.environ.get("SOAK_MEMORY_BYTES", str(64 << 20)))
    run_dir_env = f"PVBACK_SIM_DIR={run_dir}".encode()
    t0 = float(sys.argv[5])
    with open(csv_path, "w") as out:
        out.write("t,pid,kind,device,rss_kb,anon_kb,shmem_kb,fds,threads,eventfds,io_urings,grant_pages,domains\n")
        while not os.path.exists(stop_file):
            t = time.time() - t0
            for pid in (p for p in os.listdir("/proc") if p.isdigit()):
                row = sample(pid, run_dir_env, mem_bytes)
                if row:
                    out.write(f"{t:.1f}," + ",".join(str(x) for x in row) + "\n")
            out.flush()
            next_t = t0 + (int(t / interval) + 1) * interval
            while time.time() < next_t and not os.path.exists(stop_file):
                time.sleep(min(0.2, max(0.0, next_t - time.time())))


if __name__ == "__main__":
    main()
