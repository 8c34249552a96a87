//! The channels' config, raw → validated, under `approvals:`.
//!
//! ```yaml
//! approvals:
//!   slack:
//!     webhook_url: {env: SLACK_WEBHOOK_URL}      # the incoming webhook URL is itself a secret
//!     signing_secret: {file: /var/run/secrets/slack/signing-secret}
//!     users:                                     # Slack member id → configured approver
//!       U012ABCDEF: grace
//!   webhook:
//!     url: https://hooks.example.com/warden
//!     secret: {env: WARDEN_WEBHOOK_SECRET}
//! ```
//!
//! Secrets are read as credentials are (`env`, `file`, `inline`), at start;
//! files again whenever they change.

use std::collections::HashMap;
use std::path::Path;

use http::Uri;
use serde::Deserialize;
use warden_policy::located::{Collector as Errors, Diagnostic, Spanned};

use crate::credentials::{RawSecret, SourceConfig};

/// The validated `approvals.slack`.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// Where the incoming webhook URL comes from (it is a secret: whoever
    /// has it can post to the channel).
    pub webhook_url: SourceConfig,
    /// Where the app's signing secret comes from.
    pub signing_secret: SourceConfig,
    /// Slack member id → the configured approver it decides as.
    pub users: HashMap<String, String>,
}

/// The validated `approvals.webhook`.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where the signed JSON is posted.
    pub url: Uri,
    /// Where the HMAC secret comes from (both ways).
    pub secret: SourceConfig,
}

/// `approvals.slack` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlack {
    webhook_url: Spanned<RawSecret>,
    signing_secret: Spanned<RawSecret>,
    #[serde(default)]
    users: HashMap<Spanned<String>, Spanned<String>>,
}

/// `approvals.webhook` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWebhook {
    url: Spanned<String>,
    secret: Spanned<RawSecret>,
}

/// Whether `uri` may carry a secret or a signed payload: https, or http to
/// loopback (tests, a sidecar relay).
pub(crate) fn acceptable_url(uri: &Uri) -> bool {
    match uri.scheme_str() {
        Some("https") => uri.host().is_some_and(|h| !h.is_empty()),
        Some("http") => crate::auth::is_loopback(uri),
        _ => false,
    }
}

// === impl RawSlack ===

impl RawSlack {
    /// Validate against the configured approvers' `names` (any name goes
    /// with `identity_approvers`: approvers from an identity provider are
    /// not listed); Slack's buttons call the admin listener back, so one
    /// must be configured.
    pub(crate) fn validate(
        raw: &Spanned<RawSlack>,
        names: &[&str],
        identity_approvers: bool,
        has_admin: bool,
        base: &Path,
        errors: &mut Errors,
    ) -> Option<SlackConfig> {
        if !has_admin {
            errors.push(Diagnostic::at(
                raw,
                "Slack's buttons call Warden back on the admin listener: set admin: (and admin_tls:, or a TLS proxy in front)",
            ));
        }
        let slack = &raw.value;
        if slack.users.is_empty() {
            errors.push(Diagnostic::at(
                raw,
                "slack needs users: each Slack member id that may decide, and the approver it decides as (U012ABCDEF: grace)",
            ));
        }
        let mut users: Vec<_> = slack.users.iter().collect();
        users.sort_by(|a, b| a.0.value.cmp(&b.0.value));
        let mut mapped = HashMap::new();
        for (id, name) in users {
            if id.value.is_empty()
                || !id
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                errors.push(Diagnostic::at(
                    id,
                    format!(
                        "{:?} is not a Slack member id: they look like U012ABCDEF (a profile's \u{22ef} menu, \"Copy member ID\")",
                        id.value
                    ),
                ));
            }
            if name.value.trim().is_empty() {
                errors.push(Diagnostic::at(
                    name,
                    "a Slack user decides as a named approver",
                ));
            } else if !identity_approvers && !names.contains(&name.value.as_str()) {
                errors.push(Diagnostic::at(
                    name,
                    format!(
                        "{} is not one of approvals.approvers: a Slack user decides as a configured approver",
                        name.value
                    ),
                ));
            }
            mapped.insert(id.value.clone(), name.value.clone());
        }
        let webhook_url = RawSecret::validate(&slack.webhook_url, base, errors);
        let signing_secret = RawSecret::validate(&slack.signing_secret, base, errors);
        Some(SlackConfig {
            webhook_url: webhook_url?,
            signing_secret: signing_secret?,
            users: mapped,
        })
    }
}

// === impl RawWebhook ===

impl RawWebhook {
    /// Validate: an https URL (http on loopback only) and a secret.
    pub(crate) fn validate(
        raw: &Spanned<RawWebhook>,
        base: &Path,
        errors: &mut Errors,
    ) -> Option<WebhookConfig> {
        let webhook = &raw.value;
        let url = match webhook.url.value.parse::<Uri>() {
            Ok(uri) if acceptable_url(&uri) => Some(uri),
            _ => {
                errors.push(Diagnostic::at(
                    &webhook.url,
                    "url must be an https URL (http only on loopback, for tests): approvals' details go in the request",
                ));
                None
            }
        };
        let secret = RawSecret::validate(&webhook.secret, base, errors);
        Some(WebhookConfig {
            url: url?,
            secret: secret?,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    /// Load a config with this `approvals` tail; each test its own `name`
    /// (its own folder: tests run at once).
    fn load(name: &str, approvals: &str, admin: bool) -> Result<Config, ConfigError> {
        let dir =
            std::env::temp_dir().join(format!("warden-channels-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("p.yaml"), "version: 1\n").expect("policy");
        let text = format!(
            "version: 1\nlisten: 127.0.0.1:0\n{}routes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:3001/mcp\n    policy: p.yaml\napprovals:\n  approvers:\n    - name: grace\n      sha256: 3f1c9a7e0b52d84e6a19c0f7d23b8e45a6d1f09c7b2e48a53d6f1c08e9a7b241\n{approvals}",
            if admin { "admin: 127.0.0.1:9090\n" } else { "" }
        );
        Config::from_yaml_str(&text, "w.yaml", &dir)
    }

    fn errors(name: &str, approvals: &str, admin: bool) -> Vec<(u64, String)> {
        match load(name, approvals, admin) {
            Err(ConfigError::Invalid(d)) => {
                d.items.into_iter().map(|i| (i.line, i.message)).collect()
            }
            Err(other) => panic!("expected diagnostics, got {other}"),
            Ok(_) => panic!("the config loaded"),
        }
    }

    #[test]
    fn slack_and_webhook_load() {
        let config = load(
            "ok",
            "  slack:\n    webhook_url: {env: SLACK_URL}\n    signing_secret: {file: slack.secret}\n    users: {U012ABCDEF: grace, W0ABC: grace}\n  webhook:\n    url: https://hooks.example.com/warden\n    secret: {inline: s3cret}\n",
            true,
        )
        .expect("loads");
        let approvals = config.approvals.expect("approvals");
        let slack = approvals.slack.expect("slack");
        assert_eq!(slack.users.len(), 2);
        assert_eq!(slack.users["U012ABCDEF"], "grace");
        assert!(format!("{:?}", slack.webhook_url).contains("SLACK_URL"));
        let webhook = approvals.webhook.expect("webhook");
        assert_eq!(webhook.url.host(), Some("hooks.example.com"));
        assert!(!format!("{webhook:?}").contains("s3cret"));
    }

    #[test]
    fn bad_channels_are_reported_with_their_lines() {
        let found = errors(
            "bad",
            "  slack:\n    webhook_url: {env: SLACK_URL, inline: x}\n    signing_secret: {}\n    users: {u012: grace, U013: nobody}\n  webhook:\n    url: http://hooks.example.com/warden\n    secret: {env: \"\"}\n",
            false,
        );
        let messages: Vec<_> = found.iter().map(|(_, m)| m.as_str()).collect();
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("Slack's buttons call Warden back")),
            "{messages:?}"
        );
        assert!(
            found.contains(&(
                13,
                "a secret needs exactly one of env, file and inline, not empty".into()
            )),
            "{found:?}"
        );
        assert!(
            found.contains(&(
                14,
                "a secret needs exactly one of env, file and inline, not empty".into()
            )),
            "{found:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("\"u012\" is not a Slack member id")),
            "{messages:?}"
        );
        assert!(messages.contains(&"nobody is not one of approvals.approvers: a Slack user decides as a configured approver"), "{messages:?}");
        assert!(found.contains(&(
            17,
            "url must be an https URL (http only on loopback, for tests): approvals' details go in the request".into()
        )), "{found:?}");
        assert!(
            found.contains(&(
                18,
                "a secret needs exactly one of env, file and inline, not empty".into()
            )),
            "{found:?}"
        );
        let none = errors(
            "no-users",
            "  slack:\n    webhook_url: {env: A}\n    signing_secret: {env: B}\n",
            true,
        );
        assert!(none[0].1.starts_with("slack needs users"), "{none:?}");
        // An unknown key is an error, as everywhere.
        let unknown = load(
            "unknown",
            "  webhook:\n    url: https://h.example.com/\n    secret: {env: A}\n    retries: 3\n",
            true,
        );
        assert!(unknown.is_err());
    }
}
