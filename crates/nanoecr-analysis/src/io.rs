//! Thin I/O: turn a run file read by `nanoecr-store` into a [`RunInput`], optionally re-running
//! the detector on the raw samples instead of trusting the stored events.

use std::path::Path;

use nanoecr_core::config::DetectionConfig;
use nanoecr_core::Pillar;
use nanoecr_store::ColumnSelection;

use crate::run::RunInput;
use crate::AnalysisError;

/// Geometry assumed when a foreign file records none: the paper's typical 2 µm × 5 µm pillar.
pub const DEFAULT_PILLAR: Pillar =
    Pillar { diameter_um: 2.0, height_um: 5.0, poisson_ratio: 1.0 / 3.0, youngs_modulus_gpa: 88.0 };

/// Read a run file and build the analysis input. With `redetect`, events come from running the
/// detector (settings from the file's config, else defaults) over the stored columns.
pub fn load_run(path: &Path, redetect: bool) -> Result<RunInput, AnalysisError> {
    // Only what the analysis uses: current for the detector, else the live Δρ/ρ; never the
    // sequence numbers, setpoint or voltage.
    let cols = ColumnSelection {
        sequence: false,
        setpoint: false,
        current: redetect,
        voltage: false,
        segment: true,
        delta_rho: !redetect,
    };
    let mut rf = nanoecr_store::read_run_columns(path, cols)
        .map_err(|e| AnalysisError::Read { path: path.display().to_string(), message: e.to_string() })?;
    let cfg = rf.config_toml.as_deref().and_then(|t| nanoecr_core::config::parse(t, None).ok());
    let detection: DetectionConfig = cfg.as_ref().map(|c| c.raw.detection.clone()).unwrap_or_default();
    let rate_hz =
        rf.rate_hz.or_else(|| cfg.as_ref().map(|c| c.rate_hz())).unwrap_or_else(|| infer_rate(&rf.data.time_s));
    let settle_s = rf.settle_s.or_else(|| cfg.as_ref().map(|c| c.load_function.settle_s)).unwrap_or(0.0);
    let pillar = rf.pillar;
    let (delta_rho, events) = if redetect {
        let cols = nanoecr_detect::Columns {
            time_s: &rf.data.time_s,
            disp_nm: &rf.data.disp_nm,
            current_a: &rf.data.current_a,
            load_un: &rf.data.load_un,
            segment: &rf.data.segment,
        };
        nanoecr_detect::detect_columns(&detection, pillar, rate_hz, settle_s, cols)
    } else {
        (std::mem::take(&mut rf.data.delta_rho), std::mem::take(&mut rf.events))
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
