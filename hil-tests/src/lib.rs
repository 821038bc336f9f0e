//! Hardware-in-the-loop test support (see README.md). The tests live in tests/.
//!
//! [`Shim`] starts the firmware shim as a real process and waits for its readiness lines (never a
//! sleep); [`hil_config`] turns config/hil.toml into a run config pointed at the shim's
//! endpoints; [`drive`] is a minimal control loop (absolute deadlines, feed-forward + PI) that
//! runs a program through the `nanoecr-hw` backends and records what came back.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nanoecr_core::config::hardware::{Backend, Transport};
use nanoecr_core::RunConfig;
use nanoecr_hw::{FrameLimits, FrameReading, HwError, Rig, SmuReading};

/// The workspace root (for config/ and docs/).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Fail (never skip) unless python3 can import every module in `modules`: the independent
/// clients of the HIL tests, which scripts/setup.sh installs.
pub fn require_python_modules(modules: &[&str]) -> anyhow::Result<()> {
    let probe =
        Command::new("python3").arg("-c").arg(format!("import {}", modules.join(", "))).status().context("python3")?;
    anyhow::ensure!(probe.success(), "python modules {modules:?} are missing (scripts/setup.sh installs them)");
    Ok(())
}

/// Run the independent client `hil-tests/python/<script>` with `args`, echo what it printed into
/// the test's log, and fail unless it exits 0 having printed `ALL OK` (each of its checks raises
/// on a mismatch).
pub fn python_check<S: AsRef<std::ffi::OsStr>>(script: &str, args: &[S]) -> anyhow::Result<()> {
    let path = workspace_root().join("hil-tests/python").join(script);
    let out = Command::new("python3").arg(&path).args(args).output().with_context(|| format!("python3 {script}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{script}:\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success() && stdout.contains("ALL OK"), "{script} failed ({})", out.status);
    Ok(())
}

/// Path of config/hil.toml.
pub fn hil_toml() -> PathBuf {
    workspace_root().join("config/hil.toml")
}

/// A running shim process. Dropping it kills the process; [`Shim::stop`] ends it cleanly.
#[derive(Debug)]
pub struct Shim {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `MODBUS_TCP` endpoint, if served.
    pub tcp: Option<SocketAddr>,
    /// `MODBUS_RTU` pseudo-terminal, if served.
    pub rtu: Option<String>,
    /// `SCPI` pseudo-terminal, if served.
    pub scpi: Option<String>,
    /// `SCPI_TCP` endpoint, if served (`--smu-listen` / `smu-shim --listen`).
    pub scpi_tcp: Option<SocketAddr>,
}

impl Shim {
    /// Start `exe --config <config> <args…>` and wait (at most 30 s, a bound for a loaded CI
    /// machine) for its `READY` line.
    pub fn spawn(exe: &str, config: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(exe)
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {exe}"))?;
        let stdout = child.stdout.take().context("shim stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut shim = Self { stdin: child.stdin.take(), child, tcp: None, rtu: None, scpi: None, scpi_tcp: None };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).context("shim did not report READY")?;
            match line.split_once(' ') {
                Some(("MODBUS_TCP", a)) => shim.tcp = Some(a.parse().context("tcp address")?),
                Some(("MODBUS_RTU", p)) => shim.rtu = Some(p.to_string()),
                Some(("SCPI", p)) => shim.scpi = Some(p.to_string()),
                Some(("SCPI_TCP", a)) => shim.scpi_tcp = Some(a.parse().context("scpi tcp address")?),
                _ if line == "READY" => return Ok(shim),
                _ => bail!("unexpected shim output {line:?}"),
            }
        }
    }

    /// Close the shim's stdin (its signal to write ground truth and exit) and wait, bounded.
    pub fn stop(mut self) -> anyhow::Result<ExitStatus> {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("shim did not exit within 60 s of stdin closing");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// config/hil.toml pointed at a shim: Modbus TCP (if `tcp`) or RTU (the shim's pty), SCPI on the
/// shim's pty. `edit` may change anything else (retries, timeouts…).
pub fn hil_config(shim: &Shim, transport: Transport, edit: impl FnOnce(&mut RunConfig)) -> anyhow::Result<RunConfig> {
    hil_config_from(&hil_toml(), shim, transport, edit)
}

/// As [`hil_config`], from another config file (same device sections).
pub fn hil_config_from(
    path: &Path,
    shim: &Shim,
    transport: Transport,
    edit: impl FnOnce(&mut RunConfig),
) -> anyhow::Result<RunConfig> {
    let mut cfg = nanoecr_core::config::load(path)?;
    let hw = &mut cfg.raw.hardware;
    hw.backend = Backend::Devices;
    hw.loadframe.transport = transport;
    match transport {
        Transport::Tcp => {
            let a = shim.tcp.context("shim serves no TCP")?;
            hw.loadframe.address = a.ip().to_string();
            hw.loadframe.port = a.port();
        }
        Transport::Rtu => hw.loadframe.serial_path = Some(shim.rtu.clone().context("shim serves no RTU")?),
    }
    hw.smu.serial_path = Some(shim.scpi.clone().context("shim serves no SCPI")?);
    edit(&mut cfg);
    cfg.raw.hardware.validate()?;
    Ok(cfg)
}

/// Reply timeout for HIL tests that check data rather than timeouts, ms. config/hil.toml's 100 ms
/// (frame) and 250 ms (meter) suit an instrument; a shim sharing two cores with concurrent builds
/// can be descheduled for longer than that, and the frame's frozen-counter check fires after
/// max(4 × timeout, 250 ms). Tests of timeouts set their own, far below their injected latency.
pub const GENEROUS_TIMEOUT_MS: u64 = 2000;

/// Set both devices' reply timeouts to [`GENEROUS_TIMEOUT_MS`].
pub fn generous_timeouts(cfg: &mut RunConfig) {
    cfg.raw.hardware.loadframe.timeout_ms = GENEROUS_TIMEOUT_MS;
    cfg.raw.hardware.smu.timeout_ms = GENEROUS_TIMEOUT_MS;
}

/// A config file with a real meter model (config/hil-keithley2450.toml, config/hil-b2900.toml)
/// pointed at a shim: the frame over Modbus TCP, the meter over the shim's `SCPI_TCP` socket if it
/// serves one, else over its SCPI pseudo-terminal.
pub fn hil_config_smu(path: &Path, shim: &Shim, edit: impl FnOnce(&mut RunConfig)) -> anyhow::Result<RunConfig> {
    use nanoecr_core::config::hardware::SmuTransport;
    let mut cfg = nanoecr_core::config::load(path)?;
    let hw = &mut cfg.raw.hardware;
    hw.backend = Backend::Devices;
    hw.loadframe.transport = Transport::Tcp;
    let a = shim.tcp.context("shim serves no Modbus TCP")?;
    hw.loadframe.address = a.ip().to_string();
    hw.loadframe.port = a.port();
    match (shim.scpi_tcp, &shim.scpi) {
        (Some(a), _) => {
            hw.smu.transport = SmuTransport::Tcp;
            hw.smu.address = Some(a.ip().to_string());
            hw.smu.port = a.port();
        }
        (None, Some(p)) => {
            hw.smu.transport = SmuTransport::Serial;
            hw.smu.device = Some(p.clone());
        }
        (None, None) => anyhow::bail!("shim serves no SCPI meter"),
    }
    edit(&mut cfg);
    cfg.raw.hardware.validate()?;
    Ok(cfg)
}

/// The settings of a HIL test that checks data (a complete, gap-free file, the spikes in it), not
/// the host's timing or the loop's response to it. The shim's frame runs on its own clock, so a
/// host that the machine's other work stalls for a second leaves the frame on a stale command and
/// the setpoint runs ahead of the load (the loop skips to the newest due tick). Seen in a shake
/// of the HIL tests under CPU load (4 busy loops, load average 15), one failure per kind:
/// - the tracking interlock tripped on the stall, not on the rig ("load 0.1 µN off its setpoint
///   547.5 µN … for 50.0 ms");
/// - the frame's overload trip: after the stall the FIFO's backlog comes in 120 samples a tick,
///   oldest first, so the PI integrates a stale error for several ticks and winds up to
///   setpoint + 3000 µN ("controller fault: overload"). The loop now holds its correction while
///   the feedback is stale (crates/nanoecr-daemon/src/run/feedback.rs), tested with an injected
///   2 s stall in tests/stall_recovery.rs; these tests still keep only the proportional term,
///   so that what they judge is the data path, not the controller's response to a stall.
///
/// So: the timing interlocks off, the tracking interlock off, and no integral term. Every
/// interlock is tested deterministically, with a stalling or jammed frame, in
/// crates/nanoecr-daemon/tests/pipeline.rs.
pub fn data_only(cfg: &mut RunConfig) {
    cfg.raw.limits = cfg.raw.limits.clone().without_timing_interlocks();
    cfg.raw.limits.max_tracking_error_un = f64::INFINITY;
    cfg.raw.control.ki_per_s = 0.0;
}

/// Whether `n` samples in the file of a complete run are the whole program of `expected` samples,
/// as far as a data test can tell on a shared machine: the loop ends at the program's last tick
/// and keeps what the frame's FIFO holds then, and the frame's clock runs on its own, so the count
/// is `expected` plus however late that tick ran (measured: +63 under CPU load), or less by
/// however far the shim's clock had fallen behind (−12). Within 10 % below, 50 % above: a run
/// that lost or duplicated samples fails the sequence check, one that stopped early this bound.
pub fn covers_the_program(n: u64, expected: u64) -> bool {
    let (n, expected) = (n as f64, expected as f64);
    n >= 0.9 * expected && n <= 1.5 * expected
}

/// What [`drive`] recorded.
#[derive(Debug, Default)]
pub struct Trace {
    /// Frame readings in arrival order.
    pub frames: Vec<FrameReading>,
    /// Meter readings in arrival order.
    pub smus: Vec<SmuReading>,
    /// Setpoint of the tick at which each frame reading arrived, µN.
    pub setpoints_un: Vec<f64>,
    /// The error that ended the loop early, if any.
    pub error: Option<HwError>,
    /// Result of `make_safe` (always attempted).
    pub make_safe: Option<Result<(), HwError>>,
    /// Result of `bias_off` (always attempted).
    pub bias_off: Option<Result<(), HwError>>,
    /// Control ticks run.
    pub ticks: u64,
}

/// Run `cfg`'s load function (at most `max_s` seconds of it) through the rig at the config's
/// rate: arm, bias on, per tick command + acquire both, then make safe and bias off whatever
/// happened. A minimal stand-in for the daemon's control loop.
pub fn drive(rig: &mut Rig, cfg: &RunConfig, max_s: f64) -> Trace {
    let mut t = Trace::default();
    let limits = FrameLimits {
        max_load_un: cfg.raw.limits.max_load_un,
        max_displacement_nm: cfg.raw.limits.max_displacement_nm,
    };
    // The daemon's order (docs/hardware.md, "Alignment"): frame prepared, meter armed, then the
    // frame restarts its sample counter.
    let armed = rig
        .frame
        .prepare(&limits)
        .and_then(|()| rig.smu.bias_on(cfg.raw.bias.voltage_v, cfg.raw.bias.compliance_a))
        .and_then(|()| rig.frame.arm(&limits));
    if let Err(e) = armed {
        t.error = Some(e);
    } else {
        run_ticks(rig, cfg, max_s, &mut t);
    }
    t.make_safe = Some(rig.frame.make_safe());
    t.bias_off = Some(rig.smu.bias_off());
    t
}

fn run_ticks(rig: &mut Rig, cfg: &RunConfig, max_s: f64, t: &mut Trace) {
    let lf = cfg.load_function.clone();
    let mut cursor = lf.cursor();
    let dt_s = cfg.dt_s();
    let (kp, ki) = (cfg.raw.control.kp, cfg.raw.control.ki_per_s.min(0.3 / dt_s));
    let mut integral = 0.0;
    let mut last_load = 0.0;
    // Whether `last_load` is the frame's state now: its last acquire brought the one or two
    // samples of a tick, not a backlog.
    let mut feedback_fresh = false;
    let mut fr = [FrameReading::default(); 256];
    let mut sr = [SmuReading::default(); 256];
    let t0 = Instant::now();
    let ticks = ((lf.total_s().min(max_s)) / dt_s) as u64;
    for k in 0..ticks {
        let deadline = t0 + Duration::from_secs_f64(k as f64 * dt_s);
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let Some((segment, setpoint)) = cursor.at(&lf, k as f64 * dt_s) else { break };
        let error = setpoint - last_load;
        // As the daemon's loop does (crates/nanoecr-daemon/src/run/feedback.rs), the integral
        // holds while the feedback is stale: after a host stall (a shared machine under load,
        // a link retry) the frame's backlog arrives at once and the late ticks run back to back
        // ahead of the frame, and integrating that error wound this driver up into the shim's
        // overload trip (faults.rs, "controller fault: overload") and a 2677 µN peak on a
        // 2000 µN program (transports.rs), both seen at load 12. A data test must not fail on
        // the host's timing.
        let on_time = Instant::now().saturating_duration_since(deadline) < STALE_FEEDBACK;
        if feedback_fresh && on_time {
            integral = (integral + ki * error * dt_s).clamp(-limits_clamp(cfg), limits_clamp(cfg));
        }
        let command = (setpoint + kp * error + integral).max(0.0);
        let step = rig
            .frame
            .command(command, segment)
            .and_then(|()| rig.frame.acquire(&mut fr))
            .and_then(|nf| rig.smu.acquire(&mut sr).map(|ns| (nf, ns)));
        match step {
            Ok((nf, ns)) => {
                feedback_fresh = (1..=2).contains(&nf);
                for r in &fr[..nf] {
                    last_load = r.load_un;
                    t.frames.push(*r);
                    t.setpoints_un.push(setpoint);
                }
                t.smus.extend_from_slice(&sr[..ns]);
            }
            Err(e) => {
                t.error = Some(e);
                break;
            }
        }
        t.ticks += 1;
    }
}

/// How late a tick of [`drive`] may run before its feedback counts as stale (the daemon's loop
/// uses max(5 ms, 5 wake-up periods)).
const STALE_FEEDBACK: Duration = Duration::from_millis(5);

fn limits_clamp(cfg: &RunConfig) -> f64 {
    cfg.raw.limits.max_load_un
}

/// Sequence numbers must be 0, 1, 2, … with no gap or repeat; returns the first offender.
pub fn first_gap(seqs: impl IntoIterator<Item = u64>) -> Option<(usize, u64)> {
    seqs.into_iter().enumerate().find(|&(i, s)| s != i as u64)
}

/// Start the full rig shim (TCP + RTU + SCPI) with extra flags.
pub fn start_rig_shim(exe: &str, extra: &[&str]) -> anyhow::Result<Shim> {
    let mut args = vec!["--tcp", "127.0.0.1:0", "--rtu", "--smu"];
    args.extend_from_slice(extra);
    Shim::spawn(exe, &hil_toml(), &args)
}

/// A temporary file path (the directory lives as long as the returned guard).
pub fn temp_path(name: &str) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join(name);
    Ok((dir, p))
}
