//! `nanoecr ui`: the live view in the browser. Thin: checks the options, binds 127.0.0.1 or a
//! private Unix socket, prints the URL as the first line of stdout and serves `nanoecr-ui` until
//! interrupted.

use std::io::Write;
use std::path::PathBuf;
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
    #[arg(long, default_value_t = 0, conflicts_with = "unix")]
    pub port: u16,
    /// Serve HTTP on this Unix socket instead of 127.0.0.1 (mode 0600, in a directory only you
    /// may enter; created 0700 if missing). Reach it with `ssh -L 8080:PATH host` or a reverse
    /// proxy.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Directory of run configs (*.toml) the page offers to start.
    #[arg(long)]
    pub configs: Option<PathBuf>,
    /// Open the page in the default browser (xdg-open; TCP only).
    #[arg(long, conflicts_with = "unix")]
    pub open: bool,
    /// Serve without a token. Only with --unix: 127.0.0.1 is reachable by every user of this
    /// machine, a private socket only by you.
    #[arg(long)]
    pub no_token: bool,
}

/// Run the command.
pub fn exec(a: Args) -> anyhow::Result<ExitCode> {
    let socket = a.socket.clone().unwrap_or_else(nanoecr_daemon::server::config::default_socket_path);
    if a.no_token && a.unix.is_none() {
        eprintln!(
            "error: --no-token refused: a page on 127.0.0.1 can be used by every user of this machine; \
             keep the token, or serve on a private socket with --unix PATH"
        );
        return Ok(ExitCode::from(crate::client::EXIT_REFUSED));
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
    let unix = a.unix.clone();
    let bound = unix.clone();
    rt.block_on(async move {
        let (listener, url) = match &bound {
            Some(path) => {
                let l = nanoecr_ui::bind_unix(path)?;
                (nanoecr_ui::Listener::Unix(l), nanoecr_ui::unix_url(path, token.as_deref()))
            }
            None => {
                let l = nanoecr_ui::bind(a.port).await?;
                let addr = l.local_addr().context("the bound address")?;
                (nanoecr_ui::Listener::Tcp(l), nanoecr_ui::url(addr, token.as_deref()))
            }
        };
        // The first line of stdout is the URL, for scripts and tests. The page is served
        // whatever became of the terminal (`println!` panicked on a closed stdout, SIGPIPE being
        // ignored here): a URL that cannot go to stdout goes to stderr, and lost stderr lines are
        // dropped.
        let printed = {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{url}").and_then(|()| out.flush())
        };
        if let Err(e) = printed {
            crate::run::say_err(&format!("the page is at {url} (stdout: {e})"));
        }
        crate::run::say_err(&format!("serving the live view of nanoecrd at {} (Ctrl-C to stop)", socket.display()));
        if let Some(path) = &bound {
            let query = token.as_deref().map(|t| format!("?token={t}")).unwrap_or_default();
            crate::run::say_err(&format!(
                "from your desktop: ssh -L 8080:{} <this host>, then open http://localhost:8080/{query}",
                path.display()
            ));
        }
        if a.open {
            if let Err(e) = std::process::Command::new("xdg-open").arg(&url).spawn() {
                crate::run::say_err(&format!(
                    "warning: cannot open a browser (xdg-open: {e}); open the URL above yourself"
                ));
            }
        }
        let cfg = nanoecr_ui::UiConfig { socket, configs_dir: a.configs, token };
        tokio::select! {
            r = nanoecr_ui::serve(cfg, listener) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })?;
    if let Some(path) = &unix {
        // Only ours: bind_unix made it; a later `nanoecr ui` would replace it anyway.
        let _ = std::fs::remove_file(path);
    }
    Ok(ExitCode::SUCCESS)
}
