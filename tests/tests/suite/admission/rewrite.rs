//! Pods rewritten to their pinned mirror references: several sources and container lists,
//! an update, a slow source within the budget, fifty concurrent admissions of one image.

use std::collections::HashSet;
use std::time::Duration;

use kube::core::admission::Operation;
use mirror_core::testing::{Fault, FaultProxy, Rule, TestRegistry};
use mirror_core::ImageStore;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_containers_from_two_sources_are_pinned_to_the_sources_digests() {
    let (dst, src_a, src_b) = (
        TestRegistry::start(),
        TestRegistry::start(),
        TestRegistry::start(),
    );
    let api = push(&src_a, "team/api", "1.0", 1, &[30_000, 5_000]).await;
    let proxy = push(&src_b, "vendor/proxy", "2.1", 2, &[20_000]).await;
    let migrate = push(&src_a, "team/migrate", "1.0", 3, &[10_000]).await;
    let webhook = Webhook::start(controller(mirror(&dst), config())).await;

    // The sidecar is named by digest: it keeps exactly that digest.
    let by_digest = format!("{}/vendor/proxy@{}", src_b.host(), proxy.digest());
    let original = pod(
        "shop",
        &[&format!("{}/team/api:1.0", src_a.host()), &by_digest],
        Some(&format!("{}/team/migrate:1.0", src_a.host())),
    );
    let (response, patched) = webhook.admit(&original).await;
    assert_eq!(response["allowed"], true, "{response}");
    let expected = vec![
        pinned(&dst, api.digest()),
        pinned(&dst, proxy.digest()),
        pinned(&dst, migrate.digest()),
    ];
    assert_eq!(images(&patched), expected, "{response}");
    // The mirror holds each image under that digest (the manifest hashes to it).
    let mirrored = store(&dst, "prod/mirror");
    for image in [&api, &proxy, &migrate] {
        let head = mirrored
            .head_manifest(&image.digest().to_string())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} is not in the mirror", image.digest()));
        assert_eq!(&head.digest, image.digest());
    }
    // Only the images changed.
    let mut unpinned = serde_json::to_value(&patched).unwrap();
    let before = serde_json::to_value(&original).unwrap();
    unpinned["spec"]["containers"][0]["image"] = before["spec"]["containers"][0]["image"].clone();
    unpinned["spec"]["containers"][1]["image"] = before["spec"]["containers"][1]["image"].clone();
    unpinned["spec"]["initContainers"][0]["image"] =
        before["spec"]["initContainers"][0]["image"].clone();
    assert_eq!(unpinned, before, "the patch touched something else");

    // `kubectl debug` adds an ephemeral container (an update of pods/ephemeralcontainers):
    // only it is rewritten.
    let debugged = with_ephemeral(
        patched.clone(),
        &format!("{}/vendor/proxy:2.1", src_b.host()),
    );
    let (response, _) = webhook
        .post(review(&debugged, Operation::Update, Some(&patched), false))
        .await;
    let after = apply(&debugged, &response);
    let mut with_debugger = expected.clone();
    with_debugger.push(pinned(&dst, proxy.digest()));
    assert_eq!(images(&after), with_debugger, "{response}");

    // An update that changes no image (a label) rewrites nothing, not even the images still
    // naming their sources: that would restart the containers.
    let mut relabelled = original.clone();
    relabelled.metadata.labels = Some([("tier".to_string(), "web".to_string())].into());
    let (response, _) = webhook
        .post(review(
            &relabelled,
            Operation::Update,
            Some(&original),
            false,
        ))
        .await;
    assert_allowed_unpatched(&response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_source_is_admitted_unchanged_within_the_budget_and_the_next_pod_is_rewritten() {
    let (dst, src) = (TestRegistry::start(), TestRegistry::start());
    let image = push(&src, "team/slow", "1", 11, &[40_000, 40_000]).await;
    let slow = FaultProxy::start(&src.host());
    slow.add(Rule::new(
        Some("GET"),
        "/blobs/",
        Fault::Delay(Duration::from_secs(3)),
        1000,
    ));
    let budget = Duration::from_secs(1);
    let webhook = Webhook::start(controller(mirror(&dst), config().with_budget(budget))).await;
    let p = pod("shop", &[&format!("{}/team/slow:1", slow.host())], None);

    let (response, took) = webhook
        .post(review(&p, Operation::Create, None, false))
        .await;
    assert_allowed_unpatched(&response);
    assert!(
        took < budget + Duration::from_millis(700),
        "answered after {took:?}, budget {budget:?}"
    );
    let warning = response["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("being mirrored"), "{response}");
    assert_eq!(
        webhook.controller.lookups_in_progress(),
        1,
        "the copy goes on after the answer"
    );

    settle(&webhook.controller).await;
    let (response, took) = webhook
        .post(review(&p, Operation::Create, None, false))
        .await;
    let next = apply(&p, &response);
    assert_eq!(images(&next), [pinned(&dst, image.digest())], "{response}");
    assert!(took < budget, "the skip answers at once: {took:?}");
    assert_eq!(webhook.controller.stats().copies, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_admissions_of_one_image_copy_it_once() {
    let (dst, src) = (TestRegistry::start(), TestRegistry::start());
    let image = push(
        &src,
        "team/popular",
        "3",
        21,
        &[1_000_000, 500_000, 200_000],
    )
    .await;
    let webhook = Webhook::start(controller(
        mirror(&dst),
        config().with_budget(Duration::from_secs(20)),
    ))
    .await;
    let p = pod("shop", &[&format!("{}/team/popular:3", src.host())], None);

    let answers = futures::future::join_all(
        (0..50).map(|_| webhook.post(review(&p, Operation::Create, None, false))),
    )
    .await;
    let mut pinned_refs = HashSet::new();
    for (response, _) in &answers {
        assert_eq!(response["allowed"], true, "{response}");
        pinned_refs.extend(images(&apply(&p, response)));
    }
    assert_eq!(
        pinned_refs,
        HashSet::from([pinned(&dst, image.digest())]),
        "every admission within its budget got the one pinned reference"
    );
    settle(&webhook.controller).await;

    let uploads = tests::completed_uploads(&dst);
    let blobs: HashSet<String> = image
        .blobs()
        .iter()
        .map(|b| b.digest().to_string())
        .collect();
    assert_eq!(
        uploads.keys().cloned().collect::<HashSet<_>>(),
        blobs,
        "the image's blobs, nothing else"
    );
    for (blob, count) in &uploads {
        assert_eq!(*count, 1, "{blob} uploaded {count} times");
    }
    let stats = webhook.controller.stats();
    assert_eq!((stats.lookups_started, stats.copies), (1, 1), "{stats:?}");
}
