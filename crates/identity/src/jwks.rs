//! The keys JWTs are checked against: a JWKS from a file or an HTTPS URL,
//! cached, and fetched again when it is older than `max_age` or a token
//! names a key it does not hold, at most once per `min_interval` (a flood
//! of tokens with made-up `kid`s costs one fetch, not one per token).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::error::SetupError;

/// The largest JWKS document read.
const MAX_JWKS: usize = 1 << 20;
/// Time limit of one JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A file (e.g. a mounted Kubernetes secret or config map).
    File(PathBuf),
    /// An `https` URL (`http` only on loopback, for tests).
    Url(Uri),
}

/// How often the keys are fetched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksRefresh {
    /// Keys older than this are fetched again before use (kept if the fetch fails).
    pub max_age: Duration,
    /// At most one fetch per this interval, however many unknown keys are named.
    pub min_interval: Duration,
}

impl Default for JwksRefresh {
    fn default() -> JwksRefresh {
        JwksRefresh {
            max_age: Duration::from_secs(600),
            min_interval: Duration::from_secs(30),
        }
    }
}

/// One verification key of the set.
#[derive(Clone)]
pub struct Key {
    kid: Option<String>,
    /// The algorithms this key may verify.
    algorithms: &'static [Algorithm],
    pub(crate) decoding: DecodingKey,
}

/// What a lookup found.
pub enum Lookup {
    /// The key to check the token with.
    Found(Arc<Key>),
    /// A key by that id exists, but not for the token's algorithm.
    WrongAlgorithm,
    /// No key by that id (or, with no id, no single key fits).
    Unknown,
    /// No keys at all: the source could not be read yet.
    Unavailable,
}

/// A cached JWKS and how to fetch it again.
pub struct KeySet {
    source: JwksSource,
    refresh: JwksRefresh,
    client: Option<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>>,
    current: RwLock<Arc<Keys>>,
    /// When the last fetch was tried; held while one is under way.
    last_attempt: tokio::sync::Mutex<Option<SystemTime>>,
}

#[derive(Default)]
struct Keys {
    keys: Vec<Arc<Key>>,
    fetched: Option<SystemTime>,
    generation: u64,
}

// === impl Key ===

impl Key {
    /// Read one JWK; `None` for keys Warden never verifies with (symmetric
    /// `oct` keys, encryption keys, unknown types).
    pub fn from_jwk(jwk: &Jwk) -> Option<Key> {
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return None;
        }
        if let Some(ops) = &jwk.common.key_operations
            && !ops.iter().any(|op| matches!(op, KeyOperations::Verify))
        {
            return None;
        }
        let algorithms: &'static [Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => &[
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => &[Algorithm::ES256],
                EllipticCurve::P384 => &[Algorithm::ES384],
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                &[Algorithm::EdDSA]
            }
            _ => return None,
        };
        let decoding = DecodingKey::from_jwk(jwk).ok()?;
        // A key that names its algorithm verifies that one only.
        let algorithms = match jwk.common.key_algorithm {
            None => algorithms,
            Some(named) => {
                let named = named.to_string().parse::<Algorithm>().ok()?;
                let index = algorithms.iter().position(|a| *a == named)?;
                &algorithms[index..=index]
            }
        };
        Some(Key {
            kid: jwk.common.key_id.clone(),
            algorithms,
            decoding,
        })
    }

    fn fits(&self, algorithm: Algorithm) -> bool {
        self.algorithms.contains(&algorithm)
    }
}

// === impl KeySet ===

impl KeySet {
    /// A key set read from `source`. A file is read now (so a bad one is
    /// reported at start); a URL is fetched on first use. The clock of
    /// every later decision is the caller's (`now` of [`KeySet::key_for`]).
    pub fn new(
        source: JwksSource,
        refresh: JwksRefresh,
        ca_file: Option<&std::path::Path>,
    ) -> Result<KeySet, SetupError> {
        let client = match &source {
            JwksSource::File(_) => None,
            JwksSource::Url(url) => Some(http_client(ca_file, url.scheme_str() == Some("https"))?),
        };
        let set = KeySet {
            source,
            refresh,
            client,
            current: RwLock::default(),
            last_attempt: tokio::sync::Mutex::new(None),
        };
        if let JwksSource::File(path) = &set.source {
            let bytes = std::fs::read(path).map_err(|err| SetupError::Jwks {
                source_name: path.display().to_string(),
                detail: err.to_string(),
            })?;
            let keys = parse(&bytes).map_err(|detail| SetupError::Jwks {
                source_name: path.display().to_string(),
                detail,
            })?;
            *set.write() = Arc::new(Keys {
                keys,
                fetched: Some(SystemTime::now()),
                generation: 1,
            });
        }
        Ok(set)
    }

    /// How long fetched keys are trusted before they are fetched again.
    pub fn max_age(&self) -> Duration {
        self.refresh.max_age
    }

    /// Changes whenever the keys do (cached verdicts older than it are dropped).
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// The key to check a token signed with `algorithm` and naming `kid`,
    /// fetching the set again when it is stale or lacks that key.
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
        now: SystemTime,
    ) -> Lookup {
        let current = self.read();
        let fresh = current
            .fetched
            .is_some_and(|at| elapsed(at, now) < self.refresh.max_age);
        let found = current.find(kid, algorithm);
        if fresh && matches!(found, Lookup::Found(_) | Lookup::WrongAlgorithm) {
            return found;
        }
        if self.fetch_again(now).await.is_err() && matches!(found, Lookup::Found(_)) {
            // The source is down: a stale key is better than none.
            return found;
        }
        self.read().find(kid, algorithm)
    }

    /// Fetch now, unless a fetch was tried within `min_interval`.
    async fn fetch_again(&self, now: SystemTime) -> Result<(), ()> {
        let mut last = self.last_attempt.lock().await;
        if last.is_some_and(|at| elapsed(at, now) < self.refresh.min_interval) {
            return Ok(());
        }
        *last = Some(now);
        match self.fetch().await {
            Ok(keys) => {
                let generation = self.read().generation + 1;
                tracing::debug!(source = %self.source_name(), keys = keys.len(), "JWKS fetched.");
                *self.write() = Arc::new(Keys {
                    keys,
                    fetched: Some(now),
                    generation,
                });
                Ok(())
            }
            Err(detail) => {
                tracing::warn!(source = %self.source_name(), detail = %detail, "Cannot fetch the JWKS; keeping the keys held.");
                Err(())
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Arc<Key>>, String> {
        let bytes = match (&self.source, &self.client) {
            (JwksSource::File(path), _) => {
                tokio::fs::read(path).await.map_err(|err| err.to_string())?
            }
            (JwksSource::Url(url), Some(client)) => {
                let request = http::Request::get(url.clone())
                    .header(http::header::ACCEPT, "application/json")
                    .body(Empty::new())
                    .map_err(|err| err.to_string())?;
                let response = tokio::time::timeout(FETCH_TIMEOUT, async {
                    let response = client
                        .request(request)
                        .await
                        .map_err(|err| err.to_string())?;
                    if !response.status().is_success() {
                        return Err(format!("HTTP {}", response.status()));
                    }
                    Limited::new(response.into_body(), MAX_JWKS)
                        .collect()
                        .await
                        .map(|body| body.to_bytes().to_vec())
                        .map_err(|err| err.to_string())
                })
                .await
                .map_err(|_| "timed out".to_owned())?;
                response?
            }
            (JwksSource::Url(_), None) => return Err("no HTTP client".to_owned()),
        };
        parse(&bytes)
    }

    /// The source as logs name it (a URL's scheme, host and path: no query).
    fn source_name(&self) -> String {
        match &self.source {
            JwksSource::File(path) => path.display().to_string(),
            JwksSource::Url(url) => format!(
                "{}://{}{}",
                url.scheme_str().unwrap_or("https"),
                url.authority().map_or("", |a| a.as_str()),
                url.path()
            ),
        }
    }

    fn read(&self) -> Arc<Keys> {
        match self.current.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Arc<Keys>> {
        self.current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

// === impl Keys ===

impl Keys {
    fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Lookup {
        if self.keys.is_empty() {
            return if self.fetched.is_some() {
                Lookup::Unknown
            } else {
                Lookup::Unavailable
            };
        }
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                match named.clone().find(|k| k.fits(algorithm)) {
                    Some(key) => Lookup::Found(key.clone()),
                    None if named.next().is_some() => Lookup::WrongAlgorithm,
                    None => Lookup::Unknown,
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(algorithm));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Lookup::Found(key.clone()),
                    _ => Lookup::Unknown,
                }
            }
        }
    }
}

/// Time from `then` to `now`; zero if the clock went back.
fn elapsed(then: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(then).unwrap_or_default()
}

/// Read a JWKS document, keeping the keys Warden can verify with.
fn parse(bytes: &[u8]) -> Result<Vec<Arc<Key>>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(bytes).map_err(|err| format!("not a JWKS document: {err}"))?;
    Ok(document
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| Key::from_jwk(&jwk))
        .map(Arc::new)
        .collect())
}

fn http_client(
    ca_file: Option<&std::path::Path>,
    https: bool,
) -> Result<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>, SetupError> {
    let roots = crate::tls::trust_roots(ca_file)?;
    if https && roots.is_empty() {
        return Err(SetupError::NoRoots);
    }
    let tls = crate::tls::client_config_with(roots)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}
