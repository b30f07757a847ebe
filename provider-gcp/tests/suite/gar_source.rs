//! Artifact Registry as a source: an application image kept in Artifact Registry (the fake of
//! the REST API and OAuth endpoint, the real registry as data plane) is mirrored into another
//! registry with `GarSources`, with access tokens that expire in the middle of the copy.

use provider_gcp::testing as support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mirror_core::store::http::credentials::Credentials;
use mirror_core::store::http::RegistryClient;
use mirror_core::testing::{Fault, FaultProxy, Rule, TestImage, TestRegistry};
use mirror_core::{
    Action, CopyOptions, Error, GenericRegistry, Mirror, Registry, RepositoryScope,
    RepositorySettings, Source, Sources,
};
use provider_gcp::GarSources;
use support::FakeGar;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_in_artifact_registry_is_mirrored_while_its_tokens_expire() {
    let fake = FakeGar::start().await;
    let gar = fake.gar().await;
    let repo = gar
        .repository(&RepositoryScope::Service {
            cluster: "customer".into(),
            service: "app".into(),
        })
        .unwrap();
    gar.ensure_repository(&repo, &RepositorySettings::default())
        .await
        .unwrap();
    let image = TestImage::builder()
        .seed(21)
        .layers([30_000, 20_000, 10_000])
        .build();
    image
        .push(gar.store(&repo).await.unwrap().as_ref(), "1.0")
        .await
        .unwrap();

    // Access tokens live 3 s from now on; every blob GET takes 1.5 s: the copy outlives them.
    fake.oauth().set_lifetime(Duration::from_secs(3));
    let proxy = FaultProxy::start(&fake.docker_host());
    proxy.add(Rule::new(
        Some("GET"),
        "/blobs/",
        Fault::Delay(Duration::from_millis(1500)),
        100,
    ));
    let family = GarSources::from_key_file(&fake.key_file(), Some(&fake.token_uri()))
        .unwrap()
        .host(proxy.host());
    let dst = TestRegistry::start();
    let mirror = Mirror::builder(
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&dst.host(), Credentials::Anonymous).unwrap(),
        )),
        "prod",
    )
    .sources(Sources::new().with_source_credentials(Arc::new(family)))
    .copy_options(CopyOptions {
        concurrency: 1,
        ..CopyOptions::default()
    })
    .build()
    .unwrap();
    let tokens_before = fake.oauth().hits();
    let source = Source::parse(&format!("{}/{repo}:1.0", proxy.host())).unwrap();
    let started = Instant::now();
    let d = mirror.mirror("api", &source).await.unwrap();
    assert_eq!(d.action, Action::Copied);
    assert_eq!(&d.digest, image.digest());
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let fetched = fake.oauth().hits() - tokens_before;
    assert!(
        fetched >= 2,
        "the access token was renewed during the copy ({fetched} fetched)"
    );

    // A key the token endpoint refuses: Unauthorized naming the source registry.
    fake.oauth().fail_next(100);
    let refused = GarSources::from_key_file(&fake.key_file(), Some(&fake.token_uri()))
        .unwrap()
        .host(fake.docker_host());
    let mirror = Mirror::builder(
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&dst.host(), Credentials::Anonymous).unwrap(),
        )),
        "prod",
    )
    .sources(Sources::new().with_source_credentials(Arc::new(refused)))
    .build()
    .unwrap();
    let source = Source::parse(&format!("{}/{repo}:1.0", fake.docker_host())).unwrap();
    let err = mirror.mirror("web", &source).await.unwrap_err();
    assert!(
        matches!(&err, Error::Credentials { .. } | Error::Unauthorized { .. })
            && err.to_string().contains(&fake.docker_host()),
        "names the source registry: {err}"
    );
}
