//! Micro-benchmarks of Warden's per-call hot path: the strict request parse
//! and the policy decision. CI only builds them (`cargo bench --no-run`).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use warden_policy::{Policy, Tier, ToolFacts};
use warden_protocol::Incoming;

const TOOL_CALL: &str = r#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#;

const POLICY: &str =
    "version: 1\ndefault: read-only-hint\ntools:\n  create_note: write\n  send_invoice: deny\n";

fn parse(c: &mut Criterion) {
    let body = Bytes::from_static(TOOL_CALL.as_bytes());
    c.bench_function("Incoming::parse tools/call (small echo)", |b| {
        b.iter(|| Incoming::parse(black_box(&body)).expect("valid tools/call"))
    });
}

fn decide(c: &mut Criterion) {
    let policy = Policy::from_yaml_str(POLICY, "bench").expect("valid policy");
    assert_eq!(policy.rule("create_note"), Some(Tier::Write));
    let read_only = ToolFacts {
        read_only_hint: true,
    };
    let mutating = ToolFacts {
        read_only_hint: false,
    };
    c.bench_function("Policy::decide read-only tool (default rule)", |b| {
        b.iter(|| policy.decide(black_box("echo"), black_box(Some(&read_only))))
    });
    c.bench_function("Policy::decide named write tool", |b| {
        b.iter(|| policy.decide(black_box("create_note"), black_box(Some(&mutating))))
    });
    c.bench_function("Policy::decide refused tool", |b| {
        b.iter(|| policy.decide(black_box("send_invoice"), black_box(Some(&mutating))))
    });
}

criterion_group!(hot_path, parse, decide);
criterion_main!(hot_path);
