//! The in-house SCPI dialect of the repository's firmware shim (`model = "nanoecr-scpi"`,
//! docs/hardware.md), over any [`crate::transport`] (historically a serial port).
//!
//! Readings come from the instrument's buffer, one per shared trigger, tagged with the load
//! frame's sequence number: `:TRAC:DATA? <n>,<seq>` acknowledges every reading before `<seq>` and
//! returns up to `<n>` readings from `<seq>` on, as `seq,current,flags;…`. The acknowledgement
//! travels with the query, so a retried read after a timeout returns the same readings again.

use std::fmt::Write as _;

use nanoecr_core::config::hardware::SmuConfig;

use crate::scpi::ScpiClient;
use crate::{DeviceInfo, HwError, SmuReading, SourceMeter};

/// Reading flag: the output is limiting at its compliance.
pub const FLAG_COMPLIANCE: u8 = 1;
/// Reading flag: the current was out of the measurement range (value 9.9E37).
pub const FLAG_OVERRANGE: u8 = 2;
/// Reading flag: the output was off.
pub const FLAG_OUTPUT_OFF: u8 = 4;
/// Readings fetched per query at most (the instrument's limit is 1024).
const MAX_PER_QUERY: usize = 256;

/// A source-measure unit speaking the in-house dialect.
pub struct ScpiSourceMeter {
    scpi: ScpiClient,
    query_buf: String,
    next_seq: u64,
    voltage_v: f64,
    on: bool,
}

impl std::fmt::Debug for ScpiSourceMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScpiSourceMeter")
            .field("device", &self.scpi.device())
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl ScpiSourceMeter {
    /// Open the link described by `cfg` under the logical name `name` and reset the instrument
    /// (`*RST`, `*CLS`): output off, buffer empty, error queue empty.
    pub fn open(name: &str, cfg: &SmuConfig) -> Result<Self, HwError> {
        let scpi = crate::devices::connect(name, cfg)?;
        Self::with_client(scpi)
    }

    /// Use an already connected client (tests).
    pub fn with_client(scpi: ScpiClient) -> Result<Self, HwError> {
        let mut me = Self { scpi, query_buf: String::with_capacity(64), next_seq: 0, voltage_v: 0.0, on: false };
        me.scpi.send("reset", "*RST")?;
        me.scpi.send("reset", "*CLS")?;
        // Commands are not acknowledged: wait until the instrument has done both, or a late
        // *RST could empty the reading buffer after the frame's first trigger.
        let done = me.scpi.query("reset", "*OPC?")?.trim().to_string();
        if done != "1" {
            return Err(me.scpi.protocol("reset", format!("*OPC? reply {done:?}")));
        }
        Ok(me)
    }

    /// The logical name and link this backend reports in errors.
    pub fn device(&self) -> &str {
        self.scpi.device()
    }

    /// Read the error queue once; a non-zero entry becomes [`HwError::Device`].
    fn check_errors(&mut self, operation: &str) -> Result<(), HwError> {
        let reply = self.scpi.query(operation, ":SYST:ERR?")?.to_string();
        let (code, message) = crate::scpi::parse_error_entry(&reply)
            .ok_or_else(|| self.scpi.protocol(operation, format!("error queue reply {reply:?}")))?;
        // Entries a resynchronisation read off the queue (this query's included) are older.
        self.scpi.carried_errors(operation)?;
        if code != 0 {
            return Err(HwError::Device {
                device: self.scpi.device().to_string(),
                operation: operation.into(),
                code,
                message,
            });
        }
        Ok(())
    }

    /// One immediate reading (`:READ?`): current, A, and flags.
    pub fn read_now(&mut self) -> Result<(f64, u8), HwError> {
        let reply = self.scpi.query("read", ":READ?")?.to_string();
        let bad = || self.scpi.protocol("read", format!("reading {reply:?}"));
        let (c, f) = reply.split_once(',').ok_or_else(bad)?;
        let current = c.trim().parse::<f64>().map_err(|_| bad())?;
        let flags = f.trim().parse::<u8>().map_err(|_| bad())?;
        Ok((current, flags))
    }
}

impl SourceMeter for ScpiSourceMeter {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        self.scpi.identify()
    }

    fn bias_on(&mut self, voltage_v: f64, compliance_a: f64) -> Result<(), HwError> {
        self.scpi.send("bias on", ":SOUR:FUNC VOLT")?;
        self.scpi.send("bias on", &format!(":SOUR:VOLT {voltage_v:E}"))?;
        self.scpi.send("bias on", &format!(":SENS:CURR:PROT {compliance_a:E}"))?;
        self.scpi.send("bias on", ":OUTP ON")?;
        self.check_errors("bias on")?;
        let state = self.scpi.query("bias on", ":OUTP?")?.trim().to_string();
        if state != "1" {
            return Err(self.scpi.protocol("bias on", format!("output reads {state:?} after :OUTP ON")));
        }
        self.voltage_v = voltage_v;
        self.on = true;
        // The frame restarts its sequence (and so the trigger's) at 0 right after this.
        self.next_seq = 0;
        Ok(())
    }

    fn acquire(&mut self, out: &mut [SmuReading]) -> Result<usize, HwError> {
        let want = out.len().min(MAX_PER_QUERY);
        if want == 0 {
            return Ok(0);
        }
        let mut q = std::mem::take(&mut self.query_buf);
        q.clear();
        let _ = write!(q, ":TRAC:DATA? {want},{}", self.next_seq);
        let r = self.scpi.query("buffered read", &q).map(drop);
        self.query_buf = q;
        r?;
        let scpi = &self.scpi;
        let reply = scpi.reply();
        let mut n = 0;
        for rec in reply.split(';').filter(|r| !r.is_empty()) {
            let bad = || scpi.protocol("buffered read", format!("reading {rec:?}"));
            let mut it = rec.split(',');
            let (Some(s), Some(c), Some(f), None) = (it.next(), it.next(), it.next(), it.next()) else {
                return Err(bad());
            };
            let seq: u64 = s.trim().parse().map_err(|_| bad())?;
            let current: f64 = c.trim().parse().map_err(|_| bad())?;
            let flags: u8 = f.trim().parse().map_err(|_| bad())?;
            if seq < self.next_seq {
                // The instrument drops every reading before the acknowledged one before it
                // answers (docs/hardware.md, "Shared trigger and the buffer"): this reply
                // answers an earlier query. Retried after resynchronising.
                let e = scpi.protocol(
                    "buffered read",
                    format!("reading {seq} in the reply to a read from {}: a late reply", self.next_seq),
                );
                self.scpi.mark_out_of_step();
                return Err(e);
            }
            if seq > self.next_seq {
                return Err(HwError::Stream {
                    device: scpi.device().to_string(),
                    message: format!("reading sequence gap: expected {}, got {seq}", self.next_seq),
                });
            }
            if n == want {
                return Err(scpi.protocol("buffered read", format!("more than the {want} readings asked for")));
            }
            // Out of range (SCPI overflow 9.9E37): not a number the pipeline may use.
            let current_a = if flags & FLAG_OVERRANGE != 0 || current.abs() >= 9.9e37 { f64::NAN } else { current };
            let on = flags & FLAG_OUTPUT_OFF == 0;
            out[n] = SmuReading {
                seq,
                current_a,
                voltage_v: if on { self.voltage_v } else { 0.0 },
                compliance: flags & FLAG_COMPLIANCE != 0,
                time_s: f64::NAN,
            };
            n += 1;
            self.next_seq += 1;
        }
        Ok(n)
    }

    fn bias_off(&mut self) -> Result<(), HwError> {
        self.on = false;
        // After an error this goes out over a restarted link, and `:OUTP?` resynchronises first
        // (a late reply on the line would otherwise be read as the output's state).
        self.scpi.send("bias off", ":OUTP OFF")?;
        let state = self.scpi.query("bias off", ":OUTP?")?.trim().to_string();
        if state != "0" {
            return Err(self.scpi.protocol("bias off", format!("output reads {state:?} after :OUTP OFF")));
        }
        Ok(())
    }

    fn device(&self) -> &str {
        self.scpi.device()
    }
}

impl Drop for ScpiSourceMeter {
    fn drop(&mut self) {
        if self.on {
            // Output off on every exit path, even one that never reached bias_off.
            let _ = self.scpi.send("drop", ":OUTP OFF");
        }
    }
}
