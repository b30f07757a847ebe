//! [`FakeGar`]: the fake REST API, the OAuth endpoint and the data proxy, started together.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::{ArtifactRegistry, ArtifactRegistryBuilder};
use mirror_core::testing::TestRegistry;
use serde_json::{json, Value};

#[allow(unused_imports)]
use super::*;

/// The emulator: fake Google (REST + OAuth), the data proxy and the registry. Everything stops
/// when it is dropped.
pub struct FakeGar {
    fake: Arc<Fake>,
    registry: TestRegistry,
    google_addr: SocketAddr,
    data_addr: SocketAddr,
    dir: tempfile::TempDir,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeGar {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind on 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, task)
}

impl FakeGar {
    /// Starts the registry, the fake and the proxy, and writes a key file whose `token_uri`
    /// is the fake's.
    pub async fn start() -> FakeGar {
        test_key();
        let registry = TestRegistry::start();
        let fake = Arc::new(Fake {
            registry: registry.url(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("fake HTTP client"),
            google: Mutex::new(String::new()),
            data_base: Mutex::new(String::new()),
            oauth: Mutex::new(OAuth::default()),
            st: Mutex::new(St {
                repos: BTreeMap::new(),
                ops: HashMap::new(),
                versions: BTreeMap::new(),
                calls: HashMap::new(),
                faults: Vec::new(),
                pending_polls: 2,
                page_size: 2,
                op_counter: 0,
                deleted_versions: Vec::new(),
                package_deletes: Vec::new(),
                patches: Vec::new(),
                data: DataCounters::default(),
                removed_tags: Default::default(),
            }),
        });
        let (google_addr, t1) = serve(
            axum::Router::new()
                .fallback(google_handler)
                .with_state(fake.clone()),
        )
        .await;
        let (data_addr, t2) = serve(
            axum::Router::new()
                .fallback(data_handler)
                .with_state(fake.clone()),
        )
        .await;
        *fake.google.lock().unwrap() = format!("http://{google_addr}");
        *fake.data_base.lock().unwrap() = format!("http://{data_addr}");
        let dir = tempfile::tempdir().expect("temp dir for the key");
        let gar = FakeGar {
            fake,
            registry,
            google_addr,
            data_addr,
            dir,
            tasks: vec![t1, t2],
        };
        std::fs::write(gar.key_file(), key_json(&gar.token_uri())).expect("write the key file");
        gar
    }

    /// The REST endpoint (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.google_addr)
    }

    /// The OAuth token endpoint.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.google_addr)
    }

    /// The data-plane host (the proxy), `127.0.0.1:PORT`.
    pub fn docker_host(&self) -> String {
        self.data_addr.to_string()
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
            .retry(mirror_core::retry::RetryConfig::fast())
    }

    /// An [`ArtifactRegistry`] on the emulator.
    pub async fn gar(&self) -> ArtifactRegistry {
        self.builder()
            .build()
            .await
            .unwrap_or_else(|e| panic!("building ArtifactRegistry on the fake: {e}"))
    }

    /// Every REST method called so far, with its count (OAuth token requests are
    /// [`FakeGar::token_requests`]).
    pub fn all_calls(&self) -> std::collections::BTreeMap<String, usize> {
        self.fake
            .st()
            .calls
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Calls of a REST method so far (`repositories.create`, `operations.get`,
    /// `dockerImages.list`, `versions.delete`…).
    pub fn calls(&self, method: &str) -> usize {
        self.fake.st().calls.get(method).copied().unwrap_or(0)
    }

    /// Requests to the OAuth token endpoint so far.
    pub fn token_requests(&self) -> usize {
        self.fake.oauth().hits
    }

    /// Tokens presented that were unknown or expired, as `where: token prefix`.
    pub fn rejected_tokens(&self) -> Vec<String> {
        self.fake.oauth().rejected.clone()
    }

    /// The lifetime of the access tokens handed out from now on (default 3600 s).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.fake.oauth().lifetime = Some(lifetime);
    }

    /// The next `n` token requests are refused (`400 invalid_grant`).
    pub fn fail_token_requests(&self, n: usize) {
        self.fake.oauth().fail_next = n;
    }

    /// How many polls an operation stays pending (default 2).
    pub fn set_pending_polls(&self, n: usize) {
        self.fake.st().pending_polls = n;
    }

    /// The largest page the fake answers (default 2).
    pub fn set_page_size(&self, n: usize) {
        self.fake.st().page_size = n.max(1);
    }

    /// The next `times` calls of `method` answer `http` with the canonical `status`.
    pub fn inject(&self, method: &str, times: usize, http: u16, status: &str) {
        self.fake.st().faults.push(FaultRule {
            method: method.to_string(),
            remaining: times,
            http,
            status: status.to_string(),
        });
    }

    /// A repository as the fake stores it (also while its creation is pending).
    pub fn repository(&self, id: &str) -> Option<Value> {
        self.fake.st().repos.get(id).map(|r| r.resource.clone())
    }

    /// Ids of every repository.
    pub fn repository_ids(&self) -> Vec<String> {
        self.fake.st().repos.keys().cloned().collect()
    }

    /// Creates a visible repository directly (as someone else would have).
    pub fn put_repository(&self, id: &str, resource: Value) {
        let mut r = resource;
        r["name"] = json!(format!(
            "projects/{PROJECT}/locations/{LOCATION}/repositories/{id}"
        ));
        self.fake.st().repos.insert(
            id.to_string(),
            RepoRec {
                resource: r,
                visible: true,
            },
        );
    }

    /// The tags of package `package` of repository `id` as `dockerImages.list` shows them
    /// (those removed by `tags.delete` left out), each with the digest it names.
    pub async fn tags(&self, id: &str, package: &str) -> Vec<(String, String)> {
        let name = format!("{PROJECT}/{id}/{package}");
        let mut out = Vec::new();
        for tag in super::images::reg_tags(&self.fake, &name).await {
            if let Some(m) = super::images::reg_manifest(&self.fake, &name, &tag).await {
                out.push((tag, m.digest));
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
        self.fake.st().data.patches
    }

    /// Registry-token requests at the data proxy.
    pub fn data_token_requests(&self) -> usize {
        self.fake.st().data.token_requests
    }

    /// `401` answers of the data proxy.
    pub fn data_unauthorized(&self) -> usize {
        self.fake.st().data.unauthorized
    }

    /// Sets the upload time of a version the fake knows (to age images).
    pub fn set_upload_time(&self, id: &str, package: &str, digest: &str, at: SystemTime) {
        let mut st = self.fake.st();
        let versions = st
            .versions
            .entry((id.to_string(), package.to_string()))
            .or_default();
        match versions.get_mut(digest) {
            Some(m) => m.upload = at,
            None => {
                versions.insert(
                    digest.to_string(),
                    Meta {
                        upload: at,
                        media_type: String::new(),
                    },
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Google API plumbing
