//! MCP names Warden reads: methods, headers, revisions, and the shape of a
//! tool result that reports an error the model can act on.

use bytes::Bytes;
use serde_json::json;

/// `initialize`: opens a stateful session.
pub const METHOD_INITIALIZE: &str = "initialize";
/// `tools/list`: the upstream's catalogue, filtered by Warden.
pub const METHOD_TOOLS_LIST: &str = "tools/list";
/// `tools/call`: the one method every policy judges.
pub const METHOD_TOOLS_CALL: &str = "tools/call";
/// The stateless revision's stream of server notifications (2026-07-28):
/// a request answered only when the stream ends.
pub const METHOD_SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";
/// The client's notice that it has read the `initialize` result.
pub const NOTIFICATION_INITIALIZED: &str = "notifications/initialized";
/// Sent by a server when its tool catalogue changed.
pub const NOTIFICATION_TOOLS_LIST_CHANGED: &str = "notifications/tools/list_changed";
/// Notification: the sender cancels a request it sent (`params.requestId`).
pub const NOTIFICATION_CANCELLED: &str = "notifications/cancelled";

/// The session header of the stateful revisions.
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
/// The negotiated revision, sent by clients after initialization.
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// SSE resumption: the last event id the client saw.
pub const HEADER_LAST_EVENT_ID: &str = "last-event-id";

/// The revision a server assumes when a client sends no version header.
pub const DEFAULT_PROTOCOL_VERSION: &str = "2025-03-26";
/// Stateful revisions Warden serves, oldest first.
pub const STATEFUL_REVISIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];

/// Stateless revisions Warden serves: no `initialize`, no session; each
/// request carries its revision and capabilities in `params._meta`.
pub const STATELESS_REVISIONS: [&str; 1] = ["2026-07-28"];
/// `params._meta` key of a stateless request's revision.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// `params._meta` key of a stateless request's client capabilities.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// Stateless revisions: the request's method, mirrored in a header.
pub const HEADER_METHOD: &str = "mcp-method";
/// Stateless revisions: the tool, prompt or resource a request names.
pub const HEADER_NAME: &str = "mcp-name";
/// Error: the `Mcp-*` headers disagree with the body, or are missing.
pub const ERROR_HEADER_MISMATCH: i64 = -32020;
/// Error: the request's revision is not served.
pub const ERROR_UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;

/// Whether a revision is a stateless one (2026-07-28 and later).
pub fn is_stateless_revision(revision: &str) -> bool {
    revision >= "2026-07-28" && revision.len() == 10
}

/// Whether a revision has task-augmented requests (`params.task`, the
/// `tasks` capability): only 2025-11-25 (2026-07-28 moved tasks to an
/// extension).
pub fn revision_has_tasks(revision: &str) -> bool {
    revision == "2025-11-25"
}

/// Whether a revision allows JSON-RPC batches (only 2025-03-26 does).
pub fn revision_allows_batches(revision: &str) -> bool {
    revision == "2025-03-26"
}

/// A `CallToolResult` with `isError: true`: one text block for the model and
/// `structuredContent.warden` for programs. Encoded as a JSON-RPC response in
/// the shape `revision` asks for (stateless revisions require `resultType`).
pub fn tool_error_response(
    id_json: &str,
    text: &str,
    warden: serde_json::Value,
    revision: &str,
) -> Bytes {
    tool_result_response(id_json, text, json!({"warden": warden}), true, revision)
}

/// A `tools/call` result Warden gives itself (a refusal, a dry run): one
/// text block, `structured` as `structuredContent`, shaped for `revision`.
pub fn tool_result_response(
    id_json: &str,
    text: &str,
    structured: serde_json::Value,
    is_error: bool,
    revision: &str,
) -> Bytes {
    let mut result = json!({
        "content": [{"type": "text", "text": text}],
        "isError": is_error,
        "structuredContent": structured,
    });
    if is_stateless_revision(revision) {
        result["resultType"] = json!("complete");
    }
    crate::jsonrpc::result_response(id_json, &result.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_error_response_is_a_result_not_an_error() {
        let body = tool_error_response("\"a\"", "no", json!({"decision": "deny"}), "2025-11-25");
        let value: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert!(value["result"].get("resultType").is_none());
        let stateless = tool_error_response("1", "no", json!({}), "2026-07-28");
        let stateless: serde_json::Value = serde_json::from_slice(&stateless).expect("valid JSON");
        assert_eq!(stateless["result"]["resultType"], "complete");
        assert_eq!(value["id"], "a");
        assert_eq!(value["result"]["isError"], true);
        assert_eq!(value["result"]["content"][0]["text"], "no");
        assert_eq!(
            value["result"]["structuredContent"]["warden"]["decision"],
            "deny"
        );
        assert!(value.get("error").is_none());
    }

    #[test]
    fn only_the_oldest_stateful_revision_allows_batches() {
        assert!(revision_allows_batches("2025-03-26"));
        assert!(!revision_allows_batches("2025-06-18"));
        assert!(!revision_allows_batches("2025-11-25"));
    }
}
