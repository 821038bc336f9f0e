//! The nanoecrd local-socket server: newline-delimited JSON-RPC 2.0 over a Unix socket
//! (docs/socket-protocol.md), one run at a time, many subscribers.
//!
//! - [`config`]: the daemon's own config (config/nanoecrd.toml).
//! - [`socket`]: the socket file's life (stale socket, live daemon, mode, group, removal).
//! - [`peer`]: who may connect (SO_PEERCRED), as a pure, tested decision.
//! - `conn`: one connection — framing, dispatch, the writer task.
//! - `fanout`: the thread that turns run updates into notifications without ever waiting.
//! - `state`: the run slot, recent runs, the subscriber registry.
//! - [`recovery`]: start-up recovery of run files left `running` by a crash.
//!
//! Entry point: [`serve`] (or [`serve_with_reload`]) with a bound listener and a shutdown
//! future — the binary passes signals, tests pass a oneshot.

pub mod config;
mod conn;
mod fanout;
pub mod peer;
pub mod recovery;
pub mod socket;
mod state;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nanoecr_core::EndReason;
use nanoecr_proto::methods::DaemonState;
use nanoecr_proto::{codes, RpcError};
use tokio::net::UnixListener;
use tokio::sync::watch;

pub use config::{AllowedGroup, DaemonConfig, DaemonConfigError};

use self::fanout::FanoutCmd;
use self::state::Daemon;

/// How long connections get, after the run has ended, to send their last lines at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A thread could not be started.
    #[error("cannot start the fan-out thread: {0}")]
    Spawn(#[source] std::io::Error),
}

/// Serve until `shutdown` resolves; its output is the reason a running test is aborted with
/// (e.g. `EndReason::Signal("SIGTERM")`). Returns once that run has ended safely and its file
/// is closed. Must run inside a tokio runtime with the `rt` and `net` drivers.
pub async fn serve(
    listener: UnixListener,
    cfg: DaemonConfig,
    shutdown: impl Future<Output = EndReason>,
) -> Result<(), ServeError> {
    serve_with_reload(listener, cfg, shutdown, None).await
}

/// [`serve`], plus config reloads (SIGHUP in the binary): each value sent replaces the access
/// policy, output directory, recent-runs count, ceilings and subscriber settings. The socket
/// path and mode are fixed for the life of the listener. A running test is never touched.
pub async fn serve_with_reload(
    listener: UnixListener,
    cfg: DaemonConfig,
    shutdown: impl Future<Output = EndReason>,
    mut reload: Option<watch::Receiver<DaemonConfig>>,
) -> Result<(), ServeError> {
    let recovered = if cfg.recover_at_start {
        let dir = cfg.out_dir.clone();
        tokio::task::spawn_blocking(move || recovery::recover_dir(&dir)).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let (fanout_tx, fanout_rx) = crossbeam_channel::unbounded();
    let daemon = Arc::new(Daemon::new(cfg, fanout_tx, recovered));
    let fanout = {
        let d = Arc::clone(&daemon);
        std::thread::Builder::new()
            .name("nanoecrd-fanout".into())
            .spawn(move || fanout::run_fanout(d, fanout_rx))
            .map_err(ServeError::Spawn)?
    };
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tracing::info!(out_dir = %daemon.config().out_dir.display(), "nanoecrd ready");
    tokio::pin!(shutdown);
    let reason = loop {
        tokio::select! {
            reason = &mut shutdown => break reason,
            changed = async {
                match reload.as_mut() {
                    Some(r) => r.changed().await.map(|_| r.borrow_and_update().clone()),
                    None => std::future::pending().await,
                }
            } => match changed {
                Ok(new) => apply_reload(&daemon, new),
                Err(_) => reload = None,
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let d = Arc::clone(&daemon);
                    let conn_id = d.next_conn_id.fetch_add(1, Ordering::Relaxed);
                    let max = d.config().max_clients;
                    let closing = closing_rx.clone();
                    conns.spawn(async move {
                        if d.clients.fetch_add(1, Ordering::AcqRel) >= max {
                            tracing::warn!(conn = conn_id, max, "too many clients; refusing");
                            conn::refuse(stream, RpcError::new(codes::INTERNAL_ERROR, format!(
                                    "too many clients: subscribers.max_clients = {max} connections are open; \
                                     try again when one closes"
                                ))).await;
                        } else {
                            conn::handle(Arc::clone(&d), stream, conn_id, closing).await;
                        }
                        d.clients.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                Err(e) => {
                    // Out of descriptors and the like: transient; do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    };
    drop(listener);
    daemon.shutting_down.store(true, Ordering::Release);
    tracing::info!(reason = %reason.describe(), "shutting down");
    if let Some((run_id, file, _)) = daemon.request_abort(reason) {
        tracing::info!(run_id, file = %file, "waiting for the run to unload safely and close its file");
    }
    let mut state = daemon.state_tx.subscribe();
    let _ = state.wait_for(|s| *s == DaemonState::Idle).await;
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        conns.abort_all();
    }
    let _ = daemon.fanout_tx.send(FanoutCmd::Stop);
    let _ = tokio::task::spawn_blocking(move || fanout.join()).await;
    tracing::info!("nanoecrd stopped");
    Ok(())
}

fn apply_reload(daemon: &Daemon, mut new: DaemonConfig) {
    let mut cfg = daemon.cfg.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    if new.socket_path != cfg.socket_path || new.socket_mode != cfg.socket_mode {
        tracing::warn!("socket path and mode changes take effect at the next start; keeping the current socket");
        new.socket_path = cfg.socket_path.clone();
        new.socket_mode = cfg.socket_mode;
    }
    tracing::info!(
        out_dir = %new.out_dir.display(),
        allowed_group = ?new.allowed_group.as_ref().map(|g| &g.name),
        recent_runs = new.recent_runs,
        "config reloaded"
    );
    *cfg = new;
}
