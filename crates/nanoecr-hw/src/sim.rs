//! The simulated backend: a [`SimLoadFrame`] that owns the [`World`] and a [`SimSourceMeter`] that
//! measures the same pillar. The two are joined by a lock-free SPSC ring carrying the pillar's
//! electrical state per sample — the software stand-in for the wire between the instruments —
//! so neither ever waits on a lock.

use nanoecr_core::{Event, RunConfig, Segment};
use nanoecr_sim::World;

use crate::{DeviceInfo, FrameClock, FrameLimits, FrameReading, HwError, LoadFrame, Rig, SmuReading, SourceMeter};

const FRAME: &str = "LOADFRAME0(sim)";
const SMU: &str = "SMU0(sim)";

/// Build the simulated rig for a validated run config.
pub fn rig(cfg: &RunConfig) -> Rig {
    let (frame, smu) = pair(cfg);
    Rig { frame: Box::new(frame), smu: Box::new(smu) }
}

/// The two simulated instruments, joined.
pub fn pair(cfg: &RunConfig) -> (SimLoadFrame, SimSourceMeter) {
    // Enough slots for any burst the loop might read at once; the frame never outruns the meter by
    // more than one tick in the control loop.
    let (tx, rx) = rtrb::RingBuffer::new(4096);
    let world = World::new(&cfg.raw.simulation, cfg.pillar, cfg.rate_hz());
    let frame = SimLoadFrame { world, tx, pending: None, armed: false, limits: None };
    let smu = SimSourceMeter {
        rx,
        voltage_v: 0.0,
        compliance_a: 0.0,
        on: false,
        circuit_resistance_ohm: cfg.raw.simulation.circuit_resistance_ohm,
    };
    (frame, smu)
}

fn info(name: &str, model: &str) -> DeviceInfo {
    DeviceInfo {
        name: name.to_string(),
        vendor: "nanoecr".into(),
        model: model.into(),
        serial: "SIM-0001".into(),
        firmware: nanoecr_core::SOFTWARE_VERSION.into(),
    }
}

/// The simulated load frame.
#[derive(Debug)]
pub struct SimLoadFrame {
    world: World,
    tx: rtrb::Producer<(u64, f64)>,
    pending: Option<FrameReading>,
    armed: bool,
    limits: Option<FrameLimits>,
}

impl SimLoadFrame {
    /// The world behind the frame (for tests).
    pub fn world(&self) -> &World {
        &self.world
    }
}

impl LoadFrame for SimLoadFrame {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        Ok(info(FRAME, "simulated load frame"))
    }

    fn arm(&mut self, limits: &FrameLimits) -> Result<(), HwError> {
        self.armed = true;
        self.limits = Some(*limits);
        Ok(())
    }

    fn command(&mut self, command_un: f64, segment: Segment) -> Result<(), HwError> {
        let cmd = if self.armed { command_un.max(0.0) } else { 0.0 };
        let cmd = match self.limits {
            // The controller clamps its own actuator command: host bugs must not overload a pillar.
            Some(l) => cmd.min(l.max_load_un * 1.05),
            None => cmd,
        };
        let w = self.world.step(cmd, segment);
        // A full wire means the meter is not being read; the newest state is what matters, so
        // the sample is dropped rather than blocking the frame.
        let _ = self.tx.push((w.seq, w.current_factor));
        self.pending = Some(FrameReading { seq: w.seq, time_s: w.time_s, load_un: w.load_un, disp_nm: w.disp_nm });
        Ok(())
    }

    fn acquire(&mut self, out: &mut [FrameReading]) -> Result<usize, HwError> {
        match (self.pending.take(), out.first_mut()) {
            (Some(r), Some(slot)) => {
                *slot = r;
                Ok(1)
            }
            (Some(r), None) => {
                self.pending = Some(r);
                Ok(0)
            }
            (None, _) => Ok(0),
        }
    }

    fn make_safe(&mut self) -> Result<(), HwError> {
        self.armed = false;
        Ok(())
    }

    fn ground_truth(&mut self) -> Option<Vec<Event>> {
        Some(self.world.ground_truth().to_vec())
    }

    /// One sample per command: the simulated pillar's time stands still while the host stalls.
    fn clock(&self) -> FrameClock {
        FrameClock::Tick
    }
}

/// The simulated source-measure unit.
#[derive(Debug)]
pub struct SimSourceMeter {
    rx: rtrb::Consumer<(u64, f64)>,
    voltage_v: f64,
    compliance_a: f64,
    on: bool,
    circuit_resistance_ohm: f64,
}

impl SourceMeter for SimSourceMeter {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        Ok(info(SMU, "simulated source-measure unit"))
    }

    fn bias_on(&mut self, voltage_v: f64, compliance_a: f64) -> Result<(), HwError> {
        self.voltage_v = voltage_v;
        self.compliance_a = compliance_a;
        self.on = true;
        Ok(())
    }

    fn acquire(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        let mut n = 0;
        while n < out.len() {
            let Ok((seq, factor)) = self.rx.pop() else { break };
            let v = if self.on { self.voltage_v } else { 0.0 };
            let mut i = factor * v / self.circuit_resistance_ohm;
            let compliance = self.on && i.abs() >= self.compliance_a;
            if compliance {
                i = self.compliance_a.copysign(i);
            }
            out[n] = SmuReading { seq, current_a: i, voltage_v: v, compliance, time_s: f64::NAN };
            n += 1;
        }
        Ok(n)
    }

    fn bias_off(&mut self) -> Result<(), HwError> {
        self.on = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> RunConfig {
        nanoecr_core::config::parse(include_str!("../../../config/demo.toml"), None).expect("demo valid")
    }

    #[test]
    fn frame_and_meter_share_sequence_numbers() {
        let (mut f, mut m) = pair(&demo());
        f.arm(&FrameLimits { max_load_un: 8000.0, max_displacement_nm: 600.0 }).expect("arm");
        m.bias_on(5.0, 1e-3).expect("bias");
        let mut fr = [FrameReading::default(); 4];
        let mut mr = [SmuReading::default(); 4];
        for k in 0..10u64 {
            f.command(100.0, Segment::Load).expect("command");
            assert_eq!(f.acquire(&mut fr).expect("acquire"), 1);
            assert_eq!(m.acquire(&mut mr).expect("acquire"), 1);
            assert_eq!(fr[0].seq, k);
            assert_eq!(mr[0].seq, k);
            assert_eq!(mr[0].voltage_v, 5.0);
        }
    }

    #[test]
    fn bias_off_reads_zero_current_and_compliance_clamps() {
        let cfg = demo();
        let (mut f, mut m) = pair(&cfg);
        let mut mr = [SmuReading::default(); 1];
        // Step past the settling window: before Ohmic contact the simulated current is only a
        // small fraction of V/R, which would not reach the compliance below.
        let settle_steps = (cfg.raw.simulation.contact_max_s * cfg.rate_hz()).ceil() as usize + 1;
        for _ in 0..settle_steps {
            f.command(0.0, Segment::Settle).expect("command");
            m.acquire(&mut mr).expect("acquire");
            assert_eq!(mr[0].current_a, 0.0);
        }
        // 5 V over 5 MΩ is 1 µA: a 0.5 µA compliance must clamp and flag it.
        m.bias_on(5.0, 0.5e-6).expect("bias");
        f.command(0.0, Segment::Settle).expect("command");
        m.acquire(&mut mr).expect("acquire");
        assert!(mr[0].compliance);
        assert!(mr[0].current_a <= 0.5e-6);
    }
}
