//! `nanoecrd`: the nanoecr daemon. Parses flags, initialises logging, loads its config, binds
//! the socket, turns signals into a shutdown future and reloads, and calls
//! [`nanoecr_daemon::server::serve_with_reload`]. Everything else lives in the library.
//!
//! Signals: SIGTERM / SIGINT abort a running test safely (load ramped to zero, bias off, file
//! closed `aborted`), wait for it, then exit 0. SIGHUP reloads the config file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use nanoecr_core::EndReason;
use nanoecr_daemon::server::{self, DaemonConfig};
use tokio::signal::unix::{signal, SignalKind};

/// nanoecr daemon: runs NanoECR tests for clients on a local socket (docs/operator-guide.md).
#[derive(Debug, Parser)]
#[command(name = "nanoecrd", version)]
struct Args {
    /// Daemon config (TOML; see config/nanoecrd.toml). Without it, built-in defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Socket path (overrides `[socket] path`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Output directory for run files (overrides `[output] directory`).
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let format = args.log_format;
    init_tracing(format);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = nanoecr_daemon::report::one_line(e.as_ref());
            // Human logs and this line both go to stderr: one of them, not the same error twice.
            // JSON logs also get it as a record, for whatever collects them.
            if matches!(format, LogFormat::Json) {
                tracing::error!("{line}");
            }
            eprintln!("nanoecrd: error: {line}");
            ExitCode::from(1)
        }
    }
}

/// The file (or defaults) with the command-line overrides applied; used at start and on SIGHUP.
fn load_config(args: &Args) -> anyhow::Result<DaemonConfig> {
    let mut cfg = match &args.config {
        Some(p) => DaemonConfig::load(p)?,
        None => DaemonConfig::defaults(),
    };
    if let Some(s) = &args.socket {
        cfg.socket_path = s.clone();
    }
    if let Some(o) = &args.out_dir {
        cfg.out_dir = o.clone();
    }
    Ok(cfg)
}

fn run(args: Args) -> anyhow::Result<()> {
    let cfg = load_config(&args)?;
    // Two workers: sockets and the fan-out's wake-ups are light, and the control loop needs
    // the other cores more than the runtime does.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("nanoecrd-rt")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let (listener, _guard) =
            server::socket::bind(&cfg.socket_path, cfg.socket_mode, cfg.allowed_group.as_ref().map(|g| g.gid))?;
        tracing::info!(socket = %cfg.socket_path.display(), mode = format!("{:o}", cfg.socket_mode), pid = std::process::id(), "listening");
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => EndReason::Signal("SIGTERM".into()),
                _ = int.recv() => EndReason::Signal("SIGINT".into()),
            }
        };
        let (reload_tx, reload_rx) = tokio::sync::watch::channel(cfg.clone());
        let reloader = tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match load_config(&args) {
                    Ok(c) => {
                        tracing::info!("SIGHUP: reloading the config");
                        reload_tx.send_replace(c);
                    }
                    Err(e) => tracing::error!("SIGHUP: config not reloaded, keeping the current one: {e:#}"),
                }
            }
        });
        server::serve_with_reload(listener, cfg, shutdown, Some(reload_rx)).await?;
        reloader.abort();
        Ok(())
    })
}

/// Logs go to stderr (journald captures it under systemd). `RUST_LOG` filters (default `info`).
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: under systemd stderr is a pipe to journald, and journalctl
    // shows a line with escape codes as "[… blob data]".
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}
