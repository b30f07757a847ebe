//! Anchors on Artifact Registry (the fake REST API with the real registry as data plane): the
//! kit's anchor scenarios (`mirror_core::testing::providers`) with the fake's tags and the
//! model of the documented cleanup rules over the policies the repository holds.

use provider_gcp::testing as support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::cleanup_model::model;
use mirror_core::testing::providers::AnchorHarness;
use mirror_core::Registry;
use provider_gcp::ArtifactRegistry;
use support::FakeGar;

struct Anchors {
    fake: FakeGar,
    gar: Arc<ArtifactRegistry>,
}

impl Anchors {
    fn id_and_package(&self, repo: &str) -> (String, String) {
        let (id, package) = self.gar.parse_repository(repo).unwrap();
        (id.to_string(), package.to_string())
    }
}

#[async_trait::async_trait]
impl AnchorHarness for Anchors {
    fn registry(&self) -> Arc<dyn Registry> {
        self.gar.clone()
    }

    async fn native_tags(&self, repo: &str) -> Vec<(String, Vec<String>)> {
        let (id, package) = self.id_and_package(repo);
        let mut by_digest: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (tag, digest) in self.fake.tags(&id, &package).await {
            by_digest.entry(digest).or_default().push(tag);
        }
        by_digest.into_iter().collect()
    }

    /// The policies the repository holds, every version `days` old.
    async fn expired_after(
        &self,
        repo: &str,
        listing: &[(String, Vec<String>)],
        days: u64,
    ) -> BTreeSet<String> {
        let (id, package) = self.id_and_package(repo);
        let policies = self.fake.repository(&id).unwrap()["cleanupPolicies"].clone();
        let versions: Vec<model::Version> = listing
            .iter()
            .map(|(digest, tags)| model::Version {
                name: digest.clone(),
                package: package.clone(),
                tags: tags.clone(),
                age_seconds: days * 24 * 3600,
            })
            .collect();
        model::deleted(&policies, &versions)
    }

    fn tag_removals(&self) -> Option<usize> {
        Some(self.fake.calls("tags.delete"))
    }
}

async fn anchors() -> Anchors {
    let fake = FakeGar::start().await;
    let gar = Arc::new(fake.gar().await);
    Anchors { fake, gar }
}

mirror_core::provider_suite!(anchors; anchored_while_in_use, handed_out_survives_retention);
