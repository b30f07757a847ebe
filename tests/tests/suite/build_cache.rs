//! Build caches stay bounded: ten successive builds of one service with changing commits
//! (real `buildah` with throw-away storage, so every cache hit comes from the registry), then
//! an eleventh that still hits the cache for its unchanged slow step; a build in progress
//! (its lease) holds the bound off.
//!
//! Needs `buildah` (`apt-get install -y buildah`) and `busybox-static`; a missing tool fails
//! the test with its setup command.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use mirror_core::testing::{require_tool, TestRegistry};
use mirror_core::{Action, BuildSpec, Digest, Registry, Repository};

use super::build::{buildah, capture, mirror};

const KEEP: usize = 3;

/// A context whose Dockerfile has a slow step that prints a marker when it runs, and an app
/// file that changes per commit.
fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("api");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo SLOW-STEP-$((6*7)); /bin/busybox sleep 2; echo slow > /slow.txt\"]\n\
         COPY app.txt /app.txt\n\
         ENV BUILT=1\n",
    )
    .unwrap();
    let busybox = require_tool("busybox", "apt-get install -y busybox-static");
    std::fs::copy(&busybox, ctx.join("busybox")).unwrap();
    ctx
}

async fn cache_repository(reg: &TestRegistry) -> Repository {
    let repos = reg
        .generic_registry()
        .list_repositories("prod")
        .await
        .unwrap();
    let caches: Vec<Repository> = repos
        .into_iter()
        .filter(|r| r.name().contains("/cache-"))
        .collect();
    assert_eq!(caches.len(), 1, "{caches:?}");
    caches.into_iter().next().unwrap()
}

/// Distinct manifests (by digest) reachable by tag in the cache repository.
async fn entries(reg: &TestRegistry, repository: &Repository) -> HashSet<Digest> {
    reg.generic_registry()
        .list_images(repository)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect()
}

fn commit(n: usize) -> String {
    format!("{n:040x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_builds_keep_the_cache_bounded_and_the_eleventh_still_hits_it() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let mirror = mirror(&reg);
    let builder = buildah();
    let mut sizes = Vec::new();
    let mut evicted_total = 0;
    for n in 1..=10 {
        std::fs::write(ctx.join("app.txt"), format!("version {n}")).unwrap();
        let spec = BuildSpec::new(&ctx, commit(n)).with_cache_builds(KEEP);
        let d = mirror.build("api", &spec, &builder).await.unwrap();
        assert_eq!(d.action, Action::Built);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        evicted_total += d.cache_evicted.len();
        let cache = cache_repository(&reg).await;
        sizes.push(entries(&reg, &cache).await.len());
    }
    // Per build: an entry for the changed COPY, one for the ENV after it (which is also the
    // staged image); shared by all: the busybox COPY and the slow RUN; plus the history.
    let bound = 2 + 2 * KEEP + 1;
    println!("cache entries after each build: {sizes:?} (bound {bound}), deleted {evicted_total}");
    assert!(sizes.iter().all(|s| *s <= bound), "{sizes:?} over {bound}");
    assert!(
        evicted_total >= 2 * (10 - KEEP),
        "entries of old builds went: {evicted_total}"
    );

    // The eleventh build, with a new commit: the slow step comes from the cache.
    std::fs::write(ctx.join("app.txt"), "version 11").unwrap();
    let (sink, log) = capture();
    let spec = BuildSpec::new(&ctx, commit(11))
        .with_cache_builds(KEEP)
        .with_events(sink);
    let d = mirror.build("api", &spec, &builder).await.unwrap();
    assert_eq!(d.action, Action::Built);
    let log = log.lock().unwrap().join("\n");
    assert!(
        !log.contains("SLOW-STEP-42"),
        "the slow step ran again:\n{log}"
    );
    assert!(log.contains("Using cache"), "{log}");

    // The inventory counts the cache's storage, blobs once.
    let inventory = mirror.inventory().await.unwrap();
    let cache = inventory
        .repositories
        .iter()
        .find(|r| r.build_cache)
        .expect("the cache repository is in the inventory");
    let whole: u64 = cache.images.iter().filter_map(|i| i.size).sum();
    assert!(
        cache.stored_bytes > 0 && cache.stored_bytes < whole,
        "{} vs {whole}",
        cache.stored_bytes
    );
    assert!(
        cache.images.iter().all(|i| !i
            .tags
            .iter()
            .any(|t| mirror_core::mirror::is_cache_bookkeeping(t))),
        "the history is no image"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_in_progress_holds_the_bound_off() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let mirror = mirror(&reg);
    let builder = buildah();
    for n in 1..=2 {
        std::fs::write(ctx.join("app.txt"), format!("version {n}")).unwrap();
        let spec = BuildSpec::new(&ctx, commit(n)).with_cache_builds(1);
        mirror.build("api", &spec, &builder).await.unwrap();
    }
    let cache = cache_repository(&reg).await;
    let before = entries(&reg, &cache).await;
    // Another deployer's build has just taken its lease on the cache.
    let store = reg.generic_registry().store(&cache).await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let lease_tag = format!(
        "{}{now}.0123456789ab",
        mirror_core::mirror::CACHE_LEASE_TAG_PREFIX
    );
    let history = store
        .get_manifest(mirror_core::mirror::CACHE_HISTORY_TAG)
        .await
        .unwrap();
    store.put_manifest(&lease_tag, &history).await.unwrap();

    std::fs::write(ctx.join("app.txt"), "version 3").unwrap();
    let spec = BuildSpec::new(&ctx, commit(3)).with_cache_builds(1);
    let d = mirror.build("api", &spec, &builder).await.unwrap();
    assert!(d.cache_evicted.is_empty(), "{:?}", d.cache_evicted);
    let after = entries(&reg, &cache).await;
    assert!(
        before.is_subset(&after),
        "nothing went while the other build ran"
    );
}
