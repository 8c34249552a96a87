//! The body every response Warden sends or relays, and the helpers the
//! listener and the upstream clients share to make and read them.

use std::collections::VecDeque;

use bytes::Bytes;
use futures_util::{Stream, stream};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body as HttpBody;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use warden_protocol::sse::{SseEvent, SseParser};

/// Any error a relayed body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every response Warden sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Longest SSE line Warden parses when it taps or filters a stream.
pub const MAX_SSE_LINE: usize = 16 << 20;

/// A body from fixed bytes.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A JSON response.
pub fn json(status: StatusCode, bytes: Bytes) -> Response<Body> {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The events of an SSE body, as they arrive.
pub fn sse_events<B>(body: B) -> impl Stream<Item = Result<SseEvent, BoxError>> + Send
where
    B: HttpBody<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let state = (
        body,
        SseParser::new(MAX_SSE_LINE),
        VecDeque::<SseEvent>::new(),
    );
    stream::unfold(state, |(mut body, mut parser, mut ready)| async move {
        loop {
            if let Some(event) = ready.pop_front() {
                return Some((Ok(event), (body, parser, ready)));
            }
            let frame = match body.frame().await? {
                Ok(frame) => frame,
                Err(err) => return Some((Err(err.into()), (body, parser, ready))),
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let mut events = Vec::new();
            if let Err(err) = parser.feed(&data, &mut events) {
                return Some((Err(BoxError::from(err)), (body, parser, ready)));
            }
            ready.extend(events);
        }
    })
}

/// A whole body, refused past `limit` bytes.
pub async fn collect_capped(mut body: Body, limit: usize) -> Result<Bytes, BoxError> {
    let mut chunks = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if chunks.len() + data.len() > limit {
                return Err(format!("the reply exceeds {limit} bytes").into());
            }
            chunks.extend_from_slice(&data);
        }
    }
    Ok(chunks.freeze())
}
