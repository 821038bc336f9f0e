//! Wall time and peak resident memory of a child process.
//!
//! `getrusage(RUSAGE_CHILDREN).ru_maxrss` is the largest peak over *every* child a process has
//! waited for, so measuring several children one after another from the bench itself would
//! report the largest so far, not each one's. The bench therefore re-executes itself as a thin
//! wrapper (`--internal-measure -- CMD ARGS…`) that has exactly one child; the wrapper prints one
//! JSON line with that child's figures and its captured stdout.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What one child run cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildReport {
    /// Wall time from spawn to exit, s.
    pub wall_s: f64,
    /// Peak resident set size of the child, KiB (Linux reports `ru_maxrss` in KiB).
    pub max_rss_kib: u64,
    /// CPU time of the child, user + system, all its threads, s.
    #[serde(default)]
    pub cpu_s: f64,
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// The child's stdout.
    pub stdout: String,
}

impl ChildReport {
    /// Peak RSS in MiB.
    pub fn max_rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }
}

/// Wrapper side: run `cmd`, wait, print the [`ChildReport`] as JSON on stdout. The child's
/// stderr passes through.
pub fn wrapper_main(cmd: &[String]) -> Result<()> {
    let (prog, args) = cmd.split_first().context("--internal-measure needs a command after --")?;
    let t0 = Instant::now();
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {prog}"))?;
    let wall_s = t0.elapsed().as_secs_f64();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .context("getrusage(RUSAGE_CHILDREN)")?;
    let report = ChildReport {
        wall_s,
        max_rss_kib: u64::try_from(usage.max_rss()).unwrap_or(0),
        cpu_s: [usage.user_time(), usage.system_time()]
            .iter()
            .map(|t| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6)
            .sum(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    };
    println!("{}", serde_json::to_string(&report).context("encoding the child report")?);
    Ok(())
}

/// Bench side: measure `prog args…` through the wrapper. Fails when the child fails.
pub fn measure(prog: &Path, args: &[String]) -> Result<ChildReport> {
    let me = std::env::current_exe().context("locating the bench binary")?;
    let out = Command::new(&me)
        .arg("--internal-measure")
        .arg("--")
        .arg(prog)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {} through the measuring wrapper", prog.display()))?;
    if !out.status.success() {
        bail!("measuring wrapper for {} failed ({})", prog.display(), out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("measuring wrapper printed nothing")?;
    let report: ChildReport = serde_json::from_str(line).context("parsing the measuring wrapper's report")?;
    if report.code != Some(0) {
        bail!("{} {} exited with {:?}", prog.display(), args.join(" "), report.code);
    }
    Ok(report)
}

/// The `nanoecr` CLI next to this binary, built first (release, quietly) so the figures are of
/// the current source: `cargo run -p nanoecr-bench` alone does not build other packages.
pub fn nanoecr_bin() -> Result<std::path::PathBuf> {
    static BUILT: std::sync::OnceLock<std::result::Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let me = std::env::current_exe().map_err(|e| format!("locating the bench binary: {e}"))?;
            let dir = me.parent().ok_or("bench binary has no directory")?;
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--release", "-q", "-p", "nanoecr-cli"])
                .current_dir(crate::configs::workspace_root())
                .status()
                .map_err(|e| format!("running cargo build -p nanoecr-cli: {e}"))?;
            if !status.success() {
                return Err(format!("cargo build -p nanoecr-cli failed: {status}"));
            }
            let bin = dir.join("nanoecr");
            if bin.is_file() {
                Ok(bin)
            } else {
                Err(format!("{} not found after building", bin.display()))
            }
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}
