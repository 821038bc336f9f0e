//! Client commands that talk to nanoecrd (being built; see docs/socket-protocol.md).

use std::process::ExitCode;

/// Options shared by every client command.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Socket path of nanoecrd.
    #[arg(long, env = "NANOECR_SOCKET")]
    pub socket: Option<std::path::PathBuf>,
}

/// Arguments of `nanoecr submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Run config (TOML), or `-` for stdin.
    pub config: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

fn unavailable() -> anyhow::Result<ExitCode> {
    anyhow::bail!("the daemon client is not available in this build yet")
}

/// `nanoecr submit`.
pub fn submit(_a: SubmitArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
/// `nanoecr status`.
pub fn status(_a: CommonArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
/// `nanoecr abort`.
pub fn abort(_a: CommonArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
/// `nanoecr watch`.
pub fn watch(_a: CommonArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
/// `nanoecr runs`.
pub fn runs(_a: CommonArgs) -> anyhow::Result<ExitCode> {
    unavailable()
}
