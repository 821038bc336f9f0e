//! An instrument-side SCPI parser, written from IEEE 488.2-1992 §7 (program message syntax) and
//! SCPI-99 Vol. 1 §6–7 (header rules, compound messages, numeric suffixes, parameters).
//!
//! What it implements:
//! - program message units separated by `;` outside quoted strings (IEEE 488.2 §7.3.3);
//! - the SCPI header-path rule of compound messages (SCPI-99 Vol. 1 §6.2.4): a unit without a
//!   leading colon continues from the previous unit's path less its last node; a leading colon
//!   returns to the root; common commands (`*IDN?`) leave the path alone;
//! - short and long mnemonic forms in any letter case, optional nodes (`[:LEVel]`) and numeric
//!   suffixes (`DIGital:LINE1`, `TIMer1`) through [`Pattern`] (SCPI-99 Vol. 1 §6.2.5–6.2.6);
//! - parameters: decimal numbers with exponents and unit suffixes with multipliers (`10mV`,
//!   `1E-3A`; SCPI-99 Vol. 1 §7.7.3), strings in `'…'` or `"…"` with doubled quotes inside
//!   (IEEE 488.2 §7.7.5), character data (`ON`, `MIN`, `DIGio1`) — see [`Param`];
//! - the standard error codes and texts of SCPI-99 Vol. 2 §21.8 ([`ScpiError`]).

use std::collections::VecDeque;

/// An entry of the error queue: code and the standard text (SCPI-99 Vol. 2 §21.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScpiError {
    /// Negative SCPI code (or a device-specific positive one).
    pub code: i32,
    /// Text as the instruments print it (`"Undefined header"`).
    pub text: &'static str,
}

impl ScpiError {
    /// -102: the message does not parse.
    pub const SYNTAX: Self = Self { code: -102, text: "Syntax error" };
    /// -104: a parameter of the wrong kind (a string where a number is expected).
    pub const DATA_TYPE: Self = Self { code: -104, text: "Data type error" };
    /// -108: more parameters than the command takes.
    pub const PARAM_NOT_ALLOWED: Self = Self { code: -108, text: "Parameter not allowed" };
    /// -109: fewer parameters than the command needs.
    pub const MISSING_PARAM: Self = Self { code: -109, text: "Missing parameter" };
    /// -113: no such command.
    pub const UNDEFINED_HEADER: Self = Self { code: -113, text: "Undefined header" };
    /// -131: a unit suffix the parameter does not take.
    pub const INVALID_SUFFIX: Self = Self { code: -131, text: "Invalid suffix" };
    /// -151: an unterminated or malformed string.
    pub const INVALID_STRING: Self = Self { code: -151, text: "Invalid string data" };
    /// -221: valid alone, conflicting with the present state.
    pub const SETTINGS_CONFLICT: Self = Self { code: -221, text: "Settings conflict" };
    /// -222: a number outside the command's range.
    pub const OUT_OF_RANGE: Self = Self { code: -222, text: "Data out of range" };
    /// -224: a value the command does not know (an unknown enumeration word).
    pub const ILLEGAL_VALUE: Self = Self { code: -224, text: "Illegal parameter value" };
    /// -410: a new program message came while a response was still unread; the response is
    /// discarded (IEEE 488.2-1992 §6.3.2.3, the message exchange protocol's INTERRUPTED action).
    pub const QUERY_INTERRUPTED: Self = Self { code: -410, text: "Query INTERRUPTED" };
    /// -350: more errors than the queue holds; replaces the newest entry.
    pub const QUEUE_OVERFLOW: Self = Self { code: -350, text: "Queue overflow" };
}

/// The error/event queue (SCPI-99 Vol. 2 §21.8.1: FIFO, `-350` in the last slot on overflow).
#[derive(Debug, Clone)]
pub struct ErrorQueue {
    entries: VecDeque<ScpiError>,
    capacity: usize,
}

impl ErrorQueue {
    /// An empty queue holding at most `capacity` entries (≥ 2).
    pub fn new(capacity: usize) -> Self {
        Self { entries: VecDeque::with_capacity(capacity), capacity: capacity.max(2) }
    }

    /// Append an error; when full, the newest entry becomes `-350, "Queue overflow"`.
    pub fn push(&mut self, e: ScpiError) {
        if self.entries.len() < self.capacity {
            self.entries.push_back(e);
        } else if let Some(last) = self.entries.back_mut() {
            *last = ScpiError::QUEUE_OVERFLOW;
        }
    }

    /// Remove and return the oldest entry.
    pub fn pop(&mut self) -> Option<ScpiError> {
        self.entries.pop_front()
    }

    /// Entries waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no error is waiting.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forget all entries (`*CLS`).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// One node of a header as sent: the mnemonic in upper case and its numeric suffix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mnemonic {
    /// Upper-case letters (and inner digits/underscores) without the trailing numeric suffix.
    pub word: String,
    /// Trailing decimal digits (`LINE1` → 1), if any.
    pub suffix: Option<u32>,
}

/// A parameter as sent (IEEE 488.2 §7.7).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Decimal numeric program data, with its unit suffix upper-cased (empty when none).
    Num(f64, String),
    /// String program data without the quotes (doubled quotes collapsed).
    Str(String),
    /// Character program data, upper-cased (`ON`, `MAX`, `DIGIO1`).
    Word(String),
}

/// One program message unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// `*IDN?` and friends: the upper-case name including `*`, else `None`.
    pub common: Option<String>,
    /// The full header path (the compound-message rule already applied).
    pub path: Vec<Mnemonic>,
    /// Whether the header ends in `?`.
    pub query: bool,
    /// The parameters in order.
    pub params: Vec<Param>,
}

/// Split a program message (terminator removed) into unit texts at `;` outside quotes.
pub fn split_units(message: &str) -> Result<Vec<&str>, ScpiError> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in message.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ';' => {
                out.push(&message[start..i]);
                start = i + 1;
            }
            None => {}
        }
    }
    if quote.is_some() {
        return Err(ScpiError::INVALID_STRING);
    }
    out.push(&message[start..]);
    Ok(out)
}

fn parse_mnemonic(text: &str) -> Result<Mnemonic, ScpiError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_alphabetic() || bytes.len() > 32 {
        return Err(ScpiError::SYNTAX);
    }
    if !bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
        return Err(ScpiError::SYNTAX);
    }
    let digits = bytes.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let (word, num) = text.split_at(text.len() - digits);
    let suffix = if num.is_empty() { None } else { Some(num.parse::<u32>().map_err(|_| ScpiError::SYNTAX)?) };
    Ok(Mnemonic { word: word.to_ascii_uppercase(), suffix })
}

/// Parse one unit's text. `path` carries the compound-message header path between the units of
/// one message (start each message with an empty path). `Ok(None)` for an empty unit (a trailing
/// `;`, which instruments accept).
pub fn parse_unit(text: &str, path: &mut Vec<Mnemonic>) -> Result<Option<Unit>, ScpiError> {
    let text = text.trim_matches(|c: char| c == ' ' || c == '\t');
    if text.is_empty() {
        return Ok(None);
    }
    let header_end = text.find([' ', '\t']).unwrap_or(text.len());
    let (header, rest) = text.split_at(header_end);
    let (header, query) = match header.strip_suffix('?') {
        Some(h) => (h, true),
        None => (header, false),
    };
    if header.contains('?') {
        return Err(ScpiError::SYNTAX);
    }
    let params = parse_params(rest)?;
    if let Some(name) = header.strip_prefix('*') {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ScpiError::SYNTAX);
        }
        return Ok(Some(Unit { common: Some(header.to_ascii_uppercase()), path: Vec::new(), query, params }));
    }
    let (absolute, body) = match header.strip_prefix(':') {
        Some(b) => (true, b),
        None => (false, header),
    };
    let mut full = if absolute { Vec::new() } else { path.clone() };
    for node in body.split(':') {
        full.push(parse_mnemonic(node)?);
    }
    *path = full[..full.len() - 1].to_vec();
    Ok(Some(Unit { common: None, path: full, query, params }))
}

fn parse_params(text: &str) -> Result<Vec<Param>, ScpiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    let mut pieces = Vec::new();
    for (i, c) in text.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == ',' => {
                pieces.push(&text[start..i]);
                start = i + 1;
            }
            None => {}
        }
    }
    if quote.is_some() {
        return Err(ScpiError::INVALID_STRING);
    }
    pieces.push(&text[start..]);
    for p in pieces {
        out.push(parse_param(p.trim())?);
    }
    Ok(out)
}

fn parse_param(p: &str) -> Result<Param, ScpiError> {
    let Some(first) = p.chars().next() else { return Err(ScpiError::SYNTAX) };
    if first == '"' || first == '\'' {
        // IEEE 488.2 §7.7.5: the closing quote ends the string; a doubled quote is one quote.
        let inner = &p[1..];
        let mut s = String::with_capacity(inner.len());
        let mut chars = inner.chars().peekable();
        let mut closed = false;
        while let Some(c) = chars.next() {
            if c == first {
                if chars.peek() == Some(&first) {
                    s.push(first);
                    chars.next();
                } else {
                    closed = true;
                    break;
                }
            } else {
                s.push(c);
            }
        }
        if !closed || chars.next().is_some() {
            return Err(ScpiError::INVALID_STRING);
        }
        return Ok(Param::Str(s));
    }
    if first.is_ascii_digit() || matches!(first, '+' | '-' | '.') {
        let end = numeric_prefix_len(p);
        if end == 0 {
            return Err(ScpiError::SYNTAX);
        }
        let value: f64 = p[..end].parse().map_err(|_| ScpiError::SYNTAX)?;
        let suffix = p[end..].trim();
        if !suffix.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ScpiError::INVALID_SUFFIX);
        }
        return Ok(Param::Num(value, suffix.to_ascii_uppercase()));
    }
    if first.is_ascii_alphabetic() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Ok(Param::Word(p.to_ascii_uppercase()));
    }
    Err(ScpiError::SYNTAX)
}

/// Length of the decimal numeric program data at the start of `p` (IEEE 488.2 §7.7.2.2:
/// sign, mantissa with optional point, optional exponent `E±d`); 0 if none.
fn numeric_prefix_len(p: &str) -> usize {
    let b = p.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let mant_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i == mant_start || (i == mant_start + 1 && b[mant_start] == b'.') {
        return 0;
    }
    let mant_end = i;
    // An exponent only if digits follow (`1E3`; a bare `1E` would be the suffix "E").
    let mut j = i;
    while j < b.len() && b[j] == b' ' {
        j += 1;
    }
    if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
        let mut k = j + 1;
        while k < b.len() && b[k] == b' ' {
            k += 1;
        }
        if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
            k += 1;
        }
        let digits_start = k;
        while k < b.len() && b[k].is_ascii_digit() {
            k += 1;
        }
        if k > digits_start {
            return k;
        }
    }
    mant_end
}

/// A command header pattern in the manuals' notation: `[:SOURce#]:VOLTage[:LEVel]` — upper
/// case is the short form, the whole word the long form, `[…]` an optional node and `#` a node
/// that takes a numeric suffix (default 1).
#[derive(Debug, Clone)]
pub struct Pattern {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
struct Node {
    short: String,
    long: String,
    optional: bool,
    suffixed: bool,
}

impl Pattern {
    /// Compile a pattern (the notation above; panics on a malformed literal, which is a bug).
    pub fn new(spec: &str) -> Self {
        let mut nodes = Vec::new();
        let mut rest = spec;
        while !rest.is_empty() {
            let (optional, inner, tail) = if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                (true, &r[..end], r.get(end + 1..).unwrap_or(""))
            } else {
                let r = rest.strip_prefix(':').unwrap_or(rest);
                let end = r.find([':', '[']).unwrap_or(r.len());
                (false, &r[..end], &r[end..])
            };
            let inner = inner.strip_prefix(':').unwrap_or(inner);
            let (word, suffixed) = match inner.strip_suffix('#') {
                Some(w) => (w, true),
                None => (inner, false),
            };
            let short: String = word.chars().filter(|c| c.is_ascii_uppercase() || c.is_ascii_digit()).collect();
            nodes.push(Node { short, long: word.to_ascii_uppercase(), optional, suffixed });
            rest = tail;
        }
        Self { nodes }
    }

    /// Match a sent header; `Some(suffixes)` gives one suffix per pattern node that takes one
    /// (in order; 1 when omitted).
    pub fn matches(&self, keys: &[Mnemonic]) -> Option<Vec<u32>> {
        let mut suffixes = Vec::new();
        if match_nodes(&self.nodes, keys, &mut suffixes) {
            Some(suffixes)
        } else {
            None
        }
    }
}

fn match_nodes(nodes: &[Node], keys: &[Mnemonic], suffixes: &mut Vec<u32>) -> bool {
    let Some((node, rest_nodes)) = nodes.split_first() else { return keys.is_empty() };
    let mark = suffixes.len();
    if let Some((key, rest_keys)) = keys.split_first() {
        let word_ok = key.word == node.short || key.word == node.long;
        let suffix_ok = node.suffixed || key.suffix.is_none();
        if word_ok && suffix_ok {
            if node.suffixed {
                suffixes.push(key.suffix.unwrap_or(1));
            }
            if match_nodes(rest_nodes, rest_keys, suffixes) {
                return true;
            }
            suffixes.truncate(mark);
        }
    }
    if node.optional {
        if node.suffixed {
            suffixes.push(1);
        }
        if match_nodes(rest_nodes, keys, suffixes) {
            return true;
        }
        suffixes.truncate(mark);
    }
    false
}

/// Whether character data `w` names `mnemonic` in its short or long form (`"VOLT"`,
/// `"VOLTAGE"` for `"VOLTage"`).
pub fn word_is(w: &str, mnemonic: &str) -> bool {
    let short: String = mnemonic.chars().filter(|c| c.is_ascii_uppercase() || c.is_ascii_digit()).collect();
    w.eq_ignore_ascii_case(&short) || w.eq_ignore_ascii_case(mnemonic)
}

/// How a numeric parameter is checked: its range, `MIN`/`MAX`/`DEF` values and unit.
#[derive(Debug, Clone, Copy)]
pub struct NumSpec {
    /// Smallest value accepted (`MINimum`).
    pub min: f64,
    /// Largest value accepted (`MAXimum`).
    pub max: f64,
    /// `DEFault`.
    pub default: f64,
    /// Base unit suffix accepted (`V`, `A`, `S`, `HZ`, `OHM`; empty for none).
    pub unit: &'static str,
}

/// The multiplier of a unit suffix for `unit` (SCPI-99 Vol. 1 §7.7.3: `M` = milli, `MA` =
/// mega, except `MHZ`/`MOHM` = mega; `U` micro, `N` nano, `P` pico, `K` kilo, `G` giga).
fn suffix_multiplier(suffix: &str, unit: &str) -> Option<f64> {
    if suffix.is_empty() {
        return Some(1.0);
    }
    if !unit.is_empty() && (suffix == "MHZ" && unit == "HZ" || suffix == "MOHM" && unit == "OHM") {
        return Some(1e6);
    }
    let prefix = if unit.is_empty() { suffix } else { suffix.strip_suffix(unit)? };
    Some(match prefix {
        "" => 1.0,
        "EX" => 1e18,
        "PE" => 1e15,
        "T" => 1e12,
        "G" => 1e9,
        "MA" => 1e6,
        "K" => 1e3,
        "M" => 1e-3,
        "U" => 1e-6,
        "N" => 1e-9,
        "P" => 1e-12,
        "F" => 1e-15,
        _ => return None,
    })
}

/// A numeric parameter checked against `spec` (-104 for a non-number, -131 for a wrong
/// suffix, -222 out of range).
pub fn number(p: &Param, spec: NumSpec) -> Result<f64, ScpiError> {
    let v = match p {
        Param::Num(v, suffix) => v * suffix_multiplier(suffix, spec.unit).ok_or(ScpiError::INVALID_SUFFIX)?,
        Param::Word(w) if word_is(w, "MINimum") => return Ok(spec.min),
        Param::Word(w) if word_is(w, "MAXimum") => return Ok(spec.max),
        Param::Word(w) if word_is(w, "DEFault") => return Ok(spec.default),
        _ => return Err(ScpiError::DATA_TYPE),
    };
    if !v.is_finite() || v < spec.min || v > spec.max {
        return Err(ScpiError::OUT_OF_RANGE);
    }
    Ok(v)
}

/// A boolean parameter: `ON`/`OFF` or a number (non-zero after rounding is on; SCPI-99 Vol. 1
/// §7.3).
pub fn boolean(p: &Param) -> Result<bool, ScpiError> {
    match p {
        Param::Word(w) if w == "ON" => Ok(true),
        Param::Word(w) if w == "OFF" => Ok(false),
        Param::Num(v, s) if s.is_empty() => Ok(v.round() != 0.0),
        Param::Word(_) => Err(ScpiError::ILLEGAL_VALUE),
        _ => Err(ScpiError::DATA_TYPE),
    }
}

/// Exactly `n` parameters (else -109 / -108).
pub fn arity(params: &[Param], min: usize, max: usize) -> Result<(), ScpiError> {
    if params.len() < min {
        Err(ScpiError::MISSING_PARAM)
    } else if params.len() > max {
        Err(ScpiError::PARAM_NOT_ALLOWED)
    } else {
        Ok(())
    }
}

/// The one parameter of a `…:FUNCtion[:MODE] VOLTage|CURRent` source-function command, as "the
/// source is voltage" (-104 for a non-word, -224 for another word); both meter models use it.
pub fn source_is_voltage(params: &[Param]) -> Result<bool, ScpiError> {
    arity(params, 1, 1)?;
    let Param::Word(w) = &params[0] else { return Err(ScpiError::DATA_TYPE) };
    if word_is(w, "VOLTage") {
        Ok(true)
    } else if word_is(w, "CURRent") {
        Ok(false)
    } else {
        Err(ScpiError::ILLEGAL_VALUE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(text: &str) -> Unit {
        let mut path = Vec::new();
        parse_unit(text, &mut path).expect("parses").expect("not empty")
    }

    #[test]
    fn long_and_short_forms_match_the_same_pattern() {
        let p = Pattern::new(":TRACe:ACTual");
        assert!(p.matches(&unit(":TRAC:ACT?").path).is_some());
        assert!(p.matches(&unit(":trace:actual?").path).is_some());
        assert!(p.matches(&unit("TrAcE:AcT?").path).is_some());
        // Neither form: SCPI-99 Vol. 1 §6.2.5 accepts only the short or the long form.
        assert!(p.matches(&unit(":TRA:ACT?").path).is_none());
        assert!(p.matches(&unit(":TRACE:ACTUA?").path).is_none());
    }

    #[test]
    fn optional_nodes_and_suffixes() {
        let p = Pattern::new("[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]");
        assert_eq!(p.matches(&unit(":SOUR:VOLT 1").path), Some(vec![1]));
        assert_eq!(p.matches(&unit(":SOUR2:VOLT:LEV:IMM:AMPL 1").path), Some(vec![2]));
        assert_eq!(p.matches(&unit("VOLT 1").path), Some(vec![1]));
        let d = Pattern::new(":DIGital:LINE#:MODE");
        assert_eq!(d.matches(&unit(":DIG:LINE3:MODE TRIG, IN").path), Some(vec![3]));
        // A suffix where the manual has none is not the same header.
        assert!(Pattern::new(":OUTPut[:STATe]").matches(&unit(":OUTP2 ON").path).is_none());
    }

    #[test]
    fn compound_messages_follow_the_header_path_rule() {
        let mut path = Vec::new();
        let units: Vec<Unit> = split_units(":SENS:CURR:NPLC 1;RANG 1e-4;*CLS;:OUTP ON")
            .expect("splits")
            .into_iter()
            .filter_map(|u| parse_unit(u, &mut path).expect("parses"))
            .collect();
        let words = |u: &Unit| u.path.iter().map(|m| m.word.clone()).collect::<Vec<_>>().join(":");
        assert_eq!(words(&units[0]), "SENS:CURR:NPLC");
        assert_eq!(words(&units[1]), "SENS:CURR:RANG");
        assert_eq!(units[2].common.as_deref(), Some("*CLS"));
        assert_eq!(words(&units[3]), "OUTP");
    }

    #[test]
    fn parameters() {
        let u = unit(":TRAC:DATA? 1, 10, \"defbuffer1\", READ, REL");
        assert_eq!(
            u.params,
            vec![
                Param::Num(1.0, String::new()),
                Param::Num(10.0, String::new()),
                Param::Str("defbuffer1".into()),
                Param::Word("READ".into()),
                Param::Word("REL".into())
            ]
        );
        assert_eq!(unit("X 'it''s;ok'").params, vec![Param::Str("it's;ok".into())]);
        let v = NumSpec { min: -210.0, max: 210.0, default: 0.0, unit: "V" };
        assert_eq!(number(&unit("X 10mV").params[0], v), Ok(0.01));
        assert_eq!(number(&unit("X -1.5E+1").params[0], v), Ok(-15.0));
        assert_eq!(number(&unit("X MAX").params[0], v), Ok(210.0));
        assert_eq!(number(&unit("X 300").params[0], v), Err(ScpiError::OUT_OF_RANGE));
        assert_eq!(number(&unit("X 1 mA").params[0], v), Err(ScpiError::INVALID_SUFFIX));
        let a = NumSpec { min: 0.0, max: 1.05, default: 1e-4, unit: "A" };
        assert!((number(&unit("X 1MA").params[0], a).expect("milliamp") - 1e-3).abs() < 1e-15);
        assert_eq!(split_units("X 'open"), Err(ScpiError::INVALID_STRING));
    }
}
