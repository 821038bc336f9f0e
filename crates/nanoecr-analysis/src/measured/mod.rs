//! **Measurement-aware** fit of the truncated power law: the magnitudes a threshold detector
//! reports are not the true ones. At the paper's noise (σ ≈ 10⁻⁴ on Δρ/ρ) and 1 kHz sampling a
//! 1–1.5 ms spike covers one or two samples; the detector reports the largest residual among
//! them (max of noisy samples: smeared, biased upwards) and only when it crosses its threshold
//! (≈ 5σ, floor 5 × 10⁻⁴). Near the threshold — where most spikes are — that distorts the
//! distribution enough to move a naive α by ≈ 0.5 (docs/accuracy.md).
//!
//! The model ([`MeasurementModel`]): the reported magnitude of a spike of true magnitude x is
//! y = max(x + offset + n₁, …, x + offset + n_m), nᵢ independent N(0, σ²), with the number of
//! covered samples m drawn from known weights ([`MeasurementModel::boxcar`] derives them from
//! the spike duration range and the sampling rate), so
//!
//! ```text
//! g(y | x) = Σ_m w_m · m φ(z) Φ(z)^(m−1) / σ,   z = (y − x − offset) / σ,
//! ```
//!
//! and a spike is in the data when y ≥ y_min, a floor at or above the detector's threshold
//! ([`detector_floor`]). The observed magnitudes then have the density
//!
//! ```text
//! f(y) = ∫ p(x | α, xc) ε(x) g(y | x) dx / ∫ p(x | α, xc) ε(x) P(y ≥ y_min | x) dx,   y ≥ y_min,
//! ```
//!
//! with p the truncated power law on x ≥ x_min (the law's own lower end, not the floor) and ε an
//! optional extra efficiency for losses the floor does not explain. [`fit_measured_power_law`]
//! maximises Σ ln f(yᵢ) over (α, ln xc), with 95 % profile-likelihood intervals.
//!
//! **Lead-in.** The detector's reference learns from every sample outside an event, and a spike's
//! samples before the one that opens its event are outside it: each such sample v pushes
//! `leak` × v (4/n through an n-point trailing line extrapolated one step, plus the mains
//! canceller's LMS step, [`detector_leak`]) into what is subtracted from the samples after it.
//! At 1 kHz that is at most one sample of a 2-sample spike; at 10 kHz a near-threshold spike
//! covers 10–15 samples and typically pushes 2–4 of them before one crosses, which lowers its
//! remaining residuals by ≈ 0.1σ: fewer are detected and those that are read lower (measured on
//! the simulated detector: of the spikes of 3.5–4σ, 47 % are reported above the floor where the
//! plain max-of-m kernel predicts 58 %; the reported peak sits 0.10σ below the max of the
//! covered samples). With a `leak`, the sample j that opens the event is summed over:
//!
//! ```text
//! g(y | x) = Σ_m w_m Σ_{j≤m} P_{j−1} f(y + b_{j−1}) [F^(m−j) + (m−j)(F − F_θ) F^(m−j−1)],   y ≥ θ,
//! ```
//!
//! with f, F the density and CDF of one sample N(x + offset, σ²) (F at y + b_{j−1}, F_θ at
//! θ + b_{j−1}), θ the start threshold, P_j the probability that the first j samples stayed under
//! it and b_j the contamination they leave, taken at its mean (b_j = b_{j−1} + leak ·
//! E[v | v ≤ θ + b_{j−1}]; its spread is ≈ leak·σ·√j ≤ 0.07σ, and against exact sequential draws
//! the survival is right to ≤ 0.004). Without a leak, or far enough above θ that the first sample
//! always opens the event, this is the max-of-m kernel above.
//!
//! Numerics: a linear grid in x of step σ/4 over the kernel's reach (x from max(x_min,
//! y_min − 8σ) to y_max + 8σ; trapezoid rule — the kernel is smooth on the scale σ and the law on
//! the scale x/α ≫ σ/4), the kernel tabulated once per data bin, the data binned on a y grid of the
//! same step (ln f interpolated linearly between nodes), and the tail of the law beyond the grid,
//! where the floor is always passed, integrated exactly with the incomplete gamma function.
//! A likelihood evaluation costs O(bins × 65), independent of the number of events.
//!
//! One idea per file: `kernel.rs` the noise and max-of-samples kernel g(y | x) and its floor,
//! `lead_in.rs` what a detector's reference learning from a spike's first samples does to it,
//! `detector.rs` the threshold, floor and leak a `nanoecr-detect` configuration implies,
//! `likelihood.rs` the tabulated likelihood with the optional extra efficiency ε, and `fit.rs` the
//! maximisation with its intervals.

mod detector;
mod fit;
mod kernel;
mod lead_in;
mod likelihood;

pub use detector::{detector_floor, detector_leak, detector_threshold};
pub use fit::{fit_measured_power_law, MeasuredFit};
pub use kernel::{sample_measured, MeasurementModel};

/// Largest number of samples a reported peak can be the maximum of (a 1.5 ms spike at 40 kHz).
pub const MAX_PEAK_SAMPLES: usize = 64;

/// Standard normal CDF.
pub(crate) fn std_normal_cdf(z: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2)
}

/// Standard normal density.
pub(crate) fn std_normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

#[cfg(test)]
pub(crate) mod test_models {
    use super::MeasurementModel;

    /// The paper's rig: σ 10⁻⁴, 1 kHz, spikes of 1–1.5 ms, law from 10⁻⁴, floor `y_min`.
    pub(crate) fn paper_model(y_min: f64) -> MeasurementModel {
        MeasurementModel::boxcar(1e-4, 1000.0, [1e-3, 1.5e-3], 1e-4, y_min).expect("model")
    }
}
