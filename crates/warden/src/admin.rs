//! The admin listener (its own port): `/healthz`, `/readyz`, `/metrics`,
//! and the approvals API.
//!
//! Kept off the MCP listener so that an agent can never reach it and an
//! operator can firewall it separately.
//!
//! Approvals (an approver's token as `Authorization: Bearer`):
//! - `GET /approvals?status=pending` — the queue, newest first (JSON);
//! - `GET /approvals/{id}` — one approval;
//! - `POST /approvals/{id}/approve` and `…/reject`, body `{"reason": "…"}`
//!   (a rejection needs one) — a decision, answered with the approval.
//!
//! Slack's and the webhook's signed callbacks are answered by
//! [`crate::channels`]; every decision, whichever way it comes, is taken
//! by `decide`.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::proxy::Warden;
use crate::proxy::relay::{Body, full};

/// Largest approvals request body read.
const MAX_DECISION_BODY: usize = 16 << 10;

/// Answer one admin request.
pub async fn handle(warden: Arc<Warden>, request: Request<Incoming>) -> Response<Body> {
    // Slack's and the webhook's callbacks are signed, not token-bearing.
    if crate::channels::is_callback(request.uri().path()) {
        return crate::channels::callback(warden, request).await;
    }
    if request.uri().path() == "/approvals" || request.uri().path().starts_with("/approvals/") {
        return approvals(&warden, request).await;
    }
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => text(
            StatusCode::OK,
            format!("ready: {} route(s)\n", warden.routes.len()),
        ),
        "/metrics" => {
            let mut response = text(StatusCode::OK, warden.metrics.encode());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_reply(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn problem(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json_reply(status, &serde_json::json!({"error": message.to_string()}))
}

/// An approval as the API shows it (the arguments as approvers see them).
fn shown(approval: &warden_approvals::Approval) -> serde_json::Value {
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn approvals(warden: &Warden, request: Request<Incoming>) -> Response<Body> {
    use warden_approvals::{ApprovalError, Status, Verdict};
    let Some(approvals) = &warden.approvals else {
        return problem(
            StatusCode::NOT_FOUND,
            "this Warden has no approvals section: no call is ever held",
        );
    };
    // Who asks: an approver's token, compared in constant time.
    let approver = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| approvals.approvers.check(token.trim()));
    let Some(approver) = approver else {
        let mut response = problem(
            StatusCode::UNAUTHORIZED,
            "send an approver's token: Authorization: Bearer <token>",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"warden-approvals\""),
        );
        return response;
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
            let body = http_body_util::Limited::new(request.into_body(), MAX_DECISION_BODY);
            let body = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                http_body_util::BodyExt::collect(body),
            )
            .await
            {
                Ok(Ok(body)) => body.to_bytes(),
                _ => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        "the body could not be read (at most 16 KiB, within 10 s)",
                    );
                }
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
            if verdict == Verdict::Reject && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "a rejection needs a reason: {\"reason\": \"…\"}",
                );
            }
            match decide(
                warden,
                &id,
                &approver.agent,
                None,
                verdict,
                reason.as_deref(),
            )
            .await
            {
                Ok(decided) => json_reply(StatusCode::OK, &shown(&decided)),
                Err(err) => problem(err.status(), err),
            }
        }
        _ => problem(
            StatusCode::NOT_FOUND,
            "try GET /approvals, GET /approvals/{id}, POST /approvals/{id}/approve or …/reject",
        ),
    }
}

// === decisions ===

/// Why [`decide`] took no decision.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecideError {
    /// This Warden has no approval queue.
    #[error("this Warden has no approvals section: no call is ever held")]
    NoQueue,
    /// No approval has this id.
    #[error("no such approval")]
    NotFound,
    /// The tool's rule names other approvers.
    #[error("{approver} may not decide calls to {tool}")]
    NotAllowed {
        /// Who tried.
        approver: String,
        /// The held call's tool.
        tool: String,
    },
    /// The store refused the vote (not pending, voted already, the user's
    /// own call) or failed.
    #[error(transparent)]
    Store(warden_approvals::ApprovalError),
}

impl DecideError {
    /// The HTTP status that says it.
    pub(crate) fn status(&self) -> StatusCode {
        use warden_approvals::ApprovalError;
        match self {
            DecideError::NoQueue | DecideError::NotFound => StatusCode::NOT_FOUND,
            DecideError::NotAllowed { .. } => StatusCode::FORBIDDEN,
            DecideError::Store(err) => match err {
                ApprovalError::NotPending { .. } | ApprovalError::AlreadyDecided { .. } => {
                    StatusCode::CONFLICT
                }
                ApprovalError::OwnCall { .. } => StatusCode::FORBIDDEN,
                ApprovalError::NotFound { .. } => StatusCode::NOT_FOUND,
                ApprovalError::Store(_) | ApprovalError::Migrate(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            },
        }
    }
}

/// One approver's vote on approval `id`, however it came (the API, Slack,
/// the webhook), so that every way applies the same rules: the tool's rule
/// in force says who may decide and whether the user the call acts for
/// may approve it; the vote is one store transaction; a request waiting on
/// it here is woken; a vote that ends the approval is an audit record
/// naming the approver and, when not the API, the channel (`via`:
/// `grace (slack)`).
pub(crate) async fn decide(
    warden: &Warden,
    id: &str,
    approver: &str,
    via: Option<&str>,
    verdict: warden_approvals::Verdict,
    reason: Option<&str>,
) -> Result<warden_approvals::Approval, DecideError> {
    use warden_approvals::{ApprovalError, Status};
    let approvals = warden.approvals.as_ref().ok_or(DecideError::NoQueue)?;
    let held = match approvals.store.get(id).await {
        Ok(held) => held,
        Err(ApprovalError::NotFound { .. }) => return Err(DecideError::NotFound),
        Err(err) => return Err(DecideError::Store(err)),
    };
    // The rule in force says who may approve, and whether the user the
    // call acts for may.
    let rule = warden
        .routes
        .iter()
        .find(|r| *r.path == held.call.route)
        .map(|r| r.policy.load().hold_of(&held.call.tool))
        .unwrap_or_default();
    if !rule.approvers.is_empty() && !rule.approvers.iter().any(|a| **a == *approver) {
        return Err(DecideError::NotAllowed {
            approver: approver.to_owned(),
            tool: held.call.tool,
        });
    }
    let decided = approvals
        .store
        .decide(id, approver, verdict, reason, rule.allow_own, now_ms())
        .await
        .map_err(|err| match err {
            ApprovalError::NotFound { .. } => DecideError::NotFound,
            err => DecideError::Store(err),
        })?;
    approvals.wakeups.wake(id);
    let recorded_as = via.map_or_else(|| approver.to_owned(), |via| format!("{approver} ({via})"));
    if let Some(audit) = &warden.audit
        && decided.status != Status::Pending
    {
        let mut record = audit.new_record(warden_audit::Kind::ApprovalDecided);
        record.route = Some(decided.call.route.as_str().into());
        record.tool = Some(decided.call.tool.clone());
        record.decision = Some(decided.status.as_str().to_owned().into());
        record.reason = decided.reason.clone().map(Into::into);
        record.approval = Some(warden_audit::record::ApprovalField {
            id: decided.id.clone(),
            approver: Some(recorded_as.clone()),
        });
        audit.record(record);
    }
    tracing::info!(approval = %id, approver = %recorded_as, status = decided.status.as_str(), "Approval decided.");
    Ok(decided)
}
