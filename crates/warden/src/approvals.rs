//! The `approvals` section: the queue held calls wait in, and the people
//! who may decide them.
//!
//! ```yaml
//! approvals:
//!   store: ./approvals.db        # SQLite file (default: approvals.db beside this file)
//!   hold_budget: 45s             # a request waits this long, then answers "pending"
//!   progress_every: 5s           # a call with a progress token hears this often that it waits
//!   approvers:                   # tokens for the admin API (SHA-256, as for API keys)
//!     - name: grace
//!       sha256: 3f1c9a7e0b52d84e6a19c0f7d23b8e45a6d1f09c7b2e48a53d6f1c08e9a7b241
//!   slack:                       # optional: approvers are asked in Slack (see `channels`)
//!     webhook_url: {env: SLACK_WEBHOOK_URL}
//!     signing_secret: {file: /var/run/secrets/slack/signing-secret}
//!     users: {U012ABCDEF: grace}
//!   webhook:                     # optional: signed JSON to a URL, signed decisions back
//!     url: https://hooks.example.com/warden
//!     secret: {env: WARDEN_WEBHOOK_SECRET}
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use warden_policy::located::{self, Collector as Errors, Diagnostic, Spanned};

/// The validated `approvals` section.
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// The SQLite queue.
    pub store: PathBuf,
    /// How long a held request waits before it answers "pending".
    pub hold_budget: Duration,
    /// Approvers: a token's SHA-256 and the approver's name.
    pub approvers: Vec<([u8; 32], String)>,
    /// How often a held call with a progress token is told it still waits.
    pub progress_every: Duration,
    /// Approvers are asked in Slack.
    pub slack: Option<crate::channels::SlackConfig>,
    /// Approvers' systems are told by a signed webhook.
    pub webhook: Option<crate::channels::WebhookConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApprovals {
    store: Option<Spanned<String>>,
    hold_budget: Option<Spanned<String>>,
    progress_every: Option<Spanned<String>>,
    #[serde(default)]
    approvers: Vec<RawApprover>,
    slack: Option<Spanned<crate::channels::RawSlack>>,
    webhook: Option<Spanned<crate::channels::RawWebhook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApprover {
    name: Spanned<String>,
    sha256: Spanned<String>,
}

impl RawApprovals {
    /// `has_admin`: whether an admin listener is configured (Slack's
    /// buttons call it back).
    pub(crate) fn validate(
        &self,
        base: &Path,
        has_admin: bool,
        errors: &mut Errors,
    ) -> ApprovalsConfig {
        let hold_budget = self
            .hold_budget
            .as_ref()
            .and_then(|b| located::duration(b, errors))
            .unwrap_or(Duration::from_secs(45));
        let mut approvers = Vec::new();
        for approver in &self.approvers {
            if approver.name.value.trim().is_empty() {
                errors.push(Diagnostic::at(&approver.name, "an approver needs a name"));
            }
            match warden_identity::api_key::parse_digest(&approver.sha256.value) {
                Some(digest) => approvers.push((digest, approver.name.value.clone())),
                None => errors.push(Diagnostic::at(
                    &approver.sha256,
                    "sha256 must be 64 hex digits: the SHA-256 of the approver's token (`warden auth new-key` makes one)",
                )),
            }
        }
        let progress_every = self
            .progress_every
            .as_ref()
            .and_then(|b| located::duration(b, errors))
            .unwrap_or(Duration::from_secs(5))
            .max(Duration::from_millis(50));
        let names: Vec<&str> = approvers.iter().map(|(_, name)| name.as_str()).collect();
        let slack = self
            .slack
            .as_ref()
            .and_then(|s| crate::channels::RawSlack::validate(s, &names, has_admin, base, errors));
        let webhook = self
            .webhook
            .as_ref()
            .and_then(|w| crate::channels::RawWebhook::validate(w, base, errors));
        ApprovalsConfig {
            progress_every,
            slack,
            webhook,
            store: self
                .store
                .as_ref()
                .map_or_else(|| base.join("approvals.db"), |s| base.join(&s.value)),
            hold_budget,
            approvers,
        }
    }
}

/// The running queue and who may decide.
pub struct Approvals {
    /// The queue.
    pub store: warden_approvals::SqliteStore,
    /// Wakes the requests waiting on an approval decided here.
    pub wakeups: Arc<warden_pipeline::Wakeups>,
    /// The approvers' tokens, by name.
    pub approvers: warden_identity::ApiKeys,
    /// How long a held request waits.
    pub hold_budget: Duration,
    /// How often a held call with a progress token is told it still waits.
    pub progress_every: Duration,
    /// Slack and the webhook, when configured: approvers told of new
    /// approvals, and their signed decisions taken.
    pub channels: Option<Arc<crate::channels::Channels>>,
}

impl ApprovalsConfig {
    /// Open the queue.
    pub async fn open(&self) -> Result<Approvals, warden_approvals::ApprovalError> {
        let store = warden_approvals::SqliteStore::open(&self.store).await?;
        let approvers = warden_identity::ApiKeys::new(
            self.approvers
                .iter()
                .map(|(digest, name)| {
                    warden_identity::ApiKey::new(
                        *digest,
                        warden_identity::Principal {
                            agent: name.as_str().into(),
                            on_behalf_of: None,
                            groups: Vec::new(),
                            method: warden_identity::AuthMethod::ApiKey,
                        },
                    )
                })
                .collect(),
        );
        Ok(Approvals {
            store,
            wakeups: Arc::default(),
            approvers,
            hold_budget: self.hold_budget,
            progress_every: self.progress_every,
            channels: None,
        })
    }
}
