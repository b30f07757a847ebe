//! The Artifact Registry REST calls this crate makes (API v1), with errors read in
//! [`crate::error`].
//!
//! | method | call |
//! |---|---|
//! | [`ArApi::create_repository`] | `POST /v1/projects/P/locations/L/repositories?repositoryId=ID`, then the operation polled to completion |
//! | [`ArApi::get_repository`] | `GET /v1/projects/P/locations/L/repositories/ID` |
//! | [`ArApi::patch_repository`] | `PATCH /v1/projects/P/locations/L/repositories/ID?updateMask=…` |
//! | [`ArApi::list_repositories`] | `GET /v1/projects/P/locations/L/repositories` (every page) |
//! | [`ArApi::docker_images`] | `GET /v1/projects/P/locations/L/repositories/ID/dockerImages` (every page) |
//! | [`ArApi::delete_version`] | `DELETE /v1/projects/P/locations/L/repositories/ID/packages/PKG/versions/sha256:…?force=…`, then the operation polled |
//! | [`ArApi::wait_operation`] | `GET /v1/projects/P/locations/L/operations/OP` until `done` |
//!
//! Every call carries the access token of [`GcpCredentials`] as a bearer token; an
//! `UNAUTHENTICATED` answer invalidates it and the call is sent once more. Transport errors,
//! `RESOURCE_EXHAUSTED` (429, honouring `Retry-After`), `ABORTED` and 5xx answers are retried
//! with the backoff of the [`RetryConfig`]. Resource names in paths are built segment by
//! segment, so a package name with `/` is sent escaped (`%2F`), as the API requires; a version
//! is only ever addressed by a parsed [`Digest`], and no call here addresses a whole package.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mirror_core::provider::Origin;
use mirror_core::retry::{Poll, RetryConfig};
use mirror_core::store::http::{read_capped, Capped, MAX_CONTROL_PLANE_BYTES};
use mirror_core::Digest;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use crate::credential::GcpCredentials;
use crate::error::{self, canonical, code_name, kind, Error, Kind, Result};

/// The public endpoint of the API.
pub const DEFAULT_ENDPOINT: &str = "https://artifactregistry.googleapis.com";
/// Page size asked for listings (the API may return fewer).
pub const PAGE_SIZE: u32 = 500;
/// First wait between two polls of an operation (doubling up to [`MAX_POLL_INTERVAL`]).
pub const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Longest wait between two polls of an operation.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(2);
/// Default time an operation is waited for.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeout of one API request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An Artifact Registry repository, with the fields this crate reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    /// `projects/P/locations/L/repositories/ID`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `DOCKER` for the repositories of this crate.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
    /// `STANDARD_REPOSITORY`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// A description for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Cleanup policies by id (kept as JSON: policies this crate does not own round-trip
    /// untouched).
    #[serde(default)]
    pub cleanup_policies: BTreeMap<String, Value>,
    /// When true, cleanup policies only report what they would delete.
    #[serde(default)]
    pub cleanup_policy_dry_run: bool,
}

impl Repository {
    /// The repository id (the last segment of the name).
    pub fn id(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or("")
    }
}

/// One image (a version of a package) as `dockerImages.list` returns it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerImage {
    /// `projects/P/locations/L/repositories/ID/dockerImages/<package, escaped>@sha256:…`.
    #[serde(default)]
    pub name: String,
    /// `<location>-docker.pkg.dev/<project path>/<repository id>/<package>@sha256:…`.
    #[serde(default)]
    pub uri: String,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its size (an int64 as a string, as the API sends them).
    #[serde(default)]
    pub image_size_bytes: Option<String>,
    /// When it was uploaded (RFC 3339).
    #[serde(default)]
    pub upload_time: Option<String>,
    /// The manifest media type.
    #[serde(default)]
    pub media_type: Option<String>,
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl DockerImage {
    /// The (package, digest) of the image: read from `uri` (the part after
    /// `<project path>/<repository id>/`), else from `name`.
    pub fn package_and_digest(
        &self,
        project_path: &str,
        repository_id: &str,
    ) -> Option<(String, String)> {
        let from_uri = || {
            let (_, path) = self.uri.split_once('/')?;
            let rest = path
                .strip_prefix(project_path)?
                .strip_prefix('/')?
                .strip_prefix(repository_id)?
                .strip_prefix('/')?;
            let (package, digest) = rest.rsplit_once('@')?;
            Some((package.to_string(), digest.to_string()))
        };
        let from_name = || {
            let (_, image) = self.name.split_once("/dockerImages/")?;
            let image = percent_decode(image);
            let (package, digest) = image.rsplit_once('@')?;
            Some((package.to_string(), digest.to_string()))
        };
        from_uri().or_else(from_name)
    }
}

/// A long-running operation.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Operation {
    /// `projects/P/locations/L/operations/OP`.
    #[serde(default)]
    pub name: String,
    /// Finished.
    #[serde(default)]
    pub done: bool,
    /// The error, when it finished with one.
    #[serde(default)]
    pub error: Option<Status>,
    /// The result, when it finished without error.
    #[serde(default)]
    pub response: Option<Value>,
}

/// A `google.rpc.Status`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Status {
    /// The `google.rpc.Code`.
    #[serde(default)]
    pub code: i64,
    /// The message.
    #[serde(default)]
    pub message: String,
}

/// What `create_repository` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The repository was created (as the operation's response describes it).
    Created(Repository),
    /// It existed already (`ALREADY_EXISTS`).
    Exists,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    error: Option<GoogleErrorBody>,
}

#[derive(Deserialize)]
struct GoogleErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// The Artifact Registry API of one project and location.
#[derive(Debug, Clone)]
pub struct ArApi {
    http: reqwest::Client,
    endpoint: Url,
    project: String,
    location: String,
    credentials: Arc<GcpCredentials>,
    origin: Origin,
    retry: RetryConfig,
    operation_timeout: Duration,
    request_timeout: Duration,
}

impl ArApi {
    /// An API client for `project` (its id, `example.com:p` for domain-scoped projects) and
    /// `location`, at `endpoint`, authenticated by `credentials`; `origin` (`gcp:<host>`)
    /// names the registry in errors.
    pub fn new(
        endpoint: Url,
        project: String,
        location: String,
        credentials: Arc<GcpCredentials>,
        origin: Origin,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .user_agent(concat!(
                "mirror-core-provider-gcp/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(mirror_core::provider::config::DEFAULT_CONNECT_TIMEOUT)
            // A control plane's answers never redirect; following one would carry the
            // credentials header (`X-Auth-Token`, `Authorization`) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| origin.config(format!("HTTP client: {e}")))?;
        Ok(ArApi {
            http,
            endpoint,
            project,
            location,
            credentials,
            origin,
            retry: RetryConfig::default(),
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// Sets the retry policy of API calls.
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how long operations are waited for.
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Sets the timeout of one request.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the TCP connect timeout (default 15 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Result<Self> {
        self.http = reqwest::Client::builder()
            .user_agent(concat!(
                "mirror-core-provider-gcp/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(timeout)
            // A control plane's answers never redirect; following one would carry the
            // credentials header (`X-Auth-Token`, `Authorization`) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| self.origin.config(format!("HTTP client: {e}")))?;
        Ok(self)
    }

    /// `gcp:<docker host>`.
    pub fn label(&self) -> &str {
        &self.origin.registry
    }

    /// Who answers, for errors.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// `projects/P/locations/L`.
    pub fn parent(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.location)
    }

    /// `projects/P/locations/L/repositories/ID`.
    pub fn repository_resource(&self, id: &str) -> String {
        format!("{}/repositories/{id}", self.parent())
    }

    /// `<endpoint>/v1/<segments…>`, each segment escaped on its own.
    fn url(&self, segments: &[&str]) -> Result<Url> {
        let mut url = self.endpoint.clone();
        {
            let mut path = url.path_segments_mut().map_err(|_| {
                self.origin
                    .config(format!("endpoint {} cannot be a base", self.endpoint))
            })?;
            path.pop_if_empty().push("v1");
            for s in segments {
                path.push(s);
            }
        }
        Ok(url)
    }

    fn repo_segments<'a>(&'a self, id: &'a str) -> Vec<&'a str> {
        vec![
            "projects",
            &self.project,
            "locations",
            &self.location,
            "repositories",
            id,
        ]
    }

    async fn read(&self, op: &'static str, target: &str, resp: reqwest::Response) -> Result<Value> {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_capped(resp, MAX_CONTROL_PLANE_BYTES)
            .await
            .map_err(|e| match e {
                Capped::Transport(e) => self.origin.transport(op, target, e),
                _ => self.protocol(
                    op,
                    target,
                    format!("an answer of more than {MAX_CONTROL_PLANE_BYTES} bytes"),
                ),
            })?;
        if status.is_success() {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_slice(&body)
                .map_err(|e| self.protocol(op, target, format!("the answer is not JSON: {e}")));
        }
        let parsed = serde_json::from_slice::<GoogleError>(&body)
            .ok()
            .and_then(|g| g.error);
        let (status_name, message) = match parsed {
            Some(e) => match canonical(&e.status) {
                Some(c) => (c, e.message),
                None if e.status.is_empty() => (canonical_of_http(status), e.message),
                None => (
                    canonical_of_http(status),
                    format!("{}: {}", e.status, e.message),
                ),
            },
            None => (
                canonical_of_http(status),
                String::from_utf8_lossy(&body).chars().take(300).collect(),
            ),
        };
        Err(error::api(
            &self.origin,
            op,
            target,
            status.as_u16(),
            status_name,
            message,
            retry_after,
        ))
    }

    /// One attempt: the request with the current token; an `UNAUTHENTICATED` answer
    /// invalidates the token and the request is sent once more with a new one.
    async fn attempt(
        &self,
        op: &'static str,
        target: &str,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut reauthenticated = false;
        loop {
            let token = self.credentials.token().await?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.token.expose())
                .timeout(self.request_timeout);
            if let Some(b) = body {
                req = req.json(b);
            }
            let result = match req.send().await {
                Ok(resp) => self.read(op, target, resp).await,
                Err(e) => Err(self.origin.transport(op, target, e)),
            };
            match result {
                Err(e) if kind(&e) == Kind::Unauthenticated && !reauthenticated => {
                    reauthenticated = true;
                    self.credentials.invalidate();
                }
                other => return other,
            }
        }
    }

    /// One API call with authentication, re-authentication and retries (see the module docs).
    async fn call(
        &self,
        op: &'static str,
        target: &str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value> {
        self.retry
            .run_with(
                || self.attempt(op, target, &method, &url, body),
                |e: &Error| {
                    let verdict = e.retry();
                    if verdict != mirror_core::retry::Retry::No {
                        tracing::debug!(operation = op, target, error = %e, "retrying");
                    }
                    verdict
                },
            )
            .await
    }

    fn protocol(&self, op: &'static str, target: &str, reason: impl Into<String>) -> Error {
        self.origin.protocol(op, target, reason)
    }

    /// Polls `operation` until it is done; its `response` (if any) on success.
    pub async fn wait_operation(
        &self,
        operation: Operation,
        op: &'static str,
        target: &str,
    ) -> Result<Option<Value>> {
        let name = operation.name.clone();
        let first = std::sync::Mutex::new(Some(operation));
        let done = Poll::until(self.operation_timeout)
            .every(FIRST_POLL_INTERVAL)
            .at_most(MAX_POLL_INTERVAL)
            .run(|| async {
                let known = first.lock().ok().and_then(|mut f| f.take());
                let current = match known {
                    Some(current) => current,
                    None => {
                        let segments: Vec<&str> = name.split('/').collect();
                        let v = self
                            .call(
                                "operations.get",
                                target,
                                Method::GET,
                                self.url(&segments)?,
                                None,
                            )
                            .await?;
                        serde_json::from_value::<Operation>(v).map_err(|e| {
                            self.protocol(op, target, format!("unreadable operation: {e}"))
                        })?
                    }
                };
                if current.done {
                    return match current.error {
                        Some(status) if status.code != 0 => Err(error::operation(
                            &self.origin,
                            op,
                            target,
                            &current.name,
                            code_name(status.code),
                            &status.message,
                        )),
                        _ => Ok(Some(current.response)),
                    };
                }
                if current.name.is_empty() {
                    return Err(self.protocol(
                        op,
                        target,
                        "an unfinished operation without a name",
                    ));
                }
                Ok(None)
            })
            .await?;
        done.ok_or_else(|| {
            error::operation(
                &self.origin,
                op,
                target,
                &name,
                "DEADLINE_EXCEEDED",
                &format!("not done after {}s", self.operation_timeout.as_secs()),
            )
        })
    }

    /// Creates a repository (`body` is the Repository resource) and waits for the operation.
    /// `ALREADY_EXISTS` is [`Created::Exists`].
    pub async fn create_repository(&self, id: &str, body: &Repository) -> Result<Created> {
        const OP: &str = "repositories.create";
        let mut url = self.url(&[
            "projects",
            &self.project,
            "locations",
            &self.location,
            "repositories",
        ])?;
        url.query_pairs_mut().append_pair("repositoryId", id);
        let body = serde_json::to_value(body)
            .map_err(|e| self.origin.config(format!("repository {id}: {e}")))?;
        let answer = match self.call(OP, id, Method::POST, url, Some(&body)).await {
            Ok(v) => v,
            Err(e) if kind(&e) == Kind::AlreadyExists => return Ok(Created::Exists),
            Err(e) => return Err(e),
        };
        let op: Operation = serde_json::from_value(answer)
            .map_err(|e| self.protocol(OP, id, format!("unreadable operation: {e}")))?;
        match self.wait_operation(op, OP, id).await {
            Ok(response) => Ok(Created::Created(
                response
                    .and_then(|r| serde_json::from_value(r).ok())
                    .unwrap_or_default(),
            )),
            Err(e) if kind(&e) == Kind::AlreadyExists => Ok(Created::Exists),
            Err(e) => Err(e),
        }
    }

    /// A repository; `None` when it does not exist.
    pub async fn get_repository(&self, id: &str) -> Result<Option<Repository>> {
        const OP: &str = "repositories.get";
        let url = self.url(&self.repo_segments(id))?;
        match self.call(OP, id, Method::GET, url, None).await {
            Ok(v) => serde_json::from_value(v)
                .map(Some)
                .map_err(|e| self.protocol(OP, id, format!("unreadable repository: {e}"))),
            Err(e) if kind(&e) == Kind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Updates the fields of `mask` (`labels`, `cleanupPolicies`, `cleanupPolicyDryRun`).
    pub async fn patch_repository(
        &self,
        id: &str,
        mask: &[&str],
        body: &Repository,
    ) -> Result<Repository> {
        const OP: &str = "repositories.patch";
        let mut url = self.url(&self.repo_segments(id))?;
        url.query_pairs_mut()
            .append_pair("updateMask", &mask.join(","));
        let body = serde_json::to_value(body)
            .map_err(|e| self.origin.config(format!("repository {id}: {e}")))?;
        let v = self.call(OP, id, Method::PATCH, url, Some(&body)).await?;
        serde_json::from_value(v)
            .map_err(|e| self.protocol(OP, id, format!("unreadable repository: {e}")))
    }

    /// Every repository of the location (all pages).
    pub async fn list_repositories(&self) -> Result<Vec<Repository>> {
        const OP: &str = "repositories.list";
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            repositories: Vec<Repository>,
            #[serde(default)]
            next_page_token: String,
        }
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut url = self.url(&[
                "projects",
                &self.project,
                "locations",
                &self.location,
                "repositories",
            ])?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("pageSize", &PAGE_SIZE.to_string());
                if !token.is_empty() {
                    q.append_pair("pageToken", &token);
                }
            }
            let v = self.call(OP, "*", Method::GET, url, None).await?;
            let page: Page = serde_json::from_value(v)
                .map_err(|e| self.protocol(OP, "*", format!("unreadable page: {e}")))?;
            out.extend(page.repositories);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            if page.next_page_token == token {
                return Err(self.protocol(OP, "*", "the same page token twice"));
            }
            token = page.next_page_token;
        }
    }

    /// Every image of a repository (all pages). A repository that does not exist is an
    /// error of kind [`Kind::NotFound`].
    pub async fn docker_images(&self, id: &str) -> Result<Vec<DockerImage>> {
        const OP: &str = "dockerImages.list";
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            docker_images: Vec<DockerImage>,
            #[serde(default)]
            next_page_token: String,
        }
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let mut segments = self.repo_segments(id);
            segments.push("dockerImages");
            let mut url = self.url(&segments)?;
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("pageSize", &PAGE_SIZE.to_string());
                if !token.is_empty() {
                    q.append_pair("pageToken", &token);
                }
            }
            let v = self.call(OP, id, Method::GET, url, None).await?;
            let page: Page = serde_json::from_value(v)
                .map_err(|e| self.protocol(OP, id, format!("unreadable page: {e}")))?;
            out.extend(page.docker_images);
            if page.next_page_token.is_empty() {
                return Ok(out);
            }
            if page.next_page_token == token {
                return Err(self.protocol(OP, id, "the same page token twice"));
            }
            token = page.next_page_token;
        }
    }

    /// Deletes one version (by digest) of one package and waits for the operation. With
    /// `force`, the version's tags are deleted with it; without, a tagged version is refused
    /// (`FAILED_PRECONDITION`). `target` names the image in errors
    /// (`<project path>/<id>/<package>@<digest>`).
    pub async fn delete_version(
        &self,
        id: &str,
        package: &str,
        digest: &Digest,
        force: bool,
        target: &str,
    ) -> Result<()> {
        const OP: &str = "versions.delete";
        if package.is_empty() {
            return Err(self.origin.config(format!("{target}: empty package name")));
        }
        let version = digest.to_string();
        let mut segments = self.repo_segments(id);
        segments.extend(["packages", package, "versions", &version]);
        let mut url = self.url(&segments)?;
        if force {
            url.query_pairs_mut().append_pair("force", "true");
        }
        let v = self.call(OP, target, Method::DELETE, url, None).await?;
        let op: Operation = serde_json::from_value(v)
            .map_err(|e| self.protocol(OP, target, format!("unreadable operation: {e}")))?;
        self.wait_operation(op, OP, target).await.map(|_| ())
    }
}

impl ArApi {
    /// Deletes one tag of one package (`tags.delete`; the version stays). `target` names it
    /// in errors (`<project path>/<id>/<package>:<tag>`).
    pub async fn delete_tag(&self, id: &str, package: &str, tag: &str, target: &str) -> Result<()> {
        const OP: &str = "tags.delete";
        if package.is_empty() || tag.is_empty() {
            return Err(self
                .origin
                .config(format!("{target}: empty package or tag")));
        }
        let mut segments = self.repo_segments(id);
        segments.extend(["packages", package, "tags", tag]);
        let url = self.url(&segments)?;
        self.call(OP, target, Method::DELETE, url, None)
            .await
            .map(|_| ())
    }
}

/// The canonical status Google uses for an HTTP status, for answers without a body.
fn canonical_of_http(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if s >= 500 => "INTERNAL",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_name_their_package_and_digest() {
        let img = DockerImage {
            name: "projects/p/locations/l/repositories/r/dockerImages/a%2Fb@sha256:00".into(),
            uri: "l-docker.pkg.dev/example.com/p/r/a/b@sha256:00".into(),
            ..Default::default()
        };
        assert_eq!(
            img.package_and_digest("example.com/p", "r"),
            Some(("a/b".into(), "sha256:00".into()))
        );
        let no_uri = DockerImage {
            uri: String::new(),
            ..img.clone()
        };
        assert_eq!(
            no_uri.package_and_digest("p", "r"),
            Some(("a/b".into(), "sha256:00".into()))
        );
        assert_eq!(percent_decode("a%2fb%zz%"), "a/b%zz%");
    }

    #[test]
    fn urls_escape_packages_and_never_lose_the_version() {
        let creds = Arc::new(crate::credential::credentials(
            "gcp:h",
            Arc::new(crate::credential::StaticToken(
                crate::credential::AccessToken {
                    token: "t".into(),
                    expires_at: std::time::SystemTime::now(),
                },
            )),
        ));
        let api = ArApi::new(
            Url::parse("http://127.0.0.1:1/").unwrap(),
            "example.com:proj-1".into(),
            "us".into(),
            creds,
            Origin::new("gcp", "h"),
        )
        .unwrap();
        let d = Digest::sha256_of(b"x");
        let v = d.to_string();
        let mut segs = api.repo_segments("r");
        segs.extend(["packages", "a/b", "versions", &v]);
        let url = api.url(&segs).unwrap();
        assert_eq!(
            url.path(),
            format!("/v1/projects/example.com:proj-1/locations/us/repositories/r/packages/a%2Fb/versions/{v}")
        );
    }
}
