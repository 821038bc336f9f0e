//! The controller's state and registers (docs/register-map.md, implemented from the page), and
//! the sample clock that advances the simulated pillar in real time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nanoecr_core::config::SimulationConfig;
use nanoecr_core::{Pillar, Segment};
use nanoecr_sim::World;
use serde::Serialize;
use smu_shim::Meter;
use tokio_modbus::ExceptionCode;

/// Register addresses and constants of protocol version 1.
pub mod regs {
    /// Input: identification block start / length.
    pub const IDENT: u16 = 0;
    /// Input: identification block length, registers.
    pub const IDENT_LEN: u16 = 36;
    /// Input: status block start.
    pub const STATUS: u16 = 100;
    /// Input: status block length.
    pub const STATUS_LEN: u16 = 10;
    /// Input/holding: FIFO window start.
    pub const WINDOW: u16 = 200;
    /// FIFO window header length.
    pub const WINDOW_HEADER: u16 = 4;
    /// Registers per sample.
    pub const WORDS_PER_SAMPLE: u16 = 8;
    /// Samples per window read at most.
    pub const MAX_BLOCK: u16 = 15;
    /// Holding: mode.
    pub const MODE: usize = 0;
    /// Holding: enable.
    pub const ENABLE: usize = 1;
    /// Holding: load command f32.
    pub const COMMAND: usize = 2;
    /// Holding: segment.
    pub const SEGMENT: usize = 4;
    /// Holding: max load f32.
    pub const MAX_LOAD: usize = 5;
    /// Holding: max displacement f32.
    pub const MAX_DISP: usize = 7;
    /// Holding: sample rate u32.
    pub const RATE: usize = 9;
    /// Holding: safe-unload rate, µN/ms.
    pub const SAFE_RATE: usize = 11;
    /// Holding: control (write 1 = reset).
    pub const CONTROL: usize = 12;
    /// Holding: FIFO ack u32.
    pub const ACK: usize = 40;
    /// Holding registers implemented: 0..=12 and 40..=41 (the gap reads/writes as an error).
    pub const HOLDING_LEN: usize = 42;
    /// Protocol version.
    pub const PROTOCOL_VERSION: u16 = 1;
    /// FIFO capacity, samples.
    pub const FIFO_CAPACITY: usize = 16_384;

    /// Status bit: actuator enabled.
    pub const ST_ENABLED: u16 = 1;
    /// Status bit: load control active.
    pub const ST_LOAD_CONTROL: u16 = 2;
    /// Status bit: safe unload in progress.
    pub const ST_SAFE_UNLOAD: u16 = 4;
    /// Status bit: fault latched.
    pub const ST_FAULT: u16 = 8;
    /// Fault bit: overload.
    pub const F_OVERLOAD: u16 = 1;
    /// Fault bit: over-displacement.
    pub const F_OVER_DISP: u16 = 2;
    /// Fault bit: actuator fault.
    pub const F_ACTUATOR: u16 = 4;
    /// Fault bit: FIFO overflow.
    pub const F_FIFO_OVERFLOW: u16 = 8;
}

/// Identification strings.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Vendor.
    pub vendor: String,
    /// Model.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Firmware version.
    pub firmware: String,
}

/// One FIFO entry.
#[derive(Debug, Clone, Copy)]
struct FifoSample {
    seq: u64,
    time_us: u64,
    load_un: f32,
    disp_nm: f32,
}

/// An injected fault or a controller trip, recorded as ground truth.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// What happened (`overload`, `over_displacement`, `counter_frozen`, `fifo_overflow`, …).
    pub kind: String,
    /// Device time, s.
    pub time_s: f64,
    /// Sample counter at the time.
    pub seq: u64,
}

/// The controller: registers, FIFO and the simulated pillar.
#[derive(Debug)]
pub struct Frame {
    sim: SimulationConfig,
    pillar: Pillar,
    world: World,
    rate_hz: f64,
    holding: [u16; regs::HOLDING_LEN],
    fifo: VecDeque<FifoSample>,
    overflow: u32,
    faults: u16,
    produced: u64,
    origin: Instant,
    applied_un: f64,
    frozen: bool,
    freeze_at_s: Option<f64>,
    identity: Identity,
    meter: Option<Arc<Meter>>,
    /// Faults and trips so far (ground truth).
    pub records: Vec<FaultRecord>,
    /// Ground-truth events of worlds already reset away (earlier runs on this shim).
    pub past_events: Vec<nanoecr_core::Event>,
}

fn split_u32(v: u32) -> [u16; 2] {
    [(v >> 16) as u16, v as u16]
}
fn split_f32(v: f32) -> [u16; 2] {
    split_u32(v.to_bits())
}
fn join_u32(w: &[u16]) -> u32 {
    (u32::from(w[0]) << 16) | u32::from(w[1])
}
fn ascii(text: &str) -> [u16; 8] {
    let mut out = [0u16; 8];
    let b = text.as_bytes();
    for (i, w) in out.iter_mut().enumerate() {
        let hi = b.get(2 * i).copied().unwrap_or(0);
        let lo = b.get(2 * i + 1).copied().unwrap_or(0);
        *w = (u16::from(hi) << 8) | u16::from(lo);
    }
    out
}

impl Frame {
    /// A controller in mode 0 sampling at `rate_hz`.
    pub fn new(
        sim: SimulationConfig,
        pillar: Pillar,
        rate_hz: f64,
        identity: Identity,
        meter: Option<Arc<Meter>>,
        freeze_at_s: Option<f64>,
    ) -> Self {
        let mut holding = [0u16; regs::HOLDING_LEN];
        holding[regs::MAX_LOAD..regs::MAX_LOAD + 2].copy_from_slice(&split_f32(10_000.0));
        holding[regs::MAX_DISP..regs::MAX_DISP + 2].copy_from_slice(&split_f32(1_000.0));
        holding[regs::RATE..regs::RATE + 2].copy_from_slice(&split_u32(rate_hz as u32));
        holding[regs::SAFE_RATE] = 10;
        let world = World::new(&sim, pillar, rate_hz);
        Self {
            sim,
            pillar,
            world,
            rate_hz,
            holding,
            fifo: VecDeque::with_capacity(regs::FIFO_CAPACITY),
            overflow: 0,
            faults: 0,
            produced: 0,
            origin: Instant::now(),
            applied_un: 0.0,
            frozen: false,
            freeze_at_s,
            identity,
            meter,
            records: Vec::new(),
            past_events: Vec::new(),
        }
    }

    fn f32_at(&self, i: usize) -> f32 {
        f32::from_bits(join_u32(&self.holding[i..i + 2]))
    }

    fn mode(&self) -> u16 {
        self.holding[regs::MODE]
    }

    fn enabled(&self) -> bool {
        self.holding[regs::ENABLE] == 1
    }

    /// Sample rate, Hz.
    pub fn rate_hz(&self) -> f64 {
        self.rate_hz
    }

    /// Samples produced since the last reset.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Ground-truth events of the current world and of earlier ones.
    pub fn events(&self) -> Vec<nanoecr_core::Event> {
        let mut all = self.past_events.clone();
        all.extend_from_slice(self.world.ground_truth());
        all
    }

    fn status(&self) -> u16 {
        let mut s = 0;
        if self.enabled() {
            s |= regs::ST_ENABLED;
        }
        if self.enabled() && self.mode() == 1 {
            s |= regs::ST_LOAD_CONTROL;
        }
        if self.mode() == 3 {
            s |= regs::ST_SAFE_UNLOAD;
        }
        if self.faults != 0 {
            s |= regs::ST_FAULT;
        }
        s
    }

    fn record(&mut self, kind: &str) {
        let time_s = self.produced as f64 / self.rate_hz;
        self.records.push(FaultRecord { kind: kind.into(), time_s, seq: self.produced });
    }

    fn reset(&mut self) {
        self.rate_hz = f64::from(join_u32(&self.holding[regs::RATE..regs::RATE + 2]));
        self.past_events.extend_from_slice(self.world.ground_truth());
        self.world = World::new(&self.sim, self.pillar, self.rate_hz);
        self.fifo.clear();
        self.overflow = 0;
        self.faults = 0;
        self.produced = 0;
        self.origin = Instant::now();
        self.applied_un = 0.0;
        self.frozen = false;
        self.holding[regs::ACK] = 0;
        self.holding[regs::ACK + 1] = 0;
        if let Some(m) = &self.meter {
            m.reset_trigger();
        }
    }

    /// Produce every sample due by now (the clock calls this about once per millisecond).
    pub fn tick(&mut self) {
        let due = (self.origin.elapsed().as_secs_f64() * self.rate_hz) as u64 + 1;
        // Bounded catch-up: after a stall of the host machine, skip rather than spin for ever.
        let mut budget = (self.rate_hz as u64).max(1000);
        while self.produced < due && budget > 0 && !self.frozen {
            self.step();
            budget -= 1;
        }
    }

    fn step(&mut self) {
        let t_s = self.produced as f64 / self.rate_hz;
        if self.frozen {
            return;
        }
        if self.freeze_at_s.is_some_and(|f| t_s >= f) {
            // Fault injection: the counter (and the FIFO) stop; the bus keeps answering.
            self.frozen = true;
            self.record("counter_frozen");
            return;
        }
        let per_sample_un = f64::from(self.holding[regs::SAFE_RATE]) * 1000.0 / self.rate_hz;
        let (cmd, seg) = match (self.mode(), self.enabled()) {
            (1, true) => (
                f64::from(self.f32_at(regs::COMMAND)),
                Segment::from_code(self.holding[regs::SEGMENT] as u8).unwrap_or(Segment::Settle),
            ),
            (2, true) => (self.applied_un, Segment::Hold),
            (3, _) => {
                let next = self.applied_un - per_sample_un;
                if next <= 0.0 {
                    // Unloaded: the controller idles and disables itself.
                    self.holding[regs::MODE] = 0;
                    self.holding[regs::ENABLE] = 0;
                }
                (next.max(0.0), Segment::SafeUnload)
            }
            _ => (0.0, Segment::Settle),
        };
        self.applied_un = if cmd.is_finite() { cmd.max(0.0) } else { 0.0 };
        let w = self.world.step(self.applied_un, seg);
        let max_load = f64::from(self.f32_at(regs::MAX_LOAD));
        let max_disp = f64::from(self.f32_at(regs::MAX_DISP));
        if w.load_un > 1.05 * max_load && self.faults & regs::F_OVERLOAD == 0 {
            self.faults |= regs::F_OVERLOAD;
            self.record("overload");
            self.trip();
        }
        if w.disp_nm > 1.05 * max_disp && self.faults & regs::F_OVER_DISP == 0 {
            self.faults |= regs::F_OVER_DISP;
            self.record("over_displacement");
            self.trip();
        }
        if self.fifo.len() == regs::FIFO_CAPACITY {
            self.fifo.pop_front();
            self.overflow = self.overflow.saturating_add(1);
            if self.faults & regs::F_FIFO_OVERFLOW == 0 {
                self.faults |= regs::F_FIFO_OVERFLOW;
                self.record("fifo_overflow");
            }
        }
        self.fifo.push_back(FifoSample {
            seq: w.seq,
            time_us: (w.time_s * 1e6).round() as u64,
            load_un: w.load_un as f32,
            disp_nm: w.disp_nm as f32,
        });
        if let Some(m) = &self.meter {
            m.trigger(w.seq, w.time_s, w.current_factor);
        }
        self.produced += 1;
    }

    fn trip(&mut self) {
        if self.mode() != 0 {
            self.holding[regs::MODE] = 3;
        }
    }

    fn window(&self, quantity: u16) -> Vec<u16> {
        let room = (quantity.saturating_sub(regs::WINDOW_HEADER) / regs::WORDS_PER_SAMPLE).min(regs::MAX_BLOCK);
        let k = self.fifo.len().min(usize::from(room));
        let mut out = vec![0u16; usize::from(quantity)];
        out[0] = k as u16;
        out[1] = self.fifo.len().min(usize::from(u16::MAX)) as u16;
        out[2] = self.status();
        out[3] = self.faults;
        for (i, s) in self.fifo.iter().take(k).enumerate() {
            let o = usize::from(regs::WINDOW_HEADER) + i * usize::from(regs::WORDS_PER_SAMPLE);
            out[o..o + 2].copy_from_slice(&split_u32(s.seq as u32));
            out[o + 2..o + 4].copy_from_slice(&split_u32(s.time_us as u32));
            out[o + 4..o + 6].copy_from_slice(&split_f32(s.load_un));
            out[o + 6..o + 8].copy_from_slice(&split_f32(s.disp_nm));
        }
        out
    }

    fn is_window(addr: u16, quantity: u16) -> Result<bool, ExceptionCode> {
        if addr != regs::WINDOW {
            return Ok(false);
        }
        let max = regs::WINDOW_HEADER + regs::MAX_BLOCK * regs::WORDS_PER_SAMPLE;
        if quantity < regs::WINDOW_HEADER || quantity > max {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(true)
    }

    /// Function 04.
    pub fn read_input(&self, addr: u16, quantity: u16) -> Result<Vec<u16>, ExceptionCode> {
        if Self::is_window(addr, quantity)? {
            return Ok(self.window(quantity));
        }
        let end = u32::from(addr) + u32::from(quantity);
        if quantity == 0 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        if end <= u32::from(regs::IDENT + regs::IDENT_LEN) {
            let mut block = Vec::with_capacity(usize::from(regs::IDENT_LEN));
            block.extend_from_slice(&ascii(&self.identity.vendor));
            block.extend_from_slice(&ascii(&self.identity.model));
            block.extend_from_slice(&ascii(&self.identity.serial));
            block.extend_from_slice(&ascii(&self.identity.firmware));
            block.extend_from_slice(&[
                regs::PROTOCOL_VERSION,
                regs::FIFO_CAPACITY.min(usize::from(u16::MAX)) as u16,
                regs::MAX_BLOCK,
                regs::WORDS_PER_SAMPLE,
            ]);
            return Ok(block[usize::from(addr)..end as usize].to_vec());
        }
        if addr >= regs::STATUS && end <= u32::from(regs::STATUS + regs::STATUS_LEN) {
            let mut block = vec![self.status(), self.faults];
            let c = self.produced;
            block.extend_from_slice(&[(c >> 48) as u16, (c >> 32) as u16, (c >> 16) as u16, c as u16]);
            block.extend_from_slice(&split_u32(self.fifo.len() as u32));
            block.extend_from_slice(&split_u32(self.overflow));
            let from = usize::from(addr - regs::STATUS);
            return Ok(block[from..from + usize::from(quantity)].to_vec());
        }
        Err(ExceptionCode::IllegalDataAddress)
    }

    fn holding_range(addr: u16, quantity: u16) -> Result<std::ops::Range<usize>, ExceptionCode> {
        let (a, n) = (usize::from(addr), usize::from(quantity));
        if n == 0 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let ok = a + n <= regs::CONTROL + 1 || (a >= regs::ACK && a + n <= regs::HOLDING_LEN);
        if ok {
            Ok(a..a + n)
        } else {
            Err(ExceptionCode::IllegalDataAddress)
        }
    }

    /// Function 03.
    pub fn read_holding(&self, addr: u16, quantity: u16) -> Result<Vec<u16>, ExceptionCode> {
        if Self::is_window(addr, quantity)? {
            return Ok(self.window(quantity));
        }
        Ok(self.holding[Self::holding_range(addr, quantity)?].to_vec())
    }

    /// Functions 06 and 16: validate the whole write, then apply it.
    pub fn write_holding(&mut self, addr: u16, words: &[u16]) -> Result<(), ExceptionCode> {
        let quantity = u16::try_from(words.len()).map_err(|_| ExceptionCode::IllegalDataValue)?;
        let range = Self::holding_range(addr, quantity)?;
        let mut next = self.holding;
        next[range.clone()].copy_from_slice(words);
        let touches = |i: usize| range.contains(&i);
        if next[regs::MODE] > 3 || next[regs::ENABLE] > 1 || next[regs::CONTROL] > 1 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let positive = |i: usize| {
            let v = f32::from_bits(join_u32(&next[i..i + 2]));
            v.is_finite() && v > 0.0
        };
        if !positive(regs::MAX_LOAD) || !positive(regs::MAX_DISP) {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let cmd = f32::from_bits(join_u32(&next[regs::COMMAND..regs::COMMAND + 2]));
        if !cmd.is_finite() || next[regs::SEGMENT] > 4 {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let rate = join_u32(&next[regs::RATE..regs::RATE + 2]);
        if !(1..=100_000).contains(&rate) {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let idle = self.mode() == 0;
        if (touches(regs::RATE) || touches(regs::RATE + 1))
            && !idle
            && rate != join_u32(&self.holding[regs::RATE..regs::RATE + 2])
        {
            return Err(ExceptionCode::ServerDeviceFailure);
        }
        let reset = touches(regs::CONTROL) && next[regs::CONTROL] == 1;
        if reset && !idle {
            return Err(ExceptionCode::ServerDeviceFailure);
        }
        next[regs::CONTROL] = 0;
        self.holding = next;
        if reset {
            self.reset();
        }
        if touches(regs::ACK) || touches(regs::ACK + 1) {
            let ack = join_u32(&self.holding[regs::ACK..regs::ACK + 2]);
            // Pop every sample whose sequence comes before the ack, modulo 2^32.
            while self.fifo.front().is_some_and(|s| (ack.wrapping_sub(s.seq as u32) as i32) > 0) {
                self.fifo.pop_front();
            }
        }
        Ok(())
    }
}

/// The frame behind a mutex, shared by the clock and the bus servers.
pub type SharedFrame = Arc<Mutex<Frame>>;

/// Lock the frame; a panicked holder does not stop the shim.
pub fn lock(frame: &SharedFrame) -> MutexGuard<'_, Frame> {
    frame.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Run the sample clock until `stop`: wakes every half millisecond (or sample period, if
/// shorter) and produces every sample due by the absolute schedule origin + seq / rate.
pub fn run_clock(frame: SharedFrame, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let period = {
            let mut f = lock(&frame);
            f.tick();
            1.0 / f.rate_hz()
        };
        std::thread::sleep(Duration::from_secs_f64(period.min(0.0005)));
    }
}
