//! `nanoecr recover`: make run files left `running` by a crash readable and mark them `failed`,
//! keeping every flushed sample (nanoecrd does the same for its output directory at start).

use std::process::ExitCode;

use nanoecr_core::RunStatus;

/// Arguments of `nanoecr recover`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run files.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
}

/// Run the command. Exit 0 when every file is readable afterwards, 1 when any could not be
/// recovered (each is reported).
pub fn exec(args: Args) -> anyhow::Result<ExitCode> {
    let mut failures = 0;
    for path in &args.files {
        match nanoecr_store::recover(path) {
            Ok(o) if o.changed => println!(
                "{}: was {} → marked failed ({} rows kept{}{})",
                path.display(),
                o.status_before,
                o.rows,
                if o.cleared_flag { ", superblock flag cleared" } else { "" },
                o.compacted.map_or(String::new(), |(a, b)| format!(", compacted {a} → {b} bytes"))
            ),
            Ok(o) => {
                let note = if o.status_before == RunStatus::Running { " (still running?)" } else { "" };
                println!("{}: {} with {} rows; unchanged{note}", path.display(), o.status_before, o.rows);
            }
            Err(e) => {
                eprintln!("{}: cannot recover: {e}", path.display());
                failures += 1;
            }
        }
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
