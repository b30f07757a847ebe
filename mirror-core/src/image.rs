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
//! [`place`] is the one sequence that writes an image into a repository, used by
//! [`Mirror::mirror`](crate::Mirror::mirror) and [`Mirror::build`](crate::Mirror::build):
//! blobs and children, then the bookkeeping tag (so the image is never visible without its
//! push time), then the real tag last (so nothing half-copied is ever tagged).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde::Serialize;

use crate::copy::{copy, CopyOptions, CopyReport};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{ParsedManifest, RawManifest};
use crate::store::{get_verified_manifest, ImageStore};

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
    /// Total size in bytes (manifests, configs and layers), if known.
    pub size: Option<u64>,
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
        }
    }
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
/// several), every other tag is listed, sorted. Records come sorted by digest.
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
    out
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
/// digest ([`group_by_digest`]). A tag deleted between the listing and its HEAD is skipped.
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
    let mut total = 0u64;
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut pending = vec![digest.clone()];
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

/// Places `source` in `dst` under `tag`: blobs and children first (the copy engine), then
/// with [`PushTimes::Bookkeeping`] the bookkeeping tag, then `tag` last.
///
/// A platform filter changes the image's digest, which is only known once the filtered
/// index is written: then the tag comes first and the bookkeeping tag right after it.
pub async fn place(
    source: SourceImage<'_>,
    dst: &dyn ImageStore,
    tag: &str,
    options: &CopyOptions,
    push_times: PushTimes,
) -> Result<CopyReport> {
    let (src, src_ref) = (source.store, source.reference);
    let at = match push_times {
        PushTimes::Recorded => return copy(src, src_ref, dst, tag, options).await,
        PushTimes::Bookkeeping(at) => at,
    };
    if !options.platforms.is_empty() {
        let r = copy(src, src_ref, dst, tag, options).await?;
        let m = dst.get_manifest(&r.digest.to_string()).await?;
        dst.put_manifest(&pushed_tag(at, &r.digest), &m).await?;
        return Ok(r);
    }
    let digest = match source.digest {
        Some(d) => d.clone(),
        None => get_verified_manifest(src, src_ref).await?.digest,
    };
    let report = copy(src, src_ref, dst, &pushed_tag(at, &digest), options).await?;
    let m = dst.get_manifest(&report.digest.to_string()).await?;
    dst.put_manifest(tag, &m).await?;
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
