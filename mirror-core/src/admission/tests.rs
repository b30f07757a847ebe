//! Unit tests of the admission module: everything that needs no registry (malformed reviews,
//! exclusions, pass-through, failing sources, strict denials, uid sniffing). The end-to-end
//! tests against the real registry are `tests/tests/suite/admission*.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::{AdmissionRequest, AdmissionReview, Operation};
use kube::core::{GroupVersionKind, GroupVersionResource, TypeMeta};
use serde_json::Value;

use super::*;
use crate::retry::RetryConfig;
use crate::store::http::{credentials::Credentials, RegistryClient};
use crate::{ClusterStrategy, GenericRegistry, LayoutRegistry};

/// A port nothing listens on (connections are refused at once).
const NOWHERE: &str = "127.0.0.1:9";

fn mirror(host: &str) -> Arc<Mirror> {
    let client = RegistryClient::new(host, Credentials::Anonymous).unwrap();
    Arc::new(
        Mirror::builder(Arc::new(GenericRegistry::new(client)), "prod")
            .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(86_400))))
            .build()
            .unwrap(),
    )
}

fn quick() -> RetryConfig {
    RetryConfig {
        max_attempts: 1,
        ..RetryConfig::default()
    }
}

fn controller(config: AdmissionConfig) -> AdmissionController {
    AdmissionController::builder(mirror(NOWHERE))
        .config(config.with_source_retry(quick()))
        .sources(Sources::new().with_retry(quick()))
        .build()
        .unwrap()
}

fn pod(namespace: &str, images: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: images
                .iter()
                .enumerate()
                .map(|(i, image)| Container {
                    name: format!("c{i}"),
                    image: Some((*image).into()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The review the API server sends for `pod`, as JSON bytes.
fn review(pod: &Pod, operation: Operation, dry_run: bool) -> Vec<u8> {
    let request = AdmissionRequest {
        types: TypeMeta::default(),
        uid: "705ab4f5-6393-11e8-b7cc-42010a800002".into(),
        kind: GroupVersionKind::gvk("", "v1", "Pod"),
        resource: GroupVersionResource::gvr("", "v1", "pods"),
        sub_resource: None,
        request_kind: None,
        request_resource: None,
        request_sub_resource: None,
        name: "web".into(),
        namespace: pod.metadata.namespace.clone(),
        operation,
        user_info: Default::default(),
        object: Some(pod.clone()),
        old_object: None,
        dry_run,
        options: None,
    };
    let review = AdmissionReview {
        types: TypeMeta {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
        },
        request: Some(request),
        response: None,
    };
    serde_json::to_vec(&review).unwrap()
}

/// The answer's `response` object, as the API server reads it.
fn response(answer: &Answer) -> Value {
    let v: Value = serde_json::from_slice(&answer.to_json()).unwrap();
    assert_eq!(v["kind"], "AdmissionReview");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    v["response"].clone()
}

fn assert_allowed_unpatched(answer: &Answer, uid: &str) {
    let r = response(answer);
    assert_eq!(r["uid"], uid, "{r}");
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("patch").is_none(), "no patch: {r}");
}

const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

#[tokio::test]
async fn a_layout_registry_cannot_serve_pods() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mirror::builder(Arc::new(LayoutRegistry::new(dir.path())), "prod")
        .build()
        .unwrap();
    let err = AdmissionController::builder(Arc::new(m))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no kubelet can pull"), "{err}");
}

#[tokio::test]
async fn malformed_reviews_are_allowed_unchanged_or_denied_in_strict_mode() {
    let lax = controller(AdmissionConfig::default());
    let strict = controller(AdmissionConfig::default().with_strict(true));
    let deployment = String::from_utf8(review(&pod("shop", &["nginx"]), Operation::Create, false))
        .unwrap()
        .replace(r#""kind":"Pod""#, r#""kind":"Deployment""#)
        .replace(r#""group":"""#, r#""group":"apps""#);
    let huge = {
        let mut p = pod("shop", &["nginx"]);
        p.metadata.annotations = Some([("big".to_string(), "x".repeat(5 << 20))].into());
        review(&p, Operation::Create, false)
    };
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "bad JSON",
            br#"{"request":{"uid":"abc-1","#.to_vec(),
            "abc-1",
        ),
        ("not a Pod", deployment.into_bytes(), UID),
        ("huge body", huge, UID),
        (
            "no request",
            br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#.to_vec(),
            "",
        ),
    ];
    for (name, body, uid) in cases {
        let started = Instant::now();
        let answer = lax.review(&body, None).await;
        assert_allowed_unpatched(&answer, uid);
        assert_eq!(answer.report.outcome, Outcome::Failed, "{name}");
        assert!(answer.report.malformed.is_some(), "{name}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name}: at once"
        );

        let answer = strict.review(&body, None).await;
        let r = response(&answer);
        assert_eq!(r["allowed"], false, "{name}: {r}");
        assert_eq!(r["uid"], uid, "{name}");
        assert_eq!(r["status"]["code"], 403, "{name}: {r}");
        assert!(
            r["status"]["message"]
                .as_str()
                .unwrap()
                .starts_with("the admission review could not be read"),
            "{name}: {r}"
        );
        assert!(matches!(
            answer.report.denial,
            Some(Denial::Malformed { .. })
        ));
    }
    assert_eq!(lax.stats().lookups_started, 0);
}

#[tokio::test]
async fn exclusions_pass_through_without_a_lookup() {
    let c = controller(
        AdmissionConfig::default()
            .with_own_namespace("mirror")
            .with_excluded_namespace("batch")
            .with_excluded_image(ImagePattern::new("registry.k8s.io/*").unwrap()),
    );
    let on_mirror = format!("{NOWHERE}/prod/mirror@sha256:{}", "a".repeat(64));
    let mut opted = pod("shop", &["nginx"]);
    opted.metadata.labels = Some([(OPT_OUT.to_string(), "true".to_string())].into());
    let cases = [
        (
            "own namespace",
            pod("mirror", &["nginx"]),
            false,
            Some(Exclusion::Namespace),
        ),
        (
            "kube-system",
            pod("kube-system", &["nginx"]),
            false,
            Some(Exclusion::Namespace),
        ),
        (
            "listed namespace",
            pod("batch", &["nginx"]),
            false,
            Some(Exclusion::Namespace),
        ),
        ("opt-out", opted, false, Some(Exclusion::OptOut)),
        (
            "dry run",
            pod("shop", &["nginx"]),
            true,
            Some(Exclusion::DryRun),
        ),
        (
            "pattern",
            pod("shop", &["registry.k8s.io/pause:3.9"]),
            false,
            None,
        ),
        (
            "loopback",
            pod("shop", &["localhost:5000/app:1"]),
            false,
            None,
        ),
        ("on the mirror", pod("shop", &[&on_mirror]), false, None),
    ];
    for (name, p, dry_run, excluded) in cases {
        let answer = c
            .review(&review(&p, Operation::Create, dry_run), None)
            .await;
        assert_allowed_unpatched(&answer, UID);
        assert_eq!(answer.report.excluded, excluded, "{name}");
        assert_eq!(answer.report.dry_run, dry_run, "{name}");
    }
    let answer = c
        .review(
            &review(
                &pod("shop", &["registry.k8s.io/pause:3.9"]),
                Operation::Create,
                false,
            ),
            None,
        )
        .await;
    assert_eq!(
        answer.report.images[0].outcome,
        ImageOutcome::Excluded {
            why: Exclusion::Pattern
        }
    );
    assert_eq!(answer.report.outcome, Outcome::Excluded);
    let answer = c
        .review(
            &review(&pod("shop", &[&on_mirror]), Operation::Create, false),
            None,
        )
        .await;
    assert_eq!(answer.report.images[0].outcome, ImageOutcome::OnMirror);
    assert_eq!(answer.report.outcome, Outcome::Unchanged);
    let answer = c
        .review(
            &review(&pod("shop", &["nginx"]), Operation::Delete, false),
            None,
        )
        .await;
    assert_allowed_unpatched(&answer, UID);
    assert_eq!(answer.report.excluded, Some(Exclusion::Operation));
    assert_eq!(c.stats().lookups_started, 0, "nothing was looked up");
}

#[tokio::test]
async fn a_failing_source_is_admitted_unchanged_and_remembered() {
    let c = controller(AdmissionConfig::default().with_loopback_sources(true));
    let body = review(
        &pod("shop", &["127.0.0.1:7/team/app:1", "Bad Ref"]),
        Operation::Create,
        false,
    );
    let answer = c.review(&body, None).await;
    assert_allowed_unpatched(&answer, UID);
    assert_eq!(answer.report.outcome, Outcome::Failed);
    assert!(
        matches!(&answer.report.images[0].outcome, ImageOutcome::Failed { error } if error.contains("cannot reach registry")),
        "{:?}",
        answer.report.images
    );
    assert!(matches!(
        &answer.report.images[1].outcome,
        ImageOutcome::Failed { .. }
    ));
    assert_eq!(c.stats().lookups_started, 1);
    assert_eq!(c.stats().failures, 1);
    // Within the failure back-off, the next admission does not ask again.
    let answer = c.review(&body, None).await;
    assert!(matches!(
        &answer.report.images[0].outcome,
        ImageOutcome::Failed { .. }
    ));
    assert_eq!(c.stats().lookups_started, 1);

    let strict = controller(
        AdmissionConfig::default()
            .with_loopback_sources(true)
            .with_strict(true),
    );
    let answer = strict.review(&body, None).await;
    let r = response(&answer);
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("image 127.0.0.1:7/team/app:1 could not be mirrored"),
        "{message}"
    );
    assert!(message.contains("mirrored images only"), "{message}");
}

#[test]
fn uids_are_sniffed_from_the_start_of_unreadable_bodies() {
    assert_eq!(
        review::sniff_uid(br#"{"kind":"AdmissionReview","request":{"uid" : "a-1.b_2","kind""#),
        "a-1.b_2"
    );
    assert_eq!(review::sniff_uid(br#"{"request":{"uid":"<script>"}}"#), "");
    assert_eq!(
        review::sniff_uid(br#"{"uid":"x"}"#),
        "",
        "outside a request"
    );
    assert_eq!(review::sniff_uid(b"\xff\xfe"), "");
}

#[test]
fn the_pods_outcome_is_its_worst_images() {
    let image = |outcome| ImageReport {
        kind: ContainerKind::Container,
        container: "c".into(),
        image: "i".into(),
        outcome,
    };
    let rewritten = ImageOutcome::Rewritten {
        pinned: "m/r@sha256:0".into(),
        digest: crate::Digest::sha256_of(b""),
        copied: false,
    };
    let mut r = AdmissionReport::new("u");
    r.images = vec![image(rewritten.clone()), image(ImageOutcome::OnMirror)];
    r.settle();
    assert_eq!(r.outcome, Outcome::Rewritten);
    r.images.push(image(ImageOutcome::Pending));
    r.settle();
    assert_eq!(r.outcome, Outcome::Pending);
    r.images
        .push(image(ImageOutcome::Failed { error: "e".into() }));
    r.settle();
    assert_eq!(r.outcome, Outcome::Failed);
    r.images = vec![image(ImageOutcome::Excluded {
        why: Exclusion::Pattern,
    })];
    r.settle();
    assert_eq!(r.outcome, Outcome::Excluded);
    r.images.clear();
    r.settle();
    assert_eq!(r.outcome, Outcome::Unchanged, "a pod without images");
    assert_eq!(
        Denial::for_image(&image(ImageOutcome::Pending))
            .unwrap()
            .to_string(),
        "image i is not in the mirror registry yet: its copy is under way; this cluster runs \
         mirrored images only, create the pod again in a minute"
    );
    assert!(Denial::for_image(&image(rewritten)).is_none());
}
