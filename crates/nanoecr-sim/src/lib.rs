//! # nanoecr-sim
//!
//! The simulated NanoECR rig: a Zr-based metallic-glass micropillar under a flat punch in load
//! control, with a constant bias voltage across it. Deterministic for a given seed; every
//! inelastic event it injects is recorded as ground truth so detection and fitting can be scored.
//!
//! [`World`] is the physics, advanced one sample period per [`World::step`]. Hardware backends
//! (`nanoecr-hw`'s sim backend, the firmware shims) wrap it behind device interfaces.
//!
//! Layout: this file holds the world (actuator, pillar mechanics, contact, circuit, event
//! processes); `powerlaw` the exact sampler of spike magnitudes ([`TruncatedPowerLaw`]); `noise`
//! the pick-up on Δρ/ρ beyond white noise (1/f, mains with harmonics and a drifting amplitude,
//! baseline drift); `shapes` the spikes' time courses; `rates` the spike rate and sign law as
//! functions of stress and stress rate. docs/simulator.md describes the model and every parameter.
//!
//! ## Time and sampling
//! Sample k is taken at t_k = k / rate_hz. Step k advances the world over (t_{k−1}, t_k]: events
//! are born at exact continuous times in that interval and the outputs are point samples at t_k.

pub mod matrix;
mod noise;
mod powerlaw;
pub mod rates;
mod shapes;

use nanoecr_core::config::SimulationConfig;
use nanoecr_core::resistivity::current_for_resistivity_change;
use nanoecr_core::{Event, EventKind, Pillar, Segment, Sign};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Exp1, StandardNormal};

use crate::noise::Pickup;
pub use crate::powerlaw::TruncatedPowerLaw;
use crate::rates::{SpikeRates, StressRate};
use crate::shapes::LiveSpike;

/// Smallest displacement jump that counts as a pop-in, nm (science.md: "greater than ≈ 2 nm").
pub const POPIN_MIN_JUMP_NM: f64 = 2.0;
/// Longest pop-in, s (science.md: durations "up to ≈ 8 ms").
pub const POPIN_MAX_DURATION_S: f64 = 8e-3;

/// Before Ohmic contact the punch touches asperities: the current is a small, erratic fraction
/// of the contact current. These bound that fraction.
const PRE_CONTACT_MIN_FACTOR: f64 = 0.02;
/// See [`PRE_CONTACT_MIN_FACTOR`].
const PRE_CONTACT_MAX_FACTOR: f64 = 0.3;
/// How often the asperity contact rearranges (the fraction jumps to a new value), 1/s.
const PRE_CONTACT_JUMP_RATE_PER_S: f64 = 50.0;
/// Relative flicker on the pre-contact current between jumps.
const PRE_CONTACT_JITTER: f64 = 0.02;

/// Room for events alive at once; sized from the config so `step` never grows these vectors.
const ACTIVE_BASE_CAPACITY: usize = 64;

/// Errors building a [`World`] or a sampler from parameters that leave the physics undefined.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// The acquisition rate is not a positive finite number.
    #[error("sample rate must be a positive finite number of Hz, got {0}")]
    InvalidRate(f64),
    /// The pillar geometry cannot give a strain (zero height or area).
    #[error("pillar geometry must be positive (diameter {diameter_um} µm, height {height_um} µm)")]
    InvalidPillar {
        /// Top diameter, µm.
        diameter_um: f64,
        /// Initial height, µm.
        height_um: f64,
    },
    /// The magnitude distribution's parameters do not define a distribution.
    #[error("spike magnitude law: {what} (α = {alpha}, xc = {xc}, x_min = {x_min}, x_max = {x_max})")]
    InvalidDistribution {
        /// What is wrong.
        what: &'static str,
        /// Exponent α.
        alpha: f64,
        /// Cutoff xc.
        xc: f64,
        /// Lower end x_min.
        x_min: f64,
        /// Upper end x_max.
        x_max: f64,
    },
}

/// The state of the rig after one sample period, as the instruments would measure it (with
/// noise) plus the noiseless truth for tests.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WorldSample {
    /// Sample sequence number (0, 1, 2, …).
    pub seq: u64,
    /// Time since the world started, s.
    pub time_s: f64,
    /// Measured load, µN (with sensor noise).
    pub load_un: f64,
    /// Measured displacement, nm (with noise and drift).
    pub disp_nm: f64,
    /// Current relative to the reference current I_ref = V / R_circuit: the source-measure unit
    /// reads `current_factor · V / circuit_resistance_ohm`. Includes current noise; erratic and
    /// small before Ohmic contact.
    pub current_factor: f64,
    /// True load on the pillar, µN.
    pub true_load_un: f64,
    /// True displacement (elastic + plastic, no noise, no drift), nm.
    pub true_disp_nm: f64,
    /// True Δρ/ρ relative to the reference state (baseline + spikes), dimensionless. The reference
    /// state is the first sample with Ohmic contact; before it only pop-in spikes show here.
    pub true_delta_rho: f64,
    /// Whether Ohmic contact is established.
    pub contact: bool,
    /// Accumulated plastic (pop-in) displacement, nm, including pop-ins still ramping.
    pub plastic_disp_nm: f64,
}

impl WorldSample {
    /// The sample an ideal open-loop rig would record: the setpoint that drove this step, the
    /// measured load and displacement, and the current the source-measure unit reads at a bias
    /// of `voltage_v` across `circuit_resistance_ohm`. For offline generators (detector tests,
    /// benchmarks, scoring); the simulated backend of the control loop builds its own.
    pub fn to_sample(
        &self,
        setpoint_un: f64,
        segment: Segment,
        voltage_v: f64,
        circuit_resistance_ohm: f64,
    ) -> nanoecr_core::Sample {
        nanoecr_core::Sample {
            seq: self.seq,
            time_s: self.time_s,
            setpoint_un,
            load_un: self.load_un,
            disp_nm: self.disp_nm,
            current_a: self.current_factor * voltage_v / circuit_resistance_ohm,
            voltage_v,
            segment,
            flags: 0,
        }
    }
}

/// A pop-in still ramping its plastic displacement.
#[derive(Debug, Clone, Copy)]
struct Ramp {
    onset_s: f64,
    duration_s: f64,
    jump_nm: f64,
}

/// One independent random stream per source, so that changing one parameter (a noise level, a
/// rate) does not reshuffle the draws of the others: event times do not move when the noise does.
#[derive(Debug, Clone)]
struct Streams {
    load: ChaCha8Rng,
    disp: ChaCha8Rng,
    current: ChaCha8Rng,
    pink: ChaCha8Rng,
    contact: ChaCha8Rng,
    spike_time: ChaCha8Rng,
    spike_sign: ChaCha8Rng,
    spike_magnitude: ChaCha8Rng,
    spike_duration: ChaCha8Rng,
    popin_time: ChaCha8Rng,
    popin_size: ChaCha8Rng,
    mains: ChaCha8Rng,
    spike_shape: ChaCha8Rng,
    pickup_phases: ChaCha8Rng,
}

impl Streams {
    fn new(seed: u64) -> Self {
        // Same key, distinct ChaCha stream ids: independent sequences by construction. Ids are
        // part of the reproducibility contract: never renumber, only append.
        let stream = |id: u64| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream(id);
            r
        };
        Self {
            load: stream(1),
            disp: stream(2),
            current: stream(3),
            pink: stream(4),
            contact: stream(5),
            spike_time: stream(6),
            spike_sign: stream(7),
            spike_magnitude: stream(8),
            spike_duration: stream(9),
            popin_time: stream(10),
            popin_size: stream(11),
            mains: stream(12),
            spike_shape: stream(13),
            pickup_phases: stream(14),
        }
    }
}

/// The simulated pillar, actuator and electrical circuit.
#[derive(Debug, Clone)]
pub struct World {
    cfg: SimulationConfig,
    pillar: Pillar,
    rate_hz: f64,
    dt_s: f64,
    height_nm: f64,
    /// Top area, µm² (`Pillar::area_um2`).
    area_um2: f64,
    /// Young's modulus in MPa (GPa · 1000, as `Pillar::elastic_disp_nm` has it).
    youngs_modulus_mpa: f64,
    /// Fraction of the way to the commanded load the actuator moves in one sample (exact
    /// discretisation of the first-order lag, so it does not depend on dt/τ being small).
    actuator_step: f64,
    seq: u64,
    load_un: f64,
    streams: Streams,
    magnitudes: TruncatedPowerLaw,
    rates: SpikeRates,
    stress_rate: StressRate,
    /// Smoothed stress rate of the current step, MPa/s: P(p-type) of a spike born in it follows
    /// from it. Kept rather than the probability, which costs a `tanh` (≈ 5 % of a `--fast`
    /// run in a profile) and is needed only in the rare step that gives birth to a spike.
    stress_rate_now_mpa_per_s: f64,
    /// Gaussian σ of the current factor, chosen so current and displacement noise together give
    /// `resistivity_noise` on Δρ/ρ.
    current_noise: f64,
    pickup: Pickup,
    contact_time_s: f64,
    /// Strain at the reference (first contact) sample.
    strain_ref: Option<f64>,
    pre_contact_factor: f64,
    pre_contact_jump_prob: f64,
    /// Unit-rate exponential hazard left until the next secondary spike / pop-in. Spending it at
    /// the current rate gives a Poisson process whose rate may change from step to step.
    spike_hazard_left: f64,
    popin_hazard_left: f64,
    plastic_done_nm: f64,
    active_spikes: Vec<LiveSpike>,
    active_popins: Vec<Ramp>,
    ground_truth: Vec<Event>,
}

impl World {
    /// A new world at rest (zero load) sampling at `rate_hz`.
    ///
    /// # Panics
    /// If the parameters leave the physics undefined (see [`World::try_new`]); a config that passed
    /// `SimulationConfig::validate` and a validated pillar never do.
    pub fn new(cfg: &SimulationConfig, pillar: Pillar, rate_hz: f64) -> Self {
        match Self::try_new(cfg, pillar, rate_hz) {
            Ok(w) => w,
            Err(e) => panic!("World::new: {e}"),
        }
    }

    /// Like [`World::new`], but reports a non-positive rate, a degenerate pillar or an undefined
    /// magnitude law as an error. Other values are taken as given (zero noise is allowed, which
    /// validation refuses, so tests can check the noiseless relation).
    pub fn try_new(cfg: &SimulationConfig, pillar: Pillar, rate_hz: f64) -> Result<Self, SimError> {
        if !(rate_hz.is_finite() && rate_hz > 0.0) {
            return Err(SimError::InvalidRate(rate_hz));
        }
        if !(pillar.height_um > 0.0 && pillar.diameter_um > 0.0) {
            return Err(SimError::InvalidPillar { diameter_um: pillar.diameter_um, height_um: pillar.height_um });
        }
        let magnitudes = TruncatedPowerLaw::from_config(cfg)?;
        let dt_s = 1.0 / rate_hz;
        let height_nm = pillar.height_nm();
        let mut streams = Streams::new(cfg.seed);

        let geometric_noise = (1.0 + 3.0 * pillar.poisson_ratio) * cfg.disp_noise_nm / height_nm;
        let current_noise = (cfg.resistivity_noise.powi(2) - geometric_noise.powi(2)).max(0.0).sqrt();

        let contact_time_s = cfg.contact_min_s + (cfg.contact_max_s - cfg.contact_min_s) * streams.contact.gen::<f64>();
        let pre_contact_factor = streams.contact.gen_range(PRE_CONTACT_MIN_FACTOR..PRE_CONTACT_MAX_FACTOR);
        let mains_phase_rad = std::f64::consts::TAU * streams.mains.gen::<f64>();
        let pickup = Pickup::new(cfg, &mut streams.pink, mains_phase_rad, &mut streams.pickup_phases);
        let spike_hazard_left = streams.spike_time.sample(Exp1);
        let popin_hazard_left = streams.popin_time.sample(Exp1);

        // Events alive at once: a generous multiple of rate × longest duration, so `step` never
        // reallocates in practice.
        let rates = SpikeRates::from_config(cfg);
        let max_rate = rates.max_rate_per_s();
        let spike_alive = (8.0 * max_rate * cfg.spike_max_duration_s).ceil();
        let popin_alive = (8.0 * cfg.popin_rate_per_s * POPIN_MAX_DURATION_S).ceil();
        let spike_cap = ACTIVE_BASE_CAPACITY + clamp_to_usize(spike_alive + popin_alive);
        let popin_cap = ACTIVE_BASE_CAPACITY + clamp_to_usize(popin_alive);

        Ok(Self {
            cfg: cfg.clone(),
            pillar,
            rate_hz,
            dt_s,
            height_nm,
            area_um2: pillar.area_um2(),
            youngs_modulus_mpa: pillar.youngs_modulus_gpa * 1000.0,
            actuator_step: 1.0 - (-dt_s / cfg.actuator_time_constant_s).exp(),
            seq: 0,
            load_un: 0.0,
            streams,
            magnitudes,
            rates,
            stress_rate: StressRate::new(dt_s),
            stress_rate_now_mpa_per_s: 0.0,
            current_noise,
            pickup,
            contact_time_s,
            strain_ref: None,
            pre_contact_factor,
            pre_contact_jump_prob: 1.0 - (-PRE_CONTACT_JUMP_RATE_PER_S * dt_s).exp(),
            spike_hazard_left,
            popin_hazard_left,
            plastic_done_nm: 0.0,
            active_spikes: Vec::with_capacity(spike_cap),
            active_popins: Vec::with_capacity(popin_cap),
            ground_truth: Vec::with_capacity(4096),
        })
    }

    /// Advance one sample period with the actuator commanded to `command_un` µN. `segment` is the
    /// program segment: it picks the spike rate's base (loading, holding, unloading; none while
    /// settling), which the current stress then scales; the p/n balance follows the stress rate.
    pub fn step(&mut self, command_un: f64, segment: Segment) -> WorldSample {
        let t1 = self.seq as f64 * self.dt_s;
        let t0 = (t1 - self.dt_s).max(0.0);

        self.load_un += (command_un * self.cfg.actuator_gain - self.load_un) * self.actuator_step;
        // `Pillar::stress_mpa` and `elastic_disp_nm` with their constant factors taken once: the
        // same operations on the same values, so the same bits, one division fewer per step.
        let stress_mpa = self.load_un / self.area_um2;
        self.stress_rate_now_mpa_per_s = self.stress_rate.update(stress_mpa);

        // Secondary spikes need a defined reference state and a program segment; the contact
        // sample itself stays clean so it can serve as the reference.
        let spike_rate = if self.strain_ref.is_some() { self.rates.rate_per_s(segment, stress_mpa) } else { 0.0 };
        let popin_rate =
            if stress_mpa >= self.cfg.popin_threshold_stress_mpa { self.cfg.popin_rate_per_s } else { 0.0 };
        if t1 > t0 {
            self.draw_events(t0, t1, spike_rate, popin_rate, segment, stress_mpa);
        }

        let plastic_nm = self.plastic_at(t1);
        let true_disp_nm = stress_mpa / self.youngs_modulus_mpa * self.height_nm + plastic_nm;
        let strain = true_disp_nm / self.height_nm;

        let contact = t1 >= self.contact_time_s;
        if contact && self.strain_ref.is_none() {
            self.strain_ref = Some(strain);
        }

        self.active_spikes.retain(|b| t1 < b.end_s);
        let spikes: f64 = self.active_spikes.iter().map(|b| b.value_at(t1)).sum();
        let true_delta_rho = match self.strain_ref {
            Some(strain_ref) => self.cfg.resistivity_per_strain * (strain - strain_ref) + spikes,
            None => spikes,
        };

        let load_noise: f64 = self.streams.load.sample(StandardNormal);
        let disp_noise: f64 = self.streams.disp.sample(StandardNormal);
        let current_noise: f64 = self.streams.current.sample(StandardNormal);

        let current_factor = match self.strain_ref {
            Some(strain_ref) if contact => {
                let clean =
                    current_for_resistivity_change(true_delta_rho, strain, strain_ref, 1.0, self.pillar.poisson_ratio);
                // Extra Δρ/ρ noise enters with the opposite sign in the current (Δρ/ρ ∋ −ΔI/I).
                clean - self.current_noise * current_noise - self.pickup(t1)
            }
            _ => self.pre_contact_current(),
        };

        let s = WorldSample {
            seq: self.seq,
            time_s: t1,
            load_un: self.load_un + self.cfg.load_noise_un * load_noise,
            disp_nm: true_disp_nm + self.cfg.drift_nm_per_s * t1 + self.cfg.disp_noise_nm * disp_noise,
            current_factor,
            true_load_un: self.load_un,
            true_disp_nm,
            true_delta_rho,
            contact,
            plastic_disp_nm: plastic_nm,
        };
        self.seq += 1;
        s
    }

    /// The events injected so far (spikes and pop-ins), in onset order.
    pub fn ground_truth(&self) -> &[Event] {
        &self.ground_truth
    }

    /// The configuration in use.
    pub fn config(&self) -> &SimulationConfig {
        &self.cfg
    }

    /// The pillar being compressed.
    pub fn pillar(&self) -> &Pillar {
        &self.pillar
    }

    /// The sample rate, Hz.
    pub fn rate_hz(&self) -> f64 {
        self.rate_hz
    }

    /// When Ohmic contact is established, s since the start (drawn from [contact_min_s,
    /// contact_max_s]); the first sample at or after it is the reference state.
    pub fn contact_time_s(&self) -> f64 {
        self.contact_time_s
    }

    /// Engineering strain of the reference (first contact) sample, once it has been taken.
    pub fn reference_strain(&self) -> Option<f64> {
        self.strain_ref
    }

    /// Gaussian σ put on the current factor: √(resistivity_noise² − ((1 + 3ν)·disp_noise/H0)²),
    /// clamped at 0 when the displacement noise alone already exceeds the target.
    pub fn current_noise(&self) -> f64 {
        self.current_noise
    }

    /// Births of spikes and pop-ins in (t0, t1], in onset order across both processes.
    fn draw_events(&mut self, t0: f64, t1: f64, spike_rate: f64, popin_rate: f64, segment: Segment, stress: f64) {
        let mut t = t0;
        loop {
            // Almost every step ends without a birth. Proving that with a multiply and a compare
            // spares the two divisions below (≈ 40 % of `step` in a profile); near the boundary
            // the exact computation decides, so the outputs stay bit for bit the same.
            if beyond(self.spike_hazard_left, spike_rate, t, t1) && beyond(self.popin_hazard_left, popin_rate, t, t1) {
                self.spike_hazard_left -= spike_rate * (t1 - t);
                self.popin_hazard_left -= popin_rate * (t1 - t);
                break;
            }
            let t_spike = if spike_rate > 0.0 { t + self.spike_hazard_left / spike_rate } else { f64::INFINITY };
            let t_popin = if popin_rate > 0.0 { t + self.popin_hazard_left / popin_rate } else { f64::INFINITY };
            let next = t_spike.min(t_popin);
            let until = if next <= t1 { next } else { t1 };
            self.spike_hazard_left -= spike_rate * (until - t);
            self.popin_hazard_left -= popin_rate * (until - t);
            t = until;
            if next > t1 {
                break;
            }
            if t_spike <= t_popin {
                self.spike_hazard_left = self.streams.spike_time.sample(Exp1);
                self.spawn_spike(next, segment, stress);
            } else {
                self.popin_hazard_left = self.streams.popin_time.sample(Exp1);
                self.spawn_popin(next, segment, stress);
            }
        }
    }

    fn spawn_spike(&mut self, onset_s: f64, segment: Segment, stress_mpa: f64) {
        let size = self.magnitudes.sample(&mut self.streams.spike_magnitude);
        let p_fraction = self.rates.p_fraction(self.stress_rate_now_mpa_per_s);
        let p_type = self.streams.spike_sign.gen::<f64>() < p_fraction;
        let span = self.cfg.spike_max_duration_s - self.cfg.spike_min_duration_s;
        let duration_s = self.cfg.spike_min_duration_s + span * self.streams.spike_duration.gen::<f64>();
        let height = if p_type { size } else { -size };
        let edge_s = [self.cfg.spike_edge_min_s, self.cfg.spike_edge_max_s];
        let spike =
            LiveSpike::new(self.cfg.spike_shape, onset_s, duration_s, height, edge_s, &mut self.streams.spike_shape);
        self.active_spikes.push(spike);
        self.ground_truth.push(Event::spike(onset_s, spike.peak_time_s(), duration_s, height, segment, stress_mpa));
    }

    fn spawn_popin(&mut self, onset_s: f64, segment: Segment, stress_mpa: f64) {
        let extra: f64 = self.streams.popin_size.sample(Exp1);
        let jump_nm = POPIN_MIN_JUMP_NM + self.cfg.popin_mean_extra_nm * extra;
        let duration_s = (jump_nm / self.cfg.popin_speed_nm_per_s).min(POPIN_MAX_DURATION_S);
        let linked = self.cfg.popin_resistivity_per_strain * jump_nm / self.height_nm;
        self.active_popins.push(Ramp { onset_s, duration_s, jump_nm });
        self.active_spikes.push(LiveSpike::boxcar(onset_s, duration_s, linked));
        self.ground_truth.push(Event {
            kind: EventKind::Popin,
            sign: Sign::of(linked),
            onset_time_s: onset_s,
            peak_time_s: onset_s,
            duration_s,
            magnitude: jump_nm,
            linked_delta_rho: linked,
            segment,
            stress_mpa,
        });
    }

    /// Plastic displacement at `t`: finished pop-ins in full, running ones along their linear ramp.
    fn plastic_at(&mut self, t: f64) -> f64 {
        let done = &mut self.plastic_done_nm;
        let mut ramping = 0.0;
        self.active_popins.retain(|r| {
            if t >= r.onset_s + r.duration_s {
                *done += r.jump_nm;
                false
            } else {
                ramping += r.jump_nm * ((t - r.onset_s) / r.duration_s).max(0.0);
                true
            }
        });
        self.plastic_done_nm + ramping
    }

    /// Pink noise, mains pick-up and baseline drift on Δρ/ρ at `t` (`noise::Pickup`).
    fn pickup(&mut self, t: f64) -> f64 {
        self.pickup.next(t, &mut self.streams.pink)
    }

    /// Current through asperities before Ohmic contact: a small fraction that jumps between
    /// values as the contact rearranges, with some flicker in between.
    fn pre_contact_current(&mut self) -> f64 {
        let rng = &mut self.streams.contact;
        if rng.gen::<f64>() < self.pre_contact_jump_prob {
            self.pre_contact_factor = rng.gen_range(PRE_CONTACT_MIN_FACTOR..PRE_CONTACT_MAX_FACTOR);
        }
        let jitter: f64 = rng.sample(StandardNormal);
        self.pre_contact_factor * (1.0 + PRE_CONTACT_JITTER * jitter)
    }
}

/// Whether the next birth of a process with `hazard_left` at `rate` from `t` surely falls after
/// `t1`, i.e. `t + hazard_left / rate > t1` as `draw_events` computes it in floating point
/// (`true` for a process that is off). Conservative: `false` near the boundary.
///
/// Why it is safe: the right-hand side is widened by a relative 1e-12 and by 1e-15·(|t| + |t1|),
/// which exceeds four ulps of `t1`; the rounding of the product here, of `t1 − t`, of the
/// quotient and of the sum in `draw_events` are each below one ulp (relative 2⁻⁵³), so when this
/// holds the exact sum exceeds `t1` by more than an ulp and rounds above it.
#[inline]
fn beyond(hazard_left: f64, rate: f64, t: f64, t1: f64) -> bool {
    // A rate that is not positive (or NaN) is off in `draw_events` too.
    if rate > 0.0 {
        hazard_left > rate * ((t1 - t) * (1.0 + 1e-12) + (t.abs() + t1.abs()) * 1e-15)
    } else {
        true
    }
}

/// A non-negative finite count as `usize`, saturating (capacities come from user rates).
fn clamp_to_usize(x: f64) -> usize {
    if x.is_finite() && x > 0.0 {
        x.min(1e6) as usize
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `beyond` never says "after t1" when `draw_events`' exact expression puts the birth at or
    /// before it: checked on hazards within a few ulps of the boundary, where rounding decides,
    /// and far from it, over the times and rates a run meets (t up to days, 1 Hz to 1 MHz).
    #[test]
    fn the_division_precheck_is_conservative_at_the_boundary() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut fast, mut near) = (0u32, 0u32);
        for _ in 0..400_000 {
            let rate_hz = 10f64.powf(rng.gen_range(0.0..6.0));
            let dt = 1.0 / rate_hz;
            let t1 = (rng.gen_range(1u64..100_000_000) as f64) * dt;
            let t = if rng.gen::<bool>() { (t1 - dt).max(0.0) } else { rng.gen_range((t1 - dt).max(0.0)..t1) };
            let rate = 10f64.powf(rng.gen_range(-3.0..4.0));
            let exact_h = rate * (t1 - t);
            let h = match rng.gen_range(0..3) {
                // A few ulps around the boundary.
                0 => f64::from_bits(exact_h.to_bits().wrapping_add(rng.gen_range(0..64)).wrapping_sub(32)),
                // Relative 1e-10 around it.
                1 => exact_h * (1.0 + rng.gen_range(-1e-10..1e-10)),
                // Anywhere.
                _ => rng.sample::<f64, _>(Exp1),
            };
            let after = t + h / rate > t1;
            if beyond(h, rate, t, t1) {
                fast += 1;
                assert!(after, "h {h:e} rate {rate:e} t {t:e} t1 {t1:e}: precheck says after, exact says not");
            } else if after {
                near += 1;
            }
        }
        assert!(beyond(1.0, 0.0, 0.0, 1e-3), "a process that is off never fires");
        // The precheck must actually spare divisions, and leave some to the exact path.
        assert!(fast > 50_000, "{fast} of 400 000 prechecks passed");
        assert!(near > 0);
    }
}
