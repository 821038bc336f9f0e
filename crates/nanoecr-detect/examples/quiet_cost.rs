//! One `process_slice` pass over the throughput bench's simulated runs (1 and 100 kHz), printing
//! how many samples took the quiet loop: the input for counting instructions per quiet sample.
//!
//! ```text
//! cargo build --release -p nanoecr-detect --example quiet_cost
//! valgrind --tool=callgrind --toggle-collect='*run_quiet*' target/release/examples/quiet_cost 1000
//! ```
//!
//! The first argument picks the rate (1000 or 100000; both when absent), the second repeats the
//! pass (default 1; more for `perf record`).
//!
//! Instructions per quiet sample = the collected Ir ÷ the quiet samples printed (the few
//! general-path samples between quiet runs are not collected).

use std::hint::black_box;

use nanoecr_core::config::DetectionConfig;
use nanoecr_detect::Detector;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{trapezoid_run, PILLAR};

const CHUNK: usize = 4096;

fn main() {
    let cfg = DetectionConfig::default();
    let only: Option<f64> = std::env::args().nth(1).and_then(|a| a.parse().ok());
    let passes: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    // 1 kHz: 2 s settle + 3 × 100 s; 100 kHz: 2 s settle + 3 × 1 s.
    for (rate_hz, segment_s) in [(1_000.0, 100.0), (100_000.0, 1.0)] {
        if only.is_some_and(|r| r != rate_hz) {
            continue;
        }
        let data = trapezoid_run(rate_hz, segment_s, 6000.0);
        for _ in 1..passes {
            let mut det = Detector::new(&cfg, PILLAR, rate_hz, 2.0);
            let mut rho = Vec::with_capacity(CHUNK);
            for chunk in data.chunks(CHUNK) {
                rho.clear();
                det.process_slice(black_box(chunk), &mut rho, &mut |_| {});
                black_box(&rho);
            }
        }
        let mut det = Detector::new(&cfg, PILLAR, rate_hz, 2.0);
        let mut rho = Vec::with_capacity(CHUNK);
        let mut events = 0usize;
        for chunk in data.chunks(CHUNK) {
            rho.clear();
            det.process_slice(black_box(chunk), &mut rho, &mut |_| events += 1);
            black_box(&rho);
        }
        det.finish(&mut |_| events += 1);
        println!(
            "{rate_hz:>7.0} Hz: {} samples, {} through the quiet loop, {events} events",
            data.len(),
            det.quiet_samples()
        );
    }
}
