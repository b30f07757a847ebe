//! [`DataProxy`]: a data plane in front of a real registry with a provider's rules.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::response::Response;
use bytes::Bytes;
use futures::TryStreamExt;

use super::*;

/// A request to a [`DataProxy`], as its rules see it.
#[derive(Debug)]
pub struct ProxyRequest {
    /// The method.
    pub method: Method,
    /// The path (`/v2/…`).
    pub path: String,
    /// The query string.
    pub query: String,
    /// The headers.
    pub headers: HeaderMap,
    /// What the path names: (repository, `manifests`/`blobs`/`tags`, reference or rest).
    pub target: Option<(String, &'static str, String)>,
}

impl ProxyRequest {
    /// The `Authorization` header.
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
    }

    /// The user and password of basic credentials.
    pub fn basic(&self) -> Option<(String, String)> {
        use base64::Engine as _;
        let encoded = self.authorization()?.strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        Some((user.to_string(), password.to_string()))
    }

    /// A bearer token.
    pub fn bearer(&self) -> Option<&str> {
        self.authorization()?.strip_prefix("Bearer ")
    }

    /// True for a write that creates content: a blob upload or a manifest `PUT`.
    pub fn is_write(&self) -> bool {
        matches!(
            (&self.method, &self.target),
            (&Method::POST | &Method::PUT, Some((_, "blobs", _)))
                | (&Method::PUT, Some((_, "manifests", _)))
        )
    }
}

/// What a [`DataProxy`] does with a request.
#[derive(Debug)]
pub enum Decision {
    /// Forward it as it is.
    Forward,
    /// Forward it with this query string instead.
    ForwardWithQuery(String),
    /// Answer it without forwarding.
    Answer(Response),
}

impl Decision {
    /// Answer a distribution-API error.
    pub fn refuse(status: u16, code: &str, message: &str) -> Self {
        Decision::Answer(registry_error(status, code, message))
    }

    /// Answer 401 with this `WWW-Authenticate` challenge.
    pub fn challenge(challenge: &str, code: &str, message: &str) -> Self {
        let mut r = registry_error(401, code, message);
        if let Ok(v) = HeaderValue::from_str(challenge) {
            r.headers_mut().insert("www-authenticate", v);
        }
        Decision::Answer(r)
    }
}

/// A manifest the registry behind a [`DataProxy`] stored (its `PUT` answered 201).
#[derive(Debug)]
pub struct StoredManifest {
    /// The repository.
    pub repository: String,
    /// The tag or digest it was pushed by.
    pub reference: String,
    /// Its digest (`Docker-Content-Digest`).
    pub digest: String,
    /// Its media type (the request's `Content-Type`).
    pub media_type: String,
    /// Its bytes.
    pub bytes: Bytes,
}

/// The provider's rules of a [`DataProxy`].
#[async_trait]
pub trait ProxyRules: Send + Sync + 'static {
    /// What to do with a request before it reaches the registry.
    async fn decide(&self, request: &ProxyRequest) -> Decision;

    /// A manifest was stored; an answer replaces the registry's (a failure of the fake).
    async fn stored(&self, _manifest: StoredManifest) -> Option<Response> {
        None
    }

    /// The registry answered `status` to `request`.
    fn answered(&self, _request: &ProxyRequest, _status: u16) {}
}

/// A data plane in front of a real registry: every request goes through the rules, then to
/// the registry (bodies streamed both ways, the registry's `Location` rewritten to point
/// back at the proxy); a stored manifest is reported to the rules.
pub struct DataProxy;

struct ProxyState<R> {
    upstream: String,
    public: OnceLock<String>,
    http: reqwest::Client,
    rules: Arc<R>,
}

impl DataProxy {
    /// Serves `rules` in front of the registry at `upstream` (`http://127.0.0.1:PORT`).
    pub async fn start<R: ProxyRules>(upstream: &str, rules: Arc<R>) -> FakeServer {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the data proxy's HTTP client");
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            public: OnceLock::new(),
            http,
            rules,
        });
        let router = axum::Router::new()
            .fallback(proxy::<R>)
            .with_state(state.clone());
        let server = FakeServer::serve(router).await;
        let _ = state.public.set(server.url());
        server
    }
}

async fn proxy<R: ProxyRules>(State(s): State<Arc<ProxyState<R>>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let view = ProxyRequest {
        method: parts.method.clone(),
        query: parts.uri.query().unwrap_or("").to_string(),
        target: v2_target(&path),
        headers: parts.headers.clone(),
        path,
    };
    let query = match s.rules.decide(&view).await {
        Decision::Answer(r) => return r,
        Decision::Forward => view.query.clone(),
        Decision::ForwardWithQuery(q) => q,
    };
    let url = match query.is_empty() {
        true => format!("{}{}", s.upstream, view.path),
        false => format!("{}{}?{query}", s.upstream, view.path),
    };
    let mut fwd = s.http.request(view.method.clone(), url);
    for (k, v) in &view.headers {
        if k != "host" && k != "authorization" {
            fwd = fwd.header(k, v);
        }
    }
    let manifest_put =
        view.method == Method::PUT && matches!(view.target, Some((_, "manifests", _)));
    let stored = match manifest_put {
        true => {
            let bytes = axum::body::to_bytes(body, 8 * 1024 * 1024).await;
            let bytes = bytes.unwrap_or_default();
            fwd = fwd.body(bytes.clone());
            Some(bytes)
        }
        false => {
            fwd = fwd.body(reqwest::Body::wrap_stream(body.into_data_stream()));
            None
        }
    };
    let resp = match fwd.send().await {
        Ok(r) => r,
        Err(e) => return registry_error(502, "UNKNOWN", &format!("registry: {e}")),
    };
    let status = resp.status().as_u16();
    s.rules.answered(&view, status);
    let headers = resp.headers().clone();
    if let (Some(bytes), Some((repository, _, reference)), 201) = (stored, &view.target, status) {
        let header = |h: &HeaderMap, k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let manifest = StoredManifest {
            repository: repository.clone(),
            reference: reference.clone(),
            digest: header(&headers, "docker-content-digest"),
            media_type: header(&view.headers, "content-type"),
            bytes,
        };
        if let Some(r) = s.rules.stored(manifest).await {
            return r;
        }
    }
    let mut out = Response::builder().status(status);
    let public = s.public.get().cloned().unwrap_or_default();
    for (k, v) in &headers {
        match k.as_str() {
            "transfer-encoding" | "connection" => {}
            "location" => {
                out = out.header(k, v.to_str().unwrap_or("").replace(&s.upstream, &public))
            }
            _ => out = out.header(k, v),
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    out.body(Body::from_stream(stream)).unwrap_or_default()
}
