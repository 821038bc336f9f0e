//! The robustness matrix at reduced size (issue 13): every spike shape × noise family at the
//! paper's 1 kHz, a few short seeded runs per cell, simulated and detected in memory and scored
//! against the ground truth. The full matrix, with 10 and 100 kHz and the Python peer, is the
//! `matrix` example (`just accuracy`, docs/accuracy.md).

use nanoecr_analysis::scoring::{report_from_counts, score_counts, ScoreCounts, ScoreOptions, ScoreReport};
use nanoecr_core::config::DetectionConfig;
use nanoecr_core::{Event, LoadFunction, Pillar, Segment};
use nanoecr_detect::Detector;
use nanoecr_sim::matrix::{cell_config, sampled_truth, shape_name, spike_signal, NoiseFamily, SHAPES};
use nanoecr_sim::World;

const PILLAR: Pillar = Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };
const RATE_HZ: f64 = 1000.0;
const RUNS: u64 = 8;

/// Scores of one cell against the true and against the sampled peaks.
struct CellScore {
    name: String,
    truth: ScoreReport,
    sampled: ScoreReport,
}

fn cell(shape: nanoecr_core::config::SpikeShape, family: NoiseFamily) -> CellScore {
    // The paper's trapezoid, shortened: 2 s settle, 5 s each of load, hold and unload.
    let lf = LoadFunction::from_targets(
        2.0,
        0.0,
        &[(Segment::Load, 5.0, 6000.0), (Segment::Hold, 5.0, 6000.0), (Segment::Unload, 5.0, 0.0)],
    );
    let det = DetectionConfig::default();
    let opts = ScoreOptions::for_rate(RATE_HZ);
    let (mut c_truth, mut c_sampled) = (ScoreCounts::default(), ScoreCounts::default());
    for seed in 1..=RUNS {
        let sim = cell_config(shape, family, seed);
        let mut world = World::new(&sim, PILLAR, RATE_HZ);
        let mut detector = Detector::new(&det, PILLAR, RATE_HZ, 2.0);
        let n = (lf.total_s() * RATE_HZ).round() as u64;
        let mut events: Vec<Event> = Vec::new();
        let mut signal = Vec::with_capacity(n as usize);
        for k in 0..n {
            let (segment, setpoint_un) = lf.setpoint_at(k as f64 / RATE_HZ);
            let ws = world.step(setpoint_un / sim.actuator_gain, segment);
            signal.push(spike_signal(&world, &ws));
            let s = ws.to_sample(setpoint_un, segment, 5.0, sim.circuit_resistance_ohm);
            detector.process(&s, &mut |e| events.push(e));
        }
        detector.finish(&mut |e| events.push(e));
        let truth = world.ground_truth();
        c_truth.merge(&score_counts(&events, truth, &opts));
        c_sampled.merge(&score_counts(&events, &sampled_truth(truth, &signal, RATE_HZ), &opts));
    }
    CellScore {
        name: format!("{} {}", shape_name(shape), family.name()),
        truth: report_from_counts(c_truth, &opts),
        sampled: report_from_counts(c_sampled, &opts),
    }
}

#[test]
fn every_cell_at_1_khz_keeps_its_detection_and_the_pool_meets_the_targets() {
    let pairs: Vec<_> = SHAPES.iter().flat_map(|&s| NoiseFamily::ALL.iter().map(move |&f| (s, f))).collect();
    // Two threads: the cells are independent.
    let (a, b) = pairs.split_at(pairs.len() / 2);
    let cells: Vec<CellScore> = std::thread::scope(|sc| {
        let h = sc.spawn(|| a.iter().map(|&(s, f)| cell(s, f)).collect::<Vec<_>>());
        let rest: Vec<CellScore> = b.iter().map(|&(s, f)| cell(s, f)).collect();
        let mut first = h.join().expect("cell thread");
        first.extend(rest);
        first
    });
    let (mut big, mut big_found, mut det, mut det_ok, mut matched, mut sign_ok) = (0, 0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    for c in &cells {
        let (t, s) = (&c.truth.counts, &c.sampled.counts);
        eprintln!(
            "{}: recall {:.3}, sampled peak ≥ 7e-4 {}/{}, true peak ≥ 7e-4 {}/{}, precision {}/{}, sign {}/{}",
            c.name,
            c.truth.recall,
            s.n_true_big_matched,
            s.n_true_big,
            t.n_true_big_matched,
            t.n_true_big,
            t.n_matched,
            t.n_detected,
            t.n_sign_correct,
            t.n_matched
        );
        // A cell holds ≈ 25–130 spikes with a sampled peak ≥ 7e-4 (fewest for rise_decay, sampled at
        // a random phase of its decay) and 50–220 detections: too few
        // to resolve 0.97 or 0.995 in one cell (at a true recall of 0.975, 3 misses in 45 happen
        // one time in six), enough to catch a detector that no longer sees the cell.
        let missed = s.n_true_big - s.n_true_big_matched;
        if s.n_true_big < 20 {
            failures.push(format!("{}: only {} spikes with a sampled peak ≥ 7e-4", c.name, s.n_true_big));
        }
        // 15 %: the pink, mains and drift cells sit at 0.90–0.97 (1/f noise raises σ,
        // docs/accuracy.md); a blind detector misses most.
        if missed as f64 > 0.15 * s.n_true_big as f64 + 1.0 {
            failures.push(format!("{}: missed {missed} of {} with a sampled peak ≥ 7e-4", c.name, s.n_true_big));
        }
        if t.n_detected < 30 || c.truth.precision < 0.95 {
            failures.push(format!("{}: precision {}/{}", c.name, t.n_matched, t.n_detected));
        }
        if t.n_matched - t.n_sign_correct > 2 {
            failures.push(format!("{}: {} wrong signs", c.name, t.n_matched - t.n_sign_correct));
        }
        big += s.n_true_big;
        big_found += s.n_true_big_matched;
        det += t.n_detected;
        det_ok += t.n_matched;
        matched += t.n_matched;
        sign_ok += t.n_sign_correct;
    }
    // Pooled over the 16 cells (≈ 1000 large spikes, ≈ 1600 detections): the targets for
    // precision (0.98) and sign (0.995). Recall is held at 0.93, under the 0.97: this
    // detector does not meet 0.97 on the cells with 1/f noise (pink, mains and drift: 0.93–0.97
    // in the full matrix, docs/accuracy.md, where the reason is given), and the pool measures
    // ≈ 0.95 (±0.006).
    let recall = big_found as f64 / big as f64;
    let precision = det_ok as f64 / det as f64;
    let sign = sign_ok as f64 / matched as f64;
    eprintln!("pooled: recall (sampled peak ≥ 7e-4) {recall:.4} of {big}, precision {precision:.4} of {det}, sign {sign:.4} of {matched}");
    if recall < 0.93 {
        failures.push(format!("pooled recall {recall:.4} ({big_found}/{big})"));
    }
    if precision < 0.98 {
        failures.push(format!("pooled precision {precision:.4} ({det_ok}/{det})"));
    }
    if sign < 0.995 {
        failures.push(format!("pooled sign {sign:.4} ({sign_ok}/{matched})"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
