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

/// Maximise a unimodal `f` on [lo, hi] starting from `start`: walk uphill with doubling steps
/// until the value drops (or a bound is hit), then Brent's search (parabolic steps through the
/// three best points, golden section when a parabola misbehaves) to `tol`. The walk's points
/// seed the parabola, so with a warm start (the profiles, where the maximum moved little) the
/// first step usually lands on the maximum. Returns (argmax, max).
pub(crate) fn climb_max(f: &impl Fn(f64) -> f64, start: f64, step: f64, lo: f64, hi: f64, tol: f64) -> (f64, f64) {
    let x0 = start.clamp(lo, hi);
    let f0 = f(x0);
    let up = (x0 + step).min(hi);
    let f_up = if up > x0 { f(up) } else { f64::NEG_INFINITY };
    let (dir, mut prev, mut f_prev, mut cur, mut f_cur) = if f_up > f0 {
        (1.0, x0, f0, up, f_up)
    } else {
        let down = (x0 - step).max(lo);
        let f_down = if down < x0 { f(down) } else { f64::NEG_INFINITY };
        if f_down > f0 {
            (-1.0, x0, f0, down, f_down)
        } else {
            return brent_max(f, Point(down, f_down), Point(x0, f0), Point(up, f_up), tol);
        }
    };
    let mut s = step;
    loop {
        s *= 2.0;
        let next = if dir > 0.0 { (cur + s).min(hi) } else { (cur - s).max(lo) };
        if next == cur {
            return brent_max(f, Point(prev, f_prev), Point(cur, f_cur), Point(cur, f_cur), tol);
        }
        let f_next = f(next);
        if f_next <= f_cur {
            return brent_max(f, Point(prev, f_prev), Point(cur, f_cur), Point(next, f_next), tol);
        }
        (prev, f_prev) = (cur, f_cur);
        (cur, f_cur) = (next, f_next);
    }
}

/// An argument and its value.
#[derive(Clone, Copy)]
struct Point(f64, f64);

/// Brent's maximisation (Brent 1973, "Algorithms for Minimization without Derivatives", ch. 5,
/// as in Numerical Recipes' `brent`) on the bracket spanned by `a` and `c`, with `b` the best
/// point between them (`c` may equal `b` when the maximum sits on a bound). The bracket ends'
/// values seed the first parabola. Stops when the bracket around the best point is within
/// ≈ `tol`; returns the best point seen.
fn brent_max(f: &impl Fn(f64) -> f64, a: Point, b: Point, c: Point, tol: f64) -> (f64, f64) {
    const CGOLD: f64 = 0.381_966_011_250_105_1;
    let (mut lo, mut hi) = (a.0.min(c.0), a.0.max(c.0));
    let mut x = b;
    // w: second best, v: the previous w. Seeded with the bracket's ends, the better first.
    let (mut w, mut v) = if a.1 >= c.1 { (a, c) } else { (c, a) };
    // The "step before last" starts as the whole bracket, so the first step may be parabolic.
    let (mut d, mut e) = (hi - lo, hi - lo);
    let tol1 = 0.25 * tol;
    for _ in 0..100 {
        let xm = 0.5 * (lo + hi);
        if (x.0 - xm).abs() <= 2.0 * tol1 - 0.5 * (hi - lo) {
            break;
        }
        let mut golden = true;
        if e.abs() > tol1 && [x.1, w.1, v.1].iter().all(|y| y.is_finite()) {
            // Vertex of the parabola through x, w, v (NR's formula with f negated).
            let r = (x.0 - w.0) * (v.1 - x.1);
            let q0 = (x.0 - v.0) * (w.1 - x.1);
            let mut p = (x.0 - v.0) * q0 - (x.0 - w.0) * r;
            let mut q = 2.0 * (q0 - r);
            if q > 0.0 {
                p = -p;
            }
            q = q.abs();
            let e_prev = e;
            e = d;
            if p.abs() < (0.5 * q * e_prev).abs() && p > q * (lo - x.0) && p < q * (hi - x.0) {
                d = p / q;
                let u = x.0 + d;
                if u - lo < 2.0 * tol1 || hi - u < 2.0 * tol1 {
                    d = tol1.copysign(xm - x.0);
                }
                golden = false;
            }
        }
        if golden {
            e = if x.0 >= xm { lo - x.0 } else { hi - x.0 };
            d = CGOLD * e;
        }
        let u = if d.abs() >= tol1 { x.0 + d } else { x.0 + tol1.copysign(d) };
        let fu = Point(u, f(u));
        if fu.1 >= x.1 {
            if u >= x.0 {
                lo = x.0;
            } else {
                hi = x.0;
            }
            (v, w, x) = (w, x, fu);
        } else {
            if u < x.0 {
                lo = u;
            } else {
                hi = u;
            }
            if fu.1 >= w.1 || w.0 == x.0 {
                (v, w) = (w, fu);
            } else if fu.1 >= v.1 || v.0 == x.0 || v.0 == w.0 {
                v = fu;
            }
        }
    }
    (x.0, x.1)
}

/// Second derivatives [∂²/∂a², ∂²/∂b², ∂²/∂a∂b] of `f` at its maximum (a, b), value `fmax`, by
/// central differences with steps `da`, `db` (eight evaluations).
pub(crate) fn hessian_2d(f: &impl Fn(f64, f64) -> f64, a: f64, b: f64, fmax: f64, da: f64, db: f64) -> [f64; 3] {
    let haa = (f(a + da, b) - 2.0 * fmax + f(a - da, b)) / (da * da);
    let hbb = (f(a, b + db) - 2.0 * fmax + f(a, b - db)) / (db * db);
    let hab = (f(a + da, b + db) - f(a + da, b - db) - f(a - da, b + db) + f(a - da, b - db)) / (4.0 * da * db);
    [haa, hbb, hab]
}

/// How far from the maximum each parameter's profile falls by `drop`, if the log-likelihood
/// were the quadratic of Hessian `h` ([`hessian_2d`]): √(2 · drop · var) with var the diagonal
/// of −h⁻¹. `None` unless `h` is negative definite. Used to start the interval searches next
/// to their answer instead of stepping out from the maximum.
pub(crate) fn quadratic_reach(h: [f64; 3], drop: f64) -> Option<[f64; 2]> {
    let [haa, hbb, hab] = h;
    let det = haa * hbb - hab * hab;
    if !(haa < 0.0 && hbb < 0.0 && det > 0.0 && det.is_finite()) {
        return None;
    }
    Some([(2.0 * drop * -hbb / det).sqrt(), (2.0 * drop * -haa / det).sqrt()])
}

/// The first outward step of [`crossing`]: a little beyond `reach`, the quadratic model's
/// distance to the crossing ([`quadratic_reach`]), when known, else `step`. Profiles fall faster
/// than the quadratic away from the maximum about as often as slower: 10 % beyond, the first
/// point usually brackets the crossing closely.
pub(crate) fn first_step(reach: Option<f64>, step: f64) -> f64 {
    reach.filter(|r| r.is_finite() && *r > 0.0).map_or(step, |r| 1.1 * r)
}

/// Where `profile` falls to `target` between `best` (where it is above) and `bound`: outward
/// steps doubling from `step` ([`first_step`]), then Illinois regula falsi to `tol`. Returns
/// `bound` when the profile never falls that far.
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

    /// The warm-started climb finds the maximum of smooth unimodal functions from either side,
    /// at a bound, and when started on it, to its tolerance, in few evaluations.
    #[test]
    fn climb_max_finds_interior_and_boundary_maxima() {
        let calls = std::cell::Cell::new(0);
        let f = |x: f64| {
            calls.set(calls.get() + 1);
            -(x - 0.37).powi(2) - 0.3 * (x - 0.37).powi(4) + 2.0
        };
        for start in [-3.0, 0.0, 0.37, 0.4, 5.0] {
            calls.set(0);
            let (x, v) = climb_max(&f, start, 0.1, -10.0, 10.0, 1e-6);
            assert!((x - 0.37).abs() < 1e-6 && (v - 2.0).abs() < 1e-11, "from {start}: {x} {v}");
            assert!(calls.get() <= 30, "from {start}: {} evaluations", calls.get());
        }
        // Increasing on the box: the maximum is the upper bound.
        let (x, _) = climb_max(&|x: f64| x.ln_1p(), 0.5, 0.1, 0.0, 2.0, 1e-6);
        assert!((x - 2.0).abs() < 1e-6, "{x}");
        // Outside the domain the likelihoods are −∞: the search stays inside.
        let g = |x: f64| if x < 1.0 { -(x - 0.9).powi(2) } else { f64::NEG_INFINITY };
        let (x, v) = climb_max(&g, 0.5, 0.2, 0.0, 3.0, 1e-7);
        assert!((x - 0.9).abs() < 1e-6 && v.is_finite(), "{x} {v}");
    }

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
