//! Dry runs: any mutating call can be previewed without side effects.
//!
//! Warden lists a boolean `dryRun` argument for every tool the policy lets
//! a caller run at a mutating tier (see `crate::catalogue`), and takes it
//! off every call before the upstream sees it. A call whose `dryRun` is
//! exactly `true` stops here: Warden validates the arguments against the
//! tool's own `inputSchema` (draft 2020-12, draft-07 and the others the
//! `jsonschema` crate knows) and answers with the exact JSON-RPC message it
//! would send, without sending it and without a hold. Anything else
//! (`false`, a string, a number) is a real call: a dry run can never be
//! used to skip what a real call goes through. A tool whose rule says
//! `dry_run: upstream` implements dry runs itself: its flag is forwarded.
//!
//! It sits after the policy (a refused tool is refused, dry run or not)
//! and before the hold and the upstream. The audit layer records a dry run
//! as one, with decision `dry-run` (no intent: nothing is run).

use std::collections::HashMap;
use std::future::{Ready, ready};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::Either;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tower::{Layer, Service};

use crate::call::{Refusal, ToolCall, ToolOutcome};

/// The argument that asks for a dry run.
pub const DRY_RUN_KEY: &str = "dryRun";
/// Most compiled schemas a route keeps.
const MAX_VALIDATORS: usize = 256;

/// What a call's `dryRun` argument asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DryRun {
    /// A real call (no `dryRun`, or anything but `true`).
    #[default]
    No,
    /// A preview: `dryRun` is exactly `true`.
    Preview,
}

/// A call's arguments and message with `dryRun` taken off, and what it
/// asked for; `None` when the arguments have no `dryRun` (nothing to edit).
pub fn take_flag(
    arguments: Option<&RawValue>,
    message: &[u8],
) -> Option<(DryRun, Option<Box<RawValue>>, Bytes)> {
    type Members = std::collections::BTreeMap<String, Box<RawValue>>;
    let mut members: Members = serde_json::from_str(arguments?.get()).ok()?;
    let flag = members.remove(DRY_RUN_KEY)?;
    let asked = if flag.get().trim() == "true" {
        DryRun::Preview
    } else {
        DryRun::No
    };
    let stripped = serde_json::value::to_raw_value(&members).ok()?;
    // Every other member keeps its bytes: only `arguments` is written anew.
    let mut top: Members = serde_json::from_slice(message).ok()?;
    let mut params: Members = serde_json::from_str(top.get("params")?.get()).ok()?;
    params.insert("arguments".into(), stripped.clone());
    top.insert(
        "params".into(),
        serde_json::value::to_raw_value(&params).ok()?,
    );
    let message = serde_json::to_vec(&top).ok()?;
    Some((asked, Some(stripped), Bytes::from(message)))
}

/// Builds [`DryRunGate`]s for one route.
#[derive(Clone)]
pub struct DryRunLayer {
    upstream: Arc<str>,
    validators: Arc<Mutex<HashMap<Arc<str>, Arc<Compiled>>>>,
}

/// Answers dry runs; passes every other call on.
#[derive(Clone)]
pub struct DryRunGate<S> {
    inner: S,
    layer: DryRunLayer,
}

/// A schema, compiled (or why it could not be).
enum Compiled {
    Valid(Box<jsonschema::Validator>),
    Invalid(String),
}

// === impl DryRunLayer ===

impl DryRunLayer {
    /// Dry runs on a route whose upstream logs and answers name `upstream`.
    pub fn new(upstream: Arc<str>) -> DryRunLayer {
        DryRunLayer {
            upstream,
            validators: Arc::default(),
        }
    }

    fn compiled(&self, schema: &Arc<str>) -> Arc<Compiled> {
        let mut validators = self
            .validators
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = validators.get(schema) {
            return found.clone();
        }
        let compiled = match serde_json::from_str::<Value>(schema) {
            Err(err) => Compiled::Invalid(err.to_string()),
            Ok(value) => match jsonschema::validator_for(&value) {
                Ok(validator) => Compiled::Valid(Box::new(validator)),
                Err(err) => Compiled::Invalid(err.to_string()),
            },
        };
        if validators.len() >= MAX_VALIDATORS {
            validators.clear();
        }
        let compiled = Arc::new(compiled);
        validators.insert(schema.clone(), compiled.clone());
        compiled
    }

    /// Warden's answer to a dry run of `call`.
    pub fn preview<C>(&self, call: &ToolCall<C>) -> Refusal {
        let arguments: Value = call
            .arguments
            .as_deref()
            .and_then(|a| serde_json::from_str(a.get()).ok())
            .unwrap_or_else(|| Value::Object(Map::new()));
        let mut details = Map::new();
        let errors: Vec<Value> = match call.input_schema.as_ref().map(|s| self.compiled(s)) {
            None => {
                details.insert(
                    "note".into(),
                    json!("the upstream listed no inputSchema: the arguments were not validated"),
                );
                Vec::new()
            }
            Some(compiled) => match compiled.as_ref() {
                Compiled::Invalid(why) => {
                    details.insert(
                        "note".into(),
                        json!(format!(
                            "the upstream's inputSchema is not a valid JSON Schema ({why}): the arguments were not validated"
                        )),
                    );
                    Vec::new()
                }
                Compiled::Valid(validator) => validator
                    .iter_errors(&arguments)
                    .map(|error| {
                        json!({
                            "pointer": error.instance_path().to_string(),
                            "message": error.to_string(),
                        })
                    })
                    .collect(),
            },
        };
        if !errors.is_empty() {
            let listed: Vec<String> = errors
                .iter()
                .map(|e| {
                    let pointer = e["pointer"].as_str().unwrap_or_default();
                    let pointer = if pointer.is_empty() {
                        "(the arguments)"
                    } else {
                        pointer
                    };
                    format!("{pointer}: {}", e["message"].as_str().unwrap_or_default())
                })
                .collect();
            details.insert("errors".into(), Value::Array(errors));
            return Refusal {
                decision: "dry-run",
                reason: "invalid-arguments",
                tool: call.tool.clone(),
                message: format!(
                    "DRY RUN — the arguments for '{}' are not valid, so the call would fail: {}. Nothing was sent.",
                    call.tool,
                    listed.join("; ")
                ),
                is_error: true,
                details: Some(details),
            };
        }
        let payload: Value = serde_json::from_slice(&call.message).unwrap_or(Value::Null);
        details.insert("upstream".into(), json!(self.upstream.as_ref()));
        details.insert("payload".into(), payload);
        Refusal {
            decision: "dry-run",
            reason: "dry-run",
            tool: call.tool.clone(),
            message: format!(
                "DRY RUN — would call '{}' on {} with {}. Nothing was sent; call again without dryRun to run it.",
                call.tool, self.upstream, arguments
            ),
            is_error: false,
            details: Some(details),
        }
    }
}

impl<S> Layer<S> for DryRunLayer {
    type Service = DryRunGate<S>;

    fn layer(&self, inner: S) -> DryRunGate<S> {
        DryRunGate {
            inner,
            layer: self.clone(),
        }
    }
}

// === impl DryRunGate ===

impl<S, C, R> Service<ToolCall<C>> for DryRunGate<S>
where
    S: Service<ToolCall<C>, Response = ToolOutcome<R>>,
{
    type Response = ToolOutcome<R>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<ToolOutcome<R>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: ToolCall<C>) -> Self::Future {
        match call.dry_run {
            DryRun::No => Either::Left(self.inner.call(call)),
            DryRun::Preview => {
                tracing::info!(tool = %call.tool, session = %call.session, agent = %call.principal.agent, "Dry run answered by Warden.");
                Either::Right(ready(Ok(ToolOutcome::Refused(self.layer.preview(&call)))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).expect("json")
    }

    #[test]
    fn only_exactly_true_asks_for_a_preview_and_the_flag_never_reaches_the_upstream() {
        let message = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_note","arguments":{"text":"hi \u00e9","dryRun":true,"n":1.50}}}"#;
        let arguments = raw(r#"{"text":"hi \u00e9","dryRun":true,"n":1.50}"#);
        let (asked, stripped, edited) = take_flag(Some(&arguments), message).expect("edited");
        assert_eq!(asked, DryRun::Preview);
        let text = String::from_utf8_lossy(&edited);
        assert!(!text.contains("dryRun"), "{text}");
        // The other members keep their bytes.
        assert!(
            text.contains(r#""text":"hi \u00e9""#) && text.contains(r#""n":1.50"#),
            "{text}"
        );
        assert!(!stripped.expect("arguments").get().contains("dryRun"));
        for not_a_preview in [r#"false"#, r#""true""#, "1", "null", r#"{"x":true}"#] {
            let arguments = raw(&format!(r#"{{"dryRun":{not_a_preview}}}"#));
            let message = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{{"dryRun":{not_a_preview}}}}}}}"#
            );
            let (asked, _, edited) =
                take_flag(Some(&arguments), message.as_bytes()).expect("edited");
            assert_eq!(asked, DryRun::No, "{not_a_preview}");
            assert!(!String::from_utf8_lossy(&edited).contains("dryRun"));
        }
        assert!(take_flag(Some(&raw(r#"{"text":"x"}"#)), message).is_none());
        assert!(take_flag(None, message).is_none());
    }
}
