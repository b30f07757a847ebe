//! The one place where AWS error codes are read: [`classify`], the table of this crate, and
//! the conversion of SDK errors and per-image failures into the kit's
//! [`ControlPlaneError`] (which becomes a [`mirror_core::Error`] through the kit's one
//! mapping).
//!
//! Every error carries the registry label (`aws:<registry host>`, so a core error read in a
//! log still says which provider and registry it came from), the ECR operation, and the
//! repository (or `repository@digest`) it was about. AWS error messages never contain the
//! credentials; the authorization token never appears in any error.

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use mirror_core::provider::{self, ControlPlaneError, Origin};

/// The error of this crate's calls: the kit's control-plane error.
pub type Error = ControlPlaneError;

/// The result type of this crate's internal calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// ECR failed (HTTP 5xx).
    Server,
    /// Anything else.
    Other,
}

impl Kind {
    /// The kit's kind for this one.
    pub fn to_kit(self) -> provider::Kind {
        match self {
            Kind::RepositoryNotFound => provider::Kind::NotFound("repository"),
            Kind::ImageNotFound => provider::Kind::NotFound("manifest"),
            Kind::RepositoryExists => provider::Kind::AlreadyExists,
            Kind::LifecyclePolicyNotFound => provider::Kind::NotFound("lifecycle policy"),
            Kind::ReferencedByIndex => provider::Kind::Conflict,
            Kind::Denied => provider::Kind::Denied,
            Kind::Unauthorized => provider::Kind::Unauthenticated,
            Kind::Throttled => provider::Kind::RateLimited,
            Kind::Server => provider::Kind::Unavailable,
            Kind::Other => provider::Kind::Other,
        }
    }
}

/// Classifies an AWS error code (an exception name or a per-image failure code), with the
/// HTTP status as a fallback.
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
        "ServerException" | "ServiceUnavailableException" | "InternalFailure" => Kind::Server,
        _ => match status {
            Some(429) => Kind::Throttled,
            Some(403) => Kind::Denied,
            Some(401) => Kind::Unauthorized,
            Some(s) if s >= 500 => Kind::Server,
            _ => Kind::Other,
        },
    }
}

/// How `e` reads in this crate's table ([`Kind::Other`] for errors without a code).
pub fn kind(e: &Error) -> Kind {
    match e.code() {
        Some(code) => classify(code, e.status),
        None => Kind::Other,
    }
}

/// An answer of `operation` on `target` with an AWS error `code`.
pub fn service(
    origin: &Origin,
    operation: &'static str,
    target: &str,
    code: &str,
    message: &str,
    status: Option<u16>,
) -> Error {
    let mut e = origin
        .error(operation, target, classify(code, status).to_kit(), message)
        .with_code(code);
    e.status = status;
    e
}

/// One image of a batch call failed (`BatchDeleteImage` and `BatchGetImage` report failures
/// per image inside a successful answer: no HTTP status of their own).
pub fn image_failure(
    origin: &Origin,
    operation: &'static str,
    target: String,
    code: &str,
    reason: &str,
) -> Error {
    service(origin, operation, &target, code, reason, None)
}

/// Converts an SDK error of `operation` on `target`.
pub fn from_sdk<E>(
    origin: &Origin,
    operation: &'static str,
    target: &str,
    err: SdkError<E>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match &err {
        SdkError::ServiceError(_) => service(
            origin,
            operation,
            target,
            err.code().unwrap_or("Unknown"),
            err.message().unwrap_or(""),
            status,
        ),
        SdkError::DispatchFailure(d) if !d.is_io() && !d.is_timeout() => {
            let text = DisplayErrorContext(&err).to_string();
            if text.contains("credential") || text.contains("identity") {
                origin.credentials(text)
            } else {
                origin.transport(operation, target, text)
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            origin.transport(operation, target, DisplayErrorContext(&err).to_string())
        }
        SdkError::ConstructionFailure(_) => origin.config(format!(
            "ECR {operation} on {target}: {}",
            DisplayErrorContext(&err)
        )),
        // An answer that could not be read: report it with its status.
        _ => {
            let mut e = origin.protocol(operation, target, DisplayErrorContext(&err).to_string());
            e.status = status;
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::new("aws", "1.dkr.ecr.r.amazonaws.com")
    }

    fn svc(code: &str, status: u16) -> Error {
        service(
            &origin(),
            "DescribeImages",
            "c/services/api",
            code,
            "nope",
            Some(status),
        )
    }

    #[test]
    fn codes_map_to_core_variants_naming_the_repository() {
        let core: mirror_core::Error = svc("RepositoryNotFoundException", 400).into();
        match &core {
            mirror_core::Error::NotFound { what, location } => {
                assert_eq!(*what, "repository");
                assert_eq!(location, "aws:1.dkr.ecr.r.amazonaws.com/c/services/api");
            }
            other => panic!("{other:?}"),
        }
        assert!(core.is_not_found());
        let core: mirror_core::Error = svc("AccessDeniedException", 400).into();
        assert!(
            matches!(&core, mirror_core::Error::Denied { location, registry, .. }
                if location.ends_with("/c/services/api") && registry.starts_with("aws:")),
            "{core:?}"
        );
        let core: mirror_core::Error = svc("ThrottlingException", 400).into();
        assert!(matches!(core, mirror_core::Error::RateLimited { .. }));
        let core: mirror_core::Error = svc("Whatever", 429).into();
        assert!(matches!(core, mirror_core::Error::RateLimited { .. }));
        let core: mirror_core::Error = svc("ExpiredTokenException", 400).into();
        assert!(matches!(core, mirror_core::Error::Unauthorized { .. }));
        let core: mirror_core::Error = svc("ServerException", 500).into();
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
        assert!(svc("ServerException", 500).is_transient());
        assert!(!svc("RepositoryAlreadyExistsException", 400).is_transient());
    }

    #[test]
    fn image_failures_map_by_code() {
        let e = image_failure(
            &origin(),
            "BatchDeleteImage",
            "r/x@sha256:ab".into(),
            "ImageNotFound",
            "Requested image not found",
        );
        assert_eq!(kind(&e), Kind::ImageNotFound);
        let core: mirror_core::Error = e.into();
        assert!(core.is_not_found());
        assert!(core.to_string().contains("r/x@sha256:ab"), "{core}");
        let e = image_failure(
            &origin(),
            "BatchDeleteImage",
            "r/x@sha256:ab".into(),
            "KmsError",
            "key disabled",
        );
        let core = mirror_core::Error::from(e);
        let text = core.to_string();
        assert!(
            text.contains("KmsError") && text.contains("r/x@sha256:ab"),
            "{text}"
        );
        assert!(
            matches!(core, mirror_core::Error::Refused { .. }),
            "a per-image failure is no HTTP status: {core:?}"
        );
    }
}
