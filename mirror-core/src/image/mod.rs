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
//!   ([`Capabilities::records_push_time`](crate::registry::Capabilities) is false). They are
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
//! [`place`] is the one sequence that writes an image into a repository, used by
//! [`Mirror::mirror`](crate::Mirror::mirror), [`Mirror::build`](crate::Mirror::build) and a
//! copy with referrers: blobs, children and the root by digest, then the bookkeeping tag (so
//! the image is never visible without its push time), then its referrers, then the real tag
//! last (so nothing half-copied is ever tagged, and a signature is there as soon as the tag).

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

mod listing;
pub mod referrers;

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
    /// a tag-schema index) whose subject, named here, is gone: eviction and sweep delete it
    /// whatever its age, and it never counts as a previous image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_of: Option<Digest>,
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
        }
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

mod opt_unix {
    use std::time::{SystemTime, UNIX_EPOCH};

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

/// The bookkeeping tag recording that `digest` was pushed at `at`.
pub fn pushed_tag(at: SystemTime, digest: &Digest) -> String {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{PUSHED_TAG_PREFIX}{millis}.{}", &digest.hex()[..12])
}

/// Reads a bookkeeping tag: (push time, first 12 hex of the digest).
pub fn parse_pushed_tag(tag: &str) -> Option<(SystemTime, String)> {
    let rest = tag.strip_prefix(PUSHED_TAG_PREFIX)?;
    let (millis, hex) = rest.split_once('.')?;
    let millis: u64 = millis.parse().ok()?;
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((UNIX_EPOCH + Duration::from_millis(millis), hex.to_string()))
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
    tree_size(store, std::slice::from_ref(digest), &mut HashSet::new()).await
}

/// The size of the manifest trees of `roots`, each blob counted once across them.
async fn tree_size(
    store: &dyn ImageStore,
    roots: &[Digest],
    seen: &mut HashSet<Digest>,
) -> Result<u64> {
    let mut total = 0u64;
    let mut pending = roots.to_vec();
    while let Some(d) = pending.pop() {
        let m = store.get_manifest(&d.to_string()).await?;
        total += m.bytes.len() as u64;
        match m.parse(&format!("{}@{d}", store.location()))? {
            ParsedManifest::Image { config, layers } => {
                for b in std::iter::once(config).chain(layers) {
                    if seen.insert(b.digest.clone()) {
                        total += b.size;
                    }
                }
            }
            ParsedManifest::Index { manifests } => {
                pending.extend(manifests.into_iter().map(|m| m.digest))
            }
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
    let mut subjects = vec![digest.clone()];
    subjects.extend(children(
        &manifest,
        &format!("{}@{digest}", store.location()),
    )?);
    let (found, _) =
        referrers::discover(store, &subjects, &referrers::ReferrerOptions::all()).await?;
    let mut seen = HashSet::new();
    let size = tree_size(store, std::slice::from_ref(digest), &mut seen).await?;
    let referrer_roots: Vec<Digest> = found.iter().map(|r| r.descriptor.digest.clone()).collect();
    let referrers_size = tree_size(store, &referrer_roots, &mut seen).await?;
    let summaries = found
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

/// Deletes the image `digest` of `store` and what belongs to it: its referrers (deepest
/// first) and tag-schema indexes, then the image itself, each through `delete` (a manifest
/// already gone is fine, except the image itself: [`Error::NotFound`]).
pub async fn delete_with_referrers<F, Fut>(
    store: &dyn ImageStore,
    digest: &Digest,
    delete: F,
) -> Result<()>
where
    F: Fn(Digest) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    for d in referrers::belonging(store, digest).await? {
        match delete(d).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    delete(digest.clone()).await
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
    let mut report = copy_image(src, src_ref, dst, None, &tree).await?;
    let root = dst.get_manifest(&report.digest.to_string()).await?;
    if let PushTimes::Bookkeeping(at) = push_times {
        dst.put_manifest(&pushed_tag(at, &report.digest), &root)
            .await?;
    }
    if options.referrers.enabled {
        let location = format!("{}@{}", dst.location(), report.digest);
        let mut subjects: Vec<Digest> = Vec::new();
        if report.index_preserved {
            subjects.push(report.digest.clone());
        }
        subjects.extend(children(&root, &location)?);
        if subjects.is_empty() {
            // One platform selected: the root is that platform's manifest.
            subjects.push(report.digest.clone());
        }
        let (found, truncated) = referrers::discover(src, &subjects, &options.referrers).await?;
        for r in &found {
            *report
                .referrers
                .found
                .entry(r.artifact_type().to_string())
                .or_default() += 1;
        }
        report.referrers.truncated = truncated;
        if truncated {
            tracing::warn!(
                source = %src.location(),
                digest = %report.digest,
                max_depth = options.referrers.max_depth,
                max_count = options.referrers.max_count,
                "the referrers of the image reach a bound; the rest are not copied"
            );
        }
        referrers::transfer(src, dst, &found, &tree, &mut report.referrers).await?;
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
    }
}
