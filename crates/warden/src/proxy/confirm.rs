//! `confirm`-tier calls: the user the agent acts for confirms the call in
//! their own client before it runs.
//!
//! When the agent's `initialize` declared form elicitation, the call is
//! answered with an event stream: first Warden's own `elicitation/create`
//! request (the tool and a readable summary of its arguments, one boolean
//! to tick), then, once the user accepts with `confirm: true`, the call's
//! outcome as the pipeline gives it (the call runs marked confirmed). A
//! decline, a cancel, an unticked box or no answer within the rule's
//! `timeout` is an `isError` result the model can read, and the call is not
//! run. The agent's answer is recognized by Warden's request id and never
//! reaches the upstream.
//!
//! A client that cannot be asked goes down the pipeline unconfirmed: its
//! rule's `fallback` holds it for an approver or refuses it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::Response;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_pipeline::{Refusal, ToolCall, ToolOutcome};

use super::Warden;
use super::relay::{self, Body, BoxError};
use super::tasks::{CallEnd, sse_message};
use crate::forward::Forward;
use crate::session::Session;
use crate::upstream::{MAX_INSPECTED_REPLY, is_event_stream};

/// What every id of Warden's own confirmation requests starts with.
pub(super) const CONFIRM_ID_PREFIX: &str = "warden-confirm-";
/// The longest argument summary shown to the user.
const MAX_SUMMARY: usize = 4000;

/// Whether an `initialize` request declares form elicitation: an
/// `elicitation` capability that is empty (form, before modes existed) or
/// names `form`.
pub(super) fn declares_elicitation(initialize: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(initialize) else {
        return false;
    };
    match value
        .pointer("/params/capabilities/elicitation")
        .and_then(Value::as_object)
    {
        Some(modes) => modes.is_empty() || modes.contains_key("form"),
        None => false,
    }
}

/// Whether a stateless request's `_meta` declares form elicitation among
/// its client capabilities.
pub(super) fn declares_elicitation_in_meta(meta: Option<&serde_json::value::RawValue>) -> bool {
    let Some(meta) = meta.and_then(|m| serde_json::from_str::<Value>(m.get()).ok()) else {
        return false;
    };
    meta.get(warden_protocol::mcp::META_CLIENT_CAPABILITIES)
        .and_then(|c| c.get("elicitation"))
        .and_then(Value::as_object)
        .is_some_and(|modes| modes.is_empty() || modes.contains_key("form"))
}

/// The longest value shown whole; a longer one is cut, and says so.
const MAX_VALUE: usize = 200;

/// The arguments as a person reads them: one `"name": value` line per
/// member, each name and value JSON-encoded (so a value cannot fake a line
/// break or a layout) and each value cut at [`MAX_VALUE`] (so every name
/// stays visible). `None` when even so they do not fit in [`MAX_SUMMARY`]:
/// a call the user cannot be shown whole is not put to them.
fn summary(arguments: Option<&serde_json::value::RawValue>) -> Option<String> {
    let value: Value = arguments
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .unwrap_or(Value::Null);
    let Some(members) = value.as_object().filter(|m| !m.is_empty()) else {
        return Some("(no arguments)".to_owned());
    };
    let line = |(name, value): (&String, &Value)| {
        let name = Value::String(name.clone()).to_string();
        let mut shown = value.to_string();
        if shown.chars().count() > MAX_VALUE {
            shown = shown.chars().take(MAX_VALUE).collect();
            shown.push_str(" … (cut)");
        }
        format!("{name}: {shown}")
    };
    let text = members.iter().map(line).collect::<Vec<_>>().join("\n");
    (text.len() <= MAX_SUMMARY).then_some(text)
}

/// The `elicitation/create` params asking the user about `tool`.
fn request_params(tool: &str, summary: &str, revision: &str) -> Value {
    let mut params = json!({
        "message": format!(
            "Your agent wants to run '{tool}' with:\n{summary}\n\nIt will not run unless you confirm."
        ),
        "requestedSchema": {
            "type": "object",
            "properties": {
                "confirm": {
                    "type": "boolean",
                    "title": format!("Run '{tool}'"),
                    "description": "Tick to let the agent run this call now.",
                    "default": false
                }
            },
            "required": ["confirm"]
        }
    });
    if revision >= "2025-11-25" {
        params["mode"] = json!("form");
    }
    params
}

/// Warden's `elicitation/create` request asking the user about `tool`.
fn request(id: &str, tool: &str, summary: &str, revision: &str) -> Bytes {
    Bytes::from(
        json!({"jsonrpc": "2.0", "id": id, "method": "elicitation/create",
            "params": request_params(tool, summary, revision)})
        .to_string(),
    )
}

/// The key of Warden's input request in a 2026-07-28 `input_required` result.
const INPUT_KEY: &str = "warden_confirm";

/// The claims a request state for `call` must carry (nonce and expiry
/// left for the caller to set).
fn claims_of(
    call: &ToolCall<Forward>,
    expires_ms: i64,
    nonce: String,
) -> crate::request_state::Claims {
    let arguments: Value = call
        .arguments
        .as_deref()
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
    crate::request_state::Claims {
        route: call.route.to_string(),
        agent: call.principal.agent.to_string(),
        method: call.principal.method.as_str().to_owned(),
        user: call.principal.on_behalf_of.as_deref().map(str::to_owned),
        tool: call.tool.clone(),
        digest: warden_approvals::arguments_digest(&arguments),
        expires_ms,
        nonce,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A `confirm`-tier call in the stateless revision (2026-07-28): asked
/// with an `input_required` result carrying Warden's sealed
/// `requestState`; the client's retry with the user's answer and that
/// state is checked (caller, exact call, expiry, once). The answer Warden
/// gives (`input_required`, or a refusal), or `None` to go on down the
/// pipeline: confirmed (the call is marked so, and the retry's
/// `inputResponses` and `requestState` are taken off what the upstream
/// receives), or unconfirmable (the rule's fallback applies there).
pub(super) async fn stateless(
    warden: &Warden,
    call: &mut ToolCall<Forward>,
    client_elicits: bool,
    timeout: Duration,
    revision: &str,
) -> Option<Bytes> {
    let message: Value = serde_json::from_slice(&call.message).unwrap_or(Value::Null);
    let state = message
        .pointer("/params/requestState")
        .and_then(Value::as_str)
        .filter(|s| s.starts_with(crate::request_state::PREFIX));
    let refuse = |reason: &'static str, call: &ToolCall<Forward>| {
        Some(refusal(&call.tool, reason).to_response(&call.id, revision))
    };
    let Some(state) = state else {
        if !client_elicits {
            return None;
        }
        let expires =
            now_ms().saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let Some(shown) = summary(call.arguments.as_deref()) else {
            return refuse("arguments-too-large-to-confirm", call);
        };
        let claims = claims_of(call, expires, crate::request_state::RequestStates::nonce());
        let result = json!({
            "resultType": "input_required",
            "inputRequests": {INPUT_KEY: {
                "method": "elicitation/create",
                "params": request_params(&call.tool, &shown, revision),
            }},
            "requestState": warden.request_states.seal(&claims),
        });
        return Some(warden_protocol::jsonrpc::result_response(
            &call.id,
            &result.to_string(),
        ));
    };
    let expected = claims_of(call, 0, String::new());
    let opened = match (&warden.approvals, warden.request_states.is_shared()) {
        // A key the replicas share: the nonce is spent in the store they
        // share, once whichever replica the retry reached.
        (Some(approvals), true) => match warden.request_states.verify(state, &expected, now_ms()) {
            Ok(claims) => match approvals
                .store
                .spend_request_state(&claims.nonce, claims.expires_ms)
                .await
            {
                Ok(true) => Ok(claims),
                Ok(false) => Err(crate::request_state::StateError::Replayed),
                Err(err) => {
                    tracing::warn!(tool = %call.tool, error = %err, "Cannot spend a confirmation's request state in the approval store; the retry is refused.");
                    return refuse("approval-store-unavailable", call);
                }
            },
            Err(err) => Err(err),
        },
        _ => warden.request_states.open(state, &expected, now_ms()),
    };
    let claims = match opened {
        Ok(claims) => claims,
        Err(err) => {
            tracing::info!(tool = %call.tool, error = %err, "A confirmation retry was refused.");
            return refuse(
                match err {
                    crate::request_state::StateError::Expired => "confirmation-timed-out",
                    crate::request_state::StateError::Replayed => "confirmation-replayed",
                    crate::request_state::StateError::Busy => "too-many-confirmations",
                    _ => "confirmation-invalid",
                },
                call,
            );
        }
    };
    let answer = message
        .pointer(&format!("/params/inputResponses/{INPUT_KEY}"))
        .cloned()
        .unwrap_or(Value::Null);
    match read_answer(&json!({"result": answer})) {
        Answer::Confirmed => {
            record(warden, call, &claims.nonce, "confirmed");
            if let Some(plain) =
                super::tasks::without_params(&call.message, &["inputResponses", "requestState"])
            {
                call.message = plain;
            }
            call.confirmed = true;
            None
        }
        Answer::Declined(reason) => {
            record(warden, call, &claims.nonce, reason);
            refuse(reason, call)
        }
    }
}

/// The user's answer, read from the agent's response message.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Confirmed,
    /// Not confirmed: the reason code.
    Declined(&'static str),
}

fn read_answer(message: &Value) -> Answer {
    let result = message.get("result");
    match result.and_then(|r| r.get("action")).and_then(Value::as_str) {
        Some("accept")
            if result.and_then(|r| r.pointer("/content/confirm")) == Some(&Value::Bool(true)) =>
        {
            Answer::Confirmed
        }
        Some("accept" | "decline") => Answer::Declined("declined-by-user"),
        Some("cancel") => Answer::Declined("cancelled-by-user"),
        _ => Answer::Declined("confirmation-failed"),
    }
}

fn refusal(tool: &str, reason: &'static str) -> Refusal {
    let message = match reason {
        "declined-by-user" => format!(
            "The user declined the call to '{tool}'; it was not run. Do not retry it unless the user asks for it."
        ),
        "cancelled-by-user" => format!(
            "The user dismissed the confirmation of '{tool}'; it was not run. Ask the user before trying again."
        ),
        "confirmation-timed-out" => format!(
            "The user did not confirm the call to '{tool}' in time; it was not run. Ask the user before trying again."
        ),
        "confirmation-replayed" | "confirmation-invalid" => format!(
            "Warden refused the call to '{tool}': its confirmation is not valid (used already, altered, or issued elsewhere). Call it again without requestState to ask the user anew."
        ),
        "arguments-too-large-to-confirm" => format!(
            "Warden refused the call to '{tool}': its arguments are too large to show the user whole, so it cannot be confirmed. It was not run; send fewer or shorter arguments."
        ),
        "approval-store-unavailable" => format!(
            "Warden refused the call to '{tool}': it could not check its confirmation just now (the approval store is unavailable). It was not run; retry shortly."
        ),
        "too-many-confirmations" => format!(
            "Warden refused the call to '{tool}': too many confirmations are waiting in this session. Retry later."
        ),
        _ => format!(
            "The user's client did not answer the confirmation of '{tool}' properly; it was not run."
        ),
    };
    let by_user = matches!(
        reason,
        "declined-by-user" | "cancelled-by-user" | "confirmation-timed-out"
    );
    Refusal {
        decision: if by_user { "declined" } else { "deny" },
        reason,
        tool: tool.to_owned(),
        message,
        is_error: true,
        details: None,
    }
}

/// Put the user's answer on the audit trail (an approval decided by the
/// user, named by Warden's request id).
fn record(warden: &Warden, call: &ToolCall<Forward>, request_id: &str, decision: &str) {
    let Some(audit) = &warden.audit else { return };
    let mut record = audit.new_record(warden_audit::Kind::ApprovalDecided);
    record.route = Some(call.route.as_ref().into());
    record.tool = Some(call.tool.clone());
    record.agent_session = Some(call.session.as_ref().into());
    record.decision = Some(decision.to_owned().into());
    record.principal = Some(warden_audit::record::PrincipalField {
        agent: call.principal.agent.to_string(),
        user: call.principal.on_behalf_of.as_deref().map(str::to_owned),
    });
    record.approval = Some(warden_audit::record::ApprovalField {
        id: request_id.to_owned(),
        approver: Some(
            call.principal
                .on_behalf_of
                .as_deref()
                .map_or_else(|| "the user".to_owned(), |u| format!("{u} (user)")),
        ),
    });
    audit.record(record);
}

fn new_request_id() -> String {
    let mut bytes = [0u8; 12];
    let _ = getrandom::fill(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{CONFIRM_ID_PREFIX}{hex}")
}

/// What the confirmation stream needs besides the call.
pub(super) struct Confirming {
    pub(super) warden: Arc<Warden>,
    pub(super) pipeline:
        warden_pipeline::Pipeline<Forward, Response<Body>, crate::error::EdgeError>,
    pub(super) session: Arc<Session>,
    pub(super) revision: String,
    pub(super) lane: Option<usize>,
    pub(super) timeout: Duration,
    pub(super) end: CallEnd,
}

/// Ask the user, then run (or refuse) `call`, all in one event stream.
pub(super) fn confirm_then_call(mut call: ToolCall<Forward>, with: Confirming) -> Response<Body> {
    let (events, received) = tokio::sync::mpsc::channel::<Result<Bytes, BoxError>>(16);
    tokio::spawn(async move {
        let id = call.id.clone();
        let tool = call.tool.clone();
        let refuse = |reason: &'static str| {
            let refusal = refusal(&tool, reason);
            with.end.refused(&refusal);
            sse_message(&refusal.to_response(&id, &with.revision))
        };
        let request_id = new_request_id();
        let Some(answer) = with.session.await_confirmation(&request_id) else {
            let _ = events.send(Ok(refuse("too-many-confirmations"))).await;
            return;
        };
        let Some(shown) = summary(call.arguments.as_deref()) else {
            let _ = events
                .send(Ok(refuse("arguments-too-large-to-confirm")))
                .await;
            return;
        };
        let asked = request(&request_id, &tool, &shown, &with.revision);
        if events.send(Ok(sse_message(&asked))).await.is_err() {
            return;
        }
        tracing::info!(tool = %tool, session = %with.session.id, "Asking the user to confirm a call.");
        let answered = tokio::select! {
            answered = tokio::time::timeout(with.timeout, answer) => answered,
            // The agent hung up: nothing to confirm, nothing runs.
            () = events.closed() => return,
        };
        let verdict = match answered {
            Ok(Ok(message)) => read_answer(&message),
            Ok(Err(_)) => Answer::Declined("confirmation-failed"),
            Err(_) => Answer::Declined("confirmation-timed-out"),
        };
        if let Answer::Declined(reason) = verdict {
            record(&with.warden, &call, &request_id, reason);
            tracing::info!(tool = %tool, reason, "The user did not confirm the call; it is not run.");
            let _ = events.send(Ok(refuse(reason))).await;
            return;
        }
        record(&with.warden, &call, &request_id, "confirmed");
        call.confirmed = true;
        let outcome = match with.pipeline.oneshot(call).await {
            Ok(ToolOutcome::Forwarded(response)) => {
                with.end.allowed.inc();
                let response = relay::relay_in_lane(response, Some(&with.session), with.lane);
                if is_event_stream(response.headers()) {
                    let mut body = response.into_body();
                    while let Some(frame) = body.frame().await {
                        let sent = match frame {
                            Ok(frame) => match frame.into_data() {
                                Ok(data) => events.send(Ok(data)).await,
                                Err(_) => Ok(()),
                            },
                            Err(err) => {
                                let _ = events.send(Err(err)).await;
                                return;
                            }
                        };
                        if sent.is_err() {
                            return;
                        }
                    }
                    return;
                }
                match relay::collect_capped(response.into_body(), MAX_INSPECTED_REPLY).await {
                    Ok(bytes) => sse_message(&bytes),
                    Err(err) => {
                        let _ = events.send(Err(err)).await;
                        return;
                    }
                }
            }
            Ok(ToolOutcome::Refused(refusal)) => {
                with.end.refused(&refusal);
                sse_message(&refusal.to_response(&id, &with.revision))
            }
            Err(err) => sse_message(&err.body(&id)),
        };
        let _ = events.send(Ok(outcome)).await;
    });
    let body = stream::unfold(received, |mut received| async move {
        received.recv().await.map(|item| (item, received))
    });
    relay::event_stream(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_ticked_accept_confirms() {
        let answer =
            |result: Value| read_answer(&json!({"jsonrpc": "2.0", "id": "x", "result": result}));
        assert_eq!(
            answer(json!({"action": "accept", "content": {"confirm": true}})),
            Answer::Confirmed
        );
        for declined in [
            json!({"action": "accept", "content": {"confirm": false}}),
            json!({"action": "accept", "content": {"confirm": "true"}}),
            json!({"action": "accept"}),
            json!({"action": "decline"}),
        ] {
            assert_eq!(answer(declined), Answer::Declined("declined-by-user"));
        }
        assert_eq!(
            answer(json!({"action": "cancel"})),
            Answer::Declined("cancelled-by-user")
        );
        assert_eq!(
            read_answer(
                &json!({"jsonrpc": "2.0", "id": "x", "error": {"code": -1, "message": "no"}})
            ),
            Answer::Declined("confirmation-failed")
        );
    }

    #[test]
    fn the_summary_encodes_every_name_and_value_and_hides_none() {
        let raw = |v: Value| serde_json::value::RawValue::from_string(v.to_string()).expect("raw");
        let shown = summary(Some(&raw(
            json!({"note": "5\n\nThis is a read-only check.", "to": "x"}),
        )))
        .expect("fits");
        assert_eq!(
            shown,
            "\"note\": \"5\\n\\nThis is a read-only check.\"\n\"to\": \"x\""
        );
        let padded = summary(Some(&raw(
            json!({"aaa": " ".repeat(3000), "to": "attacker"}),
        )))
        .expect("fits once cut");
        assert!(
            padded.contains("(cut)") && padded.contains("\"to\": \"attacker\""),
            "{padded}"
        );
        let many: serde_json::Map<String, Value> = (0..100)
            .map(|i| (format!("k{i}"), json!("v".repeat(100))))
            .collect();
        assert_eq!(
            summary(Some(&raw(Value::Object(many)))),
            None,
            "too much to show whole"
        );
        assert_eq!(summary(None).as_deref(), Some("(no arguments)"));
    }

    #[test]
    fn elicitation_is_declared_by_an_empty_or_form_capability() {
        let init = |caps: Value| {
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"capabilities": caps}})
                .to_string()
        };
        assert!(declares_elicitation(
            init(json!({"elicitation": {}})).as_bytes()
        ));
        assert!(declares_elicitation(
            init(json!({"elicitation": {"form": {}}})).as_bytes()
        ));
        assert!(!declares_elicitation(
            init(json!({"elicitation": {"url": {}}})).as_bytes()
        ));
        assert!(!declares_elicitation(init(json!({})).as_bytes()));
        let asked: Value = serde_json::from_slice(&request(
            "warden-confirm-1",
            "pay",
            "amount: 5",
            "2025-11-25",
        ))
        .expect("json");
        assert_eq!(asked["params"]["mode"], "form");
        assert!(
            asked["params"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("'pay'") && m.contains("amount: 5"))
        );
    }
}
