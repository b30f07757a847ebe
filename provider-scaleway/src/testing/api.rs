//! The fake registry API: one handler for every route of the reference.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;
use mirror_core::{Digest, ImageStore};
use serde_json::{json, Value};

#[allow(unused_imports)]
use super::*;

pub(crate) fn query_map(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Sorts by `order_by` (`created_at_asc` by default) and cuts one page; 400 for invalid
/// paging parameters.
pub(crate) fn page_of(
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

pub(crate) async fn handler(State(s): State<Arc<FakeState>>, req: Request) -> Response {
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
