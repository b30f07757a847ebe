//! [`Instrumented`]: a [`Registry`] wrapper that counts every call by operation and outcome
//! and traces it, around any registry.
//!
//! It changes nothing about what the inner registry does (it passes the conformance suite
//! wherever the inner registry does); it is how a deployer sees how many control-plane calls
//! a deploy costs, and it composes with any other wrapper.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use tracing::Instrument as _;

use crate::digest::Digest;
use crate::error::Result;
use crate::image::{ImageRecord, Listing};
use crate::registry::{
    AnchorCapability, BuildCapability, Capabilities, Registry, Repository, RepositoryScope,
    RepositorySettings,
};
use crate::store::ImageStore;

/// A [`Registry`] method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// `ensure_repository`.
    EnsureRepository,
    /// `store`.
    Store,
    /// `list_repositories`.
    ListRepositories,
    /// `list_images`.
    ListImages,
    /// `delete_image`.
    DeleteImage,
    /// `remove_tag`.
    RemoveTag,
}

impl Operation {
    const ALL: [Operation; 6] = [
        Operation::EnsureRepository,
        Operation::Store,
        Operation::ListRepositories,
        Operation::ListImages,
        Operation::DeleteImage,
        Operation::RemoveTag,
    ];

    /// The method name.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::EnsureRepository => "ensure_repository",
            Operation::Store => "store",
            Operation::ListRepositories => "list_repositories",
            Operation::ListImages => "list_images",
            Operation::DeleteImage => "delete_image",
            Operation::RemoveTag => "remove_tag",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Calls of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Calls {
    /// Calls that succeeded.
    pub ok: u64,
    /// Calls that failed.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    ok: [AtomicU64; Operation::ALL.len()],
    failed: [AtomicU64; Operation::ALL.len()],
}

/// Counts and traces the calls of any [`Registry`]; see the module docs.
pub struct Instrumented<R: ?Sized> {
    counters: Arc<Counters>,
    inner: Arc<R>,
}

impl<R: ?Sized> Clone for Instrumented<R> {
    fn clone(&self) -> Self {
        Instrumented {
            counters: self.counters.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<R: Registry + ?Sized> fmt::Debug for Instrumented<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrumented")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<R: Registry + ?Sized> Instrumented<R> {
    /// Wraps `inner`. Clones share the counters.
    pub fn new(inner: Arc<R>) -> Self {
        Instrumented {
            counters: Arc::default(),
            inner,
        }
    }

    /// The wrapped registry.
    pub fn inner(&self) -> &Arc<R> {
        &self.inner
    }

    /// The calls of `op` so far.
    pub fn calls(&self, op: Operation) -> Calls {
        Calls {
            ok: self.counters.ok[op.index()].load(Ordering::Relaxed),
            failed: self.counters.failed[op.index()].load(Ordering::Relaxed),
        }
    }

    /// Every operation called so far, with its calls.
    pub fn all_calls(&self) -> BTreeMap<Operation, Calls> {
        Operation::ALL
            .iter()
            .map(|op| (*op, self.calls(*op)))
            .filter(|(_, c)| c.ok + c.failed > 0)
            .collect()
    }

    async fn count<T>(
        &self,
        op: Operation,
        repository: &str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = tracing::debug_span!(
            "registry",
            provider = %self.inner.provider(),
            operation = op.as_str(),
            repository
        );
        let result = call.instrument(span).await;
        let slot = match &result {
            Ok(_) => &self.counters.ok[op.index()],
            Err(e) => {
                tracing::debug!(provider = %self.inner.provider(), operation = op.as_str(), repository, error = %e, "registry call failed");
                &self.counters.failed[op.index()]
            }
        };
        slot.fetch_add(1, Ordering::Relaxed);
        result
    }
}

#[async_trait]
impl<R: Registry + ?Sized> Registry for Instrumented<R> {
    fn provider(&self) -> &str {
        self.inner.provider()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn repository(&self, scope: &RepositoryScope) -> Result<Repository> {
        self.inner.repository(scope)
    }
    async fn ensure_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<()> {
        self.count(
            Operation::EnsureRepository,
            repository.name(),
            self.inner.ensure_repository(repository, settings),
        )
        .await
    }
    async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>> {
        self.count(
            Operation::Store,
            repository.name(),
            self.inner.store(repository),
        )
        .await
    }
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>> {
        self.count(
            Operation::ListRepositories,
            "*",
            self.inner.list_repositories(cluster),
        )
        .await
    }
    async fn list_images(&self, repository: &Repository) -> Result<Vec<ImageRecord>> {
        self.count(
            Operation::ListImages,
            repository.name(),
            self.inner.list_images(repository),
        )
        .await
    }
    async fn delete_image(&self, repository: &Repository, digest: &Digest) -> Result<()> {
        self.count(
            Operation::DeleteImage,
            repository.name(),
            self.inner.delete_image(repository, digest),
        )
        .await
    }
    async fn list_images_in(
        &self,
        repository: &Repository,
        listing: &Listing,
    ) -> Result<Vec<ImageRecord>> {
        self.count(
            Operation::ListImages,
            repository.name(),
            self.inner.list_images_in(repository, listing),
        )
        .await
    }
    /// The inner registry's batch, counted as one `delete_image` per image.
    async fn delete_images(
        &self,
        repository: &Repository,
        digests: &[Digest],
    ) -> Result<Vec<Result<()>>> {
        let span = tracing::debug_span!(
            "registry",
            provider = %self.inner.provider(),
            operation = Operation::DeleteImage.as_str(),
            repository = repository.name(),
            images = digests.len()
        );
        let results = self
            .inner
            .delete_images(repository, digests)
            .instrument(span)
            .await;
        let index = Operation::DeleteImage.index();
        match &results {
            Ok(each) => {
                for r in each {
                    let slot = if r.is_ok() {
                        &self.counters.ok[index]
                    } else {
                        &self.counters.failed[index]
                    };
                    slot.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                self.counters.failed[index].fetch_add(digests.len() as u64, Ordering::Relaxed);
            }
        }
        results
    }
    fn pull_reference(&self, repository: &Repository, digest: &Digest) -> String {
        self.inner.pull_reference(repository, digest)
    }
    async fn check(&self) -> Result<()> {
        self.inner.check().await
    }
    fn anchors(&self) -> Option<&dyn AnchorCapability> {
        // Counted here: the wrapper is the capability when the inner registry has it.
        self.inner.anchors().map(|_| self as &dyn AnchorCapability)
    }
    fn builds(&self) -> Option<&dyn BuildCapability> {
        self.inner.builds()
    }
}

#[async_trait]
impl<R: Registry + ?Sized> AnchorCapability for Instrumented<R> {
    async fn remove_tag(&self, repository: &Repository, tag: &str, digest: &Digest) -> Result<()> {
        let Some(anchors) = self.inner.anchors() else {
            return Err(crate::Error::config(
                "operation",
                format!(
                    "the {} registry {} cannot remove tags",
                    self.inner.provider(),
                    self.inner.location()
                ),
            ));
        };
        self.count(
            Operation::RemoveTag,
            repository.name(),
            anchors.remove_tag(repository, tag, digest),
        )
        .await
    }
}
