//! `nanoecr`: run NanoECR micro-compression tests in-process, talk to `nanoecrd`, and analyse,
//! score or recover run files. Thin: parse, wire up, run; the work lives in the library crates.

mod analyze;
mod client;
mod recover;
mod run;
mod score;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// NanoECR electro-mechanical micro-compression tests: run, watch, analyse.
#[derive(Debug, Parser)]
#[command(name = "nanoecr", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a test in this process (no daemon needed) and write its HDF5 file.
    Run(run::Args),
    /// Analyse run files: magnitude distribution and fit, waiting times, p−n balance, pop-ins.
    Analyze(analyze::Args),
    /// Score detection and fits against a simulated run's ground truth.
    Score(score::Args),
    /// Submit a test to nanoecrd.
    Submit(client::SubmitArgs),
    /// Show nanoecrd's state and the running test.
    Status(client::CommonArgs),
    /// Abort the running test on nanoecrd (safe unload).
    Abort(client::CommonArgs),
    /// Watch the running test on nanoecrd: progress and events, live.
    Watch(client::CommonArgs),
    /// List recent runs on nanoecrd.
    Runs(client::CommonArgs),
    /// Make a run file left by a crash readable and mark it failed.
    Recover(recover::Args),
    /// Serve the live view in the browser on 127.0.0.1 (prints its URL first).
    Ui(ui::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    if !matches!(cli.command, Command::Run(_) | Command::Ui(_)) {
        end_quietly_on_a_closed_pipe();
    }
    let result = match cli.command {
        Command::Run(a) => run::exec(a),
        Command::Analyze(a) => analyze::exec(a),
        Command::Score(a) => score::exec(a),
        Command::Submit(a) => client::submit(a),
        Command::Status(a) => client::status(a),
        Command::Abort(a) => client::abort(a),
        Command::Watch(a) => client::watch(a),
        Command::Runs(a) => client::runs(a),
        Command::Recover(a) => recover::exec(a),
        Command::Ui(a) => ui::exec(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", nanoecr_daemon::report::one_line(e.as_ref()));
            ExitCode::from(1)
        }
    }
}

/// `nanoecr analyze run.h5 | head` ends as a Unix tool does when `head` has read enough: killed by
/// SIGPIPE, silently. Rust ignores SIGPIPE, so the next write failed with EPIPE instead and
/// `println!` panicked with a backtrace (exit 101). Not for `run` and `ui`: they own a test or a
/// live view, which must reach their safe end whatever happens to stdout (run.rs ignores write
/// errors); the offline commands and socket clients here own nothing a signal could leave half
/// done (`recover` prints after each file is complete).
#[allow(unsafe_code)] // one sigaction, before any other thread exists
fn end_quietly_on_a_closed_pipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: the default disposition installs no handler, so no async-signal-safety question
    // arises; called from main before this process starts any thread.
    if let Err(e) = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        tracing::debug!(error = %e, "could not restore SIGPIPE's default action");
    }
}

/// Logs go to stderr so `--json` output on stdout stays machine-readable. `RUST_LOG` filters;
/// `NANOECR_LOG_FORMAT=json` switches to JSON lines.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    // Colour only on a terminal: logs redirected to a file or a pipe stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if std::env::var("NANOECR_LOG_FORMAT").is_ok_and(|v| v == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}
