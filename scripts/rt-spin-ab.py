#!/usr/bin/env python3
"""Interleaved A/B of the paced loop's spin window (docs/performance.md, issue 15 fifth pass).

Runs `nanoecr-bench --only rt` for one demo at a time at one rate, cycling through the spin
windows given (the order rotates every round, so no setting always follows another), and
appends each demo's record, with the round, the spin window and the load average, to a JSON
lines file; then prints per-setting medians and the per-round comparison with the first setting.

    scripts/rt-spin-ab.py --rate 100 --spins 60,100,150,200 --rounds 10 --out ab100.jsonl
    scripts/rt-spin-ab.py --rate 10 --spins 30,50,70 --rounds 10 --out ab10.jsonl
    scripts/rt-spin-ab.py --summary ab100.jsonl           # summary of a file already written

Each setting's demo is followed by cyclictest at the loop's wake-up interval (and, at 100 kHz,
oslat), as in the rt section.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

RATE_SLOT = {1: 0, 10: 1, 100: 2}


def run_one(bench, rate_khz, spin_us, seconds, tmp):
    runs = ["0", "0", "0"]
    runs[RATE_SLOT[rate_khz]] = "1"
    out = os.path.join(tmp, "rt.json")
    cmd = [bench, "--only", "rt", "--rt-runs", *runs, "--rt-seconds", str(seconds), "--out", out]
    if spin_us is not None:
        cmd += ["--rt-spin-us", str(spin_us)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        res = json.load(f)
    demos = res["details"]["rt"][f"{rate_khz} kHz"]
    return demos[0]


def summary(path):
    recs = [json.loads(line) for line in open(path) if line.strip()]
    spins = []
    for r in recs:
        if r["spin"] not in spins:
            spins.append(r["spin"])
    med = statistics.median

    def col(spin, f):
        return [f(r["demo"]) for r in recs if r["spin"] == spin]

    loads = [float(r["loadavg"].split()[0]) for r in recs]
    rounds = sorted({r["round"] for r in recs})
    print(f"{len(recs)} demos, {len(rounds)} rounds, load average (1 min) {min(loads):.2f}–{max(loads):.2f}")
    head = (
        "| spin µs | demos completed | missed / demo: median (mean) | by class of raw wake-up lateness "
        "(medians) | by cause: late wake-up / spin / work (medians) | cyclictest-equivalent / demo | "
        "lateness p99 µs | raw wake-up p99 µs | control thread CPU | stalls / demo, longest ms | dropped |"
    )
    print(head)
    print("| --- " * (head.count("|") - 1) + "|")
    for s in spins:
        ds = col(s, lambda d: d)
        missed = [d["missed"] for d in ds]
        classes = " / ".join(f"{med([d['class_missed'][k] for d in ds]):.0f}" for k in range(4))
        edges = ds[0]["class_lower_us"]
        causes = " / ".join(
            f"{med([d[k] for d in ds]):.0f}" for k in ("missed_late_wakeup", "missed_spin", "missed_work")
        )
        print(
            f"| {s} | {sum(d['status'] == 'complete' for d in ds)}/{len(ds)} | {med(missed):.0f} "
            f"({statistics.mean(missed):.0f}) | {classes} (edges {', '.join(f'{e:.0f}' for e in edges)}) | "
            f"{causes} | {med([d['cyclictest_ticks_missed'] for d in ds]):.0f} | "
            f"{med([d['p99_us'] for d in ds]):.1f} | {med([d['wakeup_p99_us'] for d in ds]):.1f} | "
            f"{100 * med([d['control_cpu_share'] for d in ds]):.1f} % | {med([d['stalls'] for d in ds]):.0f}, "
            f"{max(d['longest_stall_us'] for d in ds) / 1000:.1f} | {max(d['dropped'] for d in ds)} |"
        )
    base = spins[0]
    for s in spins[1:]:
        fewer = 0
        pairs = 0
        for rnd in rounds:
            a = [r["demo"]["missed"] for r in recs if r["round"] == rnd and r["spin"] == base]
            b = [r["demo"]["missed"] for r in recs if r["round"] == rnd and r["spin"] == s]
            if a and b:
                pairs += 1
                fewer += med(b) < med(a)
        print(f"spin {s} µs missed fewer ticks than {base} µs in {fewer} of {pairs} rounds")
    print("per round, missed (spin: value):")
    for rnd in rounds:
        row = [r for r in recs if r["round"] == rnd]
        cells = ", ".join(f"{r['spin']}: {r['demo']['missed']}" for r in row)
        print(f"  round {rnd} (load {row[0]['loadavg'].split()[0]}): {cells}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="target/release/nanoecr-bench")
    ap.add_argument("--rate", type=int, choices=sorted(RATE_SLOT), help="kHz")
    ap.add_argument("--spins", help="comma-separated spin windows, µs")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", help="JSON lines file to append to")
    ap.add_argument("--summary", help="only summarise this JSON lines file")
    a = ap.parse_args()
    if a.summary:
        summary(a.summary)
        return
    if not (a.rate and a.spins and a.out):
        ap.error("--rate, --spins and --out are needed to measure")
    spins = [float(x) for x in a.spins.split(",")]
    with tempfile.TemporaryDirectory(prefix="rt-spin-ab-") as tmp, open(a.out, "a") as out:
        for rnd in range(a.rounds):
            k = rnd % len(spins)
            order = spins[k:] + spins[:k]
            for s in order:
                load = open("/proc/loadavg").read().strip()
                d = run_one(a.bench, a.rate, s, a.seconds, tmp)
                rec = {"round": rnd, "spin": s, "loadavg": load, "demo": d}
                out.write(json.dumps(rec) + "\n")
                out.flush()
                print(
                    f"round {rnd} spin {s:g}: {d['status']} missed {d['missed']} by class {d['class_missed']} "
                    f"cyclictest classes {d['cyclictest_class_wakeups']} load {load.split()[0]}",
                    file=sys.stderr,
                    flush=True,
                )
    summary(a.out)


if __name__ == "__main__":
    main()
