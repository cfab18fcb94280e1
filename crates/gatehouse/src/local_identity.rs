//! The identity server as the gateway's `oauth2-introspection` plugin sees it from inside the
//! same process: introspection URLs that point at this process's own identity listener (or at
//! its public issuer URL) are answered by a direct call, without a loopback HTTP round trip.

use async_trait::async_trait;
use gatehouse_identity::Identity;
use gatehouse_plugins::oauth2_introspection::client::LocalIntrospection;
use http::{HeaderMap, StatusCode, Uri};
use std::sync::Arc;

/// The addresses under which this process's issuers are reachable, and the identity server.
pub struct LocalIdentity {
    identity: Arc<Identity>,
    /// Base URLs (scheme, authority, path prefix) of the issuers.
    bases: Vec<Uri>,
}

impl LocalIdentity {
    /// Serves introspection for URLs under any of `bases` (unparsable ones are ignored).
    pub fn new(identity: Arc<Identity>, bases: &[String]) -> Self {
        Self {
            identity,
            bases: bases
                .iter()
                .filter_map(|b| b.trim_end_matches('/').parse().ok())
                .collect(),
        }
    }
}

/// The path of `url` below the first of `bases` it is under (same scheme and authority, the
/// base's path as a prefix of whole segments).
fn local_path(bases: &[Uri], url: &Uri) -> Option<String> {
    bases.iter().find_map(|base| {
        if base.scheme() != url.scheme() || base.authority() != url.authority() {
            return None;
        }
        let rest = url.path().strip_prefix(base.path().trim_end_matches('/'))?;
        rest.starts_with('/').then(|| rest.to_owned())
    })
}

#[async_trait]
impl LocalIntrospection for LocalIdentity {
    fn local_path(&self, url: &Uri) -> Option<String> {
        local_path(&self.bases, url)
    }

    async fn introspect(
        &self,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
        token_sha256: &[u8; 32],
    ) -> Result<Arc<serde_json::Map<String, serde_json::Value>>, StatusCode> {
        let answer = gatehouse_identity::http::introspect_in_process(
            &self.identity,
            path,
            headers,
            body,
            token_sha256,
        )
        .await?;
        Ok(answer.unwrap_or_else(gatehouse_identity::runtime::inactive_introspection))
    }

    fn invalidation_epoch(&self) -> u64 {
        self.identity.invalidation_epoch()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn paths(bases: &[&str], url: &str) -> Option<String> {
        let bases: Vec<Uri> = bases.iter().map(|b| b.parse().unwrap()).collect();
        local_path(&bases, &url.parse().unwrap())
    }

    #[test]
    fn only_urls_under_the_issuer_bases_are_local() {
        let bases = ["http://127.0.0.1:8000", "https://id.example.com/auth"];
        assert_eq!(
            paths(&bases, "http://127.0.0.1:8000/abc/introspect").as_deref(),
            Some("/abc/introspect")
        );
        assert_eq!(
            paths(&bases, "https://ID.example.com/auth/abc/introspect?x=1").as_deref(),
            Some("/abc/introspect")
        );
        assert_eq!(paths(&bases, "http://127.0.0.1:8001/abc/introspect"), None);
        assert_eq!(
            paths(&bases, "http://id.example.com/auth/abc/introspect"),
            None
        );
        assert_eq!(
            paths(&bases, "https://id.example.com/authx/introspect"),
            None
        );
    }
}
