//! The robustness matrix (issue 13): nanoecr's streaming detector and the Python peer
//! (bench/peers/peer.py) scored on every spike shape × noise family × sampling rate, against the
//! simulator's ground truth; writes its block of docs/accuracy.md.
//!
//! ```text
//! cargo run --release -p nanoecr-analysis --example matrix [-- --quick] [--out FILE.md] [--cells FILTER] [--misses]
//! ```
//! `--misses` prints, on stderr, every true spike with a sampled peak ≥ 7e-4 that nanoecr missed:
//! its sampled and true peak, duration, the detections and other true spikes near it, and the
//! samples around it (to find out why before changing the detector).
//! `--cells rate=1000,noise=mains,shape=boxcar` runs only the matching cells (any of the listed
//! values of a key; `noise` takes white, pink, mains, drift) and prints instead of writing unless
//! `--out` is given: a few minutes per family at full size, to iterate on a detector change.
//! Each run is simulated once: nanoecr detects it in stream, and the same samples go to a real
//! run file (nanoecr-store) that the peer reads with h5py, as a lab would. Both sides' events are
//! scored by the same code (`nanoecr_analysis::scoring`, onsets matched within 2 ms). The peer
//! needs python3 with h5py, numpy, scipy and powerlaw (scripts/setup.sh); `PYTHON` overrides the
//! interpreter. About ten minutes on 2 cores; `--quick` is a smoke run of a few seconds per cell
//! that prints instead of writing (unless `--out` is given). Every run is seeded.

#[path = "common/cell_run.rs"]
mod cell_run;
use cell_run::{run_config_text, PEAK_UN, SETTLE_S, VOLTAGE_V};
#[path = "common/docblock.rs"]
mod docblock;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use nanoecr_analysis::scoring::{report_from_counts, score_counts, ScoreCounts, ScoreOptions, ScoreReport};
use nanoecr_core::config::{parse, SpikeShape};
use nanoecr_core::diagnostics::Diagnostics;
use nanoecr_core::run::EndReason;
use nanoecr_core::{Event, EventKind, Sample, Segment};
use nanoecr_detect::Detector;
use nanoecr_sim::matrix::{sampled_truth, shape_name, spike_signal, NoiseFamily, DURATION_S, SHAPES};
use nanoecr_sim::World;
use nanoecr_store::{InstrumentInfo, RunWriter};

/// Samples handed to the detector and the writer at once.
const CHUNK: usize = 4096;

/// Targets of issue 13 for nanoecr on every cell.
const TARGET_RECALL_BIG: f64 = 0.97;
const TARGET_PRECISION: f64 = 0.98;
const TARGET_SIGN: f64 = 0.995;

/// Runs per cell and length of each of the three segments, s, per rate.
#[derive(Clone, Copy)]
struct RatePlan {
    rate_hz: f64,
    runs: u64,
    segment_s: f64,
}

const FULL: [RatePlan; 3] = [
    RatePlan { rate_hz: 1_000.0, runs: 10, segment_s: 10.0 },
    RatePlan { rate_hz: 10_000.0, runs: 4, segment_s: 10.0 },
    RatePlan { rate_hz: 100_000.0, runs: 2, segment_s: 10.0 },
];
const QUICK: [RatePlan; 3] = [
    RatePlan { rate_hz: 1_000.0, runs: 2, segment_s: 5.0 },
    RatePlan { rate_hz: 10_000.0, runs: 1, segment_s: 3.0 },
    RatePlan { rate_hz: 100_000.0, runs: 1, segment_s: 1.0 },
];

/// One cell's scores.
struct Cell {
    shape: SpikeShape,
    family: NoiseFamily,
    plan: RatePlan,
    ours: ScoreReport,
    peer: ScoreReport,
    /// Scored against the sampled peaks (only the magnitude-binned recalls differ).
    ours_sampled: ScoreReport,
    peer_sampled: ScoreReport,
    /// nanoecr's robust σ of the residual, mean over the cell's runs.
    sigma: f64,
}

/// One simulated run: nanoecr's events, the ground truth, and the ground truth with each spike's
/// magnitude replaced by its **sampled** peak (the largest same-sign value of the noiseless
/// spike signal at the sample times: what any detector can see at this rate).
struct SimRun {
    /// Mean of the detector's robust σ of the residual, read at every chunk once it is set.
    sigma_mean: f64,
    ours: Vec<Event>,
    truth: Vec<Event>,
    sampled: Vec<Event>,
    /// Every sample's Δρ/ρ as the detector returned it and the noiseless spike signal (kept only
    /// for `--misses`).
    delta_rho: Vec<f64>,
    signal: Vec<f64>,
}

/// Simulate one run: nanoecr detects in stream while the samples go to `path`.
fn simulate(text: &str, path: &Path) -> Result<SimRun> {
    let rc = parse(text, None).map_err(|e| anyhow::anyhow!("matrix run config: {e}"))?;
    let rate_hz = rc.rate_hz();
    let sim = &rc.raw.simulation;
    let mut world = World::try_new(sim, rc.pillar, rate_hz)?;
    let mut detector = Detector::new(&rc.raw.detection, rc.pillar, rate_hz, rc.raw.acquisition.settle_s);
    let instrument = InstrumentInfo { backend: "sim".into(), frame: "simulated".into(), smu: "simulated".into() };
    let mut writer = RunWriter::create(path, &rc, &instrument)?;
    let n = rc.expected_samples();
    let mut events = Vec::new();
    let mut chunk: Vec<Sample> = Vec::with_capacity(CHUNK);
    let mut delta_rho = Vec::with_capacity(CHUNK);
    let mut signal = Vec::with_capacity(n as usize);
    let (mut sigma_sum, mut sigma_n) = (0.0, 0u32);
    let mut all_delta_rho = Vec::new();
    for k in 0..n {
        let (segment, setpoint_un) = rc.load_function.setpoint_at(k as f64 / rate_hz);
        let ws = world.step(setpoint_un / sim.actuator_gain, segment);
        signal.push(spike_signal(&world, &ws));
        chunk.push(ws.to_sample(setpoint_un, segment, VOLTAGE_V, sim.circuit_resistance_ohm));
        if chunk.len() == CHUNK || k + 1 == n {
            delta_rho.clear();
            detector.process_slice(&chunk, &mut delta_rho, &mut |e| events.push(e));
            if detector.noise_sigma().is_finite() {
                sigma_sum += detector.noise_sigma();
                sigma_n += 1;
            }
            writer.append(&chunk, &delta_rho)?;
            if misses_wanted() {
                all_delta_rho.extend_from_slice(&delta_rho);
            }
            chunk.clear();
        }
    }
    detector.finish(&mut |e| events.push(e));
    writer.append_events(&events)?;
    let truth = world.ground_truth().to_vec();
    writer.finish(&EndReason::Completed, &Diagnostics::default(), Some(&truth))?;
    let sampled = sampled_truth(&truth, &signal, rate_hz);
    if !misses_wanted() {
        signal = Vec::new();
    }
    Ok(SimRun {
        sigma_mean: sigma_sum / f64::from(sigma_n.max(1)),
        ours: events,
        truth,
        sampled,
        delta_rho: all_delta_rho,
        signal,
    })
}

/// `--misses`: print every true spike with a sampled peak ≥ 7e-4 that nanoecr missed.
fn misses_wanted() -> bool {
    std::env::args().any(|a| a == "--misses")
}

/// Print the missed spikes of one run (`--misses`): sampled and true peak, duration, the
/// nearest detection, and the samples around the spike (Δρ/ρ and the noise, Δρ/ρ − spike signal,
/// each less the median of ±25 ms, as a centred baseline would see them).
fn print_misses(seed: u64, r: &SimRun, rate_hz: f64) {
    let opts = ScoreOptions::for_rate(rate_hz);
    let tol_s = opts.tolerance_samples / rate_hz;
    let spikes = |v: &[Event]| -> Vec<Event> { v.iter().filter(|e| e.kind == EventKind::Spike).copied().collect() };
    let (ours, sampled, truth) = (spikes(&r.ours), spikes(&r.sampled), spikes(&r.truth));
    let pairs = nanoecr_analysis::scoring::match_spikes(
        &ours.iter().map(|e| (e.onset_time_s, e.sign)).collect::<Vec<_>>(),
        &sampled.iter().map(|e| (e.onset_time_s, e.sign)).collect::<Vec<_>>(),
        tol_s,
    );
    for (t, e) in sampled.iter().enumerate() {
        if e.magnitude.abs() < 7e-4 || pairs.iter().any(|p| p.1 == t) {
            continue;
        }
        let k0 = (e.onset_time_s * rate_hz).ceil() as usize;
        let near: Vec<String> = ours
            .iter()
            .filter(|d| (d.onset_time_s - e.onset_time_s).abs() < 0.01)
            .map(|d| {
                format!(
                    "{:+.1}ms {:+.2e} dur {:.1}ms",
                    (d.onset_time_s - e.onset_time_s) * 1e3,
                    d.magnitude,
                    d.duration_s * 1e3
                )
            })
            .collect();
        let others: Vec<String> = sampled
            .iter()
            .enumerate()
            .filter(|(u, o)| *u != t && (o.onset_time_s - e.onset_time_s).abs() < 0.004)
            .map(|(u, o)| {
                let partner = pairs.iter().find(|p| p.1 == u).map_or(String::new(), |p| {
                    format!(" ← det {:+.1}ms", (ours[p.0].onset_time_s - e.onset_time_s) * 1e3)
                });
                format!(
                    "{:+.2}ms {:+.2e} (true {:+.2e}) dur {:.2}ms{partner}",
                    (o.onset_time_s - e.onset_time_s) * 1e3,
                    o.magnitude,
                    truth[u].magnitude,
                    o.duration_s * 1e3
                )
            })
            .collect();
        eprintln!("   other true spikes: [{}]", others.join("; "));
        let lo = k0.saturating_sub(25);
        let hi = (k0 + 25).min(r.delta_rho.len());
        let mut window: Vec<f64> = r.delta_rho[lo..hi].iter().copied().filter(|v| v.is_finite()).collect();
        window.sort_by(f64::total_cmp);
        let med = window.get(window.len() / 2).copied().unwrap_or(0.0);
        let show = |v: f64| format!("{:+5.1}", (v - med) * 1e4);
        let around = k0.saturating_sub(4)..(k0 + 5).min(r.delta_rho.len());
        eprintln!(
            "seed {seed} t {:.4} sampled {:+.2e} true {:+.2e} dur {:.2}ms near [{}]\n   Δρ/ρ−med ×1e4: {}\n   noise    ×1e4: {}",
            e.onset_time_s,
            e.magnitude,
            truth[t].magnitude,
            e.duration_s * 1e3,
            near.join("; "),
            around.clone().map(|k| show(r.delta_rho[k])).collect::<Vec<_>>().join(" "),
            around.map(|k| show(r.delta_rho[k] - r.signal[k])).collect::<Vec<_>>().join(" "),
        );
    }
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Run the peer on `files` and read back its events, one list per file.
fn run_peer(files: &[PathBuf], out_dir: &Path) -> Result<Vec<Vec<Event>>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers/peer.py");
    let status = Command::new(python())
        .arg(&script)
        .args(files)
        .arg("--out-dir")
        .arg(out_dir)
        .status()
        .with_context(|| format!("starting {} {}", python(), script.display()))?;
    if !status.success() {
        bail!("{} failed: {status}", script.display());
    }
    files
        .iter()
        .map(|f| {
            let stem = f.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
            let path = out_dir.join(format!("{stem}.peer.json"));
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            // Python's json writes a failed fit as the bare token NaN, which JSON does not have.
            let text = text.replace("NaN", "null");
            let v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            let events = v["events"].as_array().map(Vec::as_slice).unwrap_or_default();
            Ok(events
                .iter()
                .filter_map(|e| {
                    let onset = e["onset_time_s"].as_f64()?;
                    let peak = e["peak_time_s"].as_f64()?;
                    let m = e["magnitude"].as_f64()?;
                    // The peer reports no segment or stress; scoring needs neither.
                    Some(Event::spike(onset, peak, 0.0, m, Segment::Hold, 0.0))
                })
                .collect())
        })
        .collect()
}

/// Simulate, detect and score one cell.
fn run_cell(shape: SpikeShape, family: NoiseFamily, plan: RatePlan, dir: &Path) -> Result<Cell> {
    let seeds: Vec<u64> = (1..=plan.runs).collect();
    let files: Vec<PathBuf> = seeds.iter().map(|s| dir.join(format!("run{s}.h5"))).collect();
    let texts = seeds
        .iter()
        .map(|&s| run_config_text(shape, family, s, plan.rate_hz, plan.segment_s, None))
        .collect::<Result<Vec<_>>>()?;
    // Two runs at a time (2 cores).
    let jobs: Vec<(&String, &PathBuf)> = texts.iter().zip(&files).collect();
    let mid = jobs.len().div_ceil(2);
    let (a, b) = jobs.split_at(mid);
    let results: Vec<Result<SimRun>> = std::thread::scope(|sc| {
        let h = sc.spawn(|| a.iter().map(|(t, p)| simulate(t, p)).collect::<Vec<_>>());
        let mut rest: Vec<_> = b.iter().map(|(t, p)| simulate(t, p)).collect();
        let mut first = h.join().unwrap_or_else(|_| vec![Err(anyhow::anyhow!("simulation thread panicked"))]);
        first.append(&mut rest);
        first
    });
    let runs = results.into_iter().collect::<Result<Vec<_>>>()?;
    if misses_wanted() {
        for (seed, r) in seeds.iter().zip(&runs) {
            print_misses(*seed, r, plan.rate_hz);
        }
    }
    let peer = run_peer(&files, &dir.join("out"))?;
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    let opts = ScoreOptions::for_rate(plan.rate_hz);
    let mut c = [(); 4].map(|_| ScoreCounts::default());
    for (r, peer) in runs.iter().zip(&peer) {
        c[0].merge(&score_counts(&r.ours, &r.truth, &opts));
        c[1].merge(&score_counts(peer, &r.truth, &opts));
        c[2].merge(&score_counts(&r.ours, &r.sampled, &opts));
        c[3].merge(&score_counts(peer, &r.sampled, &opts));
    }
    let [o, p, os, ps] = c.map(|c| report_from_counts(c, &opts));
    let sigma = runs.iter().map(|r| r.sigma_mean).sum::<f64>() / runs.len().max(1) as f64;
    Ok(Cell { shape, family, plan, ours: o, peer: p, ours_sampled: os, peer_sampled: ps, sigma })
}

fn f3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "—".into()
    }
}

/// "ours / peer", ours in bold when it misses `ok`.
fn pair(ours: f64, peer: f64, ok: bool) -> String {
    if ok {
        format!("{} / {}", f3(ours), f3(peer))
    } else {
        format!("**{}** / {}", f3(ours), f3(peer))
    }
}

/// Whether `v` reaches `target` (a NaN rate, from no events, does not).
fn meets(v: f64, target: f64) -> bool {
    v >= target
}

/// The targets a cell misses, empty when it meets all.
fn misses(c: &Cell) -> Vec<String> {
    let (o, p) = (&c.ours, &c.peer);
    let (os, ps) = (&c.ours_sampled, &c.peer_sampled);
    let mut m = Vec::new();
    if o.recall < p.recall {
        m.push("recall < peer".to_string());
    }
    if o.recall_big < p.recall_big || os.recall_big < ps.recall_big {
        m.push("recall ≥ 7e-4 < peer".to_string());
    }
    if !meets(os.recall_big, TARGET_RECALL_BIG) {
        m.push(format!("recall ≥ 7e-4 < {TARGET_RECALL_BIG}"));
    }
    if !meets(o.precision, TARGET_PRECISION) {
        m.push(format!("precision < {TARGET_PRECISION}"));
    }
    if !meets(o.sign_accuracy, TARGET_SIGN) {
        m.push(format!("sign < {TARGET_SIGN}"));
    }
    m
}

fn table(cells: &[Cell]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| shape | noise | rate | true spikes (true peak ≥ 7e-4; sampled peak ≥ 7e-4) | recall, all | recall, true peak ≥ 7e-4 | recall, sampled peak ≥ 7e-4 | precision | sign | median \\|onset error\\|, ms | median magnitude error | targets |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    for c in cells {
        let (o, p) = (&c.ours, &c.peer);
        let (os, ps) = (&c.ours_sampled, &c.peer_sampled);
        let ms = |r: &ScoreReport| r.onset_error_median_samples / c.plan.rate_hz * 1e3;
        let m = misses(c);
        let _ = writeln!(
            md,
            "| {} | {} | {} kHz | {} ({}; {}) | {} | {} | {} | {} | {} | {} | {} | {} |",
            shape_name(c.shape),
            c.family.name(),
            c.plan.rate_hz / 1e3,
            o.counts.n_true,
            o.counts.n_true_big,
            os.counts.n_true_big,
            pair(o.recall, p.recall, o.recall >= p.recall),
            pair(o.recall_big, p.recall_big, o.recall_big >= p.recall_big),
            pair(os.recall_big, ps.recall_big, os.recall_big >= ps.recall_big && os.recall_big >= TARGET_RECALL_BIG),
            pair(o.precision, p.precision, o.precision >= TARGET_PRECISION),
            pair(o.sign_accuracy, p.sign_accuracy, o.sign_accuracy >= TARGET_SIGN),
            pair(ms(o), ms(p), true),
            pair(o.magnitude_error_median, p.magnitude_error_median, true),
            if m.is_empty() { "met".to_string() } else { format!("**{}**", m.join("; ")) }
        );
    }
    md
}

/// `--cells` filter: for each key (rate, noise, shape) the values a cell may have; empty = any.
#[derive(Default)]
struct CellFilter {
    rates_hz: Vec<f64>,
    noises: Vec<String>,
    shapes: Vec<String>,
}

impl CellFilter {
    fn parse(text: &str) -> Result<Self> {
        let mut f = CellFilter::default();
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').with_context(|| format!("--cells: '{part}' is not key=value"))?;
            match key {
                "rate" => f.rates_hz.push(value.parse().with_context(|| format!("--cells: rate '{value}' (Hz)"))?),
                "noise" => {
                    if !NoiseFamily::ALL.iter().any(|n| noise_key(*n) == value) {
                        bail!("--cells: noise '{value}' is none of white, pink, mains, drift");
                    }
                    f.noises.push(value.to_string());
                }
                "shape" => {
                    if !SHAPES.iter().any(|s| shape_name(*s) == value) {
                        bail!("--cells: shape '{value}' is none of boxcar, trapezoid, rise_decay, overshoot");
                    }
                    f.shapes.push(value.to_string());
                }
                _ => bail!("--cells: unknown key '{key}' (rate, noise, shape)"),
            }
        }
        Ok(f)
    }

    fn rate(&self, rate_hz: f64) -> bool {
        self.rates_hz.is_empty() || self.rates_hz.contains(&rate_hz)
    }

    fn cell(&self, shape: SpikeShape, family: NoiseFamily) -> bool {
        (self.noises.is_empty() || self.noises.iter().any(|n| n == noise_key(family)))
            && (self.shapes.is_empty() || self.shapes.iter().any(|s| s == shape_name(shape)))
    }
}

/// A family's name without the "+ ".
fn noise_key(family: NoiseFamily) -> &'static str {
    family.name().trim_start_matches("+ ")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let filter = match args.iter().position(|a| a == "--cells") {
        Some(i) => Some(CellFilter::parse(args.get(i + 1).context("--cells needs a filter")?)?),
        None => None,
    };
    let out: Option<PathBuf> = match args.iter().position(|a| a == "--out") {
        Some(i) => Some(PathBuf::from(args.get(i + 1).context("--out needs a file")?)),
        None if quick || filter.is_some() => None,
        None => Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/accuracy.md")),
    };
    let all_plans = if quick { QUICK } else { FULL };
    let started = Instant::now();
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let mut cells = Vec::new();
    let keep = filter.unwrap_or_default();
    let plans: Vec<RatePlan> = all_plans.into_iter().filter(|p| keep.rate(p.rate_hz)).collect();
    if plans.is_empty() {
        bail!("--cells: no rate of the matrix (1000, 10000, 100000) matches");
    }
    for &plan in &plans {
        for shape in SHAPES {
            for family in NoiseFamily::ALL {
                if !keep.cell(shape, family) {
                    continue;
                }
                let t0 = Instant::now();
                let cell = run_cell(shape, family, plan, tmp.path())?;
                eprintln!(
                    "{} {} {} kHz: ours recall {:.3} (≥ 7e-4 {:.3}, sampled ≥ 7e-4 {:.3}) precision {:.3} sign {:.4} ({}/{}) σ {:.3e}; peer recall {:.3} (≥ 7e-4 {:.3}) precision {:.3} [{:.0} s]",
                    shape_name(shape),
                    family.name(),
                    plan.rate_hz / 1e3,
                    cell.ours.recall,
                    cell.ours.recall_big,
                    cell.ours_sampled.recall_big,
                    cell.ours.precision,
                    cell.ours.sign_accuracy,
                    cell.ours.counts.n_sign_correct,
                    cell.ours.counts.n_matched,
                    cell.sigma,
                    cell.peer.recall,
                    cell.peer.recall_big,
                    cell.peer.precision,
                    t0.elapsed().as_secs_f64()
                );
                cells.push(cell);
            }
        }
    }
    let met = cells.iter().filter(|c| misses(c).is_empty()).count();
    let mut md = String::new();
    let _ = writeln!(md, "{}\n", docblock::BEGIN);
    let _ = writeln!(md, "## Robustness matrix: spike shape × noise family × rate, nanoecr / peer\n");
    let runs = |p: &RatePlan| format!("{} × {} s", p.runs, SETTLE_S + 3.0 * p.segment_s);
    let _ = writeln!(
        md,
        "Generated by `just accuracy` (`cargo run --release -p nanoecr-analysis --example matrix`). Each cell simulates \
         seeded runs of the paper's trapezoid to {PEAK_UN} µN (load, hold and unload of equal length after a {SETTLE_S} s settle) with \
         the default `[simulation]` except spike shape, durations {}–{} ms and noise family (crates/nanoecr-sim/src/matrix.rs; \
         docs/simulator.md), and the default `[detection]` for every cell (no per-file setting). Runs per cell: {} at 1 kHz, \
         {} at 10 kHz, {} at 100 kHz (seeds 1, 2, …: the cells of a rate share their spike times and magnitudes). \
         nanoecr detects in stream; the same samples are written to a run file that `bench/peers/peer.py` (rolling-median \
         baseline, MAD σ, `scipy.signal.find_peaks` at max(5σ, 5e-4)) reads with h5py. Both are scored by \
         `nanoecr_analysis::scoring` against the ground truth: a detection matches the nearest true onset within 2 ms; \
         magnitude error is |reported − true peak| / true peak of matched spikes (the true magnitude is the waveform's peak).\n",
        DURATION_S[0] * 1e3,
        DURATION_S[1] * 1e3,
        runs(&all_plans[0]),
        runs(&all_plans[1]),
        runs(&all_plans[2]),
    );
    let _ = writeln!(
        md,
        "Noise families, each adding to the one above: **white** 1 × 10⁻⁴ (the paper's); **+ pink** 1/f noise of 0.5–1× \
         the white rms (drawn per seed); **+ mains** 50 Hz pick-up of amplitude 1 × 10⁻⁴ with harmonics at 100, 150 and \
         200 Hz (0.5, 0.25, 0.125 of it) and an amplitude drifting ±50 % at 0.1 Hz; **+ drift** a baseline drifting \
         1 × 10⁻⁵ per s with a 0.2 Hz wander of 2 × 10⁻⁴. Targets for nanoecr on every cell: recall (all and \
         |Δρ/ρ| ≥ 7e-4) not below the peer's, recall ≥ {TARGET_RECALL_BIG} for a sampled peak |Δρ/ρ| ≥ 7e-4, precision ≥ \
         {TARGET_PRECISION}, sign ≥ {TARGET_SIGN}; a missed target is in bold. The *true* peak is the waveform's top; \
         the *sampled* peak is the largest value of the noiseless spike at the sample times, all any detector can see: \
         at 1 kHz a spike that decays within a millisecond is sampled at a random phase of its decay, so its sampled \
         peak is often a fraction of its true one (the recall on true peaks is shown, and no detector can reach 0.97 \
         on it for those shapes).\n"
    );
    let _ = writeln!(md, "**{met} of {} cells meet every target.**", cells.len());
    // How many cells miss each target, and where.
    let mut by_target: Vec<(String, Vec<String>)> = Vec::new();
    for c in &cells {
        for m in misses(c) {
            let at = format!("{} {} {} kHz", shape_name(c.shape), c.family.name(), c.plan.rate_hz / 1e3);
            match by_target.iter_mut().find(|(t, _)| *t == m) {
                Some((_, v)) => v.push(at),
                None => by_target.push((m, vec![at])),
            }
        }
    }
    for (target, at) in &by_target {
        let _ = writeln!(md, "- {target}: {} cells ({})", at.len(), at.join(", "));
    }
    let _ = writeln!(
        md,
        "\nWhy targets are missed (measured while building this matrix; the figures are in the table):\n\
         - **mains** and **drift** cells: the canceller (`[detection] mains_hz`, `mains_harmonics`) now tracks \
         the fundamental and, by default, the 100 Hz harmonic with a 0.8 s memory; the residual σ fell from 1.27 \
         to 1.20 × 10⁻⁴ at 1 kHz (1.30 → 1.25 at 10 kHz, 1.39 → 1.34 at 100 kHz), within 2.5 % of the pink \
         cells' (1.17–1.18, 1.21–1.22, 1.31), which carry the same 1/f noise without mains. Recall for a sampled \
         peak ≥ 7e-4 at 1 kHz went 0.959 → 0.968 (boxcar), 0.936 → 0.957 (trapezoid), 0.940 → 0.952 \
         (rise_decay), 0.904 → 0.924 (overshoot); every 10 kHz mains cell now meets its targets (overshoot 0.969 \
         → 0.984), and 100 kHz rise_decay 0.944 → 0.958 (the peer's). With `mains_harmonics = 3` (up to 200 Hz) \
         σ is 1.19 × 10⁻⁴ at 1 kHz and the same recalls within ±0.012, but the detector is ≈ 20 % slower (under \
         50 M samples/s), so the default stops at 2f. What is left is the 1/f noise (pink, below). The slow \
         baseline itself costs nothing (drift = mains to the third decimal). The peer, with no canceller, loses \
         more (0.78–0.91 at 1 and 10 kHz).\n\
         - **sign** (< 0.995 at 1 kHz in boxcar, trapezoid, rise_decay white and rise_decay pink/mains/drift \
         before the scorer matched sign first): all 22 wrong-sign pairs of those cells (`examples/sign_audit.rs`) \
         were the same three spike pairs (seeds 3 and 8): a detection on a large true spike that the sign-blind \
         nearest-onset matcher paired with a sub-threshold spike of the other sign starting 0.1–0.4 ms nearer, \
         leaving the large one missed. None was a rebound, an undershoot or noise. `nanoecr_analysis::scoring` \
         now takes a same-sign true onset within 2 ms before an opposite one; sign is 1.000 on every cell for \
         nanoecr.\n\
         - **pink** cells: 1/f noise above the baseline's reach raised the robust σ (then a MAD of \
         |residual|) and with it the start threshold (≈ 5.7 × 10⁻⁴ at 1 kHz), and recall (all) sat \
         0.002–0.015 under the peer's at 1 and 10 kHz. σ is now the MAD of first differences of consecutive \
         residuals over √2, which the 1/f swings neighbours share hardly enter (threshold ≈ 5.2 × 10⁻⁴). \
         Recall (all), boxcar / trapezoid / rise_decay / overshoot, before → after (peer): 1 kHz 0.155 / \
         0.142 / 0.042 / 0.093 → 0.178 / 0.163 / 0.050 / 0.108 (0.155 / 0.144 / 0.045 / 0.094), sampled peak \
         ≥ 7e-4 0.962 / 0.954 / 0.952 / 0.939 → 0.971 / 0.963 / 0.976 / 0.970; 10 kHz boxcar 0.209 → 0.272 \
         (0.224), trapezoid 0.205 → 0.258 (0.213); 100 kHz 0.253 / 0.246 / 0.139 / 0.183 → 0.335 / 0.334 / \
         0.236 / 0.273 (0.296 / 0.292 / 0.198 / 0.234). The price at 1 kHz: precision 0.998–1.000 → \
         0.994–0.998. The white 1 kHz cells keep their figures within 0.003 (σ is the same for white noise).\n\
         - **trapezoid + pink / + mains / + drift at 1 kHz** (sampled peak ≥ 7e-4 was 0.970 / 0.966 / 0.966, \
         under 0.97). `matrix --cells rate=1000,noise=pink,shape=trapezoid --misses` prints the misses: of the \
         pink cell's 10, 6 were detected, in one event with a smaller same-sign spike that began 0.1–1.6 ms \
         after the large one and overlapped it, but the event's onset (its first sample) is late by half a \
         period on average, 0.5 ms at 1 kHz, so the nearest-onset pairing gave the event to the small spike; \
         the other 4 were spikes of 7.1–9.2 × 10⁻⁴ seen on one sample whose noise was 2.2–4.7 × 10⁻⁴ against \
         the spike (Δρ/ρ less the median of ±25 ms, what a centred baseline sees, was 4.5–4.9 × 10⁻⁴ there: \
         under the threshold for any baseline). The reported onset \
         is now the middle of the period before the first sample, the unbiased estimate. Sampled peak ≥ 7e-4 \
         at 1 kHz, white / pink / mains / drift, before → after: trapezoid 0.973 / 0.970 / 0.966 / 0.966 → \
         0.985 / 0.982 / 0.979 / 0.979; boxcar 0.977 / 0.974 / 0.974 / 0.974 → 0.985 / 0.983 / 0.983 / 0.983; \
         rise_decay 0.976 → 0.988 and overshoot 0.975 → 0.985 in every family; the median onset error at 1 kHz \
         0.52–0.60 → 0.25–0.27 ms (boxcar, trapezoid, overshoot; rise_decay 0.28 → 0.24); recall (all), \
         precision and sign unchanged.\n\
         - **100 kHz** recall, all: a spike well under 5σ spans 100–200 samples and the largest of that many \
         noisy samples clears 5σ often; the peer's `find_peaks` takes any such local maximum, while nanoecr \
         asked the raw excursion to stay above release for `min_duration_s` (0.2 ms), which a 2–4σ spike \
         rarely does. Now a running mean over `smooth_window_s` (0.2 ms: 20 samples, 2 at 10 kHz, off at 1 \
         kHz) keeps an event open through raw dips and must reach 5 × its own σ within it (a lone 5σ noise \
         sample cannot). Recall (all), boxcar / trapezoid / rise_decay / overshoot, white, before → after \
         (peer): 0.329 / 0.321 / 0.203 / 0.254 → 0.406 / 0.384 / 0.282 / 0.326 (0.393 / 0.378 / 0.275 / \
         0.310); rise_decay + mains 0.136 → 0.189 (0.142), its sampled peak ≥ 7e-4 0.944 → 0.986; precision \
         1.000 → 0.992–1.000 (peer 0.93–0.98). The spikes now found are small, and their raw peak carries the \
         max-of-samples bias (≈ +2.5σ), so the median magnitude error rose (boxcar white 0.480 → 0.561, peer \
         0.567; rise_decay 0.133 → 0.196) and the median onset error by 0.01–0.03 ms (the first crossing lies \
         inside the spike); both stay read from raw samples, as the measurement-aware model assumes. \
         Measured, not adopted: the peak of the running mean instead of the raw peak gives the same \
         detections with a median magnitude error of 0.083 / 0.067 / 0.134 / 0.084 (boxcar / trapezoid / \
         rise_decay / overshoot, 100 kHz white; raw peak 0.566 / 0.520 / 0.196 / 0.272); it needs the \
         measurement-aware model's max of m raw samples to become a max over window means first.\n\
         - **rise_decay** and **overshoot** at 1 kHz: judged on the sampled peak (above); on the true peak no \
         detector can reach 0.97.\n"
    );
    md.push_str(&table(&cells));
    let _ = writeln!(md, "\nGenerated in {:.0} s.\n\n{}", started.elapsed().as_secs_f64(), docblock::END);
    match out {
        Some(path) => {
            let doc = std::fs::read_to_string(&path).unwrap_or_default();
            std::fs::write(&path, docblock::replace(&doc, md.trim_end()))
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote the matrix into {} in {:.0} s", path.display(), started.elapsed().as_secs_f64());
        }
        None => print!("{md}"),
    }
    Ok(())
}
