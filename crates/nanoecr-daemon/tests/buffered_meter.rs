//! The control loop with a meter that hands over its readings in batches, as the buffered SCPI
//! meters (Keithley 2450, Keysight B2900) do when polled every few ms, and stamps them with its
//! own clock: the run file must still hold every sample with its current (the loop collects the
//! meter's tail after the last tick), record the pacing and the timestamp alignment, and end with
//! a stream error naming the meter when its readings slip by a trigger pulse.
//!
//! The meter is the simulated one (its physics and sequence) behind a batching wrapper: the
//! buffering and timestamps are what is under test, and no instrument runs in-process.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use nanoecr_core::{RunConfig, RunStatus};
use nanoecr_daemon::run::{start_run, RunOptions};
use nanoecr_hw::fault::FaultyFrame;
use nanoecr_hw::{DeviceInfo, FrameReading, HwError, LoadFrame, Rig, SmuPacing, SmuReading, SourceMeter};

const DEMO: &str = include_str!("../../../config/demo.toml");

fn short_config() -> RunConfig {
    let text = DEMO
        .replace("load_s = 10.0", "load_s = 0.5")
        .replace("hold_s = 10.0", "hold_s = 0.2")
        .replace("unload_s = 10.0", "unload_s = 0.5")
        .replace("settle_s = 2.0", "settle_s = 0.3");
    nanoecr_core::config::parse(&text, None).expect("test config is valid")
}

/// Releases readings every `every` calls (23: the program's 1500 ticks leave 5 readings held at
/// the end, which only the loop's tail collection brings in), stamped `seq · dt + 0.4 ms` (plus one period from
/// `slip_from` on: a missed trigger pulse).
struct BatchedMeter {
    inner: Box<dyn SourceMeter>,
    held: Vec<SmuReading>,
    calls: u64,
    every: u64,
    dt_s: f64,
    slip_from: Option<u64>,
}

impl SourceMeter for BatchedMeter {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        self.inner.identify()
    }
    fn bias_on(&mut self, voltage_v: f64, compliance_a: f64) -> Result<(), HwError> {
        self.inner.bias_on(voltage_v, compliance_a)
    }
    fn acquire(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        let mut buf = [SmuReading::default(); 64];
        let n = self.inner.acquire(&mut buf)?;
        for r in &buf[..n] {
            let slip = self.slip_from.is_some_and(|s| r.seq >= s);
            let t = r.seq as f64 * self.dt_s + 0.4e-3 + if slip { self.dt_s } else { 0.0 };
            self.held.push(SmuReading { time_s: t, ..*r });
        }
        self.calls += 1;
        if self.calls % self.every != 0 {
            return Ok(0);
        }
        let k = self.held.len().min(out.len());
        out[..k].copy_from_slice(&self.held[..k]);
        self.held.drain(..k);
        Ok(k)
    }
    fn bias_off(&mut self) -> Result<(), HwError> {
        self.inner.bias_off()
    }
    fn pacing(&self) -> SmuPacing {
        SmuPacing::ExternalTrigger
    }
    fn device(&self) -> &str {
        "SMU0 (batched test meter)"
    }
}

fn run(slip_from: Option<u64>) -> (nanoecr_core::RunSummary, nanoecr_store::RunFile, u64) {
    run_every(23, slip_from)
}

/// As [`run`], the meter releasing its readings every `every` calls.
fn run_every(every: u64, slip_from: Option<u64>) -> (nanoecr_core::RunSummary, nanoecr_store::RunFile, u64) {
    let cfg = short_config();
    let expected = cfg.expected_samples();
    let sim = nanoecr_hw::sim::rig(&cfg);
    let smu = BatchedMeter { inner: sim.smu, held: Vec::new(), calls: 0, every, dt_s: cfg.dt_s(), slip_from };
    let (summary, file) = run_rig(cfg, Rig { frame: sim.frame, smu: Box::new(smu) });
    (summary, file, expected)
}

/// Run `cfg` on `rig` unpaced (`fast`) into a temporary file; the summary and the file read back.
fn run_rig(cfg: RunConfig, rig: Rig) -> (nanoecr_core::RunSummary, nanoecr_store::RunFile) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.h5");
    let handle = start_run(cfg, rig, RunOptions { file_path: Some(path.clone()), fast: true, ..Default::default() })
        .expect("run starts");
    let summary = handle.join().expect("run ends");
    let file = nanoecr_store::read_run(&path).expect("run file readable");
    (summary, file)
}

#[test]
fn readings_handed_over_in_batches_are_all_merged_up_to_the_last_sample() {
    let (s, f, expected) = run(None);
    assert_eq!(s.status, RunStatus::Complete, "{}", s.end_reason);
    assert_eq!(f.data.len() as u64, expected, "the meter's tail was collected");
    assert!(f.data.seq.windows(2).all(|w| w[1] == w[0] + 1));
    let invalid = f.data.current_a.iter().filter(|c| !c.is_finite()).count();
    assert_eq!(invalid, 0, "every sample has its reading");
    let d = f.diagnostics.expect("diagnostics");
    assert_eq!(d.smu_pacing, "external");
    let worst = d.smu_misalignment_max_us.expect("timestamps compared");
    assert!(worst < 1.0, "constant offset only: {worst} µs");
}

#[test]
fn a_slipped_trigger_ends_the_run_with_a_stream_error_naming_the_meter() {
    let (s, f, expected) = run(Some(500));
    assert_ne!(s.status, RunStatus::Complete);
    let reason = s.end_reason.to_string();
    assert!(reason.contains("SMU0 (batched test meter)") && reason.contains("missed or doubled"), "{reason}");
    // Everything before the slip is in the file, nothing after it.
    let n = f.data.len() as u64;
    assert!(n >= 500 && n < expected, "{n} samples");
    let worst = f.diagnostics.and_then(|d| d.smu_misalignment_max_us).expect("recorded");
    assert!((worst - 1000.0).abs() < 1.0, "one period: {worst} µs");
}

/// A sample waits for its reading up to 23 ticks, but the loop must not act on it late: the load
/// feedback takes the newest frame sample at once (fed 23 samples late, the PI loop rings), and
/// the file pairs each sample with the setpoint of its own tick, not of the tick its reading came.
#[test]
fn a_late_reading_delays_neither_the_load_feedback_nor_the_samples_setpoint() {
    let (s1, prompt, _) = run_every(1, None);
    let (s23, batched, _) = run_every(23, None);
    assert_eq!((s1.status, s23.status), (RunStatus::Complete, RunStatus::Complete));
    // The simulated frame makes sample k at tick k, t = k·dt: its setpoint is the program's there.
    let cfg = short_config();
    let lf = cfg.load_function.clone();
    let mut cursor = lf.cursor();
    for (i, (&t, &sp)) in batched.data.time_s.iter().zip(&batched.data.setpoint_un).enumerate() {
        let (_, want) = cursor.at(&lf, t).expect("inside the program");
        assert!((sp - want).abs() < 1e-6, "sample {i} at {t} s: setpoint {sp} µN, program {want} µN");
    }
    // The same loop dynamics whether readings come at once or 23 ticks late.
    let (a, b) = (prompt.data.load_un.as_slice(), batched.data.load_un.as_slice());
    assert_eq!(a.len(), b.len());
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-6, "load differs by up to {worst} µN with batched readings");
}

/// The device side of a rig whose clock stalls and then catches up, as the rig shim's sample clock
/// does when the shim is starved on a loaded host: samples `stall` are produced only when the
/// stall ends, all at once. The frame's FIFO then delivers the backlog 120 samples per call (the
/// Modbus frame's eight 15-sample blocks), and the meter's buffer holds the readings of the
/// backlog from that moment on too: `produced` counts the samples (and so readings) the device
/// has produced, which the meter may hand over.
fn stalling_frame(inner: Box<dyn LoadFrame>, stall: Range<u64>, produced: Arc<AtomicU64>) -> Box<dyn LoadFrame> {
    let mut fifo: VecDeque<FrameReading> = VecDeque::new();
    FaultyFrame::passing(inner).acquiring_through(move |inner, out| {
        let mut buf = [FrameReading::default(); 8];
        let n = inner.acquire(&mut buf)?;
        fifo.extend(&buf[..n]);
        let Some(newest) = fifo.back().map(|f| f.seq) else { return Ok(0) };
        if stall.contains(&newest) {
            return Ok(0);
        }
        produced.store(newest + 1, Ordering::Relaxed);
        let k = fifo.len().min(out.len()).min(120);
        for (slot, f) in out.iter_mut().zip(fifo.drain(..k)) {
            *slot = f;
        }
        Ok(k)
    })
}

/// A buffered meter polled every 20 calls (its poll interval at 1 kHz) unless asked out of turn,
/// handing over the readings the device has produced, up to 256 per fetch; with `closed_after`,
/// its link is closed by the instrument once the device has produced that many samples.
struct PolledMeter {
    inner: Box<dyn SourceMeter>,
    held: VecDeque<SmuReading>,
    produced: Arc<AtomicU64>,
    calls: u64,
    closed_after: Option<u64>,
}

impl PolledMeter {
    fn poll(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        let produced = self.produced.load(Ordering::Relaxed);
        if self.closed_after.is_some_and(|c| produced > c) {
            return Err(HwError::Transport {
                device: self.device().to_string(),
                operation: "buffer index".into(),
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "connection closed by the instrument",
                ),
            });
        }
        let ready = self.held.iter().take_while(|r| r.seq < produced).count();
        let k = ready.min(out.len()).min(256);
        for (slot, r) in out.iter_mut().zip(self.held.drain(..k)) {
            *slot = r;
        }
        Ok(k)
    }

    fn pull(&mut self) -> Result<(), HwError> {
        let mut buf = [SmuReading::default(); 64];
        loop {
            let n = self.inner.acquire(&mut buf)?;
            self.held.extend(&buf[..n]);
            if n < buf.len() {
                return Ok(());
            }
        }
    }
}

impl SourceMeter for PolledMeter {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        self.inner.identify()
    }
    fn bias_on(&mut self, voltage_v: f64, compliance_a: f64) -> Result<(), HwError> {
        self.inner.bias_on(voltage_v, compliance_a)
    }
    fn acquire(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        self.pull()?;
        self.calls += 1;
        if self.calls % 20 != 0 {
            return Ok(0);
        }
        self.poll(out)
    }
    fn acquire_now(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        self.pull()?;
        self.poll(out)
    }
    fn bias_off(&mut self) -> Result<(), HwError> {
        self.inner.bias_off()
    }
    fn pacing(&self) -> SmuPacing {
        SmuPacing::ExternalTrigger
    }
    fn device(&self) -> &str {
        "SMU0 (polled test meter)"
    }
}

/// The device's clock stalls over samples 40–439 and catches up at tick 440, just after the
/// meter's poll at tick 439: the frame delivers 120 backlog samples per tick, so 256 wait after
/// three ticks, seventeen ticks before the meter's next poll.
fn run_with_a_device_stall(closed_after: Option<u64>) -> (nanoecr_core::RunSummary, nanoecr_store::RunFile, u64) {
    let mut cfg = short_config();
    // A data test: the simulated frame is tick-clocked, so a sample this wrapper delivers 400
    // ticks late is paired with the setpoint of the tick that delivered it, and the PI acts on a
    // load 400 ticks old; neither the tracking interlock nor the integral has anything to judge.
    cfg.raw.limits.max_tracking_error_un = f64::INFINITY;
    cfg.raw.control.ki_per_s = 0.0;
    let expected = cfg.expected_samples();
    let sim = nanoecr_hw::sim::rig(&cfg);
    let produced = Arc::new(AtomicU64::new(0));
    let frame = stalling_frame(sim.frame, 40..440, produced.clone());
    let smu = PolledMeter { inner: sim.smu, held: VecDeque::new(), produced, calls: 0, closed_after };
    let (summary, file) = run_rig(cfg, Rig { frame, smu: Box::new(smu) });
    (summary, file, expected)
}

/// A burst of frame samples that outruns the meter's poll interval is not a late meter: the loop
/// asks the meter before giving up a sample, and the meter has the readings. Before it did, the
/// 256-sample merge window filled three ticks into the burst and the run ended with "no reading
/// for frame sample 40 (the meter fell 256 samples behind …)": the HIL suite's flake under load.
#[test]
fn a_burst_of_frame_samples_between_two_polls_of_a_healthy_meter_loses_no_current() {
    let (s, f, expected) = run_with_a_device_stall(None);
    assert_eq!(s.status, RunStatus::Complete, "{}", s.end_reason);
    assert_eq!(f.data.len() as u64, expected);
    assert!(f.data.seq.windows(2).all(|w| w[1] == w[0] + 1));
    let invalid = f.data.current_a.iter().filter(|c| !c.is_finite()).count();
    assert_eq!(invalid, 0, "every sample has its reading");
    // Sample 40 waited for its reading until sample 399 was in hand (the third tick of the burst).
    let d = f.diagnostics.expect("diagnostics");
    assert_eq!(d.smu_lag_max_ms.round(), 359.0, "{}", d.smu_lag_max_ms);
}

/// The same burst with the meter's link closed meanwhile (a LAN drop): the run names the closed
/// connection, not the readings it could not get (what `lan_drop_mid_run_fails_the_run_naming_the_meter`
/// saw under load before).
#[test]
fn a_link_closed_during_a_burst_is_what_ends_the_run() {
    let (s, f, _) = run_with_a_device_stall(Some(100));
    assert_eq!(s.status, RunStatus::Failed, "{}", s.end_reason);
    let reason = s.end_reason.to_string();
    assert!(reason.contains("SMU0 (polled test meter)") && reason.contains("closed by the instrument"), "{reason}");
    assert!(f.data.len() >= 40, "the samples before the stall are kept: {}", f.data.len());
}

/// A meter that stores each reading `lag` frame samples after its frame sample (a meter behind
/// its triggers by a constant time), polled every 20 calls (its poll interval at 1 kHz) unless
/// asked out of turn. `asked` counts the out-of-turn asks: on the 2450 and the B2900 each is one
/// or two round trips (the buffer's fill index, then the data when there is any), on top of the
/// two per poll. The readings of the program's last `lag` samples come once the frame has
/// delivered its last sample (the triggers stop and the meter catches up).
struct LaggingMeter {
    inner: Box<dyn SourceMeter>,
    held: VecDeque<SmuReading>,
    /// Newest frame sample delivered + 1 (0: none yet).
    frame_seen: Arc<AtomicU64>,
    lag: u64,
    last_seq: u64,
    calls: u64,
    asked: Arc<AtomicU64>,
}

impl LaggingMeter {
    fn fetch(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        let mut buf = [SmuReading::default(); 64];
        loop {
            let n = self.inner.acquire(&mut buf)?;
            self.held.extend(&buf[..n]);
            if n < buf.len() {
                break;
            }
        }
        let seen = self.frame_seen.load(Ordering::Relaxed);
        let stored = |r: &SmuReading| seen > self.last_seq || r.seq + self.lag < seen;
        let ready = self.held.iter().take_while(|r| stored(r)).count();
        let k = ready.min(out.len());
        for (slot, r) in out.iter_mut().zip(self.held.drain(..k)) {
            *slot = r;
        }
        Ok(k)
    }
}

impl SourceMeter for LaggingMeter {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        self.inner.identify()
    }
    fn bias_on(&mut self, voltage_v: f64, compliance_a: f64) -> Result<(), HwError> {
        self.inner.bias_on(voltage_v, compliance_a)
    }
    fn acquire(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        self.calls += 1;
        if self.calls % 20 != 0 {
            return Ok(0);
        }
        self.fetch(out)
    }
    fn acquire_now(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        self.fetch(out)
    }
    fn bias_off(&mut self) -> Result<(), HwError> {
        self.inner.bias_off()
    }
    fn pacing(&self) -> SmuPacing {
        SmuPacing::ExternalTrigger
    }
    fn device(&self) -> &str {
        "SMU0 (lagging test meter)"
    }
}

/// The short program with a meter `lag` samples behind the frame from the first sample on, at the
/// default `limits.max_meter_lag_ms` (250 ms = 250 samples at 1 kHz); returns the out-of-turn
/// asks too.
fn run_lagging(lag: u64) -> (nanoecr_core::RunSummary, nanoecr_store::RunFile, u64, u64) {
    let cfg = short_config();
    assert_eq!(cfg.raw.limits.max_meter_lag_ms, 250.0);
    assert_eq!(cfg.dt_s(), 1e-3);
    let expected = cfg.expected_samples();
    let sim = nanoecr_hw::sim::rig(&cfg);
    let frame_seen = Arc::new(AtomicU64::new(0));
    let seen = frame_seen.clone();
    let frame = FaultyFrame::passing(sim.frame).acquiring_through(move |inner, out| {
        let n = inner.acquire(out)?;
        if let Some(f) = out[..n].last() {
            seen.store(f.seq + 1, Ordering::Relaxed);
        }
        Ok(n)
    });
    let asked = Arc::new(AtomicU64::new(0));
    let smu = LaggingMeter {
        inner: sim.smu,
        held: VecDeque::new(),
        frame_seen,
        lag,
        last_seq: expected - 1,
        calls: 0,
        asked: asked.clone(),
    };
    let (summary, file) = run_rig(cfg, Rig { frame, smu: Box::new(smu) });
    (summary, file, expected, asked.load(Ordering::Relaxed))
}

/// A meter right at the bound: each reading is stored just as its frame sample reaches
/// `max_meter_lag_ms`. The loop used to ask it out of turn at every tick between its polls (1 183
/// asks in 1 500 ticks, up to two round trips each: more than the polls' own traffic ten times
/// over); now at most once per eighth of the bound (31 samples), and a sample waits up to that
/// much longer for the ask rather than being given up. Every sample still has its current.
#[test]
fn a_meter_lagging_right_at_the_bound_is_not_asked_out_of_turn_every_tick() {
    let (s, f, expected, asked) = run_lagging(250);
    assert_eq!(s.status, RunStatus::Complete, "{}", s.end_reason);
    assert_eq!(f.data.len() as u64, expected);
    let invalid = f.data.current_a.iter().filter(|c| !c.is_finite()).count();
    assert_eq!(invalid, 0, "every sample has its reading");
    // Fewer out-of-turn asks than the meter's own polls (one per 20 samples).
    assert!(asked <= expected / 20, "{asked} out-of-turn asks in {expected} samples");
    let d = f.diagnostics.expect("diagnostics");
    eprintln!("{asked} out-of-turn asks in {expected} samples; longest wait {} ms", d.smu_lag_max_ms);
    assert!(d.smu_lag_max_ms >= 250.0 && d.smu_lag_max_ms < 250.0 + 31.0, "{}", d.smu_lag_max_ms);
}

/// Past the bound and the wait for the rate-limited ask: the run still ends naming the meter and
/// the bound.
#[test]
fn a_meter_lagging_past_the_bound_and_the_ask_interval_still_fails_the_run() {
    let (s, _, _, _) = run_lagging(250 + 31);
    assert_eq!(s.status, RunStatus::Failed, "{}", s.end_reason);
    let reason = s.end_reason.to_string();
    assert!(
        reason.contains("SMU0 (lagging test meter)")
            && reason.contains("no reading for frame sample")
            && reason.contains("limits.max_meter_lag_ms = 250 ms"),
        "{reason}"
    );
}
