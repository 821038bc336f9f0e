//! # nanoecr-detect
//!
//! The real-time streaming detector of resistivity spikes (p and n type) and displacement
//! pop-ins. One [`Detector`] consumes [`Sample`]s one at a time, returns each sample's Δρ/ρ and
//! hands completed [`Event`]s to a callback. Every buffer is allocated in [`Detector::new`]; a
//! sample costs O(1) work and no allocation (tests/no_alloc.rs proves the latter).
//! [`Detector::process_slice`] does the same for a slice of samples, bit for bit, about twice as
//! fast (see `quiet.rs`); the daemon's consumer and [`detect_columns`] (the same detector offline
//! over stored columns) use it.
//!
//! Per sample, in order:
//! 1. **Reference** (until set): Ohmic contact from the current ([`contact`]), then the reference
//!    state at the end of the settle window, averaged over 50 ms. Before it Δρ/ρ is NaN and
//!    nothing is detected; from contact on, the windows below already fill (with a provisional
//!    reference) so detection is ready the moment the reference is set.
//! 2. **Δρ/ρ** with [`nanoecr_core::resistivity::resistivity_change`].
//! 3. **Residual** = Δρ/ρ − trailing baseline ([`stats::TrailingLine`]: least-squares line through the
//!    last `baseline_window_s` of samples outside events, extrapolated to the current sample) − mains pick-up estimate ([`mains`]).
//! 4. **Noise**: robust σ = 1.4826 × median |r_k − r_{k−1}|/√2 of consecutive residuals over
//!    the noise window ([`stats::MedianTracker`], [`noise_step`]): σ for white noise, but blind
//!    to what neighbouring residuals share (the baseline's extrapolation error, 1/f noise above
//!    the baseline's reach).
//! 5. **Spikes**: hysteresis thresholds on the residual; a sign flip ends one event and starts the
//!    next; a same-sign spike starting within `merge_gap_s` of the previous one's end continues
//!    it (at high rates noise dips a near-threshold spike under the release threshold for a few
//!    samples); an excursion longer than any spike or pop-in is a level shift, which resets the
//!    baseline; one shorter than `min_duration_s` above its release threshold is noise, not a
//!    spike (at high rates a real spike spans many samples, a 5σ noise excursion one), and is
//!    dropped when it would be emitted, after the merge gap could have continued it. At 10 kHz
//!    and up the running mean of the residual over `smooth_window_s` ([`smooth`]) must also
//!    reach `threshold_sigma` times its own σ within the event, and keeps it open through raw
//!    dips under release.
//! 6. **Pop-ins** ([`popin`]): a jump of the de-trended displacement; the resistivity spike that
//!    overlaps it is folded into the pop-in (its peak becomes `linked_delta_rho`) and is *not*
//!    reported as a spike. To make that possible, completed spikes are held for the pop-in
//!    latency (longest pop-in + 4 ms window + 1 sample, 13 ms at the defaults and 1 kHz) before
//!    they are emitted.

mod contact;
mod mains;
mod popin;
mod quiet;
mod settle;
mod smooth;
mod stats;

use nanoecr_core::config::DetectionConfig;
use nanoecr_core::resistivity::resistivity_change;
use nanoecr_core::sample::FLAG_CURRENT_INVALID;
use nanoecr_core::{Event, EventKind, Pillar, Sample, Segment, Sign};

use crate::contact::ContactDetector;
use crate::mains::MainsCanceller;
use crate::popin::{PopinDetector, PopinFound};
use crate::quiet::QuietInput;
use crate::smooth::Smoother;
use crate::stats::{MedianTracker, TrailingLine};

/// Averaging window of the reference strain and current, s: long enough to keep 10⁻⁴ noise out
/// of the reference (√50 at 1 kHz), short against the drift of the settle period.
const REFERENCE_WINDOW_S: f64 = 0.05;
/// Window over which the current must be steady to declare Ohmic contact, s.
const CONTACT_WINDOW_S: f64 = 0.02;
/// Fewest samples in the contact window (a standard deviation of 2 samples means nothing).
const CONTACT_MIN_SAMPLES: usize = 8;
/// Largest relative scatter (σ/|mean|) of the current that counts as Ohmic contact. Contact noise
/// is ~10⁻⁴, pre-contact flicker a few 10⁻².
const CONTACT_MAX_REL_SCATTER: f64 = 5e-3;
/// Memory of the mains canceller, s (40 periods at 50 Hz). Each tracked sinusoid adds estimation
/// noise and takes up part of a spike's sub-threshold samples (2 n D / τ of a spike of duration D,
/// at any rate), both ∝ n/τ: up to four sinusoids at 0.8 s cost at most what the fundamental
/// alone did at 0.2 s, so white-noise runs are detected as before. The lag behind a drifting pick-up amplitude is
/// τ × its rate of change (≈ 1.4 × 10⁻⁵ rms for the matrix's ±50 %/0.1 Hz drift of a 10⁻⁴
/// fundamental). Measured on the robustness matrix (same seeds): 0.2, 0.4 and 0.8 s leave the
/// mains cells' residual σ within 0.3 % of each other, but at 0.4 s (four sinusoids) the white
/// cells' rose 0.3 % and 1 kHz rise_decay lost 7 of 167 detections; at 0.8 s white is unchanged
/// to the spike.
const MAINS_TAU_S: f64 = 0.8;
/// Residuals the noise window must hold before detection starts, s (and at least
/// [`NOISE_MIN_SAMPLES`]); a MAD from fewer is too uncertain for a 5σ threshold.
const NOISE_WARMUP_S: f64 = 0.1;
/// See [`NOISE_WARMUP_S`].
const NOISE_MIN_SAMPLES: usize = 64;
/// Length of each of the two displacement windows compared for pop-ins, s.
const POPIN_WINDOW_S: f64 = 0.004;
/// An excursion lasting this much longer than the longest pop-in is a level shift, not an event, s.
const LEVEL_SHIFT_MARGIN_S: f64 = 0.002;
/// Completed spikes waiting for the pop-in decision; more than this at once means a burst the
/// hold cannot cover, and the oldest is emitted early (never dropped, never allocated).
const PENDING_CAPACITY: usize = 64;
/// The sample before a threshold crossing belongs to the spike when it is already past this
/// fraction of the start threshold with the same sign: the excursion started there.
const STEP_BACK_FRACTION: f64 = 0.5;
/// Where a spike's reported onset lies before its first sample, in sample periods: the spike
/// began somewhere after the last sample that did not see it, uniformly in phase, so the middle
/// of that period is the unbiased estimate (the first sample itself is late by half a period on
/// average: 0.5 ms at 1 kHz, enough for a scorer — or a user — to take a detection of two
/// overlapping spikes for the later, smaller one). Its end is the middle of the period after its
/// last sample above release, so the duration stays a whole number of periods.
const ONSET_BEFORE_FIRST_SAMPLE: f64 = 0.5;
/// Slack in samples when matching a spike to a pop-in's time span.
const LINK_TOLERANCE_SAMPLES: u64 = 2;

/// The reference (contact-established) state every Δρ/ρ is relative to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reference {
    /// Time at which the reference was set, s since the run start.
    pub time_s: f64,
    /// Reference engineering strain (mean over the reference window).
    pub strain: f64,
    /// Reference current, A (mean over the reference window).
    pub current_a: f64,
}

/// Stored columns for [`detect_columns`]; all slices index the same samples. Extra elements of
/// longer slices are ignored.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// Time since the run start, s.
    pub time_s: &'a [f64],
    /// Displacement, nm.
    pub disp_nm: &'a [f64],
    /// Current, A.
    pub current_a: &'a [f64],
    /// Load, µN.
    pub load_un: &'a [f64],
    /// Segment codes ([`Segment::code`]); unknown codes read as [`Segment::Settle`].
    pub segment: &'a [u8],
}

impl Columns<'_> {
    /// Samples the columns describe: the shortest column's length.
    pub fn len(&self) -> usize {
        self.time_s
            .len()
            .min(self.disp_nm.len())
            .min(self.current_a.len())
            .min(self.load_un.len())
            .min(self.segment.len())
    }

    /// Whether the columns describe no sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The lengths, in samples, of the windows a [`Detector`] keeps at a sampling rate, and the step
/// of its mains canceller: what the analysis needs to model the detector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSamples {
    /// Trailing baseline (least-squares line) window.
    pub baseline: usize,
    /// Robust-noise (MAD) window.
    pub noise: usize,
    /// The mains canceller's carry: the share of a learned residual that its prediction for the
    /// next sample takes on (its LMS step times Σ cos(h·2π·mains_hz/rate_hz) over the tracked
    /// fundamental and harmonics; 0 when the canceller is off).
    pub mains_step: f64,
    /// Running-mean window that confirms events (`smooth_window_s` in whole samples; 1 when
    /// the smoother is off, as at 1 kHz).
    pub smooth: usize,
}

/// Whether a [`Detector`] built from `cfg` runs its mains canceller at `rate_hz`: on, and below
/// Nyquist (above it the lock-in would follow an alias).
fn mains_on(cfg: &DetectionConfig, rate_hz: f64) -> bool {
    cfg.mains_hz > 0.0 && cfg.mains_hz < rate_hz / 2.0
}

/// The baseline and noise windows a [`Detector`] built from `cfg` uses at `rate_hz` (what the
/// analysis needs to model the detector's threshold). With the mains canceller on, the baseline
/// window is rounded to whole mains periods, which average the pick-up out of the baseline itself.
pub fn window_samples(cfg: &DetectionConfig, rate_hz: f64) -> WindowSamples {
    let samples = |s: f64| (s * rate_hz).round().max(1.0) as usize;
    let mains_on = mains_on(cfg, rate_hz);
    let baseline_window_s = if mains_on {
        (cfg.baseline_window_s * cfg.mains_hz).round().max(1.0) / cfg.mains_hz
    } else {
        cfg.baseline_window_s
    };
    WindowSamples {
        baseline: samples(baseline_window_s).max(2),
        noise: samples(cfg.noise_window_s).max(NOISE_MIN_SAMPLES),
        mains_step: if mains_on { mains::carry(cfg.mains_hz, cfg.mains_harmonics, rate_hz, MAINS_TAU_S) } else { 0.0 },
        smooth: ((cfg.smooth_window_s * rate_hz).floor().max(1.0) as usize).max(1),
    }
}

/// Offline: run the streaming detector over stored columns and return (Δρ/ρ per sample, events).
pub fn detect_columns(
    cfg: &DetectionConfig,
    pillar: Pillar,
    rate_hz: f64,
    settle_s: f64,
    cols: Columns<'_>,
) -> (Vec<f64>, Vec<Event>) {
    let n = cols.len();
    let mut det = Detector::new(cfg, pillar, rate_hz, settle_s);
    let mut delta_rho = Vec::with_capacity(n);
    let mut events = Vec::new();
    det.process_columns(cols, &mut delta_rho, &mut |e| events.push(e));
    det.finish(&mut |e| events.push(e));
    (delta_rho, events)
}

/// What the noise window holds for a quiet residual: its first difference from the previous
/// quiet residual over √2, whose median × 1.4826 is σ of white noise, as is that of |residual|,
/// but which 1/f noise (slow steps and swings the trailing baseline cannot follow) and the
/// baseline's own extrapolation error hardly move: consecutive residuals share them.
#[inline(always)]
pub(crate) fn noise_step(residual: f64, prev: f64) -> f64 {
    (residual - prev).abs() * std::f64::consts::FRAC_1_SQRT_2
}

/// Strain and current of a (provisional or final) reference state.
#[derive(Debug, Clone, Copy)]
struct RefState {
    strain: f64,
    current_a: f64,
}

/// The final reference in the form the per-sample Δρ/ρ wants: the relation of
/// [`resistivity_change`] with its constant factor and the reciprocal of the reference current
/// precomputed (a multiplication instead of one of its two divisions; the result differs by at
/// most an ulp).
#[derive(Debug, Clone, Copy)]
struct ReferenceTerms {
    strain: f64,
    current_a: f64,
    inv_current_a: f64,
    /// 1 + 3ν.
    geometric_factor: f64,
}

impl ReferenceTerms {
    #[inline]
    fn delta_rho(&self, strain: f64, current_a: f64) -> f64 {
        self.geometric_factor * (strain - self.strain) / (1.0 + strain)
            - (current_a - self.current_a) * self.inv_current_a
    }
}

/// A spike still above its release threshold.
#[derive(Debug, Clone, Copy)]
struct OpenSpike {
    /// +1 for p, −1 for n.
    sign: f64,
    onset_k: u64,
    /// Reported onset, s: half a period before the first sample ([`ONSET_BEFORE_FIRST_SAMPLE`]).
    onset_time_s: f64,
    segment: Segment,
    stress_mpa: f64,
    peak_dev: f64,
    peak_time_s: f64,
    last_above_k: u64,
    last_above_time_s: f64,
    /// Already folded into a pop-in: drop it when it closes.
    linked: bool,
    /// The smoothed residual reached `threshold_sigma` × its σ on some sample (always, with the
    /// smoother off): without that, the event is noise.
    confirmed: bool,
}

/// A completed spike held until the pop-in detector has seen past it.
#[derive(Debug, Clone, Copy)]
struct Pending {
    event: Event,
    /// The spike as it closed (sample span `onset_k..=last_above_k`), to continue it if a
    /// same-sign spike follows within the merge gap.
    spike: OpenSpike,
    /// Closed because it outlasted any event: a step of the level. Only reported through a pop-in.
    level_shift: bool,
    /// Closed shorter than `min_duration_s`, or never confirmed by the smoothed residual: noise,
    /// unless a same-sign spike continues it.
    short: bool,
}

/// What the previous sample left for the step-back of the next onset.
#[derive(Debug, Clone, Copy)]
struct Prev {
    time_s: f64,
    load_un: f64,
    segment: Segment,
    /// Its residual, NaN when it cannot start an event (inside one, invalid, warming up).
    residual: f64,
}

/// The streaming spike and pop-in detector; see the crate documentation for the algorithm.
#[derive(Debug, Clone)]
pub struct Detector {
    pillar: Pillar,
    threshold_sigma: f64,
    release_sigma: f64,
    min_magnitude: f64,
    settle_s: f64,
    detect_contact: bool,
    dt_s: f64,
    /// 1/H0 in 1/nm: strain by multiplication.
    inv_height_nm: f64,
    elastic_nm_per_un: f64,
    baseline_min: usize,
    noise_min: usize,
    max_event_samples: u64,
    hold_samples: u64,
    /// Longest dip, in samples, over which a same-sign spike continues the previous one.
    merge_gap_samples: u64,
    /// Fewest samples from onset to the last one above release that make a spike (≥ 1).
    min_spike_samples: u64,
    /// Samples in the smoother's window (1 when it is off): an event stays open this long after
    /// its onset whatever the residual does, since the trailing mean needs that long to rise.
    smooth_samples: u64,

    contact: ContactDetector,
    contact_window: usize,
    contact_seen: bool,
    /// Last samples' (strain, current) for the reference average.
    ref_ring: Vec<[f64; 2]>,
    ref_head: usize,
    ref_window: usize,
    /// Samples usable for the reference: since the contact window began (or all, without
    /// contact detection), capped at the ring length.
    ref_available: usize,
    provisional: Option<RefState>,
    reference: Option<Reference>,
    final_ref: Option<RefState>,
    /// Set with the reference: from then on every sample takes the short path of `process`.
    terms: Option<ReferenceTerms>,

    baseline: TrailingLine,
    noise: MedianTracker,
    /// The last residual pushed into `noise` (its first difference is what `noise` holds).
    noise_prev: f64,
    mains: Option<MainsCanceller>,
    /// Running mean of the residual that confirms events, at two or more samples per window.
    smooth: Option<Smoother>,

    /// Samples processed; the current sample's index is `k − 1`.
    k: u64,
    prev: Prev,
    open: Option<OpenSpike>,
    pending: Vec<Pending>,
    popin: PopinDetector,
    level_shifts: u64,
    /// Excursions dropped for being shorter than `min_duration_s`.
    short_rejected: u64,
    /// Samples that went through the block loops of `process_slice` (quiet and settle).
    quiet_samples: u64,
    /// Scratch columns of the quiet loop (Δρ/ρ and pop-in input of one block).
    scratch_delta_rho: Vec<f64>,
    scratch_popin_nm: Vec<f64>,
    /// Scratch column of the quiet loop: each committed sample's residual, for the smoother's pass.
    scratch_residual: Vec<f64>,
    /// What the last quiet block computed past the sample that stopped it (see `quiet.rs`).
    ahead: quiet::Ahead,
}

impl Detector {
    /// A detector for one run sampled at `rate_hz`, whose reference may not be set before
    /// `settle_s` (s since the run start). Every buffer is allocated here.
    ///
    /// # Panics
    /// If `rate_hz` is not a positive finite number (a validated run config never gives one).
    pub fn new(cfg: &DetectionConfig, pillar: Pillar, rate_hz: f64, settle_s: f64) -> Self {
        assert!(rate_hz.is_finite() && rate_hz > 0.0, "Detector::new: sample rate must be positive, got {rate_hz}");
        let samples = |s: f64| (s * rate_hz).round().max(1.0) as usize;
        let mains_on = mains_on(cfg, rate_hz);
        let WindowSamples { baseline: baseline_window, noise: noise_window, smooth: smooth_window, .. } =
            window_samples(cfg, rate_hz);
        let contact_window = samples(CONTACT_WINDOW_S).max(CONTACT_MIN_SAMPLES);
        let ref_window = samples(REFERENCE_WINDOW_S);
        let dt_s = 1.0 / rate_hz;
        let popin = PopinDetector::new(
            samples(POPIN_WINDOW_S).max(3),
            samples(cfg.popin_max_duration_s),
            cfg.popin_threshold_nm,
            dt_s,
        );
        Self {
            pillar,
            threshold_sigma: cfg.threshold_sigma,
            release_sigma: cfg.release_sigma,
            min_magnitude: cfg.min_magnitude,
            settle_s,
            detect_contact: cfg.detect_contact,
            dt_s,
            inv_height_nm: 1.0 / pillar.height_nm(),
            elastic_nm_per_un: pillar.elastic_disp_nm(1.0),
            baseline_min: (baseline_window / 4).max(2),
            noise_min: samples(NOISE_WARMUP_S).max(NOISE_MIN_SAMPLES).min(noise_window),
            max_event_samples: samples(cfg.popin_max_duration_s + LEVEL_SHIFT_MARGIN_S) as u64,
            hold_samples: popin.latency_samples(),
            // Whole samples that fit in the gap: below one sample period nothing merges.
            merge_gap_samples: (cfg.merge_gap_s * rate_hz).floor().max(0.0) as u64,
            min_spike_samples: ((cfg.min_duration_s * rate_hz).floor() as u64).max(1),
            smooth_samples: smooth_window as u64,
            contact: ContactDetector::new(contact_window, CONTACT_MAX_REL_SCATTER),
            contact_window,
            contact_seen: false,
            ref_ring: vec![[0.0; 2]; ref_window.max(contact_window)],
            ref_head: 0,
            ref_window,
            ref_available: 0,
            provisional: None,
            reference: None,
            final_ref: None,
            terms: None,
            baseline: TrailingLine::new(baseline_window),
            noise: MedianTracker::new(noise_window),
            noise_prev: 0.0,
            mains: mains_on.then(|| {
                let n = mains::tracked(cfg.mains_hz, cfg.mains_harmonics, rate_hz);
                MainsCanceller::new(cfg.mains_hz, n, rate_hz, MAINS_TAU_S)
            }),
            smooth: (smooth_window >= 2).then(|| Smoother::new(smooth_window, noise_window)),
            k: 0,
            prev: Prev { time_s: f64::NAN, load_un: f64::NAN, segment: Segment::Settle, residual: f64::NAN },
            open: None,
            pending: Vec::with_capacity(PENDING_CAPACITY),
            popin,
            level_shifts: 0,
            short_rejected: 0,
            quiet_samples: 0,
            scratch_delta_rho: vec![0.0; quiet::QUIET_BLOCK],
            scratch_popin_nm: vec![0.0; quiet::QUIET_BLOCK],
            scratch_residual: vec![0.0; quiet::QUIET_BLOCK],
            ahead: quiet::Ahead::default(),
        }
    }

    /// The reference (contact-established) state, once set.
    pub fn reference(&self) -> Option<Reference> {
        self.reference
    }

    /// Current robust noise estimate σ of the Δρ/ρ residual, from its first differences (NaN
    /// before any residual).
    pub fn noise_sigma(&self) -> f64 {
        self.noise.sigma()
    }

    /// How many samples [`Detector::process_slice`] ran through its block loops (the quiet loop,
    /// and before the reference the settle window's; the rest took the general path): a
    /// diagnostic for benchmarks and tests.
    pub fn quiet_samples(&self) -> u64 {
        self.quiet_samples
    }

    /// How many times an excursion outlasted any spike or pop-in and the baseline was restarted
    /// at the new level (steps of Δρ/ρ, e.g. the strain step a pop-in leaves behind).
    pub fn level_shifts(&self) -> u64 {
        self.level_shifts
    }

    /// How many excursions past the start threshold were dropped as noise for lasting less than
    /// `[detection] min_duration_s` (none at rates where that is under one sample period).
    pub fn short_rejected(&self) -> u64 {
        self.short_rejected
    }

    /// One sample in; returns its Δρ/ρ (NaN until the reference state is set, and for a sample
    /// without a valid current); completed events are passed to `emit`.
    pub fn process(&mut self, s: &Sample, emit: &mut impl FnMut(Event)) -> f64 {
        self.process_one(s, emit)
    }

    /// [`Detector::process`] for each of `samples` in order, appending each Δρ/ρ to `delta_rho`
    /// (no allocation when it has the capacity). Bit-identical results to the per-sample calls,
    /// whatever the slicing; about three times faster, because runs of quiet samples (no event
    /// starting or open, nothing due) go through a loop that keeps the detector's state in
    /// registers (see `quiet.rs`).
    pub fn process_slice(&mut self, samples: &[Sample], delta_rho: &mut Vec<f64>, emit: &mut impl FnMut(Event)) {
        // What a quiet block kept ahead belongs to the previous call's samples.
        self.ahead = quiet::Ahead::default();
        let mut i = 0;
        while i < samples.len() {
            i += self.run_ready(&samples[i..], delta_rho);
            if i == samples.len() {
                break;
            }
            let d = self.process_one(&samples[i], emit);
            delta_rho.push(d);
            i += 1;
        }
    }

    /// As [`Detector::process_slice`], over stored columns (the shortest column sets the
    /// length): the quiet loop reads the columns in place, and only the samples the general path
    /// takes become `Sample` rows, so a reader need not build rows. Results are bit-identical to
    /// `process_slice` over the same samples (with `flags` 0), however the columns are sliced.
    pub fn process_columns(&mut self, cols: Columns<'_>, delta_rho: &mut Vec<f64>, emit: &mut impl FnMut(Event)) {
        let n = cols.len();
        let input = quiet::ColumnInput::new(cols, n);
        self.ahead = quiet::Ahead::default();
        let mut i = 0;
        while i < n {
            i += self.run_ready(input.range(i, n), delta_rho);
            if i == n {
                break;
            }
            let d = self.process_one(&input.sample(i), emit);
            delta_rho.push(d);
            i += 1;
        }
    }

    /// The leading samples of `samples` that a loop of `quiet.rs` can take in the detector's
    /// current state (after the reference, or in the settle window); returns how many it took
    /// (0 when none: the next sample is the general path's).
    #[inline]
    fn run_ready<I: quiet::QuietInput>(&mut self, samples: I, delta_rho: &mut Vec<f64>) -> usize {
        if self.quiet_ready() {
            self.run_quiet::<I, false>(samples, delta_rho)
        } else if self.settle_ready() {
            self.run_quiet::<I, true>(samples, delta_rho)
        } else if self.precontact_ready() {
            self.run_precontact(samples, delta_rho)
        } else {
            0
        }
    }

    #[inline(always)]
    fn process_one(&mut self, s: &Sample, emit: &mut impl FnMut(Event)) -> f64 {
        let k = self.k;
        self.k += 1;
        let strain = s.disp_nm * self.inv_height_nm;
        let current_a = if s.flags & FLAG_CURRENT_INVALID != 0 { f64::NAN } else { s.current_a };
        self.popin.push(s.disp_nm - self.elastic_nm_per_un * s.load_un, s.time_s, s.load_un, s.segment);
        if let Some(terms) = self.terms {
            // Reference set: the reference window and contact detection are done with.
            let delta_rho = terms.delta_rho(strain, current_a);
            if let Some(m) = self.mains.as_mut() {
                m.advance(s.time_s);
            }
            if delta_rho.is_finite() {
                self.track(s, k, delta_rho, emit);
            } else {
                self.prev = Prev { time_s: s.time_s, load_un: s.load_un, segment: s.segment, residual: f64::NAN };
            }
            self.after_track(k, emit);
            return delta_rho;
        }
        self.ref_ring[self.ref_head] = [strain, current_a];
        self.ref_head = if self.ref_head + 1 == self.ref_ring.len() { 0 } else { self.ref_head + 1 };
        if self.contact_seen || !self.detect_contact {
            self.ref_available = (self.ref_available + 1).min(self.ref_ring.len());
        }
        if self.reference.is_none() {
            self.seek_reference(s.time_s, current_a);
        }

        let active = self.final_ref.or(self.provisional);
        let delta_rho = match active {
            Some(r) => resistivity_change(strain, r.strain, current_a, r.current_a, self.pillar.poisson_ratio),
            None => f64::NAN,
        };
        if let Some(m) = self.mains.as_mut() {
            m.advance(s.time_s);
        }
        if delta_rho.is_finite() {
            self.track(s, k, delta_rho, emit);
        } else {
            self.prev = Prev { time_s: s.time_s, load_un: s.load_un, segment: s.segment, residual: f64::NAN };
        }

        if self.reference.is_none() {
            return f64::NAN;
        }
        self.after_track(k, emit);
        delta_rho
    }

    /// Pop-in step and release of held spikes, once the reference is set.
    #[inline(always)]
    fn after_track(&mut self, k: u64, emit: &mut impl FnMut(Event)) {
        if let Some(found) = self.popin.step() {
            self.emit_popin(found, emit);
        }
        if !self.popin.is_open() {
            while let Some(p) = self.pending.first().copied() {
                if k < p.spike.last_above_k + self.hold_samples {
                    break;
                }
                self.pending.remove(0);
                self.release(p, emit);
            }
        }
    }

    /// End of data: close any open event, decide an open pop-in and emit everything held.
    pub fn finish(&mut self, emit: &mut impl FnMut(Event)) {
        if let Some(o) = self.open.take() {
            self.close_spike(o, false, emit);
        }
        if self.reference.is_some() {
            if let Some(found) = self.popin.flush() {
                self.emit_popin(found, emit);
            }
        }
        while !self.pending.is_empty() {
            let p = self.pending.remove(0);
            self.release(p, emit);
        }
    }

    /// Contact detection and reference selection; runs only until the reference is set.
    fn seek_reference(&mut self, time_s: f64, current_a: f64) {
        if self.detect_contact && !self.contact_seen && self.contact.push(current_a) {
            self.contact_seen = true;
            // The steady window itself is post-contact data, current sample included.
            self.ref_available = self.contact_window;
        }
        if self.detect_contact && !self.contact_seen {
            return;
        }
        if time_s >= self.settle_s {
            let Some(r) = self.average_last(self.ref_window.min(self.ref_available)).or(self.provisional) else {
                return;
            };
            if let Some(p) = self.provisional {
                // Windows filled against the provisional reference move by the (constant) offset
                // between the two references; one O(window) pass, once per run.
                let offset =
                    -resistivity_change(r.strain, p.strain, r.current_a, p.current_a, self.pillar.poisson_ratio);
                if offset.is_finite() {
                    self.baseline.shift(offset);
                }
            }
            self.final_ref = Some(r);
            self.reference = Some(Reference { time_s, strain: r.strain, current_a: r.current_a });
            self.terms = Some(ReferenceTerms {
                strain: r.strain,
                current_a: r.current_a,
                inv_current_a: 1.0 / r.current_a,
                geometric_factor: 1.0 + 3.0 * self.pillar.poisson_ratio,
            });
        } else if self.provisional.is_none() {
            self.provisional = self.average_last(self.contact_window.min(self.ref_available));
        }
    }

    /// Mean (strain, current) of the last `n` samples with a valid current. Once per run.
    fn average_last(&self, n: usize) -> Option<RefState> {
        let cap = self.ref_ring.len();
        let (mut strain, mut current, mut count) = (0.0, 0.0, 0usize);
        for i in 0..n.min(cap) {
            let [e, c] = self.ref_ring[(self.ref_head + cap - 1 - i) % cap];
            if e.is_finite() && c.is_finite() {
                strain += e;
                current += c;
                count += 1;
            }
        }
        (count > 0 && current != 0.0)
            .then(|| RefState { strain: strain / count as f64, current_a: current / count as f64 })
    }

    /// Baseline, noise and the spike state machine for one valid Δρ/ρ.
    #[inline(always)]
    fn track(&mut self, s: &Sample, k: u64, delta_rho: f64, emit: &mut impl FnMut(Event)) {
        if self.baseline.len() < self.baseline_min {
            // Warming up (start, or after a level shift): every sample builds the baseline.
            self.baseline.push(k, delta_rho);
            self.prev = Prev { time_s: s.time_s, load_un: s.load_un, segment: s.segment, residual: f64::NAN };
            return;
        }
        let r0 = delta_rho - self.baseline.value_at(k);
        let residual = r0 - self.mains.as_ref().map_or(0.0, MainsCanceller::predict);
        let smoothed = match self.smooth.as_mut() {
            Some(sm) => sm.push(residual),
            None => residual,
        };
        let mut in_event = false;
        if self.reference.is_some() && self.noise.len() >= self.noise_min {
            let sigma = self.noise.sigma();
            let on = (self.threshold_sigma * sigma).max(self.min_magnitude);
            let off = self.release_sigma * sigma;
            let sigma_smooth = self.smooth.as_ref().map_or(sigma, |sm| sm.sigma(sigma));
            let (confirm, off_smooth) = (self.threshold_sigma * sigma_smooth, self.release_sigma * sigma_smooth);
            // Whether the smoothed residual confirms an event of `residual`'s sign now.
            let confirms = |residual: f64| smoothed * if residual >= 0.0 { 1.0 } else { -1.0 } > confirm;
            if let Some(mut o) = self.open {
                let signed = residual * o.sign;
                let signed_smooth = smoothed * o.sign;
                let above = signed > off || signed_smooth > off_smooth;
                // Young: the trailing mean has not had its window to rise yet (never, when off).
                let young = k - o.onset_k < self.smooth_samples;
                if -signed > on {
                    // Opposite sign past the start threshold: the next event starts here.
                    self.open = None;
                    self.close_spike(o, false, emit);
                    self.open = Some(self.new_spike(s, k, residual, confirms(residual), false, on));
                    in_event = true;
                } else if above || young {
                    if signed > o.peak_dev * o.sign {
                        o.peak_dev = residual;
                        o.peak_time_s = s.time_s;
                    }
                    o.confirmed |= signed_smooth > confirm;
                    // The raw samples alone time the spike: the trailing mean lags its end by up
                    // to a window, and a lone large sample keeps it up for one (that would pass a
                    // duration test on the mean).
                    if signed > off {
                        o.last_above_k = k;
                        o.last_above_time_s = s.time_s;
                    }
                    if k - o.onset_k >= self.max_event_samples {
                        // Longer than any spike or pop-in: the level moved. Restart the baseline
                        // at the new level instead of holding an event open forever.
                        self.open = None;
                        self.close_spike(o, true, emit);
                        self.level_shifts += 1;
                        self.baseline.clear();
                        if let Some(sm) = self.smooth.as_mut() {
                            sm.clear();
                        }
                        self.baseline.push(k, delta_rho);
                        self.prev =
                            Prev { time_s: s.time_s, load_un: s.load_un, segment: s.segment, residual: f64::NAN };
                        return;
                    }
                    self.open = Some(o);
                    in_event = true;
                } else {
                    self.open = None;
                    self.close_spike(o, false, emit);
                }
            } else if residual.abs() > on {
                let confirmed = confirms(residual);
                let spike = match self.resume_spike(s, k, residual, confirmed) {
                    Some(resumed) => resumed,
                    None => self.new_spike(s, k, residual, confirmed, true, on),
                };
                self.open = Some(spike);
                in_event = true;
            }
        }
        if !in_event {
            self.baseline.push(k, delta_rho);
            self.noise.push(noise_step(residual, self.noise_prev));
            self.noise_prev = residual;
            if let Some(sm) = self.smooth.as_mut() {
                sm.learn(smoothed);
            }
            if let Some(m) = self.mains.as_mut() {
                m.learn(r0);
            }
        }
        let residual = if in_event { f64::NAN } else { residual };
        self.prev = Prev { time_s: s.time_s, load_un: s.load_un, segment: s.segment, residual };
    }

    /// The spike that closed last, taken back from the held queue and continued with this
    /// sample, when it has the same sign and ended at most `merge_gap_samples` samples ago.
    fn resume_spike(&mut self, s: &Sample, k: u64, residual: f64, confirmed: bool) -> Option<OpenSpike> {
        let p = self.pending.last()?;
        let sign = if residual >= 0.0 { 1.0 } else { -1.0 };
        // Samples strictly between the previous spike's last one above release and this one.
        let gap = k.saturating_sub(p.spike.last_above_k + 1);
        if p.level_shift || p.spike.sign != sign || gap > self.merge_gap_samples {
            return None;
        }
        let mut o = self.pending.pop()?.spike;
        o.confirmed |= confirmed;
        if residual * sign > o.peak_dev * sign {
            o.peak_dev = residual;
            o.peak_time_s = s.time_s;
        }
        o.last_above_k = k;
        o.last_above_time_s = s.time_s;
        Some(o)
    }

    /// An event opened by `residual` past the start threshold `on`; `confirmed` when the
    /// smoothed residual is already past its own threshold with the same sign.
    fn new_spike(&self, s: &Sample, k: u64, residual: f64, confirmed: bool, may_step_back: bool, on: f64) -> OpenSpike {
        let sign = if residual >= 0.0 { 1.0 } else { -1.0 };
        let step_back = may_step_back && self.prev.residual * sign > STEP_BACK_FRACTION * on;
        let (onset_k, onset_time_s, load_un, segment) = if step_back {
            (k - 1, self.prev.time_s, self.prev.load_un, self.prev.segment)
        } else {
            (k, s.time_s, s.load_un, s.segment)
        };
        OpenSpike {
            sign,
            onset_k,
            onset_time_s: onset_time_s - ONSET_BEFORE_FIRST_SAMPLE * self.dt_s,
            segment,
            stress_mpa: self.pillar.stress_mpa(load_un),
            peak_dev: residual,
            peak_time_s: s.time_s,
            last_above_k: k,
            last_above_time_s: s.time_s,
            linked: false,
            confirmed,
        }
    }

    /// Queue a closed spike for the pop-in decision; `process` emits it once the hold is over.
    fn close_spike(&mut self, o: OpenSpike, level_shift: bool, emit: &mut impl FnMut(Event)) {
        if o.linked {
            return;
        }
        if self.pending.len() == PENDING_CAPACITY {
            // A burst longer than the hold can cover: emit the oldest early rather than grow the
            // queue (no allocation) or lose it.
            let oldest = self.pending.remove(0);
            self.release(oldest, emit);
        }
        // From the onset to the middle of the period after the last sample above release.
        let duration_s = o.last_above_time_s - o.onset_time_s + (1.0 - ONSET_BEFORE_FIRST_SAMPLE) * self.dt_s;
        let event = Event::spike(o.onset_time_s, o.peak_time_s, duration_s, o.peak_dev, o.segment, o.stress_mpa);
        let short = o.last_above_k + 1 - o.onset_k < self.min_spike_samples || !o.confirmed;
        self.pending.push(Pending { event, spike: o, level_shift, short });
    }

    /// A held spike leaves the queue: emitted, unless it was a level step or too short.
    fn release(&mut self, p: Pending, emit: &mut impl FnMut(Event)) {
        if p.level_shift {
            return;
        }
        if p.short {
            self.short_rejected += 1;
            return;
        }
        emit(p.event);
    }

    /// Fold overlapping spikes into the pop-in and emit it, after any earlier held spike.
    fn emit_popin(&mut self, found: PopinFound, emit: &mut impl FnMut(Event)) {
        let duration_samples = (found.duration_s / self.dt_s).round() as u64;
        let lo = found.onset_k.saturating_sub(LINK_TOLERANCE_SAMPLES);
        let hi = found.onset_k + duration_samples + LINK_TOLERANCE_SAMPLES;
        // (|peak|, signed peak, onset time, peak time, segment, stress) of the largest overlapping spike.
        let mut best: Option<(f64, f64, f64, f64, Segment, f64)> = None;
        let mut consider = |peak: f64, onset: f64, peak_t: f64, seg: Segment, stress: f64| {
            if best.is_none_or(|b| peak.abs() > b.0) {
                best = Some((peak.abs(), peak, onset, peak_t, seg, stress));
            }
        };
        let mut i = 0;
        while i < self.pending.len() {
            let p = self.pending[i];
            if p.spike.last_above_k < lo {
                // Wholly before this pop-in (and any earlier pop-in is already decided).
                self.pending.remove(i);
                self.release(p, emit);
            } else if p.spike.onset_k <= hi {
                self.pending.remove(i);
                let e = p.event;
                if p.short {
                    // Noise inside the burst: not the pop-in's resistivity spike.
                    self.short_rejected += 1;
                } else {
                    consider(e.magnitude, e.onset_time_s, e.peak_time_s, e.segment, e.stress_mpa);
                }
            } else {
                i += 1;
            }
        }
        if let Some(o) = self.open.as_mut() {
            if o.onset_k <= hi {
                o.linked = true;
                consider(o.peak_dev, o.onset_time_s, o.peak_time_s, o.segment, o.stress_mpa);
            }
        }
        let event = match best {
            Some((_, peak, onset, peak_t, segment, stress_mpa)) => Event {
                kind: EventKind::Popin,
                sign: Sign::of(peak),
                // The resistivity spike times the burst far better than the averaged displacement.
                onset_time_s: onset,
                peak_time_s: peak_t,
                duration_s: found.duration_s,
                magnitude: found.jump_nm,
                linked_delta_rho: peak,
                segment,
                stress_mpa,
            },
            None => Event {
                kind: EventKind::Popin,
                sign: Sign::P,
                onset_time_s: found.onset_time_s,
                peak_time_s: found.onset_time_s + found.duration_s,
                duration_s: found.duration_s,
                magnitude: found.jump_nm,
                linked_delta_rho: f64::NAN,
                segment: found.segment,
                stress_mpa: self.pillar.stress_mpa(found.load_un),
            },
        };
        emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_samples_reports_the_detectors_own_windows_and_mains_step() {
        let pillar = Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };
        for (mains_hz, rate_hz) in [(50.0, 1000.0), (50.0, 10_000.0), (0.0, 10_000.0), (60.0, 100.0)] {
            let cfg = DetectionConfig { mains_hz, ..Default::default() };
            let w = window_samples(&cfg, rate_hz);
            let det = Detector::new(&cfg, pillar, rate_hz, 2.0);
            assert_eq!(w.baseline, det.baseline.x.len(), "{mains_hz} Hz at {rate_hz} Hz");
            assert_eq!(w.noise, det.noise.ring.len());
            // The carry is what one learned residual moves the next prediction by.
            let carry = det.mains.clone().map_or(0.0, |mut m| {
                m.advance(0.0);
                m.learn(1.0);
                m.advance(1.0 / rate_hz);
                m.predict()
            });
            assert!((w.mains_step - carry).abs() < 1e-15, "{mains_hz} Hz at {rate_hz} Hz: {} vs {carry}", w.mains_step);
            assert_eq!(w.mains_step > 0.0, mains_hz > 0.0 && mains_hz < rate_hz / 2.0);
            assert_eq!(w.smooth, det.smooth.as_ref().map_or(1, |sm| sm.ring.len()), "at {rate_hz} Hz");
            assert_eq!(w.smooth as u64, det.smooth_samples);
        }
        // 0.2 ms: off at the paper's 1 kHz, 2 samples at 10 kHz, 20 at 100 kHz.
        let cfg = DetectionConfig::default();
        assert_eq!([1e3, 1e4, 1e5].map(|r| window_samples(&cfg, r).smooth), [1, 2, 20]);
    }
}
