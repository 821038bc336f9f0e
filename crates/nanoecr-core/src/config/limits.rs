//! `[limits]`: declarative interlocks. Crossing any of them makes the control loop record an
//! interlock event, unload safely and end the run `aborted`.

use serde::{Deserialize, Serialize};

use super::check::{positive, within};
use super::error::ConfigError;

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
    /// Abort when more than this fraction of control ticks miss their deadline (0 to 1,
    /// evaluated after the first second).
    #[serde(default = "default_missed_budget")]
    pub missed_deadline_fraction: f64,
}

fn default_contact_lost_s() -> f64 {
    0.05
}
fn default_missed_budget() -> f64 {
    0.05
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
        within("limits.missed_deadline_fraction", self.missed_deadline_fraction, 0.0, 1.0, "missed-deadline budget")?;
        Ok(())
    }
}
