//! The one place where Scaleway answers are read: [`TABLE`] (error `type`s and HTTP statuses
//! to the kit's [`Kind`]s), the [`DIALECT`] of the kit's REST client, and the errors of
//! namespace states.
//!
//! Scaleway answers errors with a JSON body carrying a human `message` and, for the standard
//! errors, a `type` (`not_found`, `permissions_denied`, `denied_authentication`,
//! `quotas_exceeded`, `invalid_arguments`, `transient_state`, `too_many_requests`…) and the
//! `resource` / `resource_id` concerned. The type is read first, the HTTP status when there
//! is none. A not-found is about a manifest for the tag calls, else about a repository; an
//! invalid argument of `CreateNamespace` is an invalid name. The secret key never appears in
//! any error: it is only ever sent in the `X-Auth-Token` header.

use std::time::Duration;

use mirror_core::provider::{ControlPlaneError, ErrorTable, Kind, Origin, RestDialect};
use serde::Deserialize;
use serde_json::Value;

/// The error of this crate's calls: the kit's control-plane error.
pub type Error = ControlPlaneError;

/// The result type of this crate's internal calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Scaleway's error types and HTTP statuses.
pub const TABLE: ErrorTable = ErrorTable {
    codes: &[
        (Kind::NotFound("repository"), "not_found unknown_resource"),
        (Kind::AlreadyExists, "already_exists conflict"),
        (
            Kind::Unauthenticated,
            "denied_authentication authentication_required",
        ),
        (
            Kind::Denied,
            "permissions_denied forbidden quotas_exceeded locked resource_locked",
        ),
        (Kind::Conflict, "transient_state"),
        (Kind::RateLimited, "too_many_requests"),
        (
            Kind::Invalid,
            "invalid_arguments invalid_request_error precondition_failed",
        ),
    ],
    statuses: &[
        (Kind::NotFound("repository"), "404"),
        (Kind::AlreadyExists, "409"),
        (Kind::Unauthenticated, "401"),
        (Kind::Denied, "403"),
        (Kind::RateLimited, "429"),
        (Kind::Invalid, "400 422"),
        (Kind::Unavailable, "408 500-599"),
    ],
};

/// How the kit's REST client reads Scaleway's answers.
pub const DIALECT: RestDialect = RestDialect {
    read_error,
    classify,
};

/// The kind of an error answer to `operation` (see the module docs).
pub fn classify(operation: &str, _target: &str, status: u16, error_type: &str) -> Kind {
    match TABLE.kind(error_type, Some(status)) {
        Kind::NotFound(_) if operation.contains("Tag") => Kind::NotFound("manifest"),
        Kind::Invalid if operation == "CreateNamespace" => Kind::InvalidName,
        k => k,
    }
}

/// A `null` read as the default.
fn null_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> std::result::Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An error answer's body (`null`s read as empty).
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default, deserialize_with = "null_default")]
    message: String,
    #[serde(default, rename = "type", deserialize_with = "null_default")]
    error_type: String,
    #[serde(default, deserialize_with = "null_default")]
    resource: String,
    #[serde(default, deserialize_with = "null_default")]
    resource_id: String,
    #[serde(default, deserialize_with = "null_default")]
    help_message: String,
    #[serde(default)]
    details: Option<Value>,
}

impl ErrorBody {
    fn describe(&self, fallback: &str) -> String {
        let mut out = match self.message.is_empty() {
            true => fallback.to_string(),
            false => self.message.clone(),
        };
        if !self.resource.is_empty() {
            out.push_str(&format!(" (resource {}", self.resource));
            if !self.resource_id.is_empty() {
                out.push_str(&format!(" {}", self.resource_id));
            }
            out.push(')');
        }
        if !self.help_message.is_empty() {
            out.push_str(&format!(": {}", self.help_message));
        }
        match &self.details {
            Some(d) if !d.is_null() && d.as_array().is_none_or(|a| !a.is_empty()) => {
                out.push_str(&format!(" {d}"))
            }
            _ => {}
        }
        out
    }
}

/// The `type` and the described message of an error body.
fn read_error(status: u16, body: &[u8]) -> (String, String) {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    let fallback = match text.trim().is_empty() {
        true => reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no message")
            .to_string(),
        false => text,
    };
    (parsed.error_type.clone(), parsed.describe(&fallback))
}

/// A namespace is in a state it cannot be used in (`error`, `locked`, `deleting`).
pub fn namespace_state(origin: &Origin, namespace: &str, status: &str, message: &str) -> Error {
    if status == "locked" {
        let message = format!("namespace is locked: {message}");
        return origin.error("GetNamespace", namespace, Kind::Denied, message);
    }
    let message = format!("Scaleway namespace {namespace} is {status}: {message}");
    origin
        .error("GetNamespace", namespace, Kind::Conflict, message)
        .with_code(status)
}

/// A namespace did not become ready in time.
pub fn namespace_timeout(
    origin: &Origin,
    namespace: &str,
    status: &str,
    waited: Duration,
) -> Error {
    let message = format!(
        "Scaleway namespace {namespace} is still {status} after {waited:?}; it was not ready in time"
    );
    origin
        .error("GetNamespace", namespace, Kind::Other, message)
        .with_code("timeout")
}

/// Creating a namespace answered "already exists" but the project has no namespace of that
/// name: another project or customer owns it (names are unique per region).
pub fn namespace_taken(origin: &Origin, namespace: &str) -> Error {
    let message = format!(
        "the Scaleway namespace name {namespace} is taken by another project or organization \
         (namespace names are unique per region across all customers); choose another \
         namespace prefix"
    );
    origin
        .error("CreateNamespace", namespace, Kind::Conflict, message)
        .with_status(409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, error_type: &str, operation: &'static str) -> Error {
        let target = "mirror-prod-0a1b2c3d/svc-api";
        Origin::new("scaleway", "rg.fr-par.scw.cloud")
            .error(
                operation,
                target,
                classify(operation, target, status, error_type),
                "nope",
            )
            .with_status(status)
            .with_code(error_type)
            .with_retry_after(Some(Duration::from_secs(2)))
    }

    fn kind(status: u16, error_type: &str) -> Kind {
        TABLE.kind(error_type, Some(status))
    }

    #[test]
    fn types_win_over_statuses() {
        assert_eq!(kind(404, ""), Kind::NotFound("repository"));
        assert_eq!(kind(400, "not_found"), Kind::NotFound("repository"));
        assert_eq!(kind(409, ""), Kind::AlreadyExists);
        assert_eq!(kind(409, "transient_state"), Kind::Conflict);
        assert_eq!(kind(403, "quotas_exceeded"), Kind::Denied);
        assert_eq!(kind(401, ""), Kind::Unauthenticated);
        assert_eq!(kind(429, ""), Kind::RateLimited);
        assert_eq!(kind(503, ""), Kind::Unavailable);
        assert_eq!(kind(418, ""), Kind::Other);
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

    #[test]
    fn error_bodies_are_described() {
        let b: ErrorBody = serde_json::from_str(
            r#"{"message":"resource is not found","type":"not_found","resource":"namespace","resource_id":"42"}"#,
        )
        .unwrap();
        assert_eq!(b.error_type, "not_found");
        assert_eq!(
            b.describe("x"),
            "resource is not found (resource namespace 42)"
        );
        let b: ErrorBody =
            serde_json::from_str(r#"{"message":null,"details":[{"argument_name":"name"}]}"#)
                .unwrap();
        assert!(b.describe("fallback").starts_with("fallback "));
    }
}
