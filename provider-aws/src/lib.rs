//! AWS Elastic Container Registry (ECR) as a cluster's mirror registry.
//!
//! [`Ecr`] implements the core [`Registry`] trait: repositories are created with
//! `CreateRepository` (tagged `managed-by`, `cluster`, `service`, `scope`), Cluster-mode
//! retention becomes an ECR lifecycle policy, images are listed with `DescribeImages` (push
//! times included, so no bookkeeping tags) and deleted with `BatchDeleteImage`. The data plane
//! is the core HTTP client with basic credentials from `GetAuthorizationToken`, refreshed
//! ahead of their 12 h expiry. Copies into a second service's repository ask ECR to mount the
//! blobs (ECR mounts when the account enables blob mounting, else answers `202` and the blob
//! is uploaded). Builds push to `<build repository>` and keep their BuildKit cache in
//! `<build repository>/cache-<id>` (an image-manifest cache, the format ECR accepts).
//!
//! # Layout
//!
//! - [`builder`]: [`EcrBuilder`], its settings and their `MIRROR_ECR_*` variables;
//! - [`client`]: the ECR API calls ([`client::EcrApi`]);
//! - [`credential`]: the data-plane token source ([`credential::AuthToken`]) for the kit's
//!   cache ([`EcrCredentials`]);
//! - [`naming`]: ECR's repository grammar and the repository layout;
//! - [`lifecycle`]: the lifecycle policy for Cluster-mode retention;
//! - [`error`]: this crate's classification of AWS error codes (the kit's
//!   [`ControlPlaneError`](mirror_core::provider::ControlPlaneError) carries them);
//! - [`factory`](mod@factory): the [`RegistryFactory`](mirror_core::registry::RegistryFactory) for
//!   `mirror_core::registry::open` (`ecr://…`).
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> mirror_core::Result<()> {
//! use std::sync::Arc;
//! use mirror_core::{Mirror, Source};
//! use provider_aws::EcrBuilder;
//!
//! let ecr = EcrBuilder::from_env()
//!     .region("eu-west-1")
//!     .account("123456789012")
//!     .repository_prefix("mirror")
//!     .build()
//!     .await?;
//! let mirror = Mirror::builder(Arc::new(ecr), "prod-eu").build()?;
//! let d = mirror.mirror("api", &Source::parse("nginx:1.27")?).await?;
//! println!("deploy {}", d.pull_reference);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod builder;
pub mod client;
pub mod credential;
pub mod error;
pub mod factory;
pub mod lifecycle;
pub mod naming;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mirror_core::image::{fold_referrers, referrers, without_children, ImageRecord};
use mirror_core::media::{RawManifest, DOCKER_MANIFEST_LIST, OCI_INDEX};
use mirror_core::provider::AsCredentials as _;
use mirror_core::registry::{
    cache_scope, AnchorCapability, BuildCapability, BuilderCredentials, Capabilities, Repository,
};
use mirror_core::retry::Poll;
use mirror_core::store::http::RegistryClient;
use mirror_core::{
    Digest, Error, ImageStore, Registry, RepositoryScope, RepositorySettings, Result,
};

pub use builder::{EcrBuilder, EcrConfigKey, TagMutability};
pub use credential::EcrCredentials;
pub use factory::{factory, EcrFactory};
pub use source::EcrSources;

use client::{EcrApi, BATCH_LIMIT};
use error::{kind, Kind};

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "aws";

/// The value of the `managed-by` tag put on repositories this crate creates.
pub const MANAGED_BY: &str = "mirror-core";

/// How long `ensure_repository` waits for a new repository to become visible to the calls
/// that follow its creation (ECR is eventually consistent).
pub const CREATE_SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// An ECR registry (one account and region) as a cluster's mirror registry. Build it with
/// [`EcrBuilder`]. Cheap to clone; clones share the API client, the data-plane connection
/// pool and the token cache.
#[derive(Clone)]
pub struct Ecr {
    inner: Arc<Inner>,
}

struct Inner {
    api: EcrApi,
    data: RegistryClient,
    host: String,
    region: String,
    account: Option<String>,
    prefix: Option<String>,
    tag_mutability: TagMutability,
    scan_on_push: bool,
    lifecycle_policy: bool,
    retention_age: lifecycle::Age,
    credentials: Arc<EcrCredentials>,
}

impl fmt::Debug for Ecr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ecr")
            .field("host", &self.inner.host)
            .field("region", &self.inner.region)
            .field("account", &self.inner.account)
            .field("prefix", &self.inner.prefix)
            .field("tag_mutability", &self.inner.tag_mutability)
            .field("lifecycle_policy", &self.inner.lifecycle_policy)
            .finish()
    }
}

impl Ecr {
    /// A builder.
    pub fn builder() -> EcrBuilder {
        EcrBuilder::new()
    }

    /// The data-plane host (`<account>.dkr.ecr.<region>.amazonaws.com` or the override).
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The AWS region.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// The repository prefix.
    pub fn prefix(&self) -> Option<&str> {
        self.inner.prefix.as_deref()
    }

    /// The ECR API client.
    pub fn api(&self) -> &EcrApi {
        &self.inner.api
    }

    /// The data-plane token cache (its `fetches()` counts tokens).
    pub fn credentials(&self) -> &Arc<EcrCredentials> {
        &self.inner.credentials
    }

    /// The data-plane HTTP client.
    pub fn data_plane(&self) -> &RegistryClient {
        &self.inner.data
    }

    /// The tags a new repository gets: `managed-by`, `cluster` and `service` (the exact ids
    /// of its scope, made valid tag values), `scope`.
    fn repository_tags(&self, repository: &Repository) -> Vec<(String, String)> {
        let mut tags = vec![("managed-by".to_string(), MANAGED_BY.to_string())];
        let (cluster, kind, service) = match repository.scope() {
            Some(scope) => (Some(scope.cluster()), scope.kind(), scope.service()),
            None => match naming::parse_repository(self.prefix(), repository.name()) {
                Some((c, k, s)) => (Some(c), k, s),
                None => (None, "other", None),
            },
        };
        if let Some(c) = cluster {
            tags.push(("cluster".into(), naming::tag_value(c)));
        }
        if let Some(s) = service {
            tags.push(("service".into(), naming::tag_value(s)));
        }
        tags.push(("scope".into(), kind.to_string()));
        tags
    }

    /// Applies the lifecycle policy for `settings`, retrying while a just-created repository
    /// is not yet visible.
    async fn apply_lifecycle(
        &self,
        repository: &str,
        settings: &RepositorySettings,
        created: bool,
    ) -> error::Result<()> {
        let api = &self.inner.api;
        let attempt = || async {
            match settings.retention {
                Some(retention) => {
                    // A repository created just now has no policy: skip the read.
                    let current = if created {
                        None
                    } else {
                        api.get_lifecycle_policy(repository).await?
                    };
                    let age = self.inner.retention_age;
                    if lifecycle::needs_update(current.as_deref(), retention, age) {
                        let text = lifecycle::policy_text(retention, age);
                        api.put_lifecycle_policy(repository, &text).await?;
                    }
                }
                None if !created => {
                    if let Some(text) = api.get_lifecycle_policy(repository).await? {
                        if lifecycle::is_ours(&text) {
                            api.delete_lifecycle_policy(repository).await?;
                        }
                    }
                }
                None => {}
            }
            Ok::<(), error::Error>(())
        };
        // A just-created repository may not be visible yet (ECR is eventually consistent).
        Poll::until(CREATE_SETTLE_TIMEOUT)
            .retry_while(attempt, |e| {
                let pending = kind(e) == Kind::RepositoryNotFound;
                if pending {
                    tracing::debug!(repository, "repository not visible yet; retrying");
                }
                pending
            })
            .await
    }

    /// Digests of the child manifests of the indexes among `digests` (read with
    /// `BatchGetImage`).
    async fn children_of(&self, repository: &str, digests: &[String]) -> Result<HashSet<String>> {
        let mut children = HashSet::new();
        for chunk in digests.chunks(BATCH_LIMIT) {
            let (manifests, failures) = self.inner.api.batch_get_image(repository, chunk).await?;
            for f in failures {
                // Deleted since the listing: it has no children any more.
                if error::classify(&f.code, None) != Kind::ImageNotFound {
                    return Err(self.image_error(repository, "BatchGetImage", f));
                }
            }
            for m in manifests {
                let location = format!("{}/{repository}@{}", self.inner.host, m.digest);
                let raw = match &m.media_type {
                    Some(t) => RawManifest::new(m.bytes.into_bytes(), t.clone()),
                    None => RawManifest::detect(m.bytes.into_bytes(), None, &location)?,
                };
                children.extend(
                    mirror_core::image::children(&raw, &location)?
                        .into_iter()
                        .map(|d| d.to_string()),
                );
            }
        }
        Ok(children)
    }

    fn image_error(&self, repository: &str, operation: &'static str, f: client::Failure) -> Error {
        error::image_failure(
            self.inner.api.origin(),
            operation,
            format!("{repository}@{}", f.image),
            &f.code,
            &f.reason,
        )
        .into()
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

#[async_trait]
impl Registry for Ecr {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn location(&self) -> String {
        self.inner.host.clone()
    }

    /// ECR records `imagePushedAt`; retention is native when the lifecycle policy is on, and
    /// then anchors are written (the policy's first rule keeps them).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_push_times(true)
            .with_native_retention(self.inner.lifecycle_policy)
    }

    fn repository(&self, scope: &RepositoryScope) -> Result<Repository> {
        Ok(Repository::new(
            naming::repository_name(self.prefix(), scope)?,
            scope.clone(),
        ))
    }

    /// `CreateRepository` ("already exists" is success), then the lifecycle policy: put when
    /// `settings.retention` is set and the stored policy differs; removed when retention is
    /// unset and the stored policy is one this crate wrote.
    async fn ensure_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<()> {
        let name = repository.name();
        naming::check_repository(name)?;
        let created = self
            .inner
            .api
            .create_repository(
                name,
                self.inner.tag_mutability.to_sdk(),
                self.inner.scan_on_push,
                &self.repository_tags(repository),
            )
            .await?;
        if created {
            tracing::info!(repository = name, registry = %self.inner.host, "created ECR repository");
        }
        if self.inner.lifecycle_policy {
            self.apply_lifecycle(name, settings, created).await?;
        }
        Ok(())
    }

    async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>> {
        naming::check_repository(repository.name())?;
        Ok(Arc::new(self.inner.data.repository(repository.name())?))
    }

    async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>> {
        let prefix = naming::cluster_prefix(self.prefix(), cluster)?;
        let mut repos: Vec<String> = self
            .inner
            .api
            .repository_names()
            .await?
            .into_iter()
            .filter(|r| r.starts_with(&prefix))
            .collect();
        repos.sort();
        Ok(repos.into_iter().map(Repository::listed).collect())
    }

    /// `DescribeImages`. The platform manifests of a multi-platform image, and the referrers
    /// of an image (signatures, SBOMs pushed by digest), are listed by ECR as untagged images
    /// of their own; they are folded into the image they belong to.
    async fn list_images(&self, repository: &Repository) -> Result<Vec<ImageRecord>> {
        let repository = repository.name();
        naming::check_repository(repository)?;
        let details = match self.inner.api.describe_images(repository).await {
            Ok(d) => d,
            Err(e) if kind(&e) == Kind::RepositoryNotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let indexes: Vec<String> = details
            .iter()
            .filter(|d| d.media_type.as_deref().is_none_or(is_index))
            .map(|d| d.digest.clone())
            .collect();
        let children: HashSet<Digest> = if indexes.is_empty() {
            HashSet::new()
        } else {
            self.children_of(repository, &indexes)
                .await?
                .iter()
                .filter_map(|d| Digest::parse(d).ok())
                .collect()
        };
        let mut out = Vec::new();
        for d in details {
            let mut rec = ImageRecord::new(repository, Digest::parse(&d.digest)?);
            rec.tags = d.tags;
            rec.tags.sort();
            rec.pushed_at = d.pushed_at;
            rec.size = d.size;
            out.push(rec);
        }
        let out = without_children(out, &children);
        let store = self.inner.data.repository(repository)?;
        let mut out = fold_referrers(&store, out).await?;
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    /// `BatchDeleteImage` of the digest (which removes its tags), then of the image's
    /// referrers and referrers indexes (found through the data plane before). For a multi-platform image,
    /// its untagged platform manifests are deleted too, except those another index still
    /// uses (ECR refuses with `ImageReferencedByManifestList`).
    async fn delete_image(&self, repository: &Repository, digest: &Digest) -> Result<()> {
        let repository = repository.name();
        naming::check_repository(repository)?;
        let api = &self.inner.api;
        let store = self.inner.data.repository(repository)?;
        // What belongs to it, found before anything goes; deleted after the image, so that
        // a failure leaves orphans (swept later), never an unsigned image.
        let belonging: Vec<String> = referrers::belonging(&store, digest)
            .await?
            .manifests
            .iter()
            .map(|d| d.to_string())
            .collect();
        let target = digest.to_string();
        let (manifests, failures) = api
            .batch_get_image(repository, std::slice::from_ref(&target))
            .await?;
        if let Some(f) = failures.into_iter().next() {
            return Err(self.image_error(repository, "BatchGetImage", f));
        }
        let mut children: BTreeSet<String> = BTreeSet::new();
        if let Some(m) = manifests.into_iter().next() {
            if m.media_type.as_deref().is_none_or(is_index) {
                children.extend(self.children_of(repository, &[m.digest]).await?);
            }
        }
        let failures = api
            .batch_delete_image(repository, std::slice::from_ref(&target))
            .await?;
        if let Some(f) = failures.into_iter().next() {
            return Err(self.image_error(repository, "BatchDeleteImage", f));
        }
        let mut orphans = Vec::new();
        for child in children {
            if let Some(d) = api.describe_image(repository, &child).await? {
                if d.tags.is_empty() {
                    orphans.push(child);
                }
            }
        }
        for chunk in orphans.chunks(BATCH_LIMIT) {
            for f in api.batch_delete_image(repository, chunk).await? {
                match error::classify(&f.code, None) {
                    Kind::ImageNotFound | Kind::ReferencedByIndex => {}
                    _ => return Err(self.image_error(repository, "BatchDeleteImage", f)),
                }
            }
        }
        for chunk in belonging.chunks(BATCH_LIMIT) {
            for f in api.batch_delete_image(repository, chunk).await? {
                match error::classify(&f.code, None) {
                    Kind::ImageNotFound => {}
                    _ => return Err(self.image_error(repository, "BatchDeleteImage", f)),
                }
            }
        }
        Ok(())
    }

    fn pull_reference(&self, repository: &Repository, digest: &Digest) -> String {
        format!("{}/{repository}@{digest}", self.inner.host)
    }

    fn anchors(&self) -> Option<&dyn AnchorCapability> {
        self.inner
            .lifecycle_policy
            .then_some(self as &dyn AnchorCapability)
    }

    fn builds(&self) -> Option<&dyn BuildCapability> {
        Some(self)
    }
}

#[async_trait]
impl AnchorCapability for Ecr {
    /// `BatchDeleteImage` of the tag alone. ECR deletes an image whose last tag goes: the
    /// anchors this is used for are released only from images no longer in use, and an
    /// image whose only tag was its anchor (its mirror tag moved on) is then gone early,
    /// never one in use.
    async fn remove_tag(&self, repository: &Repository, tag: &str, digest: &Digest) -> Result<()> {
        let repository = repository.name();
        naming::check_repository(repository)?;
        let failures = self.inner.api.batch_delete_tag(repository, tag).await?;
        tracing::debug!(repository, tag, digest = %digest, "removed a tag");
        match failures.into_iter().next() {
            None => Ok(()),
            Some(f) if error::classify(&f.code, None) == Kind::ImageNotFound => {
                Err(Error::NotFound {
                    what: "tag",
                    location: format!("{}/{repository}:{tag}", self.inner.host),
                })
            }
            Some(f) => Err(self.image_error(repository, "BatchDeleteImage", f)),
        }
    }
}

#[async_trait]
impl BuildCapability for Ecr {
    fn repository_reference(&self, repository: &Repository) -> Result<String> {
        naming::check_repository(repository.name())?;
        Ok(format!("{}/{repository}", self.inner.host))
    }

    /// The core layout (`<build repository>/cache-<id>`), checked against ECR's grammar.
    /// `ensure_repository` creates it like any repository (ECR never creates repositories
    /// on push) and tags it `scope=build-cache`. BuildKit writes it with
    /// `image-manifest=true,oci-mediatypes=true`, the only cache format ECR stores.
    fn cache_repository(&self, build: &Repository, dockerfile_id: &str) -> Result<Repository> {
        mirror_core::registry::naming::check_dockerfile_id(dockerfile_id)?;
        let name = format!("{build}/cache-{dockerfile_id}");
        naming::check_repository(&name)?;
        Ok(Repository::listed(name).with_scope(cache_scope(build, dockerfile_id)))
    }

    /// `AWS` and a fresh `GetAuthorizationToken` token, for the registry host.
    async fn builder_credentials(&self) -> Result<Option<BuilderCredentials>> {
        let token = self.inner.credentials.token().await?;
        Ok(Some(BuilderCredentials {
            host: self.inner.host.clone(),
            credentials: token.as_credentials(),
        }))
    }
}
