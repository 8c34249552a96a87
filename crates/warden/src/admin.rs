//! The admin listener (its own port): `/healthz`, `/readyz`, `/metrics`.
//!
//! Kept off the MCP listener so that an agent can never reach it and an
//! operator can firewall it separately.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::proxy::Warden;
use crate::proxy::relay::{Body, full};

/// Answer one admin request.
pub async fn handle(warden: Arc<Warden>, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => text(
            StatusCode::OK,
            format!("ready: {} route(s)\n", warden.routes.len()),
        ),
        "/metrics" => {
            let mut response = text(StatusCode::OK, warden.metrics.encode());
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
            "not found: try /healthz, /readyz or /metrics\n".into(),
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
