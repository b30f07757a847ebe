//! Artifact Registry and Container Registry as image sources: [`GarSources`] gives
//! `mirror_core::Sources` one refreshing OAuth credential provider for every Google registry
//! host (`<location>-docker.pkg.dev`, `gcr.io` and the regional `*.gcr.io`), so that
//! application images kept in a customer's Artifact Registry are mirrored with the deployer's
//! Google identity and the hour-long access tokens renew in the middle of a long copy.
//!
//! One token source serves every Google host (an access token is valid for all of them), with
//! a cache per host so that errors name the registry; the
//! data plane sends it as the password of `oauth2accesstoken`, as `docker login` does. With
//! the default chain nothing is looked up before the first pull.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mirror_core::store::http::credentials::{CredentialProvider, ExpiringCredentials};
use mirror_core::SourceCredentials;
use tokio::sync::OnceCell;

use crate::credential::{self, DefaultChain, GcpCredentials, GcpTokenSource, ServiceAccountKey};
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
#[derive(Clone)]
pub struct GarSources {
    source: Arc<OnceCell<Arc<dyn GcpTokenSource>>>,
    given: Option<Arc<dyn GcpTokenSource>>,
    hosts: HashSet<String>,
    caches: Arc<Mutex<HashMap<String, Arc<LazyTokens>>>>,
}

impl fmt::Debug for GarSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GarSources")
            .field("hosts", &self.hosts)
            .finish()
    }
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
        let mut key = ServiceAccountKey::from_file(path)?;
        if let Some(uri) = token_uri {
            key = key.with_token_uri(uri)?;
        }
        Ok(Self::from_source(Arc::new(key)))
    }

    /// Tokens from `source`.
    pub fn from_source(source: Arc<dyn GcpTokenSource>) -> Self {
        Self::with_tokens(Some(source))
    }

    fn with_tokens(given: Option<Arc<dyn GcpTokenSource>>) -> Self {
        GarSources {
            source: Arc::new(OnceCell::new()),
            given,
            hosts: HashSet::new(),
            caches: Arc::default(),
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
        if !(is_google_registry(host) || self.hosts.contains(host)) {
            return None;
        }
        let mut caches = self.caches.lock().ok()?;
        let tokens = caches
            .entry(host.to_string())
            .or_insert_with(|| {
                Arc::new(LazyTokens {
                    host: host.to_string(),
                    source: self.source.clone(),
                    given: self.given.clone(),
                    cache: OnceCell::new(),
                })
            })
            .clone();
        Some(tokens)
    }
}

/// The token cache of one host (errors name it), over the token source all hosts share.
struct LazyTokens {
    host: String,
    source: Arc<OnceCell<Arc<dyn GcpTokenSource>>>,
    given: Option<Arc<dyn GcpTokenSource>>,
    cache: OnceCell<GcpCredentials>,
}

impl fmt::Debug for LazyTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GarSourceTokens")
    }
}

impl LazyTokens {
    async fn cache(&self) -> mirror_core::Result<&GcpCredentials> {
        self.cache
            .get_or_try_init(|| async {
                let source = self
                    .source
                    .get_or_try_init(|| async {
                        match &self.given {
                            Some(s) => Ok::<_, mirror_core::Error>(s.clone()),
                            None => Ok(Arc::new(DefaultChain::discover().await?)
                                as Arc<dyn GcpTokenSource>),
                        }
                    })
                    .await?
                    .clone();
                Ok::<_, mirror_core::Error>(credential::credentials(
                    format!("{PROVIDER}:{}", self.host),
                    source,
                ))
            })
            .await
    }
}

#[async_trait]
impl CredentialProvider for LazyTokens {
    async fn credentials(&self) -> mirror_core::Result<ExpiringCredentials> {
        self.cache().await?.credentials().await
    }

    fn invalidate(&self) {
        if let Some(c) = self.cache.get() {
            CredentialProvider::invalidate(c);
        }
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
