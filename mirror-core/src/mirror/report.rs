//! What `Mirror`'s calls return: [`Deployment`], [`SweepReport`], [`Inventory`].

use serde::Serialize;

use crate::digest::Digest;
use crate::eviction::EvictionPlan;
use crate::image::referrers::ReferrerReport;
use crate::image::ImageRecord;
use crate::inuse::Workload;

/// What to do when the target tag is already mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TagPolicy {
    /// HEAD the source; mirror again if the tag now names another digest (the default).
    #[default]
    Verify,
    /// Never contact the source when the tag is present.
    Trust,
}

/// What `mirror` did with the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Already mirrored: nothing copied.
    Skipped,
    /// Copied (first time).
    Copied,
    /// Copied again because the source tag now names another digest.
    Recopied,
    /// Built from source by [`Mirror::build`](crate::Mirror::build) (blob counts cover the
    /// mount from the staging repository, not the builder's own upload).
    Built,
}

/// The result of mirroring one image for one service.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    /// The service.
    pub service: String,
    /// The source as given.
    pub source: String,
    /// The digest-pinned reference Kubernetes should pull (`host/repo@sha256:…`).
    pub pull_reference: String,
    /// The target repository.
    pub repository: String,
    /// The target tag.
    pub tag: String,
    /// The image digest.
    pub digest: Digest,
    /// What was done.
    pub action: Action,
    /// Blobs mounted from other repositories.
    pub blobs_mounted: usize,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Images deleted by eviction.
    pub evicted: Vec<Digest>,
    /// Builds: entries of the build cache no recent build used, deleted after this build
    /// (see [`Mirror::build`](crate::Mirror::build)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_evicted: Vec<Digest>,
    /// The image's referrers found at the source and copied, by artifact type (empty when
    /// nothing was copied).
    pub referrers: ReferrerReport,
    /// Things a person (or the deployer) should know: mutable tag, served from the mirror
    /// because the source is down, eviction failures… (see [`Warning`](super::Warning)).
    pub warnings: Vec<super::Warning>,
}

/// The result of a sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    /// The repositories swept and their plans.
    pub plans: Vec<EvictionPlan>,
    /// Images deleted (empty on a dry run).
    pub deleted: Vec<Digest>,
    /// True when nothing was deleted on purpose.
    pub dry_run: bool,
    /// Deletions and anchor changes that failed.
    pub warnings: Vec<super::Warning>,
    /// The anchors set and released before the plan (registries with native retention).
    pub protected: super::ProtectReport,
}

/// One repository of the inventory.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryInventory {
    /// The repository name.
    pub repository: String,
    /// Its images, newest first.
    pub images: Vec<InventoryImage>,
    /// Referrers of no image listed here (see [`ImageRecord::orphan_of`]): not shown as
    /// images; the next eviction or sweep deletes those whose subject is not in use.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub orphaned_referrers: usize,
    /// The remote cache of builds (its entries are the images listed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build_cache: bool,
    /// What the repository stores, each blob counted once (entries of a build cache share
    /// most of their layers; the images' `size` counts each image whole).
    pub stored_bytes: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What the mirror holds for a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    /// The registry.
    pub registry: String,
    /// The cluster.
    pub cluster: String,
    /// Repositories with their images.
    pub repositories: Vec<RepositoryInventory>,
    /// What the inventory could not find out (an in-use source that failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<super::Warning>,
}

/// What an [`Inventory`] adds up to for the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct InventoryTotals {
    /// Repositories.
    pub repositories: usize,
    /// Images (build cache entries included).
    pub images: usize,
    /// Images some workload uses.
    pub in_use: usize,
    /// Bytes stored, each blob counted once per repository.
    pub stored_bytes: u64,
}

impl Inventory {
    /// The cluster's totals.
    pub fn totals(&self) -> InventoryTotals {
        let images = self.repositories.iter().flat_map(|r| &r.images);
        InventoryTotals {
            repositories: self.repositories.len(),
            images: images.clone().count(),
            in_use: images.filter(|i| !i.in_use_by.is_empty()).count(),
            stored_bytes: self
                .repositories
                .iter()
                .fold(0u64, |sum, r| sum.saturating_add(r.stored_bytes)),
        }
    }
}

/// An image as an inventory shows it: what the registry lists ([`ImageRecord`], reached
/// through `Deref`) and what the inventory found out about it. In JSON, one object: the
/// record's fields, then `in_use_by` and `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryImage {
    /// What the registry lists.
    #[serde(flatten)]
    pub image: ImageRecord,
    /// Who uses it (the configured in-use source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub in_use_by: Vec<Workload>,
    /// In Cluster mode, when a sweep may delete it (push time plus retention) unless it is
    /// then in use.
    #[serde(
        serialize_with = "crate::image::opt_unix::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires_at: Option<std::time::SystemTime>,
}

impl InventoryImage {
    /// `image` with nothing found out yet.
    pub fn new(image: ImageRecord) -> Self {
        InventoryImage {
            image,
            in_use_by: Vec::new(),
            expires_at: None,
        }
    }
}

impl std::ops::Deref for InventoryImage {
    type Target = ImageRecord;
    fn deref(&self) -> &ImageRecord {
        &self.image
    }
}

impl std::ops::DerefMut for InventoryImage {
    fn deref_mut(&mut self) -> &mut ImageRecord {
        &mut self.image
    }
}
