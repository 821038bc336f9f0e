//! End to end through the real pipeline, in-process: `start_run` with `fast` on the simulated
//! rig (control loop → rtrb ring → detector → HDF5 writer), timed from start to a closed file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use nanoecr_core::RunSummary;
use nanoecr_daemon::run::{start_run, RunOptions};
use serde::Serialize;

use crate::configs;
use crate::report::Row;

/// End-to-end target, samples/s.
pub const TARGET_SAMPLES_PER_S: f64 = 5e6;

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    /// Samples written.
    pub samples: u64,
    /// Samples dropped.
    pub dropped: u64,
    /// From `start_run` to the joined, closed file, s.
    pub wall_s: f64,
    /// `samples / wall_s`.
    pub samples_per_s: f64,
    /// CPU time (user + sys) of the whole process over the run, s: every thread of the pipeline
    /// (control loop and simulator, consumer, compression worker). Unlike the wall time it does not
    /// grow with other processes' load on the machine.
    pub cpu_s: f64,
    /// Size of the run file, bytes.
    pub file_bytes: u64,
    /// Bytes of the `/entry/data` columns uncompressed (elements × element size).
    pub raw_column_bytes: u64,
    /// Bytes the `/entry/data` columns take in the file.
    pub stored_column_bytes: u64,
    /// Datasets under `/entry/data`.
    pub columns: usize,
    /// Final status.
    pub status: String,
}

/// Run `config` once to `out` with `fast` (or paced) and return the summary and wall time.
pub fn run_in_process(config: &Path, out: &Path, fast: bool) -> Result<(RunSummary, f64)> {
    let cfg = configs::load(config)?;
    let rig = nanoecr_hw::sim::rig(&cfg);
    let opts = RunOptions { file_path: Some(out.to_path_buf()), fast, ..Default::default() };
    let t0 = Instant::now();
    let handle = start_run(cfg, rig, opts).with_context(|| format!("starting {}", config.display()))?;
    let summary = handle.join().with_context(|| format!("running {}", config.display()))?;
    Ok((summary, t0.elapsed().as_secs_f64()))
}

/// Uncompressed and stored bytes of the datasets under `/entry/data`, and how many there are.
pub fn column_bytes(path: &Path) -> Result<(u64, u64, usize)> {
    let file = hdf5::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let group = file.group("entry/data").context("no /entry/data")?;
    let mut raw = 0u64;
    let mut stored = 0u64;
    let mut columns = 0usize;
    for name in group.member_names().context("listing /entry/data")? {
        if let Ok(ds) = group.dataset(&name) {
            let elem = ds.dtype().map(|t| t.size()).unwrap_or(0) as u64;
            raw += ds.size() as u64 * elem;
            stored += ds.storage_size();
            columns += 1;
        }
    }
    Ok((raw, stored, columns))
}

/// User + sys CPU time of this process so far, s (0 if the kernel does not say).
fn process_cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 * 1e-6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// The 1-minute load average (`/proc/loadavg`), for the notes: wall times scale with it.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Run once and measure.
pub fn measure(config: &Path, out: &Path) -> Result<RunFigures> {
    let cpu0 = process_cpu_s();
    let (summary, wall_s) = run_in_process(config, out, true)?;
    let cpu_s = process_cpu_s() - cpu0;
    let file_bytes = std::fs::metadata(out).with_context(|| format!("stat {}", out.display()))?.len();
    let (raw_column_bytes, stored_column_bytes, columns) = column_bytes(out)?;
    Ok(RunFigures {
        samples: summary.samples,
        dropped: summary.dropped,
        wall_s,
        samples_per_s: summary.samples as f64 / wall_s,
        cpu_s,
        file_bytes,
        raw_column_bytes,
        stored_column_bytes,
        columns,
        status: summary.status.name().to_string(),
    })
}

/// The e2e section: a 30-minute test at 1 kHz and a 3-minute test at 100 kHz, `--fast`, each
/// `reps` times with the ring as `nanoecr run --fast` ships it (the default: 4 s of samples, at
/// least 16 384; no `acquisition.ring_capacity_samples`).
///
/// `--fast` runs the control loop unpaced, and unpaced it waits for ring space rather than
/// dropping (paced, it drops and counts instead, since waiting would make ticks late), so the
/// wall time to the closed file is the pipeline's sustained throughput and the drop count says
/// whether that guarantee holds: both are reported per run, with the ring's size. Until
/// 2026-12-03 the throughput was measured with a ring that held the whole run (115 MB at 1 kHz),
/// which the shipped product never uses: its page faults and its cache misses on every slot were
/// ≈ 15 % of the CPU of a run (docs/performance.md, seventh write-side pass).
pub fn section(quick: bool, tmp: &Path) -> Result<(Vec<Row>, serde_json::Value)> {
    let base = configs::demo_text()?;
    let reps = 3;
    // (label, rate, program length after the 2 s settle)
    let cases: [(&str, f64, f64); 2] = if quick {
        [("5-min test at 1 kHz", 1_000.0, 300.0), ("30-s test at 100 kHz", 100_000.0, 30.0)]
    } else {
        [("30-min test at 1 kHz", 1_000.0, 1800.0), ("3-min test at 100 kHz", 100_000.0, 180.0)]
    };
    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    for (label, rate_hz, program_s) in cases {
        let edits = configs::program(rate_hz, 2.0, program_s / 3.0);
        let text = configs::derive(&base, &edits)?;
        let cfg_path = configs::write(tmp, &format!("e2e_{rate_hz}.toml"), &text)?;
        // What `start_run` allocates: the config's ring, here the default for the rate.
        let ring = configs::load(&cfg_path)?.ring_capacity_samples;
        let mut runs = Vec::new();
        for i in 0..reps {
            let out: PathBuf = tmp.join(format!("e2e_{rate_hz}_{i}.h5"));
            let r = measure(&cfg_path, &out)?;
            eprintln!(
                "   e2e: {label}, run {}/{reps}: ring {ring} slots (default), {} samples, {} dropped, {:.2} M samples/s",
                i + 1,
                r.samples,
                r.dropped,
                r.samples_per_s / 1e6
            );
            // Keep the disk use bounded: a 100 kHz file is hundreds of MB.
            let _ = std::fs::remove_file(&out);
            runs.push(r);
        }
        let load = load_average();

        let col = |f: &dyn Fn(&RunFigures) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        let samples = runs.first().map_or(0, |r| r.samples);
        rows.push(
            Row::new("e2e", format!("{label}: throughput"), "samples/s", col(&|r| r.samples_per_s))
                .target("≥ 5 M samples/s", |v| v >= TARGET_SAMPLES_PER_S)
                .note(format!(
                    "{samples} samples, start_run(fast) to closed file, detector + HDF5 writer included; \
                     default ring as shipped, {ring} slots; load average {} after the runs",
                    load.map_or("unknown".to_string(), |l| format!("{l:.1}"))
                )),
        );
        rows.push(
            Row::new(
                "e2e",
                format!("{label}: samples per CPU-second"),
                "samples/s",
                col(&|r| r.samples as f64 / r.cpu_s.max(1e-9)),
            )
            .note(
                "samples ÷ (user + sys) of the process over the run: all threads; what 2 idle cores could reach \
                 is at most twice this",
            ),
        );
        rows.push(
            Row::new(
                "e2e",
                format!("{label}: dropped samples, all runs"),
                "samples",
                vec![runs.iter().map(|r| r.dropped as f64).sum()],
            )
            .target("0", |v| v == 0.0)
            .note(format!(
                "sum over the {reps} runs above, default ring of {ring} slots (the unpaced loop waits for ring \
                 space); each run's count in the JSON"
            )),
        );
        rows.push(
            Row::new(
                "e2e",
                format!("{label}: file size per sample"),
                "B/sample",
                col(&|r| r.file_bytes as f64 / r.samples.max(1) as f64),
            )
            .note(format!(
                "whole file (data, events, ground truth, diagnostics); {} columns = {} B/sample uncompressed",
                runs.first().map_or(0, |r| r.columns),
                runs.first().map_or(0, |r| r.raw_column_bytes / r.samples.max(1))
            )),
        );
        rows.push(
            Row::new(
                "e2e",
                format!("{label}: compression ratio"),
                "×",
                col(&|r| r.raw_column_bytes as f64 / r.stored_column_bytes.max(1) as f64),
            )
            .note("/entry/data columns: uncompressed bytes ÷ stored bytes (shuffle + deflate)"),
        );
        details.insert(
            label.to_string(),
            serde_json::json!({
                "runs": serde_json::to_value(&runs).context("encoding e2e runs")?,
                "ring_capacity_samples": ring,
            }),
        );
    }
    Ok((rows, serde_json::Value::Object(details)))
}
