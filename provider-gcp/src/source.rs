//! Artifact Registry and Container Registry as image sources: [`GarSources`] refreshes OAuth
//! credentials for every Google registry host (`<location>-docker.pkg.dev`, `gcr.io`,
//! `*.gcr.io`), so that images kept in a customer's registry are mirrored with the
//! deployer's Google identity and tokens renew in the middle of a long copy. One token
//! source serves every host, a cache per host names it in errors; with the default chain
//! nothing is looked up before the first pull.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use mirror_core::kit::provider::{SourceCaches, TokenSource};
use mirror_core::kit::store::http::credentials::CredentialProvider;
use mirror_core::SourceCredentials;

use crate::credential::{AccessToken, DefaultChain, GcpTokenSource, ServiceAccountKey, POLICY};
use crate::error::Result;
use crate::PROVIDER;

/// Credentials for Google registries as sources (see the [module docs](self)).
///
/// ```no_run
/// use std::sync::Arc;
/// use mirror_core::Sources;
/// use provider_gcp::GarSources;
///
/// // The default chain: GOOGLE_APPLICATION_CREDENTIALS, gcloud, the metadata server.
/// let sources = Sources::new().with_source_credentials(Arc::new(GarSources::default_chain()));
/// ```
#[derive(Clone, Debug)]
pub struct GarSources {
    hosts: HashSet<String>,
    caches: SourceCaches<AccessToken>,
}

/// Whether `host` is a Google registry host.
pub fn is_google_registry(host: &str) -> bool {
    let name = host.split(':').next().unwrap_or(host);
    name.ends_with("-docker.pkg.dev") || name == "gcr.io" || name.ends_with(".gcr.io")
}

impl GarSources {
    /// The default credential chain (looked up at the first pull).
    pub fn default_chain() -> Self {
        Self::with_tokens(None)
    }

    /// A service-account key file; `token_uri` overrides the key's token endpoint.
    pub fn from_key_file(path: &Path, token_uri: Option<&str>) -> Result<Self> {
        let key = ServiceAccountKey::from_file(path)?;
        let key = match token_uri {
            Some(uri) => key.with_token_uri(uri)?,
            None => key,
        };
        Ok(Self::from_source(Arc::new(key)))
    }

    /// Tokens from `source`.
    pub fn from_source(source: Arc<dyn GcpTokenSource>) -> Self {
        Self::with_tokens(Some(source))
    }

    fn with_tokens(given: Option<Arc<dyn GcpTokenSource>>) -> Self {
        type Source = Arc<dyn TokenSource<Token = AccessToken>>;
        let make = move || {
            let given = given.clone();
            async move {
                Ok(match given {
                    Some(s) => s as Source,
                    None => Arc::new(DefaultChain::discover().await?) as Source,
                })
            }
        };
        let caches = SourceCaches::shared(PROVIDER, POLICY, make);
        GarSources {
            hosts: HashSet::new(),
            caches,
        }
    }

    /// Serves `host` too, a registry host not shaped like Google's (an emulator, a proxy).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.hosts.insert(host.into());
        self
    }
}

impl SourceCredentials for GarSources {
    fn provider_for(&self, host: &str) -> Option<Arc<dyn CredentialProvider>> {
        let served = is_google_registry(host) || self.hosts.contains(host);
        served
            .then(|| self.caches.provider_for(host, host))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_registry_hosts_are_served_and_others_are_not() {
        for h in [
            "europe-west1-docker.pkg.dev",
            "us-docker.pkg.dev",
            "gcr.io",
            "eu.gcr.io",
            "asia.gcr.io:443",
        ] {
            assert!(is_google_registry(h), "{h}");
        }
        for h in [
            "ghcr.io",
            "docker.pkg.dev.evil.example",
            "notgcr.io",
            "127.0.0.1:5000",
        ] {
            assert!(!is_google_registry(h), "{h}");
        }
        let s = GarSources::default_chain().host("127.0.0.1:5000");
        assert!(s.provider_for("127.0.0.1:5000").is_some());
        assert!(s.provider_for("quay.io").is_none());
    }
}
