//! Anchors on ECR (the moto emulator with the real registry as data plane): the kit's anchor
//! scenarios (`mirror_core::testing::providers`) with moto's listing and the model of ECR's
//! documented lifecycle rules, and the retention counted from the last pull.

use provider_aws::testing as support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::lifecycle_model::model;
use mirror_core::testing::providers::AnchorHarness;
use mirror_core::testing::TestImage;
use mirror_core::{ClusterStrategy, Mirror, Registry, Source};
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
    let images = crate::ecr::moto_images(emu, repo).await;
    images
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

/// ECR on the emulator for the kit's anchor scenarios: moto lists the tags, the model of
/// ECR's documented lifecycle rules judges the policy moto holds.
struct Anchors {
    emu: EcrEmulator,
    ecr: Arc<dyn Registry>,
}

#[async_trait::async_trait]
impl AnchorHarness for Anchors {
    fn registry(&self) -> Arc<dyn Registry> {
        self.ecr.clone()
    }

    async fn native_tags(&self, repo: &str) -> Vec<(String, Vec<String>)> {
        let tags = moto_tags(&self.emu, repo).await;
        tags.into_iter().map(|(d, t, _)| (d, t)).collect()
    }

    async fn expired_after(
        &self,
        repo: &str,
        listing: &[(String, Vec<String>)],
        days: u64,
    ) -> BTreeSet<String> {
        let (status, answer) = self
            .emu
            .moto("GetLifecyclePolicy", json!({"repositoryName": repo}))
            .await;
        assert_eq!(status, 200, "{answer}");
        let policy: Value =
            serde_json::from_str(answer["lifecyclePolicyText"].as_str().unwrap()).unwrap();
        let listing: Vec<model::Image> = listing
            .iter()
            .map(|(digest, tags)| model::Image {
                digest: digest.clone(),
                tags: tags.clone(),
                pushed_days_ago: days,
                pulled_days_ago: None,
            })
            .collect();
        model::expired(&policy, &listing)
    }
}

async fn anchors() -> Anchors {
    let emu = EcrEmulator::start().await;
    let ecr: Arc<dyn Registry> = Arc::new(emu.ecr().await);
    Anchors { emu, ecr }
}

mirror_core::provider_suite!(anchors; anchored_while_in_use, handed_out_survives_retention);

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
