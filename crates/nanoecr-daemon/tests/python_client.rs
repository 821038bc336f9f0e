//! docs/examples/client.py, the standard-library Python client of docs/socket-protocol.md, run
//! against a real server on a temp socket: daemon.info, a fast run submitted and watched to its
//! end, the documented exit codes, and a real-time run watched and aborted from a second client.
//! Synchronisation is by the client's output and exit, never by time.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use common::{config_with, short_config, start_params, TestDaemon};
use nanoecr_core::RunStatus;
use serde_json::json;

/// Longest a client invocation may take before the test fails (a hang, not a pace).
const LIMIT: Duration = Duration::from_secs(120);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples/client.py")
}

/// One test of this file at a time. Each runs the daemon in this process and starts Python
/// clients while its run goes on; libhdf5 opens files without `O_CLOEXEC`, and the store compacts
/// a finished run through a temporary file it creates with an exclusive `flock` and renames over
/// the run. A client one test starts during the other's compaction would hold that lock for its
/// life (a `watch` lives for seconds), and the other test's `read_run` would fail with "unable to
/// lock file, errno = 11". Costs the few seconds of the shorter test.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Like the other interop tests, fail (never skip) without python3: scripts/setup.sh installs it.
fn require_python() {
    let ok = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "python3 must be installed (scripts/setup.sh)");
}

fn client(socket: &Path) -> Command {
    let mut c = Command::new("python3");
    c.arg(script()).arg("--socket").arg(socket).env("PYTHONUNBUFFERED", "1").stdin(Stdio::null());
    c
}

/// Run to completion with captured output; fail the test if it does not end within [`LIMIT`].
fn run(cmd: &mut Command) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn python3");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(LIMIT).expect("client.py did not finish").expect("client.py output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `key=value` from a `run.end …` line (values have no spaces except `reason`, which is last).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    Some(if key == "reason" { rest } else { rest.split(' ').next().unwrap_or("") })
}

#[test]
fn python_client_info_submit_watch_and_exit_codes() {
    let _one = one_at_a_time();
    require_python();
    let d = TestDaemon::start();
    let cfg = d.dir.path().join("short.toml");
    std::fs::write(&cfg, short_config()).expect("write config");

    let out = run(client(&d.socket).arg("info"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("nanoecrd "), "{stdout}");
    assert!(stdout.contains("protocol 1"), "{stdout}");
    assert!(stdout.contains("events.subscribe"), "{stdout}");

    // Submit a fast run and follow it to its end.
    let out = run(client(&d.socket).arg("submit").arg(&cfg).arg("--fast").arg("--watch"));
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.starts_with("started run 1: "), "{stdout}");
    let end = stdout.lines().last().expect("output");
    assert!(end.starts_with("run.end run=1 "), "{end}");
    assert_eq!(field(end, "status"), Some("complete"), "{end}");
    assert_eq!(field(end, "samples"), Some("2000"), "{end}");
    assert_eq!(field(end, "dropped"), Some("0"), "{end}");
    // The host-stall counts of the summary, as Python's json reads them (none in a --fast run).
    assert_eq!((field(end, "moved"), field(end, "skipped")), (Some("0"), Some("0")), "{end}");
    assert_eq!(field(end, "reason"), Some("completed"), "{end}");
    let file = PathBuf::from(field(end, "file").expect("file"));
    assert!(file.starts_with(&d.out_dir), "{}", file.display());
    let f = nanoecr_store::read_run(&file).expect("the run file it names exists and reads");
    assert_eq!(f.status, RunStatus::Complete);
    assert_eq!(f.data.time_s.len(), 2000);
    // Every event line it printed is one the file holds.
    let events = stdout.lines().filter(|l| l.starts_with("event ")).count();
    assert_eq!(events, f.events.len(), "{stdout}");

    // Refusals: an invalid config names its key (exit 2); abort with nothing running (exit 2).
    let bad = d.dir.path().join("bad.toml");
    std::fs::write(&bad, short_config().replace("rate_hz = 1000", "rate_hz = 0")).expect("write");
    let out = run(client(&d.socket).arg("submit").arg(&bad));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("-32010") && stderr.contains("acquisition.rate_hz"), "{stderr}");
    let out = run(client(&d.socket).arg("abort"));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("-32012"), "{}", text(&out.stderr));
    // Nothing to watch.
    assert_eq!(run(client(&d.socket).arg("watch")).status.code(), Some(2));
    // No daemon: exit 3.
    let out = run(client(&d.dir.path().join("absent.sock")).arg("info"));
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("unreachable"), "{}", text(&out.stderr));
}

#[test]
fn python_client_watches_a_real_time_run_that_another_client_aborts() {
    let _one = one_at_a_time();
    require_python();
    let d = TestDaemon::start();
    let mut c = d.client();
    // 0.2 s settle + 3 s load + 60 s hold + 3 s unload, paced: aborted mid-load, and running
    // until the abort however slowly a loaded host starts the Python clients.
    c.call("run.start", start_params(&config_with(0.2, 3.0, 60.0, 3.0))).expect("start");

    let mut watch =
        client(&d.socket).arg("watch").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn watch");
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || rx.recv_timeout(LIMIT).expect("watch output");
    let first = next();
    assert_eq!(first.split(':').next(), Some("watching run 1"), "{first}");
    // Wait until the watcher streams a load of ≥ 5000 µN, then abort from another client: at the
    // default safe-unload rate (2000 µN/s) the ramp then lasts ≥ 2.5 s, about 25 progress notes
    // (≈ 10 Hz by the consumer's clock), so the ramp-down is streamed however the abort lands
    // between them, and even if a loaded machine starves the consumer for a second or two of it.
    loop {
        let l = next();
        let load_un = field(&l, "load").and_then(|v| v.trim_end_matches("uN").parse::<f64>().ok());
        if l.starts_with("progress ") && load_un.is_some_and(|x| x >= 5000.0) {
            break;
        }
    }
    let out = run(client(&d.socket).arg("abort"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("abort requested for run 1 "), "{}", text(&out.stdout));

    let mut lines = Vec::new();
    while let Ok(l) = rx.recv_timeout(LIMIT) {
        lines.push(l);
    }
    let status = watch.wait().expect("watch exits");
    assert_eq!(status.code(), Some(4), "an aborted run is exit code 4; output: {lines:#?}");
    let end = lines.last().expect("a run.end line");
    assert_eq!(field(end, "status"), Some("aborted"), "{end}");
    assert_eq!(field(end, "reason"), Some("operator abort"), "{end}");
    assert!(lines.iter().any(|l| l.contains("segment=safe_unload")), "the ramp-down was streamed: {lines:#?}");
    // The daemon agrees.
    let st = c.call("run.status", json!({})).expect("status");
    assert_eq!(st["state"], "idle");
    assert_eq!(st["last"]["status"], "aborted");
}
