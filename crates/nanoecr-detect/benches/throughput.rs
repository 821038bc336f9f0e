//! Offline throughput of `Detector::process` on one core: simulated samples are generated up front
//! (not timed), then pushed one by one through the detector, the call the consumer thread makes.
//!
//! ```text
//! cargo bench -p nanoecr-detect --bench throughput
//! ```

use std::hint::black_box;
use std::time::Instant;

use nanoecr_core::config::{DetectionConfig, SimulationConfig};
use nanoecr_core::{LoadFunction, Pillar, Sample, Segment};
use nanoecr_detect::Detector;
use nanoecr_sim::World;

const PILLAR: Pillar = Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };
/// The detector's target, samples/s.
const TARGET_PER_S: f64 = 50e6;

fn samples(rate_hz: f64) -> Vec<Sample> {
    let sim = SimulationConfig { seed: 5, mains_amplitude: 1e-4, ..Default::default() };
    let lf = LoadFunction::from_targets(
        2.0,
        0.0,
        &[(Segment::Load, 10.0, 7000.0), (Segment::Hold, 10.0, 7000.0), (Segment::Unload, 10.0, 0.0)],
    );
    let mut world = World::new(&sim, PILLAR, rate_hz);
    let n = (lf.total_s() * rate_hz).round() as u64;
    (0..n)
        .map(|k| {
            let (segment, setpoint_un) = lf.setpoint_at(k as f64 / rate_hz);
            let ws = world.step(setpoint_un / sim.actuator_gain, segment);
            ws.to_sample(setpoint_un, segment, 5.0, sim.circuit_resistance_ohm)
        })
        .collect()
}

fn main() {
    let cfg = DetectionConfig::default();
    for rate_hz in [1_000.0, 100_000.0] {
        let data = samples(rate_hz);
        let mut best = 0.0f64;
        let mut events = 0usize;
        for _ in 0..5 {
            let mut det = Detector::new(&cfg, PILLAR, rate_hz, 2.0);
            let mut n_events = 0usize;
            let t0 = Instant::now();
            let mut acc = 0.0;
            for s in &data {
                let d = det.process(black_box(s), &mut |e| n_events += black_box(e).segment as usize + 1);
                acc += if d.is_finite() { d } else { 0.0 };
            }
            det.finish(&mut |_| n_events += 1);
            let per_s = data.len() as f64 / t0.elapsed().as_secs_f64();
            black_box(acc);
            best = best.max(per_s);
            events = n_events;
        }
        println!(
            "detector @ {:>6.0} Hz: {:>7.1} M samples/s (best of 5, {} samples, {} event callbacks){}",
            rate_hz,
            best / 1e6,
            data.len(),
            events,
            if best >= TARGET_PER_S { "" } else { "  below the 50 M samples/s target" }
        );
    }
}
