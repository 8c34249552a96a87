//! A legacy HTTP+SSE upstream (MCP 2024-11-05): one GET event stream per
//! session, whose first `endpoint` event names the URL to POST messages
//! to; every server message, replies included, comes back on the stream.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use tokio::sync::{mpsc, oneshot};

use super::bridge::{Link, LinkEvent};
use super::{HttpUpstream, is_event_stream};
use crate::proxy::relay::sse_events;

/// Messages queued for POSTing before senders wait.
const OUTBOUND_QUEUE: usize = 256;

/// Open the event stream, wait for the endpoint, and link to it.
pub(super) async fn connect(client: Arc<HttpUpstream>) -> Result<Link, String> {
    let url = client.url().clone();
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = Method::GET;
    *request.uri_mut() = url.clone();
    request.headers_mut().insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    let response = client
        .request(request)
        .await
        .map_err(|err| format!("event stream could not be opened: {err}"))?;
    if !response.status().is_success() || !is_event_stream(response.headers()) {
        return Err(format!(
            "event stream could not be opened: GET {url} answered HTTP {} ({})",
            response.status(),
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no content type")
        ));
    }
    let mut stream = Box::pin(sse_events(response.into_body()));
    let endpoint = tokio::time::timeout(client.timeout(), async {
        while let Some(event) = stream.next().await.transpose().map_err(|e| e.to_string())? {
            if event.event.as_deref() == Some("endpoint") {
                return Ok(event.data.unwrap_or_default());
            }
        }
        Err("event stream ended before it named its endpoint".to_owned())
    })
    .await
    .map_err(|_| "event stream named no endpoint in time".to_owned())??;
    let endpoint = resolve_endpoint(&url, endpoint.trim())?;

    let (outbound, mut to_server) = mpsc::channel::<Bytes>(OUTBOUND_QUEUE);
    let (events, link_events) = mpsc::unbounded_channel();
    let (stop, mut stopped) = oneshot::channel::<()>();

    let post_events = events.clone();
    tokio::spawn(async move {
        while let Some(message) = to_server.recv().await {
            let mut request = Request::new(Full::new(message));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = endpoint.clone();
            request.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let failure = match client.request(request).await {
                Ok(response) if response.status().is_success() => {
                    // The reply comes on the event stream; the POST's own
                    // body is an acknowledgement.
                    let _ = response.into_body().collect().await;
                    continue;
                }
                Ok(response) => format!("answered HTTP {} to a message", response.status()),
                Err(err) => format!("did not take a message ({err})"),
            };
            let _ = post_events.send(LinkEvent::Closed(failure));
            break;
        }
    });

    tokio::spawn(async move {
        let detail = loop {
            let next = tokio::select! {
                next = stream.next() => next.transpose(),
                _ = &mut stopped => break "was disconnected by Warden".to_owned(),
            };
            match next {
                Ok(Some(event)) => {
                    let is_message = matches!(event.event.as_deref(), None | Some("message"));
                    let Some(data) = event.data.filter(|_| is_message) else {
                        continue;
                    };
                    let data = data.trim();
                    let event = if serde_json::from_str::<serde::de::IgnoredAny>(data).is_ok() {
                        LinkEvent::Message(Bytes::copy_from_slice(data.as_bytes()))
                    } else {
                        LinkEvent::Garbage(format!("{:?}", &data[..data.len().min(120)]))
                    };
                    if events.send(event).is_err() {
                        return;
                    }
                }
                Ok(None) => break "closed its event stream".to_owned(),
                Err(err) => break format!("event stream failed ({err})"),
            }
        };
        let _ = events.send(LinkEvent::Closed(detail));
    });

    Ok(Link {
        outbound,
        events: link_events,
        _stop: stop,
    })
}

/// The POST endpoint the server named, which must be on the server's own
/// origin: a stream must not send Warden's messages somewhere else.
fn resolve_endpoint(base: &Uri, endpoint: &str) -> Result<Uri, String> {
    let invalid = || format!("named an endpoint Warden will not use: {endpoint:?}");
    let resolved = if endpoint.starts_with('/') {
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(endpoint.parse().map_err(|_| invalid())?);
        Uri::from_parts(parts).map_err(|_| invalid())?
    } else if endpoint.contains("://") {
        endpoint.parse::<Uri>().map_err(|_| invalid())?
    } else {
        // Relative to the stream's directory.
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(format!("{dir}{endpoint}").parse().map_err(|_| invalid())?);
        Uri::from_parts(parts).map_err(|_| invalid())?
    };
    let same_origin = resolved.scheme() == base.scheme()
        && resolved.host() == base.host()
        && resolved.port_u16() == base.port_u16();
    if same_origin {
        Ok(resolved)
    } else {
        Err(invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_resolve_on_the_streams_origin_only() {
        let base: Uri = "http://127.0.0.1:3001/sse".parse().expect("uri");
        let resolve = |e: &str| resolve_endpoint(&base, e).map(|u| u.to_string());
        assert_eq!(
            resolve("/message?sessionId=abc").as_deref(),
            Ok("http://127.0.0.1:3001/message?sessionId=abc")
        );
        assert_eq!(
            resolve("messages?sessionId=1").as_deref(),
            Ok("http://127.0.0.1:3001/messages?sessionId=1")
        );
        assert_eq!(
            resolve("http://127.0.0.1:3001/m?s=1").as_deref(),
            Ok("http://127.0.0.1:3001/m?s=1")
        );
        assert!(resolve("http://evil.example/m").is_err());
        assert!(resolve("http://127.0.0.1:9999/m").is_err());
    }
}
