//! Link measurements (ignored by default; numbers, not assertions):
//! `cargo test --release -p nanoecr-hil-tests --test measure -- --ignored --nocapture --test-threads=1`
//!
//! - Modbus TCP round trip of one FIFO block read (function 23, 15 samples), p50 / p99;
//! - the highest sample rate the host keeps up with, without gaps, over TCP and over RTU on a
//!   pseudo-terminal (which does not emulate the baud rate: see docs/hardware.md for the wire
//!   budget of a real 921 600 bit/s line).

use std::time::{Duration, Instant};

use nanoecr_core::config::hardware::Transport;
use nanoecr_core::Segment;
use nanoecr_hil_tests::{hil_config, start_rig_shim};
use nanoecr_hw::modbus::ModbusLoadFrame;
use nanoecr_hw::{FrameLimits, FrameReading, LoadFrame};

const SHIM: &str = env!("CARGO_BIN_EXE_rig-shim");
const LIMITS: FrameLimits = FrameLimits { max_load_un: 3000.0, max_displacement_nm: 600.0 };

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "measurement; run explicitly"]
fn tcp_block_read_round_trip() -> anyhow::Result<()> {
    let shim = start_rig_shim(SHIM, &[])?;
    let cfg = hil_config(&shim, Transport::Tcp, |_| {})?;
    // 10 kHz polled every millisecond, as the control loop would: each acquire is one function
    // 23 round trip carrying about 10 samples.
    let mut frame = ModbusLoadFrame::connect("LOADFRAME0", &cfg.raw.hardware.loadframe, 10_000.0)?;
    frame.arm(&LIMITS)?;
    let mut out = [FrameReading::default(); 15];
    let mut us = Vec::with_capacity(3000);
    let t0 = Instant::now();
    let mut samples = 0usize;
    for k in 0..3000u32 {
        if let Some(w) = (t0 + Duration::from_millis(u64::from(k))).checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        let before = frame.stats().requests;
        let t = Instant::now();
        let n = frame.acquire(&mut out)?;
        if frame.stats().requests == before + 1 && n > 0 {
            us.push(t.elapsed().as_secs_f64() * 1e6);
            samples += n;
        }
    }
    eprintln!("mean samples per block: {:.1}", samples as f64 / us.len().max(1) as f64);
    us.sort_by(f64::total_cmp);
    eprintln!(
        "TCP FIFO block read (fn 23): n={} p50={:.0} µs p99={:.0} µs max={:.0} µs",
        us.len(),
        percentile(&us, 0.5),
        percentile(&us, 0.99),
        us.last().copied().unwrap_or(f64::NAN)
    );
    frame.make_safe()?;
    shim.stop()?;
    Ok(())
}

/// Poll like the control loop (command + acquire) for `seconds`; Ok(samples) if gapless.
fn sustain(transport: Transport, rate_hz: f64, seconds: f64) -> anyhow::Result<Result<u64, String>> {
    let shim = start_rig_shim(SHIM, &[])?;
    let cfg = hil_config(&shim, transport, |c| c.raw.hardware.loadframe.baud = 921_600)?;
    let mut frame = ModbusLoadFrame::connect("LOADFRAME0", &cfg.raw.hardware.loadframe, rate_hz)?;
    frame.arm(&LIMITS)?;
    let mut out = [FrameReading::default(); 256];
    let t0 = Instant::now();
    let mut got = 0u64;
    let mut result = Ok(0);
    // The control loop's tick is 1 ms at most; poll at that pace, faster rates come in blocks.
    let tick = Duration::from_secs_f64((1.0 / rate_hz).max(0.001));
    let mut k = 0u32;
    while t0.elapsed().as_secs_f64() < seconds {
        let deadline = t0 + tick * k;
        if let Some(w) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        k += 1;
        let step = frame.command(100.0, Segment::Load).and_then(|()| frame.acquire(&mut out));
        match step {
            Ok(n) => got += n as u64,
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        }
    }
    let produced = t0.elapsed().as_secs_f64() * rate_hz;
    // Keeping up: what arrived is what the device produced, minus at most a few blocks in flight.
    if result.is_ok() {
        result = if (got as f64) > produced - 8.0 * 15.0 - 0.01 * produced {
            Ok(got)
        } else {
            Err(format!("fell behind: {got} of {produced:.0}"))
        };
    }
    let _ = frame.make_safe();
    shim.stop()?;
    Ok(result)
}

#[test]
#[ignore = "measurement; run explicitly"]
fn highest_gapless_rate() -> anyhow::Result<()> {
    for transport in [Transport::Tcp, Transport::Rtu] {
        for rate in [1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0, 50_000.0, 100_000.0] {
            let r = sustain(transport, rate, 2.0)?;
            eprintln!("{transport:?} {rate:>7.0} Hz: {r:?}");
        }
    }
    Ok(())
}
