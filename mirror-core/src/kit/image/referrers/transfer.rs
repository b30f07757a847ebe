//! Copying referrers into a destination and making them discoverable there: its referrers
//! API, else the tag-schema indexes this module maintains.

use crate::error::Operation;
use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use super::discover::index_entries;
use super::{schema_tag, tag_schemes_apply, FoundBy, Referrer, ReferrerOptions, ReferrerReport};
use crate::copy::{copy_image, CopyOptions};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{Descriptor, RawManifest, OCI_INDEX};
use crate::store::ImageStore;

/// Rounds of read-merge-write of a tag-schema index before giving up.
const MERGE_ROUNDS: usize = 16;
/// The shortest wait before the second look at a written index.
const CONFIRM_AFTER: Duration = Duration::from_millis(100);

/// 0 to 49 ms, different per call: spreads the second looks of concurrent writers.
fn rand_millis() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (h.finish() % 50) as u32
}
/// Referrers of one depth copied at once.
const COPIES_AT_ONCE: usize = 4;

/// What copying one referrer gave.
enum Outcome {
    /// Copied as a cosign tag.
    Tagged,
    /// Copied by digest: its descriptor as the destination holds it, and whether the
    /// destination said it indexes it (`OCI-Subject`).
    Indexed(Box<Descriptor>, Option<bool>),
    /// Listed by the source, absent there.
    Missing,
    /// Its `subject` names another manifest than the one it was listed for: not copied.
    Foreign,
    /// A cosign tag the destination holds with other signatures: kept as it is.
    Kept,
}

/// Whether the cosign tag `tag` may be written at `dst` with `incoming` (read from the
/// source): when `dst` has no such tag, holds the same manifest, or holds a signature
/// manifest whose every layer `incoming` carries too (the same signer signed again: cosign
/// appends layers). Any other signature manifest under the tag is kept: replacing it would
/// drop signatures another image of the repository was mirrored with (an index of one
/// source naming a platform manifest of another brings its own `.sig` for it).
///
/// Why not merge the layers as cosign does when it signs twice: a merged manifest is one no
/// source published (its digest is new), and any source could then append to another's.
async fn cosign_tag_writable(
    dst: &dyn ImageStore,
    tag: &str,
    incoming: &RawManifest,
) -> Result<bool> {
    let Some(head) = dst.head_manifest(tag).await? else {
        return Ok(true);
    };
    if head.digest == incoming.digest {
        return Ok(true);
    }
    let existing = match dst.get_manifest(tag).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(true),
        Err(e) => return Err(e),
    };
    // A signature layer is its payload and its annotations (cosign keeps the signature in
    // `dev.cosignproject.cosign/signature`): two signers of one image share the payload.
    let layers = |m: &RawManifest| -> Option<Vec<Descriptor>> {
        match m.parse(tag).ok()? {
            crate::media::ParsedManifest::Image { layers, .. } => Some(layers),
            crate::media::ParsedManifest::Index { .. } => None,
        }
    };
    Ok(match (layers(&existing), layers(incoming)) {
        (Some(old), Some(new)) => old.iter().all(|d| new.contains(d)),
        _ => false,
    })
}

async fn copy_one(
    src: &dyn ImageStore,
    dst: &dyn ImageStore,
    r: &Referrer,
    tree: &CopyOptions,
) -> Result<Outcome> {
    let reference = r.descriptor.digest.to_string();
    match &r.found_by {
        FoundBy::CosignTag(tag) => {
            let incoming = crate::store::get_verified_manifest(src, &reference).await?;
            if !cosign_tag_writable(dst, tag, &incoming).await? {
                tracing::warn!(
                    destination = %dst.location(),
                    %tag,
                    source = %src.location(),
                    "the destination holds other signatures under this cosign tag; kept, not replaced"
                );
                return Ok(Outcome::Kept);
            }
            copy_image(src, &reference, dst, Some(tag), tree).await?;
            Ok(Outcome::Tagged)
        }
        FoundBy::Api | FoundBy::TagSchema => {
            // A referrer belongs to the manifest it was listed for: one whose `subject` names
            // another manifest would be filed under that one at the destination.
            let incoming = match crate::store::get_verified_manifest(src, &reference).await {
                Ok(m) => m,
                // A stale list: the referrer was deleted at the source, its index kept.
                Err(e) if e.is_not_found() => {
                    tracing::warn!(
                        source = %src.location(),
                        referrer = %reference,
                        subject = %r.subject,
                        "a referrer listed by the source is not there; skipped"
                    );
                    return Ok(Outcome::Missing);
                }
                Err(e) => return Err(e),
            };
            let named = incoming
                .referral(&format!("{}@{reference}", src.location()))
                .ok()
                .and_then(|r| r.subject)
                .map(|s| s.digest);
            if named.as_ref().is_some_and(|s| s != &r.subject) {
                tracing::warn!(
                    source = %src.location(),
                    referrer = %reference,
                    listed_for = %r.subject,
                    "a referrer whose subject is another manifest than the one it was listed for; not copied"
                );
                return Ok(Outcome::Foreign);
            }
            // The manifest is there (read above): a `NotFound` now is a blob of it missing
            // at the source, an error as for the image itself.
            let copied = copy_image(src, &reference, dst, None, tree).await?;
            // The entry describes what the destination holds, not what the source said.
            let m = &copied.manifest;
            let referral = m.referral(&format!("{}@{}", dst.location(), m.digest))?;
            let descriptor = Descriptor {
                media_type: m.media_type.clone(),
                digest: m.digest.clone(),
                size: m.bytes.len() as u64,
                artifact_type: referral.artifact_type,
                platform: None,
                annotations: referral.annotations.filter(|a| !a.is_empty()),
            };
            Ok(Outcome::Indexed(
                Box::new(descriptor),
                copied.subject_indexed,
            ))
        }
    }
}

/// Copies `referrers` (found by [`super::discover`] at `src`) into `dst`, one depth after the
/// other (a few at once within a depth), and makes them discoverable there: the
/// destination's referrers API, else its tag-schema indexes; cosign's tags as tags. Adds to
/// `report.copied` and `report.missing`.
pub async fn transfer(
    src: &dyn ImageStore,
    dst: &dyn ImageStore,
    referrers: &[Referrer],
    options: &CopyOptions,
    report: &mut ReferrerReport,
) -> Result<()> {
    if referrers.is_empty() {
        return Ok(());
    }
    let mut tree = options.clone();
    tree.referrers = ReferrerOptions::none();
    tree.platforms.clear();
    let mut schema_entries: BTreeMap<Digest, Vec<Descriptor>> = BTreeMap::new();
    let mut api: Option<bool> = None;
    let mut start = 0;
    while start < referrers.len() {
        let depth = referrers[start].depth;
        let end = referrers[start..]
            .iter()
            .position(|r| r.depth != depth)
            .map_or(referrers.len(), |n| start + n);
        let level = &referrers[start..end];
        // What refers to a refused referrer (the signature of a forged SBOM) goes with it.
        let refused: std::collections::HashSet<&Digest> = report.foreign.iter().collect();
        let (level, orphaned): (Vec<&Referrer>, Vec<&Referrer>) =
            level.iter().partition(|r| !refused.contains(&r.subject));
        report
            .foreign
            .extend(orphaned.iter().map(|r| r.descriptor.digest.clone()));
        let copies: Vec<_> = level.iter().map(|r| copy_one(src, dst, r, &tree)).collect();
        let outcomes: Vec<Result<Outcome>> = futures::stream::iter(copies)
            .buffered(COPIES_AT_ONCE)
            .collect()
            .await;
        for (r, outcome) in level.into_iter().zip(outcomes) {
            match outcome? {
                Outcome::Missing => {
                    report.missing.push(r.descriptor.digest.clone());
                    continue;
                }
                Outcome::Foreign => {
                    report.foreign.push(r.descriptor.digest.clone());
                    continue;
                }
                Outcome::Kept => {
                    if let FoundBy::CosignTag(tag) = &r.found_by {
                        report.cosign_tags_kept.push(tag.clone());
                    }
                    continue;
                }
                Outcome::Tagged => {}
                Outcome::Indexed(descriptor, indexed) => {
                    // The answer to a PUT says whether the destination indexes referrers; a
                    // referrer it already held says nothing.
                    api = api.or(indexed);
                    schema_entries
                        .entry(r.subject.clone())
                        .or_default()
                        .push(*descriptor);
                }
            }
            *report
                .copied
                .entry(r.artifact_type().to_string())
                .or_default() += 1;
        }
        start = end;
    }
    if let Some(first) = schema_entries.keys().next() {
        // A destination serving the API indexes what it receives (it answered `OCI-Subject`,
        // or when every referrer was there already, it answers the API); else the tag schema.
        let api = match api {
            Some(known) => known,
            None => dst.referrers(first, None).await?.is_some(),
        };
        if !api {
            for (subject, entries) in &schema_entries {
                if tag_schemes_apply(subject) {
                    add_to_schema_index(dst, subject, entries).await?;
                } else {
                    tracing::warn!(
                        destination = %dst.location(),
                        %subject,
                        "the destination has no referrers API and the tag schema names sha256 \
                         subjects only; the referrers are copied but not listed"
                    );
                }
            }
        }
    }
    Ok(())
}

/// The tag-schema index document holding `entries`.
fn index_document(entries: &[Descriptor]) -> Result<RawManifest> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Index<'a> {
        schema_version: u32,
        media_type: &'a str,
        manifests: &'a [Descriptor],
    }
    let bytes = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: entries,
    })
    .map_err(|e| Error::internal("writing a referrers index", e))?;
    Ok(RawManifest::new(bytes, OCI_INDEX))
}

/// Adds `entries` to the tag-schema index of `subject` in `store`: read, merge, write, read
/// again until the index holds them, twice (see the module docs for what remains racy). A
/// tag that names something else than an index is refused, not overwritten.
pub async fn add_to_schema_index(
    store: &dyn ImageStore,
    subject: &Digest,
    entries: &[Descriptor],
) -> Result<()> {
    let tag = schema_tag(subject);
    let location = format!("{}:{tag}", store.location());
    let holds = |current: &[Descriptor]| {
        entries
            .iter()
            .all(|e| current.iter().any(|c| c.digest == e.digest))
    };
    let mut confirmed = 0;
    // The longest read-merge-write of this writer: another writer that read the index before
    // this one wrote takes about as long to write its version.
    let mut slowest = Duration::ZERO;
    for _ in 0..MERGE_ROUNDS {
        let started = std::time::Instant::now();
        let current = match store.get_manifest(&tag).await {
            Ok(m) if m.media_type == OCI_INDEX => index_entries(&m, &location)?,
            Ok(m) => {
                return Err(Error::Refused {
                    registry: store.location().to_string(),
                    operation: Operation::PutReferrersIndex,
                    location,
                    code: "not an index".into(),
                    message: format!(
                        "the tag {tag} names a {} manifest, not a referrers index; it is left \
                         as it is",
                        m.media_type
                    ),
                })
            }
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        if holds(&current) {
            confirmed += 1;
            if confirmed == 2 {
                return Ok(());
            }
            // A second look, once a writer that read before this write has had several times
            // this writer's slowest round to write its own version.
            let jitter = Duration::from_millis(u64::from(rand_millis()));
            tokio::time::sleep(CONFIRM_AFTER.max(slowest * 4) + jitter).await;
            continue;
        }
        confirmed = 0;
        let mut merged = current;
        for e in entries {
            if !merged.iter().any(|c| c.digest == e.digest) {
                merged.push(e.clone());
            }
        }
        store.put_manifest(&tag, &index_document(&merged)?).await?;
        slowest = slowest.max(started.elapsed());
    }
    Err(Error::Refused {
        registry: store.location().to_string(),
        operation: Operation::PutReferrersIndex,
        location,
        code: "conflict".into(),
        message: format!(
            "the referrers index of {subject} kept losing entries to concurrent writers after \
             {MERGE_ROUNDS} rounds"
        ),
    })
}
