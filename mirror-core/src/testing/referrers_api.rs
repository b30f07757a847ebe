//! The OCI 1.1 referrers API, served by a [`FaultProxy`](super::FaultProxy) in front of a
//! registry that has none (distribution 2.8, the registry packaged here).
//!
//! No registry implementing the API can be installed on this machine, so the proxy adds it,
//! following the distribution spec (v1.1, "Listing Referrers" and "Pushing Manifests with
//! Subject"):
//!
//! - a manifest PUT that the upstream accepts and whose document names a `subject` is
//!   recorded as a referrer of that subject in that repository, and the answer carries
//!   `OCI-Subject: <subject digest>`;
//! - `GET /v2/<name>/referrers/<digest>` answers an image index of the recorded descriptors
//!   (media type, digest, size, `artifactType`, annotations), an empty one for a subject
//!   without referrers; `?artifactType=` filters, and the answer then says
//!   `OCI-Filters-Applied: artifactType`; with a page size, `Link` pagination;
//! - a manifest DELETE that the upstream accepts removes the manifest from every list.
//!
//! The records live in memory, for the proxy's lifetime; reads are not authenticated.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use crate::digest::Digest;
use crate::media::{Descriptor, RawManifest, OCI_INDEX};

/// Largest manifest body the proxy buffers to read its `subject`.
const MAX_MANIFEST: usize = 4 * 1024 * 1024;

/// Referrers recorded by repository and subject.
#[derive(Default)]
pub(super) struct ReferrersApi {
    by_subject: Mutex<BTreeMap<(String, Digest), Vec<Descriptor>>>,
    page_size: Mutex<Option<usize>>,
}

/// A request the referrers API handles itself, or must look at.
pub(super) enum Route {
    /// `GET /v2/<name>/referrers/<digest>`.
    List { name: String, subject: String },
    /// `PUT /v2/<name>/manifests/<reference>`.
    PutManifest { name: String },
    /// `DELETE /v2/<name>/manifests/<digest>`.
    DeleteManifest { name: String, digest: String },
}

impl Route {
    /// The route of `method path`, if the API cares.
    pub(super) fn of(method: &str, path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/v2/")?;
        if let Some((name, subject)) = rest.rsplit_once("/referrers/") {
            return (method == "GET").then(|| Route::List {
                name: name.to_string(),
                subject: subject.to_string(),
            });
        }
        let (name, reference) = rest.rsplit_once("/manifests/")?;
        match method {
            "PUT" => Some(Route::PutManifest {
                name: name.to_string(),
            }),
            "DELETE" => Some(Route::DeleteManifest {
                name: name.to_string(),
                digest: reference.to_string(),
            }),
            _ => None,
        }
    }
}

impl ReferrersApi {
    /// Pages of at most `n` descriptors from now on (`None`: one page).
    pub(super) fn set_page_size(&self, n: Option<usize>) {
        if let Ok(mut p) = self.page_size.lock() {
            *p = n;
        }
    }

    /// The answer to `GET /v2/<name>/referrers/<subject>?<query>`.
    pub(super) fn list(&self, name: &str, subject: &str, query: Option<&str>) -> Response {
        let Ok(subject) = Digest::parse(subject) else {
            return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "invalid digest");
        };
        let params: Vec<(String, String)> = query
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let param = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let filter = param("artifactType");
        let all: Vec<Descriptor> = self
            .by_subject
            .lock()
            .map(|m| {
                m.get(&(name.to_string(), subject.clone()))
                    .cloned()
                    .unwrap_or_default()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|d| filter.is_none() || d.artifact_type == filter)
            .collect();
        // Pages start after the descriptor named by `last`.
        let start = param("last")
            .and_then(|last| all.iter().position(|d| d.digest.to_string() == last))
            .map_or(0, |i| i + 1);
        let page_size = self.page_size.lock().ok().and_then(|p| *p);
        let end = page_size.map_or(all.len(), |n| (start + n.max(1)).min(all.len()));
        let page = &all[start.min(end)..end];
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": page,
        });
        let mut resp = Response::new(Body::from(body.to_string()));
        let headers = resp.headers_mut();
        headers.insert("content-type", HeaderValue::from_static(OCI_INDEX));
        if filter.is_some() {
            headers.insert(
                "oci-filters-applied",
                HeaderValue::from_static("artifactType"),
            );
        }
        if let Some(last) = page.last().filter(|_| end < all.len()) {
            let mut next = format!("/v2/{name}/referrers/{subject}?last={}", last.digest);
            if let Some(f) = &filter {
                next.push_str("&artifactType=");
                next.extend(url::form_urlencoded::byte_serialize(f.as_bytes()));
            }
            if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
                headers.insert("link", v);
            }
        }
        resp
    }

    /// Records the manifest `body` (of `content_type`) the upstream accepted in `name`;
    /// returns the subject it names, if any.
    pub(super) fn record(&self, name: &str, content_type: &str, body: &[u8]) -> Option<Digest> {
        let manifest = RawManifest::new(body.to_vec(), content_type);
        let referral = manifest.referral("").ok()?;
        let subject = referral.subject?;
        let descriptor = Descriptor {
            media_type: content_type.to_string(),
            digest: manifest.digest.clone(),
            size: body.len() as u64,
            artifact_type: referral.artifact_type,
            platform: None,
            annotations: referral.annotations.filter(|a| !a.is_empty()),
        };
        if let Ok(mut m) = self.by_subject.lock() {
            let list = m
                .entry((name.to_string(), subject.digest.clone()))
                .or_default();
            if !list.iter().any(|d| d.digest == descriptor.digest) {
                list.push(descriptor);
            }
        }
        Some(subject.digest)
    }

    /// Forgets the manifest `digest` of `name` (deleted upstream).
    pub(super) fn forget(&self, name: &str, digest: &str) {
        if let Ok(mut m) = self.by_subject.lock() {
            for ((repo, _), list) in m.iter_mut() {
                if repo == name {
                    list.retain(|d| d.digest.to_string() != digest);
                }
            }
        }
    }

    /// How many referrers are recorded in all.
    pub(super) fn count(&self) -> usize {
        self.by_subject
            .lock()
            .map(|m| m.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

/// Reads a manifest PUT's body, at most [`MAX_MANIFEST`] bytes.
pub(super) async fn buffer(body: Body) -> Result<bytes::Bytes, Response> {
    axum::body::to_bytes(body, MAX_MANIFEST).await.map_err(|e| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "SIZE_INVALID",
            &format!("manifest unreadable or too large: {e}"),
        )
    })
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp
}
