//! Artifact Registry as a source: the kit's source scenarios
//! (`mirror_core::testing::providers`) with `GarSources` on the fake of the REST API and
//! OAuth endpoint (the real registry as data plane), access tokens expiring in the middle of
//! the copy, and a token endpoint that refuses.

use provider_gcp::testing as support;

use std::sync::Arc;
use std::time::Duration;

use mirror_core::testing::providers::SourceHarness;
use mirror_core::testing::TestImage;
use mirror_core::{Registry, RepositoryScope, RepositorySettings, SourceCredentials};
use provider_gcp::GarSources;
use support::FakeGar;

struct Sources(FakeGar);

#[async_trait::async_trait]
impl SourceHarness for Sources {
    fn host(&self) -> String {
        self.0.docker_host()
    }

    /// An application image kept in the customer's Artifact Registry.
    async fn push(&self, image: &TestImage, tag: &str) -> String {
        let gar = self.0.gar().await;
        let repo = gar
            .repository(&RepositoryScope::Service {
                cluster: "customer".into(),
                service: "app".into(),
            })
            .unwrap();
        gar.ensure_repository(&repo, &RepositorySettings::default())
            .await
            .unwrap();
        image
            .push(gar.store(&repo).await.unwrap().as_ref(), tag)
            .await
            .unwrap();
        format!("{}/{repo}", self.host())
    }

    fn sources(&self, extra_host: &str) -> Arc<dyn SourceCredentials> {
        let family = GarSources::from_key_file(&self.0.key_file(), Some(&self.0.token_uri()));
        Arc::new(family.unwrap().host(extra_host))
    }

    /// A key the token endpoint refuses.
    fn refuse(&self) -> Arc<dyn SourceCredentials> {
        self.0.oauth().fail_next(100);
        self.sources(&self.host())
    }

    fn refusal_may_be_credentials(&self) -> bool {
        true
    }

    fn token_fetches(&self) -> Option<usize> {
        Some(self.0.oauth().hits())
    }

    fn expire_tokens(&self, lifetime: Duration) {
        self.0.oauth().set_lifetime(lifetime);
    }

    fn token_lifetime(&self) -> Duration {
        Duration::from_secs(3)
    }
}

async fn sources() -> Sources {
    Sources(FakeGar::start().await)
}

mirror_core::provider_suite!(sources; mirrored_with_source_credentials, tokens_renewed_mid_copy);
