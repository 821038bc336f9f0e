//! Event statistics beyond magnitudes: waiting times between like events, the p − n balance per
//! load segment, the pop-in strain vs resistivity correlation, and the activation energy ΔG.

use nanoecr_core::{Event, EventKind, Segment, Sign};
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use crate::special::ks_p_value;

/// Boltzmann constant in eV/K.
pub const BOLTZMANN_EV_PER_K: f64 = 8.617_333_262e-5;

/// The segments of the paper's load function, in order (settle and safe unload carry no analysis).
pub const PROGRAM_SEGMENTS: [Segment; 3] = [Segment::Load, Segment::Hold, Segment::Unload];

/// Exponential fit of one set of waiting times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingTimes {
    /// Segment ("load", "hold", "unload", or "all").
    pub segment: String,
    /// "p" (p→p), "n" (n→n) or "both" (pooled).
    pub sign: String,
    /// The waiting times, s.
    pub waits_s: Vec<f64>,
    /// MLE rate 1/mean, 1/s (NaN without data).
    pub rate_per_s: f64,
    /// Exact 95 % interval of the rate from the χ² distribution of 2λΣt (NaN without data).
    pub rate_ci_per_s: [f64; 2],
    /// Mean waiting time, s.
    pub mean_s: f64,
    /// KS distance to the fitted exponential.
    pub ks_distance: f64,
    /// Asymptotic KS p-value (rate estimated from the data: too large, a guide only).
    pub ks_p_value: f64,
}

/// Exponential MLE of waiting times with its exact χ² interval and a KS check.
pub fn fit_waiting_times(waits_s: &[f64], segment: &str, sign: &str) -> WaitingTimes {
    let w: Vec<f64> = waits_s.iter().copied().filter(|v| v.is_finite() && *v >= 0.0).collect();
    let n = w.len();
    let total: f64 = w.iter().sum();
    let (rate, ci, mean) = if n > 0 && total > 0.0 {
        let rate = n as f64 / total;
        // 2λT ~ χ²(2n) for the sum T of n exponential waits.
        let ci = ChiSquared::new(2.0 * n as f64)
            .map_or([f64::NAN; 2], |c| [c.inverse_cdf(0.025) / (2.0 * total), c.inverse_cdf(0.975) / (2.0 * total)]);
        (rate, ci, total / n as f64)
    } else {
        (f64::NAN, [f64::NAN; 2], f64::NAN)
    };
    let mut sorted = w.clone();
    sorted.sort_by(f64::total_cmp);
    let ks = if n > 0 && rate.is_finite() {
        sorted
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let f = 1.0 - (-rate * t).exp();
                (f - i as f64 / n as f64).abs().max(((i + 1) as f64 / n as f64 - f).abs())
            })
            .fold(0.0, f64::max)
    } else {
        f64::NAN
    };
    WaitingTimes {
        segment: segment.into(),
        sign: sign.into(),
        waits_s: w,
        rate_per_s: rate,
        rate_ci_per_s: ci,
        mean_s: mean,
        ks_distance: ks,
        ks_p_value: if ks.is_finite() { ks_p_value(ks, n) } else { f64::NAN },
    }
}

/// Waiting times between consecutive spikes of the same sign within one segment, in s.
/// Spikes are taken in onset order; a wait never spans two segments.
pub fn waiting_times(events: &[Event], segment: Segment, sign: Sign) -> Vec<f64> {
    let mut onsets: Vec<f64> = events
        .iter()
        .filter(|e| e.kind == EventKind::Spike && e.segment == segment && e.sign == sign)
        .map(|e| e.onset_time_s)
        .collect();
    onsets.sort_by(f64::total_cmp);
    onsets.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Waiting-time fits for p→p and n→n in every program segment, plus each sign pooled over segments.
pub fn waiting_time_table(events: &[Event]) -> Vec<WaitingTimes> {
    let mut out = Vec::new();
    for sign in [Sign::P, Sign::N] {
        let mut pooled = Vec::new();
        for seg in PROGRAM_SEGMENTS {
            let w = waiting_times(events, seg, sign);
            pooled.extend_from_slice(&w);
            out.push(fit_waiting_times(&w, seg.name(), sign.name()));
        }
        out.push(fit_waiting_times(&pooled, "all", sign.name()));
    }
    out
}

/// p − n balance of one segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignBalance {
    /// Segment name.
    pub segment: String,
    /// p-type spikes.
    pub p: u64,
    /// n-type spikes.
    pub n: u64,
    /// p − n.
    pub difference: i64,
    /// Poisson σ of the difference, √(p + n).
    pub sigma: f64,
    /// (p − n)/σ (0 without events).
    pub z: f64,
}

/// Count p and n spikes per program segment.
pub fn sign_balance(events: &[Event]) -> Vec<SignBalance> {
    PROGRAM_SEGMENTS
        .iter()
        .map(|&seg| {
            let (mut p, mut n) = (0u64, 0u64);
            for e in events.iter().filter(|e| e.kind == EventKind::Spike && e.segment == seg) {
                match e.sign {
                    Sign::P => p += 1,
                    Sign::N => n += 1,
                }
            }
            let sigma = ((p + n) as f64).sqrt();
            let difference = p as i64 - n as i64;
            SignBalance {
                segment: seg.name().into(),
                p,
                n,
                difference,
                sigma,
                z: if sigma > 0.0 { difference as f64 / sigma } else { 0.0 },
            }
        })
        .collect()
}

/// One pop-in with its strain jump and linked resistivity spike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Popin {
    /// Onset, s.
    pub onset_time_s: f64,
    /// Displacement jump, nm.
    pub jump_nm: f64,
    /// Strain jump Δh/H0.
    pub strain_jump: f64,
    /// Peak Δρ/ρ of the linked spike (NaN when none was linked).
    pub delta_rho: f64,
    /// Duration, s.
    pub duration_s: f64,
    /// Stress at onset, MPa.
    pub stress_mpa: f64,
    /// Segment name.
    pub segment: String,
}

/// Correlation between pop-in strain jumps and their resistivity spikes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PopinCorrelation {
    /// The pop-ins.
    pub popins: Vec<Popin>,
    /// Pairs with both a positive strain jump and a linked |Δρ/ρ| > 0.
    pub n_pairs: usize,
    /// Pearson r of ln(Δh/H0) vs ln|Δρ/ρ| (NaN below 3 pairs).
    pub pearson_r_log: f64,
    /// Least-squares slope of ln|Δρ/ρ| on ln(Δh/H0): the exponent of Δρ/ρ ∝ (Δh/H0)^k.
    pub log_slope: f64,
    /// Least-squares slope through the origin of |Δρ/ρ| on Δh/H0 (Δρ/ρ per unit strain jump).
    pub linear_slope: f64,
}

/// Collect pop-ins and correlate Δh/H0 with the linked Δρ/ρ.
pub fn popin_correlation(events: &[Event], height_nm: f64) -> PopinCorrelation {
    let popins: Vec<Popin> = events
        .iter()
        .filter(|e| e.kind == EventKind::Popin)
        .map(|e| Popin {
            onset_time_s: e.onset_time_s,
            jump_nm: e.magnitude,
            strain_jump: e.magnitude / height_nm,
            delta_rho: e.linked_delta_rho,
            duration_s: e.duration_s,
            stress_mpa: e.stress_mpa,
            segment: e.segment.name().into(),
        })
        .collect();
    let pairs: Vec<(f64, f64)> = popins
        .iter()
        .filter(|p| p.strain_jump > 0.0 && p.delta_rho.is_finite() && p.delta_rho != 0.0)
        .map(|p| (p.strain_jump, p.delta_rho.abs()))
        .collect();
    let n = pairs.len();
    let (mut r, mut slope, mut lin) = (f64::NAN, f64::NAN, f64::NAN);
    if n >= 3 {
        let lx: Vec<f64> = pairs.iter().map(|p| p.0.ln()).collect();
        let ly: Vec<f64> = pairs.iter().map(|p| p.1.ln()).collect();
        let mx = lx.iter().sum::<f64>() / n as f64;
        let my = ly.iter().sum::<f64>() / n as f64;
        let sxy: f64 = lx.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
        let sxx: f64 = lx.iter().map(|a| (a - mx).powi(2)).sum();
        let syy: f64 = ly.iter().map(|b| (b - my).powi(2)).sum();
        if sxx > 0.0 && syy > 0.0 {
            r = sxy / (sxx * syy).sqrt();
        }
        if sxx > 0.0 {
            slope = sxy / sxx;
        }
    }
    if n >= 1 {
        let sxy: f64 = pairs.iter().map(|p| p.0 * p.1).sum();
        let sxx: f64 = pairs.iter().map(|p| p.0 * p.0).sum();
        if sxx > 0.0 {
            lin = sxy / sxx;
        }
    }
    PopinCorrelation { popins, n_pairs: n, pearson_r_log: r, log_slope: slope, linear_slope: lin }
}

/// Activation energy from the spike duration, ΔG = kT ln(2 ω t_R).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivationEnergy {
    /// Median spike duration used as the relaxation time t_R, s.
    pub median_duration_s: f64,
    /// Attempt frequency ω, 1/s.
    pub omega_per_s: f64,
    /// Temperature, K.
    pub temperature_k: f64,
    /// ΔG, eV (NaN without spikes).
    pub delta_g_ev: f64,
    /// Spikes whose durations were used.
    pub n_spikes: usize,
}

/// ΔG = kT ln(2 ω t_R) with t_R the median spike duration.
pub fn activation_energy(events: &[Event], omega_per_s: f64, temperature_k: f64) -> ActivationEnergy {
    let mut d: Vec<f64> = events
        .iter()
        .filter(|e| e.kind == EventKind::Spike && e.duration_s.is_finite() && e.duration_s > 0.0)
        .map(|e| e.duration_s)
        .collect();
    d.sort_by(f64::total_cmp);
    let median = median_sorted(&d);
    let dg = BOLTZMANN_EV_PER_K * temperature_k * (2.0 * omega_per_s * median).ln();
    ActivationEnergy {
        median_duration_s: median,
        omega_per_s,
        temperature_k,
        delta_g_ev: if median.is_finite() { dg } else { f64::NAN },
        n_spikes: d.len(),
    }
}

/// Median of a sorted slice (NaN when empty).
pub fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Median of any slice of finite values (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    median_in_place(&mut s)
}

/// Median of `v`, reordering it: a selection in O(n) rather than a sort (the noise estimate takes
/// two medians of ≈ 10⁶ differences per run). The same value a sort would give, bit for bit: the
/// middle element(s) of the `total_cmp` order. Every value must be finite; NaN when empty.
pub fn median_in_place(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (below, mid, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let mid = *mid;
    if n % 2 == 1 {
        mid
    } else {
        // The other middle element is the largest of the lower half.
        let lower = below.iter().copied().max_by(f64::total_cmp).unwrap_or(mid);
        0.5 * (lower + mid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn selection_median_equals_the_sorted_median() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for n in [1usize, 2, 3, 10, 11, 1000, 1001] {
            // Ties and signed zeros included: the same element(s) as the sort must be picked.
            let v: Vec<f64> = (0..n)
                .map(|_| if rng.gen::<f64>() < 0.2 { -0.0 } else { (rng.gen::<f64>() * 20.0).round() - 10.0 })
                .collect();
            let mut sorted = v.clone();
            sorted.sort_by(f64::total_cmp);
            let mut work = v.clone();
            assert_eq!(median_in_place(&mut work).to_bits(), median_sorted(&sorted).to_bits(), "n {n}");
            assert_eq!(median(&v).to_bits(), median_sorted(&sorted).to_bits(), "n {n}");
        }
        assert!(median_in_place(&mut []).is_nan());
    }

    fn spike(t: f64, m: f64, seg: Segment) -> Event {
        Event::spike(t, t + 5e-4, 1.2e-3, m, seg, 500.0)
    }

    #[test]
    fn waiting_time_rate_is_recovered_with_covering_interval() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let rate = 8.0;
        let w: Vec<f64> = (0..2000).map(|_| -(1.0 - rng.gen::<f64>()).ln() / rate).collect();
        let f = fit_waiting_times(&w, "hold", "p");
        assert!((f.rate_per_s - rate).abs() / rate < 0.06, "rate {}", f.rate_per_s);
        assert!(f.rate_ci_per_s[0] < rate && rate < f.rate_ci_per_s[1], "{:?}", f.rate_ci_per_s);
        assert!(f.ks_p_value > 0.01, "KS p {}", f.ks_p_value);
        // Uniform waits are not exponential: KS must notice with this many.
        let u: Vec<f64> = (0..2000).map(|_| 0.1 + 0.01 * rng.gen::<f64>()).collect();
        assert!(fit_waiting_times(&u, "hold", "p").ks_p_value < 1e-6);
    }

    #[test]
    fn waits_stay_within_segment_and_sign() {
        let ev = vec![
            spike(1.0, 1e-3, Segment::Load),
            spike(1.5, -1e-3, Segment::Load),
            spike(2.0, 2e-3, Segment::Load),
            spike(12.0, 1e-3, Segment::Hold),
            spike(12.25, 1e-3, Segment::Hold),
        ];
        assert_eq!(waiting_times(&ev, Segment::Load, Sign::P), vec![1.0]);
        assert!(waiting_times(&ev, Segment::Load, Sign::N).is_empty());
        assert_eq!(waiting_times(&ev, Segment::Hold, Sign::P), vec![0.25]);
    }

    #[test]
    fn p_minus_n_counts_per_segment() {
        let mut ev = Vec::new();
        for i in 0..7 {
            ev.push(spike(i as f64, 1e-3, Segment::Load));
        }
        for i in 0..3 {
            ev.push(spike(i as f64, -1e-3, Segment::Load));
        }
        ev.push(spike(15.0, -1e-3, Segment::Unload));
        ev.push(Event { kind: EventKind::Popin, ..spike(3.0, 5.0, Segment::Load) });
        let b = sign_balance(&ev);
        assert_eq!((b[0].p, b[0].n, b[0].difference), (7, 3, 4));
        assert!((b[0].sigma - 10f64.sqrt()).abs() < 1e-12);
        assert_eq!((b[1].p, b[1].n, b[1].z), (0, 0, 0.0));
        assert_eq!((b[2].p, b[2].n, b[2].difference), (0, 1, -1));
    }

    #[test]
    fn popin_correlation_recovers_a_power_relation() {
        let h0 = 5000.0;
        let ev: Vec<Event> = [2.0, 4.0, 8.0, 16.0]
            .iter()
            .map(|&dh: &f64| Event {
                kind: EventKind::Popin,
                magnitude: dh,
                linked_delta_rho: 5.0 * dh / h0,
                ..spike(1.0, 0.0, Segment::Load)
            })
            .collect();
        let c = popin_correlation(&ev, h0);
        assert_eq!(c.n_pairs, 4);
        assert!((c.pearson_r_log - 1.0).abs() < 1e-9);
        assert!((c.log_slope - 1.0).abs() < 1e-9);
        assert!((c.linear_slope - 5.0).abs() < 1e-9);
    }

    #[test]
    fn activation_energy_of_a_millisecond_is_about_half_an_ev() {
        let ev = vec![spike(1.0, 1e-3, Segment::Hold); 3];
        let a = activation_energy(&ev, 1e13, 295.0);
        // kT ln(2e13 · 1.2e-3) at 295 K = 0.02542 · 23.9 ≈ 0.608 eV.
        assert!((a.delta_g_ev - 0.6077).abs() < 0.002, "{}", a.delta_g_ev);
    }
}
