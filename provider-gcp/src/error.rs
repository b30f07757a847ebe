//! This crate's errors, and their one mapping to [`mirror_core::Error`].
//!
//! Artifact Registry answers errors in the Google API format,
//! `{"error": {"code": 404, "message": "…", "status": "NOT_FOUND"}}`, and long-running
//! operations end with a `google.rpc.Status` (`{"code": 5, "message": "…"}`). Both are read
//! into a canonical status name (`NOT_FOUND`, `ALREADY_EXISTS`…) and classified by [`classify`],
//! the one table of this crate.

use std::time::Duration;

use mirror_core::error::BoxError;

use crate::PROVIDER;

/// The result type of this crate's internal calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to Artifact Registry or Google's OAuth endpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Artifact Registry API answered an error.
    #[error("{registry}: Artifact Registry {operation} on {target} failed: HTTP {http_status} {status}: {message}")]
    Api {
        /// `gcp:<docker host>`.
        registry: String,
        /// The API method (`repositories.create`, `versions.delete`…).
        operation: &'static str,
        /// The repository, or `repository@digest` for versions (`*` for location-wide calls).
        target: String,
        /// The HTTP status.
        http_status: u16,
        /// The canonical status name (`NOT_FOUND`, `PERMISSION_DENIED`…); for answers without
        /// one, the name Google uses for the HTTP status.
        status: &'static str,
        /// The API's message.
        message: String,
        /// The `Retry-After` the API gave, in seconds, if any.
        retry_after_secs: Option<u32>,
    },

    /// A long-running operation finished with an error, or did not finish in time.
    #[error("{registry}: Artifact Registry operation {name} ({operation} on {target}) failed: {status}: {message}")]
    Operation {
        /// `gcp:<docker host>`.
        registry: String,
        /// The API method that started the operation.
        operation: &'static str,
        /// The repository or `repository@digest`.
        target: String,
        /// The operation's resource name.
        name: Box<str>,
        /// The canonical status name (`DEADLINE_EXCEEDED` when it did not finish in time).
        status: &'static str,
        /// The operation's error message.
        message: String,
    },

    /// The Artifact Registry API could not be reached, or the call timed out.
    #[error(
        "{registry}: cannot reach the Artifact Registry API ({operation} on {target}): {source}"
    )]
    Transport {
        /// `gcp:<docker host>`.
        registry: String,
        /// The API method.
        operation: &'static str,
        /// The repository the call was about.
        target: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },

    /// No access token could be had (key file, token endpoint, default credential chain).
    #[error("{registry}: Google credentials: {reason}")]
    Credentials {
        /// `gcp:<docker host>`.
        registry: String,
        /// What went wrong (never a secret).
        reason: String,
    },

    /// The API answered something this crate does not understand.
    #[error(
        "{registry}: unexpected answer to Artifact Registry {operation} on {target}: {reason}"
    )]
    Protocol {
        /// `gcp:<docker host>`.
        registry: String,
        /// The API method.
        operation: &'static str,
        /// The repository the call was about.
        target: String,
        /// What is wrong with the answer.
        reason: String,
    },

    /// The configuration is invalid or incomplete.
    #[error("invalid Artifact Registry configuration: {0}")]
    Config(String),
}

/// How a status reads. The one table of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The resource does not exist (`NOT_FOUND`).
    NotFound,
    /// The resource exists already (`ALREADY_EXISTS`): success for `ensure_repository`.
    AlreadyExists,
    /// The caller is known but not allowed (`PERMISSION_DENIED`).
    Denied,
    /// The access token is missing, invalid or expired (`UNAUTHENTICATED`).
    Unauthenticated,
    /// Quota or rate limit (`RESOURCE_EXHAUSTED`, HTTP 429).
    RateLimited,
    /// The request conflicts with the resource's state (`FAILED_PRECONDITION`: a tagged version
    /// deleted without `force`).
    FailedPrecondition,
    /// Concurrent modification (`ABORTED`): worth another attempt.
    Aborted,
    /// The service is unavailable or failed (`UNAVAILABLE`, `INTERNAL`, HTTP 5xx): worth
    /// another attempt.
    Unavailable,
    /// Anything else (`INVALID_ARGUMENT`, `DEADLINE_EXCEEDED`…).
    Other,
}

/// Classifies a canonical status name, with the HTTP status as a fallback.
pub fn classify(status: &str, http: Option<u16>) -> Kind {
    match status {
        "NOT_FOUND" => Kind::NotFound,
        "ALREADY_EXISTS" => Kind::AlreadyExists,
        "PERMISSION_DENIED" => Kind::Denied,
        "UNAUTHENTICATED" => Kind::Unauthenticated,
        "RESOURCE_EXHAUSTED" => Kind::RateLimited,
        "FAILED_PRECONDITION" => Kind::FailedPrecondition,
        "ABORTED" => Kind::Aborted,
        "UNAVAILABLE" | "INTERNAL" => Kind::Unavailable,
        _ => match http {
            Some(404) => Kind::NotFound,
            Some(409) => Kind::AlreadyExists,
            Some(403) => Kind::Denied,
            Some(401) => Kind::Unauthenticated,
            Some(429) => Kind::RateLimited,
            Some(s) if s >= 500 => Kind::Unavailable,
            _ => Kind::Other,
        },
    }
}

/// The canonical name of a `google.rpc.Code` number (as operations report errors).
pub fn code_name(code: i64) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The canonical status name of `name` (`None` for names Google does not define).
pub fn canonical(name: &str) -> Option<&'static str> {
    (0..=16).map(code_name).find(|c| *c == name)
}

/// The HTTP status Google maps a canonical status name to (for operation errors, which carry
/// none).
fn http_of(status: &str) -> u16 {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => 400,
        "UNAUTHENTICATED" => 401,
        "PERMISSION_DENIED" => 403,
        "NOT_FOUND" => 404,
        "ALREADY_EXISTS" | "ABORTED" => 409,
        "RESOURCE_EXHAUSTED" => 429,
        "CANCELLED" => 499,
        "UNIMPLEMENTED" => 501,
        "UNAVAILABLE" => 503,
        "DEADLINE_EXCEEDED" => 504,
        _ => 500,
    }
}

impl Error {
    /// How the error reads ([`Kind::Other`] for errors without a status; transport errors
    /// read as [`Kind::Unavailable`]).
    pub fn kind(&self) -> Kind {
        match self {
            Error::Api {
                status,
                http_status,
                ..
            } => classify(status, Some(*http_status)),
            Error::Operation { status, .. } => classify(status, None),
            Error::Transport { .. } => Kind::Unavailable,
            _ => Kind::Other,
        }
    }

    /// The canonical status name, for API and operation errors.
    pub fn status(&self) -> Option<&'static str> {
        match self {
            Error::Api { status, .. } | Error::Operation { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The `Retry-After` of a rate-limited answer.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api {
                retry_after_secs, ..
            } => retry_after_secs.map(|s| Duration::from_secs(u64::from(s))),
            _ => None,
        }
    }

    /// True when another attempt may succeed: transport errors, rate limits, `ABORTED` and
    /// server errors.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            Kind::RateLimited | Kind::Aborted | Kind::Unavailable
        ) && !matches!(self, Error::Operation { .. })
    }
}

/// `gcp:<host>` + `/target`.
fn location(registry: &str, target: &str) -> String {
    if target == "*" {
        registry.to_string()
    } else {
        format!("{registry}/{target}")
    }
}

impl From<Error> for mirror_core::Error {
    /// Maps to the core variant a caller acts on: `NotFound` (`repository` for a repository,
    /// `manifest` for `repository@digest`), `Denied`, `Unauthorized`, `RateLimited`,
    /// `Credentials`, `Connect`, `Config`; everything else is an `Http` error carrying the HTTP
    /// status, the canonical status name and the message. The `registry` field is
    /// `gcp:<docker host>`.
    fn from(e: Error) -> Self {
        let kind = e.kind();
        let retry_after = e.retry_after();
        match e {
            Error::Api {
                registry,
                operation,
                target,
                http_status,
                status,
                message,
                ..
            } => match kind {
                Kind::NotFound => mirror_core::Error::NotFound {
                    what: if target.contains('@') {
                        "manifest"
                    } else {
                        "repository"
                    },
                    location: location(&registry, &target),
                },
                Kind::Denied => mirror_core::Error::Denied {
                    location: location(&registry, &target),
                    registry,
                    message: format!("{operation}: {status}: {message}"),
                },
                Kind::Unauthenticated => mirror_core::Error::Unauthorized {
                    registry,
                    message: format!("{operation} on {target}: {status}: {message}"),
                },
                Kind::RateLimited => mirror_core::Error::RateLimited {
                    registry,
                    retry_after,
                },
                _ => mirror_core::Error::Http {
                    registry,
                    operation: operation.to_string(),
                    location: target,
                    status: http_status,
                    message: format!("{status}: {message}"),
                },
            },
            Error::Operation {
                registry,
                operation,
                target,
                name,
                status,
                message,
            } => match kind {
                Kind::NotFound => mirror_core::Error::NotFound {
                    what: if target.contains('@') {
                        "manifest"
                    } else {
                        "repository"
                    },
                    location: location(&registry, &target),
                },
                Kind::Denied => mirror_core::Error::Denied {
                    location: location(&registry, &target),
                    registry,
                    message: format!("{operation} (operation {name}): {status}: {message}"),
                },
                Kind::Unauthenticated => mirror_core::Error::Unauthorized {
                    registry,
                    message: format!(
                        "{operation} on {target} (operation {name}): {status}: {message}"
                    ),
                },
                Kind::RateLimited => mirror_core::Error::RateLimited {
                    registry,
                    retry_after: None,
                },
                _ => mirror_core::Error::Http {
                    registry,
                    operation: operation.to_string(),
                    location: target,
                    status: http_of(status),
                    message: format!("operation {name}: {status}: {message}"),
                },
            },
            Error::Transport {
                registry,
                operation,
                target,
                source,
            } => mirror_core::Error::Connect {
                registry,
                operation: operation.to_string(),
                location: target,
                source,
            },
            Error::Credentials { registry, reason } => {
                mirror_core::Error::Credentials { registry, reason }
            }
            Error::Protocol {
                registry,
                operation,
                target,
                reason,
            } => mirror_core::Error::Http {
                registry,
                operation: operation.to_string(),
                location: target,
                status: 200,
                message: reason,
            },
            Error::Config(m) => mirror_core::Error::Config(format!("{PROVIDER}: {m}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: &'static str, http: u16, target: &str) -> Error {
        Error::Api {
            registry: "gcp:europe-west1-docker.pkg.dev".into(),
            operation: "dockerImages.list",
            target: target.into(),
            http_status: http,
            status,
            message: "nope".into(),
            retry_after_secs: Some(7),
        }
    }

    #[test]
    fn statuses_map_to_core_variants_naming_the_target() {
        let core: mirror_core::Error = api("NOT_FOUND", 404, "p/r/image").into();
        match &core {
            mirror_core::Error::NotFound { what, location } => {
                assert_eq!(*what, "repository");
                assert_eq!(location, "gcp:europe-west1-docker.pkg.dev/p/r/image");
            }
            other => panic!("{other:?}"),
        }
        let core: mirror_core::Error = api("NOT_FOUND", 404, "p/r/image@sha256:ab").into();
        assert!(matches!(
            core,
            mirror_core::Error::NotFound {
                what: "manifest",
                ..
            }
        ));
        let core: mirror_core::Error = api("PERMISSION_DENIED", 403, "p/r/image").into();
        assert!(
            matches!(&core, mirror_core::Error::Denied { location, registry, .. }
                if location.ends_with("/p/r/image") && registry.starts_with("gcp:")),
            "{core:?}"
        );
        let core: mirror_core::Error = api("RESOURCE_EXHAUSTED", 429, "p/r/image").into();
        assert!(matches!(
            core,
            mirror_core::Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        let core: mirror_core::Error = api("", 429, "x").into();
        assert!(matches!(core, mirror_core::Error::RateLimited { .. }));
        let core: mirror_core::Error = api("UNAUTHENTICATED", 401, "x").into();
        assert!(matches!(core, mirror_core::Error::Unauthorized { .. }));
        let core: mirror_core::Error =
            api("FAILED_PRECONDITION", 400, "p/r/image@sha256:ab").into();
        match core {
            mirror_core::Error::Http {
                status,
                message,
                location,
                ..
            } => {
                assert_eq!(status, 400);
                assert!(message.starts_with("FAILED_PRECONDITION"), "{message}");
                assert_eq!(location, "p/r/image@sha256:ab");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn operation_errors_map_by_rpc_code() {
        let op = |code: i64| Error::Operation {
            registry: "gcp:h".into(),
            operation: "versions.delete",
            target: "p/r/image@sha256:ab".into(),
            name: "projects/p/locations/l/operations/1".into(),
            status: code_name(code),
            message: "failed".into(),
        };
        assert!(mirror_core::Error::from(op(5)).is_not_found());
        assert!(matches!(
            mirror_core::Error::from(op(7)),
            mirror_core::Error::Denied { .. }
        ));
        match mirror_core::Error::from(op(13)) {
            mirror_core::Error::Http {
                status, message, ..
            } => {
                assert_eq!(status, 500);
                assert!(message.contains("operations/1") && message.contains("INTERNAL"));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !op(14).is_transient(),
            "a failed operation is not retried as a call"
        );
    }

    #[test]
    fn transient_errors() {
        assert!(api("UNAVAILABLE", 503, "x").is_transient());
        assert!(api("ABORTED", 409, "x").is_transient());
        assert!(api("RESOURCE_EXHAUSTED", 429, "x").is_transient());
        assert!(!api("ALREADY_EXISTS", 409, "x").is_transient());
        assert!(!api("NOT_FOUND", 404, "x").is_transient());
        assert_eq!(classify("", Some(409)), Kind::AlreadyExists);
        assert_eq!(classify("ABORTED", Some(409)), Kind::Aborted);
    }
}
