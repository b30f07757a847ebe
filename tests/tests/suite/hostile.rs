//! Hostile registries, as an attacker would run them: in-process servers that stall, drip,
//! flood, redirect or point elsewhere. Each test is the attack, written to fail before its
//! fix: the copy ends with a clear typed error in bounded time and memory, and credentials
//! never leave their origin.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, head, put};
use bytes::Bytes;
use futures::StreamExt;
use mirror_core::kit::retry::RetryConfig;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::{HttpStore, RegistryClient, RegistryConfig, Throughput};
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{copy, CopyOptions};
use mirror_core::{Digest, Error, ImageStore};
use tests::hostile::{HostileRegistry, Witness};

/// A client of `app` at `host` with short transfer guards and two attempts, for attacks that
/// must end soon.
fn guarded(host: &str) -> HttpStore {
    RegistryClient::builder(host)
        .config(RegistryConfig {
            idle_timeout: Duration::from_secs(1),
            min_throughput: Some(Throughput {
                bytes: 64 * 1024,
                per: Duration::from_secs(1),
            }),
            request_timeout: Duration::from_secs(2),
            retry: RetryConfig {
                max_attempts: 2,
                ..RetryConfig::fast()
            },
            ..RegistryConfig::default()
        })
        .build()
        .unwrap()
        .repository("app")
        .unwrap()
}

/// [`guarded`] source `app` serving a one-layer image (`seed`) whose layer announces its size
/// and sends `body()` as its bytes.
async fn layer_sending<S>(seed: u64, body: fn() -> S) -> HttpStore
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let image = TestImage::builder().seed(seed).layer(100_000).build();
    let size = image.layers()[0].size().to_string();
    let host = HostileRegistry::open()
        .image_with_layers("app", &image, move || {
            (
                [("content-length", size.clone())],
                Body::from_stream(body()),
            )
                .into_response()
        })
        .serve()
        .await;
    guarded(&host)
}

/// An anonymous client of `app` at `host`, with the default retries.
fn anonymous(host: &str) -> HttpStore {
    RegistryClient::new(host, Credentials::Anonymous)
        .unwrap()
        .repository("app")
        .unwrap()
}

/// Copy options without retries.
fn no_retry() -> CopyOptions {
    CopyOptions {
        retry: RetryConfig::none(),
        ..CopyOptions::default()
    }
}

/// Awaits `attempt`, which must fail, and within `bound` (a hang fails the test at 60 s).
async fn fails_within<T: std::fmt::Debug>(
    bound: Duration,
    attempt: impl std::future::Future<Output = Result<T, Error>>,
) -> Error {
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(60), attempt)
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(
        started.elapsed() < bound,
        "{:?}: {err:?}",
        started.elapsed()
    );
    err
}

/// Copies `src:v1` to `dst:v1`, which must fail [`Error::Stalled`] for `reason` within
/// `bound` seconds.
async fn copy_stalls(
    src: &dyn ImageStore,
    dst: &dyn ImageStore,
    options: &CopyOptions,
    bound: u64,
    reason: &str,
) {
    let copied = copy(src, "v1", dst, "v1", options);
    let err = fails_within(Duration::from_secs(bound), copied).await;
    assert!(
        matches!(&err, Error::Stalled { reason: r, .. } if r.contains(reason)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_sends_headers_then_nothing_fails_stalled_in_bounded_time() {
    let src = layer_sending(1, futures::stream::pending).await;
    let dst = TestRegistry::start();
    let dst_store = RegistryClient::new(&dst.host(), Credentials::Anonymous)
        .unwrap()
        .repository("copy/app")
        .unwrap();
    let options = CopyOptions {
        retry: RetryConfig {
            max_attempts: 2,
            ..RetryConfig::fast()
        },
        ..CopyOptions::default()
    };
    copy_stalls(&src, &dst_store, &options, 30, "no byte moved").await;
    assert!(dst_store.head_manifest("v1").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_dripping_a_byte_at_a_time_fails_below_the_minimum_throughput() {
    let src = layer_sending(2, || {
        futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((Ok(Bytes::from_static(b"x")), ()))
        })
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dst = mirror_core::kit::store::layout::LayoutStore::create(dir.path()).unwrap();
    copy_stalls(&src, &dst, &no_retry(), 60, "below the minimum").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_reads_the_upload_and_never_answers_fails_stalled() {
    let src_reg = TestRegistry::start();
    let image = TestImage::builder().seed(3).layer(50_000).build();
    let src = src_reg.store("app");
    image.push(&src, "v1").await.unwrap();
    let host = HostileRegistry::open()
        .route(
            "/v2/app/blobs/{digest}",
            head(|| async { StatusCode::NOT_FOUND }),
        )
        .upload_at("app", "/v2/app/blobs/uploads/s1")
        .route(
            "/v2/app/blobs/uploads/{session}",
            put(|body: Body| async move {
                // Read all of it, then never answer.
                let mut s = body.into_data_stream();
                while s.next().await.is_some() {}
                futures::future::pending::<()>().await;
                StatusCode::CREATED
            })
            .delete(|| async { StatusCode::NO_CONTENT }),
        )
        .serve()
        .await;
    let dst = guarded(&host);
    copy_stalls(&src, &dst, &no_retry(), 20, "no answer").await;
}

/// Uploads a small blob through `store`: its digest and how the upload ended.
async fn put_a_layer(store: &HttpStore) -> (Digest, mirror_core::Result<()>) {
    let blob = Bytes::from_static(b"some layer");
    let digest = Digest::sha256_of(&blob);
    let data = futures::stream::iter(vec![Ok(blob.clone())]).boxed();
    let put = store.put_blob(&digest, blob.len() as u64, data).await;
    (digest, put)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_location_on_another_origin_gets_no_credentials() {
    // The "storage" origin records the Authorization headers it receives.
    let storage = Witness::start(|| StatusCode::CREATED).await;
    let registry = HostileRegistry::basic_auth()
        .upload_at("app", &storage.url("/upload"))
        .serve()
        .await;
    let store = RegistryClient::new(&registry, Credentials::basic("alice", "s3cret"))
        .unwrap()
        .repository("app")
        .unwrap();
    put_a_layer(&store).await.1.unwrap();
    assert_eq!(
        storage.seen(),
        vec![None],
        "the upload went to the other origin without the registry's credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_from_another_origin_never_gets_the_registrys_credentials() {
    // The upload Location points at another origin, which answers 401 with a token realm of
    // its own: exchanging the registry's credentials there would hand them to it.
    // The token realm and the upload target are two origins of the attacker: the realm is
    // only known once the upload target answers.
    let realm = Witness::start(|| r#"{"token":"t"}"#).await;
    let realm_url = realm.url("/token");
    let evil = HostileRegistry::open()
        .route(
            "/upload",
            put(move || {
                let realm = realm_url.clone();
                async move { tests::hostile::bearer_challenge(&realm) }
            })
            .delete(|| async { StatusCode::NO_CONTENT }),
        )
        .serve()
        .await;
    let registry = HostileRegistry::basic_auth()
        .upload_at("app", &format!("http://{evil}/upload"))
        .serve()
        .await;
    let store = RegistryClient::builder(&registry)
        .credentials(Credentials::basic("alice", "s3cret"))
        .config(RegistryConfig {
            retry: RetryConfig::none(),
            ..RegistryConfig::default()
        })
        .build()
        .unwrap()
        .repository("app")
        .unwrap();
    let (digest, put) = put_a_layer(&store).await;
    let err = put.unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { .. }),
        "the other origin's refusal is reported: {err:?}"
    );
    // Later requests to the registry keep its own (basic) scheme.
    let _ = store.has_blob(&digest, None).await;
    let _ = store.list_tags().await;
    assert!(
        realm.seen().is_empty(),
        "the other origin's token realm was asked: {:?}",
        realm.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_whose_body_never_comes_fails_in_bounded_time() {
    let host = HostileRegistry::open()
        .route(
            "/v2/app/manifests/{reference}",
            get(|| async {
                let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [("content-length", "1000")],
                    Body::from_stream(never),
                )
            }),
        )
        .serve()
        .await;
    let store = guarded(&host);
    fails_within(Duration::from_secs(20), store.get_manifest("v1")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_blob_passes_the_guards_both_ways() {
    // Size 0: no byte ever moves, which the idle guard must not take for a stall.
    let reg = TestRegistry::start();
    let store = guarded(&reg.host());
    let digest = Digest::sha256_of(b"");
    let data = futures::stream::iter(Vec::<mirror_core::Result<Bytes>>::new()).boxed();
    store.put_blob(&digest, 0, data).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut blob = store.get_blob(&digest).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = blob.stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert!(got.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_fails_at_once_without_retries() {
    let host = HostileRegistry::open()
        .route(
            "/v2/app/blobs/{digest}",
            get(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", "/v2/app/blobs/again")],
                )
            }),
        )
        .serve()
        .await;
    // The default retry policy (5 attempts with backoff): a loop must not use it.
    let store = anonymous(&host);
    let started = Instant::now();
    let err = match store.get_blob(&Digest::sha256_of(b"x")).await {
        Ok(_) => panic!("a redirect loop was followed to an end"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not retried: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_https_to_plain_http_on_the_same_origin_is_refused() {
    // One port answers TLS and plain HTTP: the redirect changes only the scheme, so an HTTP
    // client would keep the Authorization header. Whatever reaches the plain side is recorded.
    let plain_seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = plain_seen.clone();
    let port = Arc::new(std::sync::OnceLock::<u16>::new());
    let port_in = port.clone();
    let bound = tests::tls::serve_dual(move |head: &str, tls: bool| {
        if !tls {
            seen.lock().unwrap().push(head.to_string());
            return Some(
                b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nstolen".to_vec(),
            );
        }
        if head.starts_with("GET /v2/ ") {
            return Some(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec(),
            );
        }
        let port = port_in.get().copied().unwrap_or(0);
        Some(
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://localhost:{port}/blob\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
        )
    })
    .await;
    port.set(bound).unwrap();
    let store = RegistryClient::builder(&format!("localhost:{bound}"))
        .plain_http(false)
        .tls_verify(false)
        .credentials(Credentials::basic("alice", "s3cret"))
        .build()
        .unwrap()
        .repository("app")
        .unwrap();
    let err = match store.get_blob(&Digest::sha256_of(b"x")).await {
        Ok(_) => panic!("the downgrade was followed"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("https to plain http"), "{err}");
    assert!(
        plain_seen.lock().unwrap().is_empty(),
        "nothing reached the plain HTTP side: {:?}",
        plain_seen.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_text_with_escapes_and_thirty_kilobytes_is_shown_clean_and_short() {
    // Valid JSON whose message holds escape sequences once decoded.
    let hostile = format!(
        "{{\"errors\":[{{\"code\":\"DENIED\",\"message\":\"\\u001b[2J\\u001b[31mowned\\u001b[0m\\r{}\"}}]}}",
        "A".repeat(30_000)
    );
    let host = HostileRegistry::open()
        .route(
            "/v2/app/manifests/{reference}",
            get(move || {
                let body = hostile.clone();
                async move { (StatusCode::BAD_REQUEST, body) }
            }),
        )
        .serve()
        .await;
    let store = anonymous(&host);
    let err = store.get_manifest("v1").await.unwrap_err();
    let shown = err.to_string();
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\r'),
        "{shown:?}"
    );
    assert!(shown.len() < 1200, "{} characters shown", shown.len());
    assert!(shown.contains("more characters"), "{shown}");
}
