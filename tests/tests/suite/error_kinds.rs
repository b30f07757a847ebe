//! Bad inputs end in the error kind a deployer branches on, without retries where no retry
//! can help (checked on a recording clock, never by timing): a typo'd registry host, TLS
//! against a plain-HTTP registry, refused credentials (source or mirror), a missing image, a
//! malformed reference; and warnings keep the typed error behind them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mirror_core::kit::retry::ManualClock;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::registry::{open, OpenOptions, RegistryFactory};
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::RetryConfig;
use mirror_core::{
    ErrorKind, GenericRegistry, Mirror, Registry, ServiceStrategy, Side, Source, Sources,
};

const NO_FACTORY: [&dyn RegistryFactory; 0] = [];

/// A client whose retries sleep on `clock` (a `ManualClock` records every wait instead of
/// sleeping): a failure that is retried shows up as recorded sleeps, with no timing involved.
fn client_counting_waits(host: &str, plain_http: bool, clock: &Arc<ManualClock>) -> RegistryClient {
    let retry = RetryConfig::default().with_clock(clock.clone());
    RegistryClient::builder(host)
        .plain_http(plain_http)
        .retry(retry)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_typo_in_the_registry_host_fails_at_once_as_a_network_error() {
    let registry = open(
        "registry.invalid:5000/mirror",
        &OpenOptions::new(),
        &NO_FACTORY,
    )
    .await
    .expect("opening is offline");
    let err = registry.check().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err:?}");
    assert!(
        matches!(err, mirror_core::Error::HostUnknown { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    // Not retried (was 13-14 s of retries): no wait at all, neither for the check nor for a
    // deploy.
    let clock = ManualClock::new(SystemTime::now());
    let registry = Arc::new(GenericRegistry::new(client_counting_waits(
        "registry.invalid:5000",
        false,
        &clock,
    )));
    let err = registry.check().await.unwrap_err();
    assert!(
        matches!(err, mirror_core::Error::HostUnknown { .. }),
        "{err:?}"
    );
    assert_eq!(
        clock.sleeps(),
        Vec::<Duration>::new(),
        "the check was retried"
    );
    let mirror = Mirror::builder(registry, "prod").build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    TestImage::builder()
        .seed(1)
        .build()
        .write_layout(dir.path().join("app"), "v1")
        .unwrap();
    let source = Source::parse(&format!("oci:{}:v1", dir.path().join("app").display())).unwrap();
    let err = mirror.mirror("api", &source).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network, "{err:?}");
    assert_eq!(mirror.side_of(&err), Side::Mirror);
    assert_eq!(
        clock.sleeps(),
        Vec::<Duration>::new(),
        "the deploy was retried"
    );
}

#[tokio::test]
async fn tls_against_a_plain_http_registry_fails_at_once_and_says_so() {
    let reg = TestRegistry::start();
    // `https://` forces TLS on the loopback registry that speaks plain HTTP.
    let registry = open(
        &format!("https://{}/mirror", reg.host()),
        &OpenOptions::new(),
        &NO_FACTORY,
    )
    .await
    .unwrap();
    let err = registry.check().await.unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert!(err.to_string().contains("plain_http"), "{err}");
    // Not retried: no wait recorded.
    let clock = ManualClock::new(SystemTime::now());
    let registry = GenericRegistry::new(client_counting_waits(&reg.host(), false, &clock));
    let err = registry.check().await.unwrap_err();
    assert!(err.to_string().contains("plain_http"), "{err}");
    assert_eq!(
        clock.sleeps(),
        Vec::<Duration>::new(),
        "the check was retried"
    );
}

#[tokio::test]
async fn refused_credentials_are_auth_errors_that_say_which_side_refused() {
    let src = TestRegistry::with_basic_auth("reader", "right");
    let dst = TestRegistry::with_basic_auth("writer", "right");
    let img = TestImage::builder().seed(2).build();
    let src_store = RegistryClient::new(&src.host(), Credentials::basic("reader", "right"))
        .unwrap()
        .repository("acme/app")
        .unwrap();
    img.push(&src_store, "v1").await.unwrap();

    // The mirror refuses: its check says so at start-up.
    let wrong_mirror = Arc::new(GenericRegistry::new(
        RegistryClient::new(&dst.host(), Credentials::basic("writer", "wrong")).unwrap(),
    ));
    let err = wrong_mirror.check().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");

    // The source refuses: the deploy's error is an auth error of the source.
    let mirror = Mirror::builder(
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&dst.host(), Credentials::basic("writer", "right")).unwrap(),
        )),
        "prod",
    )
    .strategy(Arc::new(ServiceStrategy::default()))
    .sources(Sources::new().with_credentials(&src.host(), Credentials::basic("reader", "wrong")))
    .build()
    .unwrap();
    let source = Source::parse(&format!("{}/acme/app:v1", src.host())).unwrap();
    let err = mirror.mirror("api", &source).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");
    assert_eq!(mirror.side_of(&err), Side::Source, "{err:?}");

    // A missing image at the source: NotFound, of the source.
    let mirror = Mirror::builder(
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&dst.host(), Credentials::basic("writer", "right")).unwrap(),
        )),
        "prod",
    )
    .sources(Sources::new().with_credentials(&src.host(), Credentials::basic("reader", "right")))
    .build()
    .unwrap();
    let missing = Source::parse(&format!("{}/acme/nope:v1", src.host())).unwrap();
    let err = mirror.mirror("api", &missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert_eq!(mirror.side_of(&err), Side::Source, "{err:?}");
}

#[test]
fn malformed_input_is_an_input_error() {
    let err = Source::parse("Not A Reference").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input);
    let err: Result<Source, _> = "UPPER/case:tag".parse();
    assert_eq!(err.unwrap_err().kind(), ErrorKind::Input);
    let reg = Arc::new(mirror_core::LayoutRegistry::new("/tmp/x"));
    let err = Mirror::builder(reg, "").build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Input);
}

#[tokio::test]
async fn a_warning_keeps_the_typed_error_behind_it() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let img = TestImage::builder().seed(3).build();
    let store = RegistryClient::new(&src.host(), Credentials::Anonymous)
        .unwrap()
        .repository("acme/app")
        .unwrap();
    img.push(&store, "v1").await.unwrap();
    let mirror = Mirror::builder(
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&dst.host(), Credentials::Anonymous).unwrap(),
        )),
        "prod",
    )
    .sources(Sources::new().with_retry(mirror_core::kit::retry::RetryConfig::none()))
    .build()
    .unwrap();
    let source = Source::parse(&format!("{}/acme/app:v1", src.host())).unwrap();
    mirror.mirror("api", &source).await.unwrap();
    src.stop();
    let served = mirror.mirror("api", &source).await.unwrap();
    let cause = served
        .warnings
        .iter()
        .find_map(|w| match w {
            mirror_core::Warning::SourceUnreachable { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("served from the mirror with a warning");
    assert_eq!(cause.kind(), Some(ErrorKind::Network), "{cause}");
    assert!(cause.error().is_some_and(|e| e.is_retryable()));
    // In JSON the warning still carries the text.
    let json = serde_json::to_value(&served.warnings).unwrap();
    assert!(json[0]["error"].is_string(), "{json}");
}
