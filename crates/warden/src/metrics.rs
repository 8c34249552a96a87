//! Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Labels are low-cardinality by design: routes, decisions, reasons, HTTP
//! methods and status classes. Tool names go to logs and (later) the audit
//! trail, never to labels.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use warden_pipeline::Answer;

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

/// Labels of `warden_tool_call_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabels {
    /// The route path.
    pub route: String,
    /// `result`, `tool_error` (`isError: true`), `error` (JSON-RPC) or
    /// `missing` (no response came).
    pub answer: String,
}

/// The histogram of forwarded calls' durations.
type DurationFamily = Family<AnswerLabels, Histogram, fn() -> Histogram>;

/// Buckets of `warden_tool_call_duration_seconds`: 100 µs (a fast local
/// upstream) to about 2 min.
fn duration_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 21,
    ))
}

/// Labels of `warden_upstream_links`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route path.
    pub route: String,
}

/// Labels of `warden_upstream_link_events_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkEventLabels {
    /// The route path.
    pub route: String,
    /// `closed` (a child exited or a stream closed), `start_failed`, or
    /// `garbage` (a line that is not JSON-RPC).
    pub event: String,
}

/// Labels of `warden_approval_notifications_total` and
/// `warden_approval_callbacks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabels {
    /// `slack` or `webhook`.
    pub channel: String,
    /// Notifications: `delivered` or `failed`. Callbacks: `decided`,
    /// `refused` (the decision was not taken), `bad_signature`, `stale`,
    /// `replayed`, `busy`, `bad_request`, `unmapped_user` or `unavailable`.
    pub result: String,
}

pub use warden_upstream::LinkMetrics;

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
    /// Open links to stdio children and legacy SSE streams, per route.
    pub upstream_links: Family<RouteLabels, Gauge>,
    /// What happened to those links.
    pub upstream_link_events: Family<LinkEventLabels, Counter>,
    /// Forwarded calls, from forwarding to their response, by answer.
    pub tool_call_duration: DurationFamily,
    /// Tasks Warden keeps for task-augmented calls it answers itself.
    pub tasks: Gauge,
    /// New approvals told to approvers' channels, by channel and result.
    pub approval_notifications: Family<ChannelLabels, Counter>,
    /// Signed callbacks from approvers' channels, by channel and result.
    pub approval_callbacks: Family<ChannelLabels, Counter>,
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
        let tasks = Gauge::default();
        let policy_reloads = Family::<ResultLabels, Counter>::default();
        let upstream_links = Family::<RouteLabels, Gauge>::default();
        let upstream_link_events = Family::<LinkEventLabels, Counter>::default();
        let tool_call_duration: DurationFamily = Family::new_with_constructor(duration_histogram);
        let approval_notifications = Family::<ChannelLabels, Counter>::default();
        let approval_callbacks = Family::<ChannelLabels, Counter>::default();
        registry.register(
            "approval_notifications",
            "New approvals told to approvers' channels (Slack, webhook), by result after retries",
            approval_notifications.clone(),
        );
        registry.register(
            "approval_callbacks",
            "Signed callbacks from approvers' channels (Slack, webhook), by result",
            approval_callbacks.clone(),
        );
        registry.register(
            "tool_call_duration_seconds",
            "Forwarded tools/call requests, from forwarding to the upstream's response, by answer",
            tool_call_duration.clone(),
        );
        registry.register(
            "upstream_links",
            "Open links to stdio upstream children and legacy SSE streams",
            upstream_links.clone(),
        );
        registry.register(
            "upstream_link_events",
            "stdio children and legacy SSE streams that closed, failed to start, or sent a line that is not JSON-RPC",
            upstream_link_events.clone(),
        );
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
        registry.register(
            "tasks",
            "Tasks Warden keeps for task-augmented calls it holds or answers itself",
            tasks.clone(),
        );
        Metrics {
            tasks,
            tool_call_duration,
            approval_notifications,
            approval_callbacks,
            upstream_links,
            upstream_link_events,
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
    /// `warden_tool_call_duration_seconds` by answer: result, tool_error,
    /// error, missing (shared: a call's tap holds them, at one clone).
    pub durations: Arc<CallDurations>,
}

/// A route's `warden_tool_call_duration_seconds` histograms.
#[derive(Debug)]
pub struct CallDurations([Histogram; 4]);

// === impl CallDurations ===

impl CallDurations {
    /// The histogram for `answer`.
    pub fn of(&self, answer: &Answer) -> &Histogram {
        let index = match answer {
            Answer::Result { is_error: false } => 0,
            Answer::Result { is_error: true } => 1,
            Answer::Error { .. } => 2,
            Answer::Missing(_) => 3,
        };
        &self.0[index]
    }
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

    /// Resolve the link metrics of `route`.
    pub fn link_metrics(&self, route: &str) -> LinkMetrics {
        let event = |event: &str| {
            self.upstream_link_events
                .get_or_create(&LinkEventLabels {
                    route: route.to_owned(),
                    event: event.to_owned(),
                })
                .clone()
        };
        LinkMetrics {
            open: self
                .upstream_links
                .get_or_create(&RouteLabels {
                    route: route.to_owned(),
                })
                .clone(),
            closed: event("closed"),
            start_failed: event("start_failed"),
            garbage: event("garbage"),
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
            durations: Arc::new(CallDurations(
                ["result", "tool_error", "error", "missing"].map(|answer| {
                    self.tool_call_duration
                        .get_or_create(&AnswerLabels {
                            route: route.to_owned(),
                            answer: answer.to_owned(),
                        })
                        .clone()
                }),
            )),
        }
    }

    /// Export what `collector` reads at each scrape (its names get the
    /// `warden_` prefix).
    pub fn register_collector(&mut self, collector: impl prometheus_client::collector::Collector) {
        self.registry.register_collector(Box::new(collector));
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
