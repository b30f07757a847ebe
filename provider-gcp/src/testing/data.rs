//! The data proxy in front of the registry (see [`crate::testing`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use futures::TryStreamExt;
use serde_json::json;

#[allow(unused_imports)]
use super::*;

pub(crate) fn registry_error(status: u16, code: &str, message: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"errors": [{"code": code, "message": message}]}).to_string(),
        ))
        .unwrap_or_default()
}

/// `/v2/<name>/<kind>/<rest>` → (name, kind).
pub(crate) fn split_path(path: &str) -> Option<(String, &'static str)> {
    let rest = path.strip_prefix("/v2/")?;
    for kind in ["manifests", "blobs", "tags"] {
        let marker = format!("/{kind}/");
        if let Some(i) = rest.rfind(&marker) {
            return Some((rest[..i].to_string(), kind));
        }
    }
    None
}

pub(crate) async fn data_handler(State(fake): State<Arc<Fake>>, req: Request) -> Response {
    let base = fake.data_base.lock().map(|b| b.clone()).unwrap_or_default();
    let path = req.uri().path().to_string();
    if path == "/v2/token" {
        fake.st().data.token_requests += 1;
        let ok = basic(req.headers())
            .is_some_and(|(u, p)| u == "oauth2accesstoken" && fake.token_valid(&p));
        if !ok {
            return registry_error(401, "UNAUTHORIZED", "invalid credentials");
        }
        let (_, access) = basic(req.headers()).unwrap_or_default();
        let mut oauth = fake.oauth();
        let access_exp = oauth
            .issued
            .get(&access)
            .copied()
            .unwrap_or(SystemTime::now());
        let exp = access_exp.min(SystemTime::now() + Duration::from_secs(300));
        oauth.counter += 1;
        let token = format!("registry-{}", oauth.counter);
        oauth.registry_tokens.insert(token.clone(), exp);
        let secs = exp
            .duration_since(SystemTime::now())
            .map(|d| d.as_secs())
            .unwrap_or(0);
        return json_response(
            200,
            json!({"token": token, "access_token": token, "expires_in": secs}),
        );
    }
    let authorized = match (bearer(req.headers()), basic(req.headers())) {
        (Some(t), _) => fake
            .oauth()
            .registry_tokens
            .get(&t)
            .is_some_and(|exp| SystemTime::now() < *exp),
        (None, Some((u, p))) => u == "oauth2accesstoken" && fake.token_valid(&p),
        _ => false,
    };
    if !authorized {
        fake.st().data.unauthorized += 1;
        let mut r = registry_error(401, "UNAUTHORIZED", "authentication required");
        let challenge = format!(
            r#"Bearer realm="{base}/v2/token",service="{}""#,
            fake.docker_host()
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            r.headers_mut().insert("www-authenticate", v);
        }
        return r;
    }
    if path == "/v2/" || path == "/v2" {
        return json_response(200, json!({}));
    }
    let method = req.method().clone();
    if method == Method::PATCH {
        fake.st().data.patches += 1;
        return registry_error(
            405,
            "UNSUPPORTED",
            "chunked uploads are not supported; upload the blob with one PUT",
        );
    }
    let target = split_path(&path);
    let Some((name, kind)) = target else {
        return registry_error(404, "NAME_UNKNOWN", "no such path");
    };
    let Some((repo, package)) = name
        .strip_prefix(&format!("{PROJECT}/"))
        .and_then(|r| r.split_once('/'))
        .map(|(r, p)| (r.to_string(), p.to_string()))
    else {
        return registry_error(403, "DENIED", &format!("permission denied on {name}"));
    };
    let is_write = matches!(
        (&method, kind),
        (&Method::POST, "blobs") | (&Method::PUT, "blobs") | (&Method::PUT, "manifests")
    );
    if is_write && visible_repo(&fake.st(), &repo).is_none() {
        return registry_error(
            404,
            "NAME_UNKNOWN",
            &format!("Repository \"{repo}\" not found"),
        );
    }
    // A deleted tag (`tags.delete`) is gone for readers until it is pushed again.
    let reference = path.rsplit('/').next().unwrap_or("").to_string();
    let by_tag = kind == "manifests" && !reference.contains(':');
    let removed = by_tag
        && fake
            .st()
            .removed_tags
            .contains(&(name.clone(), reference.clone()));
    if removed && (method == Method::GET || method == Method::HEAD) {
        return registry_error(
            404,
            "MANIFEST_UNKNOWN",
            &format!("tag {reference} not found"),
        );
    }
    let (parts, body) = req.into_parts();
    let url = match parts.uri.query() {
        Some(q) => format!("{}{path}?{q}", fake.registry),
        None => format!("{}{path}", fake.registry),
    };
    let mut fwd = fake.http.request(method.clone(), url);
    for (k, v) in &parts.headers {
        if k != "host" && k != "authorization" {
            fwd = fwd.header(k, v);
        }
    }
    let manifest_put = method == Method::PUT && kind == "manifests";
    fwd = fwd.body(reqwest::Body::wrap_stream(body.into_data_stream()));
    let resp = match fwd.send().await {
        Ok(r) => r,
        Err(e) => return registry_error(502, "UNKNOWN", &format!("registry: {e}")),
    };
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    if manifest_put && status == 201 {
        if let Some(digest) = headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            let media_type = parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let mut st = fake.st();
            st.data.manifest_puts += 1;
            if by_tag {
                st.removed_tags.remove(&(name.clone(), reference.clone()));
            }
            st.versions
                .entry((repo, package))
                .or_default()
                .entry(digest.to_string())
                .or_insert(Meta {
                    upload: SystemTime::now(),
                    media_type,
                });
        }
    }
    let mut out = Response::builder().status(status);
    for (k, v) in &headers {
        if k == "transfer-encoding" || k == "connection" {
            continue;
        }
        if k == "location" {
            let loc = v.to_str().unwrap_or("").replace(&fake.registry, &base);
            out = out.header(k, loc);
        } else {
            out = out.header(k, v);
        }
    }
    let stream = resp.bytes_stream().map_err(std::io::Error::other);
    out.body(Body::from_stream(stream)).unwrap_or_default()
}
