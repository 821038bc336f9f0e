//! The socket file's life: create the directory, refuse to start over a live daemon, remove a
//! stale socket left by a crash, bind, set mode (and group), and remove the file on exit.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another daemon answers on the path.
    #[error("another nanoecrd is already listening on {0}; stop it first (or use --socket)")]
    InUse(PathBuf),
    /// Something that is not a socket sits at the path; we never delete it.
    #[error("{0} exists and is not a socket; refusing to remove it")]
    NotASocket(PathBuf),
    /// The socket's directory belongs to another user, who could swap the socket for another.
    #[error("the socket directory {path} belongs to uid {owner}, not to this user (uid {me}) or root; refusing to use it (choose another with --socket)")]
    ForeignDirectory {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The daemon's effective uid.
        me: u32,
    },
    /// The daemon's user may not create the socket (or its directory) there.
    #[error("{path}: {during}: permission denied; run nanoecrd as root for this path, or give one this user may create with --socket PATH (or `[socket] path`, or set XDG_RUNTIME_DIR)")]
    PermissionDenied {
        /// The path.
        path: PathBuf,
        /// What was being done.
        during: &'static str,
    },
    /// A system call failed.
    #[error("{path}: {during}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What was being done.
        during: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Removes the socket file when dropped (normal exit, error return); a crash leaves it, and the
/// next start clears it as stale.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket file");
            }
        }
    }
}

/// Bind the listening socket at `path` with `mode`, handing its group to `group` when set.
/// Must be called inside a tokio runtime.
pub fn bind(
    path: &Path,
    mode: u32,
    group: Option<u32>,
) -> Result<(tokio::net::UnixListener, SocketGuard), SocketError> {
    let io = |during: &'static str| {
        move |source: std::io::Error| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                SocketError::PermissionDenied { path: path.to_path_buf(), during }
            } else {
                SocketError::Io { path: path.to_path_buf(), during, source }
            }
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if dir.exists() {
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata(dir).map_err(io("inspecting the socket directory"))?.uid();
            let me = nix::unistd::geteuid().as_raw();
            if owner != me && owner != 0 {
                return Err(SocketError::ForeignDirectory { path: dir.to_path_buf(), owner, me });
            }
        } else {
            std::fs::create_dir_all(dir).map_err(io("creating the socket directory"))?;
            // Group members must reach the socket: rwx for the owner, x for the group.
            let dir_mode = if group.is_some() { 0o710 } else { 0o700 };
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))
                .map_err(io("setting directory mode"))?;
            if let Some(g) = group {
                nix::unistd::chown(dir, None, Some(nix::unistd::Gid::from_raw(g))).map_err(|e| SocketError::Io {
                    path: dir.to_path_buf(),
                    during: "chown of the socket directory",
                    source: e.into(),
                })?;
            }
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            // A live daemon answers; a stale socket refuses the connection.
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
                Err(_) => {
                    tracing::info!(path = %path.display(), "removing a stale socket left by a previous daemon");
                    std::fs::remove_file(path).map_err(io("removing the stale socket"))?;
                }
            }
        }
        Ok(_) => return Err(SocketError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("inspecting the socket path")(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io("binding"))?;
    let guard = SocketGuard { path: path.to_path_buf() };
    // Between bind and chmod the file has umask's mode; peer credentials guard that instant.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io("setting the socket mode"))?;
    if let Some(g) = group {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(g))).map_err(|e| SocketError::Io {
            path: path.to_path_buf(),
            during: "chown of the socket",
            source: e.into(),
        })?;
    }
    Ok((listener, guard))
}
