//! Redaction: what of a call's arguments and result the audit trail keeps.
//!
//! Before a [`Record`](crate::Record) reaches any sink (files, PostgreSQL,
//! OTLP, logs), its `arguments` and `result.body` go through the route's
//! [`Redactor`]. It works on the audit copy only: what is forwarded to the
//! upstream and returned to the agent never changes.
//!
//! A redactor is compiled once from a policy's validated
//! [`RedactionRules`] (see `warden_policy::redact` and `docs/policy.md`)
//! and shared behind an `Arc`; [`Redactor::redact`] is pure.
//!
//! 1. **Path rules**, per tool, in the order written: a JSON Pointer (RFC
//!    6901, where a segment `*` means every member or element) and an
//!    action: `drop` removes the member or element, `mask` writes `"***"`,
//!    `hash` writes `"hmac-sha256:<hex>"`, the HMAC-SHA256 under the audit
//!    key of the value's canonical JSON text (see [`canonical_json`]), so
//!    equal values correlate across records without being revealed. A
//!    pointer that matches nothing does nothing.
//! 2. **Detectors**, per route, then scan every string value (not member
//!    names) and replace each secret they find by `[redacted:<detector>]`,
//!    keeping the rest of the string.
//!
//! Each redaction is listed in the record's `redacted` field with the
//! concrete path (`/arguments/attachments/0/data`, never the pattern) and
//! the rule (`drop`, `mask`, `hash` or `detector:<name>`). The parts that
//! nothing touched are written as the bytes that came in.
//!
//! How it fails: never at run time. A `hash` rule without a key is refused
//! by [`Redactor::new`]. A value nested deeper than [`MAX_DEPTH`] cannot be
//! walked; it is dropped whole (listed as `drop` of `/arguments` or
//! `/result`) rather than written unredacted.
//!
//! ```
//! use serde_json::value::RawValue;
//! use warden_audit::redact::Redactor;
//! use warden_policy::{Detector, JsonPointer, RedactAction, RedactionRules, Target};
//!
//! let rules = RedactionRules::default()
//!     .with_detector(Detector::Email)
//!     .with_rule("create_note", Target::Arguments,
//!                JsonPointer::parse("/body").expect("pointer"), RedactAction::Mask);
//! let redactor = Redactor::new(&rules, None).expect("no hash rule, no key needed");
//! let args = RawValue::from_string(r#"{"body":"secret","to":"ann@example.com"}"#.into())
//!     .expect("json");
//! let out = redactor.redact("create_note", Some(&args), None);
//! assert_eq!(
//!     out.arguments.expect("kept").get(),
//!     r#"{"body":"***","to":"[redacted:email]"}"#
//! );
//! assert_eq!(out.redacted.len(), 2);
//! ```

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;
use warden_policy::redact::escape;
use warden_policy::{Detector, JsonPointer, RedactAction, RedactionRules, Segment, Target};

use crate::record::{RedactionField, hex};

use detect::detect;
pub use json::canonical_json;
use json::{Kind, Node, canonical, decode, parse, quote};

mod detect;
mod json;

/// What `mask` writes in place of a value.
pub const MASK: &str = "***";

/// How deep a value may nest and still be walked (as `serde_json::Value`).
pub const MAX_DEPTH: usize = 128;

/// Why a redactor could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedactError {
    /// A `hash` rule, and no key to hash with.
    #[error("tool \"{tool}\" hashes {target} {pointer} but no audit redaction key is configured")]
    HashWithoutKey {
        /// The tool.
        tool: String,
        /// `arguments` or `result`.
        target: &'static str,
        /// The rule's pointer.
        pointer: String,
    },
    /// The key is empty.
    #[error("the audit redaction key is empty")]
    EmptyKey,
}

/// A route's compiled redaction (see the module docs). Cheap to share.
#[derive(Clone, Default)]
pub struct Redactor {
    tools: HashMap<String, ToolRedaction>,
    detectors: Vec<Detector>,
    key: Option<Hmac<Sha256>>,
}

/// One tool's path rules, in the order they apply.
#[derive(Debug, Clone, Default)]
struct ToolRedaction {
    arguments: Vec<(JsonPointer, RedactAction)>,
    result: Vec<(JsonPointer, RedactAction)>,
}

/// The audit copy of a call, redacted.
#[derive(Debug, Clone, Default)]
pub struct Redacted {
    /// The arguments to record (`None` when absent or dropped whole).
    pub arguments: Option<Box<RawValue>>,
    /// The result body to record (`None` when absent or dropped whole).
    pub result: Option<Box<RawValue>>,
    /// Every redaction applied, in the order applied.
    pub redacted: Vec<RedactionField>,
}

// === impl Redactor ===

impl Redactor {
    /// Compile `rules`; `key` is the HMAC key `hash` rules need.
    pub fn new(rules: &RedactionRules, key: Option<Vec<u8>>) -> Result<Redactor, RedactError> {
        let key = match key {
            None => None,
            Some(key) if key.is_empty() => return Err(RedactError::EmptyKey),
            Some(key) => {
                Some(Hmac::<Sha256>::new_from_slice(&key).map_err(|_| RedactError::EmptyKey)?)
            }
        };
        let mut names: Vec<(&str, _)> = rules.tools().collect();
        names.sort_by_key(|(name, _)| *name);
        let mut tools = HashMap::with_capacity(names.len());
        for (name, written) in names {
            let mut compiled = ToolRedaction::default();
            for (target, list) in [
                (Target::Arguments, &written.arguments),
                (Target::Result, &written.result),
            ] {
                for rule in list {
                    if rule.action == RedactAction::Hash && key.is_none() {
                        return Err(RedactError::HashWithoutKey {
                            tool: name.to_owned(),
                            target: target.as_str(),
                            pointer: rule.pointer.to_string(),
                        });
                    }
                    let into = match target {
                        Target::Arguments => &mut compiled.arguments,
                        Target::Result => &mut compiled.result,
                    };
                    into.push((rule.pointer.clone(), rule.action));
                }
            }
            if !compiled.arguments.is_empty() || !compiled.result.is_empty() {
                tools.insert(name.to_owned(), compiled);
            }
        }
        Ok(Redactor {
            tools,
            detectors: rules.detectors().to_vec(),
            key,
        })
    }

    /// Whether calls to `tool` are recorded as they came (no rule, no
    /// detector): callers may skip [`Redactor::redact`] altogether.
    pub fn is_noop_for(&self, tool: &str) -> bool {
        self.detectors.is_empty() && !self.tools.contains_key(tool)
    }

    /// The audit copy of a call to `tool`: its arguments and result body
    /// redacted, and what was redacted where. A part nothing applies to is
    /// copied without being parsed.
    pub fn redact(
        &self,
        tool: &str,
        arguments: Option<&RawValue>,
        result: Option<&RawValue>,
    ) -> Redacted {
        let rules = self.tools.get(tool);
        let mut redacted = Vec::new();
        let arguments = arguments.and_then(|raw| {
            let list = rules.map_or(&[][..], |r| &r.arguments[..]);
            self.redact_part(raw, Target::Arguments, list, &mut redacted)
        });
        let result = result.and_then(|raw| {
            let list = rules.map_or(&[][..], |r| &r.result[..]);
            self.redact_part(raw, Target::Result, list, &mut redacted)
        });
        Redacted {
            arguments,
            result,
            redacted,
        }
    }

    fn redact_part(
        &self,
        raw: &RawValue,
        target: Target,
        rules: &[(JsonPointer, RedactAction)],
        out: &mut Vec<RedactionField>,
    ) -> Option<Box<RawValue>> {
        if rules.is_empty() && self.detectors.is_empty() {
            return Some(raw.to_owned());
        }
        let mut path = format!("/{}", target.as_str());
        let Ok(mut root) = parse(raw.get()) else {
            out.push(field(&path, RedactAction::Drop.as_str()));
            return None;
        };
        for (pointer, action) in rules {
            if pointer.segments().is_empty() && *action == RedactAction::Drop {
                out.push(field(&path, RedactAction::Drop.as_str()));
                return None;
            }
            self.apply(&mut root, pointer.segments(), *action, &mut path, out);
        }
        if !self.detectors.is_empty() {
            self.scan(&mut root, &mut path, out);
        }
        if !root.dirty {
            return Some(raw.to_owned());
        }
        let mut text = String::with_capacity(raw.get().len());
        root.write(&mut text);
        match RawValue::from_string(text) {
            Ok(value) => Some(value),
            // Not reachable: every piece written is JSON. Fail closed.
            Err(_) => {
                out.push(field(&path, RedactAction::Drop.as_str()));
                None
            }
        }
    }

    /// Apply one path rule below `node` (whose path is `path`).
    fn apply(
        &self,
        node: &mut Node<'_>,
        segments: &[Segment],
        action: RedactAction,
        path: &mut String,
        out: &mut Vec<RedactionField>,
    ) {
        let Some((first, rest)) = segments.split_first() else {
            // `drop` of a member or element is done by its parent.
            let text = self.replacement(node, action);
            node.replace(text);
            out.push(field(path, action.as_str()));
            return;
        };
        let drop_here = rest.is_empty() && action == RedactAction::Drop;
        let mut changed = false;
        match &mut node.kind {
            Kind::Object(members) => {
                if drop_here {
                    members.retain(|member| {
                        if !key_matches(first, &member.key) {
                            return true;
                        }
                        let len = push_key(path, &member.key);
                        out.push(field(path, action.as_str()));
                        path.truncate(len);
                        changed = true;
                        false
                    });
                } else {
                    for member in members.iter_mut().filter(|m| key_matches(first, &m.key)) {
                        let len = push_key(path, &member.key);
                        self.apply(&mut member.value, rest, action, path, out);
                        path.truncate(len);
                        changed |= member.value.dirty;
                    }
                }
            }
            Kind::Array(items) => {
                let index = match first {
                    Segment::Any => None,
                    Segment::Key(key) => match array_index(key) {
                        Some(index) => Some(index),
                        None => return,
                    },
                };
                let mut at = 0usize;
                if drop_here {
                    items.retain(|_| {
                        let here = at;
                        at += 1;
                        if index.is_some_and(|i| i != here) {
                            return true;
                        }
                        let len = push_index(path, here);
                        out.push(field(path, action.as_str()));
                        path.truncate(len);
                        changed = true;
                        false
                    });
                } else {
                    for (i, item) in items.iter_mut().enumerate() {
                        if index.is_some_and(|want| want != i) {
                            continue;
                        }
                        let len = push_index(path, i);
                        self.apply(item, rest, action, path, out);
                        path.truncate(len);
                        changed |= item.dirty;
                    }
                }
            }
            Kind::Str | Kind::Scalar | Kind::Replaced(_) => {}
        }
        node.dirty |= changed;
    }

    /// The JSON text `mask` or `hash` writes in place of `node`.
    fn replacement(&self, node: &Node<'_>, action: RedactAction) -> String {
        match (action, &self.key) {
            (RedactAction::Hash, Some(key)) => {
                let mut text = String::new();
                canonical(node, &mut text);
                let mut mac = key.clone();
                mac.update(text.as_bytes());
                format!("\"hmac-sha256:{}\"", hex(&mac.finalize().into_bytes()))
            }
            // A hash without a key is refused by `new`; never reveal.
            _ => format!("\"{MASK}\""),
        }
    }

    /// Run the detectors over every string below `node`.
    fn scan(&self, node: &mut Node<'_>, path: &mut String, out: &mut Vec<RedactionField>) {
        let mut changed = false;
        match &mut node.kind {
            Kind::Object(members) => {
                for member in members {
                    let len = push_key(path, &member.key);
                    self.scan(&mut member.value, path, out);
                    path.truncate(len);
                    changed |= member.value.dirty;
                }
            }
            Kind::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = push_index(path, i);
                    self.scan(item, path, out);
                    path.truncate(len);
                    changed |= item.dirty;
                }
            }
            Kind::Str => {
                let text = decode(node.raw);
                if let Some((clean, fired)) = detect(&self.detectors, &text) {
                    for detector in fired {
                        out.push(field(path, &format!("detector:{}", detector.as_str())));
                    }
                    node.replace(quote(&clean));
                }
            }
            Kind::Scalar | Kind::Replaced(_) => {}
        }
        node.dirty |= changed;
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("tools", &self.tools)
            .field("detectors", &self.detectors)
            .field("key", &self.key.as_ref().map(|_| "<set>"))
            .finish()
    }
}

fn field(path: &str, rule: &str) -> RedactionField {
    RedactionField {
        path: path.to_owned(),
        rule: rule.to_owned(),
    }
}

fn key_matches(segment: &Segment, key: &str) -> bool {
    match segment {
        Segment::Any => true,
        Segment::Key(want) => want == key,
    }
}

/// An RFC 6901 array index: `0`, or digits without a leading zero.
fn array_index(key: &str) -> Option<usize> {
    let canonical = key == "0" || (!key.starts_with('0') && !key.is_empty());
    if canonical && key.bytes().all(|b| b.is_ascii_digit()) {
        key.parse().ok()
    } else {
        None
    }
}

/// Append `/key` (escaped) to `path`; returns the length to truncate back to.
fn push_key(path: &mut String, key: &str) -> usize {
    let len = path.len();
    path.push('/');
    path.push_str(&escape(key));
    len
}

fn push_index(path: &mut String, index: usize) -> usize {
    let len = path.len();
    // Writing to a String cannot fail.
    let _ = write!(path, "/{index}");
    len
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;

    fn raw(value: &Value) -> Box<RawValue> {
        RawValue::from_string(value.to_string()).expect("json")
    }

    fn ptr(text: &str) -> JsonPointer {
        JsonPointer::parse(text).expect("pointer")
    }

    fn rules(list: &[(Target, &str, RedactAction)]) -> RedactionRules {
        list.iter()
            .fold(RedactionRules::default(), |rules, (target, p, action)| {
                rules.with_rule("t", *target, ptr(p), *action)
            })
    }

    fn key() -> Option<Vec<u8>> {
        Some(b"test key".to_vec())
    }

    fn args(redactor: &Redactor, value: Value) -> (Option<Value>, Vec<(String, String)>) {
        let input = raw(&value);
        let out = redactor.redact("t", Some(&input), None);
        let value = out
            .arguments
            .map(|a| serde_json::from_str(a.get()).expect("valid json"));
        let fields = out.redacted.into_iter().map(|f| (f.path, f.rule)).collect();
        (value, fields)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, r)| ((*p).to_owned(), (*r).to_owned()))
            .collect()
    }

    #[test]
    fn drop_removes_members_and_elements() {
        let r = Redactor::new(
            &rules(&[
                (Target::Arguments, "/secret", RedactAction::Drop),
                (Target::Arguments, "/list/1", RedactAction::Drop),
            ]),
            None,
        )
        .expect("ok");
        let (value, fields) = args(&r, json!({"secret": 1, "keep": 2, "list": [0, 1, 2]}));
        assert_eq!(value, Some(json!({"keep": 2, "list": [0, 2]})));
        assert_eq!(
            fields,
            pairs(&[("/arguments/secret", "drop"), ("/arguments/list/1", "drop")])
        );
    }

    #[test]
    fn mask_replaces_any_value_by_stars() {
        let r = Redactor::new(
            &rules(&[
                (Target::Arguments, "/body", RedactAction::Mask),
                (Target::Arguments, "/nested", RedactAction::Mask),
            ]),
            None,
        )
        .expect("ok");
        let (value, fields) = args(&r, json!({"body": "hello", "nested": {"a": [1]}, "n": 3}));
        assert_eq!(value, Some(json!({"body": "***", "nested": "***", "n": 3})));
        assert_eq!(
            fields,
            pairs(&[("/arguments/body", "mask"), ("/arguments/nested", "mask")])
        );
    }

    #[test]
    fn hash_correlates_equal_values_and_depends_on_the_key() {
        let list = rules(&[(Target::Arguments, "/*/email", RedactAction::Hash)]);
        let r = Redactor::new(&list, key()).expect("ok");
        let (value, fields) = args(
            &r,
            json!({"a": {"email": "ann@x.io"}, "b": {"email": "ann@x.io"}, "c": {"email": "bob@x.io"}}),
        );
        let value = value.expect("kept");
        let a = value["a"]["email"].as_str().expect("hash");
        assert!(a.starts_with("hmac-sha256:"), "{a}");
        assert_eq!(a.len(), "hmac-sha256:".len() + 64);
        assert_eq!(value["b"]["email"], value["a"]["email"]);
        assert_ne!(value["c"]["email"], value["a"]["email"]);
        assert_eq!(fields.len(), 3);
        assert!(fields.iter().all(|(_, rule)| rule == "hash"));
        let other = Redactor::new(&list, Some(b"another key".to_vec())).expect("ok");
        let (again, _) = args(&other, json!({"a": {"email": "ann@x.io"}}));
        assert_ne!(again.expect("kept")["a"]["email"], value["a"]["email"]);
    }

    #[test]
    fn hash_reads_canonical_json_so_layout_does_not_matter() {
        let r = Redactor::new(
            &rules(&[(Target::Arguments, "/v", RedactAction::Hash)]),
            key(),
        )
        .expect("ok");
        let one = RawValue::from_string(r#"{"v":{"b":1,"a":"\u0041"}}"#.into()).expect("json");
        let two =
            RawValue::from_string(r#"{ "v" : { "a" : "A", "b" : 1 } }"#.into()).expect("json");
        let h1 = r.redact("t", Some(&one), None).arguments.expect("kept");
        let h2 = r.redact("t", Some(&two), None).arguments.expect("kept");
        let v1: Value = serde_json::from_str(h1.get()).expect("json");
        let v2: Value = serde_json::from_str(h2.get()).expect("json");
        assert_eq!(v1["v"], v2["v"]);
        assert_eq!(
            canonical_json(&two).expect("json"),
            r#"{"v":{"a":"A","b":1}}"#
        );
    }

    #[test]
    fn a_hash_rule_without_a_key_is_refused_at_load() {
        let list = rules(&[(Target::Result, "/x", RedactAction::Hash)]);
        let err = Redactor::new(&list, None).expect_err("no key");
        assert_eq!(
            err,
            RedactError::HashWithoutKey {
                tool: "t".into(),
                target: "result",
                pointer: "/x".into()
            }
        );
        assert!(err.to_string().contains("no audit redaction key"), "{err}");
        assert_eq!(
            Redactor::new(&list, Some(Vec::new())).expect_err("empty"),
            RedactError::EmptyKey
        );
    }

    #[test]
    fn pointer_escapes_and_wildcards_match_concrete_paths() {
        let r = Redactor::new(
            &rules(&[
                (Target::Arguments, "/a~1b", RedactAction::Mask),
                (Target::Arguments, "/c~0d", RedactAction::Mask),
                (Target::Arguments, "/attachments/*/data", RedactAction::Drop),
                (Target::Arguments, "/map/*", RedactAction::Mask),
            ]),
            None,
        )
        .expect("ok");
        let (value, fields) = args(
            &r,
            json!({
                "a/b": 1, "c~d": 2,
                "attachments": [{"name": "x", "data": "AAAA"}, {"name": "y"}, {"data": "BBBB"}],
                "map": {"k/1": 1, "k2": 2}
            }),
        );
        assert_eq!(
            value,
            Some(json!({
                "a/b": "***", "c~d": "***",
                "attachments": [{"name": "x"}, {"name": "y"}, {}],
                "map": {"k/1": "***", "k2": "***"}
            }))
        );
        assert_eq!(
            fields,
            pairs(&[
                ("/arguments/a~1b", "mask"),
                ("/arguments/c~0d", "mask"),
                ("/arguments/attachments/0/data", "drop"),
                ("/arguments/attachments/2/data", "drop"),
                ("/arguments/map/k~11", "mask"),
                ("/arguments/map/k2", "mask"),
            ])
        );
    }

    #[test]
    fn nested_arrays_and_wildcards_over_arrays() {
        let r = Redactor::new(
            &rules(&[
                (Target::Result, "/content/*/text", RedactAction::Mask),
                (Target::Result, "/grid/*/*", RedactAction::Drop),
                (Target::Result, "/deep/0/1/0", RedactAction::Mask),
            ]),
            None,
        )
        .expect("ok");
        let input = raw(&json!({
            "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"text": "b"}],
            "grid": [[1, 2], [3]],
            "deep": [[0, [9, 8]]]
        }));
        let out = r.redact("t", None, Some(&input));
        assert!(out.arguments.is_none());
        let value: Value = serde_json::from_str(out.result.expect("kept").get()).expect("json");
        assert_eq!(
            value,
            json!({
                "content": [{"type": "text", "text": "***"}, {"type": "image"}, {"text": "***"}],
                "grid": [[], []],
                "deep": [[0, ["***", 8]]]
            })
        );
        let paths: Vec<_> = out.redacted.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "/result/content/0/text",
                "/result/content/2/text",
                "/result/grid/0/0",
                "/result/grid/0/1",
                "/result/grid/1/0",
                "/result/deep/0/1/0",
            ]
        );
    }

    #[test]
    fn pointers_that_match_nothing_do_nothing_and_keep_the_bytes() {
        let r = Redactor::new(
            &rules(&[
                (Target::Arguments, "/missing", RedactAction::Mask),
                (Target::Arguments, "/list/01", RedactAction::Drop),
                (Target::Arguments, "/list/9", RedactAction::Drop),
                (Target::Arguments, "/n/x", RedactAction::Drop),
                (Target::Arguments, "/list/-", RedactAction::Mask),
            ]),
            None,
        )
        .expect("ok");
        let text = "{ \"list\" : [1, 2],\n \"n\": 1.50 }";
        let input = RawValue::from_string(text.into()).expect("json");
        let out = r.redact("t", Some(&input), None);
        assert_eq!(out.arguments.expect("kept").get(), text);
        assert!(out.redacted.is_empty());
    }

    #[test]
    fn untouched_parts_keep_their_bytes() {
        let r = Redactor::new(
            &rules(&[(Target::Arguments, "/a", RedactAction::Mask)]),
            None,
        )
        .expect("ok");
        let input = RawValue::from_string(
            r#"{"a": 1, "big": 123456789012345678901234567890, "f": 1.0e3, "s": "\u00e9"}"#.into(),
        )
        .expect("json");
        let out = r.redact("t", Some(&input), None);
        assert_eq!(
            out.arguments.expect("kept").get(),
            r#"{"a":"***","big":123456789012345678901234567890,"f":1.0e3,"s":"\u00e9"}"#
        );
    }

    #[test]
    fn the_whole_value_can_be_dropped_masked_or_hashed() {
        let r = Redactor::new(
            &rules(&[
                (Target::Arguments, "", RedactAction::Drop),
                (Target::Result, "", RedactAction::Hash),
            ]),
            key(),
        )
        .expect("ok");
        let input = raw(&json!({"a": 1}));
        let out = r.redact("t", Some(&input), Some(&input));
        assert!(out.arguments.is_none());
        assert!(
            out.result
                .expect("kept")
                .get()
                .starts_with("\"hmac-sha256:")
        );
        assert_eq!(
            out.redacted,
            vec![field("/arguments", "drop"), field("/result", "hash")]
        );
    }

    #[test]
    fn rules_apply_in_order() {
        let r = Redactor::new(
            &rules(&[
                (Target::Arguments, "/c", RedactAction::Mask),
                (Target::Arguments, "/c/email", RedactAction::Drop),
            ]),
            None,
        )
        .expect("ok");
        let (value, fields) = args(&r, json!({"c": {"email": "x"}}));
        assert_eq!(value, Some(json!({"c": "***"})));
        assert_eq!(fields, pairs(&[("/arguments/c", "mask")]));
    }

    #[test]
    fn a_redacted_record_lists_every_field_and_rule() {
        let list = rules(&[
            (Target::Arguments, "/body", RedactAction::Mask),
            (Target::Arguments, "/customer/email", RedactAction::Hash),
            (Target::Arguments, "/attachments/*/data", RedactAction::Drop),
            (Target::Result, "/content/*/text", RedactAction::Mask),
        ])
        .with_detector(Detector::Email)
        .with_detector(Detector::ApiKey);
        let r = Redactor::new(&list, key()).expect("ok");
        let arguments = raw(&json!({
            "body": "hi",
            "customer": {"email": "ann@example.com", "note": "cc bob@example.org"},
            "attachments": [{"data": "x"}],
            "token": "AKIAIOSFODNN7EXAMPLE"
        }));
        let result = raw(&json!({"content": [{"text": "t"}], "meta": "ann@example.com"}));
        let out = r.redact("t", Some(&arguments), Some(&result));
        let mut record = crate::Record::new(crate::Kind::ToolCall, "w");
        record.arguments = out.arguments;
        record.redacted = out.redacted;
        let line = serde_json::to_string(&record).expect("serialize");
        assert!(!line.contains("ann@example.com"), "{line}");
        assert!(!line.contains("AKIAIOSFODNN7EXAMPLE"), "{line}");
        let got: Vec<_> = record
            .redacted
            .iter()
            .map(|f| (f.path.as_str(), f.rule.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/arguments/body", "mask"),
                ("/arguments/customer/email", "hash"),
                ("/arguments/attachments/0/data", "drop"),
                ("/arguments/customer/note", "detector:email"),
                ("/arguments/token", "detector:api-key"),
                ("/result/content/0/text", "mask"),
                ("/result/meta", "detector:email"),
            ]
        );
    }

    #[test]
    fn nothing_to_do_copies_without_parsing() {
        let r = Redactor::new(
            &rules(&[(Target::Arguments, "/a", RedactAction::Mask)]),
            None,
        )
        .expect("ok");
        assert!(r.is_noop_for("other"));
        assert!(!r.is_noop_for("t"));
        // Not JSON a parser would accept as a tree (too deep), yet copied as is.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let input = RawValue::from_string(deep.clone()).expect("json");
        let out = r.redact("other", Some(&input), Some(&input));
        assert_eq!(out.arguments.expect("kept").get(), deep);
        assert!(out.redacted.is_empty());
        let everything = Redactor::new(
            &RedactionRules::default().with_detector(Detector::Jwt),
            None,
        )
        .expect("ok");
        assert!(!everything.is_noop_for("other"));
        assert!(Redactor::default().is_noop_for("t"));
    }

    #[test]
    fn values_too_deep_to_walk_are_dropped_whole() {
        let r = Redactor::new(
            &rules(&[(Target::Arguments, "/a", RedactAction::Mask)]),
            None,
        )
        .expect("ok");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let input = RawValue::from_string(deep).expect("json");
        let out = r.redact("t", Some(&input), None);
        assert!(out.arguments.is_none());
        assert_eq!(out.redacted, vec![field("/arguments", "drop")]);
    }

    #[test]
    fn detectors_keep_the_rest_of_the_string_and_name_each_rule_once() {
        let all = Detector::ALL
            .into_iter()
            .fold(RedactionRules::default(), RedactionRules::with_detector);
        let r = Redactor::new(&all, None).expect("ok");
        let (value, fields) = args(
            &r,
            json!({"s": "é ann@x.io, bob@y.io; Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.c2ln ✓"}),
        );
        assert_eq!(
            value,
            Some(json!({"s": "é [redacted:email], [redacted:email]; [redacted:bearer] ✓"}))
        );
        assert_eq!(
            fields,
            pairs(&[
                ("/arguments/s", "detector:email"),
                ("/arguments/s", "detector:bearer")
            ])
        );
    }

    #[test]
    fn escaped_strings_are_decoded_before_scanning() {
        let r = Redactor::new(
            &RedactionRules::default().with_detector(Detector::Email),
            None,
        )
        .expect("ok");
        let input = RawValue::from_string(r#"["ann\u0040example.com", "x"]"#.into()).expect("json");
        let out = r.redact("t", Some(&input), None);
        assert_eq!(
            out.arguments.expect("kept").get(),
            r#"["[redacted:email]","x"]"#
        );
        assert_eq!(out.redacted, vec![field("/arguments/0", "detector:email")]);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z0-9@. ~/_-]{0,24}".prop_map(Value::String),
            any::<String>().prop_map(Value::String),
            prop_oneof![
                Just("ann@example.com 4111111111111111"),
                Just("Bearer abc.def-123_45"),
                Just("AKIAIOSFODNN7EXAMPLE"),
                Just("eyJa.eyJb.c"),
            ]
            .prop_map(|s| Value::String(s.to_owned())),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z~/*]{0,3}", inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn redaction_of_any_json_never_panics_and_yields_json(
            value in arb_json(),
            pretty in any::<bool>(),
            pointers in prop::collection::vec("(/([a-z~/*]{0,2}|\\*|0|1))*", 0..4),
            actions in prop::collection::vec(0u8..3, 4),
        ) {
            let mut list = Detector::ALL
                .into_iter()
                .fold(RedactionRules::default(), RedactionRules::with_detector);
            for (i, text) in pointers.iter().enumerate() {
                let Ok(pointer) = JsonPointer::parse(text) else { continue };
                let action = [RedactAction::Drop, RedactAction::Mask, RedactAction::Hash][usize::from(actions[i])];
                list = list.with_rule("t", Target::Arguments, pointer.clone(), action);
                list = list.with_rule("t", Target::Result, pointer, action);
            }
            let r = Redactor::new(&list, key()).expect("ok");
            let text = if pretty {
                serde_json::to_string_pretty(&value).expect("json")
            } else {
                value.to_string()
            };
            let input = RawValue::from_string(text).expect("json");
            let out = r.redact("t", Some(&input), Some(&input));
            for part in [out.arguments, out.result].into_iter().flatten() {
                prop_assert!(serde_json::from_str::<Value>(part.get()).is_ok(), "{}", part.get());
            }
            for f in &out.redacted {
                prop_assert!(f.path.starts_with("/arguments") || f.path.starts_with("/result"));
            }
        }
    }
}
