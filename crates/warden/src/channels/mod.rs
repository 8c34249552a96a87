//! Approvers' channels: Slack and a generic webhook.
//!
//! **Out.** When a call is held as a new approval, the hold layer tells
//! [`Channels::notifier`]; each configured channel then gets the approval
//! off the request's path (a task of its own, at most [`ATTEMPTS`]
//! attempts of [`ATTEMPT_TIMEOUT`] each, with doubling backoff):
//! - Slack: a Block Kit message with Approve and Reject buttons, posted to
//!   the incoming webhook URL ([`slack::message`]);
//! - the webhook: `{"type": "approval.requested", "approval": {…}}` signed
//!   with `X-Warden-Timestamp` and `X-Warden-Signature: v1=…`
//!   ([`webhook::requested`], [`signature`]).
//!
//! A delivery that fails after its attempts is logged (never with the
//! Slack URL or a secret) and counted in
//! `warden_approval_notifications_total{channel, result="failed"}`; the
//! call stays held and can still be decided through the API.
//!
//! **In** (on the admin listener): `POST
//! /approvals/slack/interactions` (a button click, as Slack sends it) and
//! `POST /approvals/webhook/decisions` (a signed decision). Each is checked
//! before its body is parsed: timestamp within five minutes, signature in
//! constant time, never seen before; then decided through the one decision
//! path the API uses (`admin::decide`: the rule's approvers, four
//! eyes, the audit record naming the channel). Slack is answered within
//! three seconds, whatever the store does: the decision runs in a task of
//! its own and Slack's message is updated through its `response_url` once
//! it is taken.

pub mod config;
pub mod signature;
pub mod slack;
pub mod webhook;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{Value, json};
use warden_approvals::{Approval, Verdict};
use warden_upstream::credential::{CredentialError, Source};

pub(crate) use config::{RawSlack, RawWebhook};
pub use config::{SlackConfig, WebhookConfig};
use signature::{ReplayGuard, Scheme, SignatureError};

use crate::approvals::ApprovalsConfig;
use crate::credentials::{CredentialSetupError, SourceConfig};
use crate::metrics::{ChannelLabels, Metrics};
use crate::proxy::Warden;
use crate::proxy::relay::{Body, full};

/// Where Slack sends button clicks (the app's interactivity request URL).
pub const SLACK_INTERACTIONS: &str = "/approvals/slack/interactions";
/// Where signed webhook decisions come.
pub const WEBHOOK_DECISIONS: &str = "/approvals/webhook/decisions";

/// Attempts at telling a channel of one approval.
pub const ATTEMPTS: u32 = 3;
/// The wait before the second attempt (doubled before each next one).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Time limit of one attempt (connect, send, response head and body).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack wants an answer within 3 s; this leaves room for the network.
const SLACK_ANSWER_WITHIN: Duration = Duration::from_millis(2500);
/// Time a webhook decision may take, body read to decision.
const WEBHOOK_ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// Largest callback body read (Slack's payloads are a few KiB).
const MAX_CALLBACK_BODY: usize = 64 << 10;
/// Largest response body read from a channel (then dropped).
const MAX_RESPONSE_BODY: usize = 64 << 10;
/// Approvals already told, remembered so that two requests attaching to
/// one new approval at once tell the channels once.
const REMEMBERED_NOTICES: usize = 1024;

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Slack and the webhook, running.
pub struct Channels {
    slack: Option<Slack>,
    webhook: Option<Webhook>,
    /// The configured approvers' names (a webhook decision names one).
    approvers: Vec<String>,
    client: HttpClient,
    /// Where deliveries run: the runtime Warden was started on, not an
    /// MCP worker's.
    runtime: tokio::runtime::Handle,
    notified: Mutex<VecDeque<String>>,
    slack_seen: ReplayGuard,
    webhook_seen: ReplayGuard,
    notifications: Family<ChannelLabels, Counter>,
    callbacks: Family<ChannelLabels, Counter>,
}

struct Slack {
    webhook_url: Source,
    signing_secret: Source,
    users: HashMap<String, String>,
}

struct Webhook {
    url: Uri,
    secret: Source,
}

/// Which channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// Slack.
    Slack,
    /// The generic webhook.
    Webhook,
}

/// Why the channels could not be set up at start. Never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum ChannelSetupError {
    /// A secret could not be read.
    #[error(transparent)]
    Secret(#[from] CredentialSetupError),
    /// Slack's webhook URL (read from its source) is not an https URL.
    #[error(
        "approvals.slack.webhook_url: the value read is not an https URL (http only on loopback)"
    )]
    SlackUrl,
    /// The HTTP client could not be built (no trust roots).
    #[error("approvals channels: the HTTP client: {0}")]
    Client(#[source] warden_identity::SetupError),
    /// Built outside the Tokio runtime.
    #[error("approvals channels must be set up inside the Tokio runtime")]
    NoRuntime,
}

/// Why one delivery attempt failed. Never holds the URL or a secret.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error(transparent)]
    Secret(#[from] CredentialError),
    #[error("the configured URL is not an https URL (http only on loopback)")]
    BadUrl,
    #[error("unreachable")]
    Unreachable,
    #[error("no answer within {}s", ATTEMPT_TIMEOUT.as_secs())]
    Timeout,
    #[error("answered HTTP {0}")]
    Status(StatusCode),
}

// === impl Channel ===

impl Channel {
    /// As metrics and audit records name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Slack => "slack",
            Channel::Webhook => "webhook",
        }
    }
}

// === impl DeliveryError ===

impl DeliveryError {
    /// Whether another attempt may do better.
    fn retryable(&self) -> bool {
        match self {
            DeliveryError::Unreachable | DeliveryError::Timeout => true,
            DeliveryError::Status(status) => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            DeliveryError::Secret(_) | DeliveryError::BadUrl => false,
        }
    }
}

// === impl Slack / Webhook ===

const SLACK_URL: &str = "approvals.slack.webhook_url";
const SLACK_SECRET: &str = "approvals.slack.signing_secret";
const WEBHOOK_SECRET: &str = "approvals.webhook.secret";

fn open(name: &str, config: &SourceConfig) -> Result<Source, CredentialSetupError> {
    if matches!(config, SourceConfig::Inline(_)) {
        tracing::warn!(
            secret = name,
            "The secret is written in the config file: for development only; use env or file."
        );
    }
    let source = crate::credentials::source(name, config)?;
    source.current(name)?;
    Ok(source)
}

/// Slack's webhook URL as read now, if it is one Warden sends to.
fn slack_url(source: &Source) -> Result<Uri, DeliveryError> {
    let value = source.current(SLACK_URL)?;
    value
        .expose()
        .trim()
        .parse::<Uri>()
        .ok()
        .filter(config::acceptable_url)
        .ok_or(DeliveryError::BadUrl)
}

impl Slack {
    fn open(config: &SlackConfig) -> Result<Slack, ChannelSetupError> {
        let webhook_url = open(SLACK_URL, &config.webhook_url)?;
        if slack_url(&webhook_url).is_err() {
            return Err(ChannelSetupError::SlackUrl);
        }
        Ok(Slack {
            webhook_url,
            signing_secret: open(SLACK_SECRET, &config.signing_secret)?,
            users: config.users.clone(),
        })
    }
}

impl Webhook {
    fn open(config: &WebhookConfig) -> Result<Webhook, ChannelSetupError> {
        Ok(Webhook {
            url: config.url.clone(),
            secret: open(WEBHOOK_SECRET, &config.secret)?,
        })
    }
}

/// What `warden check` says of the channels, once their secrets are read
/// (the Slack URL is a secret: only its host is shown).
pub fn describe(config: &ApprovalsConfig) -> Result<Vec<String>, ChannelSetupError> {
    let mut lines = Vec::new();
    if let Some(slack) = &config.slack {
        let opened = Slack::open(slack)?;
        let host = slack_url(&opened.webhook_url)
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
            .unwrap_or_default();
        let mut users: Vec<_> = slack
            .users
            .iter()
            .map(|(id, name)| format!("{id} as {name}"))
            .collect();
        users.sort();
        lines.push(format!(
            "approvals: slack via {host}, {} user(s): {}",
            users.len(),
            users.join(", ")
        ));
    }
    if let Some(webhook) = &config.webhook {
        Webhook::open(webhook)?;
        lines.push(format!(
            "approvals: webhook to {}://{}{}",
            webhook.url.scheme_str().unwrap_or("https"),
            webhook.url.authority().map_or("", |a| a.as_str()),
            webhook.url.path()
        ));
    }
    Ok(lines)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

// === impl Channels ===

impl Channels {
    /// The channels `config` sets up (none: `None`), reading their secrets
    /// now so that a missing one stops Warden at start. Call it inside the
    /// runtime deliveries should run on.
    pub fn build(
        config: &ApprovalsConfig,
        metrics: &Metrics,
    ) -> Result<Option<Arc<Channels>>, ChannelSetupError> {
        if config.slack.is_none() && config.webhook.is_none() {
            return Ok(None);
        }
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| ChannelSetupError::NoRuntime)?;
        let tls = warden_identity::tls::client_config(None).map_err(ChannelSetupError::Client)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Some(Arc::new(Channels {
            slack: config.slack.as_ref().map(Slack::open).transpose()?,
            webhook: config.webhook.as_ref().map(Webhook::open).transpose()?,
            approvers: config
                .approvers
                .iter()
                .map(|(_, name)| name.clone())
                .collect(),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            runtime,
            notified: Mutex::new(VecDeque::new()),
            slack_seen: ReplayGuard::default(),
            webhook_seen: ReplayGuard::default(),
            notifications: metrics.approval_notifications.clone(),
            callbacks: metrics.approval_callbacks.clone(),
        })))
    }

    /// What the hold layer calls with each new approval: it returns at
    /// once, the deliveries go on in tasks of their own.
    pub fn notifier(self: &Arc<Self>) -> warden_pipeline::OnRequested {
        let channels = Arc::clone(self);
        Arc::new(move |approval: &Approval| channels.requested(approval))
    }

    fn requested(self: &Arc<Self>, approval: &Approval) {
        if !self.first_notice(&approval.id) {
            return;
        }
        for (channel, configured) in [
            (Channel::Slack, self.slack.is_some()),
            (Channel::Webhook, self.webhook.is_some()),
        ] {
            if configured {
                let channels = Arc::clone(self);
                let approval = approval.clone();
                self.runtime
                    .spawn(async move { channels.deliver(channel, &approval).await });
            }
        }
    }

    fn first_notice(&self, id: &str) -> bool {
        let mut notified = self
            .notified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if notified.iter().any(|seen| seen == id) {
            return false;
        }
        if notified.len() >= REMEMBERED_NOTICES {
            notified.pop_front();
        }
        notified.push_back(id.to_owned());
        true
    }

    fn count(family: &Family<ChannelLabels, Counter>, channel: Channel, result: &str) {
        family
            .get_or_create(&ChannelLabels {
                channel: channel.as_str().to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// Tell `channel` of `approval`, retrying what may pass later.
    async fn deliver(&self, channel: Channel, approval: &Approval) {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let tried =
                tokio::time::timeout(ATTEMPT_TIMEOUT, self.post_approval(channel, approval))
                    .await
                    .unwrap_or(Err(DeliveryError::Timeout));
            match tried {
                Ok(()) => {
                    tracing::info!(channel = channel.as_str(), approval = %approval.id, attempt, "Approvers were told of a held call.");
                    Self::count(&self.notifications, channel, "delivered");
                    return;
                }
                Err(err) if attempt < ATTEMPTS && err.retryable() => {
                    tracing::debug!(channel = channel.as_str(), approval = %approval.id, attempt, error = %err, "Telling approvers failed; trying again.");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(err) => {
                    tracing::warn!(channel = channel.as_str(), approval = %approval.id, attempts = attempt, error = %err, "Could not tell approvers of a held call; it stays held and can be decided through the API.");
                    Self::count(&self.notifications, channel, "failed");
                    return;
                }
            }
        }
    }

    async fn post_approval(
        &self,
        channel: Channel,
        approval: &Approval,
    ) -> Result<(), DeliveryError> {
        match channel {
            Channel::Slack => {
                let Some(slack) = &self.slack else {
                    return Ok(());
                };
                let url = slack_url(&slack.webhook_url)?;
                let body = slack::message(approval, None).to_string();
                self.post(url, Bytes::from(body), Vec::new()).await
            }
            Channel::Webhook => {
                let Some(webhook) = &self.webhook else {
                    return Ok(());
                };
                let secret = webhook.secret.current(WEBHOOK_SECRET)?;
                let body = webhook::requested(approval).to_string();
                // Signed at each attempt: a retry is never stale for the
                // receiver's window.
                let timestamp = now_secs();
                let signature =
                    Scheme::Warden.sign(secret.expose().as_bytes(), timestamp, body.as_bytes());
                let headers = vec![
                    (Scheme::Warden.timestamp_header(), timestamp.to_string()),
                    (Scheme::Warden.signature_header(), signature),
                ];
                self.post(webhook.url.clone(), Bytes::from(body), headers)
                    .await
            }
        }
    }

    async fn post(
        &self,
        url: Uri,
        body: Bytes,
        headers: Vec<(&'static str, String)>,
    ) -> Result<(), DeliveryError> {
        let mut request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("warden/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|_| DeliveryError::BadUrl)?;
        // The client's error can name the URL (a secret for Slack): only
        // "unreachable" is said.
        let response = self
            .client
            .request(request)
            .await
            .map_err(|_| DeliveryError::Unreachable)?;
        let status = response.status();
        // Read (and drop) the answer, so the connection can be reused.
        let _ = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status))
        }
    }

    /// Post `message` to a click's `response_url` (how Slack updates the
    /// message or tells the clicker), once, if it is on the same origin as
    /// the configured webhook URL: a signed payload is Slack's, but Warden
    /// sends nothing to a host it was not configured to trust.
    async fn follow_up(&self, response_url: Option<&str>, message: Value) {
        let (Some(slack), Some(response_url)) = (&self.slack, response_url) else {
            return;
        };
        let Ok(target) = response_url.parse::<Uri>() else {
            return;
        };
        let trusted = slack_url(&slack.webhook_url).is_ok_and(|configured| {
            configured.scheme() == target.scheme()
                && configured
                    .authority()
                    .zip(target.authority())
                    .is_some_and(|(a, b)| a.as_str().eq_ignore_ascii_case(b.as_str()))
        });
        if !trusted {
            tracing::warn!(
                channel = "slack",
                "A click's response_url is not on the configured webhook's host; Slack's message is not updated."
            );
            return;
        }
        let sent = tokio::time::timeout(
            ATTEMPT_TIMEOUT,
            self.post(target, Bytes::from(message.to_string()), Vec::new()),
        )
        .await
        .unwrap_or(Err(DeliveryError::Timeout));
        if let Err(err) = sent {
            tracing::warn!(channel = "slack", error = %err, "Could not update Slack's message after a click.");
        }
    }
}

// === inbound ===

/// Whether `path` is one of the channels' callbacks (answered by
/// `callback`, not the token-bearing approvals API).
pub(crate) fn is_callback(path: &str) -> bool {
    path == SLACK_INTERACTIONS || path == WEBHOOK_DECISIONS
}

fn reply(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn problem(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    reply(status, &json!({"error": message.to_string()}))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A refused signature: its status and metric result.
fn refusal(err: &SignatureError) -> (StatusCode, &'static str) {
    match err {
        SignatureError::MissingTimestamp { .. }
        | SignatureError::MissingSignature { .. }
        | SignatureError::BadTimestamp { .. }
        | SignatureError::Malformed { .. }
        | SignatureError::Mismatch => (StatusCode::UNAUTHORIZED, "bad_signature"),
        SignatureError::Stale { .. } => (StatusCode::UNAUTHORIZED, "stale"),
        SignatureError::Replayed => (StatusCode::CONFLICT, "replayed"),
        SignatureError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
    }
}

/// Answer a callback from Slack or the webhook.
pub(crate) async fn callback(warden: Arc<Warden>, request: Request<Incoming>) -> Response<Body> {
    let channel = if request.uri().path() == SLACK_INTERACTIONS {
        Channel::Slack
    } else {
        Channel::Webhook
    };
    let Some(channels) = warden
        .approvals
        .as_ref()
        .and_then(|a| a.channels.clone())
        .filter(|c| match channel {
            Channel::Slack => c.slack.is_some(),
            Channel::Webhook => c.webhook.is_some(),
        })
    else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("this Warden has no approvals.{} section", channel.as_str()),
        );
    };
    if request.method() != Method::POST {
        return problem(StatusCode::METHOD_NOT_ALLOWED, "POST only");
    }
    let within = match channel {
        Channel::Slack => SLACK_ANSWER_WITHIN,
        Channel::Webhook => WEBHOOK_ANSWER_WITHIN,
    };
    let deadline = tokio::time::Instant::now() + within;
    let (parts, body) = request.into_parts();
    let body =
        match tokio::time::timeout_at(deadline, Limited::new(body, MAX_CALLBACK_BODY).collect())
            .await
        {
            Ok(Ok(body)) => body.to_bytes(),
            _ => {
                Channels::count(&channels.callbacks, channel, "bad_request");
                return problem(
                    StatusCode::BAD_REQUEST,
                    "the body could not be read (at most 64 KiB, promptly)",
                );
            }
        };
    let now = now_secs();
    // Verified before anything reads the body.
    let (secret, scheme, seen) = match channel {
        Channel::Slack => (
            channels
                .slack
                .as_ref()
                .map(|s| s.signing_secret.current(SLACK_SECRET)),
            Scheme::Slack,
            &channels.slack_seen,
        ),
        Channel::Webhook => (
            channels
                .webhook
                .as_ref()
                .map(|w| w.secret.current(WEBHOOK_SECRET)),
            Scheme::Warden,
            &channels.webhook_seen,
        ),
    };
    let secret = match secret {
        Some(Ok(secret)) => secret,
        Some(Err(err)) => {
            tracing::error!(channel = channel.as_str(), error = %err, "Cannot read the channel's secret; its callback is refused.");
            Channels::count(&channels.callbacks, channel, "unavailable");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Warden cannot read this channel's secret now",
            );
        }
        None => return problem(StatusCode::NOT_FOUND, "no such channel"),
    };
    let verified = scheme
        .verify(
            secret.expose().as_bytes(),
            header(&parts.headers, scheme.timestamp_header()),
            header(&parts.headers, scheme.signature_header()),
            &body,
            now,
        )
        .and_then(|signed| seen.first_time(&signed, now));
    if let Err(err) = verified {
        let (status, result) = refusal(&err);
        tracing::warn!(channel = channel.as_str(), reason = result, error = %err, "Refused a callback; nothing was decided.");
        Channels::count(&channels.callbacks, channel, result);
        return problem(status, err);
    }
    match channel {
        Channel::Slack => slack_click(warden, channels, &body, deadline).await,
        Channel::Webhook => webhook_decision(warden, channels, &body, deadline).await,
    }
}

/// A verified click: decided as the Slack user's approver, answered by the
/// deadline whatever the store does.
async fn slack_click(
    warden: Arc<Warden>,
    channels: Arc<Channels>,
    body: &[u8],
    deadline: tokio::time::Instant,
) -> Response<Body> {
    let click = match slack::click(body) {
        Ok(click) => click,
        Err(err) => {
            Channels::count(&channels.callbacks, Channel::Slack, "bad_request");
            return problem(StatusCode::BAD_REQUEST, err);
        }
    };
    let approver = channels
        .slack
        .as_ref()
        .and_then(|s| s.users.get(&click.user))
        .cloned();
    let Some(approver) = approver else {
        tracing::warn!(channel = "slack", slack_user = %click.user, approval = %click.approval, "A Slack user not mapped to an approver clicked; nothing was decided.");
        Channels::count(&channels.callbacks, Channel::Slack, "unmapped_user");
        let message = slack::ephemeral(&format!(
            "Nothing was decided: your Slack account ({}) is not one of Warden's approvers (approvals.slack.users).",
            click.user
        ));
        let follow = message.clone();
        let task = Arc::clone(&channels);
        tokio::spawn(async move { task.follow_up(click.response_url.as_deref(), follow).await });
        return reply(StatusCode::OK, &message);
    };
    let (verdict, reason) = if click.approve {
        (Verdict::Approve, None)
    } else {
        // Slack's buttons carry no reason; the agent is told who.
        (
            Verdict::Reject,
            Some(format!("rejected in Slack by {approver}")),
        )
    };
    let (told, answer) = tokio::sync::oneshot::channel::<String>();
    let task = Arc::clone(&channels);
    // A task of its own: a decision taken after Slack's deadline is still
    // taken whole (woken, audited) and Slack's message still updated.
    tokio::spawn(async move {
        let decided = crate::admin::decide(
            &warden,
            &click.approval,
            &approver,
            Some(Channel::Slack.as_str()),
            verdict,
            reason.as_deref(),
        )
        .await;
        let (text, follow) = match &decided {
            Ok(approval) => {
                Channels::count(&task.callbacks, Channel::Slack, "decided");
                let text = slack::outcome(approval, &approver);
                let follow = if approval.status == warden_approvals::Status::Pending {
                    slack::ephemeral(&text)
                } else {
                    let mut replaced = slack::message(approval, Some(&text));
                    replaced["replace_original"] = Value::Bool(true);
                    replaced
                };
                (text, follow)
            }
            Err(err) => {
                Channels::count(&task.callbacks, Channel::Slack, "refused");
                let text = format!("Nothing was decided: {err}.");
                (text.clone(), slack::ephemeral(&text))
            }
        };
        let _ = told.send(text);
        task.follow_up(click.response_url.as_deref(), follow).await;
    });
    let text = match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(text)) => text,
        _ => "Warden is still recording your decision; the message will say when it is.".to_owned(),
    };
    reply(StatusCode::OK, &slack::ephemeral(&text))
}

/// A verified webhook decision.
async fn webhook_decision(
    warden: Arc<Warden>,
    channels: Arc<Channels>,
    body: &[u8],
    deadline: tokio::time::Instant,
) -> Response<Body> {
    let decision = match webhook::decision(body) {
        Ok(decision) => decision,
        Err(err) => {
            Channels::count(&channels.callbacks, Channel::Webhook, "bad_request");
            return problem(StatusCode::BAD_REQUEST, err);
        }
    };
    if !channels.approvers.contains(&decision.approver) {
        Channels::count(&channels.callbacks, Channel::Webhook, "refused");
        return problem(
            StatusCode::FORBIDDEN,
            format!(
                "{} is not one of the configured approvers",
                decision.approver
            ),
        );
    }
    // A task of its own: the caller hanging up does not cut a decision
    // half-way (woken but not audited).
    let task = tokio::spawn(async move {
        crate::admin::decide(
            &warden,
            &decision.approval_id,
            &decision.approver,
            Some(Channel::Webhook.as_str()),
            decision.verdict,
            decision.reason.as_deref(),
        )
        .await
    });
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(Ok(decided))) => {
            Channels::count(&channels.callbacks, Channel::Webhook, "decided");
            reply(
                StatusCode::OK,
                &json!({
                    "id": decided.id,
                    "status": decided.status.as_str(),
                    "reason": decided.reason,
                    "approvals_required": decided.call.required,
                    "votes": decided.votes.iter().map(|v| json!({
                        "approver": v.approver, "verdict": v.verdict.as_str(), "reason": v.reason, "at_ms": v.at_ms,
                    })).collect::<Vec<_>>(),
                }),
            )
        }
        Ok(Ok(Err(err))) => {
            Channels::count(&channels.callbacks, Channel::Webhook, "refused");
            problem(err.status(), err)
        }
        Ok(Err(_)) | Err(_) => {
            Channels::count(&channels.callbacks, Channel::Webhook, "unavailable");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the decision did not complete in time; look at the approval before sending it again",
            )
        }
    }
}
