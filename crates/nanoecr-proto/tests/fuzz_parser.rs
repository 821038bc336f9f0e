//! Property tests (fuzzing) of the request path: framing + `parse_request`. Arbitrary bytes and
//! arbitrary JSON-ish lines never panic, and each line yields either a valid request or an
//! error response that is itself a valid JSON-RPC 2.0 error line.
//!
//! Inputs tried per full run: 20 000 arbitrary byte strings + 20 000 JSON-ish lines + 20 000
//! structurally valid-looking requests + 5 000 chunked streams (see `CASES`).

use nanoecr_proto::jsonrpc::Outcome;
use nanoecr_proto::{codes, parse_request, Frame, LineDecoder, Request, Response, MAX_LINE_BYTES};
use proptest::prelude::*;
use serde_json::Value;

const CASES: u32 = 20_000;

/// What a line must turn into: a request, or an error response with a known code that
/// serialises to one line of valid JSON-RPC.
fn check_line(line: &[u8]) -> Result<Option<Request>, TestCaseError> {
    match parse_request(line) {
        Ok(r) => {
            prop_assert!(matches!(r.params, Value::Null | Value::Object(_) | Value::Array(_)));
            prop_assert!(matches!(r.id, None | Some(Value::String(_) | Value::Number(_) | Value::Null)));
            Ok(Some(r))
        }
        Err(resp) => {
            check_error(&resp)?;
            Ok(None)
        }
    }
}

fn check_error(resp: &Response) -> Result<(), TestCaseError> {
    let Outcome::Error(e) = &resp.outcome else {
        return Err(TestCaseError::fail("parse failure without an error"));
    };
    prop_assert!([codes::PARSE_ERROR, codes::INVALID_REQUEST].contains(&e.code), "code {}", e.code);
    prop_assert!(!e.message.is_empty());
    let line = resp.to_line();
    prop_assert_eq!(line.matches('\n').count(), 1, "one line exactly");
    let v: Value = serde_json::from_str(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(v["jsonrpc"].as_str(), Some("2.0"));
    prop_assert!(v.get("result").is_none());
    prop_assert!(v["error"]["code"].is_i64());
    Ok(())
}

/// JSON-ish text: fragments of the protocol glued at random, so the parser sees near misses.
fn jsonish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\\",
        "\"jsonrpc\"",
        "\"2.0\"",
        "\"1.0\"",
        "\"id\"",
        "\"method\"",
        "\"params\"",
        "\"run.start\"",
        "\"run.status\"",
        "\"config_toml\"",
        "null",
        "true",
        "false",
        "0",
        "-1",
        "1e999",
        "3.5",
        "18446744073709551616",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "é",
        "\u{1F600}",
        " ",
        "\r",
        "\t",
    ]);
    prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
}

/// Requests that are well formed JSON with random member values.
fn requestish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (
        prop::option::of(prop_oneof![Just(Value::from("2.0")), value.clone()]),
        prop::option::of(value.clone()),
        prop::option::of(prop_oneof![
            prop::sample::select(nanoecr_proto::methods::ALL).prop_map(Value::from),
            value.clone()
        ]),
        prop::option::of(value),
    )
        .prop_map(|(jsonrpc, id, method, params)| {
            let mut m = serde_json::Map::new();
            for (k, v) in [("jsonrpc", jsonrpc), ("id", id), ("method", method), ("params", params)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            Value::Object(m).to_string()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_line(&bytes)?;
    }

    #[test]
    fn jsonish_lines_never_panic(line in jsonish()) {
        check_line(line.as_bytes())?;
    }

    #[test]
    fn requestish_objects_are_requests_exactly_when_well_formed(line in requestish()) {
        let v: Value = serde_json::from_str(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let well_formed = v["jsonrpc"] == "2.0"
            && v["method"].is_string()
            && matches!(v.get("id"), None | Some(Value::String(_) | Value::Number(_) | Value::Null))
            && matches!(v.get("params"), None | Some(Value::Object(_) | Value::Array(_)));
        let parsed = check_line(line.as_bytes())?;
        prop_assert_eq!(parsed.is_some(), well_formed, "{}", line);
        if let Some(r) = parsed {
            // Typed params never panic either: they decode or give `invalid params`.
            let p = r.params::<nanoecr_proto::methods::RunStartParams>();
            if let Err(e) = p {
                prop_assert_eq!(e.code, codes::INVALID_PARAMS);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES / 4, failure_persistence: None, ..ProptestConfig::default() })]

    /// A stream cut into arbitrary chunks frames the same as in one piece, and every frame
    /// is handled.
    #[test]
    fn chunked_streams_frame_identically(
        lines in prop::collection::vec(prop_oneof![jsonish(), requestish()], 0..8),
        cuts in prop::collection::vec(0usize..64, 0..16),
        max in 1usize..64,
    ) {
        let stream = lines.join("\n").into_bytes();
        let mut whole = Vec::new();
        let mut d = LineDecoder::new(max);
        d.push(&stream, &mut |f| whole.push(f));
        d.finish(&mut |f| whole.push(f));
        let mut pieces = Vec::new();
        let mut d = LineDecoder::new(max);
        let mut rest = &stream[..];
        for c in cuts {
            let c = c.min(rest.len());
            d.push(&rest[..c], &mut |f| pieces.push(f));
            rest = &rest[c..];
        }
        d.push(rest, &mut |f| pieces.push(f));
        d.finish(&mut |f| pieces.push(f));
        prop_assert_eq!(&whole, &pieces);
        for f in whole {
            match f {
                Frame::Line(l) => {
                    prop_assert!(l.len() <= max);
                    check_line(&l)?;
                }
                Frame::TooLong => {}
            }
        }
    }
}

#[test]
fn a_line_over_one_mib_is_refused_without_buffering_it() {
    let mut d = LineDecoder::new(MAX_LINE_BYTES);
    let mut frames = Vec::new();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..20 {
        d.push(&chunk, &mut |f| frames.push(f));
        assert!(d.buffered_bytes() <= MAX_LINE_BYTES);
    }
    d.push(b"\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon.info\"}\n", &mut |f| frames.push(f));
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0], Frame::TooLong);
    assert!(matches!(&frames[1], Frame::Line(l) if parse_request(l).is_ok()));
}
