//! The operating system's timing floor, from `cyclictest` (Debian `rt-tests`), and the competing
//! CPU load used for the "loaded" timing figures.

use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Wake-up latency quantiles of one cyclictest run, µs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Maximum, µs.
    pub max_us: f64,
    /// Cycles measured.
    pub cycles: u64,
    /// SCHED_FIFO priority asked for (0: none; cyclictest only).
    pub priority: u32,
    /// Wake-ups later than one interval (cyclictest only; 0 elsewhere).
    #[serde(default)]
    pub late: u64,
}

/// The SCHED_FIFO priority the control loop asks for (crates/nanoecr-daemon/src/run/control.rs);
/// cyclictest runs at the same one so the floor is measured under the same policy.
pub const LOOP_PRIORITY: u32 = 50;

/// Run `cyclictest -m -q -t1 -p50 -i interval_us -l loops -h hist_max_us` and parse its
/// histogram. Without the privilege for SCHED_FIFO 50, falls back to `-p0` (then cyclictest
/// runs at SCHED_OTHER or its default FIFO priority, whichever it is allowed).
pub fn run(interval_us: u64, loops: u64) -> Result<Latency> {
    run_raw(interval_us, loops).map(|(l, _)| l)
}

/// [`run`], also returning cyclictest's histogram output for figures of its own
/// ([`ticks_missed_equivalent`]).
pub fn run_raw(interval_us: u64, loops: u64) -> Result<(Latency, String)> {
    // Wide enough that overflows are rare even under load; overflows count as the maximum.
    let hist_max_us = (interval_us * 20).clamp(2_000, 100_000);
    let attempt = |prio: u32| {
        Command::new("cyclictest")
            .args(["-m", "-q", "-t1"])
            .arg(format!("-p{prio}"))
            .arg(format!("-i{interval_us}"))
            .arg(format!("-l{loops}"))
            .arg(format!("-h{hist_max_us}"))
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .context("running cyclictest (Debian package rt-tests)")
    };
    let mut out = attempt(LOOP_PRIORITY)?;
    let mut priority = LOOP_PRIORITY;
    if !out.status.success() {
        out = attempt(0)?;
        priority = 0;
    }
    if !out.status.success() {
        bail!("cyclictest failed: {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut l = parse(&text)?;
    l.priority = priority;
    l.late = count_above(&text, interval_us);
    Ok((l, text))
}

/// A cyclictest histogram as printed with `-h`: 1 µs bins (`NNNNNN CCCCCC` lines, a bin `us`
/// holding latencies in [us, us + 1)), then `# Max Latencies:` and `# Histogram Overflows:`.
/// Read once here for every figure taken from it.
struct Histogram {
    /// (lower edge µs, wake-ups), in the printed order (ascending).
    bins: Vec<(u64, u64)>,
    /// Wake-ups beyond the histogram's top.
    overflows: u64,
    max_us: f64,
}

impl Histogram {
    fn read(text: &str) -> Self {
        let mut h = Self { bins: Vec::new(), overflows: 0, max_us: f64::NAN };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# Max Latencies:") {
                h.max_us = rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
            } else if let Some(rest) = line.strip_prefix("# Histogram Overflows:") {
                h.overflows = rest.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
            } else if !line.starts_with('#') {
                let mut it = line.split_whitespace();
                if let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) {
                    if let (Ok(us), Ok(n)) = (a.parse::<u64>(), b.parse::<u64>()) {
                        h.bins.push((us, n));
                    }
                }
            }
        }
        h
    }

    /// The histogram's top, µs: where overflows are counted (a lower bound of their lateness).
    fn top_us(&self) -> f64 {
        self.bins.iter().map(|&(us, _)| us as f64 + 1.0).fold(0.0, f64::max)
    }
}

/// Parse cyclictest's histogram output (`NNNNNN CCCCCC` lines of 1 µs bins, then `# Max
/// Latencies:` and `# Histogram Overflows:`).
pub fn parse(text: &str) -> Result<Latency> {
    let Histogram { bins, overflows, max_us } = Histogram::read(text);
    let in_hist: u64 = bins.iter().map(|b| b.1).sum();
    let total = in_hist + overflows;
    if total == 0 {
        bail!("cyclictest printed no histogram");
    }
    let q = |q: f64| -> f64 {
        let target = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(us, n) in &bins {
            seen += n;
            if seen >= target {
                return us as f64;
            }
        }
        max_us
    };
    Ok(Latency { p50_us: q(0.5), p99_us: q(0.99), p999_us: q(0.999), max_us, cycles: total, priority: 0, late: 0 })
}

/// Wake-ups of a cyclictest histogram later than `threshold_us` (1 µs bins, so a bin `us`
/// holds latencies in [us, us + 1)); overflows (beyond the histogram, which is always wider than
/// one interval here) count as late.
pub fn count_above(text: &str, threshold_us: u64) -> u64 {
    let h = Histogram::read(text);
    h.overflows + h.bins.iter().filter(|&&(us, _)| us >= threshold_us).map(|&(_, n)| n).sum::<u64>()
}

/// What one wake-up `us` µs late from sleep costs a loop of sample period `tick_us` that sets
/// its timer `spin_us` before each deadline and serves `batch` ticks per wake-up: its first tick
/// starts max(0, L − spin) late and every tick due meanwhile ends late, ⌊max(0, L − spin) /
/// tick⌋, but at most the wake-up's own `batch` ticks: past one wake-up period the simulated
/// rig's schedule moves instead of running the ticks slept through late (the control loop's
/// catch-up policy, `moved_ticks` in the diagnostics), as cyclictest's own timer thread advances
/// `next` by whole intervals until it is past `now` (rt-tests, src/cyclictest/cyclictest.c,
/// `timerthread`: `while (tsgreater(&now, &next))`).
fn wakeup_cost(us: f64, tick_us: f64, spin_us: f64, batch: u64) -> u64 {
    (((us - spin_us).max(0.0) / tick_us).floor() as u64).min(batch.max(1))
}

/// The ticks a control loop of sample period `tick_us`, spin window `spin_us` and `batch` ticks
/// per wake-up would have missed had its wake-ups come as late as cyclictest's: the like-for-like
/// counterpart of the loop's missed deadlines, [`wakeup_cost`] summed over cyclictest's
/// histogram. Each 1 µs bin counts at its lower edge and each overflow at the histogram's top,
/// so the figure is a lower bound (it never flatters the loop).
pub fn ticks_missed_equivalent(text: &str, tick_us: f64, spin_us: f64, batch: u64) -> u64 {
    let cost = |us: f64| wakeup_cost(us, tick_us, spin_us, batch);
    let h = Histogram::read(text);
    h.bins.iter().map(|&(us, n)| n * cost(us as f64)).sum::<u64>() + h.overflows * cost(h.top_us())
}

/// cyclictest's wake-ups in the classes of a loop's lateness split (`nanoecr_core::LatenessSplit`:
/// class k from `lower_us[k]` µs up to `lower_us[k + 1]`, the last everything above), and per
/// class the ticks they would have cost that loop ([`wakeup_cost`] each). A 1 µs bin goes to the
/// class of its lower edge, overflows (beyond the histogram's top, always ≥ 2 ms here) to the last
/// class at the top.
pub fn split(text: &str, lower_us: [f64; 4], tick_us: f64, spin_us: f64, batch: u64) -> ([u64; 4], [u64; 4]) {
    let cost = |us: f64| wakeup_cost(us, tick_us, spin_us, batch);
    let class = |us: f64| (1..4).rev().find(|&k| us >= lower_us[k]).unwrap_or(0);
    let h = Histogram::read(text);
    let mut wakeups = [0u64; 4];
    let mut ticks = [0u64; 4];
    for &(us, n) in &h.bins {
        let us = us as f64;
        wakeups[class(us)] += n;
        ticks[class(us)] += n * cost(us);
    }
    wakeups[3] += h.overflows;
    ticks[3] += h.overflows * cost(h.top_us());
    (wakeups, ticks)
}

/// Busy-looping shell processes, one per CPU, killed (by their own pids) when dropped.
pub struct CpuLoad {
    children: Vec<Child>,
}

impl CpuLoad {
    /// Start `n` busy loops.
    pub fn start(n: usize) -> Result<Self> {
        let mut load = Self { children: Vec::with_capacity(n) };
        for _ in 0..n {
            let child = Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting a busy-loop load process")?;
            load.children.push(child);
        }
        // Let the scheduler see them as CPU hogs before measuring.
        std::thread::sleep(std::time::Duration::from_millis(200));
        Ok(load)
    }
}

impl Drop for CpuLoad {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_histogram_quantiles() {
        let text = "# Histogram\n000005 000090\n000006 000009\n000040 000001\n# Total: 000000100\n\
                    # Max Latencies: 00040\n# Histogram Overflows: 00000\n";
        let l = parse(text).expect("parses");
        assert_eq!(l.cycles, 100);
        assert_eq!(l.p50_us, 5.0);
        assert_eq!(l.p99_us, 6.0);
        assert_eq!(l.p999_us, 40.0);
        assert_eq!(l.max_us, 40.0);
        // Late means ≥ the interval: 6 µs and 40 µs against a 6 µs interval, plus 2 overflows.
        let with_overflow = text.replace("Overflows: 00000", "Overflows: 00002");
        assert_eq!(count_above(&with_overflow, 6), 12);
        assert_eq!(count_above(text, 41), 0);
    }

    #[test]
    fn equivalent_missed_ticks_charge_lateness_past_the_spin_window_up_to_one_wake_ups_ticks() {
        // 10 µs ticks, 30 µs spin, 40 ticks per wake-up: 5 and 6 µs cost nothing, 40 µs costs
        // ⌊10 / 10⌋ = 1 tick, 95 µs costs ⌊65 / 10⌋ = 6 ticks each, and an overflow past a 100 µs
        // top ⌊70 / 10⌋ = 7.
        let text = "000005 000090\n000006 000009\n000040 000001\n000095 000002\n000099 000000\n\
                    # Max Latencies: 00200\n# Histogram Overflows: 00003\n";
        assert_eq!(ticks_missed_equivalent(text, 10.0, 30.0, 40), 1 + 2 * 6 + 3 * 7);
        // With 4 ticks per wake-up the 95 µs wake-ups and the overflows cost their wake-up's 4.
        assert_eq!(ticks_missed_equivalent(text, 10.0, 30.0, 4), 1 + 2 * 4 + 3 * 4);
        // 100 µs ticks (10 kHz, one per wake-up): a 1.23 ms wake-up costs its own tick, not the
        // 12 due in it: the loop moves the ticks slept through, as cyclictest skips those periods.
        let stall = "001230 000001\n# Histogram Overflows: 00000\n";
        assert_eq!(ticks_missed_equivalent(stall, 100.0, 30.0, 1), 1);
        assert_eq!(ticks_missed_equivalent(stall, 100.0, 30.0, 40), 12);
        assert_eq!(ticks_missed_equivalent(text, 1000.0, 30.0, 1), 0);
    }

    #[test]
    fn the_split_puts_each_wake_up_in_its_lateness_class_and_sums_to_the_whole() {
        // 10 µs ticks, 30 µs spin, 100 µs wake-ups: classes from 0, 30, 100 and 1000 µs.
        let text = "000005 000090\n000029 000004\n000030 000002\n000099 000001\n000100 000003\n\
                    000999 000001\n001000 000001\n001999 000000\n# Histogram Overflows: 00002\n";
        let (wakeups, ticks) = split(text, [0.0, 30.0, 100.0, 1000.0], 10.0, 30.0, 10);
        assert_eq!(wakeups, [94, 3, 4, 3]);
        // 30 µs costs 0, 99 µs ⌊69 / 10⌋ = 6; 100 µs 7 each; 999 µs, 1000 µs and each overflow
        // at the 2000 µs top the wake-up's 10 ticks (⌊(L − 30) / 10⌋ would be 96, 97, 197).
        assert_eq!(ticks, [0, 6, 3 * 7 + 10, 10 + 2 * 10]);
        assert_eq!(ticks.iter().sum::<u64>(), ticks_missed_equivalent(text, 10.0, 30.0, 10));
        assert_eq!(wakeups[2] + wakeups[3], count_above(text, 100), "cyclictest's late wake-ups");
        // 1 kHz: the third class (≥ 1 ms period, < 1 ms) is empty by construction.
        let (w, _) = split(text, [0.0, 30.0, 1000.0, 1000.0], 1000.0, 30.0, 1);
        assert_eq!(w, [94, 7, 0, 3]);
    }
}
