//! Adaptive cancellation of mains pick-up (the fundamental and its harmonics) on the Δρ/ρ residual.

use std::f64::consts::TAU;

/// Most sinusoids the canceller tracks: the fundamental and harmonics up to the 8th
/// (`[detection] mains_harmonics` allows 0–7 above the fundamental).
pub(crate) const MAX_HARMONICS: usize = 8;

/// Adaptive noise canceller (Widrow's LMS with sine/cosine references) at a known mains frequency
/// and its harmonics.
///
/// A trailing baseline cannot follow 50 Hz: the pick-up would stay in the residual, inflate the
/// robust σ and either hide small spikes or, at a fixed threshold, add and subtract itself from
/// them. Mains pick-up through a rectifier-loaded supply is not a pure sine: the harmonics at
/// 2f, 3f, 4f carry a good share of it (rms ≈ 0.4 × 10⁻⁴ of a 10⁻⁴ fundamental in the robustness
/// matrix), so the canceller learns the amplitude and phase of each of `n` sinusoids h·f (those
/// below Nyquist) jointly, from the error left after all of them, with a time constant of
/// `tau_s`: long against a spike, so a spike barely moves it (and samples inside an event are not
/// learned from at all), short against the seconds over which the pick-up's amplitude drifts.
///
/// The LMS weights (a_h, b_h) against the references (cos hωt, sin hωt) are kept in rotating
/// form: z_h = (a_h − j b_h)·e^{j h ω t}, whose real part is sinusoid h's prediction. The LMS
/// update a_h += μ e cos, b_h += μ e sin is then z_h += μ e (real part only), and moving one
/// sample on is z_h ← z_h · e^{j h ω dt}, a fixed complex multiplication: per sinusoid and
/// sample, 4 multiplications and 4 additions, and the prediction is Σ Re z_h. Mathematically the
/// same canceller as the textbook one; the adaptation also corrects any rounding of the rotation.
/// When samples are missing the z_h are turned by the elapsed time (h ω Δt) instead.
#[derive(Debug, Clone)]
pub(crate) struct MainsCanceller {
    pub(crate) omega_rad_per_s: f64,
    pub(crate) dt_s: f64,
    /// cos and sin of h ω dt, the one-sample rotation of sinusoid h (index h − 1).
    pub(crate) rot_c: [f64; MAX_HARMONICS],
    pub(crate) rot_s: [f64; MAX_HARMONICS],
    /// Rotating weights z_h, real and imaginary parts.
    pub(crate) zr: [f64; MAX_HARMONICS],
    pub(crate) zi: [f64; MAX_HARMONICS],
    /// Sinusoids tracked: the fundamental and the next `n − 1` harmonics, all below Nyquist.
    pub(crate) n: usize,
    pub(crate) mu: f64,
    pub(crate) last_time_s: f64,
}

/// LMS step for a memory of `tau_s` at `rate_hz`: 2/N with N = τ in samples gives each sinusoid's
/// amplitude an exponential memory of ≈ τ (capped at ½, where the update would overshoot).
pub(crate) fn lms_step(rate_hz: f64, tau_s: f64) -> f64 {
    let dt_s = 1.0 / rate_hz;
    (2.0 * dt_s / tau_s).min(0.5)
}

/// How many sinusoids (fundamental plus up to `harmonics` harmonics) lie strictly below Nyquist at
/// `rate_hz`; 0 when even the fundamental does not (the canceller is then off).
pub(crate) fn tracked(mains_hz: f64, harmonics: u32, rate_hz: f64) -> usize {
    // NaN compares false: off, like 0.
    if mains_hz.is_nan() || mains_hz <= 0.0 {
        return 0;
    }
    let top = (harmonics as usize + 1).min(MAX_HARMONICS);
    (1..=top).take_while(|&h| h as f64 * mains_hz < rate_hz / 2.0).count()
}

/// The share of a learned residual that the canceller carries into its prediction for the next
/// sample: each sinusoid h takes μ·e onto its weight, which has turned by h·ω·dt a sample later,
/// so the next prediction moves by μ·e·Σ cos(h ω dt) (≈ n μ when the rate is far above the
/// harmonics). What the analysis models as the canceller's leak.
pub(crate) fn carry(mains_hz: f64, harmonics: u32, rate_hz: f64, tau_s: f64) -> f64 {
    let n = tracked(mains_hz, harmonics, rate_hz);
    let step_rad = TAU * mains_hz / rate_hz;
    lms_step(rate_hz, tau_s) * (1..=n).map(|h| (h as f64 * step_rad).cos()).sum::<f64>()
}

/// Σ Re z_h over the first `n` sinusoids, summed as even and odd terms apart: the prediction is
/// on the loop-carried path (learn → predict → residual → learn), and two accumulators halve its
/// chain of additions. The quiet loop calls this too, so both paths sum in the same order. The
/// accumulators start from the first two weights, not from 0.0 + each (which only differs for a
/// weight of −0.0, and costs the quiet loop three instructions a sample).
#[inline(always)]
pub(crate) fn predict<const N: usize>(zr: &[f64; N], n: usize) -> f64 {
    let n = n.min(N);
    if n < 2 {
        return if n == 1 { zr[0] + 0.0 } else { 0.0 };
    }
    let (mut even, mut odd) = (zr[0], zr[1]);
    let mut i = 2;
    while i + 1 < n {
        even += zr[i];
        odd += zr[i + 1];
        i += 2;
    }
    if i < n {
        even += zr[i];
    }
    even + odd
}

/// One sample on: z ← z · (rc + j rs), for the first `n` sinusoids. The quiet loop calls this too.
#[inline(always)]
pub(crate) fn rotate<const N: usize>(zr: &mut [f64; N], zi: &mut [f64; N], rc: &[f64; N], rs: &[f64; N], n: usize) {
    for i in 0..n.min(N) {
        let (r, im) = (zr[i], zi[i]);
        zr[i] = r * rc[i] - im * rs[i];
        zi[i] = r * rs[i] + im * rc[i];
    }
}

impl MainsCanceller {
    /// A canceller of `n` ≥ 1 sinusoids (see [`tracked`]).
    pub(crate) fn new(mains_hz: f64, n: usize, rate_hz: f64, tau_s: f64) -> Self {
        let omega_rad_per_s = TAU * mains_hz;
        let dt_s = 1.0 / rate_hz;
        let n = n.clamp(1, MAX_HARMONICS);
        let (mut rot_c, mut rot_s) = ([1.0; MAX_HARMONICS], [0.0; MAX_HARMONICS]);
        for i in 0..n {
            (rot_s[i], rot_c[i]) = ((i + 1) as f64 * omega_rad_per_s * dt_s).sin_cos();
        }
        Self {
            omega_rad_per_s,
            dt_s,
            rot_c,
            rot_s,
            zr: [0.0; MAX_HARMONICS],
            zi: [0.0; MAX_HARMONICS],
            n,
            mu: lms_step(rate_hz, tau_s),
            last_time_s: f64::NAN,
        }
    }

    /// Move the weights' phase to time `time_s`.
    #[inline(always)]
    pub(crate) fn advance(&mut self, time_s: f64) {
        let step = time_s - self.last_time_s;
        if (step - self.dt_s).abs() < 0.25 * self.dt_s {
            rotate(&mut self.zr, &mut self.zi, &self.rot_c, &self.rot_s, self.n);
        } else if step.is_finite() {
            // Samples missing (or a clock step): turn each sinusoid by the elapsed time.
            for i in 0..self.n.min(MAX_HARMONICS) {
                let (s, c) = ((i + 1) as f64 * self.omega_rad_per_s * step).sin_cos();
                let (r, im) = (self.zr[i], self.zi[i]);
                self.zr[i] = r * c - im * s;
                self.zi[i] = r * s + im * c;
            }
        }
        self.last_time_s = time_s;
    }

    /// Estimated pick-up at the current phase.
    #[inline(always)]
    pub(crate) fn predict(&self) -> f64 {
        predict(&self.zr, self.n)
    }

    /// Learn from a residual `r0` that still contains the pick-up.
    #[inline(always)]
    pub(crate) fn learn(&mut self, r0: f64) {
        self.learn_error(r0 - self.predict());
    }

    /// Learn from the error `e` left after the current prediction (what [`Self::learn`] computes
    /// first; the quiet loop has it already as the residual).
    #[inline(always)]
    pub(crate) fn learn_error(&mut self, e: f64) {
        let step = self.mu * e;
        for i in 0..self.n.min(MAX_HARMONICS) {
            self.zr[i] += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pick-up of the matrix's mains family: 50 Hz with harmonics 0.5, 0.25, 0.125 of it, the
    /// whole drifting ±50 % at 0.1 Hz.
    fn pickup(t: f64) -> f64 {
        let w = TAU * 50.0 * t;
        let m = 1e-4 * ((w + 0.4).sin() + 0.5 * (2.0 * w + 1.1).sin() + 0.25 * (3.0 * w + 2.3).sin())
            + 1e-4 * 0.125 * (4.0 * w + 0.7).sin();
        m * (1.0 + 0.5 * (TAU * 0.1 * t + 0.9).sin())
    }

    /// rms of what the canceller leaves of `pickup` over 10–30 s at 1 kHz.
    fn leftover_rms(harmonics: u32, tau_s: f64) -> f64 {
        let rate_hz = 1000.0;
        let n = tracked(50.0, harmonics, rate_hz);
        let mut m = MainsCanceller::new(50.0, n, rate_hz, tau_s);
        let (mut sum, mut count) = (0.0, 0);
        for k in 0..30_000 {
            let t = k as f64 / rate_hz;
            m.advance(t);
            let e = pickup(t) - m.predict();
            if t >= 10.0 {
                sum += e * e;
                count += 1;
            }
            m.learn(pickup(t));
        }
        (sum / count as f64).sqrt()
    }

    #[test]
    fn harmonics_are_cancelled_and_the_drift_followed() {
        // Fundamental only: the harmonics' rms is left, ≈ 0.41e-4 at the mean amplitude.
        let fundamental = leftover_rms(0, 0.2);
        assert!(fundamental > 0.35e-4, "fundamental only leaves {fundamental:e}");
        // With three harmonics only the lag behind the ±50 % drift is left: τ × the amplitude's
        // rate of change (≤ 0.31 of it per s), 3.6e-6 rms, a twelfth of what the harmonics leave.
        let all = leftover_rms(3, 0.2);
        assert!(all < 0.12 * fundamental, "with harmonics {all:e} (fundamental only {fundamental:e})");
        // Half the memory, half the lag.
        let short = leftover_rms(3, 0.1);
        assert!((short / all - 0.5).abs() < 0.1, "τ 0.1 s leaves {short:e}, 0.2 s {all:e}");
    }

    #[test]
    fn only_sinusoids_below_nyquist_are_tracked() {
        assert_eq!(tracked(50.0, 3, 1000.0), 4);
        assert_eq!(tracked(60.0, 7, 1000.0), 8);
        // 250 Hz is Nyquist at 500 Hz: 50, 100, 150, 200 only.
        assert_eq!(tracked(50.0, 7, 500.0), 4);
        assert_eq!(tracked(60.0, 3, 100.0), 0);
        assert_eq!(tracked(0.0, 3, 1000.0), 0);
        assert_eq!(tracked(50.0, 20, 1e6), MAX_HARMONICS);
    }

    #[test]
    fn rotating_weights_stay_on_time_over_a_long_run_and_across_gaps() {
        let rate_hz = 1000.0;
        let mut m = MainsCanceller::new(60.0, 4, rate_hz, 0.2);
        m.advance(0.0);
        m.zr[..4].copy_from_slice(&[1.0; 4]);
        // 10⁶ rotations (17 min at 1 kHz) and a gap of 7 samples: each weight has turned by h ω t.
        let steps = 1_000_000u64;
        for k in 1..=steps {
            m.advance(k as f64 / rate_hz);
        }
        let t = (steps + 7) as f64 / rate_hz;
        m.advance(t);
        for h in 0..4 {
            let (s, c) = ((h + 1) as f64 * TAU * 60.0 * t).sin_cos();
            assert!((m.zr[h] - c).abs() < 1e-8 && (m.zi[h] - s).abs() < 1e-8, "harmonic {}", h + 1);
        }
    }

    #[test]
    fn carry_is_one_step_of_the_prediction_after_learning() {
        let (rate_hz, tau_s) = (1000.0, 0.2);
        let mut m = MainsCanceller::new(50.0, tracked(50.0, 3, rate_hz), rate_hz, tau_s);
        m.advance(0.0);
        m.learn(1.0);
        m.advance(1.0 / rate_hz);
        let predicted = m.predict();
        let want = carry(50.0, 3, rate_hz, tau_s);
        assert!((predicted - want).abs() < 1e-12, "{predicted} vs {want}");
        // Four sinusoids at μ = 0.01: 0.01 × (cos 18° + cos 36° + cos 54° + cos 72°).
        assert!((want - 0.0266).abs() < 1e-4, "{want}");
    }
}
