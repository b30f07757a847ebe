//! [`FakeScaleway`]: the fake API in front of a real registry.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Scaleway, ScalewayBuilder};
use mirror_core::retry::RetryConfig;
use mirror_core::store::http::credentials::Credentials;
use mirror_core::store::http::RegistryClient;
use mirror_core::testing::TestRegistry;
use mirror_core::{Digest, ImageStore};
use serde_json::{json, Value};

#[allow(unused_imports)]
use super::*;

/// The fake API plus the registry behind it; everything stops when it is dropped.
pub struct FakeScaleway {
    registry: TestRegistry,
    state: Arc<FakeState>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeScaleway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeScaleway {
    /// Starts a registry (basic auth `nologin:<SECRET>`) and the fake API in front of it.
    pub async fn start() -> FakeScaleway {
        let registry = TestRegistry::with_basic_auth(crate::DATA_PLANE_USER, SECRET);
        let data = RegistryClient::builder(&registry.host())
            .credentials(Credentials::basic(crate::DATA_PLANE_USER, SECRET))
            .retry(RetryConfig::fast())
            .build()
            .expect("registry client of the fake");
        let state = Arc::new(FakeState {
            data,
            registry_host: registry.host(),
            secret: SECRET.to_string(),
            projects: Mutex::new([PROJECT.to_string()].into_iter().collect()),
            namespaces: Mutex::new(Vec::new()),
            first_seen: Mutex::new(HashMap::new()),
            deleted_images: Mutex::new(HashSet::new()),
            config: Mutex::new(Config {
                initial_status: "unknown".into(),
                ready_after: 0,
                max_page_size: 100,
            }),
            calls: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Scaleway API on 127.0.0.1");
        let addr = listener.local_addr().expect("fake API address");
        let router = axum::Router::new()
            .fallback(handler)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeScaleway {
            registry,
            state,
            addr,
            task,
        }
    }

    /// The API URL (`http://127.0.0.1:PORT`).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
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
        let mut c = self.state.config.lock().unwrap();
        c.initial_status = status.to_string();
        c.ready_after = reads;
    }

    /// The server returns at most `n` items per page, whatever the client asks.
    pub fn set_max_page_size(&self, n: usize) {
        self.state.config.lock().unwrap().max_page_size = n;
    }

    /// Sets the status of a namespace (and stops its turning ready).
    pub fn set_namespace_status(&self, name: &str, status: &str, message: &str) {
        let mut ns = self.state.namespaces.lock().unwrap();
        let n = ns
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no namespace {name}"));
        n.status = status.to_string();
        n.status_message = message.to_string();
        n.reads_left = 0;
    }

    /// Plants a namespace of `project` (not necessarily one the key may use).
    pub fn add_namespace(&self, name: &str, project: &str, status: &str, is_public: bool) {
        let now = now_rfc3339();
        self.state.namespaces.lock().unwrap().push(NamespaceRec {
            id: uuid_from("namespace", &[name, &now]),
            name: name.to_string(),
            project_id: project.to_string(),
            organization_id: ORGANIZATION.to_string(),
            description: String::new(),
            is_public,
            status: status.to_string(),
            status_message: String::new(),
            reads_left: 0,
            created_at: now.clone(),
            updated_at: now,
        });
    }

    /// Plants a ready namespace owned by another customer.
    pub fn add_foreign_namespace(&self, name: &str) {
        self.add_namespace(name, FOREIGN_PROJECT, "ready", false);
    }

    /// The namespace named `name` as the API shows it, if any (any project).
    pub fn namespace(&self, name: &str) -> Option<Value> {
        let ns = self.state.namespaces.lock().unwrap();
        ns.iter()
            .find(|n| n.name == name)
            .map(|n| self.state.namespace_json(n, 0))
    }

    /// Every namespace name (any project).
    pub fn namespace_names(&self) -> Vec<String> {
        let ns = self.state.namespaces.lock().unwrap();
        ns.iter().map(|n| n.name.clone()).collect()
    }

    /// The next `times` calls of `operation` get `status` with `body` (and `Retry-After`
    /// when given) instead of the fake's answer.
    pub fn inject(
        &self,
        operation: &str,
        times: usize,
        status: u16,
        body: Value,
        retry_after: Option<u64>,
    ) {
        self.state.faults.lock().unwrap().push(Fault {
            operation: operation.to_string(),
            remaining: times,
            status,
            body,
            retry_after,
        });
    }

    /// The next `times` calls of `operation` fail with a standard Scaleway error.
    pub fn inject_error(&self, operation: &str, times: usize, status: u16, error_type: &str) {
        self.inject(
            operation,
            times,
            status,
            json!({"message": format!("injected {error_type}"), "type": error_type}),
            None,
        );
    }

    /// Drops every pending fault.
    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// How many calls of `operation` the fake answered (faults included).
    pub fn calls(&self, operation: &str) -> usize {
        self.state
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// Every call, in order.
    pub fn call_log(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }

    /// Forgets the call log.
    pub fn reset_calls(&self) {
        self.state.calls.lock().unwrap().clear();
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
        store
            .head_manifest(&digest.to_string())
            .await
            .unwrap_or_else(|e| panic!("registry HEAD {repository}@{digest}: {e}"))
            .is_some()
    }
}
