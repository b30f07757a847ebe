//! Google Artifact Registry as a cluster's mirror registry.
//!
//! [`ArtifactRegistry`] implements the core [`Registry`] trait: every repository scope gets a
//! DOCKER-format Artifact Registry repository, created through the REST API (the long-running
//! operation polled to completion) and labelled `managed-by`, `mirror-scope`, `mirror-cluster`,
//! `cluster` and `service`; retention (Cluster mode) and keep counts (Service mode) become
//! cleanup policies, updated with `PATCH` and an update mask when they change; images are
//! listed with `dockerImages.list` (upload times included, so no bookkeeping tags) and deleted
//! one package version at a time, by digest (`force=true`, which removes the version's tags) —
//! never a whole package. The data plane is the core HTTP client with the OAuth access token
//! as the password of `oauth2accesstoken`, refreshed ahead of its expiry, and always the
//! monolithic streaming upload: Artifact Registry does not accept chunked uploads. Builds push
//! to the build repository's `image` package and keep their cache in its
//! `cache-<dockerfile id>` package.
//!
//! # Layout
//!
//! - [`builder`]: [`ArtifactRegistryBuilder`], its settings and their `MIRROR_GAR_*`
//!   variables;
//! - [`client`]: the REST calls ([`client::ArApi`]);
//! - [`credential`]: access tokens ([`GcpTokenSource`]s for the kit's cache,
//!   [`GcpCredentials`]);
//! - [`naming`]: Artifact Registry's naming rules and this crate's repository layout;
//! - [`cleanup`]: cleanup policies for retention and keep counts;
//! - [`error`]: this crate's classification of Google statuses (the kit's
//!   [`ControlPlaneError`](mirror_core::provider::ControlPlaneError) carries them);
//! - [`factory`](mod@factory): the [`RegistryFactory`](mirror_core::registry::RegistryFactory) for
//!   `mirror_core::registry::open` (`gar://…`, `*-docker.pkg.dev/…`).
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
//! // europe-west1-docker.pkg.dev/my-project/mirror-prod-eu-svc-api-…/image@sha256:…
//! println!("deploy {}", d.pull_reference);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod builder;
pub mod cleanup;
pub mod client;
pub mod credential;
pub mod error;
pub mod factory;
pub mod naming;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use mirror_core::image::{fold_referrers, referrers, without_children, ImageRecord};
use mirror_core::media::{DOCKER_MANIFEST_LIST, OCI_INDEX};
use mirror_core::provider::AsCredentials as _;
use mirror_core::registry::{
    cache_scope, AnchorCapability, BuildCapability, BuilderCredentials, Capabilities, Repository,
};
use mirror_core::retry::Poll;
use mirror_core::store::http::RegistryClient;
use mirror_core::{
    Digest, Error, ImageStore, Registry, RepositoryScope, RepositorySettings, Result,
};

pub use builder::{ArtifactRegistryBuilder, GarConfigKey};
pub use credential::{
    AccessToken, DefaultChain, GcpCredentials, GcpTokenSource, ServiceAccountKey, StaticToken,
};
pub use factory::{factory, GarFactory};
pub use source::GarSources;

use client::{ArApi, Created, DockerImage};
use error::{kind, Kind};
use naming::IMAGE;

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "gcp";

/// The value of the `managed-by` label put on repositories this crate creates.
pub const MANAGED_BY: &str = "mirror-core";

/// How long `ensure_repository` waits for a repository created by someone else (a concurrent
/// deployer whose creation is still running) to become visible.
pub const CREATE_SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// An Artifact Registry location of one project as a cluster's mirror registry. Build it with
/// [`ArtifactRegistryBuilder`]. Cheap to clone; clones share the API client, the data-plane
/// connection pool and the token cache.
#[derive(Clone)]
pub struct ArtifactRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    api: ArApi,
    data: RegistryClient,
    host: String,
    project: String,
    location: String,
    prefix: String,
    cleanup_policies: bool,
    cleanup_dry_run: bool,
    credentials: Arc<GcpCredentials>,
}

impl fmt::Debug for ArtifactRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArtifactRegistry")
            .field("host", &self.inner.host)
            .field("project", &self.inner.project)
            .field("location", &self.inner.location)
            .field("prefix", &self.inner.prefix)
            .field("cleanup_policies", &self.inner.cleanup_policies)
            .field("cleanup_dry_run", &self.inner.cleanup_dry_run)
            .finish()
    }
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The scope an Artifact Registry repository is labelled with: a build cache is a package
/// of its build repository, so it is labelled as the build.
fn labelled_scope(scope: &RepositoryScope) -> RepositoryScope {
    match scope {
        RepositoryScope::BuildCache {
            cluster, service, ..
        } => RepositoryScope::Build {
            cluster: cluster.clone(),
            service: service.clone(),
        },
        other => other.clone(),
    }
}

impl ArtifactRegistry {
    /// A builder.
    pub fn builder() -> ArtifactRegistryBuilder {
        ArtifactRegistryBuilder::new()
    }

    /// The data-plane host (`<location>-docker.pkg.dev` or the override).
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The project id.
    pub fn project(&self) -> &str {
        &self.inner.project
    }

    /// The location (`europe-west1`, `us`).
    pub fn location_id(&self) -> &str {
        &self.inner.location
    }

    /// The repository id prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The REST API client.
    pub fn api(&self) -> &ArApi {
        &self.inner.api
    }

    /// The access-token cache (its `fetches()` counts tokens).
    pub fn credentials(&self) -> &Arc<GcpCredentials> {
        &self.inner.credentials
    }

    /// The data-plane HTTP client.
    pub fn data_plane(&self) -> &RegistryClient {
        &self.inner.data
    }

    /// The Artifact Registry repository id and package of a repository name of this registry.
    pub fn parse_repository<'a>(&self, name: &'a str) -> Result<(&'a str, &'a str)> {
        naming::parse_name(&self.inner.project, name)
    }

    /// The labels a repository gets: `managed-by`, and when its scope is known
    /// `mirror-scope`, `mirror-cluster` (a hash of the exact cluster id), `cluster` and
    /// `service` (readable forms).
    pub fn labels(&self, scope: Option<&RepositoryScope>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert("managed-by".to_string(), MANAGED_BY.to_string());
        if let Some(scope) = scope.map(labelled_scope) {
            labels.insert("mirror-scope".into(), scope.kind().into());
            labels.insert(
                "mirror-cluster".into(),
                naming::cluster_hash(scope.cluster()),
            );
            labels.insert("cluster".into(), naming::label_value(scope.cluster()));
            if let Some(service) = scope.service() {
                labels.insert("service".into(), naming::label_value(service));
            }
        }
        labels
    }

    fn description(&self, scope: Option<&RepositoryScope>) -> String {
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

    /// Brings an existing repository's labels, cleanup policies and dry-run flag to what they
    /// should be, with one `PATCH` naming only the fields that differ (none: no call).
    async fn reconcile(
        &self,
        id: &str,
        labels: &BTreeMap<String, String>,
        policies: Option<&BTreeMap<String, serde_json::Value>>,
    ) -> error::Result<()> {
        let api = &self.inner.api;
        let current = api.get_repository(id).await?.ok_or_else(|| {
            error::api(
                api.origin(),
                "repositories.get",
                id,
                404,
                "NOT_FOUND",
                "the repository exists (ALREADY_EXISTS) but is not visible yet",
                None,
            )
        })?;
        if !current.format.is_empty() && current.format != "DOCKER" {
            return Err(api.origin().config(format!(
                "repository {id} exists with format {}, not DOCKER",
                current.format
            )));
        }
        let mut mask = Vec::new();
        let mut patch = client::Repository::default();
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
            if current.cleanup_policy_dry_run != self.inner.cleanup_dry_run {
                mask.push("cleanupPolicyDryRun");
                patch.cleanup_policy_dry_run = self.inner.cleanup_dry_run;
            }
        }
        if mask.is_empty() {
            return Ok(());
        }
        tracing::info!(repository = id, fields = ?mask, "updating Artifact Registry repository");
        api.patch_repository(id, &mask, &patch).await.map(|_| ())
    }

    /// Digests of the child manifests of the indexes among `digests`, read through the data
    /// plane (indexes deleted meanwhile have none).
    async fn children_of(&self, name: &str, digests: &[&Digest]) -> Result<HashSet<Digest>> {
        let mut children = HashSet::new();
        if digests.is_empty() {
            return Ok(children);
        }
        let store = self.inner.data.repository(name)?;
        for d in digests {
            let m = match store.get_manifest(&d.to_string()).await {
                Ok(m) => m,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            let location = format!("{}/{name}@{d}", self.inner.host);
            if let Ok(found) = mirror_core::image::children(&m, &location) {
                children.extend(found);
            }
        }
        Ok(children)
    }

    /// The images of one package of a repository, as listed, with their digests.
    async fn package_images(
        &self,
        id: &str,
        package: &str,
    ) -> Result<Option<Vec<(Digest, DockerImage)>>> {
        let images = match self.inner.api.docker_images(id).await {
            Ok(v) => v,
            Err(e) if kind(&e) == Kind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let project_path = naming::project_path(&self.inner.project);
        let mut out = Vec::new();
        for img in images {
            let Some((pkg, digest)) = img.package_and_digest(&project_path, id) else {
                return Err(self
                    .inner
                    .api
                    .origin()
                    .protocol(
                        "dockerImages.list",
                        id,
                        format!(
                            "an image whose uri {:?} and name {:?} do not name a package and digest",
                            img.uri, img.name
                        ),
                    )
                    .into());
            };
            if pkg == package {
                out.push((Digest::parse(&digest)?, img));
            }
        }
        Ok(Some(out))
    }

    /// After an index was deleted: deletes those of its platform manifests that are untagged
    /// versions of the same package and not used by another index of it.
    async fn delete_orphans(
        &self,
        name: &str,
        id: &str,
        package: &str,
        children: BTreeSet<Digest>,
    ) -> Result<()> {
        let Some(listed) = self.package_images(id, package).await? else {
            return Ok(());
        };
        let other_indexes: Vec<&Digest> = listed
            .iter()
            .filter(|(_, img)| img.media_type.as_deref().is_none_or(is_index))
            .map(|(d, _)| d)
            .collect();
        let still_used = self.children_of(name, &other_indexes).await?;
        let by_digest: HashMap<&Digest, &DockerImage> =
            listed.iter().map(|(d, img)| (d, img)).collect();
        for child in children {
            let orphan = by_digest.get(&child).is_some_and(|img| img.tags.is_empty())
                && !still_used.contains(&child);
            if !orphan {
                continue;
            }
            let target = format!("{name}@{child}");
            // Without force: should the child have been tagged meanwhile, it is kept.
            match self
                .inner
                .api
                .delete_version(id, package, &child, false, &target)
                .await
            {
                Ok(()) => {}
                Err(e) if matches!(kind(&e), Kind::NotFound | Kind::FailedPrecondition) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Registry for ArtifactRegistry {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn location(&self) -> String {
        self.inner.host.clone()
    }

    /// Artifact Registry records `uploadTime`; retention is native when cleanup policies
    /// are on.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_push_times(true)
            .with_native_retention(self.inner.cleanup_policies)
    }

    /// `<project path>/<repository id>/image`, the repository id following
    /// [`naming::repository_id`].
    fn repository(&self, scope: &RepositoryScope) -> Result<Repository> {
        let id = naming::repository_id(&self.inner.prefix, scope)?;
        Ok(Repository::new(
            naming::repository_name(&self.inner.project, &id, IMAGE)?,
            scope.clone(),
        ))
    }

    /// `repositories.create` (the operation polled to completion; `ALREADY_EXISTS` is
    /// success) with the labels and, for the `image` package, the cleanup policies of
    /// `settings`. An existing repository is read and patched where its labels, the policies
    /// this crate owns or the dry-run flag differ. For a build-cache package only the
    /// repository's existence is ensured.
    async fn ensure_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<()> {
        let (id, package) = self.parse_repository(repository.name())?;
        let cache = matches!(repository.scope(), Some(RepositoryScope::BuildCache { .. }));
        let manage = package == IMAGE && !cache && self.inner.cleanup_policies;
        let policies = manage.then(|| cleanup::desired(settings));
        let labels = self.labels(repository.scope());
        let body = client::Repository {
            name: String::new(),
            format: "DOCKER".into(),
            mode: "STANDARD_REPOSITORY".into(),
            description: self.description(repository.scope()),
            labels: labels.clone(),
            cleanup_policies: policies.clone().unwrap_or_default(),
            cleanup_policy_dry_run: manage && self.inner.cleanup_dry_run,
        };
        if let Created::Created(_) = self.inner.api.create_repository(id, &body).await? {
            tracing::info!(repository = id, registry = %self.inner.host, "created Artifact Registry repository");
            return Ok(());
        }
        // Created by someone else a moment ago: it may not be visible yet.
        Poll::until(CREATE_SETTLE_TIMEOUT)
            .retry_while(
                || self.reconcile(id, &labels, policies.as_ref()),
                |e| {
                    let pending = kind(e) == Kind::NotFound;
                    if pending {
                        tracing::debug!(repository = id, "repository not visible yet; retrying");
                    }
                    pending
                },
            )
            .await
            .map_err(Error::from)
    }

    async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>> {
        self.parse_repository(repository.name())?;
        Ok(Arc::new(self.inner.data.repository(repository.name())?))
    }

    /// `repositories.list` (every page), keeping the repositories labelled `managed-by =
    /// mirror-core` and `mirror-cluster = <hash of the cluster id>` whose id starts with the
    /// prefix.
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>> {
        if cluster.trim().is_empty() {
            return Err(Error::InvalidName {
                name: cluster.to_string(),
                reason: "the cluster id is empty".into(),
            });
        }
        let hash = naming::cluster_hash(cluster);
        let prefix = format!("{}-", self.inner.prefix);
        let mut out = Vec::new();
        for repo in self.inner.api.list_repositories().await? {
            let ours = repo.labels.get("managed-by").map(String::as_str) == Some(MANAGED_BY)
                && repo.labels.get("mirror-cluster") == Some(&hash)
                && repo.id().starts_with(&prefix);
            if ours {
                if let Ok(name) = naming::repository_name(&self.inner.project, repo.id(), IMAGE) {
                    out.push(name);
                }
            }
        }
        out.sort();
        Ok(out.into_iter().map(Repository::listed).collect())
    }

    /// `dockerImages.list` (every page), keeping the repository's package. The platform
    /// manifests of a multi-platform image and the referrers of an image (signatures, SBOMs
    /// pushed by digest), which Artifact Registry lists as untagged images of their own, are
    /// read through the data plane and folded into the image they belong to.
    async fn list_images(&self, repository: &Repository) -> Result<Vec<ImageRecord>> {
        let repository = repository.name();
        let (id, package) = self.parse_repository(repository)?;
        let Some(images) = self.package_images(id, package).await? else {
            return Ok(Vec::new());
        };
        let indexes: Vec<&Digest> = images
            .iter()
            .filter(|(_, img)| img.media_type.as_deref().is_none_or(is_index))
            .map(|(d, _)| d)
            .collect();
        let children = self.children_of(repository, &indexes).await?;
        let mut out = Vec::new();
        for (digest, img) in images {
            let pushed_at: Option<SystemTime> = img
                .upload_time
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
            if pushed_at.is_none() {
                tracing::warn!(repository, %digest, upload_time = ?img.upload_time, "no readable upload time");
            }
            let mut rec = ImageRecord::new(repository, digest);
            rec.tags = img.tags;
            rec.tags.sort();
            rec.pushed_at = pushed_at;
            rec.size = img.image_size_bytes.and_then(|s| s.parse().ok());
            out.push(rec);
        }
        let out = without_children(out, &children);
        let store = self.inner.data.repository(repository)?;
        let mut out = fold_referrers(&store, out).await?;
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }

    async fn delete_image(&self, repository: &Repository, digest: &Digest) -> Result<()> {
        let repository = repository.name();
        let (id, package) = self.parse_repository(repository)?;
        let store = self.inner.data.repository(repository)?;
        // What belongs to it, found before anything goes; deleted after the image, so that
        // a failure leaves orphans (swept later), never an unsigned image.
        let belonging = referrers::belonging(&store, digest).await?;
        let children: BTreeSet<Digest> = match store.get_manifest(&digest.to_string()).await {
            Ok(m) => mirror_core::image::children(
                &m,
                &format!("{}/{repository}@{digest}", self.inner.host),
            )
            .map(|c| c.into_iter().collect())
            .unwrap_or_default(),
            Err(e) if e.is_not_found() => BTreeSet::new(),
            Err(e) => {
                // Not an existence check (the API call below decides whether the image is
                // there): unread platform manifests are left as untagged images, which
                // listings show and eviction removes later.
                tracing::warn!(repository, %digest, error = %e, "cannot read the manifest to find its platform manifests");
                BTreeSet::new()
            }
        };
        let target = format!("{repository}@{digest}");
        self.inner
            .api
            .delete_version(id, package, digest, true, &target)
            .await?;
        if !children.is_empty() {
            self.delete_orphans(repository, id, package, children)
                .await?;
        }
        // Its referrers and referrers indexes, one version each (force: their tags go).
        for d in &belonging.manifests {
            let target = format!("{repository}@{d}");
            match self
                .inner
                .api
                .delete_version(id, package, d, true, &target)
                .await
            {
                Ok(()) => {}
                Err(e) if kind(&e) == Kind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn pull_reference(&self, repository: &Repository, digest: &Digest) -> String {
        format!("{}/{repository}@{digest}", self.inner.host)
    }

    fn anchors(&self) -> Option<&dyn AnchorCapability> {
        self.inner
            .cleanup_policies
            .then_some(self as &dyn AnchorCapability)
    }

    fn builds(&self) -> Option<&dyn BuildCapability> {
        Some(self)
    }
}

#[async_trait]
impl AnchorCapability for ArtifactRegistry {
    /// Deletes the one package version named by the digest, with `force=true` (its tags go
    /// with it), then its referrers and referrers indexes (one version each). For a multi-platform image, its untagged platform manifests are deleted next
    /// (one version each, without force), except those another index of the package still
    /// uses. No call ever addresses the package itself.
    /// `tags.delete`: the tag goes, the version and its other tags stay.
    async fn remove_tag(&self, repository: &Repository, tag: &str, digest: &Digest) -> Result<()> {
        let repository = repository.name();
        let (id, package) = self.parse_repository(repository)?;
        let target = format!("{repository}:{tag}");
        self.inner.api.delete_tag(id, package, tag, &target).await?;
        tracing::debug!(repository, tag, digest = %digest, "removed a tag");
        Ok(())
    }
}

#[async_trait]
impl BuildCapability for ArtifactRegistry {
    fn repository_reference(&self, repository: &Repository) -> Result<String> {
        self.parse_repository(repository.name())?;
        Ok(format!("{}/{repository}", self.inner.host))
    }

    /// The package `cache-<dockerfile id>` of the build repository: beside its `image`
    /// package, so it is never listed, evicted or matched by the cleanup policies (which
    /// are restricted to `image`).
    fn cache_repository(&self, build: &Repository, dockerfile_id: &str) -> Result<Repository> {
        let (id, _) = self.parse_repository(build.name())?;
        Ok(Repository::listed(naming::repository_name(
            &self.inner.project,
            id,
            &naming::cache_package(dockerfile_id)?,
        )?)
        .with_scope(cache_scope(build, dockerfile_id)))
    }

    /// `oauth2accesstoken` and a fresh access token, for the docker host.
    async fn builder_credentials(&self) -> Result<Option<BuilderCredentials>> {
        let token = self.inner.credentials.token().await?;
        Ok(Some(BuilderCredentials {
            host: self.inner.host.clone(),
            credentials: token.as_credentials(),
        }))
    }
}
