//! What goes when an image is deleted: its referrers and their tag-schema indexes, never what
//! another image of the repository still uses.

use std::collections::HashSet;

use futures::StreamExt;

use super::discover::{discover, index_entries, is_referrers_index};
use super::{parse_referrer_tag, schema_tag, ReferrerOptions};
use crate::digest::Digest;
use crate::error::Result;
use crate::media::{ParsedManifest, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::store::ImageStore;

/// Deletion looks further than a copy: what it leaves behind, nothing finds again.
const DELETE_MAX_DEPTH: usize = 16;
const DELETE_MAX_COUNT: usize = 10_000;

/// What deleting an image deletes besides the image itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Belonging {
    /// Referrers (deepest first) and tag-schema indexes, in the order to delete them, after
    /// the image.
    pub manifests: Vec<Digest>,
    /// The image is also a manifest of another image of the repository (a platform manifest
    /// of a kept index): it must not be deleted, nor its referrers.
    pub shared: bool,
}

/// What belongs to the image `subject` in `store` (see [`Belonging`]): the referrers of its
/// manifests and, recursively, theirs, with the tag-schema indexes that list them. The
/// referrers of a platform manifest that another image of the store also holds stay: that
/// image still needs them.
///
/// `subject` may itself be a tag-schema index left behind by an image deleted elsewhere (an
/// orphan, see [`crate::ImageRecord::orphan_of`]): then what it lists belongs to it.
pub async fn belonging(store: &dyn ImageStore, subject: &Digest) -> Result<Belonging> {
    let others = held_by_others(store, subject).await?;
    if others.contains(subject) {
        return Ok(Belonging {
            manifests: Vec::new(),
            shared: true,
        });
    }
    let mut subjects = vec![subject.clone()];
    let mut listed: Vec<Digest> = Vec::new();
    match store.get_manifest(&subject.to_string()).await {
        Ok(m) => {
            let location = format!("{}@{subject}", store.location());
            if is_referrers_index(&m) {
                listed = index_entries(&m, &location)?
                    .into_iter()
                    .map(|d| d.digest)
                    .filter(|d| d != subject && !others.contains(d))
                    .collect();
                subjects.extend(listed.iter().cloned());
            } else {
                subjects.extend(
                    crate::image::children(&m, &location)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| !others.contains(c)),
                );
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let options = ReferrerOptions {
        max_depth: DELETE_MAX_DEPTH,
        max_count: DELETE_MAX_COUNT,
        ..ReferrerOptions::all()
    };
    let (found, truncated) = discover(store, &subjects, &options).await?;
    if truncated {
        tracing::warn!(
            store = %store.location(),
            %subject,
            "the referrers of the image reach the deletion bounds; the rest stay"
        );
    }
    let mut out: Vec<Digest> = Vec::new();
    let mut sorted: Vec<_> = found.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.depth));
    for d in sorted
        .iter()
        .map(|r| &r.descriptor.digest)
        .chain(listed.iter())
    {
        if !out.contains(d) && !others.contains(d) {
            out.push(d.clone());
        }
    }
    // The tag-schema indexes of the subjects and of every referrer.
    let with_index = subjects
        .iter()
        .chain(found.iter().map(|r| &r.descriptor.digest));
    for s in with_index {
        if let Some(head) = store.head_manifest(&schema_tag(s)).await? {
            if !out.contains(&head.digest) {
                out.push(head.digest);
            }
        }
    }
    out.retain(|d| d != subject);
    Ok(Belonging {
        manifests: out,
        shared: false,
    })
}

/// Every manifest that the images of `store` other than `except` hold: the roots its tags
/// name (other than referrer tags) and the child manifests of those that are indexes.
async fn held_by_others(store: &dyn ImageStore, except: &Digest) -> Result<HashSet<Digest>> {
    let tags: Vec<String> = store
        .list_tags()
        .await?
        .into_iter()
        .filter(|t| parse_referrer_tag(t).is_none())
        .collect();
    let heads: Vec<_> = tags
        .into_iter()
        .map(|t| async move { store.head_manifest(&t).await })
        .collect();
    let heads: Vec<Result<Option<crate::store::ManifestHead>>> = futures::stream::iter(heads)
        .buffer_unordered(8)
        .collect()
        .await;
    let mut roots: Vec<(Digest, String)> = Vec::new();
    for head in heads {
        if let Some(h) = head? {
            if &h.digest != except && !roots.iter().any(|(d, _)| d == &h.digest) {
                roots.push((h.digest, h.media_type));
            }
        }
    }
    let mut held: HashSet<Digest> = roots.iter().map(|(d, _)| d.clone()).collect();
    // Indexes, and indexes of indexes.
    let mut pending: Vec<Digest> = roots
        .into_iter()
        .filter(|(_, m)| m == OCI_INDEX || m == DOCKER_MANIFEST_LIST)
        .map(|(d, _)| d)
        .collect();
    let mut reads = 0;
    while let Some(index) = pending.pop() {
        reads += 1;
        if reads > DELETE_MAX_COUNT {
            break;
        }
        let m = match store.get_manifest(&index.to_string()).await {
            Ok(m) => m,
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        if let Ok(ParsedManifest::Index { manifests }) =
            m.parse(&format!("{}@{index}", store.location()))
        {
            for child in manifests {
                let nested =
                    child.media_type == OCI_INDEX || child.media_type == DOCKER_MANIFEST_LIST;
                if held.insert(child.digest.clone()) && nested {
                    pending.push(child.digest);
                }
            }
        }
    }
    Ok(held)
}
