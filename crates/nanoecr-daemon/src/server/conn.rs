//! One client connection: check its credentials, then read newline-framed requests, dispatch
//! them one at a time, and write responses and (once subscribed) notifications through one
//! bounded queue drained by a writer task. Nothing a client sends or fails to read reaches the
//! run: the worst a client can do is get itself disconnected.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nanoecr_core::{ConfigError, ConfigErrorKind, EndReason, RunConfig};
use nanoecr_proto::methods::{self as m, DaemonState, RunStartParams};
use nanoecr_proto::notes::{names, DroppedNote, RunStartedNote};
use nanoecr_proto::{codes, parse_request, unix_now_s, Frame, LineDecoder, Response, RpcError, MAX_LINE_BYTES};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use super::fanout::{self, FanoutCmd, Kind, Line, Sub};
use super::peer;
use super::state::{lock, Active, Daemon, Slot};
use crate::run::{start_run, RunOptions};

/// How long a refused or over-limit client gets to take its error line.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_millis(500);

/// Refuse a connection with one error line, then close it.
pub(crate) async fn refuse(mut stream: UnixStream, error: RpcError) {
    let line = Response::err(Value::Null, error).to_line();
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        let _ = stream.write_all(line.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serve one connection until the client leaves, is dropped, or the daemon closes.
pub(crate) async fn handle(daemon: Arc<Daemon>, stream: UnixStream, conn_id: u64, mut closing: watch::Receiver<bool>) {
    match peer::peer_of(&stream) {
        Ok(cred) => {
            if let Err(why) = peer::check_peer(&cred, &daemon.policy()) {
                tracing::warn!(conn = conn_id, uid = cred.uid, gid = cred.gid, pid = ?cred.pid, "refused: {why}");
                refuse(stream, RpcError::new(codes::PERMISSION_DENIED, why)).await;
                return;
            }
            tracing::debug!(conn = conn_id, uid = cred.uid, pid = ?cred.pid, "client connected");
        }
        Err(e) => {
            tracing::warn!(conn = conn_id, error = %e, "cannot read peer credentials; refusing");
            refuse(stream, RpcError::new(codes::PERMISSION_DENIED, "permission denied: peer credentials unavailable"))
                .await;
            return;
        }
    }
    let queue_lines = daemon.config().queue_lines;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Line>(queue_lines);
    let (kick_tx, mut kick_rx) = watch::channel(false);
    let mut kicked = kick_tx.subscribe();

    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = async { let _ = kick_rx.wait_for(|k| *k).await; } => {
                    let note = fanout::line(names::DROPPED, DroppedNote { reason: "the client stopped reading; its queue stayed full".into() });
                    let _ = tokio::time::timeout(Duration::from_millis(100), wr.write_all(note.as_bytes())).await;
                    break;
                }
                line = rx.recv() => match line {
                    Some(l) => {
                        if wr.write_all(l.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
        let _ = wr.shutdown().await;
    });

    let mut decoder = LineDecoder::new(MAX_LINE_BYTES);
    let mut buf = vec![0u8; 16 * 1024];
    let mut frames = Vec::new();
    let mut open = true;
    while open {
        let n = tokio::select! {
            r = rd.read(&mut buf) => r.unwrap_or_default(),
            _ = async { let _ = kicked.wait_for(|k| *k).await; } => break,
            _ = async { let _ = closing.wait_for(|c| *c).await; } => break,
        };
        if n == 0 {
            decoder.finish(&mut |f| frames.push(f));
            open = false;
        } else {
            decoder.push(&buf[..n], &mut |f| frames.push(f));
        }
        for f in frames.drain(..) {
            if !process(&daemon, conn_id, &tx, &kick_tx, f).await {
                open = false;
                break;
            }
        }
    }
    daemon.subs.remove(conn_id);
    drop(tx);
    // Let the writer send what is queued (responses, run.end), then close.
    let _ = writer.await;
    tracing::debug!(conn = conn_id, "client disconnected");
}

/// Handle one frame; false when the connection is gone.
async fn process(
    daemon: &Arc<Daemon>,
    conn_id: u64,
    tx: &mpsc::Sender<Line>,
    kick: &watch::Sender<bool>,
    f: Frame,
) -> bool {
    let req = match f {
        Frame::TooLong => {
            let e = RpcError::new(
                codes::LINE_TOO_LONG,
                format!("request line longer than {MAX_LINE_BYTES} bytes; discarded (a config is at most 1 MiB)"),
            );
            return send(tx, Response::err(Value::Null, e)).await;
        }
        Frame::Line(l) if l.iter().all(u8::is_ascii_whitespace) => return true,
        Frame::Line(l) => match parse_request(&l) {
            Ok(r) => r,
            Err(resp) => return send(tx, *resp).await,
        },
    };
    let id = req.id.clone();
    tracing::debug!(conn = conn_id, method = %req.method, "request");
    if req.method == m::EVENTS_SUBSCRIBE {
        // Answer first, then register, so the response precedes the first notification. Both
        // happen under the slot lock: a run that ends meanwhile frees the slot only after this
        // subscriber is registered, so a client told "run in progress" always gets its run.end.
        let params: m::SubscribeParams = match req.params() {
            Ok(p) => p,
            Err(e) => return reply(tx, id, Err(e)).await,
        };
        let Ok(permit) = tx.reserve().await else { return false };
        let slot = lock(&daemon.slot);
        let run = match &*slot {
            Slot::Running(a) => Some(a.run.clone()),
            _ => None,
        };
        let result = Ok(to_value(m::SubscribeResult { subscribed: true, run }));
        if let Some(id) = id {
            permit.send(response(id, result).to_line().into());
        }
        daemon.subs.add(Sub::new(conn_id, tx.clone(), params, kick.clone()));
        drop(slot);
        return true;
    }
    let result = match req.method.as_str() {
        m::DAEMON_INFO => req.params::<m::NoParams>().map(|_| to_value(info(daemon))),
        m::RUN_STATUS => req.params::<m::NoParams>().map(|_| to_value(status(daemon))),
        m::RUNS_LIST => req.params::<m::RunsListParams>().map(|p| to_value(runs_list(daemon, p.limit))),
        m::RUN_ABORT => match req.params::<m::RunAbortParams>() {
            Ok(_) => abort(daemon).map(to_value),
            Err(e) => Err(e),
        },
        m::RUN_START => match req.params::<RunStartParams>() {
            Ok(p) => run_start(daemon, p).await.map(to_value),
            Err(e) => Err(e),
        },
        other => Err(RpcError::method_not_found(other)),
    };
    if let Err(e) = &result {
        tracing::info!(conn = conn_id, method = %req.method, code = e.code, "request refused: {}", e.message);
    }
    reply(tx, id, result).await
}

fn to_value(v: impl serde::Serialize) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

async fn reply(tx: &mpsc::Sender<Line>, id: Option<Value>, result: Result<Value, RpcError>) -> bool {
    // A request without id is a notification: JSON-RPC says no response, even for an error.
    let Some(id) = id else { return true };
    send(tx, response(id, result)).await
}

fn response(id: Value, result: Result<Value, RpcError>) -> Response {
    match result {
        Ok(v) => Response::ok(id, v),
        Err(e) => Response::err(id, e),
    }
}

async fn send(tx: &mpsc::Sender<Line>, resp: Response) -> bool {
    tx.send(resp.to_line().into()).await.is_ok()
}

fn info(d: &Daemon) -> m::DaemonInfo {
    let cfg = d.config();
    m::DaemonInfo {
        name: "nanoecrd".into(),
        version: nanoecr_core::SOFTWARE_VERSION.into(),
        protocol_version: nanoecr_proto::PROTOCOL_VERSION,
        methods: m::ALL.iter().map(|s| s.to_string()).collect(),
        pid: std::process::id(),
        uid: d.uid,
        allowed_group: cfg.allowed_group.map(|g| g.name),
        out_dir: cfg.out_dir.display().to_string(),
        started_at: d.started_at.clone(),
        state: lock(&d.slot).state(),
        clients: d.clients.load(Ordering::Relaxed),
        subscribers: d.subs.len(),
        max_load_ceiling_un: cfg.max_load_ceiling_un,
        max_displacement_ceiling_nm: cfg.max_displacement_ceiling_nm,
    }
}

fn status(d: &Daemon) -> m::RunStatusResult {
    let (state, run) = {
        let slot = lock(&d.slot);
        let run = match &*slot {
            Slot::Running(a) => Some(a.run.clone()),
            _ => None,
        };
        (slot.state(), run)
    };
    m::RunStatusResult { state, run, last: lock(&d.recent).front().cloned() }
}

fn runs_list(d: &Daemon, limit: Option<usize>) -> m::RunsListResult {
    let recent = lock(&d.recent);
    m::RunsListResult { runs: recent.iter().take(limit.unwrap_or(usize::MAX)).cloned().collect() }
}

fn abort(d: &Daemon) -> Result<m::RunAbortResult, RpcError> {
    match d.request_abort(EndReason::OperatorAbort) {
        Some((run_id, file, already_requested)) => Ok(m::RunAbortResult { run_id, file, already_requested }),
        None => Err(RpcError::new(codes::NO_RUN, "no run in progress to abort")),
    }
}

fn config_error(e: &ConfigError) -> RpcError {
    RpcError::new(codes::INVALID_CONFIG, format!("invalid config: {e}")).with_data(m::ConfigErrorData::from(e))
}

/// The site ceilings of nanoecrd.toml: a run may ask for tighter limits, never looser.
fn check_ceilings(cfg: &RunConfig, max_load: Option<f64>, max_disp: Option<f64>) -> Result<(), ConfigError> {
    let checks = [
        ("limits.max_load_un", "max_load_un", cfg.raw.limits.max_load_un, max_load, "µN"),
        ("limits.max_displacement_nm", "max_displacement_nm", cfg.raw.limits.max_displacement_nm, max_disp, "nm"),
    ];
    for (key, short, value, ceiling, unit) in checks {
        if let Some(c) = ceiling {
            if value > c {
                let mut e = ConfigError::new(
                    ConfigErrorKind::OutOfRange,
                    key,
                    "above this rig's ceiling (nanoecrd.toml [limits])",
                )
                .value(value)
                .expected(format!("≤ {c} {unit}"));
                e.line = cfg.source_toml.lines().position(|l| l.trim_start().starts_with(short)).map(|i| i + 1);
                return Err(e);
            }
        }
    }
    Ok(())
}

fn absolute(p: &str, what: &str) -> Result<PathBuf, RpcError> {
    let path = PathBuf::from(p);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(RpcError::invalid_params(format!(
            "`{what}` must be an absolute path (the daemon has its own working directory)"
        )))
    }
}

async fn run_start(d: &Arc<Daemon>, p: RunStartParams) -> Result<m::RunStartResult, RpcError> {
    if d.shutting_down.load(Ordering::Acquire) {
        return Err(RpcError::new(codes::SHUTTING_DOWN, "nanoecrd is shutting down; no new run"));
    }
    let mut cfg = match (p.config_toml, p.config_path) {
        (Some(text), None) => {
            let name = p.config_name.map(PathBuf::from);
            nanoecr_core::config::parse(&text, name.as_deref()).map_err(|e| config_error(&e))?
        }
        (None, Some(path)) => {
            let path = absolute(&path, "config_path")?;
            let Some(dir) = d.config().run_config_dir else {
                return Err(RpcError::invalid_params(
                    "`config_path` is off on this nanoecrd (no `run_configs.directory` in its config); send the \
                     config's text as `config_toml` (as `nanoecr submit` does)",
                ));
            };
            // Lexically outside: refused before the file system is touched, so the answer says
            // nothing about which files exist elsewhere.
            if !path.starts_with(&dir) || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                return Err(RpcError::invalid_params(format!(
                    "`config_path` must name a file inside {} (nanoecrd's `run_configs.directory`)",
                    dir.display()
                )));
            }
            // Bounded and non-blocking (regular files ≤ 1 MiB, O_NONBLOCK): no device or FIFO can
            // hold this thread or grow the daemon's memory.
            tokio::task::spawn_blocking(move || nanoecr_core::config::load_within(&path, Some(&dir)))
                .await
                .map_err(RpcError::internal)?
                .map_err(|e| config_error(&e))?
        }
        _ => return Err(RpcError::invalid_params("give exactly one of `config_toml` and `config_path`")),
    };
    if let Some(seed) = p.seed {
        cfg.set_seed(seed);
    }
    let dcfg = d.config();
    check_ceilings(&cfg, dcfg.max_load_ceiling_un, dcfg.max_displacement_ceiling_nm).map_err(|e| config_error(&e))?;
    let out_dir = match p.out_dir {
        Some(o) => absolute(&o, "out_dir")?,
        None => dcfg.out_dir.clone(),
    };
    // Reserve the slot: this transition, under the lock, is what lets exactly one of two
    // simultaneous starts win.
    let run_id = {
        let mut slot = lock(&d.slot);
        match &*slot {
            Slot::Idle => {}
            Slot::Starting { .. } => {
                return Err(RpcError::new(codes::RUN_IN_PROGRESS, "a run is already in progress: (starting)"));
            }
            Slot::Running(a) => {
                let file = a.run.file.clone();
                return Err(RpcError::new(codes::RUN_IN_PROGRESS, format!("a run is already in progress: {file}"))
                    .with_data(m::RunInProgressData { run_id: a.run.run_id, file }));
            }
        }
        if d.shutting_down.load(Ordering::Acquire) {
            return Err(RpcError::new(codes::SHUTTING_DOWN, "nanoecrd is shutting down; no new run"));
        }
        let run_id = d.next_run_id.fetch_add(1, Ordering::Relaxed);
        *slot = Slot::Starting { run_id, pending_abort: None };
        run_id
    };
    d.publish_state(DaemonState::Starting);
    let total_s = cfg.load_function.total_s();
    let expected_samples = cfg.expected_samples();
    let fast = p.fast.unwrap_or(false);
    let daemon = Arc::clone(d);
    // Everything from opening the rig to installing the handle happens on one blocking thread,
    // so the slot ends consistent even if this request's task is cancelled midway.
    let started = tokio::task::spawn_blocking(move || {
        start_blocking(&daemon, run_id, cfg, out_dir, fast, total_s, expected_samples)
    })
    .await
    .map_err(RpcError::internal)?;
    started.map(|(file, t0_unix_s)| m::RunStartResult { run_id, file, t0_unix_s, total_s, expected_samples })
}

fn start_blocking(
    d: &Daemon,
    run_id: u64,
    cfg: RunConfig,
    out_dir: PathBuf,
    fast: bool,
    total_s: f64,
    expected_samples: u64,
) -> Result<(String, f64), RpcError> {
    let fail = |msg: String| {
        *lock(&d.slot) = Slot::Idle;
        d.publish_state(DaemonState::Idle);
        tracing::warn!(run_id, "run did not start: {msg}");
        RpcError::new(codes::RUN_START_FAILED, msg)
    };
    // One master per rig: before an instrument is touched, so a refused start moves nothing.
    let rig_lock =
        crate::riglock::acquire(&d.config().lock_dir, &cfg).map_err(|e| fail(format!("rig not available: {e}")))?;
    let rig = nanoecr_hw::open_rig(&cfg).map_err(|e| fail(format!("instrument not ready: {e}")))?;
    let opts = RunOptions { out_dir: Some(out_dir), fast, install_signal_handlers: false, ..Default::default() };
    let handle = start_run(cfg, rig, opts).map_err(|e| fail(e.to_string()))?;
    // The control thread started its clock inside start_run, a few µs before this.
    let t0_unix_s = unix_now_s();
    let file = handle.path().display().to_string();
    let updates = handle.updates().clone();
    let started_at = chrono::Utc::now().to_rfc3339();
    {
        let mut slot = lock(&d.slot);
        let pending = match &mut *slot {
            Slot::Starting { pending_abort, .. } => pending_abort.take(),
            _ => None,
        };
        let mut abort_requested = None;
        if let Some(reason) = pending {
            handle.abort(reason.clone());
            abort_requested = Some(reason.describe());
        }
        *slot = Slot::Running(Box::new(Active {
            _rig_lock: rig_lock,
            handle: Some(handle),
            run: m::ActiveRun {
                run_id,
                file: file.clone(),
                started_at,
                t0_unix_s,
                total_s,
                expected_samples,
                abort_requested,
                progress: None,
            },
        }));
        d.publish_state(slot.state());
    }
    tracing::info!(run_id, file = %file, total_s, fast, "run started");
    let note = RunStartedNote { run_id, file: file.clone(), t0_unix_s, total_s, expected_samples };
    d.subs.broadcast(Kind::Always, fanout::line(names::RUN_STARTED, &note));
    if d.fanout_tx.send(FanoutCmd::Run { run_id, updates }).is_err() {
        // Without the fan-out nobody would join the run: stop it safely and say so.
        tracing::error!(run_id, "fan-out thread is gone; aborting the run");
        d.request_abort(EndReason::StorageFault("nanoecrd internal error: fan-out thread gone".into()));
    }
    Ok((file, t0_unix_s))
}
