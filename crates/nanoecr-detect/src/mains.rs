//! Adaptive cancellation of mains pick-up on the Δρ/ρ residual.

use std::f64::consts::TAU;

/// Adaptive noise canceller (Widrow's LMS with a sine/cosine reference) at a known frequency.
///
/// A trailing baseline cannot follow 50 Hz: the pick-up would stay in the residual, inflate the
/// robust σ and either hide small spikes or, at a fixed threshold, add and subtract itself from
/// them. The canceller learns the amplitude and phase of the pick-up at the mains frequency with a
/// time constant of `tau_s`, long against a spike, so a spike barely moves it (and samples inside
/// an event are not learned from at all). The reference phasor is rotated by a fixed step per
/// sample (two multiplications) and re-synchronised from the time stamp when samples are missing.
#[derive(Debug, Clone)]
pub(crate) struct MainsCanceller {
    pub(crate) omega_rad_per_s: f64,
    pub(crate) dt_s: f64,
    pub(crate) cos_step: f64,
    pub(crate) sin_step: f64,
    pub(crate) c: f64,
    pub(crate) s: f64,
    pub(crate) a: f64,
    pub(crate) b: f64,
    pub(crate) mu: f64,
    pub(crate) last_time_s: f64,
    /// Rotations since the phasor was last put back on the unit circle.
    pub(crate) since_renormalise: u32,
}

/// Rotations between two renormalisations of the phasor: rounding moves its length by ~10⁻¹⁶ per
/// step, so 64 steps leave it within 10⁻¹⁴ of 1 while saving the correction on the other 63.
pub(crate) const RENORMALISE_EVERY: u32 = 64;

/// LMS step for a memory of `tau_s` at `rate_hz`: 2/N with N = τ in samples gives an exponential
/// memory of ≈ τ (capped at ½, where the update would overshoot).
pub(crate) fn lms_step(rate_hz: f64, tau_s: f64) -> f64 {
    let dt_s = 1.0 / rate_hz;
    (2.0 * dt_s / tau_s).min(0.5)
}

impl MainsCanceller {
    pub(crate) fn new(mains_hz: f64, rate_hz: f64, tau_s: f64) -> Self {
        let omega_rad_per_s = TAU * mains_hz;
        let dt_s = 1.0 / rate_hz;
        let (sin_step, cos_step) = (omega_rad_per_s * dt_s).sin_cos();
        Self {
            omega_rad_per_s,
            dt_s,
            cos_step,
            sin_step,
            c: 1.0,
            s: 0.0,
            a: 0.0,
            b: 0.0,
            mu: lms_step(rate_hz, tau_s),
            last_time_s: f64::NAN,
            since_renormalise: 0,
        }
    }

    /// Move the reference phasor to time `time_s`.
    #[inline]
    pub(crate) fn advance(&mut self, time_s: f64) {
        let step = time_s - self.last_time_s;
        if (step - self.dt_s).abs() < 0.25 * self.dt_s {
            let c = self.c * self.cos_step - self.s * self.sin_step;
            let s = self.s * self.cos_step + self.c * self.sin_step;
            self.since_renormalise += 1;
            if self.since_renormalise >= RENORMALISE_EVERY {
                self.since_renormalise = 0;
                // One Newton step back onto the unit circle keeps rounding from growing the amplitude.
                let k = 0.5 * (3.0 - (c * c + s * s));
                self.c = c * k;
                self.s = s * k;
            } else {
                self.c = c;
                self.s = s;
            }
        } else {
            let (s, c) = (self.omega_rad_per_s * time_s).sin_cos();
            self.c = c;
            self.s = s;
        }
        self.last_time_s = time_s;
    }

    /// Estimated pick-up at the current phase.
    #[inline]
    pub(crate) fn predict(&self) -> f64 {
        self.a * self.c + self.b * self.s
    }

    /// Learn from a residual `r0` that still contains the pick-up.
    #[inline]
    pub(crate) fn learn(&mut self, r0: f64) {
        let e = r0 - self.predict();
        self.a += self.mu * e * self.c;
        self.b += self.mu * e * self.s;
    }
}
