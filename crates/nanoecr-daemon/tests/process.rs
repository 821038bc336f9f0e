//! A real `nanoecrd` process: SIGTERM mid-run (safe abort, exit 0), kill -9 mid-run (file
//! readable, `running`, then recovered as `failed` by the next daemon), SIGHUP reload, and
//! peer-credential refusal of another user (as root, via `setpriv`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{config_with, start_params, wait_for_socket, Client};
use nanoecr_core::RunStatus;
use nanoecr_proto::notes::{ProgressNote, RunEndNote};
use serde_json::json;

/// Held while this process has a run file open and while it starts a child, never across both
/// at once from two tests. libhdf5 opens files without `O_CLOEXEC` (flags 0100002 seen in
/// /proc/<pid>/fdinfo), so a daemon started by one test while another test reads its file with
/// [`read`] would inherit that descriptor and its shared `flock` for its whole life, and the next
/// daemon's recovery of the file would find it "in use" (`recover` takes an exclusive lock).
fn fds() -> MutexGuard<'static, ()> {
    static FDS: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the others may still run.
    FDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `read_run`, with no child started meanwhile (see [`fds`]).
fn read(file: &str) -> Result<nanoecr_store::RunFile, nanoecr_store::StoreError> {
    let _fds = fds();
    nanoecr_store::read_run(Path::new(file))
}

/// `cmd.spawn()`, while no run file is open here (see [`fds`]).
fn spawn(cmd: &mut Command) -> Child {
    let _fds = fds();
    cmd.spawn().expect("spawn")
}

/// `cmd.output()`, its child started while no run file is open here (see [`fds`]).
fn output(cmd: &mut Command) -> Output {
    spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped())).wait_with_output().expect("output")
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn spawn(dir: &Path, extra_config: &str) -> Self {
        let socket = dir.join("nanoecrd.sock");
        let cfg = dir.join("nanoecrd.toml");
        std::fs::write(&cfg, format!("[output]\ndirectory = \"{}\"\n{extra_config}", dir.join("runs").display()))
            .expect("write config");
        let child = spawn(
            Command::new(env!("CARGO_BIN_EXE_nanoecrd"))
                .env("NANOECR_LOCK_DIR", dir.join("locks"))
                .arg("--config")
                .arg(&cfg)
                .arg("--socket")
                .arg(&socket)
                .arg("--log-format")
                .arg("json")
                .stdin(Stdio::null())
                .stderr(Stdio::inherit()),
        );
        wait_for_socket(&socket, Duration::from_secs(30));
        Self { child, socket }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).expect("kill");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start a program with a 60 s hold and return the client once the run is in its load segment.
/// Every test here ends the run itself (signal, kill or abort); the long hold keeps it running
/// until then however slowly a loaded host gets through the steps in between.
fn start_and_wait_for_load(d: &Daemon) -> (Client, String) {
    let mut c = Client::connect(&d.socket).expect("connect");
    c.call("events.subscribe", json!({ "samples": false })).expect("subscribe");
    let r = c.call("run.start", start_params(&config_with(0.3, 2.0, 60.0, 2.0))).expect("start");
    let file = r["file"].as_str().expect("file").to_string();
    loop {
        let n = c.next_note().expect("notes until load");
        if n.method == "progress" && n.params::<ProgressNote>().expect("p").time_s > 1.0 {
            return (c, file);
        }
    }
}

#[test]
fn sigterm_mid_run_aborts_safely_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::spawn(dir.path(), "");
    let (mut c, file) = start_and_wait_for_load(&d);
    d.signal(nix::sys::signal::Signal::SIGTERM);
    // The subscriber hears the end before the daemon exits.
    let notes = c.until_run_end();
    let end: RunEndNote = notes.last().expect("end").params().expect("run.end");
    assert_eq!(end.status, RunStatus::Aborted);
    let status = d.child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "nanoecrd exits 0 after a safe abort");
    assert!(!d.socket.exists(), "socket removed on exit");
    let f = read(&file).expect("readable");
    assert_eq!(f.status, RunStatus::Aborted);
    assert!(f.end_reason.as_deref().unwrap_or("").contains("SIGTERM"), "{:?}", f.end_reason);
    let last = *f.data.load_un.last().expect("samples");
    assert!(last.abs() < 60.0, "last load {last} µN must be ≈ 0");
    // The ramp-down is recorded as the safe-unload segment. (Bias off follows the last sample in
    // the pipeline's unconditional exit path, so the file cannot show it.)
    assert_eq!(f.data.segment.last(), Some(&nanoecr_core::Segment::SafeUnload.code()));
    let summary = end.summary.expect("summary");
    assert_eq!(summary.samples as usize, f.data.time_s.len(), "every sample in the file");
    assert_eq!(summary.dropped, 0);
}

#[test]
fn kill_9_mid_run_leaves_a_readable_running_file_that_the_next_daemon_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::spawn(dir.path(), "");
    let (mut c, file) = start_and_wait_for_load(&d);
    // Kill once 1500 samples have been appended to the file. The consumer flushes whenever
    // 100 ms have passed since its last flush, so the rows not yet flushed are those appended
    // in the last 100 ms of its work: at 1 kHz about 100, more only if the consumer catches up on
    // a backlog after the host stalled it, and 800 needs a stall of 0.8 s at this very moment.
    loop {
        let n = c.next_note().expect("notes until 1500 samples");
        if n.method == "progress" && n.params::<ProgressNote>().expect("p").samples >= 1500 {
            break;
        }
    }
    d.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = d.child.wait();
    let f = read(&file).expect("readable after kill -9");
    assert_eq!(f.status, RunStatus::Running);
    assert!(f.data.time_s.len() >= 700, "rows to the last flush: {}", f.data.time_s.len());
    let first = f.data.seq[0];
    assert!(f.data.seq.iter().enumerate().all(|(i, &s)| s == first + i as u64), "gap-free rows");
    assert!(d.socket.exists(), "a crash leaves the socket file behind");
    drop(d);

    // A new daemon removes the stale socket, recovers the file and lists it.
    let d2 = Daemon::spawn(dir.path(), "");
    let mut c = Client::connect(&d2.socket).expect("connect");
    let runs = c.call("runs.list", json!({})).expect("list");
    assert_eq!(runs["runs"][0]["file"], file.as_str(), "{runs}");
    assert_eq!(runs["runs"][0]["status"], "failed");
    let f = read(&file).expect("readable after recovery");
    assert_eq!(f.status, RunStatus::Failed);
    assert!(f.data.time_s.len() >= 700);
}

#[test]
fn a_second_daemon_on_a_live_socket_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::spawn(dir.path(), "");
    let out = output(
        Command::new(env!("CARGO_BIN_EXE_nanoecrd"))
            .arg("--socket")
            .arg(&d.socket)
            .arg("--out-dir")
            .arg(dir.path().join("runs")),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already listening"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stderr is a pipe here, as under systemd: no colour codes, which journalctl shows as
    // "[… blob data]" instead of the line (docs/operator-guide.md: `journalctl -u nanoecrd -f`).
    assert!(!out.stderr.contains(&0x1b), "ANSI escapes in piped logs: {:?}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("already listening").count(), 1, "the error once, not once per channel: {stderr}");
    // The first one is untouched.
    assert!(Client::connect(&d.socket).expect("connect").call("daemon.info", json!({})).is_ok());
}

#[test]
fn sighup_reloads_the_config_without_touching_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::spawn(dir.path(), "");
    // Rewrite the config with a ceiling, then SIGHUP while a run goes on.
    let (mut c, _file) = start_and_wait_for_load(&d);
    let cfg = dir.path().join("nanoecrd.toml");
    std::fs::write(
        &cfg,
        format!("[output]\ndirectory = \"{}\"\n[limits]\nmax_load_un = 1234.0\n", dir.path().join("runs").display()),
    )
    .expect("rewrite");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let mut probe = Client::connect(&d.socket).expect("connect");
    while probe.call("daemon.info", json!({})).expect("info")["max_load_ceiling_un"] != 1234.0 {
        std::thread::yield_now();
    }
    c.call("run.abort", json!({})).expect("abort");
    let end: RunEndNote = c.until_run_end().last().expect("end").params().expect("end");
    assert_eq!(end.status, RunStatus::Aborted);
    assert_eq!(end.summary.expect("summary").end_reason, "operator abort");
}

/// Root only (CI containers): a client running as `nobody` is refused with an error line even
/// though the socket mode lets it connect; with `socket.group = "nogroup"` it is allowed.
#[test]
fn another_user_is_refused_by_peer_credentials() {
    let setpriv = Path::new("/usr/bin/setpriv");
    let python = Path::new("/usr/bin/python3");
    if !nix::unistd::geteuid().is_root() || !setpriv.exists() || !python.exists() {
        eprintln!("skipped: needs root, /usr/bin/setpriv and /usr/bin/python3");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let as_nobody = |socket: &Path| -> serde_json::Value {
        let script = "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n\
                      try: s.sendall(b'{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon.info\"}\\n')\n\
                      except BrokenPipeError: pass\n\
                      print(s.makefile().readline())";
        let out = output(
            Command::new(setpriv)
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(python)
                .arg("-c")
                .arg(script)
                .arg(socket),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("one JSON line")
    };
    {
        let d = Daemon::spawn(dir.path(), "[socket]\nmode = \"0666\"\n");
        let r = as_nobody(&d.socket);
        assert_eq!(r["error"]["code"], nanoecr_proto::codes::PERMISSION_DENIED, "{r}");
        assert!(r["error"]["message"].as_str().unwrap_or("").contains("uid 65534"), "{r}");
    }
    let dir2 = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir2.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let d = Daemon::spawn(dir2.path(), "[socket]\nmode = \"0666\"\ngroup = \"nogroup\"\n");
    let r = as_nobody(&d.socket);
    assert_eq!(r["result"]["name"], "nanoecrd", "{r}");
}
