#!/usr/bin/env python3
"""Report on one thread's wake-ups in an ftrace text dump of sched_switch and sched_wakeup
(scripts/rt-trace.sh): wake-up → running delay quantiles, and which task held the CPU when a
wake-up waited more than 30 µs (the control loop's spin window) — the task that was on the CPU
in the kernel, since a SCHED_FIFO thread preempts any SCHED_OTHER task in user space at once."""
import bisect
import collections
import re
import sys

LINE = re.compile(r"^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (\w+): (.*)$")
FIELDS = re.compile(r"(\w+)=(\S+)")
# Waits longer than this are listed one by one with what their CPU logged meanwhile.
LONG_US = 500


def main(thread, path):
    events = []
    wakeups = collections.Counter()
    with open(path) as f:
        for ln in f:
            m = LINE.match(ln)
            if not m:
                continue
            _, _, cpu, ts, ev, rest = m.groups()
            d = dict(FIELDS.findall(rest))
            events.append((float(ts), int(cpu), ev, d))
            if ev == "sched_wakeup" and d.get("comm") == thread:
                wakeups[int(d["pid"])] += 1
    if not wakeups:
        sys.exit(f"no wake-ups of a thread named {thread!r} in the trace")
    pid = wakeups.most_common(1)[0][0]
    on_cpu = {}
    pending = None
    delays = []
    preempted_by = collections.Counter()
    # Per CPU: the times of its events, to tell a CPU that ran something else during a long wait
    # from one that logged nothing at all (the hypervisor was not running that vCPU).
    per_cpu = collections.defaultdict(list)
    for ts, cpu, _, _ in events:
        per_cpu[cpu].append(ts)
    long_waits = []
    for ts, cpu, ev, d in events:
        if ev == "sched_switch":
            on_cpu[cpu] = d["next_comm"]
            if int(d["next_pid"]) == pid and pending is not None:
                delays.append(((ts - pending) * 1e6, d["prev_comm"]))
                if delays[-1][0] > LONG_US:
                    long_waits.append((pending, ts, cpu, d["prev_comm"]))
                pending = None
            if int(d["prev_pid"]) == pid and d["prev_state"].startswith("R"):
                preempted_by[d["next_comm"]] += 1
        elif ev == "sched_wakeup" and int(d["pid"]) == pid:
            pending = ts
    # The first and last wake-ups are the thread's start and its exit, not its periodic work.
    delays = delays[1:-1]
    if not delays:
        sys.exit("the thread never ran after a periodic wake-up")
    vals = sorted(v for v, _ in delays)
    q = lambda p: vals[min(len(vals) - 1, int(p * len(vals)))]
    print(f"{thread} (pid {pid}): {len(vals)} wake-ups")
    print(
        f"  wake-up → running, µs: p50 {q(0.5):.0f}, p99 {q(0.99):.0f}, p99.9 {q(0.999):.0f}, "
        f"max {vals[-1]:.0f}; > 30 µs: {sum(v > 30 for v in vals)}, > 100 µs: {sum(v > 100 for v in vals)}"
    )
    print(f"  preempted while runnable: {sum(preempted_by.values())} {dict(preempted_by.most_common(5))}")
    n = collections.Counter()
    total = collections.Counter()
    worst = collections.defaultdict(float)
    for v, who in delays:
        if v > 30:
            n[who] += 1
            total[who] += v
            worst[who] = max(worst[who], v)
    print("  wake-ups that waited > 30 µs, by the task that held the CPU: count, total µs, worst µs")
    for who, c in n.most_common(12):
        print(f"    {who:16s} {c:6d} {total[who]:9.0f} {worst[who]:7.0f}")
    print(f"  waits > {LONG_US} µs: start s, µs, CPU, task that held it, events that CPU logged during the wait")
    silent = 0
    for start, end, cpu, who in long_waits:
        ts = per_cpu[cpu]
        inside = bisect.bisect_left(ts, end) - bisect.bisect_right(ts, start)
        silent += inside == 0
        print(f"    {start:.6f} {(end - start) * 1e6:7.0f}  cpu {cpu}  {who:16s} {inside}")
    print(f"  of which with no event on their CPU meanwhile (a vCPU not running, or one task in the kernel): {silent}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: rt-trace-report.py <thread name> <trace.txt>")
    main(sys.argv[1], sys.argv[2])
