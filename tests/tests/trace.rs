//! The tracing span tree of two deploys, captured with its fields by a subscriber installed
//! for the whole process (its own test binary: a thread-local subscriber can miss callsites
//! other tests' threads registered first), in which no credential appears.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use mirror_core::testing::TestRegistry;
use tests::authed::{current_thread, mirror, sources, PASSWORD, USER};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

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
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let (v1, v2) = {
        current_thread().block_on(async {
            let mirror = mirror(&dst, &src);
            let v1 = mirror.mirror("api", &sources[0]).await.expect("copy v1");
            let v2 = mirror.mirror("api", &sources[1]).await.expect("copy v2");
            (v1, v2)
        })
    };
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
