//! Redaction rules: what of a call's arguments and result the audit trail
//! must not keep as written.
//!
//! A policy's optional `redact:` section, validated into [`RedactionRules`]:
//! plain data (JSON Pointers, actions, detector names) that the audit crate
//! compiles into its redactor. Redaction works on the audit copy only; what
//! is forwarded to the upstream and returned to the agent never changes.
//!
//! ```yaml
//! redact:
//!   detectors: [email, card, bearer, jwt, api-key]
//!   tools:
//!     create_note:
//!       arguments:
//!         /body: mask
//!         /customer/email: hash
//!         /attachments/*/data: drop
//!       result:
//!         /content/*/text: mask
//! ```
//!
//! Pointers are RFC 6901 JSON Pointers (`~0` for `~`, `~1` for `/`; `""` is
//! the whole value) with one addition: a segment that is exactly `*` means
//! every member of an object or every element of an array (a member whose
//! name is `*` is one of those). Rules apply in the order written.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use crate::located::{Collector, Diagnostic, Spanned};

/// What a path rule does to the value it points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedactAction {
    /// Remove the member (or array element) altogether.
    Drop,
    /// Replace the value by the string `"***"`.
    Mask,
    /// Replace the value by `"hmac-sha256:<hex>"`, keyed, so equal values
    /// correlate without being revealed (needs an audit key).
    Hash,
}

/// A built-in scanner for secrets inside any string value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    /// E-mail addresses (`local@domain.tld`).
    Email,
    /// Payment card numbers: 13 to 19 digits, spaces or dashes between,
    /// passing the Luhn check.
    Card,
    /// `Bearer <token>` credentials.
    Bearer,
    /// JSON Web Tokens: three base64url segments, the header starting `eyJ`.
    Jwt,
    /// Well-known API key shapes (AWS, OpenAI/Stripe, GitHub, Slack, Google).
    ApiKey,
}

/// Which half of a call a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The `tools/call` arguments.
    Arguments,
    /// The response's `result` (or `error`).
    Result,
}

/// One segment of a [`JsonPointer`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object member name or an array index, unescaped.
    Key(String),
    /// `*`: every member or element.
    Any,
}

/// A validated JSON Pointer (RFC 6901, plus `*` segments).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct JsonPointer {
    segments: Vec<Segment>,
}

/// Why a JSON Pointer is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    /// Neither empty nor starting with `/`.
    #[error("it must start with \"/\" (or be \"\" for the whole value)")]
    NoLeadingSlash,
    /// A `~` not followed by `0` or `1`.
    #[error("\"~\" must be followed by 0 or 1 (write ~0 for \"~\" and ~1 for \"/\")")]
    BadEscape,
}

/// One path rule: where, and what to do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRule {
    /// The value(s) the rule applies to.
    pub pointer: JsonPointer,
    /// What to do with them.
    pub action: RedactAction,
}

/// The path rules of one tool, in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolRedactionRules {
    /// Rules on the call's arguments.
    pub arguments: Vec<PathRule>,
    /// Rules on the response's result.
    pub result: Vec<PathRule>,
}

/// A route's validated redaction rules (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RedactionRules {
    detectors: Vec<Detector>,
    tools: HashMap<String, ToolRedactionRules>,
}

/// The `redact:` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedaction {
    /// Detectors scanning every string value of every tool.
    #[serde(default)]
    detectors: Vec<Spanned<String>>,
    /// Per-tool path rules.
    #[serde(default)]
    tools: HashMap<Spanned<String>, RawToolRedaction>,
}

/// One tool's path rules as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolRedaction {
    /// Pointer → action, on the arguments.
    #[serde(default)]
    arguments: Ordered,
    /// Pointer → action, on the result.
    #[serde(default)]
    result: Ordered,
}

/// A mapping of pointer → action that keeps the order written.
#[derive(Debug, Default)]
struct Ordered(Vec<(Spanned<String>, Spanned<String>)>);

// === impl RedactAction ===

impl RedactAction {
    /// The action's name as written in policy files (and audit records).
    pub fn as_str(self) -> &'static str {
        match self {
            RedactAction::Drop => "drop",
            RedactAction::Mask => "mask",
            RedactAction::Hash => "hash",
        }
    }

    /// Parse an action name as written in policy files.
    pub fn parse(name: &str) -> Option<RedactAction> {
        match name {
            "drop" => Some(RedactAction::Drop),
            "mask" => Some(RedactAction::Mask),
            "hash" => Some(RedactAction::Hash),
            _ => None,
        }
    }
}

impl fmt::Display for RedactAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Detector ===

impl Detector {
    /// Every detector, in the order they are documented.
    pub const ALL: [Detector; 5] = [
        Detector::Email,
        Detector::Card,
        Detector::Bearer,
        Detector::Jwt,
        Detector::ApiKey,
    ];

    /// The detector's name as written in policy files (and audit records).
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Card => "card",
            Detector::Bearer => "bearer",
            Detector::Jwt => "jwt",
            Detector::ApiKey => "api-key",
        }
    }

    /// Parse a detector name as written in policy files.
    pub fn parse(name: &str) -> Option<Detector> {
        Detector::ALL.into_iter().find(|d| d.as_str() == name)
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Target ===

impl Target {
    /// The audit record field the target is written to: `arguments` or `result`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Arguments => "arguments",
            Target::Result => "result",
        }
    }
}

// === impl JsonPointer ===

impl JsonPointer {
    /// The pointer to the whole value (`""`).
    pub fn root() -> JsonPointer {
        JsonPointer::default()
    }

    /// Parse a pointer: `""`, or `/`-separated segments with `~0` and `~1`
    /// escapes; a segment that is exactly `*` is [`Segment::Any`].
    pub fn parse(text: &str) -> Result<JsonPointer, PointerError> {
        if text.is_empty() {
            return Ok(JsonPointer::root());
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PointerError::NoLeadingSlash);
        };
        let segments = rest
            .split('/')
            .map(|raw| {
                if raw == "*" {
                    return Ok(Segment::Any);
                }
                unescape(raw).map(Segment::Key)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(JsonPointer { segments })
    }

    /// The segments, outermost first (empty for the whole value).
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for segment in &self.segments {
            match segment {
                Segment::Any => f.write_str("/*")?,
                Segment::Key(key) => {
                    f.write_str("/")?;
                    f.write_str(&escape(key))?;
                }
            }
        }
        Ok(())
    }
}

/// A pointer segment as written: `~` as `~0`, `/` as `~1`.
pub fn escape(key: &str) -> std::borrow::Cow<'_, str> {
    if key.contains(['~', '/']) {
        std::borrow::Cow::Owned(key.replace('~', "~0").replace('/', "~1"))
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

fn unescape(raw: &str) -> Result<String, PointerError> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('0') => out.push('~'),
            Some('1') => out.push('/'),
            _ => return Err(PointerError::BadEscape),
        }
    }
    Ok(out)
}

// === impl RedactionRules ===

impl RedactionRules {
    /// Switch a detector on (for every tool of the route).
    pub fn with_detector(mut self, detector: Detector) -> RedactionRules {
        if let Err(at) = self.detectors.binary_search(&detector) {
            self.detectors.insert(at, detector);
        }
        self
    }

    /// Add a path rule for one tool, after the ones it has.
    pub fn with_rule(
        mut self,
        tool: impl Into<String>,
        target: Target,
        pointer: JsonPointer,
        action: RedactAction,
    ) -> RedactionRules {
        let rules = self.tools.entry(tool.into()).or_default();
        let list = match target {
            Target::Arguments => &mut rules.arguments,
            Target::Result => &mut rules.result,
        };
        list.push(PathRule { pointer, action });
        self
    }

    /// The detectors switched on, each once, in [`Detector::ALL`] order.
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    /// The path rules of one tool, if it has any.
    pub fn tool(&self, name: &str) -> Option<&ToolRedactionRules> {
        self.tools.get(name)
    }

    /// Every tool with path rules (in no particular order).
    pub fn tools(&self) -> impl Iterator<Item = (&str, &ToolRedactionRules)> {
        self.tools
            .iter()
            .map(|(name, rules)| (name.as_str(), rules))
    }

    /// Whether any rule hashes, so an audit key must be configured.
    pub fn uses_hash(&self) -> bool {
        self.tools.values().any(|rules| {
            rules
                .arguments
                .iter()
                .chain(&rules.result)
                .any(|rule| rule.action == RedactAction::Hash)
        })
    }

    /// Whether there is nothing to redact at all.
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty() && self.tools.is_empty()
    }
}

// === impl RawRedaction ===

impl RawRedaction {
    /// Validate the section, pushing every problem to `errors`.
    pub(crate) fn validate(self, errors: &mut Collector) -> RedactionRules {
        let mut rules = RedactionRules::default();
        for name in &self.detectors {
            match Detector::parse(&name.value) {
                Some(detector) => rules = rules.with_detector(detector),
                None => errors.push(Diagnostic::at(
                    name,
                    format!(
                        "unknown detector \"{}\" (expected email, card, bearer, jwt or api-key)",
                        name.value
                    ),
                )),
            }
        }
        for (tool, raw) in self.tools {
            if tool.value.trim().is_empty() {
                errors.push(Diagnostic::at(&tool, "a tool name must not be empty"));
            }
            let mut parsed = ToolRedactionRules::default();
            for (target, written) in [
                (Target::Arguments, raw.arguments),
                (Target::Result, raw.result),
            ] {
                let list = match target {
                    Target::Arguments => &mut parsed.arguments,
                    Target::Result => &mut parsed.result,
                };
                for (pointer, action) in written.0 {
                    let parsed_pointer = match JsonPointer::parse(&pointer.value) {
                        Ok(p) => Some(p),
                        Err(err) => {
                            errors.push(Diagnostic::at(
                                &pointer,
                                format!("invalid JSON Pointer \"{}\": {err}", pointer.value),
                            ));
                            None
                        }
                    };
                    let parsed_action = RedactAction::parse(&action.value);
                    if parsed_action.is_none() {
                        errors.push(Diagnostic::at(
                            &action,
                            format!(
                                "unknown redaction \"{}\" for {} {} of tool \"{}\" (expected drop, mask or hash)",
                                action.value,
                                target.as_str(),
                                pointer.value,
                                tool.value
                            ),
                        ));
                    }
                    if let (Some(pointer), Some(action)) = (parsed_pointer, parsed_action) {
                        list.push(PathRule { pointer, action });
                    }
                }
            }
            rules.tools.insert(tool.value, parsed);
        }
        rules
    }
}

// === impl Ordered ===

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Ordered, D::Error> {
        struct OrderedVisitor;

        impl<'de> Visitor<'de> for OrderedVisitor {
            type Value = Ordered;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of JSON Pointer to drop, mask or hash")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }

        deserializer.deserialize_map(OrderedVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_parse_escapes_and_wildcards() {
        let p = JsonPointer::parse("/a~1b/*/c~0d/0").expect("valid");
        assert_eq!(
            p.segments(),
            &[
                Segment::Key("a/b".into()),
                Segment::Any,
                Segment::Key("c~d".into()),
                Segment::Key("0".into()),
            ]
        );
        assert_eq!(p.to_string(), "/a~1b/*/c~0d/0");
        assert_eq!(JsonPointer::parse("").expect("root").segments(), &[]);
        assert_eq!(
            JsonPointer::parse("/").expect("empty key").segments(),
            &[Segment::Key(String::new())]
        );
        assert_eq!(
            JsonPointer::parse("/~01")
                .expect("~01 is ~1 literally")
                .segments(),
            &[Segment::Key("~1".into())]
        );
    }

    #[test]
    fn malformed_pointers_say_why() {
        assert_eq!(
            JsonPointer::parse("body"),
            Err(PointerError::NoLeadingSlash)
        );
        assert_eq!(JsonPointer::parse("/a~2"), Err(PointerError::BadEscape));
        assert_eq!(JsonPointer::parse("/a~"), Err(PointerError::BadEscape));
    }

    #[test]
    fn builders_keep_detectors_once_and_rules_in_order() {
        let rules = RedactionRules::default()
            .with_detector(Detector::Jwt)
            .with_detector(Detector::Email)
            .with_detector(Detector::Jwt)
            .with_rule(
                "t",
                Target::Arguments,
                JsonPointer::parse("/a").expect("valid"),
                RedactAction::Mask,
            )
            .with_rule(
                "t",
                Target::Arguments,
                JsonPointer::root(),
                RedactAction::Drop,
            );
        assert_eq!(rules.detectors(), &[Detector::Email, Detector::Jwt]);
        let t = rules.tool("t").expect("rules");
        assert_eq!(t.arguments.len(), 2);
        assert_eq!(t.arguments[1].action, RedactAction::Drop);
        assert!(!rules.uses_hash());
        assert!(!rules.is_empty());
        assert!(RedactionRules::default().is_empty());
        let hashed = rules.with_rule("u", Target::Result, JsonPointer::root(), RedactAction::Hash);
        assert!(hashed.uses_hash());
    }

    fn load(text: &str) -> Result<crate::Policy, crate::PolicyError> {
        crate::Policy::from_yaml_str(text, "p.yaml")
    }

    fn errors(text: &str) -> Vec<(u64, u64, String)> {
        match load(text) {
            Err(crate::PolicyError::Invalid(d)) => d
                .items
                .into_iter()
                .map(|i| (i.line, i.column, i.message))
                .collect(),
            other => panic!("expected diagnostics, got {other:?}"),
        }
    }

    const EXAMPLE: &str = "\
version: 1
tools:
  create_note: write
redact:
  detectors: [email, card, bearer, jwt, api-key]
  tools:
    create_note:
      arguments:
        /body: mask
        /customer/email: hash
        /attachments/*/data: drop
      result:
        /content/*/text: mask
";

    #[test]
    fn the_documented_section_loads_in_order() {
        let policy = load(EXAMPLE).expect("valid");
        let rules = policy.redaction();
        assert_eq!(rules.detectors(), &Detector::ALL);
        assert!(rules.uses_hash());
        let note = rules.tool("create_note").expect("rules");
        let written: Vec<_> = note
            .arguments
            .iter()
            .map(|r| (r.pointer.to_string(), r.action))
            .collect();
        assert_eq!(
            written,
            vec![
                ("/body".to_owned(), RedactAction::Mask),
                ("/customer/email".to_owned(), RedactAction::Hash),
                ("/attachments/*/data".to_owned(), RedactAction::Drop),
            ]
        );
        assert_eq!(note.result.len(), 1);
        assert_eq!(
            note.result[0].pointer.segments(),
            &[
                Segment::Key("content".into()),
                Segment::Any,
                Segment::Key("text".into())
            ]
        );
    }

    #[test]
    fn no_section_means_nothing_to_redact() {
        let policy = load("version: 1\n").expect("valid");
        assert!(policy.redaction().is_empty());
        assert!(!policy.redaction().uses_hash());
        let policy = load("version: 1\nredact:\n  detectors: [jwt]\n").expect("valid");
        assert_eq!(policy.redaction().detectors(), &[Detector::Jwt]);
        assert!(policy.redaction().tool("x").is_none());
        let policy =
            load("version: 1\nredact:\n  tools:\n    t:\n      result:\n        \"\": drop\n")
                .expect("the whole value");
        let t = policy.redaction().tool("t").expect("rules");
        assert_eq!(t.result[0].pointer, JsonPointer::root());
    }

    #[test]
    fn an_unknown_detector_is_reported_where_it_is_written() {
        let found = errors("version: 1\nredact:\n  detectors: [email, emial, api_key]\n");
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (3, 22));
        assert_eq!(
            found[0].2,
            "unknown detector \"emial\" (expected email, card, bearer, jwt or api-key)"
        );
        assert_eq!((found[1].0, found[1].1), (3, 29));
    }

    #[test]
    fn an_unknown_action_is_reported_at_its_value() {
        let found = errors(
            "version: 1\nredact:\n  tools:\n    t:\n      arguments:\n        /body: blank\n",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (6, 16));
        assert_eq!(
            found[0].2,
            "unknown redaction \"blank\" for arguments /body of tool \"t\" (expected drop, mask or hash)"
        );
    }

    #[test]
    fn malformed_pointers_are_reported_at_their_key() {
        let found = errors(
            "version: 1\nredact:\n  tools:\n    t:\n      arguments:\n        body: mask\n      result:\n        /a~2b: drop\n",
        );
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].0, found[0].1), (6, 9));
        assert_eq!(
            found[0].2,
            "invalid JSON Pointer \"body\": it must start with \"/\" (or be \"\" for the whole value)"
        );
        assert_eq!((found[1].0, found[1].1), (8, 9));
        assert!(
            found[1].2.contains("\"~\" must be followed by 0 or 1"),
            "{found:?}"
        );
    }

    #[test]
    fn every_error_of_the_section_is_reported_together_in_file_order() {
        let found = errors(
            "version: 1\nredact:\n  detectors: [mail]\n  tools:\n    \"\":\n      arguments:\n        x: wipe\n",
        );
        let lines: Vec<_> = found.iter().map(|f| (f.0, f.1)).collect();
        assert_eq!(lines, vec![(3, 15), (5, 5), (7, 9), (7, 12)], "{found:?}");
        assert_eq!(found[1].2, "a tool name must not be empty");
    }

    #[test]
    fn structural_mistakes_stop_the_parse_with_a_position() {
        let found = errors("version: 1\nredact:\n  detector: [email]\n");
        assert_eq!(found[0].0, 3, "{found:?}");
        assert!(found[0].2.contains("detector"), "{found:?}");
        let found =
            errors("version: 1\nredact:\n  tools:\n    t:\n      argument:\n        /a: mask\n");
        assert_eq!(found[0].0, 5, "{found:?}");
        let found = errors(
            "version: 1\nredact:\n  tools:\n    t:\n      arguments:\n        /a: mask\n        /a: drop\n",
        );
        assert_eq!(found[0].0, 7, "{found:?}");
        assert!(found[0].2.contains("appears twice"), "{found:?}");
    }

    #[test]
    fn names_round_trip() {
        for d in Detector::ALL {
            assert_eq!(Detector::parse(d.as_str()), Some(d));
        }
        for a in [RedactAction::Drop, RedactAction::Mask, RedactAction::Hash] {
            assert_eq!(RedactAction::parse(a.as_str()), Some(a));
        }
        assert_eq!(Detector::parse("apikey"), None);
    }
}
