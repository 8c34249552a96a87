//! What a call says about itself and who makes it: the facts the audit
//! trail records and later layers (limits, approvals) decide on.
//!
//! [`CallMeta`] is read once per `tools/call`, whatever the transport, from
//! the call's own `params._meta` first and from request headers second
//! (an agent runtime may set headers where it cannot touch the message):
//!
//! | fact | `params._meta` key | request header |
//! |---|---|---|
//! | model name | `warden/model` | `Warden-Model` |
//! | model version | `warden/modelVersion` | `Warden-Model-Version` |
//! | conversation reference | `warden/conversation` | `Warden-Conversation` |
//! | the agent's rationale | `warden/rationale` | `Warden-Rationale` |
//! | agent session | `warden/agentSession` | `Warden-Agent-Session` (see [`crate::agent_session`]) |
//! | progress token | `progressToken` | — |
//! | W3C trace context | `traceparent`, `tracestate`, `baggage` | `traceparent`, `tracestate`, `baggage` |
//!
//! A fact that is absent, not a string, or not valid is unknown (`None`),
//! never guessed. Text facts are cut at [`MAX_FACT_LEN`] bytes (the
//! rationale at [`MAX_RATIONALE_LEN`]) on a character boundary, so a client
//! cannot make every record it leaves arbitrarily large. A `traceparent`
//! must have the W3C shape (`00-<32 hex>-<16 hex>-<2 hex>`, not all zeros).

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Longest model name, version, conversation reference or trace header kept.
pub const MAX_FACT_LEN: usize = 256;
/// Longest rationale kept.
pub const MAX_RATIONALE_LEN: usize = 4096;

/// The `_meta` keys (and headers) each fact is read from.
pub mod keys {
    /// `_meta` key: the model name.
    pub const MODEL: &str = "warden/model";
    /// `_meta` key: the model version.
    pub const MODEL_VERSION: &str = "warden/modelVersion";
    /// `_meta` key: a reference to the conversation.
    pub const CONVERSATION: &str = "warden/conversation";
    /// `_meta` key: why the agent makes the call.
    pub const RATIONALE: &str = "warden/rationale";
    /// Header: the model name.
    pub const MODEL_HEADER: &str = "warden-model";
    /// Header: the model version.
    pub const MODEL_VERSION_HEADER: &str = "warden-model-version";
    /// Header: a reference to the conversation.
    pub const CONVERSATION_HEADER: &str = "warden-conversation";
    /// Header: why the agent makes the call.
    pub const RATIONALE_HEADER: &str = "warden-rationale";
    /// `_meta` key and header: W3C trace parent.
    pub const TRACEPARENT: &str = "traceparent";
    /// `_meta` key and header: W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// `_meta` key and header: W3C baggage.
    pub const BAGGAGE: &str = "baggage";
}

/// Who makes a call: the agent and the user on whose behalf it acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The calling agent's identity (`anonymous` until authentication).
    pub agent: Arc<str>,
    /// The user the agent acts for, when known.
    pub on_behalf_of: Option<Arc<str>>,
    /// Groups the caller belongs to.
    pub groups: Vec<Arc<str>>,
}

/// A `_meta` member that must be text where it is given at all: a claim
/// of the wrong type is kept as such, to be refused, not taken for absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MetaText {
    /// Not sent.
    #[default]
    Absent,
    /// A string.
    Text(String),
    /// Sent, but not a string.
    NotText,
}

/// The facts a call carries about itself (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallMeta {
    /// The model's name.
    pub model: Option<String>,
    /// The model's version.
    pub model_version: Option<String>,
    /// A reference to the conversation the call is part of.
    pub conversation: Option<String>,
    /// Why the agent says it makes the call.
    pub rationale: Option<String>,
    /// The agent session the call names itself (`warden/agentSession`).
    pub agent_session: MetaText,
    /// `_meta.progressToken`, as JSON text.
    pub progress_token: Option<String>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    pub tracestate: Option<String>,
    /// W3C `baggage`.
    pub baggage: Option<String>,
}

/// The request headers that can carry a call's facts, picked out of a
/// request's headers in one pass (cheaper than a lookup per fact).
#[derive(Debug, Default)]
pub struct FactHeaders<'h> {
    values: [Option<&'h str>; FACT_HEADERS.len()],
}

/// Every header [`CallMeta::read`] may ask for.
const FACT_HEADERS: [&str; 7] = [
    keys::MODEL_HEADER,
    keys::MODEL_VERSION_HEADER,
    keys::CONVERSATION_HEADER,
    keys::RATIONALE_HEADER,
    keys::TRACEPARENT,
    keys::TRACESTATE,
    keys::BAGGAGE,
];

// === impl FactHeaders ===

impl<'h> FactHeaders<'h> {
    /// Pick the fact headers (lower-case names, as HTTP libraries keep
    /// them) out of `headers`; values that are not visible ASCII are unknown.
    pub fn pick(headers: impl IntoIterator<Item = (&'h str, &'h [u8])>) -> FactHeaders<'h> {
        let mut picked = FactHeaders::default();
        for (name, value) in headers {
            // Most headers start with none of these letters.
            if !matches!(name.as_bytes().first(), Some(b'w' | b't' | b'b')) {
                continue;
            }
            if let Some(index) = FACT_HEADERS.iter().position(|fact| *fact == name) {
                picked.values[index] = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)));
            }
        }
        picked
    }

    /// The value of the fact header `name`.
    pub fn get(&self, name: &str) -> Option<&'h str> {
        let index = FACT_HEADERS.iter().position(|fact| *fact == name)?;
        self.values[index]
    }
}

// === impl Principal ===

impl Principal {
    /// The caller when nothing authenticates it (one shared value: naming
    /// it costs a reference count, not an allocation per call).
    pub fn anonymous() -> Arc<Principal> {
        static ANONYMOUS: std::sync::LazyLock<Arc<Principal>> = std::sync::LazyLock::new(|| {
            Arc::new(Principal {
                agent: "anonymous".into(),
                on_behalf_of: None,
                groups: Vec::new(),
            })
        });
        ANONYMOUS.clone()
    }
}

// === impl CallMeta ===

impl CallMeta {
    /// Read a call's facts from its `params._meta` (JSON text, as the strict
    /// parser kept it) and, where `_meta` says nothing, from `header` (a
    /// lookup by lower-case header name).
    pub fn read<'h>(meta: Option<&RawValue>, header: impl Fn(&str) -> Option<&'h str>) -> CallMeta {
        let meta = meta
            .and_then(|m| serde_json::from_str::<RawMeta<'_>>(m.get()).ok())
            .unwrap_or_default();
        let text = |from_meta: Option<Cow<'_, str>>, name: &str, limit: usize| {
            from_meta
                .map(Cow::into_owned)
                .or_else(|| header(name).map(str::to_owned))
                .filter(|v| !v.is_empty())
                .map(|v| cut(v, limit))
        };
        CallMeta {
            model: text(meta.model, keys::MODEL_HEADER, MAX_FACT_LEN),
            model_version: text(meta.model_version, keys::MODEL_VERSION_HEADER, MAX_FACT_LEN),
            conversation: text(meta.conversation, keys::CONVERSATION_HEADER, MAX_FACT_LEN),
            rationale: text(meta.rationale, keys::RATIONALE_HEADER, MAX_RATIONALE_LEN),
            agent_session: match meta.agent_session {
                None => MetaText::Absent,
                Some(value) => match serde_json::from_str::<String>(value.get()) {
                    Ok(text) => MetaText::Text(text),
                    Err(_) => MetaText::NotText,
                },
            },
            progress_token: meta
                .progress_token
                .filter(|t| is_progress_token(t.get()))
                .map(|t| t.get().to_owned()),
            traceparent: text(meta.traceparent, keys::TRACEPARENT, MAX_FACT_LEN)
                .filter(|t| is_traceparent(t)),
            tracestate: text(meta.tracestate, keys::TRACESTATE, MAX_FACT_LEN),
            baggage: text(meta.baggage, keys::BAGGAGE, MAX_FACT_LEN),
        }
    }
}

/// The `_meta` members Warden reads; a member of the wrong type is unknown.
#[derive(Default, Deserialize)]
struct RawMeta<'a> {
    #[serde(
        borrow,
        rename = "warden/model",
        default,
        deserialize_with = "text_or_none"
    )]
    model: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        rename = "warden/modelVersion",
        default,
        deserialize_with = "text_or_none"
    )]
    model_version: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        rename = "warden/conversation",
        default,
        deserialize_with = "text_or_none"
    )]
    conversation: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        rename = "warden/rationale",
        default,
        deserialize_with = "text_or_none"
    )]
    rationale: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "warden/agentSession", default)]
    agent_session: Option<&'a RawValue>,
    #[serde(borrow, rename = "progressToken", default)]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "text_or_none")]
    traceparent: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_or_none")]
    tracestate: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_or_none")]
    baggage: Option<Cow<'a, str>>,
}

/// A string member, or `None` for any other value (a number, an object).
fn text_or_none<'de, D>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text<'a> {
        Text(#[serde(borrow)] Cow<'a, str>),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Text::deserialize(deserializer)? {
        Text::Text(text) => Some(text),
        Text::Other(_) => None,
    })
}

/// `text` cut to at most `limit` bytes, on a character boundary.
fn cut(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// A progress token is a string or an integer (MCP).
fn is_progress_token(json: &str) -> bool {
    match json.as_bytes().first() {
        Some(b'"') => json.len() <= MAX_FACT_LEN,
        Some(b'-' | b'0'..=b'9') => !json.contains(['.', 'e', 'E']) && json.len() <= 20,
        _ => false,
    }
}

/// The W3C `traceparent` shape: version 00, a trace id and a parent id that
/// are not all zeros, and flags.
fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    matches!(parts.as_slice(), [version, trace, parent, flags]
        if *version == "00" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2)
            && trace.bytes().any(|b| b != b'0') && parent.bytes().any(|b| b != b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).expect("JSON")
    }

    fn no_headers(_: &str) -> Option<&'static str> {
        None
    }

    #[test]
    fn facts_come_from_meta_first_then_from_headers() {
        let meta = raw(&format!(
            r#"{{"warden/model":"claude-x","warden/rationale":"the user asked","progressToken":7,"traceparent":"{TRACE}","other":{{"deep":1}}}}"#
        ));
        let headers = |name: &str| match name {
            "warden-model" => Some("ignored: _meta said it"),
            "warden-model-version" => Some("2026-10"),
            "warden-conversation" => Some("conv-42"),
            _ => None,
        };
        let facts = CallMeta::read(Some(&meta), headers);
        assert_eq!(facts.model.as_deref(), Some("claude-x"));
        assert_eq!(facts.model_version.as_deref(), Some("2026-10"));
        assert_eq!(facts.conversation.as_deref(), Some("conv-42"));
        assert_eq!(facts.rationale.as_deref(), Some("the user asked"));
        assert_eq!(facts.progress_token.as_deref(), Some("7"));
        assert_eq!(facts.traceparent.as_deref(), Some(TRACE));
        assert_eq!(facts.tracestate, None);
    }

    #[test]
    fn absent_or_wrong_facts_are_unknown() {
        assert_eq!(CallMeta::read(None, no_headers), CallMeta::default());
        let meta = raw(
            r#"{"warden/model":42,"warden/conversation":"","progressToken":1.5,"traceparent":"00-00000000000000000000000000000000-00f067aa0ba902b7-01","warden/agentSession":{"a":1}}"#,
        );
        assert_eq!(
            CallMeta::read(Some(&meta), no_headers),
            CallMeta {
                agent_session: MetaText::NotText,
                ..CallMeta::default()
            },
            "a session claim of the wrong type is kept, to be refused"
        );
        let not_an_object = raw("[1]");
        assert_eq!(
            CallMeta::read(Some(&not_an_object), no_headers),
            CallMeta::default()
        );
        let bad_header = |name: &str| (name == "traceparent").then_some("01-abc");
        assert_eq!(CallMeta::read(None, bad_header).traceparent, None);
    }

    #[test]
    fn long_facts_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_RATIONALE_LEN);
        let meta =
            raw(&serde_json::json!({"warden/rationale": long, "warden/model": long}).to_string());
        let facts = CallMeta::read(Some(&meta), no_headers);
        let rationale = facts.rationale.expect("rationale");
        assert!(rationale.len() <= MAX_RATIONALE_LEN && rationale.len() >= MAX_RATIONALE_LEN - 1);
        assert!(rationale.chars().all(|c| c == 'é'));
        assert!(facts.model.is_some_and(|m| m.len() <= MAX_FACT_LEN));
    }

    #[test]
    fn fact_headers_are_picked_in_one_pass() {
        let headers = [
            ("content-type", &b"application/json"[..]),
            ("warden-model", b"m-1"),
            ("traceparent", TRACE.as_bytes()),
            ("warden-rationale", b"caf\xc3\xa9"),
            ("tracestate", b"a=1"),
        ];
        let picked = FactHeaders::pick(headers);
        assert_eq!(picked.get("warden-model"), Some("m-1"));
        assert_eq!(picked.get("warden-rationale"), None, "not visible ASCII");
        assert_eq!(picked.get("content-type"), None, "not a fact header");
        let facts = CallMeta::read(None, |name| picked.get(name));
        assert_eq!(facts.model.as_deref(), Some("m-1"));
        assert_eq!(facts.traceparent.as_deref(), Some(TRACE));
        assert_eq!(facts.tracestate.as_deref(), Some("a=1"));
    }

    #[test]
    fn the_agent_session_and_escaped_text_are_read() {
        let meta = raw(
            r#"{"warden/agentSession":"run-1","warden/model":"a\u0062c","progressToken":"p-1"}"#,
        );
        let facts = CallMeta::read(Some(&meta), no_headers);
        assert_eq!(facts.agent_session, MetaText::Text("run-1".into()));
        assert_eq!(facts.model.as_deref(), Some("abc"));
        assert_eq!(facts.progress_token.as_deref(), Some("\"p-1\""));
    }
}
