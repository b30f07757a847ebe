//! ECR as a source: an application image kept in ECR (the emulator: moto with the real
//! registry as data plane) is mirrored into another registry with `EcrSources`, which fetches
//! `GetAuthorizationToken` tokens itself; refused tokens are `Unauthorized` naming the source.

use provider_aws::testing as support;

use std::sync::Arc;

use mirror_core::store::http::credentials::Credentials;
use mirror_core::store::http::RegistryClient;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{
    Action, Error, GenericRegistry, Mirror, Registry, Repository, RepositorySettings, Source,
    Sources,
};
use provider_aws::EcrSources;
use support::{EcrEmulator, REGION};

fn mirror_into(dst: &TestRegistry, sources: Sources) -> Mirror {
    Mirror::builder(
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&dst.host(), Credentials::Anonymous).unwrap(),
        )),
        "prod",
    )
    .sources(sources)
    .build()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_in_ecr_is_mirrored_with_tokens_the_source_side_fetches() {
    let emu = EcrEmulator::start().await;
    // The customer's image, pushed into their ECR repository.
    let ecr = emu.ecr().await;
    let repo = Repository::listed("customer/app");
    ecr.ensure_repository(&repo, &RepositorySettings::default())
        .await
        .unwrap();
    let image = TestImage::builder().seed(9).layers([5000, 7000]).build();
    image
        .push(ecr.store(&repo).await.unwrap().as_ref(), "1.0")
        .await
        .unwrap();
    let tokens_before = emu.calls("GetAuthorizationToken");

    let host = emu.registry_host();
    let family = EcrSources::new()
        .sdk_config(emu.sdk_config())
        .endpoint(emu.endpoint())
        .host(host.clone(), REGION);
    let dst = TestRegistry::start();
    let mirror = mirror_into(
        &dst,
        Sources::new().with_source_credentials(Arc::new(family.clone())),
    );
    let source = Source::parse(&format!("{host}/customer/app:1.0")).unwrap();
    let d = mirror.mirror("api", &source).await.unwrap();
    assert_eq!(d.action, Action::Copied);
    assert_eq!(&d.digest, image.digest());
    assert_eq!(
        emu.calls("GetAuthorizationToken") - tokens_before,
        1,
        "one token for the whole copy"
    );

    // The source refuses every token now: Unauthorized, naming the source registry.
    emu.refuse_tokens(true);
    let other = TestImage::builder().seed(10).layer(3000).build();
    emu.refuse_tokens(false);
    other
        .push(ecr.store(&repo).await.unwrap().as_ref(), "2.0")
        .await
        .unwrap();
    emu.refuse_tokens(true);
    let mirror = mirror_into(
        &dst,
        Sources::new().with_source_credentials(Arc::new(family)),
    );
    let source = Source::parse(&format!("{host}/customer/app:2.0")).unwrap();
    let err = mirror.mirror("api", &source).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unauthorized { registry, .. } if registry.contains(&host)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_token_that_expires_in_the_middle_of_the_copy_is_renewed() {
    let emu = EcrEmulator::start().await;
    let ecr = emu.ecr().await;
    let repo = Repository::listed("customer/big");
    ecr.ensure_repository(&repo, &RepositorySettings::default())
        .await
        .unwrap();
    let image = TestImage::builder()
        .seed(11)
        .layers([30_000, 20_000, 10_000])
        .build();
    image
        .push(ecr.store(&repo).await.unwrap().as_ref(), "1.0")
        .await
        .unwrap();

    // Tokens live 2 s from now on; every blob GET takes 1.5 s: the copy outlives its token.
    emu.set_token_lifetime(Some(std::time::Duration::from_secs(2)));
    let proxy = mirror_core::testing::FaultProxy::start(&emu.registry_host());
    proxy.add(mirror_core::testing::Rule::new(
        Some("GET"),
        "/blobs/",
        mirror_core::testing::Fault::Delay(std::time::Duration::from_millis(1500)),
        100,
    ));
    let family = EcrSources::new()
        .sdk_config(emu.sdk_config())
        .endpoint(emu.endpoint())
        .host(proxy.host(), REGION);
    let dst = TestRegistry::start();
    let mirror = Mirror::builder(
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&dst.host(), Credentials::Anonymous).unwrap(),
        )),
        "prod",
    )
    .sources(Sources::new().with_source_credentials(Arc::new(family)))
    .copy_options(mirror_core::CopyOptions {
        concurrency: 1,
        ..mirror_core::CopyOptions::default()
    })
    .build()
    .unwrap();
    let before = emu.calls("GetAuthorizationToken");
    let source = Source::parse(&format!("{}/customer/big:1.0", proxy.host())).unwrap();
    let started = std::time::Instant::now();
    let d = mirror.mirror("api", &source).await.unwrap();
    assert_eq!(&d.digest, image.digest());
    assert!(
        started.elapsed() > std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let fetched = emu.calls("GetAuthorizationToken") - before;
    assert!(
        fetched >= 2,
        "the token was renewed during the copy ({fetched} fetched)"
    );
}
