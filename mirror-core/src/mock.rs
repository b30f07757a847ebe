//! [`mockall`] mocks of the traits a deployer's code depends on (feature `mock`):
//! [`MockRegistry`] and [`MockImageStore`], for unit tests that set expectations and call
//! counts instead of running a registry.
//!
//! `MockRegistry` mocks the six required methods and the provided ones a deployer's code
//! branches on (`list_images`, `delete_image`, `check`); `anchors` and `builds` keep their
//! defaults (none). `MockImageStore` mocks the nine required methods and `mount_blob`;
//! `put_children` and `referrers` keep their defaults.
//!
//! ```
//! use mirror_core::mock::MockRegistry;
//! use mirror_core::{Error, ErrorKind, Registry};
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut registry = MockRegistry::new();
//! registry.expect_check().times(1).returning(|| {
//!     Err(Error::Unauthorized { registry: "r".into(), message: "no".into() })
//! });
//! assert_eq!(registry.check().await.unwrap_err().kind(), ErrorKind::Auth);
//! # }
//! ```

use std::sync::Arc;

use async_trait::async_trait;

use crate::digest::Digest;
use crate::error::Result;
use crate::image::ImageRecord;
use crate::media::RawManifest;
use crate::registry::{Capabilities, Registry, Repository, RepositoryScope, RepositorySettings};
use crate::store::{
    Blob, BlobStream, ImageStore, ManifestHead, MountOutcome, PutOutcome, StoreLocation,
};

mockall::mock! {
    /// A mock [`Registry`] (see the module docs).
    pub Registry {}

    #[async_trait]
    impl Registry for Registry {
        fn provider(&self) -> &str;
        fn location(&self) -> String;
        fn capabilities(&self) -> Capabilities;
        fn repository(&self, scope: &RepositoryScope) -> Result<Repository>;
        async fn ensure_repository(
            &self,
            repository: &Repository,
            settings: &RepositorySettings,
        ) -> Result<()>;
        async fn store(&self, repository: &Repository) -> Result<Arc<dyn ImageStore>>;
        async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>>;
        async fn list_images(&self, repository: &Repository) -> Result<Vec<ImageRecord>>;
        async fn delete_image(&self, repository: &Repository, digest: &Digest) -> Result<()>;
        fn pull_reference(&self, repository: &Repository, digest: &Digest) -> String;
        async fn check(&self) -> Result<()>;
    }
}

mockall::mock! {
    /// A mock [`ImageStore`] (see the module docs).
    pub ImageStore {}

    #[async_trait]
    impl ImageStore for ImageStore {
        fn location(&self) -> StoreLocation;
        async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestHead>>;
        async fn get_manifest(&self, reference: &str) -> Result<RawManifest>;
        async fn put_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<PutOutcome>;
        async fn delete_manifest(&self, digest: &Digest) -> Result<()>;
        async fn has_blob(&self, digest: &Digest, size: Option<u64>) -> Result<bool>;
        async fn get_blob(&self, digest: &Digest) -> Result<Blob>;
        async fn put_blob(&self, digest: &Digest, size: u64, data: BlobStream) -> Result<()>;
        async fn mount_blob(&self, digest: &Digest, from_repository: &str) -> Result<MountOutcome>;
        async fn list_tags(&self) -> Result<Vec<String>>;
    }
}

impl std::fmt::Debug for MockRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockRegistry")
    }
}

impl std::fmt::Debug for MockImageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockImageStore")
    }
}
