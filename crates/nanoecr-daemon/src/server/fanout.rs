//! Fan-out: one thread reads the run's [`RunUpdate`]s and hands each notification, serialised
//! once, to every subscriber through that client's bounded queue with `try_send`. It never
//! waits on a client, so no client can back-pressure the pipeline (and the pipeline's own
//! updates channel is fed with `try_send` too: the control loop never waits on anyone).
//!
//! A client whose queue is full is *stalled*: its progress notifications are coalesced (only
//! the newest is kept), decimated samples are skipped, and events and end-of-run lines wait in a
//! small backlog so none is lost. A client is dropped — told so if its socket takes the line,
//! then disconnected — when its queue has not drained for `stall_timeout`: lines wait in it and
//! its writer has taken none (it is blocked on a socket the client does not read). That starts
//! when the socket's kernel buffer is full, long before the queue is; counting from a full queue
//! instead let a silent client hold its connection for ≈ a minute with a 5 s timeout. A client
//! whose backlog overflows is dropped too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use nanoecr_core::RunStatus;
use nanoecr_proto::methods::{DaemonState, RunRecord, SubscribeParams};
use nanoecr_proto::notes::{names, EventNote, ProgressNote, RunEndNote, SamplesNote, WireSummary};
use nanoecr_proto::{unix_now_s, Notification};
use tokio::sync::mpsc::error::TrySendError;

use super::state::{lock, Daemon, Slot};
use crate::run::RunUpdate;

/// A serialised line, shared by every subscriber that gets it.
pub(crate) type Line = Arc<str>;

/// Events and end-of-run lines held for a stalled client before it is dropped.
const MAX_BACKLOG: usize = 4096;
/// How often the fan-out thread retries stalled clients when the run is quiet.
const TICK: Duration = Duration::from_millis(20);

/// Commands to the fan-out thread.
#[derive(Debug)]
pub(crate) enum FanoutCmd {
    /// A run started: follow its updates.
    Run { run_id: u64, updates: Receiver<RunUpdate> },
    /// The daemon is exiting (sent only when no run is active).
    Stop,
}

/// What a notification is, for filtering and for what to do when a client is stalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Progress,
    Samples,
    Event,
    /// `run.started`, `run.end`: always delivered (from a backlog if need be).
    Always,
}

#[derive(Debug)]
pub(crate) struct Sub {
    pub conn_id: u64,
    pub tx: tokio::sync::mpsc::Sender<Line>,
    pub filter: SubscribeParams,
    /// Set to true to disconnect the client.
    pub kick: tokio::sync::watch::Sender<bool>,
    backlog: VecDeque<Line>,
    pending_progress: Option<Line>,
    stalled_since: Option<Instant>,
    /// Lines put into the queue by the fan-out (for the drain check).
    sent: u64,
    /// Lines taken out of the queue by the writer, as of the last check (`sent` − queued).
    last_taken: u64,
    /// Since when lines have waited in the queue with none taken.
    undrained_since: Option<Instant>,
    /// Progress and samples lines this client missed while stalled.
    pub thinned: u64,
}

/// The client is gone (its queue closed).
struct Gone;

impl Sub {
    pub(crate) fn new(
        conn_id: u64,
        tx: tokio::sync::mpsc::Sender<Line>,
        filter: SubscribeParams,
        kick: tokio::sync::watch::Sender<bool>,
    ) -> Self {
        Self {
            conn_id,
            tx,
            filter,
            kick,
            backlog: VecDeque::new(),
            pending_progress: None,
            stalled_since: None,
            sent: 0,
            last_taken: 0,
            undrained_since: None,
            thinned: 0,
        }
    }

    fn wants(&self, kind: Kind) -> bool {
        match kind {
            Kind::Progress => self.filter.progress,
            Kind::Samples => self.filter.samples,
            Kind::Event => self.filter.events,
            Kind::Always => true,
        }
    }

    fn offer(&mut self, kind: Kind, line: &Line, now: Instant) -> Result<(), Gone> {
        if !self.wants(kind) {
            return Ok(());
        }
        if self.stalled_since.is_some() {
            self.flush()?;
        }
        if self.stalled_since.is_none() {
            match self.tx.try_send(Arc::clone(line)) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err(TrySendError::Closed(_)) => return Err(Gone),
                Err(TrySendError::Full(_)) => self.stalled_since = Some(now),
            }
        }
        match kind {
            Kind::Progress => {
                if self.pending_progress.replace(Arc::clone(line)).is_some() {
                    self.thinned += 1;
                }
            }
            Kind::Samples => self.thinned += 1,
            Kind::Event | Kind::Always => self.backlog.push_back(Arc::clone(line)),
        }
        Ok(())
    }

    /// Move held lines into the queue while it has room; clears the stall when all went.
    fn flush(&mut self) -> Result<(), Gone> {
        while let Some(l) = self.backlog.front() {
            match self.tx.try_send(Arc::clone(l)) {
                Ok(()) => {
                    self.sent += 1;
                    self.backlog.pop_front();
                }
                Err(TrySendError::Full(_)) => return Ok(()),
                Err(TrySendError::Closed(_)) => return Err(Gone),
            }
        }
        if let Some(p) = self.pending_progress.take() {
            match self.tx.try_send(p) {
                Ok(()) => self.sent += 1,
                Err(TrySendError::Full(p)) => {
                    self.pending_progress = Some(p);
                    return Ok(());
                }
                Err(TrySendError::Closed(_)) => return Err(Gone),
            }
        }
        self.stalled_since = None;
        Ok(())
    }
}

/// The subscriber registry.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    inner: Mutex<Vec<Sub>>,
}

impl Subscribers {
    /// Add (or re-subscribe with new filters).
    pub(crate) fn add(&self, sub: Sub) {
        let mut v = lock(&self.inner);
        v.retain(|s| s.conn_id != sub.conn_id);
        v.push(sub);
    }

    pub(crate) fn remove(&self, conn_id: u64) {
        lock(&self.inner).retain(|s| s.conn_id != conn_id);
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).len()
    }

    /// Hand one notification to every subscriber that wants it. Never blocks.
    pub(crate) fn broadcast(&self, kind: Kind, line: Line) {
        let now = Instant::now();
        lock(&self.inner).retain_mut(|s| s.offer(kind, &line, now).is_ok());
    }

    /// Retry stalled clients; drop those whose queue has not drained for `stall_timeout`.
    pub(crate) fn service(&self, stall_timeout: Duration) {
        self.service_at(stall_timeout, Instant::now());
    }

    /// [`Self::service`] at a given instant (tests drive the clock).
    fn service_at(&self, stall_timeout: Duration, now: Instant) {
        lock(&self.inner).retain_mut(|s| {
            // Responses share the queue without counting in `sent`; queuing one changes `taken`
            // too, which only restarts the wait — a client that sends requests is not silent.
            let queued = (s.tx.max_capacity() - s.tx.capacity()) as u64;
            let taken = s.sent.wrapping_sub(queued);
            if queued == 0 || taken != s.last_taken {
                s.last_taken = taken;
                s.undrained_since = None;
            } else if s.undrained_since.is_none() {
                s.undrained_since = Some(now);
            }
            if s.stalled_since.is_some() && s.flush().is_err() {
                return false;
            }
            let since = match (s.stalled_since, s.undrained_since) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(since) = since else { return true };
            let stalled_for = now.saturating_duration_since(since);
            if stalled_for > stall_timeout || s.backlog.len() > MAX_BACKLOG {
                tracing::warn!(
                    conn = s.conn_id,
                    stalled_ms = stalled_for.as_millis() as u64,
                    backlog = s.backlog.len(),
                    thinned = s.thinned,
                    "dropping a subscriber that stopped reading"
                );
                s.kick.send_replace(true);
                return false;
            }
            true
        });
    }

    pub(crate) fn any(&self) -> bool {
        !lock(&self.inner).is_empty()
    }
}

/// Serialise a notification as one line.
pub(crate) fn line(method: &str, params: impl serde::Serialize) -> Line {
    Notification::new(method, params).to_line().into()
}

/// What the live `samples` cost this thread in one run: building the note, serialising it once
/// and offering it to every subscriber's queue (the socket writes happen on each connection's
/// task). Logged at the end of a run, so the price of an open page at 100 kHz is on record. The
/// Δρ/ρ envelope is built on the consumer thread whether anyone listens or not; none of this
/// runs on the control thread.
#[derive(Debug, Default)]
struct SamplesCost {
    batches: u64,
    total: Duration,
    max: Duration,
    bytes: u64,
}

impl SamplesCost {
    fn log_and_reset(&mut self, run_id: u64) {
        if self.batches > 0 {
            tracing::info!(
                run_id,
                batches = self.batches,
                mean_us = self.total.as_secs_f64() * 1e6 / self.batches as f64,
                max_us = self.max.as_secs_f64() * 1e6,
                mean_bytes = self.bytes / self.batches,
                "live samples fan-out cost per batch"
            );
        }
        *self = Self::default();
    }
}

/// The fan-out thread's body: follow one run at a time until told to stop.
pub(crate) fn run_fanout(daemon: Arc<Daemon>, cmds: Receiver<FanoutCmd>) {
    let mut current: Option<(u64, Receiver<RunUpdate>)> = None;
    let mut cost = SamplesCost::default();
    loop {
        let stall_timeout = daemon.config().stall_timeout;
        match current.take() {
            Some((run_id, rx)) => match rx.recv_timeout(TICK) {
                Ok(RunUpdate::Finished(summary)) => {
                    cost.log_and_reset(run_id);
                    finish(&daemon, run_id, Some(summary))
                }
                Ok(update) => {
                    publish(&daemon, run_id, update, &mut cost);
                    current = Some((run_id, rx));
                }
                Err(RecvTimeoutError::Timeout) => current = Some((run_id, rx)),
                // The pipeline ended without a summary (it failed): join it to learn why.
                Err(RecvTimeoutError::Disconnected) => {
                    cost.log_and_reset(run_id);
                    finish(&daemon, run_id, None)
                }
            },
            None => match cmds.recv_timeout(TICK) {
                Ok(FanoutCmd::Run { run_id, updates }) => current = Some((run_id, updates)),
                Ok(FanoutCmd::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    daemon.subs.service(stall_timeout);
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            },
        }
        daemon.subs.service(stall_timeout);
    }
}

fn publish(daemon: &Daemon, run_id: u64, update: RunUpdate, cost: &mut SamplesCost) {
    let now = unix_now_s();
    match update {
        RunUpdate::Progress(p) => {
            let note = ProgressNote::new(run_id, now, &p);
            if daemon.subs.any() {
                daemon.subs.broadcast(Kind::Progress, line(names::PROGRESS, &note));
            }
            if let Slot::Running(a) = &mut *lock(&daemon.slot) {
                a.run.progress = Some(note);
            }
        }
        RunUpdate::Event(e) => {
            if e.kind == nanoecr_core::EventKind::Interlock {
                tracing::warn!(
                    run_id,
                    t_s = e.onset_time_s,
                    value = e.magnitude,
                    "interlock tripped; unloading safely"
                );
            }
            if daemon.subs.any() {
                daemon.subs.broadcast(Kind::Event, line(names::EVENT, EventNote::new(run_id, now, &e)));
            }
        }
        RunUpdate::Samples(batch) => {
            if daemon.subs.any() {
                let t0 = Instant::now();
                let note = SamplesNote::new(run_id, now, &batch.samples)
                    .with_delta_rho(&batch.delta_rho_min, &batch.delta_rho_max);
                let l = line(names::SAMPLES, note);
                cost.bytes += l.len() as u64;
                daemon.subs.broadcast(Kind::Samples, l);
                let took = t0.elapsed();
                cost.batches += 1;
                cost.total += took;
                cost.max = cost.max.max(took);
            }
        }
        RunUpdate::Finished(_) => {}
    }
}

/// The run ended: join it, free the slot, remember it, tell subscribers.
fn finish(daemon: &Daemon, run_id: u64, summary: Option<nanoecr_core::RunSummary>) {
    let handle = match &mut *lock(&daemon.slot) {
        Slot::Running(a) if a.run.run_id == run_id => a.handle.take(),
        _ => None,
    };
    // The threads have ended (or are about to): this join is short, and on this thread, never
    // on the async runtime.
    let joined = handle.map(|h| h.join());
    let (status, summary, error) = match (joined, summary) {
        (Some(Ok(s)), _) => (s.status, Some(s), None),
        (Some(Err(e)), _) => (RunStatus::Failed, None, Some(e.to_string())),
        (None, Some(s)) => (s.status, Some(s), None),
        (None, None) => (RunStatus::Failed, None, Some("the run ended without a summary".to_string())),
    };
    let (file, started_at) = {
        let mut slot = lock(&daemon.slot);
        let info = match &*slot {
            Slot::Running(a) if a.run.run_id == run_id => (a.run.file.clone(), Some(a.run.started_at.clone())),
            _ => (String::new(), None),
        };
        *slot = Slot::Idle;
        info
    };
    let wire = summary.as_ref().map(WireSummary::from);
    match (&summary, &error) {
        (Some(s), _) => tracing::info!(
            run_id,
            file = %file,
            status = %s.status,
            end_reason = %s.end_reason,
            samples = s.samples,
            dropped = s.dropped,
            "run ended"
        ),
        (None, e) => tracing::error!(run_id, file = %file, error = ?e, "run failed"),
    }
    daemon.remember(RunRecord {
        run_id: Some(run_id),
        file: file.clone(),
        status,
        started_at,
        ended_at: Some(chrono::Utc::now().to_rfc3339()),
        end_reason: summary.as_ref().map(|s| s.end_reason.clone()).or_else(|| error.clone()),
        summary: wire.clone(),
    });
    let note = RunEndNote { run_id, sent_unix_s: unix_now_s(), file, status, summary: wire, error };
    daemon.subs.broadcast(Kind::Always, line(names::RUN_END, &note));
    // Last: `serve` waits for Idle at shutdown and then closes connections, so run.end must
    // already be in every queue.
    daemon.publish_state(DaemonState::Idle);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(cap: usize) -> (Sub, tokio::sync::mpsc::Receiver<Line>, tokio::sync::watch::Receiver<bool>) {
        let (tx, rx) = tokio::sync::mpsc::channel(cap);
        let (kick, kick_rx) = tokio::sync::watch::channel(false);
        (Sub::new(1, tx, SubscribeParams::default(), kick), rx, kick_rx)
    }

    fn l(s: &str) -> Line {
        Arc::from(s)
    }

    #[test]
    fn a_stalled_client_gets_progress_coalesced_samples_skipped_and_every_event_in_order() {
        let subs = Subscribers::default();
        let (s, mut rx, kick) = sub(2);
        subs.add(s);
        subs.broadcast(Kind::Progress, l("p1"));
        subs.broadcast(Kind::Event, l("e1"));
        // Queue full from here on: the client is stalled.
        subs.broadcast(Kind::Progress, l("p2"));
        subs.broadcast(Kind::Samples, l("s1"));
        subs.broadcast(Kind::Event, l("e2"));
        subs.broadcast(Kind::Progress, l("p3"));
        subs.broadcast(Kind::Always, l("end"));
        subs.service(Duration::from_secs(60));
        assert_eq!(subs.len(), 1, "stalled, not yet dropped");
        // The client reads; the backlog follows in order, then the newest progress only.
        let mut got = Vec::new();
        for _ in 0..6 {
            while let Ok(x) = rx.try_recv() {
                got.push(x.to_string());
            }
            subs.service(Duration::from_secs(60));
        }
        assert_eq!(got, ["p1", "e1", "e2", "end", "p3"]);
        assert!(!*kick.borrow());
        let thinned = lock(&subs.inner)[0].thinned;
        assert_eq!(thinned, 2, "p2 coalesced away, s1 skipped");
    }

    #[test]
    fn a_client_stalled_past_the_timeout_is_dropped_and_kicked() {
        let subs = Subscribers::default();
        let (s, _rx, kick) = sub(1);
        subs.add(s);
        subs.broadcast(Kind::Progress, l("p1"));
        subs.broadcast(Kind::Event, l("e1"));
        subs.service(Duration::ZERO);
        assert_eq!(subs.len(), 0);
        assert!(*kick.borrow());
    }

    /// The issue: with the queue far from full, a client whose socket stopped taking lines was
    /// kept ≈ 57 s with a 5 s timeout. Now the clock starts when the queue stops draining.
    #[test]
    fn a_client_whose_queue_stops_draining_is_dropped_after_the_timeout_though_not_full() {
        let timeout = Duration::from_secs(5);
        let subs = Subscribers::default();
        let (s, mut rx, kick) = sub(1024);
        subs.add(s);
        let t0 = Instant::now();
        subs.broadcast(Kind::Progress, l("p1"));
        subs.service_at(timeout, t0);
        // The writer takes p1: the queue drains, the wait restarts with p2.
        assert_eq!(rx.try_recv().ok().as_deref(), Some("p1"));
        subs.broadcast(Kind::Progress, l("p2"));
        // The first check sees p1 taken; the next (20 ms later in the daemon) sees nothing taken
        // since: the queue stopped draining then.
        subs.service_at(timeout, t0 + Duration::from_secs(1));
        subs.service_at(timeout, t0 + Duration::from_secs(1));
        subs.service_at(timeout, t0 + Duration::from_millis(5900));
        assert_eq!(subs.len(), 1, "undrained for 4.9 s: kept");
        assert!(!*kick.borrow());
        // Nothing taken since: 5 s after the queue stopped draining, it goes.
        subs.broadcast(Kind::Progress, l("p3"));
        subs.service_at(timeout, t0 + Duration::from_millis(6001));
        assert_eq!(subs.len(), 0, "1 of 1024 slots used, but undrained for > 5 s");
        assert!(*kick.borrow());
    }

    #[test]
    fn a_client_that_keeps_reading_is_never_dropped_for_its_backlog_age() {
        let timeout = Duration::from_secs(1);
        let subs = Subscribers::default();
        let (s, mut rx, _kick) = sub(1024);
        subs.add(s);
        let t0 = Instant::now();
        for i in 0..100u64 {
            subs.broadcast(Kind::Progress, l("p"));
            subs.broadcast(Kind::Progress, l("q"));
            // Slow reader: one line per check, so lines are always waiting, but some are taken.
            let _ = rx.try_recv();
            subs.service_at(timeout, t0 + Duration::from_millis(500 * i));
        }
        assert_eq!(subs.len(), 1);
    }

    #[test]
    fn a_closed_client_is_removed_on_the_next_broadcast() {
        let subs = Subscribers::default();
        let (s, rx, _kick) = sub(4);
        subs.add(s);
        drop(rx);
        subs.broadcast(Kind::Event, l("e1"));
        assert_eq!(subs.len(), 0);
    }

    #[test]
    fn filters_apply() {
        let subs = Subscribers::default();
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let (kick, _k) = tokio::sync::watch::channel(false);
        subs.add(Sub::new(1, tx, SubscribeParams { progress: false, samples: false, events: true }, kick));
        for (k, s) in [(Kind::Progress, "p"), (Kind::Samples, "s"), (Kind::Event, "e"), (Kind::Always, "end")] {
            subs.broadcast(k, l(s));
        }
        let mut got = Vec::new();
        while let Ok(x) = rx.try_recv() {
            got.push(x.to_string());
        }
        assert_eq!(got, ["e", "end"]);
    }
}
