//! JWT bearer tokens end to end: signed with real keys, checked against a
//! JWKS from a file and from an HTTP server that counts its fetches.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use warden_identity::{
    AuthError, Authenticator, ClaimNames, JwksRefresh, JwksSource, JwtSettings, JwtVerifier,
    KeySet, Method, TokenRejection,
};

const ISSUER: &str = "https://auth.test";
const AUDIENCE: &str = "http://127.0.0.1:8080/mcp";

/// A signing key and its public JWK.
struct Signer {
    kid: String,
    algorithm: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
}

impl Signer {
    fn rsa(kid: &str) -> Signer {
        let pem = include_bytes!("fixtures/rsa-test-key.pem");
        Signer::from(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem).expect("rsa"),
        )
    }

    fn ec(kid: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
        let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("ec");
        Signer::from(kid, Algorithm::ES256, key)
    }

    fn ed25519(kid: &str) -> Signer {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("ed25519");
        use base64::Engine;
        let key = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).expect("ed");
        // jsonwebtoken cannot derive the JWK of a PKCS#8 v2 Ed25519 key: written out.
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key_raw());
        let jwk =
            serde_json::from_value(json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid}))
                .expect("jwk");
        Signer {
            kid: kid.to_owned(),
            algorithm: Algorithm::EdDSA,
            key,
            jwk,
        }
    }

    fn from(kid: &str, algorithm: Algorithm, key: EncodingKey) -> Signer {
        let mut jwk = Jwk::from_encoding_key(&key, algorithm).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        Signer {
            kid: kid.to_owned(),
            algorithm,
            key,
            jwk,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "agent-7",
        "act_for": "ada@example.com",
        "groups": ["editors", "support"],
        "exp": now() + 300,
        "nbf": now() - 10,
    })
}

fn settings() -> JwtSettings {
    JwtSettings {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        algorithms: warden_identity::jwt::ASYMMETRIC.to_vec(),
        leeway: Duration::from_secs(30),
        claims: ClaimNames {
            agent: "sub".into(),
            user: Some("act_for".into()),
            groups: Some("groups".into()),
        },
    }
}

fn jwks_file(name: &str, signers: &[&Signer]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warden-identity-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("jwks.json");
    let set = JwkSet {
        keys: signers.iter().map(|s| s.jwk.clone()).collect(),
    };
    std::fs::write(&path, serde_json::to_vec(&set).expect("json")).expect("write");
    path
}

fn authenticator(keys: KeySet) -> Authenticator {
    Authenticator::new(vec![Method::Jwt(Box::new(JwtVerifier::new(
        settings(),
        keys,
    )))])
}

fn file_authenticator(name: &str, signers: &[&Signer]) -> Authenticator {
    let source = JwksSource::File(jwks_file(name, signers));
    authenticator(KeySet::new(source, JwksRefresh::default(), None).expect("jwks"))
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("value"),
    );
    headers
}

async fn check(
    auth: &Authenticator,
    token: &str,
) -> Result<Arc<warden_identity::Principal>, AuthError> {
    auth.authenticate(&bearer(token), None, SystemTime::now())
        .await
}

async fn check_at(
    auth: &Authenticator,
    token: &str,
    at: SystemTime,
) -> Result<Arc<warden_identity::Principal>, AuthError> {
    auth.authenticate(&bearer(token), None, at).await
}

fn with(changes: &[(&str, Value)]) -> Value {
    let mut claims = claims();
    for (name, value) in changes {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(*name);
        } else {
            claims[*name] = value.clone();
        }
    }
    claims
}

#[tokio::test]
async fn tokens_signed_with_each_key_type_map_to_their_principal() {
    let (rsa, ec, ed) = (
        Signer::rsa("rsa-1"),
        Signer::ec("ec-1"),
        Signer::ed25519("ed-1"),
    );
    let auth = file_authenticator("types", &[&rsa, &ec, &ed]);
    for signer in [&rsa, &ec, &ed] {
        let principal = check(&auth, &signer.sign(&claims()))
            .await
            .expect("accepted");
        assert_eq!(&*principal.agent, "agent-7");
        assert_eq!(principal.on_behalf_of.as_deref(), Some("ada@example.com"));
        assert!(principal.in_group("editors") && principal.in_group("support"));
        assert_eq!(principal.method, warden_identity::AuthMethod::Jwt);
    }
}

#[tokio::test]
async fn each_bad_token_is_refused_with_its_own_reason() {
    let (rsa, ec) = (Signer::rsa("rsa-1"), Signer::ec("ec-1"));
    let auth = file_authenticator("bad", &[&rsa, &ec]);
    let stranger = Signer::ec("ec-1"); // same kid, other key
    let cases: Vec<(&str, String, TokenRejection)> = vec![
        (
            "bad signature",
            stranger.sign(&claims()),
            TokenRejection::BadSignature,
        ),
        (
            "wrong audience",
            rsa.sign(&with(&[("aud", json!("https://other.example/mcp"))])),
            TokenRejection::WrongAudience,
        ),
        (
            "wrong issuer",
            rsa.sign(&with(&[("iss", json!("https://evil.test"))])),
            TokenRejection::WrongIssuer,
        ),
        (
            "expired past the leeway",
            rsa.sign(&with(&[("exp", json!(now() - 31))])),
            TokenRejection::Expired,
        ),
        (
            "not yet valid past the leeway",
            rsa.sign(&with(&[("nbf", json!(now() + 60))])),
            TokenRejection::NotYetValid,
        ),
        (
            "no exp",
            rsa.sign(&with(&[("exp", Value::Null)])),
            TokenRejection::MissingClaim { claim: "exp" },
        ),
        (
            "no audience",
            rsa.sign(&with(&[("aud", Value::Null)])),
            TokenRejection::MissingClaim { claim: "aud" },
        ),
        (
            "no agent claim",
            rsa.sign(&with(&[("sub", Value::Null)])),
            TokenRejection::NoAgent,
        ),
    ];
    for (case, token, expected) in cases {
        let refused = check(&auth, &token).await.expect_err(case);
        assert_eq!(refused, AuthError::Token(expected), "{case}");
        assert!(
            !refused.to_string().contains(&token[..20]),
            "{case}: {refused}"
        );
    }
    // Within the leeway, both are still accepted.
    let skewed = with(&[("exp", json!(now() - 20)), ("nbf", json!(now() + 20))]);
    check(&auth, &rsa.sign(&skewed))
        .await
        .expect("within the leeway");
}

#[tokio::test]
async fn alg_none_and_hs_rs_confusion_are_refused() {
    use base64::Engine;
    let rsa = Signer::rsa("rsa-1");
    let auth = file_authenticator("alg", &[&rsa]);
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(v).expect("json"))
    };
    let unsigned = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "rsa-1"})),
        b64(&claims())
    );
    assert_eq!(
        check(&auth, &unsigned).await,
        Err(AuthError::Token(TokenRejection::AlgorithmNotAllowed))
    );
    // HS256 signed with the RSA public key as the shared secret.
    let public = serde_json::to_vec(&rsa.jwk).expect("json");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&public).expect("secret"),
    )
    .expect("hs");
    assert_eq!(
        check(&auth, &confused).await,
        Err(AuthError::Token(TokenRejection::AlgorithmNotAllowed))
    );
    // An EC-signed token naming the RSA key.
    let ec = Signer::ec("rsa-1");
    assert_eq!(
        check(&auth, &ec.sign(&claims())).await,
        Err(AuthError::Token(TokenRejection::AlgorithmMismatch))
    );
    // Unknown critical header extensions.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    header.crit = Some(vec!["exp-ext".into()]);
    let critical = jsonwebtoken::encode(&header, &claims(), &rsa.key).expect("sign");
    assert_eq!(
        check(&auth, &critical).await,
        Err(AuthError::Token(TokenRejection::Malformed))
    );
}

#[tokio::test]
async fn malformed_missing_and_oversized_credentials_are_told_apart() {
    let rsa = Signer::rsa("rsa-1");
    let auth = file_authenticator("headers", &[&rsa]);
    let now = SystemTime::now();
    assert_eq!(
        auth.authenticate(&HeaderMap::new(), None, now).await,
        Err(AuthError::Missing)
    );
    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer a b",
        "Bearer \"x\"",
        "token",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", value.parse().expect("value"));
        assert!(
            matches!(
                auth.authenticate(&headers, None, now).await,
                Err(AuthError::Malformed { .. })
            ),
            "{value}"
        );
    }
    let mut twice = bearer(&rsa.sign(&claims()));
    twice.append("authorization", "Bearer x".parse().expect("value"));
    assert!(matches!(
        auth.authenticate(&twice, None, now).await,
        Err(AuthError::Malformed { .. })
    ));
    let huge = format!("eyJ{}.a.b", "A".repeat(warden_identity::MAX_CREDENTIAL));
    assert_eq!(
        check(&auth, &huge).await,
        Err(AuthError::TooLarge {
            max: warden_identity::MAX_CREDENTIAL
        })
    );
    assert_eq!(
        check(&auth, "eyJhbGciOi.not-base64!.x").await,
        Err(AuthError::Malformed {
            header: "Authorization",
            detail: "the token is empty or has characters a token cannot have"
        })
    );
    assert_eq!(
        check(&auth, "eyJub3Rqc29u.e30.x").await,
        Err(AuthError::Token(TokenRejection::Malformed))
    );
}

/// A JWKS served over HTTP, counting the fetches.
struct JwksServer {
    url: String,
    fetches: Arc<AtomicUsize>,
    keys: Arc<std::sync::Mutex<Vec<Jwk>>>,
}

async fn jwks_server(keys: Vec<Jwk>) -> JwksServer {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    let fetches = Arc::new(AtomicUsize::new(0));
    let keys = Arc::new(std::sync::Mutex::new(keys));
    let (count, served) = (fetches.clone(), keys.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (count, served) = (count.clone(), served.clone());
            tokio::spawn(async move {
                let service = service_fn(move |_request: http::Request<hyper::body::Incoming>| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let set = JwkSet {
                        keys: served.lock().expect("keys").clone(),
                    };
                    let body = serde_json::to_vec(&set).expect("json");
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    JwksServer { url, fetches, keys }
}

fn url_keys(server: &JwksServer, min_interval: Duration) -> KeySet {
    let source = JwksSource::Url(server.url.parse().expect("url"));
    let refresh = JwksRefresh {
        max_age: Duration::from_secs(3600),
        min_interval,
    };
    KeySet::new(source, refresh, None).expect("keys")
}

#[tokio::test]
async fn an_unknown_kid_fetches_the_jwks_once_then_is_refused() {
    let rsa = Signer::rsa("rsa-1");
    let server = jwks_server(vec![rsa.jwk.clone()]).await;
    let auth = authenticator(url_keys(&server, Duration::from_secs(60)));
    let start = SystemTime::now();
    check_at(&auth, &rsa.sign(&claims()), start)
        .await
        .expect("first use fetches");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    check_at(&auth, &rsa.sign(&claims()), start)
        .await
        .expect("cached keys");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    // Within min_interval of that fetch, an unknown kid fetches nothing.
    let forged = Signer::ec("made-up");
    assert_eq!(
        check_at(
            &auth,
            &forged.sign(&claims()),
            start + Duration::from_secs(1)
        )
        .await,
        Err(AuthError::Token(TokenRejection::UnknownKey))
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    // Later: the first unknown kid fetches once; the next ones wait out min_interval.
    let later = start + Duration::from_secs(120);
    for n in 0..5 {
        let forged = Signer::ec(&format!("made-up-{n}"));
        assert_eq!(
            check_at(&auth, &forged.sign(&claims()), later).await,
            Err(AuthError::Token(TokenRejection::UnknownKey))
        );
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let (old, new) = (Signer::rsa("2026-11"), Signer::ec("2026-12"));
    let server = jwks_server(vec![old.jwk.clone()]).await;
    let auth = authenticator(url_keys(&server, Duration::ZERO));
    let old_token = old.sign(&claims());
    check(&auth, &old_token).await.expect("old key");
    *server.keys.lock().expect("keys") = vec![new.jwk.clone()];
    check(&auth, &new.sign(&claims()))
        .await
        .expect("new key fetched");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    // The old key is withdrawn: the very token verified before is not kept
    // past the change.
    assert_eq!(
        check(&auth, &old_token).await,
        Err(AuthError::Token(TokenRejection::UnknownKey))
    );
}

#[tokio::test]
async fn a_verdict_is_not_kept_longer_than_the_keys_it_was_checked_with() {
    let key = Signer::rsa("k1");
    let server = jwks_server(vec![key.jwk.clone()]).await;
    let auth = authenticator(url_keys(&server, Duration::from_secs(60)));
    let token = key.sign(&with(&[("exp", json!(now() + 7200))]));
    let start = SystemTime::now();
    check_at(&auth, &token, start).await.expect("valid");
    // The issuer withdraws the key; nothing else arrives to trigger a fetch.
    server.keys.lock().expect("keys").clear();
    check_at(&auth, &token, start + Duration::from_secs(30))
        .await
        .expect("within max_age the verdict stands");
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    // Past max_age (1h here), the same token makes Warden look again.
    assert_eq!(
        check_at(&auth, &token, start + Duration::from_secs(3700)).await,
        Err(AuthError::Token(TokenRejection::UnknownKey))
    );
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_unreachable_jwks_is_reported_as_unavailable_not_as_a_bad_token() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    drop(listener);
    let source = JwksSource::Url(url.parse().expect("url"));
    let auth = authenticator(KeySet::new(source, JwksRefresh::default(), None).expect("keys"));
    assert_eq!(
        check(&auth, &Signer::rsa("rsa-1").sign(&claims())).await,
        Err(AuthError::KeysUnavailable)
    );
}
