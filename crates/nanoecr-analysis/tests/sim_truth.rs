//! Cross-check against the simulator: the ground-truth magnitudes of simulated runs, fitted with
//! the truncated power-law MLE, give back the α and xc the simulator was configured with.

use nanoecr_analysis::powerlaw::fit_truncated_power_law;
use nanoecr_core::config::SimulationConfig;
use nanoecr_core::{EventKind, LoadFunction, Pillar, Segment};
use nanoecr_sim::World;

#[test]
fn fit_of_simulated_truth_recovers_configured_alpha_and_xc() {
    let pillar = Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };
    let lf = LoadFunction::from_targets(
        2.0,
        0.0,
        &[(Segment::Load, 10.0, 1500.0), (Segment::Hold, 10.0, 1500.0), (Segment::Unload, 10.0, 0.0)],
    );
    let mut mags = Vec::new();
    // Higher spike rates than the default so a few short runs give ≈ 3000 magnitudes.
    for seed in 1..=4 {
        let cfg = SimulationConfig {
            seed,
            spike_rate_load_per_s: 30.0,
            spike_rate_hold_per_s: 30.0,
            spike_rate_unload_per_s: 30.0,
            ..Default::default()
        };
        let mut world = World::new(&cfg, pillar, 1000.0);
        for k in 0..(lf.total_s() * 1000.0) as u64 {
            let (seg, sp) = lf.setpoint_at(k as f64 / 1000.0);
            world.step(sp / cfg.actuator_gain, seg);
        }
        mags.extend(world.ground_truth().iter().filter(|e| e.kind == EventKind::Spike).map(|e| e.magnitude.abs()));
    }
    assert!(mags.len() > 2000, "only {} true spikes", mags.len());
    let fit = fit_truncated_power_law(&mags, 1e-4, None).expect("fit");
    assert!(fit.alpha_ci[0] - 0.05 <= 1.5 && 1.5 <= fit.alpha_ci[1] + 0.05, "α {} CI {:?}", fit.alpha, fit.alpha_ci);
    assert!(fit.xc > 0.5e-3 && fit.xc < 2e-3, "xc {}", fit.xc);
}
