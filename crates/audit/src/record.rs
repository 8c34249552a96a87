//! The audit record: one schema, versioned, for every kind of event.
//!
//! Every field is documented in `docs/audit.md`; a record is one JSON object
//! on one line. Fields that do not apply to a kind, or whose value is not
//! known, are left out (an absent field reads as "unknown"). The chain
//! fields ([`Record::chain`], [`Record::seq`], [`Record::prev`]) are set by
//! the writer when the record is sealed into its chain (see
//! [`crate::chain`]), never by the code that reports the event.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// The schema version this build writes (field `v`).
pub const SCHEMA_VERSION: u32 = 1;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A `tools/call` that was forwarded: its decision, outcome and latency
    /// (for a durable write, the intent and then the outcome, see [`Phase`]).
    ToolCall,
    /// A `tools/call` a layer answered itself (policy, limits, audit...).
    Refusal,
    /// A mutating call previewed without being sent.
    DryRun,
    /// A call held for a human.
    ApprovalRequested,
    /// A held call approved or rejected.
    ApprovalDecided,
    /// A held call nobody decided in time.
    ApprovalExpired,
    /// A route's policy came into force (at start or on reload).
    PolicyLoaded,
    /// An MCP session was opened through Warden.
    SessionStarted,
    /// An MCP session ended (closed by the agent, idle, evicted).
    SessionEnded,
    /// A call cap, rate or loop detector refused a call.
    LimitTripped,
    /// A circuit breaker opened in front of an upstream.
    BreakerOpened,
    /// A circuit breaker closed again.
    BreakerClosed,
    /// An audit sink stopped taking records.
    SinkFailed,
    /// An audit sink took records again.
    SinkRecovered,
    /// A signed statement of the chain's head (see [`crate::chain`]).
    Checkpoint,
}

/// Which half of a tool call record this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Written (durably, for writes) before the call is forwarded.
    Intent,
    /// What became of it; `intent` names the intent record.
    Outcome,
}

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalField {
    /// The calling agent's identity (`anonymous` until authentication).
    pub agent: String,
    /// The user on whose behalf the agent acts, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The model behind a call, as the agent declared it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelField {
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Model version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The upstream's response to a call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultField {
    /// `result` (a result, `isError` or not), `error` (a JSON-RPC error) or
    /// `missing` (no response came).
    pub answer: AnswerKind,
    /// The JSON-RPC error code, for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Why no response came, for `missing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<String>,
    /// Size of the response message in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// SHA-256 of the response message's JSON text, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The response's `result` (or `error`) itself, when at most the
    /// configured size (after redaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<RawValue>>,
}

impl PartialEq for ResultField {
    fn eq(&self, other: &ResultField) -> bool {
        self.answer == other.answer
            && self.code == other.code
            && self.missing == other.missing
            && self.size == other.size
            && self.digest == other.digest
            && self.body.as_ref().map(|b| b.get()) == other.body.as_ref().map(|b| b.get())
    }
}

/// What kind of response a call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// A result (see `is_error`).
    Result,
    /// A JSON-RPC error.
    Error,
    /// No response.
    Missing,
}

/// An approval the record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalField {
    /// The approval's id.
    pub id: String,
    /// Who decided it, when decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
}

/// One redaction applied to the record before it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedactionField {
    /// Where: a JSON Pointer, prefixed by `/arguments` or `/result`.
    pub path: String,
    /// Which rule: `drop`, `mask`, `hash`, or `detector:<name>`.
    pub rule: String,
}

/// One audit record (see the module docs and `docs/audit.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub v: u32,
    /// Event id: a UUIDv7, so ids sort by time.
    pub id: Uuid,
    /// When Warden saw the event (RFC 3339, UTC, microseconds), by
    /// Warden's clock, never the client's.
    pub time: String,
    /// The Warden instance that wrote the record.
    pub instance: Arc<str>,
    /// What happened.
    pub kind: Kind,
    /// For tool calls: intent or outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// For an outcome: the id of its intent record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Uuid>,
    /// The route (listener path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Arc<str>>,
    /// The upstream (its URL without query, or its command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Arc<str>>,
    /// Warden's MCP session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_session: Option<Arc<str>>,
    /// The agent session (see `docs/sessions.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_session: Option<Arc<str>>,
    /// Who made the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<PrincipalField>,
    /// The model, as the agent declared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelField>,
    /// The JSON-RPC request id, as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Arc<str>>,
    /// The tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The call's arguments (after redaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Box<RawValue>>,
    /// The upstream's response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ResultField>,
    /// The tool result's `isError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// The decision: `allow`, `deny`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Cow<'static, str>>,
    /// The decision's stable reason code, e.g. `not-read-only`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'static, str>>,
    /// The tier the call ran at (`read`, `write`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Cow<'static, str>>,
    /// SHA-256 of the policy in force, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<Arc<str>>,
    /// The approval the record belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalField>,
    /// The conversation reference the agent sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    /// The agent's rationale for the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// The W3C trace id (32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// From forwarding to the response, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Redactions applied to `arguments` and `result`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<RedactionField>,
    /// Kind-specific details (a limit's name and count, a sink's error, a
    /// checkpoint's signature...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// The chain the record is sealed into (the instance id).
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub chain: Arc<str>,
    /// Position in the chain, from 1.
    #[serde(default)]
    pub seq: u64,
    /// SHA-256 (hex) of the previous record's line; 64 zeros for the first.
    #[serde(default, skip_serializing_if = "str::is_empty")]
    pub prev: Arc<str>,
}

// === impl Record ===

impl Record {
    /// A record of `kind` by `instance`, stamped now with a fresh id.
    pub fn new(kind: Kind, instance: impl Into<Arc<str>>) -> Record {
        Record::at(kind, instance, SystemTime::now())
    }

    /// A record of `kind` by `instance`, stamped `time`.
    pub fn at(kind: Kind, instance: impl Into<Arc<str>>, time: SystemTime) -> Record {
        Record {
            v: SCHEMA_VERSION,
            id: Uuid::now_v7(),
            time: timestamp(time),
            instance: instance.into(),
            kind,
            phase: None,
            intent: None,
            route: None,
            upstream: None,
            mcp_session: None,
            agent_session: None,
            principal: None,
            model: None,
            request_id: None,
            tool: None,
            arguments: None,
            result: None,
            is_error: None,
            decision: None,
            reason: None,
            tier: None,
            policy_hash: None,
            approval: None,
            conversation: None,
            rationale: None,
            trace_id: None,
            latency_us: None,
            redacted: Vec::new(),
            detail: None,
            chain: Arc::from(""),
            seq: 0,
            prev: Arc::from(""),
        }
    }
}

/// `time` as the records write it: RFC 3339, UTC, microseconds (fixed
/// width, so timestamps sort as text).
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_left_out_and_the_record_round_trips() {
        let mut record = Record::new(Kind::ToolCall, "warden-1");
        record.tool = Some("search".into());
        record.arguments = Some(RawValue::from_string(r#"{"q":"x"}"#.into()).expect("raw"));
        let line = serde_json::to_string(&record).expect("serialize");
        assert!(!line.contains("model"), "{line}");
        assert!(line.contains(r#""arguments":{"q":"x"}"#), "{line}");
        assert!(line.contains(r#""kind":"tool_call""#), "{line}");
        let back: Record = serde_json::from_str(&line).expect("parse");
        assert_eq!(serde_json::to_string(&back).expect("serialize"), line);
    }

    #[test]
    fn ids_and_timestamps_sort_by_time() {
        let a = Record::new(Kind::PolicyLoaded, "w");
        let b = Record::new(Kind::PolicyLoaded, "w");
        assert!(a.id < b.id);
        assert!(a.time <= b.time);
        assert_eq!(
            a.time.len(),
            "2026-12-01T11:50:11.123456Z".len(),
            "{}",
            a.time
        );
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
    }
}
