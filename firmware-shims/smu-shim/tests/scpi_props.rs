//! Property tests of the instrument-side SCPI parser (SCPI-99 Vol. 1 §6–7, IEEE 488.2 §7).

use proptest::prelude::*;
use smu_shim::scpi::{number, parse_unit, split_units, NumSpec, Param, Pattern};

/// Headers of the 2450 and B2900 command sets in the manuals' notation, each with a sent form
/// built from its nodes.
const HEADERS: [&str; 6] = [
    ":TRACe:ACTual:END",
    "[:SOURce#]:VOLTage[:LEVel][:IMMediate][:AMPLitude]",
    ":SENSe#:CURRent[:DC]:PROTection[:LEVel]",
    ":TRIGger:BLOCk:BRANch:COUNter",
    ":DIGital:LINE#:MODE",
    ":FORMat:ELEMents:SENSe",
];

/// (short, long, optional, suffixed) per node, parsed from the notation for the generator.
fn nodes(spec: &str) -> Vec<(String, String, bool, bool)> {
    let mut out = Vec::new();
    for raw in spec.replace("[:", ":[").split(':').filter(|s| !s.is_empty()) {
        let optional = raw.starts_with('[');
        let word = raw.trim_start_matches('[').trim_end_matches(']');
        let suffixed = word.ends_with('#');
        let word = word.trim_end_matches('#');
        let short: String = word.chars().filter(|c| c.is_ascii_uppercase()).collect();
        out.push((short, word.to_ascii_uppercase(), optional, suffixed));
    }
    out
}

fn random_case(s: &str, mask: u64) -> String {
    s.chars()
        .enumerate()
        .map(|(i, c)| if mask >> (i % 64) & 1 == 1 { c.to_ascii_lowercase() } else { c.to_ascii_uppercase() })
        .collect()
}

proptest! {
    /// Any mix of short and long forms, in any letter case, with or without the optional nodes
    /// and suffixes, names the same command and carries the same suffixes.
    #[test]
    fn every_spelling_of_a_header_matches(h in 0usize..HEADERS.len(), choices in any::<u64>(), case in any::<u64>(), suffix in 1u32..9) {
        let spec = HEADERS[h];
        let pattern = Pattern::new(spec);
        let mut sent = String::new();
        let mut expected = Vec::new();
        for (i, (short, long, optional, suffixed)) in nodes(spec).into_iter().enumerate() {
            let bits = choices >> (3 * i);
            if optional && bits & 1 == 1 {
                if suffixed { expected.push(1); }
                continue;
            }
            sent.push(':');
            sent.push_str(if bits & 2 == 2 { &long } else { &short });
            if suffixed {
                if bits & 4 == 4 { sent.push_str(&suffix.to_string()); expected.push(suffix); } else { expected.push(1); }
            }
        }
        let text = format!("{}?", random_case(&sent, case));
        let unit = parse_unit(&text, &mut Vec::new()).expect("parses").expect("unit");
        prop_assert!(unit.query);
        prop_assert_eq!(pattern.matches(&unit.path), Some(expected), "{}", text);
    }

    /// A node shortened to anything but its short or long form is a different header.
    #[test]
    fn truncated_mnemonics_do_not_match(cut in 1usize..4) {
        let pattern = Pattern::new(":TRACe:ACTual");
        let word = "ACTUAL";
        let sent = format!(":TRACE:{}?", &word[..word.len() - cut]);
        let unit = parse_unit(&sent, &mut Vec::new()).expect("parses").expect("unit");
        prop_assert_eq!(pattern.matches(&unit.path).is_some(), word.len() - cut == 3);
    }

    /// Strings keep any text, `;` and `,` included, in either quote style with doubled quotes.
    #[test]
    fn quoted_strings_round_trip(text in "[ -~]{0,40}", double in any::<bool>()) {
        let q = if double { '"' } else { '\'' };
        let escaped = text.replace(q, &format!("{q}{q}"));
        let msg = format!(":TRAC:CLE {q}{escaped}{q};*CLS");
        let units = split_units(&msg).expect("splits");
        prop_assert_eq!(units.len(), 2);
        let unit = parse_unit(units[0], &mut Vec::new()).expect("parses").expect("unit");
        prop_assert_eq!(unit.params, vec![Param::Str(text)]);
    }

    /// Decimal numbers in any exponent notation parse to the value sent.
    #[test]
    fn numbers_round_trip(v in -1e30f64..1e30, upper in any::<bool>()) {
        let text = if upper { format!(":SOUR:VOLT {v:E}") } else { format!(":SOUR:VOLT {v:e}") };
        let unit = parse_unit(&text, &mut Vec::new()).expect("parses").expect("unit");
        let spec = NumSpec { min: f64::MIN, max: f64::MAX, default: 0.0, unit: "V" };
        prop_assert_eq!(number(&unit.params[0], spec), Ok(v));
    }

    /// No input makes the parser panic; it answers with a unit or an error code.
    #[test]
    fn arbitrary_messages_never_panic(msg in "[ -~]{0,60}") {
        if let Ok(units) = split_units(&msg) {
            let mut path = Vec::new();
            for u in units {
                if let Err(e) = parse_unit(u, &mut path) {
                    prop_assert!(e.code < 0);
                }
            }
        }
    }
}
