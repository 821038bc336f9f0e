//! Ohmic-contact detection from the current.

/// Ohmic contact is declared when the current over a short window is steady: its relative scatter
/// (standard deviation over |mean|) is at most `max_rel_scatter`.
///
/// Before Ohmic contact the punch rests on asperities: the current is a small fraction of the
/// contact value that jumps as the contact rearranges and flickers by percents, while the
/// established contact carries ~10⁻⁴ relative noise. Relative scatter separates the two by two
/// orders of magnitude and needs no prior knowledge of the contact current.
///
/// A check that the level is also well above earlier values was tried on paper and left out:
/// windows straddling the transition have intermediate means, so any "largest earlier level"
/// can end up close to the contact level and block detection for the rest of the run, which
/// would leave the whole run without a reference.
#[derive(Debug, Clone)]
pub(crate) struct ContactDetector {
    ring: Vec<f64>,
    head: usize,
    len: usize,
    /// Sums are of (x − pivot): near the window mean, so the variance does not cancel.
    pivot: f64,
    sum: f64,
    sum_sq: f64,
    since_recompute: usize,
    max_rel_scatter: f64,
}

impl ContactDetector {
    pub(crate) fn new(window: usize, max_rel_scatter: f64) -> Self {
        let window = window.max(2);
        Self {
            ring: vec![0.0; window],
            head: 0,
            len: 0,
            pivot: f64::NAN,
            sum: 0.0,
            sum_sq: 0.0,
            since_recompute: 0,
            max_rel_scatter,
        }
    }

    /// Feed one current reading; `true` when the last `window` readings show Ohmic contact.
    pub(crate) fn push(&mut self, current_a: f64) -> bool {
        if !current_a.is_finite() {
            // An invalid reading breaks the window: steadiness must be shown on valid data.
            self.len = 0;
            self.sum = 0.0;
            self.sum_sq = 0.0;
            self.pivot = f64::NAN;
            return false;
        }
        if self.pivot.is_nan() {
            self.pivot = current_a;
        }
        let cap = self.ring.len();
        if self.len == cap {
            let old = self.ring[self.head] - self.pivot;
            self.sum -= old;
            self.sum_sq -= old * old;
        } else {
            self.len += 1;
        }
        self.ring[self.head] = current_a;
        let d = current_a - self.pivot;
        self.sum += d;
        self.sum_sq += d * d;
        self.head = if self.head + 1 == cap { 0 } else { self.head + 1 };
        self.since_recompute += 1;
        if self.since_recompute >= cap {
            // Amortised O(1): re-centre on the latest value and drop accumulated rounding.
            self.since_recompute = 0;
            self.pivot = current_a;
            // The last `len` readings end just before `head` and may wrap; their order does not
            // matter for the sums, so walk the (at most two) contiguous pieces: a modulo per
            // element would cost more than the rest of the push.
            let start = (self.head + cap - self.len) % cap;
            let (a, b) = if self.len == cap || start >= self.head {
                (&self.ring[start..], &self.ring[..self.head])
            } else {
                (&self.ring[start..self.head], &self.ring[..0])
            };
            let (mut sum, mut sum_sq) = (0.0, 0.0);
            for &x in a.iter().chain(b) {
                let d = x - self.pivot;
                sum += d;
                sum_sq += d * d;
            }
            (self.sum, self.sum_sq) = (sum, sum_sq);
        }
        if self.len < cap {
            return false;
        }
        let n = self.len as f64;
        let mean_dev = self.sum / n;
        let var = (self.sum_sq / n - mean_dev * mean_dev).max(0.0);
        let mean = self.pivot + mean_dev;
        mean != 0.0 && var.sqrt() <= self.max_rel_scatter * mean.abs()
    }
}
