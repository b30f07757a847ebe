//! Test infrastructure (not product code): an Artifact Registry emulator made of an in-process
//! fake of the REST API and of Google's OAuth token endpoint, and the real CNCF distribution
//! registry behind an in-process data-plane proxy.
//!
//! ```text
//!  ArtifactRegistry (REST) ──► fake Google ──  /token                  OAuth (JWT bearer grant)
//!                               │            /v1/…/repositories         create (LRO), get, patch, list
//!                               │            /v1/…/operations/OP        pending → done
//!                               │            /v1/…/dockerImages         reads the registry (below)
//!                               │            /v1/…/packages/P/versions/V  DELETE by digest (LRO)
//!  ArtifactRegistry (data) ──► data proxy ──► docker-registry            (blobs, uploads, mounts: real)
//!                               │ /v2/token: oauth2accesstoken + access token → registry token
//!                               │ manifest PUT ok → upload time recorded by the fake
//! ```
//!
//! Written from the public API reference, not from the code under test:
//!
//! - **OAuth**: `POST /token` takes the JWT-bearer grant `gcp_auth` sends, checks the RS256
//!   signature against the test key's public half, the issuer (the key's `client_email`), the
//!   audience (the token URI) and the scope, and hands out `ya29.fake-N` tokens with a
//!   configurable lifetime. The REST API and the data proxy accept only tokens it issued and
//!   that have not expired, so a client that does not refresh in time fails.
//! - **REST**: `repositories.create` validates the repository id (lowercase letters, digits,
//!   hyphens; a letter first; a letter or digit last; at most 63) and the cleanup policies, and
//!   answers an operation that stays pending for a configurable number of polls; the repository
//!   becomes visible only when the operation completes (a second create meanwhile is
//!   `ALREADY_EXISTS`, a get is `NOT_FOUND`). `repositories.patch` applies exactly the fields
//!   of `updateMask`. Listings paginate with a small page size (2 by default) and `pageToken`.
//!   Errors use the Google JSON error format; any method can be made to fail with a chosen
//!   status (403, 404, 409, 429…) for a number of calls.
//! - **dockerImages.list** reads the real registry over HTTP: the catalog finds the packages
//!   of the repository (`<project>/<repo>/<package>`), tag lists and manifests give digests,
//!   tags, media types and sizes, the children of indexes are listed as untagged versions (as
//!   Artifact Registry lists them), and versions pushed by digest are remembered from the data
//!   proxy. `uploadTime` is the time the proxy saw the manifest `PUT` (or the time the fake
//!   first saw the version, for content pushed to the registry directly).
//! - **versions.delete** checks the version exists (`NOT_FOUND`) and is untagged unless
//!   `force=true` (`FAILED_PRECONDITION`), and when its operation completes deletes the
//!   manifest from the registry by digest (which drops its tags). Deleting a whole package is
//!   answered but recorded as a violation, which tests assert never happens.
//! - **data proxy**: answers `401` with a `Bearer realm=".../v2/token"` challenge like
//!   Artifact Registry, exchanges `oauth2accesstoken:<access token>` for a registry token,
//!   refuses writes to repositories that do not exist (`404 NAME_UNKNOWN`), refuses chunked
//!   `PATCH` uploads (`405`, counted), and forwards everything else (streaming bodies,
//!   `Location` rewritten).
//!
//! Test RSA keys are generated once per test process with the `openssl` CLI.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use futures::TryStreamExt;
use mirror_core::media::ACCEPTED_MANIFEST_TYPES;
use mirror_core::testing::TestRegistry;
use provider_gcp::{ArtifactRegistry, ArtifactRegistryBuilder};
use serde::Deserialize;
use serde_json::{json, Value};

/// The project of the tests.
pub const PROJECT: &str = "mirror-test-project";
/// The location of the tests.
pub const LOCATION: &str = "europe-west1";
/// The service account of the test key.
pub const CLIENT_EMAIL: &str = "mirror@mirror-test-project.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// An RSA key pair for the test service account (PKCS#8 private key, SPKI public key).
pub struct TestKey {
    /// `-----BEGIN PRIVATE KEY-----`.
    pub private_pem: String,
    /// `-----BEGIN PUBLIC KEY-----`.
    pub public_pem: String,
}

/// The test key, generated once per process with `openssl` (0.1–0.5 s; an RSA keygen in a
/// debug build of a Rust crate takes far longer).
pub fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let openssl = mirror_core::testing::require_tool("openssl", "apt-get install -y openssl");
        let out = std::process::Command::new(&openssl)
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("run openssl genpkey");
        assert!(
            out.status.success(),
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let private_pem = String::from_utf8(out.stdout).expect("PEM is text");
        assert!(
            private_pem.contains("BEGIN PRIVATE KEY"),
            "openssl did not write PKCS#8: {private_pem}"
        );
        let mut child = std::process::Command::new(&openssl)
            .args(["pkey", "-pubout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run openssl pkey");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("openssl stdin");
            stdin
                .write_all(private_pem.as_bytes())
                .expect("write the key to openssl");
        }
        let out = child.wait_with_output().expect("openssl pkey");
        assert!(out.status.success(), "openssl pkey -pubout failed");
        TestKey {
            private_pem,
            public_pem: String::from_utf8(out.stdout).expect("PEM is text"),
        }
    })
}

/// The JSON of a service-account key for the test account.
pub fn key_json(token_uri: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": test_key().private_pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    })
    .to_string()
}

/// A canned failure of one REST method.
#[derive(Debug, Clone)]
struct FaultRule {
    method: String,
    remaining: usize,
    http: u16,
    status: String,
}

#[derive(Debug, Clone)]
struct Meta {
    upload: SystemTime,
    media_type: String,
}

enum Deferred {
    Create {
        id: String,
    },
    DeleteVersion {
        id: String,
        package: String,
        digest: String,
    },
    Nothing,
}

struct OpRec {
    polls_left: usize,
    action: Option<Deferred>,
    done: bool,
    response: Value,
    error: Option<(i64, String)>,
}

struct RepoRec {
    resource: Value,
    visible: bool,
}

#[derive(Default)]
struct OAuth {
    lifetime: Option<Duration>,
    issued: HashMap<String, SystemTime>,
    registry_tokens: HashMap<String, SystemTime>,
    hits: usize,
    fail_next: usize,
    counter: u64,
    rejected: Vec<String>,
}

#[derive(Default)]
struct DataCounters {
    patches: usize,
    unauthorized: usize,
    token_requests: usize,
    manifest_puts: usize,
}

struct St {
    repos: BTreeMap<String, RepoRec>,
    ops: HashMap<String, OpRec>,
    versions: BTreeMap<(String, String), BTreeMap<String, Meta>>,
    calls: HashMap<String, usize>,
    faults: Vec<FaultRule>,
    pending_polls: usize,
    page_size: usize,
    op_counter: u64,
    deleted_versions: Vec<String>,
    package_deletes: Vec<String>,
    patches: Vec<(String, String)>,
    data: DataCounters,
}

struct Fake {
    registry: String,
    http: reqwest::Client,
    google: Mutex<String>,
    data_base: Mutex<String>,
    oauth: Mutex<OAuth>,
    st: Mutex<St>,
}

impl Fake {
    fn st(&self) -> std::sync::MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn oauth(&self) -> std::sync::MutexGuard<'_, OAuth> {
        self.oauth.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn docker_host(&self) -> String {
        self.data_base
            .lock()
            .map(|b| b.trim_start_matches("http://").to_string())
            .unwrap_or_default()
    }
    fn token_valid(&self, token: &str) -> bool {
        self.oauth()
            .issued
            .get(token)
            .is_some_and(|exp| SystemTime::now() < *exp)
    }
}

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

async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
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

fn gerr(http: u16, status: &str, message: &str) -> Response {
    json_response(
        http,
        json!({"error": {"code": http, "message": message, "status": status}}),
    )
}

fn json_response(http: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json; charset=UTF-8")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

fn query_map(uri: &axum::http::Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn valid_repository_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn valid_duration(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.strip_suffix('s'))
        .is_some_and(|n| n.parse::<f64>().is_ok_and(|f| f >= 0.0))
}

/// Checks cleanup policies as the reference describes them.
fn check_policies(policies: &Value) -> Result<(), String> {
    let Some(map) = policies.as_object() else {
        return Err("cleanupPolicies must be a map".into());
    };
    for (key, p) in map {
        if let Some(id) = p.get("id").and_then(Value::as_str) {
            if id != key {
                return Err(format!("policy key {key} and id {id} differ"));
            }
        }
        match p.get("action").and_then(Value::as_str) {
            Some("DELETE") | Some("KEEP") => {}
            other => return Err(format!("policy {key}: action {other:?}")),
        }
        let cond = p.get("condition");
        let recent = p.get("mostRecentVersions");
        if cond.is_some() == recent.is_some() {
            return Err(format!(
                "policy {key}: exactly one of condition and mostRecentVersions"
            ));
        }
        if let Some(c) = cond {
            if let Some(s) = c.get("tagState") {
                if !matches!(s.as_str(), Some("TAGGED" | "UNTAGGED" | "ANY")) {
                    return Err(format!("policy {key}: tagState {s}"));
                }
            }
            for d in ["olderThan", "newerThan"] {
                if let Some(v) = c.get(d) {
                    if !valid_duration(v) {
                        return Err(format!("policy {key}: {d} {v} is not a duration"));
                    }
                }
            }
        }
        if let Some(r) = recent {
            let count = r.get("keepCount").and_then(Value::as_i64).unwrap_or(0);
            if count <= 0 {
                return Err(format!("policy {key}: keepCount must be a positive number"));
            }
            if p.get("action").and_then(Value::as_str) != Some("KEEP") {
                return Err(format!(
                    "policy {key}: mostRecentVersions needs action KEEP"
                ));
            }
        }
    }
    Ok(())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    scope: String,
}

async fn token_endpoint(fake: &Fake, body: axum::body::Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let token_uri = format!(
        "{}/token",
        fake.google.lock().map(|g| g.clone()).unwrap_or_default()
    );
    let mut oauth = fake.oauth();
    oauth.hits += 1;
    if oauth.fail_next > 0 {
        oauth.fail_next -= 1;
        return json_response(
            400,
            json!({"error": "invalid_grant", "error_description": "injected failure"}),
        );
    }
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return json_response(400, json!({"error": "unsupported_grant_type"}));
    }
    let Some(assertion) = form.get("assertion") else {
        return json_response(400, json!({"error": "invalid_request"}));
    };
    let key = match jsonwebtoken::DecodingKey::from_rsa_pem(test_key().public_pem.as_bytes()) {
        Ok(k) => k,
        Err(e) => return json_response(500, json!({"error": format!("test key: {e}")})),
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[token_uri.as_str()]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    // gcp_auth encodes the JWT segments with base64 padding, which Google accepts and the JWT
    // library does not: the signature is checked over the segments as sent, the claims are
    // read from the unpadded token.
    let parts: Vec<&str> = assertion.split('.').collect();
    let signed = parts.len() == 3
        && jsonwebtoken::crypto::verify(
            parts[2].trim_end_matches('='),
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &key,
            jsonwebtoken::Algorithm::RS256,
        )
        .unwrap_or(false);
    if !signed {
        eprintln!("fake OAuth endpoint: refusing an assertion with a bad signature");
        return json_response(
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        );
    }
    validation.insecure_disable_signature_validation();
    let assertion = assertion.replace('=', "");
    let claims = match jsonwebtoken::decode::<Claims>(&assertion, &key, &validation) {
        Ok(c) => c.claims,
        Err(e) => {
            eprintln!("fake OAuth endpoint: refusing an assertion: {e}");
            return json_response(
                400,
                json!({"error": "invalid_grant", "error_description": format!("bad assertion: {e}")}),
            );
        }
    };
    if claims.iss != CLIENT_EMAIL || !claims.scope.split(' ').any(|s| s == SCOPE) {
        return json_response(400, json!({"error": "invalid_scope"}));
    }
    oauth.counter += 1;
    let token = format!("ya29.fake-{}-{}", oauth.counter, oauth.hits);
    let lifetime = oauth.lifetime.unwrap_or(Duration::from_secs(3600));
    oauth
        .issued
        .insert(token.clone(), SystemTime::now() + lifetime);
    json_response(
        200,
        json!({"access_token": token, "expires_in": lifetime.as_secs(), "token_type": "Bearer"}),
    )
}

fn next_op(st: &mut St, action: Deferred, response: Value) -> Value {
    st.op_counter += 1;
    let name = format!(
        "projects/{PROJECT}/locations/{LOCATION}/operations/op-{:04}",
        st.op_counter
    );
    let polls = st.pending_polls;
    st.ops.insert(
        name.clone(),
        OpRec {
            polls_left: polls,
            action: Some(action),
            done: false,
            response,
            error: None,
        },
    );
    json!({"name": name, "done": false, "metadata": {"@type": "type.googleapis.com/google.devtools.artifactregistry.v1.OperationMetadata"}})
}

fn op_json(name: &str, op: &OpRec) -> Value {
    let mut v = json!({"name": name, "done": op.done});
    if op.done {
        match &op.error {
            Some((code, message)) => v["error"] = json!({"code": code, "message": message}),
            None => v["response"] = op.response.clone(),
        }
    }
    v
}

async fn google_handler(State(fake): State<Arc<Fake>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    if parts.method == Method::POST && path == "/token" {
        return token_endpoint(&fake, body).await;
    }
    let query = query_map(&parts.uri);
    let Some(rest) = path.strip_prefix("/v1/") else {
        return gerr(404, "NOT_FOUND", "no such API");
    };
    let seg: Vec<String> = rest.split('/').map(percent_decode).collect();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let method_name = match (&parts.method, seg.as_slice()) {
        (&Method::POST, ["projects", _, "locations", _, "repositories"]) => "repositories.create",
        (&Method::GET, ["projects", _, "locations", _, "repositories"]) => "repositories.list",
        (&Method::GET, ["projects", _, "locations", _, "repositories", _]) => "repositories.get",
        (&Method::PATCH, ["projects", _, "locations", _, "repositories", _]) => {
            "repositories.patch"
        }
        (&Method::GET, ["projects", _, "locations", _, "repositories", _, "dockerImages"]) => {
            "dockerImages.list"
        }
        (&Method::DELETE, ["projects", _, "locations", _, "repositories", _, "packages", _]) => {
            "packages.delete"
        }
        (
            &Method::DELETE,
            ["projects", _, "locations", _, "repositories", _, "packages", _, "versions", _],
        ) => "versions.delete",
        (&Method::GET, ["projects", _, "locations", _, "operations", _]) => "operations.get",
        _ => {
            return gerr(
                404,
                "NOT_FOUND",
                &format!("no method for {} {path}", parts.method),
            )
        }
    };
    // Authentication first, as Google does.
    let token = bearer(&parts.headers).unwrap_or_default();
    if !fake.token_valid(&token) {
        fake.oauth().rejected.push(format!(
            "rest {method_name}: {}",
            token.chars().take(14).collect::<String>()
        ));
        return gerr(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    }
    {
        let mut st = fake.st();
        *st.calls.entry(method_name.to_string()).or_default() += 1;
        if let Some(f) = st
            .faults
            .iter_mut()
            .find(|f| f.method == method_name && f.remaining > 0)
        {
            f.remaining -= 1;
            let (http, status) = (f.http, f.status.clone());
            drop(st);
            let mut r = gerr(http, &status, &format!("injected {status}"));
            if http == 429 {
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("0"));
            }
            return r;
        }
    }
    if seg[1] != PROJECT {
        return gerr(
            403,
            "PERMISSION_DENIED",
            &format!("Permission denied on resource project {}.", seg[1]),
        );
    }
    if seg[3] != LOCATION {
        return gerr(404, "NOT_FOUND", &format!("location {} not found", seg[3]));
    }
    match method_name {
        "repositories.create" => create_repository(&fake, &query, &body),
        "repositories.list" => list_repositories(&fake, &query),
        "repositories.get" => get_repository(&fake, seg[5]),
        "repositories.patch" => patch_repository(&fake, seg[5], &query, &body),
        "dockerImages.list" => list_docker_images(&fake, seg[5], &query).await,
        "packages.delete" => {
            let mut st = fake.st();
            st.package_deletes.push(format!("{}/{}", seg[5], seg[7]));
            json_response(200, next_op(&mut st, Deferred::Nothing, json!({})))
        }
        "versions.delete" => delete_version(&fake, seg[5], seg[7], seg[9], &query).await,
        "operations.get" => {
            get_operation(
                &fake,
                &format!(
                    "projects/{}/locations/{}/operations/{}",
                    seg[1], seg[3], seg[5]
                ),
            )
            .await
        }
        _ => gerr(500, "INTERNAL", "unreachable"),
    }
}

fn create_repository(fake: &Fake, query: &HashMap<String, String>, body: &[u8]) -> Response {
    let Some(id) = query.get("repositoryId") else {
        return gerr(400, "INVALID_ARGUMENT", "repositoryId is required");
    };
    if !valid_repository_id(id) {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            &format!("Invalid repository id {id:?}: ids are lowercase letters, digits and hyphens, start with a letter, end with a letter or digit, at most 63 characters"),
        );
    }
    let Ok(mut repo) = serde_json::from_slice::<Value>(body) else {
        return gerr(400, "INVALID_ARGUMENT", "the body is not a Repository");
    };
    if repo.get("format").and_then(Value::as_str) != Some("DOCKER") {
        return gerr(400, "INVALID_ARGUMENT", "format must be set (DOCKER)");
    }
    if let Some(p) = repo.get("cleanupPolicies") {
        if let Err(e) = check_policies(p) {
            return gerr(400, "INVALID_ARGUMENT", &e);
        }
    }
    let mut st = fake.st();
    if st.repos.contains_key(id) {
        return gerr(
            409,
            "ALREADY_EXISTS",
            &format!("the repository already exists: projects/{PROJECT}/locations/{LOCATION}/repositories/{id}"),
        );
    }
    let now = rfc3339(SystemTime::now());
    repo["name"] = json!(format!(
        "projects/{PROJECT}/locations/{LOCATION}/repositories/{id}"
    ));
    repo["createTime"] = json!(now);
    repo["updateTime"] = json!(now);
    let mut response = repo.clone();
    response["@type"] = json!("type.googleapis.com/google.devtools.artifactregistry.v1.Repository");
    st.repos.insert(
        id.clone(),
        RepoRec {
            resource: repo,
            visible: false,
        },
    );
    let pending = st.pending_polls;
    let op = next_op(&mut st, Deferred::Create { id: id.clone() }, response);
    if pending == 0 {
        if let Some(r) = st.repos.get_mut(id) {
            r.visible = true;
        }
        let name = op["name"].as_str().unwrap_or("").to_string();
        if let Some(o) = st.ops.get_mut(&name) {
            o.done = true;
            o.action = None;
            return json_response(200, op_json(&name, o));
        }
    }
    json_response(200, op)
}

fn visible_repo(st: &St, id: &str) -> Option<Value> {
    st.repos
        .get(id)
        .filter(|r| r.visible)
        .map(|r| r.resource.clone())
}

fn get_repository(fake: &Fake, id: &str) -> Response {
    match visible_repo(&fake.st(), id) {
        Some(r) => json_response(200, r),
        None => gerr(
            404,
            "NOT_FOUND",
            &format!("Requested entity was not found: repository {id}"),
        ),
    }
}

fn paginate(
    items: Vec<Value>,
    query: &HashMap<String, String>,
    page_size: usize,
) -> (Vec<Value>, String) {
    let asked: usize = query
        .get("pageSize")
        .and_then(|s| s.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(page_size);
    let size = asked.min(page_size);
    let start: usize = query
        .get("pageToken")
        .and_then(|t| t.strip_prefix("page-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let end = (start + size).min(items.len());
    let page = items
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let next = if end < items.len() {
        format!("page-{end}")
    } else {
        String::new()
    };
    (page, next)
}

fn list_repositories(fake: &Fake, query: &HashMap<String, String>) -> Response {
    let st = fake.st();
    let all: Vec<Value> = st
        .repos
        .values()
        .filter(|r| r.visible)
        .map(|r| r.resource.clone())
        .collect();
    let (page, next) = paginate(all, query, st.page_size);
    let mut body = json!({"repositories": page});
    if !next.is_empty() {
        body["nextPageToken"] = json!(next);
    }
    json_response(200, body)
}

fn patch_repository(
    fake: &Fake,
    id: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return gerr(400, "INVALID_ARGUMENT", "the body is not a Repository");
    };
    let Some(mask) = query.get("updateMask").filter(|m| !m.is_empty()) else {
        return gerr(400, "INVALID_ARGUMENT", "updateMask is required");
    };
    let mut st = fake.st();
    let Some(rec) = st.repos.get_mut(id).filter(|r| r.visible) else {
        return gerr(
            404,
            "NOT_FOUND",
            &format!("Requested entity was not found: repository {id}"),
        );
    };
    let mut updated = rec.resource.clone();
    for field in mask.split(',') {
        match field {
            "labels" | "cleanupPolicies" | "cleanupPolicyDryRun" | "description" => {
                if field == "cleanupPolicies" {
                    if let Err(e) = check_policies(patch.get(field).unwrap_or(&json!({}))) {
                        return gerr(400, "INVALID_ARGUMENT", &e);
                    }
                }
                match patch.get(field) {
                    Some(v) => updated[field] = v.clone(),
                    None => {
                        if let Some(o) = updated.as_object_mut() {
                            o.remove(field);
                        }
                    }
                }
            }
            other => {
                return gerr(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("invalid update mask field {other:?}"),
                )
            }
        }
    }
    updated["updateTime"] = json!(rfc3339(SystemTime::now()));
    rec.resource = updated.clone();
    st.patches.push((id.to_string(), mask.clone()));
    json_response(200, updated)
}

async fn get_operation(fake: &Fake, name: &str) -> Response {
    let action = {
        let mut st = fake.st();
        let Some(op) = st.ops.get_mut(name) else {
            return gerr(404, "NOT_FOUND", &format!("operation {name} not found"));
        };
        if op.done {
            return json_response(200, op_json(name, op));
        }
        op.polls_left = op.polls_left.saturating_sub(1);
        if op.polls_left > 0 {
            return json_response(200, op_json(name, op));
        }
        op.action.take()
    };
    let error = match action {
        Some(Deferred::Create { id }) => {
            if let Some(r) = fake.st().repos.get_mut(&id) {
                r.visible = true;
            }
            None
        }
        Some(Deferred::DeleteVersion {
            id,
            package,
            digest,
        }) => {
            let registry_name = format!("{PROJECT}/{id}/{package}");
            let resp = fake
                .http
                .delete(format!(
                    "{}/v2/{registry_name}/manifests/{digest}",
                    fake.registry
                ))
                .send()
                .await;
            let mut st = fake.st();
            if let Some(v) = st.versions.get_mut(&(id.clone(), package.clone())) {
                v.remove(&digest);
            }
            match resp {
                Ok(r) if r.status().is_success() => {
                    st.deleted_versions.push(format!("{id}/{package}@{digest}"));
                    None
                }
                Ok(r) if r.status() == StatusCode::NOT_FOUND => {
                    Some((5, format!("version {digest} not found")))
                }
                Ok(r) => Some((13, format!("registry answered {}", r.status()))),
                Err(e) => Some((13, format!("registry: {e}"))),
            }
        }
        Some(Deferred::Nothing) | None => None,
    };
    let mut st = fake.st();
    match st.ops.get_mut(name) {
        Some(op) => {
            op.done = true;
            op.error = error;
            json_response(200, op_json(name, op))
        }
        None => gerr(404, "NOT_FOUND", "operation vanished"),
    }
}

// ---------------------------------------------------------------------------------------------
// The registry, read over HTTP

struct Manifest {
    digest: String,
    media_type: String,
    body: Value,
    len: usize,
}

async fn reg_manifest(fake: &Fake, name: &str, reference: &str) -> Option<Manifest> {
    let resp = fake
        .http
        .get(format!("{}/v2/{name}/manifests/{reference}", fake.registry))
        .header("accept", ACCEPTED_MANIFEST_TYPES.join(", "))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let digest = resp
        .headers()
        .get("docker-content-digest")?
        .to_str()
        .ok()?
        .to_string();
    let media_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.bytes().await.ok()?;
    Some(Manifest {
        digest,
        media_type,
        len: bytes.len(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

async fn reg_tags(fake: &Fake, name: &str) -> Vec<String> {
    let Ok(resp) = fake
        .http
        .get(format!("{}/v2/{name}/tags/list", fake.registry))
        .send()
        .await
    else {
        return Vec::new();
    };
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    v.get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

async fn reg_catalog(fake: &Fake) -> Vec<String> {
    let Ok(resp) = fake
        .http
        .get(format!("{}/v2/_catalog?n=1000", fake.registry))
        .send()
        .await
    else {
        return Vec::new();
    };
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    v.get("repositories")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn children(body: &Value) -> Vec<String> {
    body.get("manifests")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| m.get("digest").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn size_of(m: &Manifest) -> u64 {
    let sum = |key: &str| -> u64 {
        m.body
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get("size").and_then(Value::as_u64))
                    .sum()
            })
            .unwrap_or(0)
    };
    let config = m
        .body
        .get("config")
        .and_then(|c| c.get("size"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    m.len as u64 + config + sum("layers") + sum("manifests")
}

async fn list_docker_images(fake: &Fake, id: &str, query: &HashMap<String, String>) -> Response {
    if visible_repo(&fake.st(), id).is_none() {
        return gerr(
            404,
            "NOT_FOUND",
            &format!("Requested entity was not found: repository {id}"),
        );
    }
    let prefix = format!("{PROJECT}/{id}/");
    let mut entries: Vec<Value> = Vec::new();
    for name in reg_catalog(fake).await {
        let Some(package) = name.strip_prefix(&prefix).map(str::to_string) else {
            continue;
        };
        // digest → (manifest, tags)
        let mut found: BTreeMap<String, (Manifest, Vec<String>)> = BTreeMap::new();
        for tag in reg_tags(fake, &name).await {
            if let Some(m) = reg_manifest(fake, &name, &tag).await {
                found
                    .entry(m.digest.clone())
                    .or_insert_with(|| (m, Vec::new()))
                    .1
                    .push(tag);
            }
        }
        let known: Vec<String> = fake
            .st()
            .versions
            .get(&(id.to_string(), package.clone()))
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default();
        let mut pending: Vec<String> = known;
        for (_, (m, _)) in found.iter() {
            pending.extend(children(&m.body));
        }
        while let Some(d) = pending.pop() {
            if found.contains_key(&d) {
                continue;
            }
            match reg_manifest(fake, &name, &d).await {
                Some(m) => {
                    pending.extend(children(&m.body));
                    found.insert(d, (m, Vec::new()));
                }
                None => {
                    if let Some(v) = fake
                        .st()
                        .versions
                        .get_mut(&(id.to_string(), package.clone()))
                    {
                        v.remove(&d);
                    }
                }
            }
        }
        let now = SystemTime::now();
        let mut st = fake.st();
        let versions = st
            .versions
            .entry((id.to_string(), package.clone()))
            .or_default();
        for (digest, (m, mut tags)) in found {
            let meta = versions.entry(digest.clone()).or_insert_with(|| Meta {
                upload: now,
                media_type: m.media_type.clone(),
            });
            tags.sort();
            let escaped = package.replace('/', "%2F");
            entries.push(json!({
                "name": format!("projects/{PROJECT}/locations/{LOCATION}/repositories/{id}/dockerImages/{escaped}@{digest}"),
                "uri": format!("{}/{PROJECT}/{id}/{package}@{digest}", fake.docker_host()),
                "tags": tags,
                "imageSizeBytes": size_of(&m).to_string(),
                "uploadTime": rfc3339(meta.upload),
                "mediaType": m.media_type,
                "updateTime": rfc3339(meta.upload),
            }));
        }
    }
    entries.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let page_size = fake.st().page_size;
    let (page, next) = paginate(entries, query, page_size);
    let mut body = json!({"dockerImages": page});
    if !next.is_empty() {
        body["nextPageToken"] = json!(next);
    }
    json_response(200, body)
}

async fn delete_version(
    fake: &Fake,
    id: &str,
    package: &str,
    version: &str,
    query: &HashMap<String, String>,
) -> Response {
    if visible_repo(&fake.st(), id).is_none() {
        return gerr(
            404,
            "NOT_FOUND",
            &format!("Requested entity was not found: repository {id}"),
        );
    }
    let hex = version.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return gerr(
            400,
            "INVALID_ARGUMENT",
            &format!("invalid version {version:?}"),
        );
    }
    let name = format!("{PROJECT}/{id}/{package}");
    if reg_manifest(fake, &name, version).await.is_none() {
        return gerr(
            404,
            "NOT_FOUND",
            &format!("Requested entity was not found: version {version} of package {package}"),
        );
    }
    let force = query.get("force").map(String::as_str) == Some("true");
    if !force {
        for tag in reg_tags(fake, &name).await {
            if reg_manifest(fake, &name, &tag)
                .await
                .is_some_and(|m| m.digest == version)
            {
                return gerr(
                    400,
                    "FAILED_PRECONDITION",
                    &format!("version {version} has tags (such as {tag}); delete it with force"),
                );
            }
        }
    }
    let (op, pending) = {
        let mut st = fake.st();
        let op = next_op(
            &mut st,
            Deferred::DeleteVersion {
                id: id.to_string(),
                package: package.to_string(),
                digest: version.to_string(),
            },
            json!({"@type": "type.googleapis.com/google.protobuf.Empty"}),
        );
        (op, st.pending_polls)
    };
    if pending == 0 {
        let name = op["name"].as_str().unwrap_or("").to_string();
        if let Some(o) = fake.st().ops.get_mut(&name) {
            o.polls_left = 1;
        }
        return get_operation(fake, &name).await;
    }
    json_response(200, op)
}

// ---------------------------------------------------------------------------------------------
// The data proxy

fn registry_error(status: u16, code: &str, message: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"errors": [{"code": code, "message": message}]}).to_string(),
        ))
        .unwrap_or_default()
}

/// `/v2/<name>/<kind>/<rest>` → (name, kind).
fn split_path(path: &str) -> Option<(String, &'static str)> {
    let rest = path.strip_prefix("/v2/")?;
    for kind in ["manifests", "blobs", "tags"] {
        let marker = format!("/{kind}/");
        if let Some(i) = rest.rfind(&marker) {
            return Some((rest[..i].to_string(), kind));
        }
    }
    None
}

async fn data_handler(State(fake): State<Arc<Fake>>, req: Request) -> Response {
    let base = fake.data_base.lock().map(|b| b.clone()).unwrap_or_default();
    let path = req.uri().path().to_string();
    if path == "/v2/token" {
        fake.st().data.token_requests += 1;
        let ok = basic(req.headers())
            .is_some_and(|(u, p)| u == "oauth2accesstoken" && fake.token_valid(&p));
        if !ok {
            return registry_error(401, "UNAUTHORIZED", "invalid credentials");
        }
        let (_, access) = basic(req.headers()).unwrap_or_default();
        let mut oauth = fake.oauth();
        let access_exp = oauth
            .issued
            .get(&access)
            .copied()
            .unwrap_or(SystemTime::now());
        let exp = access_exp.min(SystemTime::now() + Duration::from_secs(300));
        oauth.counter += 1;
        let token = format!("registry-{}", oauth.counter);
        oauth.registry_tokens.insert(token.clone(), exp);
        let secs = exp
            .duration_since(SystemTime::now())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        return json_response(
            200,
            json!({"token": token, "access_token": token, "expires_in": secs}),
        );
    }
    let authorized = match (bearer(req.headers()), basic(req.headers())) {
        (Some(t), _) => fake
            .oauth()
            .registry_tokens
            .get(&t)
            .is_some_and(|exp| SystemTime::now() < *exp),
        (None, Some((u, p))) => u == "oauth2accesstoken" && fake.token_valid(&p),
        _ => false,
    };
    if !authorized {
        fake.st().data.unauthorized += 1;
        let mut r = registry_error(401, "UNAUTHORIZED", "authentication required");
        let challenge = format!(
            r#"Bearer realm="{base}/v2/token",service="{}""#,
            fake.docker_host()
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert("www-authenticate", v);
        }
        return r;
    }
    if path == "/v2/" || path == "/v2" {
        return json_response(200, json!({}));
    }
    let method = req.method().clone();
    if method == Method::PATCH {
        fake.st().data.patches += 1;
        return registry_error(
            405,
            "UNSUPPORTED",
            "chunked uploads are not supported; upload the blob with one PUT",
        );
    }
    let target = split_path(&path);
    let Some((name, kind)) = target else {
        return registry_error(404, "NAME_UNKNOWN", "no such path");
    };
    let Some((repo, package)) = name
        .strip_prefix(&format!("{PROJECT}/"))
        .and_then(|r| r.split_once('/'))
        .map(|(r, p)| (r.to_string(), p.to_string()))
    else {
        return registry_error(403, "DENIED", &format!("permission denied on {name}"));
    };
    let is_write = matches!(
        (&method, kind),
        (&Method::POST, "blobs") | (&Method::PUT, "blobs") | (&Method::PUT, "manifests")
    );
    if is_write && visible_repo(&fake.st(), &repo).is_none() {
        return registry_error(
            404,
            "NAME_UNKNOWN",
            &format!("Repository \"{repo}\" not found"),
        );
    }
    let (parts, body) = req.into_parts();
    let url = match parts.uri.query() {
        Some(q) => format!("{}{path}?{q}", fake.registry),
        None => format!("{}{path}", fake.registry),
    };
    let mut fwd = fake.http.request(method.clone(), url);
    for (k, v) in &parts.headers {
        if k != "host" && k != "authorization" {
            fwd = fwd.header(k, v);
        }
    }
    let manifest_put = method == Method::PUT && kind == "manifests";
    fwd = fwd.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let resp = match fwd.send().await {
        Ok(r) => r,
        Err(e) => return registry_error(502, "UNKNOWN", &format!("registry: {e}")),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if manifest_put && status == 201 {
        if let Some(digest) = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            let media_type = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let mut st = fake.st();
            st.data.manifest_puts += 1;
            st.versions
                .entry((repo, package))
                .or_default()
                .entry(digest.to_string())
                .or_insert(Meta {
                    upload: SystemTime::now(),
                    media_type,
                });
        }
    }
    let mut out = Response::builder().status(status);
    for (k, v) in &headers {
        if k == "transfer-encoding" || k == "connection" {
            continue;
        }
        if k == "location" {
            let loc = v.to_str().unwrap_or("").replace(&fake.registry, &base);
            out = out.header(k, loc);
        } else {
            out = out.header(k, v);
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    out.body(Body::from_stream(stream)).unwrap_or_default()
}
