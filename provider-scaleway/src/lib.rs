//! Scaleway Container Registry as a cluster's mirror registry.
//!
//! [`Scaleway`] is the kit's [`CloudRegistry`] over [`ScalewayPlane`], this crate's
//! [`ControlPlane`]: each cluster gets one private namespace,
//! `<prefix>-<cluster>-<project hash>`, created through the registry API and waited for
//! until its status is `ready`; each repository scope is an image in it (`svc-<service>`,
//! `mirror`, `build-<service>`; see [`naming`]). The data plane is the core HTTP client on
//! `rg.<region>.scw.cloud` with basic auth, user `nologin` and the secret key as password.
//! Images are listed through the images and tags APIs (every page), and deleted by deleting
//! every tag that names the digest. Scaleway has no retention policy of its own: Cluster-mode
//! retention is enforced by [`Mirror::sweep`](mirror_core::Mirror::sweep), which never
//! deletes an image in use — run it on a schedule (see the README).
//!
//! # Push times
//!
//! Scaleway does not record them: the library writes a
//! bookkeeping tag (`mirror.pushed.<ms>.<digest prefix>`) before an image's real tag and
//! reads push times back from it. Scaleway's tags do carry `created_at` and `updated_at`,
//! but they describe the tag record (a tag moved to another image keeps its `created_at`),
//! and eviction and retention must never act on a guessed age.
//!
//! # Layout
//!
//! - [`config`]: [`ScalewayBuilder`], its keys and their `SCW_*` / `MIRROR_SCW_*`
//!   variables, and the factory for `mirror_core::registry::open` (`scaleway://…`);
//! - [`client`]: the registry API calls ([`client::ScalewayApi`]);
//! - [`naming`]: Scaleway's namespace rules and the repository layout;
//! - [`error`]: the table of Scaleway's answers;
//! - [`source`]: Scaleway registries as image sources.
//!
//! # Example
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
//! // rg.fr-par.scw.cloud/mirror-prod-eu-1a2b3c4d/svc-api@sha256:…
//! println!("deploy {}", d.pull_reference);
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
use mirror_core::provider::cloud::{
    CloudRegistry, ControlPlane, Deletion, ListedImage, OncePerKey,
};
use mirror_core::provider::Kind;
use mirror_core::registry::{BuilderCredentials, Repository};
use mirror_core::store::http::credentials::{Credentials, Secret};
use mirror_core::store::http::RegistryClient;
use mirror_core::{Digest, Error, ImageStore, RepositoryScope, RepositorySettings, Result};

pub use config::{factory, ScalewayBuilder, ScalewayConfigKey, ScalewayFactory};
pub use source::ScalewaySources;

use client::{Item, Namespace, ScalewayApi};

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "scaleway";

/// The data-plane user name Scaleway expects with the secret key as password.
pub const DATA_PLANE_USER: &str = "nologin";

/// Scaleway Container Registry (one region and project) as a cluster's mirror registry:
/// the kit's registry over [`ScalewayPlane`]. Build it with [`ScalewayBuilder`].
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
    secret: Secret,
    namespace_timeout: Duration,
    poll_interval: Duration,
    /// Namespaces ensured (existing, ready, with the configured visibility): once per
    /// process, one at a time, so concurrent ensures of its repositories make one creation
    /// call (other processes get "already exists").
    namespaces: OncePerKey,
}

/// What a namespace status means: `Some(true)` ready, `Some(false)` unusable (`deleting`,
/// `error`, `locked`: waiting will not help), `None` still being set up.
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
        let c: String = c
            .chars()
            .map(|ch| if ch.is_control() { ' ' } else { ch })
            .take(120)
            .collect();
        format!("Mirror registry of cluster {c} (managed by mirror-core)")
    }

    /// Makes sure `namespace` exists in the project, has the configured visibility and is
    /// ready: looks it up by name, creates it when absent ("already exists" means another
    /// deployer was faster: it is looked up again), then polls its status until `ready`.
    pub async fn ensure_namespace(&self, namespace: &str, cluster: Option<&str>) -> Result<()> {
        naming::validate_namespace(namespace).map_err(|reason| Error::InvalidName {
            name: namespace.to_string(),
            reason,
        })?;
        let api = &self.api;
        let ensure = || async {
            let (ns, created) = match api.find_namespace(namespace).await? {
                Some(n) => (n, false),
                None => match api
                    .create_namespace(namespace, &self.description(cluster), self.public)
                    .await
                {
                    Ok(n) => (n, true),
                    Err(e) if e.kind() == Kind::AlreadyExists => {
                        // Ours, listed perhaps after a few lookups, or another customer's.
                        let max = Duration::from_secs(2).max(self.poll_interval);
                        let lookup = mirror_core::retry::Poll::until(Duration::from_secs(3600))
                            .every(self.poll_interval)
                            .at_most(max)
                            .checks(4);
                        let found = lookup.run(|| api.find_namespace(namespace)).await?;
                        (
                            found.ok_or_else(|| error::namespace_taken(api.origin(), namespace))?,
                            false,
                        )
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            if created {
                tracing::info!(namespace, registry = %self.host(), "created Scaleway namespace");
            }
            let ns = self.wait_ready(ns).await?;
            if !created && ns.is_public != self.public {
                tracing::info!(
                    namespace,
                    public = self.public,
                    "changing the visibility of the Scaleway namespace"
                );
                api.update_namespace(&ns.id, namespace, self.public).await?;
            }
            Ok(())
        };
        self.namespaces.run(namespace, true, ensure).await
    }

    /// Polls the namespace until it is `ready`; fails at once on `deleting`, `error` and
    /// `locked`, and after the namespace timeout otherwise.
    async fn wait_ready(&self, ns: Namespace) -> Result<Namespace> {
        let api = &self.api;
        let (id, name, started) = (ns.id.clone(), ns.name.clone(), tokio::time::Instant::now());
        let (first, last) = (Mutex::new(Some(ns)), Mutex::new("unknown".to_string()));
        let check = || async {
            let ns = match first.lock().ok().and_then(|mut f| f.take()) {
                Some(ns) => ns,
                None => api.get_namespace(&id, &name).await?,
            };
            if let (Ok(mut l), false) = (last.lock(), ns.status.is_empty()) {
                l.clone_from(&ns.status);
            }
            match readiness(&ns.status) {
                Some(true) => Ok(Some(ns)),
                Some(false) => {
                    let message = match (ns.status_message.is_empty(), ns.status.as_str()) {
                        (false, _) => ns.status_message.clone(),
                        (true, "deleting") => "it is being deleted; retry once it is gone".into(),
                        (true, "locked") => "Scaleway locked it; contact Scaleway support".into(),
                        _ => "Scaleway reports an error; see the console".into(),
                    };
                    Err(error::namespace_state(
                        api.origin(),
                        &ns.name,
                        &ns.status,
                        &message,
                    ))
                }
                None => Ok(None),
            }
        };
        let max = Duration::from_secs(2).max(self.poll_interval);
        let ready = api
            .rest()
            .poll(self.namespace_timeout, self.poll_interval, max, check)
            .await?;
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
        let tags = self.api.list_tags(&img.id, repository).await?;
        let live = tags
            .into_iter()
            .filter(|t| t.status != "deleting" && (!t.digest.is_empty() || t.status == "ready"));
        let read = |t: Item| match Digest::parse(&t.digest) {
            Ok(d) => Ok((t, d)),
            Err(e) => {
                let (target, reason) = (
                    format!("{repository}:{}", t.name),
                    format!("tag digest {:?}: {e}", t.digest),
                );
                Err(Error::from(
                    self.api.origin().protocol("ListTags", target, reason),
                ))
            }
        };
        live.map(read).collect::<Result<Vec<_>>>().map(Some)
    }
}

#[async_trait]
impl ControlPlane for ScalewayPlane {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

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
    /// `settings.retention` is enforced by `Mirror::sweep`: nothing is stored here.
    async fn create_repository(
        &self,
        repository: &Repository,
        _: &RepositorySettings,
    ) -> Result<bool> {
        let (namespace, _) = naming::parse_repository(repository.name())?;
        let cluster = repository.scope().map(|s| s.cluster());
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
            let listed = by_digest
                .entry(digest.clone())
                .or_insert_with(|| ListedImage::new(digest));
            listed.tags.push(tag.name);
        }
        Ok(by_digest.into_values().collect())
    }

    /// Deletes every tag naming each digest (`DeleteTag` with `force`: the bookkeeping tag and
    /// the real tags share the digest; a tag already gone is fine); an untagged referrer
    /// through the data plane's manifest `DELETE`. Platform manifests of a deleted index are
    /// left to Scaleway (they are no tag of the image).
    async fn delete_manifests(
        &self,
        repository: &str,
        digests: &[Digest],
        why: Deletion,
    ) -> Result<()> {
        let absent =
            |d: &Digest| Error::manifest_not_found(format!("{}/{repository}@{d}", self.host()));
        let tags = match (why, self.tags(repository).await?) {
            (Deletion::Child, _) => return Ok(()),
            (_, Some(tags)) => tags,
            (Deletion::Image, None) => return Err(absent(&digests[0])),
            (_, None) => return Ok(()),
        };
        let store = self.data.repository(repository)?;
        for digest in digests {
            let named: Vec<&Item> = tags
                .iter()
                .filter(|(_, d)| d == digest)
                .map(|(t, _)| t)
                .collect();
            if named.is_empty() && why == Deletion::Image {
                return Err(absent(digest));
            }
            if named.is_empty() {
                store
                    .delete_manifest(digest)
                    .await
                    .or_else(|e| e.is_not_found().then_some(()).ok_or(e))?;
            }
            for tag in named {
                let target = format!("{repository}:{}", tag.name);
                match self.api.delete_tag(&tag.id, &target, true).await {
                    Err(e) if !matches!(e.kind(), Kind::NotFound(_)) => return Err(e.into()),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// `nologin` with the secret key, for the registry host.
    async fn builder_credentials(&self) -> Result<Option<BuilderCredentials>> {
        let credentials = Credentials::basic(DATA_PLANE_USER, self.secret.clone());
        let host = self.host().to_string();
        Ok(Some(BuilderCredentials { host, credentials }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
