//! The one place where Scaleway answers are read: [`classify`], the table of this crate, and
//! the constructors of the kit's [`ControlPlaneError`] for API answers and namespace states
//! (which becomes a [`mirror_core::Error`] through the kit's one mapping).
//!
//! Scaleway's APIs answer errors with a JSON body carrying a human `message` and, for the
//! standard errors, a `type` (`not_found`, `permissions_denied`, `denied_authentication`,
//! `quotas_exceeded`, `invalid_arguments`, `transient_state`, `too_many_requests`…) and the
//! `resource` / `resource_id` concerned. [`classify`] reads the type first and falls back on
//! the HTTP status (`401`, `403`, `404`, `409`, `429`, `5xx`) when there is none.
//!
//! | Scaleway | core |
//! |---|---|
//! | `not_found`, 404 | `NotFound` (`repository` for namespaces and images, `manifest` for tags) |
//! | `denied_authentication`, 401 | `Unauthorized` |
//! | `permissions_denied`, 403, `quotas_exceeded`, `locked`, a locked namespace | `Denied` |
//! | `too_many_requests`, 429 | `RateLimited` (with `Retry-After`) |
//! | `invalid_arguments` on `CreateNamespace` | `InvalidName` |
//! | unreachable, timeouts | `Connect` |
//! | 409, 5xx, a namespace name taken by another customer | `Http` with the status and Scaleway's message |
//! | a namespace in `error` or `deleting`, not ready in time | `Refused` with the status |
//!
//! Every error carries the registry label (`scaleway:<registry host>`), the API operation,
//! and the namespace, image or `repository@digest` it was about. The secret key never appears
//! in any error: it is only ever sent in the `X-Auth-Token` header.

use std::time::Duration;

use mirror_core::provider::{self, ControlPlaneError, Origin};

/// The error of this crate's calls: the kit's control-plane error.
pub type Error = ControlPlaneError;

/// The result type of this crate's internal calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a Scaleway error reads. The one table of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The resource does not exist (`not_found`, HTTP 404).
    NotFound,
    /// The resource exists already (`already_exists`, `conflict`, HTTP 409).
    AlreadyExists,
    /// The secret key is missing, unknown or expired (`denied_authentication`, HTTP 401).
    Unauthorized,
    /// The key is known but may not do this (`permissions_denied`, HTTP 403).
    Denied,
    /// A quota is reached (`quotas_exceeded`).
    QuotaExceeded,
    /// The resource is locked by Scaleway (`locked`, `resource_locked`).
    Locked,
    /// The resource is in a transient state; try again later (`transient_state`).
    TransientState,
    /// Slow down (`too_many_requests`, HTTP 429).
    RateLimited,
    /// The request is invalid (`invalid_arguments`, `precondition_failed`, HTTP 400/422).
    Invalid,
    /// Scaleway failed (HTTP 5xx).
    Server,
    /// Anything else.
    Other,
}

/// Classifies an error answer by its `type`, else its HTTP status.
pub fn classify(status: u16, error_type: &str) -> Kind {
    match error_type {
        "not_found" | "unknown_resource" => Kind::NotFound,
        "already_exists" | "conflict" => Kind::AlreadyExists,
        "denied_authentication" | "authentication_required" => Kind::Unauthorized,
        "permissions_denied" | "forbidden" => Kind::Denied,
        "quotas_exceeded" => Kind::QuotaExceeded,
        "locked" | "resource_locked" => Kind::Locked,
        "transient_state" => Kind::TransientState,
        "too_many_requests" => Kind::RateLimited,
        "invalid_arguments" | "invalid_request_error" | "precondition_failed" => Kind::Invalid,
        _ => match status {
            404 => Kind::NotFound,
            409 => Kind::AlreadyExists,
            401 => Kind::Unauthorized,
            403 => Kind::Denied,
            429 => Kind::RateLimited,
            400 | 422 => Kind::Invalid,
            408 | 500..=599 => Kind::Server,
            _ => Kind::Other,
        },
    }
}

impl Kind {
    /// The kit's kind for this one; `what` names what a not-found answer is about.
    pub fn to_kit(self, what: &'static str) -> provider::Kind {
        match self {
            Kind::NotFound => provider::Kind::NotFound(what),
            Kind::AlreadyExists => provider::Kind::AlreadyExists,
            Kind::Unauthorized => provider::Kind::Unauthenticated,
            Kind::Denied | Kind::QuotaExceeded | Kind::Locked => provider::Kind::Denied,
            Kind::TransientState => provider::Kind::Conflict,
            Kind::RateLimited => provider::Kind::RateLimited,
            Kind::Invalid => provider::Kind::Invalid,
            Kind::Server => provider::Kind::Unavailable,
            Kind::Other => provider::Kind::Other,
        }
    }
}

/// How `e` reads in this crate's table ([`Kind::Other`] for errors that are not API answers).
pub fn kind(e: &Error) -> Kind {
    match e.status {
        Some(status) => classify(status, e.code().unwrap_or("")),
        None => Kind::Other,
    }
}

/// What a not-found answer of `operation` is about: tags are manifests, the rest
/// (namespaces, images) are repositories.
fn what_of(operation: &str) -> &'static str {
    if operation.contains("Tag") {
        "manifest"
    } else {
        "repository"
    }
}

/// An error answer of the registry API: HTTP `status`, Scaleway's `error_type` (empty when
/// the body had none), its message, the `Retry-After` of a 429.
pub fn api(
    origin: &Origin,
    operation: &'static str,
    target: &str,
    status: u16,
    error_type: &str,
    message: impl Into<String>,
    retry_after: Option<Duration>,
) -> Error {
    let local = classify(status, error_type);
    let kit = match local {
        Kind::Invalid if operation == "CreateNamespace" => provider::Kind::InvalidName,
        other => other.to_kit(what_of(operation)),
    };
    let mut e = origin
        .error(operation, target, kit, message)
        .with_status(status)
        .with_code(error_type)
        .with_retry_after(retry_after);
    if kit == provider::Kind::InvalidName {
        e.message = format!("Scaleway refused the namespace name: {}", e.message);
    }
    e
}

/// A namespace is in a state it cannot be used in (`error`, `locked`, `deleting`).
pub fn namespace_state(origin: &Origin, namespace: &str, status: &str, message: &str) -> Error {
    if status == "locked" {
        return origin.error(
            "GetNamespace",
            namespace,
            provider::Kind::Denied,
            format!("namespace is locked: {message}"),
        );
    }
    origin
        .error(
            "GetNamespace",
            namespace,
            provider::Kind::Conflict,
            format!("Scaleway namespace {namespace} is {status}: {message}"),
        )
        .with_code(status)
}

/// A namespace did not become ready in time.
pub fn namespace_timeout(
    origin: &Origin,
    namespace: &str,
    status: &str,
    waited: Duration,
) -> Error {
    origin
        .error(
            "GetNamespace",
            namespace,
            provider::Kind::Other,
            format!(
                "Scaleway namespace {namespace} is still {status} after {waited:?}; it was not ready in time"
            ),
        )
        .with_code("timeout")
}

/// Creating a namespace answered "already exists" but the project has no namespace of that
/// name: another project or customer owns it (names are unique per region across all
/// customers).
pub fn namespace_taken(origin: &Origin, namespace: &str) -> Error {
    origin
        .error(
            "CreateNamespace",
            namespace,
            provider::Kind::Conflict,
            format!(
                "the Scaleway namespace name {namespace} is taken by another project or \
                 organization (namespace names are unique per region across all customers); \
                 choose another namespace prefix"
            ),
        )
        .with_status(409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, error_type: &str, operation: &'static str) -> Error {
        super::api(
            &Origin::new("scaleway", "rg.fr-par.scw.cloud"),
            operation,
            "mirror-prod-0a1b2c3d/svc-api",
            status,
            error_type,
            "nope",
            Some(Duration::from_secs(2)),
        )
    }

    #[test]
    fn types_win_over_statuses() {
        assert_eq!(classify(404, ""), Kind::NotFound);
        assert_eq!(classify(400, "not_found"), Kind::NotFound);
        assert_eq!(classify(409, ""), Kind::AlreadyExists);
        assert_eq!(classify(409, "transient_state"), Kind::TransientState);
        assert_eq!(classify(403, "quotas_exceeded"), Kind::QuotaExceeded);
        assert_eq!(classify(401, ""), Kind::Unauthorized);
        assert_eq!(classify(429, ""), Kind::RateLimited);
        assert_eq!(classify(503, ""), Kind::Server);
        assert_eq!(classify(418, ""), Kind::Other);
    }

    #[test]
    fn answers_map_to_core_variants_naming_the_target() {
        let core: mirror_core::Error = api(404, "not_found", "ListImages").into();
        match &core {
            mirror_core::Error::NotFound { what, location } => {
                assert_eq!(*what, "repository");
                assert_eq!(
                    location,
                    "scaleway:rg.fr-par.scw.cloud/mirror-prod-0a1b2c3d/svc-api"
                );
            }
            other => panic!("{other:?}"),
        }
        let core: mirror_core::Error = api(404, "", "DeleteTag").into();
        assert!(matches!(
            core,
            mirror_core::Error::NotFound {
                what: "manifest",
                ..
            }
        ));
        let core: mirror_core::Error = api(401, "denied_authentication", "ListTags").into();
        assert!(
            matches!(&core, mirror_core::Error::Unauthorized { registry, message }
                if registry == "scaleway:rg.fr-par.scw.cloud" && message.contains("ListTags")),
            "{core:?}"
        );
        for (status, t) in [
            (403, "permissions_denied"),
            (403, ""),
            (403, "quotas_exceeded"),
        ] {
            let core: mirror_core::Error = api(status, t, "CreateNamespace").into();
            assert!(
                matches!(core, mirror_core::Error::Denied { .. }),
                "{core:?}"
            );
        }
        let core: mirror_core::Error = api(429, "", "ListTags").into();
        assert!(matches!(
            core,
            mirror_core::Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        let core: mirror_core::Error = api(400, "invalid_arguments", "CreateNamespace").into();
        assert!(
            matches!(core, mirror_core::Error::InvalidName { .. }),
            "{core:?}"
        );
        let core: mirror_core::Error = api(409, "", "DeleteTag").into();
        assert!(
            matches!(core, mirror_core::Error::Http { status: 409, .. }),
            "{core:?}"
        );
        let core: mirror_core::Error = api(502, "", "GetNamespace").into();
        match core {
            mirror_core::Error::Http {
                status,
                message,
                location,
                operation,
                ..
            } => {
                assert_eq!(status, 502);
                assert_eq!(message, "nope");
                assert_eq!(operation, "GetNamespace");
                assert_eq!(location, "mirror-prod-0a1b2c3d/svc-api");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn namespace_states_map_by_status() {
        let o = Origin::new("scaleway", "h");
        let locked = namespace_state(
            &o,
            "mirror-x-00000000",
            "locked",
            "locked by trust and safety",
        );
        assert!(matches!(
            mirror_core::Error::from(locked),
            mirror_core::Error::Denied { .. }
        ));
        let taken = namespace_taken(&o, "mirror-x-00000000");
        let text = mirror_core::Error::from(taken).to_string();
        assert!(text.contains("409") && text.contains("another"), "{text}");
        let transport = o.transport("ListNamespaces", "x", "connection refused");
        assert!(matches!(
            mirror_core::Error::from(transport),
            mirror_core::Error::Connect { .. }
        ));
        let broken = namespace_state(&o, "mirror-x-00000000", "error", "");
        assert!(
            matches!(
                mirror_core::Error::from(broken),
                mirror_core::Error::Refused { .. }
            ),
            "a namespace state is not an HTTP status"
        );
    }
}
