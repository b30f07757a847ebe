//! A fault-injecting HTTP proxy, in process, in front of a real registry.
//!
//! Every request is forwarded to the upstream registry (bodies streamed both ways, `Location`
//! headers rewritten to point back at the proxy) unless a [`Rule`] matches it; a matching rule
//! applies its [`Fault`] and counts down. Faults: answer a status (500, 503, 429 with
//! `Retry-After`…), delay, cut the connection after N bytes of the response body, truncate the
//! body (a clean but short response), flip one byte of the body, or answer 401 with the
//! upstream's challenge (an expired or revoked token).
//!
//! [`FaultProxy::with_referrers_api`] also serves the OCI 1.1 referrers API in front of a
//! registry that has none (see [`super::referrers_api`]).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;

use super::referrers_api::{ReferrersApi, Route};
use super::server::BackgroundServer;

/// What to do to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status without forwarding; with `retry_after`, a `Retry-After` header.
    Status {
        /// The status code.
        status: u16,
        /// Seconds for `Retry-After`.
        retry_after: Option<u64>,
    },
    /// Answer this status with a distribution error body naming `code` (`MANIFEST_BLOB_UNKNOWN`,
    /// `NAME_UNKNOWN`…), without forwarding.
    Error {
        /// The status code.
        status: u16,
        /// The distribution error code.
        code: String,
    },
    /// Wait, then forward.
    Delay(Duration),
    /// Forward, but cut the connection after this many bytes of the response body.
    DropAfter(u64),
    /// Forward, but end the response body cleanly after this many bytes (no `Content-Length`).
    Truncate(u64),
    /// Forward, flipping the byte at this offset of the response body.
    FlipByte(u64),
    /// Answer 401 with the challenge the upstream gives for `/v2/` (token expired).
    Unauthorized,
}

/// When a fault applies.
#[derive(Debug, Clone)]
pub struct Rule {
    /// HTTP method to match (`GET`, `PUT`…); `None` matches any.
    pub method: Option<String>,
    /// Substring the path must contain (`/blobs/`, `/manifests/`); empty matches any.
    pub path_contains: String,
    /// The fault.
    pub fault: Fault,
    /// How many matching requests get the fault (then the rule is spent).
    pub times: usize,
}

impl Rule {
    /// A rule for `times` requests with `method` (any if `None`) whose path contains `path`.
    pub fn new(method: Option<&str>, path: &str, fault: Fault, times: usize) -> Self {
        Rule {
            method: method.map(str::to_string),
            path_contains: path.to_string(),
            fault,
            times,
        }
    }
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<String>>,
    faults_applied: Mutex<Vec<String>>,
    own_base: Mutex<String>,
    referrers: Option<ReferrersApi>,
    rate_limit: Mutex<Option<(u64, u64)>>,
}

/// A fault-injecting proxy in front of `upstream` (`host:port`, plain HTTP).
pub struct FaultProxy {
    state: Arc<ProxyState>,
    server: BackgroundServer,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("host", &self.host())
            .field("upstream", &self.state.upstream)
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream`.
    ///
    /// # Panics
    ///
    /// If the server cannot start.
    pub fn start(upstream: &str) -> Self {
        Self::spawn(upstream, None)
    }

    /// Starts a proxy in front of `upstream` that also serves the OCI 1.1 referrers API and
    /// answers manifest PUTs naming a `subject` with `OCI-Subject`, as a registry
    /// implementing distribution spec 1.1 does.
    ///
    /// # Panics
    ///
    /// If the server cannot start.
    pub fn with_referrers_api(upstream: &str) -> Self {
        Self::spawn(upstream, Some(ReferrersApi::default()))
    }

    fn spawn(upstream: &str, referrers: Option<ReferrersApi>) -> Self {
        let state = Arc::new(ProxyState {
            upstream: upstream.to_string(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("proxy HTTP client"),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            faults_applied: Mutex::new(Vec::new()),
            own_base: Mutex::new(String::new()),
            referrers,
            rate_limit: Mutex::new(None),
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let server = BackgroundServer::spawn("fault-proxy", router);
        if let Ok(mut b) = state.own_base.lock() {
            *b = format!("http://{}", server.addr());
        }
        FaultProxy { state, server }
    }

    /// From now on every answer carries Docker Hub's pull-limit headers:
    /// `ratelimit-limit: <limit>;w=21600`, `ratelimit-remaining: <remaining>;w=21600`
    /// (`None`: no headers).
    pub fn set_rate_limit(&self, limit: Option<(u64, u64)>) {
        if let Ok(mut r) = self.state.rate_limit.lock() {
            *r = limit;
        }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// Adds a rule (rules are tried in order; the first matching live rule applies).
    pub fn add(&self, rule: Rule) {
        if let Ok(mut r) = self.state.rules.lock() {
            r.push(rule);
        }
    }

    /// Removes every rule.
    pub fn clear(&self) {
        if let Ok(mut r) = self.state.rules.lock() {
            r.clear();
        }
    }

    /// Requests seen, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// With the referrers API: answer lists in pages of at most `n` descriptors (`None`:
    /// one page), to exercise `Link` pagination.
    pub fn set_referrers_page_size(&self, n: Option<usize>) {
        if let Some(api) = &self.state.referrers {
            api.set_page_size(n);
        }
    }

    /// With the referrers API: how many referrers it has recorded, in all repositories.
    pub fn referrers_recorded(&self) -> usize {
        self.state.referrers.as_ref().map_or(0, ReferrersApi::count)
    }

    /// Faults applied, as `FAULT METHOD path`.
    pub fn faults_applied(&self) -> Vec<String> {
        self.state
            .faults_applied
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

fn take_fault(state: &ProxyState, method: &str, path: &str) -> Option<Fault> {
    let mut rules = state.rules.lock().ok()?;
    for rule in rules.iter_mut() {
        if rule.times == 0 {
            continue;
        }
        if rule.method.as_deref().is_some_and(|m| m != method) {
            continue;
        }
        if !path.contains(&rule.path_contains) {
            continue;
        }
        rule.times -= 1;
        return Some(rule.fault.clone());
    }
    None
}

async fn handle(State(state): State<Arc<ProxyState>>, req: Request) -> Response {
    let mut resp = answer(&state, req).await;
    // Every answer announces the pull limit, as Docker Hub's do.
    let limit = state.rate_limit.lock().ok().and_then(|r| *r);
    if let Some((limit, remaining)) = limit {
        for (name, value) in [
            ("ratelimit-limit", format!("{limit};w=21600")),
            ("ratelimit-remaining", format!("{remaining};w=21600")),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                resp.headers_mut().insert(name, v);
            }
        }
    }
    resp
}

async fn answer(state: &Arc<ProxyState>, req: Request) -> Response {
    let state = state.clone();
    let method = req.method().as_str().to_string();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    if let Ok(mut l) = state.log.lock() {
        l.push(format!("{method} {path_q}"));
    }
    let fault = take_fault(&state, &method, req.uri().path());
    if let Some(f) = &fault {
        if let Ok(mut l) = state.faults_applied.lock() {
            l.push(format!("{f:?} {method} {path_q}"));
        }
    }
    match &fault {
        Some(Fault::Error { status, code }) => {
            let mut resp = Response::new(Body::from(format!(
                "{{\"errors\":[{{\"code\":\"{code}\",\"message\":\"injected {code}\"}}]}}"
            )));
            *resp.status_mut() =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            resp.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return resp;
        }
        Some(Fault::Status {
            status,
            retry_after,
        }) => {
            let mut resp = Response::new(Body::from(format!(
                "{{\"errors\":[{{\"code\":\"INJECTED\",\"message\":\"injected {status}\"}}]}}"
            )));
            *resp.status_mut() =
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Some(ra) = retry_after {
                if let Ok(v) = HeaderValue::from_str(&ra.to_string()) {
                    resp.headers_mut().insert("retry-after", v);
                }
            }
            return resp;
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        Some(Fault::Unauthorized) => {
            let challenge = state
                .client
                .get(format!("http://{}/v2/", state.upstream))
                .send()
                .await
                .ok()
                .and_then(|r| r.headers().get("www-authenticate").cloned());
            let mut resp = Response::new(Body::from(
                "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"injected: token expired\"}]}",
            ));
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            if let Some(c) = challenge {
                resp.headers_mut().insert("www-authenticate", c);
            }
            return resp;
        }
        _ => {}
    }
    if let Some(api) = &state.referrers {
        match Route::of(&method, req.uri().path()) {
            Some(Route::List { name, subject }) => {
                return api.list(&name, &subject, req.uri().query());
            }
            Some(Route::PutManifest { name }) => {
                let (parts, body) = req.into_parts();
                let body = match super::referrers_api::buffer(body).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                let content_type = parts
                    .headers
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let req = Request::from_parts(parts, Body::from(body.clone()));
                let mut resp = forward(&state, req, &method, &path_q, fault).await;
                if resp.status().is_success() {
                    if let Some(subject) = api.record(&name, &content_type, &body) {
                        if let Ok(v) = HeaderValue::from_str(&subject.to_string()) {
                            resp.headers_mut().insert("oci-subject", v);
                        }
                    }
                }
                return resp;
            }
            Some(Route::DeleteManifest { name, digest }) => {
                let resp = forward(&state, req, &method, &path_q, fault).await;
                if resp.status().is_success() {
                    api.forget(&name, &digest);
                }
                return resp;
            }
            None => {}
        }
    }
    forward(&state, req, &method, &path_q, fault).await
}

async fn forward(
    state: &ProxyState,
    req: Request,
    method: &str,
    path_q: &str,
    fault: Option<Fault>,
) -> Response {
    let url = format!("http://{}{path_q}", state.upstream);
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in req.headers() {
        if k == "host" || k == "connection" || k == "transfer-encoding" {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(v.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let body_stream = req.into_body().into_data_stream();
    let upstream = state
        .client
        .request(m, url)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body_stream))
        .send()
        .await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => {
            let mut resp = Response::new(Body::from(format!("proxy: upstream failed: {e}")));
            *resp.status_mut() = StatusCode::BAD_GATEWAY;
            return resp;
        }
    };
    let status =
        StatusCode::from_u16(upstream.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let own_base = state.own_base.lock().map(|b| b.clone()).unwrap_or_default();
    let upstream_base = format!("http://{}", state.upstream);
    let mut out_headers = HeaderMap::new();
    for (k, v) in upstream.headers() {
        let Ok(name) = HeaderName::from_bytes(k.as_str().as_bytes()) else {
            continue;
        };
        if name == "transfer-encoding" || name == "connection" {
            continue;
        }
        if matches!(fault, Some(Fault::Truncate(_))) && name == "content-length" {
            continue;
        }
        let value = if name == "location" {
            let text = String::from_utf8_lossy(v.as_bytes()).replace(&upstream_base, &own_base);
            HeaderValue::from_str(&text).ok()
        } else {
            HeaderValue::from_bytes(v.as_bytes()).ok()
        };
        if let Some(value) = value {
            out_headers.append(name, value);
        }
    }
    let mut seen: u64 = 0;
    let fault_for_body = fault.clone();
    let mut done = false;
    let body = upstream.bytes_stream().filter_map(move |chunk| {
        let out: Option<Result<Bytes, std::io::Error>> = if done {
            None
        } else {
            match chunk {
                Err(e) => Some(Err(std::io::Error::other(e))),
                Ok(chunk) => {
                    let start = seen;
                    seen += chunk.len() as u64;
                    match &fault_for_body {
                        Some(Fault::DropAfter(n)) if seen > *n => {
                            done = true;
                            let keep = n.saturating_sub(start) as usize;
                            if keep > 0 {
                                // Send what fits, then fail on the next poll.
                                Some(Ok(chunk.slice(..keep.min(chunk.len()))))
                            } else {
                                Some(Err(std::io::Error::other("injected: connection dropped")))
                            }
                        }
                        Some(Fault::Truncate(n)) if seen > *n => {
                            done = true;
                            let keep = n.saturating_sub(start) as usize;
                            (keep > 0).then(|| Ok(chunk.slice(..keep.min(chunk.len()))))
                        }
                        Some(Fault::FlipByte(at)) if *at >= start && *at < seen => {
                            let mut v = chunk.to_vec();
                            let i = (*at - start) as usize;
                            v[i] ^= 0xff;
                            Some(Ok(Bytes::from(v)))
                        }
                        _ => Some(Ok(chunk)),
                    }
                }
            }
        };
        async move { out }
    });
    // A dropped connection: after the partial chunk, end with an error so hyper aborts.
    let body: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>> = match fault {
        Some(Fault::DropAfter(_)) => body
            .chain(futures::stream::once(async {
                Err(std::io::Error::other("injected: connection dropped"))
            }))
            .boxed(),
        _ => body.boxed(),
    };
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = out_headers;
    resp
}
