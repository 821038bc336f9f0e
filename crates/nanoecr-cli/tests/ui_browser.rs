//! `nanoecr ui` in a real browser: a real `nanoecrd` on a temp socket, `nanoecr ui` on port 0, and
//! Debian's headless `chromium` (installed by scripts/setup.sh; nothing is downloaded) driven over
//! the Chrome DevTools Protocol with a small client on `tungstenite`.
//!
//! The page is used as an operator would: a bad config shows the CLI's own error under the
//! offending line; the demo is started from the config picker; the live charts and the event
//! table fill; an abort (with its confirmation) ends the run `aborted`; the run is opened from the
//! recent runs and zoomed to one spike at single-sample resolution. Outside the page: no or a
//! wrong token, or a foreign `Host`, gets 403, and a foreign `Origin` cannot open the live stream.
//!
//! A second test needs no browser: the run view over HTTP on a run of a million samples keeps
//! every spike at every zoom.
//!
//! Waiting is on conditions only: each wait is a promise evaluated in the page that resolves when
//! its condition holds (checked on the page's timer) or after a generous bound, which fails the
//! test. Screenshots go to a directory the test prints.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

/// Longest any one step may take before the test fails (a hang, not a pace).
const LIMIT: Duration = Duration::from_secs(120);
const DEMO: &str = include_str!("../../../config/demo.toml");

/// Sampling rate of the run: 1 kHz (the paper's), or `NANOECR_UI_RATE_HZ` to measure the page
/// at other rates (docs/performance.md).
fn rate_hz() -> u32 {
    std::env::var("NANOECR_UI_RATE_HZ").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

/// The demo, shortened: 0.5 s settle, 3 s load, 60 s hold, 3 s unload. It is aborted once a spike
/// has been seen; the long hold keeps it running until then however slowly a loaded host (and the
/// browser on it) gets through the page's checks, and the interlocks judged on loop timing are
/// off, so a late loop cannot end it before the operator's abort either. On a rig of its own name,
/// so another simulated run on this machine (holding the "default" rig) does not refuse it.
fn short_demo() -> String {
    DEMO.replace("rate_hz = 1000", &format!("rate_hz = {}", rate_hz()))
        .replace("[limits]\n", "[limits]\nmax_command_gap_ms = inf\nmax_late_fraction = 1.0\n")
        .replace("backend = \"sim\"", &format!("backend = \"sim\"\nrig = \"ui-browser-{}\"", std::process::id()))
        .replace("load_s = 10.0", "load_s = 3.0")
        .replace("hold_s = 10.0", "hold_s = 60.0")
        .replace("unload_s = 10.0", "unload_s = 3.0")
        .replace("settle_s = 2.0", "settle_s = 0.5")
}

/// nanoecrd, built with this test's cargo, profile and target directory (as in tests/client.rs:
/// Cargo exposes only this package's binaries), unless `NANOECRD_BIN` names one.
fn nanoecrd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NANOECRD_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("<target>/<profile>");
    let target_dir = profile_dir.parent().expect("<target>");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "nanoecr-daemon", "--bin", "nanoecrd", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build for nanoecrd");
    assert!(status.success(), "building nanoecrd failed");
    profile_dir.join("nanoecrd")
}

/// nanoecr from this package, unless `NANOECR_BIN` names another build (a release one, for
/// measurements).
fn nanoecr_bin() -> PathBuf {
    std::env::var_os("NANOECR_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_nanoecr")), PathBuf::from)
}

/// A real nanoecrd on `socket` writing runs to `out_dir`, once it says it is ready.
fn start_daemon(socket: &Path, out_dir: &Path) -> Kill {
    spawn_until(
        Command::new(nanoecrd_bin())
            // Rig locks of its own, next to the socket: not the machine-wide /run/lock, where
            // every test run would leave a lock file behind.
            .env("NANOECR_LOCK_DIR", socket.with_file_name("locks"))
            .arg("--socket")
            .arg(socket)
            .arg("--out-dir")
            .arg(out_dir)
            .arg("--log-format")
            .arg("json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null()),
        "nanoecrd",
        |l| l.contains("nanoecrd ready").then_some(()),
    )
    .0
}

/// Children killed when the test ends, however it ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Spawn with stderr piped; forward each line to our stderr; return the first line for which
/// `ready` gives a value.
fn spawn_until<T: Send + 'static>(
    cmd: &mut Command,
    name: &'static str,
    ready: impl Fn(&str) -> Option<T> + Send + 'static,
) -> (Kill, T) {
    let mut child =
        cmd.stdin(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Chromium's complaints about the absent D-Bus are noise here.
            if !line.contains("unexpected operator") && !line.contains("dbus") {
                eprintln!("{name}: {line}");
            }
            if let Some(v) = ready(&line) {
                if let Some(t) = tx.take() {
                    let _ = t.send(v);
                }
            }
        }
    });
    let kill = Kill(child);
    let v = rx.recv_timeout(LIMIT).unwrap_or_else(|_| panic!("{name} did not become ready"));
    (kill, v)
}

/// One HTTP/1.1 GET on a fresh connection: (status, body).
fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(LIMIT)).expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    // Read the head, then Content-Length bytes: DevTools' server keeps the connection open.
    let mut r = BufReader::new(s);
    let mut head = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("read");
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().expect("content-length");
            }
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).expect("body");
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A minimal DevTools Protocol client on one page target.
struct Cdp {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Cdp {
    fn connect(url: &str) -> Self {
        let (ws, _) = tungstenite::connect(url).expect("connect to the page's DevTools socket");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(LIMIT)).expect("timeout");
        }
        Self { ws, next: 1 }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws.send(tungstenite::Message::text(msg)).expect("send to chromium");
        loop {
            let m = self.ws.read().expect("read from chromium");
            let Ok(text) = m.into_text() else { continue };
            let v: Value = serde_json::from_str(&text).expect("json from chromium");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluate in the page (promises awaited); the value as JSON.
    fn eval(&mut self, expr: &str) -> Value {
        let r =
            self.call("Runtime.evaluate", json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }));
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Wait in the page until `cond` (a JS expression) is truthy; fail after [`LIMIT`].
    fn wait(&mut self, what: &str, cond: &str) {
        let expr = format!(
            "new Promise((res) => {{ const t0 = Date.now(); (function f() {{ let ok = false; try {{ ok = !!({cond}); }} catch (e) {{}} \
             if (ok) return res(true); if (Date.now() - t0 > {}) return res(false); setTimeout(f, 20); }})(); }})",
            LIMIT.as_millis()
        );
        assert_eq!(self.eval(&expr), json!(true), "timed out waiting for: {what}");
    }

    /// Chromium's own main-thread accounting: (TaskDuration, Timestamp), both in s.
    fn task_time(&mut self) -> (f64, f64) {
        let m = self.call("Performance.getMetrics", json!({}));
        let get = |name: &str| {
            m["metrics"].as_array().and_then(|a| a.iter().find(|x| x["name"] == name)).and_then(|x| x["value"].as_f64())
        };
        (get("TaskDuration").expect("TaskDuration"), get("Timestamp").expect("Timestamp"))
    }

    fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }));
        let b64 = r["data"].as_str().expect("screenshot data");
        std::fs::write(path, decode_base64(b64)).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
    }
}

/// Standard base64 (RFC 4648 §4), as DevTools returns screenshots.
fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| u32::from(val(c))).collect();
        let n = v.iter().enumerate().fold(0u32, |acc, (i, x)| acc | (x << (18 - 6 * i)));
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn the_page_starts_watches_aborts_and_zooms_into_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nanoecrd.sock");
    let configs = dir.path().join("configs");
    std::fs::create_dir(&configs).expect("configs dir");
    std::fs::write(configs.join("demo.toml"), short_demo()).expect("write config");
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    eprintln!("screenshots go to {}", shots.display());

    let _daemon = start_daemon(&socket, &dir.path().join("runs"));

    // nanoecr ui: its first stdout line is the URL.
    let nanoecr_bin = nanoecr_bin();
    let mut ui = Command::new(&nanoecr_bin)
        .args(["ui", "--port", "0", "--socket"])
        .arg(&socket)
        .arg("--configs")
        .arg(&configs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nanoecr ui");
    let mut first = String::new();
    BufReader::new(ui.stdout.take().expect("stdout")).read_line(&mut first).expect("the URL line");
    let _ui = Kill(ui);
    let url = first.trim().to_string();
    let rest = url.strip_prefix("http://127.0.0.1:").unwrap_or_else(|| panic!("a loopback URL: {url}"));
    let (port, token) = rest.split_once("/?token=").expect("port and token");
    let port: u16 = port.parse().expect("port");
    assert_eq!(token.len(), 32, "128-bit token in hex");

    // Outside the page: the token, the Host and the Origin are checked.
    assert_eq!(http_get(port, "/", &[]).0, 403, "no token");
    assert_eq!(http_get(port, "/?token=0123456789abcdef0123456789abcdef", &[]).0, 403, "wrong token");
    assert_eq!(http_get(port, "/api/runs", &[("X-Nanoecr-Token", "nope")]).0, 403, "wrong token header");
    assert_eq!(http_get(port, &format!("/?token={token}"), &[("Host", "attacker.example")]).0, 403, "foreign Host");
    let (code, body) = http_get(port, &format!("/?token={token}"), &[]);
    assert_eq!(code, 200);
    assert!(body.contains("<title>nanoecr"), "{body}");
    let ws_with = |origin: &str| {
        let req = tungstenite::http::Request::builder()
            .uri(format!("ws://127.0.0.1:{port}/live"))
            .header("Host", format!("127.0.0.1:{port}"))
            .header("Origin", origin)
            .header("X-Nanoecr-Token", token)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", tungstenite::handshake::client::generate_key())
            .body(())
            .expect("request");
        tungstenite::connect(req)
    };
    match ws_with("http://attacker.example") {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403, "foreign Origin"),
        Err(e) => panic!("foreign Origin: expected 403, got {e}"),
        Ok(_) => panic!("a foreign Origin opened the live stream"),
    }
    // The same handshake from the page's Origin is accepted: the refusal above was the Origin.
    let (mut own, _) = ws_with(&format!("http://127.0.0.1:{port}")).expect("the page's Origin opens the live stream");
    let hello = own.read().expect("first line").into_text().expect("text").to_string();
    assert!(hello.contains("\"ui.hello\""), "{hello}");
    drop(own);

    // --no-token and --unix: tests/ui_unix.rs.

    // The browser.
    let profile = dir.path().join("chromium-profile");
    let (_chromium, devtools) = spawn_until(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1400,1500",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null()),
        "chromium",
        |l| l.split_once("DevTools listening on ").map(|(_, u)| u.trim().to_string()),
    );
    let dt_port: u16 = devtools
        .strip_prefix("ws://127.0.0.1:")
        .and_then(|r| r.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("DevTools port");
    let (_, targets) = http_get(dt_port, "/json/list", &[]);
    let targets: Value = serde_json::from_str(&targets).expect("targets");
    let page_ws = targets
        .as_array()
        .and_then(|a| a.iter().find(|t| t["type"] == "page"))
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .expect("a page target")
        .to_string();
    let mut cdp = Cdp::connect(&page_ws);
    cdp.call("Page.enable", json!({}));
    cdp.call("Performance.enable", json!({}));
    cdp.call("Page.navigate", json!({ "url": url }));
    cdp.wait("the page connects to nanoecrd", "document.getElementById('daemon').textContent === 'nanoecrd connected'");
    cdp.wait(
        "the config picker offers demo.toml",
        "document.getElementById('config-toml').value.includes('[load_function]')",
    );

    // A bad config: the daemon's message, as `nanoecr submit` prints it, under the offending line.
    let bad = short_demo().replace(&format!("rate_hz = {}", rate_hz()), "rate_hz = 0");
    assert_ne!(bad, short_demo(), "fixture edit applies");
    std::fs::write(dir.path().join("pasted.toml"), &bad).expect("write");
    let cli = Command::new(&nanoecr_bin)
        .args(["submit", "pasted.toml", "--socket"])
        .arg(&socket)
        .current_dir(dir.path())
        .output()
        .expect("nanoecr submit");
    let cli_err = String::from_utf8_lossy(&cli.stderr).lines().next().unwrap_or_default().to_string();
    assert!(cli_err.starts_with("error: invalid config: pasted.toml:"), "{cli_err}");
    cdp.eval(&format!(
        "(() => {{ const t = document.getElementById('config-toml'); t.value = {}; document.getElementById('start').click(); return true; }})()",
        serde_json::to_string(&bad).expect("json")
    ));
    cdp.wait("the config error is shown", "!document.getElementById('config-error').hidden");
    let shown = cdp.eval("document.querySelector('#config-error .err').textContent");
    assert_eq!(shown.as_str(), Some(cli_err.as_str()), "the page shows the CLI's text");
    let at_key = cdp.eval("document.querySelector('#config-error .key-error').dataset.key");
    assert_eq!(at_key, "acquisition.rate_hz");
    let marked = cdp.eval("document.querySelector('#config-error .bad').textContent");
    assert!(marked.as_str().is_some_and(|l| l.contains("rate_hz = 0")), "{marked}");
    cdp.screenshot(&shots.join("1-config-error.png"));

    // Start the demo from the picker, like an operator.
    cdp.eval("(() => { const s = document.getElementById('config-select'); s.value = 'demo.toml'; s.onchange(); return true; })()");
    cdp.wait(
        "the demo config is back",
        &format!("document.getElementById('config-toml').value.includes('rate_hz = {}')", rate_hz()),
    );
    cdp.eval("document.getElementById('start').click(), true");
    cdp.wait("the run starts", "document.getElementById('run-state').textContent.endsWith('running')");
    let busy_from = cdp.task_time();
    cdp.wait("the charts hold samples", "window.nanoecr.t.length > 1500");
    // Some seconds of live view to measure, whenever the first spike comes.
    cdp.wait(
        "4 s of run time on the page",
        "window.nanoecr.t.length > 0 && window.nanoecr.t[window.nanoecr.t.length - 1] > 4",
    );
    cdp.wait("the event table has rows", "document.querySelectorAll('#events tbody tr').length > 0");
    cdp.wait("a spike was detected", "window.nanoecr.events.some((e) => e.kind === 'spike')");
    let live = cdp.eval(
        "(() => { const S = window.nanoecr; return { points: S.t.length, rho: S.rmax.filter((v) => v != null).length, \
         spikes: S.events.filter((e) => e.kind === 'spike').length, stats: S.lagStats() }; })()",
    );
    eprintln!("live view while running: {live}");
    // Measured before the first screenshot, which blocks the page while it is taken.
    let busy_to = cdp.task_time();
    eprintln!(
        "page main thread busy while the run was live ({} Hz): {:.1} % (Chromium TaskDuration over {:.1} s); lag {}",
        rate_hz(),
        100.0 * (busy_to.0 - busy_from.0) / (busy_to.1 - busy_from.1),
        busy_to.1 - busy_from.1,
        live["stats"]
    );
    assert!(live["rho"].as_u64().is_some_and(|n| n > 0), "Δρ/ρ reached the chart: {live}");
    cdp.screenshot(&shots.join("2-live.png"));

    // Abort, through its confirmation.
    cdp.eval("document.getElementById('abort').click(), true");
    cdp.wait("the confirmation shows", "!document.getElementById('abort-confirm').hidden");
    cdp.eval("document.getElementById('abort-yes').click(), true");
    cdp.wait("the run ends aborted", "document.getElementById('run-state').textContent.endsWith('aborted')");
    let health = cdp.eval("document.getElementById('health').textContent");
    assert!(health.as_str().is_some_and(|h| h.starts_with("operator abort")), "{health}");
    let summary = cdp.eval("window.nanoecr.end.summary");
    eprintln!(
        "run with the page open: dropped {}, missed deadlines {}, lateness p99 {} µs, ticks {}",
        summary["dropped"], summary["missed_deadlines"], summary["lateness_p99_us"], summary["ticks"]
    );
    cdp.screenshot(&shots.join("3-aborted.png"));

    // Open the finished run from the recent runs and zoom to one spike.
    cdp.wait(
        "the recent runs list it",
        "[...document.querySelectorAll('#runs tbody tr')].some((r) => r.textContent.includes('aborted'))",
    );
    cdp.eval("document.querySelector('#runs .open-run').click(), true");
    cdp.wait("the run view loads", "window.nanoecr.runView && window.nanoecr.runView.loaded >= 1");
    let whole = cdp.eval("window.nanoecr.runView.window");
    assert_eq!(whole["full"], json!(false), "the whole run is decimated: {whole}");
    let spike = cdp.eval("window.nanoecr.runView.events.find((e) => e.kind === 'spike')");
    let peak = spike["peak_time_s"].as_f64().unwrap_or_else(|| panic!("a spike in the run: {spike}"));
    let sign = spike["sign"].as_str().expect("sign").to_string();
    cdp.screenshot(&shots.join("4-run.png"));
    // ±4 sample periods around the peak.
    let half_s = 4.0 / f64::from(rate_hz());
    cdp.eval(&format!("window.nanoecr.zoomRun({}, {}).then(() => true)", peak - half_s, peak + half_s));
    let zoom = cdp.eval("window.nanoecr.runView.window");
    assert_eq!(zoom["full"], json!(true), "zoomed in, every sample: {zoom}");
    assert!(zoom["samples"].as_u64().is_some_and(|n| (7..=9).contains(&n)), "8 sample periods: {zoom}");
    // The peak is one of the samples drawn, and stands out from the rest in its sign's direction.
    let at = cdp.eval(&format!(
        "(() => {{ const d = window.nanoecr.runView.meta.data; const t = d.time_s; const v = d.series.find((s) => s[0] === 'delta_rho')[1]; \
         const i = t.findIndex((x) => Math.abs(x - {peak}) < 1e-9); const others = v.filter((_, j) => j !== i && v[j] != null).sort((a, b) => a - b); \
         return {{ i, peak: v[i], median: others[Math.floor(others.length / 2)] }}; }})()"
    ));
    assert!(at["i"].as_i64().is_some_and(|i| i >= 0), "the peak sample is drawn: {at}");
    let (p, med) = (at["peak"].as_f64().expect("peak value"), at["median"].as_f64().expect("median"));
    if sign == "p" {
        assert!(p > med, "a p spike rises above its neighbours: {at}");
    } else {
        assert!(p < med, "an n spike falls below its neighbours: {at}");
    }
    cdp.screenshot(&shots.join("5-zoomed-spike.png"));

    // The analysis report of that file: numbers and figures.
    cdp.eval("document.getElementById('rv-report-btn').click(), true");
    cdp.wait(
        "the report and its figures",
        "document.getElementById('rv-report').textContent.includes('NanoECR run analysis') && \
         [...document.querySelectorAll('#rv-figures img')].filter((i) => i.complete && i.naturalWidth > 100).length >= 5",
    );
    cdp.screenshot(&shots.join("6-report.png"));
}

/// Query-string escaping of a value (RFC 3986 §2.3: only unreserved characters stay).
fn escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The run view over HTTP on a run of a million samples (no browser needed): 10.5 s at 100 kHz,
/// run unpaced by a real nanoecrd. At every zoom, the pixel column holding a detected spike's
/// peak reaches the peak's value (read at full resolution), and the server holds a summary of
/// 1/1024 of the run, not the run.
#[test]
fn the_run_view_keeps_every_spike_of_a_million_samples() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nanoecrd.sock");
    let config = dir.path().join("long.toml");
    let long = DEMO
        .replace("rate_hz = 1000", "rate_hz = 100000")
        .replace("load_s = 10.0", "load_s = 4.0")
        .replace("hold_s = 10.0", "hold_s = 2.0")
        .replace("unload_s = 10.0", "unload_s = 4.0")
        .replace("settle_s = 2.0", "settle_s = 0.5")
        .replace("backend = \"sim\"", &format!("backend = \"sim\"\nrig = \"ui-long-{}\"", std::process::id()));
    std::fs::write(&config, long).expect("write config");
    let _daemon = start_daemon(&socket, &dir.path().join("runs"));
    let nanoecr_bin = nanoecr_bin();
    let run = Command::new(&nanoecr_bin)
        .args(["submit", "--fast", "--watch", "--socket"])
        .arg(&socket)
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .expect("nanoecr submit");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));

    let mut ui = Command::new(&nanoecr_bin)
        .args(["ui", "--port", "0", "--socket"])
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn nanoecr ui");
    let mut first = String::new();
    BufReader::new(ui.stdout.take().expect("stdout")).read_line(&mut first).expect("the URL line");
    let _ui = Kill(ui);
    let (port, token) = first
        .trim()
        .strip_prefix("http://127.0.0.1:")
        .and_then(|r| r.split_once("/?token="))
        .map(|(p, t)| (p.parse::<u16>().expect("port"), t.to_string()))
        .unwrap_or_else(|| panic!("a loopback URL: {first}"));
    let get = |path: &str| -> Value {
        let (code, body) = http_get(port, path, &[("X-Nanoecr-Token", &token)]);
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    };
    let runs = get("/api/runs");
    let file = runs["result"]["runs"][0]["file"].as_str().expect("the run's file").to_string();
    let view =
        |t0: f64, t1: f64, px: usize| get(&format!("/api/run?file={}&t0_s={t0}&t1_s={t1}&pixels={px}", escape(&file)));

    let whole = get(&format!("/api/run?file={}&pixels=1000", escape(&file)));
    let samples = whole["samples"].as_u64().expect("samples");
    assert!(samples >= 1_000_000, "a million samples: {samples}");
    let held = whole["summary_bytes"].as_u64().expect("summary_bytes");
    // Under a tenth of the time column alone (the five plotted columns are 40 bytes a sample).
    assert!(held * 10 < samples * 8, "the server holds {held} bytes for {samples} samples");
    let spikes: Vec<(f64, bool)> = whole["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "spike")
        .map(|e| (e["peak_time_s"].as_f64().expect("peak time"), e["sign"] == "p"))
        .collect();
    assert!(spikes.len() >= 4, "spikes detected: {}", spikes.len());
    let rho = |v: &Value| -> (Vec<f64>, Vec<Option<f64>>) {
        let d = &v["data"];
        let t = d["time_s"].as_array().expect("time").iter().map(|x| x.as_f64().expect("t")).collect();
        let s = d["series"].as_array().expect("series").iter().find(|s| s[0] == "delta_rho").expect("delta_rho");
        (t, s[1].as_array().expect("values").iter().map(Value::as_f64).collect())
    };
    let dt = 1e-5;
    for &(peak, p) in spikes.iter().take(6) {
        // The peak sample's value, at full resolution.
        let zoom = view(peak - 3.5 * dt, peak + 3.5 * dt, 800);
        assert_eq!(zoom["data"]["full_resolution"], json!(true));
        let (t, v) = rho(&zoom);
        let i = t.iter().position(|x| (x - peak).abs() < dt / 4.0).expect("the peak sample is sent");
        let value = v[i].expect("Δρ/ρ at the peak");
        for half in [1e-3, 1e-2, 0.1, 1.0, 100.0] {
            for px in [1, 300, 1000, 4096] {
                let w = view(peak - half, peak + half, px);
                let (t, v) = rho(&w);
                // The column holding the peak: at full resolution the sample itself, else the pair
                // of points (first and last sample time of a column) around it.
                let reaches = if w["data"]["full_resolution"] == json!(true) {
                    t.iter().zip(&v).any(|(x, y)| (x - peak).abs() < dt / 4.0 && *y == Some(value))
                } else {
                    t.chunks(2).zip(v.chunks(2)).any(|(tc, vc)| {
                        tc[0] <= peak
                            && peak <= tc[tc.len() - 1]
                            && vc.iter().flatten().any(|&y| if p { y >= value } else { y <= value })
                    })
                };
                assert!(reaches, "spike at {peak} s ({value:e}) lost at ±{half} s, {px} px");
            }
        }
    }
}
