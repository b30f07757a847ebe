//! Where an image goes (repository scope and tag) and what a deployment evicts.
//!
//! - [`ServiceStrategy`] (the default): one repository per service; the tag is the source tag
//!   followed by a hash of the whole source (`v1-3f9a0c21d7`, [`service_tag`]); after a
//!   successful mirror the service's other images are evicted except the `keep_previous`
//!   newest, the in-use ones and the image just deployed.
//! - [`ClusterStrategy`]: one repository per cluster shared by all services; the tag encodes
//!   the source registry, repository and tag and the same kind of hash (`cluster_tag`);
//!   nothing is deleted per deployment, a retention time bounds storage.
//!
//! # Tags carry the source's identity
//!
//! A tag at the destination is how a later deploy finds what was mirrored without asking the
//! source (a skip, [`TagPolicy::Trust`](crate::TagPolicy), the outage fallback). So a tag must
//! never be shared by two sources: both schemes end in ten hex digits of a SHA-256 over a
//! versioned canonical encoding of the source (`source_identity_input`: registry,
//! repository, tag, digest). Tag schemes are versioned (`SERVICE_TAG_VERSION`,
//! `CLUSTER_TAG_VERSION`): a new version names every source anew, so the first deploy after
//! an upgrade finds no tag and copies once more; the copy finds the manifest and its blobs
//! already in the repository and writes the new tag only (no upload).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::Result;
use crate::reference::{validate_tag, MAX_TAG_LEN};
use crate::registry::{RepositoryScope, RepositorySettings};

/// What an image is mirrored from, as strategies see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceId {
    /// Source registry host, or `oci` for a layout.
    pub registry: String,
    /// Source repository (or layout path).
    pub repository: String,
    /// Source tag, if any.
    pub tag: Option<String>,
    /// Source digest, if the source is pinned.
    pub digest: Option<crate::Digest>,
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        crate::reference::write_tag_and_digest(f, self.tag.as_deref(), self.digest.as_ref())
    }
}

/// Where a strategy puts an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The repository scope.
    pub scope: RepositoryScope,
    /// The tag at the destination.
    pub tag: String,
}

/// Where images go and what a deployment deletes.
///
/// # Contract
///
/// - `target` is pure: the same (cluster, service, source) always gives the same target, and
///   its tag passes the tag grammar.
/// - Two different sources (registry, repository, tag or digest) never get the same tag
///   within one repository: a tag found at the destination is an image mirrored from exactly
///   that source, which is what lets a deploy skip the copy or serve the mirrored copy while
///   the source is down. (Version 1 of the Service-mode scheme broke this: its tag was the
///   source tag alone.)
/// - `evict_after_deploy` says whether the service's older images are deleted after a
///   successful mirror; `keep_previous` how many of them are kept.
/// - `settings` are applied to the repository when it is ensured.
pub trait MirrorStrategy: Send + Sync + fmt::Debug {
    /// The destination of `source` for `service` of `cluster`.
    fn target(&self, cluster: &str, service: &str, source: &SourceId) -> Result<Target>;

    /// Whether a successful mirror evicts the service's other images.
    fn evict_after_deploy(&self) -> bool;

    /// Previous images kept by eviction.
    fn keep_previous(&self) -> usize {
        0
    }

    /// The retention time (Cluster mode).
    fn retention(&self) -> Option<Duration> {
        None
    }

    /// Repository settings for the target repository.
    fn settings(&self) -> RepositorySettings {
        RepositorySettings {
            retention: self.retention(),
            keep_previous: self.evict_after_deploy().then(|| self.keep_previous()),
        }
    }
}

/// Service mode: a repository per service; the tag is the source tag followed by a hash of the
/// source ([`service_tag`]).
#[derive(Debug, Clone)]
pub struct ServiceStrategy {
    /// Previous images kept for rollbacks (default 1).
    pub keep_previous: usize,
}

impl Default for ServiceStrategy {
    fn default() -> Self {
        ServiceStrategy { keep_previous: 1 }
    }
}

impl MirrorStrategy for ServiceStrategy {
    fn target(&self, cluster: &str, service: &str, source: &SourceId) -> Result<Target> {
        let tag = service_tag(source);
        Ok(Target {
            scope: RepositoryScope::Service {
                cluster: cluster.to_string(),
                service: service.to_string(),
            },
            tag,
        })
    }

    fn evict_after_deploy(&self) -> bool {
        true
    }

    fn keep_previous(&self) -> usize {
        self.keep_previous
    }
}

/// Cluster mode: one repository per cluster; no per-deploy deletion; a retention time.
///
/// Made with [`ClusterStrategy::new`]; options to come are added as `with_*` methods, so the
/// struct is `#[non_exhaustive]`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterStrategy {
    /// Images older than this and not in use are deleted (by the provider's policy or `sweep`).
    pub retention: Duration,
}

impl ClusterStrategy {
    /// Cluster mode with this retention time.
    pub fn new(retention: Duration) -> Self {
        ClusterStrategy { retention }
    }
}

impl MirrorStrategy for ClusterStrategy {
    fn target(&self, cluster: &str, _service: &str, source: &SourceId) -> Result<Target> {
        Ok(Target {
            scope: RepositoryScope::Cluster {
                cluster: cluster.to_string(),
            },
            tag: cluster_tag(source),
        })
    }

    fn evict_after_deploy(&self) -> bool {
        false
    }

    fn retention(&self) -> Option<Duration> {
        Some(self.retention)
    }
}

/// Length of the hash suffix of both tag schemes.
const HASH_HEX: usize = 10;

/// Version of the canonical encoding the Cluster-mode tag hash is computed over.
///
/// Bump it whenever [`cluster_tag_input`] changes what it encodes or how: a new version names
/// every source differently, so each image is mirrored once more under its new tag (the old
/// tags age out by retention). Version 1 is the first explicit encoding; the first release
/// hashed the `Display` form of the source, which is not an encoding (a layout path holding
/// `:` read like a tag).
pub(crate) const CLUSTER_TAG_VERSION: u32 = 1;

/// Version of the Service-mode tag scheme ([`service_tag`]).
///
/// Version 1 (no hash) was the source tag alone, so two sources with one tag (`acme/api:v1`,
/// `acme/worker:v1`) shared a tag in a service's repository and a deploy of one could skip to
/// the other's image. Version 2 appends the hash of [`source_identity_input`]. Bump it
/// whenever that encoding or the readable part changes: each service's image is then tagged
/// once more on its next deploy (no upload: the manifest and blobs are in the repository).
pub(crate) const SERVICE_TAG_VERSION: u32 = 2;

/// The canonical encoding of a source that a tag scheme hashes: a header naming the scheme
/// and its version (`mirror-core/<scheme>/v<version>` and a NUL byte), then registry,
/// repository, tag and digest, each a big-endian `u64` length followed by the UTF-8 bytes,
/// the optional ones preceded by a presence byte (`0` absent, `1` present).
pub(crate) fn source_identity_input(scheme: &str, version: u32, source: &SourceId) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn optional(out: &mut Vec<u8>, s: Option<&str>) {
        match s {
            None => out.push(0),
            Some(s) => {
                out.push(1);
                field(out, s);
            }
        }
    }
    let mut out = format!("mirror-core/{scheme}/v{version}\0").into_bytes();
    field(&mut out, &source.registry);
    field(&mut out, &source.repository);
    optional(&mut out, source.tag.as_deref());
    optional(
        &mut out,
        source.digest.as_ref().map(|d| d.to_string()).as_deref(),
    );
    out
}

/// The canonical encoding of a source hashed into its Cluster-mode tag:
/// [`source_identity_input`] of scheme `cluster-tag`, version [`CLUSTER_TAG_VERSION`].
pub(crate) fn cluster_tag_input(source: &SourceId) -> Vec<u8> {
    source_identity_input("cluster-tag", CLUSTER_TAG_VERSION, source)
}

/// The canonical encoding of a source hashed into its Service-mode tag:
/// [`source_identity_input`] of scheme `service-tag`, version [`SERVICE_TAG_VERSION`].
pub(crate) fn service_tag_input(source: &SourceId) -> Vec<u8> {
    source_identity_input("service-tag", SERVICE_TAG_VERSION, source)
}

/// `readable` cut to leave room for the hash, made a valid tag start, then `-<hash>`.
fn with_hash(readable: &str, input: &[u8]) -> String {
    let hash = hex::encode(&Sha256::digest(input)[..HASH_HEX / 2]);
    let mut readable: String = readable
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    let room = MAX_TAG_LEN - HASH_HEX - 1;
    if readable.len() > room {
        readable.truncate(room);
    }
    // The grammar wants the first character to be a letter, digit or '_'.
    if readable.is_empty() || readable.starts_with(['.', '-']) {
        readable.replace_range(..readable.len().min(1), "_");
    }
    let tag = format!("{readable}-{hash}");
    debug_assert!(validate_tag(&tag).is_ok(), "{tag}");
    tag
}

/// The readable version part of a source: its tag, else the first 12 hex digits of its
/// digest, else `latest`.
fn readable_version(source: &SourceId) -> String {
    match (&source.tag, &source.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => format!("{}_{}", d.algorithm().as_str(), &d.hex()[..12]),
        (None, None) => "latest".to_string(),
    }
}

/// The Service-mode tag of a source: the source's tag as people know it (`v1`; for a source
/// pinned by digest alone `sha256_<12 hex>`), then `-` and a short SHA-256 of the source's
/// canonical encoding (`service_tag_input`). Two sources never share a tag; the same
/// source always gets the same one.
pub fn service_tag(source: &SourceId) -> String {
    with_hash(&readable_version(source), &service_tag_input(source))
}

/// The cluster-mode tag of a source: a readable form of `registry/repository:tag` followed by a
/// short SHA-256 of the source's canonical encoding ([`cluster_tag_input`]).
///
/// The readable part maps `/` and `:` to `_` and drops characters the tag grammar refuses, and
/// it is cut to fit 128 characters; for an OCI layout it holds the directory's name (the hash
/// covers the full path). No readable encoding into the tag alphabet can be
/// injective (`_` is itself valid in repository names: `a_b/c` and `a/b_c` read the same), so
/// the hash suffix is always present: two sources never collide.
pub(crate) fn cluster_tag(source: &SourceId) -> String {
    // A layout is named by its full path (hashed); its directory name is what people read.
    let repository = if source.registry == "oci" {
        source
            .repository
            .rsplit('/')
            .find(|c| !c.is_empty())
            .unwrap_or(&source.repository)
    } else {
        &source.repository
    };
    let version = match (&source.tag, &source.digest) {
        (None, Some(d)) => d.hex()[..12].to_string(),
        _ => readable_version(source),
    };
    let readable: String = format!("{}_{}_{}", source.registry, repository, version)
        .chars()
        .map(|c| if matches!(c, '/' | ':' | '@') { '_' } else { c })
        .collect();
    with_hash(&readable, &cluster_tag_input(source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn src(registry: &str, repository: &str, tag: &str) -> SourceId {
        SourceId {
            registry: registry.into(),
            repository: repository.into(),
            tag: Some(tag.into()),
            digest: None,
        }
    }

    #[test]
    fn cluster_tags_are_readable_and_distinct() {
        let a = cluster_tag(&src("docker.io", "library/nginx", "1.25"));
        assert!(a.starts_with("docker.io_library_nginx_1.25-"), "{a}");
        let b = cluster_tag(&src("docker.io", "library_nginx", "1.25"));
        assert_ne!(a, b);
        let long = cluster_tag(&src(
            "registry.example.com:5000",
            "a/".repeat(120).trim_end_matches('/'),
            "v1",
        ));
        assert!(long.len() <= 128);
        validate_tag(&long).unwrap();
    }

    #[test]
    fn cluster_tag_hash_is_pinned() {
        // Pinned (and recomputed from the documented encoding with Python's hashlib): a
        // change here renames every Cluster-mode image; bump CLUSTER_TAG_VERSION.
        let s = src("docker.io", "library/nginx", "1.25");
        assert_eq!(cluster_tag(&s), "docker.io_library_nginx_1.25-12a65118d1");
        let pinned = SourceId {
            tag: None,
            digest: Some(crate::Digest::sha256_of(b"x")),
            ..s.clone()
        };
        assert_ne!(cluster_tag(&pinned), cluster_tag(&s));
        // Fields cannot run into each other: a tag that looks like a digest is not one.
        let a = SourceId {
            registry: "h".into(),
            repository: "r:x".into(),
            tag: Some("t".into()),
            digest: None,
        };
        let b = SourceId {
            registry: "h".into(),
            repository: "r".into(),
            tag: Some("x:t".into()),
            digest: None,
        };
        assert_ne!(cluster_tag_input(&a), cluster_tag_input(&b));
    }

    #[test]
    fn service_tags_show_the_source_tag_and_name_the_whole_source() {
        let s = ServiceStrategy::default();
        let t = s
            .target("c", "api", &src("docker.io", "library/nginx", "1.25"))
            .unwrap();
        // Pinned (and recomputed from the documented encoding with Python's hashlib): a
        // change here retags every Service-mode image; bump SERVICE_TAG_VERSION.
        assert_eq!(t.tag, "1.25-15fd71229a");
        // Another repository with the same tag is another source: never the same tag.
        let other = s
            .target("c", "api", &src("docker.io", "library/httpd", "1.25"))
            .unwrap();
        assert_ne!(t.tag, other.tag);
        assert!(other.tag.starts_with("1.25-"), "{}", other.tag);
        let d = crate::Digest::sha256_of(b"x");
        let pinned = SourceId {
            tag: None,
            digest: Some(d.clone()),
            ..src("h", "r", "x")
        };
        let t = s.target("c", "api", &pinned).unwrap();
        assert!(
            t.tag.starts_with(&format!("sha256_{}-", &d.hex()[..12])),
            "{}",
            t.tag
        );
        assert!(
            crate::image::referrers::parse_referrer_tag(&t.tag).is_none(),
            "never read as a referrer tag: {}",
            t.tag
        );
        validate_tag(&t.tag).unwrap();
        // A tag pinned to a digest is another source than the tag alone.
        let both = SourceId {
            digest: Some(d),
            ..src("h", "r", "x")
        };
        assert_ne!(service_tag(&both), service_tag(&src("h", "r", "x")));
    }

    proptest! {
        #[test]
        fn cluster_tags_are_valid_and_injective(
            r1 in "[a-z0-9.:-]{1,60}", p1 in "[a-z0-9/_.-]{1,200}", t1 in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
            r2 in "[a-z0-9.:-]{1,60}", p2 in "[a-z0-9/_.-]{1,200}", t2 in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}",
        ) {
            let a = src(&r1, &p1, &t1);
            let b = src(&r2, &p2, &t2);
            let (ta, tb) = (cluster_tag(&a), cluster_tag(&b));
            prop_assert!(validate_tag(&ta).is_ok(), "{}", ta);
            let (sa, sb) = (service_tag(&a), service_tag(&b));
            prop_assert!(validate_tag(&sa).is_ok(), "{}", sa);
            if a != b {
                prop_assert_ne!(ta, tb);
                prop_assert_ne!(sa, sb);
            }
        }
    }
}
