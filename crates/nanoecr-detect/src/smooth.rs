//! The smoothed residual that confirms spikes at high sampling rates.
//!
//! At 100 kHz a 1–2 ms spike spans 100–200 samples. A spike well under the 5σ start threshold
//! then still crosses it on some sample (the largest of that many noisy samples lies ≈ 2.8σ above
//! the spike), and a single-sample test cannot tell that crossing from a 5σ noise sample. The
//! running mean of the last `w` residuals can: white noise drops by √w in it while a spike longer
//! than the window keeps its height. So an event that a raw sample opens is confirmed only once
//! the running mean reaches `threshold_sigma` times *its own* robust σ (measured on the smoothed
//! residual, so 1/f noise, which averages down less, raises it honestly), and it stays open while
//! either the raw or the smoothed residual is above release. Onset, peak and magnitude are still
//! read from the raw samples. Below two samples per window (the paper's 1 kHz) it is off and the
//! detector is the single-sample one.
//!
//! O(1) per sample: a ring of `w` residuals and their running sum (re-added from the ring each
//! time the ring wraps, so rounding cannot accumulate), and a MAD histogram fed every `w`-th
//! quiet sample (smoothed values that far apart share no sample).

use crate::stats::MedianTracker;

/// Running mean of the residual over `w` samples and the robust σ of that mean.
#[derive(Debug, Clone)]
pub(crate) struct Smoother {
    pub(crate) ring: Vec<f64>,
    pub(crate) head: usize,
    pub(crate) sum: f64,
    pub(crate) inv_w: f64,
    /// MAD of the smoothed residual outside events, one value per window.
    pub(crate) noise: MedianTracker,
    /// Quiet samples since the last value went into `noise`.
    pub(crate) since_learn: usize,
}

impl Smoother {
    /// A smoother over `w` ≥ 2 samples whose σ window spans `noise_samples` samples.
    pub(crate) fn new(w: usize, noise_samples: usize) -> Self {
        let w = w.max(2);
        Self {
            ring: vec![0.0; w],
            head: 0,
            sum: 0.0,
            inv_w: 1.0 / w as f64,
            noise: MedianTracker::new((noise_samples / w).max(1)),
            since_learn: 0,
        }
    }

    /// Push one residual; returns the running mean of the last `w`.
    #[inline(always)]
    pub(crate) fn push(&mut self, residual: f64) -> f64 {
        let old = self.ring[self.head];
        self.ring[self.head] = residual;
        self.sum += residual - old;
        self.head += 1;
        if self.head == self.ring.len() {
            self.head = 0;
            self.sum = self.ring.iter().sum();
        }
        self.sum * self.inv_w
    }

    /// A quiet (outside any event) smoothed value: every `w`-th goes into the σ estimate.
    #[inline(always)]
    pub(crate) fn learn(&mut self, smoothed: f64) {
        self.since_learn += 1;
        if self.since_learn == self.ring.len() {
            self.since_learn = 0;
            self.noise.push(smoothed.abs());
        }
    }

    /// [`Self::push`] then [`Self::learn`] for each of `residuals` (quiet samples), in order: the
    /// same operations on the same values. The running mean is only read where a value goes into
    /// the σ estimate, and the sum is only re-added where the ring wraps, so the samples between
    /// those points (a window's worth) go through a loop that only moves the ring and the sum,
    /// or only the ring when the sum is re-added before anything reads it.
    /// Called once per quiet block; kept out of line so that its registers and the quiet loop's
    /// are allocated apart.
    #[inline(never)]
    pub(crate) fn push_learn_quiet(&mut self, residuals: &[f64]) {
        let w = self.ring.len();
        let (mut head, mut sum, mut since_learn, inv_w) = (self.head, self.sum, self.since_learn, self.inv_w);
        let mut rest = residuals;
        while !rest.is_empty() {
            // Up to the next wrap or learn, whichever comes first (both at most `w` away).
            let n = rest.len().min(w - head).min(w - since_learn);
            let (run, after) = rest.split_at(n);
            rest = after;
            if head + n == w {
                // The run ends where the ring wraps and the sum is re-added from the ring: the
                // running sum is read nowhere before (a learn in the run's last sample reads it
                // after the re-add), so only the ring moves.
                self.ring[head..].copy_from_slice(run);
            } else {
                for (slot, &residual) in self.ring[head..head + n].iter_mut().zip(run) {
                    let old = *slot;
                    *slot = residual;
                    sum += residual - old;
                }
            }
            head += n;
            since_learn += n;
            if head == w {
                head = 0;
                sum = self.ring.iter().sum();
            }
            if since_learn == w {
                since_learn = 0;
                self.noise.push((sum * inv_w).abs());
            }
        }
        (self.head, self.sum, self.since_learn) = (head, sum, since_learn);
    }

    /// Robust σ of the smoothed residual; before it has any value, `raw_sigma`/√w (white noise).
    #[inline]
    pub(crate) fn sigma(&self, raw_sigma: f64) -> f64 {
        if self.noise.len() > 0 {
            self.noise.sigma()
        } else {
            raw_sigma * self.inv_w.sqrt()
        }
    }

    /// Forget the residuals (the baseline restarted at a new level). O(w), once per level shift.
    pub(crate) fn clear(&mut self) {
        self.ring.iter_mut().for_each(|r| *r = 0.0);
        self.head = 0;
        self.sum = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_mean_and_its_sigma_follow_white_noise() {
        let w = 16;
        let mut s = Smoother::new(w, 200_000);
        let mut x: u64 = 7;
        let mut last = Vec::new();
        for _ in 0..200_000 {
            // Sum of 12 uniforms − 6: unit-variance, near-Gaussian.
            let mut v = -6.0;
            for _ in 0..12 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                v += (x >> 11) as f64 / (1u64 << 53) as f64;
            }
            let m = s.push(v);
            last.push(v);
            if last.len() > w {
                last.remove(0);
            }
            let exact = last.iter().sum::<f64>() / w as f64;
            assert!((m - exact).abs() < 1e-12, "{m} vs {exact}");
            s.learn(m);
        }
        // σ of a 16-sample mean of unit white noise is 1/4.
        let sigma = s.sigma(1.0);
        assert!((sigma - 0.25).abs() < 0.02, "{sigma}");
        s.clear();
        assert_eq!(s.push(4.0), 4.0 / w as f64);
    }

    #[test]
    fn quiet_runs_push_and_learn_as_sample_by_sample() {
        // Runs of every length from 0 to 3 windows, starting at every ring and learn phase: the
        // ring, the running sum (bit for bit), the phases and the σ histogram agree.
        let w = 7;
        let mut one = Smoother::new(w, 700);
        let mut x: u64 = 99;
        let mut next = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        // Offset the learn phase from the ring's, as events (pushed, not learned) do.
        for _ in 0..3 {
            one.push(next());
        }
        let mut runs = one.clone();
        for len in (0..=3 * w).chain([1, 2, 5, 40, 3]) {
            let residuals: Vec<f64> = (0..len).map(|_| next()).collect();
            for &r in &residuals {
                let m = one.push(r);
                one.learn(m);
            }
            runs.push_learn_quiet(&residuals);
            assert_eq!((runs.head, runs.since_learn), (one.head, one.since_learn), "run of {len}");
            assert_eq!(runs.sum.to_bits(), one.sum.to_bits(), "run of {len}");
            assert_eq!(runs.ring, one.ring);
            assert_eq!((runs.noise.len, runs.noise.head), (one.noise.len, one.noise.head));
            assert_eq!(runs.noise.counts, one.noise.counts);
            assert_eq!(runs.sigma(1.0).to_bits(), one.sigma(1.0).to_bits());
        }
    }
}
