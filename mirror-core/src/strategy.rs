//! Where an image goes (repository scope and tag) and what a deployment evicts.
//!
//! - [`ServiceStrategy`] (the default): one repository per service; the tag follows the source
//!   tag; after a successful mirror the service's other images are evicted except the
//!   `keep_previous` newest, the in-use ones and the image just deployed.
//! - [`ClusterStrategy`]: one repository per cluster shared by all services; the tag encodes
//!   the source registry, repository and tag; nothing is deleted per deployment, a retention
//!   time bounds storage.

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
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
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
///   its tag passes the tag grammar. Two different sources never get the same tag within one
///   repository unless they are the same image name (Service mode follows the source tag).
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

/// Service mode: a repository per service, the tag follows the source tag.
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
        let tag = match (&source.tag, &source.digest) {
            (Some(t), _) => t.clone(),
            (None, Some(d)) => format!("{}-{}", d.algorithm().as_str(), d.hex()),
            (None, None) => "latest".to_string(),
        };
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

/// Length of the hash suffix of cluster-mode tags.
const HASH_HEX: usize = 10;

/// Version of the canonical encoding the Cluster-mode tag hash is computed over.
///
/// Bump it whenever [`cluster_tag_input`] changes what it encodes or how: a new version names
/// every source differently, so each image is mirrored once more under its new tag (the old
/// tags age out by retention). Version 1 is the first explicit encoding; the first release
/// hashed the `Display` form of the source, which is not an encoding (a layout path holding
/// `:` read like a tag).
pub const CLUSTER_TAG_VERSION: u32 = 1;

/// The canonical encoding of a source hashed into its Cluster-mode tag: a header naming the
/// encoding and [`CLUSTER_TAG_VERSION`], then registry, repository, tag and digest, each a
/// big-endian `u64` length followed by the UTF-8 bytes, the optional ones preceded by a
/// presence byte (`0` absent, `1` present).
pub fn cluster_tag_input(source: &SourceId) -> Vec<u8> {
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
    let mut out = format!("mirror-core/cluster-tag/v{CLUSTER_TAG_VERSION}\0").into_bytes();
    field(&mut out, &source.registry);
    field(&mut out, &source.repository);
    optional(&mut out, source.tag.as_deref());
    optional(
        &mut out,
        source.digest.as_ref().map(|d| d.to_string()).as_deref(),
    );
    out
}

/// The cluster-mode tag of a source: a readable form of `registry/repository:tag` followed by a
/// short SHA-256 of the source's canonical encoding ([`cluster_tag_input`]).
///
/// The readable part maps `/` and `:` to `_` and drops characters the tag grammar refuses, and
/// it is cut to fit 128 characters; for an OCI layout it holds the directory's name (the hash
/// covers the full path). No readable encoding into the tag alphabet can be
/// injective (`_` is itself valid in repository names: `a_b/c` and `a/b_c` read the same), so
/// the hash suffix is always present: two sources never collide.
pub fn cluster_tag(source: &SourceId) -> String {
    let hash = hex::encode(&Sha256::digest(cluster_tag_input(source))[..HASH_HEX / 2]);
    let version = match (&source.tag, &source.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => d.hex()[..12].to_string(),
        (None, None) => "latest".to_string(),
    };
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
    let mut readable = String::new();
    for c in format!("{}_{}_{}", source.registry, repository, version).chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => readable.push(c),
            '/' | ':' | '@' => readable.push('_'),
            _ => {}
        }
    }
    let room = MAX_TAG_LEN - HASH_HEX - 1;
    if readable.len() > room {
        readable.truncate(room);
    }
    // The grammar wants the first character to be a letter, digit or '_'.
    if readable.starts_with(['.', '-']) {
        readable.replace_range(..1, "_");
    }
    let tag = format!("{readable}-{hash}");
    debug_assert!(validate_tag(&tag).is_ok(), "{tag}");
    tag
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
    fn service_tag_follows_the_source() {
        let s = ServiceStrategy::default();
        let t = s
            .target("c", "api", &src("docker.io", "library/nginx", "1.25"))
            .unwrap();
        assert_eq!(t.tag, "1.25");
        let d = crate::Digest::sha256_of(b"x");
        let pinned = SourceId {
            tag: None,
            digest: Some(d.clone()),
            ..src("h", "r", "x")
        };
        let t = s.target("c", "api", &pinned).unwrap();
        assert_eq!(t.tag, format!("sha256-{}", d.hex()));
        validate_tag(&t.tag).unwrap();
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
            if a != b {
                prop_assert_ne!(ta, tb);
            }
        }
    }
}
