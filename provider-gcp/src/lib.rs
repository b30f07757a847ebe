//! Google Artifact Registry as a cluster's mirror registry: [`ArtifactRegistry`] is the kit's
//! [`CloudRegistry`] over [`GarPlane`].
//!
//! Every repository scope gets a DOCKER-format repository, created through the REST API and
//! labelled ([`GarPlane::labels`]); retention (Cluster mode) and keep counts (Service mode)
//! become cleanup policies ([`cleanup`]); images are listed with `dockerImages.list` (upload
//! times included) and deleted one package version at a time, by digest, never a whole
//! package. The data plane takes the OAuth access token as the password of
//! `oauth2accesstoken` and one PUT per blob (no chunked uploads). Builds push to the build
//! repository's `image` package and keep their cache in its `cache-<dockerfile id>` package.
//!
//! Layout: [`config`] (builder, keys, factory), [`client`] (REST calls), [`error`] (the
//! table), [`credential`] (access tokens), [`naming`], [`cleanup`], [`source`] (Google
//! registries as image sources).
//!
//! ```no_run
//! # async fn demo() -> mirror_core::Result<()> {
//! use std::sync::Arc;
//! use mirror_core::{Mirror, Source};
//! use provider_gcp::ArtifactRegistryBuilder;
//!
//! let gar = ArtifactRegistryBuilder::from_env()
//!     .project("my-project")
//!     .location("europe-west1")
//!     .credentials_file("/var/run/secrets/mirror/key.json")
//!     .build()
//!     .await?;
//! let mirror = Mirror::builder(Arc::new(gar), "prod-eu").build()?;
//! let d = mirror.mirror("api", &Source::parse("nginx:1.27")?).await?;
//! println!("deploy {}", d.pull_reference);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod cleanup;
pub mod client;
pub mod config;
pub mod credential;
pub mod error;
pub mod naming;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mirror_core::kit::provider::cloud::{CloudRegistry, ControlPlane, Deletion, ListedImage};
use mirror_core::kit::provider::{deletes, scope, Kind};
use mirror_core::kit::retry::Poll;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::registry::Repository;
use mirror_core::{Digest, RepositoryScope, RepositorySettings, Result};

pub use config::{factory, ArtifactRegistryBuilder, GarConfigKey, GarFactory};
pub use credential::{
    AccessToken, DefaultChain, GcpCredentials, GcpTokenSource, ServiceAccountKey, StaticToken,
};
pub use mirror_core::kit::provider::scope::MANAGED_BY;
pub use source::GarSources;

use client::{ArApi, Created};
use naming::IMAGE;

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "gcp";

/// How long a repository created by someone else (a concurrent deployer whose creation is
/// still running) may take to become visible.
pub const CREATE_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// An Artifact Registry location of one project as a cluster's mirror registry. Build it
/// with [`ArtifactRegistryBuilder`].
pub type ArtifactRegistry = CloudRegistry<GarPlane>;

/// Artifact Registry's control plane and settings.
#[derive(Debug)]
pub struct GarPlane {
    api: ArApi,
    data: RegistryClient,
    project: String,
    location: String,
    prefix: String,
    cleanup_policies: bool,
    cleanup_dry_run: bool,
    credentials: Arc<GcpCredentials>,
}

impl GarPlane {
    /// The project id.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The location (`europe-west1`, `us`).
    pub fn location_id(&self) -> &str {
        &self.location
    }

    /// The REST API client.
    pub fn api(&self) -> &ArApi {
        &self.api
    }

    /// The access-token cache (its `fetches()` counts tokens).
    pub fn credentials(&self) -> &Arc<GcpCredentials> {
        &self.credentials
    }

    /// The repository id and package of a repository name of this registry.
    pub fn parse_repository<'a>(&self, name: &'a str) -> Result<(&'a str, &'a str)> {
        naming::parse_name(&self.project, name)
    }

    /// The labels a repository gets: the kit's [`scope::labels`], and `mirror-cluster` (a hash
    /// of the exact cluster id, by which [`ControlPlane::list_repositories`] finds them).
    pub fn labels(&self, scope: Option<&RepositoryScope>) -> BTreeMap<String, String> {
        let mut labels = scope::labels(scope, naming::label_value);
        if let Some(s) = scope {
            labels.insert("mirror-cluster".into(), naming::cluster_hash(s.cluster()));
        }
        labels
    }

    /// Brings an existing repository's labels, the cleanup policies this crate owns and the
    /// dry-run flag to what they should be, with one `PATCH` naming only the fields that
    /// differ (none: no call).
    async fn reconcile(
        &self,
        id: &str,
        labels: &BTreeMap<String, String>,
        policies: Option<&BTreeMap<String, serde_json::Value>>,
    ) -> error::Result<()> {
        let (api, origin) = (&self.api, self.api.origin());
        let hidden = || {
            let why = "the repository exists (ALREADY_EXISTS) but is not visible yet";
            let e = origin.error("repositories.get", id, Kind::NotFound("repository"), why);
            e.with_status(404).with_code("NOT_FOUND")
        };
        let current = api.get_repository(id).await?.ok_or_else(hidden)?;
        if !current.format.is_empty() && current.format != "DOCKER" {
            let why = format!(
                "repository {id} exists with format {}, not DOCKER",
                current.format
            );
            return Err(origin.config("repository", why));
        }
        let (mut mask, mut patch) = (Vec::new(), client::Repository::default());
        patch.labels = current.labels.clone();
        patch.labels.extend(labels.clone());
        if patch.labels != current.labels {
            mask.push("labels");
        }
        if let Some(want) = policies {
            if !cleanup::same_policies(&current.cleanup_policies, want) {
                mask.push("cleanupPolicies");
                patch.cleanup_policies = cleanup::merged(&current.cleanup_policies, want);
            }
            if current.cleanup_policy_dry_run != self.cleanup_dry_run {
                mask.push("cleanupPolicyDryRun");
                patch.cleanup_policy_dry_run = self.cleanup_dry_run;
            }
        }
        if mask.is_empty() {
            return Ok(());
        }
        tracing::info!(repository = id, fields = ?mask, "updating Artifact Registry repository");
        api.patch_repository(id, &mask, &patch).await.map(|_| ())
    }
}

#[async_trait]
impl ControlPlane for GarPlane {
    const PROVIDER: &'static str = PROVIDER;
    const RECORDS_PUSH_TIME: bool = true;

    fn data_plane(&self) -> &RegistryClient {
        &self.data
    }

    /// Cleanup policies, with the keep policy of anchored images, reconciled on every ensure.
    fn retention_document(&self) -> bool {
        self.cleanup_policies
    }

    /// `<project path>/<repository id>/image`.
    fn repository_name(&self, scope: &RepositoryScope) -> Result<String> {
        let id = naming::repository_id(&self.prefix, scope)?;
        naming::repository_name(&self.project, &id, IMAGE)
    }

    fn check_repository(&self, name: &str) -> Result<()> {
        naming::check_name(&self.project, name)
    }

    /// The package `cache-<dockerfile id>` of the build repository: beside its `image`
    /// package, never listed, evicted or matched by the cleanup policies.
    fn cache_repository_name(&self, build: &Repository, dockerfile_id: &str) -> Result<String> {
        let (id, _) = self.parse_repository(build.name())?;
        naming::repository_name(&self.project, id, &naming::cache_package(dockerfile_id)?)
    }

    /// `repositories.create` with the labels and, for the `image` package, the cleanup
    /// policies of `settings` (`ALREADY_EXISTS`: the existing repository is reconciled,
    /// retried while it is not visible yet). For a build-cache package only the repository's
    /// existence is ensured.
    async fn create_repository(&self, repo: &Repository, s: &RepositorySettings) -> Result<bool> {
        let (id, package) = self.parse_repository(repo.name())?;
        let cache = matches!(repo.scope(), Some(RepositoryScope::BuildCache { .. }));
        let manage = package == IMAGE && !cache && self.cleanup_policies;
        let policies = manage.then(|| cleanup::desired(s));
        let labels = self.labels(repo.scope());
        let body = client::Repository {
            format: "DOCKER".into(),
            mode: "STANDARD_REPOSITORY".into(),
            description: scope::description(repo.scope()),
            labels: labels.clone(),
            cleanup_policies: policies.clone().unwrap_or_default(),
            cleanup_policy_dry_run: manage && self.cleanup_dry_run,
            ..Default::default()
        };
        if let Created::Created(_) = self.api.create_repository(id, &body).await? {
            return Ok(true);
        }
        let pending = |e: &error::Error| matches!(e.kind(), Kind::NotFound(_));
        let reconcile = || self.reconcile(id, &labels, policies.as_ref());
        Poll::until(CREATE_SETTLE_TIMEOUT)
            .retry_while(reconcile, pending)
            .await?;
        Ok(false)
    }

    /// `repositories.list`, those labelled `managed-by = mirror-core` and `mirror-cluster =
    /// <hash of the cluster id>` whose id starts with the prefix.
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<String>> {
        if cluster.trim().is_empty() {
            let why = "the cluster id is empty";
            return Err(mirror_core::kit::provider::naming::invalid(cluster, why));
        }
        let (hash, prefix) = (naming::cluster_hash(cluster), format!("{}-", self.prefix));
        let ours = |r: &&client::Repository| {
            r.labels.get("managed-by").map(String::as_str) == Some(MANAGED_BY)
                && r.labels.get("mirror-cluster") == Some(&hash)
                && r.id().starts_with(&prefix)
        };
        let repos = self.api.list_repositories().await?;
        let names = repos.iter().filter(ours);
        Ok(names
            .filter_map(|r| naming::repository_name(&self.project, r.id(), IMAGE).ok())
            .collect())
    }

    /// `dockerImages.list`, the versions of the repository's package (platform manifests and
    /// referrers are listed as untagged images of their own: the kit folds them).
    async fn list_images(&self, repository: &str) -> Result<Vec<ListedImage>> {
        let (id, package) = self.parse_repository(repository)?;
        let images = match self.api.docker_images(id).await {
            Err(e) if matches!(e.kind(), Kind::NotFound(_)) => return Ok(Vec::new()),
            other => other?,
        };
        let project_path = naming::project_path(&self.project);
        let mut out = Vec::new();
        for img in images {
            let Some((pkg, digest)) = img.package_and_digest(&project_path, id) else {
                let (uri, name) = (&img.uri, &img.name);
                let why = format!(
                    "an image whose uri {uri:?} and name {name:?} do not name a package and digest"
                );
                return Err(self
                    .api
                    .origin()
                    .protocol("dockerImages.list", id, why)
                    .into());
            };
            if pkg != package {
                continue;
            }
            let mut l = ListedImage::new(Digest::parse(&digest)?);
            let pushed_at = img
                .upload_time
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
            if pushed_at.is_none() {
                tracing::warn!(repository, digest = %l.digest, upload_time = ?img.upload_time, "no readable upload time");
            }
            (l.tags, l.pushed_at, l.media_type) = (img.tags, pushed_at, img.media_type);
            l.size = img.image_size_bytes.and_then(|s| s.parse().ok());
            out.push(l);
        }
        Ok(out)
    }

    /// `versions.delete` of one version per call ([`deletes::delete_each`]): with `force`
    /// (its tags go with it) for images and referrers, without for orphaned platform
    /// manifests. No call addresses the package itself.
    async fn delete_manifests(&self, repo: &str, digests: &[Digest], why: Deletion) -> Result<()> {
        let (id, package) = self.parse_repository(repo)?;
        let delete = |d: Digest, force: bool| async move {
            let target = format!("{repo}@{d}");
            self.api
                .delete_version(id, package, &d, force, &target)
                .await
        };
        deletes::delete_each(self, repo, digests, why, delete).await
    }

    /// `tags.delete`: the tag goes, the version and its other tags stay.
    async fn remove_tag(&self, repository: &str, tag: &str) -> Result<()> {
        let (id, package) = self.parse_repository(repository)?;
        let target = format!("{repository}:{tag}");
        Ok(self.api.delete_tag(id, package, tag, &target).await?)
    }
}
