//! HTTP listeners: accept loop, per-connection limits, panic isolation and
//! graceful shutdown. Used by both the MCP listener and the admin listener.
//!
//! - `header_read_timeout` bounds slow clients sending headers, and closes
//!   keep-alive connections that stay idle that long;
//! - body size and body time are enforced by the MCP handler, which knows
//!   how to say so in JSON-RPC;
//! - a panic while answering one request becomes a 500 for that request;
//!   the process and every other connection carry on;
//! - on shutdown the listener closes at once, in-flight requests finish
//!   within `shutdown_grace`, and what is left after that is cut.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::error::internal_error_body;
use crate::proxy::relay::{Body, json};

/// Per-connection settings of a listener.
#[derive(Debug, Clone, Copy)]
pub struct ListenerLimits {
    /// Time to receive request headers (and keep-alive idle limit).
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown starts.
    pub shutdown_grace: Duration,
}

/// Serve `handler` on `listener` until `shutdown` resolves, then drain.
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: ListenerLimits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %err, "Accepting a connection failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let answer = AssertUnwindSafe(handler(request)).catch_unwind();
            async move {
                Ok::<_, Infallible>(answer.await.unwrap_or_else(|_| {
                    tracing::error!("A request handler panicked; answered 500.");
                    json(StatusCode::INTERNAL_SERVER_ERROR, internal_error_body())
                }))
            }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "Connection ended with an error.");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("All connections drained."),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "Shutdown grace period over; cutting remaining connections.");
        }
    }
}
