//! `nanoecr-bench`: the figures of docs/performance.md, measured against their targets.
//!
//! One table, one row per figure, each the median of several runs, printed and written as JSON.
//! Sections live in their own modules:
//! - [`ring`]: SPSC ring throughput for `Sample` (rtrb, crossbeam `ArrayQueue`, std mpsc).
//! - [`detector`]: `Detector::process` samples/s on one core.
//! - [`e2e`]: `start_run(fast)` through detector and HDF5 writer: samples/s (wall and per CPU-second), drops, bytes.
//! - [`analysis`]: `nanoecr analyze` on a 100-run campaign.
//! - [`timing`]: paced loop lateness and missed deadlines, idle and loaded, next to cyclictest.
//! - [`memory`]: peak RSS of `nanoecr run --fast` at two run lengths.
//! - [`peer`]: ours against bench/peers/peer.py (h5py, numpy, scipy, powerlaw).
//! - [`rt`]: consecutive 5 s demos at 1, 10 and 100 kHz with the default interlocks, each next
//!   to cyclictest (issue 15).
//!
//! Helpers: [`report`] (rows, medians, rendering, machine), [`child`] (wall time and peak RSS of
//! a child process), [`configs`] (configs derived from config/demo.toml), [`cyclictest`] (the OS
//! timing floor and the competing CPU load).

mod child;
mod configs;
mod cyclictest;
mod oslat;
mod report;
mod ring;
// SECTIONS-BEGIN
mod analysis;
mod detector;
mod e2e;
mod memory;
mod peer;
mod rt;
mod timing;
// SECTIONS-END

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::report::{Machine, Row};

/// Benchmarks of the nanoecr pipeline against its targets and against a Python peer.
#[derive(Debug, Parser)]
#[command(name = "nanoecr-bench", version, about)]
struct Args {
    /// Where to write the table as JSON.
    #[arg(long, default_value = "bench/results/latest.json")]
    out: PathBuf,
    /// Also write the table as Markdown here (for docs/performance.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// A short smoke version (about two minutes): smaller runs, fewer repetitions.
    #[arg(long)]
    quick: bool,
    /// Internal (tests): tiny sizes, one repetition, for checking the report's shape. Implies
    /// --quick; the figures mean nothing.
    #[arg(long, hide = true)]
    smoke: bool,
    /// Only these sections (repeat or comma-separate); all when absent.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// rt section: demos at 1 kHz, 10 kHz and 100 kHz (default 20,10,10; `--quick` 3,2,2).
    #[arg(long, value_delimiter = ',', num_args = 3)]
    rt_runs: Option<Vec<usize>>,
    /// rt section: length of each demo and of each cyclictest run after it, s (default 5).
    #[arg(long)]
    rt_seconds: Option<f64>,
    /// rt section: `acquisition.wakeup_period_us` of the demos, µs (100 to 1000; the config's
    /// default when absent). Only 100 kHz batches, so only its demos change.
    #[arg(long)]
    rt_wakeup_us: Option<f64>,
    /// rt section: `acquisition.spin_us` of the demos, µs (the loop's own choice per rate when
    /// absent; at most three quarters of the wake-up period, so run one rate at a time).
    #[arg(long)]
    rt_spin_us: Option<f64>,
    /// Internal: run the command after `--` and report its wall time and peak RSS as JSON.
    #[arg(long, hide = true)]
    internal_measure: bool,
    /// Internal: run our side of the peer comparison on the files after `--`.
    #[arg(long, hide = true)]
    internal_ours: bool,
    /// Internal: where `--internal-ours` writes its JSON.
    #[arg(long, hide = true)]
    ours_out: Option<PathBuf>,
    /// Internal: the command for `--internal-measure`, the files for `--internal-ours`.
    #[arg(last = true, hide = true)]
    cmd: Vec<String>,
}

/// The sections of the table, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
enum Section {
    /// Ring throughput between two threads.
    Ring,
    /// Offline detector throughput on one core.
    Detector,
    /// End-to-end `--fast` runs through the pipeline with the HDF5 writer.
    E2e,
    /// `nanoecr analyze` on a campaign of 100 runs.
    Analysis,
    /// Control-loop timing in real time, idle and loaded, next to cyclictest.
    Timing,
    /// Peak RSS of long `--fast` runs.
    Memory,
    /// The Python peer on the same files.
    Peer,
    /// Consecutive demos at 1, 10 and 100 kHz with the default interlocks, next to cyclictest.
    Rt,
}

/// Everything written to `--out`.
#[derive(Debug, Serialize)]
struct Output {
    /// The command that reproduces the table.
    command: String,
    machine: Machine,
    quick: bool,
    smoke: bool,
    sections: Vec<Section>,
    /// Wall time of the whole bench, s.
    bench_wall_s: f64,
    rows: Vec<Row>,
    /// Per-section details (individual runs, fitted parameters, …).
    details: serde_json::Map<String, serde_json::Value>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.internal_measure {
        return match child::wrapper_main(&args.cmd) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    if args.internal_ours {
        let out = args.ours_out.clone().unwrap_or_else(|| PathBuf::from("."));
        return match peer::ours_main(&args.cmd, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// What a section hands back: its rows and free-form details for the JSON.
struct SectionResult {
    rows: Vec<Row>,
    details: serde_json::Value,
}

fn run(args: &Args) -> Result<()> {
    let t0 = Instant::now();
    let all = Section::value_variants().to_vec();
    let sections: Vec<Section> = if args.only.is_empty() { all } else { args.only.clone() };
    let mut machine = Machine::detect();
    eprintln!(
        "nanoecr-bench: {} × {} ({}), kernel {}, load average {}",
        machine.nproc,
        machine.cpu_model,
        mem_gib(&machine),
        machine.kernel,
        machine.loadavg_start
    );

    // Configs and run files of this bench; removed at the end (run files are deleted as soon as
    // they are measured, so the disk use stays bounded).
    let tmp = tempfile::Builder::new().prefix("nanoecr-bench-").tempdir().context("creating a temporary directory")?;
    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    for s in &sections {
        let name = section_name(*s);
        eprintln!("== {name}");
        let ts = Instant::now();
        let result = run_section(*s, Size::of(args), &rt_options(args), tmp.path());
        match result {
            Ok(r) => {
                rows.extend(r.rows);
                details.insert(name.to_string(), r.details);
            }
            Err(e) => {
                // A section that cannot run (dependency missing, tool absent) still gets a row,
                // so the table says so instead of silently shrinking.
                eprintln!("   {name}: {e:#}");
                rows.push(Row::new(name, "section failed", "", vec![]).note(format!("{e:#}")));
            }
        }
        eprintln!("   {name} took {:.1} s", ts.elapsed().as_secs_f64());
    }

    machine.loadavg_end = report::proc_line("/proc/loadavg");
    let table = report::render(&rows);
    println!("{table}");
    let command = format!(
        "cargo run --release -p nanoecr-bench --{}{}{}",
        if args.smoke {
            " --smoke"
        } else if args.quick {
            " --quick"
        } else {
            ""
        },
        if args.only.is_empty() {
            String::new()
        } else {
            format!(" --only {}", args.only.iter().map(|s| section_name(*s)).collect::<Vec<_>>().join(","))
        },
        format_args!(" --out {}", args.out.display())
    );
    let output = Output {
        command,
        machine,
        quick: args.quick || args.smoke,
        smoke: args.smoke,
        sections,
        bench_wall_s: t0.elapsed().as_secs_f64(),
        rows,
        details,
    };
    write_file(&args.out, &serde_json::to_string_pretty(&output).context("encoding the results")?)?;
    if let Some(md) = &args.markdown {
        write_file(md, &report::render_markdown(&output.rows))?;
    }
    eprintln!("nanoecr-bench: {:.0} s in all; wrote {}", output.bench_wall_s, args.out.display());
    Ok(())
}

/// How big the runs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The figures of docs/performance.md.
    Full,
    /// `--quick`: a smoke run of every section in a couple of minutes.
    Quick,
    /// `--smoke`: tiny, for the report-shape test (ring and detector only shrink further).
    Smoke,
}

impl Size {
    fn of(args: &Args) -> Self {
        if args.smoke {
            Self::Smoke
        } else if args.quick {
            Self::Quick
        } else {
            Self::Full
        }
    }
}

/// The rt section's demo counts and length from the flags (defaults per size).
fn rt_options(args: &Args) -> rt::RtOptions {
    let mut o = rt::RtOptions::default();
    match Size::of(args) {
        Size::Full => {}
        Size::Quick => o.runs = [3, 2, 2],
        Size::Smoke => (o.runs, o.seconds) = ([1, 1, 1], 1.0),
    }
    if let Some(r) = &args.rt_runs {
        for (slot, n) in o.runs.iter_mut().zip(r) {
            *slot = *n;
        }
    }
    if let Some(s) = args.rt_seconds.filter(|s| s.is_finite() && *s > 0.0) {
        o.seconds = s;
    }
    o.wakeup_period_us = args.rt_wakeup_us;
    o.spin_us = args.rt_spin_us;
    o
}

fn run_section(s: Section, size: Size, rt_opts: &rt::RtOptions, tmp: &Path) -> Result<SectionResult> {
    let quick = size != Size::Full;
    let (rows, details) = match s {
        Section::Ring => (ring::section(size), serde_json::Value::Null),
        Section::Detector => detector::section(size, tmp)?,
        Section::E2e => e2e::section(quick, tmp)?,
        Section::Analysis => analysis::section(quick, tmp)?,
        Section::Timing => timing::section(quick, tmp)?,
        Section::Memory => memory::section(quick, tmp)?,
        Section::Peer => peer::section(quick, tmp)?,
        Section::Rt => rt::section(rt_opts, tmp)?,
    };
    Ok(SectionResult { rows, details })
}

fn section_name(s: Section) -> &'static str {
    match s {
        Section::Ring => "ring",
        Section::Detector => "detector",
        Section::E2e => "e2e",
        Section::Analysis => "analysis",
        Section::Timing => "timing",
        Section::Memory => "memory",
        Section::Peer => "peer",
        Section::Rt => "rt",
    }
}

fn mem_gib(m: &Machine) -> String {
    format!("{:.1} GiB", m.mem_total_kb as f64 / 1024.0 / 1024.0)
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
