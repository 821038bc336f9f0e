//! The SCPI source-measure-unit backend ([`ScpiSourceMeter`]) over a serial port, with the
//! `serialport` crate (blocking I/O with a timeout: the control thread waits for one short reply
//! per tick, which is what a serial instrument allows anyway). The dialect is documented in
//! docs/hardware.md; the firmware shim implements the device side from that page.
//!
//! Readings come from the instrument's buffer, one per shared trigger, tagged with the load
//! frame's sequence number: `:TRAC:DATA? <n>,<seq>` acknowledges every reading before `<seq>` and
//! returns up to `<n>` readings from `<seq>` on, as `seq,current,flags;…`. The acknowledgement
//! travels with the query, so a retried read after a timeout returns the same readings again.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nanoecr_core::config::hardware::{Parity, SmuConfig};
use serialport::{ClearBuffer, SerialPort, TTYPort};

use crate::{DeviceInfo, HwError, SmuReading, SourceMeter};

/// Reading flag: the output is limiting at its compliance.
pub const FLAG_COMPLIANCE: u8 = 1;
/// Reading flag: the current was out of the measurement range (value 9.9E37).
pub const FLAG_OVERRANGE: u8 = 2;
/// Reading flag: the output was off.
pub const FLAG_OUTPUT_OFF: u8 = 4;
/// Readings fetched per query at most (the instrument's limit is 1024).
const MAX_PER_QUERY: usize = 256;

/// A SCPI source-measure unit on a serial port.
pub struct ScpiSourceMeter {
    device: String,
    port: TTYPort,
    terminator: &'static str,
    timeout: Duration,
    retries: u32,
    rx: Vec<u8>,
    query_buf: String,
    next_seq: u64,
    voltage_v: f64,
    on: bool,
}

impl std::fmt::Debug for ScpiSourceMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScpiSourceMeter")
            .field("device", &self.device)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl ScpiSourceMeter {
    /// Open the port described by `cfg` under the logical name `name` and reset the instrument
    /// (`*RST`, `*CLS`): output off, buffer empty, error queue empty.
    pub fn open(name: &str, cfg: &SmuConfig) -> Result<Self, HwError> {
        let path = cfg.serial_path.clone().unwrap_or_default();
        let device = format!("{name} (scpi {path})");
        let parity = match cfg.parity {
            Parity::None => serialport::Parity::None,
            Parity::Even => serialport::Parity::Even,
            Parity::Odd => serialport::Parity::Odd,
        };
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let port = serialport::new(&path, cfg.baud)
            .parity(parity)
            .data_bits(serialport::DataBits::Eight)
            .stop_bits(serialport::StopBits::One)
            .flow_control(serialport::FlowControl::None)
            .timeout(timeout)
            .open_native()
            .map_err(|e| HwError::Transport {
                device: device.clone(),
                operation: "opening the port".into(),
                source: e.into(),
            })?;
        let mut me = Self {
            device,
            port,
            terminator: cfg.terminator.as_str(),
            timeout,
            retries: cfg.retries,
            rx: Vec::with_capacity(16 * 1024),
            query_buf: String::with_capacity(64),
            next_seq: 0,
            voltage_v: 0.0,
            on: false,
        };
        me.send("reset", "*RST")?;
        me.send("reset", "*CLS")?;
        // Commands are not acknowledged: wait until the instrument has done both, or a late
        // *RST could empty the reading buffer after the frame's first trigger.
        let done = me.query("reset", "*OPC?")?;
        if done.trim() != "1" {
            return Err(me.protocol("reset", format!("*OPC? reply {done:?}")));
        }
        Ok(me)
    }

    /// The logical name and port this backend reports in errors.
    pub fn device(&self) -> &str {
        &self.device
    }

    fn transport(&self, operation: &str, source: std::io::Error) -> HwError {
        HwError::Transport { device: self.device.clone(), operation: operation.into(), source }
    }

    fn protocol(&self, operation: &str, message: impl Into<String>) -> HwError {
        HwError::Protocol { device: self.device.clone(), operation: operation.into(), message: message.into() }
    }

    /// Send one command line.
    fn send(&mut self, operation: &str, command: &str) -> Result<(), HwError> {
        let mut line = Vec::with_capacity(command.len() + 2);
        line.extend_from_slice(command.as_bytes());
        line.extend_from_slice(self.terminator.as_bytes());
        self.port.write_all(&line).and_then(|()| self.port.flush()).map_err(|e| self.transport(operation, e))
    }

    /// Read one reply line (terminator stripped) within the timeout.
    fn read_line(&mut self, operation: &str) -> Result<String, HwError> {
        let deadline = Instant::now() + self.timeout;
        let last = *self.terminator.as_bytes().last().unwrap_or(&b'\n');
        let mut buf = [0u8; 4096];
        loop {
            if let Some(pos) = self.rx.iter().position(|&b| b == last) {
                let mut line: Vec<u8> = self.rx.drain(..=pos).collect();
                line.pop();
                if self.terminator == "\r\n" && line.last() == Some(&b'\r') {
                    line.pop();
                }
                // Replies are printable ASCII; anything else is line noise or a confused device.
                if line.iter().any(|&b| !(0x20..0x7f).contains(&b)) {
                    return Err(
                        self.protocol(operation, format!("non-ASCII reply {:?}", String::from_utf8_lossy(&line)))
                    );
                }
                return String::from_utf8(line).map_err(|e| self.protocol(operation, e.to_string()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HwError::Timeout {
                    device: self.device.clone(),
                    operation: operation.into(),
                    after: self.timeout,
                });
            }
            // Never wait past the deadline in one read.
            let _ = self.port.set_timeout(deadline - now);
            match self.port.read(&mut buf) {
                Ok(0) => {}
                Ok(k) => self.rx.extend_from_slice(&buf[..k]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
                Err(e) => return Err(self.transport(operation, e)),
            }
        }
    }

    /// A query, retried per config after a timeout or a garbled reply. Only idempotent queries
    /// go through here (all of this backend's are).
    fn query(&mut self, operation: &str, command: &str) -> Result<String, HwError> {
        let mut last = None;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tracing::warn!(device = %self.device, operation, attempt, error = ?last, "retrying");
                // Whatever is left of a late or garbled reply would pair with the next query.
                self.rx.clear();
                let _ = self.port.clear(ClearBuffer::Input);
            }
            self.send(operation, command)?;
            match self.read_line(operation) {
                Ok(line) => return Ok(line),
                Err(e @ (HwError::Timeout { .. } | HwError::Protocol { .. })) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| self.protocol(operation, "no attempt made")))
    }

    /// Read the error queue once; a non-zero entry becomes [`HwError::Device`].
    fn check_errors(&mut self, operation: &str) -> Result<(), HwError> {
        let reply = self.query(operation, ":SYST:ERR?")?;
        let (code, message) =
            reply.split_once(',').ok_or_else(|| self.protocol(operation, format!("error queue reply {reply:?}")))?;
        let code: i32 =
            code.trim().parse().map_err(|_| self.protocol(operation, format!("error queue reply {reply:?}")))?;
        if code != 0 {
            return Err(HwError::Device {
                device: self.device.clone(),
                operation: operation.into(),
                code,
                message: message.trim().trim_matches('"').to_string(),
            });
        }
        Ok(())
    }

    /// One immediate reading (`:READ?`): current, A, and flags.
    pub fn read_now(&mut self) -> Result<(f64, u8), HwError> {
        let reply = self.query("read", ":READ?")?;
        let (c, f) = reply.split_once(',').ok_or_else(|| self.protocol("read", format!("reading {reply:?}")))?;
        let current = c.trim().parse::<f64>().map_err(|_| self.protocol("read", format!("reading {reply:?}")))?;
        let flags = f.trim().parse::<u8>().map_err(|_| self.protocol("read", format!("reading {reply:?}")))?;
        Ok((current, flags))
    }
}

impl SourceMeter for ScpiSourceMeter {
    fn identify(&mut self) -> Result<DeviceInfo, HwError> {
        let reply = self.query("identify", "*IDN?")?;
        let fields: Vec<&str> = reply.split(',').map(str::trim).collect();
        if fields.len() != 4 {
            return Err(self.protocol("identify", format!("*IDN? reply {reply:?} (expected 4 fields)")));
        }
        Ok(DeviceInfo {
            name: self.device.clone(),
            vendor: fields[0].into(),
            model: fields[1].into(),
            serial: fields[2].into(),
            firmware: fields[3].into(),
        })
    }

    fn bias_on(&mut self, voltage_v: f64, compliance_a: f64) -> Result<(), HwError> {
        self.send("bias on", ":SOUR:FUNC VOLT")?;
        self.send("bias on", &format!(":SOUR:VOLT {voltage_v:E}"))?;
        self.send("bias on", &format!(":SENS:CURR:PROT {compliance_a:E}"))?;
        self.send("bias on", ":OUTP ON")?;
        self.check_errors("bias on")?;
        let state = self.query("bias on", ":OUTP?")?;
        if state.trim() != "1" {
            return Err(self.protocol("bias on", format!("output reads {state:?} after :OUTP ON")));
        }
        self.voltage_v = voltage_v;
        self.on = true;
        // The frame was just reset by `arm`: its sequence (and so the trigger's) restarts at 0.
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
        let reply = self.query("buffered read", &q);
        self.query_buf = q;
        let reply = reply?;
        let mut n = 0;
        for rec in reply.split(';').filter(|r| !r.is_empty()) {
            let bad = || self.protocol("buffered read", format!("reading {rec:?}"));
            let mut it = rec.split(',');
            let (Some(s), Some(c), Some(f), None) = (it.next(), it.next(), it.next(), it.next()) else {
                return Err(bad());
            };
            let seq: u64 = s.trim().parse().map_err(|_| bad())?;
            let current: f64 = c.trim().parse().map_err(|_| bad())?;
            let flags: u8 = f.trim().parse().map_err(|_| bad())?;
            if seq < self.next_seq {
                continue;
            }
            if seq > self.next_seq {
                return Err(HwError::Stream {
                    device: self.device.clone(),
                    message: format!("reading sequence gap: expected {}, got {seq}", self.next_seq),
                });
            }
            if n == want {
                return Err(self.protocol("buffered read", format!("more than the {want} readings asked for")));
            }
            // Out of range (SCPI overflow 9.9E37): not a number the pipeline may use.
            let current_a = if flags & FLAG_OVERRANGE != 0 || current.abs() >= 9.9e37 { f64::NAN } else { current };
            let on = flags & FLAG_OUTPUT_OFF == 0;
            out[n] = SmuReading {
                seq,
                current_a,
                voltage_v: if on { self.voltage_v } else { 0.0 },
                compliance: flags & FLAG_COMPLIANCE != 0,
            };
            n += 1;
            self.next_seq += 1;
        }
        Ok(n)
    }

    fn bias_off(&mut self) -> Result<(), HwError> {
        self.on = false;
        // After any error the line may hold a stale reply: start clean.
        self.rx.clear();
        let _ = self.port.clear(ClearBuffer::Input);
        self.send("bias off", ":OUTP OFF")?;
        let state = self.query("bias off", ":OUTP?")?;
        if state.trim() != "0" {
            return Err(self.protocol("bias off", format!("output reads {state:?} after :OUTP OFF")));
        }
        Ok(())
    }
}
