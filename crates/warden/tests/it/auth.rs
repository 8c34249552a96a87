//! Who is calling: API keys and JWTs at the edge, 401 challenges, the
//! RFC 9728 metadata, sessions bound to their caller, rules for some
//! callers only, `Warden-On-Behalf-Of`, and the principal on the record.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use warden::auth::{AuthConfig, JwtConfig, MethodConfig};
use warden_identity::{
    AuthMethod, ClaimNames, Delegates, JwksRefresh, JwksSource, JwtSettings, Principal,
    ProtectedResource,
};

use crate::audit_trail::records;
use crate::support::*;

const POLICY: &str = "version: 1\ntools:\n  create_note:\n    tier: write\n    callers: { agents: [notes-bot], groups: [editors] }\n";
const RESOURCE: &str = "https://warden.test/mcp";

fn key(agent: &str, groups: &[&str]) -> (String, ([u8; 32], Principal)) {
    let key = warden_identity::api_key::new_key().expect("random");
    let digest =
        warden_identity::api_key::parse_digest(&warden_identity::api_key::digest_hex(&key))
            .expect("hex");
    let principal = Principal {
        agent: agent.into(),
        on_behalf_of: None,
        groups: groups.iter().map(|g| Arc::from(*g)).collect(),
        method: AuthMethod::ApiKey,
    };
    (key, (digest, principal))
}

fn api_keys(keys: Vec<([u8; 32], Principal)>) -> AuthConfig {
    AuthConfig {
        methods: vec![MethodConfig::ApiKeys(keys)],
        anonymous: false,
        delegates: Delegates::default(),
        oauth: None,
    }
}

fn challenge(reply: &Reply) -> String {
    reply
        .headers
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn api_keys_name_the_caller_and_rules_can_be_for_some_callers_only() {
    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let (notes_key, notes) = key("notes-bot", &[]);
    let (reader_key, reader) = key("reader-bot", &["support"]);
    let warden = WardenBuilder::new(&upstream)
        .policy(POLICY)
        .auth(api_keys(vec![notes, reader]))
        .audit(warden::audit::AuditConfig::in_dir(&dir, "it"))
        .start()
        .await;

    // No key, and a wrong one: 401 with a challenge, and no session.
    let anonymous = Agent::new(&warden.url);
    let refused = anonymous
        .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
        .await;
    let message = assert_error(&refused, StatusCode::UNAUTHORIZED, -32600);
    assert!(message.contains("needs credentials"), "{message}");
    assert_eq!(challenge(&refused), "Bearer realm=\"warden\"");
    let wrong = Agent::with_bearer(&warden.url, "wdn_guessed");
    let refused = wrong
        .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
        .await;
    let message = assert_error(&refused, StatusCode::UNAUTHORIZED, -32600);
    assert!(!message.contains("wdn_guessed"), "{message}");
    assert!(challenge(&refused).contains("error=\"invalid_token\""));

    // notes-bot may write notes; reader-bot only reads.
    let mut notes_bot = Agent::with_bearer(&warden.url, &notes_key);
    notes_bot.initialize().await;
    let written = notes_bot
        .call(
            1,
            "create_note",
            json!({"customer_id": 1, "text": "from notes-bot"}),
        )
        .await;
    assert_eq!(
        written.json()["result"]["isError"],
        Value::Null,
        "{written:?}"
    );
    assert_eq!(demo.notes_written(), 1);

    let mut reader_bot = Agent::with_bearer(&warden.url, &reader_key);
    reader_bot.initialize().await;
    let listed: Vec<String> = reader_bot.list(1).await.json()["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        listed.contains(&"search_customers".to_owned()),
        "{listed:?}"
    );
    assert!(!listed.contains(&"create_note".to_owned()), "{listed:?}");
    assert_refused(
        &reader_bot
            .call(2, "create_note", json!({"customer_id": 1, "text": "x"}))
            .await,
        "create_note",
        "not-for-caller",
    );
    let read = reader_bot
        .call(3, "search_customers", json!({"query": "ada"}))
        .await;
    assert_eq!(read.json()["result"]["isError"], Value::Null);
    assert_eq!(demo.notes_written(), 1);

    // A session id lets no other caller in.
    let mut hijack = Agent::with_bearer(&warden.url, &reader_key);
    hijack.session = notes_bot.session.clone();
    let stolen = hijack
        .call(4, "create_note", json!({"customer_id": 1, "text": "x"}))
        .await;
    assert_error(&stolen, StatusCode::FORBIDDEN, -32600);
    assert_eq!(demo.notes_written(), 1);

    warden.running.shutdown().await;
    let trail = records(&dir);
    let calls: Vec<_> = trail
        .iter()
        .filter(|r| r.tool.as_deref() == Some("create_note"))
        .collect();
    assert!(
        calls.iter().any(
            |r| r.principal.as_ref().is_some_and(|p| p.agent == "notes-bot")
                && r.decision.as_deref() == Some("allow")
        ),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|r| r
            .principal
            .as_ref()
            .is_some_and(|p| p.agent == "reader-bot")
            && r.reason.as_deref() == Some("not-for-caller")),
        "{calls:?}"
    );
    let text = std::fs::read_to_string(
        std::fs::read_dir(&dir)
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .expect("trail file"),
    )
    .expect("trail");
    assert!(!text.contains(&notes_key) && !text.contains(&reader_key));
}

#[tokio::test]
async fn only_a_trusted_caller_may_name_the_user_it_acts_for() {
    let (upstream, _demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    let (gateway_key, gateway) = key("chat-gateway", &["gateways"]);
    let (bot_key, bot) = key("notes-bot", &[]);
    let mut auth = api_keys(vec![gateway, bot]);
    auth.delegates = Delegates {
        agents: vec![],
        groups: vec!["gateways".into()],
    };
    let warden = WardenBuilder::new(&upstream)
        .auth(auth)
        .audit(warden::audit::AuditConfig::in_dir(&dir, "it"))
        .start()
        .await;
    let mut acting = Agent::with_bearer(&warden.url, &gateway_key);
    acting
        .headers
        .push(("warden-on-behalf-of".into(), "ada@example.com".into()));
    acting.initialize().await;
    let read = acting
        .call(1, "search_customers", json!({"query": "ada"}))
        .await;
    assert_eq!(read.json()["result"]["isError"], Value::Null);

    let mut untrusted = Agent::with_bearer(&warden.url, &bot_key);
    untrusted
        .headers
        .push(("warden-on-behalf-of".into(), "ada@example.com".into()));
    let refused = untrusted
        .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}}))
        .await;
    let message = assert_error(&refused, StatusCode::FORBIDDEN, -32600);
    assert!(message.contains("Warden-On-Behalf-Of"), "{message}");

    warden.running.shutdown().await;
    let trail = records(&dir);
    let call = trail
        .iter()
        .find(|r| r.tool.as_deref() == Some("search_customers"))
        .expect("the call is on the record");
    let principal = call.principal.as_ref().expect("principal");
    assert_eq!(principal.agent, "chat-gateway");
    assert_eq!(principal.user.as_deref(), Some("ada@example.com"));
}

/// An ES256 signer and the JWKS file publishing its key.
struct Issuer {
    key: EncodingKey,
    jwks: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Issuer {
    fn new() -> Issuer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("ec");
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("jwk");
        jwk.common.key_id = Some("k1".into());
        let dir = tempfile::tempdir().expect("tempdir");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(
            &jwks,
            serde_json::to_vec(&JwkSet { keys: vec![jwk] }).expect("json"),
        )
        .expect("write");
        Issuer {
            key,
            jwks,
            _dir: dir,
        }
    }

    fn token(&self, audience: &str, expires_in: i64) -> String {
        self.token_for(audience, "agent-7", &["editors"], expires_in)
    }

    /// A token for `subject` in `groups`, for `audience`, expiring in
    /// `expires_in` seconds (negative: already expired).
    fn token_for(&self, audience: &str, subject: &str, groups: &[&str], expires_in: i64) -> String {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let claims = json!({"iss": "https://auth.test", "aud": audience, "sub": subject,
            "groups": groups, "exp": now + expires_in, "iat": now});
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }

    /// The method checking this issuer's tokens for `audience`.
    fn method(&self, audience: &str) -> MethodConfig {
        MethodConfig::Jwt(JwtConfig {
            settings: JwtSettings {
                issuer: "https://auth.test".into(),
                audiences: vec![audience.into()],
                algorithms: vec![Algorithm::ES256],
                leeway: Duration::from_secs(30),
                claims: ClaimNames {
                    agent: "sub".into(),
                    user: None,
                    groups: Some("groups".into()),
                },
            },
            source: JwksSource::File(self.jwks.clone()),
            refresh: JwksRefresh::default(),
            ca_file: None,
        })
    }

    fn auth(&self) -> AuthConfig {
        AuthConfig {
            methods: vec![self.method(RESOURCE)],
            anonymous: false,
            delegates: Delegates::default(),
            oauth: Some(ProtectedResource::new(
                RESOURCE.into(),
                vec!["https://auth.test".into()],
                vec!["mcp".into()],
                None,
            )),
        }
    }
}

#[tokio::test]
async fn a_jwt_route_publishes_its_metadata_challenges_and_never_forwards_the_token() {
    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let record = seen.clone();
    let (upstream, _) = upstream_fn(move |parts, _body| {
        record.lock().expect("lock").push(parts.headers.clone());
        async move {
            json_response(&json!({"jsonrpc": "2.0", "id": 0, "result": {
                "protocolVersion": "2025-11-25", "capabilities": {},
                "serverInfo": {"name": "recording", "version": "1"}}}))
        }
    })
    .await;
    let issuer = Issuer::new();
    let warden = WardenBuilder::new(&upstream)
        .policy(POLICY)
        .auth(issuer.auth())
        .start()
        .await;

    // The metadata, at the path RFC 9728 derives from the resource.
    let base = warden.url.trim_end_matches("/mcp");
    let agent = Agent::new(&warden.url);
    let metadata = agent
        .send(
            Request::get(format!("{base}/.well-known/oauth-protected-resource/mcp"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await;
    assert_eq!(metadata.status, StatusCode::OK);
    let document = metadata.json();
    assert_eq!(document["resource"], RESOURCE);
    assert_eq!(document["authorization_servers"][0], "https://auth.test");
    assert_eq!(document["scopes_supported"][0], "mcp");

    // No token: 401 naming the metadata.
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "it", "version": "1"}}});
    let refused = agent.post(&initialize).await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, -32600);
    assert_eq!(
        challenge(&refused),
        "Bearer realm=\"warden\", resource_metadata=\"https://warden.test/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
    );

    // Expired, or for another resource: refused, each saying why.
    for (token, why) in [
        (issuer.token(RESOURCE, -120), "expired"),
        (issuer.token("https://other.test/mcp", 300), "audience"),
    ] {
        let refused = Agent::with_bearer(&warden.url, &token)
            .post(&initialize)
            .await;
        let message = assert_error(&refused, StatusCode::UNAUTHORIZED, -32600);
        assert!(message.contains(why), "{message}");
        assert!(challenge(&refused).contains("error=\"invalid_token\""));
    }
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing refused reached the upstream"
    );

    // A valid token: through, and the upstream never sees it.
    let token = issuer.token(RESOURCE, 300);
    let reply = Agent::with_bearer(&warden.url, &token)
        .post(&initialize)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    assert!(seen[0].get("authorization").is_none(), "{:?}", seen[0]);
    assert!(
        !seen[0]
            .values()
            .any(|v| v.to_str().is_ok_and(|v| v.contains(&token[..40]))),
        "{:?}",
        seen[0]
    );
}

#[tokio::test]
async fn every_bad_bearer_token_is_a_401_that_says_why_and_repeats_nothing() {
    use base64::Engine;
    let (upstream, _demo) = demo_upstream().await;
    let issuer = Issuer::new();
    let warden = WardenBuilder::new(&upstream)
        .auth(issuer.auth())
        .start()
        .await;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(v).expect("json"))
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let sign = |claims: Value, kid: &str| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &issuer.key).expect("sign")
    };
    let good = |changes: &[(&str, Value)]| {
        let mut claims = json!({"iss": "https://auth.test", "aud": RESOURCE, "sub": "agent-7",
            "exp": now + 300});
        for (name, value) in changes {
            claims[*name] = value.clone();
        }
        claims
    };
    let stranger = Issuer::new();
    let mut forged = Header::new(Algorithm::ES256);
    forged.kid = Some("k1".into());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "bad signature",
            jsonwebtoken::encode(&forged, &good(&[]), &stranger.key).expect("sign"),
            "signature is not valid",
        ),
        (
            "wrong issuer",
            sign(good(&[("iss", json!("https://evil.test"))]), "k1"),
            "another issuer",
        ),
        (
            "wrong audience",
            sign(good(&[("aud", json!("https://other.test/mcp"))]), "k1"),
            "not issued for this resource",
        ),
        (
            "expired",
            sign(good(&[("exp", json!(now - 120))]), "k1"),
            "expired",
        ),
        (
            "not yet valid",
            sign(good(&[("nbf", json!(now + 600))]), "k1"),
            "not valid yet",
        ),
        (
            "unknown kid",
            sign(good(&[]), "k9"),
            "signing key the issuer does not publish",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": "k1"})),
                b64(&good(&[]))
            ),
            "algorithm is not accepted",
        ),
        (
            "HS256",
            {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some("k1".into());
                jsonwebtoken::encode(
                    &header,
                    &good(&[]),
                    &EncodingKey::from_secret(b"guess").expect("hs"),
                )
                .expect("sign")
            },
            "algorithm is not accepted",
        ),
        (
            "malformed",
            "eyJub3QiOiJqc29u.e30.c2ln".to_owned(),
            "not a well-formed JWT",
        ),
        (
            "oversized",
            format!("eyJ{}.e30.c2ln", "A".repeat(9000)),
            "longer than",
        ),
    ];
    let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}});
    for (case, token, why) in cases {
        let reply = Agent::with_bearer(&warden.url, &token)
            .post(&initialize)
            .await;
        let message = assert_error(&reply, StatusCode::UNAUTHORIZED, -32600);
        assert!(message.contains(why), "{case}: {message}");
        let tail = &token[token.len().saturating_sub(12)..];
        assert!(
            !message.contains(tail) && !challenge(&reply).contains(tail),
            "{case}: {message}"
        );
        assert!(
            challenge(&reply).starts_with("Bearer realm=\"warden\""),
            "{case}"
        );
    }
    for (case, header) in [
        ("missing", None),
        ("not Bearer", Some("Basic YTpi")),
        ("no token", Some("Bearer ")),
    ] {
        let mut agent = Agent::new(&warden.url);
        if let Some(value) = header {
            agent.headers.push(("authorization".into(), value.into()));
        }
        let reply = agent.post(&initialize).await;
        assert_error(&reply, StatusCode::UNAUTHORIZED, -32600);
        assert!(!challenge(&reply).is_empty(), "{case}");
    }
}

/// Approvers from the identity layer: a JWT on the admin listener names
/// an approver and their groups; `approvals.identity.allow` says who
/// approves at all, a rule's `group:NAME` who decides its calls, and the
/// user the call acts for cannot approve it.
#[tokio::test]
async fn approvers_from_the_identity_provider_decide_by_name_and_group() {
    use crate::approvals::{GRACE, admin, approvals, invoice, staged, warden_result};
    use crate::approvals_page::{Browser, text};
    const ADMIN: &str = "https://warden-admin.test";

    let (upstream, demo) = demo_upstream().await;
    let tmp = tempfile::tempdir().expect("tempdir");
    let issuer = Issuer::new();
    // The agent acts for ada.
    let (agent_key, (digest, mut principal)) = key("billing-bot", &[]);
    principal.on_behalf_of = Some("ada".into());
    let mut settings = approvals(tmp.path(), Duration::from_millis(200));
    settings.identity = Some(warden::auth::ApproverIdentityConfig {
        methods: vec![issuer.method(ADMIN)],
        allow: Delegates {
            agents: vec![],
            groups: vec!["approvers".into()],
        },
    });
    let warden = WardenBuilder::new(&upstream)
        .policy("version: 1\ntools:\n  send_invoice:\n    tier: approve\n    approvers: [\"group:finance-leads\", grace]\n")
        .auth(api_keys(vec![(digest, principal)]))
        .approvals(settings)
        .start()
        .await;
    let mut agent = Agent::with_bearer(&warden.url, &agent_key);
    agent.initialize().await;
    let pending = warden_result(&agent.call(1, "send_invoice", invoice(900)).await);
    assert_eq!(
        pending["structuredContent"]["warden"]["decision"], "pending",
        "{pending}"
    );
    let id = staged(&warden, GRACE).await;
    let approve = format!("/approvals/{id}/approve");
    let post = http::Method::POST;

    // An approver, but not in the group this rule names.
    let bob = issuer.token_for(ADMIN, "bob", &["approvers"], 300);
    let (status, body) = admin(&warden, post.clone(), &approve, &bob, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "bob may not decide calls to send_invoice");
    // Known to the identity provider, but not an approver at all.
    let mallory = issuer.token_for(ADMIN, "mallory", &["staff", "finance-leads"], 300);
    let (status, body) = admin(&warden, http::Method::GET, "/approvals", &mallory, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("mallory is not an approver")),
        "{body}"
    );
    // Expired, or issued for the MCP route rather than the admin
    // listener: refused, saying why, never echoing the token.
    for (token, why) in [
        (
            issuer.token_for(ADMIN, "carol", &["approvers", "finance-leads"], -120),
            "expired",
        ),
        (
            issuer.token_for(RESOURCE, "carol", &["approvers", "finance-leads"], 300),
            "audience",
        ),
    ] {
        let (status, body) = admin(&warden, post.clone(), &approve, &token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        let said = body["error"].as_str().unwrap_or_default();
        assert!(said.contains(why), "{said}");
        let signature = token.rsplit('.').next().expect("a signature");
        assert!(!said.contains(signature), "{said}");
    }
    // Nobody decides under a token approver's name, nor as the agent
    // that made the call, whatever the identity provider says.
    let not_grace = issuer.token_for(ADMIN, "grace", &["approvers", "finance-leads"], 300);
    let (status, body) = admin(&warden, post.clone(), &approve, &not_grace, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("name of a configured approver token")),
        "{body}"
    );
    let the_agent = issuer.token_for(ADMIN, "billing-bot", &["approvers", "finance-leads"], 300);
    let (status, body) = admin(&warden, post.clone(), &approve, &the_agent, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("the agent that made this call")),
        "{body}"
    );
    // Four eyes: ada is the user the call acts for.
    let ada = issuer.token_for(ADMIN, "ada", &["approvers", "finance-leads"], 300);
    let (status, body) = admin(&warden, post.clone(), &approve, &ada, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("ada is the user this call acts for")),
        "{body}"
    );
    assert_eq!(demo.invoices_sent(), 0, "nothing ran");
    let (_, still) = admin(
        &warden,
        http::Method::GET,
        &format!("/approvals/{id}"),
        GRACE,
        None,
    )
    .await;
    assert_eq!(
        still["status"], "pending",
        "no refusal decided anything: {still}"
    );
    assert_eq!(still["votes"], json!([]));

    // carol is an approver in the rule's group: her approval runs the call.
    let carol = issuer.token_for(ADMIN, "carol", &["approvers", "finance-leads"], 300);
    let (status, body) = admin(&warden, post.clone(), &approve, &carol, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "approved");
    assert_eq!(body["votes"][0]["approver"], "carol");
    let ran = warden_result(&agent.call(2, "send_invoice", invoice(900)).await);
    assert_eq!(ran["isError"], Value::Null, "{ran}");
    assert_eq!(
        ran["_meta"]["warden/approval"],
        json!({"id": id, "approvers": ["carol"]})
    );
    assert_eq!(demo.invoices_sent(), 1);

    // The page takes the same JWT at its login, and refuses mallory.
    let mut browser = Browser::at(warden.running.admin_addr.expect("admin"));
    let refused = browser.post("/ui/login", &[("token", &mallory)], &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        text(&refused).contains("mallory is not an approver"),
        "{}",
        text(&refused)
    );
    assert!(!refused.headers.contains_key("set-cookie"));
    browser.log_in(&carol).await;
    let history = browser.get("/ui/history").await;
    assert_eq!(history.status, StatusCode::OK);
    assert!(text(&history).contains("carol"), "{}", text(&history));
}
