//! HTTP listeners: accept loop, per-connection limits, panic isolation and
//! graceful shutdown. Used by both the MCP listener and the admin listener.
//!
//! The MCP listener is served thread-per-core: one acceptor hands each new
//! connection, round robin, to one of N worker threads, each running its own
//! single-threaded runtime. A request then lives on one thread from its first
//! byte to its last, including the upstream call (each worker has its own
//! upstream connection pool, see [`worker_index`]): no cross-thread wake-ups
//! on the hot path, which is what a proxy's latency is made of.
//!
//! - `header_timeout` bounds slow clients sending headers, and closes
//!   keep-alive connections that stay idle that long (a per-connection
//!   watchdog rather than hyper's header-read timer);
//! - body size and body time are enforced by the MCP handler, which knows
//!   how to say so in JSON-RPC;
//! - a panic while answering one request becomes a 500 for that request;
//!   the process and every other connection carry on;
//! - on shutdown the listener closes at once, in-flight requests finish
//!   within `shutdown_grace`, and what is left after that is cut.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::error::internal_error_body;
use crate::proxy::relay::{Body, json};

/// Per-connection settings of a listener.
#[derive(Clone)]
pub struct ListenerLimits {
    /// Time to receive request headers (and keep-alive idle limit); also
    /// the time a TLS client has to finish its handshake.
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown starts.
    pub shutdown_grace: Duration,
    /// TLS termination, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A connection's socket, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub use warden_upstream::worker::worker_index;

/// Why the workers could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start worker thread")]
pub struct WorkerError(#[from] std::io::Error);

/// Worker threads serving one listener.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Wait for every worker to finish draining.
    pub async fn join(self) {
        let _ = tokio::task::spawn_blocking(move || {
            for thread in self.threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// Serve `handler` on `listener` with `count` worker threads until `stop`
/// turns true, then drain. The accept loop runs on the caller's runtime.
pub fn serve_on_workers<H, F>(
    listener: TcpListener,
    count: usize,
    limits: ListenerLimits,
    handler: H,
    stop: watch::Receiver<bool>,
) -> Result<(Workers, tokio::task::JoinHandle<()>), WorkerError>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let mut senders = Vec::with_capacity(count);
    let mut threads = Vec::with_capacity(count);
    for index in 0..count.max(1) {
        let (sender, receiver) = mpsc::unbounded_channel::<std::net::TcpStream>();
        senders.push(sender);
        let handler = handler.clone();
        let stop = stop.clone();
        let limits = limits.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("warden-worker-{index}"))
            .spawn(move || {
                warden_upstream::worker::set_worker_index(index);
                runtime.block_on(serve_connections(receiver, limits, handler, until(stop)));
                // Do not wait for blocking work (a DNS lookup) past the grace.
                runtime.shutdown_background();
            })?;
        threads.push(thread);
    }
    let acceptor = tokio::spawn(accept(listener, senders, until(stop)));
    Ok((Workers { threads }, acceptor))
}

/// Serve `handler` on `listener` on the caller's runtime (low-traffic
/// listeners such as the admin one).
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: ListenerLimits,
    handler: H,
    stop: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let (sender, receiver) = mpsc::unbounded_channel();
    let acceptor = tokio::spawn(accept(listener, vec![sender], until(stop.clone())));
    serve_connections(receiver, limits, handler, until(stop)).await;
    let _ = acceptor.await;
}

async fn until(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Accept connections and deal them out round robin; closes the listener
/// (and so the workers' queues) on shutdown.
async fn accept(
    listener: TcpListener,
    workers: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted.and_then(|(stream, _peer)| stream.into_std()) {
            Ok(stream) => stream,
            Err(err) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %err, "Accepting a connection failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if workers[next % workers.len()].send(stream).is_err() {
            tracing::error!("A worker thread has stopped; connection dropped.");
        }
        next = next.wrapping_add(1);
    }
}

/// What a connection is doing, for its idle watchdog.
struct Activity {
    /// When the last request started or the last response ended (ms since `epoch`).
    last_ms: AtomicU64,
    /// Responses still being sent (a streamed reply can last for hours).
    busy: AtomicUsize,
    epoch: tokio::time::Instant,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn idle_for(&self, limit: Duration) -> bool {
        self.busy.load(Ordering::Relaxed) == 0
            && self
                .now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed))
                >= u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Marks a response as being sent until its body is dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its connection marked busy while it lives.
    struct BusyBody {
        #[pin]
        inner: Body,
        busy: Busy,
    }
}

impl http_body::Body for BusyBody {
    type Data = bytes::Bytes;
    type Error = crate::proxy::relay::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Counts a connection as live until its task ends (also if it panics).
struct LiveGuard {
    live: Arc<AtomicUsize>,
    all_closed: Arc<tokio::sync::Notify>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        if self.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.all_closed.notify_waiters();
        }
    }
}

pin_project_lite::pin_project! {
    /// The connection's socket; every byte written counts as activity, so a
    /// slow reader receiving a large reply is not taken for an idle client.
    /// Reads do not count: headers trickled in must not keep a connection.
    struct WriteTouch {
        #[pin]
        inner: TokioIo<Conn>,
        activity: Arc<Activity>,
    }
}

impl hyper::rt::Read for WriteTouch {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl hyper::rt::Write for WriteTouch {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.project();
        let written = this.inner.poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &written
            && *n > 0
            && this.activity.busy.load(Ordering::Relaxed) == 0
        {
            this.activity.touch();
        }
        written
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.project();
        let written = this.inner.poll_write_vectored(cx, bufs);
        if let std::task::Poll::Ready(Ok(n)) = &written
            && *n > 0
            && this.activity.busy.load(Ordering::Relaxed) == 0
        {
            this.activity.touch();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Serve the connections handed to this thread until `shutdown`, then drain.
///
/// Idle connections are closed by a per-connection watchdog rather than
/// hyper's header-read timer: that timer is re-armed on every request, and
/// re-arming it wakes the runtime's driver each time (a syscall and an extra
/// loop turn per call); the watchdog wakes once per `header_timeout`. A
/// connection with no request started and no response in progress for
/// `header_timeout` (idle keep-alive, or headers trickling in) is closed.
async fn serve_connections<H, F>(
    mut connections: mpsc::UnboundedReceiver<std::net::TcpStream>,
    limits: ListenerLimits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    let (draining, _) = watch::channel(false);
    let live = Arc::new(AtomicUsize::new(0));
    let all_closed = Arc::new(tokio::sync::Notify::new());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            stream = connections.recv() => match stream {
                Some(stream) => stream,
                None => break,
            },
            () = &mut shutdown => break,
        };
        let stream = match stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(error = %err, "Taking over a connection failed.");
                continue;
            }
        };
        let activity = Arc::new(Activity {
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            epoch: tokio::time::Instant::now(),
        });
        let handler = handler.clone();
        let requests = activity.clone();
        let mut draining = draining.subscribe();
        let header_timeout = limits.header_timeout;
        let tls = limits.tls.clone();
        live.fetch_add(1, Ordering::Relaxed);
        let (live, all_closed) = (live.clone(), all_closed.clone());
        tokio::spawn(async move {
            let _live = LiveGuard { live, all_closed };
            // TLS first, within the header time limit; the client's
            // verified certificate (mTLS) rides on each of its requests.
            let (conn, certificate) = match tls {
                None => (Conn::Plain(stream), None),
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let certificate = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .and_then(|leaf| warden_identity::ClientCertificate::from_der(leaf))
                                .map(Arc::new);
                            (Conn::Tls(Box::new(tls)), certificate)
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(error = %err, "TLS handshake failed.");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake not finished in time.");
                            return;
                        }
                    }
                }
            };
            let service = service_fn(move |mut request: Request<Incoming>| {
                if let Some(certificate) = &certificate {
                    request.extensions_mut().insert(certificate.clone());
                }
                let busy = Busy::start(&requests);
                let answer = AssertUnwindSafe(handler(request)).catch_unwind();
                async move {
                    let response = answer.await.unwrap_or_else(|_| {
                        tracing::error!("A request handler panicked; answered 500.");
                        json(StatusCode::INTERNAL_SERVER_ERROR, internal_error_body())
                    });
                    Ok::<_, Infallible>(response.map(|inner| BusyBody { inner, busy }))
                }
            });
            let io = WriteTouch {
                inner: TokioIo::new(conn),
                activity: activity.clone(),
            };
            let connection = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service);
            let mut connection = std::pin::pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(err) = result {
                            tracing::debug!(error = %err, "Connection ended with an error.");
                        }
                        break;
                    }
                    () = tokio::time::sleep(header_timeout) => {
                        if activity.idle_for(header_timeout) {
                            if closing {
                                // Asked to close and still mid-head: cut it.
                                break;
                            }
                            closing = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                    _ = draining.wait_for(|d| *d), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    let _ = draining.send(true);
    let drained = async {
        loop {
            let notified = all_closed.notified();
            if live.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    };
    tokio::select! {
        () = drained => tracing::debug!("Connections drained."),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "Shutdown grace period over; cutting remaining connections.");
        }
    }
}
