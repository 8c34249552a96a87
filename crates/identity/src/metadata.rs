//! OAuth 2.0 protected-resource metadata (RFC 9728), which MCP clients read
//! to find the authorization server to get a token from.

use http::Uri;
use serde::Serialize;

/// The well-known path the metadata is published under; a resource with a
/// path has it appended (`/.well-known/oauth-protected-resource/mcp`).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// What Warden publishes about one route as an OAuth resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtectedResource {
    /// The route's own URL as agents reach it: tokens must be issued for it
    /// (their `aud`, RFC 8707).
    pub resource: String,
    /// The authorization servers that issue tokens for it.
    pub authorization_servers: Vec<String>,
    /// Scopes a client may ask for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// Tokens are accepted in the `Authorization` header only.
    pub bearer_methods_supported: [&'static str; 1],
    /// A name for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

// === impl ProtectedResource ===

impl ProtectedResource {
    /// Metadata for `resource` (an absolute `http(s)` URL, checked by the config).
    pub fn new(
        resource: String,
        authorization_servers: Vec<String>,
        scopes_supported: Vec<String>,
        resource_name: Option<String>,
    ) -> ProtectedResource {
        ProtectedResource {
            resource,
            authorization_servers,
            scopes_supported,
            bearer_methods_supported: ["header"],
            resource_name,
        }
    }

    /// The path Warden answers the metadata on.
    pub fn metadata_path(&self) -> String {
        let path = self
            .resource
            .parse::<Uri>()
            .map(|uri| uri.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        format!("{METADATA_PATH}{path}")
    }

    /// The metadata's absolute URL, named in `WWW-Authenticate`.
    pub fn metadata_url(&self) -> String {
        match self.resource.parse::<Uri>() {
            Ok(uri) => format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map_or("", |a| a.as_str()),
                self.metadata_path()
            ),
            Err(_) => self.metadata_path(),
        }
    }

    /// The metadata document (JSON).
    pub fn document(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_url_inserts_the_well_known_path_before_the_resource_path() {
        let with_path = ProtectedResource::new(
            "https://warden.example.com/mcp".into(),
            vec!["https://auth.example.com".into()],
            vec![],
            None,
        );
        assert_eq!(
            with_path.metadata_url(),
            "https://warden.example.com/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            with_path.metadata_path(),
            "/.well-known/oauth-protected-resource/mcp"
        );
        let root = ProtectedResource::new("http://127.0.0.1:8080/".into(), vec![], vec![], None);
        assert_eq!(
            root.metadata_url(),
            "http://127.0.0.1:8080/.well-known/oauth-protected-resource"
        );
        let document: serde_json::Value =
            serde_json::from_slice(&with_path.document()).expect("json");
        assert_eq!(document["resource"], "https://warden.example.com/mcp");
        assert_eq!(
            document["authorization_servers"][0],
            "https://auth.example.com"
        );
        assert_eq!(document["bearer_methods_supported"][0], "header");
    }
}
