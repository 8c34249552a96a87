//! Warden: a policy sidecar for MCP.
//!
//! This crate is the `warden` binary's library: configuration, the
//! Streamable HTTP proxy, the admin listener and the demo. The upstream
//! clients (and the body, error and line types the proxy shares with them)
//! are in `warden-upstream`, re-exported here as [`upstream`], [`error`]
//! and [`line_io`]. [`start`] builds a running Warden from a [`Config`]; the binary,
//! the demo and the integration tests all start Warden through it.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod channels;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod env;
pub mod forward;
pub mod lanes;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod request_state;
pub mod server;
pub mod session;
pub mod stdio;
pub mod tasks;
pub mod tls;

pub use warden_upstream as upstream;
pub use warden_upstream::{error, line_io};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Config;
use forward::Forwarder;
use metrics::Metrics;
use proxy::{Route, Warden};
use server::ListenerLimits;
use session::SessionStore;
use upstream::{Upstream, UpstreamSetupError};
use warden_pipeline::{AuditLayer, AuditSettings};

/// Why Warden could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread could not start.
    #[error(transparent)]
    Workers(#[from] server::WorkerError),
    /// The audit trail could not start.
    #[error("audit trail")]
    Audit(#[from] audit::AuditStartError),
    /// The approval queue could not be opened.
    #[error("approvals")]
    Approvals(#[from] warden_approvals::ApprovalError),
    /// Approvers' identity methods could not be built (a JWKS file, a CA
    /// bundle).
    #[error("approvals.identity")]
    ApproverIdentity(#[source] warden_identity::SetupError),
    /// The shared request-state key could not be read.
    #[error("approvals.request_state_key")]
    RequestStateKey(#[source] credentials::CredentialSetupError),
    /// The shared request-state key is too short to be a key.
    #[error(
        "approvals.request_state_key must be at least 32 characters (e.g. `openssl rand -hex 32`)"
    )]
    RequestStateKeyShort,
    /// Slack or the webhook could not be set up (a secret, the client).
    #[error("approvals")]
    Channels(#[from] channels::ChannelSetupError),
    /// A listener's TLS certificate, key or client CA cannot be used.
    #[error("{listener}")]
    Tls {
        /// `tls` (the MCP listener) or `admin_tls`.
        listener: &'static str,
        /// The failure.
        #[source]
        source: tls::TlsSetupError,
    },
    /// A route's credential could not be read at start.
    #[error("route {route}: credentials")]
    Credential {
        /// The route.
        route: String,
        /// The failure.
        #[source]
        source: credentials::CredentialSetupError,
    },
    /// A route's authenticator could not be built (a JWKS file, a CA bundle).
    #[error("route {route}: auth")]
    Auth {
        /// The route.
        route: String,
        /// The failure.
        #[source]
        source: warden_identity::SetupError,
    },
    /// A route's upstream client could not be built.
    #[error("route {route}")]
    Upstream {
        /// The route.
        route: String,
        /// The failure.
        #[source]
        source: UpstreamSetupError,
    },
}

/// Build the shared proxy state from a validated config. Call it inside the
/// Tokio runtime Warden runs on: stdio children and legacy SSE streams are
/// kept on it.
pub async fn build(config: &Config) -> Result<Arc<Warden>, StartError> {
    let mut metrics = Metrics::default();
    let sessions = SessionStore::new(config.limits.max_sessions, config.limits.session_idle);
    let trail = match &config.audit {
        Some(audit) => Some(audit::AuditTrail::start(audit)?),
        None => {
            tracing::warn!("No audit section in the config: calls and decisions are not recorded.");
            None
        }
    };
    let approvals = match &config.approvals {
        Some(approvals) => {
            let mut opened = approvals.open().await?;
            if let Some(identity) = &approvals.identity {
                opened.identity = Some((
                    identity.build().map_err(StartError::ApproverIdentity)?,
                    identity.clone(),
                ));
            }
            opened.channels = channels::Channels::build(approvals, &metrics)?;
            Some(Arc::new(opened))
        }
        None => None,
    };
    let mut routes = Vec::with_capacity(config.routes.len());
    let mut unrecorded = Vec::new();
    for (index, route) in config.routes.iter().enumerate() {
        // One lane per credential (and one with none): each its own
        // upstream client, so a request with one credential never shares
        // an upstream session, a connection or a child with another.
        let mut lanes = Vec::with_capacity(route.credentials.len() + 1);
        let no_credential = std::iter::once(None);
        for credential in no_credential.chain(route.credentials.iter().map(Some)) {
            let built = match credential {
                Some(config) => Some(config.build().map_err(|source| StartError::Credential {
                    route: route.path.clone(),
                    source,
                })?),
                None => None,
            };
            let upstream = Upstream::new(
                &route.path,
                &route.upstream,
                config.workers,
                || metrics.link_metrics(&route.path),
                built,
            )
            .map_err(|source| StartError::Upstream {
                route: route.path.clone(),
                source,
            })?;
            lanes.push(proxy::Lane {
                credential: credential.map(|c| Arc::from(c.name.as_str())),
                upstream: Arc::new(upstream),
            });
        }
        let base_lane = route
            .base_credential
            .as_deref()
            .and_then(|name| {
                lanes
                    .iter()
                    .position(|l| l.credential.as_deref() == Some(name))
            })
            .unwrap_or(0);
        let upstream = lanes[base_lane].upstream.clone();
        let auth = match &route.auth {
            Some(auth) => Some(Arc::new(auth.build().map_err(|source| {
                StartError::Auth {
                    route: route.path.clone(),
                    source,
                }
            })?)),
            None => {
                if !config.listen.ip().is_loopback() {
                    tracing::warn!(route = %route.path, "The route has no auth section: every caller is anonymous.");
                }
                None
            }
        };
        let upstream_name: Arc<str> = route.upstream.describe().into();
        let policy = Arc::new(ArcSwap::from_pointee(route.policy.clone()));
        let audit_layer = match &trail {
            Some(trail) => {
                let settings = AuditSettings::new(
                    trail.log.clone(),
                    policy.clone(),
                    upstream_name.clone(),
                    trail.config.read_calls,
                    trail.config.max_result,
                    trail.redaction_key.clone(),
                );
                unrecorded.push(settings.unrecorded.clone());
                audit::record_policy_loaded(&trail.log, &route.path, &route.policy, "start");
                AuditLayer::new(Arc::new(settings))
            }
            None => AuditLayer::off(),
        };
        let hold = approvals.as_ref().map(|approvals| {
            Arc::new(warden_pipeline::HoldSettings {
                store: approvals.store.clone(),
                wakeups: approvals.wakeups.clone(),
                route: route.path.as_str().into(),
                upstream: upstream_name.clone(),
                budget: approvals.hold_budget,
                audit: trail.as_ref().map(|t| t.log.clone()),
                redaction_key: trail.as_ref().and_then(|t| t.redaction_key.clone()),
                on_requested: approvals.channels.as_ref().map(|c| c.notifier()),
            })
        });
        let call_counts: Arc<warden_limits::CallCounts> = Arc::default();
        let pipeline = warden_pipeline::build(
            audit_layer,
            policy.clone(),
            warden_pipeline::LimitsLayer::new(policy.clone(), call_counts.clone()),
            warden_pipeline::DryRunLayer::new(upstream_name.clone()),
            warden_pipeline::HoldLayer::new(policy.clone(), hold),
            Forwarder::new(upstream.clone()),
        );
        routes.push(Route {
            index,
            path: route.path.as_str().into(),
            upstream,
            upstream_name,
            policy,
            pipeline,
            allowed_origins: route.allowed_origins.clone(),
            allowed_hosts: proxy::HostCheck::new(route.allowed_hosts.as_deref(), config.listen),
            stateless: session::StatelessSessions::new(
                index,
                warden_protocol::mcp::STATELESS_REVISIONS[0],
            ),
            auth,
            lanes,
            base_lane,
            counters: metrics.route_counters(&route.path),
            call_counts,
        });
    }
    if let Some(trail) = &trail {
        metrics.register_collector(audit::AuditMetrics::new(trail, unrecorded));
    }
    let telemetry_propagates = config
        .audit
        .as_ref()
        .and_then(|a| a.otlp.as_ref())
        .is_some_and(|o| o.propagate);
    let (audit, otlp_logs, telemetry) = match trail {
        Some(trail) => (
            Some(trail.log),
            trail.otlp_logs.map(|(handle, _)| handle),
            trail.telemetry,
        ),
        None => (None, None, warden_audit::otlp::Telemetry::disabled()),
    };
    Ok(Arc::new(Warden {
        approvals,
        routes,
        sessions,
        metrics,
        limits: config.limits.clone(),
        audit,
        otlp_logs,
        telemetry,
        telemetry_propagates,
        tasks: tasks::TaskBoard::default(),
        request_states: request_states(config)?,
    }))
}

/// The request states' sealer: from the shared secret when
/// `approvals.request_state_key` names one (read now: `warden check` calls
/// it too), else with a random key.
pub fn request_states(config: &Config) -> Result<request_state::RequestStates, StartError> {
    const NAME: &str = "approvals.request_state_key";
    let Some(source) = config
        .approvals
        .as_ref()
        .and_then(|a| a.request_state_key.as_ref())
    else {
        return Ok(request_state::RequestStates::default());
    };
    if matches!(source, credentials::SourceConfig::Inline(_)) {
        tracing::warn!(
            secret = NAME,
            "The secret is written in the config file: for development only; use env or file."
        );
    }
    let secret = credentials::source(NAME, source)
        .and_then(|s| s.current(NAME).map_err(Into::into))
        .map_err(StartError::RequestStateKey)?;
    let secret = secret.expose().trim();
    if secret.len() < request_state::MIN_SHARED_SECRET {
        return Err(StartError::RequestStateKeyShort);
    }
    Ok(request_state::RequestStates::shared(secret.as_bytes()))
}

/// A running Warden: its bound addresses and the handle to stop it.
pub struct Running {
    /// Where the MCP listener listens.
    pub mcp_addr: SocketAddr,
    /// Where the admin listener listens, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// The shared state (for inspection by tests and the demo).
    pub warden: Arc<Warden>,
    stop: watch::Sender<bool>,
    workers: server::Workers,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, drain in-flight requests (up to the grace period), return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.workers.join().await;
        // Calls have drained: stop stdio children and legacy SSE streams
        // (they run on this runtime, not on the workers just stopped).
        self.warden.shutdown_upstreams().await;
        // Last: the trail's closing checkpoint comes after every call.
        self.warden.close_trail().await;
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Bind the listeners and start serving: the MCP listener on
/// `config.workers` threads, the admin listener and the session sweeper on
/// the caller's runtime.
pub async fn start(config: &Config) -> Result<Running, StartError> {
    let warden = build(config).await?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let mcp = bind(config.listen).await?;
    let admin = match config.admin {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let mcp_addr = mcp.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let tls = |settings: &Option<tls::ListenerTls>, listener: &'static str| {
        settings
            .as_ref()
            .map(|settings| tls::acceptor(settings, config.limits.reload_interval))
            .transpose()
            .map_err(|source| StartError::Tls { listener, source })
    };
    let limits = ListenerLimits {
        header_timeout: config.limits.header_timeout,
        shutdown_grace: config.limits.shutdown_grace,
        tls: tls(&config.tls, "tls")?,
    };
    let admin_limits = ListenerLimits {
        tls: tls(&config.admin_tls, "admin_tls")?,
        ..limits.clone()
    };
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    let proxy = warden.clone();
    let (workers, acceptor) = server::serve_on_workers(
        mcp,
        config.workers,
        limits,
        move |request| proxy.clone().handle(request),
        stopped.clone(),
    )?;
    tasks.push(acceptor);
    if let Some(admin) = admin {
        let service = admin::service(warden.clone(), config.admin_tls.is_some());
        tasks.push(tokio::spawn(server::serve(
            admin,
            admin_limits,
            move |request| {
                use tower::ServiceExt;
                let answer = service.clone().oneshot(request);
                async move { answer.await.unwrap_or_else(|never| match never {}) }
            },
            stopped.clone(),
        )));
    }
    let watched: Vec<reload::WatchedPolicy> = config
        .routes
        .iter()
        .zip(&warden.routes)
        .filter_map(|(route, live)| {
            route.policy_file.clone().map(|file| reload::WatchedPolicy {
                route: live.path.clone(),
                file,
                policy: live.policy.clone(),
                audit: warden.audit.clone(),
                redaction_key: config
                    .audit
                    .as_ref()
                    .is_some_and(|a| a.redaction_key_file.is_some()),
                credentials: route.credentials.iter().map(|c| c.name.clone()).collect(),
            })
        })
        .collect();
    let reload_stopped = stopped.clone();
    tasks.push(tokio::spawn(reload::watch(
        watched,
        reload::ReloadTiming {
            interval: config.limits.reload_interval,
            settle: config.limits.reload_settle,
        },
        warden.metrics.reload_counters(),
        async move {
            let mut stopped = reload_stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        },
    )));
    let sweeper = warden.clone();
    let every =
        (config.limits.session_idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut sweeper_stopped = stopped;
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                // The sweep itself races the stop signal too: ending sessions
                // on an unresponsive upstream must not hold up a shutdown.
                () = async {
                    tokio::time::sleep(every).await;
                    sweeper.sweep_sessions().await;
                    sweeper.expire_approvals().await;
                    admin::record_decisions_taken_elsewhere(&sweeper).await;
                    sweeper.tasks.sweep(std::time::SystemTime::now());
                    sweeper.metrics.tasks.set(sweeper.tasks.len() as i64);
                } => {}
                result = sweeper_stopped.changed() => if result.is_err() || *sweeper_stopped.borrow() { break },
            }
        }
    }));
    Ok(Running {
        mcp_addr,
        admin_addr,
        warden,
        stop,
        workers,
        tasks,
    })
}
