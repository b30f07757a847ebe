//! A rate-limiting proxy in front of the real registry, as Docker Hub answers: pull-limit
//! headers on every answer, then 429 with `Retry-After`. The Verify path of a mirrored image
//! costs HEADs only; a short `Retry-After` is waited for; a long one fails at once with
//! `RateLimited`, or, when the image is mirrored, serves the mirrored copy with a typed warning.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{Fault, FaultProxy, Rule, TestImage, TestRegistry};
use mirror_core::{
    Action, Error, GenericRegistry, Mirror, ServiceStrategy, Source, TagPolicy, Warning,
};

async fn push(reg: &TestRegistry, tag: &str, seed: u64) {
    let store = RegistryClient::new(&reg.host(), Credentials::Anonymous)
        .unwrap()
        .repository("library/app")
        .unwrap();
    TestImage::builder()
        .seed(seed)
        .layers([20_000])
        .build()
        .push(&store, tag)
        .await
        .unwrap();
}

fn mirror(dst: &TestRegistry) -> Mirror {
    Mirror::builder(
        Arc::new(GenericRegistry::new(
            RegistryClient::new(&dst.host(), Credentials::Anonymous).unwrap(),
        )),
        "prod",
    )
    .strategy(Arc::new(ServiceStrategy { keep_previous: 5 }))
    .tag_policy(TagPolicy::Verify)
    .build()
    .unwrap()
}

fn source(proxy: &FaultProxy, tag: &str) -> Source {
    Source::parse(&format!("{}/library/app:{tag}", proxy.host())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_source_is_waited_for_within_the_bound_then_served_from_the_mirror() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    for (tag, seed) in [("1.0", 1), ("2.0", 2), ("3.0", 3)] {
        push(&src, tag, seed).await;
    }
    let proxy = FaultProxy::start(&src.host());
    let mirror = mirror(&dst);

    // Few pulls left: the cold copy completes and says so.
    proxy.set_rate_limit(Some((100, 5)));
    let cold = mirror.mirror("api", &source(&proxy, "1.0")).await.unwrap();
    assert_eq!(cold.action, Action::Copied);
    assert!(
        cold.warnings.iter().any(|w| matches!(
            w,
            Warning::RateLimitLow {
                remaining: 5,
                limit: 100,
                window_secs: Some(21600),
                ..
            }
        )),
        "{:?}",
        cold.warnings
    );

    // The Verify path of the mirrored image: HEADs only, no manifest GET at the source.
    let before = proxy.requests().len();
    let warm = mirror.mirror("api", &source(&proxy, "1.0")).await.unwrap();
    assert_eq!(warm.action, Action::Skipped);
    let spent: Vec<String> = proxy.requests()[before..].to_vec();
    assert!(
        spent
            .iter()
            .all(|r| !r.starts_with("GET ") || r == "GET /v2/"),
        "no GET but the ping: {spent:?}"
    );
    assert!(spent.iter().any(|r| r.starts_with("HEAD ")), "{spent:?}");

    // A short Retry-After on the manifest: waited for, the copy completes.
    proxy.set_rate_limit(Some((100, 90)));
    proxy.add(tests::manifest_get_rate_limited(1));
    let started = Instant::now();
    let waited = mirror.mirror("api", &source(&proxy, "2.0")).await.unwrap();
    assert_eq!(waited.action, Action::Copied);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(waited.warnings.is_empty(), "{:?}", waited.warnings);

    // An hour (Docker Hub's answer once the limit is spent): not waited for.
    let long = Fault::Status {
        status: 429,
        retry_after: Some(3600),
    };
    proxy.add(Rule::new(None, "/manifests/", long.clone(), 100));
    let started = Instant::now();
    let err = mirror
        .mirror("api", &source(&proxy, "3.0"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RateLimited { retry_after: Some(d), .. } if *d == Duration::from_secs(3600)),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // The mirrored image is served instead, with a typed warning.
    let served = mirror.mirror("api", &source(&proxy, "1.0")).await.unwrap();
    assert_eq!(served.action, Action::Skipped);
    assert_eq!(served.digest, cold.digest);
    let w = served
        .warnings
        .iter()
        .find(|w| w.served_from_mirror())
        .unwrap_or_else(|| panic!("{:?}", served.warnings));
    assert_eq!(w.kind(), "source_rate_limited");
    assert!(matches!(
        w,
        Warning::SourceRateLimited {
            retry_after_secs: Some(3600),
            ..
        }
    ));
}
