//! Test infrastructure (feature `testing`, not product code): an ECR emulator made of
//! `moto_server` for the control plane and the real CNCF distribution registry for the data
//! plane, kept consistent by two in-process proxies built on the kit's
//! [`control_plane`](mirror_core::testing::control_plane).
//!
//! ```text
//!  Ecr (SDK) ──► control proxy ──► moto_server            (repositories, images, tokens)
//!                   │ BatchDeleteImage ok ──► DELETE manifest in the registry
//!  Ecr (data) ──► data proxy ──► docker-registry           (blobs, uploads, mounts: real)
//!                   │ manifest PUT ok ──► moto PutImage (imageDigest = the real digest)
//! ```
//!
//! The **data proxy** takes basic auth `AWS:<password of moto's token>` (else `401` with a
//! `Basic` challenge, as ECR), refuses writes to repositories moto does not know (`404
//! NAME_UNKNOWN`), counts mount attempts and can decline them (the `202` of ECR without blob
//! mounting), and after every stored manifest calls moto's `PutImage`. The **control proxy**
//! forwards every API call to moto, records it in the emulator's [`Ledger`] (which the
//! emulator derefs to: `calls`, `all_calls`, `requests`) with the faults injected there, can
//! hand out short-lived tokens instead of moto's (expired in 2015, never changing), and after
//! a `BatchDeleteImage` deletes the manifests from the registry (by tag: only when moto no
//! longer has the image). Not hidden: moto deletes an image whose only tag moves to another
//! (ECR leaves it untagged), and its `imageSizeInBytes` is not the sum of the layers.
//! Constructors panic when the environment is broken; everything stops on drop.

mod proxy;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{retry::RetryConfig, BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::config::{Credentials as AwsCredentials, SharedCredentialsProvider};
use mirror_core::testing::control_plane::{DataProxy, FakeServer, Ledger};
use mirror_core::testing::TestRegistry;
use serde_json::{json, Value};

use crate::{Ecr, EcrBuilder};
use proxy::{Shared, TARGET_PREFIX};

/// moto's default account.
pub const ACCOUNT: &str = "123456789012";
/// The region the tests use.
pub const REGION: &str = "us-east-1";
/// The pinned moto version (keep in step with scripts/moto.sh).
pub const MOTO_PIP: &str = "moto==5.2.5 flask==3.1.3 flask-cors==6.0.5 boto3==1.44.8";
const FAKE_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDMIRRORTEST/20240101/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00";

/// Finds `moto_server`: `$MOTO_SERVER`, else `.venv-moto/bin/moto_server` at the workspace
/// root, else `PATH`. Panics with the setup command when it is missing.
pub fn moto_binary() -> PathBuf {
    let setup = format!("run scripts/moto.sh (or scripts/test.sh), or: python3 -m venv .venv-moto && .venv-moto/bin/pip install {MOTO_PIP}");
    if let Some(p) = std::env::var_os("MOTO_SERVER").map(PathBuf::from) {
        assert!(
            p.is_file(),
            "MOTO_SERVER={} does not exist; {setup}",
            p.display()
        );
        return p;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    let venv = root.unwrap_or_default().join(".venv-moto/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    let found = mirror_core::testing::find_tool("moto_server");
    found.unwrap_or_else(|| {
        panic!("moto_server (PyPI `moto`) was not found: set MOTO_SERVER, or {setup}")
    })
}

/// A `moto_server` process on 127.0.0.1 with an ephemeral port, killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    /// Starts moto and waits until it answers (panics after 60 s, with its log).
    pub async fn start() -> Moto {
        let bin = moto_binary();
        let dir = tempfile::tempdir().expect("temp dir for the moto log");
        let mut last = String::new();
        for _ in 0..3 {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("an ephemeral port");
            let port = listener.local_addr().expect("its port").port();
            drop(listener);
            let log = dir.path().join(format!("moto-{port}.log"));
            let file = std::fs::File::create(&log).expect("create the moto log");
            let err = file.try_clone().expect("clone the moto log handle");
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let (http, deadline) = (
                reqwest::Client::new(),
                Instant::now() + Duration::from_secs(60),
            );
            let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("moto_server exited with {status}: {}", read_log());
                    break;
                }
                let url = format!("http://127.0.0.1:{port}/moto-api/");
                if http
                    .get(url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok()
                {
                    return Moto {
                        child,
                        port,
                        log,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = (child.kill(), child.wait());
                    panic!(
                        "moto_server did not answer on port {port} within 60 s: {}",
                        read_log()
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("moto_server would not start: {last}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = (self.child.kill(), self.child.wait());
    }
}

/// Calls an ECR operation on moto directly (no proxy, not counted).
pub async fn moto_call(http: &reqwest::Client, moto: &str, op: &str, body: &Value) -> (u16, Value) {
    let resp = http
        .post(format!("{moto}/"))
        .header("x-amz-target", format!("{TARGET_PREFIX}{op}"))
        .header("content-type", "application/x-amz-json-1.1")
        .header("authorization", FAKE_AUTH)
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto {op}: {e}"));
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// moto + registry + the two proxies. Everything stops when it is dropped; calls are
/// counted, and faults injected, by the kit's [`Ledger`] it derefs to.
pub struct EcrEmulator {
    moto: Moto,
    registry: TestRegistry,
    shared: Arc<Shared>,
    control: FakeServer,
    data: FakeServer,
}

impl std::ops::Deref for EcrEmulator {
    type Target = Ledger;
    fn deref(&self) -> &Ledger {
        &self.shared.ledger
    }
}

impl EcrEmulator {
    /// Starts moto, a registry and both proxies.
    pub async fn start() -> EcrEmulator {
        let (moto, registry) = (Moto::start().await, TestRegistry::start());
        let shared = Arc::new(Shared::new(moto.url(), registry.url()));
        let router = axum::Router::new().fallback(proxy::control);
        let control = FakeServer::serve(router.with_state(shared.clone())).await;
        let data = DataProxy::start(&registry.url(), shared.clone()).await;
        EcrEmulator {
            moto,
            registry,
            shared,
            control,
            data,
        }
    }

    /// The control-plane endpoint URL (the control proxy).
    pub fn endpoint(&self) -> String {
        self.control.url()
    }

    /// The data-plane host (the data proxy), `127.0.0.1:PORT`.
    pub fn registry_host(&self) -> String {
        self.data.host()
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
        let credentials =
            AwsCredentials::new("AKIDMIRRORTEST", "not-a-secret", None, None, "mirror-tests");
        let retry = RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(10));
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .retry_config(retry)
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
        let built = self.builder().build().await;
        built.unwrap_or_else(|e| panic!("building Ecr on the emulator: {e}"))
    }

    /// The next `times` calls of `operation` get `status` with `body` instead of moto's
    /// answer.
    pub fn inject(&self, operation: &str, times: usize, status: u16, body: Value) {
        self.shared
            .ledger
            .inject(operation, times, status, body, None);
    }

    /// The next `times` calls of `operation` fail with the AWS error `code`.
    pub fn inject_error(&self, operation: &str, times: usize, status: u16, code: &str) {
        let body = json!({"__type": code, "message": format!("injected {code}")});
        self.inject(operation, times, status, body);
    }

    /// Answer cross-repository mounts with `202` (ECR without blob mounting).
    pub fn decline_mounts(&self, decline: bool) {
        self.shared.decline_mounts.store(decline, Ordering::SeqCst);
    }

    /// From now on `GetAuthorizationToken` hands out a new password per call that the data
    /// plane accepts for `lifetime` only (`None`: moto's fixed token).
    pub fn set_token_lifetime(&self, lifetime: Option<Duration>) {
        self.shared.tokens.lock().unwrap().0 = lifetime;
    }

    /// Refuse every token on the data plane (`401`), as ECR does a revoked one.
    pub fn refuse_tokens(&self, refuse: bool) {
        self.shared.refuse_tokens.store(refuse, Ordering::SeqCst);
    }

    /// Mount attempts seen by the data proxy.
    pub fn mount_attempts(&self) -> usize {
        self.shared.mount_attempts.load(Ordering::SeqCst)
    }

    /// The statuses the mount attempts were answered with.
    pub fn mount_answers(&self) -> Vec<u16> {
        self.shared.mount_answers.lock().unwrap().clone()
    }

    /// `PutImage` calls the data proxy made.
    pub fn put_images(&self) -> usize {
        self.shared.put_images.load(Ordering::SeqCst)
    }

    /// Requests the data proxy refused for missing or wrong credentials.
    pub fn unauthorized(&self) -> usize {
        self.shared.unauthorized.load(Ordering::SeqCst)
    }

    /// Consistency failures of the emulator itself (a `PutImage` moto refused…).
    pub fn failures(&self) -> Vec<String> {
        self.shared.failures.lock().unwrap().clone()
    }

    /// Calls moto directly.
    pub async fn moto(&self, op: &str, body: Value) -> (u16, Value) {
        moto_call(&self.shared.http, &self.moto.url(), op, &body).await
    }
}
