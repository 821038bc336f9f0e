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

/// Golden-section refinement of a maximum bracketed by [a, b], knowing `best` = f(x_best).
fn golden(f: &impl Fn(f64) -> f64, mut a: f64, mut b: f64, x_best: f64, best: f64, tol: f64) -> (f64, f64) {
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let mut c = b - inv_phi * (b - a);
    let mut d = a + inv_phi * (b - a);
    let (mut fc, mut fd) = (f(c), f(d));
    let (mut xb, mut fb) = (x_best, best);
    for _ in 0..60 {
        if fc > fb {
            (xb, fb) = (c, fc);
        }
        if fd > fb {
            (xb, fb) = (d, fd);
        }
        if (b - a).abs() < tol {
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
    (xb, fb)
}

/// Maximise a unimodal `f` on [lo, hi] starting from `start`: walk uphill with doubling steps
/// until the value drops (or a bound is hit), then golden-section to `tol`. Warm starts make
/// this a few evaluations when the maximum moved little. Returns (argmax, max).
pub(crate) fn climb_max(f: &impl Fn(f64) -> f64, start: f64, step: f64, lo: f64, hi: f64, tol: f64) -> (f64, f64) {
    let x0 = start.clamp(lo, hi);
    let f0 = f(x0);
    let up = (x0 + step).min(hi);
    let f_up = if up > x0 { f(up) } else { f64::NEG_INFINITY };
    let (dir, mut prev, mut cur, mut f_cur) = if f_up > f0 {
        (1.0, x0, up, f_up)
    } else {
        let down = (x0 - step).max(lo);
        let f_down = if down < x0 { f(down) } else { f64::NEG_INFINITY };
        if f_down > f0 {
            (-1.0, x0, down, f_down)
        } else {
            return golden(f, down, up, x0, f0, tol);
        }
    };
    let mut s = step;
    loop {
        s *= 2.0;
        let next = if dir > 0.0 { (cur + s).min(hi) } else { (cur - s).max(lo) };
        if next == cur {
            return golden(f, prev.min(cur), prev.max(cur), cur, f_cur, tol);
        }
        let f_next = f(next);
        if f_next <= f_cur {
            return golden(f, prev.min(next), prev.max(next), cur, f_cur, tol);
        }
        prev = cur;
        cur = next;
        f_cur = f_next;
    }
}

/// Where `profile` falls to `target` between `best` (where it is above) and `bound`: outward
/// steps doubling from `step`, then Illinois regula falsi to `tol`. Returns `bound` when the
/// profile never falls that far.
pub(crate) fn crossing(
    profile: &impl Fn(f64) -> f64,
    best: f64,
    f_best: f64,
    bound: f64,
    target: f64,
    step: f64,
    tol: f64,
) -> f64 {
    let dir = if bound >= best { 1.0 } else { -1.0 };
    let (mut a, mut fa) = (best, f_best - target);
    let mut s = step;
    let (mut b, mut fb) = loop {
        let p = best + dir * s;
        if (p - bound) * dir >= 0.0 {
            let fv = profile(bound) - target;
            if fv >= 0.0 {
                return bound;
            }
            break (bound, fv);
        }
        let fv = profile(p) - target;
        if fv < 0.0 {
            break (p, fv);
        }
        (a, fa) = (p, fv);
        s *= 2.0;
    };
    // Invariant: fa ≥ 0 > fb.
    let mut side = 0i8;
    for _ in 0..60 {
        if (b - a).abs() < tol {
            break;
        }
        let m = if fb.is_finite() && fa.is_finite() && fa - fb > 0.0 {
            let t = a + fa * (b - a) / (fa - fb);
            // Keep well inside the bracket; fall back to bisection near its ends.
            let lo = a.min(b) + 0.05 * (b - a).abs();
            let hi = a.max(b) - 0.05 * (b - a).abs();
            if t > lo && t < hi {
                t
            } else {
                0.5 * (a + b)
            }
        } else {
            0.5 * (a + b)
        };
        let fm = profile(m) - target;
        if fm >= 0.0 {
            (a, fa) = (m, fm);
            if side == 1 {
                fb *= 0.5;
            }
            side = 1;
        } else {
            (b, fb) = (m, fm);
            if side == -1 {
                fa *= 0.5;
            }
            side = -1;
        }
    }
    0.5 * (a + b)
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
