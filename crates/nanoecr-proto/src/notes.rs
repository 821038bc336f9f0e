//! Notifications pushed to subscribers. Each carries `run_id` and `sent_unix_s` (the daemon's
//! wall clock when it queued the line), so a client can tell runs apart and measure delivery
//! latency against the run's `t0_unix_s`.
//!
//! The payloads mirror `nanoecr_core`'s `Progress`, `Event`, `Sample` and `RunSummary` rather than
//! embedding them: the wire format stays stable when internal types change, and every float that
//! may be NaN is written as `null` (see [`crate::float`]).

use serde::{Deserialize, Serialize};

use nanoecr_core::{Event, EventKind, Progress, RunStatus, RunSummary, Sample, Segment, Sign};

/// Notification names.
pub mod names {
    /// A run started (sent to every subscriber). Payload: [`super::RunStartedNote`].
    pub const RUN_STARTED: &str = "run.started";
    /// Progress (≈ 10 Hz). Payload: [`super::ProgressNote`].
    pub const PROGRESS: &str = "progress";
    /// Decimated samples. Payload: [`super::SamplesNote`].
    pub const SAMPLES: &str = "samples";
    /// A detected event or interlock trip. Payload: [`super::EventNote`].
    pub const EVENT: &str = "event";
    /// The run ended and its file is closed. Payload: [`super::RunEndNote`].
    pub const RUN_END: &str = "run.end";
    /// Sent to a subscriber just before the daemon drops it. Payload: [`super::DroppedNote`].
    pub const DROPPED: &str = "subscriber.dropped";
}

/// `run.started`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStartedNote {
    /// Run number.
    pub run_id: u64,
    /// The file being written.
    pub file: String,
    /// Wall-clock time of run time 0, s since the Unix epoch.
    pub t0_unix_s: f64,
    /// Program length, s.
    pub total_s: f64,
    /// Samples a complete run writes.
    pub expected_samples: u64,
}

/// `progress`: a snapshot of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressNote {
    /// Run number.
    pub run_id: u64,
    /// When the daemon queued this line, s since the Unix epoch.
    pub sent_unix_s: f64,
    /// Run time, s.
    pub time_s: f64,
    /// Program length, s.
    pub total_s: f64,
    /// Current segment.
    pub segment: Segment,
    /// Load setpoint, µN.
    #[serde(with = "crate::float::nan_null")]
    pub setpoint_un: f64,
    /// Measured load, µN.
    #[serde(with = "crate::float::nan_null")]
    pub load_un: f64,
    /// Displacement, nm.
    #[serde(with = "crate::float::nan_null")]
    pub disp_nm: f64,
    /// Latest Δρ/ρ (`null` during settle).
    #[serde(with = "crate::float::nan_null")]
    pub delta_rho: f64,
    /// Samples written so far.
    pub samples: u64,
    /// Samples dropped so far (ring full).
    pub dropped: u64,
    /// p-type spikes so far.
    pub spikes_p: u64,
    /// n-type spikes so far.
    pub spikes_n: u64,
    /// Pop-ins so far.
    pub popins: u64,
    /// Ring occupancy, samples.
    pub ring_occupancy: u64,
}

impl ProgressNote {
    /// From the pipeline's snapshot.
    pub fn new(run_id: u64, sent_unix_s: f64, p: &Progress) -> Self {
        Self {
            run_id,
            sent_unix_s,
            time_s: p.time_s,
            total_s: p.total_s,
            segment: p.segment,
            setpoint_un: p.setpoint_un,
            load_un: p.load_un,
            disp_nm: p.disp_nm,
            delta_rho: p.delta_rho,
            samples: p.samples,
            dropped: p.dropped,
            spikes_p: p.spikes_p,
            spikes_n: p.spikes_n,
            popins: p.popins,
            ring_occupancy: p.ring_occupancy,
        }
    }

    /// Back to the pipeline's snapshot (what a client displays exactly as a local run does).
    pub fn progress(&self) -> Progress {
        Progress {
            time_s: self.time_s,
            total_s: self.total_s,
            segment: self.segment,
            setpoint_un: self.setpoint_un,
            load_un: self.load_un,
            disp_nm: self.disp_nm,
            delta_rho: self.delta_rho,
            samples: self.samples,
            dropped: self.dropped,
            spikes_p: self.spikes_p,
            spikes_n: self.spikes_n,
            popins: self.popins,
            ring_occupancy: self.ring_occupancy,
        }
    }
}

/// `event`: one detected event or interlock trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventNote {
    /// Run number.
    pub run_id: u64,
    /// When the daemon queued this line, s since the Unix epoch.
    pub sent_unix_s: f64,
    /// `spike`, `popin` or `interlock`.
    pub kind: EventKind,
    /// `p` or `n`.
    pub sign: Sign,
    /// Onset, s since run start.
    pub onset_time_s: f64,
    /// Peak, s since run start.
    pub peak_time_s: f64,
    /// Duration, s.
    pub duration_s: f64,
    /// Signed Δρ/ρ (spikes), displacement jump in nm (pop-ins), tripped value (interlocks).
    #[serde(with = "crate::float::nan_null")]
    pub magnitude: f64,
    /// Pop-ins: the linked spike's peak Δρ/ρ (`null` if none).
    #[serde(with = "crate::float::nan_null")]
    pub linked_delta_rho: f64,
    /// Segment at onset.
    pub segment: Segment,
    /// Engineering stress at onset, MPa.
    #[serde(with = "crate::float::nan_null")]
    pub stress_mpa: f64,
}

impl EventNote {
    /// From a pipeline event.
    pub fn new(run_id: u64, sent_unix_s: f64, e: &Event) -> Self {
        Self {
            run_id,
            sent_unix_s,
            kind: e.kind,
            sign: e.sign,
            onset_time_s: e.onset_time_s,
            peak_time_s: e.peak_time_s,
            duration_s: e.duration_s,
            magnitude: e.magnitude,
            linked_delta_rho: e.linked_delta_rho,
            segment: e.segment,
            stress_mpa: e.stress_mpa,
        }
    }
}

/// `samples`: a decimated batch, column by column (compact, and easy to plot).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SamplesNote {
    /// Run number.
    pub run_id: u64,
    /// When the daemon queued this line, s since the Unix epoch.
    pub sent_unix_s: f64,
    /// Sequence numbers.
    pub seq: Vec<u64>,
    /// Run time, s.
    #[serde(with = "crate::float::nan_null_vec")]
    pub time_s: Vec<f64>,
    /// Setpoint, µN.
    #[serde(with = "crate::float::nan_null_vec")]
    pub setpoint_un: Vec<f64>,
    /// Load, µN.
    #[serde(with = "crate::float::nan_null_vec")]
    pub load_un: Vec<f64>,
    /// Displacement, nm.
    #[serde(with = "crate::float::nan_null_vec")]
    pub disp_nm: Vec<f64>,
    /// Current, A.
    #[serde(with = "crate::float::nan_null_vec")]
    pub current_a: Vec<f64>,
    /// Voltage, V.
    #[serde(with = "crate::float::nan_null_vec")]
    pub voltage_v: Vec<f64>,
    /// Segment codes (0 settle, 1 load, 2 hold, 3 unload, 4 safe unload).
    pub segment: Vec<u8>,
    /// Smallest Δρ/ρ of the samples this kept sample stands for (it and the skipped ones up to
    /// the next kept one; `null` during settle). Empty from daemons older than this field.
    #[serde(default, with = "crate::float::nan_null_vec")]
    pub delta_rho_min: Vec<f64>,
    /// Largest Δρ/ρ of the same samples: with `delta_rho_min` an envelope in which a spike of
    /// one sample stays visible however many samples are skipped.
    #[serde(default, with = "crate::float::nan_null_vec")]
    pub delta_rho_max: Vec<f64>,
}

impl SamplesNote {
    /// From a decimated batch.
    pub fn new(run_id: u64, sent_unix_s: f64, batch: &[Sample]) -> Self {
        let mut n = Self { run_id, sent_unix_s, ..Default::default() };
        for s in batch {
            n.seq.push(s.seq);
            n.time_s.push(s.time_s);
            n.setpoint_un.push(s.setpoint_un);
            n.load_un.push(s.load_un);
            n.disp_nm.push(s.disp_nm);
            n.current_a.push(s.current_a);
            n.voltage_v.push(s.voltage_v);
            n.segment.push(s.segment.code());
        }
        n
    }

    /// With the Δρ/ρ envelope of each kept sample (same length as the batch).
    pub fn with_delta_rho(mut self, min: &[f64], max: &[f64]) -> Self {
        self.delta_rho_min = min.to_vec();
        self.delta_rho_max = max.to_vec();
        self
    }
}

/// The end-of-run summary on the wire (mirror of `nanoecr_core::RunSummary`, NaN-safe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // Field by field the same as `nanoecr_core::RunSummary`, documented there.
pub struct WireSummary {
    pub file: String,
    pub status: RunStatus,
    pub end_reason: String,
    pub samples: u64,
    pub dropped: u64,
    #[serde(with = "crate::float::nan_null")]
    pub duration_s: f64,
    #[serde(with = "crate::float::nan_null")]
    pub wall_s: f64,
    pub ticks: u64,
    #[serde(with = "crate::float::nan_null")]
    pub lateness_p50_us: f64,
    #[serde(with = "crate::float::nan_null")]
    pub lateness_p99_us: f64,
    #[serde(with = "crate::float::nan_null")]
    pub lateness_max_us: f64,
    pub missed_deadlines: u64,
    #[serde(default)]
    pub moved_ticks: u64,
    #[serde(default)]
    pub skipped_ticks: u64,
    pub paced: bool,
    pub realtime_scheduling: bool,
    #[serde(with = "crate::float::nan_null")]
    pub load_tracking_rms_un: f64,
    #[serde(with = "crate::float::nan_null")]
    pub peak_load_un: f64,
    pub spikes_p: u64,
    pub spikes_n: u64,
    pub popins: u64,
    pub interlocks: u64,
    pub spikes_by_segment: Vec<(String, u64, u64)>,
    pub ground_truth_events: u64,
}

impl From<&RunSummary> for WireSummary {
    fn from(s: &RunSummary) -> Self {
        Self {
            file: s.file.clone(),
            status: s.status,
            end_reason: s.end_reason.clone(),
            samples: s.samples,
            dropped: s.dropped,
            duration_s: s.duration_s,
            wall_s: s.wall_s,
            ticks: s.ticks,
            lateness_p50_us: s.lateness_p50_us,
            lateness_p99_us: s.lateness_p99_us,
            lateness_max_us: s.lateness_max_us,
            missed_deadlines: s.missed_deadlines,
            moved_ticks: s.moved_ticks,
            skipped_ticks: s.skipped_ticks,
            paced: s.paced,
            realtime_scheduling: s.realtime_scheduling,
            load_tracking_rms_un: s.load_tracking_rms_un,
            peak_load_un: s.peak_load_un,
            spikes_p: s.spikes_p,
            spikes_n: s.spikes_n,
            popins: s.popins,
            interlocks: s.interlocks,
            spikes_by_segment: s.spikes_by_segment.clone(),
            ground_truth_events: s.ground_truth_events,
        }
    }
}

/// `run.end`: the run ended and its file is closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEndNote {
    /// Run number.
    pub run_id: u64,
    /// When the daemon queued this line, s since the Unix epoch.
    pub sent_unix_s: f64,
    /// The run file.
    pub file: String,
    /// Final status (`failed` when the pipeline itself failed and there is no summary).
    pub status: RunStatus,
    /// The summary (absent when the pipeline failed; see `error`).
    pub summary: Option<WireSummary>,
    /// What went wrong, when the pipeline failed.
    pub error: Option<String>,
}

/// `subscriber.dropped`: this connection could not keep up and is being closed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DroppedNote {
    /// Why.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_carries_the_stall_counts_and_an_older_record_reads_as_zero() {
        // A `run.end` summary as daemons wrote it before the counts existed
        // (docs/socket-protocol.md's example).
        let old = r#"{"dropped":0,"duration_s":1.2,"end_reason":"completed","file":"r.h5","ground_truth_events":0,
            "interlocks":0,"lateness_max_us":814.5,"lateness_p50_us":0.6,"lateness_p99_us":125.0,
            "load_tracking_rms_un":10.2,"missed_deadlines":0,"paced":true,"peak_load_un":6000.0,"popins":0,
            "realtime_scheduling":true,"samples":1201,"spikes_by_segment":[["load",0,0]],"spikes_n":0,
            "spikes_p":0,"status":"complete","ticks":1201,"wall_s":1.2}"#;
        let mut w: WireSummary = serde_json::from_str(old).expect("an older summary still reads");
        assert_eq!((w.moved_ticks, w.skipped_ticks), (0, 0));
        let core: RunSummary = serde_json::from_str(old).expect("and as the core's summary");
        assert_eq!((core.moved_ticks, core.skipped_ticks), (0, 0));
        w.moved_ticks = 148;
        w.skipped_ticks = 3;
        let text = serde_json::to_string(&w).expect("serialise");
        assert!(text.contains(r#""moved_ticks":148"#) && text.contains(r#""skipped_ticks":3"#), "{text}");
        let core = RunSummary { moved_ticks: 7, skipped_ticks: 2, ..core };
        assert_eq!((WireSummary::from(&core).moved_ticks, WireSummary::from(&core).skipped_ticks), (7, 2));
    }
}
