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

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde::Serialize;

pub mod referrers;

use crate::copy::{copy_image, CopyOptions, CopyReport};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{ParsedManifest, RawManifest};
use crate::store::ImageStore;

use self::referrers::{kind_of, parse_referrer_tag, ReferrerKind};

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

/// Groups the tags of a repository by the digest they name into one record per image:
/// bookkeeping tags of that digest become its push time (the latest, when there are
/// several), every other tag is listed, sorted; then referrers named by tags are folded into
/// their subject ([`fold_referrers`]). Records come sorted by digest.
pub fn group_by_digest<I, T>(repository: &str, tags: I) -> Vec<ImageRecord>
where
    I: IntoIterator<Item = (T, Digest)>,
    T: Into<String>,
{
    let mut by_digest: BTreeMap<Digest, ImageRecord> = BTreeMap::new();
    for (tag, digest) in tags {
        let tag = tag.into();
        let rec = by_digest
            .entry(digest.clone())
            .or_insert_with(|| ImageRecord::new(repository, digest.clone()));
        match parse_pushed_tag(&tag) {
            Some((at, hex)) if digest.hex().starts_with(&hex) => {
                rec.pushed_at = Some(rec.pushed_at.map_or(at, |p| p.max(at)));
            }
            _ => rec.tags.push(tag),
        }
    }
    let mut out: Vec<ImageRecord> = by_digest.into_values().collect();
    for r in &mut out {
        r.tags.sort();
    }
    fold_referrers(out, &BTreeMap::new())
}

/// What an untagged referrer manifest names: its subject's digest and its artifact type.
pub type Subject = (Digest, Option<String>);

/// Folds referrers into their subject: a record whose every tag is a referrer tag (cosign's
/// `sha256-<hex>.sig/.att/.sbom`, the tag-schema index `sha256-<hex>`) naming a subject in
/// the listing, and an untagged record that `untagged_subjects` maps to a listed subject (its
/// manifest's `subject`, for registries listing untagged manifests). Referrer tags are hidden
/// from the other records' tags too. A referrer whose subject is not listed (an orphan)
/// stays a record of its own, so that eviction and sweep can remove it.
pub fn fold_referrers(
    records: Vec<ImageRecord>,
    untagged_subjects: &BTreeMap<Digest, Subject>,
) -> Vec<ImageRecord> {
    let listed: std::collections::HashSet<Digest> =
        records.iter().map(|r| r.digest.clone()).collect();
    let mut keep: Vec<ImageRecord> = Vec::new();
    let mut folded: Vec<(Digest, ReferrerSummary)> = Vec::new();
    for mut rec in records {
        let (referrer_tags, real): (Vec<String>, Vec<String>) = rec
            .tags
            .iter()
            .cloned()
            .partition(|t| parse_referrer_tag(t).is_some());
        let subject_of_tags = referrer_tags.iter().find_map(|t| {
            let (subject, suffix) = parse_referrer_tag(t)?;
            listed
                .contains(&subject)
                .then(|| (subject, suffix, t.clone()))
        });
        if real.is_empty() {
            if let Some((subject, suffix, tag)) = subject_of_tags {
                let artifact_type = suffix.and_then(|s| {
                    referrers::COSIGN_SUFFIXES
                        .iter()
                        .find(|(x, _)| *x == s)
                        .map(|(_, t)| t.to_string())
                });
                folded.push((
                    subject,
                    ReferrerSummary {
                        digest: rec.digest.clone(),
                        kind: if suffix.is_none() {
                            ReferrerKind::Other
                        } else {
                            kind_of(artifact_type.as_deref())
                        },
                        artifact_type: artifact_type.or(suffix.is_none().then(|| {
                            "application/vnd.oci.image.index.v1+json (referrers index)".to_string()
                        })),
                        tag: Some(tag),
                    },
                ));
                continue;
            }
            if rec.tags.is_empty() {
                if let Some((subject, artifact_type)) = untagged_subjects.get(&rec.digest) {
                    if listed.contains(subject) {
                        folded.push((
                            subject.clone(),
                            ReferrerSummary {
                                digest: rec.digest.clone(),
                                kind: kind_of(artifact_type.as_deref()),
                                artifact_type: artifact_type.clone(),
                                tag: None,
                            },
                        ));
                        continue;
                    }
                }
            }
        }
        if !real.is_empty() {
            rec.tags = real;
        }
        keep.push(rec);
    }
    for (subject, summary) in folded {
        if let Some(r) = keep.iter_mut().find(|r| r.digest == subject) {
            r.referrers.push(summary);
        }
    }
    keep
}

/// Drops the records that are child manifests of another image: untagged, and named by an
/// index in `children`. A tagged child is an image of its own too (someone tagged it).
pub fn without_children(records: Vec<ImageRecord>, children: &HashSet<Digest>) -> Vec<ImageRecord> {
    records
        .into_iter()
        .filter(|r| !(r.tags.is_empty() && children.contains(&r.digest)))
        .collect()
}

/// The child manifests an index names (none for an image manifest).
pub fn children(manifest: &RawManifest, location: &str) -> Result<Vec<Digest>> {
    Ok(match manifest.parse(location)? {
        ParsedManifest::Index { manifests } => manifests.into_iter().map(|d| d.digest).collect(),
        ParsedManifest::Image { .. } => Vec::new(),
    })
}

/// Lists the images of a store by its tags: HEADs every tag (8 at once) and groups them by
/// digest ([`group_by_digest`], which folds tagged referrers into their subject). A tag
/// deleted between the listing and its HEAD is skipped.
pub async fn list_images_by_tags(
    store: &dyn ImageStore,
    repository: &str,
) -> Result<Vec<ImageRecord>> {
    let tags = store.list_tags().await?;
    let heads: Vec<(String, Option<Digest>)> =
        futures::stream::iter(tags.into_iter().map(|t| async move {
            let head = store.head_manifest(&t).await?;
            Ok::<_, Error>((t, head.map(|h| h.digest)))
        }))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    Ok(group_by_digest(
        repository,
        heads.into_iter().filter_map(|(t, d)| d.map(|d| (t, d))),
    ))
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

/// The subjects (and artifact types) of those of `digests` whose manifests in `store` have a
/// `subject`: what [`fold_referrers`] needs for registries that list untagged manifests (a
/// referrer pushed by digest is one). Manifests gone meanwhile are skipped.
pub async fn untagged_subjects(
    store: &dyn ImageStore,
    digests: &[Digest],
) -> Result<BTreeMap<Digest, Subject>> {
    let lookups: Vec<_> = digests
        .iter()
        .map(|d| referral_of(store, d.clone()))
        .collect();
    let found: Vec<Result<Option<(Digest, Subject)>>> =
        futures::stream::iter(lookups).buffered(8).collect().await;
    let mut out = BTreeMap::new();
    for f in found {
        if let Some((d, s)) = f? {
            out.insert(d, s);
        }
    }
    Ok(out)
}

async fn referral_of(store: &dyn ImageStore, digest: Digest) -> Result<Option<(Digest, Subject)>> {
    let m = match store.get_manifest(&digest.to_string()).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let r = m.referral(&format!("{}@{digest}", store.location()))?;
    Ok(r.subject.map(|s| (digest, (s.digest, r.artifact_type))))
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

    #[test]
    fn tags_group_into_images_with_push_times_hidden() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let t1 = UNIX_EPOCH + Duration::from_secs(100);
        let t2 = UNIX_EPOCH + Duration::from_secs(200);
        let records = group_by_digest(
            "r",
            [
                ("v2".to_string(), a.clone()),
                (pushed_tag(t1, &a), a.clone()),
                (pushed_tag(t2, &a), a.clone()),
                ("v1".to_string(), a.clone()),
                // A bookkeeping tag naming another digest is a plain tag.
                (pushed_tag(t1, &a), b.clone()),
            ],
        );
        let ra = records.iter().find(|r| r.digest == a).unwrap();
        assert_eq!(ra.tags, ["v1", "v2"]);
        assert_eq!(ra.pushed_at, Some(t2), "the latest push");
        let rb = records.iter().find(|r| r.digest == b).unwrap();
        assert_eq!(rb.tags, [pushed_tag(t1, &a)]);
        assert_eq!(rb.pushed_at, None);
    }

    #[test]
    fn untagged_children_fold_into_their_index() {
        let index = Digest::sha256_of(b"i");
        let child = Digest::sha256_of(b"c");
        let tagged_child = Digest::sha256_of(b"t");
        let r = |d: &Digest, tags: &[&str]| {
            let mut rec = ImageRecord::new("r", d.clone());
            rec.tags = tags.iter().map(|t| t.to_string()).collect();
            rec
        };
        let records = vec![r(&index, &["v1"]), r(&child, &[]), r(&tagged_child, &["x"])];
        let children: HashSet<Digest> = [child.clone(), tagged_child.clone()].into();
        let kept: Vec<Digest> = without_children(records, &children)
            .into_iter()
            .map(|r| r.digest)
            .collect();
        assert_eq!(kept, vec![index, tagged_child]);
    }
}
