//! The one place where Artifact Registry answers are read: [`TABLE`] (Google canonical
//! statuses and HTTP statuses to the kit's [`Kind`]s), the [`DIALECT`] of the kit's REST
//! client (`{"error": {"code", "message", "status"}}`, the status from the HTTP status when
//! the body has none), and the errors of long-running operations (a `google.rpc.Status`).
//! A `NOT_FOUND` is about a manifest when the target names a digest, else a repository.

use mirror_core::kit::provider::{ControlPlaneError, ErrorTable, Kind, Origin, RestDialect};

use crate::PROVIDER;

/// The error of this crate's calls: the kit's control-plane error.
pub type Error = ControlPlaneError;

/// The result type of this crate's internal calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Google's canonical statuses and HTTP statuses.
pub const TABLE: ErrorTable = ErrorTable {
    codes: &[
        (Kind::NotFound("repository"), "NOT_FOUND"),
        (Kind::AlreadyExists, "ALREADY_EXISTS"),
        (Kind::Denied, "PERMISSION_DENIED"),
        (Kind::Unauthenticated, "UNAUTHENTICATED"),
        (Kind::RateLimited, "RESOURCE_EXHAUSTED"),
        (Kind::Conflict, "FAILED_PRECONDITION"),
        (Kind::Unavailable, "ABORTED UNAVAILABLE INTERNAL"),
    ],
    statuses: &[
        (Kind::NotFound("repository"), "404"),
        (Kind::AlreadyExists, "409"),
        (Kind::Denied, "403"),
        (Kind::Unauthenticated, "401"),
        (Kind::RateLimited, "429"),
        (Kind::Unavailable, "500-999"),
    ],
};

/// How the kit's REST client reads Artifact Registry's answers.
pub const DIALECT: RestDialect = RestDialect {
    read_error,
    classify,
};

/// The kind of a status `code` of `target`: the table's, a `NOT_FOUND` of a digest being a
/// manifest.
pub fn classify(_operation: &str, target: &str, http: u16, code: &str) -> Kind {
    match TABLE.kind(code, Some(http)) {
        Kind::NotFound(_) if target.contains('@') => Kind::NotFound("manifest"),
        k => k,
    }
}

/// The canonical status and the message of an error answer.
fn read_error(http: u16, body: &[u8]) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct Body {
        error: Option<Inner>,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Inner {
        message: String,
        status: String,
    }
    let fallback = canonical_of_http(http).to_string();
    match serde_json::from_slice::<Body>(body)
        .ok()
        .and_then(|b| b.error)
    {
        Some(e) => match canonical(&e.status) {
            Some(c) => (c.to_string(), e.message),
            None if e.status.is_empty() => (fallback, e.message),
            None => (fallback, format!("{}: {}", e.status, e.message)),
        },
        None => (
            fallback,
            String::from_utf8_lossy(body).chars().take(300).collect(),
        ),
    }
}

/// The canonical status Google uses for an HTTP status, for answers without one.
fn canonical_of_http(status: u16) -> &'static str {
    match status {
        409 => "ABORTED",
        500 => "INTERNAL",
        400 | 401 | 403 | 404 | 429 | 501 | 503 | 504 => CODES
            .iter()
            .find(|(_, h)| *h == status)
            .map_or("UNKNOWN", |(c, _)| c),
        s if s >= 500 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

/// The canonical status names by `google.rpc.Code` number, with the HTTP status Google maps
/// each to (operation errors carry none).
const CODES: [(&str, u16); 17] = [
    ("OK", 200),
    ("CANCELLED", 499),
    ("UNKNOWN", 500),
    ("INVALID_ARGUMENT", 400),
    ("DEADLINE_EXCEEDED", 504),
    ("NOT_FOUND", 404),
    ("ALREADY_EXISTS", 409),
    ("PERMISSION_DENIED", 403),
    ("RESOURCE_EXHAUSTED", 429),
    ("FAILED_PRECONDITION", 400),
    ("ABORTED", 409),
    ("OUT_OF_RANGE", 400),
    ("UNIMPLEMENTED", 501),
    ("INTERNAL", 500),
    ("UNAVAILABLE", 503),
    ("DATA_LOSS", 500),
    ("UNAUTHENTICATED", 401),
];

/// The canonical name of a `google.rpc.Code` number (as operations report errors).
pub fn code_name(code: i64) -> &'static str {
    let found = usize::try_from(code).ok().and_then(|c| CODES.get(c));
    found.map_or("UNKNOWN", |(name, _)| name)
}

/// The canonical status name of `name` (`None` for names Google does not define).
pub fn canonical(name: &str) -> Option<&'static str> {
    CODES.iter().map(|(c, _)| *c).find(|c| *c == name)
}

/// A long-running operation `name` (started by `operation` on `target`) ended with `status`,
/// or did not end in time (`DEADLINE_EXCEEDED`). A failed operation is not retried as a call
/// would be: unavailability reads as [`Kind::Other`] (an `Http` error with the status Google
/// maps it to); `RESOURCE_EXHAUSTED` stays a rate limit.
pub fn operation(
    origin: &Origin,
    operation: &'static str,
    target: &str,
    name: &str,
    status: &'static str,
    message: &str,
) -> Error {
    let kind = match classify(operation, target, 200, status) {
        Kind::Unavailable => Kind::Other,
        k => k,
    };
    let http = CODES
        .iter()
        .find(|(c, _)| *c == status)
        .map_or(500, |(_, h)| *h);
    let message = format!("operation {name}: {message}");
    let e = origin.error(operation, target, kind, message);
    e.with_status(http).with_code(status)
}

/// Errors made before the registry label is known.
const UNKNOWN: Origin = Origin {
    provider: PROVIDER,
    registry: String::new(),
};

/// The setting `key` is invalid (the registry label is not known yet).
pub fn config(key: &str, message: impl Into<String>) -> Error {
    UNKNOWN.config(key, message)
}

/// No token could be had: `reason` (the token cache names the registry).
pub fn credentials(reason: impl Into<String>) -> Error {
    UNKNOWN.credentials(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn api(status: &'static str, http: u16, target: &str) -> Error {
        let op = "dockerImages.list";
        Origin::new(PROVIDER, "europe-west1-docker.pkg.dev")
            .error(op, target, classify(op, target, http, status), "nope")
            .with_status(http)
            .with_code(status)
            .with_retry_after(Some(Duration::from_secs(7)))
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
        assert_eq!(TABLE.kind("", Some(409)), Kind::AlreadyExists);
        assert_eq!(TABLE.kind("ABORTED", Some(409)), Kind::Unavailable);
    }
}
