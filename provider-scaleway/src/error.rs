//! The one place where Scaleway answers are read: [`TABLE`] (error `type`s and HTTP statuses
//! to the kit's [`Kind`]s; a not-found of the tag calls is about a manifest, an invalid
//! argument of `CreateNamespace` an invalid name), the [`DIALECT`] of the kit's REST client
//! (a JSON body with a `message`, a `type`, the `resource` concerned), and the errors of
//! namespace states. The secret key is only ever sent as `X-Auth-Token`: no error holds it.

use std::time::Duration;

use mirror_core::kit::provider::{ControlPlaneError, ErrorTable, Kind, Origin, RestDialect};
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
        (Kind::Unauthenticated, "denied_authentication"),
        (Kind::Unauthenticated, "authentication_required"),
        (Kind::Denied, "permissions_denied forbidden"),
        (Kind::Denied, "quotas_exceeded locked resource_locked"),
        (Kind::Conflict, "transient_state"),
        (Kind::RateLimited, "too_many_requests"),
        (Kind::Invalid, "invalid_arguments precondition_failed"),
        (Kind::Invalid, "invalid_request_error"),
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

/// What an error body says: its `message` (else `fallback`), the resource concerned, the
/// help message and the details.
fn describe(body: &Value, fallback: &str) -> String {
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("");
    let mut out = match text("message") {
        "" => fallback.to_string(),
        m => m.to_string(),
    };
    match (text("resource"), text("resource_id")) {
        ("", _) => {}
        (r, "") => out.push_str(&format!(" (resource {r})")),
        (r, id) => out.push_str(&format!(" (resource {r} {id})")),
    }
    if !text("help_message").is_empty() {
        out.push_str(&format!(": {}", text("help_message")));
    }
    match body.get("details") {
        Some(d) if !d.is_null() && d.as_array().is_none_or(|a| !a.is_empty()) => {
            out.push_str(&format!(" {d}"))
        }
        _ => {}
    }
    out
}

/// The `type` and the described message of an error body.
fn read_error(status: u16, body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    let reason = reqwest::StatusCode::from_u16(status).ok();
    let reason = reason.and_then(|s| s.canonical_reason());
    let fallback = match text.trim() {
        "" => reason.unwrap_or("no message").to_string(),
        _ => text,
    };
    let code = v.get("type").and_then(Value::as_str).unwrap_or_default();
    (code.to_string(), describe(&v, &fallback))
}

/// A namespace is in a state it cannot be used in (`error`, `locked`, `deleting`).
pub fn namespace_state(origin: &Origin, namespace: &str, status: &str, message: &str) -> Error {
    if status == "locked" {
        let message = format!("namespace is locked: {message}");
        return origin.error("GetNamespace", namespace, Kind::Denied, message);
    }
    let message = format!("Scaleway namespace {namespace} is {status}: {message}");
    let e = origin.error("GetNamespace", namespace, Kind::Conflict, message);
    e.with_code(status)
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
    let e = origin.error("GetNamespace", namespace, Kind::Other, message);
    e.with_code("timeout")
}

/// Creating a namespace answered "already exists" but the project has no namespace of that
/// name: another customer owns it (names are unique per region).
pub fn namespace_taken(origin: &Origin, namespace: &str) -> Error {
    let message = format!(
        "the Scaleway namespace name {namespace} is taken by another project or organization \
         (namespace names are unique per region across all customers); choose another \
         namespace prefix"
    );
    let e = origin.error("CreateNamespace", namespace, Kind::Conflict, message);
    e.with_status(409)
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
        let body = br#"{"message":"resource is not found","type":"not_found","resource":"namespace","resource_id":"42"}"#;
        let (error_type, described) = read_error(404, body);
        assert_eq!(error_type, "not_found");
        assert_eq!(described, "resource is not found (resource namespace 42)");
        let b: Value =
            serde_json::from_str(r#"{"message":null,"details":[{"argument_name":"name"}]}"#)
                .unwrap();
        assert!(describe(&b, "fallback").starts_with("fallback "));
    }
}
