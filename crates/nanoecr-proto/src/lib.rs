//! # nanoecr-proto
//!
//! Wire types of the nanoecrd local-socket protocol: newline-delimited JSON-RPC 2.0, one JSON
//! object per line, shared by the daemon and its clients so neither depends on the other.
//! docs/socket-protocol.md is the human specification; this crate is the machine one.
//!
//! - [`framing`]: splitting a byte stream into lines with a hard length limit ([`MAX_LINE_BYTES`]).
//! - [`jsonrpc`]: the envelope (requests, responses, notifications), error codes and the request
//!   parser every incoming line goes through ([`jsonrpc::parse_request`]; fuzzed in tests/).
//! - [`methods`]: method names, their params and results.
//! - [`notes`]: the notifications a subscriber receives (progress, samples, events, end of run).
//! - [`float`]: NaN-safe float fields (JSON has no NaN; Δρ/ρ is NaN during settle).

pub mod float;
pub mod framing;
pub mod jsonrpc;
pub mod methods;
pub mod notes;

pub use framing::{Frame, LineDecoder};
pub use jsonrpc::{codes, parse_request, Incoming, Notification, Request, Response, RpcError};

/// Version of this protocol, reported by `daemon.info`. Bumped on incompatible changes only;
/// new optional fields and methods keep it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest request line accepted, in bytes (1 MiB), newline excluded. A run config is a few KiB;
/// the limit only stops a client from making the daemon buffer without bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Seconds since the Unix epoch, now, as a float: the clock notifications are stamped with, so
/// a client can measure delivery latency against the run's start time.
pub fn unix_now_s() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}
