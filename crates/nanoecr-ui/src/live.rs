//! The live relay: one subscription to nanoecrd, fanned out to every open page. The daemon's
//! notification lines are passed on as they are (the page reads the protocol's own JSON), and the
//! current run's samples and events are kept so a page opened mid-run draws the run from its start.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nanoecr_proto::methods::{self as m, SubscribeResult};
use nanoecr_proto::notes::names;
use nanoecr_proto::{Incoming, Notification};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::daemon::Conn;

/// Lines kept for a page that opens mid-run: 3000 batches is 300 s of samples at 10 Hz (the
/// daemon sends at most 100 samples per batch); the oldest go first on longer runs.
const BACKLOG_LINES: usize = 3000;
/// Lines a page may fall behind before it is told it missed some.
const CHANNEL_LINES: usize = 1024;
/// Wait before reconnecting to a daemon that went away.
const RECONNECT: Duration = Duration::from_secs(1);

/// A line for the pages (a daemon notification, or one of ours named `ui.*`).
pub type Line = Arc<str>;

#[derive(Default)]
struct State {
    /// `run.started` params of the current run (or the `run` of `events.subscribe`).
    run: Option<Value>,
    /// The latest `progress` line of the current run.
    progress: Option<Line>,
    /// `samples`, `event` and `run.end` lines of the current (or last) run.
    backlog: VecDeque<Line>,
    /// Whether the subscription is up.
    connected: bool,
    /// Why it is not.
    error: Option<String>,
}

/// Shared between the subscription task and the WebSocket handlers.
pub struct Hub {
    tx: broadcast::Sender<Line>,
    state: Mutex<State>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic elsewhere must not take the live view down: the state is plain data.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Hub {
    /// A hub with nothing yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { tx: broadcast::channel(CHANNEL_LINES).0, state: Mutex::new(State::default()) })
    }

    /// Subscribe a page: the lines that bring it up to date, then the live channel. Taken under
    /// the state lock, which the relay holds while publishing, so no line is missed or doubled.
    pub fn join(&self) -> (Vec<Line>, broadcast::Receiver<Line>) {
        let st = lock(&self.state);
        let rx = self.tx.subscribe();
        let hello = json!({
            "method": "ui.hello",
            "params": { "connected": st.connected, "error": st.error, "run": st.run },
        });
        let mut lines: Vec<Line> = vec![hello.to_string().into()];
        lines.extend(st.backlog.iter().cloned());
        lines.extend(st.progress.iter().cloned());
        (lines, rx)
    }

    fn publish(&self, f: impl FnOnce(&mut State) -> Option<Line>) {
        let mut st = lock(&self.state);
        if let Some(line) = f(&mut st) {
            // No receiver is not an error: no page is open.
            let _ = self.tx.send(line);
        }
    }

    fn set_connected(&self, connected: bool, error: Option<String>, run: Option<Value>) {
        self.publish(|st| {
            st.connected = connected;
            st.error = error.clone();
            if connected {
                st.run = run.clone();
                st.backlog.clear();
                st.progress = None;
            }
            Some(
                json!({"method": "ui.daemon", "params": {"connected": connected, "error": error, "run": run}})
                    .to_string()
                    .into(),
            )
        });
    }

    fn relay(&self, n: &Notification) {
        let line: Line = n.to_line().trim_end().into();
        self.publish(|st| {
            match n.method.as_str() {
                names::RUN_STARTED => {
                    st.run = Some(n.params.clone());
                    st.backlog.clear();
                    st.progress = None;
                    st.backlog.push_back(line.clone());
                }
                names::PROGRESS => st.progress = Some(line.clone()),
                names::SAMPLES | names::EVENT | names::RUN_END => {
                    if st.backlog.len() >= BACKLOG_LINES {
                        st.backlog.pop_front();
                    }
                    st.backlog.push_back(line.clone());
                    if n.method == names::RUN_END {
                        st.progress = None;
                    }
                }
                _ => {}
            }
            Some(line)
        });
    }

    /// Keep a subscription to the daemon for as long as the process runs, reconnecting when the
    /// daemon goes away (it may be restarted while the page stays open).
    pub async fn run(self: Arc<Self>, socket: PathBuf) {
        loop {
            let why = match self.subscribe_once(&socket).await {
                Ok(()) => "the daemon closed the connection".to_string(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(error = %why, "live subscription to nanoecrd lost; retrying");
            self.set_connected(false, Some(why), None);
            tokio::time::sleep(RECONNECT).await;
        }
    }

    async fn subscribe_once(&self, socket: &std::path::Path) -> Result<(), crate::daemon::DaemonError> {
        let mut conn = Conn::open(socket).await?;
        let mut held = Vec::new();
        let r = conn.call(m::EVENTS_SUBSCRIBE, json!({}), &mut held).await;
        let sub: SubscribeResult = serde_json::from_value(r?).map_err(|e| crate::daemon::DaemonError::Unreachable {
            path: socket.to_path_buf(),
            why: format!("unexpected answer: {e}"),
        })?;
        let run = sub.run.and_then(|r| serde_json::to_value(r).ok());
        self.set_connected(true, None, run);
        for n in &held {
            self.relay(n);
        }
        loop {
            match conn.read().await? {
                Incoming::Notification(n) if n.method == names::DROPPED => {
                    self.relay(&n);
                    return Ok(());
                }
                Incoming::Notification(n) => self.relay(&n),
                Incoming::Response(_) => {}
            }
        }
    }
}
