//! The daemon's shared state: the one run slot, recent runs, the subscriber registry and the
//! reloadable config. Locks are std mutexes held for microseconds and never across an `.await`
//! or a blocking call, so the tokio tasks and the fan-out thread can share them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use nanoecr_core::EndReason;
use nanoecr_proto::methods::{ActiveRun, DaemonState, RunRecord};

use super::config::DaemonConfig;
use super::fanout::{FanoutCmd, Subscribers};
use super::peer::AccessPolicy;
use crate::run::RunHandle;

/// A poisoned lock only means another thread panicked while holding it; the data (plain
/// records) is still consistent enough to keep a rig safe, which matters more than purity.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The single run slot. The transition `Idle → Starting` under the lock is what makes exactly
/// one of two simultaneous `run.start`s win.
#[derive(Debug)]
pub(crate) enum Slot {
    /// No run.
    Idle,
    /// A `run.start` holds the slot while instruments open and the file is created.
    Starting {
        /// The run number reserved.
        run_id: u64,
        /// An abort (operator or shutdown) that arrived meanwhile; applied as soon as the run
        /// exists.
        pending_abort: Option<EndReason>,
    },
    /// A run is acquiring (or ramping down).
    Running(Box<Active>),
}

/// The run in progress: what `run.status` reports, plus the handle to stop and join it.
#[derive(Debug)]
pub(crate) struct Active {
    /// Taken by the fan-out thread to join the run once it ended.
    pub handle: Option<RunHandle>,
    pub run: ActiveRun,
    /// The rig's lock, held while the run owns the rig; released when the slot is freed.
    pub _rig_lock: crate::riglock::RigLock,
}

impl Slot {
    pub(crate) fn state(&self) -> DaemonState {
        match self {
            Slot::Idle => DaemonState::Idle,
            Slot::Starting { .. } => DaemonState::Starting,
            Slot::Running(a) if a.run.abort_requested.is_some() => DaemonState::Aborting,
            Slot::Running(_) => DaemonState::Running,
        }
    }
}

/// Everything the connection tasks, the fan-out thread and `serve` share.
#[derive(Debug)]
pub(crate) struct Daemon {
    pub cfg: RwLock<DaemonConfig>,
    pub slot: Mutex<Slot>,
    pub recent: Mutex<VecDeque<RunRecord>>,
    pub subs: Subscribers,
    pub next_run_id: AtomicU64,
    pub next_conn_id: AtomicU64,
    pub clients: AtomicUsize,
    pub shutting_down: AtomicBool,
    /// Mirrors the slot's state so `serve` can await "idle" on shutdown.
    pub state_tx: tokio::sync::watch::Sender<DaemonState>,
    pub fanout_tx: crossbeam_channel::Sender<FanoutCmd>,
    pub started_at: String,
    pub uid: u32,
}

impl Daemon {
    pub(crate) fn new(
        cfg: DaemonConfig,
        fanout_tx: crossbeam_channel::Sender<FanoutCmd>,
        recovered: Vec<RunRecord>,
    ) -> Self {
        let mut recent: VecDeque<RunRecord> = recovered.into_iter().collect();
        recent.truncate(cfg.recent_runs);
        Self {
            cfg: RwLock::new(cfg),
            slot: Mutex::new(Slot::Idle),
            recent: Mutex::new(recent),
            subs: Subscribers::default(),
            next_run_id: AtomicU64::new(1),
            next_conn_id: AtomicU64::new(1),
            clients: AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
            state_tx: tokio::sync::watch::channel(DaemonState::Idle).0,
            fanout_tx,
            started_at: chrono::Utc::now().to_rfc3339(),
            uid: nix::unistd::geteuid().as_raw(),
        }
    }

    /// A snapshot of the (reloadable) config.
    pub(crate) fn config(&self) -> DaemonConfig {
        self.cfg.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn policy(&self) -> AccessPolicy {
        let cfg = self.cfg.read().unwrap_or_else(PoisonError::into_inner);
        AccessPolicy { daemon_uid: self.uid, allowed_gid: cfg.allowed_group.as_ref().map(|g| g.gid) }
    }

    /// Publish the slot's state (call with the new state after each transition).
    pub(crate) fn publish_state(&self, s: DaemonState) {
        self.state_tx.send_replace(s);
    }

    /// Remember a finished run, newest first.
    pub(crate) fn remember(&self, r: RunRecord) {
        let keep = self.cfg.read().unwrap_or_else(PoisonError::into_inner).recent_runs;
        let mut recent = lock(&self.recent);
        recent.push_front(r);
        recent.truncate(keep);
    }

    /// Ask the running (or starting) run to stop safely. Returns the run id and file, and
    /// whether an abort had already been requested; `None` when there is no run.
    pub(crate) fn request_abort(&self, reason: EndReason) -> Option<(u64, String, bool)> {
        let mut slot = lock(&self.slot);
        let out = match &mut *slot {
            Slot::Idle => None,
            Slot::Starting { run_id, pending_abort } => {
                let already = pending_abort.is_some();
                pending_abort.get_or_insert(reason);
                Some((*run_id, String::new(), already))
            }
            Slot::Running(a) => {
                let already = a.run.abort_requested.is_some();
                match &a.handle {
                    Some(h) if !already => {
                        tracing::info!(run_id = a.run.run_id, reason = %reason.describe(), "aborting the run (safe unload)");
                        h.abort(reason.clone());
                        a.run.abort_requested = Some(reason.describe());
                    }
                    Some(_) => {}
                    // Being joined: it has already ended.
                    None => return None,
                }
                Some((a.run.run_id, a.run.file.clone(), already))
            }
        };
        let st = slot.state();
        drop(slot);
        self.publish_state(st);
        out
    }
}
