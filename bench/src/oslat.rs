//! The floor for a thread that busy-polls, from `oslat` (Debian `rt-tests` ≥ 2.0): a SCHED_FIFO
//! thread reads the TSC in a tight loop on one CPU and histograms the gaps between two reads, so
//! every interrupt, softirq and vCPU stall that takes the CPU from a running thread shows up. A
//! sleeping cyclictest never sees those; the control loop does, while it spins and runs its
//! ticks (issue 15).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// Buckets of 1 µs asked of oslat (`-b`): gaps of a millisecond or more land in the last one.
/// Longer gaps are not interruptions of work but the kernel's real-time throttling of a thread
/// that polls for a whole second (oslat gets no sleep; `sched_rt_runtime_us`), so they are kept
/// apart.
pub const BUCKETS: usize = 1024;

/// Gaps seen by one oslat run on one CPU.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Gaps {
    /// The CPU it polled on.
    pub cpu: usize,
    /// Polling time, s.
    pub duration_s: f64,
    /// Largest gap, µs (throttling included).
    pub max_us: f64,
    /// Counts per 1 µs bucket: `buckets[i]` holds gaps in [i, i + 1) µs; the last also holds
    /// everything longer.
    #[serde(skip)]
    pub buckets: Vec<u64>,
    /// Gaps of at least 10 µs and under 1 ms per second of polling.
    pub over_10us_per_s: f64,
    /// Gaps of at least 1 ms (mostly real-time throttling of oslat itself).
    pub over_1ms: u64,
}

impl Gaps {
    /// Ticks of period `tick_us` a thread that is busy (spinning or working) for `duty` of its
    /// time would have lost to these gaps in `seconds`: Σ ⌊gap / tick⌋ over gaps below 1 ms (each at
    /// its bucket's lower edge, so a lower bound), × duty, scaled from oslat's polling time.
    pub fn ticks_equivalent(&self, tick_us: f64, duty: f64, seconds: f64) -> f64 {
        if self.duration_s <= 0.0 {
            return 0.0;
        }
        let lost: f64 = self
            .buckets
            .iter()
            .enumerate()
            .take(BUCKETS - 1)
            .map(|(lower_us, &n)| n as f64 * (lower_us as f64 / tick_us).floor())
            .sum();
        lost * duty * seconds / self.duration_s
    }
}

/// Whether oslat is on the PATH.
pub fn available() -> bool {
    Command::new("oslat").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Run `oslat -c cpu -D seconds -f 50 -b 1024 -q -z --json=…` and read its JSON.
pub fn run(cpu: usize, seconds: u64, tmp: &Path) -> Result<Gaps> {
    let json = tmp.join("oslat.json");
    let out = Command::new("oslat")
        .arg(format!("-c{cpu}"))
        .arg(format!("-D{seconds}"))
        .arg(format!("-f{}", crate::cyclictest::LOOP_PRIORITY))
        .arg(format!("-b{BUCKETS}"))
        .args(["-q", "-z"])
        .arg(format!("--json={}", json.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running oslat (Debian package rt-tests)")?;
    if !out.success() {
        bail!("oslat failed: {out}");
    }
    let text = std::fs::read_to_string(&json).with_context(|| format!("reading {}", json.display()))?;
    let _ = std::fs::remove_file(&json);
    parse(&text, cpu)
}

/// Parse oslat's `--json` output (rt-tests src/oslat/oslat.c, `write_summary_json`: one entry
/// per thread under `thread`, with `duration` in s, `max` in µs and `histogram` mapping a bucket
/// label to its count; label n holds gaps of [n − 1, n) µs, the last label everything longer).
pub fn parse(text: &str, cpu: usize) -> Result<Gaps> {
    let v: serde_json::Value = serde_json::from_str(text).context("oslat JSON")?;
    let t = v
        .get("thread")
        .and_then(|t| t.as_object())
        .and_then(|t| t.values().next())
        .context("oslat JSON has no thread")?;
    let duration_s = t.get("duration").and_then(|d| d.as_f64()).unwrap_or(0.0);
    let max_us = t.get("max").and_then(|d| d.as_f64()).unwrap_or(f64::NAN);
    let mut buckets = vec![0u64; BUCKETS];
    if let Some(h) = t.get("histogram").and_then(|h| h.as_object()) {
        for (label, n) in h {
            let (Ok(label), Some(n)) = (label.parse::<usize>(), n.as_u64()) else { continue };
            buckets[label.saturating_sub(1).min(BUCKETS - 1)] += n;
        }
    }
    let over_10: u64 = buckets[10..BUCKETS - 1].iter().sum();
    let over_1ms = buckets[BUCKETS - 1];
    Ok(Gaps {
        cpu,
        duration_s,
        max_us,
        over_10us_per_s: if duration_s > 0.0 { over_10 as f64 / duration_s } else { 0.0 },
        over_1ms,
        buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_json_and_charges_gaps_below_a_millisecond() {
        // Shape of `oslat --json` (rt-tests 2.4): label n is [n − 1, n) µs.
        let text = r#"{"thread": {"0": {"cpu": 1, "max": 54009, "duration": 2.0,
            "histogram": {"1": 1000000, "12": 3, "36": 2, "1024": 1}}}}"#;
        let g = parse(text, 1).expect("parses");
        assert_eq!(g.buckets[0], 1_000_000);
        assert_eq!(g.buckets[11], 3);
        assert_eq!(g.buckets[35], 2);
        assert_eq!(g.over_1ms, 1);
        assert_eq!(g.over_10us_per_s, 2.5);
        // 10 µs ticks: 3 gaps of 11 µs cost 1 tick each, 2 of 35 µs 3 each; the millisecond
        // bucket (throttling) is left out. Busy half the time, over 4 s (twice oslat's 2 s).
        assert_eq!(g.ticks_equivalent(10.0, 0.5, 4.0), (3.0 + 6.0) * 0.5 * 2.0);
        assert!(parse("{}", 0).is_err());
    }
}
