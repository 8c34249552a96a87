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
//!   # Only these callers (by agent name or group) get the tier; others are refused.
//!   delete_note:
//!     tier: write
//!     callers: { agents: [notes-bot], groups: [editors] }
//!     # The route credential (Warden's config) the tool's calls carry upstream.
//!     credential: notes-writer
//!     # Who answers `dryRun: true`: gateway (Warden previews, default) or upstream.
//!     dry_run: upstream
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
use crate::model::{
    Callers, ConfirmFallback, DefaultRule, DryRunMode, GROUP_PREFIX, Hold, Policy, Rule,
    SessionLimits, Tier,
};
use crate::redact::RawRedaction;
use warden_limits::Cap;

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
    /// Per-tool rules: a tier (`read`, `write` or `deny`), or a tier and
    /// the callers it is for.
    #[serde(default)]
    tools: HashMap<Spanned<String>, Spanned<RawRule>>,
    /// What the audit trail redacts: detectors and per-tool path rules.
    #[serde(default)]
    redact: Option<RawRedaction>,
    /// Call caps per agent session.
    #[serde(default)]
    limits: Option<RawLimits>,
}

/// The policy's `limits` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    /// Calls of one tool in one agent session (default 30).
    #[serde(default)]
    tool_calls: Option<Spanned<RawCap>>,
    /// Calls of every tool together in one agent session (default 100).
    #[serde(default)]
    session_calls: Option<Spanned<RawCap>>,
}

/// A cap as written: a number, or `unlimited`.
#[derive(Debug)]
enum RawCap {
    Number(u64),
    Word(String),
}

impl<'de> Deserialize<'de> for RawCap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawCap, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawCap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of calls, or unlimited")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<RawCap, E> {
                Ok(RawCap::Number(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<RawCap, E> {
                Ok(RawCap::Number(u64::try_from(n).unwrap_or(0)))
            }
            fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<RawCap, E> {
                Ok(RawCap::Word(word.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A written cap, checked: at least 1 (0 would refuse every call: deny the
/// tool instead), or `unlimited`.
fn cap_of(raw: &Spanned<RawCap>, errors: &mut Collector) -> Option<Cap> {
    match &raw.value {
        RawCap::Number(n) if *n >= 1 => Some(Cap::AtMost(u32::try_from(*n).unwrap_or(u32::MAX))),
        RawCap::Word(word) if word == "unlimited" => Some(Cap::Unlimited),
        _ => {
            errors.push(Diagnostic::at(
                raw,
                "a call cap is a number of calls, at least 1, or unlimited (to refuse a tool, give it the deny tier)",
            ));
            None
        }
    }
}

/// One tool's rule as written: a tier alone, or a tier with its callers.
/// (Read by hand, not `untagged`: that would buffer the value and lose
/// the line and column of everything inside it.)
#[derive(Debug)]
enum RawRule {
    Tier(String),
    Scoped(Box<RawScopedRule>),
}

impl<'de> Deserialize<'de> for RawRule {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<RawRule, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawRule;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a tier (read, write, approve or deny) or a mapping with tier and its settings",
                )
            }
            fn visit_str<E: serde::de::Error>(self, tier: &str) -> Result<RawRule, E> {
                Ok(RawRule::Tier(tier.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawRule, A::Error> {
                RawScopedRule::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|scoped| RawRule::Scoped(Box::new(scoped)))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopedRule {
    /// `read`, `write`, `approve` or `deny`.
    tier: Spanned<String>,
    /// Who gets the tier.
    #[serde(default)]
    callers: Option<Spanned<RawCallers>>,
    /// The route credential the tool's calls carry.
    #[serde(default)]
    credential: Option<Spanned<String>>,
    /// `gateway` (default: Warden previews) or `upstream` (the tool does).
    #[serde(default)]
    dry_run: Option<Spanned<String>>,
    /// `approve` tier: how long a held call waits, e.g. `10m`.
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    /// `approve` tier: approvals needed.
    #[serde(default)]
    approvals: Option<Spanned<u32>>,
    /// `approve` tier: who may approve (approver names, `group:NAME`).
    #[serde(default)]
    approvers: Vec<Spanned<String>>,
    /// `approve` tier: whether the user the call acts for may approve it.
    #[serde(default)]
    allow_own: bool,
    /// `confirm` tier: `deny` (default) or `approve`, when the user
    /// cannot be asked.
    #[serde(default)]
    fallback: Option<Spanned<String>>,
    /// Calls of this tool in one agent session (instead of
    /// `limits.tool_calls`).
    #[serde(default)]
    calls: Option<Spanned<RawCap>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCallers {
    /// Agent names.
    #[serde(default)]
    agents: Vec<Spanned<String>>,
    /// Group names.
    #[serde(default)]
    groups: Vec<Spanned<String>>,
}

/// The `callers` of a scoped rule.
fn raw_callers(rule: &Spanned<RawRule>) -> Option<&Spanned<RawCallers>> {
    match &rule.value {
        RawRule::Scoped(scoped) => scoped.callers.as_ref(),
        RawRule::Tier(_) => None,
    }
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
        for (name, rule) in &self.tools {
            if name.value.trim().is_empty() {
                errors.push(Diagnostic::at(name, "a tool name must not be empty"));
            }
            let (tier, callers) = match &rule.value {
                RawRule::Tier(tier) => ((tier.as_str(), Diagnostic::at(rule, "")), None),
                RawRule::Scoped(scoped) => (
                    (scoped.tier.value.as_str(), Diagnostic::at(&scoped.tier, "")),
                    scoped.callers.as_ref(),
                ),
            };
            let callers = callers.map(|raw| {
                let names = |list: &[Spanned<String>], errors: &mut Collector| {
                    for entry in list.iter().filter(|e| e.value.trim().is_empty()) {
                        errors.push(Diagnostic::at(entry, "a caller name must not be empty"));
                    }
                    list.iter().map(|e| e.value.clone()).collect::<Vec<_>>()
                };
                let callers = Callers {
                    agents: names(&raw.value.agents, &mut errors),
                    groups: names(&raw.value.groups, &mut errors),
                };
                if callers.agents.is_empty() && callers.groups.is_empty() {
                    errors.push(Diagnostic::at(
                        raw,
                        "callers must list at least one agent or group",
                    ));
                }
                callers
            });
            let (tier, mut at) = tier;
            if Tier::parse(tier) == Some(Tier::Deny)
                && let Some(raw) = raw_callers(rule)
            {
                errors.push(Diagnostic::at(
                    raw,
                    "a deny rule applies to every caller: drop `callers`, or give the tier others are refused",
                ));
            }
            match Tier::parse(tier) {
                Some(parsed) => {
                    let named = match &rule.value {
                        RawRule::Scoped(scoped) => scoped.credential.as_ref(),
                        RawRule::Tier(_) => None,
                    };
                    let credential = match named {
                        Some(credential) => {
                            if credential.value.trim().is_empty() {
                                errors.push(Diagnostic::at(
                                    credential,
                                    "a credential name must not be empty",
                                ));
                            }
                            Some(credential.value.clone())
                        }
                        None => None,
                    };
                    let dry_run = match &rule.value {
                        RawRule::Scoped(scoped) => match &scoped.dry_run {
                            None => DryRunMode::Gateway,
                            Some(mode) if mode.value == "gateway" => DryRunMode::Gateway,
                            Some(mode) if mode.value == "upstream" => DryRunMode::Upstream,
                            Some(mode) => {
                                errors.push(Diagnostic::at(
                                    mode,
                                    format!(
                                        "unknown dry_run \"{}\" (expected gateway or upstream)",
                                        mode.value
                                    ),
                                ));
                                DryRunMode::Gateway
                            }
                        },
                        RawRule::Tier(_) => DryRunMode::Gateway,
                    };
                    let hold = match &rule.value {
                        RawRule::Scoped(scoped) => {
                            let mut hold = Hold::default();
                            let approve_only = [
                                scoped.timeout.as_ref().map(|t| Diagnostic::at(t, "")),
                                scoped.approvals.as_ref().map(|a| Diagnostic::at(a, "")),
                            ];
                            if !matches!(parsed, Tier::Approve | Tier::Confirm) {
                                for mut at in approve_only.into_iter().flatten() {
                                    at.message =
                                        "timeout and approvals apply to the approve and confirm tiers only"
                                            .into();
                                    errors.push(at);
                                }
                            }
                            if let Some(fallback) = &scoped.fallback {
                                hold.fallback = match fallback.value.as_str() {
                                    _ if parsed != Tier::Confirm => {
                                        errors.push(Diagnostic::at(
                                            fallback,
                                            "fallback applies to the confirm tier only",
                                        ));
                                        ConfirmFallback::Deny
                                    }
                                    "deny" => ConfirmFallback::Deny,
                                    "approve" => ConfirmFallback::Approve,
                                    other => {
                                        errors.push(Diagnostic::at(
                                            fallback,
                                            format!(
                                                "unknown fallback \"{other}\" (expected deny or approve)"
                                            ),
                                        ));
                                        ConfirmFallback::Deny
                                    }
                                };
                            }
                            if let Some(timeout) = &scoped.timeout
                                && let Some(parsed) = located::duration(timeout, &mut errors)
                            {
                                if parsed.is_zero() {
                                    errors.push(Diagnostic::at(
                                        timeout,
                                        "timeout must be more than 0",
                                    ));
                                }
                                hold.timeout = parsed;
                            }
                            if let Some(approvals) = &scoped.approvals {
                                if approvals.value == 0 || approvals.value > 16 {
                                    errors.push(Diagnostic::at(
                                        approvals,
                                        "approvals must be between 1 and 16",
                                    ));
                                }
                                hold.approvals = approvals.value.clamp(1, 16);
                            }
                            for approver in &scoped.approvers {
                                let name = approver
                                    .value
                                    .strip_prefix(GROUP_PREFIX)
                                    .unwrap_or(&approver.value);
                                if name.trim().is_empty() || name.trim() != name {
                                    errors.push(Diagnostic::at(
                                        approver,
                                        "an approver is a name, or group:NAME for everyone in a group, without surrounding spaces",
                                    ));
                                }
                            }
                            hold.approvers =
                                scoped.approvers.iter().map(|a| a.value.clone()).collect();
                            hold.allow_own = scoped.allow_own;
                            hold
                        }
                        RawRule::Tier(_) => Hold::default(),
                    };
                    let calls = match &rule.value {
                        RawRule::Scoped(scoped) => {
                            scoped.calls.as_ref().and_then(|c| cap_of(c, &mut errors))
                        }
                        RawRule::Tier(_) => None,
                    };
                    tools.insert(
                        name.value.clone(),
                        Rule {
                            tier: parsed,
                            callers,
                            credential,
                            dry_run,
                            hold,
                            calls,
                        },
                    );
                }
                None => {
                    at.message = format!(
                        "unknown tier \"{tier}\" for tool \"{}\" (expected read, write, confirm, approve or deny)",
                        name.value
                    );
                    errors.push(at);
                }
            }
        }
        let redaction = self
            .redact
            .map(|raw| raw.validate(&mut errors))
            .unwrap_or_default();
        let mut limits = SessionLimits::default();
        if let Some(raw) = &self.limits {
            if let Some(cap) = raw.tool_calls.as_ref().and_then(|c| cap_of(c, &mut errors)) {
                limits.tool_calls = cap;
            }
            if let Some(cap) = raw
                .session_calls
                .as_ref()
                .and_then(|c| cap_of(c, &mut errors))
            {
                limits.session_calls = cap;
            }
        }
        errors.finish(
            origin,
            Policy {
                default,
                tools,
                redaction,
                limits,
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
    fn a_rule_can_name_its_callers() {
        let policy = Policy::from_yaml_str(
            "version: 1\ntools:\n  note:\n    tier: write\n    callers: { agents: [bot], groups: [editors] }\n",
            "p.yaml",
        )
        .expect("valid");
        let rule = policy.full_rule("note").expect("rule");
        assert_eq!(rule.tier, Tier::Write);
        assert_eq!(
            rule.callers,
            Some(Callers {
                agents: vec!["bot".into()],
                groups: vec!["editors".into()]
            })
        );
        let with_credential = Policy::from_yaml_str(
            "version: 1\ntools:\n  note:\n    tier: write\n    credential: notes-writer\n",
            "p.yaml",
        )
        .expect("valid");
        assert_eq!(with_credential.credential_of("note"), Some("notes-writer"));
        assert_eq!(with_credential.rule("note"), Some(Tier::Write));
        assert_ne!(
            with_credential.content_hash(),
            Policy::from_yaml_str("version: 1\ntools:\n  note: write\n", "p.yaml")
                .expect("valid")
                .content_hash()
        );
        let d = diagnostics("version: 1\ntools:\n  note:\n    tier: write\n    callers: {}\n");
        assert_eq!(d.items[0].line, 5, "{d}");
        assert!(
            d.items[0].message.contains("at least one agent or group"),
            "{d}"
        );
        let d = diagnostics(
            "version: 1\ntools:\n  note:\n    tier: wrote\n    callers: { agents: [bot] }\n",
        );
        assert!(d.items[0].message.contains("unknown tier \"wrote\""), "{d}");
    }

    #[test]
    fn a_confirm_rule_falls_back_as_written_and_only_confirm_has_a_fallback() {
        let policy = Policy::from_yaml_str(
            "version: 1\ntools:\n  pay:\n    tier: confirm\n    fallback: approve\n    timeout: 2m\n  wipe: confirm\n",
            "p.yaml",
        )
        .expect("valid");
        assert_eq!(policy.hold_of("pay").fallback, ConfirmFallback::Approve);
        assert_eq!(policy.hold_of("pay").timeout.as_secs(), 120);
        assert_eq!(policy.hold_of("wipe").fallback, ConfirmFallback::Deny);
        let d = diagnostics(
            "version: 1\ntools:\n  a:\n    tier: write\n    fallback: approve\n  b:\n    tier: confirm\n    fallback: maybe\n",
        );
        assert_eq!(d.items.len(), 2, "{d}");
        assert!(d.items[0].message.contains("confirm tier only"), "{d}");
        assert!(d.items[1].message.contains("unknown fallback"), "{d}");
    }

    #[test]
    fn approvers_are_named_one_by_one_or_by_group() {
        let policy = Policy::from_yaml_str(
            "version: 1\ntools:\n  pay:\n    tier: approve\n    approvers: [grace, \"group:finance-leads\"]\n  wipe: approve\n",
            "p.yaml",
        )
        .expect("valid");
        let pay = policy.hold_of("pay");
        assert!(pay.admits("grace", []));
        assert!(pay.admits("ada@example.com", ["staff", "finance-leads"]));
        assert!(!pay.admits("ada@example.com", ["staff"]));
        // A group's name is not an approver's: `finance-leads` the person
        // is not everyone in the group, nor the other way round.
        assert!(!pay.admits("finance-leads", []));
        assert!(!pay.admits("group:finance-leads", []));
        assert!(policy.hold_of("wipe").admits("anyone", []));
        let d = diagnostics(
            "version: 1\ntools:\n  pay:\n    tier: approve\n    approvers: [\"group:\", \" grace\", ok]\n",
        );
        assert_eq!(d.items.len(), 2, "{d}");
        assert_eq!((d.items[0].line, d.items[1].line), (5, 5), "{d}");
        assert!(d.items[0].message.contains("group:NAME"), "{d}");
    }

    #[test]
    fn call_caps_are_read_per_policy_and_per_tool_and_mistakes_located() {
        let policy = Policy::from_yaml_str(
            "version: 1\nlimits:\n  tool_calls: 5\n  session_calls: unlimited\ntools:\n  search:\n    tier: read\n    calls: 200\n  note:\n    tier: write\n    calls: unlimited\n",
            "p.yaml",
        )
        .expect("valid");
        let search = policy.call_caps("search");
        assert_eq!(search.per_tool, Cap::AtMost(200));
        assert_eq!(search.per_session, Cap::Unlimited);
        assert_eq!(policy.call_caps("note").per_tool, Cap::Unlimited);
        assert_eq!(policy.call_caps("other").per_tool, Cap::AtMost(5));
        let defaults = Policy::from_yaml_str("version: 1\n", "p.yaml").expect("valid");
        assert_eq!(
            defaults.call_caps("x"),
            warden_limits::CapSettings::default()
        );
        assert_ne!(policy.content_hash(), defaults.content_hash());
        let d = diagnostics(
            "version: 1\nlimits:\n  tool_calls: 0\n  session_calls: lots\ntools:\n  a:\n    tier: read\n    calls: -3\n",
        );
        let lines: Vec<u64> = d.items.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![3, 4, 8], "{d}");
        assert!(
            d.items
                .iter()
                .all(|i| i.message.contains("at least 1, or unlimited")),
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
