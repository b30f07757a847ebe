//! The copy engine: one reference from any [`ImageStore`] to any other.
//!
//! Order of work, which is what keeps invariant 2 ("nothing half-copied is ever tagged"):
//!
//! 1. Read the source manifest (by tag or digest; verified when fetched by digest), and at
//!    the same time look the destination tag up: if it names that digest, stop.
//! 2. Look the manifest up at the destination by digest; if it is there (a registry only
//!    accepts a manifest whose blobs and children exist, and the layout store writes children
//!    first), only the tag is written. When the tag lookup of step 1 said the destination
//!    lacks the image, steps 3 and 4 run while this lookup is under way (a copy by digest
//!    waits for it):
//! 3. walk the tree (index → child manifests, a level at a time), leaving out children the
//!    destination already has, and
//! 4. check every blob: present → skipped after one HEAD; same registry (or a repository named
//!    in [`CopyOptions::mount_from`]) → mounted. None of this changes what the destination
//!    shows (a mount only links a blob the manifest would name anyway), so it needs no
//!    answer from step 2; it runs at [`CopyOptions::checks_at_once`].
//! 5. The blobs still missing are streamed from source to destination, at
//!    [`CopyOptions::transfers_at_once`], and verified on the fly (never held in memory).
//! 6. Child manifests by digest, a level at a time, deepest first; then the root manifest
//!    under the target tag.
//!
//! Manifests are copied byte for byte, so destination digests equal source digests, unless a
//! platform filter selects several (not all) platforms of an index: a filtered index is then
//! written and [`CopyReport::index_preserved`] is false.

mod blob;
mod tree;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tracing::field::Empty;

use self::blob::{check_blob, mount_sources, upload, Missing};
use self::tree::Tree;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::events::{BlobAction, CopyEvent, EventSink};
pub mod referrer_options;

use crate::media::{Descriptor, ManifestKind, ParsedManifest, PlatformFilter, RawManifest};
use crate::retry::RetryConfig;
use crate::store::{
    get_verified_manifest, take_failure, BlobStream, ImageStore, MountOutcome, StoreLocation,
    VerifyingStream,
};
pub use referrer_options::{ReferrerOptions, ReferrerReport};

/// Default number of blobs transferred at once.
pub const DEFAULT_CONCURRENCY: usize = 6;
/// The most transfers one copy runs at once, whatever [`CopyOptions::concurrency`] asks: each
/// holds a connection and, into a layout, an open file.
pub const MAX_CONCURRENCY: usize = 64;

/// How to copy.
#[derive(Clone)]
pub struct CopyOptions {
    /// Platforms to keep from an index; empty keeps all (the default, which preserves the
    /// index digest).
    pub platforms: Vec<PlatformFilter>,
    /// Blobs transferred at once: 1 to [`MAX_CONCURRENCY`] (more is read as the maximum).
    pub concurrency: usize,
    /// Other repositories of the destination registry that may hold the blobs: each is tried
    /// as a mount source before uploading. The source repository is tried first when the
    /// source is on the destination's registry.
    pub mount_from: Vec<String>,
    /// Receives progress events.
    pub events: Option<EventSink>,
    /// How failed blob transfers are retried (each retry restarts the blob from scratch).
    pub retry: RetryConfig,
    /// Whether the image's referrers (signatures, SBOMs, attestations) travel with it, and
    /// which (default: off for a bare copy; `Mirror` turns them on).
    pub referrers: ReferrerOptions,
}

impl CopyOptions {
    /// Keeps only these platforms of an index (see [`platforms`](Self::platforms)): filters,
    /// or anything that converts into one (with feature `oci-spec`, `oci_spec` platforms).
    pub fn with_platforms<I, P>(mut self, platforms: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<PlatformFilter>,
    {
        self.platforms.extend(platforms.into_iter().map(Into::into));
        self
    }

    /// [`concurrency`](Self::concurrency) within 1 to [`MAX_CONCURRENCY`].
    pub fn transfers_at_once(&self) -> usize {
        self.concurrency.clamp(1, MAX_CONCURRENCY)
    }

    /// Existence checks and mounts (requests without a body to stream) run at twice
    /// [`transfers_at_once`](Self::transfers_at_once), within [`MAX_CONCURRENCY`]: an image of
    /// twelve blobs mounted into a second repository is then one round of requests, not two.
    pub fn checks_at_once(&self) -> usize {
        (2 * self.transfers_at_once()).min(MAX_CONCURRENCY)
    }
}

impl Default for CopyOptions {
    fn default() -> Self {
        CopyOptions {
            referrers: ReferrerOptions::default(),
            platforms: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            mount_from: Vec::new(),
            events: None,
            retry: RetryConfig::default(),
        }
    }
}

impl std::fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOptions")
            .field("platforms", &self.platforms)
            .field("concurrency", &self.concurrency)
            .field("mount_from", &self.mount_from)
            .field("events", &self.events.is_some())
            .field("retry", &self.retry)
            .field("referrers", &self.referrers)
            .finish()
    }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyReport {
    /// The source, as `registry/repository:ref` or `oci:path:ref`.
    pub source: String,
    /// The destination, same form.
    pub destination: String,
    /// Digest of the manifest now at the destination reference.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// False when a platform filter changed the top-level document (its digest then differs
    /// from the source's).
    pub index_preserved: bool,
    /// Platforms copied (empty for a single-platform image manifest).
    pub platforms: Vec<String>,
    /// True when the destination already held everything (no blob or manifest traffic
    /// beyond the existence checks; a tag may still have been written).
    pub already_present: bool,
    /// Blobs found at the destination.
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository.
    pub blobs_mounted: usize,
    /// Blobs streamed.
    pub blobs_uploaded: usize,
    /// Bytes streamed.
    pub bytes_uploaded: u64,
    /// Manifests written (children and root, tag-only writes included).
    pub manifests_pushed: usize,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
    /// The referrers found at the source and copied, by artifact type.
    pub referrers: ReferrerReport,
}

#[derive(Default)]
struct Counters {
    skipped: AtomicUsize,
    mounted: AtomicUsize,
    uploaded: AtomicUsize,
    bytes: AtomicU64,
}

/// A copy's report, and for a root manifest with a `subject` that was written, whether the
/// destination indexed it as a referrer (answered `OCI-Subject`).
pub(crate) struct Copied {
    pub(crate) report: CopyReport,
    pub(crate) subject_indexed: Option<bool>,
    /// The root manifest now at the destination.
    pub(crate) manifest: RawManifest,
}

/// The engine alone (no referrers, whatever [`CopyOptions::referrers`] says): `src_ref` of
/// `src` to `dst_ref` of `dst`, or with `None` under its own digest. Runs in a `copy` span
/// (source, destination, digest, what was uploaded).
pub(crate) async fn copy_image(
    src: &dyn ImageStore,
    src_ref: &str,
    dst: &dyn ImageStore,
    dst_ref: Option<&str>,
    options: &CopyOptions,
) -> Result<Copied> {
    let src_loc = format!("{}{}{src_ref}", src.location(), sep(src_ref));
    let span = tracing::info_span!(
        "copy",
        source = %src_loc,
        destination = Empty,
        digest = Empty,
        already_present = Empty,
        blobs_uploaded = Empty,
        bytes_uploaded = Empty,
        error = Empty,
    );
    let work = copy_tree_in_span(src, src_ref, src_loc, dst, dst_ref, options);
    crate::telemetry::traced(span, work, |span, copied: &Copied| {
        let r = &copied.report;
        span.record("destination", r.destination.as_str());
        span.record("digest", tracing::field::display(&r.digest));
        span.record("already_present", r.already_present);
        span.record("blobs_uploaded", r.blobs_uploaded);
        span.record("bytes_uploaded", r.bytes_uploaded);
    })
    .await
}

async fn copy_tree_in_span(
    src: &dyn ImageStore,
    src_ref: &str,
    src_loc: String,
    dst: &dyn ImageStore,
    dst_ref: Option<&str>,
    options: &CopyOptions,
) -> Result<Copied> {
    let started = Instant::now();
    // A destination tag is looked up while the source manifest is read: when it already names
    // the image (a warm copy), the copy costs that one round trip per registry.
    let tag_head = async {
        match dst_ref {
            Some(r) if Digest::parse(r).is_err() => Some(dst.head_manifest(r).await),
            _ => None,
        }
    };
    let (source_root, tag_head) = futures::join!(get_verified_manifest(src, src_ref), tag_head);
    let source_root = source_root?;
    let tag_head = tag_head.transpose()?;
    let kind = source_root.kind(&src_loc)?;

    // Apply the platform filter: the root may become one child or a filtered index.
    let (root, index_preserved, platforms) =
        select_platforms(src, &src_loc, source_root, kind, &options.platforms).await?;
    let own_digest = root.digest.to_string();
    let dst_ref: &str = dst_ref.unwrap_or(&own_digest);
    let dst_loc = format!("{}{}{dst_ref}", dst.location(), sep(dst_ref));

    if let Ok(d) = Digest::parse(dst_ref) {
        if d != root.digest {
            return Err(Error::config(
                "destination",
                format!(
                    "{dst_loc} names digest {d} but the source is {}",
                    root.digest
                ),
            ));
        }
    }
    let mut report = CopyReport {
        source: src_loc.clone(),
        destination: dst_loc.clone(),
        digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        index_preserved,
        platforms,
        already_present: false,
        blobs_skipped: 0,
        blobs_mounted: 0,
        blobs_uploaded: 0,
        bytes_uploaded: 0,
        manifests_pushed: 0,
        elapsed_ms: 0,
        referrers: ReferrerReport::default(),
    };

    // Does the destination hold the image? If the tag lookup already said so, stop here.
    // Otherwise the lookup by digest runs while the tree is walked and its blobs are checked
    // (mounted where they can be): all of that is needed unless the image is there, and none
    // of it changes what the destination shows. Only streaming waits for the answer.
    if tag_head
        .as_ref()
        .is_some_and(|h| h.as_ref().is_some_and(|h| h.digest == root.digest))
    {
        return Ok(already_present(report, root, started));
    }
    let root_digest = root.digest.to_string();
    // Only when a tag lookup already said the destination lacks the image is the lookup by
    // digest likely to say so too: then the work below starts at once. A copy by digest (how
    // `Mirror` places an image) waits for its one lookup first: under load (concurrent deploys
    // of one image) the image is often there by then, and mounts sent in vain cost the
    // registry more than the round trip saves (`bench_load`: 48 → 38 calls/s).
    let speculate = matches!(tag_head, Some(None));
    let held = AtomicBool::new(false);
    let lookup = async {
        let found = match tag_head {
            // The tag is missing or names another image: is the manifest there untagged?
            Some(_) => dst
                .head_manifest(&root_digest)
                .await
                .map(|h| h.map(|_| Held::Untagged)),
            None if dst_ref == root_digest => dst
                .head_manifest(dst_ref)
                .await
                .map(|h| h.map(|_| Held::Tagged)),
            None => {
                let (a, b) =
                    futures::join!(dst.head_manifest(dst_ref), dst.head_manifest(&root_digest));
                match (a, b) {
                    (Ok(Some(h)), _) if h.digest == root.digest => Ok(Some(Held::Tagged)),
                    (Ok(_), Ok(b)) => Ok(b.map(|_| Held::Untagged)),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
        };
        // An error stops the checks too: the copy fails with it.
        if !matches!(found, Ok(None)) {
            held.store(true, Ordering::Relaxed);
        }
        found
    };
    let counters = Arc::new(Counters::default());
    let mount_sources = mount_sources(src, dst, &options.mount_from);
    let prepare = || async {
        let tree = tree::walk(src, dst, &root, &src_loc, options, &held).await?;
        let missing = check_blobs(dst, &tree, &mount_sources, options, &counters, &held).await?;
        Ok::<_, Error>((tree, missing))
    };
    let (found, prepared) = if speculate {
        let (found, prepared) = futures::join!(lookup, prepare());
        (found, Some(prepared))
    } else {
        (lookup.await, None)
    };
    match found? {
        Some(Held::Tagged) => {
            return Ok(already_present(report, root, started));
        }
        Some(Held::Untagged) => {
            dst.put_manifest(dst_ref, &root).await?;
            emit(
                options,
                CopyEvent::ManifestPushed {
                    digest: root.digest.clone(),
                    reference: dst_ref.to_string(),
                },
            );
            report.manifests_pushed = 1;
            return Ok(already_present(report, root, started));
        }
        None => {}
    }
    let (tree, mut missing) = match prepared {
        Some(prepared) => prepared?,
        None => prepare().await?,
    };

    // Registries answer MANIFEST_BLOB_UNKNOWN when a concurrent writer (another deployer
    // copying the same image into the same repository) raced our blob commits: distribution
    // rewrites a blob's link file in place, so for a moment the blob reads as unknown (or its
    // GET answers 500). The blobs are checked again (HEADs skip what is there, a 5xx is
    // retried and never read as absent) and the manifests pushed once more, within the
    // retry budget (attempts and time), after its backoff.
    let clock = options.retry.clock();
    let retries_started = clock.elapsed();
    let mut round = 1;
    let subject_indexed = loop {
        upload_blobs(src, dst, &missing, options, &counters).await?;
        match push_manifests(dst, dst_ref, &root, &tree, options).await {
            Ok((pushed, indexed)) => {
                report.manifests_pushed += pushed;
                break indexed;
            }
            Err(e) if is_blob_unknown(&e) => {
                let wait =
                    options
                        .retry
                        .wait_since(round, crate::retry::Retry::Yes, retries_started);
                let Some(wait) = wait else {
                    return Err(e);
                };
                tracing::debug!(error = %e, round, "manifest refused for a missing blob; checking blobs again");
                clock.sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
        round += 1;
        let unheld = AtomicBool::new(false);
        missing = check_blobs(dst, &tree, &mount_sources, options, &counters, &unheld).await?;
    };

    report.blobs_skipped = counters.skipped.load(Ordering::Relaxed);
    report.blobs_mounted = counters.mounted.load(Ordering::Relaxed);
    report.blobs_uploaded = counters.uploaded.load(Ordering::Relaxed);
    report.bytes_uploaded = counters.bytes.load(Ordering::Relaxed);
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(Copied {
        report,
        subject_indexed,
        manifest: root,
    })
}

/// The answer of a copy that found the image at the destination (a tag may have been written).
fn already_present(mut report: CopyReport, root: RawManifest, started: Instant) -> Copied {
    report.already_present = true;
    report.elapsed_ms = started.elapsed().as_millis() as u64;
    Copied {
        report,
        subject_indexed: None,
        manifest: root,
    }
}

/// What the destination holds of the image before the copy.
enum Held {
    /// The destination reference names it: nothing to do.
    Tagged,
    /// The manifest is there under its digest: only the tag is written.
    Untagged,
}

/// Checks every blob of `tree` at the destination (mounting where it can), up to
/// [`CopyOptions::checks_at_once`] at a time; returns those left to stream. Once `held` is
/// set no more checks start (the image is at the destination, or its lookup failed).
async fn check_blobs(
    dst: &dyn ImageStore,
    tree: &Tree,
    mount_sources: &[String],
    options: &CopyOptions,
    counters: &Counters,
    held: &AtomicBool,
) -> Result<Vec<Missing>> {
    let missing = at_most(
        tree.blobs.values(),
        options.checks_at_once(),
        |desc| async move {
            if held.load(Ordering::Relaxed) {
                return Ok(None);
            }
            check_blob(dst, desc, mount_sources, options, counters).await
        },
    )
    .await?;
    Ok(missing.into_iter().flatten().collect())
}

/// Streams the blobs the checks left, [`CopyOptions::transfers_at_once`] at a time.
async fn upload_blobs(
    src: &dyn ImageStore,
    dst: &dyn ImageStore,
    missing: &[Missing],
    options: &CopyOptions,
    counters: &Counters,
) -> Result<()> {
    at_most(missing.iter(), options.transfers_at_once(), |m| {
        upload(src, dst, m, options, counters)
    })
    .await
    .map(|_| ())
}

/// Runs `work` over `items`, `limit` at a time. On the first failure no new item starts,
/// but those under way run to their end (success or error) instead of being dropped
/// mid-request: a dropped upload would leave an open session at the destination.
async fn at_most<I, T, F, Fut>(items: I, limit: usize, work: F) -> Result<Vec<T>>
where
    I: IntoIterator,
    F: Fn(I::Item) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let failed = AtomicBool::new(false);
    let failed = &failed;
    let work = &work;
    let results: Vec<Option<Result<T>>> =
        futures::stream::iter(items.into_iter().map(|item| async move {
            if failed.load(Ordering::Relaxed) {
                return None;
            }
            let r = work(item).await;
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            Some(r)
        }))
        .buffer_unordered(limit)
        .collect()
        .await;
    let mut out = Vec::with_capacity(results.len());
    for r in results.into_iter().flatten() {
        out.push(r?);
    }
    Ok(out)
}

/// Pushes the child manifests, a level at a time (each level names only earlier ones), then
/// the root under `dst_ref`; returns how many, and for a root with a `subject`, whether the
/// destination indexed it as a referrer.
async fn push_manifests(
    dst: &dyn ImageStore,
    dst_ref: &str,
    root: &RawManifest,
    tree: &Tree,
    options: &CopyOptions,
) -> Result<(usize, Option<bool>)> {
    let mut pushed = 0;
    for level in &tree.levels {
        let level: Vec<&RawManifest> = level.iter().collect();
        dst.put_children(&level).await?;
        for child in level {
            emit(
                options,
                CopyEvent::ManifestPushed {
                    digest: child.digest.clone(),
                    reference: child.digest.to_string(),
                },
            );
            pushed += 1;
        }
    }
    let has_subject = root.referral("").is_ok_and(|r| r.subject.is_some());
    let stored = dst.put_manifest(dst_ref, root).await?;
    let indexed = has_subject.then_some(stored.subject_indexed);
    emit(
        options,
        CopyEvent::ManifestPushed {
            digest: root.digest.clone(),
            reference: dst_ref.to_string(),
        },
    );
    pushed += 1;

    Ok((pushed, indexed))
}

/// Docker's foreign layers and OCI's (deprecated) non-distributable ones: their manifests
/// name URLs to fetch them from, which the copy never follows.
fn is_foreign_layer(media_type: &str) -> bool {
    media_type == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
        || media_type.starts_with("application/vnd.oci.image.layer.nondistributable.")
}

fn is_blob_unknown(e: &Error) -> bool {
    e.names_a_missing_blob()
}

fn sep(reference: &str) -> &'static str {
    if reference.contains(':') {
        "@"
    } else {
        ":"
    }
}

fn emit(options: &CopyOptions, event: CopyEvent) {
    if let Some(sink) = &options.events {
        sink(&event);
    }
}

/// Applies the platform filter to the root manifest.
async fn select_platforms(
    src: &dyn ImageStore,
    src_loc: &str,
    root: RawManifest,
    kind: ManifestKind,
    filters: &[PlatformFilter],
) -> Result<(RawManifest, bool, Vec<String>)> {
    let ParsedManifest::Index { manifests } = (match kind {
        ManifestKind::Image => return Ok((root, true, Vec::new())),
        ManifestKind::Index => root.parse(src_loc)?,
    }) else {
        return Ok((root, true, Vec::new()));
    };
    let platform_of = |d: &Descriptor| {
        d.platform
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unknown".to_string())
    };
    if filters.is_empty() {
        let platforms = manifests.iter().map(platform_of).collect();
        return Ok((root, true, platforms));
    }
    let keep: Vec<usize> = manifests
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d.platform
                .as_ref()
                .is_some_and(|p| filters.iter().any(|f| f.matches(p)))
        })
        .map(|(i, _)| i)
        .collect();
    if keep.is_empty() {
        let available: Vec<String> = manifests.iter().map(platform_of).collect();
        return Err(Error::NotFound {
            what: "platform",
            location: format!(
                "{src_loc} has no manifest for {} (available: {})",
                filters
                    .iter()
                    .map(|f| f.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                available.join(", ")
            ),
        });
    }
    let platforms: Vec<String> = keep.iter().map(|&i| platform_of(&manifests[i])).collect();
    if keep.len() == manifests.len() {
        return Ok((root, true, platforms));
    }
    if keep.len() == 1 {
        let digest = manifests[keep[0]].digest.to_string();
        let child = get_verified_manifest(src, &digest).await?;
        return Ok((child, false, platforms));
    }
    // Several platforms: a new index holding only those entries (other fields kept).
    let mut doc: serde_json::Value =
        serde_json::from_slice(&root.bytes).map_err(|e| Error::InvalidManifest {
            location: src_loc.to_string(),
            reason: e.to_string(),
        })?;
    let keep_set: HashSet<usize> = keep.into_iter().collect();
    if let Some(serde_json::Value::Array(list)) = doc.get_mut("manifests") {
        let kept: Vec<serde_json::Value> = std::mem::take(list)
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep_set.contains(i))
            .map(|(_, v)| v)
            .collect();
        *list = kept;
    }
    let bytes = serde_json::to_vec(&doc).map_err(|e| Error::InvalidManifest {
        location: src_loc.to_string(),
        reason: e.to_string(),
    })?;
    Ok((
        RawManifest::new(bytes, root.media_type.clone()),
        false,
        platforms,
    ))
}

/// Counts how many blobs of a tree are referenced, for callers that pre-size progress bars:
/// returns (blob count, total bytes) of `manifest` and, for an index, its children in `src`.
pub async fn measure(
    src: &dyn ImageStore,
    manifest: &RawManifest,
    location: &str,
) -> Result<(usize, u64)> {
    let mut blobs: HashMap<Digest, u64> = HashMap::new();
    let mut pending = vec![manifest.clone()];
    // Each child read once, however many times (and at how many depths) indexes name it.
    let mut read: HashSet<Digest> = HashSet::new();
    while let Some(m) = pending.pop() {
        match m.parse(location)? {
            ParsedManifest::Image { config, layers } => {
                for d in std::iter::once(config).chain(layers) {
                    blobs.insert(d.digest, d.size);
                }
            }
            ParsedManifest::Index { manifests } => {
                for d in manifests {
                    if read.insert(d.digest.clone()) {
                        pending.push(get_verified_manifest(src, &d.digest.to_string()).await?);
                    }
                }
            }
        }
    }
    let bytes = blobs.values().fold(0u64, |sum, b| sum.saturating_add(*b));
    Ok((blobs.len(), bytes))
}
