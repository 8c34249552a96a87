//! The policy model and its evaluator.

use std::collections::HashMap;
use std::fmt;

use warden_limits::{Cap, CapSettings};

use crate::redact::RedactionRules;

/// What a tool may do once a policy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Callable; the operator vouches it only reads.
    Read,
    /// Callable; it changes something.
    Write,
    /// Callable once a human approves it: the call is held until then.
    Approve,
    /// Callable once the user the agent acts for confirms it in their own
    /// client (MCP elicitation); without a way to ask them, as the rule's
    /// `fallback` says (held for approval, or refused).
    Confirm,
    /// Never callable; hidden from `tools/list`.
    Deny,
}

impl Tier {
    /// The tier's name as written in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Read => "read",
            Tier::Write => "write",
            Tier::Approve => "approve",
            Tier::Confirm => "confirm",
            Tier::Deny => "deny",
        }
    }

    /// Parse a tier name as written in policy files.
    pub fn parse(name: &str) -> Option<Tier> {
        match name {
            "read" => Some(Tier::Read),
            "write" => Some(Tier::Write),
            "approve" => Some(Tier::Approve),
            "confirm" => Some(Tier::Confirm),
            "deny" => Some(Tier::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a tool that no rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DefaultRule {
    /// Callable only if the upstream marks it `readOnlyHint: true` (the default).
    #[default]
    ReadOnlyHint,
    /// Every listed tool is callable (for testing and trusted upstreams).
    Allow,
    /// Nothing is callable unless a rule names it.
    Deny,
}

impl DefaultRule {
    /// The rule's name as written in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultRule::ReadOnlyHint => "read-only-hint",
            DefaultRule::Allow => "allow",
            DefaultRule::Deny => "deny",
        }
    }

    /// Parse a default rule name as written in policy files.
    pub fn parse(name: &str) -> Option<DefaultRule> {
        match name {
            "read-only-hint" => Some(DefaultRule::ReadOnlyHint),
            "allow" => Some(DefaultRule::Allow),
            "deny" => Some(DefaultRule::Deny),
            _ => None,
        }
    }
}

/// What Warden knows about a tool from the upstream's catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ToolFacts {
    /// The upstream's `annotations.readOnlyHint` (absent means `false`).
    pub read_only_hint: bool,
}

/// The caller of a call, as rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The agent's name.
    pub agent: &'a str,
    /// Its groups.
    pub groups: &'a [std::sync::Arc<str>],
}

/// Which callers a rule grants its tool to (any listed agent, or any
/// member of a listed group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Callers {
    /// Agents, by name.
    pub agents: Vec<String>,
    /// Groups.
    pub groups: Vec<String>,
}

/// One tool's rule: its tier and, optionally, who it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The tier.
    pub tier: Tier,
    /// Only these callers get the tier; others are refused the tool
    /// (`None`: every caller).
    pub callers: Option<Callers>,
    /// The route credential the tool's calls carry to the upstream
    /// (`None`: no credential).
    pub credential: Option<String>,
    /// Who answers a call with `dryRun: true`.
    pub dry_run: DryRunMode,
    /// How an `approve`-tier call is held.
    pub hold: Hold,
    /// Calls of this tool per agent session, instead of the policy's
    /// `limits.tool_calls` (`None`: that).
    pub calls: Option<Cap>,
}

/// The policy's call caps per agent session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Calls of one tool (a tool's own `calls` overrides it).
    pub tool_calls: Cap,
    /// Calls of every tool together.
    pub session_calls: Cap,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        let caps = CapSettings::default();
        SessionLimits {
            tool_calls: caps.per_tool,
            session_calls: caps.per_session,
        }
    }
}

/// How an `approve`-tier tool's calls are held for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// How long a held call waits for a decision before it expires.
    pub timeout: std::time::Duration,
    /// Approvals needed.
    pub approvals: u32,
    /// Who may approve: approver names, and `group:NAME` for everyone the
    /// identity layer puts in a group (empty: every approver).
    pub approvers: Vec<String>,
    /// Whether the user the call acts for may approve it (four eyes: no).
    pub allow_own: bool,
    /// `confirm` tier: what happens when the user cannot be asked (the
    /// client declared no elicitation).
    pub fallback: ConfirmFallback,
}

/// What a `confirm`-tier call becomes when the user cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfirmFallback {
    /// Refused, saying the user's confirmation is needed (the default).
    #[default]
    Deny,
    /// Held for an approver, as an `approve`-tier call.
    Approve,
}

impl ConfirmFallback {
    /// The fallback as written in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmFallback::Deny => "deny",
            ConfirmFallback::Approve => "approve",
        }
    }
}

/// How a rule's `approvers` entry names a group rather than one approver.
pub const GROUP_PREFIX: &str = "group:";

impl Hold {
    /// Whether the approver `name`, in `groups`, may decide this rule's
    /// calls: every approver when the rule names none; otherwise one named
    /// by name or by one of their groups.
    pub fn admits<'a>(
        &self,
        name: &str,
        groups: impl IntoIterator<Item = &'a str> + Clone,
    ) -> bool {
        self.approvers.is_empty()
            || self
                .approvers
                .iter()
                .any(|entry| match entry.strip_prefix(GROUP_PREFIX) {
                    Some(group) => groups.clone().into_iter().any(|g| g == group),
                    None => entry == name,
                })
    }
}

impl Default for Hold {
    fn default() -> Hold {
        Hold {
            timeout: std::time::Duration::from_secs(600),
            approvals: 1,
            approvers: Vec::new(),
            allow_own: false,
            fallback: ConfirmFallback::Deny,
        }
    }
}

/// Who previews a mutating tool's call made with `dryRun: true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DryRunMode {
    /// Warden: it validates the arguments and shows the call it would
    /// make, without making it (the default).
    #[default]
    Gateway,
    /// The upstream implements dry runs itself: the flag is forwarded.
    Upstream,
}

impl DryRunMode {
    /// The mode's name in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            DryRunMode::Gateway => "gateway",
            DryRunMode::Upstream => "upstream",
        }
    }
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// A rule sets the tool to `deny`.
    DeniedByRule,
    /// No rule names the tool and the upstream does not mark it read-only.
    NotReadOnly,
    /// No rule names the tool and the policy's default is `deny`.
    DeniedByDefault,
    /// The upstream does not list a tool by this name.
    UnknownTool,
    /// A rule grants the tool to other callers only.
    NotForCaller,
}

impl DenyReason {
    /// A stable, machine-readable code (used in results, metrics and audit).
    pub fn code(self) -> &'static str {
        match self {
            DenyReason::DeniedByRule => "denied-by-policy",
            DenyReason::NotReadOnly => "not-read-only",
            DenyReason::DeniedByDefault => "denied-by-default",
            DenyReason::UnknownTool => "unknown-tool",
            DenyReason::NotForCaller => "not-for-caller",
        }
    }

    /// A sentence the model can act on.
    pub fn explain(self, tool: &str) -> String {
        match self {
            DenyReason::DeniedByRule => format!(
                "Warden refused the call to '{tool}': the policy denies this tool. \
                 Retrying will not help; ask a human operator if this action is needed."
            ),
            DenyReason::NotReadOnly => format!(
                "Warden refused the call to '{tool}': the tool can change data and the policy \
                 has not granted it (Warden allows only read-only tools by default). \
                 Retrying will not help; an operator must grant the tool in the policy."
            ),
            DenyReason::DeniedByDefault => format!(
                "Warden refused the call to '{tool}': the policy allows only the tools it names. \
                 Retrying will not help; an operator must grant the tool in the policy."
            ),
            DenyReason::UnknownTool => format!(
                "Warden refused the call to '{tool}': the server offers no tool by this name. \
                 Call tools/list to see the tools available."
            ),
            DenyReason::NotForCaller => format!(
                "Warden refused the call to '{tool}': the policy grants this tool to other \
                 callers only. Retrying will not help; an operator must grant it to you."
            ),
        }
    }
}

/// The outcome of evaluating a tool call against a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The call may go through at this tier.
    Allow {
        /// The tier the call runs at.
        tier: Tier,
    },
    /// The call is refused.
    Deny {
        /// Why.
        reason: DenyReason,
    },
}

impl Decision {
    /// Whether the call may go through.
    pub fn is_allowed(self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// A validated policy: per-tool tiers, a default, and what the audit trail
/// redacts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub(crate) default: DefaultRule,
    pub(crate) tools: HashMap<String, Rule>,
    pub(crate) redaction: RedactionRules,
    pub(crate) limits: SessionLimits,
}

impl Policy {
    /// A policy with only a default rule.
    pub fn with_default(default: DefaultRule) -> Policy {
        Policy {
            default,
            tools: HashMap::new(),
            redaction: RedactionRules::default(),
            limits: SessionLimits::default(),
        }
    }

    /// The call caps of `tool`'s calls: its own, or the policy's.
    pub fn call_caps(&self, tool: &str) -> CapSettings {
        CapSettings {
            per_tool: self
                .tools
                .get(tool)
                .and_then(|r| r.calls)
                .unwrap_or(self.limits.tool_calls),
            per_session: self.limits.session_calls,
        }
    }

    /// Replace the redaction rules.
    pub fn with_redaction(mut self, redaction: RedactionRules) -> Policy {
        self.redaction = redaction;
        self
    }

    /// What the audit trail redacts from this route's calls.
    pub fn redaction(&self) -> &RedactionRules {
        &self.redaction
    }

    /// Add or replace the rule for one tool, for every caller.
    pub fn with_rule(mut self, tool: impl Into<String>, tier: Tier) -> Policy {
        self.tools.insert(
            tool.into(),
            Rule {
                tier,
                callers: None,
                credential: None,
                dry_run: DryRunMode::Gateway,
                hold: Hold::default(),
                calls: None,
            },
        );
        self
    }

    /// Add or replace the rule for one tool, for `callers` only.
    pub fn with_rule_for(
        mut self,
        tool: impl Into<String>,
        tier: Tier,
        callers: Callers,
    ) -> Policy {
        self.tools.insert(
            tool.into(),
            Rule {
                tier,
                callers: Some(callers),
                credential: None,
                dry_run: DryRunMode::Gateway,
                hold: Hold::default(),
                calls: None,
            },
        );
        self
    }

    /// The default rule.
    pub fn default_rule(&self) -> DefaultRule {
        self.default
    }

    /// The tier of a tool's rule, if the policy names it.
    pub fn rule(&self, tool: &str) -> Option<Tier> {
        self.tools.get(tool).map(|rule| rule.tier)
    }

    /// A tool's whole rule, if the policy names it.
    pub fn full_rule(&self, tool: &str) -> Option<&Rule> {
        self.tools.get(tool)
    }

    /// Give `tool`'s calls the route credential `credential`.
    pub fn with_credential(mut self, tool: &str, credential: impl Into<String>) -> Policy {
        if let Some(rule) = self.tools.get_mut(tool) {
            rule.credential = Some(credential.into());
        }
        self
    }

    /// The credential `tool`'s calls carry, if its rule names one.
    pub fn credential_of(&self, tool: &str) -> Option<&str> {
        self.tools.get(tool)?.credential.as_deref()
    }

    /// How `tool`'s calls are held, if its tier is `approve`.
    pub fn hold_of(&self, tool: &str) -> Hold {
        self.tools
            .get(tool)
            .map(|rule| rule.hold.clone())
            .unwrap_or_default()
    }

    /// Who previews `tool`'s dry runs.
    pub fn dry_run_of(&self, tool: &str) -> DryRunMode {
        self.tools
            .get(tool)
            .map_or(DryRunMode::Gateway, |rule| rule.dry_run)
    }

    /// Every credential the rules name (to check each is defined).
    pub fn credentials_named(&self) -> impl Iterator<Item = &str> {
        self.tools.values().filter_map(|r| r.credential.as_deref())
    }

    /// SHA-256 (lower-case hex) of the policy's canonical form: the same
    /// rules give the same hash whatever the file's layout, comments or
    /// key order. Audit records name the policy in force by it.
    pub fn content_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut names: Vec<(&String, &Rule)> = self.tools.iter().collect();
        names.sort_by(|a, b| a.0.cmp(b.0));
        let mut hasher = Sha256::new();
        hasher.update(b"warden-policy/v1\ndefault=");
        hasher.update(self.default.as_str().as_bytes());
        // Lengths first, so no two rule sets hash alike by concatenation.
        let mut put = |label: &str, text: &str| {
            hasher.update(format!("\n{label} {}:{text}", text.len()).as_bytes());
        };
        let cap = |cap: Cap| match cap {
            Cap::Unlimited => "unlimited".to_owned(),
            Cap::AtMost(n) => n.to_string(),
        };
        if self.limits != SessionLimits::default() {
            put("limits_tool_calls", &cap(self.limits.tool_calls));
            put("limits_session_calls", &cap(self.limits.session_calls));
        }
        for (name, rule) in names {
            put("tool", name);
            put("tier", rule.tier.as_str());
            if let Some(calls) = rule.calls {
                put("calls", &cap(calls));
            }
            if let Some(credential) = &rule.credential {
                put("credential", credential);
            }
            if rule.dry_run != DryRunMode::Gateway {
                put("dry_run", rule.dry_run.as_str());
            }
            if rule.tier == Tier::Confirm {
                put("confirm_fallback", rule.hold.fallback.as_str());
            }
            if matches!(rule.tier, Tier::Approve | Tier::Confirm) {
                put(
                    "hold_timeout_ms",
                    &rule.hold.timeout.as_millis().to_string(),
                );
                put("hold_approvals", &rule.hold.approvals.to_string());
                let mut approvers: Vec<&String> = rule.hold.approvers.iter().collect();
                approvers.sort();
                for approver in approvers {
                    put("approver", approver);
                }
                put(
                    "hold_allow_own",
                    if rule.hold.allow_own { "yes" } else { "no" },
                );
            }
            if let Some(callers) = &rule.callers {
                let mut agents: Vec<&String> = callers.agents.iter().collect();
                let mut groups: Vec<&String> = callers.groups.iter().collect();
                agents.sort();
                groups.sort();
                for agent in agents {
                    put("agent", agent);
                }
                for group in groups {
                    put("group", group);
                }
            }
        }
        for detector in self.redaction.detectors() {
            put("detector", detector.as_str());
        }
        let mut redacted: Vec<_> = self.redaction.tools().collect();
        redacted.sort_by(|a, b| a.0.cmp(b.0));
        for (tool, rules) in redacted {
            put("redact", tool);
            // Rule order matters (they apply in order), so it is kept.
            for (target, list) in [("arguments", &rules.arguments), ("result", &rules.result)] {
                for rule in list {
                    put(target, &rule.pointer.to_string());
                    put("action", rule.action.as_str());
                }
            }
        }
        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Decide whether `caller` may call `tool`.
    ///
    /// `facts` is what the upstream's catalogue says about the tool; `None`
    /// means the upstream does not list it, which refuses the call whatever
    /// the rules say: Warden only forwards calls to tools that exist.
    pub fn decide(&self, tool: &str, facts: Option<&ToolFacts>, caller: &Caller<'_>) -> Decision {
        let Some(facts) = facts else {
            return Decision::Deny {
                reason: DenyReason::UnknownTool,
            };
        };
        let rule = self.tools.get(tool);
        if let Some(Rule {
            tier,
            callers: Some(callers),
            ..
        }) = rule
            && *tier != Tier::Deny
            && !callers.admit(caller)
        {
            return Decision::Deny {
                reason: DenyReason::NotForCaller,
            };
        }
        match (rule.map(|r| r.tier), self.default) {
            (Some(Tier::Deny), _) => Decision::Deny {
                reason: DenyReason::DeniedByRule,
            },
            (Some(tier), _) => Decision::Allow { tier },
            (None, DefaultRule::ReadOnlyHint) if facts.read_only_hint => {
                Decision::Allow { tier: Tier::Read }
            }
            (None, DefaultRule::ReadOnlyHint) => Decision::Deny {
                reason: DenyReason::NotReadOnly,
            },
            (None, DefaultRule::Allow) => Decision::Allow {
                tier: if facts.read_only_hint {
                    Tier::Read
                } else {
                    Tier::Write
                },
            },
            (None, DefaultRule::Deny) => Decision::Deny {
                reason: DenyReason::DeniedByDefault,
            },
        }
    }
}

// === impl Callers ===

impl Callers {
    /// Whether the rule is for `caller`.
    pub fn admit(&self, caller: &Caller<'_>) -> bool {
        self.agents.iter().any(|a| a == caller.agent)
            || self
                .groups
                .iter()
                .any(|g| caller.groups.iter().any(|c| **c == **g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANYONE: Caller<'static> = Caller {
        agent: "anonymous",
        groups: &[],
    };

    const READ_ONLY: ToolFacts = ToolFacts {
        read_only_hint: true,
    };
    const MUTATING: ToolFacts = ToolFacts {
        read_only_hint: false,
    };

    #[test]
    fn read_only_first_by_default() {
        let policy = Policy::default();
        assert_eq!(
            policy.decide("search", Some(&READ_ONLY), &ANYONE),
            Decision::Allow { tier: Tier::Read }
        );
        assert_eq!(
            policy.decide("create_note", Some(&MUTATING), &ANYONE),
            Decision::Deny {
                reason: DenyReason::NotReadOnly
            }
        );
    }

    #[test]
    fn rules_graduate_and_deny_tools_one_at_a_time() {
        let policy = Policy::default()
            .with_rule("create_note", Tier::Write)
            .with_rule("search", Tier::Deny);
        assert_eq!(
            policy.decide("create_note", Some(&MUTATING), &ANYONE),
            Decision::Allow { tier: Tier::Write }
        );
        assert_eq!(
            policy.decide("search", Some(&READ_ONLY), &ANYONE),
            Decision::Deny {
                reason: DenyReason::DeniedByRule
            }
        );
        assert_eq!(
            policy.decide("send_invoice", Some(&MUTATING), &ANYONE),
            Decision::Deny {
                reason: DenyReason::NotReadOnly
            }
        );
    }

    #[test]
    fn unknown_tools_are_refused_even_with_a_rule_or_allow_all() {
        let policy = Policy::with_default(DefaultRule::Allow).with_rule("ghost", Tier::Write);
        assert_eq!(
            policy.decide("ghost", None, &ANYONE),
            Decision::Deny {
                reason: DenyReason::UnknownTool
            }
        );
        assert_eq!(
            policy.decide("other", None, &ANYONE),
            Decision::Deny {
                reason: DenyReason::UnknownTool
            }
        );
    }

    #[test]
    fn defaults_allow_and_deny() {
        let allow = Policy::with_default(DefaultRule::Allow);
        assert_eq!(
            allow.decide("x", Some(&MUTATING), &ANYONE),
            Decision::Allow { tier: Tier::Write }
        );
        let deny = Policy::with_default(DefaultRule::Deny);
        assert_eq!(
            deny.decide("x", Some(&READ_ONLY), &ANYONE),
            Decision::Deny {
                reason: DenyReason::DeniedByDefault
            }
        );
    }

    #[test]
    fn a_rule_for_some_callers_refuses_the_others() {
        let notes_bot = Caller {
            agent: "notes-bot",
            groups: &[],
        };
        let editors: [std::sync::Arc<str>; 1] = ["editors".into()];
        let editor = Caller {
            agent: "someone",
            groups: &editors,
        };
        let policy = Policy::default().with_rule_for(
            "create_note",
            Tier::Write,
            Callers {
                agents: vec!["notes-bot".into()],
                groups: vec!["editors".into()],
            },
        );
        for caller in [notes_bot, editor] {
            assert_eq!(
                policy.decide("create_note", Some(&MUTATING), &caller),
                Decision::Allow { tier: Tier::Write }
            );
        }
        assert_eq!(
            policy.decide("create_note", Some(&MUTATING), &ANYONE),
            Decision::Deny {
                reason: DenyReason::NotForCaller
            }
        );
        // Other tools are untouched: the others still read.
        assert_eq!(
            policy.decide("search", Some(&READ_ONLY), &ANYONE),
            Decision::Allow { tier: Tier::Read }
        );
        let hash = policy.content_hash();
        let wider = Policy::default().with_rule_for(
            "create_note",
            Tier::Write,
            Callers {
                agents: vec!["notes-bot".into(), "other".into()],
                groups: vec!["editors".into()],
            },
        );
        assert_ne!(hash, wider.content_hash());
    }

    #[test]
    fn every_refusal_names_the_tool_and_says_whether_to_retry() {
        for reason in [
            DenyReason::NotForCaller,
            DenyReason::DeniedByRule,
            DenyReason::NotReadOnly,
            DenyReason::DeniedByDefault,
            DenyReason::UnknownTool,
        ] {
            let text = reason.explain("send_invoice");
            assert!(text.contains("'send_invoice'"), "{text}");
            assert!(
                text.contains("Retrying will not help") || text.contains("tools/list"),
                "{text}"
            );
        }
    }
}
