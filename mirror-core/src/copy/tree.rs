//! The tree below a root manifest: the child manifests the destination lacks, in the order
//! they can be stored, and the blobs they all name.
//!
//! The walk is breadth first: every child of one level is looked up at the destination and
//! read from the source at once (both requests together: a child the destination has is
//! read for nothing, which is cheaper than a round trip more for every child it lacks).

use super::*;

/// What a copy has to place below its root.
pub(super) struct Tree {
    /// Child manifests by the order they can be stored in: each level refers only to
    /// manifests of earlier levels (or to ones the destination has), so the manifests of one
    /// level can be stored together.
    pub(super) levels: Vec<Vec<RawManifest>>,
    /// Every blob of the root and of the children walked, by digest.
    pub(super) blobs: BTreeMap<Digest, Descriptor>,
}

/// Walks `root` (read from `src` at `src_loc`). Children the destination already holds are
/// left out with everything below them (a registry only accepts a manifest whose blobs and
/// children exist). Once `stop` is set no more children are looked up: the caller learned
/// that the destination holds the root and the tree will not be used.
pub(super) async fn walk(
    src: &dyn ImageStore,
    dst: &dyn ImageStore,
    root: &RawManifest,
    src_loc: &str,
    options: &CopyOptions,
    stop: &AtomicBool,
) -> Result<Tree> {
    let mut blobs: BTreeMap<Digest, Descriptor> = BTreeMap::new();
    // Every child fetched, with the digests of the children it names.
    let mut fetched: Vec<(RawManifest, Vec<Digest>)> = Vec::new();
    let mut position: HashMap<Digest, usize> = HashMap::new();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut level: Vec<(RawManifest, String)> = vec![(root.clone(), src_loc.to_string())];
    while !level.is_empty() {
        let mut wanted: Vec<Descriptor> = Vec::new();
        for (manifest, loc) in &level {
            match manifest.parse(loc)? {
                ParsedManifest::Image { config, layers } => {
                    for d in std::iter::once(config).chain(layers) {
                        blobs.entry(d.digest.clone()).or_insert(d);
                    }
                }
                ParsedManifest::Index { manifests } => {
                    let names: Vec<Digest> = manifests.iter().map(|d| d.digest.clone()).collect();
                    wanted.extend(
                        manifests
                            .into_iter()
                            .filter(|d| seen.insert(d.digest.clone())),
                    );
                    if let Some(&i) = position.get(&manifest.digest) {
                        fetched[i].1 = names;
                    }
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let next: Vec<Option<(RawManifest, String)>> =
            futures::stream::iter(wanted.into_iter().map(|d| async move {
                let digest = d.digest.to_string();
                let (held, child) = futures::join!(
                    dst.head_manifest(&digest),
                    get_verified_manifest(src, &digest)
                );
                // A child already at the destination has all its blobs there too.
                if held?.is_some() {
                    return Ok::<_, Error>(None);
                }
                Ok(Some((child?, format!("{}@{digest}", src.location()))))
            }))
            .buffered(options.checks_at_once())
            .try_collect()
            .await?;
        level = next.into_iter().flatten().collect();
        for (m, _) in &level {
            position.insert(m.digest.clone(), fetched.len());
            fetched.push((m.clone(), Vec::new()));
        }
    }
    Ok(Tree {
        levels: storage_order(fetched, &position),
        blobs,
    })
}

/// Orders manifests so that each comes after every manifest of the set it names (Kahn's
/// algorithm, level by level; digests name content, so the graph has no cycle). `index` gives
/// each manifest's position in `manifests` by digest.
fn storage_order(
    manifests: Vec<(RawManifest, Vec<Digest>)>,
    index: &HashMap<Digest, usize>,
) -> Vec<Vec<RawManifest>> {
    // How many manifests of the set each one still waits for, and who waits for each.
    let mut waiting: Vec<usize> = vec![0; manifests.len()];
    let mut waiters: Vec<Vec<usize>> = vec![Vec::new(); manifests.len()];
    for (i, (_, names)) in manifests.iter().enumerate() {
        let inside: HashSet<usize> = names.iter().filter_map(|d| index.get(d).copied()).collect();
        waiting[i] = inside.len();
        for j in inside {
            waiters[j].push(i);
        }
    }
    let mut slots: Vec<Option<RawManifest>> = manifests.into_iter().map(|(m, _)| Some(m)).collect();
    let mut ready: Vec<usize> = (0..slots.len()).filter(|&i| waiting[i] == 0).collect();
    let mut levels = Vec::new();
    while !ready.is_empty() {
        let mut next = Vec::new();
        for &i in &ready {
            for &w in &waiters[i] {
                waiting[w] -= 1;
                if waiting[w] == 0 {
                    next.push(w);
                }
            }
        }
        levels.push(ready.iter().filter_map(|&i| slots[i].take()).collect());
        ready = next;
    }
    levels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(children: &[&RawManifest]) -> RawManifest {
        let manifests: Vec<serde_json::Value> = children
            .iter()
            .map(|c| {
                serde_json::json!({
                    "mediaType": c.media_type,
                    "digest": c.digest.to_string(),
                    "size": c.bytes.len(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::media::OCI_INDEX,
            "manifests": manifests,
        });
        RawManifest::new(
            serde_json::to_vec(&doc).unwrap(),
            crate::media::OCI_INDEX.to_string(),
        )
    }

    fn image(n: u8) -> RawManifest {
        RawManifest::new(
            format!("{{\"schemaVersion\":2,\"n\":{n}}}").into_bytes(),
            crate::media::OCI_MANIFEST.to_string(),
        )
    }

    fn storage_order_of(set: Vec<(RawManifest, Vec<Digest>)>) -> Vec<Vec<RawManifest>> {
        let index = set
            .iter()
            .enumerate()
            .map(|(i, (m, _))| (m.digest.clone(), i))
            .collect();
        storage_order(set, &index)
    }

    fn names(m: &RawManifest) -> Vec<Digest> {
        if m.media_type != crate::media::OCI_INDEX {
            return Vec::new();
        }
        match m.parse("test").unwrap() {
            ParsedManifest::Index { manifests } => {
                manifests.into_iter().map(|d| d.digest).collect()
            }
            ParsedManifest::Image { .. } => Vec::new(),
        }
    }

    #[test]
    fn a_manifest_named_at_two_depths_is_stored_before_both_parents() {
        // root → {a, inner}, inner → {a, b}: breadth first meets `a` at depth 1, but `inner`
        // (also depth 1) names it, so `a` must be stored first.
        let (a, b) = (image(1), image(2));
        let inner = index(&[&a, &b]);
        let set = vec![
            (a.clone(), names(&a)),
            (inner.clone(), names(&inner)),
            (b.clone(), names(&b)),
        ];
        let levels = storage_order_of(set);
        let digests: Vec<Vec<Digest>> = levels
            .iter()
            .map(|l| l.iter().map(|m| m.digest.clone()).collect())
            .collect();
        assert_eq!(digests, vec![vec![a.digest, b.digest], vec![inner.digest]]);
    }

    #[test]
    fn manifests_of_one_level_name_none_of_each_other() {
        let imgs: Vec<RawManifest> = (0..5).map(image).collect();
        let refs: Vec<&RawManifest> = imgs.iter().collect();
        let mid = index(&refs[..3]);
        let set: Vec<(RawManifest, Vec<Digest>)> = imgs
            .iter()
            .chain(std::iter::once(&mid))
            .map(|m| (m.clone(), names(m)))
            .collect();
        let levels = storage_order_of(set);
        assert_eq!(levels.len(), 2);
        assert_eq!(levels[0].len(), 5);
        assert_eq!(levels[1][0].digest, mid.digest);
    }
}
