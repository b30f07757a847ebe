//! The one private core of [`Mirror`](super::Mirror): its state (registry, cluster,
//! strategy, options) and the steps deploy, build, sweep and inventory share: ensure a
//! repository once, place an image, evict.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::StreamExt;

use crate::copy::{CopyOptions, CopyReport};
use crate::digest::Digest;
use crate::error::Result;
use crate::eviction::{plan_service_eviction, EvictionPlan};
use crate::image::{place, Listing, ManifestCache, PushTimes, SourceImage};
use crate::inuse::{InUse, InUseSource};
use crate::registry::{Registry, Repository, RepositorySettings};
use crate::store::ImageStore;
use crate::strategy::MirrorStrategy;

use super::handout::{is_safe, mark_until, Deleter, Knowledge};
use super::report::TagPolicy;
use super::source::Sources;
use crate::image::handed_out_tag;
use crate::retry::Clock;

/// Mount sources looked up at most, when this `Mirror` does not know where an image is.
const MAX_MOUNT_CANDIDATES: usize = 64;

/// How often a `Mirror` reads a repository's tags again to learn push times it lacks.
fn relearn_interval(grace: Duration) -> Duration {
    (grace / 2).min(Duration::from_secs(60))
}

#[derive(Debug)]
pub(super) struct Core {
    pub registry: Arc<dyn Registry>,
    pub cluster: String,
    pub strategy: Arc<dyn MirrorStrategy>,
    pub tag_policy: TagPolicy,
    pub grace: Duration,
    pub copy: CopyOptions,
    pub sources: Arc<Sources>,
    /// Where in-use images are found, besides the caller's digests.
    pub in_use_source: Option<Arc<dyn InUseSource>>,
    /// The wall clock (push times, grace periods, hand-out marks).
    pub clock: Arc<dyn Clock>,
    /// What this `Mirror` knows of push times, marks and ranks (see [`super::handout`]).
    pub knowledge: Knowledge,
    /// Manifests read by listings, by digest, for the next listings (bounded).
    pub manifests: ManifestCache,
    /// Repositories ensured by this `Mirror` (each once).
    pub ensured: Mutex<HashSet<String>>,
    /// One lock per source image being copied: concurrent calls for the same image wait for
    /// the first copy and then skip or mount, so each blob crosses the wire once.
    pub inflight: crate::sync::KeyedFlight<Digest>,
    /// Repositories this `Mirror` put each image into: mount sources found without listing
    /// the registry. A stale entry only costs a declined mount.
    pub locations: Mutex<HashMap<Digest, Vec<Repository>>>,
}

impl Core {
    /// What is in use: the caller's `digests` and what the in-use source says, resolved in
    /// the mirror registry. An error when the source cannot tell.
    pub async fn in_use(&self, digests: &HashSet<Digest>) -> Result<InUse> {
        let mut in_use = match &self.in_use_source {
            Some(source) => {
                let uses = source.image_uses().await?;
                super::in_use::resolve(&uses, self.registry.as_ref()).await?
            }
            None => InUse::new(),
        };
        in_use = in_use.with_digests(digests);
        Ok(in_use)
    }

    /// Ensures `repository` with `settings`, once per `Mirror`.
    pub async fn ensure(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<()> {
        let known = self
            .ensured
            .lock()
            .map(|s| s.contains(repository.name()))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        self.registry
            .ensure_repository(repository, settings)
            .await?;
        if let Ok(mut s) = self.ensured.lock() {
            s.insert(repository.name().to_string());
        }
        Ok(())
    }

    /// The current time on this `Mirror`'s clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    fn push_times(&self) -> PushTimes {
        if self.registry.capabilities().records_push_time {
            PushTimes::Recorded
        } else {
            PushTimes::Bookkeeping(self.now())
        }
    }

    /// Places `source` into `repository` (its store `dst`) under `tag` (see
    /// [`crate::image::place`]): once per image at a time within this `Mirror`, mounting
    /// from the other repositories of the cluster known to hold it. The source's digest, when
    /// known, names the single flight.
    pub async fn place(
        &self,
        source: SourceImage<'_>,
        dst: &dyn ImageStore,
        repository: &Repository,
        tag: &str,
        mut options: CopyOptions,
    ) -> Result<CopyReport> {
        let mut _flight = None;
        if let Some(digest) = source.digest {
            _flight = Some(self.single_flight(digest).await);
            options.mount_from = self
                .repositories_holding(repository, digest)
                .await
                .into_iter()
                .map(|r| r.name().to_string())
                .collect();
        }
        let report = place(source, dst, tag, &options, self.push_times()).await?;
        self.remember(&report.digest, repository);
        // A registry recording push times keeps the first push of a manifest it held
        // already: only a real upload makes it new there.
        if !report.already_present || !self.registry.capabilities().records_push_time {
            self.knowledge
                .learn_push(repository.name(), &report.digest, self.now());
        }
        Ok(report)
    }

    /// Waits until no other call of this `Mirror` copies the image `digest`, and holds the
    /// image until the returned guard is dropped.
    async fn single_flight(&self, digest: &Digest) -> tokio::sync::OwnedMutexGuard<()> {
        self.inflight.hold(digest).await
    }

    /// Records that `repository` holds the image `digest`.
    pub fn remember(&self, digest: &Digest, repository: &Repository) {
        if let Ok(mut m) = self.locations.lock() {
            let repos = m.entry(digest.clone()).or_default();
            if !repos.iter().any(|r| r.name() == repository.name()) {
                repos.push(repository.clone());
            }
        }
    }

    /// Other repositories of this cluster that hold `digest` (mount sources): those this
    /// `Mirror` copied it into, else those the registry lists for the cluster.
    pub async fn repositories_holding(
        &self,
        except: &Repository,
        digest: &Digest,
    ) -> Vec<Repository> {
        let known: Vec<Repository> = self
            .locations
            .lock()
            .ok()
            .and_then(|m| m.get(digest).cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.name() != except.name())
            .collect();
        if !known.is_empty() {
            return known;
        }
        let repos = match self.registry.list_repositories(&self.cluster).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "cannot list repositories; no mount sources");
                return Vec::new();
            }
        };
        let reference = digest.to_string();
        futures::stream::iter(
            repos
                .into_iter()
                .filter(|r| r.name() != except.name())
                .take(MAX_MOUNT_CANDIDATES)
                .map(|r| {
                    let reference = reference.clone();
                    async move {
                        let store = self.registry.store(&r).await.ok()?;
                        match store.head_manifest(&reference).await {
                            Ok(Some(_)) => Some(r),
                            _ => None,
                        }
                    }
                }),
        )
        .buffer_unordered(8)
        .filter_map(|x| async move { x })
        .collect()
        .await
    }

    /// What a deploy or a build of `service` from `source` reports when `action` left the image
    /// `digest` in `repository` under `tag`, before anything was transferred, evicted or
    /// warned about.
    pub fn deployment(
        &self,
        service: &str,
        source: String,
        repository: &Repository,
        tag: String,
        digest: Digest,
        action: super::report::Action,
    ) -> super::report::Deployment {
        super::report::Deployment {
            service: service.to_string(),
            source,
            pull_reference: self.registry.pull_reference(repository, &digest),
            repository: repository.name().to_string(),
            tag,
            digest,
            action,
            blobs_mounted: 0,
            blobs_uploaded: 0,
            bytes_uploaded: 0,
            evicted: Vec::new(),
            cache_evicted: Vec::new(),
            referrers: Default::default(),
            warnings: Vec::new(),
        }
    }

    /// Service-mode eviction in `repository` after `deployed` was placed there: everything
    /// but the `keep` newest, the in-use images and those within the grace period.
    pub async fn evict(
        &self,
        repository: &Repository,
        deployed: &Digest,
        in_use: &HashSet<Digest>,
        keep: usize,
    ) -> Result<(Vec<Digest>, Vec<super::Warning>)> {
        let span = tracing::info_span!(
            "evict",
            repository = repository.name(),
            keep,
            deleted = tracing::field::Empty,
            error = tracing::field::Empty
        );
        let work = async {
            // What is in use first: when that cannot be told, nothing is deleted.
            let in_use = self.in_use(in_use).await?;
            let listing = Listing::new(self.manifests.clone());
            let images = self.registry.list_images_in(repository, &listing).await;
            listing.finish(repository.name());
            let images = images?;
            self.knowledge.learn_listing(repository.name(), &images);
            let plan = plan_service_eviction(
                repository.name(),
                &images,
                deployed,
                &in_use.digests(),
                keep,
                self.now(),
                self.grace,
            );
            Ok(self.execute(repository, &plan).await)
        };
        crate::telemetry::traced(span, work, |span, (deleted, _)| {
            span.record("deleted", deleted.len());
        })
        .await
    }

    /// Makes sure the image `digest` of `repository`, handed out by a deploy that did not push
    /// it, stays for the grace period (see [`super::handout`]): nothing when what this
    /// `Mirror` knows shows it safe, else a hand-out mark. A mark that cannot be written is
    /// a warning (the deploy itself succeeded).
    pub async fn hand_out(
        &self,
        repository: &Repository,
        dst: &dyn ImageStore,
        digest: &Digest,
        deleter: Deleter,
        warnings: &mut Vec<super::Warning>,
    ) {
        if let Err(e) = self.hand_out_once(repository, dst, digest, deleter).await {
            warnings.push(super::Warning::HandOutNotProtected {
                repository: repository.name().to_string(),
                digest: digest.clone(),
                error: e.into(),
            });
        }
    }

    async fn hand_out_once(
        &self,
        repository: &Repository,
        dst: &dyn ImageStore,
        digest: &Digest,
        deleter: Deleter,
    ) -> Result<()> {
        let now = self.now();
        let name = repository.name();
        let mut known = self.knowledge.get(name, digest);
        if is_safe(known, deleter, now, self.grace) {
            return Ok(());
        }
        // Retention on a registry whose push times are bookkeeping tags: one tag listing
        // tells them all (at most once per relearn interval and repository).
        let unknown = known.is_none_or(|k| k.pushed_at.is_none());
        if unknown
            && matches!(deleter, Deleter::Retention(_))
            && !self.registry.capabilities().records_push_time
        {
            let stale = self.knowledge.learned_at(name).is_none_or(|at| {
                now.duration_since(at)
                    .map_or(true, |age| age >= relearn_interval(self.grace))
            });
            if stale {
                let tags = dst.list_tags().await?;
                self.knowledge.learn_tags(name, &tags, &[digest], now);
                known = self.knowledge.get(name, digest);
                if is_safe(known, deleter, now, self.grace) {
                    return Ok(());
                }
            }
        }
        let until = mark_until(now, self.grace);
        let manifest = dst.get_manifest(&digest.to_string()).await?;
        dst.put_manifest(&handed_out_tag(until, digest), &manifest)
            .await?;
        tracing::info!(repository = %repository, %digest, "marked an image handed out");
        self.knowledge.learn_mark(name, digest, until);
        Ok(())
    }

    /// Deletes what `plan` says (one batch: [`Registry::delete_images`]); failures become
    /// warnings, an image already gone is fine.
    pub async fn execute(
        &self,
        repository: &Repository,
        plan: &EvictionPlan,
    ) -> (Vec<Digest>, Vec<super::Warning>) {
        let mut deleted = Vec::new();
        let mut warnings = Vec::new();
        if plan.delete.is_empty() {
            return (deleted, warnings);
        }
        let digests: Vec<Digest> = plan.delete.iter().map(|i| i.digest.clone()).collect();
        let results = match self.registry.delete_images(repository, &digests).await {
            Ok(r) => r,
            Err(e) => {
                warnings.push(super::Warning::EvictionFailed {
                    repository: plan.repository.clone(),
                    digest: None,
                    error: e.into(),
                });
                return (deleted, warnings);
            }
        };
        let mut results = results.into_iter();
        for digest in digests {
            match results.next() {
                Some(Ok(())) => deleted.push(digest),
                // Someone else deleted it first: the goal is reached.
                Some(Err(e)) if e.is_not_found() => {}
                Some(Err(e)) => warnings.push(super::Warning::EvictionFailed {
                    repository: plan.repository.clone(),
                    digest: Some(digest),
                    error: e.into(),
                }),
                None => warnings.push(super::Warning::EvictionFailed {
                    repository: plan.repository.clone(),
                    digest: Some(digest),
                    error: "the registry did not say whether it was deleted".into(),
                }),
            }
        }
        (deleted, warnings)
    }
}
