//! `Ecr` through the `Mirror` façade and directly, on the ECR emulator (moto + a real
//! distribution registry, see `support/mod.rs`): concurrent deploys, lifecycle policies,
//! eviction by `BatchDeleteImage`, per-image failures, error mapping, token caching and
//! cross-repository mounts.

use provider_aws::testing as support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mirror_core::testing::{TestImage, TestIndex};
use mirror_core::{
    Action, ClusterStrategy, Error, Mirror, Registry, Repository, RepositoryScope,
    RepositorySettings, ServiceStrategy, Source,
};
use provider_aws::lifecycle;
use serde_json::{json, Value};
use support::{EcrEmulator, ACCOUNT, REGION};

fn image(seed: u64) -> TestImage {
    TestImage::builder().seed(seed).layers([3000, 7000]).build()
}

/// Writes `img` as an OCI layout under `dir/name` and returns it as a source.
fn layout_source(dir: &Path, name: &str, tag: &str, img: &TestImage) -> Source {
    let path = dir.join(name);
    img.write_layout(&path, tag)
        .unwrap_or_else(|e| panic!("write layout {}: {e}", path.display()));
    Source::parse(&format!("oci:{}:{tag}", path.display())).expect("layout source")
}

fn service_mirror(ecr: Arc<dyn Registry>, cluster: &str, keep: usize) -> Mirror {
    Mirror::builder(ecr, cluster)
        .strategy(Arc::new(ServiceStrategy {
            keep_previous: keep,
        }))
        .eviction_grace(Duration::ZERO)
        .build()
        .expect("mirror")
}

async fn repository_names(emu: &EcrEmulator) -> Vec<String> {
    let (status, answer) = emu.moto("DescribeRepositories", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    answer["repositories"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|x| x["repositoryName"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The image details moto lists for `repo` (asked directly, not counted).
pub(crate) async fn moto_images(emu: &EcrEmulator, repo: &str) -> Vec<Value> {
    let (status, answer) = emu
        .moto("DescribeImages", json!({"repositoryName": repo}))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["imageDetails"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deploys_of_a_new_service_create_one_repository() {
    let emu = EcrEmulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let img = image(1);
    let source = layout_source(dir.path(), "app", "1.0", &img);
    // Eight deployers, each with its own registry object (as separate processes would have).
    let mut deployers = Vec::new();
    for _ in 0..8 {
        let ecr: Arc<dyn Registry> = Arc::new(emu.ecr().await);
        deployers.push(service_mirror(ecr, "prod", 1));
    }
    let results =
        futures::future::join_all(deployers.iter().map(|m| m.mirror("api", &source))).await;
    let mut digests = HashSet::new();
    for r in &results {
        let d = r
            .as_ref()
            .unwrap_or_else(|e| panic!("a concurrent deploy failed: {e}"));
        assert_eq!(&d.digest, img.digest());
        assert!(d
            .pull_reference
            .ends_with(&format!("prod/services/api@{}", img.digest())));
        assert!(d.evicted.is_empty(), "{d:?}");
        digests.insert(d.digest.clone());
    }
    assert_eq!(digests.len(), 1);
    let repos = repository_names(&emu).await;
    assert_eq!(repos, vec!["prod/services/api".to_string()]);
    assert!(emu.calls("CreateRepository") >= 1);
    assert!(emu.failures().is_empty(), "{:?}", emu.failures());

    let images = moto_images(&emu, "prod/services/api").await;
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0]["imageDigest"], img.digest().to_string());
    assert_eq!(
        images[0]["imageTags"],
        json!([mirror_core::strategy::service_tag(&source.id())])
    );

    let arn = format!("arn:aws:ecr:{REGION}:{ACCOUNT}:repository/prod/services/api");
    let (_, tags) = emu
        .moto("ListTagsForResource", json!({"resourceArn": arn}))
        .await;
    let tags: Vec<(String, String)> = tags["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags: {tags}"))
        .iter()
        .map(|t| {
            (
                t["Key"].as_str().unwrap_or("").to_string(),
                t["Value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for expected in [
        ("managed-by", "mirror-core"),
        ("cluster", "prod"),
        ("service", "api"),
        ("scope", "service"),
    ] {
        assert!(
            tags.iter().any(|(k, v)| k == expected.0 && v == expected.1),
            "tag {expected:?} missing: {tags:?}"
        );
    }
}

async fn policy_of(emu: &EcrEmulator, repo: &str) -> Option<String> {
    let (status, answer) = emu
        .moto("GetLifecyclePolicy", json!({"repositoryName": repo}))
        .await;
    (status == 200).then(|| {
        answer["lifecyclePolicyText"]
            .as_str()
            .unwrap_or("")
            .to_string()
    })
}

#[tokio::test]
async fn cluster_mode_puts_the_documented_lifecycle_policy_only_when_it_changes() {
    let emu = EcrEmulator::start().await;
    let ecr = Arc::new(emu.ecr().await);
    let dir = tempfile::tempdir().unwrap();
    let source = layout_source(dir.path(), "app", "1.0", &image(2));
    let mirror = Mirror::builder(ecr.clone(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(
            36 * 3600,
        ))))
        .build()
        .unwrap();
    let d = mirror.mirror("api", &source).await.unwrap();
    assert_eq!(d.repository, "prod/mirror");
    let text = policy_of(&emu, "prod/mirror")
        .await
        .expect("a lifecycle policy");
    assert_eq!(
        text,
        crate::lifecycle_model::documented_policy(2, false),
        "the anchor rule first, exactly as documented in provider_aws::lifecycle"
    );
    assert_eq!(emu.calls("PutLifecyclePolicy"), 1);

    // Same retention from another deployer: read, not written.
    let settings = RepositorySettings {
        retention: Some(Duration::from_secs(36 * 3600)),
        keep_previous: None,
    };
    ecr.ensure_repository(&Repository::listed("prod/mirror"), &settings)
        .await
        .unwrap();
    assert_eq!(emu.calls("PutLifecyclePolicy"), 1);
    assert!(emu.calls("GetLifecyclePolicy") >= 1);

    // Retention changed: rewritten.
    let week = RepositorySettings {
        retention: Some(Duration::from_secs(7 * 24 * 3600)),
        keep_previous: None,
    };
    ecr.ensure_repository(&Repository::listed("prod/mirror"), &week)
        .await
        .unwrap();
    assert_eq!(emu.calls("PutLifecyclePolicy"), 2);
    let text = policy_of(&emu, "prod/mirror").await.unwrap();
    assert!(!lifecycle::needs_update(
        Some(&text),
        Duration::from_secs(7 * 24 * 3600),
        lifecycle::Age::SincePushed
    ));
    assert!(text.contains(r#""countNumber":7"#), "{text}");

    // Retention removed: our policy goes, a person's policy stays.
    ecr.ensure_repository(
        &Repository::listed("prod/mirror"),
        &RepositorySettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(policy_of(&emu, "prod/mirror").await, None);
    let theirs = r#"{"rules":[{"rulePriority":1,"description":"team rule","selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}}]}"#;
    let (status, _) = emu
        .moto(
            "PutLifecyclePolicy",
            json!({"repositoryName": "prod/mirror", "lifecyclePolicyText": theirs}),
        )
        .await;
    assert_eq!(status, 200);
    ecr.ensure_repository(
        &Repository::listed("prod/mirror"),
        &RepositorySettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        policy_of(&emu, "prod/mirror").await.as_deref(),
        Some(theirs)
    );

    // Disabled: no policy calls at all.
    let quiet = emu.builder().lifecycle_policy(false).build().await.unwrap();
    let before = emu.calls("GetLifecyclePolicy") + emu.calls("PutLifecyclePolicy");
    quiet
        .ensure_repository(&Repository::listed("prod/other"), &week)
        .await
        .unwrap();
    assert_eq!(
        emu.calls("GetLifecyclePolicy") + emu.calls("PutLifecyclePolicy"),
        before
    );
}

#[tokio::test]
async fn service_mode_evicts_with_batch_delete_image() {
    let emu = EcrEmulator::start().await;
    let ecr: Arc<dyn Registry> = Arc::new(emu.ecr().await);
    let mirror = service_mirror(ecr.clone(), "prod", 1);
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (image(10), image(11), image(12));
    let first = mirror
        .mirror("api", &layout_source(dir.path(), "a", "1", &a))
        .await
        .unwrap();
    assert_eq!(first.action, Action::Copied);
    // moto records push times in whole seconds: keep the images apart.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    mirror
        .mirror("api", &layout_source(dir.path(), "b", "2", &b))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = mirror
        .mirror("api", &layout_source(dir.path(), "c", "3", &c))
        .await
        .unwrap();
    assert_eq!(third.evicted, vec![a.digest().clone()], "{third:?}");
    assert!(third.warnings.is_empty(), "{:?}", third.warnings);
    assert!(emu.calls("BatchDeleteImage") >= 1);

    let listed: HashSet<_> = ecr
        .list_images(&Repository::listed("prod/services/api"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.digest)
        .collect();
    assert_eq!(
        listed,
        [b.digest().clone(), c.digest().clone()]
            .into_iter()
            .collect()
    );
    // The emulator deleted it from the data plane too.
    let store = ecr
        .store(&Repository::listed("prod/services/api"))
        .await
        .unwrap();
    assert_eq!(
        store.head_manifest(&a.digest().to_string()).await.unwrap(),
        None
    );
    assert_eq!(store.head_manifest("1").await.unwrap(), None);
}

#[tokio::test]
async fn deleting_an_index_deletes_its_untagged_platform_manifests() {
    let emu = EcrEmulator::start().await;
    let ecr = emu.ecr().await;
    let repo = &Repository::listed("prod/services/multi");
    ecr.ensure_repository(repo, &RepositorySettings::default())
        .await
        .unwrap();
    let store = ecr.store(repo).await.unwrap();
    let index = TestIndex::linux_amd64_arm64(20);
    index.push(store.as_ref(), "v1").await.unwrap();
    // ECR lists the platform manifests as untagged images; the registry hides them.
    assert_eq!(moto_images(&emu, repo.name()).await.len(), 3);
    let listed = ecr.list_images(repo).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(&listed[0].digest, index.digest());
    assert_eq!(listed[0].tags, vec!["v1".to_string()]);
    assert!(listed[0].pushed_at.is_some());

    ecr.delete_image(repo, index.digest()).await.unwrap();
    assert!(moto_images(&emu, repo.name()).await.is_empty());
    assert!(ecr.list_images(repo).await.unwrap().is_empty());
}

#[tokio::test]
async fn per_image_delete_failures_are_errors_not_swallowed() {
    let emu = EcrEmulator::start().await;
    let ecr: Arc<dyn Registry> = Arc::new(emu.ecr().await);
    let mirror = service_mirror(ecr.clone(), "prod", 0);
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (image(30), image(31));
    mirror
        .mirror("api", &layout_source(dir.path(), "a", "1", &a))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let failure = |digest: &str| {
        json!({"imageIds": [], "failures": [{
            "imageId": {"imageDigest": digest},
            "failureCode": "KmsError",
            "failureReason": "the KMS key is disabled"
        }]})
    };
    // Through the façade: the deployment succeeds, the failure is a warning naming it.
    emu.inject("BatchDeleteImage", 1, 200, failure(&a.digest().to_string()));
    let d = mirror
        .mirror("api", &layout_source(dir.path(), "b", "2", &b))
        .await
        .unwrap();
    assert!(d.evicted.is_empty(), "{d:?}");
    assert!(
        d.warnings.iter().any(|w| matches!(
            w,
            mirror_core::Warning::EvictionFailed { repository, digest: Some(_), error }
                if repository == "prod/services/api" && error.contains("KmsError")
        )),
        "{:?}",
        d.warnings
    );
    // Directly: an error (not NotFound), naming repository, digest and code.
    emu.inject("BatchDeleteImage", 1, 200, failure(&a.digest().to_string()));
    let err = ecr
        .delete_image(&Repository::listed("prod/services/api"), a.digest())
        .await
        .unwrap_err();
    assert!(!err.is_not_found(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("KmsError")
            && text.contains(&format!("prod/services/api@{}", a.digest()))
            && text.contains("aws:"),
        "{text}"
    );
    // Still there.
    let listed = ecr
        .list_images(&Repository::listed("prod/services/api"))
        .await
        .unwrap();
    assert!(listed.iter().any(|r| &r.digest == a.digest()));
}

#[tokio::test]
async fn aws_errors_map_to_typed_errors_naming_the_repository() {
    let emu = EcrEmulator::start().await;
    let ecr = emu.ecr().await;
    let repo = &Repository::listed("prod/services/api");
    let host = emu.registry_host();

    emu.inject_error("CreateRepository", 1, 400, "AccessDeniedException");
    match ecr
        .ensure_repository(repo, &RepositorySettings::default())
        .await
    {
        Err(Error::Denied {
            registry, location, ..
        }) => {
            assert_eq!(registry, format!("aws:{host}"));
            assert!(location.ends_with(repo.name()), "{location}");
        }
        other => panic!("expected Denied, got {other:?}"),
    }

    // Throttling survives the SDK's retries: RateLimited.
    emu.inject_error("DescribeImages", 3, 400, "ThrottlingException");
    match ecr.list_images(repo).await {
        Err(Error::RateLimited { registry, .. }) => assert!(registry.starts_with("aws:")),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(emu.calls("DescribeImages"), 3, "the SDK retried twice");

    emu.inject_error(
        "DescribeRepositories",
        1,
        400,
        "UnrecognizedClientException",
    );
    assert!(matches!(
        ecr.list_repositories("prod").await,
        Err(Error::Unauthorized { .. })
    ));

    emu.inject_error("DescribeImages", 3, 500, "ServerException");
    match ecr.list_images(repo).await {
        Err(Error::Http {
            status,
            location,
            message,
            ..
        }) => {
            assert_eq!(status, 500);
            assert_eq!(location, repo.name());
            assert!(message.contains("ServerException"), "{message}");
        }
        other => panic!("expected Http 500, got {other:?}"),
    }
    assert_eq!(
        emu.calls("DescribeImages"),
        6,
        "the SDK retried the 500 twice"
    );

    // Absent repository: NotFound naming it; listing it is empty, not an error.
    let absent = mirror_core::Digest::sha256_of(b"absent");
    match ecr
        .delete_image(&Repository::listed("prod/services/none"), &absent)
        .await
    {
        Err(Error::NotFound { what, location }) => {
            assert_eq!(what, "repository");
            assert!(location.ends_with("prod/services/none"), "{location}");
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(ecr
        .list_images(&Repository::listed("prod/services/none"))
        .await
        .unwrap()
        .is_empty());

    // Already exists is success.
    ecr.ensure_repository(repo, &RepositorySettings::default())
        .await
        .unwrap();
    ecr.ensure_repository(repo, &RepositorySettings::default())
        .await
        .unwrap();

    // A name ECR refuses never reaches it.
    let calls = emu.calls("CreateRepository");
    assert!(matches!(
        ecr.ensure_repository(
            &Repository::listed("Bad__Name"),
            &RepositorySettings::default()
        )
        .await,
        Err(Error::InvalidName { .. })
    ));
    assert_eq!(emu.calls("CreateRepository"), calls);

    // The control plane unreachable: Connect.
    let dead = emu
        .builder()
        .endpoint("http://127.0.0.1:9")
        .build()
        .await
        .unwrap();
    assert!(matches!(
        dead.list_images(repo).await,
        Err(Error::Connect { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_token_is_not_refreshed_in_a_storm() {
    let emu = EcrEmulator::start().await;
    let ecr = Arc::new(emu.ecr().await);
    assert_eq!(
        emu.calls("GetAuthorizationToken"),
        0,
        "no call before first use"
    );
    let registry: Arc<dyn Registry> = ecr.clone();
    let mirror = service_mirror(registry.clone(), "prod", 1);
    let dir = tempfile::tempdir().unwrap();
    // moto's tokens expired in 2015: each of these data-plane requests would fetch one.
    let mut sources = Vec::new();
    for i in 0..4u64 {
        sources.push(layout_source(
            dir.path(),
            &format!("s{i}"),
            "1",
            &image(40 + i),
        ));
    }
    let deploys = futures::future::join_all(sources.iter().enumerate().map(|(i, s)| {
        let m = &mirror;
        async move { m.mirror(&format!("svc{i}"), s).await }
    }))
    .await;
    for (i, d) in deploys.into_iter().enumerate() {
        let d = d.unwrap();
        let store = registry
            .store(&Repository::listed(format!("prod/services/svc{i}")))
            .await
            .unwrap();
        assert!(store.head_manifest(&d.tag).await.unwrap().is_some());
    }
    assert_eq!(emu.calls("GetAuthorizationToken"), 1);
    assert_eq!(ecr.credentials().fetches(), 1);
    // Only the first challenge of each concurrent deploy, never a refused token.
    assert!(
        emu.unauthorized() <= 4,
        "{} requests refused",
        emu.unauthorized()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_tokens_are_unauthorized_errors_without_a_refresh_storm() {
    let emu = EcrEmulator::start().await;
    let ecr = emu.ecr().await;
    ecr.ensure_repository(
        &Repository::listed("prod/services/api"),
        &RepositorySettings::default(),
    )
    .await
    .unwrap();
    let store = ecr
        .store(&Repository::listed("prod/services/api"))
        .await
        .unwrap();
    assert_eq!(store.head_manifest("v1").await.unwrap(), None);
    assert_eq!(emu.calls("GetAuthorizationToken"), 1);

    emu.refuse_tokens(true);
    let heads = futures::future::join_all((0..16).map(|i| {
        let store = store.clone();
        async move { store.head_manifest(&format!("v{i}")).await }
    }))
    .await;
    for h in heads {
        match h {
            Err(Error::Unauthorized { registry, .. }) => {
                assert_eq!(registry, emu.registry_host())
            }
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }
    // 16 refused requests, each retried once: at most one new token for all of them.
    assert!(
        emu.calls("GetAuthorizationToken") <= 2,
        "{} tokens fetched",
        emu.calls("GetAuthorizationToken")
    );

    emu.refuse_tokens(false);
    tokio::time::sleep(provider_aws::credential::INVALIDATION_GRACE).await;
    assert_eq!(store.head_manifest("v1").await.unwrap(), None);
}

#[tokio::test]
async fn second_service_mounts_blobs_and_the_202_fallback_uploads() {
    let emu = EcrEmulator::start().await;
    let ecr: Arc<dyn Registry> = Arc::new(emu.ecr().await);
    let mirror = service_mirror(ecr, "prod", 1);
    let dir = tempfile::tempdir().unwrap();
    let img = image(50);
    let source = layout_source(dir.path(), "shared", "1.0", &img);
    let blobs = img.blobs().len();

    let first = mirror.mirror("api", &source).await.unwrap();
    assert_eq!(first.blobs_uploaded, blobs);
    assert_eq!(emu.mount_attempts(), 0);

    let second = mirror.mirror("worker", &source).await.unwrap();
    assert_eq!(second.blobs_mounted, blobs, "{second:?}");
    assert_eq!(second.blobs_uploaded, 0);
    assert_eq!(emu.mount_answers(), vec![201; blobs]);

    // ECR without blob mounting answers 202: the blobs are uploaded instead.
    emu.decline_mounts(true);
    let third = mirror.mirror("cron", &source).await.unwrap();
    assert_eq!(third.blobs_mounted, 0, "{third:?}");
    assert_eq!(third.blobs_uploaded, blobs);
    assert_eq!(&third.digest, img.digest());
    // Each blob is tried from every repository holding the image (api, worker).
    let answers = emu.mount_answers();
    assert!(answers.len() > blobs, "{answers:?}");
    assert!(answers[blobs..].iter().all(|s| *s == 202), "{answers:?}");
    assert!(emu.failures().is_empty(), "{:?}", emu.failures());
}

#[tokio::test]
async fn the_account_and_host_are_learned_from_the_token_when_not_configured() {
    let emu = EcrEmulator::start().await;
    let ecr = provider_aws::EcrBuilder::new()
        .sdk_config(emu.sdk_config())
        .endpoint(emu.endpoint())
        .build()
        .await
        .unwrap();
    assert_eq!(
        ecr.host(),
        format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com")
    );
    assert_eq!(ecr.region(), REGION);
    let scope = RepositoryScope::Service {
        cluster: "prod".into(),
        service: "api".into(),
    };
    let repo = ecr.repository(&scope).unwrap();
    let digest = mirror_core::Digest::sha256_of(b"x");
    assert_eq!(
        ecr.pull_reference(&repo, &digest),
        format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/prod/services/api@{digest}")
    );
    let builds = ecr.builds().expect("ECR receives builds");
    let build = ecr
        .repository(&RepositoryScope::Build {
            cluster: "prod".into(),
            service: "api".into(),
        })
        .unwrap();
    assert_eq!(
        builds.repository_reference(&build).unwrap(),
        format!("{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/prod/builds/api")
    );
    assert_eq!(
        builds
            .cache_repository(&build, "0123abcd4567")
            .unwrap()
            .name(),
        "prod/builds/api/cache-0123abcd4567"
    );
    assert!(builds.cache_repository(&build, "Bad_ID").is_err());
}

/// ECR's chunked `PATCH` answers 201 and silently drops every chunk after the first
/// (aws/containers-roadmap#2831): the data plane must use one streaming `PUT` per blob and
/// never fall back to chunks, even when a `PUT` is refused with a status that makes the core
/// client switch in its default mode.
#[tokio::test]
async fn the_chunked_fallback_is_never_chosen() {
    use mirror_core::kit::store::http::RegistryClient;
    use mirror_core::testing::{Fault, FaultProxy, Rule};

    let emu = EcrEmulator::start().await;
    let proxy = FaultProxy::start(&emu.registry_host());
    let ecr = emu
        .builder()
        .registry_host(proxy.host())
        .build()
        .await
        .unwrap();
    let repo = ecr
        .repository(&RepositoryScope::Service {
            cluster: "prod".into(),
            service: "api".into(),
        })
        .unwrap();
    ecr.ensure_repository(&repo, &RepositorySettings::default())
        .await
        .unwrap();
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        Fault::Status {
            status: 413,
            retry_after: None,
        },
        1000,
    ));
    let img = image(77);
    let store = ecr.store(&repo).await.unwrap();
    let err = img.push(store.as_ref(), "v1").await.unwrap_err();
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

    // Control: the core client in its default mode does switch to chunks here, so the
    // assertion above would catch it.
    let creds = ecr
        .builds()
        .expect("ECR receives builds")
        .builder_credentials()
        .await
        .unwrap()
        .expect("ECR hands out builder credentials");
    assert_eq!(creds.host, proxy.host());
    let auto = RegistryClient::builder(&proxy.host())
        .credentials(creds.credentials)
        .build()
        .unwrap();
    let auto_store = auto.repository(repo.name()).unwrap();
    // The first refused PUT switches the client to chunks; the next upload sends them.
    let _ = img.push(&auto_store, "v1").await;
    let _ = img.push(&auto_store, "v1").await;
    assert!(proxy.requests().iter().any(|r| r.starts_with("PATCH ")));
}

/// A credentials provider that finds nothing: what the SDK's default chain answers on a
/// machine without an AWS identity.
#[derive(Debug)]
struct NoIdentity;

impl aws_credential_types::provider::ProvideCredentials for NoIdentity {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no providers in chain provided credentials",
            ),
        ))
    }
}

#[tokio::test]
async fn missing_aws_credentials_are_a_short_auth_error_naming_what_to_set() {
    let emu = EcrEmulator::start().await;
    let sdk = emu
        .sdk_config()
        .into_builder()
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(NoIdentity),
        )
        .build();
    let ecr = emu.builder().sdk_config(sdk).build().await.unwrap();
    let scope = RepositoryScope::Service {
        cluster: "prod".into(),
        service: "api".into(),
    };
    let repo = ecr.repository(&scope).unwrap();
    for err in [
        ecr.check().await.unwrap_err(),
        ecr.list_images(&repo).await.unwrap_err(),
    ] {
        let text = err.to_string();
        assert_eq!(err.kind(), mirror_core::ErrorKind::Auth, "{text}");
        assert!(
            matches!(err, mirror_core::Error::Credentials { .. }),
            "{err:?}"
        );
        assert!(
            text.contains("no providers in chain provided credentials"),
            "{text}"
        );
        assert!(
            text.contains("AWS_ACCESS_KEY_ID"),
            "the variable to set: {text}"
        );
        assert!(text.len() <= 400, "{} bytes: {text}", text.len());
    }
}
