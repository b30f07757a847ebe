//! [`Mirror::sweep`], [`Mirror::inventory`] and [`Mirror::resolve_in_use`]: the calls that
//! look after what is mirrored rather than mirror it.

use std::collections::HashSet;
use std::time::SystemTime;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::eviction::plan_retention;
use crate::image::image_details;
use crate::reference::Reference;
use crate::registry::{Repository, RepositoryScope};

use super::report::{Inventory, RepositoryInventory, SweepReport};
use super::Mirror;

impl Mirror {
    /// Cluster mode: deletes (or with `dry_run`, only plans) the images of the cluster
    /// repository older than the retention time and not in `in_use`.
    pub async fn sweep(
        &self,
        now: SystemTime,
        in_use: &HashSet<Digest>,
        dry_run: bool,
    ) -> Result<SweepReport> {
        let core = &self.core;
        let retention = core.strategy.retention().ok_or_else(|| {
            Error::Config("sweep needs a strategy with a retention time (Cluster mode)".into())
        })?;
        let repository = core.registry.repository(&RepositoryScope::Cluster {
            cluster: core.cluster.clone(),
        })?;
        let images = core.registry.list_images(&repository).await?;
        let plan = plan_retention(repository.name(), &images, in_use, now, retention);
        let (deleted, warnings) = if dry_run {
            (Vec::new(), Vec::new())
        } else {
            core.execute(&repository, &plan).await
        };
        Ok(SweepReport {
            plans: vec![plan],
            deleted,
            dry_run,
            warnings,
        })
    }

    /// Every repository of the cluster with its images, tags, sizes and push times.
    pub async fn inventory(&self) -> Result<Inventory> {
        let core = &self.core;
        let mut repositories = Vec::new();
        for repository in core.registry.list_repositories(&core.cluster).await? {
            let (orphans, mut images): (Vec<_>, Vec<_>) = core
                .registry
                .list_images(&repository)
                .await?
                .into_iter()
                .partition(|i| i.orphan_of.is_some());
            let store = core.registry.store(&repository).await?;
            for img in &mut images {
                let details = image_details(store.as_ref(), &img.digest).await?;
                img.size = Some(img.size.unwrap_or(details.size) + details.referrers_size);
                img.referrers = details.referrers;
            }
            images.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.digest.cmp(&b.digest)));
            repositories.push(RepositoryInventory {
                repository: repository.name().to_string(),
                images,
                orphaned_referrers: orphans.len(),
            });
        }
        Ok(Inventory {
            registry: core.registry.location(),
            cluster: core.cluster.clone(),
            repositories,
        })
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
