//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Labels are low-cardinality by design: routes, decisions, reasons, HTTP
//! methods and status classes. Tool names go to logs and (later) the audit
//! trail, never to labels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `warden_http_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route path.
    pub route: String,
    /// POST, GET or DELETE.
    pub method: String,
    /// The response status.
    pub status: u16,
}

/// Labels of `warden_tool_calls_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The route path.
    pub route: String,
    /// `allow` or the refusal's decision.
    pub decision: String,
    /// The refusal reason, or `forwarded`.
    pub reason: String,
}

/// Labels of `warden_edge_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error's reason code.
    pub reason: String,
    /// `client`, `upstream` or `warden`.
    pub culprit: String,
}

/// Every metric Warden exports.
pub struct Metrics {
    registry: Registry,
    /// HTTP requests answered on the MCP listener.
    pub requests: Family<RequestLabels, Counter>,
    /// `tools/call` outcomes.
    pub tool_calls: Family<DecisionLabels, Counter>,
    /// Requests answered with an edge error.
    pub edge_errors: Family<ErrorLabels, Counter>,
    /// Live agent sessions.
    pub sessions: Gauge,
    /// Catalogue fetches Warden made itself.
    pub catalogue_fetches: Counter,
    /// Sessions ended to make room at the session limit.
    pub sessions_evicted: Counter,
    /// Policy reloads by result.
    pub policy_reloads: Family<ResultLabels, Counter>,
}

/// Labels of `warden_policy_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `applied` or `rejected`.
    pub result: String,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("warden");
        let requests = Family::<RequestLabels, Counter>::default();
        let tool_calls = Family::<DecisionLabels, Counter>::default();
        let edge_errors = Family::<ErrorLabels, Counter>::default();
        let sessions = Gauge::default();
        let catalogue_fetches = Counter::default();
        let sessions_evicted = Counter::default();
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy file changes: applied, or rejected (the last good policy stayed)",
            policy_reloads.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered on the MCP listener",
            requests.clone(),
        );
        registry.register(
            "tool_calls",
            "tools/call outcomes by decision and reason",
            tool_calls.clone(),
        );
        registry.register(
            "edge_errors",
            "Requests answered with an error before reaching the upstream",
            edge_errors.clone(),
        );
        registry.register("sessions", "Live agent sessions", sessions.clone());
        registry.register(
            "catalogue_fetches",
            "tools/list fetches Warden made to decide on a call",
            catalogue_fetches.clone(),
        );
        registry.register(
            "sessions_evicted",
            "Sessions ended to make room at the session limit",
            sessions_evicted.clone(),
        );
        Metrics {
            sessions_evicted,
            policy_reloads,
            registry,
            requests,
            tool_calls,
            edge_errors,
            sessions,
            catalogue_fetches,
        }
    }
}

/// A route's hot-path counters, looked up once at start so that the
/// common case costs one atomic add (no label strings built per call).
#[derive(Clone, Debug)]
pub struct RouteCounters {
    /// `warden_http_requests_total{method="POST",status="200"}`.
    pub post_ok: Counter,
    /// `warden_tool_calls_total{decision="allow",reason="forwarded"}`.
    pub allowed: Counter,
}

impl Metrics {
    /// The reload outcome counters.
    pub fn reload_counters(&self) -> crate::reload::ReloadCounters {
        let counter = |result: &str| {
            self.policy_reloads
                .get_or_create(&ResultLabels {
                    result: result.to_owned(),
                })
                .clone()
        };
        crate::reload::ReloadCounters {
            applied: counter("applied"),
            rejected: counter("rejected"),
        }
    }

    /// Resolve the hot-path counters of `route`.
    pub fn route_counters(&self, route: &str) -> RouteCounters {
        RouteCounters {
            post_ok: self
                .requests
                .get_or_create(&RequestLabels {
                    route: route.to_owned(),
                    method: "POST".to_owned(),
                    status: 200,
                })
                .clone(),
            allowed: self
                .tool_calls
                .get_or_create(&DecisionLabels {
                    route: route.to_owned(),
                    decision: "allow".to_owned(),
                    reason: "forwarded".to_owned(),
                })
                .clone(),
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
