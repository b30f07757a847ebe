//! Finding referrers: the API, else the tag schema, plus cosign's tags; breadth-first,
//! bounded, each digest once.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;

use super::{
    cosign_tag, kind_of, schema_tag, tag_schemes_apply, FoundBy, Referrer, ReferrerKind,
    ReferrerOptions, COSIGN_SUFFIXES,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{Descriptor, RawManifest, OCI_INDEX};
use crate::store::ImageStore;

/// Subjects looked up at once.
const LOOKUPS_AT_ONCE: usize = 8;

/// Descriptors a whole walk accepts from listings, in multiples of `max_count`: a registry
/// answering thousands of referrers for every subject (and for every referrer of them) ends
/// the walk, truncated, instead of being asked once per referrer listed.
const LISTED_PER_COUNT: usize = 4;

/// The referrers of `subject` that the store lists: through the API, else the tag schema.
/// `api_absent` remembers, for the rest of a walk, that the store does not serve the API.
async fn listed(
    store: &dyn ImageStore,
    subject: &Digest,
    filter: Option<&str>,
    api_absent: &AtomicBool,
) -> Result<(Vec<Descriptor>, FoundBy)> {
    if !api_absent.load(Ordering::Relaxed) {
        match store.referrers(subject, filter).await? {
            Some(list) => return Ok((list, FoundBy::Api)),
            None => api_absent.store(true, Ordering::Relaxed),
        }
    }
    if !tag_schemes_apply(subject) {
        return Ok((Vec::new(), FoundBy::TagSchema));
    }
    Ok((
        schema_index(store, subject).await?.unwrap_or_default(),
        FoundBy::TagSchema,
    ))
}

/// The entries of the tag-schema index of `subject`, `None` when there is none. Something
/// else than an index under that tag (an image someone tagged so) lists no referrer.
pub(super) async fn schema_index(
    store: &dyn ImageStore,
    subject: &Digest,
) -> Result<Option<Vec<Descriptor>>> {
    let tag = schema_tag(subject);
    let manifest = match store.get_manifest(&tag).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    if manifest.media_type != OCI_INDEX {
        tracing::warn!(
            store = %store.location(),
            %tag,
            media_type = %manifest.media_type,
            "the referrers tag names no index; ignored"
        );
        return Ok(None);
    }
    index_entries(&manifest, &format!("{}:{tag}", store.location())).map(Some)
}

/// The entries of an index document.
pub(super) fn index_entries(manifest: &RawManifest, location: &str) -> Result<Vec<Descriptor>> {
    #[derive(serde::Deserialize)]
    struct Index {
        #[serde(default)]
        manifests: Vec<Descriptor>,
    }
    let index: Index =
        serde_json::from_slice(&manifest.bytes).map_err(|e| Error::InvalidManifest {
            location: location.to_string(),
            reason: format!("the referrers index is unreadable: {e}"),
        })?;
    Ok(index.manifests)
}

/// Whether `manifest` reads as a referrers index: an OCI index whose every entry names an
/// artifact type and no platform (an image index names platforms).
pub fn is_referrers_index(manifest: &RawManifest) -> bool {
    if manifest.media_type != OCI_INDEX {
        return false;
    }
    match index_entries(manifest, "") {
        Ok(entries) => {
            !entries.is_empty()
                && entries
                    .iter()
                    .all(|e| e.platform.is_none() && e.artifact_type.is_some())
        }
        Err(_) => false,
    }
}

/// Cosign's tag of `subject` with `suffix`, when it exists in the store.
async fn cosign_referrer(
    store: &dyn ImageStore,
    subject: &Digest,
    suffix: &str,
    artifact_type: &str,
) -> Result<Option<(String, Descriptor)>> {
    let tag = cosign_tag(subject, suffix);
    let head = store.head_manifest(&tag).await?;
    Ok(head.map(|h| {
        (
            tag,
            Descriptor {
                media_type: h.media_type,
                digest: h.digest,
                size: h.size,
                artifact_type: Some(artifact_type.to_string()),
                platform: None,
                annotations: None,
            },
        )
    }))
}

/// A subject and the referrers one lookup found for it.
type Lookup = (Digest, Vec<(Descriptor, FoundBy)>);

/// Every referrer of one subject: listed (API or tag schema) and, with `cosign`, cosign's
/// tags.
async fn lookup(
    store: &dyn ImageStore,
    subject: Digest,
    filter: Option<&str>,
    cosign: bool,
    api_absent: &AtomicBool,
    max_count: usize,
) -> Result<Lookup> {
    let (listed, by) = listed(store, &subject, filter, api_absent).await?;
    // One subject never brings more than the bound in all (a registry may answer 100,000
    // descriptors for every subject): the rest is dropped before the level gathers them
    // (one more is kept, so that reaching the bound is seen and reported).
    let mut all: Vec<(Descriptor, FoundBy)> = listed
        .into_iter()
        .take(max_count.saturating_add(1))
        .map(|d| (d, by.clone()))
        .collect();
    if cosign && tag_schemes_apply(&subject) {
        let (a, b, c) = futures::join!(
            cosign_referrer(store, &subject, COSIGN_SUFFIXES[0].0, COSIGN_SUFFIXES[0].1),
            cosign_referrer(store, &subject, COSIGN_SUFFIXES[1].0, COSIGN_SUFFIXES[1].1),
            cosign_referrer(store, &subject, COSIGN_SUFFIXES[2].0, COSIGN_SUFFIXES[2].1),
        );
        for found in [a?, b?, c?].into_iter().flatten() {
            all.push((found.1, FoundBy::CosignTag(found.0)));
        }
    }
    Ok((subject, all))
}

/// Finds the referrers of `subjects` in `store` (see the module docs); the second value is
/// true when a bound was reached with manifests left unexamined. Within a level, signatures
/// come first, so that a count bound drops them last.
pub async fn discover(
    store: &dyn ImageStore,
    subjects: &[Digest],
    options: &ReferrerOptions,
) -> Result<(Vec<Referrer>, bool)> {
    let mut seen: HashSet<Digest> = subjects.iter().cloned().collect();
    let mut level: Vec<Digest> = subjects.to_vec();
    let mut out: Vec<Referrer> = Vec::new();
    let mut truncated = false;
    let mut budget = options.max_count.saturating_mul(LISTED_PER_COUNT);
    let api_absent = AtomicBool::new(false);
    let filter = match options.artifact_types.as_slice() {
        [one] => Some(one.as_str()),
        _ => None,
    };
    for depth in 1.. {
        if level.is_empty() {
            break;
        }
        if depth > options.max_depth {
            truncated = true;
            break;
        }
        // The type filter chooses among the image's own referrers; what refers to a chosen
        // one (the signature of an SBOM) comes with it.
        let filter = if depth == 1 { filter } else { None };
        let api_absent = &api_absent;
        let lookups: Vec<_> = level
            .iter()
            .map(|subject| {
                lookup(
                    store,
                    subject.clone(),
                    filter,
                    options.cosign_tags,
                    api_absent,
                    options.max_count,
                )
            })
            .collect();
        let mut found = Vec::new();
        let mut answers = futures::stream::iter(lookups).buffered(LOOKUPS_AT_ONCE);
        while let Some(item) = answers.next().await {
            let (subject, all) = item?;
            if all.len() > budget {
                // Lookups still under way are dropped with the stream.
                truncated = true;
                found.push((subject, all.into_iter().take(budget).collect::<Vec<_>>()));
                budget = 0;
                break;
            }
            budget -= all.len();
            found.push((subject, all));
        }
        drop(answers);
        let mut candidates: Vec<(Digest, Descriptor, FoundBy)> = Vec::new();
        for (subject, all) in found {
            for (descriptor, found_by) in all {
                if depth == 1 && !options.wants(descriptor.artifact_type.as_deref()) {
                    continue;
                }
                candidates.push((subject.clone(), descriptor, found_by));
            }
        }
        candidates.sort_by_key(|(_, d, _)| {
            kind_of(d.artifact_type.as_deref()) != ReferrerKind::Signature
        });
        let mut next = Vec::new();
        for (subject, descriptor, found_by) in candidates {
            if !seen.insert(descriptor.digest.clone()) {
                continue;
            }
            if out.len() >= options.max_count {
                truncated = true;
                continue;
            }
            next.push(descriptor.digest.clone());
            out.push(Referrer {
                subject,
                descriptor,
                found_by,
                depth,
            });
        }
        level = next;
        if budget == 0 && !level.is_empty() {
            truncated = true;
            break;
        }
    }
    Ok((out, truncated))
}
