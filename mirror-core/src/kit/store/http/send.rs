//! Sending a request: authentication, the one re-authentication after a 401, retries under
//! the [`RetryConfig`], and the one mapping of unexpected answers to errors.

use crate::error::Operation;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, AUTHORIZATION};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;

use self::auth::Challenge;
use crate::error::{Error, Result};
use crate::retry::Retry;

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) errors: Vec<ErrorEntry>,
}

#[derive(Deserialize)]
pub(super) struct ErrorEntry {
    #[serde(default)]
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: String,
}

impl RegistryClient {
    /// Sends a request built by `build` (called again for each attempt), authenticating for
    /// `scopes`. A 401 makes it learn the challenge, drop cached tokens and try once more.
    /// Connection errors, 5xx, 408 and 429 are retried per [`RetryConfig`]; the last answer is
    /// returned as it is for the caller to map.
    pub(super) async fn send<F>(
        &self,
        op: &Operation,
        loc: &str,
        scopes: &[String],
        build: F,
    ) -> Result<Response>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        /// Why an attempt is worth another one: it failed, or the registry answered a
        /// retryable status (returned as it is when the budget is spent).
        enum Again {
            Failed(Error),
            Answered(Response),
        }
        let attempts = std::sync::atomic::AtomicU64::new(0);
        let result = self
            .inner
            .config
            .retry
            .run_with(
                || async {
                    attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    match self.send_once(op, loc, scopes, &build).await {
                        Ok(resp) if retryable_status(resp.status()) => Err(Again::Answered(resp)),
                        Ok(resp) => Ok(resp),
                        Err(e) => Err(Again::Failed(e)),
                    }
                },
                |again| {
                    let verdict = match again {
                        Again::Failed(e) => crate::retry::classify(e),
                        Again::Answered(resp) => match retry_after(resp.headers()) {
                            Some(after) if resp.status() == StatusCode::TOO_MANY_REQUESTS => {
                                Retry::After(after)
                            }
                            _ => Retry::Yes,
                        },
                    };
                    if verdict != Retry::No {
                        let registry = &self.inner.registry;
                        match again {
                            Again::Failed(e) => {
                                tracing::debug!(%registry, %op, %loc, error = %e, "retrying")
                            }
                            Again::Answered(r) => {
                                tracing::debug!(%registry, %op, %loc, status = %r.status(), "retrying")
                            }
                        }
                    }
                    verdict
                },
            )
            .await;
        // Attempts beyond the first: retries that happened (the policy may have said no).
        let sent = attempts.load(std::sync::atomic::Ordering::Relaxed);
        crate::telemetry::retries(op, sent.saturating_sub(1));
        match result {
            Ok(resp) | Err(Again::Answered(resp)) => Ok(resp),
            Err(Again::Failed(e)) => Err(e),
        }
    }

    /// One attempt of [`Self::send`] (with its one re-authentication), never retried: for
    /// requests that are not safe to repeat (chunk uploads).
    pub(super) async fn send_once<F>(
        &self,
        op: &Operation,
        loc: &str,
        scopes: &[String],
        build: &F,
    ) -> Result<Response>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        // One more attempt after a 401 to a request sent without credentials (it taught the
        // challenge), and one after a 401 to credentials (they are fetched again).
        let mut learned = false;
        let mut reauthenticated = false;
        loop {
            let mut request = build(&self.inner.http)
                .build()
                .map_err(|e| self.connect_error(op, loc, e))?;
            // The request timeout, unless the request set its own (a chunk upload).
            if request.timeout().is_none() {
                *request.timeout_mut() = Some(self.inner.config.request_timeout);
            }
            // Credentials go to this registry's exact origin only (scheme, host, port): a URL
            // the registry handed out (an upload Location, a next page) may point elsewhere.
            if request.url().origin() == self.inner.base.origin() {
                if let Some(a) = self.authorization(scopes, true).await? {
                    let value = reqwest::header::HeaderValue::from_str(&a).map_err(|e| {
                        Error::Credentials {
                            registry: self.inner.registry.clone(),
                            reason: format!(
                                "they make an authorization header that cannot be sent: {e}"
                            ),
                        }
                    })?;
                    request.headers_mut().insert(AUTHORIZATION, value);
                }
            }
            let request_had_credentials = request.headers().contains_key(AUTHORIZATION);
            let resp = self.inner.http.execute(request).await;
            crate::telemetry::request(op, resp.as_ref().ok().map(|r| r.status().as_u16()));
            let resp = resp.map_err(|e| self.connect_error(op, loc, e))?;
            self.note_rate_limit(resp.headers());
            if resp.status() == StatusCode::UNAUTHORIZED
                && resp.url().origin() == self.inner.base.origin()
            {
                let sent_credentials = request_had_credentials;
                let again = if sent_credentials {
                    !std::mem::replace(&mut reauthenticated, true)
                } else {
                    !std::mem::replace(&mut learned, true)
                };
                if again {
                    self.on_unauthorized(scopes, &resp, sent_credentials).await;
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// Maps an unexpected response to an error, in one place.
    pub(super) async fn error_for(&self, resp: Response, op: &Operation, loc: &str) -> Error {
        self.error_and_codes(resp, op, loc).await.0
    }

    /// [`Self::error_for`], with the registry's error codes (`DIGEST_INVALID`, …) as it sent
    /// them, for callers that map one of them to an error of their own.
    pub(super) async fn error_and_codes(
        &self,
        resp: Response,
        op: &Operation,
        loc: &str,
    ) -> (Error, crate::error::ErrorCodes) {
        let status = resp.status();
        let registry = self.inner.registry.clone();
        let challenge_error = challenge_of(resp.headers()).and_then(|c| match c {
            Challenge::Bearer { error, .. } => error,
            Challenge::Basic => None,
        });
        let retry_after = retry_after(resp.headers());
        // Bounded in size and in time: a body that stalls must not hold the copy.
        let body = tokio::time::timeout(
            self.inner.config.request_timeout,
            read_limited(resp, 64 * 1024),
        )
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
        let parsed: ErrorBody = serde_json::from_slice(&body).unwrap_or_default();
        let mut message: String = parsed
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
            message = String::from_utf8_lossy(&body).trim().to_string();
        }
        if message.is_empty() {
            message = status.canonical_reason().unwrap_or("").to_string();
        }
        let message = crate::error::sanitize(&message, crate::error::MAX_SHOWN_TEXT);
        let codes: crate::error::ErrorCodes = parsed
            .errors
            .iter()
            .filter_map(|e| crate::error::ErrorCode::parse(&e.code))
            .collect();
        let error = match status {
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
                operation: op.clone(),
                location: loc.to_string(),
                status: status.as_u16(),
                message,
                codes,
            },
        };
        (error, codes)
    }
}

pub(super) fn retryable_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT || s == StatusCode::TOO_MANY_REQUESTS
}

pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The error a retryable status stands for (without reading the body).
pub(super) fn status_error(registry: &str, op: &Operation, loc: &str, resp: &Response) -> Error {
    if resp.status() == StatusCode::TOO_MANY_REQUESTS {
        return Error::RateLimited {
            registry: registry.to_string(),
            retry_after: retry_after(resp.headers()),
        };
    }
    Error::Http {
        registry: registry.to_string(),
        operation: op.clone(),
        location: loc.to_string(),
        status: resp.status().as_u16(),
        message: resp.status().canonical_reason().unwrap_or("").to_string(),
        codes: Default::default(),
    }
}

pub(super) async fn read_limited(resp: Response, limit: usize) -> Option<Vec<u8>> {
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
