#!/usr/bin/env python3
"""Interleaved A/B of 5 s paced demos, unpinned against `[acquisition] cpu = N`, each demo
followed by cyclictest at the loop's interval for the same time (as the bench's rt section does),
reporting the loop's wake-ups and misses per lateness class (the run file's
`wakeups_by_lateness` / `missed_by_lateness`) next to cyclictest's wake-ups in the same classes
and the ticks they would have cost the loop (docs/performance.md, issue 15's seventh pass).
Needs root (SCHED_FIFO, mlockall) and cyclictest.

  scripts/rt-pin-ab.py --nanoecr target/release/nanoecr --rate 10000 --cpu 1 --rounds 6 --out ab.jsonl
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np


def config(base, rate_hz, cpu, out_dir):
    text = re.sub(r"(?m)^rate_hz = .*$", f"rate_hz = {rate_hz}", base)
    text = re.sub(r"(?m)^settle_s = .*$", "settle_s = 2.0", text)
    for key in ("load_s", "hold_s", "unload_s"):
        text = re.sub(rf"(?m)^{key} = .*$", f"{key} = 1.0", text)
    text = re.sub(r'(?m)^directory = .*$', f'directory = "{out_dir}"', text)
    if cpu is not None:
        text = text.replace("[acquisition]\n", f"[acquisition]\ncpu = {cpu}\n", 1)
    return text


def demo(nanoecr, cfg, out_dir):
    loadavg = open("/proc/loadavg").read().split()[0]
    res = subprocess.run([nanoecr, "run", cfg, "--json", "--quiet", "--out-dir", out_dir],
                         capture_output=True, text=True, check=True)
    summary = json.loads(res.stdout)
    path = summary.get("path") or summary.get("file")
    if path is None:
        h5 = [os.path.join(out_dir, f) for f in os.listdir(out_dir) if f.endswith(".h5")]
        path = max(h5, key=os.path.getmtime)
    with h5py.File(path, "r") as f:
        d = f["/entry/diagnostics"]
        get = lambda k: np.asarray(d[k][()]).tolist()
        row = {
            "loadavg": loadavg,
            "status": summary.get("status"),
            "ticks": int(d["ticks"][()]),
            "missed": int(d["missed_deadlines"][()]),
            "lower_us": get("lateness_class_lower_us"),
            "wakeups": get("wakeups_by_lateness"),
            "missed_by": get("missed_by_lateness"),
            "by_cause": [int(d[k][()]) for k in ("missed_late_wakeup", "missed_spin", "missed_work")],
            "spin_us": float(d["spin_window_us"][()]),
            "cpu": int(d["cpu"][()]),
            "control_cpu_us": float(d["control_cpu_us"][()]),
        }
    os.remove(path)
    return row


def cyclictest(interval_us, seconds, lower_us, tick_us, spin_us):
    loops = int(seconds * 1e6 / interval_us)
    out = subprocess.run(["cyclictest", "-m", "-q", "-t1", "-p50", f"-i{interval_us}", f"-l{loops}", "-h20000"],
                         capture_output=True, text=True, check=True).stdout
    wake = [0] * len(lower_us)
    ticks = [0] * len(lower_us)
    for ln in out.splitlines():
        m = re.match(r"^(\d+)\s+(\d+)$", ln)
        if m:
            lat, n = int(m.group(1)), int(m.group(2))
        else:
            m = re.match(r"^# Histogram Overflows: (\d+)", ln)
            if not m:
                continue
            lat, n = 20000, int(m.group(1))
        c = max(i for i, lo in enumerate(lower_us) if lat >= lo)
        wake[c] += n
        ticks[c] += n * int(max(0.0, lat - spin_us) // tick_us)
    return wake, ticks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nanoecr", required=True)
    ap.add_argument("--base", default=os.path.join(os.path.dirname(__file__), "..", "config", "demo.toml"))
    ap.add_argument("--rate", type=float, default=10000)
    ap.add_argument("--cpu", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    base = open(a.base).read()
    tmp = tempfile.mkdtemp(prefix="rt-pin-ab.")
    cfgs = {}
    for name, cpu in (("unpinned", None), (f"cpu{a.cpu}", a.cpu)):
        p = os.path.join(tmp, f"{name}.toml")
        open(p, "w").write(config(base, int(a.rate), cpu, tmp))
        cfgs[name] = p
    names = list(cfgs)
    tick_us = 1e6 / a.rate
    with open(a.out, "a") as out:
        for r in range(a.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                row = demo(a.nanoecr, cfgs[name], tmp)
                ct_w, ct_t = cyclictest(int(tick_us), 5, row["lower_us"], tick_us, row["spin_us"])
                row.update(round=r, build=name, ct_wakeups=ct_w, ct_ticks=ct_t)
                out.write(json.dumps(row) + "\n")
                out.flush()
                print(r, name, row["loadavg"], "missed", row["missed"], "by class", row["missed_by"],
                      "wake", row["wakeups"], "ct wake", ct_w, "ct eq", ct_t, file=sys.stderr)


if __name__ == "__main__":
    main()
