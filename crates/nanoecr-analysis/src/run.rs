//! One run's analysis (and a campaign's), from columns and events already in memory:
//! [`RunInput`] is what every source (an HDF5 run file, a foreign file, an in-memory simulation)
//! is turned into, [`analyze_run`] does every statistic, [`RunAnalysis`] holds every number and
//! serialises to the JSON that `nanoecr analyze --json` prints.

use nanoecr_core::config::DetectionConfig;
use nanoecr_core::{Event, EventKind, Pillar};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::events::{
    activation_energy, popin_correlation, sign_balance, waiting_time_table, ActivationEnergy, PopinCorrelation,
    SignBalance, WaitingTimes,
};
use crate::measured::{
    detector_floor, detector_leak, detector_threshold, fit_measured_power_law, MeasuredFit, MeasurementModel,
};
use crate::powerlaw::{
    analyze_magnitudes, ccdf, log_histogram, EfficiencyCurve, ExponentialFit, LikelihoodRatio, LogHistogram,
    MagnitudeAnalysis, PowerLawFit, TruncatedPowerLawFit, ALPHA_HI, ALPHA_LO,
};
use crate::scoring::{score_events, ScoreOptions, ScoreReport};

/// A run as the analysis needs it. Columns are per sample and of equal length; an input read by
/// [`crate::io::load_run_with`] may have time, displacement, load and segment empty (Δρ/ρ always
/// has one value per row), which [`analyze_run`] and the plots do not accept.
#[derive(Debug, Clone, Default)]
pub struct RunInput {
    /// Where it came from (file path or a label).
    pub path: String,
    /// Run status as written ("complete", "aborted", "failed", "running").
    pub status: String,
    /// Why it ended, when recorded.
    pub end_reason: Option<String>,
    /// Pillar geometry.
    pub pillar: Option<Pillar>,
    /// Sampling rate, Hz.
    pub rate_hz: f64,
    /// Settle window, s.
    pub settle_s: f64,
    /// Time since run start, s.
    pub time_s: Vec<f64>,
    /// Displacement, nm.
    pub disp_nm: Vec<f64>,
    /// Load, µN.
    pub load_un: Vec<f64>,
    /// Δρ/ρ per sample (NaN in settle).
    pub delta_rho: Vec<f64>,
    /// Segment code per sample.
    pub segment: Vec<u8>,
    /// Detected (or stored) events.
    pub events: Vec<Event>,
    /// Simulator ground truth, when present.
    pub ground_truth: Option<Vec<Event>>,
    /// True α and xc from the run's `[simulation]` config, when simulated.
    pub true_alpha: Option<f64>,
    /// See `true_alpha`.
    pub true_xc: Option<f64>,
    /// Detector settings the events were found with (defaults when unknown).
    pub detection: DetectionConfig,
    /// Lower end x_min of the true magnitude law, when known (a simulated run's config);
    /// otherwise [`AnalysisOptions::law_x_min`].
    pub law_x_min: Option<f64>,
    /// Shortest and longest spike, s, when known (a simulated run's config); otherwise
    /// [`AnalysisOptions::spike_duration_s`].
    pub spike_duration_s: Option<[f64; 2]>,
}

impl RunInput {
    /// Peak engineering stress in MPa (from the largest load), NaN without a pillar or data.
    pub fn peak_stress_mpa(&self) -> f64 {
        let peak = self.load_un.iter().copied().filter(|v| v.is_finite()).fold(f64::NAN, f64::max);
        self.pillar.map_or(f64::NAN, |p| p.stress_mpa(peak))
    }

    /// Robust noise σ of Δρ/ρ, see [`noise_sigma_of`].
    pub fn noise_sigma(&self) -> f64 {
        noise_sigma_of(&self.delta_rho)
    }
}

/// Robust per-sample noise σ of a Δρ/ρ column (NaN samples, e.g. the settle window, skipped):
/// 1.4826 · MAD of first differences / √2. Spikes are sparse and short, so they barely move the
/// median; the slow baseline cancels in the differences. NaN with fewer than 10 differences.
///
/// Both medians are exact (the middle elements of the `total_cmp` order, as a sort gives them)
/// and found without a copy of the differences. A long column is read once: a sample of the
/// differences brackets both medians, and one pass on every core counts the values below and
/// above each bracket and keeps the few inside, among which the medians are selected
/// ([`bracketed_medians`]). Where a bracket misses (heavy ties, an unrepresentative sample) or the
/// column is short, a histogram of the top 16 key bits, then a selection in the bin that holds
/// the middle rank, two passes per median ([`median_by_radix`]).
pub fn noise_sigma_of(delta_rho: &[f64]) -> f64 {
    let (med, mad) = bracketed_medians(delta_rho);
    let Some(med) = med.or_else(|| median_by_radix(delta_rho, |d| d)) else { return f64::NAN };
    let Some(mad) = mad.or_else(|| median_by_radix(delta_rho, |d| (d - med).abs())) else { return f64::NAN };
    1.4826 * mad / std::f64::consts::SQRT_2
}

/// Columns shorter than this take the radix path: a sample would be much of the data.
const BRACKET_MIN_LEN: usize = 1 << 17;
/// Consecutive differences per sampled run (four cache lines of the column).
const BRACKET_RUN: usize = 32;
/// Half-width of a bracket in standard errors of the sample median's rank (a binomial's
/// √s/2); the pass checks the bracket, so this only sets how rarely the fallback runs.
const BRACKET_Z: f64 = 5.0;

/// What one part of the column gave in [`bracketed_medians`]'s pass.
#[derive(Default)]
struct BracketCounts {
    total: usize,
    /// Differences at or below / at or above the median's bracket (`total_cmp` order).
    d_below: usize,
    d_above: usize,
    /// Differences strictly inside the median's bracket.
    d_inside: Vec<f64>,
    /// Differences whose |d − median| is at most the MAD bracket's low end (inner) or at least its
    /// high end (outer) wherever the median lies in its bracket.
    a_inner: usize,
    a_outer: usize,
    /// The other differences: their |d − median| is computed once the median is known.
    a_unsure: Vec<f64>,
}

/// The values at ranks `lo`, `mid`, `hi` of `s` in the `total_cmp` order (reorders `s`).
fn three_ranks(s: &mut [f64], lo: usize, mid: usize, hi: usize) -> (f64, f64, f64) {
    let (below, &mut m, above) = s.select_nth_unstable_by(mid, f64::total_cmp);
    let l = if lo < mid { *below.select_nth_unstable_by(lo, f64::total_cmp).1 } else { m };
    let h = if hi > mid { *above.select_nth_unstable_by(hi - mid - 1, f64::total_cmp).1 } else { m };
    (l, m, h)
}

/// The median of `total` values from those strictly inside a bracket: `below` of them sort at or
/// before it and `above` at or after it. `None` unless both middle ranks fall inside.
fn median_inside(inside: &mut [f64], total: usize, below: usize, above: usize) -> Option<f64> {
    let hi_rank = total / 2;
    let lo_rank = if total % 2 == 0 { hi_rank.checked_sub(1)? } else { hi_rank };
    if total < 10
        || lo_rank < below
        || hi_rank + above >= total
        || Some(inside.len()) != total.checked_sub(below + above)
    {
        return None;
    }
    let r = hi_rank - below;
    let (lower_half, mid, _) = inside.select_nth_unstable_by(r, f64::total_cmp);
    let mid = *mid;
    Some(if total % 2 == 1 {
        mid
    } else {
        let lower = if lo_rank == hi_rank { mid } else { lower_half.iter().copied().max_by(f64::total_cmp)? };
        0.5 * (lower + mid)
    })
}

/// The sample of [`bracketed_medians`] on a column of `len` ≥ [`BRACKET_MIN_LEN`] values: how many
/// runs of [`BRACKET_RUN`] differences, and the distance between their starts (≈ 1/16 of the
/// differences, at most 65 536).
fn bracket_sample_layout(len: usize) -> (usize, usize) {
    let runs = (len / 16 / BRACKET_RUN).clamp(1, 65_536 / BRACKET_RUN);
    (runs, (len - BRACKET_RUN - 1) / runs)
}

/// The two medians of [`noise_sigma_of`] (of the finite first differences d, and of |d − that
/// median|) in one pass over a long column, each `None` where its bracket missed.
///
/// Evenly spaced runs of differences (≈ 1/16 of them, at most 65 536) give approximate medians and
/// brackets a few standard errors wide. The pass then counts, per bracket, the values at or below
/// its low end and at or above its high end and keeps those strictly inside (a few per cent); the
/// median is then a selection among those, exact whenever both middle ranks fall inside (checked).
/// For the MAD the median is not known during the pass, only its bracket [m_lo, m_hi]: a
/// difference is counted as inner (outer) only when |d − m| is below (above) the MAD bracket for
/// every m in it, with a margin that covers the rounding of d − m; the rest is kept and
/// classified once the median is known. The values compared are the very floats the radix path
/// selects among, so the result is the same to the bit.
fn bracketed_medians(v: &[f64]) -> (Option<f64>, Option<f64>) {
    if v.len() < BRACKET_MIN_LEN {
        return (None, None);
    }
    let (runs, step) = bracket_sample_layout(v.len());
    let mut sample = Vec::with_capacity(runs * BRACKET_RUN);
    for r in 0..runs {
        each_diff(&v[r * step..r * step + BRACKET_RUN + 1], |d| d, |d| sample.push(d));
    }
    let n = sample.len();
    if n < 1000 {
        return (None, None);
    }
    let half = (BRACKET_Z * (n as f64).sqrt() / 2.0).ceil() as usize + 2;
    let (lo, mid, hi) = (n / 2 - half.min(n / 2), n / 2, (n / 2 + half).min(n - 1));
    let (d_lo, d_mid, d_hi) = three_ranks(&mut sample, lo, mid, hi);
    for x in &mut sample {
        *x = (*x - d_mid).abs();
    }
    let (a_lo, _, a_hi) = three_ranks(&mut sample, lo, mid, hi);
    // The true median is anywhere in [d_lo, d_hi]: widen the MAD bracket by that much.
    let width = d_hi - d_lo;
    let a_lo = if a_lo - width > 0.0 { a_lo - width } else { 0.0 };
    let a_hi = a_hi + width;
    if !(order_key(d_lo) < order_key(d_hi) && a_lo < a_hi && a_hi.is_finite()) {
        return (None, None);
    }
    // A margin far above the rounding of the bounds below and of d − m (≤ 2⁻⁵³ relative).
    let margin = 1e-12 * (d_lo.abs() + d_hi.abs() + a_hi) + f64::MIN_POSITIVE;
    let (inner_lo, inner_hi) = (d_hi - a_lo + margin, d_lo + a_lo - margin);
    let (outer_lo, outer_hi) = (d_lo - a_hi - margin, d_hi + a_hi + margin);
    let (k_lo, k_hi) = (order_key(d_lo), order_key(d_hi));
    // Slices of `v` overlapping by one element, so each difference is in exactly one.
    let parts = rayon::current_num_threads().max(1);
    let part = v.len().div_ceil(parts).max(1 << 16);
    let slices: Vec<&[f64]> = (0..v.len()).step_by(part).map(|s| &v[s..(s + part + 1).min(v.len())]).collect();
    let counts = slices
        .par_iter()
        .map(|s| {
            let mut c = BracketCounts::default();
            // Counters in locals and counted without branches (about half of the values fall
            // on either side of each bracket); only the few values kept take a branch. Written
            // out rather than through `each_diff`, whose closure kept them in memory.
            let (mut total, mut d_below, mut d_above, mut a_inner, mut a_outer) = (0, 0, 0, 0, 0);
            let (k_lo, k_hi, inner_lo, inner_hi, outer_lo, outer_hi) =
                (k_lo, k_hi, inner_lo, inner_hi, outer_lo, outer_hi);
            let Some((&first, rest)) = s.split_first() else { return c };
            let mut prev = first;
            for &x in rest {
                let d = x - prev;
                prev = x;
                if !d.is_finite() {
                    continue;
                }
                let k = order_key(d);
                total += 1;
                let (below, above) = (k <= k_lo, k >= k_hi);
                d_below += usize::from(below);
                d_above += usize::from(above);
                let inner = (d >= inner_lo) & (d <= inner_hi);
                let outer = (d <= outer_lo) | (d >= outer_hi);
                a_inner += usize::from(inner);
                a_outer += usize::from(outer);
                if !(below | above) | !(inner | outer) {
                    if !(below | above) {
                        c.d_inside.push(d);
                    }
                    if !(inner | outer) {
                        c.a_unsure.push(d);
                    }
                }
            }
            (c.total, c.d_below, c.d_above, c.a_inner, c.a_outer) = (total, d_below, d_above, a_inner, a_outer);
            c
        })
        .reduce_with(|mut a, mut b| {
            a.total += b.total;
            a.d_below += b.d_below;
            a.d_above += b.d_above;
            a.d_inside.append(&mut b.d_inside);
            a.a_inner += b.a_inner;
            a.a_outer += b.a_outer;
            a.a_unsure.append(&mut b.a_unsure);
            a
        });
    let Some(mut c) = counts else { return (None, None) };
    let Some(med) = median_inside(&mut c.d_inside, c.total, c.d_below, c.d_above) else { return (None, None) };
    // |d − median| of the unsure ones, the same floats the radix path maps to; then as above.
    let (ka_lo, ka_hi) = (order_key(a_lo), order_key(a_hi));
    let (mut a_below, mut a_above) = (c.a_inner, c.a_outer);
    let mut inside = Vec::with_capacity(c.a_unsure.len());
    for &d in &c.a_unsure {
        let a = (d - med).abs();
        let k = order_key(a);
        if k <= ka_lo {
            a_below += 1;
        } else if k >= ka_hi {
            a_above += 1;
        } else {
            inside.push(a);
        }
    }
    (Some(med), median_inside(&mut inside, c.total, a_below, a_above))
}

/// `f(map(d))` for every finite first difference d of `v` (in order).
#[inline(always)]
fn each_diff(v: &[f64], map: impl Fn(f64) -> f64, mut f: impl FnMut(f64)) {
    for w in v.windows(2) {
        let d = w[1] - w[0];
        if d.is_finite() {
            f(map(d));
        }
    }
}

/// A key whose unsigned order is `f64::total_cmp`'s order: negative values have every bit
/// flipped, the others only the sign bit (without a branch: half the differences are negative).
#[inline(always)]
fn order_key(v: f64) -> u64 {
    let b = v.to_bits();
    b ^ (((b as i64 >> 63) as u64) | 1 << 63)
}

/// Bits of [`order_key`] a histogram bin covers (the top 16: sign, exponent, 4 mantissa bits).
const RADIX_SHIFT: u32 = 48;

/// The median of `map(d)` over the finite first differences d of `v`: the same value
/// [`crate::events::median_in_place`] gives on all of them, bit for bit. `None` when there are
/// fewer than 10.
///
/// Pass 1 counts the values per bin of their top key bits, on every core; the bin(s) holding the
/// middle rank(s) follow from the counts; pass 2 collects only the values of those bins (a few
/// per cent of them) and selects within. No copy of all values is made.
fn median_by_radix(v: &[f64], map: impl Fn(f64) -> f64 + Sync) -> Option<f64> {
    use rayon::prelude::*;
    const BINS: usize = 1 << (64 - RADIX_SHIFT);
    // Slices of `v` overlapping by one element, so each difference is in exactly one.
    let parts = rayon::current_num_threads().max(1);
    let step = v.len().div_ceil(parts).max(1 << 16);
    let slices: Vec<&[f64]> = (0..v.len()).step_by(step).map(|lo| &v[lo..(lo + step + 1).min(v.len())]).collect();
    let hist = slices
        .par_iter()
        .map(|s| {
            let mut h = vec![0u32; BINS];
            each_diff(s, &map, |x| h[(order_key(x) >> RADIX_SHIFT) as usize] += 1);
            h
        })
        .reduce_with(|mut a, b| {
            for (x, y) in a.iter_mut().zip(&b) {
                *x += y;
            }
            a
        })?;
    let total: usize = hist.iter().map(|&c| c as usize).sum();
    if total < 10 {
        return None;
    }
    // Ranks wanted: total/2, and for an even count also the one below it.
    let hi_rank = total / 2;
    let lo_rank = if total % 2 == 0 { hi_rank - 1 } else { hi_rank };
    let (mut before, mut lo_bin, mut before_lo) = (0usize, None, 0usize);
    let mut hi_bin = 0;
    for (b, &c) in hist.iter().enumerate() {
        let c = c as usize;
        if lo_bin.is_none() && lo_rank < before + c {
            lo_bin = Some(b);
            before_lo = before;
        }
        if hi_rank < before + c {
            hi_bin = b;
            break;
        }
        before += c;
    }
    let lo_bin = lo_bin.unwrap_or(hi_bin);
    // Every value of the bins from lo_bin to hi_bin (those between are empty: the ranks are
    // adjacent), in rank order offset by `before_lo`.
    let (kl, kh) = (lo_bin as u64, hi_bin as u64);
    let mut picked: Vec<f64> = slices
        .par_iter()
        .map(|s| {
            let mut p = Vec::new();
            each_diff(s, &map, |x| {
                if (kl..=kh).contains(&(order_key(x) >> RADIX_SHIFT)) {
                    p.push(x);
                }
            });
            p
        })
        .reduce_with(|mut a, mut b| {
            a.append(&mut b);
            a
        })
        .unwrap_or_default();
    let r = hi_rank - before_lo;
    let (below, mid, _) = picked.select_nth_unstable_by(r, f64::total_cmp);
    let mid = *mid;
    Some(if total % 2 == 1 {
        mid
    } else {
        // The other middle element is the largest of the lower half (rank r − 1 here).
        let lower = below.iter().copied().max_by(f64::total_cmp).unwrap_or(mid);
        0.5 * (lower + mid)
    })
}

/// The measurement model of `nanoecr-detect` with `detection` settings on a run of noise σ
/// `noise_sigma` sampled at `rate_hz`: boxcar spikes of `spike_duration_s`, the law from
/// `law_x_min`, the floor [`detector_floor`] computed from the detector's threshold and the
/// windows it keeps at that rate ([`nanoecr_detect::window_samples`]), and the lead-in: the
/// detector's start threshold ([`detector_threshold`]) and the share of a spike's
/// sub-threshold samples its baseline and mains canceller learn before the event opens
/// ([`detector_leak`]; at 10 kHz a spike covers 10–15 samples, and a near-threshold one pushes
/// several into the baseline before one crosses).
pub fn detector_measurement_model(
    noise_sigma: f64,
    rate_hz: f64,
    detection: &DetectionConfig,
    spike_duration_s: [f64; 2],
    law_x_min: f64,
) -> Result<MeasurementModel, crate::AnalysisError> {
    if !(noise_sigma.is_finite() && noise_sigma > 0.0) {
        return Err(crate::AnalysisError::InvalidInput(format!("no usable noise estimate (σ = {noise_sigma})")));
    }
    if !(rate_hz.is_finite() && rate_hz > 0.0) {
        return Err(crate::AnalysisError::InvalidInput(format!("no usable sampling rate ({rate_hz} Hz)")));
    }
    let windows = nanoecr_detect::window_samples(detection, rate_hz);
    let floor = detector_floor(noise_sigma, detection.threshold_sigma, detection.min_magnitude, windows.noise);
    let threshold = detector_threshold(noise_sigma, detection.threshold_sigma, detection.min_magnitude).min(floor);
    let mains_step = windows.mains_step;
    let mains_on = mains_step > 0.0;
    let leak = detector_leak(windows.baseline, mains_step);
    let mut model = MeasurementModel::boxcar(noise_sigma, rate_hz, spike_duration_s, law_x_min, floor)?
        .with_leak(threshold, leak)?;
    model.source = format!(
        "{}; floor = max({} × σ × (1 + 3 × MAD scatter), {:.1e}) for the detector's {}-sample noise window; events \
         open at {threshold:.3e}, and the samples before lose {leak:.2e} of each (4/{} through the baseline{})",
        model.source,
        detection.threshold_sigma,
        detection.min_magnitude,
        windows.noise,
        windows.baseline,
        if mains_on { format!(", {mains_step:.1e} through the mains canceller") } else { String::new() }
    );
    Ok(model)
}

/// Options of the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnalysisOptions {
    /// Attempt frequency ω for ΔG, 1/s.
    pub omega_per_s: f64,
    /// Temperature for ΔG, K.
    pub temperature_k: f64,
    /// Efficiency level that defines the completeness threshold.
    pub completeness_level: f64,
    /// Fit above this x instead of the completeness threshold, when set.
    pub x_min_override: Option<f64>,
    /// Matching tolerance for scoring, samples; `None`: 2 ms in samples at the run's rate, at
    /// least 2 ([`crate::scoring::default_tolerance_samples`]).
    pub tolerance_samples: Option<f64>,
    /// Spike duration range for the measurement model when the run does not say, s
    /// (shared/science.md: 1–1.5 ms).
    pub spike_duration_s: [f64; 2],
    /// Lower end of the true magnitude law for the measurement model when the run does not say
    /// (the paper's range starts at 10⁻⁴; the fit barely depends on it when it is well below
    /// the floor).
    pub law_x_min: f64,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        Self {
            omega_per_s: 1e13,
            temperature_k: 295.0,
            completeness_level: 0.95,
            x_min_override: None,
            tolerance_samples: None,
            spike_duration_s: [1.0e-3, 1.5e-3],
            law_x_min: 1e-4,
        }
    }
}

/// An event in the JSON output, with the keys the CLI promises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventJson {
    /// "spike" or "popin".
    pub kind: String,
    /// "p" or "n".
    pub sign: String,
    /// Onset, s.
    pub onset_time: f64,
    /// Peak, s.
    pub peak_time: f64,
    /// Duration, s.
    pub duration: f64,
    /// Signed Δρ/ρ for spikes; nm for pop-ins.
    pub magnitude: f64,
    /// "settle", "load", "hold", "unload" (or "safe_unload").
    pub segment: String,
    /// Stress at onset, MPa.
    pub stress_mpa: f64,
    /// Pop-ins: Δρ/ρ of the linked spike (null otherwise).
    pub linked_delta_rho: f64,
}

impl From<&Event> for EventJson {
    fn from(e: &Event) -> Self {
        Self {
            kind: e.kind.name().into(),
            sign: e.sign.name().into(),
            onset_time: e.onset_time_s,
            peak_time: e.peak_time_s,
            duration: e.duration_s,
            magnitude: e.magnitude,
            segment: e.segment.name().into(),
            stress_mpa: e.stress_mpa,
            linked_delta_rho: e.linked_delta_rho,
        }
    }
}

/// Fitted vs true distribution parameters of a simulated run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitVsTruth {
    /// True α from the config.
    pub true_alpha: f64,
    /// True xc from the config.
    pub true_xc: f64,
    /// Fitted α (naive, above completeness) and whether its CI covers the truth.
    pub alpha: f64,
    /// See `alpha`.
    pub alpha_ci_covers: bool,
    /// Fitted xc (naive) and whether it is within a factor 2 of the truth.
    pub xc: f64,
    /// See `xc`.
    pub xc_within_factor_2: bool,
    /// Efficiency-aware α and xc, when fitted.
    pub alpha_efficiency_aware: Option<f64>,
    /// See `alpha_efficiency_aware`.
    pub xc_efficiency_aware: Option<f64>,
    /// Measurement-aware α, its 95 % interval and whether that covers the truth, when fitted.
    pub alpha_measured: Option<f64>,
    /// See `alpha_measured`.
    pub alpha_measured_ci: Option<[f64; 2]>,
    /// See `alpha_measured`.
    pub alpha_measured_ci_covers: Option<bool>,
    /// Measurement-aware xc and whether it is within a factor 2 of the truth.
    pub xc_measured: Option<f64>,
    /// See `xc_measured`.
    pub xc_measured_within_factor_2: Option<bool>,
}

/// The estimator `nanoecr analyze` leads with (a key of [`Diagnostics`]). docs/accuracy.md shows
/// the measurement-aware fit unbiased on simulated detector output (mean α error −0.03 at 1 kHz,
/// −0.04 at 10 kHz) with its 95 % interval covering the true α in 19 of 20 campaigns at both
/// rates; the naive fit above the completeness threshold covers 15/20 at 10 kHz (bias +0.30) and
/// the efficiency-aware fit 0/20 (bias +0.78).
pub const HEADLINE_METHOD: &str = "measurement_aware";

/// A 95 % interval of α wider than this is no answer: the data do not tell a power law from
/// its neighbours (a single demo run's is 2 wide; a 20-run campaign's ≈ 1, docs/accuracy.md).
pub const MAX_CONSTRAINED_ALPHA_CI_WIDTH: f64 = 1.0;

/// The one α and xc of a run or a campaign group: [`HEADLINE_METHOD`]'s fit, copied from its
/// [`Diagnostics`] entry, so scripts need not know which estimator won. Numbers are NaN (`null`
/// in JSON) when that fit could not be made (see the notes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    /// Exponent α.
    pub alpha: f64,
    /// 95 % profile-likelihood interval of α.
    pub alpha_ci: [f64; 2],
    /// Exponential cutoff xc (|Δρ/ρ|).
    pub xc: f64,
    /// 95 % interval of xc (upper end `null`/∞ when a pure power law is not excluded).
    pub xc_ci: [f64; 2],
    /// The estimator, a key of [`Diagnostics`].
    pub method: String,
    /// Magnitudes fitted.
    pub n: usize,
    /// Lower end of the fitted magnitudes (for the measurement-aware fit, its floor on the
    /// reported |Δρ/ρ|).
    pub x_min: f64,
    /// Whether the data constrain α: a finite interval no wider than
    /// [`MAX_CONSTRAINED_ALPHA_CI_WIDTH`] whose ends are clear of the fit's search bounds
    /// (an end on a bound is the clamp, not a measurement).
    pub constrained: bool,
}

impl Headline {
    /// The headline of `fit` by `method`; with no fit, NaN numbers, n = 0, not constrained, and
    /// `x_min` as given (the floor the fit would have used, NaN when unknown).
    pub fn new(method: &str, fit: Option<&TruncatedPowerLawFit>, x_min: f64) -> Self {
        match fit {
            Some(f) => Self {
                alpha: f.alpha,
                alpha_ci: f.alpha_ci,
                xc: f.xc,
                xc_ci: f.xc_ci,
                method: method.into(),
                n: f.n,
                x_min: f.x_min,
                constrained: alpha_constrained(f),
            },
            None => Self {
                alpha: f64::NAN,
                alpha_ci: [f64::NAN; 2],
                xc: f64::NAN,
                xc_ci: [f64::NAN; 2],
                method: method.into(),
                n: 0,
                x_min,
                constrained: false,
            },
        }
    }
}

/// Whether a fit's α is an answer (see [`Headline::constrained`]). The profile search stops at
/// the bounds [−1, 4], so an end within 0.01 of one is the clamp.
pub fn alpha_constrained(f: &TruncatedPowerLawFit) -> bool {
    let [lo, hi] = f.alpha_ci;
    f.alpha.is_finite()
        && lo.is_finite()
        && hi.is_finite()
        && hi - lo <= MAX_CONSTRAINED_ALPHA_CI_WIDTH
        && lo > ALPHA_LO + 0.01
        && hi < ALPHA_HI - 0.01
}

/// The pure power law and exponential fitted to the naive fit's magnitudes, and the truncated
/// power law's likelihood ratios against them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelComparisons {
    /// Pure power law above the same x_min.
    pub power_law: PowerLawFit,
    /// Shifted exponential above the same x_min.
    pub exponential: ExponentialFit,
    /// Truncated power law vs pure power law (nested).
    pub tpl_vs_power_law: LikelihoodRatio,
    /// Truncated power law vs exponential (Vuong).
    pub tpl_vs_exponential: LikelihoodRatio,
}

/// Every magnitude estimator of a run or group, each `None` when it could not be fitted (see the
/// notes). The keys `naive`, `efficiency_aware` and `measurement_aware` are the values
/// [`Headline::method`] can take, and each holds the same kind of fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Truncated power law of the reported magnitudes above the completeness threshold (naive
    /// likelihood).
    pub naive: Option<TruncatedPowerLawFit>,
    /// Truncated power law down to the detection threshold, weighted by the efficiency curve
    /// (runs only).
    pub efficiency_aware: Option<TruncatedPowerLawFit>,
    /// Truncated power law of the reported magnitudes above the detector floor, fitted through
    /// the measurement model (`x_min` is that floor).
    pub measurement_aware: Option<TruncatedPowerLawFit>,
    /// The measurement model: the run's detector (noise σ, sampling rate, spike durations, floor
    /// from the detection settings), or a group's pooled model. None without a noise estimate.
    pub measurement_model: Option<MeasurementModel>,
    /// The measurement-aware fit's mean reported − true magnitude for large spikes.
    pub measurement_peak_bias: Option<f64>,
    /// The measurement-aware fit's correlation of (α, ln xc) at the maximum.
    pub measurement_alpha_ln_xc_correlation: Option<f64>,
    /// The naive fit against a pure power law and an exponential.
    pub comparisons: Option<ModelComparisons>,
}

impl Diagnostics {
    /// Gather the fits: the naive and efficiency-aware ones with their comparisons
    /// (`magnitudes`), the measurement model and the measurement-aware fit.
    pub fn new(
        magnitudes: Option<MagnitudeAnalysis>,
        measurement_model: Option<MeasurementModel>,
        measured: Option<MeasuredFit>,
    ) -> Self {
        let (naive, efficiency_aware, comparisons) = match magnitudes {
            Some(m) => (
                Some(m.truncated_power_law),
                m.efficiency_aware,
                Some(ModelComparisons {
                    power_law: m.power_law,
                    exponential: m.exponential,
                    tpl_vs_power_law: m.tpl_vs_power_law,
                    tpl_vs_exponential: m.tpl_vs_exponential,
                }),
            ),
            None => (None, None, None),
        };
        let (measurement_peak_bias, measurement_alpha_ln_xc_correlation) =
            measured.as_ref().map_or((None, None), |f| (Some(f.peak_bias), Some(f.alpha_ln_xc_correlation)));
        Self {
            naive,
            efficiency_aware,
            measurement_aware: measured.map(|f| f.fit),
            measurement_model,
            measurement_peak_bias,
            measurement_alpha_ln_xc_correlation,
            comparisons,
        }
    }

    /// The fit of `method` (a key of this struct), if made.
    pub fn fit(&self, method: &str) -> Option<&TruncatedPowerLawFit> {
        match method {
            "naive" => self.naive.as_ref(),
            "efficiency_aware" => self.efficiency_aware.as_ref(),
            "measurement_aware" => self.measurement_aware.as_ref(),
            _ => None,
        }
    }

    /// The headline: [`HEADLINE_METHOD`]'s fit, or, without it, a headline with no numbers at the
    /// measurement model's floor.
    pub fn headline(&self) -> Headline {
        Headline::new(
            HEADLINE_METHOD,
            self.fit(HEADLINE_METHOD),
            self.measurement_model.as_ref().map_or(f64::NAN, |m| m.y_min),
        )
    }
}

/// Every number of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunAnalysis {
    /// Source file or label.
    pub file: String,
    /// Run status; "ended without closing" for a file still marked running.
    pub status: String,
    /// Why it ended, when recorded.
    pub end_reason: Option<String>,
    /// Sampling rate, Hz.
    pub rate_hz: f64,
    /// Peak engineering stress, MPa.
    pub peak_stress_mpa: f64,
    /// Samples in the file.
    pub n_samples: usize,
    /// Robust noise σ of Δρ/ρ.
    pub noise_sigma: f64,
    /// Spike, pop-in and interlock counts.
    pub n_spikes: usize,
    /// See `n_spikes`.
    pub n_popins: usize,
    /// See `n_spikes`.
    pub n_interlocks: usize,
    /// Detection threshold in Δρ/ρ assumed for the efficiency model.
    pub detection_threshold: f64,
    /// Efficiency curve used (measured from ground truth, or the threshold model).
    pub efficiency_curve: EfficiencyCurve,
    /// Completeness threshold: smallest x above which efficiency ≥ 0.95.
    pub completeness_threshold: Option<f64>,
    /// Lower end of the naive fit.
    pub fit_x_min: f64,
    /// The one α and xc this run gives, from [`HEADLINE_METHOD`].
    pub headline: Headline,
    /// Every magnitude fit, the headline's included, and the model comparisons.
    pub diagnostics: Diagnostics,
    /// Log-binned histogram of |Δρ/ρ| from 1e-4.
    pub histogram: LogHistogram,
    /// Waiting times per segment and sign.
    pub waiting_times: Vec<WaitingTimes>,
    /// p − n per segment.
    pub sign_balance: Vec<SignBalance>,
    /// Pop-ins and their strain/resistivity correlation.
    pub popins: PopinCorrelation,
    /// ΔG from the median spike duration.
    pub activation_energy: ActivationEnergy,
    /// Score against ground truth, when the run carries it.
    pub score: Option<ScoreReport>,
    /// Fitted vs true α, xc, when simulated.
    pub fit_vs_truth: Option<FitVsTruth>,
    /// Every event (spikes and pop-ins).
    pub events: Vec<EventJson>,
    /// Anything the reader should know (too few events, fallbacks).
    pub notes: Vec<String>,
}

impl RunAnalysis {
    /// The |Δρ/ρ| of the spikes (what the magnitude fits used).
    pub fn spike_magnitudes(&self) -> Vec<f64> {
        self.events.iter().filter(|e| e.kind == "spike").map(|e| e.magnitude.abs()).collect()
    }

    /// (x, P(X ≥ x)) of the spikes from 1e-4.
    pub fn ccdf(&self) -> Vec<(f64, f64)> {
        ccdf(&self.spike_magnitudes(), 1e-4)
    }
}

/// Analyse one run.
pub fn analyze_run(input: &RunInput, opts: &AnalysisOptions) -> RunAnalysis {
    let mut notes = Vec::new();
    let spikes: Vec<Event> = input.events.iter().filter(|e| e.kind == EventKind::Spike).copied().collect();
    let mags: Vec<f64> = spikes.iter().map(|e| e.magnitude.abs()).collect();
    let sigma = input.noise_sigma();
    let threshold = if sigma.is_finite() {
        (input.detection.threshold_sigma * sigma).max(input.detection.min_magnitude)
    } else {
        input.detection.min_magnitude
    };
    let model = EfficiencyCurve::threshold_model(threshold, if sigma.is_finite() { sigma } else { 1e-4 });

    let score = input.ground_truth.as_ref().map(|truth| {
        let mut so = ScoreOptions::for_rate(input.rate_hz);
        if let Some(t) = opts.tolerance_samples {
            so.tolerance_samples = t;
        }
        score_events(&input.events, truth, &so)
    });
    // A measured curve is preferred when it has enough true spikes to mean something and its
    // well-populated bins reach the completeness level (a single run's few large spikes may not).
    let curve = match score.as_ref().and_then(|s| s.efficiency_curve()) {
        Some(c)
            if score.as_ref().is_some_and(|s| s.counts.n_true >= 200)
                && c.completeness(opts.completeness_level).is_some() =>
        {
            c
        }
        _ => model,
    };
    let completeness = curve.completeness(opts.completeness_level);
    let fit_x_min = opts.x_min_override.or(completeness).unwrap_or(threshold * 1.4);
    if completeness.is_none() {
        notes.push(format!("efficiency never reaches {}; fitting above {fit_x_min:.3e}", opts.completeness_level));
    }
    let measurement_model = detector_measurement_model(
        sigma,
        input.rate_hz,
        &input.detection,
        input.spike_duration_s.unwrap_or(opts.spike_duration_s),
        input.law_x_min.unwrap_or(opts.law_x_min),
    );
    // The naive and efficiency-aware fits and the measurement-aware fit are independent and
    // together most of a run's time: run them side by side on rayon's pool.
    let (magnitudes, measured_fit) = rayon::join(
        || analyze_magnitudes(&mags, fit_x_min, Some((&curve, threshold))),
        || measurement_model.as_ref().ok().map(|model| fit_measured_power_law(&mags, model, None)),
    );
    let magnitudes = match magnitudes {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!(
                "no naive or efficiency-aware fit above the completeness threshold {fit_x_min:.3e}: {e}"
            ));
            None
        }
    };
    let measurement_model = match measurement_model {
        Ok(m) => Some(m),
        Err(e) => {
            notes.push(format!("no measurement model: {e}"));
            None
        }
    };
    let measured_fit = measured_fit.and_then(|r| match r {
        Ok(f) => Some(f),
        Err(e) => {
            notes.push(format!("no measurement-aware fit: {e}"));
            None
        }
    });
    let diagnostics = Diagnostics::new(magnitudes, measurement_model, measured_fit);
    let fit_vs_truth = match (input.true_alpha, input.true_xc, diagnostics.naive.as_ref()) {
        (Some(a), Some(xc), Some(t)) => {
            let meas = diagnostics.measurement_aware.as_ref();
            Some(FitVsTruth {
                true_alpha: a,
                true_xc: xc,
                alpha: t.alpha,
                alpha_ci_covers: t.alpha_ci[0] <= a && a <= t.alpha_ci[1],
                xc: t.xc,
                xc_within_factor_2: t.xc >= xc / 2.0 && t.xc <= xc * 2.0,
                alpha_efficiency_aware: diagnostics.efficiency_aware.as_ref().map(|f| f.alpha),
                xc_efficiency_aware: diagnostics.efficiency_aware.as_ref().map(|f| f.xc),
                alpha_measured: meas.map(|f| f.alpha),
                alpha_measured_ci: meas.map(|f| f.alpha_ci),
                alpha_measured_ci_covers: meas.map(|f| f.alpha_ci[0] <= a && a <= f.alpha_ci[1]),
                xc_measured: meas.map(|f| f.xc),
                xc_measured_within_factor_2: meas.map(|f| f.xc >= xc / 2.0 && f.xc <= xc * 2.0),
            })
        }
        _ => None,
    };
    let status = if input.status == "running" { "ended without closing".to_string() } else { input.status.clone() };
    let height_nm = input.pillar.map_or(5000.0, |p| p.height_nm());
    RunAnalysis {
        file: input.path.clone(),
        status,
        end_reason: input.end_reason.clone(),
        rate_hz: input.rate_hz,
        peak_stress_mpa: input.peak_stress_mpa(),
        n_samples: input.time_s.len(),
        noise_sigma: sigma,
        n_spikes: spikes.len(),
        n_popins: input.events.iter().filter(|e| e.kind == EventKind::Popin).count(),
        n_interlocks: input.events.iter().filter(|e| e.kind == EventKind::Interlock).count(),
        detection_threshold: threshold,
        efficiency_curve: curve,
        completeness_threshold: completeness,
        fit_x_min,
        headline: diagnostics.headline(),
        diagnostics,
        histogram: log_histogram(&mags, 1e-4, 5),
        waiting_times: waiting_time_table(&input.events),
        sign_balance: sign_balance(&input.events),
        popins: popin_correlation(&input.events, height_nm),
        activation_energy: activation_energy(&input.events, opts.omega_per_s, opts.temperature_k),
        score,
        fit_vs_truth,
        events: input.events.iter().filter(|e| e.kind != EventKind::Interlock).map(EventJson::from).collect(),
        notes,
    }
}

/// One measurement model for magnitudes pooled over runs: the highest floor (complete in every
/// run), the rms noise σ, the lowest law x_min and the mean start threshold; the max-of-samples
/// weights and the leak must agree (same sampling rate, spike durations and detector windows),
/// else pooling would mix kernels and this is an error.
pub fn pooled_measurement_model(models: &[&MeasurementModel]) -> Result<MeasurementModel, crate::AnalysisError> {
    let Some(first) = models.first() else {
        return Err(crate::AnalysisError::InvalidInput("no run has a measurement model".into()));
    };
    let same_kernel = models.iter().all(|m| {
        m.max_of_weights.len() == first.max_of_weights.len()
            && m.max_of_weights.iter().zip(&first.max_of_weights).all(|(a, b)| (a - b).abs() < 1e-9)
            && m.offset == first.offset
            && (m.leak - first.leak).abs() <= 1e-12
    });
    if !same_kernel {
        return Err(crate::AnalysisError::InvalidInput(
            "runs differ in sampling rate, spike durations or detector windows: no common measurement model".into(),
        ));
    }
    let n = models.len() as f64;
    let sigma = (models.iter().map(|m| m.sigma * m.sigma).sum::<f64>() / n).sqrt();
    let y_min = models.iter().map(|m| m.y_min).fold(f64::NEG_INFINITY, f64::max);
    let x_min = models.iter().map(|m| m.x_min_true).fold(f64::INFINITY, f64::min);
    // Each run's threshold is at most its floor, so the mean is at most the highest floor.
    let threshold = (models.iter().map(|m| m.start_threshold).sum::<f64>() / n).min(y_min);
    MeasurementModel::new(
        sigma,
        first.max_of_weights.clone(),
        first.offset,
        x_min,
        y_min,
        format!("pooled over {} runs: rms σ, highest floor, mean start threshold; {}", models.len(), first.source),
    )?
    .with_leak(threshold, first.leak)
}

/// Runs with the same peak stress, analysed together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StressGroup {
    /// Peak stress of the group (rounded to 10 MPa).
    pub peak_stress_mpa: f64,
    /// Files in the group.
    pub files: Vec<String>,
    /// Spikes pooled.
    pub n_spikes: usize,
    /// The group's one α and xc, from [`HEADLINE_METHOD`]'s pooled fit.
    pub headline: Headline,
    /// Pooled fits: naive above the largest completeness threshold of the group, and
    /// measurement-aware through the pooled model ([`pooled_measurement_model`]); no
    /// efficiency-aware fit (the runs' curves differ).
    pub diagnostics: Diagnostics,
    /// Pooled p − n per segment.
    pub sign_balance: Vec<SignBalance>,
    /// Pooled waiting times (waits never span files).
    pub waiting_times: Vec<WaitingTimes>,
    /// Why there is no fit, if there is none.
    pub notes: Vec<String>,
}

/// A campaign: runs grouped by peak stress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignAnalysis {
    /// Groups in increasing stress.
    pub groups: Vec<StressGroup>,
}

/// Group analysed runs (with their events) by peak stress and pool each group.
pub fn analyze_campaign(runs: &[(RunAnalysis, Vec<Event>)]) -> CampaignAnalysis {
    let mut keys: Vec<i64> = runs
        .iter()
        .map(|(a, _)| if a.peak_stress_mpa.is_finite() { (a.peak_stress_mpa / 10.0).round() as i64 } else { -1 })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    // Stress groups are independent fits: run them on rayon's pool (order kept by collect).
    let groups = keys
        .into_par_iter()
        .map(|k| {
            let members: Vec<&(RunAnalysis, Vec<Event>)> = runs
                .iter()
                .filter(|(a, _)| {
                    (if a.peak_stress_mpa.is_finite() { (a.peak_stress_mpa / 10.0).round() as i64 } else { -1 }) == k
                })
                .collect();
            let mut mags = Vec::new();
            let mut balance: Vec<SignBalance> = Vec::new();
            let mut waits: Vec<Vec<f64>> = Vec::new();
            let mut labels: Vec<(String, String)> = Vec::new();
            let mut x_min: f64 = 0.0;
            for (a, ev) in &members {
                mags.extend(ev.iter().filter(|e| e.kind == EventKind::Spike).map(|e| e.magnitude.abs()));
                x_min = x_min.max(a.fit_x_min);
                let b = sign_balance(ev);
                if balance.is_empty() {
                    balance = b;
                } else {
                    for (acc, v) in balance.iter_mut().zip(b) {
                        acc.p += v.p;
                        acc.n += v.n;
                    }
                }
                for (i, w) in waiting_time_table(ev).into_iter().enumerate() {
                    if waits.len() <= i {
                        waits.push(Vec::new());
                        labels.push((w.segment.clone(), w.sign.clone()));
                    }
                    waits[i].extend_from_slice(&w.waits_s);
                }
            }
            for b in &mut balance {
                b.difference = b.p as i64 - b.n as i64;
                b.sigma = ((b.p + b.n) as f64).sqrt();
                b.z = if b.sigma > 0.0 { b.difference as f64 / b.sigma } else { 0.0 };
            }
            let mut notes = Vec::new();
            let magnitudes = match analyze_magnitudes(&mags, x_min.max(1e-6), None) {
                Ok(m) => Some(m),
                Err(e) => {
                    notes.push(format!("no pooled fit: {e}"));
                    None
                }
            };
            let models: Vec<&MeasurementModel> =
                members.iter().filter_map(|(a, _)| a.diagnostics.measurement_model.as_ref()).collect();
            let measured_fit =
                match pooled_measurement_model(&models).and_then(|model| fit_measured_power_law(&mags, &model, None)) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        notes.push(format!("no pooled measurement-aware fit: {e}"));
                        None
                    }
                };
            let model = measured_fit.as_ref().map(|f| f.model.clone());
            let diagnostics = Diagnostics::new(magnitudes, model, measured_fit);
            StressGroup {
                peak_stress_mpa: k as f64 * 10.0,
                files: members.iter().map(|(a, _)| a.file.clone()).collect(),
                n_spikes: mags.len(),
                headline: diagnostics.headline(),
                diagnostics,
                sign_balance: balance,
                waiting_times: waits
                    .iter()
                    .zip(&labels)
                    .map(|(w, (s, g))| crate::events::fit_waiting_times(w, s, g))
                    .collect(),
                notes,
            }
        })
        .collect();
    CampaignAnalysis { groups }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::powerlaw::sample_truncated_power_law;
    use nanoecr_core::Segment;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The noise σ by the old way: copy the finite differences, two medians by selection
    /// (`median_in_place`, itself tested against a sort).
    fn noise_sigma_by_copy(delta_rho: &[f64]) -> f64 {
        let mut d: Vec<f64> = delta_rho.windows(2).map(|w| w[1] - w[0]).filter(|v| v.is_finite()).collect();
        if d.len() < 10 {
            return f64::NAN;
        }
        let med = crate::events::median_in_place(&mut d);
        for v in &mut d {
            *v = (*v - med).abs();
        }
        1.4826 * crate::events::median_in_place(&mut d) / std::f64::consts::SQRT_2
    }

    /// σ from the histogram-and-select medians alone (what [`noise_sigma_of`] falls back to).
    fn noise_sigma_by_radix(delta_rho: &[f64]) -> f64 {
        let Some(med) = median_by_radix(delta_rho, |d| d) else { return f64::NAN };
        let Some(mad) = median_by_radix(delta_rho, |d| (d - med).abs()) else { return f64::NAN };
        1.4826 * mad / std::f64::consts::SQRT_2
    }

    /// The histogram-and-select medians, and `noise_sigma_of` whichever path it takes, give the
    /// copy-and-select σ bit for bit: odd and even counts, NaN gaps, heavy ties (quantised values,
    /// signed zeros), lengths that split into several ranges on the pool, and too few values.
    #[test]
    fn noise_sigma_by_radix_equals_the_copy_and_select() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let noise = rand_distr::Normal::new(0.0, 1e-4).expect("normal");
        for n in [0usize, 5, 11, 12, 13, 1000, 1001, 200_003, 300_000] {
            for quantised in [false, true] {
                let v: Vec<f64> = (0..n)
                    .map(|i| {
                        if i % 97 < 3 {
                            f64::NAN
                        } else if quantised {
                            // Few distinct values: most of them share a histogram bin.
                            let x: f64 = rng.sample(noise);
                            let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
                            (x * 2e4).round() * 5e-5 * sign
                        } else {
                            rng.sample(noise) + 1e-3 * (i as f64 * 1e-3).sin()
                        }
                    })
                    .collect();
                let old = noise_sigma_by_copy(&v);
                for (how, new) in [("radix", noise_sigma_by_radix(&v)), ("noise_sigma_of", noise_sigma_of(&v))] {
                    assert!(
                        new.to_bits() == old.to_bits() || (new.is_nan() && old.is_nan()),
                        "n {n}, quantised {quantised}, {how}: {new:e} vs {old:e}"
                    );
                }
                if n >= 1000 {
                    assert!(old.is_finite() && old > 0.0, "n {n}: σ {old}");
                }
            }
        }
    }

    /// Long columns take the one-pass bracketed medians, which give the copy-and-select σ bit for
    /// bit (odd and even counts, NaN gaps, a slow drift, sparse spikes); a column whose sample
    /// misrepresents it (every sampled run a steep ramp) misses the bracket in the pass's check,
    /// and the radix path gives the same σ anyway.
    #[test]
    fn bracketed_medians_equal_the_copy_and_select_or_stand_aside() {
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let noise = rand_distr::Normal::new(0.0, 1e-4).expect("normal");
        for n in [BRACKET_MIN_LEN, BRACKET_MIN_LEN + 1, 400_001, 1_000_000] {
            let v: Vec<f64> = (0..n)
                .map(|i| {
                    if i % 1013 < 5 {
                        f64::NAN
                    } else if i % 5000 == 7 {
                        5e-3
                    } else {
                        rng.sample(noise) + 1e-3 * (i as f64 * 1e-4).sin()
                    }
                })
                .collect();
            let (med, mad) = bracketed_medians(&v);
            assert!(med.is_some() && mad.is_some(), "n {n}: a bracket missed ({med:?}, {mad:?})");
            let (new, old) = (noise_sigma_of(&v), noise_sigma_by_copy(&v));
            assert_eq!(new.to_bits(), old.to_bits(), "n {n}: {new:e} vs {old:e}");
        }
        let n = 300_000;
        let mut v: Vec<f64> = (0..n).map(|_| rng.sample(noise)).collect();
        let (runs, step) = bracket_sample_layout(n);
        for r in 0..runs {
            for i in 0..=BRACKET_RUN {
                v[r * step + i] = 1e-2 * i as f64 + rng.sample(noise);
            }
        }
        assert_eq!(bracketed_medians(&v), (None, None), "the sample's medians are ≈ 10⁻² away");
        let (new, old) = (noise_sigma_of(&v), noise_sigma_by_copy(&v));
        assert!(new.is_finite() && new.to_bits() == old.to_bits(), "{new:e} vs {old:e}");
    }

    /// A synthetic run: noise-only Δρ/ρ columns and spikes from the paper's distribution.
    pub(crate) fn synthetic_input(seed: u64) -> RunInput {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = 32_000;
        let rate = 1000.0;
        let time_s: Vec<f64> = (0..n).map(|i| i as f64 / rate).collect();
        let segment: Vec<u8> = time_s.iter().map(|&t| if t < 2.0 { 0 } else { 1 + ((t - 2.0) / 10.0) as u8 }).collect();
        let noise = rand_distr::Normal::new(0.0, 1e-4).expect("normal");
        let delta_rho: Vec<f64> = time_s.iter().map(|&t| if t < 2.0 { f64::NAN } else { rng.sample(noise) }).collect();
        let mags = sample_truncated_power_law(&mut rng, 1.5, 1e-3, 6.6e-4, 400);
        let events = mags
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let t = 2.0 + 28.0 * i as f64 / 400.0;
                let seg = Segment::from_code(1 + ((t - 2.0) / 10.0) as u8).unwrap_or(Segment::Hold);
                let sign = if rng.gen::<f64>() < 0.5 { 1.0 } else { -1.0 };
                Event::spike(t, t + 5e-4, 1.2e-3, sign * m, seg, 1000.0)
            })
            .collect();
        RunInput {
            path: format!("synthetic-{seed}"),
            status: "complete".into(),
            pillar: Some(Pillar {
                diameter_um: 2.0,
                height_um: 5.0,
                poisson_ratio: 1.0 / 3.0,
                youngs_modulus_gpa: 88.0,
            }),
            rate_hz: rate,
            settle_s: 2.0,
            load_un: time_s.iter().map(|t| 200.0 * t).collect(),
            disp_nm: vec![0.0; n],
            time_s,
            delta_rho,
            segment,
            events,
            ..Default::default()
        }
    }

    #[test]
    fn synthetic_run_analysis_has_every_section() {
        let input = synthetic_input(1);
        let a = analyze_run(&input, &AnalysisOptions::default());
        assert!((a.noise_sigma - 1e-4).abs() < 1e-5, "σ {}", a.noise_sigma);
        assert_eq!(a.n_spikes, 400);
        let m = a.diagnostics.naive.as_ref().expect("fit");
        assert!((m.alpha - 1.5).abs() < 0.6, "α {}", m.alpha);
        assert_eq!(a.sign_balance.len(), 3);
        assert_eq!(a.waiting_times.len(), 8);
        let json = serde_json::to_value(&a).expect("json");
        for key in ["kind", "sign", "onset_time", "peak_time", "duration", "magnitude", "segment"] {
            assert!(json["events"][0].get(key).is_some(), "missing {key}");
        }
        let running = analyze_run(&RunInput { status: "running".into(), ..input }, &AnalysisOptions::default());
        assert_eq!(running.status, "ended without closing");
    }

    /// A run whose spikes are what the detector model reports: true magnitudes from the paper's
    /// law (x ≥ 1e-4), each seen as the max over 1–2 noisy samples, kept above the floor.
    pub(crate) fn measured_synthetic_input(seed: u64) -> RunInput {
        let mut input = synthetic_input(seed);
        let model =
            detector_measurement_model(1e-4, 1000.0, &DetectionConfig::default(), [1e-3, 1.5e-3], 1e-4).expect("model");
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1000);
        let ys = crate::measured::sample_measured(&mut rng, 1.5, 1e-3, &model, 12_000);
        let n = ys.len() as f64;
        input.events = ys
            .iter()
            .enumerate()
            .map(|(i, &y)| {
                let t = 2.0 + 28.0 * i as f64 / n;
                let seg = Segment::from_code(1 + ((t - 2.0) / 10.0) as u8).unwrap_or(Segment::Hold);
                let sign = if rng.gen::<f64>() < 0.5 { 1.0 } else { -1.0 };
                Event::spike(t, t + 5e-4, 1.2e-3, sign * y, seg, 1000.0)
            })
            .collect();
        input.true_alpha = Some(1.5);
        input.true_xc = Some(1e-3);
        input
    }

    #[test]
    fn run_analysis_reports_naive_and_measurement_aware_fits() {
        let runs: Vec<(RunAnalysis, Vec<Event>)> = [measured_synthetic_input(5), measured_synthetic_input(6)]
            .iter()
            .map(|i| (analyze_run(i, &AnalysisOptions::default()), i.events.clone()))
            .collect();
        let a = &runs[0].0;
        let model = a.diagnostics.measurement_model.as_ref().expect("model");
        // σ from the Δρ/ρ column, floor from the default detection settings (a 1000-sample noise
        // window: 5σ × (1 + 3 × 1.276/√1000) ≈ 5.6 × 10⁻⁴ at σ = 10⁻⁴).
        assert!((model.sigma / 1e-4 - 1.0).abs() < 0.05, "σ {}", model.sigma);
        assert!(model.y_min > 5.3e-4 && model.y_min < 5.9e-4, "floor {}", model.y_min);
        assert!((model.max_of_weights[1] - 0.25).abs() < 1e-3);
        let m = a.diagnostics.measurement_aware.as_ref().expect("measured fit");
        assert!(m.n > 1000, "n {}", m.n);
        // ≈ 1 700 magnitudes: the 95 % half-width is ≈ 0.35, so a 2.5σ band is ±0.45.
        assert!((m.alpha - 1.5).abs() < 0.45, "α {} {:?}", m.alpha, m.alpha_ci);
        assert!(m.alpha_ci[0] <= 1.5 && 1.5 <= m.alpha_ci[1], "{:?}", m.alpha_ci);
        let f = a.fit_vs_truth.as_ref().expect("fit vs truth");
        assert_eq!(f.alpha_measured, Some(m.alpha));
        assert_eq!(f.alpha_measured_ci_covers, Some(true));
        assert!(f.alpha_efficiency_aware.is_some());
        let json = serde_json::to_value(a).expect("json");
        assert!(json["diagnostics"]["measurement_aware"]["alpha"].is_f64());
        assert!(json["diagnostics"]["naive"]["alpha"].is_f64());

        // Pooled over a campaign: one model with the highest floor, one measured fit per group.
        let c = analyze_campaign(&runs);
        let g = &c.groups[0];
        let pooled = g.diagnostics.measurement_aware.as_ref().expect("pooled measured fit");
        let floor =
            runs.iter().filter_map(|r| r.0.diagnostics.measurement_model.as_ref()).map(|m| m.y_min).fold(0.0, f64::max);
        assert_eq!(g.diagnostics.measurement_model.as_ref().expect("pooled model").y_min, floor);
        assert_eq!(pooled.x_min, floor);
        assert!(pooled.alpha_ci[0] <= 1.5 && 1.5 <= pooled.alpha_ci[1], "{:?}", pooled.alpha_ci);
        assert_eq!(g.headline.method, HEADLINE_METHOD);
        assert_eq!((g.headline.alpha, g.headline.alpha_ci, g.headline.n), (pooled.alpha, pooled.alpha_ci, pooled.n));
    }

    #[test]
    fn headline_is_the_measurement_aware_fit_and_says_when_it_is_unconstrained() {
        let input = measured_synthetic_input(7);
        let a = analyze_run(&input, &AnalysisOptions::default());
        let f = a.diagnostics.measurement_aware.as_ref().expect("measured fit");
        let h = &a.headline;
        assert_eq!(h.method, HEADLINE_METHOD);
        assert_eq!(a.diagnostics.fit(&h.method), Some(f));
        assert_eq!(
            (h.alpha, h.alpha_ci, h.xc, h.xc_ci, h.n, h.x_min),
            (f.alpha, f.alpha_ci, f.xc, f.xc_ci, f.n, f.x_min)
        );
        // ≈ 1 700 magnitudes: an interval ≈ 0.7 wide, clear of the bounds.
        assert!(h.constrained, "{:?}", h.alpha_ci);
        let json = serde_json::to_value(&a).expect("json");
        let keys: Vec<&str> = json["headline"].as_object().expect("headline").keys().map(String::as_str).collect();
        let mut want = ["alpha", "alpha_ci", "xc", "xc_ci", "method", "n", "x_min", "constrained"];
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        assert_eq!(json["headline"]["alpha"], json["diagnostics"][HEADLINE_METHOD]["alpha"]);

        // 60 spikes: the interval is far wider than 1 (or runs into a bound).
        let mut short = input.clone();
        short.events.truncate(60);
        let a = analyze_run(&short, &AnalysisOptions::default());
        let f = a.diagnostics.measurement_aware.as_ref().expect("measured fit");
        assert!(f.alpha_ci[1] - f.alpha_ci[0] > MAX_CONSTRAINED_ALPHA_CI_WIDTH, "{:?}", f.alpha_ci);
        assert!(!a.headline.constrained);
        assert_eq!(a.headline.alpha, f.alpha);

        // No spikes at all: a headline without numbers, at the model's floor.
        let none = analyze_run(&RunInput { events: Vec::new(), ..input }, &AnalysisOptions::default());
        assert!(none.headline.alpha.is_nan() && !none.headline.constrained && none.headline.n == 0);
        let floor = none.diagnostics.measurement_model.as_ref().expect("model").y_min;
        assert_eq!(none.headline.x_min, floor);
        assert!(serde_json::to_value(&none).expect("json")["headline"]["alpha"].is_null());
    }

    #[test]
    fn alpha_is_constrained_only_by_a_narrow_interval_clear_of_the_bounds() {
        let fit = |alpha: f64, lo: f64, hi: f64| TruncatedPowerLawFit {
            alpha,
            alpha_ci: [lo, hi],
            xc: 1e-3,
            xc_ci: [8e-4, 1.3e-3],
            ci_method: String::new(),
            x_min: 5.9e-4,
            n: 100,
            log_likelihood: 0.0,
            ks_distance: 0.0,
            ks_p_value: 1.0,
            efficiency_aware: false,
            converged: true,
        };
        assert!(alpha_constrained(&fit(1.5, 1.1, 1.9)));
        assert!(alpha_constrained(&fit(1.5, 1.0, 2.0)), "exactly 1.0 wide is still an answer");
        assert!(!alpha_constrained(&fit(1.5, 0.9, 2.1)), "wider than 1");
        assert!(!alpha_constrained(&fit(-0.8, ALPHA_LO, -0.3)), "lower end on the clamp");
        assert!(!alpha_constrained(&fit(3.8, 3.5, ALPHA_HI)), "upper end on the clamp");
        assert!(!alpha_constrained(&fit(1.5, f64::NAN, 1.9)));
        assert!(!alpha_constrained(&fit(f64::NAN, 1.1, 1.9)));
    }

    #[test]
    fn pooling_refuses_different_kernels() {
        let a = MeasurementModel::boxcar(1e-4, 1000.0, [1e-3, 1.5e-3], 1e-4, 5.8e-4).expect("model");
        let b = MeasurementModel::boxcar(1e-4, 10_000.0, [1e-3, 1.5e-3], 1e-4, 5.8e-4).expect("model");
        assert!(pooled_measurement_model(&[&a, &b]).is_err());
        assert!(pooled_measurement_model(&[]).is_err());
        let c = MeasurementModel { sigma: 2e-4, y_min: 6.5e-4, ..a.clone() };
        let p = pooled_measurement_model(&[&a, &c]).expect("pooled");
        assert_eq!(p.y_min, 6.5e-4);
        assert!((p.sigma - (2.5e-8f64).sqrt()).abs() < 1e-12);
        // Same sampling, different detector windows: the lead-in differs, no common model.
        let leaky = a.clone().with_leak(5.2e-4, 0.07).expect("leak");
        assert!(pooled_measurement_model(&[&a, &leaky]).is_err());
        let leaky2 = MeasurementModel { sigma: 1.2e-4, ..leaky.clone() }.with_leak(5.6e-4, 0.07).expect("leak");
        let p = pooled_measurement_model(&[&leaky, &leaky2]).expect("pooled");
        assert_eq!(p.leak, 0.07);
        assert!((p.start_threshold - 5.4e-4).abs() < 1e-12, "mean threshold {}", p.start_threshold);
    }

    /// The detector's lead-in at the default settings: the baseline window (rounded to whole
    /// mains periods: 60 samples at 1 kHz, 600 at 10 kHz) gives 4/n, the mains canceller adds its
    /// carry — LMS step 2/(0.8 s × rate) on each of the fundamental and the second harmonic, whose
    /// phasors turn by h × 2π × 50 Hz/rate before the next sample — and events open at 5σ (σ of
    /// the residuals' first differences), below the floor.
    #[test]
    fn detector_model_carries_the_lead_in() {
        let det = DetectionConfig::default();
        for (rate, n, mu) in [(1000.0, 60.0, 2.5e-3), (10_000.0, 600.0, 2.5e-4)] {
            let carry = mu * (1..=2).map(|h| (f64::from(h) * std::f64::consts::TAU * 50.0 / rate).cos()).sum::<f64>();
            let m = detector_measurement_model(1e-4, rate, &det, [1e-3, 1.5e-3], 1e-4).expect("model");
            assert!((m.leak - (4.0 / n + carry)).abs() < 1e-12, "{rate} Hz: leak {}", m.leak);
            assert!(m.start_threshold >= 5e-4 && m.start_threshold < m.y_min, "{rate} Hz: θ {}", m.start_threshold);
        }
        // Without mains cancelling only the baseline learns (0.05 s is not rounded then).
        let quiet = DetectionConfig { mains_hz: 0.0, ..Default::default() };
        let m = detector_measurement_model(1e-4, 10_000.0, &quiet, [1e-3, 1.5e-3], 1e-4).expect("model");
        assert!((m.leak - 4.0 / 500.0).abs() < 1e-12, "leak {}", m.leak);
    }

    #[test]
    fn campaign_groups_by_peak_stress() {
        let a = synthetic_input(2);
        let mut b = synthetic_input(3);
        b.load_un.iter_mut().for_each(|v| *v *= 2.0);
        let runs: Vec<(RunAnalysis, Vec<Event>)> =
            [a.clone(), b, a].iter().map(|i| (analyze_run(i, &AnalysisOptions::default()), i.events.clone())).collect();
        let c = analyze_campaign(&runs);
        assert_eq!(c.groups.len(), 2);
        assert_eq!(c.groups[0].files.len(), 2);
        assert_eq!(c.groups[0].n_spikes, 800);
    }
}
