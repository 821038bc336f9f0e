//! Loop timing and pipeline counters. Recorded on the hot path without allocation and written to
//! `/entry/diagnostics` of every run file.

use serde::{Deserialize, Serialize};

/// Number of histogram bins: bin 0 holds values below 1 µs, bin k (k ≥ 1) holds
/// [2^(k−1), 2^k) µs, the last bin everything above.
pub const LATENCY_BINS: usize = 32;

/// A fixed-size, log₂-binned histogram of durations in µs, plus exact max and count. Recording is
/// O(1) and allocation-free so the control loop can call it every tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    /// Counts per bin; see [`LATENCY_BINS`] for the bin edges.
    pub counts: [u64; LATENCY_BINS],
    /// Largest value recorded, in µs.
    pub max_us: f64,
    /// Number of values recorded.
    pub total: u64,
    /// Sum of values in µs (for the mean).
    pub sum_us: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self { counts: [0; LATENCY_BINS], max_us: 0.0, total: 0, sum_us: 0.0 }
    }
}

impl LatencyHistogram {
    /// Lower edge in µs of bin `k`.
    pub fn bin_lower_us(k: usize) -> f64 {
        if k == 0 {
            0.0
        } else {
            (1u64 << (k - 1)) as f64
        }
    }

    /// Upper edge in µs of bin `k` (infinite for the last).
    pub fn bin_upper_us(k: usize) -> f64 {
        if k + 1 >= LATENCY_BINS {
            f64::INFINITY
        } else {
            (1u64 << k) as f64
        }
    }

    /// Record one duration in µs (negative values count as zero).
    #[inline]
    pub fn record_us(&mut self, us: f64) {
        let v = if us.is_finite() && us > 0.0 { us } else { 0.0 };
        let k = if v < 1.0 {
            0
        } else {
            // floor(log2(v)) + 1, computed on the integer part: v in [2^(k-1), 2^k).
            let i = v as u64;
            ((64 - i.leading_zeros()) as usize).min(LATENCY_BINS - 1)
        };
        self.counts[k] += 1;
        self.total += 1;
        self.sum_us += v;
        if v > self.max_us {
            self.max_us = v;
        }
    }

    /// Merge another histogram into this one.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Quantile estimate in µs (q in 0..=1), interpolated geometrically inside the bin and capped
    /// at the exact maximum. `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let target = (q.clamp(0.0, 1.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (k, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if seen + c >= target {
                let lo = Self::bin_lower_us(k);
                let hi = Self::bin_upper_us(k).min(self.max_us.max(lo));
                let frac = (target - seen) as f64 / c as f64;
                let v = if lo <= 0.0 { hi * frac } else { lo * (hi / lo).powf(frac) };
                return Some(v.min(self.max_us));
            }
            seen += c;
        }
        Some(self.max_us)
    }

    /// Mean in µs, `None` when empty.
    pub fn mean_us(&self) -> Option<f64> {
        (self.total > 0).then(|| self.sum_us / self.total as f64)
    }
}

/// Stalls a run file lists at most; later ones are counted in
/// [`Diagnostics::stalls_overflow`]. Fixed so the control loop never allocates for them and the
/// file reserves their rows when it is created.
pub const STALL_CAPACITY: usize = 64;

/// A host hiccup seen by a paced loop: a wake-up later than one wake-up period and at least
/// 1 ms, with the ticks it made late.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stall {
    /// Run time of the deadline the loop woke up late for, s.
    pub start_s: f64,
    /// How late the loop ran at worst during the stall, µs.
    pub length_us: f64,
    /// Ticks affected: those that ended after their next deadline, plus those skipped (a
    /// device-clocked rig's stale ticks) or moved (the simulator's schedule, see
    /// [`Diagnostics::moved_ticks`]), until the loop was back on time.
    pub ticks: u64,
}

/// Missed deadlines of a paced loop, attributed per wake-up to what made them late. Every missed
/// tick of a wake-up goes to one cause; a wake-up that could not sleep because the work before it
/// ran past its deadline inherits the cause of the wake-up that began the episode, so a cascade
/// after one late wake-up counts against that wake-up's cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MissedByCause {
    /// The sleep returned at least one sample period past the deadline (the kernel or the
    /// hypervisor woke the thread late; the spin window could not absorb it).
    pub late_wakeup: u64,
    /// The sleep returned in time, yet the first tick started at least one sample period late:
    /// the thread lost its CPU while spinning (an interrupt, a vCPU stall).
    pub spin: u64,
    /// The first tick started within one sample period of its deadline and ticks were still
    /// missed: the work of the wake-up was slow or interrupted.
    pub work: u64,
}

impl MissedByCause {
    /// Sum over the causes.
    pub fn total(&self) -> u64 {
        self.late_wakeup + self.spin + self.work
    }
}

/// Classes of a paced wake-up's raw lateness (when its sleep returned minus when it asked to
/// wake, what cyclictest measures) in [`LatenessSplit`]: within the spin window, past it but
/// within one wake-up period, one wake-up period or more (cyclictest's "late"), 1 ms or more.
pub const LATENESS_CLASSES: usize = 4;

/// Wake-ups and missed ticks of a paced loop by how late the wake-up came from its sleep, so
/// the misses can be set against cyclictest's wake-ups in the same classes. Class k holds raw
/// lateness from `lower_us[k]` µs up to (not including) `lower_us[k + 1]`, the last everything
/// above; the edges are 0, the spin window, one wake-up period, and the larger of 1 ms and one
/// wake-up period (the stall threshold). Recorded without allocation: a class lookup per
/// wake-up, an increment per missed tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatenessSplit {
    /// Lower edge of each class, µs (all 0 in an unpaced run or an older file).
    pub lower_us: [f64; LATENESS_CLASSES],
    /// Wake-ups that slept, by the class of their raw lateness (their sum is the count of
    /// `wakeup_lateness`).
    pub wakeups: [u64; LATENESS_CLASSES],
    /// Missed ticks by the class of the wake-up that lost them (their sum is
    /// `missed_deadlines`). A wake-up that could not sleep because the ticks before it ran past
    /// its deadline passes its misses to the wake-up that began the episode, as
    /// [`MissedByCause`] does; one that did not sleep because it was already within the spin
    /// window counts in the first class.
    pub missed: [u64; LATENESS_CLASSES],
}

impl LatenessSplit {
    /// Empty counts with the class edges of a loop that spins `spin_us` before each deadline
    /// and wakes every `wake_period_us`.
    pub fn new(spin_us: f64, wake_period_us: f64) -> Self {
        Self { lower_us: [0.0, spin_us, wake_period_us, wake_period_us.max(1000.0)], ..Self::default() }
    }

    /// The class of a raw wake-up lateness in µs.
    #[inline]
    pub fn class_of(&self, raw_us: f64) -> usize {
        // Edges are ascending; the count of edges at or below the value, less the first.
        let mut k = 0;
        while k + 1 < LATENESS_CLASSES && raw_us >= self.lower_us[k + 1] {
            k += 1;
        }
        k
    }
}

/// Everything the run file records about how the acquisition itself behaved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    /// Wake-up lateness of a paced loop (start of the first tick after a wake-up minus that
    /// tick's deadline), µs, one value per wake-up: per tick up to 10 kHz, per batch of
    /// ⌈100 µs / period⌉ ticks above (10 at 100 kHz), whose later ticks run ahead of their own
    /// deadlines and so are never late.
    pub loop_lateness: LatencyHistogram,
    /// Raw wake-up lateness of a paced loop, µs: when its sleep returned minus the time it asked
    /// to wake (the deadline less the spin window), one value per wake-up that slept. This is
    /// what cyclictest measures; the loop's lateness above is what is left of it after the spin.
    #[serde(default)]
    pub wakeup_lateness: LatencyHistogram,
    /// Work time of each wake-up of a paced loop, µs: start of its first tick to the end of its
    /// last (one tick up to 10 kHz, a batch above). A tick is missed when the work before its
    /// end outlasts its share of the wake-up period, so this tells slow or interrupted work
    /// from late wake-ups.
    #[serde(default)]
    pub batch_work: LatencyHistogram,
    /// How long before each wake-up's deadline a paced loop stopped sleeping and spun, µs (30 up
    /// to 10 kHz, 60 where it batches); 0 for an unpaced run or an older file.
    #[serde(default)]
    pub spin_window_us: f64,
    /// Missed deadlines by what made them late (their sum is `missed_deadlines`), paced runs.
    #[serde(default)]
    pub missed_by_cause: MissedByCause,
    /// Wake-ups and missed deadlines by how late the wake-up came from its sleep, paced runs.
    #[serde(default)]
    pub lateness_split: LatenessSplit,
    /// CPU time the control thread used from t0 to its last tick, µs (getrusage
    /// RUSAGE_THREAD, user + system): what its sleeps leave of each wake-up period, mostly the
    /// spin and the work. 0 for an older file.
    #[serde(default)]
    pub control_cpu_us: f64,
    /// Ticks whose work finished after the next tick's deadline, counted per tick at every rate
    /// (batched or not), so `missed_deadlines / ticks` is the fraction of ticks that missed. The
    /// ticks a stall skipped or moved are counted apart (`skipped_ticks`, `moved_ticks`).
    pub missed_deadlines: u64,
    /// Control ticks executed.
    pub ticks: u64,
    /// Most samples ever waiting in the ring.
    pub ring_high_water: u64,
    /// Ring capacity in samples.
    pub ring_capacity: u64,
    /// Samples lost because the ring was full.
    pub dropped_samples: u64,
    /// Times an unpaced (`--fast`) loop found the ring full and waited for the writer: a
    /// 100 µs nap each on a ring of 8 192 slots or more, a yield on a smaller one. Non-zero means
    /// the writer, not the rig, set the run's pace. Always 0 paced (a full ring drops there) and
    /// in older files.
    #[serde(default)]
    pub ring_full_waits: u64,
    /// Sample timestamp → event emitted, µs (wall clock; only meaningful when paced in real time).
    pub detection_latency: LatencyHistogram,
    /// Whether the loop got real-time scheduling (SCHED_FIFO).
    pub realtime_scheduling: bool,
    /// Control loop tick rate in Hz.
    pub rate_hz: f64,
    /// Whether the loop was paced in real time (false for `--fast`).
    pub paced: bool,
    /// RMS of (load − setpoint) after settle, µN.
    pub load_tracking_rms_un: f64,
    /// Largest |load − setpoint| after settle while following the program, µN.
    #[serde(default)]
    pub load_tracking_max_un: f64,
    /// Wake-ups that came later than one wake-up period (what cyclictest counts as late).
    #[serde(default)]
    pub late_wakeups: u64,
    /// Ticks a device-clocked rig skipped after a stall (their setpoints were stale; the
    /// device's FIFO kept their samples). Always 0 on the simulated rig, whose ticks are samples.
    #[serde(default)]
    pub skipped_ticks: u64,
    /// Ticks by which host stalls moved a tick-clocked rig's schedule (the simulator, whose
    /// time stands still while the host stalls): after a wake-up later than one wake-up period
    /// has run its ticks, the next deadline is moved forward by whole ticks until it is not
    /// already past, as cyclictest moves its next wake-up, instead of running the ticks slept
    /// through late back to back. Their samples are the same, produced later in wall time; the
    /// late-tick window counts them as late. Always 0 on a device-clocked rig (see
    /// `skipped_ticks`), unpaced and in older files.
    #[serde(default)]
    pub moved_ticks: u64,
    /// Longest run of consecutive ticks that missed their deadline, paced runs (the catch-up
    /// policy bounds it to about two wake-ups' ticks per stall on the simulator). 0 in older
    /// files.
    #[serde(default)]
    pub max_late_streak: u64,
    /// Ticks at which a device-clocked frame's newest sample was stale (a stall's backlog still
    /// arriving, or no sample) so the loop held its correction and sent the setpoint plus the
    /// held integral, not acting on an error from the past. Always 0 on the simulated rig.
    #[serde(default)]
    pub stale_feedback_ticks: u64,
    /// Longest interval between two commands to the frame, µs (paced runs), in the frame's own
    /// clock ([`Diagnostics::frame_clock`]): wall time for a device-clocked frame, sample time for
    /// the tick-clocked simulator (whose time stands still while the host stalls; the stall is in
    /// [`Diagnostics::stalls`]). `limits.max_command_gap_ms` judges this figure.
    #[serde(default)]
    pub max_command_gap_us: f64,
    /// Whose clock the frame's samples follow: `device` (a real controller; host stalls are
    /// wall time the frame spends on a stale command) or `tick` (the simulator: one sample per
    /// command). Empty in older files.
    #[serde(default)]
    pub frame_clock: String,
    /// Host stalls, in order, at most [`STALL_CAPACITY`].
    #[serde(default)]
    pub stalls: Vec<Stall>,
    /// Stalls that did not fit in [`Diagnostics::stalls`].
    #[serde(default)]
    pub stalls_overflow: u64,
    /// Whether the run held `/dev/cpu_dma_latency` at 0 (idle CPUs poll instead of halting, so a
    /// wake-up from idle is not late), as cyclictest does; real-time runs only.
    #[serde(default)]
    pub idle_latency_zero: bool,
    /// Whether the process memory was locked (mlockall) for the run.
    #[serde(default)]
    pub memory_locked: bool,
    /// The CPU the control thread was pinned to, if any.
    #[serde(default)]
    pub cpu: Option<usize>,
    /// Page faults the control thread took between t0 and its last tick (getrusage
    /// RUSAGE_THREAD, minor + major): each costs microseconds on the tick that takes it.
    #[serde(default)]
    pub control_page_faults: u64,
    /// Times the control thread was preempted between t0 and its last tick (involuntary context
    /// switches): another task, or a kernel thread, took its CPU.
    #[serde(default)]
    pub control_preemptions: u64,
    /// What paced the source-measure unit's readings: `tagged` (readings carry the frame's
    /// sequence number: simulated rig, in-house dialect), `external` (the frame's sample clock on
    /// the meter's trigger input) or `timer` (the meter's own timer). Empty in older files.
    #[serde(default)]
    pub smu_pacing: String,
    /// Worst deviation of (meter timestamp − frame timestamp) over the run from its value at the
    /// first sample, µs; `None` when the meter reports no timestamps.
    #[serde(default)]
    pub smu_misalignment_max_us: Option<f64>,
    /// The longest a frame sample waited for its meter reading, ms of the frame's samples (the
    /// newest frame sample in hand when the reading was merged, less this one):
    /// about `limits.max_meter_lag_ms` at most, plus up to an eighth of it waiting for the loop's
    /// rate-limited out-of-turn ask, plus a burst of frame samples read in one tick (the
    /// newest in hand jumps). About one poll interval for a healthy buffered
    /// meter (20 ms at 1 kHz); 0 when the reading comes with the frame sample (simulated rig).
    #[serde(default)]
    pub smu_lag_max_ms: f64,
}

impl Diagnostics {
    /// Empty diagnostics with room for [`STALL_CAPACITY`] stalls reserved, so that
    /// [`Diagnostics::record_stall`] never allocates.
    pub fn with_stall_capacity() -> Self {
        Self { stalls: Vec::with_capacity(STALL_CAPACITY), ..Self::default() }
    }

    /// Add a stall to the list, or count it as overflow when the list is full. Allocation-free
    /// after [`Diagnostics::with_stall_capacity`].
    #[inline]
    pub fn record_stall(&mut self, stall: Stall) {
        if self.stalls.len() < STALL_CAPACITY && self.stalls.len() < self.stalls.capacity() {
            self.stalls.push(stall);
        } else {
            self.stalls_overflow += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_their_values() {
        let mut h = LatencyHistogram::default();
        for v in [0.5, 1.0, 1.9, 2.0, 3.0, 1000.0, 1e12] {
            h.record_us(v);
        }
        assert_eq!(h.counts[0], 1); // 0.5
        assert_eq!(h.counts[1], 2); // 1.0, 1.9 in [1,2)
        assert_eq!(h.counts[2], 2); // 2, 3 in [2,4)
        assert_eq!(h.counts[10], 1); // 1000 in [512,1024)
        assert_eq!(h.counts[LATENCY_BINS - 1], 1);
        assert_eq!(h.total, 7);
        assert_eq!(h.max_us, 1e12);
    }

    #[test]
    fn the_stall_list_keeps_its_capacity_and_counts_overflow() {
        let mut d = Diagnostics::with_stall_capacity();
        let cap = d.stalls.capacity();
        for i in 0..STALL_CAPACITY + 5 {
            d.record_stall(Stall { start_s: i as f64, length_us: 1000.0, ticks: 1 });
        }
        assert_eq!(d.stalls.len(), STALL_CAPACITY);
        assert_eq!(d.stalls.capacity(), cap, "no reallocation");
        assert_eq!(d.stalls_overflow, 5);
        assert_eq!(d.stalls[STALL_CAPACITY - 1].start_s, (STALL_CAPACITY - 1) as f64);
        // Without reserved room nothing is pushed (never an allocation on the control thread).
        let mut empty = Diagnostics::default();
        empty.record_stall(Stall::default());
        assert_eq!((empty.stalls.len(), empty.stalls_overflow), (0, 1));
    }

    #[test]
    fn lateness_classes_follow_the_spin_window_the_wake_up_period_and_a_millisecond() {
        // 100 kHz, 400 µs wake-ups, 60 µs spin.
        let s = LatenessSplit::new(60.0, 400.0);
        let classes: Vec<usize> =
            [0.0, 59.9, 60.0, 399.0, 400.0, 999.0, 1000.0, 5e4, f64::INFINITY].iter().map(|&v| s.class_of(v)).collect();
        assert_eq!(classes, [0, 0, 1, 1, 2, 2, 3, 3, 3]);
        // 1 kHz: the wake-up period is 1 ms, so "≥ one period" and "≥ 1 ms" are one edge and
        // the third class stays empty.
        let s = LatenessSplit::new(30.0, 1000.0);
        assert_eq!((s.class_of(999.0), s.class_of(1000.0)), (1, 3));
        // A NaN (never recorded by the loop) falls in the first class rather than panicking.
        assert_eq!(s.class_of(f64::NAN), 0);
    }

    #[test]
    fn quantiles_are_monotone_and_bounded() {
        let mut h = LatencyHistogram::default();
        for i in 0..1000 {
            h.record_us(i as f64 / 10.0);
        }
        let p50 = h.quantile_us(0.5).expect("non-empty");
        let p99 = h.quantile_us(0.99).expect("non-empty");
        assert!(p50 <= p99 && p99 <= h.max_us);
        // The true median is 50 µs; the log2 bin [32,64) must contain the estimate.
        assert!((32.0..64.0).contains(&p50), "p50 {p50}");
        assert_eq!(LatencyHistogram::default().quantile_us(0.5), None);
    }
}
