//! Coloured noise sources that need state between samples.

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
