//! Trust roots for Warden's outgoing TLS (JWKS and token endpoints,
//! upstreams): the system's roots plus an optional PEM bundle.

use std::path::Path;
use std::sync::Arc;

use crate::error::SetupError;

/// The system's trust roots, plus every certificate in `ca_file`.
pub fn trust_roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, SetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A malformed system certificate is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls_pki_types::pem::PemObject;
        let ca_error = |detail: String| SetupError::CaFile {
            path: path.display().to_string(),
            detail,
        };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|err| ca_error(err.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| ca_error(err.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("no PEM certificate in the file".to_owned()));
        }
        for cert in certs {
            roots.add(cert).map_err(|err| ca_error(err.to_string()))?;
        }
    }
    Ok(roots)
}

/// A client config trusting `roots`, with the ring provider and safe protocol versions.
pub fn client_config_with(
    roots: rustls::RootCertStore,
) -> Result<rustls::ClientConfig, SetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| SetupError::NoRoots)?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A client config trusting the system's roots and `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, SetupError> {
    let roots = trust_roots(ca_file)?;
    if roots.is_empty() {
        return Err(SetupError::NoRoots);
    }
    client_config_with(roots)
}
