//! Scaleway Container Registry as an image source: [`ScalewaySources`] authenticates pulls
//! from every `rg.<region>.scw.cloud` with an API secret key (`nologin` as the user, as
//! `docker login` does). The secret key does not expire, so nothing refreshes.

use std::collections::HashSet;
use std::sync::Arc;

use mirror_core::kit::store::http::credentials::{
    static_provider, CredentialProvider, Credentials,
};
use mirror_core::SourceCredentials;

use crate::{naming, DATA_PLANE_USER};

/// Credentials for Scaleway registries as sources. `Debug` hides the key.
///
/// ```no_run
/// use std::sync::Arc;
/// use mirror_core::Sources;
/// use provider_scaleway::ScalewaySources;
///
/// let key = std::env::var("SCW_SECRET_KEY").unwrap_or_default();
/// let sources = Sources::new().with_source_credentials(Arc::new(ScalewaySources::new(&key)));
/// ```
#[derive(Clone)]
pub struct ScalewaySources {
    provider: Arc<dyn CredentialProvider>,
    hosts: HashSet<String>,
}

impl std::fmt::Debug for ScalewaySources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalewaySources")
            .field("hosts", &self.hosts)
            .finish()
    }
}

/// Whether `host` is a Scaleway registry host (`rg.<region>.scw.cloud`).
pub fn is_scaleway_registry(host: &str) -> bool {
    naming::region_of_host(host).is_some()
}

impl ScalewaySources {
    /// With the API secret key `secret`.
    pub fn new(secret: &str) -> Self {
        let provider = static_provider(Credentials::basic(DATA_PLANE_USER, secret));
        ScalewaySources {
            provider,
            hosts: HashSet::new(),
        }
    }

    /// Serves `host` too (an emulator, a proxy).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts.insert(host.into());
        self
    }
}

impl SourceCredentials for ScalewaySources {
    fn provider_for(&self, host: &str) -> Option<Arc<dyn CredentialProvider>> {
        (is_scaleway_registry(host) || self.hosts.contains(host)).then(|| self.provider.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaleway_registry_hosts_are_served_and_others_are_not() {
        for h in ["rg.fr-par.scw.cloud", "rg.nl-ams.scw.cloud:443"] {
            assert!(is_scaleway_registry(h), "{h}");
        }
        for h in [
            "rg..scw.cloud",
            "rg.fr-par.scw.cloud.evil",
            "scw.cloud",
            "ghcr.io",
        ] {
            assert!(!is_scaleway_registry(h), "{h}");
        }
        let s = ScalewaySources::new("scw-secret-value").host("127.0.0.1:5000");
        assert!(s.provider_for("127.0.0.1:5000").is_some());
        assert!(!format!("{s:?}").contains("scw-secret-value"));
    }
}
