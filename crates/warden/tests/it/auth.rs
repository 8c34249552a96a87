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
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let claims = json!({"iss": "https://auth.test", "aud": audience, "sub": "agent-7",
            "groups": ["editors"], "exp": now + expires_in, "iat": now});
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }

    fn auth(&self) -> AuthConfig {
        AuthConfig {
            methods: vec![MethodConfig::Jwt(JwtConfig {
                settings: JwtSettings {
                    issuer: "https://auth.test".into(),
                    audiences: vec![RESOURCE.into()],
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
            })],
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
