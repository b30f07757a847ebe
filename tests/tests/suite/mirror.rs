//! End-to-end tests of the `Mirror` façade against real distribution registries: Service and
//! Cluster modes, skips, eviction, mounts across services, mutable tags, source outages,
//! sweep, inventory and concurrent deployers (tasks and processes).

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tests::access_lines;

use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::Repository;
use mirror_core::{Action, ClusterStrategy, Mirror, Registry, ServiceStrategy, Source, TagPolicy};

fn image(seed: u64) -> TestImage {
    TestImage::builder()
        .seed(seed)
        .layers([30_000, 70_000])
        .build()
}

fn service_mirror(dst: &TestRegistry, keep: usize) -> Mirror {
    Mirror::builder(dst.generic_registry(), "prod")
        .strategy(Arc::new(ServiceStrategy {
            keep_previous: keep,
        }))
        .eviction_grace(Duration::ZERO)
        .build()
        .unwrap()
}

/// Request lines of the registry's access log ("METHOD /path") after `skip` lines.
fn requests_since(reg: &TestRegistry, skip: usize) -> Vec<String> {
    access_lines(reg).into_iter().skip(skip).collect()
}

#[tokio::test]
async fn service_mode_copies_then_skips_with_manifest_heads_only() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let img = image(1);
    src.push("team/api", "1.0", &img).await;
    let mirror = service_mirror(&dst, 1);

    let first = mirror
        .mirror("api", &src.source("team/api", "1.0"))
        .await
        .unwrap();
    assert_eq!(first.action, Action::Copied);
    assert_eq!(&first.digest, img.digest());
    assert!(first.tag.starts_with("1.0-"), "{}", first.tag);
    assert_eq!(
        first.pull_reference,
        format!("{}/prod/services/api@{}", dst.host(), img.digest())
    );
    assert_eq!(first.blobs_uploaded, 3);

    let dst_before = access_lines(&dst).len();
    let src_before = access_lines(&src).len();
    let again = mirror
        .mirror("api", &src.source("team/api", "1.0"))
        .await
        .unwrap();
    assert_eq!(again.action, Action::Skipped);
    assert_eq!(again.pull_reference, first.pull_reference);
    assert_eq!(again.bytes_uploaded, 0);
    let dst_reqs = requests_since(&dst, dst_before);
    let src_reqs = requests_since(&src, src_before);
    assert!(
        dst_reqs
            .iter()
            .chain(&src_reqs)
            .all(|r| r.starts_with("HEAD ") && r.contains("/manifests/")),
        "a skip costs manifest HEADs only: dst {dst_reqs:?} src {src_reqs:?}"
    );
    assert_eq!(dst_reqs.len(), 1, "{dst_reqs:?}");
    assert_eq!(src_reqs.len(), 1, "{src_reqs:?}");
}

#[tokio::test]
async fn new_versions_evict_old_images_except_previous_and_in_use() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let imgs: Vec<TestImage> = (10..14).map(image).collect();
    for (i, img) in imgs.iter().enumerate() {
        src.push("team/api", &format!("v{i}"), img).await;
    }
    let mirror = service_mirror(&dst, 1);
    let v0 = mirror
        .mirror("api", &src.source("team/api", "v0"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let v1 = mirror
        .mirror("api", &src.source("team/api", "v1"))
        .await
        .unwrap();
    assert!(v1.evicted.is_empty(), "v0 kept as the previous image");
    tokio::time::sleep(Duration::from_millis(5)).await;
    // v0 is still running somewhere: in use.
    let in_use: HashSet<_> = [v0.digest.clone()].into();
    let v2 = mirror
        .mirror_with("api", &src.source("team/api", "v2"), &in_use)
        .await
        .unwrap();
    assert!(
        v2.evicted.is_empty(),
        "v1 is previous, v0 in use: {:?}",
        v2.evicted
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let v3 = mirror
        .mirror("api", &src.source("team/api", "v3"))
        .await
        .unwrap();
    let evicted: HashSet<_> = v3.evicted.iter().cloned().collect();
    assert_eq!(evicted, [v0.digest.clone(), v1.digest.clone()].into());

    let reg = dst.generic_registry();
    let left: HashSet<_> = reg
        .list_images(&Repository::listed(&v3.repository))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    assert_eq!(left, [v2.digest.clone(), v3.digest.clone()].into());
    // Eviction stays inside the service's repository.
    let other = Mirror::builder(dst.generic_registry(), "prod")
        .eviction_grace(Duration::ZERO)
        .build()
        .unwrap();
    let w = other
        .mirror("web", &src.source("team/api", "v0"))
        .await
        .unwrap();
    let again = mirror
        .mirror("api", &src.source("team/api", "v1"))
        .await
        .unwrap();
    assert!(
        !again.evicted.contains(&w.digest)
            || reg
                .list_images(&Repository::listed(&w.repository))
                .await
                .unwrap()
                .iter()
                .any(|i| i.digest == w.digest)
    );
    assert!(reg
        .list_images(&Repository::listed(&w.repository))
        .await
        .unwrap()
        .iter()
        .any(|i| i.digest == w.digest));
}

#[tokio::test]
async fn same_image_for_a_second_service_is_mounted_with_zero_bytes_uploaded() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let img = image(20);
    src.push("lib/redis", "7", &img).await;
    let mirror = service_mirror(&dst, 1);
    let a = mirror
        .mirror("cache-a", &src.source("lib/redis", "7"))
        .await
        .unwrap();
    assert!(a.bytes_uploaded > 0);
    let b = mirror
        .mirror("cache-b", &src.source("lib/redis", "7"))
        .await
        .unwrap();
    assert_eq!(b.action, Action::Copied);
    assert_eq!(b.bytes_uploaded, 0, "{b:?}");
    assert_eq!(b.blobs_mounted, 3);
    assert_eq!(b.digest, a.digest);
    assert_ne!(b.repository, a.repository);
}

#[tokio::test]
async fn mutable_tag_is_mirrored_again_and_source_outage_serves_the_copy() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    src.push("team/web", "latest", &image(30)).await;
    let mirror = service_mirror(&dst, 1);
    let first = mirror
        .mirror("web", &src.source("team/web", "latest"))
        .await
        .unwrap();

    // Re-push `latest` with new content.
    let newer = image(31);
    src.push("team/web", "latest", &newer).await;
    let second = mirror
        .mirror("web", &src.source("team/web", "latest"))
        .await
        .unwrap();
    assert_eq!(second.action, Action::Recopied);
    assert_eq!(&second.digest, newer.digest());
    assert_ne!(second.digest, first.digest);
    assert!(
        second.warnings.iter().any(|w| matches!(
            w,
            mirror_core::Warning::MutableTag { previous, .. } if *previous == first.digest
        )),
        "{:?}",
        second.warnings
    );

    // The source registry goes away: the mirrored copy is served, with a warning.
    src.stop();
    let third = mirror
        .mirror("web", &src.source("team/web", "latest"))
        .await
        .unwrap();
    assert_eq!(third.action, Action::Skipped);
    assert_eq!(&third.digest, newer.digest());
    assert!(
        third.warnings.iter().any(|w| matches!(
            w,
            mirror_core::Warning::SourceUnreachable { served, .. } if served == newer.digest()
        ) && w.served_from_mirror()),
        "{:?}",
        third.warnings
    );
    let json = serde_json::to_value(&third).unwrap();
    assert_eq!(json["warnings"][0]["kind"], "source_unreachable", "{json}");

    // Trust never contacts the source: no warning even though it is down.
    let trusting = Mirror::builder(dst.generic_registry(), "prod")
        .tag_policy(TagPolicy::Trust)
        .build()
        .unwrap();
    let fourth = trusting
        .mirror("web", &src.source("team/web", "latest"))
        .await
        .unwrap();
    assert_eq!(fourth.action, Action::Skipped);
    assert!(fourth.warnings.is_empty(), "{:?}", fourth.warnings);
    // An image never mirrored cannot be served while the source is down: a typed error.
    let err = mirror
        .mirror("other", &src.source("team/web", "latest"))
        .await
        .unwrap_err();
    assert!(matches!(err, mirror_core::Error::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn cluster_mode_shares_one_copy_and_sweep_deletes_expired_unused_images() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    src.push("lib/nginx", "1.25", &image(40)).await;
    src.push("lib/nginx", "1.26", &image(41)).await;
    src.push("other/nginx", "1.25", &image(42)).await;
    let mirror = Mirror::builder(dst.generic_registry(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(3600))))
        .build()
        .unwrap();
    let web = mirror
        .mirror("web", &src.source("lib/nginx", "1.25"))
        .await
        .unwrap();
    let api = mirror
        .mirror("api", &src.source("lib/nginx", "1.25"))
        .await
        .unwrap();
    assert_eq!(web.action, Action::Copied);
    assert_eq!(api.action, Action::Skipped);
    assert_eq!(web.repository, "prod/mirror");
    assert_eq!(api.pull_reference, web.pull_reference);
    let newer = mirror
        .mirror("web", &src.source("lib/nginx", "1.26"))
        .await
        .unwrap();
    assert!(
        newer.evicted.is_empty(),
        "cluster mode deletes nothing per deploy"
    );
    // Same repository name and tag at another source: a distinct tag.
    let other = mirror
        .mirror("x", &src.source("other/nginx", "1.25"))
        .await
        .unwrap();
    assert_ne!(other.tag, web.tag);
    assert_ne!(other.digest, web.digest);

    let reg = dst.generic_registry();
    assert_eq!(
        reg.list_images(&Repository::listed("prod/mirror"))
            .await
            .unwrap()
            .len(),
        3
    );
    // Nothing has expired yet.
    let now = mirror
        .sweep(SystemTime::now(), &HashSet::new(), false)
        .await
        .unwrap();
    assert!(now.deleted.is_empty());
    // Two hours later: a dry run plans, deletes nothing; the real sweep keeps the in-use one.
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let in_use: HashSet<_> = [newer.digest.clone()].into();
    let dry = mirror.sweep(later, &in_use, true).await.unwrap();
    assert_eq!(dry.plans[0].delete.len(), 2);
    assert!(dry.deleted.is_empty());
    assert_eq!(
        reg.list_images(&Repository::listed("prod/mirror"))
            .await
            .unwrap()
            .len(),
        3
    );
    let swept = mirror.sweep(later, &in_use, false).await.unwrap();
    assert_eq!(swept.deleted.len(), 2);
    let left: Vec<_> = reg
        .list_images(&Repository::listed("prod/mirror"))
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    assert_eq!(left, vec![newer.digest.clone()]);
    // Service mode has no retention: sweep says so.
    let svc = service_mirror(&dst, 1);
    assert!(svc.sweep(later, &in_use, true).await.is_err());
}

#[tokio::test]
async fn inventory_lists_repositories_images_tags_sizes_and_push_times() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let img = image(50);
    src.push("team/api", "2.0", &img).await;
    let mirror = service_mirror(&dst, 1);
    let before = SystemTime::now() - Duration::from_secs(2);
    mirror
        .mirror("api", &src.source("team/api", "2.0"))
        .await
        .unwrap();
    mirror
        .mirror("worker", &src.source("team/api", "2.0"))
        .await
        .unwrap();
    let inv = mirror.inventory().await.unwrap();
    let names: Vec<_> = inv
        .repositories
        .iter()
        .map(|r| r.repository.as_str())
        .collect();
    assert_eq!(names, vec!["prod/services/api", "prod/services/worker"]);
    for repo in &inv.repositories {
        assert_eq!(repo.images.len(), 1);
        let i = &repo.images[0];
        assert_eq!(&i.digest, img.digest());
        let tag = mirror_core::strategy::service_tag(&src.source("team/api", "2.0").id());
        assert!(tag.starts_with("2.0-"), "{tag}");
        assert_eq!(i.tags, vec![tag], "bookkeeping tags hidden");
        let expected: u64 =
            img.manifest().bytes.len() as u64 + img.blobs().iter().map(|b| b.size()).sum::<u64>();
        assert_eq!(i.size, Some(expected));
        let pushed = i.pushed_at.expect("push time recorded");
        assert!(pushed >= before && pushed <= SystemTime::now() + Duration::from_secs(2));
    }
    let json = serde_json::to_value(&inv).unwrap();
    let tag = mirror_core::strategy::service_tag(&src.source("team/api", "2.0").id());
    assert_eq!(
        json["repositories"][0]["images"][0]["tags"][0],
        tag.as_str()
    );
}

#[tokio::test]
async fn concurrent_deployers_into_one_repository_never_evict_each_others_fresh_image() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    for i in 0..6u64 {
        src.push("team/api", &format!("b{i}"), &image(60 + i)).await;
    }
    // keep_previous 0: only the grace period protects the other deployer's fresh image.
    let make = || {
        Mirror::builder(dst.generic_registry(), "prod")
            .strategy(Arc::new(ServiceStrategy { keep_previous: 0 }))
            .build()
            .unwrap()
    };
    let (a, b) = (make(), make());
    for round in 0..3 {
        let (sa, sb) = (
            src.source("team/api", &format!("b{}", round * 2)),
            src.source("team/api", &format!("b{}", round * 2 + 1)),
        );
        let (da, db) = tokio::join!(a.mirror("api", &sa), b.mirror("api", &sb));
        let (da, db) = (da.unwrap(), db.unwrap());
        let store = dst
            .generic_registry()
            .store(&Repository::listed(&da.repository))
            .await
            .unwrap();
        for d in [&da, &db] {
            assert!(
                store
                    .head_manifest(&d.digest.to_string())
                    .await
                    .unwrap()
                    .is_some(),
                "round {round}: {} was deleted by the other deployer",
                d.digest
            );
            assert!(!da.evicted.contains(&d.digest) && !db.evicted.contains(&d.digest));
        }
    }
}

#[tokio::test]
async fn two_deployer_processes_mirroring_at_once_both_succeed() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    src.push("team/api", "p1", &image(70)).await;
    src.push("team/api", "p2", &image(71)).await;
    let bin = env!("CARGO_BIN_EXE_deployer");
    let spawn = |tag: &str| {
        Command::new(bin)
            .args([
                &dst.host(),
                "prod",
                "api",
                &format!("{}/team/api:{tag}", src.host()),
                "0",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn("p1"), spawn("p2"));
    let (o1, o2) = (
        p1.wait_with_output().unwrap(),
        p2.wait_with_output().unwrap(),
    );
    let mut digests = Vec::new();
    for o in [o1, o2] {
        assert!(
            o.status.success(),
            "deployer failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        digests.push(d["digest"].as_str().unwrap().to_string());
    }
    let store = dst
        .generic_registry()
        .store(&Repository::listed("prod/services/api"))
        .await
        .unwrap();
    for d in digests {
        assert!(
            store.head_manifest(&d).await.unwrap().is_some(),
            "{d} survived"
        );
    }
}

#[tokio::test]
async fn bad_service_ids_and_sources_are_clear_errors() {
    let dst = TestRegistry::start();
    let mirror = service_mirror(&dst, 1);
    let src = Source::parse(&format!("{}/x/y:1", dst.host())).unwrap();
    let err = mirror.mirror("  ", &src).await.unwrap_err();
    assert!(
        matches!(err, mirror_core::Error::InvalidName { .. }),
        "{err:?}"
    );
    let err = mirror.mirror("api", &src).await.unwrap_err();
    assert!(err.is_not_found(), "missing source image: {err:?}");
    assert!(Source::parse("Not A Reference").is_err());
    assert!(Mirror::builder(dst.generic_registry(), "").build().is_err());
}

/// Reads every manifest of the image `digest` in `store` and HEADs every blob: a reference
/// handed out is whole only if all of it is there.
async fn assert_whole(store: &dyn mirror_core::ImageStore, digest: &str) {
    use mirror_core::media::ParsedManifest;
    let mut pending = vec![digest.to_string()];
    while let Some(d) = pending.pop() {
        let m = store
            .get_manifest(&d)
            .await
            .unwrap_or_else(|e| panic!("manifest {d} of a handed-out image: {e}"));
        match m.parse(&d).unwrap() {
            ParsedManifest::Image { config, layers } => {
                for b in std::iter::once(config).chain(layers) {
                    assert!(
                        store.has_blob(&b.digest, None).await.unwrap(),
                        "blob {} of the handed-out {digest} is missing",
                        b.digest
                    );
                }
            }
            ParsedManifest::Index { manifests } => {
                pending.extend(manifests.into_iter().map(|m| m.digest.to_string()))
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_deployer_processes_on_shared_services_some_killed_hand_out_only_whole_images() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    // Layers large enough that a kill lands in the middle of a copy.
    let images: Vec<TestImage> = (0..4u64)
        .map(|i| {
            TestImage::builder()
                .seed(900 + i)
                .layers([600_000, 900_000, 300_000])
                .build()
        })
        .collect();
    for (i, img) in images.iter().enumerate() {
        src.push("team/app", &format!("r{i}"), img).await;
    }
    let bin = env!("CARGO_BIN_EXE_deployer");
    let spawn = |service: &str, tag: usize| {
        tokio::process::Command::new(bin)
            .args([
                &dst.host(),
                "prod",
                service,
                &format!("{}/team/app:r{tag}", src.host()),
                "1",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let services = ["a", "b"];
    let mut finished = 0;
    let mut killed = 0;
    for round in 0..6usize {
        let mut children = Vec::new();
        for p in 0..4usize {
            let service = services[(round + p) % 2];
            let tag = (round * 3 + p) % images.len();
            children.push((p, service, tag, spawn(service, tag)));
        }
        // One process of each round is killed with SIGKILL a few milliseconds in (in the
        // middle of its copy, or of another's).
        let victim = round % 4;
        tokio::time::sleep(Duration::from_millis(15 + 20 * (round as u64 % 3))).await;
        let mut outputs = Vec::new();
        for (p, service, tag, mut child) in children {
            if p == victim {
                let _ = child.start_kill();
                let _ = child.wait().await;
                killed += 1;
                continue;
            }
            outputs.push((service, tag, child.wait_with_output().await.unwrap()));
        }
        for (service, tag, out) in outputs {
            assert!(
                out.status.success(),
                "round {round}: a deployer that was let finish failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let digest = d["digest"].as_str().unwrap();
            assert_eq!(
                digest,
                images[tag].digest().to_string(),
                "the image asked for"
            );
            let store = dst
                .generic_registry()
                .store(&Repository::listed(format!("prod/services/{service}")))
                .await
                .unwrap();
            assert_whole(store.as_ref(), digest).await;
            finished += 1;
        }
    }
    assert_eq!(killed, 6);
    assert_eq!(finished, 18);
}
