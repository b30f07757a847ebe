//! [`Mirror::sweep`], [`Mirror::inventory`] and [`Mirror::resolve_in_use`]: the calls that
//! look after what is mirrored rather than mirror it.

use std::collections::HashSet;
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::eviction::plan_retention;
use crate::image::{image_details, ImageDetails, Listing};
use crate::reference::Reference;
use crate::registry::{Repository, RepositoryScope};
use crate::store::ImageStore;

/// Repositories an inventory lists at once (their order is kept).
const REPOSITORIES_AT_ONCE: usize = 4;

/// Images of one repository an inventory looks at at once.
const DETAILS_AT_ONCE: usize = 8;

use super::report::{Inventory, InventoryImage, RepositoryInventory, SweepReport};
use super::Mirror;

impl Mirror {
    /// Cluster mode: deletes (or with `dry_run`, only plans) the images of the cluster
    /// repository older than the retention time and not in use: not in `in_use`, and not
    /// named by the configured in-use source ([`MirrorBuilder::in_use_source`]). When that
    /// source fails, the sweep fails and deletes nothing.
    ///
    /// [`MirrorBuilder::in_use_source`]: super::MirrorBuilder::in_use_source
    pub async fn sweep(
        &self,
        now: SystemTime,
        in_use: &HashSet<Digest>,
        dry_run: bool,
    ) -> Result<SweepReport> {
        let span = tracing::info_span!(
            "sweep",
            cluster = self.core.cluster.as_str(),
            dry_run,
            deleted = tracing::field::Empty,
            error = tracing::field::Empty
        );
        let work = self.sweep_in_span(now, in_use, dry_run);
        crate::telemetry::traced(span, work, |span, r: &SweepReport| {
            span.record("deleted", r.deleted.len());
        })
        .await
    }

    async fn sweep_in_span(
        &self,
        now: SystemTime,
        in_use: &HashSet<Digest>,
        dry_run: bool,
    ) -> Result<SweepReport> {
        let core = &self.core;
        let retention = core.strategy.retention().ok_or_else(|| {
            Error::config(
                "strategy",
                "sweep needs a strategy with a retention time (Cluster mode)",
            )
        })?;
        let repository = core.registry.repository(&RepositoryScope::Cluster {
            cluster: core.cluster.clone(),
        })?;
        // What is in use first: when that cannot be told, the sweep fails and deletes nothing.
        let in_use = core.in_use(in_use).await?;
        // Anchors follow what is in use (not on a dry run): the plan below then sees the
        // anchors as they are, and native retention stops expiring what just became in use.
        let protected = if dry_run {
            super::ProtectReport::default()
        } else {
            self.protect(&in_use).await?
        };
        let listing = Listing::new(core.manifests.clone());
        let images = core.registry.list_images_in(&repository, &listing).await;
        listing.finish(repository.name());
        let images = images?;
        core.knowledge.learn_listing(repository.name(), &images);
        let plan = plan_retention(
            repository.name(),
            &images,
            &in_use.digests(),
            now,
            retention,
            core.grace,
        );
        let (deleted, mut warnings) = if dry_run {
            (Vec::new(), Vec::new())
        } else {
            core.execute(&repository, &plan).await
        };
        warnings.extend(protected.warnings.iter().cloned());
        let report = SweepReport {
            plans: vec![plan],
            deleted,
            dry_run,
            warnings,
            protected,
        };
        super::metrics::sweep(&report);
        Ok(report)
    }

    /// Every repository of the cluster with its images, tags, sizes, push times, referrers,
    /// who uses them (the configured in-use source; when it fails, the inventory says so in
    /// its warnings and shows no users), whether they are anchored, and in Cluster mode when
    /// a sweep may delete them.
    pub async fn inventory(&self) -> Result<Inventory> {
        let span = tracing::info_span!(
            "inventory",
            cluster = self.core.cluster.as_str(),
            repositories = tracing::field::Empty,
            error = tracing::field::Empty
        );
        let work = self.inventory_in_span();
        let inventory = crate::telemetry::traced(span, work, |span, inv: &Inventory| {
            span.record("repositories", inv.repositories.len());
        })
        .await?;
        super::metrics::inventory(&inventory);
        Ok(inventory)
    }

    async fn inventory_in_span(&self) -> Result<Inventory> {
        let core = &self.core;
        let mut warnings = Vec::new();
        let in_use = match core.in_use(&HashSet::new()).await {
            Ok(u) => u,
            Err(e) => {
                warnings.push(super::Warning::InUseUnknown {
                    repository: None,
                    error: e.into(),
                });
                crate::inuse::InUse::new()
            }
        };
        let listing = Listing::reading_manifests(core.manifests.clone());
        let repositories = core.registry.list_repositories(&core.cluster).await?;
        let in_use = &in_use;
        let listing = &listing;
        let repositories: Vec<RepositoryInventory> = futures::stream::iter(
            repositories
                .into_iter()
                .map(|r| async move { self.repository_inventory(r, listing, in_use).await }),
        )
        .buffered(REPOSITORIES_AT_ONCE)
        .try_collect()
        .await?;
        Ok(Inventory {
            registry: core.registry.location(),
            cluster: core.cluster.clone(),
            repositories,
            warnings,
        })
    }

    /// One repository of the inventory, listed within `listing`.
    async fn repository_inventory(
        &self,
        repository: Repository,
        listing: &Listing,
        in_use: &crate::inuse::InUse,
    ) -> Result<RepositoryInventory> {
        let result = self
            .repository_inventory_in(&repository, listing, in_use)
            .await;
        listing.finish(repository.name());
        result
    }

    async fn repository_inventory_in(
        &self,
        repository: &Repository,
        listing: &Listing,
        in_use: &crate::inuse::InUse,
    ) -> Result<RepositoryInventory> {
        let core = &self.core;
        let retention = core.strategy.retention();
        let listed = core.registry.list_images_in(repository, listing).await?;
        // The registry listed through the listing's store, or on its own: then the records
        // tell which tags (referrer tags among them) the repository has.
        let store = match listing.pass(repository.name()) {
            Some(store) => store,
            None => {
                let store =
                    listing.store(repository.name(), core.registry.store(repository).await?);
                store.learn_records(&listed);
                store
            }
        };
        // A build cache's history and leases are bookkeeping, not images.
        let history = listed
            .iter()
            .any(|i| i.tags.iter().any(|t| t == super::build::cache::HISTORY_TAG));
        let (orphans, images): (Vec<_>, Vec<_>) = listed
            .into_iter()
            .filter(|i| {
                !i.tags
                    .iter()
                    .any(|t| super::build::cache::is_cache_bookkeeping(t))
            })
            .partition(|i| i.orphan_of.is_some());
        let mut images: Vec<InventoryImage> = images.into_iter().map(InventoryImage::new).collect();
        let build_cache = history
            || repository
                .name()
                .rsplit('/')
                .next()
                .is_some_and(|last| last.starts_with("cache-"));
        let cluster_repository = retention.is_some()
            && core
                .registry
                .repository(&RepositoryScope::Cluster {
                    cluster: core.cluster.clone(),
                })
                .is_ok_and(|r| r.name() == repository.name());
        let digests: Vec<Digest> = images.iter().map(|i| i.digest.clone()).collect();
        let details: Vec<ImageDetails> = {
            let store: &dyn ImageStore = store.as_ref();
            futures::stream::iter(
                digests
                    .into_iter()
                    .map(|d| async move { image_details(store, &d).await }),
            )
            .buffered(DETAILS_AT_ONCE)
            .try_collect()
            .await?
        };
        for (img, details) in images.iter_mut().zip(details) {
            img.size = Some(
                img.size
                    .unwrap_or(details.size)
                    .saturating_add(details.referrers_size),
            );
            img.referrers = details.referrers;
            img.in_use_by = in_use.users(&img.digest);
            if cluster_repository {
                img.expires_at = match (img.pushed_at, retention) {
                    // A push time and a retention no calendar can add: no expiry shown.
                    (Some(at), Some(r)) => at.checked_add(r),
                    _ => None,
                };
            }
        }
        images.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.digest.cmp(&b.digest)));
        let roots: Vec<Digest> = images.iter().map(|i| i.digest.clone()).collect();
        let stored_bytes = crate::image::stored_size(store.as_ref(), &roots).await?;
        Ok(RepositoryInventory {
            repository: repository.name().to_string(),
            images,
            orphaned_referrers: orphans.len(),
            build_cache,
            stored_bytes,
        })
    }

    /// What is in use now: `digests` (the caller's) and what the configured in-use source
    /// says ([`MirrorBuilder::in_use_source`](super::MirrorBuilder::in_use_source)), resolved
    /// in the mirror registry, with who uses each. An error when the source cannot tell.
    pub async fn in_use(&self, digests: &HashSet<Digest>) -> Result<crate::inuse::InUse> {
        self.core.in_use(digests).await
    }

    /// Resolves in-use references to digests: digests are taken as they are, tags are looked
    /// up in the mirror registry when the reference points at it (errors otherwise).
    pub async fn resolve_in_use(&self, refs: &[String]) -> Result<HashSet<Digest>> {
        let mut out = HashSet::new();
        for r in refs {
            if let Some((_, d)) = r.rsplit_once('@') {
                out.insert(Digest::parse(d)?);
                continue;
            }
            if let Ok(d) = Digest::parse(r) {
                out.insert(d);
                continue;
            }
            let reference = Reference::parse(r)?;
            let store = self
                .core
                .registry
                .store(&Repository::listed(reference.repository()))
                .await?;
            let tag = reference.manifest_reference();
            match store.head_manifest(&tag).await? {
                Some(h) => {
                    out.insert(h.digest);
                }
                None => return Err(Error::manifest_not_found(r.clone())),
            }
        }
        Ok(out)
    }
}
