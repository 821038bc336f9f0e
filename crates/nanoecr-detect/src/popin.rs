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

#[derive(Debug, Clone, Copy)]
enum State {
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
    a: u64,
    g: u64,
    mask: usize,
    threshold_nm: f64,
    /// 1/a: a multiplication per window mean instead of a division.
    inv_a: f64,
    dt_s: f64,
    csum: Vec<f64>,
    y: Vec<f64>,
    time_s: Vec<f64>,
    load_un: Vec<f64>,
    segment: Vec<Segment>,
    /// Number of samples pushed; the newest has index `k − 1`.
    k: u64,
    total: f64,
    state: State,
    refractory_until: u64,
}

impl PopinDetector {
    pub(crate) fn new(window: usize, gap: usize, threshold_nm: f64, dt_s: f64) -> Self {
        let a = window.max(2) as u64;
        let g = gap.max(1) as u64;
        // The onset scan reaches back 2(a + g) samples from the newest one.
        let len = (3 * (2 * a + g) as usize + 8).next_power_of_two();
        Self {
            a,
            g,
            mask: len - 1,
            threshold_nm,
            inv_a: 1.0 / a as f64,
            dt_s,
            csum: vec![0.0; len],
            y: vec![0.0; len],
            time_s: vec![0.0; len],
            load_un: vec![0.0; len],
            segment: vec![Segment::Settle; len],
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
            self.y[(self.k as usize - 1) & self.mask]
        } else {
            0.0
        };
        self.total += y_nm;
        self.csum[i] = self.total;
        self.y[i] = y_nm;
        self.time_s[i] = time_s;
        self.load_un[i] = load_un;
        self.segment[i] = segment;
        self.k += 1;
    }

    #[inline]
    fn c(&self, idx: u64) -> f64 {
        self.csum[idx as usize & self.mask]
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
            (from..end)
                .find(|&j| self.y[j as usize & self.mask] > level && self.y[(j + 1) as usize & self.mask] > level)
        };
        let i25 = crossing(start, pre_mean_nm + 0.25 * jump_nm).unwrap_or(start);
        let i75 = crossing(i25, pre_mean_nm + 0.75 * jump_nm).unwrap_or(i25);
        let width = i75 - i25;
        let onset_k = i25.saturating_sub(width / 2).max(start);
        let duration_samples = (2 * width).clamp(1, self.g);
        let at = onset_k as usize & self.mask;
        PopinFound {
            onset_k,
            onset_time_s: self.time_s[at],
            duration_s: duration_samples as f64 * self.dt_s,
            jump_nm,
            segment: self.segment[at],
            load_un: self.load_un[at],
        }
    }
}
