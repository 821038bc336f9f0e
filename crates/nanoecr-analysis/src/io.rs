//! Thin I/O: turn a run file read by `nanoecr-store` into a [`RunInput`], optionally re-running
//! the detector on the raw samples instead of trusting the stored events.

use std::path::Path;

use nanoecr_core::config::DetectionConfig;
use nanoecr_core::Pillar;
use nanoecr_detect::Columns;
use nanoecr_store::{BlockConsumer, ColumnSelection, RowBlock};

use crate::run::RunInput;
use crate::AnalysisError;

/// Geometry assumed when a foreign file records none: the paper's typical 2 µm × 5 µm pillar.
pub const DEFAULT_PILLAR: Pillar =
    Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };

/// Which sample columns [`load_run_with`] keeps in the [`RunInput`]; Δρ/ρ is always kept (one
/// value per row), the others are empty when left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptColumns {
    /// `time_s` (also what [`crate::analyze_run`] counts the samples by).
    pub time: bool,
    /// `disp_nm`.
    pub displacement: bool,
    /// `load_un` (the peak stress).
    pub load: bool,
    /// `segment`.
    pub segment: bool,
}

impl KeptColumns {
    /// Every column: what [`crate::analyze_run`] and the plots need.
    pub const ALL: Self = Self { time: true, displacement: true, load: true, segment: true };
    /// Δρ/ρ alone, for a caller that wants only the events and the noise (the peer bench): a
    /// re-detection then never holds the detector's input columns whole.
    pub const DELTA_RHO_ONLY: Self = Self { time: false, displacement: false, load: false, segment: false };
}

/// Read a run file and build the analysis input. With `redetect`, events come from running the
/// detector (settings from the file's config, else defaults) over the stored columns.
pub fn load_run(path: &Path, redetect: bool) -> Result<RunInput, AnalysisError> {
    load_run_with(path, redetect, KeptColumns::ALL)
}

/// [`load_run`], keeping only the columns `keep` selects (and Δρ/ρ). Re-detecting, a column not
/// kept only passes through the detector block by block: on a 100 kHz run, time, displacement
/// and load are 77 MB whose fresh pages the kernel would zero (a fifth of the peer bench's CPU,
/// docs/performance.md).
pub fn load_run_with(path: &Path, redetect: bool, keep: KeptColumns) -> Result<RunInput, AnalysisError> {
    // Only what the analysis uses: the live Δρ/ρ when not re-detecting; never the sequence
    // numbers, setpoint or voltage. Re-detecting, the detector takes the current block by block
    // as the file is read (reading and detecting overlap), so the column is never held whole.
    let cols = ColumnSelection {
        time: keep.time,
        displacement: keep.displacement,
        load: keep.load,
        sequence: false,
        setpoint: false,
        current: false,
        voltage: false,
        segment: keep.segment,
        delta_rho: !redetect,
    };
    let read_err =
        |e: nanoecr_store::StoreError| AnalysisError::Read { path: path.display().to_string(), message: e.to_string() };
    let (mut rf, streamed) = nanoecr_store::read_run_blocks(path, cols, |h| {
        if !redetect {
            return None;
        }
        let cfg = h.config_toml.as_deref().and_then(|t| nanoecr_core::config::parse(t, None).ok());
        // The rate must be known before the first row: a file without one recorded is read
        // whole first (below) and its rate taken from the time column.
        let rate_hz = h.rate_hz?;
        let settle_s = h.settle_s.or_else(|| cfg.as_ref().map(|c| c.load_function.settle_s)).unwrap_or(0.0);
        let detection = cfg.as_ref().map(|c| c.raw.detection.clone()).unwrap_or_default();
        Some(StreamingDetector::new(&detection, h.pillar, rate_hz, settle_s, h.rows))
    })
    .map_err(read_err)?;
    let cfg = rf.config_toml.as_deref().and_then(|t| nanoecr_core::config::parse(t, None).ok());
    let detection: DetectionConfig = cfg.as_ref().map(|c| c.raw.detection.clone()).unwrap_or_default();
    let rate_hz =
        rf.rate_hz.or_else(|| cfg.as_ref().map(|c| c.rate_hz())).unwrap_or_else(|| infer_rate(&rf.data.time_s));
    let settle_s = rf.settle_s.or_else(|| cfg.as_ref().map(|c| c.load_function.settle_s)).unwrap_or(0.0);
    let pillar = rf.pillar;
    let (delta_rho, events) = match (redetect, streamed) {
        (true, Some(det)) => det.finish(),
        (true, None) => {
            // No rate in the file: the current column is needed whole after all, and so are the
            // detector's other columns that were not kept.
            let missing = ColumnSelection {
                time: !keep.time,
                displacement: !keep.displacement,
                load: !keep.load,
                current: true,
                segment: !keep.segment,
                ..cols
            };
            let d = nanoecr_store::read_run_columns(path, missing).map_err(read_err)?.data;
            let cols = nanoecr_detect::Columns {
                time_s: if keep.time { &rf.data.time_s } else { &d.time_s },
                disp_nm: if keep.displacement { &rf.data.disp_nm } else { &d.disp_nm },
                current_a: &d.current_a,
                load_un: if keep.load { &rf.data.load_un } else { &d.load_un },
                segment: if keep.segment { &rf.data.segment } else { &d.segment },
            };
            nanoecr_detect::detect_columns(&detection, pillar, rate_hz, settle_s, cols)
        }
        (false, _) => (std::mem::take(&mut rf.data.delta_rho), std::mem::take(&mut rf.events)),
    };
    let sim_cfg = cfg.as_ref().filter(|_| rf.ground_truth.is_some()).map(|c| &c.raw.simulation);
    let sim = sim_cfg.map(|c| (c.alpha, c.xc));
    Ok(RunInput {
        path: path.display().to_string(),
        status: rf.status.name().to_string(),
        end_reason: rf.end_reason,
        pillar: Some(pillar),
        rate_hz,
        settle_s,
        time_s: rf.data.time_s,
        disp_nm: rf.data.disp_nm,
        load_un: rf.data.load_un,
        delta_rho,
        segment: rf.data.segment,
        events,
        ground_truth: rf.ground_truth,
        true_alpha: sim.map(|s| s.0),
        true_xc: sim.map(|s| s.1),
        detection,
        law_x_min: sim_cfg.map(|c| c.x_min),
        spike_duration_s: sim_cfg.map(|c| [c.spike_min_duration_s, c.spike_max_duration_s]),
    })
}

/// The detector fed block by block as [`nanoecr_store::read_run_blocks`] reads the file, straight
/// from the block's columns ([`nanoecr_detect::Detector::process_columns`], as
/// [`nanoecr_detect::detect_columns`] does; its results do not depend on how the rows are sliced),
/// so Δρ/ρ and the events are the same without building rows.
struct StreamingDetector {
    det: nanoecr_detect::Detector,
    delta_rho: Vec<f64>,
    events: Vec<nanoecr_core::Event>,
}

impl BlockConsumer for StreamingDetector {
    fn block(&mut self, b: RowBlock<'_>) {
        let cols = Columns {
            time_s: b.time_s,
            disp_nm: b.disp_nm,
            current_a: b.current_a,
            load_un: b.load_un,
            segment: b.segment,
        };
        let events = &mut self.events;
        self.det.process_columns(cols, &mut self.delta_rho, &mut |e| events.push(e));
    }
}

impl StreamingDetector {
    fn new(cfg: &DetectionConfig, pillar: Pillar, rate_hz: f64, settle_s: f64, rows: usize) -> Self {
        Self {
            det: nanoecr_detect::Detector::new(cfg, pillar, rate_hz, settle_s),
            delta_rho: Vec::with_capacity(rows),
            events: Vec::new(),
        }
    }

    fn finish(mut self) -> (Vec<f64>, Vec<nanoecr_core::Event>) {
        let events = &mut self.events;
        self.det.finish(&mut |e| events.push(e));
        (self.delta_rho, self.events)
    }
}

/// Sampling rate from the median time step (foreign files may not record it).
fn infer_rate(time_s: &[f64]) -> f64 {
    let d: Vec<f64> = time_s.windows(2).map(|w| w[1] - w[0]).filter(|v| *v > 0.0).collect();
    let m = crate::events::median(&d);
    if m.is_finite() && m > 0.0 {
        1.0 / m
    } else {
        1000.0
    }
}
