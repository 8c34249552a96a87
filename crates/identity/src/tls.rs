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

/// A client config trusting `roots` that presents, when `client` names
/// them, the PEM certificate chain and private key in those files (mTLS).
/// A file that cannot be used is a [`SetupError::CaFile`] naming it.
pub fn client_config_presenting(
    roots: rustls::RootCertStore,
    client: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, SetupError> {
    use rustls_pki_types::pem::PemObject;
    let Some((cert_file, key_file)) = client else {
        return client_config_with(roots);
    };
    let file_error = |path: &Path, detail: String| SetupError::CaFile {
        path: path.display().to_string(),
        detail,
    };
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| file_error(cert_file, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(cert_file, e.to_string()))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key_file)
        .map_err(|_| file_error(key_file, "no readable PEM private key".to_owned()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| SetupError::NoRoots)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| file_error(key_file, e.to_string()))
}

/// A client config trusting the system's roots and `ca_file`.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, SetupError> {
    let roots = trust_roots(ca_file)?;
    if roots.is_empty() {
        return Err(SetupError::NoRoots);
    }
    client_config_with(roots)
}
