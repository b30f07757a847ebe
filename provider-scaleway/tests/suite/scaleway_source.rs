//! Scaleway as a source: an image in a Scaleway namespace (the fake's real registry as data
//! plane) mirrored into another registry with `ScalewaySources`; a wrong key is
//! `Unauthorized` naming the source registry.

use provider_scaleway::testing as support;

use std::sync::Arc;

use mirror_core::store::http::credentials::Credentials;
use mirror_core::store::http::RegistryClient;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{Action, Error, GenericRegistry, Mirror, Source, Sources};
use provider_scaleway::ScalewaySources;
use support::{FakeScaleway, SECRET};

fn mirror_into(dst: &TestRegistry, family: ScalewaySources) -> Mirror {
    Mirror::builder(
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&dst.host(), Credentials::Anonymous).unwrap(),
        )),
        "prod",
    )
    .sources(Sources::new().with_source_credentials(Arc::new(family)))
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_in_scaleway_is_mirrored_with_the_secret_key() {
    let fake = FakeScaleway::start().await;
    let data = fake.data_plane().repository("customer-ns/app").unwrap();
    let image = TestImage::builder().seed(31).layers([4000, 6000]).build();
    image.push(&data, "1.0").await.unwrap();
    let host = fake.registry_host();
    let dst = TestRegistry::start();
    let source = Source::parse(&format!("{host}/customer-ns/app:1.0")).unwrap();

    let d = mirror_into(&dst, ScalewaySources::new(SECRET).host(host.clone()))
        .mirror("api", &source)
        .await
        .unwrap();
    assert_eq!(d.action, Action::Copied);
    assert_eq!(&d.digest, image.digest());

    let err = mirror_into(&dst, ScalewaySources::new("not-the-key").host(host.clone()))
        .mirror("web", &source)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unauthorized { registry, .. } if registry.contains(&host)),
        "{err:?}"
    );
}
