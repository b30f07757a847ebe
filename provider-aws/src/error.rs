//! The one place where AWS answers are read: [`TABLE`] (AWS error codes and HTTP statuses to
//! the kit's [`Kind`](mirror_core::kit::provider::Kind)s), and the conversion of SDK errors and per-image failures into the
//! kit's [`ControlPlaneError`]. Every error names the registry (`aws:<host>`), the ECR
//! operation and the repository or `repository@digest`; AWS messages never contain the
//! credentials, and the authorization token never appears in any error.

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use mirror_core::kit::provider::calls::innermost_cause;
use mirror_core::kit::provider::Kind::*;
use mirror_core::kit::provider::{ControlPlaneError, ErrorTable, Origin};

/// The error of this crate's calls: the kit's control-plane error.
pub type Error = ControlPlaneError;

/// The result type of this crate's internal calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// AWS error codes (exception names and per-image failure codes) and HTTP statuses.
pub const TABLE: ErrorTable = ErrorTable {
    codes: &[
        (NotFound("repository"), "RepositoryNotFoundException"),
        (NotFound("manifest"), "ImageNotFoundException ImageNotFound"),
        (
            NotFound("lifecycle policy"),
            "LifecyclePolicyNotFoundException",
        ),
        (AlreadyExists, "RepositoryAlreadyExistsException"),
        (Conflict, "ImageReferencedByManifestList"),
        (Denied, "AccessDeniedException AccessDenied"),
        (Denied, "UnauthorizedOperation UpstreamAccessDenied"),
        (Unauthenticated, "UnrecognizedClientException"),
        (Unauthenticated, "InvalidSignatureException"),
        (Unauthenticated, "ExpiredTokenException ExpiredToken"),
        (Unauthenticated, "InvalidClientTokenId IncompleteSignature"),
        (Unauthenticated, "MissingAuthenticationToken"),
        (RateLimited, "ThrottlingException Throttling SlowDown"),
        (RateLimited, "TooManyRequestsException RequestLimitExceeded"),
        (RateLimited, "UpstreamTooManyRequests"),
        (Unavailable, "ServerException ServiceUnavailableException"),
        (Unavailable, "InternalFailure"),
    ],
    statuses: &[
        (RateLimited, "429"),
        (Denied, "403"),
        (Unauthenticated, "401"),
        (Unavailable, "500-999"),
    ],
};

/// An answer of `operation` on `target` with the AWS error `code` (and HTTP `status`; none
/// for the failure of one image inside a successful batch answer).
pub fn service(
    origin: &Origin,
    operation: &'static str,
    target: &str,
    code: &str,
    message: &str,
    status: Option<u16>,
) -> Error {
    let mut e = origin
        .error(operation, target, TABLE.kind(code, status), message)
        .with_code(code);
    e.status = status;
    e
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
    let text = || DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::ServiceError(_) => {
            let (code, message) = (err.code().unwrap_or("Unknown"), err.message().unwrap_or(""));
            service(origin, operation, target, code, message, status)
        }
        SdkError::DispatchFailure(d) if !d.is_io() && !d.is_timeout() => {
            let text = text();
            match text.contains("credential") || text.contains("identity") {
                // The innermost cause (the SDK's chain repeats it wrapped three times, with
                // its `Debug` form: 1.5 KB) and where an identity comes from. The profile
                // variable is `EcrConfigKey::Profile`'s (tested there).
                true => origin.credentials(format!(
                    "no AWS identity: {}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                     AWS_PROFILE / MIRROR_ECR_PROFILE (a profile in ~/.aws), or run with a role \
                     (IRSA, ECS, EC2)",
                    innermost_cause(&err, 200)
                )),
                false => origin.transport(operation, target, text),
            }
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            origin.transport(operation, target, text())
        }
        SdkError::ConstructionFailure(_) => origin.config(
            "endpoint",
            format!("ECR {operation} on {target}: {}", text()),
        ),
        // An answer that could not be read: reported with its status.
        _ => {
            let mut e = origin.protocol(operation, target, text());
            e.status = status;
            e
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_core::kit::provider::Kind;

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
        let e = service(
            &origin(),
            "BatchDeleteImage",
            "r/x@sha256:ab",
            "ImageNotFound",
            "Requested image not found",
            None,
        );
        assert_eq!(e.kind(), Kind::NotFound("manifest"));
        let core: mirror_core::Error = e.into();
        assert!(core.is_not_found());
        assert!(core.to_string().contains("r/x@sha256:ab"), "{core}");
        let e = service(
            &origin(),
            "BatchDeleteImage",
            "r/x@sha256:ab",
            "KmsError",
            "key disabled",
            None,
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
