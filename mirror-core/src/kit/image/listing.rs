//! Listing: from what a registry lists (tags, or manifests with their tags) to one
//! [`ImageRecord`] per image, with what belongs to it folded in.
//!
//! Every registry's `list_images` ends in [`fold_referrers`]: a referrer is never listed as an
//! image of its own, wherever its subject sits. A referrer's subject may be the image, one of
//! its platform manifests (an attestation per platform), or another referrer (the signature
//! of an SBOM); the fold follows that chain up to the image. A referrer whose chain reaches no
//! listed image (its subject is gone, or is an untagged manifest a registry listed by tags
//! does not show) is an orphan ([`ImageRecord::orphan_of`] names where the chain ends) and
//! stays a record of its own: eviction and sweep remove it unless that manifest is in use.
//! Untagged leftovers of the referrer
//! schemes (a replaced tag-schema index, a cosign signature whose tag moved on) are no
//! images and are left out.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;

use super::referrers::{self, is_referrers_index, kind_of, parse_referrer_tag, ReferrerKind};
use super::{
    children, is_anchor_of, parse_handed_out_tag, parse_pushed_tag, ImageRecord, ReferrerSummary,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::ParsedManifest;
use crate::store::{ImageStore, ManifestHead};

/// How many subjects a chain of referrers may climb before it counts as an orphan.
const MAX_CHAIN: usize = 16;

/// Groups the tags of a repository by the digest they name into one record per image:
/// bookkeeping tags of that digest become its push time (the latest, when there are
/// several), every other tag is listed, sorted. Records come sorted by digest. Referrers are
/// not folded yet: [`fold_referrers`] does it.
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

/// Lists the images of a store by its tags: asks every tag for its digest (8 at once; a
/// bookkeeping tag of a digest another tag names needs no request), groups them by digest
/// ([`group_by_digest`]) and folds referrers into their images ([`fold_referrers`]). A tag
/// deleted between the listing and its lookup is skipped. Through a
/// [`ListedStore`](super::ListedStore), what the lookups learn (and the manifests they read)
/// serves the rest of the listing.
pub async fn list_images_by_tags(
    store: &dyn ImageStore,
    repository: &str,
) -> Result<Vec<ImageRecord>> {
    let tags = store.list_tags().await?;
    let heads = resolve_tags(store, tags).await?;
    let records = group_by_digest(
        repository,
        heads
            .into_iter()
            .filter_map(|(t, h)| h.map(|h| (t, h.digest))),
    );
    fold_referrers(store, records).await
}

/// [`list_images_by_tags`] of `repository` within `listing`, through its store of the
/// repository (made from `store` at the first call).
pub(crate) async fn list_by_tags_in(
    listing: &super::Listing,
    repository: &str,
    store: std::sync::Arc<dyn ImageStore>,
) -> Result<Vec<ImageRecord>> {
    let store = listing.store(repository, store);
    list_images_by_tags(store.as_ref(), repository).await
}

/// What each of `tags` names in `store` (`None` for a tag deleted meanwhile): a HEAD per tag,
/// 8 at once, except for the bookkeeping tags and hand-out marks of a digest another tag
/// already named (they carry the first 12 hex digits of their image's digest: about half the
/// tags of a repository).
pub(crate) async fn resolve_tags(
    store: &dyn ImageStore,
    tags: Vec<String>,
) -> Result<Vec<(String, Option<ManifestHead>)>> {
    let (timed, plain): (Vec<String>, Vec<String>) = tags
        .into_iter()
        .partition(|t| parse_pushed_tag(t).is_some() || parse_handed_out_tag(t).is_some());
    let mut heads = head_tags(store, plain).await?;
    let known: HashMap<String, ManifestHead> = heads
        .iter()
        .filter_map(|(_, h)| h.as_ref())
        .map(|h| (h.digest.hex().chars().take(12).collect(), h.clone()))
        .collect();
    let mut unknown = Vec::new();
    for t in timed {
        let hex = parse_pushed_tag(&t)
            .or_else(|| parse_handed_out_tag(&t))
            .map(|(_, hex)| hex.to_ascii_lowercase());
        match hex.and_then(|h| known.get(&h)) {
            Some(h) => heads.push((t, Some(h.clone()))),
            // An image whose only tags are bookkeeping (a copy in flight or one that failed
            // before its tag): asked, so that eviction sees it.
            None => unknown.push(t),
        }
    }
    heads.extend(head_tags(store, unknown).await?);
    Ok(heads)
}

/// What each of `tags` names in `store` (8 at once; `None` for a tag deleted meanwhile).
async fn head_tags(
    store: &dyn ImageStore,
    tags: Vec<String>,
) -> Result<Vec<(String, Option<ManifestHead>)>> {
    futures::stream::iter(tags.into_iter().map(|t| async move {
        let head = store.head_manifest(&t).await?;
        Ok::<_, Error>((t, head))
    }))
    .buffer_unordered(8)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect()
}

/// A record that is a referrer: what it names and how it shows in its image's record.
struct Candidate {
    subject: Digest,
    summary: ReferrerSummary,
}

/// Folds referrers into the images they belong to (see the module docs), and reads anchor
/// tags into [`ImageRecord::anchored`]. A record is a
/// referrer when every tag it has is a referrer tag (cosign's `sha256-<hex>.sig/.att/.sbom`,
/// the tag-schema index `sha256-<hex>`), or when it is untagged and its manifest names a
/// `subject` (registries listing untagged manifests: ECR, Artifact Registry). Referrer tags
/// are hidden from the tags of the images they sit on. Reads manifests from `store` only
/// when the listing does not tell: untagged records, and the images whose platform
/// manifests or referrers a chain leads to.
pub async fn fold_referrers(
    store: &dyn ImageStore,
    mut records: Vec<ImageRecord>,
) -> Result<Vec<ImageRecord>> {
    // Anchor tags and hand-out marks of a record's own digest mark it anchored or protected
    // and are no tags to show.
    for rec in &mut records {
        let before = rec.tags.len();
        let digest = rec.digest.clone();
        rec.tags.retain(|t| !is_anchor_of(t, &digest));
        rec.anchored |= rec.tags.len() != before;
        let mut until = rec.protected_until;
        rec.tags.retain(|t| match parse_handed_out_tag(t) {
            Some((at, hex)) if digest.hex().starts_with(&hex) => {
                until = Some(until.map_or(at, |u| u.max(at)));
                false
            }
            _ => true,
        });
        rec.protected_until = until;
    }
    let untagged: Vec<Digest> = records
        .iter()
        .filter(|r| r.tags.is_empty())
        .map(|r| r.digest.clone())
        .collect();
    let untagged = classify_untagged(store, &untagged).await?;

    let mut images: Vec<ImageRecord> = Vec::new();
    let mut candidates: HashMap<Digest, (ImageRecord, Candidate)> = HashMap::new();
    for mut rec in records {
        let (referrer_tags, real): (Vec<String>, Vec<String>) = rec
            .tags
            .iter()
            .cloned()
            .partition(|t| parse_referrer_tag(t).is_some());
        if !real.is_empty() {
            rec.tags = real;
            images.push(rec);
            continue;
        }
        let candidate = match referrer_tags.first() {
            Some(tag) => parse_referrer_tag(tag).map(|(subject, suffix)| {
                let artifact_type = match suffix {
                    Some(s) => referrers::COSIGN_SUFFIXES
                        .iter()
                        .find(|(x, _)| *x == s)
                        .map(|(_, t)| t.to_string()),
                    None => Some(format!("{} (referrers index)", crate::media::OCI_INDEX)),
                };
                Candidate {
                    subject,
                    summary: ReferrerSummary {
                        digest: rec.digest.clone(),
                        kind: match suffix {
                            Some(_) => kind_of(artifact_type.as_deref()),
                            None => ReferrerKind::Other,
                        },
                        artifact_type,
                        tag: Some(tag.clone()),
                    },
                }
            }),
            None => match untagged.get(&rec.digest) {
                Some(Untagged::Referrer(subject, artifact_type)) => Some(Candidate {
                    subject: subject.clone(),
                    summary: ReferrerSummary {
                        digest: rec.digest.clone(),
                        kind: kind_of(artifact_type.as_deref()),
                        artifact_type: artifact_type.clone(),
                        tag: None,
                    },
                }),
                // No image: left out of the listing.
                Some(Untagged::Leftover) => continue,
                None => None,
            },
        };
        match candidate {
            Some(c) => {
                candidates.insert(rec.digest.clone(), (rec, c));
            }
            None => images.push(rec),
        }
    }
    if candidates.is_empty() {
        return Ok(images);
    }

    let roots: HashSet<Digest> = images.iter().map(|r| r.digest.clone()).collect();
    let mut climb = Climb {
        store,
        roots: &roots,
        parents: None,
        subjects: HashMap::new(),
    };
    for (_, c) in candidates.values() {
        climb
            .subjects
            .insert(c.summary.digest.clone(), c.subject.clone());
    }
    let mut owners: Vec<(Digest, Digest)> = Vec::new();
    let mut ends: HashMap<Digest, Digest> = HashMap::new();
    for (digest, (_, c)) in &candidates {
        match climb.owner(&c.subject).await? {
            Owner::Image(owner) => owners.push((digest.clone(), owner)),
            Owner::None(end) => {
                ends.insert(digest.clone(), end);
            }
        }
    }
    for (digest, owner) in owners {
        if let Some((_, c)) = candidates.remove(&digest) {
            if let Some(img) = images.iter_mut().find(|r| r.digest == owner) {
                img.referrers.push(c.summary);
            }
        }
    }
    // The rest reach no listed image: orphans, records of their own, marked with where their
    // chain ends (a manifest that is gone, or that no listed image holds: an untagged image
    // on a registry listed by tags). Eviction and sweep delete them unless that manifest is
    // in use. A bare `sha256-<hex>` tag is an orphan only when it names a referrers index
    // (else it is somebody's image tagged so).
    for (digest, (mut rec, c)) in candidates {
        let bare_schema_tag = c.summary.tag.as_deref().is_some_and(|t| !t.contains('.'));
        if bare_schema_tag {
            let m = store.get_manifest(&rec.digest.to_string()).await;
            if !m.as_ref().is_ok_and(is_referrers_index) {
                images.push(rec);
                continue;
            }
        }
        rec.orphan_of = Some(ends.remove(&digest).unwrap_or(c.subject));
        images.push(rec);
    }
    for img in &mut images {
        img.referrers.sort_by(|a, b| a.digest.cmp(&b.digest));
    }
    images.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(images)
}

/// Where a referrer's chain of subjects leads.
enum Owner {
    /// A listed image.
    Image(Digest),
    /// No listed image: the chain ends at this manifest, gone or held by no listed image.
    None(Digest),
}

/// Walks from a subject up to the listed image it belongs to.
struct Climb<'a> {
    store: &'a dyn ImageStore,
    roots: &'a HashSet<Digest>,
    /// Child manifest → the listed index holding it, read when first needed.
    parents: Option<HashMap<Digest, Digest>>,
    /// Referrer → its subject, as far as known.
    subjects: HashMap<Digest, Digest>,
}

impl Climb<'_> {
    /// The listed image `subject` belongs to: itself, the index holding it, or (for a
    /// referrer) the image its own subject belongs to; else where the chain ends (a manifest
    /// that is gone or that no listed image holds).
    async fn owner(&mut self, subject: &Digest) -> Result<Owner> {
        let mut at = subject.clone();
        let mut visited = HashSet::new();
        for _ in 0..MAX_CHAIN {
            if !visited.insert(at.clone()) {
                break;
            }
            if self.roots.contains(&at) {
                return Ok(Owner::Image(at));
            }
            if let Some(next) = self.subjects.get(&at) {
                at = next.clone();
                continue;
            }
            if let Some(parent) = self.parents().await?.get(&at) {
                return Ok(Owner::Image(parent.clone()));
            }
            // Not listed: a referrer pushed by digest, found through its own subject.
            match classify_untagged(self.store, std::slice::from_ref(&at))
                .await?
                .remove(&at)
            {
                Some(Untagged::Referrer(next, _)) => {
                    self.subjects.insert(at.clone(), next.clone());
                    at = next;
                }
                _ => break,
            }
        }
        Ok(Owner::None(at))
    }

    async fn parents(&mut self) -> Result<&HashMap<Digest, Digest>> {
        if self.parents.is_none() {
            let store = self.store;
            let lookups = self.roots.iter().cloned().map(|root| async move {
                let m = match store.get_manifest(&root.to_string()).await {
                    Ok(m) => m,
                    Err(e) if e.is_not_found() => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                };
                let location = format!("{}@{root}", store.location());
                Ok(children(&m, &location)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|c| (c, root.clone()))
                    .collect::<Vec<_>>())
            });
            let found: Vec<Result<Vec<(Digest, Digest)>>> =
                futures::stream::iter(lookups).buffered(8).collect().await;
            let mut map = HashMap::new();
            for pairs in found {
                map.extend(pairs?);
            }
            self.parents = Some(map);
        }
        Ok(self.parents.get_or_insert_with(HashMap::new))
    }
}

/// What an untagged manifest is, when it is no image.
enum Untagged {
    /// A referrer: its subject and artifact type.
    Referrer(Digest, Option<String>),
    /// A leftover of the referrer schemes: a tag-schema index replaced by a newer version,
    /// or a cosign signature whose `.sig` tag moved on. No image; nothing lists it.
    Leftover,
}

/// Payload media types of cosign's signature and attestation manifests.
const COSIGN_PAYLOADS: [&str; 2] = [
    "application/vnd.dev.cosign.simplesigning.v1+json",
    "application/vnd.dsse.envelope.v1+json",
];

/// What those of `digests` that are no images are (see [`Untagged`]). Manifests gone
/// meanwhile are skipped.
async fn classify_untagged(
    store: &dyn ImageStore,
    digests: &[Digest],
) -> Result<BTreeMap<Digest, Untagged>> {
    let lookups = digests.iter().cloned().map(|digest| async move {
        let m = match store.get_manifest(&digest.to_string()).await {
            Ok(m) => m,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let location = format!("{}@{digest}", store.location());
        // A manifest that is not JSON names no subject; it is somebody's image.
        let Ok(r) = m.referral(&location) else {
            return Ok(None);
        };
        if let Some(s) = r.subject {
            return Ok(Some((
                digest,
                Untagged::Referrer(s.digest, r.artifact_type),
            )));
        }
        let cosign_payload = match m.parse(&location) {
            Ok(ParsedManifest::Image { layers, .. }) => {
                !layers.is_empty()
                    && layers
                        .iter()
                        .all(|l| COSIGN_PAYLOADS.contains(&l.media_type.as_str()))
            }
            _ => false,
        };
        Ok((is_referrers_index(&m) || cosign_payload).then_some((digest, Untagged::Leftover)))
    });
    let found: Vec<Result<Option<(Digest, Untagged)>>> =
        futures::stream::iter(lookups).buffered(8).collect().await;
    let mut out = BTreeMap::new();
    for f in found {
        if let Some((d, s)) = f? {
            out.insert(d, s);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::image::pushed_tag;

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

    proptest::proptest! {
        /// Whatever tags a registry lists (bookkeeping tags with any number, referrer tags,
        /// anchors, marks, plain ones), grouping and folding them never panics, and no push
        /// time or protection comes out past the year 9999.
        #[test]
        fn no_listing_input_panics(
            tags in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::strategy::Just("mirror.pushed.".to_string()),
                        proptest::strategy::Just("mirror.anchor.until.".to_string()),
                        proptest::strategy::Just("mirror.anchor.".to_string()),
                        proptest::strategy::Just("sha256-".to_string()),
                        proptest::strategy::Just(String::new()),
                    ],
                    "[0-9a-f.+-]{0,30}",
                    "(\\.sig|\\.att|\\.sbom)?",
                    0u8..4,
                ),
                0..40,
            ),
        ) {
            let digests: Vec<Digest> = (0u8..4).map(|n| Digest::sha256_of(&[n])).collect();
            let listed: Vec<(String, Digest)> = tags
                .into_iter()
                .map(|(prefix, body, suffix, d)| {
                    let d = &digests[d as usize];
                    // Half the bookkeeping-looking tags name the digest they sit on.
                    let body = if body.len() % 2 == 0 {
                        format!("{body}.{}", &d.hex()[..12])
                    } else {
                        body
                    };
                    (format!("{prefix}{body}{suffix}"), d.clone())
                })
                .collect();
            let records = group_by_digest("r", listed);
            let dir = tempfile::tempdir().unwrap();
            let store = crate::store::layout::LayoutStore::create(dir.path()).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let folded = rt.block_on(fold_referrers(&store, records));
            if let Ok(images) = folded {
                let limit = UNIX_EPOCH + Duration::from_millis(crate::image::MAX_BOOKKEEPING_MILLIS);
                for i in images {
                    proptest::prop_assert!(i.pushed_at.is_none_or(|t| t <= limit));
                    proptest::prop_assert!(i.protected_until.is_none_or(|t| t <= limit));
                }
            }
        }
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
