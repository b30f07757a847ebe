//! [`CloudRegistry`]: the [`Registry`] of every cloud provider, written once over the small
//! [`ControlPlane`] trait a provider implements.
//!
//! A provider writes what only it knows: its naming rules, the calls that create, list and
//! delete on its control plane, tag removal where it has it, its retention document, and its
//! builder credentials. The kit writes the semantics every provider shares (as `object_store`
//! does with its per-operation client traits): repositories ensured once per process and
//! once at a time, the data-plane store, the listing fold (index children dropped, push-time
//! bookkeeping read, referrers folded into their subjects), the delete order (the image, its
//! platform manifests no other image uses, then its referrers: a failure leaves orphans that
//! the next eviction removes, never an unsigned image), pull references and build caches.
//!
//! ```text
//!  Registry ── CloudRegistry<C> ── C: ControlPlane (naming, create, list, delete, retention)
//!                    └── data plane: the core HTTP client with C's credentials
//! ```

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{
    fold_referrers, parse_pushed_tag, without_children, ImageRecord, ListedStore, Listing,
    ManifestCache, ManifestDeleter,
};
use crate::media::{ParsedManifest, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::registry::{
    cache_scope, AnchorCapability, BuildCapability, BuilderCredentials, Capabilities, Registry,
    Repository, RepositoryScope, RepositorySettings,
};
use crate::store::http::RegistryClient;
use crate::store::ImageStore;
use crate::sync::KeyedFlight;

/// One manifest as a control plane lists it (tagged or not), before the kit folds children,
/// bookkeeping tags and referrers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedImage {
    /// Its digest.
    pub digest: Digest,
    /// Its tags, as the control plane lists them (bookkeeping tags included).
    pub tags: Vec<String>,
    /// When it was pushed, where the control plane records it.
    pub pushed_at: Option<SystemTime>,
    /// Its size, where the control plane tells it.
    pub size: Option<u64>,
    /// Its media type, where the control plane tells it (`None`: read it when it matters).
    pub media_type: Option<String>,
}

impl ListedImage {
    /// A listed manifest with nothing else known.
    pub fn new(digest: Digest) -> Self {
        ListedImage {
            digest,
            tags: Vec::new(),
            pushed_at: None,
            size: None,
            media_type: None,
        }
    }

    /// Whether it may be an index (its media type says so, or is not known).
    fn may_be_index(&self) -> bool {
        self.media_type
            .as_deref()
            .is_none_or(|t| t == OCI_INDEX || t == DOCKER_MANIFEST_LIST)
    }
}

/// Why the kit deletes a manifest: what an answer means depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deletion {
    /// The image asked for: with its tags. Absent is [`Error::NotFound`].
    Image,
    /// A platform manifest of an index just deleted: only when it is untagged and no other
    /// index holds it (a control plane refusing because another index holds it, or one that
    /// is gone, is fine).
    Child,
    /// A referrer or referrers index of the image, with its tags; absent is fine.
    Referrer,
}

impl Deletion {
    /// Whether a per-item failure of this kind is fine for this deletion: a child that is
    /// gone or still used by another index, a referrer that is gone; nothing for an image.
    pub fn tolerates(self, kind: crate::provider::error::Kind) -> bool {
        use crate::provider::error::Kind;
        match self {
            Deletion::Image => false,
            Deletion::Child => matches!(kind, Kind::NotFound(_) | Kind::Conflict),
            Deletion::Referrer => matches!(kind, Kind::NotFound(_)),
        }
    }
}

/// The control plane of a cloud registry: what a provider implements for [`CloudRegistry`].
///
/// # Contract
///
/// - `repository_name` is pure and total (see [`Registry::repository`]);
///   `check_repository` refuses every name `repository_name` could not have made, with
///   [`Error::InvalidName`].
/// - `create_repository` is idempotent ("already exists" is `Ok(false)`), waits until the
///   repository is usable by the calls that follow (eventually consistent APIs), and writes
///   the retention document for `settings` where the provider has one
///   (`retention_document`), replacing one it wrote before and removing it when
///   `settings.retention` is unset. The kit calls it one at a time per repository, and once
///   per process when there is no retention document.
/// - `list_images` lists every manifest of the repository the control plane shows (untagged
///   ones too), `Ok(vec![])` for a repository that does not exist.
/// - `delete_manifests` deletes as [`Deletion`] says; the kit treats [`Error::NotFound`] as
///   done for children and referrers.
/// - `remove_tag` removes one tag and nothing else (registries with anchored retention).
#[async_trait]
pub trait ControlPlane: Send + Sync + fmt::Debug + 'static {
    /// The provider name (`aws`, `gcp`, `scaleway`).
    const PROVIDER: &'static str;

    /// Whether the registry records push times itself (else the library writes bookkeeping
    /// tags).
    const RECORDS_PUSH_TIME: bool = false;

    /// The data-plane client, with this provider's credentials. Its host is the registry's
    /// location and the host of pull references.
    fn data_plane(&self) -> &RegistryClient;

    /// Whether this control plane writes a retention document (a lifecycle policy, cleanup
    /// policies) that keeps anchored images: then retention is native, in-use images are
    /// anchored (`remove_tag` works), and every ensure reconciles the document (others may
    /// have changed it). Without one, a repository ensured once is not ensured again in this
    /// process.
    fn retention_document(&self) -> bool {
        false
    }

    /// The repository name of a scope.
    fn repository_name(&self, scope: &RepositoryScope) -> Result<String>;

    /// Checks that `name` is a repository name of this registry.
    fn check_repository(&self, name: &str) -> Result<()>;

    /// The name of the build cache repository of `build` for one Dockerfile (default: one
    /// level below the build repository, `<build>/cache-<dockerfile id>`).
    fn cache_repository_name(&self, build: &Repository, dockerfile_id: &str) -> Result<String> {
        crate::registry::naming::check_dockerfile_id(dockerfile_id)?;
        let name = format!("{build}/cache-{dockerfile_id}");
        self.check_repository(&name)?;
        Ok(name)
    }

    /// Creates the repository if needed and applies `settings`; `Ok(true)` when it created it.
    async fn create_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<bool>;

    /// The names of the repositories of `cluster`.
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<String>>;

    /// Every manifest of `repository` the control plane lists.
    async fn list_images(&self, repository: &str) -> Result<Vec<ListedImage>>;

    /// Deletes `digests` of `repository` as `why` says (see [`Deletion`]).
    async fn delete_manifests(
        &self,
        repository: &str,
        digests: &[Digest],
        why: Deletion,
    ) -> Result<()>;

    /// Removes one tag (see [`AnchorCapability`]). The default refuses.
    async fn remove_tag(&self, repository: &str, tag: &str) -> Result<()> {
        Err(Error::Refused {
            registry: format!("{}:{}", Self::PROVIDER, self.data_plane().registry()),
            operation: "remove tag".into(),
            location: format!("{repository}:{tag}"),
            code: "unsupported".into(),
            message: "this registry cannot remove a tag alone".into(),
        })
    }

    /// Credentials a builder process pushes with (default: the data plane's, for its host;
    /// none when it is anonymous).
    async fn builder_credentials(&self) -> Result<Option<BuilderCredentials>> {
        let data = self.data_plane();
        let credentials = data.current_credentials().await?;
        let host = data.registry().to_string();
        let anonymous = credentials.is_anonymous();
        Ok((!anonymous).then_some(BuilderCredentials { host, credentials }))
    }
}

/// Work done once per key and process, and one at a time per key: what [`CloudRegistry`]
/// does for repositories, for a provider's own resources too (a namespace several
/// repositories share).
#[derive(Debug, Default)]
pub struct OncePerKey {
    done: Mutex<HashSet<String>>,
    flights: KeyedFlight<String>,
}

impl OncePerKey {
    fn is_done(&self, key: &str) -> bool {
        self.done.lock().map(|s| s.contains(key)).unwrap_or(false)
    }

    /// Runs `work` for `key` unless it succeeded before (with `remember`), never twice at a
    /// time for one key; a failure is not remembered.
    pub async fn run<F, Fut>(&self, key: &str, remember: bool, work: F) -> Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        if remember && self.is_done(key) {
            return Ok(());
        }
        let _flight = self.flights.hold(&key.to_string()).await;
        if remember && self.is_done(key) {
            return Ok(());
        }
        work().await?;
        if let (true, Ok(mut s)) = (remember, self.done.lock()) {
            s.insert(key.to_string());
        }
        Ok(())
    }
}

/// The [`Registry`] of a cloud provider (see the module docs). Cheap to share behind an
/// `Arc`; the provider's control plane is reached with [`CloudRegistry::control_plane`].
pub struct CloudRegistry<C> {
    plane: C,
    /// Repositories ensured by this process, one ensure at a time per repository.
    ensured: OncePerKey,
}

impl<C: ControlPlane> fmt::Debug for CloudRegistry<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudRegistry")
            .field("plane", &self.plane)
            .finish_non_exhaustive()
    }
}

/// The control plane's own methods (a provider's settings, its API client) are reached
/// through the registry.
impl<C> std::ops::Deref for CloudRegistry<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.plane
    }
}

impl<C: ControlPlane> CloudRegistry<C> {
    /// The registry of `plane`.
    pub fn new(plane: C) -> Self {
        CloudRegistry {
            plane,
            ensured: OncePerKey::default(),
        }
    }

    /// The provider's control plane.
    pub fn control_plane(&self) -> &C {
        &self.plane
    }

    /// The data-plane host.
    pub fn host(&self) -> &str {
        self.plane.data_plane().registry()
    }

    /// The records of what the control plane listed: children dropped, push times read,
    /// referrers folded (reading through `store`).
    async fn fold_listed(
        &self,
        name: &str,
        listed: Vec<ListedImage>,
        store: &dyn ImageStore,
    ) -> Result<Vec<ImageRecord>> {
        let children = index_children(store, &listed).await?;
        let records: Vec<ImageRecord> = listed
            .into_iter()
            .map(|l| {
                let mut rec = ImageRecord::new(name, l.digest);
                rec.size = l.size;
                rec.pushed_at = l.pushed_at;
                for tag in l.tags {
                    match parse_pushed_tag(&tag) {
                        Some((at, hex)) if rec.digest.hex().starts_with(&hex) => {
                            rec.pushed_at = Some(rec.pushed_at.map_or(at, |p| p.max(at)));
                        }
                        _ => rec.tags.push(tag),
                    }
                }
                rec.tags.sort();
                rec
            })
            .collect();
        let records = without_children(records, &children);
        let mut out = fold_referrers(store, records).await?;
        out.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(out)
    }
}

/// The untagged manifests among `listed` that an index among `listed` holds (indexes read
/// through `store`, a few at a time; one deleted since the listing holds nothing): the
/// platform manifests a control plane lists as images of their own.
pub async fn index_children(
    store: &dyn ImageStore,
    listed: &[ListedImage],
) -> Result<HashSet<Digest>> {
    use futures::StreamExt;
    // Untagged manifests are the children candidates; only indexes name children.
    let untagged: HashSet<&Digest> = listed
        .iter()
        .filter(|l| l.tags.is_empty())
        .map(|l| &l.digest)
        .collect();
    if untagged.is_empty() {
        return Ok(HashSet::new());
    }
    let indexes: Vec<Digest> = listed
        .iter()
        .filter(|l| l.may_be_index())
        .map(|l| l.digest.clone())
        .collect();
    let reads = indexes.into_iter().map(|d| async move {
        match store.get_manifest(&d.to_string()).await {
            Ok(m) => Ok(
                crate::image::children(&m, &format!("{}@{d}", store.location()))
                    .unwrap_or_default(),
            ),
            // Deleted since the listing: it has no children any more.
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    });
    let found: Vec<Result<Vec<Digest>>> = futures::stream::iter(reads).buffered(8).collect().await;
    let mut children = HashSet::new();
    for f in found {
        children.extend(f?.into_iter().filter(|c| untagged.contains(c)));
    }
    Ok(children)
}

#[async_trait]
impl<C: ControlPlane> Registry for CloudRegistry<C> {
    fn provider(&self) -> &str {
        C::PROVIDER
    }

    fn location(&self) -> String {
        self.host().to_string()
    }

    /// Push times and native retention as the control plane says.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_push_times(C::RECORDS_PUSH_TIME)
            .with_native_retention(self.plane.retention_document())
    }

    fn repository(&self, scope: &RepositoryScope) -> Result<Repository> {
        Ok(Repository::new(
            self.plane.repository_name(scope)?,
            scope.clone(),
        ))
    }

    /// One at a time per repository, once per process where the control plane remembers
    /// ensured repositories: the control plane's `create_repository` (with its retention
    /// document).
    async fn ensure_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<()> {
        let name = repository.name();
        self.plane.check_repository(name)?;
        let create = || async {
            if self.plane.create_repository(repository, settings).await? {
                tracing::info!(repository = name, registry = %self.host(), provider = C::PROVIDER, "created repository");
            }
            Ok(())
        };
        self.ensured
            .run(name, !self.plane.retention_document(), create)
            .await
    }

    async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>> {
        self.plane.check_repository(repository.name())?;
        Ok(Arc::new(
            self.plane.data_plane().repository(repository.name())?,
        ))
    }

    async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>> {
        let mut names: Vec<String> = self
            .plane
            .list_repositories(cluster)
            .await?
            .into_iter()
            .filter(|n| self.plane.check_repository(n).is_ok())
            .collect();
        names.sort();
        names.dedup();
        Ok(names.into_iter().map(Repository::listed).collect())
    }

    /// The control plane's listing, with the platform manifests of indexes dropped (read
    /// through the data plane), push times from bookkeeping tags where the registry records
    /// none, and referrers folded into their subjects.
    async fn list_images(&self, repository: &Repository) -> Result<Vec<ImageRecord>> {
        let name = repository.name();
        self.plane.check_repository(name)?;
        let listed = self.plane.list_images(name).await?;
        let store = self.plane.data_plane().repository(name)?;
        self.fold_listed(name, listed, &store).await
    }

    /// As `list_images`, through the listing's store: what the control plane listed (tags
    /// with their digests, media types) is learned, so the listing's later questions about
    /// referrer tags and manifests cost no request, and manifests are read once.
    async fn list_images_in(
        &self,
        repository: &Repository,
        listing: &Listing,
    ) -> Result<Vec<ImageRecord>> {
        let name = repository.name();
        self.plane.check_repository(name)?;
        let listed = self.plane.list_images(name).await?;
        let store = listing.store(name, Arc::new(self.plane.data_plane().repository(name)?));
        learn(&store, &listed);
        self.fold_listed(name, listed, store.as_ref()).await
    }

    /// What the images hold read once from the control plane's listing, the images deleted
    /// through `delete_manifests` in batches of 100, then what belonged to them
    /// ([`crate::image::delete_images`]).
    async fn delete_images(
        &self,
        repository: &Repository,
        digests: &[Digest],
    ) -> Result<Vec<Result<()>>> {
        let name = repository.name();
        self.plane.check_repository(name)?;
        let listed = self.plane.list_images(name).await?;
        let listing = Listing::new(ManifestCache::default());
        let store = listing.store(name, Arc::new(self.plane.data_plane().repository(name)?));
        learn(&store, &listed);
        let deleter = PlaneDeleter {
            plane: &self.plane,
            repository: name,
        };
        crate::image::delete_images(store.as_ref(), digests, &deleter).await
    }

    /// The image (with its tags), then its platform manifests no other image holds, then its
    /// referrers and referrers indexes, found before anything goes: a failure leaves orphans
    /// (removed by the next eviction or sweep), never an unsigned image.
    async fn delete_image(&self, repository: &Repository, digest: &Digest) -> Result<()> {
        let name = repository.name();
        self.plane.check_repository(name)?;
        let store = self.plane.data_plane().repository(name)?;
        let belonging = crate::image::referrers::belonging(&store, digest).await?;
        if belonging.shared {
            tracing::warn!(repository = name, %digest, "not deleted: another image of the repository holds this manifest");
            return Ok(());
        }
        let children: BTreeSet<Digest> = match store.get_manifest(&digest.to_string()).await {
            Ok(m) => match m.parse(&format!("{}/{name}@{digest}", self.host())) {
                Ok(ParsedManifest::Index { manifests }) => {
                    manifests.into_iter().map(|d| d.digest).collect()
                }
                _ => BTreeSet::new(),
            },
            Err(e) if e.is_not_found() => BTreeSet::new(),
            Err(e) => {
                // Not an existence check (the control plane decides whether the image is
                // there): unread platform manifests stay as untagged manifests, which
                // listings show and eviction removes later.
                tracing::warn!(repository = name, %digest, error = %e, "cannot read the manifest to find its platform manifests");
                BTreeSet::new()
            }
        };
        self.plane
            .delete_manifests(name, std::slice::from_ref(digest), Deletion::Image)
            .await?;
        let children: Vec<Digest> = children.into_iter().collect();
        for (digests, why) in [
            (children, Deletion::Child),
            (belonging.manifests, Deletion::Referrer),
        ] {
            if digests.is_empty() {
                continue;
            }
            match self.plane.delete_manifests(name, &digests, why).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The data plane's `GET /v2/` with the provider's credentials (fetching them: a refused
    /// identity fails here).
    async fn check(&self) -> Result<()> {
        self.plane.data_plane().ping().await
    }

    fn anchors(&self) -> Option<&dyn AnchorCapability> {
        self.plane
            .retention_document()
            .then_some(self as &dyn AnchorCapability)
    }

    fn builds(&self) -> Option<&dyn BuildCapability> {
        Some(self)
    }
}

/// Control-plane deletions in batches at most this large (ECR's `BatchDeleteImage` limit).
const DELETE_BATCH: usize = 100;

/// What a control plane listed, learned by the listing's store.
fn learn(store: &ListedStore, listed: &[ListedImage]) {
    store.learn_listing(
        listed
            .iter()
            .map(|l| (&l.digest, l.tags.as_slice(), l.media_type.as_deref())),
    );
}

/// A control plane's `delete_manifests` as a [`ManifestDeleter`].
struct PlaneDeleter<'a, C> {
    plane: &'a C,
    repository: &'a str,
}

#[async_trait]
impl<C: ControlPlane> ManifestDeleter for PlaneDeleter<'_, C> {
    async fn delete_images(&self, digests: &[Digest]) -> Vec<Result<()>> {
        let mut out = Vec::with_capacity(digests.len());
        for batch in digests.chunks(DELETE_BATCH) {
            let whole = self
                .plane
                .delete_manifests(self.repository, batch, Deletion::Image)
                .await;
            if whole.is_ok() {
                out.extend(batch.iter().map(|_| Ok(())));
                continue;
            }
            // A batch of one already says which failed.
            if let ([_], Err(e)) = (batch, whole) {
                out.push(Err(e));
                continue;
            }
            // Which one failed: each on its own. One the batch deleted before it failed (a
            // partial `BatchDeleteImage`, deletions run side by side) is gone: deleted.
            for d in batch {
                let one = self
                    .plane
                    .delete_manifests(self.repository, std::slice::from_ref(d), Deletion::Image)
                    .await;
                out.push(match one {
                    Err(e) if e.is_not_found() => Ok(()),
                    other => other,
                });
            }
        }
        out
    }

    async fn delete_children(&self, digests: &[Digest]) -> Result<()> {
        self.plane
            .delete_manifests(self.repository, digests, Deletion::Child)
            .await
    }

    async fn delete_referrers(&self, digests: &[Digest]) -> Result<()> {
        self.plane
            .delete_manifests(self.repository, digests, Deletion::Referrer)
            .await
    }
}

#[async_trait]
impl<C: ControlPlane> AnchorCapability for CloudRegistry<C> {
    async fn remove_tag(&self, repository: &Repository, tag: &str, digest: &Digest) -> Result<()> {
        let name = repository.name();
        self.plane.check_repository(name)?;
        self.plane.remove_tag(name, tag).await?;
        tracing::debug!(repository = name, tag, %digest, "removed a tag");
        Ok(())
    }
}

#[async_trait]
impl<C: ControlPlane> BuildCapability for CloudRegistry<C> {
    fn repository_reference(&self, repository: &Repository) -> Result<String> {
        self.plane.check_repository(repository.name())?;
        Ok(format!("{}/{repository}", self.host()))
    }

    fn cache_repository(&self, build: &Repository, dockerfile_id: &str) -> Result<Repository> {
        Ok(
            Repository::listed(self.plane.cache_repository_name(build, dockerfile_id)?)
                .with_scope(cache_scope(build, dockerfile_id)),
        )
    }

    async fn builder_credentials(&self) -> Result<Option<BuilderCredentials>> {
        self.plane.builder_credentials().await
    }
}
