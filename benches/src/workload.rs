//! The benchmark's MCP workload: one `initialize` per client, then small
//! `echo` tool calls in a closed loop; and the checks every reply must pass.

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

/// A `tools/call` of `echo` with `id`.
pub fn tool_call(id: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"{ECHO_MESSAGE}"}}}}}}"#
    ))
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
        Some(ECHO_MESSAGE) => Ok(()),
        other => Err(format!("echo returned {other:?}")),
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
