//! Scaleway Container Registry as a cluster's mirror registry: [`Scaleway`], the kit's
//! [`CloudRegistry`] over [`ScalewayPlane`].
//!
//! Each cluster gets one private namespace, `<prefix>-<cluster>-<project hash>`, created
//! through the registry API and waited for until it is `ready`; each repository scope is an
//! image in it (`svc-<service>`, `mirror`, `build-<service>`; see [`naming`]). The data plane
//! is `rg.<region>.scw.cloud` with user `nologin` and the secret key. Images are listed
//! through the images and tags APIs and deleted by deleting every tag naming the digest.
//! Scaleway has no retention policy and records no push times: run
//! [`Mirror::sweep`](mirror_core::Mirror::sweep) on a schedule; push times come from the
//! bookkeeping tags the library writes (a moved tag keeps its `created_at`: no age is guessed).
//!
//! ```no_run
//! # async fn demo() -> mirror_core::Result<()> {
//! use std::sync::Arc;
//! use mirror_core::{Mirror, Source};
//! use provider_scaleway::ScalewayBuilder;
//!
//! // SCW_SECRET_KEY, SCW_DEFAULT_PROJECT_ID and SCW_DEFAULT_REGION from the environment.
//! let scaleway = ScalewayBuilder::from_env().build()?;
//! let mirror = Mirror::builder(Arc::new(scaleway), "prod-eu").build()?;
//! let d = mirror.mirror("api", &Source::parse("nginx:1.27")?).await?;
//! println!("deploy {}", d.pull_reference); // rg.fr-par.scw.cloud/mirror-prod-eu-1a2b3c4d/svc-api@…
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod client;
pub mod config;
pub mod error;
pub mod naming;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use mirror_core::kit::provider::cloud::{CloudRegistry, ControlPlane, Deletion, ListedImage};
use mirror_core::kit::provider::{cloud::OncePerKey, naming::invalid, Kind};
use mirror_core::kit::retry::Poll;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::registry::Repository;
use mirror_core::{Digest, Error, ImageStore, RepositoryScope, RepositorySettings, Result};

pub use config::{factory, ScalewayBuilder, ScalewayConfigKey, ScalewayFactory};
pub use source::ScalewaySources;

use client::{Item, Namespace, ScalewayApi};

/// The provider name of this crate's errors and events.
pub const PROVIDER: &str = "scaleway";

/// The data-plane user name; the secret key is the password.
pub const DATA_PLANE_USER: &str = "nologin";

/// Scaleway Container Registry (one region and project). Build it with [`ScalewayBuilder`].
pub type Scaleway = CloudRegistry<ScalewayPlane>;

/// Scaleway's control plane (namespaces, images and tags APIs) and its settings.
#[derive(Debug)]
pub struct ScalewayPlane {
    api: ScalewayApi,
    data: RegistryClient,
    region: String,
    project_id: String,
    prefix: String,
    public: bool,
    namespace_timeout: Duration,
    poll_interval: Duration,
    /// Namespaces ensured once per process, one at a time.
    namespaces: OncePerKey,
}

/// A namespace status: `Some(true)` ready, `Some(false)` unusable, `None` being set up.
fn readiness(status: &str) -> Option<bool> {
    match status {
        "ready" => Some(true),
        "deleting" | "error" | "locked" => Some(false),
        _ => None,
    }
}

impl ScalewayPlane {
    /// The data-plane host (`rg.<region>.scw.cloud` or the override).
    pub fn host(&self) -> &str {
        self.data.registry()
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The project the namespaces live in.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The registry API client.
    pub fn api(&self) -> &ScalewayApi {
        &self.api
    }

    /// The namespace holding every repository of `cluster`.
    pub fn namespace_name(&self, cluster: &str) -> Result<String> {
        naming::namespace_name(&self.prefix, &self.project_id, cluster)
    }

    /// The description of a new namespace: the exact cluster id, when known.
    fn description(&self, cluster: Option<&str>) -> String {
        let Some(c) = cluster else {
            return "Mirror registry (managed by mirror-core)".to_string();
        };
        let c: String = (c.chars().map(|ch| if ch.is_control() { ' ' } else { ch }))
            .take(120)
            .collect();
        format!("Mirror registry of cluster {c} (managed by mirror-core)")
    }

    fn polls(&self, timeout: Duration) -> Poll {
        let max = Duration::from_secs(2).max(self.poll_interval);
        Poll::until(timeout).every(self.poll_interval).at_most(max)
    }

    /// Makes sure `namespace` exists in the project, has the configured visibility and is
    /// ready: looks it up, creates it when absent ("already exists": another deployer was
    /// faster, it is looked up again, four times at most), then polls it until `ready`.
    pub async fn ensure_namespace(&self, namespace: &str, cluster: Option<&str>) -> Result<()> {
        naming::validate_namespace(namespace).map_err(|reason| invalid(namespace, reason))?;
        let (api, public) = (&self.api, self.public);
        let ensure = || async {
            let description = self.description(cluster);
            let (ns, created) = match api.find_namespace(namespace).await? {
                Some(n) => (n, false),
                None => match api.create_namespace(namespace, &description, public).await {
                    Ok(n) => (n, true),
                    Err(e) if e.kind() == Kind::AlreadyExists => {
                        let lookup = self.polls(Duration::from_secs(3600)).checks(4);
                        let found = lookup.run(|| api.find_namespace(namespace)).await?;
                        let taken = || error::namespace_taken(api.origin(), namespace);
                        (found.ok_or_else(taken)?, false)
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            let ns = self.wait_ready(ns).await?;
            if !created && ns.is_public != public {
                tracing::info!(namespace, public, "changing the namespace's visibility");
                api.update_namespace(&ns.id, namespace, public).await?;
            }
            Ok(())
        };
        self.namespaces.run(namespace, true, ensure).await
    }

    /// Polls the namespace until it is `ready`; fails at once when it is unusable, and after
    /// the namespace timeout otherwise.
    async fn wait_ready(&self, ns: Namespace) -> Result<Namespace> {
        let (api, started) = (&self.api, tokio::time::Instant::now());
        let (id, name) = (ns.id.clone(), ns.name.clone());
        let (first, last) = (Mutex::new(Some(ns)), Mutex::new("unknown".to_string()));
        let check = || async {
            let ns = match first.lock().ok().and_then(|mut f| f.take()) {
                Some(ns) => ns,
                None => api.get_namespace(&id, &name).await?,
            };
            if let (Ok(mut l), false) = (last.lock(), ns.status.is_empty()) {
                l.clone_from(&ns.status);
            }
            let message = match (ns.status_message.as_str(), ns.status.as_str()) {
                ("", "deleting") => "it is being deleted; retry once it is gone",
                ("", "locked") => "Scaleway locked it; contact Scaleway support",
                ("", _) => "Scaleway reports an error; see the console",
                (m, _) => m,
            };
            match readiness(&ns.status) {
                Some(true) => Ok(Some(ns)),
                Some(false) => Err(error::namespace_state(
                    api.origin(),
                    &name,
                    &ns.status,
                    message,
                )),
                None => Ok(None),
            }
        };
        let ready = self.polls(self.namespace_timeout).run(check).await?;
        ready.ok_or_else(|| {
            let status = last.lock().map(|s| s.clone()).unwrap_or_default();
            error::namespace_timeout(api.origin(), &name, &status, started.elapsed()).into()
        })
    }

    /// The live tags of a repository with their digests; `None` when its namespace or image
    /// does not exist. Tags being deleted or still being written (no digest) are left out.
    async fn tags(&self, repository: &str) -> Result<Option<Vec<(Item, Digest)>>> {
        let (namespace, image) = naming::parse_repository(repository)?;
        let Some(ns) = self.api.find_namespace(namespace).await? else {
            return Ok(None);
        };
        let Some(img) = self.api.find_image(&ns.id, image, repository).await? else {
            return Ok(None);
        };
        let mut out = Vec::new();
        for t in self.api.list_tags(&img.id, repository).await? {
            if t.status == "deleting" || (t.digest.is_empty() && t.status != "ready") {
                continue;
            }
            let digest = Digest::parse(&t.digest).map_err(|e| {
                let (target, reason) = (format!("{repository}:{}", t.name), e.to_string());
                Error::from(self.api.origin().protocol("ListTags", target, reason))
            })?;
            out.push((t, digest));
        }
        Ok(Some(out))
    }
}

#[async_trait]
impl ControlPlane for ScalewayPlane {
    const PROVIDER: &'static str = PROVIDER;

    fn data_plane(&self) -> &RegistryClient {
        &self.data
    }

    fn repository_name(&self, scope: &RepositoryScope) -> Result<String> {
        naming::repository_name(&self.prefix, &self.project_id, scope)
    }

    fn check_repository(&self, name: &str) -> Result<()> {
        naming::check_repository(name)
    }

    /// `<namespace>/cache-<dockerfile id>-<build image>`: flat, in the cluster's namespace.
    fn cache_repository_name(&self, build: &Repository, dockerfile_id: &str) -> Result<String> {
        naming::cache_repository(build.name(), dockerfile_id)
    }

    /// Ensures the repository's namespace; the image itself appears on the first push.
    async fn create_repository(&self, repo: &Repository, _: &RepositorySettings) -> Result<bool> {
        let (namespace, _) = naming::parse_repository(repo.name())?;
        let cluster = repo.scope().map(|s| s.cluster());
        self.ensure_namespace(namespace, cluster).await?;
        Ok(false)
    }

    /// Every image of the cluster's namespace, as `<namespace>/<image>`.
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<String>> {
        let namespace = self.namespace_name(cluster)?;
        let Some(ns) = self.api.find_namespace(&namespace).await? else {
            return Ok(Vec::new());
        };
        let images = self.api.list_images(&ns.id, &namespace).await?;
        let live = images.into_iter().filter(|i| i.status != "deleting");
        Ok(live.map(|i| format!("{namespace}/{}", i.name)).collect())
    }

    /// The tags of the image, grouped by digest.
    async fn list_images(&self, repository: &str) -> Result<Vec<ListedImage>> {
        let mut by_digest: BTreeMap<Digest, ListedImage> = BTreeMap::new();
        for (tag, digest) in self.tags(repository).await?.unwrap_or_default() {
            let listed = || ListedImage::new(digest.clone());
            by_digest
                .entry(digest.clone())
                .or_insert_with(listed)
                .tags
                .push(tag.name);
        }
        Ok(by_digest.into_values().collect())
    }

    /// Deletes every tag naming each digest (`DeleteTag` with `force`: the bookkeeping tag and
    /// the real tags share the digest; a tag already gone is fine); an untagged referrer
    /// through the data plane's manifest `DELETE`. Platform manifests of a deleted index are
    /// left to Scaleway (they are no tag of the image).
    async fn delete_manifests(&self, repo: &str, digests: &[Digest], why: Deletion) -> Result<()> {
        let absent = |d: &Digest| Error::manifest_not_found(format!("{}/{repo}@{d}", self.host()));
        let tags = match (why, self.tags(repo).await?) {
            (Deletion::Child, _) => return Ok(()),
            (_, Some(tags)) => tags,
            (Deletion::Image, None) => return Err(absent(&digests[0])),
            (_, None) => return Ok(()),
        };
        let store = self.data.repository(repo)?;
        for digest in digests {
            let named: Vec<&Item> = tags
                .iter()
                .filter(|(_, d)| d == digest)
                .map(|(t, _)| t)
                .collect();
            match (named.is_empty(), why) {
                (true, Deletion::Image) => return Err(absent(digest)),
                (true, _) => match store.delete_manifest(digest).await {
                    Err(e) if !e.is_not_found() => return Err(e),
                    _ => {}
                },
                _ => {}
            }
            for tag in named {
                let target = format!("{repo}:{}", tag.name);
                match self.api.delete_tag(&tag.id, &target, true).await {
                    Err(e) if !matches!(e.kind(), Kind::NotFound(_)) => return Err(e.into()),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirror_core::kit::store::http::credentials::Credentials;

    #[test]
    fn statuses_read_as_documented() {
        assert_eq!(readiness("ready"), Some(true));
        for s in ["deleting", "error", "locked"] {
            assert_eq!(readiness(s), Some(false), "{s}");
        }
        for s in ["unknown", "", "pending", "creating"] {
            assert_eq!(readiness(s), None, "{s}");
        }
    }

    #[tokio::test]
    async fn builds_get_credentials_and_flat_caches() {
        use mirror_core::registry::BuildCapability;
        use mirror_core::Registry;
        let reg = ScalewayBuilder::new()
            .secret_key("0f0e0d0c-1111-2222-3333-444455556666")
            .project_id("4b0c6bd4-5a39-4d48-8c1e-6a2f2e4e1b11")
            .build()
            .unwrap();
        let build = reg
            .repository(&RepositoryScope::Build {
                cluster: "prod".into(),
                service: "api".into(),
            })
            .unwrap();
        let ns = reg.namespace_name("prod").unwrap();
        assert_eq!(build, format!("{ns}/build-api"));
        assert_eq!(
            reg.repository_reference(&build).unwrap(),
            format!("rg.fr-par.scw.cloud/{build}")
        );
        assert_eq!(
            reg.cache_repository(&build, "00ff00ff00ff").unwrap(),
            format!("{ns}/cache-00ff00ff00ff-build-api")
        );
        let c = reg.builder_credentials().await.unwrap().unwrap();
        let (host, creds) = (c.host, c.credentials);
        assert_eq!(host, "rg.fr-par.scw.cloud");
        assert_eq!(
            creds,
            Credentials::basic("nologin", "0f0e0d0c-1111-2222-3333-444455556666")
        );
        assert!(!format!("{creds:?}").contains("0f0e0d0c"));
        assert_eq!(
            reg.description(build.scope().map(|s| s.cluster())),
            "Mirror registry of cluster prod (managed by mirror-core)"
        );
    }
}
