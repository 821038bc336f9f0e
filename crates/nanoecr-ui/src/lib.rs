//! # nanoecr-ui
//!
//! The live view in the browser (`nanoecr ui`): an HTTP and WebSocket server on 127.0.0.1 that is
//! a *client* of nanoecrd's socket protocol (docs/socket-protocol.md), so the daemon's own access
//! rules decide what the page may do. The page and its plotting library (uPlot, pinned, licence
//! beside it in `assets/`) are compiled into the binary; nothing is loaded from elsewhere.
//!
//! Who may use it: every request needs the token printed with the URL (`?token=` once, then a
//! `SameSite=Strict` cookie, or an `X-Nanoecr-Token` header); the `Host` header must name the
//! loopback address and port (DNS rebinding); the live stream and every POST must come from the
//! page's own `Origin` (cross-site WebSocket and request forgery). No CORS headers are sent.
//!
//! - [`daemon`]: requests to nanoecrd.
//! - [`live`]: one subscription, fanned out to the open pages.
//! - [`decimate`]: min/max-per-pixel decimation for looking into a finished run.
//! - [`serve`]: the HTTP routes.

pub mod daemon;
pub mod decimate;
pub mod live;
mod routes;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use rand::RngCore;

pub use routes::router;

/// How `nanoecr ui` is set up.
#[derive(Debug, Clone)]
pub struct UiConfig {
    /// nanoecrd's socket.
    pub socket: PathBuf,
    /// Run configs offered on the page (`*.toml` directly in this directory).
    pub configs_dir: Option<PathBuf>,
    /// The token every request must carry; `None` only with `--no-token` on a private socket.
    pub token: Option<String>,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// Binding or serving on the loopback port failed.
    #[error("cannot serve on 127.0.0.1:{port}: {source}")]
    Listen {
        /// The port asked for (0 = any).
        port: u16,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A fresh token: 128 bits from the operating system's generator, as 32 hex digits.
pub fn random_token() -> String {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bind 127.0.0.1:`port` (0 = let the kernel pick). Never another address: the page can start
/// and stop tests.
pub async fn bind(port: u16) -> Result<tokio::net::TcpListener, UiError> {
    tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|source| UiError::Listen { port, source })
}

/// The URL to print and open.
pub fn url(addr: SocketAddr, token: Option<&str>) -> String {
    match token {
        Some(t) => format!("http://{addr}/?token={t}"),
        None => format!("http://{addr}/"),
    }
}

/// Serve on `listener` until the process ends: the live relay and the routes.
pub async fn serve(cfg: UiConfig, listener: tokio::net::TcpListener) -> Result<(), UiError> {
    let addr = listener.local_addr().map_err(|source| UiError::Listen { port: 0, source })?;
    let hub = live::Hub::new();
    tokio::spawn(Arc::clone(&hub).run(cfg.socket.clone()));
    let app = router(Arc::new(routes::App::new(cfg, addr.port(), hub)));
    axum::serve(listener, app).await.map_err(|source| UiError::Listen { port: addr.port(), source })
}
