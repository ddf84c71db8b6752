#!/usr/bin/env python3
"""The soak's verdict (scripts/soak.sh): reads RESULTS/samples.csv and RESULTS/events.csv, writes
RESULTS/series.csv (per sample and kind of process: count, max and sum of each measure) and prints
the summary; exits 1 when anything failed.

    soak_summary.py RESULTS WARMUP_S END_S

Back to idle: pvback-sim's and the supervisor's fds, eventfds and threads after the last guest is
gone are no more than before the first came.

Flat: for each kind of process (pvback-sim, pvback-supervisor, pvback-blk, pvback-net and their
data planes) and each measure, take at every sample the largest value among that kind's live processes; leave out the
warm-up and the wind-down after END_S (the guests' last lives ending); split the rest in quarters by time; the last quarter's maximum must not exceed the first
quarter's maximum by more than the measure's margin (MARGINS). A leak in a long-lived process (the
simulated hypervisor, the supervisor, a backend that is never killed) shows as growth between the
quarters; backends restarted by the chaos start again from nothing, so their per-process maxima
show a leak only as fast as it grows within a process's life.
"""
import collections
import csv
import sys

MEASURES = ["rss_kb", "anon_kb", "shmem_kb", "fds", "threads", "eventfds", "io_urings", "grant_pages", "domains"]
# Judged for flatness: all but VmRSS and RssShmem, which count the guest pages a backend touched
# (the simulated guest memory is a memfd mapped whole for grant copy; fresh pages for every
# frontend connection), not memory of its own. They are reported.
CHECKED = [m for m in MEASURES if m not in ("rss_kb", "shmem_kb")]
# measure -> (absolute margin, relative margin): allowed = first + max(absolute, relative * first)
# grant_pages: what a backend maps follows its guest's I/O of the moment (request sizes, queue
# depth, persistent grants), up to one connection's working set: the soak's pvback-blkfront shares
# at most 2 queues x (256 pool + 16 ring) pages. A backend that kept the mappings of a finished
# connection would pass that within two connections (each pvback-blkfront run grants new pages).
MARGINS = {"anon_kb": (4096, 0.10), "fds": (4, 0), "threads": (2, 0), "eventfds": (4, 0), "io_urings": (0, 0),
           "grant_pages": (544, 0), "domains": (1, 0)}
KINDS = ["sim", "supervisor", "blk", "net", "blk-dp", "net-dp"]
BACKENDS = ("blk", "net", "blk-dp", "net-dp")
# pvback-sim holds a connection (fds) and two eventfds per event-channel port for every live
# frontend and backend: those follow the guests' lives, so for it they are checked idle against
# idle (before the first guest and after the last), not over time.
# So does the supervisor since it serves devices in its own process (the host daemon): each live
# device holds its data plane's channel, its fatal latch and its statistics' memfd.
OVER_TIME = {"sim": ["anon_kb", "threads"], "supervisor": ["anon_kb", "threads", "io_urings", "grant_pages", "domains"]}
# RSS is not compared idle to idle: the allocator keeps its high-water mark (checked over time).
IDLE = {"sim": ["fds", "threads", "eventfds"], "supervisor": ["fds", "threads", "eventfds"]}
FAILURES = {"MISMATCH", "IOERROR", "ATTACH", "NETDEAD", "LINGER", "LEFTOVER", "STUCK"}


def main():
    results, warmup, workload_end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    per_sample = collections.defaultdict(lambda: collections.defaultdict(list))  # t -> kind -> rows
    with open(f"{results}/samples.csv") as f:
        for row in csv.DictReader(f):
            per_sample[float(row["t"])][row["kind"]].append({m: int(row[m]) for m in MEASURES})
    times = sorted(per_sample)
    with open(f"{results}/series.csv", "w") as out:
        out.write("t,kind,procs," + ",".join(f"max_{m}" for m in MEASURES) + "," +
                  ",".join(f"sum_{m}" for m in MEASURES) + "\n")
        for t in times:
            for kind in KINDS:
                rows = per_sample[t].get(kind, [])
                if not rows:
                    continue
                out.write(f"{t:.1f},{kind},{len(rows)}," + ",".join(str(max(r[m] for r in rows)) for m in MEASURES) +
                          "," + ",".join(str(sum(r[m] for r in rows)) for m in MEASURES) + "\n")

    failed = False
    end = times[-1] if times else 0.0
    print(f"samples: {len(times)} over {end:.0f} s; the flatness check covers {warmup:.0f}-{workload_end:.0f} s "
          f"(after the warm-up, before the guests' last lives end)")
    print("\nover time (largest value among each kind's live processes; blk/net: live processes in brackets)")
    print(f"{'t(s)':>6} {'sim rss/anon/fds/thr/evfd':>25} {'sup anon/fds/thr':>16} "
          f"{'blk rss/anon/fds/thr/evfd/grants':>38} {'net rss/anon/fds/thr/evfd/grants':>38} "
          f"{'blk-dp rss/anon/fds/thr/evfd/grants':>38} {'net-dp rss/anon/fds/thr/evfd/grants':>38}")
    step = max(1, len(times) // 12)
    for t in times[::step] + ([times[-1]] if times and (len(times) - 1) % step else []):
        def cell(kind, ms):
            rows = per_sample[t].get(kind, [])
            if not rows:
                return "-"
            vals = "/".join(str(max(r[m] for r in rows) // (1024 if m.endswith("_kb") else 1)) for m in ms)
            return vals + (f" [{len(rows)}]" if kind in BACKENDS else "")
        print(f"{t:6.0f} {cell('sim', ['rss_kb', 'anon_kb', 'fds', 'threads', 'eventfds']):>25} "
              f"{cell('supervisor', ['anon_kb', 'fds', 'threads']):>16} "
              f"{cell('blk', ['rss_kb', 'anon_kb', 'fds', 'threads', 'eventfds', 'grant_pages']):>38} "
              f"{cell('net', ['rss_kb', 'anon_kb', 'fds', 'threads', 'eventfds', 'grant_pages']):>38} "
              f"{cell('blk-dp', ['rss_kb', 'anon_kb', 'fds', 'threads', 'eventfds', 'grant_pages']):>38} "
              f"{cell('net-dp', ['rss_kb', 'anon_kb', 'fds', 'threads', 'eventfds', 'grant_pages']):>38}")
    print("  (rss: VmRSS, anon: RssAnon, in MiB; grants: guest pages mapped; evfd: eventfds, two per "
          "event-channel port)")

    print("\nflatness: max in the first quarter after warm-up -> max in the last quarter (allowed)")
    checked = [t for t in times if warmup <= t <= workload_end]
    if len(checked) < 8:
        print(f"FAIL: only {len(checked)} samples after the warm-up, too few to judge")
        failed = True
    else:
        span = checked[-1] - checked[0]
        q1 = [t for t in checked if t <= checked[0] + span / 4]
        q4 = [t for t in checked if t >= checked[-1] - span / 4]
        for kind in KINDS:
            parts = []
            for m in OVER_TIME.get(kind, CHECKED):
                first_vals = [max(r[m] for r in per_sample[t][kind]) for t in q1 if per_sample[t].get(kind)]
                last_vals = [max(r[m] for r in per_sample[t][kind]) for t in q4 if per_sample[t].get(kind)]
                if not first_vals or not last_vals:
                    parts.append(f"{m} no samples")
                    if kind in ("sim", "supervisor"):
                        failed = True
                    continue
                first, last = max(first_vals), max(last_vals)
                absolute, relative = MARGINS[m]
                allowed = first + max(absolute, int(relative * first))
                ok = last <= allowed
                failed |= not ok
                parts.append(f"{m} {first}->{last} (<={allowed}){'' if ok else ' NOT FLAT'}")
            print(f"  {kind:>10}: " + ", ".join(parts))

    counts = collections.Counter()
    bad = []
    with open(f"{results}/events.csv") as f:
        events = list(csv.DictReader(f))
    first_life = min((float(r["t"]) for r in events if r["event"] == "life"), default=0.0)
    end_of_work = max((float(r["t"]) for r in events if r["event"] == "workload-end"), default=end)
    # Idle: the last sample before the first guest (with the supervisor up), the samples after the
    # workload that see no backend left.
    idle_before = [t for t in times if t < first_life and per_sample[t].get("supervisor")][-1:]
    idle_after = [t for t in times if t > end_of_work and not any(per_sample[t].get(k) for k in BACKENDS)]
    print("\nidle before the first guest -> idle after the last (allowed)")
    for kind, ms in IDLE.items():
        if not idle_before or not idle_after or not all(per_sample[t].get(kind) for t in idle_before + idle_after):
            print(f"  {kind:>10}: FAIL, no idle sample before or after the guests")
            failed = True
            continue
        parts = []
        for m in ms:
            before = max(max(r[m] for r in per_sample[t][kind]) for t in idle_before)
            after = min(max(r[m] for r in per_sample[t][kind]) for t in idle_after)
            allowed = before
            ok = after <= allowed
            failed |= not ok
            parts.append(f"{m} {before}->{after} (<={allowed}){'' if ok else ' NOT BACK'}")
        print(f"  {kind:>10}: " + ", ".join(parts))

    for row in events:
        counts[(row["event"], row["result"])] += 1
        if row["result"] in FAILURES:
            bad.append(row)
    print("\nevents (event result: count)")
    for (event, result), n in sorted(counts.items()):
        print(f"  {event} {result}: {n}")
    for row in events:
        if row["event"] == "backends-started":
            print(f"  backends started by the supervisor: {row['detail']}")
    if bad:
        failed = True
        print(f"\nFAIL: {len(bad)} failed checks, the first ones:")
        for row in bad[:20]:
            print(f"  t={row['t']} guest {row['guest']}: {row['event']} {row['result']} {row.get('detail', '')}")
    print(f"\nsoak: {'FAILED' if failed else 'PASSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
