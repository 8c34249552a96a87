//! Read-only by default, graduation, refusal shape, and the attacks an agent
//! can try to get a denied tool executed.

use http::StatusCode;
use serde_json::json;

use crate::support::*;

const DEMO_POLICY: &str = "version: 1\ntools:\n  send_invoice: deny\n";

#[tokio::test]
async fn read_calls_pass_and_write_calls_are_refused_before_the_upstream() {
    let (upstream, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy(DEMO_POLICY)
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;

    let read = agent
        .call(1, "search_customers", json!({"query": "grace"}))
        .await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(
        read.json()["result"]["structuredContent"]["customers"][0]["name"],
        "Grace Hopper"
    );

    assert_refused(
        &agent
            .call(2, "create_note", json!({"customer_id": 1, "text": "x"}))
            .await,
        "create_note",
        "not-read-only",
    );
    assert_refused(
        &agent
            .call(
                3,
                "send_invoice",
                json!({"customer_id": 1, "amount_cents": 1}),
            )
            .await,
        "send_invoice",
        "denied-by-policy",
    );
    assert_eq!(demo.invoices_sent(), 0);
    assert_eq!(demo.notes_written(), 0);
}

#[tokio::test]
async fn a_graduated_tool_is_listed_and_reaches_the_upstream() {
    let (upstream, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  create_note: write\n")
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let listed = agent.list(1).await.json();
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["search_customers", "get_customer", "echo", "create_note"]
    );
    let reply = agent
        .call(2, "create_note", json!({"customer_id": 2, "text": "hello"}))
        .await;
    assert_eq!(
        reply.json()["result"]["content"][0]["text"],
        "Note added to Grace Hopper."
    );
    assert_eq!(demo.notes_written(), 1);
}

#[tokio::test]
async fn tools_list_hides_what_the_caller_may_not_call() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy(DEMO_POLICY)
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let listed = agent.list(1).await.json();
    let tools = listed["result"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, vec!["search_customers", "get_customer", "echo"]);
    // Listed tools are passed whole: schema and annotations intact.
    assert_eq!(tools[0]["inputSchema"]["required"][0], "query");
    assert_eq!(tools[0]["annotations"]["readOnlyHint"], true);
}

#[tokio::test]
async fn guessing_a_name_without_listing_is_judged_on_the_upstream_catalogue() {
    let (upstream, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    // No tools/list first: Warden fetches the catalogue itself.
    assert_refused(
        &agent
            .call(
                1,
                "send_invoice",
                json!({"customer_id": 1, "amount_cents": 5}),
            )
            .await,
        "send_invoice",
        "not-read-only",
    );
    assert_refused(
        &agent.call(2, "drop_tables", json!({})).await,
        "drop_tables",
        "unknown-tool",
    );
    let ok = agent.call(3, "get_customer", json!({"id": 3})).await;
    assert_eq!(
        ok.json()["result"]["structuredContent"]["name"],
        "Alan Turing"
    );
    assert_eq!(demo.invoices_sent(), 0);
    let metrics = warden.running.warden.metrics.encode();
    assert!(
        metrics.contains("warden_catalogue_fetches_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_rule_cannot_grant_a_tool_the_upstream_does_not_list() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ndefault: allow\ntools:\n  ghost: write\n")
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    assert_refused(
        &agent.call(1, "ghost", json!({})).await,
        "ghost",
        "unknown-tool",
    );
}

#[tokio::test]
async fn ambiguous_json_never_reaches_the_upstream() {
    let (upstream, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy(DEMO_POLICY)
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    for (body, fragment) in [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_customers","name":"send_invoice","arguments":{"customer_id":1,"amount_cents":1}}}"#,
            "key \"name\" appears twice",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_customers","Name":"send_invoice","arguments":{"customer_id":1,"amount_cents":1}}}"#,
            "differs from \"name\" only by case",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"send_invoice","arguments":{"customer_id":1,"amount_cents":1}}}"#,
            "key \"method\" appears twice",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_customers","n\u0061me":"send_invoice"}}"#,
            "key \"name\" appears twice",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_invoice","arguments":{"customer_id":1,"amount_cents":1,"amount_cents":9}}}"#,
            "key \"amount_cents\" appears twice",
        ),
        (
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"send_invoice","arguments":{"customer_id":1,"amount_cents":1}}}"#,
            "tools/call must be a request",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"send_invoice","arguments":{"customer_id":1,"amount_cents":1}}}"#,
            "differs from \"tools/call\" only by case",
        ),
    ] {
        let message = assert_error(&agent.post_raw(body).await, StatusCode::BAD_REQUEST, -32600);
        assert!(message.contains(fragment), "{body}: {message}");
    }
    assert_eq!(demo.invoices_sent(), 0);
}

#[tokio::test]
async fn batches_run_every_tool_call_through_the_pipeline() {
    let (upstream, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy(DEMO_POLICY)
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.protocol_version = "2025-03-26".into();
    agent.initialize().await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": "a", "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "one"}}},
        {"jsonrpc": "2.0", "id": "b", "method": "tools/call", "params": {"name": "send_invoice", "arguments": {"customer_id": 1, "amount_cents": 1}}},
        {"jsonrpc": "2.0", "id": "c", "method": "tools/list"},
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}
    ]);
    let reply = agent.post(&batch).await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut messages = reply.sse_messages();
    messages.sort_by_key(|m| m["id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[0]["result"]["content"][0]["text"], "one");
    assert_eq!(
        messages[1]["result"]["structuredContent"]["warden"]["reason"],
        "denied-by-policy"
    );
    let listed: Vec<&str> = messages[2]["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(!listed.contains(&"send_invoice"), "{listed:?}");
    assert_eq!(demo.invoices_sent(), 0);
}

#[tokio::test]
async fn batches_are_refused_where_the_revision_forbids_them() {
    let (upstream, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let batch = json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "send_invoice", "arguments": {}}}]);
    let message = assert_error(&agent.post(&batch).await, StatusCode::BAD_REQUEST, -32600);
    assert!(
        message.contains("not allowed in MCP revision 2025-11-25"),
        "{message}"
    );
    // Claiming the batch-friendly revision per request does not change what
    // the upstream negotiated.
    agent.protocol_version = "2025-03-26".into();
    let message = assert_error(&agent.post(&batch).await, StatusCode::BAD_REQUEST, -32600);
    assert!(
        message.contains("not allowed in MCP revision 2025-11-25"),
        "{message}"
    );
    let mut bare = agent
        .post_request("")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            batch.to_string(),
        )))
        .expect("request");
    bare.headers_mut().remove("mcp-protocol-version");
    let message = assert_error(&agent.send(bare).await, StatusCode::BAD_REQUEST, -32600);
    assert!(
        message.contains("not allowed in MCP revision 2025-11-25"),
        "{message}"
    );
    let initialize_in_batch =
        json!([{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}]);
    let message = assert_error(
        &agent.post(&initialize_in_batch).await,
        StatusCode::BAD_REQUEST,
        -32600,
    );
    assert!(
        message.contains("initialize must not be part of a batch"),
        "{message}"
    );
    assert_eq!(demo.invoices_sent(), 0);
}

#[tokio::test]
async fn a_session_cannot_be_used_on_another_route() {
    let (upstream, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .route("/mcp/other", &upstream)
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    let mut other = agent.clone();
    other.url = format!("{}/other", warden.url);
    assert_error(&other.list(1).await, StatusCode::NOT_FOUND, -32600);
    assert_eq!(demo.invoices_sent(), 0);
}

#[tokio::test]
async fn oversized_batches_are_refused() {
    let (upstream, _) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let mut agent = Agent::new(&warden.url);
    agent.protocol_version = "2025-03-26".into();
    agent.initialize().await;
    let ping = |i: usize| json!({"jsonrpc": "2.0", "id": i, "method": "ping"});
    let hundred: Vec<_> = (0..100).map(ping).collect();
    let reply = agent.post(&serde_json::Value::Array(hundred)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.sse_messages().len(), 100);
    let too_many: Vec<_> = (0..101).map(ping).collect();
    let message = assert_error(
        &agent.post(&serde_json::Value::Array(too_many)).await,
        StatusCode::BAD_REQUEST,
        -32600,
    );
    assert!(
        message.contains("a batch of 101 messages exceeds the limit of 100"),
        "{message}"
    );
}
