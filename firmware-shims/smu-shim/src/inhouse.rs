//! The in-house SCPI dialect of earlier nanoecr versions (model `nanoecr-scpi`,
//! docs/hardware.md): `:TRAC:DATA? <n>,<seq>` returning `seq,current,flags;…`. Kept as one
//! model among others; no instrument a lab owns speaks it.

use std::collections::VecDeque;

use crate::MeterConfig;

/// Reading flag: the output is limiting current at its compliance.
pub const FLAG_COMPLIANCE: u8 = 1;
/// Reading flag: the current exceeded the measurement range; the value reads 9.9E37.
pub const FLAG_OVERRANGE: u8 = 2;
/// Reading flag: the output was off when the reading was taken.
pub const FLAG_OUTPUT_OFF: u8 = 4;

/// SCPI's "overflow" value, sent for out-of-range readings.
pub const SCPI_OVERFLOW: f64 = 9.9e37;

/// Buffered readings kept at most; older ones are dropped (a visible sequence gap).
pub const BUFFER_CAPACITY: usize = 65_536;
/// Highest `<n>` accepted by `:TRAC:DATA?` in one query.
pub const MAX_READINGS_PER_QUERY: usize = 1024;

/// One buffered reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Shared-trigger sequence number (the load frame's).
    pub seq: u64,
    /// Current, A (SCPI_OVERFLOW when over range).
    pub current_a: f64,
    /// FLAG_* bits.
    pub flags: u8,
}

#[derive(Debug)]
struct State {
    voltage_v: f64,
    compliance_a: f64,
    output_on: bool,
    buffer: VecDeque<Reading>,
    latest: Option<Reading>,
    errors: VecDeque<(i32, &'static str)>,

    /// Device times at which the output entered compliance (ground truth).
    compliance_onsets_s: Vec<f64>,
    in_compliance: bool,
}

impl State {
    fn reset(&mut self) {
        self.voltage_v = 0.0;
        self.compliance_a = 1.05e-4;
        self.output_on = false;
        self.buffer.clear();
        self.latest = None;
        self.errors.clear();
    }
}

/// The in-house dialect's instrument state.
#[derive(Debug)]
pub(crate) struct InHouse {
    circuit_resistance_ohm: f64,
    range_a: f64,
    serial: String,
    compliance_at_s: Option<f64>,
    /// Standard event status enable register (IEEE 488.2 §11.5.1.3): kept, never acted on (the
    /// dialect has no service requests); hosts use it as a marker register to resynchronise.
    /// `*RST` leaves it alone (IEEE 488.2 §10.32).
    ese: u8,
    state: State,
}

fn parse_bool(arg: &str) -> Option<bool> {
    match arg {
        "ON" | "1" => Some(true),
        "OFF" | "0" => Some(false),
        _ => None,
    }
}

/// Long SCPI mnemonics → the short forms the dispatcher matches.
fn shorten(word: &str) -> &str {
    match word {
        "SOURCE" => "SOUR",
        "FUNCTION" => "FUNC",
        "VOLTAGE" => "VOLT",
        "LEVEL" => "LEV",
        "SENSE" => "SENS",
        "CURRENT" => "CURR",
        "PROTECTION" => "PROT",
        "OUTPUT" => "OUTP",
        "STATE" => "STAT",
        "SYSTEM" => "SYST",
        "ERROR" => "ERR",
        "TRACE" => "TRAC",
        "POINTS" => "POIN",
        "CLEAR" => "CLE",
        other => other,
    }
}

impl InHouse {
    /// A meter in its `*RST` state.
    pub(crate) fn new(cfg: &MeterConfig) -> Self {
        let mut state = State {
            voltage_v: 0.0,
            compliance_a: 0.0,
            output_on: false,
            buffer: VecDeque::with_capacity(BUFFER_CAPACITY),
            latest: None,
            errors: VecDeque::new(),

            compliance_onsets_s: Vec::new(),
            in_compliance: false,
        };
        state.reset();
        Self {
            circuit_resistance_ohm: cfg.circuit_resistance_ohm,
            range_a: cfg.range_a,
            serial: cfg.serial.clone(),
            compliance_at_s: cfg.compliance_at_s,
            ese: 0,
            state,
        }
    }

    /// The shared trigger: the load frame took sample `seq` at device time `time_s`, when the
    /// pillar's current relative to V/R was `current_factor`. Takes and buffers one reading.
    pub(crate) fn trigger(&mut self, seq: u64, time_s: f64, current_factor: f64) {
        let s = &mut self.state;
        let v = if s.output_on { s.voltage_v } else { 0.0 };
        let mut current_a = current_factor * v / self.circuit_resistance_ohm;
        let mut flags = if s.output_on { 0 } else { FLAG_OUTPUT_OFF };
        let shorted = s.output_on && self.compliance_at_s.is_some_and(|t| time_s >= t);
        if s.output_on && (shorted || current_a.abs() >= s.compliance_a) {
            current_a = s.compliance_a.copysign(if current_a == 0.0 { 1.0 } else { current_a });
            flags |= FLAG_COMPLIANCE;
            if !s.in_compliance {
                s.compliance_onsets_s.push(time_s);
            }
            s.in_compliance = true;
        } else {
            s.in_compliance = false;
        }
        if current_a.abs() > self.range_a {
            current_a = SCPI_OVERFLOW;
            flags |= FLAG_OVERRANGE;
        }
        let r = Reading { seq, current_a, flags };
        if s.buffer.len() == BUFFER_CAPACITY {
            s.buffer.pop_front();
        }
        s.buffer.push_back(r);
        s.latest = Some(r);
    }

    /// The frame was reset (new sequence from 0): forget buffered readings.
    pub(crate) fn reset_trigger(&mut self) {
        let s = &mut self.state;
        s.buffer.clear();
        s.latest = None;
    }

    /// Device times at which the output entered compliance (for ground truth).
    pub(crate) fn compliance_onsets_s(&self) -> Vec<f64> {
        self.state.compliance_onsets_s.clone()
    }

    /// Queue an error raised outside a command (the message exchange's −410), as a command's
    /// error is queued: at most 32 entries.
    pub(crate) fn push_error(&mut self, code: i32, message: &'static str) {
        if self.state.errors.len() < 32 {
            self.state.errors.push_back((code, message));
        }
    }

    /// Handle one command line (terminator stripped). `Some(reply)` for queries.
    pub(crate) fn handle(&mut self, line: &str) -> Option<String> {
        let line = line.trim();
        if line.is_empty() {
            return None;
        }
        let (header, arg) = match line.split_once(char::is_whitespace) {
            Some((h, a)) => (h, a.trim()),
            None => (line, ""),
        };
        let header = header.to_ascii_uppercase();
        let arg_upper = arg.to_ascii_uppercase();
        let query = header.ends_with('?');
        let path: Vec<&str> = header.trim_start_matches(':').trim_end_matches('?').split(':').map(shorten).collect();
        let s = &mut self.state;
        let err = |s: &mut State, code: i32, msg: &'static str| {
            if s.errors.len() < 32 {
                s.errors.push_back((code, msg));
            }
        };
        let num = |a: &str| a.parse::<f64>().ok().filter(|v| v.is_finite());
        match (path.as_slice(), query) {
            (["*IDN"], true) => {
                return Some(format!("NANOECR,SMU-SHIM-1,{},{}", self.serial, nanoecr_core::SOFTWARE_VERSION))
            }
            (["*RST"], false) => s.reset(),
            (["*CLS"], false) => s.errors.clear(),
            (["*OPC"], true) => return Some("1".into()),
            // IEEE 488.2 §10.10 *ESE <DECIMAL NUMERIC PROGRAM DATA> (any of NR1, NR2, NR3,
            // §7.7.2), rounded to an integer in 0…255, and §10.11 *ESE? (NR1). A missing, non-
            // numeric or out-of-range value leaves the register as it was (SCPI-99 -109, -104,
            // -222).
            (["*ESE"], false) => match arg.parse::<f64>().map(f64::round) {
                _ if arg.is_empty() => err(s, -109, "Missing parameter"),
                Ok(v) if (0.0..=255.0).contains(&v) => self.ese = v as u8,
                Ok(_) => err(s, -222, "Data out of range"),
                Err(_) => err(s, -104, "Data type error"),
            },
            (["*ESE"], true) => return Some(self.ese.to_string()),
            (["SOUR", "FUNC"], false) => match arg_upper.as_str() {
                "VOLT" | "VOLTAGE" => {}
                "CURR" | "CURRENT" => err(s, -221, "Settings conflict; only voltage sourcing"),
                _ => err(s, -224, "Illegal parameter value"),
            },
            (["SOUR", "FUNC"], true) => return Some("VOLT".into()),
            (["SOUR", "VOLT"] | ["SOUR", "VOLT", "LEV"], false) => match num(arg) {
                Some(v) if v.abs() <= 210.0 => s.voltage_v = v,
                Some(_) => err(s, -222, "Data out of range"),
                None => err(s, -104, "Data type error"),
            },
            (["SOUR", "VOLT"] | ["SOUR", "VOLT", "LEV"], true) => return Some(format!("{:E}", s.voltage_v)),
            (["SENS", "CURR", "PROT"], false) => match num(arg) {
                Some(a) if (1e-12..=1.05).contains(&a) => s.compliance_a = a,
                Some(_) => err(s, -222, "Data out of range"),
                None => err(s, -104, "Data type error"),
            },
            (["SENS", "CURR", "PROT"], true) => return Some(format!("{:E}", s.compliance_a)),
            (["OUTP"] | ["OUTP", "STAT"], false) => match parse_bool(&arg_upper) {
                Some(on) => s.output_on = on,
                None => err(s, -224, "Illegal parameter value"),
            },
            (["OUTP"] | ["OUTP", "STAT"], true) => return Some(if s.output_on { "1" } else { "0" }.into()),
            (["READ"], true) => {
                return Some(match s.latest {
                    Some(r) => format!("{:E},{}", r.current_a, r.flags),
                    None => format!("{:E},{}", SCPI_OVERFLOW, FLAG_OVERRANGE),
                })
            }
            (["TRAC", "POIN"], true) => return Some(s.buffer.len().to_string()),
            (["TRAC", "CLE"], false) => s.buffer.clear(),
            (["TRAC", "DATA"], true) => {
                let mut parts = arg.split(',').map(str::trim);
                let n = parts.next().and_then(|p| p.parse::<usize>().ok());
                let from = match parts.next() {
                    Some(p) => p.parse::<u64>().ok().map(Some),
                    None => Some(None),
                };
                let (Some(n), Some(from)) = (n, from) else {
                    err(s, -104, "Data type error");
                    return Some(String::new());
                };
                if let Some(from) = from {
                    // The acknowledgement: everything before `from` has been received.
                    while s.buffer.front().is_some_and(|r| r.seq < from) {
                        s.buffer.pop_front();
                    }
                }
                let n = n.min(MAX_READINGS_PER_QUERY);
                let mut out = String::with_capacity(n * 24);
                for (i, r) in s.buffer.iter().take(n).enumerate() {
                    if i > 0 {
                        out.push(';');
                    }
                    out.push_str(&format!("{},{:E},{}", r.seq, r.current_a, r.flags));
                }
                if from.is_none() {
                    // Without an acknowledgement the read itself pops (simple clients).
                    let k = n.min(s.buffer.len());
                    s.buffer.drain(..k);
                }
                return Some(out);
            }
            (["SYST", "ERR"] | ["SYST", "ERR", "NEXT"], true) => {
                return Some(match s.errors.pop_front() {
                    Some((code, msg)) => format!("{code},\"{msg}\""),
                    None => "0,\"No error\"".into(),
                })
            }
            (_, true) => {
                err(s, -113, "Undefined header");
                // A query always gets a line, so a client never waits for its timeout on a typo.
                return Some(String::new());
            }
            _ => err(s, -113, "Undefined header"),
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IEEE 488.2 §10.10: `*ESE` takes decimal numeric program data (NR1, NR2 or NR3, §7.7.2),
    /// rounded to an integer in 0…255; anything else is an error and leaves the register.
    #[test]
    fn ese_takes_decimal_numeric_data_rounded_and_rejects_the_rest() {
        let mut m = InHouse::new(&MeterConfig::default());
        for (sent, expect) in [("*ESE 7", "7"), ("*ESE 2.6", "3"), ("*ESE 1.2E1", "12"), ("*ESE +255", "255")] {
            assert_eq!(m.handle(sent), None, "{sent}");
            assert_eq!(m.handle("*ESE?").as_deref(), Some(expect), "{sent}");
            assert_eq!(m.handle(":SYST:ERR?").as_deref(), Some("0,\"No error\""), "{sent}");
        }
        for (sent, code) in [("*ESE 256", -222), ("*ESE -1", -222), ("*ESE", -109), ("*ESE ON", -104)] {
            assert_eq!(m.handle(sent), None, "{sent}");
            assert_eq!(m.handle("*ESE?").as_deref(), Some("255"), "{sent} changed the register");
            let err = m.handle(":SYST:ERR?").unwrap_or_default();
            assert!(err.starts_with(&format!("{code},")), "{sent}: {err}");
        }
    }
}
