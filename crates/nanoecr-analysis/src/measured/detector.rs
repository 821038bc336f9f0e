//! What a detector like `nanoecr-detect` implies for the measurement model: its start threshold
//! on the residual, the floor above which it is complete, and the leak of its reference.

/// The start threshold of a detector like `nanoecr-detect` at noise σ: max(k σ̂, `min_magnitude`),
/// the value its σ̂ scatters about. Its σ̂ is the MAD of first differences of consecutive quiet
/// residuals over √2 (the statistic [`crate::run::noise_sigma_of`] computes on Δρ/ρ): the
/// error of its trailing baseline, shared by consecutive residuals, cancels there, so for white
/// noise σ̂ is σ itself.
pub fn detector_threshold(noise_sigma: f64, threshold_sigma: f64, min_magnitude: f64) -> f64 {
    let adaptive = threshold_sigma * noise_sigma;
    if adaptive.is_finite() {
        adaptive.max(min_magnitude)
    } else {
        min_magnitude
    }
}

/// Relative scatter × √N of the detector's σ̂ over N residuals: the MAD of |first differences|
/// (1.276, by simulation of 2 × 10⁴ windows of 1000 Gaussian samples; 1.166 for a MAD of
/// independent values — neighbouring differences share a sample).
const MAD_OF_DIFFERENCES_SCATTER: f64 = 1.276;

/// The lowest reported magnitude above which a threshold detector like `nanoecr-detect` is
/// complete. Its start threshold is max(k σ̂, floor) on the residual (see
/// [`detector_threshold`]), with σ̂ a MAD over `noise_samples` residual differences, which
/// scatters by ≈ 1.276/√N relatively; the floor allows three of those scatters. At σ = 10⁻⁴,
/// k = 5 and 1000 noise samples that is 5.6 × 10⁻⁴. With a constant threshold
/// (`threshold_sigma` = 0 or σ small), it is `min_magnitude` itself: the reported peak is the
/// thresholded quantity.
pub fn detector_floor(noise_sigma: f64, threshold_sigma: f64, min_magnitude: f64, noise_samples: usize) -> f64 {
    let scatter = MAD_OF_DIFFERENCES_SCATTER / (noise_samples.max(1) as f64).sqrt();
    // The threshold at k(1 + 3·scatter) σ: the adaptive part scales with k.
    detector_threshold(noise_sigma, threshold_sigma * (1.0 + 3.0 * scatter), min_magnitude)
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
        // Paper defaults: σ 1e-4, 5σ, floor 5e-4, 1000-sample noise window.
        let f = detector_floor(1e-4, 5.0, 5e-4, 1000);
        assert!((f - 5.61e-4).abs() < 0.05e-4, "{f}");
        // Quiet rig: the fixed floor is the threshold.
        assert_eq!(detector_floor(0.5e-4, 5.0, 5e-4, 1000), 5e-4);
        assert_eq!(detector_floor(f64::NAN, 5.0, 5e-4, 1000), 5e-4);
        assert!((detector_threshold(1.2e-4, 5.0, 5e-4) - 6e-4).abs() < 1e-15);
    }
}
