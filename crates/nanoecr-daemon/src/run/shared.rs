//! State shared between the control thread, the consumer thread and the run's handle: atomics
//! only on the hot path. The abort reason sits behind a mutex that the control thread touches
//! with `try_lock` once, when it sees the abort flag.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nanoecr_core::EndReason;

/// Counters and stop requests of one run.
#[derive(Debug, Default)]
pub struct Shared {
    /// Samples pushed into the ring. Written by the control thread alone
    /// ([`Shared::count_pushed`]).
    pub pushed: AtomicU64,
    /// Samples dropped because the ring was full.
    pub dropped: AtomicU64,
    /// Samples waiting in the ring now.
    pub ring_occupancy: AtomicU64,
    /// Whether the control thread runs under SCHED_FIFO.
    pub realtime: AtomicBool,
    /// Set when the control thread has ended.
    pub control_done: AtomicBool,
    /// Set when the whole run (file closed) has ended.
    pub finished: AtomicBool,
    abort_flag: AtomicBool,
    abort_reason: Mutex<Option<EndReason>>,
    /// Non-zero when a termination signal arrived (the signal number), set by signal-hook.
    pub signal: Arc<AtomicUsize>,
    start: OnceLock<Instant>,
    /// How far a tick-clocked rig's schedule has moved after stalls, ns (see `start`).
    schedule_moved_ns: AtomicU64,
}

impl Shared {
    /// Request a safe stop. The first reason wins; later ones are ignored.
    pub fn request_abort(&self, reason: EndReason) {
        if let Ok(mut r) = self.abort_reason.lock() {
            if r.is_none() {
                *r = Some(reason);
            }
        }
        self.abort_flag.store(true, Ordering::Release);
    }

    /// Whether a stop was requested (by anyone, or by a signal).
    pub fn abort_requested(&self) -> bool {
        self.abort_flag.load(Ordering::Acquire) || self.signal.load(Ordering::Relaxed) != 0
    }

    /// For the control thread: the pending stop request, if any. Non-blocking: if the reason is
    /// being written right now, it answers `None` and the next tick picks it up. The loop asks
    /// every tick and the answer is almost always `None`: that check (two loads) is inlined, the
    /// rest is not.
    #[inline]
    pub fn take_abort(&self) -> Option<EndReason> {
        let sig = self.signal.load(Ordering::Relaxed);
        if sig == 0 && !self.abort_flag.load(Ordering::Acquire) {
            return None;
        }
        self.take_abort_requested(sig)
    }

    /// [`Shared::take_abort`] once a signal (`sig` ≠ 0) or the abort flag is set.
    #[cold]
    #[inline(never)]
    fn take_abort_requested(&self, sig: usize) -> Option<EndReason> {
        if sig != 0 {
            return Some(EndReason::Signal(signal_name(sig)));
        }
        let mut guard = self.abort_reason.try_lock().ok()?;
        Some(guard.take().unwrap_or(EndReason::OperatorAbort))
    }

    /// For the control thread, the only writer of [`Shared::pushed`]: one more sample pushed.
    /// A load and a store rather than `fetch_add`, whose locked read-modify-write cost ≈ 20
    /// cycles a sample in `--fast` runs; readers see the same increasing count, since no other
    /// thread writes it.
    #[inline]
    pub fn count_pushed(&self) {
        self.pushed.store(self.pushed.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// Record the instant the first tick started.
    pub fn set_start(&self, t0: Instant) {
        let _ = self.start.set(t0);
    }

    /// Record how far the simulated rig's schedule has moved after host stalls in all (the
    /// control loop's catch-up policy): sample time t is due at `start + moved + t` from then on.
    /// One relaxed store, only after a stall.
    pub fn set_schedule_moved(&self, moved: Duration) {
        self.schedule_moved_ns.store(moved.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The instant sample time 0 stands for on the wall clock, once known: the first tick's,
    /// plus whatever host stalls have moved a tick-clocked rig's schedule by so far.
    pub fn start(&self) -> Option<Instant> {
        let moved = Duration::from_nanos(self.schedule_moved_ns.load(Ordering::Relaxed));
        self.start.get().map(|&t0| t0 + moved)
    }
}

fn signal_name(sig: usize) -> String {
    match sig as i32 {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        n => format!("signal {n}"),
    }
}
