//! The admin listener (its own port): `/healthz`, `/readyz`, `/metrics`,
//! the approvals API and the approvals page.
//!
//! Kept off the MCP listener so that an agent can never reach it and an
//! operator can firewall it separately.
//!
//! - `GET /healthz`, `GET /readyz`, `GET /metrics` (OpenMetrics): no
//!   authentication;
//! - `/approvals…`: the JSON approvals API (`api`), an approver's token
//!   as `Authorization: Bearer`;
//! - `/ui/…`: the approvals page (`ui`), server-rendered HTML; an
//!   approver's token is exchanged once for a session cookie.
//!
//! The generic HTTP concerns (request ids, tracing, security headers,
//! catch-panic, timeout, cross-origin refusal, body limit) are tower-http
//! layers around all of it, assembled once in `layers`.

mod api;
mod decide;
mod layers;
mod ui;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

pub use decide::{DecisionError, RECORD_GRACE, decide, record_decisions_taken_elsewhere};
pub use layers::{MAX_BODY, TIMEOUT};

use crate::proxy::Warden;
use crate::proxy::relay::{Body, full};

/// A request body as the admin handlers read it: bounded by the body
/// limit layer ([`MAX_BODY`]).
pub type AdminBody = tower_http::body::Limited<Incoming>;

/// What the admin handlers share.
pub(crate) struct AdminState {
    warden: Arc<Warden>,
    /// Whether the admin listener is TLS: the page's cookie is then `Secure`.
    tls: bool,
    /// The page's logged-in approvers.
    sessions: ui::Sessions,
}

/// The admin listener's whole service: the router inside its layers.
/// `tls` says whether the listener terminates TLS.
pub fn service(
    warden: Arc<Warden>,
    tls: bool,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    let state = Arc::new(AdminState {
        warden,
        tls,
        sessions: ui::Sessions::default(),
    });
    layers::around(tower::service_fn(move |request: Request<AdminBody>| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, request).await) }
    }))
}

/// Answer one admin request.
async fn handle(state: &AdminState, request: Request<AdminBody>) -> Response<Body> {
    let path = request.uri().path();
    // Slack's and the webhook's callbacks are signed, not token-bearing.
    if crate::channels::is_callback(path) {
        return crate::channels::callback(state.warden.clone(), request).await;
    }
    if path == "/approvals" || path.starts_with("/approvals/") {
        return api::handle(&state.warden, request).await;
    }
    if path == "/ui" || path.starts_with("/ui/") {
        return ui::handle(state, request).await;
    }
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => text(
            StatusCode::OK,
            format!("ready: {} route(s)\n", state.warden.routes.len()),
        ),
        "/metrics" => {
            let mut response = text(StatusCode::OK, state.warden.metrics.encode());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics or /ui/\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json_reply(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    /// Past the body limit layer's [`MAX_BODY`] (a body announced that
    /// large never gets here: the layer answers 413 itself).
    #[error("length limit exceeded: a request body may be at most 64 KiB")]
    TooLarge,
    /// The client went away or sent a broken body.
    #[error("the body could not be read")]
    Unreadable,
}

/// The whole body (the timeout layer bounds how long this may take).
async fn read_body(body: AdminBody) -> Result<Bytes, BodyError> {
    match http_body_util::BodyExt::collect(body).await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Unreadable),
    }
}
