//! Google Artifact Registry as a cluster's mirror registry.
//!
//! [`ArtifactRegistry`] is the kit's [`CloudRegistry`] over [`GarPlane`], this crate's
//! [`ControlPlane`]: every repository scope gets a DOCKER-format repository, created through
//! the REST API (the long-running operation polled to completion) and labelled `managed-by`,
//! `mirror-scope`, `mirror-cluster`, `cluster` and `service`; retention (Cluster mode) and
//! keep counts (Service mode) become cleanup policies ([`cleanup`]), patched with an update
//! mask when they change; images are listed with `dockerImages.list` (upload times included)
//! and deleted one package version at a time, by digest — never a whole package. The data
//! plane is the core HTTP client with the OAuth access token as the password of
//! `oauth2accesstoken`, refreshed ahead of its expiry, uploading each blob with one PUT
//! (Artifact Registry takes no chunked uploads). Builds push to the build repository's
//! `image` package and keep their cache in its `cache-<dockerfile id>` package.
//!
//! # Layout
//!
//! - [`config`]: [`ArtifactRegistryBuilder`], its keys and `MIRROR_GAR_*` variables, and the
//!   factory for `mirror_core::registry::open` (`gar://…`, `*-docker.pkg.dev/…`);
//! - [`client`]: the REST calls; [`error`]: the table of Google statuses;
//! - [`credential`]: access tokens ([`GcpTokenSource`]s, [`GcpCredentials`]);
//! - [`naming`]: the naming rules and the layout; [`cleanup`]: the cleanup policies;
//! - [`source`]: Google registries as image sources ([`GarSources`]).
//!
//! # Example
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

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use mirror_core::kit::provider::cloud::{CloudRegistry, ControlPlane, Deletion, ListedImage};
use mirror_core::kit::provider::Kind;
use mirror_core::kit::retry::Poll;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::registry::Repository;
use mirror_core::{Digest, Error, ImageStore, RepositoryScope, RepositorySettings, Result};

pub use config::{factory, ArtifactRegistryBuilder, GarConfigKey, GarFactory};
pub use credential::{
    AccessToken, DefaultChain, GcpCredentials, GcpTokenSource, ServiceAccountKey, StaticToken,
};
pub use source::GarSources;

use client::{ArApi, Created};
use naming::IMAGE;

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "gcp";

/// The value of the `managed-by` label put on repositories this crate creates.
pub const MANAGED_BY: &str = "mirror-core";

/// How long a repository created by someone else (a concurrent deployer whose creation is
/// still running) may take to become visible.
pub const CREATE_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Version deletions in flight at once (each a polled operation; the API has no batch the
/// fake implements).
const DELETE_CONCURRENCY: usize = 8;

/// An Artifact Registry location of one project as a cluster's mirror registry: the kit's
/// registry over [`GarPlane`]. Build it with [`ArtifactRegistryBuilder`].
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

/// The scope a repository is labelled with: a build cache is a package of its build
/// repository, so it is labelled as the build.
fn labelled_scope(scope: &RepositoryScope) -> RepositoryScope {
    match scope {
        RepositoryScope::BuildCache {
            cluster, service, ..
        } => {
            let (cluster, service) = (cluster.clone(), service.clone());
            RepositoryScope::Build { cluster, service }
        }
        other => other.clone(),
    }
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

    /// The labels a repository gets: `managed-by`, and when its scope is known
    /// `mirror-scope`, `mirror-cluster` (a hash of the exact cluster id), `cluster` and
    /// `service` (readable forms).
    pub fn labels(&self, scope: Option<&RepositoryScope>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([("managed-by".to_string(), MANAGED_BY.to_string())]);
        if let Some(scope) = scope.map(labelled_scope) {
            labels.insert("mirror-scope".into(), scope.kind().into());
            labels.insert(
                "mirror-cluster".into(),
                naming::cluster_hash(scope.cluster()),
            );
            labels.insert("cluster".into(), naming::label_value(scope.cluster()));
            labels.extend(
                scope
                    .service()
                    .map(|s| ("service".to_string(), naming::label_value(s))),
            );
        }
        labels
    }

    fn description(scope: Option<&RepositoryScope>) -> String {
        match scope.map(labelled_scope) {
            Some(RepositoryScope::Service { cluster, service }) => {
                format!("mirror-core: images of service {service:?} of cluster {cluster:?}")
            }
            Some(RepositoryScope::Cluster { cluster }) => {
                format!("mirror-core: images shared by the services of cluster {cluster:?}")
            }
            Some(RepositoryScope::Build { cluster, service }) => {
                format!("mirror-core: images built for service {service:?} of cluster {cluster:?}")
            }
            _ => "mirror-core: mirrored images".to_string(),
        }
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
        let api = &self.api;
        let hidden = || {
            let e = api.origin().error(
                "repositories.get",
                id,
                Kind::NotFound("repository"),
                "the repository exists (ALREADY_EXISTS) but is not visible yet",
            );
            e.with_status(404).with_code("NOT_FOUND")
        };
        let current = api.get_repository(id).await?.ok_or_else(hidden)?;
        if !current.format.is_empty() && current.format != "DOCKER" {
            return Err(api.origin().config(
                "repository",
                format!(
                    "repository {id} exists with format {}, not DOCKER",
                    current.format
                ),
            ));
        }
        let (mut mask, mut patch) = (Vec::new(), client::Repository::default());
        let mut merged = current.labels.clone();
        merged.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        if merged != current.labels {
            mask.push("labels");
            patch.labels = merged;
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

    /// The images of one package of a repository, as listed with their digests; `None` when
    /// the repository does not exist.
    async fn package_images(
        &self,
        id: &str,
        package: &str,
    ) -> Result<Option<Vec<(Digest, client::DockerImage)>>> {
        let images = match self.api.docker_images(id).await {
            Err(e) if matches!(e.kind(), Kind::NotFound(_)) => return Ok(None),
            other => other?,
        };
        let project_path = naming::project_path(&self.project);
        let mut out = Vec::new();
        for img in images {
            let Some((pkg, digest)) = img.package_and_digest(&project_path, id) else {
                let reason = format!(
                    "an image whose uri {:?} and name {:?} do not name a package and digest",
                    img.uri, img.name
                );
                return Err(self
                    .api
                    .origin()
                    .protocol("dockerImages.list", id, reason)
                    .into());
            };
            if pkg == package {
                out.push((Digest::parse(&digest)?, img));
            }
        }
        Ok(Some(out))
    }

    /// The children of the indexes among `digests`, read through the data plane.
    async fn children_of(&self, name: &str, digests: &[&Digest]) -> Result<HashSet<Digest>> {
        let (store, mut children) = (self.data.repository(name)?, HashSet::new());
        for d in digests {
            let m = match store.get_manifest(&d.to_string()).await {
                Err(e) if e.is_not_found() => continue,
                m => m?,
            };
            let location = format!("{}/{name}@{d}", self.data.registry());
            children.extend(mirror_core::kit::image::children(&m, &location).unwrap_or_default());
        }
        Ok(children)
    }

    /// After an index was deleted: those of its platform manifests that are untagged
    /// versions of the package and used by no other index of it, each without force
    /// (tagged meanwhile, it is kept).
    async fn delete_orphans(
        &self,
        name: &str,
        id: &str,
        package: &str,
        children: &[Digest],
    ) -> Result<()> {
        let Some(listed) = self.package_images(id, package).await? else {
            return Ok(());
        };
        let is_index = |t: &str| {
            t == mirror_core::media::OCI_INDEX || t == mirror_core::media::DOCKER_MANIFEST_LIST
        };
        let indexes: Vec<&Digest> = listed
            .iter()
            .filter(|(_, i)| i.media_type.as_deref().is_none_or(is_index))
            .map(|(d, _)| d)
            .collect();
        let still_used = self.children_of(name, &indexes).await?;
        for child in children {
            let untagged = listed.iter().any(|(d, i)| d == child && i.tags.is_empty());
            if !untagged || still_used.contains(child) {
                continue;
            }
            match self
                .api
                .delete_version(id, package, child, false, &format!("{name}@{child}"))
                .await
            {
                Err(e) if !matches!(e.kind(), Kind::NotFound(_) | Kind::Conflict) => {
                    return Err(e.into())
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ControlPlane for GarPlane {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn data_plane(&self) -> &RegistryClient {
        &self.data
    }

    fn records_push_time(&self) -> bool {
        true
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
    async fn create_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<bool> {
        let (id, package) = self.parse_repository(repository.name())?;
        let cache = matches!(repository.scope(), Some(RepositoryScope::BuildCache { .. }));
        let manage = package == IMAGE && !cache && self.cleanup_policies;
        let policies = manage.then(|| cleanup::desired(settings));
        let labels = self.labels(repository.scope());
        let body = client::Repository {
            format: "DOCKER".into(),
            mode: "STANDARD_REPOSITORY".into(),
            description: Self::description(repository.scope()),
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
            return Err(mirror_core::kit::provider::naming::invalid(
                cluster,
                "the cluster id is empty",
            ));
        }
        let (hash, prefix) = (naming::cluster_hash(cluster), format!("{}-", self.prefix));
        let ours = |r: &client::Repository| {
            r.labels.get("managed-by").map(String::as_str) == Some(MANAGED_BY)
                && r.labels.get("mirror-cluster") == Some(&hash)
                && r.id().starts_with(&prefix)
        };
        let repos = self.api.list_repositories().await?;
        let names = repos.iter().filter(|r| ours(r));
        Ok(names
            .filter_map(|r| naming::repository_name(&self.project, r.id(), IMAGE).ok())
            .collect())
    }

    /// `dockerImages.list` of the repository's package (platform manifests and referrers
    /// are listed as untagged images of their own: the kit folds them).
    async fn list_images(&self, repository: &str) -> Result<Vec<ListedImage>> {
        let (id, package) = self.parse_repository(repository)?;
        let images = self.package_images(id, package).await?.unwrap_or_default();
        let listed = images.into_iter().map(|(digest, img)| {
            let pushed_at = img.upload_time.as_deref().and_then(|t| humantime::parse_rfc3339_weak(t).ok());
            if pushed_at.is_none() {
                tracing::warn!(repository, %digest, upload_time = ?img.upload_time, "no readable upload time");
            }
            let mut l = ListedImage::new(digest);
            (l.tags, l.pushed_at, l.media_type) = (img.tags, pushed_at, img.media_type);
            l.size = img.image_size_bytes.and_then(|s| s.parse().ok());
            l
        });
        Ok(listed.collect())
    }

    /// One package version at a time, by digest: the image and its referrers with
    /// `force=true` (their tags go with them), platform manifests without (see
    /// [`GarPlane`]'s orphans). No call addresses the package itself.
    async fn delete_manifests(
        &self,
        repository: &str,
        digests: &[Digest],
        why: Deletion,
    ) -> Result<()> {
        let (id, package) = self.parse_repository(repository)?;
        if why == Deletion::Child {
            return self.delete_orphans(repository, id, package, digests).await;
        }
        // No batch call: one `versions.delete` (a polled operation) per digest, a few at once.
        let deletions = digests.iter().cloned().map(|d| async move {
            match self
                .api
                .delete_version(id, package, &d, true, &format!("{repository}@{d}"))
                .await
            {
                Err(e) if why == Deletion::Image || !matches!(e.kind(), Kind::NotFound(_)) => {
                    Err(Error::from(e))
                }
                _ => Ok(()),
            }
        });
        let done: Vec<Result<()>> = futures::stream::iter(deletions)
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        done.into_iter().collect()
    }

    /// `tags.delete`: the tag goes, the version and its other tags stay.
    async fn remove_tag(&self, repository: &str, tag: &str) -> Result<()> {
        let (id, package) = self.parse_repository(repository)?;
        self.api
            .delete_tag(id, package, tag, &format!("{repository}:{tag}"))
            .await
            .map_err(Error::from)
    }
}
