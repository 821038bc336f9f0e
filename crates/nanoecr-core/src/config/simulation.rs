//! `[simulation]`: the simulated rig. Defaults follow shared/science.md (Yang et al.).

use serde::{Deserialize, Serialize};

use super::check::{non_negative, positive, within};
use super::error::{ConfigError, ConfigErrorKind};

/// Time course of a simulated secondary spike of peak |Δρ/ρ| = x and duration D (onset to end).
/// Edges are drawn per spike from `[spike_edge_min_s, spike_edge_max_s]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpikeShape {
    /// x on [onset, onset + D): the shape the detector was first built for.
    #[default]
    Boxcar,
    /// Linear rise and fall (each one edge long) around a plateau at x.
    Trapezoid,
    /// Linear rise over one edge to x, then an exponential decay (time constant a third of what
    /// is left of D), cut to 0 at the end.
    RiseDecay,
    /// Linear rise over one edge to x, relaxing exponentially to a plateau at x / 1.5, then a
    /// linear fall over one edge.
    Overshoot,
}

/// Parameters of the simulated rig; every value has a default from the paper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulationConfig {
    /// Seed of every random draw: the same seed gives bit-identical runs.
    pub seed: u64,
    /// Total Gaussian noise on Δρ/ρ (current and displacement noise together), dimensionless.
    pub resistivity_noise: f64,
    /// Gaussian displacement noise, nm.
    pub disp_noise_nm: f64,
    /// Gaussian load-sensor noise, µN.
    pub load_noise_un: f64,
    /// Slow thermal drift of the displacement, nm/s.
    pub drift_nm_per_s: f64,
    /// 1/f (pink) noise on Δρ/ρ, rms (0 = off).
    pub pink_noise: f64,
    /// Mains pick-up amplitude on Δρ/ρ (0 = off).
    pub mains_amplitude: f64,
    /// Mains frequency, Hz.
    pub mains_hz: f64,
    /// Harmonics of the mains pick-up above the fundamental (2f, 3f, …); 0 = a pure sine.
    pub mains_harmonics: u32,
    /// Amplitude of harmonic h relative to the fundamental is this to the power h − 1.
    pub mains_harmonic_fraction: f64,
    /// Depth of the slow modulation of the mains amplitude (0 = constant; 0.5 swings it ±50 %).
    pub mains_drift_fraction: f64,
    /// Frequency of that modulation, Hz (slow against a spike and against the detector's memory).
    pub mains_drift_hz: f64,
    /// Linear drift of the measured Δρ/ρ baseline, per s (noise, not in the ground truth).
    pub baseline_drift_per_s: f64,
    /// Amplitude of a slow sinusoidal wander of the measured Δρ/ρ baseline (0 = off).
    pub baseline_wander: f64,
    /// Frequency of that wander, Hz.
    pub baseline_wander_hz: f64,
    /// Baseline Δρ/ρ per unit strain (the slow drift of Δρ/ρ under the load ramp).
    pub resistivity_per_strain: f64,
    /// Ohmic contact is established uniformly between `contact_min_s` and `contact_max_s`, s.
    pub contact_min_s: f64,
    /// See `contact_min_s`, s.
    pub contact_max_s: f64,
    /// Resistance of the whole circuit at the reference state, Ω (sets the current scale:
    /// 5 V over 5 MΩ is 1 µA).
    pub circuit_resistance_ohm: f64,
    /// First-order time constant of the load actuator, s.
    pub actuator_time_constant_s: f64,
    /// Static gain of the actuator (load produced per µN commanded); ≠ 1 so feedback matters.
    pub actuator_gain: f64,
    /// Secondary-spike rate during loading at `spike_rate_reference_stress_mpa`, 1/s.
    pub spike_rate_load_per_s: f64,
    /// Secondary-spike rate during the hold at `spike_rate_reference_stress_mpa`, 1/s.
    pub spike_rate_hold_per_s: f64,
    /// Secondary-spike rate during unloading at `spike_rate_reference_stress_mpa`, 1/s.
    pub spike_rate_unload_per_s: f64,
    /// β in rate ∝ (σ / σ_ref)^(−β): doubling the stress lengthens the mean wait by 2^β
    /// (0 = rates independent of stress).
    pub spike_rate_stress_exponent: f64,
    /// σ_ref, the stress at which the `spike_rate_<segment>_per_s` keys hold, MPa.
    pub spike_rate_reference_stress_mpa: f64,
    /// Stresses below this count as this in the rate law (keeps it finite at zero stress), MPa.
    pub spike_rate_min_stress_mpa: f64,
    /// b in P(p-type) = ½ + b · tanh(σ̇ / σ̇₀): the largest excess of p (loading) or n
    /// (unloading) over ½, in [0, ½].
    pub p_fraction_bias_max: f64,
    /// σ̇₀ in P(p-type) = ½ + b · tanh(σ̇ / σ̇₀), MPa/s.
    pub p_fraction_stress_rate_mpa_per_s: f64,
    /// Power-law exponent α of |Δρ/ρ| magnitudes.
    pub alpha: f64,
    /// Exponential cutoff xc of |Δρ/ρ| magnitudes.
    pub xc: f64,
    /// Smallest magnitude drawn, x_min.
    pub x_min: f64,
    /// Largest magnitude drawn (truncation for numerical safety).
    pub x_max: f64,
    /// Shortest spike, s.
    pub spike_min_duration_s: f64,
    /// Longest spike, s.
    pub spike_max_duration_s: f64,
    /// Time course of a secondary spike (docs/simulator.md): a boxcar (the default), a
    /// trapezoid, a fast rise with an exponential decay, or a plateau with an overshoot.
    pub spike_shape: SpikeShape,
    /// Shortest rising (and, for the trapezoid, falling) edge of a shaped spike, s.
    pub spike_edge_min_s: f64,
    /// Longest edge of a shaped spike, s.
    pub spike_edge_max_s: f64,
    /// Engineering stress above which pop-ins occur, MPa.
    pub popin_threshold_stress_mpa: f64,
    /// Pop-in rate above the threshold stress, 1/s.
    pub popin_rate_per_s: f64,
    /// Mean displacement jump of a pop-in above the 2 nm floor, nm (exponential).
    pub popin_mean_extra_nm: f64,
    /// Pop-in displacement speed, nm/s: duration = jump / speed, capped at 8 ms.
    pub popin_speed_nm_per_s: f64,
    /// Δρ/ρ of the spike accompanying a pop-in per unit strain jump Δh/H0.
    pub popin_resistivity_per_strain: f64,
}

impl Default for SimulationConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            resistivity_noise: 1e-4,
            disp_noise_nm: 0.1,
            load_noise_un: 0.05,
            drift_nm_per_s: 0.05,
            pink_noise: 0.0,
            mains_amplitude: 0.0,
            mains_hz: 50.0,
            mains_harmonics: 0,
            mains_harmonic_fraction: 0.5,
            mains_drift_fraction: 0.0,
            mains_drift_hz: 0.1,
            baseline_drift_per_s: 0.0,
            baseline_wander: 0.0,
            baseline_wander_hz: 0.2,
            resistivity_per_strain: 0.5,
            contact_min_s: 1.0,
            contact_max_s: 2.0,
            circuit_resistance_ohm: 5e6,
            actuator_time_constant_s: 0.004,
            actuator_gain: 0.95,
            spike_rate_load_per_s: 12.0,
            spike_rate_hold_per_s: 8.0,
            spike_rate_unload_per_s: 10.0,
            spike_rate_stress_exponent: 0.25,
            spike_rate_reference_stress_mpa: 1000.0,
            spike_rate_min_stress_mpa: 100.0,
            p_fraction_bias_max: 0.5,
            p_fraction_stress_rate_mpa_per_s: 600.0,
            alpha: 1.5,
            xc: 1e-3,
            x_min: 1e-4,
            x_max: 0.1,
            spike_min_duration_s: 1.0e-3,
            spike_max_duration_s: 1.5e-3,
            spike_shape: SpikeShape::Boxcar,
            spike_edge_min_s: 1e-4,
            spike_edge_max_s: 3e-4,
            popin_threshold_stress_mpa: 2000.0,
            popin_rate_per_s: 1.0,
            popin_mean_extra_nm: 6.0,
            popin_speed_nm_per_s: 2000.0,
            popin_resistivity_per_strain: 5.0,
        }
    }
}

impl SimulationConfig {
    /// Check every value; `rate_hz` is the acquisition rate.
    pub fn validate(&self, _rate_hz: f64) -> Result<(), ConfigError> {
        let k = |f: &str| format!("simulation.{f}");
        positive(&k("resistivity_noise"), self.resistivity_noise, "resistivity noise")?;
        within(&k("resistivity_noise"), self.resistivity_noise, 0.0, 0.1, "resistivity noise")?;
        non_negative(&k("disp_noise_nm"), self.disp_noise_nm, "displacement noise")?;
        non_negative(&k("load_noise_un"), self.load_noise_un, "load noise")?;
        within(&k("drift_nm_per_s"), self.drift_nm_per_s, -1e3, 1e3, "drift")?;
        non_negative(&k("pink_noise"), self.pink_noise, "pink noise")?;
        non_negative(&k("mains_amplitude"), self.mains_amplitude, "mains amplitude")?;
        positive(&k("mains_hz"), self.mains_hz, "mains frequency")?;
        within(&k("mains_harmonics"), f64::from(self.mains_harmonics), 0.0, 20.0, "number of mains harmonics")?;
        within(&k("mains_harmonic_fraction"), self.mains_harmonic_fraction, 0.0, 1.0, "harmonic fraction")?;
        within(&k("mains_drift_fraction"), self.mains_drift_fraction, 0.0, 1.0, "mains amplitude drift")?;
        non_negative(&k("mains_drift_hz"), self.mains_drift_hz, "mains drift frequency")?;
        within(&k("baseline_drift_per_s"), self.baseline_drift_per_s, -1.0, 1.0, "baseline drift")?;
        non_negative(&k("baseline_wander"), self.baseline_wander, "baseline wander")?;
        non_negative(&k("baseline_wander_hz"), self.baseline_wander_hz, "baseline wander frequency")?;
        within(&k("resistivity_per_strain"), self.resistivity_per_strain, -100.0, 100.0, "resistivity per strain")?;
        non_negative(&k("contact_min_s"), self.contact_min_s, "contact time")?;
        non_negative(&k("contact_max_s"), self.contact_max_s, "contact time")?;
        if self.contact_max_s < self.contact_min_s {
            return Err(ConfigError::new(
                ConfigErrorKind::Inconsistent,
                k("contact_max_s"),
                "contact_max_s is below contact_min_s",
            )
            .value(self.contact_max_s)
            .expected(format!("≥ {} s", self.contact_min_s)));
        }
        positive(&k("circuit_resistance_ohm"), self.circuit_resistance_ohm, "circuit resistance")?;
        positive(&k("actuator_time_constant_s"), self.actuator_time_constant_s, "actuator time constant")?;
        within(&k("actuator_gain"), self.actuator_gain, 0.1, 10.0, "actuator gain")?;
        for (f, v) in [
            ("spike_rate_load_per_s", self.spike_rate_load_per_s),
            ("spike_rate_hold_per_s", self.spike_rate_hold_per_s),
            ("spike_rate_unload_per_s", self.spike_rate_unload_per_s),
            ("popin_rate_per_s", self.popin_rate_per_s),
        ] {
            within(&k(f), v, 0.0, 1000.0, "event rate")?;
        }
        within(&k("spike_rate_stress_exponent"), self.spike_rate_stress_exponent, -3.0, 3.0, "stress exponent")?;
        positive(&k("spike_rate_reference_stress_mpa"), self.spike_rate_reference_stress_mpa, "reference stress")?;
        positive(&k("spike_rate_min_stress_mpa"), self.spike_rate_min_stress_mpa, "floor stress")?;
        within(&k("p_fraction_bias_max"), self.p_fraction_bias_max, 0.0, 0.5, "p-type bias")?;
        positive(&k("p_fraction_stress_rate_mpa_per_s"), self.p_fraction_stress_rate_mpa_per_s, "bias stress rate")?;
        within(&k("alpha"), self.alpha, 0.0, 5.0, "power-law exponent")?;
        positive(&k("xc"), self.xc, "cutoff")?;
        positive(&k("x_min"), self.x_min, "smallest magnitude")?;
        if self.x_max <= self.x_min {
            return Err(ConfigError::new(ConfigErrorKind::Inconsistent, k("x_max"), "x_max must exceed x_min")
                .value(self.x_max)
                .expected(format!("> {}", self.x_min)));
        }
        positive(&k("spike_min_duration_s"), self.spike_min_duration_s, "spike duration")?;
        if self.spike_max_duration_s < self.spike_min_duration_s {
            return Err(ConfigError::new(
                ConfigErrorKind::Inconsistent,
                k("spike_max_duration_s"),
                "longest spike is shorter than the shortest",
            )
            .value(self.spike_max_duration_s)
            .expected(format!("≥ {} s", self.spike_min_duration_s)));
        }
        non_negative(&k("spike_edge_min_s"), self.spike_edge_min_s, "spike edge")?;
        if self.spike_edge_max_s < self.spike_edge_min_s {
            return Err(ConfigError::new(
                ConfigErrorKind::Inconsistent,
                k("spike_edge_max_s"),
                "longest spike edge is shorter than the shortest",
            )
            .value(self.spike_edge_max_s)
            .expected(format!("≥ {} s", self.spike_edge_min_s)));
        }
        if self.spike_shape != SpikeShape::Boxcar && 2.0 * self.spike_edge_max_s > self.spike_min_duration_s {
            return Err(ConfigError::new(
                ConfigErrorKind::Inconsistent,
                k("spike_edge_max_s"),
                "two edges must fit in the shortest spike",
            )
            .value(self.spike_edge_max_s)
            .expected(format!("≤ {} s (half of spike_min_duration_s)", self.spike_min_duration_s / 2.0)));
        }
        positive(&k("popin_threshold_stress_mpa"), self.popin_threshold_stress_mpa, "pop-in threshold")?;
        non_negative(&k("popin_mean_extra_nm"), self.popin_mean_extra_nm, "pop-in size")?;
        positive(&k("popin_speed_nm_per_s"), self.popin_speed_nm_per_s, "pop-in speed")?;
        non_negative(
            &k("popin_resistivity_per_strain"),
            self.popin_resistivity_per_strain,
            "pop-in resistivity coupling",
        )?;
        Ok(())
    }
}
