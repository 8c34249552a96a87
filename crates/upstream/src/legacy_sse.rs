//! A legacy HTTP+SSE upstream (MCP 2024-11-05): one GET event stream per
//! session, whose first `endpoint` event names the URL to POST messages
//! to; every server message, replies included, comes back on the stream.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::Full;

use super::bridge::{Link, LinkEnd, LinkEvent};
use super::{HttpUpstream, is_event_stream, preview};
use crate::body::sse_events;

/// Most of a POST's own reply Warden reads (it is an acknowledgement).
const MAX_POST_REPLY: usize = 64 << 10;

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
    let response = client.request(request).await.map_err(|err| match err {
        crate::error::EdgeError::UpstreamTimeout { seconds, .. } => {
            format!("could not be opened within {seconds}s")
        }
        _ => "could not be opened (the server is unreachable or dropped the connection)".to_owned(),
    })?;
    if !response.status().is_success() || !is_event_stream(response.headers()) {
        return Err(format!(
            "could not be opened: GET {} answered HTTP {} ({})",
            without_query(&url),
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
        Err("ended before it named its endpoint".to_owned())
    })
    .await
    .map_err(|_| "named no endpoint in time".to_owned())??;
    let endpoint = resolve_endpoint(&url, endpoint.trim())?;

    let (link, end) = Link::pair();
    let LinkEnd {
        mut to_server,
        events,
        mut stopped,
        finished,
    } = end;

    let post_events = events.clone();
    tokio::spawn(async move {
        while let Some(message) = to_server.recv().await {
            let mut request = Request::new(Full::new(message.clone()));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = endpoint.clone();
            request.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let event = match client.request(request).await {
                Ok(response) if response.status().is_success() => {
                    // The reply comes on the event stream; the POST's own
                    // body is an acknowledgement, read to keep the
                    // connection reusable.
                    let _ = crate::body::collect_capped(response.into_body(), MAX_POST_REPLY).await;
                    continue;
                }
                // The session is gone: so is the link.
                Ok(response)
                    if matches!(response.status(), StatusCode::NOT_FOUND | StatusCode::GONE)
                        || response.status().is_server_error() =>
                {
                    LinkEvent::Closed(format!("answered HTTP {} to a message", response.status()))
                }
                // One message refused: its request fails, the link lives.
                Ok(response) => {
                    let _ = post_events.send(LinkEvent::Refused {
                        message,
                        detail: format!("refused the message with HTTP {}", response.status()),
                    });
                    continue;
                }
                Err(err) => LinkEvent::Closed(format!("did not take a message ({err})")),
            };
            let _ = post_events.send(event);
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
                        LinkEvent::Garbage(preview(data.as_bytes()))
                    };
                    if events.send(event).is_err() {
                        break "was dropped".to_owned();
                    }
                }
                Ok(None) => break "was closed by the server".to_owned(),
                Err(err) => break format!("failed ({err})"),
            }
        };
        drop(stream);
        let _ = events.send(LinkEvent::Closed(detail));
        let _ = finished.send(());
    });

    Ok(link)
}

/// A URL for messages: scheme, authority and path (a query may carry a
/// token or a session id, which agents must not see).
fn without_query(url: &Uri) -> String {
    format!(
        "{}://{}{}",
        url.scheme_str().unwrap_or("http"),
        url.authority().map_or("", |a| a.as_str()),
        url.path()
    )
}

/// The POST endpoint the server named, which must be on the server's own
/// origin: a stream must not send Warden's messages somewhere else.
fn resolve_endpoint(base: &Uri, endpoint: &str) -> Result<Uri, String> {
    let invalid = || {
        let shown = endpoint.split('?').next().unwrap_or_default();
        format!("named an endpoint Warden will not use: {shown:?}")
    };
    let resolved = if let Some(query) = endpoint.strip_prefix('?') {
        // The stream's own path with another query.
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(
            format!("{}?{query}", base.path())
                .parse()
                .map_err(|_| invalid())?,
        );
        Uri::from_parts(parts).map_err(|_| invalid())?
    } else if endpoint.starts_with('/') {
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(endpoint.parse().map_err(|_| invalid())?);
        Uri::from_parts(parts).map_err(|_| invalid())?
    } else if endpoint
        .split('?')
        .next()
        .is_some_and(|head| head.contains("://"))
    {
        endpoint.parse::<Uri>().map_err(|_| invalid())?
    } else {
        // Relative to the stream's directory.
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(format!("{dir}{endpoint}").parse().map_err(|_| invalid())?);
        Uri::from_parts(parts).map_err(|_| invalid())?
    };
    let port = |uri: &Uri| {
        uri.port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            })
    };
    let same_origin = resolved.scheme() == base.scheme()
        && resolved
            .host()
            .zip(base.host())
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
        && port(&resolved) == port(base);
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
        assert_eq!(
            resolve("?sessionId=2").as_deref(),
            Ok("http://127.0.0.1:3001/sse?sessionId=2")
        );
        assert_eq!(
            resolve("messages?next=http://x").as_deref(),
            Ok("http://127.0.0.1:3001/messages?next=http://x")
        );
        let https: Uri = "https://Mcp.Example.com/sse".parse().expect("uri");
        assert!(resolve_endpoint(&https, "https://mcp.example.com:443/m").is_ok());
        assert!(resolve("http://evil.example/m").is_err());
        assert!(resolve("http://127.0.0.1:9999/m").is_err());
    }
}
