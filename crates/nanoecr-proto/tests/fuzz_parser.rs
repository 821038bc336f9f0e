//! Property tests (fuzzing) of the request path: framing + `parse_request`. Arbitrary bytes and
//! arbitrary JSON-ish lines never panic, and each line yields either a valid request or an
//! error response that is itself a valid JSON-RPC 2.0 error line.
//!
//! Inputs tried per full run: 20 000 arbitrary byte strings + 20 000 JSON-ish lines + 20 000
//! structurally valid-looking requests + 5 000 chunked streams + 5 000 requests with a duplicated
//! key, 5 000 with an extra member and 5 000 with an unknown or mistyped parameter per method (see
//! `CASES`). The cargo-fuzz targets in fuzz/ (`just fuzz`) drive the same parser with libFuzzer.

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

/// Decode `params` as `method`'s params type, as the daemon does.
fn decode_for(method: &str, r: &Request) -> Result<(), nanoecr_proto::RpcError> {
    use nanoecr_proto::methods as m;
    match method {
        m::DAEMON_INFO | m::RUN_STATUS => r.params::<m::NoParams>().map(drop),
        m::RUN_START => r.params::<m::RunStartParams>().map(drop),
        m::RUN_ABORT => r.params::<m::RunAbortParams>().map(drop),
        m::EVENTS_SUBSCRIBE => r.params::<m::SubscribeParams>().map(drop),
        m::RUNS_LIST => r.params::<m::RunsListParams>().map(drop),
        other => Err(nanoecr_proto::RpcError::method_not_found(other)),
    }
}

/// The typed parameters of each method, with a value of the wrong type for each.
const TYPED_PARAMS: &[(&str, &str, &str)] = &[
    ("run.start", "config_toml", "1"),
    ("run.start", "config_path", "[]"),
    ("run.start", "config_name", "{}"),
    ("run.start", "out_dir", "true"),
    ("run.start", "seed", "\"7\""),
    ("run.start", "seed", "-1"),
    ("run.start", "fast", "\"yes\""),
    ("events.subscribe", "progress", "1"),
    ("events.subscribe", "samples", "\"no\""),
    ("events.subscribe", "events", "[]"),
    ("runs.list", "limit", "-3"),
    ("runs.list", "limit", "\"ten\""),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES / 4, failure_persistence: None, ..ProptestConfig::default() })]

    /// A key given twice — in the envelope or at any depth of params — is `-32600`, whatever
    /// the two values: JSON leaves the meaning open, so the daemon does not guess.
    #[test]
    fn a_duplicated_key_is_an_invalid_request(
        line in requestish(),
        which in 0usize..4,
        nested in any::<bool>(),
        dup in prop_oneof![Just("\"run.abort\"".to_string()), Just("null".to_string()), any::<i32>().prop_map(|n| n.to_string())],
    ) {
        let v: Value = serde_json::from_str(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| TestCaseError::fail("an object"))?;
        let (target, key): (String, String) = match (nested, v.get("params").and_then(Value::as_object)) {
            (true, Some(p)) if !p.is_empty() => {
                // Duplicate a key inside params: rebuild params with its first key repeated.
                let k = p.keys().nth(which % p.len()).cloned().unwrap_or_default();
                let inner = Value::Object(p.clone()).to_string();
                let doubled = format!("{{{}:{dup},{}", Value::from(k.clone()), &inner[1..]);
                let mut o = obj.clone();
                o.remove("params");
                let rest = Value::Object(o).to_string();
                let sep = if rest == "{}" { "" } else { "," };
                (format!("{{\"params\":{doubled}{sep}{}", &rest[1..]), k)
            }
            _ => {
                let keys: Vec<&String> = obj.keys().collect();
                if keys.is_empty() {
                    return Ok(());
                }
                let k = keys[which % keys.len()].clone();
                (format!("{{{}:{dup},{}", Value::from(k.clone()), &line[1..]), k)
            }
        };
        let resp = parse_request(target.as_bytes()).err().ok_or_else(|| TestCaseError::fail(format!("accepted: {target}")))?;
        check_error(&resp)?;
        let Outcome::Error(e) = &resp.outcome else { return Err(TestCaseError::fail("error")) };
        prop_assert_eq!(e.code, codes::INVALID_REQUEST, "{} → {}", target, e.message);
        prop_assert!(e.message.contains(&format!("duplicate key `{key}`")), "{}", e.message);
    }

    /// A member other than jsonrpc, id, method and params makes any request invalid.
    #[test]
    fn an_extra_envelope_member_is_an_invalid_request(
        method in prop::sample::select(nanoecr_proto::methods::ALL),
        extra in "[a-z_]{1,10}",
    ) {
        prop_assume!(!["jsonrpc", "id", "method", "params"].contains(&extra.as_str()));
        let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","{extra}":0}}"#);
        let resp = parse_request(line.as_bytes()).err().ok_or_else(|| TestCaseError::fail("accepted"))?;
        let Outcome::Error(e) = &resp.outcome else { return Err(TestCaseError::fail("error")) };
        prop_assert_eq!(e.code, codes::INVALID_REQUEST);
        prop_assert!(e.message.contains(&extra));
    }

    /// On every method: an unknown parameter, a mistyped one, or params given as an array is
    /// `-32602`, and the message names the parameter.
    #[test]
    fn unknown_or_mistyped_params_are_named_on_every_method(
        method in prop::sample::select(nanoecr_proto::methods::ALL),
        unknown in "[a-z_]{1,12}",
        typed in prop::sample::select(TYPED_PARAMS),
        array in prop::collection::vec(any::<i32>(), 0..3),
    ) {
        // Every parameter of every method is in TYPED_PARAMS; any other name is unknown.
        let is_param = TYPED_PARAMS.iter().any(|(m, k, _)| *m == method && *k == unknown);
        if !is_param {
            let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"{unknown}":1}}}}"#);
            let r = parse_request(line.as_bytes()).map_err(|_| TestCaseError::fail("envelope ok"))?;
            let e = decode_for(method, &r).err().ok_or_else(|| TestCaseError::fail(format!("{line} accepted")))?;
            prop_assert_eq!(e.code, codes::INVALID_PARAMS);
            prop_assert!(e.message.contains(&format!("`{unknown}`")), "{}", e.message);
        }
        let (tm, key, bad) = typed;
        let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{tm}","params":{{"{key}":{bad}}}}}"#);
        let r = parse_request(line.as_bytes()).map_err(|_| TestCaseError::fail("envelope ok"))?;
        let e = decode_for(tm, &r).err().ok_or_else(|| TestCaseError::fail(format!("{line} accepted")))?;
        prop_assert_eq!(e.code, codes::INVALID_PARAMS);
        prop_assert!(e.message.contains(&format!("`{key}`")), "{}", e.message);
        let line = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{}}}"#, Value::from(array));
        let r = parse_request(line.as_bytes()).map_err(|_| TestCaseError::fail("envelope ok"))?;
        let e = decode_for(method, &r).err().ok_or_else(|| TestCaseError::fail("array accepted"))?;
        prop_assert_eq!(e.code, codes::INVALID_PARAMS);
        prop_assert!(e.message.contains("must be an object"));
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
