//! One test, end to end: [`start_run`] identifies the instruments, creates the run file and
//! starts two threads — the real-time control loop ([`control`]) and the consumer
//! ([`consumer`]: detector + HDF5 writer) — joined by a lock-free SPSC ring. The returned
//! [`RunHandle`] aborts (always as a safe unload), streams [`RunUpdate`]s and joins.
//!
//! `nanoecr run` and `nanoecrd` both drive tests through this module, so the CLI and the daemon
//! share one control loop, one pipeline and one file format.

pub mod consumer;
pub mod control;
mod feedback;
pub mod shared;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;
use nanoecr_core::{EndReason, Event, Progress, RunConfig, RunSummary, Sample};
use nanoecr_hw::{HwError, Rig};
use nanoecr_store::{InstrumentInfo, RunWriter, StoreError};

use self::consumer::Consumer;
use self::control::ControlLoop;
use self::shared::Shared;

/// Capacity of the updates channel. Enough for seconds of progress and bursts of events; past it
/// updates are dropped for the slow reader (samples never are).
const UPDATES_CAPACITY: usize = 4096;
/// Capacity of the control-event ring (interlock trips).
const CONTROL_EVENTS_CAPACITY: usize = 64;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Directory for the run file (overrides `[output] directory`).
    pub out_dir: Option<PathBuf>,
    /// Exact file path (overrides directory and template; used by tests).
    pub file_path: Option<PathBuf>,
    /// Run unpaced, as fast as the rig answers (simulated rig only).
    pub fast: bool,
    /// Turn SIGTERM, SIGINT, SIGHUP and SIGQUIT into a safe abort of this run (the CLI); the
    /// daemon handles signals itself and leaves this off.
    pub install_signal_handlers: bool,
    /// Keep the consumer idle until the control loop has ended, and let the loop drop on a full
    /// ring even when unpaced. Only for tests and benchmarks of the drop accounting: with it,
    /// exactly `ring capacity` samples survive a long run.
    pub hold_consumer_until_control_ends: bool,
    /// Keep the consumer idle until the control loop first finds the ring full (or ends), then
    /// let it run as usual. Unpaced, the loop then waits for ring space (a nap on a ring of
    /// [`control::RING_FULL_NAP_MIN_SLOTS`] or more, a yield below) and drops nothing; paced, it
    /// drops. Only for tests: it takes them down the full-ring paths on any host, where whether
    /// the ring fills otherwise depends on how fast the host runs the writer against the rig.
    pub hold_consumer_until_ring_full: bool,
}

/// Something that happened in a running test, for displays and subscribers.
#[derive(Debug, Clone)]
pub enum RunUpdate {
    /// A progress snapshot (≈ 10 Hz).
    Progress(Progress),
    /// A detected event (spike, pop-in) or an interlock trip.
    Event(Event),
    /// Decimated samples with their Δρ/ρ envelopes (≈ 10 Hz batches).
    Samples(LiveBatch),
    /// The run ended and its file is closed.
    Finished(RunSummary),
}

/// One publication of decimated samples: every k-th sample, and the smallest and largest Δρ/ρ of
/// the k samples each kept one stands for (so a one-sample spike survives the decimation).
#[derive(Debug, Clone, Default)]
pub struct LiveBatch {
    /// The kept samples.
    pub samples: Vec<Sample>,
    /// Per kept sample: the smallest Δρ/ρ of its bucket (NaN while undefined).
    pub delta_rho_min: Vec<f64>,
    /// Per kept sample: the largest Δρ/ρ of its bucket (NaN while undefined).
    pub delta_rho_max: Vec<f64>,
}

impl LiveBatch {
    fn with_capacity(n: usize) -> Self {
        Self {
            samples: Vec::with_capacity(n),
            delta_rho_min: Vec::with_capacity(n),
            delta_rho_max: Vec::with_capacity(n),
        }
    }

    fn pop(&mut self) -> Option<(Sample, f64, f64)> {
        Some((self.samples.pop()?, self.delta_rho_min.pop()?, self.delta_rho_max.pop()?))
    }

    fn push(&mut self, (s, lo, hi): (Sample, f64, f64)) {
        self.samples.push(s);
        self.delta_rho_min.push(lo);
        self.delta_rho_max.push(hi);
    }
}

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An instrument failed before the test began.
    #[error("instrument not ready: {0}")]
    Hardware(#[from] HwError),
    /// The run file could not be created or closed.
    #[error("run file: {0}")]
    Store(#[from] StoreError),
    /// The output directory could not be created.
    #[error("cannot create output directory {path}: {source}")]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `--fast` asked for a rig that runs on its own clock.
    #[error("--fast only applies to the simulated rig; real instruments run on their own clock")]
    FastOnHardware,
    /// A thread could not be spawned or panicked.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A running test.
#[derive(Debug)]
pub struct RunHandle {
    path: PathBuf,
    shared: Arc<Shared>,
    updates: Receiver<RunUpdate>,
    control: Option<JoinHandle<()>>,
    consumer: Option<JoinHandle<Result<RunSummary, StoreError>>>,
}

impl RunHandle {
    /// The run file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ask for a stop. Never blocks; the loop ramps the load down, switches the bias off, and the
    /// file ends `aborted` with the reason. A test cannot be paused: every stop is an abort.
    pub fn abort(&self, reason: EndReason) {
        self.shared.request_abort(reason);
    }

    /// Progress, events, decimated samples and the final summary.
    pub fn updates(&self) -> &Receiver<RunUpdate> {
        &self.updates
    }

    /// Whether the run has ended and its file is closed.
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Samples dropped so far because the ring was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait for the end of the run.
    pub fn join(mut self) -> Result<RunSummary, RunError> {
        if let Some(c) = self.control.take() {
            c.join().map_err(|_| RunError::Internal("control thread panicked".into()))?;
        }
        match self.consumer.take() {
            Some(c) => {
                c.join().map_err(|_| RunError::Internal("consumer thread panicked".into()))?.map_err(RunError::from)
            }
            None => Err(RunError::Internal("run already joined".into())),
        }
    }
}

/// Start a test. Instruments are identified and the file created before any thread starts, so
/// a missing device or an unwritable directory fails here, with nothing moved.
pub fn start_run(cfg: RunConfig, mut rig: Rig, opts: RunOptions) -> Result<RunHandle, RunError> {
    let is_sim = cfg.raw.hardware.backend == nanoecr_core::config::hardware::Backend::Sim;
    if opts.fast && !is_sim {
        return Err(RunError::FastOnHardware);
    }
    let frame_info = rig.frame.identify()?;
    let smu_info = rig.smu.identify()?;
    let path = match &opts.file_path {
        Some(p) => p.clone(),
        None => {
            let dir = opts.out_dir.clone().unwrap_or_else(|| PathBuf::from(&cfg.raw.output.directory));
            std::fs::create_dir_all(&dir).map_err(|source| {
                // create_dir_all says only "File exists" when the path is a file: say which.
                let source = if dir.exists() && !dir.is_dir() {
                    std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it exists and is not a directory")
                } else {
                    source
                };
                RunError::OutputDir { path: dir.clone(), source }
            })?;
            unique_path(&dir, &cfg)
        }
    };
    let instrument = InstrumentInfo {
        backend: if is_sim { "sim".into() } else { "devices".into() },
        frame: format!(
            "{} {} {} (serial {}, firmware {})",
            frame_info.name, frame_info.vendor, frame_info.model, frame_info.serial, frame_info.firmware
        ),
        smu: format!(
            "{} {} {} (serial {}, firmware {})",
            smu_info.name, smu_info.vendor, smu_info.model, smu_info.serial, smu_info.firmware
        ),
    };
    let pacing = if opts.fast { nanoecr_store::Pacing::Unpaced } else { nanoecr_store::Pacing::RealTime };
    let paced = !opts.fast;
    // With the control thread pinned, the consumer's bursts (detector, compression, flushes) go
    // to the other CPUs.
    // Unset, nothing is pinned: pinning a 100 kHz loop by default was measured and not adopted
    // (docs/performance.md, "Real time on a noisy host", third pass).
    let consumer_cpus: Option<Vec<usize>> = cfg
        .raw
        .acquisition
        .cpu
        .filter(|_| paced)
        .map(|pinned| allowed_cpus().into_iter().filter(|&c| c != pinned).collect());
    let writer = {
        // The store's compression worker is spawned here, on this thread, and a thread starts with
        // its parent's CPU set: narrowed for the moment, the worker starts off the loop's CPU too.
        let _restore = consumer_cpus.as_deref().filter(|c| !c.is_empty()).and_then(AffinityGuard::narrow);
        RunWriter::create_with(&path, &cfg, &instrument, pacing)?
    };

    let shared = Arc::new(Shared::default());
    if opts.install_signal_handlers {
        // A closed terminal (SIGHUP), Ctrl-\ (SIGQUIT), Ctrl-C and `kill` all leave the rig
        // loaded if they kill the process: each becomes a safe abort instead.
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        for sig in [SIGTERM, SIGINT, SIGHUP, SIGQUIT] {
            if let Err(e) = signal_hook::flag::register_usize(sig, Arc::clone(&shared.signal), sig as usize) {
                tracing::warn!(error = %e, signal = sig, "cannot install signal handler");
            }
        }
    }
    let (mut ring_tx, mut ring_rx) = rtrb::RingBuffer::<Sample>::new(cfg.ring_capacity_samples);
    let prefault = if paced {
        prefault_ring(&mut ring_tx, &mut ring_rx);
        None
    } else {
        populate_ring_ahead(&mut ring_tx)
    };
    let (gate_tx, gate_rx) = if opts.hold_consumer_until_ring_full {
        let (tx, rx) = crossbeam_channel::bounded::<()>(0);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (ev_tx, ev_rx) = rtrb::RingBuffer::<Event>::new(CONTROL_EVENTS_CAPACITY);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let (upd_tx, upd_rx) = crossbeam_channel::bounded(UPDATES_CAPACITY);
    let span = tracing::info_span!("run", file = %path.display());
    let control = {
        let mut lp = ControlLoop::new(cfg.clone(), rig, ring_tx, ev_tx, Arc::clone(&shared), paced);
        if opts.hold_consumer_until_control_ends {
            lp = lp.dropping_when_full();
        }
        if let Some(gate) = gate_tx {
            lp = lp.releasing_on_full_ring(gate);
        }
        if let Some(p) = prefault {
            lp = lp.with_prefault(p);
        }
        let shared = Arc::clone(&shared);
        let span = span.clone();
        std::thread::Builder::new()
            .name("nanoecr-control".into())
            .spawn(move || {
                let _g = span.enter();
                let outcome = lp.run();
                tracing::info!(end = %outcome.end_reason.describe(), "control loop ended");
                shared.control_done.store(true, std::sync::atomic::Ordering::Release);
                let _ = done_tx.send(outcome);
            })
            .map_err(|e| RunError::Internal(format!("cannot spawn control thread: {e}")))?
    };
    let consumer = {
        let c = Consumer {
            cfg,
            ring: ring_rx,
            control_events: ev_rx,
            writer,
            shared: Arc::clone(&shared),
            control_done: done_rx,
            updates: upd_tx.clone(),
            paced,
            hold_until_control_ends: opts.hold_consumer_until_control_ends,
            ring_full_gate: gate_rx,
        };
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("nanoecr-consumer".into())
            .spawn(move || {
                let _g = span.enter();
                if let Some(cpus) = consumer_cpus.filter(|c| !c.is_empty()) {
                    if !control::set_affinity(cpus) {
                        tracing::warn!("could not keep the consumer off the control thread's CPU");
                    }
                }
                let result = c.run();
                if let Ok(summary) = &result {
                    // The final summary is the one update that must not be lost to a full
                    // channel: block for it (the consumer has nothing left to do).
                    let _ =
                        upd_tx.send_timeout(RunUpdate::Finished(summary.clone()), std::time::Duration::from_secs(1));
                }
                shared.finished.store(true, std::sync::atomic::Ordering::Release);
                result
            })
            .map_err(|e| RunError::Internal(format!("cannot spawn consumer thread: {e}")))?
    };
    Ok(RunHandle { path, shared, updates: upd_rx, control: Some(control), consumer: Some(consumer) })
}

/// The CPUs the calling thread may run on, in order (0 to the number of CPUs − 1 if the kernel
/// does not say).
fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    match sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect(),
        Err(_) => (0..std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)).collect(),
    }
}

/// Narrows the calling thread's CPU set until dropped, then puts the old one back; threads
/// spawned meanwhile keep the narrowed set.
struct AffinityGuard(nix::sched::CpuSet);

impl AffinityGuard {
    /// `None` (nothing changed) when the current set cannot be read or the new one is refused.
    fn narrow(cpus: &[usize]) -> Option<Self> {
        let old = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
        if !control::set_affinity(cpus.iter().copied()) {
            tracing::warn!("could not keep the compression worker off the control thread's CPU");
            return None;
        }
        Some(Self(old))
    }
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        if let Err(e) = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &self.0) {
            tracing::warn!(error = %e, "could not restore the calling thread's CPU set");
        }
    }
}

/// Write and read every slot of the ring once, before the threads start, so the control loop's
/// first pass over the ring does not take a page fault per 4 KiB (64 samples): 6 400 of them over
/// the first 4 s at 100 kHz. With memory locked (real-time runs) mlockall would fault them in
/// too; this also covers the unprivileged case.
fn prefault_ring(tx: &mut rtrb::Producer<Sample>, rx: &mut rtrb::Consumer<Sample>) {
    let n = tx.slots();
    if let Ok(chunk) = tx.write_chunk(n) {
        chunk.commit_all();
    }
    if let Ok(chunk) = rx.read_chunk(rx.slots()) {
        std::hint::black_box(chunk.as_slices());
        chunk.commit_all();
    }
}

/// Fault a large ring's pages in on a thread of its own, for unpaced (`--fast`) runs: their
/// control loop writes every slot once on its first pass, and with a whole-run ring (the bench's
/// 1.9 M-sample ring at 1 kHz is 115 MB) it took 34 000 page faults there, 20 % of the CPU of the
/// thread that sets the pace of a `--fast` run (`perf`). `MADV_POPULATE_WRITE` (Linux 5.14)
/// faults the pages in 2 MiB at a time from the ring's start, ahead of the loop, on whichever CPU
/// the consumer and the compression workers leave free; it never reads or writes the slots, so it
/// cannot race the loop's writes. Where the kernel refuses the call the thread ends and the loop
/// faults the rest in itself, as before. Paced runs prefault the ring before they start instead
/// ([`prefault_ring`]); rings under 8 MiB (the default ring below 100 kHz) are left alone. (Huge
/// pages were tried first: on this host's virtual machine zeroing them cost the control thread
/// more than the faults they saved.)
///
/// The returned [`RingPrefault`] must be dropped before the ring: the control loop holds it and
/// drops it at its end. The thread once ran detached, and a run that ends early (an abort, a
/// device fault at arming) outlived it: faulting in 115 MB takes it 55–76 ms
/// (docs/performance.md), and once the ring was freed it went on populating whatever the
/// allocator had made of those pages (heap pages `free` had just released, or the next run's
/// buffers in the daemon) — memory held after the run, on addresses the run no longer owned.
#[allow(unsafe_code)] // madvise on memory the ring owns
fn populate_ring_ahead(tx: &mut rtrb::Producer<Sample>) -> Option<RingPrefault> {
    const PAGE: usize = 4096;
    const STEP: usize = 2 << 20;
    const MIN_BYTES: usize = 8 << 20;
    let n = tx.slots();
    // A chunk that is never committed: only a view of the (uninitialised) slots, nothing written.
    let Ok(mut chunk) = tx.write_chunk_uninit(n) else { return None };
    let (first, second) = chunk.as_mut_slices();
    // A fresh ring's free slots start at its first slot: one slice over the whole buffer.
    let bytes = std::mem::size_of_val(first) + std::mem::size_of_val(second);
    if bytes < MIN_BYTES || !second.is_empty() {
        return None;
    }
    let start = first.as_mut_ptr() as usize;
    let (lo, hi) = (start.div_ceil(PAGE) * PAGE, (start + bytes) / PAGE * PAGE);
    let stop = Arc::new(AtomicBool::new(false));
    #[cfg(test)]
    let done = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        #[cfg(test)]
        let done = Arc::clone(&done);
        std::thread::Builder::new().name("nanoecr-prefault".into()).spawn(move || {
            let mut at = lo;
            while at < hi && !stop.load(Ordering::Acquire) {
                let len = STEP.min(hi - at);
                // SAFETY: [at, at + len) is page-aligned and inside the ring's buffer, which
                // outlives this thread: the thread is joined when its `RingPrefault` drops, and
                // the control loop drops that before its end of the ring. MADV_POPULATE_WRITE
                // only maps the pages; it never reads or writes them.
                let rc = unsafe { libc::madvise(at as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) };
                if rc != 0 {
                    tracing::debug!(error = %std::io::Error::last_os_error(), "madvise(MADV_POPULATE_WRITE) on the ring refused");
                    break;
                }
                at += len;
            }
            #[cfg(test)]
            done.store(true, Ordering::Release);
        })
    };
    match thread {
        Ok(t) => Some(RingPrefault {
            stop,
            thread: Some(t),
            #[cfg(test)]
            done,
        }),
        Err(e) => {
            tracing::debug!(error = %e, "no thread to fault the ring in ahead of the loop");
            None
        }
    }
}

/// The thread of [`populate_ring_ahead`]. Dropping it stops the thread (between two 2 MiB
/// steps) and joins it; it must be dropped before the ring it faults in.
#[derive(Debug)]
pub(crate) struct RingPrefault {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Set by the thread as it ends.
    #[cfg(test)]
    done: Arc<AtomicBool>,
}

impl Drop for RingPrefault {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::warn!("the ring prefault thread panicked");
            }
        }
    }
}

/// A run-file path from the template that does not overwrite an existing file.
fn unique_path(dir: &Path, cfg: &RunConfig) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let name = cfg.file_name(&stamp);
    let candidate = dir.join(&name);
    if !candidate.exists() {
        return candidate;
    }
    let stem = name.trim_end_matches(".h5");
    (1..).map(|i| dir.join(format!("{stem}_{i}.h5"))).find(|p| !p.exists()).unwrap_or(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_100_khz_run_wakes_at_the_configured_period_and_writes_every_sample() {
        // 0.2 s settle + 3 × 0.05 s at 100 kHz: 35 000 samples, paced, on the simulated rig, with
        // the timing interlocks off: a busy machine may make ticks late but must not change
        // what is written. Judged on the data and the batching, never on lateness.
        let demo = include_str!("../../../../config/demo.toml");
        // The last case also sets the spin window (`acquisition.spin_us`) instead of the default.
        for (wakeup_period_us, batch, spin_us) in
            [(100.0, 10, None), (200.0, 20, None), (400.0, 40, None), (1000.0, 100, None), (400.0, 40, Some(150.0))]
        {
            let spin_line = spin_us.map_or(String::new(), |us: f64| format!("spin_us = {us:?}\n"));
            let text = demo
                .replace("rate_hz = 1000", "rate_hz = 100000")
                .replace(
                    "[acquisition]\n",
                    &format!("[acquisition]\nwakeup_period_us = {wakeup_period_us:?}\n{spin_line}"),
                )
                .replace("settle_s = 2.0", "settle_s = 0.2")
                .replace("\nload_s = 10.0", "\nload_s = 0.05")
                .replace("hold_s = 10.0", "hold_s = 0.05")
                .replace("unload_s = 10.0", "unload_s = 0.05")
                .replace("[limits]\n", "[limits]\nmax_command_gap_ms = inf\nmax_late_fraction = 1.0\n");
            let cfg = nanoecr_core::config::parse(&text, None).expect("test config is valid");
            assert_eq!(cfg.raw.acquisition.wakeup_period_us, wakeup_period_us);
            assert_eq!(control::ticks_per_wakeup(cfg.dt_s(), wakeup_period_us), batch);
            let expected = cfg.expected_samples();
            assert_eq!(expected, 35_000);
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("run.h5");
            let rig = nanoecr_hw::sim::rig(&cfg);
            let opts = RunOptions { file_path: Some(path.clone()), ..Default::default() };
            let summary = start_run(cfg, rig, opts).expect("run starts").join().expect("run ends");
            assert_eq!(
                summary.status,
                nanoecr_core::RunStatus::Complete,
                "{wakeup_period_us} µs: {}",
                summary.end_reason
            );
            assert_eq!(summary.dropped, 0, "{wakeup_period_us} µs");
            let file = nanoecr_store::read_run(&path).expect("run file readable");
            assert_eq!(file.status, nanoecr_core::RunStatus::Complete);
            assert_eq!(file.data.seq.len() as u64, expected, "{wakeup_period_us} µs");
            assert!(file.data.seq.windows(2).all(|w| w[1] == w[0] + 1), "{wakeup_period_us} µs: a gap in the sequence");
            let d = file.diagnostics.expect("diagnostics");
            assert!(d.paced);
            assert_eq!(d.ticks, expected);
            // One lateness per wake-up: ticks 0, batch, 2 · batch, … and the tick that finds the
            // program over.
            assert_eq!(d.loop_lateness.total, expected / batch + 1, "{wakeup_period_us} µs");
            let spin_us = spin_us.unwrap_or(control::spin_window(1e-5, wakeup_period_us).as_secs_f64() * 1e6);
            assert_eq!(d.spin_window_us, spin_us);
            // The lateness split's classes follow the spin and the wake-up period; every wake-up
            // that slept and every missed tick is in one class.
            let wake_us = wakeup_period_us;
            assert_eq!(d.lateness_split.lower_us, [0.0, spin_us, wake_us, wake_us.max(1000.0)], "{wake_us} µs");
            assert_eq!(d.lateness_split.wakeups.iter().sum::<u64>(), d.wakeup_lateness.total);
            assert_eq!(d.lateness_split.missed.iter().sum::<u64>(), d.missed_deadlines);
            assert!(d.control_cpu_us > 0.0, "the control thread's CPU time is recorded");
        }
    }

    /// The prefault thread faults in memory the ring owns: it must be over when the control
    /// loop, which holds one end of the ring, returns. A run aborted before its first tick ends
    /// long before 12.8 MB are faulted in, so a detached thread would still be running here.
    #[test]
    fn the_ring_prefault_thread_has_ended_when_the_control_loop_returns() {
        let text = include_str!("../../../../config/demo.toml")
            .replace("[acquisition]\n", "[acquisition]\nring_capacity_samples = 200000\n");
        let cfg = nanoecr_core::config::parse(&text, None).expect("test config is valid");
        let rig = nanoecr_hw::sim::rig(&cfg);
        let (mut tx, rx) = rtrb::RingBuffer::<Sample>::new(cfg.ring_capacity_samples);
        let prefault = populate_ring_ahead(&mut tx).expect("a 12.8 MB ring is faulted in ahead");
        let done = Arc::clone(&prefault.done);
        let (ev_tx, _ev_rx) = rtrb::RingBuffer::<Event>::new(CONTROL_EVENTS_CAPACITY);
        let shared = Arc::new(Shared::default());
        shared.request_abort(EndReason::OperatorAbort);
        let outcome = ControlLoop::new(cfg, rig, tx, ev_tx, shared, false).with_prefault(prefault).run();
        assert_eq!(outcome.end_reason, EndReason::OperatorAbort);
        assert!(done.load(Ordering::Acquire), "the prefault thread outlived the control loop");
        drop(rx);
        // Rings under 8 MiB get no thread at all.
        let (mut small, _rx) = rtrb::RingBuffer::<Sample>::new(100_000);
        assert!(populate_ring_ahead(&mut small).is_none());
    }

    #[test]
    fn the_cpus_a_thread_may_use_match_what_the_kernel_lists() {
        let listed = std::fs::read_to_string("/proc/thread-self/status").expect("status");
        let list = listed.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).expect("Cpus_allowed_list");
        let mut expected = Vec::new();
        for range in list.trim().split(',') {
            let mut ends = range.split('-').map(|x| x.parse::<usize>().expect("CPU number"));
            let lo = ends.next().expect("CPU number");
            expected.extend(lo..=ends.next().unwrap_or(lo));
        }
        assert_eq!(allowed_cpus(), expected);
    }
}
