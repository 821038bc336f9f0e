//! A scripted SCPI responder for driver tests: it reads the host's program messages over a real
//! loopback TCP socket or a real pseudo-terminal, records them, and answers each with the bytes
//! the test's script gives (taken from the instruments' manuals; each test cites its source).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nanoecr_core::config::hardware::{SmuConfig, SmuModel, SmuTransport};

/// What the responder does with one message.
pub enum Answer {
    /// Nothing (a command, or a query left unanswered: the host times out).
    Silent,
    /// These bytes (the terminator included).
    Bytes(Vec<u8>),
    /// Close the connection (a LAN drop).
    Close,
    /// These bytes, this much later (the sleep is the fault: an instrument late past the host's
    /// timeout). Later messages wait behind it, as on an instrument that answers in order.
    Late(Duration, Vec<u8>),
}

/// A line reply with `\n`.
pub fn line(s: &str) -> Answer {
    Answer::Bytes(format!("{s}\n").into_bytes())
}

/// The script: called with each message (terminator stripped).
pub type Script = Box<dyn FnMut(&str) -> Answer + Send>;

/// `script` with the IEEE 488.2 event status enable register in front of it: `*ESE <n>` sets
/// it, `*ESE?` answers it in NR1 (IEEE 488.2-1992 §10.10, §10.11; 2450 Reference Manual
/// 2450-901-01, appendix B "Common commands", `*ESE` (p. B-2); B2900 SCPI Command Reference,
/// chapter 3 "Common Commands", `*ESE`, page unverified). The host writes markers to it to
/// resynchronise after a failed exchange.
pub fn with_ese(mut script: Script) -> Script {
    let mut ese = 0u8;
    Box::new(move |m: &str| {
        if m == "*ESE?" {
            return line(&ese.to_string());
        }
        if let Some(v) = m.strip_prefix("*ESE ").and_then(|v| v.trim().parse().ok()) {
            ese = v;
            return Answer::Silent;
        }
        script(m)
    })
}

/// `script` with the source output switch in front of it: `:OUTP ON` / `:OUTP OFF` set it,
/// `:OUTP?` answers `1` or `0` (2450 Reference Manual 2450-901-01 section 6, `:OUTPut[:STATe]`;
/// B2900 SCPI Command Reference, `:OUTPut[:STATe]`; the in-house dialect, docs/hardware.md). The
/// output starts off, as after `*RST`. The shut-down reads it back after `:OUTP OFF`.
pub fn with_output(mut script: Script) -> Script {
    let mut output_on = false;
    Box::new(move |m: &str| match m {
        ":OUTP ON" => {
            output_on = true;
            Answer::Silent
        }
        ":OUTP OFF" => {
            output_on = false;
            Answer::Silent
        }
        ":OUTP?" => line(if output_on { "1" } else { "0" }),
        m => script(m),
    })
}

/// Messages the host sent, in order.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// A copy of the messages so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
    fn push(&self, s: &str) {
        if let Ok(mut v) = self.0.lock() {
            v.push(s.to_string());
        }
    }
}

/// Serve `script` on 127.0.0.1:0 (every connection in turn, for reconnects); returns the address.
pub fn serve_tcp(mut script: Script) -> (SocketAddr, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = Log::default();
    let l2 = log.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            // As an instrument answers: each reply at once, not held back by Nagle's algorithm.
            let _ = s.set_nodelay(true);
            let Ok(mut r) = s.try_clone() else { return };
            if !converse(&mut r, &mut s, &mut script, &l2) {
                // The script closed the connection: keep accepting (a later reconnect may come).
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    });
    (addr, log)
}

/// Read messages from `r` and answer on `w` until EOF (true) or a scripted close (false).
fn converse(r: &mut impl Read, w: &mut impl Write, script: &mut Script, log: &Log) -> bool {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let mut msg: Vec<u8> = pending.drain(..=pos).collect();
            msg.pop();
            if msg.last() == Some(&b'\r') {
                msg.pop();
            }
            let msg = String::from_utf8_lossy(&msg).into_owned();
            log.push(&msg);
            match script(&msg) {
                Answer::Silent => {}
                Answer::Bytes(b) => {
                    if w.write_all(&b).and_then(|()| w.flush()).is_err() {
                        return true;
                    }
                }
                Answer::Late(after, b) => {
                    std::thread::sleep(after);
                    if w.write_all(&b).and_then(|()| w.flush()).is_err() {
                        return true;
                    }
                }
                Answer::Close => return false,
            }
        }
    }
}

/// A pseudo-terminal in raw mode (no echo, no line editing) with `script` on its master side.
/// Returns the slave's path and the slave fd, which the caller keeps open for the test's length
/// (the pty's settings and life are tied to an open slave).
pub fn serve_pty(mut script: Script) -> (String, OwnedFd, Log) {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut t = tcgetattr(&pty.slave).expect("tcgetattr");
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t).expect("tcsetattr");
    let path = nix::unistd::ttyname(&pty.slave).expect("ttyname").to_string_lossy().into_owned();
    let log = Log::default();
    let l2 = log.clone();
    let master = std::fs::File::from(pty.master);
    std::thread::spawn(move || {
        let Ok(mut w) = master.try_clone() else { return };
        let mut r = master;
        converse(&mut r, &mut w, &mut script, &l2);
    });
    (path, pty.slave, log)
}

/// Reply timeout of the test configs, ms: a bound for a loaded machine, which may deschedule the
/// responder thread for longer than an instrument's few hundred ms. The tests of a silent meter
/// set their own ([`SILENCE_TIMEOUT_MS`]).
pub const REPLY_TIMEOUT_MS: u64 = 5000;

/// The reply timeout of the tests in which the meter never answers: short, since nothing can
/// arrive however the machine schedules the responder.
pub const SILENCE_TIMEOUT_MS: u64 = 300;

/// Reply timeout of the tests of a late reply, ms, and how late that reply is: past the timeout,
/// and on an idle machine before the retry's timeout, so that it comes while the host waits for
/// the retry. A responder descheduled for up to one more timeout still answers the retry's
/// resynchronisation (two retries are configured).
pub const LATE_TIMEOUT_MS: u64 = 1000;
/// See [`LATE_TIMEOUT_MS`].
pub const LATE_BY_MS: u64 = 1500;

/// A `[hardware.smu]` for `model` over TCP to `addr`.
pub fn tcp_config(model: SmuModel, addr: SocketAddr) -> SmuConfig {
    SmuConfig {
        model: Some(model),
        transport: SmuTransport::Tcp,
        address: Some(addr.ip().to_string()),
        port: addr.port(),
        timeout_ms: REPLY_TIMEOUT_MS,
        retries: 0,
        ..SmuConfig::default()
    }
}

/// A `[hardware.smu]` for `model` over `transport` to the device at `path`.
pub fn path_config(model: SmuModel, transport: SmuTransport, path: &str) -> SmuConfig {
    SmuConfig {
        model: Some(model),
        transport,
        device: Some(path.to_string()),
        timeout_ms: REPLY_TIMEOUT_MS,
        retries: 0,
        ..SmuConfig::default()
    }
}

/// Call `f` until it yields something, at most 60 s (a bound that only catches a hang: the meter
/// drivers answer on their own poll interval, a few ms, but a loaded machine may deschedule the
/// responder thread for seconds).
pub fn until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "condition not met within 60 s");
        std::thread::yield_now();
    }
}
