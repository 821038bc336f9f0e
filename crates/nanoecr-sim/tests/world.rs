//! Behaviour of the simulated rig against the physics in shared/science.md.

use nanoecr_core::config::{SimulationConfig, SpikeShape};
use nanoecr_core::resistivity::resistivity_change;
use nanoecr_core::{Event, EventKind, Pillar, Segment, Sign};
use nanoecr_sim::{World, WorldSample, POPIN_MAX_DURATION_S, POPIN_MIN_JUMP_NM};

/// The paper's pillar: 2 µm × 5 µm, ν = 1/3, E = 88 GPa.
fn paper_pillar() -> Pillar {
    Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 }
}

/// A load–hold–unload program, optionally followed by a safe unload at zero load.
#[derive(Clone, Copy)]
struct Program {
    settle_s: f64,
    load_s: f64,
    hold_s: f64,
    unload_s: f64,
    safe_unload_s: f64,
    peak_un: f64,
}

impl Program {
    /// The paper's test: 10 s load, 10 s hold, 10 s unload, after settling.
    fn paper(peak_un: f64) -> Self {
        Self { settle_s: 2.5, load_s: 10.0, hold_s: 10.0, unload_s: 10.0, safe_unload_s: 0.0, peak_un }
    }

    fn total_s(&self) -> f64 {
        self.settle_s + self.load_s + self.hold_s + self.unload_s + self.safe_unload_s
    }

    /// Setpoint and segment at time `t`.
    fn at(&self, t: f64) -> (f64, Segment) {
        let mut t = t;
        if t < self.settle_s {
            return (0.0, Segment::Settle);
        }
        t -= self.settle_s;
        if t < self.load_s {
            return (self.peak_un * t / self.load_s, Segment::Load);
        }
        t -= self.load_s;
        if t < self.hold_s {
            return (self.peak_un, Segment::Hold);
        }
        t -= self.hold_s;
        if t < self.unload_s {
            return (self.peak_un * (1.0 - t / self.unload_s), Segment::Unload);
        }
        (0.0, Segment::SafeUnload)
    }
}

struct Run {
    samples: Vec<WorldSample>,
    segments: Vec<Segment>,
    world: World,
}

/// Run `program` with a feed-forward command (setpoint / gain) so the true load follows it.
fn run(cfg: &SimulationConfig, program: Program, rate_hz: f64) -> Run {
    let mut world = World::new(cfg, paper_pillar(), rate_hz);
    let n = (program.total_s() * rate_hz).round() as usize;
    let mut samples = Vec::with_capacity(n);
    let mut segments = Vec::with_capacity(n);
    for k in 0..n {
        let (setpoint, seg) = program.at(k as f64 / rate_hz);
        samples.push(world.step(setpoint / cfg.actuator_gain, seg));
        segments.push(seg);
    }
    Run { samples, segments, world }
}

fn quiet() -> SimulationConfig {
    SimulationConfig {
        resistivity_noise: 0.0,
        disp_noise_nm: 0.0,
        load_noise_un: 0.0,
        drift_nm_per_s: 0.0,
        pink_noise: 0.0,
        mains_amplitude: 0.0,
        ..SimulationConfig::default()
    }
}

fn event_bits(e: &Event) -> [u64; 9] {
    [
        e.kind as u64,
        e.sign as u64,
        e.onset_time_s.to_bits(),
        e.peak_time_s.to_bits(),
        e.duration_s.to_bits(),
        e.magnitude.to_bits(),
        e.linked_delta_rho.to_bits(),
        e.segment as u64,
        e.stress_mpa.to_bits(),
    ]
}

fn truth_bits(events: &[Event]) -> Vec<[u64; 9]> {
    events.iter().map(event_bits).collect()
}

/// Index of the sample whose interval (t_{k−1}, t_k] holds `t`: the first sample that shows it.
fn sample_index_of(t: f64, rate_hz: f64) -> usize {
    (t * rate_hz - 1e-9).ceil().max(0.0) as usize
}

fn std_dev(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// Δρ/ρ − truth for every sample after the reference, computed as a detector would: forward
/// relation on measured displacement and current, reference = the first contact sample.
fn forward_errors(r: &Run, pillar: &Pillar) -> Vec<f64> {
    let k_ref = r.samples.iter().position(|s| s.contact).expect("contact is made");
    let s_ref = r.samples[k_ref];
    let eps_ref = pillar.strain(s_ref.disp_nm);
    r.samples[k_ref + 1..]
        .iter()
        .map(|s| {
            let d = resistivity_change(
                pillar.strain(s.disp_nm),
                eps_ref,
                s.current_factor,
                s_ref.current_factor,
                pillar.poisson_ratio,
            );
            d - s.true_delta_rho
        })
        .collect()
}

#[test]
fn same_seed_is_bit_identical() {
    let cfg = SimulationConfig { seed: 42, pink_noise: 5e-5, mains_amplitude: 2e-5, ..Default::default() };
    let a = run(&cfg, Program::paper(7000.0), 1000.0);
    let b = run(&cfg, Program::paper(7000.0), 1000.0);
    assert!(!a.world.ground_truth().is_empty());
    assert_eq!(a.samples.len(), b.samples.len());
    for (x, y) in a.samples.iter().zip(&b.samples) {
        // PartialEq on f64 would call −0.0 == 0.0; compare the bits.
        assert_eq!(format!("{x:?}"), format!("{y:?}"));
        assert_eq!(x.current_factor.to_bits(), y.current_factor.to_bits());
        assert_eq!(x.disp_nm.to_bits(), y.disp_nm.to_bits());
        assert_eq!(x.load_un.to_bits(), y.load_un.to_bits());
    }
    assert_eq!(truth_bits(a.world.ground_truth()), truth_bits(b.world.ground_truth()));
}

#[test]
fn different_seeds_differ() {
    let a = run(&SimulationConfig { seed: 1, ..Default::default() }, Program::paper(6000.0), 1000.0);
    let b = run(&SimulationConfig { seed: 2, ..Default::default() }, Program::paper(6000.0), 1000.0);
    assert_ne!(a.world.contact_time_s(), b.world.contact_time_s());
    assert_ne!(truth_bits(a.world.ground_truth()), truth_bits(b.world.ground_truth()));
    let differing = a.samples.iter().zip(&b.samples).filter(|(x, y)| x.disp_nm != y.disp_nm).count();
    assert!(differing > a.samples.len() / 2, "only {differing} samples differ");
}

#[test]
fn noise_parameters_do_not_move_events() {
    let base = SimulationConfig { seed: 9, popin_rate_per_s: 3.0, ..Default::default() };
    let noisy = SimulationConfig {
        resistivity_noise: 3e-4,
        disp_noise_nm: 0.4,
        load_noise_un: 1.0,
        drift_nm_per_s: 0.3,
        pink_noise: 1e-4,
        mains_amplitude: 1e-4,
        ..base.clone()
    };
    let a = run(&base, Program::paper(7000.0), 1000.0);
    let b = run(&noisy, Program::paper(7000.0), 1000.0);
    assert!(a.world.ground_truth().iter().any(|e| e.kind == EventKind::Popin));
    assert_eq!(a.world.contact_time_s(), b.world.contact_time_s());
    assert_eq!(truth_bits(a.world.ground_truth()), truth_bits(b.world.ground_truth()));

    // A different hold rate moves event times, but the i-th spike keeps the i-th magnitude and
    // duration: each has its own stream.
    let faster = SimulationConfig { spike_rate_hold_per_s: 20.0, ..base.clone() };
    let c = run(&faster, Program::paper(6000.0), 1000.0);
    let d = run(&base, Program::paper(6000.0), 1000.0);
    let sizes = |r: &Run| -> Vec<(u64, u64)> {
        r.world.ground_truth().iter().map(|e| (e.magnitude.abs().to_bits(), e.duration_s.to_bits())).collect()
    };
    let (sc, sd) = (sizes(&c), sizes(&d));
    assert_ne!(sc.len(), sd.len());
    let n = sc.len().min(sd.len());
    assert_eq!(sc[..n], sd[..n]);
}

#[test]
fn resistivity_noise_through_the_forward_relation_matches_the_config() {
    let pillar = paper_pillar();
    // The default, and a displacement noise large enough that forgetting its share would show.
    for disp_noise_nm in [0.1, 0.2] {
        let cfg = SimulationConfig {
            seed: 5,
            disp_noise_nm,
            drift_nm_per_s: 0.0,
            spike_rate_load_per_s: 0.0,
            spike_rate_hold_per_s: 0.0,
            spike_rate_unload_per_s: 0.0,
            popin_rate_per_s: 0.0,
            ..Default::default()
        };
        let r = run(&cfg, Program::paper(6000.0), 1000.0);
        assert!(r.world.ground_truth().is_empty());
        let sd = std_dev(&forward_errors(&r, &pillar));
        let target = cfg.resistivity_noise;
        assert!((sd - target).abs() < 0.1 * target, "disp noise {disp_noise_nm} nm: std {sd:e} vs {target:e}");
    }
}

#[test]
fn pink_and_mains_add_to_the_white_noise() {
    let pillar = paper_pillar();
    let base = SimulationConfig {
        seed: 6,
        drift_nm_per_s: 0.0,
        spike_rate_load_per_s: 0.0,
        spike_rate_hold_per_s: 0.0,
        spike_rate_unload_per_s: 0.0,
        popin_rate_per_s: 0.0,
        ..Default::default()
    };
    let cfg = SimulationConfig { pink_noise: 1e-4, mains_amplitude: 1e-4, ..base.clone() };
    let r = run(&cfg, Program::paper(6000.0), 1000.0);
    let sd = std_dev(&forward_errors(&r, &pillar));
    // White 1e-4, pink 1e-4 rms, mains 1e-4 amplitude (rms 1e-4/√2), independent.
    let expected = (1e-8f64 + 1e-8 + 0.5e-8).sqrt();
    assert!((sd - expected).abs() < 0.15 * expected, "std {sd:e} vs {expected:e}");
}

#[test]
fn forward_relation_recovers_the_truth_without_noise() {
    let pillar = paper_pillar();
    let cfg = SimulationConfig { seed: 11, popin_rate_per_s: 3.0, ..quiet() };
    let r = run(&cfg, Program::paper(7000.0), 1000.0);
    let truth = r.world.ground_truth();
    assert!(truth.iter().any(|e| e.kind == EventKind::Popin));
    assert!(truth.iter().filter(|e| e.kind == EventKind::Spike).count() > 100);
    let errors = forward_errors(&r, &pillar);
    let worst = errors.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    assert!(worst < 1e-12, "worst error {worst:e}");
    // And the truth is not trivially zero: baseline and spikes both move it.
    let biggest = r.samples.iter().fold(0.0f64, |m, s| m.max(s.true_delta_rho.abs()));
    assert!(biggest > 1e-3);
}

#[test]
fn true_delta_rho_is_the_sum_of_live_boxcars() {
    let rate_hz = 1000.0;
    let cfg = SimulationConfig { seed: 12, resistivity_per_strain: 0.0, popin_rate_per_s: 4.0, ..quiet() };
    let r = run(&cfg, Program::paper(7000.0), rate_hz);
    let truth = r.world.ground_truth();
    assert!(truth.windows(2).all(|w| w[0].onset_time_s <= w[1].onset_time_s), "ground truth in onset order");
    let height = |e: &Event| if e.kind == EventKind::Popin { e.linked_delta_rho } else { e.magnitude };
    let mut seen = vec![0usize; truth.len()];
    for s in &r.samples {
        let t = s.time_s;
        let mut expected = 0.0;
        for (i, e) in truth.iter().enumerate() {
            if e.onset_time_s <= t && t < e.onset_time_s + e.duration_s {
                expected += height(e);
                seen[i] += 1;
            }
        }
        assert!((s.true_delta_rho - expected).abs() < 1e-12, "t = {t}: {} vs {expected}", s.true_delta_rho);
    }
    // At 1 kHz every spike (≥ 1 ms) is caught by at least one sample, and none by more than two.
    for (e, n) in truth.iter().zip(&seen) {
        if e.kind == EventKind::Spike {
            assert!((1..=2).contains(n), "spike at {} seen {n} times", e.onset_time_s);
        }
    }
}

/// The rate law of docs/simulator.md, written out here so the test checks the documented
/// model rather than reusing the simulator's code: the segment's rate at the reference stress,
/// scaled by (max(σ, σ_min)/σ_ref)^(−β).
fn documented_rate(cfg: &SimulationConfig, seg: Segment, stress_mpa: f64) -> f64 {
    let base = match seg {
        Segment::Settle => 0.0,
        Segment::Load => cfg.spike_rate_load_per_s,
        Segment::Hold => cfg.spike_rate_hold_per_s,
        Segment::Unload | Segment::SafeUnload => cfg.spike_rate_unload_per_s,
    };
    base * (stress_mpa.max(cfg.spike_rate_min_stress_mpa) / cfg.spike_rate_reference_stress_mpa)
        .powf(-cfg.spike_rate_stress_exponent)
}

/// P(p-type) = ½ + b · tanh(σ̇/σ̇₀) (docs/simulator.md).
fn documented_p(cfg: &SimulationConfig, stress_rate_mpa_per_s: f64) -> f64 {
    0.5 + cfg.p_fraction_bias_max * (stress_rate_mpa_per_s / cfg.p_fraction_stress_rate_mpa_per_s).tanh()
}

#[test]
fn spike_rates_signs_and_waiting_times_per_segment() {
    let rate_hz = 100.0;
    let cfg = SimulationConfig { seed: 21, popin_rate_per_s: 0.0, ..Default::default() };
    let program =
        Program { settle_s: 3.0, load_s: 300.0, hold_s: 300.0, unload_s: 300.0, safe_unload_s: 100.0, peak_un: 6000.0 };
    let r = run(&cfg, program, rate_hz);
    let truth = r.world.ground_truth();
    let k_ref = r.samples.iter().position(|s| s.contact).expect("contact");
    let pillar = paper_pillar();
    // The program's stress rate per segment (the ramps are linear; the safe unload is at rest).
    let ramp = pillar.stress_mpa(program.peak_un) / program.load_s;

    // Expected spikes: the rate at each step's stress over the intervals after the reference.
    let expected_count = |seg: Segment| -> f64 {
        r.segments
            .iter()
            .zip(&r.samples)
            .enumerate()
            .filter(|&(k, (&s, _))| k > k_ref && s == seg)
            .map(|(_, (_, x))| documented_rate(&cfg, seg, pillar.stress_mpa(x.true_load_un)) / rate_hz)
            .sum()
    };
    for (seg, stress_rate) in
        [(Segment::Load, ramp), (Segment::Hold, 0.0), (Segment::Unload, -ramp), (Segment::SafeUnload, 0.0)]
    {
        let p = documented_p(&cfg, stress_rate);
        let events: Vec<&Event> = truth.iter().filter(|e| e.segment == seg).collect();
        let n = events.len() as f64;
        let expected = expected_count(seg);
        assert!((n - expected).abs() < 4.0 * expected.sqrt(), "{seg}: {n} spikes, expected {expected}");
        let p_count = events.iter().filter(|e| e.sign == Sign::P).count() as f64;
        let sd = (p * (1.0 - p) / n).sqrt();
        assert!((p_count / n - p).abs() < 4.0 * sd, "{seg}: p fraction {} vs {p}", p_count / n);
    }
    assert!(truth.iter().all(|e| e.segment != Segment::Settle));

    for e in truth {
        assert_eq!(e.kind, EventKind::Spike);
        let k = sample_index_of(e.onset_time_s, rate_hz);
        assert!(k > k_ref, "spike at {} before the reference sample", e.onset_time_s);
        // The segment and stress recorded are those of the step whose interval holds the onset.
        assert_eq!(e.segment, r.segments[k]);
        assert_eq!(e.stress_mpa, paper_pillar().stress_mpa(r.samples[k].true_load_un));
        assert_eq!(e.peak_time_s, e.onset_time_s);
        assert!((cfg.spike_min_duration_s..=cfg.spike_max_duration_s).contains(&e.duration_s));
        assert!((cfg.x_min..=cfg.x_max).contains(&e.magnitude.abs()));
        assert_eq!(e.sign, Sign::of(e.magnitude));
    }

    // Waiting times in the hold are exponential with the hold rate (KS at the 0.1 % level).
    let hold: Vec<f64> = truth.iter().filter(|e| e.segment == Segment::Hold).map(|e| e.onset_time_s).collect();
    let mut waits: Vec<f64> = hold.windows(2).map(|w| w[1] - w[0]).collect();
    waits.sort_by(|a, b| a.total_cmp(b));
    let n = waits.len() as f64;
    let hold_stress = pillar.stress_mpa(program.peak_un);
    let lambda = documented_rate(&cfg, Segment::Hold, hold_stress);
    let d = waits.iter().enumerate().fold(0.0f64, |d, (i, &w)| {
        let f = 1.0 - (-lambda * w).exp();
        d.max((f - i as f64 / n).abs()).max(((i + 1) as f64 / n - f).abs())
    });
    assert!(d * n.sqrt() < 1.95, "KS D = {d} over {n} waits");
}

#[test]
fn popins_only_above_the_threshold_stress() {
    let rate_hz = 1000.0;
    let pillar = paper_pillar();
    let cfg = SimulationConfig { seed: 31, popin_rate_per_s: 5.0, ..Default::default() };
    let r = run(&cfg, Program::paper(7000.0), rate_hz);
    let popins: Vec<&Event> = r.world.ground_truth().iter().filter(|e| e.kind == EventKind::Popin).collect();
    assert!(popins.len() >= 20, "{} pop-ins", popins.len());
    let mut total_nm = 0.0;
    for e in &popins {
        let k = sample_index_of(e.onset_time_s, rate_hz);
        assert!(pillar.stress_mpa(r.samples[k].true_load_un) >= cfg.popin_threshold_stress_mpa);
        assert!(e.stress_mpa >= cfg.popin_threshold_stress_mpa);
        assert!(e.magnitude > POPIN_MIN_JUMP_NM, "jump {} nm", e.magnitude);
        assert!(e.duration_s <= POPIN_MAX_DURATION_S && e.duration_s > 0.0);
        let expected_duration = (e.magnitude / cfg.popin_speed_nm_per_s).min(POPIN_MAX_DURATION_S);
        assert!((e.duration_s - expected_duration).abs() < 1e-15);
        let linked = cfg.popin_resistivity_per_strain * e.magnitude / pillar.height_nm();
        assert!((e.linked_delta_rho - linked).abs() < 1e-15);
        assert_eq!(e.sign, Sign::P);
        total_nm += e.magnitude;
    }
    // The jump sizes are 2 nm + Exp(mean extra): their mean is near 2 + mean (4σ).
    let mean = total_nm / popins.len() as f64;
    let sigma = cfg.popin_mean_extra_nm / (popins.len() as f64).sqrt();
    assert!((mean - POPIN_MIN_JUMP_NM - cfg.popin_mean_extra_nm).abs() < 4.0 * sigma, "mean jump {mean} nm");

    // The displacement carries every jump: true = elastic + plastic, plastic never decreases.
    for w in r.samples.windows(2) {
        assert!(w[1].plastic_disp_nm >= w[0].plastic_disp_nm);
    }
    for s in &r.samples {
        assert!((s.true_disp_nm - pillar.elastic_disp_nm(s.true_load_un) - s.plastic_disp_nm).abs() < 1e-9);
    }
    let last = r.samples.last().expect("samples");
    assert!((last.plastic_disp_nm - total_nm).abs() < 1e-9);

    // Below the threshold the same rate gives nothing: 6000 µN is ≈ 1910 MPa.
    let below = run(&cfg, Program::paper(6000.0), rate_hz);
    assert!(below.world.ground_truth().iter().all(|e| e.kind != EventKind::Popin));
    assert!(below.samples.iter().all(|s| s.plastic_disp_nm == 0.0));
}

#[test]
fn contact_is_made_in_its_window_and_current_is_low_before() {
    let rate_hz = 1000.0;
    let program = Program { settle_s: 3.0, load_s: 0.0, hold_s: 0.0, unload_s: 0.0, safe_unload_s: 0.0, peak_un: 0.0 };
    let mut times = Vec::new();
    for seed in 0..20 {
        let cfg = SimulationConfig { seed, ..Default::default() };
        let r = run(&cfg, program, rate_hz);
        let t_c = r.world.contact_time_s();
        assert!((cfg.contact_min_s..=cfg.contact_max_s).contains(&t_c), "contact at {t_c} s");
        times.push(t_c);
        let k_c = r.samples.iter().position(|s| s.contact).expect("contact within settle");
        assert_eq!(k_c, sample_index_of(t_c, rate_hz));
        assert!(r.samples[k_c..].iter().all(|s| s.contact));
        assert!(r.world.reference_strain().is_some());
        let before: Vec<f64> = r.samples[..k_c].iter().map(|s| s.current_factor).collect();
        let after: Vec<f64> = r.samples[k_c..].iter().map(|s| s.current_factor).collect();
        let mean_before = before.iter().sum::<f64>() / before.len() as f64;
        let mean_after = after.iter().sum::<f64>() / after.len() as f64;
        assert!(before.iter().all(|&f| f > 0.0 && f < 0.5), "seed {seed}: pre-contact current out of range");
        assert!(mean_before < 0.35, "seed {seed}: mean before {mean_before}");
        assert!((mean_after - 1.0).abs() < 0.01, "seed {seed}: mean after {mean_after}");
        // Erratic: the pre-contact fraction jumps around rather than sitting still.
        assert!(std_dev(&before) > 0.01, "seed {seed}: pre-contact current too steady");
    }
    // The draws spread over the window rather than sitting at one end.
    let spread = times.iter().cloned().fold(f64::MIN, f64::max) - times.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.5);
}

#[test]
fn elastic_displacement_of_the_paper_pillar_at_6000_un() {
    let cfg = quiet();
    let mut w = World::new(&cfg, paper_pillar(), 1000.0);
    let mut s = WorldSample::default();
    for _ in 0..500 {
        s = w.step(6000.0 / cfg.actuator_gain, Segment::Hold);
    }
    assert!((s.true_load_un - 6000.0).abs() < 1e-6, "load {}", s.true_load_un);
    assert!((s.true_disp_nm - 108.5).abs() < 0.05, "h = {} nm", s.true_disp_nm);
    assert_eq!(s.disp_nm, s.true_disp_nm);
}

#[test]
fn actuator_has_its_gain_and_time_constant() {
    let cfg = quiet();
    let rate_hz = 10_000.0;
    let mut w = World::new(&cfg, paper_pillar(), rate_hz);
    let tau_steps = (cfg.actuator_time_constant_s * rate_hz).round() as usize;
    let mut s = WorldSample::default();
    for _ in 0..tau_steps {
        s = w.step(1000.0, Segment::Load);
    }
    let final_un = 1000.0 * cfg.actuator_gain;
    let frac = s.true_load_un / final_un;
    assert!((frac - (1.0 - (-1.0f64).exp())).abs() < 0.01, "after τ: {frac}");
    for _ in 0..40 * tau_steps {
        s = w.step(1000.0, Segment::Load);
    }
    assert!((s.true_load_un - final_un).abs() < 1e-9, "settled at {}", s.true_load_un);
}

#[test]
fn drift_is_linear_in_time_and_noise_has_its_size() {
    let drift = 0.05;
    let cfg = SimulationConfig { drift_nm_per_s: drift, ..quiet() };
    let r = run(&cfg, Program::paper(3000.0), 1000.0);
    for s in &r.samples {
        assert!((s.disp_nm - s.true_disp_nm - drift * s.time_s).abs() < 1e-9);
    }
    let cfg = SimulationConfig { drift_nm_per_s: 0.0, disp_noise_nm: 0.3, load_noise_un: 0.5, ..quiet() };
    let r = run(&cfg, Program::paper(3000.0), 1000.0);
    let dn: Vec<f64> = r.samples.iter().map(|s| s.disp_nm - s.true_disp_nm).collect();
    let ln: Vec<f64> = r.samples.iter().map(|s| s.load_un - s.true_load_un).collect();
    assert!((std_dev(&dn) - 0.3).abs() < 0.03, "disp noise {}", std_dev(&dn));
    assert!((std_dev(&ln) - 0.5).abs() < 0.05, "load noise {}", std_dev(&ln));
}

#[test]
fn invalid_parameters_are_errors_not_panics() {
    let cfg = SimulationConfig::default();
    assert!(World::try_new(&cfg, paper_pillar(), 0.0).is_err());
    assert!(World::try_new(&cfg, paper_pillar(), f64::NAN).is_err());
    let bad = SimulationConfig { x_max: cfg.x_min, ..cfg.clone() };
    assert!(World::try_new(&bad, paper_pillar(), 1000.0).is_err());
    let flat = Pillar { height_um: 0.0, ..paper_pillar() };
    assert!(World::try_new(&cfg, flat, 1000.0).is_err());
    assert!(World::try_new(&cfg, paper_pillar(), 1000.0).is_ok());
}

/// Expected spikes and p − n of one segment of the paper's program at `peak_un`, from the
/// documented laws integrated over the nominal (linear) load: Σ rate(σ) dt and Σ rate(σ)(2p − 1) dt.
fn documented_segment(cfg: &SimulationConfig, program: Program, seg: Segment) -> (f64, f64) {
    let pillar = paper_pillar();
    let peak = pillar.stress_mpa(program.peak_un);
    let (dur, stress_rate) = match seg {
        Segment::Load => (program.load_s, peak / program.load_s),
        Segment::Hold => (program.hold_s, 0.0),
        _ => (program.unload_s, -peak / program.unload_s),
    };
    let steps = 100_000;
    let dt = dur / steps as f64;
    let p = documented_p(cfg, stress_rate);
    let mut count = 0.0;
    for i in 0..steps {
        let u = (i as f64 + 0.5) / steps as f64;
        let stress = match seg {
            Segment::Load => peak * u,
            Segment::Hold => peak,
            _ => peak * (1.0 - u),
        };
        count += documented_rate(cfg, seg, stress) * dt;
    }
    (count, count * (2.0 * p - 1.0))
}

/// The paper's campaign shape: the same 10/10/10 s program at rising peak loads. p − n of the
/// injected spikes grows with peak stress in loading, falls (more n) in unloading and stays near
/// zero in the hold, each as the documented laws predict; the hold rate falls with stress, so
/// waits at the higher hold stress are longer (Yang et al.: "as the holding stress is doubled,
/// … longer waiting times"); and α, xc do not depend on stress (the i-th magnitude is the same).
#[test]
fn spike_counts_and_p_minus_n_depend_on_stress_and_stress_rate() {
    // 100 Hz steps: spikes are born at continuous times, so counts do not depend on the step.
    let rate_hz = 100.0;
    let seeds = 1..=30u64;
    let peaks = [1000.0, 3000.0, 6000.0];
    let segments = [Segment::Load, Segment::Hold, Segment::Unload];
    // Per peak, per segment: (spikes, p − n), summed over seeds.
    let mut observed = [[(0.0f64, 0.0f64); 3]; 3];
    let mut first_magnitudes: Vec<Vec<u64>> = Vec::new();
    for (i, &peak) in peaks.iter().enumerate() {
        for seed in seeds.clone() {
            let cfg = SimulationConfig { seed, popin_rate_per_s: 0.0, ..Default::default() };
            let r = run(&cfg, Program::paper(peak), rate_hz);
            for (j, &seg) in segments.iter().enumerate() {
                for e in r.world.ground_truth().iter().filter(|e| e.segment == seg) {
                    observed[i][j].0 += 1.0;
                    observed[i][j].1 += if e.sign == Sign::P { 1.0 } else { -1.0 };
                }
            }
            if seed == 1 {
                first_magnitudes
                    .push(r.world.ground_truth().iter().take(50).map(|e| e.magnitude.abs().to_bits()).collect());
            }
        }
    }
    let runs = seeds.count() as f64;
    let cfg = SimulationConfig::default();
    for (i, &peak) in peaks.iter().enumerate() {
        for (j, &seg) in segments.iter().enumerate() {
            let (n, d) = observed[i][j];
            let (en, ed) = documented_segment(&cfg, Program::paper(peak), seg);
            let (en, ed) = (en * runs, ed * runs);
            assert!((n - en).abs() < 4.0 * en.sqrt(), "{peak} µN {seg}: {n} spikes, expected {en:.0}");
            // p − n of N spikes has variance N(1 − (2p − 1)²) ≤ N.
            assert!((d - ed).abs() < 4.0 * n.sqrt(), "{peak} µN {seg}: p − n {d}, expected {ed:.0}");
        }
    }
    // Differences between consecutive peaks, each against its Poisson σ.
    let z = |a: (f64, f64), b: (f64, f64)| (b.1 - a.1) / (a.0 + b.0).sqrt();
    for i in 0..2 {
        assert!(z(observed[i][0], observed[i + 1][0]) > 3.0, "loading p − n grows with stress: {observed:?}");
        assert!(z(observed[i][2], observed[i + 1][2]) < -3.0, "unloading p − n falls with stress: {observed:?}");
        let (n, d) = observed[i][1];
        assert!(d.abs() < 4.0 * n.sqrt(), "hold p − n = {d} of {n}: about equal");
    }
    // Hold at 3000 vs 6000 µN (doubled stress): rate ratio 2^β, seen in the counts.
    let (n_lo, n_hi) = (observed[1][1].0, observed[2][1].0);
    let ratio = n_lo / n_hi;
    let expected = 2f64.powf(cfg.spike_rate_stress_exponent);
    let sd = ratio * (1.0 / n_lo + 1.0 / n_hi).sqrt();
    assert!(ratio > 1.0 + 3.0 * sd, "doubled hold stress, fewer spikes: ratio {ratio}");
    assert!((ratio - expected).abs() < 4.0 * sd, "hold rate ratio {ratio} vs 2^β = {expected}");
    // The magnitude law does not move with stress: the same seed draws the same magnitudes.
    assert_eq!(first_magnitudes[0], first_magnitudes[2]);
}

#[test]
fn spike_shapes_keep_events_and_peak_at_the_recorded_magnitude() {
    // 100 kHz: a 1–2 ms spike spans 100–200 samples, so its sampled peak is within one sample
    // step of the waveform's top.
    let rate_hz = 100_000.0;
    let base = SimulationConfig {
        seed: 21,
        resistivity_per_strain: 0.0,
        popin_rate_per_s: 0.0,
        spike_max_duration_s: 2e-3,
        ..quiet()
    };
    let program =
        Program { settle_s: 2.5, load_s: 1.0, hold_s: 1.0, unload_s: 1.0, safe_unload_s: 0.0, peak_un: 3000.0 };
    let boxcar = run(&base, program, rate_hz);
    let boxcar_truth = boxcar.world.ground_truth().to_vec();
    assert!(boxcar_truth.len() > 20, "{} spikes", boxcar_truth.len());
    for shape in [SpikeShape::Trapezoid, SpikeShape::RiseDecay, SpikeShape::Overshoot] {
        let r = run(&SimulationConfig { spike_shape: shape, ..base.clone() }, program, rate_hz);
        let truth = r.world.ground_truth();
        // The shape has its own random stream: onsets, durations and magnitudes do not move.
        assert_eq!(truth.len(), boxcar_truth.len());
        for (a, b) in truth.iter().zip(&boxcar_truth) {
            assert_eq!(
                [a.onset_time_s, a.duration_s, a.magnitude].map(f64::to_bits),
                [b.onset_time_s, b.duration_s, b.magnitude].map(f64::to_bits)
            );
            let rise_s = a.peak_time_s - a.onset_time_s;
            assert!((1e-4..=3e-4).contains(&rise_s), "{shape:?}: rise {rise_s}");
        }
        // Isolated spikes (no neighbour within 3 ms): the sampled waveform peaks at the recorded
        // magnitude, is 0 before the onset and after the end, and rises over its edge.
        let mut checked = 0;
        for (i, e) in truth.iter().enumerate() {
            let alone = truth.iter().enumerate().all(|(j, o)| j == i || (o.onset_time_s - e.onset_time_s).abs() > 3e-3);
            if !alone {
                continue;
            }
            let k0 = sample_index_of(e.onset_time_s, rate_hz);
            let k1 = sample_index_of(e.onset_time_s + e.duration_s, rate_hz);
            let window = &r.samples[k0 - 5..k1 + 5];
            let peak =
                window.iter().map(|s| s.true_delta_rho).fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            // One 10 µs step of the steepest edge (≥ 0.1 ms) is ≤ 10 % of the peak.
            assert!(
                (peak / e.magnitude - 1.0).abs() < 0.1 && peak.signum() == e.magnitude.signum(),
                "{shape:?}: {peak} vs {}",
                e.magnitude
            );
            assert_eq!(r.samples[k0 - 1].true_delta_rho, 0.0, "{shape:?}: before onset");
            assert_eq!(r.samples[k1 + 1].true_delta_rho, 0.0, "{shape:?}: after the end");
            let first = r.samples[k0].true_delta_rho / e.magnitude;
            assert!(first < 0.2, "{shape:?}: first sample already at {first} of the peak");
            checked += 1;
        }
        assert!(checked > 10, "{shape:?}: {checked} isolated spikes");
    }
}

#[test]
fn mains_harmonics_drift_and_baseline_drift_are_on_the_measured_resistivity() {
    let pillar = paper_pillar();
    let rate_hz = 1000.0;
    let base = SimulationConfig {
        seed: 8,
        spike_rate_load_per_s: 0.0,
        spike_rate_hold_per_s: 0.0,
        spike_rate_unload_per_s: 0.0,
        popin_rate_per_s: 0.0,
        ..quiet()
    };
    let program = Program { settle_s: 2.5, load_s: 0.0, hold_s: 20.0, unload_s: 0.0, safe_unload_s: 0.0, peak_un: 0.0 };
    // Amplitude of `f` Hz in `x` over whole periods, by projection on sine and cosine.
    let amplitude = |x: &[f64], f: f64| {
        let n = ((x.len() as f64 * f / rate_hz).floor() * rate_hz / f) as usize;
        let (mut s, mut c) = (0.0, 0.0);
        for (k, v) in x[..n].iter().enumerate() {
            let ph = std::f64::consts::TAU * f * k as f64 / rate_hz;
            s += v * ph.sin();
            c += v * ph.cos();
        }
        2.0 * (s * s + c * c).sqrt() / n as f64
    };
    let cfg =
        SimulationConfig { mains_amplitude: 1e-4, mains_harmonics: 3, mains_harmonic_fraction: 0.5, ..base.clone() };
    let x = forward_errors(&run(&cfg, program, rate_hz), &pillar);
    for (h, want) in [(1.0, 1e-4), (2.0, 5e-5), (3.0, 2.5e-5), (4.0, 1.25e-5), (5.0, 0.0)] {
        let a = amplitude(&x, 50.0 * h);
        assert!((a - want).abs() < 1e-7, "harmonic {h}: {a:e} vs {want:e}");
    }
    // A 50 % drift at 0.1 Hz: over one 10 s period the amplitude swings between 0.5 and 1.5.
    let cfg =
        SimulationConfig { mains_amplitude: 1e-4, mains_drift_fraction: 0.5, mains_drift_hz: 0.1, ..base.clone() };
    let x = forward_errors(&run(&cfg, program, rate_hz), &pillar);
    let amps: Vec<f64> = x.chunks(100).map(|c| amplitude(c, 50.0)).collect();
    let (lo, hi) = amps.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &a| (l.min(a), h.max(a)));
    assert!(lo < 0.55e-4 && lo > 0.45e-4 && hi > 1.45e-4 && hi < 1.55e-4, "amplitude {lo:e}–{hi:e}");
    // Baseline: a linear drift plus a wander, neither in the ground truth.
    let cfg = SimulationConfig { baseline_drift_per_s: 1e-4, baseline_wander: 2e-4, baseline_wander_hz: 0.2, ..base };
    let r = run(&cfg, program, rate_hz);
    assert!(r.samples.iter().all(|s| s.true_delta_rho.abs() < 1e-12), "drift is not truth");
    let x = forward_errors(&r, &pillar);
    // Whole wander periods (5 s) average the wander out: the mean grows by 1e-4 per s.
    let mean = |c: &[f64]| c.iter().sum::<f64>() / c.len() as f64;
    let (m0, m1) = (mean(&x[..5000]), mean(&x[10_000..15_000]));
    assert!(((m1 - m0) / 10.0 - 1e-4).abs() < 1e-7, "drift {:e} per s", (m1 - m0) / 10.0);
    // Without the drift, the wander has its amplitude (a constant offset projects to nothing).
    let flat: Vec<f64> = x[..15_000].iter().enumerate().map(|(k, v)| v - 1e-4 * k as f64 / rate_hz).collect();
    assert!((amplitude(&flat, 0.2) - 2e-4).abs() < 2e-6, "wander {:e}", amplitude(&flat, 0.2));
}
