//! Client commands that talk to nanoecrd over its Unix socket (docs/socket-protocol.md):
//! `submit`, `status`, `abort`, `watch`, `runs`. Synchronous std I/O: one request at a time,
//! notifications read in order.
//!
//! Exit codes (stable, for scripts; docs/operator-guide.md):
//! - 0: done; for `watch` and `submit --watch`, the run completed.
//! - 2: refused or invalid: bad config, a run already in progress, no run to abort, permission
//!   denied, nothing to watch.
//! - 3: the daemon is unreachable (no socket, connection refused or lost).
//! - 4: the watched run ended `aborted` or `failed`.
//! - 130: Ctrl-C stopped `watch` or `submit --watch`; the run goes on.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nanoecr_core::{EventKind, RunStatus};
use nanoecr_proto::jsonrpc::OutgoingRequest;
use nanoecr_proto::methods::{self as m, RunRecord, RunStartParams, RunStatusResult};
use nanoecr_proto::notes::{names, EventNote, ProgressNote, RunEndNote, RunStartedNote};
use nanoecr_proto::{codes, Incoming, Notification, RpcError};
use serde_json::{json, Value};

/// Exit code: refused or invalid.
pub const EXIT_REFUSED: u8 = 2;
/// Exit code: daemon unreachable.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Exit code: the run ended aborted or failed.
pub const EXIT_RUN_NOT_COMPLETE: u8 = 4;

/// Options shared by every client command.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Socket path of nanoecrd (default: $XDG_RUNTIME_DIR/nanoecr/nanoecrd.sock; without
    /// XDG_RUNTIME_DIR, /run/nanoecr/nanoecrd.sock for root, else $TMPDIR/nanoecr-<uid>/nanoecrd.sock).
    #[arg(long, env = "NANOECR_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Print results (and, for `watch`, every notification) as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for a socket that does not exist yet or refuses connections, s: a
    /// daemon started just before (`nanoecrd & nanoecr submit …`) binds it within moments.
    #[arg(long, env = "NANOECR_CONNECT_WAIT_S", default_value_t = 5.0, value_parser = wait_seconds)]
    pub connect_wait_s: f64,
}

fn wait_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=3600.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a wait in seconds from 0 to 3600")),
    }
}

/// Arguments of `nanoecr submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Run config (TOML), or `-` for stdin. Sent as text: the daemon needs no access to it.
    pub config: String,
    /// Directory for the run file on the daemon's machine (absolute; default: the daemon's).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Simulation seed (overrides `[simulation] seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run unpaced (simulated rig only).
    #[arg(long)]
    pub fast: bool,
    /// Stay and watch the run to its end (exit code by its status).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Why a client command could not do its job.
enum Failure {
    /// No daemon to talk to.
    Unreachable(String),
    /// The socket's file mode (or its directory's) keeps this user out.
    Denied(String),
    /// The daemon said no.
    Refused(RpcError),
}

impl Failure {
    fn report(self) -> ExitCode {
        match self {
            Failure::Unreachable(why) => {
                eprintln!("error: nanoecrd unreachable: {why}");
                eprintln!("  (is nanoecrd running? its socket is chosen with --socket or NANOECR_SOCKET)");
                ExitCode::from(EXIT_UNREACHABLE)
            }
            Failure::Denied(why) => {
                eprintln!("error: {why}");
                ExitCode::from(EXIT_REFUSED)
            }
            Failure::Refused(e) => {
                // The message is complete: for an invalid config it already names the file,
                // line, key, value and the accepted range with its unit (`data` repeats it).
                eprintln!("error: {}", e.message);
                match e.code {
                    codes::RUN_IN_PROGRESS => {
                        eprintln!("  (follow it with `nanoecr watch`, or stop it with `nanoecr abort`)")
                    }
                    codes::PERMISSION_DENIED => eprintln!(
                        "  (nanoecrd admits its own user, root and members of its `socket.group`; see docs/operator-guide.md)"
                    ),
                    _ => {}
                }
                ExitCode::from(EXIT_REFUSED)
            }
        }
    }
}

/// "permission denied on …", naming the group that would let this user in: the socket's, or,
/// when its directory is what keeps the user out, the directory's.
fn denied(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let (what, meta) = match std::fs::metadata(path) {
        Ok(m) => ("socket", Some(m)),
        Err(_) => ("socket directory", path.parent().and_then(|d| std::fs::metadata(d).ok())),
    };
    match meta {
        Some(m) => {
            let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid()))
                .ok()
                .flatten()
                .map_or_else(|| format!("gid {}", m.gid()), |g| g.name);
            format!(
                "permission denied on nanoecrd's socket {}: the {what} (mode {:03o}) admits group `{group}`; \
                 ask for membership of `{group}` and log in again (docs/operator-guide.md, \"Who may use it\")",
                path.display(),
                m.mode() & 0o777
            )
        }
        None => format!("permission denied on nanoecrd's socket {}", path.display()),
    }
}

fn socket_path(c: &CommonArgs) -> PathBuf {
    c.socket.clone().unwrap_or_else(nanoecr_daemon::server::config::default_socket_path)
}

/// One connection to the daemon.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    /// Notifications read while waiting for a response.
    held: std::collections::VecDeque<Notification>,
}

impl Conn {
    fn open(c: &CommonArgs) -> Result<Self, Failure> {
        use std::io::ErrorKind;
        let path = socket_path(c);
        let deadline = Instant::now() + Duration::from_secs_f64(c.connect_wait_s);
        let s = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(e) if e.kind() == ErrorKind::PermissionDenied => return Err(Failure::Denied(denied(&path))),
                // No socket yet, or a stale one the starting daemon is about to replace: poll
                // until the deadline (a product wait for a process, not a test's timing).
                Err(e)
                    if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => return Err(Failure::Unreachable(format!("{}: {e}", path.display()))),
            }
        };
        let r = s.try_clone().map_err(|e| Failure::Unreachable(e.to_string()))?;
        Ok(Self { reader: BufReader::new(r), writer: s, next_id: 1, held: Default::default() })
    }

    fn read_incoming(&mut self) -> Result<Incoming, Failure> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err(Failure::Unreachable("the daemon closed the connection".into())),
            Ok(_) => Incoming::parse(line.trim_end().as_bytes())
                .map_err(|e| Failure::Unreachable(format!("garbled line from the daemon: {e}"))),
            Err(e) => Err(Failure::Unreachable(e.to_string())),
        }
    }

    fn call(&mut self, method: &str, params: impl serde::Serialize) -> Result<Value, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_string(&OutgoingRequest::new(id, method, params))
            .map_err(|e| Failure::Refused(RpcError::internal(e)))?;
        line.push('\n');
        // A refused peer gets one error line and a closed socket: the write may fail while the
        // explanation waits to be read, so read before giving up.
        let wrote = self.writer.write_all(line.as_bytes());
        loop {
            match self.read_incoming() {
                Ok(Incoming::Response(r)) if r.id == id || r.id.is_null() => {
                    return r.into_result().map_err(Failure::Refused)
                }
                Ok(Incoming::Response(_)) => {}
                Ok(Incoming::Notification(n)) => self.held.push_back(n),
                Err(f) => {
                    return Err(match wrote {
                        Err(e) => Failure::Unreachable(e.to_string()),
                        Ok(()) => f,
                    })
                }
            }
        }
    }

    fn next_note(&mut self) -> Result<Notification, Failure> {
        if let Some(n) = self.held.pop_front() {
            return Ok(n);
        }
        loop {
            if let Incoming::Notification(n) = self.read_incoming()? {
                return Ok(n);
            }
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::Unreachable(format!("unexpected answer from the daemon: {e}")))
}

fn finish(r: Result<ExitCode, Failure>) -> anyhow::Result<ExitCode> {
    Ok(r.unwrap_or_else(Failure::report))
}

fn exit_for(status: RunStatus) -> ExitCode {
    if status == RunStatus::Complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_RUN_NOT_COMPLETE)
    }
}

/// `nanoecr submit`.
pub fn submit(a: SubmitArgs) -> anyhow::Result<ExitCode> {
    // The same bound as the daemon's (1 MiB, regular files only, never a blocking open): a typo
    // like `/dev/zero` must not make the client read without end either.
    let (read, name) = if a.config == "-" {
        (nanoecr_core::config::read_config_text(std::io::stdin().lock()), "<stdin>".to_string())
    } else {
        (nanoecr_core::config::read_config_file(std::path::Path::new(&a.config)), a.config.clone())
    };
    let text = match read {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
    };
    let out_dir = match a.out_dir.as_ref().map(std::path::absolute) {
        Some(Ok(p)) => Some(p.display().to_string()),
        Some(Err(e)) => {
            eprintln!("error: --out-dir: {e}");
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
        None => None,
    };
    let params = RunStartParams {
        config_toml: Some(text),
        config_name: Some(name),
        out_dir,
        seed: a.seed,
        fast: a.fast.then_some(true),
        ..Default::default()
    };
    finish((|| {
        let mut conn = Conn::open(&a.common)?;
        if a.watch {
            // Subscribe first so not a notification of this run is missed.
            conn.call(m::EVENTS_SUBSCRIBE, json!({ "samples": false }))?;
        }
        let started: m::RunStartResult = decode(conn.call(m::RUN_START, &params)?)?;
        if a.watch {
            // Before the first line, which is what a script (or a test) waits for.
            explain_interrupt(started.run_id);
        }
        if a.common.json {
            println!("{}", serde_json::to_string(&started).unwrap_or_default());
        } else {
            println!("started run {}: {} ({} s program)", started.run_id, started.file, started.total_s);
        }
        if a.watch {
            follow(&mut conn, started.run_id, a.common.json)
        } else {
            Ok(ExitCode::SUCCESS)
        }
    })())
}

/// `nanoecr status`.
pub fn status(a: CommonArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let mut conn = Conn::open(&a)?;
        let v = conn.call(m::RUN_STATUS, json!({}))?;
        if a.json {
            println!("{v}");
            return Ok(ExitCode::SUCCESS);
        }
        let s: RunStatusResult = decode(v)?;
        println!(
            "nanoecrd: {}",
            serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        );
        if let Some(r) = &s.run {
            println!("run {}: {}", r.run_id, r.file);
            if let Some(p) = &r.progress {
                println!("  {}", progress_line(p));
            }
            if let Some(why) = &r.abort_requested {
                println!("  abort requested ({why}); unloading");
            }
        }
        if let Some(l) = &s.last {
            println!("last run: {}", record_line(l));
        }
        Ok(ExitCode::SUCCESS)
    })())
}

/// `nanoecr abort`.
pub fn abort(a: CommonArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let mut conn = Conn::open(&a)?;
        let r: m::RunAbortResult = decode(conn.call(m::RUN_ABORT, json!({}))?)?;
        if a.json {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
        } else if r.already_requested {
            println!("abort already requested for run {} ({})", r.run_id, r.file);
        } else {
            println!("abort requested for run {} ({}); the load ramps down safely", r.run_id, r.file);
        }
        Ok(ExitCode::SUCCESS)
    })())
}

/// `nanoecr watch`.
pub fn watch(a: CommonArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let mut conn = Conn::open(&a)?;
        let sub: m::SubscribeResult = decode(conn.call(m::EVENTS_SUBSCRIBE, json!({ "samples": a.json }))?)?;
        match sub.run {
            Some(r) => {
                explain_interrupt(r.run_id);
                if !a.json {
                    println!("watching run {}: {}", r.run_id, r.file);
                }
                follow(&mut conn, r.run_id, a.json)
            }
            None => {
                // Maybe it just ended: report the last run and its status.
                let s: RunStatusResult = decode(conn.call(m::RUN_STATUS, json!({}))?)?;
                match s.last {
                    Some(l) => {
                        println!("no run in progress; last run: {}", record_line(&l));
                        Ok(exit_for(l.status))
                    }
                    None => {
                        eprintln!("no run in progress, and none has run yet");
                        Ok(ExitCode::from(EXIT_REFUSED))
                    }
                }
            }
        }
    })())
}

/// `nanoecr runs`.
pub fn runs(a: CommonArgs) -> anyhow::Result<ExitCode> {
    finish((|| {
        let mut conn = Conn::open(&a)?;
        let v = conn.call(m::RUNS_LIST, json!({}))?;
        if a.json {
            println!("{v}");
            return Ok(ExitCode::SUCCESS);
        }
        let list: m::RunsListResult = decode(v)?;
        if list.runs.is_empty() {
            println!("no runs yet");
        }
        for r in &list.runs {
            println!("{}", record_line(r));
        }
        Ok(ExitCode::SUCCESS)
    })())
}

/// Exit code when Ctrl-C (SIGINT) stops `watch` or `submit --watch` (128 + SIGINT, as a shell
/// reports it); the run goes on.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Ctrl-C stops the watching, not the test: say so, and how to stop the test, instead of leaving
/// the operator to believe the rig was stopped.
fn explain_interrupt(run_id: u64) {
    let signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT]);
    let mut signals = match signals {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the Ctrl-C handler");
            return;
        }
    };
    let spawned = std::thread::Builder::new().name("nanoecr-sigint".into()).spawn(move || {
        if signals.forever().next().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "\nnanoecr: stopped watching; run {run_id} continues on nanoecrd \
                 (`nanoecr watch` follows it again, `nanoecr abort` stops it with a safe unload)"
            );
            let _ = err.flush();
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the Ctrl-C handler thread");
    }
}

/// Stream the run's notifications until its `run.end`; exit code by its status.
fn follow(conn: &mut Conn, run_id: u64, json_out: bool) -> Result<ExitCode, Failure> {
    let tty = std::io::stderr().is_terminal();
    let mut last_plain = Instant::now() - Duration::from_secs(10);
    loop {
        let n = conn.next_note()?;
        if json_out {
            println!("{}", serde_json::to_string(&n).unwrap_or_default());
        }
        let mine = n.params.get("run_id").and_then(Value::as_u64) == Some(run_id);
        match n.method.as_str() {
            names::PROGRESS if mine && !json_out => {
                if let Ok(p) = n.params::<ProgressNote>() {
                    if tty {
                        eprint!("\r\x1b[2K{}", progress_line(&p));
                    } else if last_plain.elapsed() >= Duration::from_secs(1) {
                        eprintln!("{}", progress_line(&p));
                        last_plain = Instant::now();
                    }
                }
            }
            names::EVENT if mine && !json_out => {
                if let Ok(e) = n.params::<EventNote>() {
                    if tty {
                        eprint!("\r\x1b[2K");
                    }
                    println!("{}", event_line(&e));
                }
            }
            names::RUN_STARTED if !json_out => {
                if let Ok(s) = n.params::<RunStartedNote>() {
                    if s.run_id != run_id {
                        println!("(another run started: {})", s.file);
                    }
                }
            }
            names::RUN_END if mine => {
                let end: RunEndNote = decode(n.params)?;
                if !json_out {
                    if tty {
                        eprintln!();
                    }
                    match &end.summary {
                        Some(s) => println!(
                            "run {} {}: {} — {} samples ({} dropped), spikes p {}, n {}, pop-ins {}; {}",
                            run_id,
                            end.status,
                            end.file,
                            s.samples,
                            s.dropped,
                            s.spikes_p,
                            s.spikes_n,
                            s.popins,
                            s.end_reason
                        ),
                        None => {
                            println!("run {run_id} {}: {} — {}", end.status, end.file, end.error.unwrap_or_default())
                        }
                    }
                }
                return Ok(exit_for(end.status));
            }
            names::DROPPED => {
                eprintln!("error: the daemon dropped this client (it read too slowly)");
                return Err(Failure::Unreachable("dropped by the daemon".into()));
            }
            _ => {}
        }
    }
}

fn progress_line(p: &ProgressNote) -> String {
    crate::run::progress_line(&p.progress())
}

/// One event. The magnitude's meaning and unit depend on the kind (docs/file-format.md).
fn event_line(e: &EventNote) -> String {
    let what = match e.kind {
        EventKind::Spike => format!("spike {}", e.sign.name()),
        EventKind::Popin => "pop-in".to_string(),
        EventKind::Interlock => "interlock".to_string(),
    };
    let magnitude = match e.kind {
        EventKind::Spike => format!("Δρ/ρ {:+.3e}", e.magnitude),
        EventKind::Popin if e.linked_delta_rho.is_finite() => {
            format!("jump {:.2} nm, linked Δρ/ρ {:+.3e}", e.magnitude, e.linked_delta_rho)
        }
        EventKind::Popin => format!("jump {:.2} nm", e.magnitude),
        EventKind::Interlock => format!("tripped at {:.4e} (in the limit's unit); unloading safely", e.magnitude),
    };
    format!(
        "{what:>9} at t = {:.4} s ({}), {magnitude}, stress {:.0} MPa",
        e.onset_time_s,
        e.segment.name(),
        e.stress_mpa
    )
}

fn record_line(r: &RunRecord) -> String {
    let id = r.run_id.map_or("-".to_string(), |i| i.to_string());
    let when = r.ended_at.as_deref().or(r.started_at.as_deref()).unwrap_or("");
    let detail = match &r.summary {
        Some(s) => format!("{} samples ({} dropped), {}", s.samples, s.dropped, s.end_reason),
        None => r.end_reason.clone().unwrap_or_default(),
    };
    format!("{id:>4}  {:<8}  {when}  {}  {detail}", r.status.name(), r.file)
}
