//! Min/max-per-pixel decimation of a finished run for the zoomable chart. A spike is 1–2 samples
//! at 1 kHz: skipping samples would hide it at most zoom levels, so each pixel column keeps the
//! smallest and the largest value of every series, in the order they occurred.

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

/// The samples of `[t0_s, t1_s]` (time must be non-decreasing) reduced to at most `2 × pixels`
/// points. When the window holds no more than that, every sample is returned as it is.
/// Otherwise the window is cut into `pixels` buckets of equal sample count; each bucket becomes
/// two points at its first and last sample time, and each series gives its minimum and maximum
/// there, the one that occurred first placed first, so the drawn line passes through both.
pub fn minmax(time_s: &[f64], series: &[Series<'_>], t0_s: f64, t1_s: f64, pixels: usize) -> Decimated {
    let i0 = time_s.partition_point(|&t| t < t0_s);
    let i1 = time_s.partition_point(|&t| t <= t1_s).max(i0);
    let n = i1 - i0;
    let pixels = pixels.max(1);
    if n <= 2 * pixels {
        return Decimated {
            time_s: time_s[i0..i1].to_vec(),
            series: series.iter().map(|s| (s.name, s.values[i0..i1].iter().copied().map(opt).collect())).collect(),
            samples_in_window: n,
            full_resolution: true,
        };
    }
    let mut out_t = Vec::with_capacity(2 * pixels);
    let mut out: Vec<Vec<Option<f64>>> = series.iter().map(|_| Vec::with_capacity(2 * pixels)).collect();
    for b in 0..pixels {
        let lo = i0 + n * b / pixels;
        let hi = i0 + n * (b + 1) / pixels;
        if hi <= lo {
            continue;
        }
        out_t.push(time_s[lo]);
        out_t.push(time_s[hi - 1]);
        for (s, col) in series.iter().zip(out.iter_mut()) {
            let mut min = (f64::INFINITY, usize::MAX);
            let mut max = (f64::NEG_INFINITY, usize::MAX);
            for (i, &v) in s.values[lo..hi].iter().enumerate() {
                if v.is_finite() {
                    if v < min.0 {
                        min = (v, i);
                    }
                    if v > max.0 {
                        max = (v, i);
                    }
                }
            }
            if min.1 == usize::MAX {
                col.push(None);
                col.push(None);
            } else if min.1 <= max.1 {
                col.push(Some(min.0));
                col.push(Some(max.0));
            } else {
                col.push(Some(max.0));
                col.push(Some(min.0));
            }
        }
    }
    Decimated {
        time_s: out_t,
        series: series.iter().map(|s| s.name).zip(out).collect(),
        samples_in_window: n,
        full_resolution: false,
    }
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
