//! Accuracy campaign: simulate runs in memory (World + Detector, no HDF5), score detection and
//! fits against ground truth, and write docs/accuracy.md.
//!
//! ```text
//! cargo run --release -p nanoecr-analysis --example accuracy [-- OUTPUT.md]
//! ```
//! A few minutes on 2 cores. Every run is seeded: the same build gives the same document. The
//! robustness matrix's block of that file (example `matrix`) is kept as it is; `just accuracy`
//! regenerates both.

#[path = "common/docblock.rs"]
mod docblock;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use nanoecr_analysis::events::{sign_balance, SignBalance};
use nanoecr_analysis::measured::fit_measured_power_law;
use nanoecr_analysis::powerlaw::{fit_truncated_power_law, EfficiencyCurve, TruncatedPowerLawFit};
use nanoecr_analysis::report::{num, score_markdown};
use nanoecr_analysis::run::{detector_measurement_model, noise_sigma_of, pooled_measurement_model};
use nanoecr_analysis::scoring::{report_from_counts, score_counts, ScoreCounts, ScoreOptions, ScoreReport};
use nanoecr_core::config::{DetectionConfig, SimulationConfig};
use nanoecr_core::{Event, EventKind, LoadFunction, Pillar, Segment};
use nanoecr_detect::Detector;

/// The naive, the efficiency-aware and the measurement-aware fit of one campaign.
type FitSet = (Option<TruncatedPowerLawFit>, Option<TruncatedPowerLawFit>, Option<TruncatedPowerLawFit>);
use nanoecr_sim::World;

const PILLAR: Pillar = Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };
const VOLTAGE_V: f64 = 5.0;
const SETTLE_S: f64 = 2.0;
/// Runs per seeded campaign of the α table: ≈ 1 800 fitted spikes, the size at which the
/// campaign-to-campaign scatter of α (≈ 0.18) lets a mean over 20 campaigns resolve 0.1. The
/// campaign-size table shows smaller campaigns from the same runs.
const CAMPAIGN_RUNS: u64 = 40;
/// Campaign sizes of the campaign-size table (each a prefix of the [`CAMPAIGN_RUNS`] campaigns).
const CAMPAIGN_SIZES: [usize; 4] = [5, 10, 20, 40];
/// Runs per seeded campaign of the 10 kHz α table.
const CAMPAIGN_RUNS_10K: u64 = 20;

/// One simulated run: what the detector found and what was true.
struct SimRun {
    detected: Vec<Event>,
    truth: Vec<Event>,
    duration_s: f64,
    /// Robust noise σ of the run's Δρ/ρ (as `nanoecr analyze` estimates it from a file).
    noise_sigma: f64,
    /// The simulator's spike durations and law x_min (what a simulated file's config says).
    spike_duration_s: [f64; 2],
    law_x_min: f64,
    rate_hz: f64,
}

/// The paper's trapezoid (10 s load / 10 s hold / 10 s unload) after a 2 s settle.
fn trapezoid(peak_un: f64) -> LoadFunction {
    LoadFunction::from_targets(
        SETTLE_S,
        0.0,
        &[(Segment::Load, 10.0, peak_un), (Segment::Hold, 10.0, peak_un), (Segment::Unload, 10.0, 0.0)],
    )
}

/// Simulate one run open-loop (command = setpoint / actuator gain) and detect in stream.
fn simulate(sim: &SimulationConfig, det: &DetectionConfig, lf: &LoadFunction, rate_hz: f64) -> SimRun {
    let mut world = World::new(sim, PILLAR, rate_hz);
    let mut detector = Detector::new(det, PILLAR, rate_hz, SETTLE_S);
    let n = (lf.total_s() * rate_hz).round() as u64;
    let mut detected = Vec::new();
    let mut delta_rho = Vec::with_capacity(n as usize);
    for k in 0..n {
        let t = k as f64 / rate_hz;
        let (segment, setpoint_un) = lf.setpoint_at(t);
        let ws = world.step(setpoint_un / sim.actuator_gain, segment);
        let sample = ws.to_sample(setpoint_un, segment, VOLTAGE_V, sim.circuit_resistance_ohm);
        delta_rho.push(detector.process(&sample, &mut |e| detected.push(e)));
    }
    detector.finish(&mut |e| detected.push(e));
    SimRun {
        detected,
        truth: world.ground_truth().to_vec(),
        duration_s: lf.total_s(),
        noise_sigma: noise_sigma_of(&delta_rho),
        spike_duration_s: [sim.spike_min_duration_s, sim.spike_max_duration_s],
        law_x_min: sim.x_min,
        rate_hz,
    }
}

fn sim_cfg(seed: u64) -> SimulationConfig {
    SimulationConfig { seed, ..Default::default() }
}

fn spike_mags(ev: &[Event]) -> Vec<f64> {
    ev.iter().filter(|e| e.kind == EventKind::Spike).map(|e| e.magnitude.abs()).collect()
}

/// Run `seeds` runs of one configuration on two threads.
fn batch(
    seeds: std::ops::Range<u64>,
    make: &(dyn Fn(u64) -> SimulationConfig + Sync),
    det: &DetectionConfig,
    lf: &LoadFunction,
    rate_hz: f64,
) -> Vec<SimRun> {
    let seeds: Vec<u64> = seeds.collect();
    let mid = seeds.len() / 2;
    let (a, b) = seeds.split_at(mid);
    std::thread::scope(|s| {
        let h = s.spawn(|| a.iter().map(|&k| simulate(&make(k), det, lf, rate_hz)).collect::<Vec<_>>());
        let mut rest: Vec<SimRun> = b.iter().map(|&k| simulate(&make(k), det, lf, rate_hz)).collect();
        let mut first = h.join().unwrap_or_default();
        first.append(&mut rest);
        first
    })
}

fn score_all(runs: &[SimRun], rate_hz: f64) -> ScoreReport {
    score_with(runs, ScoreOptions::for_rate(rate_hz))
}

fn score_with(runs: &[SimRun], opts: ScoreOptions) -> ScoreReport {
    let mut c = ScoreCounts::default();
    for r in runs {
        c.merge(&score_counts(&r.detected, &r.truth, &opts));
    }
    report_from_counts(c, &opts)
}

/// Naive fit above the completeness threshold, efficiency-aware fit above the detector floor and
/// measurement-aware fit above the floor of the pooled measurement model (each run's model from
/// its own noise estimate, the sampling rate, the simulator's spike durations and `det`).
fn fits(runs: &[SimRun], curve: &EfficiencyCurve, floor: f64, det: &DetectionConfig) -> FitSet {
    let mags: Vec<f64> = runs.iter().flat_map(|r| spike_mags(&r.detected)).collect();
    let x95 = curve.completeness(0.95).unwrap_or(7e-4);
    (
        fit_truncated_power_law(&mags, x95, None).ok(),
        fit_truncated_power_law(&mags, floor, Some(curve)).ok(),
        measured_fit(runs, &mags, det),
    )
}

/// The measurement-aware fit of `mags` (the runs' detected |Δρ/ρ|) under the pooled model of `runs`.
fn measured_fit(runs: &[SimRun], mags: &[f64], det: &DetectionConfig) -> Option<TruncatedPowerLawFit> {
    let models: Vec<_> = runs
        .iter()
        .filter_map(|r| detector_measurement_model(r.noise_sigma, r.rate_hz, det, r.spike_duration_s, r.law_x_min).ok())
        .collect();
    let refs: Vec<_> = models.iter().collect();
    pooled_measurement_model(&refs).and_then(|m| fit_measured_power_law(mags, &m, None)).ok().map(|m| m.fit)
}

fn fit_cell(f: &Option<TruncatedPowerLawFit>) -> String {
    f.as_ref().map_or("—".into(), |f| {
        format!("{} [{}, {}], xc {} (n {})", num(f.alpha), num(f.alpha_ci[0]), num(f.alpha_ci[1]), num(f.xc), f.n)
    })
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", 100.0 * v)
    } else {
        "—".into()
    }
}

/// Pool sign balances of several runs.
fn pooled_balance(events: impl Iterator<Item = Vec<Event>>) -> Vec<SignBalance> {
    let all: Vec<Event> = events.flatten().collect();
    sign_balance(&all)
}

/// Magnitude above which the targets are stated, and the detector is complete.
const BIG: f64 = 7e-4;

/// The true spikes a detector at the paper's noise can see: |x| ≥ [`BIG`].
fn visible(truth: &[Event]) -> Vec<Event> {
    truth.iter().filter(|e| e.kind != EventKind::Spike || e.magnitude.abs() >= BIG).copied().collect()
}

/// Tally of the p − n sign check over (segment) cells with a true |p − n| ≥ 3σ.
#[derive(Default)]
struct PnCheck {
    checked: u32,
    matched: u32,
    /// Detected z of the cells whose detected sign was wrong.
    mismatch_z: Vec<f64>,
}

impl PnCheck {
    fn add(&mut self, truth: &[SignBalance], detected: &[SignBalance]) {
        for (t, d) in truth.iter().zip(detected) {
            if t.sigma > 0.0 && (t.difference.abs() as f64) >= 3.0 * t.sigma {
                self.checked += 1;
                if d.difference.signum() == t.difference.signum() {
                    self.matched += 1;
                } else {
                    self.mismatch_z.push(d.z);
                }
            }
        }
    }

    /// "checked | matched (%) | mismatch z" table cells.
    fn cells(&self) -> String {
        let zs: Vec<String> = self.mismatch_z.iter().map(|z| format!("{z:.2}")).collect();
        format!(
            "{} | {} ({}) | {}",
            self.checked,
            self.matched,
            pct(self.matched as f64 / self.checked.max(1) as f64),
            if zs.is_empty() { "—".into() } else { zs.join(", ") }
        )
    }
}

fn main() {
    let out: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/accuracy.md"));
    let started = Instant::now();
    let det = DetectionConfig::default();
    let lf = trapezoid(6000.0);
    let mut md = String::new();
    let _ = writeln!(md, "# Detection and fit accuracy\n");
    let _ = writeln!(
        md,
        "Generated by `just accuracy` (`cargo run --release -p nanoecr-analysis --example accuracy`, then the \
         robustness matrix at the end by `--example matrix`; simulated in memory with \
         `nanoecr_sim::World` and the streaming `nanoecr_detect::Detector`, open-loop load command, default \
         `[simulation]` and `[detection]` unless a row says otherwise; paper trapezoid 10 s / 10 s / 10 s to 6000 µN \
         on a 2 µm × 5 µm pillar after a 2 s settle). Matching tolerance 2 ms (2 samples at 1 kHz, 20 at 10 kHz). Targets are stated for \
         |Δρ/ρ| ≥ 7 × 10⁻⁴. Do not edit by hand.\n"
    );

    // 1. Baseline at 1 kHz.
    let base = batch(1..13, &sim_cfg, &det, &lf, 1000.0);
    let s = score_all(&base, 1000.0);
    let _ = writeln!(md, "## Detection at 1 kHz ({} runs, defaults)\n\n{}", base.len(), score_markdown(&s));
    let curve = s.efficiency_curve().unwrap_or_else(|| EfficiencyCurve::threshold_model(5e-4, 1e-4));
    let x95 = curve.completeness(0.95);
    let _ = writeln!(
        md,
        "Completeness threshold (measured efficiency ≥ 0.95): {}.\n",
        x95.map_or("not reached".into(), num)
    );

    // 2. α coverage over 20 seeded campaigns, against the measured curve.
    let _ = writeln!(md, "## α and xc over 20 seeded campaigns ({CAMPAIGN_RUNS} runs each, true α = 1.5, xc = 1e-3)\n");
    let mut rows = Vec::new();
    // Oracle: the TPL fitted to the *true* magnitudes of the same spikes above the same floor as
    // the measurement-aware fit — what a noiseless, complete detector would give from these data.
    let mut oracle: Vec<FitSet> = Vec::new();
    let (mut pn_campaign, mut pn_run_all, mut pn_run_visible) =
        (PnCheck::default(), PnCheck::default(), PnCheck::default());
    let mut pooled: Vec<SimRun> = Vec::new();
    // Measurement-aware fits of the first `size` runs of each campaign, per CAMPAIGN_SIZES entry.
    let mut by_size: Vec<Vec<FitSet>> = vec![Vec::new(); CAMPAIGN_SIZES.len()];
    for c in 0..20u64 {
        let runs = batch(1000 + c * CAMPAIGN_RUNS..1000 + (c + 1) * CAMPAIGN_RUNS, &sim_cfg, &det, &lf, 1000.0);
        let set = fits(&runs, &curve, det.min_magnitude, &det);
        let floor = set.2.as_ref().map_or(det.min_magnitude, |f| f.x_min);
        let true_mags: Vec<f64> = runs.iter().flat_map(|r| spike_mags(&r.truth)).collect();
        oracle.push((None, None, fit_truncated_power_law(&true_mags, floor, None).ok()));
        rows.push(set);
        for (size, fits_of_size) in CAMPAIGN_SIZES.iter().zip(&mut by_size) {
            let part = &runs[..(*size).min(runs.len())];
            let mags: Vec<f64> = part.iter().flat_map(|r| spike_mags(&r.detected)).collect();
            fits_of_size.push((None, None, measured_fit(part, &mags, &det)));
        }
        let truth_b = pooled_balance(runs.iter().map(|r| r.truth.clone()));
        let det_b = pooled_balance(runs.iter().map(|r| r.detected.clone()));
        pn_campaign.add(&truth_b, &det_b);
        for r in &runs {
            pn_run_all.add(&sign_balance(&r.truth), &sign_balance(&r.detected));
            pn_run_visible.add(&sign_balance(&visible(&r.truth)), &sign_balance(&r.detected));
        }
        pooled.extend(runs);
    }
    let (pooled_naive, pooled_aware, pooled_measured) = fits(&pooled, &curve, det.min_magnitude, &det);
    let pooled_truth: Vec<f64> = pooled.iter().flat_map(|r| spike_mags(&r.truth)).collect();
    let pooled_oracle =
        pooled_measured.as_ref().and_then(|m| fit_truncated_power_law(&pooled_truth, m.x_min, None).ok());
    let pooled_all_truth = fit_truncated_power_law(&pooled_truth, 1e-4, None).ok();
    let summarize_rows = |rows: &[FitSet], pick: &dyn Fn(&FitSet) -> Option<TruncatedPowerLawFit>| {
        let fs: Vec<TruncatedPowerLawFit> = rows.iter().filter_map(pick).collect();
        let n = fs.len().max(1) as f64;
        let cover = fs.iter().filter(|f| f.alpha_ci[0] <= 1.5 && 1.5 <= f.alpha_ci[1]).count();
        let mean_err = fs.iter().map(|f| f.alpha - 1.5).sum::<f64>() / n;
        let rms = (fs.iter().map(|f| (f.alpha - 1.5).powi(2)).sum::<f64>() / n).sqrt();
        let width = fs.iter().map(|f| f.alpha_ci[1] - f.alpha_ci[0]).sum::<f64>() / n;
        let xc2 = fs.iter().filter(|f| f.xc >= 5e-4 && f.xc <= 2e-3).count();
        let xc15 = fs.iter().filter(|f| f.xc >= 1e-3 / 1.5 && f.xc <= 1.5e-3).count();
        let mean_n = fs.iter().map(|f| f.n as f64).sum::<f64>() / n;
        format!(
            "| {} | {cover}/{} | {} | {} | {} | {xc2}/{} | {xc15}/{} | {} |",
            fs.len(),
            fs.len(),
            num(mean_err),
            num(rms),
            num(width),
            fs.len(),
            fs.len(),
            num(mean_n)
        )
    };
    let summarize = |pick: &dyn Fn(&FitSet) -> Option<TruncatedPowerLawFit>| summarize_rows(&rows, pick);
    let _ = writeln!(md, "| fit | campaigns fitted | 95 % CI covers α | mean α error | rms α error | mean CI width | xc within ×2 | xc within ×1.5 | mean n |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let _ = writeln!(md, "| naive, x ≥ completeness {}", summarize(&|r| r.0.clone()));
    let _ = writeln!(md, "| efficiency-aware, x ≥ {} {}", num(det.min_magnitude), summarize(&|r| r.1.clone()));
    let floors: Vec<f64> = rows.iter().filter_map(|r| r.2.as_ref().map(|f| f.x_min)).collect();
    let floor_range = if floors.is_empty() {
        "—".to_string()
    } else {
        let lo = floors.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = floors.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{}–{}", num(lo), num(hi))
    };
    let _ = writeln!(md, "| measurement-aware, y ≥ floor ({floor_range}) {}", summarize(&|r| r.2.clone()));
    let _ = writeln!(
        md,
        "| oracle: true magnitudes of the same spikes, x ≥ the same floor {}",
        summarize_rows(&oracle, &|r| r.2.clone())
    );
    let _ = writeln!(
        md,
        "\nAll {} runs pooled: naive {}; efficiency-aware {}; measurement-aware {}. Oracle (true magnitudes \
         ≥ the measurement-aware floor): {}; all true magnitudes from 1e-4: {}.",
        pooled.len(),
        fit_cell(&pooled_naive),
        fit_cell(&pooled_aware),
        fit_cell(&pooled_measured),
        fit_cell(&pooled_oracle),
        fit_cell(&pooled_all_truth)
    );
    // Plain verdict on the issue's targets for the measurement-aware fit.
    {
        let fs: Vec<&TruncatedPowerLawFit> = rows.iter().filter_map(|r| r.2.as_ref()).collect();
        let k = fs.len();
        let cover = fs.iter().filter(|f| f.alpha_ci[0] <= 1.5 && 1.5 <= f.alpha_ci[1]).count();
        let mean_err = fs.iter().map(|f| f.alpha - 1.5).sum::<f64>() / k.max(1) as f64;
        let xc2 = fs.iter().filter(|f| f.xc >= 5e-4 && f.xc <= 2e-3).count();
        let yes = |b: bool| if b { "**met**" } else { "**not met**" };
        let _ = writeln!(
            md,
            "\n**Targets** (issue 3), measurement-aware fit: 95 % CI covers α in ≥ 90 % of campaigns: {cover}/{k} — {}; \
             mean α error ≤ 0.1: {} — {}; xc within ×2 in ≥ 95 %: {xc2}/{k} — {}. The oracle row bounds what \
             any fit above that floor can do with these spikes.",
            yes(k > 0 && cover as f64 >= 0.9 * k as f64),
            num(mean_err),
            yes(k > 0 && mean_err.abs() <= 0.1),
            yes(k > 0 && xc2 as f64 >= 0.95 * k as f64)
        );
    }
    let _ = writeln!(
        md,
        "\nCampaign size: the measurement-aware fit of the first N runs of each of the same 20 campaigns. The \
         campaign-to-campaign scatter of α falls like 1/√(events) and the small-sample bias of the maximum-likelihood \
         α (negative: α and xc trade off above a floor just below xc) shrinks with it; the pooled row above shows \
         the bias left at large N.\n"
    );
    let _ = writeln!(md, "| runs per campaign | campaigns fitted | 95 % CI covers α | mean α error | rms α error | mean CI width | xc within ×2 | xc within ×1.5 | mean n |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for (size, fits_of_size) in CAMPAIGN_SIZES.iter().zip(&by_size) {
        let _ = writeln!(md, "| {size} {}", summarize_rows(fits_of_size, &|r| r.2.clone()));
    }
    let _ = writeln!(
        md,
        "\n### p − n per segment\n\nA cell is one segment (load, hold, unload) of one run or one campaign; it is checked when the \
         true |p − n| there is ≥ 3σ (σ = √(p + n), Poisson), and it passes when the detected p − n has the true sign.\n\n\
         | cells | true p − n counted over | checked | detected sign = true sign | detected z of the mismatches |\n\
         | --- | --- | --- | --- | --- |\n\
         | per run | spikes with \\|x\\| ≥ {BIG:e} (what the detector sees: recall ≥ 99 % there) | {} |\n\
         | per run | every true spike, from 1e-4 | {} |\n\
         | per campaign ({CAMPAIGN_RUNS} runs) | every true spike, from 1e-4 | {} |\n\n\
         The second row is the issue's wording taken literally. It counts spikes far below the noise (80 % of true \
         spikes are under 4 × 10⁻⁴, where recall is under 5 %), so the detected difference comes from a sample about \
         a fifth the size: at a true z of 3 its own z is ≈ 3·√0.2 ≈ 1.3, and a few per cent of such runs must show the \
         wrong sign for any detector. Counted over the spikes the detector can see (first row), or pooled over a \
         campaign (third row), the sign is right in every checked cell.\n",
        pn_run_visible.cells(),
        pn_run_all.cells(),
        pn_campaign.cells()
    );

    // 3. 10 kHz.
    let fast = batch(1..11, &sim_cfg, &det, &lf, 10_000.0);
    let s10 = score_all(&fast, 10_000.0);
    let _ = writeln!(md, "## Detection at 10 kHz ({} runs)\n\n{}", fast.len(), score_markdown(&s10));
    // The tolerance is 2 ms (20 samples here): a near-threshold spike first crosses the threshold
    // wherever noise lifts one of its 10–15 samples highest, so its onset can be late by up to
    // its length. The same runs matched within 2 samples (0.2 ms), for comparison:
    let narrow = score_with(&fast, ScoreOptions { tolerance_samples: 2.0, ..ScoreOptions::for_rate(10_000.0) });
    let inside: usize = fast
        .iter()
        .map(|r| {
            let spikes: Vec<&Event> = r.truth.iter().filter(|t| t.kind == EventKind::Spike).collect();
            r.detected
                .iter()
                .filter(|e| e.kind == EventKind::Spike)
                .filter(|e| {
                    spikes.iter().any(|t| {
                        e.onset_time_s >= t.onset_time_s - 1e-4 && e.onset_time_s <= t.onset_time_s + t.duration_s
                    })
                })
                .count()
        })
        .sum();
    let detected: usize = fast.iter().map(|r| spike_mags(&r.detected).len()).sum();
    let _ = writeln!(
        md,
        "Matched within 2 samples (0.2 ms) instead of 2 ms: recall (all) {}, precision (all) {}, recall \
         \\|x\\| ≥ 7e-4 {}, precision \\|x\\| ≥ 7e-4 {}, sign accuracy {}, median \\|onset error\\| {} samples. \
         {inside} of {detected} detected spikes start inside a true spike (from one sample before its onset to its \
         end): the detections a 2-sample tolerance leaves unmatched are late onsets of real spikes, not false ones.\n",
        pct(narrow.recall),
        pct(narrow.precision),
        pct(narrow.recall_big),
        pct(narrow.precision_big),
        pct(narrow.sign_accuracy),
        num(narrow.onset_error_median_samples)
    );
    let tb = pooled_balance(fast.iter().map(|r| r.truth.clone()));
    let db = pooled_balance(fast.iter().map(|r| r.detected.clone()));
    let _ = writeln!(md, "| segment | true p − n ± σ | detected p − n ± σ |\n| --- | --- | --- |");
    for (t, d) in tb.iter().zip(&db) {
        let _ = writeln!(
            md,
            "| {} | {} ± {} | {} ± {} |",
            t.segment,
            t.difference,
            num(t.sigma),
            d.difference,
            num(d.sigma)
        );
    }

    // α at 10 kHz: the same seeded-campaign test, fewer runs (each is ten times the samples).
    let _ = writeln!(
        md,
        "\n### α and xc at 10 kHz over 20 seeded campaigns ({CAMPAIGN_RUNS_10K} runs each)\n\n\
         | fit | campaigns fitted | 95 % CI covers α | mean α error | rms α error | mean CI width | xc within ×2 | xc within ×1.5 | mean n |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let curve10 = s10.efficiency_curve().unwrap_or_else(|| curve.clone());
    let rows10: Vec<FitSet> = (0..20u64)
        .map(|c| {
            let seeds = 5000 + c * CAMPAIGN_RUNS_10K..5000 + (c + 1) * CAMPAIGN_RUNS_10K;
            let runs = batch(seeds, &sim_cfg, &det, &lf, 10_000.0);
            fits(&runs, &curve10, det.min_magnitude, &det)
        })
        .collect();
    let _ = writeln!(md, "| naive, x ≥ completeness {}", summarize_rows(&rows10, &|r| r.0.clone()));
    let _ = writeln!(md, "| measurement-aware, y ≥ model floor {}", summarize_rows(&rows10, &|r| r.2.clone()));

    // 4. Robustness.
    let _ = writeln!(md, "\n## Robustness (6 runs each, 1 kHz)\n");
    let _ = writeln!(md, "| condition | recall ≥ 7e-4 | precision ≥ 7e-4 | sign accuracy | median onset error | naive α | efficiency-aware α | measurement-aware α |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- | --- |");
    type Variant = (&'static str, Box<dyn Fn(u64) -> SimulationConfig + Sync>);
    let variants: Vec<Variant> = vec![
        ("noise 1e-4 (default)", Box::new(|k| SimulationConfig { seed: k, ..Default::default() })),
        ("noise 1.5e-4", Box::new(|k| SimulationConfig { seed: k, resistivity_noise: 1.5e-4, ..Default::default() })),
        ("noise 2e-4", Box::new(|k| SimulationConfig { seed: k, resistivity_noise: 2e-4, ..Default::default() })),
        ("drift 2 nm/s", Box::new(|k| SimulationConfig { seed: k, drift_nm_per_s: 2.0, ..Default::default() })),
        ("1/f noise 1e-4 rms", Box::new(|k| SimulationConfig { seed: k, pink_noise: 1e-4, ..Default::default() })),
        ("50 Hz mains 1e-4", Box::new(|k| SimulationConfig { seed: k, mains_amplitude: 1e-4, ..Default::default() })),
    ];
    for (name, make) in &variants {
        let runs = batch(200..206, make.as_ref(), &det, &lf, 1000.0);
        let s = score_all(&runs, 1000.0);
        let c = s.efficiency_curve().unwrap_or_else(|| curve.clone());
        let (naive, aware, measured) = fits(&runs, &c, det.min_magnitude, &det);
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            pct(s.recall_big),
            pct(s.precision_big),
            pct(s.sign_accuracy),
            num(s.onset_error_median_samples),
            fit_cell(&naive),
            fit_cell(&aware),
            fit_cell(&measured)
        );
    }

    // 5. False spikes on pure noise: no spikes, no pop-ins, a long hold below the pop-in stress.
    let quiet = |k: u64| SimulationConfig {
        seed: k,
        spike_rate_load_per_s: 0.0,
        spike_rate_hold_per_s: 0.0,
        spike_rate_unload_per_s: 0.0,
        popin_rate_per_s: 0.0,
        ..Default::default()
    };
    let long = LoadFunction::from_targets(
        SETTLE_S,
        0.0,
        &[(Segment::Load, 10.0, 3000.0), (Segment::Hold, 480.0, 3000.0), (Segment::Unload, 10.0, 0.0)],
    );
    let _ = writeln!(
        md,
        "\n## False spikes on pure noise\n\nSpike and pop-in rates 0, noise 1e-4, a 480 s hold at 3000 µN; two runs per rate.\n\n\
         | rate | noise-only time | false spikes | per 1000 s | with \\|x\\| ≥ 7e-4 | per 1000 s |\n| --- | --- | --- | --- | --- | --- |"
    );
    for rate_hz in [1000.0, 10_000.0] {
        let noise_runs = batch(500..502, &quiet, &det, &long, rate_hz);
        let secs: f64 = noise_runs.iter().map(|r| r.duration_s - SETTLE_S).sum();
        let spikes = |min: f64| -> usize {
            noise_runs
                .iter()
                .map(|r| r.detected.iter().filter(|e| e.kind == EventKind::Spike && e.magnitude.abs() >= min).count())
                .sum()
        };
        let (false_spikes, false_big) = (spikes(0.0), spikes(BIG));
        let _ = writeln!(
            md,
            "| {} kHz | {} s | {false_spikes} | **{}** | {false_big} | {} |",
            rate_hz / 1e3,
            num(secs),
            num(1000.0 * false_spikes as f64 / secs),
            num(1000.0 * false_big as f64 / secs)
        );
    }
    let _ = writeln!(md);

    // 6. Fits at several detection thresholds (same seeds).
    let _ = writeln!(md, "## Fits at several detection thresholds (8 runs each)\n");
    let _ = writeln!(md, "| threshold (σ) / floor | recall ≥ 7e-4 | precision ≥ 7e-4 | completeness | naive α (x ≥ completeness) | efficiency-aware α (x ≥ floor) | measurement-aware α (y ≥ model floor) |");
    let _ = writeln!(md, "| --- | --- | --- | --- | --- | --- | --- |");
    for (sig, floor) in [(4.0, 4e-4), (5.0, 5e-4), (6.0, 6e-4), (7.0, 7e-4)] {
        let d = DetectionConfig { threshold_sigma: sig, min_magnitude: floor, ..Default::default() };
        let runs = batch(300..308, &sim_cfg, &d, &lf, 1000.0);
        let s = score_all(&runs, 1000.0);
        let c = s.efficiency_curve().unwrap_or_else(|| EfficiencyCurve::threshold_model(floor, 1e-4));
        let (naive, aware, measured) = fits(&runs, &c, floor, &d);
        let _ = writeln!(
            md,
            "| {sig} / {} | {} | {} | {} | {} | {} | {} |",
            num(floor),
            pct(s.recall_big),
            pct(s.precision_big),
            c.completeness(0.95).map_or("—".into(), num),
            fit_cell(&naive),
            fit_cell(&aware),
            fit_cell(&measured)
        );
    }
    let _ = writeln!(md, "\nGenerated in {:.0} s.", started.elapsed().as_secs_f64());
    // The matrix block (example `matrix`) survives this rewrite.
    let previous = std::fs::read_to_string(&out).unwrap_or_default();
    if let Some(block) = docblock::find(&previous) {
        md = docblock::replace(&md, block);
    }
    match std::fs::write(&out, &md) {
        Ok(()) => eprintln!("wrote {} in {:.0} s", out.display(), started.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("error: writing {}: {e}", out.display());
            std::process::exit(1);
        }
    }
}
