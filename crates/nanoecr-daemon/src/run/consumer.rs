//! The consumer thread: pops samples from the ring in chunks, runs the streaming detector, writes
//! the HDF5 file in blocks and flushes it at least every `flush_interval_ms`, and publishes
//! progress, events and decimated samples to a bounded channel with `try_send` (a stalled
//! reader loses updates, never samples).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use nanoecr_core::{Diagnostics, EndReason, Event, EventKind, Progress, RunConfig, RunSummary, Sample, Segment, Sign};
use nanoecr_detect::Detector;
use nanoecr_store::RunWriter;

use super::control::ControlOutcome;
use super::shared::Shared;
use super::{LiveBatch, RunUpdate};

/// Samples taken from the ring per round; also the writer's append granularity.
const CHUNK: usize = 4096;
/// How long the consumer of a paced run naps after a round that found little in the ring (see
/// [`Consumer::run`]): it then wakes ≈ 200 times a second and takes ≈ 500 samples per round at
/// 100 kHz, instead of ≈ 1 000 wake-ups of ≈ 100 samples with a 0.5 ms nap on an empty ring.
/// Every wake-up is a pass through the kernel (timer, context switch, HDF5 append) that may land
/// on the control thread's CPU, and on a kernel without forced preemption (`preempt=none`) a
/// real-time wake-up waits for such a pass to end. Short against the 100 ms flush and
/// publication intervals; detection events reach subscribers at most one nap later (interlocks
/// are the control loop's, never delayed by it).
const PACED_NAP: Duration = Duration::from_millis(5);
/// How long the consumer of an unpaced run naps on an empty ring: there the loop waits for ring
/// space, so a longer nap would only slow the run down.
const IDLE_NAP: Duration = Duration::from_micros(500);
/// Progress and decimated samples are published at this interval.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Decimated samples per publication: 100 per 100 ms, so at 1 kHz every sample goes out.
const SAMPLES_PER_PUBLISH: usize = 100;

/// `seq % every`, from the previous sample's `phase` when `seq` is the `expected` one (the
/// previous sample's seq + 1; 0 means none), else by division.
#[inline]
fn bucket_phase(seq: u64, expected: u64, phase: u64, every: u64) -> u64 {
    if seq == expected && expected != 0 {
        if phase + 1 >= every {
            0
        } else {
            phase + 1
        }
    } else {
        seq % every
    }
}

/// How long the consumer naps, and below how many samples taken in a round it naps at all.
/// Paced: after any round that took less than a quarter of the ring (or a chunk), and never
/// longer than the loop takes to fill a quarter of the ring, so the ring stays at least three
/// quarters free whatever its configured size; a backlog is drained without napping. Unpaced:
/// only on an empty ring, briefly.
fn nap_policy(paced: bool, capacity: usize, rate_hz: f64) -> (Duration, usize) {
    if !paced {
        return (IDLE_NAP, 1);
    }
    let quarter = (capacity / 4).max(1);
    let fill_quarter = Duration::from_secs_f64(quarter as f64 / rate_hz);
    (PACED_NAP.min(fill_quarter), CHUNK.min(quarter))
}

/// What the consumer needs.
pub struct Consumer {
    /// The run config.
    pub cfg: RunConfig,
    /// Samples from the control loop.
    pub ring: rtrb::Consumer<Sample>,
    /// Interlock events from the control loop.
    pub control_events: rtrb::Consumer<Event>,
    /// The open run file.
    pub writer: RunWriter,
    /// Shared counters and stop requests.
    pub shared: Arc<Shared>,
    /// The control thread's outcome arrives here when it ends.
    pub control_done: Receiver<ControlOutcome>,
    /// Where updates go.
    pub updates: Sender<RunUpdate>,
    /// Whether the run is paced in real time (detection latency is only meaningful then).
    pub paced: bool,
    /// See `RunOptions::hold_consumer_until_control_ends`.
    pub hold_until_control_ends: bool,
    /// See `RunOptions::hold_consumer_until_ring_full`: the consumer starts once the loop has
    /// dropped the sending end (on a full ring, or at its end).
    pub ring_full_gate: Option<Receiver<()>>,
}

#[derive(Default)]
struct Counts {
    spikes_p: u64,
    spikes_n: u64,
    popins: u64,
    interlocks: u64,
    by_segment: [(u64, u64); 5],
}

impl Counts {
    fn add(&mut self, e: &Event) {
        match e.kind {
            EventKind::Spike => {
                let slot = &mut self.by_segment[e.segment.code() as usize % 5];
                if e.sign == Sign::P {
                    self.spikes_p += 1;
                    slot.0 += 1;
                } else {
                    self.spikes_n += 1;
                    slot.1 += 1;
                }
            }
            EventKind::Popin => self.popins += 1,
            EventKind::Interlock => self.interlocks += 1,
        }
    }
}

impl Consumer {
    /// Run until the control loop has ended and the ring is drained; close the file.
    pub fn run(mut self) -> Result<RunSummary, nanoecr_store::StoreError> {
        let wall0 = Instant::now();
        let cfg = &self.cfg;
        let dt_s = cfg.dt_s();
        let mut detector = Detector::new(&cfg.raw.detection, cfg.pillar, cfg.rate_hz(), cfg.raw.acquisition.settle_s);
        let flush_every = Duration::from_secs_f64(cfg.raw.acquisition.flush_interval_ms / 1000.0);
        let mut rho: Vec<f64> = Vec::with_capacity(CHUNK);
        let mut events: Vec<Event> = Vec::with_capacity(256);
        let mut counts = Counts::default();
        let mut detection_latency = nanoecr_core::LatencyHistogram::default();
        let mut last_flush = Instant::now();
        let mut last_publish = Instant::now();
        let mut last_sample = Sample::default();
        let mut last_rho = f64::NAN;
        let mut written: u64 = 0;
        let mut storage_error: Option<String> = None;
        let mut outcome: Option<ControlOutcome> = None;
        if self.hold_until_control_ends {
            outcome = self.control_done.recv().ok();
        }
        if let Some(gate) = self.ring_full_gate.take() {
            // Nothing is ever sent: this returns when the loop drops the sender.
            let _ = gate.recv();
        }
        let mut decimated = LiveBatch::with_capacity(SAMPLES_PER_PUBLISH);
        // Whether the last kept sample's bucket is still collecting Δρ/ρ extremes.
        let mut bucket_open = false;
        // seq mod decimate_every of the last sample taken, and the seq expected next (0: none
        // yet, so the first sample is divided).
        let mut phase = 0u64;
        let mut next_seq = 0u64;
        let decimate_every = ((cfg.rate_hz() * PUBLISH_EVERY.as_secs_f64()) as u64 / SAMPLES_PER_PUBLISH as u64).max(1);
        let (nap, nap_below) = nap_policy(self.paced, self.ring.buffer().capacity(), cfg.rate_hz());

        loop {
            // Take what the loop has produced, up to a chunk, and work on it where it lies in the
            // ring (one or two slices: the ring may wrap), committing the slots once written:
            // copying it out first was ≈ 2 % of a `--fast` run's CPU (`perf`, memmove).
            let available = self.ring.slots().min(CHUNK);
            let read = if available > 0 { self.ring.read_chunk(available).ok() } else { None };
            let (head, tail): (&[Sample], &[Sample]) = read.as_ref().map_or((&[], &[]), |r| r.as_slices());
            let taken = head.len() + tail.len();
            for part in [head, tail] {
                if part.is_empty() {
                    continue;
                }
                rho.clear();
                detector.process_slice(part, &mut rho, &mut |e| events.push(e));
                for (s, &r) in part.iter().zip(&rho) {
                    // The sample's place in its bucket, seq mod decimate_every: counted on from the
                    // previous sample, divided only after a gap (a dropped sample), so the common
                    // case costs no 64-bit division.
                    phase = bucket_phase(s.seq, next_seq, phase, decimate_every);
                    next_seq = s.seq.wrapping_add(1);
                    if phase == 0 {
                        bucket_open = decimated.samples.len() < SAMPLES_PER_PUBLISH;
                        if bucket_open {
                            decimated.samples.push(*s);
                            decimated.delta_rho_min.push(r);
                            decimated.delta_rho_max.push(r);
                        }
                    } else if bucket_open {
                        // f64::min/max ignore a NaN operand, so settle samples never mask a value.
                        if let (Some(lo), Some(hi)) =
                            (decimated.delta_rho_min.last_mut(), decimated.delta_rho_max.last_mut())
                        {
                            *lo = lo.min(r);
                            *hi = hi.max(r);
                        }
                    }
                    if phase + 1 == decimate_every {
                        bucket_open = false;
                    }
                }
                if let Some(s) = part.last() {
                    last_sample = *s;
                    last_rho = rho.last().copied().unwrap_or(f64::NAN);
                }
                if storage_error.is_none() {
                    match self.writer.append(part, &rho) {
                        Ok(()) => written += part.len() as u64,
                        Err(e) => storage_error = Some(e.to_string()),
                    }
                }
            }
            if let Some(read) = read {
                read.commit_all();
            }
            while let Ok(e) = self.control_events.pop() {
                events.push(e);
            }
            if outcome.is_some() && self.ring.is_empty() {
                detector.finish(&mut |e| events.push(e));
            }

            if !events.is_empty() {
                let now = Instant::now();
                for e in &events {
                    counts.add(e);
                    if self.paced && e.kind != EventKind::Interlock {
                        if let Some(t0) = self.shared.start() {
                            // The event is known once the sample after its last one above release
                            // has arrived: its reported end is half a period before that sample
                            // (the detector reports onset and end mid-period, nanoecr-detect
                            // ONSET_BEFORE_FIRST_SAMPLE).
                            let end_s = e.onset_time_s + e.duration_s + 0.5 * dt_s;
                            let known_at = t0 + Duration::from_secs_f64(end_s.max(0.0));
                            detection_latency.record_us(now.saturating_duration_since(known_at).as_secs_f64() * 1e6);
                        }
                    }
                    let _ = self.updates.try_send(RunUpdate::Event(*e));
                }
                if storage_error.is_none() {
                    if let Err(e) = self.writer.append_events(&events) {
                        storage_error = Some(e.to_string());
                    }
                }
                events.clear();
            }
            if storage_error.is_none() && last_flush.elapsed() >= flush_every {
                if let Err(e) = self.writer.flush() {
                    storage_error = Some(e.to_string());
                }
                last_flush = Instant::now();
            }
            if let Some(msg) = &storage_error {
                // The file is broken: stop the test safely; keep draining the ring so the loop
                // never sees a full ring because of us.
                if !self.shared.abort_requested() {
                    tracing::error!(error = %msg, "run file write failed; stopping the test safely");
                    self.shared.request_abort(EndReason::StorageFault(msg.clone()));
                }
            }
            if last_publish.elapsed() >= PUBLISH_EVERY {
                let p = Progress {
                    time_s: last_sample.time_s,
                    total_s: cfg.load_function.total_s(),
                    segment: last_sample.segment,
                    setpoint_un: last_sample.setpoint_un,
                    load_un: last_sample.load_un,
                    disp_nm: last_sample.disp_nm,
                    delta_rho: last_rho,
                    samples: written,
                    dropped: self.shared.dropped.load(Ordering::Relaxed),
                    spikes_p: counts.spikes_p,
                    spikes_n: counts.spikes_n,
                    popins: counts.popins,
                    ring_occupancy: self.shared.ring_occupancy.load(Ordering::Relaxed),
                };
                let _ = self.updates.try_send(RunUpdate::Progress(p));
                // A bucket still collecting its extremes waits for the next publication, so the
                // samples after it are not lost from its envelope.
                let carry = if bucket_open { decimated.pop() } else { None };
                if !decimated.samples.is_empty() {
                    let batch = std::mem::replace(&mut decimated, LiveBatch::with_capacity(SAMPLES_PER_PUBLISH));
                    let _ = self.updates.try_send(RunUpdate::Samples(batch));
                }
                if let Some(c) = carry {
                    decimated.push(c);
                }
                last_publish = Instant::now();
            }

            if outcome.is_none() {
                if let Ok(o) = self.control_done.try_recv() {
                    outcome = Some(o);
                    continue; // drain what the loop pushed before it ended
                }
            }
            if outcome.is_some() && self.ring.is_empty() && self.control_events.is_empty() {
                break;
            }
            if taken < nap_below {
                std::thread::sleep(nap);
            }
        }

        let Some(outcome) = outcome else {
            // Unreachable by construction (the loop only breaks with an outcome).
            return Err(nanoecr_store::StoreError::Other("control loop ended without an outcome".into()));
        };
        let mut diag: Diagnostics = outcome.diagnostics;
        diag.detection_latency = detection_latency;
        diag.dropped_samples = self.shared.dropped.load(Ordering::Relaxed);
        let end = match (&storage_error, outcome.end_reason) {
            (Some(msg), EndReason::Completed) => EndReason::StorageFault(msg.clone()),
            (_, r) => r,
        };
        let path = self.writer.path().to_path_buf();
        let gt_len = outcome.ground_truth.as_ref().map_or(0, Vec::len) as u64;
        let finish_result = self.writer.finish(&end, &diag, outcome.ground_truth.as_deref());
        if let Err(e) = &finish_result {
            tracing::error!(error = %e, "closing the run file failed");
        }
        let names = [Segment::Settle, Segment::Load, Segment::Hold, Segment::Unload, Segment::SafeUnload];
        let summary = RunSummary {
            file: path.display().to_string(),
            status: end.status(),
            end_reason: end.describe(),
            samples: written,
            dropped: diag.dropped_samples,
            duration_s: last_sample.time_s + cfg.dt_s(),
            wall_s: wall0.elapsed().as_secs_f64(),
            ticks: diag.ticks,
            lateness_p50_us: diag.loop_lateness.quantile_us(0.5).unwrap_or(0.0),
            lateness_p99_us: diag.loop_lateness.quantile_us(0.99).unwrap_or(0.0),
            lateness_max_us: diag.loop_lateness.max_us,
            missed_deadlines: diag.missed_deadlines,
            moved_ticks: diag.moved_ticks,
            skipped_ticks: diag.skipped_ticks,
            paced: diag.paced,
            realtime_scheduling: diag.realtime_scheduling,
            load_tracking_rms_un: diag.load_tracking_rms_un,
            peak_load_un: cfg.load_function.peak_load_un(),
            spikes_p: counts.spikes_p,
            spikes_n: counts.spikes_n,
            popins: counts.popins,
            interlocks: counts.interlocks,
            spikes_by_segment: names
                .iter()
                .zip(counts.by_segment.iter())
                .filter(|(s, c)| c.0 + c.1 > 0 || matches!(s, Segment::Load | Segment::Hold | Segment::Unload))
                .map(|(s, c)| (s.name().to_string(), c.0, c.1))
                .collect(),
            ground_truth_events: gt_len,
        };
        finish_result?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counted phase equals `seq % every` over runs of consecutive samples, after gaps
    /// (dropped samples) and from a first sample that is not 0.
    #[test]
    fn the_counted_bucket_phase_is_seq_mod_every_across_gaps() {
        for every in [1u64, 2, 3, 10, 100] {
            let (mut phase, mut expected) = (0u64, 0u64);
            let mut checked = 0;
            for seq in (5u64..400).chain(403..900).chain(1000..1001).chain(2000..2500) {
                phase = bucket_phase(seq, expected, phase, every);
                expected = seq + 1;
                assert_eq!(phase, seq % every, "seq {seq}, every {every}");
                checked += 1;
            }
            assert!(checked > 1000);
        }
    }

    #[test]
    fn a_paced_consumer_naps_long_but_never_lets_the_ring_fill_past_a_quarter() {
        // The default ring (4 s at 100 kHz): the full 5 ms nap, 500 samples per nap.
        assert_eq!(nap_policy(true, 400_000, 100_000.0), (PACED_NAP, CHUNK));
        // A 64-sample ring at 100 kHz: 16 samples (a quarter) take 160 µs, so the nap is that.
        let (nap, below) = nap_policy(true, 64, 100_000.0);
        assert_eq!(below, 16);
        assert!((nap.as_secs_f64() - 160e-6).abs() < 1e-9, "{nap:?}");
        // Whatever the ring and rate, one nap fills at most a quarter of the ring.
        for (capacity, rate_hz) in [(64, 1_000.0), (16_384, 100_000.0), (1 << 20, 10_000.0), (100, 1e6)] {
            let (nap, _) = nap_policy(true, capacity, rate_hz);
            assert!(nap.as_secs_f64() * rate_hz <= (capacity / 4) as f64 + 1e-6, "{capacity} at {rate_hz} Hz");
        }
        // Unpaced: the loop waits for ring space, so nap only on an empty ring, briefly.
        assert_eq!(nap_policy(false, 400_000, 100_000.0), (IDLE_NAP, 1));
    }
}
