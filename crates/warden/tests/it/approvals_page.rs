//! The approvals page on the admin listener, driven as a browser would
//! drive it (forms, cookies, redirects): an approver logs in with a token,
//! sees the held call with everything the agent sent shown as text,
//! approves it and the waiting call completes; forged, cross-site and
//! incomplete forms decide nothing; every response carries the security
//! headers and a request id.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::approvals::{GRACE, LINUS, admin, approvals, in_background, staged};
use crate::support::*;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A browser-like client of the admin listener: it keeps one session
/// cookie and never follows redirects (tests look at them).
pub(crate) struct Browser {
    addr: std::net::SocketAddr,
    cookie: Option<String>,
}

impl Browser {
    fn new(warden: &TestWarden) -> Browser {
        Browser::at(warden.running.admin_addr.expect("admin listener"))
    }

    /// A browser of the admin listener at `addr` (one in another process).
    pub(crate) fn at(addr: std::net::SocketAddr) -> Browser {
        Browser { addr, cookie: None }
    }

    async fn send(&self, mut request: Request<Full<Bytes>>) -> Reply {
        if let Some(cookie) = &self.cookie {
            request
                .headers_mut()
                .insert("cookie", cookie.parse().expect("cookie"));
        }
        Agent::new(&format!("http://{}/", self.addr))
            .send(request)
            .await
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        let request = Request::get(format!("http://{}{path}", self.addr))
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.send(request).await
    }

    /// POST a form, with extra headers (e.g. `origin`).
    pub(crate) async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut request = Request::post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/x-www-form-urlencoded");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Full::new(Bytes::from(body))).expect("request"))
            .await
    }

    /// Log in with `token`; the session's form token.
    pub(crate) async fn log_in(&mut self, token: &str) -> String {
        let reply = self.post("/ui/login", &[("token", token)], &[]).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", text(&reply));
        assert_eq!(reply.headers["location"], "/ui/");
        let set = reply.headers["set-cookie"].to_str().expect("ascii");
        self.cookie = Some(set.split(';').next().expect("pair").to_owned());
        csrf_of(&self.get("/ui/").await)
    }
}

pub(crate) fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The form token in a page.
fn csrf_of(reply: &Reply) -> String {
    let page = text(reply);
    let marker = r#"name="csrf" value=""#;
    let start = page.find(marker).expect("a form with a token") + marker.len();
    page[start..].split('"').next().expect("value").to_owned()
}

fn assert_security_headers(reply: &Reply) {
    let h = &reply.headers;
    assert_eq!(h["content-security-policy"], CSP, "{h:?}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert!(h.contains_key("x-request-id"), "{h:?}");
}

async fn held_note_warden(policy: &str) -> (TestWarden, Agent, tempfile::TempDir) {
    let (upstream, _demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let warden = WardenBuilder::new(&upstream)
        .policy(policy)
        .approvals(approvals(tmp.path(), Duration::from_secs(20)))
        .start()
        .await;
    let mut agent = Agent::new(&warden.url);
    agent.initialize().await;
    (warden, agent, tmp)
}

fn hostile_note(id: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "create_note",
        "arguments": {"customer_id": 1, "text": "<script>alert(1)</script>"},
        "_meta": {"warden/rationale": "<img src=x onerror=alert(2)> the user asked"}}})
}

#[tokio::test]
async fn an_approver_logs_in_with_a_token_and_a_wrong_token_gets_the_form_again() {
    let (warden, _agent, _tmp) =
        held_note_warden("version: 1\ntools:\n  create_note: approve\n").await;
    let mut browser = Browser::new(&warden);

    // Nobody logged in: every page leads to the login form.
    for path in [
        "/ui/",
        "/ui/history",
        "/ui/approvals/some-id",
        "/ui/nowhere",
    ] {
        let reply = browser.get(path).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(reply.headers["location"], "/ui/login", "{path}");
        assert_security_headers(&reply);
    }
    let form = browser.get("/ui/login").await;
    assert_eq!(form.status, StatusCode::OK);
    assert_security_headers(&form);
    assert!(text(&form).contains(r#"name="token""#));
    assert!(!text(&form).contains("<script"), "no script on the page");
    let css = browser.get("/ui/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");

    // A wrong token: the form again, 401, no cookie, no hint.
    for wrong in ["wdn_nobody", "", &GRACE[..GRACE.len() - 1]] {
        let reply = browser.post("/ui/login", &[("token", wrong)], &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert!(!reply.headers.contains_key("set-cookie"));
        assert!(text(&reply).contains("not an approver"), "{}", text(&reply));
        assert_security_headers(&reply);
    }

    // The right token (a pasted newline is not part of it): a session.
    let reply = browser
        .post("/ui/login", &[("token", &format!("{GRACE}\n"))], &[])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", text(&reply));
    let cookie = reply.headers["set-cookie"].to_str().expect("ascii");
    let flags: Vec<&str> = cookie.split("; ").collect();
    assert!(
        flags[0].starts_with("warden_ui=") && flags[0].len() > 40,
        "{cookie}"
    );
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=28800"] {
        assert!(flags.contains(&flag), "{flag} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "a plain listener: {cookie}");
    browser.cookie = Some(flags[0].to_owned());
    let pending = browser.get("/ui/").await;
    assert_eq!(pending.status, StatusCode::OK);
    assert_security_headers(&pending);
    assert!(text(&pending).contains("grace"), "the approver is named");
    assert!(text(&pending).contains("Nothing is waiting"));
    assert_eq!(
        browser.get("/ui/login").await.headers["location"],
        "/ui/",
        "logged in already"
    );

    // Logging out ends the session (and needs the form token).
    let csrf = csrf_of(&pending);
    let reply = browser.post("/ui/logout", &[("csrf", "wrong")], &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = browser.post("/ui/logout", &[("csrf", &csrf)], &[]).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.headers["location"], "/ui/login");
    assert!(
        reply.headers["set-cookie"]
            .to_str()
            .is_ok_and(|c| c.contains("Max-Age=0"))
    );
    assert_eq!(browser.get("/ui/").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_page_shows_the_held_call_as_text_and_approving_it_completes_the_waiting_call() {
    let (warden, agent, _tmp) =
        held_note_warden("version: 1\ntools:\n  create_note: approve\n").await;
    let waiting = in_background(&agent, hostile_note(7));
    let id = staged(&warden, GRACE).await;
    let mut browser = Browser::new(&warden);
    let csrf = browser.log_in(GRACE).await;

    let list = text(&browser.get("/ui/").await);
    assert!(
        list.contains(&format!(r#"href="/ui/approvals/{id}""#)),
        "{list}"
    );
    assert!(
        list.contains("create_note") && list.contains("anonymous"),
        "{list}"
    );
    assert!(list.contains("0 of 1"), "{list}");

    let details = browser.get(&format!("/ui/approvals/{id}")).await;
    assert_eq!(details.status, StatusCode::OK);
    assert_security_headers(&details);
    let page = text(&details);
    // What the agent sent is shown, as text, never as markup.
    assert!(!page.contains("<script"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("&lt;img src=x onerror=alert(2)&gt; the user asked"),
        "{page}"
    );
    assert!(
        page.contains("&quot;customer_id&quot;: 1"),
        "pretty JSON: {page}"
    );
    for fact in ["Agent session", "Policy", "Upstream", "Expires"] {
        assert!(page.contains(fact), "{fact}");
    }

    let started = std::time::Instant::now();
    let reply = browser
        .post(
            &format!("/ui/approvals/{id}/approve"),
            &[("csrf", &csrf), ("reason", "looks right")],
            &[
                ("origin", &format!("http://{}", browser.addr)),
                ("sec-fetch-site", "same-origin"),
            ],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", text(&reply));
    assert_eq!(
        reply.headers["location"],
        format!("/ui/approvals/{id}?decided")
    );
    let outcome = text(&browser.get(&format!("/ui/approvals/{id}?decided")).await);
    assert!(outcome.contains("Approved"), "{outcome}");
    assert!(outcome.contains("looks right"), "{outcome}");
    assert!(
        !outcome.contains(r#"action="/ui/approvals/"#),
        "no forms once decided"
    );

    // The held call was woken and ran.
    let reply = waiting.await.expect("the call returns");
    assert!(started.elapsed() < Duration::from_secs(10));
    let result = &reply.json()["result"];
    assert_eq!(result["isError"], Value::Null, "{result}");
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Note added")),
        "{result}"
    );
    let (_, approval) = admin(
        &warden,
        http::Method::GET,
        &format!("/approvals/{id}"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(approval["status"], "approved");
    assert_eq!(approval["votes"][0]["approver"], "grace");
    assert_eq!(approval["votes"][0]["reason"], "looks right");
    assert!(approval["executed_ms"].is_i64(), "{approval}");

    let history = text(&browser.get("/ui/history").await);
    assert!(history.contains("grace (approve)"), "{history}");
    assert!(history.contains("ran"), "{history}");
    assert!(!history.contains("<script"), "{history}");
    let missing = browser.get("/ui/approvals/no-such-id").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(text(&missing).contains("No approval has this id"));
}

#[tokio::test]
async fn forged_cross_site_and_incomplete_forms_decide_nothing() {
    let (warden, agent, _tmp) = held_note_warden(
        "version: 1\ntools:\n  create_note:\n    tier: approve\n    approvers: [linus]\n",
    )
    .await;
    let waiting = in_background(&agent, hostile_note(8));
    let id = staged(&warden, GRACE).await;
    let mut browser = Browser::new(&warden);
    let csrf = browser.log_in(LINUS).await;
    let approve = format!("/ui/approvals/{id}/approve");
    let reject = format!("/ui/approvals/{id}/reject");
    let own = format!("http://{}", browser.addr);

    // No form token, or another one.
    let reply = browser.post(&approve, &[("reason", "x")], &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(text(&reply).contains("Nothing was decided"));
    assert_security_headers(&reply);
    let reply = browser.post(&approve, &[("csrf", "forged")], &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // The right token, from another site.
    for headers in [
        [("origin", "http://evil.example"), ("sec-fetch-site", "")],
        [("origin", &own), ("sec-fetch-site", "cross-site")],
        [
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "same-site"),
        ],
    ] {
        let headers: Vec<(&str, &str)> =
            headers.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let reply = browser.post(&approve, &[("csrf", &csrf)], &headers).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert_security_headers(&reply);
    }
    // A rejection without a reason.
    let reply = browser
        .post(&reject, &[("csrf", &csrf), ("reason", "  ")], &[])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        text(&reply).contains("A rejection needs a reason"),
        "{}",
        text(&reply)
    );
    assert!(
        text(&reply).contains(r#"action="/ui/approvals/"#),
        "the forms again"
    );
    // Someone the rule does not name.
    let mut grace = Browser::new(&warden);
    let grace_csrf = grace.log_in(GRACE).await;
    let reply = grace.post(&approve, &[("csrf", &grace_csrf)], &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        text(&reply).contains("grace may not decide calls to create_note"),
        "{}",
        text(&reply)
    );
    // One session's token is not another's.
    let reply = grace.post(&approve, &[("csrf", &csrf)], &[]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // Too large a form.
    let big = "a".repeat(70 << 10);
    let reply = browser
        .post(&reject, &[("csrf", &csrf), ("reason", &big)], &[])
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_security_headers(&reply);

    // Nothing of it was decided.
    let (_, approval) = admin(
        &warden,
        http::Method::GET,
        &format!("/approvals/{id}"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(approval["status"], "pending", "{approval}");
    assert!(approval["votes"].as_array().is_some_and(Vec::is_empty));
    assert!(!waiting.is_finished());

    // And a real rejection, with a reason, wakes the call with it. These
    // are the headers Chromium sends with the page's own form: under
    // `Referrer-Policy: no-referrer` its `Origin` is `null`.
    let reply = browser
        .post(
            &reject,
            &[("csrf", &csrf), ("reason", "not this customer")],
            &[("origin", "null"), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", text(&reply));
    let result = &waiting.await.expect("returns").json()["result"];
    assert_eq!(
        result["structuredContent"]["warden"]["decision"],
        "rejected"
    );
    assert!(
        result["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("linus") && t.contains("not this customer")),
        "{result}"
    );
    let page = text(&browser.get(&format!("/ui/approvals/{id}?decided")).await);
    assert!(page.contains("Rejected"), "{page}");
    // The outcome notice is for the one who voted, whatever the link says.
    let other = text(&grace.get(&format!("/ui/approvals/{id}?decided")).await);
    assert!(!other.contains(r#"class="notice"#), "{other}");
    assert!(other.contains("rejected"), "{other}");
}

#[tokio::test]
async fn every_admin_response_has_a_request_id_and_the_security_headers() {
    let (warden, _agent, _tmp) =
        held_note_warden("version: 1\ntools:\n  create_note: approve\n").await;
    let browser = Browser::new(&warden);
    for path in ["/healthz", "/readyz", "/metrics", "/approvals", "/nowhere"] {
        let reply = browser.get(path).await;
        assert_security_headers(&reply);
    }
    // The client's request id is kept and echoed; otherwise one is made.
    let request = Request::get(format!("http://{}/healthz", browser.addr))
        .header("x-request-id", "ticket-4711")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let reply = browser.send(request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["x-request-id"], "ticket-4711");
    let one = browser.get("/healthz").await.headers["x-request-id"].clone();
    let two = browser.get("/healthz").await.headers["x-request-id"].clone();
    assert_ne!(one, two);
    // Too large a body is refused before any handler reads it.
    let reply = browser
        .post("/ui/login", &[("token", &"a".repeat(70 << 10))], &[])
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text(&reply).contains("length limit exceeded"));
    assert_security_headers(&reply);
}

#[tokio::test]
async fn without_an_approvals_section_the_page_says_so() {
    let (upstream, _demo) = demo_upstream().await;
    let warden = WardenBuilder::new(&upstream).start().await;
    let browser = Browser::new(&warden);
    for path in ["/ui/", "/ui/login", "/ui/approvals/x"] {
        let reply = browser.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            text(&reply).contains("no approvals section"),
            "{}",
            text(&reply)
        );
        assert_security_headers(&reply);
    }
    let reply = browser.post("/ui/login", &[("token", GRACE)], &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}
