//! Min/max-per-pixel decimation of a finished run for the zoomable chart. A spike is 1–2 samples
//! at 1 kHz: skipping samples would hide it at most zoom levels, so each pixel column keeps the
//! smallest and the largest value of every series, in the order they occurred. [`Envelope`] does
//! it incrementally from samples or from per-block summaries ([`crate::runview`]), so a run of
//! any length is reduced without being held in memory.

use serde::Serialize;

/// One series to decimate, sharing the time axis.
pub struct Series<'a> {
    /// Name the page knows it by.
    pub name: &'static str,
    /// Values, one per sample (NaN = undefined).
    pub values: &'a [f64],
}

/// What the page plots: a shared time axis and one column per series (`None` = undefined).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decimated {
    /// Run time, s.
    pub time_s: Vec<f64>,
    /// Series in the order given, by name.
    pub series: Vec<(&'static str, Vec<Option<f64>>)>,
    /// Samples in the requested window.
    pub samples_in_window: usize,
    /// Whether every sample in the window is present (no decimation was needed).
    pub full_resolution: bool,
}

fn opt(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The running minimum and maximum of one series in one pixel column, with the order they came in.
#[derive(Clone, Copy)]
struct Extremes {
    min: (f64, u64),
    max: (f64, u64),
}

const NONE: Extremes = Extremes { min: (f64::INFINITY, u64::MAX), max: (f64::NEG_INFINITY, u64::MAX) };

/// Min/max-per-pixel decimation fed piece by piece, so a window of any length is reduced without
/// holding it: the caller pushes *cells* in sample order, either single samples or summaries of
/// consecutive samples (their minimum, maximum and which came first), and each cell lands in the
/// pixel column of its first sample. The window's `n` samples starting at `i0` go into `pixels`
/// columns; when `n ≤ 2 × pixels` every sample is kept as it is (the caller must then push
/// single samples). Memory: two points per column, whatever `n` is.
pub struct Envelope {
    i0: usize,
    n: usize,
    pixels: usize,
    full: bool,
    /// Column being filled, its first and last sample time, and each series' extremes.
    column: Option<(usize, f64, f64)>,
    acc: Vec<Extremes>,
    /// Order key of the next cell (two per cell: its min and max may come in either order).
    key: u64,
    out_t: Vec<f64>,
    out: Vec<Vec<Option<f64>>>,
}

impl Envelope {
    /// An envelope for samples `i0 .. i0 + n` of `series` series, at most `2 × pixels` points.
    pub fn new(i0: usize, n: usize, pixels: usize, series: usize) -> Self {
        let pixels = pixels.max(1);
        let full = n <= 2 * pixels;
        let points = if full { n } else { 2 * pixels };
        Self {
            i0,
            n,
            pixels,
            full,
            column: None,
            acc: vec![NONE; series],
            key: 0,
            out_t: Vec::with_capacity(points),
            out: (0..series).map(|_| Vec::with_capacity(points)).collect(),
        }
    }

    /// Whether every sample is kept (push single samples then).
    pub fn full_resolution(&self) -> bool {
        self.full
    }

    /// One sample at index `i`: its time and one value per series (NaN = undefined).
    pub fn push_sample(&mut self, i: usize, time_s: f64, values: &[f64]) {
        if self.full {
            self.out_t.push(time_s);
            for (col, &v) in self.out.iter_mut().zip(values) {
                col.push(opt(v));
            }
        } else {
            self.push_cell(i, time_s, time_s, values, values, &[]);
        }
    }

    /// A cell of consecutive samples from index `start`: its first and last time, each series'
    /// minimum and maximum (±∞ when all undefined) and whether the minimum came first (missing
    /// entries: yes).
    pub fn push_cell(&mut self, start: usize, t_first: f64, t_last: f64, min: &[f64], max: &[f64], min_first: &[bool]) {
        let column = ((start.saturating_sub(self.i0)) as u128 * self.pixels as u128 / self.n.max(1) as u128) as usize;
        match self.column {
            Some((c, _, ref mut last)) if c == column => *last = t_last,
            Some(_) => {
                self.close_column();
                self.column = Some((column, t_first, t_last));
            }
            None => self.column = Some((column, t_first, t_last)),
        }
        let k = self.key;
        self.key += 2;
        for (j, a) in self.acc.iter_mut().enumerate() {
            let first = min_first.get(j).copied().unwrap_or(true);
            let (kmin, kmax) = if first { (k, k + 1) } else { (k + 1, k) };
            if min[j].is_finite() && min[j] < a.min.0 {
                a.min = (min[j], kmin);
            }
            if max[j].is_finite() && max[j] > a.max.0 {
                a.max = (max[j], kmax);
            }
        }
    }

    fn close_column(&mut self) {
        let Some((_, t0, t1)) = self.column.take() else { return };
        self.out_t.push(t0);
        self.out_t.push(t1);
        for (a, col) in self.acc.iter_mut().zip(self.out.iter_mut()) {
            if a.min.1 == u64::MAX {
                col.push(None);
                col.push(None);
            } else if a.min.1 <= a.max.1 {
                col.push(Some(a.min.0));
                col.push(Some(a.max.0));
            } else {
                col.push(Some(a.max.0));
                col.push(Some(a.min.0));
            }
            *a = NONE;
        }
    }

    /// The points, the series named in push order.
    pub fn finish(mut self, names: &[&'static str]) -> Decimated {
        self.close_column();
        Decimated {
            time_s: self.out_t,
            series: names.iter().copied().zip(self.out).collect(),
            samples_in_window: self.n,
            full_resolution: self.full,
        }
    }
}

/// The samples of `[t0_s, t1_s]` (time must be non-decreasing) reduced to at most `2 × pixels`
/// points. When the window holds no more than that, every sample is returned as it is.
/// Otherwise the window is cut into `pixels` columns of equal sample count; each column becomes
/// two points at its first and last sample time, and each series gives its minimum and maximum
/// there, the one that occurred first placed first, so the drawn line passes through both.
pub fn minmax(time_s: &[f64], series: &[Series<'_>], t0_s: f64, t1_s: f64, pixels: usize) -> Decimated {
    let i0 = time_s.partition_point(|&t| t < t0_s);
    let i1 = time_s.partition_point(|&t| t <= t1_s).max(i0);
    let mut env = Envelope::new(i0, i1 - i0, pixels, series.len());
    let mut row = vec![0.0; series.len()];
    for (i, &t) in time_s.iter().enumerate().take(i1).skip(i0) {
        for (r, s) in row.iter_mut().zip(series) {
            *r = s.values[i];
        }
        env.push_sample(i, t, &row);
    }
    let names: Vec<&'static str> = series.iter().map(|s| s.name).collect();
    env.finish(&names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 kHz run of noise-free baseline with one 1-sample spike: at every width from 1 pixel
    /// to full resolution, the spike's value is among the points sent.
    #[test]
    fn a_one_sample_spike_survives_every_zoom() {
        let n = 100_000;
        let t: Vec<f64> = (0..n).map(|i| i as f64 * 1e-3).collect();
        let mut v = vec![1e-5; n];
        v[73_211] = 3e-3;
        let mut neg = vec![0.0; n];
        neg[512] = -2e-3;
        for px in [1, 7, 300, 1000, 1920, 4000, 60_000] {
            let s = [Series { name: "drho", values: &v }, Series { name: "neg", values: &neg }];
            let d = minmax(&t, &s, 0.0, 1e9, px);
            assert!(d.time_s.len() <= 2 * px.max(1), "{px}: {}", d.time_s.len());
            assert_eq!(d.samples_in_window, n);
            assert!(d.series[0].1.contains(&Some(3e-3)), "{px} px lost the p spike");
            assert!(d.series[1].1.contains(&Some(-2e-3)), "{px} px lost the n spike");
            assert!(d.time_s.windows(2).all(|w| w[1] >= w[0]), "time stays ordered");
        }
        // Zoomed to a few samples around the spike: every sample, at full resolution.
        let s = [Series { name: "drho", values: &v }];
        let d = minmax(&t, &s, 73.209, 73.2135, 800);
        assert!(d.full_resolution);
        assert_eq!(d.time_s.len(), 5);
        assert_eq!(d.series[0].1[2], Some(3e-3));
    }

    #[test]
    fn extremes_keep_their_order_and_nan_is_undefined() {
        let t: Vec<f64> = (0..8).map(f64::from).collect();
        let v = [5.0, 1.0, 9.0, 2.0, f64::NAN, f64::NAN, f64::NAN, f64::NAN];
        let d = minmax(&t, &[Series { name: "x", values: &v }], 0.0, 7.0, 2);
        // Bucket 0 (samples 0–3): min 1 at 1 comes before max 9 at 2; bucket 1 is all NaN.
        assert_eq!(d.series[0].1, vec![Some(1.0), Some(9.0), None, None]);
        assert_eq!(d.time_s, vec![0.0, 3.0, 4.0, 7.0]);
        let w = [9.0, 1.0, 0.0, 0.0];
        let d = minmax(&t[..4], &[Series { name: "x", values: &w }], 0.0, 7.0, 1);
        assert_eq!(d.series[0].1, vec![Some(9.0), Some(0.0)], "max first when it came first");
    }
}
