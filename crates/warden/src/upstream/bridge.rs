//! An in-process Streamable HTTP endpoint in front of message links (a
//! stdio child, a legacy SSE connection).
//!
//! The proxy sends the bridge exactly what it would send a Streamable HTTP
//! server, and gets back what such a server would answer:
//!
//! - `initialize` opens a link (or, with a shared child, joins the one
//!   link) and answers with the server's result and a session id of the
//!   bridge's own;
//! - a request answers with an event stream carrying the messages the server
//!   sends for it (progress for its token, then its response);
//! - notifications and responses are written to the link and answered 202;
//! - GET answers with the session's stream of everything else the server
//!   sends (its requests — sampling, elicitation, roots — and notifications),
//!   held back in a bounded backlog until the agent listens;
//! - DELETE ends the session and its link.
//!
//! A link that dies fails every request in flight on it with a clear error,
//! and is opened again after a backoff (doubling up to 30 s); the session's
//! `initialize` is replayed so later requests find a ready server.
//!
//! With a shared child, request ids and progress tokens are rewritten on the
//! way in (and back on the way out) so sessions cannot collide; a server
//! request that belongs to no single session is refused to the server, never
//! guessed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};
use warden_protocol::jsonrpc::{self, MessageKind};
use warden_protocol::mcp;
use warden_protocol::sse::SseEvent;

use super::HttpUpstream;
use crate::config::{ChildSharing, StdioCommand};
use crate::error::EdgeError;
use crate::metrics::LinkMetrics;
use crate::proxy::relay::{self, Body, BoxError};

/// First wait before a dead link is opened again.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A link that lived this long was healthy: the next backoff starts over.
const HEALTHY_UPTIME: Duration = Duration::from_secs(30);
/// Server messages held for a session that has no stream open.
const MAX_BACKLOG: usize = 256;
/// Server messages queued for one request whose agent is not reading; past
/// this the request is given up.
const MAX_QUEUED_REPLIES: usize = 1024;
/// The view number of the stateless channel (sessions count from 1).
const STATELESS_VIEW: u64 = 0;

/// One connection to the server: messages out, events in, and a stop handle
/// (dropping the link stops the child or closes the stream).
pub(super) struct Link {
    /// Messages to the server, one JSON-RPC message (or batch) each.
    pub outbound: mpsc::Sender<Bytes>,
    /// What the server sends, in order.
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Dropped: the link is torn down.
    pub _stop: oneshot::Sender<()>,
}

/// Counts a link as open while alive.
struct OpenLink {
    link: Link,
    _counted: OpenGuard,
}

struct OpenGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What a link reports.
pub(super) enum LinkEvent {
    /// One JSON message from the server.
    Message(Bytes),
    /// Something that is not a JSON-RPC message; a preview for the log.
    Garbage(String),
    /// The link is gone, and why ("exited (exit status: 1)").
    Closed(String),
}

/// How links are opened.
enum Connector {
    Stdio(StdioCommand),
    LegacySse(Arc<HttpUpstream>),
}

impl Connector {
    async fn connect(&self, route: &Arc<str>, metrics: &LinkMetrics) -> Result<OpenLink, String> {
        let link = match self {
            Connector::Stdio(command) => super::child::spawn(route, command),
            Connector::LegacySse(client) => super::legacy_sse::connect(client.clone()).await,
        };
        match link {
            Ok(link) => {
                metrics.open.inc();
                Ok(OpenLink {
                    link,
                    _counted: OpenGuard(metrics.open.clone()),
                })
            }
            Err(err) => {
                metrics.start_failed.inc();
                Err(err)
            }
        }
    }

    fn noun(&self) -> &'static str {
        match self {
            Connector::Stdio(_) => "process",
            Connector::LegacySse(_) => "event stream",
        }
    }
}

/// A stdio or legacy SSE upstream, seen by the proxy as Streamable HTTP.
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<BridgeInner>,
}

impl std::ops::Deref for Bridge {
    type Target = BridgeInner;

    fn deref(&self) -> &BridgeInner {
        &self.inner
    }
}

/// What a [`Bridge`] shares with the requests in flight.
pub struct BridgeInner {
    route: Arc<str>,
    timeout: Duration,
    connector: Arc<Connector>,
    metrics: LinkMetrics,
    max_links: usize,
    sharing: ChildSharing,
    /// The bridge's session ids → the session's view of its channel.
    sessions: Mutex<HashMap<String, View>>,
    /// The one channel all sessions share ([`ChildSharing::Shared`]).
    shared: tokio::sync::Mutex<Option<Arc<Channel>>>,
    /// The channel of stateless (2026-07-28) requests: never initialized
    /// (an `initialize` would make the server legacy), ids rewritten.
    stateless: tokio::sync::Mutex<Option<Arc<Channel>>>,
    next_number: AtomicU64,
}

/// One session's place on a channel.
#[derive(Clone)]
struct View {
    number: u64,
    channel: Arc<Channel>,
}

impl Bridge {
    /// A bridge to a stdio server.
    pub(super) fn stdio(
        route: &str,
        command: StdioCommand,
        limits: (Duration, usize),
        metrics: LinkMetrics,
    ) -> Bridge {
        let sharing = command.sharing;
        Bridge::new(route, Connector::Stdio(command), sharing, limits, metrics)
    }

    /// A bridge to a legacy HTTP+SSE server (one stream per session).
    pub(super) fn legacy_sse(
        route: &str,
        client: HttpUpstream,
        limits: (Duration, usize),
        metrics: LinkMetrics,
    ) -> Bridge {
        let connector = Connector::LegacySse(Arc::new(client));
        Bridge::new(route, connector, ChildSharing::PerSession, limits, metrics)
    }

    fn new(
        route: &str,
        connector: Connector,
        sharing: ChildSharing,
        (timeout, max_links): (Duration, usize),
        metrics: LinkMetrics,
    ) -> Bridge {
        let inner = BridgeInner {
            route: route.into(),
            timeout,
            connector: Arc::new(connector),
            metrics,
            max_links,
            sharing,
            sessions: Mutex::new(HashMap::new()),
            shared: tokio::sync::Mutex::new(None),
            stateless: tokio::sync::Mutex::new(None),
            next_number: AtomicU64::new(1),
        };
        Bridge {
            inner: Arc::new(inner),
        }
    }

    /// The time limit for the server's answer to `initialize`.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// End every session and stop every link.
    pub fn shutdown(&self) {
        let views: Vec<View> = lock(&self.sessions).drain().map(|(_, v)| v).collect();
        for view in views {
            view.channel.close();
        }
        for channel in [&self.shared, &self.stateless] {
            if let Ok(mut channel) = channel.try_lock()
                && let Some(channel) = channel.take()
            {
                channel.close();
            }
        }
    }

    /// Answer one Streamable HTTP request.
    pub async fn send(
        self,
        method: Method,
        session: Option<HeaderValue>,
        body: Bytes,
    ) -> Result<Response<Body>, EdgeError> {
        let view = session
            .as_ref()
            .and_then(|s| s.to_str().ok())
            .and_then(|s| lock(&self.sessions).get(s).cloned());
        match (method, session, view) {
            (Method::POST, None, _) if is_initialize(&body) => self.initialize(body).await,
            (Method::POST, None, _) => self.stateless(body).await,
            (_, Some(_), None) => Ok(status_only(StatusCode::NOT_FOUND)),
            (Method::POST, Some(_), Some(view)) => self.post(&view, body),
            (Method::GET, Some(_), Some(view)) => Ok(view.channel.listen(view.number)),
            (Method::DELETE, Some(id), Some(view)) => {
                if let Ok(id) = id.to_str() {
                    lock(&self.sessions).remove(id);
                }
                if self.sharing == ChildSharing::PerSession {
                    view.channel.close();
                } else {
                    view.channel.forget_view(view.number);
                }
                Ok(status_only(StatusCode::OK))
            }
            _ => Ok(status_only(StatusCode::METHOD_NOT_ALLOWED)),
        }
    }

    fn down(&self, detail: String) -> EdgeError {
        EdgeError::UpstreamDown {
            route: self.route.to_string(),
            detail,
        }
    }

    /// `initialize`: a new channel (or the shared one), then a session id.
    async fn initialize(&self, body: Bytes) -> Result<Response<Body>, EdgeError> {
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        let agent_id = message_id(&body).ok_or_else(|| self.down("got no initialize id".into()))?;
        let result = match self.sharing {
            ChildSharing::PerSession => {
                if lock(&self.sessions).len() >= self.max_links {
                    return Err(EdgeError::UpstreamBusy {
                        route: self.route.to_string(),
                        limit: self.max_links,
                    });
                }
                let channel = self.open_channel(false).await?;
                match channel.initialize(number, &body, self.timeout).await {
                    Ok(result) => (channel, result),
                    Err(err) => {
                        channel.close();
                        return Err(self.down(err));
                    }
                }
            }
            ChildSharing::Shared => {
                let mut shared = self.shared.lock().await;
                let channel = match shared.as_ref() {
                    Some(channel) if channel.is_open() => channel.clone(),
                    _ => {
                        let channel = self.open_channel(true).await?;
                        *shared = Some(channel.clone());
                        channel
                    }
                };
                let cached = channel.cached_initialize();
                let result = match cached {
                    Some(result) => Ok(result),
                    None => channel.initialize(number, &body, self.timeout).await,
                };
                match result {
                    Ok(result) => (channel, result),
                    Err(err) => {
                        channel.close();
                        *shared = None;
                        return Err(self.down(err));
                    }
                }
            }
        };
        let (channel, result) = result;
        let session_id = format!("bridge-{number}");
        lock(&self.sessions).insert(session_id.clone(), View { number, channel });
        let reply = match result {
            InitializeReply::Result(result) => jsonrpc::result_response(&agent_id, &result),
            InitializeReply::Error(message) => message,
        };
        let mut response = relay::json(StatusCode::OK, reply);
        if let Ok(value) = HeaderValue::from_str(&session_id) {
            response.headers_mut().insert(mcp::HEADER_SESSION_ID, value);
        }
        Ok(response)
    }

    /// A request of the stateless revision: no session, one channel for all.
    async fn stateless(&self, body: Bytes) -> Result<Response<Body>, EdgeError> {
        if let Connector::LegacySse(_) = *self.connector {
            return Err(EdgeError::StatelessInvalid {
                detail: "this route's upstream speaks only the legacy HTTP+SSE transport (MCP 2024-11-05): send initialize",
            });
        }
        let channel = {
            let mut stateless = self.stateless.lock().await;
            match stateless.as_ref() {
                Some(channel) if channel.is_open() => channel.clone(),
                _ => {
                    let channel = self.open_channel(true).await?;
                    *stateless = Some(channel.clone());
                    channel
                }
            }
        };
        self.post(
            &View {
                number: STATELESS_VIEW,
                channel,
            },
            body,
        )
    }

    async fn open_channel(&self, rewrite_ids: bool) -> Result<Arc<Channel>, EdgeError> {
        let link = tokio::time::timeout(
            self.timeout,
            self.connector.connect(&self.route, &self.metrics),
        )
        .await
        .map_err(|_| self.down(format!("{} did not start in time", self.connector.noun())))?
        .map_err(|err| self.down(err))?;
        Ok(Channel::start(
            self.route.clone(),
            self.connector.clone(),
            self.metrics.clone(),
            link,
            rewrite_ids,
        ))
    }

    /// A message of an open session.
    fn post(&self, view: &View, body: Bytes) -> Result<Response<Body>, EdgeError> {
        let Some(envelope) = Envelope::read(&body) else {
            return Ok(status_only(StatusCode::BAD_REQUEST));
        };
        let channel = &view.channel;
        if envelope.kind != MessageKind::Request {
            if envelope.method.as_deref() == Some(mcp::NOTIFICATION_INITIALIZED)
                && !channel.note_initialized(&body)
            {
                // A shared server was initialized once, by the first session.
                return Ok(status_only(StatusCode::ACCEPTED));
            }
            channel.write(body).map_err(|detail| self.down(detail))?;
            return Ok(status_only(StatusCode::ACCEPTED));
        }
        let (replies, stream) = mpsc::channel(MAX_QUEUED_REPLIES);
        let agent_id = envelope.id.clone().unwrap_or_else(|| "null".to_owned());
        let wire_id = channel
            .request(view.number, envelope, body, replies)
            .map_err(|detail| self.down(detail))?;
        // Stateless requests are cancelled by closing their stream; a
        // stateful agent that hangs up has not cancelled anything.
        let abandon = Abandon {
            channel: channel.clone(),
            wire_id,
            cancel: view.number == STATELESS_VIEW,
        };
        let events = bounded_stream(stream).map(move |delivery| {
            let _in_flight = &abandon;
            let data = match delivery {
                Delivery::Message(message) => message,
                Delivery::Failed(error) => error.body(&agent_id),
            };
            let event = SseEvent {
                data: Some(String::from_utf8_lossy(&data).into_owned()),
                ..SseEvent::default()
            };
            Ok::<_, BoxError>(Frame::data(event.encode()))
        });
        Ok(event_stream(StreamBody::new(events).boxed_unsync()))
    }
}

/// What the server answered to `initialize`.
#[derive(Clone)]
enum InitializeReply {
    /// The `result` member, as the server wrote it.
    Result(String),
    /// A whole error response (for the first agent only).
    Error(Bytes),
}

/// What a request's event stream carries.
enum Delivery {
    Message(Bytes),
    Failed(EdgeError),
}

/// A request in flight on a channel.
struct Pending {
    view: u64,
    /// The id as the server sees it.
    wire_id: String,
    /// The id as the agent sent it.
    agent_id: String,
    /// The progress token as the server sees it, and as the agent sent it.
    progress: Option<(String, String)>,
    replies: mpsc::Sender<Delivery>,
}

impl Pending {
    /// Queue a message for the agent; false if it is not reading (the queue
    /// is full) or gone.
    fn deliver(&self, delivery: Delivery) -> bool {
        self.replies.try_send(delivery).is_ok()
    }
}

/// Ends a request's place on its channel when the agent's stream is
/// dropped (finished, or the agent hung up).
struct Abandon {
    channel: Arc<Channel>,
    wire_id: Option<String>,
    cancel: bool,
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(wire_id) = &self.wire_id {
            self.channel.abandon(wire_id, self.cancel);
        }
    }
}

/// One link to the server, kept open (reopened after a death) by its
/// supervisor task until closed.
struct Channel {
    route: Arc<str>,
    rewrite_ids: bool,
    state: Mutex<ChannelState>,
    stop: watch::Sender<bool>,
}

#[derive(Default)]
struct ChannelState {
    /// Where messages to the server go; `None` while the link is down.
    outbound: Option<mpsc::Sender<Bytes>>,
    /// Why the link is down, for callers in the meantime.
    down: Option<String>,
    pending: Vec<Pending>,
    /// Each session's GET stream.
    listeners: HashMap<u64, mpsc::UnboundedSender<Bytes>>,
    /// Server messages for sessions not listening yet.
    backlog: HashMap<u64, VecDeque<Bytes>>,
    /// The `initialize` request, replayed when the link is reopened.
    initialize: Option<Bytes>,
    initialized: Option<Bytes>,
    initialize_reply: Option<InitializeReply>,
    next_wire_id: u64,
    /// The one session of a per-session channel.
    sole_view: Option<u64>,
}

impl Channel {
    fn start(
        route: Arc<str>,
        connector: Arc<Connector>,
        metrics: LinkMetrics,
        link: OpenLink,
        rewrite_ids: bool,
    ) -> Arc<Channel> {
        let (stop, stopped) = watch::channel(false);
        let channel = Arc::new(Channel {
            route,
            rewrite_ids,
            state: Mutex::new(ChannelState {
                outbound: Some(link.link.outbound.clone()),
                ..ChannelState::default()
            }),
            stop,
        });
        tokio::spawn(supervise(
            channel.clone(),
            connector,
            metrics,
            link,
            stopped,
        ));
        channel
    }

    fn is_open(&self) -> bool {
        !*self.stop.borrow()
    }

    fn close(&self) {
        let _ = self.stop.send(true);
        let mut state = lock(&self.state);
        state.outbound = None;
        state.pending.clear();
        state.listeners.clear();
    }

    fn forget_view(&self, view: u64) {
        let mut state = lock(&self.state);
        state.pending.retain(|p| p.view != view);
        state.listeners.remove(&view);
        state.backlog.remove(&view);
    }

    fn cached_initialize(&self) -> Option<InitializeReply> {
        match &lock(&self.state).initialize_reply {
            Some(InitializeReply::Result(result)) => Some(InitializeReply::Result(result.clone())),
            _ => None,
        }
    }

    /// Remember the agent's `notifications/initialized` for replays; false
    /// if the server has had one already (a shared server).
    fn note_initialized(&self, message: &Bytes) -> bool {
        let mut state = lock(&self.state);
        if state.initialized.is_some() {
            return !self.rewrite_ids;
        }
        state.initialized = Some(message.clone());
        true
    }

    /// Send `initialize` and wait for the server's answer.
    async fn initialize(
        &self,
        view: u64,
        body: &Bytes,
        timeout: Duration,
    ) -> Result<InitializeReply, String> {
        let envelope = Envelope::read(body).ok_or("got an unreadable initialize")?;
        let (replies, mut answers) = mpsc::channel(MAX_QUEUED_REPLIES);
        self.request(view, envelope, body.clone(), replies)?;
        let answer = tokio::time::timeout(timeout, answers.recv())
            .await
            .map_err(|_| format!("did not answer initialize within {}s", timeout.as_secs()))?;
        let reply = match answer {
            Some(Delivery::Message(message)) => match result_member(&message) {
                Some(result) => InitializeReply::Result(result),
                None => InitializeReply::Error(message),
            },
            Some(Delivery::Failed(error)) => return Err(error_detail(error)),
            None => return Err("closed before it answered initialize".to_owned()),
        };
        let mut state = lock(&self.state);
        state.initialize = Some(body.clone());
        state.initialize_reply = Some(reply.clone());
        Ok(reply)
    }

    /// Write a notification or response to the server.
    fn write(&self, message: Bytes) -> Result<(), String> {
        let state = lock(&self.state);
        self.write_locked(&state, message)
    }

    fn write_locked(&self, state: &ChannelState, message: Bytes) -> Result<(), String> {
        let Some(outbound) = &state.outbound else {
            return Err(state
                .down
                .clone()
                .unwrap_or_else(|| "is not running".to_owned()));
        };
        outbound.try_send(message).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => {
                "is not reading its input (queue full)".to_owned()
            }
            mpsc::error::TrySendError::Closed(_) => "is not running".to_owned(),
        })
    }

    /// Send a request; the server's messages for it go to `replies`.
    /// Returns the id the server sees, if the request is in flight.
    fn request(
        &self,
        view: u64,
        envelope: Envelope,
        body: Bytes,
        replies: mpsc::Sender<Delivery>,
    ) -> Result<Option<String>, String> {
        let agent_id = envelope.id.unwrap_or_else(|| "null".to_owned());
        let mut state = lock(&self.state);
        if !self.rewrite_ids {
            state.sole_view.get_or_insert(view);
        }
        let (wire_id, body, progress) = if self.rewrite_ids {
            state.next_wire_id += 1;
            let wire_id = format!("\"warden-{}\"", state.next_wire_id);
            let mut text =
                set_member(&body, &["id"], &wire_id).ok_or("got an unreadable request")?;
            let progress = match envelope.progress_token {
                Some(token) => {
                    text = set_member(
                        text.as_bytes(),
                        &["params", "_meta", "progressToken"],
                        &wire_id,
                    )
                    .ok_or("got an unreadable request")?;
                    Some((wire_id.clone(), token))
                }
                None => None,
            };
            (wire_id, Bytes::from(text), progress)
        } else {
            let progress = envelope.progress_token.map(|t| (t.clone(), t));
            (agent_id.clone(), body, progress)
        };
        if state.pending.iter().any(|p| p.wire_id == wire_id) {
            let _ = replies.try_send(Delivery::Message(jsonrpc::error_response(
                &agent_id,
                jsonrpc::INVALID_REQUEST,
                "Warden: a request with this id is already in flight in this session",
            )));
            return Ok(None);
        }
        self.write_locked(&state, body)?;
        state.pending.push(Pending {
            view,
            wire_id: wire_id.clone(),
            agent_id,
            progress,
            replies,
        });
        Ok(Some(wire_id))
    }

    /// The agent's stream for `wire_id` is gone: forget the request, and
    /// with `cancel`, tell the server to stop working on it.
    fn abandon(&self, wire_id: &str, cancel: bool) {
        let mut state = lock(&self.state);
        let Some(index) = state.pending.iter().position(|p| p.wire_id == wire_id) else {
            return;
        };
        state.pending.swap_remove(index);
        if cancel {
            let notice = format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{wire_id},"reason":"the client closed the request's stream"}}}}"#
            );
            let _ = self.write_locked(&state, Bytes::from(notice));
        }
    }

    /// GET: the session's stream of server requests and notifications.
    fn listen(&self, view: u64) -> Response<Body> {
        let (sender, stream) = mpsc::unbounded_channel();
        let mut state = lock(&self.state);
        for message in state.backlog.remove(&view).unwrap_or_default() {
            let _ = sender.send(message);
        }
        state.listeners.insert(view, sender);
        let events = tokio_stream(stream).map(|message: Bytes| {
            let event = SseEvent {
                data: Some(String::from_utf8_lossy(&message).into_owned()),
                ..SseEvent::default()
            };
            Ok::<_, BoxError>(Frame::data(event.encode()))
        });
        event_stream(StreamBody::new(events).boxed_unsync())
    }

    /// Route one message from the server.
    fn dispatch(&self, message: Bytes) {
        if message.first() == Some(&b'[') {
            let Ok(items) = serde_json::from_slice::<Vec<&RawValue>>(&message) else {
                return;
            };
            for item in items {
                self.dispatch(Bytes::copy_from_slice(item.get().as_bytes()));
            }
            return;
        }
        let Ok(head) = serde_json::from_slice::<Head<'_>>(&message) else {
            tracing::warn!(route = %self.route, "Upstream message without a readable envelope dropped.");
            return;
        };
        let mut state = lock(&self.state);
        if head.method.is_none() {
            let Some(id) = head.id.map(RawValue::get) else {
                return;
            };
            match state.pending.iter().position(|p| p.wire_id == id) {
                Some(index) => {
                    let pending = state.pending.swap_remove(index);
                    let message = if self.rewrite_ids {
                        restore(&message, &["id"], &pending.agent_id)
                    } else {
                        message
                    };
                    let _ = pending.deliver(Delivery::Message(message));
                }
                None => {
                    tracing::debug!(route = %self.route, id, "Response to no request in flight dropped.");
                }
            }
            return;
        }
        let token = head
            .params
            .as_ref()
            .and_then(|p| p.progress_token)
            .map(RawValue::get);
        if head.method.as_deref() == Some("notifications/progress")
            && let Some(token) = token
            && let Some(pending) = state
                .pending
                .iter()
                .find(|p| p.progress.as_ref().is_some_and(|(wire, _)| wire == token))
        {
            let message = match &pending.progress {
                Some((_, agent)) if self.rewrite_ids => {
                    restore(&message, &["params", "progressToken"], agent)
                }
                _ => message,
            };
            if !pending.deliver(Delivery::Message(message)) {
                let wire_id = pending.wire_id.clone();
                tracing::warn!(route = %self.route, "An agent is not reading its call's stream; Warden stops waiting for it.");
                state.pending.retain(|p| p.wire_id != wire_id);
            }
            return;
        }
        let is_request = head.id.is_some();
        let targets: Vec<u64> = if !self.rewrite_ids {
            state.sole_view.into_iter().collect()
        } else if head
            .method
            .as_deref()
            .is_some_and(|m| m.ends_with("/list_changed"))
        {
            let mut all: Vec<u64> = state.listeners.keys().copied().collect();
            all.extend(state.pending.iter().map(|p| p.view));
            all.sort_unstable();
            all.dedup();
            all
        } else {
            let mut busy: Vec<u64> = state.pending.iter().map(|p| p.view).collect();
            busy.sort_unstable();
            busy.dedup();
            if busy.len() == 1 { busy } else { Vec::new() }
        };
        if targets.is_empty() {
            if is_request {
                let id = head.id.map_or("null", RawValue::get);
                let refusal = jsonrpc::error_response(
                    id,
                    jsonrpc::INTERNAL_ERROR,
                    "Warden shares this server among sessions and cannot tell which one this request is for",
                );
                let _ = self.write_locked(&state, refusal);
            }
            tracing::debug!(route = %self.route, "Server message for no single session dropped.");
            return;
        }
        for view in targets {
            deliver(&mut state, view, message.clone(), !self.rewrite_ids);
        }
    }

    /// The link died: every request in flight gets `detail`.
    fn link_down(&self, detail: &str, retry_in: Duration) {
        let mut state = lock(&self.state);
        state.outbound = None;
        state.down = Some(format!(
            "{detail}; Warden restarts it in {:.1}s",
            retry_in.as_secs_f32()
        ));
        for pending in state.pending.drain(..) {
            let _ = pending.deliver(Delivery::Failed(EdgeError::UpstreamDown {
                route: self.route.to_string(),
                detail: format!("{detail} before it answered"),
            }));
        }
    }

    /// A line of garbage: requests in flight cannot be trusted to be answered.
    fn garbage(&self, noun: &str) {
        let mut state = lock(&self.state);
        for pending in state.pending.drain(..) {
            let _ = pending.deliver(Delivery::Failed(EdgeError::UpstreamInvalid {
                route: self.route.to_string(),
                detail: format!(
                    "its {noun} sent something that is not a JSON-RPC message (MCP forbids this; see Warden's log)"
                ),
            }));
        }
    }

    fn link_up(&self, outbound: mpsc::Sender<Bytes>) {
        let mut state = lock(&self.state);
        state.outbound = Some(outbound);
        state.down = None;
    }
}

/// Hand a server message to a session: its GET stream, else (on a
/// channel of its own) the request it has in flight, else its backlog.
fn deliver(state: &mut ChannelState, view: u64, message: Bytes, via_requests: bool) {
    if let Some(listener) = state.listeners.get(&view) {
        if listener.send(message.clone()).is_ok() {
            return;
        }
        state.listeners.remove(&view);
    }
    if via_requests
        && let Some(pending) = state.pending.iter().rev().find(|p| p.view == view)
        && pending.deliver(Delivery::Message(message.clone()))
    {
        return;
    }
    let backlog = state.backlog.entry(view).or_default();
    if backlog.len() == MAX_BACKLOG {
        backlog.pop_front();
        tracing::warn!("A session's backlog of server messages is full; the oldest was dropped.");
    }
    backlog.push_back(message);
}

/// Keep a channel's link open until the channel is closed.
async fn supervise(
    channel: Arc<Channel>,
    connector: Arc<Connector>,
    metrics: LinkMetrics,
    mut link: OpenLink,
    mut stopped: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let noun = connector.noun();
    loop {
        let started = Instant::now();
        let detail = tokio::select! {
            detail = pump(&channel, &mut link.link.events, noun, &metrics) => detail,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        drop(link);
        metrics.closed.inc();
        if started.elapsed() >= HEALTHY_UPTIME {
            backoff = MIN_BACKOFF;
        }
        tracing::warn!(route = %channel.route, "Upstream {noun} {detail}; restarting in {:.1}s.", backoff.as_secs_f32());
        channel.link_down(&format!("{noun} {detail}"), backoff);
        link = loop {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match connector.connect(&channel.route, &metrics).await {
                Ok(link) => break link,
                Err(err) => {
                    tracing::warn!(route = %channel.route, "Upstream {noun} {err}; retrying in {:.1}s.", backoff.as_secs_f32());
                    channel.link_down(&format!("{noun} {err}"), backoff);
                }
            }
        };
        let replayed = tokio::select! {
            replayed = replay(&channel, &mut link.link) => replayed,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        match replayed {
            Ok(()) => {
                tracing::info!(route = %channel.route, "Upstream {noun} is back.");
                channel.link_up(link.link.outbound.clone());
            }
            Err(err) => {
                tracing::warn!(route = %channel.route, "Upstream {noun} {err}.");
                // The next turn of the loop sees the link's end.
                channel.link_down(&format!("{noun} {err}"), backoff);
            }
        }
    }
}

/// Deliver a link's messages until it closes; returns why it closed.
async fn pump(
    channel: &Channel,
    events: &mut mpsc::UnboundedReceiver<LinkEvent>,
    noun: &str,
    metrics: &LinkMetrics,
) -> String {
    // Servers that print a banner before their first message are common
    // enough to be skipped; garbage after that may have been an answer.
    let mut spoken = false;
    while let Some(event) = events.recv().await {
        match event {
            LinkEvent::Message(message) => {
                spoken = true;
                channel.dispatch(message);
            }
            LinkEvent::Garbage(preview) if !spoken => {
                metrics.garbage.inc();
                tracing::warn!(route = %channel.route, line = %preview, "Upstream {noun} sent something that is not JSON-RPC before its first message; skipped.");
            }
            LinkEvent::Garbage(preview) => {
                metrics.garbage.inc();
                tracing::warn!(route = %channel.route, line = %preview, "Upstream {noun} sent something that is not JSON-RPC; its requests in flight are failed.");
                channel.garbage(noun);
            }
            LinkEvent::Closed(detail) => return detail,
        }
    }
    "closed".to_owned()
}

/// A reopened link: the session's `initialize` and `initialized` again, so
/// the server is ready for the requests that follow.
async fn replay(channel: &Channel, link: &mut Link) -> Result<(), String> {
    let (initialize, initialized) = {
        let state = lock(&channel.state);
        (state.initialize.clone(), state.initialized.clone())
    };
    let Some(initialize) = initialize else {
        return Ok(());
    };
    let wire_id = "\"warden-replay\"";
    let message = set_member(&initialize, &["id"], wire_id).ok_or("unreadable initialize")?;
    link.outbound
        .send(Bytes::from(message))
        .await
        .map_err(|_| "closed before initialize".to_owned())?;
    tokio::time::timeout(MAX_BACKOFF, async {
        while let Some(event) = link.events.recv().await {
            match event {
                LinkEvent::Message(message) => {
                    let is_answer = serde_json::from_slice::<Head<'_>>(&message).is_ok_and(|h| {
                        h.method.is_none() && h.id.is_some_and(|id| id.get() == wire_id)
                    });
                    if is_answer {
                        return Ok(());
                    }
                    channel.dispatch(message);
                }
                LinkEvent::Garbage(_) => {}
                LinkEvent::Closed(detail) => return Err(detail),
            }
        }
        Err("closed".to_owned())
    })
    .await
    .map_err(|_| "did not answer initialize after a restart".to_owned())??;
    if let Some(initialized) = initialized {
        link.outbound
            .send(initialized)
            .await
            .map_err(|_| "closed after initialize".to_owned())?;
    }
    Ok(())
}

/// The envelope fields the bridge needs from an agent's message.
struct Envelope {
    kind: MessageKind,
    /// The id, as JSON text.
    id: Option<String>,
    method: Option<String>,
    /// `params._meta.progressToken`, as JSON text.
    progress_token: Option<String>,
}

impl Envelope {
    fn read(message: &[u8]) -> Option<Envelope> {
        #[derive(Deserialize)]
        struct Message<'a> {
            #[serde(borrow)]
            id: Option<&'a RawValue>,
            method: Option<String>,
            #[serde(borrow)]
            params: Option<Params<'a>>,
        }
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow, rename = "_meta")]
            meta: Option<Meta<'a>>,
        }
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(borrow, rename = "progressToken")]
            progress_token: Option<&'a RawValue>,
        }
        let message: Message<'_> = serde_json::from_slice(message).ok()?;
        let kind = match (&message.method, &message.id) {
            (Some(_), Some(_)) => MessageKind::Request,
            (Some(_), None) => MessageKind::Notification,
            (None, _) => MessageKind::Response,
        };
        Some(Envelope {
            kind,
            id: message.id.map(|id| id.get().to_owned()),
            method: message.method,
            progress_token: message
                .params
                .and_then(|p| p.meta)
                .and_then(|m| m.progress_token)
                .map(|t| t.get().to_owned()),
        })
    }
}

/// What the bridge reads of a server's message.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<HeadParams<'a>>,
}

#[derive(Deserialize)]
struct HeadParams<'a> {
    #[serde(borrow, rename = "progressToken")]
    progress_token: Option<&'a RawValue>,
}

/// Whether a message is an `initialize` request.
fn is_initialize(message: &[u8]) -> bool {
    Envelope::read(message).is_some_and(|e| {
        e.kind == MessageKind::Request && e.method.as_deref() == Some(mcp::METHOD_INITIALIZE)
    })
}

/// The id of a message, as JSON text.
fn message_id(message: &[u8]) -> Option<String> {
    Envelope::read(message).and_then(|e| e.id)
}

/// The `result` member of a response, as JSON text.
fn result_member(message: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Reply<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Reply<'_>>(message)
        .ok()?
        .result
        .map(|r| r.get().to_owned())
}

/// `message` with the member at `path` set to `value` (JSON text). Values
/// elsewhere keep their bytes; members are written in sorted order.
fn set_member(message: &[u8], path: &[&str], value: &str) -> Option<String> {
    let mut object: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(message).ok()?;
    let (first, rest) = path.split_first()?;
    let new = if rest.is_empty() {
        value.to_owned()
    } else {
        let inner = object.get(*first)?.get().as_bytes();
        set_member(inner, rest, value)?
    };
    object.insert((*first).to_owned(), RawValue::from_string(new).ok()?);
    serde_json::to_string(&object).ok()
}

/// `message` with the member at `path` put back as the agent wrote it.
fn restore(message: &Bytes, path: &[&str], agent_value: &str) -> Bytes {
    set_member(message, path, agent_value).map_or_else(|| message.clone(), Bytes::from)
}

fn error_detail(error: EdgeError) -> String {
    match error {
        EdgeError::UpstreamDown { detail, .. } | EdgeError::UpstreamInvalid { detail, .. } => {
            detail
        }
        other => other.to_string(),
    }
}

fn tokio_stream<T: Send + 'static>(
    mut receiver: mpsc::UnboundedReceiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

fn bounded_stream<T: Send + 'static>(
    mut receiver: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

fn event_stream(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn status_only(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(relay::empty());
    *response.status_mut() = status;
    response
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_replaced_and_other_values_keep_their_bytes() {
        let message = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"n":1.50},"_meta":{"progressToken":"p"}}}"#;
        let out = set_member(message, &["params", "_meta", "progressToken"], "\"w1\"")
            .expect("rewritten");
        assert!(out.contains(r#""progressToken":"w1""#), "{out}");
        assert!(out.contains(r#""arguments":{"n":1.50}"#), "{out}");
        assert!(out.contains(r#""id":7"#), "{out}");
        assert_eq!(set_member(b"[1]", &["id"], "1"), None);
        assert_eq!(
            set_member(br#"{"id":1}"#, &["params", "x"], "1"),
            None,
            "a missing parent is not invented"
        );
    }

    #[test]
    fn envelopes_name_kind_id_and_progress_token() {
        let request = Envelope::read(
            br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"_meta":{"progressToken":5}}}"#,
        )
        .expect("read");
        assert_eq!(request.kind, MessageKind::Request);
        assert_eq!(request.id.as_deref(), Some("\"a\""));
        assert_eq!(request.progress_token.as_deref(), Some("5"));
        let reply = Envelope::read(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#).expect("read");
        assert_eq!(reply.kind, MessageKind::Response);
    }
}
