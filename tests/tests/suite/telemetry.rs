//! What an operator sees of the library's work: the metrics it records through the `metrics`
//! facade, rendered by `mirror serve`'s `/metrics` (metrics-exporter-prometheus) and parsed
//! back with a Prometheus text-format parser after a copy, a skip and an eviction against the
//! real registry; and the tracing span tree of one deploy, captured with its fields, in which
//! no credential appears.
//!
//! Both run on one current-thread runtime inside a thread-local recorder / subscriber, so the
//! tests of this binary that run alongside do not reach them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use metrics_exporter_prometheus::PrometheusBuilder;
use mirror_core::store::http::credentials::Credentials;
use mirror_core::store::http::RegistryClient;
use mirror_core::store::ImageStore;
use mirror_core::telemetry;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{Action, GenericRegistry, Mirror, ServiceStrategy, Source, Sources};
use tests::prometheus::{scrape, value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const USER: &str = "deployer";
const PASSWORD: &str = "pa55-never-in-telemetry";

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A mirror of `dst` (basic auth) for cluster `prod`, Service mode keeping no previous image,
/// reading sources from `src` (basic auth too).
fn mirror(dst: &TestRegistry, src: &TestRegistry) -> Mirror {
    let creds = || Credentials::Basic {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let client = RegistryClient::new(&dst.host(), creds()).expect("a client");
    Mirror::builder(Arc::new(GenericRegistry::new(client)), "prod")
        .strategy(Arc::new(ServiceStrategy { keep_previous: 0 }))
        .eviction_grace(Duration::ZERO)
        .sources(Sources::new().with_credentials(&src.host(), creds()))
        .build()
        .expect("a mirror")
}

/// Pushes two images (`app:v1`, `app:v2`) to `src` and returns them as sources.
async fn sources(src: &TestRegistry) -> Vec<Source> {
    let client = RegistryClient::new(
        &src.host(),
        Credentials::Basic {
            username: USER.into(),
            password: PASSWORD.into(),
        },
    )
    .expect("a client");
    let store = client.repository("app").expect("a repository");
    let mut out = Vec::new();
    for (n, tag) in ["v1", "v2"].into_iter().enumerate() {
        let img = TestImage::builder()
            .seed(n as u64 + 40)
            .layers([10_000, 20_000])
            .build();
        img.push(&store as &dyn ImageStore, tag)
            .await
            .expect("push a source image");
        out.push(Source::parse(&format!("{}/app:{tag}", src.host())).expect("a source"));
    }
    out
}

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

/// One span as the capturing layer saw it.
#[derive(Debug, Clone)]
struct CapturedSpan {
    name: String,
    parent: Option<String>,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Captured {
    spans: BTreeMap<u64, CapturedSpan>,
    /// Every event: its span and its fields (the message among them).
    events: Vec<(Option<String>, BTreeMap<String, String>)>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

/// A layer that keeps every span (with its parent and fields) and every event.
struct Capture(Arc<Mutex<Captured>>);

impl<S> Layer<S> for Capture
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.name().to_string());
        let span = CapturedSpan {
            name: attrs.metadata().name().to_string(),
            parent,
            fields,
        };
        self.0.lock().unwrap().spans.insert(id.into_u64(), span);
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(span) = self.0.lock().unwrap().spans.get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let span = ctx.event_span(event).map(|s| s.name().to_string());
        self.0.lock().unwrap().events.push((span, fields));
    }
}

#[test]
fn a_deploy_trace_shows_its_span_tree_with_fields_and_no_secret() {
    let src = TestRegistry::with_basic_auth(USER, PASSWORD);
    let dst = TestRegistry::with_basic_auth(USER, PASSWORD);
    let captured = Arc::new(Mutex::new(Captured::default()));
    let sources = current_thread().block_on(sources(&src));
    let subscriber = tracing_subscriber::registry().with(Capture(captured.clone()));
    let (v1, v2) = tracing::subscriber::with_default(subscriber, || {
        current_thread().block_on(async {
            let mirror = mirror(&dst, &src);
            let v1 = mirror.mirror("api", &sources[0]).await.expect("copy v1");
            let v2 = mirror.mirror("api", &sources[1]).await.expect("copy v2");
            (v1, v2)
        })
    });
    let captured = captured.lock().unwrap();
    let spans: Vec<&CapturedSpan> = captured.spans.values().collect();
    let tree: Vec<String> = spans
        .iter()
        .map(|s| {
            format!(
                "{} < {}: {:?}",
                s.name,
                s.parent.as_deref().unwrap_or("-"),
                s.fields
            )
        })
        .collect();
    let tree = tree.join("\n");

    // deploy (root) > copy > blob; deploy > evict.
    let deploys: Vec<_> = spans.iter().filter(|s| s.name == "deploy").collect();
    assert_eq!(deploys.len(), 2, "{tree}");
    for (d, deployed) in deploys.iter().zip([&v1, &v2]) {
        assert_eq!(d.parent, None, "{tree}");
        let f = &d.fields;
        assert_eq!(f.get("cluster").map(String::as_str), Some("prod"), "{tree}");
        assert_eq!(f.get("service").map(String::as_str), Some("api"), "{tree}");
        assert_eq!(f.get("mode").map(String::as_str), Some("service"), "{tree}");
        assert_eq!(
            f.get("repository").map(String::as_str),
            Some("prod/services/api"),
            "{tree}"
        );
        assert_eq!(
            f.get("action").map(String::as_str),
            Some("copied"),
            "{tree}"
        );
        assert_eq!(
            f.get("digest"),
            Some(&deployed.digest.to_string()),
            "{tree}"
        );
        assert!(
            f["source"].ends_with("/app:v1") || f["source"].ends_with("/app:v2"),
            "{tree}"
        );
    }
    let copies: Vec<_> = spans.iter().filter(|s| s.name == "copy").collect();
    assert_eq!(copies.len(), 2, "{tree}");
    assert!(
        copies.iter().all(|c| c.parent.as_deref() == Some("deploy")),
        "{tree}"
    );
    assert!(
        copies
            .iter()
            .any(|c| c.fields.get("digest") == Some(&v2.digest.to_string())),
        "{tree}"
    );
    let blobs: Vec<_> = spans.iter().filter(|s| s.name == "blob").collect();
    assert_eq!(blobs.len(), 6, "a config and two layers per image: {tree}");
    assert!(
        blobs.iter().all(|b| b.parent.as_deref() == Some("copy")),
        "{tree}"
    );
    assert!(
        blobs
            .iter()
            .all(|b| b.fields.get("outcome").map(String::as_str) == Some("uploaded")),
        "{tree}"
    );
    assert!(
        blobs
            .iter()
            .all(|b| b.fields["digest"].starts_with("sha256:")),
        "{tree}"
    );
    let evictions: Vec<_> = spans.iter().filter(|s| s.name == "evict").collect();
    assert_eq!(evictions.len(), 2, "{tree}");
    assert!(
        evictions
            .iter()
            .all(|e| e.parent.as_deref() == Some("deploy")),
        "{tree}"
    );
    assert!(
        evictions
            .iter()
            .any(|e| e.fields.get("deleted").map(String::as_str) == Some("1")),
        "{tree}"
    );

    // No secret in any span field or event: not the password, not the basic header.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let everything = format!("{tree}\n{:?}", captured.events);
    for secret in [PASSWORD, basic.as_str()] {
        assert!(
            !everything.contains(secret),
            "a secret was recorded:\n{everything}"
        );
    }
}
