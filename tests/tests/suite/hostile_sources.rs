//! Hostile sources, round two (issue 27): work that grew without bound, referrers that changed
//! another service's image, layout files that hung or escaped, numbers that crashed. The data
//! lives in the real registry where it can; an in-process hostile server serves what no real
//! registry would. Each attack prints its wall time and this process's peak RSS growth
//! (approximate here: other tests run at the same time; `-- --test-threads 1` for figures).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use mirror_core::kit::image::referrers::{add_to_schema_index, cosign_tag, schema_tag};
use mirror_core::kit::retry::RetryConfig;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::{HttpStore, RegistryClient};
use mirror_core::kit::store::layout::LayoutStore;
use mirror_core::media::{RawManifest, OCI_INDEX, OCI_MANIFEST};
use mirror_core::testing::{
    FakeRegistry, FaultProxy, TestArtifact, TestImage, TestIndex, TestRegistry,
};
use mirror_core::{
    Action, ClusterStrategy, CopyOptions, Deployment, Digest, Error, GenericRegistry, ImageStore,
    Mirror, Repository, Source, Warning,
};
use tests::hostile::{HostileRegistry, Witness};
use tests::{access_lines, measured};

fn client(host: &str) -> RegistryClient {
    RegistryClient::new(host, Credentials::Anonymous).unwrap()
}

fn registry(host: &str) -> Arc<GenericRegistry> {
    Arc::new(GenericRegistry::new(client(host)))
}

fn cluster_mirror(host: &str) -> Mirror {
    Mirror::builder(registry(host), "prod")
        .strategy(Arc::new(ClusterStrategy::new(Duration::from_secs(86_400))))
        .build()
        .unwrap()
}

/// An OCI index naming `child` `times` times (a platform each time, so that it reads as an
/// image index).
fn index_naming(child: &RawManifest, times: usize) -> RawManifest {
    tests::oci_index(vec![tests::descriptor(child, Some("linux/amd64")); times])
}

/// Manifest reads (`GET`/`HEAD …/manifests/<digest>`) of `digest` in a registry's log.
fn manifest_requests(reg: &TestRegistry, digest: &Digest) -> usize {
    let suffix = format!("/manifests/{digest}");
    access_lines(reg)
        .iter()
        .filter(|l| l.ends_with(&suffix))
        .count()
}

#[tokio::test]
async fn an_index_dag_naming_each_level_twice_is_read_once_per_manifest() {
    let reg = TestRegistry::start();
    let store = client(&reg.host()).repository("prod/mirror").unwrap();
    let base = TestImage::builder().seed(1).layers([500]).build();
    base.push(&store, "base").await.unwrap();
    // 30 levels above the image, each naming the level below twice: 2^30 paths, 31 manifests.
    let mut below = base.manifest().clone();
    for _ in 0..30 {
        let level = index_naming(&below, 2);
        store
            .put_manifest(&level.digest.to_string(), &level)
            .await
            .unwrap();
        below = level;
    }
    store.put_manifest("dag", &below).await.unwrap();
    let mirror = cluster_mirror(&reg.host());
    let (inventory, _) = measured(
        "a 2^30 index DAG (inventory)",
        tokio::time::timeout(Duration::from_secs(60), mirror.inventory()),
    )
    .await;
    let inventory = inventory.expect("the inventory ends").unwrap();
    let image = inventory.repositories[0]
        .images
        .iter()
        .find(|i| i.digest == below.digest)
        .expect("the DAG's root is listed");
    assert!(image.size.is_some());
    // Each manifest read a bounded number of times, not once per path.
    let reads = manifest_requests(&reg, base.digest());
    assert!(reads <= 8, "the image at the bottom was read {reads} times");
}

#[tokio::test]
async fn an_index_naming_one_child_twenty_thousand_times_looks_it_up_once() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    let store = client(&src.host()).repository("acme/app").unwrap();
    let child = TestImage::builder().seed(2).layers([700]).build();
    child.push(&store, "child").await.unwrap();
    let index = index_naming(child.manifest(), 20_000);
    store.put_manifest("v1", &index).await.unwrap();
    let mirror = cluster_mirror(&dst.host());
    let source = Source::parse(&format!("{}/acme/app:v1", src.host())).unwrap();
    let before = manifest_requests(&src, child.digest());
    let (d, _) = measured(
        "an index naming one child 20,000 times",
        mirror.mirror("web", &source),
    )
    .await;
    let d = d.unwrap();
    assert_eq!(d.digest, index.digest, "byte-identical");
    let reads = manifest_requests(&src, child.digest()) - before;
    assert!(reads <= 4, "the child was read {reads} times at the source");
    let lookups = manifest_requests(&dst, child.digest());
    assert!(
        lookups <= 4,
        "the child was looked up {lookups} times at the destination"
    );
}

#[tokio::test]
async fn a_hundred_thousand_referrers_answered_for_every_subject_cost_bounded_work() {
    let dst = TestRegistry::start();
    let index = TestIndex::linux_amd64_arm64(3);
    // 100,000 descriptors (about 11 MB) for every subject, none of which exists.
    let mut manifests = Vec::with_capacity(100_000);
    for i in 0..100_000u64 {
        manifests.push(serde_json::json!({
            "mediaType": "a",
            "digest": format!("sha256:{i:064x}"),
            "size": 1,
        }));
    }
    let answer = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
    }))
    .unwrap();
    let src = FakeRegistry::serving_with_referrers(&index, "acme/app", "v1", answer.into());
    let mirror = cluster_mirror(&dst.host());
    let source = Source::parse(&format!("{}/acme/app:v1", src.host())).unwrap();
    let (d, _) = measured(
        "100,000 referrers for every subject",
        tokio::time::timeout(Duration::from_secs(120), mirror.mirror("web", &source)),
    )
    .await;
    let d = d.expect("bounded time").unwrap();
    assert_eq!(&d.digest, index.digest());
    assert!(d.referrers.truncated, "the bound was reached and said so");
    // What was fetched of the referrers stays within the count bound.
    let fetched = src
        .requests()
        .iter()
        .filter(|r| r.contains("/manifests/sha256:0000"))
        .count();
    assert!(fetched <= 512, "{fetched} referrer manifests asked for");
}

/// A client (basic credentials) of `app` at a registry whose token server always answers 429
/// with `Retry-After: after`, and the count of token requests.
async fn rate_limited_token_server(after: u64) -> (HttpStore, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let realm = Witness::start(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", after.to_string())],
            "slow down",
        )
    })
    .await;
    let host = HostileRegistry::bearer_auth(&realm.url("/token"))
        .serve()
        .await;
    let client = RegistryClient::new(&host, Credentials::basic("a", "b")).unwrap();
    (client.repository("app").unwrap(), asked)
}

#[tokio::test]
async fn a_rate_limited_token_server_costs_one_retry_budget_not_one_per_request_attempt() {
    let (store, asked) = rate_limited_token_server(1).await;
    let started = Instant::now();
    let (err, _) = measured("token server 429, Retry-After 1", store.head_manifest("v1")).await;
    let err = err.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    let tokens = asked.load(Ordering::Relaxed);
    assert!(
        tokens <= RetryConfig::default().max_attempts as usize,
        "{tokens} token requests: token retries ran inside request retries"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // A Retry-After longer than a retry waits fails at once, as for manifests.
    let (store, asked) = rate_limited_token_server(600).await;
    let started = Instant::now();
    let err = store.head_manifest("v1").await.unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }), "{err:?}");
    assert_eq!(asked.load(Ordering::Relaxed), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Into a cluster mirror at `dst`, mirrors `acme/victim:v1` of `src` for service `victim`, then
/// (measured as `attack`) `attacker:v1` for service `attacker`: the two deployments.
async fn victim_then(
    dst: &str,
    src: &str,
    attacker: &str,
    attack: &str,
) -> (Deployment, Deployment) {
    let mirror = cluster_mirror(dst);
    let source = |path: &str| Source::parse(&format!("{src}/{path}:v1")).unwrap();
    let v = mirror
        .mirror("victim", &source("acme/victim"))
        .await
        .unwrap();
    let (d, _) = measured(attack, mirror.mirror("attacker", &source(attacker))).await;
    (v, d.unwrap())
}

#[tokio::test]
async fn a_referrer_whose_subject_is_another_image_is_not_copied() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    // The destination serves the referrers API: it files a referrer under its `subject`.
    let dst_api = FaultProxy::with_referrers_api(&dst.host());
    let victim = TestImage::builder().seed(10).layers([800]).build();
    let app = TestImage::builder().seed(11).layers([900]).build();
    victim
        .push(
            &client(&src.host()).repository("acme/victim").unwrap(),
            "v1",
        )
        .await
        .unwrap();
    let app_store = client(&src.host()).repository("acme/app").unwrap();
    app.push(&app_store, "v1").await.unwrap();
    // The source lists a forged SBOM as a referrer of `app`; its subject is the victim.
    let forged = TestArtifact::builder("application/spdx+json")
        .payload("application/spdx+json", b"{\"forged\":true}".to_vec())
        .subject(victim.manifest())
        .build();
    forged.push(&app_store, None).await.unwrap();
    add_to_schema_index(&app_store, app.digest(), &[forged.descriptor()])
        .await
        .unwrap();

    let (v, d) = victim_then(&dst_api.host(), &src.host(), "acme/app", "a forged SBOM").await;
    assert_eq!(d.referrers.foreign, vec![forged.digest().clone()]);
    assert!(
        d.warnings.iter().any(|w| matches!(w, Warning::ReferrersRefused { foreign, .. } if foreign.contains(forged.digest()))),
        "{:?}",
        d.warnings
    );
    let store = client(&dst_api.host()).repository(&v.repository).unwrap();
    let filed = store
        .referrers(&v.digest, None)
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        filed.iter().all(|r| &r.digest != forged.digest()),
        "the victim gained a forged SBOM: {filed:?}"
    );
    assert!(store
        .head_manifest(&forged.digest().to_string())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn a_cosign_tag_of_another_image_is_kept_not_replaced() {
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    // The victim's index and the attacker's share a platform manifest.
    let shared = TestImage::builder().seed(20).layers([600]).build();
    let victim = TestIndex::from_images(vec![
        shared.clone(),
        TestImage::builder()
            .seed(21)
            .platform("linux/arm64")
            .build(),
    ]);
    let attacker = TestIndex::from_images(vec![
        shared.clone(),
        TestImage::builder()
            .seed(22)
            .platform("linux/s390x")
            .build(),
    ]);
    let victim_store = client(&src.host()).repository("acme/victim").unwrap();
    let attacker_store = client(&src.host()).repository("evil/app").unwrap();
    victim.push(&victim_store, "v1").await.unwrap();
    attacker.push(&attacker_store, "v1").await.unwrap();
    let tag = cosign_tag(shared.digest(), "sig");
    let good = TestArtifact::cosign_signature(shared.manifest(), 1);
    let evil = TestArtifact::cosign_signature(shared.manifest(), 666);
    good.push(&victim_store, Some(&tag)).await.unwrap();
    evil.push(&attacker_store, Some(&tag)).await.unwrap();

    let (v, d) = victim_then(
        &dst.host(),
        &src.host(),
        "evil/app",
        "a replaced cosign signature",
    )
    .await;
    assert_eq!(d.action, Action::Copied);
    assert_eq!(d.referrers.cosign_tags_kept, vec![tag.clone()]);
    let store = client(&dst.host()).repository(&v.repository).unwrap();
    let held = store.head_manifest(&tag).await.unwrap().unwrap();
    assert_eq!(
        &held.digest,
        good.digest(),
        "the victim's signature was replaced"
    );
    // A signer that signs again at the same source (cosign appends a layer) still updates.
    assert!(schema_tag(shared.digest()).starts_with("sha256-"));
}

#[tokio::test]
async fn a_fifo_among_a_source_layouts_blobs_fails_at_once_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let img = TestImage::builder().seed(30).layers([1000]).build();
    img.write_layout(dir.path().join("src"), "v1").unwrap();
    let layer = dir
        .path()
        .join("src/blobs/sha256")
        .join(img.layers()[0].digest().hex());
    std::fs::remove_file(&layer).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&layer)
        .status()
        .unwrap();
    assert!(status.success());
    let src = LayoutStore::open(dir.path().join("src")).unwrap();
    let dst = LayoutStore::create(dir.path().join("dst")).unwrap();
    let (result, _) = measured(
        "a FIFO among the blobs",
        tokio::time::timeout(
            Duration::from_secs(20),
            mirror_core::copy(&src, "v1", &dst, "v1", &CopyOptions::default()),
        ),
    )
    .await;
    let err = result.expect("no hang").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[tokio::test]
async fn a_destination_layout_whose_blobs_are_a_symlink_gets_nothing_written_outside() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let dst = dir.path().join("dst");
    LayoutStore::create(&dst).unwrap();
    std::fs::remove_dir(dst.join("blobs/sha256")).unwrap();
    std::os::unix::fs::symlink(&outside, dst.join("blobs/sha256")).unwrap();
    let img = TestImage::builder().seed(31).layers([1000]).build();
    img.write_layout(dir.path().join("src"), "v1").unwrap();
    let src = LayoutStore::open(dir.path().join("src")).unwrap();
    // Opening for writing refuses it; a store opened before the link was made refuses the
    // writes.
    let err = LayoutStore::create(&dst).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    let opened = LayoutStore::open(&dst).unwrap();
    let (result, _) = measured(
        "a symlinked blobs/sha256",
        mirror_core::copy(&src, "v1", &opened, "v1", &CopyOptions::default()),
    )
    .await;
    let err = result.unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "blobs were written outside the layout"
    );
}

#[tokio::test]
async fn a_push_time_tag_far_in_the_future_is_no_push_time_and_crashes_nothing() {
    let reg = TestRegistry::start();
    let store = client(&reg.host()).repository("prod/services/api").unwrap();
    let img = TestImage::builder().seed(40).layers([500]).build();
    img.push(&store, "v1").await.unwrap();
    let far = format!(
        "mirror.pushed.999999999999999.{}",
        &img.digest().hex()[..12]
    );
    store.put_manifest(&far, img.manifest()).await.unwrap();
    let mirror = Mirror::builder(registry(&reg.host()), "prod")
        .build()
        .unwrap();
    let inventory = mirror.inventory().await.unwrap();
    let listed = &inventory.repositories[0].images[0];
    assert_eq!(listed.pushed_at, None, "year 33658 is no push time");
    assert!(listed.tags.contains(&far), "{:?}", listed.tags);
    // And the CLI shows it (it panicked formatting the time before).
    let cli = tests::cli::Cli::new(
        tests::cli::build_cli(),
        &[],
        &["--registry", &reg.host(), "--cluster", "prod"],
    );
    let out = cli.run(&["ls"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sizes_a_registry_claims_are_summed_saturating() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::create(dir.path()).unwrap();
    let huge = |n: u8| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": Digest::sha256_of(&[n]).to_string(),
            "size": 1u64 << 63,
        })
    };
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::sha256_of(b"c").to_string(), "size": 2},
        "layers": [huge(1), huge(2)],
    });
    let m = RawManifest::new(serde_json::to_vec(&doc).unwrap(), OCI_MANIFEST);
    store.put_manifest("v1", &m).await.unwrap();
    let size = mirror_core::kit::image::image_size(&store, &m.digest)
        .await
        .unwrap();
    assert_eq!(size, u64::MAX, "wrapping arithmetic made {size}");
    let _ = Repository::listed("x");
}
