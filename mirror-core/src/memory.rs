//! An in-memory [`Registry`] and [`ImageStore`] (feature `memory`): a deployer's unit tests
//! run the real [`Mirror`](crate::Mirror) against them, with no server, no files and no
//! network.
//!
//! They keep the traits' contracts (manifests and blobs verified against their digests,
//! absent is `Ok(None)`/[`Error::NotFound`], listings with the bookkeeping tags folded) and
//! count what was asked ([`MemoryRegistry::calls`]), so that a test can say "a skip made no
//! copy". Failures are injected with [`MemoryRegistry::fail_next`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> mirror_core::Result<()> {
//! use std::sync::Arc;
//! use mirror_core::memory::{MemoryRegistry, MemoryStore};
//! use mirror_core::{ImageStore, Mirror, Source};
//!
//! // A source image in a store of its own, the mirror in memory.
//! let registry = Arc::new(MemoryRegistry::new("mirror.test"));
//! let mirror = Mirror::builder(registry.clone(), "prod").build()?;
//! # let _ = mirror;
//! assert!(registry.repositories().is_empty());
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::RawManifest;
use crate::registry::{Registry, Repository, RepositoryScope, RepositorySettings};
use crate::store::{Blob, BlobStream, ImageStore, ManifestHead, PutOutcome, StoreLocation};

#[derive(Debug, Default)]
struct Content {
    manifests: HashMap<Digest, RawManifest>,
    tags: BTreeMap<String, Digest>,
    blobs: HashMap<Digest, Bytes>,
}

/// One repository's content in memory (see the module docs). Clones share it.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    registry: String,
    repository: String,
    content: Arc<Mutex<Content>>,
    failures: Arc<Mutex<Vec<Error>>>,
}

impl MemoryStore {
    /// An empty repository `repository` of the registry `registry` (a host name for
    /// messages and pull references).
    pub fn new(registry: &str, repository: &str) -> Self {
        MemoryStore {
            registry: registry.to_string(),
            repository: repository.to_string(),
            content: Arc::default(),
            failures: Arc::default(),
        }
    }

    fn content(&self) -> std::sync::MutexGuard<'_, Content> {
        match self.content.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The next injected failure, if any.
    fn failure(&self) -> Result<()> {
        let mut f = match self.failures.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        match f.pop() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn location_of(&self, reference: &str) -> String {
        let sep = if reference.contains(':') { "@" } else { ":" };
        format!("{}/{}{sep}{reference}", self.registry, self.repository)
    }

    fn resolve(&self, reference: &str) -> Option<Digest> {
        let content = self.content();
        match Digest::parse(reference) {
            Ok(d) => content.manifests.contains_key(&d).then_some(d),
            Err(_) => content.tags.get(reference).cloned(),
        }
    }

    /// Every tag with the digest it names.
    pub fn tags(&self) -> BTreeMap<String, Digest> {
        self.content().tags.clone()
    }
}

#[async_trait]
impl ImageStore for MemoryStore {
    fn location(&self) -> StoreLocation {
        StoreLocation::Registry {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
        }
    }

    async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestHead>> {
        self.failure()?;
        let Some(digest) = self.resolve(reference) else {
            return Ok(None);
        };
        Ok(self.content().manifests.get(&digest).map(|m| ManifestHead {
            digest: m.digest.clone(),
            media_type: m.media_type.clone(),
            size: m.bytes.len() as u64,
        }))
    }

    async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        self.failure()?;
        self.resolve(reference)
            .and_then(|d| self.content().manifests.get(&d).cloned())
            .ok_or_else(|| Error::manifest_not_found(self.location_of(reference)))
    }

    async fn put_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<PutOutcome> {
        self.failure()?;
        manifest.digest.verify(&manifest.bytes)?;
        let mut content = self.content();
        match Digest::parse(reference) {
            Ok(d) if d != manifest.digest => {
                return Err(Error::DigestMismatch {
                    expected: d,
                    actual: manifest.digest.clone(),
                })
            }
            Ok(_) => {}
            Err(_) => {
                crate::reference::validate_tag(reference).map_err(|reason| {
                    Error::InvalidReference {
                        input: reference.to_string(),
                        reason,
                    }
                })?;
                content
                    .tags
                    .insert(reference.to_string(), manifest.digest.clone());
            }
        }
        content
            .manifests
            .insert(manifest.digest.clone(), manifest.clone());
        Ok(PutOutcome::default())
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        self.failure()?;
        let mut content = self.content();
        if content.manifests.remove(digest).is_none() {
            return Err(Error::manifest_not_found(
                self.location_of(&digest.to_string()),
            ));
        }
        content.tags.retain(|_, d| d != digest);
        Ok(())
    }

    async fn has_blob(&self, digest: &Digest, size: Option<u64>) -> Result<bool> {
        self.failure()?;
        Ok(self
            .content()
            .blobs
            .get(digest)
            .is_some_and(|b| size.is_none_or(|s| b.len() as u64 == s)))
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Blob> {
        self.failure()?;
        let bytes = self
            .content()
            .blobs
            .get(digest)
            .cloned()
            .ok_or_else(|| Error::blob_not_found(self.location_of(&digest.to_string())))?;
        Ok(Blob {
            size: Some(bytes.len() as u64),
            stream: Box::pin(futures::stream::iter([Ok(bytes)])),
        })
    }

    async fn put_blob(&self, digest: &Digest, size: u64, mut data: BlobStream) -> Result<()> {
        self.failure()?;
        let mut all = Vec::with_capacity(usize::try_from(size.min(64 << 20)).unwrap_or(0));
        while let Some(chunk) = data.next().await {
            all.extend_from_slice(&chunk?);
            if all.len() as u64 > size {
                break;
            }
        }
        if all.len() as u64 != size {
            return Err(Error::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: all.len() as u64,
            });
        }
        digest.verify(&all)?;
        self.content()
            .blobs
            .insert(digest.clone(), Bytes::from(all));
        Ok(())
    }

    async fn list_tags(&self) -> Result<Vec<String>> {
        self.failure()?;
        Ok(self.content().tags.keys().cloned().collect())
    }
}

/// What a [`MemoryRegistry`] was asked, by method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Calls {
    /// `ensure_repository`.
    pub ensure_repository: usize,
    /// `store`.
    pub store: usize,
    /// `list_repositories`.
    pub list_repositories: usize,
}

/// A registry in memory: repositories of [`MemoryStore`]s, named by the core layout
/// (`<cluster>/services/<service>`, `<cluster>/mirror`…). See the module docs.
#[derive(Debug, Clone)]
pub struct MemoryRegistry {
    host: String,
    repositories: Arc<Mutex<BTreeMap<String, MemoryStore>>>,
    calls: Arc<Mutex<Calls>>,
    failures: Arc<Mutex<Vec<Error>>>,
}

impl MemoryRegistry {
    /// An empty registry known as `host` (in pull references: `<host>/<repository>@…`).
    pub fn new(host: &str) -> Self {
        MemoryRegistry {
            host: host.to_string(),
            repositories: Arc::default(),
            calls: Arc::default(),
            failures: Arc::default(),
        }
    }

    /// The store of `repository`, created empty when it does not exist (its content is
    /// shared with the registry: push source images here too).
    pub fn repository_store(&self, repository: &str) -> MemoryStore {
        let mut repos = match self.repositories.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        repos
            .entry(repository.to_string())
            .or_insert_with(|| {
                let mut s = MemoryStore::new(&self.host, repository);
                s.failures = self.failures.clone();
                s
            })
            .clone()
    }

    /// The names of the repositories that exist.
    pub fn repositories(&self) -> Vec<String> {
        match self.repositories.lock() {
            Ok(r) => r.keys().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().keys().cloned().collect(),
        }
    }

    /// What was asked so far.
    pub fn calls(&self) -> Calls {
        self.calls.lock().map(|c| *c).unwrap_or_default()
    }

    /// The next store operation (of any repository) fails with `error`; several calls queue
    /// several failures, the last given first.
    pub fn fail_next(&self, error: Error) {
        if let Ok(mut f) = self.failures.lock() {
            f.push(error);
        }
    }

    fn count(&self, f: impl FnOnce(&mut Calls)) {
        if let Ok(mut c) = self.calls.lock() {
            f(&mut c);
        }
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    fn provider(&self) -> &str {
        "memory"
    }

    fn location(&self) -> String {
        self.host.clone()
    }

    fn repository(&self, scope: &RepositoryScope) -> Result<Repository> {
        crate::registry::naming::default_repository(None, scope)
    }

    async fn ensure_repository(
        &self,
        repository: &Repository,
        _settings: &RepositorySettings,
    ) -> Result<()> {
        self.count(|c| c.ensure_repository += 1);
        self.repository_store(repository.name());
        Ok(())
    }

    async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>> {
        self.count(|c| c.store += 1);
        Ok(Arc::new(self.repository_store(repository.name())))
    }

    async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>> {
        self.count(|c| c.list_repositories += 1);
        let prefix = format!("{cluster}/");
        Ok(self
            .repositories()
            .into_iter()
            .filter(|r| r.starts_with(&prefix))
            .map(Repository::listed)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_keep_the_store_contract() {
        let store = MemoryStore::new("m", "r");
        let m = RawManifest::new(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec(),
            crate::media::OCI_MANIFEST,
        );
        assert!(store.head_manifest("v1").await.unwrap().is_none());
        store.put_manifest("v1", &m).await.unwrap();
        assert_eq!(
            store.head_manifest("v1").await.unwrap().unwrap().digest,
            m.digest
        );
        assert!(store.get_manifest(&m.digest.to_string()).await.is_ok());
        let wrong = Digest::sha256_of(b"other");
        assert!(matches!(
            store.put_manifest(&wrong.to_string(), &m).await,
            Err(Error::DigestMismatch { .. })
        ));
        let blob = Bytes::from_static(b"{}");
        let d = Digest::sha256_of(&blob);
        store
            .put_blob(&d, 2, Box::pin(futures::stream::iter([Ok(blob)])))
            .await
            .unwrap();
        assert!(store.has_blob(&d, Some(2)).await.unwrap());
        assert!(!store.has_blob(&d, Some(3)).await.unwrap());
        store.delete_manifest(&m.digest).await.unwrap();
        assert!(store.list_tags().await.unwrap().is_empty());
        assert!(store
            .delete_manifest(&m.digest)
            .await
            .unwrap_err()
            .is_not_found());
    }
}
