//! `nanoecr analyze`: the paper's statistics on one run or a campaign of runs. Parsing and output
//! only; every number comes from `nanoecr-analysis`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use nanoecr_analysis::io::load_run;
use nanoecr_analysis::run::{analyze_campaign, CampaignAnalysis};
use nanoecr_analysis::{analyze_run, AnalysisOptions, RunAnalysis};
use nanoecr_core::Event;
use rayon::prelude::*;

/// Arguments of `nanoecr analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run files (nanoecr HDF5, or foreign files with the minimum of docs/file-format.md).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write report.md and the plots (PNG + SVG) here, one sub-directory per file.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Print one JSON object with every number on stdout.
    #[arg(long)]
    pub json: bool,
    /// Re-run the detector on the raw samples instead of using the stored events.
    #[arg(long)]
    pub redetect: bool,
    /// Attempt frequency ω for ΔG = kT ln(2ω t_R), 1/s.
    #[arg(long, default_value_t = 1e13)]
    pub omega_per_s: f64,
    /// Temperature for ΔG, K.
    #[arg(long, default_value_t = 295.0)]
    pub temperature_k: f64,
    /// Fit magnitudes above this |Δρ/ρ| instead of the completeness threshold.
    #[arg(long)]
    pub x_min: Option<f64>,
}

/// Progress on stderr while files are processed: a bar when stderr is a terminal and the output is
/// for people; nothing in `--json` mode or when stderr is a pipe or a file (logs, CI), where a bar
/// would only be noise. Shared by the worker threads: the bar counts files as they finish.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn new(total: usize, json: bool) -> Self {
        let bar = (total > 1 && !json && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:24.cyan/blue} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Self { bar }
    }

    /// One more file done.
    pub(crate) fn done(&self, file: &Path) {
        if let Some(b) = &self.bar {
            b.set_message(file.display().to_string());
            b.inc(1);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Share one malloc arena between the worker threads. glibc gives each thread its own arena, and
/// with two workers the 100-run campaign's peak RSS rose from 43 to 57 MiB (docs/performance.md);
/// with one arena it is 44 MiB at the same CPU time, since the fits allocate next to nothing per
/// likelihood evaluation. Call before the first parallel iterator starts the pool.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one allocator-tuning call into glibc, which no safe crate wraps
pub(crate) fn share_one_malloc_arena() {
    // SAFETY: mallopt only changes the allocator's tuning parameters; it takes no pointers and is
    // called here before any worker thread exists.
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// Elsewhere the allocator is left as it is.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn share_one_malloc_arena() {}

/// What one file gave: its analysis and events, the files written for it, or why it failed
/// (a file that cannot be read is reported and skipped; failing to write its plots stops the
/// command, as it did when files were processed one after the other).
enum FileOutcome {
    Analysed(Box<(RunAnalysis, Vec<Event>)>, Vec<PathBuf>),
    Unreadable(serde_json::Value),
    WriteFailed(anyhow::Error),
}

fn analyse_file(args: &Args, opts: &AnalysisOptions, i: usize, file: &Path) -> FileOutcome {
    let input = match load_run(file, args.redetect) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("error: {e}");
            return FileOutcome::Unreadable(
                serde_json::json!({ "file": file.display().to_string(), "error": e.to_string() }),
            );
        }
    };
    let analysis = analyze_run(&input, opts);
    let mut written = Vec::new();
    if let Some(dir) = &args.out_dir {
        let sub = if args.files.len() > 1 { dir.join(stem(file, i)) } else { dir.clone() };
        let r = (|| -> anyhow::Result<()> {
            let plots = nanoecr_analysis::plots::write_run_plots(&input, &analysis, &sub)
                .with_context(|| format!("plots for {}", file.display()))?;
            let report = sub.join("report.md");
            nanoecr_analysis::report::write_text(&report, &nanoecr_analysis::report::run_markdown(&analysis, true))?;
            written.extend(plots);
            written.push(report);
            Ok(())
        })();
        if let Err(e) = r {
            return FileOutcome::WriteFailed(e);
        }
    }
    FileOutcome::Analysed(Box::new((analysis, input.events)), written)
}

/// Run the command.
pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let opts = AnalysisOptions {
        omega_per_s: args.omega_per_s,
        temperature_k: args.temperature_k,
        x_min_override: args.x_min,
        ..Default::default()
    };
    share_one_malloc_arena();
    let progress = Progress::new(args.files.len(), args.json);
    // Files are independent: analyse them on rayon's pool (one thread per core), then report
    // them in the order given. HDF5 reads are serialised by hdf5-metno's lock; the fits and
    // plots, which are most of the time, run in parallel.
    let outcomes: Vec<FileOutcome> = args
        .files
        .par_iter()
        .enumerate()
        .map(|(i, file)| {
            let o = analyse_file(&args, &opts, i, file);
            progress.done(file);
            o
        })
        .collect();
    progress.finish();
    let mut runs: Vec<(RunAnalysis, Vec<Event>)> = Vec::with_capacity(outcomes.len());
    let mut errors: Vec<serde_json::Value> = Vec::new();
    let mut written: Vec<PathBuf> = Vec::new();
    for o in outcomes {
        match o {
            FileOutcome::Analysed(run, files) => {
                runs.push(*run);
                written.extend(files);
            }
            FileOutcome::Unreadable(e) => errors.push(e),
            FileOutcome::WriteFailed(e) => return Err(e),
        }
    }
    let campaign = (runs.len() > 1).then(|| analyze_campaign(&runs));
    if let (Some(dir), Some(c)) = (&args.out_dir, &campaign) {
        let series = nanoecr_analysis::stress::stress_series(c);
        written.extend(nanoecr_analysis::plots::write_campaign_plots(&series, dir).context("campaign figure")?);
        let path = dir.join("campaign.md");
        nanoecr_analysis::report::write_text(&path, &nanoecr_analysis::report::campaign_markdown(c, true))?;
        written.push(path);
    }
    if args.json {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        write_json(&mut out, &runs, campaign.as_ref(), &errors, &written)?;
        out.flush()?;
    } else {
        // A campaign's answer is its groups' headlines (one run alone rarely constrains α):
        // they come first, each run's summary after.
        if let Some(c) = &campaign {
            println!("{}", nanoecr_analysis::report::campaign_markdown(c, false));
        }
        for (a, _) in &runs {
            print_summary(a);
        }
        if let Some(dir) = &args.out_dir {
            println!("report and plots written to {}", dir.display());
        }
    }
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The `--json` object of [`json_output`], followed by a newline, written as it is made: for a
/// campaign, one run's JSON tree at a time instead of the whole document's (the trees of 100
/// runs with their events were ≈ 16 MB of the campaign's peak RSS). The same bytes: the
/// document's keys in the order a `serde_json::Value` object keeps them (sorted), each run as its
/// own `Value` writes it.
fn write_json(
    out: &mut impl Write,
    runs: &[(RunAnalysis, Vec<Event>)],
    campaign: Option<&CampaignAnalysis>,
    errors: &[serde_json::Value],
    written: &[PathBuf],
) -> anyhow::Result<()> {
    if runs.len() == 1 && campaign.is_none() {
        serde_json::to_writer(&mut *out, &json_output(runs, campaign, errors, written))?;
        writeln!(out)?;
        return Ok(());
    }
    let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    write!(out, "{{\"campaign\":")?;
    serde_json::to_writer(&mut *out, &campaign_json(campaign))?;
    write!(out, ",\"errors\":")?;
    serde_json::to_writer(&mut *out, &serde_json::json!(errors))?;
    write!(out, ",\"files_written\":")?;
    serde_json::to_writer(&mut *out, &serde_json::json!(files))?;
    write!(out, ",\"runs\":[")?;
    for (i, (run, _)) in runs.iter().enumerate() {
        if i > 0 {
            write!(out, ",")?;
        }
        serde_json::to_writer(&mut *out, &serde_json::to_value(run)?)?;
    }
    writeln!(out, "]}}")?;
    Ok(())
}

/// The campaign's JSON: its analysis with the campaign figure's data beside the groups they come
/// from (`null` without a campaign).
fn campaign_json(campaign: Option<&CampaignAnalysis>) -> serde_json::Value {
    let mut v = serde_json::to_value(campaign).unwrap_or(serde_json::Value::Null);
    if let (Some(o), Some(c)) = (v.as_object_mut(), campaign) {
        let series = nanoecr_analysis::stress::stress_series(c);
        o.insert("stress_series".into(), serde_json::to_value(series).unwrap_or(serde_json::Value::Null));
    }
    v
}

fn stem(file: &Path, i: usize) -> String {
    let s = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{i:03}_{s}")
}

/// The `--json` object: for one file, that run's analysis (events at the top level) plus
/// `files_written`; for several, `{ runs: [...], campaign: {...} }`; `errors` in both.
pub(crate) fn json_output(
    runs: &[(RunAnalysis, Vec<Event>)],
    campaign: Option<&CampaignAnalysis>,
    errors: &[serde_json::Value],
    written: &[PathBuf],
) -> serde_json::Value {
    let files: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    let campaign_src = campaign;
    if runs.len() == 1 && campaign.is_none() {
        let mut v = serde_json::to_value(&runs[0].0).unwrap_or(serde_json::Value::Null);
        if let Some(o) = v.as_object_mut() {
            o.insert("files_written".into(), serde_json::json!(files));
            o.insert("errors".into(), serde_json::json!(errors));
        }
        v
    } else {
        let campaign = campaign_json(campaign_src);
        serde_json::json!({
            "runs": runs.iter().map(|r| &r.0).collect::<Vec<_>>(),
            "campaign": campaign,
            "files_written": files,
            "errors": errors,
        })
    }
}

fn print_summary(a: &RunAnalysis) {
    print!("{}", nanoecr_analysis::report::run_summary_text(a));
}
