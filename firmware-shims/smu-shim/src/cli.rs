//! The `smu-shim` command line: one source-measure unit alone, on a TCP socket or a
//! pseudo-terminal, measuring a simulated pillar held at a constant load (for bring-up and
//! independent-client tests without a load frame). For a rig whose current follows the frame's
//! load, run `loadframe-shim --smu-model …`: both instruments must observe the same pillar.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use nanoecr_core::Segment;
use nanoecr_sim::World;

use crate::{serve_pty, serve_tcp, Meter, MeterConfig, Model};

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    about = "SCPI source-measure unit shim (Keithley 2450, Keysight B2900, in-house dialect) over a simulated pillar"
)]
pub struct Args {
    /// Run config whose `[sample]` and `[simulation]` sections define the pillar.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// Instrument emulated: keithley-2450, keysight-b2900 or nanoecr-scpi.
    #[arg(long, default_value = "nanoecr-scpi")]
    pub model: Model,
    /// Serve SCPI on this TCP address (port 0 picks a free port); prints `SCPI_TCP <addr>`.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Serve SCPI on a new pseudo-terminal (the default without --listen); prints `SCPI <path>`.
    #[arg(long)]
    pub pty: bool,
    /// Reply terminator: lf, crlf or cr.
    #[arg(long, default_value = "lf")]
    pub terminator: String,
    /// Keithley 2450: the command set `*LANG?` reports (SCPI, SCPI2400 or TSP).
    #[arg(long, default_value = "SCPI")]
    pub lang: String,
    /// Keysight B2900: model name in `*IDN?`.
    #[arg(long, default_value = "B2901A")]
    pub idn_model: String,
    /// Load the simulated actuator holds on the pillar, µN (so the pillar is in Ohmic contact
    /// and the current is close to V/R).
    #[arg(long, default_value_t = 1000.0)]
    pub load_un: f64,
    /// Fault: the output enters compliance at this device time, s.
    #[arg(long)]
    pub compliance_at_s: Option<f64>,
    /// Fault: delay every reply, ms.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fault: apply --latency-ms only from this device time on, s.
    #[arg(long)]
    pub latency_after_s: Option<f64>,
    /// Fault: the reply to query N is garbage.
    #[arg(long)]
    pub garbage_after: Option<u64>,
    /// Fault: `N:MS` — the reply to query N (1-based) leaves MS ms late (one late reply).
    #[arg(long, value_parser = parse_delay_reply)]
    pub delay_reply: Option<(u64, Duration)>,
    /// Fault: close the TCP connection at this device time, s (a LAN drop).
    #[arg(long)]
    pub drop_after_s: Option<f64>,
}

/// Parse `N:MS` (query number, delay in ms) for `--delay-reply` / `--smu-delay-reply`.
pub fn parse_delay_reply(spec: &str) -> Result<(u64, Duration), String> {
    let bad = || format!("expected N:MS (query number, delay in ms), got {spec:?}");
    let (n, ms) = spec.split_once(':').ok_or_else(bad)?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    let ms: u64 = ms.trim().parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("query numbers start at 1, got {spec:?}"));
    }
    Ok((n, Duration::from_millis(ms)))
}

/// Parse `lf`, `crlf` or `cr`.
pub fn terminator(name: &str) -> anyhow::Result<String> {
    Ok(match name {
        "lf" => "\n",
        "crlf" => "\r\n",
        "cr" => "\r",
        other => anyhow::bail!("unknown terminator {other:?} (expected lf, crlf or cr)"),
    }
    .into())
}

/// Run the standalone shim until stdin closes.
pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = nanoecr_core::config::load(&args.config).with_context(|| format!("loading {}", args.config.display()))?;
    if !matches!(args.lang.as_str(), "SCPI" | "SCPI2400" | "TSP") {
        anyhow::bail!("--lang must be SCPI, SCPI2400 or TSP, got {:?}", args.lang);
    }
    let meter = Arc::new(Meter::new(MeterConfig {
        model: args.model,
        circuit_resistance_ohm: cfg.raw.simulation.circuit_resistance_ohm,
        terminator: terminator(&args.terminator)?,
        lang: args.lang.clone(),
        idn_model: args.idn_model.clone(),
        // No frame drives the wire: the standalone clock's pulses count from the arming on.
        gate_on_frame_reset: false,
        compliance_at_s: args.compliance_at_s,
        latency: Duration::from_millis(args.latency_ms),
        latency_after_s: args.latency_after_s,
        garbage_after: args.garbage_after,
        delay_reply: args.delay_reply,
        drop_after_s: args.drop_after_s,
        ..MeterConfig::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let mut lines = Vec::new();
    let mut threads = Vec::new();
    if let Some(addr) = args.listen {
        let server = serve_tcp(meter.clone(), addr, stop.clone()).with_context(|| format!("listening on {addr}"))?;
        lines.push(format!("SCPI_TCP {}", server.addr));
        threads.push(server.thread);
    }
    if args.pty || args.listen.is_none() {
        let server = serve_pty(meter.clone(), stop.clone()).context("opening the pseudo-terminal")?;
        lines.push(format!("SCPI {}", server.path));
        threads.push(server.thread);
    }

    // The pillar is in Ohmic contact at power-on: the world runs (untimed, untriggered) past its
    // contact time before the meter sees it, so readings are close to V/R from the start.
    let load_un = args.load_un;
    let mut world = World::new(&cfg.raw.simulation, cfg.pillar, cfg.rate_hz());
    let max_steps = ((cfg.raw.simulation.contact_max_s + 1.0) * cfg.rate_hz()) as u64;
    for _ in 0..max_steps {
        if world.step(load_un, Segment::Hold).contact {
            break;
        }
    }
    // The trigger clock: one frame-like sample per sample period of the config's rate.
    let clock_stop = stop.clone();
    let clock_meter = meter.clone();
    let clock = std::thread::Builder::new().name("smu-clock".into()).spawn(move || {
        let t0 = Instant::now();
        let mut produced = 0u64;
        while !clock_stop.load(Ordering::Relaxed) {
            let due = (t0.elapsed().as_secs_f64() * cfg.rate_hz()) as u64;
            while produced < due {
                let w = world.step(load_un, Segment::Hold);
                clock_meter.trigger(w.seq, w.time_s, w.current_factor);
                produced += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    })?;
    {
        let mut out = std::io::stdout().lock();
        for l in &lines {
            writeln!(out, "{l}")?;
        }
        writeln!(out, "READY")?;
        out.flush()?;
    }
    // Run until stdin closes: the parent's handle on our lifetime.
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = clock.join();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// Parse flags from the process arguments and run.
pub fn main() -> anyhow::Result<()> {
    run(Args::parse())
}
