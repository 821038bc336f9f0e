//! Offline throughput of `Detector::process` on one core: simulated samples are generated up front
//! (not timed), then pushed one by one through the detector, the call the consumer thread makes.
//!
//! ```text
//! cargo bench -p nanoecr-detect --bench throughput
//! ```

use std::hint::black_box;
use std::time::Instant;

use nanoecr_core::config::DetectionConfig;
use nanoecr_core::Sample;
use nanoecr_detect::Detector;

#[path = "common/mod.rs"]
mod common;
use common::{trapezoid_run, PILLAR};

/// The detector's target, samples/s.
const TARGET_PER_S: f64 = 50e6;

/// Samples per `process_slice` call: what the daemon's consumer takes from the ring at most.
const CHUNK: usize = 4096;

/// One timed pass over `data`: samples/s and the number of event callbacks.
fn pass(cfg: &DetectionConfig, rate_hz: f64, data: &[Sample], sliced: bool) -> (f64, usize) {
    let mut det = Detector::new(cfg, PILLAR, rate_hz, 2.0);
    let mut n_events = 0usize;
    let mut rho = Vec::with_capacity(CHUNK);
    let mut acc = 0.0;
    let t0 = Instant::now();
    if sliced {
        for chunk in data.chunks(CHUNK) {
            rho.clear();
            det.process_slice(black_box(chunk), &mut rho, &mut |e| n_events += black_box(e).segment as usize + 1);
            acc += rho.iter().filter(|d| d.is_finite()).sum::<f64>();
        }
    } else {
        for s in data {
            let d = det.process(black_box(s), &mut |e| n_events += black_box(e).segment as usize + 1);
            acc += if d.is_finite() { d } else { 0.0 };
        }
    }
    det.finish(&mut |_| n_events += 1);
    let per_s = data.len() as f64 / t0.elapsed().as_secs_f64();
    black_box(acc);
    (per_s, n_events)
}

fn main() {
    let cfg = DetectionConfig::default();
    for rate_hz in [1_000.0, 100_000.0] {
        let data = trapezoid_run(rate_hz, 10.0, 7000.0);
        for (name, sliced) in [("process", false), ("process_slice", true)] {
            let mut best = 0.0f64;
            let mut events = 0usize;
            for _ in 0..5 {
                let (per_s, n) = pass(&cfg, rate_hz, &data, sliced);
                best = best.max(per_s);
                events = n;
            }
            println!(
                "{name:>13} @ {:>6.0} Hz: {:>7.1} M samples/s (best of 5, {} samples, {} event callbacks){}",
                rate_hz,
                best / 1e6,
                data.len(),
                events,
                if best >= TARGET_PER_S { "" } else { "  below the 50 M samples/s target" }
            );
        }
    }
}
