//! Build caches with a bound.
//!
//! Each build of a service and Dockerfile reads and writes its own remote cache repository
//! ([`BuildCapability::cache_repository`](crate::registry::BuildCapability)). Buildah's
//! `--cache-to` pushes one image per build step, tagged by the step's cache key; each new
//! commit adds entries for the steps it changed, and nothing ever removes them. BuildKit's
//! registry cache replaces one manifest per build and leaves the old one untagged. Without a
//! bound the repository grows with every build.
//!
//! The bound: after a build, the entries **none of the last N builds used** are deleted
//! (N = [`BuildSpec::with_cache_builds`](crate::BuildSpec::with_cache_builds), default
//! [`DEFAULT_CACHE_BUILDS`]). A step's cache entry holds the image as it was after that step,
//! so a build used an entry exactly when the entry's layers are the first layers of the built
//! image (same digests, same order). The last N builds are recorded in the repository itself,
//! in a small OCI artifact tagged [`HISTORY_TAG`] that lists, per build, the layer digests of
//! each platform; this works on every registry and across deployer processes.
//!
//! What is never deleted:
//!
//! - anything while **another build of the same cache is in progress**: a build holds a lease,
//!   an artifact tagged `mirror.lease.<unix-ms>.<nonce>`, from before the builder starts until
//!   after its own bound; a bound that sees another live lease (younger than that build's
//!   timeout) deletes nothing and leaves the work to the next build. A stale lease (a killed
//!   deployer) is removed once older than the build timeout.
//! - the staged images of the recorded builds (clone reuse and rollbacks find them there), the
//!   history and the leases;
//! - a tagged BuildKit cache manifest (config `application/vnd.buildkit.cacheconfig.v0`): it is
//!   the current one. Untagged ones, which registries that list untagged manifests (ECR,
//!   Artifact Registry) show, are replaced ones and go.
//!
//! Two builds of one cache finishing at the same moment may record one of them only (the
//! history is read, extended and written back); the entries of the lost one may then go
//! early, and the next build rebuilds those steps. Nothing that is in use is at stake: cache
//! repositories hold no image a workload runs.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{ParsedManifest, RawManifest, OCI_EMPTY, OCI_MANIFEST};
use crate::registry::{Registry, Repository};
use crate::store::ImageStore;

/// Builds whose cache entries are kept by default.
pub const DEFAULT_CACHE_BUILDS: usize = 3;

/// The tag of the history of the last builds in a cache repository.
pub const HISTORY_TAG: &str = "mirror.builds";

/// The prefix of lease tags of builds in progress.
pub const LEASE_TAG_PREFIX: &str = "mirror.lease.";

/// The artifact type of the history and lease artifacts.
pub const ARTIFACT_TYPE: &str = "application/vnd.mirror-core.build-cache.v1+json";

const HISTORY_ANNOTATION: &str = "dev.mirror-core.builds";
const BUILDKIT_CACHE_CONFIG: &str = "application/vnd.buildkit.cacheconfig.v0";

/// Whether `tag` is one of the cache's own bookkeeping tags (history, leases).
pub fn is_cache_bookkeeping(tag: &str) -> bool {
    tag == HISTORY_TAG || tag.starts_with(LEASE_TAG_PREFIX)
}

/// One recorded build: its image and, per platform, its layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BuildRecord {
    digest: Digest,
    at_ms: u64,
    layers: Vec<Vec<Digest>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// A small OCI artifact: empty config, one empty layer, the annotations.
fn note(annotations: BTreeMap<String, String>) -> RawManifest {
    let empty = Digest::sha256_of(b"{}");
    let descriptor = json!({"mediaType": OCI_EMPTY, "digest": empty.to_string(), "size": 2});
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": descriptor,
        "layers": [descriptor],
        "annotations": annotations,
    });
    RawManifest::new(doc.to_string().into_bytes(), OCI_MANIFEST)
}

async fn put_note(store: &dyn ImageStore, tag: &str, m: &RawManifest) -> Result<()> {
    let empty = Digest::sha256_of(b"{}");
    if !store.has_blob(&empty, None).await? {
        let data = futures::stream::iter(vec![Ok(bytes::Bytes::from_static(b"{}"))]);
        store.put_blob(&empty, 2, Box::pin(data)).await?;
    }
    store.put_manifest(tag, m).await.map(|_| ())
}

/// A build's lease on its cache repository; [`Lease::release`] removes it.
#[derive(Debug)]
pub(super) struct Lease {
    repository: Repository,
    digest: Digest,
}

impl Lease {
    /// Takes a lease on `repository` for a build that may run `life` long.
    pub(super) async fn take(
        registry: &dyn Registry,
        repository: &Repository,
        life: Duration,
    ) -> Result<Lease> {
        let store = registry.store(repository).await?;
        let at = now_ms();
        let nonce = Digest::sha256_of(
            format!(
                "{at}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            )
            .as_bytes(),
        );
        let tag = format!("{LEASE_TAG_PREFIX}{at}.{}", &nonce.hex()[..12]);
        let m = note(BTreeMap::from([(
            "dev.mirror-core.lease.until-ms".to_string(),
            (at + life.as_millis() as u64).to_string(),
        )]));
        put_note(store.as_ref(), &tag, &m).await?;
        Ok(Lease {
            repository: repository.clone(),
            digest: m.digest,
        })
    }

    /// Removes the lease (a lease already gone is fine).
    pub(super) async fn release(self, registry: &dyn Registry) {
        match registry.delete_image(&self.repository, &self.digest).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(repository = %self.repository, error = %e, "cannot remove a build's cache lease; it expires with the build timeout")
            }
        }
    }
}

/// The lease tag's time, if `tag` is a lease tag.
fn lease_time(tag: &str) -> Option<u64> {
    tag.strip_prefix(LEASE_TAG_PREFIX)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The layers of each platform of the image `digest` in `store`.
async fn layers_of(
    store: &dyn ImageStore,
    digest: &Digest,
) -> Result<(Vec<Vec<Digest>>, Option<String>)> {
    let m = store.get_manifest(&digest.to_string()).await?;
    let location = format!("{digest}");
    match m.parse(&location)? {
        ParsedManifest::Image { config, layers } => Ok((
            vec![layers.into_iter().map(|l| l.digest).collect()],
            Some(config.media_type),
        )),
        ParsedManifest::Index { manifests } => {
            let mut out = Vec::new();
            for child in manifests {
                let c = store.get_manifest(&child.digest.to_string()).await?;
                if let ParsedManifest::Image { layers, .. } = c.parse(&location)? {
                    out.push(layers.into_iter().map(|l| l.digest).collect());
                }
            }
            Ok((out, None))
        }
    }
}

async fn read_history(store: &dyn ImageStore) -> Result<Vec<BuildRecord>> {
    let m = match store.get_manifest(HISTORY_TAG).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&m.bytes).map_err(|e| Error::InvalidManifest {
            location: HISTORY_TAG.to_string(),
            reason: e.to_string(),
        })?;
    let text = doc["annotations"][HISTORY_ANNOTATION]
        .as_str()
        .unwrap_or("[]");
    // An unreadable history is an empty one: the bound then keeps this build's entries only
    // after this build records itself; nothing else depends on it.
    Ok(serde_json::from_str(text).unwrap_or_default())
}

/// What a bound did.
#[derive(Debug, Default)]
pub(super) struct Bounded {
    pub(super) deleted: Vec<Digest>,
    pub(super) warnings: Vec<crate::mirror::Warning>,
}

/// Records the build `built` (staged in `stage`) in the history of `repository`, keeping the
/// last `keep`, then deletes the entries none of them used (see the module docs). `own` is
/// this build's lease; `life` how long another build's lease stays valid.
pub(super) async fn record_and_bound(
    registry: &dyn Registry,
    repository: &Repository,
    stage: &dyn ImageStore,
    built: &Digest,
    keep: usize,
    own: &Lease,
    life: Duration,
) -> Result<Bounded> {
    let store = registry.store(repository).await?;
    let (layers, _) = layers_of(stage, built).await?;
    let mut history = read_history(store.as_ref()).await?;
    history.retain(|b| &b.digest != built);
    history.insert(
        0,
        BuildRecord {
            digest: built.clone(),
            at_ms: now_ms(),
            layers,
        },
    );
    history.truncate(keep.max(1));
    let text = serde_json::to_string(&history)
        .map_err(|e| Error::internal("writing the build history", e))?;
    let m = note(BTreeMap::from([(HISTORY_ANNOTATION.to_string(), text)]));
    put_note(store.as_ref(), HISTORY_TAG, &m).await?;
    bound(
        registry,
        repository,
        store.as_ref(),
        &history,
        &m.digest,
        own,
        life,
    )
    .await
}

async fn bound(
    registry: &dyn Registry,
    repository: &Repository,
    store: &dyn ImageStore,
    history: &[BuildRecord],
    history_digest: &Digest,
    own: &Lease,
    life: Duration,
) -> Result<Bounded> {
    let mut out = Bounded::default();
    let images = registry.list_images(repository).await?;
    let now = now_ms();
    let life_ms = life.as_millis() as u64;
    let mut stale_leases = Vec::new();
    for image in &images {
        for tag in &image.tags {
            if let Some(at) = lease_time(tag) {
                if image.digest == own.digest {
                    continue;
                }
                if now.saturating_sub(at) < life_ms {
                    tracing::info!(%repository, "another build of this cache is in progress: its entries stay until a later build");
                    return Ok(out);
                }
                stale_leases.push(image.digest.clone());
            }
        }
    }
    let built: HashSet<&Digest> = history.iter().map(|b| &b.digest).collect();
    let used: Vec<&Vec<Digest>> = history.iter().flat_map(|b| b.layers.iter()).collect();
    let mut delete: Vec<Digest> = stale_leases;
    for image in &images {
        let d = &image.digest;
        if d == history_digest || d == &own.digest || built.contains(d) || delete.contains(d) {
            continue;
        }
        if image.tags.iter().any(|t| is_cache_bookkeeping(t)) {
            continue;
        }
        let (layers, config) = match layers_of(store, d).await {
            Ok(x) => x,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                out.warnings.push(crate::mirror::Warning::CacheNotBounded {
                    repository: repository.name().to_string(),
                    digest: Some(d.clone()),
                    error: crate::mirror::warning::Cause::context("cannot read it", e),
                });
                continue;
            }
        };
        if config.as_deref() == Some(BUILDKIT_CACHE_CONFIG) {
            if !image.tags.is_empty() {
                continue;
            }
        } else if layers
            .iter()
            .any(|entry| used.iter().any(|b| b.starts_with(entry)))
        {
            continue;
        }
        delete.push(d.clone());
    }
    for d in delete {
        match registry.delete_image(repository, &d).await {
            Ok(()) => out.deleted.push(d),
            Err(e) if e.is_not_found() => {}
            Err(e) => out.warnings.push(crate::mirror::Warning::CacheNotBounded {
                repository: repository.name().to_string(),
                digest: Some(d.clone()),
                error: crate::mirror::warning::Cause::context("could not delete it", e),
            }),
        }
    }
    if !out.deleted.is_empty() {
        tracing::info!(%repository, deleted = out.deleted.len(), "deleted cache entries no recent build used");
    }
    Ok(out)
}
