//! What a call says about itself and who makes it: the facts the audit
//! trail records and later layers (limits, approvals) decide on.
//!
//! [`CallMeta`] is read once per `tools/call`, whatever the transport, from
//! the call's own `params._meta` first and from request headers second
//! (an agent runtime may set headers where it cannot touch the message;
//! the agent session alone is resolved header first, see
//! [`crate::agent_session`]):
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
//! A fact that is absent, empty, not a string, or not valid is unknown
//! (`None`), never guessed, and the header may then speak; a value of the
//! wrong type is skipped without being built. Text facts holding control
//! characters (the rationale may hold line breaks and tabs), line
//! separators or bidi overrides are unknown. Text facts are cut at
//! [`MAX_FACT_LEN`] bytes (the rationale at [`MAX_RATIONALE_LEN`]) on a
//! character boundary, so a client cannot make every record it leaves
//! arbitrarily large; trace facts are never cut (a cut one is corrupt): a
//! `traceparent` must have the W3C form (`00-<32 hex>-<16 hex>-<2 hex>`,
//! not all zeros), a longer `tracestate` than [`MAX_TRACESTATE_LEN`] or
//! `baggage` than [`MAX_BAGGAGE_LEN`] is unknown. A fact header sent twice
//! is unknown.

use std::borrow::Cow;

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

pub use warden_identity::Principal;

/// A `_meta` claim that must be valid text where it is given at all: a
/// claim of the wrong type (or too long to be valid) is kept as such, to be
/// refused, not taken for absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MetaText {
    /// Not sent.
    #[default]
    Absent,
    /// A string.
    Text(String),
    /// Sent, but not a string, or longer than any valid claim.
    Invalid,
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
    seen: [bool; FACT_HEADERS.len()],
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
    /// them) out of `headers`; a value that is not printable ASCII (space
    /// and tab allowed), or a header sent twice, is unknown.
    pub fn pick(headers: impl IntoIterator<Item = (&'h str, &'h [u8])>) -> FactHeaders<'h> {
        let mut picked = FactHeaders::default();
        for (name, value) in headers {
            // Most headers start with none of these letters.
            if !matches!(name.as_bytes().first(), Some(b'w' | b't' | b'b')) {
                continue;
            }
            if let Some(index) = FACT_HEADERS.iter().position(|fact| *fact == name) {
                // Sent twice: ambiguous, so unknown (as a repeated
                // `traceparent` is invalid to W3C).
                picked.values[index] = if picked.seen[index] {
                    None
                } else {
                    std::str::from_utf8(value)
                        .ok()
                        .filter(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
                };
                picked.seen[index] = true;
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

// === impl CallMeta ===

impl CallMeta {
    /// Read a call's facts from its `params._meta` (JSON text, as the strict
    /// parser kept it) and, where `_meta` gives no valid value, from
    /// `header` (a lookup by lower-case header name).
    pub fn read<'h>(meta: Option<&RawValue>, header: impl Fn(&str) -> Option<&'h str>) -> CallMeta {
        let meta = meta
            .and_then(|m| serde_json::from_str::<RawMeta<'_>>(m.get()).ok())
            .unwrap_or_default();
        let text = |from_meta: Option<Text<'_>>, name: &str, fact: Fact| {
            from_meta
                .and_then(|t| t.0)
                .and_then(|v| fact.keep(&v))
                .or_else(|| header(name).and_then(|v| fact.keep(v)))
        };
        CallMeta {
            model: text(meta.model, keys::MODEL_HEADER, Fact::Short),
            model_version: text(meta.model_version, keys::MODEL_VERSION_HEADER, Fact::Short),
            conversation: text(meta.conversation, keys::CONVERSATION_HEADER, Fact::Short),
            rationale: text(meta.rationale, keys::RATIONALE_HEADER, Fact::Rationale),
            agent_session: match meta.agent_session {
                None => MetaText::Absent,
                Some(value) => match value.0 {
                    Some(claim) if claim.len() <= crate::agent_session::MAX_AGENT_SESSION_LEN => {
                        MetaText::Text(claim.into_owned())
                    }
                    _ => MetaText::Invalid,
                },
            },
            progress_token: meta
                .progress_token
                .filter(|t| is_progress_token(t.get()))
                .map(|t| t.get().to_owned()),
            traceparent: text(meta.traceparent, keys::TRACEPARENT, Fact::TraceParent),
            tracestate: text(
                meta.tracestate,
                keys::TRACESTATE,
                Fact::Whole(MAX_TRACESTATE_LEN),
            ),
            baggage: text(meta.baggage, keys::BAGGAGE, Fact::Whole(MAX_BAGGAGE_LEN)),
        }
    }
}

/// Longest `tracestate` kept (W3C: 512 characters); a longer one is unknown.
pub const MAX_TRACESTATE_LEN: usize = 512;
/// Longest `baggage` kept (W3C: 8192 bytes); a longer one is unknown.
pub const MAX_BAGGAGE_LEN: usize = 8192;

/// How a text fact is kept.
#[derive(Clone, Copy)]
enum Fact {
    /// Cut at [`MAX_FACT_LEN`]; no control characters.
    Short,
    /// Cut at [`MAX_RATIONALE_LEN`]; line breaks and tabs allowed.
    Rationale,
    /// Only in the W3C `traceparent` form, else unknown.
    TraceParent,
    /// Whole up to this many bytes, else unknown (a cut value would be a
    /// different, corrupt one); no control characters.
    Whole(usize),
}

// === impl Fact ===

impl Fact {
    /// The value kept of `text`, or `None` (empty, invalid, too long).
    fn keep(self, text: &str) -> Option<String> {
        let allowed_controls: &[char] = match self {
            Fact::Rationale => &['\n', '\t'],
            _ => &[],
        };
        // Control characters, line and paragraph separators and bidi
        // overrides have no business in these facts and could forge lines
        // or reorder text wherever the facts are shown.
        let unsafe_char = |c: char| {
            (c.is_control() && !allowed_controls.contains(&c))
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        };
        if text.is_empty() || text.chars().any(unsafe_char) {
            return None;
        }
        match self {
            Fact::Short => Some(cut(text, MAX_FACT_LEN).to_owned()),
            Fact::Rationale => Some(cut(text, MAX_RATIONALE_LEN).to_owned()),
            Fact::TraceParent => is_traceparent(text).then(|| text.to_owned()),
            Fact::Whole(limit) => (text.len() <= limit).then(|| text.to_owned()),
        }
    }
}

/// The `_meta` members Warden reads; a member of the wrong type is unknown.
#[derive(Default, Deserialize)]
struct RawMeta<'a> {
    #[serde(borrow, rename = "warden/model", default)]
    model: Option<Text<'a>>,
    #[serde(borrow, rename = "warden/modelVersion", default)]
    model_version: Option<Text<'a>>,
    #[serde(borrow, rename = "warden/conversation", default)]
    conversation: Option<Text<'a>>,
    #[serde(borrow, rename = "warden/rationale", default)]
    rationale: Option<Text<'a>>,
    #[serde(borrow, rename = "warden/agentSession", default)]
    agent_session: Option<Text<'a>>,
    #[serde(borrow, rename = "progressToken", default)]
    progress_token: Option<&'a RawValue>,
    #[serde(borrow, default)]
    traceparent: Option<Text<'a>>,
    #[serde(borrow, default)]
    tracestate: Option<Text<'a>>,
    #[serde(borrow, default)]
    baggage: Option<Text<'a>>,
}

/// A member read as text when it is a string; any other value is skipped
/// in one pass, never buffered (a client must not make Warden build a tree
/// of whatever it puts under a key Warden reads).
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor(std::marker::PhantomData))
    }
}

struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> serde::de::Visitor<'de> for TextVisitor<'a> {
    type Value = Text<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'a>, E> {
        Ok(Text(Some(Cow::Borrowed(text))))
    }

    fn visit_str<E>(self, text: &str) -> Result<Text<'a>, E> {
        // An escaped string: copied, but never more than any fact keeps
        // (plus one byte, so an over-long agent session stays over-long).
        let kept = cut(text, MAX_BAGGAGE_LEN + 1);
        Ok(Text(Some(Cow::Owned(kept.to_owned()))))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Text<'a>, E> {
        Ok(Text(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Text<'a>, E> {
        Ok(Text(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Text<'a>, E> {
        Ok(Text(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Text<'a>, E> {
        Ok(Text(None))
    }

    fn visit_unit<E>(self) -> Result<Text<'a>, E> {
        Ok(Text(None))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Text<'a>, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Text<'a>, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Text(None))
    }
}

/// `text` cut to at most `limit` bytes, on a character boundary.
fn cut(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A progress token is a string or an integer (MCP).
fn is_progress_token(json: &str) -> bool {
    match json.as_bytes().first() {
        Some(b'"') => json.len() <= MAX_FACT_LEN,
        Some(b'-' | b'0'..=b'9') => !json.contains(['.', 'e', 'E']) && json.len() <= 20,
        _ => false,
    }
}

/// The W3C `traceparent` form: version 00, a trace id and a parent id that
/// are not all zeros, and flags (`00-<32 hex>-<16 hex>-<2 hex>`).
fn is_traceparent(value: &str) -> bool {
    let bytes = value.as_bytes();
    let hex = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let not_zero = |range: std::ops::Range<usize>| bytes[range].iter().any(|&b| b != b'0');
    bytes.len() == 55
        && bytes.starts_with(b"00-")
        && bytes[35] == b'-'
        && bytes[52] == b'-'
        && hex(3..35)
        && hex(36..52)
        && hex(53..55)
        && not_zero(3..35)
        && not_zero(36..52)
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
                agent_session: MetaText::Invalid,
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
            ("baggage", b"k=v"),
            ("baggage", b"k=w"),
        ];
        let picked = FactHeaders::pick(headers);
        assert_eq!(picked.get("warden-model"), Some("m-1"));
        assert_eq!(picked.get("warden-rationale"), None, "not visible ASCII");
        assert_eq!(picked.get("baggage"), None, "sent twice: ambiguous");
        let facts = CallMeta::read(None, |name| picked.get(name));
        assert_eq!(facts.model.as_deref(), Some("m-1"));
        assert_eq!(facts.traceparent.as_deref(), Some(TRACE));
        assert_eq!(facts.tracestate.as_deref(), Some("a=1"));
    }

    #[test]
    fn wrong_values_are_skipped_without_building_them() {
        // A deep, wide value under a key Warden reads: skipped, not built.
        let wide = format!(
            r#"{{"warden/model":[{}{{}}],"warden/rationale":"why"}}"#,
            "{},".repeat(100_000)
        );
        let facts = CallMeta::read(Some(&raw(&wide)), no_headers);
        assert_eq!(facts.model, None);
        assert_eq!(facts.rationale.as_deref(), Some("why"));
    }

    #[test]
    fn control_characters_empty_values_and_over_long_trace_facts_are_unknown() {
        let meta = raw(
            r#"{"warden/model":"a\nb","warden/conversation":"c\u202ed","warden/rationale":"step 1\nstep 2","warden/modelVersion":""}"#,
        );
        let headers = |name: &str| (name == "warden-model-version").then_some("v2");
        let facts = CallMeta::read(Some(&meta), headers);
        assert_eq!(facts.model, None, "a line break in a short fact");
        assert_eq!(facts.conversation, None, "a bidi override");
        assert_eq!(facts.rationale.as_deref(), Some("step 1\nstep 2"));
        assert_eq!(
            facts.model_version.as_deref(),
            Some("v2"),
            "an empty _meta value lets the header speak"
        );
        let long_state = format!("a={}", "x".repeat(MAX_TRACESTATE_LEN));
        let meta =
            raw(&serde_json::json!({"tracestate": long_state, "baggage": "k=v"}).to_string());
        let facts = CallMeta::read(Some(&meta), no_headers);
        assert_eq!(facts.tracestate, None, "never cut into a corrupt value");
        assert_eq!(facts.baggage.as_deref(), Some("k=v"));
        let long_claim =
            raw(&serde_json::json!({"warden/agentSession": "s".repeat(129)}).to_string());
        assert_eq!(
            CallMeta::read(Some(&long_claim), no_headers).agent_session,
            MetaText::Invalid
        );
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
