//! Time courses of secondary spikes (`[simulation] spike_shape`).
//!
//! Every shape is described by its onset, its duration D (onset to the end of the spike), its
//! signed peak height ±x and, for the shaped ones, one or two edges drawn per spike. The ground
//! truth's magnitude is the **peak** ±x for every shape (for the overshoot, the top of the
//! overshoot, 1.5× the plateau), and its peak time is when the waveform first reaches it.

use nanoecr_core::config::SpikeShape;
use rand::Rng;

/// Peak over plateau of the `Overshoot` shape: the plateau sits at peak / 1.5.
pub(crate) const OVERSHOOT_PEAK_OVER_PLATEAU: f64 = 1.5;
/// Time constant of the overshoot's relaxation to its plateau, as a fraction of D.
const OVERSHOOT_TAU_FRACTION: f64 = 0.15;
/// The `RiseDecay` shape's decay time constant is what is left of D after the rise, divided by
/// this: the spike has fallen to e⁻³ ≈ 5 % of its peak when it is cut to 0.
const DECAY_TIME_CONSTANTS: f64 = 3.0;

/// A resistivity spike alive in the world.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LiveSpike {
    onset_s: f64,
    pub(crate) end_s: f64,
    height: f64,
    form: Form,
}

/// The shape with the per-spike parameters it needs.
#[derive(Debug, Clone, Copy)]
enum Form {
    Boxcar,
    Trapezoid { rise_s: f64, fall_s: f64 },
    RiseDecay { rise_s: f64, inv_tau_s: f64 },
    Overshoot { rise_s: f64, fall_s: f64, inv_tau_s: f64 },
}

impl LiveSpike {
    /// A boxcar of `height` on [onset, onset + duration) (secondary spikes' default shape and
    /// every pop-in's spike). Draws nothing.
    pub(crate) fn boxcar(onset_s: f64, duration_s: f64, height: f64) -> Self {
        Self { onset_s, end_s: onset_s + duration_s, height, form: Form::Boxcar }
    }

    /// A spike of `shape`, its edges drawn from `rng` uniformly in `edge_s` (none for a boxcar,
    /// so a boxcar run draws exactly what it drew before shapes existed). Edges longer than half
    /// the duration are cut to half of it.
    pub(crate) fn new(
        shape: SpikeShape,
        onset_s: f64,
        duration_s: f64,
        height: f64,
        edge_s: [f64; 2],
        rng: &mut impl Rng,
    ) -> Self {
        let mut edge = || (edge_s[0] + (edge_s[1] - edge_s[0]) * rng.gen::<f64>()).min(0.5 * duration_s);
        let form = match shape {
            SpikeShape::Boxcar => Form::Boxcar,
            SpikeShape::Trapezoid => {
                let rise_s = edge();
                Form::Trapezoid { rise_s, fall_s: edge() }
            }
            SpikeShape::RiseDecay => {
                let rise_s = edge();
                Form::RiseDecay {
                    rise_s,
                    inv_tau_s: DECAY_TIME_CONSTANTS / (duration_s - rise_s).max(f64::MIN_POSITIVE),
                }
            }
            SpikeShape::Overshoot => {
                let rise_s = edge();
                Form::Overshoot { rise_s, fall_s: edge(), inv_tau_s: 1.0 / (OVERSHOOT_TAU_FRACTION * duration_s) }
            }
        };
        Self { onset_s, end_s: onset_s + duration_s, height, form }
    }

    /// When the waveform first reaches its peak, s since the run start.
    pub(crate) fn peak_time_s(&self) -> f64 {
        match self.form {
            Form::Boxcar => self.onset_s,
            Form::Trapezoid { rise_s, .. } | Form::RiseDecay { rise_s, .. } | Form::Overshoot { rise_s, .. } => {
                self.onset_s + rise_s
            }
        }
    }

    /// Δρ/ρ of the spike at `t` (onset ≤ t < end for a live spike; 0 outside).
    #[inline]
    pub(crate) fn value_at(&self, t: f64) -> f64 {
        match self.form {
            // No arithmetic: the boxcar default stays bit for bit what it was.
            Form::Boxcar => self.height,
            Form::Trapezoid { rise_s, fall_s } => self.height * self.envelope(t, rise_s, fall_s),
            Form::RiseDecay { rise_s, inv_tau_s } => {
                let u = t - self.onset_s;
                if u < 0.0 || t >= self.end_s {
                    0.0
                } else if u < rise_s {
                    self.height * u / rise_s
                } else {
                    self.height * (-(u - rise_s) * inv_tau_s).exp()
                }
            }
            Form::Overshoot { rise_s, fall_s, inv_tau_s } => {
                let u = t - self.onset_s;
                let plateau = 1.0 / OVERSHOOT_PEAK_OVER_PLATEAU;
                // Relaxation from the peak (1 at the end of the rise) to the plateau.
                let level =
                    if u <= rise_s { 1.0 } else { plateau + (1.0 - plateau) * (-(u - rise_s) * inv_tau_s).exp() };
                self.height * level * self.envelope(t, rise_s, fall_s)
            }
        }
    }

    /// 0 → 1 over the rise, 1, 1 → 0 over the fall; 0 outside [onset, end).
    #[inline]
    fn envelope(&self, t: f64, rise_s: f64, fall_s: f64) -> f64 {
        let u = t - self.onset_s;
        let left = self.end_s - t;
        if u < 0.0 || left <= 0.0 {
            0.0
        } else if u < rise_s {
            u / rise_s
        } else if left < fall_s {
            left / fall_s
        } else {
            1.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Peak of a waveform sampled finely over its life.
    fn fine_peak(s: &LiveSpike) -> (f64, f64) {
        let n = 100_000;
        let d = s.end_s - s.onset_s;
        (0..n)
            .map(|i| {
                let t = s.onset_s + d * i as f64 / n as f64;
                (t, s.value_at(t))
            })
            .fold((f64::NAN, f64::NEG_INFINITY), |b, (t, v)| if v > b.1 { (t, v) } else { b })
    }

    #[test]
    fn every_shape_peaks_at_its_height_at_its_peak_time_and_ends_at_zero() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for shape in [SpikeShape::Boxcar, SpikeShape::Trapezoid, SpikeShape::RiseDecay, SpikeShape::Overshoot] {
            for _ in 0..20 {
                let s = LiveSpike::new(shape, 3.0, 1.7e-3, 8e-4, [1e-4, 3e-4], &mut rng);
                let (t_peak, peak) = fine_peak(&s);
                // The grid misses the exact peak by at most one step of the steepest edge.
                assert!((peak - 8e-4).abs() < 1e-7, "{shape:?}: peak {peak}");
                // Onset + rise − onset loses a few ulps of the run time (≈ 10⁻¹² of the edge).
                assert!(
                    (s.value_at(s.peak_time_s()) - 8e-4).abs() < 1e-12,
                    "{shape:?}: at the peak time {} {:?}",
                    s.value_at(s.peak_time_s()),
                    s
                );
                assert!(
                    (t_peak - s.peak_time_s()).abs() < 1e-7,
                    "{shape:?}: peak at {t_peak}, said {}",
                    s.peak_time_s()
                );
                assert_eq!(s.value_at(s.end_s), if shape == SpikeShape::Boxcar { 8e-4 } else { 0.0 });
                if shape != SpikeShape::Boxcar {
                    assert_eq!(s.value_at(2.999), 0.0, "{shape:?} before onset");
                    let rise = s.peak_time_s() - 3.0;
                    assert!((1e-4..=3e-4).contains(&rise), "{shape:?}: rise {rise}");
                }
            }
        }
    }

    #[test]
    fn overshoot_settles_on_its_plateau_and_rise_decay_decays() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let o = LiveSpike::new(SpikeShape::Overshoot, 0.0, 2e-3, -1e-3, [2e-4, 2e-4], &mut rng);
        // Mid-plateau, five relaxation times (0.3 ms each) after the peak: within 1 % of plateau.
        let plateau = o.value_at(1.7e-3);
        assert!((plateau / (-1e-3 / OVERSHOOT_PEAK_OVER_PLATEAU) - 1.0).abs() < 0.01, "{plateau}");
        let d = LiveSpike::new(SpikeShape::RiseDecay, 0.0, 1.6e-3, 1e-3, [1e-4, 1e-4], &mut rng);
        // τ = (1.6 − 0.1) ms / 3 = 0.5 ms: one τ after the peak it is at e⁻¹.
        assert!((d.value_at(6e-4) / 1e-3 - (-1.0f64).exp()).abs() < 1e-9);
    }
}
