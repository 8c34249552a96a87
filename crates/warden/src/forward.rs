//! The innermost service of every route's pipeline: hands an allowed
//! `tools/call` to the upstream and returns the upstream's reply untouched.
//!
//! When a layer asked to see the reply ([`warden_pipeline::ReplyTap`]), the
//! reply's body is wrapped in [`Tapped`]: every frame passes on to the agent
//! as it arrives, unchanged and undelayed, while the tap reads what it
//! carries (each SSE event's data, or the JSON body, kept up to
//! [`MAX_INSPECTED_REPLY`]) and reports the call's response once it has
//! passed, or why there was none when the body ends, breaks off or is
//! dropped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::Service;
use warden_pipeline::{ReplyWatch, ToolCall, ToolOutcome};
use warden_protocol::sse::{SseEvent, SseParser};

use crate::error::EdgeError;
use crate::proxy::relay::{Body, BoxError};
use crate::upstream::{MAX_INSPECTED_REPLY, Upstream, is_event_stream};

/// What the forwarder needs beyond the call itself.
#[derive(Clone)]
pub struct Forward {
    /// The agent's request headers (filtered again when sent).
    pub headers: Arc<HeaderMap>,
    /// The upstream's session id for this agent session (in the call's lane).
    pub upstream_session: Option<HeaderValue>,
    /// The call's lane, when not the route's base one.
    pub lane: Option<Lane>,
}

/// A call's lane other than the base one.
#[derive(Clone)]
pub struct Lane {
    /// The lane's upstream client.
    pub upstream: Arc<Upstream>,
    /// The lane's upstream session to find or open (`None`: stateless).
    pub pending: Option<crate::lanes::PendingLane>,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("upstream_session", &self.upstream_session)
            .field("lane", &self.lane.is_some())
            .finish_non_exhaustive()
    }
}

/// Sends allowed calls to one route's upstream.
#[derive(Clone)]
pub struct Forwarder {
    upstream: Arc<Upstream>,
}

impl Forwarder {
    /// A forwarder to `upstream`.
    pub fn new(upstream: Arc<Upstream>) -> Forwarder {
        Forwarder { upstream }
    }
}

// === impl Forwarder ===

impl Service<ToolCall<Forward>> for Forwarder {
    type Response = ToolOutcome<Response<Body>>;
    type Error = EdgeError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, EdgeError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), EdgeError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut call: ToolCall<Forward>) -> Self::Future {
        let lane = call.context.lane.take();
        let upstream = lane
            .as_ref()
            .map_or_else(|| self.upstream.clone(), |lane| lane.upstream.clone());
        let watch = std::mem::take(&mut call.tap).start(call.id.clone(), now());
        Box::pin(async move {
            let context = call.context;
            let mut upstream_session = context.upstream_session;
            let mut sent = Ok(());
            if let Some(pending) = lane.as_ref().and_then(|l| l.pending.as_ref()) {
                match pending.session_id_in_task(upstream.clone()).await {
                    Ok(id) => {
                        upstream_session = id;
                        // Its cancellation must reach the lane that runs it.
                        pending.session.note_call_lane(&call.id, pending.index);
                    }
                    Err(err) => sent = Err(err),
                }
            }
            let sent = match sent {
                Ok(()) => {
                    upstream
                        .send(
                            Method::POST,
                            &context.headers,
                            upstream_session.as_ref(),
                            call.message,
                        )
                        .await
                }
                Err(err) => Err(err),
            };
            match (sent, watch) {
                (Ok(response), Some(watch)) => Ok(ToolOutcome::Forwarded(tapped(response, watch))),
                (Ok(response), None) => Ok(ToolOutcome::Forwarded(response)),
                (Err(err), watch) => {
                    if let Some(watch) = watch {
                        watch.end("the upstream did not answer", now());
                    }
                    Err(err)
                }
            }
        })
    }
}

/// Now, on the clock tests can pause.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// `response` with its body shown to `watch` as it passes.
pub fn tapped(response: Response<Body>, watch: ReplyWatch) -> Response<Body> {
    let (parts, body) = response.into_parts();
    let reader = if is_event_stream(&parts.headers) {
        Reader::Events(SseParser::new(MAX_INSPECTED_REPLY), Vec::new())
    } else {
        Reader::Whole {
            frames: Vec::new(),
            size: 0,
        }
    };
    let mut body = Tapped {
        inner: body,
        watch: Some(watch),
        reader,
    };
    if body
        .inner
        .size_hint()
        .exact()
        .is_some_and(|size| size > MAX_INSPECTED_REPLY as u64)
        && matches!(body.reader, Reader::Whole { .. })
    {
        body.end("the reply is larger than Warden inspects");
    }
    Response::from_parts(parts, body.boxed_unsync())
}

/// How a tapped body is read.
enum Reader {
    /// SSE: each event's data is one message.
    Events(SseParser, Vec<SseEvent>),
    /// JSON: the whole body is the message. Its frames are kept as they
    /// came (shared, not copied), up to the limit, and joined once at the
    /// end if there are several.
    Whole { frames: Vec<Bytes>, size: usize },
}

/// A reply body whose frames pass unchanged while its tap reads them.
pub struct Tapped {
    inner: Body,
    /// Until the response has been reported.
    watch: Option<ReplyWatch>,
    reader: Reader,
}

// === impl Tapped ===

impl Tapped {
    fn read(&mut self, data: &Bytes) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        match &mut self.reader {
            Reader::Events(parser, events) => {
                // The events a chunk completed count even if the chunk
                // then holds something unreadable.
                let unreadable = parser.feed(data, events).is_err();
                let now = now();
                for event in events.drain(..) {
                    if let Some(message) = event.data.as_deref()
                        && watch.message(message.as_bytes(), now)
                    {
                        self.watch = None;
                        return;
                    }
                }
                if unreadable {
                    self.end("the reply's event stream could not be read");
                }
            }
            Reader::Whole { frames, size } => {
                if *size + data.len() > MAX_INSPECTED_REPLY {
                    frames.clear();
                    self.end("the reply is larger than Warden inspects");
                } else {
                    *size += data.len();
                    frames.push(data.clone());
                }
            }
        }
    }

    fn finish(&mut self) {
        if let (Some(watch), Reader::Whole { frames, size }) =
            (self.watch.as_mut(), &mut self.reader)
        {
            // One frame (the usual case) is read where it is.
            let body = match frames.as_slice() {
                [one] => one.clone(),
                many => {
                    let mut joined = BytesMut::with_capacity(*size);
                    for frame in many {
                        joined.extend_from_slice(frame);
                    }
                    joined.freeze()
                }
            };
            frames.clear();
            if watch.message(&body, now()) {
                self.watch = None;
            }
        }
        self.end("the reply ended without its response");
    }

    fn end(&mut self, why: &'static str) {
        if let Some(watch) = self.watch.take() {
            watch.end(why, now());
        }
    }
}

impl Drop for Tapped {
    fn drop(&mut self) {
        // The agent hung up (or the reply was cut) before the response.
        self.end("the reply was dropped before its response");
    }
}

impl HttpBody for Tapped {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                // Readers stop at the end a body announces, without asking
                // for the `None` that would say so.
                let ended = this.inner.is_end_stream();
                if let Some(data) = frame.data_ref() {
                    this.read(data);
                }
                if ended {
                    this.finish();
                }
            }
            Some(Err(_)) => this.end("the upstream's reply broke off"),
            None => this.finish(),
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use http_body_util::{BodyExt, StreamBody};
    use warden_pipeline::{Answer, ReplyTap};

    use super::*;

    /// The answers and latencies watched.
    type Seen = Arc<Mutex<Vec<(Answer, usize, Duration)>>>;

    /// A reply whose chunks the test sends, with `content_type`.
    fn reply(content_type: &'static str) -> (tokio::sync::mpsc::Sender<Bytes>, Response<Body>) {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(8);
        let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
            receiver
                .recv()
                .await
                .map(|chunk| (Ok::<_, BoxError>(Frame::data(chunk)), receiver))
        });
        let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        (sender, response)
    }

    fn watched(id: &str) -> (ReplyWatch, Seen) {
        let seen: Seen = Arc::default();
        let mut tap = ReplyTap::default();
        let sink = seen.clone();
        tap.on_reply(move |s| {
            sink.lock()
                .expect("lock")
                .push((s.answer.clone(), s.size(), s.latency))
        });
        (tap.start(id.into(), now()).expect("watched"), seen)
    }

    async fn next_chunk(body: &mut Body) -> Option<Bytes> {
        body.frame()
            .await
            .map(|f| f.expect("frame").into_data().expect("data"))
    }

    #[tokio::test(start_paused = true)]
    async fn sse_frames_pass_at_once_and_the_response_is_reported_when_it_passes() {
        let (sender, response) = reply("text/event-stream");
        let (watch, seen) = watched("5");
        let mut body = tapped(response, watch).into_body();
        let progress = Bytes::from_static(
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
        );
        sender.send(progress.clone()).await.expect("send");
        assert_eq!(
            next_chunk(&mut body).await,
            Some(progress),
            "passed as it came"
        );
        assert!(seen.lock().expect("lock").is_empty());
        tokio::time::advance(Duration::from_millis(30)).await;
        // The response, split across two chunks.
        let answer = b"data: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"isError\":false}}\n\n";
        for part in [&answer[..20], &answer[20..]] {
            sender
                .send(Bytes::copy_from_slice(part))
                .await
                .expect("send");
            assert_eq!(next_chunk(&mut body).await.as_deref(), Some(part));
        }
        let (answer, _, latency) = seen.lock().expect("lock")[0].clone();
        assert_eq!(answer, Answer::Result { is_error: false });
        assert_eq!(latency, Duration::from_millis(30));
        drop(sender);
        assert_eq!(next_chunk(&mut body).await, None);
        assert_eq!(seen.lock().expect("lock").len(), 1, "reported once");
    }

    #[tokio::test]
    async fn a_json_body_is_reported_at_its_end_and_a_cut_stream_as_missing() {
        let (sender, response) = reply("application/json");
        let (watch, seen) = watched("\"x\"");
        let mut body = tapped(response, watch).into_body();
        let answer = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":"no"}}"#,
        );
        sender.send(answer.clone()).await.expect("send");
        assert_eq!(next_chunk(&mut body).await, Some(answer.clone()));
        drop(sender);
        assert_eq!(next_chunk(&mut body).await, None);
        let (summary, size, _) = seen.lock().expect("lock")[0].clone();
        assert_eq!(summary, Answer::Error { code: Some(-32602) });
        assert_eq!(size, answer.len());

        let (sender, response) = reply("text/event-stream");
        let (watch, seen) = watched("6");
        let mut body = tapped(response, watch).into_body();
        drop(sender);
        assert_eq!(next_chunk(&mut body).await, None);
        assert_eq!(
            seen.lock().expect("lock")[0].0,
            Answer::Missing("the reply ended without its response")
        );

        // A JSON body in several frames is read whole.
        let (sender, response) = reply("application/json");
        let (watch, seen) = watched("8");
        let mut body = tapped(response, watch).into_body();
        for part in [&b"{\"jsonrpc\":\"2.0\","[..], b"\"id\":8,\"result\":{}}"] {
            sender.send(Bytes::from_static(part)).await.expect("send");
            assert_eq!(next_chunk(&mut body).await.as_deref(), Some(part));
        }
        drop(sender);
        assert_eq!(next_chunk(&mut body).await, None);
        assert_eq!(
            seen.lock().expect("lock")[0].0,
            Answer::Result { is_error: false }
        );

        // The agent hangs up mid-reply.
        let (_sender, response) = reply("text/event-stream");
        let (watch, seen) = watched("7");
        drop(tapped(response, watch));
        assert_eq!(
            seen.lock().expect("lock")[0].0,
            Answer::Missing("the reply was dropped before its response")
        );
    }
}
