//! Test infrastructure (feature `testing`, not product code): an in-process fake of the
//! Scaleway Container Registry API v1 (from its public reference, on the kit's
//! [`control_plane`](mirror_core::testing::control_plane)) in front of a real distribution
//! registry playing the data plane (basic auth `nologin:<secret>`, as Scaleway's).
//! Namespaces live in memory (names unique across projects, as Scaleway's are per region; a
//! new one turns `ready` after a number of reads); images and tags are read from the
//! registry on every call and deleted there (a tag's manifest, so `force=true` when other
//! tags share it); `X-Auth-Token` must be the secret key, other projects answer 403; pages
//! as the reference says ([`FakeScaleway::set_max_page_size`] serves fewer). The fake derefs
//! to its [`Ledger`] (calls, injected faults). Not like Scaleway: pushes into unknown
//! namespaces are accepted (not listed), image sizes are 0, namespaces cannot be deleted.

mod api;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirror_core::kit::retry::RetryConfig;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::control_plane::FakeServer;
use mirror_core::testing::TestRegistry;
use mirror_core::{Digest, ImageStore};
use serde_json::{json, Value};

use crate::{Scaleway, ScalewayBuilder, DATA_PLANE_USER};
use api::{shown, FakeState};

pub use mirror_core::testing::control_plane::{Call, Ledger};

/// The secret key the fake accepts (and the data-plane password).
pub const SECRET: &str = "5c1e0b7a-3e2d-4f8b-9a61-0d4c2b1e7f90";
/// The project of the tests.
pub const PROJECT: &str = "4b0c6bd4-5a39-4d48-8c1e-6a2f2e4e1b11";
/// The organization of the tests.
pub const ORGANIZATION: &str = "7e1d2c3b-4a59-4f68-8e7d-6c5b4a392817";
/// Another customer's project.
pub const FOREIGN_PROJECT: &str = "9d3f0a57-0e36-4c5e-8f3c-2d1b0a9e8f7c";
/// The region of the tests.
pub const REGION: &str = "fr-par";

/// The fake API plus the registry behind it; everything stops when it is dropped.
pub struct FakeScaleway {
    registry: TestRegistry,
    state: Arc<FakeState>,
    server: FakeServer,
}

/// Calls are counted, and faults injected, by the kit's [`Ledger`].
impl std::ops::Deref for FakeScaleway {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.state.ledger
    }
}

impl FakeScaleway {
    /// Starts a registry (basic auth `nologin:<SECRET>`) and the fake API in front of it.
    pub async fn start() -> FakeScaleway {
        let registry = TestRegistry::with_basic_auth(DATA_PLANE_USER, SECRET);
        let data = RegistryClient::builder(&registry.host())
            .credentials(Credentials::basic(DATA_PLANE_USER, SECRET))
            .retry(RetryConfig::fast())
            .build()
            .expect("registry client of the fake");
        let state = Arc::new(FakeState {
            data,
            namespaces: Mutex::default(),
            first_seen: Mutex::default(),
            deleted_images: Mutex::default(),
            readiness: Mutex::new(("unknown".into(), 0)),
            max_page_size: Mutex::new(100),
            ledger: Ledger::default(),
        });
        let router = axum::Router::new().fallback(api::handler);
        let server = FakeServer::serve(router.with_state(state.clone())).await;
        FakeScaleway {
            registry,
            state,
            server,
        }
    }

    /// The API URL (`http://127.0.0.1:PORT`).
    pub fn api_url(&self) -> String {
        self.server.url()
    }

    /// The data-plane host (the registry), `127.0.0.1:PORT`.
    pub fn registry_host(&self) -> String {
        self.registry.host()
    }

    /// The registry.
    pub fn registry(&self) -> &TestRegistry {
        &self.registry
    }

    /// A client of the registry with the data-plane credentials.
    pub fn data_plane(&self) -> RegistryClient {
        self.state.data.clone()
    }

    /// A builder pointed at the fake: fast retries and readiness polls.
    pub fn builder(&self) -> ScalewayBuilder {
        ScalewayBuilder::new()
            .secret_key(SECRET)
            .project_id(PROJECT)
            .region(REGION)
            .api_url(self.api_url())
            .registry_host(self.registry_host())
            .retry(RetryConfig::fast())
            .namespace_poll_interval(Duration::from_millis(10))
            .namespace_timeout(Duration::from_secs(10))
    }

    /// A [`Scaleway`] on the fake.
    pub fn scaleway(&self) -> Scaleway {
        self.builder()
            .build()
            .unwrap_or_else(|e| panic!("building Scaleway on the fake: {e}"))
    }

    /// New namespaces start in `status` and turn `ready` after `reads` namespace reads
    /// (`0`: ready at once, the default).
    pub fn set_readiness(&self, status: &str, reads: u32) {
        *self.state.readiness.lock().unwrap() = (status.to_string(), reads);
    }

    /// The server returns at most `n` items per page, whatever the client asks.
    pub fn set_max_page_size(&self, n: usize) {
        *self.state.max_page_size.lock().unwrap() = n;
    }

    /// Sets the status of a namespace (and stops its turning ready).
    pub fn set_namespace_status(&self, name: &str, status: &str, message: &str) {
        let mut ns = self.state.namespaces.lock().unwrap();
        let n = ns.iter_mut().find(|n| n["name"] == name);
        let n = n.unwrap_or_else(|| panic!("no namespace {name}"));
        (n["status"], n["status_message"], n["reads_left"]) =
            (json!(status), json!(message), json!(0));
    }

    /// Plants a namespace of `project` (not necessarily one the key may use).
    pub fn add_namespace(&self, name: &str, project: &str, status: &str, is_public: bool) {
        let n = self.state.namespace(name, project, is_public, (status, 0));
        self.state.namespaces.lock().unwrap().push(n);
    }

    /// Plants a ready namespace owned by another customer.
    pub fn add_foreign_namespace(&self, name: &str) {
        self.add_namespace(name, FOREIGN_PROJECT, "ready", false);
    }

    /// The namespace named `name` as the API shows it, if any (any project).
    pub fn namespace(&self, name: &str) -> Option<Value> {
        let ns = self.state.namespaces.lock().unwrap();
        ns.iter().find(|n| n["name"] == name).map(shown)
    }

    /// The next `times` calls of `operation` fail with a standard Scaleway error.
    pub fn inject_error(&self, operation: &str, times: usize, status: u16, error_type: &str) {
        let body = json!({"message": format!("injected {error_type}"), "type": error_type});
        self.state
            .ledger
            .inject(operation, times, status, body, None);
    }

    /// The tags of `repository` in the registry (bypassing the fake API).
    pub async fn registry_tags(&self, repository: &str) -> Vec<String> {
        let store = self
            .state
            .data
            .repository(repository)
            .expect("repository name");
        match store.list_tags().await {
            Ok(mut t) => {
                t.sort();
                t
            }
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => panic!("registry tags of {repository}: {e}"),
        }
    }

    /// Whether `repository@digest` is in the registry.
    pub async fn registry_has(&self, repository: &str, digest: &Digest) -> bool {
        let store = self
            .state
            .data
            .repository(repository)
            .expect("repository name");
        let head = store.head_manifest(&digest.to_string()).await;
        head.unwrap_or_else(|e| panic!("registry HEAD {repository}@{digest}: {e}"))
            .is_some()
    }
}
