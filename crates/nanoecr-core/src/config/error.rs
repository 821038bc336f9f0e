//! Configuration errors that tell the operator exactly what to fix: file, line, key, the
//! offending value and what was expected (with its unit).

use std::fmt;
use std::path::PathBuf;

/// The class of a configuration error; stable, so tests and the socket protocol can rely on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigErrorKind {
    /// The file could not be read.
    Io,
    /// Not valid TOML.
    Syntax,
    /// A key nanoecr does not know (typo?).
    UnknownKey,
    /// A value of the wrong type (string for a number, …).
    WrongType,
    /// A required key is absent.
    Missing,
    /// A value outside what is physically possible or what the hardware accepts.
    OutOfRange,
    /// Values that are fine alone but contradict each other (peak above the load limit, …).
    Inconsistent,
}

impl ConfigErrorKind {
    /// Short stable name (`syntax`, `unknown_key`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Io => "io",
            Self::Syntax => "syntax",
            Self::UnknownKey => "unknown_key",
            Self::WrongType => "wrong_type",
            Self::Missing => "missing",
            Self::OutOfRange => "out_of_range",
            Self::Inconsistent => "inconsistent",
        }
    }
}

/// One configuration error. `Display` renders it as
/// `file:line: [section] key = value: message (expected …)`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    /// Class of error.
    pub kind: ConfigErrorKind,
    /// The file, when the config came from one.
    pub file: Option<PathBuf>,
    /// 1-based line of the offending key (or of the syntax error).
    pub line: Option<usize>,
    /// Dotted key path, e.g. `limits.max_load_un` or `load_function.segments[1].duration_s`.
    pub key: String,
    /// The offending value as written, when there is one.
    pub value: Option<String>,
    /// What is wrong, in words.
    pub message: String,
    /// What would be accepted, with its unit (e.g. `a load > 0 µN`).
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{}: ", p.display(), l)?,
            (Some(p), None) => write!(f, "{}: ", p.display())?,
            (None, Some(l)) => write!(f, "line {l}: ")?,
            (None, None) => {}
        }
        if !self.key.is_empty() {
            write!(f, "`{}`", self.key)?;
            if let Some(v) = &self.value {
                write!(f, " = {v}")?;
            }
            write!(f, ": ")?;
        }
        write!(f, "{}", self.message)?;
        if !self.expected.is_empty() {
            write!(f, " (expected {})", self.expected)?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// A new error with no location yet; [`crate::config::parse`] fills in file and line.
    pub fn new(kind: ConfigErrorKind, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind,
            file: None,
            line: None,
            key: key.into(),
            value: None,
            message: message.into(),
            expected: String::new(),
        }
    }

    /// Attach the offending value.
    pub fn value(mut self, v: impl fmt::Display) -> Self {
        self.value = Some(v.to_string());
        self
    }

    /// Attach what would have been accepted.
    pub fn expected(mut self, e: impl Into<String>) -> Self {
        self.expected = e.into();
        self
    }
}

/// The unit implied by a key's suffix, for messages (`peak_load_un` → `µN`).
pub fn unit_of_key(key: &str) -> &'static str {
    let last = key.rsplit(['.', ']']).next().unwrap_or(key);
    const SUFFIXES: &[(&str, &str)] = &[
        ("_per_s", "1/s"),
        ("_un_per_s", "µN/s"),
        ("_nm_per_s", "nm/s"),
        ("_un", "µN"),
        ("_um", "µm"),
        ("_nm", "nm"),
        ("_mpa", "MPa"),
        ("_gpa", "GPa"),
        ("_hz", "Hz"),
        ("_ms", "ms"),
        ("_us", "µs"),
        ("_s", "s"),
        ("_v", "V"),
        ("_a", "A"),
        ("_ohm", "Ω"),
    ];
    // Longest suffix first so `_un_per_s` wins over `_per_s` and `_s`.
    let mut best: Option<(&str, &str)> = None;
    for &(suf, unit) in SUFFIXES {
        if last.ends_with(suf) && best.is_none_or(|(b, _)| suf.len() > b.len()) {
            best = Some((suf, unit));
        }
    }
    best.map_or("", |(_, u)| u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_suffixes() {
        assert_eq!(unit_of_key("load_function.peak_load_un"), "µN");
        assert_eq!(unit_of_key("control.safe_unload_rate_un_per_s"), "µN/s");
        assert_eq!(unit_of_key("acquisition.rate_hz"), "Hz");
        assert_eq!(unit_of_key("acquisition.wakeup_period_us"), "µs");
        assert_eq!(unit_of_key("load_function.segments[0].duration_s"), "s");
        assert_eq!(unit_of_key("sample.material"), "");
    }

    #[test]
    fn display_names_everything() {
        let mut e =
            ConfigError::new(ConfigErrorKind::OutOfRange, "acquisition.rate_hz", "sampling rate must be positive")
                .value(0)
                .expected("1 to 100000 Hz");
        e.file = Some("demo.toml".into());
        e.line = Some(12);
        assert_eq!(
            e.to_string(),
            "demo.toml:12: `acquisition.rate_hz` = 0: sampling rate must be positive (expected 1 to 100000 Hz)"
        );
    }
}
