//! Anchors on ECR (the moto emulator with the real registry as data plane): images in use get
//! an anchor tag that the lifecycle policy's first rule protects, listings hide it, and it is
//! released once the image is no longer in use. The written policy, evaluated by the model of
//! ECR's documented rules over moto's real listing, expires everything but the anchored image.

use provider_aws::testing as support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::lifecycle_model::model;
use mirror_core::image::anchor_tag;
use mirror_core::inuse::References;
use mirror_core::testing::TestImage;
use mirror_core::{ClusterStrategy, Mirror, Registry, Repository, Source};
use provider_aws::lifecycle::{self, Age};
use serde_json::{json, Value};
use support::EcrEmulator;

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

async fn moto_tags(emu: &EcrEmulator, repo: &str) -> Vec<(String, Vec<String>, Value)> {
    let (status, answer) = emu
        .moto("DescribeImages", json!({"repositoryName": repo}))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["imageDetails"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            let tags = d["imageTags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (d["imageDigest"].as_str().unwrap_or("").to_string(), tags, d)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_in_use_is_anchored_hidden_protected_by_the_policy_and_released_after() {
    let emu = EcrEmulator::start().await;
    let ecr = Arc::new(emu.ecr().await);
    let running = References::default();
    let retention = Duration::from_secs(2 * 24 * 3600);
    let mirror = Mirror::builder(ecr.clone(), "prod")
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
    let repo = backup.repository.clone();

    // The cluster starts to use `backup`: the next deploy anchors it.
    running.set([backup.pull_reference.clone()]);
    let third = mirror
        .mirror("ops", &layout_source(dir.path(), "third", 3))
        .await
        .unwrap();
    assert!(third.warnings.is_empty(), "{:?}", third.warnings);
    let anchor = anchor_tag(&backup.digest);
    let tags = moto_tags(&emu, &repo).await;
    let with_anchor: Vec<_> = tags
        .iter()
        .filter(|(_, t, _)| t.contains(&anchor))
        .collect();
    assert_eq!(with_anchor.len(), 1, "{tags:?}");
    assert_eq!(with_anchor[0].0, backup.digest.to_string());

    // Listings show it anchored and never show the tag.
    let images = ecr.list_images(&Repository::listed(&repo)).await.unwrap();
    for image in &images {
        assert_eq!(image.anchored, image.digest == backup.digest, "{image:?}");
        assert!(
            image.tags.iter().all(|t| !t.starts_with("mirror.anchor.")),
            "{image:?}"
        );
    }

    // The policy ECR holds, evaluated by ECR's documented rules over moto's listing as if
    // ten days had passed: everything expires but the anchored image.
    let (status, answer) = emu
        .moto("GetLifecyclePolicy", json!({"repositoryName": repo}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let policy: Value =
        serde_json::from_str(answer["lifecyclePolicyText"].as_str().unwrap()).unwrap();
    let listing: Vec<model::Image> = tags
        .iter()
        .map(|(digest, tags, _)| model::Image {
            digest: digest.clone(),
            tags: tags.clone(),
            pushed_days_ago: 10,
            pulled_days_ago: None,
        })
        .collect();
    let expired = model::expired(&policy, &listing);
    assert!(!expired.contains(&backup.digest.to_string()));
    assert!(expired.contains(&report.digest.to_string()));
    assert!(expired.contains(&third.digest.to_string()));

    // Nobody uses it any more: the sweep releases the anchor; the image stays (its own tag).
    running.set(Vec::<String>::new());
    let swept = mirror
        .sweep(SystemTime::now(), &Default::default(), false)
        .await
        .unwrap();
    assert!(swept.deleted.is_empty(), "nothing has expired yet");
    assert_eq!(
        swept.protected.released,
        vec![(repo.clone(), backup.digest.clone())]
    );
    let tags = moto_tags(&emu, &repo).await;
    assert!(
        tags.iter().all(|(_, t, _)| !t.contains(&anchor)),
        "{tags:?}"
    );
    assert!(
        tags.iter().any(|(d, _, _)| *d == backup.digest.to_string()),
        "the image stays"
    );
    // And it can be read whole from the data plane.
    let store = ecr.store(&Repository::listed(&repo)).await.unwrap();
    assert!(store.get_manifest(&backup.digest.to_string()).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_counted_from_the_last_pull_is_written_after_the_anchor_rule() {
    let emu = EcrEmulator::start().await;
    let ecr = Arc::new(
        emu.builder()
            .retention_age(Age::SincePulled)
            .build()
            .await
            .unwrap(),
    );
    let mirror = Mirror::builder(ecr.clone(), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(
            3 * 24 * 3600,
        ))))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let result = mirror
        .mirror("ops", &layout_source(dir.path(), "a", 9))
        .await;
    // The policy sent is the documented one, anchor rule first.
    let sent = emu.requests("PutLifecyclePolicy");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let text = sent[0]["lifecyclePolicyText"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        lifecycle::policy(Duration::from_secs(3 * 24 * 3600), Age::SincePulled)
    );
    // ECR documents `sinceImagePulled`; moto's policy schema predates it and refuses it.
    // Against such a registry the deploy fails loudly, naming the call: no policy is left
    // that lacks the anchor rule, and no image is placed under a retention it cannot keep.
    match result {
        Ok(d) => panic!("moto accepted sinceImagePulled now: update this test ({d:?})"),
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains("PutLifecyclePolicy"), "{shown}");
        }
    }
    let (_, answer) = emu
        .moto(
            "GetLifecyclePolicy",
            json!({"repositoryName": "prod/mirror"}),
        )
        .await;
    assert!(answer.get("lifecyclePolicyText").is_none(), "{answer}");
    // The string key reads the same; a wrong value is refused before any call.
    let via_key = emu
        .builder()
        .with_config(provider_aws::EcrConfigKey::RetentionAge, "pulled")
        .get_config(provider_aws::EcrConfigKey::RetentionAge);
    assert_eq!(via_key.as_deref(), Some("pulled"));
    let bad = emu
        .builder()
        .with_config(provider_aws::EcrConfigKey::RetentionAge, "sometimes")
        .build()
        .await;
    assert!(bad.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_policy_cannot_expire_an_old_image_a_skip_just_handed_out() {
    use mirror_core::image::HANDED_OUT_TAG_PREFIX;
    use mirror_core::retry::{Clock, ManualClock};
    let emu = EcrEmulator::start().await;
    let ecr = Arc::new(emu.ecr().await);
    let retention = Duration::from_secs(2 * 24 * 3600);
    let clock = ManualClock::new(SystemTime::now());
    let cluster = |clock: Arc<ManualClock>| {
        Mirror::builder(ecr.clone(), "prod")
            .strategy(Arc::new(ClusterStrategy::new(retention)))
            .clock(clock)
            .build()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let old = layout_source(dir.path(), "old", 7);
    let first = cluster(clock.clone()).mirror("ops", &old).await.unwrap();
    let other = cluster(clock.clone())
        .mirror("ops", &layout_source(dir.path(), "other", 8))
        .await
        .unwrap();
    let repo = first.repository.clone();

    // A fresh deployer process hands the (by now old) image out again: a skip. It cannot
    // tell the push time without a control-plane call, so it marks the image.
    let skip = cluster(clock.clone()).mirror("web", &old).await.unwrap();
    assert_eq!(skip.action, mirror_core::Action::Skipped);
    assert!(skip.warnings.is_empty(), "{:?}", skip.warnings);
    let tags = moto_tags(&emu, &repo).await;
    let marked: Vec<_> = tags
        .iter()
        .filter(|(_, t, _)| t.iter().any(|t| t.starts_with(HANDED_OUT_TAG_PREFIX)))
        .collect();
    assert_eq!(marked.len(), 1, "{tags:?}");
    assert_eq!(marked[0].0, first.digest.to_string());

    // The policy ECR holds, over moto's listing as if every image were ten days old (the
    // handed-out one too): it expires the other image, never the one just handed out.
    let (status, answer) = emu
        .moto("GetLifecyclePolicy", json!({"repositoryName": repo}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let policy: Value =
        serde_json::from_str(answer["lifecyclePolicyText"].as_str().unwrap()).unwrap();
    let listing: Vec<model::Image> = tags
        .iter()
        .map(|(digest, tags, _)| model::Image {
            digest: digest.clone(),
            tags: tags.clone(),
            pushed_days_ago: 10,
            pulled_days_ago: None,
        })
        .collect();
    let expired = model::expired(&policy, &listing);
    assert!(!expired.contains(&first.digest.to_string()), "{expired:?}");
    assert!(expired.contains(&other.digest.to_string()), "{expired:?}");

    // Listings hide the mark and show the protection.
    let images = ecr.list_images(&Repository::listed(&repo)).await.unwrap();
    let handed = images.iter().find(|i| i.digest == first.digest).unwrap();
    assert!(handed.protected_until.is_some_and(|u| u > clock.now()));
    assert!(handed
        .tags
        .iter()
        .all(|t| !t.starts_with(HANDED_OUT_TAG_PREFIX)));

    // Once the grace has passed, the next protect removes the mark.
    clock.advance(Duration::from_secs(30 * 60));
    let released = cluster(clock.clone())
        .protect(&Default::default())
        .await
        .unwrap();
    assert!(
        released
            .released
            .contains(&(repo.clone(), first.digest.clone())),
        "{released:?}"
    );
    let tags = moto_tags(&emu, &repo).await;
    assert!(
        tags.iter()
            .all(|(_, t, _)| t.iter().all(|t| !t.starts_with(HANDED_OUT_TAG_PREFIX))),
        "{tags:?}"
    );
}
