//! What the copy engine is told about referrers and what it reports of them: plain data,
//! here below the engine so that its options and report can carry them; the walk that finds
//! and places referrers is image composition (the `image::referrers` module, above the engine).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::digest::Digest;

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

    /// Whether a referrer of `artifact_type` travels (the type filter).
    pub(crate) fn wants(&self, artifact_type: Option<&str>) -> bool {
        self.artifact_types.is_empty()
            || artifact_type.is_some_and(|t| self.artifact_types.iter().any(|w| w == t))
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
    /// that were kept as they are (see `image::referrers::transfer`).
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
