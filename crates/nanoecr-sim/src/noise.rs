//! Coloured noise sources that need state between samples.

use std::f64::consts::TAU;

use nanoecr_core::config::SimulationConfig;
use rand::Rng;
use rand_distr::StandardNormal;

/// Octave rows of the Voss-McCartney generator. Row j changes every 2^j samples, so the 1/f band
/// spans fs/2 down to fs/2^12 (0.24 Hz at 1 kHz): several of its slowest periods fit in a 30 s test,
/// so the rms seen in one run is close to the configured one.
const ROWS: usize = 12;

/// Pink (1/f) noise by the Voss-McCartney algorithm: a sum of Gaussian rows, row j redrawn every
/// 2^j samples (staggered by the trailing zeros of a counter), plus a white row redrawn every sample.
/// Each row is N(0, 1), so the sum has variance ROWS + 1 and scaling by rms/√(ROWS + 1) gives the
/// configured rms exactly.
#[derive(Debug, Clone)]
pub(crate) struct PinkNoise {
    rows: [f64; ROWS],
    counter: u64,
    scale: f64,
}

impl PinkNoise {
    /// A generator of rms `rms`, its rows already drawn so it is stationary from the first sample.
    pub(crate) fn new<R: Rng + ?Sized>(rms: f64, rng: &mut R) -> Self {
        let mut rows = [0.0; ROWS];
        for r in &mut rows {
            *r = rng.sample(StandardNormal);
        }
        Self { rows, counter: 0, scale: rms / ((ROWS + 1) as f64).sqrt() }
    }

    /// The next value.
    pub(crate) fn next<R: Rng + ?Sized>(&mut self, rng: &mut R) -> f64 {
        self.counter = self.counter.wrapping_add(1);
        let row = self.counter.trailing_zeros() as usize;
        if row < ROWS {
            self.rows[row] = rng.sample(StandardNormal);
        }
        let white: f64 = rng.sample(StandardNormal);
        // Summed afresh each time: a running sum would accumulate rounding over a long run.
        (self.rows.iter().sum::<f64>() + white) * self.scale
    }
}

/// Most mains harmonics modelled (the config allows 20).
const MAX_HARMONICS: usize = 20;

/// Everything added to the measured Δρ/ρ that is not white noise and not physics: 1/f noise,
/// mains pick-up (fundamental, harmonics, a slowly drifting amplitude) and a slow baseline drift
/// and wander. None of it is in the ground truth.
#[derive(Debug, Clone)]
pub(crate) struct Pickup {
    pink_rms: f64,
    pink: PinkNoise,
    mains_amplitude: f64,
    omega_rad_per_s: f64,
    mains_phase_rad: f64,
    /// Amplitude (relative to the fundamental) and phase of harmonics 2, 3, …
    harmonics: [(f64, f64); MAX_HARMONICS],
    n_harmonics: usize,
    drift_fraction: f64,
    drift_omega_rad_per_s: f64,
    drift_phase_rad: f64,
    baseline_drift_per_s: f64,
    wander: f64,
    wander_omega_rad_per_s: f64,
    wander_phase_rad: f64,
}

impl Pickup {
    /// `pink_rng` draws the 1/f rows (as before harmonics existed), `mains_phase_rad` is the
    /// fundamental's phase (drawn by the caller from its own stream, as before), and `extra`
    /// draws the phases of the harmonics, of the amplitude drift and of the wander, only for
    /// the sources that are on: a config without them draws nothing new.
    pub(crate) fn new<R: Rng + ?Sized>(
        cfg: &SimulationConfig,
        pink_rng: &mut R,
        mains_phase_rad: f64,
        extra: &mut R,
    ) -> Self {
        let pink = PinkNoise::new(cfg.pink_noise, pink_rng);
        let n_harmonics = if cfg.mains_amplitude > 0.0 { (cfg.mains_harmonics as usize).min(MAX_HARMONICS) } else { 0 };
        let mut harmonics = [(0.0, 0.0); MAX_HARMONICS];
        for (i, h) in harmonics.iter_mut().take(n_harmonics).enumerate() {
            *h = (cfg.mains_harmonic_fraction.powi(i as i32 + 1), TAU * extra.gen::<f64>());
        }
        let drift_phase_rad =
            if cfg.mains_amplitude > 0.0 && cfg.mains_drift_fraction > 0.0 { TAU * extra.gen::<f64>() } else { 0.0 };
        let wander_phase_rad = if cfg.baseline_wander > 0.0 { TAU * extra.gen::<f64>() } else { 0.0 };
        Self {
            pink_rms: cfg.pink_noise,
            pink,
            mains_amplitude: cfg.mains_amplitude,
            omega_rad_per_s: TAU * cfg.mains_hz,
            mains_phase_rad,
            harmonics,
            n_harmonics,
            drift_fraction: cfg.mains_drift_fraction,
            drift_omega_rad_per_s: TAU * cfg.mains_drift_hz,
            drift_phase_rad,
            baseline_drift_per_s: cfg.baseline_drift_per_s,
            wander: cfg.baseline_wander,
            wander_omega_rad_per_s: TAU * cfg.baseline_wander_hz,
            wander_phase_rad,
        }
    }

    /// The pick-up on Δρ/ρ at `t` (advances the 1/f generator by one sample).
    pub(crate) fn next<R: Rng + ?Sized>(&mut self, t: f64, pink_rng: &mut R) -> f64 {
        let mut x = 0.0;
        if self.pink_rms > 0.0 {
            x += self.pink.next(pink_rng);
        }
        if self.mains_amplitude > 0.0 {
            let phase = self.omega_rad_per_s * t;
            // Written as before harmonics existed, so a pure sine stays bit for bit the same.
            let mut mains = self.mains_amplitude * (phase + self.mains_phase_rad).sin();
            for (i, &(rel, phi)) in self.harmonics[..self.n_harmonics].iter().enumerate() {
                mains += self.mains_amplitude * rel * ((i + 2) as f64 * phase + phi).sin();
            }
            if self.drift_fraction > 0.0 {
                mains *= 1.0 + self.drift_fraction * (self.drift_omega_rad_per_s * t + self.drift_phase_rad).sin();
            }
            x += mains;
        }
        if self.baseline_drift_per_s != 0.0 {
            x += self.baseline_drift_per_s * t;
        }
        if self.wander > 0.0 {
            x += self.wander * (self.wander_omega_rad_per_s * t + self.wander_phase_rad).sin();
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn pink_noise_has_the_configured_rms_and_is_correlated() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut p = PinkNoise::new(2e-4, &mut rng);
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| p.next(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let rms = var.sqrt();
        assert!((rms - 2e-4).abs() < 0.1 * 2e-4, "rms {rms}");
        // White noise would have lag-1 autocorrelation ≈ 0; 1/f noise from these rows ≈ 0.8.
        let lag1 = xs.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum::<f64>() / (n - 1) as f64 / var;
        assert!(lag1 > 0.5, "lag-1 autocorrelation {lag1}");
    }
}
