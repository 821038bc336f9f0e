//! The run config of one robustness-matrix run, shared by the examples that simulate the matrix
//! (`matrix`, `sign_audit`), so that they simulate the same runs.

use anyhow::{Context, Result};
use nanoecr_core::config::SpikeShape;
use nanoecr_sim::matrix::{cell_config, NoiseFamily};

/// Bias voltage of every matrix run, V.
pub const VOLTAGE_V: f64 = 5.0;
/// Settle before the load function, s.
pub const SETTLE_S: f64 = 2.0;
/// Peak load of the paper's trapezoid, µN.
pub const PEAK_UN: f64 = 6000.0;

/// The demo rig with the cell's simulation: load, hold and unload of `segment_s` each at
/// `rate_hz`, and a `[detection]` table when `detection` is given (else the defaults).
pub fn run_config_text(
    shape: SpikeShape,
    family: NoiseFamily,
    seed: u64,
    rate_hz: f64,
    segment_s: f64,
    detection: Option<&str>,
) -> Result<String> {
    let sim = toml::to_string(&cell_config(shape, family, seed)).context("encoding [simulation]")?;
    let detection = detection.map_or_else(String::new, |d| format!("[detection]\n{d}\n\n"));
    Ok(format!(
        "[sample]\nmaterial = \"Zr55Cu30Ni5Al10\"\ndiameter_um = 2.0\nheight_um = 5.0\npoisson_ratio = 0.333\n\
         youngs_modulus_gpa = 88.0\n\n[load_function]\npeak_load_un = {PEAK_UN:?}\nload_s = {s:?}\nhold_s = {s:?}\n\
         unload_s = {s:?}\n\n[bias]\nvoltage_v = {VOLTAGE_V:?}\ncompliance_a = 1e-4\n\n[acquisition]\n\
         rate_hz = {rate:?}\nsettle_s = {SETTLE_S:?}\n\n[limits]\nmax_load_un = 8000.0\nmax_displacement_nm = 600.0\n\n\
         [hardware]\nbackend = \"sim\"\n\n{detection}[simulation]\n{sim}",
        s = segment_s,
        rate = rate_hz,
    ))
}
