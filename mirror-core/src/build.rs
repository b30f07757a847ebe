//! Images built from source: [`Mirror::build`] and its input, [`BuildSpec`].
//!
//! `build(service, spec, builder)` returns a [`Deployment`] whose `pull_reference` is pinned by
//! digest, like [`Mirror::mirror`]:
//!
//! 1. **Key.** The Dockerfile is read; only the environment variables it declares with `ARG`
//!    become build args (see [`crate::builder::dockerfile`]). The build key
//!    ([`crate::key`]) covers the commit, the Dockerfile's path and content, the context
//!    path, the target stage, the platforms, those build args, the builder's name and the
//!    spec's extra inputs. Its tag names the image.
//! 2. **Skip.** One manifest HEAD in the service's build repository
//!    ([`RepositoryScope::Build`]): present → done, the builder is not started.
//! 3. **Clone reuse.** Another repository of the cluster holding that tag (a service built
//!    from the same source with the same declared args, or an earlier build of this service
//!    whose image was evicted) is copied by mount: no build, no upload.
//! 4. **Build.** Otherwise the builder builds with the service's own remote cache
//!    ([`Registry::cache_repository`](crate::Registry::cache_repository): one per build repository and Dockerfile path, never
//!    shared between services or Dockerfiles) and pushes.
//! 5. **Evict** the service's older builds as Service mode does (the `keep_previous` newest,
//!    the in-use set and images within the grace period stay).
//!
//! # Where the builder pushes, and why
//!
//! On registries that cannot tell push times ([`Registry::records_push_time`](crate::Registry::records_push_time) is false), an
//! image gets its push time from a bookkeeping tag whose name holds the image digest, which
//! is only known after the build. Were the builder to push under the key tag into the build
//! repository, the image would sit there without a push time until the bookkeeping tag
//! followed; a concurrent deployer evicting that repository in between would see an image of
//! unknown age, count it as the oldest and could delete it. So the builder pushes into the
//! cache repository (which no eviction manages) under the key tag, and the image is then
//! copied into the build repository by mount, bookkeeping tag first and key tag last,
//! exactly as [`Mirror::mirror`] copies: it is never visible there without its push time.
//! The staged copy also makes rollbacks to an evicted build a mount instead of a rebuild.
//! Registries that record push times get the push directly into the build repository.
//!
//! ```no_run
//! # async fn demo(mirror: mirror_core::Mirror) -> mirror_core::Result<()> {
//! use mirror_core::{builder::Buildah, BuildSpec};
//! let spec = BuildSpec::new("/src/api", "4b825dc642cb6eb9a060e54bf8d69288fbee4904")
//!     .with_env(std::env::vars())
//!     .with_platforms(["linux/amd64"]);
//! let d = mirror.build("api", &spec, &Buildah::new()).await?;
//! println!("{:?}: deploy {}", d.action, d.pull_reference);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use sha2::{Digest as _, Sha256};

use crate::builder::dockerfile::{build_args_from_env, declared_args};
use crate::builder::{
    BuildEventSink, BuildRequest, Builder, AUTOMATIC_PLATFORM_ARGS, DEFAULT_BUILD_TIMEOUT,
};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::eviction::plan_service_eviction;
use crate::key::{BuildKey, BuildKeyInputs};
use crate::media::{ParsedManifest, PlatformFilter};
use crate::mirror::{Action, Deployment, Mirror};
use crate::registry::{RepositoryScope, RepositorySettings};
use crate::store::http::credentials::Credentials;
use crate::store::ImageStore;

/// Repositories searched for a clone's image, at most.
const MAX_CLONE_CANDIDATES: usize = 256;
/// The extra key input naming the builder.
const BUILDER_KEY_INPUT: &str = "mirror.builder";

/// What to build: a context checked out at a commit, and how to build it.
///
/// Build with [`BuildSpec::new`] and the `with_*` methods. `Debug` shows environment and
/// extra-input names and credential hosts, never their values.
#[derive(Clone)]
pub struct BuildSpec {
    context: PathBuf,
    commit: String,
    dockerfile: Option<PathBuf>,
    repository_root: Option<PathBuf>,
    target: Option<String>,
    platforms: Vec<String>,
    env: BTreeMap<String, String>,
    extra: BTreeMap<String, String>,
    credentials: BTreeMap<String, Credentials>,
    timeout: Duration,
    keep_previous: Option<usize>,
    events: Option<BuildEventSink>,
}

impl BuildSpec {
    /// The build context directory, a clean checkout of `commit` (see [`crate::key`] for
    /// what the commit stands for).
    pub fn new(context: impl Into<PathBuf>, commit: impl Into<String>) -> Self {
        BuildSpec {
            context: context.into(),
            commit: commit.into(),
            dockerfile: None,
            repository_root: None,
            target: None,
            platforms: Vec::new(),
            env: BTreeMap::new(),
            extra: BTreeMap::new(),
            credentials: BTreeMap::new(),
            timeout: DEFAULT_BUILD_TIMEOUT,
            keep_previous: None,
            events: None,
        }
    }

    /// The Dockerfile: absolute, or relative to the context (default `Dockerfile` in the
    /// context).
    pub fn with_dockerfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.dockerfile = Some(path.into());
        self
    }

    /// The root of the source repository, which key paths are relative to. Default: the
    /// nearest directory at or above the context holding `.git`, else the context itself.
    pub fn with_repository_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.repository_root = Some(root.into());
        self
    }

    /// The stage to build (`--target`).
    pub fn with_target(mut self, stage: impl Into<String>) -> Self {
        let stage = stage.into();
        self.target = (!stage.is_empty()).then_some(stage);
        self
    }

    /// Target platforms `os/arch[/variant]`; two or more build an index.
    pub fn with_platforms<I, S>(mut self, platforms: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.platforms.extend(platforms.into_iter().map(Into::into));
        self
    }

    /// Environment variables offered as build args. Only those the Dockerfile declares with
    /// `ARG` are passed to the builder and hashed into the key; the platform args
    /// (`TARGETARCH`…, see [`AUTOMATIC_PLATFORM_ARGS`]) never are. A repeated name keeps its
    /// last value.
    pub fn with_env<I, K, V>(mut self, env: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env
            .extend(env.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// A deployer-defined key input (see [`BuildKeyInputs::with_extra`]).
    pub fn with_extra(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.insert(name.into(), value.into());
        self
    }

    /// Credentials the builder uses for `registry` (a host, `host:port`): the mirror registry
    /// (to push and to read and write the cache; needed unless the registry hands them out,
    /// see [`Registry::builder_credentials`](crate::Registry::builder_credentials)) and
    /// registries holding base images. They reach the builder through a private temporary
    /// auth file only.
    pub fn with_credentials(
        mut self,
        registry: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        self.credentials.insert(registry.into(), credentials);
        self
    }

    /// The build is killed and fails after this long (default one hour).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Previous builds kept by eviction (default: the strategy's `keep_previous` in Service
    /// mode, 1 otherwise).
    pub fn with_keep_previous(mut self, keep: usize) -> Self {
        self.keep_previous = Some(keep);
        self
    }

    /// Receives the builder's events (its command lines and log lines).
    pub fn with_events(mut self, events: BuildEventSink) -> Self {
        self.events = Some(events);
        self
    }

    /// Reads the Dockerfile and computes the build key for `builder_name`.
    pub fn plan(&self, builder_name: &str) -> Result<BuildPlan> {
        let context = canonical(&self.context, "build context")?;
        if !context.is_dir() {
            return Err(Error::Config(format!(
                "build context {} is not a directory",
                context.display()
            )));
        }
        let dockerfile = match &self.dockerfile {
            None => context.join("Dockerfile"),
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => context.join(p),
        };
        let dockerfile = canonical(&dockerfile, "Dockerfile")?;
        let content = std::fs::read(&dockerfile).map_err(|e| Error::io(&dockerfile, e))?;
        let root = match &self.repository_root {
            Some(r) => canonical(r, "repository root")?,
            None => git_root(&context).unwrap_or_else(|| context.clone()),
        };
        let context_rel = relative(&context, &root);
        let dockerfile_rel = relative(&dockerfile, &root);

        let declared = declared_args(&String::from_utf8_lossy(&content));
        let mut build_args = build_args_from_env(
            &declared,
            self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        for a in AUTOMATIC_PLATFORM_ARGS {
            build_args.remove(a);
        }
        let mut inputs = BuildKeyInputs::new(&self.commit, &dockerfile_rel, &content, &context_rel)
            .with_platforms(self.platforms.iter().cloned())
            .with_build_args(build_args.clone())
            .with_extra(BUILDER_KEY_INPUT, builder_name);
        if let Some(t) = &self.target {
            inputs = inputs.with_target(t.clone());
        }
        for (k, v) in &self.extra {
            inputs = inputs.with_extra(k.clone(), v.clone());
        }
        let key = inputs.compute()?;
        let dockerfile_id = hex::encode(
            &Sha256::new()
                .chain_update(b"mirror-core/build-cache\0")
                .chain_update(dockerfile_rel.as_bytes())
                .finalize()[..6],
        );
        Ok(BuildPlan {
            key,
            context,
            dockerfile,
            dockerfile_rel,
            dockerfile_id,
            build_args,
        })
    }
}

impl fmt::Debug for BuildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildSpec")
            .field("context", &self.context)
            .field("commit", &self.commit)
            .field("dockerfile", &self.dockerfile)
            .field("repository_root", &self.repository_root)
            .field("target", &self.target)
            .field("platforms", &self.platforms)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("keep_previous", &self.keep_previous)
            .field("events", &self.events.is_some())
            .finish()
    }
}

/// What [`BuildSpec::plan`] found: the key and the resolved paths. `Debug` shows build-arg
/// names only.
#[derive(Clone)]
pub struct BuildPlan {
    /// The build key; its tag names the image.
    pub key: BuildKey,
    /// The context, absolute.
    pub context: PathBuf,
    /// The Dockerfile, absolute.
    pub dockerfile: PathBuf,
    /// The Dockerfile relative to the repository root, as hashed into the key.
    pub dockerfile_rel: String,
    /// Identifies the Dockerfile's path in the cache repository name (12 hex characters).
    pub dockerfile_id: String,
    /// The build args passed to the builder: the declared ones found in the environment.
    pub build_args: BTreeMap<String, String>,
}

impl fmt::Debug for BuildPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildPlan")
            .field("key", &self.key)
            .field("context", &self.context)
            .field("dockerfile", &self.dockerfile)
            .field("dockerfile_rel", &self.dockerfile_rel)
            .field("dockerfile_id", &self.dockerfile_id)
            .field("build_args", &self.build_args.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn canonical(path: &Path, what: &str) -> Result<PathBuf> {
    path.canonicalize()
        .map_err(|e| Error::Config(format!("{what} {} cannot be resolved: {e}", path.display())))
}

/// The nearest directory at or above `dir` holding `.git` (a directory, or a file in
/// worktrees and submodules).
fn git_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// `path` relative to `base` (both absolute and canonical), with `..` where `path` is not
/// below `base`; `.` when they are equal.
fn relative(path: &Path, base: &Path) -> String {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_string(), b.len() - common).collect();
    parts.extend(
        p[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

impl Mirror {
    /// Builds `spec` for `service` (or finds it built) with an empty in-use set; see the
    /// [module documentation](crate::build).
    pub async fn build(
        &self,
        service: &str,
        spec: &BuildSpec,
        builder: &dyn Builder,
    ) -> Result<Deployment> {
        self.build_with(service, spec, builder, &HashSet::new())
            .await
    }

    /// Builds `spec` for `service`; eviction keeps every digest in `in_use`.
    ///
    /// Errors: [`Error::BuildFailed`] when the build fails (nothing is tagged in the build
    /// repository, the previous images stay), [`Error::Config`] for a spec that cannot be
    /// built (missing context or Dockerfile, invalid key inputs, a registry that cannot
    /// receive builds), and registry errors. Failures of the clone search and of eviction
    /// are warnings.
    pub async fn build_with(
        &self,
        service: &str,
        spec: &BuildSpec,
        builder: &dyn Builder,
        in_use: &HashSet<Digest>,
    ) -> Result<Deployment> {
        let plan = spec.plan(builder.name())?;
        let tag = plan.key.tag();
        let scope = RepositoryScope::Build {
            cluster: self.cluster.clone(),
            service: service.to_string(),
        };
        let repository = self.registry.repository_name(&scope)?;
        let keep = spec
            .keep_previous
            .unwrap_or(if self.strategy.evict_after_deploy() {
                self.strategy.keep_previous()
            } else {
                crate::strategy::ServiceStrategy::default().keep_previous
            });
        self.ensure_with(
            &repository,
            &RepositorySettings {
                retention: None,
                keep_previous: Some(keep),
            },
        )
        .await?;
        let dst = self.registry.store(&repository).await?;
        let source = format!("build:{}:{}", plan.key.commit(), plan.dockerfile_rel);
        let deployment = |digest: Digest, action: Action| Deployment {
            service: service.to_string(),
            source: source.clone(),
            pull_reference: self.registry.pull_reference(&repository, &digest),
            repository: repository.clone(),
            tag: tag.clone(),
            digest,
            action,
            blobs_mounted: 0,
            blobs_uploaded: 0,
            bytes_uploaded: 0,
            evicted: Vec::new(),
            warnings: Vec::new(),
        };

        if let Some(head) = dst.head_manifest(&tag).await? {
            return Ok(deployment(head.digest, Action::Skipped));
        }

        let mut warnings = Vec::new();
        let found = self
            .find_built(&repository, &tag, &spec.platforms, &mut warnings)
            .await;
        let mut d = match found {
            Some((from, digest)) => {
                let src = self.registry.store(&from).await?;
                let report = self
                    .bring_into(src.as_ref(), &digest, dst.as_ref(), &tag)
                    .await?;
                let mut d = deployment(report.digest.clone(), Action::Copied);
                d.source = format!("{source} (found in {from})");
                d.blobs_mounted = report.blobs_mounted;
                d.blobs_uploaded = report.blobs_uploaded;
                d.bytes_uploaded = report.bytes_uploaded;
                d
            }
            None => {
                self.run_build(
                    &plan,
                    spec,
                    builder,
                    &repository,
                    dst.as_ref(),
                    &tag,
                    deployment,
                )
                .await?
            }
        };

        // Later copies of this image (a deployer mirroring it elsewhere) mount from here.
        self.remember(&d.digest, &repository);
        match self
            .evict_builds(&repository, &d.digest, in_use, keep)
            .await
        {
            Ok((gone, mut w)) => {
                d.evicted = gone;
                warnings.append(&mut w);
            }
            Err(e) => warnings.push(format!("eviction in {repository} failed: {e}")),
        }
        d.warnings = warnings;
        Ok(d)
    }

    /// Builds into the staging place and brings the image into the build repository.
    #[allow(clippy::too_many_arguments)]
    async fn run_build(
        &self,
        plan: &BuildPlan,
        spec: &BuildSpec,
        builder: &dyn Builder,
        repository: &str,
        dst: &dyn ImageStore,
        tag: &str,
        deployment: impl Fn(Digest, Action) -> Deployment,
    ) -> Result<Deployment> {
        let cache_repository = self
            .registry
            .cache_repository(repository, &plan.dockerfile_id)?;
        self.ensure_with(&cache_repository, &RepositorySettings::default())
            .await?;
        let cache = self.registry.repository_reference(&cache_repository)?;
        // See the module docs: stage where no eviction looks unless the registry records
        // push times itself.
        let direct = self.registry.records_push_time();
        let stage_repository = if direct {
            repository.to_string()
        } else {
            cache_repository.clone()
        };
        let reference = format!(
            "{}:{tag}",
            self.registry.repository_reference(&stage_repository)?
        );

        let mut request = BuildRequest::new(&plan.context, &plan.dockerfile, reference);
        request.cache_from = vec![cache.clone()];
        request.cache_to = Some(cache);
        request.platforms = spec.platforms.clone();
        request.build_args = plan.build_args.clone();
        request.target = spec.target.clone();
        request.credentials = spec.credentials.clone();
        if let Some((host, c)) = self.registry.builder_credentials().await? {
            request.credentials.entry(host).or_insert(c);
        }
        request.timeout = spec.timeout;
        request.events = spec.events.clone();
        let output = builder.build(&request).await?;

        let stage = self.registry.store(&stage_repository).await?;
        if let Err(e) = check_platforms(stage.as_ref(), &output.digest, &spec.platforms).await {
            // The key tag must not name an incomplete image, in the build repository or in
            // the staging place where clone reuse would find it (clone reuse checks the
            // platforms too, in case this deletion fails).
            if let Err(d) = self
                .registry
                .delete_image(&stage_repository, &output.digest)
                .await
            {
                tracing::warn!(error = %d, "cannot delete an incomplete build from {stage_repository}");
            }
            return Err(e);
        }
        let mut d = deployment(output.digest.clone(), Action::Built);
        if !direct {
            // By digest: a concurrent build of the same key may have re-pushed the tag.
            let report = self
                .bring_into(stage.as_ref(), &output.digest, dst, tag)
                .await?;
            d.blobs_mounted = report.blobs_mounted;
            d.blobs_uploaded = report.blobs_uploaded;
            d.bytes_uploaded = report.bytes_uploaded;
        }
        Ok(d)
    }

    /// Copies the image `digest` of another repository of the registry into the build
    /// repository under `tag`: every platform (a built image is never filtered by the
    /// mirror's copy options), blobs mounted, and on registries that cannot tell push times
    /// the bookkeeping tag first, as [`Mirror::mirror`] copies.
    async fn bring_into(
        &self,
        src: &dyn ImageStore,
        digest: &Digest,
        dst: &dyn ImageStore,
        tag: &str,
    ) -> Result<crate::copy::CopyReport> {
        let mut options = self.copy.clone();
        options.platforms.clear();
        let src_ref = digest.to_string();
        if self.registry.records_push_time() {
            return crate::copy::copy(src, &src_ref, dst, tag, &options).await;
        }
        let first = crate::registry::pushed_tag(SystemTime::now(), digest);
        let report = crate::copy::copy(src, &src_ref, dst, &first, &options).await?;
        let m = dst.get_manifest(&report.digest.to_string()).await?;
        dst.put_manifest(tag, &m).await?;
        Ok(report)
    }

    /// Another repository of the cluster holding `tag`: a clone's image, or an earlier build
    /// of this service kept in its cache repository. Returns the repository and the digest;
    /// an image lacking one of the requested `platforms` is passed over.
    async fn find_built(
        &self,
        except: &str,
        tag: &str,
        platforms: &[String],
        warnings: &mut Vec<String>,
    ) -> Option<(String, Digest)> {
        let repos = match self.registry.list_repositories(&self.cluster).await {
            Ok(r) => r,
            Err(e) => {
                warnings.push(format!(
                    "cannot list the cluster's repositories to look for a clone's build: {e}"
                ));
                return None;
            }
        };
        let mut checks = futures::stream::iter(
            repos
                .into_iter()
                .filter(|r| r != except)
                .take(MAX_CLONE_CANDIDATES)
                .map(|r| async move {
                    let found: Result<Option<Digest>> = async {
                        let store = self.registry.store(&r).await?;
                        match store.head_manifest(tag).await? {
                            Some(h) => {
                                check_platforms(store.as_ref(), &h.digest, platforms).await?;
                                Ok(Some(h.digest))
                            }
                            None => Ok(None),
                        }
                    }
                    .await;
                    (r, found)
                }),
        )
        .buffer_unordered(8);
        while let Some((repo, found)) = checks.next().await {
            match found {
                Ok(Some(digest)) => return Some((repo, digest)),
                Ok(None) => {}
                // A failed check costs a build, never a wrong image.
                Err(e) => warnings.push(format!("passing over {tag} in {repo}: {e}")),
            }
        }
        None
    }

    async fn ensure_with(&self, repository: &str, settings: &RepositorySettings) -> Result<()> {
        let known = self
            .ensured
            .lock()
            .map(|s| s.contains(repository))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        self.registry
            .ensure_repository(repository, settings)
            .await?;
        if let Ok(mut s) = self.ensured.lock() {
            s.insert(repository.to_string());
        }
        Ok(())
    }

    async fn evict_builds(
        &self,
        repository: &str,
        deployed: &Digest,
        in_use: &HashSet<Digest>,
        keep: usize,
    ) -> Result<(Vec<Digest>, Vec<String>)> {
        let images = self.registry.list_images(repository).await?;
        let plan = plan_service_eviction(
            repository,
            &images,
            deployed,
            in_use,
            keep,
            SystemTime::now(),
            self.grace,
        );
        Ok(self.execute(&plan).await)
    }
}

/// Checks that the image at `digest` holds every requested platform when two or more were
/// asked for (buildah before 1.41 can silently drop platforms; see
/// [`crate::builder::buildah`]).
async fn check_platforms(
    store: &dyn ImageStore,
    digest: &Digest,
    platforms: &[String],
) -> Result<()> {
    if platforms.len() < 2 {
        return Ok(());
    }
    let location = format!("{}@{digest}", store.location());
    let m = store.get_manifest(&digest.to_string()).await?;
    let present: Vec<crate::media::Platform> = match m.parse(&location)? {
        ParsedManifest::Index { manifests } => {
            manifests.into_iter().filter_map(|d| d.platform).collect()
        }
        ParsedManifest::Image { .. } => Vec::new(),
    };
    for p in platforms {
        let filter = PlatformFilter::parse(&p.to_ascii_lowercase())?;
        if !present.iter().any(|pl| filter.matches(pl)) {
            let present: Vec<String> = present.iter().map(|p| p.to_string()).collect();
            return Err(Error::InvalidManifest {
                location,
                reason: format!(
                    "the build asked for platforms {platforms:?} but the pushed image holds \
                     {present:?}"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/a/b/c"), Path::new("/a")), "b/c");
        assert_eq!(relative(Path::new("/a"), Path::new("/a")), ".");
        assert_eq!(relative(Path::new("/x/D"), Path::new("/a/b")), "../../x/D");
    }

    fn checkout(dir: &Path) -> PathBuf {
        let root = dir.join("repo");
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::create_dir_all(root.join("svc")).unwrap();
        std::fs::write(
            root.join("svc/Dockerfile"),
            "FROM scratch\nARG VERSION\nARG TARGETARCH\nCOPY . /\n",
        )
        .unwrap();
        root
    }

    #[test]
    fn keys_use_declared_args_only_and_paths_from_the_repository_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = checkout(dir.path());
        let spec = BuildSpec::new(root.join("svc"), "abc123").with_env([
            ("VERSION", "1"),
            ("PATH", "/bin"),
            ("TARGETARCH", "s390x"),
        ]);
        let plan = spec.plan("buildah").unwrap();
        assert_eq!(plan.dockerfile_rel, "svc/Dockerfile");
        assert_eq!(plan.dockerfile_id.len(), 12);
        assert_eq!(
            plan.build_args.keys().collect::<Vec<_>>(),
            ["VERSION"],
            "undeclared and platform args are not build args"
        );
        let same = spec
            .clone()
            .with_env([("PATH", "/usr/bin")])
            .plan("buildah")
            .unwrap();
        assert_eq!(same.key, plan.key, "an undeclared variable changes nothing");
        let other = spec
            .clone()
            .with_env([("VERSION", "2")])
            .plan("buildah")
            .unwrap();
        assert_ne!(other.key, plan.key);
        assert_ne!(
            spec.plan("buildx").unwrap().key,
            plan.key,
            "the builder counts"
        );

        // The same source checked out elsewhere (a clone) has the same key.
        let dir2 = tempfile::tempdir().unwrap();
        let root2 = checkout(dir2.path());
        let clone = BuildSpec::new(root2.join("svc"), "abc123").with_env([("VERSION", "1")]);
        assert_eq!(clone.plan("buildah").unwrap().key, plan.key);

        // Another Dockerfile: another cache.
        std::fs::write(root.join("svc/Dockerfile.dev"), "FROM scratch\n").unwrap();
        let dev = spec
            .clone()
            .with_dockerfile("Dockerfile.dev")
            .plan("buildah")
            .unwrap();
        assert_ne!(dev.dockerfile_id, plan.dockerfile_id);
        assert!(format!("{spec:?}").contains("VERSION") && !format!("{spec:?}").contains("s390x"));
    }

    #[test]
    fn missing_inputs_are_config_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            BuildSpec::new(dir.path().join("none"), "abc").plan("buildah"),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            BuildSpec::new(dir.path(), "abc").plan("buildah"),
            Err(Error::Config(_))
        ));
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        assert!(matches!(
            BuildSpec::new(dir.path(), "a b").plan("buildah"),
            Err(Error::Config(_))
        ));
    }
}

/// `Mirror::build` against a real registry with a fake builder that pushes fixtures: where
/// the builder is told to push, which cache it gets, bookkeeping, platform checks.
#[cfg(all(test, feature = "testing"))]
mod registry_tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::builder::BuildOutput;
    use crate::eviction::ImageRecord;
    use crate::reference::Reference;
    use crate::registry::GenericRegistry;
    use crate::store::http::RegistryClient;
    use crate::testing::{TestImage, TestIndex, TestRegistry};
    use crate::Registry;

    /// Pushes a fixture image (an index of `platforms` when there are two or more) to the
    /// request's reference.
    #[derive(Debug, Default)]
    struct FakeBuilder {
        platforms: Vec<&'static str>,
        seed: AtomicU64,
        requests: Mutex<Vec<BuildRequest>>,
    }

    #[async_trait]
    impl Builder for FakeBuilder {
        fn name(&self) -> &str {
            "fake"
        }

        async fn build(&self, request: &BuildRequest) -> Result<BuildOutput> {
            if let Ok(mut r) = self.requests.lock() {
                r.push(request.clone());
            }
            let r = Reference::parse(&request.reference)?;
            let store = RegistryClient::new(r.registry(), Credentials::Anonymous)?
                .repository(r.repository())?;
            let tag = r.tag().unwrap_or("latest");
            let seed = self.seed.fetch_add(1, Ordering::SeqCst);
            let digest = if self.platforms.len() >= 2 {
                let index = TestIndex::for_platforms(
                    &TestImage::builder().seed(seed).layer(1000),
                    &self.platforms,
                );
                index.push(&store, tag).await?;
                index.digest().clone()
            } else {
                let image = TestImage::builder().seed(seed).layer(1000).build();
                image.push(&store, tag).await?;
                image.digest().clone()
            };
            Ok(BuildOutput {
                reference: request.reference.clone(),
                digest,
            })
        }
    }

    /// A generic registry that claims to record push times and hands out credentials.
    #[derive(Debug)]
    struct RecordsPushTimes(GenericRegistry);

    #[async_trait]
    impl Registry for RecordsPushTimes {
        fn provider(&self) -> &str {
            "test"
        }
        fn location(&self) -> String {
            self.0.location()
        }
        fn repository_name(&self, scope: &RepositoryScope) -> Result<String> {
            self.0.repository_name(scope)
        }
        async fn ensure_repository(&self, r: &str, s: &RepositorySettings) -> Result<()> {
            self.0.ensure_repository(r, s).await
        }
        async fn store(&self, r: &str) -> Result<Arc<dyn ImageStore>> {
            self.0.store(r).await
        }
        async fn list_repositories(&self, cluster: &str) -> Result<Vec<String>> {
            self.0.list_repositories(cluster).await
        }
        async fn list_images(&self, r: &str) -> Result<Vec<ImageRecord>> {
            self.0.list_images(r).await
        }
        async fn delete_image(&self, r: &str, d: &Digest) -> Result<()> {
            self.0.delete_image(r, d).await
        }
        fn pull_reference(&self, r: &str, d: &Digest) -> String {
            self.0.pull_reference(r, d)
        }
        fn records_push_time(&self) -> bool {
            true
        }
        async fn builder_credentials(&self) -> Result<Option<(String, Credentials)>> {
            Ok(Some((
                self.location(),
                Credentials::basic("token-user", "t0ken"),
            )))
        }
    }

    fn generic(reg: &TestRegistry) -> GenericRegistry {
        GenericRegistry::new(RegistryClient::new(&reg.host(), Credentials::Anonymous).unwrap())
    }

    fn mirror(registry: Arc<dyn Registry>) -> Mirror {
        Mirror::builder(registry, "prod")
            .eviction_grace(Duration::ZERO)
            .build()
            .unwrap()
    }

    fn context(dir: &Path) -> PathBuf {
        std::fs::write(dir.join("Dockerfile"), "FROM scratch\nARG V\n").unwrap();
        dir.to_path_buf()
    }

    #[tokio::test]
    async fn builds_stage_in_the_cache_repository_then_mount_with_push_times() {
        let reg = TestRegistry::start();
        let dir = tempfile::tempdir().unwrap();
        let m = mirror(Arc::new(generic(&reg)));
        let builder = FakeBuilder::default();
        let spec = BuildSpec::new(context(dir.path()), "c0ffee")
            .with_env([("V", "1")])
            .with_credentials(reg.host(), Credentials::basic("u", "p"));
        let d = m.build("api", &spec, &builder).await.unwrap();
        assert_eq!(d.action, Action::Built);
        assert_eq!(d.bytes_uploaded, 0, "mounted from the staging repository");
        assert!(d.blobs_mounted > 0);

        let request = builder.requests.lock().unwrap()[0].clone();
        let cache = format!("{}/prod/builds/api/cache-", reg.host());
        assert!(
            request.reference.starts_with(&cache),
            "{}",
            request.reference
        );
        assert!(request.reference.ends_with(&format!(":{}", d.tag)));
        assert_eq!(
            request.cache_to.as_deref(),
            request.cache_from.first().map(|s| s.as_str())
        );
        assert!(request.cache_to.as_deref().unwrap().starts_with(&cache));
        assert_eq!(request.build_args.get("V").map(String::as_str), Some("1"));
        assert!(request.credentials.contains_key(&reg.host()));

        // In the build repository with its push time.
        let images = generic(&reg).list_images("prod/builds/api").await.unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].tags, vec![d.tag.clone()]);
        assert!(images[0].pushed_at.is_some());
    }

    #[tokio::test]
    async fn registries_recording_push_times_get_the_push_directly() {
        let reg = TestRegistry::start();
        let dir = tempfile::tempdir().unwrap();
        let m = mirror(Arc::new(RecordsPushTimes(generic(&reg))));
        let builder = FakeBuilder::default();
        let d = m
            .build(
                "api",
                &BuildSpec::new(context(dir.path()), "c0ffee"),
                &builder,
            )
            .await
            .unwrap();
        assert_eq!(d.action, Action::Built);
        let request = builder.requests.lock().unwrap()[0].clone();
        assert_eq!(
            request.reference,
            format!("{}/prod/builds/api:{}", reg.host(), d.tag)
        );
        assert!(
            request.credentials.contains_key(&reg.host()),
            "the registry's own builder credentials"
        );
        let tags = generic(&reg)
            .store("prod/builds/api")
            .await
            .unwrap()
            .list_tags()
            .await
            .unwrap();
        assert_eq!(tags, vec![d.tag.clone()], "no bookkeeping tag needed");
    }

    #[tokio::test]
    async fn an_index_missing_a_platform_is_refused_and_never_tagged() {
        let reg = TestRegistry::start();
        let dir = tempfile::tempdir().unwrap();
        let builder = FakeBuilder {
            platforms: vec!["linux/amd64", "linux/s390x"],
            ..FakeBuilder::default()
        };
        let spec = BuildSpec::new(context(dir.path()), "c0ffee")
            .with_platforms(["linux/amd64", "linux/arm64"]);
        for registry in [
            Arc::new(generic(&reg)) as Arc<dyn Registry>,
            Arc::new(RecordsPushTimes(generic(&reg))),
        ] {
            let m = mirror(registry);
            let err = m.build("api", &spec, &builder).await.unwrap_err();
            assert!(
                matches!(&err, Error::InvalidManifest { reason, .. } if reason.contains("linux/arm64")),
                "{err}"
            );
            let tag = spec.plan("fake").unwrap().key.tag();
            for repo in generic(&reg).list_repositories("prod").await.unwrap() {
                let head = generic(&reg)
                    .store(&repo)
                    .await
                    .unwrap()
                    .head_manifest(&tag)
                    .await
                    .unwrap();
                assert!(head.is_none(), "an incomplete image is tagged in {repo}");
            }
        }
        // An incomplete image under the key tag elsewhere (a deletion that failed) is passed
        // over by clone reuse; with every platform present, the build passes.
        let tag = spec.plan("fake").unwrap().key.tag();
        let other = generic(&reg).store("prod/builds/other").await.unwrap();
        TestIndex::for_platforms(&TestImage::builder().seed(99).layer(10), &["linux/amd64"])
            .push(other.as_ref(), &tag)
            .await
            .unwrap();
        let builder = FakeBuilder {
            platforms: vec!["linux/arm64", "linux/amd64"],
            ..FakeBuilder::default()
        };
        let m = mirror(Arc::new(generic(&reg)));
        let d = m.build("api", &spec, &builder).await.unwrap();
        assert_eq!(d.action, Action::Built);
        assert!(
            d.warnings.iter().any(|w| w.contains("passing over")),
            "{:?}",
            d.warnings
        );
    }
}
