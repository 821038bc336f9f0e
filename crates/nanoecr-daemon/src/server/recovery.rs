//! Start-up recovery: run files left `running` in the output directory by a crash (of the
//! daemon, the machine, or the power) are made readable and marked `failed`, every flushed
//! sample kept. Runs before the socket accepts anything, so no live run can be mistaken for a
//! crashed one.

use std::path::Path;

use nanoecr_core::RunStatus;
use nanoecr_proto::methods::RunRecord;

/// Recover every `*.h5` directly in `dir` that is still `running`; returns what was recovered,
/// newest first (by modification time).
pub fn recover_dir(dir: &Path) -> Vec<RunRecord> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot scan the output directory for crashed runs");
            return Vec::new();
        }
    };
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "h5") && p.is_file())
        .map(|p| (std::fs::metadata(&p).and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), p))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut out = Vec::new();
    for (_, path) in files {
        match nanoecr_store::recover(&path) {
            Ok(o) if o.changed => {
                tracing::warn!(
                    file = %path.display(),
                    rows = o.rows,
                    cleared_flag = o.cleared_flag,
                    "recovered a run left running by a crash; marked failed"
                );
                out.push(RunRecord {
                    run_id: None,
                    file: path.display().to_string(),
                    status: RunStatus::Failed,
                    started_at: None,
                    ended_at: None,
                    end_reason: Some("ended without closing (recovered at daemon start)".into()),
                    summary: None,
                });
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot check or recover a run file"),
        }
    }
    out
}
