//! The scenarios that create repositories and push images.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::super::fixtures::push_fixture;
use super::super::{Fixture, TestImage, TestIndex};
use crate::digest::Digest;
use crate::image::{pushed_tag, ImageRecord, PUSHED_TAG_PREFIX};
use crate::registry::{Registry, Repository, RepositoryScope, RepositorySettings};
use crate::store::ImageStore;

#[allow(unused_imports)]
use super::*;

pub(crate) fn settings_a() -> RepositorySettings {
    RepositorySettings {
        retention: Some(Duration::from_secs(30 * 24 * 3600)),
        keep_previous: Some(3),
    }
}

pub(crate) fn settings_b() -> RepositorySettings {
    RepositorySettings {
        retention: Some(Duration::from_secs(7 * 24 * 3600)),
        keep_previous: Some(1),
    }
}

pub(crate) fn name_of(registry: &dyn Registry, scope: &RepositoryScope) -> Repository {
    registry
        .repository(scope)
        .unwrap_or_else(|e| panic!("{} repository({scope:?}) failed: {e}", who(registry)))
}

pub(crate) fn service_repo(registry: &dyn Registry, cluster: &str, service: &str) -> Repository {
    name_of(
        registry,
        &RepositoryScope::Service {
            cluster: cluster.to_string(),
            service: service.to_string(),
        },
    )
}

pub(crate) async fn ensure(
    registry: &dyn Registry,
    repository: &Repository,
    settings: &RepositorySettings,
    what: &str,
) {
    if let Err(e) = registry.ensure_repository(repository, settings).await {
        panic!(
            "{} {what}: ensure_repository({repository}, {settings:?}) failed: {e}",
            who(registry)
        );
    }
}

pub(crate) async fn store_of(
    registry: &dyn Registry,
    repository: &Repository,
) -> Arc<dyn ImageStore> {
    registry
        .store(repository)
        .await
        .unwrap_or_else(|e| panic!("{} store({repository}) failed: {e}", who(registry)))
}

/// Ensure twice: `ensure_repository` with the same settings twice succeeds, then with changed
/// settings (retention and `keep_previous` both changed) succeeds, then with no settings.
pub async fn ensure_twice(registry: &dyn Registry, cluster: &str) {
    let repo = service_repo(registry, cluster, "ensure-twice");
    ensure(registry, &repo, &settings_a(), "first call").await;
    ensure(registry, &repo, &settings_a(), "second call, same settings").await;
    ensure(
        registry,
        &repo,
        &settings_b(),
        "third call, changed settings",
    )
    .await;
    ensure(
        registry,
        &repo,
        &RepositorySettings::default(),
        "fourth call, no settings",
    )
    .await;
    let images = registry.list_images(&repo).await.unwrap_or_else(|e| {
        panic!(
            "{} list_images({repo}) after ensure failed: {e}",
            who(registry)
        )
    });
    assert!(
        images.is_empty(),
        "{} a freshly ensured repository {repo} lists images: {images:?}",
        who(registry)
    );
}

/// Concurrent ensure: [`CONCURRENT_ENSURES`] `ensure_repository` calls on one new repository
/// at once all succeed, and the repository is usable afterwards (an image pushed to it is
/// listed).
///
/// On a multi-thread runtime the calls run on as many OS threads (real parallelism, which is
/// what separate deployer processes do); on a current-thread runtime they run as concurrent
/// futures of one task.
pub async fn concurrent_ensure(registry: &dyn Registry, cluster: &str) {
    let who = who(registry);
    let repo = service_repo(registry, cluster, "concurrent-ensure");
    let settings = settings_a();
    let handle = tokio::runtime::Handle::current();
    let results: Vec<crate::error::Result<()>> = match handle.runtime_flavor() {
        tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(|| {
            let barrier = std::sync::Barrier::new(CONCURRENT_ENSURES);
            std::thread::scope(|s| {
                let threads: Vec<_> = (0..CONCURRENT_ENSURES)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            handle.block_on(registry.ensure_repository(&repo, &settings))
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| {
                        t.join().unwrap_or_else(|_| {
                            panic!("{who} an ensure_repository thread panicked")
                        })
                    })
                    .collect()
            })
        }),
        _ => {
            futures::future::join_all(
                (0..CONCURRENT_ENSURES).map(|_| registry.ensure_repository(&repo, &settings)),
            )
            .await
        }
    };
    let failures: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().err().map(|e| format!("call {i}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{who} {} of {CONCURRENT_ENSURES} concurrent ensure_repository({repo}) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let image = TestImage::builder().seed(0xc0c0).layer(512).build();
    let store = store_of(registry, &repo).await;
    push_as_mirror(registry, store.as_ref(), &image, &["v1"], SystemTime::now()).await;
    let images = list(registry, &repo).await;
    assert!(
        images.len() == 1 && &images[0].digest == image.digest(),
        "{who} after concurrent ensures, {repo} should list exactly the pushed image {}, got {images:?}",
        image.digest()
    );
}

/// Pushes `fixture` under `tags` the way [`crate::Mirror`] does: for registries that do not
/// record push times, first under the bookkeeping tag [`pushed_tag`]`(at, digest)`, then
/// under each real tag.
pub(crate) async fn push_as_mirror(
    registry: &dyn Registry,
    store: &dyn ImageStore,
    fixture: &dyn Fixture,
    tags: &[&str],
    at: SystemTime,
) {
    let manifest = fixture.top_manifest();
    let digest = &manifest.digest;
    let (first, rest) = if registry.capabilities().records_push_time {
        (tags[0].to_string(), &tags[1..])
    } else {
        (pushed_tag(at, digest), tags)
    };
    if let Err(e) = push_fixture(fixture, store, &first).await {
        panic!(
            "{} pushing {digest} as {first:?} to {} failed: {e}",
            who(registry),
            store.location()
        );
    }
    for tag in rest {
        if let Err(e) = store.put_manifest(tag, manifest).await {
            panic!(
                "{} tagging {digest} as {tag:?} in {} failed: {e}",
                who(registry),
                store.location()
            );
        }
    }
}

pub(crate) async fn list(registry: &dyn Registry, repository: &Repository) -> Vec<ImageRecord> {
    registry
        .list_images(repository)
        .await
        .unwrap_or_else(|e| panic!("{} list_images({repository}) failed: {e}", who(registry)))
}

/// Truncates to the millisecond, the resolution of bookkeeping tags.
pub(crate) fn to_millis(t: SystemTime) -> SystemTime {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Push, list, delete: an image tagged `v1` and `stable` and an index tagged `v2` are pushed
/// (bookkeeping tag first where the registry does not record push times); `list_images`
/// lists exactly those two with their tags (bookkeeping tags hidden), the repository, and a
/// push time (exactly the bookkeeping time, or within [`PUSH_TIME_TOLERANCE`] of the push for
/// registries recording it); `delete_image` of the image leaves only the index, its tags
/// (and bookkeeping tag) no longer resolve, the index still does; `list_repositories` of the
/// cluster contains the repository.
pub async fn push_list_delete(registry: &dyn Registry, cluster: &str) {
    let who = who(registry);
    let repo = service_repo(registry, cluster, "push-list-delete");
    ensure(registry, &repo, &settings_a(), "before pushing").await;
    let store = store_of(registry, &repo).await;

    let image = TestImage::builder()
        .seed(0x9051)
        .layers([2048, 512])
        .build();
    let index = TestIndex::linux_amd64_arm64(0x9052);
    let before = SystemTime::now();
    let at_image = SystemTime::now();
    push_as_mirror(
        registry,
        store.as_ref(),
        &image,
        &["v1", "stable"],
        at_image,
    )
    .await;
    let at_index = SystemTime::now();
    push_as_mirror(registry, store.as_ref(), &index, &["v2"], at_index).await;
    let after = SystemTime::now();

    let images = list(registry, &repo).await;
    assert_eq!(
        images.len(),
        2,
        "{who} {repo} should list exactly the pushed image and index (children of the index \
         are not images of their own), got {images:?}"
    );
    let expected = [
        (
            image.digest(),
            vec!["stable".to_string(), "v1".to_string()],
            at_image,
        ),
        (index.digest(), vec!["v2".to_string()], at_index),
    ];
    for (digest, tags, at) in &expected {
        let rec = images
            .iter()
            .find(|r| &&r.digest == digest)
            .unwrap_or_else(|| panic!("{who} {repo} does not list {digest}; it lists {images:?}"));
        assert_eq!(
            rec.repository,
            repo.name(),
            "{who} record of {digest} names the wrong repository: {rec:?}"
        );
        let mut got = rec.tags.clone();
        got.sort();
        assert_eq!(
            &got, tags,
            "{who} tags of {digest} in {repo} (bookkeeping tags must be hidden)"
        );
        assert!(
            !rec.tags.iter().any(|t| t.starts_with(PUSHED_TAG_PREFIX)),
            "{who} bookkeeping tag listed for {digest}: {rec:?}"
        );
        let pushed = rec
            .pushed_at
            .unwrap_or_else(|| panic!("{who} no push time listed for {digest} in {repo}: {rec:?}"));
        if registry.capabilities().records_push_time {
            assert!(
                pushed + PUSH_TIME_TOLERANCE >= before && pushed <= after + PUSH_TIME_TOLERANCE,
                "{who} push time of {digest} is {:?}, the push happened between {:?} and {:?} \
                 (tolerance {PUSH_TIME_TOLERANCE:?})",
                pushed,
                before,
                after
            );
        } else {
            assert_eq!(
                pushed,
                to_millis(*at),
                "{who} push time of {digest} should be the one of its bookkeeping tag"
            );
        }
    }

    if let Err(e) = registry.delete_image(&repo, image.digest()).await {
        panic!("{who} delete_image({repo}, {}) failed: {e}", image.digest());
    }
    let images = list(registry, &repo).await;
    assert!(
        images.len() == 1 && &images[0].digest == index.digest(),
        "{who} after deleting {} only the index {} should be left in {repo}, got {images:?}",
        image.digest(),
        index.digest()
    );
    assert_eq!(
        images[0].tags,
        vec!["v2".to_string()],
        "{who} tags of the index after the delete"
    );
    let mut gone = vec![
        "v1".to_string(),
        "stable".to_string(),
        image.digest().to_string(),
    ];
    if !registry.capabilities().records_push_time {
        gone.push(pushed_tag(at_image, image.digest()));
    }
    for reference in &gone {
        match store.head_manifest(reference).await {
            Ok(None) => {}
            Ok(Some(head)) => panic!(
                "{who} {reference:?} still resolves in {repo} after delete_image({}): {head:?}",
                image.digest()
            ),
            Err(e) => {
                panic!("{who} head_manifest({reference:?}) in {repo} after the delete failed: {e}")
            }
        }
    }
    for reference in ["v2".to_string(), index.digest().to_string()] {
        match store.head_manifest(&reference).await {
            Ok(Some(head)) if &head.digest == index.digest() => {}
            other => panic!(
                "{who} {reference:?} should still resolve to the index {} in {repo}, got {other:?}",
                index.digest()
            ),
        }
    }
    let tags = store
        .list_tags()
        .await
        .unwrap_or_else(|e| panic!("{who} list_tags of {repo} failed: {e}"));
    for t in &gone[..2] {
        assert!(
            !tags.contains(t),
            "{who} tag {t:?} still listed in {repo} after the delete: {tags:?}"
        );
    }

    let repos = registry
        .list_repositories(cluster)
        .await
        .unwrap_or_else(|e| panic!("{who} list_repositories({cluster:?}) failed: {e}"));
    assert!(
        repos.iter().any(|r| r.name() == repo.name()),
        "{who} list_repositories({cluster:?}) does not contain {repo}: {repos:?}"
    );
}

/// Repositories by cluster: after pushing one image into the Service, Cluster and Build
/// repositories of a cluster and of a second cluster whose id extends the first one's
/// (`<cluster>-x`, a prefix trap), `list_repositories` of each cluster returns exactly its
/// own three repositories.
pub async fn list_repositories_by_cluster(registry: &dyn Registry, cluster: &str) {
    let who = who(registry);
    let other = format!("{cluster}-x");
    let image = TestImage::builder().seed(0x7e90).layer(256).build();
    let mut expected: HashMap<&str, Vec<String>> = HashMap::new();
    for c in [cluster, other.as_str()] {
        let scopes = [
            RepositoryScope::Service {
                cluster: c.to_string(),
                service: "api".into(),
            },
            RepositoryScope::Cluster {
                cluster: c.to_string(),
            },
            RepositoryScope::Build {
                cluster: c.to_string(),
                service: "api".into(),
            },
        ];
        let mut names = Vec::new();
        for scope in &scopes {
            let repo = name_of(registry, scope);
            ensure(registry, &repo, &settings_a(), "before pushing").await;
            let store = store_of(registry, &repo).await;
            push_as_mirror(registry, store.as_ref(), &image, &["v1"], SystemTime::now()).await;
            names.push(repo.name().to_string());
        }
        names.sort();
        expected.insert(c, names);
    }
    for (c, names) in &expected {
        let mut repos: Vec<String> = registry
            .list_repositories(c)
            .await
            .unwrap_or_else(|e| panic!("{who} list_repositories({c:?}) failed: {e}"))
            .into_iter()
            .map(|r| r.name().to_string())
            .collect();
        repos.sort();
        assert_eq!(&repos, names, "{who} list_repositories({c:?})");
    }
}

/// Not found: `list_images` of a repository never created, and of one ensured but never
/// pushed, is `Ok(empty)`; `delete_image` of an absent digest is [`Error::NotFound`](crate::Error::NotFound) in both
/// and in a repository holding another image; `head_manifest` of an absent tag or digest is
/// `Ok(None)`.
pub async fn not_found(registry: &dyn Registry, cluster: &str) {
    let who = who(registry);
    let absent = Digest::sha256_of(format!("absent image of {cluster}").as_bytes());
    let never = service_repo(registry, cluster, "never-created");
    let empty = service_repo(registry, cluster, "ensured-empty");
    let full = service_repo(registry, cluster, "holding-one");

    let images = list(registry, &never).await;
    assert!(
        images.is_empty(),
        "{who} a repository never created ({never}) lists {images:?}"
    );
    ensure(registry, &empty, &settings_a(), "an empty repository").await;
    let images = list(registry, &empty).await;
    assert!(
        images.is_empty(),
        "{who} a repository never pushed ({empty}) lists {images:?}"
    );
    ensure(registry, &full, &settings_a(), "before pushing").await;
    let image = TestImage::builder().seed(0x404).layer(256).build();
    let full_store = store_of(registry, &full).await;
    push_as_mirror(
        registry,
        full_store.as_ref(),
        &image,
        &["v1"],
        SystemTime::now(),
    )
    .await;

    for repo in [&never, &empty, &full] {
        match registry.delete_image(repo, &absent).await {
            Err(e) if e.is_not_found() => {}
            Err(e) => panic!("{who} delete_image({repo}, absent {absent}) failed with {e:?}, expected Error::NotFound"),
            Ok(()) => panic!("{who} delete_image({repo}, absent {absent}) succeeded, expected Error::NotFound"),
        }
    }
    for repo in [&empty, &full] {
        let store = store_of(registry, repo).await;
        for reference in ["absent".to_string(), absent.to_string()] {
            match store.head_manifest(&reference).await {
                Ok(None) => {}
                other => panic!("{who} head_manifest({reference:?}) in {repo} should be Ok(None), got {other:?}"),
            }
        }
    }
    let images = list(registry, &full).await;
    assert!(
        images.len() == 1 && &images[0].digest == image.digest(),
        "{who} failed deletes of an absent digest changed {full}: {images:?}"
    );
}

/// Pull reference: for a service repository and a digest, `pull_reference` contains the
/// repository and ends with `@sha256:<hex>`.
pub async fn pull_reference(registry: &dyn Registry, cluster: &str) {
    let who = who(registry);
    let digest = Digest::sha256_of(b"pull reference");
    for scope in [
        RepositoryScope::Service {
            cluster: cluster.to_string(),
            service: "api".into(),
        },
        RepositoryScope::Cluster {
            cluster: cluster.to_string(),
        },
        RepositoryScope::Build {
            cluster: cluster.to_string(),
            service: "api".into(),
        },
    ] {
        let repo = name_of(registry, &scope);
        let reference = registry.pull_reference(&repo, &digest);
        assert!(
            reference.contains(repo.name()),
            "{who} pull_reference({repo}, {digest}) = {reference:?} does not name the repository"
        );
        assert!(
            reference.ends_with(&format!("@sha256:{}", digest.hex())),
            "{who} pull_reference({repo}, {digest}) = {reference:?} is not pinned by `@sha256:` digest"
        );
        assert_eq!(
            reference.matches('@').count(),
            1,
            "{who} pull_reference({repo}, {digest}) = {reference:?} has several `@`"
        );
    }
}
