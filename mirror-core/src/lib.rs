//! Keeps every image a Kubernetes cluster runs in a mirror registry next to that cluster.
//!
//! # Layout
//!
//! - [`reference`](mod@reference): image references, parsed and normalised as Docker does;
//! - [`digest`]: content digests and streaming verification;
//! - [`media`]: manifest media types and the parts of manifests the copy engine follows;
//! - [`store`]: the [`ImageStore`] trait (the data plane) with its HTTP registry client
//!   ([`store::http`]) and OCI image layout ([`store::layout`]) implementations;
//! - [`copy`](mod@copy): the copy engine, from any store to any store;
//! - [`image`]: image composition: what belongs to an image, [`ImageRecord`], the one
//!   sequence that places an image;
//! - [`registry`]: the [`Registry`] trait (a cluster's mirror registry, the provider plug-in
//!   point) keyed by a typed [`Repository`], [`GenericRegistry`], [`LayoutRegistry`], the
//!   [`Instrumented`](registry::Instrumented) wrapper, and [`open`](registry::open()) (a
//!   registry from a URL-like string);
//! - [`provider`]: the provider kit (token cache, control-plane error, configuration keys);
//! - [`strategy`]: where images go ([`ServiceStrategy`], [`ClusterStrategy`]);
//! - [`eviction`]: pure eviction and retention plans;
//! - [`key`]: build keys and their tags;
//! - [`builder`]: the [`Builder`] trait, its `buildah` and `docker buildx`
//!   backends, what to build ([`BuildSpec`]) and Dockerfile `ARG` scanning;
//! - [`mirror`]: the [`Mirror`] façade a deployer calls (deploy, build, sweep, inventory);
//! - `admission` (feature `admission`): a mutating admission webhook's core, pinning every
//!   pod's images to their mirror copies;
//! - [`events`]: progress events;
//! - [`retry`]: the retry policy;
//! - [`error`]: the one error type;
//! - `testing` (feature `testing`): a real-registry test harness; its image fixtures alone
//!   with feature `fixtures`.
//!
//! # Example
//!
//! Copy an image between two OCI layouts (the same call copies between registries):
//!
//! ```no_run
//! # async fn demo() -> mirror_core::Result<()> {
//! use mirror_core::{copy, CopyOptions, store::layout::LayoutStore};
//! let src = LayoutStore::open("/tmp/src")?;
//! let dst = LayoutStore::create("/tmp/dst")?;
//! let report = copy(&src, "v1", &dst, "v1", &CopyOptions::default()).await?;
//! println!("{} blobs uploaded, {} bytes", report.blobs_uploaded, report.bytes_uploaded);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "admission")]
pub mod admission;
pub mod builder;
pub mod copy;
pub mod digest;
pub mod error;
pub mod events;
pub mod eviction;
pub mod image;
pub mod inuse;
pub mod key;
pub mod media;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod mirror;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
pub mod provider;
pub mod reference;
pub mod registry;
pub mod retry;
pub mod store;
pub mod strategy;
pub mod sync;
pub mod telemetry;
#[cfg(feature = "fixtures")]
pub mod testing;

pub use builder::{
    BuildEvent, BuildEventSink, BuildOutput, BuildRequest, Buildah, Builder, Buildx,
};
pub use copy::{CopyOptions, CopyReport};
pub use digest::Digest;
pub use error::{Error, ErrorCode, ErrorCodes, ErrorKind, Result, Side};
pub use events::{BlobAction, CopyEvent, EventSink};
pub use eviction::EvictionPlan;
pub use image::{copy, ImageRecord};
pub use media::{PlatformFilter, RawManifest};
pub use mirror::{
    Action, BuildPlan, BuildSpec, Deployment, Inventory, InventoryImage, InventoryTotals, Mirror,
    MirrorBuilder, ProtectReport, RepositoryInventory, Source, SourceCredentials, Sources,
    SweepReport, TagPolicy, Warning,
};
pub use reference::Reference;
pub use registry::{
    BuildCapability, Capabilities, GenericRegistry, LayoutRegistry, Registry, Repository,
    RepositoryScope, RepositorySettings,
};
pub use store::{ImageStore, StoreLocation};
pub use strategy::{ClusterStrategy, MirrorStrategy, ServiceStrategy, SourceId, Target};
