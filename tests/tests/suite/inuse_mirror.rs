//! The mirror consults the cluster before it deletes: Service-mode eviction and Cluster-mode
//! sweep with Kubernetes discovery (the real `kube` client against `tests::kube_api`), over
//! the real distribution registry.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mirror_core::inuse::kubernetes::KubernetesInUse;
use mirror_core::inuse::WorkloadKind;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{
    ClusterStrategy, Deployment, Digest, Error, GenericRegistry, Mirror, Registry, Repository,
    ServiceStrategy,
};
use tests::kube_api::{self, FakeKubernetes};

/// A source registry holding `versions` of one repository, a destination, a Kubernetes API.
struct Scene {
    src: TestRegistry,
    dst: TestRegistry,
    k8s: FakeKubernetes,
    /// The destination as a registry.
    reg: Arc<GenericRegistry>,
}

impl Scene {
    async fn start(repo: &str, versions: &[&str], seed: u64) -> Self {
        let (src, dst) = (TestRegistry::start(), TestRegistry::start());
        let store = src.store(repo);
        for (i, v) in versions.iter().enumerate() {
            let image = TestImage::builder().seed(seed + i as u64).layers([20_000]);
            image.build().push(&store, v).await.unwrap();
        }
        let reg = dst.generic_registry();
        let k8s = FakeKubernetes::start().await;
        Scene { src, dst, k8s, reg }
    }
}

/// Mirrors `repo:tag` of `src` for `service`.
async fn deploy(
    mirror: &Mirror,
    src: &TestRegistry,
    service: &str,
    repo: &str,
    tag: &str,
) -> Deployment {
    mirror
        .mirror(service, &src.source(repo, tag))
        .await
        .unwrap()
}

fn discovery(k8s: &FakeKubernetes) -> Arc<KubernetesInUse> {
    Arc::new(KubernetesInUse::from_config(k8s.config()).unwrap())
}

/// Service mode keeping no previous image and no grace: only what is in use survives.
fn service_mirror(reg: &Arc<GenericRegistry>, k8s: &FakeKubernetes) -> Mirror {
    Mirror::builder(reg.clone(), "prod")
        .strategy(Arc::new(ServiceStrategy { keep_previous: 0 }))
        .eviction_grace(Duration::ZERO)
        .in_use_source(discovery(k8s))
        .build()
        .unwrap()
}

async fn digests(reg: &GenericRegistry, repository: &str) -> HashSet<Digest> {
    reg.list_images(&Repository::listed(repository))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_mode_keeps_what_a_deployment_runs_by_tag_until_it_moves_on() {
    let scene = Scene::start("team/api", &["v1", "v2", "v3", "v4"], 10).await;
    let Scene { src, dst, k8s, reg } = &scene;
    let mirror = service_mirror(reg, k8s);

    let v1 = deploy(&mirror, src, "api", "team/api", "v1").await;
    // The Deployment pulls v1 by the mirror's tag, not by digest: resolved with a HEAD.
    let by_tag = format!("{}/{}:{}", dst.host(), v1.repository, v1.tag);
    k8s.put(&kube_api::deployment("shop", "api", &by_tag, &[]));
    let v2 = deploy(&mirror, src, "api", "team/api", "v2").await;
    let v3 = deploy(&mirror, src, "api", "team/api", "v3").await;
    assert!(v2.evicted.is_empty(), "{:?}", v2.evicted);
    assert_eq!(v3.evicted, vec![v2.digest.clone()], "v2 runs nowhere");
    let left = digests(reg, &v1.repository).await;
    assert!(
        left.contains(&v1.digest),
        "v1 survives: the Deployment runs it"
    );
    assert!(left.contains(&v3.digest));

    // The Deployment moves on to v3 (by digest this time): the next deploy evicts v1.
    k8s.put(&kube_api::deployment(
        "shop",
        "api",
        &v3.pull_reference,
        &[],
    ));
    let v4 = deploy(&mirror, src, "api", "team/api", "v4").await;
    assert_eq!(v4.evicted, vec![v1.digest.clone()]);
    let left = digests(reg, &v1.repository).await;
    assert_eq!(left, [v3.digest.clone(), v4.digest.clone()].into());

    // Who uses what, in the inventory.
    let inventory = mirror.inventory().await.unwrap();
    let images = &inventory.repositories[0].images;
    let v3_record = images.iter().find(|i| i.digest == v3.digest).unwrap();
    assert_eq!(v3_record.in_use_by.len(), 1);
    assert_eq!(v3_record.in_use_by[0].kind, WorkloadKind::Deployment);
    assert_eq!(v3_record.in_use_by[0].to_string(), "deployment shop/api");
    let v4_record = images.iter().find(|i| i.digest == v4.digest).unwrap();
    assert!(v4_record.in_use_by.is_empty());
    assert!(inventory.warnings.is_empty(), "{:?}", inventory.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_set_scaled_to_zero_keeps_its_image_for_a_rollback() {
    let scene = Scene::start("team/web", &["v1", "v2"], 30).await;
    let Scene { src, k8s, reg, .. } = &scene;
    let mirror = service_mirror(reg, k8s);
    let v1 = deploy(&mirror, src, "web", "team/web", "v1").await;
    k8s.put(&kube_api::replica_set(
        "shop",
        "web-5d8f",
        &v1.pull_reference,
        0,
    ));
    let v2 = deploy(&mirror, src, "web", "team/web", "v2").await;
    assert!(v2.evicted.is_empty(), "{:?}", v2.evicted);
    assert!(digests(reg, &v1.repository).await.contains(&v1.digest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_discovery_fails_a_deploy_evicts_nothing_and_says_why() {
    let scene = Scene::start("team/api", &["v1", "v2"], 40).await;
    let Scene { src, k8s, reg, .. } = &scene;
    let mirror = service_mirror(reg, k8s);
    let v1 = deploy(&mirror, src, "api", "team/api", "v1").await;
    k8s.forbid("pods");
    let v2 = deploy(&mirror, src, "api", "team/api", "v2").await;
    assert!(v2.evicted.is_empty());
    assert!(
        v2.warnings.iter().any(|w| matches!(
            w,
            mirror_core::Warning::InUseUnknown { repository: Some(r), error }
                if *r == v1.repository && error.contains("HTTP 403")
        )),
        "{:?}",
        v2.warnings
    );
    assert!(digests(reg, &v1.repository).await.contains(&v1.digest));
    // The inventory still answers, and says what it could not find out.
    let inventory = mirror.inventory().await.unwrap();
    assert_eq!(inventory.warnings.len(), 1, "{:?}", inventory.warnings);
    assert_eq!(inventory.warnings[0].kind(), "in_use_unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_sweep_keeps_what_a_cron_job_references_and_stops_when_discovery_fails() {
    let scene = Scene::start("lib/tools", &["backup", "report", "scratch"], 50).await;
    let Scene { src, k8s, reg, .. } = &scene;
    let retention = Duration::from_secs(3600);
    let mirror = Mirror::builder(reg.clone(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(retention)))
        .in_use_source(discovery(k8s))
        .build()
        .unwrap();
    let backup = deploy(&mirror, src, "ops", "lib/tools", "backup").await;
    let report = deploy(&mirror, src, "ops", "lib/tools", "report").await;
    k8s.put(&kube_api::cron_job(
        "ops",
        "nightly-backup",
        &backup.pull_reference,
    ));

    // The inventory shows who uses what and when the rest expires.
    let inventory = mirror.inventory().await.unwrap();
    let images = &inventory.repositories[0].images;
    for image in images {
        let pushed = image.pushed_at.expect("a push time");
        assert_eq!(image.expires_at, Some(pushed + retention));
    }
    let b = images.iter().find(|i| i.digest == backup.digest).unwrap();
    assert_eq!(b.in_use_by[0].to_string(), "cron_job ops/nightly-backup");

    // Two hours later, both are past the retention: only the unreferenced one goes.
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let swept = mirror.sweep(later, &HashSet::new(), false).await.unwrap();
    assert_eq!(swept.deleted, vec![report.digest.clone()]);
    assert_eq!(
        digests(reg, &backup.repository).await,
        [backup.digest.clone()].into()
    );

    // Discovery refused: the sweep fails and deletes nothing.
    let scratch = deploy(&mirror, src, "ops", "lib/tools", "scratch").await;
    k8s.forbid("cronjobs");
    let err = mirror
        .sweep(later, &HashSet::new(), false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InUseUnknown {
                status: Some(403),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        digests(reg, &backup.repository).await,
        [backup.digest.clone(), scratch.digest.clone()].into()
    );
    // And the CronJob going away lets its image expire.
    let k8s2 = FakeKubernetes::start().await;
    let mirror = Mirror::builder(reg.clone(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(retention)))
        .in_use_source(discovery(&k8s2))
        .build()
        .unwrap();
    let swept = mirror.sweep(later, &HashSet::new(), false).await.unwrap();
    assert_eq!(swept.deleted.len(), 2);
}
