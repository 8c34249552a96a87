//! POST: the agent sends a message (or, in MCP 2025-03-26, a batch).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use warden_audit::otlp::{Outcome, RequestSpan, Transport};
use warden_pipeline::Answer;
use warden_pipeline::agent_session::{self, SessionCandidates};
use warden_pipeline::{
    CallMeta, FactHeaders, ListReply, MetaText, Principal, ReplyTap, ToolCall, ToolOutcome,
    filter_tools_list,
};
use warden_policy::ToolFacts;
use warden_protocol::sse::SseEvent;
use warden_protocol::{Envelope, MessageKind, mcp};

use super::relay::{self, Body, BoxError, clean_headers, filtered_list_stream, json, streaming};
use super::{Failure, Route, Warden, accepts, confirm, stateless, tasks};
use crate::error::EdgeError;
use crate::forward::Forward;
use crate::session::{Lookup, Session};
use crate::upstream::{MAX_INSPECTED_REPLY, is_event_stream};

/// Oversized bodies are drained up to at least this much before the 413.
const MIN_DISCARD_CAP: usize = 16 << 20;
/// Most messages in one batch (the TypeScript SDK's own limit).
const MAX_BATCH: usize = 100;
/// Messages of one batch in flight to the upstream at once.
const BATCH_CONCURRENCY: usize = 8;

/// Answer a POST on `route`.
pub(super) async fn handle(
    warden: &Arc<Warden>,
    route: &Route,
    request: Request<impl super::AgentBody>,
    principal: Arc<Principal>,
) -> Result<Response<Body>, Failure> {
    let (parts, body) = request.into_parts();
    check_headers(&parts.headers)?;
    let body = read_body(body, &parts.headers, warden).await?;
    // Shared, not copied, with the pipeline's forwarder.
    let headers = Arc::new(parts.headers);
    match warden_protocol::Incoming::parse(&body).map_err(EdgeError::from)? {
        warden_protocol::Incoming::Single(message) if message.is_initialize() => {
            initialize(warden, route, &headers, message, principal).await
        }
        warden_protocol::Incoming::Single(message)
            if !headers.contains_key(mcp::HEADER_SESSION_ID)
                && stateless::is_stateless(&headers, &message) =>
        {
            stateless::handle(warden, route, &headers, message, &principal).await
        }
        warden_protocol::Incoming::Single(message) => {
            let session = warden
                .session(route, &headers, &principal)
                .map_err(|err| Failure::with_id(err, message.id_json().into()))?;
            one(warden, route, &session, &headers, message, &principal).await
        }
        warden_protocol::Incoming::Batch(_) if stateless::names_stateless_revision(&headers) => {
            Err(EdgeError::StatelessInvalid {
                detail: "the stateless revision has no batches: send one message per request",
            }
            .into())
        }
        warden_protocol::Incoming::Batch(messages) => {
            batch(warden, route, &headers, messages, &principal).await
        }
    }
}

/// The agent must accept both reply forms, send JSON, and send it unencoded
/// (Warden must read exactly what the upstream will read).
fn check_headers(headers: &HeaderMap) -> Result<(), EdgeError> {
    if !(accepts(headers, "application/json") && accepts(headers, "text/event-stream")) {
        return Err(EdgeError::NotAcceptable {
            needed: "application/json and text/event-stream",
        });
    }
    // One Content-Type, one Content-Encoding at most: a second copy is what
    // another parser might read instead of the first.
    if headers.get_all(header::CONTENT_TYPE).iter().count() > 1 {
        return Err(EdgeError::UnsupportedMediaType);
    }
    if headers.get_all(header::CONTENT_ENCODING).iter().count() > 1 {
        return Err(EdgeError::UnsupportedEncoding {
            encoding: "(repeated header)".to_owned(),
        });
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut params = content_type.split(';').map(str::trim);
    let media_type = params.next().unwrap_or_default();
    let params_ok = params.all(|p| match p.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let charset = value.trim().trim_matches('"');
            charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
        }
        Some(_) => true,
        None => false,
    });
    if !media_type.eq_ignore_ascii_case("application/json") || !params_ok {
        return Err(EdgeError::UnsupportedMediaType);
    }
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(EdgeError::UnsupportedEncoding {
            encoding: String::from_utf8_lossy(encoding.as_bytes()).into_owned(),
        });
    }
    Ok(())
}

/// Read the whole body, within the size limit and the body timeout.
async fn read_body(
    mut body: impl super::AgentBody,
    headers: &HeaderMap,
    warden: &Warden,
) -> Result<Bytes, EdgeError> {
    let limit = warden.limits.max_body;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // An oversized body is still read (and thrown away) up to a cap, so the
    // client finishes sending and reads the 413 rather than a reset.
    let discard_cap = limit.saturating_mul(4).max(MIN_DISCARD_CAP);
    let mut too_large = declared.is_some_and(|length| length > limit as u64);
    if declared.is_some_and(|length| length > discard_cap as u64) {
        return Err(EdgeError::BodyTooLarge { limit });
    }
    let deadline = tokio::time::Instant::now() + warden.limits.body_timeout;
    let mut received = 0usize;
    let mut chunks: Vec<Bytes> = Vec::with_capacity(1);
    loop {
        // `timeout_at` arms no timer when the frame is already here.
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(_))) if !too_large => {
                return Err(EdgeError::BodyNotReceived {
                    detail: "the connection failed while sending it",
                });
            }
            Err(_) if !too_large => {
                return Err(EdgeError::BodyNotReceived {
                    detail: "it did not arrive within the body timeout",
                });
            }
            Ok(Some(Err(_))) | Err(_) => return Err(EdgeError::BodyTooLarge { limit }),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received = received.saturating_add(data.len());
        too_large |= received > limit;
        if received > discard_cap {
            return Err(EdgeError::BodyTooLarge { limit });
        }
        if !too_large {
            chunks.push(data);
        }
    }
    if too_large {
        return Err(EdgeError::BodyTooLarge { limit });
    }
    // One frame (the usual case) is passed on without a copy.
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => chunks.concat().into(),
    })
}

/// `initialize`: forwarded with the agent's own capabilities; Warden mints
/// its own session id for the agent and keeps the upstream's to itself.
async fn initialize(
    warden: &Arc<Warden>,
    route: &Route,
    headers: &HeaderMap,
    message: Envelope,
    principal: Arc<Principal>,
) -> Result<Response<Body>, Failure> {
    let id: Arc<str> = message.id_json().into();
    let elicits = confirm::declares_elicitation(&message.raw);
    // Kept only to open other lanes with, and copied: a slice would pin the
    // whole request body for the session's life.
    let initialize_message = (route.lanes.len() > 1
        && message.raw.len() <= crate::lanes::MAX_KEPT_INITIALIZE)
        .then(|| Bytes::copy_from_slice(&message.raw));
    let response = route
        .upstream
        .send(Method::POST, headers, None, message.raw)
        .await
        .map_err(|err| Failure::with_id(err, id.clone()))?;
    if !response.status().is_success() {
        return Ok(relay::relay(response, None));
    }
    let upstream_id = response.headers().get(mcp::HEADER_SESSION_ID).cloned();
    let (session, evicted) = warden
        .sessions
        .open(route.index, upstream_id, principal, initialize_message)
        .map_err(|err| Failure::with_id(err, id.clone()))?;
    if let Some(evicted) = evicted {
        warden.metrics.sessions_evicted.inc();
        tracing::warn!(session = %evicted.id, agent = %evicted.principal.agent, "Session limit reached; least recently used session ended.");
        warden.session_ended(&evicted, "evicted");
        warden.end_upstream_session(&evicted).await;
    }
    session.set_client_elicits(elicits);
    warden.metrics.sessions.set(warden.sessions.len() as i64);
    warden.record_session(warden_audit::Kind::SessionStarted, &session, "initialize");
    tracing::debug!(session = %session.id, route = %route.path, agent = %session.principal.agent, "Session opened.");
    // Warden answers task-augmented calls itself (held and refused ones):
    // its result gains the task capability, and records the revision.
    let mut response = if is_event_stream(response.headers()) {
        let (mut parts, body) = response.into_parts();
        clean_headers(&mut parts.headers, Some(&session));
        parts.headers.remove(header::CONTENT_LENGTH);
        streaming(parts, tasks::initialize_stream(body, session.clone()))
    } else {
        // A JSON initialize result is one small message: read it whole.
        let (mut parts, body) = response.into_parts();
        let bytes = read_whole(route, body, "initialize")
            .await
            .map_err(|err| Failure::with_id(err, id.clone()))?;
        relay::record_negotiated_version(&session, &bytes);
        clean_headers(&mut parts.headers, Some(&session));
        let bytes = match tasks::with_task_capability(&bytes) {
            Some((edited, upstream_lists)) => {
                session.set_upstream_lists_tasks(upstream_lists);
                parts.headers.remove(header::CONTENT_LENGTH);
                edited
            }
            None => bytes,
        };
        Response::from_parts(parts, relay::full(bytes))
    };
    if let Ok(value) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert(mcp::HEADER_SESSION_ID, value);
    }
    Ok(response)
}

/// One message of an open session (or of a route's stateless requests).
pub(super) async fn one(
    warden: &Arc<Warden>,
    route: &Route,
    session: &Arc<Session>,
    headers: &Arc<HeaderMap>,
    message: Envelope,
    principal: &Arc<Principal>,
) -> Result<Response<Body>, Failure> {
    if message.tool_call.is_some() {
        return tool_call(warden, route, session, headers, message, principal).await;
    }
    let is_list = message.kind == MessageKind::Request
        && message.method.as_deref() == Some(mcp::METHOD_TOOLS_LIST);
    // A list asked for before a change notice must not be learned from after it.
    let generation = session.begin_fetch();
    let id: Arc<str> = message.id_json().into();
    // A request's span (a no-op without OTLP) lasts until the upstream's
    // response headers: the stream after them is the agent's to read.
    let span = (warden.telemetry.is_enabled() && message.kind == MessageKind::Request).then(|| {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let is_stateless = session.is_detached();
        warden.telemetry.request_span(RequestSpan {
            method: message.method.as_deref().unwrap_or_default(),
            tool: None,
            session: (!is_stateless).then_some(&*session.id),
            agent: Some(&principal.agent),
            user: principal.on_behalf_of.as_deref(),
            protocol_version: session
                .negotiated_version()
                .or_else(|| header(mcp::HEADER_PROTOCOL_VERSION)),
            request_id: Some(&id),
            transport: Transport::Tcp,
            traceparent: header("traceparent"),
            tracestate: header("tracestate"),
        })
    });
    if message.kind == MessageKind::Response
        && message
            .id_json()
            .strip_prefix('"')
            .is_some_and(|id| id.starts_with(confirm::CONFIRM_ID_PREFIX))
        && let Some(id) = message
            .id
            .as_deref()
            .and_then(|id| serde_json::from_str::<String>(id.get()).ok())
        && session.answer_confirmation(
            &id,
            serde_json::from_slice(&message.raw).unwrap_or(serde_json::Value::Null),
        )
    {
        // The user's answer to Warden's own confirmation request.
        let mut accepted = Response::new(relay::empty());
        *accepted.status_mut() = StatusCode::ACCEPTED;
        return Ok(accepted);
    }
    withdraw_if_held(warden, session, &message).await;
    if let Some(answered) =
        tasks::task_request(warden, route, session, headers, &message, principal).await
    {
        return answered;
    }
    let started = std::time::Instant::now();
    let sent = match message_lane(route, session, &message).await {
        // The agent's answer to a lane's request, or a cancellation of a
        // call running in a lane: to that lane's upstream session.
        Some((lane, upstream_session, body)) => {
            route.lanes[lane]
                .upstream
                .send(Method::POST, headers, upstream_session.as_ref(), body)
                .await
        }
        None => {
            route
                .upstream
                .send(
                    Method::POST,
                    headers,
                    session.upstream_id.as_ref(),
                    message.raw,
                )
                .await
        }
    };
    if let Some(span) = span {
        let error_type = match &sent {
            Ok(response) if response.status().is_success() => None,
            Ok(_) => Some("http_error"),
            Err(err) => Some(err.reason()),
        };
        span.end(Outcome {
            error_type,
            upstream_duration: Some(started.elapsed()),
            ..Outcome::default()
        });
    }
    let response = sent.map_err(|err| Failure::with_id(err, id.clone()))?;
    warden.end_if_gone(route, session, response.status()).await;
    if is_list && response.status().is_success() {
        return tools_list(route, session, principal, response, &id, generation)
            .await
            .map_err(|err| Failure::with_id(err, id));
    }
    Ok(relay::relay(response, Some(session)))
}

/// A `notifications/cancelled` for a call held for approval withdraws the
/// approval: the waiting request answers `cancelled`, and it never runs.
async fn withdraw_if_held(warden: &Warden, session: &Session, message: &Envelope) {
    if warden.approvals.is_none() {
        return;
    }
    if message.kind != MessageKind::Notification
        || message.method.as_deref() != Some(mcp::NOTIFICATION_CANCELLED)
        || session.is_detached()
    {
        return;
    }
    let Some(request_id) = serde_json::from_slice::<serde_json::Value>(&message.raw)
        .ok()
        .and_then(|v| {
            v.pointer("/params/requestId")
                .map(serde_json::Value::to_string)
        })
    else {
        return;
    };
    withdraw(warden, &session.id, &request_id).await;
}

/// Withdraw the approval the call `request_id` of `agent_session` waits on,
/// if it waits on one: the hold answers `cancelled`, and the call never runs.
pub(super) async fn withdraw(warden: &Warden, agent_session: &str, request_id: &str) {
    let Some(approvals) = &warden.approvals else {
        return;
    };
    let Some(id) = approvals.wakeups.held_by(agent_session, request_id) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match approvals
        .store
        .end(&id, warden_approvals::Status::Cancelled, now)
        .await
    {
        Ok(true) => {
            tracing::info!(approval = %id, session = %agent_session, "The agent withdrew its held call.");
            approvals.wakeups.wake(&id);
            if let (Some(audit), Ok(approval)) = (&warden.audit, approvals.store.get(&id).await) {
                audit.record(warden_pipeline::approval_record(
                    audit,
                    warden_audit::Kind::ApprovalDecided,
                    &approval,
                    "cancelled",
                    None,
                ));
            }
        }
        Ok(false) => {}
        Err(err) => tracing::warn!(approval = %id, error = %err, "Could not withdraw a held call."),
    }
}

/// Where a message that is not a tool call goes when it belongs to a lane
/// other than the base one: the agent's answer to a request a lane's
/// server sent (its id is put back to the server's own), or its
/// cancellation of a call a lane runs. `None`: the base lane. Only a lane
/// already open is used.
async fn message_lane(
    route: &Route,
    session: &Arc<Session>,
    message: &Envelope,
) -> Option<(usize, Option<HeaderValue>, Bytes)> {
    if route.lanes.len() < 2 || session.is_detached() {
        return None;
    }
    let (lane, body) = match message.kind {
        MessageKind::Response => {
            let (lane, original) = session.take_lane_request(message.id_json())?;
            let mut value: serde_json::Value = serde_json::from_slice(&message.raw).ok()?;
            value["id"] = serde_json::from_str(&original).ok()?;
            (lane, Bytes::from(serde_json::to_vec(&value).ok()?))
        }
        MessageKind::Notification
            if message.method.as_deref() == Some(mcp::NOTIFICATION_CANCELLED) =>
        {
            let value: serde_json::Value = serde_json::from_slice(&message.raw).ok()?;
            let id = value.pointer("/params/requestId")?.to_string();
            (session.call_lane(&id)?, message.raw.clone())
        }
        _ => return None,
    };
    if lane == route.base_lane {
        return None;
    }
    let upstream_session = route.pending_lane(session, lane).open_session_id().await?;
    Some((lane, upstream_session, body))
}

/// `tools/call`: decided by the route's pipeline on the tool's catalogue facts.
async fn tool_call(
    warden: &Arc<Warden>,
    route: &Route,
    session: &Arc<Session>,
    headers: &Arc<HeaderMap>,
    message: Envelope,
    principal: &Arc<Principal>,
) -> Result<Response<Body>, Failure> {
    let id: Arc<str> = message.id_json().into();
    let (tool, arguments, meta, task) = match message.tool_call {
        Some(call) => (call.name, call.arguments, call.meta, call.task),
        None => (String::new(), None, None, None),
    };
    // A task-augmented call (2025-11-25; the stateless revision ignores
    // `params.task`): Warden's own answers to it are tasks.
    let as_task = if session.is_detached() {
        None
    } else {
        tasks::requested(task.as_deref())
    };
    let facts = facts_for(warden, route, session, headers, &tool)
        .await
        .map_err(|err| Failure::with_id(err, id.clone()))?;
    // What the call says about itself: read once, here, for every layer.
    let raw_meta = meta;
    let meta = {
        let picked = FactHeaders::pick(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())));
        CallMeta::read(raw_meta.as_deref(), |name| picked.get(name))
    };
    let principal = principal.clone();
    // A mutating call's `dryRun` is Warden's (unless its rule says the
    // upstream previews): read, and taken off what the upstream receives.
    let mut forwarded = message.raw;
    let mut arguments = arguments;
    let mut dry_run = warden_pipeline::DryRun::No;
    let held_tier;
    let confirm_tier;
    let can_ask;
    {
        let policy = route.policy.load();
        let decided = policy.decide(
            &tool,
            facts.as_ref(),
            &warden_pipeline::caller_of(&principal),
        );
        confirm_tier = matches!(
            decided,
            warden_policy::Decision::Allow {
                tier: warden_policy::Tier::Confirm
            }
        );
        // Whether the user can be asked: the session's client declared
        // elicitation (stateful), or this call's `_meta` does (stateless);
        // read only for a confirm-tier call.
        can_ask = confirm_tier
            && if session.is_detached() {
                confirm::declares_elicitation_in_meta(raw_meta.as_deref())
            } else {
                session.client_elicits()
            };
        // A confirm-tier call nobody can be asked about may fall back to a hold.
        let falls_back_to_hold = confirm_tier
            && !can_ask
            && policy.hold_of(&tool).fallback == warden_policy::ConfirmFallback::Approve;
        held_tier = falls_back_to_hold
            || matches!(
                decided,
                warden_policy::Decision::Allow {
                    tier: warden_policy::Tier::Approve
                }
            );
        let mutating = matches!(decided, warden_policy::Decision::Allow { tier } if tier != warden_policy::Tier::Read);
        if mutating
            && policy.dry_run_of(&tool) == warden_policy::DryRunMode::Gateway
            && let Some((asked, stripped, edited)) =
                warden_pipeline::dry_run::take_flag(arguments.as_deref(), &forwarded)
        {
            dry_run = asked;
            arguments = stripped;
            forwarded = edited;
        }
    }
    // A held call's task is Warden's own: an approved call reaches the
    // upstream without `params.task`, so its preview shows it so too.
    if held_tier
        && as_task.is_some()
        && dry_run != warden_pipeline::DryRun::No
        && let Some(plain) = tasks::without_params(&forwarded, &["task"])
    {
        forwarded = plain;
    }
    let input_schema = session.input_schema(&tool);
    // The call's lane: its credential's own upstream session, opened by
    // the forwarder (after the policy allowed the call), so it is never
    // answered in a session another credential opened.
    let lane_index = route.lane_of_tool(&route.policy.load(), &tool);
    let lane = (lane_index != route.base_lane).then(|| crate::forward::Lane {
        upstream: route.lanes[lane_index].upstream.clone(),
        pending: (!session.is_detached()).then(|| route.pending_lane(session, lane_index)),
    });
    let upstream_session = match &lane {
        None => session.upstream_id.clone(),
        Some(_) => None,
    };
    let reply_lane = lane.as_ref().map(|_| lane_index);
    if lane.is_none() && route.lanes.len() > 1 && !session.is_detached() {
        // A base call may reuse the id of an earlier lane call: its
        // cancellation must not go to that lane. (A lane call is noted by
        // the forwarder, once the policy let it through.)
        session.note_call_lane(&id, route.base_lane);
    }
    let mut tap = ReplyTap::default();
    let is_stateless = session.is_detached();
    // The request's span (a no-op without OTLP): ended by the reply's
    // summary when forwarded, at once when refused.
    let span = warden.telemetry.is_enabled().then(|| {
        warden.telemetry.request_span(RequestSpan {
            method: "tools/call",
            tool: Some(&tool),
            session: (!is_stateless).then_some(&*session.id),
            agent: Some(&principal.agent),
            user: principal.on_behalf_of.as_deref(),
            protocol_version: session.negotiated_version().or_else(|| {
                headers
                    .get(mcp::HEADER_PROTOCOL_VERSION)
                    .and_then(|v| v.to_str().ok())
            }),
            request_id: Some(&id),
            transport: Transport::Tcp,
            traceparent: meta.traceparent.as_deref(),
            tracestate: meta.tracestate.as_deref(),
        })
    });
    // The upstream continues Warden's span: the one edit of the forwarded
    // message tracing makes (`audit.otlp.propagate`).
    if warden.telemetry_propagates
        && let Some(parent) = span.as_ref().and_then(|s| s.traceparent())
        && let Some(edited) = with_trace_context(
            &forwarded,
            &parent,
            span.as_ref().and_then(|s| s.tracestate()),
        )
    {
        forwarded = edited;
    }
    // Whichever ends first takes the span: the reply, or a refusal.
    let span = span.map(|span| Arc::new(std::sync::Mutex::new(Some(span))));
    if let Some(slot) = span.clone() {
        tap.on_reply(move |reply| {
            let Some(span) = slot.lock().ok().and_then(|mut s| s.take()) else {
                return;
            };
            let code;
            let error_type = match &reply.answer {
                Answer::Result { is_error: false } => None,
                Answer::Result { is_error: true } => Some("tool_error"),
                Answer::Error { code: Some(c) } => {
                    code = c.to_string();
                    Some(code.as_str())
                }
                Answer::Error { code: None } => Some("error"),
                Answer::Missing(_) => Some("missing_response"),
            };
            span.end(Outcome {
                error_type,
                decision: Some("allow"),
                upstream_duration: Some(reply.latency),
                ..Outcome::default()
            });
        });
    }
    let durations = route.counters.durations.clone();
    tap.on_reply(move |reply| {
        durations
            .of(&reply.answer)
            .observe(reply.latency.as_secs_f64());
    });
    // A stateful MCP session always names the agent session; the header and
    // `_meta` fallbacks serve the stateless revision, and without them the
    // caller is one session per principal.
    let (agent_session, _) = agent_session::resolve(SessionCandidates {
        mcp_session: (!is_stateless).then_some(&*session.id),
        header: is_stateless
            .then(|| headers.get(agent_session::AGENT_SESSION_HEADER))
            .flatten()
            .map(HeaderValue::as_bytes),
        meta: match (&meta.agent_session, is_stateless) {
            (MetaText::Text(claim), true) => Some(claim),
            // A claim that is not text, or too long, is refused as invalid.
            (MetaText::Invalid, true) => Some(""),
            _ => None,
        },
        principal: is_stateless.then_some(&*principal.agent),
    })
    .map_err(|err| match err {
        agent_session::AgentSessionError::Missing => {
            Failure::with_id(EdgeError::MissingSession, id.clone())
        }
        agent_session::AgentSessionError::Invalid { .. } => Failure::with_id(
            EdgeError::StatelessInvalid {
                detail: "invalid agent session id: use 1-128 visible ASCII characters",
            },
            id.clone(),
        ),
    })?;
    let tool_name = tool.clone();
    // A stateless call declares what its client can do in `_meta`: read
    // only for the calls it matters to. A client that declares the tasks
    // extension is answered with a task for a held call; one that declares
    // elicitation is asked to confirm a confirm-tier call.
    let extension_tasks =
        held_tier && session.is_detached() && tasks::declares_tasks_extension(raw_meta.as_deref());
    let stateless_elicits = confirm_tier && session.is_detached() && can_ask;
    let task_owner =
        (as_task.is_some() || extension_tasks).then(|| tasks::owner(route, session, &principal));
    let mut call = ToolCall {
        route: route.path.clone(),
        session: agent_session,
        mcp_session: (!is_stateless).then(|| session.id.clone()),
        id: id.clone(),
        tool,
        facts,
        arguments,
        principal,
        dry_run,
        input_schema,
        as_task: None,
        confirmed: false,
        // A slot for who approved it, only where a hold is expected (a
        // policy reload in between at worst loses the note, never the hold).
        approval_note: if held_tier {
            warden_pipeline::ApprovalNote::slot()
        } else {
            warden_pipeline::ApprovalNote::default()
        },
        meta,
        tap,
        message: forwarded,
        context: Forward {
            headers: Arc::clone(headers),
            upstream_session,
            lane,
        },
    };
    let end = tasks::CallEnd {
        tool_calls: warden.metrics.tool_calls.clone(),
        allowed: route.counters.allowed.clone(),
        route: route.path.clone(),
        span: span.clone(),
    };
    let revision = session
        .negotiated_version()
        .unwrap_or(mcp::DEFAULT_PROTOCOL_VERSION)
        .to_owned();
    // The stateless revision asks with `input_required` and checks the
    // retry's sealed state.
    if confirm_tier
        && !held_tier
        && session.is_detached()
        && call.dry_run == warden_pipeline::DryRun::No
    {
        let timeout = route.policy.load().hold_of(&call.tool).timeout;
        if let Some(answer) =
            confirm::stateless(warden, &mut call, stateless_elicits, timeout, &revision).await
        {
            return Ok(json(StatusCode::OK, answer));
        }
    }
    // A confirm-tier call from a client that can be asked: the user
    // confirms it in their client first.
    if confirm_tier
        && !held_tier
        && !session.is_detached()
        && session.client_elicits()
        && call.dry_run == warden_pipeline::DryRun::No
    {
        let timeout = route.policy.load().hold_of(&call.tool).timeout;
        return Ok(confirm::confirm_then_call(
            call,
            confirm::Confirming {
                warden: warden.clone(),
                pipeline: route.pipeline.clone(),
                session: session.clone(),
                revision,
                lane: reply_lane,
                timeout,
                end,
            },
        ));
    }
    // A held call asked to run as a task is answered at once with the
    // task; the hold and the call go on in the background.
    if held_tier
        && warden.approvals.is_some()
        && call.dry_run == warden_pipeline::DryRun::No
        && (as_task.is_some() || extension_tasks)
        && let Some(owner) = task_owner.clone()
    {
        let shape = match as_task {
            Some(ttl) => tasks::Shape::Legacy(ttl),
            None => tasks::Shape::Extension,
        };
        let asked = tasks::TaskAsked {
            owner,
            shape,
            upstream_runs_as_task: session.upstream_runs_as_task(&call.tool),
        };
        return Ok(tasks::held_as_task(
            warden, route, asked, call, revision, end,
        ));
    }
    // A held call with a progress token waits in a stream of progress
    // notifications (clients that reset their timeout on progress keep
    // waiting), then gets its outcome in the same stream.
    if held_tier
        && let Some(approvals) = &warden.approvals
        && call.dry_run == warden_pipeline::DryRun::No
        && let Some(token) = call.meta.progress_token.clone()
    {
        let note = call.approval_note.clone();
        let outcome = route.pipeline.clone().oneshot(call);
        return Ok(held_with_progress(
            Box::pin(outcome),
            HeldStream {
                token,
                tool: tool_name,
                id: id.clone(),
                revision,
                session: session.clone(),
                lane: reply_lane,
                every: approvals.progress_every,
                end,
                note,
            },
        ));
    }
    let note = call.approval_note.clone();
    match route.pipeline.clone().oneshot(call).await {
        Ok(ToolOutcome::Forwarded(response)) => {
            route.counters.allowed.inc();
            warden.end_if_gone(route, session, response.status()).await;
            let response = tasks::with_approval_note(response, &id, note.get()).await;
            Ok(relay::relay_in_lane(response, Some(session), reply_lane))
        }
        Ok(ToolOutcome::Refused(refusal)) => {
            end.refused(&refusal);
            if let (Some(ttl), Some(owner)) = (as_task, task_owner) {
                return Ok(tasks::refused_as_task(
                    warden, owner, ttl, &id, &refusal, &revision,
                ));
            }
            Ok(json(StatusCode::OK, refusal.to_response(&id, &revision)))
        }
        Err(err) => Err(Failure::with_id(err, id)),
    }
}

/// What a held call's progress stream needs besides the outcome.
struct HeldStream {
    token: String,
    tool: String,
    id: Arc<str>,
    revision: String,
    session: Arc<Session>,
    lane: Option<usize>,
    every: std::time::Duration,
    end: tasks::CallEnd,
    note: warden_pipeline::ApprovalNote,
}

type HeldOutcome = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<ToolOutcome<Response<Body>>, EdgeError>> + Send>,
>;

/// The held call's SSE reply: a progress notification every
/// `approvals.progress_every` while the outcome is pending, then the outcome
/// (the upstream's reply, relayed as it comes, or Warden's answer). If the
/// agent hangs up, the stream and the waiting hold are dropped: the
/// approval is abandoned.
fn held_with_progress(outcome: HeldOutcome, held: HeldStream) -> Response<Body> {
    enum State {
        Waiting(HeldOutcome, u64),
        Relaying(Body),
        Done,
    }
    let held = Arc::new(held);
    let events = stream::unfold(State::Waiting(outcome, 0), move |state| {
        let held = held.clone();
        async move {
            match state {
                State::Waiting(mut outcome, waited) => {
                    tokio::select! {
                        out = &mut outcome => {
                            let next = match out {
                                Ok(ToolOutcome::Forwarded(response)) => {
                                    held.end.allowed.inc();
                                    let response = tasks::with_approval_note(response, &held.id, held.note.get()).await;
                                    let response = relay::relay_in_lane(response, Some(&held.session), held.lane);
                                    if is_event_stream(response.headers()) {
                                        return Some((Ok(Bytes::new()), State::Relaying(response.into_body())));
                                    }
                                    match relay::collect_capped(response.into_body(), MAX_INSPECTED_REPLY).await {
                                        Ok(bytes) => tasks::sse_message(&bytes),
                                        Err(err) => return Some((Err(err), State::Done)),
                                    }
                                }
                                Ok(ToolOutcome::Refused(refusal)) => {
                                    held.end.refused(&refusal);
                                    tasks::sse_message(&refusal.to_response(&held.id, &held.revision))
                                }
                                Err(err) => tasks::sse_message(&err.body(&held.id)),
                            };
                            Some((Ok(next), State::Done))
                        }
                        () = tokio::time::sleep(held.every) => {
                            let waited = waited + 1;
                            let progress = format!(
                                r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{},"progress":{waited},"message":{}}}}}"#,
                                held.token,
                                serde_json::Value::String(format!(
                                    "'{}' is held for a human's approval; still waiting",
                                    held.tool
                                )),
                            );
                            Some((Ok(tasks::sse_message(progress.as_bytes())), State::Waiting(outcome, waited)))
                        }
                    }
                }
                State::Relaying(mut body) => match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => Some((Ok(data), State::Relaying(body))),
                        Err(_) => Some((Ok(Bytes::new()), State::Relaying(body))),
                    },
                    Some(Err(err)) => Some((Err(err), State::Done)),
                    None => None,
                },
                State::Done => None,
            }
        }
    });
    relay::event_stream(events)
}

/// `message` (a `tools/call`) with `params._meta.traceparent` (and
/// `tracestate`) set to Warden's span; every other value kept as its bytes.
/// `None` when the message is not an object with object `params`.
fn with_trace_context(
    message: &[u8],
    traceparent: &str,
    tracestate: Option<&str>,
) -> Option<Bytes> {
    use serde_json::value::RawValue;
    // Every member, `_meta`'s own included, is kept as its bytes: only the
    // two trace members are written anew (no number or string re-encoded).
    type Members = std::collections::BTreeMap<String, Box<RawValue>>;
    let mut top: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(message).ok()?;
    let mut params: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(top.get("params")?.get()).ok()?;
    let mut meta: Members = match params.get("_meta") {
        Some(meta) => serde_json::from_str(meta.get()).ok()?,
        None => Members::new(),
    };
    meta.insert(
        "traceparent".into(),
        serde_json::value::to_raw_value(traceparent).ok()?,
    );
    match tracestate {
        Some(state) => meta.insert(
            "tracestate".into(),
            serde_json::value::to_raw_value(state).ok()?,
        ),
        None => meta.remove("tracestate"),
    };
    params.insert("_meta".into(), serde_json::value::to_raw_value(&meta).ok()?);
    top.insert(
        "params".into(),
        serde_json::value::to_raw_value(&params).ok()?,
    );
    serde_json::to_vec(&top).ok().map(Bytes::from)
}

/// What the upstream says about `tool` in this session. When Warden has not
/// seen it listed and does not hold the whole catalogue, it fetches the
/// catalogue itself: an agent that guesses a name without listing first is
/// judged on the upstream's own word, not on its guess.
async fn facts_for(
    warden: &Warden,
    route: &Route,
    session: &Session,
    headers: &HeaderMap,
    tool: &str,
) -> Result<Option<ToolFacts>, EdgeError> {
    let ttl = warden.limits.catalogue_ttl;
    match session.lookup(tool, ttl) {
        Lookup::Known(facts) => return Ok(Some(facts)),
        Lookup::Unlisted => return Ok(None),
        Lookup::Unsure => {}
    }
    let _one_fetch_at_a_time = session.fetch_lock.lock().await;
    match session.lookup(tool, ttl) {
        Lookup::Known(facts) => return Ok(Some(facts)),
        Lookup::Unlisted => return Ok(None),
        Lookup::Unsure => {}
    }
    warden.metrics.catalogue_fetches.inc();
    let generation = session.begin_fetch();
    let catalogue = route
        .upstream
        .fetch_catalogue(
            &route.path,
            session.upstream_id.as_ref(),
            headers.get(mcp::HEADER_PROTOCOL_VERSION),
        )
        .await?;
    let facts = catalogue.facts(tool);
    session.finish_fetch(catalogue, generation);
    // Decided on what the upstream just said, even if a change notice
    // arrived meanwhile (the next call will fetch again).
    Ok(facts)
}

/// A successful `tools/list` reply: recorded in the catalogue, filtered.
async fn tools_list(
    route: &Route,
    session: &Arc<Session>,
    principal: &Arc<Principal>,
    response: Response<Body>,
    id: &Arc<str>,
    generation: u64,
) -> Result<Response<Body>, EdgeError> {
    let policy = route.policy.load_full();
    let (mut parts, body) = response.into_parts();
    clean_headers(&mut parts.headers, Some(session));
    parts.headers.remove(header::CONTENT_LENGTH);
    if is_event_stream(&parts.headers) {
        let filtered = filtered_list_stream(
            body,
            policy,
            session.clone(),
            principal.clone(),
            (id.clone(), generation),
            route.path.clone(),
        );
        return Ok(streaming(parts, filtered));
    }
    let invalid = |detail: String| EdgeError::UpstreamInvalid {
        route: route.path.to_string(),
        detail,
    };
    let bytes = read_whole(route, body, "tools/list").await?;
    let caller = warden_pipeline::caller_of(principal);
    let out = match filter_tools_list(&bytes, &policy, &caller)
        .map_err(|err| invalid(err.to_string()))?
    {
        ListReply::Page { page, filtered } => {
            session.merge_page(&page, generation);
            filtered.unwrap_or(bytes)
        }
        ListReply::Error => bytes,
    };
    Ok(Response::from_parts(parts, relay::full(out)))
}

/// Read a reply Warden must inspect whole: bounded in size and in time.
async fn read_whole(route: &Route, body: Body, what: &str) -> Result<Bytes, EdgeError> {
    let timeout = route.upstream.timeout();
    match tokio::time::timeout(timeout, relay::collect_capped(body, MAX_INSPECTED_REPLY)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(err)) => Err(EdgeError::UpstreamInvalid {
            route: route.path.to_string(),
            detail: format!("reading the {what} reply failed: {err}"),
        }),
        Err(_) => Err(EdgeError::UpstreamTimeout {
            route: route.path.to_string(),
            seconds: timeout.as_secs(),
        }),
    }
}

/// A batch (MCP 2025-03-26 only): every message goes its own way (each
/// `tools/call` through the pipeline, each `tools/list` through the filter)
/// and the replies are merged into one event stream.
async fn batch(
    warden: &Arc<Warden>,
    route: &Route,
    headers: &Arc<HeaderMap>,
    messages: Vec<Envelope>,
    principal: &Arc<Principal>,
) -> Result<Response<Body>, Failure> {
    if messages.len() > MAX_BATCH {
        return Err(EdgeError::BatchTooLarge {
            count: messages.len(),
            limit: MAX_BATCH,
        }
        .into());
    }
    if messages.iter().any(Envelope::is_initialize) {
        return Err(EdgeError::InitializeInBatch.into());
    }
    let session = warden.session(route, headers, principal)?;
    // The revision the upstream chose, not one the agent claims per request.
    let revision = session
        .negotiated_version()
        .or_else(|| {
            headers
                .get(mcp::HEADER_PROTOCOL_VERSION)
                .and_then(|v| v.to_str().ok())
        })
        .unwrap_or(mcp::DEFAULT_PROTOCOL_VERSION)
        .to_owned();
    if !mcp::revision_allows_batches(&revision) {
        return Err(EdgeError::BatchNotAllowed { revision }.into());
    }
    // Bounded fan-out: one request must not open a connection per message.
    let replies: Vec<Response<Body>> = stream::iter(messages)
        .map(|message| {
            let session = session.clone();
            async move {
                match one(warden, route, &session, headers, message, principal).await {
                    Ok(response) => response,
                    Err(failure) => warden.fail(Some(route), failure, &Method::POST),
                }
            }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    let replies: Vec<Response<Body>> = replies
        .into_iter()
        .filter(|r| r.status() != StatusCode::ACCEPTED)
        .collect();
    if replies.is_empty() {
        let mut accepted = Response::new(relay::empty());
        *accepted.status_mut() = StatusCode::ACCEPTED;
        return Ok(accepted);
    }
    let merged = stream::select_all(replies.into_iter().map(reply_events));
    Ok(relay::event_stream(merged))
}

/// One reply of a batch as SSE event bytes. Event ids are dropped: ids of
/// several upstream streams merged into one would mislead a resuming client.
fn reply_events(response: Response<Body>) -> BoxStream<'static, Result<Bytes, BoxError>> {
    if is_event_stream(response.headers()) {
        return relay::sse_events(response.into_body())
            .map_ok(|event| SseEvent { id: None, ..event }.encode())
            .boxed();
    }
    let body = response.into_body();
    stream::once(async move {
        let bytes = body.collect().await?.to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        let messages = match value {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        Ok::<_, BoxError>(stream::iter(
            messages
                .into_iter()
                .map(|m| Ok(SseEvent::message(m.to_string()).encode())),
        ))
    })
    .try_flatten()
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const ACCEPT_BOTH: (&str, &str) = ("accept", "application/json, text/event-stream");

    #[test]
    fn post_headers_are_checked() {
        assert!(
            check_headers(&headers(&[
                ACCEPT_BOTH,
                ("content-type", "application/json")
            ]))
            .is_ok()
        );
        assert!(
            check_headers(&headers(&[
                ACCEPT_BOTH,
                ("content-type", "application/json; charset=UTF-8")
            ]))
            .is_ok()
        );
        assert!(matches!(
            check_headers(&headers(&[
                ("accept", "application/json"),
                ("content-type", "application/json")
            ])),
            Err(EdgeError::NotAcceptable { .. })
        ));
        for bad in [
            "text/plain",
            "application/json; charset=utf-16",
            "application/jsonx",
            "",
        ] {
            let mut map = headers(&[ACCEPT_BOTH]);
            if !bad.is_empty() {
                map.insert("content-type", HeaderValue::from_static(bad));
            }
            assert!(
                matches!(check_headers(&map), Err(EdgeError::UnsupportedMediaType)),
                "{bad}"
            );
        }
        assert!(matches!(
            check_headers(&headers(&[
                ACCEPT_BOTH,
                ("content-type", "application/json"),
                ("content-encoding", "gzip")
            ])),
            Err(EdgeError::UnsupportedEncoding { .. })
        ));
    }
}
