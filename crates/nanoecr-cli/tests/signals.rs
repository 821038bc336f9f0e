//! `nanoecr run` under an operator's habits: a closed terminal (SIGHUP), `kill` (SIGTERM), Ctrl-C
//! (SIGINT) and Ctrl-\ (SIGQUIT) all end the test as a safe abort, and the file says so (read back
//! by h5py). Each test waits for a progress line showing the pillar under load before it signals: no sleeps.
//! The runs are real time with the timing interlocks off, so a loaded host cannot end them first.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Start a real-time demo run, wait until it loads the pillar, send `sig`, and return the exit
/// code and the file's `status` and `end_reason` as h5py reads them. With `hang_up`, stdout and
/// stderr are closed before the signal, as a closed SSH session leaves them: every later write of
/// the CLI fails.
fn run_and_signal(sig: Signal, hang_up: bool) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    // The demo with the interlocks judged on loop timing off: these tests check the signal
    // handling, and a busy CI machine that makes the real-time loop late must not end the run
    // with a timing interlock before (or instead of) the signal.
    let demo = std::fs::read_to_string(workspace().join("config/demo.toml")).expect("config/demo.toml");
    let edited = demo.replace("[limits]\n", "[limits]\nmax_command_gap_ms = inf\nmax_late_fraction = 1.0\n");
    assert_ne!(edited, demo, "the [limits] edit applied");
    let cfg = dir.path().join("demo.toml");
    std::fs::write(&cfg, edited).expect("write the config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nanoecr"))
        .current_dir(workspace())
        .arg("run")
        .arg(&cfg)
        .args(["--json", "--out-dir"])
        .arg(dir.path())
        // These tests run in parallel on the default rig: each gets its own rig locks.
        .env("NANOECR_LOCK_DIR", dir.path().join("locks"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nanoecr starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    // Off a terminal the progress display is one plain line a second:
    // "t   3.03/32.0 s  load        load   614.2 µN  h …". Signal once the pillar carries load, so
    // the safe unload has something to take off.
    let mut seen = Vec::new();
    loop {
        let line = lines.next().expect("nanoecr exited before it loaded the pillar").expect("stderr is UTF-8");
        let words: Vec<&str> = line.split_whitespace().collect();
        let loaded = words.first() == Some(&"t")
            && words.get(3) == Some(&"load")
            && words.get(5).and_then(|w| w.parse::<f64>().ok()).is_some_and(|l| l > 300.0);
        seen.push(line);
        if loaded {
            break;
        }
    }
    let (code, file) = if hang_up {
        drop(lines);
        drop(child.stdout.take());
        kill(Pid::from_raw(child.id() as i32), sig).expect("signal delivered");
        let status = child.wait().expect("nanoecr exits");
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .expect("out dir")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "h5"))
            .collect();
        assert_eq!(files.len(), 1, "one run file: {files:?}");
        (status.code(), files.remove(0).to_string_lossy().into_owned())
    } else {
        kill(Pid::from_raw(child.id() as i32), sig).expect("signal delivered");
        // Keep draining stderr so the child never blocks on a full pipe while it unloads.
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let out = child.wait_with_output().expect("nanoecr exits");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("--json summary on stdout ({e}); stderr: {seen:?} {rest:?}"));
        (out.status.code(), summary["file"].as_str().expect("summary names the file").to_owned())
    };
    let check = r#"
import sys, h5py
e = h5py.File(sys.argv[1], "r")["entry"]
def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)
print(s(e.attrs["status"]))
print(s(e.attrs["end_reason"]))
# The safe unload: the last stored load is near zero (the loop ramped down before closing).
load = e["data"]["load"][:]
print(float(load[-1]))
"#;
    let py = Command::new("python3").arg("-c").arg(check).arg(&file).output().expect("python3 (scripts/setup.sh)");
    assert!(py.status.success(), "h5py check failed: {}", String::from_utf8_lossy(&py.stderr));
    let text = String::from_utf8_lossy(&py.stdout).into_owned();
    let mut it = text.lines();
    let status = it.next().unwrap_or_default().to_owned();
    let reason = it.next().unwrap_or_default().to_owned();
    let last_load_un: f64 = it.next().and_then(|l| l.parse().ok()).expect("last load printed");
    // The demo pillar sits in contact at ≈ 0 µN after the unload; 6000 µN is the peak.
    assert!(last_load_un.abs() < 200.0, "rig left loaded: last load {last_load_un} µN");
    (code, status, reason)
}

/// Exit code of `nanoecr run` for a run that ended aborted (crates/nanoecr-cli/src/run.rs).
const EXIT_RUN_NOT_COMPLETE: i32 = 4;

#[test]
fn a_hang_up_with_the_terminal_gone_aborts_with_a_safe_unload_and_a_closed_aborted_file() {
    let (code, status, reason) = run_and_signal(Signal::SIGHUP, true);
    assert_eq!(code, Some(EXIT_RUN_NOT_COMPLETE));
    assert_eq!(status, "aborted");
    assert!(reason.contains("SIGHUP"), "end_reason: {reason}");
}

#[test]
fn sigquit_aborts_with_a_safe_unload_and_a_closed_aborted_file() {
    let (code, status, reason) = run_and_signal(Signal::SIGQUIT, false);
    assert_eq!(code, Some(EXIT_RUN_NOT_COMPLETE));
    assert_eq!(status, "aborted");
    assert!(reason.contains("SIGQUIT"), "end_reason: {reason}");
}

#[test]
fn sigterm_and_sigint_abort_with_a_safe_unload_and_a_closed_aborted_file() {
    for (sig, name) in [(Signal::SIGTERM, "SIGTERM"), (Signal::SIGINT, "SIGINT")] {
        let (code, status, reason) = run_and_signal(sig, false);
        assert_eq!(code, Some(EXIT_RUN_NOT_COMPLETE), "{name}");
        assert_eq!(status, "aborted", "{name}");
        assert!(reason.contains(name), "end_reason: {reason}");
    }
}
