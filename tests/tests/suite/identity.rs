//! Exactly the image asked for, and it stays until its pods can start (against the real
//! registry). Each test is an attack that broke the promise before tags carried the source's
//! identity and before hand-outs were protected:
//!
//! - a service switched to another source with the same tag got the first source's image
//!   (with `TagPolicy::Trust`, with the source down, and for a typo'd repository);
//! - a digest-pinned source the mirror already held still needed the source;
//! - a sweep right after a skip of an expired image deleted what was just handed out.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mirror_core::kit::retry::{Clock, ManualClock};
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{
    Action, ClusterStrategy, ImageStore, Mirror, Registry, Repository, ServiceStrategy, Source,
    TagPolicy,
};
use tests::access_lines;

fn image(seed: u64) -> TestImage {
    TestImage::builder()
        .seed(seed)
        .layers([20_000, 30_000])
        .build()
}

fn pinned(reg: &TestRegistry, repo: &str, img: &TestImage) -> Source {
    Source::parse(&format!("{}/{repo}@{}", reg.host(), img.digest())).unwrap()
}

fn service_mirror(dst: &TestRegistry, policy: TagPolicy) -> Mirror {
    Mirror::builder(dst.generic_registry(), "prod")
        .strategy(Arc::new(ServiceStrategy { keep_previous: 1 }))
        .tag_policy(policy)
        .build()
        .unwrap()
}

async fn store_of(dst: &TestRegistry, repository: &str) -> Arc<dyn ImageStore> {
    dst.generic_registry()
        .store(&Repository::listed(repository))
        .await
        .unwrap()
}

/// The two sources of the switch: `acme/api:v1` and `acme/worker:v1`, different images.
async fn two_sources(src: &TestRegistry) -> (TestImage, TestImage) {
    let (api, worker) = (image(1), image(2));
    src.push("acme/api", "v1", &api).await;
    src.push("acme/worker", "v1", &worker).await;
    (api, worker)
}

#[tokio::test]
async fn a_service_switched_to_another_source_with_the_same_tag_gets_that_sources_image_with_trust()
{
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let (api, worker) = two_sources(&src).await;
    let mirror = service_mirror(&dst, TagPolicy::Trust);
    let first = mirror
        .mirror("svc", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    assert_eq!(&first.digest, api.digest());
    assert!(
        first.tag.starts_with("v1-"),
        "people still read the source tag: {}",
        first.tag
    );
    let switched = mirror
        .mirror("svc", &src.source("acme/worker", "v1"))
        .await
        .unwrap();
    assert_eq!(
        &switched.digest,
        worker.digest(),
        "the worker source must never be answered with the api image"
    );
    assert_eq!(switched.action, Action::Copied);
    assert_ne!(switched.tag, first.tag, "two sources never share a tag");
    // And back: the api image is found under its own tag (a skip, no copy).
    let back = mirror
        .mirror("svc", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    assert_eq!(&back.digest, api.digest());
    assert_eq!(back.action, Action::Skipped);
}

#[tokio::test]
async fn a_switched_service_whose_new_source_is_down_fails_instead_of_serving_the_old_image() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let (api, _) = two_sources(&src).await;
    let mirror = service_mirror(&dst, TagPolicy::Verify);
    let first = mirror
        .mirror("svc", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    assert_eq!(&first.digest, api.digest());
    src.stop();
    let err = mirror
        .mirror("svc", &src.source("acme/worker", "v1"))
        .await
        .expect_err("nothing was ever mirrored from acme/worker:v1: an error, not acme/api");
    assert!(
        matches!(err, mirror_core::Error::Connect { .. }),
        "the source is down: {err:?}"
    );
    // The outage fallback still serves what was mirrored from that same source and tag.
    let served = mirror
        .mirror("svc", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    assert_eq!(&served.digest, api.digest());
    assert!(
        served
            .warnings
            .iter()
            .any(|w| w.kind() == "source_unreachable"),
        "{:?}",
        served.warnings
    );
}

#[tokio::test]
async fn a_typo_in_the_source_repository_is_an_error_not_another_applications_image() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    two_sources(&src).await;
    for policy in [TagPolicy::Verify, TagPolicy::Trust] {
        let mirror = service_mirror(&dst, policy);
        mirror
            .mirror("svc", &src.source("acme/api", "v1"))
            .await
            .unwrap();
        let err = mirror
            .mirror("svc", &src.source("acme/nope", "v1"))
            .await
            .expect_err("acme/nope does not exist");
        assert!(err.is_not_found(), "{policy:?}: {err:?}");
    }
}

#[tokio::test]
async fn a_digest_held_under_another_tag_is_served_with_the_source_down_and_no_source_request() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let (api, _) = two_sources(&src).await;
    let mirror = service_mirror(&dst, TagPolicy::Verify);
    mirror
        .mirror("svc", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    src.stop();
    let d = mirror
        .mirror("svc", &pinned(&src, "acme/api", &api))
        .await
        .expect("the service's repository holds the digest: no source needed");
    assert_eq!(&d.digest, api.digest());
    assert_eq!(d.action, Action::Skipped);
    assert_eq!(d.bytes_uploaded, 0);
    assert!(d.pull_reference.ends_with(&format!("@{}", api.digest())));
    // Tagged as the strategy wants: the next deploy of the pinned source is a plain skip.
    let tagged = store_of(&dst, &d.repository).await;
    assert_eq!(
        tagged
            .head_manifest(&d.tag)
            .await
            .unwrap()
            .map(|h| h.digest),
        Some(api.digest().clone())
    );
    src.restart();
    // (The restart's readiness probe is in the log: count from here.)
    let src_requests = access_lines(&src).len();
    let again = mirror
        .mirror("svc", &pinned(&src, "acme/api", &api))
        .await
        .unwrap();
    assert_eq!(again.action, Action::Skipped);
    let after: Vec<String> = access_lines(&src).into_iter().skip(src_requests).collect();
    assert!(
        after.is_empty(),
        "a digest the mirror holds needs no source request: {after:?}"
    );
}

#[tokio::test]
async fn a_digest_held_by_another_services_repository_is_mounted_with_zero_bytes_and_the_source_down(
) {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let (api, _) = two_sources(&src).await;
    let mirror = service_mirror(&dst, TagPolicy::Verify);
    mirror
        .mirror("a", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    src.stop();
    // A fresh deployer process: it finds the lender by listing the cluster's repositories.
    let fresh = service_mirror(&dst, TagPolicy::Verify);
    let d = fresh
        .mirror("b", &pinned(&src, "acme/api", &api))
        .await
        .expect("another repository of the mirror holds the digest");
    assert_eq!(&d.digest, api.digest());
    assert_eq!(d.bytes_uploaded, 0, "{d:?}");
    assert_eq!(d.blobs_uploaded, 0);
    assert!(d.blobs_mounted >= 3, "config and layers mounted: {d:?}");
    assert_eq!(d.repository, "prod/services/b");
    let b = store_of(&dst, "prod/services/b").await;
    assert!(b
        .head_manifest(&api.digest().to_string())
        .await
        .unwrap()
        .is_some());
    for blob in api.blobs() {
        assert!(
            b.has_blob(blob.digest(), None).await.unwrap(),
            "blob mounted"
        );
    }
}

/// Cluster mode with a one-hour retention, on a manual clock: `push` is when the image was
/// first mirrored.
fn cluster_mirror(dst: &TestRegistry, clock: Arc<ManualClock>) -> Mirror {
    Mirror::builder(dst.generic_registry(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(3600))))
        .clock(clock)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_sweep_right_after_a_skip_of_an_expired_image_keeps_what_was_handed_out() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let img = image(5);
    src.push("acme/api", "v1", &img).await;
    let t0 = SystemTime::now() - Duration::from_secs(3 * 3600);
    let clock = ManualClock::new(t0);
    let first = cluster_mirror(&dst, clock.clone())
        .mirror("web", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    assert_eq!(first.action, Action::Copied);

    // Three hours later (two past the retention) another service deploys it: a skip, from
    // a fresh deployer process, which hands the pinned reference out.
    clock.advance(Duration::from_secs(3 * 3600));
    let deployer = cluster_mirror(&dst, clock.clone());
    let skip = deployer
        .mirror("worker", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    assert_eq!(skip.action, Action::Skipped);
    assert_eq!(skip.digest, first.digest);
    assert!(skip.warnings.is_empty(), "{:?}", skip.warnings);

    // The sweep CronJob runs right after, before the pods exist (another process).
    let sweeper = cluster_mirror(&dst, clock.clone());
    let swept = sweeper
        .sweep(clock.now(), &Default::default(), false)
        .await
        .unwrap();
    assert!(
        !swept.deleted.contains(&skip.digest),
        "the image handed out a moment ago was deleted: {swept:?}"
    );
    let store = store_of(&dst, &skip.repository).await;
    assert!(store
        .head_manifest(&skip.digest.to_string())
        .await
        .unwrap()
        .is_some());

    // Once the grace has passed (and nothing uses it), retention takes it as before.
    clock.advance(Duration::from_secs(25 * 60));
    let later = sweeper
        .sweep(clock.now(), &Default::default(), false)
        .await
        .unwrap();
    assert!(later.deleted.contains(&skip.digest), "{later:?}");
}

#[tokio::test]
async fn a_skip_far_from_expiry_stays_one_head_even_in_a_fresh_process_that_knows_the_push() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let img = image(6);
    src.push("acme/api", "v1", &img).await;
    let clock = ManualClock::new(SystemTime::now());
    let mirror = cluster_mirror(&dst, clock.clone());
    mirror
        .mirror("web", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    // The same process, minutes later: it pushed the image, so it knows it is far from
    // expiry: HEADs only, no mark.
    clock.advance(Duration::from_secs(60));
    let before = access_lines(&dst).len();
    let skip = mirror
        .mirror("worker", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    assert_eq!(skip.action, Action::Skipped);
    let after: Vec<String> = access_lines(&dst).into_iter().skip(before).collect();
    assert_eq!(after.len(), 1, "one manifest HEAD: {after:?}");
    assert!(after[0].starts_with("HEAD "), "{after:?}");
    // A fresh process learns the push times once (one tag listing) and writes no mark for
    // an image far from expiry.
    let before = access_lines(&dst).len();
    let fresh = cluster_mirror(&dst, clock.clone());
    fresh
        .mirror("worker", &src.source("acme/api", "v1"))
        .await
        .unwrap();
    let after: Vec<String> = access_lines(&dst).into_iter().skip(before).collect();
    assert!(
        after.iter().all(|r| !r.starts_with("PUT ")),
        "no mark for an image far from expiry: {after:?}"
    );
}
