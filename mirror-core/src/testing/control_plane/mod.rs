//! A kit for fakes of cloud registry control planes (the emulators of the provider crates):
//! what every one of them needs, written once.
//!
//! - [`FakeServer`]: an axum router served in process on `127.0.0.1`, stopped on drop;
//! - [`Ledger`]: the calls a fake answered (by operation, with query and body) and the
//!   canned answers injected for the next calls of an operation (faults: 401, 429 with
//!   `Retry-After`, 5xx, per-item failures);
//! - answers ([`json()`], [`registry_error`]), request reading ([`query_map`], [`v2_target`]),
//!   paging as the APIs page ([`numbered_page`], [`token_page`]), times ([`rfc3339`]);
//! - [`DataProxy`]: a data plane in front of a real registry with the provider's rules
//!   ([`ProxyRules`]: authentication, refusals, what happens after a manifest is stored),
//!   streaming bodies both ways and rewriting `Location`;
//! - [`Operations`]: long-running operations as Google APIs run them (pending for a number
//!   of polls, then done with a response or an error);
//! - [`OAuthTokens`] and [`test_rsa_key`]: an OAuth 2.0 token endpoint taking the JWT-bearer
//!   grant (RFC 7523) signed by a test RSA key, and the tokens it issued;
//! - [`HiddenTags`] and [`access_token_auth`]: tags a control plane deleted alone, and a
//!   registry taking cloud access tokens behind a `Bearer` challenge.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::media::RawManifest;
use crate::store::http::RegistryClient;
use crate::store::ImageStore;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An axum router served on `127.0.0.1` by a task of the current runtime; dropping it stops
/// the server.
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    /// Serves `router` on an ephemeral port. Panics when no port can be bound.
    pub async fn serve(router: axum::Router) -> FakeServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a fake on 127.0.0.1");
        let addr = listener.local_addr().expect("the fake's address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        FakeServer { addr, task }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One call a fake answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation (`CreateRepository`, `ListTags`…).
    pub operation: String,
    /// The query string.
    pub query: String,
    /// The JSON body (`null` when there was none).
    pub body: Value,
}

#[derive(Debug)]
struct Canned {
    operation: String,
    remaining: usize,
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

/// The calls a fake answered and the answers injected for its next calls. An emulator
/// derefs to its ledger, so that tests count and inject the same way on every provider.
#[derive(Debug)]
pub struct Ledger {
    content_type: &'static str,
    calls: Mutex<Vec<Call>>,
    canned: Mutex<Vec<Canned>>,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new("application/json")
    }
}

impl Ledger {
    /// A ledger whose canned answers have this content type.
    pub fn new(content_type: &'static str) -> Self {
        Ledger {
            content_type,
            calls: Mutex::default(),
            canned: Mutex::default(),
        }
    }

    /// Records a call; the canned answer for it, if one is left.
    pub fn record(&self, operation: &str, query: &str, body: Value) -> Option<Response> {
        let query = query.to_string();
        let call = Call {
            operation: operation.to_string(),
            query,
            body,
        };
        lock(&self.calls).push(call);
        let mut canned = lock(&self.canned);
        let c = canned
            .iter_mut()
            .find(|c| c.operation == operation && c.remaining > 0)?;
        c.remaining -= 1;
        let mut r = answer(c.status, self.content_type, c.body.to_string());
        if let Some(v) = c
            .retry_after
            .and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            r.headers_mut().insert("retry-after", v);
        }
        Some(r)
    }

    /// The next `times` calls of `operation` answer `status` with `body` (and
    /// `Retry-After: retry_after` when given) instead of the fake.
    pub fn inject(
        &self,
        operation: &str,
        times: usize,
        status: u16,
        body: Value,
        retry_after: Option<u64>,
    ) {
        lock(&self.canned).push(Canned {
            operation: operation.to_string(),
            remaining: times,
            status,
            body,
            retry_after,
        });
    }

    /// Forgets the canned answers left.
    pub fn clear_faults(&self) {
        lock(&self.canned).clear();
    }

    /// Calls of `operation` so far.
    pub fn calls(&self, operation: &str) -> usize {
        lock(&self.calls)
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// Every operation called so far, with its count.
    pub fn all_calls(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in lock(&self.calls).iter() {
            *out.entry(c.operation.clone()).or_insert(0) += 1;
        }
        out
    }

    /// Every call so far, in order.
    pub fn call_log(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// The bodies of the calls of `operation`, in order.
    pub fn requests(&self, operation: &str) -> Vec<Value> {
        let calls = lock(&self.calls);
        let of = calls.iter().filter(|c| c.operation == operation);
        of.map(|c| c.body.clone()).collect()
    }

    /// Forgets the calls so far.
    pub fn reset_calls(&self) {
        lock(&self.calls).clear();
    }
}

/// A request to a fake, read whole.
#[derive(Debug)]
pub struct FakeRequest {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: String,
    /// The query string.
    pub query: String,
    /// The query parameters.
    pub params: HashMap<String, String>,
    /// The headers.
    pub headers: HeaderMap,
    /// The body (up to 16 MiB).
    pub body: Bytes,
}

impl FakeRequest {
    /// Reads `req` whole.
    pub async fn read(req: Request) -> Self {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await;
        let query = parts.uri.query().unwrap_or("").to_string();
        FakeRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            params: query_map(&query),
            query,
            headers: parts.headers,
            body: body.unwrap_or_default(),
        }
    }

    /// The body as JSON (`null` when it is none).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A bearer token (none: empty).
    pub fn bearer(&self) -> &str {
        let auth = self.header("authorization").unwrap_or("");
        auth.strip_prefix("Bearer ").unwrap_or("")
    }

    /// The operation of the first of `routes` (`METHOD pattern operation`, the pattern a
    /// path below `prefix` where `*` is any one segment) the request matches, with the path's
    /// segments below `prefix`, percent-decoded.
    pub fn route(
        &self,
        prefix: &str,
        routes: &[&'static str],
    ) -> Option<(&'static str, Vec<String>)> {
        let rest = self.path.strip_prefix(prefix)?;
        let decode = |s: &str| {
            let text = format!("x={}", s.replace('+', "%2B"));
            query_map(&text).remove("x").unwrap_or_default()
        };
        let segs: Vec<String> = rest.split('/').map(decode).collect();
        let matches = |pattern: &str| {
            let p: Vec<&str> = pattern.split('/').collect();
            p.len() == segs.len() && p.iter().zip(&segs).all(|(a, b)| *a == "*" || a == b)
        };
        let route = routes.iter().find_map(|r| {
            let mut words = r.split(' ');
            let (method, pattern, op) = (words.next()?, words.next()?, words.next()?);
            (method == self.method.as_str() && matches(pattern)).then_some(op)
        });
        route.map(|op| (op, segs))
    }
}

/// Every manifest of `repository` reachable from `tags` and from `known` digests (the
/// children of indexes followed), by digest, with the tags naming it; and the `known`
/// digests the registry no longer holds.
pub async fn manifests(
    registry: &RegistryClient,
    repository: &str,
    tags: Vec<String>,
    known: Vec<String>,
) -> (BTreeMap<String, (RawManifest, Vec<String>)>, Vec<String>) {
    let (mut found, mut gone) = (BTreeMap::new(), Vec::new());
    let Ok(store) = registry.repository(repository) else {
        return (found, known);
    };
    for tag in tags {
        if let Ok(m) = store.get_manifest(&tag).await {
            let entry = found.entry(m.digest.to_string());
            entry.or_insert((m, Vec::new())).1.push(tag);
        }
    }
    let children = |m: &RawManifest| -> Vec<String> {
        let body: Value = serde_json::from_slice(&m.bytes).unwrap_or_default();
        let list = body["manifests"].as_array().cloned().unwrap_or_default();
        list.iter()
            .filter_map(|c| c["digest"].as_str().map(str::to_string))
            .collect()
    };
    let mut pending = known;
    pending.extend(found.values().flat_map(|(m, _)| children(m)));
    while let Some(d) = pending.pop() {
        if found.contains_key(&d) {
            continue;
        }
        match store.get_manifest(&d).await {
            Ok(m) => {
                pending.extend(children(&m));
                found.insert(d, (m, Vec::new()));
            }
            Err(_) => gone.push(d),
        }
    }
    (found, gone)
}

/// The size of an image as registries list it: its manifest, its config and its layers, or
/// for an index the manifests it names.
pub fn manifest_size(m: &RawManifest) -> u64 {
    let body: Value = serde_json::from_slice(&m.bytes).unwrap_or_default();
    let sizes = |k: &str| {
        let items = body[k].as_array().into_iter().flatten();
        items.filter_map(|x| x["size"].as_u64()).sum::<u64>()
    };
    let config = body["config"]["size"].as_u64().unwrap_or(0);
    m.bytes.len() as u64 + config + sizes("layers") + sizes("manifests")
}

/// An answer with `status`, `content_type` and `body`.
pub fn answer(status: u16, content_type: &str, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert("content-type", v);
    }
    r
}

/// A JSON answer.
pub fn json(status: u16, body: &Value) -> Response {
    answer(status, "application/json", body.to_string())
}

/// A distribution-API error answer (`{"errors": [{"code", "message"}]}`).
pub fn registry_error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        &json!({"errors": [{"code": code, "message": message}]}),
    )
}

/// The parameters of a query string.
pub fn query_map(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// `/v2/<name>/<manifests|blobs|tags>/<rest>` as (name, kind, rest).
pub fn v2_target(path: &str) -> Option<(String, &'static str, String)> {
    let rest = path.strip_prefix("/v2/")?;
    ["manifests", "blobs", "tags"].into_iter().find_map(|kind| {
        let i = rest.rfind(&format!("/{kind}/"))?;
        let (name, tail) = (&rest[..i], &rest[i + kind.len() + 2..]);
        Some((name.to_string(), kind, tail.to_string()))
    })
}

/// One page of `items` as numbered pages are served (`page` from 1, `page_size` up to
/// `max`, `total_count`), under `key`; why a paging parameter is invalid.
pub fn numbered_page(
    items: Vec<Value>,
    query: &HashMap<String, String>,
    max: usize,
    key: &str,
) -> Result<Value, String> {
    let number = |k: &str, default: usize| match query.get(k) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n) || (k == "page" && *n >= 1))
            .ok_or_else(|| format!("{k}: {v:?} is not a positive integer up to 100")),
    };
    let (page, size) = (number("page", 1)?, number("page_size", 20)?.min(max.max(1)));
    let total = items.len();
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    Ok(json!({ key: chunk, "total_count": total }))
}

/// One page of `items` as token pages are served (`pageSize` up to `max`, `pageToken`,
/// `nextPageToken`), under `key`.
pub fn token_page(
    items: Vec<Value>,
    query: &HashMap<String, String>,
    max: usize,
    key: &str,
) -> Value {
    let asked = query.get("pageSize").and_then(|s| s.parse().ok());
    let size = asked
        .filter(|n: &usize| *n > 0)
        .unwrap_or(max)
        .min(max.max(1));
    let token = query.get("pageToken").and_then(|t| t.strip_prefix("page-"));
    let start: usize = token.and_then(|n| n.parse().ok()).unwrap_or(0);
    let end = (start + size).min(items.len());
    let mut body = json!({ key: items.get(start..end).unwrap_or_default() });
    if end < items.len() {
        body["nextPageToken"] = json!(format!("page-{end}"));
    }
    body
}

/// An RFC 3339 time in UTC, with microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

mod oauth;
mod operations;
mod proxy;
mod registry_auth;

pub use oauth::*;
pub use operations::*;
pub use proxy::*;
pub use registry_auth::*;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pages_times_and_targets() {
        let items: Vec<Value> = (0..5).map(|n| json!(n)).collect();
        let q = query_map("page=2&page_size=2");
        let page = numbered_page(items.clone(), &q, 100, "xs").unwrap();
        assert_eq!(page, json!({"xs": [2, 3], "total_count": 5}));
        assert!(numbered_page(items.clone(), &query_map("page=0"), 100, "xs").is_err());
        let first = token_page(items.clone(), &query_map(""), 2, "xs");
        assert_eq!(first, json!({"xs": [0, 1], "nextPageToken": "page-2"}));
        let last = token_page(items, &query_map("pageToken=page-4"), 2, "xs");
        assert_eq!(last, json!({"xs": [4]}));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            v2_target("/v2/a/b/manifests/sha256:00"),
            Some(("a/b".into(), "manifests", "sha256:00".into()))
        );
    }

    #[test]
    fn ledgers_count_and_answer_canned_faults() {
        let l = Ledger::default();
        l.inject("Op", 1, 429, json!({"message": "slow"}), Some(3));
        let r = l.record("Op", "", Value::Null).expect("canned");
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "3");
        assert!(l.record("Op", "q=1", json!({"a": 1})).is_none());
        assert_eq!(l.calls("Op"), 2);
        assert_eq!(l.requests("Op")[1], json!({"a": 1}));
        assert_eq!(l.all_calls().get("Op"), Some(&2));
    }

    #[test]
    fn operations_stay_pending_then_run_then_finish() {
        let ops = Operations::<&str>::new("projects/p/locations/l");
        ops.set_pending_polls(2);
        let (name, body) = ops.start("work", json!({"ok": true}));
        assert_eq!(body["done"], false);
        assert!(matches!(ops.poll(&name), Some(Step::Answer(v)) if v["done"] == false));
        assert!(matches!(ops.poll(&name), Some(Step::Run("work"))));
        assert_eq!(ops.finish(&name, None)["response"]["ok"], true);
        assert!(ops.poll("nope").is_none());
    }
}
