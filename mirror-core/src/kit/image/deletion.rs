//! Deleting many images of one repository at once (a sweep, an eviction): what the other
//! images hold is read once for the batch, not once per image, and the deletions go a
//! bounded number at a time, or in the registry's own batches ([`ManifestDeleter`]).
//!
//! The order is the one [`delete_with_referrers`](super::delete_with_referrers) keeps for
//! one image, for the whole batch: first the images, then the platform manifests of deleted
//! indexes that no remaining image holds (where the registry deletes them), then the
//! referrers and tag-schema indexes of the deleted images. A failure on the way leaves
//! referrers whose subject is gone (orphans the next eviction or sweep removes), never an
//! image without its signature. An image that another image of the repository holds (a
//! platform manifest of a kept index) is left as it is, as one deletion would leave it;
//! the referrers of a platform manifest two images of the batch share stay until the next
//! sweep finds them orphaned.

use async_trait::async_trait;
use futures::StreamExt;

use super::listed::ListedStore;
use super::referrers::{belonging_with, parse_referrer_tag, Holdings};
use crate::digest::Digest;
use crate::error::Result;
use crate::media::ParsedManifest;
use crate::store::ImageStore;

/// Deletions (and the reads that plan them) sent at once by [`delete_images`] and by the
/// data-plane [`StoreDeleter`].
pub const DELETE_CONCURRENCY: usize = 8;

/// How a registry deletes manifests, for [`delete_images`].
#[async_trait]
pub trait ManifestDeleter: Send + Sync {
    /// Deletes the images `digests` with their tags: one result per digest, in order
    /// ([`Error::NotFound`](crate::Error::NotFound) for one that is not there).
    async fn delete_images(&self, digests: &[Digest]) -> Vec<Result<()>>;

    /// Deletes platform manifests of deleted indexes that no remaining image holds. The
    /// default deletes nothing: a distribution registry's garbage collection removes
    /// untagged manifests.
    async fn delete_children(&self, digests: &[Digest]) -> Result<()> {
        let _ = digests;
        Ok(())
    }

    /// Deletes referrers and tag-schema indexes of deleted images; one already gone is fine.
    async fn delete_referrers(&self, digests: &[Digest]) -> Result<()>;
}

/// The data plane as a [`ManifestDeleter`]: one manifest `DELETE` per digest,
/// [`DELETE_CONCURRENCY`] at once.
#[derive(Debug, Clone, Copy)]
pub struct StoreDeleter<'a>(pub &'a dyn ImageStore);

#[async_trait]
impl ManifestDeleter for StoreDeleter<'_> {
    async fn delete_images(&self, digests: &[Digest]) -> Vec<Result<()>> {
        self.delete_each(digests).await
    }

    async fn delete_referrers(&self, digests: &[Digest]) -> Result<()> {
        for r in self.delete_each(digests).await {
            match r {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl StoreDeleter<'_> {
    async fn delete_each(&self, digests: &[Digest]) -> Vec<Result<()>> {
        let store = self.0;
        futures::stream::iter(
            digests
                .iter()
                .cloned()
                .map(move |d| async move { store.delete_manifest(&d).await }),
        )
        .buffered(DELETE_CONCURRENCY)
        .collect()
        .await
    }
}

/// What deleting one image of the batch takes.
#[derive(Default)]
struct Plan {
    /// Another image holds it: it stays.
    shared: bool,
    children: Vec<Digest>,
    referrers: Vec<Digest>,
}

/// Deletes the images `digests` of `store`'s repository and what belongs to them (see the
/// module docs) through `deleter`: one result per digest, in order (`Ok` too for an image
/// left because another image holds it). An error for the whole batch when what the
/// repository's images hold cannot be read: nothing is deleted then.
///
/// The store should know the repository's tags when the registry's own listing tells them
/// ([`ListedStore::learn_listing`]); else they are listed and resolved once, here.
pub async fn delete_images(
    store: &ListedStore,
    digests: &[Digest],
    deleter: &dyn ManifestDeleter,
) -> Result<Vec<Result<()>>> {
    let mut holdings = match store.listed_tags() {
        Some(tags) => {
            let mut roots = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (tag, digest) in tags {
                if parse_referrer_tag(&tag).is_none() && seen.insert(digest.clone()) {
                    let media_type = store.media_type(&digest);
                    roots.push((digest, media_type));
                }
            }
            Holdings::of_roots(store, roots).await?
        }
        None => Holdings::read(store).await?,
    };
    let plans: Vec<Result<Plan>> = {
        let holdings = &holdings;
        futures::stream::iter(
            digests
                .iter()
                .cloned()
                .map(|d| async move { plan(store, holdings, &d).await }),
        )
        .buffered(DELETE_CONCURRENCY)
        .collect()
        .await
    };
    let mut results: Vec<Option<Result<()>>> = Vec::with_capacity(digests.len());
    let mut targets: Vec<usize> = Vec::new();
    for (i, p) in plans.iter().enumerate() {
        match p {
            Ok(p) if p.shared => {
                tracing::warn!(
                    store = %store.location(),
                    digest = %digests[i],
                    "not deleted: another image of the repository holds this manifest"
                );
                results.push(Some(Ok(())));
            }
            Ok(_) => {
                results.push(None);
                targets.push(i);
            }
            Err(_) => results.push(None),
        }
    }
    let mut plans: Vec<Option<Plan>> = plans
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p {
            Ok(p) => Some(p),
            Err(e) => {
                results[i] = Some(Err(e));
                None
            }
        })
        .collect();
    let chosen: Vec<Digest> = targets.iter().map(|i| digests[*i].clone()).collect();
    let mut outcomes = deleter.delete_images(&chosen).await.into_iter();
    let mut deleted: Vec<usize> = Vec::new();
    for &i in &targets {
        match outcomes.next() {
            Some(Ok(())) => {
                holdings.release(&digests[i]);
                deleted.push(i);
            }
            Some(Err(e)) => results[i] = Some(Err(e)),
            None => {
                let reason = format!(
                    "no outcome for {}: whether it was deleted is unknown",
                    digests[i]
                );
                results[i] = Some(Err(crate::Error::internal("deleting images", reason)))
            }
        }
    }
    // What belonged to the deleted images, unless a remaining image holds it.
    for phase in [Phase::Children, Phase::Referrers] {
        let per_image: Vec<(usize, Vec<Digest>)> = deleted
            .iter()
            .filter(|i| results[**i].is_none())
            .filter_map(|&i| {
                let p = plans[i].as_mut()?;
                let list = match phase {
                    Phase::Children => std::mem::take(&mut p.children),
                    Phase::Referrers => std::mem::take(&mut p.referrers),
                };
                let list: Vec<Digest> = list.into_iter().filter(|d| !holdings.is_held(d)).collect();
                (!list.is_empty()).then_some((i, list))
            })
            .collect();
        if per_image.is_empty() {
            continue;
        }
        let mut all: Vec<Digest> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for d in per_image.iter().flat_map(|(_, l)| l) {
            if seen.insert(d.clone()) {
                all.push(d.clone());
            }
        }
        if phase.run(deleter, &all).await.is_ok() {
            continue;
        }
        // Which image's failed: each on its own.
        for (i, list) in per_image {
            if let Err(e) = phase.run(deleter, &list).await {
                results[i] = Some(Err(e));
            }
        }
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(()))).collect())
}

#[derive(Clone, Copy)]
enum Phase {
    Children,
    Referrers,
}

impl Phase {
    async fn run(self, deleter: &dyn ManifestDeleter, digests: &[Digest]) -> Result<()> {
        let done = match self {
            Phase::Children => deleter.delete_children(digests).await,
            Phase::Referrers => deleter.delete_referrers(digests).await,
        };
        match done {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

/// What deleting `digest` takes: whether another image holds it, its platform manifests, its
/// referrers and tag-schema indexes.
async fn plan(store: &ListedStore, holdings: &Holdings, digest: &Digest) -> Result<Plan> {
    let media_type = store.media_type(digest);
    let others = |m: &Digest| holdings.held_by_others(digest, m);
    let belonging = belonging_with(store, digest, &others, media_type.as_deref()).await?;
    if belonging.shared {
        return Ok(Plan {
            shared: true,
            ..Plan::default()
        });
    }
    let index = media_type
        .as_deref()
        .is_none_or(super::listed::is_index_type);
    let mut children = Vec::new();
    if index {
        match store.get_manifest(&digest.to_string()).await {
            Ok(m) => {
                if let Ok(ParsedManifest::Index { manifests }) =
                    m.parse(&format!("{}@{digest}", store.location()))
                {
                    for c in manifests {
                        if !children.contains(&c.digest) {
                            children.push(c.digest);
                        }
                    }
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Plan {
        shared: false,
        children,
        referrers: belonging.manifests,
    })
}
