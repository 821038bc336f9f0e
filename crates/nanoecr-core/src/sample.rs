//! One acquisition tick and the load-function segment it belongs to.

use serde::{Deserialize, Serialize};

/// Which part of the test a sample belongs to. Stored as a `u8` in run files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum Segment {
    /// Contact settling before the load function starts; Δρ/ρ is undefined (NaN) here.
    #[default]
    Settle = 0,
    /// Load rising towards its target.
    Load = 1,
    /// Load held constant.
    Hold = 2,
    /// Load falling back.
    Unload = 3,
    /// Safe unload after an abort (interlock, operator, fault or signal): not part of the program.
    SafeUnload = 4,
}

impl Segment {
    /// The `u8` code used in run files.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Inverse of [`Segment::code`]; `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Settle,
            1 => Self::Load,
            2 => Self::Hold,
            3 => Self::Unload,
            4 => Self::SafeUnload,
            _ => return None,
        })
    }

    /// Lower-case name, as used in JSON output and docs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Settle => "settle",
            Self::Load => "load",
            Self::Hold => "hold",
            Self::Unload => "unload",
            Self::SafeUnload => "safe_unload",
        }
    }
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Sample flag: the source-measure unit reported its current compliance limit.
pub const FLAG_COMPLIANCE: u8 = 1;
/// Sample flag: the current reading was missing or out of range for this tick.
pub const FLAG_CURRENT_INVALID: u8 = 2;

/// One merged acquisition tick: load frame and source-measure unit readings with the same
/// sequence number. `Copy` and fixed-size so it moves through the lock-free ring by value.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[repr(C)]
pub struct Sample {
    /// Sequence number from the shared trigger; consecutive within a run unless samples dropped.
    pub seq: u64,
    /// Time since the start of the run in s.
    pub time_s: f64,
    /// Load setpoint from the load function in µN.
    pub setpoint_un: f64,
    /// Measured load in µN.
    pub load_un: f64,
    /// Measured displacement in nm (compression positive).
    pub disp_nm: f64,
    /// Measured current in A.
    pub current_a: f64,
    /// Measured (or sourced) bias voltage in V.
    pub voltage_v: f64,
    /// Segment of the load function.
    pub segment: Segment,
    /// Bit set of `FLAG_*` values.
    pub flags: u8,
}

/// How a run ended, as written in the `status` attribute of `/entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still acquiring, or ended without closing the file (a crash).
    Running,
    /// The whole load function ran.
    Complete,
    /// Stopped early and brought to a safe state (interlock, operator, signal).
    Aborted,
    /// Ended by a fault (device lost, disk full, crash recovered later).
    Failed,
}

impl RunStatus {
    /// Lower-case name as written in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Aborted => "aborted",
            Self::Failed => "failed",
        }
    }

    /// Inverse of [`RunStatus::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "running" => Self::Running,
            "complete" => Self::Complete,
            "aborted" => Self::Aborted,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_codes_round_trip() {
        for c in 0..=4u8 {
            let s = Segment::from_code(c).expect("known code");
            assert_eq!(s.code(), c);
        }
        assert_eq!(Segment::from_code(9), None);
    }

    #[test]
    fn sample_stays_one_cache_line() {
        // The ring moves samples by value; keep them within a 64-byte line.
        assert!(std::mem::size_of::<Sample>() <= 64);
    }
}
