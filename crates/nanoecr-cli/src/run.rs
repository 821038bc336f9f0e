//! `nanoecr run`: a test in this process.

use std::process::ExitCode;

/// Arguments of `nanoecr run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run config (TOML).
    pub config: std::path::PathBuf,
}

/// Run the command.
pub fn exec(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
