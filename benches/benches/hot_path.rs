//! Micro-benchmarks of Warden's per-call hot path: the strict request parse,
//! the policy decision, reading a call's own facts, re-encoding a relayed
//! SSE event, and framing a message for a stdio link. CI only builds them (`cargo bench --no-run`).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use warden_pipeline::{CallMeta, FactHeaders};
use warden_policy::{Policy, Tier, ToolFacts};
use warden_protocol::Incoming;
use warden_protocol::line::one_line;
use warden_protocol::sse::SseEvent;

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
    let caller = warden_policy::Caller {
        agent: "bench-agent",
        groups: &[],
    };
    c.bench_function("Policy::decide read-only tool (default rule)", |b| {
        b.iter(|| policy.decide(black_box("echo"), black_box(Some(&read_only)), &caller))
    });
    c.bench_function("Policy::decide named write tool", |b| {
        b.iter(|| {
            policy.decide(
                black_box("create_note"),
                black_box(Some(&mutating)),
                &caller,
            )
        })
    });
    c.bench_function("Policy::decide refused tool", |b| {
        b.iter(|| {
            policy.decide(
                black_box("send_invoice"),
                black_box(Some(&mutating)),
                &caller,
            )
        })
    });
}

const TOOL_RESULT: &str = r#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"Echo: hi"}],"structuredContent":{"echo":"hi"}}}"#;

fn frame(c: &mut Criterion) {
    let event = SseEvent::message(TOOL_RESULT);
    c.bench_function("SseEvent::encode tools/call result (relay)", |b| {
        b.iter(|| black_box(&event).encode())
    });
    c.bench_function("line::one_line tools/call (stdio write)", |b| {
        b.iter(|| one_line(black_box(TOOL_CALL.as_bytes())).map(|l| l.len()))
    });
    let pretty = serde_json::to_string_pretty(
        &serde_json::from_str::<serde_json::Value>(TOOL_CALL).expect("JSON"),
    )
    .expect("pretty");
    c.bench_function(
        "line::one_line pretty-printed tools/call (rewritten)",
        |b| b.iter(|| one_line(black_box(pretty.as_bytes())).map(|l| l.len())),
    );
}

fn facts(c: &mut Criterion) {
    let no_headers = |_: &str| None;
    c.bench_function("CallMeta::read no _meta, no headers", |b| {
        b.iter(|| CallMeta::read(black_box(None), no_headers))
    });
    let meta = serde_json::value::RawValue::from_string(
        r#"{"progressToken":"p-1","warden/model":"claude-x","warden/conversation":"c-42","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#.to_owned(),
    )
    .expect("JSON");
    c.bench_function("CallMeta::read typical _meta", |b| {
        b.iter(|| CallMeta::read(black_box(Some(&meta)), no_headers))
    });
    // What a Streamable HTTP call looks up when it has no `_meta`: every
    // fact in a typical agent's request headers, none of them there.
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("host", "127.0.0.1:8080"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("mcp-protocol-version", "2025-11-25"),
        ("user-agent", "node"),
        ("content-length", "120"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    c.bench_function(
        "CallMeta::read no _meta, a lookup per fact in a typical HeaderMap",
        |b| {
            b.iter(|| {
                CallMeta::read(black_box(None), |name| {
                    headers.get(name).and_then(|v| v.to_str().ok())
                })
            })
        },
    );
    c.bench_function(
        "CallMeta::read no _meta, FactHeaders::pick of a typical HeaderMap",
        |b| {
            b.iter(|| {
                let picked = FactHeaders::pick(
                    black_box(&headers)
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_bytes())),
                );
                CallMeta::read(black_box(None), |name| picked.get(name))
            })
        },
    );
}

criterion_group!(hot_path, parse, decide, frame, facts);
criterion_main!(hot_path);
