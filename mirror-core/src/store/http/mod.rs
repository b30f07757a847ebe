//! The OCI distribution API over HTTP(S) as an [`ImageStore`].
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
pub mod credentials;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use self::auth::{
    parse_challenge, refresh_deadline, scope_key, AuthState, CachedToken, Challenge, TokenResponse,
};
use self::credentials::{static_provider, CredentialProvider, Credentials, DockerConfig, Secret};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{RawManifest, ACCEPTED_MANIFEST_TYPES};
use crate::reference::{
    is_loopback_host, normalise_host, validate_repository, DOCKER_HUB, DOCKER_HUB_API_HOST,
};
use crate::retry::RetryConfig;
use crate::store::{
    take_failure, Blob, BlobStream, ImageStore, ManifestHead, MountOutcome, StoreLocation,
    VerifyingStream,
};

/// Largest manifest accepted (as containerd does): protects memory from hostile registries.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
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
        }
    }
}

/// A client for one registry: connection pool, credentials, token cache.
///
/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    registry: String,
    base: Url,
    http: reqwest::Client,
    provider: Arc<dyn CredentialProvider>,
    state: Mutex<AuthState>,
    challenge_known: AtomicBool,
    chunked: AtomicBool,
    config: RegistryConfig,
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
    registry: String,
    provider: Option<Arc<dyn CredentialProvider>>,
    config: RegistryConfig,
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
        let registry = normalise_host(&self.registry).map_err(Error::Config)?;
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
        let registry = normalise_host(&self.registry).map_err(Error::Config)?;
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
            .map_err(|e| Error::Config(format!("registry {registry}: {e}")))?;
        let http = shared_http_client(&self.config)
            .map_err(|e| Error::Config(format!("HTTP client for {registry}: {e}")))?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                registry,
                base,
                http,
                provider: self
                    .provider
                    .unwrap_or_else(|| static_provider(Credentials::Anonymous)),
                state: Mutex::new(AuthState::default()),
                challenge_known: AtomicBool::new(false),
                chunked: AtomicBool::new(matches!(self.config.upload, UploadMode::Chunked(_))),
                config: self.config,
            }),
        })
    }
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
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
            .send("GET", "/v2/", &[], |c| c.get(url.clone()))
            .await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.error_for(resp, "GET", "/v2/").await)
        }
    }

    /// Every repository of the registry (`GET /v2/_catalog`, following `Link` pagination).
    ///
    /// Not every registry serves the catalog (Docker Hub does not); those answer an error.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Option<Vec<String>>,
        }
        let scopes = vec!["registry:catalog:*".to_string()];
        let mut url = self.url("v2/_catalog")?;
        url.query_pairs_mut().append_pair("n", "1000");
        let mut out = Vec::new();
        for _ in 0..100_000 {
            let u = url.clone();
            let resp = self
                .send("GET catalog", "/v2/_catalog", &scopes, |c| c.get(u.clone()))
                .await?;
            if !resp.status().is_success() {
                return Err(self.error_for(resp, "GET catalog", "/v2/_catalog").await);
            }
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_next_link);
            let body = resp
                .bytes()
                .await
                .map_err(|e| self.connect_error("GET catalog", "/v2/_catalog", e))?;
            let page: Catalog = serde_json::from_slice(&body).map_err(|e| Error::Http {
                registry: self.inner.registry.clone(),
                operation: "GET catalog".into(),
                location: "/v2/_catalog".into(),
                status: 200,
                message: format!("unreadable catalog: {e}"),
            })?;
            let got = page.repositories.unwrap_or_default();
            let empty = got.is_empty();
            out.extend(got);
            match next {
                Some(n) if !empty => {
                    url = self
                        .inner
                        .base
                        .join(&n)
                        .map_err(|e| Error::Config(format!("Link {n:?}: {e}")))?;
                    if url.host_str() != self.inner.base.host_str() {
                        return Err(Error::Config(format!(
                            "registry {} paginates to another host ({url}); refusing",
                            self.inner.registry
                        )));
                    }
                }
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.inner
            .base
            .join(path)
            .map_err(|e| Error::Config(format!("URL {path}: {e}")))
    }

    fn connect_error(&self, op: &str, loc: &str, e: reqwest::Error) -> Error {
        Error::Connect {
            registry: self.inner.registry.clone(),
            operation: op.to_string(),
            location: loc.to_string(),
            source: Box::new(e),
        }
    }

    async fn credentials(&self, state: &mut AuthState) -> Result<Credentials> {
        let fresh = match &state.credentials {
            Some((c, None)) => Some(c.clone()),
            Some((c, Some(exp)))
                if std::time::SystemTime::now() + Duration::from_secs(30) < *exp =>
            {
                Some(c.clone())
            }
            _ => None,
        };
        if let Some(c) = fresh {
            return Ok(c);
        }
        let e = self.inner.provider.credentials().await?;
        state.credentials = Some((e.credentials.clone(), e.expires_at));
        Ok(e.credentials)
    }

    /// Learns the registry's challenge once with `GET /v2/`, so that requests with streaming
    /// bodies are sent with the right credentials the first time.
    async fn learn_challenge(&self) -> Result<()> {
        if self.inner.challenge_known.load(Ordering::Acquire) {
            return Ok(());
        }
        let url = self.url("v2/")?;
        let resp = self
            .inner
            .config
            .retry
            .run(|| async {
                let resp = self
                    .inner
                    .http
                    .get(url.clone())
                    .timeout(self.inner.config.request_timeout)
                    .send()
                    .await
                    .map_err(|e| self.connect_error("GET", "/v2/", e))?;
                if retryable_status(resp.status()) {
                    return Err(status_error(&self.inner.registry, "GET", "/v2/", &resp));
                }
                Ok(resp)
            })
            .await?;
        let challenge = match resp.status() {
            StatusCode::UNAUTHORIZED => challenge_of(resp.headers()),
            _ => None,
        };
        let mut state = self.inner.state.lock().await;
        if !self.inner.challenge_known.load(Ordering::Acquire) {
            state.challenge = challenge;
            self.inner.challenge_known.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// The `Authorization` header value for an operation needing `scopes`.
    async fn authorization(&self, scopes: &[String]) -> Result<Option<String>> {
        self.learn_challenge().await?;
        let mut state = self.inner.state.lock().await;
        let creds = self.credentials(&mut state).await?;
        if let Credentials::Bearer(t) = &creds {
            return Ok(Some(format!("Bearer {}", t.expose())));
        }
        match state.challenge.clone() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(match &creds {
                Credentials::Basic { username, password } => Some(basic_header(username, password)),
                _ => None,
            }),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = scope_key(scopes);
                if let Some(t) = state.tokens.get(&key) {
                    if Instant::now() < t.refresh_at {
                        return Ok(Some(format!("Bearer {}", t.token.expose())));
                    }
                }
                let (token, ttl) = self
                    .inner
                    .config
                    .retry
                    .run(|| self.fetch_token(&realm, service.as_deref(), scopes, &creds))
                    .await?;
                let header = format!("Bearer {}", token.expose());
                state.tokens.insert(
                    key,
                    CachedToken {
                        token,
                        refresh_at: refresh_deadline(Instant::now(), ttl),
                    },
                );
                Ok(Some(header))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: &Credentials,
    ) -> Result<(Secret, Duration)> {
        let registry = &self.inner.registry;
        let mut url = Url::parse(realm).map_err(|e| {
            Error::Config(format!(
                "registry {registry} sent token realm {realm:?}: {e}"
            ))
        })?;
        if url.scheme() != "https"
            && !(url.scheme() == "http" && url.host_str().is_some_and(is_loopback_host))
            && self.inner.base.scheme() == "https"
        {
            return Err(Error::Config(format!(
                "registry {registry} sent a token realm over plain HTTP ({realm}); refusing to send credentials there"
            )));
        }
        let req = match creds {
            Credentials::IdentityToken(refresh) => {
                let mut form: Vec<(&str, &str)> = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.expose()),
                    ("client_id", "mirror-core"),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                let scope = scopes.join(" ");
                if !scope.is_empty() {
                    form.push(("scope", &scope));
                }
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                self.inner
                    .http
                    .post(url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            _ => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                }
                let req = self.inner.http.get(url);
                match creds {
                    Credentials::Basic { username, password } => {
                        req.header(AUTHORIZATION, basic_header(username, password))
                    }
                    _ => req,
                }
            }
        };
        let resp = req
            .timeout(self.inner.config.request_timeout)
            .send()
            .await
            .map_err(|e| self.connect_error("GET", "token", e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Unauthorized {
                registry: registry.clone(),
                message: if creds.is_anonymous() {
                    "the token server requires credentials".into()
                } else {
                    format!(
                        "the token server refused the credentials (HTTP {})",
                        status.as_u16()
                    )
                },
            });
        }
        if !status.is_success() {
            return Err(self.error_for(resp, "GET", "token").await);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.connect_error("GET", "token", e))?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| Error::Unauthorized {
                registry: registry.clone(),
                message: format!("unreadable token server answer: {e}"),
            })?;
        parsed.into_token().ok_or_else(|| Error::Unauthorized {
            registry: registry.clone(),
            message: "the token server answered without a token".into(),
        })
    }

    /// Sends a request built by `build` (called again for the retry), authenticating for
    /// `scopes`; on a 401 it learns the challenge, drops cached tokens and retries once.
    /// Sends a request built by `build` (called again for each attempt), authenticating for
    /// `scopes`. A 401 makes it learn the challenge, drop cached tokens and try once more.
    /// Connection errors, 5xx, 408 and 429 are retried per [`RetryConfig`]; the last answer is
    /// returned as it is for the caller to map.
    async fn send<F>(&self, op: &str, loc: &str, scopes: &[String], build: F) -> Result<Response>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = self.send_once(op, loc, scopes, &build).await;
            let transient = match &result {
                Err(e) => Some(e),
                Ok(resp) if retryable_status(resp.status()) => None,
                Ok(_) => return result,
            };
            // Turn a retryable answer into the error it stands for, to decide and to wait.
            let as_error;
            let error = match transient {
                Some(e) => e,
                None => {
                    let Ok(resp) = &result else { return result };
                    as_error = status_error(&self.inner.registry, op, loc, resp);
                    &as_error
                }
            };
            match self.inner.config.retry.next_wait(attempt, error, started) {
                Some(wait) => {
                    tracing::debug!(registry = %self.inner.registry, %op, %loc, attempt, ?wait, error = %error, "retrying");
                    tokio::time::sleep(wait).await;
                }
                None => return result,
            }
        }
    }

    /// One attempt of [`Self::send`] (with its one re-authentication), never retried: for
    /// requests that are not safe to repeat (chunk uploads).
    async fn send_once<F>(
        &self,
        op: &str,
        loc: &str,
        scopes: &[String],
        build: &F,
    ) -> Result<Response>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        let mut reauthenticated = false;
        loop {
            let auth = self.authorization(scopes).await?;
            let mut req = build(&self.inner.http).timeout(self.inner.config.request_timeout);
            if let Some(a) = auth {
                req = req.header(AUTHORIZATION, a);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| self.connect_error(op, loc, e))?;
            if resp.status() == StatusCode::UNAUTHORIZED && !reauthenticated {
                reauthenticated = true;
                self.on_unauthorized(scopes, resp.headers()).await;
                continue;
            }
            return Ok(resp);
        }
    }

    async fn on_unauthorized(&self, scopes: &[String], headers: &HeaderMap) {
        let mut state = self.inner.state.lock().await;
        if let Some(c) = challenge_of(headers) {
            state.challenge = Some(c);
        }
        state.tokens.remove(&scope_key(scopes));
        state.credentials = None;
        self.inner.provider.invalidate();
    }

    /// Maps an unexpected response to an error, in one place.
    async fn error_for(&self, resp: Response, op: &str, loc: &str) -> Error {
        let status = resp.status();
        let registry = self.inner.registry.clone();
        let challenge_error = challenge_of(resp.headers()).and_then(|c| match c {
            Challenge::Bearer { error, .. } => error,
            Challenge::Basic => None,
        });
        let retry_after = retry_after(resp.headers());
        let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let mut message = parsed
            .errors
            .iter()
            .map(|e| {
                if e.message.is_empty() {
                    e.code.clone()
                } else {
                    format!("{}: {}", e.code, e.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        if message.is_empty() {
            message = String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string();
        }
        if message.is_empty() {
            message = status.canonical_reason().unwrap_or("").to_string();
        }
        match status {
            StatusCode::UNAUTHORIZED => Error::Unauthorized {
                registry,
                message: match challenge_error {
                    Some(e) => format!(
                        "{op} {loc}: {message} ({e}: the credentials lack the access this needs)"
                    ),
                    None => format!("{op} {loc}: {message}"),
                },
            },
            StatusCode::FORBIDDEN => Error::Denied {
                registry,
                location: loc.to_string(),
                message,
            },
            StatusCode::TOO_MANY_REQUESTS => Error::RateLimited {
                registry,
                retry_after,
            },
            _ => Error::Http {
                registry,
                operation: op.to_string(),
                location: loc.to_string(),
                status: status.as_u16(),
                message,
            },
        }
    }
}

/// One reqwest client per distinct transport setting, for the whole process: the TLS root
/// store is loaded once (it costs milliseconds per client) and connections to one registry
/// are pooled across every `RegistryClient` that talks to it (source and destination of a
/// same-registry copy share them).
fn shared_http_client(
    config: &RegistryConfig,
) -> std::result::Result<reqwest::Client, reqwest::Error> {
    use std::collections::HashMap;
    use std::sync::{Mutex as StdMutex, OnceLock};
    static CLIENTS: OnceLock<StdMutex<HashMap<(bool, Duration), reqwest::Client>>> =
        OnceLock::new();
    let key = (config.tls_verify, config.connect_timeout);
    let map = CLIENTS.get_or_init(Default::default);
    if let Some(c) = map.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("mirror-core/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(config.connect_timeout)
        .danger_accept_invalid_certs(!config.tls_verify)
        .pool_max_idle_per_host(32)
        .build()?;
    if let Ok(mut m) = map.lock() {
        m.entry(key).or_insert_with(|| client.clone());
    }
    Ok(client)
}

fn retryable_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The error a retryable status stands for (without reading the body).
fn status_error(registry: &str, op: &str, loc: &str, resp: &Response) -> Error {
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        return Error::RateLimited {
            registry: registry.to_string(),
            retry_after: retry_after(resp.headers()),
        };
    }
    Error::Http {
        registry: registry.to_string(),
        operation: op.to_string(),
        location: loc.to_string(),
        status: resp.status().as_u16(),
        message: resp.status().canonical_reason().unwrap_or("").to_string(),
    }
}

fn basic_header(username: &str, password: &Secret) -> String {
    let raw = format!("{username}:{}", password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn challenge_of(headers: &HeaderMap) -> Option<Challenge> {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(parse_challenge)
        .next()
}

async fn read_limited(resp: Response, limit: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    Some(out)
}

/// One repository of a registry, as an [`ImageStore`].
#[derive(Clone)]
pub struct HttpStore {
    client: RegistryClient,
    repository: String,
}

impl std::fmt::Debug for HttpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HttpStore({}/{})",
            self.client.inner.registry, self.repository
        )
    }
}

impl HttpStore {
    /// The client this store uses.
    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// The repository path.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    fn pull(&self) -> Vec<String> {
        vec![format!("repository:{}:pull", self.repository)]
    }

    fn push(&self) -> Vec<String> {
        vec![format!("repository:{}:pull,push", self.repository)]
    }

    fn delete_scope(&self) -> Vec<String> {
        vec![format!("repository:{}:delete,pull,push", self.repository)]
    }

    fn loc(&self, reference: &str) -> String {
        let sep = if reference.contains(':') { "@" } else { ":" };
        format!(
            "{}/{}{sep}{reference}",
            self.client.inner.registry, self.repository
        )
    }

    fn url(&self, tail: &str) -> Result<Url> {
        self.client.url(&format!("v2/{}/{tail}", self.repository))
    }

    fn check_reference(&self, reference: &str) -> Result<()> {
        let ok = if reference.contains(':') {
            Digest::parse(reference).is_ok()
        } else {
            crate::reference::validate_tag(reference).is_ok()
        };
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidReference {
                input: reference.to_string(),
                reason: "expected a tag or a digest".into(),
            })
        }
    }

    async fn cancel_upload(&self, location: &Url) {
        let scopes = self.push();
        let url = location.clone();
        if let Err(e) = self
            .client
            .send("DELETE", "upload session", &scopes, |c| {
                c.delete(url.clone())
            })
            .await
        {
            tracing::debug!(error = %e, "cancelling an upload session failed");
        }
    }

    /// Opens an upload session and returns its URL.
    async fn start_upload(&self, digest: &Digest) -> Result<Url> {
        let url = self.url("blobs/uploads/")?;
        let loc = self.loc(&digest.to_string());
        let resp = self
            .client
            .send("POST", &loc, &self.push(), |c| {
                c.post(url.clone()).header(CONTENT_LENGTH, "0")
            })
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.client.error_for(resp, "POST blob upload", &loc).await);
        }
        self.location_of(&resp, &loc)
    }

    fn location_of(&self, resp: &Response, loc: &str) -> Result<Url> {
        let l = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Http {
                registry: self.client.inner.registry.clone(),
                operation: "blob upload".into(),
                location: loc.to_string(),
                status: resp.status().as_u16(),
                message: "the registry sent no upload Location".into(),
            })?;
        self.client
            .inner
            .base
            .join(l)
            .map_err(|e| Error::Config(format!("upload location {l:?}: {e}")))
    }

    async fn put_monolithic(
        &self,
        session: &Url,
        digest: &Digest,
        size: u64,
        body: VerifyingStream,
    ) -> Result<Response> {
        let mut url = session.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let auth = self.client.authorization(&self.push()).await?;
        let mut req = self
            .client
            .inner
            .http
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size.to_string())
            .body(reqwest::Body::wrap_stream(body));
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        req.send().await.map_err(|e| {
            self.client
                .connect_error("PUT blob", &self.loc(&digest.to_string()), e)
        })
    }

    async fn put_chunked(
        &self,
        session: &Url,
        digest: &Digest,
        chunk_size: usize,
        mut body: VerifyingStream,
    ) -> Result<Response> {
        let loc = self.loc(&digest.to_string());
        let mut session = session.clone();
        let mut offset: u64 = 0;
        let mut buf = BytesMut::with_capacity(chunk_size);
        let mut done = false;
        while !done {
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(e),
                None => done = true,
            }
            if buf.len() >= chunk_size || (done && !buf.is_empty()) {
                let data: Bytes = buf.split().freeze();
                let end = offset + data.len() as u64 - 1;
                let url = session.clone();
                let resp = self
                    .client
                    .send_once("PATCH blob", &loc, &self.push(), &|c: &reqwest::Client| {
                        c.patch(url.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header("Content-Range", format!("{offset}-{end}"))
                            .header(CONTENT_LENGTH, data.len().to_string())
                            .body(data.clone())
                    })
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(self.client.error_for(resp, "PATCH blob", &loc).await);
                }
                session = self.location_of(&resp, &loc)?;
                offset = end + 1;
            }
        }
        let mut url = session;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        self.client
            .send("PUT blob", &loc, &self.push(), |c| {
                c.put(url.clone()).header(CONTENT_LENGTH, "0")
            })
            .await
    }
}

impl HttpStore {
    async fn finish_upload(
        &self,
        session: &Url,
        digest: &Digest,
        size: u64,
        data: BlobStream,
        loc: &str,
    ) -> Result<()> {
        let body = VerifyingStream::new(data, digest.clone(), Some(size));
        let failure = body.failure();
        let chunk = match self.client.inner.config.upload {
            UploadMode::Chunked(n) => Some(n.max(1)),
            UploadMode::Auto if self.client.inner.chunked.load(Ordering::Relaxed) => {
                Some(DEFAULT_CHUNK)
            }
            _ => None,
        };
        let result = match chunk {
            Some(n) => self.put_chunked(session, digest, n, body).await,
            None => self.put_monolithic(session, digest, size, body).await,
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.cancel_upload(session).await;
                return Err(take_failure(&failure).unwrap_or(e));
            }
        };
        if let Some(e) = take_failure(&failure) {
            self.cancel_upload(session).await;
            return Err(e);
        }
        let status = resp.status();
        if status == StatusCode::CREATED || status.is_success() {
            return Ok(());
        }
        if status == StatusCode::UNAUTHORIZED {
            // The token expired or was revoked during the upload: forget it so that the
            // restarted upload authenticates afresh.
            self.client
                .on_unauthorized(&self.push(), resp.headers())
                .await;
        }
        self.cancel_upload(session).await;
        if chunk.is_none()
            && refuses_monolithic(status)
            && self.client.inner.config.upload == UploadMode::Auto
        {
            tracing::info!(registry = %self.client.inner.registry, %status, "monolithic upload refused; switching to chunked uploads");
            self.client.inner.chunked.store(true, Ordering::Relaxed);
        }
        Err(self.client.error_for(resp, "PUT blob", loc).await)
    }
}

/// Cancels an upload session when dropped while armed (the upload future was dropped).
struct SessionGuard {
    store: Option<HttpStore>,
    session: Url,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(store) = self.store.take() {
            let session = self.session.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { store.cancel_upload(&session).await });
            }
        }
    }
}

/// The statuses with which a registry refuses a monolithic upload and wants chunks.
fn refuses_monolithic(status: StatusCode) -> bool {
    matches!(status.as_u16(), 405 | 413 | 416 | 501)
}

#[async_trait]
impl ImageStore for HttpStore {
    fn location(&self) -> StoreLocation {
        StoreLocation::Registry {
            registry: self.client.inner.registry.clone(),
            repository: self.repository.clone(),
        }
    }

    async fn head_manifest(&self, reference: &str) -> Result<Option<ManifestHead>> {
        self.check_reference(reference)?;
        let url = self.url(&format!("manifests/{reference}"))?;
        let loc = self.loc(reference);
        let accept = ACCEPTED_MANIFEST_TYPES.join(", ");
        let resp = self
            .client
            .send("HEAD manifest", &loc, &self.pull(), |c| {
                c.head(url.clone()).header(ACCEPT, accept.clone())
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => {
                let h = resp.headers();
                let media_type = h
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let size = h
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let digest = h
                    .get("Docker-Content-Digest")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| Digest::parse(v).ok());
                match digest {
                    Some(digest) => Ok(Some(ManifestHead {
                        digest,
                        media_type,
                        size,
                    })),
                    // Some registries omit the digest on HEAD: fall back to GET.
                    None => {
                        let m = self.get_manifest(reference).await?;
                        Ok(Some(ManifestHead {
                            digest: m.digest,
                            size: m.bytes.len() as u64,
                            media_type: m.media_type,
                        }))
                    }
                }
            }
            _ => Err(self.client.error_for(resp, "HEAD manifest", &loc).await),
        }
    }

    async fn get_manifest(&self, reference: &str) -> Result<RawManifest> {
        self.check_reference(reference)?;
        let url = self.url(&format!("manifests/{reference}"))?;
        let loc = self.loc(reference);
        let accept = ACCEPTED_MANIFEST_TYPES.join(", ");
        let resp = self
            .client
            .send("GET manifest", &loc, &self.pull(), |c| {
                c.get(url.clone()).header(ACCEPT, accept.clone())
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => return Err(Error::manifest_not_found(loc)),
            s if s.is_success() => {}
            _ => return Err(self.client.error_for(resp, "GET manifest", &loc).await),
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let declared_digest = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok());
        if let Some(len) = resp.content_length() {
            if len > MAX_MANIFEST_BYTES as u64 {
                return Err(Error::InvalidManifest {
                    location: loc,
                    reason: format!("{len} bytes, more than the {MAX_MANIFEST_BYTES} accepted"),
                });
            }
        }
        let mut body = BytesMut::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.client.connect_error("GET manifest", &loc, e))?;
            if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(Error::InvalidManifest {
                    location: loc,
                    reason: format!("more than the {MAX_MANIFEST_BYTES} bytes accepted"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let m = RawManifest::detect(body.freeze(), content_type.as_deref(), &loc)?;
        if let Some(d) = declared_digest {
            d.verify(&m.bytes)?;
        }
        Ok(m)
    }

    async fn put_manifest(&self, reference: &str, manifest: &RawManifest) -> Result<()> {
        self.check_reference(reference)?;
        let url = self.url(&format!("manifests/{reference}"))?;
        let loc = self.loc(reference);
        let resp = self
            .client
            .send("PUT manifest", &loc, &self.push(), |c| {
                c.put(url.clone())
                    .header(CONTENT_TYPE, manifest.media_type.clone())
                    .body(manifest.bytes.clone())
            })
            .await?;
        if !resp.status().is_success() {
            return Err(self.client.error_for(resp, "PUT manifest", &loc).await);
        }
        if let Some(d) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok())
        {
            if d.algorithm() == manifest.digest.algorithm() && d != manifest.digest {
                return Err(Error::DigestMismatch {
                    expected: manifest.digest.clone(),
                    actual: d,
                });
            }
        }
        Ok(())
    }

    async fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        let reference = digest.to_string();
        let url = self.url(&format!("manifests/{reference}"))?;
        let loc = self.loc(&reference);
        let resp = self
            .client
            .send("DELETE manifest", &loc, &self.delete_scope(), |c| {
                c.delete(url.clone())
            })
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Err(Error::manifest_not_found(loc)),
            s if s.is_success() => Ok(()),
            _ => Err(self.client.error_for(resp, "DELETE manifest", &loc).await),
        }
    }

    async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let loc = self.loc(&digest.to_string());
        let resp = self
            .client
            .send("HEAD blob", &loc, &self.pull(), |c| c.head(url.clone()))
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(self.client.error_for(resp, "HEAD blob", &loc).await),
        }
    }

    async fn get_blob(&self, digest: &Digest) -> Result<Blob> {
        let url = self.url(&format!("blobs/{digest}"))?;
        let loc = self.loc(&digest.to_string());
        // No overall timeout on the body of a blob: it may be large. `send` applies the request
        // timeout to the headers only since the body is streamed after it returns.
        let auth = self.client.authorization(&self.pull()).await?;
        let build = |auth: Option<String>| {
            let mut req = self.client.inner.http.get(url.clone());
            if let Some(a) = auth {
                req = req.header(AUTHORIZATION, a);
            }
            req
        };
        let mut resp = build(auth)
            .send()
            .await
            .map_err(|e| self.client.connect_error("GET blob", &loc, e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            self.client
                .on_unauthorized(&self.pull(), resp.headers())
                .await;
            let auth = self.client.authorization(&self.pull()).await?;
            resp = build(auth)
                .send()
                .await
                .map_err(|e| self.client.connect_error("GET blob", &loc, e))?;
        }
        match resp.status() {
            StatusCode::NOT_FOUND => return Err(Error::blob_not_found(loc)),
            s if s.is_success() => {}
            _ => return Err(self.client.error_for(resp, "GET blob", &loc).await),
        }
        let size = resp.content_length();
        let client = self.client.clone();
        let stream = resp
            .bytes_stream()
            .map_err(move |e| client.connect_error("GET blob", &loc, e));
        Ok(Blob {
            size,
            stream: Box::pin(stream),
        })
    }

    async fn put_blob(&self, digest: &Digest, size: u64, data: BlobStream) -> Result<()> {
        let loc = self.loc(&digest.to_string());
        let session = self.start_upload(digest).await?;
        // If this future is dropped mid-upload, cancel the session in the background.
        let mut guard = SessionGuard {
            store: Some(self.clone()),
            session: session.clone(),
        };
        let result = self.finish_upload(&session, digest, size, data, &loc).await;
        guard.store = None;
        result
    }

    async fn mount_blob(&self, digest: &Digest, from_repository: &str) -> Result<MountOutcome> {
        if validate_repository(from_repository).is_err() || from_repository == self.repository {
            return Ok(MountOutcome::NotMounted);
        }
        let mut url = self.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from_repository);
        let loc = self.loc(&digest.to_string());
        let scopes = vec![
            format!("repository:{}:pull,push", self.repository),
            format!("repository:{from_repository}:pull"),
        ];
        let resp = self
            .client
            .send("POST blob mount", &loc, &scopes, |c| {
                c.post(url.clone()).header(CONTENT_LENGTH, "0")
            })
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => {
                // The registry started a normal upload instead: close it, the caller uploads.
                if let Ok(session) = self.location_of(&resp, &loc) {
                    self.cancel_upload(&session).await;
                }
                Ok(MountOutcome::NotMounted)
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                tracing::debug!(status = %resp.status(), from = from_repository, "mount declined");
                Ok(MountOutcome::NotMounted)
            }
            _ => Err(self.client.error_for(resp, "POST blob mount", &loc).await),
        }
    }

    async fn list_tags(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Tags {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let loc = format!("{}/{}", self.client.inner.registry, self.repository);
        let mut url = self.url("tags/list")?;
        url.query_pairs_mut().append_pair("n", "1000");
        let mut out = Vec::new();
        let mut pages = 0;
        loop {
            pages += 1;
            if pages > 10_000 {
                return Err(Error::Http {
                    registry: self.client.inner.registry.clone(),
                    operation: "GET tags".into(),
                    location: loc,
                    status: 200,
                    message: "tag list pagination does not end".into(),
                });
            }
            let u = url.clone();
            let resp = self
                .client
                .send("GET tags", &loc, &self.pull(), |c| c.get(u.clone()))
                .await?;
            if resp.status() == StatusCode::NOT_FOUND {
                // NAME_UNKNOWN: the repository does not exist yet, so it has no tags.
                return Ok(out);
            }
            if !resp.status().is_success() {
                return Err(self.client.error_for(resp, "GET tags", &loc).await);
            }
            let next = resp
                .headers()
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_next_link);
            let body = resp
                .bytes()
                .await
                .map_err(|e| self.client.connect_error("GET tags", &loc, e))?;
            let page: Tags = serde_json::from_slice(&body).map_err(|e| Error::Http {
                registry: self.client.inner.registry.clone(),
                operation: "GET tags".into(),
                location: loc.clone(),
                status: 200,
                message: format!("unreadable tag list: {e}"),
            })?;
            out.extend(page.tags.unwrap_or_default());
            match next {
                Some(n) => {
                    url = self
                        .client
                        .inner
                        .base
                        .join(&n)
                        .map_err(|e| Error::Config(format!("Link {n:?}: {e}")))?;
                    if url.host_str() != self.client.inner.base.host_str() {
                        return Err(Error::Config(format!(
                            "registry {} paginates to another host ({url}); refusing",
                            self.client.inner.registry
                        )));
                    }
                }
                None => return Ok(out),
            }
        }
    }
}

/// Extracts the `rel="next"` target of a `Link` header (`<url>; rel="next"`).
pub fn parse_next_link(header: &str) -> Option<String> {
    // Split on the commas that separate links, not on commas inside `<…>`; a malformed link
    // is skipped rather than hiding the others.
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in header.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&header[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&header[start..]);
    for part in parts {
        let part = part.trim();
        let Some(rest) = part.strip_prefix('<') else {
            continue;
        };
        let Some((target, params)) = rest.split_once('>') else {
            continue;
        };
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        if is_next && !target.is_empty() {
            return Some(target.to_string());
        }
    }
    None
}

/// True when `e` is a refusal of a monolithic upload after which the client switched to
/// chunked uploads: the blob can be sent again from a fresh stream.
pub fn is_upload_mode_switch(e: &Error) -> bool {
    matches!(e, Error::Http { status, operation, .. } if operation == "PUT blob" && refuses_monolithic(StatusCode::from_u16(*status).unwrap_or(StatusCode::OK)))
}

#[cfg(test)]
mod tests {
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
