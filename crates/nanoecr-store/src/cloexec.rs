//! Close-on-exec for the descriptors libhdf5 opens.
//!
//! libhdf5's default (sec2) driver opens files with `open(2)` and no `O_CLOEXEC` (flags
//! `0100002` in `/proc/<pid>/fdinfo` on a `nanoecr run`), so any child a process starts while a
//! run file is open inherits the descriptor, and with it the file's `flock`, for the child's whole
//! life: a later `recover` finds the file in use, or an h5py reader fails with "unable to lock
//! file, errno = 11" (both seen in this project's tests). Every file this crate opens goes
//! through [`close_on_exec`] right after the open, so a child keeps the descriptor only from its
//! `fork` to its `exec`, never for its life.

use std::ffi::c_void;

use hdf5::plist::file_access::FileDriver;

/// Marks the descriptor libhdf5 holds for `file` close-on-exec. A file on another driver than
/// sec2 (whose handle is not a descriptor) is left alone; a failure is logged, never fatal: the
/// file is open and usable either way, only a child would inherit it.
pub(crate) fn close_on_exec(file: &hdf5::File) {
    if let Err(error) = try_close_on_exec(file) {
        tracing::warn!(%error, "cannot mark the HDF5 file's descriptor close-on-exec; a child process would inherit it");
    }
}

#[allow(unsafe_code)] // one call into the HDF5 C API that hdf5-metno does not wrap, and a read of the int it points at
fn try_close_on_exec(file: &hdf5::File) -> Result<(), String> {
    let fapl = file.access_plist().map_err(|e| e.to_string())?;
    if !matches!(fapl.get_driver().map_err(|e| e.to_string())?, FileDriver::Sec2) {
        return Ok(());
    }
    let fd = hdf5::sync::sync(|| {
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: `file` and `fapl` are live ids; the library writes one pointer into `handle`,
        // which for the sec2 driver (checked above) points at the driver's `int fd` and stays
        // valid while the file is open. The library lock is held (`sync`).
        hdf5::h5check(unsafe { hdf5_sys::h5f::H5Fget_vfd_handle(file.id(), fapl.id(), &raw mut handle) })
            .map_err(|e| e.to_string())?;
        if handle.is_null() {
            return Err("libhdf5 returned no file handle".to_string());
        }
        // SAFETY: non-null, and an `int` for sec2 (H5FDsec2.c: `*file_handle = &(file->fd)`).
        Ok(unsafe { *handle.cast::<std::ffi::c_int>() })
    })?;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
        .map(drop)
        .map_err(|e| format!("fcntl(F_SETFD, FD_CLOEXEC) on descriptor {fd}: {e}"))
}
