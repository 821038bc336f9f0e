//! # smu-shim
//!
//! Firmware shims of the source-measure units nanoecr drives, with `nanoecr-sim` physics
//! behind them. One [`Meter`] hosts one instrument model ([`Model`]):
//!
//! - `keithley-2450` ([`k2450`]): native SCPI of the Keithley 2450 (Reference Manual
//!   2450-901-01), trigger model, reading buffers with 1-based indices;
//! - `keysight-b2900` ([`b2900`]): Keysight B2900 SCPI (SCPI Command Reference), arm/trigger,
//!   trace buffer, `:FORM REAL,64` definite-length blocks and the status word;
//! - `nanoecr-scpi` ([`inhouse`]): the in-house dialect of earlier nanoecr versions.
//!
//! The load frame's sample clock drives the meter's trigger input ([`Meter::trigger`], one call
//! per frame sample with the pillar's current factor), as the rear digital I/O line 1 / B2900
//! EXT1 does on the real rig; timer triggers run from the meter's own clock. [`serve_pty`] and
//! [`serve_tcp`] speak the model's SCPI on a pseudo-terminal or a raw TCP socket (the
//! instruments' port 5025 service); [`scpi`] is the instrument-side parser all models share.
//!
//! Written from the instruments' documentation, never from `nanoecr-hw`'s client: the two must
//! agree through the wire only.

pub mod b2900;
pub mod cli;
pub mod inhouse;
pub mod k2450;
pub mod scpi;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};

pub use inhouse::{FLAG_COMPLIANCE, FLAG_OUTPUT_OFF, FLAG_OVERRANGE, SCPI_OVERFLOW};

use crate::scpi::{ErrorQueue, ScpiError, Unit};

/// Which instrument the shim emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// The in-house dialect (`nanoecr-scpi`).
    NanoecrScpi,
    /// Keithley 2450 SourceMeter, native SCPI command set.
    Keithley2450,
    /// Keysight B2900 series (B2901A/B2902A/B2911A/B2912A and B-models).
    KeysightB2900,
}

impl std::str::FromStr for Model {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nanoecr-scpi" => Ok(Self::NanoecrScpi),
            "keithley-2450" => Ok(Self::Keithley2450),
            "keysight-b2900" => Ok(Self::KeysightB2900),
            other => {
                Err(format!("unknown SMU model {other:?} (expected keithley-2450, keysight-b2900 or nanoecr-scpi)"))
            }
        }
    }
}

/// How the meter behaves, including injected faults.
#[derive(Debug, Clone)]
pub struct MeterConfig {
    /// The instrument emulated.
    pub model: Model,
    /// Resistance of the circuit without the pillar's change, Ω: I = factor · V / R.
    pub circuit_resistance_ohm: f64,
    /// Reply terminator (`\n`, `\r\n` or `\r`).
    pub terminator: String,
    /// In-house model: measurement range, A (larger magnitudes read as overflow).
    pub range_a: f64,
    /// In-house model: serial number in `*IDN?`.
    pub serial: String,
    /// Keithley 2450: the command set `*LANG?` reports (`SCPI`, `SCPI2400` or `TSP`).
    pub lang: String,
    /// Keysight B2900: the model name in `*IDN?` (`B2901A`, `B2912B`, …).
    pub idn_model: String,
    /// Whether the trigger wire is live only after the frame's counter restarted (the frame's
    /// Modbus reset) following the meter's arming: true when a load frame drives the wire
    /// (SMU-CONTRACT.md "Alignment"), false for the standalone clock.
    pub gate_on_frame_reset: bool,
    /// Fault: from this device time on (s since the frame's reset) the output is in compliance
    /// (as if the pillar shorted).
    pub compliance_at_s: Option<f64>,
    /// Fault: every reply is delayed by this long.
    pub latency: Duration,
    /// With `latency`: delay only the replies sent once the device time reaches this, s (an
    /// instrument that stops answering in time mid-run; set-up stays prompt).
    pub latency_after_s: Option<f64>,
    /// Fault: the reply to the n-th query (1-based) is garbage.
    pub garbage_after: Option<u64>,
    /// Fault: the reply to the n-th query (1-based) leaves this much later (on top of any
    /// `latency`): one reply late past the host's timeout, the rest on time. Replies still leave
    /// in order: a pseudo-terminal's later queries wait behind it, as on a serial instrument.
    pub delay_reply: Option<(u64, Duration)>,
    /// Fault: close the TCP connection once the device time reaches this (a LAN drop mid-run).
    pub drop_after_s: Option<f64>,
    /// Fault: from this device time on, for [`hold_readings`](MeterConfig::hold_readings), the
    /// meter takes a reading on every trigger but stores it only when the hold ends (a meter
    /// that falls behind its triggers and catches up): queries are answered at once, its buffer
    /// just does not grow meanwhile. Readings keep their trigger's time and value.
    pub hold_readings_at_s: Option<f64>,
    /// With `hold_readings_at_s`: how long the readings are held, in device time.
    pub hold_readings: Duration,
    /// Fault (without `hold_readings_at_s`): the meter stores the reading of each trigger of a
    /// run this long later in device time, one by one (a meter steadily behind its triggers);
    /// queries are answered at once.
    pub lag_readings: Duration,
    /// With `lag_readings`: from this device time on the meter catches up (stores the held
    /// readings and every later one at once), so a run's last readings do not depend on how
    /// long the host waits for them.
    pub lag_readings_until_s: Option<f64>,
}

impl Default for MeterConfig {
    fn default() -> Self {
        Self {
            model: Model::NanoecrScpi,
            circuit_resistance_ohm: 5e6,
            terminator: "\n".into(),
            range_a: 0.1,
            serial: "SHIM-0002".into(),
            lang: "SCPI".into(),
            idn_model: "B2901A".into(),
            gate_on_frame_reset: true,
            compliance_at_s: None,
            latency: Duration::ZERO,
            latency_after_s: None,
            garbage_after: None,
            delay_reply: None,
            drop_after_s: None,
            hold_readings_at_s: None,
            hold_readings: Duration::ZERO,
            lag_readings: Duration::ZERO,
            lag_readings_until_s: None,
        }
    }
}

/// The pillar as the trigger wire last saw it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Device time since the frame's reset, s.
    pub time_s: f64,
    /// Current relative to V/R.
    pub current_factor: f64,
}

/// One measurement as a source-measure unit takes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Current, A (9.9E37 on overflow).
    pub current_a: f64,
    /// The source was limited by its current limit (compliance).
    pub compliance: bool,
    /// The reading exceeded the measurement range.
    pub overflow: bool,
}

/// State shared by every model: status registers, error queue, the wire, the meter's own clock.
#[derive(Debug)]
pub struct Ctx {
    /// Configuration (faults, resistance).
    pub cfg: MeterConfig,
    /// The error/event queue.
    pub errors: ErrorQueue,
    /// Standard event status register (IEEE 488.2 §11.5.1).
    pub esr: u8,
    /// Standard event status enable register.
    pub ese: u8,
    /// Service request enable register.
    pub sre: u8,
    /// The pillar at the latest frame sample.
    pub last: Sample,
    /// Own-clock time (s) of the latest frame reset.
    pub reset_clock_s: f64,
    /// Frame resets seen so far.
    pub frame_resets: u64,
    /// Whether a frame reset followed the latest arming (the wire is live).
    pub reset_since_arm: bool,
    origin: Instant,
    compliance_onsets_s: Vec<f64>,
    in_compliance: bool,
}

impl Ctx {
    fn new(cfg: MeterConfig) -> Self {
        Self {
            errors: ErrorQueue::new(32),
            esr: 0,
            ese: 0,
            sre: 0,
            last: Sample { time_s: 0.0, current_factor: 1.0 },
            reset_clock_s: 0.0,
            frame_resets: 0,
            reset_since_arm: false,
            origin: Instant::now(),
            compliance_onsets_s: Vec::new(),
            in_compliance: false,
            cfg,
        }
    }

    /// The meter's own clock, s since power-on (its crystal, independent of the frame).
    pub fn clock_s(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// Queue an error and set its event bit in the ESR (IEEE 488.2 §11.5.1.1: command errors
    /// set CME, execution errors EXE, device-specific DDE, query errors QYE).
    pub fn error(&mut self, e: ScpiError) {
        self.esr |= match e.code {
            -199..=-100 => 0x20,
            -299..=-200 => 0x10,
            -499..=-400 => 0x04,
            _ => 0x08,
        };
        self.errors.push(e);
    }

    /// The status byte (IEEE 488.2 §11.2; bit 2 = error queue not empty on both the 2450 and
    /// the B2900, bit 5 = ESB, bit 6 = MSS).
    pub fn stb(&self) -> u8 {
        let mut stb = 0u8;
        if !self.errors.is_empty() {
            stb |= 0x04;
        }
        if self.esr & self.ese != 0 {
            stb |= 0x20;
        }
        if stb & self.sre & !0x40 != 0 {
            stb |= 0x40;
        }
        stb
    }

    /// Whether the trigger wire reaches the meter now.
    pub fn wire_live(&self) -> bool {
        !self.cfg.gate_on_frame_reset || self.reset_since_arm
    }

    /// The meter was armed (`:INIT`): pulses count only after the next frame reset.
    pub fn armed(&mut self) {
        self.reset_since_arm = false;
    }

    /// Measure the current of the simulated pillar: I = factor · V / R, limited at `limit_a`
    /// (compliance, also from the `--compliance-at-s` fault) and 9.9E37 beyond 105 % of a
    /// fixed range (`range_a`; `None` = autorange).
    pub fn measure(
        &mut self,
        output_on: bool,
        voltage_v: f64,
        limit_a: f64,
        range_a: Option<f64>,
        s: Sample,
    ) -> Measured {
        let v = if output_on { voltage_v } else { 0.0 };
        let mut current_a = s.current_factor * v / self.cfg.circuit_resistance_ohm;
        let shorted = output_on && self.cfg.compliance_at_s.is_some_and(|t| s.time_s >= t);
        let compliance = output_on && (shorted || current_a.abs() >= limit_a);
        if compliance {
            current_a = limit_a.copysign(if current_a == 0.0 { 1.0 } else { current_a });
            if !self.in_compliance {
                self.compliance_onsets_s.push(s.time_s);
            }
        }
        self.in_compliance = compliance;
        let overflow = range_a.is_some_and(|r| current_a.abs() > 1.05 * r);
        if overflow {
            current_a = SCPI_OVERFLOW;
        }
        Measured { current_a, compliance, overflow }
    }

    /// Handle the IEEE 488.2 common commands all models share; `None` if `u` is not one.
    fn common(&mut self, u: &Unit) -> Option<Result<Option<Vec<u8>>, ScpiError>> {
        let name = u.common.as_deref()?;
        let reply = |s: String| Some(Ok(Some(s.into_bytes())));
        let num = |u: &Unit| -> Result<u8, ScpiError> {
            scpi::arity(&u.params, 1, 1)?;
            let v = scpi::number(&u.params[0], scpi::NumSpec { min: 0.0, max: 255.0, default: 0.0, unit: "" })?;
            Ok(v.round() as u8)
        };
        match (name, u.query) {
            ("*CLS", false) => {
                self.errors.clear();
                self.esr = 0;
                Some(Ok(None))
            }
            ("*ESR", true) => {
                let v = self.esr;
                self.esr = 0;
                reply(v.to_string())
            }
            ("*ESE", false) => Some(num(u).map(|v| {
                self.ese = v;
                None
            })),
            ("*ESE", true) => reply(self.ese.to_string()),
            ("*SRE", false) => Some(num(u).map(|v| {
                self.sre = v;
                None
            })),
            ("*SRE", true) => reply(self.sre.to_string()),
            ("*STB", true) => reply(self.stb().to_string()),
            // Every command completes before the next is parsed here, so the operation-complete
            // handshakes are immediate (IEEE 488.2 §12.5).
            ("*OPC", true) => reply("1".into()),
            ("*OPC", false) => {
                self.esr |= 0x01;
                Some(Ok(None))
            }
            ("*WAI", false) => Some(Ok(None)),
            _ => None,
        }
    }
}

/// The model-specific part of the instrument.
#[derive(Debug)]
enum Instrument {
    InHouse(inhouse::InHouse),
    K2450(Box<k2450::K2450>),
    B2900(Box<b2900::B2900>),
}

#[derive(Debug)]
struct Inner {
    ctx: Ctx,
    inst: Instrument,
    queries: u64,
    /// The queries whose replies the `delay_reply` fault held back, in order.
    delayed: Vec<String>,
    /// Triggers whose readings the `hold_readings` fault holds back: (sequence, sample).
    held: Vec<(u64, Sample)>,
}

/// The simulated source-measure unit: one model, its wire and its faults.
#[derive(Debug)]
pub struct Meter {
    cfg: MeterConfig,
    inner: Mutex<Inner>,
}

impl Meter {
    /// A meter in its power-on (`*RST`) state.
    pub fn new(cfg: MeterConfig) -> Self {
        let inst = match cfg.model {
            Model::NanoecrScpi => Instrument::InHouse(inhouse::InHouse::new(&cfg)),
            Model::Keithley2450 => Instrument::K2450(Box::new(k2450::K2450::new(&cfg))),
            Model::KeysightB2900 => Instrument::B2900(Box::new(b2900::B2900::new(&cfg))),
        };
        Self {
            inner: Mutex::new(Inner {
                ctx: Ctx::new(cfg.clone()),
                inst,
                queries: 0,
                delayed: Vec::new(),
                held: Vec::new(),
            }),
            cfg,
        }
    }

    /// The configuration the meter was built with.
    pub fn config(&self) -> &MeterConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking holder cannot leave the state half-updated in a way that matters for a
        // test double; keep serving.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The shared trigger wire: the load frame took sample `seq` at device time `time_s`, when
    /// the pillar's current relative to V/R was `current_factor`.
    pub fn trigger(&self, seq: u64, time_s: f64, current_factor: f64) {
        let mut g = self.lock();
        let Inner { ctx, inst, held, .. } = &mut *g;
        let s = Sample { time_s, current_factor };
        ctx.last = s;
        if let Some(at_s) = self.cfg.hold_readings_at_s {
            // Only pulses of a run (after the frame's reset, on a live wire) are held: a pulse
            // from before the reset must never be stored as one of the run's readings.
            let in_run = (!self.cfg.gate_on_frame_reset || ctx.frame_resets > 0) && ctx.wire_live();
            if in_run && time_s >= at_s && time_s < at_s + self.cfg.hold_readings.as_secs_f64() {
                held.push((seq, s));
                return;
            }
            for (seq, s) in held.drain(..) {
                Self::take(ctx, inst, seq, s);
            }
        } else if !self.cfg.lag_readings.is_zero() {
            let lag_s = self.cfg.lag_readings.as_secs_f64();
            let lagging = self.cfg.lag_readings_until_s.is_none_or(|t| time_s < t);
            let in_run = (!self.cfg.gate_on_frame_reset || ctx.frame_resets > 0) && ctx.wire_live() && lagging;
            // The readings due by this pulse (all once the lag ends), then this one (or at once
            // outside a run). A nanosecond's slack: device times are sample counts over the rate.
            let due = held.iter().take_while(|(_, h)| !lagging || h.time_s + lag_s <= time_s + 1e-9).count();
            for (seq, s) in held.drain(..due) {
                Self::take(ctx, inst, seq, s);
            }
            if in_run {
                held.push((seq, s));
                return;
            }
        }
        Self::take(ctx, inst, seq, s);
    }

    /// The meter takes the reading of trigger `seq` (the pillar as `s`).
    fn take(ctx: &mut Ctx, inst: &mut Instrument, seq: u64, s: Sample) {
        match inst {
            Instrument::InHouse(m) => m.trigger(seq, s.time_s, s.current_factor),
            Instrument::K2450(m) => m.pulse(ctx, s),
            Instrument::B2900(m) => m.pulse(ctx, s),
        }
    }

    /// The frame was reset (its counter restarts at 0).
    pub fn reset_trigger(&self) {
        let mut g = self.lock();
        let Inner { ctx, inst, held, .. } = &mut *g;
        // Pulses held before the reset belong to no run.
        held.clear();
        ctx.frame_resets += 1;
        ctx.reset_since_arm = true;
        ctx.reset_clock_s = ctx.clock_s();
        ctx.last = Sample { time_s: 0.0, current_factor: ctx.last.current_factor };
        if let Instrument::InHouse(m) = inst {
            m.reset_trigger();
        }
    }

    /// Device times at which the output entered compliance (for ground truth).
    pub fn compliance_onsets_s(&self) -> Vec<f64> {
        let g = self.lock();
        match &g.inst {
            Instrument::InHouse(m) => m.compliance_onsets_s(),
            _ => g.ctx.compliance_onsets_s.clone(),
        }
    }

    /// Device time of the run (s since the frame's reset), once the wire carries a run.
    pub fn device_time_s(&self) -> Option<f64> {
        let g = self.lock();
        (!self.cfg.gate_on_frame_reset || g.ctx.frame_resets > 0).then_some(g.ctx.last.time_s)
    }

    /// Handle one program message (terminator removed): execute its units in order and return
    /// the response message (without terminator), `None` when nothing is to be sent.
    pub fn handle(&self, message: &str) -> Option<Vec<u8>> {
        let mut g = self.lock();
        let Inner { ctx, inst, .. } = &mut *g;
        if let Instrument::InHouse(m) = inst {
            return m.handle(message).map(String::into_bytes);
        }
        let units = match scpi::split_units(message) {
            Ok(u) => u,
            Err(e) => {
                ctx.error(e);
                return None;
            }
        };
        let mut path = Vec::new();
        let mut responses: Vec<Vec<u8>> = Vec::new();
        for text in units {
            let unit = match scpi::parse_unit(text, &mut path) {
                Ok(Some(u)) => u,
                Ok(None) => continue,
                Err(e) => {
                    // IEEE 488.2 §6.1.6: a command error ends the parse of the message.
                    ctx.error(e);
                    break;
                }
            };
            let result = match ctx.common(&unit) {
                Some(r) => r,
                None => match inst {
                    Instrument::K2450(m) => m.execute(ctx, &unit),
                    Instrument::B2900(m) => m.execute(ctx, &unit),
                    Instrument::InHouse(_) => Err(ScpiError::UNDEFINED_HEADER),
                },
            };
            match result {
                Ok(Some(r)) => responses.push(r),
                Ok(None) => {}
                // An erroneous query produces no response (IEEE 488.2 §6.3.2.1): the client's
                // read times out, as with the instrument, and the queue says why.
                Err(e) => ctx.error(e),
            }
        }
        if responses.is_empty() {
            return None;
        }
        // IEEE 488.2 §8.4.1: response message units are separated by ';'.
        Some(responses.join(&b';'))
    }

    /// The reply bytes for one program message, with faults applied and the terminator
    /// appended.
    pub fn reply_bytes(&self, message: &str) -> Option<Vec<u8>> {
        let reply = self.handle(message)?;
        let late = match self.cfg.latency_after_s {
            None => true,
            Some(t) => self.device_time_s().is_some_and(|now| now >= t),
        };
        let (garbage, delay) = {
            let mut g = self.lock();
            g.queries += 1;
            let n = g.queries;
            let delay = match self.cfg.delay_reply {
                Some((at, d)) if at == n => {
                    g.delayed.push(message.to_string());
                    d
                }
                _ => Duration::ZERO,
            };
            (self.cfg.garbage_after == Some(n), delay)
        };
        let wait = if late { self.cfg.latency + delay } else { delay };
        if !wait.is_zero() {
            // The injected fault itself: the reply leaves this much later.
            std::thread::sleep(wait);
        }
        let mut bytes = if garbage { b"\x15\xfe#!garbage\x00".to_vec() } else { reply };
        bytes.extend_from_slice(self.cfg.terminator.as_bytes());
        Some(bytes)
    }

    /// Queries answered so far (set-up included; for ground truth).
    pub fn queries(&self) -> u64 {
        self.lock().queries
    }

    /// The queries whose replies the `delay_reply` fault held back (for ground truth).
    pub fn delayed_queries(&self) -> Vec<String> {
        self.lock().delayed.clone()
    }

    /// Queue −410 "Query INTERRUPTED" (a message came while a reply was unread; see
    /// [`MessageExchange`]).
    fn query_interrupted(&self) {
        let mut g = self.lock();
        let Inner { ctx, inst, .. } = &mut *g;
        match inst {
            Instrument::InHouse(m) => {
                m.push_error(ScpiError::QUERY_INTERRUPTED.code, ScpiError::QUERY_INTERRUPTED.text)
            }
            _ => ctx.error(ScpiError::QUERY_INTERRUPTED),
        }
    }

    /// Advance the meter's own clock (timer triggers) without a frame sample.
    pub fn poll_clock(&self) {
        let mut g = self.lock();
        let Inner { ctx, inst, .. } = &mut *g;
        match inst {
            Instrument::K2450(m) => m.run_timers(ctx),
            Instrument::B2900(m) => m.run_timers(ctx),
            Instrument::InHouse(_) => {}
        }
    }
}

/// The meter as a USB-TMC (or GPIB) controller meets it, in process: IEEE 488.2-1992's message
/// exchange protocol, which a byte stream (the pty and TCP services) does not have. A reply waits
/// in the output queue until the controller reads it; a program message that arrives while it is
/// still unread clears it and queues −410 "Query INTERRUPTED" (§6.3.2.3). No USB-TMC gadget
/// exists on a test machine, so a test puts this behind its own transport; the meter itself can
/// be served on TCP at the same time ([`serve_tcp`]), and an independent client reads what the
/// exchange left in the error queue there.
#[derive(Debug)]
pub struct MessageExchange {
    meter: Arc<Meter>,
    /// The output queue: reply bytes not yet read.
    output: Vec<u8>,
    /// Fault: the reply to this query (1-based, counted over this exchange) is late — it reaches
    /// the output queue only when the next message arrives, which then interrupts it (a query
    /// still executing when the controller's read gave up).
    late_query: Option<u64>,
    queries: u64,
    held: Option<Vec<u8>>,
}

impl MessageExchange {
    /// An exchange with `meter`; with `late_query = Some(n)` the reply to its n-th query is late.
    pub fn new(meter: Arc<Meter>, late_query: Option<u64>) -> Self {
        Self { meter, output: Vec::new(), late_query, queries: 0, held: None }
    }

    /// The controller sends one program message (a trailing terminator is ignored).
    pub fn write(&mut self, message: &str) {
        if let Some(late) = self.held.take() {
            self.output.extend_from_slice(&late);
        }
        if !self.output.is_empty() {
            // §6.3.2.3: the unread response is discarded and the query error reported.
            self.output.clear();
            self.meter.query_interrupted();
        }
        let message = message.trim_end_matches(['\n', '\r']);
        if let Some(mut reply) = self.meter.handle(message) {
            self.queries += 1;
            reply.extend_from_slice(self.meter.config().terminator.as_bytes());
            if Some(self.queries) == self.late_query {
                self.held = Some(reply);
            } else {
                self.output = reply;
            }
        }
    }

    /// The controller reads: up to `buf.len()` bytes of the output queue, 0 when it is empty
    /// (where USB-TMC would wait out its timeout).
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let n = self.output.len().min(buf.len());
        buf[..n].copy_from_slice(&self.output[..n]);
        self.output.drain(..n);
        n
    }
}

/// The pseudo-terminal a meter is served on.
#[derive(Debug)]
pub struct PtyServer {
    /// Path of the slave side (`/dev/pts/N`): what a client opens.
    pub path: String,
    /// The serving thread; ends when `stop` is set.
    pub thread: JoinHandle<()>,
}

/// Serve `meter` on a new pseudo-terminal until `stop` is set. Commands end in `\n` or `\r`
/// (either accepted, so any configured terminator works); replies end in the meter's terminator.
pub fn serve_pty(meter: Arc<Meter>, stop: Arc<AtomicBool>) -> std::io::Result<PtyServer> {
    let (mut master, slave) = TTYPort::pair().map_err(std::io::Error::from)?;
    let path = slave
        .name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "pseudo-terminal has no slave path"))?;
    // Ours keeps the slave open (without TIOCEXCL or a flock, so a client may still open it
    // exclusively) only so the master never reads EIO while no client is connected.
    master.set_timeout(Duration::from_millis(50)).map_err(std::io::Error::from)?;
    let thread = std::thread::Builder::new().name("scpi-pty".into()).spawn(move || {
        let _slave = slave;
        let mut line = Vec::with_capacity(256);
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            let n = match master.read(&mut buf) {
                Ok(0) => continue,
                Ok(n) => n,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {
                    continue
                }
                // EIO: the last client closed the slave; keep serving the next one.
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            for &b in &buf[..n] {
                if b == b'\n' || b == b'\r' {
                    if !line.is_empty() {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        line.clear();
                        if let Some(reply) = meter.reply_bytes(&text) {
                            if master.write_all(&reply).and_then(|()| master.flush()).is_err() {
                                // The client went away mid-reply; the next one starts afresh.
                                line.clear();
                            }
                        }
                    }
                } else if line.len() < 65_536 {
                    line.push(b);
                }
            }
        }
    })?;
    Ok(PtyServer { path, thread })
}

/// The TCP socket a meter is served on (the instruments' raw-socket SCPI service, port 5025 on
/// both the 2450 and the B2900).
#[derive(Debug)]
pub struct TcpServer {
    /// The bound address (port 0 resolved).
    pub addr: SocketAddr,
    /// The accepting thread; ends when `stop` is set.
    pub thread: JoinHandle<()>,
}

/// Serve `meter` on `addr` until `stop` is set: one thread per connection, `TCP_NODELAY`,
/// messages end in `\n` (a preceding `\r` is dropped), replies end in the meter's terminator.
/// With `drop_after_s`, each connection open when the device time reaches it is closed
/// (a LAN drop); later connections are served.
pub fn serve_tcp(meter: Arc<Meter>, addr: SocketAddr, stop: Arc<AtomicBool>) -> std::io::Result<TcpServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let dropped = Arc::new(AtomicBool::new(false));
    let thread = std::thread::Builder::new().name("scpi-tcp".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let (meter, stop, dropped) = (meter.clone(), stop.clone(), dropped.clone());
                    let _ = std::thread::Builder::new()
                        .name("scpi-conn".into())
                        .spawn(move || serve_connection(stream, &meter, &stop, &dropped));
                }
                // Non-blocking accept: nothing pending; look again shortly (not a test's
                // synchronisation, the server's own poll).
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    })?;
    Ok(TcpServer { addr, thread })
}

fn serve_connection(mut stream: TcpStream, meter: &Meter, stop: &AtomicBool, dropped: &AtomicBool) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_nodelay(true).is_err()
        || stream.set_read_timeout(Some(Duration::from_millis(20))).is_err()
    {
        return;
    }
    let drop_at = meter.config().drop_after_s;
    let mut line = Vec::with_capacity(256);
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        if let Some(t) = drop_at {
            if !dropped.load(Ordering::Relaxed) && meter.device_time_s().is_some_and(|now| now >= t) {
                dropped.store(true, Ordering::Relaxed);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        meter.poll_clock();
        let n = match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                line.clear();
                if let Some(reply) = meter.reply_bytes(&text) {
                    if stream.write_all(&reply).and_then(|()| stream.flush()).is_err() {
                        return;
                    }
                }
            } else if line.len() < 65_536 {
                line.push(b);
            }
        }
    }
}

/// Format a number as the instruments print NR3 ASCII data (`+1.234567E-06`).
pub fn nr3(v: f64) -> String {
    let s = format!("{v:.6E}");
    // Rust prints `1.234567E-6`; the instruments print a sign and a two-digit exponent.
    let (mant, exp) = s.split_once('E').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if mant.starts_with('-') { "" } else { "+" };
    format!("{sign}{mant}E{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}
