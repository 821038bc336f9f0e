//! What a run reports while it runs ([`Progress`]) and when it ends ([`RunSummary`], [`EndReason`]).
//! Shared by the CLI, the daemon and its clients.

use serde::{Deserialize, Serialize};

use crate::sample::{RunStatus, Segment};

/// Why a run ended. Written as `end_reason` in the run file and the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum EndReason {
    /// The whole load function ran.
    Completed,
    /// An operator asked to stop (CLI Ctrl-C, `run.abort`).
    OperatorAbort,
    /// An interlock tripped; the detail names it and the value.
    Interlock(String),
    /// An instrument failed; the detail names the device and the fault.
    DeviceFault(String),
    /// The process got a termination signal (SIGTERM, SIGINT).
    Signal(String),
    /// Writing the run file failed (disk full, …); acquisition was stopped safely.
    StorageFault(String),
    /// The loop missed more deadlines than a whole-run budget allowed. Written by versions
    /// before the timing interlocks (now [`EndReason::Interlock`] naming
    /// `limits.max_command_gap_ms` or `limits.max_late_fraction`); kept to read old records.
    DeadlineBudget(String),
}

impl EndReason {
    /// The run status this reason implies.
    pub fn status(&self) -> RunStatus {
        match self {
            Self::Completed => RunStatus::Complete,
            Self::OperatorAbort | Self::Interlock(_) | Self::Signal(_) | Self::DeadlineBudget(_) => RunStatus::Aborted,
            Self::DeviceFault(_) | Self::StorageFault(_) => RunStatus::Failed,
        }
    }

    /// One line for humans and for the file's `end_reason` attribute, e.g.
    /// `interlock: displacement 612.3 nm > limits.max_displacement_nm 600 nm`.
    pub fn describe(&self) -> String {
        match self {
            Self::Completed => "completed".into(),
            Self::OperatorAbort => "operator abort".into(),
            Self::Interlock(d) => format!("interlock: {d}"),
            Self::DeviceFault(d) => format!("device fault: {d}"),
            Self::Signal(d) => format!("signal: {d}"),
            Self::StorageFault(d) => format!("storage fault: {d}"),
            Self::DeadlineBudget(d) => format!("deadline budget exceeded: {d}"),
        }
    }
}

/// A snapshot of a running test, published at ≈ 10 Hz.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Run time, s.
    pub time_s: f64,
    /// Program length, s.
    pub total_s: f64,
    /// Current segment.
    pub segment: Segment,
    /// Load setpoint, µN.
    pub setpoint_un: f64,
    /// Measured load, µN.
    pub load_un: f64,
    /// Displacement, nm.
    pub disp_nm: f64,
    /// Latest Δρ/ρ (NaN during settle).
    pub delta_rho: f64,
    /// Samples written so far.
    pub samples: u64,
    /// Samples dropped so far.
    pub dropped: u64,
    /// p-type spikes detected so far.
    pub spikes_p: u64,
    /// n-type spikes detected so far.
    pub spikes_n: u64,
    /// Pop-ins detected so far.
    pub popins: u64,
    /// Ring occupancy now, samples.
    pub ring_occupancy: u64,
}

/// The end-of-run summary printed by `nanoecr run` and sent to daemon subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Path of the run file.
    pub file: String,
    /// Final status.
    pub status: RunStatus,
    /// Why it ended, in words.
    pub end_reason: String,
    /// Samples written.
    pub samples: u64,
    /// Samples dropped (ring full).
    pub dropped: u64,
    /// Run time covered by the samples, s.
    pub duration_s: f64,
    /// Wall-clock duration, s.
    pub wall_s: f64,
    /// Control ticks executed.
    pub ticks: u64,
    /// Tick lateness median, µs.
    pub lateness_p50_us: f64,
    /// Tick lateness 99th percentile, µs.
    pub lateness_p99_us: f64,
    /// Tick lateness maximum, µs.
    pub lateness_max_us: f64,
    /// Ticks that missed their deadline (ran late).
    pub missed_deadlines: u64,
    /// Ticks by which host stalls moved a simulated rig's schedule (not run late: see
    /// `Diagnostics::moved_ticks`). 0 in records from before issue 15's catch-up policy.
    #[serde(default)]
    pub moved_ticks: u64,
    /// Stale ticks a device-clocked rig skipped after host stalls (`Diagnostics::skipped_ticks`).
    #[serde(default)]
    pub skipped_ticks: u64,
    /// Whether the loop ran paced in real time.
    pub paced: bool,
    /// Whether the loop got SCHED_FIFO.
    pub realtime_scheduling: bool,
    /// RMS load-tracking error after settle, µN.
    pub load_tracking_rms_un: f64,
    /// Peak load of the program, µN.
    pub peak_load_un: f64,
    /// p-type spikes detected.
    pub spikes_p: u64,
    /// n-type spikes detected.
    pub spikes_n: u64,
    /// Pop-ins detected.
    pub popins: u64,
    /// Interlock trips.
    pub interlocks: u64,
    /// Spike counts per segment: (segment name, p, n).
    pub spikes_by_segment: Vec<(String, u64, u64)>,
    /// Ground-truth events recorded (simulated rigs), else 0.
    pub ground_truth_events: u64,
}
