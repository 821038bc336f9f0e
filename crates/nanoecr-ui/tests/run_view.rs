//! The run view on a real HDF5 file of 1.2 M samples written by the store's own writer: a
//! one-sample spike (p and n) is in the envelope at every zoom level and every position of the
//! window around it, the envelope's extremes match a full in-memory decimation, and what the view
//! keeps is the per-block summary (1/1024 of the run), not the run.

use std::path::Path;

use nanoecr_core::{Diagnostics, EndReason, RunConfig, Sample, Segment};
use nanoecr_store::{InstrumentInfo, RunWriter};
use nanoecr_ui::decimate::{minmax, Decimated, Series};
use nanoecr_ui::runview::{Cell, RunView, BLOCK};

const DEMO: &str = include_str!("../../../config/demo.toml");
/// Not a multiple of the block: the last block is partial.
const ROWS: usize = 1_200_337;
const RATE_HZ: f64 = 100_000.0;
const P_AT: usize = 777_777;
const P_VALUE: f64 = 3e-3;
const N_AT: usize = 1_000_003;
const N_VALUE: f64 = -2e-3;

fn rho(i: usize) -> f64 {
    match i {
        P_AT => P_VALUE,
        N_AT => N_VALUE,
        // A small deterministic ripple, so no two neighbouring samples are equal.
        _ => 1e-5 * ((i * 7919) % 13) as f64 / 13.0,
    }
}

fn load(i: usize) -> f64 {
    6000.0 * (i as f64 / ROWS as f64 * std::f64::consts::PI).sin()
}

fn write(path: &Path) {
    let cfg: RunConfig = nanoecr_core::config::parse(DEMO, None).expect("demo config");
    let info = InstrumentInfo { backend: "sim".into(), frame: "test".into(), smu: "test".into() };
    let mut w = RunWriter::create(path, &cfg, &info).expect("create");
    let mut at = 0;
    while at < ROWS {
        let to = (at + 50_000).min(ROWS);
        let s: Vec<Sample> = (at..to)
            .map(|i| Sample {
                seq: i as u64,
                time_s: i as f64 / RATE_HZ,
                setpoint_un: load(i),
                load_un: load(i) + 0.5,
                disp_nm: i as f64 * 1e-3,
                current_a: 1e-6,
                voltage_v: 5.0,
                segment: Segment::Load,
                flags: 0,
            })
            .collect();
        let r: Vec<f64> = (at..to).map(rho).collect();
        w.append(&s, &r).expect("append");
        at = to;
    }
    w.finish(&EndReason::Completed, &Diagnostics::default(), None).expect("finish");
}

fn series<'a>(d: &'a Decimated, name: &str) -> &'a [Option<f64>] {
    &d.series.iter().find(|(n, _)| *n == name).expect("series").1
}

fn extremes(v: &[Option<f64>]) -> (f64, f64) {
    v.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)))
}

#[test]
fn a_one_sample_spike_is_in_every_view_and_only_the_summary_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("long.h5");
    write(&path);
    let view = RunView::open(&path).expect("open the run");
    assert_eq!(view.rows, ROWS);
    assert_eq!(view.summary.cells.len(), ROWS.div_ceil(BLOCK));
    // What is held per run: one cell per block, under 1/10 of the time column alone.
    assert!(
        view.summary.bytes() <= ROWS.div_ceil(BLOCK) * std::mem::size_of::<Cell>(),
        "{} bytes",
        view.summary.bytes()
    );
    assert!(view.summary.bytes() * 10 < ROWS * 8, "{} bytes for {ROWS} samples", view.summary.bytes());

    let dt = 1.0 / RATE_HZ;
    for (at, value) in [(P_AT, P_VALUE), (N_AT, N_VALUE)] {
        let t = at as f64 * dt;
        // Half-widths from 3 samples to the whole run; the spike centred, at the left edge and at
        // the right edge of the window.
        for half in [3.0 * dt, 100.0 * dt, 1e-2, 0.1, 1.0, 5.0, 100.0] {
            for (t0, t1) in [(t - half, t + half), (t - dt * 0.25, t + 2.0 * half), (t - 2.0 * half, t + dt * 0.25)] {
                for px in [1, 7, 300, 1000, 1920, 4096] {
                    let d = view.window(t0, t1, px).expect("window");
                    assert!(d.time_s.len() <= (2 * px).max(d.samples_in_window.min(2 * px)), "{px}");
                    assert!(
                        series(&d, "delta_rho").contains(&Some(value)),
                        "spike at {at} lost in [{t0}, {t1}] at {px} px ({} samples)",
                        d.samples_in_window
                    );
                    assert!(d.time_s.windows(2).all(|w| w[1] >= w[0]), "time ordered");
                }
            }
        }
    }

    // Zoomed in to 5 samples: every one, as written.
    // Sample times as the writer stored them (i / rate), so the bounds hit them exactly.
    let ts = |i: usize| i as f64 / RATE_HZ;
    let d = view.window(ts(P_AT - 2), ts(P_AT + 2), 800).expect("window");
    assert!(d.full_resolution);
    assert_eq!(d.samples_in_window, 5);
    assert_eq!(series(&d, "delta_rho")[2], Some(P_VALUE));
    assert_eq!(series(&d, "load_un")[0], Some(load(P_AT - 2) + 0.5));

    // Against the decimation of the whole run in memory: same extremes of every series, in
    // windows served from the summary and from raw rows.
    let t: Vec<f64> = (0..ROWS).map(ts).collect();
    let l: Vec<f64> = (0..ROWS).map(|i| load(i) + 0.5).collect();
    let r: Vec<f64> = (0..ROWS).map(rho).collect();
    let mem = [Series { name: "load_un", values: &l }, Series { name: "delta_rho", values: &r }];
    for (t0, t1, px) in [(0.0, 1e9, 1000), (3.3, 9.1, 1920), (7.0, 7.5, 1000), (7.77, 7.78, 300)] {
        let d = view.window(t0, t1, px).expect("window");
        let m = minmax(&t, &mem, t0, t1, px);
        assert_eq!(d.samples_in_window, m.samples_in_window, "[{t0}, {t1}]");
        for name in ["load_un", "delta_rho"] {
            assert_eq!(extremes(series(&d, name)), extremes(series(&m, name)), "{name} in [{t0}, {t1}]");
        }
    }
}
