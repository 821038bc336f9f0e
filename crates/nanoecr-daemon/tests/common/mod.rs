//! Test harness: an in-process daemon on a temp socket with a shutdown handle, a spawned
//! `nanoecrd` process, and a small synchronous JSON-RPC client. Synchronisation is by
//! readiness (the socket answers), responses and notifications — never by sleeping.

#![allow(dead_code, missing_docs)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nanoecr_core::EndReason;
use nanoecr_daemon::server::{self, DaemonConfig};
use nanoecr_proto::jsonrpc::OutgoingRequest;
use nanoecr_proto::{Incoming, Notification, RpcError};
use serde_json::{json, Value};

pub const DEMO: &str = include_str!("../../../../config/demo.toml");

/// `[limits]` keys that switch off every interlock judged on loop timing. These tests check data
/// and delivery, not the host's timing: a busy CI machine may make a paced run late, but must
/// not end it (the timing interlocks are tested deterministically, with a stalling rig, in
/// tests/pipeline.rs; timing itself is measured in `just bench`).
pub const TIMING_INTERLOCKS_OFF: &str = "max_command_gap_ms = inf\nmax_late_fraction = 1.0\n";

/// The demo with the timing interlocks off (see [`TIMING_INTERLOCKS_OFF`]).
pub fn demo() -> String {
    DEMO.replace("[limits]\n", &format!("[limits]\n{TIMING_INTERLOCKS_OFF}"))
}

/// The demo pillar at 1 kHz with a short real-time program: 0.5 s settle, 0.5 s load, 0.5 s
/// hold, 0.5 s unload (2 s, 2000 samples).
pub fn short_config() -> String {
    demo()
        .replace("load_s = 10.0", "load_s = 0.5")
        .replace("hold_s = 10.0", "hold_s = 0.5")
        .replace("unload_s = 10.0", "unload_s = 0.5")
        .replace("settle_s = 2.0", "settle_s = 0.5")
}

/// Like [`short_config`] with other segment lengths (s).
pub fn config_with(settle_s: f64, load_s: f64, hold_s: f64, unload_s: f64) -> String {
    demo()
        .replace("load_s = 10.0", &format!("load_s = {load_s:?}"))
        .replace("hold_s = 10.0", &format!("hold_s = {hold_s:?}"))
        .replace("unload_s = 10.0", &format!("unload_s = {unload_s:?}"))
        .replace("settle_s = 2.0", &format!("settle_s = {settle_s:?}"))
}

/// Wait until `path` accepts a connection (the daemon is ready) or panic after `limit`.
pub fn wait_for_socket(path: &Path, limit: Duration) {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = Client::connect(path) {
            if c.call("daemon.info", json!({})).is_ok() {
                return;
            }
        }
        assert!(start.elapsed() < limit, "daemon did not become ready on {}", path.display());
        // Polling for readiness, not synchronising on time: the loop ends on the first answer.
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A daemon served in-process on its own runtime thread.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub out_dir: PathBuf,
    shutdown: Option<tokio::sync::oneshot::Sender<EndReason>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestDaemon {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    pub fn start_with(tweak: impl FnOnce(&mut DaemonConfig)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("nanoecrd.sock");
        let out_dir = dir.path().join("runs");
        let mut cfg = DaemonConfig::defaults();
        cfg.socket_path = socket.clone();
        cfg.out_dir = out_dir.clone();
        // Its own rig locks: test daemons run in parallel, each "owning" the default rig.
        cfg.lock_dir = dir.path().join("locks");
        tweak(&mut cfg);
        let (tx, rx) = tokio::sync::oneshot::channel::<EndReason>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let (listener, _guard) = server::socket::bind(&cfg.socket_path, cfg.socket_mode, None).expect("bind");
                let _ = ready_tx.send(());
                let shutdown = async move { rx.await.unwrap_or(EndReason::Signal("test".into())) };
                server::serve(listener, cfg, shutdown).await.expect("serve");
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(60)).expect("listener bound");
        Self { dir, socket, out_dir, shutdown: Some(tx), thread: Some(thread) }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect")
    }

    /// Shut down (as SIGTERM would) and wait for `serve` to return.
    pub fn stop(mut self, reason: EndReason) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(reason);
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(EndReason::Signal("test drop".into()));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A synchronous JSON-RPC client; notifications that arrive while waiting for a response are
/// kept for [`Client::next_note`].
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    notes: VecDeque<(Notification, Instant, f64)>,
}

impl Client {
    pub fn connect(path: &Path) -> std::io::Result<Self> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self { reader: BufReader::new(s.try_clone()?), writer: s, next_id: 1, notes: VecDeque::new() })
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// Half-close: the daemon sees the end of this client's requests.
    pub fn shutdown_write(&mut self) {
        self.writer.shutdown(std::net::Shutdown::Write).expect("shutdown");
    }

    /// Read one line; `None` at end of stream.
    pub fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Read the next response (keeping notifications).
    pub fn response(&mut self) -> nanoecr_proto::Response {
        loop {
            let line = self.read_line().expect("connection closed while waiting for a response");
            match Incoming::parse(line.trim_end().as_bytes()).expect("daemon sent valid JSON-RPC") {
                Incoming::Response(r) => return r,
                Incoming::Notification(n) => self.notes.push_back((n, Instant::now(), nanoecr_proto::unix_now_s())),
            }
        }
    }

    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id;
        self.next_id += 1;
        let req = OutgoingRequest::new(id, method, params);
        let mut line = serde_json::to_string(&req).expect("encode");
        line.push('\n');
        self.send_raw(line.as_bytes());
        let r = self.response();
        assert_eq!(r.id, Value::from(id), "responses answer in order");
        r.into_result()
    }

    /// The next notification, with its arrival time (monotonic and Unix s).
    pub fn next_note_at(&mut self) -> Option<(Notification, Instant, f64)> {
        if let Some(n) = self.notes.pop_front() {
            return Some(n);
        }
        let line = self.read_line()?;
        let arrived = (Instant::now(), nanoecr_proto::unix_now_s());
        match Incoming::parse(line.trim_end().as_bytes()).expect("daemon sent valid JSON-RPC") {
            Incoming::Notification(n) => Some((n, arrived.0, arrived.1)),
            Incoming::Response(r) => panic!("unexpected response {r:?}"),
        }
    }

    pub fn next_note(&mut self) -> Option<Notification> {
        self.next_note_at().map(|(n, _, _)| n)
    }

    /// Notifications until (and including) `run.end`.
    pub fn until_run_end(&mut self) -> Vec<Notification> {
        let mut v = Vec::new();
        while let Some(n) = self.next_note() {
            let end = n.method == "run.end";
            v.push(n);
            if end {
                return v;
            }
        }
        panic!("connection closed before run.end; got {} notifications", v.len());
    }
}

pub fn start_params(toml: &str) -> Value {
    json!({ "config_toml": toml })
}
