//! The validated load program: a settle window followed by load / hold / unload segments, each a
//! linear ramp between two loads. The control loop walks it with a [`SetpointCursor`] (O(1) per
//! tick, no allocation); offline code can use [`LoadFunction::setpoint_at`].

use serde::{Deserialize, Serialize};

use crate::sample::Segment;

/// One linear segment of the load program.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LoadSegment {
    /// Load, hold or unload.
    pub kind: Segment,
    /// Start time in s since run start (settle included).
    pub start_s: f64,
    /// Duration in s (> 0).
    pub duration_s: f64,
    /// Load at the start of the segment in µN.
    pub start_load_un: f64,
    /// Load at the end of the segment in µN.
    pub target_load_un: f64,
}

impl LoadSegment {
    /// End time in s since run start.
    pub fn end_s(&self) -> f64 {
        self.start_s + self.duration_s
    }

    /// Setpoint in µN at time `t_s` (clamped to the segment).
    ///
    /// The fraction is taken with the reciprocal of the duration, not a division, so that this
    /// offline form and the control loop's [`SetpointCursor`] (which keeps the reciprocal per
    /// segment: a division per tick was ≈ 8 % of the loop's own time) give the same bits.
    #[inline]
    pub fn setpoint_un(&self, t_s: f64) -> f64 {
        ramp_un(self.start_s, 1.0 / self.duration_s, self.start_load_un, self.target_load_un - self.start_load_un, t_s)
    }

    /// Load rate in µN/s.
    pub fn rate_un_per_s(&self) -> f64 {
        (self.target_load_un - self.start_load_un) / self.duration_s
    }
}

/// The one formula for a point on a segment, shared by [`LoadSegment::setpoint_un`] and the cursor
/// so that they cannot drift apart.
#[inline(always)]
fn ramp_un(start_s: f64, inv_duration_per_s: f64, start_load_un: f64, span_un: f64, t_s: f64) -> f64 {
    let f = ((t_s - start_s) * inv_duration_per_s).clamp(0.0, 1.0);
    start_load_un + f * span_un
}

/// The whole program. Built only by config validation, so its invariants hold: positive
/// durations, contiguous segments, non-negative loads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadFunction {
    /// Settle window at the start, in s, held at `preload_un`.
    pub settle_s: f64,
    /// Contact load held during settle and where the first segment starts, µN.
    pub preload_un: f64,
    /// The segments, in order, starting at `settle_s`.
    pub segments: Vec<LoadSegment>,
}

impl LoadFunction {
    /// Build from (kind, duration, target) triples; the first starts from `preload_un` at
    /// `settle_s`. Callers validate the numbers first (see `config`).
    pub fn from_targets(settle_s: f64, preload_un: f64, spec: &[(Segment, f64, f64)]) -> Self {
        let mut segments = Vec::with_capacity(spec.len());
        let mut t = settle_s;
        let mut load = preload_un;
        for &(kind, duration_s, target_load_un) in spec {
            segments.push(LoadSegment { kind, start_s: t, duration_s, start_load_un: load, target_load_un });
            t += duration_s;
            load = target_load_un;
        }
        Self { settle_s, preload_un, segments }
    }

    /// Total program length in s (settle included).
    pub fn total_s(&self) -> f64 {
        self.segments.last().map_or(self.settle_s, LoadSegment::end_s)
    }

    /// Highest load anywhere in the program, µN.
    pub fn peak_load_un(&self) -> f64 {
        self.segments.iter().map(|s| s.target_load_un.max(s.start_load_un)).fold(self.preload_un, f64::max)
    }

    /// Segment and setpoint in µN at `t_s` (binary search; for offline use). Past the end:
    /// the last segment's final load.
    pub fn setpoint_at(&self, t_s: f64) -> (Segment, f64) {
        if t_s < self.settle_s || self.segments.is_empty() {
            return (Segment::Settle, self.preload_un);
        }
        let i = self.segments.partition_point(|s| s.end_s() <= t_s).min(self.segments.len() - 1);
        let s = &self.segments[i];
        (s.kind, s.setpoint_un(t_s))
    }

    /// A cursor for monotonically increasing times. Use it only with this load function.
    pub fn cursor(&self) -> SetpointCursor {
        let mut c = SetpointCursor {
            index: 0,
            kind: Segment::Settle,
            start_s: 0.0,
            end_s: f64::NEG_INFINITY,
            inv_duration_per_s: 0.0,
            start_load_un: 0.0,
            span_un: 0.0,
        };
        c.enter(self, 0);
        c
    }
}

/// Walks a [`LoadFunction`] forward in time in O(1) amortised per call.
///
/// It keeps the current segment's numbers (end time, reciprocal duration, span) so that a tick
/// costs a compare, a subtraction and two multiply-adds: no division, no bounds check.
#[derive(Debug, Clone, Copy)]
pub struct SetpointCursor {
    /// Index of the segment cached below; `segments.len()` once the program is over.
    index: usize,
    kind: Segment,
    start_s: f64,
    /// −∞ while no segment is cached (an empty program), so that every call looks further.
    end_s: f64,
    inv_duration_per_s: f64,
    start_load_un: f64,
    span_un: f64,
}

impl SetpointCursor {
    /// Cache segment `i` if there is one; false past the end.
    #[cold]
    fn enter(&mut self, lf: &LoadFunction, i: usize) -> bool {
        self.index = i.min(lf.segments.len());
        let Some(s) = lf.segments.get(i) else { return false };
        self.kind = s.kind;
        self.start_s = s.start_s;
        self.end_s = s.end_s();
        self.inv_duration_per_s = 1.0 / s.duration_s;
        self.start_load_un = s.start_load_un;
        self.span_un = s.target_load_un - s.start_load_un;
        true
    }

    /// Segment and setpoint at `t_s`, which must not decrease between calls. Returns `None` once
    /// the program is over.
    #[inline]
    pub fn at(&mut self, lf: &LoadFunction, t_s: f64) -> Option<(Segment, f64)> {
        if t_s < lf.settle_s {
            return Some((Segment::Settle, lf.preload_un));
        }
        while t_s >= self.end_s {
            if !self.enter(lf, self.index + 1) {
                return None;
            }
        }
        Some((self.kind, ramp_un(self.start_s, self.inv_duration_per_s, self.start_load_un, self.span_un, t_s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trapezoid() -> LoadFunction {
        LoadFunction::from_targets(
            2.0,
            0.0,
            &[(Segment::Load, 10.0, 6000.0), (Segment::Hold, 10.0, 6000.0), (Segment::Unload, 10.0, 0.0)],
        )
    }

    #[test]
    fn trapezoid_values() {
        let lf = trapezoid();
        assert_eq!(lf.total_s(), 32.0);
        assert_eq!(lf.peak_load_un(), 6000.0);
        assert_eq!(lf.setpoint_at(1.0), (Segment::Settle, 0.0));
        assert_eq!(lf.setpoint_at(7.0), (Segment::Load, 3000.0));
        assert_eq!(lf.setpoint_at(15.0), (Segment::Hold, 6000.0));
        assert_eq!(lf.setpoint_at(27.0), (Segment::Unload, 3000.0));
    }

    #[test]
    fn cursor_agrees_with_binary_search_and_ends() {
        let lf = trapezoid();
        let mut c = lf.cursor();
        for i in 0..32_000 {
            let t = i as f64 * 1e-3;
            assert_eq!(c.at(&lf, t), Some(lf.setpoint_at(t)), "t = {t}");
        }
        assert_eq!(c.at(&lf, 32.0), None);
    }

    /// The setpoint before the reciprocal (fast9): the fraction by a division.
    fn by_division_un(lf: &LoadFunction, t_s: f64) -> f64 {
        if t_s < lf.settle_s {
            return lf.preload_un;
        }
        let i = lf.segments.partition_point(|s| s.end_s() <= t_s).min(lf.segments.len() - 1);
        let s = &lf.segments[i];
        let f = ((t_s - s.start_s) / s.duration_s).clamp(0.0, 1.0);
        s.start_load_un + f * (s.target_load_un - s.start_load_un)
    }

    #[test]
    fn the_reciprocal_moves_the_demo_setpoint_by_at_most_two_ulps_of_its_peak() {
        // The demo program (config/demo.toml) at its own 1 kHz and at 100 kHz, every tick k · dt as
        // the loop takes it: the cursor's setpoint against the old division form.
        let cfg = crate::config::parse(include_str!("../../../config/demo.toml"), None).expect("demo parses");
        let lf = cfg.load_function.clone();
        let peak_un = lf.peak_load_un();
        // One unit in the last place of the peak load: the spacing of f64 near it.
        let ulp_un = f64::from_bits(peak_un.to_bits() + 1) - peak_un;
        for rate_hz in [1_000.0, 100_000.0] {
            let dt_s = 1.0 / rate_hz;
            let mut c = lf.cursor();
            let (mut worst_un, mut differing, mut k) = (0.0_f64, 0_u64, 0_u64);
            while let Some((_, sp)) = c.at(&lf, k as f64 * dt_s) {
                let d = (sp - by_division_un(&lf, k as f64 * dt_s)).abs();
                worst_un = worst_un.max(d);
                differing += u64::from(d != 0.0);
                k += 1;
            }
            eprintln!(
                "{rate_hz} Hz: {k} ticks, {differing} setpoints differ, largest by {worst_un:e} µN (ulp {ulp_un:e})"
            );
            assert_eq!(k as f64, (lf.total_s() * rate_hz).ceil(), "every tick of the program was compared");
            assert!(worst_un <= 2.0 * ulp_un, "{rate_hz} Hz: {worst_un:e} µN > 2 ulp ({ulp_un:e} µN)");
        }
    }
}
