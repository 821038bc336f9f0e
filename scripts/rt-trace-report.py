#!/usr/bin/env python3
"""Report on one thread's wake-ups in an ftrace text dump of sched_switch, sched_wakeup,
hrtimer_start and hrtimer_expire_entry (scripts/rt-trace.sh, monotonic trace clock): how late
its sleep's timer fired (expiry → interrupt: the CPU had interrupts off, was halted, or the
hypervisor was not running it), wake-up → running delay (what runs on the CPU in the kernel
first, since a SCHED_FIFO thread preempts any SCHED_OTHER task in user space at once), both
end to end, and which task held the CPU when a wait exceeded 30 µs. Several thread names,
comma-separated, are reported one after the other from the same trace (the loop and cyclictest
in the same minute)."""
import bisect
import collections
import re
import sys

LINE = re.compile(r"^\s*(.+?)-(\d+)\s+\[(\d+)\]\s+\S+\s+([\d.]+): (\w+): (.*)$")
FIELDS = re.compile(r"(\w+)=(\S+)")
# Waits longer than this are listed one by one with what their CPU logged meanwhile.
LONG_US = 500


def quantiles(vals):
    vals = sorted(vals)
    q = lambda p: vals[min(len(vals) - 1, int(p * len(vals)))]
    return (
        f"p50 {q(0.5):.0f}, p99 {q(0.99):.0f}, p99.9 {q(0.999):.0f}, max {vals[-1]:.0f}; "
        f"> 30 µs: {sum(v > 30 for v in vals)}, > 100 µs: {sum(v > 100 for v in vals)}, "
        f"> 1 ms: {sum(v > 1000 for v in vals)}"
    )


def report(thread, events, per_cpu):
    wakeups = collections.Counter(
        int(d["pid"]) for _, _, ev, _, _, d in events if ev == "sched_wakeup" and d.get("comm") == thread
    )
    if not wakeups:
        print(f"no wake-ups of a thread named {thread!r} in the trace")
        return
    pid = wakeups.most_common(1)[0][0]
    on_cpu = {}
    pending = None
    delays = []
    preempted_by = collections.Counter()
    long_waits = []
    # The thread's sleep timers (hrtimer_wakeup) by address → expiry, ns; then per wake-up the
    # expiry → interrupt lateness and who was on that CPU when the interrupt came.
    timers = {}
    fired = []
    fired_on = collections.Counter()
    expiry = None
    end_to_end = []
    for ts, cpu, ev, ctx_pid, ctx_comm, d in events:
        if ev == "sched_switch":
            on_cpu[cpu] = d["next_comm"]
            if int(d["next_pid"]) == pid and pending is not None:
                delays.append(((ts - pending) * 1e6, d["prev_comm"]))
                if delays[-1][0] > LONG_US:
                    long_waits.append((pending, ts, cpu, d["prev_comm"]))
                if expiry is not None:
                    end_to_end.append(ts * 1e6 - expiry / 1e3)
                pending = None
                expiry = None
            if int(d["prev_pid"]) == pid and d["prev_state"].startswith("R"):
                preempted_by[d["next_comm"]] += 1
        elif ev == "sched_wakeup" and int(d["pid"]) == pid:
            pending = ts
        elif ev == "hrtimer_start" and ctx_pid == pid and d.get("function") == "hrtimer_wakeup":
            timers[d["hrtimer"]] = int(d["expires"])
        elif ev == "hrtimer_expire_entry" and d.get("function") == "hrtimer_wakeup" and d["hrtimer"] in timers:
            expiry = timers.pop(d["hrtimer"])
            late_us = (int(d["now"]) - expiry) / 1e3
            fired.append(late_us)
            if late_us > 30:
                # The event's own context is the task the interrupt found running: exact, where
                # `on_cpu` depends on every switch being logged (on this VM's kernel CPU 1 logs
                # no switch out of its idle task; issue 15's seventh pass).
                fired_on["idle" if ctx_comm.startswith("<idle>") else ctx_comm] += 1
    # The first and last wake-ups are the thread's start and its exit, not its periodic work.
    delays = delays[1:-1]
    if not delays:
        print(f"{thread}: the thread never ran after a periodic wake-up")
        return
    print(f"{thread} (pid {pid}): {len(delays)} wake-ups followed by a logged switch to it, of {wakeups[pid]}")
    if len(delays) + 2 < wakeups[pid]:
        # A kernel that logs no switch out of one CPU's idle task (this VM's CPU 1): the
        # wake-up → running figures and who held the CPU cover only the wake-ups elsewhere.
        print("  (the rest were switched in without a logged sched_switch: wake-up → running covers only these)")
    if fired:
        print(f"  timer expiry → interrupt, µs: {quantiles(fired[1:-1] or fired)}")
        print(f"    fired > 30 µs late, by the task on that CPU: {dict(fired_on.most_common(8))}")
    print(f"  wake-up → running, µs: {quantiles([v for v, _ in delays])}")
    if end_to_end:
        print(f"  timer expiry → running, µs: {quantiles(end_to_end[1:-1] or end_to_end)}")
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


def main(threads, path):
    events = []
    with open(path) as f:
        for ln in f:
            m = LINE.match(ln)
            if not m:
                continue
            ctx_comm, ctx_pid, cpu, ts, ev, rest = m.groups()
            events.append((float(ts), int(cpu), ev, int(ctx_pid), ctx_comm, dict(FIELDS.findall(rest))))
    # Per CPU: the times of its events, to tell a CPU that ran something else during a long wait
    # from one that logged nothing at all (the hypervisor was not running that vCPU).
    per_cpu = collections.defaultdict(list)
    for ts, cpu, _, _, _, _ in events:
        per_cpu[cpu].append(ts)
    for thread in threads.split(","):
        report(thread, events, per_cpu)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: rt-trace-report.py <thread name>[,<thread name>…] <trace.txt>")
    main(sys.argv[1], sys.argv[2])
