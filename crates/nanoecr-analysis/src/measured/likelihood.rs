//! The tabulated likelihood of the measurement-aware model (see the [module docs](super),
//! "Numerics"). The optional extra efficiency ε(x) weights both the kernel rows and the
//! normaliser per x node, and the tail beyond the grid at ε(x_top).

use std::cell::RefCell;

use rayon::prelude::*;

use super::kernel::KERNEL_HALF_WIDTH;
use super::lead_in::PreparedX;
use super::MeasurementModel;
use crate::powerlaw::{EfficiencyCurve, ALPHA_HI, ALPHA_LO};
use crate::special::ln_upper_gamma;
use crate::AnalysisError;

/// Grid nodes per σ in x and y.
const NODES_PER_SIGMA: f64 = 4.0;

/// Largest x grid (nodes): a reported magnitude 10⁵ σ above the floor is not a spike of this law.
const MAX_GRID_NODES: usize = 400_000;

/// One y bin with data: its (fractional) count and the kernel weights over its x band.
pub(super) struct Row {
    count: f64,
    /// The bin's index on the y grid.
    k: usize,
    first: usize,
    weights: Vec<f64>,
    /// The bin's reported magnitude.
    y: f64,
}

/// g(y | x) where the lead-in cannot act is a function of y − x alone, and the y bins and x
/// nodes share the step h, so on the pair (bin k, node j) it depends on k − j only: tabulated
/// once per likelihood (≈ 70 entries) instead of once per pair. Only the near-threshold nodes
/// whose lead-in matters need the pair-by-pair kernel.
struct PlainKernel {
    /// k − j of the first entry.
    d_lo: i64,
    /// g at k − j = d_lo, d_lo + 1, …
    g: Vec<f64>,
}

impl PlainKernel {
    fn new(model: &MeasurementModel, x_lo: f64, h: f64) -> Self {
        // y_k − x_j − offset = (y_min − x_lo − offset) + h (k − j); a band reaches
        // KERNEL_HALF_WIDTH σ plus one rounded-out node on either side.
        let base = model.y_min - x_lo - model.offset;
        let c = base / h;
        let half = (KERNEL_HALF_WIDTH * NODES_PER_SIGMA).ceil() + 2.0;
        let (d_lo, d_hi) = ((-c - half).floor() as i64, (-c + half).ceil() as i64);
        let g =
            (d_lo..=d_hi).map(|d| model.max_density_std((base + h * d as f64) / model.sigma) / model.sigma).collect();
        Self { d_lo, g }
    }

    /// g for bin `k` and node `j`, if within the table.
    fn at(&self, k: usize, j: usize) -> Option<f64> {
        let i = i64::try_from(k).ok()? - i64::try_from(j).ok()? - self.d_lo;
        self.g.get(usize::try_from(i).ok()?).copied()
    }
}

/// g(y_k | x_j): from the table where the lead-in cannot act, else pair by pair.
fn kernel_at(
    model: &MeasurementModel,
    plain: &PlainKernel,
    k: usize,
    y: f64,
    j: usize,
    xj: f64,
    prep: &PreparedX,
) -> f64 {
    let reported = !(model.leak > 0.0 && y < model.start_threshold);
    match (prep.matters, reported) {
        (false, true) => plain.at(k, j).unwrap_or_else(|| model.density_prepared(y, xj, prep)),
        _ => model.density_prepared(y, xj, prep),
    }
}

/// The tabulated likelihood (see the module docs).
pub(super) struct MeasuredLikelihood<'a> {
    x: Vec<f64>,
    ln_x: Vec<f64>,
    rows: Vec<Row>,
    /// Survival × ε × quadrature weight per x node.
    surv: Vec<f64>,
    x_top: f64,
    eff_top: f64,
    n: f64,
    h: f64,
    pub(super) ln_xc_lo: f64,
    pub(super) ln_xc_hi: f64,
    model: &'a MeasurementModel,
    efficiency: Option<&'a EfficiencyCurve>,
    y_max: f64,
    plain: PlainKernel,
    leads: LeadIns,
}

/// [`MeasurementModel::prepare`] of every x node, stored only where the lead-in matters.
struct LeadIns {
    /// Index into `preps` per x node (`u32::MAX`: the plain kernel).
    slot: Vec<u32>,
    preps: Vec<PreparedX>,
}

impl LeadIns {
    fn new(model: &MeasurementModel, x: &[f64]) -> Self {
        let matters: Vec<bool> = x.par_iter().map(|&xj| model.lead_in_matters(xj)).collect();
        let nodes: Vec<usize> = (0..x.len()).filter(|&j| matters[j]).collect();
        let preps: Vec<PreparedX> = nodes.par_iter().map(|&j| model.prepare(x[j])).collect();
        let mut slot = vec![u32::MAX; x.len()];
        for (i, &j) in nodes.iter().enumerate() {
            slot[j] = u32::try_from(i).unwrap_or(u32::MAX);
        }
        Self { slot, preps }
    }

    /// What `prepare(x[j])` gives.
    fn at(&self, j: usize) -> &PreparedX {
        self.preps.get(self.slot[j] as usize).unwrap_or(&PreparedX::PLAIN)
    }
}

thread_local! {
    /// The law on the x grid, rewritten by every likelihood evaluation on this thread (no
    /// allocation per call; one per thread, so the fit's profile searches can run side by side).
    static LAW: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

impl<'a> MeasuredLikelihood<'a> {
    pub(super) fn new(
        ys: &[f64],
        model: &'a MeasurementModel,
        efficiency: Option<&'a EfficiencyCurve>,
    ) -> Result<Self, AnalysisError> {
        let sigma = model.sigma;
        let h = sigma / NODES_PER_SIGMA;
        let reach = KERNEL_HALF_WIDTH * sigma;
        let y_max = ys.last().copied().unwrap_or(model.y_min).max(model.y_min);
        let x_lo = model.x_min_true.max(model.y_min - model.offset - reach);
        let x_hi = (y_max - model.offset + reach).max(x_lo + 8.0 * h);
        let span = ((x_hi - x_lo) / h).ceil();
        if !(span.is_finite() && span < MAX_GRID_NODES as f64) {
            return Err(AnalysisError::InvalidInput(format!(
                "reported magnitudes up to {y_max:.3e} span more than {MAX_GRID_NODES} grid steps of σ/4 = {h:.3e}"
            )));
        }
        let nx = span as usize;
        let x: Vec<f64> = (0..=nx).map(|j| x_lo + h * j as f64).collect();
        let x_top = x[nx];
        let eff = |v: f64| efficiency.map_or(1.0, |c| c.eval(v));
        let wq = |j: usize| if j == 0 || j == nx { 0.5 * h } else { h };
        let surv = x.iter().enumerate().map(|(j, &v)| model.survival(v) * eff(v) * wq(j)).collect();
        let ny = ((y_max - model.y_min) / h).ceil() as usize + 1;
        let mut counts = vec![0.0; ny + 1];
        for &y in ys {
            let pos = ((y - model.y_min) / h).max(0.0);
            let k = (pos.floor() as usize).min(ny - 1);
            let t = (pos - k as f64).clamp(0.0, 1.0);
            counts[k] += 1.0 - t;
            counts[k + 1] += t;
        }
        let band = |y: f64| -> (usize, usize) {
            let lo = ((y - model.offset - reach - x_lo) / h).floor().clamp(0.0, nx as f64) as usize;
            let hi = ((y - model.offset + reach - x_lo) / h).ceil().clamp(0.0, nx as f64) as usize;
            (lo, hi.max(lo))
        };
        let mut rows: Vec<Row> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0.0)
            .map(|(k, &count)| {
                let y = model.y_min + h * k as f64;
                let (lo, hi) = band(y);
                Row { count, k, first: lo, weights: vec![0.0; hi - lo + 1], y }
            })
            .collect();
        // The x-only part of the density (the lead-in) once per x node where it matters (a few
        // dozen near the threshold); then every row's weights, rows side by side on the pool.
        let plain = PlainKernel::new(model, x_lo, h);
        let leads = LeadIns::new(model, &x);
        let scale: Vec<f64> = x.iter().enumerate().map(|(j, &xj)| eff(xj) * wq(j)).collect();
        rows.par_iter_mut().for_each(|row| {
            for (w, j) in row.weights.iter_mut().zip(row.first..) {
                *w = kernel_at(model, &plain, row.k, row.y, j, x[j], leads.at(j)) * scale[j];
            }
        });
        Ok(Self {
            ln_x: x.iter().map(|v| v.ln()).collect(),
            x,
            rows,
            surv,
            x_top,
            eff_top: eff(x_top),
            n: ys.len() as f64,
            h,
            ln_xc_lo: (1e-5f64.min(model.y_min * 1e-2)).ln(),
            ln_xc_hi: (y_max * 1e4).ln(),
            model,
            efficiency,
            y_max,
            plain,
            leads,
        })
    }

    /// p(x_j)/e^M on the x grid into `p` (cleared first), and (M, ln ∫_{x_top}^∞ x^(−α) e^(−x/xc) dx).
    fn law(&self, alpha: f64, xc: f64, p: &mut Vec<f64>) -> (f64, f64) {
        p.clear();
        p.extend(self.x.iter().zip(&self.ln_x).map(|(x, l)| -alpha * l - x / xc));
        let ln_tail = (1.0 - alpha) * xc.ln() + ln_upper_gamma(1.0 - alpha, self.x_top / xc);
        let m = p.iter().copied().fold(if ln_tail.is_finite() { ln_tail } else { f64::NEG_INFINITY }, f64::max);
        for v in p.iter_mut() {
            *v = (*v - m).exp();
        }
        (m, ln_tail)
    }

    /// The normaliser ∫ p ε P(y ≥ y_min | x) dx in units of e^M.
    fn norm(&self, p: &[f64], m: f64, ln_tail: f64) -> f64 {
        let tail = if ln_tail.is_finite() { self.eff_top * (ln_tail - m).exp() } else { 0.0 };
        self.surv.iter().zip(p).map(|(a, b)| a * b).sum::<f64>() + tail
    }

    pub(super) fn at(&self, alpha: f64, ln_xc: f64) -> f64 {
        if !(ALPHA_LO..=ALPHA_HI).contains(&alpha) || !(self.ln_xc_lo..=self.ln_xc_hi).contains(&ln_xc) {
            return f64::NEG_INFINITY;
        }
        LAW.with(|cell| self.at_with(alpha, ln_xc, &mut cell.borrow_mut()))
    }

    /// [`MeasuredLikelihood::at`] with the law written into `p`.
    fn at_with(&self, alpha: f64, ln_xc: f64, p: &mut Vec<f64>) -> f64 {
        let (m, ln_tail) = self.law(alpha, ln_xc.exp(), p);
        let z = self.norm(p, m, ln_tail);
        if !(z > 0.0 && z.is_finite()) {
            return f64::NEG_INFINITY;
        }
        let mut s = 0.0;
        for row in &self.rows {
            let f: f64 = row.weights.iter().zip(&p[row.first..]).map(|(a, b)| a * b).sum();
            if f <= 0.0 {
                return f64::NEG_INFINITY;
            }
            s += row.count * f.ln();
        }
        let v = s - self.n * z.ln();
        if v.is_finite() {
            v
        } else {
            f64::NEG_INFINITY
        }
    }

    /// Model CDF of the reported magnitude at the sorted `ys` (cumulative trapezoid of f on the
    /// full y grid, over the normaliser).
    pub(super) fn cdf_at(&self, alpha: f64, xc: f64, ys: &[f64]) -> Vec<f64> {
        let mut p = Vec::with_capacity(self.x.len());
        let (m, ln_tail) = self.law(alpha, xc, &mut p);
        let z = self.norm(&p, m, ln_tail).max(1e-300);
        let reach = KERNEL_HALF_WIDTH * self.model.sigma;
        let (x0, nx) = (self.x[0], self.x.len() - 1);
        let ny = ((self.y_max - self.model.y_min) / self.h).ceil() as usize + 1;
        let eff = |v: f64| self.efficiency.map_or(1.0, |c| c.eval(v));
        // (y, first, last x node) of every y bin; f accumulated x node by x node (in increasing
        // j for each bin, as a per-bin sum would) so the lead-in is prepared once per node.
        let bins: Vec<(f64, usize, usize)> = (0..=ny)
            .map(|k| {
                let y = self.model.y_min + self.h * k as f64;
                let lo = ((y - self.model.offset - reach - x0) / self.h).floor().clamp(0.0, nx as f64) as usize;
                let hi = ((y - self.model.offset + reach - x0) / self.h).ceil().clamp(0.0, nx as f64) as usize;
                (y, lo, hi.max(lo))
            })
            .collect();
        // Bins with data have their kernel weights (× ε × quadrature weight) from `new`.
        let mut row_of = vec![None; bins.len()];
        for row in &self.rows {
            if let Some(r) = row_of.get_mut(row.k) {
                *r = Some(row);
            }
        }
        let mut f = vec![0.0; bins.len()];
        let mut k0 = 0;
        for (j, &xj) in self.x.iter().enumerate() {
            while k0 < bins.len() && bins[k0].2 < j {
                k0 += 1;
            }
            if k0 == bins.len() {
                break;
            }
            if bins[k0].1 > j {
                continue;
            }
            let prep = self.leads.at(j);
            let wq = if j == 0 || j == nx { 0.5 * self.h } else { self.h };
            let scale = eff(xj) * wq * p[j];
            let cover = f[k0..].iter_mut().zip(&bins[k0..]).zip(&row_of[k0..]).enumerate();
            for (i, ((fk, &(y, _, _)), row)) in cover.take_while(|(_, ((_, b), _))| b.1 <= j) {
                let tabulated = row.and_then(|r| r.weights.get(j.checked_sub(r.first)?));
                *fk += match tabulated {
                    Some(w) => w * p[j],
                    None => kernel_at(self.model, &self.plain, k0 + i, y, j, xj, prep) * scale,
                };
            }
        }
        let mut cum = vec![0.0; f.len()];
        for k in 1..f.len() {
            cum[k] = cum[k - 1] + 0.5 * self.h * (f[k] + f[k - 1]);
        }
        ys.iter()
            .map(|&y| {
                let pos = ((y - self.model.y_min) / self.h).max(0.0);
                let k = pos.floor() as usize;
                if k + 1 >= cum.len() {
                    return (cum[cum.len() - 1] / z).min(1.0);
                }
                let t = pos - k as f64;
                ((cum[k] + t * (cum[k + 1] - cum[k])) / z).min(1.0)
            })
            .collect()
    }
}
