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
//! Served on a private Unix socket instead ([`bind_unix`], `nanoecr ui --unix`), the page is
//! reached through a forwarded port, so any loopback `Host` is accepted; only there may the token
//! be dropped.
//!
//! - [`daemon`]: requests to nanoecrd.
//! - [`live`]: one subscription, fanned out to the open pages.
//! - [`decimate`]: min/max-per-pixel decimation for looking into a finished run.
//! - [`runview`]: a run file read a chunk at a time into a per-block summary, then viewed.
//! - [`serve`]: the HTTP routes.

pub mod daemon;
pub mod decimate;
pub mod live;
mod routes;
pub mod runview;

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
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
    /// The token every request must carry; `None` only with `--no-token` on a private Unix socket.
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
    /// Binding or serving on the Unix socket failed.
    #[error("cannot serve on the Unix socket {path}: {why}")]
    Unix {
        /// The socket path asked for.
        path: PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// Where the page is served: its listener decides which `Host` and `Origin` the guard accepts.
pub enum Listener {
    /// 127.0.0.1:port; only that address and port are accepted as `Host`.
    Tcp(tokio::net::TcpListener),
    /// A private Unix socket, reached through `ssh -L PORT:PATH` or a reverse proxy on the
    /// operator's side, so any loopback `Host` (with any port) is accepted.
    Unix(tokio::net::UnixListener),
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

/// Bind a Unix socket at `path` that only its owner can use: mode 0600, inside a directory that
/// is ours and that no group or other user may enter (created 0700 if it does not exist; an
/// existing one with wider permissions is refused, since the socket is briefly wider than 0600
/// between bind and chmod). A stale socket left by an earlier `nanoecr ui` is replaced; one
/// still served by a live process is not.
pub fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, UiError> {
    let err = |why: String| UiError::Unix { path: path.to_path_buf(), why };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| err(format!("cannot create its directory {}: {e}", dir.display())))?;
    }
    let meta = std::fs::metadata(&dir).map_err(|e| err(format!("cannot inspect {}: {e}", dir.display())))?;
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(err(format!(
            "its directory {} belongs to uid {}, not to you (uid {uid})",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(err(format!(
            "its directory {} has mode {:o}: others may enter it (use a directory with mode 700)",
            dir.display(),
            meta.mode() & 0o777
        )));
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_socket() {
            return Err(err("a file that is not a socket is in the way".into()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(err("another process is serving on it".into()));
        }
        std::fs::remove_file(path).map_err(|e| err(format!("cannot remove the stale socket: {e}")))?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| err(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err(format!("cannot make it private (chmod 600): {e}")))?;
    Ok(listener)
}

/// The URL to print and open.
pub fn url(addr: SocketAddr, token: Option<&str>) -> String {
    match token {
        Some(t) => format!("http://{addr}/?token={t}"),
        None => format!("http://{addr}/"),
    }
}

/// The URL of a page served on a Unix socket, in the `http+unix://` form (the path
/// percent-encoded as the host) that curl-like clients and requests-unixsocket read.
pub fn unix_url(path: &Path, token: Option<&str>) -> String {
    let host: String = path
        .to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    match token {
        Some(t) => format!("http+unix://{host}/?token={t}"),
        None => format!("http+unix://{host}/"),
    }
}

/// Serve on `listener` until the process ends: the live relay and the routes.
pub async fn serve(cfg: UiConfig, listener: Listener) -> Result<(), UiError> {
    let hub = live::Hub::new();
    tokio::spawn(Arc::clone(&hub).run(cfg.socket.clone()));
    match listener {
        Listener::Tcp(l) => {
            let port = l.local_addr().map_err(|source| UiError::Listen { port: 0, source })?.port();
            let app = router(Arc::new(routes::App::new(cfg, routes::Bound::Tcp(port), hub)));
            axum::serve(l, app).await.map_err(|source| UiError::Listen { port, source })
        }
        Listener::Unix(l) => {
            let path = l.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf)).unwrap_or_default();
            let app = router(Arc::new(routes::App::new(cfg, routes::Bound::Unix, hub)));
            axum::serve(l, app).await.map_err(|e| UiError::Unix { path, why: e.to_string() })
        }
    }
}
