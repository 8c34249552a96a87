//! The `approvals` section: the queue held calls wait in, and the people
//! who may decide them.
//!
//! ```yaml
//! approvals:
//!   store: ./approvals.db        # SQLite file (default: approvals.db beside this file),
//!                                # or postgres://user@db.internal:5432/warden for replicas
//!   schema: warden               # PostgreSQL only: the schema holding the queue (default warden)
//!   hold_budget: 45s             # a request waits this long, then answers "pending"
//!   progress_every: 5s           # a call with a progress token hears this often that it waits
//!   approvers:                   # tokens for the admin API (SHA-256, as for API keys)
//!     - name: grace
//!       sha256: 3f1c9a7e0b52d84e6a19c0f7d23b8e45a6d1f09c7b2e48a53d6f1c08e9a7b241
//!   identity:                    # optional: approvers from the identity layer
//!     methods:                   # as a route's auth.methods (jwt, mtls, api_key)
//!       - jwt: {issuer: https://auth.example.com, audience: https://warden-admin.example.com,
//!               jwks_url: https://auth.example.com/jwks.json, claims: {agent: email, groups: groups}}
//!     allow: {groups: [payments-approvers]}   # who among them approves at all
//!   request_state_key: {file: /var/run/secrets/warden/request-state-key}
//!                                # optional: replicas share the key sealing 2026-07-28
//!                                # confirmations (spent once across them, in the store)
//!   slack:                       # optional: approvers are asked in Slack (see `channels`)
//!     webhook_url: {env: SLACK_WEBHOOK_URL}
//!     signing_secret: {file: /var/run/secrets/slack/signing-secret}
//!     users: {U012ABCDEF: grace}
//!   webhook:                     # optional: signed JSON to a URL, signed decisions back
//!     url: https://hooks.example.com/warden
//!     secret: {env: WARDEN_WEBHOOK_SECRET}
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use warden_approvals::{ApprovalError, Store, StoreLocation};
use warden_policy::located::{self, Collector as Errors, Diagnostic, Spanned};

/// The schema a PostgreSQL queue lives in when the config names none.
pub const DEFAULT_SCHEMA: &str = "warden";

/// The validated `approvals` section.
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// Where the queue is: a SQLite file, or a PostgreSQL database and
    /// schema (shown with its password masked).
    pub store: StoreLocation,
    /// How long a held request waits before it answers "pending".
    pub hold_budget: Duration,
    /// Approvers: a token's SHA-256 and the approver's name.
    pub approvers: Vec<([u8; 32], String)>,
    /// Approvers from the identity layer (JWT, mTLS), when configured.
    pub identity: Option<crate::auth::ApproverIdentityConfig>,
    /// The secret replicas share to seal 2026-07-28 request states (a
    /// random key per process without it).
    pub request_state_key: Option<crate::credentials::SourceConfig>,
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
    /// A SQLite file, or a `postgres://` / `postgresql://` URL.
    store: Option<Spanned<String>>,
    /// The PostgreSQL schema (PostgreSQL only).
    schema: Option<Spanned<String>>,
    hold_budget: Option<Spanned<String>>,
    progress_every: Option<Spanned<String>>,
    #[serde(default)]
    approvers: Vec<RawApprover>,
    identity: Option<Spanned<crate::auth::RawApproverIdentity>>,
    request_state_key: Option<Spanned<crate::credentials::RawSecret>>,
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
    /// Whether approvers may be known by a client certificate (the admin
    /// listener may then take `client_auth: optional`).
    pub(crate) fn approvers_by_certificate(&self) -> bool {
        self.identity.as_ref().is_some_and(|i| i.value.has_mtls())
    }

    /// `has_admin`: whether an admin listener is configured (Slack's
    /// buttons call it back); `admin_client_ca`: whether it verifies
    /// client certificates (approvers' mTLS).
    pub(crate) fn validate(
        &self,
        base: &Path,
        has_admin: bool,
        admin_client_ca: bool,
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
        let identity = self
            .identity
            .as_ref()
            .map(|i| i.value.validate(i, base, admin_client_ca, errors));
        let names: Vec<&str> = approvers.iter().map(|(_, name)| name.as_str()).collect();
        // With approvers from an identity provider, Slack users may be
        // mapped to names only it knows.
        let slack = self.slack.as_ref().and_then(|s| {
            crate::channels::RawSlack::validate(
                s,
                &names,
                identity.is_some(),
                has_admin,
                base,
                errors,
            )
        });
        let webhook = self
            .webhook
            .as_ref()
            .and_then(|w| crate::channels::RawWebhook::validate(w, base, errors));
        ApprovalsConfig {
            progress_every,
            slack,
            webhook,
            store: self.location(base, errors),
            hold_budget,
            approvers,
            identity,
            request_state_key: self
                .request_state_key
                .as_ref()
                .and_then(|k| crate::credentials::RawSecret::validate(k, base, errors)),
        }
    }

    fn location(&self, base: &Path, errors: &mut Errors) -> StoreLocation {
        let schema = match &self.schema {
            Some(schema) if !warden_approvals::valid_schema(&schema.value) => {
                errors.push(Diagnostic::at(
                    schema,
                    format!(
                        "schema {:?} must be a plain lower-case name: a letter or _, then letters, digits or _, at most 63 in all, not starting with pg_",
                        schema.value
                    ),
                ));
                DEFAULT_SCHEMA
            }
            Some(schema) => schema.value.as_str(),
            None => DEFAULT_SCHEMA,
        };
        match &self.store {
            Some(store) if StoreLocation::is_postgres_url(&store.value) => {
                match StoreLocation::postgres(store.value.trim(), schema) {
                    Ok(location) => location,
                    Err(err) => {
                        // The error masks the URL's password.
                        errors.push(Diagnostic::at(store, err.to_string()));
                        StoreLocation::Postgres {
                            url: String::new(),
                            schema: schema.to_owned(),
                        }
                    }
                }
            }
            store => {
                if let Some(schema) = &self.schema {
                    errors.push(Diagnostic::at(
                        schema,
                        "schema applies to a PostgreSQL store only (store: postgres://…)",
                    ));
                }
                StoreLocation::Sqlite(
                    store
                        .as_ref()
                        .map_or_else(|| base.join("approvals.db"), |s| base.join(&s.value)),
                )
            }
        }
    }
}

/// The running queue and who may decide.
pub struct Approvals {
    /// The queue.
    pub store: Store,
    /// Wakes the requests waiting on an approval decided here.
    pub wakeups: Arc<warden_pipeline::Wakeups>,
    /// The approvers' tokens, by name.
    pub approvers: warden_identity::ApiKeys,
    /// The names the tokens stand for: no identity provider's principal
    /// decides under one of them.
    pub token_names: Vec<String>,
    /// How long a held request waits.
    pub hold_budget: Duration,
    /// How often a held call with a progress token is told it still waits.
    pub progress_every: Duration,
    /// Slack and the webhook, when configured: approvers told of new
    /// approvals, and their signed decisions taken.
    pub channels: Option<Arc<crate::channels::Channels>>,
    /// Approvers from the identity layer, when configured: how they prove
    /// who they are, and who among them approves (set by [`crate::build`]
    /// from [`ApprovalsConfig::identity`]).
    pub identity: Option<(
        warden_identity::Authenticator,
        crate::auth::ApproverIdentityConfig,
    )>,
    /// Hands the decisions other replicas take to `wakeups` (PostgreSQL
    /// only); stopped with the queue.
    _listening: Option<Listening>,
}

/// The task forwarding another replica's decisions; aborted when dropped.
struct Listening(tokio::task::JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Who decides a held call: the name votes record, and the groups the
/// identity layer puts them in (for rules naming `group:NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// As configured (a token's approver, a Slack mapping) or as the
    /// identity provider names them (the agent claim, the certificate).
    pub name: Arc<str>,
    /// Their groups (none for configured tokens and channels).
    pub groups: Vec<Arc<str>>,
}

impl Approver {
    /// An approver known by name only.
    pub fn named(name: &str) -> Approver {
        Approver {
            name: name.into(),
            groups: Vec::new(),
        }
    }

    /// Whether the tool's `hold` lets this approver decide its calls.
    pub fn may_decide(&self, hold: &warden_policy::Hold) -> bool {
        hold.admits(&self.name, self.groups.iter().map(|g| &**g))
    }
}

/// Why nobody was recognised as an approver. Says nothing of the
/// credential itself.
#[derive(Debug, thiserror::Error)]
pub enum ApproverRefusal {
    /// No credential at all.
    #[error(
        "send an approver's token (Authorization: Bearer <token>), or a client certificate an approver is known by"
    )]
    Missing,
    /// A token that is no approver's and that no identity method accepts.
    #[error("this is not an approver's credential")]
    Unknown,
    /// The identity layer refused the credential (expired, wrong audience, …).
    #[error("the credential was refused: {0}")]
    Refused(warden_identity::AuthError),
    /// The identity layer names them as a configured token approver:
    /// whoever controls that name at the identity provider must not vote
    /// as the token's holder.
    #[error(
        "{name} is the name of a configured approver token (approvals.approvers); an identity provider's principal cannot decide under it"
    )]
    TokenName {
        /// The name.
        name: String,
    },
    /// The identity layer knows them, but `approvals.identity.allow` does
    /// not name them or their groups.
    #[error(
        "{name} is not an approver (approvals.identity.allow names neither them nor a group of theirs)"
    )]
    NotAllowed {
        /// Who they are.
        name: String,
    },
}

impl ApproverRefusal {
    /// Whether trying again with another credential may help (401), or
    /// the caller is known and simply may not (403).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            ApproverRefusal::NotAllowed { .. } | ApproverRefusal::TokenName { .. }
        )
    }
}

impl Approvals {
    /// The approver `token` belongs to, if any: the one check every way in
    /// (the API's bearer token, the page's login) uses. Compared with every
    /// configured SHA-256 in constant time; surrounding white space (a
    /// pasted newline) is not part of a token.
    pub fn approver(&self, token: &str) -> Option<Approver> {
        self.approvers
            .check(token.trim())
            .map(|principal| Approver::named(&principal.agent))
    }

    /// Who presents a bearer `token` and/or a verified client
    /// `certificate`: a configured approver's token first, then the
    /// identity layer's methods (`approvals.identity`), whose principal
    /// must be one `allow` names.
    pub async fn identify(
        &self,
        token: Option<&str>,
        certificate: Option<&warden_identity::ClientCertificate>,
    ) -> Result<Approver, ApproverRefusal> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        if token.is_some_and(|t| t.len() > warden_identity::MAX_CREDENTIAL) {
            return Err(ApproverRefusal::Refused(
                warden_identity::AuthError::TooLarge {
                    max: warden_identity::MAX_CREDENTIAL,
                },
            ));
        }
        if let Some(approver) = token.and_then(|t| self.approver(t)) {
            return Ok(approver);
        }
        let Some((authenticator, config)) = &self.identity else {
            return Err(if token.is_some() {
                ApproverRefusal::Unknown
            } else {
                ApproverRefusal::Missing
            });
        };
        let principal = match authenticator
            .verify_credential(token, certificate, std::time::SystemTime::now())
            .await
        {
            Ok(principal) => principal,
            Err(warden_identity::AuthError::Missing) => return Err(ApproverRefusal::Missing),
            Err(warden_identity::AuthError::UnknownKey) => return Err(ApproverRefusal::Unknown),
            Err(err) => return Err(ApproverRefusal::Refused(err)),
        };
        if !config.allows(&principal) {
            return Err(ApproverRefusal::NotAllowed {
                name: principal.agent.to_string(),
            });
        }
        if self
            .token_names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&principal.agent))
        {
            return Err(ApproverRefusal::TokenName {
                name: principal.agent.to_string(),
            });
        }
        Ok(Approver {
            name: principal.agent.clone(),
            groups: principal.groups.clone(),
        })
    }
}

impl ApprovalsConfig {
    /// Open the queue (on the runtime Warden runs on: with PostgreSQL, a
    /// task there wakes the requests held here when another replica
    /// decides their approval).
    pub async fn open(&self) -> Result<Approvals, ApprovalError> {
        let store = Store::open(&self.store).await?;
        tracing::info!(store = %self.store, "Approval queue open.");
        let wakeups: Arc<warden_pipeline::Wakeups> = Arc::default();
        // A decision taken on another replica wakes the request held here
        // at once; without it (SQLite, or LISTEN refused) the request's own
        // polling sees it within 500 ms.
        let listening = match store.decisions().await {
            Ok(Some(mut decisions)) => {
                let wakeups = wakeups.clone();
                Some(Listening(tokio::spawn(async move {
                    while let Some(id) = decisions.next().await {
                        tracing::debug!(approval = %id, "Decision notified by the approval store; waking the calls held on it here.");
                        wakeups.wake(&id);
                    }
                })))
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(store = %self.store, error = %err, "Cannot listen for decisions taken on other replicas; held calls see them by polling, within 500 ms.");
                None
            }
        };
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
            token_names: self
                .approvers
                .iter()
                .map(|(_, name)| name.clone())
                .collect(),
            identity: None,
            store,
            wakeups,
            approvers,
            hold_budget: self.hold_budget,
            progress_every: self.progress_every,
            _listening: listening,
            channels: None,
        })
    }
}
