//! nanoecrd's own configuration (config/nanoecrd.toml): where the socket lives and who may use
//! it, where runs go, how many recent runs to remember, site ceilings on run limits, and how
//! patient to be with slow subscribers. Raw (as written, `deny_unknown_fields`) → validated
//! [`DaemonConfig`], like the run config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a daemon config was refused.
#[derive(Debug, thiserror::Error)]
pub enum DaemonConfigError {
    /// The file could not be read (missing, unreadable, not a regular file, over 1 MiB).
    #[error("{path}: cannot read daemon config: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: nanoecr_core::config::ReadConfigError,
    },
    /// Not valid TOML, or an unknown key or wrong type.
    #[error("{file}:{message}")]
    Syntax {
        /// The file (or `<inline>`).
        file: String,
        /// `LINE: message` (after `{file}:`), the key dotted; one line.
        message: String,
    },
    /// A value out of range.
    #[error("{file}: `{key}` = {value}: {message}")]
    Invalid {
        /// The file (or `<inline>`).
        file: String,
        /// Dotted key.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemonConfig {
    #[serde(default)]
    socket: RawSocket,
    #[serde(default)]
    output: RawOutput,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    subscribers: RawSubscribers,
    #[serde(default)]
    run_configs: RawRunConfigs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunConfigs {
    directory: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSocket {
    path: Option<PathBuf>,
    mode: Option<String>,
    group: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    directory: Option<PathBuf>,
    recent_runs: Option<usize>,
    recover_at_start: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_load_un: Option<f64>,
    max_displacement_nm: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubscribers {
    queue_lines: Option<usize>,
    stall_timeout_s: Option<f64>,
    max_clients: Option<usize>,
}

/// The group whose members may use the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedGroup {
    /// Its name, as configured.
    pub name: String,
    /// Its id.
    pub gid: u32,
}

/// A validated daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Socket path.
    pub socket_path: PathBuf,
    /// Permission bits of the socket file (default 0o660).
    pub socket_mode: u32,
    /// Members of this group may connect (besides the daemon's own user and root).
    pub allowed_group: Option<AllowedGroup>,
    /// Default output directory for run files.
    pub out_dir: PathBuf,
    /// How many finished runs `runs.list` remembers.
    pub recent_runs: usize,
    /// Scan the output directory for files left `running` by a crash at start and recover them.
    pub recover_at_start: bool,
    /// Site ceiling on a run's `limits.max_load_un`, µN.
    pub max_load_ceiling_un: Option<f64>,
    /// Site ceiling on a run's `limits.max_displacement_nm`, nm.
    pub max_displacement_ceiling_nm: Option<f64>,
    /// Lines queued per client before it counts as stalled.
    pub queue_lines: usize,
    /// A subscriber stalled this long is dropped.
    pub stall_timeout: Duration,
    /// Connections accepted at once; more are refused with an error.
    pub max_clients: usize,
    /// The only directory `run.start` `config_path` may name a file in (canonical, absolute);
    /// `None`, the default, refuses `config_path` altogether (inline `config_toml` only), so a
    /// client can neither make the daemon read an arbitrary file nor probe which exist.
    pub run_config_dir: Option<PathBuf>,
    /// Where rig locks live (one master per rig; [`crate::riglock::default_dir`]).
    pub lock_dir: PathBuf,
}

impl DaemonConfig {
    /// Defaults: socket at [`default_socket_path`], mode 0660, no extra group, runs in
    /// `./runs`, 50 recent runs, recovery on, no ceilings, 1024 lines per client, 5 s stall.
    pub fn defaults() -> Self {
        Self {
            socket_path: default_socket_path(),
            socket_mode: 0o660,
            allowed_group: None,
            out_dir: PathBuf::from("runs"),
            recent_runs: 50,
            recover_at_start: true,
            max_load_ceiling_un: None,
            max_displacement_ceiling_nm: None,
            queue_lines: 1024,
            stall_timeout: Duration::from_secs(5),
            max_clients: 256,
            run_config_dir: None,
            lock_dir: crate::riglock::default_dir(),
        }
    }

    /// Read and validate a file (a regular file of at most 1 MiB, read without blocking; see
    /// [`nanoecr_core::config::read_config_file`]).
    pub fn load(path: &Path) -> Result<Self, DaemonConfigError> {
        let text = nanoecr_core::config::read_config_file(path)
            .map_err(|source| DaemonConfigError::Io { path: path.to_path_buf(), source })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and validate TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, DaemonConfigError> {
        let raw: RawDaemonConfig = toml::from_str(text)
            .map_err(|e| DaemonConfigError::Syntax { file: file.into(), message: one_line(text, &e) })?;
        let invalid = |key: &str, value: &dyn std::fmt::Display, message: &str| DaemonConfigError::Invalid {
            file: file.into(),
            key: key.into(),
            value: value.to_string(),
            message: message.into(),
        };
        let mut c = Self::defaults();
        if let Some(p) = raw.socket.path {
            c.socket_path = p;
        }
        if let Some(m) = raw.socket.mode {
            let digits = m.trim_start_matches("0o");
            c.socket_mode = u32::from_str_radix(digits, 8).ok().filter(|v| *v <= 0o777).ok_or_else(|| {
                invalid("socket.mode", &format!("{m:?}"), "expected octal permission bits, e.g. \"0660\"")
            })?;
        }
        if let Some(g) = raw.socket.group {
            let group = nix::unistd::Group::from_name(&g)
                .ok()
                .flatten()
                .ok_or_else(|| invalid("socket.group", &format!("{g:?}"), "no such group on this system"))?;
            c.allowed_group = Some(AllowedGroup { name: g, gid: group.gid.as_raw() });
        }
        if let Some(d) = raw.output.directory {
            c.out_dir = d;
        }
        if let Some(n) = raw.output.recent_runs {
            c.recent_runs = n;
        }
        if let Some(r) = raw.output.recover_at_start {
            c.recover_at_start = r;
        }
        for (key, v) in [
            ("limits.max_load_un", raw.limits.max_load_un),
            ("limits.max_displacement_nm", raw.limits.max_displacement_nm),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(invalid(key, &v, "a ceiling must be a positive, finite number"));
                }
            }
        }
        c.max_load_ceiling_un = raw.limits.max_load_un;
        c.max_displacement_ceiling_nm = raw.limits.max_displacement_nm;
        if let Some(q) = raw.subscribers.queue_lines {
            if q < 16 {
                return Err(invalid("subscribers.queue_lines", &q, "expected at least 16 lines"));
            }
            c.queue_lines = q;
        }
        if let Some(s) = raw.subscribers.stall_timeout_s {
            if !(s.is_finite() && s > 0.0 && s <= 3600.0) {
                return Err(invalid("subscribers.stall_timeout_s", &s, "expected 0 < s ≤ 3600"));
            }
            c.stall_timeout = Duration::from_secs_f64(s);
        }
        if let Some(m) = raw.subscribers.max_clients {
            if m == 0 {
                return Err(invalid("subscribers.max_clients", &m, "expected at least 1"));
            }
            c.max_clients = m;
        }
        if let Some(d) = raw.run_configs.directory {
            let shown = format!("{:?}", d.display().to_string());
            if !d.is_absolute() {
                return Err(invalid("run_configs.directory", &shown, "expected an absolute directory path"));
            }
            let canonical = std::fs::canonicalize(&d)
                .ok()
                .filter(|p| p.is_dir())
                .ok_or_else(|| invalid("run_configs.directory", &shown, "no such directory"))?;
            c.run_config_dir = Some(canonical);
        }
        Ok(c)
    }
}

/// `$XDG_RUNTIME_DIR/nanoecr/nanoecrd.sock` when that variable is set (a per-user daemon);
/// else, for root, `/run/nanoecr/nanoecrd.sock` (the system service; systemd's
/// `RuntimeDirectory=`); else, for any other user, `$TMPDIR/nanoecr-<uid>/nanoecrd.sock` (a
/// per-user directory, mode 0700), since only root may create /run/nanoecr. Clients use the same
/// rule, so a daemon and a client started by one user in one environment meet without flags.
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("nanoecr").join("nanoecrd.sock"),
        _ if nix::unistd::geteuid().is_root() => PathBuf::from("/run/nanoecr/nanoecrd.sock"),
        _ => std::env::temp_dir().join(format!("nanoecr-{}", nix::unistd::geteuid())).join("nanoecrd.sock"),
    }
}

/// toml's error as one log line, `LINE: message`, with an unknown key named by its dotted path
/// (`subscribers.queue_line`) as in a run config's errors: toml's own text spans five lines
/// (a source excerpt with a caret), which journald splits into five entries.
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().replace('\n', "; ");
    // Follows `{file}:` in the error: a space when there is no line to name.
    let Some(start) = e.span().map(|s| s.start.min(text.len())) else { return format!(" {msg}") };
    let line = text.as_bytes()[..start].iter().filter(|&&b| b == b'\n').count() + 1;
    let section = text
        .lines()
        .take(line - 1)
        .filter_map(|l| {
            let t = l.split('#').next().unwrap_or("").trim();
            t.strip_prefix('[').and_then(|r| r.strip_suffix(']')).map(|s| s.trim().to_string())
        })
        .last();
    match (msg.strip_prefix("unknown field `").and_then(|r| r.split_once('`')), section) {
        (Some((key, rest)), Some(sec)) => format!("{line}: `{sec}.{key}`: unknown key{rest}"),
        (Some((key, rest)), None) => format!("{line}: `{key}`: unknown key{rest}"),
        _ => format!("{line}: {msg}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../../config/nanoecrd.toml");
        let c = DaemonConfig::parse(text, "config/nanoecrd.toml").expect("example config is valid");
        assert_eq!(c.socket_mode, 0o660);
        assert!(c.recent_runs > 0);
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = DaemonConfig::parse("[socket]\nmode = \"0999\"\n", "x.toml").expect_err("invalid");
        assert!(e.to_string().contains("socket.mode"), "{e}");
        let e = DaemonConfig::parse("[socket]\nmodes = \"0660\"\n", "x.toml").expect_err("unknown key");
        assert!(e.to_string().contains("modes"), "{e}");
        // One line naming file, line and dotted key (it was toml's five-line excerpt).
        let e = DaemonConfig::parse("[output]\nrecent_runs = 5\n\n[subscribers]\nqueue_line = 10\n", "x.toml")
            .expect_err("unknown key")
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.starts_with("x.toml:5: `subscribers.queue_line`: unknown key"), "{e}");
        assert!(e.contains("`queue_lines`"), "{e}");
        let e = DaemonConfig::parse("[limits]\nmax_load_un = -1.0\n", "x.toml").expect_err("negative");
        assert!(e.to_string().contains("limits.max_load_un"), "{e}");
        let e = DaemonConfig::parse("[run_configs]\ndirectory = \"rel\"\n", "x.toml").expect_err("relative");
        assert!(e.to_string().contains("run_configs.directory"), "{e}");
    }

    #[test]
    fn config_path_is_off_unless_a_directory_is_configured() {
        assert_eq!(DaemonConfig::defaults().run_config_dir, None);
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("[run_configs]\ndirectory = {:?}\n", dir.path().display().to_string());
        let c = DaemonConfig::parse(&text, "x.toml").expect("valid");
        assert_eq!(c.run_config_dir, Some(std::fs::canonicalize(dir.path()).expect("canonical")));
    }

    #[test]
    fn a_device_or_fifo_as_daemon_config_is_refused_without_reading() {
        let e = DaemonConfig::load(Path::new("/dev/zero")).expect_err("device");
        assert!(e.to_string().contains("/dev/zero: cannot read daemon config: it is a character device"), "{e}");
    }
}
