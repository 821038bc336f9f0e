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
            (self.sum, self.sum_sq) = self.sums_about(current_a, self.head, self.len);
        }
        if self.len < cap {
            return false;
        }
        steady(self.sum, self.sum_sq, self.len as f64, self.pivot, self.max_rel_scatter)
    }

    /// Whether the window is full: [`Self::push_quiet`] takes only a full window.
    pub(crate) fn is_full(&self) -> bool {
        self.len == self.ring.len()
    }

    /// [`Self::push`] for `n` readings in order (`current(j)` for j = 0, 1, …, all finite, into a
    /// full window), with the sums in registers; stops before the first reading whose push would
    /// declare contact, and leaves that one, untouched, to [`Self::push`]. Returns how many were
    /// pushed. The same operations as `push`, in the same order, so the same sums and verdicts.
    #[inline]
    pub(crate) fn push_quiet(&mut self, n: usize, current: impl Fn(usize) -> f64) -> usize {
        let cap = self.ring.len();
        let n_f = cap as f64;
        let max_rel_scatter = self.max_rel_scatter;
        let (mut head, mut since_recompute) = (self.head, self.since_recompute);
        let (mut pivot, mut sum, mut sum_sq) = (self.pivot, self.sum, self.sum_sq);
        let mut pushed = n;
        for j in 0..n {
            let current_a = current(j);
            let replaced = self.ring[head];
            let old = replaced - pivot;
            let (mut new_sum, mut new_sum_sq) = (sum - old, sum_sq - old * old);
            self.ring[head] = current_a;
            let d = current_a - pivot;
            new_sum += d;
            new_sum_sq += d * d;
            let new_head = if head + 1 == cap { 0 } else { head + 1 };
            let (mut new_since, mut new_pivot) = (since_recompute + 1, pivot);
            if new_since >= cap {
                new_since = 0;
                new_pivot = current_a;
                (new_sum, new_sum_sq) = self.sums_about(current_a, new_head, cap);
            }
            if steady(new_sum, new_sum_sq, n_f, new_pivot, max_rel_scatter) {
                // `push` takes this reading: as it found the window.
                self.ring[head] = replaced;
                pushed = j;
                break;
            }
            (head, since_recompute, pivot, sum, sum_sq) = (new_head, new_since, new_pivot, new_sum, new_sum_sq);
        }
        (self.head, self.since_recompute, self.pivot, self.sum, self.sum_sq) =
            (head, since_recompute, pivot, sum, sum_sq);
        pushed
    }

    /// Σ(x − pivot) and Σ(x − pivot)² over the last `len` readings, which end just before `head`.
    #[inline(never)]
    fn sums_about(&self, pivot: f64, head: usize, len: usize) -> (f64, f64) {
        let cap = self.ring.len();
        // They may wrap; their order does not matter for the sums, so walk the (at most two)
        // contiguous pieces: a modulo per element would cost more than the rest of the push.
        let start = (head + cap - len) % cap;
        let (a, b) = if len == cap || start >= head {
            (&self.ring[start..], &self.ring[..head])
        } else {
            (&self.ring[start..head], &self.ring[..0])
        };
        let (mut sum, mut sum_sq) = (0.0, 0.0);
        for &x in a.iter().chain(b) {
            let d = x - pivot;
            sum += d;
            sum_sq += d * d;
        }
        (sum, sum_sq)
    }
}

/// The verdict of a full window of `n` readings whose deviations from `pivot` sum to `sum` and
/// their squares to `sum_sq`: steady enough for Ohmic contact.
#[inline(always)]
fn steady(sum: f64, sum_sq: f64, n: f64, pivot: f64, max_rel_scatter: f64) -> bool {
    let mean_dev = sum / n;
    let var = (sum_sq / n - mean_dev * mean_dev).max(0.0);
    let mean = pivot + mean_dev;
    mean != 0.0 && var.sqrt() <= max_rel_scatter * mean.abs()
}
