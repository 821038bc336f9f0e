//! `nanoecr score`: detection and fits of simulated runs against their /entry/ground_truth,
//! per file and aggregated over all files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nanoecr_analysis::io::load_run;
use nanoecr_analysis::scoring::{report_from_counts, ScoreCounts, ScoreOptions};
use nanoecr_analysis::{analyze_run, AnalysisOptions, RunAnalysis};
use rayon::prelude::*;

/// Arguments of `nanoecr score`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Simulated run files carrying /entry/ground_truth.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Largest onset difference for a detected event to match a true one, in samples [default:
    /// 2 ms at the file's sampling rate, at least 2 samples].
    #[arg(long)]
    pub tolerance_samples: Option<f64>,
    /// Re-run the detector on the raw samples instead of using the stored events.
    #[arg(long)]
    pub redetect: bool,
}

/// Load and analyse one simulated file: its sampling rate and analysis, or the error to report.
fn score_file(file: &Path, redetect: bool, opts: &AnalysisOptions) -> Result<(f64, RunAnalysis), serde_json::Value> {
    let input = match load_run(file, redetect) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(serde_json::json!({ "file": file.display().to_string(), "error": e.to_string() }));
        }
    };
    if input.ground_truth.is_none() {
        let msg = "no /entry/ground_truth: not a simulated run";
        eprintln!("error: {}: {msg}", file.display());
        return Err(serde_json::json!({ "file": file.display().to_string(), "error": msg }));
    }
    Ok((input.rate_hz, analyze_run(&input, opts)))
}

/// Run the command.
pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(t) = args.tolerance_samples {
        anyhow::ensure!(t.is_finite() && t > 0.0, "--tolerance-samples must be a positive number of samples, got {t}");
    }
    let opts = AnalysisOptions { tolerance_samples: args.tolerance_samples, ..Default::default() };
    crate::analyze::share_one_malloc_arena();
    let progress = crate::analyze::Progress::new(args.files.len(), args.json);
    // Files are scored on rayon's pool and reported in the order given (see analyze.rs).
    let outcomes: Vec<Result<(f64, RunAnalysis), serde_json::Value>> = args
        .files
        .par_iter()
        .map(|file| {
            let r = score_file(file, args.redetect, &opts);
            progress.done(file);
            r
        })
        .collect();
    progress.finish();
    let mut total = ScoreCounts::default();
    let mut per_file = Vec::new();
    let mut errors = Vec::new();
    let mut rate_hz = f64::NAN;
    for o in outcomes {
        let (rate, a) = match o {
            Ok(x) => x,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        rate_hz = rate;
        if let Some(s) = &a.score {
            total.merge(&s.counts);
        }
        per_file.push(serde_json::json!({
            "file": a.file,
            "status": a.status,
            "score": a.score,
            "fit_vs_truth": a.fit_vs_truth,
        }));
    }
    if per_file.is_empty() {
        anyhow::bail!("no file with ground truth could be scored");
    }
    let mut sopts = ScoreOptions::for_rate(rate_hz);
    if let Some(t) = args.tolerance_samples {
        sopts.tolerance_samples = t;
    }
    let aggregate = report_from_counts(total, &sopts);
    if args.json {
        let v = serde_json::json!({ "files": per_file, "aggregate": aggregate, "errors": errors });
        println!("{}", serde_json::to_string(&v)?);
    } else {
        for f in &per_file {
            let s = &f["score"];
            println!(
                "{}: recall {:.3} precision {:.3} (|x| ≥ 7e-4: {:.3} / {:.3}), sign {:.3}, α naive {} / measurement-aware {} vs true {}",
                f["file"].as_str().unwrap_or(""),
                s["recall"].as_f64().unwrap_or(f64::NAN),
                s["precision"].as_f64().unwrap_or(f64::NAN),
                s["recall_big"].as_f64().unwrap_or(f64::NAN),
                s["precision_big"].as_f64().unwrap_or(f64::NAN),
                s["sign_accuracy"].as_f64().unwrap_or(f64::NAN),
                alpha_text(&f["fit_vs_truth"]["alpha"]),
                alpha_text(&f["fit_vs_truth"]["alpha_measured"]),
                alpha_text(&f["fit_vs_truth"]["true_alpha"]),
            );
        }
        println!(
            "\n## Aggregate over {} file(s)\n\n{}",
            per_file.len(),
            nanoecr_analysis::report::score_markdown(&aggregate)
        );
    }
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// An exponent as the fits carry it (two decimals; their intervals are ≥ 0.1 wide), "—" when the
/// fit gave none.
fn alpha_text(v: &serde_json::Value) -> String {
    v.as_f64().filter(|a| a.is_finite()).map_or_else(|| "—".into(), |a| format!("{a:.2}"))
}
