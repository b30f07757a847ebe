//! The errors of this crate, and their mapping to [`mirror_core::Error`] — the one place where
//! Scaleway answers are interpreted.
//!
//! Scaleway's APIs answer errors with a JSON body carrying a human `message` and, for the
//! standard errors, a `type` (`not_found`, `permissions_denied`, `denied_authentication`,
//! `quotas_exceeded`, `invalid_arguments`, `transient_state`, `too_many_requests`…) and the
//! `resource` / `resource_id` concerned. [`classify`] reads the type first and falls back on
//! the HTTP status (`401`, `403`, `404`, `409`, `429`, `5xx`) when there is none.
//!
//! Every error carries the registry label (`scaleway:<registry host>`, so a core error read
//! in a log still says which provider and registry it came from), the API operation, and the
//! namespace, image or `repository@digest` it was about. The secret key never appears in any
//! error: it is only ever sent in the `X-Auth-Token` header.

use std::time::Duration;

use mirror_core::error::BoxError;

use crate::PROVIDER;

/// The result type of this crate's internal calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to Scaleway.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The registry API answered an error status.
    #[error("{0}")]
    Api(Box<ApiError>),

    /// The API could not be reached, or the call timed out.
    #[error(
        "{registry}: cannot reach the Scaleway registry API ({operation} on {target}): {source}"
    )]
    Transport {
        /// `scaleway:<registry host>`.
        registry: String,
        /// The API operation.
        operation: &'static str,
        /// What the call was about.
        target: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },

    /// The API answered something this crate does not understand.
    #[error("{registry}: unexpected answer to Scaleway {operation} on {target}: {reason}")]
    Protocol {
        /// `scaleway:<registry host>`.
        registry: String,
        /// The API operation.
        operation: &'static str,
        /// What the call was about.
        target: String,
        /// What is wrong with the answer.
        reason: String,
    },

    /// A namespace is in a state it cannot be used in (`error`, `locked`, `deleting`).
    #[error("{registry}: Scaleway namespace {namespace} is {status}: {message}")]
    NamespaceState {
        /// `scaleway:<registry host>`.
        registry: String,
        /// The namespace name.
        namespace: String,
        /// Its status.
        status: String,
        /// Its status message, or what to do.
        message: String,
    },

    /// A namespace did not become ready in time.
    #[error("{registry}: Scaleway namespace {namespace} is still {status} after {waited:?}; it was not ready in time")]
    NamespaceTimeout {
        /// `scaleway:<registry host>`.
        registry: String,
        /// The namespace name.
        namespace: String,
        /// Its last status.
        status: String,
        /// How long this crate waited.
        waited: Duration,
    },

    /// Creating a namespace answered "already exists" but the project has no namespace of
    /// that name: another project or customer owns it (names are unique per region across
    /// all customers).
    #[error("{registry}: the Scaleway namespace name {namespace} is taken by another project or organization (namespace names are unique per region across all customers); choose another namespace prefix")]
    NamespaceTaken {
        /// `scaleway:<registry host>`.
        registry: String,
        /// The namespace name.
        namespace: String,
    },

    /// The configuration is invalid or incomplete.
    #[error("invalid Scaleway configuration: {0}")]
    Config(String),
}

/// An error answer of the registry API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{registry}: Scaleway {operation} on {target} failed with HTTP {status} ({error_type}): {message}")]
pub struct ApiError {
    /// `scaleway:<registry host>`.
    pub registry: String,
    /// The API operation (`CreateNamespace`, `ListTags`…).
    pub operation: &'static str,
    /// The namespace, image, tag or `repository@digest` the call was about.
    pub target: String,
    /// The HTTP status.
    pub status: u16,
    /// Scaleway's error `type` (empty when the body had none).
    pub error_type: String,
    /// Scaleway's message (with `help_message` and details when given).
    pub message: String,
    /// The `Retry-After` of a 429, if any.
    pub retry_after: Option<Duration>,
}

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
            500..=599 => Kind::Server,
            _ => Kind::Other,
        },
    }
}

impl Error {
    /// How the error reads ([`Kind::Other`] for errors that are not API answers).
    pub fn kind(&self) -> Kind {
        match self {
            Error::Api(a) => classify(a.status, &a.error_type),
            _ => Kind::Other,
        }
    }

    /// The core error this one maps to (the transport source reduced to its text).
    fn to_core(&self) -> mirror_core::Error {
        match self {
            Error::Api(a) => {
                let ApiError {
                    registry,
                    operation,
                    target,
                    status,
                    error_type,
                    message,
                    retry_after,
                } = a.as_ref();
                let detail = if error_type.is_empty() {
                    message.clone()
                } else {
                    format!("{error_type}: {message}")
                };
                match self.kind() {
                    Kind::NotFound => mirror_core::Error::NotFound {
                        what: what_of(operation),
                        location: location(registry, target),
                    },
                    Kind::Unauthorized => mirror_core::Error::Unauthorized {
                        registry: registry.clone(),
                        message: format!("{operation} on {target}: {detail}"),
                    },
                    Kind::Denied | Kind::QuotaExceeded | Kind::Locked => {
                        mirror_core::Error::Denied {
                            registry: registry.clone(),
                            location: location(registry, target),
                            message: format!("{operation}: {detail}"),
                        }
                    }
                    Kind::RateLimited => mirror_core::Error::RateLimited {
                        registry: registry.clone(),
                        retry_after: *retry_after,
                    },
                    Kind::Invalid if *operation == "CreateNamespace" => {
                        mirror_core::Error::InvalidName {
                            name: target.clone(),
                            reason: format!("Scaleway refused the namespace name: {detail}"),
                        }
                    }
                    _ => mirror_core::Error::Http {
                        registry: registry.clone(),
                        operation: operation.to_string(),
                        location: target.clone(),
                        status: *status,
                        message: detail,
                    },
                }
            }
            Error::Transport {
                registry,
                operation,
                target,
                source,
            } => mirror_core::Error::Connect {
                registry: registry.clone(),
                operation: operation.to_string(),
                location: target.clone(),
                source: source.to_string().into(),
            },
            Error::Protocol {
                registry,
                operation,
                target,
                reason,
            } => mirror_core::Error::Http {
                registry: registry.clone(),
                operation: operation.to_string(),
                location: target.clone(),
                status: 200,
                message: reason.clone(),
            },
            Error::NamespaceState {
                registry,
                namespace,
                status,
                message,
            } => {
                if status == "locked" {
                    mirror_core::Error::Denied {
                        registry: registry.clone(),
                        location: location(registry, namespace),
                        message: format!("namespace is locked: {message}"),
                    }
                } else {
                    mirror_core::Error::Http {
                        registry: registry.clone(),
                        operation: "GetNamespace".into(),
                        location: namespace.clone(),
                        status: 200,
                        message: format!("namespace is {status}: {message}"),
                    }
                }
            }
            Error::NamespaceTimeout {
                registry,
                namespace,
                ..
            } => mirror_core::Error::Http {
                registry: registry.clone(),
                operation: "GetNamespace".into(),
                location: namespace.clone(),
                status: 200,
                message: self.to_string(),
            },
            Error::NamespaceTaken {
                registry,
                namespace,
            } => mirror_core::Error::Http {
                registry: registry.clone(),
                operation: "CreateNamespace".into(),
                location: namespace.clone(),
                status: 409,
                message: self.to_string(),
            },
            Error::Config(m) => mirror_core::Error::Config(format!("{PROVIDER}: {m}")),
        }
    }

    /// The core view used to decide retries (see [`mirror_core::retry::RetryConfig`]).
    pub(crate) fn retry_probe(&self) -> mirror_core::Error {
        self.to_core()
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

/// `scaleway:<host>/<target>`.
fn location(registry: &str, target: &str) -> String {
    format!("{registry}/{target}")
}

impl From<Error> for mirror_core::Error {
    /// Maps to the core variant a caller acts on:
    ///
    /// | Scaleway | core |
    /// |---|---|
    /// | `not_found`, 404 | `NotFound` (`repository` for namespaces and images, `manifest` for tags) |
    /// | `denied_authentication`, 401 | `Unauthorized` |
    /// | `permissions_denied`, 403, `quotas_exceeded`, `locked`, a locked namespace | `Denied` |
    /// | `too_many_requests`, 429 | `RateLimited` (with `Retry-After`) |
    /// | `invalid_arguments` on `CreateNamespace` | `InvalidName` |
    /// | unreachable, timeouts | `Connect` |
    /// | anything else (409, 5xx, a namespace in `error`, not ready in time, a name taken by another customer) | `Http` with the status and Scaleway's message |
    ///
    /// The `registry` field is `scaleway:<registry host>`.
    fn from(e: Error) -> Self {
        match e {
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
            other => other.to_core(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, error_type: &str, operation: &'static str) -> Error {
        Error::Api(Box::new(ApiError {
            registry: "scaleway:rg.fr-par.scw.cloud".into(),
            operation,
            target: "mirror-prod-0a1b2c3d/svc-api".into(),
            status,
            error_type: error_type.into(),
            message: "nope".into(),
            retry_after: Some(Duration::from_secs(2)),
        }))
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
        let locked = Error::NamespaceState {
            registry: "scaleway:h".into(),
            namespace: "mirror-x-00000000".into(),
            status: "locked".into(),
            message: "locked by trust and safety".into(),
        };
        assert!(matches!(
            mirror_core::Error::from(locked),
            mirror_core::Error::Denied { .. }
        ));
        let taken = Error::NamespaceTaken {
            registry: "scaleway:h".into(),
            namespace: "mirror-x-00000000".into(),
        };
        let text = mirror_core::Error::from(taken).to_string();
        assert!(text.contains("409") && text.contains("another"), "{text}");
        let transport = Error::Transport {
            registry: "scaleway:h".into(),
            operation: "ListNamespaces",
            target: "x".into(),
            source: "connection refused".into(),
        };
        assert!(matches!(
            mirror_core::Error::from(transport),
            mirror_core::Error::Connect { .. }
        ));
    }
}
