//! Method names, params and results. Params structs deny unknown fields so a typo in a client
//! (`"config_tml"`) is an `invalid params` error, not a silently ignored option.

use serde::{Deserialize, Serialize};

use nanoecr_core::{ConfigError, RunStatus};

use crate::notes::{ProgressNote, WireSummary};

/// `daemon.info`: who is answering, and what it is doing.
pub const DAEMON_INFO: &str = "daemon.info";
/// `run.start`: start a test (one at a time).
pub const RUN_START: &str = "run.start";
/// `run.status`: the running test, or the last one.
pub const RUN_STATUS: &str = "run.status";
/// `run.abort`: safe unload of the running test.
pub const RUN_ABORT: &str = "run.abort";
/// `events.subscribe`: receive notifications on this connection.
pub const EVENTS_SUBSCRIBE: &str = "events.subscribe";
/// `runs.list`: recent runs, newest first.
pub const RUNS_LIST: &str = "runs.list";

/// Every method, for `daemon.info` and docs.
pub const ALL: &[&str] = &[DAEMON_INFO, RUN_START, RUN_STATUS, RUN_ABORT, EVENTS_SUBSCRIBE, RUNS_LIST];

/// What the daemon is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonState {
    /// No run; `run.start` is accepted.
    Idle,
    /// A `run.start` is opening instruments and creating the file.
    Starting,
    /// A run is acquiring.
    Running,
    /// An abort was requested; the load is being ramped down.
    Aborting,
}

/// Result of `daemon.info`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    /// `"nanoecrd"`.
    pub name: String,
    /// Software version.
    pub version: String,
    /// [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u32,
    /// Methods served.
    pub methods: Vec<String>,
    /// Process id.
    pub pid: u32,
    /// User id the daemon runs as.
    pub uid: u32,
    /// Group whose members may connect, when configured.
    pub allowed_group: Option<String>,
    /// Default output directory.
    pub out_dir: String,
    /// When the daemon started (RFC 3339).
    pub started_at: String,
    /// State now.
    pub state: DaemonState,
    /// Connected clients.
    pub clients: usize,
    /// Connections subscribed to notifications.
    pub subscribers: usize,
    /// The site ceiling on `limits.max_load_un`, µN, if any.
    pub max_load_ceiling_un: Option<f64>,
    /// The site ceiling on `limits.max_displacement_nm`, nm, if any.
    pub max_displacement_ceiling_nm: Option<f64>,
}

/// Params of `run.start`: exactly one of `config_toml` and `config_path`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStartParams {
    /// The run config as TOML text (what the CLI sends: the daemon needs no access to the
    /// operator's files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_toml: Option<String>,
    /// An absolute path to a config file inside the daemon's `run_configs.directory` (refused
    /// when that is not configured, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_path: Option<String>,
    /// A name for `config_toml` in error messages (the client's file name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_name: Option<String>,
    /// Output directory (overrides the daemon's and the config's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_dir: Option<String>,
    /// Simulation seed (overrides `[simulation] seed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Run unpaced, as fast as the simulator computes (simulated rig only; for tests and demos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast: Option<bool>,
}

/// Result of `run.start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStartResult {
    /// Daemon-local run number (1, 2, …).
    pub run_id: u64,
    /// The run file being written.
    pub file: String,
    /// Wall-clock time of run time 0, s since the Unix epoch (for latency measurements).
    pub t0_unix_s: f64,
    /// Program length, s.
    pub total_s: f64,
    /// Samples a complete run writes.
    pub expected_samples: u64,
}

/// The run in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveRun {
    /// Run number.
    pub run_id: u64,
    /// The file being written.
    pub file: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// Wall-clock time of run time 0, s since the Unix epoch.
    pub t0_unix_s: f64,
    /// Program length, s.
    pub total_s: f64,
    /// Samples a complete run writes.
    pub expected_samples: u64,
    /// The abort reason, once an abort was requested.
    pub abort_requested: Option<String>,
    /// The latest progress snapshot.
    pub progress: Option<ProgressNote>,
}

/// Result of `run.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatusResult {
    /// What the daemon is doing.
    pub state: DaemonState,
    /// The run in progress.
    pub run: Option<ActiveRun>,
    /// The most recent finished run.
    pub last: Option<RunRecord>,
}

/// Params of `daemon.info` and `run.status`: none. An object with any member, or an array, is
/// `-32602` (docs/socket-protocol.md), so a client's typo is never silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Params of `run.abort` (none; reserved).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunAbortParams {}

/// Result of `run.abort`. The abort is asynchronous: watch for `run.end`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunAbortResult {
    /// The run being aborted.
    pub run_id: u64,
    /// Its file.
    pub file: String,
    /// Whether an abort had already been requested (the call is idempotent).
    pub already_requested: bool,
}

/// Params of `events.subscribe`: which notifications to receive (all by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeParams {
    /// `progress` notifications (≈ 10 Hz).
    #[serde(default = "yes")]
    pub progress: bool,
    /// `samples` notifications (decimated batches).
    #[serde(default = "yes")]
    pub samples: bool,
    /// `event` notifications.
    #[serde(default = "yes")]
    pub events: bool,
}

impl Default for SubscribeParams {
    fn default() -> Self {
        Self { progress: true, samples: true, events: true }
    }
}

fn yes() -> bool {
    true
}

/// Result of `events.subscribe`. `run.started` and `run.end` are always delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscribeResult {
    /// Always true.
    pub subscribed: bool,
    /// The run in progress, if any (its notifications follow).
    pub run: Option<ActiveRun>,
}

/// Params of `runs.list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsListParams {
    /// At most this many (newest first).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One run the daemon knows of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run number (`None` for a file recovered at start-up).
    pub run_id: Option<u64>,
    /// The run file.
    pub file: String,
    /// Its status.
    pub status: RunStatus,
    /// Start (RFC 3339), when known.
    pub started_at: Option<String>,
    /// End (RFC 3339), when known.
    pub ended_at: Option<String>,
    /// Why it ended, in words.
    pub end_reason: Option<String>,
    /// The summary, for runs this daemon ran to the end.
    pub summary: Option<WireSummary>,
}

/// Result of `runs.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunsListResult {
    /// Newest first.
    pub runs: Vec<RunRecord>,
}

/// `data` of an [`crate::codes::INVALID_CONFIG`] error: [`ConfigError`] field by field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigErrorData {
    /// `syntax`, `unknown_key`, `wrong_type`, `missing`, `out_of_range`, `inconsistent`, `io`.
    pub kind: String,
    /// The file, when the config came from one (or the client's name for it).
    pub file: Option<String>,
    /// 1-based line.
    pub line: Option<usize>,
    /// Dotted key.
    pub key: String,
    /// The offending value as written.
    pub value: Option<String>,
    /// What is wrong.
    pub message: String,
    /// What would be accepted, with unit.
    pub expected: String,
}

impl From<&ConfigError> for ConfigErrorData {
    fn from(e: &ConfigError) -> Self {
        Self {
            kind: e.kind.name().into(),
            file: e.file.as_ref().map(|p| p.display().to_string()),
            line: e.line,
            key: e.key.clone(),
            value: e.value.clone(),
            message: e.message.clone(),
            expected: e.expected.clone(),
        }
    }
}

/// `data` of a [`crate::codes::RUN_IN_PROGRESS`] error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInProgressData {
    /// The running test.
    pub run_id: u64,
    /// Its file.
    pub file: String,
}
