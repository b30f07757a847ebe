//! The errors of this crate, and their mapping to [`mirror_core::Error`] — the one place where
//! AWS error codes are interpreted.
//!
//! Every error carries the registry label (`aws:<registry host>`, so a core error read in a
//! log still says which provider and registry it came from), the ECR operation, and the
//! repository (or `repository@digest`) it was about. AWS error messages never contain the
//! credentials; the authorization token never appears in any error.

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use mirror_core::error::BoxError;

use crate::PROVIDER;

/// The result type of this crate's internal calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to ECR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// ECR answered an operation with an error code.
    #[error("{registry}: ECR {operation} on {target} failed: {code}: {message}")]
    Service {
        /// `aws:<registry host>`.
        registry: String,
        /// The ECR operation (`CreateRepository`, `BatchDeleteImage`…).
        operation: &'static str,
        /// The repository or `repository@digest` the call was about (`*` for account-wide calls).
        target: String,
        /// The AWS error code (`RepositoryNotFoundException`…).
        code: String,
        /// The AWS error message.
        message: String,
        /// The HTTP status of the answer, when there was one.
        status: Option<u16>,
    },

    /// One image of a batch call failed (`BatchDeleteImage` and `BatchGetImage` report
    /// failures per image inside a successful answer).
    #[error("{registry}: ECR {operation} of {target} failed: {code}: {reason}")]
    Image {
        /// `aws:<registry host>`.
        registry: String,
        /// The ECR operation.
        operation: &'static str,
        /// `repository@image` (the image by digest or tag).
        target: String,
        /// The ECR failure code (`ImageNotFound`, `ImageReferencedByManifestList`…).
        code: String,
        /// The ECR failure reason.
        reason: String,
    },

    /// The ECR API could not be reached, or the call timed out.
    #[error("{registry}: cannot reach the ECR API ({operation} on {target}): {source}")]
    Transport {
        /// `aws:<registry host>`.
        registry: String,
        /// The ECR operation.
        operation: &'static str,
        /// The repository the call was about.
        target: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },

    /// AWS credentials could not be found or loaded for the call.
    #[error("{registry}: AWS credentials: {reason}")]
    Credentials {
        /// `aws:<registry host>`.
        registry: String,
        /// What went wrong (never a secret).
        reason: String,
    },

    /// ECR answered something this crate does not understand (a missing field, a malformed
    /// authorization token).
    #[error("{registry}: unexpected answer to ECR {operation} on {target}: {reason}")]
    Protocol {
        /// `aws:<registry host>`.
        registry: String,
        /// The ECR operation.
        operation: &'static str,
        /// The repository the call was about.
        target: String,
        /// What is wrong with the answer.
        reason: String,
    },

    /// The configuration is invalid or incomplete.
    #[error("invalid ECR configuration: {0}")]
    Config(String),
}

/// How an AWS error code is read. The one table of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The repository does not exist.
    RepositoryNotFound,
    /// The image does not exist.
    ImageNotFound,
    /// The repository exists already (success for `ensure_repository`).
    RepositoryExists,
    /// The repository has no lifecycle policy.
    LifecyclePolicyNotFound,
    /// An index still refers to the image (ECR refuses to delete it).
    ReferencedByIndex,
    /// The caller is known but not allowed.
    Denied,
    /// The caller's credentials are invalid or expired.
    Unauthorized,
    /// Slow down.
    Throttled,
    /// Anything else.
    Other,
}

/// Classifies an AWS error code (an exception name or a per-image failure code).
pub fn classify(code: &str, status: Option<u16>) -> Kind {
    match code {
        "RepositoryNotFoundException" => Kind::RepositoryNotFound,
        "ImageNotFoundException" | "ImageNotFound" => Kind::ImageNotFound,
        "RepositoryAlreadyExistsException" => Kind::RepositoryExists,
        "LifecyclePolicyNotFoundException" => Kind::LifecyclePolicyNotFound,
        "ImageReferencedByManifestList" => Kind::ReferencedByIndex,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnauthorizedOperation"
        | "UpstreamAccessDenied" => Kind::Denied,
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "IncompleteSignature" => Kind::Unauthorized,
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "UpstreamTooManyRequests"
        | "SlowDown" => Kind::Throttled,
        _ => match status {
            Some(429) => Kind::Throttled,
            Some(403) => Kind::Denied,
            Some(401) => Kind::Unauthorized,
            _ => Kind::Other,
        },
    }
}

impl Error {
    /// The AWS error code, for service and per-image errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Service { code, .. } | Error::Image { code, .. } => Some(code),
            _ => None,
        }
    }

    /// How the error's code reads ([`Kind::Other`] for errors without a code).
    pub fn kind(&self) -> Kind {
        match self {
            Error::Service { code, status, .. } => classify(code, *status),
            Error::Image { code, .. } => classify(code, None),
            _ => Kind::Other,
        }
    }

    /// Converts an SDK error of `operation` on `target`.
    pub(crate) fn from_sdk<E>(
        registry: &str,
        operation: &'static str,
        target: &str,
        err: SdkError<E>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        match &err {
            SdkError::ServiceError(_) => Error::Service {
                registry: registry.to_string(),
                operation,
                target: target.to_string(),
                code: err.code().unwrap_or("Unknown").to_string(),
                message: err.message().unwrap_or("").to_string(),
                status,
            },
            SdkError::DispatchFailure(d) if !d.is_io() && !d.is_timeout() => {
                let text = DisplayErrorContext(&err).to_string();
                if text.contains("credential") || text.contains("identity") {
                    Error::Credentials {
                        registry: registry.to_string(),
                        reason: text,
                    }
                } else {
                    Error::Transport {
                        registry: registry.to_string(),
                        operation,
                        target: target.to_string(),
                        source: text.into(),
                    }
                }
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Error::Transport {
                registry: registry.to_string(),
                operation,
                target: target.to_string(),
                source: DisplayErrorContext(&err).to_string().into(),
            },
            SdkError::ConstructionFailure(_) => Error::Config(format!(
                "{registry}: ECR {operation} on {target}: {}",
                DisplayErrorContext(&err)
            )),
            // An answer that could not be read: report it with its status.
            _ => Error::Service {
                registry: registry.to_string(),
                operation,
                target: target.to_string(),
                code: "UnreadableResponse".into(),
                message: DisplayErrorContext(&err).to_string(),
                status,
            },
        }
    }
}

/// The location string of a repository or image: `aws:<host>/<repository>[@digest]`.
fn location(registry: &str, target: &str) -> String {
    if target == "*" {
        registry.to_string()
    } else {
        format!("{registry}/{target}")
    }
}

impl From<Error> for mirror_core::Error {
    /// Maps to the core variant a caller acts on: `NotFound` (repository or manifest),
    /// `Denied`, `Unauthorized`, `RateLimited`, `Credentials`, `Connect`; everything else is an
    /// `Http` error carrying the AWS code, message and HTTP status. The `registry` field is
    /// `aws:<registry host>`.
    fn from(e: Error) -> Self {
        let kind = e.kind();
        match e {
            Error::Service {
                registry,
                operation,
                target,
                code,
                message,
                status,
            } => match kind {
                Kind::RepositoryNotFound => mirror_core::Error::NotFound {
                    what: "repository",
                    location: location(&registry, repository_of(&target)),
                },
                Kind::ImageNotFound => mirror_core::Error::NotFound {
                    what: "manifest",
                    location: location(&registry, &target),
                },
                Kind::Denied => mirror_core::Error::Denied {
                    location: location(&registry, &target),
                    registry,
                    message: format!("{operation}: {code}: {message}"),
                },
                Kind::Unauthorized => mirror_core::Error::Unauthorized {
                    registry,
                    message: format!("{operation} on {target}: {code}: {message}"),
                },
                Kind::Throttled => mirror_core::Error::RateLimited {
                    registry,
                    retry_after: None,
                },
                _ => mirror_core::Error::Http {
                    registry,
                    operation: operation.to_string(),
                    location: target,
                    status: status.unwrap_or(0),
                    message: format!("{code}: {message}"),
                },
            },
            Error::Image {
                registry,
                operation,
                target,
                code,
                reason,
            } => match kind {
                Kind::ImageNotFound => mirror_core::Error::NotFound {
                    what: "manifest",
                    location: location(&registry, &target),
                },
                Kind::Denied => mirror_core::Error::Denied {
                    location: location(&registry, &target),
                    registry,
                    message: format!("{operation}: {code}: {reason}"),
                },
                Kind::Throttled => mirror_core::Error::RateLimited {
                    registry,
                    retry_after: None,
                },
                _ => mirror_core::Error::Http {
                    registry,
                    operation: operation.to_string(),
                    location: target,
                    status: 200,
                    message: format!("image failure {code}: {reason}"),
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

/// `repo@digest` → `repo`.
fn repository_of(target: &str) -> &str {
    target.split_once('@').map_or(target, |(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(code: &str, status: u16) -> Error {
        Error::Service {
            registry: "aws:1.dkr.ecr.r.amazonaws.com".into(),
            operation: "DescribeImages",
            target: "c/services/api".into(),
            code: code.into(),
            message: "nope".into(),
            status: Some(status),
        }
    }

    #[test]
    fn codes_map_to_core_variants_naming_the_repository() {
        let core: mirror_core::Error = service("RepositoryNotFoundException", 400).into();
        match &core {
            mirror_core::Error::NotFound { what, location } => {
                assert_eq!(*what, "repository");
                assert_eq!(location, "aws:1.dkr.ecr.r.amazonaws.com/c/services/api");
            }
            other => panic!("{other:?}"),
        }
        assert!(core.is_not_found());
        let core: mirror_core::Error = service("AccessDeniedException", 400).into();
        assert!(
            matches!(&core, mirror_core::Error::Denied { location, registry, .. }
                if location.ends_with("/c/services/api") && registry.starts_with("aws:")),
            "{core:?}"
        );
        let core: mirror_core::Error = service("ThrottlingException", 400).into();
        assert!(matches!(core, mirror_core::Error::RateLimited { .. }));
        let core: mirror_core::Error = service("Whatever", 429).into();
        assert!(matches!(core, mirror_core::Error::RateLimited { .. }));
        let core: mirror_core::Error = service("ExpiredTokenException", 400).into();
        assert!(matches!(core, mirror_core::Error::Unauthorized { .. }));
        let core: mirror_core::Error = service("ServerException", 500).into();
        match core {
            mirror_core::Error::Http {
                status,
                message,
                location,
                ..
            } => {
                assert_eq!(status, 500);
                assert!(message.starts_with("ServerException"));
                assert_eq!(location, "c/services/api");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn image_failures_map_by_code() {
        let e = Error::Image {
            registry: "aws:h".into(),
            operation: "BatchDeleteImage",
            target: "r/x@sha256:ab".into(),
            code: "ImageNotFound".into(),
            reason: "Requested image not found".into(),
        };
        assert_eq!(e.kind(), Kind::ImageNotFound);
        let core: mirror_core::Error = e.into();
        assert!(core.is_not_found());
        assert!(core.to_string().contains("r/x@sha256:ab"), "{core}");
        let e = Error::Image {
            registry: "aws:h".into(),
            operation: "BatchDeleteImage",
            target: "r/x@sha256:ab".into(),
            code: "KmsError".into(),
            reason: "key disabled".into(),
        };
        let text = mirror_core::Error::from(e).to_string();
        assert!(
            text.contains("KmsError") && text.contains("r/x@sha256:ab"),
            "{text}"
        );
    }
}
