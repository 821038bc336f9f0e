//! Inelastic events: resistivity spikes, displacement pop-ins and interlock trips.

use serde::{Deserialize, Serialize};

use crate::sample::Segment;

/// What kind of event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum EventKind {
    /// A short resistivity spike (secondary spike, no pop-in), 1–1.5 ms.
    Spike = 0,
    /// A displacement burst (> 2 nm), usually with a large p-type spike.
    Popin = 1,
    /// An interlock tripped (load, displacement, compliance, contact lost).
    Interlock = 2,
}

impl EventKind {
    /// Lower-case name (`spike`, `popin`, `interlock`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Spike => "spike",
            Self::Popin => "popin",
            Self::Interlock => "interlock",
        }
    }

    /// Inverse of `self as u8`.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Spike,
            1 => Self::Popin,
            2 => Self::Interlock,
            _ => return None,
        })
    }
}

/// Direction of a resistivity spike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Sign {
    /// Resistivity up: structural disordering ("damage").
    P = 0,
    /// Resistivity down: structural ordering ("recovery").
    N = 1,
}

impl Sign {
    /// `"p"` or `"n"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::P => "p",
            Self::N => "n",
        }
    }

    /// The sign of a signed magnitude (zero counts as p).
    pub fn of(x: f64) -> Self {
        if x < 0.0 {
            Self::N
        } else {
            Self::P
        }
    }

    /// Inverse of `self as u8`.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::P,
            1 => Self::N,
            _ => return None,
        })
    }
}

/// One event, detected or true (simulator ground truth). The same record serves both, so
/// scoring compares like with like.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Spike, pop-in or interlock.
    pub kind: EventKind,
    /// p (up) or n (down). Pop-ins carry the sign of their accompanying spike (normally p).
    pub sign: Sign,
    /// Start of the event in s since the run start.
    pub onset_time_s: f64,
    /// Time of the extreme value in s since the run start.
    pub peak_time_s: f64,
    /// Duration in s.
    pub duration_s: f64,
    /// Signed Δρ/ρ for spikes; displacement jump in nm for pop-ins; the tripped value for
    /// interlocks (in the unit of the limit).
    pub magnitude: f64,
    /// For pop-ins: the peak Δρ/ρ of the linked resistivity spike (NaN if none); NaN otherwise.
    pub linked_delta_rho: f64,
    /// Segment at onset.
    pub segment: Segment,
    /// Engineering stress at onset in MPa.
    pub stress_mpa: f64,
}

impl Event {
    /// A spike with the given signed magnitude; other fields as given.
    pub fn spike(
        onset_time_s: f64,
        peak_time_s: f64,
        duration_s: f64,
        magnitude: f64,
        segment: Segment,
        stress_mpa: f64,
    ) -> Self {
        Self {
            kind: EventKind::Spike,
            sign: Sign::of(magnitude),
            onset_time_s,
            peak_time_s,
            duration_s,
            magnitude,
            linked_delta_rho: f64::NAN,
            segment,
            stress_mpa,
        }
    }
}
