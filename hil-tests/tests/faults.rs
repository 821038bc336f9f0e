//! (c) Every injected fault ends in a defined way: recovered (retries configured) with a gapless
//! stream, or an error of the documented class that names the device — and make_safe / bias_off
//! are attempted either way. One shim process per fault; about a second of program each.

use anyhow::Context;
use nanoecr_core::config::hardware::Transport;
use nanoecr_core::RunConfig;
use nanoecr_hil_tests::{
    drive, first_gap, generous_timeouts, hil_config, hil_config_smu, start_rig_shim, workspace_root, Shim, Trace,
};
use nanoecr_hw::HwError;

const SHIM: &str = env!("CARGO_BIN_EXE_rig-shim");
/// Program seconds driven per test.
const SECONDS: f64 = 1.0;

/// Drive [`SECONDS`] of program against a shim with `flags`. Reply timeouts are generous (a
/// descheduled shim is not the fault under test) unless `edit` sets its own.
fn run(flags: &[&str], edit: impl FnOnce(&mut RunConfig)) -> anyhow::Result<(Shim, Trace)> {
    run_for(SECONDS, flags, edit)
}

/// As [`run`], for `seconds` of program.
fn run_for(seconds: f64, flags: &[&str], edit: impl FnOnce(&mut RunConfig)) -> anyhow::Result<(Shim, Trace)> {
    let shim = start_rig_shim(SHIM, flags)?;
    let cfg = hil_config(&shim, Transport::Tcp, |c| {
        generous_timeouts(c);
        edit(c);
    })?;
    let mut rig = nanoecr_hw::open_rig(&cfg)?;
    let trace = drive(&mut rig, &cfg, seconds);
    Ok((shim, trace))
}

fn retries(n: u32) -> impl FnOnce(&mut RunConfig) {
    move |c| {
        c.raw.hardware.loadframe.retries = n;
        c.raw.hardware.smu.retries = n;
    }
}

/// Recovered: no error, every sample in order, and both safe-state calls succeeded.
fn assert_recovered(t: &Trace) {
    assert!(t.error.is_none(), "expected recovery, got {:?}", t.error.as_ref().map(ToString::to_string));
    assert_eq!(first_gap(t.frames.iter().map(|r| r.seq)), None, "frame gap");
    assert_eq!(first_gap(t.smus.iter().map(|r| r.seq)), None, "meter gap");
    assert!(t.frames.len() as f64 >= 0.97 * SECONDS * 1000.0, "{} samples", t.frames.len());
    assert!(matches!(t.make_safe, Some(Ok(()))), "make_safe {:?}", t.make_safe);
    assert!(matches!(t.bias_off, Some(Ok(()))), "bias_off {:?}", t.bias_off);
}

/// Failed: the error names `device` and is of the class `is_class`; the samples before it were
/// gapless; both safe-state calls were attempted.
fn assert_failed(t: &Trace, device: &str, is_class: impl Fn(&HwError) -> bool) -> String {
    let e = t.error.as_ref().expect("the fault should end the run");
    let text = e.to_string();
    assert!(is_class(e), "wrong error class: {text}");
    assert!(e.device().starts_with(device) && text.contains(device), "error does not name {device}: {text}");
    assert_eq!(first_gap(t.frames.iter().map(|r| r.seq)), None, "frame gap before the fault");
    assert!(t.make_safe.is_some() && t.bias_off.is_some(), "safe state not attempted");
    text
}

#[test]
fn latency_within_the_timeout_only_slows_replies() -> anyhow::Result<()> {
    let (shim, t) = run(&["--latency-ms", "2"], |_| {})?;
    assert_recovered(&t);
    shim.stop()?;
    Ok(())
}

#[test]
fn latency_beyond_the_timeout_is_a_timeout_naming_the_frame() -> anyhow::Result<()> {
    // Latency six times the timeout: every reply is late however the machine schedules the shim.
    let (shim, t) = run(&["--latency-ms", "300"], |c| {
        c.raw.hardware.loadframe.timeout_ms = 50;
        c.raw.hardware.loadframe.retries = 1;
    })?;
    assert_failed(&t, "LOADFRAME0", |e| matches!(e, HwError::Timeout { .. }));
    // The frame cannot confirm the safe state through the same slow link; the meter can.
    assert!(matches!(t.make_safe, Some(Err(HwError::Timeout { .. }))), "{:?}", t.make_safe);
    assert!(matches!(t.bias_off, Some(Ok(()))));
    shim.stop()?;
    Ok(())
}

#[test]
fn dropped_connection_is_reconnected_with_retries() -> anyhow::Result<()> {
    let (shim, t) = run(&["--drop-after", "600"], retries(2))?;
    assert_recovered(&t);
    shim.stop()?;
    Ok(())
}

#[test]
fn dropped_connection_without_retries_is_a_transport_error() -> anyhow::Result<()> {
    let (shim, t) = run(&["--drop-after", "600"], retries(0))?;
    let text = assert_failed(&t, "LOADFRAME0", |e| matches!(e, HwError::Transport { .. }));
    eprintln!("{text}");
    // make_safe opens a fresh connection: the shim drops only once.
    assert!(matches!(t.make_safe, Some(Ok(()))), "{:?}", t.make_safe);
    shim.stop()?;
    Ok(())
}

#[test]
fn modbus_exception_is_a_device_error_with_its_code_and_not_retried() -> anyhow::Result<()> {
    // Function 16 (write multiple) refused with 04 from request 600 on: the command writes fail.
    let (shim, t) = run(&["--exception", "16:4@600"], retries(2))?;
    let text = assert_failed(&t, "LOADFRAME0", |e| matches!(e, HwError::Device { code: 4, .. }));
    assert!(text.contains("command"), "{text}");
    // make_safe uses single-register writes (function 06), so the refusal does not stop it.
    assert!(matches!(t.make_safe, Some(Ok(()))), "{:?}", t.make_safe);
    assert!(matches!(t.bias_off, Some(Ok(()))));
    shim.stop()?;
    Ok(())
}

#[test]
fn garbage_reply_is_retried_over_a_fresh_connection() -> anyhow::Result<()> {
    let (shim, t) = run(&["--garbage-after", "600"], retries(2))?;
    assert_recovered(&t);
    shim.stop()?;
    Ok(())
}

#[test]
fn garbage_reply_without_retries_is_a_protocol_error() -> anyhow::Result<()> {
    let (shim, t) = run(&["--garbage-after", "600"], retries(0))?;
    assert_failed(&t, "LOADFRAME0", |e| matches!(e, HwError::Protocol { .. }));
    shim.stop()?;
    Ok(())
}

#[test]
fn truncated_reply_is_retried_over_a_fresh_connection() -> anyhow::Result<()> {
    let (shim, t) = run(&["--truncate-after", "600"], retries(2))?;
    assert_recovered(&t);
    shim.stop()?;
    Ok(())
}

#[test]
fn truncated_reply_without_retries_is_a_protocol_error() -> anyhow::Result<()> {
    let (shim, t) = run(&["--truncate-after", "600"], retries(0))?;
    assert_failed(&t, "LOADFRAME0", |e| matches!(e, HwError::Protocol { .. }));
    shim.stop()?;
    Ok(())
}

#[test]
fn frozen_sample_counter_is_a_stream_error() -> anyhow::Result<()> {
    // The frozen-counter check fires after max(4 × timeout, 250 ms): 2 s at a 500 ms timeout, so
    // only a shim descheduled for 2 s could look frozen before the real freeze; the whole 3 s
    // program leaves room to see the real one at 0.3 s + 2 s.
    let (shim, t) = run_for(3.0, &["--freeze-at-s", "0.3"], |c| c.raw.hardware.loadframe.timeout_ms = 500)?;
    let text = assert_failed(&t, "LOADFRAME0", |e| matches!(e, HwError::Stream { .. }));
    assert!(text.contains("frozen"), "{text}");
    // Every sample up to the freeze arrived.
    assert_eq!(t.frames.len(), 300, "samples before the freeze");
    assert!(matches!(t.make_safe, Some(Ok(()))), "{:?}", t.make_safe);
    shim.stop()?;
    Ok(())
}

#[test]
fn compliance_trip_is_flagged_per_sample_from_its_onset() -> anyhow::Result<()> {
    let (dir, gt_path) = nanoecr_hil_tests::temp_path("gt.json")?;
    let gt_arg = gt_path.to_str().context("utf-8 path")?.to_string();
    let (shim, t) = run(&["--compliance-at-s", "0.4", "--ground-truth", &gt_arg], |_| {})?;
    assert_recovered(&t);
    let compliance_a = 1e-4;
    for r in &t.smus {
        if r.seq >= 400 {
            assert!(r.compliance && (r.current_a - compliance_a).abs() < 1e-12, "seq {} {:?}", r.seq, r);
        } else {
            assert!(!r.compliance, "seq {} flagged before the trip", r.seq);
        }
    }
    shim.stop()?;
    let gt: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&gt_path)?)?;
    let onset = gt["compliance_onsets_s"][0].as_f64().context("ground truth has the onset")?;
    assert!((onset - 0.4).abs() < 1e-9, "onset {onset}");
    drop(dir);
    Ok(())
}

#[test]
fn scpi_garbage_is_retried() -> anyhow::Result<()> {
    let (shim, t) = run(&["--smu-garbage-after", "300"], retries(1))?;
    assert_recovered(&t);
    shim.stop()?;
    Ok(())
}

#[test]
fn scpi_garbage_without_retries_is_a_protocol_error_naming_the_meter() -> anyhow::Result<()> {
    let (shim, t) = run(&["--smu-garbage-after", "300"], retries(0))?;
    assert_failed(&t, "SMU0", |e| matches!(e, HwError::Protocol { .. }));
    assert!(matches!(t.make_safe, Some(Ok(()))));
    assert!(matches!(t.bias_off, Some(Ok(()))), "{:?}", t.bias_off);
    shim.stop()?;
    Ok(())
}

#[test]
fn fifo_overflow_is_a_stream_error_with_the_lost_count() -> anyhow::Result<()> {
    use nanoecr_hw::{FrameLimits, FrameReading};
    // 10 kHz fills the 16384-sample FIFO in 1.6 s; a host that stalls 2 s loses the oldest.
    let shim = start_rig_shim(SHIM, &[])?;
    // Generous reply timeouts: a shim descheduled past hil.toml's 100 ms must not turn the
    // overflow under test into a timeout.
    let cfg = hil_config(&shim, Transport::Tcp, generous_timeouts)?;
    let mut frame = nanoecr_hw::modbus::ModbusLoadFrame::connect("LOADFRAME0", &cfg.raw.hardware.loadframe, 10_000.0)?;
    use nanoecr_hw::LoadFrame;
    frame.arm(&FrameLimits { max_load_un: 3000.0, max_displacement_nm: 600.0 })?;
    std::thread::sleep(std::time::Duration::from_secs(2)); // the fault itself: a stalled host
    let mut out = [FrameReading::default(); 64];
    let e = frame.acquire(&mut out).expect_err("overflow must surface");
    let text = e.to_string();
    assert!(
        matches!(e, HwError::Stream { .. }) && text.contains("FIFO overflow") && text.contains("LOADFRAME0"),
        "{text}"
    );
    frame.make_safe()?;
    shim.stop()?;
    Ok(())
}

/// The meter's reply timeout in [`late_reply_keeps_the_meter_in_step`], ms.
const LATE_TIMEOUT_MS: u64 = 1000;
/// How late the one delayed reply leaves, ms: past the timeout, and (on an idle host) before the
/// retry's own timeout, so it arrives while the host waits for the retry's reply.
const LATE_DELAY_MS: u64 = 1500;

/// One reply, to query `query` (mid-run), leaves the meter [`LATE_DELAY_MS`] late, past its
/// [`LATE_TIMEOUT_MS`] timeout (`--smu-delay-reply`): the host times out, retries, and the late
/// reply comes while it waits. Before the link resynchronised with markers, on a pseudo-terminal
/// the late reply was taken as the retry's answer and the retry's own answer as the next query's:
/// one reply behind for the rest of the run, unseen until a reply of another shape came. So
/// `faults::latency_within_the_timeout_only_slows_replies` failed once under load (load 7–12):
/// `bias_off` on the in-house meter read a late `:TRAC:DATA?` reply as the answer to `:OUTP?`.
/// Every sample must arrive in order, and the shut-down must read the output's real state.
fn late_reply_keeps_the_meter_in_step(
    config: &str,
    model: &str,
    link: &str,
    query: u64,
    edit: impl FnOnce(&mut RunConfig),
) -> anyhow::Result<()> {
    let (dir, gt_path) = nanoecr_hil_tests::temp_path("gt.json")?;
    let gt_arg = gt_path.to_str().context("utf-8 path")?.to_string();
    let delay = format!("{query}:{LATE_DELAY_MS}");
    let mut args = vec!["--tcp", "127.0.0.1:0", "--smu-model", model, link];
    if link == "--smu-listen" {
        args.push("127.0.0.1:0");
    }
    args.extend_from_slice(&["--smu-delay-reply", &delay, "--ground-truth", &gt_arg]);
    let config = workspace_root().join("config").join(config);
    let shim = Shim::spawn(SHIM, &config, &args)?;
    let cfg = hil_config_smu(&config, &shim, |c| {
        generous_timeouts(c);
        c.raw.hardware.smu.timeout_ms = LATE_TIMEOUT_MS;
        c.raw.hardware.smu.retries = 2;
        // hil.toml names its pty as `serial_path`; hil_config_smu sets `device`.
        c.raw.hardware.smu.serial_path = None;
        edit(c);
    })?;
    let mut rig = nanoecr_hw::open_rig(&cfg)?;
    let t = drive(&mut rig, &cfg, SECONDS);
    drop(rig);
    shim.stop()?;
    let label = format!("{model} {link}");
    assert!(t.error.is_none(), "{label}: {:?}", t.error.as_ref().map(ToString::to_string));
    assert_eq!(first_gap(t.frames.iter().map(|r| r.seq)), None, "{label}: frame gap");
    assert_eq!(first_gap(t.smus.iter().map(|r| r.seq)), None, "{label}: meter gap");
    assert!(t.smus.len() as f64 >= 0.9 * SECONDS * 1000.0, "{label}: {} readings", t.smus.len());
    assert!(matches!(t.make_safe, Some(Ok(()))), "{label}: make_safe {:?}", t.make_safe);
    assert!(matches!(t.bias_off, Some(Ok(()))), "{label}: bias_off {:?}", t.bias_off);
    // The fault did fire, on a query of the run (not of the set-up).
    let gt: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&gt_path)?)?;
    let delayed = gt["smu_delayed_queries"].as_array().context("ground truth lists delayed queries")?;
    assert_eq!(delayed.len(), 1, "{label}: {delayed:?}");
    let q = delayed[0].as_str().unwrap_or("");
    assert!(q.starts_with(":TRAC"), "{label}: the delayed query {q:?} is not one of the run's");
    eprintln!("{label}: reply to {q:?} delayed {LATE_DELAY_MS} ms; {} readings in order", t.smus.len());
    drop(dir);
    Ok(())
}

#[test]
fn a_reply_late_past_the_timeout_keeps_the_in_house_meter_in_step() -> anyhow::Result<()> {
    // Query 300: the set-up takes 3 (*OPC?, :SYST:ERR?, :OUTP?), then one :TRAC:DATA? a tick.
    late_reply_keeps_the_meter_in_step("hil.toml", "nanoecr-scpi", "--smu", 300, |_| {})?;
    late_reply_keeps_the_meter_in_step("hil.toml", "nanoecr-scpi", "--smu-listen", 300, |_| {})
}

#[test]
fn a_reply_late_past_the_timeout_keeps_the_keithley_2450_in_step() -> anyhow::Result<()> {
    // Query 40: 4 set-up queries, then two a poll (every 20 ms at 1 kHz).
    late_reply_keeps_the_meter_in_step("hil-keithley2450.toml", "keithley-2450", "--smu", 40, |_| {})?;
    late_reply_keeps_the_meter_in_step("hil-keithley2450.toml", "keithley-2450", "--smu-listen", 40, |_| {})
}

#[test]
fn a_reply_late_past_the_timeout_keeps_the_keysight_b2900_in_step() -> anyhow::Result<()> {
    // ASCII data over the pty: a late count read as the data is then a short reply (in binary
    // format it is no #-block, a protocol error that used to be retried clean by luck).
    late_reply_keeps_the_meter_in_step("hil-b2900.toml", "keysight-b2900", "--smu", 40, |c| {
        c.raw.hardware.smu.binary = false;
    })?;
    late_reply_keeps_the_meter_in_step("hil-b2900.toml", "keysight-b2900", "--smu-listen", 40, |_| {})
}
