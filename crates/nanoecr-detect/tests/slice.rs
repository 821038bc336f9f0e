//! `process_slice` against `process`: bit-identical Δρ/ρ and events for every slicing, on
//! simulated runs that exercise each way out of the quiet loop (spikes, pop-ins, held spikes
//! falling due, mains pick-up, drift, 1/f noise, invalid and missing samples).

mod common;

use common::{event_bits, simulated_trapezoid, spoil, Spoil, PILLAR};
use nanoecr_core::config::{DetectionConfig, SimulationConfig};
use nanoecr_core::{Event, EventKind, Sample};
use nanoecr_detect::Detector;

const SETTLE_S: f64 = 2.0;

/// A simulated trapezoid to `peak_un` with `hold_s` of hold, open loop.
fn simulate(sim: &SimulationConfig, rate_hz: f64, peak_un: f64, hold_s: f64) -> Vec<Sample> {
    simulated_trapezoid(sim, rate_hz, SETTLE_S, peak_un, hold_s)
}

/// What a detector exports about itself, as bits: the reference, σ and the counts of level
/// shifts and short excursions.
fn exported(det: &Detector) -> String {
    let reference = det.reference().map(|r| (r.time_s.to_bits(), r.strain.to_bits(), r.current_a.to_bits()));
    format!("{reference:?} {:x} {} {}", det.noise_sigma().to_bits(), det.level_shifts(), det.short_rejected())
}

/// Per-sample reference, then every slicing in `chunks`: identical outputs, and identical
/// exported state wherever a slice ends (for slicings of 1000 samples and more) and at the end;
/// returns the events and the share of samples the quiet loop took (for the whole-slice pass).
fn check(cfg: &DetectionConfig, rate_hz: f64, samples: &[Sample], chunks: &[usize]) -> (Vec<Event>, f64) {
    let mut det = Detector::new(cfg, PILLAR, rate_hz, SETTLE_S);
    let mut want_events = Vec::new();
    // The exported state after each sample whose index + 1 is a multiple of 1000.
    let mut want_state = Vec::new();
    let want_rho: Vec<u64> = samples
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let d = det.process(s, &mut |e| want_events.push(e)).to_bits();
            if (i + 1) % 1000 == 0 {
                want_state.push(exported(&det));
            }
            d
        })
        .collect();
    det.finish(&mut |e| want_events.push(e));
    let want_end = exported(&det);
    assert_eq!(det.quiet_samples(), 0, "per-sample calls never take the quiet loop");
    let want: Vec<String> = want_events.iter().map(event_bits).collect();
    let mut quiet_share = 0.0;
    for &chunk in chunks {
        let mut det = Detector::new(cfg, PILLAR, rate_hz, SETTLE_S);
        let mut events = Vec::new();
        let mut rho = Vec::with_capacity(samples.len());
        for part in samples.chunks(chunk) {
            det.process_slice(part, &mut rho, &mut |e| events.push(e));
            if chunk >= 1000 && chunk % 1000 == 0 && rho.len() % chunk == 0 {
                let at = rho.len() / 1000 - 1;
                assert_eq!(exported(&det), want_state[at], "chunk {chunk}: exported state after {} samples", rho.len());
            }
        }
        det.finish(&mut |e| events.push(e));
        assert_eq!(exported(&det), want_end, "chunk {chunk}: exported state at the end");
        assert_eq!(rho.len(), samples.len(), "chunk {chunk}: one Δρ/ρ per sample");
        if let Some(i) = rho.iter().zip(&want_rho).position(|(a, b)| a.to_bits() != *b) {
            panic!("chunk {chunk}: Δρ/ρ differs first at sample {i}: {} vs {}", rho[i], f64::from_bits(want_rho[i]));
        }
        let got: Vec<String> = events.iter().map(event_bits).collect();
        assert_eq!(got, want, "chunk {chunk}: events differ");
        quiet_share = det.quiet_samples() as f64 / samples.len() as f64;
    }
    (want_events, quiet_share)
}

const CHUNKS: [usize; 6] = [1, 7, 1000, 4000, 4096, usize::MAX];

#[test]
fn slices_match_per_sample_calls_with_spikes_popins_mains_drift_and_pink_noise() {
    let sim = SimulationConfig {
        seed: 11,
        mains_amplitude: 1e-4,
        // Harmonics and a drifting amplitude: the canceller's harmonic phasors and weights take
        // the same path through the quiet loop.
        mains_harmonics: 3,
        mains_drift_fraction: 0.5,
        drift_nm_per_s: 2.0,
        pink_noise: 3e-5,
        popin_rate_per_s: 3.0,
        ..Default::default()
    };
    // 9000 µN on a 2 µm pillar is ≈ 2900 MPa, above the simulator's pop-in stress.
    let samples = simulate(&sim, 1000.0, 9000.0, 5.0);
    let (events, quiet) = check(&DetectionConfig::default(), 1000.0, &samples, &CHUNKS);
    let spikes = events.iter().filter(|e| e.kind == EventKind::Spike).count();
    let popins = events.iter().filter(|e| e.kind == EventKind::Popin).count();
    assert!(spikes >= 20 && popins >= 3, "the run must exercise the event paths: {spikes} spikes, {popins} pop-ins");
    assert!(quiet > 0.6, "most samples after settle and warm-up take the quiet loop, got {quiet}");
}

#[test]
fn slices_match_at_10_khz_and_without_mains_cancelling() {
    let sim = SimulationConfig { seed: 12, popin_rate_per_s: 2.0, ..Default::default() };
    let samples = simulate(&sim, 10_000.0, 9000.0, 1.0);
    // Without contact detection the provisional reference is set from the first sample on, and
    // the settle loop takes the settle window from there (the simulated run's pre-contact
    // flicker then reaches into the reference, and far fewer samples are quiet afterwards).
    for (mains_hz, detect_contact) in [(50.0, true), (0.0, true), (50.0, false)] {
        let cfg = DetectionConfig { mains_hz, detect_contact, ..Default::default() };
        let (events, quiet) = check(&cfg, 10_000.0, &samples, &[3, 4096, usize::MAX]);
        assert!(events.len() >= 10, "mains {mains_hz} Hz, contact {detect_contact}: {} events", events.len());
        let want_quiet = if detect_contact { 0.6 } else { 0.1 };
        assert!(quiet > want_quiet, "mains {mains_hz} Hz, contact {detect_contact}: quiet share {quiet}");
    }
}

#[test]
fn slices_match_at_100_khz_where_the_smoothed_residual_confirms_events() {
    // 20-sample running mean (`smooth_window_s` 0.2 ms): its ring, sum and σ histogram advance
    // in the quiet loop and in the general path alike. 1/f noise and mains exercise its σ.
    let sim = SimulationConfig { seed: 13, pink_noise: 7e-5, mains_amplitude: 1e-4, ..Default::default() };
    let samples = simulate(&sim, 100_000.0, 6000.0, 0.5);
    let (events, quiet) = check(&DetectionConfig::default(), 100_000.0, &samples, &[5, 4096, usize::MAX]);
    assert!(events.len() >= 10, "{} events", events.len());
    assert!(quiet > 0.6, "quiet share {quiet}");
}

#[test]
fn slices_match_with_invalid_and_missing_samples() {
    let sim = SimulationConfig { seed: 13, mains_amplitude: 5e-5, ..Default::default() };
    let mut samples = simulate(&sim, 1000.0, 6000.0, 5.0);
    spoil(&mut samples, &Spoil { invalid_current: (997, 500), nan_disp: (1499, 700), nan_current: (2003, 900) });
    // A gap: 7 samples lost in transport (the mains phasor must re-synchronise from the time stamp).
    samples.drain(9000..9007);
    let (events, quiet) = check(&DetectionConfig::default(), 1000.0, &samples, &CHUNKS);
    assert!(!events.is_empty());
    assert!(quiet > 0.6, "quiet share {quiet}");
}

#[test]
fn slices_match_through_the_settle_window_with_invalid_and_missing_samples_at_100_khz() {
    // The settle window's own loops (before contact; the provisional reference up to the final
    // one; the noise window still filling after it), interrupted by what they hand to the
    // general path: invalid and non-finite currents (which restart the contact window before
    // contact), missing displacements and a gap in time, before and after contact.
    let sim = SimulationConfig { seed: 14, mains_amplitude: 1e-4, mains_harmonics: 2, ..Default::default() };
    let mut samples = simulate(&sim, 100_000.0, 6000.0, 0.2);
    let broken = Spoil { invalid_current: (29_989, 7_000), nan_current: (40_009, 13_000), nan_disp: (35_017, 21_000) };
    spoil(&mut samples, &broken);
    samples.drain(90_000..90_013);
    samples.drain(170_000..170_005);
    let cfg = DetectionConfig::default();
    let (events, _) = check(&cfg, 100_000.0, &samples, &[5, 4000, usize::MAX]);
    assert!(!events.is_empty());
    // Before the reference the loops took nearly every sample: all but the contact window's
    // first fill (and refills after an invalid current), the baseline's and the noise window's
    // warm-up after contact and the samples handed over.
    let settle = samples.iter().take_while(|s| s.time_s < SETTLE_S).count();
    let mut det = Detector::new(&cfg, PILLAR, 100_000.0, SETTLE_S);
    let mut rho = Vec::new();
    det.process_slice(&samples[..settle], &mut rho, &mut |_| {});
    assert!(det.reference().is_none(), "the reference comes at the first sample at or past settle_s");
    let quiet = det.quiet_samples() as f64 / settle as f64;
    assert!(quiet > 0.8, "settle window through the block loops: {quiet}");
}
