//! [`Mirror::protect`]: anchor tags on the images in use, so that the native retention
//! policies the library writes (ECR lifecycle rules, Artifact Registry cleanup policies) never
//! expire what the cluster may pull again.
//!
//! An anchored image carries `mirror.anchor.<hex of its digest>`
//! ([`crate::image::anchor_tag`]); listings fold the tag into
//! [`ImageRecord::anchored`](crate::ImageRecord::anchored) and never show it. Anchors are
//! written only on registries with the [`AnchorCapability`](crate::registry::AnchorCapability): on
//! the others retention is the library's own (`sweep`, eviction), which asks the in-use source
//! itself.

use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::image::{anchor_tag, handed_out_tag};
use crate::inuse::InUse;
use crate::registry::Repository;

use super::Mirror;

/// What [`Mirror::protect`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProtectReport {
    /// Images that got an anchor: `(repository, digest)`.
    pub anchored: Vec<(String, Digest)>,
    /// Images whose anchor was removed (no longer in use).
    pub released: Vec<(String, Digest)>,
    /// Anchors that could not be set or removed; the next call tries again.
    pub warnings: Vec<super::Warning>,
}

impl Mirror {
    /// Anchors the images of `in_use` in every repository of the cluster and releases the
    /// anchors of images no longer in use. A no-op on registries without
    /// the [`AnchorCapability`](crate::registry::AnchorCapability). Failures on single images are
    /// warnings in the report; a listing that fails is an error.
    ///
    /// [`Mirror::sweep`] and, in Cluster mode, every deploy call it with what the in-use
    /// source says (when one is configured).
    pub async fn protect(&self, in_use: &InUse) -> Result<ProtectReport> {
        let core = &self.core;
        let mut report = ProtectReport::default();
        if core.registry.anchors().is_none() {
            return Ok(report);
        }
        for repository in core.registry.list_repositories(&core.cluster).await? {
            self.protect_in(&repository, in_use, &mut report).await?;
        }
        Ok(report)
    }

    /// [`Mirror::protect`] for one repository.
    pub(super) async fn protect_in(
        &self,
        repository: &Repository,
        in_use: &InUse,
        report: &mut ProtectReport,
    ) -> Result<()> {
        let core = &self.core;
        let Some(anchors) = core.registry.anchors() else {
            return Ok(());
        };
        let images = core.registry.list_images(repository).await?;
        core.knowledge.learn_listing(repository.name(), &images);
        let store = core.registry.store(repository).await?;
        let now = core.now();
        for image in images.iter().filter(|i| i.orphan_of.is_none()) {
            // A hand-out mark that has passed protects nothing: removed (the listing shows
            // the latest one only; older ones are removed when they are the latest).
            if let Some(until) = image.protected_until.filter(|u| *u <= now) {
                let mark = handed_out_tag(until, &image.digest);
                match anchors.remove_tag(repository, &mark, &image.digest).await {
                    Ok(()) => report
                        .released
                        .push((repository.name().to_string(), image.digest.clone())),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => report.warnings.push(super::Warning::AnchorFailed {
                        repository: repository.name().to_string(),
                        digest: Some(image.digest.clone()),
                        error: super::warning::Cause::context(
                            &format!("could not remove the passed hand-out mark {mark}"),
                            e,
                        ),
                    }),
                }
            }
            let wanted = in_use.contains(&image.digest);
            let tag = anchor_tag(&image.digest);
            if wanted && !image.anchored {
                let anchored = async {
                    let manifest = store.get_manifest(&image.digest.to_string()).await?;
                    store.put_manifest(&tag, &manifest).await
                }
                .await;
                match anchored {
                    Ok(_) => {
                        tracing::info!(repository = %repository, digest = %image.digest, "anchored an image in use");
                        report
                            .anchored
                            .push((repository.name().to_string(), image.digest.clone()));
                    }
                    Err(e) => report.warnings.push(super::Warning::AnchorFailed {
                        repository: repository.name().to_string(),
                        digest: Some(image.digest.clone()),
                        error: super::warning::Cause::context("could not set it", e),
                    }),
                }
            } else if !wanted && image.anchored {
                match anchors.remove_tag(repository, &tag, &image.digest).await {
                    Ok(()) => {
                        tracing::info!(repository = %repository, digest = %image.digest, "released the anchor of an image no longer in use");
                        report
                            .released
                            .push((repository.name().to_string(), image.digest.clone()));
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => report.warnings.push(super::Warning::AnchorFailed {
                        repository: repository.name().to_string(),
                        digest: Some(image.digest.clone()),
                        error: super::warning::Cause::context("could not release it", e),
                    }),
                }
            }
        }
        Ok(())
    }
}
