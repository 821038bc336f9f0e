//! Keysight B2900 series (B2901A/B2902A/B2911A/B2912A and the B-models), from the Keysight
//! B2900 SCPI Command Reference ("CR §") and Programming Guide.
//!
//! Implemented: `*IDN?` (model name from `--idn-model`), voltage source
//! (`[:SOURce]:FUNCtion:MODE`, `[:SOURce]:VOLTage`), current compliance
//! (`:SENSe:CURRent:PROTection`, `…:TRIPped?`), current range, NPLC and aperture, the
//! arm/trigger layer (`:TRIGger[:ACQuire|:TRANsient|:ALL]:SOURce|:TIMer|:COUNt`,
//! `:ARM…:COUNt`, `:INIT`, `:ABORt`, `*TRG`), the trace buffer (`:TRACe:FEED`,
//! `:TRACe:FEED:CONTrol`, `:TRACe:POINts`, `:TRACe:POINts:ACTual?`, `:TRACe:CLEar`,
//! `:TRACe:DATA? [offset[,size]]`), output formats (`:FORMat[:DATA] ASCii|REAL,32|REAL,64`,
//! `:FORMat:BORDer`, `:FORMat:ELEMents:SENSe`; CR §1 "Data Output Format"), `:READ?`,
//! `:MEASure?`, `:FETCh?` and the error queue (`:SYSTem:ERRor[:NEXT]?`).
//!
//! Simplifications (docs/hardware.md "SMU shims"): one channel; measurements are instantaneous;
//! the timestamp counts from `:INIT`; channel lists (`(@1)`) are not parsed.

use crate::scpi::{arity, boolean, number, source_is_voltage, word_is, NumSpec, Param, Pattern, ScpiError, Unit};
use crate::{nr3, Ctx, MeterConfig, Sample};

/// Status word bit 1 (decimal 2): compliance (CR §1 Table 1-2 "Bit Definitions of Status
/// Data": bits 1 and 2, compliance condition; the shim sets bit 1).
pub const STATUS_COMPLIANCE: u32 = 2;
/// Status word bit 13 (decimal 8192): measurement range overflow (CR §1 Table 1-2).
pub const STATUS_OVERFLOW: u32 = 8192;
/// Trace buffer capacity (CR §4 `:TRACe:POINts`: 1 to 100 000).
pub const MAX_POINTS: f64 = 100_000.0;

const CURRENT_RANGES_A: [f64; 11] = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1.5, 3.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrigSource {
    Aint,
    Bus,
    Timer,
    Ext(u32),
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    voltage_v: f64,
    current_a: f64,
    time_s: f64,
    status: u32,
}

/// Output elements in the instrument's fixed order (CR §4 `:FORMat:ELEMents:SENSe`: voltage,
/// current, resistance, time, status, source — whatever order they were given in).
const ELEMENTS: [&str; 6] = ["VOLTage", "CURRent", "RESistance", "TIME", "STATus", "SOURce"];

/// The B2900's state.
#[derive(Debug)]
pub struct B2900 {
    idn: String,
    voltage_v: f64,
    source_is_voltage: bool,
    limit_a: f64,
    tripped: bool,
    irange_a: f64,
    irange_auto: bool,
    nplc: f64,
    output_on: bool,
    trig_source: TrigSource,
    trig_timer_s: f64,
    trig_count: u64,
    arm_count: u64,
    feed_next: bool,
    points: usize,
    trace: Vec<Reading>,
    binary: Option<u8>,
    swapped: bool,
    elements: [bool; 6],
    /// Triggers still to be taken in the running sequence; `None` when idle.
    remaining: Option<u64>,
    init_clock_s: f64,
    timer_fired: u64,
    last: Option<Reading>,
}

struct Pats {
    func: Pattern,
    volt: Pattern,
    volt_rang: Pattern,
    volt_rang_auto: Pattern,
    sens_func: Pattern,
    prot: Pattern,
    prot_trip: Pattern,
    rang: Pattern,
    rang_auto: Pattern,
    nplc: Pattern,
    aper: Pattern,
    trig_sour: Pattern,
    trig_tim: Pattern,
    trig_coun: Pattern,
    trig_del: Pattern,
    arm_coun: Pattern,
    arm_sour: Pattern,
    feed: Pattern,
    feed_cont: Pattern,
    poin: Pattern,
    poin_act: Pattern,
    trac_cle: Pattern,
    trac_data: Pattern,
    form: Pattern,
    bord: Pattern,
    elem: Pattern,
    outp: Pattern,
    init: Pattern,
    abor: Pattern,
    read: Pattern,
    meas: Pattern,
    fetch: Pattern,
    syst_err: Pattern,
    stat_pres: Pattern,
    dig_ext: Pattern,
}

fn pats() -> &'static Pats {
    static PATS: std::sync::OnceLock<Pats> = std::sync::OnceLock::new();
    PATS.get_or_init(|| Pats {
        func: Pattern::new("[:SOURce#]:FUNCtion:MODE"),
        volt: Pattern::new("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]"),
        volt_rang: Pattern::new("[:SOURce#]:VOLTage:RANGe"),
        volt_rang_auto: Pattern::new("[:SOURce#]:VOLTage:RANGe:AUTO"),
        sens_func: Pattern::new(":SENSe#:FUNCtion[:ON]"),
        prot: Pattern::new(":SENSe#:CURRent[:DC]:PROTection[:LEVel][:BOTH]"),
        prot_trip: Pattern::new(":SENSe#:CURRent[:DC]:PROTection:TRIPped"),
        rang: Pattern::new(":SENSe#:CURRent[:DC]:RANGe[:UPPer]"),
        rang_auto: Pattern::new(":SENSe#:CURRent[:DC]:RANGe:AUTO"),
        nplc: Pattern::new(":SENSe#:CURRent[:DC]:NPLCycles"),
        aper: Pattern::new(":SENSe#:CURRent[:DC]:APERture"),
        trig_sour: Pattern::new(":TRIGger#[:ACQuire][:TRANsient][:ALL]:SOURce[:SIGNal]"),
        trig_tim: Pattern::new(":TRIGger#[:ACQuire][:TRANsient][:ALL]:TIMer"),
        trig_coun: Pattern::new(":TRIGger#[:ACQuire][:TRANsient][:ALL]:COUNt"),
        trig_del: Pattern::new(":TRIGger#[:ACQuire][:TRANsient][:ALL]:DELay"),
        arm_coun: Pattern::new(":ARM#[:ACQuire][:TRANsient][:ALL]:COUNt"),
        arm_sour: Pattern::new(":ARM#[:ACQuire][:TRANsient][:ALL]:SOURce[:SIGNal]"),
        feed: Pattern::new(":TRACe#:FEED"),
        feed_cont: Pattern::new(":TRACe#:FEED:CONTrol"),
        poin: Pattern::new(":TRACe#:POINts"),
        poin_act: Pattern::new(":TRACe#:POINts:ACTual"),
        trac_cle: Pattern::new(":TRACe#:CLEar"),
        trac_data: Pattern::new(":TRACe#:DATA"),
        form: Pattern::new(":FORMat[:DATA]"),
        bord: Pattern::new(":FORMat:BORDer"),
        elem: Pattern::new(":FORMat:ELEMents:SENSe"),
        outp: Pattern::new(":OUTPut#[:STATe]"),
        init: Pattern::new(":INITiate[:IMMediate][:ALL][:ACQuire][:TRANsient]"),
        abor: Pattern::new(":ABORt[:ALL][:ACQuire][:TRANsient]"),
        read: Pattern::new(":READ"),
        meas: Pattern::new(":MEASure[:CURRent][:DC]"),
        fetch: Pattern::new(":FETCh"),
        syst_err: Pattern::new(":SYSTem:ERRor[:NEXT]"),
        stat_pres: Pattern::new(":STATus:PRESet"),
        dig_ext: Pattern::new("[:SOURce#]:DIGital:EXTernal#:FUNCtion"),
    })
}

fn reply(s: String) -> Result<Option<Vec<u8>>, ScpiError> {
    Ok(Some(s.into_bytes()))
}

fn int(p: &Param, min: f64, max: f64) -> Result<u64, ScpiError> {
    Ok(number(p, NumSpec { min, max, default: max, unit: "" })?.round() as u64)
}

/// An IEEE 488.2 definite-length arbitrary block (IEEE 488.2 §8.7.9.2; CR §1 "Data Output
/// Format": `#`, the number of length digits, the length, the bytes).
pub fn definite_block(bytes: &[u8]) -> Vec<u8> {
    let len = bytes.len().to_string();
    let mut out = Vec::with_capacity(bytes.len() + len.len() + 2);
    out.push(b'#');
    out.extend_from_slice(len.len().to_string().as_bytes());
    out.extend_from_slice(len.as_bytes());
    out.extend_from_slice(bytes);
    out
}

impl B2900 {
    /// A B2900 after power-on.
    pub fn new(cfg: &MeterConfig) -> Self {
        let mut m = Self {
            idn: format!("Keysight Technologies,{},MY12345678,3.4.2011.5100", cfg.idn_model),
            voltage_v: 0.0,
            source_is_voltage: true,
            limit_a: 1e-4,
            tripped: false,
            irange_a: 1e-4,
            irange_auto: true,
            nplc: 1.0,
            output_on: false,
            trig_source: TrigSource::Aint,
            trig_timer_s: 1e-3,
            trig_count: 1,
            arm_count: 1,
            feed_next: false,
            points: 100_000,
            trace: Vec::new(),
            binary: None,
            swapped: false,
            elements: [true; 6],
            remaining: None,
            init_clock_s: 0.0,
            timer_fired: 0,
            last: None,
        };
        m.reset();
        m
    }

    fn reset(&mut self) {
        self.voltage_v = 0.0;
        self.source_is_voltage = true;
        self.limit_a = 1e-4;
        self.tripped = false;
        self.irange_a = 1e-4;
        self.irange_auto = true;
        self.nplc = 1.0;
        self.output_on = false;
        self.trig_source = TrigSource::Aint;
        self.trig_timer_s = 1e-3;
        self.trig_count = 1;
        self.arm_count = 1;
        self.feed_next = false;
        self.points = 100_000;
        self.trace.clear();
        self.binary = None;
        self.swapped = false;
        self.elements = [true; 6];
        self.remaining = None;
        self.last = None;
    }

    fn take_reading(&mut self, ctx: &mut Ctx, time_s: f64, s: Sample) -> Reading {
        let on = self.output_on && self.source_is_voltage;
        let range = (!self.irange_auto).then_some(self.irange_a);
        let m = ctx.measure(on, self.voltage_v, self.limit_a, range, s);
        self.tripped = m.compliance;
        let mut status = 0;
        if m.compliance {
            status |= STATUS_COMPLIANCE;
        }
        if m.overflow {
            status |= STATUS_OVERFLOW;
        }
        let r = Reading { voltage_v: if on { self.voltage_v } else { 0.0 }, current_a: m.current_a, time_s, status };
        self.last = Some(r);
        if self.feed_next {
            self.trace.push(r);
            // CR §4 `:TRACe:FEED:CONTrol`: the control returns to NEVer when the buffer is full.
            if self.trace.len() >= self.points {
                self.feed_next = false;
            }
        }
        r
    }

    fn trigger_once(&mut self, ctx: &mut Ctx, clock_s: f64, s: Sample) {
        let Some(left) = self.remaining else { return };
        let t = clock_s - self.init_clock_s;
        self.take_reading(ctx, t, s);
        self.remaining = (left > 1).then_some(left - 1);
    }

    /// A frame sample on the trigger wire (EXT1 on the rig).
    pub fn pulse(&mut self, ctx: &mut Ctx, s: Sample) {
        self.run_timers(ctx);
        if ctx.wire_live() && self.trig_source == TrigSource::Ext(1) {
            let clock = ctx.reset_clock_s + s.time_s;
            self.trigger_once(ctx, clock, s);
        }
    }

    /// Timer triggers due on the meter's own clock (the first at `:INIT`, then every period).
    pub fn run_timers(&mut self, ctx: &mut Ctx) {
        if self.trig_source != TrigSource::Timer {
            return;
        }
        let now = ctx.clock_s();
        while self.remaining.is_some() {
            let due = self.init_clock_s + self.timer_fired as f64 * self.trig_timer_s;
            if due > now {
                break;
            }
            self.timer_fired += 1;
            let s = ctx.last;
            self.trigger_once(ctx, due, s);
        }
    }

    fn format(&self, readings: &[Reading]) -> Vec<u8> {
        let mut values = Vec::with_capacity(readings.len() * 6);
        for r in readings {
            let resistance = if r.current_a != 0.0 { r.voltage_v / r.current_a } else { crate::SCPI_OVERFLOW };
            let all = [r.voltage_v, r.current_a, resistance, r.time_s, f64::from(r.status), r.voltage_v];
            for (i, v) in all.into_iter().enumerate() {
                if self.elements[i] {
                    values.push(v);
                }
            }
        }
        match self.binary {
            None => values.iter().map(|v| nr3(*v)).collect::<Vec<_>>().join(",").into_bytes(),
            Some(bits) => {
                let mut bytes = Vec::with_capacity(values.len() * 8);
                for v in values {
                    // CR §1 "Data Output Format": NORMal sends byte 1 (most significant) first,
                    // SWAPped byte 8 first.
                    match (bits, self.swapped) {
                        (32, false) => bytes.extend_from_slice(&(v as f32).to_be_bytes()),
                        (32, true) => bytes.extend_from_slice(&(v as f32).to_le_bytes()),
                        (_, false) => bytes.extend_from_slice(&v.to_be_bytes()),
                        (_, true) => bytes.extend_from_slice(&v.to_le_bytes()),
                    }
                }
                definite_block(&bytes)
            }
        }
    }

    /// Execute one unit (not a shared common command).
    pub fn execute(&mut self, ctx: &mut Ctx, u: &Unit) -> Result<Option<Vec<u8>>, ScpiError> {
        self.run_timers(ctx);
        let (k, q, ps) = (&u.path, u.query, &u.params);
        if let Some(name) = u.common.as_deref() {
            return match (name, q) {
                ("*IDN", true) => reply(self.idn.clone()),
                ("*RST", false) => {
                    self.reset();
                    Ok(None)
                }
                ("*TRG", false) => {
                    if self.trig_source == TrigSource::Bus {
                        let (t, s) = (ctx.clock_s(), ctx.last);
                        self.trigger_once(ctx, t, s);
                    }
                    Ok(None)
                }
                _ => Err(ScpiError::UNDEFINED_HEADER),
            };
        }
        let p = pats();
        macro_rules! set_or_get {
            ($spec:expr, $field:expr) => {{
                if q {
                    return reply(nr3($field));
                }
                arity(ps, 1, 1)?;
                $field = number(&ps[0], $spec)?;
                return Ok(None);
            }};
        }
        macro_rules! flag {
            ($field:expr) => {{
                if q {
                    return reply(u8::from($field).to_string());
                }
                arity(ps, 1, 1)?;
                $field = boolean(&ps[0])?;
                return Ok(None);
            }};
        }
        if p.func.matches(k).is_some() {
            if q {
                return reply(if self.source_is_voltage { "VOLT" } else { "CURR" }.into());
            }
            self.source_is_voltage = source_is_voltage(ps)?;
            return Ok(None);
        }
        if p.volt.matches(k).is_some() {
            // B2901A/B2902A: ±210 V (CR §4 `[:SOURce]:<CURRent|VOLTage>[:LEVel]`).
            set_or_get!(NumSpec { min: -210.0, max: 210.0, default: 0.0, unit: "V" }, self.voltage_v);
        }
        if p.volt_rang.matches(k).is_some() {
            if q {
                return reply(nr3(20.0));
            }
            arity(ps, 1, 1)?;
            number(&ps[0], NumSpec { min: -210.0, max: 210.0, default: 0.2, unit: "V" })?;
            return Ok(None);
        }
        if p.volt_rang_auto.matches(k).is_some() {
            if q {
                return reply("1".into());
            }
            arity(ps, 1, 1)?;
            boolean(&ps[0])?;
            return Ok(None);
        }
        if p.sens_func.matches(k).is_some() {
            if q {
                return reply("\"CURR\"".into());
            }
            arity(ps, 1, 3)?;
            for f in ps {
                let (Param::Str(f) | Param::Word(f)) = f else { return Err(ScpiError::DATA_TYPE) };
                if !["CURRent", "VOLTage", "RESistance"].iter().any(|m| word_is(f, m)) {
                    return Err(ScpiError::ILLEGAL_VALUE);
                }
            }
            return Ok(None);
        }
        if q && p.prot_trip.matches(k).is_some() {
            return reply(u8::from(self.tripped).to_string());
        }
        if p.prot.matches(k).is_some() {
            set_or_get!(NumSpec { min: 1e-9, max: 3.03, default: 1e-4, unit: "A" }, self.limit_a);
        }
        if p.rang.matches(k).is_some() {
            if q {
                return reply(nr3(self.irange_a));
            }
            arity(ps, 1, 1)?;
            let a = number(&ps[0], NumSpec { min: -3.03, max: 3.03, default: 1e-4, unit: "A" })?;
            self.irange_a = CURRENT_RANGES_A.into_iter().find(|r| *r >= a.abs()).unwrap_or(3.0);
            self.irange_auto = false;
            return Ok(None);
        }
        if p.rang_auto.matches(k).is_some() {
            flag!(self.irange_auto);
        }
        if p.nplc.matches(k).is_some() {
            // CR §4 `:SENSe:<CURRent|…>:NPLCycles`: 4E-4 to 100 at 50 Hz.
            set_or_get!(NumSpec { min: 4e-4, max: 100.0, default: 1.0, unit: "" }, self.nplc);
        }
        if p.aper.matches(k).is_some() {
            if q {
                return reply(nr3(self.nplc / 50.0));
            }
            arity(ps, 1, 1)?;
            self.nplc = number(&ps[0], NumSpec { min: 8e-6, max: 2.0, default: 0.02, unit: "S" })? * 50.0;
            return Ok(None);
        }
        if p.trig_sour.matches(k).is_some() || p.arm_sour.matches(k).is_some() {
            let is_trig = p.trig_sour.matches(k).is_some();
            if q {
                let src = if is_trig { self.trig_source } else { TrigSource::Aint };
                return reply(match src {
                    TrigSource::Aint => "AINT".into(),
                    TrigSource::Bus => "BUS".into(),
                    TrigSource::Timer => "TIM".into(),
                    TrigSource::Ext(n) => format!("EXT{n}"),
                    TrigSource::Other => "LAN".into(),
                });
            }
            arity(ps, 1, 1)?;
            let Param::Word(w) = &ps[0] else { return Err(ScpiError::DATA_TYPE) };
            let src = if word_is(w, "AINT") {
                TrigSource::Aint
            } else if word_is(w, "BUS") {
                TrigSource::Bus
            } else if word_is(w, "TIMer") {
                TrigSource::Timer
            } else if let Some(n) = w.strip_prefix("EXT").and_then(|n| n.parse::<u32>().ok()) {
                // CR §4 `:TRIGger:SOURce`: EXT1 to EXT14, the digital I/O pins.
                if !(1..=14).contains(&n) {
                    return Err(ScpiError::ILLEGAL_VALUE);
                }
                TrigSource::Ext(n)
            } else if ["INT1", "INT2", "LAN"].contains(&w.as_str()) {
                TrigSource::Other
            } else {
                return Err(ScpiError::ILLEGAL_VALUE);
            };
            if is_trig {
                self.trig_source = src;
            }
            return Ok(None);
        }
        if p.trig_tim.matches(k).is_some() {
            set_or_get!(NumSpec { min: 1e-5, max: 1e5, default: 1e-3, unit: "S" }, self.trig_timer_s);
        }
        if p.trig_del.matches(k).is_some() {
            if q {
                return reply(nr3(0.0));
            }
            arity(ps, 1, 1)?;
            number(&ps[0], NumSpec { min: 0.0, max: 100.0, default: 0.0, unit: "S" })?;
            return Ok(None);
        }
        if p.trig_coun.matches(k).is_some() || p.arm_coun.matches(k).is_some() {
            let trig = p.trig_coun.matches(k).is_some();
            if q {
                return reply(if trig { self.trig_count } else { self.arm_count }.to_string());
            }
            arity(ps, 1, 1)?;
            // CR §4 `:TRIGger:COUNt` / `:ARM:COUNt`: 1 to 100 000.
            let n = int(&ps[0], 1.0, 100_000.0)?;
            if trig {
                self.trig_count = n;
            } else {
                self.arm_count = n;
            }
            return Ok(None);
        }
        if p.feed.matches(k).is_some() {
            if q {
                return reply("SENS".into());
            }
            arity(ps, 1, 1)?;
            return match &ps[0] {
                Param::Word(w) if word_is(w, "SENSe") => Ok(None),
                Param::Word(w) if word_is(w, "MATH") || word_is(w, "LIMit") => Err(ScpiError::SETTINGS_CONFLICT),
                _ => Err(ScpiError::ILLEGAL_VALUE),
            };
        }
        if p.feed_cont.matches(k).is_some() {
            if q {
                return reply(if self.feed_next { "NEXT" } else { "NEV" }.into());
            }
            arity(ps, 1, 1)?;
            self.feed_next = match &ps[0] {
                Param::Word(w) if word_is(w, "NEXT") => true,
                Param::Word(w) if word_is(w, "NEVer") => false,
                _ => return Err(ScpiError::ILLEGAL_VALUE),
            };
            return Ok(None);
        }
        if q && p.poin_act.matches(k).is_some() {
            return reply(self.trace.len().to_string());
        }
        if p.poin.matches(k).is_some() {
            if q {
                return reply(self.points.to_string());
            }
            arity(ps, 1, 1)?;
            self.points = int(&ps[0], 1.0, MAX_POINTS)? as usize;
            return Ok(None);
        }
        if !q && p.trac_cle.matches(k).is_some() {
            self.trace.clear();
            return Ok(None);
        }
        if q && p.trac_data.matches(k).is_some() {
            arity(ps, 0, 2)?;
            let n = self.trace.len() as u64;
            let offset = match ps.first() {
                None => 0,
                Some(Param::Word(w)) if word_is(w, "STARt") => 0,
                Some(p) => int(p, 0.0, MAX_POINTS)?,
            };
            let size = match ps.get(1) {
                None => n.saturating_sub(offset),
                Some(p) => int(p, 1.0, MAX_POINTS)?,
            };
            // CR §4 `:TRACe:DATA?`: the offset and size must address stored data.
            if offset >= n || offset + size > n {
                return Err(ScpiError::OUT_OF_RANGE);
            }
            return Ok(Some(self.format(&self.trace[offset as usize..(offset + size) as usize])));
        }
        if p.form.matches(k).is_some() {
            if q {
                return reply(match self.binary {
                    None => "ASC".into(),
                    Some(b) => format!("REAL,{b}"),
                });
            }
            arity(ps, 1, 2)?;
            let Param::Word(w) = &ps[0] else { return Err(ScpiError::DATA_TYPE) };
            if word_is(w, "ASCii") {
                arity(ps, 1, 1)?;
                self.binary = None;
            } else if word_is(w, "REAL") {
                let bits = match ps.get(1) {
                    None => 32,
                    Some(b) => int(b, 32.0, 64.0)?,
                };
                if bits != 32 && bits != 64 {
                    return Err(ScpiError::ILLEGAL_VALUE);
                }
                self.binary = Some(bits as u8);
            } else {
                return Err(ScpiError::ILLEGAL_VALUE);
            }
            return Ok(None);
        }
        if p.bord.matches(k).is_some() {
            if q {
                return reply(if self.swapped { "SWAP" } else { "NORM" }.into());
            }
            arity(ps, 1, 1)?;
            self.swapped = match &ps[0] {
                Param::Word(w) if word_is(w, "NORMal") => false,
                Param::Word(w) if word_is(w, "SWAPped") => true,
                _ => return Err(ScpiError::ILLEGAL_VALUE),
            };
            return Ok(None);
        }
        if p.elem.matches(k).is_some() {
            if q {
                let names = ["VOLT", "CURR", "RES", "TIME", "STAT", "SOUR"];
                let on: Vec<&str> = names.iter().zip(self.elements).filter(|(_, on)| *on).map(|(n, _)| *n).collect();
                return reply(on.join(","));
            }
            arity(ps, 1, 6)?;
            let mut el = [false; 6];
            for p in ps {
                let Param::Word(w) = p else { return Err(ScpiError::DATA_TYPE) };
                let i = ELEMENTS.iter().position(|m| word_is(w, m)).ok_or(ScpiError::ILLEGAL_VALUE)?;
                el[i] = true;
            }
            self.elements = el;
            return Ok(None);
        }
        if p.outp.matches(k).is_some_and(|s| s == [1]) {
            flag!(self.output_on);
        }
        if !q && p.init.matches(k).is_some() {
            arity(ps, 0, 0)?;
            self.remaining = Some(self.trig_count * self.arm_count);
            self.init_clock_s = ctx.clock_s();
            self.timer_fired = 0;
            ctx.armed();
            if self.trig_source == TrigSource::Aint {
                let s = ctx.last;
                while self.remaining.is_some() {
                    let t = ctx.clock_s();
                    self.trigger_once(ctx, t, s);
                }
            }
            self.run_timers(ctx);
            return Ok(None);
        }
        if !q && p.abor.matches(k).is_some() {
            self.remaining = None;
            return Ok(None);
        }
        if q && (p.read.matches(k).is_some() || p.meas.matches(k).is_some()) {
            arity(ps, 0, 0)?;
            let (t, s) = (ctx.clock_s() - self.init_clock_s, ctx.last);
            let r = self.take_reading(ctx, t, s);
            return Ok(Some(self.format(&[r])));
        }
        if q && p.fetch.matches(k).is_some() {
            let r = self.last.ok_or(ScpiError::SETTINGS_CONFLICT)?;
            return Ok(Some(self.format(&[r])));
        }
        if q && p.syst_err.matches(k).is_some() {
            // The B2900 prints the code with a sign: `+0,"No error"` (CR chapter 5 "Error
            // Messages", p. 5-2; the space the manual's prose puts after the comma is unverified).
            return reply(match ctx.errors.pop() {
                Some(e) => format!("{:+},\"{}\"", e.code, e.text),
                None => "+0,\"No error\"".into(),
            });
        }
        if !q && p.stat_pres.matches(k).is_some() {
            return Ok(None);
        }
        if p.dig_ext.matches(k).is_some() {
            if q {
                return reply("TINP".into());
            }
            arity(ps, 1, 1)?;
            return Ok(None);
        }
        Err(ScpiError::UNDEFINED_HEADER)
    }
}
