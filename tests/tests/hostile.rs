//! Hostile registries, as an attacker would run them: in-process servers that stall, drip,
//! flood, redirect or point elsewhere. Each test is the attack, written to fail before its
//! fix: the copy ends with a clear typed error in bounded time and memory, and credentials
//! never leave their origin.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use mirror_core::copy::{copy, CopyOptions};
use mirror_core::retry::RetryConfig;
use mirror_core::store::http::credentials::Credentials;
use mirror_core::store::http::{RegistryClient, RegistryConfig, Throughput};
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{Digest, Error, ImageStore};

/// Serves `router` on 127.0.0.1 and returns `127.0.0.1:PORT`.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr.to_string()
}

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap()
}

/// A client with short transfer guards and two attempts, for attacks that must end soon.
fn guarded(host: &str, credentials: Credentials) -> RegistryClient {
    RegistryClient::builder(host)
        .credentials(credentials)
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
}

/// A registry serving `image` (manifest `v1`) whose blob answers come from `blob`.
async fn source_with_blob<F>(image: &TestImage, blob: F) -> String
where
    F: Fn() -> Response + Clone + Send + Sync + 'static,
{
    let manifest = image.manifest().clone();
    let config = image.config().clone();
    Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route(
            "/v2/app/manifests/{reference}",
            get(move || {
                let m = manifest.clone();
                async move {
                    (
                        [
                            ("content-type", m.media_type.clone()),
                            ("docker-content-digest", m.digest.to_string()),
                        ],
                        m.bytes.clone(),
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/v2/app/blobs/{digest}",
            get(move |axum::extract::Path(d): axum::extract::Path<String>| {
                let config = config.clone();
                let blob = blob.clone();
                async move {
                    if d == config.digest().to_string() {
                        config.read().unwrap().to_vec().into_response()
                    } else {
                        blob()
                    }
                }
            }),
        )
        .pipe(serve)
        .await
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_sends_headers_then_nothing_fails_stalled_in_bounded_time() {
    let image = TestImage::builder().seed(1).layer(100_000).build();
    let size = image.layers()[0].size().to_string();
    let host = source_with_blob(&image, move || {
        let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        ([("content-length", size.clone())], Body::from_stream(never)).into_response()
    })
    .await;
    let dst = TestRegistry::start();
    let src = guarded(&host, Credentials::Anonymous)
        .repository("app")
        .unwrap();
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
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        copy(&src, "v1", &dst_store, "v1", &options),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(
        matches!(&err, Error::Stalled { reason, .. } if reason.contains("no byte moved")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(dst_store.head_manifest("v1").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_dripping_a_byte_at_a_time_fails_below_the_minimum_throughput() {
    let image = TestImage::builder().seed(2).layer(100_000).build();
    let size = image.layers()[0].size().to_string();
    let host = source_with_blob(&image, move || {
        let drip = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), ()))
        });
        ([("content-length", size.clone())], Body::from_stream(drip)).into_response()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let dst = mirror_core::store::layout::LayoutStore::create(dir.path()).unwrap();
    let src = guarded(&host, Credentials::Anonymous)
        .repository("app")
        .unwrap();
    let options = CopyOptions {
        retry: RetryConfig::none(),
        ..CopyOptions::default()
    };
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        copy(&src, "v1", &dst, "v1", &options),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(
        matches!(&err, Error::Stalled { reason, .. } if reason.contains("below the minimum")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_that_reads_the_upload_and_never_answers_fails_stalled() {
    let src_reg = TestRegistry::start();
    let image = TestImage::builder().seed(3).layer(50_000).build();
    let src = RegistryClient::new(&src_reg.host(), Credentials::Anonymous)
        .unwrap()
        .repository("app")
        .unwrap();
    image.push(&src, "v1").await.unwrap();
    let host = Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route(
            "/v2/app/blobs/{digest}",
            axum::routing::head(|| async { StatusCode::NOT_FOUND }),
        )
        .route(
            "/v2/app/blobs/uploads/",
            post(|| async {
                (
                    StatusCode::ACCEPTED,
                    [("location", "/v2/app/blobs/uploads/s1")],
                )
            }),
        )
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
        .pipe(serve)
        .await;
    let dst = guarded(&host, Credentials::Anonymous)
        .repository("app")
        .unwrap();
    let options = CopyOptions {
        retry: RetryConfig::none(),
        ..CopyOptions::default()
    };
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        copy(&src, "v1", &dst, "v1", &options),
    )
    .await
    .expect("no hang")
    .unwrap_err();
    assert!(
        matches!(&err, Error::Stalled { reason, .. } if reason.contains("no answer")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_answering_a_gigabyte_is_refused_without_reading_it() {
    let realm_host = Router::new()
        .route(
            "/token",
            get(|| async {
                let zeros = futures::stream::repeat_with(|| {
                    Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 1 << 20]))
                })
                .take(1024);
                Body::from_stream(zeros)
            }),
        )
        .pipe(serve)
        .await;
    let realm = format!("http://{realm_host}/token");
    let registry = Router::new()
        .route(
            "/v2/",
            get(move || {
                let realm = realm.clone();
                async move {
                    (
                        StatusCode::UNAUTHORIZED,
                        [(
                            "www-authenticate",
                            format!("Bearer realm=\"{realm}\",service=\"r\""),
                        )],
                    )
                }
            }),
        )
        .pipe(serve)
        .await;
    let before = rss();
    let store = RegistryClient::new(&registry, Credentials::basic("a", "b"))
        .unwrap()
        .repository("app")
        .unwrap();
    let err = store.head_manifest("v1").await.unwrap_err();
    assert!(
        matches!(&err, Error::Unauthorized { message, .. } if message.contains("more than")),
        "{err:?}"
    );
    let grown = rss().saturating_sub(before);
    assert!(grown < 64 << 20, "the process grew by {grown} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sixty_megabyte_tag_page_is_refused_in_bounded_memory() {
    let page: Bytes = {
        let mut s = String::from("{\"name\":\"app\",\"tags\":[");
        let tag = format!("\"{}\",", "t".repeat(100));
        while s.len() < 60 << 20 {
            s.push_str(&tag);
        }
        s.push_str("\"last\"]}");
        Bytes::from(s)
    };
    let host = Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route(
            "/v2/app/tags/list",
            get(move || {
                let page = page.clone();
                async move { page }
            }),
        )
        .pipe(serve)
        .await;
    let before = rss();
    let store = RegistryClient::new(&host, Credentials::Anonymous)
        .unwrap()
        .repository("app")
        .unwrap();
    let err = store.list_tags().await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("larger than")),
        "{err:?}"
    );
    let grown = rss().saturating_sub(before);
    assert!(grown < 120 << 20, "the process grew by {grown} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_location_on_another_origin_gets_no_credentials() {
    // The "storage" origin records the Authorization headers it receives.
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let rec = seen.clone();
    let storage = Router::new()
        .route(
            "/upload",
            put(move |headers: HeaderMap, body: Body| {
                let rec = rec.clone();
                async move {
                    rec.lock().unwrap().push(
                        headers
                            .get("authorization")
                            .map(|v| v.to_str().unwrap_or("").to_string()),
                    );
                    let mut s = body.into_data_stream();
                    while s.next().await.is_some() {}
                    StatusCode::CREATED
                }
            })
            .delete(|| async { StatusCode::NO_CONTENT }),
        )
        .pipe(serve)
        .await;
    let location = format!("http://{storage}/upload");
    let auth = |headers: &HeaderMap| headers.contains_key("authorization");
    let registry = Router::new()
        .route(
            "/v2/",
            get(move |headers: HeaderMap| async move {
                if auth(&headers) {
                    StatusCode::OK.into_response()
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        [("www-authenticate", "Basic realm=\"r\"")],
                    )
                        .into_response()
                }
            }),
        )
        .route(
            "/v2/app/blobs/uploads/",
            post(move || {
                let location = location.clone();
                async move { (StatusCode::ACCEPTED, [("location", location)]) }
            }),
        )
        .pipe(serve)
        .await;
    let store = RegistryClient::new(&registry, Credentials::basic("alice", "s3cret"))
        .unwrap()
        .repository("app")
        .unwrap();
    let blob = Bytes::from_static(b"some layer");
    let digest = Digest::sha256_of(&blob);
    let data = futures::stream::iter(vec![Ok(blob.clone())]).boxed();
    store
        .put_blob(&digest, blob.len() as u64, data)
        .await
        .unwrap();
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![None],
        "the upload went to the other origin without the registry's credentials"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_from_https_to_plain_http_is_refused() {
    // The plain HTTP target records whether anything reached it.
    let reached: Arc<Mutex<usize>> = Arc::default();
    let rec = reached.clone();
    let plain = Router::new()
        .route(
            "/blob",
            get(move || {
                let rec = rec.clone();
                async move {
                    *rec.lock().unwrap() += 1;
                    "stolen"
                }
            }),
        )
        .pipe(serve)
        .await;
    let target = format!("http://{plain}/blob");
    let https = tests::tls::serve_raw(move |request_line: &str| {
        if request_line.starts_with("GET /v2/ ") {
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec()
        } else {
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\nContent-Length: 0\r\n\
                 Connection: close\r\n\r\n"
            )
            .into_bytes()
        }
    })
    .await;
    let store = RegistryClient::builder(&format!("localhost:{https}"))
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
    assert_eq!(
        *reached.lock().unwrap(),
        0,
        "nothing reached the plain HTTP target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_text_with_escapes_and_thirty_kilobytes_is_shown_clean_and_short() {
    // Valid JSON whose message holds escape sequences once decoded.
    let hostile = format!(
        "{{\"errors\":[{{\"code\":\"DENIED\",\"message\":\"\\u001b[2J\\u001b[31mowned\\u001b[0m\\r{}\"}}]}}",
        "A".repeat(30_000)
    );
    let host = Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route(
            "/v2/app/manifests/{reference}",
            get(move || {
                let body = hostile.clone();
                async move { (StatusCode::BAD_REQUEST, body) }
            }),
        )
        .pipe(serve)
        .await;
    let store = RegistryClient::new(&host, Credentials::Anonymous)
        .unwrap()
        .repository("app")
        .unwrap();
    let err = store.get_manifest("v1").await.unwrap_err();
    let shown = err.to_string();
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\r'),
        "{shown:?}"
    );
    assert!(shown.len() < 1200, "{} characters shown", shown.len());
    assert!(shown.contains("more characters"), "{shown}");
}
