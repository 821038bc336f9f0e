//! Small validation helpers: each returns a [`ConfigError`] naming the key, value and unit.

use super::error::{unit_of_key, ConfigError, ConfigErrorKind};

/// `v` must be finite and > 0.
pub fn positive(key: &str, v: f64, what: &str) -> Result<f64, ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(ConfigError::new(ConfigErrorKind::OutOfRange, key, format!("{what} must be positive and finite"))
            .value(v)
            .expected(with_unit(key, "a value > 0")))
    }
}

/// `v` must be finite and ≥ 0.
pub fn non_negative(key: &str, v: f64, what: &str) -> Result<f64, ConfigError> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(ConfigError::new(ConfigErrorKind::OutOfRange, key, format!("{what} must not be negative"))
            .value(v)
            .expected(with_unit(key, "a value ≥ 0")))
    }
}

/// `v` must be finite and within `lo..=hi`.
pub fn within(key: &str, v: f64, lo: f64, hi: f64, what: &str) -> Result<f64, ConfigError> {
    if v.is_finite() && v >= lo && v <= hi {
        Ok(v)
    } else {
        Err(ConfigError::new(ConfigErrorKind::OutOfRange, key, format!("{what} is out of range"))
            .value(v)
            .expected(with_unit(key, &format!("{} to {}", num(lo), num(hi)))))
    }
}

/// `v` must be finite and strictly inside `lo..hi`.
pub fn strictly_within(key: &str, v: f64, lo: f64, hi: f64, what: &str) -> Result<f64, ConfigError> {
    if v.is_finite() && v > lo && v < hi {
        Ok(v)
    } else {
        Err(ConfigError::new(ConfigErrorKind::OutOfRange, key, format!("{what} is out of range"))
            .value(v)
            .expected(with_unit(key, &format!("a value strictly between {} and {}", num(lo), num(hi)))))
    }
}

/// A bound as an operator writes it: `1e-12`, not `0.000000000001` (Rust's `{}` for f64).
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && a.is_finite() && !(1e-4..1e7).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// "a value > 0 µN" — the expectation with the key's unit appended when it has one.
pub fn with_unit(key: &str, text: &str) -> String {
    match unit_of_key(key) {
        "" => text.to_string(),
        u => format!("{text} {u}"),
    }
}
