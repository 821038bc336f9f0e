//! The quiet-sample loop behind [`Detector::process_slice`].
//!
//! Almost every sample of a run is "quiet": the reference is set, no event is open, the residual
//! stays under the start threshold, the displacement shows no jump and no held spike is due.
//! For those samples `process` does a fixed sequence of updates, but as a per-sample call it
//! reloads and stores all detector state each time (≈ 430 instructions a sample, callgrind),
//! which capped it near 23 M samples/s. Here blocks of up to [`QUIET_BLOCK`] samples go through
//! short passes, each with fewer live values than the whole update:
//!
//! 1. Δρ/ρ and the de-trended displacement of every sample (no loop-carried state), then the
//!    first sample that is invalid or off the sampling grid;
//! 2. the pop-in windows: each sample's jump, stopping at the first that would open a pop-in;
//! 3. baseline, mains canceller, threshold and noise median, stopping at the first residual over
//!    the start threshold;
//! 4. the smoother (at 10 kHz and up), over the residuals pass 3 accepted: nothing in pass 3
//!    reads it.
//!
//! A sample that stops a pass is left, untouched, to the general path. What passes 1 and 2
//! computed past that sample is kept for the next block ([`Ahead`]), and a block whose baseline
//! window has a gap ends where the gap leaves it, so the blocks after it take the contiguous
//! window's cheaper slope. The noise histogram counts a window's empty slots in a bin of their
//! own, so a push into a window still filling drops one of them as it would the oldest value,
//! and the loop needs no variant for it. Before the reference its `SETTLE` variant takes the
//! provisional tracking (Δρ/ρ against the provisional reference, nothing detected, NaN out);
//! before contact `settle.rs` does. Pass 2 writes
//! its ring slots before pass 3 has accepted the samples; that is harmless because a later push
//! of the same sample writes the same values there, and the ring has [`QUIET_BLOCK`] slots to
//! spare so no history the general path still reads is overwritten. Every arithmetic step is written
//! exactly as in the general path (same operations, same order), so both paths give
//! bit-identical Δρ/ρ and events whatever the slicing; `tests/slice.rs` checks that on runs
//! with spikes, pop-ins, mains pick-up, drift, 1/f noise and invalid and missing samples.

use std::cell::Cell;

use nanoecr_core::resistivity::resistivity_change;
use nanoecr_core::sample::FLAG_CURRENT_INVALID;
use nanoecr_core::{Sample, Segment};

use crate::mains::MAX_HARMONICS;
use crate::popin::{Slot, State};
use crate::stats::{
    median_refresh, offset, MedianTracker, COUNT_SLOTS, RECOMPUTE_WINDOWS, SIGMA_REFRESH, YOUNG_WINDOW,
};
use crate::{Detector, RefState, ReferenceTerms};

/// Samples per block of the quiet loop: long enough to amortise the block set-up, short enough
/// for the scratch columns to stay in L1.
pub(crate) const QUIET_BLOCK: usize = 256;

/// What the quiet loop reads of a run: rows of [`Sample`]s (`process_slice`) or stored columns
/// (`detect_columns`), so the columns need not become 64-byte rows for the samples the loop
/// takes. Monomorphised: each input gets its own loop, with no call per field.
pub(crate) trait QuietInput: Copy {
    /// Samples in the input.
    fn len(self) -> usize;
    /// Samples `start..end` (panics as a slice index would).
    fn range(self, start: usize, end: usize) -> Self;
    /// Time of sample `j`, s.
    fn time_s(self, j: usize) -> f64;
    /// Displacement of sample `j`, nm.
    fn disp_nm(self, j: usize) -> f64;
    /// Current of sample `j`, A (as stored: [`FLAG_CURRENT_INVALID`] is in [`Self::flags`]).
    fn current_a(self, j: usize) -> f64;
    /// Load of sample `j`, µN.
    fn load_un(self, j: usize) -> f64;
    /// Segment of sample `j`.
    fn segment(self, j: usize) -> Segment;
    /// Flags of sample `j`.
    fn flags(self, j: usize) -> u8;
    /// A byte of sample `j`'s data (or 0), read so the prefetcher streams it in early.
    fn touch(self, j: usize) -> u8;
}

impl QuietInput for &[Sample] {
    #[inline(always)]
    fn len(self) -> usize {
        <[Sample]>::len(self)
    }
    #[inline(always)]
    fn range(self, start: usize, end: usize) -> Self {
        &self[start..end]
    }
    #[inline(always)]
    fn time_s(self, j: usize) -> f64 {
        self[j].time_s
    }
    #[inline(always)]
    fn disp_nm(self, j: usize) -> f64 {
        self[j].disp_nm
    }
    #[inline(always)]
    fn current_a(self, j: usize) -> f64 {
        self[j].current_a
    }
    #[inline(always)]
    fn load_un(self, j: usize) -> f64 {
        self[j].load_un
    }
    #[inline(always)]
    fn segment(self, j: usize) -> Segment {
        self[j].segment
    }
    #[inline(always)]
    fn flags(self, j: usize) -> u8 {
        self[j].flags
    }
    #[inline(always)]
    fn touch(self, j: usize) -> u8 {
        self[j].flags
    }
}

/// Stored columns of equal length, as the quiet loop reads them: no flags (stored currents carry
/// their invalidity as NaN), unknown segment codes read as [`Segment::Settle`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ColumnInput<'a> {
    time_s: &'a [f64],
    disp_nm: &'a [f64],
    current_a: &'a [f64],
    load_un: &'a [f64],
    segment: &'a [u8],
}

impl<'a> ColumnInput<'a> {
    /// The first `n` samples of `cols` (each column must hold at least `n`).
    pub(crate) fn new(cols: crate::Columns<'a>, n: usize) -> Self {
        ColumnInput {
            time_s: &cols.time_s[..n],
            disp_nm: &cols.disp_nm[..n],
            current_a: &cols.current_a[..n],
            load_un: &cols.load_un[..n],
            segment: &cols.segment[..n],
        }
    }

    /// Sample `j` as a row, for the general path (as `detect_columns` always built them).
    #[inline]
    pub(crate) fn sample(self, j: usize) -> Sample {
        Sample {
            seq: j as u64,
            time_s: self.time_s[j],
            setpoint_un: f64::NAN,
            load_un: self.load_un[j],
            disp_nm: self.disp_nm[j],
            current_a: self.current_a[j],
            voltage_v: f64::NAN,
            segment: self.segment(j),
            flags: 0,
        }
    }
}

impl QuietInput for ColumnInput<'_> {
    #[inline(always)]
    fn len(self) -> usize {
        self.time_s.len()
    }
    #[inline(always)]
    fn range(self, start: usize, end: usize) -> Self {
        ColumnInput {
            time_s: &self.time_s[start..end],
            disp_nm: &self.disp_nm[start..end],
            current_a: &self.current_a[start..end],
            load_un: &self.load_un[start..end],
            segment: &self.segment[start..end],
        }
    }
    #[inline(always)]
    fn time_s(self, j: usize) -> f64 {
        self.time_s[j]
    }
    #[inline(always)]
    fn disp_nm(self, j: usize) -> f64 {
        self.disp_nm[j]
    }
    #[inline(always)]
    fn current_a(self, j: usize) -> f64 {
        self.current_a[j]
    }
    #[inline(always)]
    fn load_un(self, j: usize) -> f64 {
        self.load_un[j]
    }
    #[inline(always)]
    fn segment(self, j: usize) -> Segment {
        Segment::from_code(self.segment[j]).unwrap_or(Segment::Settle)
    }
    #[inline(always)]
    fn flags(self, _j: usize) -> u8 {
        0
    }
    #[inline(always)]
    fn touch(self, _j: usize) -> u8 {
        0
    }
}

impl Detector {
    /// Whether the next sample may enter the quiet loop: everything the loop takes as given.
    #[inline]
    pub(crate) fn quiet_ready(&self) -> bool {
        self.terms.is_some()
            // Detection on (the general path tests the length before the push, and it only grows).
            && self.noise.len >= self.noise_min
            && self.noise.sigma.is_finite()
            && self.windows_ready()
    }

    /// Whether the next sample may enter the quiet loop's settle variant (`SETTLE`): contact
    /// seen and a provisional reference set, the final one not yet. Such a sample only feeds
    /// the windows (nothing is detected before the reference), so it is quiet unless it is
    /// invalid or sets the reference.
    #[inline]
    pub(crate) fn settle_ready(&self) -> bool {
        self.terms.is_none()
            && self.reference.is_none()
            && self.provisional.is_some()
            && (self.contact_seen || !self.detect_contact)
            && self.pending.is_empty()
            && self.windows_ready()
    }

    /// What both variants of the quiet loop take as given of the windows: a full baseline window
    /// (its line, not its mean), a noise window past the young one (where `MedianTracker::push`
    /// refreshes σ on every push; a window still filling is fine: its empty slots are counted in
    /// a bin of their own, so a push drops one of them as it would the oldest value), no event
    /// open, the pop-in detector idle with a full history.
    #[inline]
    fn windows_ready(&self) -> bool {
        let p = &self.popin;
        self.open.is_none()
            && self.baseline.len == self.baseline.x.len()
            && self.noise.len >= self.noise.ring.len().min(YOUNG_WINDOW)
            && matches!(p.state, State::Idle)
            && p.k + 1 > 2 * p.a + p.g
    }

    /// Process the leading quiet samples of `samples` (call only when [`Self::quiet_ready`], or
    /// with `SETTLE` when [`Self::settle_ready`]), appending their Δρ/ρ (NaN before the
    /// reference, as `process` returns); returns how many were consumed. Stops before the first
    /// sample that needs the general path, untouched.
    pub(crate) fn run_quiet<I: QuietInput, const SETTLE: bool>(
        &mut self,
        samples: I,
        delta_rho_out: &mut Vec<f64>,
    ) -> usize {
        let mut done = 0;
        while done < samples.len() {
            // Stop before a held spike falls due or the baseline sums are due for their exact
            // recompute: the general path does both.
            let release_k = self.pending.first().map_or(u64::MAX, |p| p.spike.last_above_k + self.hold_samples);
            let cap = self.baseline.x.len();
            let m = (release_k.saturating_sub(self.k))
                .min((cap * RECOMPUTE_WINDOWS).saturating_sub(self.baseline.since_recompute + 1) as u64)
                .min((samples.len() - done).min(QUIET_BLOCK) as u64) as usize;
            if m == 0 {
                break;
            }
            // Monomorphised on the mains canceller and its number of sinusoids, so the block loop
            // carries no test for it and keeps the canceller's weights in registers, and on
            // whether the baseline window is contiguous (see `quiet_block`).
            // A window with a gap (an event kept samples out of it) takes the slower slope
            // (a division a sample): such a block ends where the gap has left the window, and the
            // next one runs contiguous.
            let contiguous = self.baseline_contiguous();
            let m = if contiguous { m } else { m.min(self.baseline.pushes_to_contiguity(self.k).max(1)) };
            // The contiguous variant adds the index sums' exact steps (see `quiet_block`); for
            // the rare window too long for that, the general variant is as right, and slower.
            let contiguous = contiguous && self.baseline.index_sums_exact(self.k, m);
            let block = samples.range(done, done + m);
            let ahead = samples.range(done + m, (done + 2 * m).min(samples.len()));
            let n = if contiguous {
                self.quiet_block_mains::<I, true, SETTLE>(block, ahead, delta_rho_out)
            } else {
                self.quiet_block_mains::<I, false, SETTLE>(block, ahead, delta_rho_out)
            };
            done += n;
            if n < m {
                break;
            }
        }
        self.quiet_samples += done as u64;
        done
    }

    /// Whether the baseline window holds consecutive indices that the next sample continues:
    /// quiet pushes add consecutive indices, so such a window stays contiguous for a whole block
    /// and the block's slope needs no per-sample check (the window loses contiguity only when an
    /// event keeps samples out of it).
    #[inline]
    fn baseline_contiguous(&self) -> bool {
        let line = &self.baseline;
        line.last_k - line.idx[line.head] + 1 == line.x.len() as u64 && line.last_k + 1 == self.k
    }

    /// [`Self::quiet_block`] for the canceller's number of sinusoids.
    #[inline(always)]
    fn quiet_block_mains<I: QuietInput, const CONTIG: bool, const SETTLE: bool>(
        &mut self,
        block: I,
        ahead: I,
        delta_rho_out: &mut Vec<f64>,
    ) -> usize {
        match self.mains.as_ref().map(|x| x.n) {
            None => self.quiet_block::<I, false, 1, CONTIG, SETTLE>(block, ahead, delta_rho_out),
            Some(1) => self.quiet_block::<I, true, 1, CONTIG, SETTLE>(block, ahead, delta_rho_out),
            Some(2) => self.quiet_block::<I, true, 2, CONTIG, SETTLE>(block, ahead, delta_rho_out),
            Some(3) => self.quiet_block::<I, true, 3, CONTIG, SETTLE>(block, ahead, delta_rho_out),
            Some(4) => self.quiet_block::<I, true, 4, CONTIG, SETTLE>(block, ahead, delta_rho_out),
            Some(_) => self.quiet_block::<I, true, MAX_HARMONICS, CONTIG, SETTLE>(block, ahead, delta_rho_out),
        }
    }

    /// One block of at most [`QUIET_BLOCK`] samples through the three passes; returns how many
    /// were committed. `CONTIG`: [`Self::baseline_contiguous`] holds at the block's start, and
    /// [`crate::stats::TrailingLine::index_sums_exact`] for the block: Σt then moves by exactly
    /// the window length a push, and Σt², which only a gapped window's slope reads, is brought up
    /// to date once, after the loop.
    /// `SETTLE`: before the reference ([`Self::settle_ready`]): Δρ/ρ against the provisional
    /// reference (as `process` computes it then), no pop-in or threshold test (the general path
    /// detects nothing yet), the reference window fed, NaN out, and the block ends before the
    /// sample that sets the reference.
    fn quiet_block<I: QuietInput, const MAINS: bool, const N: usize, const CONTIG: bool, const SETTLE: bool>(
        &mut self,
        block: I,
        ahead: I,
        delta_rho_out: &mut Vec<f64>,
    ) -> usize {
        // Whichever reference this variant's Δρ/ρ is relative to (the other is never read).
        let unused = RefState { strain: f64::NAN, current_a: f64::NAN };
        let (terms, provisional) = match (SETTLE, self.terms, self.provisional) {
            (false, Some(t), _) => (t, unused),
            (true, None, Some(p)) => (
                ReferenceTerms {
                    strain: f64::NAN,
                    current_a: f64::NAN,
                    inv_current_a: f64::NAN,
                    geometric_factor: f64::NAN,
                },
                p,
            ),
            _ => return 0,
        };
        let (poisson_ratio, settle_s) = (self.pillar.poisson_ratio, self.settle_s);
        let m = block.len().min(QUIET_BLOCK);
        let block = block.range(0, m);

        // What the previous block computed for these samples past the one that stopped it (an
        // event's start, typically): its passes 1 and 2 depend only on the input and on state
        // the general path leaves as it was (see `Ahead`), so they are kept, not redone.
        let k0 = self.k;
        let (kept_at, reused, reused_clear) = self.ahead.take_from(k0);
        if kept_at > 0 && reused > 0 {
            self.scratch_delta_rho.copy_within(kept_at..kept_at + reused, 0);
            self.scratch_popin_nm.copy_within(kept_at..kept_at + reused, 0);
        }

        // Pass 1: Δρ/ρ and the pop-in input, then the first sample the general path must take.
        let (inv_height_nm, elastic_nm_per_un) = (self.inv_height_nm, self.elastic_nm_per_un);
        let dr = &mut self.scratch_delta_rho[..];
        let yv = &mut self.scratch_popin_nm[..];
        let mains_dt = self.mains.as_ref().map(|mc| (mc.last_time_s, mc.dt_s));
        // Whether sample j must go to the general path: invalid, non-finite, or off the sampling
        // grid the mains phasor rotates on (a NaN step, with no previous time, is off the grid: the
        // general path re-synchronises the phasor then).
        // Non-short-circuit `|`: no branches in the hot pass.
        let (check_grid, dt) = mains_dt.map_or((false, 0.0), |(_, dt)| (true, dt));
        // Settle: the sample at or past `settle_s` sets the reference.
        let needs_general = |j: usize, prev_time_s: f64, d: f64, y: f64| {
            (block.flags(j) & FLAG_CURRENT_INVALID != 0)
                | !y.is_finite()
                | !d.is_finite()
                | (check_grid & !on_grid(block.time_s(j) - prev_time_s, dt))
                | (SETTLE & (block.time_s(j) >= settle_s))
        };
        // The same test, without the flags, in fewer operations, for the loop that only asks
        // whether there is an offender (the search below uses the exact test): x · 0 is ±0 for a
        // finite x and NaN otherwise, and |step − dt| − dt/4 is negative exactly on the grid, so
        // their sum is negative exactly when all three are fine (a sum that overflows only sends
        // the block to the search).
        let grid_slack = 0.25 * dt;
        let any_offender = |j: usize, prev_time_s: f64, d: f64, y: f64| {
            let grid = if check_grid { ((block.time_s(j) - prev_time_s) - dt).abs() - grid_slack } else { -1.0 };
            let fine = d * 0.0 + y * 0.0 + grid < 0.0;
            !fine | (SETTLE & (block.time_s(j) >= settle_s))
        };
        let fresh = reused.min(m);
        let first_prev_time_s =
            if fresh == 0 { mains_dt.map_or(f64::NAN, |(t, _)| t) } else { block.time_s(fresh - 1) };
        let mut prev_time_s = first_prev_time_s;
        let mut any_bad = false;
        let mut any_flags = 0u8;
        for j in fresh..m {
            let disp_nm = block.disp_nm(j);
            dr[j] = if SETTLE {
                resistivity_change(
                    disp_nm * inv_height_nm,
                    provisional.strain,
                    block.current_a(j),
                    provisional.current_a,
                    poisson_ratio,
                )
            } else {
                terms.delta_rho(disp_nm * inv_height_nm, block.current_a(j))
            };
            yv[j] = disp_nm - elastic_nm_per_un * block.load_un(j);
            // Accumulated without a branch; the first offender is searched for only if there is one.
            any_bad |= any_offender(j, prev_time_s, dr[j], yv[j]);
            any_flags |= block.flags(j);
            prev_time_s = block.time_s(j);
        }
        any_bad |= any_flags & FLAG_CURRENT_INVALID != 0;
        let mut m1 = m;
        if any_bad {
            let mut prev_time_s = first_prev_time_s;
            for j in fresh..m {
                if needs_general(j, prev_time_s, dr[j], yv[j]) {
                    m1 = j;
                    break;
                }
                prev_time_s = block.time_s(j);
            }
        }
        let (dr, yv) = (&self.scratch_delta_rho[..m], &self.scratch_popin_nm[..m]);

        // Pass 2: pop-in windows (idle). Ring writes run ahead; `total`/`k` are committed below.
        let pop = &mut self.popin;
        let (a, g, mask, inv_a, popin_threshold) = (pop.a, pop.g, pop.mask, pop.inv_a, pop.threshold_nm);
        let refractory_until = pop.refractory_until;
        let (total_before, pk_before) = (pop.total, pop.k);
        let cleared = reused_clear.min(m1);
        // The kept samples' ring slots hold their cumulative sums already.
        let mut total =
            if cleared == 0 { total_before } else { pop.slots[(pk_before + cleared as u64 - 1) as usize & mask].csum };
        let mut m2 = m1;
        {
            // Runs of samples in which none of the four ring positions a sample touches (its own
            // slot and the three window edges it reads) wraps: inside one, each position is a
            // fixed slice indexed by the sample, so the loop computes one offset for all four
            // instead of masking and scaling each. The edges read slots this pass wrote (a pop-in
            // window is shorter than a block), so the slices alias: cells.
            let ring_len = mask + 1;
            let slots = Cell::from_mut(&mut pop.slots[..ring_len]).as_slice_of_cells();
            // The first sample past the refractory period, counted from the block's start: runs
            // also end there, so that each run either tests every sample for a jump or none.
            let refractory_j = refractory_until.saturating_sub(pk_before);
            let mut j = cleared;
            while j < m1 {
                let i = pk_before + j as u64;
                let at = |back: u64| (i - back) as usize & mask;
                let (own, post_start, pre_end, pre_start) = (at(0), at(a), at(a + g), at(2 * a + g));
                let before_refractory_end = (j as u64) < refractory_j;
                let n = (m1 - j)
                    .min(ring_len - own)
                    .min(ring_len - post_start)
                    .min(ring_len - pre_end)
                    .min(ring_len - pre_start)
                    .min(if before_refractory_end { (refractory_j - j as u64) as usize } else { usize::MAX });
                let edges = RunEdges {
                    own: &slots[own..own + n],
                    post_start: &slots[post_start..post_start + n],
                    pre_end: &slots[pre_end..pre_end + n],
                    pre_start: &slots[pre_start..pre_start + n],
                };
                let (run, run_y) = (block.range(j, j + n), &yv[j..j + n]);
                // Before the reference the general path only stores the samples.
                let done = if SETTLE || before_refractory_end {
                    popin_run::<I, false>(run, run_y, edges, &mut total, inv_a, popin_threshold)
                } else {
                    popin_run::<I, true>(run, run_y, edges, &mut total, inv_a, popin_threshold)
                };
                if done < n {
                    m2 = j + done;
                    break;
                }
                j += n;
            }
        }
        // Nothing is kept of a settle block: its Δρ/ρ is against the provisional reference.
        self.ahead = if SETTLE {
            Ahead::default()
        } else {
            Ahead { k: k0, good: if m <= reused { reused } else { m1 }, cleared: m2.max(reused_clear) }
        };

        // Pass 3: baseline, mains, threshold, noise.
        let (threshold_sigma, min_magnitude) = (self.threshold_sigma, self.min_magnitude);
        let line = &mut self.baseline;
        let cap = line.x.len();
        let n_line = line.len as f64;
        let (inv_cap, inv_den, origin) = (line.inv_cap, line.inv_denominator_contiguous, line.origin);
        let (mut s_t, mut s_tt, mut s_x, mut s_tx) = (line.s_t, line.s_tt, line.s_x, line.s_tx);
        let (mut l_head, mut last_k) = (line.head, line.last_k);
        let (lx, lidx) = (&mut line.x[..], &mut line.idx[..]);
        let noise = &mut self.noise;
        let noise_len = noise.len;
        let ring = &mut noise.ring[..];
        // Fixed length: indexing with a u16 bin is provably in bounds.
        let Ok(counts) = <&mut [u32; COUNT_SLOTS]>::try_from(&mut noise.counts[..]) else { return 0 };
        let n_ring = ring.len();
        let (mut n_head, mut median_bin, mut below) = (noise.head, noise.median_bin, noise.below);
        let (mut sigma, mut since_refresh) = (noise.sigma, noise.since_refresh);
        // The start threshold only moves when σ is refreshed.
        let mut on = (threshold_sigma * sigma).max(min_magnitude);
        // The canceller's state in locals (as `MainsCanceller`): the rotating weights and their
        // one-sample rotations for the first `N` sinusoids. `N` is the canceller's own count when
        // at most 4 (the loops unroll), else the array size with the count at run time.
        let (mu, n_sin) = self.mains.as_ref().map_or((0.0, 0), |x| (x.mu, x.n.min(N)));
        // Below the array size `N` *is* the count (`run_quiet` dispatches on it): a constant, so
        // the rotation, prediction and update loops unroll with no loop control.
        let n_sin = if N < MAX_HARMONICS { N } else { n_sin };
        let (mut zr, mut zi, mut rc, mut rs) = ([0.0f64; N], [0.0f64; N], [1.0f64; N], [0.0f64; N]);
        if let Some(x) = &self.mains {
            zr.copy_from_slice(&x.zr[..N]);
            zi.copy_from_slice(&x.zi[..N]);
            rc.copy_from_slice(&x.rot_c[..N]);
            rs.copy_from_slice(&x.rot_s[..N]);
        }
        let res = &mut self.scratch_residual[..m];
        let mut noise_prev = self.noise_prev;
        let mut m3 = m2;
        let mut touched = 0u8;
        let cap_f = cap as f64;
        // The offset of sample k from the sums' origin (as `offset(k, origin)`), counted up in
        // f64: integers far below 2⁵³, so every step is exact and gives the same bits as the
        // conversion, without one per sample.
        let mut t = offset(k0, origin);
        // Segments in which neither ring wraps: inside one, every ring access is a slice index
        // the compiler can check once, and the heads advance by the segment length.
        let mut j0 = 0;
        while j0 < m2 {
            let seg = (m2 - j0).min(n_ring - n_head).min(cap - l_head);
            let noise_slots = &mut ring[n_head..n_head + seg];
            let line_x = &mut lx[l_head..l_head + seg];
            let line_idx = &mut lidx[l_head..l_head + seg];
            let seg_dr = &dr[j0..j0 + seg];
            let seg_res = &mut res[j0..j0 + seg];
            // The next block's samples that this segment reads ahead (see below).
            // Where the input ends before the next block does, the segment reads its own
            // samples instead (in cache already), so every read is in bounds without a test.
            let seg_ahead = if j0 + seg <= ahead.len() { ahead.range(j0, j0 + seg) } else { block.range(j0, j0 + seg) };
            let mut accepted = seg;
            // Groups that end where σ is due for its refresh: the refresh follows the group, at
            // the same sample as in `MedianTracker::push`, and the loop carries no counter.
            let mut g0 = 0;
            'seg: while g0 < seg {
                let g1 = (g0 + SIGMA_REFRESH.saturating_sub(since_refresh).max(1) as usize).min(seg);
                for jj in g0..g1 {
                    let delta_rho = seg_dr[jj];
                    let j = j0 + jj;
                    // Read the next block's sample j now, one a sample at this loop's pace, so that
                    // the hardware prefetcher streams it in ahead of pass 1 (which would otherwise
                    // take every miss of the block in a burst). Safe code has no prefetch instruction.
                    touched ^= seg_ahead.touch(jj);
                    let k = k0 + j as u64;
                    // Mains weights at this sample (as `MainsCanceller::advance` on the grid).
                    let (mut nzr, mut nzi) = (zr, zi);
                    if MAINS {
                        crate::mains::rotate(&mut nzr, &mut nzi, &rc, &rs, n_sin);
                    }
                    // Residual against the baseline line extrapolated to k (as `TrailingLine::value_at`).
                    let mean_x = s_x * inv_cap;
                    let mean_t = s_t * inv_cap;
                    let numerator = n_line * s_tx - s_t * s_x;
                    let slope = if CONTIG || last_k - line_idx[jj] + 1 == cap as u64 {
                        numerator * inv_den
                    } else {
                        numerator / (n_line * s_tt - s_t * s_t)
                    };
                    let r0 = delta_rho - (mean_x + slope * (t - mean_t));
                    // As `MainsCanceller::predict`.
                    let predicted = if MAINS { crate::mains::predict(&nzr, n_sin) } else { 0.0 };
                    let residual = r0 - predicted;
                    if !SETTLE && residual.abs() > on {
                        accepted = jj;
                        // The group's committed samples (fewer than a refresh needs).
                        since_refresh += (jj - g0) as u32;
                        break 'seg;
                    }
                    // Quiet: commit, in the general path's order. Mains advance.
                    (zr, zi) = (nzr, nzi);
                    // Baseline push (as `TrailingLine::push` on a full window, before its recompute).
                    // Contiguous: the oldest index is exactly k − cap (integers, exact in f64).
                    let t_old = if CONTIG { t - cap_f } else { offset(line_idx[jj], origin) };
                    let x_old = line_x[jj];
                    if CONTIG {
                        // (Σt − (t − cap)) + t, exactly (`index_sums_exact`); Σt² after the loop.
                        s_t += cap_f;
                    } else {
                        s_t -= t_old;
                        s_tt -= t_old * t_old;
                    }
                    s_x -= x_old;
                    s_tx -= t_old * x_old;
                    // The slot's new value and index are written after the segment (below); only a
                    // gapped window reads the newest index here.
                    if !CONTIG {
                        last_k = k;
                        s_t += t;
                        s_tt += t * t;
                    }
                    s_x += delta_rho;
                    s_tx += t * delta_rho;
                    t += 1.0;
                    // Noise push (as `MedianTracker::push` on a full window). Branch-free `below` updates: half the
                    // values lie below the median bin, so a branch on it would be mispredicted half
                    // the time.
                    let old = noise_slots[jj] as usize;
                    counts[old] -= 1;
                    let leaving_below = usize::from(old < median_bin);
                    let b = MedianTracker::bin_of(crate::noise_step(residual, noise_prev));
                    noise_prev = residual;
                    noise_slots[jj] = b as u16;
                    counts[b] += 1;
                    below = below + usize::from(b < median_bin) - leaving_below;
                    // Mains learn (as `MainsCanceller::learn`, whose error r0 − predict() is the
                    // residual: the same operations on the same values).
                    if MAINS {
                        let step = mu * residual;
                        for z in zr.iter_mut().take(n_sin) {
                            *z += step;
                        }
                    }
                    seg_res[jj] = residual;
                }
                since_refresh += (g1 - g0) as u32;
                if since_refresh >= SIGMA_REFRESH {
                    since_refresh = 0;
                    // The window's length after the group's last push (it may still be filling).
                    let len = (noise_len + j0 + g1).min(n_ring);
                    (median_bin, below, sigma) = median_refresh(&counts[..], len, median_bin, below);
                    on = (threshold_sigma * sigma).max(min_magnitude);
                }
                g0 = g1;
            }
            // The baseline ring's slots of the accepted samples: each slot was read (as the value
            // leaving) once above, before this write, as in `TrailingLine::push`. Out of the loop,
            // so that it holds two pointers and an index fewer.
            line_x[..accepted].copy_from_slice(&seg_dr[..accepted]);
            for (jj, idx) in line_idx[..accepted].iter_mut().enumerate() {
                *idx = k0 + (j0 + jj) as u64;
            }
            if accepted > 0 {
                last_k = k0 + (j0 + accepted - 1) as u64;
            }
            j0 += accepted;
            n_head = if n_head + accepted == n_ring { 0 } else { n_head + accepted };
            l_head = if l_head + accepted == cap { 0 } else { l_head + accepted };
            if accepted < seg {
                m3 = j0;
                break;
            }
        }

        // The reads above must happen.
        std::hint::black_box(touched);
        // Pass 4: the smoother's push and learn (as in `Detector::track` for a quiet sample).
        // Nothing in pass 3 reads it, so it runs on its own, with its state in registers and
        // none of pass 3's (pass 3 ran out of registers with it inside).
        if let Some(sm) = self.smooth.as_mut() {
            sm.push_learn_quiet(&self.scratch_residual[..m3]);
        }
        // Commit the first m3 samples.
        if CONTIG {
            // Σ over the pushes of t² − (t − cap)² = 2·cap·t − cap², for t = t0 … t0 + m3 − 1:
            // integers, exact in i128, and the sum below 2⁵³ (`index_sums_exact`), so s_tt
            // takes the bits the per-push updates would have given it.
            let (t0, c, n) = (i128::from(k0.wrapping_sub(origin) as i64), cap as i128, m3 as i128);
            s_tt += (n * (2 * c * t0 - c * c) + c * n * (n - 1)) as f64;
        }
        let line = &mut self.baseline;
        (line.s_t, line.s_tt, line.s_x, line.s_tx) = (s_t, s_tt, s_x, s_tx);
        (line.head, line.last_k) = (l_head, last_k);
        line.since_recompute += m3;
        let noise = &mut self.noise;
        (noise.head, noise.len, noise.median_bin, noise.below, noise.sigma, noise.since_refresh) =
            (n_head, (noise_len + m3).min(n_ring), median_bin, below, sigma, since_refresh);
        self.noise_prev = noise_prev;
        let pop = &mut self.popin;
        pop.k = pk_before + m3 as u64;
        pop.total = if m3 == 0 { total_before } else { pop.slots[(pop.k - 1) as usize & mask].csum };
        if m3 > 0 {
            let last = m3 - 1;
            let last_time_s = block.time_s(last);
            if let Some(x) = self.mains.as_mut() {
                x.zr[..N].copy_from_slice(&zr);
                x.zi[..N].copy_from_slice(&zi);
                x.last_time_s = last_time_s;
            }
            self.prev.time_s = last_time_s;
            self.prev.load_un = block.load_un(last);
            self.prev.segment = block.segment(last);
            // The last committed residual.
            self.prev.residual = noise_prev;
        }
        self.k = k0 + m3 as u64;
        if SETTLE {
            // The reference window (as `process` stores each sample before the reference) and
            // the NaN that `process` returns then.
            self.store_reference_window(block.range(0, m3));
            delta_rho_out.resize(delta_rho_out.len() + m3, f64::NAN);
        } else {
            delta_rho_out.extend_from_slice(&self.scratch_delta_rho[..m3]);
        }
        m3
    }

    /// Each sample's (strain, current) into the reference window, in order, as `process` stores
    /// them before the reference: samples the general path would take as valid (no invalid flag).
    #[inline]
    pub(crate) fn store_reference_window<I: QuietInput>(&mut self, samples: I) {
        let (len, inv_height_nm) = (self.ref_ring.len(), self.inv_height_nm);
        let mut j = 0;
        while j < samples.len() {
            // Runs up to the ring's end: a slice, no wrap test a sample.
            let n = (samples.len() - j).min(len - self.ref_head);
            for (jj, slot) in self.ref_ring[self.ref_head..self.ref_head + n].iter_mut().enumerate() {
                *slot = [samples.disp_nm(j + jj) * inv_height_nm, samples.current_a(j + jj)];
            }
            self.ref_head = if self.ref_head + n == len { 0 } else { self.ref_head + n };
            j += n;
        }
        if self.contact_seen || !self.detect_contact {
            self.ref_available = (self.ref_available + samples.len()).min(len);
        }
    }
}

/// The four pop-in ring positions of a run of samples in pass 2 (see `quiet_block`), each a
/// slice indexed by the sample: its own slot and the three window edges it reads.
#[derive(Clone, Copy)]
struct RunEdges<'a> {
    own: &'a [Cell<Slot>],
    post_start: &'a [Cell<Slot>],
    pre_end: &'a [Cell<Slot>],
    pre_start: &'a [Cell<Slot>],
}

/// Pass 2 over one run: each sample's pop-in windows (as `PopinDetector::push` then `step` when
/// idle), storing its slot, up to the first sample whose jump opens a pop-in when `CHECK` (left
/// unstored); returns how many were stored. `total` is the cumulative sum before the run, then
/// after its last stored sample.
#[inline(always)]
fn popin_run<I: QuietInput, const CHECK: bool>(
    run: I,
    y: &[f64],
    edges: RunEdges<'_>,
    total: &mut f64,
    inv_a: f64,
    threshold_nm: f64,
) -> usize {
    let n = y.len();
    // Equal lengths, stated so that the loop carries no bounds check.
    let (own, post_start, pre_end, pre_start) =
        (&edges.own[..n], &edges.post_start[..n], &edges.pre_end[..n], &edges.pre_start[..n]);
    let run = run.range(0, n);
    let mut sum = *total;
    for jj in 0..n {
        let y_nm = y[jj];
        let new_total = sum + y_nm;
        if CHECK {
            let post = (new_total - post_start[jj].get().csum) * inv_a;
            let pre = (pre_end[jj].get().csum - pre_start[jj].get().csum) * inv_a;
            if post - pre > threshold_nm {
                *total = sum;
                return jj;
            }
        }
        sum = new_total;
        own[jj].set(Slot {
            csum: sum,
            y_nm,
            time_s: run.time_s(jj),
            load_un: run.load_un(jj),
            segment: run.segment(jj),
        });
    }
    *total = sum;
    n
}

/// Passes 1 and 2 of the last quiet block, kept in the scratch columns for the samples after the
/// one that stopped the block, so the next block need not redo them (an event stops ≈ a quarter
/// of the 1 kHz samples' blocks halfway). Pass 1 (Δρ/ρ, the pop-in input, validity) reads only the
/// input and the reference, which stays set. Pass 2's verdict — no pop-in jump — holds because the
/// general path, pushing the same values in between, finds the same sums and the same jump, so
/// the pop-in state stays idle and the refractory limit stays put; the ring slots it wrote for the
/// kept samples hold what the general path would write there. All of it lies inside one
/// `process_slice` call, which resets it on entry.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ahead {
    /// Detector index of the scratch columns' slot 0.
    pub(crate) k: u64,
    /// Slots `0..good` hold pass 1's results for samples the quiet loop may take.
    pub(crate) good: usize,
    /// Slots `0..cleared` (≤ `good`) passed pass 2, and their pop-in ring slots are written.
    pub(crate) cleared: usize,
}

impl Ahead {
    /// For a block starting at detector index `k`: the slot that holds sample `k`, and how many
    /// samples from it on pass 1 and pass 2 need not redo (both 0 when nothing is kept of it).
    #[inline]
    fn take_from(self, k: u64) -> (usize, usize, usize) {
        match k.checked_sub(self.k) {
            Some(o) if o < self.good as u64 => {
                let o = o as usize;
                (o, self.good - o, self.cleared.saturating_sub(o))
            }
            _ => (0, 0, 0),
        }
    }
}

/// Whether a time step is the sampling period, within a quarter of it (as
/// `MainsCanceller::advance` decides); false for a NaN step.
#[inline(always)]
pub(crate) fn on_grid(step_s: f64, dt_s: f64) -> bool {
    (step_s - dt_s).abs() < 0.25 * dt_s
}
