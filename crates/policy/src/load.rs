//! Loading a policy file: YAML → raw, located structs → validated [`Policy`].
//!
//! ```yaml
//! version: 1
//! # What to do with a tool no rule names: read-only-hint (default), allow, deny.
//! default: read-only-hint
//! tools:
//!   search_customers: read
//!   create_note: write
//!   send_invoice: deny
//! # What the audit trail must not keep as written (see `crate::redact`).
//! redact:
//!   detectors: [email, api-key]
//!   tools:
//!     create_note:
//!       arguments:
//!         /body: mask
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::located::{self, Collector, Diagnostic, Diagnostics, Spanned};
use crate::model::{DefaultRule, Policy, Tier};
use crate::redact::RawRedaction;

/// The only policy file version this build reads.
pub const POLICY_VERSION: u32 = 1;

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy file {path}")]
    Io {
        /// The file.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid policy; every problem is listed.
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
}

/// A policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    /// File format version; must be 1.
    version: Spanned<u32>,
    /// What to do with a tool no rule names.
    #[serde(default)]
    default: Option<Spanned<String>>,
    /// Per-tool tiers: `read`, `write` or `deny`.
    #[serde(default)]
    tools: HashMap<Spanned<String>, Spanned<String>>,
    /// What the audit trail redacts: detectors and per-tool path rules.
    #[serde(default)]
    redact: Option<RawRedaction>,
}

impl Policy {
    /// Load and validate a policy file.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Policy::from_yaml_str(&text, &path.display().to_string())
    }

    /// Parse and validate policy text; `origin` names it in errors.
    pub fn from_yaml_str(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = located::parse(text, origin)?;
        Ok(raw.validate(origin)?)
    }
}

impl RawPolicy {
    fn validate(self, origin: &str) -> Result<Policy, Diagnostics> {
        let mut errors = Collector::default();
        if self.version.value != POLICY_VERSION {
            errors.push(Diagnostic::at(
                &self.version,
                format!(
                    "unsupported policy version {} (this Warden reads version {POLICY_VERSION})",
                    self.version.value
                ),
            ));
        }
        let default = match &self.default {
            None => DefaultRule::default(),
            Some(name) => DefaultRule::parse(&name.value).unwrap_or_else(|| {
                errors.push(Diagnostic::at(
                    name,
                    format!(
                        "unknown default \"{}\" (expected read-only-hint, allow or deny)",
                        name.value
                    ),
                ));
                DefaultRule::default()
            }),
        };
        let mut tools = HashMap::with_capacity(self.tools.len());
        for (name, tier) in &self.tools {
            if name.value.trim().is_empty() {
                errors.push(Diagnostic::at(name, "a tool name must not be empty"));
            }
            match Tier::parse(&tier.value) {
                Some(parsed) => {
                    tools.insert(name.value.clone(), parsed);
                }
                None => errors.push(Diagnostic::at(
                    tier,
                    format!(
                        "unknown tier \"{}\" for tool \"{}\" (expected read, write or deny)",
                        tier.value, name.value
                    ),
                )),
            }
        }
        let redaction = self
            .redact
            .map(|raw| raw.validate(&mut errors))
            .unwrap_or_default();
        errors.finish(
            origin,
            Policy {
                default,
                tools,
                redaction,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostics(text: &str) -> Diagnostics {
        match Policy::from_yaml_str(text, "p.yaml") {
            Err(PolicyError::Invalid(d)) => d,
            other => panic!("expected diagnostics, got {other:?}"),
        }
    }

    #[test]
    fn loads_rules_and_default() {
        let policy = Policy::from_yaml_str(
            "version: 1\ndefault: deny\ntools:\n  search: read\n  note: write\n  pay: deny\n",
            "p.yaml",
        )
        .expect("valid");
        assert_eq!(policy.default_rule(), DefaultRule::Deny);
        assert_eq!(policy.rule("search"), Some(Tier::Read));
        assert_eq!(policy.rule("note"), Some(Tier::Write));
        assert_eq!(policy.rule("pay"), Some(Tier::Deny));
        assert_eq!(policy.rule("other"), None);
    }

    #[test]
    fn reports_every_semantic_error_with_its_position() {
        let d =
            diagnostics("version: 2\ndefault: maybe\ntools:\n  a: wirte\n  b: read\n  c: allow\n");
        let found: Vec<_> = d.items.iter().map(|i| (i.line, i.column)).collect();
        assert_eq!(found, vec![(1, 10), (2, 10), (4, 6), (6, 6)], "{d}");
        assert!(d.items[0].message.contains("unsupported policy version 2"));
        assert!(d.items[1].message.contains("unknown default \"maybe\""));
        assert!(
            d.items[2]
                .message
                .contains("unknown tier \"wirte\" for tool \"a\"")
        );
        assert!(
            d.to_string().lines().all(|l| l.starts_with("p.yaml:")),
            "{d}"
        );
    }

    #[test]
    fn unknown_keys_and_duplicate_tools_are_errors_with_positions() {
        let d = diagnostics("version: 1\ntool:\n  a: read\n");
        assert_eq!(d.items[0].line, 2, "{d}");
        assert!(d.items[0].message.contains("tool"), "{d}");
        let d = diagnostics("version: 1\ntools:\n  a: read\n  a: deny\n");
        assert_eq!(d.items[0].line, 4, "{d}");
        assert_eq!(
            d.items[0].message,
            "\"a\" appears twice here; each key may appear once (merge the two entries)",
            "{d}"
        );
        let d = diagnostics("version: 1\ntools:\n  - a\n");
        assert!(
            d.items[0].message.starts_with("expected a mapping here"),
            "{d}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let d = diagnostics("version: 1\ntools: [unclosed\n");
        assert!(d.items[0].line >= 2, "{d}");
    }

    #[test]
    fn a_missing_file_says_which() {
        let err = Policy::from_file(Path::new("/nonexistent/p.yaml")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/p.yaml"), "{err}");
    }
}
