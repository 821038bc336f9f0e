//! Keithley 2450 SourceMeter, native SCPI command set (Model 2450 Interactive SourceMeter
//! Instrument Reference Manual, 2450-901-01; sections cited as "RM §").
//!
//! Implemented: source voltage with a current limit (`:SOUR:VOLT`, `:SOUR:VOLT:ILIM`, RM §6
//! `:SOURce[1]:<function>[:LEVel]…`), current sense with range/NPLC/autozero, reading buffers
//! `defbuffer1`/`defbuffer2` with 1-based indices (RM §3 "Reading buffers"; `:TRACe:ACTual?`,
//! `:TRACe:ACTual:STARt?`/`:END?`, `:TRACe:DATA?` with element lists, `:TRACe:POINts`,
//! `:TRACe:CLEar`), the trigger model (RM §3 "Trigger model": `:TRIGger:LOAD "Empty"`, blocks
//! BUFFer:CLEar, WAIT, MDIGitize/MEASure, BRANch:COUNter, BRANch:ALWays, DELay:CONStant,
//! NOTify, SOURce:STATe, NOP; `:INIT`, `:ABORt`, `:TRIGger:STATe?`), digital I/O trigger inputs
//! (`:DIGital:LINE<n>:MODE TRIG, IN`, `:TRIGger:DIGital<n>:IN:EDGE`), trigger timers
//! (`:TRIGger:TIMer<n>:…`), `*LANG?`, `*TRG`, `:READ?`, `:FETCh?` and the error queue
//! (`:SYSTem:ERRor[:NEXT]?`, `:SYSTem:ERRor:COUNt?`, `:SYSTem:CLEar`).
//!
//! Simplifications (docs/hardware.md "SMU shims"): measurements are instantaneous (NPLC is
//! stored, not waited for); `DELay:CONStant` blocks do not delay; a measure block's count must
//! be finite; buffers do not wrap their indices (a full buffer drops its oldest reading and the
//! start index moves on); only ASCII `:FORMat:DATA`.

use std::collections::{BTreeMap, VecDeque};

use crate::scpi::{arity, boolean, number, source_is_voltage, word_is, NumSpec, Param, Pattern, ScpiError, Unit};
use crate::{Ctx, MeterConfig, Sample};

/// `*IDN?` reply (manufacturer, model, serial, firmware; RM appendix B "*IDN?", p. B-5; without the "INC." of its Rev. B example, as later firmware answers).
pub const IDN: &str = "KEITHLEY INSTRUMENTS,MODEL 2450,04512345,1.7.12b";

/// Source status bit: the source function level was limited (RM §8
/// `bufferVar.sourcestatuses`, table "Buffer status bits for source function": bit 5, 32).
pub const SOURSTAT_LIMIT: u32 = 32;
/// Source status bit: four-wire sense (bit 6, 64).
pub const SOURSTAT_SENSE: u32 = 64;
/// Source status bit: the output was on (bit 7, 128).
pub const SOURSTAT_OUTPUT: u32 = 128;
/// Measure status bit: questionable (RM §8 `bufferVar.statuses`: bit 1, 2) — set on overflow.
pub const STAT_QUESTIONABLE: u32 = 2;
/// Measure status bit: front terminals (bit 3, 8).
pub const STAT_TERMINAL_FRONT: u32 = 8;

/// Largest buffer the shim keeps, readings.
pub const MAX_POINTS: f64 = 1_000_000.0;
const DEFAULT_POINTS: usize = 100_000;
const CURRENT_RANGES_A: [f64; 9] = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
const VOLTAGE_RANGES_V: [f64; 5] = [0.02, 0.2, 2.0, 20.0, 200.0];

#[derive(Debug, Clone, Copy)]
struct Reading {
    current_a: f64,
    /// Own-clock time, s.
    t_s: f64,
    source_v: f64,
    compliance: bool,
    overflow: bool,
    output_on: bool,
}

#[derive(Debug)]
struct Buffer {
    capacity: usize,
    readings: VecDeque<Reading>,
    /// 1-based index of `readings[0]`.
    first_index: u64,
}

impl Buffer {
    fn new() -> Self {
        Self { capacity: DEFAULT_POINTS, readings: VecDeque::new(), first_index: 1 }
    }
    fn clear(&mut self) {
        self.readings.clear();
        self.first_index = 1;
    }
    fn push(&mut self, r: Reading) {
        if self.readings.len() >= self.capacity {
            self.readings.pop_front();
            self.first_index += 1;
        }
        self.readings.push_back(r);
    }
    fn start(&self) -> u64 {
        if self.readings.is_empty() {
            0
        } else {
            self.first_index
        }
    }
    fn end(&self) -> u64 {
        if self.readings.is_empty() {
            0
        } else {
            self.first_index + self.readings.len() as u64 - 1
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    None,
    Display,
    Command,
    Notify(u32),
    DigIo(u32),
    TspLink(u32),
    Lan(u32),
    Blender(u32),
    Timer(u32),
    SourceLimit,
}

/// A wait block waits for up to three events (RM §6 `:TRIGger:BLOCk:WAIT` usage).
type Events = [Option<Event>; 3];

#[derive(Debug, Clone, Copy)]
enum Block {
    BufferClear(usize),
    Wait { events: Events, clear_on_enter: bool, all: bool },
    Measure { buffer: usize, count: u64 },
    BranchCounter { target: u64, to: u32 },
    BranchAlways(u32),
    Delay,
    Notify(u32),
    SourceState(bool),
    Nop,
}

#[derive(Debug, Default)]
struct Run {
    pc: u32,
    counters: BTreeMap<u32, u64>,
    pending: Vec<Event>,
    entered_wait: Option<u32>,
}

impl Run {
    /// Record an event for a later wait block: a flag per event, as the instrument's event
    /// memory (one pulse or many before the wait block is one event).
    fn note(&mut self, e: Event) {
        if !self.pending.contains(&e) {
            self.pending.push(e);
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Timer {
    delay_s: f64,
    count: u64,
    start_generate: bool,
    enabled: bool,
    started_at_s: f64,
    fired: u64,
}

/// The 2450's state.
#[derive(Debug)]
pub struct K2450 {
    lang: String,
    source_is_voltage: bool,
    voltage_v: f64,
    vrange_v: f64,
    vrange_auto: bool,
    ilim_a: f64,
    sense_function: &'static str,
    irange_a: f64,
    irange_auto: bool,
    nplc: f64,
    azero: bool,
    output_on: bool,
    tripped: bool,
    buffers: [Buffer; 2],
    blocks: BTreeMap<u32, Block>,
    run: Option<Run>,
    timers: [Timer; 4],
    trigger_in: [bool; 6],
    edges: [&'static str; 6],
}

fn sci(v: f64) -> String {
    // The 2450's ASCII readings: mantissa, `E`, signed two-digit exponent (`1.00000000E-06`).
    let s = format!("{v:.8E}");
    let (mant, exp) = s.split_once('E').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    format!("{mant}E{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
}

fn int(p: &Param, min: f64, max: f64) -> Result<u64, ScpiError> {
    let v = number(p, NumSpec { min, max, default: min, unit: "" })?;
    Ok(v.round() as u64)
}

fn buffer_index(p: Option<&Param>) -> Result<usize, ScpiError> {
    match p {
        None => Ok(0),
        Some(Param::Str(name)) if name.eq_ignore_ascii_case("defbuffer1") => Ok(0),
        Some(Param::Str(name)) if name.eq_ignore_ascii_case("defbuffer2") => Ok(1),
        // RM §3 "Reading buffers": user buffers need :TRACe:MAKE, which the shim does not keep.
        Some(Param::Str(_)) => Err(ScpiError::ILLEGAL_VALUE),
        Some(_) => Err(ScpiError::DATA_TYPE),
    }
}

fn event(p: &Param) -> Result<Event, ScpiError> {
    let Param::Word(w) = p else { return Err(ScpiError::DATA_TYPE) };
    let digits = w.bytes().rev().take_while(u8::is_ascii_digit).count();
    let (name, n) = w.split_at(w.len() - digits);
    let n: Option<u32> = n.parse().ok();
    let numbered = |max: u32, f: fn(u32) -> Event| match n {
        Some(k) if (1..=max).contains(&k) => Ok(f(k)),
        _ => Err(ScpiError::ILLEGAL_VALUE),
    };
    // RM §6 `:TRIGger:BLOCk:WAIT`, table "Trigger events".
    if n.is_none() && word_is(name, "NONE") {
        Ok(Event::None)
    } else if n.is_none() && word_is(name, "DISPlay") {
        Ok(Event::Display)
    } else if n.is_none() && word_is(name, "COMMand") {
        Ok(Event::Command)
    } else if n.is_none() && word_is(name, "SLIMit") {
        Ok(Event::SourceLimit)
    } else if word_is(name, "NOTify") {
        numbered(8, Event::Notify)
    } else if word_is(name, "DIGio") {
        numbered(6, Event::DigIo)
    } else if word_is(name, "TSPLink") {
        numbered(3, Event::TspLink)
    } else if word_is(name, "LAN") {
        numbered(8, Event::Lan)
    } else if word_is(name, "BLENder") {
        numbered(2, Event::Blender)
    } else if word_is(name, "TIMer") {
        numbered(4, Event::Timer)
    } else {
        Err(ScpiError::ILLEGAL_VALUE)
    }
}

/// Patterns of the commands implemented (RM §6 notation).
struct Pats {
    sour_func: Pattern,
    sour_volt: Pattern,
    sour_volt_rang: Pattern,
    sour_volt_rang_auto: Pattern,
    sour_volt_ilim: Pattern,
    sour_volt_ilim_trip: Pattern,
    sens_func: Pattern,
    sens_curr_rang: Pattern,
    sens_curr_rang_auto: Pattern,
    sens_curr_nplc: Pattern,
    sens_curr_azer: Pattern,
    outp: Pattern,
    read: Pattern,
    fetch: Pattern,
    trac_act: Pattern,
    trac_act_star: Pattern,
    trac_act_end: Pattern,
    trac_poin: Pattern,
    trac_cle: Pattern,
    trac_data: Pattern,
    form: Pattern,
    trig_load: Pattern,
    bloc_buff_cle: Pattern,
    bloc_wait: Pattern,
    bloc_mdig: Pattern,
    bloc_meas: Pattern,
    bloc_bran_coun: Pattern,
    bloc_bran_alw: Pattern,
    bloc_del: Pattern,
    bloc_not: Pattern,
    bloc_sour: Pattern,
    bloc_nop: Pattern,
    trig_stat: Pattern,
    trig_dig_edge: Pattern,
    trig_dig_cle: Pattern,
    dig_line_mode: Pattern,
    tim_del: Pattern,
    tim_coun: Pattern,
    tim_stim: Pattern,
    tim_gen: Pattern,
    tim_stat: Pattern,
    tim_cle: Pattern,
    init: Pattern,
    abor: Pattern,
    syst_err: Pattern,
    syst_err_coun: Pattern,
    syst_cle: Pattern,
    stat_pres: Pattern,
    stat_cle: Pattern,
    rout_term: Pattern,
}

fn pats() -> &'static Pats {
    static PATS: std::sync::OnceLock<Pats> = std::sync::OnceLock::new();
    PATS.get_or_init(|| Pats {
        sour_func: Pattern::new("[:SOURce#]:FUNCtion[:MODE]"),
        sour_volt: Pattern::new("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]"),
        sour_volt_rang: Pattern::new("[:SOURce#]:VOLTage:RANGe"),
        sour_volt_rang_auto: Pattern::new("[:SOURce#]:VOLTage:RANGe:AUTO"),
        sour_volt_ilim: Pattern::new("[:SOURce#]:VOLTage:ILIMit[:LEVel]"),
        sour_volt_ilim_trip: Pattern::new("[:SOURce#]:VOLTage:ILIMit[:LEVel]:TRIPped"),
        sens_func: Pattern::new("[:SENSe#]:FUNCtion[:ON]"),
        sens_curr_rang: Pattern::new("[:SENSe#]:CURRent[:DC]:RANGe[:UPPer]"),
        sens_curr_rang_auto: Pattern::new("[:SENSe#]:CURRent[:DC]:RANGe:AUTO"),
        sens_curr_nplc: Pattern::new("[:SENSe#]:CURRent[:DC]:NPLCycles"),
        sens_curr_azer: Pattern::new("[:SENSe#]:CURRent[:DC]:AZERo[:STATe]"),
        outp: Pattern::new(":OUTPut#[:STATe]"),
        read: Pattern::new(":READ"),
        fetch: Pattern::new(":FETCh"),
        trac_act: Pattern::new(":TRACe:ACTual"),
        trac_act_star: Pattern::new(":TRACe:ACTual:STARt"),
        trac_act_end: Pattern::new(":TRACe:ACTual:END"),
        trac_poin: Pattern::new(":TRACe:POINts"),
        trac_cle: Pattern::new(":TRACe:CLEar"),
        trac_data: Pattern::new(":TRACe:DATA"),
        form: Pattern::new(":FORMat[:DATA]"),
        trig_load: Pattern::new(":TRIGger:LOAD"),
        bloc_buff_cle: Pattern::new(":TRIGger:BLOCk:BUFFer:CLEar"),
        bloc_wait: Pattern::new(":TRIGger:BLOCk:WAIT"),
        bloc_mdig: Pattern::new(":TRIGger:BLOCk:MDIGitize"),
        bloc_meas: Pattern::new(":TRIGger:BLOCk:MEASure"),
        bloc_bran_coun: Pattern::new(":TRIGger:BLOCk:BRANch:COUNter"),
        bloc_bran_alw: Pattern::new(":TRIGger:BLOCk:BRANch:ALWays"),
        bloc_del: Pattern::new(":TRIGger:BLOCk:DELay:CONStant"),
        bloc_not: Pattern::new(":TRIGger:BLOCk:NOTify"),
        bloc_sour: Pattern::new(":TRIGger:BLOCk:SOURce:STATe"),
        bloc_nop: Pattern::new(":TRIGger:BLOCk:NOP"),
        trig_stat: Pattern::new(":TRIGger:STATe"),
        trig_dig_edge: Pattern::new(":TRIGger:DIGital#:IN:EDGE"),
        trig_dig_cle: Pattern::new(":TRIGger:DIGital#:IN:CLEar"),
        dig_line_mode: Pattern::new(":DIGital:LINE#:MODE"),
        tim_del: Pattern::new(":TRIGger:TIMer#:DELay"),
        tim_coun: Pattern::new(":TRIGger:TIMer#:COUNt"),
        tim_stim: Pattern::new(":TRIGger:TIMer#:STARt:STIMulus"),
        tim_gen: Pattern::new(":TRIGger:TIMer#:STARt:GENerate"),
        tim_stat: Pattern::new(":TRIGger:TIMer#:STATe"),
        tim_cle: Pattern::new(":TRIGger:TIMer#:CLEar"),
        init: Pattern::new(":INITiate[:IMMediate]"),
        abor: Pattern::new(":ABORt"),
        syst_err: Pattern::new(":SYSTem:ERRor[:NEXT]"),
        syst_err_coun: Pattern::new(":SYSTem:ERRor:COUNt"),
        syst_cle: Pattern::new(":SYSTem:CLEar"),
        stat_pres: Pattern::new(":STATus:PRESet"),
        stat_cle: Pattern::new(":STATus:CLEar"),
        rout_term: Pattern::new(":ROUTe:TERMinals"),
    })
}

fn block_number(p: &[Param]) -> Result<u32, ScpiError> {
    let first = p.first().ok_or(ScpiError::MISSING_PARAM)?;
    // RM §3 "Trigger model": up to 63 blocks.
    Ok(int(first, 1.0, 63.0)? as u32)
}

fn reply(s: String) -> Result<Option<Vec<u8>>, ScpiError> {
    Ok(Some(s.into_bytes()))
}

impl K2450 {
    /// A 2450 after power-on.
    pub fn new(cfg: &MeterConfig) -> Self {
        let mut m = Self {
            lang: cfg.lang.clone(),
            source_is_voltage: true,
            voltage_v: 0.0,
            vrange_v: 20.0,
            vrange_auto: true,
            ilim_a: 1.05e-4,
            sense_function: "CURR:DC",
            irange_a: 1e-4,
            irange_auto: true,
            nplc: 1.0,
            azero: true,
            output_on: false,
            tripped: false,
            buffers: [Buffer::new(), Buffer::new()],
            blocks: BTreeMap::new(),
            run: None,
            timers: Default::default(),
            trigger_in: [false; 6],
            edges: ["FALL"; 6],
        };
        m.reset();
        m
    }

    /// `*RST` defaults (RM §6, "Default value" of each command).
    fn reset(&mut self) {
        self.source_is_voltage = true;
        self.voltage_v = 0.0;
        self.vrange_v = 0.02;
        self.vrange_auto = true;
        self.ilim_a = 1.05e-4;
        self.sense_function = "CURR:DC";
        self.irange_a = 1e-4;
        self.irange_auto = true;
        self.nplc = 1.0;
        self.azero = true;
        self.output_on = false;
        self.tripped = false;
        for b in &mut self.buffers {
            b.clear();
            b.capacity = DEFAULT_POINTS;
        }
        self.blocks.clear();
        self.run = None;
        self.timers = Default::default();
        self.trigger_in = [false; 6];
        self.edges = ["FALL"; 6];
    }

    fn take_reading(&mut self, ctx: &mut Ctx, buffer: usize, t_s: f64, s: Sample) -> Reading {
        let on = self.output_on && self.source_is_voltage;
        let range = (!self.irange_auto).then_some(self.irange_a);
        let m = ctx.measure(on, self.voltage_v, self.ilim_a, range, s);
        self.tripped = m.compliance;
        let r = Reading {
            current_a: m.current_a,
            t_s,
            source_v: if self.output_on { self.voltage_v } else { 0.0 },
            compliance: m.compliance,
            overflow: m.overflow,
            output_on: self.output_on,
        };
        self.buffers[buffer].push(r);
        r
    }

    /// A frame sample on the trigger wire (rear digital I/O line 1 on the rig).
    pub fn pulse(&mut self, ctx: &mut Ctx, s: Sample) {
        self.run_timers(ctx);
        if !ctx.wire_live() {
            return;
        }
        let Some(run) = &mut self.run else { return };
        // Only a line configured as a trigger input (`:DIG:LINE1:MODE TRIG, IN`) sees the pulse.
        if !self.trigger_in[0] {
            return;
        }
        run.note(Event::DigIo(1));
        let t = ctx.reset_clock_s + s.time_s;
        self.advance(ctx, t, s);
    }

    /// Fire every trigger-timer expiry due on the meter's own clock.
    pub fn run_timers(&mut self, ctx: &mut Ctx) {
        let now = ctx.clock_s();
        for n in 0..self.timers.len() {
            loop {
                let tm = &self.timers[n];
                if !tm.enabled || tm.delay_s <= 0.0 {
                    break;
                }
                let k = tm.fired + u64::from(!tm.start_generate);
                if tm.count != 0 && tm.fired >= tm.count {
                    break;
                }
                let due = tm.started_at_s + k as f64 * tm.delay_s;
                if due > now {
                    break;
                }
                self.timers[n].fired += 1;
                if let Some(run) = &mut self.run {
                    run.note(Event::Timer(n as u32 + 1));
                    let s = ctx.last;
                    self.advance(ctx, due, s);
                }
            }
        }
    }

    /// Run the trigger model from its present block until it waits or ends.
    fn advance(&mut self, ctx: &mut Ctx, t_s: f64, s: Sample) {
        // A model without wait blocks loops only as often as its counters allow; this bound
        // stops a `BRANch:ALWays` loop without a wait from hanging the shim.
        for _ in 0..1_000_000 {
            let Some(run) = &mut self.run else { return };
            let pc = run.pc;
            let Some(block) = self.blocks.get(&pc).copied() else {
                self.run = None;
                return;
            };
            match block {
                Block::BufferClear(b) => {
                    self.buffers[b].clear();
                    run.pc += 1;
                }
                Block::Wait { events, clear_on_enter, all } => {
                    let listed = |e: &Event| events.contains(&Some(*e));
                    if run.entered_wait != Some(pc) {
                        run.entered_wait = Some(pc);
                        if clear_on_enter {
                            run.pending.retain(|e| !listed(e));
                        }
                    }
                    let seen = |e: &Event| *e == Event::None || run.pending.contains(e);
                    let mut waited = events.iter().flatten();
                    let go = if all { waited.all(seen) } else { waited.any(seen) };
                    if !go {
                        return;
                    }
                    // RM §6 `:TRIGger:BLOCk:WAIT`: exiting the wait block clears the memory of
                    // the recorded events.
                    run.pending.retain(|e| !listed(e));
                    run.entered_wait = None;
                    run.pc += 1;
                }
                Block::Measure { buffer, count } => {
                    run.pc += 1;
                    for _ in 0..count {
                        self.take_reading(ctx, buffer, t_s, s);
                    }
                }
                Block::BranchCounter { target, to } => {
                    let c = run.counters.entry(pc).or_insert(0);
                    *c += 1;
                    if *c < target {
                        run.pc = to;
                    } else {
                        // The counter restarts once it falls through, so an outer loop repeats
                        // the inner one in full (RM §6 `:TRIGger:BLOCk:MEASure` example:
                        // 5 × 3 = 15 readings).
                        *c = 0;
                        run.pc += 1;
                    }
                }
                Block::BranchAlways(to) => run.pc = to,
                Block::Delay | Block::Nop => run.pc += 1,
                Block::Notify(n) => {
                    run.note(Event::Notify(n));
                    run.pc += 1;
                }
                Block::SourceState(on) => {
                    self.output_on = on;
                    run.pc += 1;
                }
            }
        }
    }

    fn trace_data(&self, u: &Unit) -> Result<Option<Vec<u8>>, ScpiError> {
        arity(&u.params, 2, 16)?;
        let start = int(&u.params[0], 1.0, 1e12)?;
        let end = int(&u.params[1], 1.0, 1e12)?;
        let b = &self.buffers[buffer_index(u.params.get(2))?];
        // RM §6 `:TRACe:DATA?`: both indices must lie within the buffer's stored readings.
        if b.readings.is_empty() || start < b.start() || end > b.end() || start > end {
            return Err(ScpiError::OUT_OF_RANGE);
        }
        let elements: Vec<&str> = if u.params.len() > 3 {
            let mut v = Vec::new();
            for p in &u.params[3..] {
                let Param::Word(w) = p else { return Err(ScpiError::DATA_TYPE) };
                let e = [
                    "READing",
                    "RELative",
                    "SOURce",
                    "SOURSTATus",
                    "STATus",
                    "UNIT",
                    "SOURUNIT",
                    "SEConds",
                    "FRACtional",
                ]
                .into_iter()
                .find(|m| word_is(w, m))
                .ok_or(ScpiError::ILLEGAL_VALUE)?;
                v.push(e);
            }
            v
        } else {
            vec!["READing"]
        };
        let first_t = b.readings.front().map_or(0.0, |r| r.t_s);
        let mut out = String::with_capacity(((end - start + 1) as usize) * elements.len() * 16);
        for idx in start..=end {
            let r = &b.readings[(idx - b.first_index) as usize];
            for e in &elements {
                if !out.is_empty() {
                    out.push(',');
                }
                let field = match *e {
                    "READing" => sci(r.current_a),
                    // RM §8 `bufferVar.relativetimestamps`: seconds relative to the first reading
                    // in the buffer.
                    "RELative" => format!("{:.9}", r.t_s - first_t),
                    "SOURce" => sci(r.source_v),
                    "SOURSTATus" => {
                        let mut bits = 0;
                        if r.compliance {
                            bits |= SOURSTAT_LIMIT;
                        }
                        if r.output_on {
                            bits |= SOURSTAT_OUTPUT;
                        }
                        bits.to_string()
                    }
                    "STATus" => {
                        let mut bits = STAT_TERMINAL_FRONT;
                        if r.overflow {
                            bits |= STAT_QUESTIONABLE;
                        }
                        bits.to_string()
                    }
                    "UNIT" => "Amp DC".into(),
                    "SOURUNIT" => "Volt DC".into(),
                    "SEConds" => format!("{}", r.t_s.trunc() as u64),
                    _ => format!("{:.9}", r.t_s.fract()),
                };
                out.push_str(&field);
            }
        }
        reply(out)
    }

    /// Execute one unit (not a shared common command).
    pub fn execute(&mut self, ctx: &mut Ctx, u: &Unit) -> Result<Option<Vec<u8>>, ScpiError> {
        self.run_timers(ctx);
        if let Some(name) = u.common.as_deref() {
            return match (name, u.query) {
                ("*IDN", true) => reply(IDN.into()),
                ("*LANG", true) => reply(self.lang.clone()),
                // RM appendix B "*LANG" (p. B-5): takes effect after the next power cycle.
                ("*LANG", false) => Ok(None),
                ("*RST", false) => {
                    self.reset();
                    Ok(None)
                }
                ("*TRG", false) if self.lang == "SCPI" => {
                    if let Some(run) = &mut self.run {
                        run.note(Event::Command);
                        let (t, s) = (ctx.clock_s(), ctx.last);
                        self.advance(ctx, t, s);
                    }
                    Ok(None)
                }
                _ => Err(ScpiError::UNDEFINED_HEADER),
            };
        }
        if self.lang != "SCPI" {
            // The SCPI2400 and TSP command sets are not emulated: every native command is unknown.
            return Err(ScpiError::UNDEFINED_HEADER);
        }
        let p = pats();
        let k = &u.path;
        let q = u.query;
        let ps = &u.params;
        macro_rules! set_or_get {
            ($spec:expr, $field:expr) => {{
                if q {
                    arity(ps, 0, 0)?;
                    return reply(sci($field));
                }
                arity(ps, 1, 1)?;
                $field = number(&ps[0], $spec)?;
                return Ok(None);
            }};
        }
        if p.sour_func.matches(k).is_some() {
            if q {
                return reply(if self.source_is_voltage { "VOLT" } else { "CURR" }.into());
            }
            self.source_is_voltage = source_is_voltage(ps)?;
            return Ok(None);
        }
        if p.sour_volt.matches(k).is_some() {
            set_or_get!(NumSpec { min: -210.0, max: 210.0, default: 0.0, unit: "V" }, self.voltage_v);
        }
        if p.sour_volt_rang.matches(k).is_some() {
            if q {
                return reply(sci(self.vrange_v));
            }
            arity(ps, 1, 1)?;
            let v = number(&ps[0], NumSpec { min: -210.0, max: 210.0, default: 0.02, unit: "V" })?;
            self.vrange_v = VOLTAGE_RANGES_V.into_iter().find(|r| *r >= v.abs()).unwrap_or(200.0);
            self.vrange_auto = false;
            return Ok(None);
        }
        if p.sour_volt_rang_auto.matches(k).is_some() {
            if q {
                return reply(u8::from(self.vrange_auto).to_string());
            }
            arity(ps, 1, 1)?;
            self.vrange_auto = boolean(&ps[0])?;
            return Ok(None);
        }
        if p.sour_volt_ilim_trip.matches(k).is_some() && q {
            return reply(u8::from(self.tripped).to_string());
        }
        if p.sour_volt_ilim.matches(k).is_some() {
            // RM §6 `:SOURce[1]:VOLTage:ILIMit[:LEVel]`: 1 nA to 1.05 A.
            set_or_get!(NumSpec { min: 1e-9, max: 1.05, default: 1.05e-4, unit: "A" }, self.ilim_a);
        }
        if p.sens_func.matches(k).is_some() {
            if q {
                return reply(format!("\"{}\"", self.sense_function));
            }
            arity(ps, 1, 1)?;
            let (Param::Str(f) | Param::Word(f)) = &ps[0] else { return Err(ScpiError::DATA_TYPE) };
            let f = f.to_ascii_uppercase();
            self.sense_function = match f.as_str() {
                "CURR" | "CURRENT" | "CURR:DC" | "CURRENT:DC" => "CURR:DC",
                "VOLT" | "VOLTAGE" | "VOLT:DC" | "VOLTAGE:DC" => "VOLT:DC",
                "RES" | "RESISTANCE" => "RES",
                _ => return Err(ScpiError::ILLEGAL_VALUE),
            };
            return Ok(None);
        }
        if p.sens_curr_rang.matches(k).is_some() {
            if q {
                return reply(sci(self.irange_a));
            }
            arity(ps, 1, 1)?;
            // RM §6 `:SENSe[1]:CURRent[:DC]:RANGe[:UPPer]`: the instrument picks the range that
            // holds the value; 10 nA to 1 A.
            let a = number(&ps[0], NumSpec { min: -1.05, max: 1.05, default: 1e-4, unit: "A" })?;
            self.irange_a = CURRENT_RANGES_A.into_iter().find(|r| *r >= a.abs()).unwrap_or(1.0);
            self.irange_auto = false;
            return Ok(None);
        }
        if p.sens_curr_rang_auto.matches(k).is_some() {
            if q {
                return reply(u8::from(self.irange_auto).to_string());
            }
            arity(ps, 1, 1)?;
            self.irange_auto = boolean(&ps[0])?;
            return Ok(None);
        }
        if p.sens_curr_nplc.matches(k).is_some() {
            set_or_get!(NumSpec { min: 0.01, max: 10.0, default: 1.0, unit: "" }, self.nplc);
        }
        if p.sens_curr_azer.matches(k).is_some() {
            if q {
                return reply(u8::from(self.azero).to_string());
            }
            arity(ps, 1, 1)?;
            self.azero = boolean(&ps[0])?;
            return Ok(None);
        }
        if p.outp.matches(k).is_some_and(|s| s == [1]) {
            if q {
                return reply(u8::from(self.output_on).to_string());
            }
            arity(ps, 1, 1)?;
            self.output_on = boolean(&ps[0])?;
            return Ok(None);
        }
        if q && (p.read.matches(k).is_some() || p.fetch.matches(k).is_some()) {
            arity(ps, 0, 1)?;
            let b = buffer_index(ps.first())?;
            let r = if p.read.matches(k).is_some() {
                let s = ctx.last;
                self.take_reading(ctx, b, ctx.clock_s(), s)
            } else {
                *self.buffers[b].readings.back().ok_or(ScpiError::SETTINGS_CONFLICT)?
            };
            return reply(sci(r.current_a));
        }
        if q && p.trac_act.matches(k).is_some() {
            arity(ps, 0, 1)?;
            return reply(self.buffers[buffer_index(ps.first())?].readings.len().to_string());
        }
        if q && p.trac_act_star.matches(k).is_some() {
            arity(ps, 0, 1)?;
            return reply(self.buffers[buffer_index(ps.first())?].start().to_string());
        }
        if q && p.trac_act_end.matches(k).is_some() {
            arity(ps, 0, 1)?;
            return reply(self.buffers[buffer_index(ps.first())?].end().to_string());
        }
        if p.trac_poin.matches(k).is_some() {
            if q {
                arity(ps, 0, 1)?;
                return reply(self.buffers[buffer_index(ps.first())?].capacity.to_string());
            }
            arity(ps, 1, 2)?;
            let n = int(&ps[0], 1.0, MAX_POINTS)?;
            let b = &mut self.buffers[buffer_index(ps.get(1))?];
            // Resizing a buffer clears it.
            b.capacity = n as usize;
            b.clear();
            return Ok(None);
        }
        if !q && p.trac_cle.matches(k).is_some() {
            arity(ps, 0, 1)?;
            self.buffers[buffer_index(ps.first())?].clear();
            return Ok(None);
        }
        if q && p.trac_data.matches(k).is_some() {
            return self.trace_data(u);
        }
        if p.form.matches(k).is_some() {
            if q {
                return reply("ASC".into());
            }
            arity(ps, 1, 1)?;
            return match &ps[0] {
                Param::Word(w) if word_is(w, "ASCii") => Ok(None),
                // The binary formats exist on the instrument but are not emulated.
                Param::Word(w) if word_is(w, "REAL") || word_is(w, "SREal") => Err(ScpiError::SETTINGS_CONFLICT),
                Param::Word(_) => Err(ScpiError::ILLEGAL_VALUE),
                _ => Err(ScpiError::DATA_TYPE),
            };
        }
        if !q && p.trig_load.matches(k).is_some() {
            arity(ps, 1, 8)?;
            let Param::Str(name) = &ps[0] else { return Err(ScpiError::DATA_TYPE) };
            if !name.eq_ignore_ascii_case("Empty") {
                // Only the "Empty" template is emulated; the host builds its model block by block.
                return Err(ScpiError::ILLEGAL_VALUE);
            }
            self.blocks.clear();
            self.run = None;
            return Ok(None);
        }
        if !q {
            if let Some(block) = self.parse_block(k, ps)? {
                if self.run.is_some() {
                    // RM §3: the trigger model cannot be edited while it runs.
                    return Err(ScpiError::SETTINGS_CONFLICT);
                }
                self.blocks.insert(block.0, block.1);
                return Ok(None);
            }
        }
        if q && p.trig_stat.matches(k).is_some() {
            let (state, block) = match &self.run {
                None => ("IDLE", 0),
                Some(r) if matches!(self.blocks.get(&r.pc), Some(Block::Wait { .. })) => ("WAITING", r.pc),
                Some(r) => ("RUNNING", r.pc),
            };
            return reply(format!("{state};{state};{block}"));
        }
        if let Some(s) = p.trig_dig_edge.matches(k) {
            let line = s[0] as usize;
            if !(1..=6).contains(&line) {
                return Err(ScpiError::UNDEFINED_HEADER);
            }
            if q {
                return reply(self.edges[line - 1].into());
            }
            arity(ps, 1, 1)?;
            let Param::Word(w) = &ps[0] else { return Err(ScpiError::DATA_TYPE) };
            self.edges[line - 1] = if word_is(w, "FALLing") {
                "FALL"
            } else if word_is(w, "RISing") {
                "RIS"
            } else if word_is(w, "EITHer") {
                "EITH"
            } else {
                return Err(ScpiError::ILLEGAL_VALUE);
            };
            return Ok(None);
        }
        if let Some(s) = p.trig_dig_cle.matches(k).filter(|_| !q) {
            if let Some(run) = &mut self.run {
                run.pending.retain(|e| *e != Event::DigIo(s[0]));
            }
            return Ok(None);
        }
        if let Some(s) = p.dig_line_mode.matches(k) {
            let line = s[0] as usize;
            if !(1..=6).contains(&line) {
                return Err(ScpiError::UNDEFINED_HEADER);
            }
            if q {
                return reply(if self.trigger_in[line - 1] { "TRIG,IN" } else { "DIG,IN" }.into());
            }
            arity(ps, 2, 2)?;
            let (Param::Word(kind), Param::Word(dir)) = (&ps[0], &ps[1]) else { return Err(ScpiError::DATA_TYPE) };
            let kinds = ["DIGital", "TRIGger", "SYNChronous"];
            let dirs = ["IN", "OUT", "OPENdrain", "MASTer", "ACCeptor"];
            if !kinds.iter().any(|m| word_is(kind, m)) || !dirs.iter().any(|m| word_is(dir, m)) {
                return Err(ScpiError::ILLEGAL_VALUE);
            }
            self.trigger_in[line - 1] = word_is(kind, "TRIGger") && word_is(dir, "IN");
            return Ok(None);
        }
        if let Some(r) = self.timer_command(ctx, u)? {
            return r;
        }
        if !q && p.init.matches(k).is_some() {
            arity(ps, 0, 0)?;
            self.run = Some(Run { pc: 1, ..Run::default() });
            ctx.armed();
            let (t, s) = (ctx.clock_s(), ctx.last);
            self.advance(ctx, t, s);
            return Ok(None);
        }
        if !q && p.abor.matches(k).is_some() {
            self.run = None;
            return Ok(None);
        }
        if q && p.syst_err_coun.matches(k).is_some() {
            return reply(ctx.errors.len().to_string());
        }
        if q && p.syst_err.matches(k).is_some() {
            return reply(match ctx.errors.pop() {
                Some(e) => format!("{},\"{}\"", e.code, e.text),
                None => "0,\"No error\"".into(),
            });
        }
        if !q && (p.syst_cle.matches(k).is_some() || p.stat_cle.matches(k).is_some()) {
            ctx.errors.clear();
            return Ok(None);
        }
        if !q && p.stat_pres.matches(k).is_some() {
            return Ok(None);
        }
        if p.rout_term.matches(k).is_some() {
            if q {
                return reply("FRON".into());
            }
            arity(ps, 1, 1)?;
            return match &ps[0] {
                Param::Word(w) if word_is(w, "FRONt") || word_is(w, "REAR") => Ok(None),
                _ => Err(ScpiError::ILLEGAL_VALUE),
            };
        }
        Err(ScpiError::UNDEFINED_HEADER)
    }

    #[allow(clippy::type_complexity)]
    fn timer_command(
        &mut self,
        ctx: &mut Ctx,
        u: &Unit,
    ) -> Result<Option<Result<Option<Vec<u8>>, ScpiError>>, ScpiError> {
        let p = pats();
        let (k, q, ps) = (&u.path, u.query, &u.params);
        let pick = |pat: &Pattern| -> Option<usize> { pat.matches(k).map(|s| s[0] as usize) };
        let check = |n: usize| if (1..=4).contains(&n) { Ok(n - 1) } else { Err(ScpiError::UNDEFINED_HEADER) };
        if let Some(n) = pick(&p.tim_del) {
            let n = check(n)?;
            if q {
                return Ok(Some(reply(sci(self.timers[n].delay_s))));
            }
            arity(ps, 1, 1)?;
            // RM §6 `:TRIGger:TIMer<n>:DELay`: 8 µs to 100 ks.
            self.timers[n].delay_s = number(&ps[0], NumSpec { min: 8e-6, max: 1e5, default: 1e-5, unit: "S" })?;
            return Ok(Some(Ok(None)));
        }
        if let Some(n) = pick(&p.tim_coun) {
            let n = check(n)?;
            if q {
                return Ok(Some(reply(self.timers[n].count.to_string())));
            }
            arity(ps, 1, 1)?;
            // 0 = run until disabled.
            self.timers[n].count = int(&ps[0], 0.0, 1_048_575.0)?;
            return Ok(Some(Ok(None)));
        }
        if let Some(n) = pick(&p.tim_stim) {
            let _ = check(n)?;
            if q {
                return Ok(Some(reply("NONE".into())));
            }
            arity(ps, 1, 1)?;
            // Only NONE (start when enabled) is emulated.
            return Ok(Some(match event(&ps[0])? {
                Event::None => Ok(None),
                _ => Err(ScpiError::SETTINGS_CONFLICT),
            }));
        }
        if let Some(n) = pick(&p.tim_gen) {
            let n = check(n)?;
            if q {
                return Ok(Some(reply(u8::from(self.timers[n].start_generate).to_string())));
            }
            arity(ps, 1, 1)?;
            self.timers[n].start_generate = boolean(&ps[0])?;
            return Ok(Some(Ok(None)));
        }
        if let Some(n) = pick(&p.tim_stat) {
            let n = check(n)?;
            if q {
                return Ok(Some(reply(u8::from(self.timers[n].enabled).to_string())));
            }
            arity(ps, 1, 1)?;
            let on = boolean(&ps[0])?;
            let tm = &mut self.timers[n];
            if on && !tm.enabled {
                tm.started_at_s = ctx.clock_s();
                tm.fired = 0;
            }
            tm.enabled = on;
            return Ok(Some(Ok(None)));
        }
        if let Some(n) = pick(&p.tim_cle).filter(|_| !q) {
            let n = check(n)?;
            self.timers[n].fired = 0;
            return Ok(Some(Ok(None)));
        }
        Ok(None)
    }

    fn parse_block(&self, k: &[crate::scpi::Mnemonic], ps: &[Param]) -> Result<Option<(u32, Block)>, ScpiError> {
        let p = pats();
        if p.bloc_buff_cle.matches(k).is_some() {
            arity(ps, 1, 2)?;
            return Ok(Some((block_number(ps)?, Block::BufferClear(buffer_index(ps.get(1))?))));
        }
        if p.bloc_wait.matches(k).is_some() {
            arity(ps, 2, 6)?;
            let n = block_number(ps)?;
            let mut events: Events = [Some(event(&ps[1])?), None, None];
            let mut clear_on_enter = false;
            let mut all = false;
            let mut rest = &ps[2..];
            if let Some(Param::Word(w)) = rest.first() {
                if word_is(w, "ENTer") || word_is(w, "NEVer") {
                    clear_on_enter = word_is(w, "ENTer");
                    rest = &rest[1..];
                }
            }
            if let Some(first) = rest.first() {
                let Param::Word(logic) = first else { return Err(ScpiError::DATA_TYPE) };
                all = if word_is(logic, "AND") {
                    true
                } else if word_is(logic, "OR") {
                    false
                } else {
                    return Err(ScpiError::ILLEGAL_VALUE);
                };
                if rest.len() < 2 {
                    return Err(ScpiError::MISSING_PARAM);
                }
                if rest.len() > 3 {
                    return Err(ScpiError::PARAM_NOT_ALLOWED);
                }
                for (slot, e) in events[1..].iter_mut().zip(&rest[1..]) {
                    *slot = Some(event(e)?);
                }
            }
            return Ok(Some((n, Block::Wait { events, clear_on_enter, all })));
        }
        if p.bloc_mdig.matches(k).is_some() || p.bloc_meas.matches(k).is_some() {
            arity(ps, 1, 3)?;
            let n = block_number(ps)?;
            let buffer = buffer_index(ps.get(1))?;
            let count = match ps.get(2) {
                None => 1,
                // INF / AUTO counts keep measuring in the background, which the shim does not do.
                Some(Param::Word(_)) => return Err(ScpiError::SETTINGS_CONFLICT),
                Some(c) => int(c, 1.0, 1e9)?,
            };
            return Ok(Some((n, Block::Measure { buffer, count })));
        }
        if p.bloc_bran_coun.matches(k).is_some() {
            arity(ps, 3, 3)?;
            let target = int(&ps[1], 1.0, 1e12)?;
            let to = int(&ps[2], 1.0, 63.0)? as u32;
            return Ok(Some((block_number(ps)?, Block::BranchCounter { target, to })));
        }
        if p.bloc_bran_alw.matches(k).is_some() {
            arity(ps, 2, 2)?;
            return Ok(Some((block_number(ps)?, Block::BranchAlways(int(&ps[1], 1.0, 63.0)? as u32))));
        }
        if p.bloc_del.matches(k).is_some() {
            arity(ps, 2, 2)?;
            number(&ps[1], NumSpec { min: 0.0, max: 1e4, default: 0.0, unit: "S" })?;
            return Ok(Some((block_number(ps)?, Block::Delay)));
        }
        if p.bloc_not.matches(k).is_some() {
            arity(ps, 2, 2)?;
            return Ok(Some((block_number(ps)?, Block::Notify(int(&ps[1], 1.0, 8.0)? as u32))));
        }
        if p.bloc_sour.matches(k).is_some() {
            arity(ps, 2, 2)?;
            return Ok(Some((block_number(ps)?, Block::SourceState(boolean(&ps[1])?))));
        }
        if p.bloc_nop.matches(k).is_some() {
            arity(ps, 1, 1)?;
            return Ok(Some((block_number(ps)?, Block::Nop)));
        }
        Ok(None)
    }
}
