//! Hardware errors. Device-level refusals (a Modbus exception, an SCPI error) are kept apart
//! from transport failures, because they call for different reactions: a refusal is final, a
//! transport error may be retried.

use std::time::Duration;

/// Everything that can go wrong talking to an instrument. Each variant names the device.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    /// No answer in time.
    #[error("{device}: no answer to {operation} within {after:?}")]
    Timeout {
        /// Logical device name.
        device: String,
        /// What was being done.
        operation: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// The link failed (connection refused or reset, serial port gone, …).
    #[error("{device}: transport error during {operation}: {source}")]
    Transport {
        /// Logical device name.
        device: String,
        /// What was being done.
        operation: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The device answered with a refusal (Modbus exception code, SCPI error queue entry).
    #[error("{device}: device refused {operation}: {message} (code {code})")]
    Device {
        /// Logical device name.
        device: String,
        /// What was being done.
        operation: String,
        /// Device error code.
        code: i32,
        /// Device message.
        message: String,
    },
    /// The answer could not be understood (garbage, truncated, out of range).
    #[error("{device}: bad reply to {operation}: {message}")]
    Protocol {
        /// Logical device name.
        device: String,
        /// What was being done.
        operation: String,
        /// What was wrong.
        message: String,
    },
    /// A sample-sequence gap or stall the backend could not recover from.
    #[error("{device}: {message}")]
    Stream {
        /// Logical device name.
        device: String,
        /// What happened.
        message: String,
    },
}

impl HwError {
    /// The logical device this error concerns.
    pub fn device(&self) -> &str {
        match self {
            Self::Timeout { device, .. }
            | Self::Transport { device, .. }
            | Self::Device { device, .. }
            | Self::Protocol { device, .. }
            | Self::Stream { device, .. } => device,
        }
    }

    /// Whether retrying the same operation may succeed (timeouts and transport errors).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Transport { .. })
    }
}
