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
mod inbound;
pub mod signature;
pub mod slack;
pub mod webhook;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;
use warden_approvals::Approval;
use warden_upstream::credential::{CredentialError, Source};

pub(crate) use config::{RawSlack, RawWebhook};
pub use config::{SlackConfig, WebhookConfig};
pub(crate) use inbound::{callback, is_callback};
use signature::{ReplayGuard, Scheme};

use crate::approvals::ApprovalsConfig;
use crate::credentials::{CredentialSetupError, SourceConfig};
use crate::metrics::{ChannelLabels, Metrics};

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
    /// The approvers `approvals.identity.allow` names one by one: a webhook
    /// decision may name them too (groups cannot be vouched for by name).
    identity_agents: Vec<String>,
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
            identity_agents: config
                .identity
                .as_ref()
                .map(|i| i.allow.agents.clone())
                .unwrap_or_default(),
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
