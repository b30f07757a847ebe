//! [`GenericRegistry`]: any OCI distribution registry.

use std::sync::Arc;

use async_trait::async_trait;

use crate::digest::Digest;
use crate::error::Result;
use crate::image::{
    delete_images, list_by_tags_in, ImageRecord, Listing, ManifestCache, StoreDeleter,
};
use crate::registry::naming::{
    check_name, cluster_prefix, default_repository, default_repository_name,
};
use crate::registry::{
    cache_scope, BuildCapability, BuilderCredentials, Registry, Repository, RepositoryScope,
    RepositorySettings,
};
use crate::store::http::RegistryClient;
use crate::store::ImageStore;

/// Any OCI distribution registry (the CNCF registry, Harbor, Zot, Quay…).
///
/// Repositories are named by [`default_repository_name`] under an optional prefix; they need
/// no creation (distribution registries create repositories on first push); images are
/// deleted by manifest digest (the registry must have deletes enabled); push times are
/// recorded by the library (see [`crate::image`]); repositories are listed through the
/// catalog API. Builders push to it with the client's credentials.
#[derive(Debug, Clone)]
pub struct GenericRegistry {
    client: RegistryClient,
    prefix: Option<String>,
}

impl GenericRegistry {
    /// A registry reached through `client`.
    pub fn new(client: RegistryClient) -> Self {
        GenericRegistry {
            client,
            prefix: None,
        }
    }

    /// Puts every repository under `prefix` (a valid repository path, e.g. `mirror`).
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        check_name(prefix)?;
        self.prefix = Some(prefix.to_string());
        Ok(self)
    }

    /// The prefix.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The HTTP client.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }
}

#[async_trait]
impl Registry for GenericRegistry {
    fn provider(&self) -> &str {
        "generic"
    }

    fn location(&self) -> String {
        self.client.registry().to_string()
    }

    fn repository(&self, scope: &RepositoryScope) -> Result<Repository> {
        default_repository(self.prefix.as_deref(), scope)
    }

    async fn ensure_repository(
        &self,
        repository: &Repository,
        _settings: &RepositorySettings,
    ) -> Result<()> {
        // Distribution registries create repositories on the first push and have no
        // repository settings: retention is enforced by `sweep`.
        check_name(repository.name())
    }

    async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>> {
        Ok(Arc::new(self.client.repository(repository.name())?))
    }

    async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>> {
        let prefix = cluster_prefix(self.prefix.as_deref(), cluster)?;
        let mut repos: Vec<String> = self
            .client
            .catalog()
            .await?
            .into_iter()
            .filter(|r| r.starts_with(&prefix))
            .collect();
        repos.sort();
        Ok(repos.into_iter().map(Repository::listed).collect())
    }

    /// By tags, through the listing's store of the repository.
    async fn list_images_in(
        &self,
        repository: &Repository,
        listing: &Listing,
    ) -> Result<Vec<ImageRecord>> {
        list_by_tags_in(listing, repository.name(), self.store(repository).await?).await
    }

    /// Through the data plane, what the repository's images hold read once for the batch
    /// ([`crate::image::delete_images`]).
    async fn delete_images(
        &self,
        repository: &Repository,
        digests: &[Digest],
    ) -> Result<Vec<Result<()>>> {
        let listing = Listing::new(ManifestCache::default());
        let store = listing.store(repository.name(), self.store(repository).await?);
        delete_images(store.as_ref(), digests, &StoreDeleter(store.as_ref())).await
    }

    /// `GET /v2/` with the credentials (a token fetched where the registry wants one).
    async fn check(&self) -> Result<()> {
        self.client.ping().await
    }

    fn builds(&self) -> Option<&dyn BuildCapability> {
        Some(self)
    }
}

#[async_trait]
impl BuildCapability for GenericRegistry {
    fn repository_reference(&self, repository: &Repository) -> Result<String> {
        check_name(repository.name())?;
        Ok(format!("{}/{repository}", self.client.registry()))
    }

    /// `<build repository>/cache-<dockerfile id>`: one level below the build repository, so
    /// it cannot collide with the name of a repository of any other scope.
    fn cache_repository(&self, build: &Repository, dockerfile_id: &str) -> Result<Repository> {
        let scope = cache_scope(build, dockerfile_id);
        let name = match &scope {
            Some(scope) => default_repository_name(self.prefix.as_deref(), scope)?,
            None => {
                crate::registry::naming::check_dockerfile_id(dockerfile_id)?;
                let name = format!("{build}/cache-{dockerfile_id}");
                check_name(&name)?;
                name
            }
        };
        Ok(Repository::listed(name).with_scope(scope))
    }

    async fn builder_credentials(&self) -> Result<Option<BuilderCredentials>> {
        let credentials = self.client.current_credentials().await?;
        Ok((!credentials.is_anonymous()).then(|| BuilderCredentials {
            host: self.client.registry().to_string(),
            credentials,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::LayoutRegistry;
    use crate::store::http::credentials::Credentials;

    #[test]
    fn builds_push_to_host_and_repository_with_caches_beside_them() {
        let reg = GenericRegistry::new(
            RegistryClient::new("127.0.0.1:5000", Credentials::Anonymous).unwrap(),
        );
        let build = reg
            .repository(&RepositoryScope::Build {
                cluster: "c".into(),
                service: "api".into(),
            })
            .unwrap();
        assert_eq!(
            reg.repository_reference(&build).unwrap(),
            "127.0.0.1:5000/c/builds/api"
        );
        let cache = reg.cache_repository(&build, "0123abcd").unwrap();
        assert_eq!(cache.name(), "c/builds/api/cache-0123abcd");
        assert!(matches!(
            cache.scope(),
            Some(RepositoryScope::BuildCache { dockerfile_id, .. }) if dockerfile_id == "0123abcd"
        ));
        // One level deeper than every scope's name: no service, build or cluster repository
        // can be named like a cache.
        for scope in [
            RepositoryScope::Service {
                cluster: "c".into(),
                service: "api".into(),
            },
            RepositoryScope::Cluster {
                cluster: "c".into(),
            },
            RepositoryScope::Build {
                cluster: "c".into(),
                service: "api".into(),
            },
        ] {
            let name = reg.repository(&scope).unwrap();
            assert_ne!(
                name.name().matches('/').count(),
                cache.name().matches('/').count()
            );
        }
        let layout = LayoutRegistry::new("/tmp/x");
        assert!(layout.builds().is_none(), "a layout cannot receive builds");
    }
}
