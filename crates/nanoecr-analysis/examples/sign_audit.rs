//! What the wrong-sign detections of the robustness matrix are (issue 13): every detection the
//! scorer pairs with a true spike of the other sign, classified from the ground truth.
//!
//! ```text
//! cargo run --release -p nanoecr-analysis --example sign_audit [-- --rate 1000] [--shapes boxcar,rise_decay] [--harmonics N] [--sign-blind] [-v]
//! ```
//! `--harmonics N` sets `[detection] mains_harmonics` (0: the fundamental-only canceller of before).
//! Simulates the matrix's cells at full size (the runs, seeds and load function of the `matrix`
//! example; no run files, no peer), detects with the default `[detection]` and scores with
//! `nanoecr_analysis::scoring`'s matching of onsets within 2 ms (sign first; `--sign-blind` for the
//! nearest-onset matching it used before, under which the wrong signs below were found). A
//! wrong-sign pair is one of:
//! - **neighbour**: a true spike of the detected sign lies under the detection (its life overlaps
//!   the detection's samples): the detection is that spike's, and the matcher paired it with an
//!   opposite-sign spike whose onset happened to be closer;
//! - **after the matched spike**: no true spike of the detected sign under it, and it starts at
//!   most 3 samples after the matched spike ends or inside it (a rebound or undershoot the
//!   detector made of the matched spike);
//! - **noise**: neither; an excursion of the noise that fell within 2 ms of a true onset.
//!
//! `-v` prints every case. Measured (sign-blind, the fundamental-only canceller, `--harmonics 0`):
//! all 22 wrong signs of the boxcar, trapezoid and rise_decay cells at 1 kHz were neighbours,
//! three spike pairs shared by the cells (seeds 3 and 8).

use anyhow::{Context, Result};
use nanoecr_analysis::scoring::{match_onsets, match_spikes, ScoreOptions};
use nanoecr_core::config::{parse, SpikeShape};
use nanoecr_core::{Event, EventKind, Sample};
use nanoecr_detect::Detector;
use nanoecr_sim::matrix::{shape_name, NoiseFamily, SHAPES};
use nanoecr_sim::World;

#[path = "common/cell_run.rs"]
mod cell_run;
use cell_run::{run_config_text, VOLTAGE_V};

const CHUNK: usize = 4096;

/// Detected events and the ground truth of one run.
fn simulate(text: &str) -> Result<(Vec<Event>, Vec<Event>)> {
    let rc = parse(text, None).map_err(|e| anyhow::anyhow!("run config: {e}"))?;
    let rate_hz = rc.rate_hz();
    let sim = &rc.raw.simulation;
    let mut world = World::try_new(sim, rc.pillar, rate_hz)?;
    let mut detector = Detector::new(&rc.raw.detection, rc.pillar, rate_hz, rc.raw.acquisition.settle_s);
    let n = rc.expected_samples();
    let mut events = Vec::new();
    let mut chunk: Vec<Sample> = Vec::with_capacity(CHUNK);
    let mut delta_rho = Vec::with_capacity(CHUNK);
    for k in 0..n {
        let (segment, setpoint_un) = rc.load_function.setpoint_at(k as f64 / rate_hz);
        let ws = world.step(setpoint_un / sim.actuator_gain, segment);
        chunk.push(ws.to_sample(setpoint_un, segment, VOLTAGE_V, sim.circuit_resistance_ohm));
        if chunk.len() == CHUNK || k + 1 == n {
            delta_rho.clear();
            detector.process_slice(&chunk, &mut delta_rho, &mut |e| events.push(e));
            chunk.clear();
        }
    }
    detector.finish(&mut |e| events.push(e));
    Ok((events, world.ground_truth().to_vec()))
}

#[derive(Default, Clone, Copy)]
struct Tally {
    matched: usize,
    wrong: usize,
    neighbour: usize,
    /// Neighbour cases whose same-sign spike no other detection matched (a recall loss too).
    neighbour_unmatched: usize,
    after: usize,
    noise: usize,
}

fn sign_of(e: &Event) -> f64 {
    if e.magnitude >= 0.0 {
        1.0
    } else {
        -1.0
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let verbose = args.iter().any(|a| a == "-v");
    let sign_blind = args.iter().any(|a| a == "--sign-blind");
    let rate_hz: f64 = match args.iter().position(|a| a == "--rate") {
        Some(i) => args.get(i + 1).context("--rate needs Hz")?.parse().context("--rate")?,
        None => 1000.0,
    };
    let shapes: Vec<SpikeShape> = match args.iter().position(|a| a == "--shapes") {
        Some(i) => {
            let list = args.get(i + 1).context("--shapes needs a list")?;
            SHAPES.iter().copied().filter(|s| list.split(',').any(|n| n == shape_name(*s))).collect()
        }
        None => SHAPES.to_vec(),
    };
    let (runs, segment_s) = match rate_hz as u64 {
        1000 => (10, 10.0),
        10_000 => (4, 10.0),
        _ => (2, 10.0),
    };
    let detection = match args.iter().position(|a| a == "--harmonics") {
        Some(i) => format!("mains_harmonics = {}", args.get(i + 1).context("--harmonics needs N")?),
        None => String::new(),
    };
    let opts = ScoreOptions::for_rate(rate_hz);
    let tol_s = opts.tolerance_samples / rate_hz;
    let dt = 1.0 / rate_hz;
    let mut total = Tally::default();
    for &shape in &shapes {
        for family in NoiseFamily::ALL {
            let mut t = Tally::default();
            for seed in 1..=runs {
                let (events, truth) =
                    simulate(&run_config_text(shape, family, seed, rate_hz, segment_s, Some(&detection))?)?;
                let pops: Vec<&Event> = truth.iter().filter(|e| e.kind == EventKind::Popin).collect();
                // As the scorer: detections on a true pop-in are its spike.
                let det: Vec<&Event> = events
                    .iter()
                    .filter(|e| e.kind == EventKind::Spike)
                    .filter(|e| {
                        !pops.iter().any(|p| {
                            e.onset_time_s >= p.onset_time_s - tol_s
                                && e.onset_time_s <= p.onset_time_s + p.duration_s + tol_s
                        })
                    })
                    .collect();
                let tru: Vec<&Event> = truth.iter().filter(|e| e.kind == EventKind::Spike).collect();
                let pairs = if sign_blind {
                    match_onsets(
                        &det.iter().map(|e| e.onset_time_s).collect::<Vec<_>>(),
                        &tru.iter().map(|e| e.onset_time_s).collect::<Vec<_>>(),
                        tol_s,
                    )
                } else {
                    match_spikes(
                        &det.iter().map(|e| (e.onset_time_s, e.sign)).collect::<Vec<_>>(),
                        &tru.iter().map(|e| (e.onset_time_s, e.sign)).collect::<Vec<_>>(),
                        tol_s,
                    )
                };
                let matched_truth: Vec<bool> = {
                    let mut v = vec![false; tru.len()];
                    for &(_, ti) in &pairs {
                        v[ti] = true;
                    }
                    v
                };
                t.matched += pairs.len();
                for &(di, ti) in &pairs {
                    let (d, m) = (det[di], tru[ti]);
                    if d.sign == m.sign {
                        continue;
                    }
                    t.wrong += 1;
                    let sd = sign_of(d);
                    // The detection's samples, one sample of slack either side.
                    let (lo, hi) = (d.onset_time_s - dt, d.onset_time_s + d.duration_s + dt);
                    let under: Vec<usize> = (0..tru.len())
                        .filter(|&i| {
                            let e = tru[i];
                            sign_of(e) == sd && e.onset_time_s < hi && e.onset_time_s + e.duration_s > lo
                        })
                        .collect();
                    let m_end = m.onset_time_s + m.duration_s;
                    let class = if !under.is_empty() {
                        t.neighbour += 1;
                        if under.iter().all(|&i| !matched_truth[i]) {
                            t.neighbour_unmatched += 1;
                        }
                        "neighbour"
                    } else if d.onset_time_s >= m.onset_time_s - dt && d.onset_time_s <= m_end + 3.0 * dt {
                        t.after += 1;
                        "after the matched spike"
                    } else {
                        t.noise += 1;
                        "noise"
                    };
                    if verbose {
                        let near: Vec<String> = tru
                            .iter()
                            .filter(|e| (e.onset_time_s - d.onset_time_s).abs() < 0.005)
                            .map(|e| {
                                format!(
                                    "{:+.2} ms {:+.1e} {:.2} ms",
                                    (e.onset_time_s - d.onset_time_s) * 1e3,
                                    e.magnitude,
                                    e.duration_s * 1e3
                                )
                            })
                            .collect();
                        println!(
                            "{} {} seed {seed}: {class}: detected {:+.2e} at {:.4} s for {:.2} ms; matched {:+.2e} \
                             ({:+.2} ms, {:.2} ms long); true onsets within 5 ms: [{}]",
                            shape_name(shape),
                            family.name(),
                            d.magnitude,
                            d.onset_time_s,
                            d.duration_s * 1e3,
                            m.magnitude,
                            (m.onset_time_s - d.onset_time_s) * 1e3,
                            m.duration_s * 1e3,
                            near.join("; ")
                        );
                    }
                }
            }
            println!(
                "{} {} {} kHz: {} wrong of {} matched (sign {:.4}): neighbour {} ({} of them with the same-sign spike \
                 left unmatched), after the matched spike {}, noise {}",
                shape_name(shape),
                family.name(),
                rate_hz / 1e3,
                t.wrong,
                t.matched,
                1.0 - t.wrong as f64 / t.matched.max(1) as f64,
                t.neighbour,
                t.neighbour_unmatched,
                t.after,
                t.noise
            );
            total.matched += t.matched;
            total.wrong += t.wrong;
            total.neighbour += t.neighbour;
            total.neighbour_unmatched += t.neighbour_unmatched;
            total.after += t.after;
            total.noise += t.noise;
        }
    }
    println!(
        "all: {} wrong of {} matched: neighbour {} ({} unmatched), after the matched spike {}, noise {}",
        total.wrong, total.matched, total.neighbour, total.neighbour_unmatched, total.after, total.noise
    );
    Ok(())
}
