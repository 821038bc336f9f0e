//! The noise and max-of-samples kernel g(y | x) (see the [module docs](super)): the reported
//! peak is the largest of the m noisy samples a spike covers, and only reports at or above the
//! floor y_min are kept.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::lead_in::PreparedX;
use super::{std_normal_cdf, std_normal_pdf, MAX_PEAK_SAMPLES};
use crate::powerlaw::sample_truncated_power_law;
use crate::AnalysisError;

/// Half-width of the kernel's support, in σ: beyond it g(y | x) < 10⁻¹³ of its peak.
pub(super) const KERNEL_HALF_WIDTH: f64 = 8.0;

/// How the magnitude a threshold detector reports relates to the true one (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasurementModel {
    /// Per-sample Gaussian noise σ of Δρ/ρ.
    pub sigma: f64,
    /// P(m = i + 1): probability that the reported peak is the maximum over i + 1 samples.
    pub max_of_weights: Vec<f64>,
    /// Constant additive offset of the reported peak beyond the max-of-samples bias (0 normally).
    pub offset: f64,
    /// Smallest true magnitude of the law, x_min (the paper's range starts at 10⁻⁴).
    pub x_min_true: f64,
    /// Floor on the reported magnitude: only |y| ≥ y_min are fitted, and every spike reported
    /// above it must have been detected.
    pub y_min: f64,
    /// Where the numbers come from.
    pub source: String,
    /// The detector's start threshold on the residual, at most `y_min`: the sample that first
    /// exceeds it opens the event. Only used with a `leak` (see [`MeasurementModel::with_leak`]).
    #[serde(default)]
    pub start_threshold: f64,
    /// Fraction of a sub-threshold sample's value that the detector's reference (trailing
    /// baseline, mains estimate) carries into the residuals of the samples after it; 0 for none.
    #[serde(default)]
    pub leak: f64,
}

impl MeasurementModel {
    /// Build from explicit numbers. Errors on non-positive or non-finite σ, x_min or y_min, and
    /// on weights that are empty, more than [`MAX_PEAK_SAMPLES`], negative or all zero (they are
    /// renormalised to sum to 1).
    pub fn new(
        sigma: f64,
        max_of_weights: Vec<f64>,
        offset: f64,
        x_min_true: f64,
        y_min: f64,
        source: impl Into<String>,
    ) -> Result<Self, AnalysisError> {
        let ok = |v: f64| v.is_finite() && v > 0.0;
        if !ok(sigma) || !ok(x_min_true) || !ok(y_min) || !offset.is_finite() {
            return Err(AnalysisError::InvalidInput(format!(
                "measurement model needs positive σ, x_min and y_min (σ {sigma}, x_min {x_min_true}, y_min {y_min}, \
                 offset {offset})"
            )));
        }
        let total: f64 = max_of_weights.iter().sum();
        if max_of_weights.is_empty()
            || max_of_weights.len() > MAX_PEAK_SAMPLES
            || max_of_weights.iter().any(|w| !(w.is_finite() && *w >= 0.0))
            || total <= 0.0
            || total.is_nan()
        {
            return Err(AnalysisError::InvalidInput(format!(
                "max-of-samples weights must be 1..={MAX_PEAK_SAMPLES} non-negative numbers, not all zero"
            )));
        }
        let max_of_weights = max_of_weights.iter().map(|w| w / total).collect();
        Ok(Self {
            sigma,
            max_of_weights,
            offset,
            x_min_true,
            y_min,
            source: source.into(),
            start_threshold: y_min,
            leak: 0.0,
        })
    }

    /// The model of a boxcar spike of duration uniform in `duration_s` = [min, max] sampled at
    /// `rate_hz` with a uniform phase (how the simulator and, to the paper's resolution, the rig
    /// behave): a spike of duration d covers ⌊d·rate⌋ samples, or one more with probability
    /// frac(d·rate). Spikes covering no sample are never seen, whatever their size, so they drop
    /// out of the normalisation. At 1 kHz and 1–1.5 ms: m = 1 with 0.75, m = 2 with 0.25; on
    /// average m = rate × mean duration.
    pub fn boxcar(
        sigma: f64,
        rate_hz: f64,
        duration_s: [f64; 2],
        x_min_true: f64,
        y_min: f64,
    ) -> Result<Self, AnalysisError> {
        let (lo, hi) = (duration_s[0].min(duration_s[1]), duration_s[0].max(duration_s[1]));
        if !(rate_hz.is_finite() && rate_hz > 0.0 && lo.is_finite() && lo > 0.0 && hi.is_finite()) {
            return Err(AnalysisError::InvalidInput(format!(
                "boxcar model needs a positive rate and durations (rate {rate_hz} Hz, durations {duration_s:?} s)"
            )));
        }
        let mut w = vec![0.0; MAX_PEAK_SAMPLES + 1];
        let steps = 4000;
        for i in 0..steps {
            let d = lo + (hi - lo) * (i as f64 + 0.5) / steps as f64;
            let c = d * rate_hz;
            let base = c.floor();
            let frac = c - base;
            let b = (base as usize).min(MAX_PEAK_SAMPLES);
            w[b] += 1.0 - frac;
            w[(b + 1).min(MAX_PEAK_SAMPLES)] += frac;
        }
        let source = format!(
            "boxcar spikes of {:.2}–{:.2} ms at {rate_hz} Hz, reported peak = max over the covered samples, \
             σ = {sigma:.3e}, floor {y_min:.3e}, law from {x_min_true:.1e}",
            lo * 1e3,
            hi * 1e3
        );
        Self::new(sigma, w[1..].to_vec(), 0.0, x_min_true, y_min, source)
    }

    /// How many leading weights the kernel sums: up to the last non-zero one. A boxcar model
    /// carries all [`MAX_PEAK_SAMPLES`] weights, and past the longest spike's samples (2 at
    /// 1 kHz, 15 at 10 kHz) every term of the lead-in sums is an exact zero.
    pub(super) fn weights_in_use(&self) -> usize {
        self.max_of_weights.iter().rposition(|w| *w != 0.0).map_or(0, |i| i + 1)
    }

    /// Mean number of samples a reported peak is the maximum of.
    pub fn mean_samples(&self) -> f64 {
        self.max_of_weights.iter().enumerate().map(|(i, w)| w * (i + 1) as f64).sum()
    }

    /// Mean of y − x for a spike far above the floor: offset + σ Σ_m w_m E[max of m N(0, 1)]
    /// (E = 0, 0.564, 0.846, 1.029 for m = 1..4).
    pub fn peak_bias(&self) -> f64 {
        let n = 3200;
        let h = 2.0 * KERNEL_HALF_WIDTH / n as f64;
        let e: f64 = (0..=n)
            .map(|i| {
                let z = -KERNEL_HALF_WIDTH + h * i as f64;
                let w = if i == 0 || i == n { 0.5 } else { 1.0 };
                w * z * self.max_density_std(z)
            })
            .sum();
        self.offset + self.sigma * e * h
    }

    /// Density of the standardised peak z = (y − x − offset)/σ.
    pub(super) fn max_density_std(&self, z: f64) -> f64 {
        let (phi, cdf) = (std_normal_pdf(z), std_normal_cdf(z));
        let mut acc = 0.0;
        let mut pow = 1.0; // Φ(z)^(m−1)
        for (i, w) in self.max_of_weights.iter().enumerate() {
            if *w > 0.0 {
                acc += w * (i + 1) as f64 * phi * pow;
            }
            pow *= cdf;
        }
        acc
    }

    /// g(y | x): density of the reported magnitude given the true one. With a leak it is the
    /// density of a detected spike's report (0 below the start threshold, where nothing is
    /// reported), which integrates to P(detected | x).
    pub fn density(&self, y: f64, x: f64) -> f64 {
        self.density_prepared(y, x, &self.prepare(x))
    }

    /// [`MeasurementModel::density`] with the x-only parts from [`MeasurementModel::prepare`].
    pub(super) fn density_prepared(&self, y: f64, x: f64, prep: &PreparedX) -> f64 {
        if self.leak > 0.0 && y < self.start_threshold {
            return 0.0;
        }
        if !prep.matters {
            return self.max_density_std((y - x - self.offset) / self.sigma) / self.sigma;
        }
        self.density_with_lead_in(y, x, prep)
    }

    /// P(y ≥ y_min | x): the detection efficiency the floor implies.
    pub fn survival(&self, x: f64) -> f64 {
        if self.lead_in_matters(x) {
            return self.survival_with_lead_in(x);
        }
        let c = std_normal_cdf((self.y_min - x - self.offset) / self.sigma);
        let mut below = 0.0;
        let mut pow = c;
        for w in &self.max_of_weights {
            below += w * pow;
            pow *= c;
        }
        (1.0 - below).clamp(0.0, 1.0)
    }

    /// One reported magnitude for a spike of true magnitude `x` (no floor applied). With a leak
    /// the samples are taken in order, the ones before the event opens each adding `leak` × their
    /// value to what later residuals lose (exactly, not in the mean-field form of the density);
    /// a spike that never opens an event returns its largest residual, which is below the start
    /// threshold and so never passes the floor.
    pub fn report(&self, rng: &mut impl Rng, x: f64) -> f64 {
        let u: f64 = rng.gen();
        let mut acc = 0.0;
        let mut m = self.max_of_weights.len();
        for (i, w) in self.max_of_weights.iter().enumerate() {
            acc += w;
            if u < acc {
                m = i + 1;
                break;
            }
        }
        let (mut lost, mut open, mut peak) = (0.0, false, f64::NEG_INFINITY);
        for _ in 0..m {
            let n: f64 = rng.sample(rand_distr::StandardNormal);
            let v = x + self.offset + self.sigma * n;
            let r = v - lost;
            if !open && self.leak > 0.0 {
                if r > self.start_threshold {
                    open = true;
                    peak = r;
                } else {
                    lost += self.leak * v;
                    peak = peak.max(r);
                }
            } else {
                peak = peak.max(r);
            }
        }
        peak
    }
}

/// Draw reported magnitudes the way the model says a threshold detector reports them: `n_true`
/// true magnitudes from the truncated power law on [x_min_true, ∞), each reported through
/// [`MeasurementModel::report`], kept when the report reaches `model.y_min`.
pub fn sample_measured(rng: &mut impl Rng, alpha: f64, xc: f64, model: &MeasurementModel, n_true: usize) -> Vec<f64> {
    sample_truncated_power_law(rng, alpha, xc, model.x_min_true, n_true)
        .into_iter()
        .map(|x| model.report(rng, x))
        .filter(|&y| y >= model.y_min)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_models::paper_model;
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn kernel_is_normalised_and_boxcar_weights_follow_the_sampling() {
        let m = paper_model(5.8e-4);
        assert!((m.max_of_weights[0] - 0.75).abs() < 1e-3 && (m.max_of_weights[1] - 0.25).abs() < 1e-3);
        // E[max of 2 N(0,1)] = 1/√π.
        let expected = 0.25 * 1e-4 / std::f64::consts::PI.sqrt();
        assert!((m.peak_bias() - expected).abs() < 1e-8, "bias {}", m.peak_bias());
        for &x in &[3e-4, 5.8e-4, 8e-4] {
            let h = 1e-6;
            let ys = (0..2000).map(|i| x - 1e-3 + h * (i as f64 + 0.5));
            let total: f64 = ys.clone().map(|y| m.density(y, x) * h).sum();
            assert!((total - 1.0).abs() < 1e-6, "∫g = {total}");
            let above: f64 = ys.filter(|&y| y >= m.y_min).map(|y| m.density(y, x) * h).sum();
            assert!((above - m.survival(x)).abs() < 1e-3, "survival {x}: {above} vs {}", m.survival(x));
        }
        // 10 kHz: 10–15 samples, on average rate × mean duration = 12.5.
        let fast = MeasurementModel::boxcar(1e-4, 10_000.0, [1e-3, 1.5e-3], 1e-4, 5.8e-4).expect("model");
        assert!((fast.mean_samples() - 12.5).abs() < 1e-3, "{}", fast.mean_samples());
        assert!(
            fast.max_of_weights[..9].iter().all(|w| *w == 0.0) && fast.max_of_weights[15..].iter().all(|w| *w == 0.0)
        );
        assert!(MeasurementModel::boxcar(0.0, 1000.0, [1e-3, 1.5e-3], 1e-4, 5e-4).is_err());
        assert!(MeasurementModel::new(1e-4, vec![], 0.0, 1e-4, 5e-4, "").is_err());
    }

    #[test]
    fn simulated_reports_follow_the_model() {
        let m = paper_model(5.8e-4);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let n = 40_000;
        // Efficiency at a true magnitude near the floor, and the mean shift far above it.
        let x = 5.5e-4;
        let seen = (0..n).filter(|_| m.report(&mut rng, x) >= m.y_min).count() as f64 / n as f64;
        let p = m.survival(x);
        assert!((seen - p).abs() < 4.0 * (p * (1.0 - p) / n as f64).sqrt(), "seen {seen} vs model {p}");
        let shift = (0..n).map(|_| m.report(&mut rng, 2e-3) - 2e-3).sum::<f64>() / n as f64;
        assert!((shift - m.peak_bias()).abs() < 4.0 * 1e-4 / (n as f64).sqrt(), "{shift} vs {}", m.peak_bias());
    }
}
