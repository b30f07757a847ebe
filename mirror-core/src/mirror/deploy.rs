//! [`Mirror::mirror`]: copy (or find) an image for a service and evict the service's old ones.

use std::collections::HashSet;
use std::sync::Arc;

use crate::digest::Digest;
use crate::error::Result;
use crate::image::SourceImage;
use crate::store::ImageStore;

use super::handout::Deleter;
use super::report::{Action, Deployment, TagPolicy};
use super::source::Source;
use super::warning::Warning;
use super::Mirror;

impl Mirror {
    /// Mirrors `source` for `service` with an empty in-use set.
    pub async fn mirror(&self, service: &str, source: &Source) -> Result<Deployment> {
        self.mirror_with(service, source, &HashSet::new()).await
    }

    /// Mirrors `source` for `service`; eviction keeps every digest in `in_use`.
    pub async fn mirror_with(
        &self,
        service: &str,
        source: &Source,
        in_use: &HashSet<Digest>,
    ) -> Result<Deployment> {
        self.mirror_from(service, source, in_use, &self.core.sources)
            .await
    }

    /// [`mirror_with`](Self::mirror_with), opening the source through `sources` instead of
    /// the `Mirror`'s own (credentials that hold for this one call: an admitted pod's pull
    /// secrets, see `crate::admission`).
    pub async fn mirror_from(
        &self,
        service: &str,
        source: &Source,
        in_use: &HashSet<Digest>,
        sources: &super::Sources,
    ) -> Result<Deployment> {
        let mode = if self.core.strategy.retention().is_some() {
            "cluster"
        } else {
            "service"
        };
        let span = crate::telemetry::deploy_span("deploy", &self.core.cluster, service, mode);
        span.record("source", tracing::field::display(source));
        let work = self.mirror_once(service, source, in_use, sources);
        self.traced_deploy(span, mode, work).await
    }

    async fn mirror_once(
        &self,
        service: &str,
        source: &Source,
        in_use: &HashSet<Digest>,
        sources: &super::Sources,
    ) -> Result<Deployment> {
        let core = &self.core;
        let target = core
            .strategy
            .target(&core.cluster, service, &source.id_async().await?)?;
        let repository = core.registry.repository(&target.scope)?;
        // No control-plane call before the HEAD: an image already mirrored (the common
        // call) costs the HEADs only; the repository is ensured on a miss.
        let dst = core.registry.store(&repository).await?;
        let mut warnings = Vec::new();
        let src_ref = source.reference();
        let deployment = |digest: Digest, action: Action, warnings: Vec<Warning>| Deployment {
            warnings,
            ..core.deployment(
                service,
                source.to_string(),
                &repository,
                target.tag.clone(),
                digest,
                action,
            )
        };
        let deleter = self.deleter();

        // The tag names the source (see `crate::strategy`): what it holds was mirrored from
        // exactly this source, never from another with the same tag.
        let existing = head_or_absent(dst.as_ref(), &target.tag).await?;
        let mut action = Action::Copied;
        let mut src_store: Option<Arc<dyn ImageStore>> = None;
        if let Some(head) = &existing {
            let current = match (source.pinned(), core.tag_policy) {
                (Some(d), _) => d == &head.digest,
                (None, TagPolicy::Trust) => true,
                (None, TagPolicy::Verify) => {
                    let checked = match sources.open(source).await {
                        Ok(s) => {
                            let r = s.head_manifest(&src_ref).await;
                            src_store = Some(s);
                            r
                        }
                        Err(e) => Err(e),
                    };
                    match checked {
                        Ok(Some(h)) => h.digest == head.digest,
                        Ok(None) => {
                            warnings.push(Warning::SourceGone {
                                source: source.to_string(),
                                served: head.digest.clone(),
                            });
                            true
                        }
                        Err(crate::Error::RateLimited { retry_after, .. }) => {
                            warnings.push(Warning::SourceRateLimited {
                                source: source.to_string(),
                                served: head.digest.clone(),
                                retry_after_secs: retry_after.map(|d| d.as_secs()),
                            });
                            true
                        }
                        Err(e) => {
                            warnings.push(Warning::SourceUnreachable {
                                source: source.to_string(),
                                served: head.digest.clone(),
                                error: e.into(),
                            });
                            true
                        }
                    }
                }
            };
            if current {
                if src_store.is_some() {
                    rate_limit_warning(sources, source, &mut warnings);
                }
                core.hand_out(
                    &repository,
                    dst.as_ref(),
                    &head.digest,
                    deleter,
                    &mut warnings,
                )
                .await;
                let mut d = deployment(head.digest.clone(), Action::Skipped, warnings);
                let refresh = &core.copy.referrers;
                if refresh.enabled
                    && refresh.refresh_on_skip
                    && !d.warnings.iter().any(Warning::served_from_mirror)
                {
                    let refreshed = self
                        .refresh_referrers(source, sources, src_store, dst.as_ref(), &head.digest)
                        .await;
                    match refreshed {
                        Ok(r) => {
                            refused_referrers(source, &head.digest, &r, &mut d.warnings);
                            d.referrers = r;
                        }
                        Err(e) => d.warnings.push(Warning::ReferrersNotRefreshed {
                            source: source.to_string(),
                            digest: head.digest.clone(),
                            error: e.into(),
                        }),
                    }
                }
                return Ok(d);
            }
            warnings.push(Warning::MutableTag {
                source: source.to_string(),
                previous: head.digest.clone(),
            });
            action = Action::Recopied;
        }

        // Digests first: a digest names one image, wherever it is held. The repository
        // holding it needs only the tag; another repository of the mirror lends it by mount.
        // Neither asks the source anything.
        if let (Some(pinned), None) = (source.pinned(), &existing) {
            if head_or_absent(dst.as_ref(), &pinned.to_string())
                .await?
                .is_some()
            {
                let manifest = dst.get_manifest(&pinned.to_string()).await?;
                dst.put_manifest(&target.tag, &manifest).await?;
                core.remember(pinned, &repository);
                core.hand_out(&repository, dst.as_ref(), pinned, deleter, &mut warnings)
                    .await;
                return Ok(deployment(pinned.clone(), Action::Skipped, warnings));
            }
        }

        core.ensure(&repository, &core.strategy.settings()).await?;
        let lent = match (source.pinned(), &existing) {
            (Some(pinned), None) => {
                self.place_from_lender(&repository, dst.as_ref(), pinned, &target.tag)
                    .await?
            }
            _ => None,
        };
        let report = match lent {
            Some(report) => report,
            None => {
                // One HEAD of the source gives the digest for the single flight, the mount
                // sources and the bookkeeping tag; a failed HEAD leaves the error to the copy
                // itself.
                let (src, source_digest) = open_source(source, sources, src_store).await?;
                let source_digest = source_digest.ok().flatten();
                let report = core
                    .place(
                        SourceImage {
                            store: src.as_ref(),
                            reference: &src_ref,
                            digest: source_digest.as_ref(),
                        },
                        dst.as_ref(),
                        &repository,
                        &target.tag,
                        core.copy.clone(),
                    )
                    .await?;
                rate_limit_warning(sources, source, &mut warnings);
                report
            }
        };
        refused_referrers(source, &report.digest, &report.referrers, &mut warnings);
        if report.referrers.index_referrers_left > 0 {
            warnings.push(Warning::IndexReferrersLeft {
                source: source.to_string(),
                digest: report.digest.clone(),
                count: report.referrers.index_referrers_left,
            });
        }
        if report.already_present && action == Action::Copied {
            // Another call copied it while this one waited for it, or the repository held
            // the manifest under another tag.
            action = Action::Skipped;
        }
        if report.already_present {
            core.hand_out(
                &repository,
                dst.as_ref(),
                &report.digest,
                deleter,
                &mut warnings,
            )
            .await;
        }

        let mut evicted = Vec::new();
        if core.strategy.evict_after_deploy() {
            match core
                .evict(
                    &repository,
                    &report.digest,
                    in_use,
                    core.strategy.keep_previous(),
                )
                .await
            {
                Ok((gone, mut w)) => {
                    evicted = gone;
                    warnings.append(&mut w);
                }
                Err(e) => warnings.push(Warning::eviction_error(&repository, e)),
            }
        }
        if let Err(e) = self.protect_after_deploy(&repository, &mut warnings).await {
            warnings.push(Warning::AnchorFailed {
                repository: repository.name().to_string(),
                digest: None,
                error: e.into(),
            });
        }
        Ok(Deployment {
            blobs_mounted: report.blobs_mounted,
            blobs_uploaded: report.blobs_uploaded,
            bytes_uploaded: report.bytes_uploaded,
            evicted,
            referrers: report.referrers.clone(),
            ..deployment(report.digest.clone(), action, warnings)
        })
    }

    /// Runs `work` (a deploy or a build in `mode`) in `span` and counts it in the metrics.
    pub(super) async fn traced_deploy(
        &self,
        span: tracing::Span,
        mode: &'static str,
        work: impl std::future::Future<Output = Result<Deployment>>,
    ) -> Result<Deployment> {
        let started = std::time::Instant::now();
        let d = crate::telemetry::traced(span, work, super::metrics::deployed)
            .await
            .inspect_err(|_| super::metrics::deploy_failed(mode))?;
        super::metrics::deploy(&d, mode, started.elapsed());
        Ok(d)
    }

    /// Copies the image `digest` into `repository` from another repository of the mirror
    /// that holds it (blobs mounted, manifests copied, referrers with them), tagged `tag`:
    /// a digest names one image, so no source request is needed. `None` when no other
    /// repository holds it (a remembered location that no longer does is passed over).
    async fn place_from_lender(
        &self,
        repository: &crate::registry::Repository,
        dst: &dyn ImageStore,
        digest: &Digest,
        tag: &str,
    ) -> Result<Option<crate::copy::CopyReport>> {
        let core = &self.core;
        for lender in core.repositories_holding(repository, digest).await {
            let store = core.registry.store(&lender).await?;
            if head_or_absent(store.as_ref(), &digest.to_string())
                .await?
                .is_none()
            {
                continue;
            }
            let mut options = core.copy.clone();
            options.mount_from = vec![lender.name().to_string()];
            let placed = core
                .place(
                    SourceImage {
                        store: store.as_ref(),
                        reference: &digest.to_string(),
                        digest: Some(digest),
                    },
                    dst,
                    repository,
                    tag,
                    options,
                )
                .await;
            match placed {
                Ok(report) => return Ok(Some(report)),
                // Deleted by its own eviction meanwhile: try another, else the source.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// What could delete an image this `Mirror`'s strategy places (see [`super::handout`]).
    fn deleter(&self) -> Deleter {
        match self.core.strategy.retention() {
            Some(r) => Deleter::Retention(r),
            None => Deleter::Eviction {
                keep_previous: if self.core.strategy.evict_after_deploy() {
                    self.core.strategy.keep_previous()
                } else {
                    usize::MAX
                },
            },
        }
    }

    /// Cluster mode on a registry with native retention and an in-use source: the anchors of
    /// `repository` follow what is in use, so that the native policy does not expire an
    /// image the cluster still runs before the next sweep.
    async fn protect_after_deploy(
        &self,
        repository: &crate::registry::Repository,
        warnings: &mut Vec<Warning>,
    ) -> Result<()> {
        let core = &self.core;
        if core.strategy.retention().is_none()
            || core.in_use_source.is_none()
            || core.registry.anchors().is_none()
        {
            return Ok(());
        }
        let in_use = core.in_use(&HashSet::new()).await?;
        let mut report = super::ProtectReport::default();
        self.protect_in(repository, &in_use, &mut report).await?;
        warnings.append(&mut report.warnings);
        Ok(())
    }

    /// Copies the referrers `source` has gained since `digest` (already at `dst`) was
    /// mirrored ([`ReferrerOptions::refresh_on_skip`](crate::image::referrers::ReferrerOptions)).
    async fn refresh_referrers(
        &self,
        source: &Source,
        sources: &super::Sources,
        opened: Option<Arc<dyn ImageStore>>,
        dst: &dyn ImageStore,
        digest: &Digest,
    ) -> Result<crate::image::referrers::ReferrerReport> {
        let core = &self.core;
        let (src, source_digest) = open_source(source, sources, opened).await?;
        let source_digest = source_digest?;
        let root = dst.get_manifest(&digest.to_string()).await?;
        crate::image::copy_referrers(
            src.as_ref(),
            source_digest.as_ref(),
            dst,
            digest,
            &root,
            &core.copy,
        )
        .await
    }
}

/// The source's store (`opened`, else opened now) and the source's digest: the pinned one,
/// else what one HEAD of the source says (`None`: absent; a failed HEAD is returned for the
/// caller to judge).
async fn open_source(
    source: &Source,
    sources: &super::Sources,
    opened: Option<Arc<dyn ImageStore>>,
) -> Result<(Arc<dyn ImageStore>, Result<Option<Digest>>)> {
    let src = match opened {
        Some(s) => s,
        None => sources.open(source).await?,
    };
    let digest = match source.pinned() {
        Some(d) => Ok(Some(d.clone())),
        None => src
            .head_manifest(&source.reference())
            .await
            .map(|h| h.map(|h| h.digest)),
    };
    Ok((src, digest))
}

/// The head of `reference` in `store`, `None` when it is absent or its repository was never
/// created (`NAME_UNKNOWN` where a registry says so). Any other failure is an error, never
/// "absent".
pub(super) async fn head_or_absent(
    store: &dyn ImageStore,
    reference: &str,
) -> Result<Option<crate::store::ManifestHead>> {
    match store.head_manifest(reference).await {
        Ok(h) => Ok(h),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A [`Warning::ReferrersRefused`] when the copy left referrers out to protect another image.
fn refused_referrers(
    source: &Source,
    digest: &Digest,
    report: &crate::image::referrers::ReferrerReport,
    warnings: &mut Vec<Warning>,
) {
    if !report.foreign.is_empty() || !report.cosign_tags_kept.is_empty() {
        warnings.push(Warning::ReferrersRefused {
            source: source.to_string(),
            digest: digest.clone(),
            foreign: report.foreign.clone(),
            cosign_tags_kept: report.cosign_tags_kept.clone(),
        });
    }
}

/// A [`Warning::RateLimitLow`] when the source announced few pulls left.
fn rate_limit_warning(sources: &super::Sources, source: &Source, warnings: &mut Vec<Warning>) {
    let Source::Registry(reference) = source else {
        return;
    };
    if let Some(r) = sources
        .rate_limit(reference.registry())
        .filter(|r| r.is_low())
    {
        let registry = reference.registry().to_string();
        warnings.push(Warning::RateLimitLow {
            registry,
            remaining: r.remaining,
            limit: r.limit,
            window_secs: r.window.map(|w| w.as_secs()),
        });
    }
}
