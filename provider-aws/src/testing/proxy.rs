//! The two proxies of the emulator: the control proxy in front of moto and the data proxy in
//! front of the registry (see the module docs of [`crate::testing`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::TryStreamExt;
use serde_json::{json, Value};

use super::*;

/// A canned answer the control proxy gives instead of forwarding.
#[derive(Debug, Clone)]
pub(super) struct Fault {
    pub(super) operation: String,
    pub(super) remaining: usize,
    pub(super) status: u16,
    pub(super) body: Value,
}

/// Tokens with a lifetime of their own (moto's all expired in 2015 and never change): when
/// `lifetime` is set, the control proxy rewrites `GetAuthorizationToken` answers with a fresh
/// password expiring after it, and the data proxy accepts only issued, unexpired passwords.
#[derive(Default)]
pub(super) struct Tokens {
    pub(super) lifetime: Option<std::time::Duration>,
    pub(super) issued: HashMap<String, std::time::SystemTime>,
    pub(super) counter: u64,
}

pub(super) struct ControlState {
    pub(super) tokens: Arc<Mutex<Tokens>>,
    pub(super) moto: String,
    pub(super) registry: String,
    pub(super) http: reqwest::Client,
    pub(super) calls: Mutex<HashMap<String, usize>>,
    /// The request bodies of every call, in order: `(operation, body)`.
    pub(super) requests: Mutex<Vec<(String, Value)>>,
    pub(super) faults: Mutex<Vec<Fault>>,
}

pub(super) struct DataState {
    pub(super) tokens: Arc<Mutex<Tokens>>,
    pub(super) registry: String,
    pub(super) moto: String,
    pub(super) http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of the proxy itself.
    pub(super) public: Mutex<String>,
    pub(super) expected_auth: String,
    pub(super) decline_mounts: AtomicBool,
    pub(super) refuse_tokens: AtomicBool,
    pub(super) mount_attempts: AtomicUsize,
    pub(super) mount_answers: Mutex<Vec<u16>>,
    pub(super) put_images: AtomicUsize,
    pub(super) unauthorized: AtomicUsize,
    pub(super) failures: Mutex<Vec<String>>,
}

pub(super) async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a proxy on 127.0.0.1");
    let addr = listener.local_addr().expect("proxy address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (addr, task)
}

fn json_response(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/x-amz-json-1.1")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

pub(super) async fn control_handler(State(s): State<Arc<ControlState>>, req: Request) -> Response {
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
    s.requests.lock().unwrap().push((
        operation.clone(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ));
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
    let mut answer = resp.bytes().await.unwrap_or_default();
    if operation == "GetAuthorizationToken" && status == 200 {
        answer = issue_tokens(&s, &answer);
    }
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

/// With a token lifetime set: a fresh password per answer, expiring after it.
fn issue_tokens(s: &ControlState, answer: &[u8]) -> bytes::Bytes {
    use base64::Engine as _;
    let mut tokens = s.tokens.lock().unwrap();
    let Some(lifetime) = tokens.lifetime else {
        return bytes::Bytes::copy_from_slice(answer);
    };
    let mut v: Value = serde_json::from_slice(answer).unwrap_or(Value::Null);
    let expires = std::time::SystemTime::now() + lifetime;
    let epoch = expires
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    if let Some(list) = v.get_mut("authorizationData").and_then(Value::as_array_mut) {
        for entry in list {
            tokens.counter += 1;
            let password = format!("short-lived-{}", tokens.counter);
            entry["authorizationToken"] =
                json!(base64::engine::general_purpose::STANDARD.encode(format!("AWS:{password}")));
            entry["expiresAt"] = json!(epoch);
            tokens.issued.insert(password, expires);
        }
    }
    bytes::Bytes::from(v.to_string())
}

/// Whether `header` carries a password the control proxy issued and that has not expired.
fn short_lived_ok(s: &DataState, header: Option<&str>) -> Option<bool> {
    use base64::Engine as _;
    let tokens = s.tokens.lock().unwrap();
    tokens.lifetime?;
    let ok = header
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|text| text.strip_prefix("AWS:").map(str::to_string))
        .and_then(|pw| tokens.issued.get(&pw).copied())
        .is_some_and(|until| std::time::SystemTime::now() < until);
    Some(ok)
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
    // Deletions by tag: moto's answer names the digests. ECR removes just the tag from an
    // image that has others (the image stays); only an image moto no longer has goes from
    // the registry. (The registry keeps the removed tag: distribution cannot delete a tag
    // alone, and listings come from moto.)
    if let Some(done) = ans.get("imageIds").and_then(Value::as_array) {
        for i in done {
            if let Some(d) = i.get("imageDigest").and_then(Value::as_str) {
                if digests.iter().any(|x| x == d) {
                    continue;
                }
                let (status, _) = super::moto_call(
                    &s.http,
                    &s.moto,
                    "DescribeImages",
                    &json!({"repositoryName": repo, "imageIds": [{"imageDigest": d}]}),
                )
                .await;
                if status != 200 {
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

pub(super) async fn data_handler(State(s): State<Arc<DataState>>, req: Request) -> Response {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let valid = match short_lived_ok(&s, header) {
        Some(ok) => ok,
        None => header == Some(s.expected_auth.as_str()),
    };
    let authorized = valid && !s.refuse_tokens.load(Ordering::SeqCst);
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
