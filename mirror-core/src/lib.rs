//! Keeps every image a Kubernetes cluster runs in a mirror registry next to that cluster, and
//! hands back a digest-pinned reference.
//!
//! Before a workload starts, a deployer asks a [`Mirror`] for the image: the library finds
//! it in the cluster's mirror registry (one HEAD) or copies it there whole (every platform,
//! byte-identical, with its signatures and SBOMs), and returns `registry/repo@sha256:…`.
//! Kubernetes then never depends on the source registry, and the reference is exactly the
//! image asked for.
//!
//! # Example
//!
//! The whole story on a directory of OCI layouts (no server needed; a registry is one
//! string away: [`registry::open()`], or the `image-mirror` crate with the cloud providers
//! behind features):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> mirror_core::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let (source_dir, mirror_dir) = (dir.path().join("src"), dir.path().join("mirror"));
//! # mirror_core::testing::TestImage::builder().seed(1).build().write_layout(&source_dir, "v1").unwrap();
//! use std::sync::Arc;
//! use mirror_core::prelude::*;
//! use mirror_core::LayoutRegistry;
//!
//! let registry = Arc::new(LayoutRegistry::new(&mirror_dir));
//! let mirror = Mirror::builder(registry, "prod-eu").build()?;
//! let source: Source = format!("oci:{}:v1", source_dir.display()).parse()?;
//!
//! let first = mirror.mirror("api", &source).await?;
//! assert_eq!(first.action, Action::Copied);
//! let again = mirror.mirror("api", &source).await?; // one HEAD, nothing copied
//! assert_eq!(again.action, Action::Skipped);
//! assert!(again.pull_reference.contains("@sha256:"));
//! # Ok(()) }
//! ```
//!
//! Errors say what kind of failure they are ([`Error::kind`]: input, auth, network…) and
//! whether a retry may help; warnings ([`Warning`]) are typed. A deployer needs the
//! [`prelude`].
//!
//! # Layout
//!
//! - [`mirror`]: the [`Mirror`] façade a deployer calls (deploy, build, sweep, inventory,
//!   protect); [`Source`], [`Sources`] (source credentials);
//! - [`registry`]: the [`Registry`] trait (a cluster's mirror registry) keyed by a typed
//!   [`Repository`], [`GenericRegistry`], [`LayoutRegistry`], the
//!   [`Instrumented`](registry::Instrumented) wrapper, and [`open`](registry::open()) (a
//!   registry from a URL-like string);
//! - [`strategy`]: where images go ([`ServiceStrategy`], [`ClusterStrategy`]);
//! - [`inuse`]: which images the cluster runs (Kubernetes discovery with feature
//!   `kubernetes`);
//! - `admission` (feature `admission`): a mutating admission webhook's core, pinning every
//!   pod's images to their mirror copies;
//! - [`error`]: the one error type and its kinds;
//! - `memory` and `mock` (features `memory`, `mock`): an in-memory registry and mockall mocks
//!   for a deployer's unit tests;
//! - the machinery below: [`copy`](mod@copy) (the copy engine), [`builder`] (builds),
//!   [`eviction`], [`key`], [`reference`](mod@reference), [`digest`], [`media`],
//!   [`events`], [`telemetry`];
//! - [`kit`], for provider authors and tools built on the engine: the provider kit
//!   (`CloudRegistry` over a `ControlPlane`, configuration keys, the control-plane error,
//!   the token cache), the data plane ([`ImageStore`], the HTTP client, the OCI layout),
//!   image composition and referrers, retries;
//! - `testing` (feature `testing`): a real-registry test harness; its image fixtures alone
//!   with feature `fixtures`.
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "admission")]
#[cfg_attr(docsrs, doc(cfg(feature = "admission")))]
pub mod admission;
pub mod builder;
pub mod copy;
pub mod digest;
pub mod error;
pub mod events;
pub mod eviction;
pub mod inuse;
pub mod key;
pub mod kit;
pub mod media;
#[cfg(any(test, feature = "memory"))]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub mod memory;
pub mod mirror;
#[cfg(any(test, feature = "mock"))]
#[cfg_attr(docsrs, doc(cfg(feature = "mock")))]
pub mod mock;
#[cfg(feature = "oci-spec")]
#[cfg_attr(docsrs, doc(cfg(feature = "oci-spec")))]
pub mod oci;
mod operation;
pub mod reference;
pub mod registry;
pub mod strategy;
pub mod telemetry;
#[cfg(feature = "fixtures")]
#[cfg_attr(docsrs, doc(cfg(feature = "fixtures")))]
pub mod testing;

// The kit's modules by their short names inside the crate.
pub(crate) use kit::{image, provider, retry, store, sync};

// The deploy story first (rustdoc lists re-exports in this order): the façade and its builder,
pub use mirror::{Mirror, MirrorBuilder};

// what a deploy takes and returns,
pub use mirror::{Action, Deployment, Source, SourceCredentials, Sources, TagPolicy, Warning};

// and the maintenance calls' reports.
pub use mirror::{
    BuildPlan, BuildSpec, Inventory, InventoryImage, InventoryTotals, ProtectReport,
    RepositoryInventory, SweepReport,
};

// Errors and their kinds.
pub use error::{Error, ErrorCode, ErrorCodes, ErrorKind, Result, Side};

// The mirror registry and where images go in it.
pub use registry::{
    BuildCapability, Capabilities, GenericRegistry, LayoutRegistry, Registry, Repository,
    RepositoryScope, RepositorySettings,
};
pub use strategy::{ClusterStrategy, MirrorStrategy, ServiceStrategy, SourceId, Target};

// Values a deployer passes or reads.
pub use digest::Digest;
pub use reference::Reference;
pub use retry::RetryConfig;
pub use store::http::credentials::Credentials;

// The copy engine on its own.
pub use copy::{CopyOptions, CopyReport};
pub use events::{BlobAction, CopyEvent, EventSink};
pub use eviction::EvictionPlan;
pub use image::{copy, ImageRecord};
pub use media::{PlatformFilter, RawManifest};
pub use store::{ImageStore, StoreLocation};

// Builds.
pub use builder::{
    BuildEvent, BuildEventSink, BuildOutput, BuildRequest, Buildah, Builder, Buildx,
};

/// What a deployer needs in one `use`: the façade, sources, results, errors and their kinds,
/// the registry trait and `open`.
pub mod prelude {
    pub use crate::registry::{open, OpenOptions};
    pub use crate::{
        Action, ClusterStrategy, Deployment, Error, ErrorKind, Mirror, MirrorBuilder, Registry,
        Result, ServiceStrategy, Side, Source, Sources, TagPolicy, Warning,
    };
}
