//! The OCI distribution API over HTTP(S) as an [`ImageStore`](crate::ImageStore).
//!
//! [`RegistryClient`] holds one registry's connection pool, credentials and token cache;
//! [`RegistryClient::repository`] hands out an [`HttpStore`] per repository, all sharing them.
//!
//! Why our own client (see DESIGN.md): the maintained Rust client has no DELETE, no mount with
//! pull scope on the source, no 202 mount fallback, no credential rotation and no raw media
//! types. This one is a thin layer over reqwest.
//!
//! Uploads are a `POST` that opens a session followed by one streaming `PUT` with the digest
//! (the monolithic upload of the spec). If a registry refuses a monolithic `PUT` (405, 413, 416,
//! 501) the client switches to chunked `PATCH` uploads for the rest of its life and the copy
//! engine restarts that blob. Every failed upload cancels its session with a `DELETE`.

pub mod auth;
mod client;
pub mod credentials;
mod pagination;
mod send;
mod store;
mod tls;
pub use tls::system_roots_loaded;
mod token;
mod upload;
mod watchdog;

use std::time::Duration;

use crate::retry::RetryConfig;

pub use client::{RegistryClient, RegistryClientBuilder};
pub use pagination::{
    parse_next_link, read_capped, Capped, MAX_CONTROL_PLANE_BYTES, MAX_PAGE_BYTES, MAX_TOKEN_BYTES,
};
pub use store::HttpStore;
pub use upload::is_upload_mode_switch;
pub use watchdog::Throughput;

#[allow(unused_imports)]
use self::{client::*, pagination::*, send::*, store::*, token::*, upload::*};

/// Largest manifest accepted (as containerd does): protects memory from hostile registries.
pub(crate) const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_CHUNK: usize = 8 * 1024 * 1024;

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// One streaming `PUT`; switch to chunked if the registry refuses it (the default).
    Auto,
    /// Always one streaming `PUT`; never chunked (Artifact Registry does not accept chunks).
    Monolithic,
    /// Always chunked `PATCH` requests of this many bytes.
    Chunked(usize),
}

/// Connection settings of one registry.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `Some(true)`: plain HTTP; `Some(false)`: HTTPS; `None`: plain HTTP for loopback hosts
    /// (`localhost`, 127.0.0.0/8, `[::1]`), HTTPS for every other host.
    pub plain_http: Option<bool>,
    /// Verify TLS certificates (default true). Turning it off is for test registries only.
    pub tls_verify: bool,
    /// Blob upload mode.
    pub upload: UploadMode,
    /// Timeout of requests without a streaming body (manifests, HEADs, tokens).
    pub request_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Retries of requests that are safe to repeat.
    pub retry: RetryConfig,
    /// A blob transfer, either direction, fails with [`crate::Error::Stalled`] (retried as
    /// any transfer failure) when no byte moves for this long (default 30 s). An upload's
    /// answer may take [`request_timeout`](Self::request_timeout) after its last byte.
    pub idle_timeout: Duration,
    /// ... or when it moves less than this (default 1 KiB per 60 s; `None`: no minimum).
    pub min_throughput: Option<Throughput>,
    /// Hash every uploaded blob here too (default false). A registry checks that a blob
    /// hashes to the digest it is pushed under and refuses it otherwise (`DIGEST_INVALID`,
    /// as the distribution spec asks); hashing it a second time here costs about half the
    /// client's CPU of a cold copy. Sizes are always checked here; a refusal is
    /// [`crate::Error::DigestRejected`], and the copy engine hashes the next attempt itself,
    /// so that with retries left a corrupt source ends in [`crate::Error::DigestMismatch`].
    /// Turn it on for a registry that does not check (registry option `verify_uploads`).
    pub verify_uploads: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            plain_http: None,
            tls_verify: true,
            upload: UploadMode::Auto,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(15),
            retry: RetryConfig::default(),
            idle_timeout: Duration::from_secs(30),
            min_throughput: Some(Throughput {
                bytes: 1024,
                per: Duration::from_secs(60),
            }),
            verify_uploads: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::credentials::Credentials;
    use super::*;

    #[test]
    fn next_link_is_found() {
        assert_eq!(
            parse_next_link(r#"</v2/r/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/r/tags/list?n=2&last=b")
        );
        assert_eq!(
            parse_next_link(r#"<https://x/a>; rel="prev", <https://x/b>; rel=next"#).as_deref(),
            Some("https://x/b")
        );
        assert_eq!(parse_next_link("garbage"), None);
        assert_eq!(
            parse_next_link(r#"garbage, </v2/x?a=1,2>; rel="next""#).as_deref(),
            Some("/v2/x?a=1,2"),
            "a malformed link does not hide a good one; commas inside <> are kept"
        );
        assert_eq!(parse_next_link(r#"<>; rel="next""#), None);
    }

    #[test]
    fn loopback_defaults_to_plain_http_and_others_to_https() {
        let c = RegistryClient::new("127.0.0.1:5000", Credentials::Anonymous).unwrap();
        assert_eq!(c.base_url().as_str(), "http://127.0.0.1:5000/");
        let c = RegistryClient::new("registry.example.com", Credentials::Anonymous).unwrap();
        assert_eq!(c.base_url().as_str(), "https://registry.example.com/");
        let c = RegistryClient::new("docker.io", Credentials::Anonymous).unwrap();
        assert_eq!(c.base_url().as_str(), "https://registry-1.docker.io/");
        let c = RegistryClient::builder("localhost:5000")
            .plain_http(false)
            .build()
            .unwrap();
        assert_eq!(c.base_url().as_str(), "https://localhost:5000/");
        assert!(RegistryClient::new("bad host", Credentials::Anonymous).is_err());
    }

    proptest::proptest! {
        #[test]
        fn link_parser_never_panics(s in "\\PC{0,200}") {
            let _ = parse_next_link(&s);
        }
    }
}
