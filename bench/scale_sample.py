#!/usr/bin/env python3
"""bench/scale.sh's measurements of one simulated host under pvback-supervisor.

    scale_sample.py snapshot SUPERVISOR_PID CONTROL_SOCKET PVBACKCTL GUESTS vbd|vif OUT.json
        The backends' processes (the supervisor and everything under it, by kind: CPU ticks,
        VmRSS, RssAnon, threads, processes) and every device's counters as the backend counts
        them (pvbackctl --json stats: a vbd's reads + writes, a vif's tx_packets), each with the
        time it was read.
    scale_sample.py report GUESTS LABEL vbd|vif CONNECT_SECONDS BEFORE.json AFTER.json CSV
        One line for bench/results/scale.txt (stdout) and one row of CSV: aggregate IOPS or
        packets per second (each device's own rate over its own interval, summed), the backends'
        CPU in cores, and per device of the kind its processes' memory and threads.
"""
import json
import os
import subprocess
import sys
import time


def processes(root):
    kinds = {}
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            status = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)
            tasks = os.listdir(f"/proc/{pid}/task")
            for task in tasks:
                try:
                    stack += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
                except OSError:
                    pass
        except OSError:
            continue
        kind = {"pvback-supervis": "supervisor"}.get(comm, comm.removeprefix("pvback-"))
        k = kinds.setdefault(kind, {"processes": 0, "ticks": 0, "rss_kb": 0, "anon_kb": 0, "threads": 0,
                                    "pid_ticks": {}})
        k["processes"] += 1
        k["ticks"] += int(stat[11]) + int(stat[12])  # utime + stime
        k["pid_ticks"][str(pid)] = int(stat[11]) + int(stat[12])
        k["rss_kb"] += int(status.get("VmRSS", "0 kB").split()[0])
        k["anon_kb"] += int(status.get("RssAnon", "0 kB").split()[0])
        k["threads"] += len(tasks)
    return kinds


def device_count(ctl, socket, device):
    try:
        out = subprocess.run([ctl, "--socket", socket, "--json", "stats", device], capture_output=True,
                             text=True, timeout=20).stdout
        total = json.loads(out)["stats"]["total"]
    except (subprocess.SubprocessError, ValueError, KeyError):
        return None
    return total["reads"] + total["writes"] if device.startswith("vbd") else total["tx_packets"]


def snapshot(pid, socket, ctl, guests, kind, out):
    snap = {"t": time.time(), "processes": processes(int(pid)), "devices": {}}
    for d in range(1, int(guests) + 1):
        device = f"vbd-{d}-51712" if kind == "vbd" else f"vif-{d}-0"
        count = device_count(ctl, socket, device)
        if count is not None:
            snap["devices"][device] = [time.time(), count]
    snap["t_end"] = time.time()
    json.dump(snap, open(out, "w"))


def report(guests, label, kind, connect_s, before, after, csv):
    n = int(guests)
    a, b = json.load(open(before)), json.load(open(after))
    rate = 0.0
    for device, (t1, c1) in b["devices"].items():
        if device in a["devices"]:
            t0, c0 = a["devices"][device]
            rate += (c1 - c0) / (t1 - t0)
    missing = n - sum(1 for device in b["devices"] if device in a["devices"])
    hz = os.sysconf("SC_CLK_TCK")
    pa, pb = a["processes"], b["processes"]
    # Per process: one that ended between the samples took its ticks with it (it is not counted),
    # one that started counts whole; summing per kind would subtract the ended one's.
    before_ticks = {pid: t for k in pa.values() for pid, t in k.get("pid_ticks", {}).items()}
    cores = sum(t - before_ticks.get(pid, 0) for k in pb.values() for pid, t in k.get("pid_ticks", {}).items())
    cores /= hz * (b["t"] - a["t"])
    # A device's processes: its data plane (and a control part of its own, were it not the
    # supervisor's).
    kinds = ("blk", "blk-dp") if kind == "vbd" else ("net", "net-dp")

    def per_device(key):
        return sum(pb[k][key] for k in kinds if k in pb) / n

    row = {
        "guests": n, "label": label, "kind": kind, "connect_s": float(connect_s),
        "rate": round(rate), "unit": "IOPS" if kind == "vbd" else "pps", "backend_cores": round(cores, 2),
        "rss_mib": round(per_device("rss_kb") / 1024, 1), "anon_mib": round(per_device("anon_kb") / 1024, 1),
        "threads": round(per_device("threads"), 1), "processes": round(per_device("processes"), 1),
        "supervisor_rss_mib": round(pb.get("supervisor", {"rss_kb": 0})["rss_kb"] / 1024, 1),
        "supervisor_threads": pb.get("supervisor", {"threads": 0})["threads"], "devices_missing": missing,
    }
    new = not os.path.exists(csv)
    with open(csv, "a") as f:
        if new:
            f.write(",".join(row) + "\n")
        f.write(",".join(str(v) for v in row.values()) + "\n")
    figure = f"{rate:8.0f} IOPS" if kind == "vbd" else f"{rate / 1e6:5.2f} Mpps   "
    print(f"{n:3d} guests {label:9s} {kind}  connected in {float(connect_s):5.1f} s  {figure}  "
          f"backends {cores:4.2f} cores  per {kind} {row['rss_mib']:4.1f} MiB RSS ({row['anon_mib']:4.1f} anon) "
          f"{row['threads']:3.1f} threads  supervisor {row['supervisor_rss_mib']:4.1f} MiB {row['supervisor_threads']} threads"
          + (f"  MISSING {missing}" if missing else ""))


if __name__ == "__main__":
    {"snapshot": snapshot, "report": report}[sys.argv[1]](*sys.argv[2:])
