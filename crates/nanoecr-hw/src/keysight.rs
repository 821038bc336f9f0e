//! Keysight (formerly Agilent) B2900 series precision source/measure units
//! (`model = "keysight-b2900"`: B2901A/B2902A/B2911A/B2912A and the B-models), channel 1.
//!
//! Written from the B2900 SCPI Command Reference (B2910-90030, Agilent edition 2 / Keysight
//! editions) and the B2900 User's Guide (chapter 6 "Function Details", "Trigger System"): `*RST`
//! and `*CLS` are in the reference's chapter 3 "Common Commands", every other command below is in
//! its chapter 4 "Subsystem Commands" under its long form; chapter 1 "Data Output Format" (p. 1-12
//! in edition 2) gives the ASCII and binary layouts and Table 1-2 (p. 1-14) the status bits.
//! docs/hardware.md lists the exact sequence.
//!
//! The meter sources a fixed voltage with a current compliance and measures current at a fixed
//! range, one reading per trigger from the frame's sample clock on the rear Digital I/O pin 1
//! (trigger source `EXT1`) or from its own timer, into the trace buffer. During the run the host
//! polls the buffer's fill (`:TRAC:POIN:ACT?`) and fetches the new readings (`:TRAC:DATA?
//! <offset>,<size>`) as IEEE 754 float64 binary blocks (or ASCII): current, time, status.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use nanoecr_core::config::hardware::{SmuConfig, SmuTrigger};

use crate::keithley::parse_count;
use crate::scpi::{poll_interval, range_for, RunPlan, ScpiClient};
use crate::{DeviceInfo, HwError, SmuPacing, SmuReading, SourceMeter};

/// `:SENSe:CURRent:RANGe` values, A, common to every B29xx model (B2900 SCPI Command Reference,
/// `:SENSe:CURRent[:DC]:RANGe[:UPPer]`; the 10 nA range exists on the B2911/B2912 only).
pub const CURRENT_RANGES_A: [f64; 10] = [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1.5, 3.0];
/// Status bits 1 and 2: compliance condition (values 2, 4 or 6 mean yes) — B2900 SCPI Command
/// Reference, chapter 1, Table 1-2 "Bit Definitions of Status Data" (p. 1-14, edition 2: "0: No
/// or 1, 2, 3: Yes"; what 1, 2 and 3 tell apart is not said there, so any of them is compliance).
pub const STATUS_COMPLIANCE: u32 = 2 | 4;
/// Status bit 13: measurement range overflow (same table).
pub const STATUS_RANGE_OVERFLOW: u32 = 8192;
/// SCPI's overflow value: in ASCII the B2900 sends `+9.900000E+37` / `-9.900000E+37` for
/// ±infinity and `+9.910000E+37` for NaN ("Data Output Format", p. 1-12); in binary it sends
/// IEEE ±inf and NaN.
pub const OVERFLOW: f64 = 9.9e37;
/// Values per reading: `:FORM:ELEM:SENS CURR,TIME,STAT`.
const ELEMENTS: usize = 3;
/// Readings fetched by one `:TRAC:DATA?` at most.
const MAX_FETCH: usize = 256;

/// Decode float64 values from a `:FORM:DATA REAL,64` block in `:FORM:BORD NORM` order (byte 1
/// first: big-endian) — B2900 SCPI Command Reference, chapter 1 "Data Output Format" (p. 1-12).
pub fn decode_real64(block: &[u8]) -> impl Iterator<Item = f64> + '_ {
    block.chunks_exact(8).map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
}

/// A B2900-series unit over any transport.
pub struct KeysightB2900 {
    scpi: ScpiClient,
    info: DeviceInfo,
    trigger: SmuTrigger,
    nplc: f64,
    binary: bool,
    plan: RunPlan,
    poll: Duration,
    next_poll: Instant,
    delivered: u64,
    voltage_v: f64,
    on: bool,
    armed: bool,
    cmd: String,
}

impl std::fmt::Debug for KeysightB2900 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeysightB2900")
            .field("device", &self.scpi.device())
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

/// Whether an `*IDN?` model field names a B29xx unit (`B2901A`, `B2912B`, …).
fn is_b29xx(model: &str) -> bool {
    let m = model.trim().to_ascii_uppercase();
    let b = m.as_bytes();
    b.len() >= 5 && m.starts_with("B29") && b[3].is_ascii_digit() && b[4].is_ascii_digit()
}

impl KeysightB2900 {
    /// Connect per `cfg` under the logical name `name` and check the identity.
    pub fn open(name: &str, cfg: &SmuConfig, plan: RunPlan) -> Result<Self, HwError> {
        let scpi = crate::devices::connect(name, cfg)?;
        Self::with_client(scpi, cfg, plan)
    }

    /// As [`open`](Self::open) over an already connected client.
    pub fn with_client(mut scpi: ScpiClient, cfg: &SmuConfig, plan: RunPlan) -> Result<Self, HwError> {
        let info = scpi.identify()?;
        let vendor = info.vendor.to_ascii_uppercase();
        // *IDN? — B2900 SCPI Command Reference, chapter 3, "*IDN?" (page and exact text unverified):
        // "Keysight Technologies,<model>,<serial>,<firmware>" (Agilent Technologies on units sold
        // before 2014); compared in upper case, as other Agilent units answer "AGILENT TECHNOLOGIES".
        let vendor_ok = vendor.starts_with("KEYSIGHT") || vendor.starts_with("AGILENT");
        if !(vendor_ok && is_b29xx(&info.model)) {
            return Err(scpi.protocol(
                "identify",
                format!(
                    "the instrument answers *IDN? with {:?}, not a Keysight/Agilent B29xx (hardware.smu.model = \
                     \"keysight-b2900\")",
                    format!("{},{},{},{}", info.vendor, info.model, info.serial, info.firmware)
                ),
            ));
        }
        Ok(Self {
            scpi,
            info,
            trigger: cfg.trigger,
            nplc: cfg.nplc,
            binary: cfg.binary,
            plan,
            poll: poll_interval(plan.rate_hz),
            next_poll: Instant::now(),
            delivered: 0,
            voltage_v: 0.0,
            on: false,
            armed: false,
            cmd: String::with_capacity(64),
        })
    }

    /// Link counters.
    pub fn stats(&self) -> crate::scpi::ScpiStats {
        self.scpi.stats()
    }

    /// The set-up sequence (docs/hardware.md, "Keysight B2900").
    pub fn setup_commands(&self, voltage_v: f64, compliance_a: f64) -> Vec<String> {
        let n = self.plan.readings;
        let mut c = vec![
            "*RST".to_string(),
            "*CLS".to_string(),
            ":SOUR:FUNC:MODE VOLT".to_string(),
            format!(":SOUR:VOLT {voltage_v:E}"),
            ":SENS:FUNC \"CURR\"".to_string(),
            format!(":SENS:CURR:PROT {compliance_a:E}"),
            ":SENS:CURR:RANG:AUTO OFF".to_string(),
            format!(":SENS:CURR:RANG {:E}", range_for(&CURRENT_RANGES_A, compliance_a)),
            format!(":SENS:CURR:NPLC {}", self.nplc),
        ];
        match self.trigger {
            // EXT1: "a signal from the DIO pin 1" of the rear Digital I/O connector (User's Guide,
            // "Trigger System", trigger sources).
            SmuTrigger::External => c.push(":TRIG:SOUR EXT1".into()),
            SmuTrigger::Timer => {
                c.push(":TRIG:SOUR TIM".into());
                c.push(format!(":TRIG:TIM {:E}", 1.0 / self.plan.rate_hz));
            }
        }
        c.push(format!(":TRIG:COUN {n}"));
        c.push(":ARM:COUN 1".into());
        c.push(":TRAC:FEED SENS".into());
        c.push(format!(":TRAC:POIN {n}"));
        c.push(":TRAC:FEED:CONT NEXT".into());
        if self.binary {
            c.push(":FORM:DATA REAL,64".into());
            c.push(":FORM:BORD NORM".into());
        } else {
            c.push(":FORM:DATA ASC".into());
        }
        c.push(":FORM:ELEM:SENS CURR,TIME,STAT".into());
        c
    }

    fn stream(&self, message: String) -> HwError {
        HwError::Stream { device: self.scpi.device().to_string(), message }
    }

    fn reading(&self, seq: u64, current: f64, time_s: f64, status: f64) -> SmuReading {
        let status = if status.is_finite() && status >= 0.0 { status as u32 } else { 0 };
        let valid = current.is_finite() && current.abs() < OVERFLOW && status & STATUS_RANGE_OVERFLOW == 0;
        SmuReading {
            seq,
            current_a: if valid { current } else { f64::NAN },
            voltage_v: self.voltage_v,
            compliance: status & STATUS_COMPLIANCE != 0,
            time_s,
        }
    }
}

impl SourceMeter for KeysightB2900 {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        Ok(self.info.clone())
    }

    fn bias_on(&mut self, voltage_v: f64, compliance_a: f64) -> Result<(), HwError> {
        for c in self.setup_commands(voltage_v, compliance_a) {
            self.scpi.send("set-up", &c)?;
        }
        self.scpi.drain_errors("set-up")?;
        self.voltage_v = voltage_v;
        self.on = true;
        self.scpi.send("output on", ":OUTP ON")?;
        self.scpi.send("arming", ":INIT")?;
        // Processed in order: once this answers, :INIT has been taken and the frame may start.
        self.scpi.drain_errors("arming")?;
        self.delivered = 0;
        self.armed = true;
        self.next_poll = Instant::now();
        Ok(())
    }

    fn acquire(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        if !self.armed || out.is_empty() {
            return Ok(0);
        }
        let now = Instant::now();
        if now < self.next_poll {
            return Ok(0);
        }
        self.next_poll = now + self.poll;
        // :TRACe:POINts:ACTual? — number of readings in the trace buffer.
        let r = self.scpi.query("buffer fill", ":TRAC:POIN:ACT?").map(|s| parse_count(s).ok_or_else(|| s.to_string()));
        let count = match r? {
            Ok(c) => c,
            Err(text) => return Err(self.scpi.protocol("buffer fill", format!("{text:?} is not a count"))),
        };
        if count < self.delivered {
            return Err(self.stream(format!(
                "trace buffer shrank from {} to {count} readings: the instrument restarted mid-run",
                self.delivered
            )));
        }
        if count > self.plan.readings {
            return Err(self.stream(format!(
                "{count} readings in a buffer sized for {}: extra readings (stray trigger pulses?)",
                self.plan.readings
            )));
        }
        let available = (count - self.delivered) as usize;
        if available == 0 {
            return Ok(0);
        }
        let k = available.min(out.len()).min(MAX_FETCH);
        if k < available {
            self.next_poll = now;
        }
        // :TRACe:DATA? <offset>,<size> — offset 0-based, size readings, elements per :FORM:ELEM:SENS.
        self.cmd.clear();
        let _ = write!(self.cmd, ":TRAC:DATA? {},{k}", self.delivered);
        let cmd = std::mem::take(&mut self.cmd);
        let base = self.delivered;
        let result = if self.binary {
            self.scpi.query_block("buffered read", &cmd).map(drop)
        } else {
            self.scpi.query("buffered read", &cmd).map(drop)
        };
        self.cmd = cmd;
        result?;
        if self.binary {
            let block = self.scpi.block();
            if block.len() != k * ELEMENTS * 8 {
                return Err(self.stream(format!(
                    "asked for readings {base}..{} ({k} × {ELEMENTS} float64 = {} bytes), got a {}-byte block: a \
                     reading is missing or extra",
                    base + k as u64,
                    k * ELEMENTS * 8,
                    block.len()
                )));
            }
            let mut v = decode_real64(block);
            for (i, slot) in out.iter_mut().take(k).enumerate() {
                let (c, t, s) = (v.next().unwrap_or(f64::NAN), v.next().unwrap_or(f64::NAN), v.next().unwrap_or(0.0));
                *slot = self.reading(base + i as u64, c, t, s);
            }
        } else {
            let reply = self.scpi.reply();
            let values = reply.split(',').filter(|v| !v.trim().is_empty()).count();
            if values != ELEMENTS * k {
                return Err(self.stream(format!(
                    "asked for readings {base}..{} ({k} × {ELEMENTS} values), got {values} values: a reading is \
                     missing or extra",
                    base + k as u64
                )));
            }
            let mut it = reply.split(',');
            for (i, slot) in out.iter_mut().take(k).enumerate() {
                let mut next = || -> Result<f64, HwError> {
                    let v = it.next().unwrap_or("").trim();
                    v.parse::<f64>()
                        .map_err(|_| self.scpi.protocol("buffered read", format!("value {v:?} is not a number")))
                };
                let (c, t, s) = (next()?, next()?, next()?);
                *slot = self.reading(base + i as u64, c, t, s);
            }
        }
        self.delivered += k as u64;
        Ok(k)
    }

    fn acquire_now(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        self.next_poll = Instant::now();
        self.acquire(out)
    }

    fn bias_off(&mut self) -> Result<(), HwError> {
        self.armed = false;
        self.on = false;
        self.scpi.abort_and_output_off()
    }

    fn pacing(&self) -> SmuPacing {
        self.trigger.into()
    }

    fn device(&self) -> &str {
        self.scpi.device()
    }
}

impl Drop for KeysightB2900 {
    fn drop(&mut self) {
        if self.on {
            // Output off on every exit path, even one that never reached bias_off.
            self.scpi.output_off_on_drop();
        }
    }
}
