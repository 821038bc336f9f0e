//! The `devices` backend: a [`ModbusLoadFrame`] and the source-measure unit `[hardware.smu]
//! model` names — [`Keithley2450`], [`KeysightB2900`] or the in-house [`ScpiSourceMeter`] — over
//! the configured transport, under the logical names `LOADFRAME0` and `SMU0`.

use std::time::Duration;

use nanoecr_core::config::hardware::{SmuConfig, SmuModel};
use nanoecr_core::RunConfig;

use crate::keithley::Keithley2450;
use crate::keysight::KeysightB2900;
use crate::modbus::ModbusLoadFrame;
use crate::nanoecr_scpi::ScpiSourceMeter;
use crate::scpi::{RunPlan, ScpiClient};
use crate::{HwError, Rig, SourceMeter};

/// Logical name of the load frame.
pub const FRAME_NAME: &str = "LOADFRAME0";
/// Logical name of the source-measure unit.
pub const SMU_NAME: &str = "SMU0";

/// The name a meter reports in errors: logical name, model and link, e.g.
/// `SMU0 (keithley-2450 tcp 10.0.0.5:5025)`.
pub fn smu_label(name: &str, cfg: &SmuConfig, link: &str) -> String {
    let model = cfg.model.map_or("unknown model", SmuModel::as_str);
    format!("{name} ({model} {link})")
}

/// Open the link of `cfg` (retried per config) and wrap it in a SCPI client.
pub fn connect(name: &str, cfg: &SmuConfig) -> Result<ScpiClient, HwError> {
    let mut last = None;
    for _ in 0..=cfg.retries {
        match crate::transport::open(cfg) {
            Ok(link) => {
                let device = smu_label(name, cfg, link.describe());
                return Ok(ScpiClient::new(
                    device,
                    link,
                    cfg.terminator.as_str(),
                    Duration::from_millis(cfg.timeout_ms),
                    cfg.retries,
                ));
            }
            Err(e) => last = Some(e),
        }
    }
    let target = match cfg.transport {
        nanoecr_core::config::hardware::SmuTransport::Tcp => {
            format!("tcp {}:{}", cfg.address.as_deref().unwrap_or("?"), cfg.port)
        }
        t => format!("{} {}", t.as_str(), cfg.device_path().unwrap_or("?")),
    };
    Err(HwError::Transport {
        device: smu_label(name, cfg, &target),
        operation: "connecting".into(),
        source: last.unwrap_or_else(|| std::io::Error::other("no attempt made")),
    })
}

/// Open the meter a validated config names (identity checked; nothing switched on).
pub fn open_smu(cfg: &RunConfig) -> Result<Box<dyn SourceMeter>, HwError> {
    let smu = &cfg.raw.hardware.smu;
    let plan = RunPlan { rate_hz: cfg.rate_hz(), readings: cfg.smu_readings_needed() };
    Ok(match smu.model {
        Some(SmuModel::Keithley2450) => Box::new(Keithley2450::open(SMU_NAME, smu, plan)?),
        Some(SmuModel::KeysightB2900) => Box::new(KeysightB2900::open(SMU_NAME, smu, plan)?),
        // Validation requires a model for `devices`; a config built in code without one gets
        // the dialect of the repository's own shim, as before models existed.
        Some(SmuModel::NanoecrScpi) | None => Box::new(ScpiSourceMeter::open(SMU_NAME, smu)?),
    })
}

/// Connect both instruments of a validated run config (fails on the first that cannot be
/// reached; nothing is armed or switched on here).
pub fn rig(cfg: &RunConfig) -> Result<Rig, HwError> {
    let hw = &cfg.raw.hardware;
    let frame = ModbusLoadFrame::connect(FRAME_NAME, &hw.loadframe, cfg.rate_hz())?;
    let smu = open_smu(cfg)?;
    Ok(Rig { frame: Box::new(frame), smu })
}
