//! AWS Elastic Container Registry (ECR) as a cluster's mirror registry.
//!
//! [`Ecr`] is the kit's [`CloudRegistry`] over [`EcrPlane`], this crate's [`ControlPlane`]:
//! repositories are created with `CreateRepository` (tagged `managed-by`, `cluster`,
//! `service`, `scope`), Cluster-mode retention becomes an ECR lifecycle policy whose first
//! rule keeps anchored (in-use) images ([`lifecycle`]), images are listed with
//! `DescribeImages` (push times included) and deleted with `BatchDeleteImage`. The data plane
//! is the core HTTP client with basic credentials from `GetAuthorizationToken`, refreshed
//! ahead of their 12 h expiry, uploading each blob with one streaming `PUT` (ECR's chunked
//! `PATCH` drops every chunk after the first: aws/containers-roadmap#2831). Builds keep their
//! BuildKit cache in `<build repository>/cache-<id>` (an image-manifest cache, the format ECR
//! accepts).
//!
//! Layout: [`config`] ([`EcrBuilder`], keys, factory), [`client`] (ECR calls), [`error`] (the
//! table), [`credential`] (the data-plane token), [`naming`], [`lifecycle`] (the policy),
//! [`source`] (ECR registries as image sources, [`EcrSources`]).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> mirror_core::Result<()> {
//! use std::sync::Arc;
//! use mirror_core::{Mirror, Source};
//! use provider_aws::EcrBuilder;
//!
//! let ecr = EcrBuilder::from_env().region("eu-west-1").account("123456789012").build().await?;
//! let mirror = Mirror::builder(Arc::new(ecr), "prod-eu").build()?;
//! let d = mirror.mirror("api", &Source::parse("nginx:1.27")?).await?;
//! println!("deploy {}", d.pull_reference);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod credential;
pub mod error;
pub mod lifecycle;
pub mod naming;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ecr::types::ImageTagMutability;
use mirror_core::kit::provider::calls::{delete_in_batches, Absent};
use mirror_core::kit::provider::cloud::{CloudRegistry, ControlPlane, Deletion, ListedImage};
use mirror_core::kit::provider::{retention::reconcile, scope::ScopeLabels, Kind};
use mirror_core::kit::retry::Poll;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::registry::Repository;
use mirror_core::{Digest, Error, RepositoryScope, RepositorySettings, Result};

pub use config::{factory, EcrBuilder, EcrConfigKey, EcrFactory, TagMutability};
pub use credential::EcrCredentials;
pub use source::EcrSources;

use client::{image_id, EcrApi, BATCH_LIMIT};

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "aws";

/// The value of the `managed-by` tag put on repositories this crate creates (the kit's).
pub use mirror_core::kit::provider::scope::MANAGED_BY;

/// How long a new repository may take to become visible to the calls that follow its
/// creation (ECR is eventually consistent).
pub const CREATE_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// An ECR registry (one account and region) as a cluster's mirror registry: the kit's
/// registry over [`EcrPlane`]. Build it with [`EcrBuilder`].
pub type Ecr = CloudRegistry<EcrPlane>;

/// ECR's control plane and settings.
#[derive(Debug)]
pub struct EcrPlane {
    api: EcrApi,
    data: RegistryClient,
    region: String,
    prefix: Option<String>,
    tag_mutability: ImageTagMutability,
    scan_on_push: bool,
    lifecycle_policy: bool,
    retention_age: lifecycle::Age,
    credentials: Arc<EcrCredentials>,
}

impl EcrPlane {
    /// The AWS region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The repository prefix.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The ECR API client.
    pub fn api(&self) -> &EcrApi {
        &self.api
    }

    /// The data-plane token cache (its `fetches()` counts tokens).
    pub fn credentials(&self) -> &Arc<EcrCredentials> {
        &self.credentials
    }
}

#[async_trait]
impl ControlPlane for EcrPlane {
    const PROVIDER: &'static str = PROVIDER;
    const RECORDS_PUSH_TIME: bool = true;

    fn data_plane(&self) -> &RegistryClient {
        &self.data
    }

    /// The lifecycle policy, whose first rule keeps anchored images, reconciled on every ensure.
    fn retention_document(&self) -> bool {
        self.lifecycle_policy
    }

    fn repository_name(&self, scope: &RepositoryScope) -> Result<String> {
        naming::repository_name(self.prefix(), scope)
    }

    fn check_repository(&self, name: &str) -> Result<()> {
        naming::check_repository(name)
    }

    /// `CreateRepository` ("already exists" is success), then the lifecycle policy for
    /// `settings` (reconciled: see [`lifecycle`]), retried while a just-created repository is
    /// not visible yet.
    async fn create_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<bool> {
        let name = repository.name();
        let tags = ScopeLabels::of(repository, self.prefix()).pairs(MANAGED_BY, naming::tag_value);
        let (mutability, scan) = (self.tag_mutability.clone(), self.scan_on_push);
        let created = self.api.create_repository(name, mutability, scan, &tags);
        let created = created.await?;
        if self.lifecycle_policy {
            let age = self.retention_age;
            let policy = || settings.retention.map(|r| lifecycle::policy_text(r, age));
            let apply = || reconcile(&self.api, name, policy(), created, lifecycle::is_ours);
            let pending = |e: &error::Error| e.kind() == Kind::NotFound("repository");
            Poll::until(CREATE_SETTLE_TIMEOUT)
                .retry_while(apply, pending)
                .await?;
        }
        Ok(created)
    }

    /// `DescribeRepositories`, those under the cluster's prefix.
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<String>> {
        let prefix = naming::cluster_prefix(self.prefix(), cluster)?;
        let mut names = self.api.repository_names().await?;
        names.retain(|r| r.starts_with(&prefix));
        Ok(names)
    }

    /// `DescribeImages`: platform manifests and referrers are listed as untagged images of
    /// their own (the kit folds them). An absent repository has no images.
    async fn list_images(&self, repository: &str) -> Result<Vec<ListedImage>> {
        let listed = self.api.describe_images(repository).await;
        Ok(listed
            .absent_if(Kind::NotFound("repository"))?
            .unwrap_or_default())
    }

    /// `BatchDeleteImage` (which removes the tags too), in batches of 100. Platform
    /// manifests go only when untagged; one another index still uses is refused by ECR
    /// (`ImageReferencedByManifestList`), which is fine.
    async fn delete_manifests(
        &self,
        repository: &str,
        digests: &[Digest],
        why: Deletion,
    ) -> Result<()> {
        let mut digests = digests.to_vec();
        if why == Deletion::Child {
            let mut orphans = Vec::new();
            for child in digests {
                let listed = self.api.describe_image(repository, &child).await?;
                if listed.is_some_and(|l| l.tags.is_empty()) {
                    orphans.push(child);
                }
            }
            digests = orphans;
        }
        let api = &self.api;
        let batch = |chunk: &[Digest]| {
            let ids = chunk.iter().map(|d| image_id(Some(d), None)).collect();
            api.batch_delete_image(repository, ids)
        };
        Ok(delete_in_batches(&digests, BATCH_LIMIT, why, batch).await?)
    }

    /// `BatchDeleteImage` of the tag alone. ECR deletes an image whose last tag goes: anchors
    /// are released only from images no longer in use, so only such an image can go early.
    async fn remove_tag(&self, repository: &str, tag: &str) -> Result<()> {
        let failures = self
            .api
            .batch_delete_image(repository, vec![image_id(None, Some(tag))]);
        match failures.await?.into_iter().next() {
            None => Ok(()),
            Some(e) if e.kind() == Kind::NotFound("manifest") => Err(Error::NotFound {
                what: "tag",
                location: format!("{}/{repository}:{tag}", self.data.registry()),
            }),
            Some(e) => Err(e.into()),
        }
    }
}
