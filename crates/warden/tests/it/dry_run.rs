//! Dry runs: a mutating tool lists a `dryRun` argument; `dryRun: true` is
//! answered by Warden (validated, the exact payload shown, nothing sent);
//! anything else is a real call, and the upstream never sees the flag.

use serde_json::{Value, json};

use crate::audit_trail::records;
use crate::credentials::recording_upstream;
use crate::support::*;

const POLICY: &str = "version: 1\ntools:\n  create_note: write\n  send_invoice: deny\n";

fn call(id: u64, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}})
}

#[tokio::test]
async fn a_dry_run_is_validated_and_shown_without_reaching_the_upstream() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let warden = WardenBuilder::new(&upstream)
        .policy(POLICY)
        .audit(warden::audit::AuditConfig::in_dir(&dir, "it"))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;

    // Listed: mutating tools offer dryRun; read-only ones do not.
    let listed = agent.list(1).await.json();
    let tools = listed["result"]["tools"].as_array().expect("tools");
    let schema_of = |name: &str| {
        tools
            .iter()
            .find(|t| t["name"] == name)
            .map(|t| t["inputSchema"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        schema_of("create_note")["properties"]["dryRun"]["type"],
        "boolean"
    );
    assert_eq!(
        schema_of("search_customers")["properties"]["dryRun"],
        Value::Null
    );

    // A valid preview: the exact payload, nothing sent.
    let preview = agent
        .post(&call(
            2,
            "create_note",
            json!({"customer_id": 1, "text": "hello", "dryRun": true}),
        ))
        .await
        .json();
    let result = &preview["result"];
    assert_eq!(result["isError"], false, "{preview}");
    let text = result["content"][0]["text"].as_str().expect("text");
    assert!(
        text.starts_with("DRY RUN — would call 'create_note' on http://"),
        "{text}"
    );
    let structured = &result["structuredContent"];
    assert_eq!(structured["warden"]["decision"], "dry-run");
    let payload = &structured["payload"];
    assert_eq!(payload["params"]["name"], "create_note");
    assert_eq!(
        payload["params"]["arguments"],
        json!({"customer_id": 1, "text": "hello"})
    );
    assert_eq!(payload["id"], 2);
    assert_eq!(demo.notes_written(), 0);

    // Invalid arguments: the validator's errors, by JSON Pointer.
    let invalid = agent
        .post(&call(
            3,
            "create_note",
            json!({"customer_id": "one", "dryRun": true}),
        ))
        .await
        .json();
    let result = &invalid["result"];
    assert_eq!(result["isError"], true, "{invalid}");
    assert_eq!(
        result["structuredContent"]["warden"]["reason"],
        "invalid-arguments"
    );
    let pointers: Vec<&str> = result["structuredContent"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert!(pointers.contains(&"/customer_id"), "{pointers:?}");
    assert!(
        pointers.contains(&""),
        "the missing `text` is reported on the arguments: {pointers:?}"
    );
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("/customer_id")),
        "{invalid}"
    );

    // A refused tool stays refused, dry run or not.
    assert_refused(
        &agent
            .call(
                4,
                "send_invoice",
                json!({"customer_id": 1, "amount_cents": 5, "dryRun": true}),
            )
            .await,
        "send_invoice",
        "denied-by-policy",
    );
    assert_eq!(demo.notes_written(), 0);
    assert_eq!(demo.invoices_sent(), 0);

    // Anything but exactly `true` is a real call.
    for (id, flag) in [(5, json!(false)), (6, json!("true")), (7, json!(1))] {
        let real = agent
            .post(&call(
                id,
                "create_note",
                json!({"customer_id": 1, "text": "real", "dryRun": flag}),
            ))
            .await
            .json();
        assert_eq!(
            real["result"]["content"][0]["text"], "Note added to Ada Lovelace.",
            "{flag}: {real}"
        );
    }
    assert_eq!(demo.notes_written(), 3);

    warden.running.shutdown().await;
    let trail = records(&dir);
    let previews: Vec<_> = trail
        .iter()
        .filter(|r| r.decision.as_deref() == Some("dry-run"))
        .collect();
    assert_eq!(
        previews.len(),
        2,
        "both dry runs are on the record as dry runs"
    );
    assert!(
        previews.iter().all(|r| r.phase.is_none()),
        "no intent for a dry run: {previews:?}"
    );
}

#[tokio::test]
async fn the_upstream_never_sees_the_flag_unless_it_previews_itself() {
    let (upstream, seen) = recording_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  create_note: write\n  explode:\n    tier: write\n    dry_run: upstream\n")
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let reply = agent
        .post(&call(
            1,
            "create_note",
            json!({"text": "x", "dryRun": false}),
        ))
        .await;
    assert_eq!(reply.json()["result"]["content"][0]["text"], "done");
    // A read tool's arguments are its own: a `dryRun` there passes.
    let read = agent.post(&call(2, "echo", json!({"dryRun": true}))).await;
    assert_eq!(read.json()["result"]["content"][0]["text"], "done");
    // dry_run: upstream: the flag is the upstream's, and so is the answer
    // (this one fails with HTTP 500, which the agent sees as it is).
    let previewed = agent
        .post(&call(3, "explode", json!({"dryRun": true})))
        .await;
    assert_eq!(previewed.status, http::StatusCode::INTERNAL_SERVER_ERROR);
    let seen = seen.lock().expect("lock").clone();
    let bodies: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "tools/call")
        .map(|s| s.body.as_str())
        .collect();
    let create = bodies
        .iter()
        .find(|b| b.contains("create_note"))
        .expect("create_note sent");
    assert!(!create.contains("dryRun"), "{create}");
    let echo = bodies
        .iter()
        .find(|b| b.contains("\"echo\""))
        .expect("echo sent");
    assert!(
        echo.contains("dryRun"),
        "a read tool's own arguments pass untouched: {echo}"
    );
    let explode = bodies
        .iter()
        .find(|b| b.contains("explode"))
        .expect("explode sent");
    assert!(
        explode.contains("\"dryRun\":true"),
        "dry_run: upstream forwards the flag: {explode}"
    );
}
