//! TLS on Warden's listeners (rustls): a certificate and key from files,
//! read again when either file changes (checked on a new connection's
//! handshake, at most once per `limits.reload_interval`; a pair that does not load keeps the last
//! good one and says why), and optionally a client CA whose certificates a
//! client must (or may) present: mutual TLS, whose verified certificate an
//! `mtls` auth method maps to a principal.
//!
//! ```yaml
//! tls:                                # the MCP listener (admin_tls: the admin one)
//!   cert_file: /etc/warden/tls/tls.crt    # PEM chain, leaf first
//!   key_file: /etc/warden/tls/tls.key     # PEM private key
//!   client_ca_file: /etc/warden/tls/clients-ca.pem   # mTLS (optional)
//!   client_auth: required             # or optional (default required with a CA)
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use warden_policy::located::{Collector as Errors, Diagnostic, Spanned};

/// A listener's validated TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle client certificates must chain to (mTLS).
    pub client_ca_file: Option<PathBuf>,
    /// Whether a client must present a certificate (with a client CA).
    pub client_certificate_required: bool,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read or holds no usable PEM item.
    #[error("cannot use {path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the settings (e.g. the key does not match the certificate).
    #[error("rustls refused the TLS settings")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client_ca_file: {0}")]
    ClientCa(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    cert_file: Spanned<String>,
    key_file: Spanned<String>,
    client_ca_file: Option<Spanned<String>>,
    client_auth: Option<Spanned<String>>,
}

impl RawTls {
    /// Validate; `admin` for the admin listener without approvers known by
    /// certificate: a client certificate there is all or nothing (with
    /// `approvals.identity` using mtls, `optional` lets token, JWT, Slack
    /// and webhook callers in beside them).
    pub(crate) fn validate(&self, base: &Path, admin: bool, errors: &mut Errors) -> ListenerTls {
        let file = |value: &Spanned<String>, errors: &mut Errors| {
            let path = base.join(&value.value);
            if !path.is_file() {
                errors.push(Diagnostic::at(
                    value,
                    format!("{} does not exist", path.display()),
                ));
            }
            path
        };
        let required = match self.client_auth.as_ref().map(|c| c.value.as_str()) {
            None | Some("required") => true,
            Some("optional") if admin => {
                if let Some(at) = &self.client_auth {
                    errors.push(Diagnostic::at(
                        at,
                        "admin_tls takes client_auth: required only (the admin endpoints have no other authentication), unless approvals.identity has an mtls method",
                    ));
                }
                true
            }
            Some("optional") => false,
            Some(other) => {
                if let Some(at) = &self.client_auth {
                    errors.push(Diagnostic::at(
                        at,
                        format!("unknown client_auth \"{other}\" (write required or optional)"),
                    ));
                }
                true
            }
        };
        if self.client_auth.is_some()
            && self.client_ca_file.is_none()
            && let Some(at) = &self.client_auth
        {
            errors.push(Diagnostic::at(at, "client_auth needs a client_ca_file"));
        }
        ListenerTls {
            cert_file: file(&self.cert_file, errors),
            key_file: file(&self.key_file, errors),
            client_ca_file: self.client_ca_file.as_ref().map(|c| file(c, errors)),
            client_certificate_required: required,
        }
    }
}

/// The listener's certificate, read again when its files change.
#[derive(Debug)]
struct ReloadingCertificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
    stamps: Mutex<[Option<(SystemTime, u64)>; 2]>,
    /// When the files were last looked at (ms since `epoch`).
    checked_ms: AtomicU64,
    /// How often they are looked at, at most.
    recheck: Duration,
    /// A monotonic origin (a wall clock stepped back must not stop reloads).
    epoch: Instant,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

// === impl ReloadingCertificate ===

impl ReloadingCertificate {
    fn load(&self) -> Result<CertifiedKey, TlsSetupError> {
        load_pair(&self.cert_file, &self.key_file, &self.provider)
    }

    fn stamps(&self) -> [Option<(SystemTime, u64)>; 2] {
        [file_stamp(&self.cert_file), file_stamp(&self.key_file)]
    }

    /// Reload when a file changed, at most once per `recheck`.
    fn refresh_if_due(&self) {
        // +1: the first check is due at once.
        let now_ms = self.epoch.elapsed().as_millis() as u64 + self.recheck.as_millis() as u64 + 1;
        let last = self.checked_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < self.recheck.as_millis() as u64
            || self
                .checked_ms
                .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let now = self.stamps();
        let mut seen = self
            .stamps
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *seen == now {
            return;
        }
        match self.load() {
            Ok(key) => {
                self.current.store(Arc::new(key));
                *seen = now;
                tracing::info!(cert = %self.cert_file.display(), "TLS certificate reloaded.");
            }
            Err(err) => {
                // A pair caught mid-rotation (one file new, one old) is
                // tried again at the next check.
                tracing::warn!(error = %err, "TLS certificate files changed but do not load; the last good certificate stays.");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh_if_due();
        Some(self.current.load_full())
    }
}

/// What tells a changed file from an unchanged one.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

fn pem_error(path: &Path, detail: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::File {
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// Read a PEM certificate chain and its key.
fn load_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<CertifiedKey, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| pem_error(cert_file, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert_file, e))?;
    if certs.is_empty() {
        return Err(pem_error(cert_file, "no PEM certificate in the file"));
    }
    // The key's own error would not name the file only; never its bytes.
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|_| pem_error(key_file, "no readable PEM private key in the file"))?;
    Ok(CertifiedKey::from_der(certs, key, provider)?)
}

/// A TLS acceptor for a listener with `config`, looking at its files for
/// changes at most once per `recheck`.
pub fn acceptor(
    config: &ListenerTls,
    recheck: Duration,
) -> Result<tokio_rustls::TlsAcceptor, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // The files' stamps before they are read: a rotation landing while
    // they load is seen at the next check.
    let stamps = [file_stamp(&config.cert_file), file_stamp(&config.key_file)];
    let resolver = ReloadingCertificate {
        cert_file: config.cert_file.clone(),
        key_file: config.key_file.clone(),
        current: ArcSwap::from_pointee(load_pair(&config.cert_file, &config.key_file, &provider)?),
        stamps: Mutex::new(stamps),
        checked_ms: AtomicU64::new(0),
        recheck,
        epoch: Instant::now(),
        provider: provider.clone(),
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &config.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| pem_error(ca_file, e))? {
                roots
                    .add(cert.map_err(|e| pem_error(ca_file, e))?)
                    .map_err(|e| pem_error(ca_file, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if config.client_certificate_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| TlsSetupError::ClientCa(e.to_string()))?,
            )
        }
    };
    let mut server = builder.with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    if config.client_ca_file.is_some() {
        // A resumed session skips verification: a client certificate that
        // has expired or been replaced must be shown (and checked) again.
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        server.send_tls13_tickets = 0;
    }
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}
