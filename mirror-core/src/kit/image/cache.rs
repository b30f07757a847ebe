//! [`ManifestCache`]: what listings learned by digest, kept between them, bounded.
//!
//! A manifest is immutable by digest: once read, its bytes never need reading again. A
//! [`Mirror`](crate::Mirror) keeps one cache for all its calls, so that an inventory taken
//! again (`mirror serve` every interval, a deployer calling `inventory()` in a loop) reads
//! only the manifests that are new since the last one. The cache is bounded in bytes and
//! forgets the least recently used manifests first; forgetting costs a read, never a wrong
//! answer (the bytes of a digest cannot change).
//!
//! It also remembers, per repository, which tags the last listing showed (as 64-bit hashes,
//! bounded in number): a tag the last listing did not show most likely names a new image, so
//! a listing that will read its manifest anyway reads it at once instead of asking for its
//! digest first. A hash collision only changes which of the two requests is sent.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::media::RawManifest;

/// The default bound of a [`ManifestCache`]: 32 MiB of manifests (about 60,000 image
/// manifests of a few layers).
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// What one cached manifest costs besides its bytes (its key, media type and bookkeeping).
const ENTRY_OVERHEAD: usize = 160;

/// Tags remembered at most, over all repositories (8 bytes each).
const MAX_REMEMBERED_TAGS: usize = 1_000_000;

/// How long the registry's answer that it does not serve the referrers API is believed: a
/// registry upgraded to serve it is asked again within this time.
const REFERRERS_API_MEMORY: Duration = Duration::from_secs(3600);

/// A bounded cache of manifests by digest, and of the tags each repository's last listing
/// showed (see the module docs). Clones share it; it is safe to use from many tasks.
#[derive(Clone)]
pub struct ManifestCache {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for ManifestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.stats();
        f.debug_struct("ManifestCache")
            .field("max_bytes", &s.max_bytes)
            .field("bytes", &s.bytes)
            .field("manifests", &s.manifests)
            .finish()
    }
}

impl Default for ManifestCache {
    fn default() -> Self {
        ManifestCache::new(DEFAULT_CACHE_BYTES)
    }
}

/// What a [`ManifestCache`] holds and how it was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// The bound, in bytes.
    pub max_bytes: usize,
    /// Bytes held (manifests and their overhead).
    pub bytes: usize,
    /// Manifests held.
    pub manifests: usize,
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that were not.
    pub misses: u64,
    /// Manifests forgotten to stay within the bound.
    pub evicted: u64,
    /// Tags remembered from the last listings.
    pub remembered_tags: usize,
}

struct Entry {
    manifest: RawManifest,
    stamp: u64,
}

#[derive(Default)]
struct Inner {
    max_bytes: usize,
    bytes: usize,
    entries: HashMap<Digest, Entry>,
    /// Least recently used first.
    order: BTreeMap<u64, Digest>,
    next_stamp: u64,
    /// Repository → hashes of the tags its last listing showed, and when it was listed.
    tags: HashMap<String, (u64, HashSet<u64>)>,
    tag_count: usize,
    hits: u64,
    misses: u64,
    evicted: u64,
    /// When the registry last answered that it does not serve the referrers API.
    no_referrers_api: Option<Instant>,
}

fn cost(m: &RawManifest) -> usize {
    m.bytes.len() + m.media_type.len() + ENTRY_OVERHEAD
}

/// The 64-bit hash a tag is remembered by.
fn tag_hash(tag: &str) -> u64 {
    let mut h = DefaultHasher::new();
    tag.hash(&mut h);
    h.finish()
}

impl ManifestCache {
    /// A cache holding at most `max_bytes` of manifests (0 keeps nothing).
    pub fn new(max_bytes: usize) -> Self {
        ManifestCache {
            inner: Arc::new(Mutex::new(Inner {
                max_bytes,
                ..Inner::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is whole).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The manifest `digest`, when held.
    pub fn get(&self, digest: &Digest) -> Option<RawManifest> {
        let mut inner = self.lock();
        let stamp = inner.next_stamp;
        let found = match inner.entries.get_mut(digest) {
            Some(e) => {
                let old = e.stamp;
                e.stamp = stamp;
                Some((old, e.manifest.clone()))
            }
            None => None,
        };
        match found {
            Some((old, m)) => {
                inner.next_stamp += 1;
                inner.order.remove(&old);
                inner.order.insert(stamp, digest.clone());
                inner.hits += 1;
                Some(m)
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    /// Whether the manifest `digest` is held (not counted as a lookup).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.lock().entries.contains_key(digest)
    }

    /// Keeps `manifest` (by its digest), forgetting the least recently used ones if needed.
    /// A manifest larger than an eighth of the bound is not kept.
    pub fn insert(&self, manifest: &RawManifest) {
        let mut inner = self.lock();
        let c = cost(manifest);
        if c > inner.max_bytes / 8 || inner.entries.contains_key(&manifest.digest) {
            return;
        }
        while inner.bytes + c > inner.max_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(e) = inner.entries.remove(&oldest) {
                inner.bytes -= cost(&e.manifest);
                inner.evicted += 1;
            }
        }
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.order.insert(stamp, manifest.digest.clone());
        inner.entries.insert(
            manifest.digest.clone(),
            Entry {
                manifest: manifest.clone(),
                stamp,
            },
        );
        inner.bytes += c;
    }

    /// Whether the last listing of `repository` showed `tag`; `None` when no listing of it
    /// is remembered.
    pub fn listed_before(&self, repository: &str, tag: &str) -> Option<bool> {
        let inner = self.lock();
        inner
            .tags
            .get(repository)
            .map(|(_, set)| set.contains(&tag_hash(tag)))
    }

    /// Remembers the tags a listing of `repository` showed, replacing the previous ones;
    /// the repositories listed longest ago are forgotten first to stay within the bound.
    pub fn remember_tags<'a>(&self, repository: &str, tags: impl IntoIterator<Item = &'a str>) {
        let set: HashSet<u64> = tags.into_iter().map(tag_hash).collect();
        let mut inner = self.lock();
        if let Some((_, old)) = inner.tags.remove(repository) {
            inner.tag_count -= old.len();
        }
        if set.len() > MAX_REMEMBERED_TAGS / 2 {
            return;
        }
        while inner.tag_count + set.len() > MAX_REMEMBERED_TAGS {
            let oldest = inner
                .tags
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(name, _)| name.clone());
            let Some(name) = oldest else { break };
            if let Some((_, old)) = inner.tags.remove(&name) {
                inner.tag_count -= old.len();
            }
        }
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.tag_count += set.len();
        inner.tags.insert(repository.to_string(), (stamp, set));
    }

    /// Whether the registry answered, within the last hour, that it does not serve the
    /// referrers API (listings then look for referrers through the tag schema alone).
    pub fn lacks_referrers_api(&self) -> bool {
        self.lock()
            .no_referrers_api
            .is_some_and(|at| at.elapsed() < REFERRERS_API_MEMORY)
    }

    /// Records whether the registry serves the referrers API (see
    /// [`lacks_referrers_api`](Self::lacks_referrers_api)).
    pub fn set_referrers_api(&self, served: bool) {
        self.lock().no_referrers_api = (!served).then(Instant::now);
    }

    /// What the cache holds and how it was used.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            max_bytes: inner.max_bytes,
            bytes: inner.bytes,
            manifests: inner.entries.len(),
            hits: inner.hits,
            misses: inner.misses,
            evicted: inner.evicted,
            remembered_tags: inner.tag_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(n: usize) -> RawManifest {
        RawManifest::new(
            format!("{{\"n\":{n:03},\"pad\":\"{}\"}}", "x".repeat(100)),
            crate::media::OCI_MANIFEST,
        )
    }

    #[test]
    fn stays_within_its_bound_and_forgets_the_least_recently_used_first() {
        let one = cost(&manifest(0));
        let cache = ManifestCache::new(one * 10);
        let all: Vec<RawManifest> = (0..30).map(manifest).collect();
        for m in &all[..10] {
            cache.insert(m);
        }
        // The first is used again: the second is now the oldest.
        assert!(cache.get(&all[0].digest).is_some());
        cache.insert(&all[10]);
        assert!(cache.contains(&all[0].digest));
        assert!(!cache.contains(&all[1].digest));
        for m in &all[11..] {
            cache.insert(m);
        }
        let s = cache.stats();
        assert!(s.bytes <= s.max_bytes, "{s:?}");
        assert_eq!(s.manifests, 10);
        assert_eq!(s.evicted, 20);
        assert_eq!(cache.get(&all[29].digest), Some(all[29].clone()));
    }

    #[test]
    fn a_zero_bound_keeps_nothing_and_huge_manifests_are_not_kept() {
        let cache = ManifestCache::new(0);
        cache.insert(&manifest(1));
        assert_eq!(cache.stats().manifests, 0);
        let cache = ManifestCache::new(4096);
        cache.insert(&RawManifest::new(
            vec![b' '; 1024],
            crate::media::OCI_MANIFEST,
        ));
        assert_eq!(cache.stats().manifests, 0, "over an eighth of the bound");
    }

    #[test]
    fn remembers_the_tags_of_the_last_listing_per_repository() {
        let cache = ManifestCache::new(1024);
        assert_eq!(cache.listed_before("r", "v1"), None);
        cache.remember_tags("r", ["v1", "v2"]);
        assert_eq!(cache.listed_before("r", "v1"), Some(true));
        assert_eq!(cache.listed_before("r", "v3"), Some(false));
        cache.remember_tags("r", ["v3"]);
        assert_eq!(cache.listed_before("r", "v1"), Some(false));
        assert_eq!(cache.stats().remembered_tags, 1);
    }
}
