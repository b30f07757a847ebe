//! The cluster's mirror registry: the [`Registry`] trait (the provider plug-in point), the
//! typed [`Repository`] every method takes, and the core implementations.
//!
//! - [`GenericRegistry`]: any distribution registry; [`LayoutRegistry`]: a directory of OCI
//!   layouts, needing no server;
//! - [`Instrumented`]: a wrapper around any registry that counts and traces its calls;
//! - [`naming`]: the repository layout the core registries share and its helpers;
//! - [`open()`](open::open): a registry from a URL-like string and options, with the
//!   factories provider crates export.
//!
//! # Push times
//!
//! The distribution API does not tell when an image was pushed. Registries that cannot tell
//! ([`Capabilities::records_push_time`] is false) get their push times recorded by the
//! library with bookkeeping tags (see [`crate::image`]).

mod generic;
mod instrumented;
mod layout;
pub mod naming;
pub mod open;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::image::{ImageRecord, Listing};
use crate::store::http::credentials::Credentials;
use crate::store::ImageStore;

pub use generic::GenericRegistry;
pub use instrumented::{Instrumented, Operation};
pub use layout::LayoutRegistry;
pub use naming::{default_repository, default_repository_name, id_component};
pub use open::{open, OpenOptions, RegistryFactory, RegistryUrl};

/// What a repository is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RepositoryScope {
    /// Service mode: one repository per service of a cluster.
    Service {
        /// The cluster id.
        cluster: String,
        /// The service id.
        service: String,
    },
    /// Cluster mode: one repository shared by every service of a cluster.
    Cluster {
        /// The cluster id.
        cluster: String,
    },
    /// Images built for a service.
    Build {
        /// The cluster id.
        cluster: String,
        /// The service id.
        service: String,
    },
    /// The remote layer cache of one service's builds from one Dockerfile (see
    /// [`BuildCapability::cache_repository`]); never listed as images, evicted or matched by
    /// a retention policy.
    BuildCache {
        /// The cluster id.
        cluster: String,
        /// The service id.
        service: String,
        /// Lowercase hex naming the Dockerfile's path.
        dockerfile_id: String,
    },
}

impl RepositoryScope {
    /// The cluster id of any scope.
    pub fn cluster(&self) -> &str {
        match self {
            RepositoryScope::Service { cluster, .. }
            | RepositoryScope::Cluster { cluster }
            | RepositoryScope::Build { cluster, .. }
            | RepositoryScope::BuildCache { cluster, .. } => cluster,
        }
    }

    /// The service id, for the scopes that have one.
    pub fn service(&self) -> Option<&str> {
        match self {
            RepositoryScope::Service { service, .. }
            | RepositoryScope::Build { service, .. }
            | RepositoryScope::BuildCache { service, .. } => Some(service),
            RepositoryScope::Cluster { .. } => None,
        }
    }

    /// One word for the scope: `service`, `cluster`, `build`, `build-cache`.
    pub fn kind(&self) -> &'static str {
        match self {
            RepositoryScope::Service { .. } => "service",
            RepositoryScope::Cluster { .. } => "cluster",
            RepositoryScope::Build { .. } => "build",
            RepositoryScope::BuildCache { .. } => "build-cache",
        }
    }
}

/// A repository of a registry: its name, and the scope it was named for.
///
/// Made by [`Registry::repository`] (the scope is known) or by
/// [`Registry::list_repositories`] ([`Repository::listed`]: the scope is not always known
/// exactly, since names may carry hashes of the ids). Every other method of [`Registry`]
/// takes one, so no provider needs to remember what it named.
///
/// Two handles are equal when they name the same repository, whether or not both know its
/// scope.
#[derive(Debug, Clone, Serialize)]
pub struct Repository {
    name: String,
    scope: Option<RepositoryScope>,
}

impl Repository {
    /// The repository `name`, named for `scope`.
    pub fn new(name: impl Into<String>, scope: RepositoryScope) -> Self {
        Repository {
            name: name.into(),
            scope: Some(scope),
        }
    }

    /// A repository found by listing, whose scope is not known.
    pub fn listed(name: impl Into<String>) -> Self {
        Repository {
            name: name.into(),
            scope: None,
        }
    }

    /// The same repository with its scope, when a listing could tell it.
    pub fn with_scope(mut self, scope: Option<RepositoryScope>) -> Self {
        self.scope = scope;
        self
    }

    /// The name within the registry (`prod/services/api`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The scope it was named for, when known.
    pub fn scope(&self) -> Option<&RepositoryScope> {
        self.scope.as_ref()
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl PartialEq for Repository {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Repository {}

impl std::hash::Hash for Repository {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl PartialEq<str> for Repository {
    fn eq(&self, other: &str) -> bool {
        self.name == other
    }
}

impl PartialEq<&str> for Repository {
    fn eq(&self, other: &&str) -> bool {
        self.name == *other
    }
}

impl PartialEq<String> for Repository {
    fn eq(&self, other: &String) -> bool {
        &self.name == other
    }
}

/// Settings a repository is created or updated with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RepositorySettings {
    /// Cluster mode: images older than this may be deleted (by the provider's native policy
    /// where there is one, else by `sweep`).
    pub retention: Option<Duration>,
    /// Service mode: how many previous images are kept for rollbacks.
    pub keep_previous: Option<usize>,
}

/// What a registry can do beyond the trait's required methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// The registry records push times and lists them; false makes the library record them
    /// with bookkeeping tags (see [`crate::image`]).
    pub records_push_time: bool,
    /// The registry enforces retention itself (a lifecycle or cleanup policy written by
    /// `ensure_repository`); false leaves retention to `sweep`.
    pub native_retention: bool,
}

impl Capabilities {
    /// With `records_push_time` set.
    pub fn with_push_times(mut self, records: bool) -> Self {
        self.records_push_time = records;
        self
    }

    /// With `native_retention` set.
    pub fn with_native_retention(mut self, native: bool) -> Self {
        self.native_retention = native;
        self
    }
}

/// Credentials a builder process pushes with, and the host they are for.
#[derive(Debug, Clone)]
pub struct BuilderCredentials {
    /// The registry host (`host[:port]`).
    pub host: String,
    /// The credentials (hidden in `Debug`).
    pub credentials: Credentials,
}

/// A cluster's mirror registry, as providers implement it.
///
/// Six methods are required; the others have defaults that fit any distribution-API
/// registry (listing by tags, deleting through the data plane, `host/repository@digest`),
/// and capabilities are reached through accessors ([`Registry::anchors`],
/// [`Registry::builds`]). Cloud providers implement it through
/// `CloudRegistry` (the provider kit, `provider::cloud`).
///
/// # Contract
///
/// - `repository` is pure and total: for any cluster and service id it returns a repository
///   whose name the registry accepts, or [`Error::InvalidName`](crate::Error::InvalidName)
///   for an empty id. Distinct scopes give distinct names; the same scope gives the same
///   name on every run.
/// - `ensure_repository` is idempotent and safe to call concurrently for one repository
///   ("already exists" is success); it applies `settings` when they differ.
/// - `store` returns a store with valid credentials for at least the next operation;
///   providers refresh credentials inside it.
/// - `list_repositories` lists the repositories this library manages for the cluster (build
///   caches too where the provider keeps them as repositories of their own; Artifact
///   Registry keeps them as packages of the build repository).
/// - `list_images` lists every image (manifest or index reachable by tag) of the repository
///   as one record each: the child manifests of an index and the bookkeeping tags are folded
///   into it, never listed on their own. A repository that does not exist has no images
///   (`Ok(vec![])`). Push times are `Some` for every image whose push time is known.
/// - `delete_image` deletes the image and what belongs to it (its tags, its child manifests
///   no other image uses, its referrers); [`Error::NotFound`](crate::Error::NotFound) when
///   it is absent.
/// - `list_images_in` lists as `list_images` does; `delete_images` deletes as `delete_image`
///   does, for each image, with one result per digest in order (an error for the whole
///   batch only when nothing was deleted).
/// - No method reports a failed check as "absent".
#[async_trait]
pub trait Registry: Send + Sync + fmt::Debug {
    /// The provider name (`generic`, `layout`, `aws`…), used in errors and listings.
    fn provider(&self) -> &str;

    /// Where the registry is, for humans and pull references (`127.0.0.1:5000`,
    /// `oci:/var/mirror`).
    fn location(&self) -> String;

    /// What the registry can do (default: nothing beyond the trait).
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// The repository for a scope.
    fn repository(&self, scope: &RepositoryScope) -> Result<Repository>;

    /// Creates the repository if needed and applies its settings.
    async fn ensure_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<()>;

    /// A store for one repository.
    async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>>;

    /// The repositories this library manages for `cluster`.
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>>;

    /// The images of a repository. The default lists the store's tags
    /// ([`list_images_by_tags`](crate::image::list_images_by_tags)).
    async fn list_images(&self, repository: &Repository) -> Result<Vec<ImageRecord>> {
        let store = self.store(repository).await?;
        crate::image::list_images_by_tags(store.as_ref(), repository.name()).await
    }

    /// Deletes one image (by manifest digest) and what belongs to it. The default deletes
    /// through the store (`image::delete_with_referrers`).
    async fn delete_image(&self, repository: &Repository, digest: &Digest) -> Result<()> {
        let store = self.store(repository).await?;
        crate::image::delete_with_referrers(store.as_ref(), digest).await
    }

    /// The images of a repository, as [`list_images`](Registry::list_images) lists them,
    /// within `listing` (an inventory or a sweep of many repositories): a registry that reads
    /// its data plane to list reads it through [`Listing::store`], so that the listing's
    /// later questions (sizes, referrers) are answered from what it learned and manifests
    /// are read once (`crate::image::listed`). The default calls `list_images`; the
    /// inventory then learns what it can from the records.
    async fn list_images_in(
        &self,
        repository: &Repository,
        listing: &Listing,
    ) -> Result<Vec<ImageRecord>> {
        let _ = listing;
        self.list_images(repository).await
    }

    /// Deletes the images `digests` of a repository, each as
    /// [`delete_image`](Registry::delete_image) does: one result per digest, in order
    /// ([`Error::NotFound`](crate::Error::NotFound) for an image already gone). An error for
    /// the whole call only when nothing was deleted (what the repository holds could not be
    /// read). The default calls `delete_image`
    /// [`DELETE_CONCURRENCY`](crate::image::DELETE_CONCURRENCY) at a time; registries
    /// deleting through the data plane read what the other images hold once for the batch
    /// ([`crate::image::delete_images`]), and control planes with batch deletes use them.
    async fn delete_images(
        &self,
        repository: &Repository,
        digests: &[Digest],
    ) -> Result<Vec<Result<()>>> {
        use futures::StreamExt;
        Ok(futures::stream::iter(
            digests
                .iter()
                .cloned()
                .map(|d| async move { self.delete_image(repository, &d).await }),
        )
        .buffered(crate::image::DELETE_CONCURRENCY)
        .collect()
        .await)
    }

    /// The digest-pinned reference Kubernetes pulls (default:
    /// `<location>/<repository>@<digest>`).
    fn pull_reference(&self, repository: &Repository, digest: &Digest) -> String {
        format!("{}/{repository}@{digest}", self.location())
    }

    /// Checks at once what no retry can fix: that the registry is reachable (its host
    /// resolves, it speaks the protocol the location says) and accepts the credentials. A
    /// deployer calls it at start-up to fail fast on a typo'd host or a refused credential
    /// (typed errors: [`ErrorKind::Network`](crate::ErrorKind),
    /// [`ErrorKind::Auth`](crate::ErrorKind)). The default checks nothing.
    async fn check(&self) -> Result<()> {
        Ok(())
    }

    /// Anchors: tags the native retention policies this registry applies never expire
    /// (default: none; see [`AnchorCapability`]).
    fn anchors(&self) -> Option<&dyn AnchorCapability> {
        None
    }

    /// The build capability, for registries builders can push to (default: none).
    fn builds(&self) -> Option<&dyn BuildCapability> {
        None
    }
}

/// What [`Mirror::protect`](crate::Mirror::protect) needs of a registry whose native
/// retention policies (an ECR lifecycle policy, Artifact Registry cleanup policies) honour
/// anchor tags: removing a tag alone. A registry that offers it gets in-use images anchored
/// and passed hand-out marks removed; one that does not has its retention enforced by the
/// library (`sweep`, eviction), which asks the in-use source itself.
///
/// # Contract
///
/// - `remove_tag` removes `tag` from the image `digest` and leaves the image and its other
///   tags; [`Error::NotFound`](crate::Error::NotFound) when the tag is not there.
#[async_trait]
pub trait AnchorCapability: Send + Sync {
    /// Removes `tag` from the image `digest`.
    async fn remove_tag(&self, repository: &Repository, tag: &str, digest: &Digest) -> Result<()>;
}

/// What [`Mirror::build`](crate::Mirror::build) needs of a registry beyond [`Registry`].
///
/// # Contract
///
/// - `repository_reference` is the name builders push a repository under and read caches
///   from: `host/repository`, without tag or digest.
/// - `cache_repository` names the repository holding the remote build cache of the builds
///   pushed to `build_repository` from one Dockerfile (`dockerfile_id`: lowercase hex). Caches
///   are never shared between services or Dockerfiles, never held in a repository that
///   eviction or retention manages, and the name is distinct for distinct inputs. Its scope is
///   [`RepositoryScope::BuildCache`].
/// - `builder_credentials` hands out credentials a builder process uses to push and to read
///   and write caches; `None` when the registry cannot, and the deployer passes them in the
///   build spec. Asked once per build, so rotating tokens are fresh.
#[async_trait]
pub trait BuildCapability: Send + Sync {
    /// `host/repository` of `repository`.
    fn repository_reference(&self, repository: &Repository) -> Result<String>;

    /// The cache repository of `build_repository` for the Dockerfile `dockerfile_id`.
    fn cache_repository(
        &self,
        build_repository: &Repository,
        dockerfile_id: &str,
    ) -> Result<Repository>;

    /// Credentials for the builder process.
    async fn builder_credentials(&self) -> Result<Option<BuilderCredentials>>;
}

/// The cache scope of `build_repository` for `dockerfile_id`: `Some` when the build
/// repository's scope is known and is a [`RepositoryScope::Build`] scope.
pub fn cache_scope(build_repository: &Repository, dockerfile_id: &str) -> Option<RepositoryScope> {
    match build_repository.scope() {
        Some(RepositoryScope::Build { cluster, service }) => Some(RepositoryScope::BuildCache {
            cluster: cluster.clone(),
            service: service.clone(),
            dockerfile_id: dockerfile_id.to_string(),
        }),
        _ => None,
    }
}

#[async_trait]
impl<R: Registry + ?Sized> Registry for Arc<R> {
    fn provider(&self) -> &str {
        (**self).provider()
    }
    fn location(&self) -> String {
        (**self).location()
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn repository(&self, scope: &RepositoryScope) -> Result<Repository> {
        (**self).repository(scope)
    }
    async fn ensure_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<()> {
        (**self).ensure_repository(repository, settings).await
    }
    async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>> {
        (**self).store(repository).await
    }
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>> {
        (**self).list_repositories(cluster).await
    }
    async fn list_images(&self, repository: &Repository) -> Result<Vec<ImageRecord>> {
        (**self).list_images(repository).await
    }
    async fn delete_image(&self, repository: &Repository, digest: &Digest) -> Result<()> {
        (**self).delete_image(repository, digest).await
    }
    async fn list_images_in(
        &self,
        repository: &Repository,
        listing: &Listing,
    ) -> Result<Vec<ImageRecord>> {
        (**self).list_images_in(repository, listing).await
    }
    async fn delete_images(
        &self,
        repository: &Repository,
        digests: &[Digest],
    ) -> Result<Vec<Result<()>>> {
        (**self).delete_images(repository, digests).await
    }
    fn pull_reference(&self, repository: &Repository, digest: &Digest) -> String {
        (**self).pull_reference(repository, digest)
    }
    async fn check(&self) -> Result<()> {
        (**self).check().await
    }
    fn anchors(&self) -> Option<&dyn AnchorCapability> {
        (**self).anchors()
    }
    fn builds(&self) -> Option<&dyn BuildCapability> {
        (**self).builds()
    }
}
