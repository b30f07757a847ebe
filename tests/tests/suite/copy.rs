//! End-to-end tests of the copy engine against the real CNCF distribution registry
//! (`docker-registry`), OCI layouts, an in-process fake registry and skopeo.

use std::process::Command;
use std::sync::{Arc, Mutex};

use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::{HttpStore, RegistryClient, UploadMode};
use mirror_core::kit::store::layout::LayoutStore;
use mirror_core::media::{DOCKER_MANIFEST, OCI_MANIFEST};
use mirror_core::testing::{require_tool, FakeRegistry, TestImage, TestIndex, TestRegistry};
use mirror_core::{copy, CopyEvent, CopyOptions, Digest, Error, ImageStore, PlatformFilter};

pub(crate) fn small_image(seed: u64) -> TestImage {
    TestImage::builder()
        .seed(seed)
        .layers([40_000, 1_000, 250_000])
        .build()
}

/// `skopeo ARGS`, which must succeed: its output.
fn skopeo(args: &[&str]) -> Vec<u8> {
    let skopeo = require_tool("skopeo", "apt-get install -y skopeo");
    let out = Command::new(skopeo)
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn skopeo_digest(reference: &str) -> Digest {
    Digest::sha256_of(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        reference,
    ]))
}

/// `skopeo copy --all <tls> FROM TO` (every platform), which must succeed.
fn skopeo_copy(tls: &str, from: &str, to: &str) {
    skopeo(&["copy", "--all", tls, from, to]);
}

pub(crate) fn index_blobs(index: &TestIndex) -> usize {
    let mut all: Vec<&Digest> = index
        .images()
        .iter()
        .flat_map(|i| i.blobs())
        .map(|b| b.digest())
        .collect();
    all.sort();
    all.dedup();
    assert!(all.len() >= 4, "fixture has distinct blobs per platform");
    all.len()
}

/// Upload sessions still open in a repository of a test registry (distribution keeps a
/// `startedat` file per open session; a cancelled one loses it).
fn open_upload_sessions(reg: &TestRegistry, repo: &str) -> usize {
    let dir = reg
        .data_dir()
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_uploads");
    std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("startedat").exists())
                .count()
        })
        .unwrap_or(0)
}

/// `team/app` of one registry holding [`small_image`]`(seed)` as `v1` and a two-platform index
/// (seed `seed + 1`) as `multi`; `mirror/app` of another, empty, as the destination.
struct Pair {
    _a: TestRegistry,
    b: TestRegistry,
    image: TestImage,
    index: TestIndex,
    src: HttpStore,
    dst: HttpStore,
}

impl Pair {
    async fn start(seed: u64) -> Self {
        let (a, b) = (TestRegistry::start(), TestRegistry::start());
        let (image, index) = (small_image(seed), TestIndex::linux_amd64_arm64(seed + 1));
        let src = a.store("team/app");
        image.push(&src, "v1").await.unwrap();
        index.push(&src, "multi").await.unwrap();
        let dst = b.store("mirror/app");
        Pair {
            _a: a,
            b,
            image,
            index,
            src,
            dst,
        }
    }
}

pub(crate) fn opts() -> CopyOptions {
    CopyOptions {
        retry: mirror_core::kit::retry::RetryConfig::fast(),
        ..CopyOptions::default()
    }
}

#[tokio::test]
async fn registry_to_registry_preserves_digests_and_second_copy_uploads_nothing() {
    let pair = Pair::start(1).await;

    for (tag, digest, blobs) in [
        ("v1", pair.image.digest().clone(), 4),
        (
            "multi",
            pair.index.digest().clone(),
            index_blobs(&pair.index),
        ),
    ] {
        let r = copy(&pair.src, tag, &pair.dst, tag, &opts()).await.unwrap();
        assert_eq!(r.digest, digest, "{tag}");
        assert_eq!(r.blobs_uploaded, blobs, "{tag}: {r:?}");
        assert!(r.bytes_uploaded > 0);
        assert_eq!(
            pair.dst.head_manifest(tag).await.unwrap().unwrap().digest,
            digest
        );
        assert_eq!(
            skopeo_digest(&format!("docker://{}/mirror/app:{tag}", pair.b.host())),
            digest
        );

        let again = copy(&pair.src, tag, &pair.dst, tag, &opts()).await.unwrap();
        assert!(again.already_present, "{again:?}");
        assert_eq!(again.bytes_uploaded, 0);
        assert_eq!(
            again.blobs_uploaded + again.blobs_mounted + again.manifests_pushed,
            0
        );
    }
}

#[tokio::test]
async fn a_manifest_held_under_its_digest_gets_only_its_tag_and_nothing_is_streamed() {
    // The lookup by digest runs while the blobs are checked; streaming waits for its answer.
    let pair = Pair::start(31).await;
    for (tag, digest) in [("v1", pair.image.digest()), ("multi", pair.index.digest())] {
        copy(&pair.src, tag, &pair.dst, tag, &opts()).await.unwrap();
        let before = tests::access_lines(&pair.b).len();
        let other = format!("{tag}-again");
        let r = copy(&pair.src, tag, &pair.dst, &other, &opts())
            .await
            .unwrap();
        assert!(r.already_present, "{r:?}");
        assert_eq!(
            (r.manifests_pushed, r.blobs_uploaded, r.bytes_uploaded),
            (1, 0, 0)
        );
        let writes: Vec<String> = tests::access_lines(&pair.b)[before..]
            .iter()
            .filter(|l| !l.starts_with("HEAD ") && !l.starts_with("GET "))
            .cloned()
            .collect();
        assert_eq!(writes, [format!("PUT /v2/mirror/app/manifests/{other}")]);
        assert_eq!(
            pair.dst
                .head_manifest(&other)
                .await
                .unwrap()
                .unwrap()
                .digest,
            *digest
        );
    }
}

#[tokio::test]
async fn a_nested_index_is_stored_a_level_at_a_time_deepest_first() {
    // outer → {inner index → {amd64, arm64}, amd64}: the real registry refuses an index whose
    // children it lacks, so the order matters; amd64 is named at two depths.
    let a = TestRegistry::start();
    let b = TestRegistry::start();
    let inner = TestIndex::linux_amd64_arm64(33);
    let src = a.store("team/nested");
    inner.push(&src, "inner").await.unwrap();
    let amd64 = &inner.images()[0];
    let outer = tests::oci_index(vec![
        tests::descriptor(inner.manifest(), None),
        tests::descriptor(amd64.manifest(), None),
    ]);
    src.put_manifest("outer", &outer).await.unwrap();

    let dst = b.store("mirror/nested");
    let r = copy(&src, "outer", &dst, "outer", &opts()).await.unwrap();
    assert_eq!(r.digest, outer.digest);
    assert_eq!(
        r.manifests_pushed, 4,
        "two images, the inner index, the outer: {r:?}"
    );
    assert_eq!(r.blobs_uploaded, index_blobs(&inner), "{r:?}");
    for d in [inner.digest(), amd64.digest(), inner.images()[1].digest()] {
        assert!(
            dst.head_manifest(&d.to_string()).await.unwrap().is_some(),
            "{d}"
        );
    }
    assert_eq!(
        skopeo_digest(&format!("docker://{}/mirror/nested:outer", b.host())),
        outer.digest
    );
}

#[tokio::test]
async fn registry_to_layout_and_back_preserves_digests() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutStore::create(dir.path().join("oci")).unwrap();
    let image = small_image(3);
    let index = TestIndex::linux_amd64_arm64(4);
    let src = reg.store("src/app");
    image.push(&src, "v1").await.unwrap();
    index.push(&src, "multi").await.unwrap();

    for (tag, digest) in [("v1", image.digest()), ("multi", index.digest())] {
        let r = copy(&src, tag, &layout, tag, &opts()).await.unwrap();
        assert_eq!(&r.digest, digest);
        assert_eq!(
            skopeo_digest(&format!("oci:{}:{tag}", layout.path().display())),
            *digest
        );
        // Back into another repository of the registry: mounts are impossible from a
        // layout, so every blob is uploaded and the digest is the same again.
        let back = reg.store("back/app");
        let r = copy(&layout, tag, &back, tag, &opts()).await.unwrap();
        assert_eq!(&r.digest, digest);
        assert_eq!(
            skopeo_digest(&format!("docker://{}/back/app:{tag}", reg.host())),
            *digest
        );
        let again = copy(&layout, tag, &back, tag, &opts()).await.unwrap();
        assert_eq!(again.bytes_uploaded, 0);
        assert!(again.already_present);
    }
}

#[tokio::test]
async fn copy_into_second_repository_of_same_registry_mounts_every_blob() {
    let reg = TestRegistry::start();
    let index = TestIndex::linux_amd64_arm64(5);
    let first = reg.store("svc-a/app");
    index.push(&first, "v1").await.unwrap();
    let second = reg.store("svc-b/app");
    let r = copy(&first, "v1", &second, "v1", &opts()).await.unwrap();
    assert_eq!(r.bytes_uploaded, 0, "{r:?}");
    assert_eq!(r.blobs_uploaded, 0);
    assert_eq!(
        r.blobs_mounted,
        index_blobs(&index),
        "configs and layers of both platforms: {r:?}"
    );
    assert_eq!(&r.digest, index.digest());
    for img in index.images() {
        assert!(second.has_blob(img.config().digest(), None).await.unwrap());
    }
}

#[tokio::test]
async fn mount_candidates_from_options_are_used_and_a_202_leaves_no_upload_session() {
    let reg = TestRegistry::start();
    let image = small_image(6);
    let a = reg.store("a/app");
    image.push(&a, "v1").await.unwrap();
    // The source is a layout (another "registry"), but the blobs sit in repository a/app.
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutStore::create(dir.path()).unwrap();
    image.push(&layout, "v1").await.unwrap();
    let b = reg.store("b/app");
    let options = CopyOptions {
        mount_from: vec!["empty/repo".into(), "a/app".into()],
        ..opts()
    };
    let r = copy(&layout, "v1", &b, "v1", &options).await.unwrap();
    assert_eq!(r.blobs_mounted, 4, "{r:?}");
    assert_eq!(r.bytes_uploaded, 0);
    // Mounting from "empty/repo" answered 202 (an upload session): it must be cancelled.
    assert_eq!(
        open_upload_sessions(&reg, "b/app"),
        0,
        "leaked upload sessions"
    );
}

#[tokio::test]
async fn docker_schema2_manifests_copy_byte_identical() {
    let reg = TestRegistry::start();
    let image = TestImage::builder()
        .seed(7)
        .layers([5_000, 6_000])
        .docker()
        .build();
    assert_eq!(image.manifest().media_type, DOCKER_MANIFEST);
    let src = reg.store("docker/app");
    image.push(&src, "v1").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutStore::create(dir.path()).unwrap();
    let r = copy(&src, "v1", &layout, "v1", &opts()).await.unwrap();
    assert_eq!(&r.digest, image.digest());
    let back = layout.get_manifest("v1").await.unwrap();
    assert_eq!(back.media_type, DOCKER_MANIFEST);
    assert_eq!(back.bytes, image.manifest().bytes);
}

#[tokio::test]
async fn platform_filter_selects_one_manifest_and_says_the_index_was_not_preserved() {
    let reg = TestRegistry::start();
    let index = TestIndex::linux_amd64_arm64(8);
    let src = reg.store("multi/app");
    index.push(&src, "v1").await.unwrap();
    let dst = reg.store("arm/app");
    let options = CopyOptions {
        platforms: vec![PlatformFilter::parse("linux/arm64").unwrap()],
        ..opts()
    };
    let r = copy(&src, "v1", &dst, "v1", &options).await.unwrap();
    assert!(!r.index_preserved);
    assert_eq!(r.platforms, vec!["linux/arm64/v8".to_string()]);
    let arm = index
        .images()
        .iter()
        .find(|i| i.platform().starts_with("linux/arm64"))
        .unwrap();
    assert_eq!(&r.digest, arm.digest());
    assert_eq!(r.media_type, OCI_MANIFEST);

    let none = CopyOptions {
        platforms: vec![PlatformFilter::parse("windows/amd64").unwrap()],
        ..opts()
    };
    let err = copy(&src, "v1", &dst, "w", &none).await.unwrap_err();
    assert!(
        err.to_string().contains("linux/amd64"),
        "lists what exists: {err}"
    );
}

/// A fake registry serving `bad/app:v1` (a small image of `seed`) whose `layer`-th layer is
/// corrupt: the registry, the source store and the corrupt digest.
fn corrupt_source(seed: u64, layer: usize) -> (FakeRegistry, HttpStore, Digest) {
    let image = small_image(seed);
    let fake = FakeRegistry::serving(&image, "bad/app", "v1");
    let victim = image.layers()[layer].digest().clone();
    fake.corrupt_blob(&victim);
    let src = RegistryClient::new(&fake.host(), Credentials::Anonymous)
        .unwrap()
        .repository("bad/app")
        .unwrap();
    (fake, src, victim)
}

#[tokio::test]
async fn corrupted_blob_fails_with_digest_mismatch_and_leaves_no_tag() {
    let (_fake, src, victim) = corrupt_source(13, 2);
    let reg = TestRegistry::start();
    let dst = reg.store("dst/app");
    let err = copy(&src, "v1", &dst, "v1", &opts()).await.unwrap_err();
    match err {
        Error::DigestMismatch { expected, actual } => {
            assert_eq!(expected, victim);
            assert_ne!(actual, victim);
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(
        dst.head_manifest("v1").await.unwrap().is_none(),
        "no tag after a failed copy"
    );
    assert!(
        !dst.has_blob(&victim, None).await.unwrap(),
        "the bad blob was not stored"
    );
    // The uploads running beside the failed one finished; the failed one was cancelled with a
    // DELETE, which distribution 2.8 refuses once part of the body arrived (its `_state`
    // token records offset 0), so that session waits for the registry's purge. The transfer
    // is retried, so there is up to one such session per attempt.
    let attempts = opts().retry.max_attempts as usize;
    assert!(
        open_upload_sessions(&reg, "dst/app") <= attempts,
        "sessions leaked: {}",
        reg.log()
    );

    // The same into a layout: nothing tagged, nothing half-written.
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutStore::create(dir.path()).unwrap();
    let err = copy(&src, "v1", &layout, "v1", &opts()).await.unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err:?}");
    assert!(layout.list_tags().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_registry_checks_upload_digests_and_a_refusal_makes_the_next_attempt_hash_here() {
    let (_fake, src, victim) = corrupt_source(14, 1);
    let reg = TestRegistry::start();
    let once = CopyOptions {
        retry: mirror_core::kit::retry::RetryConfig {
            max_attempts: 1,
            ..mirror_core::kit::retry::RetryConfig::fast()
        },
        ..CopyOptions::default()
    };
    // One attempt, hashed by the registry alone: its refusal, typed.
    let err = copy(&src, "v1", &reg.store("dst/a"), "v1", &once)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DigestRejected { digest, .. } if *digest == victim),
        "the registry's DIGEST_INVALID: {err:?}"
    );
    // A client that hashes uploads itself names the bytes at once.
    let hashing = RegistryClient::builder(&reg.host())
        .verify_uploads(true)
        .build()
        .unwrap()
        .repository("dst/b")
        .unwrap();
    let err = copy(&src, "v1", &hashing, "v1", &once).await.unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, .. } if *expected == victim),
        "{err:?}"
    );
    // With retries, the attempt after the refusal hashes here: DigestMismatch, with what the
    // source sent.
    let err = copy(&src, "v1", &reg.store("dst/c"), "v1", &opts())
        .await
        .unwrap_err();
    match err {
        Error::DigestMismatch { expected, actual } => {
            assert_eq!(expected, victim);
            assert_ne!(actual, victim);
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    for repo in ["dst/a", "dst/b", "dst/c"] {
        let dst = reg.store(repo);
        assert!(
            dst.head_manifest("v1").await.unwrap().is_none(),
            "{repo}: no tag"
        );
        assert!(
            !dst.has_blob(&victim, None).await.unwrap(),
            "{repo}: no bad blob"
        );
    }
}

#[tokio::test]
async fn skopeo_pushed_image_copies_and_library_copy_reads_back_with_skopeo() {
    let reg = TestRegistry::start();
    let dir = tempfile::tempdir().unwrap();
    let index = TestIndex::linux_amd64_arm64(14);
    index
        .write_layout(dir.path().join("fixture"), "v1")
        .unwrap();
    skopeo_copy(
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", dir.path().join("fixture").display()),
        &format!("docker://{}/skopeo/app:v1", reg.host()),
    );
    let pushed = skopeo_digest(&format!("docker://{}/skopeo/app:v1", reg.host()));

    let other = TestRegistry::start();
    let src = reg.store("skopeo/app");
    let dst = other.store("lib/app");
    let r = copy(&src, "v1", &dst, "v1", &opts()).await.unwrap();
    assert_eq!(r.digest, pushed);
    // skopeo reads the library's copy and can copy it on, all platforms.
    assert_eq!(
        skopeo_digest(&format!("docker://{}/lib/app:v1", other.host())),
        pushed
    );
    let out = dir.path().join("readback");
    skopeo_copy(
        "--src-tls-verify=false",
        &format!("docker://{}/lib/app:v1", other.host()),
        &format!("oci:{}:v1", out.display()),
    );
    assert_eq!(skopeo_digest(&format!("oci:{}:v1", out.display())), pushed);
}

#[tokio::test]
async fn chunked_upload_mode_works_against_the_real_registry() {
    let reg = TestRegistry::start();
    let image = TestImage::builder().seed(15).layers([300_000, 10]).build();
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutStore::create(dir.path()).unwrap();
    image.push(&layout, "v1").await.unwrap();
    let dst = RegistryClient::builder(&reg.host())
        .upload_mode(UploadMode::Chunked(64 * 1024))
        .build()
        .unwrap()
        .repository("chunked/app")
        .unwrap();
    let r = copy(&layout, "v1", &dst, "v1", &opts()).await.unwrap();
    assert_eq!(&r.digest, image.digest());
    assert_eq!(r.blobs_uploaded, 3);
    assert_eq!(
        skopeo_digest(&format!("docker://{}/chunked/app:v1", reg.host())),
        *image.digest()
    );
}

#[tokio::test]
async fn progress_events_cover_every_blob() {
    let reg = TestRegistry::start();
    let image = small_image(16);
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutStore::create(dir.path()).unwrap();
    image.push(&layout, "v1").await.unwrap();
    let events: Arc<Mutex<Vec<CopyEvent>>> = Arc::default();
    let sink = events.clone();
    let options = CopyOptions {
        events: Some(Arc::new(move |e: &CopyEvent| {
            sink.lock().unwrap().push(e.clone())
        })),
        ..opts()
    };
    copy(&layout, "v1", &reg.store("ev/app"), "v1", &options)
        .await
        .unwrap();
    let events = events.lock().unwrap();
    let done = events
        .iter()
        .filter(|e| matches!(e, CopyEvent::BlobDone { .. }))
        .count();
    let bytes: u64 = events
        .iter()
        .map(|e| match e {
            CopyEvent::BlobProgress { bytes, .. } => *bytes,
            _ => 0,
        })
        .sum();
    let total: u64 = image.blobs().iter().map(|b| b.size()).sum();
    assert_eq!(done, 4);
    assert_eq!(bytes, total);
    assert!(
        matches!(events.last(), Some(CopyEvent::ManifestPushed { .. })),
        "tagged manifest last"
    );
}

#[tokio::test]
async fn bad_input_gives_typed_errors_with_context() {
    let reg = TestRegistry::start();
    let src = reg.store("nothing/here");
    let dst = reg.store("dst/here");
    // Missing tag.
    match copy(&src, "v404", &dst, "v1", &opts()).await.unwrap_err() {
        Error::NotFound { what, location } => {
            assert_eq!(what, "manifest");
            assert!(location.contains("nothing/here:v404"), "{location}");
        }
        other => panic!("{other:?}"),
    }
    // Malformed tag or digest given to a store.
    assert!(matches!(
        src.get_manifest("../etc").await,
        Err(Error::InvalidReference { .. })
    ));
    assert!(matches!(
        src.get_manifest("sha256:zz").await,
        Err(Error::InvalidReference { .. })
    ));
    // Unreachable host: a typed connection error naming the registry.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let unreachable = RegistryClient::new(&format!("127.0.0.1:{dead}"), Credentials::Anonymous)
        .unwrap()
        .repository("x/y")
        .unwrap();
    match copy(&unreachable, "v1", &dst, "v1", &opts())
        .await
        .unwrap_err()
    {
        Error::Connect { registry, .. } => assert_eq!(registry, format!("127.0.0.1:{dead}")),
        other => panic!("{other:?}"),
    }
    // An unknown manifest media type in a layout.
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutStore::create(dir.path()).unwrap();
    let odd = mirror_core::RawManifest::new(
        &br#"{"schemaVersion":2}"#[..],
        "application/vnd.example.thing+json",
    );
    layout.put_manifest("odd", &odd).await.unwrap();
    match copy(&layout, "odd", &dst, "odd", &opts())
        .await
        .unwrap_err()
    {
        Error::UnsupportedMediaType { media_type, .. } => {
            assert_eq!(media_type, "application/vnd.example.thing+json")
        }
        other => panic!("{other:?}"),
    }
    // Malformed references.
    for bad in ["", "host.io/UPPER/case", "host:99999/x", "a@sha256:1"] {
        assert!(
            matches!(
                mirror_core::Reference::parse(bad),
                Err(Error::InvalidReference { .. })
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn tag_listing_follows_link_pagination() {
    use axum::extract::Query;
    use axum::routing::get;
    use std::collections::HashMap;
    // A registry that pages its tag list two at a time with relative `Link` headers.
    let all: Vec<String> = (0..7).map(|i| format!("t{i}")).collect();
    let tags = all.clone();
    let host = tests::hostile::HostileRegistry::open()
        .route(
            "/v2/paged/app/tags/list",
            get(move |Query(q): Query<HashMap<String, String>>| {
                let tags = tags.clone();
                async move {
                    let start = q
                        .get("last")
                        .and_then(|l| tags.iter().position(|t| t == l).map(|i| i + 1))
                        .unwrap_or(0);
                    let page: Vec<&String> = tags.iter().skip(start).take(2).collect();
                    let body = serde_json::json!({"name": "paged/app", "tags": page}).to_string();
                    let mut headers = axum::http::HeaderMap::new();
                    if start + 2 < tags.len() {
                        let last = page.last().map(|s| s.as_str()).unwrap_or("");
                        headers.insert(
                            "link",
                            format!("</v2/paged/app/tags/list?n=2&last={last}>; rel=\"next\"")
                                .parse()
                                .unwrap(),
                        );
                    }
                    (headers, body)
                }
            }),
        )
        .serve()
        .await;
    let store = RegistryClient::new(&host, Credentials::Anonymous)
        .unwrap()
        .repository("paged/app")
        .unwrap();
    assert_eq!(store.list_tags().await.unwrap(), all);
}
