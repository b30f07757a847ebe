//! Concurrent load (a correctness test, not a timed one; `examples/bench_load.rs` measures):
//! many concurrent `mirror` calls of a few images into many service repositories, and the same
//! in Cluster mode. All succeed, every digest is right, each blob is uploaded once per registry.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{
    ClusterStrategy, GenericRegistry, Mirror, MirrorStrategy, ServiceStrategy, Source,
};
use tests::completed_uploads;

async fn run(strategy: Arc<dyn MirrorStrategy>, calls: usize, images: usize, services: usize) {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let store = RegistryClient::new(&src.host(), Credentials::Anonymous)
        .unwrap()
        .repository("lib/app")
        .unwrap();
    let mut fixtures = Vec::new();
    for i in 0..images {
        let img = TestImage::builder()
            .seed(1000 + i as u64)
            .layers([20_000, 10_000])
            .build();
        img.push(&store, &format!("v{i}")).await.unwrap();
        fixtures.push(img);
    }
    let registry = Arc::new(GenericRegistry::new(
        RegistryClient::new(&dst.host(), Credentials::Anonymous).unwrap(),
    ));
    let mirror = Arc::new(
        Mirror::builder(registry, "load")
            .strategy(strategy)
            .eviction_grace(Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    let results: Vec<_> = futures::stream::iter((0..calls).map(|i| {
        let mirror = mirror.clone();
        let img = i % images;
        let service = format!("svc{}", i % services);
        let source = Source::parse(&format!("{}/lib/app:v{img}", src.host())).unwrap();
        async move { (img, mirror.mirror(&service, &source).await) }
    }))
    .buffer_unordered(calls)
    .collect()
    .await;
    for (img, r) in results {
        let d = r.unwrap_or_else(|e| panic!("a concurrent mirror failed: {e}"));
        assert_eq!(&d.digest, fixtures[img].digest());
    }
    let uploads = completed_uploads(&dst);
    let distinct: usize = fixtures.iter().map(|f| f.blobs().len()).sum();
    assert_eq!(uploads.len(), distinct, "every blob reached the registry");
    let dupes: Vec<_> = uploads.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dupes.is_empty(), "blobs uploaded more than once: {dupes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn service_mode_under_concurrent_load_uploads_each_blob_once() {
    run(Arc::new(ServiceStrategy { keep_previous: 5 }), 60, 6, 15).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_mode_under_concurrent_load_uploads_each_blob_once() {
    run(
        Arc::new(ClusterStrategy::new(Duration::from_secs(3600))),
        60,
        6,
        15,
    )
    .await;
}
