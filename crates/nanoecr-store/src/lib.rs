//! # nanoecr-store
//!
//! One HDF5 file per run, NeXus-style (docs/file-format.md is the specification):
//!
//! - [`RunWriter`] creates the file (HDF5 1.10 format, every object created up front), switches it
//!   to SWMR writing so that readers can follow the run live (`h5py.File(path, "r",
//!   libver="latest", swmr=True)`), appends samples in blocks to chunked, compressed, extendible
//!   datasets, flushes on request (the pipeline does so at least every 100 ms) and closes it
//!   with the run's status. A writer dropped without [`RunWriter::finish`] flushes what it holds
//!   and leaves `status = "running"`: exactly what a crash looks like to a reader.
//! - [`read_run`] reads a run back (our files, and foreign files with the documented minimum);
//!   a file still being written, or left by a crash, is read in SWMR mode.
//! - [`recover`] makes a file left by a crash readable by any reader (clearing the superblock's
//!   "open for writing" flags) and marks it `failed`.

mod chunk_index;
mod chunk_read;
mod chunk_write;
mod cloexec;
mod names;
mod reader;
mod recover;
mod writer;

use std::path::PathBuf;

pub use reader::{
    read_run, read_run_blocks, read_run_columns, BlockConsumer, ColumnSelection, RowBlock, RunColumns, RunData,
    RunFile, RunHeader,
};
pub use writer::{InstrumentInfo, Pacing, RunWriter};

/// Errors of the run-file layer. Each names the file and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The HDF5 library refused an operation (disk full, permissions, corrupt file, …).
    #[error("{path}: HDF5 error while {during}: {source}")]
    Hdf5 {
        /// The file.
        path: PathBuf,
        /// What was being done.
        during: String,
        /// The library's error.
        #[source]
        source: hdf5::Error,
    },
    /// A file-system error outside HDF5.
    #[error("{path}: {during}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        during: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file lacks something a run file must have.
    #[error("{path}: not a readable run file: {what}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        what: String,
    },
    /// Another process has the file open (a run still being written, or a reader): not touched.
    #[error("{path}: open in another process (a run still being written?); not touched")]
    InUse {
        /// The file.
        path: PathBuf,
    },
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// What [`recover`] found and did.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoverOutcome {
    /// The status the file had.
    pub status_before: nanoecr_core::RunStatus,
    /// Whether the file was changed (a `running` file becomes `failed`).
    pub changed: bool,
    /// Whether the superblock's consistency flag had to be cleared first.
    pub cleared_flag: bool,
    /// Sample rows in the file.
    pub rows: u64,
    /// File size before and after, when the recovered file was compacted (a crashed SWMR writer
    /// leaves the old places of rewritten chunks behind, as a closed run's `finish` would not).
    pub compacted: Option<(u64, u64)>,
}

/// Make a file left `running` by a crash readable and mark it `failed`, keeping every row.
/// A file that was closed properly is reported and left as it is; a file another process holds
/// open (the writer of a run in progress) is refused with [`StoreError::InUse`].
pub fn recover(path: &std::path::Path) -> Result<RecoverOutcome, StoreError> {
    recover::recover(path)
}
