//! `Detector::process_slice` throughput on a loaded machine: every 4096-sample chunk of a
//! simulated run is timed on its own over several passes, and the fastest time of each chunk is
//! summed (a chunk takes ≈ 0.1 ms, far under a scheduler slice, so its fastest pass is one no
//! other process interrupted). Compare builds with this, not with a whole-pass median, when the
//! host is shared.
//!
//! ```text
//! cargo run --release -p nanoecr-detect --example chunk_speed [-- PASSES]
//! ```

use std::hint::black_box;
use std::time::Instant;

use nanoecr_core::config::DetectionConfig;
use nanoecr_core::Sample;
use nanoecr_detect::Detector;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{trapezoid_run, PILLAR};

const CHUNK: usize = 4096;

fn main() {
    let passes: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(15);
    let cfg = DetectionConfig::default();
    for (rate_hz, segment_s) in [(1_000.0, 200.0), (100_000.0, 4.0)] {
        let data = trapezoid_run(rate_hz, segment_s, 6000.0);
        let chunks: Vec<&[Sample]> = data.chunks(CHUNK).collect();
        let mut best = vec![f64::INFINITY; chunks.len()];
        let mut events = 0usize;
        let mut rho = Vec::with_capacity(CHUNK);
        for _ in 0..passes {
            let mut det = Detector::new(&cfg, PILLAR, rate_hz, 2.0);
            events = 0;
            for (i, c) in chunks.iter().enumerate() {
                rho.clear();
                let t0 = Instant::now();
                det.process_slice(black_box(c), &mut rho, &mut |e| events += black_box(e).segment as usize + 1);
                best[i] = best[i].min(t0.elapsed().as_secs_f64());
                black_box(&rho);
            }
            det.finish(&mut |_| events += 1);
        }
        // Skip the settle (reference search, not the steady state the target is about).
        let skip = ((2.0 * rate_hz) as usize).div_ceil(CHUNK);
        let t: f64 = best[skip..].iter().sum();
        let n = data.len() - skip * CHUNK;
        println!(
            "{rate_hz:>7.0} Hz: {:6.2} M samples/s after settle (sum of each chunk's fastest of {passes} passes; {n} samples, {events} event callbacks)",
            n as f64 / t / 1e6
        );
    }
}
