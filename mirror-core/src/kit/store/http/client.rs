//! [`RegistryClient`]: one registry's connection pool, credentials and token cache, and its
//! builder.

use crate::error::Operation;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use url::Url;

use self::auth::AuthState;
use self::credentials::{static_provider, CredentialProvider, Credentials, DockerConfig};
use crate::error::{Error, Result};
use crate::reference::{
    is_loopback_host, normalise_host, validate_repository, DOCKER_HUB, DOCKER_HUB_API_HOST,
};
use crate::retry::RetryConfig;

use super::*;

/// A client for one registry: connection pool, credentials, token cache.
///
/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct RegistryClient {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) registry: String,
    pub(super) base: Url,
    pub(super) http: reqwest::Client,
    /// For token requests: follows no redirect (a re-sent POST body would carry a refresh
    /// token to wherever the redirect points).
    pub(super) token_http: reqwest::Client,
    pub(super) provider: Arc<dyn CredentialProvider>,
    pub(super) state: Mutex<AuthState>,
    pub(super) challenge_known: AtomicBool,
    pub(super) chunked: AtomicBool,
    /// The pull limit last announced in an answer.
    pub(super) rate_limit: std::sync::Mutex<Option<crate::store::RateLimit>>,
    pub(super) config: RegistryConfig,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.inner.registry)
            .field("base", &self.inner.base.as_str())
            .field("credentials", &self.inner.provider)
            .finish()
    }
}

/// Builds a [`RegistryClient`].
#[derive(Debug)]
pub struct RegistryClientBuilder {
    pub(super) registry: String,
    pub(super) provider: Option<Arc<dyn CredentialProvider>>,
    pub(super) config: RegistryConfig,
}

impl RegistryClientBuilder {
    /// Static credentials.
    pub fn credentials(mut self, c: Credentials) -> Self {
        self.provider = Some(static_provider(c));
        self
    }

    /// A credential provider (refreshing tokens, cloud credentials).
    pub fn credential_provider(mut self, p: Arc<dyn CredentialProvider>) -> Self {
        self.provider = Some(p);
        self
    }

    /// Credentials from the docker `config.json` (see [`DockerConfig::default_path`]).
    pub fn docker_config(mut self) -> Result<Self> {
        let registry = normalise_host(&self.registry).map_err(|r| Error::config("registry", r))?;
        let creds = DockerConfig::load_default()?.credentials_for(&registry)?;
        self.provider = Some(static_provider(creds));
        Ok(self)
    }

    /// Plain HTTP (`true`) or HTTPS (`false`); the default depends on the host.
    pub fn plain_http(mut self, plain: bool) -> Self {
        self.config.plain_http = Some(plain);
        self
    }

    /// Whether to verify TLS certificates.
    pub fn tls_verify(mut self, verify: bool) -> Self {
        self.config.tls_verify = verify;
        self
    }

    /// Whether to hash uploaded blobs in the client too (see
    /// [`RegistryConfig::verify_uploads`]).
    pub fn verify_uploads(mut self, verify: bool) -> Self {
        self.config.verify_uploads = verify;
        self
    }

    /// The upload mode.
    pub fn upload_mode(mut self, mode: UploadMode) -> Self {
        self.config.upload = mode;
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.config.retry = retry;
        self
    }

    /// Every setting at once.
    pub fn config(mut self, config: RegistryConfig) -> Self {
        self.config = config;
        self
    }

    /// Validates the host and builds the client.
    pub fn build(self) -> Result<RegistryClient> {
        let registry = normalise_host(&self.registry).map_err(|r| Error::config("registry", r))?;
        let api_host = if registry == DOCKER_HUB {
            DOCKER_HUB_API_HOST.to_string()
        } else {
            registry.clone()
        };
        let plain = self
            .config
            .plain_http
            .unwrap_or_else(|| is_loopback_host(&registry));
        let scheme = if plain { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{api_host}/"))
            .map_err(|e| Error::config("registry", format!("{registry}: {e}")))?;
        let http = shared_http_client(&self.config, true)
            .map_err(|e| Error::config("HTTP client", format!("for {registry}: {e}")))?;
        let token_http = shared_http_client(&self.config, false)
            .map_err(|e| Error::config("HTTP client", format!("for {registry}: {e}")))?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                registry,
                base,
                http,
                token_http,
                provider: self
                    .provider
                    .unwrap_or_else(|| static_provider(Credentials::Anonymous)),
                state: Mutex::new(AuthState::default()),
                challenge_known: AtomicBool::new(false),
                chunked: AtomicBool::new(matches!(self.config.upload, UploadMode::Chunked(_))),
                rate_limit: std::sync::Mutex::new(None),
                config: self.config,
            }),
        })
    }
}

impl RegistryClient {
    /// A builder for `registry` (`host[:port]`).
    pub fn builder(registry: &str) -> RegistryClientBuilder {
        RegistryClientBuilder {
            registry: registry.to_string(),
            provider: None,
            config: RegistryConfig::default(),
        }
    }

    /// A client with static credentials and default settings.
    pub fn new(registry: &str, credentials: Credentials) -> Result<Self> {
        Self::builder(registry).credentials(credentials).build()
    }

    /// The registry host.
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    /// The base URL (`http://127.0.0.1:5000/`).
    pub fn base_url(&self) -> &Url {
        &self.inner.base
    }

    /// A store for one repository of this registry.
    pub fn repository(&self, name: &str) -> Result<HttpStore> {
        validate_repository(name).map_err(|reason| Error::InvalidReference {
            input: format!("{}/{name}", self.inner.registry),
            reason,
        })?;
        Ok(HttpStore {
            client: self.clone(),
            repository: name.to_string(),
        })
    }

    /// The credentials the client currently uses (from its provider), e.g. to hand them to a
    /// builder process. Never logged.
    pub async fn current_credentials(&self) -> Result<Credentials> {
        let mut state = self.inner.state.lock().await;
        self.credentials(&mut state).await
    }

    /// Checks that the registry answers the API and accepts our credentials (`GET /v2/`).
    pub async fn ping(&self) -> Result<()> {
        let url = self.url("v2/")?;
        let resp = self
            .send(&Operation::Ping, "/v2/", &[], |c| c.get(url.clone()))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.error_for(resp, &Operation::Ping, "/v2/").await)
        }
    }

    pub(super) fn url(&self, path: &str) -> Result<Url> {
        self.inner
            .base
            .join(path)
            .map_err(|e| Error::config("URL", format!("{path}: {e}")))
    }

    /// The pull limit the registry last announced (Docker Hub's `ratelimit-limit` /
    /// `ratelimit-remaining`), `None` before any or without them.
    pub fn rate_limit(&self) -> Option<crate::store::RateLimit> {
        self.inner.rate_limit.lock().ok().and_then(|r| *r)
    }

    /// Records the pull limit an answer announces.
    pub(super) fn note_rate_limit(&self, headers: &reqwest::header::HeaderMap) {
        if let Some(r) = crate::store::RateLimit::from_headers(headers) {
            if let Ok(mut slot) = self.inner.rate_limit.lock() {
                *slot = Some(r);
            }
            crate::telemetry::rate_limit(&self.inner.registry, r.remaining);
            if r.is_low() {
                tracing::warn!(registry = %self.inner.registry, remaining = r.remaining, limit = r.limit, "the registry's pull limit is low");
            }
        }
    }

    pub(super) fn connect_error(&self, op: &Operation, loc: &str, mut e: reqwest::Error) -> Error {
        // An upload URL's query may carry a signed session state: never shown.
        if let Some(url) = e.url_mut() {
            url.set_query(None);
        }
        // What no retry can change fails at once: a redirect loop or a refused redirect, a
        // certificate the client does not trust, a request that cannot be built.
        if e.is_redirect() || e.is_builder() || untrusted_certificate(&e) {
            return Error::Protocol {
                registry: self.inner.registry.clone(),
                operation: op.clone(),
                location: loc.to_string(),
                reason: Transport(e).to_string(),
            };
        }
        // A host name that does not resolve (a typo), or a TLS client meeting a plain-HTTP
        // server: no retry changes either, so they fail at once (they were retried for 13 s).
        match transport_cause(&e) {
            Some(TransportCause::UnknownHost) => {
                return Error::HostUnknown {
                    registry: self.inner.registry.clone(),
                    reason: Transport(e).to_string(),
                }
            }
            Some(TransportCause::NotTls) => {
                return Error::Protocol {
                    registry: self.inner.registry.clone(),
                    operation: op.clone(),
                    location: loc.to_string(),
                    reason: format!(
                        "the registry does not answer TLS (a plain-HTTP registry? then say \
                         plain_http): {}",
                        Transport(e)
                    ),
                }
            }
            None => {}
        }
        Error::Connect {
            registry: self.inner.registry.clone(),
            operation: op.clone(),
            location: loc.to_string(),
            source: Box::new(Transport(e)),
        }
    }
}

/// A transport failure no retry changes.
enum TransportCause {
    /// The host name does not resolve.
    UnknownHost,
    /// The server does not speak TLS.
    NotTls,
}

/// What the transport error says, where it names a cause no retry changes. reqwest and hyper
/// expose these only through their causes' text (hyper-util's `dns error`, rustls's
/// `InvalidContentType` for non-TLS bytes), so this reads the chain of causes, as
/// [`untrusted_certificate`] does.
fn transport_cause(e: &reqwest::Error) -> Option<TransportCause> {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            // A resolver that could not be asked (`Temporary failure`) is worth a retry.
            if !text.contains("Temporary failure") {
                return Some(TransportCause::UnknownHost);
            }
        }
        if text.contains("InvalidContentType") || text.contains("corrupt message") {
            return Some(TransportCause::NotTls);
        }
        cause = c.source();
    }
    None
}

/// Whether the TLS handshake failed because the server's certificate is not trusted (rustls
/// names it "invalid peer certificate"): a retry meets the same certificate.
fn untrusted_certificate(e: &reqwest::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.to_string().contains("invalid peer certificate") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A transport error shown with its causes (`error following redirect for url (…): refusing
/// a redirect from https to plain http`): reqwest's own message names only the outermost.
#[derive(Debug)]
struct Transport(reqwest::Error);

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(&self.0);
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::error::Error for Transport {}

/// One reqwest client per distinct transport setting, for the whole process: the TLS root
/// store is loaded once, on the first handshake (see [`super::tls`]), and connections to one registry
/// are pooled across every `RegistryClient` that talks to it (source and destination of a
/// same-registry copy share them).
/// With `follow_redirects` false the client follows none (token requests).
pub(super) fn shared_http_client(
    config: &RegistryConfig,
    follow_redirects: bool,
) -> std::result::Result<reqwest::Client, String> {
    use std::collections::HashMap;
    use std::sync::{Mutex as StdMutex, OnceLock};
    type Key = (bool, Duration, bool);
    static CLIENTS: OnceLock<StdMutex<HashMap<Key, reqwest::Client>>> = OnceLock::new();
    let key = (config.tls_verify, config.connect_timeout, follow_redirects);
    let map = CLIENTS.get_or_init(Default::default);
    if let Some(c) = map.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("mirror-core/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(config.connect_timeout)
        .redirect(if follow_redirects {
            redirect_policy()
        } else {
            reqwest::redirect::Policy::none()
        })
        .use_preconfigured_tls(
            super::tls::client_config(config.tls_verify).map_err(|e| format!("TLS: {e}"))?,
        )
        .pool_max_idle_per_host(32)
        .build()
        .map_err(|e| e.to_string())?;
    if let Ok(mut m) = map.lock() {
        m.entry(key).or_insert_with(|| client.clone());
    }
    Ok(client)
}

/// Redirects: at most 10, and no scheme change on the same host and port. reqwest drops
/// `Authorization` when a redirect changes host or port (a blob served by a storage service,
/// even over plain HTTP, gets no credentials and is checked against its digest anyway), but
/// not when only the scheme changes: `https://h:5000` to `http://h:5000` would send the
/// credentials in clear, so it is refused.
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let next = attempt.url();
        let downgrade = attempt.previous().last().is_some_and(|prev| {
            prev.scheme() == "https"
                && next.scheme() != "https"
                && prev.host_str() == next.host_str()
                && prev.port_or_known_default() == next.port_or_known_default()
        });
        if attempt.previous().len() >= 10 {
            attempt.error("more than 10 redirects")
        } else if downgrade {
            attempt.error("refusing a redirect from https to plain http on the same host and port")
        } else {
            attempt.follow()
        }
    })
}
