//! The channels' callbacks on the admin listener: Slack's button clicks
//! (`POST /approvals/slack/interactions`) and signed webhook decisions
//! (`POST /approvals/webhook/decisions`).
//!
//! Each is checked before its body is parsed (timestamp, signature,
//! replay), then decided through `admin::decide` as the approver it
//! names or is mapped to. A refusal decides nothing.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};
use warden_approvals::Verdict;

use super::signature::{Scheme, SignatureError};
use super::{
    Channel, Channels, MAX_CALLBACK_BODY, SLACK_ANSWER_WITHIN, SLACK_INTERACTIONS, SLACK_SECRET,
    WEBHOOK_ANSWER_WITHIN, WEBHOOK_DECISIONS, WEBHOOK_SECRET, now_secs, slack, webhook,
};
use crate::approvals::Approver;
use crate::proxy::Warden;
use crate::proxy::relay::{Body, full};

/// Whether `path` is one of the channels' callbacks (answered by
/// `callback`, not the token-bearing approvals API).
pub(crate) fn is_callback(path: &str) -> bool {
    path == SLACK_INTERACTIONS || path == WEBHOOK_DECISIONS
}

fn reply(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn problem(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    reply(status, &json!({"error": message.to_string()}))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A refused signature: its status and metric result.
fn refusal(err: &SignatureError) -> (StatusCode, &'static str) {
    match err {
        SignatureError::MissingTimestamp { .. }
        | SignatureError::MissingSignature { .. }
        | SignatureError::BadTimestamp { .. }
        | SignatureError::Malformed { .. }
        | SignatureError::Mismatch => (StatusCode::UNAUTHORIZED, "bad_signature"),
        SignatureError::Stale { .. } => (StatusCode::UNAUTHORIZED, "stale"),
        SignatureError::Replayed => (StatusCode::CONFLICT, "replayed"),
        SignatureError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
    }
}

/// Answer a callback from Slack or the webhook.
pub(crate) async fn callback(
    warden: Arc<Warden>,
    request: Request<crate::admin::AdminBody>,
) -> Response<Body> {
    let channel = if request.uri().path() == SLACK_INTERACTIONS {
        Channel::Slack
    } else {
        Channel::Webhook
    };
    let Some(channels) = warden
        .approvals
        .as_ref()
        .and_then(|a| a.channels.clone())
        .filter(|c| match channel {
            Channel::Slack => c.slack.is_some(),
            Channel::Webhook => c.webhook.is_some(),
        })
    else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("this Warden has no approvals.{} section", channel.as_str()),
        );
    };
    if request.method() != Method::POST {
        return problem(StatusCode::METHOD_NOT_ALLOWED, "POST only");
    }
    let within = match channel {
        Channel::Slack => SLACK_ANSWER_WITHIN,
        Channel::Webhook => WEBHOOK_ANSWER_WITHIN,
    };
    let deadline = tokio::time::Instant::now() + within;
    let (parts, body) = request.into_parts();
    let body =
        match tokio::time::timeout_at(deadline, Limited::new(body, MAX_CALLBACK_BODY).collect())
            .await
        {
            Ok(Ok(body)) => body.to_bytes(),
            _ => {
                Channels::count(&channels.callbacks, channel, "bad_request");
                return problem(
                    StatusCode::BAD_REQUEST,
                    "the body could not be read (at most 64 KiB, promptly)",
                );
            }
        };
    let now = now_secs();
    // Verified before anything reads the body.
    let (secret, scheme, seen) = match channel {
        Channel::Slack => (
            channels
                .slack
                .as_ref()
                .map(|s| s.signing_secret.current(SLACK_SECRET)),
            Scheme::Slack,
            &channels.slack_seen,
        ),
        Channel::Webhook => (
            channels
                .webhook
                .as_ref()
                .map(|w| w.secret.current(WEBHOOK_SECRET)),
            Scheme::Warden,
            &channels.webhook_seen,
        ),
    };
    let secret = match secret {
        Some(Ok(secret)) => secret,
        Some(Err(err)) => {
            tracing::error!(channel = channel.as_str(), error = %err, "Cannot read the channel's secret; its callback is refused.");
            Channels::count(&channels.callbacks, channel, "unavailable");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Warden cannot read this channel's secret now",
            );
        }
        None => return problem(StatusCode::NOT_FOUND, "no such channel"),
    };
    let verified = scheme
        .verify(
            secret.expose().as_bytes(),
            header(&parts.headers, scheme.timestamp_header()),
            header(&parts.headers, scheme.signature_header()),
            &body,
            now,
        )
        .and_then(|signed| seen.first_time(&signed, now));
    if let Err(err) = verified {
        let (status, result) = refusal(&err);
        tracing::warn!(channel = channel.as_str(), reason = result, error = %err, "Refused a callback; nothing was decided.");
        Channels::count(&channels.callbacks, channel, result);
        return problem(status, err);
    }
    match channel {
        Channel::Slack => slack_click(warden, channels, &body, deadline).await,
        Channel::Webhook => webhook_decision(warden, channels, &body, deadline).await,
    }
}

/// A verified click: decided as the Slack user's approver, answered by the
/// deadline whatever the store does.
async fn slack_click(
    warden: Arc<Warden>,
    channels: Arc<Channels>,
    body: &[u8],
    deadline: tokio::time::Instant,
) -> Response<Body> {
    let click = match slack::click(body) {
        Ok(click) => click,
        Err(err) => {
            Channels::count(&channels.callbacks, Channel::Slack, "bad_request");
            return problem(StatusCode::BAD_REQUEST, err);
        }
    };
    let approver = channels
        .slack
        .as_ref()
        .and_then(|s| s.users.get(&click.user))
        .cloned();
    let Some(approver) = approver else {
        tracing::warn!(channel = "slack", slack_user = %click.user, approval = %click.approval, "A Slack user not mapped to an approver clicked; nothing was decided.");
        Channels::count(&channels.callbacks, Channel::Slack, "unmapped_user");
        let message = slack::ephemeral(&format!(
            "Nothing was decided: your Slack account ({}) is not one of Warden's approvers (approvals.slack.users).",
            click.user
        ));
        let follow = message.clone();
        let task = Arc::clone(&channels);
        tokio::spawn(async move { task.follow_up(click.response_url.as_deref(), follow).await });
        return reply(StatusCode::OK, &message);
    };
    let (verdict, reason) = if click.approve {
        (Verdict::Approve, None)
    } else {
        // Slack's buttons carry no reason; the agent is told who.
        (
            Verdict::Reject,
            Some(format!("rejected in Slack by {approver}")),
        )
    };
    let (told, answer) = tokio::sync::oneshot::channel::<String>();
    let task = Arc::clone(&channels);
    // A task of its own: a decision taken after Slack's deadline is still
    // taken whole (woken, audited) and Slack's message still updated.
    tokio::spawn(async move {
        let decided = crate::admin::decide(
            &warden,
            &Approver::named(&approver),
            &click.approval,
            verdict,
            reason.as_deref(),
            Some(Channel::Slack.as_str()),
        )
        .await;
        let (text, follow) = match &decided {
            Ok(approval) => {
                Channels::count(&task.callbacks, Channel::Slack, "decided");
                let text = slack::outcome(approval, &approver);
                let follow = if approval.status == warden_approvals::Status::Pending {
                    slack::ephemeral(&text)
                } else {
                    let mut replaced = slack::message(approval, Some(&text));
                    replaced["replace_original"] = Value::Bool(true);
                    replaced
                };
                (text, follow)
            }
            Err(err) => {
                Channels::count(&task.callbacks, Channel::Slack, "refused");
                // The error names the tool, which is anyone's to choose.
                let (said, _) = slack::escape_within(&err.to_string(), 2000);
                let text = format!("Nothing was decided: {said}.");
                (text.clone(), slack::ephemeral(&text))
            }
        };
        let _ = told.send(text);
        task.follow_up(click.response_url.as_deref(), follow).await;
    });
    let text = match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(text)) => text,
        _ => "Warden is still recording your decision; the message will say when it is.".to_owned(),
    };
    reply(StatusCode::OK, &slack::ephemeral(&text))
}

/// A verified webhook decision.
async fn webhook_decision(
    warden: Arc<Warden>,
    channels: Arc<Channels>,
    body: &[u8],
    deadline: tokio::time::Instant,
) -> Response<Body> {
    let decision = match webhook::decision(body) {
        Ok(decision) => decision,
        Err(err) => {
            Channels::count(&channels.callbacks, Channel::Webhook, "bad_request");
            return problem(StatusCode::BAD_REQUEST, err);
        }
    };
    if !channels.approvers.contains(&decision.approver)
        && !channels.identity_agents.contains(&decision.approver)
    {
        Channels::count(&channels.callbacks, Channel::Webhook, "refused");
        return problem(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not one of the configured approvers (approvals.approvers, or approvals.identity.allow.agents)",
                decision.approver
            ),
        );
    }
    // A task of its own: the caller hanging up does not cut a decision
    // half-way (woken but not audited).
    let task = tokio::spawn(async move {
        crate::admin::decide(
            &warden,
            &Approver::named(&decision.approver),
            &decision.approval_id,
            decision.verdict,
            decision.reason.as_deref(),
            Some(Channel::Webhook.as_str()),
        )
        .await
    });
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(Ok(decided))) => {
            Channels::count(&channels.callbacks, Channel::Webhook, "decided");
            reply(
                StatusCode::OK,
                &json!({
                    "id": decided.id,
                    "status": decided.status.as_str(),
                    "reason": decided.reason,
                    "approvals_required": decided.call.required,
                    "votes": decided.votes.iter().map(|v| json!({
                        "approver": v.approver, "verdict": v.verdict.as_str(), "reason": v.reason, "at_ms": v.at_ms,
                    })).collect::<Vec<_>>(),
                }),
            )
        }
        Ok(Ok(Err(err))) => {
            Channels::count(&channels.callbacks, Channel::Webhook, "refused");
            problem(err.status(), err)
        }
        Ok(Err(_)) | Err(_) => {
            Channels::count(&channels.callbacks, Channel::Webhook, "unavailable");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the decision did not complete in time; look at the approval before sending it again",
            )
        }
    }
}
