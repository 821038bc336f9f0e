#!/usr/bin/env bash
# Does an open browser page cost the control loop anything at 100 kHz? Runs the demo shortened
# to 8.5 s (as the browser test does) at 100 kHz N times with the page open (nanoecr ui + headless
# chromium showing it) and N times without (neither running), alternating, on one release
# nanoecrd; prints missed deadlines / ticks, drops and the load average per run, and the
# daemon's fan-out cost per `samples` batch (docs/performance.md, "The browser view").
# Usage: cargo build --release -p nanoecr-cli -p nanoecr-daemon && scripts/ui-page-cost.sh [N]
set -euo pipefail
N=${1:-6}
B=${BIN_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target/release}
D=$(mktemp -d /tmp/ui-page-cost.XXXXXX)
chmod 700 "$D"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"; }
trap cleanup EXIT
sed -e 's/rate_hz = 1000/rate_hz = 100000/' -e 's/load_s = 10.0/load_s = 3.0/' -e 's/hold_s = 10.0/hold_s = 2.0/' \
    -e 's/unload_s = 10.0/unload_s = 3.0/' -e 's/settle_s = 2.0/settle_s = 0.5/' \
    -e "s/^backend = \"sim\"/backend = \"sim\"\nrig = \"ui-page-cost-$$\"/" \
    "$(dirname "$0")/../config/demo.toml" > "$D/run.toml"
"$B/nanoecrd" --socket "$D/d.sock" --out-dir "$D/runs" --log-format json 2> "$D/daemon.log" > /dev/null &
pids+=($!)
until grep -q "nanoecrd ready" "$D/daemon.log"; do sleep 0.1; done
printf "%-3s %-8s %8s %9s %7s %8s %-12s %s\n" run page missed ticks missed% dropped "loadavg(1m)" "end"
for i in $(seq 1 $((2 * N))); do
    mode=without; ((i % 2 == 1)) && mode=with
    ui=; chrome=
    if [ $mode = with ]; then
        "$B/nanoecr" ui --socket "$D/d.sock" > "$D/url" 2> "$D/ui.log" & ui=$!
        pids+=("$ui")
        until [ -s "$D/url" ]; do sleep 0.1; done
        chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-dev-shm-usage \
            --remote-debugging-port=0 --window-size=1400,1500 --user-data-dir="$D/profile" \
            "$(head -1 "$D/url")" > /dev/null 2>&1 & chrome=$!
        pids+=("$chrome")
        # The page subscribes as it loads; give it that moment (a measurement, not a test).
        sleep 3
    fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$B/nanoecr" submit --socket "$D/d.sock" --watch --json "$D/run.toml" > "$D/out.json" || true
    python3 - "$D/out.json" "$i" "$mode" "$load" <<'PY'
import json, sys
ends = [json.loads(l) for l in open(sys.argv[1]) if '"run.end"' in l]
if not ends:
    sys.exit(f"{sys.argv[2]:<3} {sys.argv[3]:<8} no run (refused: see above)")
end = ends[-1]["params"]["summary"]
m, t = end["missed_deadlines"], end["ticks"]
print(f"{sys.argv[2]:<3} {sys.argv[3]:<8} {m:>8} {t:>9} {100*m/t:>6.3f}% {end['dropped']:>8} {sys.argv[4]:<12} {end.get('end_reason')}")
PY
    [ -n "$chrome" ] && kill "$chrome" && wait "$chrome" 2>/dev/null || true
    [ -n "$ui" ] && kill "$ui" && wait "$ui" 2>/dev/null || true
    rm -f "$D/url"
done
echo "fan-out cost per samples batch (build note + serialise + queue to every subscriber):"
grep "fan-out cost" "$D/daemon.log" | python3 -c '
import json, sys
for l in sys.stdin:
    j = json.loads(l)
    f = j.get("fields", j)
    print("  batches %s  mean %.1f µs  max %.1f µs  %s B per line" % (f.get("batches"), f.get("mean_us", 0), f.get("max_us", 0), f.get("mean_bytes")))'
