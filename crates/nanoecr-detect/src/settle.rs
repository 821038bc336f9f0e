//! The block loop behind [`Detector::process_slice`] before Ohmic contact.
//!
//! Until the current is steady the detector only stores: each sample goes into the pop-in
//! history and the reference window, the contact detector's window and the mains canceller's
//! phase, and `process` returns NaN. As a per-sample call that cost ≈ 200 instructions (the state
//! reloaded and stored each time, the canceller's rotation a loop over a run-time count), and at
//! 100 kHz the bench's simulated contact comes at 1.32 s: 4.4 % of a 30 s run. Here blocks of up
//! to [`QUIET_BLOCK`] samples go through three short passes:
//!
//! 1. the first sample the general path must take (an invalid or non-finite current, which
//!    restarts the contact window; a non-finite displacement, which the pop-in history repeats;
//!    a time off the canceller's sampling grid);
//! 2. the contact detector ([`ContactDetector::push_quiet`]), stopping before the sample that
//!    declares contact (the general path sets the provisional reference there);
//! 3. the stores, for the samples that passed both.
//!
//! The same operations in the same order as the general path, so the results are bit-identical
//! (`tests/slice.rs`, `tests/columns.rs`). After contact the settle variant of the quiet loop
//! (`quiet.rs`, `SETTLE`) takes over.

use nanoecr_core::sample::FLAG_CURRENT_INVALID;

use crate::mains::MAX_HARMONICS;
use crate::popin::Slot;
use crate::quiet::{on_grid, QuietInput, QUIET_BLOCK};
use crate::Detector;

impl Detector {
    /// Whether the next sample may enter the pre-contact loop: no reference, contact sought and
    /// not seen yet, its window full.
    #[inline]
    pub(crate) fn precontact_ready(&self) -> bool {
        self.terms.is_none() && self.detect_contact && !self.contact_seen && self.contact.is_full()
    }

    /// Process the leading pre-contact samples of `samples` (call only when
    /// [`Self::precontact_ready`]), appending a NaN Δρ/ρ for each; returns how many were
    /// consumed. Stops before the first sample that needs the general path, untouched. Out of
    /// line: it runs once per stretch of samples, and its registers are allocated apart.
    #[inline(never)]
    pub(crate) fn run_precontact<I: QuietInput>(&mut self, samples: I, delta_rho_out: &mut Vec<f64>) -> usize {
        let mut done = 0;
        while done < samples.len() {
            let m = (samples.len() - done).min(QUIET_BLOCK);
            let block = samples.range(done, done + m);
            // Monomorphised on the canceller's number of sinusoids (its rotation unrolls).
            let n = match self.mains.as_ref().map(|x| x.n) {
                None => self.precontact_block::<I, false, 1>(block, delta_rho_out),
                Some(1) => self.precontact_block::<I, true, 1>(block, delta_rho_out),
                Some(2) => self.precontact_block::<I, true, 2>(block, delta_rho_out),
                Some(3) => self.precontact_block::<I, true, 3>(block, delta_rho_out),
                Some(4) => self.precontact_block::<I, true, 4>(block, delta_rho_out),
                Some(_) => self.precontact_block::<I, true, MAX_HARMONICS>(block, delta_rho_out),
            };
            done += n;
            if n < m {
                break;
            }
        }
        self.quiet_samples += done as u64;
        done
    }

    /// One block of at most [`QUIET_BLOCK`] samples; returns how many were committed.
    fn precontact_block<I: QuietInput, const MAINS: bool, const N: usize>(
        &mut self,
        block: I,
        delta_rho_out: &mut Vec<f64>,
    ) -> usize {
        let m = block.len().min(QUIET_BLOCK);
        let elastic_nm_per_un = self.elastic_nm_per_un;

        // Pass 1: the pop-in input and the first sample the general path must take.
        let yv = &mut self.scratch_popin_nm[..m];
        let mains_dt = self.mains.as_ref().map(|mc| (mc.last_time_s, mc.dt_s));
        let (check_grid, dt) = mains_dt.map_or((false, 0.0), |(_, dt)| (true, dt));
        let needs_general = |j: usize, prev_time_s: f64, y: f64| {
            (block.flags(j) & FLAG_CURRENT_INVALID != 0)
                | !block.current_a(j).is_finite()
                | !y.is_finite()
                | (check_grid & !on_grid(block.time_s(j) - prev_time_s, dt))
        };
        let first_prev_time_s = mains_dt.map_or(f64::NAN, |(t, _)| t);
        let mut prev_time_s = first_prev_time_s;
        let mut any_bad = false;
        for (j, y) in yv.iter_mut().enumerate() {
            *y = block.disp_nm(j) - elastic_nm_per_un * block.load_un(j);
            any_bad |= needs_general(j, prev_time_s, *y);
            prev_time_s = block.time_s(j);
        }
        let mut m1 = m;
        if any_bad {
            let mut prev_time_s = first_prev_time_s;
            for (j, &y) in yv.iter().enumerate() {
                if needs_general(j, prev_time_s, y) {
                    m1 = j;
                    break;
                }
                prev_time_s = block.time_s(j);
            }
        }

        // Pass 2: the contact window, up to the sample that declares contact.
        let m2 = self.contact.push_quiet(m1, |j| block.current_a(j));

        // Pass 3: the stores of `process` before contact, for the first m2 samples.
        let pop = &mut self.popin;
        let mask = pop.mask;
        let mut total = pop.total;
        for (j, &y_nm) in self.scratch_popin_nm[..m2].iter().enumerate() {
            total += y_nm;
            pop.slots[(pop.k + j as u64) as usize & mask] = Slot {
                csum: total,
                y_nm,
                time_s: block.time_s(j),
                load_un: block.load_un(j),
                segment: block.segment(j),
            };
        }
        pop.total = total;
        pop.k += m2 as u64;
        self.store_reference_window(block.range(0, m2));
        if m2 > 0 {
            let last = m2 - 1;
            if let Some(x) = self.mains.as_mut() {
                if MAINS {
                    // As `MainsCanceller::advance` on the grid, once a sample.
                    let (mut zr, mut zi, mut rc, mut rs) = ([0.0f64; N], [0.0f64; N], [1.0f64; N], [0.0f64; N]);
                    zr.copy_from_slice(&x.zr[..N]);
                    zi.copy_from_slice(&x.zi[..N]);
                    rc.copy_from_slice(&x.rot_c[..N]);
                    rs.copy_from_slice(&x.rot_s[..N]);
                    let n_sin = if N < MAX_HARMONICS { N } else { x.n.min(N) };
                    for _ in 0..m2 {
                        crate::mains::rotate(&mut zr, &mut zi, &rc, &rs, n_sin);
                    }
                    x.zr[..N].copy_from_slice(&zr);
                    x.zi[..N].copy_from_slice(&zi);
                }
                x.last_time_s = block.time_s(last);
            }
            self.prev.time_s = block.time_s(last);
            self.prev.load_un = block.load_un(last);
            self.prev.segment = block.segment(last);
            self.prev.residual = f64::NAN;
        }
        self.k += m2 as u64;
        delta_rho_out.resize(delta_rho_out.len() + m2, f64::NAN);
        m2
    }
}
