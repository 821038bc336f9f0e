//! # nanoecr-daemon
//!
//! The part of nanoecr that owns a rig while a test runs.
//!
//! - [`run`]: one test — the real-time control loop thread, the lock-free ring, the consumer
//!   thread (detector + HDF5 writer), interlocks and safe unload. `nanoecr run` and `nanoecrd`
//!   both use it.
//! - [`report`]: one-line error reports for the binaries (each OS error once).
//! - [`riglock`]: one master per rig (advisory locks on the rig name and device endpoints).
//! - [`server`]: `nanoecrd`'s local-socket JSON-RPC server (one run at a time, many subscribers).

pub mod report;
pub mod riglock;
pub mod run;
pub mod server;
