//! Image composition: what belongs to an image, and the one sequence that places it.
//!
//! An image in a repository is its root manifest (an image manifest or an index) and what
//! belongs to it: the child manifests of an index, its real tags, and the library's own
//! bookkeeping tags. Every registry lists an image as one [`ImageRecord`] with those folded
//! in, and deletes them with it:
//!
//! - **Child manifests** of an index are never images of their own. Registries that list
//!   them (ECR, Artifact Registry list platform manifests as untagged images) drop them with
//!   [`without_children`]; deleting an index deletes the children no other image uses.
//! - **Bookkeeping tags** `mirror.pushed.<unix-milliseconds>.<12 hex of the digest>` record
//!   push times on registries that cannot tell them
//!   (a registry whose `Capabilities::records_push_time` is false). They are
//!   read back by [`group_by_digest`] into [`ImageRecord::pushed_at`] and hidden from
//!   [`ImageRecord::tags`]; they name the image's digest, so deleting the image by digest
//!   deletes them with it.
//!
//! - **Referrers** (signatures, SBOMs, attestations; [`referrers`]) are found through the
//!   referrers API, the referrers tag schema and cosign's tags. Listings fold them into their
//!   subject ([`fold_referrers`]: [`ImageRecord::referrers`]), their tags (`sha256-<hex>`,
//!   `sha256-<hex>.sig`…) are hidden from [`ImageRecord::tags`], and deleting an image deletes
//!   them first ([`referrers::belonging`]).
//!
//! - **Listings at scale**: a [`Listing`] reads each repository through a [`ListedStore`],
//!   which answers what the tag listing already told (a cosign tag or tag-schema index it
//!   did not show costs no request) and reads manifests through a [`ManifestCache`] kept
//!   by the [`Mirror`](crate::Mirror) between its calls (immutable by digest, bounded);
//!   [`delete_images`] deletes many images of a repository with what the others hold read
//!   once, a bounded number at a time or in the registry's own batches.
//!
//! [`place`] is the one sequence that writes an image into a repository, used by
//! [`Mirror::mirror`](crate::Mirror::mirror), [`Mirror::build`](crate::Mirror::build) and a
//! copy with referrers: blobs, children and the root by digest, then the bookkeeping tag (so
//! the image is never visible without its push time), then its referrers, then the real tag
//! last (so nothing half-copied is ever tagged, and a signature is there as soon as the tag).

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

mod cache;
mod deletion;
pub(crate) mod listed;
mod listing;
pub mod referrers;

pub use cache::{CacheStats, ManifestCache, DEFAULT_CACHE_BYTES};
pub use deletion::{delete_images, ManifestDeleter, StoreDeleter, DELETE_CONCURRENCY};
pub use listed::{ListedStore, Listing};
pub(crate) use listing::list_by_tags_in;
pub use listing::{fold_referrers, group_by_digest, list_images_by_tags, without_children};

use crate::copy::{copy_image, CopyOptions, CopyReport};
use crate::digest::Digest;
use crate::error::Result;
use crate::media::{ParsedManifest, RawManifest};
use crate::store::ImageStore;

use self::referrers::{kind_of, ReferrerKind};

/// One image of a repository as the registry lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRecord {
    /// The repository holding it.
    pub repository: String,
    /// The manifest (or index) digest.
    pub digest: Digest,
    /// Tags pointing at it (bookkeeping tags excluded).
    pub tags: Vec<String>,
    /// When it was pushed, if known.
    #[serde(with = "opt_unix")]
    pub pushed_at: Option<SystemTime>,
    /// Total size in bytes (manifests, configs and layers, its referrers' too), if known.
    pub size: Option<u64>,
    /// Its referrers, as far as the listing tells (an inventory finds them all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<ReferrerSummary>,
    /// Set when this record is not an image but an orphaned referrer (a signature, an SBOM,
    /// a tag-schema index) that reaches no listed image: named here is where its chain of
    /// subjects ends (a manifest that is gone, or an untagged one the listing cannot show).
    /// Eviction and sweep delete it whatever its age unless that manifest is in use; it never
    /// counts as a previous image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_of: Option<Digest>,
    /// Carries an anchor tag (see [`anchor_tag`]): a native retention policy the library
    /// wrote does not expire it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anchored: bool,
    /// The latest hand-out mark it carries ([`handed_out_tag`]): a deploy handed it out and
    /// no eviction, sweep or native policy written by the library deletes it before this time.
    #[serde(
        serialize_with = "opt_unix::serialize",
        skip_serializing_if = "Option::is_none"
    )]
    pub protected_until: Option<SystemTime>,
}

impl ImageRecord {
    /// A record of `digest` in `repository` with nothing else known yet.
    pub fn new(repository: impl Into<String>, digest: Digest) -> Self {
        ImageRecord {
            repository: repository.into(),
            digest,
            tags: Vec::new(),
            pushed_at: None,
            size: None,
            referrers: Vec::new(),
            orphan_of: None,
            anchored: false,
            protected_until: None,
        }
    }

    /// Whether a hand-out mark protects it at `now`.
    pub fn is_protected_at(&self, now: SystemTime) -> bool {
        self.protected_until.is_some_and(|until| until > now)
    }

    /// How many referrers of `kind` it has.
    pub fn count(&self, kind: ReferrerKind) -> usize {
        self.referrers.iter().filter(|r| r.kind == kind).count()
    }
}

/// One referrer of a listed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferrerSummary {
    /// Its manifest digest.
    pub digest: Digest,
    /// Its artifact type, when known.
    pub artifact_type: Option<String>,
    /// What it is.
    pub kind: ReferrerKind,
    /// The tag naming it (a cosign tag or the tag-schema index), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// Times as Unix seconds in JSON (`null` when unknown).
pub(crate) mod opt_unix {
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Serializes `t` as Unix seconds.
    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

/// Prefix of the bookkeeping tags recording push times.
pub const PUSHED_TAG_PREFIX: &str = "mirror.pushed.";

/// Prefix of the anchor tags: an in-use image carries `mirror.anchor.<hex of its digest>`,
/// which the native retention policies the library writes never expire (see
/// [`crate::Mirror::protect`]).
pub const ANCHOR_TAG_PREFIX: &str = "mirror.anchor.";

/// The anchor tag of `digest`.
pub fn anchor_tag(digest: &Digest) -> String {
    format!("{ANCHOR_TAG_PREFIX}{}", digest.hex())
}

/// Whether `tag` is the anchor tag of `digest`.
pub(crate) fn is_anchor_of(tag: &str, digest: &Digest) -> bool {
    tag.strip_prefix(ANCHOR_TAG_PREFIX) == Some(digest.hex())
}

/// Prefix of the hand-out marks: `mirror.anchor.until.<unix-milliseconds>.<12 hex of the
/// digest>` says a deploy handed the image out and it must stay until that time (so that the
/// pods it was handed out for can start). It begins with [`ANCHOR_TAG_PREFIX`], so the native
/// retention policies that honour anchors (ECR lifecycle rules, Artifact Registry cleanup
/// policies) never expire an image carrying one; eviction and sweep read it
/// ([`ImageRecord::protected_until`]). [`crate::Mirror::protect`] removes the marks that have
/// passed where the registry can remove a tag; elsewhere they go with the image.
pub const HANDED_OUT_TAG_PREFIX: &str = "mirror.anchor.until.";

/// The hand-out mark protecting `digest` until `until`.
pub fn handed_out_tag(until: SystemTime, digest: &Digest) -> String {
    format!(
        "{HANDED_OUT_TAG_PREFIX}{}.{}",
        unix_millis(until),
        &digest.hex()[..12]
    )
}

/// Reads a hand-out mark: (protected until, first 12 hex of the digest).
pub fn parse_handed_out_tag(tag: &str) -> Option<(SystemTime, String)> {
    parse_timed_tag(tag.strip_prefix(HANDED_OUT_TAG_PREFIX)?)
}

/// Milliseconds since the Unix epoch, 0 before it, saturating far after it.
fn unix_millis(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The latest time a bookkeeping tag may carry: the year 9999. A tag naming a later time
/// (written by a hostile or broken writer) is no bookkeeping tag: such a time cannot be
/// formatted, and taken as a push time it would make an image live forever.
pub const MAX_BOOKKEEPING_MILLIS: u64 = 253_402_300_799_999;

/// `<millis>.<12 hex>` of a timed bookkeeping tag.
fn parse_timed_tag(rest: &str) -> Option<(SystemTime, String)> {
    let (millis, hex) = rest.split_once('.')?;
    if millis.is_empty() || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: u64 = millis.parse().ok()?;
    if millis > MAX_BOOKKEEPING_MILLIS {
        return None;
    }
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((UNIX_EPOCH + Duration::from_millis(millis), hex.to_string()))
}

/// The bookkeeping tag recording that `digest` was pushed at `at`.
pub fn pushed_tag(at: SystemTime, digest: &Digest) -> String {
    format!(
        "{PUSHED_TAG_PREFIX}{}.{}",
        unix_millis(at),
        &digest.hex()[..12]
    )
}

/// Reads a bookkeeping tag: (push time, first 12 hex of the digest). A time past
/// [`MAX_BOOKKEEPING_MILLIS`] makes it no bookkeeping tag.
pub fn parse_pushed_tag(tag: &str) -> Option<(SystemTime, String)> {
    parse_timed_tag(tag.strip_prefix(PUSHED_TAG_PREFIX)?)
}

/// The child manifests an index names (none for an image manifest).
pub fn children(manifest: &RawManifest, location: &str) -> Result<Vec<Digest>> {
    Ok(match manifest.parse(location)? {
        ParsedManifest::Index { manifests } => manifests.into_iter().map(|d| d.digest).collect(),
        ParsedManifest::Image { .. } => Vec::new(),
    })
}

/// The total size of an image: its manifest, and for every image manifest reached, config
/// and layers (blobs shared between platforms counted once).
pub async fn image_size(store: &dyn ImageStore, digest: &Digest) -> Result<u64> {
    tree_size(
        store,
        std::slice::from_ref(digest),
        &mut HashSet::new(),
        false,
    )
    .await
}

/// The size of the manifest trees of `roots`, each blob counted once across them. With
/// `skip_missing`, a root that is gone (a referrer a stale index still lists) counts 0.
/// The bytes the images `roots` take in `store`, each blob and manifest counted once
/// however many of them share it (what a repository of build-cache entries really holds).
pub async fn stored_size(store: &dyn ImageStore, roots: &[Digest]) -> Result<u64> {
    tree_size(store, roots, &mut HashSet::new(), false).await
}

async fn tree_size(
    store: &dyn ImageStore,
    roots: &[Digest],
    seen: &mut HashSet<Digest>,
    skip_missing: bool,
) -> Result<u64> {
    // Sizes are what a registry claims: summed saturating (two layers claiming 2^63 bytes
    // are no 746-byte image). Every manifest is read once however many indexes name it, so
    // a DAG whose levels name the next twice costs one read per manifest, not 2^depth.
    let mut total = 0u64;
    let mut pending = roots.to_vec();
    let mut visited: HashSet<Digest> = HashSet::new();
    while let Some(d) = pending.pop() {
        if !visited.insert(d.clone()) {
            continue;
        }
        let m = match store.get_manifest(&d.to_string()).await {
            Ok(m) => m,
            Err(e) if skip_missing && e.is_not_found() && roots.contains(&d) => continue,
            Err(e) => return Err(e),
        };
        total = total.saturating_add(m.bytes.len() as u64);
        match m.parse(&format!("{}@{d}", store.location()))? {
            ParsedManifest::Image { config, layers } => {
                for b in std::iter::once(config).chain(layers) {
                    if seen.insert(b.digest.clone()) {
                        total = total.saturating_add(b.size);
                    }
                }
            }
            ParsedManifest::Index { manifests } => pending.extend(
                manifests
                    .into_iter()
                    .map(|m| m.digest)
                    .filter(|c| !visited.contains(c)),
            ),
        }
    }
    Ok(total)
}

/// What an inventory shows of an image besides its listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDetails {
    /// The size of the image's own manifests and blobs.
    pub size: u64,
    /// The size its referrers add (blobs the image shares counted once).
    pub referrers_size: u64,
    /// Its referrers.
    pub referrers: Vec<ReferrerSummary>,
}

/// The referrers of the image `digest` in `store` (every kind, found as [`referrers::discover`]
/// finds them) and its size with and without them: what an inventory shows.
pub async fn image_details(store: &dyn ImageStore, digest: &Digest) -> Result<ImageDetails> {
    let manifest = store.get_manifest(&digest.to_string()).await?;
    let location = format!("{}@{digest}", store.location());
    let subjects = referrer_subjects(digest, &manifest, &location)?;
    let (mut found, _) =
        referrers::discover(store, &subjects, &referrers::ReferrerOptions::all()).await?;
    let mut seen = HashSet::new();
    let size = tree_size(store, std::slice::from_ref(digest), &mut seen, false).await?;
    // Listed but gone (a stale index): neither counted nor shown.
    let mut present = Vec::new();
    for r in found.drain(..) {
        if store
            .head_manifest(&r.descriptor.digest.to_string())
            .await?
            .is_some()
        {
            present.push(r);
        }
    }
    let referrer_roots: Vec<Digest> = present
        .iter()
        .map(|r| r.descriptor.digest.clone())
        .collect();
    let referrers_size = tree_size(store, &referrer_roots, &mut seen, true).await?;
    let summaries = present
        .into_iter()
        .map(|r| ReferrerSummary {
            kind: kind_of(r.descriptor.artifact_type.as_deref()),
            digest: r.descriptor.digest,
            artifact_type: r.descriptor.artifact_type,
            tag: match r.found_by {
                referrers::FoundBy::CosignTag(t) => Some(t),
                _ => None,
            },
        })
        .collect();
    Ok(ImageDetails {
        size,
        referrers_size,
        referrers: summaries,
    })
}

/// Deletes the image `digest` of `store` and what belongs to it ([`referrers::belonging`]):
/// first the image, then its referrers (deepest first) and tag-schema indexes, each through
/// the store's manifest DELETE (a manifest already gone is fine, except the image itself:
/// [`Error::NotFound`](crate::Error::NotFound)).
/// A failure after the image is gone leaves referrers whose subject is gone: orphans, which
/// the next eviction or sweep removes; the other order could leave an unsigned image. An
/// image that another image of the store holds (a platform manifest of a kept index) is
/// left as it is, with a warning.
pub(crate) async fn delete_with_referrers(store: &dyn ImageStore, digest: &Digest) -> Result<()> {
    let belonging = referrers::belonging(store, digest).await?;
    if belonging.shared {
        tracing::warn!(
            store = %store.location(),
            %digest,
            "not deleted: another image of the repository holds this manifest"
        );
        return Ok(());
    }
    store.delete_manifest(digest).await?;
    for d in belonging.manifests {
        match store.delete_manifest(&d).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The manifests of an image whose referrers travel with it: the root and the children of an
/// index, except BuildKit's attestation manifests (children annotated
/// `vnd.docker.reference.type: attestation-manifest`, which carry provenance themselves and
/// are no subjects).
pub(crate) fn referrer_subjects(
    root: &Digest,
    manifest: &RawManifest,
    location: &str,
) -> Result<Vec<Digest>> {
    let mut subjects = vec![root.clone()];
    if let ParsedManifest::Index { manifests } = manifest.parse(location)? {
        // Each once: an index may name one child many times.
        let mut seen: HashSet<Digest> = HashSet::from([root.clone()]);
        subjects.extend(
            manifests
                .into_iter()
                .filter(|d| {
                    d.annotations
                        .as_ref()
                        .and_then(|a| a.get("vnd.docker.reference.type"))
                        .is_none_or(|t| t != "attestation-manifest")
                })
                .map(|d| d.digest)
                .filter(|d| seen.insert(d.clone())),
        );
    }
    Ok(subjects)
}

/// Whether the destination records push times itself, or the library does with a
/// bookkeeping tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushTimes {
    /// The registry records them: no bookkeeping tag.
    Recorded,
    /// Write a bookkeeping tag for this time.
    Bookkeeping(SystemTime),
}

/// The image to place: a reference (tag or digest) in a store, and its digest when the caller
/// already knows it (a HEAD, a pinned reference).
#[derive(Debug, Clone, Copy)]
pub struct SourceImage<'a> {
    /// The store holding it.
    pub store: &'a dyn ImageStore,
    /// Its tag or digest there.
    pub reference: &'a str,
    /// Its digest, when known.
    pub digest: Option<&'a Digest>,
}

/// The digest of `reference` in `src`: `known` when given, else by a HEAD.
async fn source_digest(
    src: &dyn ImageStore,
    reference: &str,
    known: Option<&Digest>,
) -> Result<Option<Digest>> {
    if let Some(d) = known {
        return Ok(Some(d.clone()));
    }
    if let Ok(d) = Digest::parse(reference) {
        return Ok(Some(d));
    }
    Ok(src.head_manifest(reference).await?.map(|h| h.digest))
}

/// Copies the referrers of the image `digest` (`root` as `dst` holds it) from `src` into
/// `dst` (see [`referrers`]): those of its manifests, recursively, as
/// [`CopyOptions::referrers`] asks. `source_index` is the source's digest when a platform
/// filter made another image of it: the source index's referrers do not apply and are
/// counted in [`referrers::ReferrerReport::index_referrers_left`].
pub(crate) async fn copy_referrers(
    src: &dyn ImageStore,
    source_index: Option<&Digest>,
    dst: &dyn ImageStore,
    digest: &Digest,
    root: &RawManifest,
    options: &CopyOptions,
) -> Result<referrers::ReferrerReport> {
    let mut tree = options.clone();
    tree.referrers = referrers::ReferrerOptions::none();
    let mut report = referrers::ReferrerReport::default();
    let location = format!("{}@{digest}", dst.location());
    let mut subjects = referrer_subjects(digest, root, &location)?;
    if let Some(index) = source_index.filter(|i| *i != digest) {
        // A platform filter made a new index (no referrer at the source names it) or kept
        // one platform manifest (the root, whose referrers travel). The source's index is
        // not this image: its referrers stay behind, and the report says so.
        if matches!(root.parse(&location)?, ParsedManifest::Index { .. }) {
            subjects.retain(|s| s != digest);
        }
        let (left, _) =
            referrers::discover(src, std::slice::from_ref(index), &options.referrers).await?;
        report.index_referrers_left = left.iter().filter(|r| r.depth == 1).count();
        if report.index_referrers_left > 0 {
            tracing::warn!(
                source = %src.location(),
                %index,
                left = report.index_referrers_left,
                "a platform filter made another image than the source's index: the index's \
                 referrers do not apply to it and stay behind"
            );
        }
    }
    let (found, truncated) = referrers::discover(src, &subjects, &options.referrers).await?;
    for r in &found {
        *report
            .found
            .entry(r.artifact_type().to_string())
            .or_default() += 1;
    }
    report.truncated = truncated;
    if truncated {
        tracing::warn!(
            source = %src.location(),
            %digest,
            max_depth = options.referrers.max_depth,
            max_count = options.referrers.max_count,
            "the referrers of the image reach a bound; the rest are not copied"
        );
    }
    referrers::transfer(src, dst, &found, &tree, &mut report).await?;
    Ok(report)
}

/// Copies `src_ref` (tag or digest) of `src` to `dst_ref` (tag or digest) of `dst`.
///
/// See the module docs for the order of work and the guarantees. With
/// [`CopyOptions::referrers`] enabled, the image's referrers travel with it and the tag is
/// written after them (see [`place`]).
pub async fn copy(
    src: &dyn ImageStore,
    src_ref: &str,
    dst: &dyn ImageStore,
    dst_ref: &str,
    options: &CopyOptions,
) -> Result<CopyReport> {
    if options.referrers.enabled {
        let source = SourceImage {
            store: src,
            reference: src_ref,
            digest: None,
        };
        return place(source, dst, dst_ref, options, PushTimes::Recorded).await;
    }
    Ok(copy_image(src, src_ref, dst, Some(dst_ref), options)
        .await?
        .report)
}

/// Places `source` in `dst` under `tag` (see the module docs): blobs, children and the root
/// by digest; with [`PushTimes::Bookkeeping`] the bookkeeping tag; with
/// [`CopyOptions::referrers`] enabled the referrers of every manifest of the image (found at
/// the source, bounded, see [`referrers`]); then `tag` last. `tag` may be the image's digest
/// (nothing is tagged then).
///
/// A platform filter makes a new index: its digest is the destination's, so the referrers of
/// the source's index (which name the original digest) do not apply to it; the referrers of
/// the platform manifests kept do, and travel.
pub async fn place(
    source: SourceImage<'_>,
    dst: &dyn ImageStore,
    tag: &str,
    options: &CopyOptions,
    push_times: PushTimes,
) -> Result<CopyReport> {
    let (src, src_ref) = (source.store, source.reference);
    let mut tree = options.clone();
    tree.referrers = referrers::ReferrerOptions::none();
    let mut report = copy_image(src, src_ref, dst, None, &tree).await?.report;
    let root = dst.get_manifest(&report.digest.to_string()).await?;
    if let PushTimes::Bookkeeping(at) = push_times {
        dst.put_manifest(&pushed_tag(at, &report.digest), &root)
            .await?;
    }
    if options.referrers.enabled {
        let source_index = if report.index_preserved {
            None
        } else {
            source_digest(src, src_ref, source.digest).await?
        };
        report.referrers = copy_referrers(
            src,
            source_index.as_ref(),
            dst,
            &report.digest,
            &root,
            options,
        )
        .await?;
    }
    if tag != report.digest.to_string() {
        dst.put_manifest(tag, &root).await?;
        report.manifests_pushed += 1;
        report.destination = format!("{}:{tag}", dst.location());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_tags_round_trip() {
        let d = Digest::sha256_of(b"x");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let t = pushed_tag(at, &d);
        crate::reference::validate_tag(&t).unwrap();
        assert_eq!(parse_pushed_tag(&t), Some((at, d.hex()[..12].to_string())));
        assert_eq!(parse_pushed_tag("mirror.pushed.x.abc"), None);
        assert_eq!(parse_pushed_tag("v1"), None);
        let h = handed_out_tag(at, &d);
        crate::reference::validate_tag(&h).unwrap();
        assert!(
            h.starts_with(ANCHOR_TAG_PREFIX),
            "native policies keep it: {h}"
        );
        assert_eq!(
            parse_handed_out_tag(&h),
            Some((at, d.hex()[..12].to_string()))
        );
        assert_eq!(parse_pushed_tag(&h), None);
        assert!(!is_anchor_of(&h, &d));
        // A time no calendar can show is no bookkeeping tag (it never panics either).
        let far = format!("{PUSHED_TAG_PREFIX}999999999999999.{}", &d.hex()[..12]);
        assert_eq!(parse_pushed_tag(&far), None);
        let huge = format!("{PUSHED_TAG_PREFIX}{}.{}", u64::MAX, &d.hex()[..12]);
        assert_eq!(parse_pushed_tag(&huge), None);
        assert_eq!(
            parse_pushed_tag(&format!("{PUSHED_TAG_PREFIX}+5.{}", &d.hex()[..12])),
            None
        );
    }
}
