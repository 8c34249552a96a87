//! `warden stdio`: Warden as the MCP server a desktop client launches.
//!
//! The client writes newline-delimited JSON-RPC to Warden's stdin and reads
//! replies from its stdout; logs go to stderr only. Each message is handed
//! to the very handler the HTTP listener uses (same parse, same session
//! mapping, same pipeline), as an in-process request on the first route, and
//! every message of the reply (one JSON body, or each event of a stream) is
//! written back as one line. After `initialize`, Warden also opens the
//! upstream's server-to-client stream, so sampling, elicitation, roots and
//! notifications reach the client; the client's answers go back the same
//! way as any other message. A transport is a way in, never a way around the
//! policy.
//!
//! Framing: a line ends at LF or at CR (the parts of `A\rB` are two
//! messages, judged one by one, as a universal-newline reader downstream
//! would see them), and every message written to stdout is framed as
//! exactly one line by [`crate::line_io::write_message`], so a reply an
//! upstream stuffed with line breaks cannot turn into two messages at the
//! client.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::BufReader;
use tokio::sync::mpsc;
use warden_protocol::{jsonrpc, mcp};

use crate::line_io::{LineEnds, WriteLineError, read_line_capped, write_message};
use crate::proxy::Warden;
use crate::proxy::relay::{Body, sse_events};
use crate::upstream::is_event_stream;

/// What the stdio front remembers between messages.
#[derive(Default)]
struct StdioSession {
    /// Warden's session id, once `initialize` has been answered.
    id: Option<HeaderValue>,
    /// The revision the upstream chose.
    version: Option<HeaderValue>,
}

/// Serve one client on stdin/stdout until stdin closes, on route `path`.
pub async fn serve(warden: Arc<Warden>, path: &str) -> std::io::Result<()> {
    let (lines_out, mut to_write) = mpsc::unbounded_channel::<Bytes>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(message) = to_write.recv().await {
            // One line per message, whatever the upstream put in it: the
            // client must not read a second message Warden never relayed.
            match write_message(&mut stdout, &message).await {
                Ok(()) => {}
                Err(WriteLineError::NotAMessage(err)) => {
                    tracing::warn!(error = %err, "A message for the client is not one JSON-RPC message; not written.");
                }
                Err(WriteLineError::Io(err)) => return Err(err),
            }
        }
        Ok::<_, std::io::Error>(())
    });
    let state = Arc::new(Mutex::new(StdioSession::default()));
    let uri: Arc<str> = format!("http://stdio{path}").into();
    let route_index = warden
        .routes
        .iter()
        .position(|r| &*r.path == path)
        .unwrap_or(0);
    let mut stdin = BufReader::new(tokio::io::stdin());
    let limit = warden.limits.max_body;
    let mut line = Vec::new();
    let mut in_flight = Vec::new();
    // The server-to-client stream's relay, stopped when the session ends.
    let listener: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    loop {
        line.clear();
        // CR ends a message as LF does: a child reading with universal
        // newlines (the Python SDK) would split there, so Warden judges the
        // parts it would see, each on its own.
        // The limit is the message's; its line end comes on top.
        let capped = limit.saturating_add(1);
        let Some(whole) = read_line_capped(&mut stdin, &mut line, capped, LineEnds::CrOrLf).await?
        else {
            break;
        };
        if !whole {
            // Over the body limit: answered once, the line skipped.
            let error = crate::error::EdgeError::BodyTooLarge { limit };
            let _ = lines_out.send(error.body("null"));
            continue;
        }
        let message = Bytes::copy_from_slice(line.trim_ascii());
        if message.is_empty() {
            continue;
        }
        let (warden, state, uri, lines_out) = (
            warden.clone(),
            state.clone(),
            uri.clone(),
            lines_out.clone(),
        );
        let route = route_index;
        // Requests run side by side (a long tool call must not hold up the
        // rest); notifications and answers go through in the order written,
        // so `notifications/initialized` reaches the upstream first, and
        // `initialize` is answered before anything after it is sent (a
        // client may write its lines without waiting).
        let head = Head::read(&message);
        let awaiting = match (&head.request_id, head.notification) {
            (_, true) => Awaiting::Nothing,
            (Some(id), false) => Awaiting::Answer(id.clone()),
            (None, false) => Awaiting::Messages,
        };
        let listener_slot = listener.clone();
        let task = tokio::spawn(async move {
            let request = post(&uri, &state, message);
            let response = warden.clone().handle(request).await;
            let opened = remember_session(&state, &response);
            let route_path = warden.routes.get(route).map(|r| r.path.clone());
            forward_reply(response, &lines_out, &awaiting, route_path.as_deref()).await;
            if opened {
                remember_version(&warden, route, &state);
                let task = tokio::spawn(listen(warden, uri, state, lines_out));
                if let Ok(mut slot) = listener_slot.lock() {
                    *slot = Some(task);
                }
            }
        });
        match head.request_id {
            Some(id) if !head.initialize => in_flight.push((id, task)),
            _ => {
                let _ = task.await;
            }
        }
        // A cancelled request gets no reply: stop waiting for one (which
        // also closes its stream to the upstream).
        if let Some(cancelled) = head.cancelled {
            for (_, task) in in_flight.iter().filter(|(id, _)| *id == cancelled) {
                task.abort();
            }
        }
        in_flight.retain(|(_, task)| !task.is_finished());
    }
    // stdin closed: let answers in flight finish (within the shutdown
    // grace), end the session, stop.
    let grace = warden.limits.shutdown_grace;
    let finishing = futures_util::future::join_all(in_flight.iter_mut().map(|(_, task)| task));
    if tokio::time::timeout(grace, finishing).await.is_err() {
        tracing::warn!(
            "Requests still unanswered {}s after stdin closed; given up.",
            grace.as_secs()
        );
        for (_, task) in &in_flight {
            task.abort();
        }
    }
    let session = state.lock().ok().and_then(|s| s.id.clone());
    if let Some(session) = session {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = Method::DELETE;
        *request.uri_mut() = uri.parse().unwrap_or_default();
        request.extensions_mut().insert(crate::proxy::InProcess);
        request
            .headers_mut()
            .insert(mcp::HEADER_SESSION_ID, session);
        let _ = warden.handle(request).await;
    }
    // The upstream may keep its stream open past the DELETE (a 405 is
    // allowed): stop relaying it, and give the last lines the grace period.
    if let Some(task) = listener.lock().ok().and_then(|mut slot| slot.take()) {
        task.abort();
    }
    drop(lines_out);
    match tokio::time::timeout(grace, writer).await {
        Ok(written) => written.unwrap_or(Ok(())),
        Err(_) => Ok(()),
    }
}

/// What the stdio front reads of a client's line.
#[derive(Default)]
struct Head {
    /// A request's id (JSON text): it runs beside the others.
    request_id: Option<String>,
    /// A `notifications/cancelled`'s `requestId` (JSON text).
    cancelled: Option<String>,
    /// `initialize`: answered before the next line is sent.
    initialize: bool,
    /// A well-formed notification (or answer): nothing is written back.
    notification: bool,
}

impl Head {
    fn read(message: &[u8]) -> Head {
        use serde_json::value::RawValue;
        #[derive(serde::Deserialize)]
        struct Message<'a> {
            method: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            id: Option<&'a RawValue>,
            #[serde(borrow)]
            params: Option<Params<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Params<'a> {
            #[serde(borrow, rename = "requestId")]
            request_id: Option<&'a RawValue>,
        }
        let Ok(message) = serde_json::from_slice::<Message<'_>>(message) else {
            return Head::default();
        };
        let method = message.method.as_deref();
        Head {
            initialize: method == Some(mcp::METHOD_INITIALIZE),
            notification: message.id.is_none() || method.is_none(),
            request_id: method.and(message.id).map(|id| id.get().to_owned()),
            cancelled: (method == Some("notifications/cancelled"))
                .then(|| message.params.and_then(|p| p.request_id))
                .flatten()
                .map(|id| id.get().to_owned()),
        }
    }
}

/// The in-process request carrying one client message.
fn post(uri: &str, state: &Mutex<StdioSession>, message: Bytes) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(message));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri.parse().unwrap_or_default();
    request.extensions_mut().insert(crate::proxy::InProcess);
    let headers = request.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    if let Ok(state) = state.lock() {
        if let Some(id) = &state.id {
            headers.insert(mcp::HEADER_SESSION_ID, id.clone());
        }
        if let Some(version) = &state.version {
            headers.insert(mcp::HEADER_PROTOCOL_VERSION, version.clone());
        }
    }
    request
}

/// Take the session id from an `initialize` reply; `true` the first time.
fn remember_session(state: &Mutex<StdioSession>, response: &Response<Body>) -> bool {
    let Some(id) = response.headers().get(mcp::HEADER_SESSION_ID) else {
        return false;
    };
    let Ok(mut state) = state.lock() else {
        return false;
    };
    let first = state.id.is_none();
    state.id = Some(id.clone());
    first
}

/// After `initialize`: send the revision the upstream chose on every later
/// message, as an HTTP client of the stateful revisions does.
fn remember_version(warden: &Warden, route: usize, state: &Mutex<StdioSession>) {
    let Ok(mut state) = state.lock() else { return };
    let Some(id) = state.id.as_ref().and_then(|id| id.to_str().ok()) else {
        return;
    };
    let version = warden.sessions.get(id, route).and_then(|session| {
        session
            .negotiated_version()
            .and_then(|v| HeaderValue::from_str(v).ok())
    });
    state.version = version;
}

/// What the client waits for from a reply.
enum Awaiting {
    /// Nothing: it sent a notification or an answer.
    Nothing,
    /// The response to its request with this id (JSON text).
    Answer(String),
    /// Whatever comes (a batch's answers, the server-to-client stream).
    Messages,
}

/// Write every message of a reply as one line each. A request whose reply
/// ends without its answer (an upstream stream cut short, a reply that is
/// not JSON-RPC) gets an error line, so the client is not left waiting.
async fn forward_reply(
    response: Response<Body>,
    lines_out: &mpsc::UnboundedSender<Bytes>,
    awaiting: &Awaiting,
    route: Option<&str>,
) {
    let status = response.status();
    if status == StatusCode::ACCEPTED {
        return;
    }
    if matches!(awaiting, Awaiting::Nothing) {
        // JSON-RPC answers no notification, not even with an error.
        tracing::warn!(%status, "A notification from the client was refused.");
        return;
    }
    let mut answered = false;
    if is_event_stream(response.headers()) {
        let mut events = std::pin::pin!(sse_events(response.into_body()));
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    if let Some(data) = event.data.filter(|d| !d.trim().is_empty()) {
                        answered |= relay(data.as_bytes(), lines_out, awaiting);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Reply stream broke off.");
                    break;
                }
            }
        }
    } else {
        match response.into_body().collect().await {
            Ok(body) => answered |= relay(&body.to_bytes(), lines_out, awaiting),
            Err(_) => tracing::warn!(%status, "Reply body could not be read."),
        }
    }
    if let Awaiting::Answer(id) = awaiting
        && !answered
    {
        let error = crate::error::EdgeError::UpstreamInvalid {
            route: route.unwrap_or_default().to_owned(),
            detail: "no answer to this request that Warden could relay".to_owned(),
        };
        let _ = lines_out.send(error.body(id));
    }
}

/// Queue each message of `data` (one message, or each of a batch's) for
/// the client, so every one gets its own line; whether one of them is the
/// answer the client awaits. Data that is not one JSON value (two messages
/// in one event, say) is not relayed.
fn relay(data: &[u8], lines_out: &mpsc::UnboundedSender<Bytes>, awaiting: &Awaiting) -> bool {
    use serde_json::value::RawValue;
    let messages = match serde_json::from_slice::<&RawValue>(data) {
        Ok(batch) if batch.get().starts_with('[') => {
            serde_json::from_str::<Vec<&RawValue>>(batch.get()).unwrap_or_default()
        }
        Ok(one) => vec![one],
        Err(err) => {
            tracing::warn!(error = %err, "The upstream sent something that is not one JSON-RPC message; not relayed to the client.");
            return false;
        }
    };
    let mut answered = false;
    for message in messages {
        if let Awaiting::Answer(id) = awaiting {
            // A `null` id answers a request whose id could not be read
            // (Warden's own parse errors).
            answered |= response_id(message.get())
                .is_some_and(|answer| answer == "null" || jsonrpc::same_id(&answer, id));
        }
        let _ = lines_out.send(Bytes::copy_from_slice(message.get().as_bytes()));
    }
    answered
}

/// The id (JSON text) of a response; `None` for requests and notifications.
fn response_id(message: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        // Not an `Option`: a `null` id is an id here.
        #[serde(borrow)]
        id: &'a serde_json::value::RawValue,
        method: Option<serde::de::IgnoredAny>,
    }
    let message: Message<'_> = serde_json::from_str(message).ok()?;
    message
        .method
        .is_none()
        .then(|| message.id.get().to_owned())
}

/// Relay the server-to-client stream of the session to stdout.
async fn listen(
    warden: Arc<Warden>,
    uri: Arc<str>,
    state: Arc<Mutex<StdioSession>>,
    lines_out: mpsc::UnboundedSender<Bytes>,
) {
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri.parse().unwrap_or_default();
    request.extensions_mut().insert(crate::proxy::InProcess);
    request.headers_mut().insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    if let Ok(state) = state.lock() {
        if let Some(id) = &state.id {
            request
                .headers_mut()
                .insert(mcp::HEADER_SESSION_ID, id.clone());
        }
        if let Some(version) = &state.version {
            request
                .headers_mut()
                .insert(mcp::HEADER_PROTOCOL_VERSION, version.clone());
        }
    }
    let response = warden.handle(request).await;
    if response.status().is_success() && is_event_stream(response.headers()) {
        forward_reply(response, &lines_out, &Awaiting::Messages, None).await;
    } else {
        tracing::debug!(status = %response.status(), "The upstream offers no server-to-client stream.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_recognised_by_id_value_and_null_ids_count() {
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#)
                .as_deref(),
            Some("null")
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#).as_deref(),
            Some("7")
        );
        assert_eq!(
            response_id(r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#),
            None
        );
        assert!(jsonrpc::same_id(r#""a""#, r#""\u0061""#));
        assert!(!jsonrpc::same_id("1", r#""1""#));
    }

    #[test]
    fn a_batch_is_relayed_one_message_at_a_time_and_two_values_not_at_all() {
        let (lines_out, mut lines) = mpsc::unbounded_channel();
        let awaiting = Awaiting::Answer("3".into());
        let batch = br#"[{"jsonrpc":"2.0","method":"notifications/progress","params":{}}, {"jsonrpc":"2.0","id":3,"result":{}}]"#;
        assert!(relay(batch, &lines_out, &awaiting));
        assert!(
            lines
                .try_recv()
                .is_ok_and(|m| m.starts_with(b"{\"jsonrpc\":\"2.0\",\"method\""))
        );
        assert!(
            lines
                .try_recv()
                .is_ok_and(|m| m.starts_with(b"{\"jsonrpc\":\"2.0\",\"id\":3"))
        );
        let two =
            br#"{"jsonrpc":"2.0","id":3,"result":{}} {"jsonrpc":"2.0","id":3,"result":{"x":1}}"#;
        assert!(!relay(two, &lines_out, &awaiting));
        assert!(lines.try_recv().is_err(), "nothing relayed");
    }
}
