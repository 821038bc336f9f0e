//! `nanoecr run`: one test in this process, on the rig its config names, with a live progress
//! line and a summary (human or `--json`) at the end.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use nanoecr_core::{Progress, RunStatus, RunSummary};
use nanoecr_daemon::run::{start_run, RunOptions, RunUpdate};

/// Exit code for a rejected config (as for the daemon client).
pub const EXIT_INVALID: u8 = 2;
/// Exit code for a run that ended aborted or failed.
pub const EXIT_RUN_NOT_COMPLETE: u8 = 4;

/// Arguments of `nanoecr run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run config (TOML); see docs/config.md.
    pub config: PathBuf,
    /// Run as fast as possible instead of in real time (simulated rig only).
    #[arg(long)]
    pub fast: bool,
    /// Directory for the run file (overrides `[output] directory`).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Simulation seed (overrides `[simulation] seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the summary as one JSON object on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// No progress display.
    #[arg(long, short)]
    pub quiet: bool,
}

/// Run the command.
pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = match nanoecr_core::config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: invalid config: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    if let Some(seed) = args.seed {
        cfg.set_seed(seed);
    }
    // One master per rig, for the whole run (the lock lives until this function returns).
    let _rig_lock = match nanoecr_daemon::riglock::acquire(&nanoecr_daemon::riglock::default_dir(), &cfg) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let rig = nanoecr_hw::open_rig(&cfg).context("opening the rig")?;
    let total_s = cfg.load_function.total_s();
    let opts = RunOptions {
        out_dir: args.out_dir.clone(),
        fast: args.fast,
        install_signal_handlers: true,
        ..Default::default()
    };
    let handle = start_run(cfg, rig, opts).context("starting the test")?;
    if !args.quiet {
        say_err(&format!(
            "nanoecr: writing {} ({} s program{})",
            handle.path().display(),
            total_s,
            if args.fast { ", fast" } else { "" }
        ));
    }

    let mut display = Display::new(args.quiet, total_s);
    let mut summary: Option<RunSummary> = None;
    loop {
        match handle.updates().recv_timeout(Duration::from_millis(200)) {
            Ok(RunUpdate::Progress(p)) => display.progress(&p),
            Ok(RunUpdate::Event(e)) => display.event(&e),
            Ok(RunUpdate::Samples(_)) => {}
            Ok(RunUpdate::Finished(s)) => {
                summary = Some(s);
                break;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if handle.is_finished() {
                    break;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    display.done();
    let joined = handle.join().context("the run failed")?;
    let summary = summary.unwrap_or(joined);
    if args.json {
        say_out(&format!("{}\n", serde_json::to_string(&summary)?));
    } else {
        print_summary(&summary);
    }
    Ok(if summary.status == RunStatus::Complete { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUN_NOT_COMPLETE) })
}

/// Live progress: an indicatif bar on a terminal, a plain line a second otherwise.
struct Display {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_plain: Instant,
    events_p: u64,
    events_n: u64,
}

impl Display {
    fn new(quiet: bool, total_s: f64) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b = indicatif::ProgressBar::new((total_s * 1000.0) as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:24.cyan/blue} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Self { bar, plain: !quiet && !tty, last_plain: Instant::now(), events_p: 0, events_n: 0 }
    }

    fn progress(&mut self, p: &Progress) {
        self.events_p = p.spikes_p;
        self.events_n = p.spikes_n;
        if let Some(b) = &self.bar {
            b.set_position((p.time_s * 1000.0) as u64);
            b.set_message(progress_line(p));
        } else if self.plain && self.last_plain.elapsed() >= Duration::from_secs(1) {
            say_err(&progress_line(p));
            self.last_plain = Instant::now();
        }
    }

    fn event(&mut self, e: &nanoecr_core::Event) {
        if e.kind == nanoecr_core::EventKind::Interlock {
            let msg = format!("interlock at t = {:.3} s (value {:.4e}); unloading safely", e.onset_time_s, e.magnitude);
            match &self.bar {
                Some(b) => b.println(msg),
                None => say_err(&msg),
            }
        }
    }

    fn done(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

fn print_summary(s: &RunSummary) {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "run {}: {}", s.status, s.file);
    if s.status != RunStatus::Complete {
        let _ = writeln!(o, "  ended by: {}", s.end_reason);
    }
    let _ = writeln!(
        o,
        "  samples {} (dropped {}) covering {:.3} s in {:.2} s wall",
        s.samples, s.dropped, s.duration_s, s.wall_s
    );
    let _ = writeln!(
        o,
        "  load tracking RMS {:.2} µN ({:.3}% of the {:.0} µN peak)",
        s.load_tracking_rms_un,
        100.0 * s.load_tracking_rms_un / s.peak_load_un.max(f64::MIN_POSITIVE),
        s.peak_load_un
    );
    if s.paced {
        let _ = writeln!(o,
            "  loop lateness p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; missed deadlines {} of {} ticks; real-time scheduling: {}",
            s.lateness_p50_us,
            s.lateness_p99_us,
            s.lateness_max_us,
            s.missed_deadlines,
            s.ticks,
            if s.realtime_scheduling { "yes (SCHED_FIFO)" } else { "no (normal priority)" }
        );
        if s.moved_ticks + s.skipped_ticks > 0 {
            let _ = writeln!(
                o,
                "  host stalls: {} ticks moved (simulated rig: same samples, later), {} stale ticks skipped (real frame); \
                 list in /entry/diagnostics/stall_*",
                s.moved_ticks, s.skipped_ticks
            );
        }
    } else {
        let _ = writeln!(o, "  unpaced (--fast): {} ticks, no lateness figures", s.ticks);
    }
    let _ = writeln!(
        o,
        "  spikes: {} p-type (damage), {} n-type (recovery); pop-ins: {}; interlocks: {}",
        s.spikes_p, s.spikes_n, s.popins, s.interlocks
    );
    for (seg, p, n) in &s.spikes_by_segment {
        let _ = writeln!(o, "    {seg:<11} p {p:>5}  n {n:>5}  p−n {:+}", *p as i64 - *n as i64);
    }
    if s.ground_truth_events > 0 {
        let _ = writeln!(
            o,
            "  ground truth: {} simulated events recorded in the file (score with `nanoecr score`)",
            s.ground_truth_events
        );
    }
    say_out(&o);
}

/// Write to stderr, ignoring failure: after a hang-up the terminal is gone and every write fails
/// (EIO, or EPIPE on a closed pipe); `eprintln!` would panic and end the process in the middle of
/// the safe unload.
pub(crate) fn say_err(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Write to stdout, ignoring failure (see [`say_err`]): the file is closed by now and says how
/// the run ended, so a lost terminal must not turn the exit code into a panic's.
pub(crate) fn say_out(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// The one-line progress display, shared by `nanoecr run` and `nanoecr watch`.
pub(crate) fn progress_line(p: &Progress) -> String {
    format!(
        "t {:6.2}/{:.1} s  {:<11} load {:7.1} µN  h {:6.2} nm  Δρ/ρ {:>10}  samples {}  drops {}  spikes p{} n{}  pop-ins {}",
        p.time_s,
        p.total_s,
        p.segment.name(),
        p.load_un,
        p.disp_nm,
        if p.delta_rho.is_finite() { format!("{:+.2e}", p.delta_rho) } else { "—".into() },
        p.samples,
        p.dropped,
        p.spikes_p,
        p.spikes_n,
        p.popins
    )
}
