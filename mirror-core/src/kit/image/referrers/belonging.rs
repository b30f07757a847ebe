//! What goes when an image is deleted: its referrers and their tag-schema indexes, never what
//! another image of the repository still uses.

use std::collections::{HashMap, HashSet};

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
/// Indexes read at most to learn what a repository's images hold (the tag listing's bound).
const MAX_INDEX_READS: usize = 200_000;

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
    let holdings = Holdings::read(store).await?;
    belonging_with(
        store,
        subject,
        &|m: &Digest| holdings.held_by_others(subject, m),
        None,
    )
    .await
}

/// [`belonging`] with what the other images hold already known (`held_by_others`: whether an
/// image of the store other than `subject` holds a manifest) and, when known, the media type
/// of `subject` (an image manifest is not read: it has no children and lists no referrers).
pub async fn belonging_with(
    store: &dyn ImageStore,
    subject: &Digest,
    held_by_others: &(dyn Fn(&Digest) -> bool + Sync),
    media_type: Option<&str>,
) -> Result<Belonging> {
    if held_by_others(subject) {
        return Ok(Belonging {
            manifests: Vec::new(),
            shared: true,
        });
    }
    let mut subjects = vec![subject.clone()];
    let mut listed: Vec<Digest> = Vec::new();
    let read = match media_type {
        Some(t) if !crate::image::listed::is_index_type(t) => None,
        _ => Some(store.get_manifest(&subject.to_string()).await),
    };
    match read {
        None => {}
        Some(Ok(m)) => {
            let location = format!("{}@{subject}", store.location());
            if is_referrers_index(&m) {
                listed = index_entries(&m, &location)?
                    .into_iter()
                    .map(|d| d.digest)
                    .filter(|d| d != subject && !held_by_others(d))
                    .collect();
                subjects.extend(listed.iter().cloned());
            } else {
                subjects.extend(
                    crate::image::children(&m, &location)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| !held_by_others(c)),
                );
            }
        }
        Some(Err(e)) if e.is_not_found() => {}
        Some(Err(e)) => return Err(e),
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
        if !out.contains(d) && !held_by_others(d) {
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

/// An index and its children with their media types.
type IndexChildren = (Digest, Vec<(Digest, String)>);

/// What the images of a store hold: each root (a manifest that a tag other than a referrer
/// tag names) holds itself and the child manifests of an index, nested indexes included.
/// Read once for many deletions: [`Holdings::release`] forgets what a deleted image held.
#[derive(Debug, Default)]
pub struct Holdings {
    /// Manifest → how many roots hold it.
    holders: HashMap<Digest, u32>,
    /// Root → what it holds (itself first).
    held: HashMap<Digest, Vec<Digest>>,
}

impl Holdings {
    /// Reads the roots the tags of `store` name (a HEAD per tag that is not a referrer tag;
    /// a bookkeeping tag of a digest another tag names needs none) and the children of those
    /// that are indexes.
    pub async fn read(store: &dyn ImageStore) -> Result<Holdings> {
        let tags: Vec<String> = store
            .list_tags()
            .await?
            .into_iter()
            .filter(|t| parse_referrer_tag(t).is_none())
            .collect();
        let mut roots: Vec<(Digest, Option<String>)> = Vec::new();
        let mut seen = HashSet::new();
        for (_, head) in crate::image::listing::resolve_tags(store, tags).await? {
            if let Some(h) = head {
                if seen.insert(h.digest.clone()) {
                    roots.push((h.digest, Some(h.media_type)));
                }
            }
        }
        Holdings::of_roots(store, roots).await
    }

    /// The holdings of `roots` (each with its media type when known): the indexes among them
    /// (and those of unknown type) are read from `store`, nested indexes too.
    pub async fn of_roots(
        store: &dyn ImageStore,
        roots: Vec<(Digest, Option<String>)>,
    ) -> Result<Holdings> {
        // Index → its children (with their media types), read once each.
        let mut children: HashMap<Digest, Vec<Digest>> = HashMap::new();
        let mut pending: Vec<Digest> = roots
            .iter()
            .filter(|(_, t)| t.as_deref().is_none_or(crate::image::listed::is_index_type))
            .map(|(d, _)| d.clone())
            .collect();
        let mut reads = 0usize;
        while !pending.is_empty() {
            let level: Vec<Digest> = std::mem::take(&mut pending)
                .into_iter()
                .filter(|d| !children.contains_key(d))
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            reads += level.len();
            if reads > MAX_INDEX_READS {
                break;
            }
            let found: Vec<Result<IndexChildren>> =
                futures::stream::iter(level.into_iter().map(|index| async move {
                    let m = match store.get_manifest(&index.to_string()).await {
                        Ok(m) => m,
                        Err(e) if e.is_not_found() => return Ok((index, Vec::new())),
                        Err(e) => return Err(e),
                    };
                    let kids = match m.parse(&format!("{}@{index}", store.location())) {
                        Ok(ParsedManifest::Index { manifests }) => manifests
                            .into_iter()
                            .map(|c| (c.digest, c.media_type))
                            .collect(),
                        _ => Vec::new(),
                    };
                    Ok((index, kids))
                }))
                .buffer_unordered(8)
                .collect()
                .await;
            for f in found {
                let (index, kids) = f?;
                for (child, media_type) in &kids {
                    let nested = media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST;
                    if nested && !children.contains_key(child) {
                        pending.push(child.clone());
                    }
                }
                children.insert(index, kids.into_iter().map(|(c, _)| c).collect());
            }
        }
        let mut out = Holdings::default();
        for (root, _) in roots {
            if out.held.contains_key(&root) {
                continue;
            }
            let mut held = vec![root.clone()];
            let mut seen: HashSet<Digest> = HashSet::from([root.clone()]);
            let mut at = 0;
            while at < held.len() {
                if let Some(kids) = children.get(&held[at]) {
                    for k in kids {
                        if seen.insert(k.clone()) {
                            held.push(k.clone());
                        }
                    }
                }
                at += 1;
            }
            for m in &held {
                *out.holders.entry(m.clone()).or_default() += 1;
            }
            out.held.insert(root, held);
        }
        Ok(out)
    }

    /// Whether a root other than `image` holds `manifest`.
    pub fn held_by_others(&self, image: &Digest, manifest: &Digest) -> bool {
        let all = self.holders.get(manifest).copied().unwrap_or(0);
        let own = self.held.get(image).is_some_and(|h| h.contains(manifest)) as u32;
        all > own
    }

    /// Whether any root holds `manifest`.
    pub fn is_held(&self, manifest: &Digest) -> bool {
        self.holders.get(manifest).is_some_and(|n| *n > 0)
    }

    /// What `manifest` holds when it is a root (itself, its children), else nothing.
    pub fn held_by(&self, root: &Digest) -> &[Digest] {
        self.held.get(root).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The image `root` was deleted: what it held is no longer held by it.
    pub fn release(&mut self, root: &Digest) {
        for m in self.held.remove(root).unwrap_or_default() {
            if let Some(n) = self.holders.get_mut(&m) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.holders.remove(&m);
                }
            }
        }
    }
}
