//! Security properties: secrets never reach logs, events or errors; TLS is verified by
//! default; credentials are never sent to a redirect target on another host.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use mirror_core::kit::store::http::credentials::Credentials;
use mirror_core::kit::store::http::RegistryClient;
use mirror_core::testing::{TestImage, TestRegistry};
use mirror_core::{copy, CopyEvent, CopyOptions, Digest, Error, ImageStore};

const PASSWORD: &str = "Sup3r-S3cret-Passw0rd";

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_appears_in_logs_events_debug_or_errors() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut seen = String::new();
    for reg in [
        TestRegistry::with_basic_auth("alice", PASSWORD),
        TestRegistry::with_token_auth("alice", PASSWORD),
    ] {
        let client =
            RegistryClient::new(&reg.host(), Credentials::basic("alice", PASSWORD)).unwrap();
        seen.push_str(&format!("{client:?}"));
        let src = client.repository("sec/src").unwrap();
        seen.push_str(&format!("{src:?}"));
        let img = TestImage::builder().seed(1).layer(5000).build();
        img.push(&src, "v1").await.unwrap();
        let events = Arc::new(Mutex::new(String::new()));
        let sink = events.clone();
        let options = CopyOptions {
            events: Some(Arc::new(move |e: &CopyEvent| {
                sink.lock()
                    .unwrap()
                    .push_str(&format!("{e:?} {}", serde_json::to_string(e).unwrap()))
            })),
            ..CopyOptions::default()
        };
        let report = copy(
            &src,
            "v1",
            &client.repository("sec/dst").unwrap(),
            "v1",
            &options,
        )
        .await
        .unwrap();
        seen.push_str(&format!("{report:?}"));
        seen.push_str(&events.lock().unwrap());
        // Errors: a wrong password, and a password that is a prefix of the right one.
        for wrong in [format!("{PASSWORD}x"), PASSWORD[..8].to_string()] {
            let bad = RegistryClient::new(&reg.host(), Credentials::basic("alice", wrong.as_str()))
                .unwrap();
            let e = bad
                .repository("sec/src")
                .unwrap()
                .get_manifest("v1")
                .await
                .unwrap_err();
            seen.push_str(&format!("{e} {e:?}"));
        }
    }
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).to_string();
    assert!(
        logs.len() > 1000,
        "trace logging was captured ({} bytes)",
        logs.len()
    );
    let b64 = {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = write!(s, "{}", base64_of(&format!("alice:{PASSWORD}")));
        s
    };
    for haystack in [&logs, &seen] {
        assert!(!haystack.contains(PASSWORD), "password leaked");
        assert!(
            !haystack.contains(&PASSWORD[..8]),
            "part of the password leaked"
        );
        assert!(!haystack.contains(&b64), "basic auth header leaked");
    }
}

fn base64_of(s: &str) -> String {
    // Tiny standard base64 encoder, to look for an Authorization header value in logs.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn https_certificates_are_verified_by_default() {
    let port = tests::tls::serve_raw(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}".to_vec()
    })
    .await;
    let host = format!("localhost:{port}");
    // HTTPS forced on a loopback host (plain HTTP would be its default): verification is on.
    let strict = RegistryClient::builder(&host)
        .plain_http(false)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let err = strict.ping().await.unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("certificate")),
        "self-signed certificate refused: {err:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "an untrusted certificate is not retried: {:?}",
        started.elapsed()
    );
    // Only an explicit opt-out accepts it.
    let lax = RegistryClient::builder(&host)
        .plain_http(false)
        .tls_verify(false)
        .build()
        .unwrap();
    lax.ping().await.unwrap();
}

#[tokio::test]
async fn credentials_are_not_sent_to_a_redirect_target_on_another_host() {
    // The "storage" host records the Authorization headers it receives.
    let received: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let rec = received.clone();
    let blob = b"hello blob".to_vec();
    let digest = Digest::sha256_of(&blob);
    let storage = Router::new().route(
        "/blob",
        get(move |headers: HeaderMap| {
            let rec = rec.clone();
            let blob = blob.clone();
            async move {
                rec.lock().unwrap().push(
                    headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap_or("").to_string()),
                );
                blob
            }
        }),
    );
    let storage_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let storage_port = storage_listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(storage_listener, storage).await });

    // The registry demands basic auth and redirects blob reads to "localhost" (another host).
    let registry = Router::new()
        .route("/v2/", tests::routes::v2_basic_auth())
        .route(
            "/v2/app/blobs/{digest}",
            get(move |headers: HeaderMap| async move {
                if let Some(challenge) = tests::routes::basic_challenge(&headers) {
                    return challenge;
                }
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", format!("http://localhost:{storage_port}/blob"))],
                )
                    .into_response()
            }),
        );
    let reg_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reg_port = reg_listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(reg_listener, registry).await });

    let client = RegistryClient::new(
        &format!("127.0.0.1:{reg_port}"),
        Credentials::basic("alice", PASSWORD),
    )
    .unwrap();
    let store = client.repository("app").unwrap();
    let mut b = store.get_blob(&digest).await.unwrap();
    let mut got = Vec::new();
    use futures::StreamExt;
    while let Some(chunk) = b.stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(Digest::sha256_of(&got), digest, "the redirect was followed");
    let seen = received.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![None],
        "no Authorization header reached the other host"
    );
}

/// A `Link` to the next page of a tag list (or catalog) on another origin of the same host
/// (another port) is refused: the registry's credentials would go with the request. Only the
/// registry's own origin (scheme, host, port) is followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_never_follows_a_link_to_another_origin() {
    // The other origin: records what reaches it.
    let received: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let rec = received.clone();
    let other = Router::new().fallback(move |headers: HeaderMap| {
        let rec = rec.clone();
        async move {
            rec.lock().unwrap().push(
                headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
            );
            axum::Json(serde_json::json!({"name": "app", "tags": ["stolen"]})).into_response()
        }
    });
    let other_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other_port = other_listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(other_listener, other).await });

    let page = move |headers: HeaderMap, next: String| async move {
        if let Some(challenge) = tests::routes::basic_challenge(&headers) {
            return challenge;
        }
        (
            [("link", format!("<{next}>; rel=\"next\""))],
            axum::Json(serde_json::json!({"name": "app", "tags": ["v1"], "repositories": ["app"]})),
        )
            .into_response()
    };
    let next_tags = format!("http://127.0.0.1:{other_port}/v2/app/tags/list?last=v1");
    let next_catalog = format!("http://127.0.0.1:{other_port}/v2/_catalog?last=app");
    let registry = Router::new()
        .route("/v2/", tests::routes::v2_basic_auth())
        .route(
            "/v2/app/tags/list",
            get(move |h: HeaderMap| page(h, next_tags.clone())),
        )
        .route(
            "/v2/_catalog",
            get(move |h: HeaderMap| page(h, next_catalog.clone())),
        );
    let reg_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let reg_port = reg_listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(reg_listener, registry).await });

    let client = RegistryClient::new(
        &format!("127.0.0.1:{reg_port}"),
        Credentials::basic("alice", PASSWORD),
    )
    .unwrap();
    let err = client
        .repository("app")
        .unwrap()
        .list_tags()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Protocol { reason, .. } if reason.contains("another origin")),
        "{err:?}"
    );
    let err = client.catalog().await.unwrap_err();
    assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    assert!(
        received.lock().unwrap().is_empty(),
        "nothing reached the other origin: {:?}",
        received.lock().unwrap()
    );
    assert!(!err.to_string().contains(PASSWORD));
}
