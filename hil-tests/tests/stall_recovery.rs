//! What the control loop does after a host stall on a frame that runs on its own clock (the
//! Modbus shim over TCP, as a real load-frame controller): the frame holds the last command and
//! keeps sampling into its FIFO while the host is away, and the backlog then arrives a bounded
//! block per tick, oldest first. Feedback that old must not drive the integrator: a shake of the
//! HIL tests under CPU load saw the PI wind up on it to the frame's overload trip
//! ("controller fault: overload") — on a real rig, a pillar crushed by its own controller.
//!
//! The stall is injected deterministically (one `command` sleeps; the sleep is the fault itself,
//! not a synchronisation), and the assertions are about the load the frame measured, not about
//! the host's timing: a slower host only makes the backlog longer.

use nanoecr_core::config::hardware::Transport;
use nanoecr_core::config::RunConfig;
use nanoecr_core::{RunStatus, Segment};
use nanoecr_daemon::run::{start_run, RunOptions};
use nanoecr_hil_tests::{generous_timeouts, hil_config_from, hil_toml, Shim};
use nanoecr_hw::fault::{CommandCall, FaultyFrame};
use nanoecr_hw::FrameClock;
use std::time::Duration;

const SHIM: &str = env!("CARGO_BIN_EXE_rig-shim");

/// config/hil.toml (2000 µN peak, limits.max_load_un 3000 µN, 1 kHz, settle 0.5 s + load 1 s)
/// with a 4 s hold and the default PI gains, against a fresh shim, with the frame stalling 2 s at
/// the first command ≥ 1000 µN (t ≈ 1.0 s, half-way up the load ramp): the loop resumes in the hold at
/// 2000 µN with ≈ 2000 samples of the stall, ≈ 1000 µN below the setpoint, still to read.
/// Returns the summary and the run file as read back.
fn run_with_a_two_second_stall(
    edit: impl FnOnce(&mut RunConfig),
) -> anyhow::Result<(nanoecr_core::RunSummary, nanoecr_store::RunFile)> {
    // Chosen by load, not by command count: a loop that skips stale ticks on a busy host sends
    // fewer commands per second of program.
    run_with_a_stall(|c| c.segment == Segment::Load && c.command_un >= 1000.0, Duration::from_secs(2), edit)
}

/// As [`run_with_a_two_second_stall`], with the frame blocking `stall` at the first command
/// `when` picks.
fn run_with_a_stall(
    when: impl Fn(&CommandCall) -> bool + Send + 'static,
    stall: Duration,
    edit: impl FnOnce(&mut RunConfig),
) -> anyhow::Result<(nanoecr_core::RunSummary, nanoecr_store::RunFile)> {
    let dir = tempfile::tempdir()?;
    let text = std::fs::read_to_string(hil_toml())?.replace("hold_s = 0.5", "hold_s = 4.0");
    anyhow::ensure!(text.contains("hold_s = 4.0"), "fixture edit did not apply");
    let cfg_path = dir.path().join("hil.toml");
    std::fs::write(&cfg_path, &text)?;
    let shim = Shim::spawn(SHIM, &cfg_path, &["--tcp", "127.0.0.1:0", "--smu"])?;
    let cfg = hil_config_from(&cfg_path, &shim, Transport::Tcp, |c| {
        generous_timeouts(c);
        edit(c);
    })?;
    anyhow::ensure!(cfg.raw.control.ki_per_s > 0.0, "the default config must have an integral term");
    let mut rig = nanoecr_hw::open_rig(&cfg)?;
    anyhow::ensure!(rig.frame.clock() == FrameClock::Device, "the Modbus frame runs on its own clock");
    // The real frame's first command that `when` picks blocks for `stall` first: the host
    // stalls while the device runs on. The sleep is the injected fault, not a synchronisation.
    let mut stalled = false;
    rig.frame = FaultyFrame::wrap(rig.frame, move |c| {
        if !stalled && when(&c) {
            stalled = true;
            std::thread::sleep(stall);
        }
        c.command_un
    });
    let file = dir.path().join("stall.h5");
    let handle = start_run(cfg, rig, RunOptions { file_path: Some(file.clone()), ..Default::default() })?;
    let summary = handle.join()?;
    shim.stop()?;
    let run = nanoecr_store::read_run(&file)?;
    Ok((summary, run))
}

#[test]
fn after_a_host_stall_the_backlog_does_not_wind_the_integrator_up_to_an_overload() -> anyhow::Result<()> {
    // The interlocks that would stop the test on the stall itself are off (command gap, late
    // ticks, tracking), so the program runs on after it and the loop must catch up on stale
    // feedback: the run completes and the pillar never sees much more than the program's 2000 µN
    // peak (the P term on the stale error may add a transient; the integrator may not).
    let (s, run) = run_with_a_two_second_stall(|c| {
        c.raw.limits = c.raw.limits.clone().without_timing_interlocks();
        c.raw.limits.max_tracking_error_un = f64::INFINITY;
    })?;
    let load_un = &run.data.load_un;
    let max_load_un = load_un.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(s.status, RunStatus::Complete, "{} (max load {max_load_un:.0} µN)", s.end_reason);
    // 2000 µN peak; a wound-up integrator drives the frame to its 1.05 × 3000 µN trip.
    assert!(max_load_un < 2400.0, "max load {max_load_un:.0} µN");
    assert!(load_un.last().is_some_and(|l| l.abs() < 50.0), "ends unloaded: {:?}", load_un.last());
    // The loop saw the backlog for what it was: ≈ 2000 samples at ≤ 120 a tick.
    let stale = run.diagnostics.as_ref().map_or(0, |d| d.stale_feedback_ticks);
    assert!(stale >= 10, "{stale} ticks on stale feedback");
    Ok(())
}

#[test]
fn a_host_stall_that_trips_the_command_gap_interlock_unloads_on_a_ramp_without_overshoot() -> anyhow::Result<()> {
    // The same stall with the command-gap interlock on: it trips on the stall and the safe
    // unload ramps down while the backlog of the stall is still arriving. The unload must not
    // push the pillar above the load it had when the stall began (1000 µN, half-way up). The
    // limit is 500 ms, not the default 20 ms, so that the machine's other work does not trip it
    // before the stall (the loop runs on this shared host, not on a lab PC); the late-tick and
    // tracking interlocks are off for the same reason.
    let (s, run) = run_with_a_two_second_stall(|c| {
        c.raw.limits = c.raw.limits.clone().without_timing_interlocks();
        c.raw.limits.max_command_gap_ms = 500.0;
        c.raw.limits.max_tracking_error_un = f64::INFINITY;
    })?;
    let load_un = &run.data.load_un;
    let max_load_un = load_un.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(s.status, RunStatus::Aborted, "{}", s.end_reason);
    assert!(s.end_reason.contains("limits.max_command_gap_ms"), "{} (max load {max_load_un:.0} µN)", s.end_reason);
    // It did reach the ramp's middle before the stall (else the trip came from elsewhere).
    assert!(max_load_un > 800.0, "max load {max_load_un:.0} µN");
    assert!(max_load_un < 1400.0, "max load {max_load_un:.0} µN");
    // A ramp at control.safe_unload_rate_un_per_s (2000 µN/s: 0.4 s from 900 to 100 µN), not a
    // step: measured from the trip, the 2 s the stall skipped would have used the ramp up.
    let on_the_ramp = run
        .data
        .segment
        .iter()
        .zip(load_un)
        .filter(|&(&seg, &l)| seg == Segment::SafeUnload.code() && (100.0..900.0).contains(&l))
        .count();
    assert!(on_the_ramp >= 300, "{on_the_ramp} safe-unload samples between 100 and 900 µN");
    assert!(load_un.last().is_some_and(|l| l.abs() < 50.0), "ends unloaded: {:?}", load_un.last());
    Ok(())
}

#[test]
fn a_host_stall_over_the_end_of_the_program_still_ends_it_on_its_final_setpoint() -> anyhow::Result<()> {
    // The frame blocks 1 s at the first unloading command at or below 400 µN (≈ 0.2 s before the
    // program ends): when the loop is back, the program's time is over. It must not stop on the
    // stale 400 µN command (a host hiccup at the end of a run once left files ending at 71–850
    // µN, under load): the catch-up stops at the program's last tick, which commands its final
    // setpoint, and a short rest at zero lets the file show the frame reach it. Timing
    // interlocks off: the stall itself must not end the run.
    let (s, run) = run_with_a_stall(
        |c| c.segment == Segment::Unload && c.command_un <= 400.0,
        Duration::from_secs(1),
        |c| {
            c.raw.limits = c.raw.limits.clone().without_timing_interlocks();
            c.raw.limits.max_tracking_error_un = f64::INFINITY;
        },
    )?;
    assert_eq!(s.status, RunStatus::Complete, "{}", s.end_reason);
    let load_un = &run.data.load_un;
    assert!(load_un.last().is_some_and(|l| l.abs() < 50.0), "ends unloaded: {:?}", load_un.last());
    let first = run.data.seq[0];
    assert!(
        run.data.seq.iter().enumerate().all(|(i, &q)| q == first + i as u64),
        "every sample of the frame's FIFO is in the file, in order"
    );
    Ok(())
}
