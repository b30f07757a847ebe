//! What is in use, in the mirror registry's own digests: the in-use source's references
//! resolved against the registry (kept here, by the façade that asks, so that discovery
//! itself makes no registry call).

use std::collections::BTreeMap;

use crate::digest::Digest;
use crate::error::Result;
use crate::inuse::{pinned, ImageUse, InUse};
use crate::reference::Reference;
use crate::registry::{Registry, Repository};

/// The registry host (and path prefix) the pull references of `registry` start with.
fn mirror_prefix(registry: &dyn Registry) -> String {
    let probe = Digest::sha256_of(b"probe");
    let pull = registry.pull_reference(&Repository::listed("r"), &probe);
    pull.strip_suffix(&format!("/r@{probe}"))
        .unwrap_or(&pull)
        .to_string()
}

/// Turns `uses` into the digests of the mirror `registry` they name: a digest in the
/// reference is taken as it is; a tag of the mirror registry is looked up with a manifest
/// HEAD (a tag the mirror does not hold names nothing there); references to other
/// registries by tag name nothing in the mirror. A failed lookup is an error.
pub(super) async fn resolve(uses: &[ImageUse], registry: &dyn Registry) -> Result<InUse> {
    let (mut out, by_tag) = pinned(uses);
    let prefix = mirror_prefix(registry);
    // One HEAD per distinct tag reference, however many pods use it.
    let mut looked_up: BTreeMap<String, Option<Digest>> = BTreeMap::new();
    for u in by_tag {
        if let Some(found) = looked_up.get(&u.reference) {
            if let Some(d) = found {
                out.insert(d.clone(), u.workload.clone());
            }
            continue;
        }
        let found = lookup(u, &prefix, registry).await?;
        if let Some(d) = &found {
            out.insert(d.clone(), u.workload.clone());
        }
        looked_up.insert(u.reference.clone(), found);
    }
    Ok(out)
}

/// The digest a tag reference of the mirror registry names there (`None`: not the mirror's,
/// or a tag it does not hold).
async fn lookup(u: &ImageUse, prefix: &str, registry: &dyn Registry) -> Result<Option<Digest>> {
    let Some(rest) = u.reference.strip_prefix(&format!("{prefix}/")) else {
        return Ok(None);
    };
    let reference = match Reference::parse(&format!("{prefix}/{rest}")) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(reference = %u.reference, workload = %u.workload, error = %e, "an unreadable image reference; ignored");
            return Ok(None);
        }
    };
    let repository = Repository::listed(reference.repository());
    let store = registry.store(&repository).await?;
    match store.head_manifest(&reference.manifest_reference()).await {
        Ok(Some(h)) => Ok(Some(h.digest)),
        Ok(None) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}
