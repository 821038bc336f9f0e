//! # nanoecr-hw
//!
//! The two instruments of a NanoECR rig behind traits, so one control loop drives every backend:
//!
//! - [`LoadFrame`]: the load-frame controller (actuator command, load and displacement samples);
//! - [`SourceMeter`]: the source-measure unit (constant bias, current samples).
//!
//! Both follow the frame's sample clock (a shared trigger). Frame samples carry its sequence
//! number; the simulated meter and the in-house dialect tag their readings with it, while a real
//! meter's i-th buffered reading belongs to frame sample i ([`SmuPacing`]); the control loop
//! merges them either way. Backends: [`sim`] (the simulated rig, in-process), and the real
//! protocols: [`modbus`] for the frame (docs/register-map.md) and, for the meter, a Keithley
//! 2450 ([`keithley`]), a Keysight B2900 ([`keysight`]) or the in-house dialect
//! ([`nanoecr_scpi`]), all on one [`scpi`] client over one of the [`transport`]s (TCP, USB-TMC,
//! serial); [`devices`] joins them. [`open_rig`] picks one from the config.

pub mod devices;
pub mod error;
pub mod fault;
pub mod keithley;
pub mod keysight;
pub mod modbus;
pub mod nanoecr_scpi;
pub mod scpi;
pub mod sim;
pub mod transport;

pub use error::HwError;

use nanoecr_core::config::hardware::Backend;
use nanoecr_core::{Event, RunConfig, Segment};

/// Open the rig a validated config asks for: the simulated rig for `backend = "sim"`, the Modbus
/// frame and SCPI meter for `backend = "devices"` (connected, not yet armed).
pub fn open_rig(cfg: &RunConfig) -> Result<Rig, HwError> {
    match cfg.raw.hardware.backend {
        Backend::Sim => Ok(sim::rig(cfg)),
        Backend::Devices => devices::rig(cfg),
    }
}

/// Identification of an instrument.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// Logical name in the rig (e.g. `LOADFRAME0`, `SMU0`).
    pub name: String,
    /// Manufacturer.
    pub vendor: String,
    /// Model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Firmware version.
    pub firmware: String,
}

/// One load-frame sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FrameReading {
    /// Shared-trigger sequence number.
    pub seq: u64,
    /// Device time since arming, s.
    pub time_s: f64,
    /// Load, µN.
    pub load_un: f64,
    /// Displacement, nm.
    pub disp_nm: f64,
}

/// One source-measure-unit sample.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SmuReading {
    /// Shared-trigger sequence number.
    pub seq: u64,
    /// Current, A.
    pub current_a: f64,
    /// Sourced voltage, V.
    pub voltage_v: f64,
    /// The meter is limiting current at its compliance.
    pub compliance: bool,
    /// The meter's own timestamp of the reading, s, from an origin of its choosing (NaN when the
    /// backend has none). The control loop compares it with the frame's sample times.
    pub time_s: f64,
}

/// What paces a meter's readings, and so how they are tied to frame samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmuPacing {
    /// Each reading carries the frame's sequence number (simulated rig, in-house dialect).
    #[default]
    Tagged,
    /// One reading per pulse of the frame's sample clock on the meter's trigger input: the i-th
    /// reading belongs to frame sample i.
    ExternalTrigger,
    /// The meter's own timer at the sample period from its arming: the i-th reading is paired
    /// with frame sample i, and the clocks may drift apart.
    Timer,
}

impl From<nanoecr_core::config::hardware::SmuTrigger> for SmuPacing {
    /// A buffered meter is paced by what its trigger is configured to.
    fn from(t: nanoecr_core::config::hardware::SmuTrigger) -> Self {
        match t {
            nanoecr_core::config::hardware::SmuTrigger::External => Self::ExternalTrigger,
            nanoecr_core::config::hardware::SmuTrigger::Timer => Self::Timer,
        }
    }
}

impl SmuPacing {
    /// Short name, as recorded in the run file's diagnostics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tagged => "tagged",
            Self::ExternalTrigger => "external",
            Self::Timer => "timer",
        }
    }
}

/// Whose clock a frame's samples follow, and so what a host stall does to the test.
///
/// The control loop judges the command-gap interlock in this clock and picks its catch-up after
/// a stall from it (docs/simulator.md, docs/config.md `[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FrameClock {
    /// The frame samples and acts on its own clock (a real controller): while the host stalls,
    /// time runs on and the frame holds its last command open-loop, so a gap between commands
    /// is measured in wall time, and after a stall the loop skips the ticks whose moment has
    /// passed.
    #[default]
    Device,
    /// The frame advances one sample per command (the simulator): while the host stalls its
    /// time stands still, so a host stall costs nothing physically; no tick is skipped (the loop
    /// moves its schedule past the stall instead) and a gap between commands is measured in
    /// sample time.
    Tick,
}

impl FrameClock {
    /// Short name, as recorded in the run file's diagnostics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Tick => "tick",
        }
    }
}

/// Limits the frame enforces on its own, independent of the host (defence in depth).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameLimits {
    /// Highest load, µN.
    pub max_load_un: f64,
    /// Highest displacement, nm.
    pub max_displacement_nm: f64,
}

/// A load-frame controller in load control.
///
/// Call order: [`identify`](LoadFrame::identify), [`prepare`](LoadFrame::prepare) (optional),
/// [`arm`](LoadFrame::arm), then per control
/// tick [`command`](LoadFrame::command) and [`acquire`](LoadFrame::acquire), and finally
/// [`make_safe`](LoadFrame::make_safe), which must also work after any error.
pub trait LoadFrame: Send {
    /// Who is there.
    fn identify(&mut self) -> Result<DeviceInfo, HwError>;
    /// Everything [`arm`](LoadFrame::arm) does before restarting the sample counter (rate,
    /// limits), so that `arm` can restart it with a single request right after the meter was
    /// armed (docs/hardware.md, "Alignment"). Optional; `arm` does it all when not called.
    fn prepare(&mut self, limits: &FrameLimits) -> Result<(), HwError> {
        let _ = limits;
        Ok(())
    }
    /// Set limits, restart the sample counter at 0, enter load control and enable the actuator.
    fn arm(&mut self, limits: &FrameLimits) -> Result<(), HwError>;
    /// Actuator command for this tick, µN; `segment` is the program segment (devices may use it
    /// for logging; the simulator uses it as its stress-rate regime).
    fn command(&mut self, command_un: f64, segment: Segment) -> Result<(), HwError>;
    /// Samples acquired since the last call, at most `out.len()`; returns how many were written.
    /// The simulated frame produces exactly one per `command`.
    fn acquire(&mut self, out: &mut [FrameReading]) -> Result<usize, HwError>;
    /// Bring the frame to a safe state: load to zero, actuator disabled.
    fn make_safe(&mut self) -> Result<(), HwError>;
    /// True events of a simulated rig (None for real hardware).
    fn ground_truth(&mut self) -> Option<Vec<Event>> {
        None
    }
    /// Whose clock the frame's samples follow. The default, [`FrameClock::Device`], is the safe
    /// one: a host stall is judged as the wall time it lasted.
    fn clock(&self) -> FrameClock {
        FrameClock::Device
    }
}

/// A source-measure unit sourcing a constant voltage and measuring current.
pub trait SourceMeter: Send {
    /// Who is there.
    fn identify(&mut self) -> Result<DeviceInfo, HwError>;
    /// Source `voltage_v` with current compliance `compliance_a`, switch the output on and arm
    /// the acquisition (a buffered meter then waits for its first trigger). Called before the
    /// frame restarts its sample counter, so the meter's first reading is frame sample 0.
    fn bias_on(&mut self, voltage_v: f64, compliance_a: f64) -> Result<(), HwError>;
    /// Current samples acquired since the last call, at most `out.len()`. A buffered meter may
    /// answer from its last poll without asking the instrument (it is polled every few ms).
    fn acquire(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError>;
    /// As [`acquire`](SourceMeter::acquire), but ask the instrument now, whenever it was last
    /// polled. The control loop calls it before it gives up on a frame sample's reading, so the
    /// run ends on what the meter's link says (closed, timed out) rather than on a reading it
    /// never asked for, and goes on if the reading is there. The default is `acquire`, for
    /// meters that ask on every call.
    fn acquire_now(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        self.acquire(out)
    }
    /// Switch the output off. Must work after any error.
    fn bias_off(&mut self) -> Result<(), HwError>;
    /// What paces the readings (the control loop's alignment checks depend on it).
    fn pacing(&self) -> SmuPacing {
        SmuPacing::Tagged
    }
    /// The name this meter reports in errors (`SMU0 (keithley-2450 tcp 10.0.0.5:5025)`).
    fn device(&self) -> &str {
        "SMU0"
    }
}

/// A rig: one load frame and one source-measure unit, boxed so backends are chosen at run time.
pub struct Rig {
    /// The load frame.
    pub frame: Box<dyn LoadFrame>,
    /// The source-measure unit.
    pub smu: Box<dyn SourceMeter>,
}

impl std::fmt::Debug for Rig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rig").finish_non_exhaustive()
    }
}
