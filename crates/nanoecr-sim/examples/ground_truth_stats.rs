//! What the default simulator injects into the paper's 30 s test (config/demo.toml: 2 s settle,
//! 10 s load / hold / unload to 6000 µN at 1 kHz): events per run and the share of spikes above
//! the paper's detection floor (5 × 10⁻⁴) and 7 × 10⁻⁴; then, over the paper's peak-load series,
//! spikes and p − n per segment (the stress dependence). Numbers quoted in docs/simulator.md.
//!
//! `cargo run -p nanoecr-sim --example ground_truth_stats --release`

use nanoecr_core::config::SimulationConfig;
use nanoecr_core::{EventKind, Pillar, Segment, Sign};
use nanoecr_sim::{TruncatedPowerLaw, World};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const PILLAR: Pillar = Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 0.333, youngs_modulus_gpa: 88.0 };
const RATE_HZ: f64 = 1000.0;

/// The paper's program (2 s settle, 10 s load / hold / unload) to `peak_un`, fed forward.
fn paper_run(seed: u64, peak_un: f64) -> World {
    let (settle_s, seg_s) = (2.0, 10.0);
    let cfg = SimulationConfig { seed, ..Default::default() };
    let mut w = World::new(&cfg, PILLAR, RATE_HZ);
    let n = ((settle_s + 3.0 * seg_s) * RATE_HZ) as usize;
    for k in 0..n {
        let t = k as f64 / RATE_HZ;
        let (sp, seg) = if t < settle_s {
            (0.0, Segment::Settle)
        } else if t < settle_s + seg_s {
            (peak_un * (t - settle_s) / seg_s, Segment::Load)
        } else if t < settle_s + 2.0 * seg_s {
            (peak_un, Segment::Hold)
        } else {
            (peak_un * (1.0 - (t - settle_s - 2.0 * seg_s) / seg_s), Segment::Unload)
        };
        w.step(sp / cfg.actuator_gain, seg);
    }
    w
}

fn main() {
    let runs = 50u64;
    let (mut spikes, mut popins, mut above5, mut above7) = (0usize, 0usize, 0usize, 0usize);
    for seed in 1..=runs {
        let w = paper_run(seed, 6000.0);
        for e in w.ground_truth() {
            match e.kind {
                EventKind::Spike => {
                    spikes += 1;
                    above5 += usize::from(e.magnitude.abs() >= 5e-4);
                    above7 += usize::from(e.magnitude.abs() >= 7e-4);
                }
                EventKind::Popin => popins += 1,
                EventKind::Interlock => {}
            }
        }
    }
    let r = runs as f64;
    println!(
        "per 30 s demo run (mean of {runs} seeds): {:.1} spikes, {:.2} pop-ins",
        spikes as f64 / r,
        popins as f64 / r
    );
    println!("spikes per run with |Δρ/ρ| ≥ 5e-4: {:.1}, ≥ 7e-4: {:.1}", above5 as f64 / r, above7 as f64 / r);

    println!("\npeak load (µN) | peak stress (MPa) | spikes load / hold / unload | p − n load / hold / unload (mean of 20 seeds)");
    for peak_un in [500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 7000.0] {
        let mut count = [0.0f64; 3];
        let mut diff = [0.0f64; 3];
        let seeds = 20u64;
        for seed in 1..=seeds {
            let w = paper_run(seed, peak_un);
            for e in w.ground_truth().iter().filter(|e| e.kind == EventKind::Spike) {
                let i = match e.segment {
                    Segment::Load => 0,
                    Segment::Hold => 1,
                    _ => 2,
                };
                count[i] += 1.0;
                diff[i] += if e.sign == Sign::P { 1.0 } else { -1.0 };
            }
        }
        let s = seeds as f64;
        println!(
            "{peak_un:.0} | {:.0} | {:.0} / {:.0} / {:.0} | {:+.1} / {:+.1} / {:+.1}",
            PILLAR.stress_mpa(peak_un),
            count[0] / s,
            count[1] / s,
            count[2] / s,
            diff[0] / s,
            diff[1] / s,
            diff[2] / s
        );
    }

    let cfg = SimulationConfig::default();
    let law = TruncatedPowerLaw::from_config(&cfg).expect("default law is valid");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let n = 1_000_000;
    let (mut a5, mut a7) = (0usize, 0usize);
    for _ in 0..n {
        let x = law.sample(&mut rng);
        a5 += usize::from(x >= 5e-4);
        a7 += usize::from(x >= 7e-4);
    }
    println!(
        "fraction of magnitudes ≥ 5e-4: {:.4}, ≥ 7e-4: {:.4} ({n} draws)",
        a5 as f64 / n as f64,
        a7 as f64 / n as f64
    );
}
