//! The simulated run that the throughput bench and the `chunk_speed` example time the detector
//! on, built in one place so that both measure the same data.

use nanoecr_core::config::SimulationConfig;
use nanoecr_core::{LoadFunction, Pillar, Sample, Segment};
use nanoecr_sim::World;

/// The paper's pillar (2 µm × 5 µm Zr-based glass).
pub const PILLAR: Pillar =
    Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };

/// A seeded simulated run with mains pickup: 2 s settle, then load to `peak_un`, hold and unload,
/// `segment_s` each, at `rate_hz`, 5 V bias.
pub fn trapezoid_run(rate_hz: f64, segment_s: f64, peak_un: f64) -> Vec<Sample> {
    let sim = SimulationConfig { seed: 5, mains_amplitude: 1e-4, ..Default::default() };
    let lf = LoadFunction::from_targets(
        2.0,
        0.0,
        &[(Segment::Load, segment_s, peak_un), (Segment::Hold, segment_s, peak_un), (Segment::Unload, segment_s, 0.0)],
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
