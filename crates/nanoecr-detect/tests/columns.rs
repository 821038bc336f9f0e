//! `detect_columns` (whose quiet loop reads the columns in place) against `process_slice` over
//! the rows the columns stand for: bit-identical Δρ/ρ and events, on simulated runs with spikes,
//! pop-ins, mains pick-up, 1/f noise, invalid currents, missing displacements, a time gap and
//! unknown segment codes.

mod common;

use common::{event_bits, simulated_trapezoid, PILLAR};
use nanoecr_core::config::{DetectionConfig, SimulationConfig};
use nanoecr_core::{Event, EventKind, Sample, Segment};
use nanoecr_detect::{detect_columns, Columns, Detector};

const SETTLE_S: f64 = 2.0;

/// Stored columns of one run.
struct Stored {
    time_s: Vec<f64>,
    disp_nm: Vec<f64>,
    current_a: Vec<f64>,
    load_un: Vec<f64>,
    segment: Vec<u8>,
}

impl Stored {
    fn columns(&self) -> Columns<'_> {
        Columns {
            time_s: &self.time_s,
            disp_nm: &self.disp_nm,
            current_a: &self.current_a,
            load_un: &self.load_un,
            segment: &self.segment,
        }
    }

    /// The rows the columns stand for, as the detector sees a stored run: no set-point, voltage
    /// or flags (an invalid current is stored as NaN), unknown segment codes as settle.
    fn rows(&self) -> Vec<Sample> {
        (0..self.time_s.len())
            .map(|i| Sample {
                seq: i as u64,
                time_s: self.time_s[i],
                setpoint_un: f64::NAN,
                load_un: self.load_un[i],
                disp_nm: self.disp_nm[i],
                current_a: self.current_a[i],
                voltage_v: f64::NAN,
                segment: Segment::from_code(self.segment[i]).unwrap_or(Segment::Settle),
                flags: 0,
            })
            .collect()
    }
}

/// A simulated trapezoid to `peak_un`, stored as columns with invalid currents (NaN), missing
/// displacements, 7 samples lost in transport and a few unknown segment codes, about once a
/// second each at 1 kHz and as often in time at other rates (so the reference window is clean).
fn stored_run(sim: &SimulationConfig, rate_hz: f64, peak_un: f64, hold_s: f64) -> Stored {
    // Perturbations every `p` samples, at an offset `o`, scaled to the rate.
    let per = |p: usize| ((p as f64 * rate_hz / 1000.0) as usize).max(p);
    let hit = |k: usize, p: usize, o: usize| k % per(p) == per(o);
    let mut st = Stored { time_s: vec![], disp_nm: vec![], current_a: vec![], load_un: vec![], segment: vec![] };
    for (k, s) in simulated_trapezoid(sim, rate_hz, SETTLE_S, peak_un, hold_s).into_iter().enumerate() {
        if (per(9000)..per(9000) + 7).contains(&k) {
            continue;
        }
        st.time_s.push(s.time_s);
        st.disp_nm.push(if hit(k, 1499, 700) { f64::NAN } else { s.disp_nm });
        st.current_a.push(if hit(k, 997, 500) { f64::NAN } else { s.current_a });
        st.load_un.push(s.load_un);
        st.segment.push(if hit(k, 3001, 1200) { 9 } else { s.segment.code() });
    }
    st
}

/// `process_slice` over the rows in `chunk`-row calls: (Δρ/ρ bits, event bits, quiet share).
fn sliced(cfg: &DetectionConfig, rate_hz: f64, rows: &[Sample], chunk: usize) -> (Vec<u64>, Vec<String>, f64) {
    let mut det = Detector::new(cfg, PILLAR, rate_hz, SETTLE_S);
    let (mut rho, mut events) = (Vec::new(), Vec::new());
    for part in rows.chunks(chunk) {
        det.process_slice(part, &mut rho, &mut |e| events.push(e));
    }
    det.finish(&mut |e| events.push(e));
    let quiet = det.quiet_samples() as f64 / rows.len() as f64;
    (rho.iter().map(|x| x.to_bits()).collect(), events.iter().map(event_bits).collect(), quiet)
}

/// `detect_columns`: (Δρ/ρ bits, event bits, events).
fn columns(cfg: &DetectionConfig, rate_hz: f64, st: &Stored) -> (Vec<u64>, Vec<String>, Vec<Event>) {
    let (rho, events) = detect_columns(cfg, PILLAR, rate_hz, SETTLE_S, st.columns());
    (rho.iter().map(|x| x.to_bits()).collect(), events.iter().map(event_bits).collect(), events)
}

/// `Detector::process_columns` over the columns in `block`-row calls, as a file reader hands them
/// over: (Δρ/ρ bits, event bits).
fn blocked(cfg: &DetectionConfig, rate_hz: f64, st: &Stored, block: usize) -> (Vec<u64>, Vec<String>) {
    let mut det = Detector::new(cfg, PILLAR, rate_hz, SETTLE_S);
    let (mut rho, mut events) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < st.time_s.len() {
        let end = (start + block).min(st.time_s.len());
        let cols = Columns {
            time_s: &st.time_s[start..end],
            disp_nm: &st.disp_nm[start..end],
            current_a: &st.current_a[start..end],
            load_un: &st.load_un[start..end],
            segment: &st.segment[start..end],
        };
        det.process_columns(cols, &mut rho, &mut |e| events.push(e));
        start = end;
    }
    det.finish(&mut |e| events.push(e));
    (rho.iter().map(|x| x.to_bits()).collect(), events.iter().map(event_bits).collect())
}

/// `detect_columns` gives the bits `process_slice` gives over the same rows, whole and in
/// 4096-row calls, and so does `process_columns` over blocks of columns of odd sizes; returns
/// the events.
fn check(cfg: &DetectionConfig, rate_hz: f64, st: &Stored) -> Vec<Event> {
    let rows = st.rows();
    let (got_rho, got_events, events) = columns(cfg, rate_hz, st);
    assert_eq!(got_rho.len(), rows.len(), "one Δρ/ρ per row");
    for chunk in [4096, usize::MAX] {
        let (want_rho, want_events, quiet) = sliced(cfg, rate_hz, &rows, chunk);
        if let Some(i) = got_rho.iter().zip(&want_rho).position(|(a, b)| a != b) {
            panic!(
                "chunk {chunk}: Δρ/ρ differs first at sample {i}: {} vs {}",
                f64::from_bits(got_rho[i]),
                f64::from_bits(want_rho[i])
            );
        }
        assert_eq!(got_events, want_events, "chunk {chunk}: events differ");
        assert!(quiet > 0.6, "most samples take the quiet loop, got {quiet}");
    }
    for block in [1, 997, 65_537] {
        let (rho, events) = blocked(cfg, rate_hz, st, block);
        assert!(rho == got_rho, "blocks of {block} columns: Δρ/ρ differs");
        assert_eq!(events, got_events, "blocks of {block} columns: events differ");
    }
    events
}

#[test]
fn columns_match_rows_with_spikes_popins_mains_gaps_and_invalid_currents() {
    let sim = SimulationConfig {
        seed: 21,
        mains_amplitude: 1e-4,
        mains_harmonics: 3,
        mains_drift_fraction: 0.5,
        pink_noise: 3e-5,
        popin_rate_per_s: 3.0,
        ..Default::default()
    };
    let st = stored_run(&sim, 1000.0, 9000.0, 5.0);
    let events = check(&DetectionConfig::default(), 1000.0, &st);
    let spikes = events.iter().filter(|e| e.kind == EventKind::Spike).count();
    let popins = events.iter().filter(|e| e.kind == EventKind::Popin).count();
    assert!(spikes >= 10 && popins >= 3, "the run must exercise the event paths: {spikes} spikes, {popins} pop-ins");
    assert!(st.current_a.iter().any(|c| c.is_nan()) && st.segment.contains(&9));
}

#[test]
fn columns_match_rows_at_100_khz_and_without_mains_cancelling() {
    let sim = SimulationConfig { seed: 22, pink_noise: 7e-5, mains_amplitude: 1e-4, ..Default::default() };
    let st = stored_run(&sim, 100_000.0, 6000.0, 0.3);
    for mains_hz in [50.0, 0.0] {
        let cfg = DetectionConfig { mains_hz, ..Default::default() };
        let events = check(&cfg, 100_000.0, &st);
        assert!(events.len() >= 10, "mains {mains_hz} Hz: {} events", events.len());
    }
}

/// The comparison can fail: one quiet sample's current nudged by an ulp in the columns changes
/// `detect_columns`' Δρ/ρ there.
#[test]
fn a_one_ulp_change_in_one_column_changes_the_bits() {
    let sim = SimulationConfig { seed: 23, ..Default::default() };
    let mut st = stored_run(&sim, 1000.0, 6000.0, 2.0);
    let cfg = DetectionConfig::default();
    let (before, _, _) = columns(&cfg, 1000.0, &st);
    let i = 12_345;
    st.current_a[i] = f64::from_bits(st.current_a[i].to_bits() + 1);
    let (after, _, _) = columns(&cfg, 1000.0, &st);
    assert_ne!(before[i], after[i], "sample {i}");
    assert_eq!(before[..i], after[..i], "nothing before sample {i} moves");
}
