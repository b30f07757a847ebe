//! [`LayoutRegistry`]: a directory of OCI image layouts, one per repository.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::{list_images_by_tags, ImageRecord, Listing, ManifestCache, StoreDeleter};
use crate::registry::naming::{check_name, cluster_prefix, default_repository};
use crate::registry::{Registry, Repository, RepositoryScope, RepositorySettings};
use crate::store::layout::LayoutStore;
use crate::store::ImageStore;

/// A directory of OCI image layouts, one per repository (`<root>/<repository>/`): the
/// embedded default that needs no server. Push times are recorded by the library. It cannot
/// receive builds ([`Registry::builds`] is `None`): builders push to a distribution registry.
#[derive(Debug, Clone)]
pub struct LayoutRegistry {
    root: PathBuf,
    prefix: Option<String>,
}

impl LayoutRegistry {
    /// A registry rooted at `root` (created on first push).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LayoutRegistry {
            root: root.into(),
            prefix: None,
        }
    }

    /// Puts every repository under `prefix` (a valid repository path, e.g. `team-b`): a
    /// directory below the root.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self> {
        check_name(prefix)?;
        self.prefix = Some(prefix.to_string());
        Ok(self)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, repository: &Repository) -> Result<PathBuf> {
        check_name(repository.name())?;
        Ok(self.root.join(repository.name()))
    }
}

#[async_trait]
impl Registry for LayoutRegistry {
    fn provider(&self) -> &str {
        "layout"
    }

    fn location(&self) -> String {
        format!("oci:{}", self.root.display())
    }

    fn repository(&self, scope: &RepositoryScope) -> Result<Repository> {
        default_repository(self.prefix.as_deref(), scope)
    }

    async fn ensure_repository(
        &self,
        repository: &Repository,
        _settings: &RepositorySettings,
    ) -> Result<()> {
        self.store(repository).await.map(|_| ())
    }

    async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>> {
        let path = self.path_of(repository)?;
        Ok(Arc::new(blocking(move || LayoutStore::create(path)).await?))
    }

    async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>> {
        let prefix = cluster_prefix(self.prefix.as_deref(), cluster)?;
        let root = self.root.clone();
        let names = blocking(move || repositories_below(&root, &prefix)).await?;
        Ok(names.into_iter().map(Repository::listed).collect())
    }

    async fn list_images(&self, repository: &Repository) -> Result<Vec<ImageRecord>> {
        let path = self.path_of(repository)?;
        let Some(store) = blocking(move || open_if_there(path)).await? else {
            return Ok(Vec::new());
        };
        list_images_by_tags(&store, repository.name()).await
    }

    async fn delete_image(&self, repository: &Repository, digest: &Digest) -> Result<()> {
        let path = self.path_of(repository)?;
        let location = format!("oci:{}@{digest}", path.display());
        let Some(store) = blocking(move || open_if_there(path)).await? else {
            return Err(Error::manifest_not_found(location));
        };
        crate::image::delete_with_referrers(&store, digest).await
    }

    /// By tags, through the listing's store of the layout.
    async fn list_images_in(
        &self,
        repository: &Repository,
        listing: &Listing,
    ) -> Result<Vec<ImageRecord>> {
        let path = self.path_of(repository)?;
        let Some(store) = blocking(move || open_if_there(path)).await? else {
            return Ok(Vec::new());
        };
        crate::image::list_by_tags_in(listing, repository.name(), Arc::new(store)).await
    }

    /// What the layout's images hold read once for the batch
    /// ([`crate::image::delete_images`]).
    async fn delete_images(
        &self,
        repository: &Repository,
        digests: &[Digest],
    ) -> Result<Vec<Result<()>>> {
        let path = self.path_of(repository)?;
        let location = format!("oci:{}", path.display());
        let Some(store) = blocking(move || open_if_there(path)).await? else {
            return Ok(digests
                .iter()
                .map(|d| Err(Error::manifest_not_found(format!("{location}@{d}"))))
                .collect());
        };
        let listing = Listing::new(ManifestCache::default());
        let store = listing.store(repository.name(), Arc::new(store));
        crate::image::delete_images(store.as_ref(), digests, &StoreDeleter(store.as_ref())).await
    }
}

/// Runs a file-system call on a blocking thread.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::io(
            std::path::Path::new(""),
            std::io::Error::other(format!("layout task: {e}")),
        )
    })?
}

/// The layout at `path`, `None` when there is none (blocking).
fn open_if_there(path: std::path::PathBuf) -> Result<Option<LayoutStore>> {
    if !path.join("oci-layout").is_file() {
        return Ok(None);
    }
    LayoutStore::open(path).map(Some)
}

/// The layouts below `root/prefix`, as names relative to `root`, sorted (blocking).
fn repositories_below(root: &std::path::Path, prefix: &str) -> Result<Vec<String>> {
    {
        let base = root.join(prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut pending = vec![base];
        while let Some(dir) = pending.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            if dir.join("oci-layout").is_file() {
                if let Ok(rel) = dir.strip_prefix(root) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
                continue;
            }
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    pending.push(entry.path());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
