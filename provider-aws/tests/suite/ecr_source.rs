//! ECR as a source: the kit's source scenarios (`mirror_core::testing::providers`) with
//! `EcrSources`, which fetches `GetAuthorizationToken` tokens itself, on the emulator (moto
//! with the real registry as data plane).

use provider_aws::testing as support;

use std::sync::Arc;
use std::time::Duration;

use mirror_core::testing::providers::SourceHarness;
use mirror_core::testing::TestImage;
use mirror_core::{Registry, Repository, RepositorySettings, SourceCredentials};
use provider_aws::EcrSources;
use support::{EcrEmulator, REGION};

struct Sources(EcrEmulator);

#[async_trait::async_trait]
impl SourceHarness for Sources {
    fn host(&self) -> String {
        self.0.registry_host()
    }

    /// The customer's image, pushed into their ECR repository.
    async fn push(&self, image: &TestImage, tag: &str) -> String {
        let ecr = self.0.ecr().await;
        let repo = Repository::listed("customer/app");
        ecr.ensure_repository(&repo, &RepositorySettings::default())
            .await
            .unwrap();
        image
            .push(ecr.store(&repo).await.unwrap().as_ref(), tag)
            .await
            .unwrap();
        format!("{}/{repo}", self.host())
    }

    fn sources(&self, extra_host: &str) -> Arc<dyn SourceCredentials> {
        let family = EcrSources::new()
            .sdk_config(self.0.sdk_config())
            .endpoint(self.0.endpoint())
            .host(extra_host, REGION);
        Arc::new(family)
    }

    /// The source refuses every token now.
    fn refuse(&self) -> Arc<dyn SourceCredentials> {
        self.0.refuse_tokens(true);
        self.sources(&self.host())
    }

    fn token_fetches(&self) -> Option<usize> {
        Some(self.0.calls("GetAuthorizationToken"))
    }

    fn expire_tokens(&self, lifetime: Duration) {
        self.0.set_token_lifetime(Some(lifetime));
    }
}

async fn sources() -> Sources {
    Sources(EcrEmulator::start().await)
}

mirror_core::provider_suite!(sources; mirrored_with_source_credentials, tokens_renewed_mid_copy);
