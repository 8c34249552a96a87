//! Task-augmented `tools/call` (MCP 2025-11-25) that Warden answers
//! itself, and the `tasks/*` requests for those tasks (see
//! [`crate::tasks`]).
//!
//! - A held call sent with `params.task` is answered at once with a
//!   `CreateTaskResult` (`working`, saying who must approve); the hold runs
//!   in the background until a decision or the expiry, then the call runs
//!   (without `params.task`: Warden owns the task) and its reply becomes
//!   the task's result.
//! - Any other answer of Warden's own to a call sent with `params.task` (a
//!   refusal, a dry run) is a task that has already ended with that answer.
//! - `tasks/get`, `tasks/result`, `tasks/cancel` naming a Warden task are
//!   answered here; `tasks/list` lists the caller's Warden tasks, with the
//!   upstream's own first page when the upstream lists tasks. Everything
//!   else about tasks passes through.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, stream};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tower::ServiceExt;
use warden_pipeline::{Principal, Refusal, ToolCall, ToolOutcome};
use warden_protocol::{Envelope, MessageKind, jsonrpc, mcp};

use super::relay::{self, Body, json as json_reply, streaming};
use super::{Failure, Route, Warden};
use crate::error::EdgeError;
use crate::forward::Forward;
use crate::metrics::DecisionLabels;
use crate::session::Session;
use crate::tasks::{
    HeldCall, META_IMMEDIATE_RESPONSE, TaskAnswer, TaskBoard, TaskError, TaskOwner, TaskView,
};
use crate::upstream::{MAX_INSPECTED_REPLY, is_event_stream};

/// `tasks/get`.
const METHOD_TASKS_GET: &str = "tasks/get";
/// `tasks/result`.
const METHOD_TASKS_RESULT: &str = "tasks/result";
/// `tasks/cancel`.
const METHOD_TASKS_CANCEL: &str = "tasks/cancel";
/// `tasks/list`.
const METHOD_TASKS_LIST: &str = "tasks/list";
/// `tasks/update` (the tasks extension: input for a task).
const METHOD_TASKS_UPDATE: &str = "tasks/update";
/// The status notification sent on a waiting `tasks/result` stream.
const NOTIFICATION_TASK_STATUS: &str = "notifications/tasks/status";

/// The task a call asks to run as: `Some(ttl)` (the agent's `ttl`, if it
/// gave one) when `params.task` is an object.
pub(super) fn requested(task: Option<&RawValue>) -> Option<Option<u64>> {
    let value: Value = serde_json::from_str(task?.get()).ok()?;
    let object = value.as_object()?;
    Some(object.get("ttl").and_then(Value::as_u64))
}

/// `message` without the `params` members `names`; every other member
/// keeps its bytes. `None` when it has none of them.
pub(super) fn without_params(message: &[u8], names: &[&str]) -> Option<Bytes> {
    type Members = std::collections::BTreeMap<String, Box<RawValue>>;
    let mut top: Members = serde_json::from_slice(message).ok()?;
    let mut params: Members = serde_json::from_str(top.get("params")?.get()).ok()?;
    let before = params.len();
    params.retain(|name, _| !names.contains(&name.as_str()));
    if params.len() == before {
        return None;
    }
    top.insert(
        "params".into(),
        serde_json::value::to_raw_value(&params).ok()?,
    );
    serde_json::to_vec(&top).ok().map(Bytes::from)
}

/// Who may see the tasks created in this request.
pub(super) fn owner(route: &Route, session: &Session, principal: &Arc<Principal>) -> TaskOwner {
    TaskOwner {
        route: route.index,
        principal: principal.clone(),
        session: (!session.is_detached()).then(|| session.id.clone()),
    }
}

/// Which tasks a call speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// MCP 2025-11-25 `params.task` (the agent's `ttl`, if it gave one).
    Legacy(Option<u64>),
    /// The 2026-07-28 `io.modelcontextprotocol/tasks` extension.
    Extension,
}

/// The tasks extension's name.
const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";

/// Whether a stateless request's `_meta` declares the tasks extension
/// among its client capabilities.
pub(super) fn declares_tasks_extension(meta: Option<&RawValue>) -> bool {
    meta.and_then(|m| serde_json::from_str::<Value>(m.get()).ok())
        .and_then(|m| {
            m.get(mcp::META_CLIENT_CAPABILITIES)?
                .get("extensions")?
                .get(TASKS_EXTENSION)
                .map(Value::is_object)
        })
        .unwrap_or(false)
}

/// A task as the tasks extension shows it: flat, `ttlMs` and
/// `pollIntervalMs`, with `resultType`; `answer`, once the task has ended,
/// inline (`result`, or `error` for a JSON-RPC error: an `isError` tool
/// result is `completed` there, not `failed`).
fn extension_view(view: &TaskView, result_type: &str, answer: Option<&TaskAnswer>) -> Value {
    let mut task = view.task.clone();
    if let Some(object) = task.as_object_mut() {
        if let Some(ttl) = object.remove("ttl") {
            object.insert("ttlMs".into(), ttl);
        }
        if let Some(poll) = object.remove("pollInterval") {
            object.insert("pollIntervalMs".into(), poll);
        }
        object.insert("resultType".into(), json!(result_type));
        match answer {
            Some(TaskAnswer::Result(result)) => {
                if view.status != crate::tasks::TaskStatus::Cancelled {
                    object.insert("status".into(), json!("completed"));
                }
                object.insert("result".into(), result.clone());
            }
            Some(TaskAnswer::Error(error)) => {
                object.insert("error".into(), error.clone());
            }
            None => {}
        }
    }
    task
}

/// The `CreateTaskResult` answering `id_json`.
fn created(id_json: &str, view: &TaskView, immediate: &str, shape: Shape) -> Bytes {
    let result = match shape {
        Shape::Legacy(_) => json!({
            "task": view.task,
            "_meta": {META_IMMEDIATE_RESPONSE: immediate},
        }),
        Shape::Extension => extension_view(view, "task", None),
    };
    jsonrpc::result_response(id_json, &result.to_string())
}

fn task_error(id_json: &str, err: &TaskError) -> Bytes {
    let code = match err {
        TaskError::Full => jsonrpc::INTERNAL_ERROR,
        _ => jsonrpc::INVALID_PARAMS,
    };
    jsonrpc::error_response(id_json, code, &err.to_string())
}

/// A call to `tool` Warden answered itself, asked to run as a task: a task
/// that has already ended with `refusal` as its result.
pub(super) fn refused_as_task(
    warden: &Warden,
    owner: TaskOwner,
    ttl: Option<u64>,
    id_json: &str,
    refusal: &Refusal,
    revision: &str,
) -> Response<Body> {
    let answer = TaskAnswer::of_response(&refusal.to_response(id_json, revision))
        .unwrap_or_else(|| TaskAnswer::Error(json!({"code": jsonrpc::INTERNAL_ERROR})));
    match warden
        .tasks
        .create_ended(owner, ttl, answer, refusal.message.clone())
    {
        Ok((_, view)) => {
            warden.metrics.tasks.set(warden.tasks.len() as i64);
            json_reply(
                StatusCode::OK,
                created(id_json, &view, &refusal.message, Shape::Legacy(ttl)),
            )
        }
        Err(err) => json_reply(StatusCode::OK, task_error(id_json, &err)),
    }
}

/// Counts and span of a call, for whichever way it ends.
pub(super) struct CallEnd {
    pub(super) tool_calls: prometheus_client::metrics::family::Family<
        DecisionLabels,
        prometheus_client::metrics::counter::Counter,
    >,
    pub(super) allowed: prometheus_client::metrics::counter::Counter,
    pub(super) route: Arc<str>,
    pub(super) span: Option<Arc<std::sync::Mutex<Option<warden_audit::otlp::Span>>>>,
}

impl CallEnd {
    /// Count a refusal and end the call's span with it.
    pub(super) fn refused(&self, refusal: &Refusal) {
        self.tool_calls
            .get_or_create(&DecisionLabels {
                route: self.route.to_string(),
                decision: refusal.decision.to_owned(),
                reason: refusal.reason.to_owned(),
            })
            .inc();
        if let Some(span) = self
            .span
            .as_ref()
            .and_then(|slot| slot.lock().ok().and_then(|mut s| s.take()))
        {
            span.end(warden_audit::otlp::Outcome {
                error_type: Some("tool_error"),
                decision: Some(refusal.decision),
                reason: Some(refusal.reason),
                ..warden_audit::otlp::Outcome::default()
            });
        }
    }
}

/// How a held call asked to run as a task.
pub(super) struct TaskAsked {
    /// Who may see the task.
    pub(super) owner: TaskOwner,
    /// Which tasks the agent speaks.
    pub(super) shape: Shape,
    /// The upstream runs the tool as a task itself.
    pub(super) upstream_runs_as_task: bool,
}

/// A held call asked to run as a task: answered at once with a working
/// task; the hold and then the call run in the background.
pub(super) fn held_as_task(
    warden: &Arc<Warden>,
    route: &Route,
    asked: TaskAsked,
    mut call: ToolCall<Forward>,
    revision: String,
    end: CallEnd,
) -> Response<Body> {
    let TaskAsked {
        owner,
        shape,
        upstream_runs_as_task,
    } = asked;
    let ttl = match shape {
        Shape::Legacy(ttl) => ttl,
        Shape::Extension => None,
    };
    let id: Arc<str> = call.id.clone();
    let tool = call.tool.clone();
    // Warden owns the task: the upstream gets the plain call, unless it
    // runs the tool as a task itself (then Warden follows the upstream's
    // task to its result, in the base lane).
    let follow =
        (upstream_runs_as_task && call.context.lane.is_none() && matches!(shape, Shape::Legacy(_)))
            .then(|| {
                (
                    route.upstream.clone(),
                    call.context.headers.clone(),
                    call.context.upstream_session.clone(),
                )
            });
    if follow.is_none()
        && let Some(plain) = without_params(&call.message, &["task"])
    {
        call.message = plain;
    }
    let (canceller, cancel) = warden_pipeline::task_cancel();
    call.as_task = Some(cancel);
    let rule = route.policy.load().hold_of(&tool);
    let who = if rule.approvers.is_empty() {
        "an approver".to_owned()
    } else {
        rule.approvers.join(", ")
    };
    let waiting = format!(
        "The call to '{tool}' is held for a human's approval ({} needed, from {who}); \
         it has not run. Poll tasks/get, or wait on tasks/result for the outcome.",
        rule.approvals
    );
    let held = Some(HeldCall {
        tool: tool.clone(),
        agent_session: call.session.to_string(),
        request_id: id.to_string(),
        canceller,
    });
    let (task_id, view) = match warden.tasks.create(owner, ttl, waiting.clone(), held) {
        Ok(created) => created,
        Err(err) => return json_reply(StatusCode::OK, task_error(&id, &err)),
    };
    warden.metrics.tasks.set(warden.tasks.len() as i64);
    tracing::info!(task = %task_id, tool = %tool, "Held call runs as a Warden task.");
    let note = call.approval_note.clone();
    let pipeline = route.pipeline.clone();
    let warden = warden.clone();
    let upstream_timeout = route.upstream.timeout();
    let route_path = route.path.clone();
    let reply = created(&id, &view, &waiting, shape);
    tokio::spawn(async move {
        let answer = match pipeline.oneshot(call).await {
            Ok(ToolOutcome::Forwarded(response)) => {
                end.allowed.inc();
                warden
                    .tasks
                    .mark_running(&task_id, format!("'{tool}' was approved and is running."));
                let reply = match (
                    reply_message(response, &id, upstream_timeout).await,
                    &follow,
                ) {
                    (Ok(message), Some(upstream)) => {
                        follow_upstream_task(message, upstream, &id, upstream_timeout).await
                    }
                    (reply, _) => reply,
                };
                match reply {
                    Ok(message) => {
                        let message = note
                            .get()
                            .and_then(|note| noted(&message, note))
                            .unwrap_or(message);
                        TaskAnswer::of_response(&message)
                    }
                    Err(err) => {
                        tracing::warn!(task = %task_id, route = %route_path, error = %err, "The approved call's reply could not be read.");
                        TaskAnswer::of_response(&err.body(&id))
                    }
                }
            }
            Ok(ToolOutcome::Refused(refusal)) => {
                end.refused(&refusal);
                TaskAnswer::of_response(&refusal.to_response(&id, &revision))
            }
            Err(err) => TaskAnswer::of_response(&err.body(&id)),
        };
        let answer = answer
            .unwrap_or_else(|| TaskAnswer::Error(json!({"code": jsonrpc::INTERNAL_ERROR, "message": "Warden: the call ended without a reply"})));
        let said = match &answer {
            TaskAnswer::Result(result) => result
                .pointer("/content/0/text")
                .and_then(Value::as_str)
                .filter(|_| result.get("isError").and_then(Value::as_bool) == Some(true))
                .map_or_else(|| format!("'{tool}' ran."), str::to_owned),
            TaskAnswer::Error(error) => error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("The call failed.")
                .to_owned(),
        };
        warden.tasks.finish(&task_id, answer, said);
    });
    json_reply(StatusCode::OK, reply)
}

/// `message` (a JSON-RPC response) with `note` as its result's
/// `_meta["warden/approval"]`; unchanged if it has no object result.
fn noted(message: &[u8], note: &Value) -> Option<Bytes> {
    let mut value: Value = serde_json::from_slice(message).ok()?;
    let result = value.get_mut("result")?.as_object_mut()?;
    let meta = result
        .entry("_meta")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    meta.insert(warden_pipeline::ApprovalNote::META_KEY.into(), note.clone());
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

/// The upstream's reply to an approved call with the approval noted in
/// its result's `_meta` (the response message to `id_json`, whether the
/// reply is one JSON body or a stream).
pub(super) async fn with_approval_note(
    response: Response<Body>,
    id_json: &str,
    note: Option<&Value>,
) -> Response<Body> {
    let Some(note) = note.cloned() else {
        return response;
    };
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    if is_event_stream(&parts.headers) {
        let wanted: Value = serde_json::from_str(id_json).unwrap_or(Value::Null);
        let events = relay::sse_events(body).map(move |event| {
            let mut event = event?;
            if let Some(data) = &event.data
                && serde_json::from_str::<Value>(data)
                    .is_ok_and(|v| v.get("id") == Some(&wanted) && v.get("result").is_some())
                && let Some(edited) = noted(data.as_bytes(), &note)
            {
                event.data = Some(String::from_utf8_lossy(&edited).into_owned());
            }
            Ok(event.encode())
        });
        return streaming(parts, events);
    }
    match relay::collect_capped(body, MAX_INSPECTED_REPLY).await {
        Ok(bytes) => {
            let out = noted(&bytes, &note).unwrap_or(bytes);
            Response::from_parts(parts, relay::full(out))
        }
        Err(err) => {
            tracing::warn!(error = %err, "An approved call's reply could not be read whole.");
            Response::from_parts(parts, relay::empty())
        }
    }
}

/// The upstream's own task, followed: when `message` is a
/// `CreateTaskResult`, the upstream's `tasks/result` for it (which blocks
/// until the task ends). An attempt that outlasts `timeout` is made again,
/// until the upstream task's own `ttl` (at most [`MAX_TTL`]) has passed: a
/// long task is not failed while it still runs. Any other reply is the
/// answer as it is.
///
/// [`MAX_TTL`]: crate::tasks::MAX_TTL
async fn follow_upstream_task(
    message: Bytes,
    (upstream, headers, session): &(
        Arc<crate::upstream::Upstream>,
        Arc<HeaderMap>,
        Option<HeaderValue>,
    ),
    id_json: &str,
    timeout: std::time::Duration,
) -> Result<Bytes, EdgeError> {
    let value: Value = serde_json::from_slice(&message).unwrap_or(Value::Null);
    let Some(task_id) = value.pointer("/result/task/taskId").and_then(Value::as_str) else {
        return Ok(message);
    };
    let ttl = value
        .pointer("/result/task/ttl")
        .and_then(Value::as_u64)
        .map_or(crate::tasks::MAX_TTL, std::time::Duration::from_millis)
        .min(crate::tasks::MAX_TTL);
    let deadline = tokio::time::Instant::now() + ttl;
    let ask = Bytes::from(
        json!({"jsonrpc": "2.0", "id": serde_json::from_str::<Value>(id_json).unwrap_or(Value::Null),
            "method": METHOD_TASKS_RESULT, "params": {"taskId": task_id}})
        .to_string(),
    );
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        // The head may be what is slow (an upstream answering with JSON
        // once the task ends), or the body (a stream).
        let answer = match upstream
            .send(Method::POST, headers, session.as_ref(), ask.clone())
            .await
        {
            Ok(response) => reply_message(response, id_json, timeout).await,
            Err(err) => Err(err),
        };
        match answer {
            Err(EdgeError::UpstreamTimeout { .. }) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(task = %task_id, attempts, "The upstream's task is still running; asking for its result again.");
            }
            answer => return answer,
        }
    }
}

/// The JSON-RPC response to `id_json` in an upstream reply (one JSON body,
/// or the response event of a stream), read within `timeout` and
/// [`MAX_INSPECTED_REPLY`].
async fn reply_message(
    response: Response<Body>,
    id_json: &str,
    timeout: std::time::Duration,
) -> Result<Bytes, EdgeError> {
    let invalid = |detail: String| EdgeError::UpstreamInvalid {
        route: String::new(),
        detail,
    };
    let wanted: Value = serde_json::from_str(id_json).unwrap_or(Value::Null);
    let stream = is_event_stream(response.headers());
    let status = response.status();
    let body = response.into_body();
    let read = async move {
        if !stream {
            let bytes = relay::collect_capped(body, MAX_INSPECTED_REPLY)
                .await
                .map_err(|err| invalid(format!("reading the reply failed: {err}")))?;
            if !status.is_success() && serde_json::from_slice::<Value>(&bytes).is_err() {
                return Err(invalid(format!("the upstream answered HTTP {status}")));
            }
            return Ok(bytes);
        }
        let mut events = std::pin::pin!(relay::sse_events(body));
        while let Some(event) = events.next().await {
            let event = event.map_err(|err| invalid(format!("reading the reply failed: {err}")))?;
            let Some(data) = event.data else { continue };
            if let Ok(value) = serde_json::from_str::<Value>(&data)
                && value.get("id") == Some(&wanted)
                && (value.get("result").is_some() || value.get("error").is_some())
            {
                return Ok(Bytes::from(data));
            }
        }
        Err(invalid(
            "the reply stream ended without a response".to_owned(),
        ))
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| {
            Err(EdgeError::UpstreamTimeout {
                route: String::new(),
                seconds: timeout.as_secs(),
            })
        })
}

/// The `taskId` and `cursor` of a `tasks/*` request.
fn task_params(message: &Envelope) -> (Option<String>, Option<String>) {
    let value: Value = serde_json::from_slice(&message.raw).unwrap_or(Value::Null);
    let text = |key: &str| {
        value
            .pointer(&format!("/params/{key}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    (text("taskId"), text("cursor"))
}

/// Answer a `tasks/*` request about Warden's own tasks; `None` when the
/// request is the upstream's (another method, or another task id).
pub(super) async fn task_request(
    warden: &Arc<Warden>,
    route: &Route,
    session: &Arc<Session>,
    headers: &Arc<HeaderMap>,
    message: &Envelope,
    principal: &Arc<Principal>,
) -> Option<Result<Response<Body>, Failure>> {
    if message.kind != MessageKind::Request {
        return None;
    }
    let method = message.method.as_deref()?;
    if ![
        METHOD_TASKS_GET,
        METHOD_TASKS_RESULT,
        METHOD_TASKS_CANCEL,
        METHOD_TASKS_LIST,
        METHOD_TASKS_UPDATE,
    ]
    .contains(&method)
    {
        return None;
    }
    let (task_id, cursor) = task_params(message);
    let id = message.id_json();
    let owner = owner(route, session, principal);
    if session.is_detached() {
        let task_id = task_id.filter(|t| TaskBoard::is_wardens(t))?;
        return Some(Ok(
            extension_request(warden, method, &task_id, &owner, id).await
        ));
    }
    if method == METHOD_TASKS_LIST {
        return list(warden, route, session, headers, message, &owner, cursor).await;
    }
    let task_id = task_id.filter(|t| TaskBoard::is_wardens(t))?;
    let reply = |bytes: Bytes| Some(Ok(json_reply(StatusCode::OK, bytes)));
    match method {
        METHOD_TASKS_GET => match warden.tasks.get(&task_id, &owner) {
            Ok(view) => reply(jsonrpc::result_response(id, &view.task.to_string())),
            Err(err) => reply(task_error(id, &err)),
        },
        METHOD_TASKS_CANCEL => {
            let revision = session
                .negotiated_version()
                .unwrap_or(mcp::DEFAULT_PROTOCOL_VERSION);
            let answer = |tool: &str| {
                let cancelled = Refusal {
                    decision: "cancelled",
                    reason: "task-cancelled",
                    tool: tool.to_owned(),
                    message: "The task was cancelled by request; the call was not run.".to_owned(),
                    is_error: true,
                    details: None,
                };
                TaskAnswer::of_response(&cancelled.to_response(id, revision))
                    .unwrap_or_else(|| TaskAnswer::Error(json!({})))
            };
            match warden.tasks.cancel(&task_id, &owner, answer) {
                Ok((view, held)) => {
                    // A call waiting on its approval is withdrawn now;
                    // one not held yet withdraws itself when it is (the
                    // cancel told it).
                    if let Some((agent_session, request_id)) = held {
                        super::post::withdraw(warden, &agent_session, &request_id).await;
                    }
                    tracing::info!(task = %task_id, "Warden task cancelled by the agent.");
                    reply(jsonrpc::result_response(id, &view.task.to_string()))
                }
                Err(err) => reply(task_error(id, &err)),
            }
        }
        _ => Some(Ok(result_of(warden, &task_id, &owner, id))),
    }
}

/// A tasks-extension request (2026-07-28) about one of Warden's tasks:
/// `tasks/get` shows it (with its answer inline once ended),
/// `tasks/cancel` and `tasks/update` are acknowledged (Warden's tasks
/// never ask for input); `tasks/result` and `tasks/list` do not exist there.
async fn extension_request(
    warden: &Arc<Warden>,
    method: &str,
    task_id: &str,
    owner: &TaskOwner,
    id: &str,
) -> Response<Body> {
    let ack = || jsonrpc::result_response(id, r#"{"resultType":"complete"}"#);
    let bytes = match method {
        METHOD_TASKS_GET => match warden.tasks.outcome(task_id, owner) {
            Ok((view, answer)) => jsonrpc::result_response(
                id,
                &extension_view(&view, "complete", answer.as_ref()).to_string(),
            ),
            Err(err) => task_error(id, &err),
        },
        METHOD_TASKS_CANCEL => {
            let answer = |_: &str| {
                TaskAnswer::Error(json!({
                    "code": jsonrpc::INTERNAL_ERROR,
                    "message": "The task was cancelled by request; the call was not run.",
                }))
            };
            match warden.tasks.cancel(task_id, owner, answer) {
                Ok((_, held)) => {
                    if let Some((agent_session, request_id)) = held {
                        super::post::withdraw(warden, &agent_session, &request_id).await;
                    }
                    ack()
                }
                // Cancelling an ended task changes nothing.
                Err(TaskError::Terminal { .. }) => ack(),
                Err(err) => task_error(id, &err),
            }
        }
        METHOD_TASKS_UPDATE => match warden.tasks.get(task_id, owner) {
            Ok(_) => ack(),
            Err(err) => task_error(id, &err),
        },
        _ => jsonrpc::error_response(
            id,
            jsonrpc::METHOD_NOT_FOUND,
            &format!("{method} does not exist in the tasks extension; poll tasks/get"),
        ),
    };
    json_reply(StatusCode::OK, bytes)
}

/// `tasks/result`: the answer at once if the task has ended; else a stream
/// of `notifications/tasks/status` as it changes, then the answer.
fn result_of(warden: &Arc<Warden>, task_id: &str, owner: &TaskOwner, id: &str) -> Response<Body> {
    let mut changes = match warden.tasks.watch(task_id, owner) {
        Ok(changes) => changes,
        Err(err) => return json_reply(StatusCode::OK, task_error(id, &err)),
    };
    if let Ok((_, Some(answer))) = warden.tasks.outcome(task_id, owner) {
        return json_reply(StatusCode::OK, Bytes::from(answer.to_response(id, task_id)));
    }
    let warden = warden.clone();
    let task_id = task_id.to_owned();
    let owner = owner.clone();
    let id = id.to_owned();
    // The current state is seen: the first wait is for a change.
    changes.borrow_and_update();
    let events = stream::unfold(Some(changes), move |state| {
        let warden = warden.clone();
        let task_id = task_id.clone();
        let owner = owner.clone();
        let id = id.clone();
        async move {
            let mut changes = state?;
            if changes.changed().await.is_err() {
                // Forgotten (swept) while waiting.
                let gone = task_error(&id, &TaskError::NotFound(task_id.clone()));
                return Some((Ok::<_, relay::BoxError>(sse_message(&gone)), None));
            }
            match warden.tasks.outcome(&task_id, &owner) {
                Ok((_, Some(answer))) => {
                    Some((Ok(sse_message(&answer.to_response(&id, &task_id))), None))
                }
                Ok((view, None)) => {
                    let notification = json!({
                        "jsonrpc": "2.0",
                        "method": NOTIFICATION_TASK_STATUS,
                        "params": view.task,
                    });
                    Some((
                        Ok(sse_message(notification.to_string().as_bytes())),
                        Some(changes),
                    ))
                }
                Err(err) => Some((Ok(sse_message(&task_error(&id, &err))), None)),
            }
        }
    });
    relay::event_stream(events)
}

/// One SSE event carrying `message`.
pub(super) fn sse_message(message: &[u8]) -> Bytes {
    let mut event = b"event: message\ndata: ".to_vec();
    event.extend_from_slice(message);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

/// `tasks/list`: the caller's Warden tasks, a page at a time; on the last
/// of them, the upstream's own first page follows (when the upstream lists
/// tasks), with its `nextCursor`. A cursor of Warden's pages Warden's
/// tasks; any other goes to the upstream, untouched.
async fn list(
    warden: &Arc<Warden>,
    route: &Route,
    session: &Arc<Session>,
    headers: &Arc<HeaderMap>,
    message: &Envelope,
    owner: &TaskOwner,
    cursor: Option<String>,
) -> Option<Result<Response<Body>, Failure>> {
    let id = message.id_json();
    let upstream_lists = session.upstream_lists_tasks();
    let wardens_cursor = cursor.as_deref().is_some_and(TaskBoard::is_wardens);
    if cursor.is_some() && !wardens_cursor {
        // The upstream's own cursor: its page, untouched.
        return None;
    }
    let (mine, next) = match warden.tasks.list(owner, cursor.as_deref()) {
        Ok(page) => page,
        Err(err) => return Some(Ok(json_reply(StatusCode::OK, task_error(id, &err)))),
    };
    let mut tasks = mine;
    let mut next_cursor = next.map(Value::String);
    // Warden's last page: the upstream's first page follows, asked without
    // Warden's own cursor.
    if upstream_lists && next_cursor.is_none() {
        let asked = if wardens_cursor {
            without_params(&message.raw, &["cursor"]).unwrap_or_else(|| message.raw.clone())
        } else {
            message.raw.clone()
        };
        let sent = route
            .upstream
            .send(Method::POST, headers, session.upstream_id.as_ref(), asked)
            .await;
        let upstream = match sent {
            Ok(response) => reply_message(response, id, route.upstream.timeout()).await,
            Err(err) => Err(err),
        };
        let Ok(upstream) = upstream else {
            // The upstream's tasks could not be read: say so rather than
            // show a partial list as whole.
            let err = upstream.err()?;
            return Some(Err(Failure::with_id(err, Arc::from(id))));
        };
        let value: Value = serde_json::from_slice(&upstream).unwrap_or(Value::Null);
        if let Some(theirs) = value.pointer("/result/tasks").and_then(Value::as_array) {
            tasks.extend(theirs.iter().cloned());
            next_cursor = value.pointer("/result/nextCursor").cloned();
        } else {
            // An error from the upstream: relayed as it is.
            return Some(Ok(json_reply(StatusCode::OK, upstream)));
        }
    }
    let mut result = json!({"tasks": tasks});
    if let Some(cursor) = next_cursor.filter(|c| !c.is_null()) {
        result["nextCursor"] = cursor;
    }
    Some(Ok(json_reply(
        StatusCode::OK,
        jsonrpc::result_response(id, &result.to_string()),
    )))
}

/// An `initialize` result with Warden's task capability added (kept with
/// whatever task capabilities the upstream declares), for revisions that
/// have tasks; whether the upstream lists tasks itself. `None`: nothing to
/// change (not a result, or a revision without tasks).
pub(super) fn with_task_capability(message: &[u8]) -> Option<(Bytes, bool)> {
    let mut value: Value = serde_json::from_slice(message).ok()?;
    let version = value
        .pointer("/result/protocolVersion")?
        .as_str()?
        .to_owned();
    if !mcp::revision_has_tasks(&version) {
        return None;
    }
    let capabilities = value.pointer_mut("/result/capabilities")?.as_object_mut()?;
    let tasks = capabilities.entry("tasks").or_insert_with(|| json!({}));
    let tasks = tasks.as_object_mut()?;
    let upstream_lists = tasks.contains_key("list");
    tasks.entry("list").or_insert_with(|| json!({}));
    tasks.entry("cancel").or_insert_with(|| json!({}));
    let requests = tasks
        .entry("requests")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    let tools = requests
        .entry("tools")
        .or_insert_with(|| json!({}))
        .as_object_mut()?;
    tools.entry("call").or_insert_with(|| json!({}));
    Some((
        Bytes::from(serde_json::to_vec(&value).ok()?),
        upstream_lists,
    ))
}

/// Re-encode an SSE `initialize` reply with Warden's task capability in
/// its result event (see [`with_task_capability`]).
pub(super) fn initialize_stream(
    body: Body,
    session: Arc<Session>,
) -> impl futures_util::Stream<Item = Result<Bytes, relay::BoxError>> + Send {
    relay::sse_events(body).map(move |event| {
        let mut event = event?;
        if let Some(data) = &event.data
            && let Some((edited, upstream_lists)) = with_task_capability(data.as_bytes())
        {
            relay::record_negotiated_version(&session, data.as_bytes());
            session.set_upstream_lists_tasks(upstream_lists);
            event.data = Some(String::from_utf8_lossy(&edited).into_owned());
        }
        Ok(event.encode())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initialize_result_gains_the_task_capability_and_keeps_the_upstreams() {
        let plain = br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"u","version":"1"}}}"#;
        let (edited, lists) = with_task_capability(plain).expect("edited");
        let value: Value = serde_json::from_slice(&edited).expect("json");
        assert_eq!(
            value["result"]["capabilities"]["tasks"],
            json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}})
        );
        assert_eq!(value["result"]["capabilities"]["tools"], json!({}));
        assert!(!lists);
        let own = br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tasks":{"list":{},"requests":{"tools":{"call":{"x":1}}}}}}}"#;
        let (edited, lists) = with_task_capability(own).expect("edited");
        let value: Value = serde_json::from_slice(&edited).expect("json");
        assert!(lists);
        assert_eq!(
            value["result"]["capabilities"]["tasks"]["requests"]["tools"]["call"],
            json!({"x": 1})
        );
        let older = br#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}"#;
        assert!(with_task_capability(older).is_none());
    }

    #[test]
    fn a_task_param_is_read_and_taken_off_without_touching_the_rest() {
        let raw = RawValue::from_string(r#"{"ttl": 60000}"#.to_owned()).expect("raw");
        assert_eq!(requested(Some(&raw)), Some(Some(60000)));
        let raw = RawValue::from_string("{}".to_owned()).expect("raw");
        assert_eq!(requested(Some(&raw)), Some(None));
        let raw = RawValue::from_string("true".to_owned()).expect("raw");
        assert_eq!(requested(Some(&raw)), None);
        let message = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"n":1.50},"task":{"ttl":5}}}"#;
        let plain = without_params(message, &["task"]).expect("edited");
        let text = std::str::from_utf8(&plain).expect("utf-8");
        assert!(!text.contains("task"));
        assert!(text.contains(r#""arguments":{"n":1.50}"#));
    }
}
