//! [`EcrEmulator`]: moto, a real registry and the two proxies that make them one ECR.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{Ecr, EcrBuilder};
use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::config::{Credentials as AwsCredentials, SharedCredentialsProvider};
use base64::Engine as _;
use mirror_core::testing::TestRegistry;
use serde_json::{json, Value};

use super::proxy::{control_handler, data_handler, serve, ControlState, DataState, Fault};
use super::*;

/// moto + registry + the two proxies. Everything stops when it is dropped.
pub struct EcrEmulator {
    moto: Moto,
    registry: TestRegistry,
    control: Arc<ControlState>,
    control_addr: SocketAddr,
    data: Arc<DataState>,
    data_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for EcrEmulator {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl EcrEmulator {
    /// Starts moto, a registry and both proxies.
    pub async fn start() -> EcrEmulator {
        let moto = Moto::start().await;
        let registry = TestRegistry::start();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("proxy HTTP client");
        let tokens: Arc<Mutex<super::proxy::Tokens>> = Arc::default();
        let control = Arc::new(ControlState {
            tokens: tokens.clone(),
            moto: moto.url(),
            registry: registry.url(),
            http: http.clone(),
            calls: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
        });
        let password = format!("{ACCOUNT}-auth-token");
        let data = Arc::new(DataState {
            tokens,
            registry: registry.url(),
            moto: moto.url(),
            http,
            public: Mutex::new(String::new()),
            expected_auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"))
            ),
            decline_mounts: AtomicBool::new(false),
            refuse_tokens: AtomicBool::new(false),
            mount_attempts: AtomicUsize::new(0),
            mount_answers: Mutex::new(Vec::new()),
            put_images: AtomicUsize::new(0),
            unauthorized: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
        });
        let (control_addr, t1) = serve(
            axum::Router::new()
                .fallback(control_handler)
                .with_state(control.clone()),
        )
        .await;
        let (data_addr, t2) = serve(
            axum::Router::new()
                .fallback(data_handler)
                .with_state(data.clone()),
        )
        .await;
        *data.public.lock().unwrap() = format!("http://{data_addr}");
        EcrEmulator {
            moto,
            registry,
            control,
            control_addr,
            data,
            data_addr,
            tasks: vec![t1, t2],
        }
    }

    /// The control-plane endpoint URL (the control proxy).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.control_addr)
    }

    /// The data-plane host (the data proxy), `127.0.0.1:PORT`.
    pub fn registry_host(&self) -> String {
        self.data_addr.to_string()
    }

    /// moto's own URL (bypasses the proxy).
    pub fn moto_url(&self) -> String {
        self.moto.url()
    }

    /// The registry behind the data proxy.
    pub fn registry(&self) -> &TestRegistry {
        &self.registry
    }

    /// An explicit SDK configuration: fake static credentials, the test region, fast
    /// retries. Never reads the environment or `~/.aws`.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(SharedCredentialsProvider::new(AwsCredentials::new(
                "AKIDMIRRORTEST",
                "not-a-secret",
                None,
                None,
                "mirror-tests",
            )))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .http_client(crate::config::https_client())
            .build()
    }

    /// A builder pointed at the emulator.
    pub fn builder(&self) -> EcrBuilder {
        EcrBuilder::new()
            .sdk_config(self.sdk_config())
            .region(REGION)
            .account(ACCOUNT)
            .endpoint(self.endpoint())
            .registry_host(self.registry_host())
    }

    /// An [`Ecr`] on the emulator.
    pub async fn ecr(&self) -> Ecr {
        self.builder()
            .build()
            .await
            .unwrap_or_else(|e| panic!("building Ecr on the emulator: {e}"))
    }

    /// How many times the control plane was asked `operation` (`GetAuthorizationToken`…).
    pub fn calls(&self, operation: &str) -> usize {
        self.control
            .calls
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Every control-plane operation called so far, with its count.
    pub fn all_calls(&self) -> std::collections::BTreeMap<String, usize> {
        self.control
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The request bodies of every call of `operation` so far, in order.
    pub fn requests(&self, operation: &str) -> Vec<Value> {
        self.control
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(op, _)| op == operation)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// The next `times` calls of `operation` get `status` with `body` instead of moto's
    /// answer.
    pub fn inject(&self, operation: &str, times: usize, status: u16, body: Value) {
        self.control.faults.lock().unwrap().push(Fault {
            operation: operation.to_string(),
            remaining: times,
            status,
            body,
        });
    }

    /// The next `times` calls of `operation` fail with the AWS error `code`.
    pub fn inject_error(&self, operation: &str, times: usize, status: u16, code: &str) {
        self.inject(
            operation,
            times,
            status,
            json!({"__type": code, "message": format!("injected {code}")}),
        );
    }

    /// Answer cross-repository mounts with `202` (ECR without blob mounting) instead of
    /// forwarding them.
    pub fn decline_mounts(&self, decline: bool) {
        self.data.decline_mounts.store(decline, Ordering::SeqCst);
    }

    /// From now on `GetAuthorizationToken` hands out a new password per call that the data
    /// plane accepts for `lifetime` only (`None`: moto's fixed token, as before).
    pub fn set_token_lifetime(&self, lifetime: Option<Duration>) {
        self.control.tokens.lock().unwrap().lifetime = lifetime;
    }

    /// Refuse every token on the data plane (`401`), as ECR does for a token of another
    /// account or a revoked one.
    pub fn refuse_tokens(&self, refuse: bool) {
        self.data.refuse_tokens.store(refuse, Ordering::SeqCst);
    }

    /// Mount attempts seen by the data proxy.
    pub fn mount_attempts(&self) -> usize {
        self.data.mount_attempts.load(Ordering::SeqCst)
    }

    /// The statuses the mount attempts were answered with.
    pub fn mount_answers(&self) -> Vec<u16> {
        self.data.mount_answers.lock().unwrap().clone()
    }

    /// `PutImage` calls the data proxy made.
    pub fn put_images(&self) -> usize {
        self.data.put_images.load(Ordering::SeqCst)
    }

    /// Requests the data proxy refused for missing or wrong credentials.
    pub fn unauthorized(&self) -> usize {
        self.data.unauthorized.load(Ordering::SeqCst)
    }

    /// Consistency failures of the emulator itself (a `PutImage` moto refused…).
    pub fn failures(&self) -> Vec<String> {
        self.data.failures.lock().unwrap().clone()
    }

    /// Calls moto directly.
    pub async fn moto(&self, op: &str, body: Value) -> (u16, Value) {
        moto_call(&self.control.http, &self.moto.url(), op, &body).await
    }
}
