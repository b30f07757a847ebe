//! [`Mirror`]: the façade a deployer calls before Kubernetes deploys.
//!
//! `mirror(service, source)` returns a [`Deployment`] whose `pull_reference` is pinned by digest
//! and lives in the cluster's mirror registry:
//!
//! 1. The strategy names the target repository and tag; the repository is ensured once per
//!    `Mirror` (cached).
//! 2. Present at the target → skip, with manifest HEADs only. With [`TagPolicy::Verify`] (the
//!    default) the source tag is HEADed too: a different digest means the tag was re-pushed
//!    (a *mutable tag*), so the image is mirrored again with a warning; an unreachable source
//!    returns the mirrored copy with a warning, because surviving source outages is why we
//!    mirror. [`TagPolicy::Trust`] never contacts the source when the tag is present.
//! 3. Absent → copy. Blobs already in another repository of the cluster holding the same image
//!    are mounted, so deploying one image for a second service uploads nothing. On registries
//!    that cannot tell push times, a bookkeeping tag is written first (see [`crate::registry`]).
//! 4. Service mode → evict the service's other images, except the `keep_previous` newest, the
//!    caller's in-use set, and images pushed within the grace period (another deployer may have
//!    just pushed them). Eviction failures are warnings: the deployment itself succeeded.
//!
//! ```no_run
//! # async fn demo() -> mirror_core::Result<()> {
//! use std::sync::Arc;
//! use mirror_core::{LayoutRegistry, Mirror, Source};
//! let mirror = Mirror::builder(Arc::new(LayoutRegistry::new("/var/mirror")), "prod-eu").build()?;
//! let d = mirror.mirror("api", &Source::parse("oci:/tmp/src:v1")?).await?;
//! println!("deploy {}", d.pull_reference);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde::Serialize;

use crate::copy::{copy, CopyOptions, CopyReport};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::eviction::{plan_retention, plan_service_eviction, EvictionPlan, ImageRecord};
use crate::reference::Reference;
use crate::registry::{image_size, pushed_tag, Registry};
use crate::store::http::credentials::{Credentials, DockerConfig};
use crate::store::http::RegistryClient;
use crate::store::layout::{parse_oci_location, LayoutStore};
use crate::store::ImageStore;
use crate::strategy::{MirrorStrategy, ServiceStrategy, SourceId};

/// What to do when the target tag is already mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagPolicy {
    /// HEAD the source; mirror again if the tag now names another digest (the default).
    #[default]
    Verify,
    /// Never contact the source when the tag is present.
    Trust,
}

/// An image to mirror: a registry reference or an OCI layout (`oci:PATH[:tag]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An image in a registry.
    Registry(Reference),
    /// An image in an OCI layout directory.
    Layout {
        /// The layout directory.
        path: PathBuf,
        /// The tag (default `latest`).
        tag: String,
    },
}

impl Source {
    /// Parses `oci:PATH[:tag]` or an image reference (normalised as Docker does).
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("oci:") {
            let (path, tag) = parse_oci_location(s)?;
            return Ok(Source::Layout {
                path,
                tag: tag.unwrap_or_else(|| "latest".into()),
            });
        }
        let r = Reference::parse(s)?;
        // A registry host named `oci` would print as an `oci:` layout location.
        if r.registry() == "oci" || r.registry().starts_with("oci:") {
            return Err(Error::InvalidReference {
                input: s.to_string(),
                reason: "a registry host named \"oci\" reads as an OCI layout location; \
                         write layouts as oci:PATH (lowercase)"
                    .into(),
            });
        }
        Ok(Source::Registry(r))
    }

    /// The identity strategies name targets by.
    pub fn id(&self) -> SourceId {
        match self {
            Source::Registry(r) => SourceId {
                registry: r.registry().to_string(),
                repository: r.repository().to_string(),
                tag: r.tag().map(str::to_string),
                digest: r.digest().cloned(),
            },
            Source::Layout { path, tag } => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_lowercase())
                    .unwrap_or_else(|| "layout".into());
                SourceId {
                    registry: "oci".into(),
                    repository: name,
                    tag: Some(tag.clone()),
                    digest: None,
                }
            }
        }
    }

    /// What to ask the source store for (digest when pinned, else tag).
    fn reference(&self) -> String {
        match self {
            Source::Registry(r) => r.manifest_reference(),
            Source::Layout { tag, .. } => tag.clone(),
        }
    }

    fn pinned(&self) -> Option<&Digest> {
        match self {
            Source::Registry(r) => r.digest(),
            Source::Layout { .. } => None,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Registry(r) => write!(f, "{r}"),
            Source::Layout { path, tag } => write!(f, "oci:{}:{tag}", path.display()),
        }
    }
}

/// Opens source stores: one HTTP client per registry host (credentials from code or the docker
/// `config.json`), layouts by path.
#[derive(Debug, Default)]
pub struct Sources {
    credentials: HashMap<String, Credentials>,
    plain_http: HashMap<String, bool>,
    clients: Mutex<HashMap<String, RegistryClient>>,
}

impl Sources {
    /// Sources with credentials from the docker config.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `credentials` for `registry` instead of the docker config.
    pub fn with_credentials(mut self, registry: &str, credentials: Credentials) -> Self {
        self.credentials.insert(registry.to_string(), credentials);
        self
    }

    /// Forces plain HTTP (`true`) or HTTPS for `registry`.
    pub fn with_plain_http(mut self, registry: &str, plain: bool) -> Self {
        self.plain_http.insert(registry.to_string(), plain);
        self
    }

    /// Opens the store holding `source`.
    pub fn open(&self, source: &Source) -> Result<Arc<dyn ImageStore>> {
        match source {
            Source::Layout { path, .. } => Ok(Arc::new(LayoutStore::open(path)?)),
            Source::Registry(r) => {
                let host = r.registry();
                let client = {
                    let mut clients = self
                        .clients
                        .lock()
                        .map_err(|_| Error::Config("source client cache poisoned".into()))?;
                    match clients.get(host) {
                        Some(c) => c.clone(),
                        None => {
                            let creds = match self.credentials.get(host) {
                                Some(c) => c.clone(),
                                None => DockerConfig::load_default()?.credentials_for(host)?,
                            };
                            let mut b = RegistryClient::builder(host).credentials(creds);
                            if let Some(p) = self.plain_http.get(host) {
                                b = b.plain_http(*p);
                            }
                            let c = b.build()?;
                            clients.insert(host.to_string(), c.clone());
                            c
                        }
                    }
                };
                Ok(Arc::new(client.repository(r.repository())?))
            }
        }
    }
}

/// What `mirror` did with the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Already mirrored: nothing copied.
    Skipped,
    /// Copied (first time).
    Copied,
    /// Copied again because the source tag now names another digest.
    Recopied,
    /// Built from source by [`Mirror::build`](crate::Mirror::build) (blob counts cover the
    /// mount from the staging repository, not the builder's own upload).
    Built,
}

/// The result of mirroring one image for one service.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// The service.
    pub service: String,
    /// The source as given.
    pub source: String,
    /// The digest-pinned reference Kubernetes should pull (`host/repo@sha256:…`).
    pub pull_reference: String,
    /// The target repository.
    pub repository: String,
    /// The target tag.
    pub tag: String,
    /// The image digest.
    pub digest: Digest,
    /// What was done.
    pub action: Action,
    /// Blobs mounted from other repositories.
    pub blobs_mounted: usize,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Images deleted by eviction.
    pub evicted: Vec<Digest>,
    /// Things a person should know (mutable tag, source unreachable, eviction failure).
    pub warnings: Vec<String>,
}

/// The result of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// The repositories swept and their plans.
    pub plans: Vec<EvictionPlan>,
    /// Images deleted (empty on a dry run).
    pub deleted: Vec<Digest>,
    /// True when nothing was deleted on purpose.
    pub dry_run: bool,
    /// Deletions that failed.
    pub warnings: Vec<String>,
}

/// One repository of the inventory.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryInventory {
    /// The repository name.
    pub repository: String,
    /// Its images, newest first.
    pub images: Vec<ImageRecord>,
}

/// What the mirror holds for a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The registry.
    pub registry: String,
    /// The cluster.
    pub cluster: String,
    /// Repositories with their images.
    pub repositories: Vec<RepositoryInventory>,
}

/// Builds a [`Mirror`].
#[derive(Debug)]
pub struct MirrorBuilder {
    registry: Arc<dyn Registry>,
    cluster: String,
    strategy: Arc<dyn MirrorStrategy>,
    tag_policy: TagPolicy,
    grace: Duration,
    copy: CopyOptions,
    sources: Arc<Sources>,
}

impl MirrorBuilder {
    /// The mirroring strategy (default: Service mode keeping 1 previous image).
    pub fn strategy(mut self, s: Arc<dyn MirrorStrategy>) -> Self {
        self.strategy = s;
        self
    }

    /// The tag policy (default [`TagPolicy::Verify`]).
    pub fn tag_policy(mut self, p: TagPolicy) -> Self {
        self.tag_policy = p;
        self
    }

    /// Images pushed less than this ago are never evicted (default 10 minutes): another
    /// deployer may have just pushed them. Zero turns the protection off (one deployer only).
    pub fn eviction_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Copy options (concurrency, platforms, progress events).
    pub fn copy_options(mut self, o: CopyOptions) -> Self {
        self.copy = o;
        self
    }

    /// How sources are opened (credentials per registry).
    pub fn sources(mut self, s: Sources) -> Self {
        self.sources = Arc::new(s);
        self
    }

    /// Validates the cluster id and builds.
    pub fn build(self) -> Result<Mirror> {
        crate::registry::id_component("cluster", &self.cluster, 48)?;
        Ok(Mirror {
            registry: self.registry,
            cluster: self.cluster,
            strategy: self.strategy,
            tag_policy: self.tag_policy,
            grace: self.grace,
            copy: self.copy,
            sources: self.sources,
            ensured: Mutex::new(HashSet::new()),
            inflight: Mutex::new(HashMap::new()),
            locations: Mutex::new(HashMap::new()),
        })
    }
}

/// The façade a deployer calls: mirror, sweep, inventory.
#[derive(Debug)]
pub struct Mirror {
    pub(crate) registry: Arc<dyn Registry>,
    pub(crate) cluster: String,
    pub(crate) strategy: Arc<dyn MirrorStrategy>,
    pub(crate) tag_policy: TagPolicy,
    pub(crate) grace: Duration,
    pub(crate) copy: CopyOptions,
    pub(crate) sources: Arc<Sources>,
    pub(crate) ensured: Mutex<HashSet<String>>,
    /// One lock per source image being copied: concurrent calls for the same image wait for
    /// the first copy and then skip or mount, so each blob crosses the wire once.
    pub(crate) inflight: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Repositories this `Mirror` put each image into: mount sources found without listing
    /// the registry. A stale entry only costs a declined mount.
    pub(crate) locations: Mutex<HashMap<Digest, Vec<String>>>,
}

/// Default eviction grace period.
pub const DEFAULT_EVICTION_GRACE: Duration = Duration::from_secs(600);

impl Mirror {
    /// A builder for `cluster` on `registry`.
    pub fn builder(registry: Arc<dyn Registry>, cluster: &str) -> MirrorBuilder {
        MirrorBuilder {
            registry,
            cluster: cluster.to_string(),
            strategy: Arc::new(ServiceStrategy::default()),
            tag_policy: TagPolicy::default(),
            grace: DEFAULT_EVICTION_GRACE,
            copy: CopyOptions::default(),
            sources: Arc::new(Sources::new()),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.registry
    }

    /// The cluster id.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Mirrors `source` for `service` with an empty in-use set.
    pub async fn mirror(&self, service: &str, source: &Source) -> Result<Deployment> {
        self.mirror_with(service, source, &HashSet::new()).await
    }

    /// Mirrors `source` for `service`; eviction keeps every digest in `in_use`.
    pub async fn mirror_with(
        &self,
        service: &str,
        source: &Source,
        in_use: &HashSet<Digest>,
    ) -> Result<Deployment> {
        let target = self.strategy.target(&self.cluster, service, &source.id())?;
        let repository = self.registry.repository_name(&target.scope)?;
        self.ensure(&repository).await?;
        let dst = self.registry.store(&repository).await?;
        let mut warnings = Vec::new();
        let src_ref = source.reference();

        let existing = dst.head_manifest(&target.tag).await?;
        let mut action = Action::Copied;
        let mut src_store: Option<Arc<dyn ImageStore>> = None;
        if let Some(head) = &existing {
            let verdict = match (source.pinned(), self.tag_policy) {
                (Some(d), _) => Some(d == &head.digest),
                (None, TagPolicy::Trust) => Some(true),
                (None, TagPolicy::Verify) => {
                    let checked = match self.sources.open(source) {
                        Ok(s) => {
                            let r = s.head_manifest(&src_ref).await;
                            src_store = Some(s);
                            r
                        }
                        Err(e) => Err(e),
                    };
                    match checked {
                        Ok(Some(h)) => Some(h.digest == head.digest),
                        Ok(None) => {
                            warnings.push(format!(
                                "source {source} no longer exists; serving the mirrored copy {}",
                                head.digest
                            ));
                            Some(true)
                        }
                        Err(e) => {
                            warnings.push(format!(
                                "source {source} unreachable ({e}); serving the mirrored copy {}",
                                head.digest
                            ));
                            Some(true)
                        }
                    }
                }
            };
            if verdict == Some(true) {
                return Ok(Deployment {
                    service: service.to_string(),
                    source: source.to_string(),
                    pull_reference: self.registry.pull_reference(&repository, &head.digest),
                    repository,
                    tag: target.tag,
                    digest: head.digest.clone(),
                    action: Action::Skipped,
                    blobs_mounted: 0,
                    blobs_uploaded: 0,
                    bytes_uploaded: 0,
                    evicted: Vec::new(),
                    warnings,
                });
            }
            warnings.push(format!(
                "mutable tag: {source} now names another image than the mirrored {}; mirroring it again",
                head.digest
            ));
            action = Action::Recopied;
        }

        let src = match src_store {
            Some(s) => s,
            None => self.sources.open(source)?,
        };
        let report = self
            .copy_into(
                src.as_ref(),
                &src_ref,
                dst.as_ref(),
                &repository,
                &target.tag,
            )
            .await?;
        let digest = report.digest.clone();
        if report.already_present && action == Action::Copied {
            // Another call copied it while this one waited for it.
            action = Action::Skipped;
        }

        let mut evicted = Vec::new();
        if self.strategy.evict_after_deploy() {
            match self.evict(&repository, &digest, in_use).await {
                Ok((gone, mut w)) => {
                    evicted = gone;
                    warnings.append(&mut w);
                }
                Err(e) => warnings.push(format!("eviction in {repository} failed: {e}")),
            }
        }
        Ok(Deployment {
            service: service.to_string(),
            source: source.to_string(),
            pull_reference: self.registry.pull_reference(&repository, &digest),
            repository,
            tag: target.tag,
            digest,
            action,
            blobs_mounted: report.blobs_mounted,
            blobs_uploaded: report.blobs_uploaded,
            bytes_uploaded: report.bytes_uploaded,
            evicted,
            warnings,
        })
    }

    pub(crate) async fn ensure(&self, repository: &str) -> Result<()> {
        let known = self
            .ensured
            .lock()
            .map(|s| s.contains(repository))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        self.registry
            .ensure_repository(repository, &self.strategy.settings())
            .await?;
        if let Ok(mut s) = self.ensured.lock() {
            s.insert(repository.to_string());
        }
        Ok(())
    }

    /// Copies into the target: bookkeeping tag first (where the registry needs one), then the
    /// real tag, mounting from other repositories of the cluster that hold the image.
    pub(crate) async fn copy_into(
        &self,
        src: &dyn ImageStore,
        src_ref: &str,
        dst: &dyn ImageStore,
        repository: &str,
        tag: &str,
    ) -> Result<CopyReport> {
        let mut options = self.copy.clone();
        // One HEAD of the source gives the digest for the single flight, the mount sources
        // and the bookkeeping tag; a failed HEAD leaves the error to the copy itself.
        let source_digest = src
            .head_manifest(src_ref)
            .await
            .ok()
            .flatten()
            .map(|h| h.digest);
        let mut _flight: Option<tokio::sync::OwnedMutexGuard<()>> = None;
        if let Some(digest) = &source_digest {
            _flight = Some(self.single_flight(digest).await);
            options.mount_from = self.repositories_holding(repository, digest).await;
        }
        let first_ref = if self.registry.records_push_time() {
            tag.to_string()
        } else if !options.platforms.is_empty() {
            // A filtered copy changes the digest: tag first, bookkeeping after.
            let r = copy(src, src_ref, dst, tag, &options).await?;
            let m = dst.get_manifest(&r.digest.to_string()).await?;
            dst.put_manifest(&pushed_tag(SystemTime::now(), &r.digest), &m)
                .await?;
            self.remember(&r.digest, repository);
            return Ok(r);
        } else {
            // Copy by a bookkeeping tag named after the source digest, then tag.
            let digest = match source_digest {
                Some(d) => d,
                None => {
                    crate::store::get_verified_manifest(src, src_ref)
                        .await?
                        .digest
                }
            };
            pushed_tag(SystemTime::now(), &digest)
        };
        let report = copy(src, src_ref, dst, &first_ref, &options).await?;
        if first_ref != tag {
            let m = dst.get_manifest(&report.digest.to_string()).await?;
            dst.put_manifest(tag, &m).await?;
        }
        self.remember(&report.digest, repository);
        Ok(report)
    }

    /// Waits until no other call of this `Mirror` copies the image `digest`, and holds the
    /// image until the returned guard is dropped.
    async fn single_flight(&self, digest: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = match self.inflight.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Forget locks nobody holds or waits for, so the map stays small.
            map.retain(|_, l| Arc::strong_count(l) > 1);
            map.entry(digest.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Records that `repository` holds the image `digest`.
    pub(crate) fn remember(&self, digest: &Digest, repository: &str) {
        if let Ok(mut m) = self.locations.lock() {
            let repos = m.entry(digest.clone()).or_default();
            if !repos.iter().any(|r| r == repository) {
                repos.push(repository.to_string());
            }
        }
    }

    /// Other repositories of this cluster that hold `digest` (mount sources): those this
    /// `Mirror` copied it into, else those the registry lists for the cluster.
    pub(crate) async fn repositories_holding(&self, except: &str, digest: &Digest) -> Vec<String> {
        let known: Vec<String> = self
            .locations
            .lock()
            .ok()
            .and_then(|m| m.get(digest).cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r != except)
            .collect();
        if !known.is_empty() {
            return known;
        }
        let repos = match self.registry.list_repositories(&self.cluster).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list repositories; no mount sources");
                return Vec::new();
            }
        };
        let reference = digest.to_string();
        futures::stream::iter(repos.into_iter().filter(|r| r != except).take(64).map(|r| {
            let reference = reference.clone();
            async move {
                let store = self.registry.store(&r).await.ok()?;
                match store.head_manifest(&reference).await {
                    Ok(Some(_)) => Some(r),
                    _ => None,
                }
            }
        }))
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await
    }

    pub(crate) async fn evict(
        &self,
        repository: &str,
        deployed: &Digest,
        in_use: &HashSet<Digest>,
    ) -> Result<(Vec<Digest>, Vec<String>)> {
        let images = self.registry.list_images(repository).await?;
        let plan = plan_service_eviction(
            repository,
            &images,
            deployed,
            in_use,
            self.strategy.keep_previous(),
            SystemTime::now(),
            self.grace,
        );
        Ok(self.execute(&plan).await)
    }

    pub(crate) async fn execute(&self, plan: &EvictionPlan) -> (Vec<Digest>, Vec<String>) {
        let mut deleted = Vec::new();
        let mut warnings = Vec::new();
        for img in &plan.delete {
            match self
                .registry
                .delete_image(&plan.repository, &img.digest)
                .await
            {
                Ok(()) => deleted.push(img.digest.clone()),
                // Someone else deleted it first: the goal is reached.
                Err(e) if e.is_not_found() => {}
                Err(e) => warnings.push(format!(
                    "could not delete {}@{}: {e}",
                    plan.repository, img.digest
                )),
            }
        }
        (deleted, warnings)
    }

    /// Cluster mode: deletes (or with `dry_run`, only plans) the images of the cluster
    /// repository older than the retention time and not in `in_use`.
    pub async fn sweep(
        &self,
        now: SystemTime,
        in_use: &HashSet<Digest>,
        dry_run: bool,
    ) -> Result<SweepReport> {
        let retention = self.strategy.retention().ok_or_else(|| {
            Error::Config("sweep needs a strategy with a retention time (Cluster mode)".into())
        })?;
        let scope = crate::registry::RepositoryScope::Cluster {
            cluster: self.cluster.clone(),
        };
        let repository = self.registry.repository_name(&scope)?;
        let images = self.registry.list_images(&repository).await?;
        let plan = plan_retention(&repository, &images, in_use, now, retention);
        let (deleted, warnings) = if dry_run {
            (Vec::new(), Vec::new())
        } else {
            self.execute(&plan).await
        };
        Ok(SweepReport {
            plans: vec![plan],
            deleted,
            dry_run,
            warnings,
        })
    }

    /// Every repository of the cluster with its images, tags, sizes and push times.
    pub async fn inventory(&self) -> Result<Inventory> {
        let mut repositories = Vec::new();
        for repository in self.registry.list_repositories(&self.cluster).await? {
            let mut images = self.registry.list_images(&repository).await?;
            let store = self.registry.store(&repository).await?;
            for img in &mut images {
                if img.size.is_none() {
                    img.size = Some(image_size(store.as_ref(), &img.digest).await?);
                }
            }
            images.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.digest.cmp(&b.digest)));
            repositories.push(RepositoryInventory { repository, images });
        }
        Ok(Inventory {
            registry: self.registry.location(),
            cluster: self.cluster.clone(),
            repositories,
        })
    }

    /// Resolves in-use references to digests: digests are taken as they are, tags are looked
    /// up in the mirror registry when the reference points at it (errors otherwise).
    pub async fn resolve_in_use(&self, refs: &[String]) -> Result<HashSet<Digest>> {
        let mut out = HashSet::new();
        for r in refs {
            if let Some((_, d)) = r.rsplit_once('@') {
                out.insert(Digest::parse(d)?);
                continue;
            }
            if let Ok(d) = Digest::parse(r) {
                out.insert(d);
                continue;
            }
            let reference = Reference::parse(r)?;
            let store = self.registry.store(reference.repository()).await?;
            let tag = reference.manifest_reference();
            match store.head_manifest(&tag).await? {
                Some(h) => {
                    out.insert(h.digest);
                }
                None => return Err(Error::manifest_not_found(r.clone())),
            }
        }
        Ok(out)
    }
}
