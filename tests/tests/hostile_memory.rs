//! Hostile registries that flood: bodies read whole must stay bounded. Apart from
//! `hostile.rs` because they measure this process's resident memory, which other tests
//! running at the same time would grow; the tests here run one at a time.

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures::StreamExt;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::{Error, ImageStore};
use tests::hostile::{HostileRegistry, Witness};

/// One measurement at a time.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_answering_a_gigabyte_is_refused_without_reading_it() {
    let realm = Witness::start(|| {
        let zeros = futures::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 1 << 20]))
        })
        .take(1024);
        Body::from_stream(zeros)
    })
    .await;
    let registry = HostileRegistry::bearer_auth(&realm.url("/token"))
        .serve()
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
    let host = HostileRegistry::open()
        .route("/v2/app/tags/list", get(move || async move { page() }))
        .serve()
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

// Round two of the hostile sources (issue 27): registry-supplied numbers, listings whose
// pages never end or never shrink, names of megabytes. Each prints its wall time and peak
// RSS growth (`cargo test -p tests --test hostile_memory -- --nocapture --test-threads 1`).

/// A registry on `127.0.0.1` answering `/v2/` with `{}` and `routes` besides.
async fn hostile(routes: Router) -> String {
    HostileRegistry::open().merge(routes).serve().await
}

/// A JSON page of `field` holding `count` strings made by `item`, streamed without a length.
fn streamed_page(
    field: &'static str,
    count: usize,
    item: impl Fn(usize) -> String + Send + 'static,
) -> Body {
    let head = futures::stream::once(async move { Bytes::from(format!("{{\"{field}\":[")) });
    // A thousand items a chunk: the server is not what is measured.
    let items = futures::stream::iter((0..count).step_by(1000)).map(move |start| {
        let mut chunk = String::new();
        for i in start..(start + 1000).min(count) {
            chunk.push_str(&item(i));
            if i + 1 != count {
                chunk.push(',');
            }
        }
        Bytes::from(chunk)
    });
    let tail = futures::stream::once(async { Bytes::from_static(b"]}") });
    Body::from_stream(head.chain(items).chain(tail).map(Ok::<_, std::io::Error>))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_claims_to_live_u64_max_seconds_is_used_without_a_panic() {
    let realm = Witness::start(|| r#"{"token":"t","expires_in":18446744073709551615}"#).await;
    // With a token: `404` for every manifest.
    let registry = HostileRegistry::bearer_auth(&realm.url("/token"))
        .serve()
        .await;
    let _alone = ALONE.lock().await;
    let store = RegistryClient::new(&registry, Credentials::basic("a", "b"))
        .unwrap()
        .repository("app")
        .unwrap();
    let (answer, _) = tests::measured("expires_in u64::MAX", async {
        // Twice: the second request uses the cached token (its refresh time is computed).
        let first = store.head_manifest("v1").await;
        let second = store.head_manifest("v2").await;
        (first, second)
    })
    .await;
    assert!(matches!(answer.0, Ok(None)), "{:?}", answer.0);
    assert!(matches!(answer.1, Ok(None)), "{:?}", answer.1);
}

/// Forty pages of 12 MB each, every page naming the next.
fn forty_pages(field: &'static str, item: fn(usize, usize) -> String) -> Router {
    let path = match field {
        "repositories" => "/v2/_catalog",
        "tags" => "/v2/app/tags/list",
        _ => "/v2/app/referrers/{digest}",
    };
    Router::new().route(
        path,
        get(
            move |q: axum::extract::Query<std::collections::HashMap<String, String>>,
                  uri: axum::http::Uri| async move {
                let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
                let next = format!("<{}?page={}>; rel=\"next\"", uri.path(), page + 1);
                // About 12 MB: 100,000 items of about 120 bytes (70,000 descriptors of 170).
                let count = if field == "manifests" {
                    70_000
                } else {
                    100_000
                };
                let body = streamed_page(field, count, move |i| item(page, i));
                let mut resp = axum::response::Response::new(body);
                if page < 39 {
                    resp.headers_mut()
                        .insert("link", axum::http::HeaderValue::from_str(&next).unwrap());
                }
                resp.headers_mut().insert(
                    "content-type",
                    axum::http::HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
                );
                resp
            },
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_pages_of_twelve_megabytes_end_the_listing_in_bounded_memory() {
    let tags = hostile(forty_pages("tags", |p, i| {
        format!("\"t{p}-{i}-{}\"", "x".repeat(100))
    }))
    .await;
    let catalog = hostile(forty_pages("repositories", |p, i| {
        format!("\"r{p}/n{i}/{}\"", "x".repeat(100))
    }))
    .await;
    let referrers = hostile(forty_pages("manifests", |p, i| {
        format!(
            "{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:{:064x}\",\"size\":1,\"artifactType\":\"x/{}\"}}",
            p * 1_000_000 + i,
            "y".repeat(20)
        )
    }))
    .await;
    let _alone = ALONE.lock().await;
    let client = |h: &str| RegistryClient::new(h, Credentials::Anonymous).unwrap();
    let (err, grown) = tests::measured("40 x 12 MB tag pages", async {
        client(&tags).repository("app").unwrap().list_tags().await
    })
    .await;
    let err = err.unwrap_err();
    assert!(matches!(&err, Error::Protocol { .. }), "{err:?}");
    assert!(grown < 200 << 20, "tags: the process grew by {grown} bytes");
    let (err, grown) = tests::measured("40 x 12 MB catalog pages", async {
        client(&catalog).catalog().await
    })
    .await;
    let err = err.unwrap_err();
    assert!(matches!(&err, Error::Protocol { .. }), "{err:?}");
    assert!(
        grown < 200 << 20,
        "catalog: the process grew by {grown} bytes"
    );
    let subject = mirror_core::Digest::sha256_of(b"subject");
    let (found, grown) = tests::measured("40 x 12 MB referrers pages", async {
        client(&referrers)
            .repository("app")
            .unwrap()
            .referrers(&subject, None)
            .await
    })
    .await;
    // Referrers are a truncated listing: the first ones are kept, the rest never read.
    let found = found.unwrap().unwrap();
    assert!(found.len() <= 4096, "{}", found.len());
    assert!(
        grown < 100 << 20,
        "referrers: the process grew by {grown} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_names_its_own_page_ends_the_listing_with_an_error() {
    let host = hostile(Router::new().route(
        "/v2/app/tags/list",
        get(|| async {
            (
                [("link", "</v2/app/tags/list?n=1000>; rel=\"next\"")],
                r#"{"tags":["a"]}"#,
            )
        }),
    ))
    .await;
    let _alone = ALONE.lock().await;
    let store = RegistryClient::new(&host, Credentials::Anonymous)
        .unwrap()
        .repository("app")
        .unwrap();
    let (err, _) = tests::measured("self-Link", store.list_tags()).await;
    let err = err.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("already read")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_tags_are_refused_before_any_head() {
    let heads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = heads.clone();
    let host = hostile(
        Router::new()
            .route(
                "/v2/app/tags/list",
                get(|| async { streamed_page("tags", 1_000_000, |i| format!("\"t{i}\"")) }),
            )
            .route(
                "/v2/app/manifests/{reference}",
                axum::routing::head(move || {
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async { StatusCode::NOT_FOUND }
                }),
            ),
    )
    .await;
    let _alone = ALONE.lock().await;
    let registry = mirror_core::GenericRegistry::new(
        RegistryClient::new(&host, Credentials::Anonymous).unwrap(),
    );
    let (err, grown) = tests::measured("a million tags", async {
        use mirror_core::Registry;
        registry
            .list_images(&mirror_core::Repository::listed("app"))
            .await
    })
    .await;
    let err = err.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("more than")),
        "{err:?}"
    );
    assert_eq!(heads.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(grown < 100 << 20, "the process grew by {grown} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twelve_megabyte_name_is_never_shown_whole() {
    let huge = "n".repeat(12 << 20);
    let name = huge.clone();
    let host = hostile(Router::new().route(
        "/v2/_catalog",
        get(move || {
            let name = name.clone();
            async move { format!(r#"{{"repositories":["ok/app","{name}"]}}"#) }
        }),
    ))
    .await;
    let _alone = ALONE.lock().await;
    let client = RegistryClient::new(&host, Credentials::Anonymous).unwrap();
    let (names, _) = tests::measured("a 12 MB repository name", client.catalog()).await;
    assert_eq!(
        names.unwrap(),
        vec!["ok/app".to_string()],
        "the name is left out"
    );
    // And wherever such text reaches an error, it is cut with its size said.
    let err = Error::NotFound {
        what: "manifest",
        location: huge,
    };
    let shown = err.to_string();
    assert!(shown.len() < 1024, "{} bytes shown", shown.len());
    assert!(shown.contains("more characters"), "{}", &shown[..200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_files_that_are_links_to_dev_zero_huge_or_sparse_are_refused_unread() {
    use mirror_core::kit::store::layout::LayoutStore;
    use mirror_core::testing::TestImage;
    let _alone = ALONE.lock().await;
    let dir = tempfile::tempdir().unwrap();

    // `oci-layout` a link to /dev/zero.
    let zero = dir.path().join("zero");
    TestImage::builder()
        .seed(1)
        .build()
        .write_layout(&zero, "v1")
        .unwrap();
    std::fs::remove_file(zero.join("oci-layout")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero.join("oci-layout")).unwrap();
    let (opened, grown) = tests::measured("oci-layout -> /dev/zero", async {
        LayoutStore::open(&zero)
    })
    .await;
    let err = opened.unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(grown < 16 << 20, "the process grew by {grown} bytes");

    // A 2 GiB sparse file under the name of the manifest the tag names.
    let sparse = dir.path().join("sparse");
    let img = TestImage::builder().seed(2).build();
    img.write_layout(&sparse, "v1").unwrap();
    let blob = sparse.join("blobs/sha256").join(img.digest().hex());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let store = LayoutStore::open(&sparse).unwrap();
    let (read, grown) = tests::measured("a 2 GiB sparse manifest blob", async {
        store.get_manifest("v1").await
    })
    .await;
    let err = read.unwrap_err();
    assert!(matches!(err, Error::InvalidManifest { .. }), "{err:?}");
    assert!(grown < 16 << 20, "the process grew by {grown} bytes");

    // A 53 MB index.json.
    let big = dir.path().join("big");
    TestImage::builder()
        .seed(3)
        .build()
        .write_layout(&big, "v1")
        .unwrap();
    let mut entries = Vec::new();
    for i in 0..250_000u64 {
        entries.push(format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{i:064x}","size":1,"annotations":{{"org.opencontainers.image.ref.name":"t{i}"}}}}"#
        ));
    }
    let doc = format!(
        r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
        entries.join(",")
    );
    assert!(doc.len() > 50 << 20);
    std::fs::write(big.join("index.json"), doc).unwrap();
    let (opened, grown) =
        tests::measured("a 53 MB index.json", async { LayoutStore::open(&big) }).await;
    let err = opened.unwrap_err();
    assert!(err.to_string().contains("accepted"), "{err}");
    assert!(grown < 16 << 20, "the process grew by {grown} bytes");
}
