//! Real time where users run it (issue 15): N consecutive demos of `seconds` each (settle 40 %,
//! then load, hold and unload 20 % each: 2 + 1 + 1 + 1 s at the default 5 s) at 1, 10 and
//! 100 kHz, with the demo's own `[limits]` (timing interlocks on), each followed by cyclictest at
//! the loop's wake-up interval for the same time (tick period × ticks per wake-up, both read from
//! each demo's diagnostics, so `acquisition.wakeup_period_us` is followed wherever it is set). One row per figure and rate, and one compact
//! table printed at the end of the section.
//!
//! Figures per rate: demos completed; missed deadlines per run (ticks whose work ended after the
//! next tick's deadline, plus ticks a device-clocked rig skipped after a stall, none here); the
//! ticks by which stalls moved the simulated rig's schedule (the control loop's catch-up policy:
//! after a wake-up later than one wake-up period has run its ticks, the schedule moves forward
//! by whole ticks instead of running the ticks slept through late, as cyclictest's own timer
//! thread skips the periods it slept through; not missed, counted apart) and the longest run of
//! consecutive missed ticks; wake-up lateness p50/p99/max (median over runs of each run's figure;
//! max is the largest of all runs); cyclictest p50/p99/max and its wake-ups later than one
//! interval; the ratio of missed deadlines to cyclictest's late wake-ups × ticks per wake-up (the
//! issue's figure); stalls listed; samples dropped. And two like-for-like comparisons with
//! cyclictest: the loop's wake-ups later than one wake-up period ÷ cyclictest's (each counted
//! once on both sides), and the loop's missed deadlines ÷ the ticks cyclictest's wake-ups would
//! have cost the loop ([`cyclictest::ticks_missed_equivalent`]: a wake-up less than one period
//! late costs the ticks due in its lateness past the spin window, a later one its own ticks).
//!
//! Where the loop batches (100 kHz) each demo is also followed by oslat on one CPU for the same
//! time ([`oslat`]): the floor for a thread that is running, not sleeping, when the host takes
//! its CPU. The loop's own evidence sits next to both: its raw wake-up lateness (what cyclictest
//! measures), the work time of each wake-up, and its missed ticks by cause (late wake-up, CPU
//! lost while spinning, slow or interrupted work; `nanoecr_core::MissedByCause`).
//!
//! A third table splits the misses by how late the wake-up that lost them came from its sleep
//! (`nanoecr_core::LatenessSplit`: within the spin window, past it but within one wake-up
//! period, one period or more, 1 ms or more), next to cyclictest's wake-ups in the same classes
//! and the ticks those would have cost the loop: the issue's count of cyclictest's wake-ups
//! later than one period sees only the last two classes, so this is what tells which ratio is
//! fair. It also gives the control thread's CPU time over the run's length (`--rt-spin-us`
//! sets `acquisition.spin_us`, whose cost that is where the loop spins).
//!
//! A fourth table gives ratios of totals over all demos of a rate ([`Totals`]) next to the
//! medians of per-run ratios, which stay the judged figures: the issue's figure, the
//! lateness-weighted one, the late wake-ups that slept; the ticks one wake-up a period or more
//! late cost the loop against what cyclictest's would have cost it (one wake-up's ticks each on
//! the simulated rig since the catch-up policy; ≈ L / period before it); and the issue's figure for a
//! loop whose wake-ups came exactly as late as cyclictest's, the host's part of it.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use toml_edit::Value;

use crate::cyclictest::{self, Latency};
use crate::oslat::{self, Gaps};
use crate::report::{median, Row};
use crate::{configs, e2e};

/// How many demos per rate and how long each is.
#[derive(Debug, Clone)]
pub struct RtOptions {
    /// Demos at 1 kHz, 10 kHz and 100 kHz.
    pub runs: [usize; 3],
    /// Length of each demo (and of each cyclictest run), s.
    pub seconds: f64,
    /// `acquisition.wakeup_period_us` of the demos (the config's default when `None`): only
    /// matters where the loop batches (100 kHz here).
    pub wakeup_period_us: Option<f64>,
    /// `acquisition.spin_us` of the demos (the loop's own choice per rate when `None`).
    pub spin_us: Option<f64>,
}

impl Default for RtOptions {
    fn default() -> Self {
        Self { runs: [20, 10, 10], seconds: 5.0, wakeup_period_us: None, spin_us: None }
    }
}

/// One demo and the cyclictest run after it.
#[derive(Debug, Clone, Serialize)]
struct Demo {
    status: String,
    end_reason: String,
    ticks: u64,
    missed: u64,
    skipped: u64,
    /// Ticks by which stalls moved the simulated rig's schedule (not run late, not missed).
    moved: u64,
    /// Longest run of consecutive missed ticks.
    max_late_streak: u64,
    late_wakeups: u64,
    wakeups: u64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    stalls: u64,
    longest_stall_us: f64,
    max_command_gap_us: f64,
    dropped: u64,
    realtime: bool,
    memory_locked: bool,
    page_faults: u64,
    preemptions: u64,
    loadavg: String,
    /// Ticks per wake-up, from the run's diagnostics (ticks ÷ wake-ups).
    ticks_per_wakeup: u64,
    /// The loop's wake-up interval (tick period × ticks per wake-up), µs: cyclictest's `-i`.
    interval_us: u64,
    cyclictest: Latency,
    /// Ticks cyclictest's wake-ups would have cost the loop.
    cyclictest_ticks_missed: u64,
    /// Raw wake-up lateness (sleep returned − asked), µs: p50, p99, max.
    wakeup_p50_us: f64,
    wakeup_p99_us: f64,
    wakeup_max_us: f64,
    /// Work per wake-up (first tick's start → last tick's end), µs: p50, p99, max, mean.
    work_p50_us: f64,
    work_p99_us: f64,
    work_max_us: f64,
    work_mean_us: f64,
    /// Missed ticks by cause: late wake-up, CPU lost while spinning, work.
    missed_late_wakeup: u64,
    missed_spin: u64,
    missed_work: u64,
    /// The spin window the demo ran with, µs.
    spin_us: f64,
    /// Lower edges of the lateness classes, µs: 0, spin, wake-up period, max(1 ms, period).
    class_lower_us: [f64; 4],
    /// The loop's wake-ups that slept, by class of raw lateness.
    class_wakeups: [u64; 4],
    /// The loop's missed ticks by class of the wake-up that lost them.
    class_missed: [u64; 4],
    /// cyclictest's wake-ups in the same classes.
    cyclictest_class_wakeups: [u64; 4],
    /// Ticks cyclictest's wake-ups of each class would have cost the loop.
    cyclictest_class_ticks: [u64; 4],
    /// The control thread's CPU time over its wall time from t0 to the last tick (ticks ×
    /// period): the cost of the spin and the work.
    control_cpu_share: f64,
    /// oslat on one CPU for the same time (batched rates, when installed).
    oslat: Option<Gaps>,
    /// Ticks oslat's gaps would have cost a loop busy for the spin and its work.
    oslat_ticks_missed: Option<f64>,
}

/// Ticks per wake-up of a paced run, from its diagnostics: every wake-up records one lateness,
/// so ticks ÷ wake-ups, rounded (the last wake-up may find the program over after fewer ticks).
fn ticks_per_wakeup(ticks: u64, wakeups: u64) -> u64 {
    if wakeups == 0 {
        return 1;
    }
    ((ticks as f64 / wakeups as f64).round() as u64).max(1)
}

fn demo(cfg_path: &Path, out: &Path, tick_us: f64, seconds: f64, with_oslat: bool) -> Result<Demo> {
    let loadavg = crate::report::proc_line("/proc/loadavg");
    let (summary, _) = e2e::run_in_process(cfg_path, out, false)?;
    let rf = nanoecr_store::read_run(out).with_context(|| format!("reading {}", out.display()))?;
    let d = rf.diagnostics.as_ref().with_context(|| format!("{} has no /entry/diagnostics", out.display()))?;
    let h = &d.loop_lateness;
    let _ = std::fs::remove_file(out);
    // cyclictest runs at the interval the loop actually woke at, so its late wake-ups and the
    // ticks they would cost are counted per the same wake-ups.
    let batch = ticks_per_wakeup(d.ticks, h.total);
    let interval_us = (tick_us * batch as f64).round().max(1.0) as u64;
    let loops = ((seconds * 1e6) / interval_us as f64).round() as u64;
    let (ct, ct_text) = cyclictest::run_raw(interval_us, loops)?;
    let spin_us = d.spin_window_us;
    let split = &d.lateness_split;
    let (ct_class_wakeups, ct_class_ticks) = cyclictest::split(&ct_text, split.lower_us, tick_us, spin_us, batch);
    let w = &d.wakeup_lateness;
    let b = &d.batch_work;
    let oslat = if with_oslat {
        let cpu = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) - 1;
        let dir = out.parent().unwrap_or(Path::new("."));
        Some(oslat::run(cpu, seconds.ceil() as u64, dir)?)
    } else {
        None
    };
    // The share of the time the loop is on its CPU (spin, where it spins, and work), measured:
    // where it batches it no longer spins (issue 15's sixth pass), so the spin window is not it.
    let control_cpu_share = d.control_cpu_us / (d.ticks as f64 * tick_us).max(1.0);
    let duty = control_cpu_share.clamp(0.0, 1.0);
    let oslat_ticks_missed = oslat.as_ref().map(|g| g.ticks_equivalent(tick_us, duty, seconds));
    Ok(Demo {
        status: summary.status.name().to_string(),
        end_reason: summary.end_reason.clone(),
        ticks: d.ticks,
        missed: d.missed_deadlines + d.skipped_ticks,
        skipped: d.skipped_ticks,
        moved: d.moved_ticks,
        max_late_streak: d.max_late_streak,
        late_wakeups: d.late_wakeups,
        wakeups: h.total,
        p50_us: h.quantile_us(0.5).unwrap_or(f64::NAN),
        p99_us: h.quantile_us(0.99).unwrap_or(f64::NAN),
        max_us: h.max_us,
        stalls: d.stalls.len() as u64 + d.stalls_overflow,
        longest_stall_us: d.stalls.iter().map(|s| s.length_us).fold(0.0, f64::max),
        max_command_gap_us: d.max_command_gap_us,
        dropped: summary.dropped,
        realtime: d.realtime_scheduling,
        memory_locked: d.memory_locked,
        page_faults: d.control_page_faults,
        preemptions: d.control_preemptions,
        loadavg,
        ticks_per_wakeup: batch,
        interval_us,
        cyclictest: ct,
        cyclictest_ticks_missed: cyclictest::ticks_missed_equivalent(&ct_text, tick_us, spin_us, batch),
        wakeup_p50_us: w.quantile_us(0.5).unwrap_or(f64::NAN),
        wakeup_p99_us: w.quantile_us(0.99).unwrap_or(f64::NAN),
        wakeup_max_us: w.max_us,
        work_p50_us: b.quantile_us(0.5).unwrap_or(f64::NAN),
        work_p99_us: b.quantile_us(0.99).unwrap_or(f64::NAN),
        work_max_us: b.max_us,
        work_mean_us: b.mean_us().unwrap_or(f64::NAN),
        missed_late_wakeup: d.missed_by_cause.late_wakeup,
        missed_spin: d.missed_by_cause.spin,
        missed_work: d.missed_by_cause.work,
        spin_us,
        class_lower_us: split.lower_us,
        class_wakeups: split.wakeups,
        class_missed: split.missed,
        cyclictest_class_wakeups: ct_class_wakeups,
        cyclictest_class_ticks: ct_class_ticks,
        control_cpu_share,
        oslat,
        oslat_ticks_missed,
    })
}

/// The rt section.
pub fn section(opts: &RtOptions, tmp: &Path) -> Result<(Vec<Row>, serde_json::Value)> {
    let base = configs::demo_text()?;
    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    let have_oslat = oslat::available();
    let mut evidence = vec![
        "| rate | loop raw wake-up p50 / p99 / max µs | cyclictest p50 / p99 / max µs | work per wake-up p50 / p99 / max µs | missed / run by cause: late wake-up, spin, work | cyclictest-equivalent | oslat gaps ≥ 10 µs / s | oslat-equivalent |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    let mut split_table = vec![
        "| rate | spin / wake-up period µs | raw wake-up lateness classes µs | loop wake-ups / run per class | cyclictest wake-ups / run per class | loop missed / run per class | cyclictest-equivalent / run per class | missed after wake-ups ≥ one period ÷ (cyclictest late × ticks/wake-up) | wake-ups ≥ one period that slept ÷ cyclictest's | control thread CPU |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    let mut totals_table = vec![
        "| rate | demos | Σ missed | Σ cyclictest late × ticks/wake-up | missed ÷ (cyclictest late × ticks/wake-up): ratio of totals (median of runs) | missed ÷ cyclictest-equivalent: ratio of totals | wake-ups ≥ one period that slept ÷ cyclictest's: ratio of totals | ticks missed per wake-up ≥ one period late: loop, cyclictest-equivalent | the issue's figure for a loop exactly as late as cyclictest | share of the misses after wake-ups < one period late |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    let mut table = vec![
        "| rate | completed | missed deadlines / run (median, max) | ticks moved by stalls / run (median) | longest late streak (max) | lateness p50 / p99 / max µs | cyclictest p50 / p99 / max µs | late wake-ups / run: loop, cyclictest | missed ÷ (cyclictest late × ticks/wake-up) | late wake-ups ÷ cyclictest's | cyclictest-equivalent missed / run | missed ÷ cyclictest-equivalent | stalls / run | dropped |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    for (rate_hz, n) in [1_000.0, 10_000.0, 100_000.0].into_iter().zip(opts.runs) {
        if n == 0 {
            continue;
        }
        let segment_s = opts.seconds * 0.2;
        let mut edits = configs::program(rate_hz, opts.seconds * 0.4, segment_s);
        edits.push(("output", "directory", Value::from(tmp.display().to_string())));
        if let Some(us) = opts.wakeup_period_us {
            edits.push(("acquisition", "wakeup_period_us", Value::from(us)));
        }
        if let Some(us) = opts.spin_us {
            edits.push(("acquisition", "spin_us", Value::from(us)));
        }
        let text = configs::derive(&base, &edits)?;
        let cfg_path = configs::write(tmp, &format!("rt_{rate_hz}.toml"), &text)?;
        // oslat where the loop batches: there it spins long enough for the CPU to be taken
        // from it while it runs.
        let batched = nanoecr_daemon::run::control::ticks_per_wakeup(
            1.0 / rate_hz,
            opts.wakeup_period_us.unwrap_or(nanoecr_core::config::DEFAULT_WAKEUP_PERIOD_US),
        ) > 1;
        let mut demos = Vec::with_capacity(n);
        for i in 0..n {
            eprintln!("   rt: {} kHz, demo {}/{n}", rate_hz / 1e3, i + 1);
            let out = tmp.join(format!("rt_{rate_hz}_{i}.h5"));
            let d = demo(&cfg_path, &out, 1e6 / rate_hz, opts.seconds, have_oslat && batched)?;
            if d.status != "complete" {
                eprintln!("   rt: demo {} ended {}: {}", i + 1, d.status, d.end_reason);
            }
            demos.push(d);
        }
        // Every demo of a rate wakes at the same interval (same config); the median guards the
        // labels against one demo cut short.
        let batch = median(&demos.iter().map(|d| d.ticks_per_wakeup as f64).collect::<Vec<_>>()).round() as u64;
        let interval_us = median(&demos.iter().map(|d| d.interval_us as f64).collect::<Vec<_>>()).round() as u64;
        let label = format!("{} kHz", rate_hz / 1e3);
        let completed = demos.iter().filter(|d| d.status == "complete").count();
        let col = |f: &dyn Fn(&Demo) -> f64| demos.iter().map(f).collect::<Vec<f64>>();
        let max_of = |f: &dyn Fn(&Demo) -> f64| demos.iter().map(f).fold(f64::NAN, f64::max);
        let ratio = |d: &Demo| d.missed as f64 / ((d.cyclictest.late * d.ticks_per_wakeup) as f64).max(1.0);
        let wakeup_ratio = |d: &Demo| d.late_wakeups as f64 / (d.cyclictest.late as f64).max(1.0);
        let equiv_ratio = |d: &Demo| d.missed as f64 / (d.cyclictest_ticks_missed as f64).max(1.0);
        let ct_p99 = median(&col(&|d| d.cyclictest.p99_us));
        rows.push(
            Row::new("rt", format!("{label}: demos completed"), "runs", vec![completed as f64])
                .note(format!("of {n} × {} s, default [limits]", opts.seconds))
                .target(format!("{n}/{n}"), |v| v as usize == n),
        );
        rows.push(
            Row::new("rt", format!("{label}: missed deadlines per run"), "ticks", col(&|d| d.missed as f64))
                .note(format!("of ≈ {} ticks; max {}", demos[0].ticks, max_of(&|d| d.missed as f64))),
        );
        rows.push(
            Row::new("rt", format!("{label}: ticks moved by stalls per run"), "ticks", col(&|d| d.moved as f64)).note(
                "the simulated rig's schedule moved after wake-ups later than one period (not run late, not \
                 counted missed; the late-tick window counts them)",
            ),
        );
        rows.push(
            Row::new(
                "rt",
                format!("{label}: longest run of consecutive missed ticks"),
                "ticks",
                col(&|d| d.max_late_streak as f64),
            )
            .note(format!("max {}", max_of(&|d| d.max_late_streak as f64))),
        );
        rows.push(Row::new("rt", format!("{label}: lateness p50"), "µs", col(&|d| d.p50_us)));
        rows.push(
            Row::new("rt", format!("{label}: lateness p99"), "µs", col(&|d| d.p99_us))
                .target(format!("≤ 2 × cyclictest p99 ({:.0} µs)", 2.0 * ct_p99), |v| v <= 2.0 * ct_p99),
        );
        rows.push(
            Row::new("rt", format!("{label}: lateness max"), "µs", col(&|d| d.max_us))
                .note(format!("largest of all runs {:.0} µs", max_of(&|d| d.max_us))),
        );
        rows.push(Row::new("rt", format!("{label}: cyclictest p50"), "µs", col(&|d| d.cyclictest.p50_us)));
        rows.push(
            Row::new("rt", format!("{label}: cyclictest p99"), "µs", col(&|d| d.cyclictest.p99_us)).note(format!(
                "cyclictest -m -t1 -p{} -i{interval_us}, {} s",
                demos[0].cyclictest.priority, opts.seconds
            )),
        );
        rows.push(Row::new("rt", format!("{label}: cyclictest max"), "µs", col(&|d| d.cyclictest.max_us)));
        rows.push(Row::new(
            "rt",
            format!("{label}: cyclictest wake-ups later than {interval_us} µs"),
            "per run",
            col(&|d| d.cyclictest.late as f64),
        ));
        rows.push(
            Row::new("rt", format!("{label}: missed ÷ cyclictest late × {batch}"), "ratio", col(&ratio))
                .target("≤ 2", |v| v <= 2.0)
                .note("the issue's figure; denominator at least 1"),
        );
        rows.push(Row::new(
            "rt",
            format!("{label}: loop wake-ups later than {interval_us} µs"),
            "per run",
            col(&|d| d.late_wakeups as f64),
        ));
        rows.push(
            Row::new("rt", format!("{label}: late wake-ups ÷ cyclictest late wake-ups"), "ratio", col(&wakeup_ratio))
                .target("≤ 2", |v| v <= 2.0)
                .note("like for like: each late wake-up counted once; denominator at least 1"),
        );
        rows.push(Row::new(
            "rt",
            format!("{label}: cyclictest-equivalent missed ticks"),
            "per run",
            col(&|d| d.cyclictest_ticks_missed as f64),
        ));
        rows.push(
            Row::new("rt", format!("{label}: missed ÷ cyclictest-equivalent missed"), "ratio", col(&equiv_ratio))
                .target("≤ 2", |v| v <= 2.0)
                .note(
                    "like for like: Σ min(ticks/wake-up, ⌊max(0, L − spin window) / period⌋) over cyclictest's \
                     wake-ups (both skip or move the periods they slept through); denominator at least 1",
                ),
        );
        rows.push(Row::new("rt", format!("{label}: stalls listed"), "per run", col(&|d| d.stalls as f64)));
        rows.push(Row::new(
            "rt",
            format!("{label}: control-thread preemptions"),
            "per run",
            col(&|d| d.preemptions as f64),
        ));
        rows.push(Row::new(
            "rt",
            format!("{label}: control-thread page faults"),
            "per run",
            col(&|d| d.page_faults as f64),
        ));
        rows.push(
            Row::new("rt", format!("{label}: samples dropped"), "samples", col(&|d| d.dropped as f64))
                .target("0", |v| v == 0.0),
        );
        table.push(format!(
            "| {label} | {completed}/{n} | {:.0}, {:.0} | {:.0} | {:.0} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.0}, {:.0} | {:.2} | {:.2} | {:.0} | {:.2} | {:.0} | {:.0} |",
            median(&col(&|d| d.missed as f64)),
            max_of(&|d| d.missed as f64),
            median(&col(&|d| d.moved as f64)),
            max_of(&|d| d.max_late_streak as f64),
            median(&col(&|d| d.p50_us)),
            median(&col(&|d| d.p99_us)),
            max_of(&|d| d.max_us),
            median(&col(&|d| d.cyclictest.p50_us)),
            ct_p99,
            max_of(&|d| d.cyclictest.max_us),
            median(&col(&|d| d.late_wakeups as f64)),
            median(&col(&|d| d.cyclictest.late as f64)),
            median(&col(&ratio)),
            median(&col(&wakeup_ratio)),
            median(&col(&|d| d.cyclictest_ticks_missed as f64)),
            median(&col(&equiv_ratio)),
            median(&col(&|d| d.stalls as f64)),
            max_of(&|d| d.dropped as f64),
        ));
        let osl = |f: &dyn Fn(&Demo) -> Option<f64>| {
            let v: Vec<f64> = demos.iter().filter_map(f).collect();
            if v.is_empty() {
                "–".to_string()
            } else {
                format!("{:.0}", median(&v))
            }
        };
        evidence.push(format!(
            "| {label} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.1} / {:.0} / {:.0} | {:.0}, {:.0}, {:.0} | {:.0} | {} | {} |",
            median(&col(&|d| d.wakeup_p50_us)),
            median(&col(&|d| d.wakeup_p99_us)),
            max_of(&|d| d.wakeup_max_us),
            median(&col(&|d| d.cyclictest.p50_us)),
            ct_p99,
            max_of(&|d| d.cyclictest.max_us),
            median(&col(&|d| d.work_p50_us)),
            median(&col(&|d| d.work_p99_us)),
            max_of(&|d| d.work_max_us),
            median(&col(&|d| d.missed_late_wakeup as f64)),
            median(&col(&|d| d.missed_spin as f64)),
            median(&col(&|d| d.missed_work as f64)),
            median(&col(&|d| d.cyclictest_ticks_missed as f64)),
            osl(&|d| d.oslat.as_ref().map(|g| g.over_10us_per_s)),
            osl(&|d| d.oslat_ticks_missed),
        ));
        // The split by the raw lateness of the wake-up (loop) and of cyclictest's wake-ups, per
        // class: medians over runs of each class's count.
        let lower = demos[0].class_lower_us;
        let class_name = |k: usize| match k {
            0 => format!("< {:.0}", lower[1]),
            3 => format!("≥ {:.0}", lower[3]),
            _ => format!("{:.0}–{:.0}", lower[k], lower[k + 1]),
        };
        let per_class = |f: &dyn Fn(&Demo) -> [u64; 4]| {
            (0..4).map(|k| format!("{:.0}", median(&col(&|d| f(d)[k] as f64)))).collect::<Vec<_>>().join(" / ")
        };
        // The issue's figure on like wake-ups: only the loop's misses after wake-ups cyclictest
        // would count as late (≥ one wake-up period) against cyclictest's count of those.
        let late_class_ratio = |d: &Demo| {
            (d.class_missed[2] + d.class_missed[3]) as f64 / ((d.cyclictest.late * d.ticks_per_wakeup) as f64).max(1.0)
        };
        // Late wake-ups counted once on both sides: the loop's that slept (a wake-up right after
        // a stall's overrun does not sleep), against cyclictest's.
        let slept_late_ratio = |d: &Demo| {
            (d.class_wakeups[2] + d.class_wakeups[3]) as f64
                / (d.cyclictest_class_wakeups[2] + d.cyclictest_class_wakeups[3]).max(1) as f64
        };
        split_table.push(format!(
            "| {label} | {:.0} / {interval_us} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} % |",
            median(&col(&|d| d.spin_us)),
            (0..4).map(class_name).collect::<Vec<_>>().join(" / "),
            per_class(&|d| d.class_wakeups),
            per_class(&|d| d.cyclictest_class_wakeups),
            per_class(&|d| d.class_missed),
            per_class(&|d| d.cyclictest_class_ticks),
            median(&col(&late_class_ratio)),
            median(&col(&slept_late_ratio)),
            100.0 * median(&col(&|d| d.control_cpu_share)),
        ));
        let t = Totals::of(&demos);
        totals_table.push(format!(
            "| {label} | {} | {} | {} | {:.2} ({:.2}) | {:.2} | {:.2} | {:.1}, {:.1} | {:.2} | {:.0} % |",
            demos.len(),
            t.missed,
            t.cyclictest_late_ticks,
            t.issue_ratio(),
            median(&col(&ratio)),
            t.equivalent_ratio(),
            t.slept_late_ratio(),
            t.loop_ticks_per_late_wakeup(),
            t.cyclictest_ticks_per_late_wakeup(),
            t.floor_ratio(),
            100.0 * t.early_share(),
        ));
        rows.push(
            Row::new(
                "rt",
                format!("{label}: missed ÷ cyclictest late × {batch}, ratio of totals"),
                "ratio",
                vec![t.issue_ratio()],
            )
            .note(format!(
                "Σ missed {} ÷ Σ cyclictest late × ticks/wake-up {} over the {} demos; the judged figure is the \
                 median of runs above",
                t.missed,
                t.cyclictest_late_ticks,
                demos.len()
            )),
        );
        rows.push(
            Row::new(
                "rt",
                format!("{label}: missed ÷ cyclictest-equivalent, ratio of totals"),
                "ratio",
                vec![t.equivalent_ratio()],
            )
            .note("Σ missed ÷ Σ cyclictest-equivalent over the demos"),
        );
        rows.push(
            Row::new(
                "rt",
                format!("{label}: ticks missed per loop wake-up ≥ {interval_us} µs late"),
                "ticks",
                vec![t.loop_ticks_per_late_wakeup()],
            )
            .note("Σ misses after wake-ups that slept and came ≥ one wake-up period late ÷ Σ those wake-ups"),
        );
        rows.push(
            Row::new(
                "rt",
                format!("{label}: ticks per cyclictest wake-up ≥ {interval_us} µs late (equivalent)"),
                "ticks",
                vec![t.cyclictest_ticks_per_late_wakeup()],
            )
            .note(
                "what each of cyclictest's late wake-ups would cost the loop (its wake-up's ticks); cyclictest \
                 counts it once",
            ),
        );
        rows.push(
            Row::new(
                "rt",
                format!("{label}: the issue's figure for a loop as late as cyclictest"),
                "ratio",
                vec![t.floor_ratio()],
            )
            .note(
                "Σ cyclictest-equivalent ÷ Σ cyclictest late × ticks/wake-up: what the issue's figure would be if \
                 the loop's wake-ups came exactly as late as cyclictest's (the host's part)",
            ),
        );
        for k in 0..4 {
            rows.push(Row::new(
                "rt",
                format!("{label}: missed after wake-ups {} µs late", class_name(k)),
                "per run",
                col(&|d| d.class_missed[k] as f64),
            ));
            rows.push(Row::new(
                "rt",
                format!("{label}: cyclictest wake-ups {} µs late", class_name(k)),
                "per run",
                col(&|d| d.cyclictest_class_wakeups[k] as f64),
            ));
        }
        rows.push(
            Row::new(
                "rt",
                format!("{label}: missed after wake-ups ≥ {interval_us} µs ÷ cyclictest late × {batch}"),
                "ratio",
                col(&late_class_ratio),
            )
            .note("the issue's figure on the wake-ups it counts; denominator at least 1"),
        );
        rows.push(
            Row::new(
                "rt",
                format!("{label}: wake-ups ≥ {interval_us} µs that slept ÷ cyclictest's"),
                "ratio",
                col(&slept_late_ratio),
            )
            .note("each late wake-up counted once on both sides (a wake-up after a stall's overrun does not sleep)"),
        );
        rows.push(
            Row::new("rt", format!("{label}: control thread CPU"), "%", col(&|d| 100.0 * d.control_cpu_share))
                .note("its CPU time from t0 to the last tick over ticks × period: spin and work"),
        );
        rows.push(
            Row::new("rt", format!("{label}: raw wake-up lateness p99"), "µs", col(&|d| d.wakeup_p99_us))
                .note(format!("sleep returned − asked (deadline − spin); cyclictest p99 {ct_p99:.0} µs")),
        );
        rows.push(Row::new("rt", format!("{label}: work per wake-up p99"), "µs", col(&|d| d.work_p99_us)));
        for (cause, f) in [
            ("a late wake-up", &(|d: &Demo| d.missed_late_wakeup as f64) as &dyn Fn(&Demo) -> f64),
            ("the CPU lost while spinning", &|d: &Demo| d.missed_spin as f64),
            ("slow or interrupted work", &|d: &Demo| d.missed_work as f64),
        ] {
            rows.push(Row::new("rt", format!("{label}: missed after {cause}"), "per run", col(f)));
        }
        details.insert(label, serde_json::to_value(&demos)?);
    }
    let table = table.join("\n")
        + "\n\n"
        + &evidence.join("\n")
        + "\n\n"
        + &split_table.join("\n")
        + "\n\n"
        + &totals_table.join("\n");
    println!("{table}\n");
    details.insert("table".into(), serde_json::Value::String(table));
    Ok((rows, serde_json::Value::Object(details)))
}

/// Sums over the demos of one rate, for ratios of totals next to the medians of per-run ratios
/// (a run with few of cyclictest's late wake-ups swings its own ratio far more than it moves
/// the totals).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Totals {
    /// The loop's missed ticks (late and skipped).
    missed: u64,
    /// cyclictest's wake-ups later than one interval × ticks per wake-up: the issue's denominator.
    cyclictest_late_ticks: u64,
    /// Ticks cyclictest's wake-ups would have cost the loop.
    cyclictest_equivalent: u64,
    /// The loop's wake-ups that slept and came one wake-up period or more late (classes 2 and 3).
    loop_late_slept: u64,
    /// The loop's misses after those wake-ups.
    loop_late_missed: u64,
    /// cyclictest's wake-ups one interval or more late (its classes 2 and 3).
    cyclictest_late: u64,
    /// The ticks those would have cost the loop.
    cyclictest_late_equivalent: u64,
}

impl Totals {
    fn of(demos: &[Demo]) -> Self {
        let mut t = Self::default();
        for d in demos {
            t.missed += d.missed;
            t.cyclictest_late_ticks += d.cyclictest.late * d.ticks_per_wakeup;
            t.cyclictest_equivalent += d.cyclictest_ticks_missed;
            t.loop_late_slept += d.class_wakeups[2] + d.class_wakeups[3];
            t.loop_late_missed += d.class_missed[2] + d.class_missed[3];
            t.cyclictest_late += d.cyclictest_class_wakeups[2] + d.cyclictest_class_wakeups[3];
            t.cyclictest_late_equivalent += d.cyclictest_class_ticks[2] + d.cyclictest_class_ticks[3];
        }
        t
    }

    /// Σ missed ÷ Σ cyclictest late × ticks per wake-up: the issue's figure over all demos
    /// (denominator at least 1, as per run).
    fn issue_ratio(&self) -> f64 {
        self.missed as f64 / self.cyclictest_late_ticks.max(1) as f64
    }

    /// Σ missed ÷ Σ cyclictest-equivalent.
    fn equivalent_ratio(&self) -> f64 {
        self.missed as f64 / self.cyclictest_equivalent.max(1) as f64
    }

    /// Σ the loop's late wake-ups that slept ÷ Σ cyclictest's late wake-ups.
    fn slept_late_ratio(&self) -> f64 {
        self.loop_late_slept as f64 / self.cyclictest_late.max(1) as f64
    }

    /// Ticks the loop missed per wake-up of its own one period or more late (NaN without any).
    fn loop_ticks_per_late_wakeup(&self) -> f64 {
        self.loop_late_missed as f64 / self.loop_late_slept as f64
    }

    /// Ticks each of cyclictest's late wake-ups would have cost the loop (NaN without any).
    fn cyclictest_ticks_per_late_wakeup(&self) -> f64 {
        self.cyclictest_late_equivalent as f64 / self.cyclictest_late as f64
    }

    /// The issue's figure for a loop whose wake-ups came exactly as late as cyclictest's: Σ
    /// cyclictest-equivalent ÷ Σ cyclictest late × ticks per wake-up. What is above it is the
    /// loop's; this much is the host's lateness, counted in ticks on one side and wake-ups on
    /// the other.
    fn floor_ratio(&self) -> f64 {
        self.cyclictest_equivalent as f64 / self.cyclictest_late_ticks.max(1) as f64
    }

    /// The share of the loop's misses after wake-ups less than one period late (its spin or
    /// lead window, the CPU lost meanwhile, its work): the part cyclictest's count never sees.
    fn early_share(&self) -> f64 {
        if self.missed == 0 {
            return 0.0;
        }
        self.missed.saturating_sub(self.loop_late_missed) as f64 / self.missed as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_per_wakeup_comes_from_the_runs_ticks_and_wakeups() {
        // 100 kHz, 5 s: 500 000 ticks; 20 per wake-up plus the wake-up that finds the program
        // over, or 10 per wake-up.
        assert_eq!(ticks_per_wakeup(500_000, 25_001), 20);
        assert_eq!(ticks_per_wakeup(500_000, 50_001), 10);
        // 1 kHz: one tick per wake-up.
        assert_eq!(ticks_per_wakeup(5_000, 5_001), 1);
        // A run without wake-ups (unpaced) counts as one tick per wake-up, not a division by 0.
        assert_eq!(ticks_per_wakeup(5_000, 0), 1);
    }

    /// A demo with the counts the totals read; everything else zero.
    fn demo(missed: u64, late: u64, equivalent: u64, class_wakeups: [u64; 4], class_missed: [u64; 4]) -> Demo {
        Demo {
            status: "complete".into(),
            end_reason: String::new(),
            ticks: 50_000,
            missed,
            skipped: 0,
            moved: 0,
            max_late_streak: 0,
            late_wakeups: 0,
            wakeups: 50_000,
            p50_us: 0.0,
            p99_us: 0.0,
            max_us: 0.0,
            stalls: 0,
            longest_stall_us: 0.0,
            max_command_gap_us: 0.0,
            dropped: 0,
            realtime: true,
            memory_locked: true,
            page_faults: 0,
            preemptions: 0,
            loadavg: String::new(),
            ticks_per_wakeup: 1,
            interval_us: 100,
            cyclictest: Latency {
                p50_us: 0.0,
                p99_us: 0.0,
                p999_us: 0.0,
                max_us: 0.0,
                cycles: 50_000,
                priority: 50,
                late,
            },
            cyclictest_ticks_missed: equivalent,
            wakeup_p50_us: 0.0,
            wakeup_p99_us: 0.0,
            wakeup_max_us: 0.0,
            work_p50_us: 0.0,
            work_p99_us: 0.0,
            work_max_us: 0.0,
            work_mean_us: 0.0,
            missed_late_wakeup: 0,
            missed_spin: 0,
            missed_work: 0,
            spin_us: 30.0,
            class_lower_us: [0.0, 30.0, 100.0, 1000.0],
            class_wakeups,
            class_missed,
            // cyclictest's late wake-ups all in the 100 µs–1 ms class, costing the equivalent.
            cyclictest_class_wakeups: [50_000 - late, 0, late, 0],
            cyclictest_class_ticks: [0, 0, equivalent, 0],
            control_cpu_share: 0.0,
            oslat: None,
            oslat_ticks_missed: None,
        }
    }

    #[test]
    fn totals_weigh_every_demo_by_its_counts_not_by_its_ratio() {
        // 10 kHz: a demo with 1 late cyclictest wake-up and 12 missed ticks has a ratio of 12; one
        // with 100 late wake-ups and 150 missed 1.5. The median of runs is their mean, 6.75; the
        // ratio of totals 162 / 101.
        let demos = [
            demo(12, 1, 3, [49_000, 900, 4, 1], [0, 2, 4, 6]),
            demo(150, 100, 260, [49_000, 800, 50, 2], [10, 0, 100, 40]),
        ];
        let t = Totals::of(&demos);
        assert_eq!((t.missed, t.cyclictest_late_ticks, t.cyclictest_equivalent), (162, 101, 263));
        assert!((t.issue_ratio() - 162.0 / 101.0).abs() < 1e-12);
        assert!((t.equivalent_ratio() - 162.0 / 263.0).abs() < 1e-12);
        // The loop's wake-ups ≥ one period that slept: 5 + 52; their misses 10 + 140.
        assert!((t.slept_late_ratio() - 57.0 / 101.0).abs() < 1e-12);
        assert!((t.loop_ticks_per_late_wakeup() - 150.0 / 57.0).abs() < 1e-12);
        assert!((t.cyclictest_ticks_per_late_wakeup() - 263.0 / 101.0).abs() < 1e-12);
        assert!((t.floor_ratio() - 263.0 / 101.0).abs() < 1e-12);
        // Misses after wake-ups less than a period late: 2 + 10 of 162.
        assert!((t.early_share() - 12.0 / 162.0).abs() < 1e-12);
        // Ticks per wake-up multiply cyclictest's count (the issue's denominator).
        let mut batched = demos[1].clone();
        batched.ticks_per_wakeup = 40;
        assert_eq!(Totals::of(&[batched]).cyclictest_late_ticks, 4_000);
        // Nothing late anywhere: the ratios do not divide by zero.
        let quiet = Totals::of(&[demo(0, 0, 0, [50_000, 0, 0, 0], [0; 4])]);
        assert_eq!((quiet.issue_ratio(), quiet.equivalent_ratio(), quiet.early_share()), (0.0, 0.0, 0.0));
    }
}
