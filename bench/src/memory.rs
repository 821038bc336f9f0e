//! Peak resident memory of `nanoecr run --fast` as a child process, at two run lengths per rate:
//! memory must be set by buffers and chunk caches, not by how long the test runs.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::report::{median, Row};
use crate::{child, configs};

/// Peak RSS target for an hour at 1 kHz, MiB.
pub const TARGET_MIB: f64 = 64.0;

/// One measured run.
#[derive(Debug, Clone, Serialize)]
struct MemRun {
    label: String,
    program_s: f64,
    samples: u64,
    dropped: u64,
    max_rss_mib: f64,
    wall_s: f64,
}

fn run_once(bin: &Path, cfg: &Path, out_dir: &Path) -> Result<(f64, f64, u64, u64)> {
    let args: Vec<String> = vec![
        "run".into(),
        cfg.display().to_string(),
        "--fast".into(),
        "--json".into(),
        "--quiet".into(),
        "--out-dir".into(),
        out_dir.display().to_string(),
    ];
    let rep = child::measure(bin, &args)?;
    let summary: serde_json::Value =
        serde_json::from_str(rep.stdout.trim()).context("parsing nanoecr run --json output")?;
    if let Some(file) = summary.get("file").and_then(|f| f.as_str()) {
        // Long 100 kHz files are GBs; only the memory figure is wanted here.
        let _ = std::fs::remove_file(file);
    }
    let samples = summary.get("samples").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let dropped = summary.get("dropped").and_then(serde_json::Value::as_u64).unwrap_or(0);
    Ok((rep.max_rss_mib(), rep.wall_s, samples, dropped))
}

/// The memory section.
pub fn section(quick: bool, tmp: &Path) -> Result<(Vec<Row>, serde_json::Value)> {
    let bin = child::nanoecr_bin()?;
    let base = configs::demo_text()?;
    let out_dir = tmp.join("memory_runs");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // (rate, long program s, label of the long run); the short run is a quarter as long.
    let cases: [(f64, f64, &str); 2] = if quick {
        [(1_000.0, 600.0, "10-min"), (100_000.0, 60.0, "1-min")]
    } else {
        [(1_000.0, 3600.0, "1-hour"), (100_000.0, 600.0, "10-min")]
    };
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    for (rate_hz, long_s, long_label) in cases {
        // Peak RSS barely varies between runs; the 10-minute 100 kHz run (60 M samples) is the
        // longest of the bench, so it runs once.
        let reps = if quick || rate_hz > 1_000.0 { 1 } else { 3 };
        let mut by_len = Vec::new();
        for (program_s, label) in [(long_s, long_label.to_string()), (long_s / 4.0, format!("{long_label} ÷ 4"))] {
            let text = configs::derive(&base, &configs::program(rate_hz, 2.0, program_s / 3.0))?;
            let cfg = configs::write(tmp, &format!("memory_{rate_hz}_{program_s}.toml"), &text)?;
            let mut rss = Vec::new();
            for i in 0..reps {
                eprintln!("   memory: {label} at {} kHz, run {}/{reps}", rate_hz / 1e3, i + 1);
                let (mib, wall_s, samples, dropped) = run_once(&bin, &cfg, &out_dir)?;
                runs.push(MemRun {
                    label: format!("{label} at {} kHz", rate_hz / 1e3),
                    program_s,
                    samples,
                    dropped,
                    max_rss_mib: mib,
                    wall_s,
                });
                rss.push(mib);
            }
            by_len.push((label, program_s, rss));
        }
        let (short_med, long_med) = (median(&by_len[1].2), median(&by_len[0].2));
        for (label, program_s, rss) in by_len.into_iter().rev() {
            let is_long = (program_s - long_s).abs() < 1e-9;
            let mut row =
                Row::new("memory", format!("peak RSS, {label} test at {} kHz --fast", rate_hz / 1e3), "MiB", rss).note(
                    format!(
                        "nanoecr run --fast as a child, ru_maxrss; {:.1} M ticks, default ring",
                        (program_s + 2.0) * rate_hz / 1e6
                    ),
                );
            if is_long {
                // Flat: the long run may not need more than the quarter-length run plus 10 % and 1 MiB.
                let flat = long_med <= short_med * 1.10 + 1.0;
                row = if rate_hz <= 1_000.0 {
                    row.target("≤ 64 MiB and flat (≤ quarter-length run + 10 % + 1 MiB)", |v| {
                        v <= TARGET_MIB && flat
                    })
                } else {
                    row.target("flat (≤ quarter-length run + 10 % + 1 MiB)", |_| flat)
                };
            }
            rows.push(row);
        }
    }
    Ok((rows, serde_json::to_value(&runs).context("encoding memory runs")?))
}
