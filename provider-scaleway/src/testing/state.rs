//! The fake's state: namespaces in memory, images and tags read from the registry.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use mirror_core::store::http::RegistryClient;
use mirror_core::{Digest, ImageStore};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Clone)]
pub(crate) struct NamespaceRec {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) project_id: String,
    pub(crate) organization_id: String,
    pub(crate) description: String,
    pub(crate) is_public: bool,
    pub(crate) status: String,
    pub(crate) status_message: String,
    /// `GET namespaces/<id>` reads left before the status turns `ready`.
    pub(crate) reads_left: u32,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) operation: String,
    pub(crate) remaining: usize,
    pub(crate) status: u16,
    pub(crate) body: Value,
    pub(crate) retry_after: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) initial_status: String,
    pub(crate) ready_after: u32,
    pub(crate) max_page_size: usize,
}

/// One API call the fake answered.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation (`ListNamespaces`, `DeleteTag`…).
    pub operation: String,
    /// The query string.
    pub query: String,
}

pub(crate) struct FakeState {
    pub(crate) data: RegistryClient,
    pub(crate) registry_host: String,
    pub(crate) secret: String,
    pub(crate) projects: Mutex<HashSet<String>>,
    pub(crate) namespaces: Mutex<Vec<NamespaceRec>>,
    pub(crate) first_seen: Mutex<HashMap<String, SystemTime>>,
    pub(crate) deleted_images: Mutex<HashSet<String>>,
    pub(crate) config: Mutex<Config>,
    pub(crate) calls: Mutex<Vec<Call>>,
    pub(crate) faults: Mutex<Vec<Fault>>,
}

pub(crate) fn uuid_from(kind: &str, parts: &[&str]) -> String {
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

pub(crate) fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
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

pub(crate) fn respond(status: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}

pub(crate) fn not_found(resource: &str, id: &str) -> Response {
    respond(
        404,
        &json!({"message": "resource is not found", "type": "not_found", "resource": resource, "resource_id": id}),
    )
}

pub(crate) fn invalid(argument: &str, help: &str) -> Response {
    respond(
        400,
        &json!({"message": "invalid argument(s)", "type": "invalid_arguments",
                "details": [{"argument_name": argument, "reason": "constraint", "help_message": help}]}),
    )
}

/// The fake's reading of the namespace name rule: 4 to 54 lowercase letters, digits and
/// dashes, starting with a letter and not ending with a dash.
pub(crate) fn namespace_name_ok(name: &str) -> bool {
    (4..=54).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A tag as the fake sees it in the registry.
#[derive(Debug, Clone)]
pub(crate) struct TagView {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) digest: Digest,
    pub(crate) created_at: String,
}

/// An image as the fake sees it in the registry.
#[derive(Debug, Clone)]
pub(crate) struct ImageView {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) namespace: NamespaceRec,
    pub(crate) repository: String,
    pub(crate) tags: Vec<TagView>,
    pub(crate) created_at: String,
}

impl ImageView {
    pub(crate) fn json(&self, status: &str) -> Value {
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
    pub(crate) fn json(&self, image_id: &str, status: &str) -> Value {
        json!({
            "id": self.id, "name": self.name, "image_id": image_id, "status": status,
            "digest": self.digest.to_string(), "created_at": self.created_at,
            "updated_at": self.created_at,
        })
    }
}

impl FakeState {
    /// A namespace as the API shows it (`image_count` is not tracked: always 0).
    pub(crate) fn namespace_json(&self, n: &NamespaceRec, image_count: usize) -> Value {
        json!({
            "id": n.id, "name": n.name, "description": n.description,
            "organization_id": n.organization_id, "project_id": n.project_id,
            "status": n.status, "status_message": n.status_message,
            "endpoint": format!("{}/{}", self.registry_host, n.name),
            "is_public": n.is_public, "size": 0, "created_at": n.created_at,
            "updated_at": n.updated_at, "image_count": image_count, "region": REGION,
        })
    }

    pub(crate) fn seen(&self, key: &str) -> String {
        let mut m = self.first_seen.lock().unwrap();
        rfc3339(*m.entry(key.to_string()).or_insert_with(SystemTime::now))
    }

    /// Every image of the known namespaces, read from the registry.
    pub(crate) async fn images(&self) -> Result<Vec<ImageView>, Response> {
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

    pub(crate) async fn tags_of(
        &self,
        repository: &str,
        image_id: &str,
    ) -> Result<Vec<TagView>, Response> {
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

    pub(crate) fn fault(&self, operation: &str) -> Option<Response> {
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
