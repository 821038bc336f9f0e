//! The HTTP routes, the guard in front of all of them, and the WebSocket relay.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nanoecr_proto::methods::{self as m, RunStartParams, RunsListResult};
use nanoecr_proto::RpcError;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::daemon::{self, DaemonError};
use crate::live::Hub;
use crate::runview::RunView;
use crate::UiConfig;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const UPLOT_JS: &str = include_str!("../assets/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../assets/uPlot.LICENSE");

/// Widest chart the run view decimates for, pixels (a 4K screen).
const MAX_PIXELS: usize = 4096;

/// What the server listens on, for the `Host` and `Origin` checks.
pub enum Bound {
    /// 127.0.0.1:port.
    Tcp(u16),
    /// A private Unix socket: the browser reaches it through a forwarded loopback port we cannot
    /// know, so any loopback `Host` is accepted (a rebound DNS name still is not).
    Unix,
}

/// Everything the handlers share.
pub struct App {
    cfg: UiConfig,
    /// Accepted `Host` header values (TCP); `None`: any loopback name with any port (Unix).
    hosts: Option<[String; 2]>,
    /// The token cookie's name (cookies are not per port: the name is).
    cookie: String,
    hub: Arc<Hub>,
    /// The run opened last, with its summary: zooming reads only the window shown.
    cached: Mutex<Option<Arc<RunView>>>,
}

impl App {
    /// State for a server bound as `bound`.
    pub fn new(cfg: UiConfig, bound: Bound, hub: Arc<Hub>) -> Self {
        let (hosts, cookie) = match bound {
            Bound::Tcp(port) => {
                (Some([format!("127.0.0.1:{port}"), format!("localhost:{port}")]), format!("nanoecr_token_{port}"))
            }
            Bound::Unix => (None, "nanoecr_token_unix".to_string()),
        };
        Self { cfg, hosts, cookie, hub, cached: Mutex::new(None) }
    }

    fn host_ok(&self, host: &str) -> bool {
        match &self.hosts {
            Some(hosts) => hosts.iter().any(|h| h == host),
            None => {
                let name = match host.rsplit_once(':') {
                    Some((n, port)) if !n.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => n,
                    _ => host,
                };
                matches!(name, "127.0.0.1" | "localhost" | "[::1]")
            }
        }
    }
}

/// The routes, behind the guard.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/assets/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/assets/uPlot.iife.min.js", get(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }))
        .route("/assets/uPlot.min.css", get(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }))
        .route("/assets/uPlot.LICENSE", get(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }))
        .route("/live", get(live))
        .route("/api/status", get(status))
        .route("/api/runs", get(runs))
        .route("/api/configs", get(configs))
        .route("/api/config", get(config))
        .route("/api/start", post(start))
        .route("/api/abort", post(abort))
        .route("/api/run", get(run_view))
        .route("/api/report", get(report))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .with_state(app)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn forbidden(why: &'static str) -> Response {
    (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("403 forbidden: {why}\n"))
        .into_response()
}

/// Equal without an early exit, so the time taken says nothing about how much of it matched.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_token(req: &Request) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix("token=")).map(str::to_string)
}

fn cookie_token(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// In front of every route: Host, token, and Origin for the live stream and state changes.
async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !app.host_ok(host) {
        return forbidden("Host is not this server's loopback address (DNS rebinding?)");
    }
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    let changes_state = req.method() != Method::GET || req.uri().path() == "/live";
    if let Some(o) = origin {
        // The page's own Origin is the scheme and the Host it was loaded from (checked above).
        if changes_state && o.strip_prefix("http://") != Some(host) {
            return forbidden("Origin is not this page");
        }
    } else if req.uri().path() == "/live" {
        // Browsers always send Origin on a WebSocket handshake; one without it is not the page.
        return forbidden("the live stream needs the page's Origin");
    }
    let from_query = query_token(&req);
    if let Some(token) = &app.cfg.token {
        let presented = from_query
            .clone()
            .or_else(|| headers.get("x-nanoecr-token").and_then(|v| v.to_str().ok()).map(str::to_string))
            .or_else(|| cookie_token(headers, &app.cookie));
        if !presented.is_some_and(|p| same(&p, token)) {
            return forbidden("missing or wrong token (use the URL `nanoecr ui` printed)");
        }
    }
    let mut resp = next.run(req).await;
    if let (Some(t), Some(_)) = (&app.cfg.token, from_query) {
        // The page's own requests (fetch, WebSocket) carry it from here on.
        let cookie = format!("{}={t}; Path=/; HttpOnly; SameSite=Strict", app.cookie);
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp.headers_mut().insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Only our own scripts and styles; no connection anywhere but here.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:",
            ),
        ],
        INDEX_HTML,
    )
        .into_response()
}

async fn live(State(app): State<Arc<App>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| relay(app, socket))
}

async fn relay(app: Arc<App>, mut socket: WebSocket) {
    let (lines, mut rx) = app.hub.join();
    for l in lines {
        if socket.send(Message::Text(l.to_string().into())).await.is_err() {
            return;
        }
    }
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Ok(l) => {
                    if socket.send(Message::Text(l.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let note = json!({"method": "ui.lagged", "params": {"skipped_lines": n}}).to_string();
                    if socket.send(Message::Text(note.into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            },
            // The page sends nothing; this notices it going away.
            m = socket.recv() => if !matches!(m, Some(Ok(_))) { return },
        }
    }
}

/// The daemon's answer as JSON: `{result}` or `{error: {code, message, data}}` with a status.
fn answer(r: Result<Value, DaemonError>) -> Response {
    match r {
        Ok(v) => Json(json!({ "result": v })).into_response(),
        Err(DaemonError::Refused(e)) => (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": e }))).into_response(),
        Err(e @ DaemonError::Unreachable { .. }) => {
            (StatusCode::BAD_GATEWAY, Json(json!({ "error": { "code": null, "message": e.to_string() } })))
                .into_response()
        }
    }
}

fn bad_request(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": { "code": null, "message": msg.into() } }))).into_response()
}

async fn status(State(app): State<Arc<App>>) -> Response {
    answer(daemon::call(&app.cfg.socket, m::RUN_STATUS, json!({})).await)
}

async fn runs(State(app): State<Arc<App>>) -> Response {
    answer(daemon::call(&app.cfg.socket, m::RUNS_LIST, json!({ "limit": 50 })).await)
}

/// The `*.toml` files directly in `--configs`, by name.
fn config_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".toml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

async fn configs(State(app): State<Arc<App>>) -> Response {
    let dir = app.cfg.configs_dir.as_ref();
    Json(json!({
        "dir": dir.map(|d| d.display().to_string()),
        "configs": dir.map(|d| config_names(d)).unwrap_or_default(),
    }))
    .into_response()
}

/// A config of `--configs` by name: only names the listing offers (no paths).
fn read_config(app: &App, name: &str) -> Result<(PathBuf, String), Response> {
    let Some(dir) = &app.cfg.configs_dir else {
        return Err(bad_request("no config directory (start `nanoecr ui` with --configs DIR)"));
    };
    if !config_names(dir).iter().any(|n| n == name) {
        return Err(bad_request(format!("no config named {name:?} in {}", dir.display())));
    }
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((path, text)),
        Err(e) => Err(bad_request(format!("cannot read {}: {e}", path.display()))),
    }
}

#[derive(Deserialize)]
struct NameQuery {
    name: String,
}

async fn config(State(app): State<Arc<App>>, Query(q): Query<NameQuery>) -> Response {
    match read_config(&app, &q.name) {
        Ok((path, text)) => {
            Json(json!({ "name": q.name, "path": path.display().to_string(), "toml": text })).into_response()
        }
        Err(r) => r,
    }
}

/// `POST /api/start`: a config of `--configs` by name, or pasted TOML.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    config_name: Option<String>,
    config_toml: Option<String>,
    seed: Option<u64>,
    fast: Option<bool>,
}

async fn start(State(app): State<Arc<App>>, Json(b): Json<StartBody>) -> Response {
    let (text, name) = match (b.config_name, b.config_toml) {
        (Some(n), None) => match read_config(&app, &n) {
            // The name the CLI would print for `nanoecr submit <dir>/<name>`.
            Ok((path, text)) => (text, path.display().to_string()),
            Err(r) => return r,
        },
        (None, Some(t)) => (t, "pasted.toml".to_string()),
        _ => return bad_request("give exactly one of config_name and config_toml"),
    };
    let params = RunStartParams {
        config_toml: Some(text),
        config_name: Some(name),
        seed: b.seed,
        fast: b.fast.filter(|f| *f),
        ..Default::default()
    };
    answer(daemon::call(&app.cfg.socket, m::RUN_START, &params).await)
}

async fn abort(State(app): State<Arc<App>>) -> Response {
    answer(daemon::call(&app.cfg.socket, m::RUN_ABORT, json!({})).await)
}

/// Only files the daemon lists may be opened: the page cannot read arbitrary paths.
async fn known_file(app: &App, file: &str) -> Result<PathBuf, Response> {
    let v = daemon::call(&app.cfg.socket, m::RUNS_LIST, json!({})).await.map_err(|e| answer(Err(e)))?;
    let list: RunsListResult = serde_json::from_value(v)
        .map_err(|e| answer(Err(DaemonError::Refused(RpcError::internal(format!("unexpected runs.list: {e}"))))))?;
    if list.runs.iter().any(|r| r.file == file) {
        Ok(PathBuf::from(file))
    } else {
        Err((
            StatusCode::NOT_FOUND,
            Json(json!({ "error": { "code": null, "message": format!("{file} is not a run nanoecrd lists") } })),
        )
            .into_response())
    }
}

async fn load(app: &Arc<App>, path: PathBuf) -> Result<Arc<RunView>, Response> {
    if let Some(f) = app.cached.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
        // A run still being written grows: open it afresh until it has ended.
        if f.path == path && f.status != nanoecr_core::RunStatus::Running {
            return Ok(Arc::clone(f));
        }
    }
    // The old view goes first: at most one run's summary is held.
    *app.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    let read = tokio::task::spawn_blocking(move || RunView::open(&path)).await;
    match read {
        Ok(Ok(f)) => {
            let f = Arc::new(f);
            *app.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&f));
            Ok(f)
        }
        Ok(Err(e)) => Err(bad_request(e.to_string())),
        Err(e) => Err(bad_request(format!("reading the run file failed: {e}"))),
    }
}

#[derive(Deserialize)]
struct RunQuery {
    file: String,
    t0_s: Option<f64>,
    t1_s: Option<f64>,
    pixels: Option<usize>,
}

async fn run_view(State(app): State<Arc<App>>, Query(q): Query<RunQuery>) -> Response {
    let path = match known_file(&app, &q.file).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let f = match load(&app, path).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let t0 = q.t0_s.unwrap_or(f64::NEG_INFINITY);
    let t1 = q.t1_s.unwrap_or(f64::INFINITY);
    let pixels = q.pixels.unwrap_or(1000).clamp(1, MAX_PIXELS);
    let view = Arc::clone(&f);
    let dec = match tokio::task::spawn_blocking(move || view.window(t0, t1, pixels)).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return bad_request(e.to_string()),
        Err(e) => return bad_request(format!("reading the run file failed: {e}")),
    };
    let events: Vec<Value> = f
        .events
        .iter()
        .map(|e| {
            json!({
                "kind": e.kind.name(), "sign": e.sign.name(), "onset_time_s": e.onset_time_s,
                "peak_time_s": e.peak_time_s, "duration_s": e.duration_s,
                "magnitude": e.magnitude.is_finite().then_some(e.magnitude), "segment": e.segment.name(),
            })
        })
        .collect();
    Json(json!({
        "file": f.path.display().to_string(),
        "status": f.status.name(),
        "end_reason": f.end_reason,
        "rate_hz": f.rate_hz,
        "samples": f.rows,
        // What the server holds for this run (the per-block summary), bytes.
        "summary_bytes": f.summary.bytes(),
        "duration_s": f.duration_s,
        "data": dec,
        "events": events,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct FileQuery {
    file: String,
}

async fn report(State(app): State<Arc<App>>, Query(q): Query<FileQuery>) -> Response {
    let path = match known_file(&app, &q.file).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let done = tokio::task::spawn_blocking(move || {
        let input = nanoecr_analysis::io::load_run(&path, false).map_err(|e| e.to_string())?;
        let a = nanoecr_analysis::analyze_run(&input, &nanoecr_analysis::AnalysisOptions::default());
        // The figures `nanoecr analyze --out-dir` writes, as SVG text for <img src="data:…">.
        let dir = tempfile::tempdir().map_err(|e| format!("a temporary directory for the figures: {e}"))?;
        let files = nanoecr_analysis::plots::write_run_plots(&input, &a, dir.path()).map_err(|e| e.to_string())?;
        let mut figures = Vec::new();
        for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "svg")) {
            let svg = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let name = f.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            figures.push(json!({ "name": name, "svg": svg }));
        }
        Ok::<_, String>((nanoecr_analysis::report::run_markdown(&a, false), figures))
    })
    .await;
    match done {
        Ok(Ok((md, figures))) => Json(json!({ "markdown": md, "figures": figures })).into_response(),
        Ok(Err(e)) => bad_request(e),
        Err(e) => bad_request(format!("the analysis failed: {e}")),
    }
}
