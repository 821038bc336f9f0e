//! Talking to nanoecrd over its Unix socket with the protocol crate's types
//! (docs/socket-protocol.md). One connection per request keeps requests independent of the live
//! subscription; the daemon's access rules apply to every connection, so the page can do exactly
//! what the operator running `nanoecr ui` may do.

use std::path::{Path, PathBuf};

use nanoecr_proto::jsonrpc::OutgoingRequest;
use nanoecr_proto::{Frame, Incoming, LineDecoder, Notification, RpcError, MAX_LINE_BYTES};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Why a request to the daemon gave no result.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No daemon to talk to (no socket, refused, closed, garbled).
    #[error("nanoecrd unreachable at {path}: {why}")]
    Unreachable {
        /// The socket path.
        path: PathBuf,
        /// What happened.
        why: String,
    },
    /// The daemon answered with an error (its code, message and data are passed to the page).
    #[error("{}", .0.message)]
    Refused(RpcError),
}

/// A connection reading lines with the protocol's framing.
pub struct Conn {
    path: PathBuf,
    stream: UnixStream,
    decoder: LineDecoder,
    pending: std::collections::VecDeque<Vec<u8>>,
    buf: Vec<u8>,
    next_id: u64,
}

impl Conn {
    /// Connect to the daemon's socket.
    pub async fn open(path: &Path) -> Result<Self, DaemonError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| DaemonError::Unreachable { path: path.to_path_buf(), why: e.to_string() })?;
        Ok(Self {
            path: path.to_path_buf(),
            stream,
            // Responses (runs.list with summaries) can exceed a request's limit; allow more.
            decoder: LineDecoder::new(16 * MAX_LINE_BYTES),
            pending: Default::default(),
            buf: vec![0; 64 * 1024],
            next_id: 1,
        })
    }

    fn unreachable(&self, why: impl Into<String>) -> DaemonError {
        DaemonError::Unreachable { path: self.path.clone(), why: why.into() }
    }

    /// The next message from the daemon.
    pub async fn read(&mut self) -> Result<Incoming, DaemonError> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Incoming::parse(&line).map_err(|e| self.unreachable(format!("garbled line: {e}")));
            }
            let n = self.stream.read(&mut self.buf).await.map_err(|e| self.unreachable(e.to_string()))?;
            if n == 0 {
                return Err(self.unreachable("the daemon closed the connection"));
            }
            let pending = &mut self.pending;
            let mut too_long = false;
            self.decoder.push(&self.buf[..n], &mut |f| match f {
                Frame::Line(l) if !l.is_empty() => pending.push_back(l),
                Frame::Line(_) => {}
                Frame::TooLong => too_long = true,
            });
            if too_long {
                return Err(self.unreachable("a line from the daemon over the length limit"));
            }
        }
    }

    /// Send one request and wait for its response; notifications read meanwhile go to `held`.
    pub async fn call(
        &mut self,
        method: &str,
        params: impl serde::Serialize,
        held: &mut Vec<Notification>,
    ) -> Result<Value, DaemonError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut line = serde_json::to_string(&OutgoingRequest::new(id, method, params))
            .map_err(|e| DaemonError::Refused(RpcError::internal(e)))?;
        line.push('\n');
        // A refused peer gets one error line and a closed socket: read it before giving up.
        let wrote = self.stream.write_all(line.as_bytes()).await;
        loop {
            match self.read().await {
                Ok(Incoming::Response(r)) if r.id == id || r.id.is_null() => {
                    return r.into_result().map_err(DaemonError::Refused)
                }
                Ok(Incoming::Response(_)) => {}
                Ok(Incoming::Notification(n)) => held.push(n),
                Err(e) => {
                    return Err(match wrote {
                        Err(w) => self.unreachable(w.to_string()),
                        Ok(()) => e,
                    })
                }
            }
        }
    }
}

/// One request on a fresh connection.
pub async fn call(path: &Path, method: &str, params: impl serde::Serialize) -> Result<Value, DaemonError> {
    let mut c = Conn::open(path).await?;
    c.call(method, params, &mut Vec::new()).await
}
