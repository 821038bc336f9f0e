//! `nanoecr analyze` on a campaign: the paper's load steps (500–6000 µN), the paper's program
//! (2 s settle + 10/10/10 s at 1 kHz, 32 000 samples a run), one seed per run.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use toml_edit::Value;

use crate::report::Row;
use crate::{child, configs, e2e};

/// Write `n` simulated runs (in-process, `--fast`) into `dir`; returns their paths.
pub fn campaign(tmp: &Path, dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let base = configs::demo_text()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let peak_un = 500.0 * (1 + i % 12) as f64;
        let text = configs::derive(
            &base,
            &[
                ("load_function", "peak_load_un", Value::from(peak_un)),
                ("simulation", "seed", Value::from(1000 + i as i64)),
                configs::whole_run_ring(32_000.0),
            ],
        )?;
        let cfg = configs::write(tmp, "campaign.toml", &text)?;
        let out = dir.join(format!("run{i:03}_{peak_un}uN.h5"));
        e2e::run_in_process(&cfg, &out, true)?;
        files.push(out);
    }
    Ok(files)
}

/// The analysis section.
pub fn section(quick: bool, tmp: &Path) -> Result<(Vec<Row>, serde_json::Value)> {
    let bin = child::nanoecr_bin()?;
    let n = if quick { 20 } else { 100 };
    let reps = if quick { 1 } else { 3 };
    let dir = tmp.join("campaign");
    eprintln!("   analysis: simulating {n} runs");
    let files = campaign(tmp, &dir, n)?;
    let mut wall = Vec::new();
    let mut rss = Vec::new();
    for i in 0..reps {
        let out = tmp.join(format!("analysis_out_{i}"));
        let mut args: Vec<String> = vec!["analyze".into()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        args.extend(["--json".into(), "--out-dir".into(), out.display().to_string()]);
        eprintln!("   analysis: nanoecr analyze on {n} files, run {}/{reps}", i + 1);
        let rep = child::measure(&bin, &args)?;
        wall.push(rep.wall_s);
        rss.push(rep.max_rss_mib());
    }
    let what = format!(
        "{n} simulated runs: 500–6000 µN in 500 µN steps, 2 s settle + 10/10/10 s at 1 kHz (32 k samples each)"
    );
    let rows = vec![
        Row::new("analysis", format!("nanoecr analyze, {n}-run campaign: wall time"), "s", wall.clone())
            .note(format!("{what}; --json --out-dir (fits, plots, report)")),
        Row::new("analysis", format!("nanoecr analyze, {n}-run campaign: peak RSS"), "MiB", rss.clone()),
    ];
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    Ok((rows, serde_json::json!({ "runs": n, "wall_s": wall, "max_rss_mib": rss, "campaign": what })))
}
