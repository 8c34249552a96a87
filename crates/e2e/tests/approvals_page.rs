//! Warden's approvals page in a real browser: headless Chromium (Debian's
//! `chromium`, driven by Playwright's `playwright-core`) logs in with an
//! approver's token, finds a call the TypeScript SDK's client is being
//! held on, opens it, takes a screenshot and approves it; the held call
//! then completes with server-everything's result, and the queue shows the
//! approval approved and executed.
//!
//! The screenshot is written to the test's temp dir; with
//! `WARDEN_SCREENSHOT_TO=path` it is also copied there (that is how
//! `docs/images/approvals-page.png` is made).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const TOKEN: &str = "wdn_e2e-page-approver-token-00000000000000000";

fn sha256_hex(text: &str) -> String {
    use std::fmt::Write;
    let bytes = <sha2_digest::Sha256 as sha2_digest::Digest>::digest(text.as_bytes());
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[tokio::test]
async fn an_approver_approves_a_held_call_in_headless_chromium_and_the_call_completes() {
    let peers = e2e_dir().join("peers");
    require_installed(&peers.join("node_modules/playwright-core"), "npm packages");
    assert!(
        std::path::Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is missing: `cargo xtask deps` installs Debian's chromium"
    );
    let everything = everything_upstream("peers", UpstreamKind::StreamableHttp);
    let dir = TempDir::new("warden-e2e-page");
    std::fs::write(
        dir.0.join("policy.yaml"),
        "version: 1\ndefault: allow\ntools:\n  get-sum: approve\n",
    )
    .expect("policy");
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = dir.0.join("warden.yaml");
    // The hold budget outlasts the browser's work (and stays under the
    // SDK client's 60 s request timeout): the client's one call is held
    // until the approval, then gets its result.
    std::fs::write(
        &config,
        format!(
            "version: 1\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:{admin_port}\napprovals:\n  hold_budget: 50s\n  approvers:\n    - name: grace\n      sha256: {}\nroutes:\n  - path: /mcp\n    upstream:\n{}    policy: policy.yaml\n",
            sha256_hex(TOKEN),
            everything.yaml
        ),
    )
    .expect("config");
    let warden = warden_from_file(&config).await;

    let mut client = Command::new("node");
    client.current_dir(&peers).arg("approval-client.mjs").args([
        &format!("http://{}/mcp", warden.mcp_addr),
        "get-sum",
        r#"{"a":1,"b":2}"#,
        "The sum of 1 and 2 is 3.",
        "--held",
    ]);
    let held = tokio::spawn(run_peer(client, Duration::from_secs(90)));

    let screenshot = dir.0.join("approvals-page.png");
    let admin = format!("http://127.0.0.1:{admin_port}");
    let mut browser = Command::new("node");
    browser.current_dir(&peers).arg("approvals-page.mjs").args([
        admin.as_str(),
        TOKEN,
        "get-sum",
        &screenshot.display().to_string(),
        "Sums are harmless; approved for the demo.",
    ]);
    let output = run_peer(browser, Duration::from_secs(120)).await;
    let checks = assert_all_passed(&output, "approvals page in Chromium");
    assert!(checks >= 12, "only {checks} checks ran");

    let output = held.await.expect("client task");
    assert_all_passed(&output, "the held TypeScript SDK call");

    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Some(to) = std::env::var_os("WARDEN_SCREENSHOT_TO") {
        std::fs::copy(&screenshot, &to).expect("copy the screenshot");
    }

    // The queue agrees: approved by grace, with the reason, and run once.
    let approvals = admin_get(admin_port, "/approvals?status=approved").await;
    let approval = &approvals[0];
    assert_eq!(approval["tool"], "get-sum", "{approvals}");
    assert_eq!(
        approval["rationale"],
        "The user asked for the total of two line items."
    );
    assert_eq!(approval["votes"][0]["approver"], "grace");
    assert_eq!(
        approval["votes"][0]["reason"],
        "Sums are harmless; approved for the demo."
    );
    assert!(approval["executed_ms"].is_i64(), "{approval}");
}

/// GET `path` from the admin API as the approver.
async fn admin_get(port: u16, path: &str) -> serde_json::Value {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = http::Request::get(format!("http://127.0.0.1:{port}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("request");
    let response = client.request(request).await.expect("admin API");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&body).expect("JSON")
}
