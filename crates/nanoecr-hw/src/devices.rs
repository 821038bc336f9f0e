//! The `devices` backend: a [`ModbusLoadFrame`] and a [`ScpiSourceMeter`] opened from
//! `[hardware.loadframe]` and `[hardware.smu]`, under the logical names `LOADFRAME0` and `SMU0`.

use nanoecr_core::RunConfig;

use crate::modbus::ModbusLoadFrame;
use crate::scpi::ScpiSourceMeter;
use crate::{HwError, Rig};

/// Logical name of the load frame.
pub const FRAME_NAME: &str = "LOADFRAME0";
/// Logical name of the source-measure unit.
pub const SMU_NAME: &str = "SMU0";

/// Connect both instruments of a validated run config (fails on the first that cannot be
/// reached; nothing is armed or switched on here).
pub fn rig(cfg: &RunConfig) -> Result<Rig, HwError> {
    let hw = &cfg.raw.hardware;
    let frame = ModbusLoadFrame::connect(FRAME_NAME, &hw.loadframe, cfg.rate_hz())?;
    let smu = ScpiSourceMeter::open(SMU_NAME, &hw.smu)?;
    Ok(Rig { frame: Box::new(frame), smu: Box::new(smu) })
}
