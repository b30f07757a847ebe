//! The Artifact Registry REST calls of this crate (API v1), over the kit's [`RestClient`]
//! (bearer tokens of [`GcpCredentials`](crate::GcpCredentials), a refused token renewed once, retries with
//! `Retry-After`, every page), errors read by [`crate::error`].
//!
//! | method | call |
//! |---|---|
//! | [`ArApi::create_repository`] | `POST …/repositories?repositoryId=ID`, the operation polled to completion |
//! | [`ArApi::get_repository`], [`ArApi::patch_repository`] | `GET`, `PATCH …/repositories/ID?updateMask=…` |
//! | [`ArApi::list_repositories`], [`ArApi::docker_images`] | `GET …/repositories`, `GET …/repositories/ID/dockerImages` |
//! | [`ArApi::delete_version`] | `DELETE …/packages/PKG/versions/sha256:…?force=…`, the operation polled |
//! | [`ArApi::delete_tag`] | `DELETE …/packages/PKG/tags/TAG` |
//!
//! Paths are built segment by segment (a package with `/` is sent as `%2F`, as the API
//! requires); a version is only ever addressed by a parsed [`Digest`], and no call here
//! addresses a whole package.

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

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::with_capacity(b.len()), 0);
    while i < b.len() {
        let hex = |at: usize| b.get(at).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) if i + 2 < b.len() => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl DockerImage {
    /// The (package, digest) of the image: from `uri` (after `<project path>/<repository
    /// id>/`), else from `name`.
    pub fn package_and_digest(
        &self,
        project_path: &str,
        repository_id: &str,
    ) -> Option<(String, String)> {
        let from_uri = || {
            let (_, path) = self.uri.split_once('/')?;
            let rest = path.strip_prefix(project_path)?.strip_prefix('/')?;
            rest.strip_prefix(repository_id)?
                .strip_prefix('/')?
                .rsplit_once('@')
                .map(|(p, d)| (p.to_string(), d.to_string()))
        };
        let from_name = || {
            let image = percent_decode(self.name.split_once("/dockerImages/")?.1);
            image
                .rsplit_once('@')
                .map(|(p, d)| (p.to_string(), d.to_string()))
        };
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
    pub fn new(
        rest: RestClient,
        project: &str,
        location: &str,
        operation_timeout: Duration,
    ) -> Self {
        let (project, location) = (project.to_string(), location.to_string());
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
        let mut all = vec!["v1"];
        all.extend(segments);
        self.rest.url(&all)
    }

    fn repo_segments<'a>(&'a self, id: &'a str) -> Vec<&'a str> {
        let mut s = vec![
            "projects",
            self.project.as_str(),
            "locations",
            self.location.as_str(),
            "repositories",
        ];
        s.extend((!id.is_empty()).then_some(id));
        s
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
            let current = match first.lock().ok().and_then(|mut f| f.take()) {
                Some(current) => current,
                None => {
                    let url = self.url(&name.split('/').collect::<Vec<_>>());
                    self.rest
                        .call_as("operations.get", target, Method::GET, url, None)
                        .await?
                }
            };
            let Operation {
                name: op_name,
                done,
                error,
                response,
            } = current;
            match (done, error) {
                (true, Some(e)) if e["code"].as_i64().unwrap_or(0) != 0 => {
                    let (code, message) = (
                        code_name(e["code"].as_i64().unwrap_or(2)),
                        e["message"].as_str().unwrap_or(""),
                    );
                    Err(error::operation(
                        self.origin(),
                        op,
                        target,
                        &op_name,
                        code,
                        message,
                    ))
                }
                (true, _) => Ok(Some(response)),
                (false, _) if op_name.is_empty() => Err(self.origin().protocol(
                    op,
                    target,
                    "an unfinished operation without a name",
                )),
                _ => Ok(None),
            }
        };
        let (first_poll, max_poll) = (Duration::from_millis(100), Duration::from_secs(2));
        let done = self
            .rest
            .poll(self.operation_timeout, first_poll, max_poll, check)
            .await?;
        let timeout = || format!("not done after {}s", self.operation_timeout.as_secs());
        done.ok_or_else(|| {
            error::operation(
                self.origin(),
                op,
                target,
                &name,
                "DEADLINE_EXCEEDED",
                &timeout(),
            )
        })
    }

    /// Creates a repository and waits for the operation; `ALREADY_EXISTS` is
    /// [`Created::Exists`].
    pub async fn create_repository(&self, id: &str, body: &Repository) -> Result<Created> {
        const OP: &str = "repositories.create";
        let mut url = self.url(&self.repo_segments(""));
        url.query_pairs_mut().append_pair("repositoryId", id);
        let body = serde_json::to_value(body)
            .map_err(|e| self.origin().protocol(OP, id, e.to_string()))?;
        let started = self
            .rest
            .call_as(OP, id, Method::POST, url, Some(&body))
            .await;
        let done = match started {
            Ok(op) => self.wait_operation(op, OP, id).await,
            Err(e) => Err(e),
        };
        match done {
            Ok(response) => Ok(Created::Created(
                response
                    .and_then(|r| serde_json::from_value(r).ok())
                    .unwrap_or_default(),
            )),
            Err(e) if e.kind() == Kind::AlreadyExists => Ok(Created::Exists),
            Err(e) => Err(e),
        }
    }

    /// A repository; `None` when it does not exist.
    pub async fn get_repository(&self, id: &str) -> Result<Option<Repository>> {
        let url = self.url(&self.repo_segments(id));
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
        let mut url = self.url(&self.repo_segments(id));
        url.query_pairs_mut()
            .append_pair("updateMask", &mask.join(","));
        let body = serde_json::to_value(body)
            .map_err(|e| self.origin().protocol(OP, id, e.to_string()))?;
        self.rest
            .call_as(OP, id, Method::PATCH, url, Some(&body))
            .await
    }

    /// Every repository of the location (all pages).
    pub async fn list_repositories(&self) -> Result<Vec<Repository>> {
        let (url, paging) = (
            self.url(&self.repo_segments("")),
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
        let mut segments = self.repo_segments(id);
        segments.push("dockerImages");
        let (url, paging) = (
            self.url(&segments),
            Paging::Token {
                page_size: PAGE_SIZE,
            },
        );
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
        let mut segments = self.repo_segments(id);
        segments.extend(["packages", package, "versions", &version]);
        let mut url = self.url(&segments);
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
        let mut segments = self.repo_segments(id);
        segments.extend(["packages", package, "tags", tag]);
        let url = self.url(&segments);
        self.rest
            .call(OP, target, Method::DELETE, url, None)
            .await
            .map(|_| ())
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
        let mut segs = api.repo_segments("r");
        segs.extend(["packages", "a/b", "versions", &v]);
        let url = api.url(&segs);
        assert_eq!(
            url.path(),
            format!("/v1/projects/example.com:proj-1/locations/us/repositories/r/packages/a%2Fb/versions/{v}")
        );
    }
}
