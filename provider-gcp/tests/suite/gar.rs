//! `ArtifactRegistry` against the Artifact Registry emulator (see `support/mod.rs`): repository
//! creation through polled operations, labels, cleanup policies and their update masks,
//! pagination, deletion of exactly one version, error mapping, token refresh, and the upload
//! mode of the data plane.

use provider_gcp::testing as support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::registry::BuildCapability as _;
use mirror_core::testing::{Fault, FaultProxy, Rule, TestImage, TestIndex};
use mirror_core::{
    ClusterStrategy, Error, Mirror, Registry, Repository, RepositoryScope, RepositorySettings,
    ServiceStrategy, Source,
};
use provider_gcp::naming::cluster_hash;
use provider_gcp::ArtifactRegistry;
use serde_json::{json, Value};
use support::{FakeGar, PROJECT};

const DAY: u64 = 86_400;

fn service(cluster: &str, service: &str) -> RepositoryScope {
    RepositoryScope::Service {
        cluster: cluster.into(),
        service: service.into(),
    }
}

fn settings(retention: Option<u64>, keep: Option<usize>) -> RepositorySettings {
    RepositorySettings {
        retention: retention.map(Duration::from_secs),
        keep_previous: keep,
    }
}

/// Names the scope, ensures its repository; (repository, repository id).
async fn ensured(
    gar: &ArtifactRegistry,
    scope: &RepositoryScope,
    s: &RepositorySettings,
) -> (Repository, String) {
    let name = gar.repository(scope).unwrap();
    gar.ensure_repository(&name, s)
        .await
        .unwrap_or_else(|e| panic!("ensure_repository({name}): {e}"));
    let id = gar.parse_repository(name.name()).unwrap().0.to_string();
    (name, id)
}

#[tokio::test]
async fn repositories_are_created_through_a_polled_operation_with_labels_and_policies() {
    let fake = FakeGar::start().await;
    fake.operations().set_pending_polls(3);
    let gar = fake.gar().await;
    let (name, id) = ensured(&gar, &service("Prod EU", "api"), &settings(None, Some(2))).await;
    assert_eq!(name, format!("{PROJECT}/{id}/image"));
    assert!(id.starts_with("mirror-prod-eu-svc-api-"), "{id}");
    assert_eq!(fake.calls("repositories.create"), 1);
    assert_eq!(
        fake.calls("operations.get"),
        3,
        "the creation operation is polled until done"
    );
    let repo = fake.repository(&id).expect("created");
    assert_eq!(repo["format"], "DOCKER");
    assert_eq!(repo["mode"], "STANDARD_REPOSITORY");
    let labels = &repo["labels"];
    assert_eq!(labels["managed-by"], "mirror-core");
    assert_eq!(labels["mirror-scope"], "service");
    assert_eq!(labels["mirror-cluster"], cluster_hash("Prod EU").as_str());
    assert_eq!(labels["cluster"], "prod_eu");
    assert_eq!(labels["service"], "api");
    assert_eq!(
        repo["cleanupPolicies"],
        json!({"mirror-core-anchors": {"id": "mirror-core-anchors", "action": "KEEP",
            "condition": {"tagState": "TAGGED", "tagPrefixes": ["mirror.anchor."], "packageNamePrefixes": ["image"]}},
            "mirror-core-keep": {"id": "mirror-core-keep", "action": "KEEP",
            "mostRecentVersions": {"keepCount": 3, "packageNamePrefixes": ["image"]}}})
    );
    // The repository is usable right away: the operation was waited for.
    let image = TestImage::builder().seed(1).layer(300).build();
    let store = gar.store(&name).await.unwrap();
    image.push(store.as_ref(), "v1").await.unwrap();

    // Ensured again with the same settings: "already exists", read, nothing to patch.
    let gar2 = fake.gar().await;
    let name2 = gar2.repository(&service("Prod EU", "api")).unwrap();
    gar2.ensure_repository(&name2, &settings(None, Some(2)))
        .await
        .unwrap();
    assert_eq!(fake.calls("repositories.create"), 2);
    assert_eq!(fake.calls("repositories.get"), 1);
    assert!(fake.patches().is_empty(), "{:?}", fake.patches());
}

#[tokio::test]
async fn cleanup_policies_are_patched_with_an_update_mask_only_when_they_change() {
    let fake = FakeGar::start().await;
    let gar = fake.gar().await;
    let scope = RepositoryScope::Cluster {
        cluster: "prod".into(),
    };
    let (name, id) = ensured(&gar, &scope, &settings(Some(7 * DAY), None)).await;
    assert_eq!(
        fake.repository(&id).unwrap()["cleanupPolicies"],
        json!({"mirror-core-anchors": {"id": "mirror-core-anchors", "action": "KEEP",
            "condition": {"tagState": "TAGGED", "tagPrefixes": ["mirror.anchor."], "packageNamePrefixes": ["image"]}},
            "mirror-core-retention": {"id": "mirror-core-retention", "action": "DELETE",
            "condition": {"tagState": "ANY", "olderThan": "604800s", "packageNamePrefixes": ["image"]}}}),
        "the keep policy of anchored images comes with the delete policy, exactly as documented"
    );
    // Someone adds a policy of their own, and the service reformats ours.
    let mut repo = fake.repository(&id).unwrap();
    repo["cleanupPolicies"]["mirror-core-retention"]["condition"]["olderThan"] =
        json!("604800.000s");
    repo["cleanupPolicies"]["team-untagged"] = json!({"id": "team-untagged", "action": "DELETE",
        "condition": {"tagState": "UNTAGGED", "olderThan": "3600s"}});
    repo["labels"]["team"] = json!("platform");
    fake.put_repository(&id, repo);

    gar.ensure_repository(&name, &settings(Some(7 * DAY), None))
        .await
        .unwrap();
    assert!(
        fake.patches().is_empty(),
        "same meaning: no patch, got {:?}",
        fake.patches()
    );

    gar.ensure_repository(&name, &settings(Some(30 * DAY), None))
        .await
        .unwrap();
    assert_eq!(
        fake.patches(),
        vec![(id.clone(), "cleanupPolicies".to_string())]
    );
    let repo = fake.repository(&id).unwrap();
    assert_eq!(
        repo["cleanupPolicies"]["mirror-core-retention"]["condition"]["olderThan"],
        "2592000s"
    );
    assert_eq!(
        repo["cleanupPolicies"]["team-untagged"]["condition"]["tagState"],
        "UNTAGGED"
    );
    assert_eq!(
        repo["labels"]["team"], "platform",
        "foreign labels are kept"
    );

    // No retention any more: our policy goes, theirs stays.
    gar.ensure_repository(&name, &settings(None, None))
        .await
        .unwrap();
    let repo = fake.repository(&id).unwrap();
    let keys: Vec<&String> = repo["cleanupPolicies"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(keys, vec!["team-untagged"]);

    // Labels missing on a repository created by someone else are added, with their mask.
    let mut repo = fake.repository(&id).unwrap();
    repo["labels"] = json!({"team": "platform"});
    fake.put_repository(&id, repo);
    gar.ensure_repository(&name, &settings(None, None))
        .await
        .unwrap();
    assert_eq!(fake.patches().last().unwrap().1, "labels");
    let labels = &fake.repository(&id).unwrap()["labels"];
    assert_eq!(labels["mirror-cluster"], cluster_hash("prod").as_str());
    assert_eq!(labels["team"], "platform");

    // With cleanup policies turned off, nothing is touched.
    let off = fake
        .builder()
        .cleanup_policies(false)
        .build()
        .await
        .unwrap();
    let name = off.repository(&scope).unwrap();
    let before = fake.patches().len();
    off.ensure_repository(&name, &settings(Some(DAY), Some(3)))
        .await
        .unwrap();
    assert_eq!(fake.patches().len(), before);

    // Dry run is applied with the policies.
    let dry = fake.builder().cleanup_dry_run(true).build().await.unwrap();
    let name = dry.repository(&scope).unwrap();
    dry.ensure_repository(&name, &settings(Some(DAY), None))
        .await
        .unwrap();
    assert_eq!(
        fake.patches().last().unwrap().1,
        "cleanupPolicies,cleanupPolicyDryRun"
    );
    assert_eq!(fake.repository(&id).unwrap()["cleanupPolicyDryRun"], true);
}

#[tokio::test]
async fn operations_that_never_finish_or_fail_are_typed_errors() {
    let fake = FakeGar::start().await;
    fake.operations().set_pending_polls(1_000_000);
    let gar = fake
        .builder()
        .operation_timeout(Duration::from_millis(800))
        .build()
        .await
        .unwrap();
    let name = gar.repository(&service("c", "slow")).unwrap();
    let err = gar
        .ensure_repository(&name, &RepositorySettings::default())
        .await
        .unwrap_err();
    match &err {
        Error::Http {
            status, message, ..
        } => {
            assert_eq!(*status, 504, "{err}");
            assert!(
                message.contains("DEADLINE_EXCEEDED") && message.contains("operations/"),
                "{err}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(fake.calls("operations.get") >= 2);
}

#[tokio::test]
async fn listings_follow_every_page() {
    let fake = FakeGar::start().await;
    fake.set_page_size(2);
    let gar = fake.gar().await;
    let (name, _) = ensured(&gar, &service("c", "api"), &settings(None, Some(1))).await;
    let store = gar.store(&name).await.unwrap();
    let mut digests = HashSet::new();
    for i in 0..5u64 {
        let img = TestImage::builder().seed(100 + i).layer(128).build();
        img.push(store.as_ref(), &format!("v{i}")).await.unwrap();
        digests.insert(img.digest().clone());
    }
    let before = fake.calls("dockerImages.list");
    let images = gar.list_images(&name).await.unwrap();
    assert_eq!(
        images
            .iter()
            .map(|r| r.digest.clone())
            .collect::<HashSet<_>>(),
        digests
    );
    assert!(images
        .iter()
        .all(|r| r.pushed_at.is_some() && r.size.unwrap_or(0) > 128));
    assert_eq!(
        fake.calls("dockerImages.list") - before,
        3,
        "5 images in pages of 2"
    );

    for s in ["a", "b", "c", "d"] {
        ensured(&gar, &service("c", s), &RepositorySettings::default()).await;
    }
    ensured(&gar, &service("other", "a"), &RepositorySettings::default()).await;
    let before = fake.calls("repositories.list");
    let repos = gar.list_repositories("c").await.unwrap();
    assert_eq!(repos.len(), 5, "{repos:?}");
    assert!(fake.calls("repositories.list") - before >= 3);
}

#[tokio::test]
async fn deleting_an_image_deletes_exactly_one_version() {
    let fake = FakeGar::start().await;
    let gar = fake.gar().await;
    let (name, id) = ensured(&gar, &service("c", "api"), &settings(None, Some(1))).await;
    let store = gar.store(&name).await.unwrap();
    let a = TestImage::builder().seed(11).layer(200).build();
    let b = TestImage::builder().seed(12).layer(200).build();
    let c = TestImage::builder().seed(13).layer(200).build();
    a.push(store.as_ref(), "a1").await.unwrap();
    store.put_manifest("a2", a.manifest()).await.unwrap();
    b.push(store.as_ref(), "b").await.unwrap();
    // Pushed by digest only: an untagged version.
    c.push_blobs(store.as_ref()).await.unwrap();
    store
        .put_manifest(&c.digest().to_string(), c.manifest())
        .await
        .unwrap();
    // A build cache beside the image package.
    let cache = gar.cache_repository(&name, "0123abcd").unwrap();
    let cache_store = gar.store(&cache).await.unwrap();
    a.push(cache_store.as_ref(), "cache").await.unwrap();

    let listed: HashSet<_> = gar
        .list_images(&name)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.digest)
        .collect();
    assert_eq!(
        listed.len(),
        3,
        "the untagged version is listed, the cache is not"
    );

    gar.delete_image(&name, a.digest()).await.unwrap();
    assert_eq!(
        fake.deleted_versions(),
        vec![format!("{id}/image@{}", a.digest())]
    );
    assert_eq!(fake.calls("versions.delete"), 1);
    assert!(fake.package_deletes().is_empty());
    let left = gar.list_images(&name).await.unwrap();
    let left: HashSet<_> = left.into_iter().map(|r| r.digest).collect();
    assert_eq!(
        left,
        [b.digest().clone(), c.digest().clone()]
            .into_iter()
            .collect()
    );
    for tag in ["a1", "a2"] {
        assert!(
            store.head_manifest(tag).await.unwrap().is_none(),
            "{tag} is gone with its version"
        );
    }
    assert!(
        cache_store.head_manifest("cache").await.unwrap().is_some(),
        "the cache package is untouched"
    );

    // Absent now: NotFound naming the image, and still no package deletion.
    let err = gar.delete_image(&name, a.digest()).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(
        err.to_string().contains(&format!("{name}@{}", a.digest())),
        "{err}"
    );
    assert!(fake.package_deletes().is_empty());
}

#[tokio::test]
async fn deleting_an_index_deletes_its_platform_manifests_unless_another_index_uses_them() {
    let fake = FakeGar::start().await;
    let gar = fake.gar().await;
    let (name, id) = ensured(&gar, &service("c", "multi"), &RepositorySettings::default()).await;
    let store = gar.store(&name).await.unwrap();
    let amd = TestImage::builder()
        .seed(21)
        .layer(100)
        .platform("linux/amd64")
        .build();
    let arm = TestImage::builder()
        .seed(22)
        .layer(100)
        .platform("linux/arm64")
        .build();
    let arm2 = TestImage::builder()
        .seed(23)
        .layer(100)
        .platform("linux/arm64")
        .build();
    let first = TestIndex::from_images(vec![amd.clone(), arm.clone()]);
    let second = TestIndex::from_images(vec![amd.clone(), arm2.clone()]);
    first.push(store.as_ref(), "v1").await.unwrap();
    second.push(store.as_ref(), "v2").await.unwrap();
    let listed = gar.list_images(&name).await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "platform manifests are not images of their own: {listed:?}"
    );

    gar.delete_image(&name, first.digest()).await.unwrap();
    let deleted: HashSet<String> = fake.deleted_versions().into_iter().collect();
    let expected: HashSet<String> = [first.digest(), arm.digest()]
        .iter()
        .map(|d| format!("{id}/image@{d}"))
        .collect();
    assert_eq!(
        deleted, expected,
        "the index and its unshared platform manifest"
    );
    assert!(store
        .head_manifest(&amd.digest().to_string())
        .await
        .unwrap()
        .is_some());
    assert!(store.head_manifest("v2").await.unwrap().is_some());
    assert!(fake.package_deletes().is_empty());
    let left = gar.list_images(&name).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(&left[0].digest, second.digest());
}

#[tokio::test]
async fn api_errors_map_to_typed_errors_naming_the_repository() {
    let fake = FakeGar::start().await;
    let gar = fake.gar().await;
    let (name, id) = ensured(&gar, &service("c", "api"), &RepositorySettings::default()).await;

    fake.inject("dockerImages.list", 1, 403, "PERMISSION_DENIED");
    match gar.list_images(&name).await.unwrap_err() {
        Error::Denied {
            registry,
            location,
            message,
        } => {
            assert!(registry.starts_with("gcp:"), "{registry}");
            assert!(location.contains(&id), "{location}");
            assert!(message.contains("PERMISSION_DENIED"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    fake.inject("dockerImages.list", 100, 429, "RESOURCE_EXHAUSTED");
    let before = fake.calls("dockerImages.list");
    let err = gar.list_images(&name).await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    assert_eq!(
        fake.calls("dockerImages.list") - before,
        6,
        "retried by the policy, then given up"
    );

    let fake2 = FakeGar::start().await;
    let gar2 = fake2.gar().await;
    let (name2, _) = ensured(&gar2, &service("c", "api"), &RepositorySettings::default()).await;
    fake2.inject("dockerImages.list", 2, 503, "UNAVAILABLE");
    fake2.inject("repositories.get", 1, 500, "INTERNAL");
    assert!(
        gar2.list_images(&name2).await.unwrap().is_empty(),
        "transient errors are retried"
    );
    gar2.ensure_repository(&name2, &RepositorySettings::default())
        .await
        .unwrap();

    fake2.inject("versions.delete", 1, 404, "NOT_FOUND");
    let d = mirror_core::Digest::sha256_of(b"x");
    let err = gar2.delete_image(&name2, &d).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "manifest",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unauthenticated_answer_is_retried_once_with_a_token_and_then_reported() {
    let fake = FakeGar::start().await;
    let gar = fake.gar().await;
    let (name, _) = ensured(&gar, &service("c", "api"), &RepositorySettings::default()).await;
    fake.inject("dockerImages.list", 1, 401, "UNAUTHENTICATED");
    assert!(gar.list_images(&name).await.unwrap().is_empty());
    fake.inject("dockerImages.list", 2, 401, "UNAUTHENTICATED");
    let err = gar.list_images(&name).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_tokens_are_refreshed_before_they_expire() {
    let fake = FakeGar::start().await;
    fake.oauth().set_lifetime(Duration::from_secs(4));
    let gar = fake.gar().await;
    let (name, _) = ensured(&gar, &service("c", "api"), &RepositorySettings::default()).await;
    // A burst on a cold cache costs one token.
    let gar2 = fake.gar().await;
    let before = fake.oauth().hits();
    let all = futures::future::join_all((0..16).map(|_| gar2.list_images(&name))).await;
    assert!(all.iter().all(|r| r.is_ok()));
    assert_eq!(
        fake.oauth().hits() - before,
        1,
        "one token for 16 concurrent calls"
    );

    let store = gar.store(&name).await.unwrap();
    let mut pushed = 0;
    let started = std::time::Instant::now();
    // Work for three token lifetimes; the half-life refresh keeps every request authorized.
    while started.elapsed() < Duration::from_secs(10) {
        let img = TestImage::builder().seed(500 + pushed).layer(64).build();
        img.push(store.as_ref(), &format!("t{pushed}"))
            .await
            .unwrap();
        gar.list_images(&name).await.unwrap();
        pushed += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(
        fake.oauth().rejected().is_empty(),
        "an expired token was used: {:?}",
        fake.oauth().rejected()
    );
    assert!(
        fake.data_unauthorized() > 0,
        "the data plane authenticated through the challenge"
    );
    let tokens = gar.credentials().fetches();
    assert!(
        (4..=8).contains(&tokens),
        "10 s of 4 s tokens refreshed half-way: {tokens} fetches"
    );
    assert_eq!(gar.list_images(&name).await.unwrap().len() as u64, pushed);
}

#[tokio::test]
async fn token_endpoint_failures_are_credential_errors_without_secrets() {
    let fake = FakeGar::start().await;
    fake.oauth().fail_next(100);
    let gar = fake.gar().await;
    let name = gar.repository(&service("c", "api")).unwrap();
    let err = gar
        .ensure_repository(&name, &RepositorySettings::default())
        .await
        .unwrap_err();
    match &err {
        Error::Credentials { registry, reason } => {
            assert!(registry.starts_with("gcp:"), "{registry}");
            assert!(
                reason.contains(support::CLIENT_EMAIL) && reason.contains("/token"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{err:?}").contains("PRIVATE KEY"));
    assert!(!format!("{gar:?}").contains("PRIVATE KEY"));
}

#[tokio::test]
async fn the_token_uri_can_be_overridden() {
    let fake = FakeGar::start().await;
    let key = fake.dir().join("elsewhere.json");
    std::fs::write(&key, support::key_json("http://127.0.0.1:9/never")).unwrap();
    let gar = fake
        .builder()
        .credentials_file(&key)
        .token_uri(fake.token_uri())
        .build()
        .await
        .unwrap();
    ensured(&gar, &service("c", "api"), &RepositorySettings::default()).await;
    assert_eq!(fake.oauth().hits(), 1);
    // The project comes from the key when not set.
    let gar = provider_gcp::ArtifactRegistryBuilder::new()
        .location(support::LOCATION)
        .endpoint(fake.endpoint())
        .docker_host(fake.docker_host())
        .credentials_file(fake.key_file())
        .build()
        .await
        .unwrap();
    assert_eq!(gar.project(), PROJECT);
}

#[tokio::test]
async fn the_chunked_fallback_is_never_chosen() {
    let fake = FakeGar::start().await;
    let proxy = FaultProxy::start(&fake.docker_host());
    let gar = fake
        .builder()
        .docker_host(proxy.host())
        .build()
        .await
        .unwrap();
    let (name, _) = ensured(&gar, &service("c", "api"), &RepositorySettings::default()).await;
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        Fault::Status {
            status: 413,
            retry_after: None,
        },
        1000,
    ));
    let image = TestImage::builder().seed(77).layer(4096).build();
    let store = gar.store(&name).await.unwrap();
    let err = image.push(store.as_ref(), "v1").await.unwrap_err();
    assert!(
        matches!(err, Error::Http { status: 413, .. }),
        "a refused monolithic upload is a typed error: {err:?}"
    );
    let requests = proxy.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("PUT ")),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.starts_with("PATCH ")),
        "a chunked upload was attempted: {requests:?}"
    );
    assert_eq!(fake.data_patches(), 0);

    // Control: the core client in its default mode does switch to chunks here, so the
    // assertion above would catch it.
    let creds = match gar.builder_credentials().await.unwrap() {
        Some(c) => {
            assert_eq!(c.host, proxy.host());
            c.credentials
        }
        None => panic!("no builder credentials"),
    };
    assert!(
        matches!(&creds, Credentials::Basic { username, .. } if username == "oauth2accesstoken")
    );
    let auto = RegistryClient::builder(&proxy.host())
        .credentials(creds)
        .build()
        .unwrap();
    let auto_store = auto.repository(name.name()).unwrap();
    // The first refused PUT switches the client to chunks; the next upload sends them.
    let _ = image.push(&auto_store, "v1").await;
    let _ = image.push(&auto_store, "v1").await;
    assert!(proxy.requests().iter().any(|r| r.starts_with("PATCH ")));
}

#[tokio::test]
async fn caches_live_beside_the_build_image_outside_the_policies() {
    let fake = FakeGar::start().await;
    let gar = fake.gar().await;
    let build = RepositoryScope::Build {
        cluster: "c".into(),
        service: "api".into(),
    };
    let (name, id) = ensured(&gar, &build, &settings(None, Some(2))).await;
    let cache = gar.cache_repository(&name, "00ff").unwrap();
    assert_eq!(cache, format!("{PROJECT}/{id}/cache-00ff"));
    assert!(gar.cache_repository(&name, "NOT-HEX").is_err());
    gar.ensure_repository(&cache, &RepositorySettings::default())
        .await
        .unwrap();
    assert!(
        fake.patches().is_empty(),
        "ensuring the cache does not touch the policies"
    );
    let policies = &fake.repository(&id).unwrap()["cleanupPolicies"];
    assert_eq!(
        policies["mirror-core-keep"]["mostRecentVersions"]["packageNamePrefixes"],
        json!(["image"])
    );
    assert_eq!(
        gar.repository_reference(&name).unwrap(),
        format!("{}/{name}", fake.docker_host())
    );
    assert!(gar.list_repositories("c").await.unwrap() == vec![name.clone()]);
}

#[tokio::test]
async fn service_mode_evicts_old_images_one_version_at_a_time() {
    let fake = FakeGar::start().await;
    let gar = Arc::new(fake.gar().await);
    let mirror = Mirror::builder(gar.clone(), "prod")
        .strategy(Arc::new(ServiceStrategy { keep_previous: 1 }))
        .eviction_grace(Duration::ZERO)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut deployed = Vec::new();
    for i in 0..3u64 {
        let img = TestImage::builder()
            .seed(900 + i)
            .layers([1000, 3000])
            .build();
        let path = dir.path().join(format!("app{i}"));
        img.write_layout(&path, &format!("{i}.0")).unwrap();
        let d = mirror
            .mirror(
                "api",
                &Source::parse(&format!("oci:{}:{i}.0", path.display())).unwrap(),
            )
            .await
            .unwrap();
        assert!(
            d.pull_reference.starts_with(&format!(
                "{}/{PROJECT}/mirror-prod-svc-api-",
                fake.docker_host()
            )),
            "{}",
            d.pull_reference
        );
        assert!(d
            .pull_reference
            .ends_with(&format!("/image@{}", img.digest())));
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        deployed.push((d, img));
    }
    assert_eq!(deployed[2].0.evicted, vec![deployed[0].1.digest().clone()]);
    assert_eq!(fake.deleted_versions().len(), 1);
    assert!(fake.package_deletes().is_empty());
    let images = gar
        .list_images(&Repository::listed(&deployed[2].0.repository))
        .await
        .unwrap();
    assert_eq!(images.len(), 2);
}

#[tokio::test]
async fn cluster_mode_sweeps_by_upload_time() {
    let fake = FakeGar::start().await;
    let gar = Arc::new(fake.gar().await);
    let mirror = Mirror::builder(gar.clone(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(DAY))))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ds = Vec::new();
    for i in 0..2u64 {
        let img = TestImage::builder().seed(700 + i).layer(500).build();
        let path = dir.path().join(format!("app{i}"));
        img.write_layout(&path, "1.0").unwrap();
        ds.push(
            mirror
                .mirror(
                    "api",
                    &Source::parse(&format!("oci:{}:1.0", path.display())).unwrap(),
                )
                .await
                .unwrap(),
        );
    }
    let repo = &ds[0].repository;
    let (id, package) = gar.parse_repository(repo).unwrap();
    assert_eq!(
        fake.repository(id).unwrap()["cleanupPolicies"]["mirror-core-retention"]["condition"]
            ["olderThan"],
        "86400s"
    );
    fake.set_upload_time(
        id,
        package,
        &ds[0].digest.to_string(),
        SystemTime::now() - Duration::from_secs(2 * DAY),
    );
    let report = mirror
        .sweep(SystemTime::now(), &HashSet::new(), false)
        .await
        .unwrap();
    assert_eq!(report.deleted, vec![ds[0].digest.clone()]);
    let left: Vec<Value> = gar
        .list_images(&Repository::listed(repo))
        .await
        .unwrap()
        .into_iter()
        .map(|r| json!(r.digest.to_string()))
        .collect();
    assert_eq!(left, vec![json!(ds[1].digest.to_string())]);
}

/// Version deletions run side by side: when one of a sweep's fails, the others went, and
/// the retry one by one finds them gone. They are reported as deleted, not as failures.
#[tokio::test]
async fn a_sweep_whose_deletions_fail_part_way_reports_what_went_as_deleted() {
    let fake = FakeGar::start().await;
    let gar = Arc::new(fake.gar().await);
    let mirror = Mirror::builder(gar.clone(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(DAY))))
        .eviction_grace(Duration::ZERO)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut digests = HashSet::new();
    for i in 0..6u64 {
        let img = TestImage::builder().seed(800 + i).layer(300).build();
        let path = dir.path().join(format!("app{i}"));
        img.write_layout(&path, "1.0").unwrap();
        let source = Source::parse(&format!("oci:{}:1.0", path.display())).unwrap();
        let d = mirror.mirror(&format!("svc{i}"), &source).await.unwrap();
        digests.insert(d.digest);
    }
    fake.inject("versions.delete", 1, 403, "PERMISSION_DENIED");
    let later = SystemTime::now() + Duration::from_secs(2 * DAY);
    let report = mirror.sweep(later, &HashSet::new(), false).await.unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    let deleted: HashSet<_> = report.deleted.into_iter().collect();
    assert_eq!(deleted, digests);
    assert_eq!(
        fake.deleted_versions().len(),
        6,
        "{:?}",
        fake.deleted_versions()
    );
}
