//! The fake REST API: OAuth tokens, repositories, operations.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

#[allow(unused_imports)]
use super::*;

pub(crate) fn valid_repository_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

pub(crate) fn valid_duration(v: &Value) -> bool {
    v.as_str()
        .and_then(|s| s.strip_suffix('s'))
        .is_some_and(|n| n.parse::<f64>().is_ok_and(|f| f >= 0.0))
}

/// Checks cleanup policies as the reference describes them.
pub(crate) fn check_policies(policies: &Value) -> Result<(), String> {
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

#[derive(Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    pub(crate) scope: String,
}

pub(crate) async fn token_endpoint(fake: &Fake, body: axum::body::Bytes) -> Response {
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

pub(crate) fn next_op(st: &mut St, action: Deferred, response: Value) -> Value {
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

pub(crate) fn op_json(name: &str, op: &OpRec) -> Value {
    let mut v = json!({"name": name, "done": op.done});
    if op.done {
        match &op.error {
            Some((code, message)) => v["error"] = json!({"code": code, "message": message}),
            None => v["response"] = op.response.clone(),
        }
    }
    v
}

pub(crate) async fn google_handler(State(fake): State<Arc<Fake>>, req: Request) -> Response {
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
        (
            &Method::DELETE,
            ["projects", _, "locations", _, "repositories", _, "packages", _, "tags", _],
        ) => "tags.delete",
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
        "tags.delete" => delete_tag(&fake, seg[5], seg[7], seg[9]).await,
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

pub(crate) fn create_repository(
    fake: &Fake,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
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

pub(crate) fn visible_repo(st: &St, id: &str) -> Option<Value> {
    st.repos
        .get(id)
        .filter(|r| r.visible)
        .map(|r| r.resource.clone())
}

pub(crate) fn get_repository(fake: &Fake, id: &str) -> Response {
    match visible_repo(&fake.st(), id) {
        Some(r) => json_response(200, r),
        None => gerr(
            404,
            "NOT_FOUND",
            &format!("Requested entity was not found: repository {id}"),
        ),
    }
}

pub(crate) fn paginate(
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

pub(crate) fn list_repositories(fake: &Fake, query: &HashMap<String, String>) -> Response {
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

pub(crate) fn patch_repository(
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

pub(crate) async fn get_operation(fake: &Fake, name: &str) -> Response {
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

/// `tags.delete`: answers `Empty` (no operation); `NOT_FOUND` for a tag the package lacks.
pub(crate) async fn delete_tag(fake: &Fake, id: &str, package: &str, tag: &str) -> Response {
    if visible_repo(&fake.st(), id).is_none() {
        return gerr(404, "NOT_FOUND", &format!("Repository \"{id}\" not found"));
    }
    let name = format!("{PROJECT}/{id}/{package}");
    if !reg_tags(fake, &name).await.iter().any(|t| t == tag) {
        return gerr(
            404,
            "NOT_FOUND",
            &format!("Requested entity was not found: tag {tag}"),
        );
    }
    fake.st().removed_tags.insert((name, tag.to_string()));
    json_response(200, json!({}))
}
