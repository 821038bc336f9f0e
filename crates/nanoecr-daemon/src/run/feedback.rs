//! How old the load feedback is, for a frame that samples on its own clock.
//!
//! After a host stall a device-clocked frame's FIFO holds every sample of the stall, and they
//! arrive a bounded block per tick (the Modbus backend reads 8 × 15 per call), oldest first. The
//! newest sample of such a block describes the pillar as it was up to a second ago, while the
//! setpoint has moved on: a PI loop that integrates that error winds up to its clamp (the limit
//! load) within a few ticks and drives the frame to its overload trip. A shake of the HIL tests
//! under CPU load did exactly that, also during a safe unload. So the loop asks this tracker
//! whether the feedback is current before it lets the load error act, and holds the correction
//! while it is not.
//!
//! Frame time and host time have no common origin and drift apart by the two crystals' ppm, so
//! "current" is judged against the youngest the feedback has lately been: the age of each sample
//! when it arrives (host time − sample time) is tracked as a minimum over the last one to two
//! blocks of [`BLOCK_S`], and the feedback is stale when its age now exceeds that minimum by more
//! than the limit. A stall only ever raises ages, so the minimum keeps the pre-stall value while
//! the backlog drains; a step in the device's clock is absorbed within two blocks. O(1), no
//! allocation.

/// Length of a block of the running minimum, s.
const BLOCK_S: f64 = 0.5;

/// Tracks the age of the newest frame sample against its recent minimum.
#[derive(Debug, Clone)]
pub(crate) struct FeedbackAge {
    limit_s: f64,
    block_start_s: f64,
    block_min_s: f64,
    prev_block_min_s: f64,
    newest_sample_s: Option<f64>,
}

impl FeedbackAge {
    /// Feedback older than its recent minimum by more than `limit_s` is stale.
    pub(crate) fn new(limit_s: f64) -> Self {
        Self {
            limit_s,
            block_start_s: f64::NEG_INFINITY,
            block_min_s: f64::INFINITY,
            prev_block_min_s: f64::INFINITY,
            newest_sample_s: None,
        }
    }

    /// The newest sample of an acquisition, taken at `sample_s` in the frame's clock, arrived at
    /// `now_s` in the host's.
    pub(crate) fn arrived(&mut self, now_s: f64, sample_s: f64) {
        if now_s - self.block_start_s >= BLOCK_S {
            self.prev_block_min_s = self.block_min_s;
            self.block_min_s = f64::INFINITY;
            self.block_start_s = now_s;
        }
        self.block_min_s = self.block_min_s.min(now_s - sample_s);
        self.newest_sample_s = Some(sample_s);
    }

    /// By how much the newest sample is older at `now_s` than the feedback has lately been, s
    /// (0 before the first sample).
    pub(crate) fn excess_s(&self, now_s: f64) -> f64 {
        match self.newest_sample_s {
            Some(sample_s) => {
                let youngest_s = self.block_min_s.min(self.prev_block_min_s);
                ((now_s - sample_s) - youngest_s).max(0.0)
            }
            None => 0.0,
        }
    }

    /// Whether the newest sample is current enough at `now_s` for the load error to act on.
    pub(crate) fn fresh(&self, now_s: f64) -> bool {
        self.excess_s(now_s) <= self.limit_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 kHz, one sample per tick arriving `latency_s` after it was taken, in a device clock that
    /// starts `offset_s` after the host's.
    fn steady(a: &mut FeedbackAge, from_s: f64, to_s: f64, offset_s: f64, latency_s: f64) {
        let mut t = from_s;
        while t < to_s {
            a.arrived(t + latency_s, t - offset_s);
            assert!(a.fresh(t + latency_s), "steady feedback judged stale at {t} s");
            t += 1e-3;
        }
    }

    #[test]
    fn steady_feedback_is_fresh_whatever_the_clocks_offset() {
        for offset_s in [-1e3, 0.0, 3.5] {
            let mut a = FeedbackAge::new(5e-3);
            steady(&mut a, 0.0, 2.0, offset_s, 0.4e-3);
        }
    }

    #[test]
    fn the_backlog_of_a_stall_is_stale_until_it_has_drained() {
        let mut a = FeedbackAge::new(5e-3);
        steady(&mut a, 0.0, 1.0, 0.0, 0.4e-3);
        // A 2 s host stall: the device sampled on; the backlog then arrives 120 samples a tick,
        // one tick per ms of host time, oldest first.
        let stall_end_s = 3.0;
        let mut next_sample_s: f64 = 1.0;
        let mut now_s = stall_end_s;
        let mut stale_ticks = 0;
        while next_sample_s < now_s - 1e-3 {
            next_sample_s += 0.120;
            let newest = next_sample_s.min(now_s - 0.4e-3);
            a.arrived(now_s, newest);
            if !a.fresh(now_s) {
                stale_ticks += 1;
            }
            now_s += 1e-3;
        }
        // 2 s of backlog at 120 ms per tick, gaining 1 ms per tick: stale for ≈ 16 ticks, then
        // fresh again once the newest sample is current.
        assert!((14..=18).contains(&stale_ticks), "{stale_ticks}");
        a.arrived(now_s, now_s - 0.4e-3);
        assert!(a.fresh(now_s));
    }

    #[test]
    fn feedback_that_stops_arriving_goes_stale() {
        let mut a = FeedbackAge::new(5e-3);
        steady(&mut a, 0.0, 1.0, 0.0, 0.4e-3);
        assert!(a.fresh(1.004));
        assert!(!a.fresh(1.010), "excess {}", a.excess_s(1.010));
    }

    #[test]
    fn a_step_in_the_device_clock_is_absorbed_within_two_blocks() {
        let mut a = FeedbackAge::new(5e-3);
        steady(&mut a, 0.0, 1.0, 0.0, 0.4e-3);
        // The device's timestamps jump 50 ms back (a clock step or a reset counter).
        let mut stale = 0;
        let mut t = 1.0;
        while t < 2.5 {
            a.arrived(t + 0.4e-3, t - 0.05);
            if !a.fresh(t + 0.4e-3) {
                stale += 1;
            }
            t += 1e-3;
        }
        assert!(stale > 0 && stale as f64 <= 2.0 * BLOCK_S / 1e-3 + 1.0, "{stale}");
        assert!(a.fresh(t - 1e-3 + 0.4e-3));
    }

    #[test]
    fn before_the_first_sample_the_feedback_is_not_judged() {
        let a = FeedbackAge::new(5e-3);
        assert_eq!(a.excess_s(123.0), 0.0);
        assert!(a.fresh(123.0));
    }
}
