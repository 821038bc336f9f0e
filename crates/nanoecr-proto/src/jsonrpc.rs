//! The JSON-RPC 2.0 envelope, error codes, and [`parse_request`], the one function every request
//! line goes through. It never panics and turns any input into either a [`Request`] or the
//! error [`Response`] to send back (fuzzed in tests/fuzz_parser.rs).

use serde::de::{DeserializeOwned, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// The `jsonrpc` member every message carries.
pub const VERSION: &str = "2.0";

/// Error codes. The standard ones are JSON-RPC 2.0's; the server-defined ones live in
/// −32000…−32099 and are stable: scripts and the CLI's exit codes rely on them.
pub mod codes {
    /// The line is not JSON (or not UTF-8).
    pub const PARSE_ERROR: i32 = -32700;
    /// Valid JSON, but not a JSON-RPC 2.0 request (batch, missing `method`, bad `id`, …).
    pub const INVALID_REQUEST: i32 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// The params do not fit the method.
    pub const INVALID_PARAMS: i32 = -32602;
    /// A bug or an unexpected failure inside the daemon.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// The peer's credentials are not allowed on this socket; the connection is closed.
    pub const PERMISSION_DENIED: i32 = -32001;
    /// The request line is longer than [`crate::MAX_LINE_BYTES`]; the line is discarded.
    pub const LINE_TOO_LONG: i32 = -32002;
    /// The run config does not parse or validate; `data` is a [`crate::methods::ConfigErrorData`].
    pub const INVALID_CONFIG: i32 = -32010;
    /// `run.start` while a run is in progress; `data.file` names the running file.
    pub const RUN_IN_PROGRESS: i32 = -32011;
    /// `run.abort` with no run in progress.
    pub const NO_RUN: i32 = -32012;
    /// The run could not start: instrument not ready, output directory not writable, ….
    pub const RUN_START_FAILED: i32 = -32013;
    /// The daemon is shutting down and accepts no new run.
    pub const SHUTTING_DOWN: i32 = -32014;
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// One of [`codes`].
    pub code: i32,
    /// One line for a human.
    pub message: String,
    /// Structured detail (config error location, running file, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error without data.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    /// Attach structured detail.
    pub fn with_data(mut self, data: impl Serialize) -> Self {
        self.data = serde_json::to_value(data).ok();
        self
    }

    /// `-32601` for `method`.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(codes::METHOD_NOT_FOUND, format!("unknown method `{method}`"))
    }

    /// `-32602` with a reason.
    pub fn invalid_params(why: impl std::fmt::Display) -> Self {
        Self::new(codes::INVALID_PARAMS, format!("invalid params: {why}"))
    }

    /// `-32603` with a reason.
    pub fn internal(why: impl std::fmt::Display) -> Self {
        Self::new(codes::INTERNAL_ERROR, format!("internal error: {why}"))
    }
}

/// A request as the server sees it after [`parse_request`].
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The id to answer with; `None` for a notification (no response is sent).
    pub id: Option<Value>,
    /// Method name.
    pub method: String,
    /// Params (`Null` when absent).
    pub params: Value,
}

impl Request {
    /// Decode the params into a method's params type. Absent params decode as `{}` so methods
    /// whose params are all optional accept no params at all; an array is refused (every method
    /// takes named parameters). A mistyped parameter's error names it (`` `seed`: invalid type…``).
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, RpcError> {
        let v = match &self.params {
            Value::Null => Value::Object(serde_json::Map::new()),
            Value::Object(_) => self.params.clone(),
            _ => return Err(RpcError::invalid_params("params must be an object (named parameters)")),
        };
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            if path.is_empty() || path == "." {
                RpcError::invalid_params(e.into_inner())
            } else {
                RpcError::invalid_params(format!("`{path}`: {}", e.into_inner()))
            }
        })
    }
}

/// An outgoing request (the client side).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutgoingRequest {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The id the response will carry.
    pub id: Value,
    /// Method name.
    pub method: String,
    /// Named params.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
}

impl OutgoingRequest {
    /// A request with `id` and params (serialised; a params type that fails to serialise is a bug).
    pub fn new(id: u64, method: &str, params: impl Serialize) -> Self {
        Self {
            jsonrpc: VERSION.into(),
            id: Value::from(id),
            method: method.into(),
            params: serde_json::to_value(params).unwrap_or(Value::Null),
        }
    }
}

/// The success or error half of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The method's result.
    Result(Value),
    /// The failure.
    Error(RpcError),
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The request's id (`null` when the request's id could not be read).
    pub id: Value,
    /// Result or error.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Response {
    /// A success.
    pub fn ok(id: Value, result: impl Serialize) -> Self {
        let outcome = match serde_json::to_value(result) {
            Ok(v) => Outcome::Result(v),
            Err(e) => Outcome::Error(RpcError::internal(format!("cannot encode result: {e}"))),
        };
        Self { jsonrpc: VERSION.into(), id, outcome }
    }

    /// A failure.
    pub fn err(id: Value, error: RpcError) -> Self {
        Self { jsonrpc: VERSION.into(), id, outcome: Outcome::Error(error) }
    }

    /// The result, or the error.
    pub fn into_result(self) -> Result<Value, RpcError> {
        match self.outcome {
            Outcome::Result(v) => Ok(v),
            Outcome::Error(e) => Err(e),
        }
    }

    /// One line of JSON with its newline.
    pub fn to_line(&self) -> String {
        to_line(self)
    }
}

/// A server → client notification (no id, no response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// Notification name ([`crate::notes::names`]).
    pub method: String,
    /// Its payload.
    #[serde(default)]
    pub params: Value,
}

impl Notification {
    /// A notification with a payload.
    pub fn new(method: &str, params: impl Serialize) -> Self {
        Self {
            jsonrpc: VERSION.into(),
            method: method.into(),
            params: serde_json::to_value(params).unwrap_or(Value::Null),
        }
    }

    /// Decode the payload.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.params)
    }

    /// One line of JSON with its newline.
    pub fn to_line(&self) -> String {
        to_line(self)
    }
}

/// Anything a client reads from the daemon.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The answer to one of its requests.
    Response(Response),
    /// A pushed notification.
    Notification(Notification),
}

impl Incoming {
    /// Decode one line from the daemon.
    pub fn parse(line: &[u8]) -> Result<Self, serde_json::Error> {
        let v: Value = serde_json::from_slice(line)?;
        if v.get("method").is_some() {
            Ok(Self::Notification(serde_json::from_value(v)?))
        } else {
            Ok(Self::Response(serde_json::from_value(v)?))
        }
    }
}

fn to_line(v: &impl Serialize) -> String {
    // Our own types always serialise; the fallback keeps the framing intact if one ever doesn't.
    let mut s = serde_json::to_string(v).unwrap_or_else(|e| {
        format!(
            r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{},"message":"cannot encode message: {}"}}}}"#,
            codes::INTERNAL_ERROR,
            e.to_string().replace(['"', '\\'], "'")
        )
    });
    s.push('\n');
    s
}

/// Parse one request line (without its newline). Never panics. On failure, returns the error
/// response to send, carrying the request's id when it could be read, else `null`.
///
/// Accepted: a JSON object with `"jsonrpc": "2.0"`, a string `method`, optional `params`
/// (object or array) and optional `id` (string, number or null; absent = notification), and no
/// other member. Batches (arrays) are refused: a rig is driven one command at a time. A key
/// that appears twice in any object is `-32600`: JSON leaves its meaning open, and taking the
/// last one let `{"method":"run.status","method":"run.abort"}` abort a run that a reviewer of
/// the line would read as a status query.
pub fn parse_request(line: &[u8]) -> Result<Request, Box<Response>> {
    let fail = |id: Value, code: i32, msg: String| Err(Box::new(Response::err(id, RpcError::new(code, msg))));
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(e) => return fail(Value::Null, codes::PARSE_ERROR, format!("parse error: request is not UTF-8 ({e})")),
    };
    let v: Value = match serde_json::from_str::<Strict>(text) {
        Ok(Strict(v)) => v,
        // Our visitor's only own error is the duplicate key; serde_json files it under Data.
        Err(e) if e.classify() == serde_json::error::Category::Data => {
            return fail(Value::Null, codes::INVALID_REQUEST, format!("invalid request: {e}"))
        }
        Err(e) => return fail(Value::Null, codes::PARSE_ERROR, format!("parse error: {e}")),
    };
    let mut obj = match v {
        Value::Object(o) => o,
        Value::Array(_) => {
            return fail(
                Value::Null,
                codes::INVALID_REQUEST,
                "invalid request: batch requests are not supported".into(),
            )
        }
        other => {
            return fail(
                Value::Null,
                codes::INVALID_REQUEST,
                format!("invalid request: expected a JSON object, got {}", kind_of(&other)),
            )
        }
    };
    let id = match obj.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(other) => {
            return fail(
                Value::Null,
                codes::INVALID_REQUEST,
                format!("invalid request: `id` must be a string, number or null, got {}", kind_of(&other)),
            )
        }
    };
    let reply_id = id.clone().unwrap_or(Value::Null);
    match obj.get("jsonrpc") {
        Some(Value::String(s)) if s == VERSION => {}
        _ => {
            return fail(reply_id, codes::INVALID_REQUEST, "invalid request: `jsonrpc` must be \"2.0\"".into());
        }
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(other) => {
            return fail(
                reply_id,
                codes::INVALID_REQUEST,
                format!("invalid request: `method` must be a string, got {}", kind_of(&other)),
            )
        }
        None => return fail(reply_id, codes::INVALID_REQUEST, "invalid request: no `method`".into()),
    };
    let params = match obj.remove("params") {
        None => Value::Null,
        Some(p @ (Value::Object(_) | Value::Array(_))) => p,
        Some(other) => {
            return fail(
                reply_id,
                codes::INVALID_REQUEST,
                format!("invalid request: `params` must be an object or array, got {}", kind_of(&other)),
            )
        }
    };
    obj.remove("jsonrpc");
    if let Some(extra) = obj.keys().next() {
        return fail(
            reply_id,
            codes::INVALID_REQUEST,
            format!("invalid request: unknown member `{extra}` (a request has `jsonrpc`, `id`, `method`, `params`)"),
        );
    }
    Ok(Request { id, method, params })
}

/// A JSON value that refuses duplicate object keys at any depth (serde_json's `Value` keeps the
/// last). serde_json's recursion limit still applies: the visitor is driven by its deserializer.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict::deserialize(d).map(|s| s.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate key `{key}`")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> (Value, i32) {
        match parse_request(line.as_bytes()) {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(resp) => match resp.outcome {
                Outcome::Error(e) => (resp.id, e.code),
                Outcome::Result(_) => panic!("error response expected"),
            },
        }
    }

    #[test]
    fn a_valid_request_parses() {
        let r = parse_request(br#"{"jsonrpc":"2.0","id":7,"method":"run.status"}"#).expect("valid");
        assert_eq!(r.id, Some(Value::from(7)));
        assert_eq!(r.method, "run.status");
        assert_eq!(r.params, Value::Null);
        let n = parse_request(br#"{"jsonrpc":"2.0","method":"x","params":[1]}"#).expect("valid");
        assert_eq!(n.id, None);
    }

    #[test]
    fn each_malformed_input_has_its_code_and_keeps_the_id_when_it_can() {
        assert_eq!(code("{"), (Value::Null, codes::PARSE_ERROR));
        assert_eq!(code("[]"), (Value::Null, codes::INVALID_REQUEST));
        assert_eq!(code("42"), (Value::Null, codes::INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":{},"method":"a"}"#), (Value::Null, codes::INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"1.0","id":"a","method":"a"}"#), (Value::from("a"), codes::INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"2.0","id":3,"method":5}"#), (Value::from(3), codes::INVALID_REQUEST));
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":3,"method":"m","params":1}"#),
            (Value::from(3), codes::INVALID_REQUEST)
        );
        assert!(
            matches!(parse_request(&[0xff, 0xfe]), Err(r) if matches!(r.outcome, Outcome::Error(ref e) if e.code == codes::PARSE_ERROR))
        );
    }

    #[test]
    fn duplicate_keys_at_any_depth_and_unknown_members_are_invalid_requests() {
        // The issue's line: read as a status query, executed as an abort.
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":1,"method":"run.status","method":"run.abort"}"#),
            (Value::Null, codes::INVALID_REQUEST)
        );
        let r = parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":{"b":1,"b":2}}}"#);
        let e = r.expect_err("nested duplicate").into_result().expect_err("error");
        assert_eq!(e.code, codes::INVALID_REQUEST);
        assert!(e.message.contains("duplicate key `b`"), "{}", e.message);
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","id":2,"method":"m","extra":1}"#),
            (Value::from(2), codes::INVALID_REQUEST)
        );
        // Equal keys in different objects are fine.
        let ok = parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":{"a":1},"b":{"a":2}}}"#);
        assert_eq!(ok.expect("no duplicate").params["b"]["a"], 2);
    }

    #[test]
    fn a_mistyped_parameter_is_named() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct P {
            seed: Option<u64>,
        }
        let r = parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"seed":"x"}}"#).expect("valid");
        let e = r.params::<P>().expect_err("mistyped");
        assert_eq!(e.code, codes::INVALID_PARAMS);
        assert!(e.message.starts_with("invalid params: `seed`: invalid type: string"), "{}", e.message);
        let r = parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"sed":1}}"#).expect("valid");
        assert!(r.params::<P>().expect_err("unknown").message.contains("unknown field `sed`"));
        let r = parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"m","params":[1]}"#).expect("valid");
        assert!(r.params::<P>().expect_err("array").message.contains("must be an object"));
    }

    #[test]
    fn responses_round_trip_through_incoming() {
        let line = Response::err(Value::from(1), RpcError::new(codes::NO_RUN, "no run")).to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        match Incoming::parse(line.trim_end().as_bytes()).expect("parses") {
            Incoming::Response(r) => assert_eq!(r.into_result().map_err(|e| e.code), Err(codes::NO_RUN)),
            Incoming::Notification(_) => panic!("a response"),
        }
        let n = Notification::new("progress", serde_json::json!({"a": 1})).to_line();
        assert!(matches!(Incoming::parse(n.trim_end().as_bytes()), Ok(Incoming::Notification(_))));
    }
}
