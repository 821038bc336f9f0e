#!/bin/bash
# Trace the scheduler (sched_switch, sched_wakeup) and the hrtimers (hrtimer_start,
# hrtimer_expire_entry) in a private tracefs instance while a command runs, then report, for a
# real-time thread's wake-ups, how late its timer fired and who held the CPU when it was woken
# (docs/performance.md, "Real time on a noisy host"). Needs root and tracefs; the instance's
# buffer lives in the kernel, so nothing is written to disk until the command ends.
#
#   scripts/rt-trace.sh nanoecr-control -- target/release/nanoecr run cfg.toml --quiet
#   scripts/rt-trace.sh cyclictest -- cyclictest -m -q -t1 -p50 -i100 -l50000
#   scripts/rt-trace.sh nanoecr-control,cyclictest -- target/release/nanoecr-bench --only rt --rt-runs 0 1 0
#
# The first argument is the thread name (comm, at most 15 characters) to report on, or several
# separated by commas (the last example: the loop and cyclictest in the same minute, as the rt
# section runs them); of several threads with one name the report picks the busiest.
# RT_TRACE_KEEP=<file> keeps the raw trace there (it can be tens of MB: delete it when done).
set -euo pipefail
if [ $# -lt 3 ] || [ "$2" != "--" ]; then
    echo "usage: $0 <thread name> -- <command…>" >&2
    exit 2
fi
thread=$1
shift 2
tracefs=/sys/kernel/tracing
[ -d "$tracefs/instances" ] || { echo "no tracefs at $tracefs" >&2; exit 1; }
inst="$tracefs/instances/nanoecr-rt-$$"
out=$(mktemp /tmp/rt-trace.XXXXXX)
cleanup() {
    [ -d "$inst" ] && { echo 0 > "$inst/tracing_on"; rmdir "$inst"; }
    rm -f "$out"
}
trap cleanup EXIT
mkdir "$inst"
echo 100000 > "$inst/buffer_size_kb"
# The monotonic clock, so that the hrtimer events' expiry times compare with the timestamps.
echo mono > "$inst/trace_clock"
echo 1 > "$inst/events/sched/sched_switch/enable"
echo 1 > "$inst/events/sched/sched_wakeup/enable"
echo 1 > "$inst/events/timer/hrtimer_start/enable"
echo 1 > "$inst/events/timer/hrtimer_expire_entry/enable"
echo 1 > "$inst/tracing_on"
status=0
"$@" || status=$?
echo 0 > "$inst/tracing_on"
cat "$inst/trace" > "$out"
python3 "$(dirname "$0")/rt-trace-report.py" "$thread" "$out"
[ -n "${RT_TRACE_KEEP:-}" ] && cp "$out" "$RT_TRACE_KEEP"
exit $status
