//! The one place where Artifact Registry answers are read: [`classify`], the table of this
//! crate, and the constructors of the kit's [`ControlPlaneError`] for API answers and
//! long-running operations (which becomes a [`mirror_core::Error`] through the kit's one
//! mapping).
//!
//! Artifact Registry answers errors in the Google API format,
//! `{"error": {"code": 404, "message": "…", "status": "NOT_FOUND"}}`, and long-running
//! operations end with a `google.rpc.Status` (`{"code": 5, "message": "…"}`). Both are read
//! into a canonical status name (`NOT_FOUND`, `ALREADY_EXISTS`…), the error's code, and
//! classified by [`classify`]. A `NOT_FOUND` is about a manifest when the target names a
//! digest (`repository@sha256:…`), else about a repository.

use std::time::Duration;

use mirror_core::provider::{self, ControlPlaneError, Origin};

use crate::PROVIDER;

/// The error of this crate's calls: the kit's control-plane error.
pub type Error = ControlPlaneError;

/// The result type of this crate's internal calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

impl Kind {
    /// The kit's kind for this one; `what` names what a `NOT_FOUND` is about.
    pub fn to_kit(self, what: &'static str) -> provider::Kind {
        match self {
            Kind::NotFound => provider::Kind::NotFound(what),
            Kind::AlreadyExists => provider::Kind::AlreadyExists,
            Kind::Denied => provider::Kind::Denied,
            Kind::Unauthenticated => provider::Kind::Unauthenticated,
            Kind::RateLimited => provider::Kind::RateLimited,
            Kind::FailedPrecondition => provider::Kind::Conflict,
            Kind::Aborted | Kind::Unavailable => provider::Kind::Unavailable,
            Kind::Other => provider::Kind::Other,
        }
    }
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

/// How `e` reads in this crate's table ([`Kind::Other`] for errors without a status).
pub fn kind(e: &Error) -> Kind {
    match e.code() {
        Some(status) => classify(status, e.status),
        None => match e.kind() {
            provider::Kind::Transport => Kind::Unavailable,
            _ => Kind::Other,
        },
    }
}

fn what(target: &str) -> &'static str {
    if target.contains('@') {
        "manifest"
    } else {
        "repository"
    }
}

/// An error answer of the API: `status` is the canonical status name (for answers without
/// one, the name Google uses for the HTTP status).
pub fn api(
    origin: &Origin,
    operation: &'static str,
    target: &str,
    http_status: u16,
    status: &str,
    message: impl Into<String>,
    retry_after: Option<Duration>,
) -> Error {
    origin
        .error(
            operation,
            target,
            classify(status, Some(http_status)).to_kit(what(target)),
            message,
        )
        .with_status(http_status)
        .with_code(status)
        .with_retry_after(retry_after)
}

/// A long-running operation `name` (started by `operation` on `target`) ended with `status`,
/// or did not end in time (`DEADLINE_EXCEEDED`). A failed operation is not retried as a call
/// would be: `UNAVAILABLE`, `INTERNAL` and `ABORTED` read as [`provider::Kind::Other`] (an
/// `Http` error with the status Google maps them to); `RESOURCE_EXHAUSTED` stays a rate
/// limit.
pub fn operation(
    origin: &Origin,
    operation: &'static str,
    target: &str,
    name: &str,
    status: &'static str,
    message: &str,
) -> Error {
    let kind = match classify(status, None).to_kit(what(target)) {
        provider::Kind::Unavailable => provider::Kind::Other,
        k => k,
    };
    origin
        .error(
            operation,
            target,
            kind,
            format!("operation {name}: {message}"),
        )
        .with_status(http_of(status))
        .with_code(status)
}

/// A configuration error (the registry label is not known yet).
pub fn config(message: impl Into<String>) -> Error {
    origin_unknown().config(message)
}

/// No token could be had: `reason` (the token cache names the registry).
pub fn credentials(reason: impl Into<String>) -> Error {
    origin_unknown().credentials(reason)
}

fn origin_unknown() -> Origin {
    Origin {
        provider: PROVIDER,
        registry: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: &'static str, http: u16, target: &str) -> Error {
        super::api(
            &Origin::new(PROVIDER, "europe-west1-docker.pkg.dev"),
            "dockerImages.list",
            target,
            http,
            status,
            "nope",
            Some(Duration::from_secs(7)),
        )
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
        let op = |code: i64| {
            operation(
                &Origin::new(PROVIDER, "h"),
                "versions.delete",
                "p/r/image@sha256:ab",
                "projects/p/locations/l/operations/1",
                code_name(code),
                "failed",
            )
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
