//! The one error type of the crate.
//!
//! Every variant carries the context a caller needs to act on it (registry, repository,
//! reference or digest, HTTP status) and never a secret. A failed existence check is an error,
//! never "absent": only a definite `404` becomes `Ok(None)` or [`Error::NotFound`].

use crate::digest::Digest;
pub use crate::operation::Operation;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error source.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while reading, writing or copying images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An image reference (or a part of one: registry, repository, tag, digest) is malformed.
    #[error("invalid reference {:?}: {reason}", shown(input))]
    InvalidReference {
        /// The text that was given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A digest string is malformed (`algorithm:hex`).
    #[error("invalid digest {:?}: {reason}", shown(input))]
    InvalidDigest {
        /// The text that was given.
        input: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The manifest, blob or repository does not exist at `location`.
    #[error("{what} not found: {}", shown(location))]
    NotFound {
        /// What was looked up: "manifest", "blob", "repository".
        what: &'static str,
        /// Where: `registry/repository:tag`, `registry/repository@digest`, or a layout path.
        location: String,
    },

    /// The registry refused the credentials (or demanded some and none were given).
    #[error("unauthorized at registry {registry}: {message}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// What the registry or token server said (never the credentials).
        message: String,
    },

    /// The registry understood who we are but denied the operation (HTTP 403 or a token
    /// without the requested scope).
    #[error(
        "access denied at registry {registry} for {}: {message}",
        shown(location)
    )]
    Denied {
        /// The registry host.
        registry: String,
        /// The repository or reference the operation was on.
        location: String,
        /// What the registry said.
        message: String,
    },

    /// Content read from a source does not hash to the digest that names it.
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the content was addressed by.
        expected: Digest,
        /// The digest of the bytes actually received.
        actual: Digest,
    },

    /// A registry refused an uploaded blob because its bytes do not hash to `digest`
    /// (`DIGEST_INVALID`). The copy engine then hashes the next attempt itself, so that a
    /// corrupt source ends in [`Error::DigestMismatch`] when the retry budget allows another
    /// attempt (this error when it does not).
    #[error("{registry} refused blob {digest}: the bytes sent do not hash to it")]
    DigestRejected {
        /// The registry.
        registry: String,
        /// The digest the blob was pushed under.
        digest: Digest,
    },

    /// Content read from a source does not have the size its descriptor declares.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// The content's digest.
        digest: Digest,
        /// The size the descriptor declares.
        expected: u64,
        /// The number of bytes received.
        actual: u64,
    },

    /// A manifest media type this library does not copy (for example Docker schema 1).
    #[error(
        "unsupported media type {:?} for {}: {reason}",
        shown(media_type),
        shown(location)
    )]
    UnsupportedMediaType {
        /// The media type that was found.
        media_type: String,
        /// Where it was found.
        location: String,
        /// Why it is not supported and what to do instead.
        reason: String,
    },

    /// A manifest or index could not be parsed.
    #[error("invalid manifest at {}: {reason}", shown(location))]
    InvalidManifest {
        /// Where it was read.
        location: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The registry asks us to slow down (HTTP 429).
    #[error("rate limited by registry {registry} (retry after {retry_after:?})")]
    RateLimited {
        /// The registry host.
        registry: String,
        /// The `Retry-After` the registry gave, if any.
        retry_after: Option<std::time::Duration>,
    },

    /// The registry answered with a status this operation does not expect.
    #[error(
        "registry {registry} answered {status} to {operation} {}: {message}",
        shown(location)
    )]
    Http {
        /// The registry host.
        registry: String,
        /// The operation: `GET manifest`, `PUT blob`, ...
        operation: Operation,
        /// The repository, reference or digest the operation was on.
        location: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's error message (from its JSON error body when there is one).
        message: String,
        /// The distribution error codes of its JSON error body, parsed once: code paths
        /// branch on these, never on the message text.
        codes: ErrorCodes,
    },

    /// The registry refused a monolithic blob upload (405, 413, 416 or 501 to the single
    /// `PUT`): the client switched to chunked uploads, and the blob can be sent again from a
    /// fresh stream.
    #[error("registry {registry} refused a monolithic upload of {} (HTTP {status}); switching to chunked uploads", shown(location))]
    UploadModeRefused {
        /// The registry host.
        registry: String,
        /// The blob.
        location: String,
        /// The HTTP status code.
        status: u16,
    },

    /// The registry's host name does not resolve (a typo, a host that is gone). Not retried.
    #[error("registry {registry}: no such host ({reason})")]
    HostUnknown {
        /// The registry host as given.
        registry: String,
        /// What the resolver said.
        reason: String,
    },

    /// The registry could not be reached or the connection broke.
    #[error(
        "cannot reach registry {registry} ({operation} {}): {source}",
        shown(location)
    )]
    Connect {
        /// The registry host.
        registry: String,
        /// The operation that was under way.
        operation: Operation,
        /// The repository, reference or digest the operation was on.
        location: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },

    /// A blob transfer stopped moving: no byte for the idle timeout, less than the minimum
    /// throughput, or no answer after an upload's last byte
    /// (the HTTP client's `RegistryConfig::idle_timeout`). Retried as any
    /// transfer failure.
    #[error(
        "transfer stalled with {registry} ({operation} {}): {reason}",
        shown(location)
    )]
    Stalled {
        /// The registry host.
        registry: String,
        /// The operation that was under way.
        operation: Operation,
        /// The blob.
        location: String,
        /// What stopped.
        reason: String,
    },

    /// A registry or control plane answered something that cannot be read or lacks what it
    /// must hold (malformed JSON, a missing field, pagination that never ends).
    #[error(
        "unexpected answer from {registry} to {operation} {}: {reason}",
        shown(location)
    )]
    Protocol {
        /// The registry host (or `<provider>:<host>` for a control plane).
        registry: String,
        /// The operation.
        operation: Operation,
        /// What the operation was on.
        location: String,
        /// What is wrong with the answer.
        reason: String,
    },

    /// A control plane refused an operation with a code of its own and no HTTP status of
    /// its own: a per-item failure inside a successful batch answer (ECR's
    /// `BatchDeleteImage`), a resource in a state it cannot be used in (a Scaleway namespace
    /// in `error`), a wait that timed out.
    #[error(
        "{registry}: {operation} on {} refused: {code}: {message}",
        shown(location)
    )]
    Refused {
        /// `<provider>:<registry host>`.
        registry: String,
        /// The operation.
        operation: Operation,
        /// What the operation was on.
        location: String,
        /// The provider's code (`KmsError`, `error`, `timeout`…).
        code: String,
        /// What the provider said.
        message: String,
    },

    /// Reading or writing local files failed.
    #[error("I/O error on {}: {source}", shown(path))]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Credentials could not be loaded (docker `config.json`, a credential helper).
    #[error("credentials for {registry}: {reason}")]
    Credentials {
        /// The registry host the credentials are for.
        registry: String,
        /// What went wrong (never the secret).
        reason: String,
    },

    /// A repository name, tag or id cannot be used (empty, or rejected by a provider's rules).
    #[error("invalid name {:?}: {reason}", shown(name))]
    InvalidName {
        /// The name or id that was given.
        name: String,
        /// Why it cannot be used.
        reason: String,
    },

    /// An input the library was given is unusable (a build request, a build-key input, a
    /// platform, a registry location or option, a layout): which input, and why. Settings of
    /// a provider are [`Error::Setting`].
    #[error("invalid {what}: {reason}")]
    Config {
        /// The input (`build context`, `commit id`, `platform`, `registry option`).
        what: &'static str,
        /// What is wrong with it and what to do.
        reason: String,
    },

    /// A task of the library failed where no input or registry is to blame (a blocking task
    /// panicked or was cancelled): a bug, to report.
    #[error("internal error while {what}: {reason}")]
    Internal {
        /// What the library was doing (`reading the docker config`).
        what: &'static str,
        /// What failed.
        reason: String,
    },

    /// A setting of a provider's configuration is missing or invalid: which one, and why.
    #[error("invalid {provider} configuration: {key}: {reason}")]
    Setting {
        /// Whose setting (`ECR`, `Artifact Registry`, `Scaleway`).
        provider: String,
        /// The key (`region`), or what the setting is when it has no key.
        key: String,
        /// What is wrong and what to do (`not set: set MIRROR_ECR_REGION …`); never a secret.
        reason: String,
    },

    /// An in-use source could not tell which images the cluster uses: the Kubernetes API
    /// refused a listing (403: missing RBAC), was unreachable, or a listing could not be
    /// completed. Eviction and sweep then delete nothing.
    #[error(
        "cannot tell which images are in use ({origin}, {operation}{}): {message}",
        http_status(.status)
    )]
    InUseUnknown {
        /// Where the source looked (`kubernetes https://10.0.0.1:443`).
        origin: String,
        /// What failed (`list pods in all namespaces`).
        operation: String,
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// What went wrong, and for a refusal the permission that is missing.
        message: String,
    },

    /// An image build failed: the builder could not start, exited with an error, was killed
    /// or ran out of time. Nothing was tagged at `reference`.
    #[error("build of {reference} failed ({status}); last lines of the build log:\n{log_tail}")]
    BuildFailed {
        /// The reference the build was to push.
        reference: String,
        /// What happened: `exit status 1`, `timed out after 600s`, `cannot start buildah: …`.
        status: String,
        /// The last lines of the build log (stdout and stderr interleaved).
        log_tail: String,
    },
}

/// What kind of failure an [`Error`] is: what a deployer branches on ([`Error::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller gave something unusable: a malformed reference, digest or name, an invalid
    /// configuration. Fix the input; no retry helps.
    Input,
    /// The image, blob or repository does not exist.
    NotFound,
    /// The credentials were refused, missing or could not be loaded, or the identity may not
    /// do this.
    Auth,
    /// The registry could not be reached, or a transfer stalled.
    Network,
    /// Content did not match its digest or size (a corrupt or hostile source).
    Integrity,
    /// A registry asked to slow down.
    RateLimited,
    /// A registry or control plane answered something unexpected or refused an operation.
    Registry,
    /// The image uses a format this library does not copy.
    Unsupported,
    /// Local files could not be read or written.
    Io,
    /// The in-use source could not tell which images are in use (nothing was deleted).
    InUseUnknown,
    /// An image build failed.
    Build,
    /// The library failed on its own ([`Error::Internal`]): a bug.
    Internal,
}

/// Which registry an error of a deploy comes from ([`Mirror::side_of`](crate::Mirror::side_of)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Side {
    /// The cluster's mirror registry.
    Mirror,
    /// The registry the image is copied from.
    Source,
    /// Neither (local files, configuration) or not known.
    Unknown,
}

impl Error {
    /// The kind of failure (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidReference { .. }
            | Error::InvalidDigest { .. }
            | Error::InvalidName { .. }
            | Error::Config { .. }
            | Error::Setting { .. } => ErrorKind::Input,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::Unauthorized { .. } | Error::Denied { .. } | Error::Credentials { .. } => {
                ErrorKind::Auth
            }
            Error::Connect { .. } | Error::Stalled { .. } | Error::HostUnknown { .. } => {
                ErrorKind::Network
            }
            Error::DigestMismatch { .. }
            | Error::DigestRejected { .. }
            | Error::SizeMismatch { .. }
            | Error::InvalidManifest { .. } => ErrorKind::Integrity,
            Error::RateLimited { .. } => ErrorKind::RateLimited,
            Error::Http { .. }
            | Error::UploadModeRefused { .. }
            | Error::Protocol { .. }
            | Error::Refused { .. } => ErrorKind::Registry,
            Error::UnsupportedMediaType { .. } => ErrorKind::Unsupported,
            Error::Io { .. } => ErrorKind::Io,
            Error::InUseUnknown { .. } => ErrorKind::InUseUnknown,
            Error::BuildFailed { .. } => ErrorKind::Build,
            Error::Internal { .. } => ErrorKind::Internal,
        }
    }

    /// [`Error::Config`]: the input `what` is unusable, because `reason`.
    pub fn config(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Config {
            what,
            reason: reason.into(),
        }
    }

    /// [`Error::Internal`]: a blocking task doing `what` failed.
    pub fn internal(what: &'static str, e: impl std::fmt::Display) -> Self {
        Error::Internal {
            what,
            reason: e.to_string(),
        }
    }

    /// Whether another attempt may succeed (the retry policy's reading: connection
    /// failures, stalls, rate limits, 5xx and 408, content that arrived damaged). The
    /// library has already retried these within its budget; a deployer may retry the call
    /// later.
    pub fn is_retryable(&self) -> bool {
        crate::retry::is_transient(self)
    }

    /// The registry host the error names, when it names one (`Unauthorized`, `Http`,
    /// `Connect`…): which registry failed.
    pub fn registry(&self) -> Option<&str> {
        match self {
            Error::Unauthorized { registry, .. }
            | Error::Denied { registry, .. }
            | Error::DigestRejected { registry, .. }
            | Error::RateLimited { registry, .. }
            | Error::Http { registry, .. }
            | Error::UploadModeRefused { registry, .. }
            | Error::Connect { registry, .. }
            | Error::HostUnknown { registry, .. }
            | Error::Stalled { registry, .. }
            | Error::Protocol { registry, .. }
            | Error::Refused { registry, .. }
            | Error::Credentials { registry, .. } => Some(registry.as_str()),
            Error::NotFound { location, .. } => location
                .split('/')
                .next()
                .filter(|h| !h.starts_with("oci:")),
            _ => None,
        }
    }

    /// A [`Error::NotFound`] for a manifest at `location`.
    pub fn manifest_not_found(location: impl Into<String>) -> Self {
        Error::NotFound {
            what: "manifest",
            location: location.into(),
        }
    }

    /// A [`Error::NotFound`] for a blob at `location`.
    pub fn blob_not_found(location: impl Into<String>) -> Self {
        Error::NotFound {
            what: "blob",
            location: location.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }
}

/// Registry-supplied text made safe to show: control characters (terminal escape sequences,
/// carriage returns) and invisible format characters (bidirectional overrides, zero-width
/// characters) become `?`, runs of whitespace one space, and a text longer than `max`
/// characters is cut with a note of how much was left out. Error messages from registries and
/// control planes go through it before they reach an [`Error`].
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 32));
    let mut shown = 0usize;
    let mut space = false;
    let total = text.chars().count();
    for c in text.chars() {
        if shown >= max {
            break;
        }
        if c.is_whitespace() {
            if !space && !out.is_empty() {
                out.push(' ');
                shown += 1;
            }
            space = true;
            continue;
        }
        space = false;
        out.push(if c.is_control() || is_format(c) {
            '?'
        } else {
            c
        });
        shown += 1;
    }
    let out = out.trim_end().to_string();
    if total > max {
        format!("{out}… ({} more characters)", total - max)
    } else {
        out
    }
}

/// `, HTTP 403` for an error with a status, empty without.
fn http_status(status: &Option<u16>) -> String {
    status.map(|s| format!(", HTTP {s}")).unwrap_or_default()
}

/// Invisible format characters that reorder or hide text on a terminal (bidirectional
/// overrides and isolates, zero-width characters, the byte-order mark).
fn is_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// A distribution error code (the `code` of an entry of a registry's JSON error body; the
/// distribution spec's table), parsed once when the answer is read. Codes outside the table
/// are not kept (they remain in the error's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`: a blob the request names is not in the repository.
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`.
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`.
    BlobUploadUnknown,
    /// `DIGEST_INVALID`: the bytes do not hash to the digest (or the digest is malformed).
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`: a blob a manifest names is not in the repository (a
    /// concurrent writer of that blob makes it briefly unreadable on distribution).
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`.
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`.
    ManifestUnknown,
    /// `NAME_INVALID`.
    NameInvalid,
    /// `NAME_UNKNOWN`: the repository does not exist.
    NameUnknown,
    /// `SIZE_INVALID`.
    SizeInvalid,
    /// `UNAUTHORIZED`.
    Unauthorized,
    /// `DENIED`.
    Denied,
    /// `UNSUPPORTED`.
    Unsupported,
    /// `TOOMANYREQUESTS`.
    TooManyRequests,
}

impl ErrorCode {
    const ALL: [ErrorCode; 14] = [
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::SizeInvalid,
        ErrorCode::Unauthorized,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
        ErrorCode::TooManyRequests,
    ];

    /// The code as the spec writes it (`MANIFEST_BLOB_UNKNOWN`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
        }
    }

    /// The code `text` names, if it is one of the spec's.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// The distribution error codes of one answer (a set; see [`ErrorCode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ErrorCodes(u32);

impl ErrorCodes {
    /// Whether the answer carried `code`.
    pub fn contains(self, code: ErrorCode) -> bool {
        self.0 & code.bit() != 0
    }

    /// The codes, in the spec's order.
    pub fn iter(self) -> impl Iterator<Item = ErrorCode> {
        ErrorCode::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }

    /// Whether there is none.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<ErrorCode> for ErrorCodes {
    fn from_iter<I: IntoIterator<Item = ErrorCode>>(iter: I) -> Self {
        ErrorCodes(iter.into_iter().fold(0, |bits, c| bits | c.bit()))
    }
}

impl Error {
    /// Whether the registry said a blob is missing (`BLOB_UNKNOWN`,
    /// `MANIFEST_BLOB_UNKNOWN`) or refused a digest (`DIGEST_INVALID`), which a concurrent
    /// writer of the same blob causes for a moment.
    pub fn names_a_missing_blob(&self) -> bool {
        matches!(self, Error::Http { codes, .. } if codes.contains(ErrorCode::BlobUnknown)
            || codes.contains(ErrorCode::ManifestBlobUnknown)
            || codes.contains(ErrorCode::DigestInvalid))
    }
}

/// How many characters of registry-supplied text an error shows.
pub(crate) const MAX_SHOWN_TEXT: usize = 512;

/// A location, name or input as an error shows it: [`sanitize`]d and cut to
/// [`MAX_SHOWN_TEXT`] characters with the size of the rest said (a registry may name a
/// repository or tag with 12 MB of text).
pub(crate) fn shown(text: &str) -> String {
    sanitize(text, MAX_SHOWN_TEXT)
}

#[cfg(test)]
mod sanitize_tests {
    use super::*;

    #[test]
    fn registry_text_loses_escapes_and_length() {
        assert_eq!(
            sanitize("bad \x1b[31mred\x1b[0m\r\nline", 100),
            "bad ?[31mred?[0m line"
        );
        let long = "x".repeat(30_000);
        let shown = sanitize(&long, MAX_SHOWN_TEXT);
        assert!(shown.len() < 600, "{}", shown.len());
        assert!(shown.ends_with("(29488 more characters)"), "{shown}");
        assert_eq!(sanitize("  spaced\t\tout  ", 100), "spaced out");
    }

    #[test]
    fn bidirectional_overrides_and_zero_width_characters_are_shown_as_marks() {
        assert_eq!(
            sanitize("ok\u{202E}gnp.exe\u{200B}\u{2066}x\u{FEFF}", 100),
            "ok?gnp.exe??x?"
        );
    }
}
