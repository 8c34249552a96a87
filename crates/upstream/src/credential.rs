//! Scoped credentials: the secret Warden gives one tool (or group of
//! tools), never the agent. A credential comes from an environment
//! variable (read at start), a file (a Kubernetes secret mount: read again
//! whenever it changes, no restart), an OAuth 2.0 client-credentials grant
//! (the token cached until shortly before it expires), or an inline value
//! (development only: Warden warns at load).
//!
//! HTTP upstreams receive it as a header on the requests of its lane only;
//! stdio upstreams as an environment variable of the children serving that
//! lane. The value never appears in a log line, an error or a `Debug`
//! print: [`Secret`] shows only its length.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest secret file or token response read.
const MAX_SECRET: usize = 64 << 10;
/// A token is fetched again this long before it expires (or half its
/// lifetime before, for short-lived tokens).
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// The longest a token is kept, whatever `expires_in` says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// Time limit of one token request.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A secret value: compared, sent, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    /// Wrap a value.
    pub fn new(value: impl Into<Arc<str>>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place it is sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Where a credential's value comes from.
#[derive(Debug)]
pub enum Source {
    /// An environment variable of Warden's, read at start.
    Env {
        /// The variable.
        name: String,
        /// Its value.
        value: Secret,
    },
    /// A file, read again whenever its size or modification time changes.
    File {
        /// The file.
        path: PathBuf,
        /// The value last read and the file's stamp then.
        cached: Mutex<Option<(FileStamp, Secret)>>,
    },
    /// Written in the config (development only).
    Inline(Secret),
    /// An OAuth 2.0 client-credentials grant.
    OAuth(Box<ClientCredentials>),
}

/// What tells a changed file from an unchanged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// An OAuth 2.0 client-credentials grant (RFC 6749 §4.4).
pub struct ClientCredentials {
    /// The token endpoint.
    pub token_url: Uri,
    /// The client's id.
    pub client_id: String,
    /// The client's secret.
    pub client_secret: Box<Source>,
    /// Scopes asked for.
    pub scope: Option<String>,
    /// The resource (RFC 8707) or audience the token is for.
    pub resource: Option<String>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    token: tokio::sync::Mutex<Option<(Secret, SystemTime)>>,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url.path())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// One named credential and how it is delivered.
#[derive(Debug)]
pub struct Credential {
    /// Its name, as the policy names it.
    pub name: Arc<str>,
    /// Where its value comes from.
    pub source: Source,
    /// HTTP: the header it is sent in.
    pub header: HeaderName,
    /// HTTP: what precedes the value in the header (`Bearer`), if anything.
    pub scheme: Option<String>,
    /// stdio: the environment variable the child gets it in.
    pub env_var: Option<String>,
}

/// Why a credential's value is not available now. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The file could not be read.
    #[error("credential {name}: cannot read {path}: {detail}")]
    File {
        /// The credential.
        name: String,
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The token endpoint did not give a token.
    #[error("credential {name}: the token endpoint {endpoint} gave no token: {detail}")]
    Token {
        /// The credential.
        name: String,
        /// The endpoint (scheme, host and path).
        endpoint: String,
        /// What went wrong (a status, an error code; never a secret).
        detail: String,
    },
    /// The value cannot be sent as a header or an environment variable.
    #[error("credential {name}: the value is empty or holds characters a header cannot carry")]
    Unusable {
        /// The credential.
        name: String,
    },
    /// An OAuth credential was asked for outside the async runtime.
    #[error("credential {name}: an OAuth token cannot be given to a stdio server")]
    NotForStdio {
        /// The credential.
        name: String,
    },
}

// === impl Source ===

impl Source {
    /// A file source, read now so a missing file is reported at start.
    pub fn file(name: &str, path: PathBuf) -> Result<Source, CredentialError> {
        let source = Source::File {
            path,
            cached: Mutex::new(None),
        };
        source.read_now(name)?;
        Ok(source)
    }

    /// The value now, for a source that needs no network: an environment
    /// variable's, an inline value, or a file's (read again when it
    /// changed). Errors name `name`, never the value.
    pub fn current(&self, name: &str) -> Result<Secret, CredentialError> {
        self.read_now(name)
    }

    /// The value now, for sources that need no network (env, file, inline).
    fn read_now(&self, name: &str) -> Result<Secret, CredentialError> {
        match self {
            Source::Env { value, .. } | Source::Inline(value) => Ok(value.clone()),
            Source::File { path, cached } => {
                let error = |detail: String| CredentialError::File {
                    name: name.to_owned(),
                    path: path.display().to_string(),
                    detail,
                };
                let meta = std::fs::metadata(path).map_err(|e| error(e.to_string()))?;
                let stamp = FileStamp {
                    modified: meta.modified().ok(),
                    len: meta.len(),
                };
                let mut cached = cached
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some((seen, value)) = &*cached
                    && *seen == stamp
                {
                    return Ok(value.clone());
                }
                use std::io::Read;
                let mut text = String::new();
                std::fs::File::open(path)
                    .and_then(|file| file.take(MAX_SECRET as u64 + 1).read_to_string(&mut text))
                    .map_err(|e| error(e.to_string()))?;
                if text.len() > MAX_SECRET {
                    return Err(error(format!("larger than {MAX_SECRET} bytes")));
                }
                // Secret mounts often end the value with a line break.
                let value = Secret::new(text.trim_end_matches(['\r', '\n']));
                if value.expose().is_empty() {
                    return Err(error("the file is empty".to_owned()));
                }
                *cached = Some((stamp, value.clone()));
                Ok(value)
            }
            Source::OAuth(_) => Err(CredentialError::NotForStdio {
                name: name.to_owned(),
            }),
        }
    }

    async fn read(&self, name: &str, now: SystemTime) -> Result<Secret, CredentialError> {
        match self {
            Source::OAuth(grant) => grant.token(name, now).await,
            _ => self.read_now(name),
        }
    }
}

// === impl ClientCredentials ===

impl ClientCredentials {
    /// A grant against `token_url`, trusting the system's roots and `ca_file`.
    pub fn new(
        token_url: Uri,
        client_id: String,
        client_secret: Source,
        scope: Option<String>,
        resource: Option<String>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<ClientCredentials, warden_identity::SetupError> {
        let roots = warden_identity::tls::trust_roots(ca_file)?;
        let tls = warden_identity::tls::client_config_with(roots)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(TOKEN_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(ClientCredentials {
            token_url,
            client_id,
            client_secret: Box::new(client_secret),
            scope,
            resource,
            client: Client::builder(TokioExecutor::new()).build(connector),
            token: tokio::sync::Mutex::new(None),
        })
    }

    /// The cached token, or a new one when it is (nearly) expired. One
    /// request at a time: callers waiting meanwhile get its token.
    async fn token(&self, name: &str, now: SystemTime) -> Result<Secret, CredentialError> {
        let mut token = self.token.lock().await;
        if let Some((value, refresh_at)) = &*token
            && now < *refresh_at
        {
            return Ok(value.clone());
        }
        let (value, lifetime) = self.request(name).await?;
        if HeaderValue::from_str(value.expose()).is_err() {
            return Err(CredentialError::Unusable {
                name: name.to_owned(),
            });
        }
        let lifetime = lifetime.min(MAX_TOKEN_LIFETIME);
        let margin = EXPIRY_MARGIN.min(lifetime / 2);
        *token = Some((value.clone(), now + (lifetime - margin)));
        Ok(value)
    }

    async fn request(&self, name: &str) -> Result<(Secret, Duration), CredentialError> {
        let endpoint = format!(
            "{}://{}{}",
            self.token_url.scheme_str().unwrap_or("https"),
            self.token_url.authority().map_or("", |a| a.as_str()),
            self.token_url.path()
        );
        let fail = |detail: String| CredentialError::Token {
            name: name.to_owned(),
            endpoint: endpoint.clone(),
            detail,
        };
        let secret = self.client_secret.read_now(name)?;
        let mut form = form_urlencoded(&[
            ("grant_type", "client_credentials"),
            ("client_id", &self.client_id),
            ("client_secret", secret.expose()),
        ]);
        for (key, value) in [("scope", &self.scope), ("resource", &self.resource)] {
            if let Some(value) = value {
                form.push('&');
                form.push_str(&form_urlencoded(&[(key, value)]));
            }
        }
        let request = Request::post(self.token_url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|err| fail(err.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|_| fail("unreachable".to_owned()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_SECRET)
                .collect()
                .await
                .map_err(|_| fail("the response could not be read".to_owned()))?
                .to_bytes();
            Ok::<_, CredentialError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TOKEN_TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {}s", TOKEN_TIMEOUT.as_secs())))??;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            access_token: Option<String>,
            expires_in: Option<u64>,
            error: Option<String>,
        }
        let parsed: Option<TokenResponse> = serde_json::from_slice(&body).ok();
        match parsed {
            Some(TokenResponse {
                access_token: Some(token),
                expires_in,
                ..
            }) if status.is_success() && !token.is_empty() => Ok((
                Secret::new(token),
                Duration::from_secs(expires_in.unwrap_or(300)),
            )),
            Some(TokenResponse {
                error: Some(code), ..
            }) => Err(fail(format!(
                "HTTP {status}, error {}",
                code.chars().take(64).collect::<String>()
            ))),
            _ => Err(fail(format!("HTTP {status}"))),
        }
    }
}

/// `application/x-www-form-urlencoded` pairs.
fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

// === impl Credential ===

impl Credential {
    /// The header to send, marked sensitive (HTTP libraries keep it out of
    /// their debug output).
    pub async fn header_value(&self, now: SystemTime) -> Result<HeaderValue, CredentialError> {
        let value = self.source.read(&self.name, now).await?;
        let text = match &self.scheme {
            Some(scheme) => format!("{scheme} {}", value.expose()),
            None => value.expose().to_owned(),
        };
        let mut header = HeaderValue::from_str(&text).map_err(|_| CredentialError::Unusable {
            name: self.name.to_string(),
        })?;
        header.set_sensitive(true);
        Ok(header)
    }

    /// The environment variable a stdio child gets (name, value), read now.
    pub fn env_pair(&self) -> Result<Option<(String, Secret)>, CredentialError> {
        let Some(var) = &self.env_var else {
            return Ok(None);
        };
        let value = self.source.read_now(&self.name)?;
        if value.expose().contains('\0') {
            return Err(CredentialError::Unusable {
                name: self.name.to_string(),
            });
        }
        Ok(Some((var.clone(), value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_and_a_file_is_read_again_when_it_changes() {
        let secret = Secret::new("s3cr3t-value");
        assert_eq!(format!("{secret:?}"), "Secret(12 bytes)");
        let dir = std::env::temp_dir().join(format!("warden-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("token");
        std::fs::write(&path, "first-token\n").expect("write");
        let source = Source::file("crm", path.clone()).expect("readable");
        assert_eq!(
            source.read_now("crm").expect("value").expose(),
            "first-token"
        );
        std::fs::write(&path, "second-token-longer\n").expect("rotate");
        assert_eq!(
            source.read_now("crm").expect("value").expose(),
            "second-token-longer"
        );
        std::fs::remove_file(&path).expect("remove");
        let err = source.read_now("crm").expect_err("gone");
        assert!(!err.to_string().contains("second-token"), "{err}");
        assert!(Source::file("crm", dir.join("missing")).is_err());
    }

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(
            form_urlencoded(&[("scope", "a b"), ("x", "é&=")]),
            "scope=a+b&x=%C3%A9%26%3D"
        );
    }
}
