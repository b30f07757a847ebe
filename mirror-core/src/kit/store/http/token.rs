//! Authentication: the registry's challenge, learned once; credentials from the provider,
//! refreshed before they expire; bearer tokens exchanged at the token realm per scope set.

use crate::error::Operation;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine as _;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use url::Url;

use self::auth::{
    parse_challenge, refresh_deadline, scope_key, AuthState, CachedToken, Challenge, TokenResponse,
};
use self::credentials::{Credentials, Secret};
use crate::error::{Error, Result};
use crate::reference::is_loopback_host;

use super::*;

impl RegistryClient {
    pub(super) async fn credentials(&self, state: &mut AuthState) -> Result<Credentials> {
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
    pub(super) async fn learn_challenge(&self) -> Result<()> {
        if self.inner.challenge_known.load(Ordering::Acquire) {
            return Ok(());
        }
        let url = self.url("v2/")?;
        // One attempt, as for tokens: the operation that needs the challenge retries.
        let resp = self
            .inner
            .http
            .get(url.clone())
            .timeout(self.inner.config.request_timeout)
            .send()
            .await;
        crate::telemetry::request(
            &Operation::Ping,
            resp.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let resp = resp.map_err(|e| self.connect_error(&Operation::Ping, "/v2/", e))?;
        if retryable_status(resp.status()) {
            return Err(status_error(
                &self.inner.registry,
                &Operation::Ping,
                "/v2/",
                &resp,
            ));
        }
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
    ///
    /// A request that can be sent again (`resendable`: no streaming body) goes out before the
    /// challenge is known when the credentials are anonymous: there is nothing to send yet,
    /// and a 401 teaches the challenge ([`Self::on_unauthorized`] with `sent_credentials`
    /// false) before the one more attempt. An anonymous registry thus never sees the
    /// `GET /v2/` ping (one round trip less per process); with credentials, or before a
    /// streaming body, the challenge is learned first so that they go out the first time.
    pub(super) async fn authorization(
        &self,
        scopes: &[String],
        resendable: bool,
    ) -> Result<Option<String>> {
        if !self.inner.challenge_known.load(Ordering::Acquire) {
            let fetch = async {
                let mut state = self.inner.state.lock().await;
                self.credentials(&mut state).await
            };
            let mut fetch = std::pin::pin!(fetch);
            // Credentials at hand (static, cached) decide at once whether to ping; a provider
            // that has to ask (a cloud API) is asked while the ping is under way.
            match futures::poll!(fetch.as_mut()) {
                std::task::Poll::Ready(creds) => {
                    if !(resendable && matches!(creds?, Credentials::Anonymous)) {
                        self.learn_challenge().await?;
                    }
                }
                std::task::Poll::Pending => {
                    let (creds, learned) = futures::join!(fetch, self.learn_challenge());
                    creds?;
                    learned?;
                }
            }
        }
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
                // One attempt: the operation asking for the token retries as a whole, so a
                // token server that fails or asks to wait counts against the operation's own
                // retry budget (a retry loop here ran inside the request's: 5 × 5 attempts).
                let (token, ttl) = self
                    .fetch_token(&realm, service.as_deref(), scopes, &creds)
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

    pub(super) async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        creds: &Credentials,
    ) -> Result<(Secret, Duration)> {
        let registry = &self.inner.registry;
        let refused = |reason: String| Error::Protocol {
            registry: registry.clone(),
            operation: Operation::Token,
            location: "token realm".into(),
            reason,
        };
        let mut url = Url::parse(realm).map_err(|e| refused(format!("realm {realm:?}: {e}")))?;
        if url.scheme() != "https"
            && !(url.scheme() == "http" && url.host_str().is_some_and(is_loopback_host))
            && self.inner.base.scheme() == "https"
        {
            return Err(refused(format!(
                "a realm over plain HTTP ({realm}); refusing to send credentials there"
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
                    .token_http
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
                let req = self.inner.token_http.get(url);
                match creds {
                    Credentials::Basic { username, password } => {
                        req.header(AUTHORIZATION, basic_header(username, password))
                    }
                    _ => req,
                }
            }
        };
        let resp = req.timeout(self.inner.config.request_timeout).send().await;
        crate::telemetry::request(
            &Operation::Token,
            resp.as_ref().ok().map(|r| r.status().as_u16()),
        );
        let resp = resp.map_err(|e| self.connect_error(&Operation::Token, "token", e))?;
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
            return Err(self.error_for(resp, &Operation::Token, "token").await);
        }
        let body = read_capped(resp, MAX_TOKEN_BYTES)
            .await
            .map_err(|e| match e {
                Capped::Transport(e) => self.connect_error(&Operation::Token, "token", e),
                Capped::TooLarge => Error::Unauthorized {
                    registry: registry.clone(),
                    message: format!(
                        "the token server answered more than {MAX_TOKEN_BYTES} bytes; refused"
                    ),
                },
            })?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| Error::Unauthorized {
                registry: registry.clone(),
                message: crate::error::sanitize(
                    &format!("unreadable token server answer: {e}"),
                    crate::error::MAX_SHOWN_TEXT,
                ),
            })?;
        // The same reading as `auth::token_answer` (the fuzzed one), with the error said.
        parsed.into_token().ok_or_else(|| Error::Unauthorized {
            registry: registry.clone(),
            message: "the token server answered without a token".into(),
        })
    }

    /// After a 401 from the registry: learn its challenge; when the request carried
    /// credentials (`sent_credentials`), also forget the tokens of `scopes` and the
    /// credentials (a 401 to a request sent without any only says which to send). A 401 from
    /// another origin (an upload Location, a redirect target) teaches nothing: its challenge
    /// could name a realm of its choosing, to which the registry's credentials would then go.
    pub(super) async fn on_unauthorized(
        &self,
        scopes: &[String],
        resp: &reqwest::Response,
        sent_credentials: bool,
    ) {
        if resp.url().origin() != self.inner.base.origin() {
            tracing::warn!(registry = %self.inner.registry, origin = %resp.url().origin().ascii_serialization(), "a 401 from another origin is ignored");
            return;
        }
        let headers: &HeaderMap = resp.headers();
        let mut state = self.inner.state.lock().await;
        if let Some(c) = challenge_of(headers) {
            state.challenge = Some(c);
            self.inner.challenge_known.store(true, Ordering::Release);
        }
        if !sent_credentials {
            return;
        }
        state.tokens.remove(&scope_key(scopes));
        state.credentials = None;
        self.inner.provider.invalidate();
    }
}

pub(super) fn basic_header(username: &str, password: &Secret) -> String {
    let raw = format!("{username}:{}", password.expose());
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub(super) fn challenge_of(headers: &HeaderMap) -> Option<Challenge> {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(parse_challenge)
        .next()
}
