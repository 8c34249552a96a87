//! The approvals API (JSON). An approver's token as `Authorization: Bearer`
//! (or, with `approvals.identity`, a JWT there or a client certificate):
//! - `GET /approvals?status=pending` — the queue, newest first;
//! - `GET /approvals/{id}` — one approval;
//! - `POST /approvals/{id}/approve` and `…/reject`, body `{"reason": "…"}`
//!   (a rejection needs one) — a decision, answered with the approval.
//!
//! Decisions go through [`super::decide()`], as the page's do.

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use warden_approvals::{ApprovalError, Status, Verdict};

use super::{AdminBody, BodyError, json_reply, read_body};
use crate::proxy::Warden;
use crate::proxy::relay::Body;

fn problem(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json_reply(status, &serde_json::json!({"error": message.to_string()}))
}

/// An approval as the API shows it (the arguments as approvers see them).
pub(super) fn shown(approval: &warden_approvals::Approval) -> serde_json::Value {
    serde_json::json!({
        "id": approval.id,
        "status": approval.status.as_str(),
        "route": approval.call.route,
        "upstream": approval.call.upstream,
        "tool": approval.call.tool,
        "arguments": serde_json::from_str::<serde_json::Value>(&approval.call.arguments_shown)
            .unwrap_or(serde_json::Value::Null),
        "arguments_digest": approval.arguments_digest,
        "rationale": approval.call.rationale,
        "agent": approval.call.principal_agent,
        "on_behalf_of": approval.call.principal_user,
        "agent_session": approval.call.agent_session,
        "policy_hash": approval.call.policy_hash,
        "approvals_required": approval.call.required,
        "created_ms": approval.call.created_ms,
        "expires_ms": approval.call.expires_ms,
        "reason": approval.reason,
        "decided_ms": approval.decided_ms,
        "executed_ms": approval.executed_ms,
        "votes": approval.votes.iter().map(|v| serde_json::json!({
            "approver": v.approver, "verdict": v.verdict.as_str(), "reason": v.reason, "at_ms": v.at_ms,
        })).collect::<Vec<_>>(),
    })
}

/// A 401 with its challenge.
fn refused(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    let mut response = problem(status, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"warden-approvals\""),
    );
    response
}

/// Answer one request under `/approvals`.
pub(super) async fn handle(warden: &Warden, request: Request<AdminBody>) -> Response<Body> {
    let Some(approvals) = &warden.approvals else {
        return problem(
            StatusCode::NOT_FOUND,
            "this Warden has no approvals section: no call is ever held",
        );
    };
    // Who asks: an approver's token, or (with `approvals.identity`) a JWT
    // or the connection's client certificate.
    let token = match request.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            Some(token) => Some(token),
            None => {
                return refused(
                    StatusCode::UNAUTHORIZED,
                    "the Authorization header must be Bearer <token>",
                );
            }
        },
    };
    let certificate = request
        .extensions()
        .get::<std::sync::Arc<warden_identity::ClientCertificate>>();
    let approver = match approvals.identify(token, certificate.map(|c| &**c)).await {
        Ok(approver) => approver,
        Err(refusal) if refusal.is_forbidden() => {
            return problem(StatusCode::FORBIDDEN, refusal);
        }
        Err(refusal) => return refused(StatusCode::UNAUTHORIZED, refusal),
    };
    let path = request.uri().path().to_owned();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (request.method().clone(), parts.as_slice()) {
        (Method::GET, ["approvals"]) => {
            let asked = request
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("status=")));
            let status = match asked {
                None => None,
                Some(text) => match Status::parse(text) {
                    Some(status) => Some(status),
                    None => {
                        return problem(
                            StatusCode::BAD_REQUEST,
                            "status must be pending, approved, rejected, expired, cancelled or abandoned",
                        );
                    }
                },
            };
            match approvals.store.list(status, 200).await {
                Ok(list) => json_reply(
                    StatusCode::OK,
                    &serde_json::Value::Array(list.iter().map(shown).collect()),
                ),
                Err(err) => problem(StatusCode::SERVICE_UNAVAILABLE, err),
            }
        }
        (Method::GET, ["approvals", id]) => match approvals.store.get(id).await {
            Ok(approval) => json_reply(StatusCode::OK, &shown(&approval)),
            Err(ApprovalError::NotFound { .. }) => {
                problem(StatusCode::NOT_FOUND, "no such approval")
            }
            Err(err) => problem(StatusCode::SERVICE_UNAVAILABLE, err),
        },
        (Method::POST, ["approvals", id, action @ ("approve" | "reject")]) => {
            let verdict = if *action == "approve" {
                Verdict::Approve
            } else {
                Verdict::Reject
            };
            let id = (*id).to_owned();
            let body = match read_body(request.into_body()).await {
                Ok(body) => body,
                Err(err @ BodyError::TooLarge) => {
                    return problem(StatusCode::PAYLOAD_TOO_LARGE, err);
                }
                Err(err @ BodyError::Unreadable) => return problem(StatusCode::BAD_REQUEST, err),
            };
            let reason = if body.is_empty() {
                None
            } else {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(value) => value
                        .get("reason")
                        .and_then(|r| r.as_str())
                        .map(str::to_owned),
                    Err(_) => {
                        return problem(
                            StatusCode::BAD_REQUEST,
                            "the body must be JSON: {\"reason\": \"…\"}",
                        );
                    }
                }
            };
            match super::decide(warden, &approver, &id, verdict, reason.as_deref(), None).await {
                Ok(decided) => json_reply(StatusCode::OK, &shown(&decided)),
                Err(err @ super::DecisionError::ReasonRequired) => problem(
                    err.status(),
                    "a rejection needs a reason: {\"reason\": \"…\"}",
                ),
                Err(err) => problem(err.status(), err),
            }
        }
        _ => problem(
            StatusCode::NOT_FOUND,
            "try GET /approvals, GET /approvals/{id}, POST /approvals/{id}/approve or …/reject",
        ),
    }
}
