//! Control-loop timing in real time (paced runs through `start_run`) at 1, 10 and 100 kHz, idle
//! and with a busy loop competing on every CPU, next to cyclictest's floor at the same interval.
//!
//! Lateness is wake-up minus deadline as the loop records it (`/entry/diagnostics/loop_lateness`,
//! a log₂ histogram; p99.9 is interpolated inside its bin): one value per wake-up, which is one
//! per tick at 1 and 10 kHz and one per batch at 100 kHz (the loop wakes every
//! `acquisition.wakeup_period_us` there, 400 µs by default: 40 ticks). A missed deadline is a tick whose work ended after the next tick's deadline,
//! counted per tick at every rate; the missed % is of ticks. The ticks by which host stalls moved
//! the simulated rig's schedule (the loop's catch-up policy: not run late, so not missed) have a
//! row of their own.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use toml_edit::Value;

use crate::cyclictest::{self, CpuLoad, Latency};
use crate::report::Row;
use crate::{configs, e2e};

/// One paced run's timing.
#[derive(Debug, Clone, Serialize)]
pub struct LoopTiming {
    /// Lateness quantiles and maximum, µs.
    pub latency: Latency,
    /// Ticks whose work ended after the next deadline.
    pub missed: u64,
    /// Ticks by which stalls moved the simulated rig's schedule (`moved_ticks`).
    pub moved: u64,
    /// Ticks run.
    pub ticks: u64,
    /// Samples dropped (ring full).
    pub dropped: u64,
    /// Whether the loop got SCHED_FIFO.
    pub realtime: bool,
    /// Final status (a timing-interlock abort would show here; the section switches them off).
    pub status: String,
}

/// One paced run of `config`, read back from its file.
fn paced(config: &Path, out: &Path) -> Result<LoopTiming> {
    let (summary, _) = e2e::run_in_process(config, out, false)?;
    let rf = nanoecr_store::read_run(out).with_context(|| format!("reading {}", out.display()))?;
    let d = rf.diagnostics.as_ref().with_context(|| format!("{} has no /entry/diagnostics", out.display()))?;
    let h = &d.loop_lateness;
    let q = |p: f64| h.quantile_us(p).unwrap_or(f64::NAN);
    let _ = std::fs::remove_file(out);
    Ok(LoopTiming {
        latency: Latency {
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: h.max_us,
            cycles: h.total,
            priority: if d.realtime_scheduling { cyclictest::LOOP_PRIORITY } else { 0 },
            late: d.late_wakeups,
        },
        missed: d.missed_deadlines,
        moved: d.moved_ticks,
        ticks: d.ticks,
        dropped: summary.dropped,
        realtime: d.realtime_scheduling,
        status: summary.status.name().to_string(),
    })
}

/// The timing section.
pub fn section(quick: bool, tmp: &Path) -> Result<(Vec<Row>, serde_json::Value)> {
    let base = configs::demo_text()?;
    let reps = if quick { 1 } else { 3 };
    // Segment length (three segments after a 1 s settle) and cyclictest duration, s, per rate:
    // ≥ 10⁴ ticks at 1 kHz (p99.9 from ten late ticks), ≥ 4·10⁵ at 100 kHz, and the section
    // near three and a half minutes in all.
    let lengths = |rate_hz: f64| -> (f64, f64) {
        match (quick, rate_hz < 5_000.0) {
            (true, true) => (1.0, 2.0),
            (true, false) => (0.4, 1.0),
            (false, true) => (3.0, 10.0),
            (false, false) => (1.0, 3.0),
        }
    };
    let ncpu = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    for loaded in [false, true] {
        let load_label = if loaded { "loaded" } else { "idle" };
        // The competing load lives for the whole loaded half and is killed when dropped.
        let _load = if loaded { Some(CpuLoad::start(ncpu)?) } else { None };
        for rate_hz in [1_000.0, 10_000.0, 100_000.0] {
            let (segment_s, cyclictest_s) = lengths(rate_hz);
            let mut edits = configs::program(rate_hz, 1.0, segment_s);
            // Measure the whole run: without this a loaded 100 kHz run could stop itself at a
            // timing interlock (doing its job) and cut the measurement short.
            edits.push(("limits", "max_command_gap_ms", Value::from(f64::INFINITY)));
            edits.push(("limits", "max_late_fraction", Value::from(1.0)));
            let text = configs::derive(&base, &edits)?;
            let cfg_path = configs::write(tmp, &format!("timing_{rate_hz}.toml"), &text)?;
            let interval_us = (1e6 / rate_hz).round() as u64;
            let mut ours = Vec::new();
            let mut floor = Vec::new();
            for i in 0..reps {
                eprintln!("   timing: {} kHz {load_label}, run {}/{reps}", rate_hz / 1e3, i + 1);
                ours.push(paced(&cfg_path, &tmp.join(format!("timing_{rate_hz}_{i}.h5")))?);
                let loops = (cyclictest_s * rate_hz) as u64;
                floor.push(cyclictest::run(interval_us, loops)?);
            }
            let label = format!("{} kHz {load_label}", rate_hz / 1e3);
            let col = |f: &dyn Fn(&LoopTiming) -> f64| ours.iter().map(f).collect::<Vec<f64>>();
            let fcol = |f: &dyn Fn(&Latency) -> f64| floor.iter().map(f).collect::<Vec<f64>>();
            let ct_p99 = crate::report::median(&fcol(&|l| l.p99_us));
            let rt = ours.iter().all(|o| o.realtime);
            let sched = if rt { "loop SCHED_FIFO 50" } else { "loop SCHED_OTHER (FIFO refused)" };
            let is_100k = rate_hz >= 100_000.0;
            let mut p99 = Row::new("timing", format!("{label}: loop lateness p99"), "µs", col(&|o| o.latency.p99_us))
                .note(format!("{sched}; cyclictest p99 {ct_p99:.0} µs"));
            if is_100k {
                p99 = p99.target(format!("≤ 2 × cyclictest p99 ({:.0} µs)", 2.0 * ct_p99), |v| v <= 2.0 * ct_p99);
            }
            let mut missed = Row::new(
                "timing",
                format!("{label}: missed deadlines"),
                "%",
                col(&|o| 100.0 * o.missed as f64 / o.ticks.max(1) as f64),
            )
            .note(format!("of {} ticks", ours.first().map_or(0, |o| o.ticks)));
            let mut dropped =
                Row::new("timing", format!("{label}: dropped samples"), "samples", col(&|o| o.dropped as f64));
            if is_100k {
                missed = missed.target("< 0.01 %", |v| v < 0.01);
                dropped = dropped.target("0", |v| v == 0.0);
            }
            let batch = nanoecr_daemon::run::control::ticks_per_wakeup(
                1.0 / rate_hz,
                nanoecr_core::config::DEFAULT_WAKEUP_PERIOD_US,
            );
            rows.push(
                Row::new("timing", format!("{label}: loop lateness p50"), "µs", col(&|o| o.latency.p50_us)).note(
                    format!(
                        "per wake-up ({batch} tick{} each, {} wake-ups)",
                        if batch == 1 { "" } else { "s" },
                        ours.first().map_or(0, |o| o.latency.cycles)
                    ),
                ),
            );
            rows.push(p99);
            rows.push(Row::new("timing", format!("{label}: loop lateness p99.9"), "µs", col(&|o| o.latency.p999_us)));
            rows.push(Row::new("timing", format!("{label}: loop lateness max"), "µs", col(&|o| o.latency.max_us)));
            rows.push(missed);
            rows.push(
                Row::new(
                    "timing",
                    format!("{label}: ticks moved by stalls"),
                    "%",
                    col(&|o| 100.0 * o.moved as f64 / o.ticks.max(1) as f64),
                )
                .note(
                    "the schedule moved past ticks a stall slept through (catch-up policy): not missed, same samples",
                ),
            );
            rows.push(dropped);
            rows.push(Row::new("timing", format!("{label}: cyclictest p50"), "µs", fcol(&|l| l.p50_us)));
            rows.push(Row::new("timing", format!("{label}: cyclictest p99"), "µs", fcol(&|l| l.p99_us)).note(format!(
                "cyclictest -m -t1 -p{} -i {interval_us} -l {} ({cyclictest_s} s)",
                floor.first().map_or(0, |l| l.priority),
                (cyclictest_s * rate_hz) as u64
            )));
            rows.push(Row::new("timing", format!("{label}: cyclictest p99.9"), "µs", fcol(&|l| l.p999_us)));
            rows.push(Row::new("timing", format!("{label}: cyclictest max"), "µs", fcol(&|l| l.max_us)));
            details.insert(label, serde_json::json!({ "loop": ours, "cyclictest": floor }));
        }
    }
    Ok((rows, serde_json::Value::Object(details)))
}
