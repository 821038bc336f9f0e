//! One master per rig: an advisory `flock` on a file named after the run config's
//! `[hardware] rig`, and, for real instruments, on one per device endpoint (the load frame's
//! `address:port` or serial path, the source-measure unit's serial path), held for the whole
//! run. A second `nanoecr run` or `nanoecrd` run on the same rig (or the same device under
//! another rig name) is refused with the holder's pid and command line, which the holder writes
//! into the lock file. The kernel drops a flock when its holder exits, however it exits, so a
//! crash never leaves the rig locked.
//!
//! The directory ([`default_dir`]): `NANOECR_LOCK_DIR` if set; else the system lock directory
//! `/run/lock` (FHS 3.0 §5.9, `/var/lock`: "lock files … stored within the /var/lock directory
//! structure"; Debian makes it root-owned, mode 1777) when it is root-owned and sticky — machine-wide,
//! files `nanoecr-rig-<name>.lock` and `nanoecr-dev-<endpoint>.lock`; else
//! `$XDG_RUNTIME_DIR/nanoecr/rigs`; else `$TMPDIR/nanoecr-<uid>/rigs`. The fallbacks are per-user:
//! they keep one user from driving a rig twice, not two users apart.
//!
//! Why not a directory of our own under /run: whoever creates a shared directory owns it, and the
//! sticky bit does not stop the directory's owner from deleting someone else's lock file (after
//! which a second master would lock a fresh file); and making `/run/nanoecr/…` from a client left
//! the daemon's socket directory with the umask's mode instead of its 0700. A root-owned sticky
//! directory has neither problem. A lock file another user made first and keeps unreadable makes
//! the run fail with a `cannot lock` error naming the file: it fails closed.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nanoecr_core::config::hardware::{Backend, SmuTransport, Transport};
use nanoecr_core::RunConfig;
use nix::fcntl::{Flock, FlockArg};

/// Why a rig could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum RigLockError {
    /// Another process holds it.
    #[error("{what} is in use by pid {pid} ({command}); one master per rig: stop that run first, or give this config another `[hardware] rig`")]
    Busy {
        /// `rig "default"` or `device 10.0.0.5:502`.
        what: String,
        /// The holder's pid, as it wrote it ("?" if unreadable).
        pid: String,
        /// The holder's command line.
        command: String,
    },
    /// The lock directory or file could not be made or opened.
    #[error("cannot lock {what} in {dir}: {source}")]
    Io {
        /// What was being locked.
        what: String,
        /// The lock directory.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Held locks; dropping it releases them.
#[derive(Debug)]
pub struct RigLock {
    _held: Vec<Flock<File>>,
}

/// The lock directory (see the module docs).
pub fn default_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NANOECR_LOCK_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let system = Path::new("/run/lock");
    if is_root_owned_sticky(system) {
        return system.to_path_buf();
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("nanoecr").join("rigs"),
        None => std::env::temp_dir().join(format!("nanoecr-{}", nix::unistd::geteuid())).join("rigs"),
    }
}

/// A directory every user may lock in without being able to delete another's lock file.
fn is_root_owned_sticky(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir() && m.uid() == 0 && m.mode() & 0o1000 != 0)
}

fn make_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    // The per-user fallbacks and NANOECR_LOCK_DIR: private unless the operator made it otherwise.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// What a run config must hold: its rig name, and its device endpoints for real hardware.
pub fn resources(cfg: &RunConfig) -> Vec<(String, String)> {
    let hw = &cfg.raw.hardware;
    let rig = hw.rig_name();
    // The prefix keeps our files apart from other programs' in the shared /run/lock.
    let mut out = vec![(format!("nanoecr-rig-{rig}"), format!("rig \"{rig}\""))];
    if hw.backend == Backend::Devices {
        let frame = match hw.loadframe.transport {
            Transport::Tcp => format!("{}:{}", hw.loadframe.address, hw.loadframe.port),
            Transport::Rtu => hw.loadframe.serial_path.clone().unwrap_or_default(),
        };
        let smu = match hw.smu.transport {
            SmuTransport::Tcp => format!("{}:{}", hw.smu.address.as_deref().unwrap_or_default(), hw.smu.port),
            SmuTransport::Usbtmc | SmuTransport::Serial => hw.smu.device_path().unwrap_or_default().to_string(),
        };
        for endpoint in [frame, smu].into_iter().filter(|e| !e.is_empty()) {
            // A device can be named two ways (a symlink to a tty); lock what it resolves to.
            let canonical = std::fs::canonicalize(&endpoint).map_or(endpoint.clone(), |p| p.display().to_string());
            let file: String = canonical.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            out.push((format!("nanoecr-dev-{file}"), format!("device {canonical}")));
        }
    }
    out.dedup();
    out
}

/// Lock every resource of `cfg` in `dir`, or none.
pub fn acquire(dir: &Path, cfg: &RunConfig) -> Result<RigLock, RigLockError> {
    let mut held = Vec::new();
    for (file, what) in resources(cfg) {
        let io = |source| RigLockError::Io { what: what.clone(), dir: dir.to_path_buf(), source };
        make_dir(dir).map_err(io)?;
        let path = dir.join(format!("{file}.lock"));
        let open = |write: bool| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(write)
                .create(write)
                .truncate(false)
                .mode(0o666)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
        };
        // Another user's file (the umask made it 0644): a read-only descriptor still takes the
        // flock, so the two users exclude each other; only the holder line is not rewritten.
        let f = match open(true) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => open(false),
            other => other,
        }
        .map_err(io)?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                // Who holds it, for the refusal of the next one.
                let me = format!("{}\n{}\n", std::process::id(), command_line());
                let written = lock.set_len(0).and_then(|()| lock.rewind()).and_then(|()| lock.write_all(me.as_bytes()));
                if let Err(e) = written {
                    tracing::warn!(path = %path.display(), error = %e, "cannot record this process as the rig's holder");
                }
                held.push(lock);
            }
            Err((mut f, errno)) if errno == nix::errno::Errno::EWOULDBLOCK => {
                let mut text = String::new();
                let _ = f.read_to_string(&mut text);
                let mut lines = text.lines();
                let pid = lines.next().filter(|l| !l.is_empty()).unwrap_or("?").to_string();
                let command = lines.next().filter(|l| !l.is_empty()).unwrap_or("command unknown").to_string();
                return Err(RigLockError::Busy { what, pid, command });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        }
    }
    Ok(RigLock { _held: held })
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> RunConfig {
        let demo = include_str!("../../../config/demo.toml");
        nanoecr_core::config::parse(&demo.replace("backend = \"sim\"", &format!("backend = \"sim\"\n{extra}")), None)
            .expect("valid config")
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_command_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = acquire(dir.path(), &cfg("")).expect("free rig");
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process would.
        let e = acquire(dir.path(), &cfg("")).expect_err("busy");
        let text = e.to_string();
        assert!(text.starts_with("rig \"default\" is in use by pid "), "{text}");
        assert!(text.contains(&format!("pid {} (", std::process::id())), "{text}");
        // Another rig name is another lock.
        let other = acquire(dir.path(), &cfg("rig = \"bay-2\"")).expect("another rig");
        drop(first);
        let again = acquire(dir.path(), &cfg("")).expect("released on drop");
        drop((other, again));
    }

    #[test]
    fn a_lock_file_this_user_may_only_read_still_excludes_a_second_master() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = acquire(dir.path(), &cfg("")).expect("free rig");
        // As if another user had made it with umask 022: the flock through a read-only
        // descriptor must still see the holder. (Root ignores file modes, so as root the
        // read-write open succeeds and this checks the same exclusion the other way.)
        let path = dir.path().join("nanoecr-rig-default.lock");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        let e = acquire(dir.path(), &cfg("")).expect_err("busy");
        assert!(e.to_string().contains(&format!("pid {} (", std::process::id())), "{e}");
        drop(first);
        let again = acquire(dir.path(), &cfg("")).expect("released on drop");
        drop(again);
    }

    #[test]
    fn the_system_lock_directory_is_used_only_when_root_owned_and_sticky() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        let root = nix::unistd::geteuid().is_root();
        // A sticky directory someone other than root made: its owner could delete lock files.
        assert_eq!(is_root_owned_sticky(dir.path()), root);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(!is_root_owned_sticky(dir.path()), "not sticky");
        assert!(!is_root_owned_sticky(&dir.path().join("missing")));
    }

    #[test]
    fn real_hardware_also_locks_each_device_endpoint() {
        let demo = include_str!("../../../config/demo.toml").replace("backend = \"sim\"", "backend = \"devices\"");
        let frame = "[hardware.loadframe]\naddress = \"127.0.0.1\"\nport = 1502\n";
        let resources_of = |smu: &str| -> Vec<String> {
            let c = nanoecr_core::config::parse(&format!("{demo}{frame}[hardware.smu]\n{smu}"), None)
                .expect("valid devices config");
            resources(&c).into_iter().map(|(_, what)| what).collect()
        };
        let serial = resources_of("model = \"nanoecr-scpi\"\ntransport = \"serial\"\nserial_path = \"/dev/null\"\n");
        assert_eq!(serial, ["rig \"default\"", "device 127.0.0.1:1502", "device /dev/null"]);
        // A meter on the LAN is locked by its address and port, as the frame is.
        let lan =
            resources_of("model = \"keithley-2450\"\ntransport = \"tcp\"\naddress = \"127.0.0.1\"\nport = 5025\n");
        assert_eq!(lan, ["rig \"default\"", "device 127.0.0.1:1502", "device 127.0.0.1:5025"]);
    }
}
