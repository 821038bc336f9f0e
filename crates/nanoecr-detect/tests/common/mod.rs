//! Hand-built sample streams with a known Δρ/ρ, shared by the integration tests.
#![allow(dead_code)]

use nanoecr_core::config::{DetectionConfig, SimulationConfig};
use nanoecr_core::resistivity::current_for_resistivity_change;
use nanoecr_core::{Event, EventKind, LoadFunction, Pillar, Sample, Segment};
use nanoecr_detect::Detector;
use nanoecr_sim::World;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

/// The paper's typical pillar.
pub const PILLAR: Pillar =
    Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };
/// Reference current, A (5 V over 5 MΩ).
pub const I_REF_A: f64 = 1e-6;

/// What a test adds at one sample on top of the synthetic background.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extra {
    /// Added to the true Δρ/ρ.
    pub delta_rho: f64,
    /// Added to the displacement, nm.
    pub disp_nm: f64,
    /// No Δρ/ρ noise at this sample (to pin a gap below the release threshold).
    pub quiet: bool,
}

/// A synthetic run: settle at zero load, then a linear load ramp; Δρ/ρ = per-strain drift + noise +
/// mains + whatever `Extra` adds; the current is built with the inverse relation so the detector
/// recovers that Δρ/ρ.
#[derive(Debug, Clone)]
pub struct Synth {
    pub rate_hz: f64,
    pub duration_s: f64,
    pub settle_s: f64,
    /// Ohmic contact from here on; erratic small current before.
    pub contact_s: f64,
    pub noise: f64,
    pub disp_noise_nm: f64,
    pub load_rate_un_per_s: f64,
    pub resistivity_per_strain: f64,
    pub mains_amplitude: f64,
    pub mains_hz: f64,
    /// Slow wander of Δρ/ρ: amplitude and frequency of a sine.
    pub wander: (f64, f64),
    pub seed: u64,
}

impl Synth {
    pub fn new(rate_hz: f64, duration_s: f64) -> Self {
        Self {
            rate_hz,
            duration_s,
            settle_s: 2.0,
            contact_s: 1.0,
            noise: 1e-4,
            disp_noise_nm: 0.1,
            load_rate_un_per_s: 600.0,
            resistivity_per_strain: 0.5,
            mains_amplitude: 0.0,
            mains_hz: 50.0,
            wander: (0.0, 0.0),
            seed: 7,
        }
    }

    pub fn load_un(&self, t: f64) -> f64 {
        (t - self.settle_s).max(0.0) * self.load_rate_un_per_s
    }

    pub fn build(&self, extra: impl Fn(usize, f64) -> Extra) -> Vec<Sample> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let n = (self.duration_s * self.rate_hz).round() as usize;
        let h0 = PILLAR.height_nm();
        let mut strain_ref = None;
        let mut pre = 0.1;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let t = i as f64 / self.rate_hz;
            let x = extra(i, t);
            let load = self.load_un(t);
            let true_disp = PILLAR.elastic_disp_nm(load) + x.disp_nm;
            let strain = true_disp / h0;
            let g: f64 = rng.sample(StandardNormal);
            let gd: f64 = rng.sample(StandardNormal);
            let disp = true_disp + self.disp_noise_nm * gd;
            let current = if t >= self.contact_s {
                let sr = *strain_ref.get_or_insert(strain);
                let noise = if x.quiet { 0.0 } else { self.noise * g };
                let mains = self.mains_amplitude * (std::f64::consts::TAU * self.mains_hz * t + 0.3).sin();
                let wander = self.wander.0 * (std::f64::consts::TAU * self.wander.1 * t).sin();
                let dr = self.resistivity_per_strain * (strain - sr) + x.delta_rho + noise + mains + wander;
                // The measured displacement carries noise; the current is built from it so the
                // Δρ/ρ noise stays at `noise` (as in the simulator's accounting, roughly).
                current_for_resistivity_change(dr, disp / h0, sr, I_REF_A, PILLAR.poisson_ratio)
            } else {
                if rng.gen::<f64>() < 0.05 {
                    pre = rng.gen_range(0.02..0.3);
                }
                I_REF_A * pre * (1.0 + 0.02 * g)
            };
            let segment = if t < self.settle_s { Segment::Settle } else { Segment::Load };
            out.push(Sample {
                seq: i as u64,
                time_s: t,
                setpoint_un: load,
                load_un: load,
                disp_nm: disp,
                current_a: current,
                voltage_v: 5.0,
                segment,
                flags: 0,
            });
        }
        out
    }
}

/// Run a detector over samples: (Δρ/ρ per sample, events, detector after finish).
pub fn run(cfg: &DetectionConfig, rate_hz: f64, settle_s: f64, samples: &[Sample]) -> (Vec<f64>, Vec<Event>, Detector) {
    let mut det = Detector::new(cfg, PILLAR, rate_hz, settle_s);
    let mut events = Vec::new();
    let d = samples.iter().map(|s| det.process(s, &mut |e| events.push(e))).collect();
    det.finish(&mut |e| events.push(e));
    (d, events, det)
}

/// Height `h` while sample `i` is in `[start, start + len)`.
pub fn boxcar(i: usize, start: usize, len: usize, h: f64) -> f64 {
    if i >= start && i < start + len {
        h
    } else {
        0.0
    }
}

pub fn spikes(events: &[Event]) -> Vec<Event> {
    events.iter().copied().filter(|e| e.kind == EventKind::Spike).collect()
}

pub fn popins(events: &[Event]) -> Vec<Event> {
    events.iter().copied().filter(|e| e.kind == EventKind::Popin).collect()
}

/// A simulated trapezoid on [`PILLAR`] after `settle_s`: load to `peak_un` in 5 s, `hold_s` of
/// hold, unload in 5 s; open loop (command = set-point / actuator gain), 5 V bias.
pub fn simulated_trapezoid(
    sim: &SimulationConfig,
    rate_hz: f64,
    settle_s: f64,
    peak_un: f64,
    hold_s: f64,
) -> Vec<Sample> {
    let lf = LoadFunction::from_targets(
        settle_s,
        0.0,
        &[(Segment::Load, 5.0, peak_un), (Segment::Hold, hold_s, peak_un), (Segment::Unload, 5.0, 0.0)],
    );
    let mut world = World::new(sim, PILLAR, rate_hz);
    let n = (lf.total_s() * rate_hz).round() as u64;
    (0..n)
        .map(|k| {
            let (segment, setpoint_un) = lf.setpoint_at(k as f64 / rate_hz);
            world.step(setpoint_un / sim.actuator_gain, segment).to_sample(
                setpoint_un,
                segment,
                5.0,
                sim.circuit_resistance_ohm,
            )
        })
        .collect()
}

/// Samples a stream delivers broken, each picked as `(every, at)`: sample `i` is hit when
/// `i % every == at`.
pub struct Spoil {
    /// The SMU flagged the current invalid (compliance, overflow).
    pub invalid_current: (usize, usize),
    /// The current arrived as NaN.
    pub nan_current: (usize, usize),
    /// The displacement arrived as NaN.
    pub nan_disp: (usize, usize),
}

/// Breaks the samples `spoil` names, in place.
pub fn spoil(samples: &mut [Sample], spoil: &Spoil) {
    let hit = |i: usize, (every, at): (usize, usize)| i % every == at;
    for (i, s) in samples.iter_mut().enumerate() {
        if hit(i, spoil.invalid_current) {
            s.flags |= nanoecr_core::sample::FLAG_CURRENT_INVALID;
        }
        if hit(i, spoil.nan_current) {
            s.current_a = f64::NAN;
        }
        if hit(i, spoil.nan_disp) {
            s.disp_nm = f64::NAN;
        }
    }
}

/// Bits of everything an event carries, so NaN fields compare equal to themselves.
pub fn event_bits(e: &Event) -> String {
    format!(
        "{:?} {:?} {:?} {:x} {:x} {:x} {:x} {:x} {:x}",
        e.kind,
        e.sign,
        e.segment,
        e.onset_time_s.to_bits(),
        e.peak_time_s.to_bits(),
        e.duration_s.to_bits(),
        e.magnitude.to_bits(),
        e.linked_delta_rho.to_bits(),
        e.stress_mpa.to_bits()
    )
}
