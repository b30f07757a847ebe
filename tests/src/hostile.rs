//! Hostile registries for attack tests: [`HostileRegistry`] builds the in-process registry an
//! attacker would run (an open or authenticating `/v2/`, a real image whose blobs lie, an
//! upload that points elsewhere), each test adding only the routes it lies on; [`Witness`] is
//! the other origin that records the credentials reaching it.
//!
//! Here rather than in `mirror_core::testing`: only the end-to-end tests of this crate run
//! hand-made registries; the provider crates test against real ones and their emulators.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use mirror_core::testing::TestImage;

/// Serves `router` on `127.0.0.1` (a task of the current runtime) and returns
/// `127.0.0.1:PORT`.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr.to_string()
}

/// `401` with a Basic challenge (realm `r`) when the request carries no `Authorization`.
pub fn basic_challenge(headers: &HeaderMap) -> Option<Response> {
    (!headers.contains_key("authorization")).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"r\"")],
        )
            .into_response()
    })
}

/// `401` with a Bearer challenge sending the client to the token server `realm` (a URL).
pub fn bearer_challenge(realm: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            "www-authenticate",
            format!("Bearer realm=\"{realm}\",service=\"r\""),
        )],
    )
        .into_response()
}

/// How a [`HostileRegistry`] treats requests without `Authorization`.
#[derive(Clone)]
enum Gate {
    Open,
    Basic,
    Bearer(String),
}

/// A hand-made registry on `127.0.0.1`: `GET /v2/` answers `{}`, and the attack adds the rest
/// with [`route`](Self::route) and the shorthands below. Unrouted paths answer `404`.
#[must_use]
pub struct HostileRegistry {
    router: Router,
    gate: Gate,
}

impl Default for HostileRegistry {
    fn default() -> Self {
        Self::open()
    }
}

impl HostileRegistry {
    /// A registry without auth.
    pub fn open() -> Self {
        Self {
            router: Router::new().route("/v2/", get(|| async { "{}" })),
            gate: Gate::Open,
        }
    }

    /// A registry demanding basic auth: every request without `Authorization` gets
    /// [`basic_challenge`].
    pub fn basic_auth() -> Self {
        Self {
            gate: Gate::Basic,
            ..Self::open()
        }
    }

    /// A registry demanding a bearer token from `realm` (a URL): every request without
    /// `Authorization` gets [`bearer_challenge`].
    pub fn bearer_auth(realm: &str) -> Self {
        Self {
            gate: Gate::Bearer(realm.to_string()),
            ..Self::open()
        }
    }

    /// Adds `route` at `path` (axum syntax: `/v2/app/blobs/{digest}`).
    pub fn route(self, path: &str, route: MethodRouter) -> Self {
        Self {
            router: self.router.route(path, route),
            gate: self.gate,
        }
    }

    /// Adds the routes of `routes`.
    pub fn merge(self, routes: Router) -> Self {
        Self {
            router: self.router.merge(routes),
            gate: self.gate,
        }
    }

    /// Serves `image` as `repo` under any reference: its manifest, and its blobs by digest
    /// (`404` for any other).
    pub fn image(self, repo: &str, image: &TestImage) -> Self {
        let blobs = image.blobs().iter().map(|b| b.digest().clone()).collect();
        self.image_lying(repo, image, blobs, || StatusCode::NOT_FOUND.into_response())
    }

    /// Serves `image` as `repo` under any reference, but only its config blob truthfully:
    /// every other blob request is answered by `layer` (a stall, a drip).
    pub fn image_with_layers<F>(self, repo: &str, image: &TestImage, layer: F) -> Self
    where
        F: Fn() -> Response + Clone + Send + Sync + 'static,
    {
        let config = vec![image.config().digest().clone()];
        self.image_lying(repo, image, config, layer)
    }

    fn image_lying<F>(
        self,
        repo: &str,
        image: &TestImage,
        truthful: Vec<mirror_core::Digest>,
        other: F,
    ) -> Self
    where
        F: Fn() -> Response + Clone + Send + Sync + 'static,
    {
        let manifest = image.manifest().clone();
        let blobs: Arc<HashMap<String, Bytes>> = Arc::new(
            image
                .blobs()
                .iter()
                .filter(|b| truthful.contains(b.digest()))
                .map(|b| (b.digest().to_string(), b.read().unwrap()))
                .collect(),
        );
        let manifest_route = get(move || {
            let m = manifest.clone();
            async move {
                (
                    [
                        ("content-type", m.media_type.clone()),
                        ("docker-content-digest", m.digest.to_string()),
                    ],
                    m.bytes.clone(),
                )
                    .into_response()
            }
        });
        let blob_route = get(move |Path(d): Path<String>| {
            let answer = blobs.get(&d).cloned().map(IntoResponse::into_response);
            let other = other.clone();
            async move { answer.unwrap_or_else(other) }
        });
        self.route(
            &format!("/v2/{repo}/manifests/{{reference}}"),
            manifest_route,
        )
        .route(&format!("/v2/{repo}/blobs/{{digest}}"), blob_route)
    }

    /// Starts every blob upload of `repo` at `location` (the `Location` of the `202`).
    pub fn upload_at(self, repo: &str, location: &str) -> Self {
        let location = location.to_string();
        self.route(
            &format!("/v2/{repo}/blobs/uploads/"),
            post(move || {
                let location = location.clone();
                async move { (StatusCode::ACCEPTED, [("location", location)]) }
            }),
        )
    }

    /// Serves it; returns `127.0.0.1:PORT`.
    pub async fn serve(self) -> String {
        let gate = self.gate;
        let router = self.router.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let gate = gate.clone();
                async move {
                    let refused = match &gate {
                        Gate::Open => None,
                        Gate::Basic => basic_challenge(req.headers()),
                        Gate::Bearer(realm) => (!req.headers().contains_key("authorization"))
                            .then(|| bearer_challenge(realm)),
                    };
                    match refused {
                        Some(challenge) => challenge,
                        None => next.run(req).await,
                    }
                }
            },
        ));
        serve(router).await
    }
}

/// Another origin, on `127.0.0.1`, that records the `Authorization` header (`None` when
/// absent) of every request it receives, reads its body whole and answers the same on every
/// path: the place credentials must never reach.
#[derive(Clone)]
pub struct Witness {
    seen: Arc<Mutex<Vec<Option<String>>>>,
    host: String,
}

impl Witness {
    /// Starts it, answering every request with `answer()`.
    pub async fn start<F, R>(answer: F) -> Self
    where
        F: Fn() -> R + Clone + Send + Sync + 'static,
        R: IntoResponse,
    {
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let rec = seen.clone();
        let router = Router::new().fallback(move |headers: HeaderMap, body: Body| {
            let (rec, answer) = (rec.clone(), answer.clone());
            async move {
                rec.lock().unwrap().push(
                    headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap_or("").to_string()),
                );
                let _ = axum::body::to_bytes(body, usize::MAX).await;
                answer().into_response()
            }
        });
        Self {
            seen,
            host: serve(router).await,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.host.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The `Authorization` headers received so far, one per request.
    pub fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}
