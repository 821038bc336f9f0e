//! Exact sampling of spike magnitudes from the truncated power law of Yang et al.:
//! p(x) ∝ x^(−α) · exp(−x / xc) on [x_min, x_max].

use rand::Rng;

use crate::SimError;

/// Beyond x_min + this many cutoff lengths the density is below e^(−50) ≈ 2 × 10⁻²² of its value at
/// x_min: no f64 CDF can tell the difference, so proposals stop there. Without it, a shallow α with
/// a far x_max would make rejection sampling hopelessly slow (acceptance ≈ xc / x_max).
const PROPOSAL_CUTOFFS: f64 = 50.0;

/// Ceiling on rejection rounds so a draw is bounded in time on the control thread. With the proposal
/// range capped at [`PROPOSAL_CUTOFFS`] cutoff lengths the acceptance is at least ≈ 1/50, so
/// reaching the ceiling has a probability far below e^(−100).
const MAX_ROUNDS: u32 = 10_000;

/// A sampler of the truncated power law p(x) ∝ x^(−α) e^(−x/xc) on [x_min, x_max].
///
/// Rejection sampling: propose from the pure power law x^(−α) on the range (exact inverse CDF),
/// accept with probability e^(−(x − x_min)/xc). The accepted draws follow the target exactly; no
/// table, so no allocation and no discretisation error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TruncatedPowerLaw {
    alpha: f64,
    xc: f64,
    x_min: f64,
    x_max: f64,
    /// Upper end of the proposal range: min(x_max, x_min + 50 xc).
    proposal_max: f64,
    /// 1 − α, the exponent of the pure power law's CDF.
    one_minus_alpha: f64,
    /// x_min^(1−α) (or ln x_min when α = 1).
    lo: f64,
    /// proposal_max^(1−α) − x_min^(1−α) (or the log ratio when α = 1).
    span: f64,
}

impl TruncatedPowerLaw {
    /// A sampler for exponent `alpha`, cutoff `xc` and support [`x_min`, `x_max`].
    ///
    /// Fails unless 0 < x_min < x_max, xc > 0 and α is finite.
    pub fn new(alpha: f64, xc: f64, x_min: f64, x_max: f64) -> Result<Self, SimError> {
        let bad = |what: &'static str| Err(SimError::InvalidDistribution { what, alpha, xc, x_min, x_max });
        if !alpha.is_finite() {
            return bad("α must be finite");
        }
        if !(xc.is_finite() && xc > 0.0) {
            return bad("xc must be a positive number");
        }
        if !(x_min.is_finite() && x_min > 0.0) {
            return bad("x_min must be a positive number");
        }
        if x_max.is_nan() || x_max <= x_min {
            return bad("x_max must exceed x_min");
        }
        let proposal_max = x_max.min(x_min + PROPOSAL_CUTOFFS * xc);
        let one_minus_alpha = 1.0 - alpha;
        let (lo, span) = if one_minus_alpha.abs() < 1e-9 {
            (x_min.ln(), (proposal_max / x_min).ln())
        } else {
            let lo = x_min.powf(one_minus_alpha);
            (lo, proposal_max.powf(one_minus_alpha) - lo)
        };
        Ok(Self { alpha, xc, x_min, x_max, proposal_max, one_minus_alpha, lo, span })
    }

    /// The sampler for a simulation config's α, xc, x_min and x_max.
    pub fn from_config(cfg: &nanoecr_core::config::SimulationConfig) -> Result<Self, SimError> {
        Self::new(cfg.alpha, cfg.xc, cfg.x_min, cfg.x_max)
    }

    /// Power-law exponent α.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Exponential cutoff xc.
    pub fn xc(&self) -> f64 {
        self.xc
    }

    /// Lower end of the support.
    pub fn x_min(&self) -> f64 {
        self.x_min
    }

    /// Upper end of the support.
    pub fn x_max(&self) -> f64 {
        self.x_max
    }

    /// The unnormalised density x^(−α) e^(−x/xc) inside the support, 0 outside.
    pub fn density_unnormalized(&self, x: f64) -> f64 {
        if x < self.x_min || x > self.x_max {
            0.0
        } else {
            x.powf(-self.alpha) * (-x / self.xc).exp()
        }
    }

    /// One magnitude. Consumes a variable number of draws from `rng`, so give it a stream of its
    /// own if other draws must not shift.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let mut x = self.x_min;
        for _ in 0..MAX_ROUNDS {
            x = self.propose(rng.gen::<f64>());
            let accept = (-(x - self.x_min) / self.xc).exp();
            if rng.gen::<f64>() < accept {
                return x;
            }
        }
        x
    }

    /// Inverse CDF of the pure power law on [x_min, proposal_max] at `u` ∈ [0, 1).
    fn propose(&self, u: f64) -> f64 {
        let x = if self.one_minus_alpha.abs() < 1e-9 {
            (self.lo + u * self.span).exp()
        } else {
            (self.lo + u * self.span).powf(1.0 / self.one_minus_alpha)
        };
        // Rounding in powf can step a hair outside the range.
        x.clamp(self.x_min, self.proposal_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// CDF of the truncated power law by trapezoidal quadrature in ln x (x p(x) is smooth there),
    /// on a grid fine enough that its error is far below the KS resolution of the sample.
    struct NumericCdf {
        x: Vec<f64>,
        cdf: Vec<f64>,
    }

    impl NumericCdf {
        fn new(alpha: f64, xc: f64, x_min: f64, x_max: f64) -> Self {
            let n = 200_000;
            let (a, b) = (x_min.ln(), x_max.ln());
            let f = |s: f64| {
                let x = s.exp();
                x.powf(1.0 - alpha) * (-x / xc).exp()
            };
            let h = (b - a) / n as f64;
            let mut x = Vec::with_capacity(n + 1);
            let mut cdf = Vec::with_capacity(n + 1);
            let mut acc = 0.0;
            let mut prev = f(a);
            x.push(x_min);
            cdf.push(0.0);
            for i in 1..=n {
                let s = a + h * i as f64;
                let cur = f(s);
                acc += 0.5 * h * (prev + cur);
                prev = cur;
                x.push(s.exp());
                cdf.push(acc);
            }
            for c in &mut cdf {
                *c /= acc;
            }
            Self { x, cdf }
        }

        fn at(&self, v: f64) -> f64 {
            match self.x.partition_point(|&g| g < v) {
                0 => 0.0,
                i if i >= self.x.len() => 1.0,
                i => {
                    let w = (v - self.x[i - 1]) / (self.x[i] - self.x[i - 1]);
                    self.cdf[i - 1] + w * (self.cdf[i] - self.cdf[i - 1])
                }
            }
        }

        fn quantile(&self, q: f64) -> f64 {
            let i = self.cdf.partition_point(|&c| c < q).min(self.x.len() - 1);
            self.x[i]
        }

        fn mean(&self) -> f64 {
            let mut m = 0.0;
            for i in 1..self.x.len() {
                m += 0.5 * (self.x[i] + self.x[i - 1]) * (self.cdf[i] - self.cdf[i - 1]);
            }
            m
        }
    }

    /// KS statistic D and the sample mean of `n` draws.
    fn ks_against(sampler: &TruncatedPowerLaw, cdf: &NumericCdf, n: usize, seed: u64) -> (f64, f64, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut xs: Vec<f64> = (0..n).map(|_| sampler.sample(&mut rng)).collect();
        xs.sort_by(|a, b| a.total_cmp(b));
        let mut d: f64 = 0.0;
        for (i, &v) in xs.iter().enumerate() {
            let f = cdf.at(v);
            d = d.max((f - i as f64 / n as f64).abs()).max(((i + 1) as f64 / n as f64 - f).abs());
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        (d, mean, xs)
    }

    #[test]
    fn samples_follow_the_numerically_integrated_cdf() {
        // The paper's parameters, a shallow exponent with a far x_max (exercises the capped proposal
        // range), α = 1 (the logarithmic branch) and a steep one.
        for &(alpha, xc, x_min, x_max) in
            &[(1.5, 1e-3, 1e-4, 0.1), (0.2, 1e-3, 1e-4, 10.0), (1.0, 2e-3, 1e-4, 1e-2), (2.5, 1e-3, 5e-4, 0.05)]
        {
            let s = TruncatedPowerLaw::new(alpha, xc, x_min, x_max).expect("valid");
            let cdf = NumericCdf::new(alpha, xc, x_min, x_max);
            let n = 20_000;
            let (d, mean, xs) = ks_against(&s, &cdf, n, 7);
            // 1.95/√n is the 0.1 % critical value of the KS statistic.
            assert!(d * (n as f64).sqrt() < 1.95, "α={alpha}: KS D = {d}");
            assert!(xs.iter().all(|&x| (x_min..=x_max).contains(&x)));
            let true_mean = cdf.mean();
            // The standard error of the mean is below the population sd / √n ≤ x-range scale / √n;
            // 5 % is many standard errors for these heavy-but-cut-off tails.
            assert!((mean - true_mean).abs() < 0.05 * true_mean, "α={alpha}: mean {mean} vs {true_mean}");
            for q in [0.1, 0.5, 0.9, 0.99] {
                let emp = xs[(q * n as f64) as usize];
                let th = cdf.quantile(q);
                // Compare in probability space: a quantile is right when its CDF value is near q.
                assert!((cdf.at(emp) - q).abs() < 0.02, "α={alpha}: q{q} {emp} vs {th}");
            }
        }
    }

    #[test]
    fn the_ks_check_rejects_a_wrong_law() {
        // Guard that the test above can fail: the pure power law (no cutoff) is not the target.
        let s = TruncatedPowerLaw::new(1.5, 1e-3, 1e-4, 0.1).expect("valid");
        let wrong = NumericCdf::new(1.5, 1e9, 1e-4, 0.1);
        let n = 20_000;
        let (d, _, _) = ks_against(&s, &wrong, n, 7);
        assert!(d * (n as f64).sqrt() > 1.95, "D = {d}");
    }

    #[test]
    fn invalid_parameters_are_refused() {
        assert!(TruncatedPowerLaw::new(1.5, 1e-3, 1e-4, 1e-4).is_err());
        assert!(TruncatedPowerLaw::new(1.5, 0.0, 1e-4, 0.1).is_err());
        assert!(TruncatedPowerLaw::new(1.5, 1e-3, 0.0, 0.1).is_err());
        assert!(TruncatedPowerLaw::new(f64::NAN, 1e-3, 1e-4, 0.1).is_err());
    }
}
