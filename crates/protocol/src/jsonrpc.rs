//! Strict JSON-RPC 2.0 envelope parsing.
//!
//! Warden decides on exactly the call the upstream will execute, so it must
//! never read a message differently from the upstream's parser. The rules:
//!
//! - the body is one JSON text (no trailing data, valid UTF-8, no lone
//!   surrogates), an object or a non-empty array of objects;
//! - no object key appears twice, and no key differs from an envelope key
//!   (`jsonrpc`, `id`, `method`, `params`, `result`, `error`) only by case,
//!   because parsers disagree on which duplicate wins and some (Go's
//!   `encoding/json`) match keys case-insensitively;
//! - a `tools/call` is additionally checked all the way down its `params`:
//!   no duplicate key at any depth, `name` a string, `arguments` an object,
//!   no case-variant of `name`, `arguments` or `_meta`, and it must be a
//!   request (a `tools/call` notification would run a tool with no reply);
//! - a method name that differs from `tools/call` only by case or surrounding
//!   white space is rejected rather than forwarded to a lenient upstream.
//!
//! Everything else in the message stays as the bytes the agent sent:
//! [`Envelope::raw`] is a zero-copy slice of the body.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::mcp;

/// The envelope keys a JSON-RPC message may carry.
const ENVELOPE_KEYS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];
/// The `tools/call` parameter keys Warden reads or must not be confused about.
const TOOL_CALL_KEYS: [&str; 4] = ["name", "arguments", "_meta", "task"];
/// Past this many keys, duplicate detection switches from a scan to a set.
const SCAN_LIMIT: usize = 16;

/// JSON-RPC error code: the body is not valid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC error code: the JSON is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC error code: the method does not exist.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// JSON-RPC error code: invalid method parameters.
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC error code: internal error.
pub const INTERNAL_ERROR: i64 = -32603;

/// Why a body was not accepted as JSON-RPC.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The body is not one well-formed JSON text.
    #[error("malformed JSON: {detail}")]
    Syntax {
        /// The parser's description, with its position.
        detail: String,
    },
    /// The JSON is well-formed but not a JSON-RPC 2.0 message or batch.
    #[error("not a valid JSON-RPC 2.0 message: {reason}")]
    NotJsonRpc {
        /// What is wrong with the envelope.
        reason: Cow<'static, str>,
    },
    /// An object repeats a key; parsers disagree on which copy wins.
    #[error("ambiguous JSON: key \"{key}\" appears twice in one object")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// A key differs from a key Warden reads only by letter case.
    #[error("ambiguous JSON: key \"{key}\" differs from \"{expected}\" only by case")]
    CaseVariantKey {
        /// The key as sent.
        key: String,
        /// The key it collides with.
        expected: String,
    },
    /// The batch array is empty.
    #[error("empty batch")]
    EmptyBatch,
}

impl ParseError {
    /// The JSON-RPC error code this failure is reported with.
    pub fn code(&self) -> i64 {
        match self {
            ParseError::Syntax { .. } => PARSE_ERROR,
            ParseError::NotJsonRpc { .. }
            | ParseError::DuplicateKey { .. }
            | ParseError::CaseVariantKey { .. }
            | ParseError::EmptyBatch => INVALID_REQUEST,
        }
    }

    fn from_serde(err: serde_json::Error) -> ParseError {
        // Our visitors smuggle typed failures through serde's string errors.
        let text = err.to_string();
        if let Some(rest) = text.strip_prefix(DUPLICATE_TAG) {
            let key = rest.split(DETAIL_END).next().unwrap_or_default().to_owned();
            return ParseError::DuplicateKey { key };
        }
        if let Some(rest) = text.strip_prefix(CASE_TAG) {
            let mut parts = rest.split(DETAIL_END);
            let key = parts.next().unwrap_or_default().to_owned();
            let expected = parts.next().unwrap_or_default().to_owned();
            return ParseError::CaseVariantKey { key, expected };
        }
        if let Some(rest) = text.strip_prefix(ENVELOPE_TAG) {
            let reason = rest.split(DETAIL_END).next().unwrap_or_default().to_owned();
            return ParseError::NotJsonRpc {
                reason: reason.into(),
            };
        }
        if let Some(rest) = text.strip_prefix(SYNTAX_TAG) {
            return ParseError::Syntax {
                detail: rest.split(DETAIL_END).next().unwrap_or_default().to_owned(),
            };
        }
        if err.is_data() {
            return ParseError::NotJsonRpc {
                reason: text.into(),
            };
        }
        ParseError::Syntax { detail: text }
    }
}

const DUPLICATE_TAG: &str = "\u{1}dup:";
const CASE_TAG: &str = "\u{1}case:";
const ENVELOPE_TAG: &str = "\u{1}env:";
const SYNTAX_TAG: &str = "\u{1}syntax:";
const DETAIL_END: char = '\u{2}';
const WRONG_VERSION: &str = "\"jsonrpc\" must be \"2.0\"";
const NOT_AN_OBJECT: &str = "a message must be a JSON object";
const RESULT_AND_ERROR: &str = "a message has both \"result\" and \"error\"";
const NO_METHOD: &str = "a message needs \"method\", \"result\" or \"error\"";
const METHOD_AND_RESULT: &str = "a request has both \"method\" and \"result\"/\"error\"";
const BAD_ID: &str = "\"id\" must be a string or an integer";
const NO_ID: &str = "a response needs an \"id\"";
const METHOD_NOT_STRING: &str = "\"method\" must be a string";
const TOOL_CALL_NOTIFICATION: &str = "tools/call must be a request with an \"id\"";
const LOOKALIKE_METHOD: &str = "\"method\" differs from \"tools/call\" only by case or white space";
const ARGUMENTS_NOT_OBJECT: &str = "tools/call \"arguments\" must be an object";
const NO_PARAMS: &str = "tools/call needs \"params\" with a string \"name\"";

/// What kind of JSON-RPC message an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Has `method` and `id`: expects a response.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`.
    Response,
}

/// The parameters of a `tools/call` as Warden read them.
#[derive(Debug, Clone)]
pub struct ToolCallParams {
    /// The tool to run.
    pub name: String,
    /// The arguments object, exactly as sent (`None` when absent).
    pub arguments: Option<Box<RawValue>>,
    /// `params._meta`, exactly as sent (`None` when absent): the call's
    /// own facts (progress token, trace context, `warden/…` keys).
    pub meta: Option<Box<RawValue>>,
    /// `params.task`, exactly as sent (`None` when absent): the call asks
    /// to run as a task (MCP 2025-11-25 tasks).
    pub task: Option<Box<RawValue>>,
}

/// One JSON-RPC message: its envelope, read strictly, and its exact bytes.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Request, notification or response.
    pub kind: MessageKind,
    /// The `id`, as its JSON text (`1`, `"abc"`), when present.
    pub id: Option<Box<RawValue>>,
    /// The `method`, for requests and notifications.
    pub method: Option<String>,
    /// For `tools/call` requests: the tool name and arguments.
    pub tool_call: Option<ToolCallParams>,
    /// The message exactly as received (a slice of the body).
    pub raw: Bytes,
}

impl Envelope {
    /// The `id` as JSON text, or `null` when the message has none.
    pub fn id_json(&self) -> &str {
        self.id.as_deref().map_or("null", RawValue::get)
    }

    /// Whether this is the `initialize` request.
    pub fn is_initialize(&self) -> bool {
        self.kind == MessageKind::Request && self.method.as_deref() == Some(mcp::METHOD_INITIALIZE)
    }
}

/// A parsed request body: one message or a batch.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A single message.
    Single(Envelope),
    /// A JSON-RPC batch (allowed only by MCP 2025-03-26).
    Batch(Vec<Envelope>),
}

impl Incoming {
    /// Parse a body strictly. See the module docs for what "strictly" means.
    pub fn parse(body: &Bytes) -> Result<Incoming, ParseError> {
        let first = body
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .copied();
        if first == Some(b'[') {
            let items: Vec<&RawValue> =
                serde_json::from_slice(body).map_err(ParseError::from_serde)?;
            if items.is_empty() {
                return Err(ParseError::EmptyBatch);
            }
            let envelopes = items
                .into_iter()
                .map(|item| Envelope::parse_within(body, item))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Incoming::Batch(envelopes))
        } else {
            let whole: &RawValue = serde_json::from_slice(body).map_err(ParseError::from_serde)?;
            Envelope::parse_within(body, whole).map(Incoming::Single)
        }
    }

    /// The messages, whether one or a batch.
    pub fn messages(&self) -> &[Envelope] {
        match self {
            Incoming::Single(one) => std::slice::from_ref(one),
            Incoming::Batch(many) => many,
        }
    }
}

impl Envelope {
    /// Parse one message that is not part of a larger body.
    pub fn parse(message: &Bytes) -> Result<Envelope, ParseError> {
        match Incoming::parse(message)? {
            Incoming::Single(one) => Ok(one),
            Incoming::Batch(_) => Err(envelope_error(NOT_AN_OBJECT)),
        }
    }

    fn parse_within(body: &Bytes, item: &RawValue) -> Result<Envelope, ParseError> {
        let text = item.get();
        let raw = body.slice_ref(text.as_bytes());
        let fields: RawEnvelope<'_> = serde_json::from_str(text).map_err(ParseError::from_serde)?;
        let kind = match (
            &fields.method,
            &fields.id,
            fields.result.is_some() || fields.error.is_some(),
        ) {
            (Some(_), _, true) => return Err(envelope_error(METHOD_AND_RESULT)),
            (Some(_), Some(_), false) => MessageKind::Request,
            (Some(_), None, false) => MessageKind::Notification,
            (None, Some(_), true) => MessageKind::Response,
            (None, None, true) => return Err(envelope_error(NO_ID)),
            (None, _, false) => return Err(envelope_error(NO_METHOD)),
        };
        if fields.result.is_some() && fields.error.is_some() {
            return Err(envelope_error(RESULT_AND_ERROR));
        }
        if let Some(id) = fields.id {
            validate_id(id, kind)?;
        }
        let method = fields.method.map(Cow::into_owned);
        let tool_call = match method.as_deref() {
            Some(mcp::METHOD_TOOLS_CALL) => Some(parse_tool_call(kind, fields.params)?),
            Some(other) if looks_like_tools_call(other) => {
                return Err(envelope_error(LOOKALIKE_METHOD));
            }
            _ => None,
        };
        Ok(Envelope {
            kind,
            id: fields.id.map(|id| id.to_owned()),
            method,
            tool_call,
            raw,
        })
    }
}

/// Whether two ids (JSON text) are the same value: `"a"` and `"\u0061"`
/// are; `1` and `"1"` are not.
pub fn same_id(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

fn envelope_error(reason: &'static str) -> ParseError {
    ParseError::NotJsonRpc {
        reason: reason.into(),
    }
}

fn envelope_custom<E: de::Error>(reason: &str) -> E {
    E::custom(format!("{ENVELOPE_TAG}{reason}{DETAIL_END}"))
}

fn looks_like_tools_call(method: &str) -> bool {
    method.trim().eq_ignore_ascii_case(mcp::METHOD_TOOLS_CALL)
}

fn validate_id(id: &RawValue, kind: MessageKind) -> Result<(), ParseError> {
    let text = id.get();
    let ok = match text.as_bytes().first() {
        Some(b'"') => true,
        Some(b'-' | b'0'..=b'9') => !text.contains(['.', 'e', 'E']),
        // A response to a request Warden could not parse may carry a null id.
        Some(b'n') => kind == MessageKind::Response,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(envelope_error(BAD_ID))
    }
}

fn parse_tool_call(
    kind: MessageKind,
    params: Option<&RawValue>,
) -> Result<ToolCallParams, ParseError> {
    if kind != MessageKind::Request {
        return Err(envelope_error(TOOL_CALL_NOTIFICATION));
    }
    let params = params.ok_or(envelope_error(NO_PARAMS))?;
    let fields: RawToolCall<'_> =
        serde_json::from_str(params.get()).map_err(ParseError::from_serde)?;
    let name = fields.name.ok_or(envelope_error(NO_PARAMS))?;
    Ok(ToolCallParams {
        name: name.into_owned(),
        arguments: fields.arguments.map(|a| a.to_owned()),
        meta: fields.meta.map(|m| m.to_owned()),
        task: fields.task.map(|t| t.to_owned()),
    })
}

// === impl RawEnvelope ===

/// The envelope members, borrowed from the body.
#[derive(Default)]
struct RawEnvelope<'a> {
    id: Option<&'a RawValue>,
    method: Option<Cow<'a, str>>,
    params: Option<&'a RawValue>,
    result: Option<&'a RawValue>,
    error: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawEnvelope<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = RawEnvelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-RPC message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = RawEnvelope::default();
        let mut seen = KeySet::default();
        let mut version_ok = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            seen.insert::<A::Error>(key.clone())?;
            match key.as_ref() {
                "jsonrpc" => {
                    let version: Cow<'de, str> = map
                        .next_value()
                        .map_err(|_| envelope_custom(WRONG_VERSION))?;
                    version_ok = version == "2.0";
                }
                "id" => out.id = Some(map.next_value()?),
                "method" => {
                    out.method = Some(
                        map.next_value()
                            .map_err(|_| envelope_custom(METHOD_NOT_STRING))?,
                    )
                }
                "params" => out.params = Some(map.next_value()?),
                "result" => out.result = Some(map.next_value()?),
                "error" => out.error = Some(map.next_value()?),
                other => {
                    reject_case_variant::<A::Error>(other, &ENVELOPE_KEYS)?;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !version_ok {
            return Err(envelope_custom(WRONG_VERSION));
        }
        Ok(out)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
        Err(envelope_custom(NOT_AN_OBJECT))
    }

    fn visit_str<E: de::Error>(self, _v: &str) -> Result<Self::Value, E> {
        Err(envelope_custom(NOT_AN_OBJECT))
    }

    fn visit_i64<E: de::Error>(self, _v: i64) -> Result<Self::Value, E> {
        Err(envelope_custom(NOT_AN_OBJECT))
    }

    fn visit_u64<E: de::Error>(self, _v: u64) -> Result<Self::Value, E> {
        Err(envelope_custom(NOT_AN_OBJECT))
    }

    fn visit_f64<E: de::Error>(self, _v: f64) -> Result<Self::Value, E> {
        Err(envelope_custom(NOT_AN_OBJECT))
    }

    fn visit_bool<E: de::Error>(self, _v: bool) -> Result<Self::Value, E> {
        Err(envelope_custom(NOT_AN_OBJECT))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(envelope_custom(NOT_AN_OBJECT))
    }
}

// === impl RawToolCall ===

/// `tools/call` params, checked for ambiguity at every depth.
#[derive(Default)]
struct RawToolCall<'a> {
    name: Option<Cow<'a, str>>,
    arguments: Option<&'a RawValue>,
    meta: Option<&'a RawValue>,
    task: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawToolCall<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ToolCallVisitor)
    }
}

struct ToolCallVisitor;

impl<'de> Visitor<'de> for ToolCallVisitor {
    type Value = RawToolCall<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("tools/call params object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _seq: A) -> Result<Self::Value, A::Error> {
        Err(envelope_custom(NO_PARAMS))
    }

    fn visit_str<E: de::Error>(self, _v: &str) -> Result<Self::Value, E> {
        Err(envelope_custom(NO_PARAMS))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = RawToolCall::default();
        let mut seen = KeySet::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            seen.insert::<A::Error>(key.clone())?;
            match key.as_ref() {
                "name" => out.name = Some(map.next_value()?),
                "arguments" => {
                    let raw: &'de RawValue = map.next_value()?;
                    if !raw.get().starts_with('{') {
                        return Err(envelope_custom(ARGUMENTS_NOT_OBJECT));
                    }
                    check_unambiguous::<A::Error>(raw)?;
                    out.arguments = Some(raw);
                }
                "_meta" => {
                    let raw: &'de RawValue = map.next_value()?;
                    check_unambiguous::<A::Error>(raw)?;
                    out.meta = Some(raw);
                }
                "task" => {
                    let raw: &'de RawValue = map.next_value()?;
                    check_unambiguous::<A::Error>(raw)?;
                    out.task = Some(raw);
                }
                other => {
                    reject_case_variant::<A::Error>(other, &TOOL_CALL_KEYS)?;
                    map.next_value_seed(Unambiguous)?;
                }
            }
        }
        Ok(out)
    }
}

/// Check that a JSON value has no duplicate key at any depth.
fn check_unambiguous<E: de::Error>(raw: &RawValue) -> Result<(), E> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    Unambiguous.deserialize(&mut de).map_err(|err| {
        if err.is_syntax() || err.is_eof() {
            E::custom(format!("{SYNTAX_TAG}{err}{DETAIL_END}"))
        } else {
            E::custom(err)
        }
    })
}

/// A seed that walks any JSON value and fails on a repeated object key.
#[derive(Clone, Copy)]
struct Unambiguous;

impl<'de> DeserializeSeed<'de> for Unambiguous {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Unambiguous {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unambiguous)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = KeySet::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            seen.insert::<A::Error>(key.clone())?;
            map.next_value_seed(Unambiguous)?;
        }
        Ok(())
    }
}

fn reject_case_variant<E: de::Error>(key: &str, known: &[&'static str]) -> Result<(), E> {
    let folded = fold_key(key.trim());
    match known.iter().find(|k| **k != key && **k == folded) {
        Some(expected) => Err(case_variant(key, expected)),
        None => Ok(()),
    }
}

fn case_variant<E: de::Error>(key: &str, expected: &str) -> E {
    E::custom(format!("{CASE_TAG}{key}{DETAIL_END}{expected}{DETAIL_END}"))
}

/// A key as a case-insensitive parser compares it: ASCII lowercased, plus
/// the four non-ASCII letters whose simple case folding reaches ASCII (Go's
/// `encoding/json` matches `ſ` to `s`, `K` to `k`, and `ı`/`İ` to `i`).
fn fold_key(key: &str) -> Cow<'_, str> {
    if key.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        return Cow::Borrowed(key);
    }
    Cow::Owned(
        key.chars()
            .map(|c| match c {
                '\u{17f}' => 's',
                '\u{212a}' => 'k',
                '\u{131}' | '\u{130}' => 'i',
                other => other.to_ascii_lowercase(),
            })
            .collect(),
    )
}

/// The keys seen so far in one object, to refuse a repeated key and two
/// keys that a case-insensitive parser would take for the same one.
#[derive(Default)]
struct KeySet<'a> {
    keys: Vec<(Cow<'a, str>, String)>,
    set: Option<std::collections::HashMap<String, String>>,
}

impl<'a> KeySet<'a> {
    fn insert<E: de::Error>(&mut self, key: Cow<'a, str>) -> Result<(), E> {
        let folded = fold_key(&key).into_owned();
        let earlier = match &self.set {
            Some(set) => set.get(&folded).map(String::as_str),
            None => self
                .keys
                .iter()
                .find(|(_, f)| *f == folded)
                .map(|(k, _)| k.as_ref()),
        };
        match earlier {
            Some(earlier) if earlier == key.as_ref() => {
                return Err(E::custom(format!("{DUPLICATE_TAG}{key}{DETAIL_END}")));
            }
            Some(earlier) => return Err(case_variant(&key, earlier)),
            None => {}
        }
        match &mut self.set {
            Some(set) => {
                set.insert(folded, key.into_owned());
            }
            None if self.keys.len() < SCAN_LIMIT => self.keys.push((key, folded)),
            None => {
                let mut set: std::collections::HashMap<String, String> = self
                    .keys
                    .drain(..)
                    .map(|(k, f)| (f, k.into_owned()))
                    .collect();
                set.insert(folded, key.into_owned());
                self.set = Some(set);
            }
        }
        Ok(())
    }
}

// === responses ===

/// A JSON-RPC error response, as bytes.
pub fn error_response(id_json: &str, code: i64, message: &str) -> Bytes {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".to_owned());
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id_json},"error":{{"code":{code},"message":{message}}}}}"#
    ))
}

/// A JSON-RPC success response wrapping an already-encoded result, as bytes.
pub fn result_response(id_json: &str, result_json: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id_json},"result":{result_json}}}"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Incoming, ParseError> {
        Incoming::parse(&Bytes::copy_from_slice(text.as_bytes()))
    }

    fn single(text: &str) -> Envelope {
        match parse(text) {
            Ok(Incoming::Single(one)) => one,
            other => panic!("expected a single message, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_request_and_keeps_its_bytes() {
        let text = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"m":"hi"},"extra":[1,2]}}"#;
        let env = single(text);
        assert_eq!(env.kind, MessageKind::Request);
        assert_eq!(env.id_json(), "7");
        assert_eq!(env.raw.as_ref(), text.as_bytes());
        let call = env.tool_call.expect("a tool call");
        assert_eq!(call.name, "echo");
        assert_eq!(
            call.arguments.map(|a| a.get().to_owned()).as_deref(),
            Some(r#"{"m":"hi"}"#)
        );
    }

    #[test]
    fn tells_notifications_and_responses_apart() {
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).kind,
            MessageKind::Notification
        );
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","id":"s-1","result":{}}"#).kind,
            MessageKind::Response
        );
        assert_eq!(
            single(r#"{"jsonrpc":"2.0","id":"s-1","error":{"code":1,"message":"x"}}"#).kind,
            MessageKind::Response
        );
    }

    #[test]
    fn escaped_names_are_read_as_the_upstream_reads_them() {
        let env = single(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"n\u0061me":"del\u0065te"}}"#,
        );
        assert_eq!(env.tool_call.expect("a tool call").name, "delete");
    }

    #[test]
    fn batches_keep_each_message_bytes() {
        let text = r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}, {"jsonrpc":"2.0","method":"notifications/x"}]"#;
        match parse(text) {
            Ok(Incoming::Batch(items)) => {
                assert_eq!(items.len(), 2);
                assert_eq!(
                    items[0].raw.as_ref(),
                    br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#
                );
                assert_eq!(items[1].kind, MessageKind::Notification);
            }
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    fn rejected(text: &str) -> ParseError {
        match parse(text) {
            Err(err) => err,
            Ok(ok) => panic!("expected {text} to be rejected, got {ok:?}"),
        }
    }

    #[test]
    fn malformed_json_is_a_parse_error() {
        for text in [
            "",
            "{",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"} trailing"#,
            "\u{feff}{}",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":"\ud800"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\udc00"}}"#,
        ] {
            let err = rejected(text);
            assert_eq!(err.code(), PARSE_ERROR, "{text}: {err}");
        }
    }

    #[test]
    fn non_json_rpc_is_an_invalid_request() {
        for (text, want) in [
            ("42", "a message must be a JSON object"),
            (r#"{"id":1,"method":"ping"}"#, "\"jsonrpc\" must be \"2.0\""),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#,
                "\"jsonrpc\" must be \"2.0\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1}"#,
                "a message needs \"method\", \"result\" or \"error\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                "\"id\" must be a string or an integer",
            ),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                "\"id\" must be a string or an integer",
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                "\"id\" must be a string or an integer",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"x","result":{}}"#,
                "a request has both \"method\" and \"result\"/\"error\"",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":7}"#,
                "\"method\" must be a string",
            ),
        ] {
            match rejected(text) {
                ParseError::NotJsonRpc { reason } => assert_eq!(reason, want, "{text}"),
                other => panic!("{text}: expected NotJsonRpc, got {other:?}"),
            }
        }
        assert!(matches!(rejected("[]"), ParseError::EmptyBatch));
    }

    #[test]
    fn duplicate_envelope_keys_are_refused() {
        let err = rejected(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}"#,
        );
        assert!(
            matches!(&err, ParseError::DuplicateKey { key } if key == "method"),
            "{err:?}"
        );
        assert_eq!(err.code(), INVALID_REQUEST);
    }

    #[test]
    fn duplicate_tool_names_are_refused() {
        let err = rejected(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"delete"}}"#,
        );
        assert!(
            matches!(&err, ParseError::DuplicateKey { key } if key == "name"),
            "{err:?}"
        );
    }

    #[test]
    fn escaped_duplicate_keys_are_refused() {
        let err = rejected(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","n\u0061me":"delete"}}"#,
        );
        assert!(
            matches!(&err, ParseError::DuplicateKey { key } if key == "name"),
            "{err:?}"
        );
    }

    #[test]
    fn duplicate_argument_keys_at_any_depth_are_refused() {
        let err = rejected(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","arguments":{"to":{"amount":1,"amount":100000}}}}"#,
        );
        assert!(
            matches!(&err, ParseError::DuplicateKey { key } if key == "amount"),
            "{err:?}"
        );
        let err = rejected(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"pay","_meta":{"a":1,"a":2}}}"#,
        );
        assert!(
            matches!(&err, ParseError::DuplicateKey { key } if key == "a"),
            "{err:?}"
        );
    }

    #[test]
    fn duplicates_are_found_in_large_objects_too() {
        let keys: Vec<String> = (0..40).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let args = format!("{{{},\"k3\":99}}", keys.join(","));
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{args}}}}}"#
        );
        assert!(matches!(rejected(&text), ParseError::DuplicateKey { key } if key == "k3"));
        let unique = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x","arguments":{{{}}}}}}}"#,
            keys.join(",")
        );
        assert!(parse(&unique).is_ok());
    }

    #[test]
    fn case_variant_keys_are_refused() {
        for (text, want) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call"}"#,
                "method",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","Name":"delete"}}"#,
                "name",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","ARGUMENTS":{}}}"#,
                "arguments",
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","PARAMS":{"name":"delete"},"params":{"name":"search"}}"#,
                "params",
            ),
        ] {
            match rejected(text) {
                ParseError::CaseVariantKey { expected, key } => {
                    assert_eq!(fold_key(&expected), want, "{text}: {key} vs {expected}")
                }
                other => panic!("{text}: expected CaseVariantKey, got {other:?}"),
            }
        }
    }

    #[test]
    fn tool_call_notifications_and_lookalike_methods_are_refused() {
        assert!(matches!(
            rejected(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete"}}"#),
            ParseError::NotJsonRpc { .. }
        ));
        for method in ["Tools/Call", "tools/call ", " TOOLS/CALL"] {
            let text = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"name":"delete"}}}}"#
            );
            assert!(
                matches!(rejected(&text), ParseError::NotJsonRpc { .. }),
                "{method}"
            );
        }
    }

    #[test]
    fn tool_calls_need_a_string_name_and_object_arguments() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["delete"]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":[1]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":"delete"}"#,
        ] {
            let err = rejected(text);
            assert_eq!(err.code(), INVALID_REQUEST, "{text}: {err}");
        }
    }

    #[test]
    fn error_response_escapes_its_message() {
        let body = error_response("3", INVALID_REQUEST, "bad \"quote\"");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(value["error"]["message"], "bad \"quote\"");
        assert_eq!(value["id"], 3);
    }
}
