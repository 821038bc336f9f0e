//! Run configs derived from config/demo.toml for each measurement (longer programs, faster
//! rates), written into the bench's temporary directory so the CLI and the in-process pipeline
//! read the very same file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use toml_edit::{DocumentMut, Item, Value};

/// The workspace root: where `config/demo.toml` lives. The current directory when it has one
/// (`just bench`, `cargo run` from the root), else the directory above this package.
pub fn workspace_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if cwd.join("config/demo.toml").is_file() {
        return cwd;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or(cwd, Path::to_path_buf)
}

/// The demo config's text.
pub fn demo_text() -> Result<String> {
    let path = workspace_root().join("config/demo.toml");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// One edit: `[table] key = value`.
pub type Edit<'a> = (&'a str, &'a str, Value);

/// `base` with `edits` applied (tables created when missing); comments are kept.
pub fn derive(base: &str, edits: &[Edit<'_>]) -> Result<String> {
    let mut doc: DocumentMut = base.parse().context("parsing the base config")?;
    for (table, key, value) in edits {
        let t = doc.entry(table).or_insert_with(|| Item::Table(toml_edit::Table::new()));
        let t = t.as_table_mut().with_context(|| format!("[{table}] is not a table"))?;
        t.insert(key, Item::Value(value.clone()));
    }
    Ok(doc.to_string())
}

/// A program of `load_s` + `hold_s` + `unload_s` after `settle_s`, at `rate_hz`.
pub fn program(rate_hz: f64, settle_s: f64, segment_s: f64) -> Vec<Edit<'static>> {
    vec![
        ("acquisition", "rate_hz", Value::from(rate_hz)),
        ("acquisition", "settle_s", Value::from(settle_s)),
        ("load_function", "load_s", Value::from(segment_s)),
        ("load_function", "hold_s", Value::from(segment_s)),
        ("load_function", "unload_s", Value::from(segment_s)),
    ]
}

/// Write a derived config into `dir` and check that it validates.
pub fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    nanoecr_core::config::load(&path)
        .map_err(|e| anyhow::anyhow!("derived config {} is invalid: {e}", path.display()))?;
    Ok(path)
}

/// Load a config written by [`write()`].
pub fn load(path: &Path) -> Result<nanoecr_core::RunConfig> {
    nanoecr_core::config::load(path).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))
}

/// A ring that holds a whole `--fast` run of `samples`: with it the unpaced control loop can
/// never overrun the consumer, so files for detection comparisons have no gaps, and the wall
/// time of such a run is the consumer's sustained throughput.
pub fn whole_run_ring(samples: f64) -> Edit<'static> {
    let n = (samples * 1.05 + 1024.0).clamp(64.0, (1u64 << 26) as f64) as i64;
    ("acquisition", "ring_capacity_samples", Value::from(n))
}
