//! Anchors on Artifact Registry (the fake REST API with the real registry as data plane):
//! images in use get an anchor tag that the keep policy written with the retention protects,
//! listings hide it, `tags.delete` releases it once the image is no longer in use, and the
//! written policies, evaluated by the model of the documented cleanup rules over the fake's
//! listing, delete everything old but the anchored image.

use provider_gcp::testing as support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cleanup_model::model;
use mirror_core::image::anchor_tag;
use mirror_core::inuse::References;
use mirror_core::testing::TestImage;
use mirror_core::{ClusterStrategy, Mirror, Registry, Repository, Source};
use support::FakeGar;

fn layout_source(dir: &std::path::Path, name: &str, seed: u64) -> Source {
    let path = dir.join(name);
    TestImage::builder()
        .seed(seed)
        .layers([3000])
        .build()
        .write_layout(&path, "1.0")
        .unwrap();
    Source::parse(&format!("oci:{}:1.0", path.display())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_in_use_is_anchored_kept_by_the_policy_and_released_with_tags_delete() {
    let fake = FakeGar::start().await;
    let gar = Arc::new(fake.gar().await);
    let running = References::default();
    let retention = Duration::from_secs(2 * 24 * 3600);
    let mirror = Mirror::builder(gar.clone(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(retention)))
        .in_use_source(Arc::new(running.clone()))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let backup = mirror
        .mirror("ops", &layout_source(dir.path(), "backup", 1))
        .await
        .unwrap();
    let report = mirror
        .mirror("ops", &layout_source(dir.path(), "report", 2))
        .await
        .unwrap();
    let (id, package) = {
        let (i, p) = gar.parse_repository(&backup.repository).unwrap();
        (i.to_string(), p.to_string())
    };

    running.set([backup.pull_reference.clone()]);
    let third = mirror
        .mirror("ops", &layout_source(dir.path(), "third", 3))
        .await
        .unwrap();
    assert!(third.warnings.is_empty(), "{:?}", third.warnings);
    let anchor = anchor_tag(&backup.digest);
    let tags = fake.tags(&id, &package).await;
    assert!(
        tags.contains(&(anchor.clone(), backup.digest.to_string())),
        "{tags:?}"
    );

    let images = gar
        .list_images(&Repository::listed(&backup.repository))
        .await
        .unwrap();
    assert_eq!(images.len(), 3);
    for image in &images {
        assert_eq!(image.anchored, image.digest == backup.digest, "{image:?}");
        assert!(
            image.tags.iter().all(|t| !t.starts_with("mirror.anchor.")),
            "{image:?}"
        );
    }

    // The policies the repository holds, over the fake's listing as if ten days had passed.
    let policies = fake.repository(&id).unwrap()["cleanupPolicies"].clone();
    let versions: Vec<model::Version> = images
        .iter()
        .map(|i| model::Version {
            name: i.digest.to_string(),
            package: package.clone(),
            tags: tags
                .iter()
                .filter(|(_, d)| *d == i.digest.to_string())
                .map(|(t, _)| t.clone())
                .collect(),
            age_seconds: 10 * 24 * 3600,
        })
        .collect();
    let deleted = model::deleted(&policies, &versions);
    assert!(!deleted.contains(&backup.digest.to_string()));
    assert!(deleted.contains(&report.digest.to_string()));
    assert!(deleted.contains(&third.digest.to_string()));

    // No longer in use: the sweep releases the anchor with tags.delete; the image stays.
    running.set(Vec::<String>::new());
    let swept = mirror
        .sweep(SystemTime::now(), &Default::default(), false)
        .await
        .unwrap();
    assert!(swept.deleted.is_empty());
    assert_eq!(
        swept.protected.released,
        vec![(backup.repository.clone(), backup.digest.clone())]
    );
    assert_eq!(fake.calls("tags.delete"), 1);
    let tags = fake.tags(&id, &package).await;
    assert!(tags.iter().all(|(t, _)| *t != anchor), "{tags:?}");
    let images = gar
        .list_images(&Repository::listed(&backup.repository))
        .await
        .unwrap();
    assert!(images.iter().all(|i| !i.anchored));
    assert!(images.iter().any(|i| i.digest == backup.digest));

    // In use again: anchored again (the tag pushed anew).
    running.set([backup.pull_reference.clone()]);
    let again = mirror
        .protect(&mirror.in_use(&Default::default()).await.unwrap())
        .await
        .unwrap();
    assert_eq!(again.anchored.len(), 1);
    assert!(fake
        .tags(&id, &package)
        .await
        .contains(&(anchor, backup.digest.to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cleanup_policies_cannot_delete_an_old_image_a_skip_just_handed_out() {
    use mirror_core::image::HANDED_OUT_TAG_PREFIX;
    use mirror_core::retry::ManualClock;
    let fake = FakeGar::start().await;
    let gar = Arc::new(fake.gar().await);
    let retention = Duration::from_secs(2 * 24 * 3600);
    let clock = ManualClock::new(SystemTime::now());
    let cluster = || {
        Mirror::builder(gar.clone(), "prod")
            .strategy(Arc::new(ClusterStrategy::new(retention)))
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let old = layout_source(dir.path(), "old", 7);
    let first = cluster().mirror("ops", &old).await.unwrap();
    let other = cluster()
        .mirror("ops", &layout_source(dir.path(), "other", 8))
        .await
        .unwrap();
    let (id, package) = {
        let (i, p) = gar.parse_repository(&first.repository).unwrap();
        (i.to_string(), p.to_string())
    };

    // A fresh deployer process hands it out again (a skip): it marks the image.
    let skip = cluster().mirror("web", &old).await.unwrap();
    assert_eq!(skip.action, mirror_core::Action::Skipped);
    assert!(skip.warnings.is_empty(), "{:?}", skip.warnings);
    let tags = fake.tags(&id, &package).await;
    assert!(
        tags.iter()
            .any(|(t, d)| t.starts_with(HANDED_OUT_TAG_PREFIX) && *d == first.digest.to_string()),
        "{tags:?}"
    );

    // The policies the repository holds, as if every image were ten days old.
    let images = gar
        .list_images(&Repository::listed(&first.repository))
        .await
        .unwrap();
    let policies = fake.repository(&id).unwrap()["cleanupPolicies"].clone();
    let versions: Vec<model::Version> = images
        .iter()
        .map(|i| model::Version {
            name: i.digest.to_string(),
            package: package.clone(),
            tags: tags
                .iter()
                .filter(|(_, d)| *d == i.digest.to_string())
                .map(|(t, _)| t.clone())
                .collect(),
            age_seconds: 10 * 24 * 3600,
        })
        .collect();
    let deleted = model::deleted(&policies, &versions);
    assert!(!deleted.contains(&first.digest.to_string()), "{deleted:?}");
    assert!(deleted.contains(&other.digest.to_string()), "{deleted:?}");

    // Past the grace, protect removes the mark with tags.delete.
    clock.advance(Duration::from_secs(30 * 60));
    let report = cluster().protect(&Default::default()).await.unwrap();
    assert!(
        report
            .released
            .contains(&(first.repository.clone(), first.digest.clone())),
        "{report:?}"
    );
    let tags = fake.tags(&id, &package).await;
    assert!(
        tags.iter()
            .all(|(t, _)| !t.starts_with(HANDED_OUT_TAG_PREFIX)),
        "{tags:?}"
    );
}
