//! The control loop with a meter that hands over its readings in batches, as the buffered SCPI
//! meters (Keithley 2450, Keysight B2900) do when polled every few ms, and stamps them with its
//! own clock: the run file must still hold every sample with its current (the loop collects the
//! meter's tail after the last tick), record the pacing and the timestamp alignment, and end with
//! a stream error naming the meter when its readings slip by a trigger pulse.
//!
//! The meter is the simulated one (its physics and sequence) behind a batching wrapper: the
//! buffering and timestamps are what is under test, and no instrument runs in-process.

use nanoecr_core::{RunConfig, RunStatus};
use nanoecr_daemon::run::{start_run, RunOptions};
use nanoecr_hw::{DeviceInfo, HwError, Rig, SmuPacing, SmuReading, SourceMeter};

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
    let rig = Rig { frame: sim.frame, smu: Box::new(smu) };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("run.h5");
    let handle = start_run(cfg, rig, RunOptions { file_path: Some(path.clone()), fast: true, ..Default::default() })
        .expect("run starts");
    let summary = handle.join().expect("run ends");
    let file = nanoecr_store::read_run(&path).expect("run file readable");
    (summary, file, expected)
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
