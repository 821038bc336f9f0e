//! Keithley 2450 SourceMeter in its native SCPI command set (`model = "keithley-2450"`).
//!
//! Written from the Model 2450 Interactive SourceMeter Reference Manual 2450-901-01 (Rev. B,
//! September 2013): section 6 "SCPI command reference" for every command below, section 8's
//! `bufferVar.sourcestatuses` for the source-status bits, and the "Trigger model" and "Reading
//! buffers" chapters for the trigger model built here. docs/hardware.md lists the exact sequence.
//!
//! The meter sources a fixed voltage with a current limit and measures current with a fixed
//! range, taking one reading into `defbuffer1` per pulse of the frame's sample clock on rear
//! digital I/O line 1 (or per tick of its own timer 1). During the run the host polls the
//! buffer's newest index and fetches the new readings with their relative timestamps and source
//! status; the i-th reading (buffer index i + 1) belongs to frame sample i.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use nanoecr_core::config::hardware::{SmuConfig, SmuTrigger};

use crate::scpi::{poll_interval, range_for, RunPlan, ScpiClient};
use crate::{DeviceInfo, HwError, SmuPacing, SmuReading, SourceMeter};

/// `:SOURce:VOLTage:RANGe` values, V (2450 reference manual, `:SOURce[1]:<function>:RANGe`).
pub const VOLTAGE_RANGES_V: [f64; 5] = [0.02, 0.2, 2.0, 20.0, 200.0];
/// `:SENSe:CURRent:RANGe` values, A (2450 reference manual, `:SENSe[1]:<function>:RANGe[:UPPer]`).
pub const CURRENT_RANGES_A: [f64; 9] = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
/// Source-status bit "source function was limited because the complementary function would be
/// over the source limit" (STAT_LIMIT, bit 5, decimal 32): 2450 reference manual section 8,
/// `bufferVar.sourcestatuses`, table "Buffer status bits for source function" (p. 8-29:
/// unverified); the SOURSTATus element of `:TRACe:DATA?` (p. 6-109) reports the same bits.
pub const SOURSTAT_LIMIT: u32 = 32;
/// SCPI's overflow value (IEEE 488.2 / SCPI-99 "9.9E37"): a reading out of range.
pub const OVERFLOW: f64 = 9.9e37;
/// Readings fetched by one `:TRAC:DATA?` at most.
const MAX_FETCH: usize = 256;
/// The reading buffer used (2450 reference manual, "Reading buffers": default buffer 1).
const BUFFER: &str = "\"defbuffer1\"";

/// A Keithley 2450 over any transport.
pub struct Keithley2450 {
    scpi: ScpiClient,
    info: DeviceInfo,
    trigger: SmuTrigger,
    nplc: f64,
    plan: RunPlan,
    poll: Duration,
    next_poll: Instant,
    /// Readings handed to the caller so far (= 0-based index of the next).
    delivered: u64,
    voltage_v: f64,
    on: bool,
    armed: bool,
    cmd: String,
}

impl std::fmt::Debug for Keithley2450 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keithley2450")
            .field("device", &self.scpi.device())
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl Keithley2450 {
    /// Connect per `cfg` under the logical name `name`, check the command set and identity.
    pub fn open(name: &str, cfg: &SmuConfig, plan: RunPlan) -> Result<Self, HwError> {
        let scpi = crate::devices::connect(name, cfg)?;
        Self::with_client(scpi, cfg, plan)
    }

    /// As [`open`](Self::open) over an already connected client.
    pub fn with_client(mut scpi: ScpiClient, cfg: &SmuConfig, plan: RunPlan) -> Result<Self, HwError> {
        // Before *IDN?: in its 2400 emulation mode a 2450 identifies as a MODEL 2400, which would
        // hide the one fix the operator needs. *LANG? — 2450 reference manual, appendix B, *LANG (p. B-5).
        let lang = scpi.query("checking the command set", "*LANG?")?.trim().to_ascii_uppercase();
        if lang != "SCPI" {
            return Err(scpi.protocol(
                "checking the command set",
                format!(
                    "the 2450 runs the {lang:?} command set, nanoecr speaks its native SCPI: on the front panel \
                     select MENU → System → Settings → Command Set → SCPI, then power-cycle the instrument"
                ),
            ));
        }
        let info = scpi.identify()?;
        // *IDN? — 2450 reference manual, appendix B, p. B-5: "KEITHLEY INSTRUMENTS INC.,MODEL nnnn,
        // <serial>,<firmware>" (Rev. B); later firmware drops "INC.", so the vendor is matched by prefix.
        if !(info.vendor.to_ascii_uppercase().starts_with("KEITHLEY") && info.model.eq_ignore_ascii_case("MODEL 2450"))
        {
            return Err(scpi.protocol(
                "identify",
                format!(
                    "the instrument answers *IDN? with {:?}, not a Keithley MODEL 2450 (hardware.smu.model = \
                     \"keithley-2450\")",
                    format!("{},{},{},{}", info.vendor, info.model, info.serial, info.firmware)
                ),
            ));
        }
        Ok(Self {
            scpi,
            info,
            trigger: cfg.trigger,
            nplc: cfg.nplc,
            plan,
            poll: poll_interval(plan.rate_hz),
            next_poll: Instant::now(),
            delivered: 0,
            voltage_v: 0.0,
            on: false,
            armed: false,
            cmd: String::with_capacity(128),
        })
    }

    /// Link counters.
    pub fn stats(&self) -> crate::scpi::ScpiStats {
        self.scpi.stats()
    }

    /// The set-up sequence (docs/hardware.md, "Keithley 2450"): `*RST` and `*CLS` are common
    /// commands, in the 2450 reference manual's appendix B (`*CLS` p. B-2; `*RST`'s page
    /// unverified); every other command is in its section 6 under its long form.
    pub fn setup_commands(&self, voltage_v: f64, compliance_a: f64) -> Vec<String> {
        let n = self.plan.readings;
        let mut c = vec![
            "*RST".to_string(),
            "*CLS".to_string(),
            ":SOUR:FUNC VOLT".to_string(),
            format!(":SOUR:VOLT:RANG {:E}", range_for(&VOLTAGE_RANGES_V, voltage_v)),
            format!(":SOUR:VOLT {voltage_v:E}"),
            format!(":SOUR:VOLT:ILIM {compliance_a:E}"),
            ":SENS:FUNC \"CURR\"".to_string(),
            format!(":SENS:CURR:RANG {:E}", range_for(&CURRENT_RANGES_A, compliance_a)),
            format!(":SENS:CURR:NPLC {}", self.nplc),
            ":SENS:CURR:AZER OFF".to_string(),
            format!(":TRAC:POIN {n}, {BUFFER}"),
            format!(":TRAC:CLE {BUFFER}"),
        ];
        let event = match self.trigger {
            SmuTrigger::External => {
                c.push(":DIG:LINE1:MODE TRIG, IN".into());
                c.push(":TRIG:DIG1:IN:EDGE FALL".into());
                "DIGIO1"
            }
            SmuTrigger::Timer => {
                c.push(format!(":TRIG:TIM1:DEL {:E}", 1.0 / self.plan.rate_hz));
                c.push(":TRIG:TIM1:COUN 0".into());
                c.push(":TRIG:TIM1:STAR:GEN ON".into());
                "TIMER1"
            }
        };
        c.push(":TRIG:LOAD \"Empty\"".into());
        c.push(format!(":TRIG:BLOC:BUFF:CLE 1, {BUFFER}"));
        c.push(format!(":TRIG:BLOC:WAIT 2, {event}"));
        c.push(format!(":TRIG:BLOC:MDIG 3, {BUFFER}, 1"));
        c.push(format!(":TRIG:BLOC:BRAN:COUN 4, {n}, 2"));
        c
    }

    fn stream(&self, message: String) -> HwError {
        HwError::Stream { device: self.scpi.device().to_string(), message }
    }
}

/// Parse an index or count reply (`5`, `+5`, `5.000000E+00`).
pub(crate) fn parse_count(reply: &str) -> Option<u64> {
    let t = reply.trim().trim_start_matches('+');
    t.parse::<u64>().ok().or_else(|| {
        let v: f64 = t.parse().ok()?;
        (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1e15).then_some(v as u64)
    })
}

impl SourceMeter for Keithley2450 {
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
        // :INITiate starts the trigger model: it clears the buffer and waits for the first pulse.
        self.scpi.send("arming", ":INIT")?;
        if self.trigger == SmuTrigger::Timer {
            // Enabled after :INIT so no timer event fires before the model waits for it.
            self.scpi.send("arming", ":TRIG:TIM1:STAT ON")?;
        }
        // A query after :INIT returns once the instrument has processed it: the frame restarts
        // its sample clock only then.
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
        // :TRACe:ACTual:END? — 2450 reference manual, section 6: index of the last reading in
        // the buffer (0 when empty).
        self.cmd.clear();
        let _ = write!(self.cmd, ":TRAC:ACT:END? {BUFFER}");
        let cmd = std::mem::take(&mut self.cmd);
        let r = self.scpi.query("buffer index", &cmd).map(|s| parse_count(s).ok_or_else(|| s.to_string()));
        self.cmd = cmd;
        let end = match r? {
            Ok(e) => e,
            Err(text) => return Err(self.scpi.protocol("buffer index", format!("{text:?} is not an index"))),
        };
        if end < self.delivered {
            return Err(self.stream(format!(
                "buffer index went back from {} to {end}: the instrument restarted its buffer mid-run",
                self.delivered
            )));
        }
        if end > self.plan.readings {
            return Err(self.stream(format!(
                "{end} readings in a buffer sized for {}: extra readings (stray trigger pulses?)",
                self.plan.readings
            )));
        }
        let available = (end - self.delivered) as usize;
        if available == 0 {
            return Ok(0);
        }
        let k = available.min(out.len()).min(MAX_FETCH);
        if k < available {
            // A backlog: fetch the rest at the next tick rather than a poll interval later.
            self.next_poll = now;
        }
        // :TRACe:DATA? <start>, <end>, <buffer>, READ, REL, SOURSTAT — 2450 reference manual,
        // section 6 (p. 6-109): 1-based inclusive indices; elements per reading in the order asked.
        let (first, last) = (self.delivered + 1, self.delivered + k as u64);
        self.cmd.clear();
        let _ = write!(self.cmd, ":TRAC:DATA? {first}, {last}, {BUFFER}, READ, REL, SOURSTAT");
        let cmd = std::mem::take(&mut self.cmd);
        let r = self.scpi.query("buffered read", &cmd).map(drop);
        self.cmd = cmd;
        r?;
        let scpi = &self.scpi;
        let reply = scpi.reply();
        let values = reply.split(',').filter(|v| !v.trim().is_empty()).count();
        if values != 3 * k {
            return Err(HwError::Stream {
                device: scpi.device().to_string(),
                message: format!(
                    "asked for readings {first}..={last} ({k} × 3 values), got {values} values: a reading is \
                     missing or extra"
                ),
            });
        }
        let mut it = reply.split(',');
        for (i, slot) in out.iter_mut().take(k).enumerate() {
            let mut next = || -> Result<f64, HwError> {
                let v = it.next().unwrap_or("").trim();
                v.parse::<f64>().map_err(|_| scpi.protocol("buffered read", format!("value {v:?} is not a number")))
            };
            let current = next()?;
            let rel_s = next()?;
            let status = next()?;
            // Overflow (9.9E37) and anything non-finite: not a number the pipeline may use.
            let current_a = if current.is_finite() && current.abs() < OVERFLOW { current } else { f64::NAN };
            *slot = SmuReading {
                seq: self.delivered + i as u64,
                current_a,
                voltage_v: self.voltage_v,
                compliance: (status as u32) & SOURSTAT_LIMIT != 0,
                time_s: rel_s,
            };
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

impl Drop for Keithley2450 {
    fn drop(&mut self) {
        if self.on {
            // Output off on every exit path, even one that never reached bias_off.
            self.scpi.output_off_on_drop();
        }
    }
}
