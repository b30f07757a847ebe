//! [`RestClient`]: the control-plane client of providers without an SDK (Artifact Registry,
//! Scaleway), written once.
//!
//! A provider gives the base URL, its authentication ([`RestAuth`]) and its dialect
//! ([`RestDialect`]: how an error body reads, and its [`ErrorTable`](super::ErrorTable)
//! through `classify`); the client does the rest:
//!
//! - every call is retried under the [`RetryConfig`] while the error's kind is transient
//!   (transport failures, rate limits, unavailability), after the answer's `Retry-After` when
//!   it gave one;
//! - a refused credential ([`Kind::Unauthenticated`]) is reported to the [`RestAuth`], which
//!   may ask for the call to be sent once more with fresh credentials;
//! - bodies are read whole up to [`MAX_CONTROL_PLANE_BYTES`], never further; an empty success
//!   body reads as `{}`;
//! - listings follow every page ([`Paging`]: numbered pages with a total, or page tokens),
//!   dropping duplicates and refusing a token seen twice;
//! - long-running work is polled ([`RestClient::poll`]) with a doubling pause up to a cap,
//!   until a deadline;
//! - no redirect is followed (it would carry the credentials elsewhere).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::provider::config::DEFAULT_CONNECT_TIMEOUT;
use crate::provider::error::{ControlPlaneError, Kind, Origin};
use crate::retry::{Poll, Retry, RetryConfig};
use crate::store::http::{read_capped, Capped, MAX_CONTROL_PLANE_BYTES};

/// How a provider's API authenticates its calls.
///
/// # Contract
///
/// `apply` adds the credentials to one request (fetching them if needed; a failure is of
/// kind [`Kind::Credentials`] and holds no secret). `refused` is called when an answer said
/// the credentials were refused; it returns true when one more attempt with fresh ones is
/// worth it (at most once per call).
#[async_trait]
pub trait RestAuth: Send + Sync + fmt::Debug {
    /// Adds the credentials to `request`.
    async fn apply(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ControlPlaneError>;

    /// The credentials were refused: whether to send the call once more.
    fn refused(&self) -> bool {
        false
    }
}

/// The provider's reading of its API's answers.
#[derive(Clone, Copy)]
pub struct RestDialect {
    /// The code (empty when there is none) and the message of an error answer's body.
    pub read_error: fn(status: u16, body: &[u8]) -> (String, String),
    /// The kind of an error answer with `code` to `operation` on `target` (the provider's
    /// [`ErrorTable`](super::ErrorTable), refined by what the call was about).
    pub classify: fn(operation: &str, target: &str, status: u16, code: &str) -> Kind,
}

impl fmt::Debug for RestDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RestDialect")
    }
}

/// How a listing is paged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Paging {
    /// `page` (from 1) and `page_size`; each answer says `total_count`. Items are told apart
    /// by their `id` (pages shift while items are deleted).
    Numbered {
        /// Items asked per page.
        page_size: u32,
    },
    /// `pageSize` and `pageToken`; each answer gives `nextPageToken` (empty at the end).
    Token {
        /// Items asked per page.
        page_size: u32,
    },
}

/// The most pages a listing follows.
pub const MAX_PAGES: u32 = 100_000;

/// A provider's REST control plane (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: Url,
    origin: Origin,
    auth: Arc<dyn RestAuth>,
    dialect: RestDialect,
    retry: RetryConfig,
    request_timeout: Duration,
    user_agent: &'static str,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base.as_str())
            .field("origin", &self.origin.registry)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

fn http_client(
    origin: &Origin,
    user_agent: &str,
    connect: Duration,
) -> Result<reqwest::Client, ControlPlaneError> {
    reqwest::Client::builder()
        .user_agent(user_agent)
        .connect_timeout(connect)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| origin.config("endpoint", format!("HTTP client: {e}")))
}

impl RestClient {
    /// A client of the API at `base` (`https://api.example.com[/path]`); errors name
    /// `origin`. `key` names the setting `base` came from, for errors.
    pub fn new(
        base: &str,
        key: &str,
        origin: Origin,
        auth: Arc<dyn RestAuth>,
        dialect: RestDialect,
        user_agent: &'static str,
    ) -> Result<Self, ControlPlaneError> {
        let url = Url::parse(base).map_err(|e| origin.config(key, format!("{base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(origin.config(
                key,
                format!("{base:?}: expected http(s)://host[:port][/path]"),
            ));
        }
        Ok(RestClient {
            http: http_client(&origin, user_agent, DEFAULT_CONNECT_TIMEOUT)?,
            base: url,
            origin,
            auth,
            dialect,
            retry: RetryConfig::default(),
            request_timeout: crate::provider::config::DEFAULT_REQUEST_TIMEOUT,
            user_agent,
        })
    }

    /// With this retry policy.
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// With this timeout per request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// With the retry policy and timeouts of `common`, the defaults of this API where it
    /// sets none.
    pub fn with_settings(
        self,
        common: &crate::provider::CommonSettings,
        request: Duration,
        connect: Duration,
    ) -> Result<Self, ControlPlaneError> {
        let this = self.with_retry(common.retry());
        let this = this.with_request_timeout(common.request_timeout.unwrap_or(request));
        this.with_connect_timeout(common.connect_timeout.unwrap_or(connect))
    }

    /// With this TCP connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Result<Self, ControlPlaneError> {
        self.http = http_client(&self.origin, self.user_agent, timeout)?;
        Ok(self)
    }

    /// Who answers, for errors.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `<base>/<segments…>`, each segment escaped on its own (a `/` in one is `%2F`).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// One call with retries (see the module docs): the JSON answer.
    pub async fn call(
        &self,
        operation: &'static str,
        target: &str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, ControlPlaneError> {
        self.retry
            .run_with(
                || self.attempt(operation, target, &method, &url, body),
                |e: &ControlPlaneError| {
                    let verdict = e.retry();
                    if verdict != Retry::No {
                        tracing::debug!(operation, target, error = %e, "retrying a control-plane call");
                    }
                    verdict
                },
            )
            .await
    }

    /// [`call`](Self::call), the answer read as `T`.
    pub async fn call_as<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        target: &str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, ControlPlaneError> {
        let v = self.call(operation, target, method, url, body).await?;
        self.read(operation, target, v)
    }

    /// `value` read as `T` (a `null` field reads as an absent one), or a protocol error of
    /// `operation` on `target`.
    pub fn read<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        target: &str,
        mut value: Value,
    ) -> Result<T, ControlPlaneError> {
        fn no_nulls(v: &mut Value) {
            if let Value::Object(m) = v {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(no_nulls);
            }
        }
        no_nulls(&mut value);
        serde_json::from_value(value).map_err(|e| {
            self.origin
                .protocol(operation, target, format!("cannot read the answer: {e}"))
        })
    }

    /// One attempt; a refused credential may be sent once more.
    async fn attempt(
        &self,
        operation: &'static str,
        target: &str,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Value, ControlPlaneError> {
        let mut again = true;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .timeout(self.request_timeout)
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            let req = self.auth.apply(req).await?;
            let result = match req.send().await {
                Ok(resp) => self.answer(operation, target, resp).await,
                Err(e) => Err(self.origin.transport(operation, target.to_string(), e)),
            };
            match result {
                Err(e) if e.kind() == Kind::Unauthenticated && again && self.auth.refused() => {
                    again = false;
                }
                other => return other,
            }
        }
    }

    async fn answer(
        &self,
        operation: &'static str,
        target: &str,
        resp: reqwest::Response,
    ) -> Result<Value, ControlPlaneError> {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_capped(resp, MAX_CONTROL_PLANE_BYTES)
            .await
            .map_err(|e| match e {
                Capped::Transport(e) => self.origin.transport(operation, target.to_string(), e),
                _ => self.origin.protocol(
                    operation,
                    target.to_string(),
                    format!("an answer of more than {MAX_CONTROL_PLANE_BYTES} bytes"),
                ),
            })?;
        if (200..300).contains(&status) {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_slice(&body).map_err(|e| {
                self.origin.protocol(
                    operation,
                    target.to_string(),
                    format!("the answer is not JSON: {e}"),
                )
            });
        }
        let (code, message) = (self.dialect.read_error)(status, &body);
        let kind = (self.dialect.classify)(operation, target, status, &code);
        Err(self
            .origin
            .error(operation, target.to_string(), kind, message)
            .with_status(status)
            .with_code(code)
            .with_retry_after(retry_after))
    }

    /// Every item of a paged listing at `url` (`items` names the array in each page).
    pub async fn list<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        target: &str,
        url: Url,
        items: &str,
        paging: Paging,
    ) -> Result<Vec<T>, ControlPlaneError> {
        let mut out = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut received = 0u64;
        let mut token = String::new();
        for page in 1..=MAX_PAGES {
            let mut u = url.clone();
            match paging {
                Paging::Numbered { page_size } => {
                    u.query_pairs_mut()
                        .append_pair("page", &page.to_string())
                        .append_pair("page_size", &page_size.to_string());
                }
                Paging::Token { page_size } => {
                    let mut q = u.query_pairs_mut();
                    q.append_pair("pageSize", &page_size.to_string());
                    if !token.is_empty() {
                        q.append_pair("pageToken", &token);
                    }
                }
            }
            let answer = self.call(operation, target, Method::GET, u, None).await?;
            let list = answer
                .get(items)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let count = list.len();
            for item in list {
                let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
                if matches!(paging, Paging::Numbered { .. })
                    && !id.is_empty()
                    && !seen.insert(id.to_string())
                {
                    continue;
                }
                out.push(self.read(operation, target, item)?);
            }
            received += count as u64;
            let more = match paging {
                Paging::Numbered { page_size } => {
                    match answer.get("total_count").and_then(Value::as_u64) {
                        Some(total) => count > 0 && received < total,
                        None => count >= page_size as usize,
                    }
                }
                Paging::Token { .. } => {
                    let next = answer
                        .get("nextPageToken")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !next.is_empty() && next == token {
                        return Err(self.origin.protocol(
                            operation,
                            target.to_string(),
                            "the same page token twice",
                        ));
                    }
                    token = next.to_string();
                    !token.is_empty()
                }
            };
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// Calls `check` until it gives `Some` (done), fails, or `timeout` has passed (`None`),
    /// pausing `first` and then twice as long each time up to `max`.
    pub async fn poll<T, F, Fut>(
        &self,
        timeout: Duration,
        first: Duration,
        max: Duration,
        check: F,
    ) -> Result<Option<T>, ControlPlaneError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, ControlPlaneError>>,
    {
        Poll::until(timeout)
            .every(first)
            .at_most(max)
            .run(check)
            .await
    }
}

/// [`RestAuth`] by one static header (an API key).
#[derive(Clone)]
pub struct HeaderAuth {
    name: &'static str,
    value: crate::store::http::credentials::Secret,
}

impl HeaderAuth {
    /// Sends `value` as the header `name` on every call.
    pub fn new(name: &'static str, value: crate::store::http::credentials::Secret) -> Self {
        HeaderAuth { name, value }
    }
}

impl fmt::Debug for HeaderAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderAuth({}: ***)", self.name)
    }
}

#[async_trait]
impl RestAuth for HeaderAuth {
    async fn apply(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ControlPlaneError> {
        Ok(request.header(self.name, self.value.expose()))
    }
}

/// [`RestAuth`] by bearer tokens from a [`TokenCache`](super::TokenCache): a refused token
/// is invalidated and the call sent once more.
pub struct BearerAuth<S: super::TokenSource + ?Sized>(pub Arc<super::TokenCache<S>>);

impl<S: super::TokenSource + ?Sized> fmt::Debug for BearerAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerAuth")
    }
}

/// A token a [`BearerAuth`] sends.
pub trait BearerToken {
    /// The token.
    fn bearer(&self) -> &str;
}

#[async_trait]
impl<S> RestAuth for BearerAuth<S>
where
    S: super::TokenSource + ?Sized,
    S::Token: BearerToken,
{
    async fn apply(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, ControlPlaneError> {
        let token = self.0.token().await?;
        Ok(request.bearer_auth(token.bearer()))
    }

    fn refused(&self) -> bool {
        self.0.invalidate();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dialect() -> RestDialect {
        RestDialect {
            read_error: |_, body| (String::new(), String::from_utf8_lossy(body).into_owned()),
            classify: |_, _, status, _| match status {
                404 => Kind::NotFound("thing"),
                _ => Kind::Other,
            },
        }
    }

    #[test]
    fn urls_are_built_from_segments_and_bases_checked() {
        let auth = Arc::new(HeaderAuth::new("X-Auth-Token", "s3cret".into()));
        let c = RestClient::new(
            "http://127.0.0.1:9/base/",
            "api_url",
            Origin::new("t", "h"),
            auth.clone(),
            dialect(),
            "ua",
        )
        .unwrap();
        assert_eq!(
            c.url(&["a", "b/c?d"]).as_str(),
            "http://127.0.0.1:9/base/a/b%2Fc%3Fd"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let e = RestClient::new(
            "ftp://x",
            "api_url",
            Origin::new("t", "h"),
            auth,
            dialect(),
            "ua",
        )
        .unwrap_err();
        assert!(
            matches!(crate::Error::from(e), crate::Error::Setting { key, .. } if key == "api_url")
        );
    }
}
