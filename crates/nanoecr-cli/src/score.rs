//! `nanoecr score` (being built; see docs/architecture.md).

use std::process::ExitCode;

/// Arguments of `nanoecr score`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run files.
    pub files: Vec<std::path::PathBuf>,
}

/// Run the command.
pub fn exec(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("nanoecr score is not available in this build yet")
}
