//! The benchmark's MCP workload: one `initialize` per client, then small
//! tool calls in a closed loop (`echo`, a read call, or `create_note`, a
//! write call); and the checks every reply must pass.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;

/// The MCP revision the clients speak.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// The message every echo call sends (and expects back).
pub const ECHO_MESSAGE: &str = "hi";

/// The `initialize` request (id 0).
pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"warden-bench","version":"1"}}}"#;

/// The `notifications/initialized` notification.
pub const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

/// The note every `create_note` call writes.
pub const NOTE_TEXT: &str = "hi";

/// The demo's customers, by id, as `create_note` names them in its reply.
const CUSTOMERS: [&str; 4] = [
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Katherine Johnson",
];

/// Which tool the clients call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Calls {
    /// `echo {"message":"hi"}`: a read call (`readOnlyHint: true`).
    Read,
    /// `create_note {"customer_id":N,"text":"hi"}`: a write call (granted by
    /// a policy `tools: {create_note: write}`), so with audit on its intent
    /// is durable before it is forwarded.
    Write,
}

impl Calls {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Calls::Read => "read",
            Calls::Write => "write",
        }
    }

    /// The `tools/call` with `id`.
    pub fn body(self, id: u64) -> Bytes {
        match self {
            Calls::Read => tool_call(id),
            Calls::Write => note_call(id),
        }
    }

    /// Check that `body` is this call's successful result for request `id`.
    pub fn check(self, content_type: &str, body: &[u8], id: u64) -> Result<(), String> {
        match self {
            Calls::Read => check_tool_result(content_type, body, id),
            Calls::Write => check_result_text(content_type, body, id, &note_reply(id)),
        }
    }
}

/// A `tools/call` of `echo` with `id`.
pub fn tool_call(id: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{ECHO_MESSAGE}"}}}}}}"#
    ))
}

/// The customer a `create_note` call with `id` writes to (the demo's four
/// in turn, so the notes spread over its map's shards).
fn note_customer(id: u64) -> u64 {
    id % CUSTOMERS.len() as u64 + 1
}

/// A `tools/call` of `create_note` with `id`: the same size class as the
/// echo call (request body 120-122 bytes for ids 1-999, against 100-102).
pub fn note_call(id: u64) -> Bytes {
    let customer = note_customer(id);
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"create_note","arguments":{{"customer_id":{customer},"text":"{NOTE_TEXT}"}}}}}}"#
    ))
}

/// What the demo answers a `create_note` call with `id`.
fn note_reply(id: u64) -> String {
    let name = CUSTOMERS[(note_customer(id) - 1) as usize];
    format!("Note added to {name}.")
}

/// The JSON-RPC message in a reply body: the body itself for
/// `application/json`, the first event's `data` for `text/event-stream`.
pub fn json_payload<'a>(content_type: &str, body: &'a [u8]) -> Result<Cow<'a, [u8]>, String> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/json" => Ok(Cow::Borrowed(body)),
        "text/event-stream" => {
            let text = std::str::from_utf8(body).map_err(|_| "SSE body is not UTF-8".to_owned())?;
            let mut data = String::new();
            for line in text.lines() {
                if line.is_empty() && !data.is_empty() {
                    break;
                }
                if let Some(rest) = line.strip_prefix("data:") {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                }
            }
            if data.is_empty() {
                Err("SSE reply carried no data".to_owned())
            } else {
                Ok(Cow::Owned(data.into_bytes()))
            }
        }
        other => Err(format!("unexpected content-type {other:?}")),
    }
}

#[derive(Deserialize)]
struct Reply<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    result: Option<ToolResult<'a>>,
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ToolResult<'a> {
    #[serde(default, rename = "isError")]
    is_error: bool,
    #[serde(default, borrow)]
    content: Vec<Content<'a>>,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
}

/// Check that `body` is a successful `echo` result for request `id`.
pub fn check_tool_result(content_type: &str, body: &[u8], id: u64) -> Result<(), String> {
    check_result_text(content_type, body, id, ECHO_MESSAGE)
}

/// Check that `body` is a successful tool result for request `id` whose
/// first content text is `expected`.
fn check_result_text(
    content_type: &str,
    body: &[u8],
    id: u64,
    expected: &str,
) -> Result<(), String> {
    let json = json_payload(content_type, body)?;
    let reply: Reply<'_> =
        serde_json::from_slice(&json).map_err(|e| format!("reply is not a JSON-RPC reply: {e}"))?;
    if reply.error.is_some() {
        return Err(format!(
            "JSON-RPC error: {}",
            String::from_utf8_lossy(&json)
        ));
    }
    if reply.id != Some(id) {
        return Err(format!("reply id {:?}, expected {id}", reply.id));
    }
    let Some(result) = reply.result else {
        return Err("reply has no result".to_owned());
    };
    if result.is_error {
        return Err(format!("tool error: {}", String::from_utf8_lossy(&json)));
    }
    match result.content.first().and_then(|c| c.text.as_deref()) {
        Some(text) if text == expected => Ok(()),
        other => Err(format!(
            "the tool returned {other:?}, expected {expected:?}"
        )),
    }
}

/// Check that `body` is a successful `initialize` result.
pub fn check_initialize(content_type: &str, body: &[u8]) -> Result<(), String> {
    let json = json_payload(content_type, body)?;
    let value: serde_json::Value =
        serde_json::from_slice(&json).map_err(|e| format!("initialize reply is not JSON: {e}"))?;
    if value
        .get("result")
        .and_then(|r| r.get("protocolVersion"))
        .is_some()
    {
        Ok(())
    } else {
        Err(format!("initialize failed: {value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_call_is_valid_json() {
        let v: serde_json::Value = serde_json::from_slice(&tool_call(7)).expect("json");
        assert_eq!(v["id"], 7);
        assert_eq!(v["params"]["name"], "echo");
        assert_eq!(v["params"]["arguments"]["message"], ECHO_MESSAGE);
        let _: serde_json::Value = serde_json::from_str(INITIALIZE).expect("json");
        let _: serde_json::Value = serde_json::from_str(INITIALIZED).expect("json");
    }

    #[test]
    fn note_call_is_valid_json_and_checked() {
        for id in [1, 2, 99, 100] {
            let body = Calls::Write.body(id);
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert_eq!(v["id"], id);
            assert_eq!(v["params"]["name"], "create_note");
            assert_eq!(v["params"]["arguments"]["text"], NOTE_TEXT);
            let customer = v["params"]["arguments"]["customer_id"]
                .as_u64()
                .expect("id");
            assert!((1..=4).contains(&customer));
            assert!((120..=122).contains(&body.len()), "{}", body.len());
        }
        let ok = br#"{"id":6,"jsonrpc":"2.0","result":{"content":[{"text":"Note added to Alan Turing.","type":"text"}]}}"#;
        assert_eq!(Calls::Write.check("application/json", ok, 6), Ok(()));
        assert!(Calls::Write.check("application/json", ok, 7).is_err());
        assert!(Calls::Read.check("application/json", ok, 6).is_err());
    }

    #[test]
    fn accepts_a_json_echo_result() {
        let body =
            br#"{"id":2,"jsonrpc":"2.0","result":{"content":[{"text":"hi","type":"text"}]}}"#;
        assert_eq!(check_tool_result("application/json", body, 2), Ok(()));
        assert!(check_tool_result("application/json", body, 3).is_err());
    }

    #[test]
    fn accepts_an_sse_echo_result() {
        let body = b"event: message\ndata: {\"id\":5,\"jsonrpc\":\"2.0\",\"result\":{\"content\":[{\"text\":\"hi\",\"type\":\"text\"}]}}\n\n";
        assert_eq!(check_tool_result("text/event-stream", body, 5), Ok(()));
    }

    #[test]
    fn rejects_refusals_and_errors() {
        let refused = br#"{"id":2,"jsonrpc":"2.0","result":{"content":[{"text":"denied","type":"text"}],"isError":true}}"#;
        assert!(check_tool_result("application/json", refused, 2).is_err());
        let error = br#"{"id":2,"jsonrpc":"2.0","error":{"code":-32600,"message":"no"}}"#;
        assert!(check_tool_result("application/json", error, 2).is_err());
        assert!(check_tool_result("text/plain", b"hi", 2).is_err());
    }

    #[test]
    fn checks_initialize() {
        let ok = br#"{"id":0,"jsonrpc":"2.0","result":{"protocolVersion":"2025-11-25"}}"#;
        assert!(check_initialize("application/json", ok).is_ok());
        let bad = br#"{"id":0,"jsonrpc":"2.0","error":{"code":1,"message":"x"}}"#;
        assert!(check_initialize("application/json", bad).is_err());
    }
}
