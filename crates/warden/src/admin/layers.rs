//! The admin listener's HTTP stack: generic concerns, each a tower-http
//! layer as it is, in one place, outermost first. Nothing here knows about
//! approvals; the router inside sees a request that has an id, is
//! same-origin if a browser sent it, and has a bounded body.
//!
//! Every response, whoever answers it (the router, a panic, the timeout,
//! the cross-origin check, the body limit), carries the request id and the
//! security headers, because those layers sit outside all the others.

use std::any::Any;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::csrf::{CsrfLayer, ProtectionError};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{MakeSpan, TraceLayer};

use crate::error::internal_error_body;
use crate::proxy::relay::{Body, full, json};

/// Largest request body the admin listener reads (a decision's reason, a
/// login form): larger ones are answered 413.
pub const MAX_BODY: usize = 64 << 10;

/// Longest an admin request may take, body included: then 408.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The Content-Security-Policy of every admin response: nothing but the
/// page's own stylesheet and images, forms posting only to itself, never
/// framed. No script may run at all (there is none).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `inner` (the router) inside the admin listener's layers.
pub(super) fn around<S, ReqBody>(
    inner: S,
) -> impl Service<
    Request<ReqBody>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static
where
    S: Service<
            Request<tower_http::body::Limited<ReqBody>>,
            Response = Response<Body>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    ReqBody: http_body::Body + Send + 'static,
{
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    ServiceBuilder::new()
        // One body type for the listener, whatever the layers made of it.
        .map_response(|response: Response<_>| {
            response.map(|body: tower_http::trace::ResponseBody<_, _, _, _>| {
                body.map_err(Into::into).boxed_unsync()
            })
        })
        // First: every layer and log line below knows the request by its
        // id (the client's `x-request-id` if it sent one).
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        // The span wraps everything else, so a panic's 500, a timeout or a
        // refusal is traced like any answer. Headers are not recorded: they
        // carry approver tokens and session cookies.
        .layer(TraceLayer::new_for_http().make_span_with(AdminSpan))
        .layer(PropagateRequestIdLayer::x_request_id())
        // Security headers on every response, including those the layers
        // below answer themselves.
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY,
        ))
        // Approvals, sessions and metrics are live state: never cached.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        // A panicking handler answers 500; the listener lives on.
        .layer(CatchPanicLayer::custom(panicked))
        // Bounds the whole exchange, the body's arrival included.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        // A browser's cross-origin POST is refused before its body is
        // read: Sec-Fetch-Site first, Origin against Host only without it
        // (under `Referrer-Policy: no-referrer` a browser sends the page's
        // own forms with `Origin: null`). The page's forms also carry a
        // per-session token (see `ui`).
        .layer(CsrfLayer::new().with_rejection_response(cross_origin))
        .service(inner)
}

/// The span of one admin request.
#[derive(Debug, Clone, Copy)]
struct AdminSpan;

impl<B> MakeSpan<B> for AdminSpan {
    fn make_span(&mut self, request: &Request<B>) -> tracing::Span {
        let id = request
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // The path, not the URI: a query is nobody's business in a log.
        tracing::info_span!("admin", method = %request.method(), path = %request.uri().path(), request_id = %id)
    }
}

/// A handler panicked: 500, and the panic's message stays in the process
/// (it may quote whatever the handler was looking at).
fn panicked(_panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    tracing::error!("An admin request handler panicked; answered 500.");
    json(StatusCode::INTERNAL_SERVER_ERROR, internal_error_body())
}

fn cross_origin(_error: ProtectionError) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(
        b"cross-origin request refused: a form may only be posted from this listener's own pages\n",
    )));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;
    use tower::ServiceExt;

    use super::*;

    async fn echo(
        request: Request<tower_http::body::Limited<Full<Bytes>>>,
    ) -> Result<Response<Body>, Infallible> {
        if request.uri().path() == "/panic" {
            panic!("a handler bug");
        }
        match request.into_body().collect().await {
            Ok(body) => Ok(Response::new(full(body.to_bytes()))),
            Err(_) => {
                let mut response = Response::new(full(Bytes::from_static(b"too large")));
                *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                Ok(response)
            }
        }
    }

    async fn send(request: Request<Full<Bytes>>) -> (Response<()>, Bytes) {
        let response = around(tower::service_fn(echo))
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (Response::from_parts(parts, ()), body)
    }

    fn security_headers_on(response: &Response<()>) {
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert_eq!(headers["cache-control"], "no-store");
        assert!(headers.contains_key("x-request-id"));
    }

    #[tokio::test]
    async fn a_request_gets_an_id_and_the_security_headers() {
        let (response, body) = send(Request::new(Full::new(Bytes::from_static(b"hi")))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(&body[..], b"hi");
        security_headers_on(&response);
        let request = Request::builder()
            .header("x-request-id", "abc-123")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (response, _) = send(request).await;
        assert_eq!(response.headers()["x-request-id"], "abc-123");
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_with_the_headers_and_no_message() {
        let request = Request::builder()
            .uri("/panic")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (response, body) = send(request).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        security_headers_on(&response);
        assert!(!String::from_utf8_lossy(&body).contains("a handler bug"));
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_and_a_cross_site_post_too() {
        let request = Request::post("/")
            .header("content-length", (MAX_BODY + 1).to_string())
            .body(Full::new(Bytes::from(vec![b'a'; MAX_BODY + 1])))
            .expect("request");
        let (response, _) = send(request).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        security_headers_on(&response);
        // Without a length announced, the handler hears it while reading.
        let request = Request::post("/")
            .body(Full::new(Bytes::from(vec![b'a'; MAX_BODY + 1])))
            .expect("request");
        let (response, body) = send(request).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{body:?}");
        let request = Request::post("/")
            .header("host", "127.0.0.1:9090")
            .header("sec-fetch-site", "cross-site")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (response, _) = send(request).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        security_headers_on(&response);
        let request = Request::post("/")
            .header("host", "127.0.0.1:9090")
            .header("origin", "http://127.0.0.1:9090")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (response, _) = send(request).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_the_timeout_answers_408() {
        let slow = tower::service_fn(|_: Request<tower_http::body::Limited<Full<Bytes>>>| async {
            tokio::time::sleep(TIMEOUT * 2).await;
            Ok::<_, Infallible>(Response::new(full(Bytes::new())))
        });
        let response = around(slow)
            .oneshot(Request::new(Full::new(Bytes::new())))
            .await
            .unwrap_or_else(|never| match never {});
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(response.headers()["x-frame-options"], "DENY");
    }
}
