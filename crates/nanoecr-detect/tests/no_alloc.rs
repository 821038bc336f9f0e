//! `Detector::process` and `process_slice` must not touch the heap: a counting global allocator watches 100 000
//! samples (spikes, a pop-in, level shifts, mains) after warm-up and must see zero allocations.
#![allow(unsafe_code)] // a GlobalAlloc impl is unsafe by definition; it only forwards to System

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use common::{boxcar, Extra, Synth, PILLAR};
use nanoecr_core::config::DetectionConfig;
use nanoecr_detect::Detector;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The count is process-wide and the test harness runs tests on parallel threads: each test
/// holds this while it runs, so no other test's set-up allocates inside its measured window.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn process_does_not_allocate_after_warm_up() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut syn = Synth::new(1000.0, 105.0);
    syn.mains_amplitude = 1e-4;
    let samples = syn.build(|i, _| {
        // A spike every 97 ms, a pop-in with its spike and strain step every 5 s.
        let spike = if i % 97 == 0 {
            if i % 2 == 0 {
                1e-3
            } else {
                -1e-3
            }
        } else {
            0.0
        };
        let since_popin = i % 5000;
        let jump = if i > 5000 && since_popin < 3 {
            4.0 * (since_popin + 1) as f64 / 3.0
        } else if i > 5000 {
            4.0
        } else {
            0.0
        };
        let popins_done = (i / 5000) as f64 - 1.0;
        let disp = jump + 4.0 * popins_done.max(0.0);
        let step = 0.5 * disp / PILLAR.height_nm();
        Extra {
            delta_rho: spike + boxcar(since_popin, 0, 3, if i > 5000 { 3e-3 } else { 0.0 }) + step,
            disp_nm: disp,
            quiet: false,
        }
    });
    let mut det = Detector::new(&DetectionConfig::default(), PILLAR, syn.rate_hz, syn.settle_s);
    let mut events = 0u64;
    let warm_up = 5_000;
    for s in &samples[..warm_up] {
        det.process(s, &mut |_| events += 1);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for s in &samples[warm_up..warm_up + 100_000] {
        det.process(s, &mut |_| events += 1);
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "allocations in process()");
    // The run did exercise the event paths.
    assert!(events > 500, "events {events}");

    // The same through `process_slice`, in the consumer's chunks, into a buffer with capacity.
    let mut det = Detector::new(&DetectionConfig::default(), PILLAR, syn.rate_hz, syn.settle_s);
    let mut rho = Vec::with_capacity(4096);
    let mut slice_events = 0u64;
    det.process_slice(&samples[..warm_up], &mut Vec::with_capacity(warm_up), &mut |_| slice_events += 1);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for chunk in samples[warm_up..warm_up + 100_000].chunks(4096) {
        rho.clear();
        det.process_slice(chunk, &mut rho, &mut |_| slice_events += 1);
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "allocations in process_slice()");
    assert_eq!(slice_events, events, "same events as process()");
    assert!(det.quiet_samples() > 50_000, "the quiet loop ran: {}", det.quiet_samples());
}

#[test]
fn process_at_100_khz_with_the_smoother_does_not_allocate() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // At 100 kHz the 0.2 ms running mean confirms events: its buffers too are allocated up front.
    let syn = Synth::new(100_000.0, 5.0);
    let samples = syn.build(|i, _| Extra {
        // A 1.2 ms spike of alternating sign every 10 ms.
        delta_rho: boxcar(i % 1000, 0, 120, if (i / 1000) % 2 == 0 { 4e-4 } else { -8e-4 }),
        ..Default::default()
    });
    let warm_up = 300_000;
    let mut det = Detector::new(&DetectionConfig::default(), PILLAR, syn.rate_hz, syn.settle_s);
    let mut events = 0u64;
    for s in &samples[..warm_up] {
        det.process(s, &mut |_| events += 1);
    }
    let mut rho = Vec::with_capacity(4096);
    let (before, events_before) = (ALLOCATIONS.load(Ordering::Relaxed), events);
    for (j, chunk) in samples[warm_up..].chunks(4096).enumerate() {
        rho.clear();
        if j % 2 == 0 {
            det.process_slice(chunk, &mut rho, &mut |_| events += 1);
        } else {
            for s in chunk {
                det.process(s, &mut |_| events += 1);
            }
        }
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(after - before, 0, "allocations at 100 kHz");
    assert!(events - events_before > 100, "the run did exercise the event paths: {}", events - events_before);
}
