//! Crash recovery: make a file left `running` readable by any HDF5 reader and mark it `failed`.
//!
//! Run files are in the HDF5 1.10 format and written in SWMR mode, whose superblock carries
//! "open for writing" flags. A writer that dies without closing the file leaves them set, and
//! every later non-SWMR open fails with "file is already open for write (may use `<h5clear file>`
//! to clear file consistency flags)". Recovery clears them the way `h5clear -s` does — by
//! opening the file with the library's `clear_status_flags` file-access property — in process,
//! so the daemon needs no HDF5 command-line tools at hand.

use std::path::Path;

use hdf5::File;
use nanoecr_core::RunStatus;

use crate::writer::{h5err, set_str_attr};
use crate::{RecoverOutcome, StoreError};

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Refuse files that another process holds open: a writer holds a shared `flock` on its run file
/// for as long as it writes (HDF5 drops its own lock in SWMR mode), and HDF5 readers hold one too.
fn ensure_not_in_use(path: &Path) -> Result<(), StoreError> {
    let f = std::fs::File::open(path).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        during: "opening for recovery".into(),
        source,
    })?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        // Released when dropped, before HDF5 opens the file (it takes its own lock).
        Ok(_lock) => Ok(()),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(StoreError::InUse { path: path.to_path_buf() }),
        // A file system without flock support: nothing to learn from it, go on.
        Err((_, errno)) => {
            tracing::debug!(file = %path.display(), %errno, "flock not available; not checking for a live writer");
            Ok(())
        }
    }
}

/// Clear the superblock status flags a crashed (SWMR) writer left set, like `h5clear -s`.
#[allow(unsafe_code)] // two calls into the HDF5 C API that hdf5-metno does not wrap
fn clear_status_flags(path: &Path) -> hdf5::Result<()> {
    use std::os::unix::ffi::OsStrExt;

    use hdf5_sys::{h5::hbool_t, h5f, h5p};

    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| hdf5::Error::from("the path contains a NUL byte"))?;
    let fapl = hdf5::plist::FileAccess::try_new()?;
    hdf5::sync::sync(|| {
        let mut on: hbool_t = 1;
        // SAFETY: `fapl` is a live file-access property list; "clear_status_flags" is a property
        // registered on that class (an hbool_t, which H5Pset copies out of `on`); the pointers are
        // valid for the duration of the call. The library lock is held (`sync`).
        hdf5::h5check(unsafe { h5p::H5Pset(fapl.id(), c"clear_status_flags".as_ptr(), (&raw mut on).cast()) })?;
        // SAFETY: `cpath` is a NUL-terminated path and `fapl` a valid id; the returned file id
        // is checked and closed right here, never shared.
        let fid = hdf5::h5check(unsafe { h5f::H5Fopen(cpath.as_ptr(), h5f::H5F_ACC_RDWR, fapl.id()) })?;
        // SAFETY: `fid` is the file id just opened, closed once.
        hdf5::h5check(unsafe { h5f::H5Fclose(fid) })?;
        Ok(())
    })
}

/// The outcome for a file its writer closed (status not `running`), found with a read-only
/// open, so such a file is left as it is to the byte and its modification time: a read-write
/// open writes the superblock, and fails outright on a file the caller may only read (a closed
/// run in a shared archive). `None` when the file must be opened for writing: it is `running`, or
/// a read-only open fails (a writer that died leaves the superblock's write flags set).
fn closed_properly(path: &Path) -> Option<RecoverOutcome> {
    let file = File::open(path).ok()?;
    crate::cloexec::close_on_exec(&file);
    let entry = file.group("entry").ok()?;
    let status = crate::reader::read_str_attr(&entry, "status").and_then(|s| RunStatus::from_name(&s))?;
    if status == RunStatus::Running {
        return None;
    }
    let rows = file.dataset("entry/data/time").map(|d| d.size() as u64).unwrap_or(0);
    Some(RecoverOutcome { status_before: status, changed: false, cleared_flag: false, rows, compacted: None })
}

/// See [`crate::recover`].
pub(crate) fn recover(path: &Path) -> Result<RecoverOutcome, StoreError> {
    if !path.exists() {
        return Err(StoreError::Io {
            path: path.to_path_buf(),
            during: "recovering".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    ensure_not_in_use(path)?;
    if let Some(outcome) = closed_properly(path) {
        return Ok(outcome);
    }
    let mut cleared_flag = false;
    let file = match File::open_rw(path) {
        Ok(f) => f,
        Err(first) => {
            // Most likely the flags of a writer that died; anything else (not HDF5, truncated,
            // no permission) fails again below and is reported with the first error.
            if let Err(source) = clear_status_flags(path) {
                return Err(StoreError::Hdf5 {
                    path: path.to_path_buf(),
                    during: format!("opening for recovery ({first}), then clearing the superblock status flags"),
                    source,
                });
            }
            cleared_flag = true;
            File::open_rw(path).map_err(h5err(path, "opening for recovery after clearing the status flags"))?
        }
    };
    crate::cloexec::close_on_exec(&file);
    let entry = file
        .group("entry")
        .map_err(|_| StoreError::Invalid { path: path.to_path_buf(), what: "no /entry group".into() })?;
    let status_before = crate::reader::read_str_attr(&entry, "status")
        .and_then(|s| RunStatus::from_name(&s))
        .unwrap_or(RunStatus::Running);
    let rows = file.dataset("entry/data/time").map(|d| d.size() as u64).unwrap_or(0);
    let changed = status_before == RunStatus::Running;
    if changed {
        let r = (|| -> hdf5::Result<()> {
            // The time goes into the reason, not a ninth attribute of /entry: that one would move
            // its attributes to dense storage, which the compaction below cannot copy.
            set_str_attr(&entry, "end_reason", &format!("ended without closing (recovered {})", now_iso()))?;
            file.flush()?;
            set_str_attr(&entry, "status", RunStatus::Failed.name())?;
            file.flush()
        })();
        r.map_err(h5err(path, "marking the file failed"))?;
    }
    drop(entry);
    drop(file);
    // Only a file this call marked: a file closed properly was compacted by its writer, and
    // recovering twice must change nothing.
    let compacted = if changed { crate::writer::compact(path) } else { None };
    Ok(RecoverOutcome { status_before, changed, cleared_flag, rows, compacted })
}
