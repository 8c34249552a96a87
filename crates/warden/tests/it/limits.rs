//! Call caps per agent session, through Warden: the 31st call of a tool
//! is refused with a result the model can read, the upstream sees exactly
//! 30, the session's cap covers every tool, and a new session starts over.

use serde_json::{Value, json};

use crate::support::*;

fn invoice(n: u64) -> Value {
    json!({"customer_id": 1, "amount_cents": n})
}

#[tokio::test]
async fn the_31st_call_of_a_tool_in_a_session_is_refused_and_never_reaches_the_upstream() {
    let (upstream, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice: write\n")
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    for n in 1..=30 {
        let reply = agent.call(n, "send_invoice", invoice(n)).await.json();
        assert!(reply["result"]["isError"].is_null(), "call {n}: {reply}");
    }
    assert_eq!(demo.invoices_sent(), 30);
    for n in 31..=33 {
        let refused = agent.call(n, "send_invoice", invoice(n)).await.json();
        let result = &refused["result"];
        assert_eq!(result["isError"], true, "{refused}");
        assert_eq!(
            result["content"][0]["text"],
            "Warden refused the call to 'send_invoice': call cap: 30 calls of send_invoice in this session, the most allowed; retrying will not help. Start a new session only if the user asks for more."
        );
        assert_eq!(
            result["structuredContent"]["warden"],
            json!({"decision": "limited", "reason": "tool-call-cap", "tool": "send_invoice",
                "limit": "tool-call-cap", "scope": "tool", "count": 30, "max": 30,
                "retry_after_ms": null})
        );
    }
    assert_eq!(demo.invoices_sent(), 30, "the upstream saw exactly 30");
    // Another session starts over.
    let mut other = Agent::new(&warden.url);
    other.initialize().await;
    let reply = other.call(1, "send_invoice", invoice(1)).await.json();
    assert!(reply["result"]["isError"].is_null(), "{reply}");
    assert_eq!(demo.invoices_sent(), 31);
}

#[tokio::test]
async fn the_session_cap_covers_every_tool_and_a_tools_own_cap_wins() {
    let (upstream, demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\nlimits:\n  session_calls: 4\ntools:\n  send_invoice:\n    tier: write\n    calls: 2\n")
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    for n in 1..=2 {
        agent.call(n, "send_invoice", invoice(n)).await;
    }
    let third = agent.call(3, "send_invoice", invoice(3)).await.json();
    assert_eq!(
        third["result"]["structuredContent"]["warden"]["max"], 2,
        "the tool's own cap: {third}"
    );
    for n in 4..=5 {
        let read = agent
            .call(n, "search_customers", json!({"query": "ada"}))
            .await
            .json();
        assert!(read["result"]["isError"].is_null(), "{read}");
    }
    let over = agent
        .call(6, "search_customers", json!({"query": "ada"}))
        .await
        .json();
    let warden_said = &over["result"]["structuredContent"]["warden"];
    assert_eq!(warden_said["reason"], "session-call-cap", "{over}");
    assert_eq!(warden_said["count"], 4);
    assert!(
        over["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("4 calls in this session")),
        "{over}"
    );
    assert_eq!(demo.invoices_sent(), 2);
}
