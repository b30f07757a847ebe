//! The fake registry API: its state (namespaces in memory, as the API shows them; images and
//! tags read from the registry) and one handler for every route of the reference.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::response::Response;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::control_plane::{json as respond, numbered_page as page_of, rfc3339};
use mirror_core::testing::control_plane::{FakeRequest, Ledger};
use mirror_core::{Digest, ImageStore};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{ORGANIZATION, REGION};

pub(crate) struct FakeState {
    pub(crate) data: RegistryClient,
    /// The namespaces as the API shows them, and their `reads_left` before they are `ready`.
    pub(crate) namespaces: Mutex<Vec<Value>>,
    pub(crate) first_seen: Mutex<HashMap<String, SystemTime>>,
    pub(crate) deleted_images: Mutex<HashSet<String>>,
    /// The status new namespaces start in, and the reads before they turn `ready`.
    pub(crate) readiness: Mutex<(String, u32)>,
    pub(crate) max_page_size: Mutex<usize>,
    pub(crate) ledger: Ledger,
}

/// A UUID-shaped id derived from `kind` and `parts` (stable across calls).
pub(crate) fn uuid_from(kind: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new().chain_update(kind.as_bytes());
    for p in parts {
        h = h.chain_update([0u8]).chain_update(p.as_bytes());
    }
    let x = hex::encode(&h.finalize()[..16]);
    [&x[..8], &x[8..12], &x[12..16], &x[16..20], &x[20..]].join("-")
}

/// A Scaleway error answer: `type` and `message`, and what else it says.
fn scw(status: u16, kind: &str, message: &str, mut more: Value) -> Response {
    (more["type"], more["message"]) = (json!(kind), json!(message));
    respond(status, &more)
}

fn not_found(resource: &str, id: &str) -> Response {
    let more = json!({"resource": resource, "resource_id": id});
    scw(404, "not_found", "resource is not found", more)
}

fn invalid(argument: &str, help: &str) -> Response {
    let details =
        json!([{"argument_name": argument, "reason": "constraint", "help_message": help}]);
    let more = json!({ "details": details });
    scw(400, "invalid_arguments", "invalid argument(s)", more)
}

fn denied() -> Response {
    let details = json!([{"resource": "registry_namespace", "action": "read"}]);
    let more = json!({ "details": details });
    scw(403, "permissions_denied", "insufficient permissions", more)
}

fn server_error(e: impl std::fmt::Display) -> Response {
    respond(500, &json!({"message": e.to_string()}))
}

/// The fake's reading of the namespace name rule: 4 to 54 lowercase letters, digits and
/// dashes, starting with a letter and not ending with a dash.
fn namespace_name_ok(name: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    let first = name.starts_with(|c: char| c.is_ascii_lowercase());
    (4..=54).contains(&name.len()) && first && !name.ends_with('-') && name.bytes().all(ok)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// An image as the fake sees it in the registry; its tags as the API shows them.
struct ImageView {
    id: String,
    name: String,
    namespace: Value,
    repository: String,
    tags: Vec<Value>,
    created_at: String,
}

impl ImageView {
    fn json(&self, status: &str) -> Value {
        let mut tags: Vec<&str> = self.tags.iter().map(|t| text(t, "name")).collect();
        tags.sort();
        json!({"id": self.id, "name": self.name, "namespace_id": self.namespace["id"],
            "status": status, "status_message": null, "visibility": "inherit", "size": 0,
            "created_at": self.created_at, "updated_at": self.created_at, "tags": tags})
    }
}

/// A tag with its status.
fn with_status(tag: &Value, status: &str) -> Value {
    let mut t = tag.clone();
    t["status"] = json!(status);
    t
}

type Params = HashMap<String, String>;

impl FakeState {
    /// A new namespace, as the API shows it, turning `ready` after `reads` reads.
    pub(crate) fn namespace(
        &self,
        name: &str,
        project: &str,
        public: bool,
        ready: (&str, u32),
    ) -> Value {
        let (status, reads) = ready;
        let now = rfc3339(SystemTime::now());
        json!({"id": uuid_from("namespace", &[name, &now]), "name": name, "description": "",
            "organization_id": ORGANIZATION, "project_id": project, "status": status,
            "status_message": "", "endpoint": format!("{}/{name}", self.data.registry()),
            "is_public": public, "size": 0, "created_at": now, "updated_at": now,
            "image_count": 0, "region": REGION, "reads_left": reads})
    }

    fn seen(&self, key: &str) -> String {
        let mut m = self.first_seen.lock().unwrap();
        rfc3339(*m.entry(key.to_string()).or_insert_with(SystemTime::now))
    }

    /// Every image of the known namespaces, read from the registry.
    async fn images(&self) -> Result<Vec<ImageView>, Response> {
        let catalog = self.data.catalog().await;
        let catalog = catalog.map_err(|e| server_error(format!("registry catalog: {e}")))?;
        let namespaces = self.namespaces.lock().unwrap().clone();
        let mut out = Vec::new();
        for repository in catalog {
            let Some((ns, name)) = repository.split_once('/') else {
                continue;
            };
            let Some(namespace) = namespaces.iter().find(|n| n["name"] == ns).cloned() else {
                continue;
            };
            let id = uuid_from("image", &[text(&namespace, "id"), name]);
            let tags = self.tags_of(&repository, &id).await?;
            if tags.is_empty() && self.deleted_images.lock().unwrap().contains(&id) {
                continue;
            }
            let (created_at, name) = (self.seen(&format!("image/{id}")), name.to_string());
            out.push(ImageView {
                id,
                name,
                namespace,
                repository,
                tags,
                created_at,
            });
        }
        Ok(out)
    }

    async fn tags_of(&self, repository: &str, image_id: &str) -> Result<Vec<Value>, Response> {
        let store = self.data.repository(repository).map_err(server_error)?;
        let names = match store.list_tags().await {
            Err(e) if e.is_not_found() => Vec::new(),
            other => other.map_err(|e| server_error(format!("registry tags: {e}")))?,
        };
        let mut out = Vec::new();
        for name in names {
            let head = store.head_manifest(&name).await;
            let head = head.map_err(|e| server_error(format!("registry HEAD: {e}")))?;
            let Some(head) = head else { continue };
            let (id, digest) = (
                uuid_from("tag", &[image_id, &name]),
                head.digest.to_string(),
            );
            let at = self.seen(&format!("tag/{id}/{digest}"));
            out.push(json!({"id": id, "name": name, "image_id": image_id, "digest": digest, "created_at": at, "updated_at": at}));
        }
        Ok(out)
    }

    /// One page of `items`, sorted by `order_by` (their `created_at` and `name`).
    fn page(&self, mut items: Vec<Value>, q: &Params, key: &str) -> Response {
        let by = |v: &Value| {
            (
                text(v, "created_at").to_string(),
                text(v, "name").to_string(),
            )
        };
        match q.get("order_by").map_or("created_at_asc", String::as_str) {
            "created_at_asc" => items.sort_by_key(by),
            "created_at_desc" => items.sort_by_key(|v| std::cmp::Reverse(by(v))),
            "name_asc" => items.sort_by_key(|v| by(v).1),
            "name_desc" => items.sort_by_key(|v| std::cmp::Reverse(by(v).1)),
            other => return invalid("order_by", &format!("unknown ordering {other}")),
        }
        let max = *self.max_page_size.lock().unwrap();
        match page_of(items, q, max, key) {
            Ok(page) => respond(200, &page),
            Err(why) => invalid("page", &why),
        }
    }
}

/// A namespace as the API shows it.
pub(crate) fn shown(n: &Value) -> Value {
    let mut n = n.clone();
    n.as_object_mut().map(|m| m.remove("reads_left"));
    n
}

const ROUTES: [&str; 10] = [
    "GET namespaces ListNamespaces",
    "POST namespaces CreateNamespace",
    "GET namespaces/* GetNamespace",
    "PATCH namespaces/* UpdateNamespace",
    "GET images ListImages",
    "GET images/* GetImage",
    "DELETE images/* DeleteImage",
    "GET images/*/tags ListTags",
    "GET tags/* GetTag",
    "DELETE tags/* DeleteTag",
];

pub(crate) async fn handler(State(s): State<Arc<FakeState>>, req: Request) -> Response {
    let r = FakeRequest::read(req).await;
    let prefix = format!("/registry/v1/regions/{REGION}/");
    let Some((operation, segs)) = r.route(&prefix, &ROUTES) else {
        return respond(404, &json!({"message": "route not found"}));
    };
    if let Some(fault) = s.ledger.record(operation, &r.query, r.json()) {
        return fault;
    }
    let reason = match r.header("x-auth-token") {
        None => "invalid_argument",
        Some(t) if t != super::SECRET => "not_found",
        Some(_) => return handle(&s, operation, &segs, &r).await.unwrap_or_else(|e| e),
    };
    let more = json!({"method": "api_key", "reason": reason});
    scw(
        401,
        "denied_authentication",
        "authentication is denied",
        more,
    )
}

type Answer = Result<Response, Response>;

async fn handle(s: &FakeState, operation: &str, segs: &[String], r: &FakeRequest) -> Answer {
    let (q, body) = (&r.params, r.json());
    // The key may use one project only.
    let allowed = [super::PROJECT];
    if q.get("project_id")
        .is_some_and(|p| !allowed.contains(&p.as_str()))
    {
        return Err(denied());
    }
    let filter = |k: &str, v: &str| q.get(k).is_none_or(|x| x == v);
    let id = segs.get(1).map_or("", String::as_str);
    let ours = |n: &Value| allowed.contains(&text(n, "project_id"));
    Ok(match operation {
        "ListNamespaces" => {
            let namespaces = s.namespaces.lock().unwrap().clone();
            let listed = namespaces
                .iter()
                .filter(|n| ours(n) && filter("project_id", text(n, "project_id")));
            let listed = listed.filter(|n| {
                filter("organization_id", ORGANIZATION) && filter("name", text(n, "name"))
            });
            let items = listed.map(shown);
            s.page(items.collect(), q, "namespaces")
        }
        "CreateNamespace" => {
            let (name, project) = (text(&body, "name"), text(&body, "project_id"));
            if project.is_empty() {
                return Err(invalid("project_id", "required"));
            }
            if !allowed.contains(&project) {
                return Err(denied());
            }
            if !namespace_name_ok(name) {
                return Err(invalid(
                    "name",
                    "4 to 54 lowercase letters, digits and dashes, starting with a letter",
                ));
            }
            let (status, reads) = s.readiness.lock().unwrap().clone();
            let mut namespaces = s.namespaces.lock().unwrap();
            if let Some(existing) = namespaces.iter().find(|n| n["name"] == name) {
                let id = if existing["project_id"] == project {
                    text(existing, "id")
                } else {
                    ""
                };
                let more = json!({"resource": "namespace", "resource_id": id, "help_message": "namespace names are unique in a region"});
                return Err(scw(409, "already_exists", "resource already exists", more));
            }
            let status = if reads == 0 { "ready" } else { &status };
            let public = body["is_public"].as_bool().unwrap_or(false);
            let mut n = s.namespace(name, project, public, (status, reads));
            n["description"] = json!(text(&body, "description"));
            namespaces.push(n.clone());
            respond(200, &shown(&n))
        }
        "GetNamespace" | "UpdateNamespace" => {
            let initial = s.readiness.lock().unwrap().0.clone();
            let mut namespaces = s.namespaces.lock().unwrap();
            let found = namespaces.iter_mut().find(|n| n["id"] == id && ours(n));
            let n = found.ok_or_else(|| not_found("namespace", id))?;
            let reads = n["reads_left"].as_u64().unwrap_or(0);
            if operation == "GetNamespace" && reads > 0 {
                n["reads_left"] = json!(reads - 1);
                if reads == 1 && n["status"] == initial.as_str() {
                    n["status"] = json!("ready");
                }
            }
            for field in ["is_public", "description"]
                .into_iter()
                .filter(|f| !body[f].is_null())
            {
                n[field] = body[field].clone();
            }
            respond(200, &shown(n))
        }
        "ListImages" => {
            let images = s.images().await?;
            let listed = images
                .iter()
                .filter(|i| ours(&i.namespace) && filter("name", &i.name));
            let listed = listed.filter(|i| filter("namespace_id", text(&i.namespace, "id")));
            let listed = listed.filter(|i| filter("project_id", text(&i.namespace, "project_id")));
            let items = listed.map(|i| i.json("ready"));
            s.page(items.collect(), q, "images")
        }
        "GetImage" | "DeleteImage" | "ListTags" => {
            let images = s.images().await?;
            let found = images
                .into_iter()
                .find(|i| i.id == id && ours(&i.namespace));
            let image = found.ok_or_else(|| not_found("image", id))?;
            if operation == "ListTags" {
                let tags = image
                    .tags
                    .iter()
                    .filter(|t| filter("name", text(t, "name")));
                let items = tags.map(|t| with_status(t, "ready"));
                return Ok(s.page(items.collect(), q, "tags"));
            }
            if operation == "DeleteImage" {
                let store = s.data.repository(&image.repository).map_err(server_error)?;
                let digests: HashSet<&str> = image.tags.iter().map(|t| text(t, "digest")).collect();
                for d in digests.into_iter().filter_map(|d| Digest::parse(d).ok()) {
                    match store.delete_manifest(&d).await {
                        Err(e) if !e.is_not_found() => return Err(server_error(e)),
                        _ => {}
                    }
                }
                s.deleted_images.lock().unwrap().insert(image.id.clone());
                return Ok(respond(200, &image.json("deleting")));
            }
            respond(200, &image.json("ready"))
        }
        _ => {
            let images = s.images().await?;
            let found = images
                .iter()
                .find_map(|i| i.tags.iter().find(|t| t["id"] == id).map(|t| (i, t)));
            let (image, tag) = found.ok_or_else(|| not_found("tag", id))?;
            if !ours(&image.namespace) {
                return Err(denied());
            }
            if operation == "GetTag" {
                return Ok(respond(200, &with_status(tag, "ready")));
            }
            let shared = image
                .tags
                .iter()
                .any(|t| t["id"] != tag["id"] && t["digest"] == tag["digest"]);
            if shared && q.get("force").map(String::as_str) != Some("true") {
                let more = json!({"help_message": "other tags share this digest: use force=true"});
                return Err(scw(400, "precondition_failed", "precondition failed", more));
            }
            let store = s.data.repository(&image.repository).map_err(server_error)?;
            let digest = Digest::parse(text(tag, "digest")).map_err(server_error)?;
            match store.delete_manifest(&digest).await {
                Ok(()) => respond(200, &with_status(tag, "deleting")),
                Err(e) if e.is_not_found() => not_found("tag", id),
                Err(e) => server_error(e),
            }
        }
    })
}
