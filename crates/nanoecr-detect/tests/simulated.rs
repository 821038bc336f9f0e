//! The detector against the simulator's ground truth: open-loop trapezoids (2 s settle, 10 s load,
//! 10 s hold, 10 s unload), detection in stream, events matched to truth by onset.

use nanoecr_core::config::{DetectionConfig, SimulationConfig};
use nanoecr_core::{Event, EventKind, LoadFunction, Pillar, Segment};
use nanoecr_detect::Detector;
use nanoecr_sim::World;

const PILLAR: Pillar = Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };
const VOLTAGE_V: f64 = 5.0;
const SETTLE_S: f64 = 2.0;
/// Magnitudes scored: the paper's floor is 5 × 10⁻⁴ at 5σ; 7 × 10⁻⁴ clears it by 2σ.
const SCORED_MAGNITUDE: f64 = 7e-4;
/// Onset match tolerance, samples.
const MATCH_SAMPLES: f64 = 2.0;

struct Run {
    detected: Vec<Event>,
    truth: Vec<Event>,
}

fn simulate(seed: u64, peak_un: f64, rate_hz: f64) -> Run {
    let sim = SimulationConfig { seed, ..Default::default() };
    let lf = LoadFunction::from_targets(
        SETTLE_S,
        0.0,
        &[(Segment::Load, 10.0, peak_un), (Segment::Hold, 10.0, peak_un), (Segment::Unload, 10.0, 0.0)],
    );
    let mut world = World::new(&sim, PILLAR, rate_hz);
    let mut det = Detector::new(&DetectionConfig::default(), PILLAR, rate_hz, SETTLE_S);
    let n = (lf.total_s() * rate_hz).round() as u64;
    let mut detected = Vec::new();
    for k in 0..n {
        let (segment, setpoint_un) = lf.setpoint_at(k as f64 / rate_hz);
        let ws = world.step(setpoint_un / sim.actuator_gain, segment);
        let s = ws.to_sample(setpoint_un, segment, VOLTAGE_V, sim.circuit_resistance_ohm);
        det.process(&s, &mut |e| detected.push(e));
    }
    det.finish(&mut |e| detected.push(e));
    let r = det.reference().expect("reference set");
    assert!(r.time_s >= SETTLE_S.max(world.contact_time_s()) && r.time_s < world.contact_time_s().max(SETTLE_S) + 0.05);
    Run { detected, truth: world.ground_truth().to_vec() }
}

/// Greedy one-to-one matching by nearest onset within the tolerance: (truth index, detected index).
fn matches(truth: &[&Event], detected: &[&Event], rate_hz: f64) -> Vec<(usize, usize)> {
    let mut used = vec![false; detected.len()];
    let mut out = Vec::new();
    for (ti, t) in truth.iter().enumerate() {
        let mut best: Option<(f64, usize)> = None;
        for (di, d) in detected.iter().enumerate() {
            let err = (d.onset_time_s - t.onset_time_s).abs() * rate_hz;
            if !used[di] && err <= MATCH_SAMPLES && best.is_none_or(|b| err < b.0) {
                best = Some((err, di));
            }
        }
        if let Some((_, di)) = best {
            used[di] = true;
            out.push((ti, di));
        }
    }
    out
}

#[derive(Debug, Default)]
struct Score {
    truth_scored: usize,
    truth_found: usize,
    detected_scored: usize,
    detected_true: usize,
    sign_ok: usize,
    sign_total: usize,
    onset_errors_samples: Vec<f64>,
}

impl Score {
    fn add(&mut self, run: &Run, rate_hz: f64) {
        let truth: Vec<&Event> = run.truth.iter().filter(|e| e.kind == EventKind::Spike).collect();
        let det: Vec<&Event> = run.detected.iter().filter(|e| e.kind == EventKind::Spike).collect();
        let pairs = matches(&truth, &det, rate_hz);
        let mut truth_hit = vec![false; truth.len()];
        let mut det_hit = vec![false; det.len()];
        for &(ti, di) in &pairs {
            truth_hit[ti] = true;
            det_hit[di] = true;
            if truth[ti].magnitude.abs() >= SCORED_MAGNITUDE {
                self.sign_total += 1;
                self.sign_ok += usize::from(truth[ti].sign == det[di].sign);
                self.onset_errors_samples.push((det[di].onset_time_s - truth[ti].onset_time_s).abs() * rate_hz);
            }
        }
        for (t, hit) in truth.iter().zip(&truth_hit) {
            if t.magnitude.abs() >= SCORED_MAGNITUDE {
                self.truth_scored += 1;
                self.truth_found += usize::from(*hit);
            }
        }
        for (d, hit) in det.iter().zip(&det_hit) {
            if d.magnitude.abs() >= SCORED_MAGNITUDE {
                self.detected_scored += 1;
                self.detected_true += usize::from(*hit);
            }
        }
    }

    fn recall(&self) -> f64 {
        self.truth_found as f64 / self.truth_scored as f64
    }
    fn precision(&self) -> f64 {
        self.detected_true as f64 / self.detected_scored as f64
    }
    fn sign_accuracy(&self) -> f64 {
        self.sign_ok as f64 / self.sign_total as f64
    }
    fn median_onset_error(&mut self) -> f64 {
        self.onset_errors_samples.sort_by(f64::total_cmp);
        self.onset_errors_samples[self.onset_errors_samples.len() / 2]
    }

    fn check(mut self, label: &str) {
        let median = self.median_onset_error();
        println!(
            "{label}: recall {:.4} ({}/{}), precision {:.4} ({}/{}), sign {:.4}, median onset error {median:.2} samples",
            self.recall(),
            self.truth_found,
            self.truth_scored,
            self.precision(),
            self.detected_true,
            self.detected_scored,
            self.sign_accuracy()
        );
        assert!(self.truth_scored >= 100, "too few scored spikes to mean anything: {}", self.truth_scored);
        assert!(self.recall() >= 0.97, "{label} recall {:.4}", self.recall());
        assert!(self.precision() >= 0.98, "{label} precision {:.4}", self.precision());
        assert!(self.sign_accuracy() >= 0.995, "{label} sign accuracy {:.4}", self.sign_accuracy());
        assert!(median <= 1.0, "{label} median onset error {median} samples");
    }
}

#[test]
fn simulated_spikes_at_1_khz_meet_recall_precision_sign_and_onset_targets() {
    let mut score = Score::default();
    // 16 seeds (≈ 580 scored spikes): with 8 (290) the recall's standard error, 1 %, spanned the
    // 0.97 target around the measured 0.972, and a change of the noise estimate that left the
    // recall of 1 102 spikes over 32 seeds at 99.4 % vs 99.5 % moved it across by one spike.
    for seed in 1..=16 {
        score.add(&simulate(seed, 6000.0, 1000.0), 1000.0);
    }
    score.check("1 kHz, 6000 µN, seeds 1-16");
}

#[test]
fn simulated_spikes_at_10_khz_meet_the_same_targets() {
    let mut score = Score::default();
    for seed in 11..=13 {
        score.add(&simulate(seed, 6000.0, 10_000.0), 10_000.0);
    }
    score.check("10 kHz, 6000 µN, seeds 11-13");
}

#[test]
fn simulated_popins_at_7000_un_are_found_sized_and_linked_and_spikes_stay_clean() {
    let rate_hz = 1000.0;
    let mut spikes = Score::default();
    let (mut truth_n, mut found, mut detected_n, mut true_det) = (0, 0, 0, 0);
    for seed in 21..=25 {
        let run = simulate(seed, 7000.0, rate_hz);
        let truth: Vec<&Event> = run.truth.iter().filter(|e| e.kind == EventKind::Popin).collect();
        let det: Vec<&Event> = run.detected.iter().filter(|e| e.kind == EventKind::Popin).collect();
        let pairs = matches(&truth, &det, rate_hz);
        truth_n += truth.len();
        detected_n += det.len();
        found += pairs.len();
        true_det += pairs.len();
        for &(ti, di) in &pairs {
            let (t, d) = (truth[ti], det[di]);
            // Overlapping bursts (the second starts while the windows still see the first) are
            // measured as one: a known limit, so only isolated pop-ins are sized here.
            let crowded = truth.iter().any(|o| !std::ptr::eq(*o, t) && (o.onset_time_s - t.onset_time_s).abs() < 0.015);
            if crowded {
                continue;
            }
            assert!((d.magnitude - t.magnitude).abs() < 1.0, "jump {} vs true {}", d.magnitude, t.magnitude);
            // The linked peak carries the noise maximum and the strain step the pop-in leaves.
            let rel = d.linked_delta_rho / t.linked_delta_rho;
            assert!(rel > 0.8 && rel < 1.6, "linked {} vs true {}", d.linked_delta_rho, t.linked_delta_rho);
            assert_eq!(d.sign, t.sign);
        }
        spikes.add(&run, rate_hz);
    }
    println!("pop-ins: {found}/{truth_n} found, {true_det}/{detected_n} detected are true");
    assert!(truth_n >= 10, "too few pop-ins to score: {truth_n}");
    assert!(found as f64 >= 0.95 * truth_n as f64, "pop-in recall {found}/{truth_n}");
    assert!(true_det as f64 >= 0.95 * detected_n as f64, "pop-in precision {true_det}/{detected_n}");
    // Linked spikes are folded into their pop-ins, so they do not spoil spike precision.
    spikes.check("1 kHz, 7000 µN (pop-ins), seeds 21-25");
}
