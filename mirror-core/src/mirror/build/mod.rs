//! [`Mirror::build`]: images built from source, keyed by every build input.

use std::collections::HashSet;

use futures::StreamExt;

use crate::builder::{BuildRequest, Builder};

pub(super) mod cache;
pub(super) mod spec;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{ParsedManifest, PlatformFilter};
use crate::registry::{BuildCapability, Repository, RepositoryScope, RepositorySettings};
use crate::store::ImageStore;
pub use spec::{BuildPlan, BuildSpec};

use super::Mirror;
use crate::mirror::report::{Action, Deployment};

/// Repositories searched for a clone's image, at most.
const MAX_CLONE_CANDIDATES: usize = 256;

impl Mirror {
    /// Builds `spec` for `service` (or finds it built) with an empty in-use set.
    ///
    /// `build(service, spec, builder)` returns a [`Deployment`] whose `pull_reference` is pinned by
    /// digest, like [`Mirror::mirror`]:
    ///
    /// 1. **Key.** The Dockerfile is read; only the environment variables it declares with `ARG`
    ///    become build args (see [`crate::builder::dockerfile`]). The build key
    ///    ([`crate::key`]) covers the commit, the Dockerfile's path and content, the context
    ///    path, the target stage, the platforms, those build args, the builder's name and the
    ///    spec's extra inputs. Its tag names the image.
    /// 2. **Skip.** One manifest HEAD in the service's build repository
    ///    ([`RepositoryScope::Build`]): present → done, the builder is not started.
    /// 3. **Clone reuse.** Another repository of the cluster holding that tag (a service built
    ///    from the same source with the same declared args, or an earlier build of this service
    ///    whose image was evicted) is copied by mount: no build, no upload.
    /// 4. **Build.** Otherwise the builder builds with the service's own remote cache
    ///    ([`BuildCapability::cache_repository`]: one per build repository and Dockerfile path, never
    ///    shared between services or Dockerfiles) and pushes.
    /// 5. **Evict** the service's older builds as Service mode does (the `keep_previous` newest,
    ///    the in-use set and images within the grace period stay).
    ///
    /// # Where the builder pushes, and why
    ///
    /// On registries that cannot tell push times ([`Capabilities::records_push_time`](crate::registry::Capabilities) is false), an
    /// image gets its push time from a bookkeeping tag whose name holds the image digest, which
    /// is only known after the build. Were the builder to push under the key tag into the build
    /// repository, the image would sit there without a push time until the bookkeeping tag
    /// followed; a concurrent deployer evicting that repository in between would see an image of
    /// unknown age, count it as the oldest and could delete it. So the builder pushes into the
    /// cache repository (which no eviction manages) under the key tag, and the image is then
    /// copied into the build repository by mount, bookkeeping tag first and key tag last,
    /// exactly as [`Mirror::mirror`] copies: it is never visible there without its push time.
    /// The staged copy also makes rollbacks to an evicted build a mount instead of a rebuild.
    /// Registries that record push times get the push directly into the build repository.
    ///
    /// ```no_run
    /// # async fn demo(mirror: mirror_core::Mirror) -> mirror_core::Result<()> {
    /// use mirror_core::{builder::Buildah, BuildSpec};
    /// let spec = BuildSpec::new("/src/api", "4b825dc642cb6eb9a060e54bf8d69288fbee4904")
    ///     .with_env(std::env::vars())
    ///     .with_platforms(["linux/amd64"]);
    /// let d = mirror.build("api", &spec, &Buildah::new()).await?;
    /// println!("{:?}: deploy {}", d.action, d.pull_reference);
    /// # Ok(()) }
    /// ```
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
        let span = crate::telemetry::deploy_span("build", &self.core.cluster, service, "build");
        span.record("source", spec.commit.as_str());
        let work = self.build_once(service, spec, builder, in_use);
        self.traced_deploy(span, "build", work).await
    }

    async fn build_once(
        &self,
        service: &str,
        spec: &BuildSpec,
        builder: &dyn Builder,
        in_use: &HashSet<Digest>,
    ) -> Result<Deployment> {
        let core = &self.core;
        let builds = core.registry.builds().ok_or_else(|| {
            Error::config(
                "registry",
                format!(
                    "the {} registry at {} cannot receive builds: builders push to a \
                 distribution registry",
                    core.registry.provider(),
                    core.registry.location()
                ),
            )
        })?;
        // The plan reads the Dockerfile: on a blocking thread.
        let plan = {
            let (spec, name) = (spec.clone(), builder.name().to_string());
            tokio::task::spawn_blocking(move || spec.plan(&name))
                .await
                .map_err(|e| Error::internal("planning the build", e))??
        };
        let tag = plan.key.tag();
        let repository = core.registry.repository(&RepositoryScope::Build {
            cluster: core.cluster.clone(),
            service: service.to_string(),
        })?;
        let keep = spec
            .keep_previous
            .unwrap_or(if core.strategy.evict_after_deploy() {
                core.strategy.keep_previous()
            } else {
                crate::strategy::ServiceStrategy::default().keep_previous
            });
        let dst = core.registry.store(&repository).await?;
        let source = format!("build:{}:{}", plan.key.commit(), plan.dockerfile_rel);
        let deployment = |digest: Digest, action: Action| {
            core.deployment(
                service,
                source.clone(),
                &repository,
                tag.clone(),
                digest,
                action,
            )
        };

        // Already built: the HEAD only, no control-plane call (and a hand-out mark when this
        // Mirror knows the image could be evicted before its pods start).
        match dst.head_manifest(&tag).await {
            Ok(Some(head)) => {
                let mut d = deployment(head.digest.clone(), Action::Skipped);
                core.hand_out(
                    &repository,
                    dst.as_ref(),
                    &head.digest,
                    super::handout::Deleter::Eviction {
                        keep_previous: keep,
                    },
                    &mut d.warnings,
                )
                .await;
                return Ok(d);
            }
            Ok(None) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        core.ensure(
            &repository,
            &RepositorySettings {
                retention: None,
                keep_previous: Some(keep),
            },
        )
        .await?;

        let mut warnings = Vec::new();
        let found = self
            .find_built(&repository, &tag, &spec.platforms, &mut warnings)
            .await;
        let mut d = match found {
            Some((from, digest)) => {
                let src = core.registry.store(&from).await?;
                let report = self
                    .bring_into(src.as_ref(), &digest, dst.as_ref(), &repository, &tag)
                    .await?;
                let mut d = deployment(report.digest.clone(), Action::Copied);
                d.source = format!("{source} (found in {from})");
                d.blobs_mounted = report.blobs_mounted;
                d.blobs_uploaded = report.blobs_uploaded;
                d.bytes_uploaded = report.bytes_uploaded;
                d.referrers = report.referrers;
                d
            }
            None => {
                self.run_build(
                    builds,
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
        core.remember(&d.digest, &repository);
        match core.evict(&repository, &d.digest, in_use, keep).await {
            Ok((gone, mut w)) => {
                d.evicted = gone;
                warnings.append(&mut w);
            }
            Err(e) => warnings.push(super::Warning::eviction_error(&repository, e)),
        }
        d.warnings = warnings;
        Ok(d)
    }

    /// Builds into the staging place and brings the image into the build repository.
    #[allow(clippy::too_many_arguments)]
    async fn run_build(
        &self,
        builds: &dyn BuildCapability,
        plan: &BuildPlan,
        spec: &BuildSpec,
        builder: &dyn Builder,
        repository: &Repository,
        dst: &dyn ImageStore,
        tag: &str,
        deployment: impl Fn(Digest, Action) -> Deployment,
    ) -> Result<Deployment> {
        let core = &self.core;
        let cache_repository = builds.cache_repository(repository, &plan.dockerfile_id)?;
        core.ensure(&cache_repository, &RepositorySettings::default())
            .await?;
        let cache = builds.repository_reference(&cache_repository)?;
        // See the docs of `build`: stage where no eviction looks unless the registry records
        // push times itself.
        let direct = core.registry.capabilities().records_push_time;
        let stage_repository = if direct {
            repository.clone()
        } else {
            cache_repository.clone()
        };
        let reference = format!("{}:{tag}", builds.repository_reference(&stage_repository)?);

        let mut request = BuildRequest::new(&plan.context, &plan.dockerfile, reference);
        request.cache_from = vec![cache.clone()];
        request.cache_to = Some(cache);
        request.platforms = spec.platforms.clone();
        request.build_args = plan.build_args.clone();
        request.target = spec.target.clone();
        request.credentials = spec.credentials.clone();
        if let Some(c) = builds.builder_credentials().await? {
            request.credentials.entry(c.host).or_insert(c.credentials);
        }
        request.timeout = spec.timeout;
        request.events = spec.events.clone();
        // The lease keeps other builds' cache bounds away while this one reads the cache.
        let lease_life = spec.timeout + std::time::Duration::from_secs(600);
        let lease = match cache::Lease::take(core.registry.as_ref(), &cache_repository, lease_life)
            .await
        {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(%cache_repository, error = %e, "cannot take a lease on the build cache; it is not bounded this time");
                None
            }
        };
        let built = self
            .finish_build(
                builder,
                &request,
                &stage_repository,
                spec,
                direct,
                dst,
                repository,
                tag,
                deployment,
            )
            .await;
        let Some(lease) = lease else {
            return built;
        };
        let mut d = match built {
            Ok(d) => d,
            Err(e) => {
                lease.release(core.registry.as_ref()).await;
                return Err(e);
            }
        };
        let stage = core.registry.store(&stage_repository).await?;
        let bounded = cache::record_and_bound(
            core.registry.as_ref(),
            &cache_repository,
            stage.as_ref(),
            &d.digest,
            spec.cache_builds,
            &lease,
            lease_life,
        )
        .await;
        lease.release(core.registry.as_ref()).await;
        match bounded {
            Ok(b) => {
                d.cache_evicted = b.deleted;
                d.warnings.extend(b.warnings);
            }
            Err(e) => d.warnings.push(super::Warning::CacheNotBounded {
                repository: cache_repository.name().to_string(),
                digest: None,
                error: e.into(),
            }),
        }
        Ok(d)
    }

    /// Runs the builder, checks the platforms, brings the image into the build repository.
    #[allow(clippy::too_many_arguments)]
    async fn finish_build(
        &self,
        builder: &dyn Builder,
        request: &BuildRequest,
        stage_repository: &Repository,
        spec: &BuildSpec,
        direct: bool,
        dst: &dyn ImageStore,
        repository: &Repository,
        tag: &str,
        deployment: impl Fn(Digest, Action) -> Deployment,
    ) -> Result<Deployment> {
        let core = &self.core;
        let output = builder.build(request).await?;

        let stage = core.registry.store(stage_repository).await?;
        if let Err(e) = check_platforms(stage.as_ref(), &output.digest, &spec.platforms).await {
            // The key tag must not name an incomplete image, in the build repository or in
            // the staging place where clone reuse would find it (clone reuse checks the
            // platforms too, in case this deletion fails).
            if let Err(d) = core
                .registry
                .delete_image(stage_repository, &output.digest)
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
                .bring_into(stage.as_ref(), &output.digest, dst, repository, tag)
                .await?;
            d.blobs_mounted = report.blobs_mounted;
            d.blobs_uploaded = report.blobs_uploaded;
            d.bytes_uploaded = report.bytes_uploaded;
            d.referrers = report.referrers;
        }
        Ok(d)
    }

    /// Copies the image `digest` of another repository of the registry into the build
    /// repository under `tag`, as [`Mirror::mirror`] places images: every platform (a built
    /// image is never filtered by the mirror's copy options), blobs mounted, the bookkeeping
    /// tag first where the registry needs one.
    async fn bring_into(
        &self,
        src: &dyn ImageStore,
        digest: &Digest,
        dst: &dyn ImageStore,
        repository: &Repository,
        tag: &str,
    ) -> Result<crate::copy::CopyReport> {
        let mut options = self.core.copy.clone();
        options.platforms.clear();
        let reference = digest.to_string();
        let source = crate::image::SourceImage {
            store: src,
            reference: &reference,
            digest: Some(digest),
        };
        self.core.place(source, dst, repository, tag, options).await
    }

    /// Another repository of the cluster holding `tag`: a clone's image, or an earlier build
    /// of this service kept in its cache repository. Returns the repository and the digest;
    /// an image lacking one of the requested `platforms` is passed over.
    async fn find_built(
        &self,
        except: &Repository,
        tag: &str,
        platforms: &[String],
        warnings: &mut Vec<super::Warning>,
    ) -> Option<(Repository, Digest)> {
        let core = &self.core;
        let repos = match core.registry.list_repositories(&core.cluster).await {
            Ok(r) => r,
            Err(e) => {
                warnings.push(super::Warning::CloneSearch {
                    error: crate::mirror::warning::Cause::context(
                        "cannot list the cluster's repositories to look for a clone's build",
                        e,
                    ),
                });
                return None;
            }
        };
        let mut checks = futures::stream::iter(
            repos
                .into_iter()
                .filter(|r| r.name() != except.name())
                .take(MAX_CLONE_CANDIDATES)
                .map(|r| async move {
                    let found: Result<Option<Digest>> = async {
                        let store = core.registry.store(&r).await?;
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
                Err(e) => warnings.push(super::Warning::CloneSearch {
                    error: crate::mirror::warning::Cause::context(
                        &format!("passing over {tag} in {repo}"),
                        e,
                    ),
                }),
            }
        }
        None
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

/// `Mirror::build` against a real registry with a fake builder that pushes fixtures: where
/// the builder is told to push, which cache it gets, bookkeeping, platform checks.
#[cfg(all(test, feature = "testing"))]
mod registry_tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::builder::BuildOutput;
    use crate::image::ImageRecord;
    use crate::reference::Reference;
    use crate::registry::GenericRegistry;
    use crate::store::http::credentials::Credentials;
    use crate::store::http::RegistryClient;
    use crate::testing::{TestImage, TestIndex, TestRegistry};
    use crate::Registry;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

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
        fn capabilities(&self) -> crate::registry::Capabilities {
            crate::registry::Capabilities::default().with_push_times(true)
        }
        fn repository(&self, scope: &RepositoryScope) -> Result<Repository> {
            self.0.repository(scope)
        }
        async fn ensure_repository(&self, r: &Repository, s: &RepositorySettings) -> Result<()> {
            self.0.ensure_repository(r, s).await
        }
        async fn store(&self, r: &Repository) -> Result<Arc<dyn ImageStore>> {
            self.0.store(r).await
        }
        async fn list_repositories(&self, cluster: &str) -> Result<Vec<Repository>> {
            self.0.list_repositories(cluster).await
        }
        async fn list_images(&self, r: &Repository) -> Result<Vec<ImageRecord>> {
            self.0.list_images(r).await
        }
        async fn delete_image(&self, r: &Repository, d: &Digest) -> Result<()> {
            self.0.delete_image(r, d).await
        }
        fn pull_reference(&self, r: &Repository, d: &Digest) -> String {
            self.0.pull_reference(r, d)
        }
        fn builds(&self) -> Option<&dyn BuildCapability> {
            Some(self)
        }
    }

    #[async_trait]
    impl BuildCapability for RecordsPushTimes {
        fn repository_reference(&self, r: &Repository) -> Result<String> {
            self.0.repository_reference(r)
        }
        fn cache_repository(&self, b: &Repository, id: &str) -> Result<Repository> {
            self.0.cache_repository(b, id)
        }
        async fn builder_credentials(&self) -> Result<Option<crate::registry::BuilderCredentials>> {
            Ok(Some(crate::registry::BuilderCredentials {
                host: self.location(),
                credentials: Credentials::basic("token-user", "t0ken"),
            }))
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
        let images = generic(&reg)
            .list_images(&Repository::listed("prod/builds/api"))
            .await
            .unwrap();
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
            .store(&Repository::listed("prod/builds/api"))
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
        let other = generic(&reg)
            .store(&Repository::listed("prod/builds/other"))
            .await
            .unwrap();
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
            d.warnings
                .iter()
                .any(|w| w.to_string().contains("passing over")),
            "{:?}",
            d.warnings
        );
    }
}
