//! Relaying upstream replies to the agent: headers cleaned, Warden's session
//! id in place of the upstream's, bodies streamed as they arrive.
//!
//! Two bodies do more than copy bytes:
//! - [`TapBody`] watches an SSE stream for `notifications/tools/list_changed`
//!   (so the session's catalogue is refreshed) and forwards every byte as is;
//! - [`filtered_list_stream`] re-encodes an SSE `tools/list` reply event by
//!   event, hiding the tools the policy refuses in the response event.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::Response;
use http::header::{HeaderMap, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, StreamBody};
use pin_project_lite::pin_project;
use warden_pipeline::{ListReply, Principal, filter_tools_list};
use warden_policy::Policy;
use warden_protocol::mcp;
use warden_protocol::sse::{SseEvent, SseParser};

pub use warden_upstream::body::{
    Body, BoxError, MAX_SSE_LINE, collect_capped, empty, full, json, sse_events,
};

use crate::error::EdgeError;
use crate::session::Session;

/// Response headers that describe the hop, not the message.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Clean the upstream's headers: drop hop-by-hop ones and put Warden's
/// session id (or none) where the upstream's was.
pub fn clean_headers(headers: &mut HeaderMap, session: Option<&Session>) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    let had_session = headers.remove(mcp::HEADER_SESSION_ID).is_some();
    if let Some(session) = session
        && had_session
        && let Ok(value) = HeaderValue::from_str(&session.id)
    {
        headers.insert(mcp::HEADER_SESSION_ID, value);
    }
}

/// Relay an upstream reply, tapping SSE streams for catalogue changes.
pub fn relay(response: Response<Body>, session: Option<&Arc<Session>>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    clean_headers(&mut parts.headers, session.map(Arc::as_ref));
    let body = match session {
        Some(session) if crate::upstream::is_event_stream(&parts.headers) => TapBody {
            inner: body,
            parser: Some(SseParser::new(MAX_SSE_LINE)),
            events: Vec::new(),
            session: session.clone(),
        }
        .boxed_unsync(),
        _ => body,
    };
    Response::from_parts(parts, body)
}

/// Relay a reply from a credential lane (`lane`: not the base one): the
/// requests its server sends on it get ids of Warden's own, so the agent's
/// answers go back to the lane that asked and no two pending requests of
/// different lanes look alike to the agent.
pub fn relay_in_lane(
    response: Response<Body>,
    session: Option<&Arc<Session>>,
    lane: Option<usize>,
) -> Response<Body> {
    let (Some(session), Some(lane)) = (session, lane) else {
        return relay(response, session);
    };
    if session.is_detached() || !crate::upstream::is_event_stream(response.headers()) {
        return relay(response, Some(session));
    }
    let (mut parts, body) = response.into_parts();
    clean_headers(&mut parts.headers, Some(session));
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let session = session.clone();
    let events = sse_events(body).map(move |event| {
        let mut event = event?;
        if let Some(data) = &event.data {
            if is_list_changed(data) {
                session.invalidate_catalogue();
            } else if let Some(renamed) = rename_server_request(&session, lane, data) {
                event.data = Some(renamed);
            }
        }
        Ok(event.encode())
    });
    streaming(parts, events)
}

/// A server-to-client request of `lane`, with the id the agent will see.
fn rename_server_request(session: &Session, lane: usize, data: &str) -> Option<String> {
    if !data.contains("\"method\"") {
        return None;
    }
    let mut value: serde_json::Value = serde_json::from_str(data).ok()?;
    value.get("method")?;
    let id = value.get("id")?.to_string();
    value["id"] = serde_json::Value::String(session.lane_request_id(lane, &id));
    serde_json::to_string(&value).ok()
}

pin_project! {
    /// Forwards an SSE body byte for byte while watching for
    /// `notifications/tools/list_changed`.
    pub struct TapBody {
        #[pin]
        inner: Body,
        parser: Option<SseParser>,
        events: Vec<SseEvent>,
        session: Arc<Session>,
    }
}

impl HttpBody for TapBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(frame)), Some(parser)) = (&frame, this.parser.as_mut())
            && let Some(data) = frame.data_ref()
        {
            if parser.feed(data, this.events).is_err() {
                // An oversized line: stop watching, keep relaying.
                *this.parser = None;
            }
            for event in this.events.drain(..) {
                let Some(data) = event.data.as_deref() else {
                    continue;
                };
                if is_list_changed(data) {
                    tracing::debug!(session = %this.session.id, "Upstream tools changed; catalogue forgotten.");
                    this.session.invalidate_catalogue();
                } else if this.session.negotiated_version().is_none() {
                    record_negotiated_version(this.session, data.as_bytes());
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Record the revision from an `initialize` result message, if it is one.
pub fn record_negotiated_version(session: &Session, message: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(message)
        && let Some(version) = value
            .pointer("/result/protocolVersion")
            .and_then(|v| v.as_str())
    {
        session.set_negotiated_version(version);
    }
}

fn is_list_changed(data: &str) -> bool {
    data.contains(mcp::NOTIFICATION_TOOLS_LIST_CHANGED)
        && serde_json::from_str::<serde_json::Value>(data).is_ok_and(|v| {
            v.get("method").and_then(|m| m.as_str()) == Some(mcp::NOTIFICATION_TOOLS_LIST_CHANGED)
        })
}

/// What to do with one event of a stream Warden screens for tool lists.
enum Screened {
    /// Relay it as it is.
    Keep,
    /// Relay this message in its place.
    Replace(String),
    /// Do not relay it.
    Drop,
}

/// Screen one event's data: tool lists are filtered with `policy`, change
/// notices forget the session's catalogue. `reply_to` is the id of the
/// `tools/list` request whose reply this stream carries (and the catalogue
/// generation it was sent at); `None` for the GET stream, where lists only
/// appear as replays and are filtered but not learned from.
fn screen(
    data: &str,
    policy: &Policy,
    session: &Session,
    caller: &Principal,
    reply_to: Option<(&str, u64)>,
    route: &str,
) -> Screened {
    if data.trim().is_empty() {
        // The priming event servers send so a client can resume.
        return Screened::Keep;
    }
    let unreadable = |detail: String| {
        let error = EdgeError::UpstreamInvalid {
            route: route.to_owned(),
            detail,
        };
        tracing::warn!(route = %route, error = %error, "Unreadable event on a screened stream.");
        match reply_to {
            Some((id, _)) => {
                Screened::Replace(String::from_utf8_lossy(&error.body(id)).into_owned())
            }
            None => Screened::Drop,
        }
    };
    let value: serde_json::Value = match serde_json::from_str(data) {
        Ok(value) => value,
        Err(err) => {
            let what = if reply_to.is_some() {
                "the tools/list reply"
            } else {
                "an event of the GET stream"
            };
            return unreadable(format!("{what} is not valid JSON: {err}"));
        }
    };
    if let serde_json::Value::Array(items) = &value {
        // A batch (2025-03-26). Its change notices count; a list of tools
        // inside one would not be filtered, so it is never shown.
        if items.iter().any(|i| {
            i.get("method").and_then(|m| m.as_str()) == Some(mcp::NOTIFICATION_TOOLS_LIST_CHANGED)
        }) {
            session.invalidate_catalogue();
        }
        let lists_tools = items
            .iter()
            .any(|i| i.get("result").is_some_and(|r| r.get("tools").is_some()));
        return if lists_tools || reply_to.is_some() {
            unreadable("a batch holding a list of tools is not relayed".to_owned())
        } else {
            Screened::Keep
        };
    }
    if let Some(method) = value.get("method") {
        if method.as_str() == Some(mcp::NOTIFICATION_TOOLS_LIST_CHANGED) {
            session.invalidate_catalogue();
        }
        return Screened::Keep;
    }
    let lists_tools = value
        .get("result")
        .is_some_and(|r| r.get("tools").is_some());
    if reply_to.is_none() && !lists_tools {
        // Some other replayed reply: nothing to hide in it.
        return Screened::Keep;
    }
    match filter_tools_list(data.as_bytes(), policy, &warden_pipeline::caller_of(caller)) {
        Ok(ListReply::Page { page, filtered }) => {
            if let Some((_, generation)) = reply_to {
                session.merge_page(&page, generation);
            }
            filtered.map_or(Screened::Keep, |f| {
                Screened::Replace(String::from_utf8_lossy(&f).into_owned())
            })
        }
        Ok(ListReply::Error) => Screened::Keep,
        Err(err) => unreadable(err.to_string()),
    }
}

/// Re-encode an SSE `tools/list` reply, filtering the response event with
/// `policy` for `caller` and recording its page in the session's catalogue. Every other
/// event (progress, logging, server requests) passes with its fields intact.
/// A response event Warden cannot read is replaced by a JSON-RPC error for
/// `id_json`: an unreadable list is never shown unfiltered.
pub fn filtered_list_stream(
    body: Body,
    policy: Arc<Policy>,
    session: Arc<Session>,
    caller: Arc<Principal>,
    reply_to: (Arc<str>, u64),
    route: Arc<str>,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send {
    sse_events(body).map(move |event| {
        let mut event = event?;
        if let Some(data) = &event.data {
            let reply = Some((&*reply_to.0, reply_to.1));
            match screen(data, &policy, &session, &caller, reply, &route) {
                Screened::Keep | Screened::Drop => {}
                Screened::Replace(message) => event.data = Some(message),
            }
        }
        Ok(event.encode())
    })
}

/// The GET stream, re-encoded event by event: an upstream that replays
/// events on resumption (`Last-Event-ID`) may replay a `tools/list` result,
/// which is filtered here as on the POST that asked for it (and dropped if
/// unreadable). `list_changed` notices are watched too.
pub fn filtered_get_stream(
    body: Body,
    policy: Arc<Policy>,
    session: Arc<Session>,
    route: Arc<str>,
) -> impl Stream<Item = Result<Bytes, BoxError>> + Send {
    let _open = session.stream_opened();
    sse_events(body).filter_map(move |event| {
        // The guard lives as long as the stream: the session is in use.
        let _ = &_open;
        let out = match event {
            Err(err) => Some(Err(err)),
            Ok(mut event) => {
                let verdict = match &event.data {
                    Some(data) => screen(data, &policy, &session, &session.principal, None, &route),
                    None => Screened::Keep,
                };
                match verdict {
                    Screened::Keep => Some(Ok(event.encode())),
                    Screened::Replace(message) => {
                        event.data = Some(message);
                        Some(Ok(event.encode()))
                    }
                    Screened::Drop => None,
                }
            }
        };
        std::future::ready(out)
    })
}

/// A `200` event stream (`text/event-stream`, not cached) of Warden's own
/// making, whose body is `chunks` (whole SSE events).
pub fn event_stream(
    chunks: impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
) -> Response<Body> {
    let (mut parts, _) = Response::new(empty()).into_parts();
    parts.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    parts.headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    streaming(parts, chunks)
}

/// A response whose body is a stream of byte chunks.
pub fn streaming(
    parts: http::response::Parts,
    chunks: impl Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
) -> Response<Body> {
    let body = StreamBody::new(chunks.map(|chunk| chunk.map(Frame::data))).boxed_unsync();
    Response::from_parts(parts, body)
}
