//! # nanoecr-core
//!
//! The vocabulary every other nanoecr crate speaks, and nothing else: no I/O beyond parsing a
//! config string, no threads, no async.
//!
//! - [`units`]: pillar geometry and the stress/strain conversions, with units in every name.
//! - [`sample`]: one acquisition tick ([`Sample`]) and the load-function [`Segment`] it falls in.
//! - [`event`]: detected or simulated inelastic events ([`Event`]): spikes, pop-ins, interlock trips.
//! - [`resistivity`]: the Δρ/ρ relation of Yang et al. and its inverse (used by the simulator).
//! - [`load_function`]: the validated load–hold–unload program and an O(1) setpoint cursor.
//! - [`config`]: the TOML run configuration, raw → validated, with errors that name the file, line,
//!   key, offending value and expected unit.
//! - [`diagnostics`]: loop-timing histograms and pipeline counters that end up in every run file.

pub mod config;
pub mod diagnostics;
pub mod event;
pub mod load_function;
pub mod resistivity;
pub mod run;
pub mod sample;
pub mod units;

pub use config::{ConfigError, ConfigErrorKind, RunConfig};
pub use diagnostics::{Diagnostics, LatencyHistogram, LatenessSplit, MissedByCause, Stall};
pub use event::{Event, EventKind, Sign};
pub use load_function::{LoadFunction, LoadSegment, SetpointCursor};
pub use run::{EndReason, Progress, RunSummary};
pub use sample::{RunStatus, Sample, Segment};
pub use units::Pillar;

/// Version of the nanoecr software, written into every run file.
pub const SOFTWARE_VERSION: &str = env!("CARGO_PKG_VERSION");
