//! What an operator sees of the library's work: the metrics it records through the `metrics`
//! facade, rendered by `mirror serve`'s `/metrics` (metrics-exporter-prometheus) and parsed
//! back with a Prometheus text-format parser: after a copy, a skip and an eviction against the
//! real registry, and after a retried manifest, a restarted blob, a pull limit and a failed
//! deploy. (The span tree of a deploy is `tests/tests/trace.rs`.)
//!
//! Each runs on one current-thread runtime inside a thread-local recorder, so the tests of
//! this binary that run alongside do not reach it.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::telemetry;
use mirror_core::testing::{Fault, FaultProxy, Rule, TestRegistry};
use mirror_core::{Action, GenericRegistry, Mirror, Source, Sources};
use tests::authed::{current_thread, mirror, sources, PASSWORD, USER};
use tests::prometheus::{scrape, value};

#[test]
fn metrics_of_a_copy_a_skip_and_an_eviction_reach_the_metrics_endpoint() {
    let src = TestRegistry::with_basic_auth(USER, PASSWORD);
    let dst = TestRegistry::with_basic_auth(USER, PASSWORD);
    // The sources are pushed before the recorder is in place: only the mirror's work counts.
    let sources = current_thread().block_on(sources(&src));
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let (text, deployments) = metrics::with_local_recorder(&recorder, || {
        current_thread().block_on(async {
            let mirror = mirror(&dst, &src);
            let v1 = mirror.mirror("api", &sources[0]).await.expect("copy v1");
            let again = mirror.mirror("api", &sources[0]).await.expect("skip v1");
            let v2 = mirror.mirror("api", &sources[1]).await.expect("copy v2");
            assert_eq!(
                (v1.action, again.action, v2.action),
                (Action::Copied, Action::Skipped, Action::Copied)
            );
            assert_eq!(v2.evicted, vec![v1.digest.clone()], "v2 evicts v1");

            // `mirror serve`'s routes over real HTTP: one refresh records the inventory.
            let server =
                mirror_cli::serve::Server::new(mirror, Duration::from_secs(3600), Some(handle));
            server.refresh_once().await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("an address");
            tokio::spawn(async move { axum::serve(listener, server.router()).await });
            let resp = reqwest::get(format!("http://{addr}/metrics"))
                .await
                .expect("GET /metrics");
            assert_eq!(resp.status(), 200);
            let text = resp.text().await.expect("a body");
            (text, [v1, again, v2])
        })
    });
    let scrape = scrape(&text);
    let service = ("mode", "service");
    assert_eq!(
        value(
            &scrape,
            telemetry::DEPLOYS,
            &[("action", "copied"), service]
        ),
        2.0,
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            telemetry::DEPLOYS,
            &[("action", "skipped"), service]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(value(&scrape, telemetry::EVICTIONS, &[]), 1.0, "{text}");
    let uploaded: usize = deployments.iter().map(|d| d.blobs_uploaded).sum();
    let bytes: u64 = deployments.iter().map(|d| d.bytes_uploaded).sum();
    assert_eq!(uploaded, 6, "two images of a config and two layers each");
    assert_eq!(
        value(&scrape, telemetry::BLOBS, &[("outcome", "uploaded")]),
        uploaded as f64
    );
    assert_eq!(value(&scrape, telemetry::BYTES_UPLOADED, &[]), bytes as f64);
    // Histograms render as summaries: one count per deploy.
    assert_eq!(
        value(
            &scrape,
            &format!("{}_count", telemetry::DEPLOY_SECONDS),
            &[service]
        ),
        3.0,
        "{text}"
    );
    // Registry requests by operation and status class: the skip's HEADs, the uploads, the
    // eviction's DELETE; none failed but the first, unauthenticated ones.
    assert!(
        value(
            &scrape,
            telemetry::REQUESTS,
            &[("operation", "manifest_head"), ("status", "2xx")]
        ) >= 2.0,
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            telemetry::REQUESTS,
            &[("operation", "upload_finish"), ("status", "2xx")]
        ),
        uploaded as f64,
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            telemetry::REQUESTS,
            &[("operation", "manifest_delete"), ("status", "2xx")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&scrape, telemetry::REQUESTS, &[("status", "5xx")]),
        0.0,
        "{text}"
    );
    assert_eq!(
        value(&scrape, telemetry::REQUESTS, &[("operation", "other")]),
        0.0,
        "every request has its operation: {text}"
    );
    // The inventory's storage totals: one repository with v2 alone.
    assert_eq!(
        value(&scrape, telemetry::INVENTORY_REPOSITORIES, &[]),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&scrape, telemetry::INVENTORY_IMAGES, &[]),
        1.0,
        "{text}"
    );
    assert!(
        value(&scrape, telemetry::INVENTORY_STORED_BYTES, &[]) > 30_000.0,
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            telemetry::REPOSITORY_STORED_BYTES,
            &[("repository", "prod/services/api")]
        ),
        value(&scrape, telemetry::INVENTORY_STORED_BYTES, &[]),
        "{text}"
    );
    // Bounded labels: no digest, tag or host anywhere (but the rate-limit gauge's `registry`).
    for s in &scrape.samples {
        for (k, v) in s.labels.iter() {
            if s.metric == telemetry::RATE_LIMIT_REMAINING && k == "registry" {
                continue;
            }
            assert!(
                !v.contains("sha256") && !v.contains("127.0.0.1") && !v.contains("v1"),
                "{} has an unbounded label {k}={v}",
                s.metric
            );
        }
    }
    assert!(!text.contains(PASSWORD));
}

#[test]
fn retries_failures_and_the_pull_limit_left_reach_the_metrics() {
    let src = TestRegistry::with_basic_auth(USER, PASSWORD);
    let dst = TestRegistry::with_basic_auth(USER, PASSWORD);
    let sources = current_thread().block_on(sources(&src));
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let proxy_host = metrics::with_local_recorder(&recorder, || {
        current_thread().block_on(async {
            // The source behind a proxy: a pull limit in every answer, one 503 on the first
            // manifest GET (retried by the client), one blob body cut short (the transfer
            // restarted by the copy engine).
            let proxy = FaultProxy::start(&src.host());
            proxy.set_rate_limit(Some((100, 42)));
            proxy.add(Rule::new(
                Some("GET"),
                "/manifests/",
                Fault::Status {
                    status: 503,
                    retry_after: None,
                },
                1,
            ));
            proxy.add(Rule::new(Some("GET"), "/blobs/", Fault::DropAfter(100), 1));
            let via_proxy = |s: &Source| {
                let text = s.to_string().replace(&src.host(), &proxy.host());
                Source::parse(&text).expect("a source")
            };
            let creds = Credentials::Basic {
                username: USER.into(),
                password: PASSWORD.into(),
            };
            let mirror = Mirror::builder(
                Arc::new(GenericRegistry::new(
                    RegistryClient::new(&dst.host(), creds.clone()).expect("a client"),
                )),
                "prod",
            )
            .sources(Sources::new().with_credentials(&proxy.host(), creds))
            .copy_options(mirror_core::CopyOptions {
                retry: mirror_core::kit::retry::RetryConfig::fast(),
                ..mirror_core::CopyOptions::default()
            })
            .build()
            .expect("a mirror");
            let d = mirror
                .mirror("api", &via_proxy(&sources[0]))
                .await
                .expect("copied");
            assert_eq!(d.action, Action::Copied);
            // A deploy that fails: a source that does not exist.
            let missing = Source::parse(&format!("{}/app:missing", proxy.host())).unwrap();
            assert!(mirror.mirror("api", &missing).await.is_err());
            proxy.host()
        })
    });
    let text = handle.render();
    let scrape = scrape(&text);
    assert_eq!(
        value(
            &scrape,
            telemetry::RETRIES,
            &[("operation", "manifest_get")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            telemetry::RETRIES,
            &[("operation", "blob_transfer")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            telemetry::REQUESTS,
            &[("operation", "manifest_get"), ("status", "5xx")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &scrape,
            telemetry::RATE_LIMIT_REMAINING,
            &[("registry", &proxy_host)]
        ),
        42.0,
        "{text}"
    );
    assert_eq!(
        value(&scrape, telemetry::DEPLOY_FAILURES, &[("mode", "service")]),
        1.0,
        "{text}"
    );
    assert!(!text.contains(PASSWORD));
}
