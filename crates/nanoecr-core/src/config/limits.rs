//! `[limits]`: declarative interlocks. Crossing any of them makes the control loop record an
//! interlock event, unload safely and end the run `aborted`.

use serde::{Deserialize, Serialize};

use super::check::{positive, within};
use super::error::{ConfigError, ConfigErrorKind};

/// Interlock thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Highest load allowed, µN. The load function's peak must not exceed it.
    pub max_load_un: f64,
    /// Highest displacement allowed, nm.
    pub max_displacement_nm: f64,
    /// Abort when the measured current magnitude exceeds this, A (optional; the source-measure
    /// unit's compliance flag trips the interlock too).
    #[serde(default)]
    pub max_current_a: Option<f64>,
    /// Abort when, after settle, the current magnitude falls below this for
    /// `contact_lost_s` (optional): the punch lost electrical contact.
    #[serde(default)]
    pub contact_lost_current_a: Option<f64>,
    /// How long the current must stay below `contact_lost_current_a`, s.
    #[serde(default = "default_contact_lost_s")]
    pub contact_lost_s: f64,
    /// Timing interlock: abort when the frame went longer than this without a command, ms
    /// (real-time runs only). The frame holds its last command meanwhile, so this bounds how
    /// stale the actuator's setpoint can get. `inf` turns it off.
    #[serde(default = "default_max_command_gap_ms")]
    pub max_command_gap_ms: f64,
    /// Load interlock: abort when |load − setpoint| stays above this for longer than
    /// `max_tracking_error_ms` while following the program after settle, µN. `inf` turns it off.
    #[serde(default = "default_max_tracking_error_un")]
    pub max_tracking_error_un: f64,
    /// How long the tracking error must stay above `max_tracking_error_un` to trip, ms.
    #[serde(default = "default_max_tracking_error_ms")]
    pub max_tracking_error_ms: f64,
    /// Timing interlock: abort when more than this fraction of the ticks of the last
    /// `late_window_s` missed their deadline or were moved (simulator) or skipped (device) by a
    /// host stall (real-time runs only; 0 to 1, 1 turns it off).
    #[serde(default = "default_max_late_fraction")]
    pub max_late_fraction: f64,
    /// The sliding window of `max_late_fraction`, s.
    #[serde(default = "default_late_window_s")]
    pub late_window_s: f64,
    /// Longest a frame sample may wait for its meter reading, ms, counted in the frame's samples
    /// (the newest sample less this one, times the sample period), so a host stall does not
    /// count: meanwhile the frame and the meter both buffer. Past it the loop asks the meter once
    /// more and, if the reading is still missing, ends the run naming the meter; the same bound
    /// caps the wait for the meter's last readings after the last tick. While a reading is
    /// missing the interlocks on the current (`max_current_a`, `contact_lost_current_a`) cannot
    /// judge that sample: this is how long they may be blind.
    #[serde(default = "default_max_meter_lag_ms")]
    pub max_meter_lag_ms: f64,
    /// Removed (a whole-run tick fraction turned one host hiccup into an aborted test); kept only
    /// to answer with an error that names its replacements.
    #[serde(default, skip_serializing)]
    pub missed_deadline_fraction: Option<f64>,
}

fn default_contact_lost_s() -> f64 {
    0.05
}
fn default_max_command_gap_ms() -> f64 {
    20.0
}
fn default_max_tracking_error_un() -> f64 {
    500.0
}
fn default_max_tracking_error_ms() -> f64 {
    50.0
}
fn default_max_late_fraction() -> f64 {
    0.2
}
fn default_late_window_s() -> f64 {
    1.0
}
fn default_max_meter_lag_ms() -> f64 {
    250.0
}

/// Range of `limits.max_meter_lag_ms`, ms. Below 20 ms (the buffered meters' poll interval at
/// 1 kHz) a healthy meter would be asked out of turn every poll; above 2 s the merge buffers
/// (96 bytes per sample, sized at the start of the run) reach 19 MB at 100 kHz, and the current
/// interlocks would be blind for longer than any operator would accept.
pub const MAX_METER_LAG_MS_RANGE: (f64, f64) = (20.0, 2000.0);

/// `v` must be > 0; `inf` is accepted and means "never trips".
fn positive_or_off(key: &str, v: f64, what: &str) -> Result<(), ConfigError> {
    if v == f64::INFINITY {
        return Ok(());
    }
    positive(key, v, what).map(|_| ())
}

impl LimitsConfig {
    /// Check each threshold on its own (consistency with the load function is checked by the
    /// caller).
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("limits.max_load_un", self.max_load_un, "load limit")?;
        positive("limits.max_displacement_nm", self.max_displacement_nm, "displacement limit")?;
        if let Some(a) = self.max_current_a {
            positive("limits.max_current_a", a, "current limit")?;
        }
        if let Some(a) = self.contact_lost_current_a {
            positive("limits.contact_lost_current_a", a, "contact-lost current")?;
        }
        positive("limits.contact_lost_s", self.contact_lost_s, "contact-lost time")?;
        if let Some(v) = self.missed_deadline_fraction {
            return Err(ConfigError::new(
                ConfigErrorKind::UnknownKey,
                "limits.missed_deadline_fraction",
                "was removed: the run no longer aborts on a whole-run fraction of late ticks; use \
                 limits.max_late_fraction (over the last limits.late_window_s), \
                 limits.max_command_gap_ms and limits.max_tracking_error_un / max_tracking_error_ms",
            )
            .value(v)
            .expected("max_late_fraction = 0 to 1 (default 0.2) instead"));
        }
        positive_or_off("limits.max_command_gap_ms", self.max_command_gap_ms, "longest command gap")?;
        positive_or_off("limits.max_tracking_error_un", self.max_tracking_error_un, "tracking-error limit")?;
        positive("limits.max_tracking_error_ms", self.max_tracking_error_ms, "tracking-error time")?;
        within("limits.max_late_fraction", self.max_late_fraction, 0.0, 1.0, "late-tick fraction")?;
        within("limits.late_window_s", self.late_window_s, 0.001, 60.0, "late-tick window")?;
        let (lo, hi) = MAX_METER_LAG_MS_RANGE;
        within("limits.max_meter_lag_ms", self.max_meter_lag_ms, lo, hi, "longest wait for a meter reading")?;
        Ok(())
    }

    /// Switch off every interlock judged on the host's timing (`max_command_gap_ms`,
    /// `max_late_fraction`): for runs that check data on a machine that may be busy (tests).
    pub fn without_timing_interlocks(mut self) -> Self {
        self.max_command_gap_ms = f64::INFINITY;
        self.max_late_fraction = 1.0;
        self
    }
}
