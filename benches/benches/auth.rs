//! What authenticating one request costs: a route without auth (the shared
//! `anonymous` principal), an API key (SHA-256 and a constant-time compare
//! against every configured key), and an ES256 JWT whose key the JWKS
//! cache holds, both the first time a token is seen (signature checked)
//! and again (verdict cached). CI only builds them (`cargo bench --no-run`).

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use warden_identity::{
    ApiKey, ApiKeys, AuthMethod, Authenticator, ClaimNames, JwksRefresh, JwksSource, JwtSettings,
    JwtVerifier, KeySet, Method, Principal,
};

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("value"),
    );
    headers
}

fn block<T>(runtime: &tokio::runtime::Runtime, f: impl std::future::Future<Output = T>) -> T {
    runtime.block_on(f)
}

fn jwt_authenticator(dir: &std::path::Path, cache: bool) -> (Authenticator, String) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256");
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("ec");
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).expect("jwk");
    jwk.common.key_id = Some("k1".into());
    let path = dir.join(format!("jwks-{cache}.json"));
    std::fs::write(
        &path,
        serde_json::to_vec(&JwkSet { keys: vec![jwk] }).expect("json"),
    )
    .expect("jwks");
    let settings = JwtSettings {
        issuer: "https://auth.bench".into(),
        audiences: vec!["https://warden.bench/mcp".into()],
        algorithms: vec![Algorithm::ES256],
        leeway: Duration::from_secs(30),
        claims: ClaimNames {
            agent: "sub".into(),
            user: None,
            groups: Some("groups".into()),
        },
    };
    let keys = KeySet::new(JwksSource::File(path), JwksRefresh::default(), None).expect("keys");
    let verifier = JwtVerifier::new(settings, keys);
    let verifier = if cache {
        verifier
    } else {
        verifier.without_verdict_cache()
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("k1".into());
    let claims = serde_json::json!({"iss": "https://auth.bench", "aud": "https://warden.bench/mcp",
        "sub": "agent-7", "groups": ["editors"], "exp": now + 3600});
    let token = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
    (
        Authenticator::new(vec![Method::Jwt(Box::new(verifier))]),
        token,
    )
}

fn authenticate(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let now = SystemTime::now();

    let anonymous = Authenticator::new(vec![]).allow_anonymous(true);
    c.bench_function("authenticate: anonymous route (no credential)", |b| {
        b.iter(|| {
            block(
                &runtime,
                anonymous.authenticate(black_box(&HeaderMap::new()), None, now),
            )
        })
    });

    let keys: Vec<(String, ApiKey)> = (0..4)
        .map(|n| {
            let key = warden_identity::api_key::new_key().expect("random");
            let digest =
                warden_identity::api_key::parse_digest(&warden_identity::api_key::digest_hex(&key))
                    .expect("hex");
            let principal = Principal {
                agent: format!("agent-{n}").into(),
                on_behalf_of: None,
                groups: vec![Arc::from("editors")],
                method: AuthMethod::ApiKey,
            };
            (key, ApiKey::new(digest, principal))
        })
        .collect();
    let headers = bearer(&keys[3].0);
    let api = Authenticator::new(vec![Method::ApiKeys(ApiKeys::new(
        keys.into_iter().map(|(_, k)| k).collect(),
    ))]);
    c.bench_function("authenticate: API key (4 keys configured)", |b| {
        b.iter(|| block(&runtime, api.authenticate(black_box(&headers), None, now)).expect("known"))
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let (cached, token) = jwt_authenticator(dir.path(), true);
    let headers = bearer(&token);
    c.bench_function(
        "authenticate: ES256 JWT seen before (verdict cached)",
        |b| {
            b.iter(|| {
                block(
                    &runtime,
                    cached.authenticate(black_box(&headers), None, now),
                )
                .expect("valid")
            })
        },
    );
    let (checked, token) = jwt_authenticator(dir.path(), false);
    let headers = bearer(&token);
    c.bench_function(
        "authenticate: ES256 JWT, signature checked (JWKS key cached)",
        |b| {
            b.iter(|| {
                block(
                    &runtime,
                    checked.authenticate(black_box(&headers), None, now),
                )
                .expect("valid")
            })
        },
    );
}

criterion_group!(auth, authenticate);
criterion_main!(auth);
