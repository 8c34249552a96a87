//! A route's `credentials`: what Warden gives each tool's calls on the way
//! to the upstream (the policy names a credential per tool), raw → validated
//! [`CredentialConfig`] → the running [`Credential`].
//!
//! ```yaml
//! routes:
//!   - path: /mcp
//!     credentials:
//!       crm-reader:
//!         file: /var/run/secrets/crm/read-token   # re-read when it changes
//!       notes-writer:
//!         env: NOTES_WRITER_TOKEN                 # read at start
//!         header: x-api-key                       # HTTP (default authorization)
//!         scheme: none                            # default Bearer for authorization
//!         env_var: NOTES_TOKEN                    # stdio: the child's variable
//!       billing:
//!         oauth:                                  # client-credentials grant
//!           token_url: https://auth.example.com/oauth/token
//!           client_id: warden-billing
//!           client_secret_file: /var/run/secrets/billing/secret
//!           scope: invoices.write
//!     base_credential: crm-reader   # initialize, tools/list, resources, prompts
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, Uri};
use serde::Deserialize;
use warden_policy::located::{Collector as Errors, Diagnostic, Spanned};
use warden_upstream::credential::{ClientCredentials, Credential, CredentialError, Secret, Source};

/// One validated credential.
#[derive(Debug, Clone)]
pub struct CredentialConfig {
    /// Its name, as the policy names it.
    pub name: String,
    /// Where its value comes from.
    pub source: SourceConfig,
    /// HTTP: the header it is sent in.
    pub header: HeaderName,
    /// HTTP: what precedes the value (`Bearer`), if anything.
    pub scheme: Option<String>,
    /// stdio: the child's environment variable.
    pub env_var: Option<String>,
}

/// Where a credential's value comes from, as configured.
#[derive(Clone)]
pub enum SourceConfig {
    /// An environment variable of Warden's.
    Env(String),
    /// A file.
    File(PathBuf),
    /// Written in the config (development only).
    Inline(Secret),
    /// A client-credentials grant.
    OAuth {
        /// The token endpoint.
        token_url: Uri,
        /// The client id.
        client_id: String,
        /// Where the client secret comes from (env or file).
        client_secret: Box<SourceConfig>,
        /// Scopes.
        scope: Option<String>,
        /// RFC 8707 resource.
        resource: Option<String>,
        /// Extra trust roots.
        ca_file: Option<PathBuf>,
    },
}

impl std::fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceConfig::Env(name) => write!(f, "Env({name})"),
            SourceConfig::File(path) => write!(f, "File({})", path.display()),
            SourceConfig::Inline(_) => f.write_str("Inline(..)"),
            SourceConfig::OAuth { token_url, .. } => write!(f, "OAuth({})", token_url.path()),
        }
    }
}

/// Why a credential could not be built at start.
#[derive(Debug, thiserror::Error)]
pub enum CredentialSetupError {
    /// The environment variable is not set (or not UTF-8).
    #[error("credential {name}: the environment variable {variable} is not set (or empty)")]
    MissingEnv {
        /// The credential.
        name: String,
        /// The variable.
        variable: String,
    },
    /// The value could not be read.
    #[error(transparent)]
    Read(#[from] CredentialError),
    /// The token client could not be built.
    #[error("credential {name}: {source}")]
    Client {
        /// The credential.
        name: String,
        /// Why.
        #[source]
        source: warden_identity::SetupError,
    },
}

// === raw ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    env: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    inline: Option<Spanned<String>>,
    oauth: Option<Spanned<RawOAuth>>,
    header: Option<Spanned<String>>,
    scheme: Option<String>,
    env_var: Option<Spanned<String>>,
}

impl std::fmt::Debug for RawCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the inline value.
        f.debug_struct("RawCredential")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("inline", &self.inline.as_ref().map(|_| ".."))
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    token_url: Spanned<String>,
    client_id: String,
    client_secret_env: Option<String>,
    client_secret_file: Option<Spanned<String>>,
    scope: Option<String>,
    resource: Option<String>,
    ca_file: Option<String>,
}

/// A secret another section reads the way credentials are read (the
/// approval channels' signing secrets and Slack's webhook URL): exactly one
/// of `env` (read at start), `file` (read again when it changes) and
/// `inline` (development only).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    env: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    inline: Option<Spanned<String>>,
}

impl std::fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the inline value.
        f.debug_struct("RawSecret")
            .field("env", &self.env)
            .field("file", &self.file)
            .field("inline", &self.inline.as_ref().map(|_| ".."))
            .finish()
    }
}

impl RawSecret {
    /// Where the secret comes from; problems are reported at `at`.
    pub(crate) fn validate(
        at: &Spanned<RawSecret>,
        base: &Path,
        errors: &mut Errors,
    ) -> Option<SourceConfig> {
        let raw = &at.value;
        match (&raw.env, &raw.file, &raw.inline) {
            (Some(env), None, None) if !env.value.is_empty() => {
                Some(SourceConfig::Env(env.value.clone()))
            }
            (None, Some(file), None) if !file.value.is_empty() => {
                Some(SourceConfig::File(base.join(&file.value)))
            }
            (None, None, Some(inline)) if !inline.value.is_empty() => {
                Some(SourceConfig::Inline(Secret::new(inline.value.as_str())))
            }
            _ => {
                errors.push(Diagnostic::at(
                    at,
                    "a secret needs exactly one of env, file and inline, not empty",
                ));
                None
            }
        }
    }
}

/// Headers a credential may not be sent in: framing, routing and session
/// headers Warden sets itself.
const NOT_CREDENTIAL_HEADERS: [&str; 10] = [
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "accept",
    "mcp-session-id",
];

/// Validate a route's `credentials`; `stdio` says how they are delivered.
pub(crate) fn validate(
    raw: &HashMap<Spanned<String>, RawCredential>,
    stdio: bool,
    base: &Path,
    errors: &mut Errors,
) -> Vec<CredentialConfig> {
    let mut named: Vec<_> = raw.iter().collect();
    named.sort_by(|a, b| a.0.value.cmp(&b.0.value));
    named
        .into_iter()
        .filter_map(|(name, credential)| credential.validate(name, stdio, base, errors))
        .collect()
}

impl RawCredential {
    fn validate(
        &self,
        name: &Spanned<String>,
        stdio: bool,
        base: &Path,
        errors: &mut Errors,
    ) -> Option<CredentialConfig> {
        if name.value.trim().is_empty() {
            errors.push(Diagnostic::at(name, "a credential name must not be empty"));
        }
        let given = [
            self.env.is_some(),
            self.file.is_some(),
            self.inline.is_some(),
            self.oauth.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            errors.push(Diagnostic::at(
                name,
                "a credential needs exactly one of env, file, inline and oauth",
            ));
            return None;
        }
        let source = if let Some(env) = &self.env {
            SourceConfig::Env(env.value.clone())
        } else if let Some(file) = &self.file {
            SourceConfig::File(base.join(&file.value))
        } else if let Some(inline) = &self.inline {
            if inline.value.is_empty() {
                errors.push(Diagnostic::at(
                    inline,
                    "an inline credential must not be empty",
                ));
            }
            SourceConfig::Inline(Secret::new(inline.value.as_str()))
        } else {
            let oauth = self.oauth.as_ref()?;
            if stdio {
                errors.push(Diagnostic::at(
                    oauth,
                    "an OAuth credential serves HTTP upstreams only (a stdio server gets its credential once, at start)",
                ));
            }
            let token_url = match oauth.value.token_url.value.parse::<Uri>() {
                Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => uri,
                Ok(uri) if uri.scheme_str() == Some("http") && crate::auth::is_loopback(&uri) => {
                    uri
                }
                _ => {
                    errors.push(Diagnostic::at(
                        &oauth.value.token_url,
                        "token_url must be an https URL (http only on loopback, for tests): the client secret goes in the request",
                    ));
                    return None;
                }
            };
            let client_secret = match (
                &oauth.value.client_secret_env,
                &oauth.value.client_secret_file,
            ) {
                (Some(env), None) => SourceConfig::Env(env.clone()),
                (None, Some(file)) => SourceConfig::File(base.join(&file.value)),
                _ => {
                    errors.push(Diagnostic::at(
                        oauth,
                        "oauth needs exactly one of client_secret_env and client_secret_file",
                    ));
                    return None;
                }
            };
            SourceConfig::OAuth {
                token_url,
                client_id: oauth.value.client_id.clone(),
                client_secret: Box::new(client_secret),
                scope: oauth.value.scope.clone(),
                resource: oauth.value.resource.clone(),
                ca_file: oauth.value.ca_file.as_ref().map(|c| base.join(c)),
            }
        };
        let header = match &self.header {
            None => http::header::AUTHORIZATION,
            Some(header) => match HeaderName::from_bytes(header.value.trim().as_bytes()) {
                Ok(parsed) if NOT_CREDENTIAL_HEADERS.contains(&parsed.as_str()) => {
                    errors.push(Diagnostic::at(
                        header,
                        format!(
                            "a credential cannot be sent in {parsed}, which Warden sets itself"
                        ),
                    ));
                    return None;
                }
                Ok(parsed) => parsed,
                Err(_) => {
                    errors.push(Diagnostic::at(header, "not a header name"));
                    return None;
                }
            },
        };
        let scheme = match self.scheme.as_deref() {
            Some("none") | Some("") => None,
            Some(scheme) => Some(scheme.to_owned()),
            None if header == http::header::AUTHORIZATION => Some("Bearer".to_owned()),
            None => None,
        };
        if stdio && self.env_var.is_none() {
            errors.push(Diagnostic::at(
                name,
                "a stdio upstream gets its credential as an environment variable: set env_var",
            ));
        }
        if let Some(var) = &self.env_var
            && (var.value.is_empty() || var.value.contains(['=', '\0']))
        {
            errors.push(Diagnostic::at(var, "not an environment variable name"));
        }
        Some(CredentialConfig {
            name: name.value.clone(),
            source,
            header,
            scheme,
            env_var: self.env_var.as_ref().map(|v| v.value.clone()),
        })
    }
}

// === impl CredentialConfig ===

impl CredentialConfig {
    /// The running credential: reads environment variables and files now,
    /// so a missing one stops Warden at start.
    pub fn build(&self) -> Result<Arc<Credential>, CredentialSetupError> {
        if matches!(self.source, SourceConfig::Inline(_)) {
            tracing::warn!(credential = %self.name, "The credential's value is written in the config file: for development only; use env, file or oauth.");
        }
        Ok(Arc::new(Credential {
            name: self.name.as_str().into(),
            source: source(&self.name, &self.source)?,
            header: self.header.clone(),
            scheme: self.scheme.clone(),
            env_var: self.env_var.clone(),
        }))
    }
}

/// The running source of `config`; `name` says whose it is in errors.
pub(crate) fn source(name: &str, config: &SourceConfig) -> Result<Source, CredentialSetupError> {
    Ok(match config {
        SourceConfig::Env(variable) => Source::Env {
            name: variable.clone(),
            value: Secret::new(
                std::env::var(variable)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| CredentialSetupError::MissingEnv {
                        name: name.to_owned(),
                        variable: variable.clone(),
                    })?,
            ),
        },
        SourceConfig::File(path) => Source::file(name, path.clone())?,
        SourceConfig::Inline(value) => Source::Inline(value.clone()),
        SourceConfig::OAuth {
            token_url,
            client_id,
            client_secret,
            scope,
            resource,
            ca_file,
        } => Source::OAuth(Box::new(
            ClientCredentials::new(
                token_url.clone(),
                client_id.clone(),
                source(name, client_secret)?,
                scope.clone(),
                resource.clone(),
                ca_file.as_deref(),
            )
            .map_err(|source| CredentialSetupError::Client {
                name: name.to_owned(),
                source,
            })?,
        )),
    })
}
