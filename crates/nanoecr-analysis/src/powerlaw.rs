//! Magnitude distribution fits: the truncated power law p(x) ∝ x^(−α) e^(−x/xc) on x ≥ x_min
//! (Yang et al.: α = 1.5 ± 0.1, xc ≈ 10⁻³), the pure power law and the shifted exponential it is
//! compared against, in the manner of Clauset, Shalizi & Newman (2009) and Python's `powerlaw`.
//!
//! - Maximum likelihood with the exact normaliser Z = xc^(1−α) Γ(1−α, x_min/xc)
//!   ([`crate::special::ln_upper_gamma`]); Nelder–Mead on (α, ln xc) after a coarse grid.
//! - 95 % confidence intervals by **profile likelihood**: the set of α (or xc) where the likelihood,
//!   maximised over the other parameter, is within χ²₁(0.95)/2 = 1.92 of the maximum.
//! - Likelihood-ratio comparisons: Vuong's normalised ratio for non-nested models (vs the
//!   exponential), the χ²₁ test for the nested pure power law (as `powerlaw` does with
//!   `nested=True`).
//! - KS distance between the fitted CDF and the empirical one.
//! - **Efficiency-aware fit**: with a detection-efficiency curve ε(x), observed magnitudes follow
//!   ε(x)·p(x)/∫ε p; fitting that likelihood uses events down to the detection threshold without
//!   the bias a naive fit picks up where small spikes are missed.

use rand::Rng;
use serde::{Deserialize, Serialize};

use std::cell::Cell;

use crate::optimize::{climb_max, crossing, first_step, hessian_2d, maximize_2d, quadratic_reach};
use crate::special::{ks_p_value, ln_upper_gamma};
use crate::AnalysisError;

/// Half the 95 % quantile of χ² with one degree of freedom: the profile-likelihood drop that
/// bounds a 95 % interval.
pub const PROFILE_DROP_95: f64 = 1.920_729_410_347_062;

/// Range of α the fits explore. Below 0 or above 4 nothing physical is expected, and the bounds
/// keep the optimiser out of regions where the normaliser diverges.
pub(crate) const ALPHA_LO: f64 = -1.0;
pub(crate) const ALPHA_HI: f64 = 4.0;

/// A detection-efficiency curve: probability that a spike of true magnitude x is detected,
/// tabulated at increasing x and interpolated linearly in ln x (flat beyond the ends).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EfficiencyCurve {
    /// Magnitudes |Δρ/ρ| of the nodes, increasing.
    pub x: Vec<f64>,
    /// Efficiency at each node, 0..=1.
    pub efficiency: Vec<f64>,
    /// Where the curve comes from (e.g. "measured against ground truth", "noise model").
    pub source: String,
}

impl EfficiencyCurve {
    /// Build from nodes; errors when empty, unsorted, non-positive x or efficiency outside 0..=1.
    pub fn new(x: Vec<f64>, efficiency: Vec<f64>, source: impl Into<String>) -> Result<Self, AnalysisError> {
        if x.is_empty() || x.len() != efficiency.len() {
            return Err(AnalysisError::InvalidInput("efficiency curve needs matching, non-empty nodes".into()));
        }
        if x.iter().any(|v| !(v.is_finite() && *v > 0.0)) || x.windows(2).any(|w| w[1] <= w[0]) {
            return Err(AnalysisError::InvalidInput("efficiency curve x must be positive and increasing".into()));
        }
        if efficiency.iter().any(|e| !(0.0..=1.0).contains(e)) {
            return Err(AnalysisError::InvalidInput("efficiency must lie in 0..=1".into()));
        }
        Ok(Self { x, efficiency, source: source.into() })
    }

    /// The model curve of a threshold detector on Gaussian noise: a spike of height x is seen when
    /// its peak sample (x plus noise σ) exceeds the threshold, ε(x) = Φ((x − threshold)/σ).
    pub fn threshold_model(threshold: f64, noise_sigma: f64) -> Self {
        let normal = statrs::distribution::Normal::new(0.0, 1.0).ok();
        let mut x = Vec::new();
        let mut e = Vec::new();
        let n = 161;
        for i in 0..n {
            // 1e-5 .. 1e-1, 40 nodes per decade.
            let xi = 10f64.powf(-5.0 + 4.0 * i as f64 / (n - 1) as f64);
            let z = (xi - threshold) / noise_sigma.max(1e-12);
            let phi = normal.as_ref().map_or(if z > 0.0 { 1.0 } else { 0.0 }, |nd| {
                use statrs::distribution::ContinuousCDF;
                nd.cdf(z)
            });
            x.push(xi);
            e.push(phi.clamp(0.0, 1.0));
        }
        Self { x, efficiency: e, source: format!("threshold model: Φ((x − {threshold:.3e}) / {noise_sigma:.3e})") }
    }

    /// ε(x), interpolated linearly in ln x, constant beyond the first and last nodes.
    pub fn eval(&self, x: f64) -> f64 {
        let n = self.x.len();
        if x <= self.x[0] {
            return self.efficiency[0];
        }
        if x >= self.x[n - 1] {
            return self.efficiency[n - 1];
        }
        let i = self.x.partition_point(|&v| v <= x).clamp(1, n - 1);
        let (x0, x1) = (self.x[i - 1].ln(), self.x[i].ln());
        let t = (x.ln() - x0) / (x1 - x0);
        self.efficiency[i - 1] + t * (self.efficiency[i] - self.efficiency[i - 1])
    }

    /// Completeness threshold: the smallest x above which the curve stays ≥ `level` (0.95 by
    /// convention). `None` if the curve never gets there.
    pub fn completeness(&self, level: f64) -> Option<f64> {
        let n = self.x.len();
        if self.efficiency[n - 1] < level {
            return None;
        }
        // Walk down from the top while the curve stays above the level.
        let mut i = n - 1;
        while i > 0 && self.efficiency[i - 1] >= level {
            i -= 1;
        }
        if i == 0 {
            return Some(self.x[0]);
        }
        // Interpolate the crossing between nodes i-1 (below) and i (at/above), in ln x.
        let (e0, e1) = (self.efficiency[i - 1], self.efficiency[i]);
        let t = if e1 > e0 { (level - e0) / (e1 - e0) } else { 1.0 };
        Some((self.x[i - 1].ln() + t * (self.x[i].ln() - self.x[i - 1].ln())).exp())
    }
}

/// A fitted truncated power law.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TruncatedPowerLawFit {
    /// Exponent α.
    pub alpha: f64,
    /// 95 % profile-likelihood interval of α.
    pub alpha_ci: [f64; 2],
    /// Exponential cutoff xc.
    pub xc: f64,
    /// 95 % profile-likelihood interval of xc (upper end infinite when a pure power law fits).
    pub xc_ci: [f64; 2],
    /// How the intervals were obtained.
    pub ci_method: String,
    /// Lower end of the fitted range.
    pub x_min: f64,
    /// Number of magnitudes fitted.
    pub n: usize,
    /// Maximised log-likelihood.
    pub log_likelihood: f64,
    /// KS distance between the fitted (observed-model) CDF and the empirical CDF.
    pub ks_distance: f64,
    /// Asymptotic KS p-value (too large when parameters are estimated; a guide only).
    pub ks_p_value: f64,
    /// Whether the fit weighted the model by a detection-efficiency curve.
    pub efficiency_aware: bool,
    /// Whether Nelder–Mead met its tolerance.
    pub converged: bool,
}

/// A fitted pure power law p(x) = (α−1)/x_min (x/x_min)^(−α).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerLawFit {
    /// Exponent α (closed-form MLE).
    pub alpha: f64,
    /// Standard error (α − 1)/√n.
    pub alpha_se: f64,
    /// Log-likelihood.
    pub log_likelihood: f64,
}

/// A fitted shifted exponential p(x) = λ e^(−λ(x − x_min)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExponentialFit {
    /// Rate λ (1/mean excess).
    pub rate: f64,
    /// Log-likelihood.
    pub log_likelihood: f64,
}

/// A likelihood-ratio comparison of model 1 against model 2 on the same data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LikelihoodRatio {
    /// Log-likelihood ratio R = ℓ₁ − ℓ₂ (positive favours model 1).
    pub log_ratio: f64,
    /// R / (σ √n), Vuong's normalised ratio (σ: std of the pointwise log-ratios).
    pub normalized: f64,
    /// p-value: Vuong's two-sided erfc(|R|/(σ√(2n))) when not nested; χ²₁ of 2|R| when nested.
    pub p_value: f64,
    /// Whether model 2 is a special case of model 1.
    pub nested: bool,
    /// "first", "second" or "neither" (p ≥ 0.1).
    pub favours: String,
}

/// Everything about the magnitude distribution of one data set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MagnitudeAnalysis {
    /// Truncated power law fitted above the completeness threshold (naive likelihood).
    pub truncated_power_law: TruncatedPowerLawFit,
    /// Pure power law on the same data.
    pub power_law: PowerLawFit,
    /// Exponential on the same data.
    pub exponential: ExponentialFit,
    /// Truncated power law vs pure power law (nested).
    pub tpl_vs_power_law: LikelihoodRatio,
    /// Truncated power law vs exponential (Vuong).
    pub tpl_vs_exponential: LikelihoodRatio,
    /// Efficiency-aware truncated power law down to the detection threshold, when a curve is given.
    pub efficiency_aware: Option<TruncatedPowerLawFit>,
}

/// Σ ln x, Σ x and n of the magnitudes ≥ x_min: the sufficient statistics of the truncated power law.
fn sufficient(xs: &[f64]) -> (f64, f64, f64) {
    let s_ln = xs.iter().map(|x| x.ln()).sum();
    let s_x = xs.iter().sum();
    (s_ln, s_x, xs.len() as f64)
}

/// Keep finite |x| ≥ x_min, sorted.
pub fn tail(magnitudes: &[f64], x_min: f64) -> Vec<f64> {
    let mut v: Vec<f64> = magnitudes.iter().map(|x| x.abs()).filter(|x| x.is_finite() && *x >= x_min).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// ln Z(α, xc) of the truncated power law on [x_min, ∞).
pub fn ln_normalizer(alpha: f64, xc: f64, x_min: f64) -> f64 {
    (1.0 - alpha) * xc.ln() + ln_upper_gamma(1.0 - alpha, x_min / xc)
}

/// CDF of the truncated power law on [x_min, ∞).
pub fn tpl_cdf(x: f64, alpha: f64, xc: f64, x_min: f64) -> f64 {
    if x <= x_min {
        return 0.0;
    }
    let s = 1.0 - alpha;
    1.0 - (ln_upper_gamma(s, x / xc) - ln_upper_gamma(s, x_min / xc)).exp()
}

/// The observed-model normaliser and CDF of ε·p on a log grid (needed when ε is not 1).
struct WeightedModel<'a> {
    eff: Option<&'a EfficiencyCurve>,
    x_min: f64,
    /// ln x of the efficiency curve's nodes, once per fit: the grid walks them in order instead
    /// of a binary search and a logarithm per node and evaluation.
    ln_nodes: Vec<f64>,
}

/// Simpson intervals of [`WeightedModel`]'s grid (even).
const WEIGHTED_GRID_N: usize = 480;

impl<'a> WeightedModel<'a> {
    const N: usize = WEIGHTED_GRID_N;

    fn new(eff: Option<&'a EfficiencyCurve>, x_min: f64) -> Self {
        let ln_nodes = eff.map_or_else(Vec::new, |c| c.x.iter().map(|x| x.ln()).collect());
        Self { eff, x_min, ln_nodes }
    }

    /// ε at u = ln x, for u increasing from call to call: `node` walks the curve's nodes (start
    /// it at 0). ε is linear in ln x between nodes and flat beyond them, as in
    /// `EfficiencyCurve::eval`.
    fn eff_at(&self, u: f64, node: &mut usize) -> f64 {
        let Some(c) = self.eff else { return 1.0 };
        let n = self.ln_nodes.len();
        if u <= self.ln_nodes[0] {
            c.efficiency[0]
        } else if u >= self.ln_nodes[n - 1] {
            c.efficiency[n - 1]
        } else {
            while self.ln_nodes[*node + 1] <= u {
                *node += 1;
            }
            let (l0, l1) = (self.ln_nodes[*node], self.ln_nodes[*node + 1]);
            let t = (u - l0) / (l1 - l0);
            c.efficiency[*node] + t * (c.efficiency[*node + 1] - c.efficiency[*node])
        }
    }

    /// Grid of u = ln x from ln x_min to where e^(−x/xc) is negligible: the log integrand at
    /// each node into `g`, and the step.
    fn grid_into(&self, alpha: f64, xc: f64, g: &mut [f64; WEIGHTED_GRID_N + 1]) -> f64 {
        let lo = self.x_min.ln();
        let hi = (self.x_min + 45.0 * xc).ln().max(lo + 1e-6);
        let h = (hi - lo) / Self::N as f64;
        let mut node = 0;
        for (k, slot) in g.iter_mut().enumerate() {
            let u = lo + h * k as f64;
            let x = u.exp();
            let e = self.eff_at(u, &mut node);
            // dx = x du, hence (1 − α) u.
            *slot = if e > 0.0 { e.ln() + (1.0 - alpha) * u - x / xc } else { f64::NEG_INFINITY };
        }
        h
    }

    /// Grid of u = ln x and the log integrand, as vectors (for the one-off CDF).
    fn grid(&self, alpha: f64, xc: f64) -> (Vec<f64>, Vec<f64>, f64) {
        let mut g = [0.0; Self::N + 1];
        let h = self.grid_into(alpha, xc, &mut g);
        let lo = self.x_min.ln();
        let us = (0..=Self::N).map(|k| lo + h * k as f64).collect();
        (us, g.to_vec(), h)
    }

    /// ln ∫ ε(x) x^(−α) e^(−x/xc) dx over [x_min, ∞), composite Simpson in ln x on the grid of
    /// [`WeightedModel::grid_into`]. Called once per likelihood evaluation, so it is written for
    /// speed: nothing is allocated, and each node costs one `exp` (no `ln ε`, no pass for the
    /// maximum, x by repeated multiplication).
    fn ln_norm(&self, alpha: f64, xc: f64) -> f64 {
        let lo = self.x_min.ln();
        let hi = (self.x_min + 45.0 * xc).ln().max(lo + 1e-6);
        let h = (hi - lo) / Self::N as f64;
        let s = 1.0 - alpha;
        // The log integrand without ε, s·u − eᵘ/xc, is concave in u: on [lo, hi] its maximum is
        // at u* = ln(s·xc) when that lies inside, else at an end. With ln ε ≤ 0 every scaled term
        // is then ≤ 1, as with the exact maximum.
        let phi = |u: f64| s * u - u.exp() / xc;
        let mut m = phi(lo).max(phi(hi));
        if s > 0.0 {
            let u_star = (s * xc).ln();
            if u_star > lo && u_star < hi {
                m = m.max(phi(u_star));
            }
        }
        if !m.is_finite() {
            return f64::INFINITY;
        }
        // x = eᵘ at the nodes by repeated multiplication: it drifts by ≈ k ulp (≈ 10⁻¹³ at the
        // last node), far below the rule's own error.
        let ratio = h.exp();
        let mut x = lo.exp();
        let mut node = 0;
        let mut sum = 0.0;
        for k in 0..=Self::N {
            let u = lo + h * k as f64;
            let e = self.eff_at(u, &mut node);
            if e > 0.0 {
                let w = if k == 0 || k == Self::N {
                    1.0
                } else if k % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                sum += w * e * (s * u - x / xc - m).exp();
            }
            x *= ratio;
        }
        if sum > 0.0 {
            m + (sum * h / 3.0).ln()
        } else {
            f64::INFINITY
        }
    }

    /// CDF of the observed model at the sorted `xs` (trapezoid cumulative on the grid).
    fn cdf_at(&self, alpha: f64, xc: f64, xs: &[f64]) -> Vec<f64> {
        let (us, g, h) = self.grid(alpha, xc);
        let m = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let f: Vec<f64> = g.iter().map(|v| (v - m).exp()).collect();
        let mut cum = vec![0.0; f.len()];
        for k in 1..f.len() {
            cum[k] = cum[k - 1] + 0.5 * h * (f[k] + f[k - 1]);
        }
        let total = cum[cum.len() - 1].max(1e-300);
        xs.iter()
            .map(|&x| {
                let u = x.ln();
                if u <= us[0] {
                    return 0.0;
                }
                let pos = (u - us[0]) / h;
                let k = pos.floor() as usize;
                if k + 1 >= us.len() {
                    return 1.0;
                }
                let t = pos - k as f64;
                (cum[k] + t * (cum[k + 1] - cum[k])) / total
            })
            .collect()
    }
}

/// The log-likelihood of the truncated power law (optionally efficiency-weighted, up to the
/// constant Σ ln ε(xᵢ)) as a function of (α, ln xc).
struct Likelihood<'a> {
    s_ln: f64,
    s_x: f64,
    n: f64,
    x_min: f64,
    ln_xc_lo: f64,
    ln_xc_hi: f64,
    model: WeightedModel<'a>,
}

impl Likelihood<'_> {
    fn at(&self, alpha: f64, ln_xc: f64) -> f64 {
        if !(ALPHA_LO..=ALPHA_HI).contains(&alpha) || !(self.ln_xc_lo..=self.ln_xc_hi).contains(&ln_xc) {
            return f64::NEG_INFINITY;
        }
        let xc = ln_xc.exp();
        let ln_z =
            if self.model.eff.is_some() { self.model.ln_norm(alpha, xc) } else { ln_normalizer(alpha, xc, self.x_min) };
        let v = -alpha * self.s_ln - self.s_x / xc - self.n * ln_z;
        if v.is_finite() {
            v
        } else {
            f64::NEG_INFINITY
        }
    }
}

/// Fit the truncated power law to |magnitudes| ≥ `x_min`, optionally weighted by a detection
/// efficiency curve. Needs at least 10 magnitudes in range.
pub fn fit_truncated_power_law(
    magnitudes: &[f64],
    x_min: f64,
    efficiency: Option<&EfficiencyCurve>,
) -> Result<TruncatedPowerLawFit, AnalysisError> {
    if !(x_min.is_finite() && x_min > 0.0) {
        return Err(AnalysisError::InvalidInput(format!("x_min must be positive, got {x_min}")));
    }
    let xs = tail(magnitudes, x_min);
    if xs.len() < 10 {
        return Err(AnalysisError::TooFewEvents { needed: 10, got: xs.len(), what: "magnitudes above x_min".into() });
    }
    let (s_ln, s_x, n) = sufficient(&xs);
    let x_max = xs[xs.len() - 1];
    let lik = Likelihood {
        s_ln,
        s_x,
        n,
        x_min,
        ln_xc_lo: (x_min * 1e-2).ln(),
        ln_xc_hi: (x_max * 1e4).ln(),
        model: WeightedModel::new(efficiency, x_min),
    };
    // Coarse grid, then Nelder–Mead from the best node. The truncated power law, weighted by a
    // fixed ε or not, is an exponential family in (α, 1/xc) with statistics (Σ ln x, Σ x): its
    // log-likelihood is concave there, so it has one maximum on the box and the grid only has to
    // put Nelder–Mead near it (11 × 9 nodes; 21 × 17 found the same maxima to the simplex's
    // 1e-8 tolerance on the tests' and the demo's data, at 3.6× the evaluations).
    let mut start = [1.5, (s_x / n).ln()];
    let mut best = lik.at(start[0], start[1]);
    for i in 0..=10 {
        let a = ALPHA_LO + 0.5 * i as f64;
        for j in 0..=8 {
            let l = lik.ln_xc_lo + (lik.ln_xc_hi - lik.ln_xc_lo) * j as f64 / 8.0;
            let v = lik.at(a, l);
            if v > best {
                best = v;
                start = [a, l];
            }
        }
    }
    let (p, ll, converged) = maximize_2d(&|p| lik.at(p[0], p[1]), start, [0.1, 0.3]);
    let (alpha, ln_xc) = (p[0], p[1]);
    let target = ll - PROFILE_DROP_95;
    // The curvature at the maximum says roughly where each crossing is: 8 evaluations that
    // save the outward stepping (≈ 7 profile points per end on a wide interval).
    let reach = quadratic_reach(hessian_2d(&|a, l| lik.at(a, l), alpha, ln_xc, ll, 0.02, 0.05), PROFILE_DROP_95);
    // Profiles with warm starts (as the measurement-aware fit does): the inner maximum moves
    // smoothly along the outer parameter, so each profile point costs a few evaluations instead
    // of a fresh grid scan and golden section. The inner tolerance bounds the profile's error by
    // ≈ curvature × tol², far below the crossing tolerance's effect on the interval.
    let alpha_end = |bound: f64| {
        let warm = Cell::new(ln_xc);
        let prof_a = |a: f64| {
            let (l, v) = climb_max(&|l| lik.at(a, l), warm.get(), 0.1, lik.ln_xc_lo, lik.ln_xc_hi, 1e-5);
            warm.set(l);
            v
        };
        crossing(&prof_a, alpha, ll, bound, target, first_step(reach.map(|r| r[0]), 0.02), 1e-6)
    };
    let xc_end = |bound: f64| {
        let warm_a = Cell::new(alpha);
        let prof_x = |l: f64| {
            let (a, v) = climb_max(&|a| lik.at(a, l), warm_a.get(), 0.05, ALPHA_LO, ALPHA_HI, 1e-5);
            warm_a.set(a);
            v
        };
        crossing(&prof_x, ln_xc, ll, bound, target, first_step(reach.map(|r| r[1]), 0.05), 1e-6)
    };
    let xc = ln_xc.exp();
    // Each end's search starts afresh from the maximum, so the four ends and the KS distance are
    // independent: side by side on the pool (the same values as one after the other). With an
    // efficiency curve every evaluation is a 481-node quadrature, and in a single run's analysis
    // this fit was the last to finish once the measurement-aware one no longer was.
    let (((a_lo, a_hi), (x_lo_ln, x_hi_ln)), ks) = rayon::join(
        || {
            rayon::join(
                || rayon::join(|| alpha_end(ALPHA_LO), || alpha_end(ALPHA_HI)),
                || rayon::join(|| xc_end(lik.ln_xc_lo), || xc_end(lik.ln_xc_hi)),
            )
        },
        || ks_distance(&lik.model.cdf_at(alpha, xc, &xs)),
    );
    let x_lo = x_lo_ln.exp();
    let x_hi = if x_hi_ln >= lik.ln_xc_hi { f64::INFINITY } else { x_hi_ln.exp() };
    Ok(TruncatedPowerLawFit {
        alpha,
        alpha_ci: [a_lo, a_hi],
        xc,
        xc_ci: [x_lo, x_hi],
        ci_method: "profile likelihood, 95 % (drop of 1.92 in log-likelihood)".into(),
        x_min,
        n: xs.len(),
        log_likelihood: ll + efficiency.map_or(0.0, |c| xs.iter().map(|&x| c.eval(x).max(1e-300).ln()).sum()),
        ks_distance: ks,
        ks_p_value: ks_p_value(ks, xs.len()),
        efficiency_aware: efficiency.is_some(),
        converged,
    })
}

/// KS distance between model CDF values at the sorted data and the empirical CDF.
pub(crate) fn ks_distance(cdf_sorted: &[f64]) -> f64 {
    let n = cdf_sorted.len() as f64;
    cdf_sorted
        .iter()
        .enumerate()
        .map(|(i, &f)| (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs()))
        .fold(0.0, f64::max)
}

/// Closed-form pure power-law MLE on |x| ≥ x_min.
pub fn fit_power_law(magnitudes: &[f64], x_min: f64) -> Result<PowerLawFit, AnalysisError> {
    let xs = tail(magnitudes, x_min);
    if xs.len() < 2 {
        return Err(AnalysisError::TooFewEvents { needed: 2, got: xs.len(), what: "magnitudes above x_min".into() });
    }
    let n = xs.len() as f64;
    let s: f64 = xs.iter().map(|x| (x / x_min).ln()).sum();
    let alpha = 1.0 + n / s.max(1e-300);
    Ok(PowerLawFit { alpha, alpha_se: (alpha - 1.0) / n.sqrt(), log_likelihood: pl_pointwise(&xs, alpha, x_min).sum() })
}

fn pl_pointwise(xs: &[f64], alpha: f64, x_min: f64) -> impl Iterator<Item = f64> + '_ {
    xs.iter().map(move |x| ((alpha - 1.0) / x_min).ln() - alpha * (x / x_min).ln())
}

/// Shifted-exponential MLE on |x| ≥ x_min.
pub fn fit_exponential(magnitudes: &[f64], x_min: f64) -> Result<ExponentialFit, AnalysisError> {
    let xs = tail(magnitudes, x_min);
    if xs.len() < 2 {
        return Err(AnalysisError::TooFewEvents { needed: 2, got: xs.len(), what: "magnitudes above x_min".into() });
    }
    let mean_excess = xs.iter().map(|x| x - x_min).sum::<f64>() / xs.len() as f64;
    let rate = 1.0 / mean_excess.max(1e-300);
    Ok(ExponentialFit { rate, log_likelihood: exp_pointwise(&xs, rate, x_min).sum() })
}

fn exp_pointwise(xs: &[f64], rate: f64, x_min: f64) -> impl Iterator<Item = f64> + '_ {
    xs.iter().map(move |x| rate.ln() - rate * (x - x_min))
}

fn tpl_pointwise(xs: &[f64], alpha: f64, xc: f64, x_min: f64) -> Vec<f64> {
    let ln_z = ln_normalizer(alpha, xc, x_min);
    xs.iter().map(|x| -alpha * x.ln() - x / xc - ln_z).collect()
}

/// Compare two models from their pointwise log-likelihoods on the same data.
pub fn likelihood_ratio(ll1: &[f64], ll2: &[f64], nested: bool) -> LikelihoodRatio {
    let n = ll1.len().min(ll2.len());
    let d: Vec<f64> = ll1.iter().zip(ll2).map(|(a, b)| a - b).collect();
    let r: f64 = d.iter().sum();
    let mean = r / n.max(1) as f64;
    let var = d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
    let sigma = var.sqrt();
    let normalized = if sigma > 0.0 { r / (sigma * (n as f64).sqrt()) } else { 0.0 };
    let p_value = if nested {
        // χ²₁ survival of 2|R| is erfc(√|R|).
        statrs::function::erf::erfc(r.abs().sqrt())
    } else if sigma > 0.0 {
        statrs::function::erf::erfc(r.abs() / (sigma * (2.0 * n as f64).sqrt()))
    } else {
        1.0
    };
    let favours = if p_value >= 0.1 || r == 0.0 {
        "neither"
    } else if r > 0.0 {
        "first"
    } else {
        "second"
    };
    LikelihoodRatio { log_ratio: r, normalized, p_value, nested, favours: favours.into() }
}

/// The whole magnitude analysis: naive fits above `x_min` (normally the completeness threshold),
/// model comparisons, and, with an efficiency curve, the efficiency-aware fit above `x_detect`.
pub fn analyze_magnitudes(
    magnitudes: &[f64],
    x_min: f64,
    efficiency: Option<(&EfficiencyCurve, f64)>,
) -> Result<MagnitudeAnalysis, AnalysisError> {
    // The efficiency-aware fit does not depend on the naive one: fit both at once.
    let (tpl, efficiency_aware) = rayon::join(
        || fit_truncated_power_law(magnitudes, x_min, None),
        || efficiency.map(|(curve, x_detect)| fit_truncated_power_law(magnitudes, x_detect, Some(curve)).ok()),
    );
    let tpl = tpl?;
    let efficiency_aware = efficiency_aware.flatten();
    let pl = fit_power_law(magnitudes, x_min)?;
    let ex = fit_exponential(magnitudes, x_min)?;
    let xs = tail(magnitudes, x_min);
    let l_tpl = tpl_pointwise(&xs, tpl.alpha, tpl.xc, x_min);
    let l_pl: Vec<f64> = pl_pointwise(&xs, pl.alpha, x_min).collect();
    let l_ex: Vec<f64> = exp_pointwise(&xs, ex.rate, x_min).collect();
    Ok(MagnitudeAnalysis {
        tpl_vs_power_law: likelihood_ratio(&l_tpl, &l_pl, true),
        tpl_vs_exponential: likelihood_ratio(&l_tpl, &l_ex, false),
        truncated_power_law: tpl,
        power_law: pl,
        exponential: ex,
        efficiency_aware,
    })
}

/// Draw `n` magnitudes from the truncated power law on [x_min, ∞) by rejection: a pure power-law
/// proposal accepted with probability e^(−(x−x_min)/xc) when α > 1, else an exponential proposal
/// accepted with probability (x/x_min)^(−α).
pub fn sample_truncated_power_law(rng: &mut impl Rng, alpha: f64, xc: f64, x_min: f64, n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let u: f64 = rng.gen::<f64>();
        let v: f64 = rng.gen::<f64>();
        if alpha > 1.0 {
            let x = x_min * (1.0 - u).powf(-1.0 / (alpha - 1.0));
            if v < (-(x - x_min) / xc).exp() {
                out.push(x);
            }
        } else {
            let x = x_min - xc * (1.0 - u).ln();
            if v < (x / x_min).powf(-alpha) {
                out.push(x);
            }
        }
    }
    out
}

/// Log-spaced histogram of |magnitudes| ≥ `x_lo`: bin edges, counts and density per unit x.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogHistogram {
    /// Bin edges (one more than bins).
    pub edges: Vec<f64>,
    /// Counts per bin.
    pub counts: Vec<u64>,
    /// counts / (n · width): an estimate of the pdf.
    pub density: Vec<f64>,
}

/// Log-binned histogram with `per_decade` bins per decade from `x_lo` to the largest value.
pub fn log_histogram(magnitudes: &[f64], x_lo: f64, per_decade: usize) -> LogHistogram {
    let xs = tail(magnitudes, x_lo);
    let top = xs.last().copied().unwrap_or(x_lo * 10.0).max(x_lo * 1.0001);
    let nb = (((top / x_lo).log10() * per_decade as f64).ceil() as usize).max(1);
    let edges: Vec<f64> = (0..=nb).map(|i| x_lo * 10f64.powf(i as f64 / per_decade as f64)).collect();
    let mut counts = vec![0u64; nb];
    for &x in &xs {
        let i = ((x / x_lo).log10() * per_decade as f64).floor() as usize;
        counts[i.min(nb - 1)] += 1;
    }
    let n = xs.len().max(1) as f64;
    let density = counts.iter().enumerate().map(|(i, &c)| c as f64 / (n * (edges[i + 1] - edges[i]))).collect();
    LogHistogram { edges, counts, density }
}

/// Empirical CCDF P(X ≥ x) at each sorted |magnitude| ≥ `x_lo`: (x, ccdf) pairs.
pub fn ccdf(magnitudes: &[f64], x_lo: f64) -> Vec<(f64, f64)> {
    let xs = tail(magnitudes, x_lo);
    let n = xs.len() as f64;
    xs.iter().enumerate().map(|(i, &x)| (x, (n - i as f64) / n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn normaliser_matches_direct_quadrature() {
        for &(a, xc) in &[(1.5, 1e-3), (0.7, 2e-3), (2.2, 5e-4)] {
            let x_min = 1e-4;
            let direct = WeightedModel::new(None, x_min).ln_norm(a, xc);
            let exact = ln_normalizer(a, xc, x_min);
            assert!((direct - exact).abs() < 1e-6, "α={a}: {direct} vs {exact}");
        }
    }

    #[test]
    fn weighted_normaliser_walks_the_efficiency_curve_as_eval_does() {
        // The grid walks the curve's nodes in order; the same Simpson sum with
        // `EfficiencyCurve::eval` at every node must give the same integral.
        let curve = EfficiencyCurve::threshold_model(5e-4, 1e-4);
        let x_min = 3e-4;
        let model = WeightedModel::new(Some(&curve), x_min);
        for &(a, xc) in &[(1.5, 1e-3), (0.3, 2e-3), (2.5, 5e-5), (-0.5, 0.3), (3.9, 1e-6)] {
            let n = WEIGHTED_GRID_N;
            let lo = x_min.ln();
            let hi = (x_min + 45.0 * xc).ln().max(lo + 1e-6);
            let h = (hi - lo) / n as f64;
            let g: Vec<f64> = (0..=n)
                .map(|k| {
                    let u = lo + h * k as f64;
                    let x = u.exp();
                    curve.eval(x).ln() + (1.0 - a) * u - x / xc
                })
                .collect();
            let m = g.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = g
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    let w = if k == 0 || k == n {
                        1.0
                    } else if k % 2 == 1 {
                        4.0
                    } else {
                        2.0
                    };
                    w * (v - m).exp()
                })
                .sum();
            let want = m + (sum * h / 3.0).ln();
            let got = model.ln_norm(a, xc);
            assert!((got - want).abs() < 1e-12 * want.abs().max(1.0), "α={a} xc={xc}: {got} vs {want}");
        }
    }

    #[test]
    fn mle_recovers_alpha_and_xc_with_covering_intervals() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let xs = sample_truncated_power_law(&mut rng, 1.5, 1e-3, 1e-4, 5000);
        let fit = fit_truncated_power_law(&xs, 1e-4, None).expect("fit");
        assert!((fit.alpha - 1.5).abs() < 0.1, "α = {}", fit.alpha);
        assert!(fit.xc > 1e-3 / 1.5 && fit.xc < 1e-3 * 1.5, "xc = {}", fit.xc);
        assert!(fit.alpha_ci[0] <= 1.5 && 1.5 <= fit.alpha_ci[1], "α CI {:?}", fit.alpha_ci);
        assert!(fit.xc_ci[0] <= 1e-3 && 1e-3 <= fit.xc_ci[1], "xc CI {:?}", fit.xc_ci);
        assert!(fit.alpha_ci[1] - fit.alpha_ci[0] < 0.3, "α CI too wide {:?}", fit.alpha_ci);
        assert!(fit.ks_distance < 0.03, "KS {}", fit.ks_distance);
    }

    #[test]
    fn likelihood_ratio_prefers_tpl_on_tpl_data_and_exponential_on_exponential_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let xs = sample_truncated_power_law(&mut rng, 1.5, 1e-3, 1e-4, 5000);
        let a = analyze_magnitudes(&xs, 1e-4, None).expect("analysis");
        assert!(
            a.tpl_vs_exponential.log_ratio > 0.0 && a.tpl_vs_exponential.p_value < 0.01,
            "{:?}",
            a.tpl_vs_exponential
        );
        assert_eq!(a.tpl_vs_exponential.favours, "first");
        assert_eq!(a.tpl_vs_power_law.favours, "first", "{:?}", a.tpl_vs_power_law);

        // Exponential data: x_min + Exp(mean 1e-3). The TPL contains the exponential (α = 0), so
        // compare the pure power law against the exponential: the exponential must win clearly,
        // and the TPL fit must find α near 0.
        let exp: Vec<f64> = (0..3000).map(|_| 1e-4 - 1e-3 * (1.0 - rng.gen::<f64>()).ln()).collect();
        let pl = fit_power_law(&exp, 1e-4).expect("pl");
        let ex = fit_exponential(&exp, 1e-4).expect("exp");
        let xs = tail(&exp, 1e-4);
        let l_pl: Vec<f64> = pl_pointwise(&xs, pl.alpha, 1e-4).collect();
        let l_ex: Vec<f64> = exp_pointwise(&xs, ex.rate, 1e-4).collect();
        let lr = likelihood_ratio(&l_pl, &l_ex, false);
        assert_eq!(lr.favours, "second", "{lr:?}");
        let tpl = fit_truncated_power_law(&exp, 1e-4, None).expect("tpl");
        assert!(tpl.alpha.abs() < 0.15, "α on exponential data {}", tpl.alpha);
        let a = analyze_magnitudes(&exp, 1e-4, None).expect("analysis");
        assert_ne!(a.tpl_vs_exponential.favours, "first", "{:?}", a.tpl_vs_exponential);
    }

    #[test]
    fn efficiency_aware_fit_removes_the_thinning_bias() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let curve = EfficiencyCurve::threshold_model(5e-4, 1e-4);
        let all = sample_truncated_power_law(&mut rng, 1.5, 1e-3, 1e-4, 40_000);
        let kept: Vec<f64> = all.into_iter().filter(|&x| rng.gen::<f64>() < curve.eval(x)).collect();
        let x_lo = 3e-4;
        let naive = fit_truncated_power_law(&kept, x_lo, None).expect("naive");
        let aware = fit_truncated_power_law(&kept, x_lo, Some(&curve)).expect("aware");
        // Thinning removes small events: the naive exponent collapses; the aware one does not.
        assert!((naive.alpha - 1.5).abs() > 0.3, "naive α {}", naive.alpha);
        assert!((aware.alpha - 1.5).abs() < 0.15, "aware α {}", aware.alpha);
        assert!(aware.alpha_ci[0] <= 1.5 && 1.5 <= aware.alpha_ci[1], "{:?}", aware.alpha_ci);
        assert!(aware.xc > 1e-3 / 1.5 && aware.xc < 1.5e-3, "aware xc {}", aware.xc);
    }

    #[test]
    fn completeness_threshold_of_a_model_curve() {
        let c = EfficiencyCurve::threshold_model(5e-4, 1e-4);
        let x95 = c.completeness(0.95).expect("reaches 0.95");
        // Φ(1.645) = 0.95: threshold + 1.645 σ.
        assert!((x95 - 6.645e-4).abs() < 1e-5, "{x95}");
        assert!((c.eval(5e-4) - 0.5).abs() < 0.01);
    }

    #[test]
    fn histogram_and_ccdf_are_consistent() {
        let xs = [1e-4, 2e-4, 5e-4, 1e-3, 3e-3, -2e-3];
        let h = log_histogram(&xs, 1e-4, 4);
        assert_eq!(h.counts.iter().sum::<u64>(), 6);
        let c = ccdf(&xs, 1e-4);
        assert_eq!(c.len(), 6);
        assert_eq!(c[0].1, 1.0);
        assert!((c[5].1 - 1.0 / 6.0).abs() < 1e-12);
    }
}
