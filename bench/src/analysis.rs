//! `nanoecr analyze` on a campaign: the paper's load steps (500–6000 µN), the paper's program
//! (2 s settle + 10/10/10 s at 1 kHz, 32 000 samples a run), one seed per run; `analyze
//! --redetect --json` on one of those runs; and the read side alone: every sample column of a
//! paper-length 100 kHz run read by nanoecr-store (chunks decoded off the HDF5 lock on every
//! core) against libhdf5's own `H5Dread`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use toml_edit::Value;

use crate::report::median;
use crate::report::Row;
use crate::{child, configs, e2e};

/// Target of the read side: uncompressed column data per second, chunk read + inflate.
const TARGET_READ_GB_S: f64 = 1.0;
/// Target of one 32 s run, `analyze --redetect --json`, wall.
const TARGET_ONE_RUN_S: f64 = 0.020;
/// Target of the 100-run paper-length campaign, `analyze --json --out-dir`, wall (issue 11).
const TARGET_CAMPAIGN_S: f64 = 3.0;
/// Peak RSS of the 100-run campaign before issue 11 (docs/performance.md): "no worse".
const TARGET_CAMPAIGN_RSS_MIB: f64 = 40.0;

/// CPU time (user + system) of this process so far, all threads, s.
fn cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(f64::NAN, |u| {
        let t = |v: nix::sys::time::TimeVal| v.tv_sec() as f64 + v.tv_usec() as f64 * 1e-6;
        t(u.user_time()) + t(u.system_time())
    })
}

/// Every column under `/entry/data` through libhdf5 (`H5Dread`, inflate inside the library).
fn read_columns_libhdf5(path: &Path) -> Result<usize> {
    let file = hdf5::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let g = file.group("entry/data").context("no /entry/data")?;
    let mut n = 0;
    for name in g.member_names().context("listing /entry/data")? {
        let ds = g.dataset(&name).with_context(|| format!("/entry/data/{name}"))?;
        n += match ds.dtype().map(|t| t.size()).unwrap_or(0) {
            1 => ds.read_raw::<u8>().map(|v| v.len()),
            _ if name == "sequence" => ds.read_raw::<u64>().map(|v| v.len()),
            _ => ds.read_raw::<f64>().map(|v| v.len()),
        }
        .with_context(|| format!("reading /entry/data/{name}"))?;
    }
    Ok(n)
}

/// The read side: one 100 kHz run's columns read `reps` times each way; rows in GB/s of
/// uncompressed column data, with the process's CPU time per read next to the wall time.
fn read_rows(quick: bool, tmp: &Path) -> Result<(Vec<Row>, serde_json::Value)> {
    let seg_s = if quick { 3.0 } else { 10.0 };
    let rate_hz = 100_000.0;
    let mut edits = configs::program(rate_hz, 2.0, seg_s);
    edits.push(configs::whole_run_ring(rate_hz * (2.0 + 3.0 * seg_s)));
    let text = configs::derive(&configs::demo_text()?, &edits)?;
    let cfg = configs::write(tmp, "read_100k.toml", &text)?;
    let file = tmp.join("read_100k.h5");
    eprintln!("   analysis: simulating a 100 kHz run (2 s + 3 × {seg_s} s) for the read side");
    e2e::run_in_process(&cfg, &file, true)?;
    let (raw, stored, columns) = e2e::column_bytes(&file)?;
    let reps = if quick { 3 } else { 7 };
    let (mut fast, mut fast_cpu, mut lib, mut lib_cpu) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let (t, c) = (Instant::now(), cpu_s());
        let rf = nanoecr_store::read_run(&file).with_context(|| format!("reading {}", file.display()))?;
        fast.push(t.elapsed().as_secs_f64());
        fast_cpu.push(cpu_s() - c);
        anyhow::ensure!(!rf.data.is_empty(), "no samples read back");
        let (t, c) = (Instant::now(), cpu_s());
        read_columns_libhdf5(&file)?;
        lib.push(t.elapsed().as_secs_f64());
        lib_cpu.push(cpu_s() - c);
    }
    let _ = std::fs::remove_file(&file);
    let gb_s = |t: &[f64]| t.iter().map(|t| raw as f64 / t / 1e9).collect::<Vec<f64>>();
    let what = format!(
        "{columns} columns of a 100 kHz run, {:.1} MB uncompressed ({:.1} MB stored, shuffle + deflate)",
        raw as f64 / 1e6,
        stored as f64 / 1e6
    );
    let rows = vec![
        Row::new("analysis", "chunk read + inflate, nanoecr-store (off the HDF5 lock, all cores)", "GB/s", gb_s(&fast))
            .target(format!("≥ {TARGET_READ_GB_S} GB/s"), |v| v >= TARGET_READ_GB_S)
            .note(format!(
                "{what}; {:.1} ms wall, {:.1} ms CPU per read (medians); whole read_run",
                median(&fast) * 1e3,
                median(&fast_cpu) * 1e3
            )),
        Row::new("analysis", "the same through libhdf5 (H5Dread, inflate inside the library)", "GB/s", gb_s(&lib))
            .note(format!(
                "{:.1} ms wall, {:.1} ms CPU per read (medians)",
                median(&lib) * 1e3,
                median(&lib_cpu) * 1e3
            )),
    ];
    let json = serde_json::json!({
        "file": what, "uncompressed_bytes": raw, "stored_bytes": stored,
        "store_wall_s": fast, "store_cpu_s": fast_cpu, "libhdf5_wall_s": lib, "libhdf5_cpu_s": lib_cpu,
    });
    Ok((rows, json))
}

/// Write `n` simulated runs (in-process, `--fast`) into `dir`; returns their paths.
pub fn campaign(tmp: &Path, dir: &Path, n: usize) -> Result<Vec<PathBuf>> {
    let base = configs::demo_text()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let peak_un = 500.0 * (1 + i % 12) as f64;
        let text = configs::derive(
            &base,
            &[
                ("load_function", "peak_load_un", Value::from(peak_un)),
                ("simulation", "seed", Value::from(1000 + i as i64)),
                configs::whole_run_ring(32_000.0),
            ],
        )?;
        let cfg = configs::write(tmp, "campaign.toml", &text)?;
        let out = dir.join(format!("run{i:03}_{peak_un}uN.h5"));
        e2e::run_in_process(&cfg, &out, true)?;
        files.push(out);
    }
    Ok(files)
}

/// The campaign's wall-time and peak-RSS rows; judged against issue 11's targets (≤ 3 s, no
/// worse than 40 MiB) only at the full 100 runs: `--quick`'s 20 runs carry no verdict.
fn campaign_rows(n: usize, what: &str, wall: &[f64], rss: &[f64], quick: bool) -> [Row; 2] {
    let mut w = Row::new("analysis", format!("nanoecr analyze, {n}-run campaign: wall time"), "s", wall.to_vec())
        .note(format!("{what}; --json --out-dir (fits, plots, report)"));
    let mut r = Row::new("analysis", format!("nanoecr analyze, {n}-run campaign: peak RSS"), "MiB", rss.to_vec());
    if !quick {
        w = w.target(format!("≤ {TARGET_CAMPAIGN_S} s"), |v| v <= TARGET_CAMPAIGN_S);
        r = r.target(format!("≤ {TARGET_CAMPAIGN_RSS_MIB} MiB (no worse)"), |v| v <= TARGET_CAMPAIGN_RSS_MIB);
    }
    [w, r]
}

/// The analysis section.
pub fn section(quick: bool, tmp: &Path) -> Result<(Vec<Row>, serde_json::Value)> {
    let bin = child::nanoecr_bin()?;
    let n = if quick { 20 } else { 100 };
    let reps = if quick { 1 } else { 3 };
    let dir = tmp.join("campaign");
    eprintln!("   analysis: simulating {n} runs");
    let files = campaign(tmp, &dir, n)?;
    let mut wall = Vec::new();
    let mut rss = Vec::new();
    for i in 0..reps {
        let out = tmp.join(format!("analysis_out_{i}"));
        let mut args: Vec<String> = vec!["analyze".into()];
        args.extend(files.iter().map(|f| f.display().to_string()));
        args.extend(["--json".into(), "--out-dir".into(), out.display().to_string()]);
        eprintln!("   analysis: nanoecr analyze on {n} files, run {}/{reps}", i + 1);
        let rep = child::measure(&bin, &args)?;
        wall.push(rep.wall_s);
        rss.push(rep.max_rss_mib());
    }
    // One run of the campaign (the 6000 µN step: the most events), as a user analyses one file.
    let one = files.get(11).or(files.last()).context("no campaign runs")?.display().to_string();
    let (mut one_wall, mut one_cpu) = (Vec::new(), Vec::new());
    for i in 0..reps.max(5) {
        eprintln!("   analysis: nanoecr analyze --redetect --json on one run, {}/{}", i + 1, reps.max(5));
        let rep = child::measure(&bin, &["analyze".into(), "--redetect".into(), "--json".into(), one.clone()])?;
        one_wall.push(rep.wall_s);
        one_cpu.push(rep.cpu_s);
    }
    let what = format!(
        "{n} simulated runs: 500–6000 µN in 500 µN steps, 2 s settle + 10/10/10 s at 1 kHz (32 k samples each)"
    );
    let [wall_row, rss_row] = campaign_rows(n, &what, &wall, &rss, quick);
    let mut rows = vec![
        Row::new("analysis", "nanoecr analyze --redetect --json, one 32 s run: wall time", "s", one_wall.clone())
            .target(format!("≤ {} ms", TARGET_ONE_RUN_S * 1e3), |v| v <= TARGET_ONE_RUN_S)
            .note(format!("6000 µN run of the campaign; CPU (user + sys) {:.1} ms (median)", median(&one_cpu) * 1e3)),
        wall_row,
        rss_row,
    ];
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    let (read, read_json) = read_rows(quick, tmp)?;
    rows.extend(read);
    Ok((
        rows,
        serde_json::json!({
            "runs": n, "wall_s": wall, "max_rss_mib": rss, "campaign": what,
            "one_run_wall_s": one_wall, "one_run_cpu_s": one_cpu, "read": read_json,
        }),
    ))
}
