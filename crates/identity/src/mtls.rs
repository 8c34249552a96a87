//! Mutual TLS: a client certificate the listener verified (against the
//! configured client CA) names the caller.

use std::sync::Arc;

use crate::principal::{AuthMethod, Principal};

/// What a verified client certificate says about its holder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    /// The subject's common name.
    pub common_name: Option<String>,
    /// `dNSName` subject alternative names.
    pub dns_names: Vec<String>,
    /// `uniformResourceIdentifier` subject alternative names (e.g. SPIFFE ids).
    pub uris: Vec<String>,
    /// `rfc822Name` subject alternative names.
    pub emails: Vec<String>,
}

/// Which part of the certificate names the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateName {
    /// The first URI SAN (e.g. `spiffe://example.org/agent/notes-bot`).
    SanUri,
    /// The first DNS SAN.
    SanDns,
    /// The first email SAN.
    SanEmail,
    /// The subject's common name.
    SubjectCn,
}

/// How a route maps client certificates to principals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsMapping {
    /// Where the agent's name is read.
    pub name_from: CertificateName,
    /// Groups every certificate-authenticated caller is in.
    pub groups: Vec<String>,
}

// === impl ClientCertificate ===

impl ClientCertificate {
    /// Read a DER certificate (already verified by the TLS handshake).
    pub fn from_der(der: &[u8]) -> Option<ClientCertificate> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut out = ClientCertificate {
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            ..ClientCertificate::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => out.dns_names.push((*dns).to_owned()),
                    GeneralName::URI(uri) => out.uris.push((*uri).to_owned()),
                    GeneralName::RFC822Name(email) => out.emails.push((*email).to_owned()),
                    _ => {}
                }
            }
        }
        Some(out)
    }
}

// === impl MtlsMapping ===

impl MtlsMapping {
    /// The principal `certificate` stands for, if it carries the name the
    /// mapping reads.
    pub fn principal(&self, certificate: &ClientCertificate) -> Option<Arc<Principal>> {
        let name = match self.name_from {
            CertificateName::SanUri => certificate.uris.first(),
            CertificateName::SanDns => certificate.dns_names.first(),
            CertificateName::SanEmail => certificate.emails.first(),
            CertificateName::SubjectCn => certificate.common_name.as_ref(),
        }?;
        if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            return None;
        }
        Some(Arc::new(Principal {
            agent: name.as_str().into(),
            on_behalf_of: None,
            groups: self.groups.iter().map(|g| Arc::from(g.as_str())).collect(),
            method: AuthMethod::Mtls,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_the_part_the_mapping_says() {
        let mut params =
            rcgen::CertificateParams::new(vec!["bot.agents.example".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "notes-bot");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.org/agent/notes-bot"
                .try_into()
                .expect("uri"),
        ));
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let read = ClientCertificate::from_der(cert.der()).expect("parses");
        assert_eq!(read.common_name.as_deref(), Some("notes-bot"));
        assert_eq!(read.dns_names, ["bot.agents.example"]);
        assert_eq!(read.uris, ["spiffe://example.org/agent/notes-bot"]);
        for (from, agent) in [
            (CertificateName::SubjectCn, Some("notes-bot")),
            (
                CertificateName::SanUri,
                Some("spiffe://example.org/agent/notes-bot"),
            ),
            (CertificateName::SanDns, Some("bot.agents.example")),
            (CertificateName::SanEmail, None),
        ] {
            let mapping = MtlsMapping {
                name_from: from,
                groups: vec!["internal".into()],
            };
            let principal = mapping.principal(&read);
            assert_eq!(principal.as_ref().map(|p| &*p.agent), agent, "{from:?}");
            if let Some(principal) = principal {
                assert!(principal.in_group("internal"));
                assert_eq!(principal.method, AuthMethod::Mtls);
            }
        }
        assert!(ClientCertificate::from_der(b"not a certificate").is_none());
    }
}
