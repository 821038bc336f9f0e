//! Trailing window statistics with O(1) amortised updates and storage fixed at construction.

/// `k − origin` as a float. Through i64: x86-64 converts a signed integer in one instruction but
/// an unsigned one in about ten, and this runs several times per sample. Indices are sample
/// counts, far below 2⁶³.
#[inline(always)]
pub(crate) fn offset(k: u64, origin: u64) -> f64 {
    k.wrapping_sub(origin) as i64 as f64
}

/// Least-squares line through the last `cap` values pushed, each at its sample index, evaluated
/// at the current index.
///
/// Why a line and not a plain mean: under the load ramp Δρ/ρ drifts with strain, and a trailing
/// mean lags the drift by half a window. At 1500 µN/s on a 2 µm pillar that lag is ~0.8 σ: it
/// biases every residual (p spikes easier, n spikes harder) and inflates the MAD. Extrapolating
/// the window's line removes the lag at the cost of a noisier baseline (variance 4σ²/W instead
/// of σ²/W, +3 % on the residual at W = 60). Until the window is full (start, or after a level
/// shift) the plain mean is used, since a short line extrapolates poorly.
///
/// Sums are kept relative to an origin index that moves to the newest sample whenever they are
/// recomputed from the buffer, once per [`RECOMPUTE_WINDOWS`] × `cap` pushes: that bounds both
/// the accumulated rounding of add-then-subtract (≈ 10³ operations, ≈ 10⁻¹⁴ relative) and the size
/// of the index sums (offsets below 16 windows: Σt and Σt² stay exact integers in f64 for windows
/// up to ≈ 3 × 10⁴ samples; beyond, Σt² — used only for windows with gaps, whose denominator then
/// loses ≈ 10⁻¹² relative to cancellation — is rounded), for O(1) amortised work: one window's
/// worth of adds every 16 windows.
/// Windows' worth of pushes between two recomputations of [`TrailingLine`]'s sums.
pub(crate) const RECOMPUTE_WINDOWS: usize = 16;

#[derive(Debug, Clone)]
pub(crate) struct TrailingLine {
    pub(crate) x: Vec<f64>,
    pub(crate) idx: Vec<u64>,
    pub(crate) head: usize,
    pub(crate) len: usize,
    pub(crate) origin: u64,
    pub(crate) s_t: f64,
    pub(crate) s_tt: f64,
    pub(crate) s_x: f64,
    pub(crate) s_tx: f64,
    pub(crate) since_recompute: usize,
    /// 1/cap, for the full window's mean.
    pub(crate) inv_cap: f64,
    /// Index of the newest value pushed.
    pub(crate) last_k: u64,
    /// 1 / (n Σt² − (Σt)²) for a full window of consecutive indices: that denominator is then
    /// n²(n² − 1)/12 whatever the origin, and the sums of integer offsets are exact, so a
    /// multiplication replaces the division on the common path (no event in the window).
    pub(crate) inv_denominator_contiguous: f64,
}

impl TrailingLine {
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(2);
        Self {
            x: vec![0.0; cap],
            idx: vec![0; cap],
            head: 0,
            len: 0,
            origin: 0,
            s_t: 0.0,
            s_tt: 0.0,
            s_x: 0.0,
            s_tx: 0.0,
            since_recompute: 0,
            inv_cap: 1.0 / cap as f64,
            last_k: 0,
            inv_denominator_contiguous: {
                let n = cap as f64;
                12.0 / (n * n * (n * n - 1.0))
            },
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Baseline at sample index `k`: the window's line when full, else its mean; NaN when empty.
    #[inline]
    pub(crate) fn value_at(&self, k: u64) -> f64 {
        if self.len < self.x.len() {
            return if self.len == 0 { f64::NAN } else { self.s_x / self.len as f64 };
        }
        let n = self.len as f64;
        let mean_x = self.s_x * self.inv_cap;
        let mean_t = self.s_t * self.inv_cap;
        let numerator = n * self.s_tx - self.s_t * self.s_x;
        // Full window: the oldest value sits at `head`.
        let slope = if self.last_k - self.idx[self.head] + 1 == self.x.len() as u64 {
            numerator * self.inv_denominator_contiguous
        } else {
            numerator / (n * self.s_tt - self.s_t * self.s_t)
        };
        mean_x + slope * (offset(k, self.origin) - mean_t)
    }

    #[inline]
    pub(crate) fn push(&mut self, k: u64, x: f64) {
        let cap = self.x.len();
        if self.len == cap {
            let t = offset(self.idx[self.head], self.origin);
            let old = self.x[self.head];
            self.s_t -= t;
            self.s_tt -= t * t;
            self.s_x -= old;
            self.s_tx -= t * old;
        } else {
            self.len += 1;
        }
        self.x[self.head] = x;
        self.idx[self.head] = k;
        self.last_k = k;
        let t = offset(k, self.origin);
        self.s_t += t;
        self.s_tt += t * t;
        self.s_x += x;
        self.s_tx += t * x;
        self.head = if self.head + 1 == cap { 0 } else { self.head + 1 };
        self.since_recompute += 1;
        if self.since_recompute >= cap * RECOMPUTE_WINDOWS {
            self.since_recompute = 0;
            self.recompute(k);
        }
    }

    /// Whether `pushes` pushes of the consecutive indices from `next_k` on, into this full
    /// window of consecutive indices, keep every partial result of the updates of Σt and Σt²
    /// below 2⁵³ in magnitude. They are sums of integers, so every step is then exact: Σt grows
    /// by exactly `cap` a push and Σt² by exactly (t² − (t − cap)²), and a loop may add those
    /// instead (the same bits). True unless the window is tens of thousands of samples long.
    #[inline]
    pub(crate) fn index_sums_exact(&self, next_k: u64, pushes: usize) -> bool {
        const EXACT: f64 = (1u64 << 53) as f64;
        let t0 = offset(next_k, self.origin);
        let t_max = (t0 - self.x.len() as f64).abs().max((t0 + pushes as f64).abs());
        let terms = 2.0 * pushes as f64;
        self.s_t.abs() + terms * t_max < EXACT && self.s_tt.abs() + terms * t_max * t_max < EXACT
    }

    /// How many pushes of consecutive indices from `next_k` on make a full window contiguous
    /// again (its indices consecutive, ending at the newest): those that push out every value
    /// older than the last gap. 0 when it is contiguous and `next_k` continues it; the whole
    /// window when `next_k` itself leaves a gap. O(log cap): indices increase along the ring, by
    /// exactly one only inside the newest consecutive run.
    pub(crate) fn pushes_to_contiguity(&self, next_k: u64) -> usize {
        let cap = self.x.len();
        if self.len < cap || self.last_k.wrapping_add(1) != next_k {
            return cap;
        }
        // The d-th newest value (d = 0 for the newest) and whether it is `last_k − d`.
        let in_run = |d: usize| self.idx[(self.head + cap - 1 - d) % cap] == self.last_k.wrapping_sub(d as u64);
        // Binary search for the run's length: in_run(d) holds exactly for d < run.
        let (mut lo, mut hi) = (1, cap);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if in_run(mid - 1) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        cap - lo
    }

    pub(crate) fn recompute(&mut self, origin: u64) {
        self.origin = origin;
        let (mut s_t, mut s_tt, mut s_x, mut s_tx) = (0.0, 0.0, 0.0, 0.0);
        // Only the stored values matter, not their order: walk the filled part linearly (a
        // modulo per element would cost more than the rest of the loop).
        let filled = if self.len == self.x.len() { self.x.len() } else { self.head };
        let start = if self.len == self.x.len() { 0 } else { self.head - self.len };
        for (&x, &k) in self.x[start..filled].iter().zip(&self.idx[start..filled]) {
            let t = offset(k, origin);
            s_t += t;
            s_tt += t * t;
            s_x += x;
            s_tx += t * x;
        }
        (self.s_t, self.s_tt, self.s_x, self.s_tx) = (s_t, s_tt, s_x, s_tx);
    }

    /// Add `offset` to every stored value (a change of reference moves the whole window). O(cap),
    /// once per run.
    pub(crate) fn shift(&mut self, offset: f64) {
        let cap = self.x.len();
        for i in 0..self.len {
            self.x[(self.head + cap - 1 - i) % cap] += offset;
        }
        let origin = self.origin;
        self.recompute(origin);
    }

    pub(crate) fn clear(&mut self) {
        // Restart at slot 0 so a partly filled window is always the slice [0, len).
        self.head = 0;
        self.len = 0;
        (self.s_t, self.s_tt, self.s_x, self.s_tx) = (0.0, 0.0, 0.0, 0.0);
        self.since_recompute = 0;
    }
}

/// Sub-bins per octave of the |residual| histogram (2⁴ = 16: bins 4.4 % wide).
const SUB_BITS: u32 = 4;
/// Smallest octave resolved, as a power of two (2⁻⁴⁰ ≈ 9 × 10⁻¹³); smaller values share bin 0.
const MIN_EXP: i64 = -40;
/// Octaves covered: up to 2⁰ = 1, far above any Δρ/ρ noise; larger values share the last bin.
const OCTAVES: i64 = 40;
/// Number of histogram bins.
const BINS: usize = (OCTAVES as usize) << SUB_BITS;
/// Length of the counts array: every value a `u16` bin index can take, although only the first
/// [`BINS`] + 1 are used, so that indexing it with a stored `u16` needs no bounds check in the
/// quiet loop. The unused tail is never touched (the allocator's zeroed pages stay unmapped).
pub(crate) const COUNT_SLOTS: usize = 1 << 16;
/// The bin of a ring slot that holds no value yet: past every real bin, so it is never below the
/// median bin, and no median walk reaches it (the real values alone hold every rank). With the
/// empty slots counted there, a push into a window that is still filling drops "the oldest value"
/// like one into a full window, and the quiet loop needs no separate filling variant.
const EMPTY_BIN: usize = BINS;
/// Bits of the f64 representation kept for the bin index: sign, exponent and `SUB_BITS` mantissa bits.
const SHIFT: u32 = 52 - SUB_BITS;
/// `(bits >> SHIFT)` of 2^MIN_EXP: the index offset of bin 0.
const BASE: i64 = (1023 + MIN_EXP) << SUB_BITS;
/// Median of |x| for a Gaussian is 0.6745 σ.
const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// Median of |residual| over the last `cap` values, as a robust σ (MAD × 1.4826).
///
/// Why a log-binned histogram with a tracked median bin rather than a ring of values re-sorted
/// (`select_nth_unstable`) every K samples: the histogram costs one ring write, two counter
/// updates and a pointer step per sample whatever the window length (1 s is 10⁵ samples at
/// 100 kHz), never stalls on an O(window) selection, and its answer is always current. The price
/// is resolution: bins are 2^(1/16) ≈ 4.4 % wide and the median is interpolated linearly inside
/// its bin, so σ is good to ≈ 1 %, well below the statistical error of a MAD over ~10³ samples.
/// The bin index is read straight from the float's exponent and top mantissa bits (no log call).
#[derive(Debug, Clone)]
pub(crate) struct MedianTracker {
    pub(crate) counts: Vec<u32>,
    pub(crate) ring: Vec<u16>,
    pub(crate) head: usize,
    pub(crate) len: usize,
    /// Bin holding the lower median.
    pub(crate) median_bin: usize,
    /// Number of values in bins below `median_bin`.
    pub(crate) below: usize,
    /// σ as of the last refresh; the window spans ~10³ values, so refreshing every
    /// [`SIGMA_REFRESH`] pushes changes nothing but saves a division and a conversion per sample.
    pub(crate) sigma: f64,
    pub(crate) since_refresh: u32,
}

/// Pushes between two refreshes of the cached σ.
pub(crate) const SIGMA_REFRESH: u32 = 16;
/// Below this many values (or a full window, if shorter) σ is refreshed on every push.
pub(crate) const YOUNG_WINDOW: usize = 1024;

impl MedianTracker {
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        let mut counts = vec![0; COUNT_SLOTS];
        counts[EMPTY_BIN] = cap as u32;
        Self {
            counts,
            ring: vec![EMPTY_BIN as u16; cap],
            head: 0,
            len: 0,
            median_bin: 0,
            below: 0,
            sigma: f64::NAN,
            since_refresh: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn bin_of(abs_x: f64) -> usize {
        // abs_x ≥ 0, so the sign bit is clear and the shifted bits grow monotonically with the
        // value; below bin 0's edge the subtraction saturates at 0.
        ((abs_x.to_bits() >> SHIFT) as usize).saturating_sub(BASE as usize).min(BINS - 1)
    }

    #[inline(always)]
    fn bin_lower_edge(bin: usize) -> f64 {
        f64::from_bits(((bin as i64 + BASE) as u64) << SHIFT)
    }

    pub(crate) fn push(&mut self, abs_x: f64) {
        let cap = self.ring.len();
        // Branch-free `below` updates: half the values lie below the median bin, so a branch on
        // it would be mispredicted half the time. A slot not yet filled leaves [`EMPTY_BIN`],
        // never below the median.
        let old = self.ring[self.head] as usize;
        self.counts[old] -= 1;
        let leaving_below = usize::from(old < self.median_bin);
        if self.len < cap {
            self.len += 1;
        }
        let b = Self::bin_of(abs_x);
        self.ring[self.head] = b as u16;
        self.counts[b] += 1;
        self.below = self.below + usize::from(b < self.median_bin) - leaving_below;
        self.head = if self.head + 1 == cap { 0 } else { self.head + 1 };
        self.since_refresh += 1;
        // Refresh on every push while the window is young, so warm-up sees a current value. The
        // median bin is only needed for σ, so it is moved then (a few more steps at once, none
        // on the other pushes; `below` stays exact meanwhile).
        if self.since_refresh >= SIGMA_REFRESH || self.len < cap.min(YOUNG_WINDOW) {
            self.since_refresh = 0;
            self.refresh();
        }
    }

    /// Move the median bin to the current median and recompute σ from it.
    #[inline(always)]
    pub(crate) fn refresh(&mut self) {
        (self.median_bin, self.below, self.sigma) = median_refresh(&self.counts, self.len, self.median_bin, self.below);
    }

    /// Robust σ: 1.4826 × the median of the stored |residuals| (refreshed every
    /// [`SIGMA_REFRESH`] pushes); NaN when empty.
    #[inline]
    pub(crate) fn sigma(&self) -> f64 {
        self.sigma
    }
}

/// [`MedianTracker::refresh`] on its parts (the quiet loop holds the counts as a slice): moves
/// the median bin until it holds rank (len − 1)/2 — noise keeps the median within a few bins
/// over [`SIGMA_REFRESH`] pushes, so this runs a few steps — and interpolates σ inside it.
/// Returns (median bin, values below it, σ); σ is NaN when `len` is 0. Always inlined: a call in
/// the quiet loop would make every float register caller-saved there and push the loop's state
/// to the stack.
#[inline(always)]
pub(crate) fn median_refresh(
    counts: &[u32],
    len: usize,
    mut median_bin: usize,
    mut below: usize,
) -> (usize, usize, f64) {
    if len == 0 {
        return (median_bin, below, f64::NAN);
    }
    let target = (len - 1) / 2;
    while below > target {
        median_bin -= 1;
        below -= counts[median_bin] as usize;
    }
    while below + counts[median_bin] as usize <= target {
        below += counts[median_bin] as usize;
        median_bin += 1;
    }
    let lo = MedianTracker::bin_lower_edge(median_bin);
    let hi = MedianTracker::bin_lower_edge(median_bin + 1);
    let inside = counts[median_bin] as f64;
    let frac = ((target - below) as f64 + 0.5) / inside;
    (median_bin, below, MAD_TO_SIGMA * (lo + (hi - lo) * frac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_line_follows_a_ramp_without_lag_and_shifts() {
        let mut l = TrailingLine::new(8);
        l.push(0, 100.0);
        for k in 1..40u64 {
            l.push(k, 2.0 * k as f64 + 1.0);
        }
        assert!((l.value_at(40) - 81.0).abs() < 1e-9, "{}", l.value_at(40));
        l.shift(1.0);
        assert!((l.value_at(41) - 84.0).abs() < 1e-9);
        l.clear();
        l.push(50, 3.0);
        l.push(51, 5.0);
        assert!((l.value_at(52) - 4.0).abs() < 1e-12, "mean until full");
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn pushes_to_contiguity_is_where_the_last_gap_leaves_the_window() {
        let contiguous = |l: &TrailingLine| l.last_k - l.idx[l.head] + 1 == l.x.len() as u64;
        // Windows of 1 to 9 values with gaps of up to 3 after each of the first pushes, in
        // every ring phase: the answer is the number of consecutive pushes after which the
        // window first holds consecutive indices (found by pushing them).
        for cap in 2..10usize {
            for pattern in 0u32..256 {
                let mut l = TrailingLine::new(cap);
                let mut k = 0u64;
                for i in 0..(cap + (pattern as usize % 5)) {
                    k += 1 + u64::from((pattern >> (2 * (i % 4))) & 3) * u64::from(i < 4);
                    l.push(k, 0.0);
                }
                for next_k in [k + 1, k + 2] {
                    let want = {
                        let mut probe = l.clone();
                        let mut pushes = 0;
                        let mut kk = next_k;
                        while !(contiguous(&probe) && probe.last_k + 1 == kk) {
                            probe.push(kk, 0.0);
                            kk += 1;
                            pushes += 1;
                        }
                        pushes
                    };
                    assert_eq!(l.pushes_to_contiguity(next_k), want, "cap {cap}, pattern {pattern:#b}, next {next_k}");
                }
            }
        }
    }

    #[test]
    fn median_tracker_matches_exact_median_within_bin_resolution() {
        // Deterministic spread of values over three decades, windowed.
        let cap = 501;
        let mut t = MedianTracker::new(cap);
        let mut window = std::collections::VecDeque::new();
        let mut x: u64 = 12345;
        for i in 0..5000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let v = 1e-6 * (1.0 + ((x >> 33) % 1000) as f64) * if i > 2500 { 3.0 } else { 1.0 };
            t.push(v);
            window.push_back(v);
            if window.len() > cap {
                window.pop_front();
            }
            if i % 97 == 0 {
                let mut s: Vec<f64> = window.iter().copied().collect();
                s.sort_by(f64::total_cmp);
                let exact = s[(s.len() - 1) / 2] * MAD_TO_SIGMA;
                t.refresh();
                let got = t.sigma();
                assert!((got / exact - 1.0).abs() < 0.05, "i {i}: {got} vs {exact}");
            }
        }
    }
}
