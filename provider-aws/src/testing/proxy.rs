//! The two proxies of the emulator: the control proxy in front of moto and the data proxy's
//! rules in front of the registry (see [`crate::testing`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use base64::Engine as _;
use mirror_core::testing::control_plane::{answer, registry_error, Decision, FakeRequest, Ledger};
use mirror_core::testing::control_plane::{ProxyRequest, ProxyRules, StoredManifest};
use serde_json::{json, Value};

use super::{moto_call, ACCOUNT};

pub(super) const TARGET_PREFIX: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// What both proxies share.
pub(super) struct Shared {
    pub(super) ledger: Ledger,
    pub(super) moto: String,
    pub(super) registry: String,
    pub(super) http: reqwest::Client,
    /// Tokens with a lifetime of their own (`None`: moto's); the passwords issued.
    pub(super) tokens: Mutex<(Option<Duration>, HashMap<String, SystemTime>)>,
    pub(super) decline_mounts: AtomicBool,
    pub(super) refuse_tokens: AtomicBool,
    pub(super) mount_attempts: AtomicUsize,
    pub(super) mount_answers: Mutex<Vec<u16>>,
    pub(super) put_images: AtomicUsize,
    pub(super) unauthorized: AtomicUsize,
    pub(super) failures: Mutex<Vec<String>>,
}

impl Shared {
    pub(super) fn new(moto: String, registry: String) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build();
        Shared {
            ledger: Ledger::new("application/x-amz-json-1.1"),
            moto,
            registry,
            http: http.expect("proxy HTTP client"),
            tokens: Mutex::default(),
            decline_mounts: AtomicBool::new(false),
            refuse_tokens: AtomicBool::new(false),
            mount_attempts: AtomicUsize::new(0),
            mount_answers: Mutex::default(),
            put_images: AtomicUsize::new(0),
            unauthorized: AtomicUsize::new(0),
            failures: Mutex::default(),
        }
    }

    /// With a token lifetime set, a fresh password per `GetAuthorizationToken` answer,
    /// expiring after it.
    fn issue_tokens(&self, answer: &[u8]) -> bytes::Bytes {
        let mut tokens = self.tokens.lock().unwrap();
        let Some(lifetime) = tokens.0 else {
            return bytes::Bytes::copy_from_slice(answer);
        };
        let mut v: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
        let expires = SystemTime::now() + lifetime;
        let epoch = expires
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64());
        let epoch = epoch.unwrap_or_default();
        let entries = v.get_mut("authorizationData").and_then(Value::as_array_mut);
        for entry in entries.into_iter().flatten() {
            let password = format!("short-lived-{}", tokens.1.len() + 1);
            let token = base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}"));
            (entry["authorizationToken"], entry["expiresAt"]) = (json!(token), json!(epoch));
            tokens.1.insert(password, expires);
        }
        bytes::Bytes::from(v.to_string())
    }

    /// Whether `header` is valid basic auth: moto's password, or with a token lifetime set,
    /// a password issued that has not expired.
    fn authorized(&self, header: Option<&str>) -> bool {
        let tokens = self.tokens.lock().unwrap();
        let basic = header.and_then(|h| h.strip_prefix("Basic "));
        let raw = basic.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        let text = raw
            .and_then(|r| String::from_utf8(r).ok())
            .unwrap_or_default();
        let password = text.strip_prefix("AWS:").unwrap_or_default();
        match tokens.0 {
            None => password == format!("{ACCOUNT}-auth-token"),
            Some(_) => tokens
                .1
                .get(password)
                .is_some_and(|until| SystemTime::now() < *until),
        }
    }

    /// After moto deleted images, deletes their manifests from the registry. By tag, ECR
    /// removes just the tag from an image that has others: only an image moto no longer has
    /// goes (the registry keeps the removed tag; listings come from moto).
    async fn mirror_deletes(&self, request: &Value, answer: &Value) {
        let Some(repo) = request["repositoryName"].as_str() else {
            return;
        };
        let digest_of = |i: &Value| i["imageDigest"].as_str().map(str::to_string);
        let failures = answer["failures"].as_array().into_iter().flatten();
        let failed: Vec<String> = failures.filter_map(|f| digest_of(&f["imageId"])).collect();
        let asked = request["imageIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(digest_of);
        let mut digests: Vec<String> = asked.filter(|d| !failed.contains(d)).collect();
        for d in answer["imageIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(digest_of)
        {
            if digests.contains(&d) {
                continue;
            }
            let asked = json!({"repositoryName": repo, "imageIds": [{"imageDigest": d}]});
            if moto_call(&self.http, &self.moto, "DescribeImages", &asked)
                .await
                .0
                != 200
            {
                digests.push(d);
            }
        }
        for d in digests {
            let url = format!("{}/v2/{repo}/manifests/{d}", self.registry);
            let _ = self.http.delete(url).send().await;
        }
    }
}

/// The control proxy: every ECR call to moto, recorded; the canned answers injected; tokens
/// reissued; deletions mirrored into the registry.
pub(super) async fn control(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let r = FakeRequest::read(req).await;
    let target = r
        .header("x-amz-target")
        .and_then(|t| t.strip_prefix(TARGET_PREFIX));
    let operation = target.unwrap_or("").to_string();
    if let Some(canned) = s.ledger.record(&operation, &r.query, r.json()) {
        return canned;
    }
    let mut fwd = s
        .http
        .request(r.method.clone(), format!("{}{}", s.moto, r.path));
    for (k, v) in r
        .headers
        .iter()
        .filter(|(k, _)| *k != "host" && *k != "content-length")
    {
        fwd = fwd.header(k, v);
    }
    let resp = match fwd.body(r.body.clone()).send().await {
        Ok(resp) => resp,
        Err(e) => {
            return answer(
                502,
                "application/json",
                json!({"message": format!("moto: {e}")}).to_string(),
            )
        }
    };
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let mut body = resp.bytes().await.unwrap_or_default();
    match (operation.as_str(), status) {
        ("GetAuthorizationToken", 200) => body = s.issue_tokens(&body),
        ("BatchDeleteImage", 200) => {
            let answer = serde_json::from_slice(&body).unwrap_or(Value::Null);
            s.mirror_deletes(&r.json(), &answer).await;
        }
        _ => {}
    }
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = axum::http::StatusCode::from_u16(status).unwrap_or_default();
    for (k, v) in headers.iter().filter(|(k, _)| {
        !["content-length", "transfer-encoding", "connection"].contains(&k.as_str())
    }) {
        out.headers_mut().insert(k, v.clone());
    }
    out
}

#[async_trait]
impl ProxyRules for Shared {
    async fn decide(&self, request: &ProxyRequest) -> Decision {
        if !self.authorized(request.authorization()) || self.refuse_tokens.load(Ordering::SeqCst) {
            self.unauthorized.fetch_add(1, Ordering::SeqCst);
            let mut r = registry_error(
                401,
                "DENIED",
                "Your authorization token is missing or invalid",
            );
            let challenge = r#"Basic realm="https://127.0.0.1/",service="ecr.amazonaws.com""#;
            r.headers_mut()
                .insert("www-authenticate", HeaderValue::from_static(challenge));
            return Decision::Answer(r);
        }
        if let (true, Some((name, _, _))) = (request.is_write(), &request.target) {
            let asked = json!({"repositoryNames": [name]});
            if moto_call(&self.http, &self.moto, "DescribeRepositories", &asked)
                .await
                .0
                != 200
            {
                let message = format!("The repository with name '{name}' does not exist in the registry with id '{ACCOUNT}'");
                return Decision::Answer(registry_error(404, "NAME_UNKNOWN", &message));
            }
        }
        if request.method == Method::POST && request.query.contains("mount=") {
            self.mount_attempts.fetch_add(1, Ordering::SeqCst);
            if self.decline_mounts.load(Ordering::SeqCst) {
                // ECR without blob mounting: a normal upload session starts.
                let kept = request
                    .query
                    .split('&')
                    .filter(|p| !p.starts_with("mount=") && !p.starts_with("from="));
                return Decision::ForwardWithQuery(kept.collect::<Vec<_>>().join("&"));
            }
        }
        Decision::Forward
    }

    fn answered(&self, request: &ProxyRequest, status: u16) {
        if request.method == Method::POST && request.query.contains("mount=") {
            self.mount_answers.lock().unwrap().push(status);
        }
    }

    async fn stored(&self, m: StoredManifest) -> Option<Response> {
        let mut put = json!({"repositoryName": m.repository, "imageManifest": String::from_utf8_lossy(&m.bytes),
            "imageManifestMediaType": m.media_type, "imageDigest": m.digest});
        if !m.reference.starts_with("sha256:") {
            put["imageTag"] = json!(m.reference);
        }
        self.put_images.fetch_add(1, Ordering::SeqCst);
        let (status, answer) = moto_call(&self.http, &self.moto, "PutImage", &put).await;
        let code = answer["__type"].as_str().unwrap_or("");
        if status == 200 || code.ends_with("ImageAlreadyExistsException") {
            return None;
        }
        let message = format!(
            "moto PutImage {}:{} answered {status}: {answer}",
            m.repository, m.reference
        );
        self.failures.lock().unwrap().push(message.clone());
        Some(registry_error(500, "UNKNOWN", &message))
    }
}
