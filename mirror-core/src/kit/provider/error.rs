//! The one error of every provider's control plane, [`ControlPlaneError`], and its one
//! conversion into [`crate::Error`].
//!
//! A provider reads an answer of its API into a `ControlPlaneError`: who answered (provider,
//! registry label), what was asked (operation, target), the provider's own code and the HTTP
//! status when there was one, a `Retry-After`, the transport source; and one [`Kind`] that its
//! classification table gives. Everything after that is shared: whether the error is worth
//! another attempt ([`ControlPlaneError::retry`]) and which core variant a caller sees
//! (`From<ControlPlaneError> for Error`, the table in its docs).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::error::{BoxError, Error};
use crate::retry::Retry;

/// How a provider's classification table reads an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// The thing does not exist; the payload names it (`repository`, `manifest`,
    /// `lifecycle policy`…).
    NotFound(&'static str),
    /// It exists already.
    AlreadyExists,
    /// The request conflicts with the resource's state (a tagged version deleted without
    /// force, an image an index still uses, a namespace in an unusable state).
    Conflict,
    /// The caller is known but not allowed (also quotas and locks).
    Denied,
    /// The caller's credentials are missing, invalid or expired.
    Unauthenticated,
    /// Slow down.
    RateLimited,
    /// The service failed or is busy (5xx, aborted transactions): worth another attempt.
    Unavailable,
    /// The API could not be reached, or the call timed out.
    Transport,
    /// No credentials could be had for the call.
    Credentials,
    /// The answer could not be read or lacks what it must hold.
    Protocol,
    /// The request was refused as invalid.
    Invalid,
    /// The provider refused a name (`target`) it was asked to create.
    InvalidName,
    /// The configuration is invalid or incomplete.
    Config,
    /// Anything else.
    Other,
}

impl Kind {
    /// True for the kinds another attempt may cure: rate limits, unavailability, transport.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            Kind::RateLimited | Kind::Unavailable | Kind::Transport
        )
    }
}

/// An error of a provider's control plane (never of the data plane, which speaks the
/// distribution API through the core client). Never holds a secret.
///
/// The [`Details`] are boxed (a `Result` carrying it stays small) and reached through `Deref`:
/// `e.registry`, `e.status`.
#[derive(Debug)]
pub struct ControlPlaneError(Box<Details>);

/// What a [`ControlPlaneError`] says.
#[derive(Debug)]
pub struct Details {
    /// The provider (`aws`, `gcp`, `scaleway`).
    pub provider: &'static str,
    /// The registry label, `<provider>:<registry host>`, as core errors name the registry.
    pub registry: String,
    /// The API operation (`CreateRepository`, `repositories.create`…).
    pub operation: Cow<'static, str>,
    /// What the call was about: a repository, `repository@digest`, `repository:tag`, or `*`
    /// for registry-wide calls.
    pub target: String,
    /// How the provider's table reads it.
    pub kind: Kind,
    /// The HTTP status of the answer, when there was one.
    pub status: Option<u16>,
    /// The provider's own error code (an AWS exception name, a Google canonical status, a
    /// Scaleway error type).
    pub code: Option<String>,
    /// What the provider said, or what is wrong.
    pub message: String,
    /// The `Retry-After` the API gave.
    pub retry_after: Option<Duration>,
    /// The underlying error (transport, SDK).
    pub source: Option<BoxError>,
}

impl std::ops::Deref for ControlPlaneError {
    type Target = Details;
    fn deref(&self) -> &Details {
        &self.0
    }
}

impl std::ops::DerefMut for ControlPlaneError {
    fn deref_mut(&mut self) -> &mut Details {
        &mut self.0
    }
}

impl fmt::Display for ControlPlaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (registry, operation, target) = (&self.registry, &self.operation, &self.target);
        match self.kind {
            Kind::Transport => write!(
                f,
                "{registry}: cannot reach the API ({operation} on {target})"
            )?,
            Kind::Credentials => write!(f, "{registry}: credentials")?,
            Kind::Config => write!(f, "invalid {} configuration", self.provider)?,
            Kind::Protocol => write!(
                f,
                "{registry}: unexpected answer to {operation} on {target}"
            )?,
            _ => write!(f, "{registry}: {operation} on {target} failed")?,
        }
        if let Some(s) = self.status {
            write!(f, ": HTTP {s}")?;
        }
        if let Some(c) = &self.code {
            write!(f, " {c}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let (Some(source), Kind::Transport) = (&self.source, self.kind) {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ControlPlaneError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A provider's classification table: its error codes, and HTTP statuses for answers whose
/// code it does not list, read as [`Kind`]s. The one place a provider says what its answers
/// mean; everything after that (retries, the core variant) is the kit's.
///
/// Each entry is a kind and what means it: codes separated by spaces, statuses and inclusive
/// status ranges (`404 500-599`) separated by spaces.
///
/// ```
/// use mirror_core::kit::provider::{ErrorTable, Kind};
/// const TABLE: ErrorTable = ErrorTable {
///     codes: &[(Kind::NotFound("repository"), "RepositoryNotFoundException NoSuchRepository")],
///     statuses: &[(Kind::RateLimited, "429"), (Kind::Unavailable, "500-599")],
/// };
/// assert_eq!(TABLE.kind("NoSuchRepository", Some(400)), Kind::NotFound("repository"));
/// assert_eq!(TABLE.kind("Whatever", Some(503)), Kind::Unavailable);
/// assert_eq!(TABLE.kind("Whatever", None), Kind::Other);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ErrorTable {
    /// Kinds and the codes (exact, separated by spaces) that mean them.
    pub codes: &'static [(Kind, &'static str)],
    /// Kinds and the HTTP statuses (`404`, `500-599`, separated by spaces) that mean them,
    /// for codes not in `codes`.
    pub statuses: &'static [(Kind, &'static str)],
}

impl ErrorTable {
    /// The kind of an answer with `code` (empty when there is none) and `status`;
    /// [`Kind::Other`] for what the table does not list.
    pub fn kind(&self, code: &str, status: Option<u16>) -> Kind {
        let listed = |codes: &str| !code.is_empty() && codes.split(' ').any(|c| c == code);
        let by_code = self.codes.iter().find(|(_, c)| listed(c)).map(|(k, _)| *k);
        let has = |ranges: &str, s: u16| {
            ranges.split(' ').any(|r| {
                let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                lo.parse().is_ok_and(|lo: u16| lo <= s) && hi.parse().is_ok_and(|hi: u16| s <= hi)
            })
        };
        let by_status = || {
            let s = status?;
            self.statuses
                .iter()
                .find(|(_, r)| has(r, s))
                .map(|(k, _)| *k)
        };
        by_code.or_else(by_status).unwrap_or(Kind::Other)
    }
}

/// Who answers: the provider and its registry label. Errors are made from it, so every
/// error of one registry names it the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The provider (`aws`).
    pub provider: &'static str,
    /// `<provider>:<registry host>`.
    pub registry: String,
}

impl Origin {
    /// The origin of `provider`'s registry at `host`: label `<provider>:<host>`.
    pub fn new(provider: &'static str, host: &str) -> Self {
        Origin {
            provider,
            registry: format!("{provider}:{host}"),
        }
    }

    /// An error of `operation` on `target`, read as `kind`, saying `message`.
    pub fn error(
        &self,
        operation: impl Into<Cow<'static, str>>,
        target: impl Into<String>,
        kind: Kind,
        message: impl Into<String>,
    ) -> ControlPlaneError {
        ControlPlaneError(Box::new(Details {
            provider: self.provider,
            registry: self.registry.clone(),
            operation: operation.into(),
            target: target.into(),
            kind,
            status: None,
            code: None,
            message: message.into(),
            retry_after: None,
            source: None,
        }))
    }

    /// The API could not be reached for `operation` on `target`.
    pub fn transport(
        &self,
        operation: impl Into<Cow<'static, str>>,
        target: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> ControlPlaneError {
        self.error(operation, target, Kind::Transport, "")
            .with_source(source)
    }

    /// The answer to `operation` on `target` could not be read: `reason`.
    pub fn protocol(
        &self,
        operation: impl Into<Cow<'static, str>>,
        target: impl Into<String>,
        reason: impl Into<String>,
    ) -> ControlPlaneError {
        self.error(operation, target, Kind::Protocol, reason)
    }

    /// No credentials: `reason` (never a secret).
    pub fn credentials(&self, reason: impl Into<String>) -> ControlPlaneError {
        self.error("credentials", "*", Kind::Credentials, reason)
    }

    /// The setting `key` is invalid: `message` (the core error is [`Error::Setting`]).
    pub fn config(&self, key: &str, message: impl Into<String>) -> ControlPlaneError {
        self.error("configure", key, Kind::Config, message)
    }
}

impl ControlPlaneError {
    /// With the HTTP status of the answer.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// With the provider's error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        let code = code.into();
        self.code = (!code.is_empty()).then_some(code);
        self
    }

    /// With the API's `Retry-After`.
    pub fn with_retry_after(mut self, retry_after: Option<Duration>) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// With the underlying error.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Read as another kind (a provider refining its table's answer by the operation).
    pub fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// How the provider's table reads it.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The provider's error code.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// True when another attempt may succeed (see [`Kind::is_transient`]).
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    /// The retry policy's classifier for control-plane calls (for
    /// [`RetryConfig::run_with`](crate::retry::RetryConfig::run_with)).
    pub fn retry(&self) -> Retry {
        match (self.is_transient(), self.retry_after) {
            (false, _) => Retry::No,
            (true, Some(after)) => Retry::After(after),
            (true, None) => Retry::Yes,
        }
    }

    /// `code: message`, or whichever of them there is.
    /// `code: message`, sanitised (the control plane's text is shown to people).
    fn detail(&self) -> String {
        let text = match (&self.code, self.message.is_empty()) {
            (Some(c), false) => format!("{c}: {}", self.message),
            (Some(c), true) => c.clone(),
            (None, _) => self.message.clone(),
        };
        crate::error::sanitize(&text, crate::error::MAX_SHOWN_TEXT)
    }

    /// `<registry>/<target>` (the registry alone for registry-wide calls).
    fn location(&self, target: &str) -> String {
        if target == "*" {
            self.registry.clone()
        } else {
            format!("{}/{target}", self.registry)
        }
    }
}

impl From<ControlPlaneError> for Error {
    /// The one mapping of control-plane errors to the core variants a caller acts on; the
    /// `registry` of every variant is the label `<provider>:<registry host>`.
    ///
    /// | kind | core variant |
    /// |---|---|
    /// | `NotFound(what)` | `NotFound { what }` at `<registry>/<target>` (the repository part of the target for a repository) |
    /// | `Denied` | `Denied` |
    /// | `Unauthenticated` | `Unauthorized` |
    /// | `RateLimited` | `RateLimited` with the `Retry-After` |
    /// | `Transport` | `Connect` |
    /// | `Credentials` | `Credentials` |
    /// | `Protocol` | `Protocol` |
    /// | `InvalidName` | `InvalidName` of the target |
    /// | `Config` | `Setting` naming the key (the target) |
    /// | anything else, with an HTTP status | `Http` with the status and `code: message` |
    /// | anything else, without one (a per-item failure inside a successful answer, a failed or unfinished long-running operation) | `Refused` with the code |
    fn from(e: ControlPlaneError) -> Self {
        let detail = e.detail();
        let location = e.location(&e.target);
        let e = *e.0;
        match e.kind {
            Kind::NotFound(what) => {
                let location = if what == "repository" {
                    match e.target.split_once('@') {
                        Some((r, _)) => format!("{}/{r}", e.registry),
                        None => location,
                    }
                } else {
                    location
                };
                Error::NotFound { what, location }
            }
            Kind::Denied => Error::Denied {
                location,
                message: format!("{}: {detail}", e.operation),
                registry: e.registry,
            },
            Kind::Unauthenticated => Error::Unauthorized {
                message: format!("{} on {}: {detail}", e.operation, e.target),
                registry: e.registry,
            },
            Kind::RateLimited => Error::RateLimited {
                registry: e.registry,
                retry_after: e.retry_after,
            },
            Kind::Transport => Error::Connect {
                source: e.source.unwrap_or_else(|| detail.into()),
                registry: e.registry,
                operation: e.operation.into(),
                location: e.target,
            },
            Kind::Credentials => Error::Credentials {
                registry: e.registry,
                reason: detail,
            },
            Kind::Protocol => Error::Protocol {
                registry: e.registry,
                operation: e.operation.into(),
                location: e.target,
                reason: detail,
            },
            Kind::InvalidName => Error::InvalidName {
                name: e.target,
                reason: detail,
            },
            Kind::Config => Error::Setting {
                provider: e.provider.to_string(),
                key: e.target,
                reason: detail,
            },
            _ => match e.status {
                Some(status) => Error::Http {
                    registry: e.registry,
                    operation: e.operation.into(),
                    location: e.target,
                    status,
                    message: detail,
                    codes: Default::default(),
                },
                None => Error::Refused {
                    registry: e.registry,
                    operation: e.operation.into(),
                    location: e.target,
                    code: crate::error::sanitize(
                        &e.code.unwrap_or_else(|| "refused".into()),
                        crate::error::MAX_SHOWN_TEXT,
                    ),
                    message: crate::error::sanitize(&e.message, crate::error::MAX_SHOWN_TEXT),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin::new("aws", "1.dkr.ecr.r.amazonaws.com")
    }

    #[test]
    fn kinds_map_to_the_core_variants_naming_registry_and_target() {
        let o = origin();
        let core: Error = o
            .error(
                "DescribeImages",
                "c/services/api@sha256:ab",
                Kind::NotFound("repository"),
                "",
            )
            .into();
        assert!(
            matches!(&core, Error::NotFound { what: "repository", location }
                if location == "aws:1.dkr.ecr.r.amazonaws.com/c/services/api"),
            "{core:?}"
        );
        let core: Error = o
            .error(
                "BatchGetImage",
                "r@sha256:ab",
                Kind::NotFound("manifest"),
                "",
            )
            .into();
        assert!(
            matches!(&core, Error::NotFound { what: "manifest", location } if location.ends_with("r@sha256:ab"))
        );
        let core: Error = o
            .error("X", "r", Kind::RateLimited, "")
            .with_retry_after(Some(Duration::from_secs(7)))
            .into();
        assert!(
            matches!(core, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(7))
        );
        let core: Error = o
            .error("X", "r", Kind::Unavailable, "boom")
            .with_status(503)
            .with_code("ServerException")
            .into();
        assert!(
            matches!(&core, Error::Http { status: 503, message, location, .. }
                if message == "ServerException: boom" && location == "r"),
            "{core:?}"
        );
        let core: Error = o
            .error(
                "BatchDeleteImage",
                "r@sha256:ab",
                Kind::Other,
                "key disabled",
            )
            .with_code("KmsError")
            .into();
        assert!(
            matches!(&core, Error::Refused { code, .. } if code == "KmsError"),
            "a failure inside a successful answer is not an HTTP status: {core:?}"
        );
        let core: Error = o.protocol("GetAuthorizationToken", "*", "no token").into();
        assert!(matches!(core, Error::Protocol { .. }), "{core:?}");
        let core: Error = o
            .transport("CreateRepository", "r", "connection refused")
            .into();
        assert!(matches!(core, Error::Connect { .. }));
        assert!(core.to_string().contains("connection refused"), "{core}");
    }

    #[test]
    fn only_transient_kinds_are_retried_and_retry_after_is_kept() {
        let o = origin();
        assert_eq!(o.error("X", "r", Kind::Invalid, "").retry(), Retry::No);
        assert_eq!(o.error("X", "r", Kind::Unavailable, "").retry(), Retry::Yes);
        assert_eq!(
            o.error("X", "r", Kind::RateLimited, "")
                .with_retry_after(Some(Duration::from_secs(2)))
                .retry(),
            Retry::After(Duration::from_secs(2))
        );
        assert!(o.transport("X", "r", "e").is_transient());
    }

    #[test]
    fn display_names_registry_operation_target_and_code() {
        let e = origin()
            .error("CreateRepository", "c/mirror", Kind::Denied, "no")
            .with_status(400)
            .with_code("AccessDeniedException");
        let text = e.to_string();
        for part in [
            "aws:1.dkr",
            "CreateRepository",
            "c/mirror",
            "AccessDeniedException",
            "400",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }
}
