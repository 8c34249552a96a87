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
//! On a shared child (and on the channel of stateless requests), request
//! ids and progress tokens are rewritten on the way in (and back on the way
//! out) so sessions cannot collide, and nothing is guessed: a server request
//! is refused to the server, a notification that names no request of one
//! session is dropped, and change notices go to every session.
//!
//! Links and their supervisors run on the runtime Warden was started on,
//! not on the worker that happened to open them, so they outlive the
//! workers at shutdown and are stopped in order (stdin closed, SIGTERM,
//! SIGKILL).

mod channel;
mod replay;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::{mpsc, oneshot};
use warden_protocol::jsonrpc::{self, MessageKind};
use warden_protocol::mcp;
use warden_protocol::sse::SseEvent;

use self::channel::{Channel, Last, Reply};
use self::replay::{Replay, Then};
use self::wire::{Envelope, is_initialize, message_id};
use super::{HttpUpstream, UpstreamSetupError};
use crate::LinkMetrics;
use crate::body::{self as relay, Body, BoxError};
use crate::config::{ChildSharing, StdioCommand};
use crate::error::EdgeError;

/// The view number of the stateless channel (sessions count from 1).
const STATELESS_VIEW: u64 = 0;
/// How long a stopped link has to end before Warden moves on.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// One connection to the server: messages out, events in, and its stop.
pub(super) struct Link {
    /// Messages to the server, one JSON-RPC message (or batch) each.
    pub outbound: mpsc::Sender<Bytes>,
    /// What the server sends, in order.
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Sent or dropped: the link is torn down (a child is asked to exit).
    pub stop: Option<oneshot::Sender<()>>,
    /// Completes when the link is gone (the child and its group reaped).
    pub done: oneshot::Receiver<()>,
}

/// Messages queued for a link before senders are refused ("queue full").
const LINK_QUEUE: usize = 256;

/// The transport's end of a [`Link`]: the messages to send, where to report
/// what the server sends, the stop signal, and the "gone" signal to give
/// once everything is torn down.
pub(super) struct LinkEnd {
    pub to_server: mpsc::Receiver<Bytes>,
    pub events: mpsc::UnboundedSender<LinkEvent>,
    pub stopped: oneshot::Receiver<()>,
    pub finished: oneshot::Sender<()>,
}

impl Link {
    /// A link and the transport's end of it.
    pub fn pair() -> (Link, LinkEnd) {
        let (outbound, to_server) = mpsc::channel(LINK_QUEUE);
        let (events, link_events) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let (finished, done) = oneshot::channel();
        let link = Link {
            outbound,
            events: link_events,
            stop: Some(stop),
            done,
        };
        let end = LinkEnd {
            to_server,
            events,
            stopped,
            finished,
        };
        (link, end)
    }
}

/// What a link reports.
pub(super) enum LinkEvent {
    /// One JSON message from the server.
    Message(Bytes),
    /// Something that is not a JSON-RPC message; a preview for the log.
    Garbage(String),
    /// The server refused one message (its request fails; the link lives).
    Refused {
        /// The message.
        message: Bytes,
        /// Why.
        detail: String,
    },
    /// The link is gone, and why ("exited (exit status: 1)").
    Closed(String),
}

/// A link, counted as open while alive.
pub(super) struct OpenLink {
    pub link: Link,
    _counted: OpenGuard,
}

// === impl OpenLink ===

impl OpenLink {
    /// Tear the link down and wait (bounded) until it is gone.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.link.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(STOP_WAIT, &mut self.link.done).await;
    }
}

struct OpenGuard(prometheus_client::metrics::gauge::Gauge);

// === impl OpenGuard ===

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// How links are opened.
pub(super) enum Connector {
    Stdio(StdioCommand),
    LegacySse(Arc<HttpUpstream>),
}

// === impl Connector ===

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

    /// What Warden does about a dead link.
    pub(super) fn retry_verb(&self) -> &'static str {
        match self {
            Connector::Stdio(_) => "restarts it",
            Connector::LegacySse(_) => "reconnects",
        }
    }
}

/// The limits a bridge works within, from the route's `upstream:`.
#[derive(Debug, Clone, Copy)]
pub struct BridgeLimits {
    /// Time to a link being open and to the server's `initialize` result.
    pub timeout: Duration,
    /// Time to the server's response to any other request.
    pub reply_timeout: Duration,
    /// Most links open at once.
    pub max_links: usize,
}

/// A stdio or legacy SSE upstream, seen by the proxy as Streamable HTTP.
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<BridgeInner>,
}

/// What a [`Bridge`] shares with the requests in flight.
struct BridgeInner {
    route: Arc<str>,
    limits: BridgeLimits,
    connector: Arc<Connector>,
    metrics: LinkMetrics,
    sharing: ChildSharing,
    /// Where links and supervisors run.
    runtime: tokio::runtime::Handle,
    /// The bridge's session ids → the session's view of its channel.
    sessions: Mutex<HashMap<String, View>>,
    /// Every channel whose link may still be running (ended sessions'
    /// too, while their children exit), so shutdown waits for them all.
    channels: Mutex<Vec<Arc<Channel>>>,
    /// Per-session links being opened (they count against `max_links`).
    opening: AtomicUsize,
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
    /// The session's resumable streams (none for stateless requests,
    /// which have no session to resume in).
    replay: Option<Arc<Replay>>,
}

impl View {
    fn session(number: u64, channel: Arc<Channel>) -> View {
        View {
            number,
            channel,
            replay: Some(Arc::default()),
        }
    }
}

/// Closes a channel whose `initialize` did not finish (failed, or the
/// agent went away and the handler was dropped), unless disarmed.
struct CloseUnlessKept(Option<Arc<Channel>>);

// === impl CloseUnlessKept ===

impl Drop for CloseUnlessKept {
    fn drop(&mut self) {
        if let Some(channel) = self.0.take() {
            channel.close("was stopped: its session never started");
        }
    }
}

/// Empties the shared channel's slot unless disarmed.
struct ClearSlot<'a>(Option<&'a mut Option<Arc<Channel>>>);

// === impl ClearSlot ===

impl Drop for ClearSlot<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            *slot = None;
        }
    }
}

/// Counts a link being opened against `max_links`.
struct Opening<'a>(&'a AtomicUsize);

// === impl Opening ===

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

// === impl Bridge ===

impl Bridge {
    /// A bridge to a stdio server.
    pub(super) fn stdio(
        route: &str,
        command: StdioCommand,
        limits: BridgeLimits,
        metrics: LinkMetrics,
    ) -> Result<Bridge, UpstreamSetupError> {
        let sharing = command.sharing;
        Bridge::new(route, Connector::Stdio(command), sharing, limits, metrics)
    }

    /// A bridge to a legacy HTTP+SSE server (one stream per session).
    pub(super) fn legacy_sse(
        route: &str,
        client: HttpUpstream,
        limits: BridgeLimits,
        metrics: LinkMetrics,
    ) -> Result<Bridge, UpstreamSetupError> {
        let connector = Connector::LegacySse(Arc::new(client));
        Bridge::new(route, connector, ChildSharing::PerSession, limits, metrics)
    }

    fn new(
        route: &str,
        connector: Connector,
        sharing: ChildSharing,
        limits: BridgeLimits,
        metrics: LinkMetrics,
    ) -> Result<Bridge, UpstreamSetupError> {
        // Links run on the runtime Warden is built in, not on the worker
        // that happens to open them.
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| UpstreamSetupError::NoRuntime)?;
        Ok(Bridge {
            inner: Arc::new(BridgeInner {
                route: route.into(),
                limits,
                connector: Arc::new(connector),
                metrics,
                sharing,
                runtime,
                sessions: Mutex::new(HashMap::new()),
                channels: Mutex::new(Vec::new()),
                opening: AtomicUsize::new(0),
                shared: tokio::sync::Mutex::new(None),
                stateless: tokio::sync::Mutex::new(None),
                next_number: AtomicU64::new(1),
            }),
        })
    }

    /// The time limit for the server's answer to `initialize`.
    pub fn timeout(&self) -> Duration {
        self.inner.limits.timeout
    }

    /// End every session and stop every link (children are asked to exit:
    /// stdin closed, then SIGTERM, then SIGKILL).
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        lock(&inner.sessions).clear();
        for slot in [&inner.shared, &inner.stateless] {
            slot.lock().await.take();
        }
        let channels: Vec<Arc<Channel>> = std::mem::take(&mut *lock(&inner.channels));
        for channel in &channels {
            channel.close("was stopped: Warden is shutting down");
        }
        for channel in channels {
            channel.stopped(STOP_WAIT).await;
        }
    }

    /// Answer one Streamable HTTP request.
    pub async fn send(
        self,
        method: Method,
        session: Option<HeaderValue>,
        last_event_id: Option<&str>,
        body: Bytes,
    ) -> Result<Response<Body>, EdgeError> {
        let inner = &self.inner;
        let view = session
            .as_ref()
            .and_then(|s| s.to_str().ok())
            .and_then(|s| lock(&inner.sessions).get(s).cloned());
        match (method, session, view) {
            (Method::POST, None, _) if is_initialize(&body) => self.initialize(body).await,
            (Method::POST, None, _) => self.stateless(body).await,
            (_, Some(_), None) => Ok(status_only(StatusCode::NOT_FOUND)),
            (Method::POST, Some(_), Some(view)) => self.post(&view, body),
            (Method::GET, Some(_), Some(view)) => Ok(listen(&view, last_event_id)),
            (Method::DELETE, Some(id), Some(view)) => {
                if let Ok(id) = id.to_str() {
                    lock(&inner.sessions).remove(id);
                }
                if inner.sharing == ChildSharing::PerSession {
                    view.channel.close("was stopped: the session ended");
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
            route: self.inner.route.to_string(),
            detail,
        }
    }

    /// `initialize`: a new channel (or the shared one), then a session id.
    async fn initialize(&self, body: Bytes) -> Result<Response<Body>, EdgeError> {
        let inner = &self.inner;
        let number = inner.next_number.fetch_add(1, Ordering::Relaxed);
        let agent_id = message_id(&body).ok_or_else(|| self.down("got no initialize id".into()))?;
        let session_id = format!("bridge-{number}");
        let reply = match inner.sharing {
            ChildSharing::PerSession => {
                let _opening = self.reserve_link()?;
                let channel = self.open_channel(false).await?;
                let mut guard = CloseUnlessKept(Some(channel.clone()));
                let reply = channel
                    .initialize(number, &body)
                    .await
                    .map_err(|err| self.down(err))?;
                if reply.is_ok() {
                    guard.0 = None;
                    // Counted as a session before it stops counting as opening.
                    lock(&inner.sessions)
                        .insert(session_id.clone(), View::session(number, channel));
                }
                reply
            }
            ChildSharing::Shared => {
                let mut shared = inner.shared.lock().await;
                let channel = match shared.as_ref() {
                    Some(channel) if channel.is_open() => channel.clone(),
                    _ => {
                        let channel = self.open_channel(true).await?;
                        *shared = Some(channel.clone());
                        channel
                    }
                };
                let reply = match channel.cached_initialize() {
                    Some(result) => Ok(result),
                    None => {
                        // Not initialized yet, so no session uses it: if this
                        // first initialize fails, is refused, or its agent
                        // goes away, the next session starts a fresh child.
                        let mut guard = CloseUnlessKept(Some(channel.clone()));
                        let mut slot = ClearSlot(Some(&mut *shared));
                        let reply = channel
                            .initialize(number, &body)
                            .await
                            .map_err(|err| self.down(err))?;
                        if reply.is_ok() {
                            guard.0 = None;
                            slot.0 = None;
                        }
                        reply
                    }
                };
                if reply.is_ok() {
                    lock(&inner.sessions)
                        .insert(session_id.clone(), View::session(number, channel));
                }
                reply
            }
        };
        let reply = match reply {
            Ok(result) => jsonrpc::result_response(&agent_id, &result),
            // The server's own error: relayed, and no session opened.
            Err(message) => return Ok(relay::json(StatusCode::OK, message)),
        };
        let mut response = relay::json(StatusCode::OK, reply);
        if let Ok(value) = HeaderValue::from_str(&session_id) {
            response.headers_mut().insert(mcp::HEADER_SESSION_ID, value);
        }
        Ok(response)
    }

    /// Room for one more per-session link, or 503.
    fn reserve_link(&self) -> Result<Opening<'_>, EdgeError> {
        let inner = &self.inner;
        let opening = inner.opening.fetch_add(1, Ordering::AcqRel);
        let guard = Opening(&inner.opening);
        if lock(&inner.sessions).len() + opening >= inner.limits.max_links {
            return Err(EdgeError::UpstreamBusy {
                route: inner.route.to_string(),
                limit: inner.limits.max_links,
            });
        }
        Ok(guard)
    }

    /// A request of the stateless revision: no session, one channel for all.
    async fn stateless(&self, body: Bytes) -> Result<Response<Body>, EdgeError> {
        let inner = &self.inner;
        if let Connector::LegacySse(_) = *inner.connector {
            return Err(EdgeError::StatelessInvalid {
                detail: "this route's upstream speaks only the legacy HTTP+SSE transport (MCP 2024-11-05): send initialize",
            });
        }
        let channel = {
            let mut stateless = inner.stateless.lock().await;
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
                replay: None,
            },
            body,
        )
    }

    /// Open a link on Warden's runtime and put a channel around it.
    async fn open_channel(&self, rewrite_ids: bool) -> Result<Arc<Channel>, EdgeError> {
        let inner = &self.inner;
        let (connector, route, metrics) = (
            inner.connector.clone(),
            inner.route.clone(),
            inner.metrics.clone(),
        );
        let connecting = inner
            .runtime
            .spawn(async move { connector.connect(&route, &metrics).await });
        let link = tokio::time::timeout(inner.limits.timeout, connecting)
            .await
            .map_err(|_| self.down(format!("{} did not start in time", inner.connector.noun())))?
            .map_err(|_| self.down("could not be started (task failed)".to_owned()))?
            .map_err(|err| self.down(err))?;
        let channel = Channel::start(
            inner.route.clone(),
            inner.connector.clone(),
            inner.metrics.clone(),
            link,
            rewrite_ids,
            inner.limits,
            &inner.runtime,
        );
        let mut channels = lock(&inner.channels);
        channels.retain(|c| !c.is_finished());
        channels.push(channel.clone());
        Ok(channel)
    }

    /// A message of an open session (or of the stateless channel).
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
            channel
                .write(view.number, &envelope, body)
                .map_err(|detail| self.down(detail))?;
            return Ok(status_only(StatusCode::ACCEPTED));
        }
        let agent_id = envelope.id.clone().unwrap_or_else(|| "null".to_owned());
        let internal = super::is_catalogue_fetch(&agent_id);
        let deadline = channel.reply_deadline(&envelope);
        let (replies, serial) = channel
            .request(view.number, envelope, body, internal, deadline)
            .map_err(|detail| self.down(detail))?;
        // Stateless requests are cancelled by closing their stream; a
        // stateful agent that hangs up has not cancelled anything.
        let mut abandon = Abandon {
            channel: channel.clone(),
            serial,
            cancel: (view.number == STATELESS_VIEW)
                .then_some("the client closed the request's stream"),
        };
        // A request with no deadline (`subscriptions/listen`) is not kept
        // past its agent's hang-up: nothing would ever end its pump.
        let Some(replay) = view.replay.clone().filter(|_| deadline.is_some()) else {
            let events = replies.map(move |reply| {
                let data = reply_data(reply, &mut abandon, &agent_id);
                Ok::<_, BoxError>(Frame::data(encode_event(&data)))
            });
            return Ok(event_stream(StreamBody::new(events).boxed_unsync()));
        };
        // A session's reply stream is resumable: a pump hands what the
        // server sends to the agent's response and keeps it in the
        // session's log, whether or not the agent is still connected.
        let (stream, live) = replay.open_reply();
        self.inner.runtime.spawn(async move {
            let ended = EndReply(replay, stream);
            let mut replies = replies;
            while let Some(reply) = replies.next().await {
                let data = reply_data(reply, &mut abandon, &agent_id);
                let (frame, sink) = ended.0.push(stream, &data);
                if let Some(sink) = sink
                    && sink.send(frame).await.is_err()
                {
                    ended.0.detach(stream, &sink);
                }
            }
            drop(ended);
            drop(abandon);
        });
        Ok(event_stream(frames(Vec::new(), live)))
    }
}

/// What one reply of a request sends to the agent (a failure as its
/// JSON-RPC error; a timeout also tells the server to stop).
fn reply_data(reply: Reply, abandon: &mut Abandon, agent_id: &str) -> Bytes {
    match reply {
        Reply::Interim(message) | Reply::Last(Last::Message(message)) => message,
        Reply::Last(Last::Failed(error)) => {
            // Given up on: the server is told to stop working on it (as
            // MCP asks of a sender whose request timed out).
            if let EdgeError::UpstreamTimeout { seconds, .. } = &error {
                tracing::warn!(route = %abandon.channel.route, seconds, "A request got no answer from the upstream in time; cancelled.");
                abandon.cancel =
                    Some("Warden gave up waiting for the answer (upstream.reply_timeout)");
            }
            error.body(agent_id)
        }
    }
}

/// A body of `missed` frames, then those `live` brings.
fn frames(missed: Vec<Bytes>, mut live: mpsc::Receiver<Bytes>) -> Body {
    let live = futures_util::stream::poll_fn(move |cx| live.poll_recv(cx));
    let events = futures_util::stream::iter(missed)
        .chain(live)
        .map(|frame| Ok::<_, BoxError>(Frame::data(frame)));
    StreamBody::new(events).boxed_unsync()
}

/// GET: the session's stream of server requests and notifications, or,
/// with a `Last-Event-ID` the session's log can resume, the rest of the
/// stream it names.
fn listen(view: &View, last_event_id: Option<&str>) -> Response<Body> {
    let Some(replay) = view.replay.clone() else {
        let mut messages = view.channel.listen(view.number);
        let events = futures_util::stream::poll_fn(move |cx| messages.poll_recv(cx))
            .map(|message: Bytes| Ok::<_, BoxError>(Frame::data(encode_event(&message))));
        return event_stream(StreamBody::new(events).boxed_unsync());
    };
    // A listen stream is fed while the agent holds it: what the server
    // sends after a hang-up waits in the channel's backlog for the next
    // GET, as before. Its events are logged as they go out, so a resumed
    // GET first gets those the agent may have missed, then listens again
    // under the same stream.
    let (stream, holder, missed) = match last_event_id.and_then(|id| replay.resume(id)) {
        Some(resumed) => match resumed.then {
            Then::Reply(live) => return event_stream(frames(resumed.missed, live)),
            Then::Listen { holder } => (resumed.stream, holder, resumed.missed),
        },
        None => (replay.open_listen(), 0, Vec::new()),
    };
    let messages = view.channel.listen(view.number);
    let held = EndListen(replay, stream, holder);
    let live =
        futures_util::stream::unfold((messages, held), move |(mut messages, held)| async move {
            let message = messages.recv().await?;
            let (frame, _) = held.0.push(stream, &message);
            Some((frame, (messages, held)))
        });
    let events = futures_util::stream::iter(missed)
        .chain(live)
        .map(|frame| Ok::<_, BoxError>(Frame::data(frame)));
    event_stream(StreamBody::new(events).boxed_unsync())
}

/// Ends a reply stream when its pump stops (finished, or panicked).
struct EndReply(Arc<Replay>, u64);

impl Drop for EndReply {
    fn drop(&mut self) {
        self.0.end_reply(self.1);
    }
}

/// Lets go of a listen stream when its agent's response is dropped.
struct EndListen(Arc<Replay>, u64, u64);

impl Drop for EndListen {
    fn drop(&mut self) {
        self.0.end_listen(self.1, self.2);
    }
}

/// Ends a request's place on its channel when the agent's stream is
/// dropped (finished, or the agent hung up).
struct Abandon {
    channel: Arc<Channel>,
    serial: Option<u64>,
    /// Why the server is told to stop working on it, if it is.
    cancel: Option<&'static str>,
}

// === impl Abandon ===

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(serial) = self.serial {
            self.channel.abandon(serial, self.cancel);
        }
    }
}

fn encode_event(data: &[u8]) -> Bytes {
    SseEvent {
        data: Some(String::from_utf8_lossy(data).into_owned()),
        ..SseEvent::default()
    }
    .encode()
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
