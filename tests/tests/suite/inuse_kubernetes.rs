//! Kubernetes discovery of in-use images: the real `kube` client against the in-process API
//! server of `tests::kube_api`, serving real `k8s-openapi` objects with `limit`/`continue`
//! pagination, 403s for missing RBAC and 410s for expired continue tokens.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use mirror_core::inuse::kubernetes::{KubernetesInUse, CLUSTER_ROLE};
use mirror_core::inuse::{InUseSource, WorkloadKind};
use mirror_core::{Digest, Error};
use tests::kube_api::{self, FakeKubernetes};

async fn workloads_of(source: &KubernetesInUse) -> BTreeSet<String> {
    source
        .image_uses()
        .await
        .unwrap()
        .iter()
        .map(|u| u.workload.to_string())
        .collect()
}

fn uses_of(list: &[mirror_core::inuse::ImageUse]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|u| (u.workload.to_string(), u.reference.clone()))
        .collect()
}

/// One object of every kind, in two namespaces.
fn populate(k8s: &FakeKubernetes, digest: &Digest) {
    let at = |image: &str| format!("mirror.example/prod/{image}");
    k8s.put(&kube_api::pod(
        "shop",
        "web-1",
        &at("web:v2"),
        Some(&at(&format!("web@{digest}"))),
        Some(&at("init:v1")),
        Some(&at("debug:v1")),
        &[("app", "web")],
    ));
    let web = &[("app", "web")];
    k8s.put(&kube_api::deployment("shop", "web", &at("web:v2"), web));
    k8s.put(&kube_api::replica_set("shop", "web-old", &at("web:v1"), 0));
    k8s.put(&kube_api::stateful_set("data", "db", &at("db:v5")));
    k8s.put(&kube_api::daemon_set(
        "kube-system",
        "agent",
        &at("agent:v3"),
    ));
    k8s.put(&kube_api::job("data", "migrate", &at("migrate:v9")));
    k8s.put(&kube_api::cron_job("data", "backup", &at("backup:v4")));
}

#[tokio::test]
async fn every_kind_of_workload_is_discovered_page_by_page() {
    let k8s = FakeKubernetes::start().await;
    let digest = Digest::sha256_of(b"web v2");
    populate(&k8s, &digest);
    // Two more pods so that pods take three pages of one.
    for n in 2..4 {
        k8s.put(&kube_api::pod(
            "shop",
            &format!("web-{n}"),
            "mirror.example/prod/web:v2",
            None,
            None,
            None,
            &[],
        ));
    }
    let source = KubernetesInUse::from_config(k8s.config())
        .unwrap()
        .page_size(1);
    let found = uses_of(&source.image_uses().await.unwrap());
    let expected: BTreeSet<(String, String)> = [
        ("pod shop/web-1", "mirror.example/prod/web:v2".to_string()),
        (
            "pod shop/web-1",
            format!("mirror.example/prod/web@{digest}"),
        ),
        ("pod shop/web-1", "mirror.example/prod/init:v1".to_string()),
        ("pod shop/web-1", "mirror.example/prod/debug:v1".to_string()),
        ("pod shop/web-2", "mirror.example/prod/web:v2".to_string()),
        ("pod shop/web-3", "mirror.example/prod/web:v2".to_string()),
        (
            "deployment shop/web",
            "mirror.example/prod/web:v2".to_string(),
        ),
        (
            "replica_set shop/web-old",
            "mirror.example/prod/web:v1".to_string(),
        ),
        (
            "stateful_set data/db",
            "mirror.example/prod/db:v5".to_string(),
        ),
        (
            "daemon_set kube-system/agent",
            "mirror.example/prod/agent:v3".to_string(),
        ),
        (
            "job data/migrate",
            "mirror.example/prod/migrate:v9".to_string(),
        ),
        (
            "cron_job data/backup",
            "mirror.example/prod/backup:v4".to_string(),
        ),
    ]
    .into_iter()
    .map(|(w, r)| (w.to_string(), r))
    .collect();
    assert_eq!(found, expected);

    let requests = k8s.requests();
    let pods: Vec<_> = requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/pods"))
        .collect();
    assert_eq!(pods.len(), 3, "three pages of one pod: {pods:?}");
    assert!(pods.iter().all(|r| r.contains("limit=1")), "{pods:?}");
    assert_eq!(
        pods.iter().filter(|r| r.contains("continue=")).count(),
        2,
        "{pods:?}"
    );
    // Only get/list of what the documented ClusterRole grants.
    for r in &requests {
        assert!(r.starts_with("GET "), "read only: {r}");
        let resource = r
            .split('?')
            .next()
            .and_then(|p| p.rsplit('/').next())
            .unwrap();
        assert!(
            CLUSTER_ROLE.contains(&format!("\"{resource}\"")),
            "{resource} is not in the ClusterRole:\n{CLUSTER_ROLE}"
        );
    }
}

#[tokio::test]
async fn namespaces_and_a_label_selector_narrow_the_listing() {
    let k8s = FakeKubernetes::start().await;
    populate(&k8s, &Digest::sha256_of(b"x"));
    let source = KubernetesInUse::from_config(k8s.config())
        .unwrap()
        .namespaces(["data"]);
    let workloads = workloads_of(&source).await;
    assert_eq!(
        workloads,
        [
            "cron_job data/backup",
            "job data/migrate",
            "stateful_set data/db"
        ]
        .into_iter()
        .map(str::to_string)
        .collect()
    );
    assert!(k8s
        .requests()
        .iter()
        .all(|r| r.contains("/namespaces/data/")));

    let labelled = KubernetesInUse::from_config(k8s.config())
        .unwrap()
        .label_selector("app=web");
    let workloads = workloads_of(&labelled).await;
    assert_eq!(
        workloads,
        ["deployment shop/web", "pod shop/web-1"]
            .into_iter()
            .map(str::to_string)
            .collect()
    );
}

#[tokio::test]
async fn an_expired_continue_token_restarts_the_listing_without_losing_or_doubling_objects() {
    let k8s = FakeKubernetes::start().await;
    for n in 0..5 {
        k8s.put(&kube_api::pod(
            "shop",
            &format!("p{n}"),
            &format!("mirror.example/prod/app:v{n}"),
            None,
            None,
            None,
            &[],
        ));
    }
    k8s.expire_next_continue("pods");
    let source = KubernetesInUse::from_config(k8s.config())
        .unwrap()
        .page_size(2);
    let uses = source.image_uses().await.unwrap();
    let pods: Vec<_> = uses
        .iter()
        .filter(|u| u.workload.kind == WorkloadKind::Pod)
        .map(|u| u.reference.clone())
        .collect();
    assert_eq!(pods.len(), 5, "every pod once: {pods:?}");
    let firsts = k8s
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/pods") && !r.contains("continue="))
        .count();
    assert_eq!(firsts, 2, "the listing started again once");
}

#[tokio::test]
async fn missing_rbac_is_an_error_that_names_the_permission_never_an_empty_list() {
    let k8s = FakeKubernetes::start().await;
    populate(&k8s, &Digest::sha256_of(b"x"));
    k8s.forbid("cronjobs");
    let source = KubernetesInUse::from_config(k8s.config()).unwrap();
    let err = source.image_uses().await.unwrap_err();
    match &err {
        Error::InUseUnknown {
            operation,
            status,
            message,
            ..
        } => {
            assert_eq!(*status, Some(403));
            assert!(operation.contains("cronjobs"), "{operation}");
            assert!(message.contains("cannot list resource"), "{message}");
            assert!(message.contains("ClusterRole"), "{message}");
        }
        other => panic!("expected InUseUnknown, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("cannot tell which images are in use"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_an_error_in_bounded_time() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
    let source = KubernetesInUse::from_config(config).unwrap();
    let err = tokio::time::timeout(std::time::Duration::from_secs(60), source.image_uses())
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        matches!(err, Error::InUseUnknown { status: None, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_kubeconfig_file_and_context_are_read() {
    let k8s = FakeKubernetes::start().await;
    k8s.put(&kube_api::deployment(
        "shop",
        "web",
        "mirror.example/prod/web:v2",
        &[],
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    k8s.write_kubeconfig(&path);
    let source = KubernetesInUse::from_kubeconfig(&path, Some("fake"))
        .await
        .unwrap();
    let uses = source.image_uses().await.unwrap();
    assert_eq!(uses.len(), 1);
    let missing = KubernetesInUse::from_kubeconfig(&path, Some("nope")).await;
    assert!(
        matches!(missing, Err(Error::InUseUnknown { .. })),
        "{missing:?}"
    );
    // Removing objects is seen on the next call.
    k8s.remove::<Deployment>("shop", "web");
    assert!(source.image_uses().await.unwrap().is_empty());
}
