//! `[hardware] rig`: the name one master at a time may drive. Lock files are named after it
//! (nanoecr-daemon's `riglock`), so the name is restricted to what is safe in a file name.

use super::error::{ConfigError, ConfigErrorKind};
use super::HardwareConfig;

/// The rig name when `[hardware] rig` is not given (the simulated rig included).
pub const DEFAULT_RIG: &str = "default";

impl HardwareConfig {
    /// `[hardware] rig`, or [`DEFAULT_RIG`].
    pub fn rig_name(&self) -> &str {
        self.rig.as_deref().unwrap_or(DEFAULT_RIG)
    }
}

/// 1 to 64 characters among `A-Z a-z 0-9 . _ -`, not starting with `.`.
pub fn check_rig_name(name: &str) -> Result<(), ConfigError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(ConfigErrorKind::OutOfRange, "hardware.rig", "invalid rig name")
            .value(format!("{name:?}"))
            .expected("1 to 64 characters among A-Z a-z 0-9 . _ - (not starting with .)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rig_names_default_and_are_checked() {
        assert_eq!(HardwareConfig::default().rig_name(), "default");
        assert!(check_rig_name("bay-2.left_frame").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "é", &"x".repeat(65)] {
            let e = check_rig_name(bad).expect_err(bad);
            assert_eq!(e.key, "hardware.rig");
        }
    }
}
