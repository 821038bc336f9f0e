//! Ring-buffer throughput between two threads for the `Sample` type: rtrb (what the pipeline
//! uses) next to crossbeam's `ArrayQueue` and `std::sync::mpsc`, at batch 1 and batch 64.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use nanoecr_core::Sample;

/// Ring capacity (the pipeline's default at 1 kHz is 16 384).
const CAPACITY: usize = 16_384;

fn sample(i: u64) -> Sample {
    Sample { seq: i, time_s: i as f64, ..Sample::default() }
}

/// Items per second for rtrb with the given batch size.
pub fn rtrb(batch: usize, items: u64) -> f64 {
    let (mut tx, mut rx) = rtrb::RingBuffer::<Sample>::new(CAPACITY);
    let start = Instant::now();
    let consumer = std::thread::spawn(move || {
        let mut seen = 0u64;
        let mut check = 0u64;
        while seen < items {
            let n = rx.slots().min(batch.max(1));
            if n == 0 {
                std::hint::spin_loop();
                continue;
            }
            if let Ok(chunk) = rx.read_chunk(n) {
                for s in chunk.into_iter() {
                    check = check.wrapping_add(s.seq);
                    seen += 1;
                }
            }
        }
        check
    });
    let mut i = 0u64;
    while i < items {
        if batch <= 1 {
            if tx.push(sample(i)).is_ok() {
                i += 1;
            } else {
                std::hint::spin_loop();
            }
        } else {
            let n = tx.slots().min(batch).min((items - i) as usize);
            if n == 0 {
                std::hint::spin_loop();
                continue;
            }
            if let Ok(chunk) = tx.write_chunk_uninit(n) {
                let base = i;
                let written = chunk.fill_from_iter((0..n as u64).map(|k| sample(base + k)));
                i += written as u64;
            }
        }
    }
    let check = consumer.join().unwrap_or(0);
    assert_eq!(check, items * (items - 1) / 2, "rtrb lost or reordered items");
    items as f64 / start.elapsed().as_secs_f64()
}

/// Items per second for crossbeam's `ArrayQueue` (batch size only changes the consumer's loop).
pub fn array_queue(batch: usize, items: u64) -> f64 {
    let q = Arc::new(crossbeam_queue::ArrayQueue::<Sample>::new(CAPACITY));
    let start = Instant::now();
    let qc = Arc::clone(&q);
    let consumer = std::thread::spawn(move || {
        let mut seen = 0u64;
        let mut check = 0u64;
        while seen < items {
            let mut got = 0;
            while got < batch.max(1) {
                match qc.pop() {
                    Some(s) => {
                        check = check.wrapping_add(s.seq);
                        seen += 1;
                        got += 1;
                    }
                    None => break,
                }
            }
            if got == 0 {
                std::hint::spin_loop();
            }
        }
        check
    });
    let mut i = 0u64;
    while i < items {
        if q.push(sample(i)).is_ok() {
            i += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    let check = consumer.join().unwrap_or(0);
    assert_eq!(check, items * (items - 1) / 2, "ArrayQueue lost items");
    items as f64 / start.elapsed().as_secs_f64()
}

/// Items per second for `std::sync::mpsc::sync_channel` (batch 1) or a channel of `Vec` batches.
pub fn std_mpsc(batch: usize, items: u64) -> f64 {
    let start = Instant::now();
    let check = if batch <= 1 {
        let (tx, rx) = mpsc::sync_channel::<Sample>(CAPACITY);
        let consumer = std::thread::spawn(move || rx.iter().map(|s| s.seq).fold(0u64, u64::wrapping_add));
        for i in 0..items {
            if tx.send(sample(i)).is_err() {
                break;
            }
        }
        drop(tx);
        consumer.join().unwrap_or(0)
    } else {
        let (tx, rx) = mpsc::sync_channel::<Vec<Sample>>(CAPACITY / batch);
        let consumer = std::thread::spawn(move || {
            rx.iter().flat_map(|v| v.into_iter()).map(|s| s.seq).fold(0u64, u64::wrapping_add)
        });
        let mut i = 0;
        while i < items {
            let n = (batch as u64).min(items - i);
            let v: Vec<Sample> = (i..i + n).map(sample).collect();
            if tx.send(v).is_err() {
                break;
            }
            i += n;
        }
        drop(tx);
        consumer.join().unwrap_or(0)
    };
    assert_eq!(check, items * (items - 1) / 2, "mpsc lost items");
    items as f64 / start.elapsed().as_secs_f64()
}

/// The ring section: items/s for each ring at batch 1 and 64, median of `reps` runs each.
pub fn section(quick: bool) -> Vec<crate::report::Row> {
    use crate::report::{median, Row};
    // rtrb moves hundreds of millions of items a second: tens of millions keep a run above
    // 50 ms. mpsc is an order of magnitude slower, so it moves a quarter as many.
    let items: u64 = if quick { 4_000_000 } else { 20_000_000 };
    let reps = if quick { 3 } else { 5 };
    let mut rows = Vec::new();
    for batch in [1usize, 64] {
        let measure = |f: &dyn Fn() -> f64| (0..reps).map(|_| f()).collect::<Vec<f64>>();
        let r = measure(&|| rtrb(batch, items));
        let q = measure(&|| array_queue(batch, items));
        let m = measure(&|| std_mpsc(batch, items / 4));
        let best_other = median(&q).max(median(&m));
        let batch_note = if batch == 1 { "push/pop one at a time" } else { "chunks of 64 (mpsc: Vec<Sample> of 64)" };
        rows.push(
            Row::new("ring", format!("rtrb (pipeline ring), batch {batch}"), "items/s", r)
                .target("≥ every alternative at this batch", |v| v >= best_other)
                .note(format!("Sample = {} B; {batch_note}", std::mem::size_of::<Sample>())),
        );
        rows.push(Row::new("ring", format!("crossbeam ArrayQueue, batch {batch}"), "items/s", q).note(if batch == 1 {
            "MPMC queue, one CAS per item"
        } else {
            "producer pushes singly; consumer pops up to 64 per loop"
        }));
        rows.push(Row::new("ring", format!("std mpsc sync_channel, batch {batch}"), "items/s", m));
    }
    rows
}
