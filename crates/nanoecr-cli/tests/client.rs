//! The `nanoecr` client commands (`submit`, `watch`, `status`, `runs`, `abort`) against a real
//! `nanoecrd` process on a temp socket: exit codes and output, with the socket given by
//! `--socket` and by `NANOECR_SOCKET`.
//!
//! Finding `nanoecrd`: Cargo only exposes `CARGO_BIN_EXE_*` for the package's own binaries, and
//! `cargo test -p nanoecr-cli` does not build another package's binary. So the test builds it
//! with the same cargo, profile and target directory it was itself built with (a no-op when it
//! is up to date, and never a stale binary), unless `NANOECRD_BIN` names one.
//! Synchronisation is by process output (the daemon's "nanoecrd ready" log line, the client's
//! lines) and exit — never by time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

/// Longest any one command may take before the test fails (a hang, not a pace).
const LIMIT: Duration = Duration::from_secs(180);
const DEMO: &str = include_str!("../../../config/demo.toml");

/// `[limits]` keys that switch off every interlock judged on loop timing: these tests check the
/// client, not the host's timing, and a busy CI machine must not end their real-time runs.
const TIMING_INTERLOCKS_OFF: &str = "max_command_gap_ms = inf\nmax_late_fraction = 1.0\n";

/// The demo with other segment lengths (s) and the timing interlocks off.
fn config_with(settle_s: f64, load_s: f64, hold_s: f64, unload_s: f64) -> String {
    DEMO.replace("[limits]\n", &format!("[limits]\n{TIMING_INTERLOCKS_OFF}"))
        .replace("load_s = 10.0", &format!("load_s = {load_s:?}"))
        .replace("hold_s = 10.0", &format!("hold_s = {hold_s:?}"))
        .replace("unload_s = 10.0", &format!("unload_s = {unload_s:?}"))
        .replace("settle_s = 2.0", &format!("settle_s = {settle_s:?}"))
}

fn nanoecrd_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("NANOECRD_BIN") {
            return PathBuf::from(p);
        }
        // This test runs from <target>/<profile>/deps/; nanoecrd goes to <target>/<profile>/.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("<target>/<profile>");
        let target_dir = profile_dir.parent().expect("<target>");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => "dev",
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "nanoecr-daemon", "--bin", "nanoecrd", "--profile", profile])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for nanoecrd");
        assert!(status.success(), "building nanoecrd failed");
        let bin = profile_dir.join("nanoecrd");
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
}

/// A `nanoecrd` process on a temp socket and output directory.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    out_dir: PathBuf,
}

impl Daemon {
    fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let locks = dir.path().join("locks");
        Self::spawn_in(dir, &locks)
    }

    /// A daemon whose rig locks live in `locks` (tests in parallel each use their own).
    fn spawn_in(dir: tempfile::TempDir, locks: &Path) -> Self {
        let socket = dir.path().join("nanoecrd.sock");
        let out_dir = dir.path().join("runs");
        let mut child = Command::new(nanoecrd_bin())
            .env("NANOECR_LOCK_DIR", locks)
            .arg("--socket")
            .arg(&socket)
            .arg("--out-dir")
            .arg(&out_dir)
            .arg("--log-format")
            .arg("json")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nanoecrd");
        // Ready when it logs so (the socket is bound before); then keep draining its log to
        // our stderr so the pipe never fills.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("nanoecrd: {line}");
                if line.contains("nanoecrd ready") {
                    if let Some(t) = tx.take() {
                        let _ = t.send(());
                    }
                }
            }
        });
        rx.recv_timeout(LIMIT).expect("nanoecrd became ready");
        Self { child, dir, socket, out_dir }
    }

    /// `nanoecr <args> --socket <socket>`.
    fn nanoecr(&self, args: &[&str]) -> Command {
        let mut c = nanoecr(args);
        c.arg("--socket").arg(&self.socket);
        c
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

fn nanoecr(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nanoecr"));
    c.args(args).env_remove("NANOECR_SOCKET").env("NO_COLOR", "1").stdin(Stdio::null());
    c
}

/// Run to completion with captured output; fail if it takes longer than [`LIMIT`].
fn run(cmd: &mut Command) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn nanoecr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(LIMIT).expect("nanoecr did not finish").expect("output")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn no_daemon_is_exit_code_3_for_every_client_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let absent = dir.path().join("absent.sock");
    let cfg = dir.path().join("demo.toml");
    std::fs::write(&cfg, DEMO).expect("write");
    let cfg = cfg.to_str().expect("utf-8");
    for args in [vec!["status"], vec!["watch"], vec!["runs"], vec!["abort"], vec!["submit", cfg]] {
        // No waiting for a daemon that may be starting: there is none.
        let o = run(nanoecr(&args).arg("--socket").arg(&absent).env("NANOECR_CONNECT_WAIT_S", "0"));
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", err(&o));
        assert!(err(&o).contains("nanoecrd unreachable"), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(absent.to_str().expect("utf-8")), "names the socket: {}", err(&o));
    }
    // The environment variable is the same as --socket.
    let o = run(nanoecr(&["status"]).env("NANOECR_SOCKET", &absent));
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains(absent.to_str().expect("utf-8")), "{}", err(&o));
}

#[test]
fn submit_watch_status_runs_and_abort_against_a_real_daemon() {
    let d = Daemon::spawn();
    let env_status = || run(nanoecr(&["status"]).env("NANOECR_SOCKET", &d.socket));

    // Idle daemon, reached through the environment variable.
    let o = env_status();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(out(&o).lines().next(), Some("nanoecrd: idle"), "{}", out(&o));
    let o = run(&mut d.nanoecr(&["runs"]));
    assert_eq!((o.status.code(), out(&o).trim()), (Some(0), "no runs yet"));
    // Nothing to watch, nothing to abort: refused (2).
    let o = run(&mut d.nanoecr(&["watch"]));
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(err(&o).contains("no run in progress"), "{}", err(&o));
    let o = run(&mut d.nanoecr(&["abort"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("no run in progress to abort"), "{}", err(&o));

    // Invalid configs: exit 2, the message names file, line and key; nothing started.
    let bad = d.dir.path().join("bad.toml");
    std::fs::write(&bad, config_with(0.5, 0.5, 0.5, 0.5).replace("rate_hz = 1000", "rate_hz = 0")).expect("write");
    let o = run(&mut d.nanoecr(&["submit", bad.to_str().expect("utf-8")]));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("`acquisition.rate_hz` = 0"), "{}", err(&o));
    assert!(err(&o).contains("bad.toml:"), "names the file: {}", err(&o));
    assert!(err(&o).contains("Hz"), "gives the expected range with its unit: {}", err(&o));
    std::fs::write(&bad, DEMO.replace("max_load_un", "max_lod_un")).expect("write");
    let o = run(&mut d.nanoecr(&["submit", bad.to_str().expect("utf-8")]));
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("max_lod_un"), "{}", err(&o));
    let o = run(&mut d.nanoecr(&["submit", "/nonexistent/run.toml"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("/nonexistent/run.toml"), "{}", err(&o));

    // A fast run, submitted and watched to its end: exit 0, and the file it names exists.
    let short = d.dir.path().join("short.toml");
    std::fs::write(&short, config_with(0.5, 0.5, 0.5, 0.5)).expect("write");
    let short = short.to_str().expect("utf-8");
    let o = run(&mut d.nanoecr(&["submit", short, "--fast", "--watch"]));
    assert_eq!(o.status.code(), Some(0), "{}\n{}", out(&o), err(&o));
    let stdout = out(&o);
    assert!(stdout.starts_with("started run 1: "), "{stdout}");
    let end = stdout.lines().last().expect("a last line");
    assert!(end.starts_with("run 1 complete: "), "{end}");
    assert!(end.contains("2000 samples (0 dropped)"), "{end}");
    let file = end.trim_start_matches("run 1 complete: ").split(" — ").next().expect("file");
    assert!(Path::new(file).starts_with(&d.out_dir) && Path::new(file).is_file(), "{file}");
    // `watch` after the end reports the last run, exit code by its status.
    let o = run(&mut d.nanoecr(&["watch"]));
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("no run in progress; last run:") && out(&o).contains(file), "{}", out(&o));

    // A real-time run: submit (no --watch) returns at once; watch follows it; a second submit
    // is refused; status shows it; abort ends it, and watch exits 4.
    let long = d.dir.path().join("long.toml");
    // A 60 s hold: it is aborted below, and must still be running then however slowly a loaded
    // host gets through the client commands in between.
    std::fs::write(&long, config_with(0.2, 3.0, 60.0, 3.0)).expect("write");
    let o = run(&mut d.nanoecr(&["submit", long.to_str().expect("utf-8")]));
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("started run 2: "), "{}", out(&o));
    let file2 = out(&o).trim_start_matches("started run 2: ").split(" (").next().expect("file").to_string();

    let mut watch = nanoecr(&["watch"])
        .env("NANOECR_SOCKET", &d.socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watch");
    let (tx, rx) = mpsc::channel::<String>();
    let wout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(wout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(LIMIT).expect("watch prints what it watches");
    assert_eq!(first, format!("watching run 2: {file2}"));

    let o = run(&mut d.nanoecr(&["submit", short]));
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("already in progress") && err(&o).contains(&file2), "{}", err(&o));
    let o = env_status();
    assert_eq!(o.status.code(), Some(0));
    let s = out(&o);
    assert!(s.starts_with("nanoecrd: running\n") || s.starts_with("nanoecrd: aborting\n"), "{s}");
    assert!(s.contains(&format!("run 2: {file2}")), "{s}");
    assert!(s.contains("last run:") && s.contains("complete"), "the fast run is the last one: {s}");

    let o = run(&mut d.nanoecr(&["abort"]));
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("abort requested for run 2 "), "{}", out(&o));
    let mut lines = Vec::new();
    while let Ok(l) = rx.recv_timeout(LIMIT) {
        lines.push(l);
    }
    let status = watch.wait().expect("watch exits");
    assert_eq!(status.code(), Some(4), "an aborted run is exit code 4: {lines:#?}");
    let end = lines.last().expect("run end line");
    assert!(end.starts_with(&format!("run 2 aborted: {file2} — ")), "{end}");
    assert!(end.ends_with("operator abort"), "{end}");

    // The list, newest first, in both forms.
    let o = run(&mut d.nanoecr(&["runs"]));
    assert_eq!(o.status.code(), Some(0));
    let text = out(&o);
    let rows: Vec<&str> = text.lines().map(str::trim_start).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].starts_with("2  aborted") && rows[0].contains(&file2), "{text}");
    assert!(rows[1].starts_with("1  complete") && rows[1].contains(file), "{text}");
    let o = run(&mut d.nanoecr(&["runs", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).expect("runs --json is JSON");
    assert_eq!(v["runs"][0]["status"], "aborted");
    assert_eq!(v["runs"][0]["end_reason"], "operator abort");
    assert_eq!(v["runs"][1]["summary"]["samples"], 2000);
}

#[test]
fn ctrl_c_on_submit_watch_says_the_run_continues_and_how_to_abort_it() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    let d = Daemon::spawn();
    let long = d.dir.path().join("long.toml");
    // Aborted below; the 60 s hold keeps it running until then on however loaded a host.
    std::fs::write(&long, config_with(0.2, 30.0, 60.0, 3.0)).expect("write");
    let mut watch = d
        .nanoecr(&["submit", long.to_str().expect("utf-8"), "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn submit --watch");
    let mut stdout = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first = stdout.next().expect("a first line").expect("UTF-8");
    assert!(first.starts_with("started run 1: "), "{first}");
    kill(Pid::from_raw(watch.id() as i32), Signal::SIGINT).expect("SIGINT delivered");
    let o = watch.wait_with_output().expect("submit --watch exits");
    let e = err(&o);
    assert_eq!(o.status.code(), Some(130), "{e}");
    assert!(e.contains("run 1 continues on nanoecrd"), "{e}");
    assert!(e.contains("`nanoecr abort`"), "{e}");
    // And it does continue.
    let o = run(&mut d.nanoecr(&["status"]));
    assert!(out(&o).starts_with("nanoecrd: running\n"), "{}", out(&o));
    let o = run(&mut d.nanoecr(&["abort"]));
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}

/// PATH with the directories of the two binaries under test first.
fn path_with_binaries() -> std::ffi::OsString {
    let nanoecr_dir = Path::new(env!("CARGO_BIN_EXE_nanoecr")).parent().expect("bin dir").to_path_buf();
    let nanoecrd_dir = nanoecrd_bin().parent().expect("bin dir").to_path_buf();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths([nanoecr_dir, nanoecrd_dir].into_iter().chain(std::env::split_paths(&rest)))
        .expect("PATH joins")
}

/// The README's daemon line, as a shell runs it: the client starts while nanoecrd is still
/// binding its socket (the issue: exit 3 in 3 of 3 tries), and must wait for it instead. Three
/// times, each with a fresh XDG_RUNTIME_DIR, so the socket never exists beforehand.
#[test]
fn the_readme_daemon_line_works_every_time() {
    for attempt in 1..=3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let xdg = dir.path().join("xdg");
        std::fs::create_dir(&xdg).expect("mkdir");
        std::fs::write(dir.path().join("demo.toml"), config_with(0.2, 0.4, 0.2, 0.4)).expect("write");
        // README.md: `nanoecrd &  nanoecr submit config/demo.toml && nanoecr watch`, with a short
        // program; then stop the daemon the line started and report the line's exit code.
        let line = "nanoecrd & nanoecr submit demo.toml && nanoecr watch; rc=$?; kill -TERM $!; wait $!; exit $rc";
        let o = run(Command::new("bash")
            .arg("-c")
            .arg(line)
            .current_dir(dir.path())
            .env("PATH", path_with_binaries())
            .env("XDG_RUNTIME_DIR", &xdg)
            .env("NANOECR_LOCK_DIR", dir.path().join("locks"))
            .env_remove("NANOECR_SOCKET")
            .env_remove("NANOECR_CONNECT_WAIT_S")
            .stdin(Stdio::null()));
        assert_eq!(o.status.code(), Some(0), "attempt {attempt}: {}\n{}", out(&o), err(&o));
        let text = out(&o);
        assert!(text.starts_with("started run 1: "), "attempt {attempt}: {text}");
        let last = text.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("run 1 complete: ")
                || (last.starts_with("no run in progress; last run:") && last.contains("complete")),
            "attempt {attempt}: {text}"
        );
        assert!(!xdg.join("nanoecr/nanoecrd.sock").exists(), "the daemon removed its socket on SIGTERM");
    }
}

/// As another user (root only, via setpriv): a daemon without XDG_RUNTIME_DIR, which may not
/// create /run/nanoecr, falls back to a per-user directory that the same user's client finds
/// without flags; and a client kept out by the socket's file mode is told "permission denied"
/// with the group to join (exit 2), not "unreachable".
#[test]
fn a_non_root_user_gets_a_per_user_socket_and_a_refused_one_is_told_the_group() {
    let setpriv = Path::new("/usr/bin/setpriv");
    if !nix::unistd::geteuid().is_root() || !setpriv.exists() {
        eprintln!("skipped: needs root and /usr/bin/setpriv");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o1777)).expect("chmod");
    let as_nobody = |line: &str| -> Output {
        run(Command::new(setpriv)
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", line])
            .current_dir(dir.path())
            .env("PATH", path_with_binaries())
            .env("TMPDIR", dir.path())
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("NANOECR_SOCKET")
            .stdin(Stdio::null()))
    };
    let o = as_nobody("nanoecrd --out-dir runs & nanoecr status; rc=$?; kill -TERM $!; wait $!; exit $rc");
    assert_eq!(o.status.code(), Some(0), "{}\n{}", out(&o), err(&o));
    assert_eq!(out(&o).lines().next(), Some("nanoecrd: idle"), "{}", out(&o));
    let per_user = dir.path().join("nanoecr-65534");
    assert!(per_user.is_dir(), "the daemon made its per-user socket directory");
    assert!(err(&o).contains(&per_user.join("nanoecrd.sock").display().to_string()), "logs the socket: {}", err(&o));

    // A root daemon whose socket (mode 0660, group root) is in a directory nobody may traverse.
    let d = Daemon::spawn();
    std::fs::set_permissions(d.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let o = as_nobody(&format!("nanoecr status --socket {}", d.socket.display()));
    let e = err(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("permission denied on nanoecrd's socket"), "{e}");
    assert!(e.contains("group `root`"), "names the socket's group: {e}");
    assert!(!e.contains("unreachable"), "{e}");
}

/// A child process killed and reaped when dropped (std's `Child` is left running).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// One master per rig: while `nanoecr run` drives the default rig, a second `nanoecr run` and a
/// daemon's `run.start` on it are refused (exit 2) with the holder's pid and command; a config
/// naming another rig runs. The locks are released when the first run ends.
#[test]
fn a_second_master_on_the_same_rig_is_refused_with_the_holders_pid_and_command() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;

    // Build (or find) nanoecrd before the first run starts: the build can take minutes on a
    // fresh clone, and the first run must still hold the rig when the daemon asks for it.
    nanoecrd_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let locks = dir.path().join("locks");
    let long = dir.path().join("long.toml");
    // The first run holds the rig until the SIGINT below ends it: its hour-long program cannot
    // end first however slowly the host runs the steps in between (a 36 s one could, and the
    // daemon then took the free rig: exit 0, not 2).
    std::fs::write(&long, config_with(0.2, 3600.0, 3.0, 3.0)).expect("write");
    // The would-be second masters drive the same rig (the lock is the rig's, not the program's)
    // with a short program, so that a broken lock fails the test at once, not an hour later.
    let short = dir.path().join("short.toml");
    std::fs::write(&short, config_with(0.2, 0.2, 0.2, 0.2)).expect("write");
    let cfg = short.to_str().expect("utf-8");
    let spawned = nanoecr(&["run", long.to_str().expect("utf-8"), "--out-dir"])
        .arg(dir.path().join("runs"))
        .env("NANOECR_LOCK_DIR", &locks)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("first nanoecr run");
    // Killed if the test fails before the SIGINT, so no hour-long run outlives it.
    let mut first = KillOnDrop(spawned);
    let first = &mut first.0;
    // The first line on stderr ("nanoecr: writing …") comes after the lock is taken.
    let mut first_err = BufReader::new(first.stderr.take().expect("stderr")).lines();
    let line = first_err.next().expect("a first line").expect("UTF-8");
    assert!(line.starts_with("nanoecr: writing "), "{line}");
    let holder = format!("in use by pid {} (", first.id());
    // Keep draining its progress lines so a full pipe never stalls it.
    let first_rest = std::thread::spawn(move || first_err.map_while(Result::ok).collect::<Vec<String>>());

    let o = run(nanoecr(&["run", cfg, "--fast", "--out-dir"])
        .arg(dir.path().join("runs2"))
        .env("NANOECR_LOCK_DIR", &locks));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("rig \"default\" is in use by pid"), "{}", err(&o));
    assert!(err(&o).contains(&holder) && err(&o).contains("nanoecr run"), "names the holder: {}", err(&o));
    assert!(!dir.path().join("runs2").exists(), "nothing started");

    let d = Daemon::spawn_in(tempfile::tempdir().expect("tempdir"), &locks);
    let o = run(&mut d.nanoecr(&["submit", cfg, "--fast"]));
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("rig not available") && err(&o).contains(&holder), "{}", err(&o));

    // Another rig name is another rig.
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        config_with(0.2, 0.2, 0.2, 0.2).replace("backend = \"sim\"", "rig = \"bay-2\"\nbackend = \"sim\""),
    )
    .expect("write");
    let o = run(&mut d.nanoecr(&["submit", other.to_str().expect("utf-8"), "--fast", "--watch"]));
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));

    // Every refusal above was made while the first run was still running (its program lasts an
    // hour): it has not exited on its own.
    assert!(first.try_wait().expect("try_wait").is_none(), "the first run ended before SIGINT");
    // When the first run ends, the rig is free again.
    kill(Pid::from_raw(first.id() as i32), Signal::SIGINT).expect("SIGINT");
    let rest = first_rest.join().expect("stderr reader");
    assert_eq!(first.wait().expect("first exits").code(), Some(4), "{rest:?}");
    let o = run(&mut d.nanoecr(&["submit", cfg, "--fast", "--watch"]));
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
}
