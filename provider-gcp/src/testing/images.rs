//! `dockerImages.list` and `versions.delete`, read from and applied to the real registry.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use axum::response::Response;
use mirror_core::media::ACCEPTED_MANIFEST_TYPES;
use serde_json::{json, Value};

#[allow(unused_imports)]
use super::*;

pub(crate) struct Manifest {
    pub(crate) digest: String,
    pub(crate) media_type: String,
    pub(crate) body: Value,
    pub(crate) len: usize,
}

pub(crate) async fn reg_manifest(fake: &Fake, name: &str, reference: &str) -> Option<Manifest> {
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

pub(crate) async fn reg_tags(fake: &Fake, name: &str) -> Vec<String> {
    let Ok(resp) = fake
        .http
        .get(format!("{}/v2/{name}/tags/list", fake.registry))
        .send()
        .await
    else {
        return Vec::new();
    };
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    let st = fake.st();
    v.get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|t| !st.removed_tags.contains(&(name.to_string(), t.to_string())))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) async fn reg_catalog(fake: &Fake) -> Vec<String> {
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

pub(crate) fn children(body: &Value) -> Vec<String> {
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

pub(crate) fn size_of(m: &Manifest) -> u64 {
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

pub(crate) async fn list_docker_images(
    fake: &Fake,
    id: &str,
    query: &HashMap<String, String>,
) -> Response {
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

pub(crate) async fn delete_version(
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
