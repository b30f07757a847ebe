//! Everything the webhook leaves alone, answers `allowed` with no patch, or denies with its
//! message in strict mode: a failing source, excluded namespaces, an opt-out, dry runs, a
//! pod already on the mirror, malformed reviews.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use mirror_core::admission::OPT_OUT;
use mirror_core::testing::{Fault, FaultProxy, Rule, TestRegistry};

use super::*;

/// Asserts a strict-mode denial: not allowed, 403, the message starting with `start`.
#[track_caller]
fn assert_denied(response: &Value, start: &str) {
    assert_eq!(response["allowed"], false, "{response}");
    assert_eq!(response["status"]["code"], 403, "{response}");
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(start), "{message}");
    assert!(response.get("patch").is_none(), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_source_is_admitted_unchanged_or_denied_in_strict_mode() {
    let (dst, src) = (TestRegistry::start(), TestRegistry::start());
    push(&src, "team/broken", "1", 41, &[10_000]).await;
    let failing = FaultProxy::start(&src.host());
    failing.add(Rule::new(
        None,
        "/manifests/",
        Fault::Status {
            status: 500,
            retry_after: None,
        },
        100_000,
    ));
    let image = format!("{}/team/broken:1", failing.host());
    let p = pod("shop", &[&image], None);
    let budget = Duration::from_secs(4);

    let lax = Webhook::start(controller(mirror(&dst), config().with_budget(budget))).await;
    let (response, took) = lax.post(review(&p, Operation::Create, None, false)).await;
    assert_allowed_unpatched(&response);
    assert!(took < budget + Duration::from_millis(700), "{took:?}");
    settle(&lax.controller).await;
    assert_eq!(lax.controller.stats().failures, 1);
    assert!(tests::completed_uploads(&dst).is_empty(), "nothing copied");

    let strict = Webhook::start(controller(
        mirror(&dst),
        config().with_budget(budget).with_strict(true),
    ))
    .await;
    let (response, _) = strict
        .post(review(&p, Operation::Create, None, false))
        .await;
    assert_denied(&response, &format!("image {image} could not be mirrored"));
    let message = response["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("500"),
        "the source's answer is said: {message}"
    );
    assert!(
        message.ends_with("this cluster runs mirrored images only"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_namespaces_opt_outs_and_dry_runs_copy_nothing() {
    let (dst, src) = (TestRegistry::start(), TestRegistry::start());
    push(&src, "team/app", "1", 51, &[10_000]).await;
    let image = format!("{}/team/app:1", src.host());
    let webhook = Webhook::start(controller(
        mirror(&dst),
        config().with_excluded_namespace("batch"),
    ))
    .await;
    let requests_before = tests::access_lines(&src).len();

    let mut opted_out = pod("shop", &[&image], None);
    opted_out.metadata.annotations = Some([(OPT_OUT.to_string(), "true".to_string())].into());
    let cases = [
        (
            "its own namespace",
            pod("mirror-system", &[&image], None),
            false,
        ),
        ("kube-system", pod("kube-system", &[&image], None), false),
        ("a listed namespace", pod("batch", &[&image], None), false),
        ("an opted-out pod", opted_out, false),
        ("a dry run", pod("shop", &[&image], None), true),
    ];
    for (name, p, dry_run) in cases {
        let (response, _) = webhook
            .post(review(&p, Operation::Create, None, dry_run))
            .await;
        assert_eq!(response["allowed"], true, "{name}: {response}");
        assert!(response.get("patch").is_none(), "{name}: {response}");
    }
    assert_eq!(webhook.controller.stats().lookups_started, 0);
    assert_eq!(
        tests::access_lines(&src).len(),
        requests_before,
        "the source was never asked"
    );
    assert!(tests::completed_uploads(&dst).is_empty(), "nothing copied");

    // The same pod elsewhere is rewritten: the exclusions were what kept it.
    let (response, patched) = webhook.admit(&pod("shop", &[&image], None)).await;
    assert!(images(&patched)[0].starts_with(&dst.host()), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_already_on_the_mirror_passes_through() {
    let (dst, src) = (TestRegistry::start(), TestRegistry::start());
    let image = push(&src, "team/app", "2", 61, &[10_000]).await;
    let webhook = Webhook::start(controller(mirror(&dst), config())).await;
    let (_, patched) = webhook
        .admit(&pod("shop", &[&format!("{}/team/app:2", src.host())], None))
        .await;
    assert_eq!(images(&patched), [pinned(&dst, image.digest())]);
    let lookups = webhook.controller.stats().lookups_started;
    let requests = tests::access_lines(&dst).len();

    // The API server calls again (reinvocation), or a pod names the mirror itself.
    let (response, _) = webhook.admit(&patched).await;
    assert_allowed_unpatched(&response);
    let by_hand = format!("{}/prod/mirror:whatever", dst.host());
    let (response, _) = webhook.admit(&pod("shop", &[&by_hand], None)).await;
    assert_allowed_unpatched(&response);
    assert_eq!(webhook.controller.stats().lookups_started, lookups);
    assert_eq!(
        tests::access_lines(&dst).len(),
        requests,
        "no request at all"
    );
}

/// The review of a Deployment (a webhook registered for the wrong resources).
fn deployment_review(uid: &str) -> Vec<u8> {
    let d = tests::kube_api::deployment("shop", "web", "nginx:1.27", &[]);
    let request = AdmissionRequest::<Deployment> {
        types: TypeMeta::default(),
        uid: uid.into(),
        kind: GroupVersionKind::gvk("apps", "v1", "Deployment"),
        resource: GroupVersionResource::gvr("apps", "v1", "deployments"),
        sub_resource: None,
        request_kind: None,
        request_resource: None,
        request_sub_resource: None,
        name: "web".into(),
        namespace: Some("shop".into()),
        operation: Operation::Create,
        user_info: Default::default(),
        object: Some(d),
        old_object: None,
        dry_run: false,
        options: None,
    };
    serde_json::to_vec(&AdmissionReview {
        types: TypeMeta {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
        },
        request: Some(request),
        response: None,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reviews_are_allowed_unchanged_or_denied_in_strict_mode() {
    let dst = TestRegistry::start();
    let lax = Webhook::start(controller(mirror(&dst), config())).await;
    let strict = Webhook::start(controller(mirror(&dst), config().with_strict(true))).await;
    let huge = {
        let mut p = pod("shop", &["nginx:1.27"], None);
        p.metadata.annotations = Some([("blob".to_string(), "x".repeat(5 << 20))].into());
        review_as("uid-huge", &p, Operation::Create, None, false)
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "bad JSON",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"uid-bad","kind":{"#
                .to_vec(),
            "uid-bad",
        ),
        ("not a Pod", deployment_review("uid-deployment"), "uid-deployment"),
        ("a huge body", huge, "uid-huge"),
    ];
    for (name, body, uid) in cases {
        let (response, took) = lax.post(body.clone()).await;
        assert_allowed_unpatched(&response);
        assert_eq!(
            response["uid"], uid,
            "{name}: the API server matches the answer by uid"
        );
        assert!(took < Duration::from_secs(5), "{name}: {took:?}");
        let (response, _) = strict.post(body).await;
        assert_denied(&response, "the admission review could not be read");
        assert_eq!(response["uid"], uid, "{name}");
    }
    assert_eq!(lax.controller.stats().lookups_started, 0);
}
