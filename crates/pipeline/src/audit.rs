//! The audit layer: every `tools/call`, refused or not, on the record.
//!
//! Outermost of the pipeline, so it sees every call and every refusal any
//! layer below gives. For each call it builds one record of what the call
//! says (route, sessions, principal, model, tool, redacted arguments,
//! conversation, rationale, trace id, the policy's hash and tier):
//!
//! - a call the policy lets through at `read` is recorded once, when its
//!   reply is known (the tap), with the outcome, the result (or its digest
//!   when larger than `max_result`) and the latency. The record is queued,
//!   never waited for; when the audit store is failing the call goes on
//!   (`read_calls: fail-open`, the default, counted in
//!   `warden_audit_unrecorded_calls_total`) or is refused (`fail-closed`);
//! - a call at any other tier (`write`, later `confirm` and `approve`) is
//!   recorded twice: its **intent**, written durably before the call is
//!   forwarded, and its outcome, naming the intent. When the store cannot
//!   take the intent, the call is refused with `audit-unavailable` and is
//!   never forwarded: no write runs unrecorded;
//! - a call a layer refuses is recorded as a `refusal` with the decision
//!   and reason.
//!
//! Redaction is applied to the record's copies of arguments and result;
//! what is forwarded and what the agent receives are never touched.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use serde_json::value::RawValue;
use tower::{Layer, Service};
use warden_audit::record::{
    AnswerKind, ModelField, PrincipalField, RedactionField, ResultField, hex, timestamp,
};
use warden_audit::redact::Redactor;
use warden_audit::{AuditLog, Kind, Phase, Record};
use warden_policy::{Decision, Policy, Tier};

use crate::call::{Refusal, ToolCall, ToolOutcome};
use crate::policy_gate::SharedPolicy;
use crate::tap::{Answer, ReplySummary};

/// What to do with a read call when the audit store is failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadCalls {
    /// Forward it unrecorded (counted).
    #[default]
    FailOpen,
    /// Refuse it like a write.
    FailClosed,
}

/// How one route audits its calls.
pub struct AuditSettings {
    /// Where records go.
    pub log: AuditLog,
    /// The route's policy (to know a call's tier before it is decided, and
    /// the hash of the policy in force).
    pub policy: SharedPolicy,
    /// The upstream, as records name it.
    pub upstream: Arc<str>,
    /// Read calls when the store is failing.
    pub read_calls: ReadCalls,
    /// Largest result (JSON text) recorded in full; larger ones by digest.
    pub max_result: usize,
    /// The key of `hash` redaction rules.
    redaction_key: Option<Vec<u8>>,
    /// Read calls forwarded while their record could not be queued.
    pub unrecorded: Arc<AtomicU64>,
    /// What the policy last seen in force means for records.
    in_force: ArcSwapOption<InForce>,
}

/// A policy's hash and compiled redaction, made once per policy swapped in.
struct InForce {
    policy: Arc<Policy>,
    hash: Arc<str>,
    redaction: Redaction,
}

#[derive(Clone)]
enum Redaction {
    None,
    Rules(Arc<Redactor>),
    /// The rules could not be compiled (a `hash` rule without a key; the
    /// loaders refuse such a policy, so this is a defence): the values are
    /// withheld from the record rather than written unredacted.
    Withhold,
}

/// Builds [`Audit`] services for one route.
#[derive(Clone)]
pub struct AuditLayer {
    settings: Option<Arc<AuditSettings>>,
}

impl AuditLayer {
    /// Audit every call with `settings`.
    pub fn new(settings: Arc<AuditSettings>) -> AuditLayer {
        AuditLayer {
            settings: Some(settings),
        }
    }

    /// No audit: calls pass straight through.
    pub fn off() -> AuditLayer {
        AuditLayer { settings: None }
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Audit<S> {
        Audit {
            settings: self.settings.clone(),
            inner,
        }
    }
}

/// Records every call passed through it (see the module docs).
#[derive(Clone)]
pub struct Audit<S> {
    settings: Option<Arc<AuditSettings>>,
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

// === impl Audit ===

impl<S, C, R> Service<ToolCall<C>> for Audit<S>
where
    S: Service<ToolCall<C>, Response = ToolOutcome<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    C: Send + 'static,
    R: Send + 'static,
{
    type Response = ToolOutcome<R>;
    type Error = S::Error;
    // Without audit the inner future is returned as it is (no box per call).
    type Future =
        futures_util::future::Either<S::Future, BoxFuture<Result<ToolOutcome<R>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: ToolCall<C>) -> Self::Future {
        let Some(settings) = self.settings.clone() else {
            return futures_util::future::Either::Left(self.inner.call(call));
        };
        // The service that was made ready is the one that must be called.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let policy = settings.policy.load();
        let decision = policy.decide(
            &call.tool,
            call.facts.as_ref(),
            &crate::caller_of(&call.principal),
        );
        // A dry run runs nothing: no intent, one record of what it showed.
        let durable = matches!(decision, Decision::Allow { tier } if tier != Tier::Read)
            && call.dry_run == crate::dry_run::DryRun::No;
        let in_force = settings.in_force(&policy);
        drop(policy);
        let base = settings.record_of(&call, decision, &in_force);
        futures_util::future::Either::Right(Box::pin(async move {
            let intent = if durable {
                let mut intent = base.clone();
                intent.phase = Some(Phase::Intent);
                intent.decision = Some("allow".into());
                let id = intent.id;
                if let Err(err) = settings.log.record_durable(intent).await {
                    tracing::error!(tool = %call.tool, session = %call.session, error = %err, "Write call refused: its intent could not be recorded.");
                    let refusal = Refusal::audit_unavailable(&call.tool);
                    settings.log.record(refused(base, &refusal, None));
                    return Ok(ToolOutcome::Refused(refusal));
                }
                Some(id)
            } else {
                if settings.read_calls == ReadCalls::FailClosed && settings.is_failing() {
                    let refusal = Refusal::audit_unavailable(&call.tool);
                    settings.log.record(refused(base, &refusal, None));
                    return Ok(ToolOutcome::Refused(refusal));
                }
                None
            };
            // The record waits here for whichever comes first: the reply's
            // summary (forwarded) or the refusal of a layer below.
            let slot = Arc::new(Mutex::new(Some(base)));
            let from_tap = slot.clone();
            let tapped = settings.clone();
            let redaction = in_force.redaction.clone();
            call.tap.on_reply(move |summary| {
                if let Some(record) = take(&from_tap) {
                    tapped.write_outcome(record, intent, summary, &redaction);
                }
            });
            let outcome = inner.call(call).await;
            match &outcome {
                Ok(ToolOutcome::Forwarded(_)) => {}
                Ok(ToolOutcome::Refused(refusal)) => {
                    if let Some(record) = take(&slot) {
                        settings.log.record(refused(record, refusal, intent));
                    }
                }
                Err(_) => {
                    if let Some(record) = take(&slot) {
                        let summary = ReplySummary {
                            answer: Answer::Missing("the upstream did not answer"),
                            message: &[],
                            latency: Duration::ZERO,
                        };
                        settings.write_outcome(record, intent, &summary, &in_force.redaction);
                    }
                }
            }
            outcome
        }))
    }
}

fn take(slot: &Mutex<Option<Record>>) -> Option<Record> {
    slot.lock().map(|mut r| r.take()).unwrap_or(None)
}

/// `record` as the refusal of its call.
fn refused(mut record: Record, refusal: &Refusal, intent: Option<uuid::Uuid>) -> Record {
    record.kind = Kind::Refusal;
    if let Some(intent) = intent {
        record.phase = Some(Phase::Outcome);
        record.intent = Some(intent);
        record.id = uuid::Uuid::now_v7();
        record.time = timestamp(SystemTime::now());
    }
    record.tier = None;
    record.decision = Some(refusal.decision.into());
    record.reason = Some(refusal.reason.into());
    record
}

// === impl AuditSettings ===

impl AuditSettings {
    /// Settings for a route whose records go to `log`.
    pub fn new(
        log: AuditLog,
        policy: SharedPolicy,
        upstream: Arc<str>,
        read_calls: ReadCalls,
        max_result: usize,
        redaction_key: Option<Vec<u8>>,
    ) -> AuditSettings {
        AuditSettings {
            log,
            policy,
            upstream,
            read_calls,
            max_result,
            redaction_key,
            unrecorded: Arc::default(),
            in_force: ArcSwapOption::empty(),
        }
    }

    /// The hash and redaction of `policy`, made once per policy swapped in.
    fn in_force(&self, policy: &Arc<Policy>) -> Arc<InForce> {
        if let Some(known) = self.in_force.load_full()
            && Arc::ptr_eq(&known.policy, policy)
        {
            return known;
        }
        let rules = policy.redaction();
        let redaction = if rules.is_empty() {
            Redaction::None
        } else {
            match Redactor::new(rules, self.redaction_key.clone()) {
                Ok(redactor) => Redaction::Rules(Arc::new(redactor)),
                Err(err) => {
                    tracing::error!(error = %err, "The policy's redaction rules cannot be used; arguments and results are withheld from the audit trail.");
                    Redaction::Withhold
                }
            }
        };
        let made = Arc::new(InForce {
            policy: policy.clone(),
            hash: policy.content_hash().into(),
            redaction,
        });
        self.in_force.store(Some(made.clone()));
        made
    }

    fn is_failing(&self) -> bool {
        self.log.stats().failing.load(Ordering::Relaxed)
    }

    /// The record of what `call` says, before anything is decided.
    fn record_of<C>(
        &self,
        call: &ToolCall<C>,
        decision: Decision,
        in_force: &Arc<InForce>,
    ) -> Record {
        let mut record = self.log.new_record(Kind::ToolCall);
        record.route = Some(call.route.clone());
        record.upstream = Some(self.upstream.clone());
        record.mcp_session.clone_from(&call.mcp_session);
        record.agent_session = Some(call.session.clone());
        record.principal = Some(PrincipalField {
            agent: call.principal.agent.to_string(),
            user: call.principal.on_behalf_of.as_deref().map(str::to_owned),
        });
        let meta = &call.meta;
        if meta.model.is_some() || meta.model_version.is_some() {
            record.model = Some(ModelField {
                name: meta.model.clone(),
                version: meta.model_version.clone(),
            });
        }
        record.request_id = Some(call.id.clone());
        record.tool = Some(call.tool.clone());
        record.conversation.clone_from(&meta.conversation);
        record.rationale.clone_from(&meta.rationale);
        record.trace_id = meta
            .traceparent
            .as_deref()
            .and_then(|t| t.get(3..35))
            .map(str::to_owned);
        record.policy_hash = Some(in_force.hash.clone());
        if let Decision::Allow { tier } = decision {
            record.tier = Some(tier.as_str().into());
        }
        match &in_force.redaction {
            Redaction::None => record.arguments.clone_from(&call.arguments),
            Redaction::Rules(redactor) => {
                let redacted = redactor.redact(&call.tool, call.arguments.as_deref(), None);
                record.arguments = redacted.arguments;
                record.redacted = redacted.redacted;
            }
            Redaction::Withhold => {
                if call.arguments.is_some() {
                    record.redacted.push(withheld("/arguments"));
                }
            }
        }
        record
    }

    /// Complete `record` with the reply and queue it.
    fn write_outcome(
        &self,
        mut record: Record,
        intent: Option<uuid::Uuid>,
        reply: &ReplySummary<'_>,
        redaction: &Redaction,
    ) {
        if let Some(intent) = intent {
            record.phase = Some(Phase::Outcome);
            record.intent = Some(intent);
            record.id = uuid::Uuid::now_v7();
            record.time = timestamp(SystemTime::now());
        }
        record.decision = Some("allow".into());
        record.latency_us = Some(u64::try_from(reply.latency.as_micros()).unwrap_or(u64::MAX));
        let mut result = ResultField {
            answer: AnswerKind::Missing,
            code: None,
            missing: None,
            size: None,
            digest: None,
            body: None,
        };
        match &reply.answer {
            Answer::Result { is_error } => {
                result.answer = AnswerKind::Result;
                record.is_error = Some(*is_error);
            }
            Answer::Error { code } => {
                result.answer = AnswerKind::Error;
                result.code = *code;
            }
            Answer::Missing(why) => result.missing = Some((*why).to_owned()),
        }
        if !reply.message.is_empty() {
            result.size = Some(reply.message.len() as u64);
            result.digest = reply.digest().map(|d| hex(&d));
            if reply.message.len() <= self.max_result {
                result.body = response_body(reply.message);
                match (redaction, result.body.take()) {
                    (Redaction::Rules(redactor), Some(body)) => {
                        let tool = record.tool.as_deref().unwrap_or_default();
                        let redacted = redactor.redact(tool, None, Some(&*body));
                        result.body = redacted.result;
                        record.redacted.extend(redacted.redacted);
                    }
                    (Redaction::Withhold, Some(_)) => record.redacted.push(withheld("/result")),
                    (_, body) => result.body = body,
                }
            }
        }
        record.result = Some(result);
        if !self.log.record(record) && intent.is_none() {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A value left out of the record because its redaction rules could not be
/// applied.
fn withheld(path: &str) -> RedactionField {
    RedactionField {
        path: path.to_owned(),
        rule: "withheld".to_owned(),
    }
}

/// The `result` (or `error`) member of a JSON-RPC response.
fn response_body(message: &[u8]) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Response<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
        #[serde(borrow)]
        error: Option<&'a RawValue>,
    }
    let response: Response<'_> = serde_json::from_slice(message).ok()?;
    response.result.or(response.error).map(RawValue::to_owned)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::time::Instant;

    use arc_swap::ArcSwap;
    use bytes::Bytes;
    use tower::{ServiceExt, service_fn};
    use warden_audit::chain::ChainHead;
    use warden_audit::{Sealed, Store, StoreError, WriterOptions};
    use warden_policy::{Policy, ToolFacts};

    use super::*;
    use crate::policy_gate::PolicyGateLayer;

    /// A store in memory that can be told to fail.
    #[derive(Clone, Default)]
    struct Memory {
        lines: Arc<Mutex<Vec<String>>>,
        failing: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Store for Memory {
        fn name(&self) -> &'static str {
            "memory"
        }
        fn head(&mut self, _chain: &str) -> Result<Option<ChainHead>, StoreError> {
            Ok(None)
        }
        fn append(&mut self, batch: &[Sealed]) -> Result<(), StoreError> {
            if self.failing.load(Ordering::Relaxed) {
                return Err(StoreError::Database("down".into()));
            }
            let mut lines = self.lines.lock().expect("lock");
            lines.extend(batch.iter().map(|s| s.line.clone()));
            Ok(())
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
        fn rollback(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    impl Memory {
        fn records(&self) -> Vec<Record> {
            self.lines
                .lock()
                .expect("lock")
                .iter()
                .map(|l| serde_json::from_str(l).expect("record"))
                .filter(|r: &Record| r.kind != Kind::Checkpoint)
                .collect()
        }
    }

    fn settings(store: &Memory, policy: Policy, read_calls: ReadCalls) -> Arc<AuditSettings> {
        let log = AuditLog::start(
            store.clone(),
            Vec::new(),
            WriterOptions {
                instance: "test".into(),
                queue: 1024,
                max_pending: 1024,
                sync_interval: Duration::from_millis(10),
                checkpoint_every: 1000,
                checkpoint_interval: Duration::from_secs(60),
                signing_key: ed25519_dalek::SigningKey::from_bytes(&[1; 32]),
            },
        )
        .expect("log");
        Arc::new(AuditSettings::new(
            log,
            Arc::new(ArcSwap::from_pointee(policy)),
            "http://upstream/mcp".into(),
            read_calls,
            1024,
            Some(b"test key".to_vec()),
        ))
    }

    fn call(tool: &str, read_only: bool) -> ToolCall<()> {
        ToolCall {
            route: "/mcp".into(),
            session: "agent-1".into(),
            mcp_session: Some("mcp-1".into()),
            id: "7".into(),
            tool: tool.to_owned(),
            facts: Some(ToolFacts {
                read_only_hint: read_only,
            }),
            arguments: RawValue::from_string(r#"{"q":"x"}"#.into()).ok(),
            principal: crate::Principal::anonymous(),
            dry_run: crate::dry_run::DryRun::No,
            input_schema: None,
            as_task: None,
            confirmed: false,
            approval_note: Default::default(),
            meta: crate::CallMeta::default(),
            tap: crate::ReplyTap::default(),
            message: Bytes::from_static(b"{}"),
            context: (),
        }
    }

    /// An upstream that "replies" through the tap, as a forwarder does.
    fn upstream()
    -> impl Service<
        ToolCall<()>,
        Response = ToolOutcome<&'static str>,
        Error = Infallible,
        Future: Send,
    > + Clone
    + Send
    + 'static {
        service_fn(|call: ToolCall<()>| async move {
            if let Some(mut watch) = call.tap.start(call.id.clone(), Instant::now()) {
                watch.message(
                    br#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":false}}"#,
                    Instant::now(),
                );
            }
            Ok::<_, Infallible>(ToolOutcome::Forwarded("ran"))
        })
    }

    async fn until<T>(mut check: impl FnMut() -> Option<T>) -> T {
        for _ in 0..200 {
            if let Some(found) = check() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("timed out waiting for the audit writer");
    }

    #[tokio::test]
    async fn a_read_call_is_one_record_with_its_outcome() {
        let store = Memory::default();
        let settings = settings(&store, Policy::default(), ReadCalls::FailOpen);
        let audit = AuditLayer::new(settings.clone()).layer(upstream());
        let outcome = audit
            .oneshot(call("search", true))
            .await
            .expect("infallible");
        assert!(matches!(outcome, ToolOutcome::Forwarded("ran")));
        let records = until(|| Some(store.records()).filter(|r| !r.is_empty())).await;
        assert_eq!(records.len(), 1, "{records:?}");
        let record = &records[0];
        assert_eq!(record.kind, Kind::ToolCall);
        assert_eq!(record.phase, None);
        assert_eq!(record.tool.as_deref(), Some("search"));
        assert_eq!(record.tier.as_deref(), Some("read"));
        assert_eq!(record.decision.as_deref(), Some("allow"));
        assert_eq!(record.mcp_session.as_deref(), Some("mcp-1"));
        assert_eq!(
            record.arguments.as_ref().map(|a| a.get()),
            Some(r#"{"q":"x"}"#)
        );
        let result = record.result.as_ref().expect("result");
        assert_eq!(result.answer, AnswerKind::Result);
        assert_eq!(record.is_error, Some(false));
        assert_eq!(
            result.body.as_ref().map(|b| b.get()),
            Some(r#"{"content":[],"isError":false}"#)
        );
        assert_eq!(result.digest.as_ref().map(String::len), Some(64));
    }

    #[tokio::test]
    async fn a_write_call_has_a_durable_intent_then_its_outcome() {
        let store = Memory::default();
        let policy = Policy::default().with_rule("create_note", Tier::Write);
        let settings = settings(&store, policy, ReadCalls::FailOpen);
        let audit = AuditLayer::new(settings.clone()).layer(upstream());
        audit
            .oneshot(call("create_note", false))
            .await
            .expect("infallible");
        let records = until(|| Some(store.records()).filter(|r| r.len() >= 2)).await;
        assert_eq!(records[0].phase, Some(Phase::Intent));
        assert_eq!(records[0].tier.as_deref(), Some("write"));
        assert_eq!(records[1].phase, Some(Phase::Outcome));
        assert_eq!(records[1].intent, Some(records[0].id));
        assert!(records[1].id > records[0].id);
    }

    #[tokio::test]
    async fn a_write_call_is_refused_and_never_forwarded_when_its_intent_cannot_be_recorded() {
        let store = Memory::default();
        store.failing.store(true, Ordering::Relaxed);
        let policy = Policy::default().with_rule("create_note", Tier::Write);
        let settings = settings(&store, policy, ReadCalls::FailOpen);
        let forwarded = Arc::new(AtomicU64::new(0));
        let counted = forwarded.clone();
        let upstream = service_fn(move |_call: ToolCall<()>| {
            counted.fetch_add(1, Ordering::Relaxed);
            async { Ok::<_, Infallible>(ToolOutcome::Forwarded("ran")) }
        });
        let audit = AuditLayer::new(settings.clone()).layer(upstream);
        match audit
            .oneshot(call("create_note", false))
            .await
            .expect("infallible")
        {
            ToolOutcome::Refused(refusal) => assert_eq!(refusal.reason, "audit-unavailable"),
            ToolOutcome::Forwarded(_) => panic!("an unrecorded write was forwarded"),
        }
        assert_eq!(forwarded.load(Ordering::Relaxed), 0);
        // The store comes back: the refusal itself reaches the record, and
        // no intent does.
        store.failing.store(false, Ordering::Relaxed);
        let records =
            until(|| Some(store.records()).filter(|r| r.iter().any(|r| r.kind == Kind::Refusal)))
                .await;
        assert!(
            records.iter().all(|r| r.phase != Some(Phase::Intent)),
            "{records:?}"
        );
        let refusal = records
            .iter()
            .find(|r| r.kind == Kind::Refusal)
            .expect("refusal");
        assert_eq!(refusal.reason.as_deref(), Some("audit-unavailable"));
    }

    #[tokio::test]
    async fn read_calls_follow_the_fail_mode_when_the_store_is_failing() {
        for (mode, forwarded) in [(ReadCalls::FailOpen, true), (ReadCalls::FailClosed, false)] {
            let store = Memory::default();
            store.failing.store(true, Ordering::Relaxed);
            let policy = Policy::default().with_rule("create_note", Tier::Write);
            let settings = settings(&store, policy, mode);
            // A refused write makes the writer find out the store fails.
            let _ = AuditLayer::new(settings.clone())
                .layer(upstream())
                .oneshot(call("create_note", false))
                .await;
            until(|| settings.is_failing().then_some(())).await;
            let outcome = AuditLayer::new(settings.clone())
                .layer(upstream())
                .oneshot(call("search", true))
                .await
                .expect("infallible");
            assert_eq!(
                matches!(outcome, ToolOutcome::Forwarded(_)),
                forwarded,
                "{mode:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_record_is_redacted_and_the_call_is_not() {
        let store = Memory::default();
        let policy = Policy::from_yaml_str(
            "version: 1\nredact:\n  detectors: [email]\n  tools:\n    search:\n      arguments:\n        /q: hash\n      result:\n        /content: drop\n",
            "p.yaml",
        )
        .expect("policy");
        let settings = settings(&store, policy, ReadCalls::FailOpen);
        let seen = Arc::new(Mutex::new(None));
        let seen_by_upstream = seen.clone();
        let upstream = service_fn(move |call: ToolCall<()>| {
            *seen_by_upstream.lock().expect("lock") =
                call.arguments.as_ref().map(|a| a.get().to_owned());
            upstream().oneshot(call)
        });
        let mut call = call("search", true);
        call.arguments = RawValue::from_string(r#"{"q":"ada@example.com","n":1}"#.into()).ok();
        AuditLayer::new(settings.clone())
            .layer(upstream)
            .oneshot(call)
            .await
            .expect("infallible");
        assert_eq!(
            seen.lock().expect("lock").as_deref(),
            Some(r#"{"q":"ada@example.com","n":1}"#),
            "the upstream gets the arguments as sent"
        );
        let records = until(|| Some(store.records()).filter(|r| !r.is_empty())).await;
        let arguments = records[0].arguments.as_ref().expect("arguments").get();
        assert!(arguments.contains("hmac-sha256:"), "{arguments}");
        assert!(!arguments.contains("ada@"), "{arguments}");
        let body = records[0]
            .result
            .as_ref()
            .and_then(|r| r.body.as_ref())
            .expect("body");
        assert_eq!(body.get(), r#"{"isError":false}"#);
        let rules: Vec<(&str, &str)> = records[0]
            .redacted
            .iter()
            .map(|r| (r.path.as_str(), r.rule.as_str()))
            .collect();
        assert_eq!(
            rules,
            [("/arguments/q", "hash"), ("/result/content", "drop")]
        );
    }

    #[tokio::test]
    async fn a_refusal_below_is_recorded_with_its_reason() {
        let store = Memory::default();
        let settings = settings(&store, Policy::default(), ReadCalls::FailOpen);
        let stack = tower::ServiceBuilder::new()
            .layer(AuditLayer::new(settings.clone()))
            .layer(PolicyGateLayer::new(settings.policy.clone()))
            .service(upstream());
        let outcome = stack
            .oneshot(call("create_note", false))
            .await
            .expect("infallible");
        assert!(matches!(outcome, ToolOutcome::Refused(_)));
        let records = until(|| Some(store.records()).filter(|r| !r.is_empty())).await;
        assert_eq!(records[0].kind, Kind::Refusal);
        assert_eq!(records[0].decision.as_deref(), Some("deny"));
        assert_eq!(records[0].reason.as_deref(), Some("not-read-only"));
        assert_eq!(records[0].tier, None);
    }
}
