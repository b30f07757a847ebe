//! The fake's state and the small helpers every handler uses.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};

#[allow(unused_imports)]
use super::*;

/// A canned failure of one REST method.
#[derive(Debug, Clone)]
pub(crate) struct FaultRule {
    pub(crate) method: String,
    pub(crate) remaining: usize,
    pub(crate) http: u16,
    pub(crate) status: String,
}

#[derive(Debug, Clone)]
#[allow(dead_code)]
pub(crate) struct Meta {
    pub(crate) upload: SystemTime,
    pub(crate) media_type: String,
}

pub(crate) enum Deferred {
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

pub(crate) struct OpRec {
    pub(crate) polls_left: usize,
    pub(crate) action: Option<Deferred>,
    pub(crate) done: bool,
    pub(crate) response: Value,
    pub(crate) error: Option<(i64, String)>,
}

pub(crate) struct RepoRec {
    pub(crate) resource: Value,
    pub(crate) visible: bool,
}

#[derive(Default)]
pub(crate) struct OAuth {
    pub(crate) lifetime: Option<Duration>,
    pub(crate) issued: HashMap<String, SystemTime>,
    pub(crate) registry_tokens: HashMap<String, SystemTime>,
    pub(crate) hits: usize,
    pub(crate) fail_next: usize,
    pub(crate) counter: u64,
    pub(crate) rejected: Vec<String>,
}

#[derive(Default)]
pub(crate) struct DataCounters {
    pub(crate) patches: usize,
    pub(crate) unauthorized: usize,
    pub(crate) token_requests: usize,
    pub(crate) manifest_puts: usize,
}

pub(crate) struct St {
    pub(crate) repos: BTreeMap<String, RepoRec>,
    pub(crate) ops: HashMap<String, OpRec>,
    pub(crate) versions: BTreeMap<(String, String), BTreeMap<String, Meta>>,
    pub(crate) calls: HashMap<String, usize>,
    pub(crate) faults: Vec<FaultRule>,
    pub(crate) pending_polls: usize,
    pub(crate) page_size: usize,
    pub(crate) op_counter: u64,
    pub(crate) deleted_versions: Vec<String>,
    pub(crate) package_deletes: Vec<String>,
    pub(crate) patches: Vec<(String, String)>,
    pub(crate) data: DataCounters,
    /// Tags deleted with `tags.delete`: `(registry name, tag)`. The registry behind cannot
    /// delete a tag alone, so the fake hides them (listings, manifest reads by tag) until the
    /// tag is pushed again.
    pub(crate) removed_tags: std::collections::BTreeSet<(String, String)>,
}

pub(crate) struct Fake {
    pub(crate) registry: String,
    pub(crate) http: reqwest::Client,
    pub(crate) google: Mutex<String>,
    pub(crate) data_base: Mutex<String>,
    pub(crate) oauth: Mutex<OAuth>,
    pub(crate) st: Mutex<St>,
}

impl Fake {
    pub(crate) fn st(&self) -> std::sync::MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn oauth(&self) -> std::sync::MutexGuard<'_, OAuth> {
        self.oauth.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn docker_host(&self) -> String {
        self.data_base
            .lock()
            .map(|b| b.trim_start_matches("http://").to_string())
            .unwrap_or_default()
    }
    pub(crate) fn token_valid(&self, token: &str) -> bool {
        self.oauth()
            .issued
            .get(token)
            .is_some_and(|exp| SystemTime::now() < *exp)
    }
}

pub(crate) fn gerr(http: u16, status: &str, message: &str) -> Response {
    json_response(
        http,
        json!({"error": {"code": http, "message": message, "status": status}}),
    )
}

pub(crate) fn json_response(http: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(http).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json; charset=UTF-8")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

pub(crate) fn query_map(uri: &axum::http::Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

pub(crate) fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}
