//! Displacement pop-in detection: a jump of the de-trended displacement between two short windows.

use nanoecr_core::Segment;

/// A pop-in found in the displacement, before linking with a resistivity spike.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PopinFound {
    /// Sample index (detector count) of the estimated onset.
    pub(crate) onset_k: u64,
    pub(crate) onset_time_s: f64,
    pub(crate) duration_s: f64,
    pub(crate) jump_nm: f64,
    pub(crate) segment: Segment,
    pub(crate) load_un: f64,
}

/// What the pop-in detector keeps of one sample.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Cumulative sum of the de-trended displacement up to and including this sample, nm.
    pub(crate) csum: f64,
    /// De-trended displacement, nm.
    pub(crate) y_nm: f64,
    pub(crate) time_s: f64,
    pub(crate) load_un: f64,
    pub(crate) segment: Segment,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum State {
    Idle,
    Open { first_k: u64, max_jump_nm: f64, k_max: u64, pre_mean_nm: f64 },
}

/// Compares the mean of the last `a` samples with the mean of `a` samples ending `g` samples
/// earlier, where `g` covers the longest pop-in: a jump of any allowed duration that lies in the
/// gap shows at full size, while per-sample displacement noise (0.1–0.5 nm) is averaged down by
/// √(a/2). The input is displacement minus the elastic response to the measured load, so the
/// load ramp does not read as a jump. Window sums come from a ring of cumulative sums: O(1).
#[derive(Debug, Clone)]
pub(crate) struct PopinDetector {
    pub(crate) a: u64,
    pub(crate) g: u64,
    pub(crate) mask: usize,
    pub(crate) threshold_nm: f64,
    /// 1/a: a multiplication per window mean instead of a division.
    pub(crate) inv_a: f64,
    pub(crate) dt_s: f64,
    /// One slot per sample, indexed by `k & mask`: a single array, so a push is one bounds
    /// check and one base address for all five values.
    pub(crate) slots: Vec<Slot>,
    /// Number of samples pushed; the newest has index `k − 1`.
    pub(crate) k: u64,
    pub(crate) total: f64,
    pub(crate) state: State,
    pub(crate) refractory_until: u64,
}

impl PopinDetector {
    pub(crate) fn new(window: usize, gap: usize, threshold_nm: f64, dt_s: f64) -> Self {
        let a = window.max(2) as u64;
        let g = gap.max(1) as u64;
        // The onset scan reaches back 2(a + g) samples from the newest one; the quiet loop may
        // write up to QUIET_BLOCK samples ahead of what it commits (see quiet.rs).
        let len = (3 * (2 * a + g) as usize + 8 + crate::quiet::QUIET_BLOCK).next_power_of_two();
        Self {
            a,
            g,
            mask: len - 1,
            threshold_nm,
            inv_a: 1.0 / a as f64,
            dt_s,
            slots: vec![Slot { csum: 0.0, y_nm: 0.0, time_s: 0.0, load_un: 0.0, segment: Segment::Settle }; len],
            k: 0,
            total: 0.0,
            state: State::Idle,
            refractory_until: 0,
        }
    }

    /// Samples a pop-in needs after its onset to be found and sized: the longest jump, the
    /// window after it and one sample.
    pub(crate) fn latency_samples(&self) -> u64 {
        self.g + self.a + 1
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Store one sample. A non-finite displacement repeats the previous value so the cumulative
    /// sums stay usable.
    #[inline]
    pub(crate) fn push(&mut self, y_nm: f64, time_s: f64, load_un: f64, segment: Segment) {
        let i = self.k as usize & self.mask;
        let y_nm = if y_nm.is_finite() {
            y_nm
        } else if self.k > 0 {
            self.slots[(self.k as usize - 1) & self.mask].y_nm
        } else {
            0.0
        };
        self.total += y_nm;
        self.slots[i] = Slot { csum: self.total, y_nm, time_s, load_un, segment };
        self.k += 1;
    }

    #[inline]
    fn c(&self, idx: u64) -> f64 {
        self.slots[idx as usize & self.mask].csum
    }

    /// Advance the state machine after a push; returns a pop-in when one is complete.
    #[inline]
    pub(crate) fn step(&mut self) -> Option<PopinFound> {
        let (a, g) = (self.a, self.g);
        if self.k < 2 * a + g + 1 {
            return None;
        }
        let i = self.k - 1;
        let post = (self.c(i) - self.c(i - a)) * self.inv_a;
        let pre = (self.c(i - a - g) - self.c(i - 2 * a - g)) * self.inv_a;
        let jump = post - pre;
        match self.state {
            State::Idle => {
                if i >= self.refractory_until && jump > self.threshold_nm {
                    self.state = State::Open { first_k: i, max_jump_nm: jump, k_max: i, pre_mean_nm: pre };
                }
                None
            }
            State::Open { first_k, max_jump_nm, k_max, pre_mean_nm } => {
                let (max_jump_nm, k_max, pre_mean_nm) =
                    if jump > max_jump_nm { (jump, i, pre) } else { (max_jump_nm, k_max, pre_mean_nm) };
                if jump < self.threshold_nm || i - first_k >= g + a {
                    Some(self.close(i, max_jump_nm, k_max, pre_mean_nm))
                } else {
                    self.state = State::Open { first_k, max_jump_nm, k_max, pre_mean_nm };
                    None
                }
            }
        }
    }

    /// End of data: size an open pop-in with what has been seen.
    pub(crate) fn flush(&mut self) -> Option<PopinFound> {
        match self.state {
            State::Open { max_jump_nm, k_max, pre_mean_nm, .. } => {
                Some(self.close(self.k - 1, max_jump_nm, k_max, pre_mean_nm))
            }
            State::Idle => None,
        }
    }

    /// Locate the jump inside the gap of the best window pair (k_max) from its 25 % and 75 %
    /// crossings, which a linear ramp of any duration puts a quarter and three quarters in.
    /// Runs once per pop-in, O(gap).
    fn close(&mut self, i: u64, jump_nm: f64, k_max: u64, pre_mean_nm: f64) -> PopinFound {
        self.state = State::Idle;
        self.refractory_until = i + self.a + self.g;
        let start = k_max + 1 - self.a - self.g;
        let end = k_max;
        let crossing = |from: u64, level: f64| -> Option<u64> {
            // Two consecutive samples above the level: one noisy sample does not count.
            (from..end).find(|&j| {
                self.slots[j as usize & self.mask].y_nm > level && self.slots[(j + 1) as usize & self.mask].y_nm > level
            })
        };
        let i25 = crossing(start, pre_mean_nm + 0.25 * jump_nm).unwrap_or(start);
        let i75 = crossing(i25, pre_mean_nm + 0.75 * jump_nm).unwrap_or(i25);
        let width = i75 - i25;
        let onset_k = i25.saturating_sub(width / 2).max(start);
        let duration_samples = (2 * width).clamp(1, self.g);
        let at = onset_k as usize & self.mask;
        PopinFound {
            onset_k,
            onset_time_s: self.slots[at].time_s,
            duration_s: duration_samples as f64 * self.dt_s,
            jump_nm,
            segment: self.slots[at].segment,
            load_un: self.slots[at].load_un,
        }
    }
}
