//! The control loop: a dedicated thread that ticks at `rate_hz` against absolute deadlines.
//!
//! Each tick: setpoint from the load function → feedforward + PI load feedback → actuator command
//! → read both instruments → merge by sequence number → interlocks → push into the SPSC ring.
//! It allocates nothing per tick and never blocks on the consumer, the file or a client: the
//! only things it shares are atomics and the ring. A full ring costs a counted, dropped sample,
//! never a late tick. Unpaced (`--fast`, simulated rig) there is no deadline to protect, so the
//! loop waits for ring space instead: a fast run is complete however slow the writer is.
//!
//! Paced, the loop sleeps (`clock_nanosleep` to an absolute time on the monotonic clock) until
//! shortly before a deadline, once per wake-up ([`spin_window`]; `acquisition.spin_us` overrides
//! it). Up to 10 kHz, where a wake-up is one tick, it wakes 30 µs early and spins to the
//! deadline, so the tick's command goes out on time. Where it batches it wakes half the wake-up
//! period early, 60 to 200 µs (200 µs with the default 400 µs), and starts the batch at once,
//! ahead of its first deadline, as its later ticks always were: a wake-up that comes less late
//! than that from its sleep costs no tick, and nothing spins (issue 15's sixth pass; the spin
//! there used half a CPU, and the CPU taken from it while spinning cost ticks). When the
//! sample period is shorter than [`MIN_WAKE_PERIOD`] (above 10 kHz) a wake-up runs a batch of
//! [`ticks_per_wakeup`] ticks back to back (`acquisition.wakeup_period_us` / dt: 40 at 100 kHz
//! with the default 400 µs) and then sleeps until the next batch's deadline, so the thread
//! sleeps most of every wake-up period instead of spinning all the time (which ran into the
//! kernel's real-time budget), and fewer wake-ups meet the host's wake-up tail. Each tick of a
//! batch keeps its own sample time, setpoint, command, reads, interlocks and push: a seeded
//! simulated run gives the same samples batched or not. Timing is counted as follows, batched
//! or not:
//!
//! - **Lateness** (`loop_lateness`) is one value per wake-up: when the first tick of the
//!   wake-up starts, minus that tick's deadline (the batch's deadline; 0 when a batch starts
//!   ahead of it). The later ticks of a
//!   batch run ahead of their own deadlines by design; they add no value of their own, so the
//!   histogram holds about ticks / batch values and its quantiles are those of the wake-ups.
//! - **Missed deadlines** (`missed_deadlines`) are counted per tick: a tick whose work ended
//!   after the next tick's deadline, exactly as without batches (`limits.max_late_fraction`
//!   judges them, with the ticks a stall moved or skipped, over the last
//!   `limits.late_window_s`). A wake-up that comes L late (less than one wake-up period) misses
//!   about the first L / dt ticks of its batch, the ones that cannot catch up with their own
//!   deadlines, whatever the batch's size; on time, every tick of a batch ends well before its
//!   next deadline (tick j of a batch runs j · (dt − its work) ahead of its own deadline: up to
//!   ≈ 380 µs for the last of 40 at 100 kHz).
//! - **By lateness class** (`lateness_split`): each wake-up that slept is counted in a class of
//!   its raw lateness (when the sleep returned minus when it asked to: within the spin window,
//!   past it, one wake-up period or more, 1 ms or more), and each missed tick in the class of the
//!   wake-up that began its episode, so the misses can be set against cyclictest's wake-ups in
//!   the same classes.
//!
//! After a stall (a wake-up ≥ 1 ms and more than one wake-up period late, listed in the
//! diagnostics with its length and the ticks it affected) the catch-up depends on who clocks the
//! samples, which the frame reports ([`FrameClock`]): a tick-clocked frame (the simulated rig)
//! makes one sample per command and its time stood still during the stall, so once a wake-up
//! later than one wake-up period has run its ticks (late, each missed) the schedule moves
//! forward by whole ticks until the next deadline is not already past, as cyclictest moves its
//! next wake-up (`moved_ticks`; the samples are those of an unpaced run, later in wall time, and
//! at most about two wake-ups' ticks run late back to back); a device samples into its
//! FIFO on its own clock, so the loop skips to the newest due tick and sends one command at the
//! current setpoint instead of a burst of stale ones (each a round trip that would make the next
//! ticks late too). It never skips past the program's last tick: that tick's final setpoint is
//! always commanded, and when the catch-up reached it the program ends with a short rest at zero
//! that lasts until the frame's samples (behind the stall's backlog in its FIFO) show it.
//!
//! Timing interlocks (real-time runs): no command to the frame for more than
//! `limits.max_command_gap_ms` in the frame's own clock (wall time for a device; sample time for
//! the simulator, whose pillar does not move while the host stalls, so there a stall is only
//! listed), or more than `limits.max_late_fraction` of the last `limits.late_window_s` of ticks
//! late (wall time on every rig: it tells a host that cannot keep the rate). A load that stays
//! more than `max_tracking_error_un` off its setpoint for `max_tracking_error_ms` of sample time
//! trips too, paced or not.
//!
//! Aborts, interlocks, the safe-unload ramp and the rest phase are all evaluated every tick, and
//! the loop never sleeps longer than one wake-up period, so a stop request or a trip takes
//! effect at the next tick: within one batch (≤ `acquisition.wakeup_period_us`, 400 µs by
//! default) above 10 kHz, within one sample period at and below it, as before.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nanoecr_core::config::RunConfig;
use nanoecr_core::sample::{FLAG_COMPLIANCE, FLAG_CURRENT_INVALID};
use nanoecr_core::{
    Diagnostics, EndReason, Event, EventKind, LatencyHistogram, LatenessSplit, Sample, Segment, Sign, Stall,
};
use nanoecr_hw::{FrameClock, FrameLimits, FrameReading, HwError, Rig, SmuPacing, SmuReading};

use super::feedback::FeedbackAge;
use super::shared::Shared;

/// Free slots the merge queues keep for one acquire of each instrument: more than any backend
/// returns at once (the Modbus frame 120, a buffered meter's fetch 256).
const READ_BATCH: usize = 256;
/// How long before a deadline the loop stops sleeping and spins, so wake-up jitter of the
/// scheduler does not become tick lateness, at rates up to 10 kHz (one tick per wake-up).
pub const SPIN_BEFORE_DEADLINE: Duration = Duration::from_micros(30);
/// The shortest window where the loop batches (above 10 kHz), taken at the shortest wake-up
/// periods (≤ 120 µs): the loop wakes this long before a batch's deadline and starts the batch
/// at once. Every 10 µs a wake-up comes past the window costs a tick at 100 kHz, and on a
/// virtual machine wake-ups 30–60 µs late are common (docs/performance.md, "Real time on a noisy
/// host"). Until issue 15's sixth pass the loop spun through this window; 60 µs of the shortest
/// wake-up period (100 µs) left it asleep a third of the time.
pub const SPIN_BATCHED: Duration = Duration::from_micros(60);
/// The longest window where the loop batches: half of the default 400 µs wake-up period.
/// At 100 kHz, spinning through it, it missed a third of the ticks 60 µs missed, fewer in each
/// of 10 interleaved rounds, for half a CPU instead of a sixth (docs/performance.md, issue 15
/// fifth pass); since the sixth pass the batch starts at once instead, and the window costs no
/// CPU. A longer one would send commands further ahead of their ticks; not measured.
pub const SPIN_BATCHED_MAX: Duration = Duration::from_micros(200);
/// Ticks to keep sampling at zero load after a safe unload, so the file shows the rig at rest.
const REST_TICKS_AFTER_UNLOAD_S: f64 = 0.05;
/// How much longer than its own length a rest may wait, in loop time, for a device-clocked
/// frame's samples of it to arrive (its FIFO drains a bounded block per tick after a stall).
const MAX_REST_DRAIN_S: f64 = 5.0;
/// The shortest interval between two wake-ups of a paced loop. Each wake-up spins for the last
/// tens of µs before its deadline; with a period at or below that the real-time thread never sleeps,
/// uses a whole CPU and runs into the kernel's real-time budget (`sched_rt_runtime_us`, by
/// default 950 ms per second), which then stops it for ≈ 45 ms every second: 5 % of the ticks
/// of a 100 kHz run came tens of milliseconds late that way. Waking at most every 100 µs leaves
/// each interval asleep but for the spin and the batch's work. 100 µs is
/// also the 10 kHz period, so every rate up to 10 kHz keeps exactly one tick per wake-up. Above
/// it the wake-up period is `acquisition.wakeup_period_us`, never below this floor (the
/// config's lower bound).
pub const MIN_WAKE_PERIOD: Duration = Duration::from_micros(nanoecr_core::config::MIN_WAKEUP_PERIOD_US as u64);

/// A wake-up at least this late (and later than one wake-up period) opens a stall in the
/// diagnostics' stall list: the host hiccups worth listing, not scheduler jitter.
const STALL_MIN: Duration = Duration::from_millis(1);

/// How much older than lately a device-clocked frame's newest sample may be before the loop stops
/// acting on the load error, s (at least five wake-up periods). Well above the jitter of one read
/// per tick, well below the ≈ 20 ms a PI needs to wind up on a stall's backlog (see
/// [`FeedbackAge`]).
const FEEDBACK_STALE_S: f64 = 5e-3;
/// How long a paced loop rehearses its wake-ups before t0 (sleep, spin, clock reads, histogram)
/// so that the first real ticks do not pay for cold caches, lazily bound symbols and a CPU
/// clocked down while idle.
const WARM_UP: Duration = Duration::from_millis(5);
/// Buckets of the sliding late-tick window (`limits.late_window_s` is cut into this many).
const LATE_WINDOW_BUCKETS: usize = 32;
/// How long an unpaced loop naps when the ring is full. It used to yield in a loop: ≈ 115 000
/// `sched_yield` calls in a 30-minute `--fast` run at 1 kHz, ≈ 4 % of the run's CPU (`perf`),
/// spent on the CPU the consumer and the compression workers could use. The consumer frees up to
/// 4 096 slots a round, and in 100 µs (≈ 150 µs with the kernel's timer slack) it can take
/// ≈ 1 000 samples at most, so a ring of [`RING_FULL_NAP_MIN_SLOTS`] or more never runs dry
/// while the loop naps.
const RING_FULL_NAP: Duration = Duration::from_micros(100);
/// Rings from this size up nap when full; smaller ones (set by hand) yield as before, since a
/// nap could let them run dry.
pub const RING_FULL_NAP_MIN_SLOTS: usize = 8192;

// A wake-up period near the spin window would bring the (almost) never-sleeping loop back:
// keep at least half of every wake-up period free of spinning.
const _: () = assert!(MIN_WAKE_PERIOD.as_nanos() > 2 * SPIN_BEFORE_DEADLINE.as_nanos());
// Batched, the thread must still sleep a good part of every wake-up period.
const _: () = assert!(10 * SPIN_BATCHED.as_nanos() <= 6 * MIN_WAKE_PERIOD.as_nanos());
const _: () = assert!(SPIN_BATCHED.as_nanos() <= SPIN_BATCHED_MAX.as_nanos());

/// Whether a paced loop at sample period `dt_s` batches ticks: when the period is shorter than
/// [`MIN_WAKE_PERIOD`] (above 10 kHz).
fn batches(dt_s: f64) -> bool {
    let ratio = MIN_WAKE_PERIOD.as_secs_f64() / dt_s;
    // The relative tolerance keeps exactly 10 kHz (a period that is 100 µs but for the last bit
    // of a binary fraction) at one tick per wake-up.
    ratio.is_finite() && ratio * (1.0 - 1e-9) > 1.0
}

/// The spin window of a paced loop at sample period `dt_s` with `acquisition.wakeup_period_us`
/// = `wakeup_period_us`, unless `acquisition.spin_us` sets it: [`SPIN_BEFORE_DEADLINE`] at
/// 10 kHz and below; where it batches, half the wake-up period, kept within [`SPIN_BATCHED`] and
/// [`SPIN_BATCHED_MAX`] (200 µs with the default 400 µs; 60 µs with 100 µs), so the thread
/// sleeps at least half of every wake-up period but the shortest.
pub fn spin_window(dt_s: f64, wakeup_period_us: f64) -> Duration {
    if !batches(dt_s) {
        return SPIN_BEFORE_DEADLINE;
    }
    let wake_period = Duration::from_secs_f64(dt_s).mul_f64(ticks_per_wakeup(dt_s, wakeup_period_us) as f64);
    (wake_period / 2).clamp(SPIN_BATCHED, SPIN_BATCHED_MAX)
}

/// Ticks a paced loop runs per wake-up at sample period `dt_s` with `acquisition.wakeup_period_us`
/// = `wakeup_period_us`: 1 at 10 kHz and below; above, where the period is shorter than
/// [`MIN_WAKE_PERIOD`], ⌈wake-up period / dt⌉ (the wake-up period taken as at least
/// [`MIN_WAKE_PERIOD`]): 40 at 100 kHz and 8 at 20 kHz with the default 400 µs, 10 and 2 with
/// 100 µs.
pub fn ticks_per_wakeup(dt_s: f64, wakeup_period_us: f64) -> u64 {
    if !batches(dt_s) {
        return 1;
    }
    let period_s = (wakeup_period_us * 1e-6).max(MIN_WAKE_PERIOD.as_secs_f64());
    // The relative tolerance keeps a period that divides the wake-up period (10 µs, 33.3 µs)
    // from rounding up to one tick more on the last bit of a binary fraction.
    let ratio = period_s / dt_s * (1.0 - 1e-9);
    if !ratio.is_finite() {
        return 1;
    }
    (ratio.ceil() as u64).max(1)
}

/// What the control thread hands back when it ends.
#[derive(Debug)]
pub struct ControlOutcome {
    /// Why the run ended.
    pub end_reason: EndReason,
    /// Loop timing and counters.
    pub diagnostics: Diagnostics,
    /// True events of a simulated rig.
    pub ground_truth: Option<Vec<Event>>,
    /// Samples pushed into the ring (not counting drops).
    pub pushed: u64,
}

/// Everything the loop needs, moved into its thread.
pub struct ControlLoop {
    // First, so that even on a panic it is stopped and joined before `ring` is dropped: the
    // thread faults in the ring's memory, which must not be freed under it.
    prefault: Option<super::RingPrefault>,
    cfg: RunConfig,
    rig: Rig,
    ring: rtrb::Producer<Sample>,
    control_events: rtrb::Producer<Event>,
    shared: Arc<Shared>,
    paced: bool,
    wait_for_ring: bool,
    /// Dropped the first time the loop finds the ring full (and at the loop's end), which
    /// releases the consumer held on its receiver (`RunOptions::hold_consumer_until_ring_full`).
    ring_full_gate: Option<crossbeam_channel::Sender<()>>,
}

/// State of the program.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Following the load function.
    Program,
    /// Ramping down after an abort, from the given load at the given time.
    SafeUnload { from_un: f64, since_s: f64 },
    /// Unloaded; resting a few ticks at zero command before switching off, labelled `segment`.
    Rest { until_s: f64, segment: Segment },
}

/// The tick a frame sample was acquired in: what the file and the interlocks pair it with, even
/// when its meter reading comes ticks later (a buffered meter is read every few ms).
#[derive(Debug, Clone, Copy)]
struct TickContext {
    setpoint_un: f64,
    segment: Segment,
    /// Loop time of the tick, s.
    t_s: f64,
}

impl Default for TickContext {
    fn default() -> Self {
        Self { setpoint_un: 0.0, segment: Segment::Settle, t_s: 0.0 }
    }
}

/// Merges frame and meter readings by sequence number without allocating per tick.
///
/// A frame sample waits for its meter reading until the frame is `max_lag_samples` samples past
/// it (`limits.max_meter_lag_ms` in the frame's own samples, so a host stall, during which both
/// instruments buffer, does not count); the loop then asks the meter out of turn
/// ([`Merger::needs_meter`]), and only when that ask brought no reading is the sample given up.
/// Out-of-turn asks come at most once per [`ask_every`](Merger::ask_every) frame samples: a meter
/// lagging right at the bound has each reading just as its sample falls due, and asking it at
/// every tick cost up to two round trips a tick (1 187 asks in 1 500 ticks,
/// `tests/buffered_meter.rs`). A due sample waits for the next allowed ask instead, so a reading
/// may come up to `ask_every` − 1 samples past the bound. Both queues are sized for
/// that lag at the start of the run and popped from the front by index (compacted when the free
/// tail runs short, [`Merger::make_room`]): a meter thousands of samples behind costs O(1) per
/// sample, not a copy of the queue.
///
/// `frames[frame_head..n_frames]` (with `ticks`) wait for their readings; `smus[smu_head..n_smus]`
/// are readings not yet matched, in sequence order. Acquire into `frames[n_frames..]` and
/// `smus[n_smus..]`.
struct Merger {
    frames: Box<[FrameReading]>,
    /// `ticks[i]` is the tick `frames[i]` was acquired in.
    ticks: Box<[TickContext]>,
    frame_head: usize,
    n_frames: usize,
    smus: Box<[SmuReading]>,
    smu_head: usize,
    n_smus: usize,
    /// A frame sample this many samples older than the newest one has waited too long.
    max_lag_samples: u64,
    /// Frame samples between two out-of-turn asks (an eighth of the bound, at least 1).
    ask_every: u64,
    /// The newest frame sample in hand at the last out-of-turn ask.
    asked_at: Option<u64>,
    /// The longest wait of a merged frame sample for its reading, samples (diagnostics).
    lag_max_samples: u64,
    /// Pop frames without a reading instead of waiting (end of the run).
    give_up: bool,
}

impl Merger {
    /// Queues for a meter up to `max_lag_samples` behind the frame (and the wait for the next
    /// out-of-turn ask), plus room for one acquire of each instrument.
    fn new(max_lag_samples: u64) -> Self {
        let max_lag_samples = max_lag_samples.max(1);
        let ask_every = (max_lag_samples / 8).max(1);
        let capacity = usize::try_from(max_lag_samples.saturating_add(ask_every))
            .unwrap_or(usize::MAX / 4)
            .saturating_add(2 * READ_BATCH);
        Self {
            frames: vec![FrameReading::default(); capacity].into_boxed_slice(),
            ticks: vec![TickContext::default(); capacity].into_boxed_slice(),
            frame_head: 0,
            n_frames: 0,
            smus: vec![SmuReading::default(); capacity].into_boxed_slice(),
            smu_head: 0,
            n_smus: 0,
            max_lag_samples,
            ask_every,
            asked_at: None,
            lag_max_samples: 0,
            give_up: false,
        }
    }

    /// Frame samples waiting for their readings.
    fn pending(&self) -> usize {
        self.n_frames - self.frame_head
    }

    /// Where a regular meter acquire writes: at most [`READ_BATCH`] readings held in all, as
    /// before the queues grew. Readings ahead of the frame are of no use until the frame's
    /// samples arrive, and fetching more of them each tick (a meter read every tick, as the
    /// in-house dialect is, racing through its backlog after a stall) only lengthens the ticks.
    /// The out-of-turn fetch before a sample is given up takes the whole free tail.
    #[inline(always)]
    fn smu_room(&mut self) -> &mut [SmuReading] {
        let end = (self.smu_head + READ_BATCH).clamp(self.n_smus, self.smus.len());
        &mut self.smus[self.n_smus..end]
    }

    /// Keep at least [`READ_BATCH`] free slots after `n_frames` and `n_smus`, moving the waiting
    /// entries to the front when the tail runs short (rarely: at most once per
    /// capacity − lag − [`READ_BATCH`] pops).
    #[inline(always)]
    fn make_room(&mut self) {
        if self.frame_head == self.n_frames {
            (self.frame_head, self.n_frames) = (0, 0);
        } else if self.frames.len() - self.n_frames < READ_BATCH {
            self.frames.copy_within(self.frame_head..self.n_frames, 0);
            self.ticks.copy_within(self.frame_head..self.n_frames, 0);
            (self.frame_head, self.n_frames) = (0, self.n_frames - self.frame_head);
        }
        if self.smu_head == self.n_smus {
            (self.smu_head, self.n_smus) = (0, 0);
        } else if self.smus.len() - self.n_smus < READ_BATCH {
            self.smus.copy_within(self.smu_head..self.n_smus, 0);
            (self.smu_head, self.n_smus) = (0, self.n_smus - self.smu_head);
        }
    }

    /// Whether a waiting frame sample beyond the readings in hand has waited its longest and an
    /// out-of-turn ask is allowed ([`ask_every`](Merger::ask_every) samples after the last): the
    /// meter must be asked now (then [`asked`](Merger::asked)), before [`next`](Merger::next)
    /// may give the sample up.
    #[inline(always)]
    fn needs_meter(&self) -> bool {
        if self.frame_head == self.n_frames {
            return false;
        }
        let oldest = self.frames[self.frame_head].seq;
        let newest = self.frames[self.n_frames - 1].seq;
        // Readings come in sequence order: the first frame sample they do not reach.
        let first_missing = match self.smus[self.smu_head..self.n_smus].last() {
            Some(s) => (s.seq + 1).max(oldest),
            None => oldest,
        };
        newest >= first_missing
            && newest - first_missing >= self.max_lag_samples
            && self.asked_at.is_none_or(|a| newest >= a + self.ask_every)
    }

    /// The meter was asked out of turn, with the frame samples now in hand.
    #[inline(always)]
    fn asked(&mut self) {
        if self.n_frames > self.frame_head {
            self.asked_at = Some(self.frames[self.n_frames - 1].seq);
        }
    }

    /// Pops the next frame reading together with its current reading, when both have arrived or
    /// when the meter has moved past it (then the current is missing), or without it once the
    /// meter was asked out of turn with the frame [`max_lag_samples`](Merger::max_lag_samples)
    /// past it, or the run gave up. `None`: wait for more. The pair is returned as indices
    /// ([`Merged`]): read it in place before the next acquire.
    // Indices, not the readings: returned by value, the tuple of readings (inlined, twice a
    // tick) was copied through the stack with its padding (the 7 bytes after `compliance`) as two
    // overlapping 4-byte moves, and each read-back of those waited on a failed store forward: the
    // two hottest instructions of `ticks` at 100 kHz (docs/performance.md, eighth write-side pass).
    #[inline(always)]
    fn next(&mut self) -> Option<Merged> {
        if self.frame_head == self.n_frames {
            return None;
        }
        let frame = self.frame_head;
        let seq = self.frames[frame].seq;
        // Readings older than the oldest waiting frame sample can never be matched any more.
        while self.smu_head < self.n_smus && self.smus[self.smu_head].seq < seq {
            self.smu_head += 1;
        }
        let smu = if self.smu_head < self.n_smus {
            if self.smus[self.smu_head].seq == seq {
                let newest = self.frames[self.n_frames - 1].seq;
                self.lag_max_samples = self.lag_max_samples.max(newest - seq);
                self.smu_head += 1;
                Some(self.smu_head - 1)
            } else {
                // The meter has moved past this sample: its reading will never come.
                None
            }
        } else if self.give_up || self.asked_at.is_some_and(|a| a >= seq + self.max_lag_samples) {
            None
        } else {
            return None;
        };
        self.frame_head += 1;
        Some(Merged { frame, smu })
    }

    /// The readings of a pair [`next`](Merger::next) returned, copied (tests).
    #[cfg(test)]
    fn take(&mut self) -> Option<(FrameReading, TickContext, Option<SmuReading>)> {
        self.next().map(|m| (self.frames[m.frame], self.ticks[m.frame], m.smu.map(|i| self.smus[i])))
    }
}

/// A merged pair, as indices into the [`Merger`]'s queues; valid until its next acquire.
#[derive(Debug, Clone, Copy)]
struct Merged {
    /// Index into `frames` and `ticks`.
    frame: usize,
    /// Index into `smus`; `None`: the reading is missing.
    smu: Option<usize>,
}

impl ControlLoop {
    /// Prepare a loop; nothing runs until [`ControlLoop::run`].
    pub fn new(
        cfg: RunConfig,
        rig: Rig,
        ring: rtrb::Producer<Sample>,
        control_events: rtrb::Producer<Event>,
        shared: Arc<Shared>,
        paced: bool,
    ) -> Self {
        Self {
            prefault: None,
            cfg,
            rig,
            ring,
            control_events,
            shared,
            paced,
            wait_for_ring: !paced,
            ring_full_gate: None,
        }
    }

    /// Drop `gate` the first time the ring is found full (or when the loop ends), so that a
    /// consumer blocked on its receiver starts only once the ring has filled: tests of the
    /// full-ring paths that hold on any host, however fast it runs the writer.
    pub fn releasing_on_full_ring(mut self, gate: crossbeam_channel::Sender<()>) -> Self {
        self.ring_full_gate = Some(gate);
        self
    }

    /// Keep the thread faulting the ring in until the loop ends, and stop and join it then,
    /// before the loop's end of the ring is dropped.
    pub(crate) fn with_prefault(mut self, prefault: super::RingPrefault) -> Self {
        self.prefault = Some(prefault);
        self
    }

    /// Drop samples on a full ring even when unpaced, as a paced loop must: only for measuring
    /// the drop accounting (tests, benchmarks).
    pub fn dropping_when_full(mut self) -> Self {
        self.wait_for_ring = false;
        self
    }

    /// Run the test to its end on the calling thread (spawn a dedicated thread for it).
    pub fn run(mut self) -> ControlOutcome {
        let mut diag = Diagnostics {
            rate_hz: self.cfg.rate_hz(),
            paced: self.paced,
            ring_capacity: self.ring.buffer().capacity() as u64,
            ..Diagnostics::with_stall_capacity()
        };
        if self.paced && self.cfg.raw.control.realtime {
            diag.realtime_scheduling = try_realtime();
            // Only a privileged (real-time) loop may lock memory without an rlimit in the way;
            // an unprivileged one would fail or hit RLIMIT_MEMLOCK on later allocations.
            if diag.realtime_scheduling {
                diag.memory_locked = lock_memory();
            }
        }
        // Held (open) until this function returns, after the last tick and the safe state.
        let idle_latency = if diag.realtime_scheduling { hold_idle_latency_zero() } else { None };
        diag.idle_latency_zero = idle_latency.is_some();
        if self.paced {
            if let Some(cpu) = self.cfg.raw.acquisition.cpu {
                if set_affinity(std::iter::once(cpu)) {
                    diag.cpu = Some(cpu);
                } else {
                    tracing::warn!(cpu, "could not pin the control thread to acquisition.cpu; running unpinned");
                }
            }
        }
        self.shared.realtime.store(diag.realtime_scheduling, Ordering::Relaxed);

        diag.smu_pacing = self.rig.smu.pacing().as_str().to_string();
        diag.frame_clock = self.rig.frame.clock().as_str().to_string();
        let end = match self.arm() {
            Ok(()) => self.ticks(&mut diag),
            Err(e) => EndReason::DeviceFault(e.to_string()),
        };
        // Safe state whatever happened: the frame unloads and disables, the bias goes off. Both
        // are attempted even if one fails.
        if let Err(e) = self.rig.frame.make_safe() {
            tracing::error!(error = %e, "load frame did not confirm the safe state");
        }
        if let Err(e) = self.rig.smu.bias_off() {
            tracing::error!(error = %e, "source-measure unit did not confirm output off");
        }
        // After the safe state, which it must not delay: stop the prefault thread and wait for
        // it (at most one 2 MiB step), while this end of the ring still keeps the ring alive.
        drop(self.prefault.take());
        // Logged here, after the tick loop and the safe state: a log line may block on I/O.
        if let EndReason::Interlock(detail) = &end {
            tracing::warn!(%detail, "interlock tripped; unloaded safely");
        }
        if !diag.stalls.is_empty() || diag.stalls_overflow > 0 {
            tracing::info!(
                stalls = diag.stalls.len() as u64 + diag.stalls_overflow,
                longest_ms = diag.stalls.iter().map(|s| s.length_us).fold(0.0, f64::max) / 1000.0,
                "the host stalled the control loop (listed in the file's diagnostics)"
            );
        }
        diag.dropped_samples = self.shared.dropped.load(Ordering::Relaxed);
        let ground_truth = self.rig.frame.ground_truth();
        ControlOutcome {
            end_reason: end,
            diagnostics: diag,
            ground_truth,
            pushed: self.shared.pushed.load(Ordering::Relaxed),
        }
    }

    /// Arm the rig in the order the alignment rule needs (docs/hardware.md, "Alignment"): the
    /// frame is prepared (rate, limits), then the meter is armed and waits for triggers, and only
    /// then does the frame restart its sample counter, so the meter's i-th reading is sample i.
    fn arm(&mut self) -> Result<(), HwError> {
        let limits = &self.cfg.raw.limits;
        let limits = FrameLimits { max_load_un: limits.max_load_un, max_displacement_nm: limits.max_displacement_nm };
        self.rig.frame.prepare(&limits)?;
        self.rig.smu.bias_on(self.cfg.raw.bias.voltage_v, self.cfg.raw.bias.compliance_a)?;
        self.rig.frame.arm(&limits)?;
        Ok(())
    }

    /// The tick loop proper. Returns why it ended.
    fn ticks(&mut self, diag: &mut Diagnostics) -> EndReason {
        let dt_s = self.cfg.dt_s();
        let dt = Duration::from_secs_f64(dt_s);
        let lf = self.cfg.load_function.clone();
        let mut cursor = lf.cursor();
        // The program's last tick (the largest k with k · dt inside it): a catch-up on a
        // device-clocked frame may skip to it but not past it, so its final setpoint is commanded.
        let last_program_k = nanoecr_core::config::program_ticks(lf.total_s(), dt_s) - 1;
        // Set when a catch-up reached the program's last tick by skipping: the frame then got the
        // final setpoint only now, and the program ends with a short rest so that the file shows
        // the frame reach it (else it would end on the stale command of the stall).
        let mut caught_up_to_the_end = false;
        let c = &self.cfg.raw.control;
        let kp = c.kp;
        // Keep the discrete integrator stable at low rates: the per-tick integral gain must stay
        // well below one.
        let ki = c.ki_per_s.min(0.3 / dt_s);
        let safe_rate = c.safe_unload_rate_un_per_s;
        let limits = self.cfg.raw.limits.clone();
        let settle_s = self.cfg.raw.acquisition.settle_s;
        let pillar = self.cfg.pillar;
        // Integrator clamp: the actuator never needs more than the limit load of correction.
        let integral_clamp = limits.max_load_un;
        // The rig says whose clock its samples follow. A tick-clocked frame (the simulator)
        // makes one sample per command, so its ticks are its samples and a late tick must still
        // run; a device samples on its own clock into a FIFO, and a stale tick would only send a
        // command for a moment that has passed.
        let clock = self.rig.frame.clock();
        let tick_clocked = clock == FrameClock::Tick;

        let mut phase = Phase::Program;
        let mut end: Option<EndReason> = None;
        let mut integral = 0.0_f64;
        let mut last_load_un = 0.0_f64;
        // Sample time of the newest frame sample read, s: a device-clocked frame's rest lasts
        // until its samples reach the rest's end (after a stall its FIFO still holds the past).
        let mut newest_frame_s = f64::NEG_INFINITY;
        let mut last_setpoint_un = lf.preload_un;
        // How long a frame sample may wait for its meter reading, in the frame's samples.
        let max_lag_samples = (limits.max_meter_lag_ms / 1000.0 / dt_s).ceil() as u64;
        let mut merger = Merger::new(max_lag_samples);
        let mut tracking_sq = 0.0_f64;
        let mut tracking_n = 0u64;
        let mut tracking_max = 0.0_f64;
        let mut off_track_since: Option<f64> = None;
        let max_tracking_error_s = limits.max_tracking_error_ms / 1000.0;
        let mut high_water = 0usize;
        let mut ring_full_waits = 0u64;
        let nap_when_full = self.ring.buffer().capacity() >= RING_FULL_NAP_MIN_SLOTS;
        let mut contact_seen = false;
        let mut low_current_since: Option<f64> = None;
        // Paced, the loop sleeps only before the first tick of each batch; 1 up to 10 kHz.
        let batch = ticks_per_wakeup(dt_s, self.cfg.raw.acquisition.wakeup_period_us);
        let wake_period = dt.mul_f64(batch as f64);
        let spin = match self.cfg.raw.acquisition.spin_us {
            Some(us) => Duration::from_secs_f64(us * 1e-6),
            None => spin_window(dt_s, self.cfg.raw.acquisition.wakeup_period_us),
        };
        diag.spin_window_us = spin.as_secs_f64() * 1e6;
        let stall_min = wake_period.max(STALL_MIN);
        if self.paced {
            diag.lateness_split = LatenessSplit::new(diag.spin_window_us, wake_period.as_secs_f64() * 1e6);
        }
        let max_gap_s = limits.max_command_gap_ms / 1000.0;
        let mut late_window = LateWindow::new(limits.late_window_s, dt_s);
        // Device-clocked frames only: the simulator's newest sample is always this tick's.
        let mut feedback = FeedbackAge::new(FEEDBACK_STALE_S.max(5.0 * wake_period.as_secs_f64()));
        let mut open_stall: Option<Stall> = None;
        // Time of the last command in the frame's clock, s (see the command-gap interlock).
        let mut last_command_s: Option<f64> = None;
        if self.paced {
            warm_up(wake_period, spin, batch > 1);
        }
        let mut next_wake_k: u64 = 0;
        // Evidence for the diagnostics: when the current wake-up's first tick started, and what
        // made the wake-up (and the episode of wake-ups it began) late.
        let mut wake_start = Instant::now();
        let mut cause = Cause::Work;
        // The lateness class of the wake-up that began the current episode (see LatenessSplit).
        let mut episode_class = 0usize;
        let usage0 = thread_usage();
        let mut align =
            Alignment::new(self.rig.smu.pacing(), self.rig.smu.device().to_string(), dt_s, limits.max_meter_lag_ms);
        let t0 = Instant::now();
        self.shared.set_start(t0);
        // Deadlines are `anchor + k · dt`. A tick-clocked rig's schedule moves after a late
        // wake-up (see `move_after_batch`), so its anchor does; a device-clocked rig's stays t0.
        let mut anchor = t0;
        // Set when a wake-up came later than one wake-up period on a tick-clocked rig: once its
        // ticks have run (late, each counted), the schedule moves forward by whole ticks until
        // the next deadline is not already past. cyclictest's policy (rt-tests,
        // src/cyclictest/cyclictest.c, `timerthread`: `while (tsgreater(&now, &next))`): the
        // periods a stall slept through are moved, not run late back to back. The simulator's
        // time stood still during the stall, so moving loses nothing: the same samples come out,
        // later in wall time. So at most the ticks of the wake-up a stall interrupted and of the
        // one after it run late back to back, and a stall costs its own wake-up, not L / dt
        // ticks.
        let mut move_after_batch = false;
        let mut late_streak = 0u64;

        let mut k: u64 = 0;
        loop {
            if self.paced && k >= next_wake_k {
                // The batch's deadline is that of its first tick; the others run right after it,
                // ahead of their own deadlines, so lateness is recorded once per wake-up.
                let deadline = anchor + dt.mul_f64(k as f64);
                // Batched, the wake-up's ticks start as soon as the thread wakes, up to the
                // spin window ahead of the first deadline; one tick per wake-up spins to it.
                let woke = wait_for_wakeup(deadline, spin, batch > 1);
                let now = Instant::now();
                let late = now.saturating_duration_since(deadline);
                diag.loop_lateness.record_us(late.as_secs_f64() * 1e6);
                if let Some(w) = woke {
                    diag.wakeup_lateness.record_us(w.raw_lateness.as_secs_f64() * 1e6);
                }
                episode_class = lateness_class(&diag.lateness_split, late, woke, dt, episode_class);
                if woke.is_some() {
                    diag.lateness_split.wakeups[episode_class] += 1;
                }
                cause = Cause::of_wakeup(late, woke, dt, cause);
                wake_start = now;
                if late > wake_period {
                    diag.late_wakeups += 1;
                    move_after_batch = tick_clocked;
                }
                if late >= stall_min {
                    let late_us = late.as_secs_f64() * 1e6;
                    match &mut open_stall {
                        Some(st) => st.length_us = st.length_us.max(late_us),
                        None => open_stall = Some(Stall { start_s: k as f64 * dt_s, length_us: late_us, ticks: 0 }),
                    }
                }
                // Catch-up, device-clocked rigs: skip to the newest tick that is due; the
                // device's FIFO holds the samples of the skipped ones. One command at the current
                // setpoint replaces a burst of stale ones that would make later ticks late too.
                if !tick_clocked {
                    let mut due = ((now - t0).as_secs_f64() / dt_s) as u64;
                    if phase == Phase::Program && due > last_program_k {
                        due = last_program_k;
                        caught_up_to_the_end = true;
                    }
                    if due > k {
                        let skipped = due - k;
                        diag.skipped_ticks += skipped;
                        late_window.record(skipped, skipped);
                        if let Some(st) = &mut open_stall {
                            st.ticks += skipped;
                        }
                        // A safe unload resumes its ramp from where the stall left the frame (on
                        // the stale command), at the configured rate: measured from the trip, the
                        // skipped time would turn the ramp into a step to zero.
                        if let Phase::SafeUnload { since_s, .. } = &mut phase {
                            *since_s += skipped as f64 * dt_s;
                        }
                        k = due;
                    }
                }
                next_wake_k = k + batch;
            }
            let t_s = k as f64 * dt_s;

            // Stop requests: operator, signal, storage fault. Each becomes a safe unload.
            if phase == Phase::Program {
                if let Some(reason) = self.shared.take_abort() {
                    end = Some(reason);
                    phase = Phase::SafeUnload {
                        from_un: last_setpoint_un.max(last_load_un.min(limits.max_load_un)),
                        since_s: t_s,
                    };
                }
            }

            let (segment, setpoint_un) = match phase {
                Phase::Program => match cursor.at(&lf, t_s) {
                    Some(x) => x,
                    None if caught_up_to_the_end => {
                        // The final setpoint went out late, now in the device's clock (the
                        // catch-up stopped loop time at the program's end).
                        let segment = lf.setpoint_at(t_s).0;
                        let now_s = t0.elapsed().as_secs_f64().max(t_s);
                        phase = Phase::Rest { until_s: now_s + REST_TICKS_AFTER_UNLOAD_S, segment };
                        (segment, 0.0)
                    }
                    None => break,
                },
                Phase::SafeUnload { from_un, since_s } => {
                    let sp = (from_un - safe_rate * (t_s - since_s)).max(0.0);
                    if sp <= 0.0 {
                        phase = Phase::Rest { until_s: t_s + REST_TICKS_AFTER_UNLOAD_S, segment: Segment::SafeUnload };
                    }
                    (Segment::SafeUnload, sp)
                }
                Phase::Rest { until_s, segment } => {
                    // A device's samples of the rest may still be behind a stall's backlog in
                    // its FIFO: rest on until they arrive (bounded, should the frame stop).
                    let drained = tick_clocked || newest_frame_s >= until_s || t_s >= until_s + MAX_REST_DRAIN_S;
                    if t_s >= until_s && drained {
                        break;
                    }
                    (segment, 0.0)
                }
            };
            last_setpoint_un = setpoint_un;

            // Feedforward carries the program; PI removes actuator gain error and lag, also while
            // ramping down safely. At rest the command is exactly zero: no correction term may
            // hold load on an unloaded pillar.
            // While a device-clocked frame's feedback is stale (the backlog of a host stall is
            // still arriving, oldest first, or nothing arrives) the load error describes the
            // past: the correction is held, feedforward alone follows the setpoint.
            let error = setpoint_un - last_load_un;
            let command_un = if let Phase::Rest { .. } = phase {
                integral = 0.0;
                0.0
            } else if tick_clocked || feedback.fresh(t0.elapsed().as_secs_f64()) {
                integral = (integral + ki * error * dt_s).clamp(-integral_clamp, integral_clamp);
                (setpoint_un + kp * error + integral).max(0.0)
            } else {
                diag.stale_feedback_ticks += 1;
                (setpoint_un + integral).max(0.0)
            };

            if let Err(e) = self.rig.frame.command(command_un, segment) {
                return EndReason::DeviceFault(e.to_string());
            }
            if self.paced {
                // Timing interlock: how long the frame held one command, in the frame's own
                // clock. A device acts on wall time, so a host stall leaves it open-loop on a
                // stale command for as long as the stall lasts. The simulator's time stands still
                // while the host stalls (one sample per command, no tick skipped), so in its
                // clock a stall costs nothing: the stall is listed, and the late-tick window
                // below still stops a host that cannot keep the rate.
                let now_s = match clock {
                    FrameClock::Device => t0.elapsed().as_secs_f64(),
                    FrameClock::Tick => t_s,
                };
                if let Some(prev_s) = last_command_s {
                    let gap_s = now_s - prev_s;
                    let gap_us = gap_s * 1e6;
                    diag.max_command_gap_us = diag.max_command_gap_us.max(gap_us);
                    if phase == Phase::Program && gap_s > max_gap_s {
                        let detail = format!(
                            "no command to the frame for {:.1} ms ({} clock) > limits.max_command_gap_ms {} ms",
                            gap_us / 1000.0,
                            clock.as_str(),
                            limits.max_command_gap_ms
                        );
                        let at = Trip { time_s: t_s, segment, load_un: last_load_un, setpoint_un, t_s };
                        self.trip(&mut end, &mut phase, detail, gap_us / 1000.0, at, &limits, pillar);
                    }
                }
                last_command_s = Some(now_s);
            }
            merger.make_room();
            match self.rig.frame.acquire(&mut merger.frames[merger.n_frames..]) {
                Ok(n) => {
                    let new = merger.n_frames..merger.n_frames + n;
                    merger.ticks[new.clone()].fill(TickContext { setpoint_un, segment, t_s });
                    // The load feedback takes the newest frame sample now, not when its meter
                    // reading arrives: a buffered meter is read every 20 ms at 1 kHz, and a PI
                    // loop fed 20 samples late oscillates up to the frame's overload trip.
                    if let Some(f) = merger.frames[new].last() {
                        last_load_un = f.load_un;
                        newest_frame_s = f.time_s;
                        if !tick_clocked {
                            feedback.arrived(t0.elapsed().as_secs_f64(), f.time_s);
                        }
                    }
                    merger.n_frames += n;
                }
                Err(e) => return EndReason::DeviceFault(e.to_string()),
            }
            match self.rig.smu.acquire(merger.smu_room()) {
                Ok(n) => merger.n_smus += n,
                Err(e) => return EndReason::DeviceFault(e.to_string()),
            }
            // A frame sample has waited its longest, and is given up for lack of its reading only
            // once the meter was asked after that: ask now rather than at its next poll (at most
            // every eighth of the bound, see `Merger`). A burst of frame samples (a backlog arriving a block
            // per tick) can outrun the poll interval; the meter then either has the readings, or
            // its link says why not (closed, timed out), and the run ends on that cause.
            if merger.needs_meter() {
                merger.make_room();
                match self.rig.smu.acquire_now(&mut merger.smus[merger.n_smus..]) {
                    Ok(n) => merger.n_smus += n,
                    Err(e) => return EndReason::DeviceFault(e.to_string()),
                }
                merger.asked();
            }

            while let Some(pair) = merger.next() {
                // Read in place (see `Merger::next`): no reading is copied whole.
                let f = &merger.frames[pair.frame];
                let tick = &merger.ticks[pair.frame];
                let smu = pair.smu.map(|i| &merger.smus[i]);
                let aligned = align.check(f, smu);
                // Kept current per sample, so a run that ends on any error still records it.
                diag.smu_misalignment_max_us = align.worst_us();
                diag.smu_lag_max_ms = merger.lag_max_samples as f64 * dt_s * 1e3;
                if let Err(e) = aligned {
                    return EndReason::DeviceFault(e.to_string());
                }
                let (current_a, voltage_v, mut flags) = match smu {
                    Some(s) => (s.current_a, s.voltage_v, if s.compliance { FLAG_COMPLIANCE } else { 0 }),
                    None => (f64::NAN, f64::NAN, FLAG_CURRENT_INVALID),
                };
                if !current_a.is_finite() {
                    flags |= FLAG_CURRENT_INVALID;
                }
                // The sample carries the setpoint and segment of the tick it was acquired in. It is
                // built twice from these values, for the interlocks and into its ring slot, never
                // copied whole: see the push below.
                let (seq, time_s, load_un, disp_nm) = (f.seq, f.time_s, f.load_un, f.disp_nm);
                let (tick_setpoint_un, tick_segment) = (tick.setpoint_un, tick.segment);
                if tick.segment != Segment::Settle && tick.segment != Segment::SafeUnload {
                    let e = f.load_un - tick.setpoint_un;
                    tracking_sq += e * e;
                    tracking_n += 1;
                    tracking_max = tracking_max.max(e.abs());
                }

                // Interlocks: only while following the program; a trip during a safe unload
                // changes nothing (we are already unloading).
                if phase == Phase::Program {
                    let sample = Sample {
                        seq,
                        time_s,
                        setpoint_un: tick_setpoint_un,
                        load_un,
                        disp_nm,
                        current_a,
                        voltage_v,
                        segment: tick_segment,
                        flags,
                    };
                    let mut trip = check_interlocks(
                        &limits,
                        &sample,
                        tick.t_s,
                        settle_s,
                        &mut contact_seen,
                        &mut low_current_since,
                    );
                    if trip.is_none() && tick.segment != Segment::Settle {
                        trip = check_tracking(&limits, &sample, max_tracking_error_s, &mut off_track_since);
                    }
                    if let Some((detail, value)) = trip {
                        // The event is stamped at the sample; the safe unload starts now, from
                        // the current setpoint (the sample may be a few ticks old).
                        let at = Trip {
                            time_s: sample.time_s,
                            segment: tick.segment,
                            load_un: sample.load_un,
                            setpoint_un,
                            t_s,
                        };
                        self.trip(&mut end, &mut phase, detail, value, at, &limits, pillar);
                    }
                }

                // The slot is written field by field from a fresh literal on each try. Pushing a
                // copy of the interlocks' `sample` (or the value a full ring hands back) moved its
                // flags and padding as two overlapping 4-byte moves through the stack, whose
                // read-back failed to store-forward; a literal built from the same fields as that
                // one, where it is in scope, is turned back into that copy by the compiler
                // (docs/performance.md, eighth write-side pass). Same fields, same bits.
                loop {
                    let slot = Sample {
                        seq,
                        time_s,
                        setpoint_un: tick_setpoint_un,
                        load_un,
                        disp_nm,
                        current_a,
                        voltage_v,
                        segment: tick_segment,
                        flags,
                    };
                    match self.ring.push(slot) {
                        Ok(()) => {
                            self.shared.count_pushed();
                            break;
                        }
                        // Unpaced: let the consumer catch up, unless it is gone.
                        Err(rtrb::PushError::Full(_)) if self.wait_for_ring && !self.ring.is_abandoned() => {
                            ring_full_waits += 1;
                            self.ring_full_gate = None;
                            if nap_when_full {
                                std::thread::sleep(RING_FULL_NAP);
                            } else {
                                std::thread::yield_now();
                            }
                        }
                        Err(_) => {
                            self.ring_full_gate = None;
                            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
            let occupancy = self.ring.buffer().capacity() - self.ring.slots();
            high_water = high_water.max(occupancy);
            self.shared.ring_occupancy.store(occupancy as u64, Ordering::Relaxed);

            k += 1;
            diag.ticks += 1;
            if self.paced {
                // Per tick, batched or not: this tick's work ended after the next tick's
                // deadline. A batch that starts on time ends each tick well before it.
                let next = anchor + dt.mul_f64(k as f64);
                let ended = Instant::now();
                let missed = ended > next;
                late_streak = if missed { late_streak + 1 } else { 0 };
                diag.max_late_streak = diag.max_late_streak.max(late_streak);
                if missed {
                    diag.missed_deadlines += 1;
                    let by = &mut diag.missed_by_cause;
                    *match cause {
                        Cause::LateWakeup => &mut by.late_wakeup,
                        Cause::Spin => &mut by.spin,
                        Cause::Work => &mut by.work,
                    } += 1;
                    diag.lateness_split.missed[episode_class] += 1;
                }
                if k >= next_wake_k {
                    // The wake-up's last tick.
                    diag.batch_work.record_us(ended.saturating_duration_since(wake_start).as_secs_f64() * 1e6);
                }
                late_window.record(1, u64::from(missed));
                match (&mut open_stall, missed) {
                    (Some(st), true) => st.ticks += 1,
                    (Some(st), false) => {
                        diag.record_stall(*st);
                        open_stall = None;
                    }
                    (None, _) => {}
                }
                if move_after_batch && k >= next_wake_k {
                    move_after_batch = false;
                    if ended > next {
                        // Rounded up to whole ticks: the next deadline lands less than one
                        // period after the batch's end, and the samples keep their tick times.
                        let moved = ((ended - next).as_secs_f64() / dt_s).ceil().max(1.0) as u64;
                        let by = dt.mul_f64(moved as f64);
                        anchor += by;
                        self.shared.set_schedule_moved(anchor - t0);
                        diag.moved_ticks += moved;
                        // They count as late in the window: a host that keeps stalling still
                        // stops the test, as when they were run late.
                        late_window.record(moved, moved);
                        if let Some(st) = &mut open_stall {
                            st.ticks += moved;
                        }
                    }
                }
                // Timing interlock: the share of late ticks over the last window, so a host that
                // cannot keep up stops the test while one hiccup (recorded as a stall) does not.
                if phase == Phase::Program && late_window.fraction() > limits.max_late_fraction {
                    let detail = format!(
                        "{} of the last {} ticks missed their deadline or were moved or skipped by a stall ({:.1} % > \
                         limits.max_late_fraction {} % over limits.late_window_s {} s)",
                        late_window.late,
                        late_window.window_ticks(),
                        late_window.fraction() * 100.0,
                        limits.max_late_fraction * 100.0,
                        limits.late_window_s
                    );
                    let at = Trip { time_s: t_s, segment, load_un: last_load_un, setpoint_un, t_s };
                    self.trip(&mut end, &mut phase, detail, late_window.fraction(), at, &limits, pillar);
                }
            }
        }
        if let Some(st) = open_stall {
            diag.record_stall(st);
        }
        let usage1 = thread_usage();
        diag.control_page_faults = usage1.faults.saturating_sub(usage0.faults);
        diag.control_preemptions = usage1.preemptions.saturating_sub(usage0.preemptions);
        diag.control_cpu_us = (usage1.cpu_us - usage0.cpu_us).max(0.0);
        // A buffered meter is read every few ms: the last frame samples may still wait for their
        // readings. Collect them (bounded) so the file ends where the program did.
        if let Err(e) = self.drain_tail(&mut merger, &mut align) {
            end.get_or_insert(EndReason::DeviceFault(e.to_string()));
        }
        diag.smu_misalignment_max_us = align.worst_us();
        diag.ring_high_water = high_water as u64;
        diag.ring_full_waits = ring_full_waits;
        diag.load_tracking_rms_un = if tracking_n > 0 { (tracking_sq / tracking_n as f64).sqrt() } else { 0.0 };
        diag.load_tracking_max_un = tracking_max;
        end.unwrap_or(EndReason::Completed)
    }

    /// An interlock tripped: record the event for the file, name the reason and start the safe
    /// unload. Allocation-free but for the reason's text, which exists once per run.
    #[allow(clippy::too_many_arguments)]
    fn trip(
        &mut self,
        end: &mut Option<EndReason>,
        phase: &mut Phase,
        detail: String,
        value: f64,
        at: Trip,
        limits: &nanoecr_core::config::LimitsConfig,
        pillar: nanoecr_core::Pillar,
    ) {
        let ev = Event {
            kind: EventKind::Interlock,
            sign: Sign::P,
            onset_time_s: at.time_s,
            peak_time_s: at.time_s,
            duration_s: 0.0,
            magnitude: value,
            linked_delta_rho: f64::NAN,
            segment: at.segment,
            stress_mpa: pillar.stress_mpa(at.load_un),
        };
        // A full control-event ring would mean the consumer is gone; the end reason still
        // records the trip.
        let _ = self.control_events.push(ev);
        *end = Some(EndReason::Interlock(detail));
        *phase = Phase::SafeUnload { from_un: at.setpoint_un.max(at.load_un.min(limits.max_load_un)), since_s: at.t_s };
    }

    /// After the last tick: read the meter until every frame sample already acquired has its
    /// reading, for at most `limits.max_meter_lag_ms` (the bound of the run, here in wall time:
    /// no frame samples come any more to count it in), and push those samples. At the deadline
    /// the meter is asked out of turn until it has nothing more, so a host stall during the wait
    /// does not give up readings the meter holds; samples still unmatched then are pushed with
    /// the current flagged invalid (a buffered meter's missing reading is a stream error).
    fn drain_tail(&mut self, merger: &mut Merger, align: &mut Alignment) -> Result<(), HwError> {
        let deadline = Instant::now() + Duration::from_secs_f64(self.cfg.raw.limits.max_meter_lag_ms / 1000.0);
        while merger.pending() > 0 {
            merger.make_room();
            let timed_out = Instant::now() >= deadline;
            let n = if timed_out {
                self.rig.smu.acquire_now(&mut merger.smus[merger.n_smus..])?
            } else {
                self.rig.smu.acquire(merger.smu_room())?
            };
            merger.n_smus += n;
            if timed_out && n == 0 {
                // Let the merger give up on the readings still missing.
                merger.give_up = true;
            }
            while let Some(pair) = merger.next() {
                let f = &merger.frames[pair.frame];
                let TickContext { setpoint_un, segment, .. } = merger.ticks[pair.frame];
                let smu = pair.smu.map(|i| &merger.smus[i]);
                align.check(f, smu)?;
                let (current_a, voltage_v, mut flags) = match smu {
                    Some(s) => (s.current_a, s.voltage_v, if s.compliance { FLAG_COMPLIANCE } else { 0 }),
                    None => (f64::NAN, f64::NAN, FLAG_CURRENT_INVALID),
                };
                if !current_a.is_finite() {
                    flags |= FLAG_CURRENT_INVALID;
                }
                let sample = Sample {
                    seq: f.seq,
                    time_s: f.time_s,
                    setpoint_un,
                    load_un: f.load_un,
                    disp_nm: f.disp_nm,
                    current_a,
                    voltage_v,
                    segment,
                    flags,
                };
                let mut pending = sample;
                loop {
                    match self.ring.push(pending) {
                        Ok(()) => {
                            self.shared.count_pushed();
                            break;
                        }
                        Err(rtrb::PushError::Full(back)) if !self.ring.is_abandoned() => {
                            pending = back;
                            std::thread::yield_now();
                        }
                        Err(_) => {
                            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
            if merger.give_up {
                break;
            }
            if n == 0 {
                // The meter answers on its own poll interval (a few ms); no need to spin.
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }
}

/// What made a paced wake-up's ticks late (see [`nanoecr_core::MissedByCause`]).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cause {
    /// The sleep returned a sample period or more past the deadline.
    LateWakeup,
    /// The sleep returned in time; the CPU was taken before the first tick started (while
    /// spinning, where the loop spins).
    Spin,
    /// The first tick started on time; the work was slow or interrupted.
    Work,
}

impl Cause {
    /// What will make this wake-up's ticks late, if any are: its first tick started `late` after
    /// its deadline, its sleep ended as `woke` says (`None`: no sleep), the sample period is
    /// `dt`, and `episode` is the cause of the wake-up before it.
    fn of_wakeup(late: Duration, woke: Option<Woke>, dt: Duration, episode: Cause) -> Cause {
        match woke {
            _ if late < dt => Cause::Work,
            Some(w) if w.past_deadline >= dt => Cause::LateWakeup,
            Some(_) => Cause::Spin,
            // No sleep: the ticks before ran past this deadline; the cascade belongs to whatever
            // began it.
            None => episode,
        }
    }
}

/// The class of a paced wake-up's raw lateness in `split` ([`LatenessSplit`]): its first tick
/// started `late` after its deadline, its sleep ended as `woke` says (`None`: no sleep), the
/// sample period is `dt`, and `episode` is the class of the wake-up before it. A wake-up that
/// could not sleep because the ticks before ran past its deadline belongs to the episode that
/// began with a wake-up that did, as its [`Cause`] does; one that did not sleep because it was
/// already within the spin window came on time.
fn lateness_class(split: &LatenessSplit, late: Duration, woke: Option<Woke>, dt: Duration, episode: usize) -> usize {
    match woke {
        Some(w) => split.class_of(w.raw_lateness.as_secs_f64() * 1e6),
        None if late >= dt => episode,
        None => 0,
    }
}

/// Where and when an interlock tripped.
#[derive(Debug, Clone, Copy)]
struct Trip {
    /// Time stamped on the interlock event, s.
    time_s: f64,
    segment: Segment,
    load_un: f64,
    setpoint_un: f64,
    /// Loop time the safe unload starts from, s.
    t_s: f64,
}

/// Late ticks over a sliding window of `late_window_s`, kept in a fixed number of buckets: O(1)
/// and allocation-free per tick. The fraction is taken over a whole window's ticks from the
/// start, so a hiccup in the first second weighs what it would later.
struct LateWindow {
    buckets: [u64; LATE_WINDOW_BUCKETS],
    bucket_ticks: u64,
    current: usize,
    in_current: u64,
    late: u64,
}

impl LateWindow {
    fn new(window_s: f64, dt_s: f64) -> Self {
        let window_ticks = (window_s / dt_s).round().max(1.0) as u64;
        let bucket_ticks = window_ticks.div_ceil(LATE_WINDOW_BUCKETS as u64).max(1);
        Self { buckets: [0; LATE_WINDOW_BUCKETS], bucket_ticks, current: 0, in_current: 0, late: 0 }
    }

    fn window_ticks(&self) -> u64 {
        self.bucket_ticks * LATE_WINDOW_BUCKETS as u64
    }

    /// Record `ticks` ticks of which `late` were late.
    #[inline]
    fn record(&mut self, mut ticks: u64, mut late: u64) {
        while ticks > 0 {
            if self.in_current == self.bucket_ticks {
                self.current = (self.current + 1) % LATE_WINDOW_BUCKETS;
                self.late -= self.buckets[self.current];
                self.buckets[self.current] = 0;
                self.in_current = 0;
            }
            let n = ticks.min(self.bucket_ticks - self.in_current);
            let l = late.min(n);
            self.in_current += n;
            self.buckets[self.current] += l;
            self.late += l;
            ticks -= n;
            late -= l;
        }
    }

    fn fraction(&self) -> f64 {
        self.late as f64 / self.window_ticks() as f64
    }
}

/// Load-tracking interlock: |load − setpoint| above `max_tracking_error_un` for longer than the
/// configured time (device time), while following the program after settle.
fn check_tracking(
    limits: &nanoecr_core::config::LimitsConfig,
    s: &Sample,
    max_s: f64,
    off_track_since: &mut Option<f64>,
) -> Option<(String, f64)> {
    let err = (s.load_un - s.setpoint_un).abs();
    if err <= limits.max_tracking_error_un {
        *off_track_since = None;
        return None;
    }
    let since = *off_track_since.get_or_insert(s.time_s);
    (s.time_s - since >= max_s).then(|| {
        (
            format!(
                "load {:.1} µN off its setpoint {:.1} µN by more than limits.max_tracking_error_un {} µN for \
                 {:.1} ms ≥ limits.max_tracking_error_ms {} ms",
                s.load_un,
                s.setpoint_un,
                limits.max_tracking_error_un,
                (s.time_s - since) * 1000.0,
                limits.max_tracking_error_ms
            ),
            err,
        )
    })
}

/// Rehearse the paced wake-up path for [`WARM_UP`] before t0: wait for deadlines one wake-up
/// period apart as the loop will ([`wait_for_wakeup`]), read the clock and fill a histogram, so
/// code, data and the CPU's clock are warm when the first real tick comes.
fn warm_up(wake_period: Duration, spin: Duration, batched: bool) {
    let mut h = LatencyHistogram::default();
    let start = Instant::now();
    let mut i = 1u32;
    while start.elapsed() < WARM_UP {
        let deadline = start + wake_period * i;
        let _ = wait_for_wakeup(deadline, spin, batched);
        h.record_us(Instant::now().saturating_duration_since(deadline).as_secs_f64() * 1e6);
        i += 1;
    }
    std::hint::black_box(&h);
}

/// Pairs meter readings with frame samples by index and checks their timestamps: the worst
/// deviation of (meter time − frame time) from its value at the first pair is recorded; with an
/// external trigger a deviation over half a sample period means a pulse was missed or doubled
/// (the readings have slipped by one), which is a stream error, never a silent shift.
struct Alignment {
    pacing: SmuPacing,
    device: String,
    dt_s: f64,
    /// `limits.max_meter_lag_ms`, for the message when a reading never came.
    max_lag_ms: f64,
    origin_s: Option<f64>,
    worst_s: f64,
    measured: bool,
}

impl Alignment {
    fn new(pacing: SmuPacing, device: String, dt_s: f64, max_lag_ms: f64) -> Self {
        Self { pacing, device, dt_s, max_lag_ms, origin_s: None, worst_s: 0.0, measured: false }
    }

    #[inline(always)]
    fn check(&mut self, f: &FrameReading, smu: Option<&SmuReading>) -> Result<(), HwError> {
        let Some(s) = smu else {
            if self.pacing == SmuPacing::Tagged {
                return Ok(());
            }
            return Err(HwError::Stream {
                device: self.device.clone(),
                message: format!(
                    "no reading for frame sample {} within limits.max_meter_lag_ms = {} ms: asked again, the meter \
                     answered without it (it fell behind or stopped taking readings)",
                    f.seq, self.max_lag_ms
                ),
            });
        };
        if !(s.time_s.is_finite() && f.time_s.is_finite()) {
            return Ok(());
        }
        let offset = s.time_s - f.time_s;
        let origin = *self.origin_s.get_or_insert(offset);
        let dev = (offset - origin).abs();
        self.measured = true;
        if dev > self.worst_s {
            self.worst_s = dev;
        }
        if self.pacing == SmuPacing::ExternalTrigger && dev > 0.5 * self.dt_s {
            return Err(HwError::Stream {
                device: self.device.clone(),
                message: format!(
                    "reading {} was taken {:.3} ms off frame sample {} (more than half the {:.3} ms period): a trigger \
                     pulse was missed or doubled",
                    s.seq,
                    dev * 1e3,
                    f.seq,
                    self.dt_s * 1e3
                ),
            });
        }
        Ok(())
    }

    fn worst_us(&self) -> Option<f64> {
        self.measured.then_some(self.worst_s * 1e6)
    }
}

/// Checks one sample against the declarative limits. Returns a description and the offending
/// value when one trips.
fn check_interlocks(
    limits: &nanoecr_core::config::LimitsConfig,
    s: &Sample,
    t_s: f64,
    settle_s: f64,
    contact_seen: &mut bool,
    low_current_since: &mut Option<f64>,
) -> Option<(String, f64)> {
    if s.load_un > limits.max_load_un {
        return Some((format!("load {:.1} µN > limits.max_load_un {} µN", s.load_un, limits.max_load_un), s.load_un));
    }
    if s.disp_nm > limits.max_displacement_nm {
        return Some((
            format!("displacement {:.1} nm > limits.max_displacement_nm {} nm", s.disp_nm, limits.max_displacement_nm),
            s.disp_nm,
        ));
    }
    if s.flags & FLAG_COMPLIANCE != 0 {
        return Some((format!("current compliance reached at {:.3e} A", s.current_a), s.current_a));
    }
    if let Some(max_a) = limits.max_current_a {
        if s.current_a.abs() > max_a {
            return Some((
                format!("current {:.3e} A > limits.max_current_a {:.3e} A", s.current_a, max_a),
                s.current_a,
            ));
        }
    }
    if let Some(min_a) = limits.contact_lost_current_a {
        let i = s.current_a.abs();
        if t_s >= settle_s {
            if i >= min_a {
                *contact_seen = true;
                *low_current_since = None;
            } else if *contact_seen {
                let since = *low_current_since.get_or_insert(t_s);
                if t_s - since >= limits.contact_lost_s {
                    return Some((
                        format!(
                            "contact lost: current {:.3e} A < limits.contact_lost_current_a {:.3e} A for {} s",
                            s.current_a, min_a, limits.contact_lost_s
                        ),
                        s.current_a,
                    ));
                }
            }
        }
    }
    None
}

/// How a sleep of [`wait_until`] ended.
#[derive(Debug, Clone, Copy)]
struct Woke {
    /// When the sleep returned minus when it was asked to (the deadline less the spin window):
    /// the scheduler's wake-up lateness, what cyclictest measures.
    raw_lateness: Duration,
    /// How far past the deadline itself the sleep returned (zero if before it).
    past_deadline: Duration,
}

/// Sleep until `spin` before `deadline` on the monotonic clock, then spin to it. Returns how
/// the sleep ended, or `None` when there was no time to sleep (already within the spin window
/// or past the deadline).
fn wait_until(deadline: Instant, spin: Duration) -> Option<Woke> {
    let woke = sleep_to_window(deadline, spin);
    while Instant::now() < deadline {
        std::hint::spin_loop();
    }
    woke
}

/// Sleep until `lead` before `deadline` on the monotonic clock and return at once: where the
/// loop batches, the batch starts as soon as the thread wakes instead of spinning to its first
/// deadline. Its ticks already run up to a wake-up period ahead of their own deadlines, so the
/// first one may too, and the CPU a spin would burn (half a CPU at 100 kHz, where an interrupt or
/// a vCPU stall during the spin cost ticks) is given back. Returns how the sleep ended, or `None`
/// when there was no time to sleep (already within `lead` of the deadline, or past it).
fn sleep_to_window(deadline: Instant, lead: Duration) -> Option<Woke> {
    let now = Instant::now();
    if deadline <= now {
        return None;
    }
    let remaining = deadline - now;
    if remaining <= lead {
        return None;
    }
    let target = deadline - lead;
    sleep_until(target, remaining - lead);
    let back = Instant::now();
    Some(Woke {
        raw_lateness: back.saturating_duration_since(target),
        past_deadline: back.saturating_duration_since(deadline),
    })
}

/// How a paced loop waits for a wake-up's deadline: to the deadline itself where each wake-up is
/// one tick (sleep, then spin the last `spin`), or only to `spin` before it where the loop
/// batches ([`sleep_to_window`]: the batch starts at once, ahead of its deadline).
fn wait_for_wakeup(deadline: Instant, spin: Duration, batched: bool) -> Option<Woke> {
    if batched {
        sleep_to_window(deadline, spin)
    } else {
        wait_until(deadline, spin)
    }
}

/// Sleep until `target` with `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`: the kernel wakes
/// the thread at that instant however long it took to get into the call (an interrupt between
/// reading the clock and a relative sleep would move the wake-up later by as much). `Instant`
/// is CLOCK_MONOTONIC on Linux, so the target is the clock's reading now plus the time left.
/// Falls back to a relative sleep of `left` if the clock cannot be read.
fn sleep_until(target: Instant, left: Duration) {
    use nix::sys::time::TimeSpec;
    use nix::time::{clock_gettime, clock_nanosleep, ClockId, ClockNanosleepFlags};
    let Ok(mono) = clock_gettime(ClockId::CLOCK_MONOTONIC) else {
        std::thread::sleep(left);
        return;
    };
    let ts = mono + TimeSpec::from_duration(target.saturating_duration_since(Instant::now()));
    // A signal (the CLI's handlers) interrupts the sleep; the absolute target stays valid.
    while let Err(nix::errno::Errno::EINTR) =
        clock_nanosleep(ClockId::CLOCK_MONOTONIC, ClockNanosleepFlags::TIMER_ABSTIME, &ts)
    {}
}

/// Ask the kernel for zero wake-up latency from idle (PM QoS: write 0 to `/dev/cpu_dma_latency`
/// and keep it open; closing it restores the default), as cyclictest does unless told otherwise
/// (rt-tests, src/cyclictest/cyclictest.c, `set_latency_target`). Idle CPUs then poll instead of
/// halting: a halted vCPU of a virtual machine takes tens of µs, and at times milliseconds, to
/// come back for a timer, which made the loop's wake-ups on a quiet host twice as late as
/// cyclictest's. The cost is that idle CPUs stay busy polling while a real-time run lasts. `None`
/// (logged) when the file cannot be written, as without root.
fn hold_idle_latency_zero() -> Option<std::fs::File> {
    use std::io::Write;
    let opened = std::fs::OpenOptions::new().write(true).open("/dev/cpu_dma_latency");
    match opened.and_then(|mut f| f.write_all(&0i32.to_ne_bytes()).map(|()| f)) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, "could not ask for zero idle latency (/dev/cpu_dma_latency); wake-ups from idle may be late");
            None
        }
    }
}

/// Lock every page of the process, present and future (mlockall MCL_CURRENT | MCL_FUTURE): the
/// ring, the stacks and the heap are faulted in now, and nothing the loop touches can be paged
/// out or faulted in mid-run. Logged (not fatal) when refused.
fn lock_memory() -> bool {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "could not lock memory (mlockall); page faults may delay ticks");
            false
        }
    }
}

/// What the kernel counts for the calling thread so far (getrusage RUSAGE_THREAD).
#[derive(Debug, Clone, Copy, Default)]
struct ThreadUsage {
    /// Page faults, minor + major.
    faults: u64,
    /// Involuntary context switches.
    preemptions: u64,
    /// CPU time, user + system, µs.
    cpu_us: f64,
}

/// The calling thread's usage so far; zeros if the kernel does not say.
fn thread_usage() -> ThreadUsage {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_THREAD) {
        Ok(u) => {
            let us = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
            ThreadUsage {
                faults: (u.minor_page_faults() + u.major_page_faults()).max(0) as u64,
                preemptions: u.involuntary_context_switches().max(0) as u64,
                cpu_us: us(u.user_time()) + us(u.system_time()),
            }
        }
        Err(_) => ThreadUsage::default(),
    }
}

/// Restrict the calling thread to `cpus`. False when the set is empty or the kernel refuses.
pub(crate) fn set_affinity(cpus: impl IntoIterator<Item = usize>) -> bool {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut set = CpuSet::new();
    let mut any = false;
    for cpu in cpus {
        any |= set.set(cpu).is_ok();
    }
    any && sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

/// Ask for SCHED_FIFO on the calling thread. Fails without CAP_SYS_NICE (or an rtprio limit),
/// which is normal on a desktop; the caller records and reports the outcome.
fn try_realtime() -> bool {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy, ThreadPriority,
        ThreadSchedulePolicy,
    };
    let policy = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
    let p = ThreadPriority::from_posix(thread_priority::ScheduleParams { sched_priority: 50 });
    match set_thread_priority_and_policy(thread_native_id(), p, policy) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = ?e, "no real-time scheduling for the control loop (SCHED_FIFO refused); running at normal priority");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64, time_s: f64) -> FrameReading {
        FrameReading { seq, time_s, ..FrameReading::default() }
    }

    fn meter(seq: u64, time_s: f64) -> SmuReading {
        SmuReading { seq, time_s, ..SmuReading::default() }
    }

    /// Acquire `seqs` into the merger as the loop does: room first, then one batch.
    fn push_frames(m: &mut Merger, seqs: std::ops::Range<u64>) {
        m.make_room();
        assert!(seqs.end - seqs.start <= READ_BATCH as u64, "one acquire's worth");
        for seq in seqs {
            m.frames[m.n_frames] = frame(seq, seq as f64 * 1e-3);
            m.n_frames += 1;
        }
    }

    fn push_readings(m: &mut Merger, seqs: std::ops::Range<u64>) {
        m.make_room();
        assert!(seqs.end - seqs.start <= READ_BATCH as u64, "one fetch's worth");
        for seq in seqs {
            m.smus[m.n_smus] = meter(seq, seq as f64 * 1e-3);
            m.n_smus += 1;
        }
    }

    #[test]
    fn a_frame_sample_waits_for_its_reading_past_256_samples_up_to_the_lag_bound() {
        // 1000 ms at 1 kHz. The merge window used to be 256 samples whatever the rate.
        let mut m = Merger::new(1000);
        for start in (0..1000).step_by(100) {
            push_frames(&mut m, start..start + 100);
            assert!(!m.needs_meter(), "frame {start}: within the bound");
            assert!(m.take().is_none(), "frame {start}: still waiting, not given up");
        }
        assert_eq!(m.pending(), 1000);
        // The meter catches up: every sample gets its own reading, in order.
        for start in (0..1000).step_by(250) {
            push_readings(&mut m, start..start + 250);
            for seq in start..start + 250 {
                let (f, _, r) = m.take().expect("matched");
                assert_eq!((f.seq, r.map(|r| r.seq)), (seq, Some(seq)));
            }
        }
        assert!(m.take().is_none());
        assert_eq!(m.lag_max_samples, 999, "frame 0 waited until frame 999 was in hand");
    }

    #[test]
    fn a_sample_is_given_up_at_the_bound_and_the_loop_is_told_to_ask_the_meter_first() {
        let mut m = Merger::new(250);
        assert_eq!(m.ask_every, 31, "an eighth of the bound");
        push_readings(&mut m, 0..10);
        push_frames(&mut m, 0..200);
        push_frames(&mut m, 200..260);
        // Readings reach frame 9; frame 10 is the first without one, 249 samples before the newest.
        assert!(!m.needs_meter());
        for seq in 0..10 {
            assert_eq!(m.take().and_then(|(_, _, r)| r).map(|r| r.seq), Some(seq));
        }
        assert!(m.take().is_none(), "frame 10 waits: 249 < 250 samples");
        push_frames(&mut m, 260..261);
        assert!(m.needs_meter(), "frame 10 is 250 samples old: ask the meter before giving up");
        // The meter, asked, delivers it: nothing is given up.
        push_readings(&mut m, 10..11);
        m.asked();
        assert!(!m.needs_meter(), "frame 11 is 249 samples old");
        assert_eq!(m.take().and_then(|(_, _, r)| r).map(|r| r.seq), Some(10));
        assert!(m.take().is_none());
        // Frame 11 falls due one sample later, but the meter was asked a sample ago: no ask until
        // 31 samples after the last one, and frame 11 waits for it rather than being given up.
        push_frames(&mut m, 261..262);
        assert!(!m.needs_meter(), "asked at frame 260: the next ask at 291");
        assert!(m.take().is_none(), "frame 11 is not given up before the meter was asked");
        push_frames(&mut m, 262..291);
        assert!(!m.needs_meter());
        assert!(m.take().is_none());
        push_frames(&mut m, 291..292);
        assert!(m.needs_meter(), "31 samples after the last ask");
        // Asked again, the meter has nothing: frames 11 to 41 (due by frame 291) go without
        // their readings, frame 42 waits.
        m.asked();
        for seq in 11..42 {
            let (f, _, r) = m.take().expect("given up");
            assert_eq!((f.seq, r), (seq, None));
        }
        assert!(m.take().is_none());
    }

    #[test]
    fn readings_the_meter_skipped_or_that_no_frame_sample_waits_for_are_dropped() {
        let mut m = Merger::new(250);
        // A tagged meter skipped reading 1 and has 2 and 3; reading 0 came for no waiting sample.
        push_readings(&mut m, 0..1);
        push_readings(&mut m, 2..4);
        push_frames(&mut m, 1..4);
        assert_eq!(m.take().map(|(f, _, r)| (f.seq, r.map(|r| r.seq))), Some((1, None)), "meter moved past 1");
        assert_eq!(m.take().map(|(f, _, r)| (f.seq, r.map(|r| r.seq))), Some((2, Some(2))));
        assert_eq!(m.take().map(|(f, _, r)| (f.seq, r.map(|r| r.seq))), Some((3, Some(3))));
        assert!(m.take().is_none());
        // At the end of the run the merger gives up on what is still missing.
        push_frames(&mut m, 4..6);
        m.give_up = true;
        assert_eq!(m.take().map(|(f, _, r)| (f.seq, r)), Some((4, None)));
        assert_eq!(m.take().map(|(f, _, r)| (f.seq, r)), Some((5, None)));
        assert!(m.take().is_none());
    }

    #[test]
    fn a_meter_far_behind_keeps_every_pair_in_order_across_compactions() {
        // 100 kHz with the default 250 ms: 25 000 samples may wait. The meter runs 20 000 behind
        // the frame for 204 000 samples; the queues compact many times on the way.
        let (lag, total) = (20_000u64, 120 * 1700u64);
        let mut m = Merger::new(25_000);
        let (mut frames_in, mut readings_in, mut merged) = (0u64, 0u64, 0u64);
        while merged < total {
            if frames_in < total {
                push_frames(&mut m, frames_in..frames_in + 120);
                frames_in += 120;
            }
            // The meter lags by `lag` samples until the frame stops, then catches up.
            let upto = if frames_in == total { total } else { frames_in.saturating_sub(lag) };
            while readings_in < upto {
                let n = (upto - readings_in).min(READ_BATCH as u64);
                push_readings(&mut m, readings_in..readings_in + n);
                readings_in += n;
            }
            assert!(!m.needs_meter(), "the meter is within the bound");
            while let Some((f, _, r)) = m.take() {
                assert_eq!((f.seq, r.map(|r| r.seq)), (merged, Some(merged)));
                merged += 1;
            }
            assert!(m.n_frames <= m.frames.len() && m.n_smus <= m.smus.len());
        }
        assert_eq!(m.pending(), 0);
        assert!(m.lag_max_samples >= lag, "{}", m.lag_max_samples);
    }

    #[test]
    fn alignment_records_the_worst_deviation_and_catches_a_slipped_trigger() {
        let dt = 1e-3;
        // External trigger: the meter's clock starts 0.4 ms after the frame's and jitters 20 µs.
        let mut a = Alignment::new(SmuPacing::ExternalTrigger, "SMU0 (keithley-2450 tcp x)".into(), dt, 250.0);
        for i in 0..10u64 {
            let jitter = if i == 7 { 20e-6 } else { 0.0 };
            a.check(&frame(i, i as f64 * dt), Some(&meter(i, i as f64 * dt - 0.4e-3 + jitter))).expect("aligned");
        }
        let worst = a.worst_us().expect("measured");
        assert!((worst - 20.0).abs() < 1e-6, "{worst}");
        // A missed pulse: reading 10 was taken at frame sample 11's time.
        let e = a.check(&frame(10, 10.0 * dt), Some(&meter(10, 11.0 * dt - 0.4e-3))).expect_err("slip");
        let t = e.to_string();
        assert!(t.contains("SMU0 (keithley-2450") && t.contains("missed or doubled"), "{t}");
        // A frame sample without its reading is a stream error for a buffered meter…
        assert!(a.check(&frame(11, 11.0 * dt), None).is_err());
        // …but not for a tagged one (the in-house dialect flags it invalid, as before).
        let mut tagged = Alignment::new(SmuPacing::Tagged, "SMU0".into(), dt, 250.0);
        tagged.check(&frame(0, 0.0), None).expect("tagged");
        assert_eq!(tagged.worst_us(), None, "no timestamps, nothing measured");
    }

    #[test]
    fn a_timer_paced_meter_may_drift_and_the_drift_is_recorded() {
        let dt = 1e-3;
        let mut a = Alignment::new(SmuPacing::Timer, "SMU0".into(), dt, 250.0);
        // 100 ppm fast: after 10 000 samples the readings are 1 ms (one period) ahead.
        for i in (0..=10_000u64).step_by(1000) {
            let t = i as f64 * dt;
            a.check(&frame(i, t), Some(&meter(i, t * (1.0 - 1e-4)))).expect("timer drift is not an error");
        }
        let worst = a.worst_us().expect("measured");
        assert!((worst - 1000.0).abs() < 1e-3, "{worst}");
    }

    #[test]
    fn the_late_window_forgets_what_slid_out_and_counts_over_a_whole_window() {
        // 1 s at 1 kHz: 32 buckets of 32 ticks (1024 ticks).
        let mut w = LateWindow::new(1.0, 0.001);
        assert_eq!(w.window_ticks(), 1024);
        w.record(100, 100);
        // A burst at the start weighs against a whole window, not against the ticks so far.
        assert!((w.fraction() - 100.0 / 1024.0).abs() < 1e-12);
        w.record(900, 0);
        assert_eq!(w.late, 100);
        // Past one window of on-time ticks, the burst has slid out entirely.
        w.record(1100, 0);
        assert_eq!(w.late, 0);
        // Late ticks spread over buckets add up; skipped ticks count as late.
        w.record(300, 300);
        assert_eq!(w.late, 300);
        assert!(w.fraction() > 0.2);
    }

    #[test]
    fn a_late_tick_is_charged_to_what_began_its_episode() {
        let us = Duration::from_micros;
        let dt = us(10);
        let woke = |past_deadline_us| {
            Some(Woke { raw_lateness: us(30 + past_deadline_us), past_deadline: us(past_deadline_us) })
        };
        // A first tick that starts within a period of its deadline: whatever is missed, the work did it.
        assert_eq!(Cause::of_wakeup(us(9), woke(9), dt, Cause::LateWakeup), Cause::Work);
        assert_eq!(Cause::of_wakeup(us(0), None, dt, Cause::Spin), Cause::Work);
        // The sleep itself returned a period or more past the deadline.
        assert_eq!(Cause::of_wakeup(us(45), woke(40), dt, Cause::Work), Cause::LateWakeup);
        // The sleep returned in time (2 µs past), the first tick still started 40 µs late: the
        // CPU was taken while spinning.
        assert_eq!(Cause::of_wakeup(us(40), woke(2), dt, Cause::Work), Cause::Spin);
        // No sleep, late: the wake-ups of a cascade inherit the cause that began it.
        for episode in [Cause::LateWakeup, Cause::Spin, Cause::Work] {
            assert_eq!(Cause::of_wakeup(us(500), None, dt, episode), episode);
        }
    }

    #[test]
    fn a_missed_tick_is_classed_by_the_raw_lateness_of_the_wake_up_that_began_its_episode() {
        let us = Duration::from_micros;
        let dt = us(10);
        // 100 kHz, 60 µs spin, 400 µs wake-ups: classes from 0, 60, 400 and 1000 µs.
        let split = LatenessSplit::new(60.0, 400.0);
        let woke = |raw_us: u64| Some(Woke { raw_lateness: us(raw_us), past_deadline: us(raw_us.saturating_sub(60)) });
        // Classed by how late the sleep returned, whatever the first tick's lateness.
        for (raw_us, class) in [(5u64, 0), (59, 0), (60, 1), (399, 1), (400, 2), (999, 2), (1000, 3), (40_000, 3)] {
            let late = us(raw_us.saturating_sub(60));
            assert_eq!(lateness_class(&split, late, woke(raw_us), dt, 2), class, "{raw_us} µs");
        }
        // No sleep and late: the cascade after a wake-up (or a tick's work) keeps the episode's
        // class; a stall of the work after an on-time wake-up is not a late wake-up.
        for episode in 0..4 {
            assert_eq!(lateness_class(&split, us(5000), None, dt, episode), episode);
        }
        // No sleep, on time (already within the spin window): the first class.
        assert_eq!(lateness_class(&split, us(3), None, dt, 3), 0);
    }

    #[test]
    fn a_batched_wake_up_starts_at_its_window_and_a_single_tick_waits_for_its_deadline() {
        // Batched: the sleep ends a window before the deadline and the batch starts at once. The
        // deadline is a minute away and the window all but 200 ms of it, so the wait returns a
        // minute before the deadline on any host that is not stalled that long; spinning to the
        // deadline would return after it. The 200 ms it sleeps are what a host stall between
        // reading the clock here and the call may take before there is no time left to sleep
        // (it was 2 ms: any stall longer than that there failed the test).
        let deadline = Instant::now() + Duration::from_secs(60);
        let lead = Duration::from_secs(60) - Duration::from_millis(200);
        let woke = wait_for_wakeup(deadline, lead, true).expect("there was time to sleep");
        assert!(Instant::now() < deadline, "the batch starts ahead of its deadline");
        assert_eq!(woke.past_deadline, Duration::ZERO);
        // Already within the window: no sleep, no wait.
        assert!(wait_for_wakeup(deadline, Duration::from_secs(120), true).is_none());
        assert!(Instant::now() < deadline);
        // One tick per wake-up: sleep, then spin to the deadline itself, so its command goes out
        // on time and never early.
        let deadline = Instant::now() + Duration::from_millis(3);
        let _ = wait_for_wakeup(deadline, Duration::from_millis(1), false);
        assert!(Instant::now() >= deadline, "a single tick's wait ends at its deadline");
        // Past the deadline there is nothing to wait for, batched or not.
        let past = Instant::now();
        assert!(wait_for_wakeup(past, Duration::from_millis(1), true).is_none());
        assert!(wait_for_wakeup(past, Duration::from_millis(1), false).is_none());
    }

    #[test]
    fn rates_up_to_10_khz_keep_one_tick_per_wakeup_and_faster_ones_batch_to_the_wakeup_period() {
        // (rate, ticks per wake-up at 100 µs, at 200 µs)
        for (rate_hz, at_100, at_200) in [
            (1.0, 1, 1),
            (1_000.0, 1, 1),
            (9_999.0, 1, 1),
            (10_000.0, 1, 1),
            (10_001.0, 2, 3),
            (20_000.0, 2, 4),
            (30_000.0, 3, 6),
            (33_333.0, 4, 7),
            (50_000.0, 5, 10),
            (99_999.0, 10, 20),
            (100_000.0, 10, 20),
        ] {
            assert_eq!(ticks_per_wakeup(1.0 / rate_hz, 100.0), at_100, "at {rate_hz} Hz, 100 µs");
            assert_eq!(ticks_per_wakeup(1.0 / rate_hz, 200.0), at_200, "at {rate_hz} Hz, 200 µs");
            // Batching (and its longer spin) depends on the rate; the spin, then, on the wake-up
            // period: half of it, 60 to 200 µs.
            if at_100 == 1 {
                assert_eq!(spin_window(1.0 / rate_hz, 400.0), SPIN_BEFORE_DEADLINE, "at {rate_hz} Hz");
            } else {
                for wakeup_period_us in [100.0, 200.0, 400.0] {
                    let spin = spin_window(1.0 / rate_hz, wakeup_period_us);
                    let wake = Duration::from_secs_f64(1.0 / rate_hz)
                        .mul_f64(ticks_per_wakeup(1.0 / rate_hz, wakeup_period_us) as f64);
                    assert!((SPIN_BATCHED..=SPIN_BATCHED_MAX).contains(&spin), "at {rate_hz} Hz: {spin:?}");
                    // Asleep at least half of every wake-up period, but for the shortest window.
                    assert!(spin == SPIN_BATCHED || spin * 2 <= wake, "at {rate_hz} Hz: {spin:?} of {wake:?}");
                }
            }
        }
        // 100 kHz: half the wake-up period, 60 µs at least and 200 µs at most.
        let us = Duration::from_micros;
        for (wakeup_period_us, spin) in
            [(100.0, us(60)), (200.0, us(100)), (300.0, us(150)), (400.0, us(200)), (1000.0, us(200))]
        {
            assert_eq!(spin_window(1e-5, wakeup_period_us), spin, "{wakeup_period_us} µs");
        }
        // 20 kHz with 400 µs: 8 ticks of 50 µs, 200 µs; 33.3 kHz with 100 µs: 4 ticks of 30 µs, 60 µs.
        assert_eq!(spin_window(1.0 / 20_000.0, 400.0), us(200));
        assert_eq!(spin_window(1.0 / 33_333.0, 100.0), us(60));
        // A wake-up period below the floor is taken as the floor, so the thread keeps sleeping.
        assert_eq!(ticks_per_wakeup(1e-5, 20.0), 10);
        assert_eq!(ticks_per_wakeup(1e-5, 1000.0), 100);
    }
}
