//! What a deploy, build, sweep or inventory wants a person (or a deployer) to know while it
//! still succeeded: typed, so that a deployer can branch on "served from the mirror because
//! the source is down" without parsing text. `Display` is the sentence for people; in JSON
//! each warning is an object whose `kind` names the variant (`"kind": "source_unreachable"`)
//! next to its fields.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::digest::Digest;
use crate::error::{Error, ErrorKind};

/// The error behind a warning: the typed [`Error`] when the warning was made from one (so a
/// deployer can branch on its [`kind`](Cause::kind)), and the text people read. Reads as a
/// `str` (`cause.contains("HTTP 403")`); in JSON, the text.
#[derive(Debug, Clone)]
pub struct Cause {
    message: String,
    error: Option<Arc<Error>>,
}

impl Cause {
    /// `error` with what was being done (`"could not set it"`) in front of its text.
    pub fn context(what: &str, error: Error) -> Self {
        Cause {
            message: format!("{what}: {error}"),
            error: Some(Arc::new(error)),
        }
    }

    /// The typed error, when there is one.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_deref()
    }

    /// The error's kind, when there is a typed error.
    pub fn kind(&self) -> Option<ErrorKind> {
        self.error().map(Error::kind)
    }
}

impl From<Error> for Cause {
    fn from(error: Error) -> Self {
        Cause {
            message: error.to_string(),
            error: Some(Arc::new(error)),
        }
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Cause {
            message,
            error: None,
        }
    }
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Cause::from(message.to_string())
    }
}

impl std::ops::Deref for Cause {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl PartialEq for Cause {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for Cause {}

impl Serialize for Cause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.message)
    }
}

/// A warning: the call succeeded, but something is worth knowing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Warning {
    /// The source tag now names another image than the one mirrored; it was mirrored again.
    MutableTag {
        /// The source as given.
        source: String,
        /// The digest mirrored before.
        previous: Digest,
    },
    /// The source could not be reached (or refused us); the mirrored copy is served.
    SourceUnreachable {
        /// The source as given.
        source: String,
        /// The mirrored image served instead.
        served: Digest,
        /// Why the source could not be asked.
        error: Cause,
    },
    /// The source refused with a rate limit (429) whose `Retry-After` is longer than a
    /// retry waits; the mirrored copy is served.
    SourceRateLimited {
        /// The source as given.
        source: String,
        /// The mirrored image served instead.
        served: Digest,
        /// The `Retry-After` the source gave, in seconds.
        retry_after_secs: Option<u64>,
    },
    /// The source registry announced that few pulls are left in its window (Docker Hub's
    /// `ratelimit-remaining`: a tenth of the limit or less).
    RateLimitLow {
        /// The registry host.
        registry: String,
        /// Pulls left.
        remaining: u64,
        /// Pulls per window.
        limit: u64,
        /// The window, in seconds, when announced.
        window_secs: Option<u64>,
    },
    /// The source no longer has the image (its tag is gone); the mirrored copy is served.
    SourceGone {
        /// The source as given.
        source: String,
        /// The mirrored image served instead.
        served: Digest,
    },
    /// A platform filter made another image than the source's index: the index's referrers
    /// (signatures, SBOMs) do not apply to it and were not copied.
    IndexReferrersLeft {
        /// The source as given.
        source: String,
        /// The image that was made.
        digest: Digest,
        /// How many referrers stayed behind.
        count: usize,
    },
    /// Referrers of the source that were not copied because they would change another image:
    /// `foreign` ones name another manifest as their subject than the one they were listed
    /// for; `cosign_tags_kept` are cosign tags the destination holds with other signatures
    /// (kept as they are).
    ReferrersRefused {
        /// The source as given.
        source: String,
        /// The image.
        digest: Digest,
        /// Referrers naming another subject.
        foreign: Vec<Digest>,
        /// Cosign tags kept at the destination.
        cosign_tags_kept: Vec<String>,
    },
    /// The referrers the source gained since the image was mirrored were not copied.
    ReferrersNotRefreshed {
        /// The source as given.
        source: String,
        /// The mirrored image.
        digest: Digest,
        /// Why.
        error: Cause,
    },
    /// The in-use source could not tell which images are in use: nothing was evicted (or,
    /// in an inventory, nobody is shown as a user).
    InUseUnknown {
        /// The repository whose eviction was skipped (`None` in an inventory).
        repository: Option<String>,
        /// Why.
        error: Cause,
    },
    /// Eviction failed: for one image (`digest`), or as a whole (`None`).
    EvictionFailed {
        /// The repository.
        repository: String,
        /// The image that could not be deleted, if the failure was about one.
        digest: Option<Digest>,
        /// Why.
        error: Cause,
    },
    /// An anchor could not be set or released (for one image, or for the repository); the
    /// next call tries again.
    AnchorFailed {
        /// The repository.
        repository: String,
        /// The image, if the failure was about one.
        digest: Option<Digest>,
        /// Why.
        error: Cause,
    },
    /// The image handed out could expire or be evicted before its pods start, and the
    /// hand-out mark that would protect it ([`crate::image::HANDED_OUT_TAG_PREFIX`]) could not
    /// be written.
    HandOutNotProtected {
        /// The repository.
        repository: String,
        /// The image handed out.
        digest: Digest,
        /// Why.
        error: Cause,
    },
    /// Builds: the search for a clone's image failed, or passed over a candidate.
    CloneSearch {
        /// What happened.
        error: Cause,
    },
    /// Builds: the cache was not bounded this time (or one entry was kept because it could
    /// not be read or deleted); the next build tries again.
    CacheNotBounded {
        /// The cache repository.
        repository: String,
        /// The entry, if the failure was about one.
        digest: Option<Digest>,
        /// Why.
        error: Cause,
    },
}

impl Warning {
    /// The warning for an eviction of `repository` that failed with `error`: nothing deleted
    /// because the in-use source could not tell ([`Warning::InUseUnknown`]), or another
    /// failure ([`Warning::EvictionFailed`]).
    pub fn eviction_error(repository: &crate::registry::Repository, error: crate::Error) -> Self {
        match error {
            crate::Error::InUseUnknown { .. } => Warning::InUseUnknown {
                repository: Some(repository.name().to_string()),
                error: error.into(),
            },
            other => Warning::EvictionFailed {
                repository: repository.name().to_string(),
                digest: None,
                error: other.into(),
            },
        }
    }

    /// The machine-readable kind, as in JSON (`"source_unreachable"`).
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::MutableTag { .. } => "mutable_tag",
            Warning::SourceUnreachable { .. } => "source_unreachable",
            Warning::SourceGone { .. } => "source_gone",
            Warning::SourceRateLimited { .. } => "source_rate_limited",
            Warning::RateLimitLow { .. } => "rate_limit_low",
            Warning::IndexReferrersLeft { .. } => "index_referrers_left",
            Warning::ReferrersNotRefreshed { .. } => "referrers_not_refreshed",
            Warning::ReferrersRefused { .. } => "referrers_refused",
            Warning::InUseUnknown { .. } => "in_use_unknown",
            Warning::EvictionFailed { .. } => "eviction_failed",
            Warning::AnchorFailed { .. } => "anchor_failed",
            Warning::HandOutNotProtected { .. } => "hand_out_not_protected",
            Warning::CloneSearch { .. } => "clone_search",
            Warning::CacheNotBounded { .. } => "cache_not_bounded",
        }
    }

    /// Whether the image was served from the mirror because the source could not tell
    /// (unreachable or gone).
    pub fn served_from_mirror(&self) -> bool {
        matches!(
            self,
            Warning::SourceUnreachable { .. }
                | Warning::SourceGone { .. }
                | Warning::SourceRateLimited { .. }
        )
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::MutableTag { source, previous } => write!(
                f,
                "mutable tag: {source} now names another image than the mirrored {previous}; \
                 mirroring it again"
            ),
            Warning::SourceUnreachable {
                source,
                served,
                error,
            } => write!(
                f,
                "source {source} unreachable ({error}); serving the mirrored copy {served}"
            ),
            Warning::SourceRateLimited {
                source,
                served,
                retry_after_secs,
            } => {
                write!(f, "source {source} is rate limited")?;
                if let Some(s) = retry_after_secs {
                    write!(f, " (retry after {s} s)")?;
                }
                write!(f, "; serving the mirrored copy {served}")
            }
            Warning::RateLimitLow {
                registry,
                remaining,
                limit,
                window_secs,
            } => {
                write!(
                    f,
                    "the pull limit of {registry} is low: {remaining} of {limit} left"
                )?;
                if let Some(w) = window_secs {
                    write!(f, " in its {w} s window")?;
                }
                Ok(())
            }
            Warning::SourceGone { source, served } => write!(
                f,
                "source {source} no longer exists; serving the mirrored copy {served}"
            ),
            Warning::IndexReferrersLeft {
                source,
                digest,
                count,
            } => write!(
                f,
                "a platform filter made another image than {source}: the {count} referrers of \
                 its index (signatures, SBOMs) do not apply to {digest} and were not copied"
            ),
            Warning::ReferrersRefused {
                source,
                digest,
                foreign,
                cosign_tags_kept,
            } => {
                write!(f, "referrers of {digest} from {source} not copied:")?;
                if !foreign.is_empty() {
                    write!(
                        f,
                        " {} naming another image as their subject",
                        foreign.len()
                    )?;
                }
                if !cosign_tags_kept.is_empty() {
                    write!(
                        f,
                        " {} cosign tag(s) kept with the signatures already mirrored ({})",
                        cosign_tags_kept.len(),
                        cosign_tags_kept.join(", ")
                    )?;
                }
                Ok(())
            }
            Warning::ReferrersNotRefreshed {
                source,
                digest,
                error,
            } => write!(
                f,
                "the referrers of {digest} were not refreshed from {source}: {error}"
            ),
            Warning::InUseUnknown {
                repository: Some(r),
                error,
            } => write!(f, "nothing in {r} was evicted: {error}"),
            Warning::InUseUnknown {
                repository: None,
                error,
            } => write!(f, "{error}"),
            Warning::EvictionFailed {
                repository,
                digest: Some(d),
                error,
            } => write!(f, "could not delete {repository}@{d}: {error}"),
            Warning::EvictionFailed {
                repository,
                digest: None,
                error,
            } => write!(f, "eviction in {repository} failed: {error}"),
            Warning::AnchorFailed {
                repository,
                digest: Some(d),
                error,
            } => write!(f, "the anchor of {repository}@{d} was not updated: {error}"),
            Warning::HandOutNotProtected {
                repository,
                digest,
                error,
            } => write!(
                f,
                "{repository}@{digest} may be deleted before its pods start (its hand-out \
                 mark was not written: {error})"
            ),
            Warning::AnchorFailed {
                repository,
                digest: None,
                error,
            } => write!(f, "the anchors in {repository} were not updated: {error}"),
            Warning::CloneSearch { error } => write!(f, "{error}"),
            Warning::CacheNotBounded {
                repository,
                digest: Some(d),
                error,
            } => write!(f, "kept the cache entry {repository}@{d}: {error}"),
            Warning::CacheNotBounded {
                repository,
                digest: None,
                error,
            } => write!(f, "the build cache {repository} was not bounded: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_the_kind_next_to_the_fields() {
        let d = Digest::sha256_of(b"x");
        let w = Warning::SourceUnreachable {
            source: "docker.io/library/nginx:1.27".into(),
            served: d.clone(),
            error: "connection refused".into(),
        };
        let v = serde_json::to_value(&w).unwrap();
        assert_eq!(v["kind"], "source_unreachable");
        assert_eq!(v["kind"], w.kind());
        assert_eq!(v["served"], d.to_string());
        assert!(w.served_from_mirror());
        assert!(w.to_string().contains("serving the mirrored copy"));
        let all = [
            Warning::MutableTag {
                source: "s".into(),
                previous: d.clone(),
            },
            Warning::SourceGone {
                source: "s".into(),
                served: d.clone(),
            },
            Warning::SourceRateLimited {
                source: "s".into(),
                served: d.clone(),
                retry_after_secs: Some(60),
            },
            Warning::RateLimitLow {
                registry: "r".into(),
                remaining: 3,
                limit: 100,
                window_secs: None,
            },
            Warning::IndexReferrersLeft {
                source: "s".into(),
                digest: d.clone(),
                count: 1,
            },
            Warning::ReferrersNotRefreshed {
                source: "s".into(),
                digest: d.clone(),
                error: "e".into(),
            },
            Warning::InUseUnknown {
                repository: None,
                error: "e".into(),
            },
            Warning::EvictionFailed {
                repository: "r".into(),
                digest: None,
                error: "e".into(),
            },
            Warning::AnchorFailed {
                repository: "r".into(),
                digest: Some(d.clone()),
                error: "e".into(),
            },
            Warning::CloneSearch { error: "e".into() },
            Warning::CacheNotBounded {
                repository: "r".into(),
                digest: None,
                error: "e".into(),
            },
        ];
        for w in all {
            assert_eq!(serde_json::to_value(&w).unwrap()["kind"], w.kind());
        }
    }
}
