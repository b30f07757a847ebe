//! End-to-end tests of builds from source: `Mirror::build` with the real `buildah` (storage
//! driver vfs, chroot isolation) pushing into a real distribution registry.
//!
//! Every build here uses throw-away buildah storage, so a cache hit can only come from the
//! remote cache in the registry. Images are `FROM scratch`; steps that need a program run
//! the static busybox copied into the context (no network, no base image).
//!
//! These tests need `buildah` (`apt-get install -y buildah`) and `busybox-static`; a missing
//! tool fails the test with its setup command. Only the buildx test returns early, printing
//! why, where `docker buildx version` does not work (no Docker engine on CI machines).

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tests::access_lines;

use mirror_core::builder::buildah::BUILDAH_SETUP;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::media::ParsedManifest;
use mirror_core::testing::{require_tool, TestRegistry};
use mirror_core::Repository;
use mirror_core::{
    Action, BuildEvent, BuildEventSink, BuildOutput, BuildRequest, BuildSpec, Buildah, Builder,
    Buildx, Error, GenericRegistry, ImageStore, Mirror, Registry, RepositoryScope, ServiceStrategy,
};

const CLUSTER: &str = "prod";
const COMMIT_1: &str = "1111111111111111111111111111111111111111";
const COMMIT_2: &str = "2222222222222222222222222222222222222222";

/// A Service-mode mirror of cluster `prod` keeping one previous image, no grace (also used by
/// `build_cache.rs`).
pub(crate) fn mirror(reg: &TestRegistry) -> Mirror {
    Mirror::builder(reg.generic_registry(), CLUSTER)
        .strategy(Arc::new(ServiceStrategy { keep_previous: 1 }))
        .eviction_grace(Duration::ZERO)
        .build()
        .unwrap()
}

/// Buildah with throw-away storage (also used by `build_cache.rs`).
pub(crate) fn buildah() -> Buildah {
    let program = require_tool("buildah", BUILDAH_SETUP);
    Buildah::new().program(program).ephemeral_storage(true)
}

fn build_repo(service: &str) -> String {
    GenericRegistry::new(RegistryClient::new("127.0.0.1:1", Credentials::Anonymous).unwrap())
        .repository(&RepositoryScope::Build {
            cluster: CLUSTER.into(),
            service: service.into(),
        })
        .unwrap()
        .name()
        .to_string()
}

async fn store(reg: &TestRegistry, repo: &str) -> Arc<dyn ImageStore> {
    reg.generic_registry()
        .store(&mirror_core::Repository::listed(repo))
        .await
        .unwrap()
}

async fn tags(reg: &TestRegistry, repo: &str) -> Vec<String> {
    let mut t = store(reg, repo).await.list_tags().await.unwrap_or_default();
    t.sort();
    t
}

/// A context directory holding `Dockerfile` and `app.txt` (and the static busybox when
/// `with_busybox`).
fn context(dir: &Path, name: &str, dockerfile: &str, app: &str, with_busybox: bool) -> PathBuf {
    let ctx = dir.join(name);
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    std::fs::write(ctx.join("app.txt"), app).unwrap();
    if with_busybox {
        let busybox = require_tool("busybox", "apt-get install -y busybox-static");
        let bytes = std::fs::read(&busybox).unwrap();
        // A dynamically linked busybox needs a loader, which a scratch image lacks.
        assert!(
            !has_elf_interpreter(&bytes),
            "{} is dynamically linked; install the static one with: \
             apt-get install -y busybox-static",
            busybox.display()
        );
        std::fs::write(ctx.join("busybox"), bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(ctx.join("busybox"), std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
    }
    ctx
}

/// True for a 64-bit little-endian ELF file with a `PT_INTERP` program header (dynamically
/// linked).
fn has_elf_interpreter(elf: &[u8]) -> bool {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        elf.get(at..at + 4) == Some(&3u32.to_le_bytes()[..])
    })
}

/// Counts the builds it forwards to the inner builder.
#[derive(Debug)]
struct Counting<B> {
    inner: B,
    calls: AtomicUsize,
}

impl<B: Builder> Counting<B> {
    fn new(inner: B) -> Self {
        Counting {
            inner,
            calls: AtomicUsize::new(0),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<B: Builder> Builder for Counting<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn build<'a, 'b, 'c>(
        &'a self,
        request: &'b BuildRequest,
    ) -> Pin<Box<dyn Future<Output = mirror_core::Result<BuildOutput>> + Send + 'c>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.build(request)
    }
}

/// An event sink keeping every log line (also used by `build_cache.rs`).
pub(crate) fn capture() -> (BuildEventSink, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    let sink: BuildEventSink = Arc::new(move |e: &BuildEvent| {
        if let BuildEvent::Log { line, .. } = e {
            l.lock().unwrap().push(line.clone());
        }
    });
    (sink, lines)
}

const SIMPLE: &str = "FROM scratch\nARG VERSION\nCOPY app.txt /app.txt\n";

#[tokio::test]
async fn first_build_pushes_then_same_inputs_skip_without_spawning_the_builder() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "api", SIMPLE, "v1", false);
    let m = mirror(&reg);
    let builder = Counting::new(buildah());
    let spec = BuildSpec::new(&ctx, COMMIT_1).with_env([("VERSION", "1"), ("HOME", "/root")]);

    let first = m.build("api", &spec, &builder).await.unwrap();
    assert_eq!(first.action, Action::Built);
    assert_eq!(builder.calls(), 1);
    assert_eq!(first.repository, build_repo("api"));
    assert!(first.tag.starts_with("111111111111-"), "{}", first.tag);
    assert_eq!(
        first.pull_reference,
        format!("{}/prod/builds/api@{}", reg.host(), first.digest)
    );
    let head = store(&reg, &first.repository)
        .await
        .head_manifest(&first.tag)
        .await
        .unwrap()
        .expect("the key tag is pushed");
    assert_eq!(head.digest, first.digest);
    // Staged in the cache repository, mounted into the build repository: no second upload.
    assert_eq!(first.bytes_uploaded, 0, "{first:?}");

    // Same inputs, and a builder that cannot even start: skipped with one manifest HEAD.
    let never = Counting::new(Buildah::new().program("/nonexistent/buildah"));
    let before = access_lines(&reg).len();
    let again = m.build("api", &spec, &never).await.unwrap();
    assert_eq!(again.action, Action::Skipped);
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.pull_reference, first.pull_reference);
    assert_eq!(never.calls(), 0, "the builder was never asked");
    let reqs: Vec<String> = access_lines(&reg).into_iter().skip(before).collect();
    assert_eq!(
        reqs,
        [format!("HEAD /v2/prod/builds/api/manifests/{}", first.tag)],
        "a skip costs one manifest HEAD"
    );

    // An environment variable the Dockerfile does not declare changes nothing.
    let other_env = BuildSpec::new(&ctx, COMMIT_1).with_env([
        ("VERSION", "1"),
        ("HOME", "/somewhere/else"),
        ("CI_JOB_ID", "4711"),
    ]);
    let skipped = m.build("api", &other_env, &never).await.unwrap();
    assert_eq!(skipped.action, Action::Skipped);
    assert_eq!(skipped.tag, first.tag);
    assert_eq!(never.calls(), 0);
}

#[tokio::test]
async fn declared_arg_dockerfile_and_commit_changes_rebuild_and_evict_older_builds() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "api", SIMPLE, "v1", false);
    let m = mirror(&reg);
    let builder = Counting::new(buildah());
    let base = BuildSpec::new(&ctx, COMMIT_1).with_env([("VERSION", "1")]);

    let first = m.build("api", &base, &builder).await.unwrap();
    assert_eq!(first.action, Action::Built);

    // A declared ARG changes.
    let arg = BuildSpec::new(&ctx, COMMIT_1).with_env([("VERSION", "2")]);
    let by_arg = m.build("api", &arg, &builder).await.unwrap();
    assert_eq!(by_arg.action, Action::Built);
    assert_ne!(by_arg.tag, first.tag);
    assert_eq!(builder.calls(), 2);

    // The Dockerfile changes.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("{SIMPLE}LABEL variant=two\n"),
    )
    .unwrap();
    let by_dockerfile = m.build("api", &arg, &builder).await.unwrap();
    assert_eq!(by_dockerfile.action, Action::Built);
    assert_ne!(by_dockerfile.tag, by_arg.tag);
    assert_eq!(builder.calls(), 3);

    // The commit changes (and with it the checked-out content).
    std::fs::write(ctx.join("app.txt"), "v2").unwrap();
    let commit = BuildSpec::new(&ctx, COMMIT_2).with_env([("VERSION", "2")]);
    let by_commit = m.build("api", &commit, &builder).await.unwrap();
    assert_eq!(by_commit.action, Action::Built);
    assert!(by_commit.tag.starts_with("222222222222-"));
    assert_eq!(builder.calls(), 4);

    // Service-mode eviction: the current build and one previous one stay.
    let images = reg
        .generic_registry()
        .list_images(&Repository::listed(&by_commit.repository))
        .await
        .unwrap();
    let digests: HashSet<_> = images.iter().map(|i| i.digest.clone()).collect();
    assert_eq!(
        digests,
        HashSet::from([by_commit.digest.clone(), by_dockerfile.digest.clone()]),
        "{images:?}"
    );
    let evicted: HashSet<_> = [&by_arg, &by_dockerfile, &by_commit]
        .iter()
        .flat_map(|d| d.evicted.iter().cloned())
        .collect();
    for old in [&first.digest, &by_arg.digest] {
        if !digests.contains(old) {
            assert!(evicted.contains(old), "{old} gone but not reported");
        }
    }
    assert!(images.iter().all(|i| i.pushed_at.is_some()), "{images:?}");
}

#[tokio::test]
async fn a_rebuild_after_a_commit_change_reuses_the_remote_cache_for_the_slow_step() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = "FROM scratch\n\
        COPY busybox /bin/busybox\n\
        RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo SLOW-STEP-$((6*7)); /bin/busybox sleep 4; echo slow > /slow.txt\"]\n\
        COPY app.txt /app.txt\n";
    let ctx = context(dir.path(), "api", dockerfile, "v1", true);
    let m = mirror(&reg);

    let (sink, log1) = capture();
    let started = Instant::now();
    let first = m
        .build(
            "api",
            &BuildSpec::new(&ctx, COMMIT_1).with_events(sink),
            &buildah(),
        )
        .await
        .unwrap();
    let first_time = started.elapsed();
    assert_eq!(first.action, Action::Built);

    // A new commit: the app changes, the slow step does not. Fresh local storage: only the
    // registry holds the cache.
    std::fs::write(ctx.join("app.txt"), "v2").unwrap();
    let (sink, log2) = capture();
    let started = Instant::now();
    let second = m
        .build(
            "api",
            &BuildSpec::new(&ctx, COMMIT_2).with_events(sink),
            &buildah(),
        )
        .await
        .unwrap();
    let second_time = started.elapsed();
    assert_eq!(second.action, Action::Built);
    assert_ne!(second.digest, first.digest);
    println!(
        "cache test: first build {:.2}s (slow step ran), second build {:.2}s (cache)",
        first_time.as_secs_f64(),
        second_time.as_secs_f64()
    );

    let log1 = log1.lock().unwrap().join("\n");
    let log2 = log2.lock().unwrap().join("\n");
    // The step prints the marker only when it runs (the log also shows the step's text,
    // which holds `$((6*7))`, not `42`).
    assert!(log1.contains("SLOW-STEP-42"), "{log1}");
    assert!(
        !log2.contains("SLOW-STEP-42"),
        "the slow step ran again:\n{log2}"
    );
    assert!(log2.contains("Cache pulled from remote"), "{log2}");
    assert!(log2.contains("Using cache"), "{log2}");
    // The app layer was rebuilt, not taken from the cache.
    assert!(log2.contains("COPY app.txt /app.txt"), "{log2}");

    // The cache is this service's own: one repository below its build repository.
    let repos = reg
        .generic_registry()
        .list_repositories(CLUSTER)
        .await
        .unwrap();
    let caches: Vec<&str> = repos
        .iter()
        .map(|r| r.name())
        .filter(|r| r.contains("/cache-"))
        .collect();
    assert_eq!(caches.len(), 1, "{repos:?}");
    assert!(caches[0].starts_with("prod/builds/api/cache-"), "{repos:?}");
}

#[tokio::test]
async fn a_clone_service_gets_the_image_without_a_build_and_without_uploads() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "api", SIMPLE, "v1", false);
    // The clone builds from its own checkout of the same commit.
    let clone_ctx = context(dir.path(), "api-clone", SIMPLE, "v1", false);
    let m = mirror(&reg);
    let builder = Counting::new(buildah());
    let original = m
        .build(
            "api",
            &BuildSpec::new(&ctx, COMMIT_1).with_env([("VERSION", "1")]),
            &builder,
        )
        .await
        .unwrap();
    assert_eq!(builder.calls(), 1);

    let never = Counting::new(Buildah::new().program("/nonexistent/buildah"));
    let before = access_lines(&reg).len();
    let clone = m
        .build(
            "api-staging",
            &BuildSpec::new(&clone_ctx, COMMIT_1).with_env([("VERSION", "1"), ("STAGE", "x")]),
            &never,
        )
        .await
        .unwrap();
    assert_eq!(never.calls(), 0, "no build for a clone");
    assert_eq!(clone.action, Action::Copied);
    assert_eq!(clone.tag, original.tag);
    assert_eq!(clone.digest, original.digest);
    assert_eq!(clone.repository, build_repo("api-staging"));
    assert_eq!(clone.bytes_uploaded, 0);
    assert_eq!(clone.blobs_uploaded, 0);
    assert!(clone.blobs_mounted > 0, "{clone:?}");
    let reqs: Vec<String> = access_lines(&reg).into_iter().skip(before).collect();
    assert!(
        !reqs
            .iter()
            .any(|r| r.starts_with("PATCH ")
                || (r.starts_with("PUT ") && r.contains("/blobs/uploads/"))),
        "no blob upload: {reqs:?}"
    );
    let head = store(&reg, &clone.repository)
        .await
        .head_manifest(&clone.tag)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.digest, original.digest);
}

#[tokio::test]
async fn a_failing_dockerfile_reports_the_log_tail_and_tags_nothing() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "api", SIMPLE, "v1", true);
    let m = mirror(&reg);
    let good = m
        .build("api", &BuildSpec::new(&ctx, COMMIT_1), &buildah())
        .await
        .unwrap();
    let repo = good.repository.clone();
    let tags_before = tags(&reg, &repo).await;

    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo about-to-fail-7f3a >&2; exit 42\"]\n",
    )
    .unwrap();
    let spec = BuildSpec::new(&ctx, COMMIT_2);
    let key_tag = spec.plan("buildah").unwrap().key.tag();
    let err = m.build("api", &spec, &buildah()).await.unwrap_err();
    let Error::BuildFailed {
        reference,
        status,
        log_tail,
    } = &err
    else {
        panic!("expected BuildFailed, got {err}")
    };
    assert!(reference.ends_with(&format!(":{key_tag}")), "{reference}");
    assert!(status.contains("exit status"), "{status}");
    assert!(log_tail.contains("about-to-fail-7f3a"), "{log_tail}");
    assert!(err.to_string().contains("about-to-fail-7f3a"));

    // Nothing tagged anywhere; the previous image is still deployable.
    assert_eq!(tags(&reg, &repo).await, tags_before);
    for r in reg
        .generic_registry()
        .list_repositories(CLUSTER)
        .await
        .unwrap()
    {
        assert!(
            !tags(&reg, r.name()).await.contains(&key_tag),
            "{key_tag} tagged in {r}"
        );
    }
    let head = store(&reg, &repo)
        .await
        .head_manifest(&good.tag)
        .await
        .unwrap()
        .expect("the previous image is still there");
    assert_eq!(head.digest, good.digest);
}

#[tokio::test]
async fn a_two_platform_build_yields_an_index_holding_both() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    // COPY only: no step runs a program, so no emulation is needed for arm64.
    let ctx = context(
        dir.path(),
        "api",
        "FROM scratch\nCOPY app.txt /app.txt\n",
        "v1",
        false,
    );
    let m = mirror(&reg);
    let d = m
        .build(
            "api",
            &BuildSpec::new(&ctx, COMMIT_1).with_platforms(["linux/amd64", "linux/arm64"]),
            &buildah(),
        )
        .await
        .unwrap();
    assert_eq!(d.action, Action::Built);
    let s = store(&reg, &d.repository).await;
    let index = s.get_manifest(&d.tag).await.unwrap();
    let platforms: HashSet<String> = match index.parse("index").unwrap() {
        ParsedManifest::Index { manifests } => manifests
            .iter()
            .map(|m| m.platform.as_ref().expect("platform").to_string())
            .collect(),
        ParsedManifest::Image { .. } => panic!("an image, not an index"),
    };
    assert_eq!(
        platforms,
        HashSet::from(["linux/amd64".to_string(), "linux/arm64".to_string()])
    );
    // Every child is in the build repository.
    if let ParsedManifest::Index { manifests } = index.parse("index").unwrap() {
        for child in manifests {
            assert!(s
                .head_manifest(&child.digest.to_string())
                .await
                .unwrap()
                .is_some());
        }
    }
}

fn process_running(needle: &[&str]) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        needle.iter().all(|n| args.iter().any(|a| a == n))
    })
}

#[tokio::test]
async fn a_build_that_runs_too_long_is_killed_with_its_steps() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(
        dir.path(),
        "api",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"137\"]\n",
        "v1",
        true,
    );
    let m = mirror(&reg);
    // Watch for the step, to know it was running when the build was killed.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let mut seen = false;
            while !done.load(Ordering::SeqCst) {
                seen |= process_running(&["sleep", "137"]);
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };
    let started = Instant::now();
    let err = m
        .build(
            "api",
            &BuildSpec::new(&ctx, COMMIT_1).with_timeout(Duration::from_secs(8)),
            &buildah(),
        )
        .await
        .unwrap_err();
    done.store(true, Ordering::SeqCst);
    assert!(watcher.await.unwrap(), "the slow step never started");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        matches!(&err, Error::BuildFailed { status, .. } if status.contains("timed out")),
        "{err}"
    );
    for _ in 0..40 {
        if !process_running(&["sleep", "137"]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !process_running(&["sleep", "137"]),
        "the RUN step outlived the build"
    );
    assert!(tags(&reg, &build_repo("api")).await.is_empty());
}

/// Runs only where `docker buildx version` works (it needs a Docker engine or a BuildKit
/// builder, which CI machines do not have): elsewhere it prints why and returns. The
/// command line and auth file of the buildx backend are tested without it in
/// `mirror-core` (`builder::buildx::tests`).
#[tokio::test]
async fn buildx_end_to_end_runs_only_where_docker_buildx_works() {
    let why_not = match std::process::Command::new("docker")
        .args(["buildx", "version"])
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "`docker buildx version` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run `docker`: {e}")),
    };
    if let Some(why) = why_not {
        println!(
            "SKIPPED buildx end-to-end test: {why}. The buildx command line, auth file and \
             failure handling are tested without it in mirror-core (builder::buildx::tests)."
        );
        return;
    }
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), "api", SIMPLE, "v1", false);
    let m = mirror(&reg);
    let builder = Counting::new(Buildx::new());
    let spec = BuildSpec::new(&ctx, COMMIT_1).with_env([("VERSION", "1")]);
    let d = m.build("api", &spec, &builder).await.unwrap();
    assert_eq!(d.action, Action::Built);
    let again = m.build("api", &spec, &builder).await.unwrap();
    assert_eq!(again.action, Action::Skipped);
    assert_eq!(builder.calls(), 1);
}
