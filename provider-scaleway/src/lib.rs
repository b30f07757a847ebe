//! Scaleway Container Registry as a cluster's mirror registry.
//!
//! [`Scaleway`] is the kit's [`CloudRegistry`] over [`ScalewayPlane`], this crate's
//! [`ControlPlane`]: each cluster gets one private
//! namespace, `<prefix>-<cluster>-<project hash>`, created through the registry API and
//! waited for until its status is `ready`; each repository scope is an image in it
//! (`svc-<service>`, `mirror`, `build-<service>`; see [`naming`]). The data plane is the core
//! HTTP client on `rg.<region>.scw.cloud` with basic auth, user `nologin` and the secret key as
//! password. Images are listed through the images and tags APIs (every page), and deleted by
//! deleting every tag that names the digest. Scaleway has no retention policy of its own:
//! Cluster-mode retention is enforced by [`Mirror::sweep`](mirror_core::Mirror::sweep), which
//! never deletes an image in use — run it on a schedule (see the README).
//!
//! # Push times
//!
//! [`Capabilities::records_push_time`](mirror_core::registry::Capabilities) is false: the library writes a bookkeeping tag
//! (`mirror.pushed.<ms>.<digest prefix>`) before an image's real tag and reads push times back
//! from it. Scaleway's tags do carry `created_at` and `updated_at`, but they describe the tag
//! record (a tag moved to another image keeps its `created_at`, and the reference does not
//! promise `updated_at` changes only on push), and eviction and retention must never act on
//! a guessed age. The bookkeeping tag gives the exact push time on every registry; it goes
//! with the image when the image is deleted (it names the same digest).
//!
//! # Layout
//!
//! - [`builder`]: [`ScalewayBuilder`], its settings and their `SCW_*` / `MIRROR_SCW_*`
//!   variables;
//! - [`client`]: the registry API calls ([`client::ScalewayApi`]);
//! - [`naming`]: Scaleway's namespace rules and the repository layout;
//! - [`error`]: this crate's classification of Scaleway answers (the kit's
//!   [`ControlPlaneError`](mirror_core::provider::ControlPlaneError) carries them);
//! - [`factory`](mod@factory): the [`RegistryFactory`](mirror_core::registry::RegistryFactory) for
//!   `mirror_core::registry::open` (`scaleway://…`, `rg.<region>.scw.cloud`).
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

pub mod builder;
pub mod client;
pub mod error;
pub mod factory;
pub mod naming;
pub mod source;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mirror_core::provider::cloud::{CloudRegistry, ControlPlane, Deletion, ListedImage};
use mirror_core::registry::{BuilderCredentials, Capabilities, Repository};
use mirror_core::retry::Poll;
use mirror_core::store::http::credentials::{Credentials, Secret};
use mirror_core::store::http::RegistryClient;
use mirror_core::{Digest, Error, ImageStore, RepositoryScope, RepositorySettings, Result};

pub use builder::{ScalewayBuilder, ScalewayConfigKey};
pub use factory::{factory, ScalewayFactory};
pub use source::ScalewaySources;

use client::{Namespace, ScalewayApi};
use error::{kind, Kind};

/// The provider name used to tag errors and events coming from this crate.
pub const PROVIDER: &str = "scaleway";

/// The data-plane user name Scaleway expects with the secret key as password.
pub const DATA_PLANE_USER: &str = "nologin";

/// How long `ensure_repository` looks for a namespace that "already exists" but is not
/// listed yet (another deployer created it a moment ago).
const LOOKUP_AFTER_CONFLICT: u32 = 4;

/// Tag statuses that mean the tag is on its way out.
const GONE_TAG_STATUSES: [&str; 1] = ["deleting"];

/// A namespace's status, read for readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Readiness {
    Ready,
    /// `deleting`, `error`, `locked`: waiting will not help.
    Unusable,
    /// `unknown` or anything else: being set up.
    Pending,
}

fn readiness(status: &str) -> Readiness {
    match status {
        "ready" => Readiness::Ready,
        "deleting" | "error" | "locked" => Readiness::Unusable,
        _ => Readiness::Pending,
    }
}

/// Scaleway Container Registry (one region and project) as a cluster's mirror registry:
/// the kit's registry over [`ScalewayPlane`]. Build it with [`ScalewayBuilder`].
pub type Scaleway = CloudRegistry<ScalewayPlane>;

/// Scaleway's control plane (namespaces, images and tags APIs) and settings. Cheap to clone;
/// clones share the API client, the data-plane connection pool and the cache of ready
/// namespaces.
#[derive(Clone)]
pub struct ScalewayPlane {
    inner: Arc<Inner>,
}

struct Inner {
    api: ScalewayApi,
    data: RegistryClient,
    host: String,
    region: String,
    project_id: String,
    prefix: String,
    public: bool,
    secret: Secret,
    namespace_timeout: Duration,
    poll_interval: Duration,
    /// Namespaces known to exist and be ready.
    ready: Mutex<HashSet<String>>,
    /// One lock per namespace being ensured, so concurrent ensures of its repositories in
    /// one process make one creation call (other processes get "already exists", which is
    /// handled).
    flights: mirror_core::sync::KeyedFlight<String>,
}

impl fmt::Debug for ScalewayPlane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScalewayPlane")
            .field("host", &self.inner.host)
            .field("region", &self.inner.region)
            .field("project_id", &self.inner.project_id)
            .field("prefix", &self.inner.prefix)
            .field("public", &self.inner.public)
            .field("api", &self.inner.api)
            .finish()
    }
}

impl ScalewayPlane {
    /// `DeleteTag` with `force`; a tag already gone (deleting the first tag of a digest may
    /// take its siblings with it) is fine.
    async fn delete_tag(&self, repository: &str, tag: &client::Tag) -> Result<()> {
        let target = format!("{repository}:{}", tag.name);
        match self.inner.api.delete_tag(&tag.id, &target, true).await {
            Ok(()) => Ok(()),
            Err(e) if kind(&e) == Kind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The data-plane host (`rg.<region>.scw.cloud` or the override).
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.inner.region
    }

    /// The project the namespaces live in.
    pub fn project_id(&self) -> &str {
        &self.inner.project_id
    }

    /// The namespace prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The registry API client.
    pub fn api(&self) -> &ScalewayApi {
        &self.inner.api
    }

    /// The data-plane HTTP client.
    pub fn data_plane(&self) -> &RegistryClient {
        &self.inner.data
    }

    /// The namespace holding every repository of `cluster`.
    pub fn namespace_name(&self, cluster: &str) -> Result<String> {
        naming::namespace_name(&self.inner.prefix, &self.inner.project_id, cluster)
    }

    /// The description of a new namespace: the exact cluster id, when known.
    fn description(&self, cluster: Option<&str>) -> String {
        match cluster {
            Some(c) => {
                let c: String = c
                    .chars()
                    .map(|ch| if ch.is_control() { ' ' } else { ch })
                    .take(120)
                    .collect();
                format!("Mirror registry of cluster {c} (managed by mirror-core)")
            }
            None => "Mirror registry (managed by mirror-core)".to_string(),
        }
    }

    fn is_ready(&self, namespace: &str) -> bool {
        self.inner
            .ready
            .lock()
            .map(|r| r.contains(namespace))
            .unwrap_or(false)
    }

    /// Makes sure `namespace` exists in the project, has the configured visibility and is
    /// ready: looks it up by name, creates it when absent ("already exists" means another
    /// deployer was faster: it is looked up again), then polls its status until `ready`.
    pub async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        self.ensure_namespace_of(namespace, None).await
    }

    /// [`ScalewayPlane::ensure_namespace`], describing a new namespace with its cluster id.
    async fn ensure_namespace_of(&self, namespace: &str, cluster: Option<&str>) -> Result<()> {
        naming::validate_namespace(namespace).map_err(|reason| Error::InvalidName {
            name: namespace.to_string(),
            reason,
        })?;
        if self.is_ready(namespace) {
            return Ok(());
        }
        let _guard = self.inner.flights.hold(&namespace.to_string()).await;
        if self.is_ready(namespace) {
            return Ok(());
        }
        let api = &self.inner.api;
        let mut created = false;
        let found = match api.find_namespace(namespace).await? {
            Some(n) => n,
            None => match api
                .create_namespace(namespace, &self.description(cluster), self.inner.public)
                .await
            {
                Ok(n) => {
                    created = true;
                    tracing::info!(namespace, registry = %self.inner.host, "created Scaleway namespace");
                    n
                }
                Err(e) if kind(&e) == Kind::AlreadyExists => {
                    self.find_after_conflict(namespace).await?
                }
                Err(e) => return Err(e.into()),
            },
        };
        let ns = self.wait_ready(found).await?;
        if !created && ns.is_public != self.inner.public {
            tracing::info!(
                namespace,
                public = self.inner.public,
                "changing the visibility of the Scaleway namespace"
            );
            api.update_namespace(&ns.id, namespace, self.inner.public)
                .await?;
        }
        if let Ok(mut r) = self.inner.ready.lock() {
            r.insert(namespace.to_string());
        }
        Ok(())
    }

    /// After an "already exists": the namespace is ours (listed, perhaps after a moment) or
    /// another project's.
    async fn find_after_conflict(&self, namespace: &str) -> Result<Namespace> {
        let api = &self.inner.api;
        // LOOKUP_AFTER_CONFLICT lookups, the pause doubling from the poll interval up to 2 s,
        // however long each lookup takes.
        Poll::until(Duration::from_secs(3600))
            .every(self.inner.poll_interval)
            .at_most(Duration::from_secs(2).max(self.inner.poll_interval))
            .checks(LOOKUP_AFTER_CONFLICT as usize)
            .run(|| api.find_namespace(namespace))
            .await?
            .ok_or_else(|| error::namespace_taken(api.origin(), namespace).into())
    }

    /// Polls the namespace until it is `ready`; fails at once on `deleting`, `error` and
    /// `locked`, and after the namespace timeout otherwise.
    async fn wait_ready(&self, ns: Namespace) -> Result<Namespace> {
        let api = &self.inner.api;
        let (id, name) = (ns.id.clone(), ns.name.clone());
        let started = tokio::time::Instant::now();
        let first = Mutex::new(Some(ns));
        let last_status = Mutex::new(String::new());
        let ready = Poll::until(self.inner.namespace_timeout)
            .every(self.inner.poll_interval)
            .at_most(Duration::from_secs(2).max(self.inner.poll_interval))
            .run(|| async {
                let known = first.lock().ok().and_then(|mut f| f.take());
                let ns = match known {
                    Some(ns) => ns,
                    None => api.get_namespace(&id, &name).await?,
                };
                if let Ok(mut l) = last_status.lock() {
                    l.clone_from(&ns.status);
                }
                match readiness(&ns.status) {
                    Readiness::Ready => Ok(Some(ns)),
                    Readiness::Unusable => {
                        let message = if ns.status_message.is_empty() {
                            match ns.status.as_str() {
                                "deleting" => {
                                    "it is being deleted; retry once it is gone".to_string()
                                }
                                "locked" => {
                                    "Scaleway locked it; contact Scaleway support".to_string()
                                }
                                _ => "Scaleway reports an error; see the console".to_string(),
                            }
                        } else {
                            ns.status_message.clone()
                        };
                        Err(error::namespace_state(
                            api.origin(),
                            &ns.name,
                            &ns.status,
                            &message,
                        ))
                    }
                    Readiness::Pending => {
                        tracing::debug!(namespace = %ns.name, status = %ns.status, "waiting for the Scaleway namespace to be ready");
                        Ok(None)
                    }
                }
            })
            .await?;
        ready.ok_or_else(|| {
            let status = last_status.lock().map(|s| s.clone()).unwrap_or_default();
            error::namespace_timeout(
                api.origin(),
                &name,
                if status.is_empty() {
                    "unknown"
                } else {
                    &status
                },
                started.elapsed(),
            )
            .into()
        })
    }

    /// The namespace and image of a repository, `None` when either does not exist.
    async fn locate(&self, repository: &str) -> Result<Option<(Namespace, client::Image)>> {
        let (namespace, image) = naming::parse_repository(repository)?;
        let api = &self.inner.api;
        let Some(ns) = api.find_namespace(namespace).await? else {
            return Ok(None);
        };
        let Some(img) = api.find_image(&ns.id, image, repository).await? else {
            return Ok(None);
        };
        Ok(Some((ns, img)))
    }

    /// The live tags of an image with their digests.
    async fn tags_with_digests(
        &self,
        repository: &str,
        image: &client::Image,
    ) -> Result<Vec<(client::Tag, Digest)>> {
        let tags = self.inner.api.list_tags(&image.id, repository).await?;
        let mut out = Vec::new();
        for t in tags {
            if GONE_TAG_STATUSES.contains(&t.status.as_str()) {
                continue;
            }
            if t.digest.is_empty() && t.status != "ready" {
                // A tag still being written (or failed): it names no image yet.
                continue;
            }
            let digest = Digest::parse(&t.digest).map_err(|e| {
                Error::from(self.inner.api.origin().protocol(
                    "ListTags",
                    format!("{repository}:{}", t.name),
                    format!("tag digest {:?}: {e}", t.digest),
                ))
            })?;
            out.push((t, digest));
        }
        Ok(out)
    }
}

#[async_trait]
impl ControlPlane for ScalewayPlane {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn data_plane(&self) -> &RegistryClient {
        &self.inner.data
    }

    /// No native push times (see the crate docs) and no retention policy.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    fn repository_name(&self, scope: &RepositoryScope) -> Result<String> {
        naming::repository_name(&self.inner.prefix, &self.inner.project_id, scope)
    }

    fn check_repository(&self, name: &str) -> Result<()> {
        naming::check_repository(name)
    }

    /// `<namespace>/cache-<dockerfile id>-<build image>`: flat, in the cluster's namespace
    /// (see [`naming::cache_repository`]).
    fn cache_repository_name(&self, build: &Repository, dockerfile_id: &str) -> Result<String> {
        naming::cache_repository(build.name(), dockerfile_id)
    }

    /// Ensures the repository's namespace (see [`ScalewayPlane::ensure_namespace`]); the
    /// image itself appears on the first push. Scaleway has no retention policy:
    /// `settings.retention` is enforced by `Mirror::sweep`, and nothing is stored here.
    async fn create_repository(
        &self,
        repository: &Repository,
        settings: &RepositorySettings,
    ) -> Result<bool> {
        let (namespace, _) = naming::parse_repository(repository.name())?;
        self.ensure_namespace_of(namespace, repository.scope().map(|s| s.cluster()))
            .await?;
        if let Some(retention) = settings.retention {
            tracing::debug!(
                repository = repository.name(),
                ?retention,
                "Scaleway has no retention policy: run `sweep` on a schedule to enforce it"
            );
        }
        Ok(false)
    }

    /// Every image of the cluster's namespace (`ListImages`, all pages), as
    /// `<namespace>/<image>`; empty when the namespace does not exist.
    async fn list_repositories(&self, cluster: &str) -> Result<Vec<String>> {
        let namespace = self.namespace_name(cluster)?;
        let api = &self.inner.api;
        let Some(ns) = api.find_namespace(&namespace).await? else {
            return Ok(Vec::new());
        };
        Ok(api
            .list_images(&ns.id, &namespace)
            .await?
            .into_iter()
            .filter(|i| !GONE_TAG_STATUSES.contains(&i.status.as_str()))
            .map(|i| format!("{namespace}/{}", i.name))
            .collect())
    }

    /// `ListTags` of the image (all pages), grouped by digest; tags being deleted are left
    /// out. A namespace or image that does not exist has no images.
    async fn list_images(&self, repository: &str) -> Result<Vec<ListedImage>> {
        let Some((_, image)) = self.locate(repository).await? else {
            return Ok(Vec::new());
        };
        let mut by_digest: BTreeMap<Digest, ListedImage> = BTreeMap::new();
        for (tag, digest) in self.tags_with_digests(repository, &image).await? {
            by_digest
                .entry(digest.clone())
                .or_insert_with(|| ListedImage::new(digest))
                .tags
                .push(tag.name);
        }
        Ok(by_digest.into_values().collect())
    }

    /// Deletes every tag naming each digest (`DeleteTag` with `force`, since the bookkeeping
    /// tag and the real tags share the digest; a tag already gone with an earlier deletion is
    /// fine); an untagged referrer (pushed by digest) through the data plane's manifest
    /// `DELETE`. Platform manifests of a deleted index are left to Scaleway (they are no tag
    /// of the image). [`Error::NotFound`] when no tag names the image.
    async fn delete_manifests(
        &self,
        repository: &str,
        digests: &[Digest],
        why: Deletion,
    ) -> Result<()> {
        if why == Deletion::Child {
            return Ok(());
        }
        let location = |d: &Digest| format!("{}/{repository}@{d}", self.inner.host);
        let Some((_, image)) = self.locate(repository).await? else {
            return match why {
                Deletion::Image => Err(Error::manifest_not_found(location(&digests[0]))),
                _ => Ok(()),
            };
        };
        let tags = self.tags_with_digests(repository, &image).await?;
        let store = self.inner.data.repository(repository)?;
        for digest in digests {
            let named: Vec<&client::Tag> = tags
                .iter()
                .filter(|(_, d)| d == digest)
                .map(|(t, _)| t)
                .collect();
            if named.is_empty() {
                match why {
                    Deletion::Image => return Err(Error::manifest_not_found(location(digest))),
                    _ => match store.delete_manifest(digest).await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    },
                }
            }
            for tag in named {
                self.delete_tag(repository, tag).await?;
            }
        }
        Ok(())
    }

    /// `nologin` with the secret key, for the registry host.
    async fn builder_credentials(&self) -> Result<Option<BuilderCredentials>> {
        Ok(Some(BuilderCredentials {
            host: self.inner.host.clone(),
            credentials: Credentials::basic(DATA_PLANE_USER, self.inner.secret.clone()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_documented() {
        assert_eq!(readiness("ready"), Readiness::Ready);
        for s in ["deleting", "error", "locked"] {
            assert_eq!(readiness(s), Readiness::Unusable, "{s}");
        }
        for s in ["unknown", "", "pending", "creating"] {
            assert_eq!(readiness(s), Readiness::Pending, "{s}");
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
