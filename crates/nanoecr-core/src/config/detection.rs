//! `[detection]`: the streaming spike and pop-in detector. Defaults are the paper's criteria
//! (|Δρ/ρ| ≥ 5 × 10⁻⁴ at a noise of 1 × 10⁻⁴: five sigma; pop-ins > 2 nm, up to ≈ 8 ms).

use serde::{Deserialize, Serialize};

use super::check::{positive, within};
use super::error::ConfigError;

/// Detector thresholds and windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// A spike starts when |Δρ/ρ − baseline| exceeds this many robust sigmas.
    pub threshold_sigma: f64,
    /// …and ends when it falls back below this many sigmas (hysteresis).
    pub release_sigma: f64,
    /// A spike that starts at most this long after the previous one ended, with the same sign,
    /// continues it, s: at high sampling rates noise dips a near-threshold spike under the
    /// release threshold for a few samples and would split it. Shorter than one sample period
    /// (as at the paper's 1 kHz) never merges.
    pub merge_gap_s: f64,
    /// A spike must stay above its release threshold for at least this long, s, or it is noise:
    /// real spikes last 1–1.5 ms, a noise excursion past 5σ lasts one sample. Counted in whole
    /// samples; shorter than one sample period (as at the paper's 1 kHz) rejects nothing.
    pub min_duration_s: f64,
    /// Window of the running mean of the residual that confirms a spike, s: an event a raw
    /// sample opens counts only once this mean reaches `threshold_sigma` times its own robust σ
    /// (white noise drops by √(window samples), a spike longer than the window does not), and it
    /// stays open while either is above release. Counted in whole samples; under two (as at the
    /// paper's 1 kHz) it is off.
    pub smooth_window_s: f64,
    /// Absolute floor on the start threshold, Δρ/ρ (the paper's 5 × 10⁻⁴).
    pub min_magnitude: f64,
    /// Window of the trailing baseline, s.
    pub baseline_window_s: f64,
    /// Window of the robust noise estimate, s.
    pub noise_window_s: f64,
    /// Pop-in: displacement jump above the trend, nm.
    pub popin_threshold_nm: f64,
    /// Pop-in: longest duration of the jump, s.
    pub popin_max_duration_s: f64,
    /// Detect the end of the settle window from the current (Ohmic contact) as well as honouring
    /// `acquisition.settle_s`.
    pub detect_contact: bool,
    /// Mains frequency whose pick-up the detector estimates (lock-in) and subtracts from the
    /// residual before thresholding, Hz; 0 turns the canceller off. Also rounds the baseline
    /// window to whole mains periods so the baseline itself carries no mains ripple.
    pub mains_hz: f64,
    /// Harmonics of `mains_hz` (2f, 3f, …) the canceller tracks as well as the fundamental, 0–7;
    /// those at or above half the sampling rate are left out. Each costs detector throughput
    /// (the default 1 keeps ≥ 50 M samples/s; 3 measured ≈ 20 % slower).
    pub mains_harmonics: u32,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            threshold_sigma: 5.0,
            release_sigma: 2.0,
            merge_gap_s: 9e-4,
            min_duration_s: 2e-4,
            smooth_window_s: 2e-4,
            min_magnitude: 5e-4,
            baseline_window_s: 0.05,
            noise_window_s: 1.0,
            popin_threshold_nm: 2.0,
            popin_max_duration_s: 0.008,
            detect_contact: true,
            mains_hz: 50.0,
            mains_harmonics: 1,
        }
    }
}

impl DetectionConfig {
    /// Check every value; `rate_hz` is the acquisition rate.
    pub fn validate(&self, rate_hz: f64) -> Result<(), ConfigError> {
        let k = |f: &str| format!("detection.{f}");
        within(&k("threshold_sigma"), self.threshold_sigma, 1.0, 100.0, "threshold")?;
        within(&k("release_sigma"), self.release_sigma, 0.0, self.threshold_sigma, "release threshold")?;
        within(&k("merge_gap_s"), self.merge_gap_s, 0.0, 0.01, "merge gap")?;
        within(&k("min_duration_s"), self.min_duration_s, 0.0, 0.001, "minimum spike duration")?;
        // Up to a spike's shortest duration: a longer mean would flatten the spikes themselves.
        within(&k("smooth_window_s"), self.smooth_window_s, 0.0, 0.001, "smoothing window")?;
        within(&k("min_magnitude"), self.min_magnitude, 0.0, 1.0, "minimum magnitude")?;
        positive(&k("baseline_window_s"), self.baseline_window_s, "baseline window")?;
        positive(&k("noise_window_s"), self.noise_window_s, "noise window")?;
        positive(&k("popin_threshold_nm"), self.popin_threshold_nm, "pop-in threshold")?;
        positive(&k("popin_max_duration_s"), self.popin_max_duration_s, "pop-in duration")?;
        // Above Nyquist the lock-in would lock onto an alias; 0 is the documented "off".
        let nyquist_hz = if rate_hz.is_finite() && rate_hz > 0.0 { rate_hz / 2.0 } else { f64::MAX };
        within(&k("mains_hz"), self.mains_hz, 0.0, nyquist_hz, "mains frequency")?;
        within(&k("mains_harmonics"), f64::from(self.mains_harmonics), 0.0, 7.0, "number of mains harmonics")?;
        Ok(())
    }
}
