//! Small derivative-free optimisers: golden-section search in one dimension and Nelder–Mead in
//! two. The likelihoods here are cheap, smooth and low-dimensional, so nothing heavier is needed.

/// Maximise `f` on [lo, hi]: a coarse scan of `grid` points first (guards against a local
/// maximum), then golden-section refinement in the bracket around the best point.
/// Returns (argmax, max).
pub fn maximize_1d(f: &impl Fn(f64) -> f64, lo: f64, hi: f64, grid: usize) -> (f64, f64) {
    let grid = grid.max(3);
    let step = (hi - lo) / (grid - 1) as f64;
    let mut best_i = 0;
    let mut best_v = f64::NEG_INFINITY;
    for i in 0..grid {
        let v = f(lo + step * i as f64);
        if v > best_v {
            best_v = v;
            best_i = i;
        }
    }
    let mut a = lo + step * best_i.saturating_sub(1) as f64;
    let mut b = (lo + step * (best_i + 1) as f64).min(hi);
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - inv_phi * (b - a);
    let mut d = a + inv_phi * (b - a);
    let mut fc = f(c);
    let mut fd = f(d);
    for _ in 0..80 {
        if (b - a).abs() < 1e-10 * (1.0 + a.abs()) {
            break;
        }
        if fc > fd {
            b = d;
            d = c;
            fd = fc;
            c = b - inv_phi * (b - a);
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + inv_phi * (b - a);
            fd = f(d);
        }
    }
    let x = 0.5 * (a + b);
    let v = f(x);
    if v >= best_v {
        (x, v)
    } else {
        (lo + step * best_i as f64, best_v)
    }
}

/// Maximise `f` over two parameters with Nelder–Mead from `start` with initial steps `scale`.
/// Returns (argmax, max, converged).
pub fn maximize_2d(f: &impl Fn([f64; 2]) -> f64, start: [f64; 2], scale: [f64; 2]) -> ([f64; 2], f64, bool) {
    let neg = |p: [f64; 2]| {
        let v = f(p);
        if v.is_finite() {
            -v
        } else {
            f64::INFINITY
        }
    };
    let mut pts = [start, [start[0] + scale[0], start[1]], [start[0], start[1] + scale[1]]];
    let mut vals = [neg(pts[0]), neg(pts[1]), neg(pts[2])];
    let mut converged = false;
    for _ in 0..2000 {
        // Order best (lowest) first.
        let mut idx = [0usize, 1, 2];
        idx.sort_by(|&i, &j| vals[i].total_cmp(&vals[j]));
        pts = [pts[idx[0]], pts[idx[1]], pts[idx[2]]];
        vals = [vals[idx[0]], vals[idx[1]], vals[idx[2]]];
        let spread = (vals[2] - vals[0]).abs();
        let size = (pts[2][0] - pts[0][0]).abs().max((pts[2][1] - pts[0][1]).abs());
        if spread < 1e-10 && size < 1e-8 {
            converged = true;
            break;
        }
        let centroid = [(pts[0][0] + pts[1][0]) / 2.0, (pts[0][1] + pts[1][1]) / 2.0];
        let along = |t: f64| [centroid[0] + t * (pts[2][0] - centroid[0]), centroid[1] + t * (pts[2][1] - centroid[1])];
        let reflected = along(-1.0);
        let fr = neg(reflected);
        if fr < vals[0] {
            let expanded = along(-2.0);
            let fe = neg(expanded);
            if fe < fr {
                pts[2] = expanded;
                vals[2] = fe;
            } else {
                pts[2] = reflected;
                vals[2] = fr;
            }
        } else if fr < vals[1] {
            pts[2] = reflected;
            vals[2] = fr;
        } else {
            let contracted = if fr < vals[2] { along(-0.5) } else { along(0.5) };
            let fcn = neg(contracted);
            if fcn < vals[2].min(fr) {
                pts[2] = contracted;
                vals[2] = fcn;
            } else {
                // Shrink towards the best point.
                for k in 1..3 {
                    pts[k] = [(pts[k][0] + pts[0][0]) / 2.0, (pts[k][1] + pts[0][1]) / 2.0];
                    vals[k] = neg(pts[k]);
                }
            }
        }
    }
    let mut best = 0;
    for k in 1..3 {
        if vals[k] < vals[best] {
            best = k;
        }
    }
    (pts[best], -vals[best], converged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_finds_parabola_peak() {
        let (x, v) = maximize_1d(&|x: f64| -(x - 0.3).powi(2) + 2.0, -5.0, 5.0, 21);
        assert!((x - 0.3).abs() < 1e-6 && (v - 2.0).abs() < 1e-9);
    }

    #[test]
    fn nelder_mead_finds_rosenbrock_like_peak() {
        let f = |p: [f64; 2]| -((1.0 - p[0]).powi(2) + 10.0 * (p[1] - p[0] * p[0]).powi(2));
        let (p, _, ok) = maximize_2d(&f, [-1.0, 1.0], [0.5, 0.5]);
        assert!(ok && (p[0] - 1.0).abs() < 1e-3 && (p[1] - 1.0).abs() < 1e-3, "{p:?}");
    }
}
