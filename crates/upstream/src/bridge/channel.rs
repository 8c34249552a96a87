//! One channel: a link to the server kept open (reopened after a death) by
//! its supervisor, the requests in flight on it, and where the server's
//! other messages go.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, oneshot, watch};
use warden_protocol::jsonrpc;
use warden_protocol::mcp::METHOD_SUBSCRIPTIONS_LISTEN;

use super::wire::{Envelope, Head, restore, result_member, set_member};
use super::{BridgeLimits, Connector, Link, LinkEvent, OpenLink, lock};
use crate::LinkMetrics;
use crate::error::EdgeError;

/// First wait before a dead link is opened again.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A link that lived this long was healthy: the next backoff starts over.
const HEALTHY_UPTIME: Duration = Duration::from_secs(30);
/// Server messages held for a session that has no stream open.
const MAX_BACKLOG: usize = 256;
/// Server messages queued for one stream (a request's progress, a GET
/// stream) whose agent is not reading; past this they are dropped. A
/// request's own response has a place of its own and is never dropped.
const MAX_QUEUED: usize = 256;

/// What ends a request's stream: its response, or why there is none.
pub(super) enum Last {
    /// The server's response.
    Message(Bytes),
    /// No response will come.
    Failed(EdgeError),
}

/// The messages a request's stream carries: what comes before its
/// response (bounded, droppable), then the response (always delivered).
pub(super) struct Replies {
    interim: mpsc::Receiver<Bytes>,
    last: Option<oneshot::Receiver<Last>>,
    ending: Option<Last>,
    /// When the response is given up on (`upstream.reply_timeout`), and
    /// the error it then ends with: a request whose answer never comes
    /// (lost, or never sent) still ends. `None` for requests answered only
    /// when they end (a listen stream).
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, EdgeError)>,
}

/// One item of a request's stream.
pub(super) enum Reply {
    /// A notification for the request (progress).
    Interim(Bytes),
    /// Its response, or why there is none; the stream ends after it.
    Last(Last),
}

// === impl Replies ===

impl Stream for Replies {
    type Item = Reply;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        let this = &mut *self;
        if let Some(ending) = this.ending.take() {
            // Everything queued before the response goes out first.
            return match this.interim.try_recv() {
                Ok(message) => {
                    this.ending = Some(ending);
                    Poll::Ready(Some(Reply::Interim(message)))
                }
                Err(_) => Poll::Ready(Some(Reply::Last(ending))),
            };
        }
        if let Poll::Ready(Some(message)) = this.interim.poll_recv(cx) {
            return Poll::Ready(Some(Reply::Interim(message)));
        }
        let Some(last) = this.last.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(last).poll(cx) {
            Poll::Ready(result) => {
                this.last = None;
                match result {
                    Ok(ending) => {
                        this.ending = Some(ending);
                        self.poll_next(cx)
                    }
                    Err(_) => Poll::Ready(None),
                }
            }
            Poll::Pending => {
                // Only while the answer is still to come: one that has
                // arrived is never replaced by the timeout.
                if let Some((mut sleep, expired)) = this.deadline.take() {
                    if sleep.as_mut().poll(cx).is_ready() {
                        this.last = None;
                        this.ending = Some(Last::Failed(expired));
                        return self.poll_next(cx);
                    }
                    this.deadline = Some((sleep, expired));
                }
                Poll::Pending
            }
        }
    }
}

/// A request in flight on a channel.
struct Pending {
    /// Unique on the channel (ids may be reused once answered).
    serial: u64,
    view: u64,
    /// The id as the server sees it.
    wire_id: String,
    /// The id as the agent sent it.
    agent_id: String,
    /// The progress token as the server sees it, and as the agent sent it.
    progress: Option<(String, String)>,
    /// Warden's own request (a catalogue fetch): never handed server requests.
    internal: bool,
    interim: mpsc::Sender<Bytes>,
    last: Option<oneshot::Sender<Last>>,
    /// Interim messages were dropped (logged once).
    overflowed: bool,
}

// === impl Pending ===

impl Pending {
    /// Queue a message before the response: `Some(true)` queued,
    /// `Some(false)` dropped (the agent is not reading), `None` the agent
    /// is gone.
    fn interim(&mut self, message: Bytes, route: &str) -> Option<bool> {
        match self.interim.try_send(message) {
            Ok(()) => Some(true),
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflowed {
                    self.overflowed = true;
                    tracing::warn!(
                        route,
                        "An agent is not reading its call's stream; messages for it are dropped until it does."
                    );
                }
                Some(false)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    fn finish(mut self, last: Last) {
        if let Some(sender) = self.last.take() {
            let _ = sender.send(last);
        }
    }
}

/// A session's GET stream.
struct Listener {
    sender: mpsc::Sender<Bytes>,
    overflowed: bool,
}

/// What the channel's handles share.
pub(super) struct Channel {
    pub route: Arc<str>,
    /// "restarts it" (a child) or "reconnects" (a stream).
    retry_verb: &'static str,
    /// Ids and progress tokens rewritten: a shared or stateless channel.
    pub rewrite_ids: bool,
    /// Time to the server's answer to `initialize` (and to a replay's).
    timeout: Duration,
    /// Time to the server's answer to any other request.
    reply_timeout: Duration,
    state: Mutex<ChannelState>,
    stop: watch::Sender<bool>,
    /// True once the supervisor has ended (its link stopped).
    finished: watch::Sender<bool>,
    next_serial: AtomicU64,
}

#[derive(Default)]
struct ChannelState {
    /// Where messages to the server go; `None` while the link is down.
    outbound: Option<mpsc::Sender<Bytes>>,
    /// Why the link is down, for callers in the meantime.
    down: Option<String>,
    /// When the supervisor tries again (while the link is down).
    retry_at: Option<Instant>,
    pending: Vec<Pending>,
    /// Each session's GET stream.
    listeners: HashMap<u64, Listener>,
    /// Server messages for sessions not listening yet.
    backlog: HashMap<u64, VecDeque<Bytes>>,
    /// Server requests handed to a session (per-session channels): the
    /// only ids an agent may answer.
    asked: Vec<String>,
    /// The `initialize` request, replayed when the link is reopened.
    initialize: Option<Bytes>,
    initialized: Option<Bytes>,
    /// The server's `initialize` result (what a shared channel's later
    /// sessions are answered with).
    initialize_result: Option<String>,
    next_wire_id: u64,
    /// The one session of a per-session channel.
    sole_view: Option<u64>,
}

// === impl Channel ===

impl Channel {
    /// A channel over `link`, supervised on `runtime`.
    pub fn start(
        route: Arc<str>,
        connector: Arc<Connector>,
        metrics: LinkMetrics,
        link: OpenLink,
        rewrite_ids: bool,
        limits: BridgeLimits,
        runtime: &tokio::runtime::Handle,
    ) -> Arc<Channel> {
        let (stop, stopped) = watch::channel(false);
        let channel = Arc::new(Channel {
            route,
            retry_verb: connector.retry_verb(),
            rewrite_ids,
            timeout: limits.timeout,
            reply_timeout: limits.reply_timeout,
            state: Mutex::new(ChannelState {
                outbound: Some(link.link.outbound.clone()),
                ..ChannelState::default()
            }),
            stop,
            finished: watch::channel(false).0,
            next_serial: AtomicU64::new(1),
        });
        let supervised = channel.clone();
        runtime.spawn(async move {
            supervise(supervised.clone(), connector, metrics, link, stopped).await;
            supervised.finished.send_replace(true);
        });
        channel
    }

    /// Whether the supervisor has ended (the link is gone for good).
    pub fn is_finished(&self) -> bool {
        *self.finished.borrow()
    }

    /// Wait (at most `limit`) until a closed channel's link is gone.
    pub async fn stopped(&self, limit: Duration) {
        let mut finished = self.finished.subscribe();
        let _ = tokio::time::timeout(limit, finished.wait_for(|done| *done)).await;
    }

    pub fn is_open(&self) -> bool {
        !*self.stop.borrow()
    }

    /// Stop the link; requests in flight get `why`.
    pub fn close(&self, why: &str) {
        let _ = self.stop.send(true);
        let mut state = lock(&self.state);
        state.outbound = None;
        state.down = Some(why.to_owned());
        self.fail_all(&mut state, why);
        state.listeners.clear();
    }

    /// A session of a shared channel ended.
    pub fn forget_view(&self, view: u64) {
        let mut state = lock(&self.state);
        for pending in extract(&mut state.pending, |p| p.view == view) {
            pending.finish(Last::Failed(self.down("session ended".to_owned())));
        }
        state.listeners.remove(&view);
        state.backlog.remove(&view);
    }

    pub fn cached_initialize(&self) -> Option<String> {
        lock(&self.state).initialize_result.clone()
    }

    /// Remember the agent's `notifications/initialized` for replays; false
    /// if the server has had one already (a shared server).
    pub fn note_initialized(&self, message: &Bytes) -> bool {
        let mut state = lock(&self.state);
        if state.initialized.is_some() {
            return !self.rewrite_ids;
        }
        state.initialized = Some(message.clone());
        true
    }

    fn down(&self, detail: String) -> EdgeError {
        EdgeError::UpstreamDown {
            route: self.route.to_string(),
            detail,
        }
    }

    /// Send `initialize` and wait for the server's answer: its result, or
    /// its whole error response.
    pub async fn initialize(
        &self,
        view: u64,
        body: &Bytes,
    ) -> Result<Result<String, Bytes>, String> {
        let envelope = Envelope::read(body).ok_or("got an unreadable initialize")?;
        // Its own time limit (`upstream.timeout`) is kept below.
        let (mut replies, _) = self.request(view, envelope, body.clone(), false, None)?;
        let answer = tokio::time::timeout(self.timeout, async {
            loop {
                match futures_util::StreamExt::next(&mut replies).await {
                    Some(Reply::Interim(_)) => {}
                    Some(Reply::Last(last)) => return Some(last),
                    None => return None,
                }
            }
        })
        .await
        .map_err(|_| {
            format!(
                "did not answer initialize within {}s",
                self.timeout.as_secs()
            )
        })?;
        let reply = match answer {
            Some(Last::Message(message)) => match result_member(&message) {
                Some(result) => Ok(result),
                None => Err(message),
            },
            Some(Last::Failed(error)) => return Err(error_detail(error)),
            None => return Err("closed before it answered initialize".to_owned()),
        };
        if let Ok(result) = &reply {
            let mut state = lock(&self.state);
            state.initialize = Some(body.clone());
            state.initialize_result = Some(result.clone());
        }
        Ok(reply)
    }

    /// Write an agent's notification or response to the server. On a
    /// channel with rewritten ids, a cancellation names the server's id
    /// for the sender's own request, and an answer to a server request is
    /// dropped (such channels hand the agent no server requests); on a
    /// per-session channel, an answer must be to a request the session
    /// was asked.
    pub fn write(&self, view: u64, envelope: &Envelope, message: Bytes) -> Result<(), String> {
        let mut state = lock(&self.state);
        if let Some(request_id) = envelope.cancels.as_ref().filter(|_| self.rewrite_ids) {
            let Some(pending) = state
                .pending
                .iter()
                .find(|p| p.view == view && p.agent_id == *request_id)
            else {
                return Ok(());
            };
            let wire_id = pending.wire_id.clone();
            let message = set_member(&message, &["params", "requestId"], &wire_id)
                .map(Bytes::from)
                .ok_or("got an unreadable cancellation")?;
            return self.write_locked(&state, message);
        }
        if envelope.kind == jsonrpc::MessageKind::Response {
            let id = envelope.id.clone().unwrap_or_default();
            match state.asked.iter().position(|asked| *asked == id) {
                Some(index) if !self.rewrite_ids => {
                    state.asked.swap_remove(index);
                }
                _ => {
                    tracing::debug!(route = %self.route, "An answer to no request the server asked this session dropped.");
                    return Ok(());
                }
            }
        }
        self.write_locked(&state, message)
    }

    fn write_locked(&self, state: &ChannelState, message: Bytes) -> Result<(), String> {
        let Some(outbound) = &state.outbound else {
            let Some(down) = &state.down else {
                return Err("is not running".to_owned());
            };
            return Err(match state.retry_at {
                Some(at) => match at.checked_duration_since(Instant::now()) {
                    Some(left) => format!(
                        "{down}; Warden {} in {:.1}s",
                        self.retry_verb,
                        left.as_secs_f32()
                    ),
                    None => format!("{down}; Warden {} now", self.retry_verb),
                },
                None => down.clone(),
            });
        };
        outbound.try_send(message).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => {
                "is not reading its input (queue full)".to_owned()
            }
            mpsc::error::TrySendError::Closed(_) => "is not running".to_owned(),
        })
    }

    /// How long a request may wait for its answer: `upstream.reply_timeout`,
    /// except for a stateless listen stream, which is answered only when it
    /// ends.
    pub fn reply_deadline(&self, envelope: &Envelope) -> Option<Duration> {
        (envelope.method.as_deref() != Some(METHOD_SUBSCRIPTIONS_LISTEN))
            .then_some(self.reply_timeout)
    }

    /// Send a request; returns the stream of the server's messages for it
    /// (ended by a timeout error after `deadline`) and its serial (`None`
    /// when it was answered at once).
    pub fn request(
        &self,
        view: u64,
        envelope: Envelope,
        body: Bytes,
        internal: bool,
        deadline: Option<Duration>,
    ) -> Result<(Replies, Option<u64>), String> {
        let (interim, interim_rx) = mpsc::channel(MAX_QUEUED);
        let (last, last_rx) = oneshot::channel();
        let deadline = deadline.map(|limit| {
            let expired = EdgeError::UpstreamTimeout {
                route: self.route.to_string(),
                seconds: u64::try_from(limit.as_millis().div_ceil(1000)).unwrap_or(u64::MAX),
            };
            (Box::pin(tokio::time::sleep(limit)), expired)
        });
        let replies = Replies {
            interim: interim_rx,
            last: Some(last_rx),
            ending: None,
            deadline,
        };
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
            let _ = last.send(Last::Message(jsonrpc::error_response(
                &agent_id,
                jsonrpc::INVALID_REQUEST,
                "Warden: a request with this id is already in flight in this session",
            )));
            return Ok((replies, None));
        }
        self.write_locked(&state, body)?;
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        state.pending.push(Pending {
            serial,
            view,
            wire_id,
            agent_id,
            progress,
            internal,
            interim,
            last: Some(last),
            overflowed: false,
        });
        Ok((replies, Some(serial)))
    }

    /// The agent's stream for request `serial` is gone: forget the request,
    /// and with a `cancel` reason, tell the server to stop working on it.
    pub fn abandon(&self, serial: u64, cancel: Option<&str>) {
        let mut state = lock(&self.state);
        let Some(index) = state.pending.iter().position(|p| p.serial == serial) else {
            return;
        };
        let pending = state.pending.swap_remove(index);
        if let Some(reason) = cancel {
            let reason = serde_json::Value::from(reason);
            let notice = format!(
                r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{},"reason":{reason}}}}}"#,
                pending.wire_id
            );
            let _ = self.write_locked(&state, Bytes::from(notice));
        }
    }

    /// GET: the session's stream of server requests and notifications.
    pub fn listen(&self, view: u64) -> mpsc::Receiver<Bytes> {
        let (sender, stream) = mpsc::channel(MAX_QUEUED);
        let mut state = lock(&self.state);
        for message in state.backlog.remove(&view).unwrap_or_default() {
            let _ = sender.try_send(message);
        }
        state.listeners.insert(
            view,
            Listener {
                sender,
                overflowed: false,
            },
        );
        stream
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
        let Some(head) = Head::read(&message) else {
            tracing::warn!(route = %self.route, "Upstream message without a readable envelope dropped.");
            return;
        };
        let mut state = lock(&self.state);
        if let Some(id) = head.response_id() {
            match state.pending.iter().position(|p| p.wire_id == id) {
                Some(index) => {
                    let pending = state.pending.swap_remove(index);
                    let message = if self.rewrite_ids {
                        restore(&message, &["id"], &pending.agent_id)
                    } else {
                        message
                    };
                    pending.finish(Last::Message(message));
                }
                None => {
                    tracing::debug!(route = %self.route, id, "Response to no request in flight dropped.");
                }
            }
            return;
        }
        if head.id.is_none() && self.for_a_request(&mut state, &head, &message) {
            return;
        }
        if self.rewrite_ids {
            self.dispatch_shared(&mut state, &head, &message);
            return;
        }
        // A per-session channel: everything else is for its one session.
        let request_id = head.id.map(|id| id.get().to_owned());
        if let Some(id) = &request_id {
            state.asked.push(id.clone());
            if state.asked.len() > MAX_BACKLOG {
                state.asked.remove(0);
            }
        }
        let delivered = match state.sole_view {
            Some(view) => deliver(&mut state, view, message, &self.route),
            None => false,
        };
        if !delivered && let Some(id) = request_id {
            // The server must not wait for an answer that cannot come.
            let refusal = jsonrpc::error_response(
                &id,
                jsonrpc::INTERNAL_ERROR,
                "Warden could not deliver this request: the client is not reading",
            );
            let _ = self.write_locked(&state, refusal);
        }
    }

    /// A notification that belongs to a request in flight: progress for its
    /// token, or a notice on the listen stream its id opened.
    fn for_a_request(&self, state: &mut ChannelState, head: &Head<'_>, message: &Bytes) -> bool {
        let route = self.route.clone();
        if head.method.as_deref() == Some("notifications/progress")
            && let Some(token) = head.progress_token()
            && let Some(pending) = state
                .pending
                .iter_mut()
                .find(|p| p.progress.as_ref().is_some_and(|(wire, _)| wire == token))
        {
            let message = match &pending.progress {
                Some((_, agent)) if self.rewrite_ids => {
                    restore(message, &["params", "progressToken"], agent)
                }
                _ => message.clone(),
            };
            let _ = pending.interim(message, &route);
            return true;
        }
        if let Some(subscription) = head.subscription_id()
            && let Some(pending) = state.pending.iter_mut().find(|p| p.wire_id == subscription)
        {
            let message = if self.rewrite_ids {
                let agent_id = pending.agent_id.clone();
                set_member(
                    message,
                    &["params", "_meta", "io.modelcontextprotocol/subscriptionId"],
                    &agent_id,
                )
                .map_or_else(|| message.clone(), Bytes::from)
            } else {
                message.clone()
            };
            let _ = pending.interim(message, &route);
            return true;
        }
        false
    }

    /// A server request or notification on a shared or stateless channel:
    /// no session can be told apart as its addressee, so nothing is guessed.
    /// Change notices go to every session; requests are refused to the
    /// server; other notifications are dropped.
    fn dispatch_shared(&self, state: &mut ChannelState, head: &Head<'_>, message: &Bytes) {
        if let Some(id) = head.id {
            let refusal = jsonrpc::error_response(
                id.get(),
                jsonrpc::INTERNAL_ERROR,
                "Warden shares this server among sessions: it cannot send requests to a client",
            );
            let _ = self.write_locked(state, refusal);
            tracing::debug!(route = %self.route, "A server request on a shared channel refused.");
            return;
        }
        if head
            .method
            .as_deref()
            .is_some_and(|m| m.ends_with("/list_changed"))
        {
            let views: Vec<u64> = state.listeners.keys().copied().collect();
            for view in views {
                let _ = deliver(state, view, message.clone(), &self.route);
            }
            return;
        }
        tracing::debug!(route = %self.route, "A server notification on a shared channel dropped.");
    }

    /// Fail every request in flight.
    fn fail_all(&self, state: &mut ChannelState, detail: &str) {
        for pending in state.pending.drain(..) {
            pending.finish(Last::Failed(
                self.down(format!("{detail} before it answered")),
            ));
        }
    }

    /// The link died: every request in flight gets `detail`.
    fn link_down(&self, detail: &str, retry_in: Option<Duration>) {
        let mut state = lock(&self.state);
        state.outbound = None;
        state.asked.clear();
        state.down = Some(detail.to_owned());
        state.retry_at = retry_in.map(|wait| Instant::now() + wait);
        self.fail_all(&mut state, detail);
    }

    /// Whether a dead link is opened again: not for a per-session channel
    /// whose session never started (its `initialize` was not answered).
    fn restartable(&self) -> bool {
        self.rewrite_ids || lock(&self.state).initialize.is_some()
    }

    /// A line of garbage: requests in flight cannot be trusted to be answered.
    fn garbage(&self, noun: &str) {
        let mut state = lock(&self.state);
        for pending in state.pending.drain(..) {
            pending.finish(Last::Failed(EdgeError::UpstreamInvalid {
                route: self.route.to_string(),
                detail: format!(
                    "its {noun} sent something that is not a JSON-RPC message (MCP forbids this; see Warden's log)"
                ),
            }));
        }
    }

    /// The server refused one message (legacy SSE: its POST was answered
    /// with an error): the request it carried fails.
    fn refused(&self, message: &[u8], detail: &str) {
        let Some(id) = Envelope::read(message)
            .filter(|e| e.kind == jsonrpc::MessageKind::Request)
            .and_then(|e| e.id)
        else {
            return;
        };
        let mut state = lock(&self.state);
        for pending in extract(&mut state.pending, |p| p.wire_id == id) {
            pending.finish(Last::Failed(EdgeError::UpstreamInvalid {
                route: self.route.to_string(),
                detail: detail.to_owned(),
            }));
        }
    }

    fn link_up(&self, outbound: mpsc::Sender<Bytes>) {
        let mut state = lock(&self.state);
        if self.is_open() {
            state.outbound = Some(outbound);
            state.down = None;
            state.retry_at = None;
        }
    }
}

/// Remove and return the items `matches` selects.
fn extract<T>(items: &mut Vec<T>, matches: impl Fn(&T) -> bool) -> Vec<T> {
    let mut taken = Vec::new();
    let mut index = 0;
    while index < items.len() {
        if matches(&items[index]) {
            taken.push(items.swap_remove(index));
        } else {
            index += 1;
        }
    }
    taken
}

/// Hand a server message to a session: its GET stream, else the request
/// it has in flight (not Warden's own), else its backlog. False if it was
/// dropped because the agent is not reading.
fn deliver(state: &mut ChannelState, view: u64, message: Bytes, route: &str) -> bool {
    if let Some(listener) = state.listeners.get_mut(&view) {
        match listener.sender.try_send(message.clone()) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !listener.overflowed {
                    listener.overflowed = true;
                    tracing::warn!(
                        route,
                        "An agent is not reading its GET stream; server messages for it are dropped."
                    );
                }
                return false;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                state.listeners.remove(&view);
            }
        }
    }
    if let Some(pending) = state
        .pending
        .iter_mut()
        .rev()
        .find(|p| p.view == view && !p.internal)
        && let Some(queued) = pending.interim(message.clone(), route)
    {
        return queued;
    }
    let backlog = state.backlog.entry(view).or_default();
    if backlog.len() == MAX_BACKLOG {
        backlog.pop_front();
        if backlog.len() == MAX_BACKLOG - 1 {
            tracing::warn!(
                route,
                "A session's backlog of server messages is full; the oldest are dropped."
            );
        }
    }
    backlog.push_back(message);
    true
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
            () = until_stopped(&mut stopped) => {
                link.stop().await;
                return;
            }
        };
        link.stop().await;
        metrics.closed.inc();
        if !channel.restartable() {
            tracing::warn!(route = %channel.route, "Upstream {noun} {detail} before it answered initialize.");
            channel.link_down(&format!("{noun} {detail}"), None);
            return;
        }
        if started.elapsed() >= HEALTHY_UPTIME {
            backoff = MIN_BACKOFF;
        }
        tracing::warn!(route = %channel.route, "Upstream {noun} {detail}; Warden {} in {:.1}s.", channel.retry_verb, backoff.as_secs_f32());
        channel.link_down(&format!("{noun} {detail}"), Some(backoff));
        link = loop {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = until_stopped(&mut stopped) => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
            let connected = tokio::select! {
                connected = connector.connect(&channel.route, &metrics) => connected,
                () = until_stopped(&mut stopped) => return,
            };
            let mut candidate = match connected {
                Ok(candidate) => candidate,
                Err(err) => {
                    tracing::warn!(route = %channel.route, "Upstream {noun} {err}; retrying in {:.1}s.", backoff.as_secs_f32());
                    channel.link_down(&format!("{noun} {err}"), Some(backoff));
                    continue;
                }
            };
            let replayed = tokio::select! {
                replayed = replay(&channel, &mut candidate.link) => replayed,
                () = until_stopped(&mut stopped) => {
                    candidate.stop().await;
                    return;
                }
            };
            match replayed {
                Ok(()) => break candidate,
                Err(err) => {
                    // Never pump a link that did not come back ready.
                    candidate.stop().await;
                    metrics.closed.inc();
                    tracing::warn!(route = %channel.route, "Upstream {noun} {err}; retrying in {:.1}s.", backoff.as_secs_f32());
                    channel.link_down(&format!("{noun} {err}"), Some(backoff));
                }
            }
        };
        tracing::info!(route = %channel.route, "Upstream {noun} is back.");
        channel.link_up(link.link.outbound.clone());
    }
}

/// Completes once the channel is closed.
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
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
            LinkEvent::Garbage(preview) => {
                metrics.garbage.inc();
                if spoken {
                    tracing::warn!(route = %channel.route, line = %preview, "Upstream {noun} sent something that is not JSON-RPC; its requests in flight are failed.");
                    channel.garbage(noun);
                } else {
                    tracing::warn!(route = %channel.route, line = %preview, "Upstream {noun} sent something that is not JSON-RPC before its first message; skipped.");
                }
            }
            LinkEvent::Refused { message, detail } => channel.refused(&message, &detail),
            LinkEvent::Closed(detail) => return detail,
        }
    }
    "closed".to_owned()
}

/// A reopened link: the channel's `initialize` and `initialized` again, so
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
    tokio::time::timeout(channel.timeout, async {
        while let Some(event) = link.events.recv().await {
            match event {
                LinkEvent::Message(message) => {
                    let is_answer =
                        Head::read(&message).is_some_and(|h| h.response_id() == Some(wire_id));
                    if is_answer {
                        return match result_member(&message) {
                            Some(_) => Ok(()),
                            None => Err("refused the replayed initialize".to_owned()),
                        };
                    }
                    channel.dispatch(message);
                }
                LinkEvent::Garbage(_) | LinkEvent::Refused { .. } => {}
                LinkEvent::Closed(detail) => return Err(detail),
            }
        }
        Err("closed".to_owned())
    })
    .await
    .map_err(|_| {
        format!(
            "did not answer initialize within {}s after a restart",
            channel.timeout.as_secs()
        )
    })??;
    if let Some(initialized) = initialized {
        link.outbound
            .send(initialized)
            .await
            .map_err(|_| "closed after initialize".to_owned())?;
    }
    Ok(())
}

fn error_detail(error: EdgeError) -> String {
    match error {
        EdgeError::UpstreamDown { detail, .. } | EdgeError::UpstreamInvalid { detail, .. } => {
            detail
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(deadline: Duration) -> (Replies, mpsc::Sender<Bytes>, oneshot::Sender<Last>) {
        let (interim, interim_rx) = mpsc::channel(4);
        let (last, last_rx) = oneshot::channel();
        let expired = EdgeError::UpstreamTimeout {
            route: "/mcp".into(),
            seconds: 1,
        };
        let replies = Replies {
            interim: interim_rx,
            last: Some(last_rx),
            ending: None,
            deadline: Some((Box::pin(tokio::time::sleep(deadline)), expired)),
        };
        (replies, interim, last)
    }

    async fn next(replies: &mut Replies) -> Option<Reply> {
        futures_util::StreamExt::next(replies).await
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_that_arrived_is_never_replaced_by_the_timeout() {
        let (mut replies, interim, last) = replies(Duration::from_secs(1));
        interim
            .try_send(Bytes::from_static(b"progress"))
            .expect("queued");
        let _ = last.send(Last::Message(Bytes::from_static(b"answer")));
        // The agent reads late, after the deadline.
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(matches!(next(&mut replies).await, Some(Reply::Interim(m)) if m == "progress"));
        assert!(matches!(
            next(&mut replies).await,
            Some(Reply::Last(Last::Message(m))) if m == "answer"
        ));
        assert!(next(&mut replies).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn no_answer_ends_with_the_timeout_after_what_came_before() {
        let (mut replies, interim, _last) = replies(Duration::from_secs(1));
        interim
            .try_send(Bytes::from_static(b"progress"))
            .expect("queued");
        assert!(matches!(next(&mut replies).await, Some(Reply::Interim(_))));
        let started = tokio::time::Instant::now();
        assert!(matches!(
            next(&mut replies).await,
            Some(Reply::Last(Last::Failed(EdgeError::UpstreamTimeout { .. })))
        ));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert!(next(&mut replies).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_a_request_waits_for_its_answer() {
        let (mut replies, _interim, last) = replies(Duration::from_secs(1));
        replies.deadline = None;
        let waiting = tokio::time::timeout(Duration::from_secs(3600), next(&mut replies)).await;
        assert!(waiting.is_err(), "still waiting after an hour");
        let _ = last.send(Last::Message(Bytes::from_static(b"late")));
        assert!(matches!(
            next(&mut replies).await,
            Some(Reply::Last(Last::Message(_)))
        ));
    }
}
