//! Test infrastructure (not product code): an in-process fake of the Scaleway Container
//! Registry API v1, written from Scaleway's public API reference, in front of a real CNCF
//! distribution registry that plays Scaleway's data plane.
//!
//! ```text
//!  Scaleway (API client) ──► FakeScaleway (axum, 127.0.0.1)      namespaces: in memory
//!                                 │ images, tags: read from ──┐   images & tags: the registry
//!                                 │ DeleteTag/DeleteImage ────┤   (catalog, tags/list, HEAD,
//!                                 ▼                           │    DELETE manifest by digest)
//!  Scaleway (data plane) ───────► docker-registry ◄───────────┘   basic auth nologin:<secret>
//! ```
//!
//! What the fake does, and why:
//!
//! - **Namespaces** live in memory: `GET`/`POST .../namespaces` (filters `project_id`, `name`,
//!   `organization_id`; ordering; pagination) and `GET`/`PATCH .../namespaces/<id>`. Names are
//!   unique across every project (Scaleway's names are unique per region across all
//!   customers); [`FakeScaleway::add_foreign_namespace`] plants one owned by another customer.
//!   A new namespace starts in a configurable status (`unknown` by default, the status
//!   Scaleway reports before `ready`) and turns `ready` after a configurable number of
//!   `GET .../namespaces/<id>` reads, which is how tests see that the client waits.
//! - **Images and tags** are not stored: every call reads the real registry through the
//!   distribution API (`_catalog`, `tags/list`, manifest `HEAD` for the digest), so they
//!   always reflect what was pushed. A repository `<ns>/<image>` is a Scaleway image when
//!   the fake knows namespace `<ns>`. Ids are derived from names (stable across calls), and
//!   `created_at` is when the fake first saw the image or tag.
//! - **Deletions** act on the registry: `DELETE .../tags/<id>` deletes the tag's manifest by
//!   digest (which removes every tag naming it, hence `force=true` when the digest has
//!   other tags, as Scaleway requires), `DELETE .../images/<id>` deletes every manifest of
//!   the image.
//! - **Auth**: `X-Auth-Token` must be the secret key (`401 denied_authentication`
//!   otherwise); namespaces of projects the key may not use answer `403
//!   permissions_denied`. The data plane is the registry itself with htpasswd basic auth
//!   `nologin:<secret>`, as Scaleway's is.
//! - **Pagination** follows the reference (`page` from 1, `page_size` default 20, at most
//!   100, `total_count`); [`FakeScaleway::set_max_page_size`] makes the server return fewer
//!   items per page than asked, so clients must follow `total_count`.
//! - **Faults**: [`FakeScaleway::inject`] answers the next calls of an operation with a given
//!   status and body (401, 403, 404, 409, 429 with `Retry-After`, 5xx).
//!
//! Known differences from Scaleway: pushes into a namespace the fake does not know are
//! accepted by the registry (Scaleway refuses them), they are just not listed; image sizes
//! are 0; namespace deletion is not implemented.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use mirror_core::retry::RetryConfig;
use mirror_core::store::http::credentials::Credentials;
use mirror_core::store::http::RegistryClient;
use mirror_core::testing::TestRegistry;
use mirror_core::{Digest, ImageStore};
use provider_scaleway::{Scaleway, ScalewayBuilder};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

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

#[derive(Debug, Clone)]
struct NamespaceRec {
    id: String,
    name: String,
    project_id: String,
    organization_id: String,
    description: String,
    is_public: bool,
    status: String,
    status_message: String,
    /// `GET namespaces/<id>` reads left before the status turns `ready`.
    reads_left: u32,
    created_at: String,
    updated_at: String,
}

#[derive(Debug, Clone)]
struct Fault {
    operation: String,
    remaining: usize,
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

#[derive(Debug, Clone)]
struct Config {
    initial_status: String,
    ready_after: u32,
    max_page_size: usize,
}

/// One API call the fake answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation (`ListNamespaces`, `DeleteTag`…).
    pub operation: String,
    /// The query string.
    pub query: String,
}

struct FakeState {
    data: RegistryClient,
    registry_host: String,
    secret: String,
    projects: Mutex<HashSet<String>>,
    namespaces: Mutex<Vec<NamespaceRec>>,
    first_seen: Mutex<HashMap<String, SystemTime>>,
    deleted_images: Mutex<HashSet<String>>,
    config: Mutex<Config>,
    calls: Mutex<Vec<Call>>,
    faults: Mutex<Vec<Fault>>,
}

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

fn uuid_from(kind: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    let x = hex_of(&h.finalize()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

fn rfc3339(t: SystemTime) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_micros()
    )
}

fn respond(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

fn not_found(resource: &str, id: &str) -> Response {
    respond(
        404,
        &json!({"message": "resource is not found", "type": "not_found", "resource": resource, "resource_id": id}),
    )
}

fn invalid(argument: &str, help: &str) -> Response {
    respond(
        400,
        &json!({"message": "invalid argument(s)", "type": "invalid_arguments",
                "details": [{"argument_name": argument, "reason": "constraint", "help_message": help}]}),
    )
}

/// The fake's reading of the namespace name rule: 4 to 54 lowercase letters, digits and
/// dashes, starting with a letter and not ending with a dash.
fn namespace_name_ok(name: &str) -> bool {
    (4..=54).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A tag as the fake sees it in the registry.
#[derive(Debug, Clone)]
struct TagView {
    id: String,
    name: String,
    digest: Digest,
    created_at: String,
}

/// An image as the fake sees it in the registry.
#[derive(Debug, Clone)]
struct ImageView {
    id: String,
    name: String,
    namespace: NamespaceRec,
    repository: String,
    tags: Vec<TagView>,
    created_at: String,
}

impl ImageView {
    fn json(&self, status: &str) -> Value {
        let mut tags: Vec<&str> = self.tags.iter().map(|t| t.name.as_str()).collect();
        tags.sort();
        json!({
            "id": self.id, "name": self.name, "namespace_id": self.namespace.id,
            "status": status, "status_message": null, "visibility": "inherit", "size": 0,
            "created_at": self.created_at, "updated_at": self.created_at, "tags": tags,
        })
    }
}

impl TagView {
    fn json(&self, image_id: &str, status: &str) -> Value {
        json!({
            "id": self.id, "name": self.name, "image_id": image_id, "status": status,
            "digest": self.digest.to_string(), "created_at": self.created_at,
            "updated_at": self.created_at,
        })
    }
}

impl FakeState {
    /// A namespace as the API shows it (`image_count` is not tracked: always 0).
    fn namespace_json(&self, n: &NamespaceRec, image_count: usize) -> Value {
        json!({
            "id": n.id, "name": n.name, "description": n.description,
            "organization_id": n.organization_id, "project_id": n.project_id,
            "status": n.status, "status_message": n.status_message,
            "endpoint": format!("{}/{}", self.registry_host, n.name),
            "is_public": n.is_public, "size": 0, "created_at": n.created_at,
            "updated_at": n.updated_at, "image_count": image_count, "region": REGION,
        })
    }

    fn seen(&self, key: &str) -> String {
        let mut m = self.first_seen.lock().unwrap();
        rfc3339(*m.entry(key.to_string()).or_insert_with(SystemTime::now))
    }

    /// Every image of the known namespaces, read from the registry.
    async fn images(&self) -> Result<Vec<ImageView>, Response> {
        let catalog = self
            .data
            .catalog()
            .await
            .map_err(|e| respond(500, &json!({"message": format!("registry catalog: {e}")})))?;
        let namespaces = self.namespaces.lock().unwrap().clone();
        let mut out = Vec::new();
        for repo in catalog {
            let Some((ns, name)) = repo.split_once('/') else {
                continue;
            };
            let Some(rec) = namespaces.iter().find(|n| n.name == ns) else {
                continue;
            };
            let id = uuid_from("image", &[&rec.id, name]);
            let tags = self.tags_of(&repo, &id).await?;
            if tags.is_empty() && self.deleted_images.lock().unwrap().contains(&id) {
                continue;
            }
            out.push(ImageView {
                created_at: self.seen(&format!("image/{id}")),
                id,
                name: name.to_string(),
                namespace: rec.clone(),
                repository: repo.clone(),
                tags,
            });
        }
        Ok(out)
    }

    async fn tags_of(&self, repository: &str, image_id: &str) -> Result<Vec<TagView>, Response> {
        let store = self
            .data
            .repository(repository)
            .map_err(|e| respond(500, &json!({"message": e.to_string()})))?;
        let names = match store.list_tags().await {
            Ok(t) => t,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => {
                return Err(respond(
                    500,
                    &json!({"message": format!("registry tags: {e}")}),
                ))
            }
        };
        let mut out = Vec::new();
        for name in names {
            match store.head_manifest(&name).await {
                Ok(Some(head)) => {
                    let id = uuid_from("tag", &[image_id, &name]);
                    out.push(TagView {
                        created_at: self.seen(&format!("tag/{id}/{}", head.digest)),
                        id,
                        name,
                        digest: head.digest,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(respond(
                        500,
                        &json!({"message": format!("registry HEAD: {e}")}),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn fault(&self, operation: &str) -> Option<Response> {
        let mut faults = self.faults.lock().unwrap();
        let f = faults
            .iter_mut()
            .find(|f| f.operation == operation && f.remaining > 0)?;
        f.remaining -= 1;
        let mut r = respond(f.status, &f.body);
        if let Some(s) = f.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert("retry-after", v);
            }
        }
        Some(r)
    }
}

fn query_map(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Sorts by `order_by` (`created_at_asc` by default) and cuts one page; 400 for invalid
/// paging parameters.
fn page_of(
    mut items: Vec<(String, String, Value)>,
    q: &HashMap<String, String>,
    max_page_size: usize,
    key: &str,
) -> Response {
    let page: usize = match q.get("page").map(|p| p.parse::<usize>()) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => return invalid("page", "a positive integer"),
    };
    let size: usize = match q.get("page_size").map(|p| p.parse::<usize>()) {
        None => 20,
        Some(Ok(s)) if (1..=100).contains(&s) => s,
        _ => return invalid("page_size", "a positive integer lower or equal to 100"),
    };
    // (created_at, name, json)
    match q
        .get("order_by")
        .map(String::as_str)
        .unwrap_or("created_at_asc")
    {
        "created_at_asc" => items.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1))),
        "created_at_desc" => items.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1))),
        "name_asc" => items.sort_by(|a, b| a.1.cmp(&b.1)),
        "name_desc" => items.sort_by(|a, b| b.1.cmp(&a.1)),
        other => return invalid("order_by", &format!("unknown ordering {other}")),
    }
    let size = size.min(max_page_size.max(1));
    let total = items.len();
    let chunk: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|(_, _, v)| v)
        .collect();
    respond(200, &json!({ key: chunk, "total_count": total }))
}

async fn handler(State(s): State<Arc<FakeState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let token = req
        .headers()
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = axum::body::to_bytes(req.into_body(), 1024 * 1024)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);

    let prefix = format!("/registry/v1/regions/{REGION}/");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return respond(404, &json!({"message": "route not found"}));
    };
    let segs: Vec<&str> = rest.split('/').collect();
    let operation = match (&method, segs.as_slice()) {
        (&Method::GET, ["namespaces"]) => "ListNamespaces",
        (&Method::POST, ["namespaces"]) => "CreateNamespace",
        (&Method::GET, ["namespaces", _]) => "GetNamespace",
        (&Method::PATCH, ["namespaces", _]) => "UpdateNamespace",
        (&Method::GET, ["images"]) => "ListImages",
        (&Method::GET, ["images", _]) => "GetImage",
        (&Method::DELETE, ["images", _]) => "DeleteImage",
        (&Method::GET, ["images", _, "tags"]) => "ListTags",
        (&Method::GET, ["tags", _]) => "GetTag",
        (&Method::DELETE, ["tags", _]) => "DeleteTag",
        _ => return respond(404, &json!({"message": "route not found"})),
    };
    s.calls.lock().unwrap().push(Call {
        operation: operation.to_string(),
        query: query.clone(),
    });
    if let Some(r) = s.fault(operation) {
        return r;
    }
    match token {
        None => {
            return respond(
                401,
                &json!({"message": "authentication is denied", "method": "api_key",
                        "reason": "invalid_argument", "type": "denied_authentication"}),
            )
        }
        Some(t) if t != s.secret => {
            return respond(
                401,
                &json!({"message": "authentication is denied", "method": "api_key",
                        "reason": "not_found", "type": "denied_authentication"}),
            )
        }
        Some(_) => {}
    }
    let q = query_map(&query);
    let max_page = s.config.lock().unwrap().max_page_size;
    let allowed = s.projects.lock().unwrap().clone();
    let denied = || {
        respond(
            403,
            &json!({"message": "insufficient permissions", "type": "permissions_denied",
                    "details": [{"resource": "registry_namespace", "action": "read"}]}),
        )
    };

    match (operation, segs.as_slice()) {
        ("ListNamespaces", _) => {
            if let Some(p) = q.get("project_id") {
                if !allowed.contains(p) {
                    return denied();
                }
            }
            let namespaces = s.namespaces.lock().unwrap().clone();
            let items = namespaces
                .iter()
                .filter(|n| allowed.contains(&n.project_id))
                .filter(|n| q.get("project_id").is_none_or(|p| &n.project_id == p))
                .filter(|n| {
                    q.get("organization_id")
                        .is_none_or(|o| &n.organization_id == o)
                })
                .filter(|n| q.get("name").is_none_or(|x| &n.name == x))
                .map(|n| (n.created_at.clone(), n.name.clone(), s.namespace_json(n, 0)))
                .collect();
            page_of(items, &q, max_page, "namespaces")
        }
        ("CreateNamespace", _) => {
            let name = body.get("name").and_then(Value::as_str).unwrap_or("");
            let project = body.get("project_id").and_then(Value::as_str).unwrap_or("");
            if project.is_empty() {
                return invalid("project_id", "required");
            }
            if !allowed.contains(project) {
                return denied();
            }
            if !namespace_name_ok(name) {
                return invalid(
                    "name",
                    "4 to 54 lowercase letters, digits and dashes, starting with a letter",
                );
            }
            let config = s.config.lock().unwrap().clone();
            let mut namespaces = s.namespaces.lock().unwrap();
            if let Some(existing) = namespaces.iter().find(|n| n.name == name) {
                let id = if existing.project_id == project {
                    existing.id.clone()
                } else {
                    String::new()
                };
                return respond(
                    409,
                    &json!({"message": "resource already exists", "type": "already_exists",
                            "resource": "namespace", "resource_id": id,
                            "help_message": "namespace names are unique in a region"}),
                );
            }
            let now = now_rfc3339();
            let ready = config.ready_after == 0;
            let rec = NamespaceRec {
                id: uuid_from("namespace", &[name, &now]),
                name: name.to_string(),
                project_id: project.to_string(),
                organization_id: ORGANIZATION.to_string(),
                description: body
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                is_public: body
                    .get("is_public")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                status: if ready {
                    "ready".into()
                } else {
                    config.initial_status.clone()
                },
                status_message: String::new(),
                reads_left: config.ready_after,
                created_at: now.clone(),
                updated_at: now,
            };
            namespaces.push(rec.clone());
            drop(namespaces);
            respond(200, &s.namespace_json(&rec, 0))
        }
        ("GetNamespace", [_, id]) | ("UpdateNamespace", [_, id]) => {
            let mut namespaces = s.namespaces.lock().unwrap();
            let Some(n) = namespaces
                .iter_mut()
                .find(|n| n.id == *id && allowed.contains(&n.project_id))
            else {
                return not_found("namespace", id);
            };
            if operation == "GetNamespace" {
                if n.reads_left > 0 {
                    n.reads_left -= 1;
                    if n.reads_left == 0 && n.status == s.config.lock().unwrap().initial_status {
                        n.status = "ready".into();
                    }
                }
            } else {
                if let Some(p) = body.get("is_public").and_then(Value::as_bool) {
                    n.is_public = p;
                }
                if let Some(d) = body.get("description").and_then(Value::as_str) {
                    n.description = d.to_string();
                }
                n.updated_at = now_rfc3339();
            }
            let n = n.clone();
            drop(namespaces);
            respond(200, &s.namespace_json(&n, 0))
        }
        ("ListImages", _) => {
            let images = match s.images().await {
                Ok(i) => i,
                Err(r) => return r,
            };
            if let Some(p) = q.get("project_id") {
                if !allowed.contains(p) {
                    return denied();
                }
            }
            let items = images
                .iter()
                .filter(|i| allowed.contains(&i.namespace.project_id))
                .filter(|i| q.get("namespace_id").is_none_or(|x| &i.namespace.id == x))
                .filter(|i| {
                    q.get("project_id")
                        .is_none_or(|x| &i.namespace.project_id == x)
                })
                .filter(|i| q.get("name").is_none_or(|x| &i.name == x))
                .map(|i| (i.created_at.clone(), i.name.clone(), i.json("ready")))
                .collect();
            page_of(items, &q, max_page, "images")
        }
        ("GetImage", [_, id]) | ("DeleteImage", [_, id]) | ("ListTags", [_, id, _]) => {
            let images = match s.images().await {
                Ok(i) => i,
                Err(r) => return r,
            };
            let Some(image) = images
                .into_iter()
                .find(|i| i.id == *id && allowed.contains(&i.namespace.project_id))
            else {
                return not_found("image", id);
            };
            match operation {
                "GetImage" => respond(200, &image.json("ready")),
                "ListTags" => {
                    let items = image
                        .tags
                        .iter()
                        .filter(|t| q.get("name").is_none_or(|x| &t.name == x))
                        .map(|t| {
                            (
                                t.created_at.clone(),
                                t.name.clone(),
                                t.json(&image.id, "ready"),
                            )
                        })
                        .collect();
                    page_of(items, &q, max_page, "tags")
                }
                _ => {
                    let store = match s.data.repository(&image.repository) {
                        Ok(st) => st,
                        Err(e) => return respond(500, &json!({"message": e.to_string()})),
                    };
                    let digests: HashSet<Digest> =
                        image.tags.iter().map(|t| t.digest.clone()).collect();
                    for d in digests {
                        if let Err(e) = store.delete_manifest(&d).await {
                            if !e.is_not_found() {
                                return respond(500, &json!({"message": e.to_string()}));
                            }
                        }
                    }
                    s.deleted_images.lock().unwrap().insert(image.id.clone());
                    respond(200, &image.json("deleting"))
                }
            }
        }
        ("GetTag", [_, id]) | ("DeleteTag", [_, id]) => {
            let images = match s.images().await {
                Ok(i) => i,
                Err(r) => return r,
            };
            let found = images.iter().find_map(|i| {
                i.tags
                    .iter()
                    .find(|t| t.id == *id)
                    .map(|t| (i.clone(), t.clone()))
            });
            let Some((image, tag)) = found else {
                return not_found("tag", id);
            };
            if !allowed.contains(&image.namespace.project_id) {
                return denied();
            }
            if operation == "GetTag" {
                return respond(200, &tag.json(&image.id, "ready"));
            }
            let shared = image
                .tags
                .iter()
                .any(|t| t.id != tag.id && t.digest == tag.digest);
            if shared && q.get("force").map(String::as_str) != Some("true") {
                return respond(
                    400,
                    &json!({"message": "precondition failed", "type": "precondition_failed",
                            "help_message": "other tags share this digest: use force=true"}),
                );
            }
            let store = match s.data.repository(&image.repository) {
                Ok(st) => st,
                Err(e) => return respond(500, &json!({"message": e.to_string()})),
            };
            match store.delete_manifest(&tag.digest).await {
                Ok(()) => respond(200, &tag.json(&image.id, "deleting")),
                Err(e) if e.is_not_found() => not_found("tag", id),
                Err(e) => respond(500, &json!({"message": e.to_string()})),
            }
        }
        _ => respond(404, &json!({"message": "route not found"})),
    }
}

impl FakeScaleway {
    /// Starts a registry (basic auth `nologin:<SECRET>`) and the fake API in front of it.
    pub async fn start() -> FakeScaleway {
        let registry = TestRegistry::with_basic_auth(provider_scaleway::DATA_PLANE_USER, SECRET);
        let data = RegistryClient::builder(&registry.host())
            .credentials(Credentials::basic(
                provider_scaleway::DATA_PLANE_USER,
                SECRET,
            ))
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
