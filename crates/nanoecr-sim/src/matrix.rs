//! The robustness matrix of issue 13: every spike shape against every noise family, one
//! [`SimulationConfig`] per cell and seed. The accuracy examples and the detector's CI test build
//! their runs from here, so both score the same cells.

use nanoecr_core::config::{SimulationConfig, SpikeShape};
use nanoecr_core::{Event, EventKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{World, WorldSample};

/// Every spike shape, the default first.
pub const SHAPES: [SpikeShape; 4] =
    [SpikeShape::Boxcar, SpikeShape::Trapezoid, SpikeShape::RiseDecay, SpikeShape::Overshoot];

/// Shortest and longest spike of the matrix, s (the issue: 1–2 ms).
pub const DURATION_S: [f64; 2] = [1e-3, 2e-3];

/// Mains pick-up amplitude of the `Mains` and `Drift` families (rms 0.71 × 10⁻⁴ in the
/// fundamental, as large as the white noise's share).
pub const MAINS_AMPLITUDE: f64 = 1e-4;

/// The noise a cell's Δρ/ρ carries. Each family adds to the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseFamily {
    /// White Gaussian noise of 10⁻⁴ (the paper's error analysis; the default).
    White,
    /// Adds 1/f noise of 0.5–1× the white rms (drawn per seed).
    Pink,
    /// Adds 50 Hz mains pick-up of amplitude [`MAINS_AMPLITUDE`] with three harmonics (each half
    /// the one before) and an amplitude that drifts ±50 % over 10 s.
    Mains,
    /// Adds a slow baseline: a linear drift of 10⁻⁵ per s and a 0.2 Hz wander of 2 × 10⁻⁴.
    Drift,
}

impl NoiseFamily {
    /// Every family, in order.
    pub const ALL: [NoiseFamily; 4] = [NoiseFamily::White, NoiseFamily::Pink, NoiseFamily::Mains, NoiseFamily::Drift];

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            NoiseFamily::White => "white",
            NoiseFamily::Pink => "+ pink",
            NoiseFamily::Mains => "+ mains",
            NoiseFamily::Drift => "+ drift",
        }
    }
}

/// Name of a shape for tables (its config value).
pub fn shape_name(shape: SpikeShape) -> &'static str {
    match shape {
        SpikeShape::Boxcar => "boxcar",
        SpikeShape::Trapezoid => "trapezoid",
        SpikeShape::RiseDecay => "rise_decay",
        SpikeShape::Overshoot => "overshoot",
    }
}

/// The simulation of one matrix cell and seed: defaults, spikes of `shape` lasting
/// [`DURATION_S`], and the noise of `family`.
pub fn cell_config(shape: SpikeShape, family: NoiseFamily, seed: u64) -> SimulationConfig {
    let mut c = SimulationConfig {
        seed,
        spike_shape: shape,
        spike_min_duration_s: DURATION_S[0],
        spike_max_duration_s: DURATION_S[1],
        ..SimulationConfig::default()
    };
    let rank = |f: NoiseFamily| NoiseFamily::ALL.iter().position(|&g| g == f).unwrap_or(0);
    if rank(family) >= rank(NoiseFamily::Pink) {
        // The pink level is part of the cell, not of the run's random streams: its own generator.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1000);
        c.pink_noise = c.resistivity_noise * rng.gen_range(0.5..=1.0);
    }
    if rank(family) >= rank(NoiseFamily::Mains) {
        c.mains_amplitude = MAINS_AMPLITUDE;
        c.mains_hz = 50.0;
        c.mains_harmonics = 3;
        c.mains_harmonic_fraction = 0.5;
        c.mains_drift_fraction = 0.5;
        c.mains_drift_hz = 0.1;
    }
    if rank(family) >= rank(NoiseFamily::Drift) {
        c.baseline_drift_per_s = 1e-5;
        c.baseline_wander = 2e-4;
        c.baseline_wander_hz = 0.2;
    }
    c
}

/// The spikes' part of a sample's true Δρ/ρ: the truth minus the strain baseline (0 before the
/// reference state). Collect it per sample for [`sampled_truth`].
pub fn spike_signal(world: &World, s: &WorldSample) -> f64 {
    let height_nm = world.pillar().height_nm();
    let baseline = world
        .reference_strain()
        .map_or(0.0, |r| world.config().resistivity_per_strain * (s.true_disp_nm / height_nm - r));
    s.true_delta_rho - baseline
}

/// `truth` with each spike's magnitude replaced by its **sampled** peak: the largest same-sign
/// value of `signal` ([`spike_signal`] of every sample from the first, at `rate_hz`) at the
/// samples inside the spike, capped at the true peak. That is all any detector can see: at
/// 1 kHz a spike that decays within a millisecond is caught at a random phase of its decay.
/// Pop-ins are kept as they are.
pub fn sampled_truth(truth: &[Event], signal: &[f64], rate_hz: f64) -> Vec<Event> {
    truth
        .iter()
        .map(|e| {
            if e.kind != EventKind::Spike {
                return *e;
            }
            // Sample k is at k / rate_hz; the spike covers [onset, onset + duration).
            let first = (e.onset_time_s * rate_hz).ceil().max(0.0) as usize;
            let end = (((e.onset_time_s + e.duration_s) * rate_hz).ceil().max(0.0) as usize).min(signal.len());
            let sign = e.magnitude.signum();
            let top = signal.get(first..end).unwrap_or_default().iter().fold(0.0f64, |m, &v| m.max(sign * v));
            Event { magnitude: sign * top.min(e.magnitude.abs()), ..*e }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_add_up_and_every_cell_is_a_valid_config() {
        for shape in SHAPES {
            for family in NoiseFamily::ALL {
                let c = cell_config(shape, family, 3);
                assert!(c.validate(1000.0).is_ok(), "{shape:?} {family:?}: {:?}", c.validate(1000.0));
                assert_eq!(c.spike_shape, shape);
                let pink = c.pink_noise / c.resistivity_noise;
                assert_eq!(pink > 0.0, family != NoiseFamily::White);
                assert!(pink == 0.0 || (0.5..=1.0).contains(&pink), "{pink}");
                assert_eq!(c.mains_amplitude > 0.0, matches!(family, NoiseFamily::Mains | NoiseFamily::Drift));
                assert_eq!(c.baseline_wander > 0.0, family == NoiseFamily::Drift);
            }
        }
        let white = cell_config(SpikeShape::Boxcar, NoiseFamily::White, 9);
        let defaults = SimulationConfig { seed: 9, spike_max_duration_s: 2e-3, ..SimulationConfig::default() };
        assert_eq!(white, defaults, "the white boxcar cell is the default rig with 1–2 ms spikes");
    }
}
