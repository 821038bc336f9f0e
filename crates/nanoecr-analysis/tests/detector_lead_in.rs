//! The measurement model against the streaming detector at 10 kHz, spike by spike: of the
//! simulated spikes just under the threshold (3–5 σ), the share the detector reports above the
//! model's floor is what the model's survival predicts only with the lead-in (the samples before
//! the event opens, learned by the baseline); the plain max-of-m kernel over-counts it by ≈ 0.08.

use nanoecr_analysis::measured::MeasurementModel;
use nanoecr_analysis::run::{detector_measurement_model, noise_sigma_of};
use nanoecr_core::config::{DetectionConfig, SimulationConfig};
use nanoecr_core::{Event, EventKind, LoadFunction, Pillar, Segment};
use nanoecr_detect::Detector;
use nanoecr_sim::World;

const PILLAR: Pillar = Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };
const RATE_HZ: f64 = 10_000.0;
const SETTLE_S: f64 = 2.0;

/// One run: detected spikes, true spikes and the noise σ of its Δρ/ρ.
fn run(seed: u64, det: &DetectionConfig) -> (Vec<Event>, Vec<Event>, f64) {
    // A hold below the pop-in stress, with more spikes than the default for statistics.
    let sim = SimulationConfig {
        seed,
        spike_rate_load_per_s: 40.0,
        spike_rate_hold_per_s: 40.0,
        spike_rate_unload_per_s: 40.0,
        popin_rate_per_s: 0.0,
        ..Default::default()
    };
    let lf = LoadFunction::from_targets(
        SETTLE_S,
        0.0,
        &[(Segment::Load, 1.0, 3000.0), (Segment::Hold, 14.0, 3000.0), (Segment::Unload, 1.0, 0.0)],
    );
    let mut world = World::new(&sim, PILLAR, RATE_HZ);
    let mut detector = Detector::new(det, PILLAR, RATE_HZ, SETTLE_S);
    let mut detected = Vec::new();
    let mut delta_rho = Vec::new();
    for k in 0..(lf.total_s() * RATE_HZ).round() as u64 {
        let (segment, setpoint_un) = lf.setpoint_at(k as f64 / RATE_HZ);
        let ws = world.step(setpoint_un / sim.actuator_gain, segment);
        let sample = ws.to_sample(setpoint_un, segment, 5.0, sim.circuit_resistance_ohm);
        delta_rho.push(detector.process(&sample, &mut |e| detected.push(e)));
    }
    detector.finish(&mut |e| detected.push(e));
    (detected, world.ground_truth().to_vec(), noise_sigma_of(&delta_rho))
}

#[test]
fn detector_reports_near_threshold_spikes_as_the_lead_in_model_predicts() {
    let det = DetectionConfig::default();
    let dt = 1.0 / RATE_HZ;
    // (true x, largest same-sign detected |y| over the spike's samples ± 2, or 0).
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    let mut sigmas = Vec::new();
    for seed in 1..=40 {
        let (detected, truth, sigma) = run(seed, &det);
        sigmas.push(sigma);
        let spikes: Vec<&Event> = truth.iter().filter(|e| e.kind == EventKind::Spike).collect();
        for (i, t) in spikes.iter().enumerate() {
            let end = t.onset_time_s + t.duration_s;
            // Isolated spikes after the detector's warm-up: neighbours would share samples.
            let isolated = spikes.iter().enumerate().all(|(j, o)| {
                j == i || o.onset_time_s > end + 2e-3 || o.onset_time_s + o.duration_s < t.onset_time_s - 2e-3
            });
            if !isolated || t.onset_time_s < SETTLE_S + 0.5 {
                continue;
            }
            let y = detected
                .iter()
                .filter(|d| d.kind == EventKind::Spike && d.magnitude.signum() == t.magnitude.signum())
                .filter(|d| {
                    d.onset_time_s <= end + 2.0 * dt && d.onset_time_s + d.duration_s >= t.onset_time_s - 2.0 * dt
                })
                .map(|d| d.magnitude.abs())
                .fold(0.0, f64::max);
            pairs.push((t.magnitude.abs(), y));
        }
    }
    let sigma = (sigmas.iter().map(|s| s * s).sum::<f64>() / sigmas.len() as f64).sqrt();
    let model = detector_measurement_model(sigma, RATE_HZ, &det, [1e-3, 1.5e-3], 1e-4).expect("model");
    assert!(model.leak > 0.0 && model.start_threshold <= model.y_min);
    let plain = MeasurementModel { leak: 0.0, ..model.clone() };
    let near: Vec<&(f64, f64)> = pairs.iter().filter(|(x, _)| (3.0 * sigma..5.0 * sigma).contains(x)).collect();
    let n = near.len() as f64;
    assert!(n > 2000.0, "only {n} spikes near the threshold");
    let seen = near.iter().filter(|(_, y)| *y >= model.y_min).count() as f64 / n;
    let predicted = near.iter().map(|(x, _)| model.survival(*x)).sum::<f64>() / n;
    let predicted_plain = near.iter().map(|(x, _)| plain.survival(*x)).sum::<f64>() / n;
    let sd = (seen * (1.0 - seen) / n).sqrt();
    eprintln!("n {n}: seen {seen:.4} ± {sd:.4}, lead-in model {predicted:.4}, plain {predicted_plain:.4}");
    assert!((seen - predicted).abs() < 4.0 * sd + 0.01, "seen {seen} vs lead-in model {predicted}");
    assert!(predicted_plain - seen > 0.04, "the plain kernel over-counts: {predicted_plain} vs seen {seen}");
}
