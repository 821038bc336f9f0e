//! Detector throughput on one core, offline: simulated samples generated up front (not timed),
//! then through `Detector::process_slice` in consumer-sized chunks (what the daemon's consumer
//! does), `Detector::process` one by one, and `detect_columns` over the same data as stored
//! columns (what `analyze --redetect` does).

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result};
use nanoecr_core::{RunConfig, Sample};
use nanoecr_detect::Detector;
use nanoecr_sim::World;

use crate::configs;
use crate::report::Row;

/// The detector's target, samples/s.
pub const TARGET_SAMPLES_PER_S: f64 = 50e6;

/// `n` samples of a simulated test at the config's rate, exactly as the control loop would
/// build them from the rig (current = current_factor · V / R), repeating the program if needed.
pub fn simulate(cfg: &RunConfig, n: usize) -> Result<Vec<Sample>> {
    let rate_hz = cfg.rate_hz();
    let dt_s = cfg.dt_s();
    let mut world = World::new(&cfg.raw.simulation, cfg.pillar, rate_hz);
    let lf = &cfg.load_function;
    let mut cursor = lf.cursor();
    let v = cfg.raw.bias.voltage_v;
    let r = cfg.raw.simulation.circuit_resistance_ohm;
    let gain = cfg.raw.simulation.actuator_gain;
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let t_s = k as f64 * dt_s;
        let (segment, setpoint_un) = cursor.at(lf, t_s).context("program shorter than the samples asked for")?;
        // Open loop, as the detector tests drive the world: command = setpoint / actuator gain.
        let w = world.step(setpoint_un / gain, segment);
        out.push(w.to_sample(setpoint_un, segment, v, r));
    }
    Ok(out)
}

/// Samples per `process_slice` call: the most the daemon's consumer takes from the ring at once.
const CHUNK: usize = 4096;

/// One timed pass: samples/s and the number of events found (so the work cannot be optimised
/// away and a broken detector shows). `sliced`: `process_slice` over consumer-sized chunks (what
/// the daemon does); otherwise `process` sample by sample.
fn pass(cfg: &RunConfig, samples: &[Sample], sliced: bool) -> (f64, u64, u64) {
    let mut det = Detector::new(&cfg.raw.detection, cfg.pillar, cfg.rate_hz(), cfg.raw.acquisition.settle_s);
    let mut events = 0u64;
    let mut sum = 0.0_f64;
    let mut rho = Vec::with_capacity(CHUNK);
    let t0 = Instant::now();
    {
        let mut emit = |_e: nanoecr_core::Event| events += 1;
        if sliced {
            for chunk in samples.chunks(CHUNK) {
                rho.clear();
                det.process_slice(black_box(chunk), &mut rho, &mut emit);
                sum += rho.iter().filter(|d| d.is_finite()).sum::<f64>();
            }
        } else {
            for s in samples {
                let d = det.process(black_box(s), &mut emit);
                if d.is_finite() {
                    sum += d;
                }
            }
        }
        det.finish(&mut emit);
    }
    let dt = t0.elapsed().as_secs_f64();
    black_box(sum);
    (samples.len() as f64 / dt, events, det.quiet_samples())
}

/// One timed pass of the offline entry point, [`nanoecr_detect::detect_columns`], over stored
/// columns (what `nanoecr analyze --redetect` runs): samples/s and events. The columns are built
/// before the clock starts, as a file reader would have them; reading them (and building a
/// `Sample` for each sample the general path takes) is part of the timed work.
fn pass_columns(cfg: &RunConfig, cols: &ColumnData) -> (f64, u64) {
    let columns = nanoecr_detect::Columns {
        time_s: &cols.time_s,
        disp_nm: &cols.disp_nm,
        current_a: &cols.current_a,
        load_un: &cols.load_un,
        segment: &cols.segment,
    };
    let t0 = Instant::now();
    let (rho, events) = nanoecr_detect::detect_columns(
        &cfg.raw.detection,
        cfg.pillar,
        cfg.rate_hz(),
        cfg.raw.acquisition.settle_s,
        black_box(columns),
    );
    let dt = t0.elapsed().as_secs_f64();
    black_box(&rho);
    (cols.time_s.len() as f64 / dt, events.len() as u64)
}

/// A run's samples as the stored columns [`pass_columns`] reads.
struct ColumnData {
    time_s: Vec<f64>,
    disp_nm: Vec<f64>,
    current_a: Vec<f64>,
    load_un: Vec<f64>,
    segment: Vec<u8>,
}

impl ColumnData {
    fn of(samples: &[Sample]) -> Self {
        Self {
            time_s: samples.iter().map(|s| s.time_s).collect(),
            disp_nm: samples.iter().map(|s| s.disp_nm).collect(),
            current_a: samples.iter().map(|s| s.current_a).collect(),
            load_un: samples.iter().map(|s| s.load_un).collect(),
            segment: samples.iter().map(|s| s.segment.code()).collect(),
        }
    }
}

/// The detector section: one row per rate (1 kHz, the paper's; 100 kHz, where it matters).
pub fn section(size: crate::Size, tmp: &std::path::Path) -> Result<(Vec<Row>, serde_json::Value)> {
    use crate::Size;
    let base = configs::demo_text()?;
    // (reps, seconds at 1 kHz, seconds at 100 kHz)
    let (reps, s_1k, s_100k) = match size {
        Size::Full => (7, 1800.0, 30.0),
        Size::Quick => (3, 600.0, 10.0),
        Size::Smoke => (1, 10.0, 0.1),
    };
    let mut rows = Vec::new();
    let mut details = serde_json::Map::new();
    for (rate_hz, seconds) in [(1_000.0, s_1k), (100_000.0, s_100k)] {
        // A program at least as long as the samples: segments of a third each after settle.
        let text = configs::derive(&base, &configs::program(rate_hz, 2.0, (seconds / 3.0_f64).ceil()))?;
        let path = configs::write(tmp, &format!("detector_{rate_hz}.toml"), &text)?;
        let cfg = configs::load(&path)?;
        let n = (seconds * rate_hz) as usize;
        let samples = simulate(&cfg, n)?;
        let sliced: Vec<(f64, u64, u64)> = (0..reps).map(|_| pass(&cfg, &samples, true)).collect();
        let single: Vec<(f64, u64, u64)> = (0..reps).map(|_| pass(&cfg, &samples, false)).collect();
        let cols = ColumnData::of(&samples);
        let columns: Vec<(f64, u64)> = (0..reps).map(|_| pass_columns(&cfg, &cols)).collect();
        drop(cols);
        let events = sliced.first().map_or(0, |r| r.1);
        let quiet_pct = sliced.first().map_or(0.0, |r| 100.0 * r.2 as f64 / n.max(1) as f64);
        details.insert(
            format!("{rate_hz}"),
            serde_json::json!({
                "samples": n, "events": events, "process_slice": sliced, "process": single, "detect_columns": columns,
            }),
        );
        rows.push(
            Row::new(
                "detector",
                format!("Detector::process_slice at {} kHz", rate_hz / 1e3),
                "samples/s",
                sliced.iter().map(|r| r.0).collect(),
            )
            .target("≥ 50 M samples/s", |v| v >= TARGET_SAMPLES_PER_S)
            .note(format!(
                "{n} simulated samples ({seconds} s), {events} events, {quiet_pct:.1} % through the block loops (quiet and settle); \
                 {CHUNK}-sample slices as the daemon's consumer reads them; one core, generation not timed"
            )),
        );
        rows.push(
            Row::new(
                "detector",
                format!("Detector::process at {} kHz", rate_hz / 1e3),
                "samples/s",
                single.iter().map(|r| r.0).collect(),
            )
            .note("sample by sample (the general path only), for comparison".to_string()),
        );
        let column_events = columns.first().map_or(0, |r| r.1);
        rows.push(
            Row::new(
                "detector",
                format!("detect_columns at {} kHz", rate_hz / 1e3),
                "samples/s",
                columns.iter().map(|r| r.0).collect(),
            )
            .target("≥ 50 M samples/s", |v| v >= TARGET_SAMPLES_PER_S)
            .note(format!(
                "offline over stored columns (`analyze --redetect`): the quiet loops read the columns in place, \
                 rows are built only for the general path's samples; {column_events} events ({events} from the \
                 samples); columns built untimed"
            )),
        );
    }
    Ok((rows, serde_json::Value::Object(details)))
}
