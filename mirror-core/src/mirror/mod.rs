//! [`Mirror`]: the façade a deployer calls before Kubernetes deploys.
//!
//! `mirror(service, source)` returns a [`Deployment`] whose `pull_reference` is pinned by digest
//! and lives in the cluster's mirror registry:
//!
//! 1. The strategy names the target repository and tag; the tag carries the source's identity
//!    (registry, repository, tag, digest: see [`crate::strategy`]), so what a tag holds was
//!    mirrored from exactly that source. The repository is ensured once per `Mirror` (cached).
//! 2. Present at the target → skip, with manifest HEADs only. With [`TagPolicy::Verify`] (the
//!    default) the source tag is HEADed too: a different digest means the tag was re-pushed
//!    (a *mutable tag*), so the image is mirrored again with a warning; an unreachable source
//!    returns the mirrored copy with a warning, because surviving source outages is why we
//!    mirror. [`TagPolicy::Trust`] never contacts the source when the tag is present.
//! 3. Digests first: a source pinned by digest that the target repository holds is only
//!    tagged; one another repository of the mirror holds is copied from there by mount.
//!    Neither asks the source.
//! 4. Absent → copy. Blobs already in another repository of the cluster holding the same image
//!    are mounted, so deploying one image for a second service uploads nothing. On registries
//!    that cannot tell push times, a bookkeeping tag is written first (see [`crate::image`]).
//! 5. Service mode → evict the service's other images, except the `keep_previous` newest, the
//!    caller's in-use set, and images pushed or handed out within the grace period (another
//!    deployer may have just pushed them). Eviction failures are warnings: the deployment
//!    itself succeeded.
//! 6. What a deploy hands out stays until its pods can start: a skip of an image that could be
//!    deleted within the grace period leaves a hand-out mark (see the `handout` module).
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
//!
//! # Layout
//!
//! - `source`: [`Source`] and [`Sources`];
//! - `report`: what the calls return;
//! - `core`: the private core every call goes through (ensure once, place, evict, hand out);
//! - `handout`: what a deploy handed out stays until its pods can start (marks, knowledge);
//! - `deploy`: [`Mirror::mirror`]; `build`: [`Mirror::build`]; `maintain`: [`Mirror::sweep`],
//!   [`Mirror::inventory`], [`Mirror::resolve_in_use`].

mod build;
mod core;
#[cfg(all(test, feature = "fixtures"))]
mod decisions;
mod deploy;
mod handout;
mod in_use;
mod maintain;
mod metrics;
mod protect;
mod report;
mod source;
mod warning;

use std::sync::Arc;
use std::time::Duration;

use crate::copy::CopyOptions;
use crate::error::Result;
use crate::image::referrers::ReferrerOptions;
use crate::inuse::InUseSource;
use crate::registry::Registry;
use crate::strategy::{MirrorStrategy, ServiceStrategy};

pub use build::cache::{
    is_cache_bookkeeping, ARTIFACT_TYPE as CACHE_ARTIFACT_TYPE, DEFAULT_CACHE_BUILDS,
    HISTORY_TAG as CACHE_HISTORY_TAG, LEASE_TAG_PREFIX as CACHE_LEASE_TAG_PREFIX,
};
pub use build::{BuildPlan, BuildSpec};
pub use protect::ProtectReport;
pub use report::{
    Action, Deployment, Inventory, InventoryImage, InventoryTotals, RepositoryInventory,
    SweepReport, TagPolicy,
};
pub use source::{Source, SourceCredentials, Sources};
pub use warning::{Cause, Warning};

use self::core::Core;

/// Builds a [`Mirror`].
#[derive(Debug)]
pub struct MirrorBuilder {
    registry: Arc<dyn Registry>,
    cluster: String,
    strategy: Arc<dyn MirrorStrategy>,
    tag_policy: TagPolicy,
    grace: Duration,
    copy: CopyOptions,
    referrers: ReferrerOptions,
    sources: Arc<Sources>,
    in_use: Option<Arc<dyn InUseSource>>,
    clock: Arc<dyn crate::retry::Clock>,
    manifest_cache: usize,
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

    /// Images pushed or handed out less than this ago are never deleted (default 10
    /// minutes): not by eviction (another deployer may have just pushed them), not by
    /// `sweep`, not by a native retention policy the library wrote (a deploy handed them out
    /// and their pods may not have started yet; see [`Mirror::mirror`]). Zero turns the
    /// protection off (one deployer only, pods started before anything is deleted).
    pub fn eviction_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Copy options (concurrency, platforms, progress events). Their `referrers` are
    /// replaced by [`referrers`](Self::referrers).
    pub fn copy_options(mut self, o: CopyOptions) -> Self {
        self.copy = o;
        self
    }

    /// Which referrers (signatures, SBOMs, attestations) travel with every image deployed or
    /// built (default: all of them, [`ReferrerOptions::all`]; [`ReferrerOptions::none`] turns
    /// them off).
    pub fn referrers(mut self, r: ReferrerOptions) -> Self {
        self.referrers = r;
        self
    }

    /// How sources are opened (credentials per registry).
    pub fn sources(mut self, s: Sources) -> Self {
        self.sources = Arc::new(s);
        self
    }

    /// Where the images the cluster uses are found (for example
    /// [`KubernetesInUse`](crate::inuse::kubernetes::KubernetesInUse)): consulted before every
    /// eviction, sweep and inventory, with the digests the caller passes. When it fails,
    /// eviction and sweep delete nothing (see [`crate::inuse`]).
    pub fn in_use_source(mut self, source: Arc<dyn InUseSource>) -> Self {
        self.in_use = Some(source);
        self
    }

    /// The wall clock push times, grace periods and hand-out marks are read from (default:
    /// the system's; tests pass a [`ManualClock`](crate::retry::ManualClock)).
    pub fn clock(mut self, clock: Arc<dyn crate::retry::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How many bytes of manifests the `Mirror` keeps between its listings (default
    /// [`DEFAULT_CACHE_BYTES`](crate::image::DEFAULT_CACHE_BYTES), 32 MiB): an inventory taken
    /// again reads only the manifests it does not hold (manifests are immutable by digest;
    /// see [`ManifestCache`](crate::image::ManifestCache)). 0 keeps none.
    pub fn manifest_cache(mut self, max_bytes: usize) -> Self {
        self.manifest_cache = max_bytes;
        self
    }

    /// Validates the cluster id and builds.
    pub fn build(mut self) -> Result<Mirror> {
        crate::registry::id_component("cluster", &self.cluster, 48)?;
        self.copy.referrers = self.referrers;
        let core = Core {
            registry: self.registry,
            cluster: self.cluster,
            strategy: self.strategy,
            tag_policy: self.tag_policy,
            grace: self.grace,
            copy: self.copy,
            sources: self.sources,
            in_use_source: self.in_use,
            clock: self.clock,
            knowledge: Default::default(),
            manifests: crate::image::ManifestCache::new(self.manifest_cache),
            ensured: Default::default(),
            inflight: Default::default(),
            locations: Default::default(),
        };
        Ok(Mirror { core })
    }
}

/// The façade a deployer calls: mirror, build, sweep, inventory.
#[derive(Debug)]
pub struct Mirror {
    core: Core,
}

/// Default eviction grace period.
pub(crate) const DEFAULT_EVICTION_GRACE: Duration = Duration::from_secs(600);

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
            referrers: ReferrerOptions::all(),
            sources: Arc::new(Sources::new()),
            in_use: None,
            clock: crate::retry::system_clock(),
            manifest_cache: crate::image::DEFAULT_CACHE_BYTES,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<dyn Registry> {
        &self.core.registry
    }

    /// The cluster id.
    pub fn cluster(&self) -> &str {
        &self.core.cluster
    }

    /// The manifests this `Mirror` keeps between its listings, and how they were used.
    pub fn manifest_cache(&self) -> crate::image::CacheStats {
        self.core.manifests.stats()
    }

    /// Which registry `error` (of a call of this `Mirror`) comes from: the mirror registry
    /// when it names the mirror's host, a source when it names another registry, else
    /// unknown. For an `Unauthorized` or `NotFound`, whether the source or the mirror
    /// refused.
    pub fn side_of(&self, error: &crate::Error) -> crate::Side {
        let mirror = self.core.registry.location();
        let mirror_host = mirror.split('/').next().unwrap_or(&mirror);
        match error.registry() {
            None => crate::Side::Unknown,
            // A control plane's errors name `<provider>:<host>`.
            Some(r) if r == mirror_host || r.ends_with(&format!(":{mirror_host}")) => {
                crate::Side::Mirror
            }
            Some(_) => crate::Side::Source,
        }
    }
}
