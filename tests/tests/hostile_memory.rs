//! Hostile registries that flood: bodies read whole must stay bounded. Apart from
//! `hostile.rs` because they measure this process's resident memory, which other tests
//! running at the same time would grow; the tests here run one at a time.

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use mirror_core::store::http::credentials::Credentials;
use mirror_core::store::http::RegistryClient;
use mirror_core::{Error, ImageStore};

/// One measurement at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

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
    let _alone = ALONE.lock().await;
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
    // Streamed without a length, so that only the client could hold it whole: 60 chunks of
    // 1 MiB of tags, made as they are sent.
    let page = || {
        let head =
            futures::stream::once(async { Bytes::from_static(b"{\"name\":\"app\",\"tags\":[") });
        let tag = format!("\"{}\",", "t".repeat(100));
        let chunk = Bytes::from(tag.repeat((1 << 20) / tag.len()));
        let body = futures::stream::repeat(chunk).take(60);
        let tail = futures::stream::once(async { Bytes::from_static(b"\"last\"]}") });
        Body::from_stream(head.chain(body).chain(tail).map(Ok::<_, std::io::Error>))
    };
    let host = Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route("/v2/app/tags/list", get(move || async move { page() }))
        .pipe(serve)
        .await;
    let _alone = ALONE.lock().await;
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
