//! docs/nanoecrd.service starts the real binary: its `ExecStart=` flags, with the system paths
//! swapped for temp ones and config/nanoecrd.toml as the config, bring up a `nanoecrd` that
//! serves, and its `KillSignal=` makes it exit 0. Synchronised on the daemon's log and exit.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Client;
use serde_json::json;

const UNIT: &str = include_str!("../../../docs/nanoecrd.service");

fn directive<'a>(key: &str) -> &'a str {
    UNIT.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("{key}= missing from docs/nanoecrd.service"))
}

#[test]
fn the_unit_exec_start_runs_nanoecrd_and_its_kill_signal_stops_it_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("nanoecrd.sock");
    let out_dir = dir.path().join("runs");
    let config = dir.path().join("nanoecrd.toml");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/nanoecrd.toml"), &config).expect("copy config");

    let exec = directive("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/nanoecrd"), "{exec}");
    let args: Vec<String> = words
        .map(|w| match w {
            "/etc/nanoecr/nanoecrd.toml" => config.display().to_string(),
            "/run/nanoecr/nanoecrd.sock" => socket.display().to_string(),
            "/var/lib/nanoecr/runs" => out_dir.display().to_string(),
            other => other.to_string(),
        })
        .collect();
    // The paths it uses are those the unit's directories provide.
    assert!(exec.contains("/run/nanoecr/") && directive("RuntimeDirectory") == "nanoecr", "{exec}");
    assert!(exec.contains("/var/lib/nanoecr/") && directive("StateDirectory") == "nanoecr", "{exec}");
    assert!(exec.contains("/etc/nanoecr/") && directive("ConfigurationDirectory") == "nanoecr", "{exec}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_nanoecrd"))
        .args(&args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nanoecrd with the unit's flags");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("nanoecrd: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx.recv_timeout(Duration::from_secs(60)).expect("nanoecrd logs until ready");
        if line.contains("nanoecrd ready") {
            // --log-format json: every log line is a JSON object.
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            assert_eq!(v["fields"]["out_dir"], out_dir.display().to_string(), "--out-dir applied: {line}");
            break;
        }
    }
    let info = Client::connect(&socket).expect("connect").call("daemon.info", json!({})).expect("daemon.info");
    assert_eq!(info["name"], "nanoecrd");
    assert_eq!(info["out_dir"], out_dir.display().to_string());

    let signal: nix::sys::signal::Signal = directive("KillSignal").parse().expect("a signal name");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "a clean stop on {signal}");
    assert!(!socket.exists(), "socket removed on exit");
    let timeout: u64 = directive("TimeoutStopSec").parse().expect("TimeoutStopSec in seconds");
    assert!(timeout >= 30, "TimeoutStopSec={timeout} leaves too little time for a safe unload");
}
