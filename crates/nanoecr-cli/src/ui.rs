//! `nanoecr ui`: the live view in the browser. Thin: checks the options, binds 127.0.0.1, prints
//! the URL as the first line of stdout and serves `nanoecr-ui` until interrupted.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `nanoecr ui`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Socket path of nanoecrd (default: $XDG_RUNTIME_DIR/nanoecr/nanoecrd.sock, else
    /// /run/nanoecr/nanoecrd.sock).
    #[arg(long, env = "NANOECR_SOCKET")]
    pub socket: Option<PathBuf>,
    /// TCP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Directory of run configs (*.toml) the page offers to start.
    #[arg(long)]
    pub configs: Option<PathBuf>,
    /// Open the page in the default browser (xdg-open).
    #[arg(long)]
    pub open: bool,
    /// Serve without a token. Refused unless nanoecrd's socket is private (owned by you, no
    /// group or other permissions).
    #[arg(long)]
    pub no_token: bool,
}

/// Why `--no-token` is refused for this socket, if it is.
fn not_private(socket: &Path) -> Option<String> {
    let meta = match std::fs::metadata(socket) {
        Ok(m) => m,
        Err(e) => return Some(format!("cannot inspect {}: {e}", socket.display())),
    };
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Some(format!("{} belongs to uid {}, not to you (uid {uid})", socket.display(), meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return Some(format!("{} has mode {:o}: group or others may use it", socket.display(), meta.mode() & 0o777));
    }
    None
}

/// Run the command.
pub fn exec(a: Args) -> anyhow::Result<ExitCode> {
    let socket = a.socket.clone().unwrap_or_else(nanoecr_daemon::server::config::default_socket_path);
    if a.no_token {
        if let Some(why) = not_private(&socket) {
            eprintln!("error: --no-token refused: {why}");
            return Ok(ExitCode::from(crate::client::EXIT_REFUSED));
        }
        eprintln!(
            "warning: serving without a token: any process on this machine that can reach 127.0.0.1 can use the page"
        );
    }
    if let Some(dir) = &a.configs {
        anyhow::ensure!(dir.is_dir(), "--configs {}: not a directory", dir.display());
    }
    let token = (!a.no_token).then(nanoecr_ui::random_token);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = nanoecr_ui::bind(a.port).await?;
        let addr = listener.local_addr().context("the bound address")?;
        let url = nanoecr_ui::url(addr, token.as_deref());
        // The first line of stdout is the URL, for scripts and tests.
        println!("{url}");
        std::io::stdout().flush().ok();
        eprintln!("serving the live view of nanoecrd at {} (Ctrl-C to stop)", socket.display());
        if a.open {
            if let Err(e) = std::process::Command::new("xdg-open").arg(&url).spawn() {
                eprintln!("warning: cannot open a browser (xdg-open: {e}); open the URL above yourself");
            }
        }
        let cfg = nanoecr_ui::UiConfig { socket, configs_dir: a.configs, token };
        tokio::select! {
            r = nanoecr_ui::serve(cfg, listener) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
