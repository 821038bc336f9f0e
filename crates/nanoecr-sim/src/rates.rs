//! How often secondary spikes occur and which sign they take, as functions of the current
//! engineering stress σ and stress rate σ̇ (docs/simulator.md, "Secondary spikes").
//!
//! What the paper (Yang et al., Sci. Rep. 2014; shared/science.md) says, and what is ours:
//! - Waiting times are exponential, and doubling the hold stress (296 → 592 MPa) gives somewhat
//!   longer ones: a weak, decreasing dependence of the rate on stress. The paper gives no law;
//!   we take a power law, rate = r_segment · (max(σ, σ_min) / σ_ref)^(−β), so doubling the stress
//!   lengthens the mean wait by 2^β (β = 0.25: +19 %). The floor σ_min keeps the rate finite at
//!   the start of loading.
//! - p − n depends on stress rate: more p (damage) while loading, more n (recovery) while
//!   unloading, p ≈ n in the hold. The paper does not separate stress from stress rate (its tests
//!   share one timing, so σ̇ ∝ peak stress); we make the p-type probability a smooth, bounded,
//!   odd function of σ̇ alone: p = ½ + b · tanh(σ̇ / σ̇₀). A hold is p = ½ at any stress, as the
//!   paper found. Stress then enters p − n through the rate: the count per segment is
//!   rate(σ) × duration × (2p − 1).
//!
//! Both are O(1) per sample and allocate nothing.

use nanoecr_core::config::SimulationConfig;
use nanoecr_core::Segment;

/// Time constant of the first-order filter on the stress rate, s. The control loop's load
/// corrections make the per-sample difference jittery; 50 ms is far shorter than any segment
/// (10 s in the paper) and far longer than the 1 ms sample period.
pub const STRESS_RATE_SMOOTHING_S: f64 = 0.05;

/// The stress-dependent spike rate and stress-rate-dependent sign probability of one world.
#[derive(Debug, Clone, PartialEq)]
pub struct SpikeRates {
    load_per_s: f64,
    hold_per_s: f64,
    unload_per_s: f64,
    exponent: f64,
    reference_stress_mpa: f64,
    min_stress_mpa: f64,
    bias_max: f64,
    bias_stress_rate_mpa_per_s: f64,
    /// `Some(m)` when β = m/4 (the default β = ¼ is m = 1): the factor is then (σ_ref^¼ / σ^¼)^m
    /// from two square roots, a division and `m − 1` products, against glibc's `pow` (≈ 130
    /// instructions, 7 % of a `--fast` run's CPU when it was evaluated every step).
    quarter_steps: Option<i32>,
    /// σ_ref^¼, for the quarter-power form.
    reference_stress_fourth_root: f64,
}

impl SpikeRates {
    /// The rates and sign law of `cfg` (`spike_rate_*`, `p_fraction_*` keys of `[simulation]`).
    pub fn from_config(cfg: &SimulationConfig) -> Self {
        let steps = cfg.spike_rate_stress_exponent * 4.0;
        // The config bounds β to [−3, 3], so m fits any integer type; other β take `powf`.
        let quarter_steps = (steps == steps.round() && steps.abs() <= 12.0).then_some(steps as i32);
        Self {
            load_per_s: cfg.spike_rate_load_per_s,
            hold_per_s: cfg.spike_rate_hold_per_s,
            unload_per_s: cfg.spike_rate_unload_per_s,
            exponent: cfg.spike_rate_stress_exponent,
            reference_stress_mpa: cfg.spike_rate_reference_stress_mpa,
            min_stress_mpa: cfg.spike_rate_min_stress_mpa,
            bias_max: cfg.p_fraction_bias_max,
            bias_stress_rate_mpa_per_s: cfg.p_fraction_stress_rate_mpa_per_s,
            quarter_steps,
            reference_stress_fourth_root: cfg.spike_rate_reference_stress_mpa.sqrt().sqrt(),
        }
    }

    /// The segment's rate at the reference stress, 1/s: none while settling; a safe unload is an
    /// unload.
    fn segment_rate_per_s(&self, segment: Segment) -> f64 {
        match segment {
            Segment::Settle => 0.0,
            Segment::Load => self.load_per_s,
            Segment::Hold => self.hold_per_s,
            Segment::Unload | Segment::SafeUnload => self.unload_per_s,
        }
    }

    /// Factor on the segment's rate at engineering stress `stress_mpa`.
    pub fn stress_factor(&self, stress_mpa: f64) -> f64 {
        if self.exponent == 0.0 {
            return 1.0;
        }
        let s = stress_mpa.max(self.min_stress_mpa);
        // The same power law in a cheaper form for quarter exponents: square roots are correctly
        // rounded, so this is within a few ulps of `powf` (≤ 4.5e-16 relative at β = ¼ over 1 MPa to
        // 10 GPa, by the test below); seeded runs stay deterministic, not bit-equal to the `powf` form.
        match self.quarter_steps {
            Some(1) => self.reference_stress_fourth_root / s.sqrt().sqrt(),
            Some(m) => (self.reference_stress_fourth_root / s.sqrt().sqrt()).powi(m),
            None => (s / self.reference_stress_mpa).powf(-self.exponent),
        }
    }

    /// Secondary-spike rate in `segment` at engineering stress `stress_mpa`, 1/s.
    pub fn rate_per_s(&self, segment: Segment, stress_mpa: f64) -> f64 {
        let r = self.segment_rate_per_s(segment);
        if r == 0.0 {
            0.0
        } else {
            r * self.stress_factor(stress_mpa)
        }
    }

    /// Probability that a spike born while the stress changes at `stress_rate_mpa_per_s` is
    /// p-type: ½ + b · tanh(σ̇ / σ̇₀).
    pub fn p_fraction(&self, stress_rate_mpa_per_s: f64) -> f64 {
        let x = stress_rate_mpa_per_s / self.bias_stress_rate_mpa_per_s;
        if !x.is_finite() {
            return 0.5 + self.bias_max * x.signum();
        }
        0.5 + self.bias_max * x.tanh()
    }

    /// An upper bound of the rate over stresses up to 10 GPa, 1/s (sizes the live-spike buffer).
    pub fn max_rate_per_s(&self) -> f64 {
        let base = self.load_per_s.max(self.hold_per_s).max(self.unload_per_s);
        base * self.stress_factor(self.min_stress_mpa).max(self.stress_factor(1e4))
    }
}

/// The stress rate σ̇ as the simulator sees it: the per-step difference of the true stress,
/// smoothed by a first-order filter of time constant [`STRESS_RATE_SMOOTHING_S`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StressRate {
    prev_mpa: f64,
    smoothed_mpa_per_s: f64,
    gain: f64,
    dt_s: f64,
}

impl StressRate {
    /// At rest (zero stress, zero rate), sampled every `dt_s`.
    pub fn new(dt_s: f64) -> Self {
        Self { prev_mpa: 0.0, smoothed_mpa_per_s: 0.0, gain: 1.0 - (-dt_s / STRESS_RATE_SMOOTHING_S).exp(), dt_s }
    }

    /// Take this step's stress; returns the smoothed rate, MPa/s.
    pub fn update(&mut self, stress_mpa: f64) -> f64 {
        let raw = (stress_mpa - self.prev_mpa) / self.dt_s;
        self.prev_mpa = stress_mpa;
        self.smoothed_mpa_per_s += (raw - self.smoothed_mpa_per_s) * self.gain;
        self.smoothed_mpa_per_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> SpikeRates {
        SpikeRates::from_config(&SimulationConfig::default())
    }

    #[test]
    fn doubling_the_stress_divides_the_rate_by_two_to_the_exponent() {
        let r = rates();
        let beta = SimulationConfig::default().spike_rate_stress_exponent;
        let ratio = r.rate_per_s(Segment::Hold, 296.0) / r.rate_per_s(Segment::Hold, 592.0);
        assert!((ratio - 2f64.powf(beta)).abs() < 1e-12, "{ratio}");
        assert!(ratio > 1.0, "higher stress, longer waits");
        // Below the floor the rate stops growing.
        assert_eq!(r.rate_per_s(Segment::Load, 0.0), r.rate_per_s(Segment::Load, 50.0));
        assert_eq!(r.rate_per_s(Segment::Settle, 500.0), 0.0);
        assert_eq!(r.rate_per_s(Segment::SafeUnload, 500.0), r.rate_per_s(Segment::Unload, 500.0));
        assert!(r.max_rate_per_s() >= r.rate_per_s(Segment::Load, 0.0));
    }

    #[test]
    fn quarter_power_form_matches_the_power_law_over_the_stress_range() {
        // β = m/4 takes square roots instead of `powf`; β = 0.3 stays on `powf` (exactly equal).
        for beta in [0.25, 0.5, 0.75, -0.25, 1.0, -1.5, 0.3] {
            let cfg = SimulationConfig { spike_rate_stress_exponent: beta, ..SimulationConfig::default() };
            let r = SpikeRates::from_config(&cfg);
            assert_eq!(r.quarter_steps.is_some(), beta != 0.3, "β = {beta}");
            let mut worst = 0.0f64;
            // 1 MPa to 10 GPa, 20 000 stresses log-spaced: below the floor, the demo's 100–3 000
            // MPa, and past any pillar's strength.
            for i in 0..=20_000 {
                let stress = 10f64.powf(4.0 * f64::from(i) / 20_000.0);
                let s = stress.max(cfg.spike_rate_min_stress_mpa);
                let exact = (s / cfg.spike_rate_reference_stress_mpa).powf(-beta);
                let rel = (r.stress_factor(stress) / exact - 1.0).abs();
                worst = worst.max(rel);
            }
            eprintln!("β = {beta}: largest relative difference from powf {worst:e}");
            // A few roundings, one more per product of the quarter power: ≤ 6.7e-16 at β = ¼.
            assert!(worst <= (4.0 * beta.abs() + 3.0) * f64::EPSILON, "β = {beta}: {worst:e}");
        }
    }

    #[test]
    fn sign_probability_follows_the_stress_rate() {
        let r = rates();
        assert_eq!(r.p_fraction(0.0), 0.5);
        assert!(r.p_fraction(191.0) > 0.6 && r.p_fraction(191.0) < 0.7, "{}", r.p_fraction(191.0));
        assert!((r.p_fraction(-191.0) - (1.0 - r.p_fraction(191.0))).abs() < 1e-15);
        assert!(r.p_fraction(1e9) <= 1.0 && r.p_fraction(-1e9) >= 0.0);
        assert!(r.p_fraction(100.0) < r.p_fraction(200.0));
    }

    #[test]
    fn smoothed_stress_rate_settles_on_a_ramp() {
        let dt = 1e-3;
        let mut s = StressRate::new(dt);
        let mut rate = 0.0;
        for k in 1..=1000 {
            rate = s.update(191.0 * k as f64 * dt);
        }
        assert!((rate - 191.0).abs() < 1e-6, "{rate}");
        for _ in 0..1000 {
            rate = s.update(191.0);
        }
        assert!(rate.abs() < 1e-6, "{rate}");
    }
}
