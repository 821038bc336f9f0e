//! What a detector like `nanoecr-detect` implies for the measurement model: its start threshold
//! on the residual, the floor above which it is complete, and the leak of its reference.

/// The start threshold of a detector like `nanoecr-detect` at noise σ: max(k σ_residual,
/// `min_magnitude`), with σ_residual = σ·√(1 + v_b) the σ its MAD measures on residuals from a
/// trailing least-squares baseline of `baseline_samples` points extrapolated one step ahead
/// (v_b = 1/n + ((n+1)/2)²/(n(n²−1)/12), +8 % at n = 50). The value its σ̂ scatters about.
pub fn detector_threshold(noise_sigma: f64, threshold_sigma: f64, min_magnitude: f64, baseline_samples: usize) -> f64 {
    let n = baseline_samples.max(3) as f64;
    let extrapolation = 1.0 / n + ((n + 1.0) / 2.0).powi(2) / (n * (n * n - 1.0) / 12.0);
    let adaptive = threshold_sigma * noise_sigma * (1.0 + extrapolation).sqrt();
    if adaptive.is_finite() {
        adaptive.max(min_magnitude)
    } else {
        min_magnitude
    }
}

/// The lowest reported magnitude above which a threshold detector like `nanoecr-detect` is
/// complete. Its start threshold is max(k σ̂, floor) on the residual (Δρ/ρ minus a trailing
/// least-squares baseline of `baseline_samples` points), with σ̂ a MAD over `noise_samples`
/// residuals. Two things put that threshold above k σ: the baseline extrapolated one step ahead
/// adds variance σ²·(1/n + ((n+1)/2)²/(n(n²−1)/12)) (+8 % at n = 50, see
/// [`detector_threshold`]), and σ̂ scatters by ≈ 1.166/√N relatively; the floor allows three of
/// those scatters. At σ = 10⁻⁴, k = 5, 50 baseline and 1000 noise samples that is 5.8 × 10⁻⁴
/// (the simulated detector is complete from ≈ 5.8 × 10⁻⁴ in reported magnitude). With a
/// constant threshold (`threshold_sigma` = 0 or σ small), it is `min_magnitude` itself: the
/// reported peak is the thresholded quantity.
pub fn detector_floor(
    noise_sigma: f64,
    threshold_sigma: f64,
    min_magnitude: f64,
    baseline_samples: usize,
    noise_samples: usize,
) -> f64 {
    let scatter = 1.166 / (noise_samples.max(1) as f64).sqrt();
    // The threshold at k(1 + 3·scatter) σ: the adaptive part scales with k.
    detector_threshold(noise_sigma, threshold_sigma * (1.0 + 3.0 * scatter), min_magnitude, baseline_samples)
}

/// The leak of a detector like `nanoecr-detect` (see the module docs, "lead-in"): every sample
/// outside an event is pushed into its trailing least-squares baseline of `baseline_samples`
/// points — including a spike's samples before the one that opens its event — and the line
/// extrapolated one step carries 4/n of the newest point (1/n through the mean, 3/n through the
/// slope); its mains canceller, when on, learns the same sample and carries `mains_learning_rate`
/// of it into its next prediction (`WindowSamples::mains_step`: the LMS step summed over the
/// fundamental and harmonics it tracks, each weighted by the cosine of its phase advance).
pub fn detector_leak(baseline_samples: usize, mains_learning_rate: f64) -> f64 {
    4.0 / baseline_samples.max(2) as f64 + mains_learning_rate.max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_floor_matches_the_simulated_detector() {
        // Paper defaults: σ 1e-4, 5σ, floor 5e-4, 50-sample baseline, 1000-sample noise window.
        let f = detector_floor(1e-4, 5.0, 5e-4, 50, 1000);
        assert!((f - 5.78e-4).abs() < 0.05e-4, "{f}");
        // Quiet rig: the fixed floor is the threshold.
        assert_eq!(detector_floor(0.5e-4, 5.0, 5e-4, 50, 1000), 5e-4);
        assert_eq!(detector_floor(f64::NAN, 5.0, 5e-4, 50, 1000), 5e-4);
    }
}
