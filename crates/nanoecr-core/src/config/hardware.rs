//! `[hardware]`: which rig the control loop drives. `sim` (default) is the simulated rig;
//! `devices` talks to a load-frame controller over Modbus and a source-measure unit over a
//! serial port (see docs/hardware.md).

use serde::{Deserialize, Serialize};

use super::error::ConfigError;

/// Which backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The simulated rig (nanoecr-sim physics in-process).
    #[default]
    Sim,
    /// Real device protocols (Modbus load frame + SCPI source-measure unit).
    Devices,
}

/// The `[hardware]` section.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareConfig {
    /// `sim` or `devices`.
    #[serde(default)]
    pub backend: Backend,
}

impl HardwareConfig {
    /// Check the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
