//! # loadframe-shim
//!
//! The reference implementation of the load-frame controller's Modbus register map
//! (docs/register-map.md): a [`frame::Frame`] with a real-time sample clock driving
//! `nanoecr-sim`'s pillar, served over Modbus TCP and/or Modbus RTU on a pseudo-terminal by
//! tokio-modbus's **server** side ([`service`]). With `--smu` the same process also serves the
//! source-measure unit (`smu-shim`'s [`smu_shim::Meter`]) on a second pseudo-terminal, triggered
//! by every frame sample: the meter's current depends on the strain the frame's actuator puts
//! into the pillar, so both must observe one `World`, and one process is the simplest way to
//! share it without inventing a third protocol.
//!
//! Start-up prints one line per endpoint on stdout, then `READY`:
//! `MODBUS_TCP 127.0.0.1:40123`, `MODBUS_RTU /dev/pts/7`, `SCPI /dev/pts/8`,
//! `SCPI_TCP 127.0.0.1:40124` (`--smu-listen`). `--smu-model` picks the instrument emulated
//! (`keithley-2450`, `keysight-b2900`, `nanoecr-scpi`). The process runs
//! until its stdin closes, then writes the ground truth (`--ground-truth PATH`) and exits.
//!
//! Never depends on `nanoecr-hw`: host and device agree through the wire only.

pub mod frame;
pub mod service;

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde::Serialize;
use smu_shim::{Meter, MeterConfig};

use crate::frame::{lock, FaultRecord, Frame, Identity};
use crate::service::{Bus, BusFaults, FaultyStream, FrameService};

/// Command-line flags of the shim.
#[derive(Debug, Clone, Parser)]
#[command(about = "Load-frame controller (Modbus TCP/RTU) and optional SCPI source-measure unit over nanoecr-sim")]
pub struct Args {
    /// Run config whose `[sample]`, `[simulation]` and `[acquisition]` sections define the pillar and
    /// the initial sample rate.
    #[arg(long)]
    pub config: PathBuf,
    /// Serve Modbus TCP on this address (port 0 picks a free port).
    #[arg(long)]
    pub tcp: Option<SocketAddr>,
    /// Serve Modbus RTU on a new pseudo-terminal.
    #[arg(long)]
    pub rtu: bool,
    /// Unit id answered on RTU (TCP answers any).
    #[arg(long, default_value_t = 1)]
    pub unit_id: u8,
    /// Also serve the source-measure unit (SCPI) on a new pseudo-terminal.
    #[arg(long)]
    pub smu: bool,
    /// Also serve the source-measure unit on this TCP address (port 0 picks a free port).
    #[arg(long)]
    pub smu_listen: Option<SocketAddr>,
    /// Source-measure unit emulated: keithley-2450, keysight-b2900 or nanoecr-scpi.
    #[arg(long, default_value = "nanoecr-scpi")]
    pub smu_model: smu_shim::Model,
    /// Keithley 2450: the command set `*LANG?` reports (SCPI, SCPI2400 or TSP).
    #[arg(long, default_value = "SCPI")]
    pub smu_lang: String,
    /// Keysight B2900: model name in `*IDN?`.
    #[arg(long, default_value = "B2901A")]
    pub smu_idn_model: String,
    /// SCPI reply terminator: lf, crlf or cr.
    #[arg(long, default_value = "lf")]
    pub smu_terminator: String,
    /// Serial number reported by the frame.
    #[arg(long, default_value = "SHIM-0001")]
    pub serial: String,
    /// Write ground truth (simulated events, injected faults, trips) as JSON here on exit.
    #[arg(long)]
    pub ground_truth: Option<PathBuf>,
    /// Fault: delay every Modbus reply, ms.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fault: close the connection instead of answering request N+1 (once).
    #[arg(long)]
    pub drop_after: Option<u64>,
    /// Fault: `FC:CODE[@N]` — answer function FC with exception CODE (from request N on).
    #[arg(long)]
    pub exception: Option<String>,
    /// Fault: the reply to request N is garbage (TCP).
    #[arg(long)]
    pub garbage_after: Option<u64>,
    /// Fault: the reply to request N is cut in half and the connection closed (TCP).
    #[arg(long)]
    pub truncate_after: Option<u64>,
    /// Fault: `FC@N:MS` — the reply to the first function-FC request from Modbus request N on
    /// (1-based, counted per transport) leaves MS ms late, once: a reply late past the host's
    /// timeout (listed in the ground truth). The request itself takes effect at once.
    #[arg(long, value_parser = parse_delay_reply)]
    pub delay_reply: Option<(u8, u64, Duration)>,
    /// Fault: the sample counter freezes at this device time, s.
    #[arg(long)]
    pub freeze_at_s: Option<f64>,
    /// Fault: the source-measure unit enters compliance at this device time, s.
    #[arg(long)]
    pub compliance_at_s: Option<f64>,
    /// Fault: delay every SCPI reply, ms.
    #[arg(long, default_value_t = 0)]
    pub smu_latency_ms: u64,
    /// Fault: apply --smu-latency-ms only from this device time on, s (set-up stays prompt).
    #[arg(long)]
    pub smu_latency_after_s: Option<f64>,
    /// Fault: the reply to SCPI query N is garbage.
    #[arg(long)]
    pub smu_garbage_after: Option<u64>,
    /// Fault: `N:MS` — the reply to SCPI query N (1-based, set-up included) leaves MS ms late:
    /// one reply late past the host's timeout (listed in the ground truth).
    #[arg(long, value_parser = smu_shim::cli::parse_delay_reply)]
    pub smu_delay_reply: Option<(u64, Duration)>,
    /// Fault: close the SCPI TCP connection at this device time, s (a LAN drop mid-run).
    #[arg(long)]
    pub smu_drop_after_s: Option<f64>,
    /// Fault: from --smu-hold-readings-at-s on, the meter stores the reading of each trigger only
    /// this many ms (device time) later, all at once (a meter that falls behind its triggers and
    /// catches up; its queries are still answered at once).
    #[arg(long, default_value_t = 0)]
    pub smu_hold_readings_ms: u64,
    /// Fault: device time at which --smu-hold-readings-ms begins, s.
    #[arg(long)]
    pub smu_hold_readings_at_s: Option<f64>,
    /// Fault (without --smu-hold-readings-at-s): the meter stores the reading of each trigger
    /// this many ms (device time) later, one by one (a meter steadily behind its triggers).
    #[arg(long, default_value_t = 0)]
    pub smu_lag_readings_ms: u64,
    /// Fault: device time at which --smu-lag-readings-ms ends (the meter catches up at once), s.
    #[arg(long)]
    pub smu_lag_readings_until_s: Option<f64>,
}

/// `FC:CODE[@N]` → (function, code, from request).
pub fn parse_exception(spec: &str) -> anyhow::Result<(u8, u8, u64)> {
    let (main, from) = match spec.split_once('@') {
        Some((m, n)) => (m, n.parse::<u64>().with_context(|| format!("bad request count in {spec:?}"))?),
        None => (spec, 1),
    };
    let Some((fc, code)) = main.split_once(':') else { bail!("expected FC:CODE[@N], got {spec:?}") };
    Ok((fc.parse().context("function code")?, code.parse().context("exception code")?, from))
}

/// `FC@N:MS` → (function, from request, delay).
pub fn parse_delay_reply(spec: &str) -> Result<(u8, u64, Duration), String> {
    let bad = || format!("expected FC@N:MS (function code, request number, delay in ms), got {spec:?}");
    let (fc, rest) = spec.split_once('@').ok_or_else(bad)?;
    let (n, ms) = rest.split_once(':').ok_or_else(bad)?;
    let fc: u8 = fc.trim().parse().map_err(|_| bad())?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    let ms: u64 = ms.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("request numbers start at 1, got {spec:?}"));
    }
    Ok((fc, n, Duration::from_millis(ms)))
}

/// Ground truth written on exit.
#[derive(Debug, Serialize)]
struct GroundTruth {
    rate_hz: f64,
    samples_produced: u64,
    events: Vec<nanoecr_core::Event>,
    faults: Vec<FaultRecord>,
    compliance_onsets_s: Vec<f64>,
    /// SCPI queries whose replies `--smu-delay-reply` held back.
    smu_delayed_queries: Vec<String>,
    /// Modbus requests whose replies `--delay-reply` held back, as `tcp request N: <request>` or
    /// `rtu request N: …`.
    delayed_replies: Vec<String>,
    /// SCPI queries the meter answered (set-up included).
    smu_queries: u64,
}

fn terminator(name: &str) -> anyhow::Result<String> {
    Ok(match name {
        "lf" => "\n",
        "crlf" => "\r\n",
        "cr" => "\r",
        other => bail!("unknown terminator {other:?} (expected lf, crlf or cr)"),
    }
    .into())
}

/// Run the shim with parsed flags until stdin closes.
pub fn run(args: Args) -> anyhow::Result<()> {
    if args.tcp.is_none() && !args.rtu {
        bail!("nothing to serve: give --tcp ADDR and/or --rtu");
    }
    let cfg = nanoecr_core::config::load(&args.config).with_context(|| format!("loading {}", args.config.display()))?;
    let exception = args.exception.as_deref().map(parse_exception).transpose()?;
    let faults = BusFaults {
        latency: Duration::from_millis(args.latency_ms),
        drop_after: args.drop_after,
        exception,
        garbage_after: args.garbage_after,
        truncate_after: args.truncate_after,
        delay_reply: args.delay_reply,
    };
    if args.smu_drop_after_s.is_some() && args.smu_listen.is_none() {
        bail!("--smu-drop-after-s needs --smu-listen (it drops the SCPI TCP connection)");
    }
    let meter = if args.smu || args.smu_listen.is_some() {
        Some(Arc::new(Meter::new(MeterConfig {
            model: args.smu_model,
            circuit_resistance_ohm: cfg.raw.simulation.circuit_resistance_ohm,
            terminator: terminator(&args.smu_terminator)?,
            lang: args.smu_lang.clone(),
            idn_model: args.smu_idn_model.clone(),
            // The frame's sample clock drives the wire; its reset starts the run
            // (SMU-CONTRACT.md "Alignment").
            gate_on_frame_reset: true,
            drop_after_s: args.smu_drop_after_s,
            compliance_at_s: args.compliance_at_s,
            latency: Duration::from_millis(args.smu_latency_ms),
            latency_after_s: args.smu_latency_after_s,
            garbage_after: args.smu_garbage_after,
            delay_reply: args.smu_delay_reply,
            hold_readings_at_s: args.smu_hold_readings_at_s,
            hold_readings: Duration::from_millis(args.smu_hold_readings_ms),
            lag_readings: Duration::from_millis(args.smu_lag_readings_ms),
            lag_readings_until_s: args.smu_lag_readings_until_s,
            ..MeterConfig::default()
        })))
    } else {
        None
    };
    let identity = Identity {
        vendor: "NANOECR".into(),
        model: "LF-SHIM-1".into(),
        serial: args.serial.clone(),
        firmware: nanoecr_core::SOFTWARE_VERSION.into(),
    };
    let frame = Arc::new(Mutex::new(Frame::new(
        cfg.raw.simulation.clone(),
        cfg.pillar,
        cfg.rate_hz(),
        identity,
        meter.clone(),
        args.freeze_at_s,
    )));
    let stop = Arc::new(AtomicBool::new(false));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    let mut lines = Vec::new();
    let _guard = rt.enter();
    // Every bus, by transport, for the ground truth.
    let mut buses: Vec<(&str, Arc<Bus>)> = Vec::new();

    if let Some(addr) = args.tcp {
        let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).with_context(|| format!("binding {addr}"))?;
        lines.push(format!("MODBUS_TCP {}", listener.local_addr()?));
        let bus = Bus::new(frame.clone(), faults.clone(), None);
        buses.push(("tcp", bus.clone()));
        rt.spawn(async move {
            let server = tokio_modbus::server::tcp::Server::new(listener);
            let on_connected = |stream, _addr| {
                let bus = bus.clone();
                async move { Ok(Some((FrameService(bus.clone()), FaultyStream::new(stream, bus)))) }
            };
            if let Err(e) = server.serve(&on_connected, |e| eprintln!("modbus tcp connection ended: {e}")).await {
                eprintln!("modbus tcp server stopped: {e}");
            }
        });
    }
    // Kept alive for the process's lifetime: the RTU server's master needs an open slave.
    let mut _rtu_slave = None;
    if args.rtu {
        // The slave is neither TIOCEXCL'd nor flocked by `pair`, so a client can open it
        // exclusively (set_exclusive(false) would take a shared flock and lock clients out).
        let (master, slave) = serialport::TTYPort::pair().context("opening the RTU pseudo-terminal")?;
        let path = serialport::SerialPort::name(&slave).context("pty slave has no path")?;
        lines.push(format!("MODBUS_RTU {path}"));
        _rtu_slave = Some(slave);
        let stream = tokio_serial::SerialStream::try_from(master).context("pty master as async stream")?;
        let bus = Bus::new(frame.clone(), faults.clone(), Some(args.unit_id));
        buses.push(("rtu", bus.clone()));
        rt.spawn(async move {
            let server = tokio_modbus::server::rtu::Server::new(stream);
            if let Err(e) = server.serve_forever(FrameService(bus)).await {
                eprintln!("modbus rtu server stopped: {e}");
            }
        });
    }
    let mut scpi = Vec::new();
    if let (Some(m), true) = (&meter, args.smu) {
        let server = smu_shim::serve_pty(m.clone(), stop.clone()).context("opening the SCPI pseudo-terminal")?;
        lines.push(format!("SCPI {}", server.path));
        scpi.push(server.thread);
    }
    if let (Some(m), Some(addr)) = (&meter, args.smu_listen) {
        let server = smu_shim::serve_tcp(m.clone(), addr, stop.clone()).with_context(|| format!("binding {addr}"))?;
        lines.push(format!("SCPI_TCP {}", server.addr));
        scpi.push(server.thread);
    }

    let clock_frame = frame.clone();
    let clock_stop = stop.clone();
    let clock = std::thread::Builder::new()
        .name("sample-clock".into())
        .spawn(move || frame::run_clock(clock_frame, clock_stop))?;

    {
        let mut out = std::io::stdout().lock();
        for l in &lines {
            writeln!(out, "{l}")?;
        }
        writeln!(out, "READY")?;
        out.flush()?;
    }

    // The servers run on this thread's runtime while we wait for stdin to close.
    rt.block_on(async {
        let eof = tokio::task::spawn_blocking(|| {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                if line.is_err() {
                    break;
                }
            }
        });
        let _ = eof.await;
    });
    stop.store(true, Ordering::Relaxed);
    let _ = clock.join();
    for t in scpi {
        let _ = t.join();
    }
    if let Some(path) = &args.ground_truth {
        let f = lock(&frame);
        let gt = GroundTruth {
            rate_hz: f.rate_hz(),
            samples_produced: f.produced(),
            events: f.events(),
            faults: f.records.clone(),
            compliance_onsets_s: meter.as_ref().map(|m| m.compliance_onsets_s()).unwrap_or_default(),
            smu_delayed_queries: meter.as_ref().map(|m| m.delayed_queries()).unwrap_or_default(),
            delayed_replies: buses
                .iter()
                .flat_map(|(t, b)| b.delayed_requests().into_iter().map(move |r| format!("{t} {r}")))
                .collect(),
            smu_queries: meter.as_ref().map(|m| m.queries()).unwrap_or_default(),
        };
        let text = serde_json::to_string_pretty(&gt)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

/// Parse flags from the process arguments and run.
pub fn main() -> anyhow::Result<()> {
    run(Args::parse())
}
