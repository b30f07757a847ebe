//! Test infrastructure (feature `testing`): an Artifact Registry emulator on the kit's
//! [`control_plane`](mirror_core::testing::control_plane), written from the public API
//! reference. Google's REST API and OAuth endpoint are faked (only issued, unexpired tokens
//! pass); a real registry sits behind a data proxy (`oauth2accesstoken` exchanged for a
//! registry token, writes to absent repositories and chunked uploads refused). Operations stay
//! pending for some polls, patches apply exactly their `updateMask`, pages hold 2 items,
//! `dockerImages.list` reads the registry, whole-package deletions are recorded as
//! violations. The emulator derefs to its [`Ledger`] (calls by method, faults).

mod data;
mod rest;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use mirror_core::testing::control_plane::{test_rsa_key, DataProxy, FakeServer, Ledger};
use mirror_core::testing::control_plane::{OAuthTokens, Operations};
use mirror_core::testing::TestRegistry;
use serde_json::{json, Value};

use crate::{ArtifactRegistry, ArtifactRegistryBuilder};
use rest::Fake;

/// The project of the tests.
pub const PROJECT: &str = "mirror-test-project";
/// The location of the tests.
pub const LOCATION: &str = "europe-west1";
/// The service account of the test key.
pub const CLIENT_EMAIL: &str = "mirror@mirror-test-project.iam.gserviceaccount.com";

/// The JSON of a service-account key for the test account.
pub fn key_json(token_uri: &str) -> String {
    let key = &test_rsa_key().private_pem;
    json!({"type": "service_account", "project_id": PROJECT, "private_key_id": "0123456789abcdef",
        "private_key": key, "client_email": CLIENT_EMAIL, "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri})
    .to_string()
}

/// The emulator: fake Google (REST + OAuth), the data proxy and the registry. Everything
/// stops when it is dropped.
pub struct FakeGar {
    fake: Arc<Fake>,
    registry: TestRegistry,
    google: FakeServer,
    data: FakeServer,
    dir: tempfile::TempDir,
}

impl std::ops::Deref for FakeGar {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.fake.ledger
    }
}

impl FakeGar {
    /// Starts the registry, the fake and the proxy, and writes a key file whose `token_uri`
    /// is the fake's.
    pub async fn start() -> FakeGar {
        let registry = TestRegistry::start();
        let fake = Arc::new(Fake::new(&registry.host()));
        let router = axum::Router::new().fallback(rest::handler);
        let google = FakeServer::serve(router.with_state(fake.clone())).await;
        let data = DataProxy::start(&registry.url(), fake.clone()).await;
        let _ = fake.urls.set((google.url(), data.url()));
        let dir = tempfile::tempdir().expect("temp dir for the key");
        let gar = FakeGar {
            fake,
            registry,
            google,
            data,
            dir,
        };
        std::fs::write(gar.key_file(), key_json(&gar.token_uri())).expect("write the key file");
        gar
    }

    /// The REST endpoint (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        self.google.url()
    }

    /// The OAuth token endpoint.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.google.url())
    }

    /// The data-plane host (the proxy), `127.0.0.1:PORT`.
    pub fn docker_host(&self) -> String {
        self.data.host()
    }

    /// The key file (its `token_uri` is the fake's).
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("key.json")
    }

    /// A temporary directory living as long as the emulator.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The registry behind the proxy.
    pub fn registry(&self) -> &TestRegistry {
        &self.registry
    }

    /// A builder pointed at the emulator, with fast retries.
    pub fn builder(&self) -> ArtifactRegistryBuilder {
        ArtifactRegistryBuilder::new()
            .project(PROJECT)
            .location(LOCATION)
            .endpoint(self.endpoint())
            .docker_host(self.docker_host())
            .credentials_file(self.key_file())
            .retry(mirror_core::kit::retry::RetryConfig::fast())
    }

    /// An [`ArtifactRegistry`] on the emulator.
    pub async fn gar(&self) -> ArtifactRegistry {
        let built = self.builder().build().await;
        built.unwrap_or_else(|e| panic!("building ArtifactRegistry on the fake: {e}"))
    }

    /// The OAuth endpoint's tokens: requests so far (`hits`), refused tokens, their
    /// lifetime, injected failures.
    pub fn oauth(&self) -> &OAuthTokens {
        &self.fake.oauth
    }

    /// The long-running operations (how many polls they stay pending, 2 by default).
    pub fn operations(&self) -> &Operations<impl Sized> {
        &self.fake.ops
    }

    /// The largest page the fake answers (default 2).
    pub fn set_page_size(&self, n: usize) {
        self.fake.st().page_size = n.max(1);
    }

    /// The next `times` calls of `method` answer `http` with the canonical `status`.
    pub fn inject(&self, method: &str, times: usize, http: u16, status: &str) {
        let body = json!({"error": {"code": http, "message": format!("injected {status}"), "status": status}});
        self.fake
            .ledger
            .inject(method, times, http, body, (http == 429).then_some(0));
    }

    /// A repository as the fake stores it (also while its creation is pending).
    pub fn repository(&self, id: &str) -> Option<Value> {
        Some(self.fake.st().repos.get(id)?.0.clone())
    }

    /// Creates a visible repository directly (as someone else would have).
    pub fn put_repository(&self, id: &str, mut resource: Value) {
        resource["name"] = json!(rest::names(id, "").0);
        self.fake.st().repos.insert(id.into(), (resource, true));
    }

    /// The tags of package `package` of repository `id` as `dockerImages.list` shows them
    /// (those removed by `tags.delete` left out), each with the digest it names.
    pub async fn tags(&self, id: &str, package: &str) -> Vec<(String, String)> {
        let name = rest::names(id, package).1;
        let mut out = Vec::new();
        for tag in self.fake.tags(&name).await {
            if let Some(digest) = self.fake.digest(&name, &tag).await {
                out.push((tag, digest));
            }
        }
        out
    }

    /// Versions deleted so far, as `<repo>/<package>@<digest>`.
    pub fn deleted_versions(&self) -> Vec<String> {
        self.fake.st().deleted_versions.clone()
    }

    /// Whole-package deletions (must stay empty).
    pub fn package_deletes(&self) -> Vec<String> {
        self.fake.st().package_deletes.clone()
    }

    /// `repositories.patch` calls, as (repository id, update mask).
    pub fn patches(&self) -> Vec<(String, String)> {
        self.fake.st().patches.clone()
    }

    /// Chunked upload requests (`PATCH`) the data proxy refused.
    pub fn data_patches(&self) -> usize {
        self.fake.st().data_patches
    }

    /// `401` answers of the data proxy.
    pub fn data_unauthorized(&self) -> usize {
        self.fake.st().data_unauthorized
    }

    /// Sets the upload time of a version (to age images).
    pub fn set_upload_time(&self, id: &str, package: &str, digest: &str, at: SystemTime) {
        self.fake
            .pushed
            .set(&rest::names(id, package).1, digest, at);
    }
}
