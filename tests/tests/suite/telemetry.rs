//! The metrics the library records through the `metrics` facade (`mirror_core::telemetry`),
//! read back with metrics-util's debugging recorder after a copy, a skip and an eviction.

use std::sync::Arc;
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use mirror_core::registry::LayoutRegistry;
use mirror_core::telemetry;
use mirror_core::testing::TestImage;
use mirror_core::{Action, Mirror, ServiceStrategy, Source};

fn counter(
    snapshot: &[(
        metrics_util::CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    name: &str,
    labels: &[(&str, &str)],
) -> u64 {
    snapshot
        .iter()
        .filter(|(k, ..)| {
            let key = k.key();
            key.name() == name
                && labels
                    .iter()
                    .all(|(l, v)| key.labels().any(|x| x.key() == *l && x.value() == *v))
        })
        .map(|(.., v)| match v {
            DebugValue::Counter(n) => *n,
            _ => 0,
        })
        .sum()
}

#[test]
fn a_copy_a_skip_and_an_eviction_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let dir = tempfile::tempdir().unwrap();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mirror = Mirror::builder(
                Arc::new(LayoutRegistry::new(dir.path().join("mirror"))),
                "prod",
            )
            .strategy(Arc::new(ServiceStrategy { keep_previous: 0 }))
            .eviction_grace(Duration::ZERO)
            .build()
            .unwrap();
            let mut sources = Vec::new();
            for (n, tag) in ["v1", "v2"].iter().enumerate() {
                let path = dir.path().join(format!("src-{tag}"));
                TestImage::builder()
                    .seed(n as u64 + 1)
                    .layers([1000, 2000])
                    .build()
                    .write_layout(&path, tag)
                    .unwrap();
                sources.push(Source::parse(&format!("oci:{}:{tag}", path.display())).unwrap());
            }
            assert_eq!(
                mirror.mirror("api", &sources[0]).await.unwrap().action,
                Action::Copied
            );
            assert_eq!(
                mirror.mirror("api", &sources[0]).await.unwrap().action,
                Action::Skipped
            );
            let v2 = mirror.mirror("api", &sources[1]).await.unwrap();
            assert_eq!(v2.evicted.len(), 1);
        });
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let service = ("mode", "service");
    assert_eq!(
        counter(
            &snapshot,
            telemetry::DEPLOYS,
            &[("action", "copied"), service]
        ),
        2
    );
    assert_eq!(
        counter(
            &snapshot,
            telemetry::DEPLOYS,
            &[("action", "skipped"), service]
        ),
        1
    );
    assert_eq!(counter(&snapshot, telemetry::EVICTIONS, &[]), 1);
    assert_eq!(
        counter(&snapshot, telemetry::BLOBS, &[("outcome", "uploaded")]),
        6
    );
    assert!(counter(&snapshot, telemetry::BYTES_UPLOADED, &[]) > 3000);
    let durations = snapshot
        .iter()
        .filter(|(k, ..)| k.key().name() == telemetry::DEPLOY_SECONDS)
        .count();
    assert!(durations >= 2, "a histogram per action and mode");
    // No label carries a digest, tag or path.
    for (k, ..) in &snapshot {
        for l in k.key().labels() {
            assert!(
                !l.value().contains("sha256") && !l.value().contains('/'),
                "{l:?}"
            );
        }
    }
}
