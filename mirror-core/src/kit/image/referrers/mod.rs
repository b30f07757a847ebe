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

use serde::Serialize;

use crate::digest::{Algorithm, Digest};
use crate::media::Descriptor;

pub use crate::copy::referrer_options::{
    ReferrerOptions, ReferrerReport, DEFAULT_MAX_COUNT, DEFAULT_MAX_DEPTH,
};

mod belonging;
mod discover;
mod transfer;

pub use belonging::{belonging, belonging_with, Belonging, Holdings};
pub use discover::{discover, is_referrers_index};
pub use transfer::{add_to_schema_index, transfer};

/// The artifact type cosign gives signatures (`sha256-<hex>.sig`).
pub const COSIGN_SIGNATURE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The artifact type cosign gives attestations (`sha256-<hex>.att`).
pub(crate) const COSIGN_ATTESTATION: &str = "application/vnd.dev.cosign.artifact.att.v1+json";
/// The artifact type cosign gives attached SBOMs (`sha256-<hex>.sbom`).
pub(crate) const COSIGN_SBOM: &str = "application/vnd.dev.cosign.artifact.sbom.v1+json";

/// Cosign's tag suffixes and the artifact types they stand for.
pub(crate) const COSIGN_SUFFIXES: [(&str, &str); 3] = [
    ("sig", COSIGN_SIGNATURE),
    ("att", COSIGN_ATTESTATION),
    ("sbom", COSIGN_SBOM),
];

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

/// Whether the tag schemes (the tag-schema index, cosign's tags) name `subject`: they are
/// written for sha256 subjects only (a sha512 tag would pass the 128 characters of a tag,
/// and the schema's truncated form cannot be read back as a digest). Other subjects are
/// found through the referrers API only.
pub(crate) fn tag_schemes_apply(subject: &Digest) -> bool {
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
