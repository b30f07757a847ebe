//! The Scaleway Container Registry API v1 calls this crate makes (control plane), over
//! reqwest, with errors converted in [`crate::error`].
//!
//! What this module relies on, read from Scaleway's public API reference:
//!
//! - Every call is under `<api url>/registry/v1/regions/<region>/` and authenticates with the
//!   secret key of an API key in the `X-Auth-Token` header.
//! - `namespaces`: `GET` lists (filters `project_id`, `name` — exact match —, ordering by
//!   `order_by`), `POST` creates (`name`, `description`, `project_id`, `is_public`),
//!   `GET`/`PATCH`/`DELETE namespaces/<id>` read, update and delete one. A namespace has a
//!   `status`: `ready` when usable; `deleting`, `error` and `locked` when not; `unknown` (or
//!   anything else) while it is being set up.
//! - `images`: `GET` lists (filters `namespace_id`, `name`, `project_id`), `GET`/`DELETE
//!   images/<id>`. A Scaleway *image* is what the distribution API calls a repository: a name
//!   inside a namespace, with its tags.
//! - `images/<id>/tags`: `GET` lists the tags of an image (filter `name`), each with the
//!   `digest` of the manifest it names and a `status`; `DELETE tags/<id>` deletes one, with
//!   `force=true` needed when other tags share its digest.
//! - Lists are paginated with `page` (from 1) and `page_size` (at most 100) and say how many
//!   items match in `total_count`.
//! - Errors are a JSON body with `message` and, for standard errors, `type`, `resource`,
//!   `resource_id`, `help_message` or `details`.
//!
//! Every call is retried on 429 (honouring `Retry-After`), 5xx, 408 and connection failures
//! under the builder's [`RetryConfig`] (the core policy); creating a namespace is safe to
//! repeat because a repeated creation answers "already exists", which the caller handles.
//! List calls follow the pages to the end and drop duplicates (a page may shift while items
//! are deleted).

use std::collections::HashSet;
use std::time::Duration;

use mirror_core::retry::RetryConfig;
use mirror_core::store::http::credentials::Secret;
use mirror_core::store::http::{read_capped, Capped, MAX_CONTROL_PLANE_BYTES};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use url::Url;

use mirror_core::provider::Origin;

use crate::error::{self, Error, Result};

/// Largest page size the API accepts.
pub const MAX_PAGE_SIZE: u32 = 100;
/// Timeout of one API request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default TCP connect timeout of the API.
pub const API_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default API URL.
pub const DEFAULT_API_URL: &str = "https://api.scaleway.com";

fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A namespace, as the API describes it (fields this crate reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Namespace {
    /// Its UUID.
    pub id: String,
    /// Its name (unique in the region across all customers).
    pub name: String,
    /// Its description.
    #[serde(default, deserialize_with = "null_default")]
    pub description: String,
    /// The project it belongs to.
    #[serde(default, deserialize_with = "null_default")]
    pub project_id: String,
    /// `ready`, `deleting`, `error`, `locked`, or `unknown` while being set up.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// Details of the status.
    #[serde(default, deserialize_with = "null_default")]
    pub status_message: String,
    /// The endpoint docker reaches it at (`rg.<region>.scw.cloud/<name>`).
    #[serde(default, deserialize_with = "null_default")]
    pub endpoint: String,
    /// Whether anyone may pull without credentials.
    #[serde(default, deserialize_with = "null_default")]
    pub is_public: bool,
    /// Number of images.
    #[serde(default, deserialize_with = "null_default")]
    pub image_count: u64,
}

/// An image (a repository of a namespace).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Image {
    /// Its UUID.
    pub id: String,
    /// Its name inside the namespace.
    pub name: String,
    /// The namespace it belongs to.
    #[serde(default, deserialize_with = "null_default")]
    pub namespace_id: String,
    /// `ready`, `deleting`, `error`, `locked`, `unknown`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// Its tag names.
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Its size in bytes (layers counted once per image).
    #[serde(default, deserialize_with = "null_default")]
    pub size: u64,
    /// When it was created (RFC 3339).
    #[serde(default, deserialize_with = "null_default")]
    pub created_at: String,
    /// When it was last updated (RFC 3339).
    #[serde(default, deserialize_with = "null_default")]
    pub updated_at: String,
}

/// A tag of an image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Tag {
    /// Its UUID.
    pub id: String,
    /// The tag name.
    pub name: String,
    /// The image it belongs to.
    #[serde(default, deserialize_with = "null_default")]
    pub image_id: String,
    /// `ready`, `deleting`, `error`, `locked`, `unknown`.
    #[serde(default, deserialize_with = "null_default")]
    pub status: String,
    /// The digest of the manifest the tag names (`sha256:…`).
    #[serde(default, deserialize_with = "null_default")]
    pub digest: String,
    /// When it was created (RFC 3339).
    #[serde(default, deserialize_with = "null_default")]
    pub created_at: String,
    /// When it was last updated (RFC 3339).
    #[serde(default, deserialize_with = "null_default")]
    pub updated_at: String,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default, deserialize_with = "null_default")]
    message: String,
    #[serde(default, rename = "type", deserialize_with = "null_default")]
    error_type: String,
    #[serde(default, deserialize_with = "null_default")]
    resource: String,
    #[serde(default, deserialize_with = "null_default")]
    resource_id: String,
    #[serde(default, deserialize_with = "null_default")]
    help_message: String,
    #[serde(default)]
    details: Option<Value>,
}

impl ErrorBody {
    fn describe(&self, fallback: &str) -> String {
        let mut out = if self.message.is_empty() {
            fallback.to_string()
        } else {
            self.message.clone()
        };
        if !self.resource.is_empty() {
            out.push_str(&format!(" (resource {}", self.resource));
            if !self.resource_id.is_empty() {
                out.push_str(&format!(" {}", self.resource_id));
            }
            out.push(')');
        }
        if !self.help_message.is_empty() {
            out.push_str(&format!(": {}", self.help_message));
        }
        if let Some(d) = &self.details {
            if !d.is_null() && d.as_array().is_none_or(|a| !a.is_empty()) {
                out.push_str(&format!(" {d}"));
            }
        }
        out
    }
}

fn http_client(origin: &Origin, connect_timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!(
            "mirror-core-provider-scaleway/",
            env!("CARGO_PKG_VERSION")
        ))
        .connect_timeout(connect_timeout)
        // A control plane's answers never redirect; following one would carry the
        // credentials header (`X-Auth-Token`, `Authorization`) elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| origin.config(format!("HTTP client: {e}")))
}

/// The Scaleway registry API of one region and project. Cheap to clone.
#[derive(Clone)]
pub struct ScalewayApi {
    http: reqwest::Client,
    base: Url,
    region: String,
    project_id: String,
    secret: Secret,
    origin: Origin,
    retry: RetryConfig,
    page_size: u32,
    request_timeout: Duration,
}

impl std::fmt::Debug for ScalewayApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalewayApi")
            .field("base", &self.base.as_str())
            .field("region", &self.region)
            .field("project_id", &self.project_id)
            .field("secret", &self.secret)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl ScalewayApi {
    /// A client of `api_url` (`https://api.scaleway.com`) for `region` and `project_id`,
    /// authenticating with `secret`; errors name `origin` (`scaleway:<registry host>`).
    pub fn new(
        api_url: &str,
        region: &str,
        project_id: &str,
        secret: Secret,
        origin: Origin,
        retry: RetryConfig,
    ) -> Result<Self> {
        let base =
            Url::parse(api_url).map_err(|e| origin.config(format!("API URL {api_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(origin.config(format!(
                "API URL {api_url:?}: expected http(s)://host[:port][/path]"
            )));
        }
        let http = http_client(&origin, API_CONNECT_TIMEOUT)?;
        Ok(ScalewayApi {
            http,
            base,
            region: region.to_string(),
            project_id: project_id.to_string(),
            secret,
            origin,
            retry,
            page_size: MAX_PAGE_SIZE,
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// Sets the timeout of one request (default [`REQUEST_TIMEOUT`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the TCP connect timeout (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Result<Self> {
        self.http = http_client(&self.origin, timeout)?;
        Ok(self)
    }

    /// Items asked per page (1 to [`MAX_PAGE_SIZE`]; the default is the maximum).
    pub fn with_page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// `scaleway:<registry host>`, the label of errors.
    pub fn label(&self) -> &str {
        &self.origin.registry
    }

    /// Who answers, for errors.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The project.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// `<api url>/registry/v1/regions/<region>/<segments…>`.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["registry", "v1", "regions", self.region.as_str()])
                .extend(segments);
        }
        url
    }

    /// One request with retries; the answer's JSON body.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        operation: &'static str,
        target: &str,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T> {
        self.retry
            .run_with(
                || self.call_once(method.clone(), operation, target, url.clone(), body),
                |e: &Error| {
                    let verdict = e.retry();
                    if verdict != mirror_core::retry::Retry::No {
                        tracing::debug!(operation, target, error = %e, "retrying Scaleway API call");
                    }
                    verdict
                },
            )
            .await
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        method: Method,
        operation: &'static str,
        target: &str,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T> {
        let mut req = self
            .http
            .request(method, url)
            .timeout(self.request_timeout)
            .header("X-Auth-Token", self.secret.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.origin.transport(operation, target.to_string(), e))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = read_capped(resp, MAX_CONTROL_PLANE_BYTES)
            .await
            .map_err(|e| match e {
                Capped::Transport(e) => self.origin.transport(operation, target.to_string(), e),
                _ => self.origin.protocol(
                    operation,
                    target.to_string(),
                    format!("an answer of more than {MAX_CONTROL_PLANE_BYTES} bytes"),
                ),
            })?;
        if status.is_success() {
            let text: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
            return serde_json::from_slice(text).map_err(|e| {
                self.origin.protocol(
                    operation,
                    target.to_string(),
                    format!("cannot read the JSON answer: {e}"),
                )
            });
        }
        let parsed: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let fallback = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
        let fallback = if fallback.trim().is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        } else {
            fallback
        };
        Err(error::api(
            &self.origin,
            operation,
            target,
            status.as_u16(),
            &parsed.error_type,
            parsed.describe(&fallback),
            if status == StatusCode::TOO_MANY_REQUESTS {
                retry_after
            } else {
                None
            },
        ))
    }

    /// Every item of a paginated list (`key` names the array in each page), duplicates (by
    /// `id`) dropped.
    async fn list_all<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        target: &str,
        url: Url,
        key: &str,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut received = 0u64;
        for page in 1..=100_000u32 {
            let mut u = url.clone();
            u.query_pairs_mut()
                .append_pair("page", &page.to_string())
                .append_pair("page_size", &self.page_size.to_string());
            let answer: Value = self.call(Method::GET, operation, target, u, None).await?;
            let items = answer
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = answer.get("total_count").and_then(Value::as_u64);
            let count = items.len();
            for item in items {
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if !id.is_empty() && !seen.insert(id) {
                    continue;
                }
                let parsed: T = serde_json::from_value(item).map_err(|e| {
                    self.origin.protocol(
                        operation,
                        target.to_string(),
                        format!("cannot read an item of `{key}`: {e}"),
                    )
                })?;
                out.push(parsed);
            }
            received += count as u64;
            let more = match total {
                Some(total) => count > 0 && received < total,
                None => count >= self.page_size as usize,
            };
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// The namespace of the project named `name`, if any (`GET namespaces?name=`).
    pub async fn find_namespace(&self, name: &str) -> Result<Option<Namespace>> {
        let mut url = self.url(&["namespaces"]);
        url.query_pairs_mut()
            .append_pair("project_id", &self.project_id)
            .append_pair("name", name);
        let all: Vec<Namespace> = self
            .list_all("ListNamespaces", name, url, "namespaces")
            .await?;
        Ok(all.into_iter().find(|n| {
            n.name == name && (n.project_id.is_empty() || n.project_id == self.project_id)
        }))
    }

    /// Every namespace of the project.
    pub async fn list_namespaces(&self) -> Result<Vec<Namespace>> {
        let mut url = self.url(&["namespaces"]);
        url.query_pairs_mut()
            .append_pair("project_id", &self.project_id);
        self.list_all("ListNamespaces", &self.project_id, url, "namespaces")
            .await
    }

    /// One namespace by id (`name` is for errors).
    pub async fn get_namespace(&self, id: &str, name: &str) -> Result<Namespace> {
        self.call(
            Method::GET,
            "GetNamespace",
            name,
            self.url(&["namespaces", id]),
            None,
        )
        .await
    }

    /// Creates a namespace in the project.
    pub async fn create_namespace(
        &self,
        name: &str,
        description: &str,
        is_public: bool,
    ) -> Result<Namespace> {
        let body = serde_json::json!({
            "name": name,
            "description": description,
            "project_id": self.project_id,
            "is_public": is_public,
        });
        self.call(
            Method::POST,
            "CreateNamespace",
            name,
            self.url(&["namespaces"]),
            Some(&body),
        )
        .await
    }

    /// Sets whether a namespace is public.
    pub async fn update_namespace(
        &self,
        id: &str,
        name: &str,
        is_public: bool,
    ) -> Result<Namespace> {
        let body = serde_json::json!({ "is_public": is_public });
        self.call(
            Method::PATCH,
            "UpdateNamespace",
            name,
            self.url(&["namespaces", id]),
            Some(&body),
        )
        .await
    }

    /// The images of a namespace (`name` is for errors).
    pub async fn list_images(&self, namespace_id: &str, name: &str) -> Result<Vec<Image>> {
        let mut url = self.url(&["images"]);
        url.query_pairs_mut()
            .append_pair("namespace_id", namespace_id)
            .append_pair("order_by", "name_asc");
        self.list_all("ListImages", name, url, "images").await
    }

    /// The image `image` of a namespace, if any (`GET images?name=`); `repository` is for
    /// errors.
    pub async fn find_image(
        &self,
        namespace_id: &str,
        image: &str,
        repository: &str,
    ) -> Result<Option<Image>> {
        let mut url = self.url(&["images"]);
        url.query_pairs_mut()
            .append_pair("namespace_id", namespace_id)
            .append_pair("name", image);
        let all: Vec<Image> = self
            .list_all("ListImages", repository, url, "images")
            .await?;
        Ok(all.into_iter().find(|i| i.name == image))
    }

    /// Deletes an image and all its tags.
    pub async fn delete_image(&self, id: &str, repository: &str) -> Result<()> {
        let _: Value = self
            .call(
                Method::DELETE,
                "DeleteImage",
                repository,
                self.url(&["images", id]),
                None,
            )
            .await?;
        Ok(())
    }

    /// The tags of an image.
    pub async fn list_tags(&self, image_id: &str, repository: &str) -> Result<Vec<Tag>> {
        let mut url = self.url(&["images", image_id, "tags"]);
        url.query_pairs_mut().append_pair("order_by", "name_asc");
        self.list_all("ListTags", repository, url, "tags").await
    }

    /// Deletes a tag; `force` deletes it even when other tags share its digest.
    pub async fn delete_tag(&self, id: &str, target: &str, force: bool) -> Result<()> {
        let mut url = self.url(&["tags", id]);
        if force {
            url.query_pairs_mut().append_pair("force", "true");
        }
        let _: Value = self
            .call(Method::DELETE, "DeleteTag", target, url, None)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(base: &str) -> ScalewayApi {
        ScalewayApi::new(
            base,
            "fr-par",
            "p",
            Secret::new("s3cret"),
            Origin::new("scaleway", "h"),
            RetryConfig::none(),
        )
        .unwrap()
    }

    #[test]
    fn urls_are_built_from_segments() {
        let a = api("https://api.scaleway.com");
        assert_eq!(
            a.url(&["namespaces", "id/with?odd"]).as_str(),
            "https://api.scaleway.com/registry/v1/regions/fr-par/namespaces/id%2Fwith%3Fodd"
        );
        let a = api("http://127.0.0.1:9/base/");
        assert_eq!(
            a.url(&["images"]).as_str(),
            "http://127.0.0.1:9/base/registry/v1/regions/fr-par/images"
        );
        assert!(ScalewayApi::new(
            "ftp://x",
            "fr-par",
            "p",
            Secret::new("s"),
            Origin::new("scaleway", "l"),
            RetryConfig::none()
        )
        .is_err());
        assert!(!format!("{a:?}").contains("s3cret"));
    }

    #[test]
    fn error_bodies_are_described() {
        let b: ErrorBody = serde_json::from_str(
            r#"{"message":"resource is not found","type":"not_found","resource":"namespace","resource_id":"42"}"#,
        )
        .unwrap();
        assert_eq!(b.error_type, "not_found");
        assert_eq!(
            b.describe("x"),
            "resource is not found (resource namespace 42)"
        );
        let b: ErrorBody =
            serde_json::from_str(r#"{"message":null,"details":[{"argument_name":"name"}]}"#)
                .unwrap();
        assert!(b.describe("fallback").starts_with("fallback "));
        let nulls: Namespace = serde_json::from_str(
            r#"{"id":"1","name":"n","description":null,"status":null,"is_public":null,"image_count":null}"#,
        )
        .unwrap();
        assert_eq!(nulls.status, "");
        assert!(!nulls.is_public);
    }
}
