//! [`FakeRegistry`]: an in-memory, read-only distribution registry that can lie on purpose.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;

use super::fixtures::Fixture;
use super::server::BackgroundServer;
use crate::digest::Digest;
use crate::media::RawManifest;

struct FakeState {
    repository: String,
    tag: String,
    manifests: HashMap<Digest, RawManifest>,
    top: Digest,
    blobs: HashMap<Digest, Bytes>,
    corrupt: Mutex<HashSet<Digest>>,
    requests: Mutex<Vec<String>>,
    /// The answer of the referrers API for every subject (`None`: 404, no API).
    referrers: Option<Bytes>,
}

/// An in-process registry on `127.0.0.1` (own thread and runtime) serving one fixture from
/// memory through the distribution API read endpoints: `GET /v2/`, `HEAD`/`GET`
/// `/v2/<name>/manifests/<tag or digest>`, `HEAD`/`GET` `/v2/<name>/blobs/<digest>` and
/// `GET /v2/<name>/tags/list`, with `Content-Type`, `Content-Length` and
/// `Docker-Content-Digest` headers. No auth; writes answer 405.
///
/// [`corrupt_blob`](FakeRegistry::corrupt_blob) makes it flip a byte of a blob's body while
/// still claiming the right digest and length, to test that readers verify what they receive.
/// Every request is logged ([`requests`](FakeRegistry::requests)).
///
/// Dropping it stops the server.
pub struct FakeRegistry {
    state: Arc<FakeState>,
    server: BackgroundServer,
}

impl fmt::Debug for FakeRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeRegistry")
            .field("host", &self.host())
            .field("repository", &self.state.repository)
            .field("tag", &self.state.tag)
            .finish_non_exhaustive()
    }
}

impl FakeRegistry {
    /// Serves `fixture` (a [`TestImage`](super::TestImage) or [`TestIndex`](super::TestIndex))
    /// as `repository:tag`; its manifests are also reachable by digest.
    ///
    /// # Panics
    ///
    /// If a blob of the fixture cannot be read (on-disk fixtures) or the server cannot start.
    pub fn serving(fixture: &dyn Fixture, repository: &str, tag: &str) -> Self {
        Self::start(fixture, repository, tag, None)
    }

    /// [`FakeRegistry::serving`], also answering the referrers API
    /// (`GET /v2/<name>/referrers/<digest>`) with `answer` for every subject: a hostile
    /// registry's 100,000-descriptor list, say.
    pub fn serving_with_referrers(
        fixture: &dyn Fixture,
        repository: &str,
        tag: &str,
        answer: Bytes,
    ) -> Self {
        Self::start(fixture, repository, tag, Some(answer))
    }

    fn start(fixture: &dyn Fixture, repository: &str, tag: &str, referrers: Option<Bytes>) -> Self {
        let top = fixture.top_manifest().clone();
        let mut manifests: HashMap<Digest, RawManifest> = fixture
            .child_manifests()
            .into_iter()
            .map(|m| (m.digest.clone(), m.clone()))
            .collect();
        manifests.insert(top.digest.clone(), top.clone());
        let blobs = fixture
            .all_blobs()
            .into_iter()
            .map(|b| {
                let bytes = b.read().unwrap_or_else(|e| {
                    panic!("fake registry: cannot read blob {}: {e}", b.digest())
                });
                (b.digest().clone(), bytes)
            })
            .collect();
        let state = Arc::new(FakeState {
            repository: repository.to_string(),
            tag: tag.to_string(),
            manifests,
            top: top.digest,
            blobs,
            corrupt: Mutex::new(HashSet::new()),
            requests: Mutex::new(Vec::new()),
            referrers,
        });
        let router = Router::new().fallback(handle).with_state(state.clone());
        let server = BackgroundServer::spawn("fake-registry", router);
        FakeRegistry { state, server }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The repository it serves.
    pub fn repository(&self) -> &str {
        &self.state.repository
    }

    /// From now on, `GET` of this blob serves its bytes with one byte flipped (headers still
    /// claim the true digest and size). `HEAD` is unchanged.
    pub fn corrupt_blob(&self, digest: &Digest) {
        if let Ok(mut c) = self.state.corrupt.lock() {
            c.insert(digest.clone());
        }
    }

    /// Serves every blob correctly again.
    pub fn heal(&self) {
        if let Ok(mut c) = self.state.corrupt.lock() {
            c.clear();
        }
    }

    /// Every request so far, as `METHOD /path`, oldest first.
    pub fn requests(&self) -> Vec<String> {
        self.state
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Forgets the logged requests.
    pub fn clear_requests(&self) {
        if let Ok(mut r) = self.state.requests.lock() {
            r.clear();
        }
    }
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

fn content(
    method: &Method,
    media_type: &str,
    digest: &Digest,
    body: Bytes,
    len: usize,
) -> Response {
    let mut headers = HeaderMap::new();
    let ct = HeaderValue::from_str(media_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, ct);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(d) = HeaderValue::from_str(&digest.to_string()) {
        headers.insert("Docker-Content-Digest", d);
    }
    headers.insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    (StatusCode::OK, headers, body).into_response()
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
) -> Response {
    let path = uri.path().to_string();
    if let Ok(mut r) = state.requests.lock() {
        r.push(format!("{method} {path}"));
    }
    if method != Method::GET && method != Method::HEAD {
        return api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the fake registry is read-only",
        );
    }
    if path == "/v2/" || path == "/v2" {
        let mut resp = (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response();
        resp.headers_mut().insert(
            "Docker-Distribution-API-Version",
            HeaderValue::from_static("registry/2.0"),
        );
        return resp;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return api_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint");
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        if name != state.repository {
            return api_error(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                "repository name not known to registry",
            );
        }
        let body = serde_json::json!({ "name": name, "tags": [state.tag] });
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    if let (Some((_, _)), Some(answer)) = (rest.rsplit_once("/referrers/"), &state.referrers) {
        let mut resp = (StatusCode::OK, Body::from(answer.clone())).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::media::OCI_INDEX),
        );
        return resp;
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        if name != state.repository {
            return api_error(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                "repository name not known to registry",
            );
        }
        let digest = if reference == state.tag {
            Some(state.top.clone())
        } else {
            Digest::parse(reference).ok()
        };
        return match digest.and_then(|d| state.manifests.get(&d)) {
            Some(m) => content(
                &method,
                &m.media_type,
                &m.digest,
                m.bytes.clone(),
                m.bytes.len(),
            ),
            None => api_error(
                StatusCode::NOT_FOUND,
                "MANIFEST_UNKNOWN",
                "manifest unknown",
            ),
        };
    }
    if let Some((name, reference)) = rest.rsplit_once("/blobs/") {
        if name != state.repository {
            return api_error(
                StatusCode::NOT_FOUND,
                "NAME_UNKNOWN",
                "repository name not known to registry",
            );
        }
        let Ok(digest) = Digest::parse(reference) else {
            return api_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "invalid digest");
        };
        let Some(bytes) = state.blobs.get(&digest) else {
            return api_error(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                "blob unknown to registry",
            );
        };
        let corrupt = state
            .corrupt
            .lock()
            .map(|c| c.contains(&digest))
            .unwrap_or(false);
        let body = if corrupt && !bytes.is_empty() {
            let mut v = bytes.to_vec();
            let mid = v.len() / 2;
            v[mid] ^= 0xff;
            Bytes::from(v)
        } else {
            bytes.clone()
        };
        return content(
            &method,
            "application/octet-stream",
            &digest,
            body,
            bytes.len(),
        );
    }
    api_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
}
