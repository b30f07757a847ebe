//! [`Listing`] and [`ListedStore`]: one listing of a registry's repositories, which answers
//! what it already learned instead of asking the registry again.
//!
//! An inventory lists every repository and then looks at every image: its manifests (sizes),
//! its referrers (the tag schema's `sha256-<hex>` index, cosign's `.sig`/`.att`/`.sbom`
//! tags). Asked of the registry one question at a time, that is eight requests per image,
//! most of them answered by what the listing already showed. A [`ListedStore`] wraps one
//! repository's store for the length of a listing and answers:
//!
//! - **tags the listing did not show** are absent: a cosign tag or tag-schema index that is
//!   not in the tag list costs no request;
//! - **a tag it resolved** names the same digest for the rest of the listing;
//! - **manifests by digest** come from the [`ManifestCache`] (immutable by digest), shared
//!   with the later listings of the same [`Mirror`](crate::Mirror);
//! - **the referrers API**: once the registry answered that it does not serve it, no
//!   repository of the listing asks again.
//!
//! A tag it has not resolved yet is asked with a manifest `GET` when the listing will read
//! the manifest anyway ([`Listing::reading_manifests`]) and the repository's last listing
//! did not show the tag (a new image: one request instead of a `HEAD` and a `GET`), else with
//! a `HEAD`; a manifest is read only when the cache does not hold it.
//!
//! The answers are a snapshot: a tag pushed after the listing read the tag list is not seen
//! until the next listing, as if it had come a moment later; a manifest read earlier is
//! answered from memory even when it was deleted since (its bytes cannot change; whether it
//! still exists is what the tag listing and the HEADs tell).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::cache::ManifestCache;
use super::ImageRecord;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{Descriptor, RawManifest, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::store::{
    Blob, BlobStream, ImageStore, ManifestHead, MountOutcome, PutOutcome, StoreLocation,
};

/// Whether `media_type` names an index (an image index or a Docker manifest list).
pub(crate) fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// One listing of a registry's repositories (an inventory, a sweep, a batch of deletions):
/// the [`ManifestCache`] it reads through, whether it will read the images' manifests,
/// whether the registry serves the referrers API, and the [`ListedStore`] of each repository
/// being listed. Clones share it.
#[derive(Clone, Debug)]
pub struct Listing {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    cache: ManifestCache,
    read_manifests: bool,
    /// Whether the registry serves the referrers API, once it answered (asked by one
    /// lookup while the others wait: a probe, not one per repository).
    referrers_api: tokio::sync::Mutex<Option<bool>>,
    passes: Mutex<HashMap<String, Arc<ListedStore>>>,
}

impl Listing {
    /// A listing reading through `cache`, which only needs the images' digests and tags (a
    /// sweep, an eviction): tags are resolved with `HEAD`s.
    pub fn new(cache: ManifestCache) -> Self {
        Listing::with(cache, false)
    }

    /// A listing reading through `cache` that will read every image's manifests (an
    /// inventory): a tag the repository's last listing did not show is resolved with a `GET`,
    /// which also brings the manifest.
    pub fn reading_manifests(cache: ManifestCache) -> Self {
        Listing::with(cache, true)
    }

    fn with(cache: ManifestCache, read_manifests: bool) -> Self {
        Listing {
            shared: Arc::new(Shared {
                cache,
                read_manifests,
                referrers_api: tokio::sync::Mutex::new(None),
                passes: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The cache it reads through.
    pub fn cache(&self) -> &ManifestCache {
        &self.shared.cache
    }

    fn passes(&self) -> MutexGuard<'_, HashMap<String, Arc<ListedStore>>> {
        self.shared.passes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store of `repository` for this listing, wrapping `inner`: made at the first call,
    /// the same one after (`inner` is then dropped) until [`finish`](Self::finish).
    pub fn store(&self, repository: &str, inner: Arc<dyn ImageStore>) -> Arc<ListedStore> {
        self.passes()
            .entry(repository.to_string())
            .or_insert_with(|| {
                Arc::new(ListedStore {
                    inner,
                    repository: repository.to_string(),
                    shared: self.shared.clone(),
                    state: Mutex::new(Pass::default()),
                })
            })
            .clone()
    }

    /// The store of `repository` when this listing made one.
    pub fn pass(&self, repository: &str) -> Option<Arc<ListedStore>> {
        self.passes().get(repository).cloned()
    }

    /// Ends the listing of `repository`: its store is forgotten and, when the listing read
    /// the images' manifests (so the cache holds them), the tags it listed are remembered
    /// for the next listing.
    pub fn finish(&self, repository: &str) {
        let Some(pass) = self.passes().remove(repository) else {
            return;
        };
        if !self.shared.read_manifests {
            return;
        }
        let current = pass
            .lock()
            .tags
            .as_ref()
            .filter(|t| t.complete)
            .map(Tags::current);
        if let Some(tags) = current {
            self.shared
                .cache
                .remember_tags(repository, tags.iter().map(String::as_str));
        }
    }
}

/// One repository's store within a [`Listing`] (see the module docs).
pub struct ListedStore {
    inner: Arc<dyn ImageStore>,
    repository: String,
    shared: Arc<Shared>,
    state: Mutex<Pass>,
}

impl std::fmt::Debug for ListedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListedStore")
            .field("repository", &self.repository)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// What a [`ListedStore`] learned during its listing.
#[derive(Default)]
struct Pass {
    /// The repository's tags, when known.
    tags: Option<Tags>,
    /// Tag → the digest it named (`None`: absent).
    resolved: HashMap<String, Option<Digest>>,
    /// Manifests known to be there, with what a HEAD tells when known.
    present: HashMap<Digest, Option<ManifestHead>>,
    /// Media types the registry's listing told without a HEAD.
    media_types: HashMap<Digest, String>,
    /// Digest → the tags resolved to it (what goes when it is deleted).
    tagged: HashMap<Digest, Vec<String>>,
}

impl Pass {
    /// `tag` names `digest` (`None`: absent).
    fn resolve(&mut self, tag: &str, digest: Option<&Digest>) {
        if let Some(d) = digest {
            self.tagged
                .entry(d.clone())
                .or_default()
                .push(tag.to_string());
        }
        self.resolved.insert(tag.to_string(), digest.cloned());
    }
}

struct Tags {
    /// As listed (and added since); those no longer in `set` were deleted.
    order: Vec<String>,
    set: HashSet<String>,
    /// Every tag of the repository (a tag listing, a control plane's listing); `false` when
    /// only the tags that matter to referrers are known (learned from listed records).
    complete: bool,
}

impl Tags {
    fn new(order: Vec<String>, complete: bool) -> Self {
        let set = order.iter().cloned().collect();
        Tags {
            order,
            set,
            complete,
        }
    }

    /// The tags there now, in listing order, each once.
    fn current(&self) -> Vec<String> {
        let mut seen = HashSet::with_capacity(self.set.len());
        self.order
            .iter()
            .filter(|t| self.set.contains(*t) && seen.insert(t.as_str()))
            .cloned()
            .collect()
    }
}

fn head_of(m: &RawManifest) -> ManifestHead {
    ManifestHead {
        digest: m.digest.clone(),
        media_type: m.media_type.clone(),
        size: m.bytes.len() as u64,
    }
}

impl ListedStore {
    fn lock(&self) -> MutexGuard<'_, Pass> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The repository.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn ImageStore> {
        &self.inner
    }

    /// The registry's own listing showed every tag of the repository with the digest it
    /// names, and manifests with their media types where it tells them (a control plane's
    /// listing, untagged manifests included): those are answered without a request.
    pub fn learn_listing<'a, I>(&self, manifests: I)
    where
        I: IntoIterator<Item = (&'a Digest, &'a [String], Option<&'a str>)>,
    {
        let mut s = self.lock();
        let mut order = Vec::new();
        for (digest, tags, media_type) in manifests {
            s.present.entry(digest.clone()).or_insert(None);
            if let Some(t) = media_type {
                s.media_types.insert(digest.clone(), t.to_string());
            }
            for tag in tags {
                s.resolve(tag, Some(digest));
                order.push(tag.clone());
            }
        }
        s.tags = Some(Tags::new(order, true));
    }

    /// What listed `records` tell (when the registry listed them on its own): the tags they
    /// show and those of their referrers name their digests, and nothing else names a
    /// referrer (a cosign tag or a tag-schema index no record shows is absent). Nothing
    /// when this store already knows the repository's tags.
    pub fn learn_records(&self, records: &[ImageRecord]) {
        let mut s = self.lock();
        if s.tags.is_some() {
            return;
        }
        let mut order = Vec::new();
        for r in records {
            s.present.entry(r.digest.clone()).or_insert(None);
            for tag in &r.tags {
                s.resolve(tag, Some(&r.digest));
                order.push(tag.clone());
            }
            for referrer in &r.referrers {
                s.present.entry(referrer.digest.clone()).or_insert(None);
                if let Some(tag) = &referrer.tag {
                    s.resolve(tag, Some(&referrer.digest));
                    order.push(tag.clone());
                }
            }
        }
        s.tags = Some(Tags::new(order, false));
    }

    /// The media type of `digest` when this listing knows it without a request.
    pub fn media_type(&self, digest: &Digest) -> Option<String> {
        {
            let s = self.lock();
            if let Some(Some(h)) = s.present.get(digest) {
                return Some(h.media_type.clone());
            }
            if let Some(t) = s.media_types.get(digest) {
                return Some(t.clone());
            }
        }
        self.shared.cache.get(digest).map(|m| m.media_type)
    }

    /// Every tag and the digest it names, when the registry's own listing told them
    /// ([`learn_listing`](Self::learn_listing)) and so no request is needed.
    pub fn listed_tags(&self) -> Option<Vec<(String, Digest)>> {
        let s = self.lock();
        let tags = s.tags.as_ref().filter(|t| t.complete)?;
        let mut out = Vec::with_capacity(tags.set.len());
        for t in tags.current() {
            let digest = s.resolved.get(&t).cloned()??;
            out.push((t, digest));
        }
        Some(out)
    }

    /// Whether the listing says `tag` is not there: it knows the repository's tags and `tag`
    /// is not among them, or a lookup found it absent.
    fn known_absent(&self, tag: &str) -> bool {
        let s = self.lock();
        if let Some(None) = s.resolved.get(tag) {
            return true;
        }
        s.tags.as_ref().is_some_and(|t| !t.set.contains(tag))
    }

    fn resolved(&self, tag: &str) -> Option<Digest> {
        self.lock().resolved.get(tag).cloned().flatten()
    }

    /// Reads `reference` from the registry and keeps what it tells.
    async fn fetch(&self, reference: &str, tag: Option<&str>) -> Result<RawManifest> {
        let got = self.inner.get_manifest(reference).await;
        let mut s = self.lock();
        match got {
            Ok(m) => {
                self.shared.cache.insert(&m);
                s.present.insert(m.digest.clone(), Some(head_of(&m)));
                if let Some(tag) = tag {
                    s.resolve(tag, Some(&m.digest));
                }
                Ok(m)
            }
            Err(e) => {
                if e.is_not_found() {
                    if let Some(tag) = tag {
                        s.resolve(tag, None);
                    }
                }
                Err(e)
            }
        }
    }

    /// The manifest `digest`: from the cache, else read.
    async fn by_digest(&self, digest: &Digest) -> Result<RawManifest> {
        if let Some(m) = self.shared.cache.get(digest) {
            return Ok(m);
        }
        self.fetch(&digest.to_string(), None).await
    }

    /// What a HEAD of `digest` tells, when known to be there.
    async fn head_digest(&self, digest: &Digest) -> Result<Option<ManifestHead>> {
        let known = self.lock().present.get(digest).cloned();
        match known {
            Some(Some(head)) => return Ok(Some(head)),
            Some(None) => {
                // Known to be there; what it is comes from the cache or one read.
                return match self.by_digest(digest).await {
                    Ok(m) => Ok(Some(head_of(&m))),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                };
            }
            None => {}
        }
        if let Some(m) = self.shared.cache.get(digest) {
            // Held, but is it still there? A HEAD tells (no body).
            let head = self.inner.head_manifest(&digest.to_string()).await?;
            if let Some(h) = &head {
                self.lock()
                    .present
                    .insert(h.digest.clone(), Some(head_of(&m)));
            }
            return Ok(head.map(|_| head_of(&m)));
        }
        // Not held: one read answers both questions, and the caller reads it next.
        match self.fetch(&digest.to_string(), None).await {
            Ok(m) => Ok(Some(head_of(&m))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl ImageStore for ListedStore {
    fn location(&self) -> StoreLocation {
        self.inner.location()
    }

    async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestHead>> {
        if let Ok(digest) = Digest::parse(reference) {
            return self.head_digest(&digest).await;
        }
        if self.known_absent(reference) {
            return Ok(None);
        }
        if let Some(digest) = self.resolved(reference) {
            return self.head_digest(&digest).await;
        }
        let new_tag = self.shared.cache.listed_before(&self.repository, reference) != Some(true);
        if self.shared.read_manifests && new_tag {
            return match self.fetch(reference, Some(reference)).await {
                Ok(m) => Ok(Some(head_of(&m))),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            };
        }
        let head = self.inner.head_manifest(reference).await?;
        let mut s = self.lock();
        s.resolve(reference, head.as_ref().map(|h| &h.digest));
        if let Some(h) = &head {
            s.present.insert(h.digest.clone(), Some(h.clone()));
        }
        Ok(head)
    }

    async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        if let Ok(digest) = Digest::parse(reference) {
            return self.by_digest(&digest).await;
        }
        if self.known_absent(reference) {
            return Err(Error::manifest_not_found(format!(
                "{}:{reference}",
                self.inner.location()
            )));
        }
        if let Some(digest) = self.resolved(reference) {
            return self.by_digest(&digest).await;
        }
        self.fetch(reference, Some(reference)).await
    }

    async fn put_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<PutOutcome> {
        let outcome = self.inner.put_manifest(reference, manifest).await?;
        self.shared.cache.insert(manifest);
        let mut s = self.lock();
        s.present
            .insert(manifest.digest.clone(), Some(head_of(manifest)));
        if Digest::parse(reference).is_err() {
            s.resolve(reference, Some(&manifest.digest));
            if let Some(tags) = s.tags.as_mut() {
                if tags.set.insert(reference.to_string()) {
                    tags.order.push(reference.to_string());
                }
            }
        }
        Ok(outcome)
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        let deleted = self.inner.delete_manifest(digest).await;
        if deleted.is_ok() || deleted.as_ref().is_err_and(Error::is_not_found) {
            // Its tags went with it.
            let mut s = self.lock();
            s.present.remove(digest);
            for t in s.tagged.remove(digest).unwrap_or_default() {
                // Moved to another digest since: not this one's.
                if s.resolved
                    .get(&t)
                    .is_some_and(|d| d.as_ref() == Some(digest))
                {
                    s.resolved.insert(t.clone(), None);
                    if let Some(tags) = s.tags.as_mut() {
                        tags.set.remove(&t);
                    }
                }
            }
        }
        deleted
    }

    async fn has_blob(&self, digest: &Digest, size: Option<u64>) -> Result<bool> {
        self.inner.has_blob(digest, size).await
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Blob> {
        self.inner.get_blob(digest).await
    }

    async fn put_blob(&self, digest: &Digest, size: u64, data: BlobStream) -> Result<()> {
        self.inner.put_blob(digest, size, data).await
    }

    async fn mount_blob(&self, digest: &Digest, from_repository: &str) -> Result<MountOutcome> {
        self.inner.mount_blob(digest, from_repository).await
    }

    async fn list_tags(&self) -> Result<Vec<String>> {
        if let Some(tags) = self.lock().tags.as_ref().filter(|t| t.complete) {
            return Ok(tags.current());
        }
        let listed = self.inner.list_tags().await?;
        let mut s = self.lock();
        s.tags = Some(Tags::new(listed.clone(), true));
        Ok(listed)
    }

    async fn referrers(
        &self,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Descriptor>>> {
        if self.shared.cache.lacks_referrers_api() {
            return Ok(None);
        }
        let mut api = self.shared.referrers_api.lock().await;
        match *api {
            Some(false) => Ok(None),
            Some(true) => {
                drop(api);
                self.inner.referrers(subject, artifact_type).await
            }
            None => {
                // The probe: the other lookups wait for its answer.
                let found = self.inner.referrers(subject, artifact_type).await?;
                *api = Some(found.is_some());
                self.shared.cache.set_referrers_api(found.is_some());
                Ok(found)
            }
        }
    }
}
