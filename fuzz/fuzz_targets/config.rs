//! The run-config loader on arbitrary text: it validates or returns an error naming what is
//! wrong; it never panics, and whatever it accepts respects the documented bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nanoecr_core::config::{self, MAX_PROGRAM_S, MAX_SAMPLES};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match config::parse(text, None) {
        Ok(c) => {
            let total = c.load_function.total_s();
            assert!(total.is_finite() && total <= MAX_PROGRAM_S, "{total}");
            assert!(c.expected_samples() <= MAX_SAMPLES);
            // The displayed error path and line lookup must not panic on accepted text either.
            let _ = config::line_of_key(text, "load_function.segments[0].duration_s");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
