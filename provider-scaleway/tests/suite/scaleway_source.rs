//! Scaleway as a source: the kit's source scenario (`mirror_core::testing::providers`) with
//! `ScalewaySources` on the fake's real registry (the secret key does not expire: no renewal
//! scenario); a wrong key is `Unauthorized` naming the source registry.

use provider_scaleway::testing as support;

use std::sync::Arc;

use mirror_core::testing::providers::SourceHarness;
use mirror_core::testing::TestImage;
use mirror_core::SourceCredentials;
use provider_scaleway::ScalewaySources;
use support::{FakeScaleway, SECRET};

struct Sources(FakeScaleway);

#[async_trait::async_trait]
impl SourceHarness for Sources {
    fn host(&self) -> String {
        self.0.registry_host()
    }

    async fn push(&self, image: &TestImage, tag: &str) -> String {
        let data = self.0.data_plane().repository("customer-ns/app").unwrap();
        image.push(&data, tag).await.unwrap();
        format!("{}/customer-ns/app", self.host())
    }

    fn sources(&self, extra_host: &str) -> Arc<dyn SourceCredentials> {
        Arc::new(ScalewaySources::new(SECRET).host(extra_host))
    }

    fn refuse(&self) -> Arc<dyn SourceCredentials> {
        Arc::new(ScalewaySources::new("not-the-key").host(self.host()))
    }
}

async fn sources() -> Sources {
    Sources(FakeScaleway::start().await)
}

mirror_core::provider_suite!(sources; mirrored_with_source_credentials);
