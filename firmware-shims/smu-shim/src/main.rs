//! `smu-shim`: the source-measure unit alone, on a pseudo-terminal, measuring an unloaded
//! simulated pillar (for SCPI bring-up without a load frame). Prints the slave path as its first
//! line on stdout, then `READY`; exits when stdin closes.
//!
//! For a rig whose current follows the frame's load, run `loadframe-shim --smu`: both
//! instruments must observe the same pillar, so they share one process (see firmware-shims/README.md).

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use nanoecr_core::Segment;
use nanoecr_sim::World;
use smu_shim::{serve_pty, Meter, MeterConfig};

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "SCPI source-measure unit on a pseudo-terminal (unloaded simulated pillar)")]
struct Args {
    /// Run config whose [sample] and [simulation] sections define the pillar.
    #[arg(long)]
    config: std::path::PathBuf,
    /// Reply terminator: lf, crlf or cr.
    #[arg(long, default_value = "lf")]
    terminator: String,
    /// Fault: the output enters compliance at this device time, s.
    #[arg(long)]
    compliance_at_s: Option<f64>,
    /// Fault: delay every reply, ms.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

fn terminator(name: &str) -> anyhow::Result<String> {
    Ok(match name {
        "lf" => "\n",
        "crlf" => "\r\n",
        "cr" => "\r",
        other => anyhow::bail!("unknown terminator {other:?} (expected lf, crlf or cr)"),
    }
    .into())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = nanoecr_core::config::load(&args.config).with_context(|| format!("loading {}", args.config.display()))?;
    let meter = Arc::new(Meter::new(MeterConfig {
        circuit_resistance_ohm: cfg.raw.simulation.circuit_resistance_ohm,
        terminator: terminator(&args.terminator)?,
        compliance_at_s: args.compliance_at_s,
        latency: Duration::from_millis(args.latency_ms),
        ..MeterConfig::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_pty(meter.clone(), stop.clone()).context("opening the pseudo-terminal")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", server.path)?;
    writeln!(out, "READY")?;
    out.flush()?;
    drop(out);

    // The trigger clock: one reading per sample period of the config's rate, in batches per ms.
    let clock_stop = stop.clone();
    let clock = std::thread::spawn(move || {
        let mut world = World::new(&cfg.raw.simulation, cfg.pillar, cfg.rate_hz());
        let t0 = Instant::now();
        let mut produced = 0u64;
        while !clock_stop.load(Ordering::Relaxed) {
            let due = (t0.elapsed().as_secs_f64() * cfg.rate_hz()) as u64;
            while produced < due {
                let w = world.step(0.0, Segment::Settle);
                meter.trigger(w.seq, w.time_s, w.current_factor);
                produced += 1;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    // Run until stdin closes: the parent's handle on our lifetime.
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        if line.is_err() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = clock.join();
    let _ = server.thread.join();
    Ok(())
}
