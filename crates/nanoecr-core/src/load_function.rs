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
    #[inline]
    pub fn setpoint_un(&self, t_s: f64) -> f64 {
        let f = ((t_s - self.start_s) / self.duration_s).clamp(0.0, 1.0);
        self.start_load_un + f * (self.target_load_un - self.start_load_un)
    }

    /// Load rate in µN/s.
    pub fn rate_un_per_s(&self) -> f64 {
        (self.target_load_un - self.start_load_un) / self.duration_s
    }
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

    /// A cursor for monotonically increasing times.
    pub fn cursor(&self) -> SetpointCursor {
        SetpointCursor { index: 0 }
    }
}

/// Walks a [`LoadFunction`] forward in time in O(1) amortised per call.
#[derive(Debug, Clone, Copy)]
pub struct SetpointCursor {
    index: usize,
}

impl SetpointCursor {
    /// Segment and setpoint at `t_s`, which must not decrease between calls. Returns `None` once
    /// the program is over.
    #[inline]
    pub fn at(&mut self, lf: &LoadFunction, t_s: f64) -> Option<(Segment, f64)> {
        if t_s < lf.settle_s {
            return Some((Segment::Settle, lf.preload_un));
        }
        while let Some(s) = lf.segments.get(self.index) {
            if t_s < s.end_s() {
                return Some((s.kind, s.setpoint_un(t_s)));
            }
            self.index += 1;
        }
        None
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
}
