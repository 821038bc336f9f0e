//! Reading a config file without trusting the path: regular files only, at most
//! [`MAX_CONFIG_BYTES`], and never a blocking open. A path may come from a client of the daemon
//! (`run.start` `config_path`) or a typo on the command line; `/dev/zero` must not make the reader
//! allocate without end, a FIFO must not park a thread, and a symlink must not lead out of the
//! directory the daemon confines client paths to.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Component, Path, PathBuf};

/// Largest config file (or inline config text) accepted, bytes (1 MiB). A run config is a few
/// KiB; even 10 000 explicit segments fit.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Why a config file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadConfigError {
    /// open/fstat/read failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A directory, device, FIFO or socket.
    #[error("it is {0}, not a regular file")]
    NotRegular(&'static str),
    /// Larger than [`MAX_CONFIG_BYTES`].
    #[error("it is larger than {limit} bytes, the limit for a config file")]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
    /// Not UTF-8 (TOML is UTF-8).
    #[error("it is not UTF-8 text")]
    NotUtf8,
    /// The path (or the file it leads to) is outside the allowed directory.
    #[error("it is not inside {0}")]
    OutsideDirectory(PathBuf),
}

/// Read a config file: open without blocking (`O_NONBLOCK`: a FIFO without a writer opens at
/// once), refuse anything `fstat` does not call a regular file, and read at most
/// [`MAX_CONFIG_BYTES`] + 1 bytes, so a file that grows while read is still refused.
pub fn read_config_file(path: &Path) -> Result<String, ReadConfigError> {
    read_config_file_within(path, None)
}

/// [`read_config_file`], and with `within`, also refuse a path that is not lexically inside that
/// directory (no `..`), or whose opened file is not inside its canonical form (a symlink out of
/// it). The lexical check comes first, so a refused path is never opened: a client cannot probe
/// which files outside the directory exist.
pub fn read_config_file_within(path: &Path, within: Option<&Path>) -> Result<String, ReadConfigError> {
    if let Some(dir) = within {
        let lexically_inside = path.is_absolute()
            && path.starts_with(dir)
            && !path.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir));
        if !lexically_inside {
            return Err(ReadConfigError::OutsideDirectory(dir.to_path_buf()));
        }
    }
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    let meta = file.metadata()?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(ReadConfigError::NotRegular(what));
    }
    if let Some(dir) = within {
        // What was actually opened, symlinks resolved by the kernel.
        let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let dir = std::fs::canonicalize(dir)?;
        if !real.starts_with(&dir) {
            return Err(ReadConfigError::OutsideDirectory(dir));
        }
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(ReadConfigError::TooLarge { limit: MAX_CONFIG_BYTES });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    read_limited(file, &mut bytes)?;
    String::from_utf8(bytes).map_err(|_| ReadConfigError::NotUtf8)
}

/// Read at most [`MAX_CONFIG_BYTES`] from any reader (stdin, a socket): more is refused.
pub fn read_config_text(reader: impl Read) -> Result<String, ReadConfigError> {
    let mut bytes = Vec::new();
    read_limited(reader, &mut bytes)?;
    String::from_utf8(bytes).map_err(|_| ReadConfigError::NotUtf8)
}

fn read_limited(reader: impl Read, bytes: &mut Vec<u8>) -> Result<(), ReadConfigError> {
    reader.take(MAX_CONFIG_BYTES + 1).read_to_end(bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ReadConfigError::TooLarge { limit: MAX_CONFIG_BYTES });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_reading_or_blocking() {
        let tmp = tempfile_dir();
        let dir = tmp.path().to_path_buf();
        // /dev/zero would never end; the check happens before the first byte is read.
        let e = read_config_file(Path::new("/dev/zero")).expect_err("device");
        assert!(matches!(e, ReadConfigError::NotRegular("a character device")), "{e}");
        // A FIFO with no writer: a blocking open would never return.
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        let e = read_config_file(&fifo).expect_err("fifo");
        assert!(matches!(e, ReadConfigError::NotRegular("a FIFO")), "{e}");
        let e = read_config_file(&dir).expect_err("directory");
        assert!(matches!(e, ReadConfigError::NotRegular("a directory")), "{e}");
    }

    #[test]
    fn a_file_over_one_mib_is_refused_and_one_at_the_limit_is_read() {
        let tmp = tempfile_dir();
        let dir = tmp.path().to_path_buf();
        let big = dir.join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize + 1]).expect("write");
        assert!(matches!(read_config_file(&big), Err(ReadConfigError::TooLarge { .. })));
        std::fs::write(&big, vec![b'#'; MAX_CONFIG_BYTES as usize]).expect("write");
        assert_eq!(read_config_file(&big).expect("at the limit").len(), MAX_CONFIG_BYTES as usize);
        // The same limit on a stream (stdin), whose size nobody knows in advance.
        let e = read_config_text(std::io::repeat(b'#')).expect_err("endless stream");
        assert!(matches!(e, ReadConfigError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn confinement_refuses_dot_dot_and_symlinks_out_of_the_directory() {
        let tmp = tempfile_dir();
        let dir = tmp.path().to_path_buf();
        let inside = dir.join("runs");
        std::fs::create_dir(&inside).expect("mkdir");
        std::fs::write(inside.join("ok.toml"), "x = 1\n").expect("write");
        std::fs::write(dir.join("secret.toml"), "x = 2\n").expect("write");
        assert_eq!(read_config_file_within(&inside.join("ok.toml"), Some(&inside)).expect("inside"), "x = 1\n");
        let e = read_config_file_within(&inside.join("../secret.toml"), Some(&inside)).expect_err("..");
        assert!(matches!(e, ReadConfigError::OutsideDirectory(_)), "{e}");
        std::os::unix::fs::symlink(dir.join("secret.toml"), inside.join("link.toml")).expect("symlink");
        let e = read_config_file_within(&inside.join("link.toml"), Some(&inside)).expect_err("symlink out");
        assert!(matches!(e, ReadConfigError::OutsideDirectory(_)), "{e}");
        let e = read_config_file_within(Path::new("/etc/passwd"), Some(&inside)).expect_err("elsewhere");
        assert!(matches!(e, ReadConfigError::OutsideDirectory(_)), "{e}");
    }

    fn tempfile_dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    fn mkfifo(p: &Path) {
        let status = std::process::Command::new("mkfifo").arg(p).status().expect("mkfifo runs");
        assert!(status.success(), "mkfifo failed");
    }
}
