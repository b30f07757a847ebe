//! The Artifact Registry REST calls of this crate (API v1) over the kit's [`RestClient`],
//! errors read by [`crate::error`]: repositories created (the operation polled to
//! completion), read, patched with an update mask and listed; docker images listed; one
//! version deleted by digest (the operation polled); one tag deleted. Paths are built segment
//! by segment (a package with `/` is sent as `%2F`, as the API requires); a version is only
//! ever addressed by a parsed [`Digest`], and no call here addresses a whole package.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use mirror_core::kit::provider::{Kind, Origin, Paging, RestClient};
use mirror_core::Digest;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{self, code_name, Result};

/// The public endpoint of the API.
pub const DEFAULT_ENDPOINT: &str = "https://artifactregistry.googleapis.com";
/// Page size asked for listings (the API may return fewer).
pub const PAGE_SIZE: u32 = 500;
/// Default time an operation is waited for.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// An Artifact Registry repository, with the fields this crate reads and writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Repository {
    /// `projects/P/locations/L/repositories/ID`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `DOCKER` for the repositories of this crate.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub format: String,
    /// `STANDARD_REPOSITORY`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// A description for people.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Cleanup policies by id (as JSON: policies of others round-trip untouched).
    pub cleanup_policies: BTreeMap<String, Value>,
    /// When true, cleanup policies only report what they would delete.
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
#[serde(rename_all = "camelCase", default)]
pub struct DockerImage {
    /// `projects/P/locations/L/repositories/ID/dockerImages/<package, escaped>@sha256:…`.
    pub name: String,
    /// `<location>-docker.pkg.dev/<project path>/<repository id>/<package>@sha256:…`.
    pub uri: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its size (an int64 as a string, as the API sends them).
    pub image_size_bytes: Option<String>,
    /// When it was uploaded (RFC 3339).
    pub upload_time: Option<String>,
    /// The manifest media type.
    pub media_type: Option<String>,
}

impl DockerImage {
    /// The (package, digest) of the image: from `uri` (after `<project path>/<repository
    /// id>/`), else from `name`.
    pub fn package_and_digest(&self, project_path: &str, id: &str) -> Option<(String, String)> {
        let split = |image: &str| {
            let (p, d) = image.rsplit_once('@')?;
            Some((p.to_string(), d.to_string()))
        };
        let from_uri = || {
            let (_, path) = self.uri.split_once('/')?;
            let rest = path.strip_prefix(project_path)?.strip_prefix('/')?;
            split(rest.strip_prefix(id)?.strip_prefix('/')?)
        };
        let from_name = || split(&percent_decode(self.name.split_once("/dockerImages/")?.1));
        from_uri().or_else(from_name)
    }
}

/// A long-running operation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Operation {
    /// `projects/P/locations/L/operations/OP`.
    pub name: String,
    /// Finished.
    pub done: bool,
    /// The `google.rpc.Status` it finished with, when it failed: its `code` and `message`.
    pub error: Option<Value>,
    /// The result, when it finished without error.
    pub response: Option<Value>,
}

/// What `create_repository` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// The repository was created (as the operation's response describes it).
    Created(Repository),
    /// It existed already (`ALREADY_EXISTS`).
    Exists,
}

/// The Artifact Registry API of one project and location.
#[derive(Debug, Clone)]
pub struct ArApi {
    rest: RestClient,
    project: String,
    location: String,
    operation_timeout: Duration,
}

impl ArApi {
    /// The API of `project` (its id; `example.com:p` for domain-scoped projects) and
    /// `location` through `rest` (its base the endpoint, its auth the access tokens).
    pub fn new(rest: RestClient, project: &str, location: &str, timeout: Duration) -> Self {
        let (project, location) = (project.to_string(), location.to_string());
        let operation_timeout = timeout;
        ArApi {
            rest,
            project,
            location,
            operation_timeout,
        }
    }

    /// Who answers, for errors.
    pub fn origin(&self) -> &Origin {
        self.rest.origin()
    }

    /// `<endpoint>/v1/<segments…>`, each segment escaped on its own.
    fn url(&self, segments: &[&str]) -> url::Url {
        self.rest.url(&[&["v1"], segments].concat())
    }

    /// The URL of repository `id` (the collection when empty), then `tail`.
    fn repository_url(&self, id: &str, tail: &[&str]) -> url::Url {
        let (p, l) = (self.project.as_str(), self.location.as_str());
        let mut s = vec!["projects", p, "locations", l, "repositories"];
        s.extend((!id.is_empty()).then_some(id));
        self.url(&[&s, tail].concat())
    }

    fn json(&self, op: &'static str, id: &str, body: &Repository) -> Result<Value> {
        serde_json::to_value(body).map_err(|e| self.origin().protocol(op, id, e.to_string()))
    }

    /// Polls `operation` until it is done; its `response` (if any) on success.
    pub async fn wait_operation(
        &self,
        operation: Operation,
        op: &'static str,
        target: &str,
    ) -> Result<Option<Value>> {
        let name = operation.name.clone();
        let first = Mutex::new(Some(operation));
        let check = || async {
            let current: Operation = match first.lock().ok().and_then(|mut f| f.take()) {
                Some(current) => current,
                None => {
                    let url = self.url(&name.split('/').collect::<Vec<_>>());
                    let get = self
                        .rest
                        .call_as("operations.get", target, Method::GET, url, None);
                    get.await?
                }
            };
            let error = current.error.unwrap_or_default();
            match (current.done, error["code"].as_i64().unwrap_or(0)) {
                (true, 0) => Ok(Some(current.response)),
                (true, code) => {
                    let message = error["message"].as_str().unwrap_or("");
                    let origin = self.origin();
                    let e = error::operation(
                        origin,
                        op,
                        target,
                        &current.name,
                        code_name(code),
                        message,
                    );
                    Err(e)
                }
                (false, _) if current.name.is_empty() => {
                    let why = "an unfinished operation without a name";
                    Err(self.origin().protocol(op, target, why))
                }
                _ => Ok(None),
            }
        };
        let (first_poll, max_poll) = (Duration::from_millis(100), Duration::from_secs(2));
        let timeout = self.operation_timeout;
        let done = self.rest.poll(timeout, first_poll, max_poll, check).await?;
        done.ok_or_else(|| {
            let why = format!("not done after {}s", timeout.as_secs());
            error::operation(self.origin(), op, target, &name, "DEADLINE_EXCEEDED", &why)
        })
    }

    /// Creates a repository and waits for the operation; `ALREADY_EXISTS` is
    /// [`Created::Exists`].
    pub async fn create_repository(&self, id: &str, body: &Repository) -> Result<Created> {
        const OP: &str = "repositories.create";
        let mut url = self.repository_url("", &[]);
        url.query_pairs_mut().append_pair("repositoryId", id);
        let body = self.json(OP, id, body)?;
        let started = self.rest.call_as(OP, id, Method::POST, url, Some(&body));
        let done = match started.await {
            Ok(op) => self.wait_operation(op, OP, id).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(response) => {
                let created = response.and_then(|r| serde_json::from_value(r).ok());
                Ok(Created::Created(created.unwrap_or_default()))
            }
            Err(e) if e.kind() == Kind::AlreadyExists => Ok(Created::Exists),
            Err(e) => Err(e),
        }
    }

    /// A repository; `None` when it does not exist.
    pub async fn get_repository(&self, id: &str) -> Result<Option<Repository>> {
        let url = self.repository_url(id, &[]);
        match self
            .rest
            .call_as("repositories.get", id, Method::GET, url, None)
            .await
        {
            Err(e) if matches!(e.kind(), Kind::NotFound(_)) => Ok(None),
            other => other.map(Some),
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
        let mut url = self.repository_url(id, &[]);
        url.query_pairs_mut()
            .append_pair("updateMask", &mask.join(","));
        let body = self.json(OP, id, body)?;
        self.rest
            .call_as(OP, id, Method::PATCH, url, Some(&body))
            .await
    }

    /// Every repository of the location (all pages).
    pub async fn list_repositories(&self) -> Result<Vec<Repository>> {
        let (url, paging) = (
            self.repository_url("", &[]),
            Paging::Token {
                page_size: PAGE_SIZE,
            },
        );
        self.rest
            .list("repositories.list", "*", url, "repositories", paging)
            .await
    }

    /// Every image of a repository (all pages); a repository that does not exist is a
    /// `NotFound` error.
    pub async fn docker_images(&self, id: &str) -> Result<Vec<DockerImage>> {
        let url = self.repository_url(id, &["dockerImages"]);
        let paging = Paging::Token {
            page_size: PAGE_SIZE,
        };
        self.rest
            .list("dockerImages.list", id, url, "dockerImages", paging)
            .await
    }

    /// Deletes one version (by digest) of one package and waits for the operation. With
    /// `force`, the version's tags go with it; without, a tagged version is refused
    /// (`FAILED_PRECONDITION`). `target` names the image in errors.
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
            return Err(self.origin().protocol(OP, target, "empty package name"));
        }
        let version = digest.to_string();
        let mut url = self.repository_url(id, &["packages", package, "versions", &version]);
        if force {
            url.query_pairs_mut().append_pair("force", "true");
        }
        let op = self
            .rest
            .call_as(OP, target, Method::DELETE, url, None)
            .await?;
        self.wait_operation(op, OP, target).await.map(|_| ())
    }

    /// Deletes one tag of one package (`tags.delete`; the version stays). `target` names it
    /// in errors.
    pub async fn delete_tag(&self, id: &str, package: &str, tag: &str, target: &str) -> Result<()> {
        const OP: &str = "tags.delete";
        if package.is_empty() || tag.is_empty() {
            return Err(self.origin().protocol(OP, target, "empty package or tag"));
        }
        let url = self.repository_url(id, &["packages", package, "tags", tag]);
        self.rest
            .call(OP, target, Method::DELETE, url, None)
            .await
            .map(|_| ())
    }
}

/// `%XX` sequences decoded (others kept as they are), as Google escapes `/` in version names.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
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
        use std::sync::Arc;
        let creds = Arc::new(crate::credential::credentials(
            "gcp:h",
            Arc::new(crate::credential::StaticToken(
                crate::credential::AccessToken {
                    token: "t".into(),
                    expires_at: std::time::SystemTime::now(),
                },
            )),
        ));
        let rest = RestClient::new(
            "http://127.0.0.1:1/",
            "endpoint",
            Origin::new("gcp", "h"),
            Arc::new(mirror_core::kit::provider::BearerAuth(creds)),
            crate::error::DIALECT,
            "test",
        )
        .unwrap();
        let api = ArApi::new(rest, "example.com:proj-1", "us", DEFAULT_OPERATION_TIMEOUT);
        let d = Digest::sha256_of(b"x");
        let v = d.to_string();
        let url = api.repository_url("r", &["packages", "a/b", "versions", &v]);
        assert_eq!(
            url.path(),
            format!("/v1/projects/example.com:proj-1/locations/us/repositories/r/packages/a%2Fb/versions/{v}")
        );
    }
}
