//! Test infrastructure (not product code): an ECR emulator built from `moto_server` for the
//! control plane and the real CNCF distribution registry for the data plane, kept consistent
//! by two in-process HTTP proxies.
//!
//! ```text
//!  Ecr (SDK) ──► control proxy ──► moto_server            (ECR API: repositories, images…)
//!                   │ BatchDeleteImage ok ──► DELETE manifest in the registry
//!  Ecr (data) ──► data proxy ──► docker-registry           (blobs, uploads, mounts: real)
//!                   │ manifest PUT ok ──► moto PutImage (with imageDigest = the real digest)
//! ```
//!
//! Why: moto's ECR keeps images in memory and knows nothing of a data plane, and the registry
//! knows nothing of moto. Real ECR is one service; the proxies make the pair behave like one:
//!
//! - **data proxy**: requires basic auth `AWS:<token password>` (the password moto's
//!   `GetAuthorizationToken` hands out) and answers `401` with a `Basic` challenge otherwise,
//!   as ECR does; refuses writes to repositories moto does not know (`404 NAME_UNKNOWN`, as
//!   ECR does for repositories never created); forwards everything else to the registry
//!   (streaming bodies, `Location` headers rewritten to point back at the proxy); after every
//!   successful manifest `PUT` it calls moto's `PutImage` with the manifest, its media type,
//!   the tag (for pushes by tag) and `imageDigest` (so moto uses the real digest, not its own
//!   computation). It counts mount attempts and can decline them with the `202` ECR sends
//!   when blob mounting is disabled.
//! - **control proxy**: forwards every ECR API call to moto, counts calls per operation,
//!   injects canned error answers on request, and after a successful `BatchDeleteImage`
//!   deletes the deleted manifests from the registry.
//!
//! Known differences from ECR that the emulator does not hide: moto deletes an image whose
//! only tag is moved to another image (ECR leaves it untagged), and moto's `imageSizeInBytes`
//! is not the sum of the layers.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::config::{Credentials as AwsCredentials, SharedCredentialsProvider};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use futures::TryStreamExt;
use mirror_core::testing::TestRegistry;
use provider_aws::{Ecr, EcrBuilder};
use serde_json::{json, Value};

/// moto's default account.
pub const ACCOUNT: &str = "123456789012";
/// The region the tests use.
pub const REGION: &str = "us-east-1";
/// The pinned moto version (keep in step with scripts/moto.sh).
pub const MOTO_PIP: &str = "moto==5.2.5 flask==3.1.3 flask-cors==6.0.5 boto3==1.44.8";

const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";
const FAKE_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDMIRRORTEST/20240101/us-east-1/ecr/aws4_request, SignedHeaders=host, Signature=00";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Finds `moto_server`: `$MOTO_SERVER`, else `.venv-moto/bin/moto_server` at the workspace
/// root, else `PATH`. Panics with the setup command when it is missing.
pub fn moto_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MOTO_SERVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "MOTO_SERVER={} does not exist; run scripts/moto.sh (or scripts/test.sh), or: python3 -m venv .venv-moto && .venv-moto/bin/pip install {MOTO_PIP}",
            p.display()
        );
        return p;
    }
    let venv = workspace_root().join(".venv-moto/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    mirror_core::testing::find_tool("moto_server").unwrap_or_else(|| {
        panic!(
            "moto_server (PyPI `moto`) was not found: set MOTO_SERVER, or run scripts/moto.sh \
             or scripts/test.sh (they create .venv-moto), or: python3 -m venv .venv-moto && \
             .venv-moto/bin/pip install {MOTO_PIP}"
        )
    })
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
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
            let port = free_port();
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
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!(
                        "moto_server exited with {status}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                let up = http
                    .get(format!("http://127.0.0.1:{port}/moto-api/"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok();
                if up {
                    return Moto {
                        child,
                        port,
                        log,
                        _dir: dir,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "moto_server did not answer on port {port} within 60 s: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
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
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// A canned answer the control proxy gives instead of forwarding.
#[derive(Debug, Clone)]
struct Fault {
    operation: String,
    remaining: usize,
    status: u16,
    body: Value,
}

struct ControlState {
    moto: String,
    registry: String,
    http: reqwest::Client,
    calls: Mutex<HashMap<String, usize>>,
    faults: Mutex<Vec<Fault>>,
}

struct DataState {
    registry: String,
    moto: String,
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of the proxy itself.
    public: Mutex<String>,
    expected_auth: String,
    decline_mounts: AtomicBool,
    refuse_tokens: AtomicBool,
    mount_attempts: AtomicUsize,
    mount_answers: Mutex<Vec<u16>>,
    put_images: AtomicUsize,
    unauthorized: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

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

async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a proxy on 127.0.0.1");
    let addr = listener.local_addr().expect("proxy address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, task)
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
        let control = Arc::new(ControlState {
            moto: moto.url(),
            registry: registry.url(),
            http: http.clone(),
            calls: Mutex::new(HashMap::new()),
            faults: Mutex::new(Vec::new()),
        });
        let password = format!("{ACCOUNT}-auth-token");
        let data = Arc::new(DataState {
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
            .http_client(provider_aws::builder::https_client())
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

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/x-amz-json-1.1")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

async fn control_handler(State(s): State<Arc<ControlState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return json_response(400, &json!({"message": e.to_string()})),
    };
    let operation = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_string();
    *s.calls
        .lock()
        .unwrap()
        .entry(operation.clone())
        .or_insert(0) += 1;
    let fault = {
        let mut faults = s.faults.lock().unwrap();
        let found = faults
            .iter_mut()
            .find(|f| f.operation == operation && f.remaining > 0);
        found.map(|f| {
            f.remaining -= 1;
            (f.status, f.body.clone())
        })
    };
    if let Some((status, body)) = fault {
        return json_response(status, &body);
    }
    let mut fwd = s
        .http
        .request(parts.method.clone(), format!("{}{}", s.moto, parts.uri))
        .body(body.clone());
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            fwd = fwd.header(k, v);
        }
    }
    let resp = match fwd.send().await {
        Ok(r) => r,
        Err(e) => return json_response(502, &json!({"message": format!("moto: {e}")})),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let answer = resp.bytes().await.unwrap_or_default();
    if operation == "BatchDeleteImage" && status == 200 {
        mirror_deletes(&s, &body, &answer).await;
    }
    let mut out = Response::builder().status(status);
    for (k, v) in &headers {
        if k != "content-length" && k != "transfer-encoding" && k != "connection" {
            out = out.header(k, v);
        }
    }
    out.body(Body::from(answer)).unwrap_or_default()
}

/// After moto deleted images, deletes their manifests from the registry.
async fn mirror_deletes(s: &ControlState, request: &[u8], answer: &[u8]) {
    let req: Value = serde_json::from_slice(request).unwrap_or(Value::Null);
    let ans: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    let Some(repo) = req.get("repositoryName").and_then(Value::as_str) else {
        return;
    };
    let failed: Vec<&str> = ans
        .get("failures")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(|x| x.pointer("/imageId/imageDigest").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let mut digests: Vec<String> = req
        .get("imageIds")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|i| i.get("imageDigest").and_then(Value::as_str))
                .filter(|d| !failed.contains(d))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    // Deletions by tag: moto's answer names the digests.
    if let Some(done) = ans.get("imageIds").and_then(Value::as_array) {
        for i in done {
            if let Some(d) = i.get("imageDigest").and_then(Value::as_str) {
                if !digests.iter().any(|x| x == d) {
                    digests.push(d.to_string());
                }
            }
        }
    }
    for d in digests {
        let _ = s
            .http
            .delete(format!("{}/v2/{repo}/manifests/{d}", s.registry))
            .send()
            .await;
    }
}

/// `/v2/<name>/<kind>/<rest>` → (name, kind, rest).
fn split_path(path: &str) -> Option<(String, &'static str, String)> {
    let rest = path.strip_prefix("/v2/")?;
    for kind in ["manifests", "blobs", "tags"] {
        let marker = format!("/{kind}/");
        if let Some(i) = rest.rfind(&marker) {
            return Some((
                rest[..i].to_string(),
                kind,
                rest[i + marker.len()..].to_string(),
            ));
        }
    }
    None
}

fn registry_error(status: u16, code: &str, message: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"errors": [{"code": code, "message": message}]}).to_string(),
        ))
        .unwrap_or_default()
}

async fn data_handler(State(s): State<Arc<DataState>>, req: Request) -> Response {
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        == Some(s.expected_auth.as_str())
        && !s.refuse_tokens.load(Ordering::SeqCst);
    if !authorized {
        s.unauthorized.fetch_add(1, Ordering::SeqCst);
        let mut r = registry_error(
            401,
            "DENIED",
            "Your authorization token is missing or invalid",
        );
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static(
                r#"Basic realm="https://127.0.0.1/",service="ecr.amazonaws.com""#,
            ),
        );
        return r;
    }
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let mut query = parts.uri.query().unwrap_or("").to_string();
    let target = split_path(&path);
    let method = parts.method.clone();

    let is_write = matches!(
        (&method, &target),
        (&Method::POST, Some((_, "blobs", _))) | (&Method::PUT, Some((_, "manifests", _)))
    );
    if let (true, Some((name, _, _))) = (is_write, &target) {
        let (status, _) = moto_call(
            &s.http,
            &s.moto,
            "DescribeRepositories",
            &json!({"repositoryNames": [name]}),
        )
        .await;
        if status != 200 {
            return registry_error(
                404,
                "NAME_UNKNOWN",
                &format!("The repository with name '{name}' does not exist in the registry with id '{ACCOUNT}'"),
            );
        }
    }
    let mounting = method == Method::POST && query.contains("mount=");
    if mounting {
        s.mount_attempts.fetch_add(1, Ordering::SeqCst);
        if s.decline_mounts.load(Ordering::SeqCst) {
            // ECR without blob mounting: a normal upload session starts.
            query = query
                .split('&')
                .filter(|p| !p.starts_with("mount=") && !p.starts_with("from="))
                .collect::<Vec<_>>()
                .join("&");
        }
    }
    let manifest_put = match (&method, &target) {
        (&Method::PUT, Some((name, "manifests", reference))) => {
            Some((name.clone(), reference.clone()))
        }
        _ => None,
    };
    let url = if query.is_empty() {
        format!("{}{path}", s.registry)
    } else {
        format!("{}{path}?{query}", s.registry)
    };
    let public = s.public.lock().unwrap().clone();
    let mut fwd = s.http.request(method.clone(), url);
    for (k, v) in &parts.headers {
        if k != "host" && k != "authorization" {
            fwd = fwd.header(k, v);
        }
    }
    let mut manifest_body: Option<Bytes> = None;
    fwd = if manifest_put.is_some() {
        let b = axum::body::to_bytes(body, 8 * 1024 * 1024)
            .await
            .unwrap_or_default();
        manifest_body = Some(b.clone());
        fwd.body(b)
    } else {
        fwd.body(reqwest::Body::wrap_stream(body.into_data_stream()))
    };
    let resp = match fwd.send().await {
        Ok(r) => r,
        Err(e) => return registry_error(502, "UNKNOWN", &format!("registry: {e}")),
    };
    let status = resp.status().as_u16();
    if mounting {
        s.mount_answers.lock().unwrap().push(status);
    }
    let headers: HeaderMap = resp.headers().clone();
    if let (Some((name, reference)), Some(bytes), 201) = (&manifest_put, &manifest_body, status) {
        let digest = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let media = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut put = json!({
            "repositoryName": name,
            "imageManifest": String::from_utf8_lossy(bytes),
            "imageManifestMediaType": media,
            "imageDigest": digest,
        });
        if !reference.starts_with("sha256:") {
            put["imageTag"] = Value::String(reference.clone());
        }
        s.put_images.fetch_add(1, Ordering::SeqCst);
        let (st, answer) = moto_call(&s.http, &s.moto, "PutImage", &put).await;
        let code = answer.get("__type").and_then(Value::as_str).unwrap_or("");
        if st != 200 && !code.ends_with("ImageAlreadyExistsException") {
            let msg = format!("moto PutImage {name}:{reference} answered {st}: {answer}");
            s.failures.lock().unwrap().push(msg.clone());
            return registry_error(500, "UNKNOWN", &msg);
        }
    }
    let mut out = Response::builder().status(status);
    for (k, v) in &headers {
        if k == "transfer-encoding" || k == "connection" {
            continue;
        }
        if k == "location" {
            let loc = v.to_str().unwrap_or("").replace(&s.registry, &public);
            out = out.header(k, loc);
        } else {
            out = out.header(k, v);
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    out.body(Body::from_stream(stream)).unwrap_or_default()
}
