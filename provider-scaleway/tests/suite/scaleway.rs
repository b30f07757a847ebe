//! `Scaleway` directly and through the `Mirror` façade, on the fake Scaleway registry API with
//! a real distribution registry as the data plane (see `support/mod.rs`): namespace creation
//! and readiness, "already exists", visibility, pagination, error mapping, Service-mode
//! eviction and Cluster-mode retention by `sweep`.

use provider_scaleway::testing as support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use mirror_core::testing::TestImage;
use mirror_core::{
    Action, ClusterStrategy, Error, Mirror, Registry, Repository, RepositoryScope,
    RepositorySettings, ServiceStrategy, Source,
};
use provider_scaleway::Scaleway;
use serde_json::json;
use support::{FakeScaleway, PROJECT};

fn image(seed: u64) -> TestImage {
    TestImage::builder().seed(seed).layers([3000, 700]).build()
}

/// Writes `img` as an OCI layout under `dir/name` and returns it as a source.
fn layout_source(dir: &Path, name: &str, tag: &str, img: &TestImage) -> Source {
    let path = dir.join(name);
    img.write_layout(&path, tag)
        .unwrap_or_else(|e| panic!("write layout {}: {e}", path.display()));
    Source::parse(&format!("oci:{}:{tag}", path.display())).expect("layout source")
}

fn service_repo(reg: &Scaleway, cluster: &str, service: &str) -> Repository {
    reg.repository(&RepositoryScope::Service {
        cluster: cluster.into(),
        service: service.into(),
    })
    .expect("repository name")
}

#[tokio::test]
async fn new_namespaces_are_created_private_and_waited_for_until_ready() {
    let fake = FakeScaleway::start().await;
    fake.set_readiness("pending", 3);
    let reg = fake.scaleway();
    let repo = service_repo(&reg, "Prod EU", "api");
    let namespace = reg.namespace_name("Prod EU").unwrap();
    assert!(repo.name().starts_with(&format!("{namespace}/")), "{repo}");

    reg.ensure_repository(&repo, &RepositorySettings::default())
        .await
        .unwrap_or_else(|e| panic!("ensure: {e}"));
    assert_eq!(fake.calls("CreateNamespace"), 1);
    assert!(
        fake.calls("GetNamespace") >= 3,
        "the client did not wait: {:?}",
        fake.call_log()
    );
    let ns = fake.namespace(&namespace).expect("namespace created");
    assert_eq!(ns["status"], "ready");
    assert_eq!(ns["is_public"], false);
    assert_eq!(ns["project_id"], PROJECT);
    assert_eq!(
        ns["description"],
        "Mirror registry of cluster Prod EU (managed by mirror-core)"
    );

    // Known ready: another repository of the cluster costs no API call.
    fake.reset_calls();
    let build = reg
        .repository(&RepositoryScope::Build {
            cluster: "Prod EU".into(),
            service: "api".into(),
        })
        .unwrap();
    reg.ensure_repository(&build, &RepositorySettings::default())
        .await
        .unwrap();
    assert!(fake.call_log().is_empty(), "{:?}", fake.call_log());

    // Another deployer (its own client) finds the namespace and creates nothing.
    let other = fake.scaleway();
    other
        .ensure_repository(&repo, &RepositorySettings::default())
        .await
        .unwrap();
    assert_eq!(fake.calls("CreateNamespace"), 0);
    assert_eq!(fake.calls("ListNamespaces"), 1);
}

#[tokio::test]
async fn unusable_namespaces_fail_fast_and_slow_ones_time_out() {
    let fake = FakeScaleway::start().await;
    let reg = fake.scaleway();
    let cases = [
        ("broken", "error", "backend failure"),
        ("locked", "locked", ""),
        ("leaving", "deleting", ""),
    ];
    for (cluster, status, message) in cases {
        let ns = reg.namespace_name(cluster).unwrap();
        fake.add_namespace(&ns, PROJECT, "ready", false);
        fake.set_namespace_status(&ns, status, message);
        let started = Instant::now();
        let err = reg
            .ensure_repository(&service_repo(&reg, cluster, "api"), &Default::default())
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{status}: waited"
        );
        let text = err.to_string();
        assert!(text.contains(&ns) && text.contains(status), "{text}");
        match status {
            "locked" => assert!(matches!(err, Error::Denied { .. }), "{err:?}"),
            // A state is no HTTP answer: no `Http { status: 200 }` in disguise.
            _ => assert!(
                matches!(&err, Error::Refused { code, .. } if code == status),
                "{err:?}"
            ),
        }
        if !message.is_empty() {
            assert!(text.contains(message), "{text}");
        }
    }

    fake.set_readiness("unknown", 1_000_000);
    let reg = fake
        .builder()
        .namespace_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = reg
        .ensure_repository(&service_repo(&reg, "slow", "api"), &Default::default())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = err.to_string();
    assert!(text.contains("still unknown"), "{text}");
}

#[tokio::test]
async fn already_exists_is_success_but_a_name_taken_by_another_customer_is_an_error() {
    let fake = FakeScaleway::start().await;
    let reg = fake.scaleway();

    // Another deployer creates the namespace between our lookup and our creation.
    let ns = reg.namespace_name("raced").unwrap();
    fake.add_namespace(&ns, PROJECT, "ready", false);
    fake.inject(
        "ListNamespaces",
        1,
        200,
        json!({"namespaces": [], "total_count": 0}),
        None,
    );
    reg.ensure_repository(&service_repo(&reg, "raced", "api"), &Default::default())
        .await
        .unwrap_or_else(|e| panic!("a creation race must succeed: {e}"));
    assert_eq!(fake.calls("CreateNamespace"), 1);
    assert_eq!(fake.calls("ListNamespaces"), 2);

    // Another customer owns the name: the project never sees it.
    let taken = reg.namespace_name("taken").unwrap();
    fake.add_foreign_namespace(&taken);
    let err = reg
        .ensure_repository(&service_repo(&reg, "taken", "api"), &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::Http { status: 409, .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&taken) && text.contains("another project or organization"),
        "{text}"
    );
    // Listing a cluster whose name another customer holds shows nothing of theirs.
    assert!(reg.list_repositories("taken").await.unwrap().is_empty());
}

#[tokio::test]
async fn visibility_follows_the_configuration() {
    let fake = FakeScaleway::start().await;
    let reg = fake.scaleway();
    let ns = reg.namespace_name("was-public").unwrap();
    fake.add_namespace(&ns, PROJECT, "ready", true);
    reg.ensure_repository(
        &service_repo(&reg, "was-public", "api"),
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(fake.calls("UpdateNamespace"), 1);
    assert_eq!(fake.namespace(&ns).unwrap()["is_public"], false);

    let public = fake.builder().public(true).build().unwrap();
    let repo = service_repo(&public, "open", "api");
    public
        .ensure_repository(&repo, &Default::default())
        .await
        .unwrap();
    let ns = public.namespace_name("open").unwrap();
    assert_eq!(fake.namespace(&ns).unwrap()["is_public"], true);
    assert_eq!(
        fake.calls("UpdateNamespace"),
        1,
        "a new namespace needs no update"
    );
}

#[tokio::test]
async fn listings_follow_every_page() {
    let fake = FakeScaleway::start().await;
    // The server answers two items per page, whatever the client asks.
    fake.set_max_page_size(2);
    let reg = fake.scaleway();
    let img = image(1);
    let mut repos = Vec::new();
    for service in ["a", "b", "c", "d", "e"] {
        let repo = service_repo(&reg, "paged", service);
        reg.ensure_repository(&repo, &Default::default())
            .await
            .unwrap();
        let store = reg.store(&repo).await.unwrap();
        img.push(store.as_ref(), "v1").await.unwrap();
        repos.push(repo);
    }
    // Five tags on two images in one repository.
    let store = reg.store(&repos[0]).await.unwrap();
    let other = image(2);
    other.push(store.as_ref(), "w1").await.unwrap();
    for tag in ["v2", "v3"] {
        store.put_manifest(tag, img.manifest()).await.unwrap();
    }
    store.put_manifest("w2", other.manifest()).await.unwrap();

    fake.reset_calls();
    let listed = reg.list_repositories("paged").await.unwrap();
    assert_eq!(listed, repos);
    assert_eq!(fake.calls("ListImages"), 3, "{:?}", fake.call_log());

    fake.reset_calls();
    let images = reg.list_images(&repos[0]).await.unwrap();
    assert_eq!(images.len(), 2, "{images:?}");
    let by = |d: &mirror_core::Digest| images.iter().find(|r| &r.digest == d).unwrap();
    assert_eq!(by(img.digest()).tags, vec!["v1", "v2", "v3"]);
    assert_eq!(by(other.digest()).tags, vec!["w1", "w2"]);
    assert_eq!(fake.calls("ListTags"), 3, "{:?}", fake.call_log());

    // The client's own page size works the same.
    fake.set_max_page_size(100);
    let small = fake.builder().page_size(1).build().unwrap();
    fake.reset_calls();
    assert_eq!(small.list_repositories("paged").await.unwrap(), repos);
    assert_eq!(fake.calls("ListImages"), 5);
    assert!(fake
        .call_log()
        .iter()
        .all(|c| !c.operation.starts_with("List") || c.query.contains("page_size=1")));
}

#[tokio::test]
async fn api_errors_map_to_typed_errors_and_transient_ones_are_retried() {
    let fake = FakeScaleway::start().await;
    let reg = fake.scaleway();
    let repo = service_repo(&reg, "errors", "api");
    reg.ensure_repository(&repo, &Default::default())
        .await
        .unwrap();
    let img = image(3);
    img.push(reg.store(&repo).await.unwrap().as_ref(), "v1")
        .await
        .unwrap();

    // 401: a wrong secret key, on the API and on the data plane.
    let wrong = fake
        .builder()
        .secret_key("00000000-0000-0000-0000-000000000000")
        .build()
        .unwrap();
    let err = wrong.list_images(&repo).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unauthorized { registry, .. } if registry.starts_with("scaleway:")),
        "{err:?}"
    );
    let store = wrong.store(&repo).await.unwrap();
    let err = store.head_manifest("v1").await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");

    // 403: not allowed.
    fake.inject_error("ListNamespaces", 1, 403, "permissions_denied");
    let err = reg.list_images(&repo).await.unwrap_err();
    assert!(matches!(err, Error::Denied { .. }), "{err:?}");

    // 404 on the image listing: a failed check is an error, never "no images".
    fake.inject_error("ListTags", 1, 404, "not_found");
    let err = reg.list_images(&repo).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");

    // 409 on a tag deletion.
    fake.inject_error("DeleteTag", 1, 409, "transient_state");
    let err = reg.delete_image(&repo, img.digest()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Http { status: 409, location, .. } if location.contains(repo.name())),
        "{err:?}"
    );

    // 429 twice, then an answer: retried, honouring Retry-After.
    fake.reset_calls();
    fake.inject(
        "ListTags",
        2,
        429,
        json!({"message": "too many requests", "type": "too_many_requests"}),
        Some(0),
    );
    let images = reg.list_images(&repo).await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(fake.calls("ListTags"), 3);

    // Still 429 after every attempt: RateLimited.
    fake.inject(
        "ListTags",
        100,
        429,
        json!({"message": "too many requests"}),
        Some(0),
    );
    let err = reg.list_images(&repo).await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d), .. } if d == Duration::ZERO),
        "{err:?}"
    );
    fake.clear_faults();

    // 5xx after every attempt: Http with the status.
    fake.reset_calls();
    fake.inject_error("ListNamespaces", 100, 503, "");
    let err = reg.list_repositories("errors").await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 503, .. }), "{err:?}");
    assert_eq!(
        fake.calls("ListNamespaces"),
        6,
        "fast retries make 6 attempts"
    );
    fake.clear_faults();

    // A name Scaleway refuses: InvalidName.
    fake.inject_error("CreateNamespace", 1, 400, "invalid_arguments");
    let err = reg
        .ensure_repository(&service_repo(&reg, "refused", "api"), &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");

    // Nobody listening: Connect.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let down = fake
        .builder()
        .api_url(format!("http://{closed}"))
        .retry(mirror_core::kit::retry::RetryConfig::none())
        .build()
        .unwrap();
    let err = down.list_repositories("errors").await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(!format!("{err:?}").contains(support::SECRET));
}

#[tokio::test]
async fn service_mode_evicts_through_the_tags_api() {
    let fake = FakeScaleway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let reg: Arc<dyn Registry> = Arc::new(fake.scaleway());
    let mirror = Mirror::builder(reg.clone(), "prod")
        .strategy(Arc::new(ServiceStrategy { keep_previous: 0 }))
        .eviction_grace(Duration::ZERO)
        .build()
        .unwrap();
    let (one, two) = (image(10), image(11));
    let d1 = mirror
        .mirror("api", &layout_source(dir.path(), "one", "1.0", &one))
        .await
        .unwrap();
    assert_eq!(d1.action, Action::Copied);
    let namespace = fake.scaleway().namespace_name("prod").unwrap();
    let repo = format!("{namespace}/svc-api");
    assert_eq!(d1.repository, repo);
    assert_eq!(
        d1.pull_reference,
        format!("{}/{repo}@{}", fake.registry_host(), one.digest())
    );
    let again = mirror
        .mirror("api", &layout_source(dir.path(), "one", "1.0", &one))
        .await
        .unwrap();
    assert_eq!(again.action, Action::Skipped);

    // A bookkeeping tag and the real tag, both visible to Scaleway's tags API.
    let tags = fake.registry_tags(&repo).await;
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert!(tags.iter().any(|t| t.starts_with("mirror.pushed.")));

    let d2 = mirror
        .mirror("api", &layout_source(dir.path(), "two", "2.0", &two))
        .await
        .unwrap();
    assert!(d2.tag.starts_with("2.0-"), "{}", d2.tag);
    assert_eq!(d2.evicted, vec![one.digest().clone()], "{d2:?}");
    assert!(fake.calls("DeleteTag") >= 1);
    assert!(!fake.registry_has(&repo, one.digest()).await);
    assert!(fake.registry_has(&repo, two.digest()).await);
    let left = reg.list_images(&Repository::listed(&repo)).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].tags, vec![d2.tag.clone()]);
    assert!(left[0].pushed_at.is_some());
}

#[tokio::test]
async fn cluster_mode_retention_is_enforced_by_sweep() {
    let fake = FakeScaleway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let reg: Arc<dyn Registry> = Arc::new(fake.scaleway());
    let mirror = Mirror::builder(reg.clone(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(3600))))
        .build()
        .unwrap();
    let (old, used) = (image(20), image(21));
    let a = mirror
        .mirror("api", &layout_source(dir.path(), "old", "1.0", &old))
        .await
        .unwrap();
    let b = mirror
        .mirror("web", &layout_source(dir.path(), "used", "1.0", &used))
        .await
        .unwrap();
    let namespace = fake.scaleway().namespace_name("prod").unwrap();
    let repo = format!("{namespace}/mirror");
    assert_eq!(a.repository, repo);
    assert_eq!(b.repository, repo);

    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let in_use: HashSet<_> = [used.digest().clone()].into_iter().collect();
    let dry = mirror.sweep(later, &in_use, true).await.unwrap();
    assert_eq!(dry.plans[0].delete.len(), 1);
    assert!(dry.deleted.is_empty());
    assert!(fake.registry_has(&repo, old.digest()).await);

    // Not expired yet: nothing to do.
    let now = mirror
        .sweep(SystemTime::now(), &HashSet::new(), false)
        .await
        .unwrap();
    assert!(now.deleted.is_empty(), "{now:?}");

    let report = mirror.sweep(later, &in_use, false).await.unwrap();
    assert_eq!(report.deleted, vec![old.digest().clone()], "{report:?}");
    assert!(report.warnings.is_empty(), "{report:?}");
    assert!(!fake.registry_has(&repo, old.digest()).await);
    assert!(fake.registry_has(&repo, used.digest()).await);

    let inventory = mirror.inventory().await.unwrap();
    assert_eq!(inventory.repositories.len(), 1);
    assert_eq!(inventory.repositories[0].repository, repo);
    let images = &inventory.repositories[0].images;
    assert_eq!(images.len(), 1);
    assert!(images[0].size.unwrap_or(0) > 0 && images[0].pushed_at.is_some());
}

/// A builder that pushes a fixed image where it is told, with the credentials it is given,
/// and records its requests.
#[derive(Debug)]
struct FakeBuilder {
    image: TestImage,
    requests: std::sync::Mutex<Vec<mirror_core::BuildRequest>>,
}

#[async_trait::async_trait]
impl mirror_core::Builder for FakeBuilder {
    fn name(&self) -> &str {
        "fake"
    }

    async fn build(
        &self,
        request: &mirror_core::BuildRequest,
    ) -> mirror_core::Result<mirror_core::BuildOutput> {
        self.requests.lock().unwrap().push(request.clone());
        let reference = mirror_core::Reference::parse(&request.reference)?;
        let credentials = request
            .credentials
            .get(reference.registry())
            .cloned()
            .unwrap_or_default();
        let client =
            mirror_core::kit::store::http::RegistryClient::new(reference.registry(), credentials)?;
        let store = client.repository(reference.repository())?;
        self.image
            .push(&store, reference.tag().unwrap_or("latest"))
            .await?;
        Ok(mirror_core::BuildOutput {
            reference: request.reference.clone(),
            digest: self.image.digest().clone(),
        })
    }
}

#[tokio::test]
async fn builds_push_with_the_secret_key_and_cache_in_a_flat_image_of_the_namespace() {
    let fake = FakeScaleway::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let scaleway = fake.scaleway();
    let namespace = scaleway.namespace_name("prod").unwrap();
    let mirror = Mirror::builder(Arc::new(scaleway), "prod")
        .eviction_grace(Duration::ZERO)
        .build()
        .unwrap();
    let builder = FakeBuilder {
        image: image(30),
        requests: Default::default(),
    };
    let spec = mirror_core::BuildSpec::new(dir.path(), "c0ffee");
    let d = mirror.build("api", &spec, &builder).await.unwrap();
    assert_eq!(d.action, Action::Built);
    assert_eq!(d.repository, format!("{namespace}/build-api"));

    let request = builder.requests.lock().unwrap()[0].clone();
    let cache = format!("{}/{namespace}/cache-", fake.registry_host());
    assert!(
        request.reference.starts_with(&cache),
        "{}",
        request.reference
    );
    assert!(
        request.reference.contains("-build-api:"),
        "{}",
        request.reference
    );
    assert_eq!(
        request.cache_to.as_deref(),
        request.cache_from.first().map(String::as_str)
    );
    assert_eq!(
        request.credentials.get(&fake.registry_host()),
        Some(
            &mirror_core::kit::store::http::credentials::Credentials::basic(
                "nologin",
                support::SECRET
            )
        )
    );
    assert!(
        fake.registry_has(&d.repository, builder.image.digest())
            .await
    );
    let again = mirror.build("api", &spec, &builder).await.unwrap();
    assert_eq!(again.action, Action::Skipped);
    assert_eq!(builder.requests.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn the_api_client_deletes_whole_images_in_the_registry() {
    let fake = FakeScaleway::start().await;
    let reg = fake.scaleway();
    let repo = service_repo(&reg, "whole", "api");
    reg.ensure_repository(&repo, &Default::default())
        .await
        .unwrap();
    let store = reg.store(&repo).await.unwrap();
    let (a, b) = (image(40), image(41));
    a.push(store.as_ref(), "a").await.unwrap();
    b.push(store.as_ref(), "b").await.unwrap();
    let (namespace, name) = repo.name().split_once('/').unwrap();
    let api = reg.api();
    let ns = api
        .find_namespace(namespace)
        .await
        .unwrap()
        .expect("namespace");
    assert_eq!(ns.status, "ready");
    assert_eq!(ns.endpoint, format!("{}/{namespace}", fake.registry_host()));
    let img = api
        .find_image(&ns.id, name, repo.name())
        .await
        .unwrap()
        .expect("image listed once pushed");
    assert_eq!(img.tags, vec!["a", "b"]);
    let tags = api.list_tags(&img.id, repo.name()).await.unwrap();
    assert_eq!(tags.len(), 2);
    assert!(tags.iter().all(|t| t.digest.starts_with("sha256:")));

    api.delete_image(&img.id, repo.name()).await.unwrap();
    assert!(!fake.registry_has(repo.name(), a.digest()).await);
    assert!(!fake.registry_has(repo.name(), b.digest()).await);
    assert!(reg.list_images(&repo).await.unwrap().is_empty());
    assert!(api
        .find_image(&ns.id, name, repo.name())
        .await
        .unwrap()
        .is_none());
    let err = reg.delete_image(&repo, a.digest()).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn a_control_plane_answer_of_thirty_megabytes_is_refused_without_reading_it() {
    use axum::response::IntoResponse;
    let flood = axum::Router::new().fallback(|| async {
        use futures::StreamExt;
        let chunks = futures::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1 << 20]))
        })
        .take(30);
        axum::body::Body::from_stream(chunks).into_response()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, flood).await });
    let scaleway = provider_scaleway::ScalewayBuilder::new()
        .secret_key(support::SECRET)
        .project_id(PROJECT)
        .region(support::REGION)
        .api_url(format!("http://{addr}"))
        .registry_host("127.0.0.1:1")
        .retry(mirror_core::kit::retry::RetryConfig::none())
        .build()
        .unwrap();
    let err = scaleway.list_repositories("prod").await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("more than")),
        "{err:?}"
    );
}
