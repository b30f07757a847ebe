//! Referrers: the signatures, SBOMs and attestations that belong to an image, found, copied
//! and deleted with it.
//!
//! # Where referrers are found
//!
//! For every manifest of an image (the root and each child of an index), and recursively for
//! every referrer found (a signature of an SBOM, an attestation of a platform manifest):
//!
//! 1. the OCI 1.1 referrers API, `GET /v2/<name>/referrers/<digest>` ([`ImageStore::referrers`](crate::ImageStore::referrers);
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
//! and checks once more after four times its own slowest read-merge-write (at least 100 ms):
//! long enough for a writer that read the index before this write to have written. Cosign's tags are copied as tags. All of this happens
//! before the image's deploy tag is written (see [`crate::image::place`]), so an admission
//! controller that verifies at pod creation finds the signature as soon as the pinned
//! reference is handed out.
//!
//! **What remains racy**: distribution registries offer no compare-and-swap on a tag. Two
//! writers merging into one tag-schema index converge unless one reads the index before the
//! other writes it and writes after the other's second check (it stalled for more than four
//! of the other's rounds between its read and its write); then one writer's entries are
//! missing until that image is copied again with its referrers (a recopy, or a deploy with
//! [`ReferrerOptions::refresh_on_skip`]). Registries serving the referrers API have no such
//! race. A rewritten index leaves its previous version untagged; registries that list
//! untagged manifests (ECR, Artifact Registry) show it, and listings skip it as no image.
//!
//! Index entries describe the manifest as the destination holds it (media type, digest, size,
//! `artifactType` as the spec derives it, annotations), not what the source's list said. A
//! cosign tag at the destination is replaced by the source's (the mirror follows its source).
//!
//! # What belongs to an image
//!
//! Listings fold referrers into their subject ([`crate::image::fold_referrers`]), eviction and
//! sweep delete them with it ([`belonging`] lists them deepest first, tag-schema indexes
//! included, after the image itself is gone), and inventories count them in the image's size.
//! A platform manifest that another image of the repository holds keeps its referrers.
//!
//! # Cost
//!
//! Each manifest of an image costs one referrers-API GET (a 404 is remembered for the deeper
//! levels of the walk; the subjects of one level are looked up together), one tag-schema GET
//! without the API, and three cosign HEADs; BuildKit's attestation manifests (children
//! annotated `vnd.docker.reference.type: attestation-manifest`) are no subjects. An unsigned
//! two-platform index on a registry without the API costs 3 × 5 = 15 requests at the source,
//! all answered 404, 8 subjects at once (measured: a cold deploy of such an image makes 24
//! source requests instead of 9, 117 ms instead of 108 ms on 127.0.0.1; a skip makes none).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::{Algorithm, Digest};
use crate::media::Descriptor;

mod belonging;
mod discover;
mod transfer;

pub use belonging::{belonging, Belonging};
pub use discover::{discover, is_referrers_index};
pub use transfer::{add_to_schema_index, transfer};

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
    /// When a deploy finds the image already mirrored, copy the referrers the source has
    /// gained since (a signature added after the first mirror). Off by default: it turns the
    /// skip, two manifest HEADs, into a discovery at the source (about five requests per
    /// manifest of the image).
    pub refresh_on_skip: bool,
}

impl Default for ReferrerOptions {
    fn default() -> Self {
        ReferrerOptions {
            enabled: false,
            artifact_types: Vec::new(),
            cosign_tags: true,
            max_depth: DEFAULT_MAX_DEPTH,
            max_count: DEFAULT_MAX_COUNT,
            refresh_on_skip: false,
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
    /// A depth or count bound was reached with manifests left unexamined: there may be
    /// more referrers than were copied.
    pub truncated: bool,
    /// Referrers the source lists but does not hold (a stale tag-schema index after a
    /// deletion there): not copied, not listed at the destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<Digest>,
    /// Referrers of the source's index left behind because a platform filter made a new
    /// index (its digest differs, so they do not name it); those of the platform manifests
    /// kept did travel.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub index_referrers_left: usize,
    /// Referrers the source listed for a manifest of the image whose own `subject` names
    /// another manifest: not copied. Copied, the destination would file them under that
    /// other manifest (another service's image in a shared repository): a forged signature
    /// or SBOM.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub foreign: Vec<Digest>,
    /// Cosign tags the destination already held with other signatures than the source's, and
    /// that were kept as they are (see [`transfer`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cosign_tags_kept: Vec<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ReferrerReport {
    /// Referrers copied, in all.
    pub fn copied_total(&self) -> usize {
        self.copied.values().sum()
    }
}

/// Whether the tag schemes (the tag-schema index, cosign's tags) name `subject`: they are
/// written for sha256 subjects only (a sha512 tag would pass the 128 characters of a tag,
/// and the schema's truncated form cannot be read back as a digest). Other subjects are
/// found through the referrers API only.
pub fn tag_schemes_apply(subject: &Digest) -> bool {
    subject.algorithm() == Algorithm::Sha256
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
