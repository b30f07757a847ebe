//! Referrers: the signatures, SBOMs and attestations that belong to an image, found, copied
//! and deleted with it.
//!
//! # Where referrers are found
//!
//! For every manifest of an image (the root and each child of an index), and recursively for
//! every referrer found (a signature of an SBOM, an attestation of a platform manifest):
//!
//! 1. the OCI 1.1 referrers API, `GET /v2/<name>/referrers/<digest>` ([`ImageStore::referrers`];
//!    a layout answers from the `subject` fields of the manifests it holds);
//! 2. when the store does not serve the API (a 404), the **referrers tag schema** of OCI 1.1:
//!    the tag `sha256-<hex>` naming an index whose entries are the referrers;
//! 3. cosign's **tag convention**, `sha256-<hex>.sig`, `.att`, `.sbom` in the same repository
//!    (classic cosign writes no `subject`).
//!
//! The walk is breadth-first, bounded in depth ([`ReferrerOptions::max_depth`]) and count
//! ([`ReferrerOptions::max_count`]), and visits each digest once, so a cyclic graph (a referrer
//! that is also a child of its subject, or refers to itself) terminates. Reaching a bound is
//! reported ([`ReferrerReport::truncated`]), not an error.
//!
//! # How they are copied
//!
//! Each referrer is copied by digest with its blobs, byte for byte. A destination serving the
//! referrers API indexes them itself (it sees their `subject`); for one that does not, the
//! library maintains the tag-schema index: it reads the index, merges the new descriptors and
//! writes it, then reads it again and repeats until the written index holds what was added,
//! and checks once more a moment later. Cosign's tags are copied as tags. All of this happens
//! before the image's deploy tag is written (see [`crate::image::place`]), so an admission
//! controller that verifies at pod creation finds the signature as soon as the pinned
//! reference is handed out.
//!
//! **What remains racy**: distribution registries offer no compare-and-swap on a tag. Two
//! writers merging into one tag-schema index converge unless one reads the index before the
//! other writes it and writes after the other's second check; then one writer's entries are
//! missing until that image is mirrored again (every mirror of an image merges its referrers
//! again). Registries serving the referrers API have no such race.
//!
//! # What belongs to an image
//!
//! Listings fold referrers into their subject ([`crate::image::fold_referrers`]), eviction and
//! sweep delete them with it ([`belonging`] lists them deepest first, tag-schema indexes
//! included), and inventories count them in the image's size.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;

use crate::copy::{copy_image, copy_referrer, CopyOptions};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{Descriptor, RawManifest, OCI_INDEX};
use crate::store::ImageStore;

/// The artifact type cosign gives signatures (`sha256-<hex>.sig`).
pub const COSIGN_SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The artifact type cosign gives attestations (`sha256-<hex>.att`).
pub const COSIGN_ATTESTATION: &str = "application/vnd.dev.cosign.artifact.att.v1+json";
/// The artifact type cosign gives attached SBOMs (`sha256-<hex>.sbom`).
pub const COSIGN_SBOM: &str = "application/vnd.dev.cosign.artifact.sbom.v1+json";

/// Cosign's tag suffixes and the artifact types they stand for.
pub const COSIGN_SUFFIXES: [(&str, &str); 3] = [
    ("sig", COSIGN_SIGNATURE),
    ("att", COSIGN_ATTESTATION),
    ("sbom", COSIGN_SBOM),
];

/// Default depth bound: a signature of an attestation of a platform manifest of an index is
/// depth 3.
pub const DEFAULT_MAX_DEPTH: usize = 4;
/// Default count bound.
pub const DEFAULT_MAX_COUNT: usize = 512;
/// Rounds of read-merge-write of a tag-schema index before giving up.
const MERGE_ROUNDS: usize = 10;

/// Whether and which referrers travel with an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferrerOptions {
    /// Copy referrers at all. Off by default for a bare copy; `Mirror` turns it on.
    pub enabled: bool,
    /// Only referrers of these artifact types (and the referrers of those); empty: all.
    pub artifact_types: Vec<String>,
    /// Also look for cosign's `sha256-<hex>.sig/.att/.sbom` tags (default true).
    pub cosign_tags: bool,
    /// How deep referrers of referrers are followed (default [`DEFAULT_MAX_DEPTH`]).
    pub max_depth: usize,
    /// How many referrers one image may bring (default [`DEFAULT_MAX_COUNT`]).
    pub max_count: usize,
}

impl Default for ReferrerOptions {
    fn default() -> Self {
        ReferrerOptions {
            enabled: false,
            artifact_types: Vec::new(),
            cosign_tags: true,
            max_depth: DEFAULT_MAX_DEPTH,
            max_count: DEFAULT_MAX_COUNT,
        }
    }
}

impl ReferrerOptions {
    /// Every referrer travels.
    pub fn all() -> Self {
        ReferrerOptions {
            enabled: true,
            ..ReferrerOptions::default()
        }
    }

    /// No referrer travels.
    pub fn none() -> Self {
        ReferrerOptions::default()
    }

    /// Only referrers of these artifact types.
    pub fn with_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.artifact_types = types.into_iter().map(Into::into).collect();
        self
    }

    fn wants(&self, artifact_type: Option<&str>) -> bool {
        self.artifact_types.is_empty()
            || artifact_type.is_some_and(|t| self.artifact_types.iter().any(|w| w == t))
    }
}

/// How a referrer was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "tag")]
#[non_exhaustive]
pub enum FoundBy {
    /// The referrers API (or a layout's subject index).
    Api,
    /// The referrers tag schema (`sha256-<hex>` index).
    TagSchema,
    /// Cosign's tag convention; the tag.
    CosignTag(String),
}

/// One referrer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Referrer {
    /// The manifest it refers to.
    pub subject: Digest,
    /// Its descriptor (media type, digest, size, artifact type, annotations).
    pub descriptor: Descriptor,
    /// How it was found.
    pub found_by: FoundBy,
    /// 1 for a referrer of the image's own manifests, 2 for a referrer of a referrer…
    pub depth: usize,
}

impl Referrer {
    /// Its artifact type, `unknown` when it has none.
    pub fn artifact_type(&self) -> &str {
        self.descriptor
            .artifact_type
            .as_deref()
            .unwrap_or("unknown")
    }
}

/// What kind of thing a referrer is, for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReferrerKind {
    /// A signature (cosign, Notation, a sigstore bundle).
    Signature,
    /// A software bill of materials (SPDX, CycloneDX).
    Sbom,
    /// An attestation (in-toto, DSSE, SLSA provenance).
    Attestation,
    /// Anything else.
    Other,
}

/// Reads an artifact type as a [`ReferrerKind`].
pub fn kind_of(artifact_type: Option<&str>) -> ReferrerKind {
    let t = artifact_type.unwrap_or("").to_ascii_lowercase();
    if t == COSIGN_SIGNATURE
        || t.contains("notary.signature")
        || t.contains("sigstore.bundle")
        || t.contains("simplesigning")
    {
        ReferrerKind::Signature
    } else if t == COSIGN_SBOM
        || t.contains("spdx")
        || t.contains("cyclonedx")
        || t.contains("sbom")
    {
        ReferrerKind::Sbom
    } else if t == COSIGN_ATTESTATION
        || t.contains("in-toto")
        || t.contains("dsse")
        || t.contains("provenance")
        || t.contains("attestation")
    {
        ReferrerKind::Attestation
    } else {
        ReferrerKind::Other
    }
}

/// What was found and copied, by artifact type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReferrerReport {
    /// Referrers found at the source, by artifact type (`unknown` for none).
    pub found: BTreeMap<String, usize>,
    /// Referrers copied (including those the destination already held), by artifact type.
    pub copied: BTreeMap<String, usize>,
    /// A depth or count bound was reached: some referrers were not looked at.
    pub truncated: bool,
    /// Referrers the source lists but does not hold (a stale tag-schema index after a
    /// deletion there): not copied, not listed at the destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<Digest>,
}

impl ReferrerReport {
    /// Referrers copied, in all.
    pub fn copied_total(&self) -> usize {
        self.copied.values().sum()
    }
}

/// The tag-schema tag of `subject`: `<algorithm>-<hex>`.
pub fn schema_tag(subject: &Digest) -> String {
    format!("{}-{}", subject.algorithm().as_str(), subject.hex())
}

/// Cosign's tag for `subject` with `suffix` (`sig`, `att`, `sbom`).
pub fn cosign_tag(subject: &Digest, suffix: &str) -> String {
    format!("{}.{suffix}", schema_tag(subject))
}

/// What a referrer tag says: the subject digest (`sha256:<hex>`) and, for cosign's tags, the
/// suffix. `None` for any other tag.
pub fn parse_referrer_tag(tag: &str) -> Option<(Digest, Option<&str>)> {
    let (base, suffix) = match tag.split_once('.') {
        Some((b, s)) if COSIGN_SUFFIXES.iter().any(|(x, _)| *x == s) => (b, Some(s)),
        Some(_) => return None,
        None => (tag, None),
    };
    let (alg, hex) = base.split_once('-')?;
    let digest = Digest::parse(&format!("{alg}:{hex}")).ok()?;
    Some((digest, suffix))
}

/// The referrers of `subject` that the store lists: through the API, else the tag schema.
async fn listed(
    store: &dyn ImageStore,
    subject: &Digest,
    filter: Option<&str>,
) -> Result<(Vec<Descriptor>, FoundBy)> {
    if let Some(list) = store.referrers(subject, filter).await? {
        return Ok((list, FoundBy::Api));
    }
    Ok((
        schema_index(store, subject).await?.unwrap_or_default(),
        FoundBy::TagSchema,
    ))
}

/// The entries of the tag-schema index of `subject`, `None` when there is none.
async fn schema_index(store: &dyn ImageStore, subject: &Digest) -> Result<Option<Vec<Descriptor>>> {
    let tag = schema_tag(subject);
    let manifest = match store.get_manifest(&tag).await {
        Ok(m) => m,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    index_entries(&manifest, &format!("{}:{tag}", store.location())).map(Some)
}

fn index_entries(manifest: &RawManifest, location: &str) -> Result<Vec<Descriptor>> {
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
) -> Result<Lookup> {
    let (listed, by) = listed(store, &subject, filter).await?;
    let mut all: Vec<(Descriptor, FoundBy)> = listed.into_iter().map(|d| (d, by.clone())).collect();
    if cosign {
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
/// true when a bound was reached.
pub async fn discover(
    store: &dyn ImageStore,
    subjects: &[Digest],
    options: &ReferrerOptions,
) -> Result<(Vec<Referrer>, bool)> {
    let mut seen: HashSet<Digest> = subjects.iter().cloned().collect();
    let mut level: Vec<Digest> = subjects.to_vec();
    let mut out: Vec<Referrer> = Vec::new();
    let mut truncated = false;
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
        // One level at a time, its subjects looked up concurrently.
        // The type filter chooses among the image's own referrers; what refers to a chosen
        // one (the signature of an SBOM) comes with it.
        let filter = if depth == 1 { filter } else { None };
        let lookups: Vec<_> = level
            .iter()
            .map(|subject| lookup(store, subject.clone(), filter, options.cosign_tags))
            .collect();
        let found: Vec<Result<Lookup>> = futures::stream::iter(lookups).buffered(8).collect().await;
        let mut next = Vec::new();
        for item in found {
            let (subject, all) = item?;
            for (descriptor, found_by) in all {
                if depth == 1 && !options.wants(descriptor.artifact_type.as_deref()) {
                    continue;
                }
                if !seen.insert(descriptor.digest.clone()) {
                    continue;
                }
                if out.len() >= options.max_count {
                    truncated = true;
                    continue;
                }
                next.push(descriptor.digest.clone());
                out.push(Referrer {
                    subject: subject.clone(),
                    descriptor,
                    found_by,
                    depth,
                });
            }
        }
        level = next;
    }
    Ok((out, truncated))
}

/// Copies `referrers` (found by [`discover`] at `src`) into `dst`, parents first, and makes
/// them discoverable there: the destination's referrers API, else its tag-schema indexes;
/// cosign's tags as tags. Adds to `report.copied`.
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
    for r in referrers {
        let reference = r.descriptor.digest.to_string();
        match &r.found_by {
            FoundBy::CosignTag(tag) => {
                copy_image(src, &reference, dst, Some(tag), &tree).await?;
            }
            FoundBy::Api | FoundBy::TagSchema => {
                let copied = match copy_referrer(src, &reference, dst, None, &tree).await {
                    Ok(c) => c,
                    // A stale list: the referrer was deleted at the source, its index kept.
                    Err(e)
                        if e.is_not_found() && src.head_manifest(&reference).await?.is_none() =>
                    {
                        tracing::warn!(
                            source = %src.location(),
                            referrer = %reference,
                            subject = %r.subject,
                            "a referrer listed by the source is not there; skipped"
                        );
                        report.missing.push(r.descriptor.digest.clone());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // The answer to a PUT says whether the destination indexes referrers; a
                // referrer it already held says nothing.
                api = api.or(copied.subject_indexed);
                schema_entries
                    .entry(r.subject.clone())
                    .or_default()
                    .push(r.descriptor.clone());
            }
        }
        *report
            .copied
            .entry(r.artifact_type().to_string())
            .or_default() += 1;
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
                add_to_schema_index(dst, subject, entries).await?;
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
    .map_err(|e| Error::Config(format!("cannot write a referrers index: {e}")))?;
    Ok(RawManifest::new(bytes, OCI_INDEX))
}

/// Adds `entries` to the tag-schema index of `subject` in `store`: read, merge, write, read
/// again until the index holds them, twice (see the module docs for what remains racy).
pub async fn add_to_schema_index(
    store: &dyn ImageStore,
    subject: &Digest,
    entries: &[Descriptor],
) -> Result<()> {
    let tag = schema_tag(subject);
    let holds = |current: &[Descriptor]| {
        entries
            .iter()
            .all(|e| current.iter().any(|c| c.digest == e.digest))
    };
    let mut confirmed = 0;
    for round in 0..MERGE_ROUNDS {
        let current = schema_index(store, subject).await?.unwrap_or_default();
        if holds(&current) {
            confirmed += 1;
            if confirmed == 2 {
                return Ok(());
            }
            // A second look a moment later: a writer that read before this write may still
            // write its own version.
            tokio::time::sleep(Duration::from_millis(40 + (round as u64 * 17) % 60)).await;
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
    }
    Err(Error::Refused {
        registry: store.location().to_string(),
        operation: "PUT referrers index".into(),
        location: format!("{}:{tag}", store.location()),
        code: "conflict".into(),
        message: format!(
            "the referrers index of {subject} kept losing entries to concurrent writers after \
             {MERGE_ROUNDS} rounds"
        ),
    })
}

/// Everything that belongs to the image `subject` in `store` besides its own manifests, in
/// the order to delete it: every referrer (deepest first), then the tag-schema indexes.
///
/// `subject` may itself be a tag-schema index left behind by an image deleted elsewhere (an
/// orphan, see [`crate::ImageRecord::orphan_of`]): then what it lists, and their referrers,
/// belong to it.
pub async fn belonging(store: &dyn ImageStore, subject: &Digest) -> Result<Vec<Digest>> {
    let mut subjects = vec![subject.clone()];
    let mut listed: Vec<Digest> = Vec::new();
    match store.get_manifest(&subject.to_string()).await {
        Ok(m) => {
            let location = format!("{}@{subject}", store.location());
            if is_referrers_index(&m) {
                listed = index_entries(&m, &location)?
                    .into_iter()
                    .map(|d| d.digest)
                    .filter(|d| d != subject)
                    .collect();
                subjects.extend(listed.iter().cloned());
            } else {
                subjects.extend(crate::image::children(&m, &location).unwrap_or_default());
            }
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let (mut found, _) = discover(store, &subjects, &ReferrerOptions::all()).await?;
    // A platform manifest that is also an image of its own (a single-platform copy of the
    // same source) keeps its referrers.
    let children: Vec<Digest> = subjects[1..]
        .iter()
        .filter(|c| !listed.contains(c))
        .cloned()
        .collect();
    if found.iter().any(|r| children.contains(&r.subject)) {
        let own = images_among(store, &children).await?;
        if !own.is_empty() {
            let mut protected: HashSet<Digest> = own.iter().cloned().collect();
            // Their referrers' referrers too (the walk lists parents before children).
            for r in &found {
                if protected.contains(&r.subject) {
                    protected.insert(r.descriptor.digest.clone());
                }
            }
            found.retain(|r| !protected.contains(&r.descriptor.digest));
            subjects.retain(|s| !own.contains(s));
        }
    }
    let mut out: Vec<Digest> = Vec::new();
    let mut sorted = found.clone();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.depth));
    for d in sorted
        .iter()
        .map(|r| &r.descriptor.digest)
        .chain(listed.iter())
    {
        if !out.contains(d) {
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
    Ok(out)
}

/// Those of `digests` that a tag of `store` names (other than a referrer tag): images of
/// their own. A bookkeeping tag names its digest in its text; other tags are read.
async fn images_among(store: &dyn ImageStore, digests: &[Digest]) -> Result<HashSet<Digest>> {
    let tags = store.list_tags().await?;
    let mut own: HashSet<Digest> = HashSet::new();
    for t in &tags {
        if let Some((_, hex)) = crate::image::parse_pushed_tag(t) {
            own.extend(
                digests
                    .iter()
                    .filter(|d| d.hex().starts_with(&hex))
                    .cloned(),
            );
        }
    }
    let real: Vec<String> = tags
        .into_iter()
        .filter(|t| parse_referrer_tag(t).is_none() && crate::image::parse_pushed_tag(t).is_none())
        .collect();
    if own.len() < digests.len() && !real.is_empty() {
        let heads: Vec<Result<Option<crate::store::ManifestHead>>> = futures::stream::iter(
            real.into_iter()
                .map(|t| async move { store.head_manifest(&t).await }),
        )
        .buffer_unordered(8)
        .collect()
        .await;
        for head in heads {
            if let Some(h) = head? {
                if digests.contains(&h.digest) {
                    own.insert(h.digest);
                }
            }
        }
    }
    Ok(own)
}

/// Whether `manifest` reads as a tag-schema referrers index: an OCI index whose every entry
/// names an artifact type and no platform (an image index names platforms).
fn is_referrers_index(manifest: &RawManifest) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referrer_tags_name_their_subject() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(schema_tag(&d), format!("sha256-{}", d.hex()));
        assert_eq!(parse_referrer_tag(&schema_tag(&d)), Some((d.clone(), None)));
        assert_eq!(
            parse_referrer_tag(&cosign_tag(&d, "sig")),
            Some((d.clone(), Some("sig")))
        );
        for t in [
            "v1",
            "sha256-abc",
            "sha256-x.sig",
            &format!("sha256-{}.zip", d.hex()),
        ] {
            assert_eq!(parse_referrer_tag(t), None, "{t}");
        }
        crate::reference::validate_tag(&cosign_tag(&d, "sbom")).unwrap();
    }

    #[test]
    fn artifact_types_read_as_kinds() {
        assert_eq!(kind_of(Some(COSIGN_SIGNATURE)), ReferrerKind::Signature);
        assert_eq!(
            kind_of(Some("application/vnd.cncf.notary.signature")),
            ReferrerKind::Signature
        );
        assert_eq!(kind_of(Some("application/spdx+json")), ReferrerKind::Sbom);
        assert_eq!(
            kind_of(Some("application/vnd.cyclonedx+json")),
            ReferrerKind::Sbom
        );
        assert_eq!(
            kind_of(Some("application/vnd.in-toto+json")),
            ReferrerKind::Attestation
        );
        assert_eq!(kind_of(None), ReferrerKind::Other);
    }

    #[test]
    fn a_filter_keeps_only_its_types() {
        let all = ReferrerOptions::all();
        assert!(all.wants(None) && all.wants(Some("x")));
        let sigs = ReferrerOptions::all().with_types([COSIGN_SIGNATURE]);
        assert!(sigs.wants(Some(COSIGN_SIGNATURE)));
        assert!(!sigs.wants(Some(COSIGN_SBOM)) && !sigs.wants(None));
    }
}
